/* test_store.c - the in-memory feature store: appends, growth, lookups, shard sums, and
 * bad batches that must fail with the right status, name the field and change nothing. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "testdata.h"

#define D 24
#define K 16


static sdm_store_t *new_store(void)
{
    sdm_projection p = {SDM_PROJ_RADEMACHER, D, K, 0, 77};
    sdm_store_t *s = sdm_store_new(test_eng, &p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

static void test_append_and_lookup(void)
{
    sdm_store_t *s = new_store();
    test_rng rng = {1};
    uint64_t total = 0;
    /* many batches: the arrays grow several times; every row stays where it was */
    for (int b = 0; b < 300; b++) {
        uint64_t n = 1 + b % 9, ids[9];
        for (uint64_t i = 0; i < n; i++)
            ids[i] = total + i;
        float *g = test_random_floats(&rng, n * D, 1.0);
        float feats[9 * K], want[9 * K];
        double w[9];
        for (uint64_t i = 0; i < n; i++)
            w[i] = 1.0 + i;
        char shard[16];
        snprintf(shard, sizeof(shard), "s%d", b % 4);
        sdm_batch bt = {b % 2 ? "B" : "A", b % 2 ? 0.5 : 0.25, b % 4 < 2 ? "alice" : "bob",
                        shard, 0, ids, {SDM_F32, n, D, g}, 0, w};
        uint64_t no;
        CU_ASSERT_EQUAL_FATAL(sdm_store_append(s, &bt, &no, feats), SDM_OK);
        CU_ASSERT_EQUAL(no, (uint64_t)b);
        sdm_projection p = {SDM_PROJ_RADEMACHER, D, K, 0, 77};
        sdm_matrix m = {SDM_F32, n, D, g};
        CU_ASSERT_EQUAL(sdm_project(test_eng, &p, &m, want), SDM_OK);
        CU_ASSERT_EQUAL(memcmp(feats, want, n * K * sizeof(float)), 0);
        free(g);
        total += n;
    }
    CU_ASSERT_EQUAL(sdm_store_batches(s), 300);
    CU_ASSERT_EQUAL(sdm_store_examples(s), total);
    CU_ASSERT_EQUAL(sdm_store_rows(s), total);
    CU_ASSERT_EQUAL(sdm_store_shards(s), 4);
    CU_ASSERT_EQUAL(sdm_store_contributors(s), 2);
    CU_ASSERT_EQUAL(sdm_store_checkpoints(s), 2);
    CU_ASSERT_STRING_EQUAL(sdm_store_shard_contributor(s, 3), "bob");
    double lr = 0;
    CU_ASSERT_EQUAL(sdm_store_checkpoint_lr(s, "B", &lr), SDM_OK);
    CU_ASSERT_EQUAL(lr, 0.5);
    /* batch 7 holds ids [sum of sizes of batches 0..6, +8) at checkpoint B, shard s3 */
    uint64_t first7 = 0;
    for (int b = 0; b < 7; b++)
        first7 += 1 + b % 9;
    sdm_example_info info;
    float f[K];
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "B", first7 + 2, f, &info), SDM_OK);
    CU_ASSERT_EQUAL(info.batch, 7);
    CU_ASSERT_EQUAL(info.row, 2);
    CU_ASSERT_STRING_EQUAL(info.shard, "s3");
    CU_ASSERT_STRING_EQUAL(info.contributor, "bob");
    CU_ASSERT_EQUAL(info.weight, 3.0);
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "A", first7 + 2, f, NULL), SDM_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "C", 0, f, NULL), SDM_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "A", total + 5, f, NULL), SDM_ERR_NOT_FOUND);
    sdm_store_destroy(&s);
    CU_ASSERT_PTR_NULL(s);
    sdm_store_destroy(&s); /* idempotent */
}

/* The shard sum is the weighted sum of the shard's stored rows. */
static void test_shard_sum(void)
{
    sdm_store_t *s = new_store();
    test_rng rng = {2};
    double want[K] = {0};
    for (int b = 0; b < 5; b++) {
        uint64_t ids[3] = {b * 3 + 0u, b * 3 + 1u, b * 3 + 2u};
        double w[3] = {0.5, -1.0, 2.0};
        float *g = test_random_floats(&rng, 3 * D, 1.0);
        float feats[3 * K];
        sdm_batch bt = {"c", 1.0, "x", b % 2 ? "odd" : "even", 0, ids, {SDM_F32, 3, D, g}, 0, w};
        CU_ASSERT_EQUAL_FATAL(sdm_store_append(s, &bt, NULL, feats), SDM_OK);
        if (b % 2)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < K; j++)
                    want[j] += w[i] * feats[i * K + j];
        free(g);
    }
    double got[K];
    CU_ASSERT_EQUAL(sdm_store_shard_sum(s, "c", "odd", got), SDM_OK);
    for (int j = 0; j < K; j++)
        CU_ASSERT(test_close(got[j], want[j], 1e-12, 1e-9));
    CU_ASSERT_EQUAL(sdm_store_shard_sum(s, "c", "nope", got), SDM_ERR_NOT_FOUND);
    sdm_store_destroy(&s);
}

