/* cuda_common.h - what the CUDA backend's .cu files share: context, check macros, ops.
 *
 * Included only by the .cu files of kernels/cuda. Everything declared here has C linkage,
 * so the symbols read the same from C and in a debugger. They are built into a module of
 * their own, libsediment_cuda.so, that the engine loads when it first wants a device
 * (cuda_loader.c); only its entry points sdm_cudamod_backend_init and
 * sdm_cudamod_device_count (declared in backend.h) are called from the C side.
 *
 * Error handling: every foreign call goes through one check macro per API. The macros
 * record the expression, file and line in be->error through sdm_backend_fail, store the
 * status in a local `sdm_status st` and jump to a local `done:` label that releases what
 * the function holds. In these C++ translation units a goto may not cross an initialised
 * declaration, so functions using the macros declare their locals before the first check.
 */
#ifndef SDM_KERNELS_CUDA_COMMON_H
#define SDM_KERNELS_CUDA_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend's context, be->ctx. */
typedef struct sdm_cuda_ctx {
    int device;                /* CUDA device ordinal */
    int sm_count;
    size_t total_mem;
    cudaStream_t stream;       /* kernels, cuBLAS, cuSOLVER and the small copies */
    cudaStream_t copy;         /* bulk feature uploads that overlap the compute stream */
    cublasHandle_t blas;       /* bound to `stream` */
    cusolverDnHandle_t solver; /* bound to `stream` */
    void *scratch;             /* device scratch, grow-only, reused by every call */
    size_t scratch_bytes;
    void *pinned;              /* pinned host staging, grow-only, reused by every call */
    size_t pinned_bytes;
} sdm_cuda_ctx;

/* The per-checkpoint cache of topk_pass (*sdm_pass_ckpt.cache): a device copy of the
 * first `rows` feature rows. The store is append-only, so rows once uploaded stay valid
 * and later calls upload only the rows added since. Freed by sdm_cuda_cache_free. */
#define SDM_CUDA_CACHE_MAGIC 0x53444d43u /* "SDMC" */
typedef struct sdm_cuda_cache {
    uint32_t magic;
    int device;
    uint32_t k;
    uint64_t rows; /* rows present on the device */
    uint64_t cap;  /* rows allocated */
    float *feat;   /* device, cap x k */
} sdm_cuda_cache;

/* ---- error mapping (cuda_backend.cu) ------------------------------------------------ */

sdm_status sdm_cuda_fail_rt(sdm_backend *be, cudaError_t err, const char *expr, const char *file,
                            int line);
sdm_status sdm_cuda_fail_blas(sdm_backend *be, cublasStatus_t err, const char *expr,
                              const char *file, int line);
sdm_status sdm_cuda_fail_solver(sdm_backend *be, cusolverStatus_t err, const char *expr,
                                const char *file, int line);

