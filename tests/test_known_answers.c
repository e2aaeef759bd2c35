/* test_known_answers.c - the engine (fast path and reference) against SPEC's known answers
 * in tests/data/reference_vectors.json: signs, buckets, features, scores, shard sums and
 * means, shares, top-3 and trak's lambdas, with and without curvature rows. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "store.h"
#include "testdata.h"

#define TOL 1e-5

static json *vectors;
static const json *sc; /* the scoring case */
static sdm_engine_t *eng;

static int setup(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/reference_vectors.json", test_data_dir);
    vectors = json_load(path);
    sc = json_get(vectors, "scoring_case");
    eng = test_engine(0);
    return vectors && eng ? 0 : -1;
}

static int teardown(void)
{
    json_free(vectors);
    sdm_engine_destroy(&eng);
    return 0;
}

/* Projects the d x d identity: row j of the output is row j of P. Rows are padded with
 * zero rows up to `rows` so both cpu rademacher paths (few rows, sgemm) are exercised. */
static float *p_matrix(const sdm_projection *proj, uint64_t rows)
{
    uint64_t d = proj->input_dim;
    float *id = calloc(rows * d, sizeof(float));
    float *out = malloc(rows * proj->dim * sizeof(float));
    for (uint64_t j = 0; j < d; j++)
        id[j * d + j] = 1.0f;
    sdm_matrix m = {SDM_F32, rows, d, id};
    sdm_status st = sdm_project(eng, proj, &m, out);
    CU_ASSERT_EQUAL_FATAL(st, SDM_OK);
    free(id);
    return out;
}

