/* cuda_backend.cu - the CUDA backend: device discovery, context, error mapping, scratch, slots.
 *
 * The ops live one per file beside this one (project_*.cu, gram.cu, solve_spd.cu,
 * topk_*.cu); this file owns what they share and the sdm_backend_i table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "cuda_common.h"

/* Input bytes (plus output) one projection chunk may hold on the device. A constant, not a
 * share of free memory, so that the chunking, and with it the split counts and the
 * summation order, are the same on every device. */
#define SDM_PROJECT_CHUNK_BYTES ((size_t)512 << 20)

static const char *s_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

sdm_status sdm_cuda_fail_rt(sdm_backend *be, cudaError_t err, const char *expr, const char *file,
                            int line)
{
    /* Clears a non-sticky error so that the next call is not blamed for this one; a sticky
     * one (a faulted kernel) stays, and every later call reports it. */
    (void)cudaGetLastError();
    sdm_status st = err == cudaErrorMemoryAllocation ? SDM_ERR_NOMEM : SDM_ERR_DEVICE;
    return sdm_backend_fail(be, st, "%s:%d: %s: %s (%s)", s_base(file), line, expr,
                            cudaGetErrorName(err), cudaGetErrorString(err));
}

sdm_status sdm_cuda_fail_blas(sdm_backend *be, cublasStatus_t err, const char *expr,
                              const char *file, int line)
{
    sdm_status st = err == CUBLAS_STATUS_ALLOC_FAILED ? SDM_ERR_NOMEM : SDM_ERR_DEVICE;
    return sdm_backend_fail(be, st, "%s:%d: %s: %s (%s)", s_base(file), line, expr,
                            cublasGetStatusName(err), cublasGetStatusString(err));
}

static const char *s_solver_name(cusolverStatus_t err)
{
    switch (err) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "CUSOLVER_STATUS_(other)";
    }
}

sdm_status sdm_cuda_fail_solver(sdm_backend *be, cusolverStatus_t err, const char *expr,
                                const char *file, int line)
{
    sdm_status st = err == CUSOLVER_STATUS_ALLOC_FAILED ? SDM_ERR_NOMEM : SDM_ERR_DEVICE;
    return sdm_backend_fail(be, st, "%s:%d: %s: %s (%d)", s_base(file), line, expr,
                            s_solver_name(err), (int)err);
}

/* ---- context ------------------------------------------------------------------------ */

sdm_status sdm_cuda_enter(sdm_backend *be)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    if (!ctx)
        return sdm_backend_fail(be, SDM_ERR_INTERNAL, "cuda backend used after free");
    SDM_CUDA_CHECK(be, cudaSetDevice(ctx->device));
done:
    return st;
}

sdm_status sdm_cuda_scratch(sdm_backend *be, size_t bytes, void **out)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    *out = NULL;
    if (bytes == 0)
        bytes = SDM_CUDA_ALIGN;
    if (bytes > ctx->scratch_bytes) {
        /* Work queued by an earlier call may still read the old buffer. */
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->copy));
        SDM_CUDA_CHECK(be, cudaFree(ctx->scratch));
        ctx->scratch = NULL;
        ctx->scratch_bytes = 0;
        SDM_CUDA_CHECK(be, cudaMalloc(&ctx->scratch, bytes));
        ctx->scratch_bytes = bytes;
    }
    *out = ctx->scratch;
done:
    return st;
}

sdm_status sdm_cuda_pinned(sdm_backend *be, size_t bytes, void **out)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    *out = NULL;
    if (bytes == 0)
        bytes = SDM_CUDA_ALIGN;
    if (bytes > ctx->pinned_bytes) {
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->copy));
        SDM_CUDA_CHECK(be, cudaFreeHost(ctx->pinned));
        ctx->pinned = NULL;
        ctx->pinned_bytes = 0;
        SDM_CUDA_CHECK(be, cudaHostAlloc(&ctx->pinned, bytes, cudaHostAllocDefault));
        ctx->pinned_bytes = bytes;
    }
    *out = ctx->pinned;
done:
    return st;
}

/* Releases whatever of the context exists; errors are ignored because nothing can be done
 * about them on the way out. */
