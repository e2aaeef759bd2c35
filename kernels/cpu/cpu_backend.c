/* cpu_backend.c - the cpu backend: OpenBLAS/LAPACKE for the dense algebra, OpenMP loops. */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu.h"

/* Rows of the gram update per ssyrk call: f32 partial sums over this many rows are added
 * into the double K, bounding the f32 accumulation length. */
#define GRAM_CHUNK 4096

static void s_cpu_free(sdm_backend *be)
{
    sdm_cpu_state *st = be->ctx;
    if (st)
        free(st->P);
    free(st);
    be->ctx = NULL;
}

static sdm_status s_cpu_gram(sdm_backend *be, const float *rows, uint64_t n, uint32_t k,
                             double *K)
{
    if (n == 0)
        return SDM_OK;
    float *C = malloc((size_t)k * k * sizeof(float));
    if (!C)
        return sdm_backend_fail(be, SDM_ERR_NOMEM, "gram: out of memory for %u x %u", k, k);
    for (uint64_t r0 = 0; r0 < n; r0 += GRAM_CHUNK) {
        uint64_t nr = n - r0 < GRAM_CHUNK ? n - r0 : GRAM_CHUNK;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)nr, 1.0f,
                    rows + (size_t)r0 * k, (int)k, 0.0f, C, (int)k);
#pragma omp parallel for schedule(static)
        for (uint32_t i = 0; i < k; i++)
            for (uint32_t j = i; j < k; j++)
                K[(size_t)i * k + j] += C[(size_t)i * k + j];
    }
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < i; j++)
            K[(size_t)i * k + j] = K[(size_t)j * k + i];
    free(C);
    return SDM_OK;
}

static sdm_status s_cpu_solve_spd(sdm_backend *be, uint32_t k, double *A, uint64_t m,
                                  double *B)
{
    /* A is symmetric, so row- and column-major agree; B (m x k row-major) is B^T in
     * column-major, the right-hand sides of A X = B^T. */
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)k, A, (lapack_int)k);
    if (info > 0)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT,
                                "matrix is not positive definite (minor %d)", (int)info);
    if (info < 0)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL, "dpotrf: argument %d", (int)-info);
    if (m == 0)
        return SDM_OK;
    info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', (lapack_int)k, (lapack_int)m, A, (lapack_int)k,
                          B, (lapack_int)k);
    if (info != 0)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL, "dpotrs: argument %d", (int)-info);
    return SDM_OK;
}

static const struct sdm_backend_i s_cpu_iface = {
    /* .name = */ "cpu",
    /* .free = */ s_cpu_free,
    /* .project = */ sdm_cpu_project,
    /* .gram = */ s_cpu_gram,
    /* .solve_spd = */ s_cpu_solve_spd,
    /* .topk_pass = */ sdm_cpu_topk_pass,
    /* .host_alloc = */ NULL,
    /* .host_free = */ NULL,
    /* .cache_free = */ NULL,
};

sdm_status sdm_cpu_backend_init(sdm_backend *be, int threads)
{
    memset(be, 0, sizeof(*be));
    be->iface = &s_cpu_iface;
    be->ctx = calloc(1, sizeof(sdm_cpu_state)); /* NULL only disables the P cache */
#ifdef _OPENMP
    if (threads <= 0)
        threads = omp_get_num_procs();
    omp_set_num_threads(threads);
#else
    if (threads <= 0)
        threads = 1;
#endif
    openblas_set_num_threads(threads);
    be->threads = threads;
    snprintf(be->device, sizeof(be->device), "cpu: %d threads, %s", threads,
             openblas_get_config());
    return SDM_OK;
}
