/* client.h - the C client of a sediment worker and ledger: one call per op of SPEC §6, typed
 * replies, and the offline checks of what they sign (envelopes, checkpoints, Merkle proofs).
 *
 * A client holds one ZeroMQ DEALER connection to one server (a worker or a ledger). Each
 * call sends one request, waits for its reply (at most the timeout), checks the reply before
 * trusting any of it (bounded pre-check, echoed id, types of the fields the op promises) and
 * hands it back as an sdm_reply_t: typed getters by field path, the signed envelope
 * (receipt, proof, entry) as raw bytes, and the whole reply as JSON text. No ZeroMQ or
 * msgpack type appears here.
 *
 * Ownership: strings and arrays passed in are borrowed for the call. A reply returned
 * through `out` is the caller's, freed with sdm_reply_destroy; pointers read from it stay
 * valid until then. Handles are freed with *_destroy, which is NULL-safe, idempotent and
 * clears the caller's pointer.
 *
 * Threads: a client is used by one thread at a time.
 */
#ifndef SEDIMENT_CLIENT_H
#define SEDIMENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a call came to. The server's error codes (SPEC §6) come first, in SPEC order, so a
 * status between SDM_CLIENT_BAD_REQUEST and SDM_CLIENT_INTERNAL is "the server replied
 * with this error"; the rest happened on this side. */
typedef enum sdm_client_status {
    SDM_CLIENT_OK = 0,
    SDM_CLIENT_BAD_REQUEST, /* server: the request was malformed (the message names the field) */
    SDM_CLIENT_UNKNOWN_OP,
    SDM_CLIENT_TOO_LARGE,
    SDM_CLIENT_NOT_FOUND, /* server: unknown model, checkpoint, ... */
    SDM_CLIENT_CONFLICT,  /* server: a different definition, a duplicate example id, ... */
    SDM_CLIENT_UNAUTHORIZED,
    SDM_CLIENT_BUSY,
    SDM_CLIENT_INTERNAL,
    SDM_CLIENT_TIMEOUT,      /* no reply within the timeout (the request may still be applied) */
    SDM_CLIENT_TRANSPORT,    /* ZeroMQ refused to connect, send or receive */
    SDM_CLIENT_BAD_REPLY,    /* the reply was malformed, had the wrong id or lacked a field */
    SDM_CLIENT_BAD_ARGUMENT, /* an argument of the call was unusable; nothing was sent */
    SDM_CLIENT_NOMEM,
} sdm_client_status;

/* The wire code name for a server error ("not_found", ...), else "ok", "timeout",
 * "transport", "bad_reply", "bad_argument", "nomem". Never NULL. */
const char *sdm_client_status_str(sdm_client_status status);
/* Non-zero when the status is an error reply from the server. */
int sdm_client_status_is_server(sdm_client_status status);

typedef struct sdm_client_opts {
    int timeout_ms; /* per call; 0: 60000 */
    /* CURVE (all three, or none): Z85 text of 40 characters as zmq_curve_keypair makes it */
    const char *server_key; /* the worker's public key */
    const char *public_key; /* this client's key pair */
    const char *secret_key;
    int64_t max_reply_bytes; /* replies larger than this are dropped; 0: 1 GiB */
} sdm_client_opts;

typedef struct sdm_client sdm_client_t;
typedef struct sdm_reply sdm_reply_t;

/* A client of the worker at endpoint (e.g. "tcp://127.0.0.1:7710"); opts may be NULL.
 * Connecting is asynchronous: a worker that is not there shows up as a timeout on the
 * first call. NULL on a bad endpoint or key, with err set. */
sdm_client_t *sdm_client_new(const char *endpoint, const sdm_client_opts *opts, char *err,
                             size_t err_len);
void sdm_client_destroy(sdm_client_t **self_p);

/* The status and message of the client's last call: for an error reply the server's
 * message ("model 'm1' is not registered"), else what went wrong here. "" after success. */
sdm_client_status sdm_client_last_status(const sdm_client_t *self);
const char *sdm_client_last_error(const sdm_client_t *self);

