/* engine.h - sediment's compute engine: projections, feature store, attribution.
 *
 * Implements SPEC §2 (projections) and §3 (scores, shard and contributor aggregation,
 * shares, top-k) behind one interface with a CPU and a CUDA backend. No CUDA, ZeroMQ or
 * msgpack types appear here.
 *
 * Ownership: `const` pointers passed in are borrowed for the duration of the call; handles
 * returned by *_new are the caller's and are released with the matching *_destroy, which is
 * NULL-safe, idempotent and clears the caller's pointer.
 *
 * Threads: an engine and the stores made with it are used by one thread at a time; the
 * caller serialises access (the engine itself uses several threads inside a call). The one
 * exception: sdm_store_check may run on another thread during sdm_attribute on the same
 * store (it reads nothing an attribution changes; last errors are kept per thread).
 */
#ifndef SEDIMENT_ENGINE_H
#define SEDIMENT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SDM_NODISCARD __attribute__((warn_unused_result))
#else
#define SDM_NODISCARD
#endif

#define SDM_VERSION "0.1.0"

typedef enum sdm_status {
    SDM_OK = 0,
    SDM_ERR_NOMEM,       /* an allocation failed (host or device) */
    SDM_ERR_BAD_INPUT,   /* an argument is malformed; the message names the field */
    SDM_ERR_NOT_FOUND,   /* an unknown checkpoint, shard or example id */
    SDM_ERR_CONFLICT,    /* duplicate example id, changed lr, example moving shard, ... */
    SDM_ERR_UNSUPPORTED, /* the backend cannot do this (the caller may fall back to cpu) */
    SDM_ERR_DEVICE,      /* a CUDA, cuBLAS or cuSOLVER call failed */
    SDM_ERR_INTERNAL,    /* a bug: an invariant did not hold */
} sdm_status;

/* Stable lower-case name of a status ("ok", "bad_input", ...). Never NULL. */
const char *sdm_status_str(sdm_status status);

typedef enum sdm_dtype {
    SDM_F32 = 0,
    SDM_F16 = 1,  /* IEEE 754 binary16, little-endian */
    SDM_BF16 = 2, /* bfloat16 (upper half of an f32), little-endian */
} sdm_dtype;

/* Bytes per element of a dtype, or 0 for an unknown one. */
size_t sdm_dtype_size(sdm_dtype dtype);
/* "f32", "f16", "bf16"; NULL for an unknown dtype. */
const char *sdm_dtype_name(sdm_dtype dtype);
/* Parses "f32"/"f16"/"bf16". Returns SDM_ERR_BAD_INPUT for anything else. */
SDM_NODISCARD sdm_status sdm_dtype_parse(const char *name, sdm_dtype *out);

/* A dense row-major matrix borrowed from the caller. */
typedef struct sdm_matrix {
    sdm_dtype dtype;
    uint64_t rows;
    uint64_t cols;
    const void *data; /* rows*cols elements of dtype; may be NULL when rows*cols == 0 */
} sdm_matrix;

typedef enum sdm_proj_kind {
    SDM_PROJ_NONE = 0,       /* features arrive already projected: dim == input_dim */
    SDM_PROJ_RADEMACHER = 1, /* dense ±1/sqrt(k) */
    SDM_PROJ_SJLT = 2,       /* sparse, s non-zeros per input coordinate */
} sdm_proj_kind;

/* "none", "rademacher", "sjlt"; NULL for an unknown kind. */
const char *sdm_proj_kind_name(sdm_proj_kind kind);
SDM_NODISCARD sdm_status sdm_proj_kind_parse(const char *name, sdm_proj_kind *out);

/* A model's fixed projection (SPEC §1, §2). */
typedef struct sdm_projection {
    sdm_proj_kind kind;
    uint64_t input_dim; /* d */
    uint32_t dim;       /* k */
    uint32_t s;         /* sjlt non-zeros per input coordinate (0 means the default, 1) */
    uint64_t seed;
} sdm_projection;

/* Checks a projection definition. On failure writes a message naming the field into
 * msg (if msg_len > 0) and returns SDM_ERR_BAD_INPUT. */
SDM_NODISCARD sdm_status sdm_projection_check(const sdm_projection *proj, char *msg,
                                              size_t msg_len);

/* The SPEC's Philox4x32-10: out = philox(ctr, key). Exposed for clients and tests. */
void sdm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* ---- engine ------------------------------------------------------------------------- */

typedef enum sdm_backend_kind {
    SDM_BACKEND_AUTO = 0, /* cuda when a device is usable, else cpu (the engine's note says why) */
    SDM_BACKEND_CPU = 1,
    SDM_BACKEND_CUDA = 2, /* fails with SDM_ERR_DEVICE/UNSUPPORTED when no device is usable */
} sdm_backend_kind;

SDM_NODISCARD sdm_status sdm_backend_kind_parse(const char *name, sdm_backend_kind *out);

