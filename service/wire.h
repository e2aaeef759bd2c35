/* wire.h - the wire codec (SPEC §6): bounded msgpack pre-check, request decoding, replies.
 *
 * msgpack-c has no limits of its own (a five-byte map header asks for gigabytes), so every
 * frame goes through sdm_wire_precheck first: it walks the bytes without allocating, checks
 * every length against the bytes left, counts elements against a budget, bounds the depth
 * and rejects trailing bytes. Only then does msgpack-c unpack it, and the decoder checks
 * every field's type, range and length before the server changes anything.
 */
#ifndef SDM_SERVICE_WIRE_H
#define SDM_SERVICE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "sediment/engine.h"

/* Error codes of SPEC §6, in the order listed there. */
typedef enum sdm_wire_code {
    SDM_WIRE_OK = 0,
    SDM_WIRE_BAD_REQUEST,
    SDM_WIRE_UNKNOWN_OP,
    SDM_WIRE_TOO_LARGE,
    SDM_WIRE_NOT_FOUND,
    SDM_WIRE_CONFLICT,
    SDM_WIRE_UNAUTHORIZED,
    SDM_WIRE_BUSY,
    SDM_WIRE_INTERNAL,
} sdm_wire_code;

#define SDM_WIRE_CODES 9

/* "bad_request", "unknown_op", ...; "ok" for SDM_WIRE_OK. Never NULL. */
const char *sdm_wire_code_name(sdm_wire_code code);
/* The wire code an engine status maps to (bad_input -> bad_request, ...). */
sdm_wire_code sdm_wire_code_of_status(sdm_status status);

typedef struct sdm_wire_error {
    sdm_wire_code code;
    char message[256]; /* names the field, e.g. "grads.data: 396 bytes, expected 400" */
} sdm_wire_error;

