/* test_rewards.c - the exact largest-remainder reward split: hand cases, bad input, and a
 * property test checked against an independent exact big-integer computation. */
#include <CUnit/Basic.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards.h"
#include "testdata.h"

/* ---- an independent exact check -------------------------------------------------------
 * Written apart from rewards.c on purpose: 32-bit limbs, shares read from their IEEE bits
 * (not frexp) and all put on the fixed exponent 2^-1074 (not the smallest one in use), and
 * quotas checked by multiplying back (amount * W against pool * w) instead of dividing. */
#define TB 80 /* 2560 bits: w < 2^2098, W < 50 * 2^2098, times a 64-bit amount */

typedef struct tbig {
    uint32_t d[TB];
} tbig;

/* share * 2^1074, an integer for every finite double >= 0. */
static tbig tb_from_double(double x)
{
    tbig r;
    memset(&r, 0, sizeof(r));
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    unsigned biased = (unsigned)(bits >> 52) & 0x7ff;
    uint64_t m = biased ? frac | (UINT64_C(1) << 52) : frac;
    unsigned shift = biased ? biased - 1 : 0; /* value = m * 2^(biased - 1075) */
    for (unsigned b = 0; b < 53; b++)
        if (m >> b & 1)
            r.d[(b + shift) / 32] |= UINT32_C(1) << ((b + shift) % 32);
    return r;
}

static void tb_add(tbig *a, const tbig *b)
{
    uint64_t c = 0;
    for (int i = 0; i < TB; i++) {
        c += (uint64_t)a->d[i] + b->d[i];
        a->d[i] = (uint32_t)c;
        c >>= 32;
    }
    CU_ASSERT_EQUAL(c, 0);
}

/* a - b, with a >= b. */
static tbig tb_sub(const tbig *a, const tbig *b)
{
    tbig r;
    int64_t borrow = 0;
    for (int i = 0; i < TB; i++) {
        int64_t t = (int64_t)a->d[i] - b->d[i] - borrow;
        borrow = t < 0;
        r.d[i] = (uint32_t)(t + (borrow ? (INT64_C(1) << 32) : 0));
    }
    CU_ASSERT_EQUAL(borrow, 0);
    return r;
}

static tbig tb_mul(const tbig *a, uint64_t x)
{
    tbig r;
    uint64_t lo = (uint32_t)x, hi = x >> 32;
    uint64_t c = 0;
    /* a * lo */
    for (int i = 0; i < TB; i++) {
        c += a->d[i] * lo;
        r.d[i] = (uint32_t)c;
        c >>= 32;
    }
    CU_ASSERT_EQUAL(c, 0);
    /* + (a * hi) << 32 */
    c = 0;
    for (int i = 1; i < TB; i++) {
        c += (uint64_t)r.d[i] + a->d[i - 1] * hi;
        r.d[i] = (uint32_t)c;
        c >>= 32;
    }
    CU_ASSERT_EQUAL(c + a->d[TB - 1] * hi, 0);
    return r;
}

