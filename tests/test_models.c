/* test_models.c - the built-in models: digits loader, gradients against finite differences,
 * the exact Hessian, training to convergence with checkpoints, accuracy and determinism. */
#include <CUnit/Basic.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "digits.h"
#include "logreg.h"
#include "mlp.h"
#include "testdata.h"
#include "train.h"

static sdm_dataset *digits;       /* all 1,797 */
static sdm_dataset *train, *test; /* 1,400 / 397, split seed 1 */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int digits_setup(void)
{
    char err[256] = "";
    if (sdm_digits_load(NULL, &digits, err, sizeof(err)) != SDM_OK) {
        fprintf(stderr, "digits: %s\n", err);
        return -1;
    }
    if (sdm_dataset_split(digits, 397, 1, &train, &test, err, sizeof(err)) != SDM_OK) {
        fprintf(stderr, "split: %s\n", err);
        return -1;
    }
    return test_engine_setup();
}

static int digits_teardown(void)
{
    sdm_dataset_destroy(&digits);
    sdm_dataset_destroy(&train);
    sdm_dataset_destroy(&test);
    return test_engine_teardown();
}

/* Asserts |got - want| <= tol * max(max|want|, floor) elementwise, reporting the first miss. */
static void assert_vec_close(const double *got, const double *want, uint64_t n, double tol,
                             double floor, const char *what)
{
    double scale = floor;
    for (uint64_t k = 0; k < n; k++)
        scale = fmax(scale, fabs(want[k]));
    for (uint64_t k = 0; k < n; k++)
        if (!(fabs(got[k] - want[k]) <= tol * scale)) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s[%llu] = %.12g, want %.12g (scale %.3g)", what,
                     (unsigned long long)k, got[k], want[k], scale);
            CU_assertImplementation(0, __LINE__, msg, __FILE__, "", CU_FALSE);
            return;
        }
    CU_PASS(what);
}

/* A small random problem: n examples, d N(0,1) features, labels uniform in [0, C). */
static sdm_dataset *random_dataset(uint64_t n, uint32_t d, uint32_t C, uint64_t seed)
{
    test_rng rng = {seed};
    double *x = malloc(n * d * sizeof(double));
    int32_t *y = malloc(n * sizeof(int32_t));
    for (uint64_t k = 0; k < n * d; k++)
        x[k] = test_rng_normal(&rng);
    for (uint64_t i = 0; i < n; i++)
        y[i] = (int32_t)(test_rng_u64(&rng) % C);
    sdm_dataset *ds = NULL;
    char err[128];
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_new(n, d, C, x, y, NULL, &ds, err, sizeof(err)), SDM_OK);
    free(x);
    free(y);
    return ds;
}

static void randomise_params(sdm_model_t *m, uint64_t seed, double scale)
{
    test_rng rng = {seed};
    uint64_t P = sdm_model_nparams(m);
    double *th = malloc(P * sizeof(double));
    for (uint64_t k = 0; k < P; k++)
        th[k] = scale * test_rng_normal(&rng);
    CU_ASSERT_EQUAL_FATAL(sdm_model_set_params(m, th), SDM_OK);
    free(th);
}

/* ---- digits ----------------------------------------------------------------------------- */