/* ---- ops ------------------------------------------------------------------------------ */
/* Each returns SDM_CLIENT_OK and the reply in *out, or an error status with *out NULL.
 * The reply's fields are those of docs/protocol.md; each call checks the ones it lists. */

/* info: version, backend, device (strings), worker_key (bin 32), models (see
 * sdm_reply_model). */
SDM_NODISCARD sdm_client_status sdm_client_info(sdm_client_t *self, sdm_reply_t **out);

/* register: proj->input_dim is the model's input dim; proj->s is sent for sjlt only (0:
 * the default, 1). Reply: model, created (bool). */
SDM_NODISCARD sdm_client_status sdm_client_register(sdm_client_t *self, const char *model,
                                                    const sdm_projection *proj, sdm_reply_t **out);

/* contribute one batch (a training batch, or curvature rows when batch->curvature).
 * n = batch->rows.rows; batch->ids must hold n ids (training batches), batch->weights n
 * values or NULL. Reply: batch, leaf (bin 32), store_size, store_root (bin 32), receipt
 * (the signed envelope: sdm_reply_envelope). The reply comes once the batch is durable. */
SDM_NODISCARD sdm_client_status sdm_client_contribute(sdm_client_t *self, const char *model,
                                                      const sdm_batch *batch, sdm_reply_t **out);

typedef struct sdm_client_attr {
    const char *model;
    size_t n_queries;         /* checkpoints */
    const sdm_query *queries; /* one per checkpoint, all with the same is_features
                               * (features go as `query_features`); their `lambda`
                               * is not sent: see has_lambda */
    sdm_method method;
    sdm_aggregate aggregate;
    int topk;                  /* < 0: the server's default (10); 0: scores only */
    int has_lambda;            /* trak: send `lambda` */
    double lambda;             /* one lambda for every checkpoint */
    const uint64_t *query_ids; /* m ids, or NULL (the proof numbers them 0..m-1) */
    const char *request_id;    /* or NULL */
} sdm_client_attr;

/* attribute. Reply: proof (the signed envelope: sdm_reply_envelope) and result (its
 * queries: sdm_reply_query). */
SDM_NODISCARD sdm_client_status sdm_client_attribute(sdm_client_t *self, const sdm_client_attr *req,
                                                     sdm_reply_t **out);

/* stats: requests, ops.<op>, errors.<code>, batches, examples, bytes, compute_seconds,
 * uptime_seconds. */
SDM_NODISCARD sdm_client_status sdm_client_stats(sdm_client_t *self, sdm_reply_t **out);

/* ---- replies -------------------------------------------------------------------------- */

/* Reads a msgpack map (a reply, or the body of an envelope) into a reply, after the same
 * bounded pre-check the client applies to every frame. buf is copied. NULL with err set
 * when it is not a well-formed map with string keys, or its `queries`/`result` or
 * `models` are malformed. */
sdm_reply_t *sdm_reply_parse(const uint8_t *buf, size_t len, char *err, size_t err_len);
void sdm_reply_destroy(sdm_reply_t **self_p);

/* Typed getters. `path` names a field by its keys, with "." between levels and decimal
 * indices for arrays: "store_size", "errors.not_found", "models.0.projection.kind".
 * Each returns 0 and the value, or -1 when the field is absent or of another type.
 * sdm_reply_f64 takes integers too; sdm_reply_u64 takes non-negative integers only. */
int sdm_reply_has(const sdm_reply_t *self, const char *path);
int sdm_reply_u64(const sdm_reply_t *self, const char *path, uint64_t *out);
int sdm_reply_i64(const sdm_reply_t *self, const char *path, int64_t *out);
int sdm_reply_f64(const sdm_reply_t *self, const char *path, double *out);
int sdm_reply_bool(const sdm_reply_t *self, const char *path, int *out);
/* NUL-terminated (a string holding NUL bytes is refused); borrowed from the reply. */
const char *sdm_reply_str(const sdm_reply_t *self, const char *path);
/* Binary fields (leaf, store_root, worker_key, receipt, ...); borrowed. */
const uint8_t *sdm_reply_bin(const sdm_reply_t *self, const char *path, size_t *len);
/* Number of items of an array or entries of a map; -1 when absent or neither. */
int64_t sdm_reply_count(const sdm_reply_t *self, const char *path);
/* The key of entry i of the map at path (NULL: the reply itself); borrowed, or NULL. */
const char *sdm_reply_key(const sdm_reply_t *self, const char *path, size_t i);

