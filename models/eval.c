/* eval.c - attribution quality against retraining: LDS per shard and per example, and AUC. */
#include "eval.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digits.h"
#include "jsonout.h"
#include "logreg.h"
#include "mlp.h"
#include "png.h"
#include "rng.h"
#include "train.h"

/* Philox tags of the evaluation's own draws (models/rng.h keeps the models' tags). */
#define TAG_CORRUPT 0x43525054u    /* "CRPT": which labels are shifted, and by how much */
#define TAG_SHARD_HALF 0x53484C46u /* "SHLF": random halves of the shards */
#define TAG_EX_HALF 0x45484C46u    /* "EHLF": random halves of the examples */

#define CHECKPOINT "final"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(const sdm_eval_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const sdm_eval_opts *o, const char *fmt, ...)
{
    if (!o->progress)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    o->progress(o->progress_ctx, line);
}

static sdm_status fail(char *err, size_t err_len, sdm_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static sdm_status fail(char *err, size_t err_len, sdm_status st, const char *fmt, ...)
{
    if (err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ---- options ---------------------------------------------------------------------------- */

sdm_status sdm_eval_opts_init(sdm_eval_opts *o, const char *model)
{
    memset(o, 0, sizeof(*o));
    if (!model || (strcmp(model, "logreg") != 0 && strcmp(model, "mlp") != 0))
        return SDM_ERR_BAD_INPUT;
    int mlp = strcmp(model, "mlp") == 0;
    o->model = mlp ? "mlp" : "logreg";
    o->l2 = mlp ? 1e-2 : 1e-3;
    o->hidden = mlp ? 32 : 0;
    o->tol = mlp ? 1e-5 : 1e-6;
    o->max_steps = 10000;
    o->n_test = 397;
    o->n_train = 0;
    o->contributors = 10;
    o->corrupt = 3;
    o->corrupt_frac = 1.0;
    o->subsets = 100;
    o->proj_dim = 256;
    o->curv_draws = 4;
    o->seed = 1;
    o->ckpts = 4;
    o->gd_steps = 2000;
    o->gd_lr = 0;
    return SDM_OK;
}

void sdm_eval_opts_quick(sdm_eval_opts *o)
{
    o->n_train = 500;
    o->n_test = 200;
    o->subsets = 20;
    o->proj_dim = 64;
    o->gd_steps = 200;
    if (o->model && strcmp(o->model, "mlp") == 0) {
        o->hidden = 16;
        o->tol = 1e-4;
    }
}

static sdm_status check_opts(const sdm_eval_opts *o, const sdm_dataset *all, char *err,
                             size_t err_len)
{
#define BAD(...) fail(err, err_len, SDM_ERR_BAD_INPUT, __VA_ARGS__)
    if (!o->model || (strcmp(o->model, "logreg") != 0 && strcmp(o->model, "mlp") != 0))
        return BAD("model: must be \"logreg\" or \"mlp\"");
    int mlp = strcmp(o->model, "mlp") == 0;
    if (!isfinite(o->l2) || o->l2 < 0 || (!mlp && o->l2 == 0))
        return BAD("l2: must be finite and %s 0 (got %g)", mlp ? ">=" : ">", o->l2);
    if (mlp && o->hidden == 0)
        return BAD("hidden: an mlp needs at least one hidden unit");
    if (!(o->tol > 0) || !isfinite(o->tol))
        return BAD("tol: must be a finite number above 0 (got %g)", o->tol);
    if (o->contributors < 4)
        return BAD("contributors: at least 4 are needed (an honest one, the corrupted one, "
                   "the copied one and the copier), got %u",
                   o->contributors);
    if (o->corrupt == 0 || o->corrupt >= o->contributors - 1)
        return BAD("corrupt: must be between 1 and contributors - 2 = %u (0 is copied, the "
                   "last is the copier), got %u",
                   o->contributors - 2, o->corrupt);
    if (!(o->corrupt_frac > 0 && o->corrupt_frac <= 1))
        return BAD("corrupt_frac: must be in (0, 1], got %g", o->corrupt_frac);
    if (o->subsets < 3)
        return BAD("subsets: at least 3 are needed for a rank correlation, got %u", o->subsets);
    if (o->curv_draws == 0 || o->curv_draws > 64)
        return BAD("curv_draws: must be 1 .. 64, got %u", o->curv_draws);
    if (o->n_test == 0 || o->n_test >= all->n)
        return BAD("n_test: must be 1 .. %llu, got %llu", (unsigned long long)all->n - 1,
                   (unsigned long long)o->n_test);
    uint64_t avail = all->n - o->n_test;
    if (o->n_train > avail)
        return BAD("n_train: only %llu examples are left after the test part, got %llu",
                   (unsigned long long)avail, (unsigned long long)o->n_train);
    uint64_t n_train = o->n_train ? o->n_train : avail;
    if (n_train / o->contributors < 2)
        return BAD("n_train: %llu examples give %u contributors fewer than 2 each",
                   (unsigned long long)n_train, o->contributors);
    if (all->classes < 2)
        return BAD("data: needs at least 2 classes");
    if (o->ckpts > 16)
        return BAD("ckpts: at most 16 checkpoints, got %u", o->ckpts);
    if (o->ckpts && (o->gd_steps < o->ckpts || o->gd_steps > 1000000))
        return BAD("gd_steps: must be ckpts (%u) .. 1000000, got %llu", o->ckpts,
                   (unsigned long long)o->gd_steps);
    if (!isfinite(o->gd_lr) || o->gd_lr < 0)
        return BAD("gd_lr: must be finite and >= 0 (0: automatic), got %g", o->gd_lr);
    return SDM_OK;
#undef BAD
}

/* ---- statistics ----------------------------------------------------------------------- */

typedef struct keyed {
    double v;
    uint64_t i;
} keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->v < y->v)
        return -1;
    if (x->v > y->v)
        return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

void sdm_eval_ranks(const double *x, uint64_t n, double *ranks)
{
    keyed *k = malloc((n ? n : 1) * sizeof(keyed));
    if (!k) {
        for (uint64_t i = 0; i < n; i++)
            ranks[i] = NAN;
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        k[i] = (keyed){x[i], i};
    qsort(k, n, sizeof(keyed), keyed_cmp);
    for (uint64_t a = 0; a < n;) {
        uint64_t b = a + 1;
        while (b < n && k[b].v == k[a].v)
            b++;
        /* positions a .. b-1 (ranks a+1 .. b) share their average */
        double avg = 0.5 * (double)(a + 1 + b);
        for (uint64_t t = a; t < b; t++)
            ranks[k[t].i] = avg;
        a = b;
    }
    free(k);
}

static double pearson(const double *x, const double *y, uint64_t n)
{
    double mx = 0, my = 0;
    for (uint64_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (uint64_t i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    if (sxx <= 0 || syy <= 0)
        return 0;
    return sxy / sqrt(sxx * syy);
}

double sdm_eval_spearman(const double *x, const double *y, uint64_t n)
{
    if (n < 2)
        return 0;
    double *rx = malloc(n * sizeof(double)), *ry = malloc(n * sizeof(double));
    double rho = NAN;
    if (rx && ry) {
        sdm_eval_ranks(x, n, rx);
        sdm_eval_ranks(y, n, ry);
        rho = pearson(rx, ry, n);
    }
    free(rx);
    free(ry);
    return rho;
}

double sdm_eval_auc_low(const double *score, const uint8_t *positive, uint64_t n)
{
    uint64_t np = 0;
    for (uint64_t i = 0; i < n; i++)
        np += positive[i] != 0;
    uint64_t nn = n - np;
    if (np == 0 || nn == 0)
        return NAN;
    double *r = malloc(n * sizeof(double));
    if (!r)
        return NAN;
    sdm_eval_ranks(score, n, r);
    /* Mann-Whitney: U counts the (positive, negative) pairs with the positive above */
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        if (positive[i])
            sum += r[i];
    free(r);
    double u_above = sum - 0.5 * (double)np * (double)(np + 1);
    return 1.0 - u_above / ((double)np * (double)nn);
}

double sdm_eval_lds(const double *S, uint64_t m, uint64_t n, const uint8_t *masks, uint32_t R,
                    const double *margins, double *se, double *pred_out)
{
    double *M = malloc((size_t)R * n * sizeof(double));
    double *pred = pred_out ? pred_out : malloc((size_t)R * m * sizeof(double));
    double *x = malloc(R * sizeof(double)), *y = malloc(R * sizeof(double));
    double lds = NAN;
    if (M && pred && x && y) {
        for (uint64_t t = 0; t < (uint64_t)R * n; t++)
            M[t] = masks[t] ? 1.0 : 0.0;
        /* pred (R x m) = M (R x n) S^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)m, (int)n, 1.0, M, (int)n,
                    S, (int)n, 0.0, pred, (int)m);
        double sum = 0, sum2 = 0;
        for (uint64_t q = 0; q < m; q++) {
            for (uint32_t r = 0; r < R; r++) {
                x[r] = pred[(size_t)r * m + q];
                y[r] = margins[(size_t)r * m + q];
            }
            double rho = sdm_eval_spearman(x, y, R);
            sum += rho;
            sum2 += rho * rho;
        }
        lds = sum / (double)m;
        if (se) {
            double var = m > 1 ? (sum2 - (double)m * lds * lds) / (double)(m - 1) : 0;
            *se = sqrt(var > 0 ? var : 0) / sqrt((double)m);
        }
    }
    free(M);
    if (!pred_out)
        free(pred);
    free(x);
    free(y);
    return lds;
}

/* ---- the setup: shards, corruption, the copy -------------------------------------------- */

/* Marks k of the n positions (a seeded partial Fisher-Yates: draw j swaps position j with
 * j + u64 % (n - j)). */
static int choose(uint64_t seed, uint32_t stream, uint32_t tag, uint64_t n, uint64_t k,
                  uint8_t *mask)
{
    uint64_t *perm = malloc(n * sizeof(uint64_t));
    if (!perm)
        return -1;
    for (uint64_t i = 0; i < n; i++)
        perm[i] = i;
    memset(mask, 0, n);
    for (uint64_t j = 0; j < k; j++) {
        uint64_t t = j + sdm_rng_u64(seed, j, stream, tag) % (n - j);
        uint64_t tmp = perm[j];
        perm[j] = perm[t];
        perm[t] = tmp;
        mask[perm[j]] = 1;
    }
    free(perm);
    return 0;
}

typedef struct setup {
    sdm_dataset *train, *test;
    uint32_t C;         /* contributors = shards */
    uint32_t corrupt;   /* the corrupted contributor */
    uint64_t per;       /* examples per shard */
    uint32_t *shard_of; /* n_train */
    uint8_t *corrupted; /* n_train: label changed */
    uint64_t n_corrupted;
} setup;

static void setup_free(setup *s)
{
    sdm_dataset_destroy(&s->train);
    sdm_dataset_destroy(&s->test);
    free(s->shard_of);
    free(s->corrupted);
}

sdm_status sdm_eval_deal_new(const sdm_dataset *all, const sdm_dataset *pool, uint64_t n_train,
                             uint32_t C, uint32_t corrupt, double corrupt_frac, uint64_t seed,
                             sdm_eval_deal *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (C < 2 || corrupt >= C || n_train < C || n_train > pool->n || pool->classes < 2)
        return fail(err, err_len, SDM_ERR_BAD_INPUT,
                    "eval: cannot deal %llu of %llu examples to %u contributors (corrupt %u)",
                    (unsigned long long)n_train, (unsigned long long)pool->n, C, corrupt);
    sdm_status st = SDM_OK;
    uint64_t per = n_train / C;
    uint64_t n = per * C, d = pool->d;
    double *x = malloc(n * d * sizeof(double));
    int32_t *y = malloc(n * sizeof(int32_t));
    uint64_t *ids = malloc(n * sizeof(uint64_t));
    out->per = per;
    out->shard_of = malloc(n * sizeof(uint32_t));
    out->corrupted = calloc(n, 1);
    uint8_t *flip = malloc(per);
    if (!x || !y || !ids || !out->shard_of || !out->corrupted || !flip) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory building the shards");
        goto done;
    }
    uint64_t max_id = 0;
    for (uint64_t i = 0; i < all->n; i++)
        max_id = all->ids[i] > max_id ? all->ids[i] : max_id;
    uint32_t copier = C - 1;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)(i / per);
        /* the copier's positions take shard 0's examples */
        uint64_t src = c == copier ? i - (uint64_t)copier * per : i;
        memcpy(x + i * d, pool->x + src * d, d * sizeof(double));
        y[i] = pool->y[src];
        ids[i] = c == copier ? max_id + 1 + pool->ids[src] : pool->ids[src];
        out->shard_of[i] = c;
    }
    uint64_t k = (uint64_t)llround(corrupt_frac * (double)per);
    if (k == 0)
        k = 1;
    if (k > per)
        k = per;
    if (choose(seed, 0, TAG_CORRUPT, per, k, flip) != 0) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    uint32_t classes = pool->classes;
    for (uint64_t j = 0; j < per; j++) {
        if (!flip[j])
            continue;
        uint64_t i = (uint64_t)corrupt * per + j;
        /* a wrong class, uniformly: shift by 1 .. classes-1 */
        uint64_t shift = 1 + sdm_rng_u64(seed, ids[i], 1, TAG_CORRUPT) % (classes - 1);
        y[i] = (int32_t)(((uint64_t)y[i] + shift) % classes);
        out->corrupted[i] = 1;
        out->n_corrupted++;
    }
    st = sdm_dataset_new(n, (uint32_t)d, classes, x, y, ids, &out->train, err, err_len);
done:
    free(x);
    free(y);
    free(ids);
    free(flip);
    if (st != SDM_OK)
        sdm_eval_deal_free(out);
    return st;
}

void sdm_eval_deal_free(sdm_eval_deal *d)
{
    sdm_dataset_destroy(&d->train);
    free(d->shard_of);
    free(d->corrupted);
    memset(d, 0, sizeof(*d));
}

/* Splits off the test part and deals the rest (sdm_eval_deal_new). */
static sdm_status build_setup(const sdm_eval_opts *o, const sdm_dataset *all, setup *s, char *err,
                              size_t err_len)
{
    sdm_dataset *pool = NULL;
    sdm_status st = sdm_dataset_split(all, o->n_test, o->seed, &pool, &s->test, err, err_len);
    if (st != SDM_OK)
        return st;
    sdm_eval_deal deal;
    st = sdm_eval_deal_new(all, pool, o->n_train ? o->n_train : pool->n, o->contributors,
                           o->corrupt, o->corrupt_frac, o->seed, &deal, err, err_len);
    sdm_dataset_destroy(&pool);
    if (st != SDM_OK)
        return st;
    s->C = o->contributors;
    s->corrupt = o->corrupt;
    s->train = deal.train;
    s->per = deal.per;
    s->shard_of = deal.shard_of;
    s->corrupted = deal.corrupted;
    s->n_corrupted = deal.n_corrupted;
    return SDM_OK;
}

/* ---- models ----------------------------------------------------------------------------- */

static sdm_model_t *new_model(const sdm_eval_opts *o, const sdm_dataset *ds, char *err,
                              size_t err_len)
{
    sdm_status st;
    sdm_model_t *m;
    if (strcmp(o->model, "mlp") == 0)
        m = sdm_mlp_new(ds->d, o->hidden, ds->classes, o->l2, o->seed, &st, err, err_len);
    else
        m = sdm_logreg_new(ds->d, ds->classes, o->l2, &st, err, err_len);
    if (m)
        sdm_model_init(m, o->seed);
    return m;
}

typedef struct retrain_stats {
    uint32_t count, converged;
    uint64_t steps;
    double seconds;
} retrain_stats;

/* Retrains a copy of proto (from its standard start) on each subset of train given by masks
 * (R x n) and writes the test margins (R x m). In parallel, one model per thread. */
static sdm_status retrain(const sdm_eval_opts *o, const sdm_model_t *proto, const setup *s,
                          const uint8_t *masks, uint32_t R, double *margins, retrain_stats *rs,
                          const char *what, char *err, size_t err_len)
{
    uint64_t n = s->train->n, m = s->test->n;
    sdm_status *sts = calloc(R, sizeof(sdm_status));
    char(*msgs)[160] = calloc(R, sizeof(*msgs));
    if (!sts || !msgs) {
        free(sts);
        free(msgs);
        return fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
    }
    sdm_train_opts to = {.method = SDM_TRAIN_LBFGS, .tol = o->tol, .max_steps = o->max_steps};
    double t0 = now();
    uint32_t done = 0, converged = 0;
    uint64_t steps = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : converged, steps)
    for (uint32_t r = 0; r < R; r++) {
        const uint8_t *mask = masks + (size_t)r * n;
        uint64_t *idx = malloc(n * sizeof(uint64_t)), cnt = 0;
        sdm_dataset *sub = NULL;
        sdm_model_t *mod = sdm_model_clone(proto);
        sdm_train_result *tr = NULL;
        sdm_status st = SDM_ERR_NOMEM;
        if (idx && mod) {
            for (uint64_t i = 0; i < n; i++)
                if (mask[i])
                    idx[cnt++] = i;
            st = sdm_dataset_subset(s->train, idx, cnt, &sub, msgs[r], sizeof(msgs[r]));
        }
        if (st == SDM_OK) {
            sdm_model_init(mod, o->seed);
            st = sdm_model_train(mod, sub, &to, &tr);
            if (st == SDM_OK) {
                converged += (uint32_t)tr->converged;
                steps += tr->steps;
                st = sdm_model_margins(mod, s->test, margins + (size_t)r * m);
            }
            if (st != SDM_OK)
                snprintf(msgs[r], sizeof(msgs[r]), "%s", sdm_model_last_error(mod));
        }
        sts[r] = st;
        sdm_train_result_free(&tr);
        sdm_dataset_destroy(&sub);
        sdm_model_destroy(&mod);
        free(idx);
#pragma omp critical(sdm_eval_progress)
        {
            done++;
            if (done % 10 == 0 || done == R)
                say(o, "retrain %s halves: %u/%u", what, done, R);
        }
    }
    sdm_status st = SDM_OK;
    for (uint32_t r = 0; r < R && st == SDM_OK; r++)
        if (sts[r] != SDM_OK)
            st = fail(err, err_len, sts[r], "eval: retraining on %s half %u failed: %s", what, r,
                      msgs[r][0] ? msgs[r] : sdm_status_str(sts[r]));
    rs->count += R;
    rs->converged += converged;
    rs->steps += steps;
    rs->seconds += now() - t0;
    free(sts);
    free(msgs);
    return st;
}

/* ---- scoring ---------------------------------------------------------------------------- */

/* Per-example scores S (m x n) from the engine: topk = n lists every example per query. */
static sdm_status engine_scores_at(sdm_engine_t *eng, sdm_store_t *store, sdm_method method,
                                   const sdm_query *q, size_t nq, uint64_t m,
                                   uint64_t store_size, uint64_t n, double *S,
                                   double *lambda_used, char *err, size_t err_len)
{
    sdm_attr_request req = {method, SDM_AGG_SUM, (uint32_t)n, nq, q, store_size};
    sdm_attr_result *res = NULL;
    sdm_status st = sdm_attribute(eng, store, &req, &res);
    if (st != SDM_OK)
        return fail(err, err_len, st, "eval: attribute (%s): %s", sdm_method_name(method),
                    sdm_engine_last_error(eng));
    if (res->n_examples != n || res->topk != n || res->m != m) {
        sdm_attr_result_free(&res);
        return fail(err, err_len, SDM_ERR_INTERNAL,
                    "eval: attribute (%s) scored %llu examples, expected %llu",
                    sdm_method_name(method), (unsigned long long)res->n_examples,
                    (unsigned long long)n);
    }
    for (uint64_t t = 0; t < m * n; t++)
        S[t] = NAN;
    for (uint64_t qi = 0; qi < m; qi++)
        for (uint64_t t = 0; t < n; t++) {
            const sdm_hit *h = &res->top[qi * n + t];
            if (h->example_id < n)
                S[qi * n + h->example_id] = h->score;
        }
    *lambda_used = NAN;
    if (res->n_lambdas) {
        double sum = 0;
        for (size_t c = 0; c < res->n_lambdas; c++)
            sum += res->lambdas[c];
        *lambda_used = sum / (double)res->n_lambdas;
    }
    sdm_attr_result_free(&res);
    for (uint64_t t = 0; t < m * n; t++)
        if (isnan(S[t]))
            return fail(err, err_len, SDM_ERR_INTERNAL,
                        "eval: attribute (%s) left example %llu of query %llu unscored",
                        sdm_method_name(method), (unsigned long long)(t % n),
                        (unsigned long long)(t / n));
    return SDM_OK;
}

/* The same at the one checkpoint of the main stores. */
static sdm_status engine_scores(sdm_engine_t *eng, sdm_store_t *store, sdm_method method,
                                const float *Q, uint64_t m, uint64_t cols, int is_features,
                                double lambda, uint64_t store_size, uint64_t n, double *S,
                                double *lambda_used, char *err, size_t err_len)
{
    sdm_query q = {CHECKPOINT, {SDM_F32, m, cols, Q}, is_features, lambda};
    return engine_scores_at(eng, store, method, &q, 1, m, store_size, n, S, lambda_used, err,
                            err_len);
}

/* The curvature for the influence ceiling: logreg's exact Hessian; for the mlp the exact
 * Gauss-Newton matrix (the Fisher in expectation over every label, the Hessian with its
 * second-derivative-of-the-network term dropped, which keeps it positive definite):
 *   H = (1/n) Σ_i Σ_c p_ic ∇ℓ(x_i, c) ∇ℓ(x_i, c)ᵀ + λ I. */
static sdm_status ceiling_curvature(sdm_model_t *model, const sdm_dataset *train, double *H,
                                    char *err, size_t err_len)
{
    uint64_t P = sdm_model_nparams(model), n = train->n;
    uint32_t C = train->classes;
    if (strcmp(sdm_model_kind(model), "logreg") == 0) {
        sdm_status st = sdm_logreg_hessian(model, train, H);
        return st == SDM_OK
                   ? st
                   : fail(err, err_len, st, "eval: hessian: %s", sdm_model_last_error(model));
    }
    double *probs = malloc(n * C * sizeof(double));
    double *G = malloc(n * P * sizeof(double));
    sdm_dataset *relabelled = NULL;
    sdm_status st = probs && G ? SDM_OK : SDM_ERR_NOMEM;
    if (st == SDM_OK)
        st = sdm_model_predict(model, train, NULL, probs);
    memset(H, 0, P * P * sizeof(double));
    for (uint32_t c = 0; c < C && st == SDM_OK; c++) {
        /* every example labelled c: rows ∇ℓ(x_i, c), weighted by sqrt(p_ic / n) */
        int32_t *y = malloc(n * sizeof(int32_t));
        if (!y) {
            st = SDM_ERR_NOMEM;
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            y[i] = (int32_t)c;
        st = sdm_dataset_new(n, train->d, C, train->x, y, train->ids, &relabelled, err, err_len);
        free(y);
        if (st == SDM_OK)
            st = sdm_model_example_grads(model, relabelled, G, NULL);
        sdm_dataset_destroy(&relabelled);
        if (st != SDM_OK)
            break;
        for (uint64_t i = 0; i < n; i++)
            cblas_dscal((int)P, sqrt(probs[i * C + c] / (double)n), G + i * P, 1);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)P, (int)n, 1.0, G, (int)P, 1.0, H,
                    (int)P);
    }
    free(probs);
    free(G);
    if (st != SDM_OK)
        return fail(err, err_len, st, "eval: gauss-newton matrix: %s", sdm_status_str(st));
    for (uint64_t a = 0; a < P; a++) {
        H[a * P + a] += sdm_model_l2(model);
        for (uint64_t b = 0; b < a; b++)
            H[a * P + b] = H[b * P + a];
    }
    return SDM_OK;
}

/* S (m x n) = Q H⁻¹ Gᵀ: the influence function with curvature H (destroyed). */
static sdm_status influence_scores(double *H, const double *Q, const double *G, uint64_t m,
                                   uint64_t n, uint64_t P, double *S, char *err, size_t err_len)
{
    double *X = malloc(P * m * sizeof(double));
    if (!X)
        return fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
    for (uint64_t q = 0; q < m; q++)
        for (uint64_t p = 0; p < P; p++)
            X[p * m + q] = Q[q * P + p];
    lapack_int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)P, (lapack_int)m, H,
                                    (lapack_int)P, X, (lapack_int)m);
    if (info != 0) {
        free(X);
        return fail(err, err_len, SDM_ERR_INTERNAL,
                    "eval: the influence curvature is not positive definite (dposv info %d)",
                    (int)info);
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)m, (int)n, (int)P, 1.0, X, (int)m, G,
                (int)P, 0.0, S, (int)n);
    free(X);
    return SDM_OK;
}

