/* project_sjlt.cu - the sparse sjlt projection (SPEC §2), deterministic without float atomics.
 *
 * A block owns 8 input rows (and, for few rows, one split of the input dimension). It walks
 * the input dimension in chunks of 1024 coordinates, reading each input element once per
 * non-zero. For each chunk and each t in [0, s) it regenerates the 1024 buckets
 * t*(k/s) + w[0] % (k/s), sorts them (a block radix sort: deterministic) so that equal
 * buckets sit next to each other, and lets the one thread at the head of each run of equal
 * buckets add the run into the block's accumulator row. No two threads ever add to the same
 * column at once, and every column is summed in the same order on every run and GPU.
 *
 * The accumulators (splits x n x k, zeroed) live in global memory because k x 8 floats do
 * not fit in shared memory for large k; each block owns its rows exclusively. The final
 * pass (project_reduce.cu) adds the splits in order and applies 1/sqrt(s).
 */
#include <math.h>

#include <cub/block/block_radix_sort.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_common.h"
#include "philox.h"

#define SJLT_THREADS 256
#define SJLT_ITEMS 4
#define SJLT_CHUNK (SJLT_THREADS * SJLT_ITEMS)
#define SJLT_ROWS 8
#define SJLT_MIN_BLOCKS 256
#define SJLT_MAX_SPLITS 64
#define SJLT_MIN_SPLIT_COLS (2 * SJLT_CHUNK)
#define SJLT_NEG 0x80000000u

static __device__ __forceinline__ float sjlt_load(const float *p) { return *p; }
static __device__ __forceinline__ float sjlt_load(const __half *p) { return __half2float(*p); }
static __device__ __forceinline__ float sjlt_load(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}

template <typename T>
static __global__ void __launch_bounds__(SJLT_THREADS)
    sjlt_kernel(const T *__restrict__ in, uint64_t n, uint64_t d, uint32_t k, uint32_t s,
                uint64_t seed, uint64_t seg, float *__restrict__ acc)
{
    typedef cub::BlockRadixSort<uint32_t, SJLT_THREADS, SJLT_ITEMS, uint32_t> Sort;
    __shared__ typename Sort::TempStorage sort_tmp;
    __shared__ uint32_t skey[SJLT_CHUNK];
    __shared__ uint32_t sval[SJLT_CHUNK];
    const int tid = threadIdx.x;
    const uint32_t kb = k / s;
    /* Buckets are < kb; kb itself marks the empty slots past the end of a short chunk. */
    const int end_bit = 32 - __clz((int)kb);
    const uint64_t row0 = (uint64_t)blockIdx.x * SJLT_ROWS;
    const int rows = (int)(n - row0 < SJLT_ROWS ? n - row0 : SJLT_ROWS);
    const uint64_t jb = (uint64_t)blockIdx.y * seg;
    const uint64_t je = jb + seg < d ? jb + seg : d;
    float *dst = acc + (size_t)blockIdx.y * (size_t)(n * k) + (size_t)(row0 * k);

    for (uint64_t j0 = jb; j0 < je; j0 += SJLT_CHUNK) {
        const uint32_t cnt = (uint32_t)(je - j0 < SJLT_CHUNK ? je - j0 : SJLT_CHUNK);
        for (uint32_t t = 0; t < s; t++) {
            uint32_t keys[SJLT_ITEMS], vals[SJLT_ITEMS];
#pragma unroll
            for (int q = 0; q < SJLT_ITEMS; q++) {
                const uint32_t l = (uint32_t)(tid * SJLT_ITEMS + q);
                if (l < cnt) {
                    uint32_t col;
                    int sign;
                    sdm_sjlt_entry(seed, j0 + l, t, kb, &col, &sign);
                    keys[q] = col - t * kb;
                    vals[q] = l | (sign < 0 ? SJLT_NEG : 0u);
                } else {
                    keys[q] = kb;
                    vals[q] = 0u;
                }
            }
            Sort(sort_tmp).Sort(keys, vals, 0, end_bit);
#pragma unroll
            for (int q = 0; q < SJLT_ITEMS; q++) {
                skey[tid * SJLT_ITEMS + q] = keys[q];
                sval[tid * SJLT_ITEMS + q] = vals[q];
            }
            __syncthreads();
#pragma unroll
            for (int q = 0; q < SJLT_ITEMS; q++) {
                const int p = tid * SJLT_ITEMS + q;
                const uint32_t b = skey[p];
                if (b >= kb || (p > 0 && skey[p - 1] == b))
                    continue;
                int pe = p + 1;
                while (pe < SJLT_CHUNK && skey[pe] == b)
                    pe++;
                float *col = dst + (size_t)t * kb + b;
                for (int r = 0; r < rows; r++) {
                    const T *x = in + (size_t)((row0 + (uint64_t)r) * d + j0);
                    float sum = 0.0f;
                    for (int pp = p; pp < pe; pp++) {
                        const uint32_t v = sval[pp];
                        const float xv = sjlt_load(x + (v & ~SJLT_NEG));
                        sum += (v & SJLT_NEG) ? -xv : xv;
                    }
                    col[(size_t)r * k] += sum;
                }
            }
            /* skey/sval and the sort's storage are reused next; the accumulator updates of
             * this pass must land before the next pass adds to the same columns. */
            __syncthreads();
        }
    }
}

