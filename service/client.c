/* client.c - the C client of a sediment worker and ledger: requests, checked replies, JSON,
 * envelopes, and the checks of ledger checkpoints and Merkle proofs.
 *
 * The server is not trusted any more than a client is: every reply frame is pre-checked
 * (bounded walk, no allocation) before msgpack-c unpacks it, its `id` must echo ours, and
 * the fields an op promises are type-checked before the caller sees the reply. A reply is
 * copied out of msgpack-c into a small owned tree (NUL-terminated strings, keyed maps) so
 * that getters can hand out plain C pointers.
 */
#include "sediment/client.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>
#include <zmq.h>

#include "client_internal.h"
#include "errmsg.h"
#include "merkle.h"
#include "note.h"
#include "sign.h"
#include "wire.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 60000
#define CLIENT_DEFAULT_MAX_REPLY (INT64_C(1) << 30)
#define Z85_KEY_LEN 40

static const char *const s_status_names[] = {
    "ok",   "bad_request", "unknown_op", "too_large", "not_found", "conflict",     "unauthorized",
    "busy", "internal",    "timeout",    "transport", "bad_reply", "bad_argument", "nomem",
};

const char *sdm_client_status_str(sdm_client_status status)
{
    size_t n = sizeof(s_status_names) / sizeof(s_status_names[0]);
    return (unsigned)status < n ? s_status_names[status] : "unknown";
}

int sdm_client_status_is_server(sdm_client_status status)
{
    return status >= SDM_CLIENT_BAD_REQUEST && status <= SDM_CLIENT_INTERNAL;
}

/* ---- the reply tree ------------------------------------------------------------------ */

typedef enum val_type {
    VAL_NIL,
    VAL_BOOL,
    VAL_UINT,
    VAL_INT, /* negative integers only */
    VAL_FLOAT,
    VAL_STR,
    VAL_BIN,
    VAL_EXT,
    VAL_ARRAY,
    VAL_MAP,
} val_type;

typedef struct val {
    val_type type;
    int is_f32;  /* a FLOAT that came as float32 (for its JSON text) */
    uint64_t u;  /* UINT; BOOL as 0/1 */
    int64_t i;   /* INT */
    double f;    /* FLOAT */
    char *bytes; /* STR (NUL-terminated), BIN, EXT: owned */
    size_t len;  /* STR/BIN/EXT bytes; ARRAY/MAP items */
    struct val *items;
    char **keys; /* MAP: owned, NUL-terminated */
    size_t *key_lens;
} val;

struct sdm_reply {
    val root;
    uint8_t *raw; /* the msgpack bytes as received */
    size_t raw_len;
    const char *env_key; /* "receipt" or "proof" when the reply carries an envelope */
    size_t env_off;      /* its exact bytes: raw[env_off, env_off + env_len) */
    size_t env_len;
    sdm_model_info *models;
    size_t n_models;
    sdm_query_result *queries;
    size_t n_queries;
    char **query_ids; /* owned text of numeric query ids */
    sdm_score_entry *scores;
    sdm_hit_entry *hits;
};

static void val_free(val *v)
{
    if (v->type == VAL_ARRAY || v->type == VAL_MAP) {
        for (size_t i = 0; i < v->len; i++) {
            val_free(&v->items[i]);
            if (v->keys)
                free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
        free(v->key_lens);
    }
    free(v->bytes);
    memset(v, 0, sizeof(*v));
}

static char *copy_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Copies a msgpack object into v. Depth is bounded by the pre-check. 0, or -1 with err. */
static int val_from(val *v, const msgpack_object *o, char *err, size_t err_len)
{
    memset(v, 0, sizeof(*v));
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        v->type = VAL_NIL;
        return 0;
    case MSGPACK_OBJECT_BOOLEAN:
        v->type = VAL_BOOL;
        v->u = o->via.boolean ? 1 : 0;
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        v->type = VAL_UINT;
        v->u = o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        v->type = VAL_INT;
        v->i = o->via.i64;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        v->type = VAL_FLOAT;
        v->is_f32 = o->type == MSGPACK_OBJECT_FLOAT32;
        v->f = o->via.f64;
        return 0;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT: {
        const char *p = o->type == MSGPACK_OBJECT_STR   ? o->via.str.ptr
                        : o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr
                                                        : o->via.ext.ptr;
        size_t n = o->type == MSGPACK_OBJECT_STR   ? o->via.str.size
                   : o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size
                                                   : o->via.ext.size;
        v->type = o->type == MSGPACK_OBJECT_STR   ? VAL_STR
                  : o->type == MSGPACK_OBJECT_BIN ? VAL_BIN
                                                  : VAL_EXT;
        v->bytes = copy_bytes(p, n);
        v->len = n;
        if (!v->bytes) {
            sdm_errf(err, err_len, "out of memory");
            return -1;
        }
        return 0;
    }
    case MSGPACK_OBJECT_ARRAY:
        v->type = VAL_ARRAY;
        if (o->via.array.size) {
            v->items = calloc(o->via.array.size, sizeof(val));
            if (!v->items) {
                sdm_errf(err, err_len, "out of memory");
                return -1;
            }
        }
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            v->len = i + 1;
            if (val_from(&v->items[i], &o->via.array.ptr[i], err, err_len) != 0)
                return -1;
        }
        return 0;
    case MSGPACK_OBJECT_MAP:
        v->type = VAL_MAP;
        if (o->via.map.size) {
            v->items = calloc(o->via.map.size, sizeof(val));
            v->keys = calloc(o->via.map.size, sizeof(char *));
            v->key_lens = calloc(o->via.map.size, sizeof(size_t));
            if (!v->items || !v->keys || !v->key_lens) {
                sdm_errf(err, err_len, "out of memory");
                return -1;
            }
        }
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            v->len = i + 1;
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                sdm_errf(err, err_len, "a map key is not a string");
                return -1;
            }
            v->keys[i] = copy_bytes(kv->key.via.str.ptr, kv->key.via.str.size);
            v->key_lens[i] = kv->key.via.str.size;
            if (!v->keys[i]) {
                sdm_errf(err, err_len, "out of memory");
                return -1;
            }
            if (val_from(&v->items[i], &kv->val, err, err_len) != 0)
                return -1;
        }
        return 0;
    }
    sdm_errf(err, err_len, "unknown msgpack type %d", (int)o->type);
    return -1;
}

/* The entry of map m with key (len bytes), or NULL. The last one wins if repeated, as
 * most decoders do; a server that repeats keys gets no say over which we read first. */
static const val *map_get_n(const val *m, const char *key, size_t len)
{
    if (!m || m->type != VAL_MAP)
        return NULL;
    const val *found = NULL;
    for (size_t i = 0; i < m->len; i++)
        if (m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            found = &m->items[i];
    return found;
}

static const val *map_get(const val *m, const char *key)
{
    return map_get_n(m, key, strlen(key));
}

/* Follows a dotted path ("models.0.projection.kind") from v. */
static const val *val_at(const val *v, const char *path)
{
    if (!path || !*path)
        return v;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (v->type == VAL_MAP) {
            v = map_get_n(v, path, n);
        } else if (v->type == VAL_ARRAY) {
            if (n == 0 || n > 19)
                return NULL;
            uint64_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (path[i] < '0' || path[i] > '9')
                    return NULL;
                idx = idx * 10 + (uint64_t)(path[i] - '0');
            }
            v = idx < v->len ? &v->items[idx] : NULL;
        } else {
            return NULL;
        }
        path += n;
        if (*path == '.')
            path++;
    }
    return v;
}

static int val_is_str(const val *v)
{
    /* a string with a NUL inside would read as a shorter one: refuse it */
    return v && v->type == VAL_STR && strlen(v->bytes) == v->len;
}

static int val_f64(const val *v, double *out)
{
    if (!v)
        return -1;
    if (v->type == VAL_FLOAT)
        *out = v->f;
    else if (v->type == VAL_UINT)
        *out = (double)v->u;
    else if (v->type == VAL_INT)
        *out = (double)v->i;
    else
        return -1;
    return 0;
}

/* ---- typed views: models and queries ------------------------------------------------- */

