/* attribute.c - SPEC §3 attribution over the store: the fast path behind sdm_attribute.
 *
 * Shard and contributor scores come from per-batch feature sums (scores are linear in the
 * features), so they cost O(batches x k), not O(n x k). Only top-k needs the per-example
 * pass, which the backend runs in tiles. K for trak is cached per checkpoint and extended
 * as rows arrive.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribute.h"

sdm_attr_result *sdm_attr_result_alloc(const sdm_store_t *s, const sdm_snapshot *snap,
                                       uint64_t m, uint32_t topk, size_t n_lambdas)
{
    sdm_attr_result *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    size_t ns = snap->n_shards, nc = snap->n_contributors;
    r->m = m;
    r->store_size = snap->size;
    r->n_shards = ns;
    r->n_contributors = nc;
    r->topk = topk;
    r->n_lambdas = n_lambdas;
    r->shard_names = calloc(ns + 1, sizeof(char *));
    r->shard_contributor = calloc(ns + 1, sizeof(char *));
    r->shard_owner = calloc(ns + 1, sizeof(uint32_t));
    r->contributor_names = calloc(nc + 1, sizeof(char *));
    r->shard_score = calloc(m * ns + 1, sizeof(double));
    r->shard_share = calloc(m * ns + 1, sizeof(double));
    r->contributor_score = calloc(m * nc + 1, sizeof(double));
    r->contributor_share = calloc(m * nc + 1, sizeof(double));
    r->top = calloc(m * topk + 1, sizeof(sdm_hit));
    r->bottom = calloc(m * topk + 1, sizeof(sdm_hit));
    r->lambdas = calloc(n_lambdas + 1, sizeof(double));
    if (!r->shard_names || !r->shard_contributor || !r->shard_owner || !r->contributor_names ||
        !r->shard_score || !r->shard_share || !r->contributor_score || !r->contributor_share ||
        !r->top || !r->bottom || !r->lambdas) {
        sdm_attr_result_free(&r);
        return NULL;
    }
    for (size_t i = 0; i < ns; i++) {
        r->shard_names[i] = s->shard_names.names[i];
        r->shard_owner[i] = s->shard_owner[i];
        r->shard_contributor[i] = s->contrib_names.names[s->shard_owner[i]];
    }
    for (size_t i = 0; i < nc; i++)
        r->contributor_names[i] = s->contrib_names.names[i];
    return r;
}

void sdm_attr_result_free(sdm_attr_result **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_attr_result *r = *self_p;
    free((void *)r->shard_names);
    free((void *)r->shard_contributor);
    free(r->shard_owner);
    free((void *)r->contributor_names);
    free(r->shard_score);
    free(r->shard_share);
    free(r->contributor_score);
    free(r->contributor_share);
    free(r->top);
    free(r->bottom);
    free(r->lambdas);
    free(r);
    *self_p = NULL;
}

static void shares_of(const double *score, double *share, size_t n)
{
    double denom = 0;
    for (size_t i = 0; i < n; i++)
        denom += score[i] > 0 ? score[i] : 0;
    for (size_t i = 0; i < n; i++)
        share[i] = denom > 0 && score[i] > 0 ? score[i] / denom : 0;
}

void sdm_attr_result_finish(sdm_attr_result *r, sdm_aggregate agg, const uint64_t *shard_size)
{
    size_t ns = r->n_shards, nc = r->n_contributors;
    for (uint64_t q = 0; q < r->m; q++) {
        double *a = r->shard_score + q * ns;
        double *c = r->contributor_score + q * nc;
        if (agg == SDM_AGG_MEAN)
            for (size_t s = 0; s < ns; s++)
                a[s] = shard_size[s] ? a[s] / (double)shard_size[s] : 0;
        for (size_t s = 0; s < ns; s++)
            c[r->shard_owner[s]] += a[s];
        shares_of(a, r->shard_share + q * ns, ns);
        shares_of(c, r->contributor_share + q * nc, nc);
    }
}

sdm_status sdm_attr_validate(sdm_engine_t *eng, sdm_store_t *s, const sdm_attr_request *req,
                             sdm_snapshot *snap, uint32_t *ckpt_of)
{
    if (!req)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "request: missing");
    if (!sdm_method_name(req->method))
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "method: must be dot, cosine or trak");
    if (!sdm_aggregate_name(req->aggregate))
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "aggregate: must be sum or mean");
    if (req->n_queries == 0 || !req->queries)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "queries: at least one checkpoint");
    sdm_status st = sdm_store_snapshot(s, req->store_size, snap);
    if (st != SDM_OK)
        return st;
    uint64_t m = req->queries[0].rows.rows;
    char field[1200];
    for (size_t i = 0; i < req->n_queries && st == SDM_OK; i++) {
        const sdm_query *q = &req->queries[i];
        long c = q->checkpoint ? sdm_strtab_find(&s->ckpt_names, q->checkpoint) : -1;
        if (!q->checkpoint) {
            st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "queries[%zu].checkpoint: missing", i);
            break;
        }
        snprintf(field, sizeof(field), "queries['%s']", q->checkpoint);
        if (c < 0 || (snap->feat_rows[c] == 0 && snap->curv_rows[c] == 0)) {
            st = sdm_engine_fail(eng, SDM_ERR_NOT_FOUND, "%s: unknown checkpoint", field);
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (ckpt_of[j] == (uint32_t)c)
                st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s: checkpoint given twice",
                                     field);
        ckpt_of[i] = (uint32_t)c;
        int features = q->is_features || s->proj.kind == SDM_PROJ_NONE;
        if (st == SDM_OK)
            st = sdm_check_matrix(eng, field, &q->rows, features ? s->k : s->proj.input_dim);
        if (st == SDM_OK && q->rows.rows != m)
            st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                 "%s.rows: %llu queries, but the first checkpoint has %llu",
                                 field, (unsigned long long)q->rows.rows,
                                 (unsigned long long)m);
        if (st == SDM_OK && req->method == SDM_METHOD_TRAK && isinf(q->lambda))
            st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "lambda['%s']: must be finite",
                                 q->checkpoint);
    }
    if (st == SDM_OK && m == 0)
        st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "queries: at least one query row");
    if (st != SDM_OK)
        sdm_snapshot_free(snap);
    return st;
}

sdm_status sdm_attr_query_features(sdm_engine_t *eng, sdm_store_t *s, const sdm_query *q,
                                   float *out)
{
    uint64_t count = q->rows.rows * (uint64_t)s->k;
    if (q->is_features || s->proj.kind == SDM_PROJ_NONE) {
        for (uint64_t i = 0; i < count; i++)
            out[i] = sdm_matrix_get(&q->rows, i);
        return SDM_OK;
    }
    return sdm_engine_run_project(eng, &s->proj, &q->rows, out);
}

/* K of checkpoint c over `rows` rows of block X, extending the cache when it can. On
 * success *K points at the cache or at *scratch (the caller frees *scratch). */
