/* worker.h - the sediment worker: a ZeroMQ service over the engine, a durable store and signing.
 *
 * One I/O thread (the caller of sdm_worker_run) owns the ROUTER socket, pre-checks and decodes
 * every frame and answers info/stats; an ingest thread runs register/contribute; a compute
 * thread runs attribute; with a ledger, a forwarder thread delivers receipts and proofs from
 * the durable outbox. docs/worker.md explains how they share the store.
 */
#ifndef SDM_SERVICE_WORKER_H
#define SDM_SERVICE_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

#define SDM_WORKER_DEFAULT_ENDPOINT "tcp://127.0.0.1:7710"

typedef struct sdm_worker_opts {
    const char *listen;        /* endpoint to bind; NULL: SDM_WORKER_DEFAULT_ENDPOINT */
    const char *data_dir;      /* durable store and key pair; required */
    sdm_backend_kind backend;  /* auto, cpu or cuda */
    const char *curve_secret;  /* file with the server's CURVE secret key (Z85), or NULL */
    const char *allow;         /* file with allowed client CURVE public keys, one a line */
    int insecure_bind;         /* allow a non-loopback endpoint without CURVE */
    const char *ledger;        /* ledger endpoint to forward every receipt and proof to, or
                                * NULL; they wait in <data_dir>/outbox.db until the ledger has
                                * them */
    const char *ledger_server_key; /* with ledger: the ledger's CURVE public key (a file, or the
                                    * key in Z85/hex), or NULL for a plain link */
    const char *ledger_client_key; /* with ledger_server_key: a file with this worker's CURVE
                                    * secret key for the link */
    int64_t ledger_max_msg;    /* with ledger: the ledger's --max-msg; larger entries are
                                * rejected, not sent; 0: 64 MiB, the ledger's default */
    int64_t max_msg;           /* ZMQ_MAXMSGSIZE in bytes; 0: 2 GiB */
    uint32_t queue_depth;      /* requests waiting per worker thread before `busy`; 0: 64 */
    int threads;               /* cpu threads per engine; 0: all cores */
    size_t workspace_bytes;    /* engine workspace; 0: the engine's default */
    int quiet;                 /* no log lines on stderr */
} sdm_worker_opts;

typedef struct sdm_worker sdm_worker_t;

/* Opens the data dir (making the key pair on first start), rebuilds the store and the
 * per-model Merkle trees from disk, and binds the socket. NULL on failure with err set. */
sdm_worker_t *sdm_worker_new(const sdm_worker_opts *opts, char *err, size_t err_len);
/* The bound endpoint (with the real port when the listen endpoint asked for port 0). */
const char *sdm_worker_endpoint(const sdm_worker_t *self);
/* The worker's Ed25519 public key (32 bytes). */
const uint8_t *sdm_worker_key(const sdm_worker_t *self);
/* Serves until sdm_worker_stop; then finishes the requests already taken, replies to them
 * and returns 0 (-1 on a socket failure). */
int sdm_worker_run(sdm_worker_t *self);
/* Asks a running worker to stop. Async-signal-safe: a signal handler may call it. */
void sdm_worker_stop(sdm_worker_t *self);
void sdm_worker_destroy(sdm_worker_t **self_p);

#endif /* SDM_SERVICE_WORKER_H */
