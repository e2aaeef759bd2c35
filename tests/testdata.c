/* testdata.c - shared helpers for the CUnit suites. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "testdata.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *test_data_dir = "tests/data";
sdm_backend_kind test_backend = SDM_BACKEND_CPU;

uint64_t test_rng_u64(test_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double test_rng_uniform(test_rng *r)
{
    return (test_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double test_rng_normal(test_rng *r)
{
    double u = test_rng_uniform(r), v = test_rng_uniform(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

float *test_random_floats(test_rng *r, uint64_t n, double scale)
{
    float *x = malloc((n + 1) * sizeof(float));
    for (uint64_t i = 0; x && i < n; i++)
        x[i] = (float)(scale * test_rng_normal(r));
    return x;
}

uint16_t *test_to_half(const float *x, uint64_t n, sdm_dtype dtype)
{
    uint16_t *h = malloc((n + 1) * sizeof(uint16_t));
    for (uint64_t i = 0; h && i < n; i++)
        h[i] = dtype == SDM_F16 ? sdm_f32_to_f16(x[i]) : sdm_f32_to_bf16(x[i]);
    return h;
}

sdm_engine_t *test_cpu_engine(size_t workspace_bytes)
{
    sdm_engine_opts o = {SDM_BACKEND_CPU, workspace_bytes, 0, 0};
    sdm_status st;
    char err[256];
    sdm_engine_t *e = sdm_engine_new(&o, &st, err, sizeof(err));
    if (!e)
        fprintf(stderr, "cpu engine: %s\n", err);
    return e;
}

sdm_engine_t *test_engine(size_t workspace_bytes)
{
    sdm_engine_opts o = {test_backend, workspace_bytes, 0, 0};
    sdm_status st;
    char err[256];
    sdm_engine_t *e = sdm_engine_new(&o, &st, err, sizeof(err));
    if (!e)
        fprintf(stderr, "%s engine: %s\n", test_backend == SDM_BACKEND_CUDA ? "cuda" : "cpu", err);
    return e;
}

sdm_engine_t *test_eng;

int test_engine_setup(void)
{
    test_eng = test_engine(0);
    return test_eng ? 0 : -1;
}

int test_engine_teardown(void)
{
    sdm_engine_destroy(&test_eng);
    return 0;
}

int test_close(double a, double b, double tol, double floor)
{
    double scale = fabs(b) > floor ? fabs(b) : floor;
    return fabs(a - b) <= tol * scale;
}

static double row_scale(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s = fabs(v[i]) > s ? fabs(v[i]) : s;
    return s > 0 ? s : 1e-30;
}

static int rows_close(const double *got, const double *want, size_t n, double tol,
                      const char *what, const char *field, uint64_t q)
{
    double scale = row_scale(want, n);
    for (size_t i = 0; i < n; i++)
        if (!test_close(got[i], want[i], tol, scale)) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s: %s[%llu][%zu] = %.10g, want %.10g", what, field,
                     (unsigned long long)q, i, got[i], want[i]);
            CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
            return 0;
        }
    return 1;
}

void test_assert_results_close(const sdm_attr_result *got, const sdm_attr_result *want,
                               double tol, const char *what)
{
    char msg[512];
    int ok = got->m == want->m && got->n_shards == want->n_shards &&
             got->n_contributors == want->n_contributors && got->topk == want->topk &&
             got->n_examples == want->n_examples && got->n_lambdas == want->n_lambdas;
    if (!ok) {
        snprintf(msg, sizeof(msg), "%s: shapes differ (m %llu/%llu shards %zu/%zu topk %u/%u "
                 "examples %llu/%llu)", what, (unsigned long long)got->m,
                 (unsigned long long)want->m, got->n_shards, want->n_shards, got->topk,
                 want->topk, (unsigned long long)got->n_examples,
                 (unsigned long long)want->n_examples);
        CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
        return;
    }
    for (size_t i = 0; i < got->n_lambdas; i++)
        if (!test_close(got->lambdas[i], want->lambdas[i], tol, 0)) {
            snprintf(msg, sizeof(msg), "%s: lambda[%zu] %.10g, want %.10g", what, i,
                     got->lambdas[i], want->lambdas[i]);
            CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
            return;
        }
    size_t ns = got->n_shards, nc = got->n_contributors;
    for (uint64_t q = 0; q < got->m; q++) {
        if (!rows_close(got->shard_score + q * ns, want->shard_score + q * ns, ns, tol, what,
                        "shard_score", q) ||
            !rows_close(got->shard_share + q * ns, want->shard_share + q * ns, ns, tol, what,
                        "shard_share", q) ||
            !rows_close(got->contributor_score + q * nc, want->contributor_score + q * nc, nc,
                        tol, what, "contributor_score", q) ||
            !rows_close(got->contributor_share + q * nc, want->contributor_share + q * nc, nc,
                        tol, what, "contributor_share", q))
            return;
        double scale = 1e-30;
        for (uint32_t t = 0; t < want->topk; t++) {
            scale = fmax(scale, fabs(want->top[q * want->topk + t].score));
            scale = fmax(scale, fabs(want->bottom[q * want->topk + t].score));
        }
        for (uint32_t t = 0; t < want->topk; t++) {
            const sdm_hit *hits[2][2] = {{&got->top[q * got->topk + t], &want->top[q * want->topk + t]},
                                         {&got->bottom[q * got->topk + t], &want->bottom[q * want->topk + t]}};
            for (int side = 0; side < 2; side++) {
                const sdm_hit *g = hits[side][0], *w = hits[side][1];
                int same_id = g->example_id == w->example_id && g->shard == w->shard;
                int close = test_close(g->score, w->score, tol, scale);
                if (!close || !same_id) {
                    /* a different id is fine only for a near tie in the want result */
                    int tie = 0;
                    for (uint32_t u = 0; u < want->topk && !same_id; u++) {
                        const sdm_hit *o = side ? &want->bottom[q * want->topk + u]
                                                : &want->top[q * want->topk + u];
                        tie |= o->example_id == g->example_id &&
                               test_close(o->score, w->score, tol, scale);
                    }
                    if (!close || (!same_id && !tie && t + 1 < want->topk)) {
                        snprintf(msg, sizeof(msg),
                                 "%s: %s[%llu][%u] = id %llu score %.10g, want id %llu score %.10g",
                                 what, side ? "bottom" : "top", (unsigned long long)q, t,
                                 (unsigned long long)g->example_id, g->score,
                                 (unsigned long long)w->example_id, w->score);
                        CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
                        return;
                    }
                }
            }
        }
    }
    CU_PASS(what);
}