typedef struct sdm_engine_opts {
    sdm_backend_kind backend;
    size_t workspace_bytes; /* bound on the engine's scratch memory per call; 0: 256 MiB */
    int threads;            /* cpu threads; 0: all cores */
    int device;             /* CUDA device ordinal */
} sdm_engine_opts;

typedef struct sdm_engine sdm_engine_t;

/* Makes an engine. opts may be NULL (auto backend, defaults). On failure returns NULL and,
 * when status/err are given, the status and a message. */
SDM_NODISCARD sdm_engine_t *sdm_engine_new(const sdm_engine_opts *opts, sdm_status *status,
                                           char *err, size_t err_len);
void sdm_engine_destroy(sdm_engine_t **self_p);

/* "cpu" or "cuda". Borrowed, valid for the engine's lifetime. */
const char *sdm_engine_backend(const sdm_engine_t *self);
/* A human description of the device ("NVIDIA H100 80GB HBM3", "cpu: 2 threads, OpenBLAS"). */
const char *sdm_engine_device(const sdm_engine_t *self);
/* Why auto chose cpu (e.g. "no CUDA device: ..."), or "" when nothing needs saying. */
const char *sdm_engine_note(const sdm_engine_t *self);
/* The message of the last failed call on this engine (or a store made with it) made by the
 * calling thread; "" when there is none. Borrowed, valid until that thread's next call. */
const char *sdm_engine_last_error(const sdm_engine_t *self);

/* Projects the rows of `in` (n x d, any dtype) to `out` (n x k floats, caller's memory).
 * For SDM_PROJ_NONE this converts to f32 (requires k == d). NaN/Inf input is rejected. */
SDM_NODISCARD sdm_status sdm_project(sdm_engine_t *eng, const sdm_projection *proj,
                                     const sdm_matrix *in, float *out);

/* ---- feature store (in memory) ------------------------------------------------------ */

typedef struct sdm_store sdm_store_t;

/* A new, empty store for one model's projection. The store keeps a pointer to eng, which
 * must outlive it. Returns NULL on a bad projection or no memory (see last error). */
SDM_NODISCARD sdm_store_t *sdm_store_new(sdm_engine_t *eng, const sdm_projection *proj);
void sdm_store_destroy(sdm_store_t **self_p);

/* One contribution (SPEC §1, §6 `contribute`). Strings are borrowed, NUL-terminated UTF-8. */
typedef struct sdm_batch {
    const char *checkpoint;  /* checkpoint id, non-empty */
    double lr;               /* the checkpoint's lr weight: finite; fixed by its first batch */
    const char *contributor; /* non-empty; ignored for curvature batches */
    const char *shard;       /* non-empty; ignored for curvature batches */
    int curvature;           /* non-zero: rows are curvature rows (shape K, never scored) */
    const uint64_t *ids;     /* n example ids, unique in the checkpoint; NULL for curvature */
    sdm_matrix rows;         /* n x d gradients, or n x k features when is_features */
    int is_features;         /* rows are already projected (always so for kind none) */
    const double *weights;   /* optional n per-example weights (finite); NULL: all 1 */
} sdm_batch;

/* Validates a batch against the store without changing it: shapes, NaN/Inf, duplicate ids
 * (within the batch and the checkpoint), lr changes, examples changing shard, shards
 * changing contributor. Returns SDM_OK or an error naming the field. */
SDM_NODISCARD sdm_status sdm_store_check(sdm_store_t *self, const sdm_batch *batch);

/* Validates, projects (unless is_features) and appends a batch. On success writes the
 * batch number (0, 1, 2, ... in acceptance order) to *batch_no when non-NULL. Features
 * of the projected rows are copied to `features_out` (n x k) when non-NULL, for callers
 * that persist them. On any error the store is unchanged. */
SDM_NODISCARD sdm_status sdm_store_append(sdm_store_t *self, const sdm_batch *batch,
                                          uint64_t *batch_no, float *features_out);

uint64_t sdm_store_batches(const sdm_store_t *self);  /* batches accepted */
uint64_t sdm_store_examples(const sdm_store_t *self); /* distinct example ids */
uint64_t sdm_store_rows(const sdm_store_t *self);     /* feature rows, curvature included */
uint32_t sdm_store_dim(const sdm_store_t *self);      /* k */
size_t sdm_store_shards(const sdm_store_t *self);
size_t sdm_store_contributors(const sdm_store_t *self);
size_t sdm_store_checkpoints(const sdm_store_t *self);
/* Names by index, in order of first appearance; borrowed; NULL when out of range. */
const char *sdm_store_shard_name(const sdm_store_t *self, size_t shard);
const char *sdm_store_shard_contributor(const sdm_store_t *self, size_t shard); /* its owner */
const char *sdm_store_contributor_name(const sdm_store_t *self, size_t contributor);
const char *sdm_store_checkpoint_name(const sdm_store_t *self, size_t checkpoint);
/* The lr of a checkpoint, by name. SDM_ERR_NOT_FOUND for an unknown checkpoint. */
SDM_NODISCARD sdm_status sdm_store_checkpoint_lr(const sdm_store_t *self, const char *checkpoint,
                                                 double *lr);

