/* wire.c - the wire codec: bounded msgpack pre-check, worker request decoding, replies.
 *
 * Decoding runs in three steps, and nothing is allocated before the first has passed:
 *   1. sdm_wire_precheck walks the raw bytes (no allocation, every length against the bytes
 *      left, element budget, depth bound, no trailing bytes);
 *   2. msgpack-c unpacks the frame, which the pre-check has made safe to hand it;
 *   3. a strict field-by-field decode checks every key, type, range and length.
 * Whatever the request holds, error messages stay printable ASCII (names are escaped), so
 * a reply never carries invalid UTF-8 back to the client.
 */
#include "wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- codes and errors ---------------------------------------------------------------- */

static const char *const code_names[SDM_WIRE_CODES] = {"ok",           "bad_request", "unknown_op",
                                                       "too_large",    "not_found",   "conflict",
                                                       "unauthorized", "busy",        "internal"};

const char *sdm_wire_code_name(sdm_wire_code code)
{
    if ((unsigned)code < SDM_WIRE_CODES)
        return code_names[code];
    return "internal";
}

sdm_wire_code sdm_wire_code_of_status(sdm_status status)
{
    switch (status) {
    case SDM_OK:
        return SDM_WIRE_OK;
    case SDM_ERR_BAD_INPUT:
        return SDM_WIRE_BAD_REQUEST;
    case SDM_ERR_NOT_FOUND:
        return SDM_WIRE_NOT_FOUND;
    case SDM_ERR_CONFLICT:
        return SDM_WIRE_CONFLICT;
    case SDM_ERR_NOMEM:
    case SDM_ERR_DEVICE:
    case SDM_ERR_INTERNAL:
    case SDM_ERR_UNSUPPORTED:
        break;
    }
    return SDM_WIRE_INTERNAL;
}

