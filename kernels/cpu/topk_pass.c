/* topk_pass.c - the cpu per-example pass: tiled sgemm into a score tile, then per-query
 * heaps of the topk highest and lowest scores (ties to the lower example index).
 *
 * Memory is bounded by the workspace: one m x T score tile, one m x T scratch tile for a
 * second checkpoint, and one T x k gather buffer used only when a checkpoint's rows for
 * the tile are not contiguous. The m x n score matrix never exists.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define TILE_MIN 64
#define TILE_MAX 8192

typedef struct hit {
    float score;
    uint64_t e;
} hit;

/* Heap order: the root is the entry that leaves first. For the top heap that is the lowest
 * score (ties: the higher index); for the bottom heap the highest (ties: the higher index).
 * `sign` is +1 for top, -1 for bottom. */
static int leaves_before(const hit *a, const hit *b, float sign)
{
    float x = sign * a->score, y = sign * b->score;
    if (x != y)
        return x < y;
    return a->e > b->e;
}

static void sift_down(hit *h, uint32_t n, uint32_t i, float sign)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && leaves_before(&h[l], &h[m], sign))
            m = l;
        if (r < n && leaves_before(&h[r], &h[m], sign))
            m = r;
        if (m == i)
            return;
        hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(hit *h, uint32_t i, float sign)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!leaves_before(&h[i], &h[p], sign))
            return;
        hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Offers a tile row to one heap. Examples arrive in increasing index, so an equal score
 * never displaces a kept one: that is the tie rule. */
static void offer(hit *h, uint32_t *len, uint32_t cap, const float *s, const uint8_t *present,
                  uint64_t e0, uint64_t T, float sign)
{
    uint32_t n = *len;
    for (uint64_t t = 0; t < T; t++) {
        if (!present[t])
            continue;
        float v = s[t];
        if (n < cap) {
            h[n] = (hit){v, e0 + t};
            sift_up(h, n++, sign);
        } else if (sign * v > sign * h[0].score) {
            h[0] = (hit){v, e0 + t};
            sift_down(h, n, 0, sign);
        }
    }
    *len = n;
}

/* Pops a heap into best-first order. */
static void drain(hit *h, uint32_t n, float sign, uint64_t *idx, float *score)
{
    for (uint32_t i = n; i-- > 0;) {
        idx[i] = h[0].e;
        score[i] = h[0].score;
        h[0] = h[i];
        sift_down(h, i, 0, sign);
    }
}

/* Rows of checkpoint c for examples [e0, e0+T): returns the first row when they are one
 * contiguous increasing run of present rows, else -1. Marks present examples. */
static int64_t contiguous_rows(const sdm_pass_ckpt *c, uint64_t e0, uint64_t T,
                               uint8_t *present, int *any)
{
    int64_t r0 = -1;
    int run = 1;
    *any = 0;
    for (uint64_t t = 0; t < T; t++) {
        uint64_t e = e0 + t;
        int64_t r = e < c->n_ex_map ? c->ex_row[e] : -1;
        if (r < 0 || (uint64_t)r >= c->n_rows) {
            run = 0;
            continue;
        }
        present[t] = 1;
        *any = 1;
        if (t == 0)
            r0 = r;
        else if (r != r0 + (int64_t)t)
            run = 0;
    }
    return run ? r0 : -1;
}

