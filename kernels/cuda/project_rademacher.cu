/* project_rademacher.cu - the dense ±1/sqrt(k) projection (SPEC §2) with P regenerated per tile.
 *
 * Each block owns a 64-row x 128-column output tile; column tile cb is exactly philox block
 * cb of SPEC §2, so one philox call per input row j yields the tile's 128 signs for that j.
 * The block walks the input dimension 32 rows of P at a time: it regenerates those 32 x 128
 * signs into shared memory, multiplies, and moves on. P never exists in global memory.
 *
 * Variants:
 *   rad_f32_kernel   f32 input: FFMA tile (4 x 8 outputs per thread). Multiplying by ±1 is
 *                    exact, so this matches an fp32 CPU sum up to order; no TF32.
 *   rad_mma_kernel   f16/bf16 input: WMMA 16x16x16 tensor cores with fp32 accumulation;
 *                    ±1 is exact in both types.
 * For few output tiles the input dimension is split over blockIdx.z into partial sums that
 * project_reduce.cu adds in split order. The split count is a function of the shape only,
 * so the result is the same on every GPU and every run.
 */
#include <math.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "cuda_common.h"
#include "philox.h"

#define RAD_BM 64
#define RAD_BN 128
#define RAD_BK 32
#define RAD_THREADS 256

/* Fewer output tiles than this and the input dimension is split. A constant, not the SM
 * count: the result must not depend on the device. */
#define RAD_MIN_BLOCKS 256
#define RAD_MAX_SPLITS 64
#define RAD_MIN_SPLIT_ROWS 512

/* The philox words of P's rows [j0, j0 + 32) for column block cb: lanes 0-3 of each of the
 * 8 warps make one row each, so every warp pays for one philox and none waits for all 32. */
static __device__ __forceinline__ void rad_signs(uint32_t (*W)[4], uint64_t seed, uint64_t j0,
                                                 uint32_t cb)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane < 4) {
        const int r = warp * 4 + lane;
        uint32_t w[4];
        sdm_rademacher_block(seed, j0 + (uint64_t)r, cb, w);
        W[r][0] = w[0];
        W[r][1] = w[1];
        W[r][2] = w[2];
        W[r][3] = w[3];
    }
}

/* Each thread loads one column a_j of the A tile, rows a_r + 8i (consecutive threads read
 * consecutive j of a row: coalesced), and expands one column b_c of the sign tile, rows
 * b_r + 2i. Fixing the column per thread keeps the index arithmetic out of the loop. */
#define RAD_A_STEP (RAD_THREADS / RAD_BK)
#define RAD_A_LOADS (RAD_BM / RAD_A_STEP)
#define RAD_B_STEP (RAD_THREADS / RAD_BN)
#define RAD_B_LOADS (RAD_BK / RAD_B_STEP)
#define RAD_TILE_SETUP(T)                                                                  \
    const int a_j = tid % RAD_BK, a_r = tid / RAD_BK;                                      \
    const int b_c = tid % RAD_BN, b_r = tid / RAD_BN;                                      \
    const uint64_t a_row = row0 + (uint64_t)a_r;                                           \
    const int a_rows = a_row >= n ? 0                                                      \
                       : (int)((n - a_row + RAD_A_STEP - 1) / RAD_A_STEP < RAD_A_LOADS     \
                                   ? (n - a_row + RAD_A_STEP - 1) / RAD_A_STEP             \
                                   : RAD_A_LOADS);                                         \
    const T *a_src = in + (a_row < n ? a_row : 0) * d + (uint64_t)a_j;                     \
    const uint64_t a_step = (uint64_t)RAD_A_STEP * d

/* Sign of P[j0 + r][cb * 128 + c] from the words: bit c % 32 of word c / 32; set means -1. */
static __device__ __forceinline__ float rad_sign(const uint32_t (*W)[4], int r, int c)
{
    return ((W[r][c >> 5] >> (c & 31)) & 1u) ? -1.0f : 1.0f;
}

