/* project.c - cpu projections (SPEC §2): rademacher through sgemm on a regenerated P,
 * rademacher for a few rows through signed axpys, sjlt as a streaming scatter.
 *
 * A rademacher P of at most SDM_CPU_P_CACHE_BYTES (and the engine's workspace) is generated once and kept by the backend
 * (the last one used), so that small batches, the worker's usual ingest, cost one sgemm
 * rather than a regeneration of all d x k entries each. A larger P is regenerated tile by
 * tile and never held whole. Results depend only on the data and (seed, j, c): threads split
 * work along columns or rows, never along the sum over j in a way that changes with the
 * thread count.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../philox.h"
#include "cpu.h"

#define P_TILE_ROWS 256   /* rows of P regenerated per sgemm */
#define G_TILE_ROWS 2048  /* input rows converted per block (f16/bf16) */
#define G_TILE_BYTES ((size_t)64 << 20) /* and at most this much converted input at once */
#define FEW_ROWS 16       /* below this many rows the axpy path beats sgemm */
#define SJLT_TILE 4096    /* input coordinates per sjlt bucket table */

void sdm_cpu_convert_row(const sdm_matrix *in, uint64_t r, uint64_t c0, uint64_t nc, float *o)
{
    uint64_t base = r * in->cols + c0;
    if (in->dtype == SDM_F32) {
        memcpy(o, (const float *)in->data + base, nc * sizeof(float));
    } else if (in->dtype == SDM_BF16) {
        const uint16_t *h = (const uint16_t *)in->data + base;
        for (uint64_t c = 0; c < nc; c++) {
            uint32_t u = (uint32_t)h[c] << 16;
            memcpy(&o[c], &u, 4);
        }
    } else {
        const uint16_t *h = (const uint16_t *)in->data + base;
        for (uint64_t c = 0; c < nc; c++)
            o[c] = sdm_f16_to_f32(h[c]);
    }
}

void sdm_cpu_convert_block(const sdm_matrix *in, uint64_t r0, uint64_t nr, uint64_t c0,
                           uint64_t nc, float *out)
{
#pragma omp parallel for schedule(static) if (nr * nc > 65536)
    for (uint64_t r = 0; r < nr; r++)
        sdm_cpu_convert_row(in, r0 + r, c0, nc, out + r * nc);
}

/* Rows [j0, j0+nj) of P for rademacher, scaled by 1/sqrt(k). */
static void rademacher_tile(const sdm_projection *p, uint64_t j0, uint64_t nj, float *P)
{
    uint32_t k = p->dim;
    float v = (float)(1.0 / sqrt((double)k));
#pragma omp parallel for schedule(static)
    for (uint64_t jj = 0; jj < nj; jj++) {
        float *row = P + jj * k;
        uint32_t w[4];
        for (uint32_t c = 0; c < k; c++) {
            if (c % 128 == 0)
                sdm_rademacher_block(p->seed, j0 + jj, c / 128, w);
            row[c] = ((w[(c % 128) / 32] >> (c % 32)) & 1u) ? -v : v;
        }
    }
}

/* The whole P of a rademacher projection, from the backend's cache (made on first use), or
 * NULL when it is over the cache's size or memory ran short (callers then tile). */
static const float *cached_rademacher(sdm_backend *be, const sdm_projection *p)
{
    sdm_cpu_state *st = be->ctx;
    uint64_t d = p->input_dim;
    uint32_t k = p->dim;
    size_t limit = SDM_CPU_P_CACHE_BYTES;
    if (be->workspace && be->workspace < limit)
        limit = be->workspace;
    if (!st || d > limit / sizeof(float) / k)
        return NULL;
    if (st->P && st->seed == p->seed && st->d == d && st->k == k)
        return st->P;
    free(st->P);
    st->P = malloc((size_t)d * k * sizeof(float));
    if (!st->P)
        return NULL;
    rademacher_tile(p, 0, d, st->P);
    st->seed = p->seed;
    st->d = d;
    st->k = k;
    return st->P;
}

static sdm_status project_rademacher_gemm(sdm_backend *be, const sdm_projection *p,
                                          const sdm_matrix *in, float *out)
{
    uint64_t n = in->rows, d = in->cols;
    uint32_t k = p->dim;
    int direct = in->dtype == SDM_F32;
    const float *whole = cached_rademacher(be, p);
    uint64_t tile_rows = whole ? d : P_TILE_ROWS;
    /* f16/bf16 input is converted G_TILE_ROWS rows at a time, fewer when rows are long */
    uint64_t gr = G_TILE_BYTES / (tile_rows * sizeof(float));
    gr = gr < 1 ? 1 : (gr > G_TILE_ROWS ? G_TILE_ROWS : gr);
    gr = direct || n < gr ? n : gr;
    float *P = whole ? NULL : malloc((size_t)P_TILE_ROWS * k * sizeof(float));
    float *G = direct ? NULL : malloc((size_t)gr * tile_rows * sizeof(float));
    if ((!whole && !P) || (!direct && !G)) {
        free(P);
        free(G);
        return sdm_backend_fail(be, SDM_ERR_NOMEM, "project: out of memory");
    }
    memset(out, 0, (size_t)n * k * sizeof(float));
    for (uint64_t j0 = 0; j0 < d; j0 += tile_rows) {
        uint64_t nj = d - j0 < tile_rows ? d - j0 : tile_rows;
        const float *Pt = whole ? whole + j0 * k : P;
        if (!whole)
            rademacher_tile(p, j0, nj, P);
        if (direct) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)nj,
                        1.0f, (const float *)in->data + j0, (int)d, Pt, (int)k, 1.0f, out,
                        (int)k);
            continue;
        }
        for (uint64_t r0 = 0; r0 < n; r0 += gr) {
            uint64_t nr = n - r0 < gr ? n - r0 : gr;
            sdm_cpu_convert_block(in, r0, nr, j0, nj, G);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)k, (int)nj,
                        1.0f, G, (int)nj, Pt, (int)k, 1.0f, out + r0 * k, (int)k);
        }
    }
    free(P);
    free(G);
    return SDM_OK;
}

