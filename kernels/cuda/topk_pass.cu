/* topk_pass.cu - the per-example pass of backend.h (struct sdm_pass): scores by tile, top-k per query.
 *
 * For each block of queries and each tile of T examples [e0, e0 + T):
 *   per checkpoint with rows in the tile: F (T x k) is the checkpoint's rows for the tile,
 *     G = Q_c F^T by cuBLAS sgemm, S = S + G diag(row_scale of the tile's rows);
 *   topk_select.cu reduces each query's row of S to its kk best and worst columns;
 *   those candidates go to pinned host memory, where per-query heaps merge them with the
 *   tie rule of SPEC §3 (equal scores: lower example index first).
 * S never exceeds (queries in a block) x T, so m x n_examples is never materialised.
 *
 * Features stay on the device between calls in the per-checkpoint cache (sdm_cuda_cache)
 * when they fit next to the workspace; otherwise each tile's rows are streamed from the host
 * on a second stream into double-buffered slots while the previous tile computes. The host
 * prepares tile i+1 and merges tile i-1 while the device works on tile i: the only host waits
 * are for a tile finished one step earlier.
 *
 * Every sgemm of a query block has the same shape (T rows even for the last, padded tile)
 * and 256-byte aligned operands, so cuBLAS picks the same kernel for every tile and two
 * identical feature rows score identically wherever they fall: ties stay ties.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"

#define TP_THREADS 256
#define TP_DEFAULT_WORKSPACE ((size_t)256 << 20)
#define TP_HEADROOM_MIN ((size_t)512 << 20)

enum { TP_SKIP = 0, TP_DIRECT = 1, TP_GATHER = 2 };

/* One checkpoint's state during a call. */
typedef struct tp_ckpt {
    const sdm_pass_ckpt *src;
    sdm_cuda_cache *cache; /* resident rows; NULL when this call streams them */
    int slot;              /* index among the streamed checkpoints; -1 when resident */
    int mode;              /* this tile's: TP_SKIP, TP_DIRECT (rows r0.. in order), TP_GATHER */
    uint64_t r0;
} tp_ckpt;

/* Where the pieces of one tile's metadata sit, host and device alike. */
typedef struct tp_layout {
    size_t present; /* T bytes: example present in some checkpoint */
    size_t scale;   /* n_ckpts x T floats: row_scale of the tile's row, 0 when absent */
    size_t idx;     /* n_ckpts x T int64: the tile's rows, -1 when absent */
    size_t bytes;
} tp_layout;

static tp_layout tp_meta_layout(uint32_t T, size_t nck)
{
    tp_layout l;
    l.present = 0;
    l.scale = sdm_cuda_round(T);
    l.idx = l.scale + sdm_cuda_round(nck * T * sizeof(float));
    l.bytes = l.idx + sdm_cuda_round(nck * T * sizeof(int64_t));
    return l;
}

/* ---- kernels ------------------------------------------------------------------------ */

/* F[t] = feat[idx[t]], or zeros when idx[t] < 0 (absent: contributes nothing). */
static __global__ void __launch_bounds__(TP_THREADS)
    tp_gather_kernel(const float *__restrict__ feat, const int64_t *__restrict__ idx, uint32_t k,
                     float *__restrict__ F)
{
    const int64_t r = idx[blockIdx.x];
    float *dst = F + (size_t)blockIdx.x * k;
    if (r < 0) {
        for (uint32_t c = threadIdx.x; c < k; c += blockDim.x)
            dst[c] = 0.0f;
        return;
    }
    const float *src = feat + (size_t)r * k;
    for (uint32_t c = threadIdx.x; c < k; c += blockDim.x)
        dst[c] = src[c];
}

/* S = (first ? 0 : S) + G diag(scale): one checkpoint's share, weighted per example. */
static __global__ void __launch_bounds__(TP_THREADS)
    tp_scale_add_kernel(float *__restrict__ S, const float *__restrict__ G,
                        const float *__restrict__ scale, uint32_t T, size_t total, int first)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const float v = G[i] * scale[i % T];
        S[i] = first ? v : S[i] + v;
    }
}