static __global__ void __launch_bounds__(RAD_THREADS, 2)
    rad_f32_kernel(const float *__restrict__ in, uint64_t n, uint64_t d, uint32_t k, uint64_t seed,
                   uint64_t seg, float scale, float *__restrict__ out)
{
    __shared__ __align__(16) float As[RAD_BK][RAD_BM + 4]; /* transposed: As[j][row] */
    __shared__ __align__(16) float Bs[RAD_BK][RAD_BN];
    __shared__ uint32_t W[RAD_BK][4];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const uint32_t cb = blockIdx.x;
    const uint64_t row0 = (uint64_t)blockIdx.y * RAD_BM;
    const uint64_t jb = (uint64_t)blockIdx.z * seg;
    const uint64_t je = jb + seg < d ? jb + seg : d;
    RAD_TILE_SETUP(float);
    float acc[4][8];

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            acc[i][j] = 0.0f;

    for (uint64_t j0 = jb; j0 < je; j0 += RAD_BK) {
        const bool a_ok = j0 + (uint64_t)a_j < je;
#pragma unroll
        for (int i = 0; i < RAD_A_LOADS; i++)
            As[a_j][a_r + RAD_A_STEP * i] = (a_ok && i < a_rows) ? a_src[j0 + i * a_step] : 0.0f;
        rad_signs(W, seed, j0, cb);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RAD_B_LOADS; i++)
            Bs[b_r + RAD_B_STEP * i][b_c] = rad_sign(W, b_r + RAD_B_STEP * i, b_c);
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < RAD_BK; kk++) {
            const float4 a = *reinterpret_cast<const float4 *>(&As[kk][ty * 4]);
            float b[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                acc[0][j] = fmaf(a.x, b[j], acc[0][j]);
                acc[1][j] = fmaf(a.y, b[j], acc[1][j]);
                acc[2][j] = fmaf(a.z, b[j], acc[2][j]);
                acc[3][j] = fmaf(a.w, b[j], acc[3][j]);
            }
        }
        __syncthreads();
    }

    float *dst = out + (size_t)blockIdx.z * (size_t)(n * k);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint64_t row = row0 + (uint64_t)(ty * 4 + i);
        if (row >= n)
            continue;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const uint32_t col = cb * RAD_BN + (uint32_t)(tx + 16 * j);
            if (col < k)
                dst[row * k + col] = acc[i][j] * scale;
        }
    }
}

template <typename T> static __device__ __forceinline__ T rad_from_float(float x);
template <> __device__ __forceinline__ __half rad_from_float<__half>(float x)
{
    return __float2half(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 rad_from_float<__nv_bfloat16>(float x)
{
    return __float2bfloat16(x);
}

/* Shared-memory layout of rad_mma_kernel. Leading dimensions are multiples of 8 halves (16
 * bytes) as WMMA requires, padded off powers of two to spread banks; every fragment pointer
 * lands on a 32-byte boundary. */
#define RAD_LDA (RAD_BK + 8)
#define RAD_LDB (RAD_BN + 8)
#define RAD_LDC (RAD_BN + 4)
#define RAD_AB_BYTES (RAD_BM * RAD_LDA * 2 + RAD_BK * RAD_LDB * 2)
#define RAD_C_BYTES (RAD_BM * RAD_LDC * 4)
#define RAD_MMA_SMEM (RAD_AB_BYTES > RAD_C_BYTES ? RAD_AB_BYTES : RAD_C_BYTES)

template <typename T>
static __global__ void __launch_bounds__(RAD_THREADS, 2)
    rad_mma_kernel(const T *__restrict__ in, uint64_t n, uint64_t d, uint32_t k, uint64_t seed,
                   uint64_t seg, float scale, float *__restrict__ out)
{
    using namespace nvcuda;
    /* A and B tiles during the loop; the fp32 result tile afterwards. */
    __shared__ __align__(128) unsigned char smem[RAD_MMA_SMEM];
    __shared__ uint32_t W[RAD_BK][4];
    T *As = reinterpret_cast<T *>(smem);
    T *Bs = reinterpret_cast<T *>(smem + RAD_BM * RAD_LDA * 2);
    float *Cs = reinterpret_cast<float *>(smem);
    const int tid = threadIdx.x, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3; /* 2 x 4 warps, each 32 x 32 of the tile */
    const uint32_t cb = blockIdx.x;
    const uint64_t row0 = (uint64_t)blockIdx.y * RAD_BM;
    const uint64_t jb = (uint64_t)blockIdx.z * seg;
    const uint64_t je = jb + seg < d ? jb + seg : d;
    const T zero = rad_from_float<T>(0.0f), plus = rad_from_float<T>(1.0f),
            minus = rad_from_float<T>(-1.0f);
    RAD_TILE_SETUP(T);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];

#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);

    for (uint64_t j0 = jb; j0 < je; j0 += RAD_BK) {
        const bool a_ok = j0 + (uint64_t)a_j < je;
#pragma unroll
        for (int i = 0; i < RAD_A_LOADS; i++)
            As[(a_r + RAD_A_STEP * i) * RAD_LDA + a_j] =
                (a_ok && i < a_rows) ? a_src[j0 + i * a_step] : zero;
        rad_signs(W, seed, j0, cb);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RAD_B_LOADS; i++) {
            const int r = b_r + RAD_B_STEP * i;
            Bs[r * RAD_LDB + b_c] = ((W[r][b_c >> 5] >> (b_c & 31)) & 1u) ? minus : plus;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < RAD_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; i++)
                wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * RAD_LDA + kk, RAD_LDA);
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(b[j], Bs + kk * RAD_LDB + wn * 32 + j * 16, RAD_LDB);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++)
                    wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

    /* The loop ended on a barrier, so the A/B tiles are free for the result. */
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * RAD_LDC + wn * 32 + j * 16,
                                    acc[i][j], RAD_LDC, wmma::mem_row_major);
    __syncthreads();
    float *dst = out + (size_t)blockIdx.z * (size_t)(n * k);