/* ---- the run ---------------------------------------------------------------------------- */

/* A copy of count doubles, or NULL when out of memory. */
static double *keep_copy(const double *x, uint64_t count)
{
    double *c = malloc(count * sizeof(double));
    if (c)
        memcpy(c, x, count * sizeof(double));
    return c;
}

typedef struct config {
    const char *name;
    sdm_method method;
    int rademacher;  /* 0: projection none */
    int sampled;     /* trak: curvature rows (1) or the empirical Fisher (0) */
    double lam_mult; /* trak: 0: SPEC default; else λ_c = lam_mult · n · l2 */
} config;

static void row_fill(sdm_eval_row *row, const config *c, uint32_t k, double lambda_used)
{
    const char *rule = "";
    static const char *sweep_rules[] = {"matched*0.01", "matched*0.1", "matched*0.3", "matched*3",
                                        "matched*10",   "matched*30",  "matched*100"};
    static const double sweep_mults[] = {0.01, 0.1, 0.3, 3, 10, 30, 100};
    if (c->method == SDM_METHOD_TRAK) {
        rule = c->lam_mult == 0 ? "default" : "matched";
        for (size_t t = 0; t < sizeof(sweep_mults) / sizeof(sweep_mults[0]); t++)
            if (c->lam_mult == sweep_mults[t])
                rule = sweep_rules[t];
    }
    snprintf(row->name, sizeof(row->name), "%s", c->name);
    row->method = sdm_method_name(c->method);
    row->projection = c->rademacher ? "rademacher" : "none";
    row->k = k;
    row->curvature = c->method != SDM_METHOD_TRAK ? "" : c->sampled ? "sampled" : "empirical";
    row->lambda_rule = rule;
    row->lambda = lambda_used;
    row->checkpoints = 1;
}