static int tb_cmp(const tbig *a, const tbig *b)
{
    for (int i = TB - 1; i >= 0; i--)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------- */

static sdm_reward_split split_ok(const sdm_reward_input *c, size_t n, uint64_t pool)
{
    sdm_reward_split s;
    char err[200] = "";
    sdm_status st = sdm_rewards_split(c, n, pool, &s, err, sizeof(err));
    if (st != SDM_OK)
        fprintf(stderr, "unexpected error: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(st, SDM_OK);
    return s;
}

/* The amount given to the contributor with this name, or -1 when it has no row. */
static int64_t amount_of(const sdm_reward_split *s, const sdm_reward_input *c, const char *name)
{
    for (size_t i = 0; i < s->n_allocations; i++)
        if (strcmp(c[s->allocations[i].index].name, name) == 0)
            return (int64_t)s->allocations[i].amount;
    return -1;
}

/* ---- hand cases ---------------------------------------------------------------------- */

static void test_thirds_tie_by_name(void)
{
    /* quotas 10/3 each: floors 3, one unit left, equal remainders: "alice" sorts first */
    sdm_reward_input c[] = {{"carol", 1, 1}, {"alice", 2, 1}, {"bob", 0, 1}};
    sdm_reward_split s = split_ok(c, 3, 10);
    CU_ASSERT_EQUAL_FATAL(s.n_allocations, 3);
    CU_ASSERT_EQUAL(s.allocations[0].index, 1); /* by name: alice, bob, carol */
    CU_ASSERT_EQUAL(s.allocations[0].amount, 4);
    CU_ASSERT_EQUAL(s.allocations[1].index, 2);
    CU_ASSERT_EQUAL(s.allocations[1].amount, 3);
    CU_ASSERT_EQUAL(s.allocations[2].index, 0);
    CU_ASSERT_EQUAL(s.allocations[2].amount, 3);
    CU_ASSERT_EQUAL(s.n_flagged, 0);
    CU_ASSERT_EQUAL(s.unallocated, 0);
    sdm_reward_split_free(&s);
    CU_ASSERT_PTR_NULL(s.allocations);
    sdm_reward_split_free(&s); /* idempotent */

    /* pool 11: two units left, alice and bob */
    s = split_ok(c, 3, 11);
    CU_ASSERT_EQUAL(amount_of(&s, c, "alice"), 4);
    CU_ASSERT_EQUAL(amount_of(&s, c, "bob"), 4);
    CU_ASSERT_EQUAL(amount_of(&s, c, "carol"), 3);
    sdm_reward_split_free(&s);

    /* the same thirds made of the smallest subnormal */
    sdm_reward_input t[] = {{"z", 0, DBL_TRUE_MIN}, {"y", 0, DBL_TRUE_MIN}, {"x", 0, DBL_TRUE_MIN}};
    s = split_ok(t, 3, 10);
    CU_ASSERT_EQUAL(amount_of(&s, t, "x"), 4);
    CU_ASSERT_EQUAL(amount_of(&s, t, "y"), 3);
    CU_ASSERT_EQUAL(amount_of(&s, t, "z"), 3);
    sdm_reward_split_free(&s);
}

static void test_largest_remainder_wins(void)
{
    /* quotas 5.7, 3.2, 1.1: floors 5, 3, 1 and the one unit goes to the .7 */
    sdm_reward_input c[] = {{"a", 0, 0.57}, {"b", 0, 0.32}, {"c", 0, 0.11}};
    sdm_reward_input w[] = {{"a", 0, 57}, {"b", 0, 32}, {"c", 0, 11}};
    sdm_reward_split s = split_ok(w, 3, 10);
    CU_ASSERT_EQUAL(amount_of(&s, w, "a"), 6);
    CU_ASSERT_EQUAL(amount_of(&s, w, "b"), 3);
    CU_ASSERT_EQUAL(amount_of(&s, w, "c"), 1);
    sdm_reward_split_free(&s);
    /* with the decimal fractions the doubles are not exactly 57:32:11, but the quotas stay
     * far from a rounding boundary, so the answer is the same */
    s = split_ok(c, 3, 10);
    CU_ASSERT_EQUAL(amount_of(&s, c, "a"), 6);
    CU_ASSERT_EQUAL(amount_of(&s, c, "b"), 3);
    CU_ASSERT_EQUAL(amount_of(&s, c, "c"), 1);
    sdm_reward_split_free(&s);
}

static void test_pool_zero_and_single(void)
{
    sdm_reward_input c[] = {{"a", 1, 2}, {"b", 1, 3}};
    sdm_reward_split s = split_ok(c, 2, 0);
    CU_ASSERT_EQUAL(s.n_allocations, 2);
    CU_ASSERT_EQUAL(amount_of(&s, c, "a"), 0);
    CU_ASSERT_EQUAL(amount_of(&s, c, "b"), 0);
    CU_ASSERT_EQUAL(s.unallocated, 0);
    sdm_reward_split_free(&s);

    s = split_ok(c, 1, UINT64_MAX);
    CU_ASSERT_EQUAL_FATAL(s.n_allocations, 1);
    CU_ASSERT_EQUAL(s.allocations[0].index, 0);
    CU_ASSERT_EQUAL(s.allocations[0].amount, UINT64_MAX);
    sdm_reward_split_free(&s);

    s = split_ok(NULL, 0, 42); /* nobody: everything unallocated */
    CU_ASSERT_EQUAL(s.n_allocations, 0);
    CU_ASSERT_EQUAL(s.unallocated, 42);
    sdm_reward_split_free(&s);
}

static void test_negative_scores_flagged(void)
{
    sdm_reward_input all_neg[] = {{"m", -1, 5}, {"k", -0.5, 1}};
    sdm_reward_split s = split_ok(all_neg, 2, 100);
    CU_ASSERT_EQUAL(s.n_allocations, 0);
    CU_ASSERT_EQUAL(s.unallocated, 100);
    CU_ASSERT_EQUAL_FATAL(s.n_flagged, 2);
    CU_ASSERT_EQUAL(s.flagged[0], 1); /* k before m */
    CU_ASSERT_EQUAL(s.flagged[1], 0);
    sdm_reward_split_free(&s);

    /* a flagged contributor's large share does not dilute the others; a zero share gets no
     * row; a score of -0.0 is not negative */
    sdm_reward_input mix[] = {{"big", -1e-9, 1000}, {"x", 3, 1}, {"y", -0.0, 3}, {"z", 1, 0}};
    s = split_ok(mix, 4, 8);
    CU_ASSERT_EQUAL_FATAL(s.n_allocations, 2);
    CU_ASSERT_EQUAL(amount_of(&s, mix, "x"), 2);
    CU_ASSERT_EQUAL(amount_of(&s, mix, "y"), 6);
    CU_ASSERT_EQUAL(amount_of(&s, mix, "big"), -1);
    CU_ASSERT_EQUAL(amount_of(&s, mix, "z"), -1);
    CU_ASSERT_EQUAL_FATAL(s.n_flagged, 1);
    CU_ASSERT_EQUAL(s.flagged[0], 0);
    CU_ASSERT_EQUAL(s.unallocated, 0);
    sdm_reward_split_free(&s);

    /* only zero shares: nothing eligible */
    sdm_reward_input zero[] = {{"a", 1, 0}};
    s = split_ok(zero, 1, 7);
    CU_ASSERT_EQUAL(s.n_allocations, 0);
    CU_ASSERT_EQUAL(s.unallocated, 7);
    sdm_reward_split_free(&s);
}

static void test_extreme_magnitudes(void)
{
    /* 1e300 twice and 1e-300: quotas 1.5, 1.5 and ~1e-600 of a unit: the tie goes by name */
    sdm_reward_input c[] = {{"b", 0, 1e300}, {"a", 0, 1e300}, {"c", 0, 1e-300}};
    sdm_reward_split s = split_ok(c, 3, 3);
    CU_ASSERT_EQUAL(amount_of(&s, c, "a"), 2);
    CU_ASSERT_EQUAL(amount_of(&s, c, "b"), 1);
    CU_ASSERT_EQUAL(amount_of(&s, c, "c"), 0);
    sdm_reward_split_free(&s);

    sdm_reward_input far[] = {{"max", 0, DBL_MAX}, {"min", 0, DBL_TRUE_MIN}};
    s = split_ok(far, 2, UINT64_MAX);
    CU_ASSERT_EQUAL(amount_of(&s, far, "max"), UINT64_MAX);
    CU_ASSERT_EQUAL(amount_of(&s, far, "min"), 0);
    sdm_reward_split_free(&s);
}

static void test_full_pool_exact(void)
{
    /* 2^64 - 1 is divisible by 3: a double-precision split would be off by hundreds */
    sdm_reward_input c[] = {{"a", 0, 1}, {"b", 0, 2}};
    sdm_reward_split s = split_ok(c, 2, UINT64_MAX);
    CU_ASSERT_EQUAL(amount_of(&s, c, "a"), UINT64_C(6148914691236517205));
    CU_ASSERT_EQUAL(amount_of(&s, c, "b"), UINT64_C(12297829382473034410));
    sdm_reward_split_free(&s);

    /* shares 1 and 2^-60: 2^64 - 1 = 16 (2^60 + 1) - 17, so the small quota is
     * 16 - 17/(2^60+1) and the large one (2^64 - 17) + 17/(2^60+1); the one unit left goes to
     * the small one's larger remainder */
    sdm_reward_input d[] = {{"big", 0, 1}, {"small", 0, ldexp(1, -60)}};
    s = split_ok(d, 2, UINT64_MAX);
    CU_ASSERT_EQUAL(amount_of(&s, d, "big"), UINT64_MAX - 16);
    CU_ASSERT_EQUAL(amount_of(&s, d, "small"), 16);
    sdm_reward_split_free(&s);
}

static void test_bad_input(void)
{
    struct {
        sdm_reward_input c[3];
        const char *field;
    } cases[] = {
        {{{"a", 0, 1}, {"b", 0, NAN}, {"c", 0, 1}}, "contributors[1].share"},
        {{{"a", 0, 1}, {"b", 0, 1}, {"c", 0, INFINITY}}, "contributors[2].share"},
        {{{"a", 0, -1}, {"b", 0, 1}, {"c", 0, 1}}, "contributors[0].share"},
        {{{"a", 0, 1}, {NULL, 0, 1}, {"c", 0, 1}}, "contributors[1].name"},
        {{{"a", NAN, 1}, {"b", 0, 1}, {"c", 0, 1}}, "contributors[0].score"},
        {{{"a", 0, 1}, {"b", 0, 1}, {"a", 0, 1}}, "contributors[2].name"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        sdm_reward_split s, before;
        memset(&s, 0x5a, sizeof(s));
        before = s;
        char err[200] = "";
        CU_ASSERT_EQUAL(sdm_rewards_split(cases[k].c, 3, 10, &s, err, sizeof(err)),
                        SDM_ERR_BAD_INPUT);
        if (!strstr(err, cases[k].field))
            fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", k, err, cases[k].field);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[k].field));
        CU_ASSERT_EQUAL(memcmp(&s, &before, sizeof(s)), 0);
    }
    char err[200] = "";
    sdm_reward_split s;
    CU_ASSERT_EQUAL(sdm_rewards_split(NULL, 2, 10, &s, err, sizeof(err)), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "contributors"));
}

/* ---- property test ------------------------------------------------------------------- */

static double random_share(test_rng *r, const sdm_reward_input *prev, size_t n_prev)
{
    uint64_t kind = test_rng_u64(r) % 20;
    if (kind < 2)
        return 0;
    if (kind < 6)
        return (double)(1 + test_rng_u64(r) % 4); /* small integers: many exact ties */
    if (kind < 8)
        return test_rng_uniform(r);
    if (kind < 11)
        return ldexp(test_rng_uniform(r), (int)(test_rng_u64(r) % 2098) - 1074);
    if (kind < 14) {
        for (;;) { /* any finite positive bit pattern, subnormals included */
            uint64_t bits = test_rng_u64(r) >> 1;
            double x;
            memcpy(&x, &bits, sizeof(x));
            if (isfinite(x))
                return x;
        }
    }
    if (kind < 15)
        return test_rng_u64(r) & 1 ? DBL_MAX : DBL_TRUE_MIN;
    if (n_prev > 0)
        return prev[test_rng_u64(r) % n_prev].share; /* equal shares: ties */
    return 1;
}

static uint64_t random_pool(test_rng *r)
{
    switch (test_rng_u64(r) % 6) {
    case 0: return 0;
    case 1: return 1;
    case 2: return UINT64_MAX;
    case 3: return test_rng_u64(r) % 101;
    case 4: return UINT64_C(1) << 63;
    default: return test_rng_u64(r);
    }
}

/* Checks one split against the definition; returns 0 when everything holds (CUnit records
 * the detail). */
static int check_split(const sdm_reward_input *c, size_t n, uint64_t pool,
                       const sdm_reward_split *s)
{
    int bad = 0;
    size_t n_elig = 0, n_neg = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].score < 0)
            n_neg++;
        else if (c[i].share > 0)
            n_elig++;
    }
    bad |= s->n_flagged != n_neg;
    for (size_t i = 0; i < s->n_flagged; i++) {
        bad |= !(c[s->flagged[i]].score < 0);
        if (i > 0)
            bad |= strcmp(c[s->flagged[i - 1]].name, c[s->flagged[i]].name) >= 0;
    }
    bad |= s->n_allocations != n_elig;
    if (n_elig == 0) {
        bad |= s->unallocated != pool;
        CU_ASSERT_FALSE(bad);
        return bad;
    }
    bad |= s->unallocated != 0;

    tbig W;
    memset(&W, 0, sizeof(W));
    unsigned __int128 sum = 0;
    for (size_t i = 0; i < s->n_allocations; i++) {
        const sdm_reward_input *ci = &c[s->allocations[i].index];
        bad |= !(ci->score >= 0 && ci->share > 0);
        if (i > 0)
            bad |= strcmp(c[s->allocations[i - 1].index].name, ci->name) >= 0;
        tbig w = tb_from_double(ci->share);
        tb_add(&W, &w);
        sum += s->allocations[i].amount;
    }
    bad |= sum != pool;

    /* each amount a is floor(Q) or floor(Q) + 1, Q = pool * w / W: (a-1) W <= P < (a+1) W */
    int worst_up = -1, best_down = -1;
    tbig rem[64];
    int up[64];
    for (size_t i = 0; i < s->n_allocations && i < 64; i++) {
        uint64_t a = s->allocations[i].amount;
        tbig w = tb_from_double(c[s->allocations[i].index].share);
        tbig P = tb_mul(&w, pool), aW = tb_mul(&W, a);
        if (tb_cmp(&aW, &P) <= 0) { /* a <= Q: a must be the floor */
            rem[i] = tb_sub(&P, &aW);
            bad |= tb_cmp(&rem[i], &W) >= 0;
            up[i] = 0;
        } else { /* a > Q: a - 1 must be the floor */
            tbig fW = tb_sub(&aW, &W); /* a >= 1 here since 0 * W <= P */
            bad |= tb_cmp(&fW, &P) > 0;
            if (tb_cmp(&fW, &P) <= 0)
                rem[i] = tb_sub(&P, &fW);
            else
                memset(&rem[i], 0, sizeof(rem[i]));
            up[i] = 1;
        }
    }
    /* largest remainder: every rounded-up remainder beats every rounded-down one, equal
     * remainders by name (allocations are in name order, so a smaller i is a smaller name) */
    for (size_t i = 0; i < s->n_allocations; i++) {
        if (up[i]) {
            if (worst_up < 0 || tb_cmp(&rem[i], &rem[worst_up]) <= 0)
                worst_up = (int)i; /* the last of equals: the largest name */
        } else if (best_down < 0 || tb_cmp(&rem[i], &rem[best_down]) > 0) {
            best_down = (int)i; /* the first of equals: the smallest name */
        }
    }
    if (worst_up >= 0 && best_down >= 0) {
        int cmp = tb_cmp(&rem[worst_up], &rem[best_down]);
        bad |= cmp < 0 || (cmp == 0 && worst_up > best_down);
    }
    CU_ASSERT_FALSE(bad);
    return bad;
}

