/* topk_select.cu - per query, a score tile's best and worst kk present columns (exact, tie-aware).
 *
 * One block per query row of the tile. It compacts the present columns of its row into
 * shared memory as (orderable key, column), in column order, then for each direction finds
 * the kk-th best key by a 4-pass radix select (8 bits a pass, integer histograms: exact and
 * deterministic) and writes out every column strictly better than that key plus, in column
 * order, as many columns equal to it as are needed to make kk. Equal scores thus go to the
 * lower column, that is the lower example index, as SPEC §3 asks. Output is in column order;
 * the host merges tiles with the same tie rule.
 */
#include <cub/block/block_scan.cuh>

#include "cuda_common.h"

#define SEL_THREADS 256
/* A bound on the kernel's static shared memory (histogram, scan storage: ~2.2 KiB). */
#define SEL_STATIC_SMEM (4u * 1024u)

static __global__ void __launch_bounds__(SEL_THREADS)
    topk_select_kernel(const float *__restrict__ S, uint32_t T, const uint8_t *__restrict__ present,
                       uint32_t kk, uint2 *__restrict__ cand)
{
    typedef cub::BlockScan<uint32_t, SEL_THREADS> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ uint32_t hist[256];
    __shared__ uint32_t sh_prefix, sh_mask, sh_rem;
    extern __shared__ __align__(16) unsigned char dyn[];
    uint32_t *key = reinterpret_cast<uint32_t *>(dyn);
    uint16_t *col = reinterpret_cast<uint16_t *>(key + T);
    const float *row = S + (size_t)blockIdx.x * T;
    const uint32_t tid = threadIdx.x;
    uint32_t n = 0;

    for (uint32_t c0 = 0; c0 < T; c0 += SEL_THREADS) {
        const uint32_t c = c0 + tid;
        const uint32_t flag = (c < T && present[c]) ? 1u : 0u;
        uint32_t pos, total;
        Scan(scan_tmp).ExclusiveSum(flag, pos, total);
        if (flag) {
            key[n + pos] = sdm_cuda_score_key(row[c]);
            col[n + pos] = (uint16_t)c;
        }
        n += total;
        __syncthreads();
    }

    for (int dir = 0; dir < 2; dir++) {
        uint2 *out = cand + ((size_t)blockIdx.x * 2 + (size_t)dir) * kk;
        /* Lowest scores first is highest keys first once the bits are flipped. */
        const uint32_t flip = dir ? 0xffffffffu : 0u;
        if (kk >= n) {
            for (uint32_t i = tid; i < n; i += SEL_THREADS)
                out[i] = make_uint2(key[i] ^ flip, col[i]);
            continue;
        }
        if (tid == 0) {
            sh_prefix = 0u;
            sh_mask = 0u;
            sh_rem = kk;
        }
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (uint32_t b = tid; b < 256; b += SEL_THREADS)
                hist[b] = 0u;
            __syncthreads();
            const uint32_t prefix = sh_prefix, mask = sh_mask;
            for (uint32_t i = tid; i < n; i += SEL_THREADS) {
                const uint32_t x = key[i] ^ flip;
                if ((x & mask) == prefix)
                    atomicAdd(&hist[(x >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                /* The digit holding the rem-th largest key among those matching so far;
                 * everything in higher digits is strictly better than the final key. */
                uint32_t rem = sh_rem, cum = 0u;
                int b;
                for (b = 255; b > 0; b--) {
                    if (cum + hist[b] >= rem)
                        break;
                    cum += hist[b];
                }
                sh_rem = rem - cum;
                sh_prefix = prefix | ((uint32_t)b << shift);
                sh_mask = mask | (255u << shift);
            }
            __syncthreads();
        }
        /* theta: the kk-th best key; need_eq: how many columns equal to it make the cut. */
        const uint32_t theta = sh_prefix, need_eq = sh_rem;
        uint32_t out_base = 0, eq_base = 0;
        for (uint32_t i0 = 0; i0 < n; i0 += SEL_THREADS) {
            const uint32_t i = i0 + tid;
            const uint32_t x = i < n ? (key[i] ^ flip) : 0u;
            const uint32_t is_eq = (i < n && x == theta) ? 1u : 0u;
            uint32_t eq_pos, eq_total, pos, total;
            Scan(scan_tmp).ExclusiveSum(is_eq, eq_pos, eq_total);
            __syncthreads();
            const uint32_t take =
                (i < n && (x > theta || (is_eq && eq_base + eq_pos < need_eq))) ? 1u : 0u;
            Scan(scan_tmp).ExclusiveSum(take, pos, total);
            if (take)
                out[out_base + pos] = make_uint2(x, col[i]);
            out_base += total;
            eq_base += eq_total;
            __syncthreads();
        }
    }
}

static size_t sel_smem(uint32_t T)
{
    return (size_t)T * sizeof(uint32_t) + (((size_t)T * sizeof(uint16_t) + 15) & ~(size_t)15);
}

static cudaError_t sel_launch(cudaStream_t stream, const float *S, uint64_t m, uint32_t T,
                              const uint8_t *present, uint32_t kk, uint2 *cand)
{
    const size_t smem = sel_smem(T);
    cudaError_t err;
    if (smem + SEL_STATIC_SMEM > 48u * 1024u) {
        /* Past 48 KiB of shared memory in all, a kernel must opt in to more. */
        err = cudaFuncSetAttribute(topk_select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem);
        if (err != cudaSuccess)
            return err;
    }
    topk_select_kernel<<<(unsigned)m, SEL_THREADS, smem, stream>>>(S, T, present, kk, cand);
    return cudaGetLastError();
}

sdm_status sdm_cuda_topk_select(sdm_backend *be, cudaStream_t stream, const float *S, uint64_t m,
                                uint32_t T, const uint8_t *present, uint32_t n_present,
                                uint32_t kk, uint2 *cand)
{
    sdm_status st = SDM_OK;
    if (m == 0 || kk == 0)
        return SDM_OK;
    if (T > SDM_CUDA_TOPK_TILE_MAX || kk > n_present || m > (uint64_t)INT32_MAX)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL,
                                "topk_select: tile %u, kk %u of %u present, %llu rows", T, kk,
                                n_present, (unsigned long long)m);
    SDM_CUDA_CHECK(be, sel_launch(stream, S, m, T, present, kk, cand));
done:
    return st;
}
