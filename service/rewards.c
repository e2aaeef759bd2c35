/* rewards.c - the exact largest-remainder split of a reward pool by summed shares. */
#include "rewards.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why this is exact. Every finite double x > 0 equals m * 2^e with m an odd integer below
 * 2^53 and -1074 <= e <= 970 (frexp gives the fraction and exponent without rounding). With
 * emin the smallest e among the eligible shares, w_i = m_i * 2^(e_i - emin) is an integer and
 * share_i / sum(share) = w_i / W exactly, W = sum(w_i). Since share_i < 2^1024 and
 * 2^emin >= 2^-1074, w_i < 2^2098; W < n * 2^2098; pool * w_i < 2^2162; the divisor W * 2^63
 * used by the long division stays below n * 2^2161. BN_LIMBS 64-bit limbs (2304 bits) hold
 * all of it for any n below 2^142, so no step overflows and no step rounds. */
#define BN_LIMBS 36

typedef struct bn {
    uint64_t d[BN_LIMBS]; /* little-endian limbs */
} bn;

/* All the arithmetic below works on the first `len` limbs: len is sized once per split from W,
 * which keeps the common case (shares of similar magnitude) to a few limbs. */

static void bn_set_shifted(bn *a, uint64_t m, unsigned shift)
{
    memset(a, 0, sizeof(*a));
    unsigned limb = shift / 64, bit = shift % 64;
    a->d[limb] = m << bit;
    if (bit && limb + 1 < BN_LIMBS)
        a->d[limb + 1] = m >> (64 - bit);
}

static void bn_add(bn *a, const bn *b, unsigned len)
{
    unsigned __int128 carry = 0;
    for (unsigned i = 0; i < len; i++) {
        carry += (unsigned __int128)a->d[i] + b->d[i];
        a->d[i] = (uint64_t)carry;
        carry >>= 64;
    }
}

/* a -= b; the caller knows a >= b. */
static void bn_sub(bn *a, const bn *b, unsigned len)
{
    uint64_t borrow = 0;
    for (unsigned i = 0; i < len; i++) {
        uint64_t bi = b->d[i];
        uint64_t t = a->d[i] - bi - borrow;
        borrow = (a->d[i] < bi) || (a->d[i] - bi < borrow);
        a->d[i] = t;
    }
}

static void bn_mul_u64(bn *out, const bn *a, uint64_t x, unsigned len)
{
    unsigned __int128 carry = 0;
    for (unsigned i = 0; i < len; i++) {
        carry += (unsigned __int128)a->d[i] * x;
        out->d[i] = (uint64_t)carry;
        carry >>= 64;
    }
}

/* a <<= s for 0 < s < 64. */
static void bn_shl_small(bn *a, unsigned s, unsigned len)
{
    for (unsigned i = len; i-- > 1;)
        a->d[i] = (a->d[i] << s) | (a->d[i - 1] >> (64 - s));
    a->d[0] <<= s;
}

static void bn_shr1(bn *a, unsigned len)
{
    for (unsigned i = 0; i + 1 < len; i++)
        a->d[i] = (a->d[i] >> 1) | (a->d[i + 1] << 63);
    a->d[len - 1] >>= 1;
}

static int bn_cmp(const bn *a, const bn *b, unsigned len)
{
    for (unsigned i = len; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* Limbs in use (0 for zero). */
static unsigned bn_used(const bn *a)
{
    unsigned i = BN_LIMBS;
    while (i > 0 && a->d[i - 1] == 0)
        i--;
    return i;
}

typedef struct entry {
    const char *name;
    size_t index;
    uint64_t mant; /* odd */
    int exp;
    uint64_t amount;
    bn rem; /* pool * w - floor * W, compared across entries against the same W */
} entry;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* Largest remainder first; equal remainders in name order (the documented tie rule). */
static int by_remainder(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = bn_cmp(&x->rem, &y->rem, BN_LIMBS);
    return c ? -c : strcmp(x->name, y->name);
}

static sdm_status fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return SDM_ERR_BAD_INPUT;
}

static sdm_status check_inputs(const sdm_reward_input *c, size_t n, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        if (!c[i].name)
            return fail(err, err_len, "contributors[%zu].name: missing", i);
        if (isnan(c[i].score))
            return fail(err, err_len, "contributors[%zu].score: NaN", i);
        if (isnan(c[i].share))
            return fail(err, err_len, "contributors[%zu].share: NaN", i);
        if (isinf(c[i].share))
            return fail(err, err_len, "contributors[%zu].share: infinite", i);
        if (c[i].share < 0)
            return fail(err, err_len, "contributors[%zu].share: negative (%g)", i, c[i].share);
    }
    return SDM_OK;
}

/* floor(pool * w / W) into e->amount and the remainder into e->rem, by binary long division:
 * the quotient is at most pool, so 64 quotient bits suffice and the divisor starts at W << 63
 * (`top`). */
