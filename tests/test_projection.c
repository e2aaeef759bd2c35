/* test_projection.c - the engine's projections (cpu, or cuda with --backend cuda) against the
 * plain-loop reference for every kind and dtype on odd shapes, f16/bf16 conversion, and bad
 * calls. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "testdata.h"


/* Normalised mean squared error of got against want. */
static double nmse(const float *got, const float *want, uint64_t n)
{
    double num = 0, den = 0;
    for (uint64_t i = 0; i < n; i++) {
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return den > 0 ? num / den : num;
}

static void check_shape_on(sdm_engine_t *eng, sdm_proj_kind kind, uint64_t n, uint64_t d,
                           uint32_t k, uint32_t s, sdm_dtype dtype, uint64_t seed)
{
    test_rng rng = {seed};
    sdm_projection p = {kind, kind == SDM_PROJ_NONE ? k : d, k, s, seed * 977};
    d = p.input_dim;
    float *x = test_random_floats(&rng, n * d, 1.0);
    uint16_t *h = dtype == SDM_F32 ? NULL : test_to_half(x, n * d, dtype);
    sdm_matrix m = {dtype, n, d, h ? (const void *)h : x};
    float *got = malloc((n * k + 1) * sizeof(float)), *want = malloc((n * k + 1) * sizeof(float));
    CU_ASSERT_EQUAL_FATAL(sdm_project(eng, &p, &m, got), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_project_reference(&p, &m, want), SDM_OK);
    double e = nmse(got, want, n * k);
    if (!(e <= 1e-10)) { /* fp32 accumulation over d terms */
        char msg[256];
        snprintf(msg, sizeof(msg), "%s n=%llu d=%llu k=%u s=%u %s: nmse %.3g",
                 sdm_proj_kind_name(kind), (unsigned long long)n, (unsigned long long)d, k, s,
                 sdm_dtype_name(dtype), e);
        CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
    }
    free(x);
    free(h);
    free(got);
    free(want);
}

/* Both rademacher paths: P kept whole (default workspace) and P regenerated in tiles (a
 * workspace too small to hold it). */
static sdm_engine_t *tiny_eng;

static void check_shape(sdm_proj_kind kind, uint64_t n, uint64_t d, uint32_t k, uint32_t s,
                        sdm_dtype dtype, uint64_t seed)
{
    check_shape_on(test_eng, kind, n, d, k, s, dtype, seed);
    if (!tiny_eng)
        tiny_eng = test_engine(4096);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tiny_eng);
    check_shape_on(tiny_eng, kind, n, d, k, s, dtype, seed);
}

static void test_against_reference(void)
{
    static const sdm_dtype dtypes[] = {SDM_F32, SDM_F16, SDM_BF16};
    static const struct { uint64_t n, d; uint32_t k; } shapes[] = {
        {1, 1, 1}, {1, 300, 130}, {3, 257, 300}, {17, 129, 130}, {40, 200, 128},
        {200, 70, 256}, {2100, 40, 24}, {15, 5000, 64}, {16, 300, 1000},
    };
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            check_shape(SDM_PROJ_RADEMACHER, shapes[i].n, shapes[i].d, shapes[i].k, 0, dtypes[t], i + 1);
            check_shape(SDM_PROJ_SJLT, shapes[i].n, shapes[i].d, shapes[i].k, 1, dtypes[t], i + 2);
            check_shape(SDM_PROJ_NONE, shapes[i].n, shapes[i].d, shapes[i].k, 0, dtypes[t], i + 3);
            if (shapes[i].k % 4 == 0)
                check_shape(SDM_PROJ_SJLT, shapes[i].n, shapes[i].d, shapes[i].k, 4, dtypes[t], i + 4);
            if (shapes[i].k % 2 == 0)
                check_shape(SDM_PROJ_SJLT, shapes[i].n, shapes[i].d, shapes[i].k, 2, dtypes[t], i + 5);
        }
    sdm_engine_destroy(&tiny_eng);
}

