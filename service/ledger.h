/* ledger.h - the sediment ledger: a ZeroMQ service over the verified append-only log
 * (SPEC §6 "Ledger", §7). docs/ledger.md describes it for operators.
 *
 * The I/O thread (the caller of sdm_ledger_run) owns the ROUTER socket: it decodes every
 * frame, answers every read itself, and queues appends (bounded: `busy` beyond queue_depth)
 * for the checker threads, which check the envelope (signature, worker allow-list, body) and
 * pass it to the writer thread. The writer takes whatever has queued up as one group,
 * commits it in one SQLite transaction (one fsync for the whole group) with a freshly signed
 * checkpoint, and only then are the appends answered.
 */
#ifndef SDM_SERVICE_LEDGER_H
#define SDM_SERVICE_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#define SDM_LEDGER_DEFAULT_ENDPOINT "tcp://127.0.0.1:7720"

typedef struct sdm_ledger_opts {
    const char *listen;       /* endpoint to bind; NULL: SDM_LEDGER_DEFAULT_ENDPOINT */
    const char *data_dir;     /* ledger.db and the key pair; required */
    const char *workers;      /* file of allowed worker public keys (hex, one a line), or NULL:
                                 any valid signature is accepted */
    const char *origin;       /* checkpoint origin / key name; NULL: stored or derived */
    const char *curve_secret; /* CURVE secret key file, or NULL */
    const char *allow;        /* allowed client CURVE public keys, with curve_secret */
    int insecure_bind;        /* allow a non-loopback endpoint without CURVE */
    int64_t max_msg;          /* ZMQ_MAXMSGSIZE; 0: 64 MiB */
    uint32_t queue_depth;     /* appends waiting for the writer before `busy`; 0: 8192 */
    uint32_t max_group;       /* appends per commit at most; 0: 1024 */
    uint32_t checkers;        /* threads checking signatures and bodies; 0: one a core, at
                                 least 1, at most 16 */
    int quiet;
} sdm_ledger_opts;

typedef struct sdm_ledger sdm_ledger_t;

/* Opens the data dir (making the key pair on first start), rebuilds and checks the log,
 * binds the socket. NULL with err set on failure (for instance when the stored entries do
 * not contain the last signed checkpoint). */
sdm_ledger_t *sdm_ledger_new(const sdm_ledger_opts *opts, char *err, size_t err_len);
const char *sdm_ledger_endpoint(const sdm_ledger_t *self);
const uint8_t *sdm_ledger_key(const sdm_ledger_t *self);
/* Serves until sdm_ledger_stop; then commits and answers the appends taken and returns 0
 * (-1 on a socket failure). */
int sdm_ledger_run(sdm_ledger_t *self);
/* Async-signal-safe. */
void sdm_ledger_stop(sdm_ledger_t *self);
void sdm_ledger_destroy(sdm_ledger_t **self_p);

#endif /* SDM_SERVICE_LEDGER_H */
