/* engine.c - the engine handle: backend choice, errors, dtypes and validated projection. */
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

const char *sdm_status_str(sdm_status status)
{
    switch (status) {
    case SDM_OK: return "ok";
    case SDM_ERR_NOMEM: return "out_of_memory";
    case SDM_ERR_BAD_INPUT: return "bad_input";
    case SDM_ERR_NOT_FOUND: return "not_found";
    case SDM_ERR_CONFLICT: return "conflict";
    case SDM_ERR_UNSUPPORTED: return "unsupported";
    case SDM_ERR_DEVICE: return "device_error";
    case SDM_ERR_INTERNAL: return "internal";
    }
    return "unknown_status";
}

size_t sdm_dtype_size(sdm_dtype dtype)
{
    switch (dtype) {
    case SDM_F32: return 4;
    case SDM_F16: return 2;
    case SDM_BF16: return 2;
    }
    return 0;
}

/* Names of the public enums, indexed by value (each enum counts up from 0). */
static const char *const s_dtype_names[] = {"f32", "f16", "bf16"};
static const char *const s_proj_names[] = {"none", "rademacher", "sjlt"};
static const char *const s_method_names[] = {"dot", "cosine", "trak"};
static const char *const s_aggregate_names[] = {"sum", "mean"};
static const char *const s_backend_names[] = {"auto", "cpu", "cuda"};
#define NAMES(t) t, sizeof(t) / sizeof(t[0])

static const char *name_of(const char *const *names, size_t n, int value)
{
    return value >= 0 && (size_t)value < n ? names[value] : NULL;
}

/* The value whose name is `name`, or -1. */
static int value_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

#define PARSE(names, T)                                                                        \
    do {                                                                                       \
        int v_ = value_of(NAMES(names), name);                                                 \
        if (v_ < 0)                                                                            \
            return SDM_ERR_BAD_INPUT;                                                          \
        *out = (T)v_;                                                                          \
        return SDM_OK;                                                                         \
    } while (0)

const char *sdm_dtype_name(sdm_dtype dtype)
{
    return name_of(NAMES(s_dtype_names), (int)dtype);
}

sdm_status sdm_dtype_parse(const char *name, sdm_dtype *out)
{
    PARSE(s_dtype_names, sdm_dtype);
}

const char *sdm_proj_kind_name(sdm_proj_kind kind)
{
    return name_of(NAMES(s_proj_names), (int)kind);
}

sdm_status sdm_proj_kind_parse(const char *name, sdm_proj_kind *out)
{
    PARSE(s_proj_names, sdm_proj_kind);
}

const char *sdm_method_name(sdm_method method)
{
    return name_of(NAMES(s_method_names), (int)method);
}

sdm_status sdm_method_parse(const char *name, sdm_method *out)
{
    PARSE(s_method_names, sdm_method);
}

const char *sdm_aggregate_name(sdm_aggregate agg)
{
    return name_of(NAMES(s_aggregate_names), (int)agg);
}

sdm_status sdm_aggregate_parse(const char *name, sdm_aggregate *out)
{
    PARSE(s_aggregate_names, sdm_aggregate);
}

sdm_status sdm_backend_kind_parse(const char *name, sdm_backend_kind *out)
{
    PARSE(s_backend_names, sdm_backend_kind);
}

void sdm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    sdm_philox(ctr, key, out);
}

/* ---- f16 / bf16 ---------------------------------------------------------------------- */

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t sdm_f32_to_bf16(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float sdm_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

float sdm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t sdm_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00u;
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    if (a < 0x38800000u) { /* below the smallest normal f16: subnormal or zero */
        float v = fabsf(x) * 16777216.0f; /* in units of 2^-24, exact */
        uint32_t r = (uint32_t)nearbyintf(v);
        return sign | (uint16_t)r;
    }
    uint32_t exp = (a >> 23) - 112u;
    uint32_t man = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return sign | (uint16_t)h;
}

float sdm_matrix_get(const sdm_matrix *mat, uint64_t i)
{
    switch (mat->dtype) {
    case SDM_F32: return ((const float *)mat->data)[i];
    case SDM_F16: return sdm_f16_to_f32(((const uint16_t *)mat->data)[i]);
    case SDM_BF16: return sdm_bf16_to_f32(((const uint16_t *)mat->data)[i]);
    }
    return NAN;
}

/* ---- errors -------------------------------------------------------------------------- */

sdm_status sdm_backend_fail(sdm_backend *be, sdm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->error, sizeof(be->error), fmt, ap);
    va_end(ap);
    return status;
}

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

sdm_status sdm_projection_check(const sdm_projection *p, char *msg, size_t msg_len)
{
    const char *why = NULL;
    if (!p)
        why = "projection: missing";
    else if (!sdm_proj_kind_name(p->kind))
        why = "projection.kind: must be none, rademacher or sjlt";
    else if (p->input_dim == 0)
        why = "input_dim: must be at least 1";
    else if (p->dim == 0)
        why = "projection.dim: must be at least 1";
    else if (p->kind == SDM_PROJ_NONE && p->dim != p->input_dim)
        why = "projection.dim: must equal input_dim for kind none";
    else if (p->kind == SDM_PROJ_SJLT && p->s > 0 && p->dim % p->s != 0)
        why = "projection.s: must divide projection.dim";
    else if (p->kind == SDM_PROJ_SJLT && p->s > p->dim)
        why = "projection.s: must not exceed projection.dim";
    else if (p->kind != SDM_PROJ_SJLT && p->s > 1)
        why = "projection.s: only sjlt takes s";
    if (!why)
        return SDM_OK;
    if (msg && msg_len > 0)
        snprintf(msg, msg_len, "%s", why);
    return SDM_ERR_BAD_INPUT;
}

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