/* The signed envelope a reply carries (`receipt` of contribute, `proof` of attribute, `entry`
 * of a ledger's entry: a msgpack array inside the reply), as its exact bytes, to store,
 * forward to a ledger or verify (sdm_client_open_envelope); NULL when there is none. */
const uint8_t *sdm_reply_envelope(const sdm_reply_t *self, size_t *len);

/* The reply as one JSON object: binary as lower-case hex, non-finite floats as null, and
 * the envelope (receipt, proof, entry) as the hex of its exact bytes, ready to be saved as a
 * file for `sediment verify`. The caller frees it; NULL when out of memory. */
char *sdm_reply_json(const sdm_reply_t *self);

/* info's models, in order of registration. */
typedef struct sdm_model_info {
    const char *model;
    uint64_t input_dim;
    const char *kind; /* "rademacher", "sjlt", "none" */
    uint64_t dim;
    uint64_t seed;
    uint64_t s; /* 0 when the reply gives none */
    uint64_t store_size;
    const uint8_t *store_root; /* 32 bytes */
} sdm_model_info;

size_t sdm_reply_n_models(const sdm_reply_t *self);
const sdm_model_info *sdm_reply_model(const sdm_reply_t *self, size_t i); /* NULL out of range */

/* One query of an attribution (the reply's `result`, or a proof body's `queries`). */
typedef struct sdm_score_entry {
    const char *shard; /* NULL in a contributor entry */
    const char *contributor;
    double score;
    double share;
} sdm_score_entry;

typedef struct sdm_hit_entry {
    uint64_t example_id;
    const char *shard;
    double score;
} sdm_hit_entry;

typedef struct sdm_query_result {
    const char *id; /* the query id as text: "0", "17" or a string id */
    size_t n_shards;
    const sdm_score_entry *shards;
    size_t n_contributors;
    const sdm_score_entry *contributors;
    size_t n_top;
    const sdm_hit_entry *top; /* highest first */
    size_t n_bottom;
    const sdm_hit_entry *bottom; /* lowest first */
} sdm_query_result;

size_t sdm_reply_n_queries(const sdm_reply_t *self);
const sdm_query_result *sdm_reply_query(const sdm_reply_t *self, size_t i);

/* ---- envelopes ------------------------------------------------------------------------ */

/* Opens a signed envelope (SPEC §4) offline: checks its form and the Ed25519 signature over
 * its body. On SDM_CLIENT_OK *body is the decoded body (the caller's) and key the signer's
 * public key. SDM_CLIENT_BAD_REPLY: malformed (err says where); SDM_CLIENT_UNAUTHORIZED:
 * the signature does not hold. */
SDM_NODISCARD sdm_client_status sdm_client_open_envelope(const uint8_t *env, size_t env_len,
                                                         sdm_reply_t **body, uint8_t key[32],
                                                         char *err, size_t err_len);

/* ---- ledger ops ----------------------------------------------------------------------- */
/* The same client talks to a sediment-ledger (docs/ledger.md); each call checks the fields
 * its op promises, as the worker calls do. None of these replies is evidence by itself:
 * check a checkpoint with sdm_client_checkpoint_verify and entries and proofs against it. */

/* info: version, origin (strings), ledger_key (bin 32), size, workers (an array of bin 32
 * keys, or nil when the ledger accepts any valid signature). */
SDM_NODISCARD sdm_client_status sdm_client_ledger_info(sdm_client_t *self, sdm_reply_t **out);

/* append one signed envelope (its exact bytes: one msgpack array, as sdm_reply_envelope
 * gives it). Reply: index, leaf_hash (bin 32), size, checkpoint (the signed note of the
 * commit; nil in the rare reply whose note the ledger had no memory to copy), duplicate. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_append(sdm_client_t *self, const uint8_t *env,
                                                         size_t env_len, sdm_reply_t **out);

/* checkpoint: checkpoint (the latest signed note, a string). */
SDM_NODISCARD sdm_client_status sdm_client_ledger_checkpoint(sdm_client_t *self, sdm_reply_t **out);

