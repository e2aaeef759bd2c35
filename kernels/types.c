/* types.c - the public types' names, sizes and conversions (status strings, dtype sizes,
 * enum names, f16/bf16, Philox, the projection spec's check, a backend's error message): what the service's codecs need without an engine. In a file
 * of their own so that a program using only these (the ledger) does not link the backends and
 * load their libraries; the cuda backend's module (libsediment_cuda.so) carries its own copy. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "philox.h"

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

/* ---- the projection spec ------------------------------------------------------------- */

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

/* ---- a backend's errors ---------------------------------------------------------------- */

sdm_status sdm_backend_fail(sdm_backend *be, sdm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->error, sizeof(be->error), fmt, ap);
    va_end(ap);
    return status;
}