/* Records code and a formatted message in err (which may be NULL); returns code. */
sdm_wire_code sdm_wire_fail(sdm_wire_error *err, sdm_wire_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define SDM_WIRE_MAX_DEPTH 32          /* nesting deeper than this is bad_request */
#define SDM_WIRE_MAX_NAME 256          /* bytes in a model/checkpoint/shard/contributor name */
#define SDM_WIRE_MAX_TOPK 100000

typedef struct sdm_wire_limits {
    uint32_t max_depth;    /* 0: SDM_WIRE_MAX_DEPTH */
    uint64_t max_elements; /* array elements + map entries in the whole frame; 0: 1 << 24 */
} sdm_wire_limits;

/* Walks exactly one msgpack object spanning buf[0, len): no allocation, every str/bin/ext
 * length and array/map count checked against the bytes left (an element takes at least
 * one byte), the element budget and the depth bounded, nothing after the object.
 * Returns SDM_WIRE_OK, SDM_WIRE_TOO_LARGE over the element budget, or SDM_WIRE_BAD_REQUEST,
 * with a message saying where it failed. */
sdm_wire_code sdm_wire_precheck(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                sdm_wire_error *err);

/* ---- worker requests ------------------------------------------------------------------- */

typedef enum sdm_worker_op {
    SDM_OP_INFO = 0,
    SDM_OP_REGISTER,
    SDM_OP_CONTRIBUTE,
    SDM_OP_ATTRIBUTE,
    SDM_OP_STATS,
} sdm_worker_op;

/* The op's name on the wire ("info", "register", ...); "?" out of range. Never NULL. */
const char *sdm_wire_op_name(sdm_worker_op op);

/* The queries at one checkpoint of an `attribute` request. */
typedef struct sdm_wire_query {
    char *checkpoint;      /* owned */
    sdm_matrix rows;       /* data borrowed from the frame (not aligned) */
    const uint8_t *bytes;  /* the matrix's `data` bytes as received (for query_digest) */
    size_t n_bytes;
    double lambda;         /* NaN when the request gives none for this checkpoint */
} sdm_wire_query;

/* A decoded worker request. Pointers marked "frame" borrow from the buffer given to
 * sdm_wire_decode_worker, which must outlive the request; everything else is owned and
 * freed by sdm_worker_request_free. */
typedef struct sdm_worker_request {
    sdm_worker_op op;
    const uint8_t *id; /* frame: the raw msgpack bytes of "id", echoed in the reply; */
    size_t id_len;     /* NULL/0 when the request has none (the reply then carries nil) */

    char *model; /* register, contribute, attribute */

    /* register: projection.input_dim is the request's input_dim */
    sdm_projection projection;

    /* contribute */
    char *checkpoint;
    double lr;
    char *contributor;          /* NULL for curvature batches */
    char *shard;                /* NULL for curvature batches */
    int curvature;
    uint64_t *example_ids;      /* n, NULL for curvature batches */
    sdm_matrix rows;            /* grads (n x d) or features (n x k); data in the frame */
    int is_features;            /* the request sent `features` */
    const uint8_t *data_bytes;  /* frame: the matrix's `data` bytes (for data_digest) */
    size_t n_data_bytes;
    double *weights;            /* n, or NULL when absent */

    /* attribute */
    sdm_wire_query *queries;    /* one per checkpoint, in the request's key order */
    size_t n_queries;
    int queries_are_features;   /* `query_features` rather than `queries` */
    sdm_method method;
    sdm_aggregate aggregate;
    uint32_t topk;              /* default 10 */
    const uint8_t **query_ids;  /* m raw msgpack values (uint or str) from the frame, */
    size_t *query_id_lens;      /* or NULL when absent (the proof then numbers them 0..m-1) */
    char *request_id;           /* NULL when absent */
} sdm_worker_request;

/* Pre-checks and decodes one worker request frame. Validates everything that does not
 * need server state: known op, every key known for the op, types, names (1 to
 * SDM_WIRE_MAX_NAME bytes, no NUL), matrix dtype/rows/cols/len(data) without overflow,
 * lengths that must agree (example_ids, weights, rows), finite lr and weights, topk
 * bound, distinct checkpoints, the same m at every checkpoint. Element values of matrices
 * (NaN/Inf) are left to the engine, which checks them before any state changes.
 * On failure returns the code (bad_request, unknown_op) with err naming the field and
 * still fills req->id when the frame had a readable "id", so the reply can echo it;
 * req must then be freed too. */
sdm_wire_code sdm_wire_decode_worker(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                     sdm_worker_request *req, sdm_wire_error *err);
void sdm_worker_request_free(sdm_worker_request *req);

/* ---- ledger requests ------------------------------------------------------------------- */

/* The envelope's first element (SPEC §4); sign.h's SDM_ENVELOPE_TAG is the same string. */
#define SDM_ENVELOPE_TAG_STR "sediment-signed-v1"
#define SDM_WIRE_DEFAULT_HISTORY 1000  /* history entries when the request gives no limit */
#define SDM_WIRE_MAX_HISTORY 100000

typedef enum sdm_ledger_op {
    SDM_LOP_INFO = 0,
    SDM_LOP_APPEND,
    SDM_LOP_CHECKPOINT,
    SDM_LOP_ENTRY,
    SDM_LOP_INCLUSION,
    SDM_LOP_CONSISTENCY,
    SDM_LOP_HISTORY,
    SDM_LOP_REWARDS,
} sdm_ledger_op;

/* The ledger op's name on the wire ("info", "append", ...); "?" out of range. Never NULL. */
const char *sdm_wire_ledger_op_name(sdm_ledger_op op);

/* A decoded ledger request. Every key the op takes is required except id, since, until,
 * limit and model. */
typedef struct sdm_ledger_request {
    sdm_ledger_op op;
    const uint8_t *id; /* frame: raw msgpack bytes of "id", or NULL */
    size_t id_len;
    uint8_t *entry;    /* append: the envelope re-packed canonically (owned); its signature */
    size_t entry_len;  /* and body are checked by the ledger */
    uint64_t index, size; /* entry, inclusion (index < size) */
    uint64_t from, to;    /* consistency (from <= to) */
    char *contributor;    /* history (owned) */
    char *model;          /* rewards, optional (owned) */
    int has_since, has_until, has_limit;
    uint64_t since, until; /* issued_at window [since, until), unix ns */
    uint64_t limit;        /* history: 1..SDM_WIRE_MAX_HISTORY, default SDM_WIRE_DEFAULT_HISTORY */
    uint64_t pool;         /* rewards */
} sdm_ledger_request;

/* Pre-checks and decodes one ledger request frame (same bounds and rules as the worker's).
 * On failure req->id is still filled when readable; req must be freed either way. */
sdm_wire_code sdm_wire_decode_ledger(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                     sdm_ledger_request *req, sdm_wire_error *err);
void sdm_ledger_request_free(sdm_ledger_request *req);

/* ---- replies ---------------------------------------------------------------------------- */

/* Starts a success reply: a map of 2 + n_fields entries, "id" (the raw bytes, or nil) and
 * "ok": true. The caller packs n_fields key/value pairs after it. */
void sdm_wire_reply_ok(msgpack_packer *pk, const uint8_t *id, size_t id_len, uint32_t n_fields);
/* Packs a whole error reply {"id", "ok": false, "error": {"code", "message"}}. */
void sdm_wire_reply_error(msgpack_packer *pk, const uint8_t *id, size_t id_len,
                          const sdm_wire_error *err);
/* Packs a NUL-terminated string. */
void sdm_wire_pack_str(msgpack_packer *pk, const char *s);
/* Packs raw, already-encoded msgpack bytes as they are. */
void sdm_wire_pack_raw(msgpack_packer *pk, const uint8_t *raw, size_t len);

/* ---- helpers for other decoders (the ledger's body reader) ----------------------------- */

/* Whether s[0, n) is valid UTF-8: no overlong forms, surrogates or code points above
 * U+10FFFF. NUL bytes are valid UTF-8; names check for them separately. */
int sdm_wire_utf8_valid(const uint8_t *s, size_t n);
/* Copies n bytes of s into out (cap >= 4 bytes) as printable ASCII, other bytes as \xNN,
 * cut with "..." to fit; returns out. Untrusted bytes go into messages only through here. */
const char *sdm_wire_printable(char *out, size_t cap, const void *s, size_t n);

#endif /* SDM_SERVICE_WIRE_H */
