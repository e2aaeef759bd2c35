/* test_cuda_backend.c - the CUDA backend, slot by slot, against the CPU reference backend.
 *
 * Registers its suite only when a CUDA device is present; without one it says so and exits
 * 0, so CI without a GPU stays green and honest. Tolerances: normalised mean squared error
 * (sum (gpu - cpu)^2 / sum cpu^2) <= 1e-10 for projections, gram and solves; top-k indices
 * exactly equal (the data keep distinct scores well apart, and duplicate rows make exact
 * ties that both backends must break towards the lower example index), top-k scores within
 * 1e-5 of the query's largest score.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "backend.h"
#include "sediment/engine.h"

static sdm_backend g_cpu, g_gpu;
static int g_cpu_up, g_gpu_up;
static uint64_t g_rng = 0x243f6a8885a308d3ull;

/* Uniform in [-1, 1) from splitmix64: reproducible across platforms. */
static double rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

static double nmse_f(const float *got, const float *want, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - (double)want[i];
        num += e * e;
        den += (double)want[i] * (double)want[i];
    }
    return den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
}

static double nmse_d(const double *got, const double *want, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = got[i] - want[i];
        num += e * e;
        den += want[i] * want[i];
    }
    return den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

static int suite_init(void)
{
    sdm_status st;
    memset(&g_cpu, 0, sizeof g_cpu);
    memset(&g_gpu, 0, sizeof g_gpu);
    st = sdm_cpu_backend_init(&g_cpu, 0);
    if (st != SDM_OK) {
        fprintf(stderr, "cpu backend: %s: %s\n", sdm_status_str(st), g_cpu.error);
        return -1;
    }
    g_cpu_up = 1;
    st = sdm_cuda_backend_init(&g_gpu, 0);
    if (st != SDM_OK) {
        fprintf(stderr, "cuda backend: %s: %s\n", sdm_status_str(st), g_gpu.error);
        return -1;
    }
    g_gpu_up = 1;
    printf("\ncuda device: %s\n", g_gpu.device);
    return 0;
}

static int suite_clean(void)
{
    if (g_gpu_up)
        g_gpu.iface->free(&g_gpu);
    if (g_cpu_up)
        g_cpu.iface->free(&g_cpu);
    g_gpu_up = g_cpu_up = 0;
    return 0;
}

/* ---- project -------------------------------------------------------------------------- */

typedef struct shape {
    uint64_t n, d;
    uint32_t k;
} shape;

/* k = 130 and 300 are not multiples of 128; n = 1 and d = 1 are the degenerate edges; n = 70
 * and 200 span several 64-row tiles; 3 x 40000 makes the kernels split the input dimension. */
static const shape k_shapes[] = {
    {1, 1, 130}, {1, 3000, 300}, {70, 257, 130}, {200, 1500, 300}, {3, 40000, 256}, {9, 2, 1},
};

static void *make_input(sdm_dtype dt, uint64_t n, uint64_t d)
{
    size_t count = (size_t)(n * d);
    if (dt == SDM_F32) {
        float *x = (float *)xcalloc(count, sizeof *x);
        for (size_t i = 0; i < count; i++)
            x[i] = (float)rnd();
        return x;
    }
    uint16_t *h = (uint16_t *)xcalloc(count, sizeof *h);
    for (size_t i = 0; i < count; i++)
        h[i] = dt == SDM_F16 ? sdm_f32_to_f16((float)rnd()) : sdm_f32_to_bf16((float)rnd());
    return h;
}

