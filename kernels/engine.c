/* engine.c - the engine handle: backend choice, errors and validated projection. The names,
 * sizes and conversions of the public types are in types.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "philox.h"
#include "store.h"

#define SDM_DEFAULT_WORKSPACE ((size_t)256 << 20)

struct sdm_engine {
    sdm_backend be;  /* the chosen backend */
    sdm_backend cpu; /* always there: the fallback for ops a backend does not support */
    int have_cpu_copy;
    size_t workspace;
    char note[600];
};

/* The last error is kept per thread (and tagged with its engine), so that calls that only
 * read a store, such as sdm_store_check, can run on several threads at once without their
 * messages mixing. */
static _Thread_local struct {
    const sdm_engine_t *eng;
    char msg[1024];
} last_error;

/* ---- errors -------------------------------------------------------------------------- */

sdm_status sdm_engine_fail(sdm_engine_t *eng, sdm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error.msg, sizeof(last_error.msg), fmt, ap);
    va_end(ap);
    last_error.eng = eng;
    return status;
}

/* Copies a backend's failure message into the engine's last error. */
static sdm_status from_backend(sdm_engine_t *eng, const sdm_backend *be, const char *what,
                               sdm_status st)
{
    if (st != SDM_OK)
        sdm_engine_fail(eng, st, "%s (%s backend): %s", what, be->iface->name,
                        be->error[0] ? be->error : sdm_status_str(st));
    return st;
}

/* ---- engine -------------------------------------------------------------------------- */

static void set_err(char *err, size_t err_len, const char *fmt, const char *detail)
{
    if (err && err_len > 0)
        snprintf(err, err_len, fmt, detail);
}

sdm_engine_t *sdm_engine_new(const sdm_engine_opts *opts, sdm_status *status, char *err,
                             size_t err_len)
{
    sdm_engine_opts o = {SDM_BACKEND_AUTO, 0, 0, 0};
    if (opts)
        o = *opts;
    sdm_status st = SDM_OK;
    sdm_engine_t *eng = calloc(1, sizeof(*eng));
    if (!eng) {
        st = SDM_ERR_NOMEM;
        set_err(err, err_len, "%s", "engine: out of memory");
        goto done;
    }
    eng->workspace = o.workspace_bytes ? o.workspace_bytes : SDM_DEFAULT_WORKSPACE;
    st = sdm_cpu_backend_init(&eng->cpu, o.threads);
    if (st != SDM_OK) {
        set_err(err, err_len, "cpu backend: %s", eng->cpu.error);
        free(eng);
        eng = NULL;
        goto done;
    }
    eng->cpu.workspace = eng->workspace;
    if (o.backend == SDM_BACKEND_CPU) {
        eng->be = eng->cpu;
        goto done;
    }
    st = sdm_cuda_backend_init(&eng->be, o.device);
    if (st == SDM_OK) {
        eng->have_cpu_copy = 1;
        goto done;
    }
    if (o.backend == SDM_BACKEND_CUDA) {
        set_err(err, err_len, "cuda backend: %s", eng->be.error);
        eng->cpu.iface->free(&eng->cpu);
        free(eng);
        eng = NULL;
        goto done;
    }
    /* auto: no usable device is a normal path; say so and run on the cpu */
    snprintf(eng->note, sizeof(eng->note), "using cpu: %s", eng->be.error);
    eng->be = eng->cpu;
    st = SDM_OK;
done:
    if (status)
        *status = st;
    return eng;
}

void sdm_engine_destroy(sdm_engine_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_engine_t *eng = *self_p;
    if (eng->have_cpu_copy)
        eng->be.iface->free(&eng->be);
    eng->cpu.iface->free(&eng->cpu);
    free(eng);
    *self_p = NULL;
}

const char *sdm_engine_backend(const sdm_engine_t *self)
{
    return self->be.iface->name;
}

const char *sdm_engine_device(const sdm_engine_t *self)
{
    return self->be.device;
}

const char *sdm_engine_note(const sdm_engine_t *self)
{
    return self->note;
}

const char *sdm_engine_last_error(const sdm_engine_t *self)
{
    return last_error.eng == self ? last_error.msg : "";
}

sdm_backend *sdm_engine_backend_ptr(sdm_engine_t *eng)
{
    return &eng->be;
}

sdm_backend *sdm_engine_cpu_ptr(sdm_engine_t *eng)
{
    return &eng->cpu;
}

size_t sdm_engine_workspace(const sdm_engine_t *eng)
{
    return eng->workspace;
}