static int parse_models(sdm_reply_t *r, const val *arr, char *err, size_t err_len)
{
    if (arr->type != VAL_ARRAY) {
        sdm_errf(err, err_len, "models: not an array");
        return -1;
    }
    if (!arr->len)
        return 0;
    r->models = calloc(arr->len, sizeof(sdm_model_info));
    if (!r->models) {
        sdm_errf(err, err_len, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < arr->len; i++) {
        const val *m = &arr->items[i];
        const val *proj = map_get(m, "projection");
        const val *name = map_get(m, "model"), *in = map_get(m, "input_dim");
        const val *kind = map_get(proj, "kind"), *dim = map_get(proj, "dim");
        const val *seed = map_get(proj, "seed"), *s = map_get(proj, "s");
        const val *size = map_get(m, "store_size"), *root = map_get(m, "store_root");
        const char *bad = !val_is_str(name)                                   ? "model"
                          : !in || in->type != VAL_UINT                       ? "input_dim"
                          : !proj || proj->type != VAL_MAP                    ? "projection"
                          : !val_is_str(kind)                                 ? "projection.kind"
                          : !dim || dim->type != VAL_UINT                     ? "projection.dim"
                          : !seed || seed->type != VAL_UINT                   ? "projection.seed"
                          : s && s->type != VAL_UINT                          ? "projection.s"
                          : !size || size->type != VAL_UINT                   ? "store_size"
                          : !root || root->type != VAL_BIN || root->len != 32 ? "store_root"
                                                                              : NULL;
        if (bad) {
            sdm_errf(err, err_len, "models[%zu].%s: missing or of the wrong type", i, bad);
            return -1;
        }
        sdm_model_info *mi = &r->models[i];
        mi->model = name->bytes;
        mi->input_dim = in->u;
        mi->kind = kind->bytes;
        mi->dim = dim->u;
        mi->seed = seed->u;
        mi->s = s ? s->u : 0;
        mi->store_size = size->u;
        mi->store_root = (const uint8_t *)root->bytes;
        r->n_models = i + 1;
    }
    return 0;
}

/* [[shard, contributor, score, share]] (with_shard) or [[contributor, score, share]] */
static int parse_scores(const val *arr, int with_shard, sdm_score_entry *out, const char *what,
                        size_t q, char *err, size_t err_len)
{
    size_t width = with_shard ? 4 : 3;
    for (size_t j = 0; j < arr->len; j++) {
        const val *e = &arr->items[j];
        if (e->type != VAL_ARRAY || e->len != width) {
            sdm_errf(err, err_len, "queries[%zu].%s[%zu]: not an array of %zu", q, what, j, width);
            return -1;
        }
        const val *f = e->items;
        size_t c = with_shard ? 1 : 0;
        if ((with_shard && !val_is_str(&f[0])) || !val_is_str(&f[c]) ||
            val_f64(&f[c + 1], &out[j].score) != 0 || val_f64(&f[c + 2], &out[j].share) != 0) {
            sdm_errf(err, err_len, "queries[%zu].%s[%zu]: a field of the wrong type", q, what, j);
            return -1;
        }
        out[j].shard = with_shard ? f[0].bytes : NULL;
        out[j].contributor = f[c].bytes;
    }
    return 0;
}

/* [[example_id, shard, score]] */
static int parse_hits(const val *arr, sdm_hit_entry *out, const char *what, size_t q, char *err,
                      size_t err_len)
{
    for (size_t j = 0; j < arr->len; j++) {
        const val *e = &arr->items[j];
        if (e->type != VAL_ARRAY || e->len != 3 || e->items[0].type != VAL_UINT ||
            !val_is_str(&e->items[1]) || val_f64(&e->items[2], &out[j].score) != 0) {
            sdm_errf(err, err_len, "queries[%zu].%s[%zu]: not [example_id, shard, score]", q, what,
                     j);
            return -1;
        }
        out[j].example_id = e->items[0].u;
        out[j].shard = e->items[1].bytes;
    }
    return 0;
}

static int parse_queries(sdm_reply_t *r, const val *arr, char *err, size_t err_len)
{
    if (arr->type != VAL_ARRAY) {
        sdm_errf(err, err_len, "queries: not an array");
        return -1;
    }
    /* count everything first so that one allocation holds each kind of entry */
    size_t n_scores = 0, n_hits = 0;
    static const char *const lists[4] = {"shards", "contributors", "top", "bottom"};
    for (size_t q = 0; q < arr->len; q++) {
        const val *qv = &arr->items[q];
        if (qv->type != VAL_MAP) {
            sdm_errf(err, err_len, "queries[%zu]: not a map", q);
            return -1;
        }
        for (int l = 0; l < 4; l++) {
            const val *a = map_get(qv, lists[l]);
            if (!a || a->type != VAL_ARRAY) {
                sdm_errf(err, err_len, "queries[%zu].%s: missing or not an array", q, lists[l]);
                return -1;
            }
            *(l < 2 ? &n_scores : &n_hits) += a->len;
        }
        const val *id = map_get(qv, "id");
        if (!id || (id->type != VAL_UINT && !val_is_str(id))) {
            sdm_errf(err, err_len, "queries[%zu].id: missing or not an integer or string", q);
            return -1;
        }
    }
    if (!arr->len)
        return 0;
    r->queries = calloc(arr->len, sizeof(sdm_query_result));
    r->query_ids = calloc(arr->len, sizeof(char *));
    r->scores = calloc(n_scores ? n_scores : 1, sizeof(sdm_score_entry));
    r->hits = calloc(n_hits ? n_hits : 1, sizeof(sdm_hit_entry));
    if (!r->queries || !r->query_ids || !r->scores || !r->hits) {
        sdm_errf(err, err_len, "out of memory");
        return -1;
    }
    r->n_queries = arr->len;
    sdm_score_entry *sc = r->scores;
    sdm_hit_entry *ht = r->hits;
    for (size_t q = 0; q < arr->len; q++) {
        const val *qv = &arr->items[q];
        sdm_query_result *qr = &r->queries[q];
        const val *id = map_get(qv, "id");
        if (id->type == VAL_UINT) {
            char buf[24];
            snprintf(buf, sizeof(buf), "%" PRIu64, id->u);
            r->query_ids[q] = copy_bytes(buf, strlen(buf));
            if (!r->query_ids[q]) {
                sdm_errf(err, err_len, "out of memory");
                return -1;
            }
            qr->id = r->query_ids[q];
        } else {
            qr->id = id->bytes;
        }
        const val *shards = map_get(qv, "shards"), *contribs = map_get(qv, "contributors");
        const val *top = map_get(qv, "top"), *bottom = map_get(qv, "bottom");
        if (parse_scores(shards, 1, sc, "shards", q, err, err_len) != 0)
            return -1;
        qr->shards = sc;
        qr->n_shards = shards->len;
        sc += shards->len;
        if (parse_scores(contribs, 0, sc, "contributors", q, err, err_len) != 0)
            return -1;
        qr->contributors = sc;
        qr->n_contributors = contribs->len;
        sc += contribs->len;
        if (parse_hits(top, ht, "top", q, err, err_len) != 0)
            return -1;
        qr->top = ht;
        qr->n_top = top->len;
        ht += top->len;
        if (parse_hits(bottom, ht, "bottom", q, err, err_len) != 0)
            return -1;
        qr->bottom = ht;
        qr->n_bottom = bottom->len;
        ht += bottom->len;
    }
    return 0;
}

/* ---- raw spans ----------------------------------------------------------------------- */

static uint64_t rd_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Moves *pos past the msgpack object there. The bytes were pre-checked, but every length
 * is still checked against len: this must never read out of bounds. 0, or -1. */
static int mp_skip(const uint8_t *p, size_t len, size_t *pos, int depth)
{
    if (*pos >= len || depth > SDM_WIRE_MAX_DEPTH + 1)
        return -1;
    uint8_t t = p[*pos];
    size_t head = 1;
    uint64_t body = 0;  /* bytes after the head */
    uint64_t items = 0; /* objects after the head */
    int lenw = 0;       /* bytes of a length field after the type byte */
    int per = 0;        /* what that length counts: 0 bytes, 1 array items, 2 map entries */
    int ext = 0;        /* ext8/16/32: a type byte follows the length */
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        /* fixint, nil, bool: the type byte is all */
    } else if (t >= 0x80 && t <= 0x8f) {
        items = 2u * (t & 0x0f);
    } else if (t >= 0x90 && t <= 0x9f) {
        items = t & 0x0f;
    } else if (t >= 0xa0 && t <= 0xbf) {
        body = t & 0x1f;
    } else if (t == 0xc4 || t == 0xd9) { /* bin8, str8 */
        lenw = 1;
    } else if (t == 0xc5 || t == 0xda) {
        lenw = 2;
    } else if (t == 0xc6 || t == 0xdb) {
        lenw = 4;
    } else if (t >= 0xc7 && t <= 0xc9) {
        lenw = t == 0xc7 ? 1 : t == 0xc8 ? 2 : 4;
        ext = 1;
    } else if (t == 0xdc || t == 0xdd) { /* array16, array32 */
        lenw = t == 0xdc ? 2 : 4;
        per = 1;
    } else if (t == 0xde || t == 0xdf) { /* map16, map32 */
        lenw = t == 0xde ? 2 : 4;
        per = 2;
    } else if (t >= 0xca && t <= 0xd3) { /* float32/64, uint8..64, int8..64 */
        static const uint8_t fixed[10] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
        body = fixed[t - 0xca];
    } else if (t >= 0xd4 && t <= 0xd8) { /* fixext 1..16, after its type byte */
        body = 1 + (1u << (t - 0xd4));
    } else {
        return -1; /* 0xc1 is never used */
    }
    if (lenw) {
        if (len - *pos < 1 + (size_t)lenw)
            return -1;
        uint64_t v = rd_be(p + *pos + 1, lenw);
        head = 1 + (size_t)lenw;
        if (per)
            items = per * v;
        else
            body = v + (uint64_t)ext;
    }
    if (len - *pos < head || body > len - *pos - head)
        return -1;
    *pos += head + (size_t)body;
    for (uint64_t i = 0; i < items; i++)
        if (mp_skip(p, len, pos, depth + 1) != 0)
            return -1;
    return 0;
}

/* Finds the exact bytes of the value of top-level key `key` in a map. 0, or -1. */
static int mp_find_value(const uint8_t *p, size_t len, const char *key, size_t *off, size_t *n)
{
    size_t pos = 0;
    uint64_t entries;
    if (len < 1)
        return -1;
    if (p[0] >= 0x80 && p[0] <= 0x8f) {
        entries = p[0] & 0x0f;
        pos = 1;
    } else if (p[0] == 0xde && len >= 3) {
        entries = rd_be(p + 1, 2);
        pos = 3;
    } else if (p[0] == 0xdf && len >= 5) {
        entries = rd_be(p + 1, 4);
        pos = 5;
    } else {
        return -1;
    }
    size_t klen = strlen(key);
    for (uint64_t e = 0; e < entries; e++) {
        size_t kstart = pos;
        if (mp_skip(p, len, &pos, 1) != 0)
            return -1;
        /* a str key: fixstr, str8, str16 or str32 head before the bytes */
        size_t khead = p[kstart] >= 0xa0 && p[kstart] <= 0xbf ? 1
                       : p[kstart] == 0xd9                    ? 2
                       : p[kstart] == 0xda                    ? 3
                       : p[kstart] == 0xdb                    ? 5
                                                              : 0;
        int match =
            khead && pos - kstart - khead == klen && memcmp(p + kstart + khead, key, klen) == 0;
        size_t vstart = pos;
        if (mp_skip(p, len, &pos, 1) != 0)
            return -1;
        if (match) {
            /* keep looking: the last of repeated keys wins, as in map_get */
            *off = vstart;
            *n = pos - vstart;
        }
    }
    return 0;
}

void sdm_reply_destroy(sdm_reply_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_reply_t *r = *self_p;
    val_free(&r->root);
    free(r->raw);
    free(r->models);
    if (r->query_ids)
        for (size_t q = 0; q < r->n_queries; q++)
            free(r->query_ids[q]);
    free(r->query_ids);
    free(r->queries);
    free(r->scores);
    free(r->hits);
    free(r);
    *self_p = NULL;
}

