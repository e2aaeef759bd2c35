/* body.h - the ledger's reader of signed bodies: receipts and proofs checked field by field.
 *
 * The ledger accepts an entry once sdm_envelope_open has verified its signature, but a valid
 * signature says only that someone holding a key wrote these bytes: any Ed25519 key can sign
 * garbage. Before an entry is appended, its body must be exactly what sdm_receipt_encode or
 * sdm_proof_encode writes (SPEC §4): the known key set of its type, every field of the right
 * msgpack type and length, names the worker would have accepted, and the consistency a real
 * worker guarantees (a receipt's leaf hash, a proof's shares in [0, 1], ...). The reader then
 * extracts what the ledger indexes for `history` and `rewards` (SPEC §6).
 */
#ifndef SDM_SERVICE_BODY_H
#define SDM_SERVICE_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef enum sdm_body_type { SDM_BODY_RECEIPT = 0, SDM_BODY_PROOF = 1 } sdm_body_type;

/* The body's `type` string: "contribution" (receipt) or "attribution" (proof); "" for
 * anything else. Never NULL. */
const char *sdm_body_type_name(sdm_body_type type);

/* One contributor touched by an entry. */
typedef struct sdm_body_touch {
    char *contributor;  /* owned */
    char *shard;        /* owned; NULL in sdm_body.contributors rows */
    double score;       /* receipts: 0; proofs: summed over the proof's queries */
    double share;       /* receipts: 0; proofs: summed over the proof's queries */
} sdm_body_touch;

typedef struct sdm_body {
    sdm_body_type type;
    uint8_t worker[32];
    uint64_t issued_at;
    char *model;                    /* owned */
    /* receipt: one row (contributor, shard) unless it is a curvature batch (then none);
       proof: one row per distinct (shard, contributor) pair of the queries' `shards` lists,
       score and share summed over queries, in order of first appearance */
    sdm_body_touch *touches; size_t n_touches;
    /* proof only: one row per distinct contributor of the queries' `contributors` lists,
       score and share summed over queries, in order of first appearance (shard NULL) */
    sdm_body_touch *contributors; size_t n_contributors;
} sdm_body;

/* Reads a body (bytes from an envelope already opened by sdm_envelope_open; untrusted: any
 * valid Ed25519 key can sign garbage). signer is the envelope's key: the body's `worker` must
 * equal it. Returns SDM_WIRE_OK and fills *out (caller frees with sdm_body_free), or
 * SDM_WIRE_BAD_REQUEST with err->message naming the field (e.g.
 * "entry.body.queries[2].shards[0][2]: expected float64") and *out left zeroed;
 * SDM_WIRE_INTERNAL when out of memory.
 *
 * The bytes are bounded by sdm_wire_precheck before msgpack-c sees them (a frame over the
 * element budget is bad_request here too). Checked: the top is a map with string keys, each
 * once, exactly the keys its type's encoder writes; v is 1; type is "contribution" or
 * "attribution"; uints, float64s (finite; float32 and integers refused), bools and bin(32)s
 * where the encoders put them; names are 1 to SDM_WIRE_MAX_NAME bytes of UTF-8 without NUL.
 * Receipts: curvature batches have "" as contributor and shard (others both non-empty) and
 * the digest of nothing as ids_digest and weights_digest; leaf is the leaf hash of the
 * receipt's own fields; batch < store_size. Proofs: projection {kind, dim, seed, input_dim,
 * s (sjlt only)} a definition the worker registers; method dot/cosine/trak; lambda one finite
 * float64 per checkpoint for trak, empty otherwise; aggregate sum/mean; checkpoints [{id,
 * lr}] non-empty with distinct ids; request_id "" or a name; each query {id (uint
 * or UTF-8 str), shards [[shard, contributor, score, share]], contributors [[contributor,
 * score, share]], top and bottom [[example_id, shard, score]]} with every share in [0, 1]. */
sdm_wire_code sdm_body_read(const uint8_t *body, size_t len, const uint8_t signer[32],
                            sdm_body *out, sdm_wire_error *err);
void sdm_body_free(sdm_body *b);   /* NULL-safe, idempotent, zeroes */

#endif /* SDM_SERVICE_BODY_H */
