/* test_attribute.c - sdm_attribute (the fast path) against the plain-loop reference on
 * random stores: every method and aggregate, several checkpoints in different example
 * orders, absent examples, empty shards, weights, curvature rows, snapshots, ties, tiny
 * workspaces; and bad requests, which must fail with the right status and change nothing. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "testdata.h"

#define TOL 2e-4

typedef struct scenario {
    const char *name;
    sdm_proj_kind kind;
    uint64_t d;
    uint32_t k;
    uint32_t s;
    int n_ckpts;       /* checkpoints with training rows */
    uint64_t n;        /* examples */
    int n_shards;
    int batch_rows;    /* rows per contributed batch */
    int shuffle;       /* later checkpoints see the examples in another order */
    int drop;          /* later checkpoints miss every drop-th example (0: none) */
    int weights;
    int curvature;     /* curvature rows at checkpoint 0 */
    int duplicates;    /* some examples repeat another's features: exact ties */
    uint64_t m;
    size_t workspace;  /* engine workspace (small values force many tiles) */
} scenario;

typedef struct built {
    sdm_engine_t *eng;
    sdm_store_t *store;
    float *queries[4];
    sdm_query q[4];
    uint64_t batches_half; /* store size after the first checkpoint's batches */
} built;

static void build(const scenario *sc, built *b, uint64_t seed)
{
    memset(b, 0, sizeof(*b));
    test_rng rng = {seed};
    b->eng = test_engine(sc->workspace);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b->eng);
    sdm_projection p = {sc->kind, sc->d, sc->k, sc->s, 1234 + seed};
    b->store = sdm_store_new(b->eng, &p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b->store);
    uint64_t d = sc->kind == SDM_PROJ_NONE ? sc->k : sc->d;
    uint64_t *order = malloc(sc->n * sizeof(uint64_t));
    for (int c = 0; c < sc->n_ckpts; c++) {
        char ckpt[16];
        snprintf(ckpt, sizeof(ckpt), "ckpt-%d", c);
        for (uint64_t i = 0; i < sc->n; i++)
            order[i] = i;
        if (c > 0 && sc->shuffle)
            for (uint64_t i = sc->n; i-- > 1;) {
                uint64_t j = test_rng_u64(&rng) % (i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        float *g = test_random_floats(&rng, sc->n * d, 1.0);
        if (sc->duplicates)
            for (uint64_t i = 1; i < sc->n; i += 3)
                memcpy(g + i * d, g + (i - 1) * d, d * sizeof(float));
        /* group rows into batches of one shard each: walk in `order`, cutting a batch when
         * the shard changes or it is full */
        uint64_t i = 0;
        while (i < sc->n) {
            uint64_t ids[64];
            float *rows = malloc(sc->batch_rows * d * sizeof(float));
            double w[64];
            int shard = (int)(order[i] % sc->n_shards), nb = 0;
            while (i < sc->n && nb < sc->batch_rows && (int)(order[i] % sc->n_shards) == shard) {
                uint64_t e = order[i++];
                if (c > 0 && sc->drop && e % sc->drop == 0)
                    continue;
                ids[nb] = e * 7 + 3; /* ids are not indices */
                memcpy(rows + nb * d, g + e * d, d * sizeof(float));
                w[nb] = 0.5 + (double)(e % 4) / 4;
                nb++;
            }
            char sh[16], co[16];
            snprintf(sh, sizeof(sh), "shard-%d", shard);
            snprintf(co, sizeof(co), "contrib-%d", shard % 3);
            sdm_batch bt = {ckpt, 0.1 * (c + 1), co, sh, 0, ids,
                            {SDM_F32, (uint64_t)nb, d, rows}, sc->kind == SDM_PROJ_NONE,
                            sc->weights ? w : NULL};
            sdm_status st = sdm_store_append(b->store, &bt, NULL, NULL);
            if (st != SDM_OK)
                fprintf(stderr, "\n%s: %s\n", sc->name, sdm_engine_last_error(b->eng));
            CU_ASSERT_EQUAL_FATAL(st, SDM_OK);
            free(rows);
        }
        free(g);
        if (c == 0) {
            if (sc->curvature) {
                uint64_t nc = 3 * sc->k / 2 + 5;
                float *cg = test_random_floats(&rng, nc * d, 0.7);
                sdm_batch bt = {ckpt, 0.1, NULL, NULL, 1, NULL, {SDM_F32, nc, d, cg},
                                sc->kind == SDM_PROJ_NONE, NULL};
                CU_ASSERT_EQUAL_FATAL(sdm_store_append(b->store, &bt, NULL, NULL), SDM_OK);
                free(cg);
            }
            /* an empty shard: registered by a batch of no rows */
            sdm_batch empty = {ckpt, 0.1, "contrib-empty", "shard-empty", 0, NULL,
                               {SDM_F32, 0, d, NULL}, sc->kind == SDM_PROJ_NONE, NULL};
            CU_ASSERT_EQUAL_FATAL(sdm_store_append(b->store, &empty, NULL, NULL), SDM_OK);
            b->batches_half = sdm_store_batches(b->store);
        }
    }
    free(order);
    for (int c = 0; c < sc->n_ckpts; c++) {
        b->queries[c] = test_random_floats(&rng, sc->m * d, 1.0);
        char *name = malloc(16);
        snprintf(name, 16, "ckpt-%d", c);
        b->q[c] = (sdm_query){name, {SDM_F32, sc->m, d, b->queries[c]},
                              sc->kind == SDM_PROJ_NONE, NAN};
    }
}

static void unbuild(built *b, int n_ckpts)
{
    for (int c = 0; c < n_ckpts; c++) {
        free(b->queries[c]);
        free((char *)b->q[c].checkpoint);
    }
    sdm_store_destroy(&b->store);
    sdm_engine_destroy(&b->eng);
}

static void compare(built *b, const scenario *sc, sdm_method method, sdm_aggregate agg,
                    uint32_t topk, size_t nq, uint64_t store_size)
{
    sdm_attr_request req = {method, agg, topk, nq, b->q, store_size};
    sdm_attr_result *fast = NULL, *ref = NULL;
    sdm_status st = sdm_attribute(b->eng, b->store, &req, &fast);
    if (st != SDM_OK)
        fprintf(stderr, "\n%s: %s\n", sc->name, sdm_engine_last_error(b->eng));
    CU_ASSERT_EQUAL_FATAL(st, SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_attribute_reference(b->eng, b->store, &req, &ref), SDM_OK);
    char what[256];
    snprintf(what, sizeof(what), "%s %s %s topk %u ckpts %zu size %llu", sc->name,
             sdm_method_name(method), sdm_aggregate_name(agg), topk, nq,
             (unsigned long long)(store_size == SDM_STORE_NOW ? 0 : store_size));
    test_assert_results_close(fast, ref, TOL, what);
    if (topk == 0)
        CU_ASSERT_EQUAL(fast->topk, 0);
    sdm_attr_result_free(&fast);
    sdm_attr_result_free(&ref);
}

static void run_scenario(const scenario *sc)
{
    built b;
    build(sc, &b, 17);
    static const sdm_method methods[] = {SDM_METHOD_DOT, SDM_METHOD_COSINE, SDM_METHOD_TRAK};
    for (int mi = 0; mi < 3; mi++) {
        compare(&b, sc, methods[mi], SDM_AGG_SUM, 5, (size_t)sc->n_ckpts, SDM_STORE_NOW);
        compare(&b, sc, methods[mi], SDM_AGG_MEAN, 1, (size_t)sc->n_ckpts, SDM_STORE_NOW);
        compare(&b, sc, methods[mi], SDM_AGG_SUM, (uint32_t)sc->n, 1, SDM_STORE_NOW);
        compare(&b, sc, methods[mi], SDM_AGG_SUM, 0, (size_t)sc->n_ckpts, SDM_STORE_NOW);
        if (sc->n_ckpts > 1) /* a snapshot: the store as it was after checkpoint 0 */
            compare(&b, sc, methods[mi], SDM_AGG_MEAN, 3, 1, b.batches_half);
    }
    unbuild(&b, sc->n_ckpts);
}

static const scenario scenarios[] = {
    {"rademacher k130 one ckpt", SDM_PROJ_RADEMACHER, 70, 130, 0, 1, 50, 4, 7, 0, 0, 0, 0, 0, 3, 0},
    {"rademacher k300 two ckpts shuffled", SDM_PROJ_RADEMACHER, 40, 300, 0, 2, 90, 5, 9, 1, 0, 1, 0, 0, 4, 0},
    {"sjlt s4 dropped examples", SDM_PROJ_SJLT, 120, 64, 4, 2, 77, 3, 16, 0, 5, 0, 0, 0, 2, 0},
    {"none k33 curvature", SDM_PROJ_NONE, 33, 33, 0, 2, 60, 6, 5, 1, 4, 1, 1, 0, 5, 0},
    {"tiny workspace many tiles", SDM_PROJ_RADEMACHER, 50, 96, 0, 3, 400, 7, 13, 1, 3, 1, 1, 0, 3, 4096},
    {"ties", SDM_PROJ_SJLT, 30, 16, 2, 1, 45, 3, 6, 0, 0, 0, 0, 1, 2, 0},
    {"one example", SDM_PROJ_RADEMACHER, 20, 8, 0, 2, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0},
    /* more examples than one tile of either backend at the default workspace (the cuda
     * backend's widest is 8192), with exact ties, some straddling tile edges */
    {"ties across tiles", SDM_PROJ_NONE, 64, 64, 0, 1, 20000, 7, 64, 0, 0, 1, 0, 1, 3, 0},
};

static void test_scenarios(void)
{
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run_scenario(&scenarios[i]);
}

/* Exact ties must go to the earlier example: with duplicated rows, wherever two neighbours
 * of the full ranking score the same, the earlier example comes first. */
static void check_tie_rule(const scenario *sc)
{
    built b;
    build(sc, &b, 5);
    sdm_attr_request req = {SDM_METHOD_DOT, SDM_AGG_SUM, (uint32_t)sc->n, 1, b.q, SDM_STORE_NOW};
    sdm_attr_result *fast = NULL, *ref = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_attribute(b.eng, b.store, &req, &fast), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_attribute_reference(b.eng, b.store, &req, &ref), SDM_OK);
    int ties = 0, order_bad = 0;
    for (uint64_t q = 0; q < fast->m; q++)
        for (uint32_t t = 1; t < fast->topk; t++) {
            const sdm_hit *a = &fast->top[q * fast->topk + t - 1], *h = &fast->top[q * fast->topk + t];
            if (a->score == h->score) {
                ties++;
                /* ids are 7e+3, so the earlier example has the smaller id */
                order_bad += a->example_id > h->example_id;
            }
        }
    CU_ASSERT(ties > 0);
    CU_ASSERT_EQUAL(order_bad, 0);
    if (ties == 0 || order_bad)
        printf("\n  %s: %d exact ties, %d out of order\n", sc->name, ties, order_bad);
    sdm_attr_result_free(&fast);
    sdm_attr_result_free(&ref);
    unbuild(&b, sc->n_ckpts);
}

