/* demo.c - `sediment demo`: a ledger, a worker, ten contributors and a reward table, in one run. */
#include "demo.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "digits.h"
#include "jsonout.h"
#include "eval.h"
#include "ledger.h"
#include "logreg.h"
#include "sediment/client.h"
#include "train.h"
#include "worker.h"

#define MODEL_NAME "digits-logreg"
#define MAX_CONTRIB 64
#define MAX_CKPT 3

typedef struct demo_opts {
    int quick, json, quiet;
    const char *data;   /* NULL: a fresh temporary dir */
    uint64_t pool;      /* reward units */
    uint32_t contributors;
    uint32_t corrupt;
    uint32_t proj_dim;
    uint64_t seed;
} demo_opts;

typedef struct contrib_row {
    char name[16];
    const char *role; /* "honest", "corrupted", "copier" */
    uint64_t examples;
    double score, share; /* summed over the test queries */
    uint64_t reward;
    int flagged;
    int64_t first_entry; /* the ledger index of its first receipt, -1 before verify_ledger */
    int copy_of;         /* the contributor whose data it repeats (see find_copies), or -1 */
} contrib_row;

typedef struct demo_result {
    char dir[512];
    uint64_t n_train, n_test, nparams, steps;
    double test_accuracy;
    size_t n_ckpt;
    char ckpt[MAX_CKPT][32];
    uint32_t C, corrupt, copier;
    contrib_row rows[MAX_CONTRIB];
    uint64_t receipts, proofs, size, verified;
    char root_hex[65];
    char origin[SDM_CLIENT_ORIGIN_MAX + 1];
    uint64_t unallocated;
    double seconds;
} demo_result;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double s_t0;
static int s_quiet;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    if (s_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sediment demo [%5.1fs] ", now() - s_t0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int fail(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

static void *ledger_thread(void *p)
{
    (void)sdm_ledger_run(p);
    return NULL;
}

static void *worker_thread(void *p)
{
    (void)sdm_worker_run(p);
    return NULL;
}

/* ---- the contributors' data ------------------------------------------------------------- */

/* ---- talking to the servers ------------------------------------------------------------- */

static int client_failed(sdm_client_t *c, const char *what, sdm_client_status st, char *err,
                         size_t err_len)
{
    return fail(err, err_len, "%s: %s: %s", what, sdm_client_status_str(st),
                sdm_client_last_error(c));
}

static int contribute(sdm_client_t *w, const char *ckpt, double lr, const char *contributor,
                      const char *shard, const uint64_t *ids, const float *rows, uint64_t n,
                      uint64_t P, int curvature, char *err, size_t err_len)
{
    sdm_batch b = {.checkpoint = ckpt,
                   .lr = lr,
                   .contributor = contributor,
                   .shard = shard,
                   .curvature = curvature,
                   .ids = ids,
                   .rows = {.dtype = SDM_F32, .rows = n, .cols = P, .data = rows}};
    sdm_reply_t *r = NULL;
    sdm_client_status st = sdm_client_contribute(w, MODEL_NAME, &b, &r);
    sdm_reply_destroy(&r);
    if (st != SDM_CLIENT_OK)
        return client_failed(w, "contribute", st, err, err_len);
    return 0;
}

/* Waits until the worker's outbox has delivered everything: the ledger's size is `want`. */
static int wait_ledger(sdm_client_t *l, uint64_t want, char *err, size_t err_len)
{
    double until = now() + 60;
    for (;;) {
        sdm_reply_t *r = NULL;
        uint64_t size = 0;
        sdm_client_status st = sdm_client_ledger_info(l, &r);
        if (st != SDM_CLIENT_OK)
            return client_failed(l, "ledger info", st, err, err_len);
        int ok = sdm_reply_u64(r, "size", &size) == 0;
        sdm_reply_destroy(&r);
        if (ok && size >= want)
            return 0;
        if (now() > until)
            return fail(err, err_len,
                        "ledger: holds %" PRIu64 " entries after 60 s, expected %" PRIu64, size,
                        want);
        usleep(20000);
    }
}

/* Checks every entry: signed by the worker, and included in the tree of the ledger's signed
 * checkpoint (fetched and its signature checked against the ledger's key). */
static int verify_ledger(sdm_client_t *l, const uint8_t worker_key[32], demo_result *res,
                         char *err, size_t err_len)
{
    sdm_reply_t *info = NULL, *cpr = NULL;
    int rc = -1;
    sdm_client_status st = sdm_client_ledger_info(l, &info);
    if (st != SDM_CLIENT_OK)
        return client_failed(l, "ledger info", st, err, err_len);
    size_t klen = 0;
    const uint8_t *lkey = sdm_reply_bin(info, "ledger_key", &klen);
    const char *origin = sdm_reply_str(info, "origin");
    if (!lkey || klen != 32 || !origin) {
        fail(err, err_len, "ledger info: no ledger_key or origin");
        goto done;
    }
    st = sdm_client_ledger_checkpoint(l, &cpr);
    if (st != SDM_CLIENT_OK) {
        client_failed(l, "checkpoint", st, err, err_len);
        goto done;
    }
    const char *note = sdm_reply_str(cpr, "checkpoint");
    sdm_ledger_checkpoint cp;
    char msg[256];
    if (!note || sdm_client_checkpoint_verify_key(note, strlen(note), origin, lkey, &cp, msg,
                                                  sizeof(msg)) != SDM_CLIENT_OK) {
        fail(err, err_len, "checkpoint: %s", note ? msg : "missing");
        goto done;
    }
    snprintf(res->origin, sizeof(res->origin), "%s", cp.origin);
    for (int i = 0; i < 32; i++)
        snprintf(res->root_hex + 2 * i, 3, "%02x", cp.root[i]);
    res->size = cp.size;
    for (uint64_t i = 0; i < cp.size; i++) {
        sdm_reply_t *e = NULL, *inc = NULL, *body = NULL;
        uint8_t (*path)[32] = malloc(64 * 32);
        size_t n_path = 0, env_len = 0;
        uint8_t signer[32];
        int ok = 0;
        st = sdm_client_ledger_entry(l, i, &e);
        if (st != SDM_CLIENT_OK) {
            client_failed(l, "entry", st, err, err_len);
        } else if ((st = sdm_client_ledger_inclusion(l, i, cp.size, &inc)) != SDM_CLIENT_OK) {
            client_failed(l, "inclusion", st, err, err_len);
        } else {
            const uint8_t *env = sdm_reply_envelope(e, &env_len);
            if (!path || !env || sdm_reply_hashes(inc, "hashes", path, 64, &n_path) != 0)
                fail(err, err_len, "entry %" PRIu64 ": no envelope or inclusion path", i);
            else if (sdm_client_open_envelope(env, env_len, &body, signer, msg, sizeof(msg)) !=
                     SDM_CLIENT_OK)
                fail(err, err_len, "entry %" PRIu64 ": signature: %s", i, msg);
            else if (memcmp(signer, worker_key, 32) != 0)
                fail(err, err_len, "entry %" PRIu64 ": not signed by the demo's worker", i);
            else if (sdm_client_verify_inclusion(&cp, i, env, env_len, (const uint8_t(*)[32])path,
                                                 n_path, msg, sizeof(msg)) != SDM_CLIENT_OK)
                fail(err, err_len, "entry %" PRIu64 ": inclusion: %s", i, msg);
            else {
                const char *type = sdm_reply_str(body, "type");
                const char *who = sdm_reply_str(body, "contributor");
                if (type && strcmp(type, "contribution") == 0) {
                    res->receipts++;
                    for (uint32_t c = 0; who && c < res->C; c++)
                        if (res->rows[c].first_entry < 0 && strcmp(res->rows[c].name, who) == 0)
                            res->rows[c].first_entry = (int64_t)i;
                } else {
                    res->proofs++;
                }
                res->verified++;
                ok = 1;
            }
        }
        free(path);
        sdm_reply_destroy(&e);
        sdm_reply_destroy(&inc);
        sdm_reply_destroy(&body);
        if (!ok)
            goto done;
    }
    rc = 0;
done:
    sdm_reply_destroy(&info);
    sdm_reply_destroy(&cpr);
    return rc;
}

static int rewards(sdm_client_t *l, const demo_opts *o, demo_result *res, char *err,
                   size_t err_len)
{
    sdm_reply_t *r = NULL;
    sdm_client_status st = sdm_client_ledger_rewards(l, o->pool, NULL, MODEL_NAME, &r);
    if (st != SDM_CLIENT_OK)
        return client_failed(l, "rewards", st, err, err_len);
    char p[64];
    int64_t n = sdm_reply_count(r, "allocations");
    for (int64_t i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "allocations.%" PRId64 ".0", i);
        const char *name = sdm_reply_str(r, p);
        uint64_t amount = 0;
        snprintf(p, sizeof(p), "allocations.%" PRId64 ".1", i);
        if (sdm_reply_u64(r, p, &amount) != 0 || !name)
            continue;
        for (uint32_t c = 0; c < res->C; c++)
            if (strcmp(res->rows[c].name, name) == 0)
                res->rows[c].reward = amount;
    }
    n = sdm_reply_count(r, "flagged");
    for (int64_t i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "flagged.%" PRId64, i);
        const char *name = sdm_reply_str(r, p);
        for (uint32_t c = 0; name && c < res->C; c++)
            if (strcmp(res->rows[c].name, name) == 0)
                res->rows[c].flagged = 1;
    }
    if (sdm_reply_u64(r, "unallocated", &res->unallocated) != 0)
        res->unallocated = 0;
    sdm_reply_destroy(&r);
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------ */