sdm_wire_code sdm_wire_fail(sdm_wire_error *err, sdm_wire_code code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Copies n bytes of s into out as printable ASCII, other bytes as \xNN, cut with "..." to
 * fit cap. Request bytes go into messages only through here. */
static const char *printable(char *out, size_t cap, const void *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        size_t need = (c >= 0x20 && c < 0x7f) ? 1 : 4;
        if (o + need + 4 > cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

#define PRINTABLE_CAP 72

/* ---- pre-check ------------------------------------------------------------------------ */

#define DEFAULT_MAX_ELEMENTS (UINT64_C(1) << 24)
/* The deepest nesting the walker can track; larger limits are clamped to it. */
#define WALK_STACK_MAX 256

typedef struct walker {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    uint32_t max_depth;
    uint64_t budget; /* elements still allowed */
    sdm_wire_error *err;
} walker;

static uint64_t read_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static sdm_wire_code walk_fail_short(walker *w, size_t at, const char *what, uint64_t need)
{
    return sdm_wire_fail(w->err, SDM_WIRE_BAD_REQUEST,
                         "msgpack: at byte %zu, %s needs %llu bytes, %zu left", at, what,
                         (unsigned long long)need, w->len - w->pos);
}

/* Reads `n` header bytes after the type byte at `at` into *v. */
static sdm_wire_code walk_field(walker *w, size_t at, const char *what, unsigned n, uint64_t *v)
{
    if (n > w->len - w->pos)
        return walk_fail_short(w, at, what, n);
    *v = read_be(w->buf + w->pos, n);
    w->pos += n;
    return SDM_WIRE_OK;
}

/* Skips a payload of n bytes. */
static sdm_wire_code walk_skip(walker *w, size_t at, const char *what, uint64_t n)
{
    if (n > w->len - w->pos)
        return walk_fail_short(w, at, what, n);
    w->pos += (size_t)n;
    return SDM_WIRE_OK;
}

/* A container of `count` entries, each made of `per` objects of at least one byte. */
/* A length field of `width` bytes, then that many bytes plus `extra` (ext's type byte). */
static sdm_wire_code walk_sized(walker *w, size_t at, const char *what, unsigned width,
                                uint64_t extra)
{
    uint64_t v = 0;
    sdm_wire_code c = walk_field(w, at, what, width, &v);
    return c != SDM_WIRE_OK ? c : walk_skip(w, at, what, v + extra);
}

static sdm_wire_code walk_count(walker *w, size_t at, const char *what, uint64_t count,
                                unsigned per, uint64_t *children)
{
    uint64_t left = w->len - w->pos;
    if (count > left / per)
        return sdm_wire_fail(w->err, SDM_WIRE_BAD_REQUEST,
                             "msgpack: at byte %zu, %s of %llu %s with %llu bytes left", at, what,
                             (unsigned long long)count, per == 1 ? "elements" : "entries",
                             (unsigned long long)left);
    /* a well-formed frame that is simply too big: too_large, the one code the worker gives
     * for size (frames over ZMQ_MAXMSGSIZE are dropped without a reply) */
    if (count > w->budget)
        return sdm_wire_fail(w->err, SDM_WIRE_TOO_LARGE,
                             "msgpack: at byte %zu, %s of %llu: over the element budget", at, what,
                             (unsigned long long)count);
    w->budget -= count;
    *children = count * per;
    return SDM_WIRE_OK;
}

/* Reads the object header at w->pos and skips the payload of a scalar. For a container
 * sets *container and *children (array elements, or twice the map entries). */
static sdm_wire_code walk_header(walker *w, int *container, uint64_t *children)
{
    size_t at = w->pos;
    if (at >= w->len)
        return sdm_wire_fail(w->err, SDM_WIRE_BAD_REQUEST,
                             "msgpack: truncated, an object expected at byte %zu", at);
    uint8_t t = w->buf[w->pos++];
    uint64_t v = 0;
    sdm_wire_code c;
    *container = 0;
    *children = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return SDM_WIRE_OK; /* fixint, nil, bool */
    if (t <= 0x8f) {
        *container = 1;
        return walk_count(w, at, "fixmap", t & 0x0f, 2, children);
    }
    if (t <= 0x9f) {
        *container = 1;
        return walk_count(w, at, "fixarray", t & 0x0f, 1, children);
    }
    if (t <= 0xbf)
        return walk_skip(w, at, "fixstr", t & 0x1f);
    switch (t) {
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return walk_sized(w, at, (const char *const[]){"bin8", "bin16", "bin32"}[t - 0xc4],
                          1u << (t - 0xc4), 0);
    case 0xc7:
    case 0xc8:
    case 0xc9: /* the type byte, then the data */
        return walk_sized(w, at, (const char *const[]){"ext8", "ext16", "ext32"}[t - 0xc7],
                          1u << (t - 0xc7), 1);
    case 0xca:
        return walk_skip(w, at, "float32", 4);
    case 0xcb:
        return walk_skip(w, at, "float64", 8);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return walk_skip(w, at, "uint", 1u << (t - 0xcc));
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return walk_skip(w, at, "int", 1u << (t - 0xd0));
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return walk_skip(w, at, "fixext", 1 + (1u << (t - 0xd4)));
    case 0xd9:
    case 0xda:
    case 0xdb:
        return walk_sized(w, at, (const char *const[]){"str8", "str16", "str32"}[t - 0xd9],
                          1u << (t - 0xd9), 0);
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf: {
        static const char *const names[] = {"array16", "array32", "map16", "map32"};
        const char *what = names[t - 0xdc];
        if ((c = walk_field(w, at, what, t & 1 ? 4 : 2, &v)) != SDM_WIRE_OK)
            return c;
        *container = 1;
        return walk_count(w, at, what, v, t < 0xde ? 1 : 2, children);
    }
    default: /* 0xc1 */
        return sdm_wire_fail(w->err, SDM_WIRE_BAD_REQUEST,
                             "msgpack: at byte %zu, type byte 0x%02x is never used", at, t);
    }
}

/* Walks exactly one object from w->pos, iteratively: pending[i] counts the objects still
 * to come in the i-th open container. */
static sdm_wire_code walk_one(walker *w)
{
    uint64_t pending[WALK_STACK_MAX];
    uint32_t depth = 0;
    for (;;) {
        size_t at = w->pos;
        int container;
        uint64_t children;
        sdm_wire_code c = walk_header(w, &container, &children);
        if (c != SDM_WIRE_OK)
            return c;
        if (container) {
            if (depth + 1 > w->max_depth)
                return sdm_wire_fail(w->err, SDM_WIRE_BAD_REQUEST,
                                     "msgpack: at byte %zu, nesting deeper than %u", at,
                                     w->max_depth);
            if (children > 0) {
                pending[depth++] = children;
                continue;
            }
        }
        /* an object is complete: close every container it completes */
        while (depth > 0 && --pending[depth - 1] == 0)
            depth--;
        if (depth == 0)
            return SDM_WIRE_OK;
    }
}

static void walker_init(walker *w, const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                        sdm_wire_error *err)
{
    w->buf = buf;
    w->len = len;
    w->pos = 0;
    w->max_depth = lim && lim->max_depth ? lim->max_depth : SDM_WIRE_MAX_DEPTH;
    if (w->max_depth > WALK_STACK_MAX)
        w->max_depth = WALK_STACK_MAX;
    w->budget = lim && lim->max_elements ? lim->max_elements : DEFAULT_MAX_ELEMENTS;
    w->err = err;
}

sdm_wire_code sdm_wire_precheck(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                sdm_wire_error *err)
{
    if (!buf || len == 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "msgpack: empty frame");
    walker w;
    walker_init(&w, buf, len, lim, err);
    sdm_wire_code c = walk_one(&w);
    if (c != SDM_WIRE_OK)
        return c;
    if (w.pos != len)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST,
                             "msgpack: %zu trailing bytes after the object ending at byte %zu",
                             len - w.pos, w.pos);
    return SDM_WIRE_OK;
}

/* ---- field helpers --------------------------------------------------------------------- */

enum field {
    F_OP,
    F_ID,
    F_MODEL,
    F_INPUT_DIM,
    F_PROJECTION,
    F_CHECKPOINT,
    F_LR,
    F_CONTRIBUTOR,
    F_SHARD,
    F_EXAMPLE_IDS,
    F_GRADS,
    F_FEATURES,
    F_WEIGHTS,
    F_CURVATURE,
    F_QUERIES,
    F_QUERY_FEATURES,
    F_METHOD,
    F_AGGREGATE,
    F_TOPK,
    F_LAMBDA,
    F_QUERY_IDS,
    F_REQUEST_ID,
    /* ledger */
    F_ENTRY,
    F_INDEX,
    F_SIZE,
    F_FROM,
    F_TO,
    F_SINCE,
    F_UNTIL,
    F_LIMIT,
    F_POOL,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "op",      "id",          "model",     "input_dim",      "projection", "checkpoint",
    "lr",      "contributor", "shard",     "example_ids",    "grads",      "features",
    "weights", "curvature",   "queries",   "query_features", "method",     "aggregate",
    "topk",    "lambda",      "query_ids", "request_id",     "entry",      "index",
    "size",    "from",        "to",        "since",          "until",      "limit",
    "pool"};

#define BIT(f) (UINT32_C(1) << (f))
#define COMMON (BIT(F_OP) | BIT(F_ID))

static const char *const op_names[] = {"info", "register", "contribute", "attribute", "stats"};
#define N_OPS (sizeof(op_names) / sizeof(op_names[0]))
_Static_assert(F_COUNT <= 32, "op field sets are 32-bit masks");

/* The keys each op takes. */
static const uint32_t op_fields[N_OPS] = {
    [SDM_OP_INFO] = COMMON,
    [SDM_OP_REGISTER] = COMMON | BIT(F_MODEL) | BIT(F_INPUT_DIM) | BIT(F_PROJECTION),
    [SDM_OP_CONTRIBUTE] = COMMON | BIT(F_MODEL) | BIT(F_CHECKPOINT) | BIT(F_LR) |
                          BIT(F_CONTRIBUTOR) | BIT(F_SHARD) | BIT(F_EXAMPLE_IDS) | BIT(F_GRADS) |
                          BIT(F_FEATURES) | BIT(F_WEIGHTS) | BIT(F_CURVATURE),
    [SDM_OP_ATTRIBUTE] = COMMON | BIT(F_MODEL) | BIT(F_QUERIES) | BIT(F_QUERY_FEATURES) |
                         BIT(F_METHOD) | BIT(F_AGGREGATE) | BIT(F_TOPK) | BIT(F_LAMBDA) |
                         BIT(F_QUERY_IDS) | BIT(F_REQUEST_ID),
    [SDM_OP_STATS] = COMMON,
};

static const char *const ledger_op_names[] = {"info",        "append",      "checkpoint",
                                              "entry",       "inclusion",   "consistency",
                                              "history",     "rewards"};
#define N_LEDGER_OPS (sizeof(ledger_op_names) / sizeof(ledger_op_names[0]))

static const uint32_t ledger_op_fields[N_LEDGER_OPS] = {
    [SDM_LOP_INFO] = COMMON,
    [SDM_LOP_APPEND] = COMMON | BIT(F_ENTRY),
    [SDM_LOP_CHECKPOINT] = COMMON,
    [SDM_LOP_ENTRY] = COMMON | BIT(F_INDEX),
    [SDM_LOP_INCLUSION] = COMMON | BIT(F_INDEX) | BIT(F_SIZE),
    [SDM_LOP_CONSISTENCY] = COMMON | BIT(F_FROM) | BIT(F_TO),
    [SDM_LOP_HISTORY] = COMMON | BIT(F_CONTRIBUTOR) | BIT(F_SINCE) | BIT(F_UNTIL) | BIT(F_LIMIT),
    [SDM_LOP_REWARDS] = COMMON | BIT(F_POOL) | BIT(F_SINCE) | BIT(F_UNTIL) | BIT(F_MODEL),
};

/* A protocol's op names and the keys each takes. */
typedef struct protocol {
    const char *const *names;
    const uint32_t *fields;
    size_t n_ops;
} protocol;

static const protocol worker_protocol = {op_names, op_fields, N_OPS};
static const protocol ledger_protocol = {ledger_op_names, ledger_op_fields, N_LEDGER_OPS};

const char *sdm_wire_op_name(sdm_worker_op op)
{
    return (unsigned)op < N_OPS ? op_names[op] : "?";
}

const char *sdm_wire_ledger_op_name(sdm_ledger_op op)
{
    return (unsigned)op < N_LEDGER_OPS ? ledger_op_names[op] : "?";
}

typedef struct dec {
    const uint8_t *buf;
    size_t len;
    sdm_wire_error *err;
    const msgpack_object *f[F_COUNT]; /* the value of each key present */
    size_t query_ids_off;             /* where the raw query_ids value starts */
} dec;

static int str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* Whether [p, p+n) lies inside the frame: borrowed pointers must, since the unpacked
 * objects are freed before decode returns. */
static int in_frame(const dec *d, const void *p, size_t n)
{
    uintptr_t b = (uintptr_t)d->buf, q = (uintptr_t)p;
    return n == 0 || (p && q >= b && q - b <= d->len && n <= d->len - (q - b));
}

static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else
            return 0;
        if (more > n - i - 1)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= more; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += more + 1;
    }
    return 1;
}

