/* test_eval.c - the evaluation: rank statistics on known inputs, the LDS pipeline at reduced
 * size (finite, in range, better than chance, reproducible), JSON output, and the PNG writer. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "digits.h"
#include "eval.h"
#include "json.h"
#include "png.h"
#include "testdata.h"

static sdm_dataset *digits;
static sdm_eval_result *quick; /* one reduced logreg run, shared by the pipeline tests */

/* ---- rank statistics -------------------------------------------------------------------- */

static void test_ranks_ties(void)
{
    double x[] = {3, 1, 4, 1, 5, 4, 4};
    double r[7];
    sdm_eval_ranks(x, 7, r);
    /* 1,1 share ranks 1-2; 4,4,4 share ranks 4-6 */
    double want[] = {3, 1.5, 5, 1.5, 7, 5, 5};
    for (int i = 0; i < 7; i++)
        CU_ASSERT_DOUBLE_EQUAL(r[i], want[i], 1e-12);
}

static void test_spearman_known(void)
{
    double x[] = {1, 2, 3, 4, 5};
    double y[] = {2, 1, 4, 3, 5};
    /* no ties: 1 - 6 Σd² / (n(n²-1)) = 1 - 6·4/120 */
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_spearman(x, y, 5), 0.8, 1e-12);
    /* monotone but not linear: 1; reversed: -1 */
    double cube[] = {1, 8, 27, 64, 125}, rev[] = {9, 7, 5, 3, 1};
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_spearman(x, cube, 5), 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_spearman(x, rev, 5), -1.0, 1e-12);
    /* ties by average ranks: x ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) is 3/sqrt(10) */
    double tx[] = {1, 2, 2, 3}, ty[] = {10, 20, 30, 40};
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_spearman(tx, ty, 4), 3 / sqrt(10), 1e-12);
    /* a constant side has no ordering: 0 */
    double c[] = {2, 2, 2, 2};
    CU_ASSERT_EQUAL(sdm_eval_spearman(c, ty, 4), 0.0);
    CU_ASSERT_EQUAL(sdm_eval_spearman(x, y, 1), 0.0);
}

static void test_auc_known(void)
{
    /* positives 0.1 and 0.3 against negatives 0.5, 0.9, 0.3: 3 + 2 + a tie = 5.5 of 6 */
    double s[] = {0.5, 0.1, 0.3, 0.9, 0.3};
    uint8_t pos[] = {0, 1, 1, 0, 0};
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_auc_low(s, pos, 5), 5.5 / 6, 1e-12);
    /* perfectly separated both ways */
    double t[] = {-3, -2, 1, 2};
    uint8_t low[] = {1, 1, 0, 0}, high[] = {0, 0, 1, 1};
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_auc_low(t, low, 4), 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_auc_low(t, high, 4), 0.0, 1e-12);
    /* all tied: one half */
    double u[] = {1, 1, 1};
    uint8_t one[] = {0, 1, 0};
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_auc_low(u, one, 3), 0.5, 1e-12);
    /* an empty class has no AUC */
    uint8_t none[] = {0, 0, 0};
    CU_ASSERT(isnan(sdm_eval_auc_low(u, none, 3)));
}