static void test_property(void)
{
    test_rng r = {2024};
    sdm_reward_input c[50], shuffled[50];
    char names[50][16];
    int failures = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 1 + test_rng_u64(&r) % 50;
        uint64_t pool = random_pool(&r);
        for (size_t i = 0; i < n; i++) {
            /* distinct names in a random relation to the input order */
            snprintf(names[i], sizeof(names[i]), "c%02zu", (i * 37 + (size_t)iter) % 50);
            c[i].name = names[i];
            uint64_t sk = test_rng_u64(&r) % 10;
            c[i].score = sk < 2 ? -test_rng_uniform(&r) - 1e-12 : sk < 3 ? -0.0 : test_rng_uniform(&r);
            c[i].share = random_share(&r, c, i);
        }
        sdm_reward_split s = split_ok(c, n, pool);
        int bad = check_split(c, n, pool, &s);

        /* the same contributors in another order give the same split */
        memcpy(shuffled, c, n * sizeof(c[0]));
        for (size_t i = n; i > 1; i--) {
            size_t j = test_rng_u64(&r) % i;
            sdm_reward_input t = shuffled[i - 1];
            shuffled[i - 1] = shuffled[j];
            shuffled[j] = t;
        }
        sdm_reward_split s2 = split_ok(shuffled, n, pool);
        bad |= s2.n_allocations != s.n_allocations || s2.n_flagged != s.n_flagged ||
               s2.unallocated != s.unallocated;
        for (size_t i = 0; !bad && i < s.n_allocations; i++)
            bad |= strcmp(c[s.allocations[i].index].name,
                          shuffled[s2.allocations[i].index].name) != 0 ||
                   s.allocations[i].amount != s2.allocations[i].amount;
        for (size_t i = 0; !bad && i < s.n_flagged; i++)
            bad |= strcmp(c[s.flagged[i]].name, shuffled[s2.flagged[i]].name) != 0;
        CU_ASSERT_FALSE(bad);
        if (bad && failures++ < 3)
            fprintf(stderr, "property failed at iteration %d (n=%zu pool=%llu)\n", iter, n,
                    (unsigned long long)pool);
        sdm_reward_split_free(&s);
        sdm_reward_split_free(&s2);
    }
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("rewards", NULL, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "thirds: ties go by name", test_thirds_tie_by_name);
    CU_add_test(s, "largest remainder wins", test_largest_remainder_wins);
    CU_add_test(s, "pool 0, one contributor, nobody", test_pool_zero_and_single);
    CU_add_test(s, "negative scores are flagged", test_negative_scores_flagged);
    CU_add_test(s, "extreme magnitudes", test_extreme_magnitudes);
    CU_add_test(s, "full 64-bit pool is exact", test_full_pool_exact);
    CU_add_test(s, "bad input names the field", test_bad_input);
    CU_add_test(s, "property: exact, complete, order-free", test_property);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