int sdm_wire_utf8_valid(const uint8_t *s, size_t n)
{
    return utf8_valid(s, n);
}

const char *sdm_wire_printable(char *out, size_t cap, const void *s, size_t n)
{
    return printable(out, cap, s, n);
}

static sdm_wire_code bad(dec *d, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static sdm_wire_code bad(dec *d, const char *fmt, ...)
{
    if (d->err) {
        d->err->code = SDM_WIRE_BAD_REQUEST;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err->message, sizeof(d->err->message), fmt, ap);
        va_end(ap);
    }
    return SDM_WIRE_BAD_REQUEST;
}

static sdm_wire_code out_of_memory(dec *d, const char *path)
{
    return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "%s: out of memory", path);
}

static char *copy_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* A model, checkpoint, contributor or shard name: 1 to SDM_WIRE_MAX_NAME bytes of UTF-8
 * without NUL. *out is malloc'd. */
static sdm_wire_code get_name(dec *d, const char *path, const msgpack_object *o, char **out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return bad(d, "%s: expected a string", path);
    const uint8_t *p = (const uint8_t *)o->via.str.ptr;
    size_t n = o->via.str.size;
    if (n == 0)
        return bad(d, "%s: must not be empty", path);
    if (n > SDM_WIRE_MAX_NAME)
        return bad(d, "%s: %zu bytes, at most %d", path, n, SDM_WIRE_MAX_NAME);
    if (memchr(p, 0, n))
        return bad(d, "%s: contains a NUL byte", path);
    if (!utf8_valid(p, n))
        return bad(d, "%s: not valid UTF-8", path);
    if (!(*out = copy_bytes(o->via.str.ptr, n)))
        return out_of_memory(d, path);
    return SDM_WIRE_OK;
}

/* A short keyword (dtype, method, ...) as a NUL-terminated string for the engine's parsers;
 * 0 when it is not a string or too long to be any keyword. */
static int get_word(const msgpack_object *o, char *out, size_t cap)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
        memchr(o->via.str.ptr, 0, o->via.str.size))
        return 0;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 1;
}

static sdm_wire_code get_u64(dec *d, const char *path, const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return bad(d, "%s: expected a non-negative integer", path);
    *out = o->via.u64;
    return SDM_WIRE_OK;
}

/* Any msgpack number (ints and floats alike) as a double; 0 when o is not a number. */
static int as_number(const msgpack_object *o, double *out)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return 1;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return 1;
    default:
        return 0;
    }
}

/* The values of a map with a fixed set of keys: v[j] for keys[j] (NULL when absent; the
 * first `required` keys must be there). Anything else, or a key twice, is bad_request;
 * `shape` is the map's description for the message when o is not a map at all. */
static sdm_wire_code get_fields(dec *d, const char *path, const char *shape,
                                const msgpack_object *o, const char *const *keys, int n_keys,
                                int required, const msgpack_object **v)
{
    char name[PRINTABLE_CAP];
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "%s: expected a map %s", path, shape);
    for (int j = 0; j < n_keys; j++)
        v[j] = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        int which = -1;
        for (int j = 0; j < n_keys && which < 0; j++)
            if (str_is(k, keys[j]))
                which = j;
        if (which < 0) {
            if (k->type != MSGPACK_OBJECT_STR)
                return bad(d, "%s: key %u is not a string", path, i);
            return bad(d, "%s.%s: unknown key", path,
                       printable(name, sizeof(name), k->via.str.ptr, k->via.str.size));
        }
        if (v[which])
            return bad(d, "%s.%s: appears twice", path, keys[which]);
        v[which] = &o->via.map.ptr[i].val;
    }
    for (int j = 0; j < required; j++)
        if (!v[j])
            return bad(d, "%s.%s: missing", path, keys[j]);
    return SDM_WIRE_OK;
}

/* A matrix {dtype, rows, cols, data}, exactly those keys, at least one row and column,
 * len(data) = rows x cols x size(dtype) checked without overflow. The data stays in the
 * frame. */