/* ---- validation ---------------------------------------------------------------------- */

static int all_finite(const sdm_matrix *m, uint64_t count, uint64_t *bad)
{
    if (m->dtype == SDM_F32) {
        const uint32_t *u = m->data;
        for (uint64_t i = 0; i < count; i++)
            if ((u[i] & 0x7f800000u) == 0x7f800000u) {
                *bad = i;
                return 0;
            }
        return 1;
    }
    const uint16_t *h = m->data;
    uint16_t mask = m->dtype == SDM_F16 ? 0x7c00u : 0x7f80u;
    for (uint64_t i = 0; i < count; i++)
        if ((h[i] & mask) == mask) {
            *bad = i;
            return 0;
        }
    return 1;
}

sdm_status sdm_check_matrix(sdm_engine_t *eng, const char *field, const sdm_matrix *mat,
                            uint64_t want_cols)
{
    if (!mat)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s: missing", field);
    if (!sdm_dtype_name(mat->dtype))
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s.dtype: must be f32, f16 or bf16",
                               field);
    if (mat->cols != want_cols)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                               "%s.cols: is %llu, the model needs %llu", field,
                               (unsigned long long)mat->cols, (unsigned long long)want_cols);
    if (mat->rows != 0 && mat->cols > UINT64_MAX / 8 / mat->rows)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s: rows x cols overflows", field);
    uint64_t count = mat->rows * mat->cols;
    if (count > 0 && !mat->data)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s.data: missing", field);
    uint64_t bad = 0;
    if (count > 0 && !all_finite(mat, count, &bad))
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT,
                               "%s.data: element %llu (row %llu, col %llu) is NaN or Inf", field,
                               (unsigned long long)bad, (unsigned long long)(bad / mat->cols),
                               (unsigned long long)(bad % mat->cols));
    return SDM_OK;
}

/* ---- projection ---------------------------------------------------------------------- */

sdm_status sdm_engine_run_project(sdm_engine_t *eng, const sdm_projection *proj,
                                  const sdm_matrix *in, float *out)
{
    sdm_status st = eng->be.iface->project(&eng->be, proj, in, out);
    if (st == SDM_ERR_UNSUPPORTED && eng->have_cpu_copy)
        st = eng->cpu.iface->project(&eng->cpu, proj, in, out);
    return from_backend(eng, &eng->be, "project", st);
}

sdm_status sdm_engine_run_gram(sdm_engine_t *eng, const float *rows, uint64_t n, uint32_t k,
                               double *K)
{
    sdm_status st = eng->be.iface->gram(&eng->be, rows, n, k, K);
    if (st == SDM_ERR_UNSUPPORTED && eng->have_cpu_copy)
        st = eng->cpu.iface->gram(&eng->cpu, rows, n, k, K);
    return from_backend(eng, &eng->be, "gram", st);
}

sdm_status sdm_engine_run_solve(sdm_engine_t *eng, uint32_t k, double *A, uint64_t m, double *B)
{
    sdm_status st = eng->be.iface->solve_spd(&eng->be, k, A, m, B);
    if (st == SDM_ERR_UNSUPPORTED && eng->have_cpu_copy)
        st = eng->cpu.iface->solve_spd(&eng->cpu, k, A, m, B);
    return from_backend(eng, &eng->be, "solve_spd", st);
}

sdm_status sdm_engine_run_topk(sdm_engine_t *eng, const sdm_pass *pass)
{
    sdm_status st = eng->be.iface->topk_pass(&eng->be, pass);
    if (st == SDM_ERR_UNSUPPORTED && eng->have_cpu_copy)
        st = eng->cpu.iface->topk_pass(&eng->cpu, pass);
    return from_backend(eng, &eng->be, "topk_pass", st);
}

sdm_status sdm_project(sdm_engine_t *eng, const sdm_projection *proj, const sdm_matrix *in,
                       float *out)
{
    char msg[256];
    if (!eng)
        return SDM_ERR_BAD_INPUT;
    if (sdm_projection_check(proj, msg, sizeof(msg)) != SDM_OK)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "%s", msg);
    sdm_status st = sdm_check_matrix(eng, "grads", in, proj->input_dim);
    if (st != SDM_OK)
        return st;
    if (in->rows > 0 && !out)
        return sdm_engine_fail(eng, SDM_ERR_BAD_INPUT, "out: missing");
    if (in->rows == 0)
        return SDM_OK;
    return sdm_engine_run_project(eng, proj, in, out);
}
