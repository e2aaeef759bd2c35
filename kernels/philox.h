/* philox.h - Philox4x32-10 and the SPEC §2 sign/bucket rules, shared by host and device code.
 *
 * Everything here is a pure function of (seed, j, c): the projection matrix is regenerated
 * wherever it is used and never depends on thread counts, SM counts or launch shapes.
 */
#ifndef SDM_KERNELS_PHILOX_H
#define SDM_KERNELS_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define SDM_HD static __host__ __device__ __forceinline__
#else
#define SDM_HD static inline
#endif

#define SDM_PHILOX_M0 0xD2511F53u
#define SDM_PHILOX_M1 0xCD9E8D57u
#define SDM_PHILOX_W0 0x9E3779B9u
#define SDM_PHILOX_W1 0xBB67AE85u

/* Domain separators of SPEC §2 (the fourth counter word). */
#define SDM_RADEMACHER_TAG 0x52414445u /* "RADE" */
#define SDM_SJLT_TAG 0x534A4C54u       /* "SJLT" */

SDM_HD void sdm_philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)SDM_PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)SDM_PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

/* out = philox4x32-10(ctr, key). */
SDM_HD void sdm_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += SDM_PHILOX_W0;
            k[1] += SDM_PHILOX_W1;
        }
        sdm_philox_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

/* The 128 rademacher sign bits of input row j, columns [128*blk, 128*blk + 128):
 * bit (c % 32) of w[(c % 128) / 32]; a set bit means -1. */
SDM_HD void sdm_rademacher_block(uint64_t seed, uint64_t j, uint32_t blk, uint32_t w[4])
{
    uint32_t key[2] = {(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)(j & 0xffffffffu), (uint32_t)(j >> 32), blk,
                       SDM_RADEMACHER_TAG};
    sdm_philox(ctr, key, w);
}

/* For sjlt: the t-th non-zero of input row j, with kb = k / s columns per block.
 * Writes its column and its sign (+1 or -1). */
SDM_HD void sdm_sjlt_entry(uint64_t seed, uint64_t j, uint32_t t, uint32_t kb, uint32_t *col,
                           int *sign)
{
    uint32_t key[2] = {(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)(j & 0xffffffffu), (uint32_t)(j >> 32), t, SDM_SJLT_TAG};
    uint32_t w[4];
    sdm_philox(ctr, key, w);
    *col = t * kb + w[0] % kb;
    *sign = (w[1] & 1u) ? -1 : 1;
}

#endif /* SDM_KERNELS_PHILOX_H */