static sdm_wire_code get_matrix(dec *d, const char *path, const msgpack_object *o, sdm_matrix *m,
                                const uint8_t **bytes, size_t *n_bytes)
{
    static const char *const keys[4] = {"dtype", "rows", "cols", "data"};
    const msgpack_object *v[4];
    sdm_wire_code c = get_fields(d, path, "{dtype, rows, cols, data}", o, keys, 4, 4, v);
    if (c != SDM_WIRE_OK)
        return c;
    char word[8];
    if (!get_word(v[0], word, sizeof(word)) || sdm_dtype_parse(word, &m->dtype) != SDM_OK)
        return bad(d, "%s.dtype: must be f32, f16 or bf16", path);
    if (v[1]->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return bad(d, "%s.rows: expected a non-negative integer", path);
    if (v[2]->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return bad(d, "%s.cols: expected a non-negative integer", path);
    m->rows = v[1]->via.u64;
    m->cols = v[2]->via.u64;
    if (m->rows == 0)
        return bad(d, "%s.rows: must be at least 1", path);
    if (m->cols == 0)
        return bad(d, "%s.cols: must be at least 1", path);
    if (v[3]->type != MSGPACK_OBJECT_BIN)
        return bad(d, "%s.data: expected bin", path);
    size_t size = sdm_dtype_size(m->dtype);
    uint64_t count, want;
    if (__builtin_mul_overflow(m->rows, m->cols, &count) ||
        __builtin_mul_overflow(count, (uint64_t)size, &want))
        return bad(d, "%s: rows %llu x cols %llu x %zu bytes overflows", path,
                   (unsigned long long)m->rows, (unsigned long long)m->cols, size);
    if (v[3]->via.bin.size != want)
        return bad(d, "%s.data: %u bytes, expected %llu (rows %llu x cols %llu x %zu)", path,
                   v[3]->via.bin.size, (unsigned long long)want, (unsigned long long)m->rows,
                   (unsigned long long)m->cols, size);
    if (!in_frame(d, v[3]->via.bin.ptr, v[3]->via.bin.size))
        return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "%s.data: not inside the frame", path);
    m->data = v[3]->via.bin.ptr;
    *bytes = (const uint8_t *)v[3]->via.bin.ptr;
    *n_bytes = v[3]->via.bin.size;
    return SDM_WIRE_OK;
}

static const msgpack_object *need(dec *d, enum field f, sdm_wire_code *c)
{
    if (!d->f[f]) {
        *c = bad(d, "%s: missing", field_names[f]);
        return NULL;
    }
    *c = SDM_WIRE_OK;
    return d->f[f];
}

static sdm_wire_code need_name(dec *d, enum field f, char **out)
{
    sdm_wire_code c;
    const msgpack_object *o = need(d, f, &c);
    return o ? get_name(d, field_names[f], o, out) : c;
}

/* ---- register ------------------------------------------------------------------------- */

static sdm_wire_code decode_register(dec *d, sdm_worker_request *r)
{
    sdm_wire_code c;
    const msgpack_object *o;
    if ((c = need_name(d, F_MODEL, &r->model)) != SDM_WIRE_OK)
        return c;
    if (!(o = need(d, F_INPUT_DIM, &c)))
        return c;
    if ((c = get_u64(d, "input_dim", o, &r->projection.input_dim)) != SDM_WIRE_OK)
        return c;
    if (r->projection.input_dim == 0)
        return bad(d, "input_dim: must be at least 1");
    if (!(o = need(d, F_PROJECTION, &c)))
        return c;
    static const char *const keys[4] = {"kind", "dim", "seed", "s"};
    const msgpack_object *v[4];
    if ((c = get_fields(d, "projection", "{kind, dim, seed, s?}", o, keys, 4, 3, v)) !=
        SDM_WIRE_OK)
        return c;
    char word[16];
    if (!get_word(v[0], word, sizeof(word)) ||
        sdm_proj_kind_parse(word, &r->projection.kind) != SDM_OK)
        return bad(d, "projection.kind: must be rademacher, sjlt or none");
    uint64_t dim = 0, s = 0;
    if ((c = get_u64(d, "projection.dim", v[1], &dim)) != SDM_WIRE_OK)
        return c;
    if (dim < 1 || dim > 65536)
        return bad(d, "projection.dim: %llu, expected 1 to 65536", (unsigned long long)dim);
    r->projection.dim = (uint32_t)dim;
    if ((c = get_u64(d, "projection.seed", v[2], &r->projection.seed)) != SDM_WIRE_OK)
        return c;
    if (v[3]) {
        if (r->projection.kind != SDM_PROJ_SJLT)
            return bad(d, "projection.s: only kind sjlt takes s");
        if ((c = get_u64(d, "projection.s", v[3], &s)) != SDM_WIRE_OK)
            return c;
        if (s < 1 || s > dim)
            return bad(d, "projection.s: %llu, expected 1 to projection.dim (%llu)",
                       (unsigned long long)s, (unsigned long long)dim);
    }
    /* sjlt's default s of 1 is made explicit, so that registering with and without `s: 1`
     * gives the same definition */
    r->projection.s = r->projection.kind == SDM_PROJ_SJLT ? (s ? (uint32_t)s : 1) : 0;
    char msg[sizeof(d->err->message)];
    if (sdm_projection_check(&r->projection, msg, sizeof(msg)) != SDM_OK)
        return bad(d, "%s", msg);
    return SDM_WIRE_OK;
}

/* ---- contribute ----------------------------------------------------------------------- */

static sdm_wire_code decode_contribute(dec *d, sdm_worker_request *r)
{
    sdm_wire_code c;
    const msgpack_object *o;
    if ((c = need_name(d, F_MODEL, &r->model)) != SDM_WIRE_OK ||
        (c = need_name(d, F_CHECKPOINT, &r->checkpoint)) != SDM_WIRE_OK)
        return c;
    if (!(o = need(d, F_LR, &c)))
        return c;
    if (!as_number(o, &r->lr))
        return bad(d, "lr: expected a number");
    if (!isfinite(r->lr) || r->lr <= 0)
        return bad(d, "lr: %g, must be a finite number > 0", r->lr);
    if ((o = d->f[F_CURVATURE])) {
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return bad(d, "curvature: expected true or false");
        r->curvature = o->via.boolean ? 1 : 0;
    }
    if (r->curvature) {
        static const enum field not_curv[] = {F_CONTRIBUTOR, F_SHARD, F_EXAMPLE_IDS, F_WEIGHTS};
        for (size_t i = 0; i < sizeof(not_curv) / sizeof(not_curv[0]); i++)
            if (d->f[not_curv[i]])
                return bad(d, "%s: not allowed in a curvature batch", field_names[not_curv[i]]);
    }
    if (d->f[F_GRADS] && d->f[F_FEATURES])
        return bad(d, "grads, features: give one of them, not both");
    if (!d->f[F_GRADS] && !d->f[F_FEATURES])
        return bad(d, "grads: missing (or features)");
    r->is_features = d->f[F_FEATURES] != NULL;
    const char *mpath = r->is_features ? "features" : "grads";
    c = get_matrix(d, mpath, d->f[r->is_features ? F_FEATURES : F_GRADS], &r->rows, &r->data_bytes,
                   &r->n_data_bytes);
    if (c != SDM_WIRE_OK || r->curvature)
        return c;

    uint64_t n = r->rows.rows;
    if ((c = need_name(d, F_CONTRIBUTOR, &r->contributor)) != SDM_WIRE_OK ||
        (c = need_name(d, F_SHARD, &r->shard)) != SDM_WIRE_OK)
        return c;
    if (!(o = need(d, F_EXAMPLE_IDS, &c)))
        return c;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(d, "example_ids: expected an array");
    if (o->via.array.size != n)
        return bad(d, "example_ids: %u values, expected %llu (%s.rows)", o->via.array.size,
                   (unsigned long long)n, mpath);
    if (!(r->example_ids = malloc(n * sizeof(uint64_t))))
        return out_of_memory(d, "example_ids");
    for (uint64_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return bad(d, "example_ids[%llu]: expected a non-negative integer",
                       (unsigned long long)i);
        r->example_ids[i] = e->via.u64;
    }
    if ((o = d->f[F_WEIGHTS])) {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return bad(d, "weights: expected an array");
        if (o->via.array.size != n)
            return bad(d, "weights: %u values, expected %llu (%s.rows)", o->via.array.size,
                       (unsigned long long)n, mpath);
        if (!(r->weights = malloc(n * sizeof(double))))
            return out_of_memory(d, "weights");
        for (uint64_t i = 0; i < n; i++) {
            if (!as_number(&o->via.array.ptr[i], &r->weights[i]))
                return bad(d, "weights[%llu]: expected a number", (unsigned long long)i);
            if (!isfinite(r->weights[i]))
                return bad(d, "weights[%llu]: must be finite", (unsigned long long)i);
        }
    }
    return SDM_WIRE_OK;
}

/* ---- attribute ------------------------------------------------------------------------ */

/* Byte order of names, as strcmp orders them (names hold no NUL). */
static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

typedef struct ckpt_ref {
    const char *name;
    size_t len;
    size_t index; /* into req->queries */
} ckpt_ref;

static int ckpt_ref_cmp(const void *a, const void *b)
{
    const ckpt_ref *x = a, *y = b;
    return name_cmp(x->name, x->len, y->name, y->len);
}

/* The query of checkpoint (p, n) by binary search of the sorted refs; -1 when none. */
static long find_ckpt(const ckpt_ref *refs, size_t count, const char *p, size_t n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(refs[mid].name, refs[mid].len, p, n);
        if (c == 0)
            return (long)refs[mid].index;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static sdm_wire_code decode_lambda(dec *d, sdm_worker_request *r, const ckpt_ref *refs)
{
    const msgpack_object *o = d->f[F_LAMBDA];
    char name[PRINTABLE_CAP];
    double x;
    if (r->method != SDM_METHOD_TRAK)
        return bad(d, "lambda: only method trak takes lambda");
    if (as_number(o, &x)) {
        if (!isfinite(x) || x < 0)
            return bad(d, "lambda: %g, must be a finite number >= 0", x);
        for (size_t i = 0; i < r->n_queries; i++)
            r->queries[i].lambda = x;
        return SDM_WIRE_OK;
    }
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "lambda: expected a number or a map {checkpoint: number}");
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return bad(d, "lambda: key %u is not a string", i);
        printable(name, sizeof(name), k->via.str.ptr, k->via.str.size);
        long q = find_ckpt(refs, r->n_queries, k->via.str.ptr, k->via.str.size);
        if (q < 0)
            return bad(d, "lambda.%s: not a checkpoint of %s", name,
                       r->queries_are_features ? "query_features" : "queries");
        if (!isnan(r->queries[q].lambda))
            return bad(d, "lambda.%s: appears twice", name);
        if (!as_number(v, &x))
            return bad(d, "lambda.%s: expected a number", name);
        if (!isfinite(x) || x < 0)
            return bad(d, "lambda.%s: %g, must be a finite number >= 0", name, x);
        r->queries[q].lambda = x;
    }
    return SDM_WIRE_OK;
}