static void s_ctx_destroy(sdm_cuda_ctx *ctx)
{
    if (!ctx)
        return;
    (void)cudaSetDevice(ctx->device);
    if (ctx->stream)
        (void)cudaStreamSynchronize(ctx->stream);
    if (ctx->copy)
        (void)cudaStreamSynchronize(ctx->copy);
    if (ctx->solver)
        (void)cusolverDnDestroy(ctx->solver);
    if (ctx->blas)
        (void)cublasDestroy(ctx->blas);
    if (ctx->scratch)
        (void)cudaFree(ctx->scratch);
    if (ctx->pinned)
        (void)cudaFreeHost(ctx->pinned);
    if (ctx->copy)
        (void)cudaStreamDestroy(ctx->copy);
    if (ctx->stream)
        (void)cudaStreamDestroy(ctx->stream);
    (void)cudaGetLastError();
    free(ctx);
}

/* ---- slots -------------------------------------------------------------------------- */

static void s_cuda_free(sdm_backend *be)
{
    s_ctx_destroy((sdm_cuda_ctx *)be->ctx);
    be->ctx = NULL;
}

/* `none`: the rows are features already; converting them costs less on the host than the
 * round trip over PCIe would. */
static sdm_status s_convert(sdm_backend *be, const sdm_matrix *in, uint32_t k, float *out)
{
    uint64_t n = in->rows, d = in->cols;
    size_t count = (size_t)(n * d);
    if (d != k)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT,
                                "projection none needs dim == input cols (%u != %llu)", k,
                                (unsigned long long)d);
    if (count == 0)
        return SDM_OK;
    switch (in->dtype) {
    case SDM_F32:
        memcpy(out, in->data, count * sizeof(float));
        return SDM_OK;
    case SDM_F16: {
        const __half *src = (const __half *)in->data;
        for (size_t i = 0; i < count; i++)
            out[i] = __half2float(src[i]);
        return SDM_OK;
    }
    case SDM_BF16: {
        const uint16_t *src = (const uint16_t *)in->data;
        for (size_t i = 0; i < count; i++) {
            uint32_t bits = (uint32_t)src[i] << 16;
            memcpy(&out[i], &bits, sizeof bits);
        }
        return SDM_OK;
    }
    }
    return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "unknown dtype %d", (int)in->dtype);
}