sdm_reply_t *sdm_reply_parse(const uint8_t *buf, size_t len, char *err, size_t err_len)
{
    sdm_wire_limits lim = {0, 0};
    sdm_wire_error werr;
    memset(&werr, 0, sizeof(werr));
    if (!buf || !len) {
        sdm_errf(err, err_len, "empty message");
        return NULL;
    }
    if (sdm_wire_precheck(buf, len, &lim, &werr) != SDM_WIRE_OK) {
        sdm_errf(err, err_len, "%s", werr.message);
        return NULL;
    }
    sdm_reply_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->raw = malloc(len))) {
        free(r);
        sdm_errf(err, err_len, "out of memory");
        return NULL;
    }
    memcpy(r->raw, buf, len);
    r->raw_len = len;

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&up, (const char *)r->raw, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
        /* the pre-check passed, so this is msgpack-c running out of memory or disagreeing */
        sdm_errf(err, err_len, "msgpack could not unpack the message (%d)", (int)ret);
        msgpack_unpacked_destroy(&up);
        sdm_reply_destroy(&r);
        return NULL;
    }
    if (up.data.type != MSGPACK_OBJECT_MAP) {
        sdm_errf(err, err_len, "not a map");
        msgpack_unpacked_destroy(&up);
        sdm_reply_destroy(&r);
        return NULL;
    }
    int rc = val_from(&r->root, &up.data, err, err_len);
    msgpack_unpacked_destroy(&up);
    if (rc != 0) {
        sdm_reply_destroy(&r);
        return NULL;
    }
    /* a signed envelope travels as a msgpack array inside the reply; keep its exact bytes
     * so that it can be stored, verified and forwarded without re-encoding */
    static const char *const env_keys[3] = {"receipt", "proof", "entry"};
    for (int k = 0; k < 3; k++) {
        const val *e = map_get(&r->root, env_keys[k]);
        size_t off = 0, n = 0;
        if (e && e->type == VAL_ARRAY &&
            mp_find_value(r->raw, r->raw_len, env_keys[k], &off, &n) == 0 && n) {
            r->env_key = env_keys[k];
            r->env_off = off;
            r->env_len = n;
            break;
        }
    }
    const val *models = map_get(&r->root, "models");
    const val *queries = map_get(&r->root, "result");
    if (!queries)
        queries = map_get(&r->root, "queries");
    if ((models && parse_models(r, models, err, err_len) != 0) ||
        (queries && parse_queries(r, queries, err, err_len) != 0)) {
        sdm_reply_destroy(&r);
        return NULL;
    }
    return r;
}

int sdm_reply_has(const sdm_reply_t *self, const char *path)
{
    return self && val_at(&self->root, path) != NULL;
}

int sdm_reply_u64(const sdm_reply_t *self, const char *path, uint64_t *out)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || v->type != VAL_UINT)
        return -1;
    *out = v->u;
    return 0;
}

int sdm_reply_i64(const sdm_reply_t *self, const char *path, int64_t *out)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || (v->type != VAL_INT && (v->type != VAL_UINT || v->u > INT64_MAX)))
        return -1;
    *out = v->type == VAL_INT ? v->i : (int64_t)v->u;
    return 0;
}

int sdm_reply_f64(const sdm_reply_t *self, const char *path, double *out)
{
    return self ? val_f64(val_at(&self->root, path), out) : -1;
}

int sdm_reply_bool(const sdm_reply_t *self, const char *path, int *out)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || v->type != VAL_BOOL)
        return -1;
    *out = (int)v->u;
    return 0;
}

const char *sdm_reply_str(const sdm_reply_t *self, const char *path)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    return val_is_str(v) ? v->bytes : NULL;
}

const uint8_t *sdm_reply_bin(const sdm_reply_t *self, const char *path, size_t *len)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || v->type != VAL_BIN)
        return NULL;
    if (len)
        *len = v->len;
    return (const uint8_t *)v->bytes;
}

int64_t sdm_reply_count(const sdm_reply_t *self, const char *path)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || (v->type != VAL_ARRAY && v->type != VAL_MAP))
        return -1;
    return (int64_t)v->len;
}

const char *sdm_reply_key(const sdm_reply_t *self, const char *path, size_t i)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || v->type != VAL_MAP || i >= v->len)
        return NULL;
    return v->keys[i];
}

const uint8_t *sdm_reply_envelope(const sdm_reply_t *self, size_t *len)
{
    if (!self || !self->env_key)
        return NULL;
    if (len)
        *len = self->env_len;
    return self->raw + self->env_off;
}

size_t sdm_reply_n_models(const sdm_reply_t *self)
{
    return self ? self->n_models : 0;
}

const sdm_model_info *sdm_reply_model(const sdm_reply_t *self, size_t i)
{
    return self && i < self->n_models ? &self->models[i] : NULL;
}

size_t sdm_reply_n_queries(const sdm_reply_t *self)
{
    return self ? self->n_queries : 0;
}

const sdm_query_result *sdm_reply_query(const sdm_reply_t *self, size_t i)
{
    return self && i < self->n_queries ? &self->queries[i] : NULL;
}

/* ---- JSON ---------------------------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len;
    size_t cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fmt(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_fmt(strbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string; bytes that are not valid UTF-8 become U+FFFD so the output stays JSON. */
static void sb_json_str(strbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    sb_add(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_add(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            sb_fmt(b, "\\u%04x", c);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                sb_str(b, "\\ufffd");
                i++;
            } else {
                sb_add(b, s + i, l);
                i += l;
            }
        }
    }
    sb_add(b, "\"", 1);
}

static void sb_hex(strbuf *b, const char *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    char chunk[128];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        chunk[used++] = digits[c >> 4];
        chunk[used++] = digits[c & 15];
        if (used == sizeof(chunk)) {
            sb_add(b, chunk, used);
            used = 0;
        }
    }
    sb_add(b, chunk, used);
    sb_add(b, "\"", 1);
}

/* The shortest decimal that reads back as the same value (as float32 for f32 values). */
static void sb_float(strbuf *b, double f, int is_f32)
{
    if (!isfinite(f)) {
        sb_str(b, "null");
        return;
    }
    char tmp[40];
    for (int prec = is_f32 ? 6 : 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, f);
        double back = strtod(tmp, NULL);
        if (is_f32 ? (float)back == (float)f : back == f)
            break;
    }
    sb_str(b, tmp); /* %g gives "3", "1e+20", "-0.5": all JSON numbers */
}

static void sb_json_val(strbuf *b, const val *v)
{
    switch (v->type) {
    case VAL_NIL:
        sb_str(b, "null");
        break;
    case VAL_BOOL:
        sb_str(b, v->u ? "true" : "false");
        break;
    case VAL_UINT:
        sb_fmt(b, "%" PRIu64, v->u);
        break;
    case VAL_INT:
        sb_fmt(b, "%" PRId64, v->i);
        break;
    case VAL_FLOAT:
        sb_float(b, v->f, v->is_f32);
        break;
    case VAL_STR:
        sb_json_str(b, v->bytes, v->len);
        break;
    case VAL_BIN:
    case VAL_EXT:
        sb_hex(b, v->bytes, v->len);
        break;
    case VAL_ARRAY:
        sb_add(b, "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i)
                sb_add(b, ", ", 2);
            sb_json_val(b, &v->items[i]);
        }
        sb_add(b, "]", 1);
        break;
    case VAL_MAP:
        sb_add(b, "{", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i)
                sb_add(b, ", ", 2);
            sb_json_str(b, v->keys[i], v->key_lens[i]);
            sb_add(b, ": ", 2);
            sb_json_val(b, &v->items[i]);
        }
        sb_add(b, "}", 1);
        break;
    }
}

char *sdm_reply_json(const sdm_reply_t *self)
{
    if (!self)
        return NULL;
    strbuf b = {0};
    if (self->root.type == VAL_MAP && self->env_key) {
        /* the envelope as one hex string of its exact bytes: what a script saves to a
         * file for `sediment verify` or forwards to a ledger */
        const val *root = &self->root;
        const val *env = map_get(root, self->env_key);
        sb_add(&b, "{", 1);
        for (size_t i = 0; i < root->len; i++) {
            if (i)
                sb_add(&b, ", ", 2);
            sb_json_str(&b, root->keys[i], root->key_lens[i]);
            sb_add(&b, ": ", 2);
            if (&root->items[i] == env)
                sb_hex(&b, (const char *)self->raw + self->env_off, self->env_len);
            else
                sb_json_val(&b, &root->items[i]);
        }
        sb_add(&b, "}", 1);
    } else {
        sb_json_val(&b, &self->root);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- envelopes ----------------------------------------------------------------------- */

sdm_client_status sdm_client_open_envelope(const uint8_t *env, size_t env_len, sdm_reply_t **body,
                                           uint8_t key[32], char *err, size_t err_len)
{
    *body = NULL;
    const uint8_t *b = NULL;
    size_t b_len = 0;
    sdm_wire_error werr;
    memset(&werr, 0, sizeof(werr));
    sdm_wire_code code = sdm_envelope_open(env, env_len, &b, &b_len, key, &werr);
    if (code == SDM_WIRE_UNAUTHORIZED) {
        sdm_errf(err, err_len, "%s", werr.message[0] ? werr.message : "bad signature");
        return SDM_CLIENT_UNAUTHORIZED;
    }
    if (code != SDM_WIRE_OK) {
        sdm_errf(err, err_len, "%s", werr.message[0] ? werr.message : "malformed envelope");
        return SDM_CLIENT_BAD_REPLY;
    }
    char perr[256];
    *body = sdm_reply_parse(b, b_len, perr, sizeof(perr));
    if (!*body) {
        sdm_errf(err, err_len, "body: %s", perr);
        return SDM_CLIENT_BAD_REPLY;
    }
    return SDM_CLIENT_OK;
}

/* ---- the client ---------------------------------------------------------------------- */

struct sdm_client {
    void *ctx;
    void *sock;
    char *endpoint;
    int timeout_ms;
    int64_t max_reply;
    int curve;
    char server_key[Z85_KEY_LEN + 1];
    char public_key[Z85_KEY_LEN + 1];
    char *secret_key; /* Z85_KEY_LEN + 1 bytes in sodium_malloc memory */
    uint64_t next_id;
    sdm_client_status last_status;
    char last_error[512];
};

static sdm_client_status client_fail(sdm_client_t *c, sdm_client_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sdm_client_status client_fail(sdm_client_t *c, sdm_client_status st, const char *fmt, ...)
{
    c->last_status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
    va_end(ap);
    return st;
}

sdm_client_status sdm_client_last_status(const sdm_client_t *self)
{
    return self ? self->last_status : SDM_CLIENT_BAD_ARGUMENT;
}

const char *sdm_client_last_error(const sdm_client_t *self)
{
    return self ? self->last_error : "no client";
}

static int z85_key_ok(const char *key)
{
    if (!key || strlen(key) != Z85_KEY_LEN)
        return 0;
    uint8_t raw[32];
    return zmq_z85_decode(raw, key) != NULL;
}

/* Makes and connects the socket. A DEALER, so no REQ state machine to wedge; still, after
 * a timeout or a bad reply the socket is remade (linger 0) so that a request still queued
 * for a worker that is not there yet is dropped rather than delivered later, and a late
 * reply can never be read as the answer to the next request. */
static int client_connect(sdm_client_t *c, char *err, size_t err_len)
{
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) {
        sdm_errf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int linger = 0;
    int64_t maxmsg = c->max_reply;
    const char *what = NULL;
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0)
        what = "linger";
    else if (zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &c->timeout_ms, sizeof(int)) != 0)
        what = "receive timeout";
    else if (zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &c->timeout_ms, sizeof(int)) != 0)
        what = "send timeout";
    else if (zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0)
        what = "max_reply_bytes";
    else if (c->curve &&
             (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->server_key, Z85_KEY_LEN) != 0 ||
              zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->public_key, Z85_KEY_LEN) != 0 ||
              zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->secret_key, Z85_KEY_LEN) != 0))
        what = "CURVE keys";
    if (what) {
        sdm_errf(err, err_len, "setting %s: %s", what, zmq_strerror(zmq_errno()));
        zmq_close(c->sock);
        c->sock = NULL;
        return -1;
    }
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        sdm_errf(err, err_len, "endpoint '%s': %s", c->endpoint, zmq_strerror(zmq_errno()));
        zmq_close(c->sock);
        c->sock = NULL;
        return -1;
    }
    return 0;
}