static sdm_wire_code decode_query_ids(dec *d, sdm_worker_request *r, uint64_t m)
{
    const msgpack_object *o = d->f[F_QUERY_IDS];
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(d, "query_ids: expected an array");
    if (o->via.array.size != m)
        return bad(d, "query_ids: %u values, expected %llu (the queries' rows)", o->via.array.size,
                   (unsigned long long)m);
    for (uint32_t i = 0; i < m; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue;
        if (e->type != MSGPACK_OBJECT_STR)
            return bad(d, "query_ids[%u]: expected a non-negative integer or a string", i);
        if (!utf8_valid((const uint8_t *)e->via.str.ptr, e->via.str.size))
            return bad(d, "query_ids[%u]: not valid UTF-8", i);
    }
    r->query_ids = malloc(m * sizeof(*r->query_ids));
    r->query_id_lens = malloc(m * sizeof(*r->query_id_lens));
    if (!r->query_ids || !r->query_id_lens)
        return out_of_memory(d, "query_ids");
    /* the raw bytes of each element, echoed into the proof as they came */
    walker w;
    sdm_wire_limits lim = {WALK_STACK_MAX, UINT64_MAX};
    walker_init(&w, d->buf, d->len, &lim, d->err);
    w.pos = d->query_ids_off;
    int container;
    uint64_t children;
    if (walk_header(&w, &container, &children) != SDM_WIRE_OK || !container || children != m)
        return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "query_ids: raw bytes disagree");
    for (uint64_t i = 0; i < m; i++) {
        size_t start = w.pos;
        if (walk_one(&w) != SDM_WIRE_OK)
            return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "query_ids: raw bytes disagree");
        r->query_ids[i] = d->buf + start;
        r->query_id_lens[i] = w.pos - start;
    }
    return SDM_WIRE_OK;
}