static void test_tie_rule(void)
{
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (scenarios[i].duplicates)
            check_tie_rule(&scenarios[i]);
}

/* Shard scores do not depend on whether top-k was asked for. */
static void test_shard_only_matches(void)
{
    built b;
    build(&scenarios[1], &b, 9);
    sdm_attr_request req = {SDM_METHOD_COSINE, SDM_AGG_SUM, 0, 2, b.q, SDM_STORE_NOW};
    sdm_attr_result *a = NULL, *c = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_attribute(b.eng, b.store, &req, &a), SDM_OK);
    req.topk = 10;
    CU_ASSERT_EQUAL_FATAL(sdm_attribute(b.eng, b.store, &req, &c), SDM_OK);
    CU_ASSERT_EQUAL(a->topk, 0);
    CU_ASSERT_EQUAL(c->topk, 10);
    CU_ASSERT_EQUAL(memcmp(a->shard_score, c->shard_score, a->m * a->n_shards * sizeof(double)), 0);
    sdm_attr_result_free(&a);
    sdm_attr_result_free(&c);
    unbuild(&b, 2);
}

/* Shares of a query sum to 1 (or 0), and the empty shard scores 0. */
static void test_shares(void)
{
    built b;
    build(&scenarios[0], &b, 3);
    sdm_attr_request req = {SDM_METHOD_DOT, SDM_AGG_MEAN, 2, 1, b.q, SDM_STORE_NOW};
    sdm_attr_result *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_attribute(b.eng, b.store, &req, &r), SDM_OK);
    long empty = -1;
    for (size_t s = 0; s < r->n_shards; s++)
        if (strcmp(r->shard_names[s], "shard-empty") == 0)
            empty = (long)s;
    CU_ASSERT(empty >= 0);
    for (uint64_t q = 0; q < r->m; q++) {
        double ss = 0, cs = 0;
        for (size_t s = 0; s < r->n_shards; s++)
            ss += r->shard_share[q * r->n_shards + s];
        for (size_t c = 0; c < r->n_contributors; c++)
            cs += r->contributor_share[q * r->n_contributors + c];
        CU_ASSERT(fabs(ss - 1) < 1e-12 || ss == 0);
        CU_ASSERT(fabs(cs - 1) < 1e-12 || cs == 0);
        if (empty >= 0)
            CU_ASSERT_EQUAL(r->shard_score[q * r->n_shards + empty], 0.0);
    }
    sdm_attr_result_free(&r);
    unbuild(&b, 1);
}