void sdm_client_destroy(sdm_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_client_t *c = *self_p;
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    if (c->secret_key)
        sodium_free(c->secret_key); /* wipes it */
    free(c->endpoint);
    free(c);
    *self_p = NULL;
}

sdm_client_t *sdm_client_new(const char *endpoint, const sdm_client_opts *opts, char *err,
                             size_t err_len)
{
    if (!endpoint || !*endpoint) {
        sdm_errf(err, err_len, "endpoint: empty");
        return NULL;
    }
    sdm_client_opts o = {0};
    if (opts)
        o = *opts;
    if (o.timeout_ms < 0) {
        sdm_errf(err, err_len, "timeout_ms: %d is negative", o.timeout_ms);
        return NULL;
    }
    if (o.max_reply_bytes < 0) {
        sdm_errf(err, err_len, "max_reply_bytes: negative");
        return NULL;
    }
    int n_keys = !!o.server_key + !!o.public_key + !!o.secret_key;
    if (n_keys != 0 && n_keys != 3) {
        sdm_errf(err, err_len, "CURVE needs server_key, public_key and secret_key together");
        return NULL;
    }
    if (n_keys == 3) {
        const char *bad = !z85_key_ok(o.server_key)   ? "server_key"
                          : !z85_key_ok(o.public_key) ? "public_key"
                          : !z85_key_ok(o.secret_key) ? "secret_key"
                                                      : NULL;
        if (bad) {
            sdm_errf(err, err_len, "%s: not a Z85 CURVE key (40 characters)", bad);
            return NULL;
        }
        if (!zmq_has("curve")) {
            sdm_errf(err, err_len, "this libzmq was built without CURVE");
            return NULL;
        }
    }
    if (sdm_sodium_init() != 0) {
        sdm_errf(err, err_len, "libsodium failed to initialise");
        return NULL;
    }
    sdm_client_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->endpoint = strdup(endpoint))) {
        free(c);
        sdm_errf(err, err_len, "out of memory");
        return NULL;
    }
    c->timeout_ms = o.timeout_ms ? o.timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    c->max_reply = o.max_reply_bytes ? o.max_reply_bytes : CLIENT_DEFAULT_MAX_REPLY;
    c->next_id = 1;
    if (n_keys == 3) {
        c->curve = 1;
        memcpy(c->server_key, o.server_key, Z85_KEY_LEN + 1);
        memcpy(c->public_key, o.public_key, Z85_KEY_LEN + 1);
        c->secret_key = sodium_malloc(Z85_KEY_LEN + 1);
        if (!c->secret_key) {
            sdm_errf(err, err_len, "out of memory");
            sdm_client_destroy(&c);
            return NULL;
        }
        memcpy(c->secret_key, o.secret_key, Z85_KEY_LEN + 1);
    }
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        sdm_errf(err, err_len, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        sdm_client_destroy(&c);
        return NULL;
    }
    if (client_connect(c, err, err_len) != 0) {
        sdm_client_destroy(&c);
        return NULL;
    }
    return c;
}

static void client_reset(sdm_client_t *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
    char err[256];
    if (client_connect(c, err, sizeof(err)) != 0)
        c->sock = NULL; /* the next call reports it */
}

static void free_sbuffer_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* The fields an op's success reply must carry. */
typedef struct field_rule {
    const char *name;
    val_type type;
    size_t bin_len; /* BIN: exact length, 0 for any */
} field_rule;

static const field_rule s_info_rules[] = {{"version", VAL_STR, 0},  {"backend", VAL_STR, 0},
                                          {"device", VAL_STR, 0},   {"worker_key", VAL_BIN, 32},
                                          {"models", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_register_rules[] = {{"created", VAL_BOOL, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_contribute_rules[] = {
    {"batch", VAL_UINT, 0},      {"leaf", VAL_BIN, 32},     {"store_size", VAL_UINT, 0},
    {"store_root", VAL_BIN, 32}, {"receipt", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_attribute_rules[] = {
    {"proof", VAL_ARRAY, 0}, {"result", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_stats_rules[] = {{"requests", VAL_UINT, 0}, {NULL, VAL_NIL, 0}};

static const struct {
    const char *name;
    sdm_client_status status;
} s_codes[] = {
    {"bad_request", SDM_CLIENT_BAD_REQUEST},
    {"unknown_op", SDM_CLIENT_UNKNOWN_OP},
    {"too_large", SDM_CLIENT_TOO_LARGE},
    {"not_found", SDM_CLIENT_NOT_FOUND},
    {"conflict", SDM_CLIENT_CONFLICT},
    {"unauthorized", SDM_CLIENT_UNAUTHORIZED},
    {"busy", SDM_CLIENT_BUSY},
    {"internal", SDM_CLIENT_INTERNAL},
};

/* Reads one reply (delimiter + payload) into *payload; returns 0 or a status. */
static sdm_client_status recv_reply(sdm_client_t *c, zmq_msg_t *payload)
{
    zmq_msg_t delim;
    zmq_msg_init(&delim);
    int rc;
    do
        rc = zmq_msg_recv(&delim, c->sock, 0);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0) {
        int e = zmq_errno();
        zmq_msg_close(&delim);
        if (e == EAGAIN)
            return client_fail(c, SDM_CLIENT_TIMEOUT,
                               "no reply from %s within %d ms (is the server there? with CURVE, "
                               "are the keys right?)",
                               c->endpoint, c->timeout_ms);
        return client_fail(c, SDM_CLIENT_TRANSPORT, "receive: %s", zmq_strerror(e));
    }
    int more = zmq_msg_more(&delim);
    size_t dsize = zmq_msg_size(&delim);
    zmq_msg_close(&delim);
    if (dsize != 0 || !more) {
        /* drain whatever else belongs to this message */
        while (more) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            if (zmq_msg_recv(&junk, c->sock, 0) < 0) {
                zmq_msg_close(&junk);
                break;
            }
            more = zmq_msg_more(&junk);
            zmq_msg_close(&junk);
        }
        return client_fail(c, SDM_CLIENT_BAD_REPLY,
                           "reply: expected an empty delimiter frame and one payload frame");
    }
    zmq_msg_init(payload);
    do
        rc = zmq_msg_recv(payload, c->sock, 0);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0) {
        zmq_msg_close(payload);
        return client_fail(c, SDM_CLIENT_TRANSPORT, "receive: %s", zmq_strerror(zmq_errno()));
    }
    if (zmq_msg_more(payload)) {
        int m = 1;
        while (m) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            if (zmq_msg_recv(&junk, c->sock, 0) < 0) {
                zmq_msg_close(&junk);
                break;
            }
            m = zmq_msg_more(&junk);
            zmq_msg_close(&junk);
        }
        zmq_msg_close(payload);
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: more than one payload frame");
    }
    return SDM_CLIENT_OK;
}

/* Checks a decoded reply: echoed id, ok, error mapping, the op's fields. */
static sdm_client_status check_reply(sdm_client_t *c, const sdm_reply_t *r, uint64_t id,
                                     const field_rule *rules)
{
    const val *rid = map_get(&r->root, "id");
    if (!rid || rid->type != VAL_UINT || rid->u != id)
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply id does not echo request id %" PRIu64,
                           id);
    const val *ok = map_get(&r->root, "ok");
    if (!ok || ok->type != VAL_BOOL)
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: 'ok' missing or not a bool");
    if (!ok->u) {
        const val *e = map_get(&r->root, "error");
        const val *code = map_get(e, "code"), *msg = map_get(e, "message");
        if (!val_is_str(code) || !val_is_str(msg))
            return client_fail(c, SDM_CLIENT_BAD_REPLY,
                               "error reply: 'error.code' or 'error.message' missing");
        for (size_t i = 0; i < sizeof(s_codes) / sizeof(s_codes[0]); i++)
            if (strcmp(code->bytes, s_codes[i].name) == 0)
                return client_fail(c, s_codes[i].status, "%s", msg->bytes);
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "error reply: unknown code '%.64s': %s",
                           code->bytes, msg->bytes);
    }
    for (const field_rule *f = rules; f && f->name; f++) {
        const val *v = map_get(&r->root, f->name);
        int good = v && v->type == f->type;
        if (good && f->type == VAL_STR)
            good = val_is_str(v);
        if (good && f->type == VAL_BIN && f->bin_len && v->len != f->bin_len)
            good = 0;
        if (!good)
            return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: '%s' missing or of the wrong type",
                               f->name);
        if ((strcmp(f->name, "receipt") == 0 || strcmp(f->name, "proof") == 0 ||
             strcmp(f->name, "entry") == 0) &&
            (!r->env_key || strcmp(r->env_key, f->name) != 0))
            return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: '%s' is not an envelope", f->name);
    }
    return SDM_CLIENT_OK;
}

/* Sends the packed request (takes the buffer). On failure the socket is remade. */
static sdm_client_status client_send(sdm_client_t *c, msgpack_sbuffer *sb)
{
    if (!c->sock) {
        char err[256];
        if (client_connect(c, err, sizeof(err)) != 0) {
            msgpack_sbuffer_destroy(sb);
            return client_fail(c, SDM_CLIENT_TRANSPORT, "%s", err);
        }
    }
    size_t size = sb->size;
    char *data = msgpack_sbuffer_release(sb);
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, data, size, free_sbuffer_data, NULL) != 0) {
        free(data);
        return client_fail(c, SDM_CLIENT_NOMEM, "out of memory for the request");
    }
    if (zmq_send(c->sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_msg_send(&msg, c->sock, 0) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&msg);
        client_reset(c);
        if (e == EAGAIN)
            return client_fail(c, SDM_CLIENT_TIMEOUT, "could not send to %s within %d ms",
                               c->endpoint, c->timeout_ms);
        return client_fail(c, SDM_CLIENT_TRANSPORT, "send: %s", zmq_strerror(e));
    }
    return SDM_CLIENT_OK;
}