static void test_digits_load(void)
{
    CU_ASSERT_EQUAL_FATAL(digits->n, SDM_DIGITS_N);
    CU_ASSERT_EQUAL(digits->d, 64);
    CU_ASSERT_EQUAL(digits->classes, 10);
    int counts[10] = {0};
    int bad = 0;
    double max_x = 0;
    for (uint64_t i = 0; i < digits->n; i++) {
        if (digits->y[i] < 0 || digits->y[i] > 9 || digits->ids[i] != i)
            bad++;
        else
            counts[digits->y[i]]++;
        for (int j = 0; j < 64; j++) {
            double v = digits->x[i * 64 + j];
            bad += !(v >= 0 && v <= 1) || v * 16 != floor(v * 16);
            max_x = fmax(max_x, v);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(max_x, 1.0);
    /* the class counts of UCI's optdigits.tes (models/data/README.md) */
    int want[10] = {178, 182, 177, 183, 181, 182, 181, 179, 174, 180};
    CU_ASSERT_EQUAL(memcmp(counts, want, sizeof(want)), 0);
    /* the first line is 0,0,5,13,9,1,0,0,... label 0; the last line's label is 8 */
    CU_ASSERT_EQUAL(digits->x[2], 5.0 / 16);
    CU_ASSERT_EQUAL(digits->x[3], 13.0 / 16);
    CU_ASSERT_EQUAL(digits->y[0], 0);
    CU_ASSERT_EQUAL(digits->y[SDM_DIGITS_N - 1], 8);
}

/* Writes a copy of the bundled file to a temp path, altered by `alter`, and loads it. */
static sdm_status load_altered(int alter, char *err, size_t err_len, sdm_dataset **out)
{
    FILE *f = fopen(sdm_digits_default_path(), "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static unsigned char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    CU_ASSERT_FATAL(n > 1000 && n < sizeof(buf));
    if (alter == 1)
        buf[n / 2] ^= 0x01; /* one bit in the middle of the deflate stream */
    else if (alter == 2)
        n -= 100; /* truncated */
    char path[] = "/tmp/sdm_digits_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, buf, n) == (ssize_t)n);
    close(fd);
    sdm_status st = sdm_digits_load(path, out, err, err_len);
    unlink(path);
    return st;
}

static void test_digits_checksum(void)
{
    char err[256];
    sdm_dataset *ds = NULL;
    /* an unaltered copy elsewhere loads: the check is on content, not on the path */
    CU_ASSERT_EQUAL(load_altered(0, err, sizeof(err), &ds), SDM_OK);
    CU_ASSERT_PTR_NOT_NULL(ds);
    if (ds)
        CU_ASSERT_EQUAL(memcmp(ds->x, digits->x, digits->n * 64 * sizeof(double)), 0);
    sdm_dataset_destroy(&ds);
    for (int alter = 1; alter <= 2; alter++) {
        err[0] = '\0';
        ds = (sdm_dataset *)1; /* must be cleared */
        CU_ASSERT_EQUAL(load_altered(alter, err, sizeof(err), &ds), SDM_ERR_BAD_INPUT);
        CU_ASSERT_PTR_NULL(ds);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "SHA-256"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, SDM_DIGITS_SHA256));
    }
    CU_ASSERT_EQUAL(sdm_digits_load("/nonexistent/digits.csv.gz", &ds, err, sizeof(err)),
                    SDM_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NULL(ds);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/digits.csv.gz"));
}

static void test_split_and_subset(void)
{
    char err[256];
    CU_ASSERT_EQUAL(train->n, 1400);
    CU_ASSERT_EQUAL(test->n, 397);
    /* disjoint, together everything, each part in file order */
    unsigned char seen[SDM_DIGITS_N] = {0};
    int order_ok = 1;
    for (uint64_t i = 0; i < train->n; i++) {
        seen[train->ids[i]]++;
        order_ok &= i == 0 || train->ids[i] > train->ids[i - 1];
    }
    for (uint64_t i = 0; i < test->n; i++) {
        seen[test->ids[i]]++;
        order_ok &= i == 0 || test->ids[i] > test->ids[i - 1];
    }
    int once = 1;
    for (int i = 0; i < SDM_DIGITS_N; i++)
        once &= seen[i] == 1;
    CU_ASSERT(once);
    CU_ASSERT(order_ok);
    /* rows follow their ids */
    uint64_t id = test->ids[7];
    CU_ASSERT_EQUAL(memcmp(test->x + 7 * 64, digits->x + id * 64, 64 * sizeof(double)), 0);
    CU_ASSERT_EQUAL(test->y[7], digits->y[id]);
    /* the same seed splits the same way; another seed differently */
    sdm_dataset *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(sdm_dataset_split(digits, 397, 1, NULL, &a, err, sizeof(err)), SDM_OK);
    CU_ASSERT_EQUAL(memcmp(a->ids, test->ids, 397 * sizeof(uint64_t)), 0);
    CU_ASSERT_EQUAL(sdm_dataset_split(digits, 397, 2, NULL, &b, err, sizeof(err)), SDM_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(a->ids, b->ids, 397 * sizeof(uint64_t)), 0);
    sdm_dataset_destroy(&a);
    sdm_dataset_destroy(&b);
    CU_ASSERT_EQUAL(sdm_dataset_split(digits, SDM_DIGITS_N + 1, 1, &a, &b, err, sizeof(err)),
                    SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NULL(a);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "n_test"));
    /* subsets by position */
    uint64_t idx[3] = {5, 0, 5};
    sdm_dataset *sub = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_subset(train, idx, 3, &sub, err, sizeof(err)), SDM_OK);
    CU_ASSERT_EQUAL(sub->n, 3);
    CU_ASSERT_EQUAL(sub->ids[0], train->ids[5]);
    CU_ASSERT_EQUAL(sub->ids[1], train->ids[0]);
    CU_ASSERT_EQUAL(sub->y[2], train->y[5]);
    CU_ASSERT_EQUAL(memcmp(sub->x + 2 * 64, train->x + 5 * 64, 64 * sizeof(double)), 0);
    sdm_dataset_destroy(&sub);
    idx[1] = train->n;
    CU_ASSERT_EQUAL(sdm_dataset_subset(train, idx, 3, &sub, err, sizeof(err)), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NULL(sub);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "idx[1]"));
    /* a label outside the classes is refused by name */
    double x[2] = {0, 0};
    int32_t y[2] = {0, 3};
    CU_ASSERT_EQUAL(sdm_dataset_new(2, 1, 3, x, y, NULL, &sub, err, sizeof(err)),
                    SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "y[1]"));
}

/* ---- gradients against finite differences ---------------------------------------------- */

#define FD_H 1e-5

/* Central differences of the objective L and of every per-example loss and margin against
 * the analytic rows, for any model kind, at the model's current parameters. */