static void check_project(sdm_proj_kind kind, uint32_t s, sdm_dtype dt, uint64_t n, uint64_t d,
                          uint32_t k)
{
    sdm_projection proj = {kind, d, k, s, 0x5eed0000beefull + d};
    void *data = make_input(dt, n, d);
    sdm_matrix in = {dt, n, d, data};
    size_t count = (size_t)(n * k);
    float *want = (float *)xcalloc(count, sizeof *want);
    float *got = (float *)xcalloc(count, sizeof *got);
    float *again = (float *)xcalloc(count, sizeof *again);
    sdm_status sc = g_cpu.iface->project(&g_cpu, &proj, &in, want);
    sdm_status sg = g_gpu.iface->project(&g_gpu, &proj, &in, got);
    sdm_status sa = g_gpu.iface->project(&g_gpu, &proj, &in, again);
    double e = nmse_f(got, want, count);

    CU_ASSERT_EQUAL(sc, SDM_OK);
    CU_ASSERT_EQUAL(sg, SDM_OK);
    CU_ASSERT_EQUAL(sa, SDM_OK);
    CU_ASSERT(e <= 1e-10);
    /* Same bits on every run: no float atomics, no scheduling-dependent sums. */
    CU_ASSERT(memcmp(got, again, count * sizeof *got) == 0);
    if (sc != SDM_OK || sg != SDM_OK || sa != SDM_OK || !(e <= 1e-10))
        printf("\n  project %s s=%u %s n=%llu d=%llu k=%u: cpu %s, cuda %s (%s), nmse %g\n",
               sdm_proj_kind_name(kind), s, sdm_dtype_name(dt), (unsigned long long)n,
               (unsigned long long)d, k, sdm_status_str(sc), sdm_status_str(sg), g_gpu.error, e);
    free(data);
    free(want);
    free(got);
    free(again);
}

static const sdm_dtype k_dtypes[] = {SDM_F32, SDM_F16, SDM_BF16};

static void test_project_rademacher(void)
{
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
            check_project(SDM_PROJ_RADEMACHER, 0, k_dtypes[t], k_shapes[i].n, k_shapes[i].d,
                          k_shapes[i].k);
}

static void test_project_sjlt(void)
{
    static const uint32_t ss[] = {1, 2, 4};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
            for (size_t j = 0; j < 3; j++)
                if (k_shapes[i].k % ss[j] == 0)
                    check_project(SDM_PROJ_SJLT, ss[j], k_dtypes[t], k_shapes[i].n,
                                  k_shapes[i].d, k_shapes[i].k);
}

static void test_project_none(void)
{
    static const shape sh[] = {{5, 130, 130}, {1, 1, 1}, {3, 300, 300}};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
            check_project(SDM_PROJ_NONE, 0, k_dtypes[t], sh[i].n, sh[i].d, sh[i].k);
}

/* ---- gram ----------------------------------------------------------------------------- */

static void check_gram(uint64_t n, uint32_t k)
{
    size_t kk = (size_t)k * k;
    float *rows = (float *)xcalloc((size_t)(n * k), sizeof *rows);
    double *Kc = (double *)xcalloc(kk, sizeof *Kc);
    double *Kg = (double *)xcalloc(kk, sizeof *Kg);
    sdm_status sc, sg;
    int symmetric = 1;
    double e;

    for (size_t i = 0; i < (size_t)(n * k); i++)
        rows[i] = (float)rnd();
    /* A non-zero start: the slot adds to K. */
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j <= i; j++)
            Kc[(size_t)i * k + j] = Kc[(size_t)j * k + i] = rnd();
    memcpy(Kg, Kc, kk * sizeof *Kg);
    sc = g_cpu.iface->gram(&g_cpu, rows, n, k, Kc);
    sg = g_gpu.iface->gram(&g_gpu, rows, n, k, Kg);
    CU_ASSERT_EQUAL(sc, SDM_OK);
    CU_ASSERT_EQUAL(sg, SDM_OK);
    e = nmse_d(Kg, Kc, kk);
    CU_ASSERT(e <= 1e-10);
    for (uint32_t i = 0; i < k && symmetric; i++)
        for (uint32_t j = 0; j < i; j++)
            if (Kg[(size_t)i * k + j] != Kg[(size_t)j * k + i]) {
                symmetric = 0;
                break;
            }
    CU_ASSERT(symmetric);
    if (sc != SDM_OK || sg != SDM_OK || !(e <= 1e-10) || !symmetric)
        printf("\n  gram n=%llu k=%u: cpu %s, cuda %s (%s), nmse %g, symmetric %d\n",
               (unsigned long long)n, k, sdm_status_str(sc), sdm_status_str(sg), g_gpu.error, e,
               symmetric);
    free(rows);
    free(Kc);
    free(Kg);
}