static sdm_status gram_at(sdm_store_t *s, const sdm_rows *X, sdm_gram *cache, uint64_t rows,
                          double **K, double **scratch)
{
    uint32_t k = s->k;
    size_t kk = (size_t)k * k;
    *scratch = NULL;
    if (rows < cache->rows) {
        /* an older snapshot than the cache: compute it afresh */
        *scratch = calloc(kk, sizeof(double));
        if (!*scratch)
            return sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "trak: out of memory for K");
        *K = *scratch;
        return sdm_engine_run_gram(s->eng, X->data, rows, k, *scratch);
    }
    if (!cache->K) {
        cache->K = calloc(kk, sizeof(double));
        if (!cache->K)
            return sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "trak: out of memory for K");
        cache->rows = 0;
    }
    if (rows > cache->rows) {
        /* extend in a copy so a failure leaves the cache consistent */
        double *next = malloc(kk * sizeof(double));
        if (!next)
            return sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "trak: out of memory for K");
        memcpy(next, cache->K, kk * sizeof(double));
        sdm_status st = sdm_engine_run_gram(s->eng, X->data + (size_t)cache->rows * k,
                                            rows - cache->rows, k, next);
        if (st != SDM_OK) {
            free(next);
            return st;
        }
        free(cache->K);
        cache->K = next;
        cache->rows = rows;
    }
    *K = cache->K;
    return SDM_OK;
}