/* LDS (both kinds), AUC and the corrupted contributor's rank of one score matrix. */
static void row_measure(sdm_eval_row *row, const double *S, const setup *s,
                        const uint8_t *shard_masks, const double *shard_margins,
                        const uint8_t *ex_masks, const double *ex_margins, uint32_t R,
                        double *pred_out)
{
    uint64_t m = s->test->n, n = s->train->n;
    row->lds_shard =
        sdm_eval_lds(S, m, n, shard_masks, R, shard_margins, &row->lds_shard_se, pred_out);
    row->lds_example = sdm_eval_lds(S, m, n, ex_masks, R, ex_margins, &row->lds_example_se, NULL);
    double *mean = calloc(n, sizeof(double));
    double *contrib = calloc(s->C, sizeof(double));
    row->auc = NAN;
    row->corrupt_rank = 0;
    if (mean && contrib) {
        for (uint64_t q = 0; q < m; q++)
            for (uint64_t i = 0; i < n; i++)
                mean[i] += S[q * n + i] / (double)m;
        row->auc = sdm_eval_auc_low(mean, s->corrupted, n);
        for (uint64_t i = 0; i < n; i++)
            contrib[s->shard_of[i]] += mean[i];
        int rank = 1;
        for (uint32_t c = 0; c < s->C; c++)
            rank += contrib[c] < contrib[s->corrupt];
        row->corrupt_rank = rank;
    }
    free(mean);
    free(contrib);
}