static void test_lds_synthetic(void)
{
    /* margins that are exactly the masks' sums of the scores give LDS 1; negated, -1 */
    enum { M = 3, N = 8, R = 6 };
    test_rng rng = {5};
    double S[M * N], margins[R * M], neg[R * M];
    uint8_t masks[R * N];
    for (int t = 0; t < M * N; t++)
        S[t] = test_rng_normal(&rng);
    for (int t = 0; t < R * N; t++)
        masks[t] = test_rng_u64(&rng) & 1;
    for (int r = 0; r < R; r++)
        for (int q = 0; q < M; q++) {
            double sum = 0;
            for (int i = 0; i < N; i++)
                sum += masks[r * N + i] ? S[q * N + i] : 0;
            margins[r * M + q] = 2 * sum + 1; /* any increasing map: ranks only */
            neg[r * M + q] = -sum;
        }
    double se = -1, pred[R * M];
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_lds(S, M, N, masks, R, margins, &se, pred), 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(se, 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(pred[2 * M + 1], (margins[2 * M + 1] - 1) / 2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(sdm_eval_lds(S, M, N, masks, R, neg, NULL, NULL), -1.0, 1e-12);
}

/* ---- the pipeline at reduced size --------------------------------------------------------- */

static const sdm_eval_row *find_row(const sdm_eval_result *r, const char *name,
                                    const char *projection, size_t *index)
{
    for (size_t i = 0; i < r->n_rows; i++)
        if (!strcmp(r->rows[i].name, name) && !strcmp(r->rows[i].projection, projection)) {
            if (index)
                *index = i;
            return &r->rows[i];
        }
    return NULL;
}

static int pipeline_setup(void)
{
    char err[256] = "";
    if (test_engine_setup() != 0)
        return -1;
    if (sdm_digits_load(NULL, &digits, err, sizeof(err)) != SDM_OK) {
        fprintf(stderr, "digits: %s\n", err);
        return -1;
    }
    sdm_eval_opts o;
    if (sdm_eval_opts_init(&o, "logreg") != SDM_OK)
        return -1;
    sdm_eval_opts_quick(&o);
    o.keep_scores = 1;
    if (sdm_eval_run(&o, digits, test_eng, &quick, err, sizeof(err)) != SDM_OK) {
        fprintf(stderr, "eval: %s\n", err);
        return -1;
    }
    return 0;
}

static int pipeline_teardown(void)
{
    sdm_eval_result_free(&quick);
    sdm_dataset_destroy(&digits);
    return test_engine_teardown();
}

/* The contributors' deal shared by eval and demo: shards in file order, the named fraction of
 * one contributor's labels changed and nothing else, the last shard shard 0's data under new
 * ids; bad arguments refused. */
static void test_deal(void)
{
    char err[256] = "";
    sdm_eval_deal dl;
    CU_ASSERT_EQUAL_FATAL(sdm_eval_deal_new(digits, digits, 203, 5, 2, 0.25, 9, &dl, err, sizeof(err)),
                          SDM_OK);
    CU_ASSERT_EQUAL(dl.per, 40);
    CU_ASSERT_EQUAL_FATAL(dl.train->n, 200);
    CU_ASSERT_EQUAL(dl.n_corrupted, 10);
    uint64_t max_id = 0, flipped = 0;
    for (uint64_t i = 0; i < digits->n; i++)
        max_id = digits->ids[i] > max_id ? digits->ids[i] : max_id;
    for (uint64_t i = 0; i < 200; i++) {
        uint64_t src = i < 160 ? i : i - 160, d = digits->d;
        CU_ASSERT_EQUAL(dl.shard_of[i], i / 40);
        CU_ASSERT_EQUAL(memcmp(dl.train->x + i * d, digits->x + src * d, d * sizeof(double)), 0);
        CU_ASSERT_EQUAL(dl.train->ids[i], i < 160 ? digits->ids[i] : max_id + 1 + digits->ids[src]);
        int changed = dl.train->y[i] != digits->y[src];
        CU_ASSERT_EQUAL(changed, dl.corrupted[i]);
        CU_ASSERT(!dl.corrupted[i] || i / 40 == 2);
        flipped += changed;
    }
    CU_ASSERT_EQUAL(flipped, 10);
    sdm_eval_deal_free(&dl);
    CU_ASSERT_PTR_NULL(dl.train);

    CU_ASSERT_EQUAL(sdm_eval_deal_new(digits, digits, 200, 5, 5, 0.25, 9, &dl, err, sizeof(err)),
                    SDM_ERR_BAD_INPUT);
    CU_ASSERT_PTR_NULL(dl.train);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "contributors"));
    CU_ASSERT_EQUAL(sdm_eval_deal_new(digits, digits, digits->n + 1, 5, 1, 0.25, 9, &dl, err,
                                      sizeof(err)),
                    SDM_ERR_BAD_INPUT);
}