sdm_status sdm_attr_trak_lambda(sdm_store_t *s, const sdm_snapshot *snap, uint32_t c,
                                double requested, double **Kout, double *lambda,
                                double **scratch)
{
    sdm_ckpt *ck = &s->ckpts[c];
    double *K;
    sdm_status st = snap->curv_rows[c] > 0
                        ? gram_at(s, &ck->curv, &ck->gram_curv, snap->curv_rows[c], &K, scratch)
                        : gram_at(s, &ck->feat, &ck->gram_feat, snap->feat_rows[c], &K, scratch);
    if (st != SDM_OK)
        return st;
    if (isnan(requested) || requested < 0) {
        double tr = 0;
        for (uint32_t j = 0; j < s->k; j++)
            tr += K[(size_t)j * s->k + j];
        requested = 0.3 * tr / s->k;
    }
    *Kout = K;
    *lambda = requested;
    return SDM_OK;
}

/* Queries prepared for scoring at one checkpoint: lr * transform(Q), in double. */
static sdm_status prepare_queries(sdm_engine_t *eng, sdm_store_t *s, const sdm_snapshot *snap,
                                  const sdm_attr_request *req, size_t i, uint32_t c,
                                  const float *qf, double *qd, double *lambda_out)
{
    uint64_t m = req->queries[i].rows.rows;
    uint32_t k = s->k;
    double lr = s->ckpts[c].lr;
    for (uint64_t x = 0; x < m * k; x++)
        qd[x] = qf[x];
    if (req->method == SDM_METHOD_COSINE) {
        for (uint64_t q = 0; q < m; q++) {
            double nn = 0;
            for (uint32_t j = 0; j < k; j++)
                nn += qd[q * k + j] * qd[q * k + j];
            double inv = nn > 0 ? 1.0 / sqrt(nn) : 0;
            for (uint32_t j = 0; j < k; j++)
                qd[q * k + j] *= inv;
        }
    } else if (req->method == SDM_METHOD_TRAK) {
        double *K, lambda, *scratch;
        sdm_status st =
            sdm_attr_trak_lambda(s, snap, c, req->queries[i].lambda, &K, &lambda, &scratch);
        if (st != SDM_OK)
            return st;
        size_t kk = (size_t)k * k;
        double *A = scratch ? scratch : malloc(kk * sizeof(double));
        if (!A)
            return sdm_engine_fail(eng, SDM_ERR_NOMEM, "trak: out of memory");
        if (A != K)
            memcpy(A, K, kk * sizeof(double));
        for (uint32_t j = 0; j < k; j++)
            A[(size_t)j * k + j] += lambda;
        st = sdm_engine_run_solve(eng, k, A, m, qd);
        free(A);
        if (st == SDM_ERR_BAD_INPUT)
            return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                   "lambda['%s']: K + lambda I is not positive definite "
                                   "(lambda %g)",
                                   req->queries[i].checkpoint, lambda);
        if (st != SDM_OK)
            return st;
        *lambda_out = lambda;
    }
    for (uint64_t x = 0; x < m * k; x++)
        qd[x] *= lr;
    return SDM_OK;
}