static void test_gram(void)
{
    /* 5000 rows are more than one 4096-row device chunk. */
    check_gram(1, 130);
    check_gram(1, 300);
    check_gram(5000, 130);
    check_gram(5000, 300);
}

/* ---- solve_spd ------------------------------------------------------------------------ */

static void check_solve(uint32_t k, uint64_t m)
{
    size_t kk = (size_t)k * k, mk = (size_t)(m * k), nx = 2 * (size_t)k;
    float *X = (float *)xcalloc(nx * k, sizeof *X);
    double *A = (double *)xcalloc(kk, sizeof *A), *Ac = (double *)xcalloc(kk, sizeof *Ac);
    double *Ag = (double *)xcalloc(kk, sizeof *Ag);
    double *B = (double *)xcalloc(mk, sizeof *B), *Bc = (double *)xcalloc(mk, sizeof *Bc);
    double *Bg = (double *)xcalloc(mk, sizeof *Bg);
    double e, res_num = 0.0, res_den = 0.0;
    sdm_status sc, sg;

    for (size_t i = 0; i < nx * k; i++)
        X[i] = (float)rnd();
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (size_t r = 0; r < nx; r++)
                s += (double)X[r * k + i] * (double)X[r * k + j];
            s /= (double)nx;
            if (i == j)
                s += 0.5;
            A[(size_t)i * k + j] = A[(size_t)j * k + i] = s;
        }
    for (size_t i = 0; i < mk; i++)
        B[i] = rnd();
    memcpy(Ac, A, kk * sizeof *A);
    memcpy(Ag, A, kk * sizeof *A);
    memcpy(Bc, B, mk * sizeof *B);
    memcpy(Bg, B, mk * sizeof *B);
    sc = g_cpu.iface->solve_spd(&g_cpu, k, Ac, m, Bc);
    sg = g_gpu.iface->solve_spd(&g_gpu, k, Ag, m, Bg);
    CU_ASSERT_EQUAL(sc, SDM_OK);
    CU_ASSERT_EQUAL(sg, SDM_OK);
    e = nmse_d(Bg, Bc, mk);
    CU_ASSERT(e <= 1e-10);
    /* And the GPU's answer solves the system: Bg A = B. */
    for (uint64_t q = 0; q < m; q++)
        for (uint32_t j = 0; j < k; j++) {
            double s = 0.0;
            for (uint32_t i = 0; i < k; i++)
                s += Bg[q * k + i] * A[(size_t)i * k + j];
            res_num += (s - B[q * k + j]) * (s - B[q * k + j]);
            res_den += B[q * k + j] * B[q * k + j];
        }
    CU_ASSERT(res_num <= 1e-16 * res_den);
    if (sc != SDM_OK || sg != SDM_OK || !(e <= 1e-10))
        printf("\n  solve k=%u m=%llu: cpu %s, cuda %s (%s), nmse %g, residual %g\n", k,
               (unsigned long long)m, sdm_status_str(sc), sdm_status_str(sg), g_gpu.error, e,
               res_den > 0 ? res_num / res_den : res_num);
    free(X);
    free(A);
    free(Ac);
    free(Ag);
    free(B);
    free(Bc);
    free(Bg);
}

static void test_solve_spd(void)
{
    check_solve(130, 1);
    check_solve(130, 7);
    check_solve(300, 1);
    check_solve(300, 7);
}

static void test_solve_not_pd(void)
{
    const uint32_t k = 130;
    double *A = (double *)xcalloc((size_t)k * k, sizeof *A);
    double *B = (double *)xcalloc(3 * (size_t)k, sizeof *B);
    sdm_status sg;
    for (uint32_t i = 0; i < k; i++)
        A[(size_t)i * k + i] = 1.0;
    A[(size_t)(k - 1) * k + (k - 1)] = -1.0;
    for (size_t i = 0; i < 3 * (size_t)k; i++)
        B[i] = rnd();
    g_gpu.error[0] = '\0';
    sg = g_gpu.iface->solve_spd(&g_gpu, k, A, 3, B);
    CU_ASSERT_EQUAL(sg, SDM_ERR_BAD_INPUT);
    CU_ASSERT(g_gpu.error[0] != '\0');
    free(A);
    free(B);
}