/* Waits for the next reply and decodes it (not yet checked). On failure the socket is
 * remade. */
static sdm_client_status client_recv(sdm_client_t *c, sdm_reply_t **out)
{
    *out = NULL;
    zmq_msg_t payload;
    sdm_client_status st = recv_reply(c, &payload);
    if (st != SDM_CLIENT_OK) {
        client_reset(c);
        return st;
    }
    char err[256];
    sdm_reply_t *r =
        sdm_reply_parse(zmq_msg_data(&payload), zmq_msg_size(&payload), err, sizeof(err));
    zmq_msg_close(&payload);
    if (!r) {
        client_reset(c);
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: %s", err);
    }
    *out = r;
    return SDM_CLIENT_OK;
}

/* Sends the packed request (takes the buffer), waits for and checks the reply. */
static sdm_client_status client_call(sdm_client_t *c, msgpack_sbuffer *sb, uint64_t id,
                                     const field_rule *rules, sdm_reply_t **out)
{
    *out = NULL;
    sdm_client_status st = client_send(c, sb);
    if (st != SDM_CLIENT_OK)
        return st;
    sdm_reply_t *r;
    if ((st = client_recv(c, &r)) != SDM_CLIENT_OK)
        return st;
    st = check_reply(c, r, id, rules);
    if (st != SDM_CLIENT_OK) {
        if (st == SDM_CLIENT_BAD_REPLY)
            client_reset(c);
        sdm_reply_destroy(&r);
        return st;
    }
    c->last_status = SDM_CLIENT_OK;
    c->last_error[0] = 0;
    *out = r;
    return SDM_CLIENT_OK;
}

/* ---- request packing ----------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_kv_str(msgpack_packer *pk, const char *key, const char *value)
{
    pack_str(pk, key);
    pack_str(pk, value);
}

/* Starts a request map of 2 + n_fields entries: op and id. */
static uint64_t pack_head(sdm_client_t *c, msgpack_packer *pk, const char *op, uint32_t n_fields)
{
    uint64_t id = c->next_id++;
    msgpack_pack_map(pk, 2 + n_fields);
    pack_kv_str(pk, "op", op);
    pack_str(pk, "id");
    msgpack_pack_uint64(pk, id);
    return id;
}

/* The byte size of a matrix, or -1 (with the client's error set) when it cannot be sent. */
static int matrix_bytes(sdm_client_t *c, const sdm_matrix *m, const char *what, size_t *out)
{
    size_t es = sdm_dtype_size(m->dtype);
    if (!es) {
        client_fail(c, SDM_CLIENT_BAD_ARGUMENT, "%s.dtype: unknown dtype %d", what, (int)m->dtype);
        return -1;
    }
    if (m->cols && m->rows > SIZE_MAX / es / m->cols) {
        client_fail(c, SDM_CLIENT_BAD_ARGUMENT, "%s: %" PRIu64 " x %" PRIu64 " is too large", what,
                    m->rows, m->cols);
        return -1;
    }
    *out = (size_t)(m->rows * m->cols) * es;
    if (*out && !m->data) {
        client_fail(c, SDM_CLIENT_BAD_ARGUMENT, "%s.data: NULL", what);
        return -1;
    }
    return 0;
}

static void pack_matrix(msgpack_packer *pk, const sdm_matrix *m, size_t n_bytes)
{
    msgpack_pack_map(pk, 4);
    pack_kv_str(pk, "dtype", sdm_dtype_name(m->dtype));
    pack_str(pk, "rows");
    msgpack_pack_uint64(pk, m->rows);
    pack_str(pk, "cols");
    msgpack_pack_uint64(pk, m->cols);
    pack_str(pk, "data");
    msgpack_pack_bin(pk, n_bytes);
    msgpack_pack_bin_body(pk, m->data, n_bytes);
}

sdm_client_status sdm_client_info(sdm_client_t *self, sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(self, &pk, "info", 0);
    return client_call(self, &sb, id, s_info_rules, out);
}

sdm_client_status sdm_client_stats(sdm_client_t *self, sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(self, &pk, "stats", 0);
    return client_call(self, &sb, id, s_stats_rules, out);
}

sdm_client_status sdm_client_register(sdm_client_t *self, const char *model,
                                      const sdm_projection *proj, sdm_reply_t **out)
{
    *out = NULL;
    if (!model || !proj)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: NULL",
                           !model ? "model" : "projection");
    const char *kind = sdm_proj_kind_name(proj->kind);
    if (!kind)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "projection.kind: unknown kind %d",
                           (int)proj->kind);
    int with_s = proj->kind == SDM_PROJ_SJLT && proj->s != 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(self, &pk, "register", 3);
    pack_kv_str(&pk, "model", model);
    pack_str(&pk, "input_dim");
    msgpack_pack_uint64(&pk, proj->input_dim);
    pack_str(&pk, "projection");
    msgpack_pack_map(&pk, with_s ? 4 : 3);
    pack_kv_str(&pk, "kind", kind);
    pack_str(&pk, "dim");
    msgpack_pack_uint32(&pk, proj->dim);
    pack_str(&pk, "seed");
    msgpack_pack_uint64(&pk, proj->seed);
    if (with_s) {
        pack_str(&pk, "s");
        msgpack_pack_uint32(&pk, proj->s);
    }
    return client_call(self, &sb, id, s_register_rules, out);
}

sdm_client_status sdm_client_contribute(sdm_client_t *self, const char *model, const sdm_batch *b,
                                        sdm_reply_t **out)
{
    *out = NULL;
    if (!model || !b || !b->checkpoint)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: NULL",
                           !model ? "model"
                           : !b   ? "batch"
                                  : "checkpoint");
    const char *rows_key = b->is_features ? "features" : "grads";
    size_t n_bytes;
    if (matrix_bytes(self, &b->rows, rows_key, &n_bytes) != 0)
        return self->last_status;
    uint64_t n = b->rows.rows;
    if (b->curvature) {
        if (b->ids || b->weights)
            return client_fail(self, SDM_CLIENT_BAD_ARGUMENT,
                               "%s: curvature batches carry no example ids or weights",
                               b->ids ? "example_ids" : "weights");
    } else {
        if (!b->contributor || !b->shard)
            return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: NULL",
                               !b->contributor ? "contributor" : "shard");
        if (n && !b->ids)
            return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "example_ids: NULL");
    }
    uint32_t fields = 3;            /* model, checkpoint, lr */
    fields += 1;                    /* grads or features */
    fields += b->curvature ? 1 : 3; /* curvature, or contributor, shard, example_ids */
    fields += b->weights ? 1 : 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(self, &pk, "contribute", fields);
    pack_kv_str(&pk, "model", model);
    pack_kv_str(&pk, "checkpoint", b->checkpoint);
    pack_str(&pk, "lr");
    msgpack_pack_double(&pk, b->lr);
    if (b->curvature) {
        pack_str(&pk, "curvature");
        msgpack_pack_true(&pk);
    } else {
        pack_kv_str(&pk, "contributor", b->contributor);
        pack_kv_str(&pk, "shard", b->shard);
        pack_str(&pk, "example_ids");
        msgpack_pack_array(&pk, (size_t)n);
        for (uint64_t i = 0; i < n; i++)
            msgpack_pack_uint64(&pk, b->ids[i]);
    }
    if (b->weights) {
        pack_str(&pk, "weights");
        msgpack_pack_array(&pk, (size_t)n);
        for (uint64_t i = 0; i < n; i++)
            msgpack_pack_double(&pk, b->weights[i]);
    }
    pack_str(&pk, rows_key);
    pack_matrix(&pk, &b->rows, n_bytes);
    return client_call(self, &sb, id, s_contribute_rules, out);
}