static void check_gradients(sdm_model_t *m, const sdm_dataset *ds, const char *kind)
{
    uint64_t P = sdm_model_nparams(m), n = ds->n;
    double *th = malloc(P * sizeof(double)), *g = malloc(P * sizeof(double));
    double *rows = malloc(n * P * sizeof(double)), *mrows = malloc(n * P * sizeof(double));
    double *fd = malloc(P * sizeof(double)), *fd_ex = malloc(n * P * sizeof(double));
    double *fd_m = malloc(n * P * sizeof(double)), *scratch = malloc(n * P * sizeof(double));
    double *lp = malloc(n * sizeof(double)), *lm = malloc(n * sizeof(double));
    double *mp = malloc(n * sizeof(double)), *mm = malloc(n * sizeof(double));
    memcpy(th, sdm_model_params(m), P * sizeof(double));
    double f;
    CU_ASSERT_EQUAL_FATAL(sdm_model_loss(m, ds, &f, g), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_model_example_grads(m, ds, rows, NULL), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_model_margin_grads(m, ds, mrows, NULL), SDM_OK);
    for (uint64_t k = 0; k < P; k++) {
        double fp, fm, save = th[k];
        th[k] = save + FD_H;
        CU_ASSERT_EQUAL_FATAL(sdm_model_set_params(m, th), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_loss(m, ds, &fp, NULL), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_example_grads(m, ds, scratch, lp), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_margins(m, ds, mp), SDM_OK);
        th[k] = save - FD_H;
        CU_ASSERT_EQUAL_FATAL(sdm_model_set_params(m, th), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_loss(m, ds, &fm, NULL), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_example_grads(m, ds, scratch, lm), SDM_OK);
        CU_ASSERT_EQUAL_FATAL(sdm_model_margins(m, ds, mm), SDM_OK);
        th[k] = save;
        fd[k] = (fp - fm) / (2 * FD_H);
        for (uint64_t i = 0; i < n; i++) {
            fd_ex[i * P + k] = (lp[i] - lm[i]) / (2 * FD_H);
            fd_m[i * P + k] = (mp[i] - mm[i]) / (2 * FD_H);
        }
    }
    CU_ASSERT_EQUAL(sdm_model_set_params(m, th), SDM_OK);
    char what[64];
    snprintf(what, sizeof(what), "%s: dL/dθ", kind);
    assert_vec_close(g, fd, P, 1e-6, 1e-3, what);
    snprintf(what, sizeof(what), "%s: per-example dℓ/dθ", kind);
    assert_vec_close(rows, fd_ex, n * P, 1e-6, 1e-3, what);
    snprintf(what, sizeof(what), "%s: margin dm/dθ", kind);
    assert_vec_close(mrows, fd_m, n * P, 1e-6, 1e-3, what);
    free(th), free(g), free(rows), free(mrows), free(fd), free(fd_ex), free(fd_m);
    free(scratch), free(lp), free(lm), free(mp), free(mm);
}

/* mean_i ∇ℓ_i + λθ must equal ∇L. */
static void check_rows_average(sdm_model_t *m, const sdm_dataset *ds, const char *what)
{
    uint64_t P = sdm_model_nparams(m), n = ds->n;
    double *rows = malloc(n * P * sizeof(double)), *g = malloc(P * sizeof(double));
    double *mean = calloc(P, sizeof(double));
    double f;
    CU_ASSERT_EQUAL_FATAL(sdm_model_loss(m, ds, &f, g), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_model_example_grads(m, ds, rows, NULL), SDM_OK);
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < P; k++)
            mean[k] += rows[i * P + k];
    for (uint64_t k = 0; k < P; k++)
        mean[k] = mean[k] / (double)n + sdm_model_l2(m) * sdm_model_params(m)[k];
    assert_vec_close(mean, g, P, 1e-10, 1e-12, what);
    free(rows), free(g), free(mean);
}

