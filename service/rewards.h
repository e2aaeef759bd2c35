/* rewards.h - the ledger's `rewards` split: a pool divided exactly by summed shares (SPEC §6).
 *
 * Largest remainder (Hamilton): each eligible contributor first gets floor(pool * w_i / W),
 * where w_i is its summed share and W the sum over eligible contributors; the units left over
 * (fewer than the number of eligible contributors) go one each to the largest remainders.
 * Ties between equal remainders go to the contributor whose name sorts first (bytewise,
 * strcmp), so the split depends only on the set of contributors, never on their order.
 *
 * Everything is computed in exact integer arithmetic: a double is m * 2^e exactly, so every
 * share is turned into an integer on one common exponent and the quotas and remainders are
 * big-integer divisions. No floating-point rounding enters the split, for any pool up to
 * UINT64_MAX and shares anywhere in the double range (subnormals to DBL_MAX).
 */
#ifndef SDM_SERVICE_REWARDS_H
#define SDM_SERVICE_REWARDS_H

#include <stddef.h>
#include <stdint.h>

#include "sediment/engine.h"

/* One contributor's totals over the window. */
typedef struct sdm_reward_input {
    const char *name; /* borrowed; unique within one call */
    double score;     /* summed score: negative means flagged (gets nothing); NaN is refused */
    double share;     /* summed share: finite and >= 0 */
} sdm_reward_input;

typedef struct sdm_reward_alloc {
    size_t index;    /* into the input array */
    uint64_t amount;
} sdm_reward_alloc;

typedef struct sdm_reward_split {
    /* One row per eligible contributor (score >= 0 and share > 0), even when its amount is 0
     * (pool 0, or a share too small to reach a unit), sorted by name. The amounts sum to the
     * pool exactly whenever there is a row. */
    sdm_reward_alloc *allocations;
    size_t n_allocations;
    /* Input indices of the contributors whose summed score is negative, sorted by name. */
    size_t *flagged;
    size_t n_flagged;
    /* The pool when no contributor is eligible (allocations is then empty), else 0. */
    uint64_t unallocated;
} sdm_reward_split;

/* Splits pool among the n contributors. On success fills *out (the caller frees it with
 * sdm_reward_split_free) and returns SDM_OK. Bad input returns SDM_ERR_BAD_INPUT with a
 * message naming the field, e.g. "contributors[3].share: NaN", and leaves *out untouched;
 * so does SDM_ERR_NOMEM. Refused: a NULL name, a repeated name, a NaN score, and a share that
 * is NaN, infinite or negative. n == 0 is fine (everything is unallocated). */
SDM_NODISCARD sdm_status sdm_rewards_split(const sdm_reward_input *contributors, size_t n,
                                           uint64_t pool, sdm_reward_split *out, char *err,
                                           size_t err_len);

/* Frees the arrays of a split and zeroes it. NULL-safe and idempotent. */
void sdm_reward_split_free(sdm_reward_split *split);

#endif /* SDM_SERVICE_REWARDS_H */