static void test_quick_run_shape(void)
{
    CU_ASSERT_EQUAL_FATAL(quick->n_train, 500);
    CU_ASSERT_EQUAL(quick->n_test, 200);
    CU_ASSERT_EQUAL(quick->nparams, 650);
    CU_ASSERT_EQUAL(quick->subsets, 20);
    CU_ASSERT_EQUAL(quick->retrains, 40);
    CU_ASSERT_EQUAL(quick->retrains_converged, 40);
    CU_ASSERT(quick->train_converged);
    CU_ASSERT_EQUAL(quick->n_corrupted, 50); /* all of c3's 50 labels */
    /* dot, cosine, 4 trak, at none and rademacher; TracIn-CP at both and trak over its
     * checkpoints; the exact influence function */
    CU_ASSERT_EQUAL_FATAL(quick->n_rows, 16);
    CU_ASSERT_EQUAL(quick->gd_ckpts, 4);
    CU_ASSERT_EQUAL(quick->gd_steps, 200);
    CU_ASSERT(quick->gd_lr > 0 && isfinite(quick->gd_loss));
    for (size_t i = 0; i < quick->n_rows; i++) {
        const sdm_eval_row *w = &quick->rows[i];
        int path = strcmp(w->name, "tracin-cp") == 0 || strcmp(w->name, "trak curv ckpts") == 0;
        CU_ASSERT_EQUAL(w->checkpoints, path ? 4u : 1u);
        CU_ASSERT_EQUAL(path, i >= 12 && i < 15);
    }
    CU_ASSERT_STRING_EQUAL(quick->rows[15].method, "influence");
    for (size_t i = 0; i < quick->n_rows; i++) {
        const sdm_eval_row *w = &quick->rows[i];
        CU_ASSERT(isfinite(w->lds_shard) && w->lds_shard >= -1 && w->lds_shard <= 1);
        CU_ASSERT(isfinite(w->lds_example) && w->lds_example >= -1 && w->lds_example <= 1);
        CU_ASSERT(isfinite(w->auc) && w->auc >= 0 && w->auc <= 1);
        CU_ASSERT(w->corrupt_rank >= 1 && w->corrupt_rank <= (int)quick->contributors);
        CU_ASSERT_EQUAL(strcmp(w->method, "trak") == 0, isfinite(w->lambda));
        CU_ASSERT_EQUAL(w->k, strcmp(w->projection, "rademacher") ? 650u : 64u);
    }
    /* the copier's shard holds the same data as shard 0: the same scores (up to the f32
     * summation order of the engine's tiles) */
    const double *S = quick->scores[0];
    uint64_t n = quick->n_train, per = n / quick->contributors;
    double scale = 0, worst = 0;
    for (uint64_t t = 0; t < quick->n_test * n; t++)
        scale = fmax(scale, fabs(S[t]));
    for (uint64_t q = 0; q < quick->n_test; q++)
        for (uint64_t j = 0; j < per; j++)
            worst =
                fmax(worst, fabs(S[q * n + j] - S[q * n + (quick->contributors - 1) * per + j]));
    CU_ASSERT(scale > 0);
    CU_ASSERT(worst <= 1e-5 * scale);
}

/* The claim the evaluation exists to check: trak's scores predict retraining, and scores
 * with no relation to the examples do not. */