static sdm_wire_code decode_attribute(dec *d, sdm_worker_request *r)
{
    sdm_wire_code c;
    const msgpack_object *o;
    char name[PRINTABLE_CAP], first[PRINTABLE_CAP], path[PRINTABLE_CAP + 32];
    if ((c = need_name(d, F_MODEL, &r->model)) != SDM_WIRE_OK)
        return c;
    if (d->f[F_QUERIES] && d->f[F_QUERY_FEATURES])
        return bad(d, "queries, query_features: give one of them, not both");
    if (!d->f[F_QUERIES] && !d->f[F_QUERY_FEATURES])
        return bad(d, "queries: missing (or query_features)");
    r->queries_are_features = d->f[F_QUERY_FEATURES] != NULL;
    const char *qname = r->queries_are_features ? "query_features" : "queries";
    o = d->f[r->queries_are_features ? F_QUERY_FEATURES : F_QUERIES];
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(d, "%s: expected a map {checkpoint: matrix}", qname);
    if (o->via.map.size == 0)
        return bad(d, "%s: empty, give at least one checkpoint", qname);
    size_t nq = o->via.map.size;
    if (!(r->queries = calloc(nq, sizeof(*r->queries))))
        return out_of_memory(d, qname);
    for (size_t i = 0; i < nq; i++) {
        sdm_wire_query *q = &r->queries[i];
        const msgpack_object *k = &o->via.map.ptr[i].key;
        r->n_queries = i + 1; /* so that free sees every name made so far */
        q->lambda = NAN;
        snprintf(path, sizeof(path), "%s: checkpoint %zu", qname, i);
        if ((c = get_name(d, path, k, &q->checkpoint)) != SDM_WIRE_OK)
            return c;
        printable(name, sizeof(name), k->via.str.ptr, k->via.str.size);
        snprintf(path, sizeof(path), "%s.%s", qname, name);
        c = get_matrix(d, path, &o->via.map.ptr[i].val, &q->rows, &q->bytes, &q->n_bytes);
        if (c != SDM_WIRE_OK)
            return c;
        if (i == 0) {
            memcpy(first, name, sizeof(first));
            continue;
        }
        if (q->rows.rows != r->queries[0].rows.rows)
            return bad(d, "%s.rows: %llu, expected %llu (as at %s)", path,
                       (unsigned long long)q->rows.rows,
                       (unsigned long long)r->queries[0].rows.rows, first);
        if (q->rows.cols != r->queries[0].rows.cols)
            return bad(d, "%s.cols: %llu, expected %llu (as at %s)", path,
                       (unsigned long long)q->rows.cols,
                       (unsigned long long)r->queries[0].rows.cols, first);
    }
    uint64_t m = r->queries[0].rows.rows;

    /* distinct checkpoints: sort once (a frame may carry millions of keys), then compare
     * neighbours; the sorted refs also serve lambda's lookups */
    ckpt_ref *refs = malloc(nq * sizeof(*refs));
    if (!refs)
        return out_of_memory(d, qname);
    for (size_t i = 0; i < nq; i++)
        refs[i] = (ckpt_ref){r->queries[i].checkpoint, strlen(r->queries[i].checkpoint), i};
    qsort(refs, nq, sizeof(*refs), ckpt_ref_cmp);
    for (size_t i = 1; i < nq; i++)
        if (ckpt_ref_cmp(&refs[i - 1], &refs[i]) == 0) {
            c = bad(d, "%s.%s: checkpoint appears twice", qname,
                    printable(name, sizeof(name), refs[i].name, refs[i].len));
            free(refs);
            return c;
        }

    r->method = SDM_METHOD_DOT;
    r->aggregate = SDM_AGG_SUM;
    r->topk = 10;
    char word[16];
    if ((o = d->f[F_METHOD]) &&
        (!get_word(o, word, sizeof(word)) || sdm_method_parse(word, &r->method) != SDM_OK))
        c = bad(d, "method: must be dot, cosine or trak");
    else if ((o = d->f[F_AGGREGATE]) && (!get_word(o, word, sizeof(word)) ||
                                         sdm_aggregate_parse(word, &r->aggregate) != SDM_OK))
        c = bad(d, "aggregate: must be sum or mean");
    else if (d->f[F_LAMBDA])
        c = decode_lambda(d, r, refs);
    free(refs);
    if (c != SDM_WIRE_OK)
        return c;
    if ((o = d->f[F_TOPK])) {
        uint64_t k = 0;
        if ((c = get_u64(d, "topk", o, &k)) != SDM_WIRE_OK)
            return c;
        if (k > SDM_WIRE_MAX_TOPK)
            return bad(d, "topk: %llu, at most %d", (unsigned long long)k, SDM_WIRE_MAX_TOPK);
        r->topk = (uint32_t)k;
    }
    if (d->f[F_QUERY_IDS] && (c = decode_query_ids(d, r, m)) != SDM_WIRE_OK)
        return c;
    if ((o = d->f[F_REQUEST_ID])) {
        if (o->type != MSGPACK_OBJECT_STR)
            return bad(d, "request_id: expected a string");
        size_t n = o->via.str.size;
        if (n > SDM_WIRE_MAX_NAME)
            return bad(d, "request_id: %zu bytes, at most %d", n, SDM_WIRE_MAX_NAME);
        if (memchr(o->via.str.ptr, 0, n))
            return bad(d, "request_id: contains a NUL byte");
        if (!utf8_valid((const uint8_t *)o->via.str.ptr, n))
            return bad(d, "request_id: not valid UTF-8");
        if (!(r->request_id = copy_bytes(o->via.str.ptr, n)))
            return out_of_memory(d, "request_id");
    }
    return SDM_WIRE_OK;
}

/* ---- the request ---------------------------------------------------------------------- */

/* The request map's common part: the raw "id" (echoed even when the request fails), the op
 * (*which indexes p->names), and every key checked against the op's set into d->f. */