sdm_client_status sdm_client_attribute(sdm_client_t *self, const sdm_client_attr *a,
                                       sdm_reply_t **out)
{
    *out = NULL;
    if (!a || !a->model)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: NULL", !a ? "request" : "model");
    if (a->n_queries && !a->queries)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "queries: NULL");
    const char *method = sdm_method_name(a->method);
    const char *aggregate = sdm_aggregate_name(a->aggregate);
    if (!method || !aggregate)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: unknown value",
                           !method ? "method" : "aggregate");
    int features = a->n_queries ? a->queries[0].is_features : 0;
    for (size_t i = 0; i < a->n_queries; i++) {
        if (!a->queries[i].checkpoint)
            return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "queries[%zu].checkpoint: NULL", i);
        if (!a->queries[i].is_features != !features)
            return client_fail(self, SDM_CLIENT_BAD_ARGUMENT,
                               "queries[%zu]: gradients and features cannot be mixed", i);
        size_t nb;
        if (matrix_bytes(self, &a->queries[i].rows, a->queries[i].checkpoint, &nb) != 0)
            return self->last_status;
    }
    uint64_t m = a->n_queries ? a->queries[0].rows.rows : 0;
    uint32_t fields = 4; /* model, queries, method, aggregate */
    fields += a->topk >= 0;
    fields += a->has_lambda != 0;
    fields += a->query_ids != NULL;
    fields += a->request_id != NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(self, &pk, "attribute", fields);
    pack_kv_str(&pk, "model", a->model);
    pack_str(&pk, features ? "query_features" : "queries");
    msgpack_pack_map(&pk, a->n_queries);
    for (size_t i = 0; i < a->n_queries; i++) {
        size_t nb = 0;
        (void)matrix_bytes(self, &a->queries[i].rows, a->queries[i].checkpoint, &nb);
        pack_str(&pk, a->queries[i].checkpoint);
        pack_matrix(&pk, &a->queries[i].rows, nb);
    }
    pack_kv_str(&pk, "method", method);
    pack_kv_str(&pk, "aggregate", aggregate);
    if (a->topk >= 0) {
        pack_str(&pk, "topk");
        msgpack_pack_uint32(&pk, (uint32_t)a->topk);
    }
    if (a->has_lambda) {
        pack_str(&pk, "lambda");
        msgpack_pack_double(&pk, a->lambda);
    }
    if (a->query_ids) {
        pack_str(&pk, "query_ids");
        msgpack_pack_array(&pk, (size_t)m);
        for (uint64_t i = 0; i < m; i++)
            msgpack_pack_uint64(&pk, a->query_ids[i]);
    }
    if (a->request_id)
        pack_kv_str(&pk, "request_id", a->request_id);
    return client_call(self, &sb, id, s_attribute_rules, out);
}

/* ---- ledger ops ---------------------------------------------------------------------- */

static const field_rule s_ledger_info_rules[] = {{"version", VAL_STR, 0},
                                                 {"ledger_key", VAL_BIN, 32},
                                                 {"origin", VAL_STR, 0},
                                                 {"size", VAL_UINT, 0},
                                                 {NULL, VAL_NIL, 0}};
static const field_rule s_append_rules[] = {{"index", VAL_UINT, 0},
                                            {"leaf_hash", VAL_BIN, 32},
                                            {"size", VAL_UINT, 0},
                                            {"duplicate", VAL_BOOL, 0},
                                            {NULL, VAL_NIL, 0}};
static const field_rule s_checkpoint_rules[] = {{"checkpoint", VAL_STR, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_entry_rules[] = {{"entry", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_inclusion_rules[] = {
    {"leaf_hash", VAL_BIN, 32}, {"hashes", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_consistency_rules[] = {{"hashes", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_history_rules[] = {{"entries", VAL_ARRAY, 0}, {NULL, VAL_NIL, 0}};
static const field_rule s_rewards_rules[] = {{"allocations", VAL_ARRAY, 0},
                                             {"flagged", VAL_ARRAY, 0},
                                             {"unallocated", VAL_UINT, 0},
                                             {NULL, VAL_NIL, 0}};

/* At most this many hashes in a proof: a tree of 2^64 leaves needs 64. */
#define MAX_PROOF_HASHES 64

static int is_bin32(const val *v)
{
    return v && v->type == VAL_BIN && v->len == 32;
}

static int is_f64_or_nil(const val *v)
{
    return v && (v->type == VAL_NIL || v->type == VAL_FLOAT || v->type == VAL_UINT ||
                 v->type == VAL_INT);
}

/* The checks a field rule cannot say (nil-or-type, array items). NULL when the reply is
 * good, else the field at fault for the message. */
static const char *ledger_info_bad(const sdm_reply_t *r, char *buf, size_t len)
{
    const val *w = map_get(&r->root, "workers");
    if (!w || (w->type != VAL_NIL && w->type != VAL_ARRAY))
        return "workers";
    for (size_t i = 0; w->type == VAL_ARRAY && i < w->len; i++)
        if (!is_bin32(&w->items[i])) {
            snprintf(buf, len, "workers[%zu]", i);
            return buf;
        }
    return NULL;
}

static const char *append_bad(const sdm_reply_t *r, char *buf, size_t len)
{
    (void)buf, (void)len;
    const val *cp = map_get(&r->root, "checkpoint");
    return cp && (cp->type == VAL_NIL || val_is_str(cp)) ? NULL : "checkpoint";
}

static const char *hashes_bad(const sdm_reply_t *r, char *buf, size_t len)
{
    const val *h = map_get(&r->root, "hashes");
    if (h->len > MAX_PROOF_HASHES)
        return "hashes (more than 64)";
    for (size_t i = 0; i < h->len; i++)
        if (!is_bin32(&h->items[i])) {
            snprintf(buf, len, "hashes[%zu]", i);
            return buf;
        }
    return NULL;
}

static const char *history_bad(const sdm_reply_t *r, char *buf, size_t len)
{
    const val *e = map_get(&r->root, "entries");
    for (size_t i = 0; i < e->len; i++) {
        const val *row = &e->items[i];
        const val *idx = map_get(row, "index"), *at = map_get(row, "issued_at");
        const char *bad = row->type != VAL_MAP                    ? ""
                          : !idx || idx->type != VAL_UINT         ? ".index"
                          : !at || at->type != VAL_UINT           ? ".issued_at"
                          : !val_is_str(map_get(row, "type"))     ? ".type"
                          : !val_is_str(map_get(row, "model"))    ? ".model"
                          : !val_is_str(map_get(row, "shard"))    ? ".shard"
                          : !is_f64_or_nil(map_get(row, "score")) ? ".score"
                          : !is_f64_or_nil(map_get(row, "share")) ? ".share"
                                                                  : NULL;
        if (bad) {
            snprintf(buf, len, "entries[%zu]%s", i, bad);
            return buf;
        }
    }
    return NULL;
}

static const char *rewards_bad(const sdm_reply_t *r, char *buf, size_t len)
{
    const val *a = map_get(&r->root, "allocations"), *f = map_get(&r->root, "flagged");
    for (size_t i = 0; i < a->len; i++) {
        const val *row = &a->items[i];
        if (row->type != VAL_ARRAY || row->len != 2 || !val_is_str(&row->items[0]) ||
            row->items[1].type != VAL_UINT) {
            snprintf(buf, len, "allocations[%zu] (expected [contributor, amount])", i);
            return buf;
        }
    }
    for (size_t i = 0; i < f->len; i++)
        if (!val_is_str(&f->items[i])) {
            snprintf(buf, len, "flagged[%zu]", i);
            return buf;
        }
    return NULL;
}

typedef const char *(*reply_check_fn)(const sdm_reply_t *r, char *buf, size_t len);

/* client_call, then the op's own checks of what the field rules cannot express. */
static sdm_client_status ledger_call(sdm_client_t *c, msgpack_sbuffer *sb, uint64_t id,
                                     const field_rule *rules, reply_check_fn more,
                                     sdm_reply_t **out)
{
    sdm_client_status st = client_call(c, sb, id, rules, out);
    if (st != SDM_CLIENT_OK || !more)
        return st;
    char buf[96];
    const char *bad = more(*out, buf, sizeof(buf));
    if (bad) {
        sdm_reply_destroy(out);
        return client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: '%s' missing or of the wrong type",
                           bad);
    }
    return SDM_CLIENT_OK;
}

sdm_client_status sdm_client_check_reply(const char *op, const sdm_reply_t *reply, uint64_t id,
                                         char *err, size_t err_len)
{
    static const struct {
        const char *op;
        const field_rule *rules;
        reply_check_fn more;
    } ops[] = {
        {"info", s_info_rules, NULL},
        {"register", s_register_rules, NULL},
        {"contribute", s_contribute_rules, NULL},
        {"attribute", s_attribute_rules, NULL},
        {"stats", s_stats_rules, NULL},
        {"ledger_info", s_ledger_info_rules, ledger_info_bad},
        {"append", s_append_rules, append_bad},
        {"checkpoint", s_checkpoint_rules, NULL},
        {"entry", s_entry_rules, NULL},
        {"inclusion", s_inclusion_rules, hashes_bad},
        {"consistency", s_consistency_rules, hashes_bad},
        {"history", s_history_rules, history_bad},
        {"rewards", s_rewards_rules, rewards_bad},
    };
    /* a client that never connects: check_reply only records its verdict in it */
    sdm_client_t c;
    memset(&c, 0, sizeof(c));
    sdm_client_status st = client_fail(&c, SDM_CLIENT_BAD_ARGUMENT, "op: unknown");
    if (!reply)
        st = client_fail(&c, SDM_CLIENT_BAD_ARGUMENT, "reply: NULL");
    for (size_t i = 0; reply && op && i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(op, ops[i].op) != 0)
            continue;
        c.last_error[0] = 0;
        st = check_reply(&c, reply, id, ops[i].rules);
        char buf[96];
        const char *bad =
            st == SDM_CLIENT_OK && ops[i].more ? ops[i].more(reply, buf, sizeof(buf)) : NULL;
        if (bad)
            st = client_fail(&c, SDM_CLIENT_BAD_REPLY, "reply: '%s' missing or of the wrong type",
                             bad);
        break;
    }
    sdm_errf(err, err_len, "%s", c.last_error);
    return st;
}

/* Starts an empty request buffer with its packer. */
static void request_init(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

static void pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

sdm_client_status sdm_client_ledger_info(sdm_client_t *self, sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "info", 0);
    return ledger_call(self, &sb, id, s_ledger_info_rules, ledger_info_bad, out);
}

/* The envelope goes into an append request as it is, so it must be exactly one msgpack
 * array: anything else would corrupt the request map around it. 0, or -1 with the client's
 * error set (naming append k when k is given). */
static int envelope_arg_bad(sdm_client_t *c, const uint8_t *env, size_t env_len, const uint64_t *k)
{
    char where[48] = "";
    if (k)
        snprintf(where, sizeof(where), "append %" PRIu64 ": ", *k);
    size_t pos = 0;
    if (!env || env_len == 0 ||
        !((env[0] >= 0x90 && env[0] <= 0x9f) || env[0] == 0xdc || env[0] == 0xdd)) {
        client_fail(c, SDM_CLIENT_BAD_ARGUMENT, "%sentry: not a msgpack array", where);
        return -1;
    }
    if (mp_skip(env, env_len, &pos, 1) != 0 || pos != env_len) {
        client_fail(c, SDM_CLIENT_BAD_ARGUMENT,
                    "%sentry: not exactly one msgpack array (%zu bytes)", where, env_len);
        return -1;
    }
    return 0;
}

/* Packs an append request of a checked envelope; returns its id. */
static uint64_t pack_append_request(sdm_client_t *c, msgpack_sbuffer *sb, const uint8_t *env,
                                    size_t env_len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(c, &pk, "append", 1);
    pack_str(&pk, "entry");
    msgpack_sbuffer_write(sb, (const char *)env, env_len);
    return id;
}

sdm_client_status sdm_client_ledger_append(sdm_client_t *self, const uint8_t *env, size_t env_len,
                                           sdm_reply_t **out)
{
    *out = NULL;
    if (envelope_arg_bad(self, env, env_len, NULL))
        return SDM_CLIENT_BAD_ARGUMENT;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t id = pack_append_request(self, &sb, env, env_len);
    return ledger_call(self, &sb, id, s_append_rules, append_bad, out);
}

sdm_client_status sdm_client_ledger_checkpoint(sdm_client_t *self, sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "checkpoint", 0);
    return ledger_call(self, &sb, id, s_checkpoint_rules, NULL, out);
}

/* Packs an entry request; returns its id. */
static uint64_t pack_entry_request(sdm_client_t *c, msgpack_sbuffer *sb, uint64_t index)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint64_t id = pack_head(c, &pk, "entry", 1);
    pack_kv_u64(&pk, "index", index);
    return id;
}

sdm_client_status sdm_client_ledger_entry(sdm_client_t *self, uint64_t index, sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t id = pack_entry_request(self, &sb, index);
    return ledger_call(self, &sb, id, s_entry_rules, NULL, out);
}

sdm_client_status sdm_client_ledger_inclusion(sdm_client_t *self, uint64_t index, uint64_t size,
                                              sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "inclusion", 2);
    pack_kv_u64(&pk, "index", index);
    pack_kv_u64(&pk, "size", size);
    return ledger_call(self, &sb, id, s_inclusion_rules, hashes_bad, out);
}

sdm_client_status sdm_client_ledger_consistency(sdm_client_t *self, uint64_t from, uint64_t to,
                                                sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "consistency", 2);
    pack_kv_u64(&pk, "from", from);
    pack_kv_u64(&pk, "to", to);
    return ledger_call(self, &sb, id, s_consistency_rules, hashes_bad, out);
}

static uint32_t window_fields(const sdm_client_window *w)
{
    return w ? (uint32_t)(!!w->has_since + !!w->has_until) : 0;
}

static void pack_window(msgpack_packer *pk, const sdm_client_window *w)
{
    if (w && w->has_since)
        pack_kv_u64(pk, "since", w->since);
    if (w && w->has_until)
        pack_kv_u64(pk, "until", w->until);
}

sdm_client_status sdm_client_ledger_history(sdm_client_t *self, const char *contributor,
                                            const sdm_client_window *window, uint64_t limit,
                                            sdm_reply_t **out)
{
    *out = NULL;
    if (!contributor)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "contributor: NULL");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "history", 1 + window_fields(window) + (limit != 0));
    pack_kv_str(&pk, "contributor", contributor);
    pack_window(&pk, window);
    if (limit)
        pack_kv_u64(&pk, "limit", limit);
    return ledger_call(self, &sb, id, s_history_rules, history_bad, out);
}