static void test_logreg_gradients(void)
{
    sdm_dataset *ds = random_dataset(12, 5, 4, 11);
    sdm_model_t *m = sdm_logreg_new(5, 4, 0.05, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(sdm_model_nparams(m), 4 * 5 + 4);
    randomise_params(m, 3, 0.7);
    check_gradients(m, ds, "logreg");
    check_rows_average(m, ds, "logreg: mean rows + λθ = ∇L (random)");
    /* and on the real data at a non-trivial point */
    sdm_model_t *big = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    randomise_params(big, 4, 0.3);
    check_rows_average(big, train, "logreg: mean rows + λθ = ∇L (digits)");
    /* the margin is log(p / (1 - p)) of the true class */
    double margins[12], probs[12 * 4];
    CU_ASSERT_EQUAL(sdm_model_margins(m, ds, margins), SDM_OK);
    CU_ASSERT_EQUAL(sdm_model_predict(m, ds, NULL, probs), SDM_OK);
    int ok = 1;
    for (int i = 0; i < 12; i++) {
        double p = probs[i * 4 + ds->y[i]];
        ok &= fabs(margins[i] - log(p / (1 - p))) < 1e-9 * fmax(1, fabs(margins[i]));
    }
    CU_ASSERT(ok);
    sdm_model_destroy(&m);
    sdm_model_destroy(&big);
    CU_ASSERT_PTR_NULL(big);
    sdm_model_destroy(&big); /* idempotent */
    sdm_dataset_destroy(&ds);
}

static void test_mlp_gradients(void)
{
    sdm_dataset *ds = random_dataset(10, 5, 3, 21);
    sdm_model_t *m = sdm_mlp_new(5, 4, 3, 0.02, 9, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(sdm_model_nparams(m), 4 * 5 + 4 + 3 * 4 + 3);
    CU_ASSERT_STRING_EQUAL(sdm_model_kind(m), "mlp");
    randomise_params(m, 5, 0.6); /* non-zero biases too */
    check_gradients(m, ds, "mlp");
    check_rows_average(m, ds, "mlp: mean rows + λθ = ∇L (random)");
    sdm_model_t *big = sdm_mlp_new(64, 32, 10, 1e-3, 1, NULL, NULL, 0);
    check_rows_average(big, train, "mlp: mean rows + λθ = ∇L (digits)");
    sdm_model_destroy(&m);
    sdm_model_destroy(&big);
    sdm_dataset_destroy(&ds);
}

/* Sampled-label rows: reproducible by seed, keyed by example id, equal to the loss rows of
 * the drawn labels, and drawn with the model's own probabilities. */
static void check_sampled(sdm_model_t *m, const char *kind)
{
    uint64_t P = sdm_model_nparams(m), n = 300;
    uint32_t draws = 3;
    uint64_t *idx = malloc(n * sizeof(uint64_t));
    for (uint64_t i = 0; i < n; i++)
        idx[i] = i;
    sdm_dataset *ds = NULL;
    char err[128];
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_subset(train, idx, n, &ds, err, sizeof(err)), SDM_OK);
    double *a = malloc(draws * n * P * sizeof(double)), *b = malloc(draws * n * P * sizeof(double));
    int32_t *la = malloc(draws * n * sizeof(int32_t)), *lb = malloc(draws * n * sizeof(int32_t));
    CU_ASSERT_EQUAL_FATAL(sdm_model_sampled_grads(m, ds, draws, 42, a, la), SDM_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_model_sampled_grads(m, ds, draws, 42, b, lb), SDM_OK);
    CU_ASSERT_EQUAL(memcmp(a, b, draws * n * P * sizeof(double)), 0);
    CU_ASSERT_EQUAL(memcmp(la, lb, draws * n * sizeof(int32_t)), 0);
    CU_ASSERT_EQUAL(sdm_model_sampled_grads(m, ds, draws, 43, b, lb), SDM_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(la, lb, draws * n * sizeof(int32_t)), 0);
    /* draw t's rows are the loss rows of the same examples labelled with draw t's labels */
    sdm_dataset *relabelled = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_subset(ds, idx, n, &relabelled, err, sizeof(err)), SDM_OK);
    memcpy(relabelled->y, la + 2 * n, n * sizeof(int32_t));
    CU_ASSERT_EQUAL(sdm_model_example_grads(m, relabelled, b, NULL), SDM_OK);
    char what[64];
    snprintf(what, sizeof(what), "%s: sampled rows = loss rows of the drawn labels", kind);
    assert_vec_close(a + 2 * n * P, b, n * P, 1e-14, 1e-12, what);
    /* keyed by id: the examples at positions 10..19 of ds draw the same labels alone */
    sdm_dataset *few = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_subset(ds, idx + 10, 10, &few, err, sizeof(err)), SDM_OK);
    int32_t lf[30];
    CU_ASSERT_EQUAL(sdm_model_sampled_grads(m, few, draws, 42, b, lf), SDM_OK);
    int same = 1;
    for (uint32_t t = 0; t < draws; t++)
        for (int i = 0; i < 10; i++)
            same &= lf[t * 10 + i] == la[t * n + 10 + i];
    CU_ASSERT(same);
    /* with many draws the label frequencies approach the softmax (4-sigma bound) */
    uint32_t many = 4000;
    uint32_t C = sdm_model_classes(m);
    double *probs = malloc(10 * C * sizeof(double)), *rows = malloc(many * 10 * P * sizeof(double));
    int32_t *lab = malloc(many * 10 * sizeof(int32_t));
    CU_ASSERT_EQUAL(sdm_model_predict(m, few, NULL, probs), SDM_OK);
    CU_ASSERT_EQUAL(sdm_model_sampled_grads(m, few, many, 7, rows, lab), SDM_OK);
    int freq_ok = 1;
    for (int i = 0; i < 10; i++)
        for (uint32_t c = 0; c < C; c++) {
            double cnt = 0;
            for (uint32_t t = 0; t < many; t++)
                cnt += lab[t * 10 + i] == (int32_t)c;
            double p = probs[i * C + c], sd = sqrt(p * (1 - p) / many);
            freq_ok &= fabs(cnt / many - p) <= 4 * sd + 1e-3;
        }
    CU_ASSERT(freq_ok);
    free(idx), free(a), free(b), free(la), free(lb), free(probs), free(rows), free(lab);
    sdm_dataset_destroy(&ds);
    sdm_dataset_destroy(&relabelled);
    sdm_dataset_destroy(&few);
}