static sdm_wire_code decode_head(dec *d, const msgpack_object *top, const protocol *p,
                                 const uint8_t **id, size_t *id_len, size_t *which_op)
{
    char name[PRINTABLE_CAP];
    if (top->type != MSGPACK_OBJECT_MAP)
        return bad(d, "request: expected a map");
    uint32_t n = top->via.map.size;

    /* First pass: the raw byte spans of "id" (echoed even when the request fails) and of
     * "query_ids", by walking the frame beside the unpacked map, and the op. */
    walker w;
    sdm_wire_limits lim = {WALK_STACK_MAX, UINT64_MAX};
    walker_init(&w, d->buf, d->len, &lim, d->err);
    int container;
    uint64_t children;
    if (walk_header(&w, &container, &children) != SDM_WIRE_OK || children != 2 * (uint64_t)n)
        return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "request: raw bytes disagree");
    const msgpack_object *op = NULL;
    int ops = 0, have_query_ids = 0;
    long bad_key = -1;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &top->via.map.ptr[i].key;
        if (walk_one(&w) != SDM_WIRE_OK)
            return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "request: raw bytes disagree");
        size_t start = w.pos;
        if (walk_one(&w) != SDM_WIRE_OK)
            return sdm_wire_fail(d->err, SDM_WIRE_INTERNAL, "request: raw bytes disagree");
        if (k->type != MSGPACK_OBJECT_STR) {
            if (bad_key < 0)
                bad_key = i;
        } else if (str_is(k, "id") && !*id) {
            *id = d->buf + start;
            *id_len = w.pos - start;
        } else if (str_is(k, "op")) {
            op = &top->via.map.ptr[i].val;
            ops++;
        } else if (str_is(k, "query_ids") && !have_query_ids) {
            d->query_ids_off = start;
            have_query_ids = 1;
        }
    }
    if (bad_key >= 0)
        return bad(d, "request: key %ld is not a string", bad_key);
    if (!op)
        return bad(d, "op: missing");
    if (ops > 1)
        return bad(d, "op: appears twice");
    if (op->type != MSGPACK_OBJECT_STR)
        return bad(d, "op: expected a string");
    size_t which = p->n_ops;
    for (size_t i = 0; i < p->n_ops && which == p->n_ops; i++)
        if (str_is(op, p->names[i]))
            which = i;
    if (which == p->n_ops)
        return sdm_wire_fail(d->err, SDM_WIRE_UNKNOWN_OP, "op: unknown op \"%s\"",
                             printable(name, sizeof(name), op->via.str.ptr, op->via.str.size));
    *which_op = which;

    /* Second pass: every key must be one the op takes, and only once. */
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &top->via.map.ptr[i].key;
        int f = -1;
        for (int j = 0; j < F_COUNT && f < 0; j++)
            if ((p->fields[which] & BIT(j)) && str_is(k, field_names[j]))
                f = j;
        if (f < 0)
            return bad(d, "%s: unknown key for op %s",
                       printable(name, sizeof(name), k->via.str.ptr, k->via.str.size),
                       p->names[which]);
        if (d->f[f])
            return bad(d, "%s: appears twice", field_names[f]);
        d->f[f] = &top->via.map.ptr[i].val;
    }
    return SDM_WIRE_OK;
}

static sdm_wire_code decode_map(dec *d, const msgpack_object *top, sdm_worker_request *r)
{
    size_t which = 0;
    sdm_wire_code c = decode_head(d, top, &worker_protocol, &r->id, &r->id_len, &which);
    if (c != SDM_WIRE_OK)
        return c;
    r->op = (sdm_worker_op)which;
    switch (r->op) {
    case SDM_OP_REGISTER:
        return decode_register(d, r);
    case SDM_OP_CONTRIBUTE:
        return decode_contribute(d, r);
    case SDM_OP_ATTRIBUTE:
        return decode_attribute(d, r);
    case SDM_OP_INFO:
    case SDM_OP_STATS:
        break;
    }
    return SDM_WIRE_OK;
}

/* Pre-checks and unpacks one request frame, then hands the top map to decode. */
static sdm_wire_code decode_frame(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                  sdm_wire_error *err,
                                  sdm_wire_code (*decode)(dec *, const msgpack_object *, void *),
                                  void *req)
{
    /* msgpack-c holds at most MSGPACK_EMBED_STACK_SIZE (32) open containers, so the depth
     * bound for requests never exceeds SDM_WIRE_MAX_DEPTH */
    sdm_wire_limits l = {SDM_WIRE_MAX_DEPTH, 0};
    if (lim) {
        l = *lim;
        if (l.max_depth == 0 || l.max_depth > SDM_WIRE_MAX_DEPTH)
            l.max_depth = SDM_WIRE_MAX_DEPTH;
    }
    sdm_wire_code c = sdm_wire_precheck(buf, len, &l, err);
    if (c != SDM_WIRE_OK)
        return c;
    /* msgpack-c spends 24 bytes per element, so a frame that cannot be a request is turned
     * away before it unpacks anything */
    if ((buf[0] & 0xf0) != 0x80 && buf[0] != 0xde && buf[0] != 0xdf)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "request: expected a map");
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)buf, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        c = sdm_wire_fail(err, SDM_WIRE_INTERNAL, "request: out of memory unpacking");
    else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        c = sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "msgpack: malformed (unpack status %d)",
                          (int)ur);
    else {
        dec d = {.buf = buf, .len = len, .err = err};
        c = decode(&d, &up.data, req);
    }
    msgpack_unpacked_destroy(&up);
    if (c == SDM_WIRE_OK && err)
        sdm_wire_fail(err, SDM_WIRE_OK, "ok");
    return c;
}

static sdm_wire_code decode_worker_map(dec *d, const msgpack_object *top, void *req)
{
    return decode_map(d, top, req);
}

sdm_wire_code sdm_wire_decode_worker(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                     sdm_worker_request *req, sdm_wire_error *err)
{
    if (!req)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "decode: no request to fill");
    memset(req, 0, sizeof(*req));
    return decode_frame(buf, len, lim, err, decode_worker_map, req);
}

/* ---- ledger requests ------------------------------------------------------------------- */

/* An envelope: a 4-element array [tag, body bin, key bin(32), sig bin(64)], re-packed in
 * the canonical (shortest) form so that one signed object is always one entry whatever
 * encoding the client chose. The signature is checked by the ledger, not here. */
static sdm_wire_code get_envelope(dec *d, const msgpack_object *o, sdm_ledger_request *r)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
        return bad(d, "entry: expected an envelope [\"%s\", body, key, sig]", SDM_ENVELOPE_TAG_STR);
    const msgpack_object *e = o->via.array.ptr;
    if (!str_is(&e[0], SDM_ENVELOPE_TAG_STR))
        return bad(d, "entry[0]: expected the string \"%s\"", SDM_ENVELOPE_TAG_STR);
    if (e[1].type != MSGPACK_OBJECT_BIN)
        return bad(d, "entry[1] (body): expected bin");
    if (e[2].type != MSGPACK_OBJECT_BIN || e[2].via.bin.size != 32)
        return bad(d, "entry[2] (key): expected bin of 32 bytes");
    if (e[3].type != MSGPACK_OBJECT_BIN || e[3].via.bin.size != 64)
        return bad(d, "entry[3] (sig): expected bin of 64 bytes");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    sdm_wire_pack_str(&pk, SDM_ENVELOPE_TAG_STR);
    for (int i = 1; i < 4; i++) {
        msgpack_pack_bin(&pk, e[i].via.bin.size);
        msgpack_pack_bin_body(&pk, e[i].via.bin.ptr, e[i].via.bin.size);
    }
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return out_of_memory(d, "entry");
    }
    r->entry = (uint8_t *)sb.data;
    r->entry_len = sb.size;
    return SDM_WIRE_OK;
}

static sdm_wire_code get_opt_u64(dec *d, enum field f, int *has, uint64_t *out)
{
    if (!d->f[f])
        return SDM_WIRE_OK;
    if (has)
        *has = 1;
    return get_u64(d, field_names[f], d->f[f], out);
}