static sdm_status s_cuda_project(sdm_backend *be, const sdm_projection *proj, const sdm_matrix *in,
                                 float *out)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    sdm_status st = SDM_OK;
    uint64_t n = in->rows, d = in->cols, r0 = 0, rows = 0, rows_chunk = 0;
    uint32_t k = proj->dim, s = proj->s ? proj->s : 1, splits = 1;
    size_t elt = sdm_dtype_size(in->dtype), in_bytes = 0, out_bytes = 0, part_bytes = 0;
    char *cursor = NULL;
    void *base = NULL, *d_in = NULL;
    float *d_out = NULL, *d_part = NULL;

    if (proj->kind == SDM_PROJ_NONE)
        return s_convert(be, in, k, out);
    if (elt == 0)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "unknown dtype %d", (int)in->dtype);
    if (proj->kind != SDM_PROJ_RADEMACHER && proj->kind != SDM_PROJ_SJLT)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "unknown projection kind %d",
                                (int)proj->kind);
    if (proj->kind == SDM_PROJ_SJLT && (k % s) != 0)
        return sdm_backend_fail(be, SDM_ERR_BAD_INPUT, "sjlt needs dim %% s == 0 (%u, %u)", k, s);
    if (n == 0 || k == 0)
        return SDM_OK;
    if (d == 0) {
        memset(out, 0, (size_t)(n * k) * sizeof(float));
        return SDM_OK;
    }
    SDM_TRY(sdm_cuda_enter(be));

    rows_chunk = SDM_PROJECT_CHUNK_BYTES / (d * elt + (uint64_t)k * sizeof(float));
    if (rows_chunk < 1)
        rows_chunk = 1;
    if (rows_chunk > ((uint64_t)1 << 20))
        rows_chunk = (uint64_t)1 << 20;
    if (rows_chunk > n)
        rows_chunk = n;
    /* Splits follow the nominal chunk, not each chunk's actual rows, so that a row's
     * summation order does not depend on where it falls in the batch. */
    if (proj->kind == SDM_PROJ_RADEMACHER) {
        splits = sdm_cuda_rademacher_splits(rows_chunk, d, k);
        part_bytes = splits > 1 ? (size_t)splits * rows_chunk * k * sizeof(float) : 0;
    } else {
        splits = sdm_cuda_sjlt_splits(rows_chunk, d);
        part_bytes = (size_t)splits * rows_chunk * k * sizeof(float);
    }
    in_bytes = (size_t)(rows_chunk * d * elt);
    out_bytes = (size_t)rows_chunk * k * sizeof(float);
    SDM_TRY(sdm_cuda_scratch(be, sdm_cuda_round(in_bytes) + sdm_cuda_round(out_bytes) +
                                     sdm_cuda_round(part_bytes),
                             &base));
    cursor = (char *)base;
    d_in = sdm_cuda_carve(&cursor, in_bytes);
    d_out = (float *)sdm_cuda_carve(&cursor, out_bytes);
    d_part = part_bytes ? (float *)sdm_cuda_carve(&cursor, part_bytes) : NULL;

    for (r0 = 0; r0 < n; r0 += rows) {
        rows = n - r0 < rows_chunk ? n - r0 : rows_chunk;
        SDM_CUDA_CHECK(be, cudaMemcpyAsync(d_in, (const char *)in->data + r0 * d * elt,
                                           (size_t)(rows * d * elt), cudaMemcpyHostToDevice,
                                           ctx->stream));
        if (proj->kind == SDM_PROJ_RADEMACHER)
            SDM_TRY(sdm_cuda_rademacher(be, ctx->stream, in->dtype, d_in, rows, d, k, proj->seed,
                                        splits, d_part, d_out));
        else
            SDM_TRY(sdm_cuda_sjlt(be, ctx->stream, in->dtype, d_in, rows, d, k, s, proj->seed,
                                  splits, d_part, d_out));
        SDM_CUDA_CHECK(be, cudaMemcpyAsync(out + r0 * k, d_out, (size_t)rows * k * sizeof(float),
                                           cudaMemcpyDeviceToHost, ctx->stream));
        SDM_CUDA_CHECK(be, cudaStreamSynchronize(ctx->stream));
    }
done:
    if (st != SDM_OK && ctx)
        (void)cudaStreamSynchronize(ctx->stream);
    return st;
}

static sdm_status s_cuda_gram(sdm_backend *be, const float *rows, uint64_t n, uint32_t k, double *K)
{
    return sdm_cuda_gram(be, rows, n, k, K);
}

static sdm_status s_cuda_solve_spd(sdm_backend *be, uint32_t k, double *A, uint64_t m, double *B)
{
    return sdm_cuda_solve_spd(be, k, A, m, B);
}

static sdm_status s_cuda_topk_pass(sdm_backend *be, const sdm_pass *pass)
{
    return sdm_cuda_topk_pass(be, pass);
}

/* Pinned, so that feature uploads run at full PCIe speed and overlap compute. Portable, so
 * that it stays pinned whichever device is current. When pinning fails (the system's limit
 * on locked memory, say) plain malloc: uploads from it are slower, but the store still takes
 * the batch. NULL only when both fail, like malloc. */
static void *s_cuda_host_alloc(sdm_backend *be, size_t bytes)
{
    sdm_cuda_ctx *ctx = (sdm_cuda_ctx *)be->ctx;
    void *p = NULL;
    /* On a thread that never chose a device this would otherwise wake up device 0. */
    if (ctx && cudaSetDevice(ctx->device) == cudaSuccess &&
        cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) == cudaSuccess)
        return p;
    (void)cudaGetLastError();
    return malloc(bytes ? bytes : 1);
}

