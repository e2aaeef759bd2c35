/* forwarder.h - the worker's ledger link: a thread that delivers the durable outbox to a ledger.
 *
 * With `--ledger`, the worker's ingest and compute threads put every receipt and proof into
 * the outbox (outbox.h) before they reply, and nudge the forwarder; the forwarder owns a
 * DEALER socket to the ledger and sends the pending rows as SPEC §6 `append` requests, oldest
 * first, settling each row by the ledger's answer (docs/worker.md, "The ledger link"). Its
 * log lines go to stderr as "sediment-worker: ...", like the rest of the worker's.
 */
#ifndef SDM_SERVICE_FORWARDER_H
#define SDM_SERVICE_FORWARDER_H

#include <stddef.h>

#include "outbox.h"

typedef struct sdm_forwarder sdm_forwarder_t;

/* Connects a socket on zmq context ctx to the ledger at endpoint (copied) and starts the
 * thread that delivers ob's pending rows, those an earlier run left first. Logs (unless
 * quiet) how many rows wait from an earlier run, and a warning when endpoint is not a
 * loopback address (the link has no CURVE yet). ctx and ob are borrowed: both must outlive
 * the forwarder. NULL with err set (naming --ledger when the endpoint is refused). */
sdm_forwarder_t *sdm_forwarder_start(void *ctx, const char *endpoint, sdm_outbox_t *ob, int quiet,
                                     char *err, size_t err_len);

/* A row was put: wakes the thread. Any thread may call it; it never blocks. */
void sdm_forwarder_nudge(sdm_forwarder_t *self);

/* Stops and joins the thread and closes its socket, without waiting for the ledger: rows not
 * yet answered stay pending in the outbox and go first at the next start. Call it after the
 * threads that nudge have stopped, and before zmq_ctx_term on ctx. NULL-safe; clears the
 * pointer. */
void sdm_forwarder_stop(sdm_forwarder_t **self_p);

/* For a start without --ledger: logs (unless quiet) how many rows dir/outbox.db holds
 * undelivered, if any. Creates nothing when there is no outbox.db. */
void sdm_forwarder_note_stranded(const char *dir, int quiet);

#endif /* SDM_SERVICE_FORWARDER_H */