/* entry: entry, the envelope at index; its exact bytes are sdm_reply_envelope. not_found at
 * or beyond the log's size. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_entry(sdm_client_t *self, uint64_t index,
                                                        sdm_reply_t **out);

/* inclusion of entry index in the tree of the first size entries. Reply: leaf_hash (bin 32)
 * and hashes (at most 64 bin 32: sdm_reply_hashes). */
SDM_NODISCARD sdm_client_status sdm_client_ledger_inclusion(sdm_client_t *self, uint64_t index,
                                                            uint64_t size, sdm_reply_t **out);

/* consistency between the trees of the first `from` and `to` entries. Reply: hashes. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_consistency(sdm_client_t *self, uint64_t from,
                                                              uint64_t to, sdm_reply_t **out);

/* A window of issued_at times (unix ns), since <= issued_at < until; either end optional. */
typedef struct sdm_client_window {
    int has_since;
    uint64_t since;
    int has_until;
    uint64_t until;
} sdm_client_window;

/* history of a contributor; window may be NULL, limit 0 is the ledger's default (1000).
 * Reply: entries, each {index, issued_at, type, model, shard, score, share} with score and
 * share nil for receipts ("entries.0.index", ...). */
SDM_NODISCARD sdm_client_status sdm_client_ledger_history(sdm_client_t *self,
                                                          const char *contributor,
                                                          const sdm_client_window *window,
                                                          uint64_t limit, sdm_reply_t **out);

/* rewards: pool units split by the attribution proofs in the window (NULL: all) and of
 * model (NULL: every model). Reply: allocations [[contributor, amount]], flagged
 * [contributor], unallocated. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_rewards(sdm_client_t *self, uint64_t pool,
                                                          const sdm_client_window *window,
                                                          const char *model, sdm_reply_t **out);

/* Called with each entry's exact envelope bytes, in index order; the bytes are borrowed for
 * the call. Returns 0 to go on, anything else to stop the fetch. */
typedef int (*sdm_client_entry_fn)(void *ctx, uint64_t index, const uint8_t *env, size_t env_len);

/* Fetches entries [from, to) with up to `window` requests in flight (0: 64; at most 1024),
 * so that reading a whole log costs about one round trip per window rather than per entry.
 * Each reply is checked as sdm_client_ledger_entry checks it. Returns SDM_CLIENT_OK once fn
 * has seen every entry or asked to stop, else the first failure (its message names the
 * index); replies still in flight are dropped. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_entries(sdm_client_t *self, uint64_t from,
                                                          uint64_t to, unsigned window,
                                                          sdm_client_entry_fn fn, void *ctx);

/* Supplies the envelope of append k (0, 1, ...) of sdm_client_ledger_appends: its exact
 * bytes, one msgpack array, borrowed until fn is called again or the run ends. Returns 0, or
 * anything else to stop the run. */
typedef int (*sdm_client_envelope_fn)(void *ctx, uint64_t k, const uint8_t **env, size_t *env_len);
/* Called with the reply of append k (fields as sdm_client_ledger_append's), in the order the
 * appends were sent; the reply is borrowed for the call. Returns 0 to go on, anything else
 * to stop. */
typedef int (*sdm_client_append_fn)(void *ctx, uint64_t k, const sdm_reply_t *reply);

/* Appends n envelopes with up to `window` appends in flight (0: 64; at most 1024). The
 * ledger logs the appends of one connection in the order they were sent and commits those
 * in flight together, so this is many times faster than one append at a time. Each reply is
 * checked as sdm_client_ledger_append checks it. Returns SDM_CLIENT_OK once on_reply has
 * seen n replies or asked to stop, else the first failure, its message naming k: the
 * ledger's error for append k, no reply, or SDM_CLIENT_BAD_ARGUMENT when next stopped or
 * gave bytes that are not one msgpack array (that one is not sent). Appends already sent
 * after a failed one may still be applied; their replies are dropped. */