static int make_dir(const char *path, char *err, size_t err_len)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fail(err, err_len, "--data: cannot make %s: %s", path, strerror(errno));
    return 0;
}

/* Two contributors whose scores agree on every test example to COPY_TOL of their size sent
 * the same data (up to the f32 summation order of the worker's tiles, about 1e-7): of such a
 * pair, the one whose first receipt came later in the ledger is the copier. The attribution
 * and the ledger's rewards score data, not provenance, so this is the demo's reading of their
 * results, not a SPEC rule; a copier who perturbs the data is not caught by it. */
#define COPY_TOL 1e-5

static void find_copies(demo_result *res, const double *qscore, uint64_t m)
{
    for (uint32_t b = 0; b < res->C; b++) {
        contrib_row *wb = &res->rows[b];
        for (uint32_t a = 0; a < res->C && wb->copy_of < 0; a++) {
            const contrib_row *wa = &res->rows[a];
            if (a == b || wa->first_entry < 0 || wb->first_entry < wa->first_entry)
                continue;
            const double *va = qscore + (size_t)a * m, *vb = qscore + (size_t)b * m;
            double diff = 0, na = 0, nb = 0;
            for (uint64_t q = 0; q < m; q++) {
                diff += (va[q] - vb[q]) * (va[q] - vb[q]);
                na += va[q] * va[q];
                nb += vb[q] * vb[q];
            }
            double scale = na > nb ? na : nb;
            if (scale > 0 && sqrt(diff) <= COPY_TOL * sqrt(scale))
                wb->copy_of = (int)a;
        }
    }
}