typedef struct sdm_example_info {
    uint64_t id;
    const char *shard;       /* borrowed */
    const char *contributor; /* borrowed */
    uint64_t batch;          /* the batch of this row */
    uint64_t row;            /* the row within that batch */
    double weight;
} sdm_example_info;

/* Looks up example `id` at `checkpoint`: copies its k features to `features` (if non-NULL)
 * and fills `info` (if non-NULL). SDM_ERR_NOT_FOUND when the checkpoint or id is unknown. */
SDM_NODISCARD sdm_status sdm_store_lookup(const sdm_store_t *self, const char *checkpoint,
                                          uint64_t id, float *features, sdm_example_info *info);

/* Sum of the (weighted) features of a shard at a checkpoint, k doubles. */
SDM_NODISCARD sdm_status sdm_store_shard_sum(const sdm_store_t *self, const char *checkpoint,
                                             const char *shard, double *sum);

/* ---- attribution --------------------------------------------------------------------- */

typedef enum sdm_method {
    SDM_METHOD_DOT = 0,
    SDM_METHOD_COSINE = 1,
    SDM_METHOD_TRAK = 2,
} sdm_method;

typedef enum sdm_aggregate {
    SDM_AGG_SUM = 0,
    SDM_AGG_MEAN = 1,
} sdm_aggregate;

const char *sdm_method_name(sdm_method method);
SDM_NODISCARD sdm_status sdm_method_parse(const char *name, sdm_method *out);
const char *sdm_aggregate_name(sdm_aggregate agg);
SDM_NODISCARD sdm_status sdm_aggregate_parse(const char *name, sdm_aggregate *out);

/* The queries at one checkpoint: m x d gradients, or m x k features when is_features. */
typedef struct sdm_query {
    const char *checkpoint;
    sdm_matrix rows;
    int is_features;
    double lambda; /* trak only: lambda for this checkpoint; NaN or negative: SPEC default */
} sdm_query;

#define SDM_STORE_NOW UINT64_MAX

typedef struct sdm_attr_request {
    sdm_method method;
    sdm_aggregate aggregate;
    uint32_t topk;             /* proponents and opponents per query; 0: shard scores only */
    size_t n_queries;          /* checkpoints used */
    const sdm_query *queries;  /* one per checkpoint, distinct checkpoints, same m */
    uint64_t store_size;       /* use batches [0, store_size); SDM_STORE_NOW: all */
} sdm_attr_request;

typedef struct sdm_hit {
    uint64_t example_id;
    uint32_t shard; /* index into the result's shards */
    double score;
} sdm_hit;

/* An attribution result. Arrays are row-major with one row per query. */
typedef struct sdm_attr_result {
    uint64_t m;              /* queries */
    uint64_t store_size;     /* batches the result covers */
    uint64_t n_examples;     /* examples scored (columns of S) */
    size_t n_shards;         /* every shard of the store up to store_size */
    size_t n_contributors;   /* every contributor of those shards */
    const char **shard_names;       /* n_shards, borrowed from the store */
    const char **shard_contributor; /* n_shards: the owner's name, borrowed */
    uint32_t *shard_owner;          /* n_shards: index into contributor_names */
    const char **contributor_names; /* n_contributors, borrowed from the store */
    double *shard_score;       /* m x n_shards */
    double *shard_share;       /* m x n_shards */
    double *contributor_score; /* m x n_contributors */
    double *contributor_share; /* m x n_contributors */
    uint32_t topk;             /* hits per query: min(request topk, n_examples) */
    sdm_hit *top;              /* m x topk, highest first, ties to the earlier example */
    sdm_hit *bottom;           /* m x topk, lowest first, ties to the earlier example */
    size_t n_lambdas;          /* request's n_queries for trak, else 0 */
    double *lambdas;           /* the lambda used per checkpoint, in request order */
} sdm_attr_result;

/* Scores the queries against the store (SPEC §3). On success *out is the caller's, freed
 * with sdm_attr_result_free. Borrowed names stay valid while the store lives. */
SDM_NODISCARD sdm_status sdm_attribute(sdm_engine_t *eng, sdm_store_t *store,
                                       const sdm_attr_request *req, sdm_attr_result **out);
void sdm_attr_result_free(sdm_attr_result **self_p);

/* ---- f16/bf16 helpers ---------------------------------------------------------------- */

uint16_t sdm_f32_to_f16(float x);  /* round to nearest even */
float sdm_f16_to_f32(uint16_t h);
uint16_t sdm_f32_to_bf16(float x); /* round to nearest even */
float sdm_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif /* SEDIMENT_ENGINE_H */