/* ---- topk_pass ------------------------------------------------------------------------ */

/* Two checkpoints over 300 examples, k = 130, m = 5 queries.
 *   A: 320 rows (some never mapped, like curvature rows); examples 0..279 map to rows
 *      e + e/50 (increasing, with gaps); 30..39 are absent; 280..299 lie past its map.
 *   B: 200 rows; examples 100..299 map to rows e - 100 (contiguous); the rest are absent.
 * So 30..39 are in no checkpoint, 0..99 and 280..299 in one, 100..279 in both.
 * Duplicates make exact ties: example 20 copies 10 (A only), example 250 copies 150 (both).
 * Example 60's row in A is all zeros with scale 0 (cosine's zero row). */
#define TK_K 130u
#define TK_M 5u
#define TK_NEX 300u

typedef struct tk_world {
    float *q[2];
    float *feat[2];
    float *scale[2];
    int64_t *ex_row[2];
    uint64_t n_ex_map[2];
    uint64_t n_rows[2];
} tk_world;

static void copy_row(tk_world *w, int c, int64_t from, int64_t to)
{
    memcpy(w->feat[c] + (size_t)to * TK_K, w->feat[c] + (size_t)from * TK_K, TK_K * sizeof(float));
    w->scale[c][to] = w->scale[c][from];
}

static void tk_build(tk_world *w)
{
    w->n_rows[0] = 320;
    w->n_rows[1] = 200;
    w->n_ex_map[0] = 280;
    w->n_ex_map[1] = TK_NEX;
    for (int c = 0; c < 2; c++) {
        w->q[c] = (float *)xcalloc((size_t)TK_M * TK_K, sizeof(float));
        w->feat[c] = (float *)xcalloc((size_t)w->n_rows[c] * TK_K, sizeof(float));
        w->scale[c] = (float *)xcalloc(w->n_rows[c], sizeof(float));
        w->ex_row[c] = (int64_t *)xcalloc(w->n_ex_map[c], sizeof(int64_t));
        for (size_t i = 0; i < (size_t)TK_M * TK_K; i++)
            w->q[c][i] = (float)rnd();
        for (size_t i = 0; i < (size_t)w->n_rows[c] * TK_K; i++)
            w->feat[c][i] = (float)rnd();
        for (uint64_t r = 0; r < w->n_rows[c]; r++)
            w->scale[c][r] = (float)(1.0 + 0.5 * rnd());
    }
    for (uint64_t e = 0; e < w->n_ex_map[0]; e++)
        w->ex_row[0][e] = (e >= 30 && e < 40) ? -1 : (int64_t)(e + e / 50);
    for (uint64_t e = 0; e < w->n_ex_map[1]; e++)
        w->ex_row[1][e] = e >= 100 ? (int64_t)(e - 100) : -1;
    copy_row(w, 0, w->ex_row[0][10], w->ex_row[0][20]);
    copy_row(w, 0, w->ex_row[0][150], w->ex_row[0][250]);
    copy_row(w, 1, w->ex_row[1][150], w->ex_row[1][250]);
    memset(w->feat[0] + (size_t)w->ex_row[0][60] * TK_K, 0, TK_K * sizeof(float));
    w->scale[0][w->ex_row[0][60]] = 0.0f;
}

static void tk_free(tk_world *w)
{
    for (int c = 0; c < 2; c++) {
        free(w->q[c]);
        free(w->feat[c]);
        free(w->scale[c]);
        free(w->ex_row[c]);
    }
}

static int tk_present(const tk_world *w, size_t nck, uint64_t e)
{
    for (size_t c = 0; c < nck; c++)
        if (e < w->n_ex_map[c] && w->ex_row[c][e] >= 0 &&
            (uint64_t)w->ex_row[c][e] < w->n_rows[c])
            return 1;
    return 0;
}

static uint32_t tk_count_present(const tk_world *w, size_t nck)
{
    uint32_t n = 0;
    for (uint64_t e = 0; e < TK_NEX; e++)
        n += (uint32_t)tk_present(w, nck, e);
    return n;
}