static void test_quick_quality(void)
{
    size_t idx = 0;
    const sdm_eval_row *trak = find_row(quick, "trak curv", "none", &idx);
    const sdm_eval_row *dot = find_row(quick, "dot", "none", NULL);
    const sdm_eval_row *inf = find_row(quick, "influence", "exact", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trak);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inf);
    CU_ASSERT(trak->lds_shard > 0.5);
    CU_ASSERT(trak->lds_example > 0.4);
    CU_ASSERT(trak->auc > 0.8);
    CU_ASSERT_EQUAL(trak->corrupt_rank, 1);
    /* the exact influence function is the ceiling, and trak's curvature beats plain dot */
    CU_ASSERT(inf->lds_shard > 0.8 && inf->lds_example > 0.8);
    CU_ASSERT(trak->lds_shard > dot->lds_shard);
    CU_ASSERT(trak->lds_example > dot->lds_example);

    /* recomputed from the kept scores and ground truth: the same LDS */
    uint64_t m = quick->n_test, n = quick->n_train;
    uint32_t R = quick->subsets;
    const double *S = quick->scores[idx];
    double lds = sdm_eval_lds(S, m, n, quick->shard_masks, R, quick->shard_margins, NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(lds, trak->lds_shard, 1e-12);

    /* each query's scores shuffled across the examples: no better than chance */
    double *shuf = malloc(m * n * sizeof(double));
    CU_ASSERT_PTR_NOT_NULL_FATAL(shuf);
    memcpy(shuf, S, m * n * sizeof(double));
    test_rng rng = {99};
    for (uint64_t q = 0; q < m; q++)
        for (uint64_t i = n - 1; i > 0; i--) {
            uint64_t j = test_rng_u64(&rng) % (i + 1);
            double t = shuf[q * n + i];
            shuf[q * n + i] = shuf[q * n + j];
            shuf[q * n + j] = t;
        }
    double ls = sdm_eval_lds(shuf, m, n, quick->shard_masks, R, quick->shard_margins, NULL, NULL);
    double le =
        sdm_eval_lds(shuf, m, n, quick->example_masks, R, quick->example_margins, NULL, NULL);
    CU_ASSERT(fabs(ls) < 0.15);
    CU_ASSERT(fabs(le) < 0.15);
    /* and so is the AUC of shuffled mean scores */
    double *mean = calloc(n, sizeof(double));
    for (uint64_t q = 0; q < m; q++)
        for (uint64_t i = 0; i < n; i++)
            mean[i] += shuf[q * n + i];
    double auc = sdm_eval_auc_low(mean, quick->corrupted, n);
    CU_ASSERT(fabs(auc - 0.5) < 0.2);
    free(mean);
    free(shuf);
}

static void test_quick_reproducible(void)
{
    sdm_eval_opts o;
    CU_ASSERT_EQUAL_FATAL(sdm_eval_opts_init(&o, "logreg"), SDM_OK);
    sdm_eval_opts_quick(&o);
    sdm_eval_result *again = NULL;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(sdm_eval_run(&o, digits, test_eng, &again, err, sizeof(err)), SDM_OK);
    CU_ASSERT_PTR_NULL(again->scores); /* not asked to keep them */
    CU_ASSERT_EQUAL_FATAL(again->n_rows, quick->n_rows);
    for (size_t i = 0; i < again->n_rows; i++) {
        CU_ASSERT_DOUBLE_EQUAL(again->rows[i].lds_shard, quick->rows[i].lds_shard, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(again->rows[i].lds_example, quick->rows[i].lds_example, 1e-6);
    }
    sdm_eval_result_free(&again);
    CU_ASSERT_PTR_NULL(again);
}

static void test_bad_options(void)
{
    /* each case breaks one option; the message names it */
    const char *fields[] = {"contributors", "corrupt_frac", "subsets", "n_test", "l2",
                            "ckpts",        "gd_steps",     "gd_lr",   "gd_lr"};
    for (size_t c = 0; c < sizeof(fields) / sizeof(fields[0]); c++) {
        sdm_eval_opts o;
        CU_ASSERT_EQUAL_FATAL(sdm_eval_opts_init(&o, "logreg"), SDM_OK);
        sdm_eval_opts_quick(&o);
        switch (c) {
        case 0:
            o.contributors = 3;
            break;
        case 1:
            o.corrupt_frac = 0;
            break;
        case 2:
            o.subsets = 2;
            break;
        case 3:
            o.n_test = digits->n;
            break;
        case 4:
            o.l2 = 0;
            break;
        case 5:
            o.ckpts = 17;
            break;
        case 6:
            o.gd_steps = 3;
            break;
        case 7:
            o.gd_lr = -1;
            break;
        case 8: /* far past the smoothness bound: the path diverges, found after training */
            o.gd_lr = 1e4;
            break;
        }
        sdm_eval_result *r = (sdm_eval_result *)1;
        char err[256] = "";
        CU_ASSERT_EQUAL(sdm_eval_run(&o, digits, test_eng, &r, err, sizeof(err)),
                        SDM_ERR_BAD_INPUT);
        CU_ASSERT_PTR_NULL(r);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, fields[c]));
    }
    sdm_eval_opts o;
    CU_ASSERT_EQUAL(sdm_eval_opts_init(&o, "svm"), SDM_ERR_BAD_INPUT);
}

