/* baseline_cuda.cu - device baselines for sediment-bench: cuBLAS GEMM and device memcpy,
 * timed with CUDA events after a warm-up, operands resident on the device. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "baseline.h"
}

#define CK(expr)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (expr);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            snprintf(err, err_len, "%s: %s (%s:%d)", #expr, cudaGetErrorString(e_), __FILE__,  \
                     __LINE__);                                                                \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

static int cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

extern "C" int sdm_bench_cuda_gemm(uint64_t m, uint64_t n, uint64_t k, sdm_dtype dtype,
                                   int reps, double *seconds, char *err, size_t err_len)
{
    void *A = NULL, *B = NULL;
    float *C = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float *ms = (float *)calloc(reps, sizeof(float));
    size_t es = dtype == SDM_F32 ? 4 : 2;
    cudaDataType_t t = dtype == SDM_F32 ? CUDA_R_32F : dtype == SDM_F16 ? CUDA_R_16F : CUDA_R_16BF;
    int rc = -1;
    CK(cudaMalloc(&A, m * k * es));
    CK(cudaMalloc(&B, n * k * es));
    CK(cudaMalloc((void **)&C, m * n * sizeof(float)));
    CK(cudaMemset(A, 0, m * k * es));
    CK(cudaMemset(B, 0, n * k * es));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, err_len, "cublasCreate failed");
        goto fail;
    }
    for (int i = -1; i < reps; i++) {
        const float one = 1.0f, zero = 0.0f;
        /* row-major C (m x n) = A B^T  <=>  column-major C^T (n x m) = B A^T */
        CK(cudaEventRecord(e0));
        cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one,
                                        B, t, (int)k, A, t, (int)k, &zero, C, CUDA_R_32F, (int)n,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        if (s != CUBLAS_STATUS_SUCCESS) {
            snprintf(err, err_len, "cublasGemmEx failed: %d", (int)s);
            goto fail;
        }
        if (i >= 0)
            CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    qsort(ms, reps, sizeof(float), cmp);
    *seconds = ms[reps / 2] * 1e-3;
    rc = 0;
fail:
    if (h)
        cublasDestroy(h);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    free(ms);
    return rc;
}

extern "C" int sdm_bench_cuda_memcpy(size_t bytes, int reps, double *seconds, char *err,
                                     size_t err_len)
{
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float *ms = (float *)calloc(reps, sizeof(float));
    int rc = -1;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = -1; i < reps; i++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        if (i >= 0)
            CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    qsort(ms, reps, sizeof(float), cmp);
    *seconds = ms[reps / 2] * 1e-3;
    rc = 0;
fail:
    cudaFree(a);
    cudaFree(b);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    free(ms);
    return rc;
}