typedef struct tk_out {
    uint64_t *top_idx, *bot_idx;
    float *top_score, *bot_score;
} tk_out;

static void tk_out_alloc(tk_out *o, uint32_t topk)
{
    o->top_idx = (uint64_t *)xcalloc((size_t)TK_M * topk, sizeof(uint64_t));
    o->bot_idx = (uint64_t *)xcalloc((size_t)TK_M * topk, sizeof(uint64_t));
    o->top_score = (float *)xcalloc((size_t)TK_M * topk, sizeof(float));
    o->bot_score = (float *)xcalloc((size_t)TK_M * topk, sizeof(float));
}

static void tk_out_free(tk_out *o)
{
    free(o->top_idx);
    free(o->bot_idx);
    free(o->top_score);
    free(o->bot_score);
}

static sdm_status tk_run(sdm_backend *be, const tk_world *w, size_t nck, uint32_t topk, size_t ws,
                         void **cache, tk_out *o)
{
    sdm_pass_ckpt ck[2];
    sdm_pass pass;
    memset(ck, 0, sizeof ck);
    memset(&pass, 0, sizeof pass);
    for (size_t c = 0; c < nck; c++) {
        ck[c].q = w->q[c];
        ck[c].feat = w->feat[c];
        ck[c].row_scale = w->scale[c];
        ck[c].ex_row = w->ex_row[c];
        ck[c].n_ex_map = w->n_ex_map[c];
        ck[c].n_rows = w->n_rows[c];
        ck[c].cache = cache ? &cache[c] : NULL;
    }
    pass.m = TK_M;
    pass.k = TK_K;
    pass.n_examples = TK_NEX;
    pass.n_ckpts = nck;
    pass.ckpts = ck;
    pass.topk = topk;
    pass.workspace_bytes = ws;
    pass.top_idx = o->top_idx;
    pass.top_score = o->top_score;
    pass.bot_idx = o->bot_idx;
    pass.bot_score = o->bot_score;
    return be->iface->topk_pass(be, &pass);
}

/* Sorted with ties to the lower index, nothing absent, nothing twice. */
static int tk_well_formed(const tk_world *w, size_t nck, const uint64_t *idx, const float *sc,
                          uint32_t topk, int descending)
{
    for (uint32_t i = 0; i < topk; i++) {
        if (idx[i] >= TK_NEX || !tk_present(w, nck, idx[i]))
            return 0;
        for (uint32_t j = 0; j < i; j++)
            if (idx[j] == idx[i])
                return 0;
        if (i > 0) {
            float a = sc[i - 1], b = sc[i];
            int ordered = descending ? a > b : a < b;
            if (!ordered && !(a == b && idx[i - 1] < idx[i]))
                return 0;
        }
    }
    return 1;
}

static void tk_compare(const tk_world *w, size_t nck, uint32_t topk, size_t ws, const char *what,
                       const tk_out *c, const tk_out *g)
{
    int idx_ok = 1, score_ok = 1, formed = 1;
    for (uint32_t q = 0; q < TK_M; q++) {
        size_t row = (size_t)q * topk;
        double scale = fmax(fabs((double)c->top_score[row]), fabs((double)c->bot_score[row]));
        double tol = 1e-5 * (scale > 0 ? scale : 1.0);
        for (uint32_t i = 0; i < topk; i++) {
            if (g->top_idx[row + i] != c->top_idx[row + i] ||
                g->bot_idx[row + i] != c->bot_idx[row + i])
                idx_ok = 0;
            if (fabs((double)g->top_score[row + i] - (double)c->top_score[row + i]) > tol ||
                fabs((double)g->bot_score[row + i] - (double)c->bot_score[row + i]) > tol)
                score_ok = 0;
        }
        formed &= tk_well_formed(w, nck, g->top_idx + row, g->top_score + row, topk, 1);
        formed &= tk_well_formed(w, nck, g->bot_idx + row, g->bot_score + row, topk, 0);
    }
    CU_ASSERT(idx_ok);
    CU_ASSERT(score_ok);
    CU_ASSERT(formed);
    if (!idx_ok || !score_ok || !formed)
        printf("\n  topk %s: %zu ckpt(s), topk %u, workspace %zu: idx %d, scores %d, order %d\n",
               what, nck, topk, ws, idx_ok, score_ok, formed);
}

