/* forwarder.h - the worker's ledger link: a thread that delivers the durable outbox to a ledger.
 *
 * With `--ledger`, the worker's ingest and compute threads put every receipt and proof into
 * the outbox (outbox.h) before they reply, and nudge the forwarder; the forwarder owns a
 * DEALER socket to the ledger (CURVE when given the ledger's public key) and sends the pending
 * rows as SPEC §6 `append` requests, oldest first, settling each row by the ledger's answer
 * (docs/worker.md, "The ledger link"). Its log lines go to stderr as "sediment-worker: ...",
 * like the rest of the worker's.
 */
#ifndef SDM_SERVICE_FORWARDER_H
#define SDM_SERVICE_FORWARDER_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

/* The ledger's default --max-msg: an append request larger than the ledger's limit is dropped
 * by the ledger's socket without an answer, so the forwarder refuses it itself. */
#define SDM_FORWARDER_DEFAULT_MAX_MSG ((int64_t)64 << 20)

typedef struct sdm_forwarder_opts {
    const char *endpoint;   /* the ledger (--ledger); required */
    const char *server_key; /* the ledger's CURVE public key (--ledger-server-key): a file
                             * holding it, or the key itself (Z85 or 64 hex digits); NULL for
                             * a plain link */
    const char *client_key; /* a file with this worker's CURVE secret key for the link
                             * (--ledger-client-key); required with server_key, else NULL */
    int64_t max_msg;        /* the ledger's --max-msg (--ledger-max-msg), >= 1024; 0: the
                             * default. Larger requests are rejected here, never sent */
    int quiet;              /* no log lines */
} sdm_forwarder_opts;

typedef struct sdm_forwarder sdm_forwarder_t;

/* Checks opts and reads the CURVE keys; connects nothing and starts nothing. Everything is
 * copied (the secret key into sodium_malloc memory). NULL with err naming the option, e.g.
 * "--ledger-client-key: needed with --ledger-server-key". */
sdm_forwarder_t *sdm_forwarder_new(const sdm_forwarder_opts *opts, char *err, size_t err_len);

/* Connects a socket on zmq context ctx to the ledger and starts the thread that delivers
 * ob's pending rows, those an earlier run left first. Logs (unless quiet) how many rows wait
 * from an earlier run, the CURVE client key the ledger's --allow file must list, and a warning
 * when a plain link's endpoint is not a loopback address. ctx and ob are borrowed: both must
 * outlive the forwarder. 0, or -1 with err set (naming --ledger when the endpoint is
 * refused); then only sdm_forwarder_stop may follow. Call it once. */
int sdm_forwarder_start(sdm_forwarder_t *self, void *ctx, sdm_outbox_t *ob, char *err,
                        size_t err_len);

/* A row was put: wakes the thread. Any thread may call it; it never blocks. */
void sdm_forwarder_nudge(sdm_forwarder_t *self);

/* How many pending rows are held: rows the ledger dropped the connection on while they were
 * alone on it (most likely over its --max-msg), tried again only alone while the rows behind
 * them go on (docs/worker.md). Any thread may call it. 0 for NULL. */
size_t sdm_forwarder_held(sdm_forwarder_t *self);

/* Stops and joins the thread (if started), closes its socket without waiting for the ledger
 * (rows not yet answered stay pending in the outbox and go first at the next start), wipes
 * the keys and frees. Call it after the threads that nudge have stopped, and before
 * zmq_ctx_term on ctx. NULL-safe; clears the pointer. */
void sdm_forwarder_stop(sdm_forwarder_t **self_p);

/* For a start without --ledger: logs (unless quiet) how many rows dir/outbox.db holds
 * undelivered, if any. Creates nothing when there is no outbox.db. */
void sdm_forwarder_note_stranded(const char *dir, int quiet);

#endif /* SDM_SERVICE_FORWARDER_H */