static int run_demo(const demo_opts *o, demo_result *res, char *err, size_t err_len)
{
    int rc = -1;
    char ldir[600], wdir[600];
    sdm_ledger_t *ledger = NULL;
    sdm_worker_t *worker = NULL;
    pthread_t lt, wt;
    int l_running = 0, w_running = 0;
    sdm_client_t *wc = NULL, *lc = NULL;
    sdm_dataset *all = NULL, *pool = NULL, *test = NULL, *train = NULL;
    sdm_model_t *model = NULL;
    sdm_train_result *tr = NULL;
    double *G = NULL;
    float *Gf = NULL, *Q[MAX_CKPT] = {NULL};
    double *qscore = NULL;
    sdm_status sst;
    struct stat sb;

    /* the data dir: fresh, so that the example ids and the log start empty */
    if (o->data) {
        if (make_dir(o->data, err, err_len) != 0)
            return -1;
        snprintf(res->dir, sizeof(res->dir), "%s", o->data);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(res->dir, sizeof(res->dir), "%s/sediment-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(res->dir))
            return fail(err, err_len, "demo: cannot make a temporary dir: %s", strerror(errno));
    }
    snprintf(ldir, sizeof(ldir), "%s/ledger", res->dir);
    snprintf(wdir, sizeof(wdir), "%s/worker", res->dir);
    if (stat(ldir, &sb) == 0 || stat(wdir, &sb) == 0)
        return fail(err, err_len, "--data: %s already holds a demo run; give a new or empty dir",
                    res->dir);
    if (make_dir(ldir, err, err_len) != 0 || make_dir(wdir, err, err_len) != 0)
        return -1;
    say("data dir %s", res->dir);

    /* the servers, each on its own thread */
    sdm_ledger_opts lo = {.listen = "tcp://127.0.0.1:0", .data_dir = ldir, .quiet = 1};
    ledger = sdm_ledger_new(&lo, err, err_len);
    if (!ledger)
        goto done;
    if (pthread_create(&lt, NULL, ledger_thread, ledger) != 0) {
        fail(err, err_len, "demo: cannot start the ledger's thread");
        goto done;
    }
    l_running = 1;
    sdm_worker_opts wo = {.listen = "tcp://127.0.0.1:0",
                          .data_dir = wdir,
                          .backend = SDM_BACKEND_CPU,
                          .ledger = sdm_ledger_endpoint(ledger),
                          .quiet = 1};
    worker = sdm_worker_new(&wo, err, err_len);
    if (!worker)
        goto done;
    if (pthread_create(&wt, NULL, worker_thread, worker) != 0) {
        fail(err, err_len, "demo: cannot start the worker's thread");
        goto done;
    }
    w_running = 1;
    say("ledger on %s, worker on %s (forwarding to the ledger)", sdm_ledger_endpoint(ledger),
        sdm_worker_endpoint(worker));
    sdm_client_opts co = {.timeout_ms = 60000};
    wc = sdm_client_new(sdm_worker_endpoint(worker), &co, err, err_len);
    lc = wc ? sdm_client_new(sdm_ledger_endpoint(ledger), &co, err, err_len) : NULL;
    if (!lc)
        goto done;

    /* the data */
    if (sdm_digits_load(NULL, &all, err, err_len) != SDM_OK)
        goto done;
    res->n_test = o->quick ? 100 : 397;
    if (sdm_dataset_split(all, res->n_test, o->seed, &pool, &test, err, err_len) != SDM_OK)
        goto done;
    /* the eval's contributors, with every label of the corrupted one shifted: plain damage */
    sdm_eval_deal deal;
    if (sdm_eval_deal_new(all, pool, o->quick ? 400 : pool->n, o->contributors, o->corrupt, 1.0,
                          o->seed, &deal, err, err_len) != SDM_OK)
        goto done;
    train = deal.train;
    uint64_t per = deal.per;
    free(deal.shard_of);
    free(deal.corrupted);
    res->n_train = train->n;
    res->C = o->contributors;
    res->corrupt = o->corrupt;
    res->copier = o->contributors - 1;
    for (uint32_t c = 0; c < res->C; c++) {
        contrib_row *w = &res->rows[c];
        snprintf(w->name, sizeof(w->name), "c%u", c);
        w->role = c == o->corrupt ? "corrupted" : c == res->copier ? "copier" : "honest";
        w->examples = per;
        w->first_entry = -1;
        w->copy_of = -1;
    }
    say("digits: %" PRIu64 " training examples dealt to %u contributors (%" PRIu64
        " each; c%u's labels all shifted, c%u copies c0), %" PRIu64 " test",
        res->n_train, res->C, per, o->corrupt, res->copier, res->n_test);

    /* training, keeping checkpoints */
    model = sdm_logreg_new(train->d, train->classes, 1e-3, &sst, err, err_len);
    if (!model)
        goto done;
    sdm_model_init(model, o->seed);
    uint64_t keep[] = {4, 16};
    sdm_train_opts to = {.method = SDM_TRAIN_LBFGS, .tol = 1e-5, .save_steps = keep, .n_save = 2};
    if (sdm_model_train(model, train, &to, &tr) != SDM_OK) {
        fail(err, err_len, "train: %s", sdm_model_last_error(model));
        goto done;
    }
    res->steps = tr->steps;
    res->nparams = sdm_model_nparams(model);
    if (sdm_model_accuracy(model, test, &res->test_accuracy) != SDM_OK)
        res->test_accuracy = NAN;
    res->n_ckpt = tr->n_checkpoints < MAX_CKPT ? tr->n_checkpoints : MAX_CKPT;
    say("trained logistic regression (P = %" PRIu64 "): %" PRIu64
        " L-BFGS steps, test accuracy %.3f; %zu checkpoints",
        res->nparams, res->steps, res->test_accuracy, res->n_ckpt);

    /* register, then contribute at every checkpoint */
    uint64_t P = res->nparams, n = train->n, m = test->n;
    sdm_projection proj = {.kind = SDM_PROJ_RADEMACHER, .input_dim = P, .dim = o->proj_dim,
                           .seed = o->seed};
    sdm_reply_t *r = NULL;
    sdm_client_status st = sdm_client_register(wc, MODEL_NAME, &proj, &r);
    sdm_reply_destroy(&r);
    if (st != SDM_CLIENT_OK) {
        client_failed(wc, "register", st, err, err_len);
        goto done;
    }
    G = malloc((n > m ? n : m) * P * sizeof(double));
    Gf = malloc(n * P * sizeof(float));
    if (!G || !Gf) {
        fail(err, err_len, "demo: out of memory for the gradients");
        goto done;
    }
    uint64_t contributed = 0;
    for (size_t k = 0; k < res->n_ckpt; k++) {
        /* the final iterate last, whichever steps were reached */
        const sdm_checkpoint *ck = &tr->checkpoints[tr->n_checkpoints - res->n_ckpt + k];
        snprintf(res->ckpt[k], sizeof(res->ckpt[k]), "step-%" PRIu64, ck->step);
        if (sdm_model_set_params(model, ck->params) != SDM_OK ||
            sdm_model_example_grads(model, train, G, NULL) != SDM_OK) {
            fail(err, err_len, "gradients: %s", sdm_model_last_error(model));
            goto done;
        }
        sdm_rows_to_f32(G, n * P, Gf);
        for (uint32_t c = 0; c < res->C; c++) {
            char shard[32];
            snprintf(shard, sizeof(shard), "%s-shard", res->rows[c].name);
            if (contribute(wc, res->ckpt[k], ck->lr, res->rows[c].name, shard,
                           train->ids + c * per, Gf + c * per * P, per, P, 0, err, err_len) != 0)
                goto done;
            contributed++;
        }
        if (sdm_model_sampled_grads(model, train, 1, o->seed, G, NULL) != SDM_OK) {
            fail(err, err_len, "curvature rows: %s", sdm_model_last_error(model));
            goto done;
        }
        sdm_rows_to_f32(G, n * P, Gf);
        if (contribute(wc, res->ckpt[k], ck->lr, "", "", NULL, Gf, n, P, 1, err, err_len) != 0)
            goto done;
        contributed++;
        /* the queries: −∇(true-class margin) of each test example (models/README.md) */
        Q[k] = malloc(m * P * sizeof(float));
        if (!Q[k] || sdm_model_margin_grads(model, test, G, NULL) != SDM_OK) {
            fail(err, err_len, "queries: %s", Q[k] ? sdm_model_last_error(model) : "out of memory");
            goto done;
        }
        for (uint64_t t = 0; t < m * P; t++)
            G[t] = -G[t];
        sdm_rows_to_f32(G, m * P, Q[k]);
        say("checkpoint %s (lr %g): %u contributions and a curvature batch, receipts signed",
            res->ckpt[k], ck->lr, res->C);
    }

    /* attribute the test set over every checkpoint */
    sdm_query q[MAX_CKPT];
    for (size_t k = 0; k < res->n_ckpt; k++)
        q[k] = (sdm_query){.checkpoint = res->ckpt[k],
                           .rows = {.dtype = SDM_F32, .rows = m, .cols = P, .data = Q[k]}};
    sdm_client_attr req = {.model = MODEL_NAME,
                           .n_queries = res->n_ckpt,
                           .queries = q,
                           .method = SDM_METHOD_TRAK,
                           .aggregate = SDM_AGG_SUM,
                           .topk = 0,
                           .query_ids = test->ids};
    st = sdm_client_attribute(wc, &req, &r);
    if (st != SDM_CLIENT_OK) {
        client_failed(wc, "attribute", st, err, err_len);
        goto done;
    }
    qscore = calloc((size_t)res->C * m, sizeof(double)); /* contributor x test example */
    if (!qscore) {
        fail(err, err_len, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < sdm_reply_n_queries(r) && i < m; i++) {
        const sdm_query_result *qr = sdm_reply_query(r, i);
        for (size_t j = 0; j < qr->n_contributors; j++)
            for (uint32_t c = 0; c < res->C; c++)
                if (strcmp(res->rows[c].name, qr->contributors[j].contributor) == 0) {
                    res->rows[c].score += qr->contributors[j].score;
                    res->rows[c].share += qr->contributors[j].share;
                    qscore[(size_t)c * m + i] = qr->contributors[j].score;
                }
    }
    sdm_reply_destroy(&r);
    say("attributed %" PRIu64 " test examples with trak over %zu checkpoints: proof signed", m,
        res->n_ckpt);

    /* the ledger: every receipt and the proof, each verified */
    uint64_t want = contributed + 1;
    if (wait_ledger(lc, want, err, err_len) != 0)
        goto done;
    say("ledger holds all %" PRIu64 " receipts and proofs; verifying each entry", want);
    if (verify_ledger(lc, sdm_worker_key(worker), res, err, err_len) != 0)
        goto done;
    say("%" PRIu64 " of %" PRIu64 " entries verified: signed by the worker, included in "
        "checkpoint %s",
        res->verified, res->size, res->root_hex);
    find_copies(res, qscore, m);
    if (rewards(lc, o, res, err, err_len) != 0)
        goto done;
    say("rewards: a pool of %" PRIu64 " split by the ledger", o->pool);
    rc = 0;

done:
    sdm_client_destroy(&wc);
    sdm_client_destroy(&lc);
    if (w_running) {
        sdm_worker_stop(worker);
        pthread_join(wt, NULL);
    }
    sdm_worker_destroy(&worker);
    if (l_running) {
        sdm_ledger_stop(ledger);
        pthread_join(lt, NULL);
    }
    sdm_ledger_destroy(&ledger);
    sdm_train_result_free(&tr);
    sdm_model_destroy(&model);
    sdm_dataset_destroy(&all);
    sdm_dataset_destroy(&pool);
    sdm_dataset_destroy(&test);
    sdm_dataset_destroy(&train);
    free(G);
    free(Gf);
    free(qscore);
    for (size_t k = 0; k < MAX_CKPT; k++)
        free(Q[k]);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

static void print_json(const demo_opts *o, const demo_result *r, FILE *f)
{
    fputs("{\"data_dir\": ", f);
    sdm_json_write_str(f, r->dir);
    fprintf(f,
            ", \"model\": \"logreg\", \"params\": %" PRIu64 ", \"n_train\": %" PRIu64
            ", \"n_test\": %" PRIu64 ", \"train_steps\": %" PRIu64 ", \"test_accuracy\": %.6g,"
            " \"corrupt\": \"c%u\", \"copier\": \"c%u\", \"copy_of\": \"c0\", \"pool\": %" PRIu64
            ", \"unallocated\": %" PRIu64 ",\n \"checkpoints\": [",
            r->nparams, r->n_train, r->n_test, r->steps, r->test_accuracy, r->corrupt, r->copier,
            o->pool, r->unallocated);
    for (size_t k = 0; k < r->n_ckpt; k++) {
        if (k)
            fputs(", ", f);
        sdm_json_write_str(f, r->ckpt[k]);
    }
    fputs("],\n \"contributors\": [", f);
    for (uint32_t c = 0; c < r->C; c++) {
        const contrib_row *w = &r->rows[c];
        fprintf(f, "%s\n  {\"contributor\": ", c ? "," : "");
        sdm_json_write_str(f, w->name);
        fprintf(f,
                ", \"role\": \"%s\", \"examples\": %" PRIu64 ", \"score\": %.9g, \"share\": %.9g,"
                " \"reward\": %" PRIu64 ", \"flagged\": %s, \"copy_of\": ",
                w->role, w->examples, w->score, w->share / (double)r->n_test, w->reward,
                w->flagged ? "true" : "false");
        if (w->copy_of >= 0)
            sdm_json_write_str(f, r->rows[w->copy_of].name);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fprintf(f,
            "],\n \"ledger\": {\"origin\": ");
    sdm_json_write_str(f, r->origin);
    fprintf(f,
            ", \"size\": %" PRIu64 ", \"root\": \"%s\", \"receipts\": %" PRIu64
            ", \"proofs\": %" PRIu64 ", \"verified\": %" PRIu64 "},\n \"seconds\": %.3f}\n",
            r->size, r->root_hex, r->receipts, r->proofs, r->verified, r->seconds);
}

static void print_table(const demo_opts *o, const demo_result *r, FILE *f)
{
    fprintf(f,
            "sediment demo: logistic regression (P = %" PRIu64 ") on %" PRIu64
            " digits from %u contributors, %" PRIu64 " test digits attributed with trak over "
            "%zu checkpoints (test accuracy %.3f)\n\n",
            r->nparams, r->n_train, r->C, r->n_test, r->n_ckpt, r->test_accuracy);
    fprintf(f, "%-11s %-10s %8s %12s %9s %10s  %s\n", "contributor", "role", "examples", "score",
            "share", "reward", "flagged");
    for (uint32_t c = 0; c < r->C; c++) {
        const contrib_row *w = &r->rows[c];
        char copy[64] = "";
        if (w->copy_of >= 0)
            snprintf(copy, sizeof(copy), "  COPY of %s (same score on every test example)",
                     r->rows[w->copy_of].name);
        fprintf(f, "%-11s %-10s %8" PRIu64 " %12.4g %9.4f %10" PRIu64 "%s%s\n", w->name, w->role,
                w->examples, w->score, w->share / (double)r->n_test, w->reward,
                w->flagged ? "  FLAGGED (negative summed score)" : "", copy);
    }
    fprintf(f,
            "\nscore: summed over the test examples; share: mean share per test example; "
            "reward: of a pool of %" PRIu64 " (unallocated %" PRIu64 ").\n"
            "ledger %s: %" PRIu64 " entries (%" PRIu64 " receipts, %" PRIu64 " proof%s), %" PRIu64
            " verified (worker's signature, inclusion in the signed checkpoint, root %.16s...).\n"
            "data dir: %s (%.1f s)\n",
            o->pool, r->unallocated, r->origin, r->size, r->receipts, r->proofs,
            r->proofs == 1 ? "" : "s", r->verified, r->root_hex, r->dir, r->seconds);
}

/* ---- command line -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: sediment demo [options]\n"
          "\n"
          "Runs the whole pipeline on this machine, no GPU or configuration needed: a ledger\n"
          "and a worker on loopback, the bundled digits split among contributors (one with\n"
          "corrupted labels, the last copying contributor 0), a logistic regression trained\n"
          "with checkpoints, every contributor's per-example gradients contributed, the test\n"
          "set attributed (trak), every receipt and proof appended to the ledger and each\n"
          "entry's inclusion verified, and a table of scores, shares and rewards.\n"
          "\n"
          "  --data DIR          where the worker and ledger keep their data (default: a new\n"
          "                      temporary dir); kept afterwards for inspection\n"
          "  --pool N            reward units to split (default 1000000)\n"
          "  --contributors C    contributors (default 10, 4 .. 64)\n"
          "  --proj-dim K        rademacher projection dim (default 256)\n"
          "  --seed S            split, corruption, curvature draws (default 1)\n"
          "  --quick             a reduced run: 400 training and 100 test digits\n"
          "  --json              print one JSON object instead of the table\n"
          "  --quiet             no progress on stderr\n"
          "  --help              this text\n",
          f);
}

static int parse_u64(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "sediment demo: %s: expected a non-negative integer, got '%s'\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}

int sdm_demo_main(int argc, char **argv)
{
    demo_opts o = {.pool = 1000000, .contributors = 10, .corrupt = 3, .proj_dim = 256, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.quick = 1;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--data") || !strcmp(a, "--pool") || !strcmp(a, "--contributors") ||
                   !strcmp(a, "--proj-dim") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sediment demo: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            uint64_t x = 0;
            if (!strcmp(a, "--data")) {
                if (!*v) {
                    fprintf(stderr, "sediment demo: --data: empty path\n");
                    return 2;
                }
                o.data = v;
                continue;
            }
            if (parse_u64(a, v, &x) != 0)
                return 2;
            if (!strcmp(a, "--pool")) {
                o.pool = x;
            } else if (!strcmp(a, "--contributors")) {
                if (x < 4 || x > MAX_CONTRIB) {
                    fprintf(stderr, "sediment demo: --contributors: must be 4 .. %d, got %s\n",
                            MAX_CONTRIB, v);
                    return 2;
                }
                o.contributors = (uint32_t)x;
            } else if (!strcmp(a, "--proj-dim")) {
                if (x < 1 || x > 650) {
                    fprintf(stderr, "sediment demo: --proj-dim: must be 1 .. 650, got %s\n", v);
                    return 2;
                }
                o.proj_dim = (uint32_t)x;
            } else {
                o.seed = x;
            }
        } else {
            fprintf(stderr, "sediment demo: unknown option '%s' (--help lists them)\n", a);
            return 2;
        }
    }
    s_t0 = now();
    s_quiet = o.quiet;
    demo_result *res = calloc(1, sizeof(*res));
    if (!res) {
        fprintf(stderr, "sediment demo: out of memory\n");
        return 1;
    }
    char err[512] = "";
    int rc = run_demo(&o, res, err, sizeof(err));
    res->seconds = now() - s_t0;
    if (rc != 0) {
        fprintf(stderr, "sediment demo: %s\n", err[0] ? err : "failed");
        if (res->dir[0])
            fprintf(stderr, "sediment demo: data dir %s kept for inspection\n", res->dir);
        free(res);
        return 1;
    }
    if (o.json)
        print_json(&o, res, stdout);
    else
        print_table(&o, res, stdout);
    int ok = res->verified == res->size && res->size > 0;
    free(res);
    return ok ? 0 : 1;
}
