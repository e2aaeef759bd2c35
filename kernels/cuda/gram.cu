/* gram.cu - K += rows^T rows on the device: cuBLAS ssyrk per row chunk, summed in double.
 *
 * Each chunk of at most 4096 rows is reduced in fp32 by ssyrk (lower triangle) and added
 * into a double copy of K, so the fp32 error does not grow with the number of rows. The
 * chunk size is a constant, so the result is the same on every run and device. The upper
 * triangle is mirrored from the lower once at the end.
 */
#include "cuda_common.h"

#define GRAM_THREADS 256
#define GRAM_CHUNK_ROWS 4096u
#define GRAM_CHUNK_BYTES ((size_t)128 << 20)

/* K (col-major, lower triangle) += C (col-major, lower triangle as ssyrk wrote it). Both are
 * walked in memory order, so the reads and writes coalesce. */
static __global__ void __launch_bounds__(GRAM_THREADS)
    gram_add_kernel(const float *__restrict__ C, uint32_t k, double *__restrict__ K)
{
    const size_t total = (size_t)k * k, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t a = i % k, b = i / k;
        if (a >= b)
            K[i] += (double)C[i];
    }
}

/* Upper triangle <- lower, so that the host gets K full and exactly symmetric. */
static __global__ void __launch_bounds__(GRAM_THREADS)
    gram_mirror_kernel(uint32_t k, double *__restrict__ K)
{
    const size_t total = (size_t)k * k, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t a = i % k, b = i / k;
        if (a < b)
            K[i] = K[b + a * k];
    }
}

static unsigned gram_blocks(uint32_t k)
{
    size_t blocks = ((size_t)k * k + GRAM_THREADS - 1) / GRAM_THREADS;
    return (unsigned)(blocks > 65535u * 8u ? 65535u * 8u : blocks);
}

static cudaError_t gram_add_launch(cudaStream_t stream, const float *C, uint32_t k, double *K)
{
    gram_add_kernel<<<gram_blocks(k), GRAM_THREADS, 0, stream>>>(C, k, K);
    return cudaGetLastError();
}

static cudaError_t gram_mirror_launch(cudaStream_t stream, uint32_t k, double *K)
{
    gram_mirror_kernel<<<gram_blocks(k), GRAM_THREADS, 0, stream>>>(k, K);
    return cudaGetLastError();
}

sdm_status sdm_cuda_gram(sdm_backend *be, const float *rows, uint64_t n, uint32_t k, double *K)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    const float one = 1.0f, zero = 0.0f;
    uint64_t chunk = 0, r0 = 0, take = 0;
    size_t kk = (size_t)k * k;
    void *base = NULL;
    char *cursor = NULL;
    float *X = NULL, *C = NULL;
    double *Kd = NULL;

    if (n == 0 || k == 0)
        return SDM_OK;
    if (k > (uint32_t)INT32_MAX)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "gram: k = %u too large", k);
    SDM_TRY(sdm_cuda_enter(be));
    chunk = GRAM_CHUNK_BYTES / ((size_t)k * sizeof(float));
    if (chunk > GRAM_CHUNK_ROWS)
        chunk = GRAM_CHUNK_ROWS;
    if (chunk < 1)
        chunk = 1;
    if (chunk > n)
        chunk = n;
    SDM_TRY(sdm_cuda_scratch(be,
                             sdm_cuda_round((size_t)chunk * k * sizeof(float)) +
                                 sdm_cuda_round(kk * sizeof(float)) +
                                 sdm_cuda_round(kk * sizeof(double)),
                             &base));
    cursor = (char *)base;
    X = (float *)sdm_cuda_carve(&cursor, (size_t)chunk * k * sizeof(float));
    C = (float *)sdm_cuda_carve(&cursor, kk * sizeof(float));
    Kd = (double *)sdm_cuda_carve(&cursor, kk * sizeof(double));

    SDM_CUDA_CHECK(be, cudaMemcpyAsync(Kd, K, kk * sizeof(double), cudaMemcpyHostToDevice,
                                       ctx->stream));
    for (r0 = 0; r0 < n; r0 += take) {
        take = n - r0 < chunk ? n - r0 : chunk;
        SDM_CUDA_CHECK(be, cudaMemcpyAsync(X, rows + r0 * k, (size_t)take * k * sizeof(float),
                                           cudaMemcpyHostToDevice, ctx->stream));
        /* Row-major take x k is column-major k x take: C = X X^T is rows^T rows. */
        SDM_CUBLAS_CHECK(be, cublasSsyrk(ctx->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)k,
                                         (int)take, &one, X, (int)k, &zero, C, (int)k));
        SDM_CUDA_CHECK(be, gram_add_launch(ctx->stream, C, k, Kd));
    }
    SDM_CUDA_CHECK(be, gram_mirror_launch(ctx->stream, k, Kd));
    SDM_CUDA_CHECK(be, cudaMemcpyAsync(K, Kd, kk * sizeof(double), cudaMemcpyDeviceToHost,
                                       ctx->stream));
    SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
done:
    if (st != SDM_OK && ctx)
        (void)cudaStreamSynchronize(ctx->stream);
    return st;
}
