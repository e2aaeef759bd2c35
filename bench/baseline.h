/* baseline.h - device baselines for sediment-bench, timed in the same process.
 * Each returns 0 and the median seconds over `reps` timed runs (after a warm-up), or -1
 * with a message in err when no device is usable or this build has no cuda. */
#ifndef SDM_BENCH_BASELINE_H
#define SDM_BENCH_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

/* cuBLAS GEMM C (m x n) = A (m x k) B^T (B n x k) in dtype (f16/bf16 with fp32 accumulation
 * and output, f32 as sgemm), operands resident on the device. */
int sdm_bench_cuda_gemm(uint64_t m, uint64_t n, uint64_t k, sdm_dtype dtype, int reps,
                        double *seconds, char *err, size_t err_len);
/* Device-to-device cudaMemcpy of `bytes`; the time of one copy. */
int sdm_bench_cuda_memcpy(size_t bytes, int reps, double *seconds, char *err, size_t err_len);

#endif