/* Few rows: threads own 128-column blocks, one philox call per (j, block); the input is
 * converted a column block at a time so memory stays bounded. */
static sdm_status project_rademacher_few(sdm_backend *be, const sdm_projection *p,
                                         const sdm_matrix *in, float *out)
{
    uint64_t n = in->rows, d = in->cols;
    uint32_t k = p->dim;
    uint32_t blocks = (k + 127) / 128;
    float v = (float)(1.0 / sqrt((double)k));
    uint64_t tile = d < SJLT_TILE ? d : SJLT_TILE;
    float *g = malloc((size_t)n * tile * sizeof(float));
    if (!g)
        return sdm_backend_fail(be, SDM_ERR_NOMEM, "project: out of memory");
    memset(out, 0, (size_t)n * k * sizeof(float));
    for (uint64_t j0 = 0; j0 < d; j0 += tile) {
        uint64_t nj = d - j0 < tile ? d - j0 : tile;
        sdm_cpu_convert_block(in, 0, n, j0, nj, g);
#pragma omp parallel for schedule(dynamic, 1)
        for (uint32_t b = 0; b < blocks; b++) {
            uint32_t c0 = b * 128, nc = k - c0 < 128 ? k - c0 : 128;
            float sgn[128];
            uint32_t w[4];
            for (uint64_t jj = 0; jj < nj; jj++) {
                sdm_rademacher_block(p->seed, j0 + jj, b, w);
                for (uint32_t c = 0; c < nc; c++)
                    sgn[c] = ((w[c / 32] >> (c % 32)) & 1u) ? -v : v;
                for (uint64_t r = 0; r < n; r++) {
                    float x = g[r * nj + jj];
                    float *o = out + r * k + c0;
                    for (uint32_t c = 0; c < nc; c++)
                        o[c] += x * sgn[c];
                }
            }
        }
    }
    free(g);
    return SDM_OK;
}

static sdm_status project_sjlt(sdm_backend *be, const sdm_projection *p, const sdm_matrix *in,
                               float *out)
{
    uint64_t n = in->rows, d = in->cols;
    uint32_t k = p->dim, s = p->s ? p->s : 1, kb = k / s;
    float v = (float)(1.0 / sqrt((double)s));
    uint64_t tile = d < SJLT_TILE ? d : SJLT_TILE;
    uint32_t *col = malloc((size_t)tile * s * sizeof(uint32_t));
    float *val = malloc((size_t)tile * s * sizeof(float));
    if (!col || !val) {
        free(col);
        free(val);
        return sdm_backend_fail(be, SDM_ERR_NOMEM, "project: out of memory");
    }
    memset(out, 0, (size_t)n * k * sizeof(float));
    int oom = 0;
    for (uint64_t j0 = 0; j0 < d && !oom; j0 += tile) {
        uint64_t nj = d - j0 < tile ? d - j0 : tile;
#pragma omp parallel for schedule(static)
        for (uint64_t jj = 0; jj < nj; jj++)
            for (uint32_t t = 0; t < s; t++) {
                int sign;
                sdm_sjlt_entry(p->seed, j0 + jj, t, kb, &col[jj * s + t], &sign);
                val[jj * s + t] = sign * v;
            }
#pragma omp parallel reduction(| : oom)
        {
            float *x = malloc(nj * sizeof(float));
            oom |= !x;
#pragma omp for schedule(static)
            for (uint64_t r = 0; r < n; r++) {
                if (!x)
                    continue;
                float *o = out + r * k;
                sdm_cpu_convert_row(in, r, j0, nj, x);
                for (uint64_t jj = 0; jj < nj; jj++)
                    for (uint32_t t = 0; t < s; t++)
                        o[col[jj * s + t]] += val[jj * s + t] * x[jj];
            }
            free(x);
        }
    }
    free(col);
    free(val);
    return oom ? sdm_backend_fail(be, SDM_ERR_NOMEM, "project: out of memory") : SDM_OK;
}

sdm_status sdm_cpu_project(sdm_backend *be, const sdm_projection *p, const sdm_matrix *in,
                           float *out)
{
    switch (p->kind) {
    case SDM_PROJ_NONE:
        sdm_cpu_convert_block(in, 0, in->rows, 0, in->cols, out);
        return SDM_OK;
    case SDM_PROJ_RADEMACHER:
        return in->rows < FEW_ROWS ? project_rademacher_few(be, p, in, out)
                                   : project_rademacher_gemm(be, p, in, out);
    case SDM_PROJ_SJLT:
        return project_sjlt(be, p, in, out);
    }
    return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "projection.kind: unknown");
}