static sdm_status fill_store(sdm_store_t *store, const setup *s, const char *ckpt, double lr,
                             const float *Gf, const float *Psif, uint64_t n_curv, uint64_t P,
                             int is_features, sdm_engine_t *eng, char *err, size_t err_len)
{
    uint64_t *ids = malloc(s->per * sizeof(uint64_t));
    if (!ids)
        return fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
    sdm_status st = SDM_OK;
    for (uint32_t c = 0; c < s->C && st == SDM_OK; c++) {
        char name[32];
        snprintf(name, sizeof(name), "c%u", c);
        for (uint64_t j = 0; j < s->per; j++)
            ids[j] = (uint64_t)c * s->per + j; /* engine ids are positions in the training set */
        sdm_batch b = {.checkpoint = ckpt,
                       .lr = lr,
                       .contributor = name,
                       .shard = name,
                       .ids = ids,
                       .is_features = is_features};
        b.rows = (sdm_matrix){SDM_F32, s->per, P, Gf + (uint64_t)c * s->per * P};
        st = sdm_store_append(store, &b, NULL, NULL);
    }
    if (st == SDM_OK) {
        sdm_batch b = {.checkpoint = ckpt, .lr = lr, .curvature = 1, .is_features = is_features};
        b.rows = (sdm_matrix){SDM_F32, n_curv, P, Psif};
        st = sdm_store_append(store, &b, NULL, NULL);
    }
    free(ids);
    if (st != SDM_OK)
        return fail(err, err_len, st, "eval: store append: %s", sdm_engine_last_error(eng));
    return SDM_OK;
}

/* ---- TracIn-CP over a gradient-descent path --------------------------------------------- */

/* 1 / (½ max_i (|x_i|² + 1) + l2): the softmax cross-entropy's Hessian in the logits is at most
 * ½ in norm, so this bounds logreg's smoothness (the +1 is the bias input); gradient descent at
 * this lr cannot diverge on logreg. */
static double gd_lr_auto(const sdm_dataset *train, double l2)
{
    double worst = 0;
    for (uint64_t i = 0; i < train->n; i++) {
        double sq = 1.0;
        for (uint32_t j = 0; j < train->d; j++)
            sq += train->x[i * train->d + j] * train->x[i * train->d + j];
        worst = sq > worst ? sq : worst;
    }
    return 1.0 / (0.5 * worst + l2);
}

typedef struct truth {
    const uint8_t *shard_masks, *ex_masks;
    const double *shard_margins, *ex_margins;
    uint32_t R;
} truth;

/* Adds the TracIn-CP rows: gradient descent from `start`, then at each kept checkpoint the
 * training, curvature and query rows into a store per projection (checkpoint "gd-<step>",
 * lr weight lr·T), and dot (TracIn-CP proper, at none and rademacher) and trak with the
 * curvature rows scored over every checkpoint at once. S is scratch (m x n). */