static void divide(entry *e, const bn *w, uint64_t pool, const bn *top, unsigned len)
{
    bn r, d = *top;
    memset(&r, 0, sizeof(r));
    bn_mul_u64(&r, w, pool, len);
    uint64_t q = 0;
    for (int b = 63; b >= 0; b--) {
        if (bn_cmp(&r, &d, len) >= 0) {
            bn_sub(&r, &d, len);
            q |= (uint64_t)1 << b;
        }
        bn_shr1(&d, len);
    }
    e->amount = q;
    e->rem = r;
}

sdm_status sdm_rewards_split(const sdm_reward_input *contributors, size_t n, uint64_t pool,
                             sdm_reward_split *out, char *err, size_t err_len)
{
    if (!out)
        return fail(err, err_len, "out: missing");
    if (n > 0 && !contributors)
        return fail(err, err_len, "contributors: missing");
    sdm_status st = check_inputs(contributors, n, err, err_len);
    if (st != SDM_OK)
        return st;

    entry *all = calloc(n ? n : 1, sizeof(*all));
    if (!all)
        return SDM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        all[i].name = contributors[i].name;
        all[i].index = i;
    }
    /* Sorting by name first gives the output order, finds repeated names, and makes the rest
     * independent of the input order. */
    qsort(all, n, sizeof(*all), by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(all[i - 1].name, all[i].name) == 0) {
            size_t a = all[i - 1].index, b = all[i].index;
            free(all);
            return fail(err, err_len, "contributors[%zu].name: repeats contributors[%zu].name",
                        a > b ? a : b, a > b ? b : a);
        }

    size_t n_flagged = 0, n_elig = 0;
    for (size_t i = 0; i < n; i++) {
        const sdm_reward_input *c = &contributors[all[i].index];
        if (c->score < 0)
            n_flagged++;
        else if (c->share > 0)
            n_elig++;
    }
    size_t *flagged = calloc(n_flagged ? n_flagged : 1, sizeof(*flagged));
    sdm_reward_alloc *allocs = calloc(n_elig ? n_elig : 1, sizeof(*allocs));
    entry *el = calloc(n_elig ? n_elig : 1, sizeof(*el));
    bn *w = calloc(n_elig ? n_elig : 1, sizeof(*w));
    if (!flagged || !allocs || !el || !w) {
        free(flagged), free(allocs), free(el), free(w), free(all);
        return SDM_ERR_NOMEM;
    }

    /* Eligible entries stay in name order; shares become (odd mantissa, exponent). */
    size_t nf = 0, ne = 0;
    int emin = 0;
    for (size_t i = 0; i < n; i++) {
        const sdm_reward_input *c = &contributors[all[i].index];
        if (c->score < 0) {
            flagged[nf++] = all[i].index;
            continue;
        }
        if (!(c->share > 0))
            continue;
        entry *e = &el[ne++];
        *e = all[i];
        int ex;
        double f = frexp(c->share, &ex); /* share = f * 2^ex, 0.5 <= f < 1, exact */
        e->mant = (uint64_t)ldexp(f, 53); /* an integer: a double has at most 53 bits */
        e->exp = ex - 53;
        while (!(e->mant & 1)) {
            e->mant >>= 1;
            e->exp++;
        }
        if (ne == 1 || e->exp < emin)
            emin = e->exp;
    }
    free(all);

    sdm_reward_split res = {allocs, ne, flagged, nf, 0};
    if (ne == 0) {
        res.unallocated = pool;
    } else {
        bn total;
        memset(&total, 0, sizeof(total));
        for (size_t i = 0; i < ne; i++) {
            bn_set_shifted(&w[i], el[i].mant, (unsigned)(el[i].exp - emin));
            bn_add(&total, &w[i], BN_LIMBS);
        }
        /* pool * w_i needs one limb more than W, and W << 63 one more again. */
        unsigned len = bn_used(&total) + 2;
        if (len > BN_LIMBS)
            len = BN_LIMBS;
        bn top = total;
        bn_shl_small(&top, 63, len);

        uint64_t given = 0;
        for (size_t i = 0; i < ne; i++) {
            divide(&el[i], &w[i], pool, &top, len);
            given += el[i].amount; /* the floors sum to at most pool: no overflow */
        }
        /* Each remainder is below W and they sum to (pool - given) * W, so fewer than ne units
         * are left: one each to the largest remainders. */
        uint64_t left = pool - given;
        if (given > pool || left >= ne) {
            free(flagged), free(allocs), free(el), free(w);
            if (err && err_len)
                snprintf(err, err_len, "rewards: %llu units left for %zu contributors",
                         (unsigned long long)left, ne);
            return SDM_ERR_INTERNAL;
        }
        qsort(el, ne, sizeof(*el), by_remainder);
        for (size_t i = 0; i < left; i++)
            el[i].amount++;
        qsort(el, ne, sizeof(*el), by_name);
        for (size_t i = 0; i < ne; i++) {
            allocs[i].index = el[i].index;
            allocs[i].amount = el[i].amount;
        }
    }
    free(el);
    free(w);
    *out = res;
    return SDM_OK;
}

void sdm_reward_split_free(sdm_reward_split *split)
{
    if (!split)
        return;
    free(split->allocations);
    free(split->flagged);
    memset(split, 0, sizeof(*split));
}
