/* reference.c - SPEC §2-§3 as plain loops in double: the executable spec.
 *
 * Nothing here is fast and nothing here is shared with the fast paths' arithmetic: it
 * projects entry by entry, builds the whole m x n score matrix, factors K with a textbook
 * Cholesky and sorts. Tests hold the cpu and cuda backends to it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../attribute.h"
#include "../philox.h"

/* Row j of P (k entries, double) per SPEC §2. */
static void p_row(const sdm_projection *p, uint64_t j, double *row)
{
    uint32_t k = p->dim;
    memset(row, 0, k * sizeof(double));
    if (p->kind == SDM_PROJ_RADEMACHER) {
        uint32_t w[4];
        for (uint32_t c = 0; c < k; c++) {
            if (c % 128 == 0)
                sdm_rademacher_block(p->seed, j, c / 128, w);
            int neg = (w[(c % 128) / 32] >> (c % 32)) & 1u;
            row[c] = (neg ? -1.0 : 1.0) / sqrt((double)k);
        }
    } else if (p->kind == SDM_PROJ_SJLT) {
        uint32_t s = p->s ? p->s : 1;
        for (uint32_t t = 0; t < s; t++) {
            uint32_t col;
            int sign;
            sdm_sjlt_entry(p->seed, j, t, k / s, &col, &sign);
            row[col] += sign / sqrt((double)s);
        }
    } else {
        row[j] = 1.0;
    }
}

sdm_status sdm_project_reference(const sdm_projection *proj, const sdm_matrix *in, float *out)
{
    uint64_t n = in->rows, d = in->cols;
    uint32_t k = proj->dim;
    double *acc = calloc(n * k + 1, sizeof(double));
    double *row = malloc(k * sizeof(double));
    if (!acc || !row) {
        free(acc);
        free(row);
        return SDM_ERR_NOMEM;
    }
    for (uint64_t j = 0; j < d; j++) {
        p_row(proj, j, row);
        for (uint64_t r = 0; r < n; r++) {
            double g = sdm_matrix_get(in, r * d + j);
            for (uint32_t c = 0; c < k; c++)
                acc[r * k + c] += g * row[c];
        }
    }
    for (uint64_t x = 0; x < n * k; x++)
        out[x] = (float)acc[x];
    free(acc);
    free(row);
    return SDM_OK;
}

/* A = L L^T in place (lower triangle); 0 on success, -1 when A is not positive definite. */
static int cholesky(double *A, uint32_t k)
{
    for (uint32_t j = 0; j < k; j++) {
        double d = A[(size_t)j * k + j];
        for (uint32_t p = 0; p < j; p++)
            d -= A[(size_t)j * k + p] * A[(size_t)j * k + p];
        if (!(d > 0))
            return -1;
        d = sqrt(d);
        A[(size_t)j * k + j] = d;
        for (uint32_t i = j + 1; i < k; i++) {
            double v = A[(size_t)i * k + j];
            for (uint32_t p = 0; p < j; p++)
                v -= A[(size_t)i * k + p] * A[(size_t)j * k + p];
            A[(size_t)i * k + j] = v / d;
        }
    }
    return 0;
}

/* x <- (L L^T)^{-1} x. */
static void chol_solve(const double *L, uint32_t k, double *x)
{
    for (uint32_t i = 0; i < k; i++) {
        double v = x[i];
        for (uint32_t p = 0; p < i; p++)
            v -= L[(size_t)i * k + p] * x[p];
        x[i] = v / L[(size_t)i * k + i];
    }
    for (uint32_t i = k; i-- > 0;) {
        double v = x[i];
        for (uint32_t p = i + 1; p < k; p++)
            v -= L[(size_t)p * k + i] * x[p];
        x[i] = v / L[(size_t)i * k + i];
    }
}

typedef struct ranked {
    double score;
    uint64_t e;
} ranked;

static int by_score_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->e < y->e ? -1 : (x->e > y->e);
}

static int by_score_asc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->e < y->e ? -1 : (x->e > y->e);
}