SDM_NODISCARD sdm_client_status sdm_client_ledger_appends(sdm_client_t *self, uint64_t n,
                                                          unsigned window,
                                                          sdm_client_envelope_fn next,
                                                          sdm_client_append_fn on_reply, void *ctx);

/* The array of 32-byte hashes at path ("hashes" of an inclusion or consistency reply) into
 * out[0..max). 0 and *n, or -1 when absent, not such an array, or longer than max. */
int sdm_reply_hashes(const sdm_reply_t *self, const char *path, uint8_t (*out)[32], size_t max,
                     size_t *n);

/* ---- checkpoints and Merkle proofs (offline) -------------------------------------------- */

#define SDM_CLIENT_ORIGIN_MAX 255

/* A ledger checkpoint whose signature has been checked. */
typedef struct sdm_ledger_checkpoint {
    char origin[SDM_CLIENT_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[32];
    uint8_t key[32]; /* the Ed25519 key that signed it */
} sdm_ledger_checkpoint;

/* The note verifier key "<origin>+<8 hex key id>+<base64(0x01 || key)>" of a ledger (the
 * form Go's golang.org/x/mod/sumdb/note reads); the caller frees it. NULL when origin is not
 * a valid key name (1 to 255 bytes, no space, '+' or control character) or out of memory. */
char *sdm_client_verifier_key(const char *origin, const uint8_t key[32]);

/* Opens a signed checkpoint (a C2SP signed-note of len bytes holding a tlog-checkpoint) with
 * a verifier key string: the note must carry a valid signature by that key, and the
 * checkpoint's origin must be the key's name. On SDM_CLIENT_OK *cp is filled.
 * SDM_CLIENT_BAD_ARGUMENT: vkey is malformed; SDM_CLIENT_BAD_REPLY: the note or checkpoint
 * is malformed; SDM_CLIENT_UNAUTHORIZED: not signed by that key, a signature that does not
 * hold, or another origin. err says which. */
SDM_NODISCARD sdm_client_status sdm_client_checkpoint_verify(const char *note, size_t len,
                                                             const char *vkey,
                                                             sdm_ledger_checkpoint *cp, char *err,
                                                             size_t err_len);
/* The same with the ledger's origin and Ed25519 public key (as its `info` reports them). */
SDM_NODISCARD sdm_client_status sdm_client_checkpoint_verify_key(const char *note, size_t len,
                                                                 const char *origin,
                                                                 const uint8_t key[32],
                                                                 sdm_ledger_checkpoint *cp,
                                                                 char *err, size_t err_len);

/* A ledger entry's leaf hash: SHA-256(0x00 || envelope bytes) (SPEC §5). */
void sdm_client_leaf_hash(const uint8_t *env, size_t env_len, uint8_t out[32]);

/* Checks that the envelope env (exact bytes) is entry `index` of the tree cp commits to,
 * given the inclusion path (the `hashes` of an inclusion reply for index and cp->size).
 * SDM_CLIENT_OK, SDM_CLIENT_BAD_ARGUMENT (index is not below cp->size) or
 * SDM_CLIENT_UNAUTHORIZED (the proof does not hold); err says which. */
SDM_NODISCARD sdm_client_status sdm_client_verify_inclusion(
    const sdm_ledger_checkpoint *cp, uint64_t index, const uint8_t *env, size_t env_len,
    const uint8_t (*path)[32], size_t n_path, char *err, size_t err_len);

/* Checks that checkpoint new_cp extends old_cp: same origin and key, old size <= new size,
 * and the consistency path (the `hashes` of a consistency reply from old to new size) links
 * the two roots. SDM_CLIENT_OK or SDM_CLIENT_UNAUTHORIZED with err saying why. */
SDM_NODISCARD sdm_client_status sdm_client_verify_consistency(const sdm_ledger_checkpoint *old_cp,
                                                              const sdm_ledger_checkpoint *new_cp,
                                                              const uint8_t (*path)[32],
                                                              size_t n_path, char *err,
                                                              size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* SEDIMENT_CLIENT_H */