static cudaError_t sjlt_launch(cudaStream_t stream, sdm_dtype dtype, const void *in, uint64_t n,
                               uint64_t d, uint32_t k, uint32_t s, uint64_t seed, uint32_t splits,
                               float *acc)
{
    const uint64_t seg = (d + splits - 1) / splits;
    const dim3 grid((unsigned)((n + SJLT_ROWS - 1) / SJLT_ROWS), splits);
    switch (dtype) {
    case SDM_F32:
        sjlt_kernel<float><<<grid, SJLT_THREADS, 0, stream>>>((const float *)in, n, d, k, s, seed,
                                                              seg, acc);
        break;
    case SDM_F16:
        sjlt_kernel<__half><<<grid, SJLT_THREADS, 0, stream>>>((const __half *)in, n, d, k, s,
                                                               seed, seg, acc);
        break;
    case SDM_BF16:
        sjlt_kernel<__nv_bfloat16><<<grid, SJLT_THREADS, 0, stream>>>(
            (const __nv_bfloat16 *)in, n, d, k, s, seed, seg, acc);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

uint32_t sdm_cuda_sjlt_splits(uint64_t n, uint64_t d)
{
    const uint64_t blocks = (n + SJLT_ROWS - 1) / SJLT_ROWS;
    uint64_t splits, by_d;
    if (blocks == 0 || blocks >= SJLT_MIN_BLOCKS)
        return 1;
    splits = (SJLT_MIN_BLOCKS + blocks - 1) / blocks;
    by_d = (d + SJLT_MIN_SPLIT_COLS - 1) / SJLT_MIN_SPLIT_COLS;
    if (splits > by_d)
        splits = by_d;
    if (splits > SJLT_MAX_SPLITS)
        splits = SJLT_MAX_SPLITS;
    return splits < 1 ? 1 : (uint32_t)splits;
}

sdm_status sdm_cuda_sjlt(sdm_backend *be, cudaStream_t stream, sdm_dtype dtype, const void *in,
                         uint64_t n, uint64_t d, uint32_t k, uint32_t s, uint64_t seed,
                         uint32_t splits, float *acc, float *out)
{
    sdm_status st = SDM_OK;
    const float scale = (float)(1.0 / sqrt((double)s));
    if (n == 0 || k == 0)
        return SDM_OK;
    if (s == 0 || k % s != 0)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "sjlt needs dim %% s == 0 (%u, %u)", k, s);
    if (splits < 1)
        splits = 1;
    SDM_CUDA_CHECK(be, cudaMemsetAsync(acc, 0, (size_t)splits * (size_t)(n * k) * sizeof(float),
                                       stream));
    SDM_CUDA_CHECK(be, sjlt_launch(stream, dtype, in, n, d, k, s, seed, splits, acc));
    SDM_TRY(sdm_cuda_sum_splits(be, stream, acc, splits, (size_t)(n * k), scale, out));
done:
    return st;
}