/* ---- bad requests ------------------------------------------------------------------------ */

static void expect_error(built *b, sdm_attr_request *req, sdm_status want, const char *field)
{
    uint64_t batches = sdm_store_batches(b->store), rows = sdm_store_rows(b->store);
    sdm_attr_result *r = (sdm_attr_result *)1;
    sdm_status st = sdm_attribute(b->eng, b->store, req, &r);
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT_PTR_NULL(r);
    const char *msg = sdm_engine_last_error(b->eng);
    if (!strstr(msg, field)) {
        char buf[512];
        snprintf(buf, sizeof(buf), "error message '%s' does not name '%s'", msg, field);
        CU_assertImplementation(0, __LINE__, buf, __FILE__, "", CU_FALSE);
    }
    CU_ASSERT_EQUAL(sdm_store_batches(b->store), batches);
    CU_ASSERT_EQUAL(sdm_store_rows(b->store), rows);
}

static void test_bad_requests(void)
{
    built b;
    const scenario *sc = &scenarios[1];
    build(sc, &b, 11);
    sdm_query q[2] = {b.q[0], b.q[1]};
    sdm_attr_request req = {SDM_METHOD_TRAK, SDM_AGG_SUM, 3, 2, q, SDM_STORE_NOW};

    q[1].checkpoint = "no-such-checkpoint";
    expect_error(&b, &req, SDM_ERR_NOT_FOUND, "no-such-checkpoint");
    q[1] = b.q[0];
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "given twice");
    q[1] = b.q[1];
    q[1].rows.cols = sc->d + 1;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, ".cols");
    q[1] = b.q[1];
    q[1].rows.rows = sc->m - 1;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, ".rows");
    q[1] = b.q[1];
    float saved = b.queries[1][5];
    b.queries[1][5] = NAN;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "NaN");
    b.queries[1][5] = INFINITY;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "queries['ckpt-1'].data");
    b.queries[1][5] = saved;
    q[1].rows.dtype = (sdm_dtype)7;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "dtype");
    q[1] = b.q[1];
    q[1].lambda = INFINITY;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "lambda");
    q[1].lambda = NAN;
    req.store_size = sdm_store_batches(b.store) + 1;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "store_size");
    req.store_size = SDM_STORE_NOW;
    req.method = (sdm_method)9;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "method");
    req.method = SDM_METHOD_DOT;
    req.aggregate = (sdm_aggregate)9;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "aggregate");
    req.aggregate = SDM_AGG_SUM;
    req.n_queries = 0;
    expect_error(&b, &req, SDM_ERR_BAD_INPUT, "queries");
    req.n_queries = 2;
    /* lambda 0 on a checkpoint whose K is singular (k > rows) is not positive definite */
    sdm_attr_result *r = NULL;
    CU_ASSERT_EQUAL(sdm_attribute(b.eng, b.store, &req, &r), SDM_OK);
    sdm_attr_result_free(&r);
    unbuild(&b, 2);

    /* a checkpoint with fewer rows than k: K is singular, lambda 0 must be refused */
    scenario small = {"singular", SDM_PROJ_RADEMACHER, 20, 64, 0, 1, 10, 2, 5, 0, 0, 0, 0, 0, 2, 0};
    build(&small, &b, 2);
    b.q[0].lambda = 0;
    sdm_attr_request req2 = {SDM_METHOD_TRAK, SDM_AGG_SUM, 3, 1, b.q, SDM_STORE_NOW};
    expect_error(&b, &req2, SDM_ERR_BAD_INPUT, "positive definite");
    unbuild(&b, 1);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("attribute: fast path against the reference", NULL, NULL);
    CU_pSuite e = CU_add_suite("attribute: bad requests", NULL, NULL);
    if (!s || !e)
        return -1;
    CU_add_test(s, "random scenarios", test_scenarios);
    CU_add_test(s, "tie rule", test_tie_rule);
    CU_add_test(s, "shard-only equals full pass", test_shard_only_matches);
    CU_add_test(s, "shares and empty shard", test_shares);
    CU_add_test(e, "statuses, messages, no change", test_bad_requests);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