#define SDM_CUDA_CHECK(be, expr)                                                   \
    do {                                                                           \
        cudaError_t sdm_err_ = (expr);                                             \
        if (sdm_err_ != cudaSuccess) {                                             \
            st = sdm_cuda_fail_rt((be), sdm_err_, #expr, __FILE__, __LINE__);      \
            goto done;                                                             \
        }                                                                          \
    } while (0)

#define SDM_CUBLAS_CHECK(be, expr)                                                 \
    do {                                                                           \
        cublasStatus_t sdm_err_ = (expr);                                          \
        if (sdm_err_ != CUBLAS_STATUS_SUCCESS) {                                   \
            st = sdm_cuda_fail_blas((be), sdm_err_, #expr, __FILE__, __LINE__);    \
            goto done;                                                             \
        }                                                                          \
    } while (0)

#define SDM_CUSOLVER_CHECK(be, expr)                                               \
    do {                                                                           \
        cusolverStatus_t sdm_err_ = (expr);                                        \
        if (sdm_err_ != CUSOLVER_STATUS_SUCCESS) {                                 \
            st = sdm_cuda_fail_solver((be), sdm_err_, #expr, __FILE__, __LINE__);  \
            goto done;                                                             \
        }                                                                          \
    } while (0)

/* Propagates a status from one of our own calls. */
#define SDM_TRY(expr)               \
    do {                            \
        st = (expr);                \
        if (st != SDM_OK)           \
            goto done;              \
    } while (0)

/* ---- context helpers (cuda_backend.cu) ---------------------------------------------- */

/* Makes the context's device current for the calling thread; every entry point starts so,
 * because the caller's thread may have used another device in between. */
sdm_status sdm_cuda_enter(sdm_backend *be);

/* The context's device scratch, at least `bytes`. Grow-only; growing waits for both
 * streams first. Valid until the next call that grows it. */
sdm_status sdm_cuda_scratch(sdm_backend *be, size_t bytes, void **out);

/* The same for pinned host staging memory. */
sdm_status sdm_cuda_pinned(sdm_backend *be, size_t bytes, void **out);

/* Sub-buffers are carved out of the scratch at 256-byte boundaries, which keeps every
 * buffer aligned for vector loads and keeps cuBLAS's kernel choice the same from call to
 * call (it may depend on pointer alignment). */
#define SDM_CUDA_ALIGN ((size_t)256)
static inline size_t sdm_cuda_round(size_t bytes)
{
    return (bytes + SDM_CUDA_ALIGN - 1) & ~(SDM_CUDA_ALIGN - 1);
}
static inline void *sdm_cuda_carve(char **cursor, size_t bytes)
{
    void *p = *cursor;
    *cursor += sdm_cuda_round(bytes);
    return p;
}

/* ---- ops (one .cu file each); pointers are device pointers unless said otherwise ----- */

/* Split count of the rademacher kernel over the input dimension for an n x d -> k
 * projection: a pure function of the shape, never of the device, so results are the same
 * on every GPU. */
uint32_t sdm_cuda_rademacher_splits(uint64_t n, uint64_t d, uint32_t k);

/* out (n x k) = in (n x d, dtype) . P_rademacher / sqrt(k). With splits > 1, part holds
 * splits x n x k floats of scratch. (project_rademacher.cu) */
sdm_status sdm_cuda_rademacher(sdm_backend *be, cudaStream_t stream, sdm_dtype dtype,
                               const void *in, uint64_t n, uint64_t d, uint32_t k,
                               uint64_t seed, uint32_t splits, float *part, float *out);

/* Split count of the sjlt kernel; a pure function of the shape. */
uint32_t sdm_cuda_sjlt_splits(uint64_t n, uint64_t d);

/* out (n x k) = in (n x d, dtype) . P_sjlt(s). acc holds splits x n x k floats of scratch.
 * (project_sjlt.cu) */
sdm_status sdm_cuda_sjlt(sdm_backend *be, cudaStream_t stream, sdm_dtype dtype, const void *in,
                         uint64_t n, uint64_t d, uint32_t k, uint32_t s, uint64_t seed,
                         uint32_t splits, float *acc, float *out);

/* out[i] = scale * sum_z part[z * count + i], z in split order. (project_reduce.cu) */
sdm_status sdm_cuda_sum_splits(sdm_backend *be, cudaStream_t stream, const float *part,
                               uint32_t splits, size_t count, float scale, float *out);

/* The backend slots (host pointers, as in backend.h). */
sdm_status sdm_cuda_gram(sdm_backend *be, const float *rows, uint64_t n, uint32_t k, double *K);
sdm_status sdm_cuda_solve_spd(sdm_backend *be, uint32_t k, double *A, uint64_t m, double *B);
sdm_status sdm_cuda_topk_pass(sdm_backend *be, const sdm_pass *pass);
void sdm_cuda_cache_free(sdm_backend *be, void *cache);

/* Per query row of S (m x T, row-major), the kk best present columns for each direction:
 * cand[(q * 2 + dir) * kk + i] = (key, column), in column order, where key orders scores
 * (dir 0: larger score = larger key; dir 1: reversed) and ties are left to the column.
 * n_present columns have present[c] != 0; kk <= n_present. (topk_select.cu) */
sdm_status sdm_cuda_topk_select(sdm_backend *be, cudaStream_t stream, const float *S, uint64_t m,
                                uint32_t T, const uint8_t *present, uint32_t n_present,
                                uint32_t kk, uint2 *cand);

/* Largest tile width topk_select accepts (its column index is 16 bits, its row sits in
 * shared memory). */
#define SDM_CUDA_TOPK_TILE_MAX 8192u

/* Orderable key of a score: larger score, larger key; -0 and +0 share a key so that they
 * tie. Host and device use the same function, so both sides order scores alike. */
static inline __host__ __device__ uint32_t sdm_cuda_score_key(float x)
{
    union {
        float f;
        uint32_t u;
    } v;
    v.f = x;
    if (x == 0.0f)
        v.u = 0u;
    return (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u);
}

static inline __host__ __device__ float sdm_cuda_key_score(uint32_t key)
{
    union {
        float f;
        uint32_t u;
    } v;
    v.u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    return v.f;
}

#ifdef __cplusplus
}
#endif

#endif /* SDM_KERNELS_CUDA_COMMON_H */