static sdm_status tracin_rows(const sdm_eval_opts *o, const sdm_model_t *start, const setup *s,
                              sdm_engine_t *eng, sdm_eval_result *res, const truth *t, double *S,
                              char *err, size_t err_len)
{
    uint64_t n = s->train->n, m = s->test->n, P = res->nparams, T = o->gd_steps / o->ckpts;
    uint64_t n_curv = (uint64_t)o->curv_draws * n;
    uint64_t big = n_curv > n ? n_curv : n;
    big = big > m ? big : m;
    uint32_t K = o->ckpts;
    double lr = o->gd_lr > 0 ? o->gd_lr : gd_lr_auto(s->train, o->l2);
    sdm_status st = SDM_OK;
    sdm_model_t *gd = sdm_model_clone(start);
    sdm_train_result *tr = NULL;
    sdm_store_t *stores[2] = {NULL, NULL};
    uint64_t steps[16];
    char names[16][32];
    sdm_query q[2][16];
    size_t kept = 0;
    double *D = malloc(big * P * sizeof(double));
    float *Gf = malloc(n * P * sizeof(float)), *Psif = malloc(n_curv * P * sizeof(float));
    float *Qf = malloc((size_t)K * m * P * sizeof(float));
    if (!gd || !D || !Gf || !Psif || !Qf) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory for the TracIn-CP rows");
        goto done;
    }
    for (uint32_t j = 0; j < K; j++)
        steps[j] = (uint64_t)(j + 1) * T;
    /* a tolerance no run reaches: the path is K·T steps long whatever the gradient does */
    sdm_train_opts to = {.method = SDM_TRAIN_GD, .lr = lr, .tol = 1e-300, .max_steps = K * T,
                         .save_steps = steps, .n_save = K};
    st = sdm_model_train(gd, s->train, &to, &tr);
    if (st != SDM_OK) {
        st = fail(err, err_len, st, "eval: gradient descent: %s", sdm_model_last_error(gd));
        goto done;
    }
    if (strcmp(tr->stop, "diverged") == 0) {
        st = fail(err, err_len, SDM_ERR_BAD_INPUT,
                  "gd_lr: gradient descent at lr %g diverged after %llu steps; give a smaller one",
                  lr, (unsigned long long)tr->steps);
        goto done;
    }
    res->gd_lr = lr;
    res->gd_steps = tr->steps;
    res->gd_loss = tr->loss;
    if (sdm_model_accuracy(gd, s->test, &res->gd_test_accuracy) != SDM_OK)
        res->gd_test_accuracy = NAN;
    say(o, "%s: %llu gradient-descent steps at lr %.4g: loss %.4f, test accuracy %.3f",
        o->model, (unsigned long long)tr->steps, lr, tr->loss, res->gd_test_accuracy);
    for (int p = 0; p < 2 && st == SDM_OK; p++) {
        sdm_projection proj = {p ? SDM_PROJ_RADEMACHER : SDM_PROJ_NONE, P,
                               p ? res->proj_dim : (uint32_t)P, 0, o->seed};
        if (!(stores[p] = sdm_store_new(eng, &proj)))
            st = fail(err, err_len, SDM_ERR_INTERNAL, "eval: store: %s", sdm_engine_last_error(eng));
    }
    for (uint32_t j = 0; j < K && st == SDM_OK; j++) {
        const sdm_checkpoint *ck = sdm_train_result_at(tr, steps[j]);
        if (!ck)
            continue;
        snprintf(names[kept], sizeof(names[kept]), "gd-%llu", (unsigned long long)ck->step);
        float *Qk = Qf + kept * m * P;
        st = sdm_model_set_params(gd, ck->params);
        if (st == SDM_OK && (st = sdm_model_example_grads(gd, s->train, D, NULL)) == SDM_OK)
            sdm_rows_to_f32(D, n * P, Gf);
        if (st == SDM_OK &&
            (st = sdm_model_sampled_grads(gd, s->train, o->curv_draws, o->seed, D, NULL)) == SDM_OK)
            sdm_rows_to_f32(D, n_curv * P, Psif);
        if (st == SDM_OK && (st = sdm_model_margin_grads(gd, s->test, D, NULL)) == SDM_OK) {
            for (uint64_t i = 0; i < m * P; i++)
                D[i] = -D[i];
            sdm_rows_to_f32(D, m * P, Qk);
        }
        if (st != SDM_OK) {
            st = fail(err, err_len, st, "eval: gradients at %s: %s", names[kept],
                      sdm_model_last_error(gd));
            break;
        }
        for (int p = 0; p < 2 && st == SDM_OK; p++) {
            st = fill_store(stores[p], s, names[kept], lr * (double)T, Gf, Psif, n_curv, P, p == 0,
                            eng, err, err_len);
            q[p][kept] = (sdm_query){names[kept], {SDM_F32, m, P, Qk}, p == 0, NAN};
        }
        kept++;
    }
    if (st != SDM_OK)
        goto done;
    res->gd_ckpts = (uint32_t)kept;
    static const config cfgs[] = {
        {"tracin-cp", SDM_METHOD_DOT, 0, 0, 0},
        {"tracin-cp", SDM_METHOD_DOT, 1, 0, 0},
        {"trak curv ckpts", SDM_METHOD_TRAK, 0, 1, 0},
    };
    for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]) && st == SDM_OK; c++) {
        const config *cf = &cfgs[c];
        sdm_eval_row *row = &res->rows[res->n_rows];
        double used = NAN, t0 = now();
        st = engine_scores_at(eng, stores[cf->rademacher], cf->method, q[cf->rademacher], kept, m,
                              SDM_STORE_NOW, n, S, &used, err, err_len);
        if (st != SDM_OK)
            break;
        row_fill(row, cf, cf->rademacher ? res->proj_dim : (uint32_t)P, used);
        row->checkpoints = (uint32_t)kept;
        row->seconds = now() - t0;
        row_measure(row, S, s, t->shard_masks, t->shard_margins, t->ex_masks, t->ex_margins, t->R,
                    NULL);
        say(o, "%s: %-18s %-10s LDS shard %.3f example %.3f AUC %.3f (%zu checkpoints)", o->model,
            row->name, row->projection, row->lds_shard, row->lds_example, row->auc, kept);
        if (res->scores)
            res->scores[res->n_rows] = keep_copy(S, m * n);
        res->n_rows++;
    }
done:
    for (int p = 0; p < 2; p++)
        sdm_store_destroy(&stores[p]);
    sdm_train_result_free(&tr);
    sdm_model_destroy(&gd);
    free(D);
    free(Gf);
    free(Psif);
    free(Qf);
    return st;
}

