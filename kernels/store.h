/* store.h - the in-memory feature store's layout, shared inside the engine (not public).
 *
 * Everything is append-only: rows, examples, shards and batches are numbered in order of
 * arrival and never move in index space, so a snapshot "the first B batches" is a prefix of
 * every table (rows of each checkpoint, examples, shards, contributors).
 */
#ifndef SDM_KERNELS_STORE_H
#define SDM_KERNELS_STORE_H

#include <stdint.h>

#include "backend.h"
#include "sediment/engine.h"
#include "table.h"

#define SDM_NO_SHARD UINT32_MAX

/* A growable block of rows x k floats in backend host memory (pinned on cuda). */
typedef struct sdm_rows {
    float *data;
    uint64_t n;
    uint64_t cap;
} sdm_rows;

/* Gram matrix K = X^T X over the first `rows` rows of X, extended lazily. */
typedef struct sdm_gram {
    double *K; /* k x k, NULL until first needed */
    uint64_t rows;
} sdm_gram;

typedef struct sdm_ckpt {
    double lr;
    sdm_rows feat;         /* training rows */
    float *norm;           /* per row: L2 norm of the features */
    float *weight;         /* per row: the example's weight */
    uint64_t *row_example; /* per row: example index */
    uint64_t meta_cap;     /* capacity of norm/weight/row_example */
    int64_t *ex_row;       /* per example index: this checkpoint's row, or -1 */
    uint64_t n_ex_map;
    uint64_t ex_map_cap;
    sdm_rows curv;         /* curvature rows (shape K, never scored) */
    sdm_gram gram_feat;    /* K from training rows */
    sdm_gram gram_curv;    /* K from curvature rows */
    uint64_t *batch_list;  /* this checkpoint's training batches, in order */
    uint64_t n_batch_list;
    uint64_t batch_list_cap;
    void *cache;           /* backend's device-side copy, freed through cache_free */
} sdm_ckpt;

typedef struct sdm_batch_rec {
    uint32_t ckpt;
    uint32_t shard;     /* SDM_NO_SHARD for curvature batches */
    uint64_t row0;      /* first row in the checkpoint's feat (or curv) block */
    uint64_t n;
    double *sum;        /* k: sum_i w_i phi_i (training batches only) */
    double *unit_sum;   /* k: sum_i w_i phi_i / ||phi_i|| (zero rows add nothing) */
} sdm_batch_rec;

typedef struct sdm_example {
    uint64_t id;
    uint32_t shard;
    uint64_t batch; /* first batch holding it */
} sdm_example;

struct sdm_store {
    sdm_engine_t *eng;
    sdm_projection proj;
    uint32_t k;

    sdm_strtab ckpt_names;
    sdm_ckpt *ckpts;
    size_t ckpts_cap;

    sdm_strtab shard_names;
    uint32_t *shard_owner;      /* per shard: contributor index */
    uint64_t *shard_first;      /* per shard: first batch */
    size_t shard_cap;
    sdm_strtab contrib_names;
    uint64_t *contrib_first;    /* per contributor: first batch */
    size_t contrib_cap;

    sdm_example *examples;
    uint64_t n_examples;
    uint64_t examples_cap;
    sdm_u64map example_index;   /* id -> example index */

    sdm_batch_rec *batches;
    uint64_t n_batches;
    uint64_t batches_cap;
    uint64_t n_rows;            /* all rows, curvature included */
};

/* Internal engine accessors used by the store, attribution and reference code. */
sdm_backend *sdm_engine_backend_ptr(sdm_engine_t *eng);
sdm_backend *sdm_engine_cpu_ptr(sdm_engine_t *eng);
size_t sdm_engine_workspace(const sdm_engine_t *eng);
/* Records a formatted message as the engine's last error and returns status. */
sdm_status sdm_engine_fail(sdm_engine_t *eng, sdm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Checks a matrix argument: dtype known, shape (rows x cols as expected, 0 = any rows),
 * data present, every element finite. `field` names it in the message. */
sdm_status sdm_check_matrix(sdm_engine_t *eng, const char *field, const sdm_matrix *mat,
                            uint64_t want_cols);
/* Backend calls with the cpu fallback for SDM_ERR_UNSUPPORTED; failures are recorded as
 * the engine's last error. */
sdm_status sdm_engine_run_project(sdm_engine_t *eng, const sdm_projection *proj,
                                  const sdm_matrix *in, float *out);
sdm_status sdm_engine_run_gram(sdm_engine_t *eng, const float *rows, uint64_t n, uint32_t k,
                               double *K);
sdm_status sdm_engine_run_solve(sdm_engine_t *eng, uint32_t k, double *A, uint64_t m,
                                double *B);
sdm_status sdm_engine_run_topk(sdm_engine_t *eng, const sdm_pass *pass);
/* Converts element i of a matrix's data to float. */
float sdm_matrix_get(const sdm_matrix *mat, uint64_t i);

/* A snapshot of the store at `size` batches: rows per checkpoint and table prefixes. */
typedef struct sdm_snapshot {
    uint64_t size;
    uint64_t n_examples;
    size_t n_shards;
    size_t n_contributors;
    uint64_t *feat_rows; /* per checkpoint */
    uint64_t *curv_rows; /* per checkpoint */
} sdm_snapshot;

sdm_status sdm_store_snapshot(sdm_store_t *store, uint64_t size, sdm_snapshot *snap);
void sdm_snapshot_free(sdm_snapshot *snap);

/* The plain-loop reference of SPEC §3 (kernels/cpu/reference.c): materialises S in double
 * and sorts. Slow and simple on purpose: it is the executable spec the fast paths are
 * tested against. Same contract as sdm_attribute. */
sdm_status sdm_attribute_reference(sdm_engine_t *eng, sdm_store_t *store,
                                   const sdm_attr_request *req, sdm_attr_result **out);

/* Plain-loop reference projection (double accumulation), out n x k. */
sdm_status sdm_project_reference(const sdm_projection *proj, const sdm_matrix *in, float *out);

#endif /* SDM_KERNELS_STORE_H */
