/* project_reduce.cu - adds the per-split partial projections in split order and scales them.
 *
 * The projection kernels split long input dimensions over blocks; adding the partials here,
 * always in the same order, keeps the result independent of scheduling (no float atomics).
 */
#include "cuda_common.h"

#define SUM_THREADS 256

static __global__ void __launch_bounds__(SUM_THREADS)
    sum_splits_kernel(const float *__restrict__ part, uint32_t splits, size_t count, float scale,
                      float *__restrict__ out)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float sum = 0.0f;
        for (uint32_t z = 0; z < splits; z++)
            sum += part[(size_t)z * count + i];
        out[i] = sum * scale;
    }
}

static cudaError_t sum_splits_launch(cudaStream_t stream, const float *part, uint32_t splits,
                                     size_t count, float scale, float *out)
{
    size_t blocks = (count + SUM_THREADS - 1) / SUM_THREADS;
    if (blocks > 65535u * 16u)
        blocks = 65535u * 16u;
    sum_splits_kernel<<<(unsigned)blocks, SUM_THREADS, 0, stream>>>(part, splits, count, scale,
                                                                    out);
    return cudaGetLastError();
}

sdm_status sdm_cuda_sum_splits(sdm_backend *be, cudaStream_t stream, const float *part,
                               uint32_t splits, size_t count, float scale, float *out)
{
    sdm_status st = SDM_OK;
    if (count == 0)
        return SDM_OK;
    SDM_CUDA_CHECK(be, sum_splits_launch(stream, part, splits, count, scale, out));
done:
    return st;
}