static cudaError_t tp_gather_launch(cudaStream_t stream, const float *feat, const int64_t *idx,
                                    uint32_t T, uint32_t k, float *F)
{
    tp_gather_kernel<<<T, TP_THREADS, 0, stream>>>(feat, idx, k, F);
    return cudaGetLastError();
}

static cudaError_t tp_scale_add_launch(cudaStream_t stream, float *S, const float *G,
                                       const float *scale, uint32_t T, size_t total, int first)
{
    size_t blocks = (total + TP_THREADS - 1) / TP_THREADS;
    if (blocks > 65535u * 16u)
        blocks = 65535u * 16u;
    tp_scale_add_kernel<<<(unsigned)blocks, TP_THREADS, 0, stream>>>(S, G, scale, T, total, first);
    return cudaGetLastError();
}

/* ---- per-checkpoint cache ----------------------------------------------------------- */

void sdm_cuda_cache_free(sdm_backend *be, void *cache)
{
    sdm_cuda_cache *c = (sdm_cuda_cache *)cache;
    int prev = -1;
    (void)be;
    /* Leaking something that is not ours beats freeing it. */
    if (!c || c->magic != SDM_CUDA_CACHE_MAGIC)
        return;
    if (c->feat) {
        if (cudaGetDevice(&prev) != cudaSuccess)
            prev = -1;
        (void)cudaSetDevice(c->device);
        (void)cudaFree(c->feat);
        if (prev >= 0)
            (void)cudaSetDevice(prev);
        (void)cudaGetLastError();
    }
    c->magic = 0;
    free(c);
}

/* Makes the checkpoint's first n_rows rows resident in its cache, uploading only rows not
 * there yet, when they fit in free memory beside `reserve` bytes. *out is the cache, or NULL
 * when the rows are to be streamed this call (no cache slot, or no room). */
static sdm_status tp_cache_prepare(sdm_backend *be, sdm_cuda_ctx *ctx, const sdm_pass_ckpt *ck,
                                   uint32_t k, size_t reserve, sdm_cuda_cache **out)
{
    sdm_status st = SDM_OK;
    sdm_cuda_cache *c = NULL;
    size_t free_b = 0, total_b = 0;
    const size_t row_bytes = (size_t)k * sizeof(float);
    uint64_t want = 0;
    float *nf = NULL;

    *out = NULL;
    if (!ck->cache)
        return SDM_OK;
    c = (sdm_cuda_cache *)*ck->cache;
    if (c && c->magic != SDM_CUDA_CACHE_MAGIC)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL, "checkpoint cache is not a cuda cache");
    if (c && (c->device != ctx->device || c->k != k)) {
        sdm_cuda_cache_free(be, c);
        *ck->cache = NULL;
        c = NULL;
    }
    if (!c) {
        c = (sdm_cuda_cache *)calloc(1, sizeof *c);
        if (!c)
            return sdm_backend_fail(be, SDM_ERR_NOMEM, "checkpoint cache");
        c->magic = SDM_CUDA_CACHE_MAGIC;
        c->device = ctx->device;
        c->k = k;
        *ck->cache = c;
    }
    if (c->rows >= ck->n_rows) {
        *out = c;
        return SDM_OK;
    }
    if (c->cap < ck->n_rows) {
        SDM_CUDA_CHECK(be, cudaMemGetInfo(&free_b, &total_b));
        /* Room to grow by half again, so that appending a batch at a time does not copy
         * the whole checkpoint every call. */
        want = c->cap + c->cap / 2;
        if (want < ck->n_rows)
            want = ck->n_rows;
        if (want * row_bytes + reserve > free_b)
            want = ck->n_rows;
        if (want * row_bytes + reserve > free_b)
            return SDM_OK;
        if (cudaMalloc((void **)&nf, want * row_bytes) != cudaSuccess) {
            (void)cudaGetLastError();
            return SDM_OK;
        }
        if (c->rows)
            SDM_CUDA_CHECK(be, cudaMemcpyAsync(nf, c->feat, c->rows * row_bytes,
                                               cudaMemcpyDeviceToDevice, ctx->stream));
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
        SDM_CUDA_CHECK(be, cudaFree(c->feat));
        c->feat = nf;
        c->cap = want;
        nf = NULL;
    }
    SDM_CUDA_CHECK(be, cudaMemcpyAsync(c->feat + c->rows * k, ck->feat + c->rows * k,
                                       (ck->n_rows - c->rows) * row_bytes, cudaMemcpyHostToDevice,
                                       ctx->stream));
    SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
    c->rows = ck->n_rows;
    *out = c;