static void test_sampled_labels(void)
{
    /* at a partly trained point, so that the softmax is neither uniform nor one-hot */
    sdm_model_t *lr = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    sdm_model_t *mlp = sdm_mlp_new(64, 16, 10, 1e-3, 3, NULL, NULL, 0);
    sdm_train_opts o = {SDM_TRAIN_LBFGS, 0, 0, 5, NULL, 0, 0, 0};
    sdm_train_result *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_model_train(lr, train, &o, &r), SDM_OK);
    sdm_train_result_free(&r);
    CU_ASSERT_EQUAL_FATAL(sdm_model_train(mlp, train, &o, &r), SDM_OK);
    sdm_train_result_free(&r);
    check_sampled(lr, "logreg");
    check_sampled(mlp, "mlp");
    double out[1];
    CU_ASSERT_EQUAL(sdm_model_sampled_grads(lr, train, 0, 1, out, NULL), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_model_last_error(lr), "draws"));
    sdm_model_destroy(&lr);
    sdm_model_destroy(&mlp);
}

/* ---- Hessian ------------------------------------------------------------------------------ */

static void check_hessian(sdm_model_t *m, const sdm_dataset *ds, const uint64_t *cols,
                          uint64_t n_cols, const char *what)
{
    uint64_t P = sdm_model_nparams(m);
    double *H = malloc(P * P * sizeof(double)), *th = malloc(P * sizeof(double));
    double *gp = malloc(P * sizeof(double)), *gm = malloc(P * sizeof(double));
    double *fd = malloc(P * sizeof(double)), *col = malloc(P * sizeof(double));
    CU_ASSERT_EQUAL_FATAL(sdm_logreg_hessian(m, ds, H), SDM_OK);
    memcpy(th, sdm_model_params(m), P * sizeof(double));
    for (uint64_t c = 0; c < n_cols; c++) {
        uint64_t k = cols[c];
        double f, save = th[k];
        th[k] = save + FD_H;
        CU_ASSERT_EQUAL(sdm_model_set_params(m, th), SDM_OK);
        CU_ASSERT_EQUAL(sdm_model_loss(m, ds, &f, gp), SDM_OK);
        th[k] = save - FD_H;
        CU_ASSERT_EQUAL(sdm_model_set_params(m, th), SDM_OK);
        CU_ASSERT_EQUAL(sdm_model_loss(m, ds, &f, gm), SDM_OK);
        th[k] = save;
        for (uint64_t j = 0; j < P; j++) {
            fd[j] = (gp[j] - gm[j]) / (2 * FD_H);
            col[j] = H[j * P + k];
        }
        assert_vec_close(col, fd, P, 1e-6, 1e-3, what);
    }
    CU_ASSERT_EQUAL(sdm_model_set_params(m, th), SDM_OK);
    int sym = 1;
    for (uint64_t a = 0; a < P; a++)
        for (uint64_t b = 0; b < a; b++)
            sym &= H[a * P + b] == H[b * P + a];
    CU_ASSERT(sym);
    /* positive definite: Cholesky succeeds */
    CU_ASSERT_EQUAL(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)P, H, (lapack_int)P), 0);
    free(H), free(th), free(gp), free(gm), free(fd), free(col);
}

static void test_logreg_hessian(void)
{
    sdm_dataset *ds = random_dataset(15, 4, 3, 31);
    sdm_model_t *m = sdm_logreg_new(4, 3, 0.01, NULL, NULL, 0);
    randomise_params(m, 6, 0.8);
    uint64_t all[15];
    for (int k = 0; k < 15; k++)
        all[k] = (uint64_t)k;
    check_hessian(m, ds, all, 15, "logreg Hessian column (random, all columns)");
    /* the digits problem: a weight, another class's weight and two biases */
    sdm_model_t *big = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    randomise_params(big, 7, 0.2);
    uint64_t cols[4] = {37, 3 * 64 + 20, 640, 649};
    check_hessian(big, train, cols, 4, "logreg Hessian column (digits)");
    /* the MLP has none */
    sdm_model_t *mlp = sdm_mlp_new(4, 2, 3, 0, 1, NULL, NULL, 0);
    double h[1];
    CU_ASSERT_EQUAL(sdm_logreg_hessian(mlp, ds, h), SDM_ERR_UNSUPPORTED);
    sdm_model_destroy(&m);
    sdm_model_destroy(&big);
    sdm_model_destroy(&mlp);
    sdm_dataset_destroy(&ds);
}

/* ---- training ---------------------------------------------------------------------------- */

