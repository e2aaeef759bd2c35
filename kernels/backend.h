/* backend.h - the internal interface every compute backend (cpu, cuda) fills in.
 *
 * The generic engine (kernels/engine.c, kernels/attribute.c) validates requests, keeps the
 * store and does the small dense algebra in double; a backend does the heavy passes. All
 * pointers in these calls are host pointers unless a slot says otherwise; a backend that
 * keeps device copies does so behind the `cache` slots.
 */
#ifndef SDM_KERNELS_BACKEND_H
#define SDM_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdm_backend sdm_backend;

/* One checkpoint's share of the per-example pass. */
typedef struct sdm_pass_ckpt {
    const float *q;           /* m x k prepared queries: lr, unit rows (cosine) and the trak
                                 preconditioner already folded in */
    const float *feat;        /* n_rows x k stored features of this checkpoint (host) */
    const float *row_scale;   /* n_rows: weight (x 1/||row|| for cosine; 0 for a zero row) */
    const int64_t *ex_row;    /* ex_row[e]: this checkpoint's row of example e, or -1 */
    uint64_t n_ex_map;        /* entries in ex_row; examples >= n_ex_map are absent */
    uint64_t n_rows;          /* rows in the snapshot (a prefix of the stored rows) */
    void **cache;             /* the backend's per-checkpoint cache slot, owned by the store
                                 (freed through cache_free); NULL when the caller has none */
} sdm_pass_ckpt;

/* The per-example pass: S[q][e] = sum_c (Q_c F_c^T)[q][row_c(e)] * row_scale_c[row_c(e)]
 * over examples e in [0, n_examples) present in at least one checkpoint; it keeps, per
 * query, the topk highest and topk lowest S with ties to the lower example index. Never
 * materialises m x n_examples: works in tiles within workspace_bytes. */
typedef struct sdm_pass {
    uint64_t m;
    uint32_t k;
    uint64_t n_examples;
    size_t n_ckpts;
    const sdm_pass_ckpt *ckpts;
    uint32_t topk;           /* >= 1 and <= number of present examples */
    size_t workspace_bytes;  /* bound on scratch memory for this call */
    /* outputs, m x topk each, caller-allocated; sorted (top: descending, bottom:
     * ascending), ties by lower example index first */
    uint64_t *top_idx;
    float *top_score;
    uint64_t *bot_idx;
    float *bot_score;
} sdm_pass;

struct sdm_backend_i {
    /* Short name: "cpu" or "cuda". */
    const char *name;

    /* Releases the backend's context (not the sdm_backend struct itself). */
    void (*free)(sdm_backend *be);

    /* out (n x k floats, host) = in (n x d, host, any dtype) projected per SPEC §2.
     * The caller has validated shapes and finiteness. Required. */
    sdm_status (*project)(sdm_backend *be, const sdm_projection *proj, const sdm_matrix *in,
                          float *out);

    /* K (k x k doubles, full symmetric) += rows^T rows for rows (n x k floats, host).
     * Required. */
    sdm_status (*gram)(sdm_backend *be, const float *rows, uint64_t n, uint32_t k, double *K);

    /* B (m x k doubles, row-major) <- B A^{-1} for A (k x k) symmetric positive definite,
     * through a Cholesky factorisation. A may be overwritten. Returns SDM_ERR_BAD_INPUT
     * when A is not positive definite. Required. */
    sdm_status (*solve_spd)(sdm_backend *be, uint32_t k, double *A, uint64_t m, double *B);

    /* The per-example pass described at struct sdm_pass. Required. */
    sdm_status (*topk_pass)(sdm_backend *be, const sdm_pass *pass);

    /* Optional: host memory for store arrays (pinned on cuda). NULL: malloc/free. */
    void *(*host_alloc)(sdm_backend *be, size_t bytes);
    void (*host_free)(sdm_backend *be, void *p);

    /* Optional: releases a per-checkpoint cache made by topk_pass. */
    void (*cache_free)(sdm_backend *be, void *cache);
};

struct sdm_backend {
    const struct sdm_backend_i *iface;
    void *ctx;            /* the backend's own state */
    char device[256];     /* human description of the device */
    char error[512];      /* message of the last failure inside the backend */
    int threads;          /* cpu threads to use */
    size_t workspace;     /* the engine's bound on scratch memory (0: the backend's default) */
};

/* Records a formatted message in be->error and returns status. */
sdm_status sdm_backend_fail(sdm_backend *be, sdm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Constructors. Each returns SDM_OK and fills *be, or a status with a message in be->error.
 * sdm_cuda_backend_init returns SDM_ERR_UNSUPPORTED when built without CUDA or when the cuda
 * module cannot be loaded, and SDM_ERR_DEVICE when no device is usable. */
sdm_status sdm_cpu_backend_init(sdm_backend *be, int threads);
sdm_status sdm_cuda_backend_init(sdm_backend *be, int device);

/* Number of CUDA devices usable (0 when built without CUDA, when the cuda module cannot be
 * loaded, or when none is present). */
int sdm_cuda_device_count(void);

/* With CUDA, the two above load the cuda module, libsediment_cuda.so (cuda_loader.c), once,
 * and call its entry points, which are these; a program that loads no module starts without
 * the CUDA libraries and runs where they are absent. */
sdm_status sdm_cudamod_backend_init(sdm_backend *be, int device);
int sdm_cudamod_device_count(void);

/* The module's sdm_cudamod_abi holds this, and the loader refuses a module whose value differs
 * (one built from other sources, whose structs may be laid out otherwise). Bump the first
 * number when the interface changes in a way the sizes do not show. */
#define SDM_CUDAMOD_ABI                                                                        \
    ((uint32_t)(1u * 1000000u + sizeof(struct sdm_backend) * 1000u + sizeof(struct sdm_backend_i)))

#ifdef __cplusplus
}
#endif

#endif /* SDM_KERNELS_BACKEND_H */