done:
    if (nf)
        (void)cudaFree(nf);
    return st;
}

/* ---- host-side merge ---------------------------------------------------------------- */

/* Heaps live in the caller's output rows (scores and indices), worst entry at the root.
 * Entries compare by direction key (score key, bits flipped for the bottom list), then by
 * lower example index. */
static inline int tp_better(uint32_t ka, uint64_t ia, uint32_t kb, uint64_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

static inline uint32_t tp_key(const float *sc, uint32_t i, uint32_t flip)
{
    return sdm_cuda_score_key(sc[i]) ^ flip;
}

/* Places (score, idx) into a heap of n entries whose root slot is free. */
static void tp_sift_down(float *sc, uint64_t *ix, uint32_t n, uint32_t flip, float score,
                         uint64_t idx)
{
    const uint32_t key = sdm_cuda_score_key(score) ^ flip;
    uint32_t i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, w;
        if (l >= n)
            break;
        w = l;
        if (l + 1 < n && tp_better(tp_key(sc, l, flip), ix[l], tp_key(sc, l + 1, flip), ix[l + 1]))
            w = l + 1; /* the worse child */
        if (!tp_better(key, idx, tp_key(sc, w, flip), ix[w]))
            break;
        sc[i] = sc[w];
        ix[i] = ix[w];
        i = w;
    }
    sc[i] = score;
    ix[i] = idx;
}

static void tp_offer(float *sc, uint64_t *ix, uint32_t *size, uint32_t cap, uint32_t flip,
                     uint32_t key, float score, uint64_t idx)
{
    uint32_t i = *size;
    if (i < cap) {
        *size = i + 1;
        while (i > 0) {
            const uint32_t p = (i - 1) / 2;
            if (!tp_better(tp_key(sc, p, flip), ix[p], key, idx))
                break;
            sc[i] = sc[p];
            ix[i] = ix[p];
            i = p;
        }
        sc[i] = score;
        ix[i] = idx;
        return;
    }
    if (tp_better(key, idx, tp_key(sc, 0, flip), ix[0]))
        tp_sift_down(sc, ix, cap, flip, score, idx);
}

/* In place: the heap's worst goes last, then the next worst, ...: best first at the end. */
static void tp_heap_sort(float *sc, uint64_t *ix, uint32_t n, uint32_t flip)
{
    for (uint32_t end = n; end > 1; end--) {
        const float s = sc[end - 1];
        const uint64_t x = ix[end - 1];
        sc[end - 1] = sc[0];
        ix[end - 1] = ix[0];
        tp_sift_down(sc, ix, end - 1, flip, s, x);
    }
}

static void tp_merge(const sdm_pass *pass, uint64_t q0, uint64_t mq, uint32_t kk, uint64_t e0,
                     const uint2 *cand, uint32_t *hsize)
{
    const uint32_t topk = pass->topk;
    for (uint64_t q = 0; q < mq; q++) {
        for (int dir = 0; dir < 2; dir++) {
            const uint32_t flip = dir ? 0xffffffffu : 0u;
            const size_t row = (size_t)(q0 + q) * topk;
            float *sc = dir ? pass->bot_score + row : pass->top_score + row;
            uint64_t *ix = dir ? pass->bot_idx + row : pass->top_idx + row;
            uint32_t *size = &hsize[(q0 + q) * 2 + (uint64_t)dir];
            const uint2 *c = cand + ((size_t)q * 2 + (size_t)dir) * kk;
            for (uint32_t r = 0; r < kk; r++)
                tp_offer(sc, ix, size, topk, flip, c[r].x, sdm_cuda_key_score(c[r].x ^ flip),
                         e0 + c[r].y);
        }
    }
}

/* ---- the pass ----------------------------------------------------------------------- */