static void test_logreg_train(void)
{
    sdm_model_t *m = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    uint64_t keep[3] = {20, 0, 5};
    sdm_train_opts o = {SDM_TRAIN_LBFGS, 0, 1e-6, 1000, keep, 3, 0, 0};
    sdm_train_result *r = NULL;
    double t0 = now();
    CU_ASSERT_EQUAL_FATAL(sdm_model_train(m, train, &o, &r), SDM_OK);
    double train_s = now() - t0;
    CU_ASSERT(r->converged);
    CU_ASSERT_STRING_EQUAL(r->stop, "converged");
    /* the stopping rule, checked independently */
    uint64_t P = sdm_model_nparams(m);
    double f, *g = malloc(P * sizeof(double));
    CU_ASSERT_EQUAL(sdm_model_loss(m, train, &f, g), SDM_OK);
    double gn = 0;
    for (uint64_t k = 0; k < P; k++)
        gn += g[k] * g[k];
    CU_ASSERT(sqrt(gn) <= 1e-6);
    CU_ASSERT_EQUAL(f, r->loss);
    double acc_train, acc_test;
    CU_ASSERT_EQUAL(sdm_model_accuracy(m, train, &acc_train), SDM_OK);
    CU_ASSERT_EQUAL(sdm_model_accuracy(m, test, &acc_test), SDM_OK);
    CU_ASSERT(acc_test >= 0.95);
    /* checkpoints: the kept steps in order, then the final one, all with the lr weight */
    CU_ASSERT_EQUAL_FATAL(r->n_checkpoints, 4);
    CU_ASSERT_EQUAL(r->checkpoints[0].step, 0);
    CU_ASSERT_EQUAL(r->checkpoints[1].step, 5);
    CU_ASSERT_EQUAL(r->checkpoints[2].step, 20);
    CU_ASSERT_EQUAL(r->checkpoints[3].step, r->steps);
    const sdm_checkpoint *c0 = sdm_train_result_at(r, 0), *last = sdm_train_result_at(r, r->steps);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT_PTR_NULL(sdm_train_result_at(r, 6));
    CU_ASSERT_EQUAL(c0->lr, 1.0);
    CU_ASSERT_EQUAL(c0->params[17], 0.0);
    CU_ASSERT_EQUAL(memcmp(last->params, sdm_model_params(m), P * sizeof(double)), 0);
    CU_ASSERT(r->checkpoints[1].loss < c0->loss && r->checkpoints[2].loss < r->checkpoints[1].loss);
    CU_ASSERT(c0->loss > log(10) - 1e-12 && c0->loss < log(10) + 1e-12); /* uniform softmax */

    /* all per-example gradients at the optimum, and their f32 form */
    uint64_t n = train->n;
    double *rows = malloc(n * P * sizeof(double));
    t0 = now();
    CU_ASSERT_EQUAL(sdm_model_example_grads(m, train, rows, NULL), SDM_OK);
    double rows_s = now() - t0;
    float *rows32 = malloc(n * P * sizeof(float));
    sdm_rows_to_f32(rows, n * P, rows32);
    CU_ASSERT_EQUAL(rows32[3 * P + 5], (float)rows[3 * P + 5]);
    double *H = malloc(P * P * sizeof(double));
    t0 = now();
    CU_ASSERT_EQUAL(sdm_logreg_hessian(m, train, H), SDM_OK);
    double hess_s = now() - t0;
    printf("\n    logreg digits: %llu L-BFGS steps (%llu evaluations), |grad| %.2e, "
           "train %.3f s; accuracy train %.4f test %.4f; %llu x %llu per-example rows %.4f s; "
           "Hessian %.3f s\n",
           (unsigned long long)r->steps, (unsigned long long)r->evaluations, r->grad_norm, train_s,
           acc_train, acc_test, (unsigned long long)n, (unsigned long long)P, rows_s, hess_s);
    free(g), free(rows), free(rows32), free(H);
    sdm_train_result_free(&r);
    CU_ASSERT_PTR_NULL(r);
    sdm_model_destroy(&m);
}

static void test_gd_checkpoints(void)
{
    sdm_model_t *m = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    uint64_t P = sdm_model_nparams(m);
    sdm_train_opts o = {SDM_TRAIN_GD, 0.15, 1e-6, 40, NULL, 0, 10, 0};
    sdm_train_result *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_model_train(m, train, &o, &r), SDM_OK);
    CU_ASSERT_FALSE(r->converged); /* 40 plain steps are far from the optimum */
    CU_ASSERT_STRING_EQUAL(r->stop, "max_steps");
    CU_ASSERT_EQUAL(r->steps, 40);
    CU_ASSERT_EQUAL_FATAL(r->n_checkpoints, 5); /* 0, 10, 20, 30, 40 */
    int ok = 1;
    for (size_t k = 0; k < 5; k++) {
        ok &= r->checkpoints[k].step == 10 * k && r->checkpoints[k].lr == 0.15;
        ok &= k == 0 || r->checkpoints[k].loss < r->checkpoints[k - 1].loss;
    }
    CU_ASSERT(ok);
    /* checkpoint 10 is ten plain steps θ ← θ - lr ∇L(θ) from checkpoint 0 */
    sdm_model_t *replay = sdm_model_clone(m);
    double *th = calloc(P, sizeof(double)), *g = malloc(P * sizeof(double)), f;
    for (int s = 0; s < 10; s++) {
        CU_ASSERT_EQUAL(sdm_model_set_params(replay, th), SDM_OK);
        CU_ASSERT_EQUAL(sdm_model_loss(replay, train, &f, g), SDM_OK);
        for (uint64_t k = 0; k < P; k++)
            th[k] -= 0.15 * g[k];
    }
    assert_vec_close(sdm_train_result_at(r, 10)->params, th, P, 1e-12, 1e-12,
                     "GD checkpoint 10 = ten replayed steps");
    /* bad options name the field and change nothing */
    const double *before = sdm_train_result_at(r, 40)->params;
    sdm_train_result *bad = NULL;
    o.lr = 0;
    CU_ASSERT_EQUAL(sdm_model_train(m, train, &o, &bad), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NULL(bad);
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_model_last_error(m), "opts.lr"));
    CU_ASSERT_EQUAL(memcmp(sdm_model_params(m), before, P * sizeof(double)), 0);
    o.lr = 0.15;
    sdm_dataset *wrong = random_dataset(5, 3, 10, 1);
    CU_ASSERT_EQUAL(sdm_model_train(m, wrong, &o, &bad), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_model_last_error(m), "dataset.d"));
    CU_ASSERT_EQUAL(memcmp(sdm_model_params(m), before, P * sizeof(double)), 0);
    /* a too-large lr diverges and says so, leaving finite parameters */
    sdm_model_t *lin = sdm_logreg_new(3, 10, 1e-3, NULL, NULL, 0);
    o.lr = 1e12; /* the L2 term alone multiplies θ by 1 - lr λ = -1e9 a step */
    o.save_every = 0;
    CU_ASSERT_EQUAL(sdm_model_train(lin, wrong, &o, &bad), SDM_OK);
    if (bad) {
        CU_ASSERT_STRING_EQUAL(bad->stop, "diverged");
        CU_ASSERT(isfinite(bad->loss));
    }
    int finite = 1;
    for (uint64_t k = 0; k < sdm_model_nparams(lin); k++)
        finite &= isfinite(sdm_model_params(lin)[k]);
    CU_ASSERT(finite);
    sdm_train_result_free(&bad);
    sdm_model_destroy(&lin);
    sdm_dataset_destroy(&wrong);
    free(th), free(g);
    sdm_train_result_free(&r);
    sdm_model_destroy(&m);
    sdm_model_destroy(&replay);
}