sdm_status sdm_cpu_topk_pass(sdm_backend *be, const sdm_pass *p)
{
    uint64_t m = p->m;
    uint32_t k = p->k, K = p->topk;
    size_t per_col = (2 * m + k) * sizeof(float) + sizeof(float) + 1;
    uint64_t T = p->workspace_bytes / per_col;
    if (T > TILE_MAX)
        T = TILE_MAX;
    if (T < TILE_MIN)
        T = TILE_MIN;
    if (T > p->n_examples)
        T = p->n_examples ? p->n_examples : 1;
    float *S = malloc(m * T * sizeof(float));
    float *tmp = p->n_ckpts > 1 ? malloc(m * T * sizeof(float)) : NULL;
    float *gather = malloc(T * k * sizeof(float));
    float *gscale = malloc(T * sizeof(float));
    uint8_t *present = malloc(T);
    hit *top = malloc(m * K * sizeof(hit));
    hit *bot = malloc(m * K * sizeof(hit));
    uint32_t *ntop = calloc(m, sizeof(uint32_t));
    uint32_t *nbot = calloc(m, sizeof(uint32_t));
    sdm_status st = SDM_OK;
    if (!S || (p->n_ckpts > 1 && !tmp) || !gather || !gscale || !present || !top || !bot ||
        !ntop || !nbot) {
        st = sdm_backend_fail(be, SDM_ERR_NOMEM, "topk_pass: out of memory (tile %llu)",
                              (unsigned long long)T);
        goto done;
    }
    for (uint64_t e0 = 0; e0 < p->n_examples; e0 += T) {
        uint64_t nt = p->n_examples - e0 < T ? p->n_examples - e0 : T;
        memset(present, 0, nt);
        int first = 1;
        for (size_t ci = 0; ci < p->n_ckpts; ci++) {
            const sdm_pass_ckpt *c = &p->ckpts[ci];
            int any;
            int64_t r0 = contiguous_rows(c, e0, nt, present, &any);
            if (!any)
                continue;
            const float *F, *scale;
            if (r0 >= 0) {
                F = c->feat + (size_t)r0 * k;
                scale = c->row_scale + r0;
            } else {
#pragma omp parallel for schedule(static)
                for (uint64_t t = 0; t < nt; t++) {
                    uint64_t e = e0 + t;
                    int64_t r = e < c->n_ex_map ? c->ex_row[e] : -1;
                    if (r >= 0 && (uint64_t)r < c->n_rows) {
                        memcpy(gather + t * k, c->feat + (size_t)r * k, k * sizeof(float));
                        gscale[t] = c->row_scale[r];
                    } else {
                        memset(gather + t * k, 0, k * sizeof(float));
                        gscale[t] = 0;
                    }
                }
                F = gather;
                scale = gscale;
            }
            float *dst = first ? S : tmp;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nt, (int)k, 1.0f,
                        c->q, (int)k, F, (int)k, 0.0f, dst, (int)nt);
#pragma omp parallel for schedule(static)
            for (uint64_t q = 0; q < m; q++) {
                float *d = dst + q * nt, *s = S + q * nt;
                if (first)
                    for (uint64_t t = 0; t < nt; t++)
                        d[t] *= scale[t];
                else
                    for (uint64_t t = 0; t < nt; t++)
                        s[t] += d[t] * scale[t];
            }
            first = 0;
        }
        if (first)
            continue; /* no example of this tile is in any checkpoint */
#pragma omp parallel for schedule(static)
        for (uint64_t q = 0; q < m; q++) {
            offer(top + q * K, &ntop[q], K, S + q * nt, present, e0, nt, 1.0f);
            offer(bot + q * K, &nbot[q], K, S + q * nt, present, e0, nt, -1.0f);
        }
    }
    for (uint64_t q = 0; q < m; q++) {
        if (ntop[q] != K || nbot[q] != K) {
            st = sdm_backend_fail(be, SDM_ERR_INTERNAL,
                                  "topk_pass: %u of %u hits for query %llu", ntop[q], K,
                                  (unsigned long long)q);
            goto done;
        }
        drain(top + q * K, K, 1.0f, p->top_idx + q * K, p->top_score + q * K);
        drain(bot + q * K, K, -1.0f, p->bot_idx + q * K, p->bot_score + q * K);
    }
done:
    free(S);
    free(tmp);
    free(gather);
    free(gscale);
    free(present);
    free(top);
    free(bot);
    free(ntop);
    free(nbot);
    return st;
}