/* Device bytes of one call's scratch for query blocks of mc and tiles of T. */
static size_t tp_device_bytes(uint64_t mc, uint32_t T, uint32_t k, size_t nck, size_t n_str,
                              int any_resident, uint32_t topk)
{
    const uint32_t kcap = topk < T ? topk : T;
    size_t b = nck * sdm_cuda_round((size_t)mc * k * sizeof(float));
    b += 2 * sdm_cuda_round((size_t)mc * T * sizeof(float));
    if (any_resident)
        b += sdm_cuda_round((size_t)T * k * sizeof(float));
    b += 2 * n_str * sdm_cuda_round((size_t)T * k * sizeof(float));
    b += 2 * tp_meta_layout(T, nck).bytes;
    b += sdm_cuda_round((size_t)mc * 2 * kcap * sizeof(uint2));
    return b;
}

/* Example e's row at a checkpoint, or -1 when it has none in the snapshot. */
static int64_t tp_row(const sdm_pass_ckpt *p, uint64_t e)
{
    const int64_t r = e < p->n_ex_map ? p->ex_row[e] : -1;
    return r >= 0 && (uint64_t)r < p->n_rows ? r : -1;
}

sdm_status sdm_cuda_topk_pass(sdm_backend *be, const sdm_pass *pass)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    const uint64_t m = pass->m, n_ex = pass->n_examples;
    const uint32_t k = pass->k, topk = pass->topk;
    const size_t nck = pass->n_ckpts;
    const int ldk = k ? (int)k : 1;
    const float one = 1.0f, zero = 0.0f;
    size_t ws = pass->workspace_bytes ? pass->workspace_bytes : TP_DEFAULT_WORKSPACE;
    size_t free_b = 0, total_b = 0, reserve = 0, n_str = 0, dev_bytes = 0, pin_bytes = 0;
    size_t fbytes = 0, cand_bytes = 0;
    uint64_t n_present = 0, mc = 0, q0 = 0, mq = 0, e0 = 0, pend_e0 = 0;
    uint32_t T = 0, Tc = 0, hi = 0, kcap = 0, kk = 0, pend_kk = 0, n_pt = 0;
    int any_resident = 0, slot = 0, pending = -1, first = 0;
    tp_ckpt *ck = NULL;
    uint32_t *hsize = NULL;
    tp_layout lay;
    cudaEvent_t ev_ready[2] = {NULL, NULL}, ev_free[2] = {NULL, NULL}, ev_done[2] = {NULL, NULL};
    void *dbase = NULL, *hbase = NULL;
    char *cursor = NULL;
    float *Qd = NULL, *G = NULL, *S = NULL, *Fres = NULL, *Fd = NULL, *Fh = NULL;
    char *meta_d = NULL, *meta_h = NULL;
    uint2 *cand_d = NULL, *cand_h = NULL;

    if (m == 0)
        return SDM_OK;
    if (topk == 0)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "topk_pass: topk must be >= 1");
    if (m > (uint64_t)INT32_MAX || k > (uint32_t)INT32_MAX)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "topk_pass: %llu queries of dim %u",
                                (unsigned long long)m, k);
    SDM_TRY(sdm_cuda_enter(be));

    /* Present examples before any work. A row past the snapshot (n_rows) came after it:
     * that example is absent at this checkpoint, as on the cpu backend. */
    for (uint64_t e = 0; e < n_ex; e++) {
        int present = 0;
        for (size_t c = 0; c < nck; c++)
            present |= tp_row(&pass->ckpts[c], e) >= 0;
        n_present += (uint64_t)present;
    }
    if (topk > n_present) {
        st = sdm_backend_fail(be, SDM_ERR_BAD_INPUT,
                              "topk_pass: topk %u exceeds the %llu examples present", topk,
                              (unsigned long long)n_present);
        goto done;
    }

    /* Residency: each checkpoint's rows stay on the device if they fit beside the whole
     * workspace budget and a headroom for cuBLAS and other tenants. */
    ck = (tp_ckpt *)calloc(nck ? nck : 1, sizeof *ck);
    hsize = (uint32_t *)calloc((size_t)m * 2, sizeof *hsize);
    if (!ck || !hsize) {
        st = sdm_backend_fail(be, SDM_ERR_NOMEM, "topk_pass: host state");
        goto done;
    }
    SDM_CUDA_CHECK(be, cudaMemGetInfo(&free_b, &total_b));
    reserve = (ws > ctx->scratch_bytes ? ws - ctx->scratch_bytes : 0) +
              (total_b / 32 > TP_HEADROOM_MIN ? total_b / 32 : TP_HEADROOM_MIN);
    for (size_t c = 0; c < nck; c++) {
        ck[c].src = &pass->ckpts[c];
        SDM_TRY(tp_cache_prepare(be, ctx, ck[c].src, k, reserve, &ck[c].cache));
        if (ck[c].cache) {
            ck[c].slot = -1;
            any_resident = 1;
        } else {
            ck[c].slot = (int)n_str++;
        }
    }

    /* Query blocks: the queries' copies take at most half the workspace. Tiles: the widest
     * T whose scratch fits in the workspace (at least 1, at most what topk_select takes). */
    mc = m;
    if (nck && k && (size_t)mc * nck * k * sizeof(float) > ws / 2) {
        mc = (ws / 2) / (nck * (size_t)k * sizeof(float));
        if (mc < 1)
            mc = 1;
    }
    {
        uint32_t tmax = n_ex < SDM_CUDA_TOPK_TILE_MAX ? (uint32_t)n_ex : SDM_CUDA_TOPK_TILE_MAX;
        uint32_t tlo = 1, thi = tmax ? tmax : 1;
        while (tlo < thi) {
            const uint32_t mid = tlo + (thi - tlo + 1) / 2;
            if (tp_device_bytes(mc, mid, k, nck, n_str, any_resident, topk) <= ws)
                tlo = mid;
            else
                thi = mid - 1;
        }
        T = tlo;
        /* Whole 128-column multiples suit the sgemm, when the rounding costs little. */
        if (T < tmax && T >= 256)
            T &= ~127u;
    }
    kcap = topk < T ? topk : T;
    lay = tp_meta_layout(T, nck);
    fbytes = sdm_cuda_round((size_t)T * k * sizeof(float));
    cand_bytes = sdm_cuda_round((size_t)mc * 2 * kcap * sizeof(uint2));
    dev_bytes = tp_device_bytes(mc, T, k, nck, n_str, any_resident, topk);
    pin_bytes = 2 * lay.bytes + 2 * n_str * fbytes + 2 * cand_bytes;

    SDM_TRY(sdm_cuda_scratch(be, dev_bytes, &dbase));
    SDM_TRY(sdm_cuda_pinned(be, pin_bytes, &hbase));
    cursor = (char *)dbase;
    Qd = (float *)sdm_cuda_carve(&cursor, nck * sdm_cuda_round((size_t)mc * k * sizeof(float)));
    G = (float *)sdm_cuda_carve(&cursor, (size_t)mc * T * sizeof(float));
    S = (float *)sdm_cuda_carve(&cursor, (size_t)mc * T * sizeof(float));
    Fres = any_resident ? (float *)sdm_cuda_carve(&cursor, fbytes) : NULL;
    Fd = (float *)sdm_cuda_carve(&cursor, 2 * n_str * fbytes);
    meta_d = (char *)sdm_cuda_carve(&cursor, 2 * lay.bytes);
    cand_d = (uint2 *)sdm_cuda_carve(&cursor, cand_bytes);
    cursor = (char *)hbase;
    meta_h = (char *)sdm_cuda_carve(&cursor, 2 * lay.bytes);
    Fh = (float *)sdm_cuda_carve(&cursor, 2 * n_str * fbytes);
    cand_h = (uint2 *)sdm_cuda_carve(&cursor, 2 * cand_bytes);
    for (int s = 0; s < 2; s++) {
        SDM_CUDA_CHECK(be, cudaEventCreateWithFlags(&ev_ready[s], cudaEventDisableTiming));
        SDM_CUDA_CHECK(be, cudaEventCreateWithFlags(&ev_free[s], cudaEventDisableTiming));
        SDM_CUDA_CHECK(be, cudaEventCreateWithFlags(&ev_done[s], cudaEventDisableTiming));
    }

    for (q0 = 0; q0 < m; q0 += mq) {
        mq = m - q0 < mc ? m - q0 : mc;
        for (size_t c = 0; c < nck; c++)
            SDM_CUDA_CHECK(be, cudaMemcpyAsync(
                                   (char *)Qd + c * sdm_cuda_round((size_t)mc * k * sizeof(float)),
                                   ck[c].src->q + q0 * k, (size_t)mq * k * sizeof(float),
                                   cudaMemcpyHostToDevice, ctx->stream));

        for (e0 = 0; e0 < n_ex; e0 += Tc) {
            Tc = n_ex - e0 < T ? (uint32_t)(n_ex - e0) : T;
            /* This slot's host buffers were last read for the tile merged one step ago. */
            char *mh = meta_h + (size_t)slot * lay.bytes;
            char *md = meta_d + (size_t)slot * lay.bytes;
            uint8_t *present = (uint8_t *)(mh + lay.present);

            memset(present, 0, T);
            for (size_t c = 0; c < nck; c++) {
                const sdm_pass_ckpt *p = ck[c].src;
                float *sc = (float *)(mh + lay.scale) + c * T;
                int64_t *ix = (int64_t *)(mh + lay.idx) + c * T;
                int any = 0, contiguous = Tc == T;
                const int64_t r0 = tp_row(p, e0);
                hi = e0 < p->n_ex_map ? (uint32_t)(p->n_ex_map - e0 < Tc ? p->n_ex_map - e0 : Tc)
                                      : 0;
                for (uint32_t t = 0; t < T; t++) {
                    const int64_t r = t < hi ? tp_row(p, e0 + t) : -1;
                    ix[t] = r;
                    sc[t] = r >= 0 ? p->row_scale[r] : 0.0f;
                    if (r >= 0) {
                        present[t] = 1;
                        any = 1;
                    }
                    if (r < 0 || r != r0 + (int64_t)t)
                        contiguous = 0;
                }
                ck[c].r0 = (uint64_t)(r0 >= 0 ? r0 : 0);
                if (!any)
                    ck[c].mode = TP_SKIP;
                else if (contiguous && (ck[c].cache == NULL || ((uint64_t)r0 * k) % 64 == 0))
                    /* Resident rows are used in place only at 256-byte alignment, so that
                     * the sgemm sees the same alignment as for a gathered tile. */
                    ck[c].mode = TP_DIRECT;
                else
                    ck[c].mode = TP_GATHER;
            }
            n_pt = 0;
            for (uint32_t t = 0; t < T; t++)
                n_pt += present[t];
            if (n_pt == 0)
                continue;

            /* Streamed rows: into this slot's device buffers on the copy stream, once the
             * sgemms of the tile that used the slot before are done. */
            SDM_CUDA_CHECK(be, cudaStreamWaitEvent(ctx->copy, ev_free[slot], 0));
            for (size_t c = 0; c < nck; c++) {
                const sdm_pass_ckpt *p = ck[c].src;
                float *fd, *fh;
                const int64_t *ix;
                if (ck[c].cache || ck[c].mode == TP_SKIP)
                    continue;
                fd = Fd + ((size_t)slot * n_str + (size_t)ck[c].slot) * (fbytes / sizeof(float));
                if (ck[c].mode == TP_DIRECT) {
                    SDM_CUDA_CHECK(be, cudaMemcpyAsync(fd, p->feat + ck[c].r0 * k,
                                                       (size_t)T * k * sizeof(float),
                                                       cudaMemcpyHostToDevice, ctx->copy));
                    continue;
                }
                fh = Fh + ((size_t)slot * n_str + (size_t)ck[c].slot) * (fbytes / sizeof(float));
                ix = (const int64_t *)(mh + lay.idx) + c * T;
                for (uint32_t t = 0; t < T; t++) {
                    if (ix[t] >= 0)
                        memcpy(fh + (size_t)t * k, p->feat + (size_t)ix[t] * k,
                               (size_t)k * sizeof(float));
                    else
                        memset(fh + (size_t)t * k, 0, (size_t)k * sizeof(float));
                }
                SDM_CUDA_CHECK(be, cudaMemcpyAsync(fd, fh, (size_t)T * k * sizeof(float),
                                                   cudaMemcpyHostToDevice, ctx->copy));
            }
            SDM_CUDA_CHECK(be, cudaEventRecord(ev_ready[slot], ctx->copy));

            SDM_CUDA_CHECK(be, cudaMemcpyAsync(md, mh, lay.bytes, cudaMemcpyHostToDevice,
                                               ctx->stream));
            SDM_CUDA_CHECK(be, cudaStreamWaitEvent(ctx->stream, ev_ready[slot], 0));
            first = 1;
            for (size_t c = 0; c < nck; c++) {
                const float *F;
                const float *Qc =
                    (const float *)((const char *)Qd +
                                    c * sdm_cuda_round((size_t)mc * k * sizeof(float)));
                if (ck[c].mode == TP_SKIP)
                    continue;
                if (!ck[c].cache) {
                    F = Fd + ((size_t)slot * n_str + (size_t)ck[c].slot) * (fbytes / sizeof(float));
                } else if (ck[c].mode == TP_DIRECT) {
                    F = ck[c].cache->feat + ck[c].r0 * k;
                } else {
                    SDM_CUDA_CHECK(be, tp_gather_launch(ctx->stream, ck[c].cache->feat,
                                                        (const int64_t *)(md + lay.idx) + c * T,
                                                        T, k, Fres));
                    F = Fres;
                }
                /* Row-major F (T x k) and Q (mq x k) are column-major k x T and k x mq;
                 * G = F^T Q is column-major T x mq, i.e. row-major mq x T: Q F^T. */
                SDM_CUBLAS_CHECK(be, cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)T,
                                                 (int)mq, (int)k, &one, F, ldk, Qc, ldk, &zero,
                                                 G, (int)T));
                SDM_CUDA_CHECK(be, tp_scale_add_launch(ctx->stream, S, G,
                                                       (const float *)(md + lay.scale) + c * T,
                                                       T, (size_t)mq * T, first));
                first = 0;
            }
            SDM_CUDA_CHECK(be, cudaEventRecord(ev_free[slot], ctx->stream));
            kk = topk < n_pt ? topk : n_pt;
            SDM_TRY(sdm_cuda_topk_select(be, ctx->stream, S, mq, T,
                                         (const uint8_t *)(md + lay.present), n_pt, kk, cand_d));
            SDM_CUDA_CHECK(be, cudaMemcpyAsync((char *)cand_h + (size_t)slot * cand_bytes, cand_d,
                                               (size_t)mq * 2 * kk * sizeof(uint2),
                                               cudaMemcpyDeviceToHost, ctx->stream));
            SDM_CUDA_CHECK(be, cudaEventRecord(ev_done[slot], ctx->stream));

            /* The device has this tile queued; merge the previous one meanwhile. */
            if (pending >= 0) {
                SDM_CUDA_CHECK(be, cudaEventSynchronize(ev_done[pending]));
                tp_merge(pass, q0, mq, pend_kk, pend_e0,
                         (const uint2 *)((char *)cand_h + (size_t)pending * cand_bytes), hsize);
            }
            pending = slot;
            pend_e0 = e0;
            pend_kk = kk;
            slot ^= 1;
        }
        if (pending >= 0) {
            SDM_CUDA_CHECK(be, cudaEventSynchronize(ev_done[pending]));
            tp_merge(pass, q0, mq, pend_kk, pend_e0,
                     (const uint2 *)((char *)cand_h + (size_t)pending * cand_bytes), hsize);
            pending = -1;
        }
    }

    for (uint64_t q = 0; q < m; q++) {
        if (hsize[q * 2] != topk || hsize[q * 2 + 1] != topk) {
            st = sdm_backend_fail(be, SDM_ERR_INTERNAL,
                                  "topk_pass: query %llu kept %u/%u of %u entries",
                                  (unsigned long long)q, hsize[q * 2], hsize[q * 2 + 1], topk);
            goto done;
        }
        tp_heap_sort(pass->top_score + q * topk, pass->top_idx + q * topk, topk, 0u);
        tp_heap_sort(pass->bot_score + q * topk, pass->bot_idx + q * topk, topk, 0xffffffffu);
    }
done:
    if (st != SDM_OK && ctx) {
        (void)cudaStreamSynchronize(ctx->copy);
        (void)cudaStreamSynchronize(ctx->stream);
        (void)cudaGetLastError();
    }
    for (int s = 0; s < 2; s++) {
        if (ev_ready[s])
            (void)cudaEventDestroy(ev_ready[s]);
        if (ev_free[s])
            (void)cudaEventDestroy(ev_free[s]);
        if (ev_done[s])
            (void)cudaEventDestroy(ev_done[s]);
    }
    free(ck);
    free(hsize);
    return st;
}