sdm_client_status sdm_client_ledger_rewards(sdm_client_t *self, uint64_t pool,
                                            const sdm_client_window *window, const char *model,
                                            sdm_reply_t **out)
{
    *out = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    request_init(&sb, &pk);
    uint64_t id = pack_head(self, &pk, "rewards", 1 + window_fields(window) + (model != NULL));
    pack_kv_u64(&pk, "pool", pool);
    pack_window(&pk, window);
    if (model)
        pack_kv_str(&pk, "model", model);
    return ledger_call(self, &sb, id, s_rewards_rules, rewards_bad, out);
}

#define DEFAULT_ENTRY_WINDOW 64
#define MAX_ENTRY_WINDOW 1024

/* One pipelined run of n requests k = 0 .. n-1, up to `window` in flight (0: the default, at
 * most MAX_ENTRY_WINDOW). Request k gets id first_id + k; replies may come in any order and
 * wait in slot[k % window] until the ones before them are handed over, in order. */
typedef struct pipeline {
    const char *name;   /* "entry", "append": messages name request base + k */
    const char *echoes; /* what a stray reply id fails to echo */
    uint64_t base;
    /* packs and sends request k (id must be *id's expected value); a status with a message */
    sdm_client_status (*send)(sdm_client_t *c, void *ctx, uint64_t k, uint64_t want_id);
    /* checks reply k beyond its id; a status with a message */
    sdm_client_status (*check)(sdm_client_t *c, void *ctx, sdm_reply_t *r, uint64_t id);
    /* hands reply k over (it is destroyed afterwards); non-zero stops the run */
    int (*deliver)(void *ctx, uint64_t k, sdm_reply_t *r);
    void *ctx;
} pipeline;

static sdm_client_status pipeline_run(sdm_client_t *self, const pipeline *pl, uint64_t n,
                                      unsigned window)
{
    if (window == 0)
        window = DEFAULT_ENTRY_WINDOW;
    if (window > MAX_ENTRY_WINDOW)
        window = MAX_ENTRY_WINDOW;
    sdm_reply_t **slot = calloc(window, sizeof(*slot));
    if (!slot)
        return client_fail(self, SDM_CLIENT_NOMEM, "out of memory");
    uint64_t first_id = self->next_id;
    uint64_t sent = 0, done = 0;
    sdm_client_status st = SDM_CLIENT_OK;
    while (done < n) {
        while (sent < n && sent - done < window) {
            if ((st = pl->send(self, pl->ctx, sent, first_id + sent)) != SDM_CLIENT_OK)
                goto out;
            sent++;
        }
        sdm_reply_t *r;
        if ((st = client_recv(self, &r)) != SDM_CLIENT_OK)
            goto out;
        const val *rid = map_get(&r->root, "id");
        uint64_t k =
            rid && rid->type == VAL_UINT && rid->u >= first_id ? rid->u - first_id : UINT64_MAX;
        if (k < done || k >= sent || slot[k % window]) {
            sdm_reply_destroy(&r);
            st = client_fail(self, SDM_CLIENT_BAD_REPLY, "reply id does not echo any %s in flight",
                             pl->echoes);
            goto out;
        }
        if ((st = pl->check(self, pl->ctx, r, rid->u)) != SDM_CLIENT_OK) {
            sdm_reply_destroy(&r);
            /* name the request, keeping the server's message */
            char msg[sizeof(self->last_error)];
            snprintf(msg, sizeof(msg), "%s", self->last_error);
            client_fail(self, st, "%s %" PRIu64 ": %s", pl->name, pl->base + k, msg);
            goto out;
        }
        slot[k % window] = r;
        while (done < sent && slot[done % window]) {
            int stop = pl->deliver(pl->ctx, pl->base + done, slot[done % window]);
            sdm_reply_destroy(&slot[done % window]);
            done++;
            if (stop)
                goto out;
        }
    }
out:
    for (unsigned i = 0; i < window; i++)
        sdm_reply_destroy(&slot[i]);
    free(slot);
    if (sent > done)
        client_reset(self); /* drop the replies still on their way */
    if (st == SDM_CLIENT_OK) {
        self->last_status = SDM_CLIENT_OK;
        self->last_error[0] = 0;
    }
    return st;
}

/* Sends msg's request, which must carry want_id: ids count up one per request, so a mismatch
 * cannot happen. */
static sdm_client_status pipeline_send(sdm_client_t *c, msgpack_sbuffer *sb, uint64_t id,
                                       uint64_t want_id)
{
    if (id != want_id) {
        msgpack_sbuffer_destroy(sb);
        return client_fail(c, SDM_CLIENT_INTERNAL, "request ids out of step");
    }
    return client_send(c, sb);
}

typedef struct entries_ctx {
    uint64_t from;
    sdm_client_entry_fn fn;
    void *ctx;
} entries_ctx;

static sdm_client_status entries_send(sdm_client_t *c, void *ctx, uint64_t k, uint64_t want_id)
{
    const entries_ctx *e = ctx;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t id = pack_entry_request(c, &sb, e->from + k);
    return pipeline_send(c, &sb, id, want_id);
}

static sdm_client_status entries_check(sdm_client_t *c, void *ctx, sdm_reply_t *r, uint64_t id)
{
    (void)ctx;
    return check_reply(c, r, id, s_entry_rules);
}

static int entries_deliver(void *ctx, uint64_t index, sdm_reply_t *r)
{
    const entries_ctx *e = ctx;
    size_t len = 0;
    const uint8_t *env = sdm_reply_envelope(r, &len);
    return e->fn(e->ctx, index, env, len);
}

sdm_client_status sdm_client_ledger_entries(sdm_client_t *self, uint64_t from, uint64_t to,
                                            unsigned window, sdm_client_entry_fn fn, void *ctx)
{
    if (!fn)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "fn: NULL");
    if (from > to)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT,
                           "from: %" PRIu64 " is beyond to: %" PRIu64, from, to);
    /* the ledger answers reads in order, but nothing here depends on it */
    entries_ctx e = {from, fn, ctx};
    pipeline pl = {"entry", "entry request", from, entries_send, entries_check, entries_deliver,
                   &e};
    return pipeline_run(self, &pl, to - from, window);
}