sdm_status sdm_eval_run(const sdm_eval_opts *o, const sdm_dataset *data, sdm_engine_t *eng,
                        sdm_eval_result **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err_len)
        err[0] = '\0';
    double t_start = now();
    sdm_dataset *loaded = NULL;
    sdm_engine_t *own_eng = NULL;
    setup s = {0};
    sdm_model_t *model = NULL, *start = NULL;
    sdm_train_result *tr = NULL;
    sdm_store_t *stores[2] = {NULL, NULL};
    double *G = NULL, *Psi = NULL, *Qd = NULL, *S = NULL, *H = NULL;
    float *Gf = NULL, *Psif = NULL, *Qf = NULL;
    uint8_t *shard_masks = NULL, *ex_masks = NULL, *half = NULL;
    double *shard_margins = NULL, *ex_margins = NULL;
    sdm_eval_result *res = NULL;
    sdm_status st = SDM_OK;

    if (!data) {
        st = sdm_digits_load(NULL, &loaded, err, err_len);
        if (st != SDM_OK)
            return st;
        data = loaded;
    }
    st = check_opts(o, data, err, err_len);
    if (st != SDM_OK)
        goto done;
    if (!eng) {
        sdm_engine_opts eo = {.backend = SDM_BACKEND_CPU};
        own_eng = sdm_engine_new(&eo, &st, err, err_len);
        if (!own_eng)
            goto done;
        eng = own_eng;
    }
    res = calloc(1, sizeof(*res));
    if (!res) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    st = build_setup(o, data, &s, err, err_len);
    if (st != SDM_OK)
        goto done;
    uint64_t n = s.train->n, m = s.test->n;
    uint32_t R = o->subsets;

    snprintf(res->model, sizeof(res->model), "%s", o->model);
    snprintf(res->backend, sizeof(res->backend), "%s", sdm_engine_device(eng));
    res->l2 = o->l2;
    res->hidden = strcmp(o->model, "mlp") == 0 ? o->hidden : 0;
    res->n_train = n;
    res->n_test = m;
    res->contributors = s.C;
    res->corrupt = o->corrupt;
    res->copy_of = 0;
    res->copier = s.C - 1;
    res->n_corrupted = s.n_corrupted;
    res->subsets = R;
    res->curv_draws = o->curv_draws;
    res->seed = o->seed;
    res->tol = o->tol;

    /* the model trained on everything */
    model = new_model(o, s.train, err, err_len);
    if (!model) {
        st = SDM_ERR_BAD_INPUT;
        goto done;
    }
    uint64_t P = sdm_model_nparams(model);
    res->nparams = P;
    res->proj_dim = o->proj_dim > P ? (uint32_t)P : o->proj_dim;
    say(o, "%s: training on %llu examples (P = %llu, l2 = %g)", o->model, (unsigned long long)n,
        (unsigned long long)P, o->l2);
    {
        sdm_model_t *proto = sdm_model_clone(model); /* the start, for the retrains */
        sdm_train_opts to = {.method = SDM_TRAIN_LBFGS, .tol = o->tol, .max_steps = o->max_steps};
        start = sdm_model_clone(model); /* and for the TracIn-CP path */
        if (!proto || !start) {
            st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
            goto done;
        }
        st = sdm_model_train(model, s.train, &to, &tr);
        if (st != SDM_OK) {
            st = fail(err, err_len, st, "eval: training: %s", sdm_model_last_error(model));
            sdm_model_destroy(&proto);
            goto done;
        }
        res->train_steps = tr->steps;
        res->train_converged = tr->converged;
        res->train_grad_norm = tr->grad_norm;
        res->train_seconds = tr->seconds;
        if (sdm_model_accuracy(model, s.train, &res->train_accuracy) != SDM_OK ||
            sdm_model_accuracy(model, s.test, &res->test_accuracy) != SDM_OK) {
            st = fail(err, err_len, SDM_ERR_INTERNAL, "eval: accuracy: %s",
                      sdm_model_last_error(model));
            sdm_model_destroy(&proto);
            goto done;
        }
        say(o, "%s: %llu steps, |grad| %.2g (%s), test accuracy %.3f", o->model,
            (unsigned long long)tr->steps, tr->grad_norm, tr->stop, res->test_accuracy);

        /* ground truth: retrain on random halves of the shards and of the examples */
        shard_masks = malloc((size_t)R * n);
        ex_masks = malloc((size_t)R * n);
        half = malloc(s.C);
        shard_margins = malloc((size_t)R * m * sizeof(double));
        ex_margins = malloc((size_t)R * m * sizeof(double));
        if (!shard_masks || !ex_masks || !half || !shard_margins || !ex_margins) {
            st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
            sdm_model_destroy(&proto);
            goto done;
        }
        for (uint32_t r = 0; r < R && st == SDM_OK; r++) {
            if (choose(o->seed, r, TAG_SHARD_HALF, s.C, s.C / 2, half) != 0 ||
                choose(o->seed, r, TAG_EX_HALF, n, n / 2, ex_masks + (size_t)r * n) != 0)
                st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
            for (uint64_t i = 0; i < n; i++)
                shard_masks[(size_t)r * n + i] = half[s.shard_of[i]];
        }
        retrain_stats rs = {0};
        if (st == SDM_OK)
            st = retrain(o, proto, &s, shard_masks, R, shard_margins, &rs, "shard", err, err_len);
        if (st == SDM_OK)
            st = retrain(o, proto, &s, ex_masks, R, ex_margins, &rs, "example", err, err_len);
        sdm_model_destroy(&proto);
        if (st != SDM_OK)
            goto done;
        res->retrains = rs.count;
        res->retrains_converged = rs.converged;
        res->retrain_mean_steps = rs.count ? (double)rs.steps / rs.count : 0;
        res->retrain_seconds = rs.seconds;
        say(o, "%s: %u retrains (%u converged) in %.1f s", o->model, rs.count, rs.converged,
            rs.seconds);
    }

    /* rows: training loss gradients, sampled-label curvature rows, queries -∇margin */
    uint64_t n_curv = (uint64_t)o->curv_draws * n;
    G = malloc(n * P * sizeof(double));
    Psi = malloc(n_curv * P * sizeof(double));
    Qd = malloc(m * P * sizeof(double));
    Gf = malloc(n * P * sizeof(float));
    Psif = malloc(n_curv * P * sizeof(float));
    Qf = malloc(m * P * sizeof(float));
    S = malloc(m * n * sizeof(double));
    if (!G || !Psi || !Qd || !Gf || !Psif || !Qf || !S) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory for the gradient rows");
        goto done;
    }
    st = sdm_model_example_grads(model, s.train, G, NULL);
    if (st == SDM_OK)
        st = sdm_model_sampled_grads(model, s.train, o->curv_draws, o->seed, Psi, NULL);
    if (st == SDM_OK)
        st = sdm_model_margin_grads(model, s.test, Qd, NULL);
    if (st != SDM_OK) {
        st = fail(err, err_len, st, "eval: gradients: %s", sdm_model_last_error(model));
        goto done;
    }
    for (uint64_t t = 0; t < m * P; t++)
        Qd[t] = -Qd[t];
    sdm_rows_to_f32(G, n * P, Gf);
    sdm_rows_to_f32(Psi, n_curv * P, Psif);
    sdm_rows_to_f32(Qd, m * P, Qf);

    /* the engine's stores: none (k = P) and rademacher; batches 0 .. C-1 are the shards,
     * batch C the curvature rows, so store_size = C attributes without them */
    for (int p = 0; p < 2; p++) {
        sdm_projection proj = {p ? SDM_PROJ_RADEMACHER : SDM_PROJ_NONE, P,
                               p ? res->proj_dim : (uint32_t)P, 0, o->seed};
        stores[p] = sdm_store_new(eng, &proj);
        if (!stores[p]) {
            st =
                fail(err, err_len, SDM_ERR_INTERNAL, "eval: store: %s", sdm_engine_last_error(eng));
            goto done;
        }
        st = fill_store(stores[p], &s, CHECKPOINT, 1.0, Gf, Psif, n_curv, P, p == 0, eng, err,
                        err_len);
        if (st != SDM_OK)
            goto done;
    }

    /* the configurations */
    config cfgs[64];
    size_t nc = 0;
    for (int p = 0; p < 2; p++) {
        cfgs[nc++] = (config){"dot", SDM_METHOD_DOT, p, 0, 0};
        cfgs[nc++] = (config){"cosine", SDM_METHOD_COSINE, p, 0, 0};
        cfgs[nc++] = (config){"trak emp", SDM_METHOD_TRAK, p, 0, 0};
        cfgs[nc++] = (config){"trak curv", SDM_METHOD_TRAK, p, 1, 0};
        cfgs[nc++] = (config){"trak emp matched", SDM_METHOD_TRAK, p, 0, 1};
        cfgs[nc++] = (config){"trak curv matched", SDM_METHOD_TRAK, p, 1, 1};
    }
    if (o->sweep) {
        static const double mults[] = {0.01, 0.1, 0.3, 3, 10, 30, 100};
        for (size_t t = 0; t < sizeof(mults) / sizeof(mults[0]); t++)
            cfgs[nc++] = (config){"trak curv sweep", SDM_METHOD_TRAK, 0, 1, mults[t]};
    }
    /* the main rows, the TracIn-CP rows, the ceiling */
    size_t rows_max = nc + (o->ckpts ? 3 : 0) + 1;
    res->rows = calloc(rows_max, sizeof(sdm_eval_row));
    if (o->keep_scores && !(res->scores = calloc(rows_max, sizeof(double *)))) {
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    res->plot_pred = malloc(R * sizeof(double));
    res->plot_margin = malloc(R * sizeof(double));
    double *pred = malloc((size_t)R * m * sizeof(double));
    if (!res->rows || !res->plot_pred || !res->plot_margin || !pred) {
        free(pred);
        st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    /* the plot shows the first test example under trak with curvature rows, no projection,
     * SPEC's default damping: what a worker returns by default */
    res->plot_query = 0;
    res->plot_row = SIZE_MAX;
    for (size_t c = 0; c < nc && st == SDM_OK; c++) {
        const config *cf = &cfgs[c];
        sdm_eval_row *row = &res->rows[res->n_rows];
        /* K sums its rows, so K + (rows of K)·l2·I estimates (rows of K) times the
         * regularised Hessian: the damping that matches the training objective */
        uint64_t k_rows = cf->method == SDM_METHOD_TRAK && cf->sampled ? n_curv : n;
        double lambda = cf->lam_mult > 0 ? cf->lam_mult * (double)k_rows * o->l2 : NAN;
        double used = NAN, t0 = now();
        uint32_t k = cf->rademacher ? res->proj_dim : (uint32_t)P;
        st = engine_scores(eng, stores[cf->rademacher], cf->method, Qf, m, P, !cf->rademacher,
                           lambda,
                           cf->method == SDM_METHOD_TRAK && cf->sampled ? SDM_STORE_NOW : s.C, n, S,
                           &used, err, err_len);
        if (st != SDM_OK)
            break;
        row_fill(row, cf, k, used);
        row->seconds = now() - t0;
        row_measure(row, S, &s, shard_masks, shard_margins, ex_masks, ex_margins, R, pred);
        if (cf->method == SDM_METHOD_TRAK && !cf->rademacher && cf->sampled && cf->lam_mult == 0)
            res->plot_row = res->n_rows;
        if (res->n_rows == res->plot_row)
            for (uint32_t r = 0; r < R; r++) {
                res->plot_pred[r] = pred[(size_t)r * m + res->plot_query];
                res->plot_margin[r] = shard_margins[(size_t)r * m + res->plot_query];
            }
        say(o, "%s: %-18s %-10s LDS shard %.3f example %.3f AUC %.3f", o->model, row->name,
            row->projection, row->lds_shard, row->lds_example, row->auc);
        if (res->scores)
            res->scores[res->n_rows] = keep_copy(S, m * n);
        res->n_rows++;
    }
    free(pred);
    if (st == SDM_OK && o->ckpts) {
        truth t = {shard_masks, ex_masks, shard_margins, ex_margins, R};
        st = tracin_rows(o, start, &s, eng, res, &t, S, err, err_len);
    }
    if (st != SDM_OK)
        goto done;

    /* the ceiling: the influence function with the exact curvature */
    {
        double t0 = now();
        H = malloc(P * P * sizeof(double));
        if (!H) {
            st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory for the Hessian");
            goto done;
        }
        st = ceiling_curvature(model, s.train, H, err, err_len);
        if (st == SDM_OK)
            st = influence_scores(H, Qd, G, m, n, P, S, err, err_len);
        if (st != SDM_OK)
            goto done;
        sdm_eval_row *row = &res->rows[res->n_rows];
        int lr = strcmp(o->model, "logreg") == 0;
        snprintf(row->name, sizeof(row->name), "%s", lr ? "influence" : "influence GN");
        row->method = "influence";
        row->projection = "exact";
        row->k = (uint32_t)P;
        row->curvature = lr ? "hessian" : "gauss-newton";
        row->lambda_rule = "";
        row->lambda = NAN;
        row->checkpoints = 1;
        row->seconds = now() - t0;
        row_measure(row, S, &s, shard_masks, shard_margins, ex_masks, ex_margins, R, NULL);
        say(o, "%s: %-18s %-10s LDS shard %.3f example %.3f AUC %.3f", o->model, row->name,
            row->projection, row->lds_shard, row->lds_example, row->auc);
        if (res->scores)
            res->scores[res->n_rows] = keep_copy(S, m * n);
        res->n_rows++;
    }
    if (res->scores) {
        for (size_t i = 0; i < res->n_rows; i++)
            if (!res->scores[i]) {
                st = fail(err, err_len, SDM_ERR_NOMEM, "eval: out of memory keeping scores");
                goto done;
            }
        /* the result takes these over */
        res->shard_masks = shard_masks, shard_masks = NULL;
        res->example_masks = ex_masks, ex_masks = NULL;
        res->shard_margins = shard_margins, shard_margins = NULL;
        res->example_margins = ex_margins, ex_margins = NULL;
        res->shard_of = s.shard_of, s.shard_of = NULL;
        res->corrupted = s.corrupted, s.corrupted = NULL;
    }
    res->seconds = now() - t_start;

done:
    if (st != SDM_OK)
        sdm_eval_result_free(&res);
    *out = res;
    sdm_store_destroy(&stores[0]);
    sdm_store_destroy(&stores[1]);
    sdm_engine_destroy(&own_eng);
    sdm_train_result_free(&tr);
    sdm_model_destroy(&model);
    sdm_model_destroy(&start);
    setup_free(&s);
    sdm_dataset_destroy(&loaded);
    free(G);
    free(Psi);
    free(Qd);
    free(Gf);
    free(Psif);
    free(Qf);
    free(S);
    free(H);
    free(shard_masks);
    free(ex_masks);
    free(half);
    free(shard_margins);
    free(ex_margins);
    return st;
}

void sdm_eval_result_free(sdm_eval_result **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_eval_result *r = *self_p;
    if (r->scores)
        for (size_t i = 0; i < r->n_rows; i++)
            free(r->scores[i]);
    free(r->scores);
    free(r->shard_masks);
    free(r->example_masks);
    free(r->shard_margins);
    free(r->example_margins);
    free(r->shard_of);
    free(r->corrupted);
    free(r->rows);
    free(r->plot_pred);
    free(r->plot_margin);
    free(r);
    *self_p = NULL;
}

/* ---- output ----------------------------------------------------------------------------- */

void sdm_eval_print_table(const sdm_eval_result *r, FILE *f)
{
    fprintf(f, "%s: P = %llu, l2 = %g%s", r->model, (unsigned long long)r->nparams, r->l2,
            r->hidden ? "" : "\n");
    if (r->hidden)
        fprintf(f, ", %u tanh units\n", r->hidden);
    fprintf(f,
            "data: digits, %llu train / %llu test (split seed %llu); %u contributors, one "
            "shard each: c%u has %llu labels shifted, c%u copies c%u\n",
            (unsigned long long)r->n_train, (unsigned long long)r->n_test,
            (unsigned long long)r->seed, r->contributors, r->corrupt,
            (unsigned long long)r->n_corrupted, r->copier, r->copy_of);
    fprintf(f,
            "trained: %llu L-BFGS steps, |grad L| %.2g (%s, tol %g), accuracy train %.3f "
            "test %.3f, %.2f s\n",
            (unsigned long long)r->train_steps, r->train_grad_norm,
            r->train_converged ? "converged" : "NOT converged", r->tol, r->train_accuracy,
            r->test_accuracy, r->train_seconds);
    fprintf(f,
            "ground truth: %u retrains (%u random halves of the shards, %u of the examples), "
            "%u converged, mean %.0f steps, %.1f s\n",
            r->retrains, r->subsets, r->subsets, r->retrains_converged, r->retrain_mean_steps,
            r->retrain_seconds);
    fprintf(f, "curvature rows: %u sampled label%s per training example\n", r->curv_draws,
            r->curv_draws == 1 ? "" : "s");
    if (r->gd_ckpts)
        fprintf(f,
                "TracIn-CP path: %llu gradient-descent steps at lr %.4g (loss %.4f, test accuracy "
                "%.3f), %u checkpoints each weighted lr x %llu steps\n",
                (unsigned long long)r->gd_steps, r->gd_lr, r->gd_loss, r->gd_test_accuracy,
                r->gd_ckpts, (unsigned long long)(r->gd_steps / r->gd_ckpts));
    fputs("\n", f);
    fprintf(f, "%-18s %-10s %5s %-12s %-13s %8s  %-14s %-14s %6s %4s %7s\n", "method", "proj", "k",
            "curvature", "damping", "lambda", "LDS shard", "LDS example", "AUC", "rank", "time");
    for (size_t i = 0; i < r->n_rows; i++) {
        const sdm_eval_row *w = &r->rows[i];
        char lam[24] = "-";
        if (!isnan(w->lambda))
            snprintf(lam, sizeof(lam), "%.4g", w->lambda);
        fprintf(f,
                "%-18s %-10s %5u %-12s %-13s %8s  %6.3f ±%.3f   %6.3f ±%.3f   %6.3f %4d %6.2fs\n",
                w->name, w->projection, w->k, w->curvature[0] ? w->curvature : "-",
                w->lambda_rule[0] ? w->lambda_rule : "-", lam, w->lds_shard, w->lds_shard_se,
                w->lds_example, w->lds_example_se, w->auc, w->corrupt_rank, w->seconds);
    }
    fprintf(f,
            "\nLDS: mean over test examples of Spearman(predicted, retrained margin) across "
            "the halves (± standard error over test examples); AUC: corrupted examples "
            "ranked lowest by mean score; rank: the corrupted contributor's place among %u "
            "by mean score (1 = most harmful). %.1f s in all, %s.\n",
            r->contributors, r->seconds, r->backend);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

void sdm_eval_print_json(const sdm_eval_result *r, FILE *f)
{
    fputs("{\"model\": ", f);
    sdm_json_write_str(f, r->model);
    fprintf(f, ", \"params\": %llu, \"l2\": ", (unsigned long long)r->nparams);
    json_num(f, r->l2);
    fprintf(f,
            ", \"hidden\": %u, \"n_train\": %llu, \"n_test\": %llu, \"contributors\": %u, "
            "\"corrupt\": %u, \"n_corrupted\": %llu, \"copy_of\": %u, \"copier\": %u, "
            "\"subsets\": %u, \"curv_draws\": %u, \"proj_dim\": %u, \"seed\": %llu, \"tol\": ",
            r->hidden, (unsigned long long)r->n_train, (unsigned long long)r->n_test,
            r->contributors, r->corrupt, (unsigned long long)r->n_corrupted, r->copy_of, r->copier,
            r->subsets, r->curv_draws, r->proj_dim, (unsigned long long)r->seed);
    json_num(f, r->tol);
    fprintf(f, ",\n \"train\": {\"steps\": %llu, \"converged\": %s, \"grad_norm\": ",
            (unsigned long long)r->train_steps, r->train_converged ? "true" : "false");
    json_num(f, r->train_grad_norm);
    fputs(", \"train_accuracy\": ", f);
    json_num(f, r->train_accuracy);
    fputs(", \"test_accuracy\": ", f);
    json_num(f, r->test_accuracy);
    fputs(", \"seconds\": ", f);
    json_num(f, r->train_seconds);
    fprintf(f,
            "},\n \"retrains\": {\"count\": %u, \"converged\": %u, \"mean_steps\": ", r->retrains,
            r->retrains_converged);
    json_num(f, r->retrain_mean_steps);
    fputs(", \"seconds\": ", f);
    json_num(f, r->retrain_seconds);
    fprintf(f, "},\n \"tracin_path\": {\"checkpoints\": %u, \"steps\": %llu, \"lr\": ",
            r->gd_ckpts, (unsigned long long)r->gd_steps);
    json_num(f, r->gd_ckpts ? r->gd_lr : NAN);
    fputs(", \"loss\": ", f);
    json_num(f, r->gd_ckpts ? r->gd_loss : NAN);
    fputs(", \"test_accuracy\": ", f);
    json_num(f, r->gd_ckpts ? r->gd_test_accuracy : NAN);
    fputs("},\n \"rows\": [", f);
    for (size_t i = 0; i < r->n_rows; i++) {
        const sdm_eval_row *w = &r->rows[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
        sdm_json_write_str(f, w->name);
        fputs(", \"method\": ", f);
        sdm_json_write_str(f, w->method);
        fputs(", \"projection\": ", f);
        sdm_json_write_str(f, w->projection);
        fprintf(f, ", \"k\": %u, \"checkpoints\": %u, \"curvature\": ", w->k, w->checkpoints);
        sdm_json_write_str(f, w->curvature);
        fputs(", \"lambda_rule\": ", f);
        sdm_json_write_str(f, w->lambda_rule);
        fputs(", \"lambda\": ", f);
        json_num(f, w->lambda);
        fputs(", \"lds_shard\": ", f);
        json_num(f, w->lds_shard);
        fputs(", \"lds_shard_se\": ", f);
        json_num(f, w->lds_shard_se);
        fputs(", \"lds_example\": ", f);
        json_num(f, w->lds_example);
        fputs(", \"lds_example_se\": ", f);
        json_num(f, w->lds_example_se);
        fputs(", \"auc\": ", f);
        json_num(f, w->auc);
        fprintf(f, ", \"corrupt_rank\": %d, \"seconds\": ", w->corrupt_rank);
        json_num(f, w->seconds);
        fputc('}', f);
    }
    fputs("],\n \"seconds\": ", f);
    json_num(f, r->seconds);
    fputs(", \"backend\": ", f);
    sdm_json_write_str(f, r->backend);
    fputs("}", f);
}

void sdm_eval_print_json_many(sdm_eval_result *const *r, size_t n, FILE *f)
{
    fputs("{\"runs\": [", f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(",\n", f);
        sdm_eval_print_json(r[i], f);
    }
    fputs("]}\n", f);
}

/* ---- the plot --------------------------------------------------------------------------- */

#define COL_SHARD 0x1f77b4u
#define COL_EXAMPLE 0xff7f0eu
#define COL_AXIS 0x333333u
#define COL_GRID 0xddddddu
#define COL_TEXT 0x111111u

static void row_label(const sdm_eval_row *w, char *buf, size_t len)
{
    if (strcmp(w->projection, "rademacher") == 0)
        snprintf(buf, len, "%s rad%u", w->name, w->k);
    else if (strcmp(w->name, "trak curv sweep") == 0)
        snprintf(buf, len, "trak curv %s", w->lambda_rule);
    else
        snprintf(buf, len, "%s", w->name);
}

sdm_status sdm_eval_write_png(const sdm_eval_result *r, const char *path, char *err, size_t err_len)
{
    const int S2 = 2, row_h = 26, top = 70, label_w = 330, bar_w = 420;
    const int panel2_x = label_w + bar_w + 70, panel2_w = 380;
    int h = top + (int)r->n_rows * row_h + 60;
    if (h < top + panel2_w + 100)
        h = top + panel2_w + 100;
    int w = panel2_x + panel2_w + 40;
    sdm_canvas *c = sdm_canvas_new((uint32_t)w, (uint32_t)h);
    if (!c)
        return fail(err, err_len, SDM_ERR_NOMEM, "png: out of memory");
    char buf[160];
    snprintf(buf, sizeof(buf), "SEDIMENT EVAL: %s, P=%llu, L2=%g, %u HALVES", r->model,
             (unsigned long long)r->nparams, r->l2, r->subsets);
    sdm_canvas_text(c, 10, 10, S2, buf, COL_TEXT);

    /* left: LDS bars, axis from lo to 1 */
    double lo = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        lo = fmin(lo, r->rows[i].lds_shard);
        lo = fmin(lo, r->rows[i].lds_example);
    }
    lo = lo < 0 ? -0.25 * ceil(-lo / 0.25) : 0;
    int x0 = label_w, x_end = label_w + bar_w;
#define XOF(v) (x0 + (int)lround(((v)-lo) / (1.0 - lo) * bar_w))
    int y_axis = top + (int)r->n_rows * row_h;
    for (double g = lo; g <= 1.0001; g += 0.25) {
        int gx = XOF(g);
        sdm_canvas_line(c, gx, top - 4, gx, y_axis, g == 0 ? COL_AXIS : COL_GRID);
        snprintf(buf, sizeof(buf), "%.2f", g);
        sdm_canvas_text(c, gx - sdm_canvas_text_width(buf, 1) / 2, y_axis + 6, 1, buf, COL_TEXT);
    }
    sdm_canvas_text(c, x0 + bar_w / 2 - 40, y_axis + 20, S2, "LDS", COL_TEXT);
    sdm_canvas_fill(c, 10, 40, 14, 10, COL_SHARD);
    sdm_canvas_text(c, 30, 40, S2, "SHARD HALVES", COL_TEXT);
    sdm_canvas_fill(c, 210, 40, 14, 10, COL_EXAMPLE);
    sdm_canvas_text(c, 230, 40, S2, "EXAMPLE HALVES", COL_TEXT);
    for (size_t i = 0; i < r->n_rows; i++) {
        const sdm_eval_row *rw = &r->rows[i];
        int y = top + (int)i * row_h;
        row_label(rw, buf, sizeof(buf));
        sdm_canvas_text(c, 10, y + 6, S2, buf, COL_TEXT);
        double v[2] = {rw->lds_shard, rw->lds_example};
        uint32_t col[2] = {COL_SHARD, COL_EXAMPLE};
        for (int b = 0; b < 2; b++) {
            if (!isfinite(v[b]))
                continue;
            int a = XOF(0), e = XOF(v[b]);
            sdm_canvas_fill(c, a < e ? a : e, y + 3 + b * 10, abs(e - a) + 1, 9, col[b]);
        }
    }
    sdm_canvas_line(c, x0, y_axis, x_end, y_axis, COL_AXIS);
#undef XOF

    /* right: predicted vs measured margin of one test example across the shard halves */
    if (r->plot_row < r->n_rows && r->plot_pred && r->subsets > 1) {
        const sdm_eval_row *rw = &r->rows[r->plot_row];
        int px = panel2_x, py = top + 40, side = panel2_w;
        double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
        for (uint32_t t = 0; t < r->subsets; t++) {
            xl = fmin(xl, r->plot_pred[t]);
            xh = fmax(xh, r->plot_pred[t]);
            yl = fmin(yl, r->plot_margin[t]);
            yh = fmax(yh, r->plot_margin[t]);
        }
        if (xh <= xl)
            xh = xl + 1;
        if (yh <= yl)
            yh = yl + 1;
        row_label(rw, buf, sizeof(buf));
        char title[200];
        snprintf(title, sizeof(title), "TEST EXAMPLE %llu: %s", (unsigned long long)r->plot_query,
                 buf);
        sdm_canvas_text(c, px, top, S2, title, COL_TEXT);
        double rho = sdm_eval_spearman(r->plot_pred, r->plot_margin, r->subsets);
        snprintf(buf, sizeof(buf), "SPEARMAN %.3f OVER %u SHARD HALVES", rho, r->subsets);
        sdm_canvas_text(c, px, top + 20, 1, buf, COL_TEXT);
        sdm_canvas_line(c, px, py, px, py + side, COL_AXIS);
        sdm_canvas_line(c, px, py + side, px + side, py + side, COL_AXIS);
        for (uint32_t t = 0; t < r->subsets; t++) {
            int dx = px + 4 + (int)lround((r->plot_pred[t] - xl) / (xh - xl) * (side - 8));
            int dy = py + side - 4 - (int)lround((r->plot_margin[t] - yl) / (yh - yl) * (side - 8));
            sdm_canvas_fill(c, dx - 2, dy - 2, 5, 5, COL_SHARD);
        }
        snprintf(buf, sizeof(buf), "%.3g", xl);
        sdm_canvas_text(c, px, py + side + 6, 1, buf, COL_TEXT);
        snprintf(buf, sizeof(buf), "%.3g", xh);
        sdm_canvas_text(c, px + side - sdm_canvas_text_width(buf, 1), py + side + 6, 1, buf,
                        COL_TEXT);
        sdm_canvas_text(c, px + side / 2 - 120, py + side + 20, S2, "PREDICTED (SUM OF SCORES)",
                        COL_TEXT);
        snprintf(buf, sizeof(buf), "%.3g", yh);
        sdm_canvas_text(c, px + 6, py, 1, buf, COL_TEXT);
        snprintf(buf, sizeof(buf), "%.3g", yl);
        sdm_canvas_text(c, px + 6, py + side - 14, 1, buf, COL_TEXT);
        sdm_canvas_text(c, px + 6, py + 14, S2, "RETRAINED MARGIN", COL_TEXT);
    }
    sdm_status st = sdm_canvas_write_png(c, path, err, err_len);
    sdm_canvas_destroy(&c);
    return st;
}
