/* rng.h - the models' counter-based random numbers: Philox4x32-10 keyed by a 64-bit seed.
 *
 * Every draw is a pure function of (seed, counter, stream, tag), so a draw never depends on
 * the order of other draws, on thread counts or on which subset of examples is in memory,
 * and any client can reproduce it: philox(ctr = (counter & 0xffffffff, counter >> 32, stream,
 * tag), key = (seed & 0xffffffff, seed >> 32)), the u64 being (w[0] << 32) | w[1]. The tags
 * keep the uses apart the way SPEC §2 keeps the projections apart.
 */
#ifndef SDM_MODELS_RNG_H
#define SDM_MODELS_RNG_H

#include <stdint.h>

#include "sediment/engine.h"

#define SDM_RNG_SPLIT 0x53504C54u     /* "SPLT": dataset splits */
#define SDM_RNG_CURVATURE 0x43555256u /* "CURV": sampled labels of curvature rows */
#define SDM_RNG_INIT 0x494E4954u      /* "INIT": initial parameters */

static inline uint64_t sdm_rng_u64(uint64_t seed, uint64_t counter, uint32_t stream, uint32_t tag)
{
    uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), stream, tag};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t w[4];
    sdm_philox4x32_10(ctr, key, w);
    return (uint64_t)w[0] << 32 | w[1];
}

/* Uniform in [0, 1): the top 53 bits of the u64. */
static inline double sdm_rng_uniform(uint64_t seed, uint64_t counter, uint32_t stream, uint32_t tag)
{
    return (double)(sdm_rng_u64(seed, counter, stream, tag) >> 11) * 0x1p-53;
}

#endif