/* A bad batch returns its status, names the field and leaves the store as it was. */
static void expect_rejected(sdm_store_t *s, const sdm_batch *b, sdm_status want, const char *field)
{
    uint64_t batches = sdm_store_batches(s), ex = sdm_store_examples(s), rows = sdm_store_rows(s);
    size_t shards = sdm_store_shards(s), contribs = sdm_store_contributors(s),
           ckpts = sdm_store_checkpoints(s);
    CU_ASSERT_EQUAL(sdm_store_check(s, b), want);
    sdm_status st = sdm_store_append(s, b, NULL, NULL);
    CU_ASSERT_EQUAL(st, want);
    if (!strstr(sdm_engine_last_error(test_eng), field)) {
        char msg[512];
        snprintf(msg, sizeof(msg), "'%s' does not name %s", sdm_engine_last_error(test_eng), field);
        CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
    }
    CU_ASSERT_EQUAL(sdm_store_batches(s), batches);
    CU_ASSERT_EQUAL(sdm_store_examples(s), ex);
    CU_ASSERT_EQUAL(sdm_store_rows(s), rows);
    CU_ASSERT_EQUAL(sdm_store_shards(s), shards);
    CU_ASSERT_EQUAL(sdm_store_contributors(s), contribs);
    CU_ASSERT_EQUAL(sdm_store_checkpoints(s), ckpts);
}

static void test_bad_batches(void)
{
    sdm_store_t *s = new_store();
    test_rng rng = {3};
    float *g = test_random_floats(&rng, 4 * D, 1.0);
    uint64_t ids[4] = {10, 11, 12, 13};
    sdm_batch ok = {"c0", 0.1, "alice", "a1", 0, ids, {SDM_F32, 2, D, g}, 0, NULL};
    CU_ASSERT_EQUAL_FATAL(sdm_store_append(s, &ok, NULL, NULL), SDM_OK);
    float before[K];
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "c0", 10, before, NULL), SDM_OK);

    sdm_batch b = ok;
    b.lr = 0.2;
    expect_rejected(s, &b, SDM_ERR_CONFLICT, "lr");
    b = ok;
    b.lr = NAN;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "lr");
    b = ok;
    b.ids = ids + 1; /* 11 is already at c0 */
    expect_rejected(s, &b, SDM_ERR_CONFLICT, "example_ids[0]");
    uint64_t dup[2] = {20, 20};
    b = ok;
    b.ids = dup;
    expect_rejected(s, &b, SDM_ERR_CONFLICT, "example_ids[1]");
    b = ok;
    b.checkpoint = "c1";
    b.shard = "a2"; /* id 10 lives in shard a1 */
    expect_rejected(s, &b, SDM_ERR_CONFLICT, "belongs to shard");
    uint64_t fresh[2] = {30, 31};
    b = ok;
    b.ids = fresh;
    b.contributor = "mallory"; /* a1 belongs to alice */
    expect_rejected(s, &b, SDM_ERR_CONFLICT, "shard");
    b = ok;
    b.ids = fresh;
    b.rows.cols = D + 1;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "grads.cols");
    b = ok;
    b.ids = fresh;
    b.is_features = 1; /* features are k wide */
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "features.cols");
    b = ok;
    b.ids = fresh;
    b.checkpoint = "new-ckpt";
    b.shard = "new-shard";
    b.contributor = "new-contrib";
    float saved = g[D + 3];
    g[D + 3] = NAN;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "row 1, col 3");
    g[D + 3] = saved;
    double w[2] = {1, INFINITY};
    b.weights = w;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "weights[1]");
    b.weights = NULL;
    b.ids = NULL;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "example_ids");
    b.ids = fresh;
    b.shard = "";
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "shard");
    b.shard = "new-shard";
    b.checkpoint = NULL;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "checkpoint");
    b.checkpoint = "new-ckpt";
    b.curvature = 1; /* curvature rows carry no ids */
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "example_ids");
    b.ids = NULL;
    b.weights = w;
    expect_rejected(s, &b, SDM_ERR_BAD_INPUT, "weights");
    /* the store still holds what it held, and still takes good batches */
    float after[K];
    CU_ASSERT_EQUAL(sdm_store_lookup(s, "c0", 10, after, NULL), SDM_OK);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof(before)), 0);
    b = ok;
    b.ids = fresh;
    CU_ASSERT_EQUAL(sdm_store_append(s, &b, NULL, NULL), SDM_OK);
    CU_ASSERT_EQUAL(sdm_store_batches(s), 2);
    free(g);
    sdm_store_destroy(&s);
}

static void test_bad_projection(void)
{
    sdm_projection p = {SDM_PROJ_SJLT, 10, 10, 3, 1};
    CU_ASSERT_PTR_NULL(sdm_store_new(test_eng, &p));
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_engine_last_error(test_eng), "projection.s"));
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("store", test_engine_setup, test_engine_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "append, grow, look up", test_append_and_lookup);
    CU_add_test(s, "shard sums", test_shard_sum);
    CU_add_test(s, "bad batches change nothing", test_bad_batches);
    CU_add_test(s, "bad projection", test_bad_projection);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
