/* sign.h - keys, digests and the signed objects of SPEC §4: envelopes, receipts, proofs.
 *
 * Secret keys live in sodium_malloc memory (guarded, locked, wiped on free). Bodies are
 * encoded once, signed as bytes and never re-encoded: verifiers check the exact bytes.
 */
#ifndef SDM_SERVICE_SIGN_H
#define SDM_SERVICE_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "merkle.h"
#include "sediment/engine.h"
#include "wire.h"

#define SDM_ENVELOPE_TAG SDM_ENVELOPE_TAG_STR
#define SDM_PK_LEN 32
#define SDM_SK_LEN 64
#define SDM_SIG_LEN 64

/* Calls sodium_init once; 0 on success. Every function here calls it. */
int sdm_sodium_init(void);

typedef struct sdm_keypair {
    uint8_t pk[SDM_PK_LEN];
    uint8_t *sk; /* SDM_SK_LEN bytes in sodium_malloc memory */
} sdm_keypair;

/* Loads `<dir>/<name>.key` (the 64-byte secret key as 128 hex digits and a newline, mode
 * 0600) or, when absent, makes a new pair and writes it there (created 0600, fsynced)
 * together with `<dir>/<name>.pub` (64 hex digits). Refuses a key file readable by group
 * or others, or one whose public half does not match. NULL on failure, with err set. */
sdm_keypair *sdm_keypair_load_or_create(const char *dir, const char *name, char *err,
                                        size_t err_len);
/* Loads a secret key file as written above. (CURVE keys for --curve-secret are Z85 text: see
 * docs/protocol.md.) */
sdm_keypair *sdm_keypair_load(const char *path, char *err, size_t err_len);
void sdm_keypair_destroy(sdm_keypair **self_p);

/* Lower-case hex of n bytes into out (2n+1 bytes). Parses exactly 2n hex digits: 0 or -1. */
void sdm_hex(const uint8_t *bytes, size_t n, char *out);
int sdm_unhex(const char *hex, uint8_t *out, size_t n);

/* Reads a list of worker public keys (the ledger's --workers, the CLI audit's --workers):
 * one key a line as 64 hex digits; blank lines, '#' and what follows it, and anything after
 * the key's first blank (a label) are ignored. On success *keys is a malloc'd array of *n >= 1
 * keys and 0 is returned; else -1 with a message naming flag and the file (and its line) in
 * err, and nothing allocated. */
int sdm_worker_keys_load(const char *flag, const char *path, uint8_t (**keys)[SDM_PK_LEN],
                         size_t *n, char *err, size_t err_len);

/* SPEC §4 digests (SHA-256). */
void sdm_digest_ids(const uint64_t *ids, uint64_t n, uint8_t out[SDM_HASH_LEN]);     /* LE u64 */
void sdm_digest_weights(const double *w, uint64_t n, uint8_t out[SDM_HASH_LEN]);     /* LE f64; n=0 or w=NULL: of nothing */
void sdm_digest_bytes(const uint8_t *b, size_t n, uint8_t out[SDM_HASH_LEN]);

/* Envelope ["sediment-signed-v1", body: bin, key: bin(32), sig: bin(64)] over body bytes.
 * *env is malloc'd (caller frees). 0, or -1 when out of memory. */
int sdm_envelope_sign(const sdm_keypair *kp, const uint8_t *body, size_t body_len,
                      uint8_t **env, size_t *env_len);
/* Parses an envelope (bounded: it may come from anyone) and checks its signature.
 * On success body points into env and key receives the signer's public key.
 * Returns SDM_WIRE_OK, SDM_WIRE_BAD_REQUEST (malformed, field named) or
 * SDM_WIRE_UNAUTHORIZED (bad signature). On SDM_WIRE_UNAUTHORIZED body, body_len and key are
 * set too (to the unverified values, for diagnostics); on BAD_REQUEST they are untouched. */
sdm_wire_code sdm_envelope_open(const uint8_t *env, size_t env_len, const uint8_t **body,
                                size_t *body_len, uint8_t key[SDM_PK_LEN], sdm_wire_error *err);

/* A batch as it enters the model's tree (SPEC §5). */
typedef struct sdm_leaf_fields {
    const char *model;
    const char *checkpoint;
    double lr;
    const char *contributor; /* "" for curvature batches */
    const char *shard;       /* "" for curvature batches */
    uint64_t n;
    uint8_t ids_digest[SDM_HASH_LEN];
    uint8_t data_digest[SDM_HASH_LEN];
    uint8_t weights_digest[SDM_HASH_LEN];
    int curvature;
} sdm_leaf_fields;

/* The leaf data msgpack array [model, checkpoint, lr, contributor, shard, n, ids_digest,
 * data_digest, weights_digest, curvature], shortest forms, lr as float64; malloc'd. */
int sdm_leaf_encode(const sdm_leaf_fields *f, uint8_t **data, size_t *len);
/* SHA-256(0x00 || leaf data). 0, or -1 when out of memory. */
int sdm_leaf_hash(const sdm_leaf_fields *f, uint8_t out[SDM_HASH_LEN]);

/* Receipt body (type "contribution"). */
typedef struct sdm_receipt {
    sdm_leaf_fields leaf_fields;
    uint8_t worker[SDM_PK_LEN];
    uint64_t issued_at; /* unix ns */
    uint64_t batch;
    uint8_t leaf[SDM_HASH_LEN];
    uint64_t store_size;
    uint8_t store_root[SDM_HASH_LEN];
} sdm_receipt;

/* Encodes a receipt body map: v, type, worker, issued_at, model, checkpoint, lr,
 * contributor, shard, n, batch, leaf, store_size, store_root, ids_digest, data_digest,
 * weights_digest, curvature. Curvature batches carry "" as contributor and shard. malloc'd. */
int sdm_receipt_encode(const sdm_receipt *r, uint8_t **body, size_t *len);

/* Proof body (type "attribution"). */
typedef struct sdm_proof {
    uint8_t worker[SDM_PK_LEN];
    uint64_t issued_at;
    const char *model;
    const sdm_projection *projection; /* packed {kind, dim, seed, input_dim, s (sjlt only)} */
    sdm_method method;
    sdm_aggregate aggregate;
    size_t n_checkpoints;
    const char *const *checkpoints;   /* ids, in the order the proof lists them */
    const double *lrs;
    const double *lambdas;            /* per checkpoint, used only when method is trak */
    uint64_t store_size;
    uint8_t store_root[SDM_HASH_LEN];
    uint8_t query_digest[SDM_HASH_LEN];
    const char *request_id;           /* "" when the request had none */
    const sdm_attr_result *result;
    const uint8_t *const *query_ids;  /* raw msgpack per query, or NULL: 0..m-1 */
    const size_t *query_id_lens;
} sdm_proof;

/* Encodes the proof body map: v, type, worker, issued_at, model, projection, method,
 * lambda, aggregate, checkpoints [{id, lr}], store_size, store_root, query_digest,
 * request_id, queries (SPEC §4, scores float64). malloc'd. */
int sdm_proof_encode(const sdm_proof *p, uint8_t **body, size_t *len);
/* Packs just the `queries` array of a proof (the reply's `result`). */
void sdm_proof_pack_queries(msgpack_packer *pk, const sdm_proof *p);

#endif /* SDM_SERVICE_SIGN_H */