/* Adds lr * score_c to S (m x n_examples) for one checkpoint. */
static sdm_status score_checkpoint(sdm_engine_t *eng, sdm_store_t *s, const sdm_snapshot *snap,
                                   const sdm_attr_request *req, size_t i, uint32_t c, double *S,
                                   double *lambda_out)
{
    const sdm_query *q = &req->queries[i];
    const sdm_ckpt *ck = &s->ckpts[c];
    uint64_t m = q->rows.rows, rows = snap->feat_rows[c], ne = snap->n_examples;
    uint32_t k = s->k;
    float *qf = malloc(m * k * sizeof(float) + 1);
    double *Q = malloc(m * k * sizeof(double) + 1);
    double *K = NULL;
    sdm_status st = qf && Q ? SDM_OK : SDM_ERR_NOMEM;
    if (st == SDM_OK) {
        if (q->is_features || s->proj.kind == SDM_PROJ_NONE)
            for (uint64_t x = 0; x < m * k; x++)
                qf[x] = sdm_matrix_get(&q->rows, x);
        else
            st = sdm_project_reference(&s->proj, &q->rows, qf);
    }
    if (st != SDM_OK)
        goto done;
    for (uint64_t x = 0; x < m * k; x++)
        Q[x] = qf[x];
    if (req->method == SDM_METHOD_TRAK) {
        const sdm_rows *X = snap->curv_rows[c] > 0 ? &ck->curv : &ck->feat;
        uint64_t xr = snap->curv_rows[c] > 0 ? snap->curv_rows[c] : rows;
        K = calloc((size_t)k * k, sizeof(double));
        if (!K) {
            st = SDM_ERR_NOMEM;
            goto done;
        }
        for (uint64_t r = 0; r < xr; r++)
            for (uint32_t a = 0; a < k; a++)
                for (uint32_t b = 0; b < k; b++)
                    K[(size_t)a * k + b] +=
                        (double)X->data[r * k + a] * (double)X->data[r * k + b];
        double lambda = q->lambda;
        if (isnan(lambda) || lambda < 0) {
            double tr = 0;
            for (uint32_t a = 0; a < k; a++)
                tr += K[(size_t)a * k + a];
            lambda = 0.3 * tr / k;
        }
        *lambda_out = lambda;
        for (uint32_t a = 0; a < k; a++)
            K[(size_t)a * k + a] += lambda;
        if (cholesky(K, k) != 0) {
            st = sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                                 "lambda['%s']: K + lambda I is not positive definite",
                                 q->checkpoint);
            goto done;
        }
        for (uint64_t x = 0; x < m; x++)
            chol_solve(K, k, Q + x * k);
    }
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t e = ck->row_example[r];
        if (e >= ne)
            continue;
        const float *f = ck->feat.data + r * k;
        double fnorm = 0;
        for (uint32_t j = 0; j < k; j++)
            fnorm += (double)f[j] * f[j];
        fnorm = sqrt(fnorm);
        for (uint64_t x = 0; x < m; x++) {
            double dot = 0, qnorm = 0;
            for (uint32_t j = 0; j < k; j++) {
                dot += Q[x * k + j] * f[j];
                qnorm += Q[x * k + j] * Q[x * k + j];
            }
            if (req->method == SDM_METHOD_COSINE)
                dot = (qnorm > 0 && fnorm > 0) ? dot / (sqrt(qnorm) * fnorm) : 0;
            S[x * ne + e] += ck->lr * ck->weight[r] * dot;
        }
    }
done:
    free(qf);
    free(Q);
    free(K);
    return st == SDM_ERR_NOMEM ? sdm_engine_fail(eng, st, "reference: out of memory") : st;
}

sdm_status sdm_attribute_reference(sdm_engine_t *eng, sdm_store_t *s,
                                   const sdm_attr_request *req, sdm_attr_result **out)
{
    *out = NULL;
    size_t nq = req ? req->n_queries : 0;
    uint32_t *ckpt_of = calloc(nq + 1, sizeof(uint32_t));
    if (!ckpt_of)
        return SDM_ERR_NOMEM;
    sdm_snapshot snap;
    sdm_status st = sdm_attr_validate(eng, s, req, &snap, ckpt_of);
    if (st != SDM_OK) {
        free(ckpt_of);
        return st;
    }
    uint64_t m = req->queries[0].rows.rows, ne = snap.n_examples;
    uint64_t *shard_size = calloc(snap.n_shards + 1, sizeof(uint64_t));
    uint8_t *present = calloc(ne + 1, 1);
    double *S = calloc(m * ne + 1, sizeof(double));
    ranked *rk = malloc((ne + 1) * sizeof(ranked));
    uint64_t n_present = 0;
    sdm_attr_result *r = NULL;
    if (!shard_size || !present || !S || !rk) {
        st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "reference: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nq; i++) {
        const sdm_ckpt *ck = &s->ckpts[ckpt_of[i]];
        for (uint64_t row = 0; row < snap.feat_rows[ckpt_of[i]]; row++)
            if (ck->row_example[row] < ne)
                present[ck->row_example[row]] = 1;
    }
    for (uint64_t e = 0; e < ne; e++)
        if (present[e]) {
            n_present++;
            shard_size[s->examples[e].shard]++;
        }
    uint32_t topk = req->topk < n_present ? req->topk : (uint32_t)n_present;
    r = sdm_attr_result_alloc(s, &snap, m, topk, req->method == SDM_METHOD_TRAK ? nq : 0);
    if (!r) {
        st = sdm_engine_fail(eng, SDM_ERR_NOMEM, "reference: out of memory");
        goto done;
    }
    r->n_examples = n_present;
    for (size_t i = 0; i < nq && st == SDM_OK; i++) {
        double lambda = 0;
        st = score_checkpoint(eng, s, &snap, req, i, ckpt_of[i], S, &lambda);
        if (r->n_lambdas)
            r->lambdas[i] = lambda;
    }
    if (st != SDM_OK)
        goto done;
    for (uint64_t x = 0; x < m; x++) {
        for (uint64_t e = 0; e < ne; e++)
            if (present[e])
                r->shard_score[x * r->n_shards + s->examples[e].shard] += S[x * ne + e];
    }
    sdm_attr_result_finish(r, req->aggregate, shard_size);
    for (uint64_t x = 0; x < m && topk > 0; x++) {
        uint64_t n = 0;
        for (uint64_t e = 0; e < ne; e++)
            if (present[e])
                rk[n++] = (ranked){S[x * ne + e], e};
        qsort(rk, n, sizeof(ranked), by_score_desc);
        for (uint32_t t = 0; t < topk; t++)
            r->top[x * topk + t] =
                (sdm_hit){s->examples[rk[t].e].id, s->examples[rk[t].e].shard, rk[t].score};
        qsort(rk, n, sizeof(ranked), by_score_asc);
        for (uint32_t t = 0; t < topk; t++)
            r->bottom[x * topk + t] =
                (sdm_hit){s->examples[rk[t].e].id, s->examples[rk[t].e].shard, rk[t].score};
    }
done:
    free(shard_size);
    free(present);
    free(S);
    free(rk);
    free(ckpt_of);
    sdm_snapshot_free(&snap);
    if (st != SDM_OK)
        sdm_attr_result_free(&r);
    *out = r;
    return st;
}