/* Adds this checkpoint's shard scores: A[q][s] += qd[q] . sum_{b in s, b < size} sum_b. */
static sdm_status add_shard_scores(sdm_store_t *s, const sdm_snapshot *snap, uint32_t c,
                                   int unit, const double *qd, uint64_t m, double *A)
{
    uint32_t k = s->k;
    size_t ns = snap->n_shards;
    double *ssum = calloc(ns * k + 1, sizeof(double));
    if (!ssum)
        return sdm_engine_fail(s->eng, SDM_ERR_NOMEM, "attribute: out of memory");
    const sdm_ckpt *ck = &s->ckpts[c];
    for (uint64_t x = 0; x < ck->n_batch_list; x++) {
        uint64_t b = ck->batch_list[x];
        if (b >= snap->size)
            break;
        const sdm_batch_rec *r = &s->batches[b];
        const double *v = unit ? r->unit_sum : r->sum;
        double *dst = ssum + (size_t)r->shard * k;
        for (uint32_t j = 0; j < k; j++)
            dst[j] += v[j];
    }
    for (uint64_t q = 0; q < m; q++)
        for (size_t sh = 0; sh < ns; sh++) {
            const double *v = ssum + sh * k, *qq = qd + q * k;
            double acc = 0;
            for (uint32_t j = 0; j < k; j++)
                acc += qq[j] * v[j];
            A[q * ns + sh] += acc;
        }
    free(ssum);
    return SDM_OK;
}

uint64_t sdm_attr_present(const sdm_store_t *s, const sdm_snapshot *snap, const uint32_t *ckpt_of,
                          size_t n_used, uint64_t *shard_size)
{
    uint64_t present = 0;
    for (uint64_t e = 0; e < snap->n_examples; e++) {
        int in = 0;
        for (size_t i = 0; i < n_used && !in; i++) {
            const sdm_ckpt *ck = &s->ckpts[ckpt_of[i]];
            in = e < ck->n_ex_map && ck->ex_row[e] >= 0 &&
                 (uint64_t)ck->ex_row[e] < snap->feat_rows[ckpt_of[i]];
        }
        if (in) {
            present++;
            if (shard_size)
                shard_size[s->examples[e].shard]++;
        }
    }
    return present;
}

/* The per-example pass for top-k. */
static sdm_status run_topk(sdm_engine_t *eng, sdm_store_t *s, const sdm_snapshot *snap,
                           const sdm_attr_request *req, const uint32_t *ckpt_of,
                           float *const *qf, uint32_t topk, sdm_attr_result *r)
{
    size_t nq = req->n_queries;
    uint64_t m = r->m;
    sdm_status st = SDM_OK;
    sdm_pass_ckpt *pc = calloc(nq, sizeof(*pc));
    float **scales = calloc(nq, sizeof(float *));
    int64_t **maps = calloc(nq, sizeof(int64_t *));
    uint64_t *top_idx = malloc(m * topk * sizeof(uint64_t));
    uint64_t *bot_idx = malloc(m * topk * sizeof(uint64_t));
    float *top_score = malloc(m * topk * sizeof(float));
    float *bot_score = malloc(m * topk * sizeof(float));
    if (!pc || !scales || !maps || !top_idx || !bot_idx || !top_score || !bot_score) {
        st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nq; i++) {
        sdm_ckpt *ck = &s->ckpts[ckpt_of[i]];
        uint64_t rows = snap->feat_rows[ckpt_of[i]];
        scales[i] = malloc((rows + 1) * sizeof(float));
        if (!scales[i]) {
            st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
            goto done;
        }
        for (uint64_t x = 0; x < rows; x++) {
            float sc = ck->weight[x];
            if (req->method == SDM_METHOD_COSINE)
                sc = ck->norm[x] > 0 ? sc / ck->norm[x] : 0.0f;
            scales[i][x] = sc;
        }
        pc[i].q = qf[i];
        pc[i].feat = ck->feat.data;
        pc[i].row_scale = scales[i];
        pc[i].n_rows = rows;
        pc[i].cache = &ck->cache;
        pc[i].n_ex_map = ck->n_ex_map < snap->n_examples ? ck->n_ex_map : snap->n_examples;
        pc[i].ex_row = ck->ex_row;
        if (rows < ck->feat.n) {
            /* an older snapshot: hide rows that arrived after it */
            maps[i] = malloc((pc[i].n_ex_map + 1) * sizeof(int64_t));
            if (!maps[i]) {
                st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
                goto done;
            }
            for (uint64_t e = 0; e < pc[i].n_ex_map; e++)
                maps[i][e] = ck->ex_row[e] >= 0 && (uint64_t)ck->ex_row[e] < rows
                                 ? ck->ex_row[e] : -1;
            pc[i].ex_row = maps[i];
        }
    }
    sdm_pass pass = {
        .m = m, .k = s->k, .n_examples = snap->n_examples, .n_ckpts = nq, .ckpts = pc,
        .topk = topk, .workspace_bytes = sdm_engine_workspace(eng), .top_idx = top_idx,
        .top_score = top_score, .bot_idx = bot_idx, .bot_score = bot_score,
    };
    st = sdm_engine_run_topk(eng, &pass);
    if (st != SDM_OK)
        goto done;
    for (uint64_t x = 0; x < m * topk; x++) {
        const sdm_example *te = &s->examples[top_idx[x]], *be = &s->examples[bot_idx[x]];
        r->top[x] = (sdm_hit){te->id, te->shard, top_score[x]};
        r->bottom[x] = (sdm_hit){be->id, be->shard, bot_score[x]};
    }
done:
    for (size_t i = 0; scales && maps && i < nq; i++) {
        free(scales[i]);
        free(maps[i]);
    }
    free(scales);
    free(maps);
    free(pc);
    free(top_idx);
    free(bot_idx);
    free(top_score);
    free(bot_score);
    return st;
}