static void test_mlp_train(void)
{
    sdm_model_t *m = sdm_mlp_new(64, 32, 10, 1e-2, 1, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    sdm_train_opts o = {SDM_TRAIN_LBFGS, 0, 1e-5, 5000, NULL, 0, 0, 0};
    sdm_train_result *r = NULL;
    double t0 = now();
    CU_ASSERT_EQUAL_FATAL(sdm_model_train(m, train, &o, &r), SDM_OK);
    double train_s = now() - t0;
    CU_ASSERT(r->converged);
    CU_ASSERT(r->grad_norm <= 1e-5);
    double acc_train, acc_test;
    CU_ASSERT_EQUAL(sdm_model_accuracy(m, train, &acc_train), SDM_OK);
    CU_ASSERT_EQUAL(sdm_model_accuracy(m, test, &acc_test), SDM_OK);
    CU_ASSERT(acc_test >= 0.95);
    uint64_t P = sdm_model_nparams(m), n = train->n;
    double *rows = malloc(n * P * sizeof(double));
    t0 = now();
    CU_ASSERT_EQUAL(sdm_model_example_grads(m, train, rows, NULL), SDM_OK);
    double rows_s = now() - t0;
    printf("\n    mlp digits (32 tanh units): %llu L-BFGS steps, |grad| %.2e, train %.3f s; "
           "accuracy train %.4f test %.4f; %llu x %llu per-example rows %.4f s\n",
           (unsigned long long)r->steps, r->grad_norm, train_s, acc_train, acc_test,
           (unsigned long long)n, (unsigned long long)P, rows_s);
    free(rows);
    sdm_train_result_free(&r);
    sdm_model_destroy(&m);
}

/* Same seed and data: bit-identical parameters and checkpoints; another seed: other ones. */
static void test_determinism(void)
{
    uint64_t P = 0;
    double *params[3] = {NULL, NULL, NULL};
    uint64_t seeds[3] = {5, 5, 6};
    uint64_t keep[1] = {7};
    for (int run = 0; run < 3; run++) {
        sdm_model_t *m = sdm_mlp_new(64, 16, 10, 1e-2, seeds[run], NULL, NULL, 0);
        sdm_train_opts o = {SDM_TRAIN_LBFGS, 0.5, 1e-4, 60, keep, 1, 0, 0};
        sdm_train_result *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sdm_model_train(m, train, &o, &r), SDM_OK);
        P = sdm_model_nparams(m);
        params[run] = malloc(2 * P * sizeof(double));
        memcpy(params[run], sdm_model_params(m), P * sizeof(double));
        const sdm_checkpoint *c = sdm_train_result_at(r, 7);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(c->lr, 0.5);
        memcpy(params[run] + P, c->params, P * sizeof(double));
        sdm_train_result_free(&r);
        sdm_model_destroy(&m);
    }
    CU_ASSERT_EQUAL(memcmp(params[0], params[1], 2 * P * sizeof(double)), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(params[0], params[2], P * sizeof(double)), 0);
    for (int run = 0; run < 3; run++)
        free(params[run]);
    /* logreg: a clone trained the same way ends bit-identical, whatever the caller's OpenMP
     * thread count (the models keep their BLAS on the calling thread) */
    sdm_model_t *a = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0), *b = sdm_model_clone(a);
    sdm_train_opts o = {SDM_TRAIN_LBFGS, 0, 1e-6, 0, NULL, 0, 0, 0};
    sdm_train_result *ra = NULL, *rb = NULL;
    int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    CU_ASSERT_EQUAL(sdm_model_train(a, train, &o, &ra), SDM_OK);
    CU_ASSERT_EQUAL(omp_get_max_threads(), 2); /* the caller's setting is left as it was */
    omp_set_num_threads(1);
    CU_ASSERT_EQUAL(sdm_model_train(b, train, &o, &rb), SDM_OK);
    omp_set_num_threads(threads);
    CU_ASSERT_EQUAL(
        memcmp(sdm_model_params(a), sdm_model_params(b), sdm_model_nparams(a) * sizeof(double)), 0);
    sdm_train_result_free(&ra);
    sdm_train_result_free(&rb);
    sdm_model_destroy(&a);
    sdm_model_destroy(&b);
}