static void test_json_output(void)
{
    char path[] = "/tmp/sdm_eval_json_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    sdm_eval_result *one[1] = {quick};
    sdm_eval_print_json_many(one, 1, f);
    fclose(f);
    json *j = json_load(path);
    unlink(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const json *runs = json_get(j, "runs");
    CU_ASSERT_PTR_NOT_NULL_FATAL(runs);
    CU_ASSERT_EQUAL_FATAL(runs->len, 1);
    const json *run = json_at(runs, 0);
    CU_ASSERT_STRING_EQUAL(json_get(run, "model")->string, "logreg");
    CU_ASSERT_EQUAL(json_get(run, "n_train")->number, 500);
    const json *rows = json_get(run, "rows");
    CU_ASSERT_EQUAL_FATAL(rows->len, quick->n_rows);
    for (size_t i = 0; i < rows->len; i++) {
        const json *w = json_at(rows, i);
        CU_ASSERT_STRING_EQUAL(json_get(w, "name")->string, quick->rows[i].name);
        CU_ASSERT_DOUBLE_EQUAL(json_get(w, "lds_shard")->number, quick->rows[i].lds_shard, 1e-8);
        CU_ASSERT_DOUBLE_EQUAL(json_get(w, "auc")->number, quick->rows[i].auc, 1e-8);
        /* lambda is a number for trak and null otherwise */
        CU_ASSERT_EQUAL(json_get(w, "lambda")->type,
                        strcmp(quick->rows[i].method, "trak") ? JSON_NULL : JSON_NUMBER);
    }
    json_free(j);
}

/* ---- PNG ------------------------------------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_png_encode(void)
{
    /* 3 x 2 pixels: every chunk's CRC checks and IDAT inflates to the filtered scanlines */
    uint8_t rgb[2 * 3 * 3];
    for (int i = 0; i < 18; i++)
        rgb[i] = (uint8_t)(i * 13);
    uint8_t *png;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(sdm_png_encode(rgb, 3, 2, &png, &len), SDM_OK);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    CU_ASSERT_FATAL(len > 8 + 25 + 12 + 12);
    CU_ASSERT_EQUAL(memcmp(png, sig, 8), 0);
    size_t pos = 8;
    int chunks = 0, saw_end = 0;
    uint8_t raw[2 * (1 + 9)];
    uLongf raw_len = 0;
    while (pos + 12 <= len) {
        uint32_t n = rd32(png + pos);
        CU_ASSERT_FATAL(pos + 12 + n <= len);
        const uint8_t *type = png + pos + 4, *data = png + pos + 8;
        uLong crc = crc32(crc32(0L, Z_NULL, 0), type, 4 + n);
        CU_ASSERT_EQUAL(rd32(data + n), (uint32_t)crc);
        if (chunks == 0) {
            CU_ASSERT_EQUAL(memcmp(type, "IHDR", 4), 0);
            CU_ASSERT_EQUAL(n, 13);
            CU_ASSERT_EQUAL(rd32(data), 3);
            CU_ASSERT_EQUAL(rd32(data + 4), 2);
            CU_ASSERT_EQUAL(data[8], 8); /* bit depth */
            CU_ASSERT_EQUAL(data[9], 2); /* RGB */
        }
        if (!memcmp(type, "IDAT", 4)) {
            raw_len = sizeof(raw);
            CU_ASSERT_EQUAL(uncompress(raw, &raw_len, data, n), Z_OK);
        }
        saw_end = !memcmp(type, "IEND", 4);
        chunks++;
        pos += 12 + n;
    }
    CU_ASSERT_EQUAL(pos, len);
    CU_ASSERT(saw_end);
    CU_ASSERT_EQUAL_FATAL(raw_len, sizeof(raw));
    for (int y = 0; y < 2; y++) {
        CU_ASSERT_EQUAL(raw[y * 10], 0); /* filter type none */
        CU_ASSERT_EQUAL(memcmp(raw + y * 10 + 1, rgb + y * 9, 9), 0);
    }
    free(png);
    CU_ASSERT_EQUAL(sdm_png_encode(rgb, 0, 2, &png, &len), SDM_ERR_BAD_INPUT);
}