/* Frees either kind s_cuda_host_alloc hands out: the driver knows which pointers it pinned. */
static void s_cuda_host_free(sdm_backend *be, void *p)
{
    (void)be;
    if (!p)
        return;
    cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, p) == cudaSuccess && attr.type == cudaMemoryTypeHost) {
        if (cudaFreeHost(p) != cudaSuccess)
            (void)cudaGetLastError();
        return;
    }
    (void)cudaGetLastError();
    free(p);
}

static void s_cuda_cache_free(sdm_backend *be, void *cache)
{
    sdm_cuda_cache_free(be, cache);
}

static const struct sdm_backend_i s_cuda_iface = {
    /* .name = */ "cuda",
    /* .free = */ s_cuda_free,
    /* .project = */ s_cuda_project,
    /* .gram = */ s_cuda_gram,
    /* .solve_spd = */ s_cuda_solve_spd,
    /* .topk_pass = */ s_cuda_topk_pass,
    /* .host_alloc = */ s_cuda_host_alloc,
    /* .host_free = */ s_cuda_host_free,
    /* .cache_free = */ s_cuda_cache_free,
};

/* ---- constructors ------------------------------------------------------------------- */

int sdm_cudamod_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

sdm_status sdm_cudamod_backend_init(sdm_backend *be, int device)
{
    sdm_status st = SDM_OK;
    sdm_cuda_ctx *ctx = NULL;
    cudaDeviceProp prop;
    cudaError_t err;
    int count = 0;

    be->iface = NULL;
    be->ctx = NULL;
    be->device[0] = '\0';
    /* No driver or no device is the normal path on a CPU-only machine: say why, quietly. */
    err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return sdm_backend_fail(be, SDM_ERR_DEVICE, "no CUDA device: %s (%s)",
                                cudaGetErrorString(err), cudaGetErrorName(err));
    }
    if (count <= 0)
        return sdm_backend_fail(be, SDM_ERR_DEVICE, "no CUDA device: none found");
    if (device < 0 || device >= count)
        return sdm_backend_fail(be, SDM_ERR_DEVICE, "no CUDA device %d: %d device(s) present",
                                device, count);
    memset(&prop, 0, sizeof prop);
    SDM_CUDA_CHECK(be, cudaGetDeviceProperties(&prop, device));
    /* The kernels are built for sm_80 and sm_90 (bf16 tensor cores need 8.0). */
    if (prop.major < 8)
        return sdm_backend_fail(be, SDM_ERR_DEVICE,
                                "CUDA device %d (%s) has compute capability %d.%d; 8.0 or newer "
                                "is needed",
                                device, prop.name, prop.major, prop.minor);
    ctx = (sdm_cuda_ctx *)calloc(1, sizeof *ctx);
    if (!ctx)
        return sdm_backend_fail(be, SDM_ERR_NOMEM, "cuda backend context");
    ctx->device = device;
    ctx->sm_count = prop.multiProcessorCount;
    ctx->total_mem = prop.totalGlobalMem;
    SDM_CUDA_CHECK(be, cudaSetDevice(device));
    SDM_CUDA_CHECK(be, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    SDM_CUDA_CHECK(be, cudaStreamCreateWithFlags(&ctx->copy, cudaStreamNonBlocking));
    SDM_CUBLAS_CHECK(be, cublasCreate(&ctx->blas));
    SDM_CUBLAS_CHECK(be, cublasSetStream(ctx->blas, ctx->stream));
    /* Plain fp32 FMA: TF32 would put scores ~1e-3 away from the CPU reference. */
    SDM_CUBLAS_CHECK(be, cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH));
    SDM_CUSOLVER_CHECK(be, cusolverDnCreate(&ctx->solver));
    SDM_CUSOLVER_CHECK(be, cusolverDnSetStream(ctx->solver, ctx->stream));

    /* prop.name is at most 255 characters; a long name loses the tail, not the call. */
    snprintf(be->device, sizeof be->device, "%.200s (sm_%d%d, %d SMs, %.1f GiB)", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    be->iface = &s_cuda_iface;
    be->ctx = ctx;
    return SDM_OK;
done:
    s_ctx_destroy(ctx);
    return st;
}

/* What the loader checks before it calls anything here (backend.h). */
extern "C" const uint32_t sdm_cudamod_abi = SDM_CUDAMOD_ABI;