static void check_topk(const tk_world *w, size_t nck, uint32_t topk, size_t ws, int use_cache)
{
    tk_out c, g;
    void *cache[2] = {NULL, NULL};
    sdm_status sc, sg;
    tk_out_alloc(&c, topk);
    tk_out_alloc(&g, topk);
    /* The reference runs with room to spare: its answer must not depend on the workspace. */
    sc = tk_run(&g_cpu, w, nck, topk, (size_t)256 << 20, NULL, &c);
    sg = tk_run(&g_gpu, w, nck, topk, ws, use_cache ? cache : NULL, &g);
    CU_ASSERT_EQUAL(sc, SDM_OK);
    CU_ASSERT_EQUAL(sg, SDM_OK);
    if (sc == SDM_OK && sg == SDM_OK)
        tk_compare(w, nck, topk, ws, use_cache ? "cached" : "streamed", &c, &g);
    else
        printf("\n  topk_pass %zu ckpt(s) topk %u ws %zu: cpu %s, cuda %s (%s)\n", nck, topk, ws,
               sdm_status_str(sc), sdm_status_str(sg), g_gpu.error);
    if (use_cache && sg == SDM_OK) {
        /* A second call finds the rows resident and must agree with the first. */
        tk_out g2;
        tk_out_alloc(&g2, topk);
        CU_ASSERT_EQUAL(tk_run(&g_gpu, w, nck, topk, ws, cache, &g2), SDM_OK);
        CU_ASSERT(memcmp(g.top_idx, g2.top_idx, (size_t)TK_M * topk * sizeof(uint64_t)) == 0);
        CU_ASSERT(memcmp(g.top_score, g2.top_score, (size_t)TK_M * topk * sizeof(float)) == 0);
        CU_ASSERT(memcmp(g.bot_idx, g2.bot_idx, (size_t)TK_M * topk * sizeof(uint64_t)) == 0);
        tk_out_free(&g2);
    }
    for (int i = 0; i < 2; i++)
        if (cache[i])
            g_gpu.iface->cache_free(&g_gpu, cache[i]);
    tk_out_free(&c);
    tk_out_free(&g);
}

/* 256 MiB: one tile. 16 KiB: tiles of a few examples. 4 KiB: one query at a time too. */
static const size_t k_workspaces[] = {(size_t)256 << 20, (size_t)16 << 10, (size_t)4 << 10};

static void run_topk_cases(size_t nck)
{
    tk_world w;
    uint32_t all;
    tk_build(&w);
    all = tk_count_present(&w, nck);
    {
        const uint32_t topks[] = {1, 7, all};
        for (size_t t = 0; t < 3; t++)
            for (size_t s = 0; s < 3; s++)
                for (int cached = 0; cached < 2; cached++)
                    check_topk(&w, nck, topks[t], k_workspaces[s], cached);
    }
    tk_free(&w);
}

static void test_topk_one_ckpt(void) { run_topk_cases(1); }

static void test_topk_two_ckpts(void) { run_topk_cases(2); }

/* Rows past the snapshot (n_rows) belong to examples that came after it: absent there, as on
 * the cpu backend. B's snapshot ends at row 150, so examples 250..279 are left with their
 * rows in A only and 280..299 with none. */
static void test_topk_rows_past_snapshot(void)
{
    tk_world w, snap;
    tk_build(&w);
    snap = w;
    snap.n_rows[1] = 150;
    {
        const uint32_t topks[] = {1, 7, tk_count_present(&snap, 2)};
        for (size_t t = 0; t < 3; t++)
            for (size_t s = 0; s < 3; s++)
                for (int cached = 0; cached < 2; cached++)
                    check_topk(&snap, 2, topks[t], k_workspaces[s], cached);
    }
    tk_free(&w);
}