static void check_signs(const char *name)
{
    const json *c = json_get(vectors, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_projection proj = {SDM_PROJ_RADEMACHER, (uint64_t)json_get(c, "d")->number,
                           (uint32_t)json_get(c, "k")->number, 0,
                           (uint64_t)json_get(c, "seed")->number};
    const json *rows = json_get(c, "sign_rows");
    float mag = (float)(1.0 / sqrt(proj.dim));
    uint64_t pads[] = {proj.input_dim, 64}; /* few-rows path, then the sgemm path */
    for (int v = 0; v < 2; v++) {
        float *P = p_matrix(&proj, pads[v]);
        int bad = 0;
        for (uint64_t j = 0; j < proj.input_dim; j++) {
            const char *want = json_at(rows, j)->string;
            CU_ASSERT_EQUAL(strlen(want), proj.dim);
            for (uint32_t k = 0; k < proj.dim; k++) {
                float x = P[j * proj.dim + k];
                bad += (want[k] == '-') != (x < 0) || fabsf(fabsf(x) - mag) > 1e-7f * mag;
            }
        }
        CU_ASSERT_EQUAL(bad, 0);
        /* the reference projection agrees entry by entry */
        float *R = malloc(pads[v] * proj.dim * sizeof(float));
        float *id = calloc(pads[v] * proj.input_dim, sizeof(float));
        for (uint64_t j = 0; j < proj.input_dim; j++)
            id[j * proj.input_dim + j] = 1;
        sdm_matrix m = {SDM_F32, pads[v], proj.input_dim, id};
        CU_ASSERT_EQUAL(sdm_project_reference(&proj, &m, R), SDM_OK);
        CU_ASSERT_EQUAL(memcmp(R, P, pads[v] * proj.dim * sizeof(float)), 0);
        free(R);
        free(id);
        free(P);
    }
}

static void test_rademacher_seed42(void)
{
    check_signs("rademacher_signs_seed42_d5_k300");
}

static void test_rademacher_seed_above_2_32(void)
{
    check_signs("rademacher_signs_seed2^40+7_d3_k130");
}

static void test_sjlt_buckets(void)
{
    const json *c = json_get(vectors, "sjlt_seed7_d6_k64_s4");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_projection proj = {SDM_PROJ_SJLT, (uint64_t)json_get(c, "d")->number,
                           (uint32_t)json_get(c, "k")->number,
                           (uint32_t)json_get(c, "s")->number,
                           (uint64_t)json_get(c, "seed")->number};
    float *P = p_matrix(&proj, proj.input_dim);
    const json *nz = json_get(c, "nonzeros");
    for (uint64_t j = 0; j < proj.input_dim; j++) {
        float want[64] = {0};
        const json *row = json_at(nz, j);
        CU_ASSERT_EQUAL(row->len, proj.s);
        for (size_t t = 0; t < row->len; t++) {
            const json *e = json_at(row, t);
            want[(int)json_at(e, 0)->number] += (float)json_at(e, 1)->number;
        }
        int bad = 0;
        for (uint32_t k = 0; k < proj.dim; k++)
            bad += P[j * proj.dim + k] != want[k];
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(P);
}

static void test_philox_known_answer(void)
{
    uint32_t ctr[4] = {0}, key[2] = {0}, out[4];
    sdm_philox4x32_10(ctr, key, out);
    CU_ASSERT_EQUAL(out[0], 0x6627e8d5u);
    CU_ASSERT_EQUAL(out[1], 0xe169c58du);
    CU_ASSERT_EQUAL(out[2], 0xbc57ac4cu);
    CU_ASSERT_EQUAL(out[3], 0x9b00dbd8u);
}

/* ---- the scoring case ------------------------------------------------------------------ */

static float *matrix_f32(const json *rows, uint64_t *n_out, uint64_t *d_out)
{
    uint64_t n = rows->len, d = json_at(rows, 0)->len;
    float *x = malloc(n * d * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < d; j++)
            x[i * d + j] = (float)json_at(json_at(rows, i), j)->number;
    *n_out = n;
    *d_out = d;
    return x;
}

static sdm_projection sc_projection(void)
{
    sdm_projection p = {SDM_PROJ_RADEMACHER, (uint64_t)json_get(sc, "d")->number,
                        (uint32_t)json_get(sc, "k")->number, 0,
                        (uint64_t)json_get(sc, "seed")->number};
    return p;
}

/* The store of the scoring case: example i (one batch each, in order) at checkpoints "0"
 * and "1", shard s<i % 5> owned by contributor c<i % 5>; optional curvature rows. */
static sdm_store_t *sc_store(int as_features, int with_curvature)
{
    sdm_projection p = sc_projection();
    sdm_store_t *s = sdm_store_new(eng, &p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const json *shard_of = json_get(sc, "shard_of");
    for (int c = 0; c < 2; c++) {
        char ckpt[8], shard[16], contrib[16];
        snprintf(ckpt, sizeof(ckpt), "%d", c);
        double lr = json_at(json_get(sc, "lrs"), c)->number;
        uint64_t n, d;
        const json *src = json_at(json_get(sc, as_features ? "train_features" : "train_grads"), c);
        float *x = matrix_f32(src, &n, &d);
        for (uint64_t i = 0; i < n; i++) {
            int sh = (int)json_at(shard_of, i)->number;
            snprintf(shard, sizeof(shard), "s%d", sh);
            snprintf(contrib, sizeof(contrib), "c%d", sh);
            uint64_t id = i;
            sdm_batch b = {ckpt, lr, contrib, shard, 0, &id, {SDM_F32, 1, d, x + i * d},
                           as_features, NULL};
            CU_ASSERT_EQUAL_FATAL(sdm_store_append(s, &b, NULL, NULL), SDM_OK);
        }
        free(x);
        const json *curv = json_at(json_get(sc, "curvature_grads"), c);
        if (with_curvature && curv && curv->type == JSON_ARRAY) {
            float *g = matrix_f32(curv, &n, &d);
            sdm_batch b = {ckpt, lr, NULL, NULL, 1, NULL, {SDM_F32, n, d, g}, 0, NULL};
            CU_ASSERT_EQUAL_FATAL(sdm_store_append(s, &b, NULL, NULL), SDM_OK);
            free(g);
        }
    }
    return s;
}

static void test_train_features(void)
{
    sdm_store_t *s = sc_store(0, 0);
    const json *feats = json_get(sc, "train_features");
    int bad = 0;
    for (int c = 0; c < 2; c++) {
        char ckpt[8];
        snprintf(ckpt, sizeof(ckpt), "%d", c);
        const json *rows = json_at(feats, c);
        for (uint64_t i = 0; i < rows->len; i++) {
            float f[128];
            CU_ASSERT_EQUAL_FATAL(sdm_store_lookup(s, ckpt, i, f, NULL), SDM_OK);
            const json *row = json_at(rows, i);
            double scale = 0;
            for (uint32_t j = 0; j < row->len; j++)
                scale = fmax(scale, fabs(json_at(row, j)->number));
            for (uint32_t j = 0; j < row->len; j++)
                bad += !test_close(f[j], json_at(row, j)->number, TOL, scale);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    sdm_store_destroy(&s);
}

typedef sdm_status (*attr_fn)(sdm_engine_t *, sdm_store_t *, const sdm_attr_request *,
                              sdm_attr_result **);

/* Runs one method of the scoring case and checks it against the known answers. */
static void check_case(attr_fn fn, const char *method_key, sdm_method method,
                       sdm_aggregate agg, int as_features, int with_curvature)
{
    const json *want = json_get(sc, method_key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    sdm_store_t *s = sc_store(as_features, with_curvature);
    uint64_t n = (uint64_t)json_get(sc, "n")->number;
    sdm_query q[2];
    float *qx[2];
    for (int c = 0; c < 2; c++) {
        uint64_t m, d;
        qx[c] = matrix_f32(json_at(json_get(sc, "query_grads"), c), &m, &d);
        q[c] = (sdm_query){c ? "1" : "0", {SDM_F32, m, d, qx[c]}, 0, NAN};
    }
    sdm_attr_request req = {method, agg, (uint32_t)n, 2, q, SDM_STORE_NOW};
    sdm_attr_result *r = NULL;
    CU_ASSERT_EQUAL_FATAL(fn(eng, s, &req, &r), SDM_OK);
    CU_ASSERT_EQUAL(r->n_shards, 5);
    CU_ASSERT_EQUAL(r->n_examples, n);
    CU_ASSERT_EQUAL(r->topk, n);
    const json *scores = json_get(want, "scores");
    const json *sums = json_get(want, agg == SDM_AGG_MEAN ? "shard_mean" : "shard_sum");
    int bad = 0;
    for (uint64_t x = 0; x < r->m; x++) {
        const json *srow = json_at(scores, x);
        double scale = 0;
        for (uint64_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(json_at(srow, i)->number));
        /* every example's score, read back from the full top list */
        for (uint32_t t = 0; t < r->topk; t++) {
            const sdm_hit *h = &r->top[x * r->topk + t];
            bad += !test_close(h->score, json_at(srow, h->example_id)->number, TOL, scale);
            if (t > 0)
                bad += r->top[x * r->topk + t - 1].score < h->score;
        }
        for (int sh = 0; sh < 5; sh++) {
            bad += strcmp(r->shard_names[sh], (char[]){'s', (char)('0' + sh), 0}) != 0;
            bad += !test_close(r->shard_score[x * 5 + sh], json_at(json_at(sums, x), sh)->number,
                               TOL, scale);
        }
        if (agg == SDM_AGG_SUM) {
            const json *shares = json_at(json_get(want, "shares"), x);
            for (int sh = 0; sh < 5; sh++)
                bad += !test_close(r->shard_share[x * 5 + sh], json_at(shares, sh)->number, TOL,
                                   1e-3);
        }
        const json *top3 = json_at(json_get(want, "top3"), x);
        for (int t = 0; t < 3; t++) {
            bad += r->top[x * r->topk + t].example_id !=
                   (uint64_t)json_at(json_get(top3, "pro"), t)->number;
            bad += r->bottom[x * r->topk + t].example_id !=
                   (uint64_t)json_at(json_get(top3, "opp"), t)->number;
        }
    }
    const json *lambdas = json_get(want, "lambdas");
    CU_ASSERT_EQUAL(r->n_lambdas, lambdas->len);
    for (size_t i = 0; i < r->n_lambdas && i < lambdas->len; i++)
        bad += !test_close(r->lambdas[i], json_at(lambdas, i)->number, TOL, 0);
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "\n%s (%s, features %d): %d mismatches\n", method_key,
                sdm_aggregate_name(agg), as_features, bad);
    sdm_attr_result_free(&r);
    free(qx[0]);
    free(qx[1]);
    sdm_store_destroy(&s);
}

static void test_dot(void)
{
    check_case(sdm_attribute, "dot", SDM_METHOD_DOT, SDM_AGG_SUM, 0, 0);
    check_case(sdm_attribute, "dot", SDM_METHOD_DOT, SDM_AGG_MEAN, 0, 0);
    check_case(sdm_attribute, "dot", SDM_METHOD_DOT, SDM_AGG_SUM, 1, 0);
}

static void test_cosine(void)
{
    check_case(sdm_attribute, "cosine", SDM_METHOD_COSINE, SDM_AGG_SUM, 0, 0);
    check_case(sdm_attribute, "cosine", SDM_METHOD_COSINE, SDM_AGG_MEAN, 1, 0);
}

static void test_trak(void)
{
    check_case(sdm_attribute, "trak", SDM_METHOD_TRAK, SDM_AGG_SUM, 0, 0);
    check_case(sdm_attribute, "trak", SDM_METHOD_TRAK, SDM_AGG_MEAN, 1, 0);
}

static void test_trak_with_curvature(void)
{
    check_case(sdm_attribute, "trak_with_curvature", SDM_METHOD_TRAK, SDM_AGG_SUM, 0, 1);
}

static void test_reference_path(void)
{
    check_case(sdm_attribute_reference, "dot", SDM_METHOD_DOT, SDM_AGG_MEAN, 0, 0);
    check_case(sdm_attribute_reference, "cosine", SDM_METHOD_COSINE, SDM_AGG_SUM, 0, 0);
    check_case(sdm_attribute_reference, "trak", SDM_METHOD_TRAK, SDM_AGG_SUM, 0, 0);
    check_case(sdm_attribute_reference, "trak_with_curvature", SDM_METHOD_TRAK, SDM_AGG_SUM, 1, 1);
}

static int register_suites(void)
{
    CU_pSuite p = CU_add_suite("known answers: projection", setup, teardown);
    CU_pSuite a = CU_add_suite("known answers: scoring", setup, teardown);
    if (!p || !a)
        return -1;
    CU_add_test(p, "philox4x32-10 (0, 0)", test_philox_known_answer);
    CU_add_test(p, "rademacher signs, seed 42, k 300", test_rademacher_seed42);
    CU_add_test(p, "rademacher signs, seed 2^40+7, k 130", test_rademacher_seed_above_2_32);
    CU_add_test(p, "sjlt buckets, s 4", test_sjlt_buckets);
    CU_add_test(a, "train features", test_train_features);
    CU_add_test(a, "dot", test_dot);
    CU_add_test(a, "cosine", test_cosine);
    CU_add_test(a, "trak (default lambda)", test_trak);
    CU_add_test(a, "trak with curvature rows", test_trak_with_curvature);
    CU_add_test(a, "plain-loop reference", test_reference_path);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = test_main(argc, argv, register_suites);
    return rc;
}