sdm_status sdm_attribute(sdm_engine_t *eng, sdm_store_t *s, const sdm_attr_request *req,
                         sdm_attr_result **out)
{
    if (!eng || !s || !out)
        return SDM_ERR_BAD_INPUT;
    *out = NULL;
    size_t nq = req ? req->n_queries : 0;
    uint32_t *ckpt_of = calloc(nq + 1, sizeof(uint32_t));
    if (!ckpt_of)
        return sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
    sdm_snapshot snap;
    sdm_status st = sdm_attr_validate(eng, s, req, &snap, ckpt_of);
    if (st != SDM_OK) {
        free(ckpt_of);
        return st;
    }
    uint64_t m = req->queries[0].rows.rows;
    uint32_t k = s->k;
    uint64_t *shard_size = calloc(snap.n_shards + 1, sizeof(uint64_t));
    uint64_t present = sdm_attr_present(s, &snap, ckpt_of, nq, shard_size);
    uint32_t topk = req->topk < present ? req->topk : (uint32_t)present;
    sdm_attr_result *r = sdm_attr_result_alloc(s, &snap, m, topk,
                                               req->method == SDM_METHOD_TRAK ? nq : 0);
    float **qf = calloc(nq, sizeof(float *));
    double *qd = malloc(m * k * sizeof(double));
    if (!shard_size || !r || !qf || !qd) {
        st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
        goto done;
    }
    r->n_examples = present;
    for (size_t i = 0; i < nq && st == SDM_OK; i++) {
        qf[i] = malloc(m * k * sizeof(float));
        if (!qf[i]) {
            st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "attribute: out of memory");
            break;
        }
        double lambda = 0;
        st = sdm_attr_query_features(eng, s, &req->queries[i], qf[i]);
        if (st == SDM_OK)
            st = prepare_queries(eng, s, &snap, req, i, ckpt_of[i], qf[i], qd, &lambda);
        if (st == SDM_OK)
            st = add_shard_scores(s, &snap, ckpt_of[i], req->method == SDM_METHOD_COSINE, qd, m,
                                  r->shard_score);
        if (r->n_lambdas)
            r->lambdas[i] = lambda;
        for (uint64_t x = 0; x < m * k; x++) /* the pass takes prepared queries in f32 */
            qf[i][x] = (float)qd[x];
    }
    if (st == SDM_OK)
        sdm_attr_result_finish(r, req->aggregate, shard_size);
    if (st == SDM_OK && topk > 0)
        st = run_topk(eng, s, &snap, req, ckpt_of, qf, topk, r);
done:
    for (size_t i = 0; qf && i < nq; i++)
        free(qf[i]);
    free(qf);
    free(qd);
    free(shard_size);
    free(ckpt_of);
    sdm_snapshot_free(&snap);
    if (st != SDM_OK)
        sdm_attr_result_free(&r);
    *out = r;
    return st;
}