/* The cache grows with the store: a first call on a prefix, a second on everything. */
static void test_topk_cache_growth(void)
{
    tk_world w, prefix;
    void *cache[2] = {NULL, NULL};
    tk_out c, g;
    const uint32_t topk = 7;
    tk_build(&w);
    prefix = w;
    prefix.n_rows[0] = 120;
    prefix.n_ex_map[0] = 110;
    tk_out_alloc(&c, topk);
    tk_out_alloc(&g, topk);
    CU_ASSERT_EQUAL(tk_run(&g_cpu, &prefix, 2, topk, (size_t)256 << 20, NULL, &c), SDM_OK);
    CU_ASSERT_EQUAL(tk_run(&g_gpu, &prefix, 2, topk, (size_t)16 << 10, cache, &g), SDM_OK);
    tk_compare(&prefix, 2, topk, (size_t)16 << 10, "prefix", &c, &g);
    CU_ASSERT_EQUAL(tk_run(&g_cpu, &w, 2, topk, (size_t)256 << 20, NULL, &c), SDM_OK);
    CU_ASSERT_EQUAL(tk_run(&g_gpu, &w, 2, topk, (size_t)16 << 10, cache, &g), SDM_OK);
    tk_compare(&w, 2, topk, (size_t)16 << 10, "grown", &c, &g);
    for (int i = 0; i < 2; i++)
        if (cache[i])
            g_gpu.iface->cache_free(&g_gpu, cache[i]);
    tk_out_free(&c);
    tk_out_free(&g);
    tk_free(&w);
}

static void test_topk_too_many(void)
{
    tk_world w;
    tk_out g;
    uint32_t topk;
    tk_build(&w);
    topk = tk_count_present(&w, 2) + 1;
    tk_out_alloc(&g, topk);
    CU_ASSERT_EQUAL(tk_run(&g_gpu, &w, 2, topk, (size_t)256 << 20, NULL, &g), SDM_ERR_BAD_INPUT);
    tk_out_free(&g);
    tk_free(&w);
}

int main(void)
{
    CU_pSuite suite;
    unsigned failed;

#ifdef SDM_HAVE_CUDA
    /* a build with CUDA must load its module (libsediment_cuda.so): only a missing device is
     * a reason to skip */
    sdm_engine_opts probe_opts = {SDM_BACKEND_CUDA, 0, 0, 0};
    sdm_status probe_st;
    char probe_err[256];
    sdm_engine_t *probe = sdm_engine_new(&probe_opts, &probe_st, probe_err, sizeof(probe_err));
    if (!probe && probe_st != SDM_ERR_DEVICE) {
        fprintf(stderr, "cuda engine: %s\n", probe_err);
        return 1;
    }
    sdm_engine_destroy(&probe);
#endif
    if (sdm_cuda_device_count() <= 0) {
        printf("no CUDA device: skipping\n");
        return 0;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return (int)CU_get_error();
    suite = CU_add_suite("cuda_backend", suite_init, suite_clean);
    if (!suite || !CU_add_test(suite, "project rademacher", test_project_rademacher) ||
        !CU_add_test(suite, "project sjlt", test_project_sjlt) ||
        !CU_add_test(suite, "project none", test_project_none) ||
        !CU_add_test(suite, "gram", test_gram) ||
        !CU_add_test(suite, "solve_spd", test_solve_spd) ||
        !CU_add_test(suite, "solve_spd not positive definite", test_solve_not_pd) ||
        !CU_add_test(suite, "topk_pass one checkpoint", test_topk_one_ckpt) ||
        !CU_add_test(suite, "topk_pass two checkpoints", test_topk_two_ckpts) ||
        !CU_add_test(suite, "topk_pass cache growth", test_topk_cache_growth) ||
        !CU_add_test(suite, "topk_pass rows past the snapshot", test_topk_rows_past_snapshot) ||
        !CU_add_test(suite, "topk_pass topk too large", test_topk_too_many)) {
        CU_cleanup_registry();
        return (int)CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failed = CU_get_number_of_tests_failed() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    /* An exit status is 8 bits: cap the count rather than let 256 failures read as 0. */
    return failed > 255 ? 255 : (int)failed;
}