/* Values exact in f16 and bf16 project to the same features in every dtype. */
static void test_dtypes_agree(void)
{
    uint64_t n = 20, d = 64;
    uint32_t k = 48;
    float *x = malloc(n * d * sizeof(float));
    for (uint64_t i = 0; i < n * d; i++)
        x[i] = (float)((int)(i * 37 % 17) - 8) * 0.25f;
    sdm_projection p = {SDM_PROJ_RADEMACHER, d, k, 0, 5};
    float *out[3];
    for (int t = 0; t < 3; t++) {
        sdm_dtype dt = (sdm_dtype)t;
        uint16_t *h = dt == SDM_F32 ? NULL : test_to_half(x, n * d, dt);
        sdm_matrix m = {dt, n, d, h ? (const void *)h : x};
        out[t] = malloc(n * k * sizeof(float));
        CU_ASSERT_EQUAL(sdm_project(test_eng, &p, &m, out[t]), SDM_OK);
        free(h);
    }
    CU_ASSERT_EQUAL(memcmp(out[0], out[1], n * k * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(out[0], out[2], n * k * sizeof(float)), 0);
    for (int t = 0; t < 3; t++)
        free(out[t]);
    free(x);
}

/* On the few-rows and sjlt paths the thread count must not change a feature. (The sgemm
 * path sums in OpenBLAS's order, which can move the last bits with the thread count.) */
static void test_thread_count_independent(void)
{
    sdm_engine_opts o1 = {SDM_BACKEND_CPU, 0, 1, 0};
    sdm_engine_t *one = sdm_engine_new(&o1, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    test_rng rng = {3};
    uint64_t n = 7, d = 900;
    uint32_t k = 260;
    float *x = test_random_floats(&rng, n * d, 1.0);
    sdm_matrix m = {SDM_F32, n, d, x};
    sdm_proj_kind kinds[] = {SDM_PROJ_RADEMACHER, SDM_PROJ_SJLT};
    for (int i = 0; i < 2; i++) {
        sdm_projection p = {kinds[i], d, k, i ? 2 : 0, 11};
        float *a = malloc(n * k * sizeof(float)), *b = malloc(n * k * sizeof(float));
        CU_ASSERT_EQUAL(sdm_project(one, &p, &m, a), SDM_OK);
        sdm_engine_t *many = test_cpu_engine(0);
        CU_ASSERT_EQUAL(sdm_project(many, &p, &m, b), SDM_OK);
        sdm_engine_destroy(&many);
        CU_ASSERT_EQUAL(memcmp(a, b, n * k * sizeof(float)), 0);
        free(a);
        free(b);
    }
    free(x);
    sdm_engine_destroy(&one);
}

static void test_half_conversions(void)
{
    CU_ASSERT_EQUAL(sdm_f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(sdm_f32_to_f16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(sdm_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(sdm_f32_to_f16(1e6f), 0x7c00);
    CU_ASSERT_EQUAL(sdm_f32_to_f16(5.9604645e-8f), 0x0001);
    CU_ASSERT_EQUAL(sdm_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* ties to even */
    CU_ASSERT_EQUAL(sdm_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    CU_ASSERT_EQUAL(sdm_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(sdm_f32_to_bf16(-3.5f), 0xc060);
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive f16 round-trips */
        if (sdm_f32_to_f16(sdm_f16_to_f32((uint16_t)h)) != h) {
            CU_FAIL("f16 round trip");
            break;
        }
    CU_ASSERT_DOUBLE_EQUAL(sdm_f16_to_f32(0x0001), 5.9604644775390625e-8, 0);
    CU_ASSERT_DOUBLE_EQUAL(sdm_bf16_to_f32(0x3f80), 1.0, 0);
}

static void expect_bad(const sdm_projection *p, const sdm_matrix *m, const char *field)
{
    float out[64];
    sdm_status st = sdm_project(test_eng, p, m, out);
    CU_ASSERT_EQUAL(st, SDM_ERR_BAD_INPUT);
    if (!strstr(sdm_engine_last_error(test_eng), field)) {
        char msg[512];
        snprintf(msg, sizeof(msg), "'%s' does not name %s", sdm_engine_last_error(test_eng), field);
        CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
    }
}

static void test_bad_calls(void)
{
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    sdm_matrix m = {SDM_F32, 2, 4, x};
    sdm_projection p = {SDM_PROJ_RADEMACHER, 4, 0, 0, 1};
    expect_bad(&p, &m, "projection.dim"); /* k = 0 */
    p = (sdm_projection){SDM_PROJ_SJLT, 4, 6, 4, 1};
    expect_bad(&p, &m, "projection.s"); /* s does not divide k */
    p = (sdm_projection){SDM_PROJ_NONE, 4, 5, 0, 1};
    expect_bad(&p, &m, "projection.dim"); /* none needs k == d */
    p = (sdm_projection){(sdm_proj_kind)9, 4, 5, 0, 1};
    expect_bad(&p, &m, "projection.kind");
    p = (sdm_projection){SDM_PROJ_RADEMACHER, 5, 8, 0, 1};
    expect_bad(&p, &m, "grads.cols"); /* dim mismatch */
    p = (sdm_projection){SDM_PROJ_RADEMACHER, 4, 8, 0, 1};
    x[6] = NAN;
    expect_bad(&p, &m, "row 1, col 2");
    x[6] = -INFINITY;
    expect_bad(&p, &m, "NaN or Inf");
    uint16_t h[8] = {0x3c00, 0x7c00, 0, 0, 0, 0, 0, 0}; /* f16 +Inf */
    sdm_matrix mh = {SDM_F16, 2, 4, h};
    expect_bad(&p, &mh, "element 1");
    h[1] = 0x7f81; /* bf16 NaN */
    mh.dtype = SDM_BF16;
    expect_bad(&p, &mh, "element 1");
    mh.dtype = (sdm_dtype)5;
    expect_bad(&p, &mh, "grads.dtype");
    sdm_matrix missing = {SDM_F32, 2, 4, NULL};
    expect_bad(&p, &missing, "grads.data");
}

/* Enum names round-trip through their parsers; unknown names and values are refused. */
static void test_names(void)
{
    sdm_dtype d;
    sdm_method m;
    sdm_aggregate a;
    sdm_proj_kind k;
    sdm_backend_kind b;
    CU_ASSERT(sdm_dtype_parse("bf16", &d) == SDM_OK && d == SDM_BF16);
    CU_ASSERT(sdm_method_parse("trak", &m) == SDM_OK && m == SDM_METHOD_TRAK);
    CU_ASSERT(sdm_aggregate_parse("mean", &a) == SDM_OK && a == SDM_AGG_MEAN);
    CU_ASSERT(sdm_proj_kind_parse("sjlt", &k) == SDM_OK && k == SDM_PROJ_SJLT);
    CU_ASSERT(sdm_backend_kind_parse("cuda", &b) == SDM_OK && b == SDM_BACKEND_CUDA);
    CU_ASSERT_EQUAL(sdm_dtype_parse("f64", &d), SDM_ERR_BAD_INPUT);
    CU_ASSERT_EQUAL(sdm_method_parse(NULL, &m), SDM_ERR_BAD_INPUT);
    CU_ASSERT_EQUAL(sdm_backend_kind_parse("gpu", &b), SDM_ERR_BAD_INPUT);
    CU_ASSERT_STRING_EQUAL(sdm_method_name(SDM_METHOD_COSINE), "cosine");
    CU_ASSERT_STRING_EQUAL(sdm_proj_kind_name(SDM_PROJ_RADEMACHER), "rademacher");
    CU_ASSERT_PTR_NULL(sdm_dtype_name((sdm_dtype)3));
    CU_ASSERT_PTR_NULL(sdm_aggregate_name((sdm_aggregate)-1));
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("projection", test_engine_setup, test_engine_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "against the reference, all kinds, dtypes, odd shapes",
                test_against_reference);
    CU_add_test(s, "f32, f16 and bf16 agree on exact values", test_dtypes_agree);
    if (test_backend == SDM_BACKEND_CPU)
        CU_add_test(s, "independent of the thread count", test_thread_count_independent);
    CU_add_test(s, "f16 and bf16 conversions", test_half_conversions);
    CU_add_test(s, "bad calls", test_bad_calls);
    CU_add_test(s, "enum names and parsers", test_names);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