typedef struct appends_ctx {
    sdm_client_envelope_fn next;
    sdm_client_append_fn on_reply;
    void *ctx;
} appends_ctx;

static sdm_client_status appends_send(sdm_client_t *c, void *ctx, uint64_t k, uint64_t want_id)
{
    const appends_ctx *a = ctx;
    const uint8_t *env = NULL;
    size_t env_len = 0;
    if (a->next(a->ctx, k, &env, &env_len) != 0)
        return client_fail(c, SDM_CLIENT_BAD_ARGUMENT,
                           "append %" PRIu64 ": the caller stopped the run", k);
    if (envelope_arg_bad(c, env, env_len, &k))
        return SDM_CLIENT_BAD_ARGUMENT;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t id = pack_append_request(c, &sb, env, env_len);
    return pipeline_send(c, &sb, id, want_id);
}

static sdm_client_status appends_check(sdm_client_t *c, void *ctx, sdm_reply_t *r, uint64_t id)
{
    (void)ctx;
    char buf[96];
    const char *bad = NULL;
    sdm_client_status st = check_reply(c, r, id, s_append_rules);
    if (st == SDM_CLIENT_OK && (bad = append_bad(r, buf, sizeof(buf))) != NULL)
        st = client_fail(c, SDM_CLIENT_BAD_REPLY, "reply: '%s' missing or of the wrong type", bad);
    return st;
}

static int appends_deliver(void *ctx, uint64_t k, sdm_reply_t *r)
{
    const appends_ctx *a = ctx;
    return a->on_reply(a->ctx, k, r);
}

sdm_client_status sdm_client_ledger_appends(sdm_client_t *self, uint64_t n, unsigned window,
                                            sdm_client_envelope_fn next,
                                            sdm_client_append_fn on_reply, void *ctx)
{
    if (!next || !on_reply)
        return client_fail(self, SDM_CLIENT_BAD_ARGUMENT, "%s: NULL", !next ? "next" : "on_reply");
    /* a refused append is answered without waiting for the commit of those before it, so
     * replies can come out of order */
    appends_ctx a = {next, on_reply, ctx};
    pipeline pl = {"append", "append", 0, appends_send, appends_check, appends_deliver, &a};
    return pipeline_run(self, &pl, n, window);
}

int sdm_reply_hashes(const sdm_reply_t *self, const char *path, uint8_t (*out)[32], size_t max,
                     size_t *n)
{
    const val *v = self ? val_at(&self->root, path) : NULL;
    if (!v || v->type != VAL_ARRAY || v->len > max)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        if (!is_bin32(&v->items[i]))
            return -1;
        memcpy(out[i], v->items[i].bytes, 32);
    }
    *n = v->len;
    return 0;
}

/* ---- checkpoints and proofs ---------------------------------------------------------- */

char *sdm_client_verifier_key(const char *origin, const uint8_t key[32])
{
    char *vkey = NULL;
    if (!origin || !key || sdm_note_verifier_key(origin, key, &vkey) != SDM_NOTE_OK)
        return NULL;
    return vkey;
}

static sdm_client_status checkpoint_open(const char *note, size_t len, const sdm_note_verifier *v,
                                         sdm_ledger_checkpoint *cp, char *err, size_t err_len)
{
    if (!note || !cp) {
        sdm_errf(err, err_len, "%s: NULL", !note ? "note" : "checkpoint");
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    char e[256] = "";
    size_t text_len = 0;
    sdm_note_status ns = sdm_note_verify(note, len, v, 1, &text_len, e, sizeof(e));
    if (ns == SDM_NOTE_NOMEM) {
        sdm_errf(err, err_len, "checkpoint: out of memory");
        return SDM_CLIENT_NOMEM;
    }
    if (ns == SDM_NOTE_MALFORMED) {
        sdm_errf(err, err_len, "checkpoint: malformed: %s", e);
        return SDM_CLIENT_BAD_REPLY;
    }
    if (ns != SDM_NOTE_OK) {
        sdm_errf(err, err_len, "checkpoint: not signed by %s (%s)", v->name, e);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    char *origin = NULL;
    uint64_t size = 0;
    uint8_t root[32];
    ns = sdm_checkpoint_parse(note, text_len, &origin, &size, root, e, sizeof(e));
    if (ns == SDM_NOTE_NOMEM) {
        sdm_errf(err, err_len, "checkpoint: out of memory");
        return SDM_CLIENT_NOMEM;
    }
    if (ns != SDM_NOTE_OK) {
        sdm_errf(err, err_len, "checkpoint: malformed: %s", e);
        return SDM_CLIENT_BAD_REPLY;
    }
    /* the key vouches for the origin it is named after, and for no other log */
    if (strcmp(origin, v->name) != 0) {
        sdm_errf(err, err_len, "checkpoint: its origin '%.64s' is not the key's name '%.64s'",
                 origin, v->name);
        free(origin);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    memset(cp, 0, sizeof(*cp));
    snprintf(cp->origin, sizeof(cp->origin), "%s", origin);
    cp->size = size;
    memcpy(cp->root, root, 32);
    memcpy(cp->key, v->pk, 32);
    free(origin);
    return SDM_CLIENT_OK;
}

sdm_client_status sdm_client_checkpoint_verify(const char *note, size_t len, const char *vkey,
                                               sdm_ledger_checkpoint *cp, char *err, size_t err_len)
{
    sdm_note_verifier v;
    char e[256] = "";
    if (!vkey || sdm_note_verifier_parse(vkey, &v, e, sizeof(e)) != SDM_NOTE_OK) {
        sdm_errf(err, err_len, "%s", vkey ? e : "verifier key: NULL");
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    return checkpoint_open(note, len, &v, cp, err, err_len);
}

sdm_client_status sdm_client_checkpoint_verify_key(const char *note, size_t len, const char *origin,
                                                   const uint8_t key[32], sdm_ledger_checkpoint *cp,
                                                   char *err, size_t err_len)
{
    if (!origin || !key || !sdm_note_name_valid(origin)) {
        sdm_errf(err, err_len,
                 "origin: not a valid key name (1 to %d bytes, no space, '+' or "
                 "control character)",
                 SDM_NOTE_NAME_MAX);
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    sdm_note_verifier v;
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "%s", origin);
    memcpy(v.pk, key, 32);
    sdm_note_keyid(origin, key, v.keyid);
    return checkpoint_open(note, len, &v, cp, err, err_len);
}

void sdm_client_leaf_hash(const uint8_t *env, size_t env_len, uint8_t out[32])
{
    sdm_merkle_leaf_hash(env, env_len, out);
}

static void hex8(const uint8_t *b, char out[17])
{
    sdm_hex(b, 8, out); /* enough of a hash to tell two apart in a message */
}

sdm_client_status sdm_client_verify_inclusion(const sdm_ledger_checkpoint *cp, uint64_t index,
                                              const uint8_t *env, size_t env_len,
                                              const uint8_t (*path)[32], size_t n_path, char *err,
                                              size_t err_len)
{
    if (!cp || !env || (n_path && !path)) {
        sdm_errf(err, err_len, "%s: NULL", !cp ? "checkpoint" : !env ? "entry" : "path");
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    if (index >= cp->size) {
        sdm_errf(err, err_len, "index: %" PRIu64 " is not below the checkpoint's size %" PRIu64,
                 index, cp->size);
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    uint8_t leaf[32];
    sdm_merkle_leaf_hash(env, env_len, leaf);
    if (n_path > MAX_PROOF_HASHES ||
        sdm_merkle_verify_inclusion(leaf, index, cp->size, path, n_path, cp->root) != 0) {
        char lh[17], rh[17];
        hex8(leaf, lh);
        hex8(cp->root, rh);
        sdm_errf(err, err_len,
                 "inclusion: the path of %zu hashes does not lead from entry %" PRIu64
                 "'s leaf hash %s... to the root %s... of size %" PRIu64,
                 n_path, index, lh, rh, cp->size);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    return SDM_CLIENT_OK;
}

sdm_client_status sdm_client_verify_consistency(const sdm_ledger_checkpoint *old_cp,
                                                const sdm_ledger_checkpoint *new_cp,
                                                const uint8_t (*path)[32], size_t n_path, char *err,
                                                size_t err_len)
{
    if (!old_cp || !new_cp || (n_path && !path)) {
        sdm_errf(err, err_len, "%s: NULL",
                 !old_cp   ? "old checkpoint"
                 : !new_cp ? "new checkpoint"
                           : "path");
        return SDM_CLIENT_BAD_ARGUMENT;
    }
    if (strcmp(old_cp->origin, new_cp->origin) != 0) {
        sdm_errf(err, err_len,
                 "consistency: the checkpoints are of two logs ('%.64s' and "
                 "'%.64s')",
                 old_cp->origin, new_cp->origin);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    if (memcmp(old_cp->key, new_cp->key, 32) != 0) {
        sdm_errf(err, err_len, "consistency: the checkpoints are signed by different keys");
        return SDM_CLIENT_UNAUTHORIZED;
    }
    if (old_cp->size > new_cp->size) {
        sdm_errf(err, err_len,
                 "consistency: the new checkpoint's size %" PRIu64
                 " is below the old one's %" PRIu64 ": a log never shrinks",
                 new_cp->size, old_cp->size);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    if (old_cp->size == new_cp->size && memcmp(old_cp->root, new_cp->root, 32) != 0) {
        sdm_errf(err, err_len,
                 "consistency: two different roots for size %" PRIu64
                 ": the log was forked or rewritten",
                 old_cp->size);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    if (n_path > MAX_PROOF_HASHES ||
        sdm_merkle_verify_consistency(old_cp->size, new_cp->size, old_cp->root, new_cp->root, path,
                                      n_path) != 0) {
        sdm_errf(err, err_len,
                 "consistency: the path of %zu hashes does not show the tree of "
                 "size %" PRIu64 " inside the tree of size %" PRIu64 ": the log rewrote its past",
                 n_path, old_cp->size, new_cp->size);
        return SDM_CLIENT_UNAUTHORIZED;
    }
    return SDM_CLIENT_OK;
}
