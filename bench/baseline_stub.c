/* baseline_stub.c - device baselines in a build without cuda. */
#include <stdio.h>

#include "baseline.h"

int sdm_bench_cuda_gemm(uint64_t m, uint64_t n, uint64_t k, sdm_dtype dtype, int reps,
                        double *seconds, char *err, size_t err_len)
{
    snprintf(err, err_len, "this build has no cuda");
    return -1;
}

int sdm_bench_cuda_memcpy(size_t bytes, int reps, double *seconds, char *err, size_t err_len)
{
    snprintf(err, err_len, "this build has no cuda");
    return -1;
}