int test_main(int argc, char **argv, int (*register_suites)(void))
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            if (sdm_backend_kind_parse(argv[++i], &test_backend) != SDM_OK ||
                test_backend == SDM_BACKEND_AUTO) {
                fprintf(stderr, "%s: --backend must be cpu or cuda, not '%s'\n", argv[0], argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--backend cpu|cuda] [DATA_DIR]\n", argv[0]);
            return 2;
        } else {
            test_data_dir = argv[i];
        }
    }
    if (test_backend == SDM_BACKEND_CUDA) {
        sdm_engine_opts o = {SDM_BACKEND_CUDA, 0, 0, 0};
        sdm_status st;
        char err[256];
        sdm_engine_t *probe = sdm_engine_new(&o, &st, err, sizeof(err));
#ifdef SDM_HAVE_CUDA
        /* a build with CUDA must load its module: only a missing device is a reason to skip */
        int skip = st == SDM_ERR_DEVICE;
#else
        int skip = st == SDM_ERR_UNSUPPORTED;
#endif
        if (!probe && skip) {
            printf("%s: no usable CUDA device (%s): nothing registered, nothing to check\n",
                   argv[0], err);
            return 0;
        }
        if (!probe) {
            fprintf(stderr, "%s: cuda engine: %s\n", argv[0], err);
            return 1;
        }
        printf("%s: running on %s\n", argv[0], sdm_engine_device(probe));
        sdm_engine_destroy(&probe);
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (register_suites() != 0) {
        fprintf(stderr, "registering suites failed: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed > 100 ? 100 : (int)failed;
}

/* ---- scratch directories ------------------------------------------------------------- */

static char scratch_root[256];

int test_scratch_make(const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_root, sizeof(scratch_root), "%s/%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp",
             prefix);
    return mkdtemp(scratch_root) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void test_rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int test_scratch_remove(void)
{
    if (scratch_root[0])
        test_rm_tree(scratch_root);
    return 0;
}

const char *test_scratch_dir(const char *name, int make)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", scratch_root, name);
    test_rm_tree(path);
    if (make)
        mkdir(path, 0700);
    return path;
}