/* The rows fit the engine as they are: per-example and curvature rows go into a store. */
static void test_rows_into_store(void)
{
    sdm_model_t *m = sdm_logreg_new(64, 10, 1e-3, NULL, NULL, 0);
    randomise_params(m, 8, 0.1);
    uint64_t P = sdm_model_nparams(m), n = 50;
    uint64_t idx[50];
    for (uint64_t i = 0; i < n; i++)
        idx[i] = i;
    sdm_dataset *ds = NULL;
    char err[128];
    CU_ASSERT_EQUAL_FATAL(sdm_dataset_subset(train, idx, n, &ds, err, sizeof(err)), SDM_OK);
    double *rows = malloc(n * P * sizeof(double)), *curv = malloc(n * P * sizeof(double));
    float *r32 = malloc(n * P * sizeof(float)), *c32 = malloc(n * P * sizeof(float));
    CU_ASSERT_EQUAL(sdm_model_example_grads(m, ds, rows, NULL), SDM_OK);
    CU_ASSERT_EQUAL(sdm_model_sampled_grads(m, ds, 1, 99, curv, NULL), SDM_OK);
    sdm_rows_to_f32(rows, n * P, r32);
    sdm_rows_to_f32(curv, n * P, c32);
    sdm_projection proj = {SDM_PROJ_RADEMACHER, P, 64, 0, 1};
    sdm_store_t *s = sdm_store_new(test_eng, &proj);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sdm_batch b = {"final", 1.0, "uci", "digits/0", 0, ds->ids, {SDM_F32, n, P, r32}, 0, NULL};
    CU_ASSERT_EQUAL(sdm_store_append(s, &b, NULL, NULL), SDM_OK);
    sdm_batch c = {"final", 1.0, NULL, NULL, 1, NULL, {SDM_F32, n, P, c32}, 0, NULL};
    CU_ASSERT_EQUAL(sdm_store_append(s, &c, NULL, NULL), SDM_OK);
    CU_ASSERT_EQUAL(sdm_store_rows(s), 2 * n);
    CU_ASSERT_EQUAL(sdm_store_examples(s), n);
    sdm_store_destroy(&s);
    free(rows), free(curv), free(r32), free(c32);
    sdm_dataset_destroy(&ds);
    sdm_model_destroy(&m);
}

static void test_bad_models(void)
{
    char err[128] = "";
    sdm_status st = SDM_OK;
    CU_ASSERT_PTR_NULL(sdm_logreg_new(64, 10, 0, &st, err, sizeof(err)));
    CU_ASSERT_EQUAL(st, SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "l2"));
    CU_ASSERT_PTR_NULL(sdm_logreg_new(64, 1, 1e-3, &st, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "classes"));
    CU_ASSERT_PTR_NULL(sdm_mlp_new(64, 0, 10, 1e-3, 1, &st, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "hidden"));
    sdm_model_t *m = sdm_logreg_new(64, 10, 1e-3, &st, err, sizeof(err));
    CU_ASSERT_EQUAL(st, SDM_OK);
    uint64_t P = sdm_model_nparams(m);
    double *th = calloc(P, sizeof(double));
    th[100] = NAN;
    CU_ASSERT_EQUAL(sdm_model_set_params(m, th), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_model_last_error(m), "params[100]"));
    CU_ASSERT_EQUAL(sdm_model_params(m)[100], 0.0);
    sdm_dataset *three = random_dataset(4, 64, 3, 2);
    double f;
    CU_ASSERT_EQUAL(sdm_model_loss(m, three, &f, NULL), SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(sdm_model_last_error(m), "dataset.classes"));
    free(th);
    sdm_dataset_destroy(&three);
    sdm_model_destroy(&m);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("models", digits_setup, digits_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "digits: load", test_digits_load);
    CU_add_test(s, "digits: checksum refuses altered files", test_digits_checksum);
    CU_add_test(s, "datasets: split and subset", test_split_and_subset);
    CU_add_test(s, "logreg: gradients vs finite differences", test_logreg_gradients);
    CU_add_test(s, "mlp: gradients vs finite differences", test_mlp_gradients);
    CU_add_test(s, "sampled-label (curvature) rows", test_sampled_labels);
    CU_add_test(s, "logreg: exact Hessian", test_logreg_hessian);
    CU_add_test(s, "logreg: train to convergence", test_logreg_train);
    CU_add_test(s, "gradient descent checkpoints", test_gd_checkpoints);
    CU_add_test(s, "mlp: train to convergence", test_mlp_train);
    CU_add_test(s, "determinism", test_determinism);
    CU_add_test(s, "rows go into a store", test_rows_into_store);
    CU_add_test(s, "bad models and inputs", test_bad_models);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