static sdm_wire_code decode_ledger_map(dec *d, const msgpack_object *top, void *req)
{
    sdm_ledger_request *r = req;
    size_t which = 0;
    sdm_wire_code c = decode_head(d, top, &ledger_protocol, &r->id, &r->id_len, &which);
    if (c != SDM_WIRE_OK)
        return c;
    r->op = (sdm_ledger_op)which;
    /* every key the op takes is required except these */
    uint32_t optional = BIT(F_ID) | BIT(F_SINCE) | BIT(F_UNTIL) | BIT(F_LIMIT) | BIT(F_MODEL);
    for (int f = 0; f < F_COUNT; f++)
        if ((ledger_op_fields[which] & BIT(f)) && !(optional & BIT(f)) && !d->f[f])
            return bad(d, "%s: missing", field_names[f]);
    if (d->f[F_ENTRY] && (c = get_envelope(d, d->f[F_ENTRY], r)) != SDM_WIRE_OK)
        return c;
    if ((c = get_opt_u64(d, F_INDEX, NULL, &r->index)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_SIZE, NULL, &r->size)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_FROM, NULL, &r->from)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_TO, NULL, &r->to)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_POOL, NULL, &r->pool)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_SINCE, &r->has_since, &r->since)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_UNTIL, &r->has_until, &r->until)) != SDM_WIRE_OK ||
        (c = get_opt_u64(d, F_LIMIT, &r->has_limit, &r->limit)) != SDM_WIRE_OK)
        return c;
    if (r->has_limit && (r->limit == 0 || r->limit > SDM_WIRE_MAX_HISTORY))
        return bad(d, "limit: %llu, expected 1 to %d", (unsigned long long)r->limit,
                   SDM_WIRE_MAX_HISTORY);
    if (!r->has_limit)
        r->limit = SDM_WIRE_DEFAULT_HISTORY;
    if (r->has_since && r->has_until && r->since > r->until)
        return bad(d, "until: %llu is before since %llu", (unsigned long long)r->until,
                   (unsigned long long)r->since);
    if (r->op == SDM_LOP_CONSISTENCY && r->from > r->to)
        return bad(d, "from: %llu is larger than to %llu", (unsigned long long)r->from,
                   (unsigned long long)r->to);
    if (r->op == SDM_LOP_INCLUSION && r->index >= r->size)
        return bad(d, "index: %llu is not below size %llu", (unsigned long long)r->index,
                   (unsigned long long)r->size);
    if (d->f[F_CONTRIBUTOR] &&
        (c = get_name(d, "contributor", d->f[F_CONTRIBUTOR], &r->contributor)) != SDM_WIRE_OK)
        return c;
    if (d->f[F_MODEL] && (c = get_name(d, "model", d->f[F_MODEL], &r->model)) != SDM_WIRE_OK)
        return c;
    return SDM_WIRE_OK;
}

sdm_wire_code sdm_wire_decode_ledger(const uint8_t *buf, size_t len, const sdm_wire_limits *lim,
                                     sdm_ledger_request *req, sdm_wire_error *err)
{
    if (!req)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "decode: no request to fill");
    memset(req, 0, sizeof(*req));
    return decode_frame(buf, len, lim, err, decode_ledger_map, req);
}

void sdm_ledger_request_free(sdm_ledger_request *req)
{
    if (!req)
        return;
    free(req->entry);
    free(req->contributor);
    free(req->model);
    memset(req, 0, sizeof(*req));
}

void sdm_worker_request_free(sdm_worker_request *req)
{
    if (!req)
        return;
    free(req->model);
    free(req->checkpoint);
    free(req->contributor);
    free(req->shard);
    free(req->example_ids);
    free(req->weights);
    if (req->queries)
        for (size_t i = 0; i < req->n_queries; i++)
            free(req->queries[i].checkpoint);
    free(req->queries);
    free((void *)req->query_ids);
    free(req->query_id_lens);
    free(req->request_id);
    memset(req, 0, sizeof(*req));
}

/* ---- replies -------------------------------------------------------------------------- */

void sdm_wire_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

void sdm_wire_pack_raw(msgpack_packer *pk, const uint8_t *raw, size_t len)
{
    if (len > 0)
        pk->callback(pk->data, (const char *)raw, len);
}

static void pack_id(msgpack_packer *pk, const uint8_t *id, size_t id_len)
{
    sdm_wire_pack_str(pk, "id");
    if (id && id_len > 0)
        sdm_wire_pack_raw(pk, id, id_len);
    else
        msgpack_pack_nil(pk);
}

void sdm_wire_reply_ok(msgpack_packer *pk, const uint8_t *id, size_t id_len, uint32_t n_fields)
{
    msgpack_pack_map(pk, 2 + n_fields);
    pack_id(pk, id, id_len);
    sdm_wire_pack_str(pk, "ok");
    msgpack_pack_true(pk);
}

/* The message as sent: up to its NUL, control characters and bytes that are not valid
 * UTF-8 replaced by '?', so that every client can decode the reply. */
static size_t sanitise(const char *msg, size_t cap, char *out)
{
    size_t n = 0;
    while (n < cap && msg[n])
        n++;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)msg[i];
        if (c < 0x80) {
            out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
            i++;
            continue;
        }
        /* the longest valid sequence starting here, 0 when none */
        size_t k = 0;
        for (size_t len = 2; len <= 4 && k == 0; len++)
            if (len <= n - i && utf8_valid((const uint8_t *)msg + i, len))
                k = len;
        if (k == 0) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, msg + i, k);
            o += k;
            i += k;
        }
    }
    return o;
}

void sdm_wire_reply_error(msgpack_packer *pk, const uint8_t *id, size_t id_len,
                          const sdm_wire_error *err)
{
    sdm_wire_code code = err ? err->code : SDM_WIRE_INTERNAL;
    if (code == SDM_WIRE_OK || (unsigned)code >= SDM_WIRE_CODES)
        code = SDM_WIRE_INTERNAL; /* an error reply always carries an error code */
    char msg[sizeof(err->message)];
    size_t n = err ? sanitise(err->message, sizeof(err->message), msg) : 0;
    msgpack_pack_map(pk, 3);
    pack_id(pk, id, id_len);
    sdm_wire_pack_str(pk, "ok");
    msgpack_pack_false(pk);
    sdm_wire_pack_str(pk, "error");
    msgpack_pack_map(pk, 2);
    sdm_wire_pack_str(pk, "code");
    sdm_wire_pack_str(pk, sdm_wire_code_name(code));
    sdm_wire_pack_str(pk, "message");
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, msg, n);
}