static void test_canvas_text(void)
{
    sdm_canvas *c = sdm_canvas_new(40, 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    /* "1" is drawn in the glyph's pixels only: its stem is column 2, its foot row 6 */
    CU_ASSERT_EQUAL(sdm_canvas_text(c, 0, 0, 1, "1", 0x000000), 5);
    CU_ASSERT_EQUAL(c->rgb[(3 * 40 + 2) * 3], 0x00);
    CU_ASSERT_EQUAL(c->rgb[(3 * 40 + 0) * 3], 0xff);
    CU_ASSERT_EQUAL(c->rgb[(6 * 40 + 1) * 3], 0x00);
    CU_ASSERT_EQUAL(sdm_canvas_text_width("abc", 2), (6 * 3 - 1) * 2);
    /* drawing off the canvas clips instead of writing outside it */
    sdm_canvas_line(c, -50, -50, 100, 100, 0x123456);
    sdm_canvas_fill(c, 35, 5, 100, 100, 0x123456);
    CU_ASSERT_EQUAL(c->rgb[(9 * 40 + 39) * 3], 0x12);
    sdm_canvas_destroy(&c);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NULL(sdm_canvas_new(0, 5));
}

static void test_eval_png_file(void)
{
    char path[] = "/tmp/sdm_eval_png_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    char err[256];
    CU_ASSERT_EQUAL_FATAL(sdm_eval_write_png(quick, path, err, sizeof(err)), SDM_OK);
    FILE *f = fopen(path, "rb");
    uint8_t head[24];
    CU_ASSERT_FATAL(f && fread(head, 1, 24, f) == 24);
    fclose(f);
    unlink(path);
    CU_ASSERT_EQUAL(memcmp(head + 1, "PNG", 3), 0);
    CU_ASSERT(rd32(head + 16) >= 800 && rd32(head + 20) >= 400); /* IHDR width, height */
    /* an unwritable path fails and says which */
    CU_ASSERT_NOT_EQUAL(sdm_eval_write_png(quick, "/nonexistent/dir/x.png", err, sizeof(err)),
                        SDM_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/dir/x.png"));
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("eval_stats", NULL, NULL);
    if (!s || !CU_add_test(s, "ranks with ties", test_ranks_ties) ||
        !CU_add_test(s, "spearman on known inputs", test_spearman_known) ||
        !CU_add_test(s, "auc on known inputs", test_auc_known) ||
        !CU_add_test(s, "lds on synthetic margins", test_lds_synthetic))
        return -1;
    CU_pSuite p = CU_add_suite("eval_pipeline", pipeline_setup, pipeline_teardown);
    if (!p || !CU_add_test(p, "contributors' deal", test_deal) ||
        !CU_add_test(p, "quick run: shape and ranges", test_quick_run_shape) ||
        !CU_add_test(p, "quick run: trak predicts, shuffled does not", test_quick_quality) ||
        !CU_add_test(p, "quick run: reproducible", test_quick_reproducible) ||
        !CU_add_test(p, "bad options name the field", test_bad_options) ||
        !CU_add_test(p, "json output", test_json_output) ||
        !CU_add_test(p, "png plot file", test_eval_png_file))
        return -1;
    CU_pSuite g = CU_add_suite("png", NULL, NULL);
    if (!g || !CU_add_test(g, "encode: chunks, crc, inflate", test_png_encode) ||
        !CU_add_test(g, "canvas text and clipping", test_canvas_text))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
