/* solve_spd.cu - B <- B A^{-1} for symmetric positive definite A: cuSOLVER potrf + potrs.
 *
 * B is row-major m x k, which in memory is column-major k x m: exactly the right-hand sides
 * of A X = B^T (A is symmetric), so potrs works on B in place with no transposes. B goes
 * through in row chunks so that any m fits.
 */
#include "cuda_common.h"

#define SOLVE_CHUNK_BYTES ((size_t)256 << 20)

sdm_status sdm_cuda_solve_spd(sdm_backend *be, uint32_t k, double *A, uint64_t m, double *B)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    int lwork = 0, info = 0;
    uint64_t chunk = 0, r0 = 0, take = 0;
    size_t kk = (size_t)k * k;
    void *base = NULL;
    char *cursor = NULL;
    double *Ad = NULL, *work = NULL, *Bd = NULL;
    int *info_d = NULL;

    if (k == 0)
        return SDM_OK;
    if (k > (uint32_t)INT32_MAX)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "solve_spd: k = %u too large", k);
    SDM_TRY(sdm_cuda_enter(be));
    chunk = SOLVE_CHUNK_BYTES / ((size_t)k * sizeof(double));
    if (chunk < 1)
        chunk = 1;
    if (chunk > (uint64_t)INT32_MAX)
        chunk = (uint64_t)INT32_MAX;
    if (chunk > m)
        chunk = m;
    /* The size query reads only the shape, but give it a real matrix pointer all the same;
     * A is not uploaded yet, so the carve below may move it freely. */
    SDM_TRY(sdm_cuda_scratch(be, sdm_cuda_round(kk * sizeof(double)), &base));
    SDM_CUSOLVER_CHECK(be, cusolverDnDpotrf_bufferSize(ctx->solver, CUBLAS_FILL_MODE_LOWER, (int)k,
                                                       (double *)base, (int)k, &lwork));
    if (lwork < 1)
        lwork = 1;
    SDM_TRY(sdm_cuda_scratch(be,
                             sdm_cuda_round(kk * sizeof(double)) +
                                 sdm_cuda_round((size_t)lwork * sizeof(double)) +
                                 sdm_cuda_round(sizeof(int)) +
                                 sdm_cuda_round((size_t)chunk * k * sizeof(double)),
                             &base));
    cursor = (char *)base;
    Ad = (double *)sdm_cuda_carve(&cursor, kk * sizeof(double));
    work = (double *)sdm_cuda_carve(&cursor, (size_t)lwork * sizeof(double));
    info_d = (int *)sdm_cuda_carve(&cursor, sizeof(int));
    Bd = (double *)sdm_cuda_carve(&cursor, (size_t)chunk * k * sizeof(double));

    SDM_CUDA_CHECK(be, cudaMemcpyAsync(Ad, A, kk * sizeof(double), cudaMemcpyHostToDevice,
                                       ctx->stream));
    SDM_CUSOLVER_CHECK(be, cusolverDnDpotrf(ctx->solver, CUBLAS_FILL_MODE_LOWER, (int)k, Ad,
                                            (int)k, work, lwork, info_d));
    SDM_CUDA_CHECK(be, cudaMemcpyAsync(&info, info_d, sizeof(int), cudaMemcpyDeviceToHost,
                                       ctx->stream));
    SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
    if (info > 0) {
        st = sdm_backend_fail(be, SDM_ERR_BAD_INPUT,
                              "matrix is not positive definite (leading minor %d of %u)", info,
                              k);
        goto done;
    }
    if (info < 0) {
        st = sdm_backend_fail(be, SDM_ERR_INTERNAL, "cusolverDnDpotrf: argument %d invalid",
                              -info);
        goto done;
    }
    for (r0 = 0; r0 < m; r0 += take) {
        take = m - r0 < chunk ? m - r0 : chunk;
        SDM_CUDA_CHECK(be, cudaMemcpyAsync(Bd, B + r0 * k, (size_t)take * k * sizeof(double),
                                           cudaMemcpyHostToDevice, ctx->stream));
        SDM_CUSOLVER_CHECK(be, cusolverDnDpotrs(ctx->solver, CUBLAS_FILL_MODE_LOWER, (int)k,
                                                (int)take, Ad, (int)k, Bd, (int)k, info_d));
        SDM_CUDA_CHECK(be, cudaMemcpyAsync(B + r0 * k, Bd, (size_t)take * k * sizeof(double),
                                           cudaMemcpyDeviceToHost, ctx->stream));
    }
    SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
done:
    if (st != SDM_OK && ctx)
        (void)cudaStreamSynchronize(ctx->stream);
    return st;
}