#pragma unroll 4
    for (int i = 0; i < (RAD_BM * RAD_BN) / RAD_THREADS; i++) {
        const int idx = tid + RAD_THREADS * i, r = idx / RAD_BN, c = idx % RAD_BN;
        const uint64_t row = row0 + (uint64_t)r;
        const uint32_t col = cb * RAD_BN + (uint32_t)c;
        if (row < n && col < k)
            dst[row * k + col] = Cs[r * RAD_LDC + c] * scale;
    }
}

static cudaError_t rad_launch(cudaStream_t stream, sdm_dtype dtype, const void *in, uint64_t n,
                              uint64_t d, uint32_t k, uint64_t seed, uint32_t splits, float scale,
                              float *out)
{
    /* Split boundaries on multiples of the k-step keep every split's tiles whole. */
    uint64_t seg = (d + splits - 1) / splits;
    seg = (seg + RAD_BK - 1) / RAD_BK * RAD_BK;
    const dim3 grid((k + RAD_BN - 1) / RAD_BN, (unsigned)((n + RAD_BM - 1) / RAD_BM), splits);
    switch (dtype) {
    case SDM_F32:
        rad_f32_kernel<<<grid, RAD_THREADS, 0, stream>>>((const float *)in, n, d, k, seed, seg,
                                                         scale, out);
        break;
    case SDM_F16:
        rad_mma_kernel<__half><<<grid, RAD_THREADS, 0, stream>>>((const __half *)in, n, d, k,
                                                                 seed, seg, scale, out);
        break;
    case SDM_BF16:
        rad_mma_kernel<__nv_bfloat16><<<grid, RAD_THREADS, 0, stream>>>(
            (const __nv_bfloat16 *)in, n, d, k, seed, seg, scale, out);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

uint32_t sdm_cuda_rademacher_splits(uint64_t n, uint64_t d, uint32_t k)
{
    const uint64_t tiles = ((n + RAD_BM - 1) / RAD_BM) * (((uint64_t)k + RAD_BN - 1) / RAD_BN);
    uint64_t splits, by_d;
    if (tiles == 0 || tiles >= RAD_MIN_BLOCKS)
        return 1;
    splits = (RAD_MIN_BLOCKS + tiles - 1) / tiles;
    by_d = (d + RAD_MIN_SPLIT_ROWS - 1) / RAD_MIN_SPLIT_ROWS;
    if (splits > by_d)
        splits = by_d;
    if (splits > RAD_MAX_SPLITS)
        splits = RAD_MAX_SPLITS;
    return splits < 1 ? 1 : (uint32_t)splits;
}

sdm_status sdm_cuda_rademacher(sdm_backend *be, cudaStream_t stream, sdm_dtype dtype,
                               const void *in, uint64_t n, uint64_t d, uint32_t k,
                               uint64_t seed, uint32_t splits, float *part, float *out)
{
    sdm_status st = SDM_OK;
    /* The same rounding of 1/sqrt(k) as a C reference computing it in double. */
    const float scale = (float)(1.0 / sqrt((double)k));
    if (n == 0 || k == 0)
        return SDM_OK;
    if ((n + RAD_BM - 1) / RAD_BM > 65535u)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL, "rademacher: %llu rows in one launch",
                                (unsigned long long)n);
    if (splits <= 1) {
        SDM_CUDA_CHECK(be, rad_launch(stream, dtype, in, n, d, k, seed, 1, scale, out));
    } else {
        SDM_CUDA_CHECK(be, rad_launch(stream, dtype, in, n, d, k, seed, splits, 1.0f, part));
        SDM_TRY(sdm_cuda_sum_splits(be, stream, part, splits, (size_t)(n * k), scale, out));
    }
done:
    return st;
}
