/* cpu.h - the cpu backend's ops, one file each, gathered into a table in cpu_backend.c. */
#ifndef SDM_KERNELS_CPU_H
#define SDM_KERNELS_CPU_H

#include "../backend.h"

/* The largest rademacher P the backend keeps whole (d x k floats; the engine's workspace
 * bounds it further), and the cache itself: the last P used. An engine serves one thread at
 * a time, so no lock. */
#define SDM_CPU_P_CACHE_BYTES ((size_t)256 << 20)

typedef struct sdm_cpu_state {
    uint64_t seed;
    uint64_t d;
    uint32_t k;
    float *P; /* d x k, NULL until first used */
} sdm_cpu_state;

sdm_status sdm_cpu_project(sdm_backend *be, const sdm_projection *proj, const sdm_matrix *in,
                           float *out);
sdm_status sdm_cpu_topk_pass(sdm_backend *be, const sdm_pass *pass);

/* Converts cols [c0, c0+nc) of row r of a matrix to f32. */
void sdm_cpu_convert_row(const sdm_matrix *in, uint64_t r, uint64_t c0, uint64_t nc, float *out);
/* Converts rows [r0, r0+nr) x cols [c0, c0+nc) of a matrix to f32 (row stride nc). */
void sdm_cpu_convert_block(const sdm_matrix *in, uint64_t r0, uint64_t nr, uint64_t c0,
                           uint64_t nc, float *out);

#endif /* SDM_KERNELS_CPU_H */
