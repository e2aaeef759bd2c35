/* fuzz_reply.c - libFuzzer target for the client's side of the wire (service/client.c): reply
 * parsing, the per-op reply checks, the accessors and JSON, envelopes, signed checkpoints and
 * the RFC 9162 verifiers, with the client's promises checked on every input.
 *
 * The first byte picks what the rest of the input is (mode = byte % 8):
 *   0 a reply: sdm_reply_parse, every accessor and view on it, the checks of all 13 ops, the
 *     proof hashes, and the envelope it carries opened;
 *   1 an envelope: sdm_client_open_envelope;
 *   2 an envelope body, signed here with a fixed key before it is opened, so that the body
 *     reader runs behind a signature that holds;
 *   3 a signed note and the key to check it with: [origin length][origin][key 32][note];
 *   4 a checkpoint text, signed here under its first line as the key name: [flags][text];
 *   5 a verifier key string, checked against a note signed here;
 *   6 an inclusion or consistency proof with every part from the input;
 *   7 a Merkle tree built from the input, with its real proofs and their tampered copies.
 *
 * Besides the sanitizers' findings, an input is a finding (abort, naming the line) when the
 * client breaks a promise. Everything the client decides is compared with an independent
 * reading of the same bytes written here from client.h, docs/protocol.md and docs/ledger.md
 * (msgpack-c's tree for replies, a plain checkpoint reader for notes, RFC 9162's recursive
 * definitions for proofs):
 *   - a reply parses exactly when it is a map with string keys and well-formed
 *     models/result/queries; every getter agrees with the bytes; models and queries views
 *     point at what the getters give; the JSON is valid UTF-8 JSON; the envelope is exactly
 *     the bytes of the `receipt`/`proof`/`entry` array;
 *   - each op's check passes exactly when the reply has the fields client.h promises, with
 *     their types, and then the getters give them; an error reply maps to its code;
 *   - an envelope opens exactly when it is well-formed and its Ed25519 signature holds;
 *   - a checkpoint verifies exactly when the note is signed by the key and the text is a
 *     well-formed checkpoint of that origin, and then gives its size and root;
 *   - a proof verifies exactly when the RFC's recursion rebuilds the roots from it, a real
 *     proof always verifies, and a real proof with one byte changed never does.
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>

#include "client_internal.h"
#include "merkle.h"
#include "note.h"
#include "sediment/client.h"
#include "sign.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(int line, const char *what)
{
    fprintf(stderr, "fuzz_reply.c:%d: broken promise: %s\n", line, what);
    abort();
}

#define require(ok) ((ok) ? (void)0 : fail(__LINE__, #ok))

#define ENV_TAG "sediment-signed-v1"
#define FIXED_ORIGIN "fuzz.example/log"
#define OTHER_ORIGIN "other.example/log"
#define MAX_HASHES 64

/* ---- fixed keys ------------------------------------------------------------------------- */

static sdm_keypair *fixed_key(int which)
{
    static sdm_keypair kp[2];
    static uint8_t sk[2][64];
    static int ready;
    if (!ready) {
        require(sdm_sodium_init() == 0);
        for (int i = 0; i < 2; i++) {
            uint8_t seed[32];
            memset(seed, 0x11 * (i + 1), sizeof(seed));
            crypto_sign_seed_keypair(kp[i].pk, sk[i], seed);
            kp[i].sk = sk[i];
        }
        ready = 1;
    }
    return &kp[which];
}

/* ---- reading the input -------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *p;
    size_t n;
} cursor;

static uint8_t take_u8(cursor *c)
{
    if (!c->n)
        return 0;
    c->n--;
    return *c->p++;
}

/* LEB128, up to 64 bits; missing bytes read as 0 */
static uint64_t take_varint(cursor *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && c->n; shift += 7) {
        uint8_t b = take_u8(c);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

/* 32 bytes, zero-padded when the input runs out */
static void take_hash(cursor *c, uint8_t out[32])
{
    size_t n = c->n < 32 ? c->n : 32;
    memset(out, 0, 32);
    memcpy(out, c->p, n);
    c->p += n;
    c->n -= n;
}

/* memcmp and memchr that take (NULL, 0), as msgpack-c gives an empty str or bin */
static int same(const void *a, const void *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

static int has_byte(const void *p, int c, size_t n)
{
    return n != 0 && memchr(p, c, n) != NULL;
}

/* ---- an independent reading of msgpack objects ---------------------------------------------- */

static int m_key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, key, n) == 0;
}

/* The value of key in map m (the last one when repeated, as the client reads it), or NULL. */
static const msgpack_object *m_get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    const msgpack_object *found = NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (m_key_is(&m->via.map.ptr[i].key, key))
            found = &m->via.map.ptr[i].val;
    return found;
}

static int m_is_str(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_STR && !has_byte(o->via.str.ptr, 0, o->via.str.size);
}

static int m_is_bin(const msgpack_object *o, size_t n)
{
    return o && o->type == MSGPACK_OBJECT_BIN && (n == 0 || o->via.bin.size == n);
}

static int m_is_uint(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

static int m_is_num(const msgpack_object *o)
{
    return o && (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                 o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->type == MSGPACK_OBJECT_FLOAT32 ||
                 o->type == MSGPACK_OBJECT_FLOAT64);
}

static int m_is_array(const msgpack_object *o, int64_t n)
{
    return o && o->type == MSGPACK_OBJECT_ARRAY && (n < 0 || o->via.array.size == (uint64_t)n);
}

static double m_num(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER   ? (double)o->via.u64
           : o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (double)o->via.i64
                                                        : o->via.f64;
}

static int m_keys_are_str(const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!m_keys_are_str(&o->via.array.ptr[i]))
                return 0;
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR ||
                !m_keys_are_str(&o->via.map.ptr[i].val))
                return 0;
    }
    return 1;
}

static int m_equal(const msgpack_object *a, const msgpack_object *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case MSGPACK_OBJECT_NIL:
        return 1;
    case MSGPACK_OBJECT_BOOLEAN:
        return a->via.boolean == b->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return a->via.u64 == b->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return a->via.i64 == b->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return memcmp(&a->via.f64, &b->via.f64, sizeof(double)) == 0;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return a->via.str.size == b->via.str.size &&
               (a->via.str.size == 0 ||
                memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0);
    case MSGPACK_OBJECT_EXT:
        return a->via.ext.type == b->via.ext.type && a->via.ext.size == b->via.ext.size &&
               (a->via.ext.size == 0 ||
                memcmp(a->via.ext.ptr, b->via.ext.ptr, a->via.ext.size) == 0);
    case MSGPACK_OBJECT_ARRAY:
        if (a->via.array.size != b->via.array.size)
            return 0;
        for (uint32_t i = 0; i < a->via.array.size; i++)
            if (!m_equal(&a->via.array.ptr[i], &b->via.array.ptr[i]))
                return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (a->via.map.size != b->via.map.size)
            return 0;
        for (uint32_t i = 0; i < a->via.map.size; i++)
            if (!m_equal(&a->via.map.ptr[i].key, &b->via.map.ptr[i].key) ||
                !m_equal(&a->via.map.ptr[i].val, &b->via.map.ptr[i].val))
                return 0;
        return 1;
    }
    return 0;
}

/* ---- what sdm_reply_parse must accept (client.h) ------------------------------------------ */

static int m_models_ok(const msgpack_object *arr)
{
    if (!m_is_array(arr, -1))
        return 0;
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *m = &arr->via.array.ptr[i], *proj = m_get(m, "projection");
        const msgpack_object *s = m_get(proj, "s");
        if (!m_is_str(m_get(m, "model")) || !m_is_uint(m_get(m, "input_dim")) || !proj ||
            proj->type != MSGPACK_OBJECT_MAP || !m_is_str(m_get(proj, "kind")) ||
            !m_is_uint(m_get(proj, "dim")) || !m_is_uint(m_get(proj, "seed")) ||
            (s && !m_is_uint(s)) || !m_is_uint(m_get(m, "store_size")) ||
            !m_is_bin(m_get(m, "store_root"), 32))
            return 0;
    }
    return 1;
}

/* [[shard, contributor, score, share]], [[contributor, score, share]] or
 * [[example_id, shard, score]] */
static int m_rows_ok(const msgpack_object *a, int kind)
{
    if (!m_is_array(a, -1))
        return 0;
    for (uint32_t j = 0; j < a->via.array.size; j++) {
        const msgpack_object *e = &a->via.array.ptr[j];
        const msgpack_object *f = e->via.array.ptr;
        int good = kind == 0 ? m_is_array(e, 4) && m_is_str(&f[0]) && m_is_str(&f[1]) &&
                                   m_is_num(&f[2]) && m_is_num(&f[3])
                   : kind == 1
                       ? m_is_array(e, 3) && m_is_str(&f[0]) && m_is_num(&f[1]) && m_is_num(&f[2])
                       : m_is_array(e, 3) && m_is_uint(&f[0]) && m_is_str(&f[1]) && m_is_num(&f[2]);
        if (!good)
            return 0;
    }
    return 1;
}

static int m_queries_ok(const msgpack_object *arr)
{
    if (!m_is_array(arr, -1))
        return 0;
    for (uint32_t q = 0; q < arr->via.array.size; q++) {
        const msgpack_object *qv = &arr->via.array.ptr[q], *id = m_get(qv, "id");
        if (qv->type != MSGPACK_OBJECT_MAP || !(m_is_uint(id) || m_is_str(id)) ||
            !m_rows_ok(m_get(qv, "shards"), 0) || !m_rows_ok(m_get(qv, "contributors"), 1) ||
            !m_rows_ok(m_get(qv, "top"), 2) || !m_rows_ok(m_get(qv, "bottom"), 2))
            return 0;
    }
    return 1;
}

/* The key of the typed query view: `result`, or `queries` when there is no `result`. */
static const char *queries_key(const msgpack_object *root)
{
    return m_get(root, "result") ? "result" : m_get(root, "queries") ? "queries" : NULL;
}

static int m_reply_ok(const msgpack_object *root)
{
    const msgpack_object *models = m_get(root, "models");
    const char *qk = queries_key(root);
    return root->type == MSGPACK_OBJECT_MAP && m_keys_are_str(root) &&
           (!models || m_models_ok(models)) && (!qk || m_queries_ok(m_get(root, qk)));
}

/* ---- JSON: a validator ------------------------------------------------------------------- */

static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

static int utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

static void js_ws(const char **p)
{
    while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r')
        (*p)++;
}

static int js_value(const char **p, int depth);

static int js_string(const char **p)
{
    if (**p != '"')
        return 0;
    (*p)++;
    for (;;) {
        unsigned char c = (unsigned char)**p;
        if (c == '"') {
            (*p)++;
            return 1;
        }
        if (c < 0x20)
            return 0; /* the end of the text, or a raw control character */
        if (c == '\\') {
            (*p)++;
            char e = **p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", (*p)[i]) || !(*p)[i])
                        return 0;
                *p += 5;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                (*p)++;
            } else {
                return 0;
            }
            continue;
        }
        size_t l = utf8_seq((const unsigned char *)*p, strlen(*p));
        if (!l)
            return 0;
        *p += l;
    }
}

static int js_digits(const char **p)
{
    const char *s = *p;
    while (**p >= '0' && **p <= '9')
        (*p)++;
    return *p > s;
}

static int js_number(const char **p)
{
    if (**p == '-')
        (*p)++;
    if (**p == '0')
        (*p)++;
    else if (!(**p >= '1' && **p <= '9') || !js_digits(p))
        return 0;
    if (**p == '.') {
        (*p)++;
        if (!js_digits(p))
            return 0;
    }
    if (**p == 'e' || **p == 'E') {
        (*p)++;
        if (**p == '+' || **p == '-')
            (*p)++;
        if (!js_digits(p))
            return 0;
    }
    return 1;
}

static int js_value(const char **p, int depth)
{
    if (depth > 64)
        return 0;
    js_ws(p);
    char c = **p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        (*p)++;
        js_ws(p);
        if (**p == close) {
            (*p)++;
            return 1;
        }
        for (;;) {
            if (c == '{') {
                js_ws(p);
                if (!js_string(p))
                    return 0;
                js_ws(p);
                if (**p != ':')
                    return 0;
                (*p)++;
            }
            if (!js_value(p, depth + 1))
                return 0;
            js_ws(p);
            if (**p == ',') {
                (*p)++;
                continue;
            }
            if (**p != close)
                return 0;
            (*p)++;
            return 1;
        }
    }
    if (c == '"')
        return js_string(p);
    if (c == '-' || (c >= '0' && c <= '9'))
        return js_number(p);
    static const char *const words[3] = {"null", "true", "false"};
    for (int i = 0; i < 3; i++)
        if (strncmp(*p, words[i], strlen(words[i])) == 0) {
            *p += strlen(words[i]);
            return 1;
        }
    return 0;
}

static int json_ok(const char *s)
{
    const char *p = s;
    if (*p != '{' || !js_value(&p, 0))
        return 0;
    js_ws(&p);
    return *p == '\0';
}

/* ---- the reply tree against the bytes ---------------------------------------------------------
 */

/* Compares what every getter says at path with the object there. budget bounds the work. */
static void check_tree(const sdm_reply_t *r, const char *path, const msgpack_object *o, int depth,
                       int *budget)
{
    if (--*budget < 0)
        return;
    uint64_t u = 0;
    int64_t i64 = 0;
    double f = 0;
    int b = 0;
    size_t blen = 0;
    require(sdm_reply_has(r, path));
    int got_u = sdm_reply_u64(r, path, &u) == 0, got_i = sdm_reply_i64(r, path, &i64) == 0;
    int got_f = sdm_reply_f64(r, path, &f) == 0, got_b = sdm_reply_bool(r, path, &b) == 0;
    const char *s = sdm_reply_str(r, path);
    const uint8_t *bin = sdm_reply_bin(r, path, &blen);
    int64_t count = sdm_reply_count(r, path);
    require(got_u == (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER));
    require(!got_u || u == o->via.u64);
    require(got_i == (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
                      (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)));
    require(!got_i || (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? i64 == o->via.i64
                                                                  : (uint64_t)i64 == o->via.u64));
    require(got_f == m_is_num(o));
    require(!got_f || memcmp(&f, &(double){m_num(o)}, sizeof(f)) == 0 ||
            (isnan(f) && isnan(m_num(o))));
    require(got_b == (o->type == MSGPACK_OBJECT_BOOLEAN));
    require(!got_b || b == (int)o->via.boolean);
    require((s != NULL) == m_is_str(o));
    require(!s || (strlen(s) == o->via.str.size && same(s, o->via.str.ptr, o->via.str.size)));
    require((bin != NULL) == (o->type == MSGPACK_OBJECT_BIN));
    require(!bin || (blen == o->via.bin.size && same(bin, o->via.bin.ptr, blen)));
    require((count >= 0) == (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP));
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        require(count == (int64_t)o->via.array.size);
        require(sdm_reply_key(r, path, 0) == NULL);
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        require(count == (int64_t)o->via.map.size);
        require(sdm_reply_key(r, path, o->via.map.size) == NULL);
    }
    if (depth >= 12 || count <= 0 || count > 64)
        return;
    char sub[512];
    size_t plen = path ? strlen(path) : 0;
    for (uint32_t i = 0; i < (uint32_t)count; i++) {
        if (*budget <= 0)
            return;
        const msgpack_object *item;
        if (o->type == MSGPACK_OBJECT_ARRAY) {
            item = &o->via.array.ptr[i];
            if (plen + 24 > sizeof(sub))
                return;
            snprintf(sub, sizeof(sub), "%s%s%u", path ? path : "", plen ? "." : "", i);
        } else {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            const char *key = sdm_reply_key(r, path, i);
            require(key && strlen(key) <= k->via.str.size &&
                    same(key, k->via.str.ptr, k->via.str.size));
            item = &o->via.map.ptr[i].val;
            /* only keys a path can name, and of repeated keys the last, which getters read */
            size_t klen = k->via.str.size;
            if (klen == 0 || has_byte(k->via.str.ptr, '.', klen) ||
                has_byte(k->via.str.ptr, 0, klen) || plen + klen + 2 > sizeof(sub))
                continue;
            int later = 0;
            for (uint32_t j = i + 1; j < o->via.map.size && !later; j++)
                later = m_equal(k, &o->via.map.ptr[j].key);
            if (later)
                continue;
            snprintf(sub, sizeof(sub), "%s%s%.*s", path ? path : "", plen ? "." : "", (int)klen,
                     k->via.str.ptr);
        }
        check_tree(r, sub, item, depth + 1, budget);
    }
}

static const char *model_path(char *out, size_t cap, size_t i, const char *field)
{
    snprintf(out, cap, "models.%zu.%s", i, field);
    return out;
}

/* The typed views of models and queries point at the fields the getters give. */
static void check_views(const sdm_reply_t *r, const msgpack_object *root)
{
    char p[160];
    const msgpack_object *models = m_get(root, "models");
    size_t nm = models ? models->via.array.size : 0;
    require(sdm_reply_n_models(r) == nm);
    require(sdm_reply_model(r, nm) == NULL);
    for (size_t i = 0; i < nm && i < 64; i++) {
        const sdm_model_info *m = sdm_reply_model(r, i);
        uint64_t u;
        size_t l;
        require(m != NULL);
        require(m->model && m->model == sdm_reply_str(r, model_path(p, sizeof(p), i, "model")));
        require(m->kind &&
                m->kind == sdm_reply_str(r, model_path(p, sizeof(p), i, "projection.kind")));
        require(sdm_reply_u64(r, model_path(p, sizeof(p), i, "input_dim"), &u) == 0 &&
                u == m->input_dim);
        require(sdm_reply_u64(r, model_path(p, sizeof(p), i, "projection.dim"), &u) == 0 &&
                u == m->dim);
        require(sdm_reply_u64(r, model_path(p, sizeof(p), i, "projection.seed"), &u) == 0 &&
                u == m->seed);
        require(sdm_reply_has(r, model_path(p, sizeof(p), i, "projection.s"))
                    ? sdm_reply_u64(r, model_path(p, sizeof(p), i, "projection.s"), &u) == 0 &&
                          u == m->s
                    : m->s == 0);
        require(sdm_reply_u64(r, model_path(p, sizeof(p), i, "store_size"), &u) == 0 &&
                u == m->store_size);
        require(m->store_root &&
                m->store_root == sdm_reply_bin(r, model_path(p, sizeof(p), i, "store_root"), &l) &&
                l == 32);
    }

    const char *qk = queries_key(root);
    size_t nq = qk ? m_get(root, qk)->via.array.size : 0;
    require(sdm_reply_n_queries(r) == nq);
    require(sdm_reply_query(r, nq) == NULL);
    for (size_t q = 0; q < nq && q < 64; q++) {
        const sdm_query_result *qr = sdm_reply_query(r, q);
        require(qr != NULL && qr->id != NULL);
        char base[64];
        snprintf(base, sizeof(base), "%s.%zu", qk, q);
        uint64_t u;
        double d;
        snprintf(p, sizeof(p), "%s.id", base);
        if (sdm_reply_u64(r, p, &u) == 0) {
            char dec[24];
            snprintf(dec, sizeof(dec), "%llu", (unsigned long long)u);
            require(strcmp(qr->id, dec) == 0);
        } else {
            require(qr->id == sdm_reply_str(r, p));
        }
        static const char *const lists[4] = {"shards", "contributors", "top", "bottom"};
        size_t counts[4] = {qr->n_shards, qr->n_contributors, qr->n_top, qr->n_bottom};
        for (int l = 0; l < 4; l++) {
            snprintf(p, sizeof(p), "%s.%s", base, lists[l]);
            require(sdm_reply_count(r, p) == (int64_t)counts[l]);
            for (size_t j = 0; j < counts[l] && j < 64; j++) {
                char e[200];
                if (l < 2) {
                    const sdm_score_entry *se = l == 0 ? &qr->shards[j] : &qr->contributors[j];
                    size_t c = l == 0 ? 1 : 0;
                    if (l == 0) {
                        snprintf(e, sizeof(e), "%s.%zu.0", p, j);
                        require(se->shard && se->shard == sdm_reply_str(r, e));
                    } else {
                        require(se->shard == NULL);
                    }
                    snprintf(e, sizeof(e), "%s.%zu.%zu", p, j, c);
                    require(se->contributor && se->contributor == sdm_reply_str(r, e));
                    snprintf(e, sizeof(e), "%s.%zu.%zu", p, j, c + 1);
                    require(sdm_reply_f64(r, e, &d) == 0 && memcmp(&d, &se->score, sizeof(d)) == 0);
                    snprintf(e, sizeof(e), "%s.%zu.%zu", p, j, c + 2);
                    require(sdm_reply_f64(r, e, &d) == 0 && memcmp(&d, &se->share, sizeof(d)) == 0);
                } else {
                    const sdm_hit_entry *he = l == 2 ? &qr->top[j] : &qr->bottom[j];
                    snprintf(e, sizeof(e), "%s.%zu.0", p, j);
                    require(sdm_reply_u64(r, e, &u) == 0 && u == he->example_id);
                    snprintf(e, sizeof(e), "%s.%zu.1", p, j);
                    require(he->shard && he->shard == sdm_reply_str(r, e));
                    snprintf(e, sizeof(e), "%s.%zu.2", p, j);
                    require(sdm_reply_f64(r, e, &d) == 0 && memcmp(&d, &he->score, sizeof(d)) == 0);
                }
            }
        }
    }
}

/* ---- envelopes ------------------------------------------------------------------------------ */

/* Opens env with the client and checks the verdict against a reading of SPEC §4. */
static void check_envelope(const uint8_t *env, size_t len)
{
    sdm_reply_t *body = NULL;
    uint8_t key[32];
    char err[256] = "";
    sdm_client_status st = sdm_client_open_envelope(env, len, &body, key, err, sizeof(err));

    /* well-formed: one array of [str tag, bin body, bin key(32), bin sig(64)], body a map */
    int formed = 0, signed_ok = 0, body_ok = 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (len && sdm_wire_precheck(env, len, NULL, NULL) == SDM_WIRE_OK &&
        msgpack_unpack_next(&up, (const char *)env, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        off == len && m_is_array(&up.data, 4)) {
        const msgpack_object *it = up.data.via.array.ptr;
        size_t tl = strlen(ENV_TAG);
        const uint8_t *b = (const uint8_t *)it[1].via.bin.ptr;
        size_t bl = it[1].via.bin.size;
        if (it[0].type == MSGPACK_OBJECT_STR && it[0].via.str.size == tl &&
            memcmp(it[0].via.str.ptr, ENV_TAG, tl) == 0 && m_is_bin(&it[1], 0) &&
            m_is_bin(&it[2], 32) && m_is_bin(&it[3], 64) && bl &&
            sdm_wire_precheck(b, bl, NULL, NULL) == SDM_WIRE_OK &&
            ((b[0] & 0xf0) == 0x80 || b[0] == 0xde || b[0] == 0xdf)) {
            formed = 1;
            uint8_t *msg = malloc(tl + 1 + bl);
            require(msg != NULL);
            memcpy(msg, ENV_TAG "\n", tl + 1);
            memcpy(msg + tl + 1, b, bl);
            signed_ok =
                crypto_sign_verify_detached((const uint8_t *)it[3].via.bin.ptr, msg, tl + 1 + bl,
                                            (const uint8_t *)it[2].via.bin.ptr) == 0;
            free(msg);
            sdm_reply_t *plain = sdm_reply_parse(b, bl, NULL, 0);
            body_ok = plain != NULL;
            sdm_reply_destroy(&plain);
            if (st == SDM_CLIENT_OK)
                require(memcmp(key, it[2].via.bin.ptr, 32) == 0);
        }
    }
    require(st == (!formed      ? SDM_CLIENT_BAD_REPLY
                   : !signed_ok ? SDM_CLIENT_UNAUTHORIZED
                   : body_ok    ? SDM_CLIENT_OK
                                : SDM_CLIENT_BAD_REPLY));
    require((body != NULL) == (st == SDM_CLIENT_OK));
    require(st == SDM_CLIENT_OK || err[0] != '\0');
    if (body) {
        /* the body the client hands out is the one that was signed */
        const msgpack_object *it = up.data.via.array.ptr;
        msgpack_unpacked bu;
        msgpack_unpacked_init(&bu);
        require(msgpack_unpack_next(&bu, it[1].via.bin.ptr, it[1].via.bin.size, NULL) ==
                MSGPACK_UNPACK_SUCCESS);
        int budget = 2000;
        check_tree(body, NULL, &bu.data, 0, &budget);
        check_views(body, &bu.data);
        msgpack_unpacked_destroy(&bu);
    }
    sdm_reply_destroy(&body);
    msgpack_unpacked_destroy(&up);
}

/* ---- the per-op reply checks ------------------------------------------------------------------
 */

typedef enum field_kind {
    F_STR,
    F_BIN32,
    F_UINT,
    F_BOOL,
    F_ARRAY,
    F_ENV,     /* a signed envelope: an array whose exact bytes sdm_reply_envelope gives */
    F_HASHES,  /* at most 64 bin 32 */
    F_WORKERS, /* nil, or an array of bin 32 */
    F_STR_OR_NIL,
    F_ENTRIES,     /* history rows */
    F_ALLOCATIONS, /* [[contributor, amount]] */
    F_FLAGGED,     /* [contributor] */
} field_kind;

typedef struct field {
    const char *name;
    field_kind kind;
} field;

/* What each op's reply promises, from client.h. */
static const struct op_spec {
    const char *op;
    field fields[6];
} s_ops[] = {
    {"info",
     {{"version", F_STR},
      {"backend", F_STR},
      {"device", F_STR},
      {"worker_key", F_BIN32},
      {"models", F_ARRAY}}},
    {"register", {{"created", F_BOOL}}},
    {"contribute",
     {{"batch", F_UINT},
      {"leaf", F_BIN32},
      {"store_size", F_UINT},
      {"store_root", F_BIN32},
      {"receipt", F_ENV}}},
    {"attribute", {{"proof", F_ENV}, {"result", F_ARRAY}}},
    {"stats", {{"requests", F_UINT}}},
    {"ledger_info",
     {{"version", F_STR},
      {"origin", F_STR},
      {"ledger_key", F_BIN32},
      {"size", F_UINT},
      {"workers", F_WORKERS}}},
    {"append",
     {{"index", F_UINT},
      {"leaf_hash", F_BIN32},
      {"size", F_UINT},
      {"checkpoint", F_STR_OR_NIL},
      {"duplicate", F_BOOL}}},
    {"checkpoint", {{"checkpoint", F_STR}}},
    {"entry", {{"entry", F_ENV}}},
    {"inclusion", {{"leaf_hash", F_BIN32}, {"hashes", F_HASHES}}},
    {"consistency", {{"hashes", F_HASHES}}},
    {"history", {{"entries", F_ENTRIES}}},
    {"rewards", {{"allocations", F_ALLOCATIONS}, {"flagged", F_FLAGGED}, {"unallocated", F_UINT}}},
};

static int m_nil_or_num(const msgpack_object *o)
{
    return o && (o->type == MSGPACK_OBJECT_NIL || m_is_num(o));
}

static int m_field_ok(const msgpack_object *v, field_kind kind)
{
    if (!v)
        return 0;
    switch (kind) {
    case F_STR:
        return m_is_str(v);
    case F_BIN32:
        return m_is_bin(v, 32);
    case F_UINT:
        return m_is_uint(v);
    case F_BOOL:
        return v->type == MSGPACK_OBJECT_BOOLEAN;
    case F_ARRAY:
    case F_ENV:
        return m_is_array(v, -1);
    case F_STR_OR_NIL:
        return v->type == MSGPACK_OBJECT_NIL || m_is_str(v);
    case F_HASHES:
    case F_WORKERS:
        if (kind == F_WORKERS && v->type == MSGPACK_OBJECT_NIL)
            return 1;
        if (!m_is_array(v, -1) || (kind == F_HASHES && v->via.array.size > MAX_HASHES))
            return 0;
        for (uint32_t i = 0; i < v->via.array.size; i++)
            if (!m_is_bin(&v->via.array.ptr[i], 32))
                return 0;
        return 1;
    case F_ENTRIES:
        if (!m_is_array(v, -1))
            return 0;
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *row = &v->via.array.ptr[i];
            if (row->type != MSGPACK_OBJECT_MAP || !m_is_uint(m_get(row, "index")) ||
                !m_is_uint(m_get(row, "issued_at")) || !m_is_str(m_get(row, "type")) ||
                !m_is_str(m_get(row, "model")) || !m_is_str(m_get(row, "shard")) ||
                !m_nil_or_num(m_get(row, "score")) || !m_nil_or_num(m_get(row, "share")))
                return 0;
        }
        return 1;
    case F_ALLOCATIONS:
        if (!m_is_array(v, -1))
            return 0;
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *row = &v->via.array.ptr[i];
            if (!m_is_array(row, 2) || !m_is_str(&row->via.array.ptr[0]) ||
                !m_is_uint(&row->via.array.ptr[1]))
                return 0;
        }
        return 1;
    case F_FLAGGED:
        if (!m_is_array(v, -1))
            return 0;
        for (uint32_t i = 0; i < v->via.array.size; i++)
            if (!m_is_str(&v->via.array.ptr[i]))
                return 0;
        return 1;
    }
    return 0;
}

/* The key of the envelope a reply carries (the first of receipt, proof and entry that holds
 * an array), or "". */
static const char *envelope_key(const msgpack_object *root)
{
    static const char *const keys[3] = {"receipt", "proof", "entry"};
    for (int k = 0; k < 3; k++)
        if (m_is_array(m_get(root, keys[k]), -1))
            return keys[k];
    return "";
}

static const char *const s_codes[8] = {"bad_request", "unknown_op",   "too_large", "not_found",
                                       "conflict",    "unauthorized", "busy",      "internal"};

/* What the check of op must say about the reply to request id (SPEC §6, client.h). */
static sdm_client_status expected_status(const struct op_spec *op, const msgpack_object *root,
                                         uint64_t id)
{
    const msgpack_object *rid = m_get(root, "id"), *ok = m_get(root, "ok");
    if (!m_is_uint(rid) || rid->via.u64 != id || !ok || ok->type != MSGPACK_OBJECT_BOOLEAN)
        return SDM_CLIENT_BAD_REPLY;
    if (!ok->via.boolean) {
        const msgpack_object *e = m_get(root, "error");
        const msgpack_object *code = m_get(e, "code"), *msg = m_get(e, "message");
        if (!m_is_str(code) || !m_is_str(msg))
            return SDM_CLIENT_BAD_REPLY;
        for (int i = 0; i < 8; i++)
            if (m_key_is(code, s_codes[i]))
                return (sdm_client_status)(SDM_CLIENT_BAD_REQUEST + i);
        return SDM_CLIENT_BAD_REPLY;
    }
    for (const field *f = op->fields; f < op->fields + 6 && f->name; f++) {
        if (!m_field_ok(m_get(root, f->name), f->kind))
            return SDM_CLIENT_BAD_REPLY;
        /* a reply carries one envelope, the first of receipt, proof, entry that is an array:
         * the op's own must be that one */
        if (f->kind == F_ENV && strcmp(envelope_key(root), f->name) != 0)
            return SDM_CLIENT_BAD_REPLY;
    }
    return SDM_CLIENT_OK;
}

/* After a passed check, the getters give every promised field with its type. */
static void check_promised(const sdm_reply_t *r, const struct op_spec *op,
                           const msgpack_object *root)
{
    int okv = 0;
    require(sdm_reply_bool(r, "ok", &okv) == 0 && okv == 1);
    for (const field *f = op->fields; f < op->fields + 6 && f->name; f++) {
        const msgpack_object *v = m_get(root, f->name);
        uint64_t u;
        int b;
        size_t l = 0;
        char p[96];
        switch (f->kind) {
        case F_STR:
            require(sdm_reply_str(r, f->name) != NULL);
            break;
        case F_BIN32:
            require(sdm_reply_bin(r, f->name, &l) != NULL && l == 32);
            break;
        case F_UINT:
            require(sdm_reply_u64(r, f->name, &u) == 0);
            break;
        case F_BOOL:
            require(sdm_reply_bool(r, f->name, &b) == 0);
            break;
        case F_ARRAY:
            require(sdm_reply_count(r, f->name) == (int64_t)v->via.array.size);
            break;
        case F_ENV: {
            const uint8_t *env = sdm_reply_envelope(r, &l);
            require(env != NULL && l >= 1);
            break;
        }
        case F_STR_OR_NIL:
            require(sdm_reply_str(r, f->name) != NULL || v->type == MSGPACK_OBJECT_NIL);
            break;
        case F_HASHES: {
            uint8_t(*h)[32] = malloc(MAX_HASHES * 32);
            size_t n = 0;
            require(h != NULL);
            require(sdm_reply_hashes(r, f->name, h, MAX_HASHES, &n) == 0);
            require(n == v->via.array.size);
            for (size_t i = 0; i < n; i++)
                require(memcmp(h[i], v->via.array.ptr[i].via.bin.ptr, 32) == 0);
            free(h);
            break;
        }
        case F_WORKERS:
            for (int64_t i = 0; i < sdm_reply_count(r, f->name) && i < 64; i++) {
                snprintf(p, sizeof(p), "workers.%lld", (long long)i);
                require(sdm_reply_bin(r, p, &l) != NULL && l == 32);
            }
            break;
        case F_ENTRIES:
            for (int64_t i = 0; i < sdm_reply_count(r, f->name) && i < 64; i++) {
                static const char *const strs[3] = {"type", "model", "shard"};
                static const char *const nums[2] = {"score", "share"};
                double d;
                snprintf(p, sizeof(p), "entries.%lld.index", (long long)i);
                require(sdm_reply_u64(r, p, &u) == 0);
                snprintf(p, sizeof(p), "entries.%lld.issued_at", (long long)i);
                require(sdm_reply_u64(r, p, &u) == 0);
                for (int k = 0; k < 3; k++) {
                    snprintf(p, sizeof(p), "entries.%lld.%s", (long long)i, strs[k]);
                    require(sdm_reply_str(r, p) != NULL);
                }
                for (int k = 0; k < 2; k++) {
                    snprintf(p, sizeof(p), "entries.%lld.%s", (long long)i, nums[k]);
                    require(sdm_reply_f64(r, p, &d) == 0 ||
                            m_get(&v->via.array.ptr[i], nums[k])->type == MSGPACK_OBJECT_NIL);
                }
            }
            break;
        case F_ALLOCATIONS:
            for (int64_t i = 0; i < sdm_reply_count(r, f->name) && i < 64; i++) {
                snprintf(p, sizeof(p), "allocations.%lld.0", (long long)i);
                require(sdm_reply_str(r, p) != NULL);
                snprintf(p, sizeof(p), "allocations.%lld.1", (long long)i);
                require(sdm_reply_u64(r, p, &u) == 0);
            }
            break;
        case F_FLAGGED:
            for (int64_t i = 0; i < sdm_reply_count(r, f->name) && i < 64; i++) {
                snprintf(p, sizeof(p), "flagged.%lld", (long long)i);
                require(sdm_reply_str(r, p) != NULL);
            }
            break;
        }
    }
}

/* The envelope a reply carries: the array of the first of receipt, proof and entry that
 * holds one, as its exact bytes. */
static void check_reply_envelope(const sdm_reply_t *r, const msgpack_object *root,
                                 const uint8_t *data, size_t size)
{
    const char *key = envelope_key(root);
    const msgpack_object *want = key[0] ? m_get(root, key) : NULL;
    size_t len = 0;
    const uint8_t *env = sdm_reply_envelope(r, &len);
    require((env != NULL) == (want != NULL));
    if (!env)
        return;
    require(len >= 1 && len <= size);
    require(memmem(data, size, env, len) != NULL);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    require(msgpack_unpack_next(&up, (const char *)env, len, &off) == MSGPACK_UNPACK_SUCCESS);
    require(off == len && m_equal(&up.data, want));
    msgpack_unpacked_destroy(&up);
    check_envelope(env, len);
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
    char err[256] = "";
    sdm_reply_t *r = sdm_reply_parse(data, size, err, sizeof(err));
    int pre_ok = size && sdm_wire_precheck(data, size, NULL, NULL) == SDM_WIRE_OK;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int unpacked = pre_ok && msgpack_unpack_next(&up, (const char *)data, size, &off) ==
                                 MSGPACK_UNPACK_SUCCESS;
    /* the pre-check promises that msgpack-c reads exactly one object from what it passes */
    require(!pre_ok || (unpacked && off == size));
    require((r != NULL) == (unpacked && m_reply_ok(&up.data)));
    require(r || err[0] != '\0');
    if (r) {
        const msgpack_object *root = &up.data;
        int budget = 4000;
        check_tree(r, NULL, root, 0, &budget);
        check_views(r, root);
        char *json = sdm_reply_json(r);
        require(json != NULL && json_ok(json));
        free(json);
        check_reply_envelope(r, root, data, size);

        const msgpack_object *rid = m_get(root, "id");
        uint64_t id = m_is_uint(rid) ? rid->via.u64 : 1;
        for (size_t i = 0; i < sizeof(s_ops) / sizeof(s_ops[0]); i++) {
            const struct op_spec *op = &s_ops[i];
            sdm_client_status st = sdm_client_check_reply(op->op, r, id, err, sizeof(err));
            require(st == expected_status(op, root, id));
            /* an error reply carries the server's message, which may be empty */
            require(st == SDM_CLIENT_OK ? err[0] == '\0'
                                        : sdm_client_status_is_server(st) || err[0] != '\0');
            if (st == SDM_CLIENT_OK)
                check_promised(r, op, root);
            /* a reply to another request is never taken */
            require(sdm_client_check_reply(op->op, r, id + 1, err, sizeof(err)) ==
                    SDM_CLIENT_BAD_REPLY);
        }
        require(sdm_client_check_reply("nope", r, id, err, sizeof(err)) == SDM_CLIENT_BAD_ARGUMENT);

        /* the proof hashes, with room for all of them and for one */
        uint8_t h[MAX_HASHES][32];
        size_t n = 0;
        const msgpack_object *hv = m_get(root, "hashes");
        int good = m_field_ok(hv, F_HASHES);
        require((sdm_reply_hashes(r, "hashes", h, MAX_HASHES, &n) == 0) == good);
        require(!good || n == hv->via.array.size);
        require((sdm_reply_hashes(r, "hashes", h, 1, &n) == 0) ==
                (good && hv->via.array.size <= 1));
    }
    sdm_reply_destroy(&r);
    require(r == NULL);
    sdm_reply_destroy(&r);
    msgpack_unpacked_destroy(&up);
}

/* A body signed here, so that the client reads it behind a signature that holds; then the
 * same envelope with one byte of its signature or its body changed never opens. */
static void fuzz_sealed(const uint8_t *data, size_t size)
{
    uint8_t *env = NULL;
    size_t len = 0;
    require(sdm_envelope_sign(fixed_key(0), data, size, &env, &len) == 0);
    check_envelope(env, len);
    sdm_reply_t *body = NULL;
    uint8_t key[32];
    if (sdm_client_open_envelope(env, len, &body, key, NULL, 0) == SDM_CLIENT_OK) {
        require(memcmp(key, fixed_key(0)->pk, 32) == 0);
        sdm_reply_destroy(&body);
        env[len - 1] ^= 0x01; /* the signature ends the envelope */
        require(sdm_client_open_envelope(env, len, &body, key, NULL, 0) == SDM_CLIENT_UNAUTHORIZED);
        env[len - 1] ^= 0x01;
        /* the body's last byte: 32 + 64 bytes of key and signature and their two heads
         * follow it */
        env[len - 1 - (64 + 2) - (32 + 2)] ^= 0x01;
        require(sdm_client_open_envelope(env, len, &body, key, NULL, 0) != SDM_CLIENT_OK);
        require(body == NULL);
    }
    free(env);
}

/* ---- checkpoints ------------------------------------------------------------------------------
 */

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* The canonical padded base64 of exactly 32 bytes: 43 characters, the last with its two low
 * bits clear, and one '='. */
static int b64_root(const char *s, size_t n, uint8_t out[32])
{
    if (n != 44 || s[43] != '=')
        return 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < 43; i++) {
        int v = b64_val(s[i]);
        if (v < 0)
            return 0;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < 32)
                out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o == 32 && bits == 2 && acc == 0;
}

/* A checkpoint text (C2SP tlog-checkpoint) of origin: "<origin>\n<size>\n<root>\n" and any
 * non-empty extension lines, read here without note.c. 1 with size and root, or 0. */
static int checkpoint_text(const char *t, size_t n, const char *origin, uint64_t *size,
                           uint8_t root[32])
{
    if (n == 0 || t[n - 1] != '\n' || memchr(t, 0, n))
        return 0;
    size_t pos = 0, line = 0;
    while (pos < n) {
        const char *s = t + pos;
        size_t l = (size_t)((const char *)memchr(s, '\n', n - pos) - s);
        pos += l + 1;
        if (l == 0)
            return 0; /* the origin, the size and extension lines are never empty */
        if (line == 0 && (l != strlen(origin) || memcmp(s, origin, l) != 0))
            return 0;
        if (line == 1) {
            if (l > 1 && s[0] == '0')
                return 0;
            uint64_t v = 0;
            for (size_t i = 0; i < l; i++) {
                if (s[i] < '0' || s[i] > '9')
                    return 0;
                uint64_t d = (uint64_t)(s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                    return 0;
                v = v * 10 + d;
            }
            *size = v;
        }
        if (line == 2 && !b64_root(s, l, root))
            return 0;
        line++;
    }
    return line >= 3;
}

/* Whether s[0..n) are signature lines "— <name> <base64>\n", every one of them: a note is
 * only good when all its lines are, whoever signed them. */
static int signature_lines(const char *s, size_t n)
{
    static const char dash[] = "\xe2\x80\x94 ";
    size_t pos = 0;
    if (n == 0)
        return 0;
    while (pos < n) {
        const char *line = s + pos;
        const char *nl = memchr(line, '\n', n - pos);
        if (!nl)
            return 0;
        size_t l = (size_t)(nl - line);
        pos += l + 1;
        if (l < 4 || memcmp(line, dash, 4) != 0)
            return 0;
        const char *sp = memchr(line + 4, ' ', l - 4);
        if (!sp || sp == line + 4 || sp + 1 == nl)
            return 0;
        for (const char *c = line + 4; c < sp; c++)
            if ((unsigned char)*c <= 0x20 || *c == '+' || *c == 0x7f)
                return 0;
        for (const char *c = sp + 1; c < nl; c++)
            if (b64_val(*c) < 0 && *c != '=')
                return 0;
    }
    return 1;
}

/* Both ways of giving the key must agree; returns the verdict. */
static sdm_client_status verify_both(const char *note, size_t len, const char *origin,
                                     const uint8_t key[32], sdm_ledger_checkpoint *cp)
{
    char err[256] = "", err2[256] = "";
    sdm_ledger_checkpoint cp2;
    sdm_client_status st =
        sdm_client_checkpoint_verify_key(note, len, origin, key, cp, err, sizeof(err));
    require(st == SDM_CLIENT_OK || st == SDM_CLIENT_BAD_ARGUMENT || st == SDM_CLIENT_BAD_REPLY ||
            st == SDM_CLIENT_UNAUTHORIZED);
    require(st == SDM_CLIENT_OK || err[0] != '\0');
    char *vkey = sdm_client_verifier_key(origin, key);
    require((vkey == NULL) == !sdm_note_name_valid(origin));
    if (!vkey) {
        require(st == SDM_CLIENT_BAD_ARGUMENT);
        return st;
    }
    sdm_client_status st2 = sdm_client_checkpoint_verify(note, len, vkey, &cp2, err2, sizeof(err2));
    free(vkey);
    require(st2 == st);
    if (st == SDM_CLIENT_OK) {
        require(strcmp(cp->origin, origin) == 0 && memcmp(cp->key, key, 32) == 0);
        require(memcmp(cp, &cp2, sizeof(cp2)) == 0);
    }
    return st;
}

/* [origin length][origin][key 32][note]: a note from anywhere, for any key. */
static void fuzz_note(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    size_t olen = take_u8(&c);
    if (olen > c.n)
        olen = c.n;
    char origin[256];
    memcpy(origin, c.p, olen);
    origin[olen] = '\0';
    c.p += olen, c.n -= olen;
    uint8_t key[32];
    take_hash(&c, key);
    char *note = malloc(c.n ? c.n : 1); /* exactly sized: ASan sees a read past the end */
    require(note != NULL);
    memcpy(note, c.p, c.n);
    sdm_ledger_checkpoint cp;
    if (verify_both(note, c.n, origin, key, &cp) == SDM_CLIENT_OK) {
        /* the text is everything before the last blank line, and a checkpoint of origin */
        size_t split = 0;
        for (size_t i = c.n - 1; i > 0 && !split; i--)
            if (note[i] == '\n' && note[i - 1] == '\n')
                split = i;
        uint64_t sz = 0;
        uint8_t root[32];
        require(split && checkpoint_text(note, split, origin, &sz, root));
        require(cp.size == sz && memcmp(cp.root, root, 32) == 0);
        require(signature_lines(note + split + 1, c.n - split - 1));
        /* and the signature covers it */
        note[0] ^= 0x01;
        require(verify_both(note, c.n, origin, key, &cp) != SDM_CLIENT_OK);
    }
    free(note);
}

/* [flags][text]: the text signed here under its first line as the key name (or a fixed name
 * when that is no key name), so that the checkpoint reader runs behind a good signature.
 * flags & 1: another key signs first; flags & 2: that other key signs alone. */
static void fuzz_signed_note(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    uint8_t flags = take_u8(&c);
    const char *text = (const char *)c.p;
    size_t tlen = c.n;
    char name[256] = FIXED_ORIGIN;
    const char *nl = memchr(text, '\n', tlen);
    size_t first = nl ? (size_t)(nl - text) : tlen;
    if (first >= 1 && first <= 255) {
        char cand[256];
        memcpy(cand, text, first);
        cand[first] = '\0';
        if (strlen(cand) == first && sdm_note_name_valid(cand))
            memcpy(name, cand, first + 1);
    }
    char *ours = NULL, *other = NULL;
    size_t ours_len = 0, other_len = 0;
    if (sdm_note_sign(fixed_key(0), name, text, tlen, &ours, &ours_len, NULL, 0) != SDM_NOTE_OK) {
        require(tlen == 0 || text[tlen - 1] != '\n' || memchr(text, 0, tlen));
        return;
    }
    require(sdm_note_sign(fixed_key(1), OTHER_ORIGIN, text, tlen, &other, &other_len, NULL, 0) ==
            SDM_NOTE_OK);
    /* a note is the text, a blank line and signature lines: splice them */
    size_t head = tlen + 1, note_len = ours_len;
    char *note = malloc(ours_len + other_len);
    require(note != NULL);
    if (flags & 2) {
        memcpy(note, other, other_len);
        note_len = other_len;
    } else if (flags & 1) {
        memcpy(note, ours, head);
        memcpy(note + head, other + head, other_len - head);
        memcpy(note + other_len, ours + head, ours_len - head);
        note_len = ours_len + other_len - head;
    } else {
        memcpy(note, ours, ours_len);
    }
    uint64_t sz = 0;
    uint8_t root[32];
    int good = !(flags & 2) && utf8_ok(text, tlen) && checkpoint_text(text, tlen, name, &sz, root);
    sdm_ledger_checkpoint cp;
    sdm_client_status st = verify_both(note, note_len, name, fixed_key(0)->pk, &cp);
    require((st == SDM_CLIENT_OK) == good);
    if (good) {
        require(cp.size == sz && memcmp(cp.root, root, 32) == 0);
        /* the same note under the other key's name, or with the other key, is not ours */
        if (strcmp(name, OTHER_ORIGIN) != 0)
            require(verify_both(note, note_len, OTHER_ORIGIN, fixed_key(0)->pk, &cp) !=
                    SDM_CLIENT_OK);
        require(verify_both(note, note_len, name, fixed_key(1)->pk, &cp) != SDM_CLIENT_OK);
        /* one changed byte of the text, or of our signature, undoes it */
        size_t at = (size_t)flags % tlen;
        note[at] ^= 0x20;
        require(verify_both(note, note_len, name, fixed_key(0)->pk, &cp) != SDM_CLIENT_OK);
        note[at] ^= 0x20;
        note[note_len - 3] ^= 0x01;
        require(verify_both(note, note_len, name, fixed_key(0)->pk, &cp) != SDM_CLIENT_OK);
    }
    free(note);
    free(ours);
    free(other);
}

/* A verifier key string against a note that the fixed key signed. */
static void fuzz_vkey(const uint8_t *data, size_t size)
{
    static char *note;
    static size_t note_len;
    static uint8_t root[32];
    if (!note) {
        char *text = NULL;
        for (int i = 0; i < 32; i++)
            root[i] = (uint8_t)(i * 7);
        require(sdm_checkpoint_format(FIXED_ORIGIN, 5, root, &text) == SDM_NOTE_OK);
        require(sdm_note_sign(fixed_key(0), FIXED_ORIGIN, text, strlen(text), &note, &note_len,
                              NULL, 0) == SDM_NOTE_OK);
        free(text);
    }
    char *vkey = malloc(size + 1);
    require(vkey != NULL);
    memcpy(vkey, data, size);
    vkey[size] = '\0';
    char err[256] = "";
    sdm_ledger_checkpoint cp;
    sdm_client_status st =
        sdm_client_checkpoint_verify(note, note_len, vkey, &cp, err, sizeof(err));
    require(st == SDM_CLIENT_OK || st == SDM_CLIENT_BAD_ARGUMENT || st == SDM_CLIENT_UNAUTHORIZED);
    require(st == SDM_CLIENT_OK || err[0] != '\0');
    char *mine = sdm_client_verifier_key(FIXED_ORIGIN, fixed_key(0)->pk);
    require(mine != NULL);
    if (strcmp(vkey, mine) == 0)
        require(st == SDM_CLIENT_OK);
    if (st == SDM_CLIENT_OK) {
        /* only the key that signed, under the note's origin, verifies it */
        require(strcmp(cp.origin, FIXED_ORIGIN) == 0);
        require(memcmp(cp.key, fixed_key(0)->pk, 32) == 0);
        require(cp.size == 5 && memcmp(cp.root, root, 32) == 0);
        require(strncmp(vkey, FIXED_ORIGIN "+", strlen(FIXED_ORIGIN) + 1) == 0);
    }
    if (st != SDM_CLIENT_BAD_ARGUMENT) {
        /* a key the parser took names a valid origin, 8 hex digits, and a key of 44 chars */
        const char *p1 = strchr(vkey, '+');
        const char *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
        require(p1 && p2 && p2 - p1 == 9 && strlen(p2 + 1) == 44);
        for (const char *k = p1 + 1; k < p2; k++)
            require(strchr("0123456789abcdefABCDEF", *k) != NULL);
        for (const char *k = p2 + 1; *k; k++)
            require(b64_val(*k) >= 0);
    }
    free(mine);
    free(vkey);
}

/* ---- Merkle proofs ----------------------------------------------------------------------------
 */

static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k; /* the largest power of two below n (n >= 2) */
}

/* RFC 9162 §2.1.3.1, read backwards: the root that path (its top sibling last) makes of
 * leaf at index in a tree of size leaves. 1, or 0 when the path has the wrong length. */
static int ref_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[32],
                         const uint8_t (*path)[32], size_t n, uint8_t out[32])
{
    if (size == 1) {
        memcpy(out, leaf, 32);
        return n == 0;
    }
    if (n == 0)
        return 0;
    uint64_t k = split_point(size);
    uint8_t sub[32];
    if (index < k) {
        if (!ref_inclusion(index, k, leaf, path, n - 1, sub))
            return 0;
        sdm_merkle_node_hash(sub, path[n - 1], out);
    } else {
        if (!ref_inclusion(index - k, size - k, leaf, path, n - 1, sub))
            return 0;
        sdm_merkle_node_hash(path[n - 1], sub, out);
    }
    return 1;
}

/* RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), read backwards: the old and new roots the path
 * makes, given the old root when b (it is then left out of the path). */
static int ref_subproof(uint64_t m, uint64_t n, int b, const uint8_t (*path)[32], size_t len,
                        const uint8_t old_root[32], uint8_t o[32], uint8_t nw[32])
{
    if (m == n) {
        if (b) {
            memcpy(o, old_root, 32);
            memcpy(nw, old_root, 32);
            return len == 0;
        }
        if (len != 1)
            return 0;
        memcpy(o, path[0], 32);
        memcpy(nw, path[0], 32);
        return 1;
    }
    if (len == 0)
        return 0;
    uint64_t k = split_point(n);
    const uint8_t *sib = path[len - 1];
    if (m <= k) {
        if (!ref_subproof(m, k, b, path, len - 1, old_root, o, nw))
            return 0;
        sdm_merkle_node_hash(nw, sib, nw);
    } else {
        if (!ref_subproof(m - k, n - k, 0, path, len - 1, old_root, o, nw))
            return 0;
        sdm_merkle_node_hash(sib, o, o);
        sdm_merkle_node_hash(sib, nw, nw);
    }
    return 1;
}

static int ref_consistency(uint64_t from, uint64_t to, const uint8_t old_root[32],
                           const uint8_t new_root[32], const uint8_t (*path)[32], size_t n)
{
    if (from > to || n > MAX_HASHES)
        return 0;
    if (from == 0) {
        uint8_t empty[32];
        crypto_hash_sha256(empty, (const uint8_t *)"", 0);
        return n == 0 && memcmp(old_root, empty, 32) == 0;
    }
    if (from == to)
        return n == 0 && memcmp(old_root, new_root, 32) == 0;
    uint8_t o[32], nw[32];
    return ref_subproof(from, to, 1, path, n, old_root, o, nw) && memcmp(o, old_root, 32) == 0 &&
           memcmp(nw, new_root, 32) == 0;
}

static sdm_client_status incl(const sdm_ledger_checkpoint *cp, uint64_t index, const uint8_t *env,
                              size_t env_len, const uint8_t (*path)[32], size_t n)
{
    char err[256] = "";
    sdm_client_status st =
        sdm_client_verify_inclusion(cp, index, env, env_len, path, n, err, sizeof(err));
    require(st == SDM_CLIENT_OK || err[0] != '\0');
    uint8_t leaf[32], root[32];
    sdm_client_leaf_hash(env, env_len, leaf);
    int ref = index < cp->size && n <= MAX_HASHES &&
              ref_inclusion(index, cp->size, leaf, path, n, root) &&
              memcmp(root, cp->root, 32) == 0;
    require(st == (index >= cp->size ? SDM_CLIENT_BAD_ARGUMENT
                   : ref             ? SDM_CLIENT_OK
                                     : SDM_CLIENT_UNAUTHORIZED));
    return st;
}

static sdm_client_status cons(const sdm_ledger_checkpoint *a, const sdm_ledger_checkpoint *b,
                              const uint8_t (*path)[32], size_t n)
{
    char err[256] = "";
    sdm_client_status st = sdm_client_verify_consistency(a, b, path, n, err, sizeof(err));
    require(st == SDM_CLIENT_OK || err[0] != '\0');
    int ref = strcmp(a->origin, b->origin) == 0 && memcmp(a->key, b->key, 32) == 0 &&
              ref_consistency(a->size, b->size, a->root, b->root, path, n);
    require(st == (ref ? SDM_CLIENT_OK : SDM_CLIENT_UNAUTHORIZED));
    return st;
}

/* Every part of the proof from the input. */
static void fuzz_proof(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    uint8_t flags = take_u8(&c);
    sdm_ledger_checkpoint a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    snprintf(a.origin, sizeof(a.origin), "%s", FIXED_ORIGIN);
    snprintf(b.origin, sizeof(b.origin), "%s", flags & 2 ? OTHER_ORIGIN : FIXED_ORIGIN);
    memcpy(a.key, fixed_key(0)->pk, 32);
    memcpy(b.key, fixed_key(flags & 4 ? 1 : 0)->pk, 32);
    /* small sizes are the interesting ones; flags & 8 lets them be anything */
    a.size = take_varint(&c);
    b.size = take_varint(&c);
    if (!(flags & 8)) {
        a.size %= 4096;
        b.size %= 4096;
    }
    take_hash(&c, a.root);
    take_hash(&c, b.root);
    size_t n = take_u8(&c);
    if (n > c.n / 32)
        n = c.n / 32;
    uint8_t(*path)[32] = malloc(n ? n * 32 : 1);
    require(path != NULL);
    for (size_t i = 0; i < n; i++)
        take_hash(&c, path[i]);
    if (flags & 1)
        (void)cons(&a, &b, (const uint8_t(*)[32])path, n);
    else
        (void)incl(&b, a.size, c.p, c.n, (const uint8_t(*)[32])path, n);
    free(path);
}

/* A tree of leaves cut from the input, its real proofs, and those proofs tampered with. */
static void fuzz_tree(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    uint64_t n_leaves = 1 + take_varint(&c) % 600;
    uint64_t sz = 1 + take_varint(&c) % n_leaves;
    uint64_t index = take_varint(&c) % sz;
    uint64_t from = take_varint(&c) % (sz + 1);
    uint8_t pick = take_u8(&c);
    /* leaf i is a slice of the rest (equal leaves happen), or its index when nothing is left */
    const uint8_t *rest = c.p;
    size_t rn = c.n;
    sdm_merkle_t *t = sdm_merkle_new();
    require(t != NULL);
    uint8_t buf[16];
    const uint8_t *leaf_data[600];
    size_t leaf_len[600];
    for (uint64_t i = 0; i < n_leaves; i++) {
        if (rn) {
            size_t at = (size_t)(i * 7 % rn);
            leaf_data[i] = rest + at;
            leaf_len[i] = (size_t)(i % 5) < rn - at ? (size_t)(i % 5) : rn - at;
        } else {
            leaf_data[i] = NULL;
            leaf_len[i] = 0;
        }
        uint8_t h[32];
        if (leaf_data[i])
            sdm_merkle_leaf_hash(leaf_data[i], leaf_len[i], h);
        else {
            memcpy(buf, &i, sizeof(i));
            sdm_merkle_leaf_hash(buf, sizeof(i), h);
        }
        require(sdm_merkle_append(t, h) == 0);
    }
    const uint8_t *env = leaf_data[index];
    size_t env_len = leaf_len[index];
    uint64_t idx_copy = index;
    if (!env) {
        memcpy(buf, &idx_copy, sizeof(idx_copy));
        env = buf;
        env_len = sizeof(idx_copy);
    }
    uint8_t path[MAX_HASHES + 1][32];
    size_t n = 0;
    sdm_ledger_checkpoint cp;
    memset(&cp, 0, sizeof(cp));
    snprintf(cp.origin, sizeof(cp.origin), "%s", FIXED_ORIGIN);
    memcpy(cp.key, fixed_key(0)->pk, 32);
    cp.size = sz;
    require(sdm_merkle_root(t, sz, cp.root) == 0);
    require(sdm_merkle_inclusion(t, index, sz, path, &n) == 0 && n <= MAX_HASHES);
    const uint8_t(*cpath)[32] = (const uint8_t(*)[32])path;
    /* the real proof holds */
    require(incl(&cp, index, env, env_len, cpath, n) == SDM_CLIENT_OK);
    /* one changed byte anywhere in it does not */
    if (n) {
        size_t j = pick % n;
        path[j][pick % 32] ^= 0x80;
        require(incl(&cp, index, env, env_len, cpath, n) == SDM_CLIENT_UNAUTHORIZED);
        path[j][pick % 32] ^= 0x80;
        require(incl(&cp, index, env, env_len, cpath, n - 1) == SDM_CLIENT_UNAUTHORIZED);
    }
    memcpy(path[n], cp.root, 32);
    require(incl(&cp, index, env, env_len, cpath, n + 1) == SDM_CLIENT_UNAUTHORIZED);
    cp.root[pick % 32] ^= 0x01;
    require(incl(&cp, index, env, env_len, cpath, n) == SDM_CLIENT_UNAUTHORIZED);
    cp.root[pick % 32] ^= 0x01;
    uint8_t *longer = malloc(env_len + 1);
    require(longer != NULL);
    memcpy(longer, env, env_len);
    longer[env_len] = pick;
    require(incl(&cp, index, longer, env_len + 1, cpath, n) == SDM_CLIENT_UNAUTHORIZED);
    free(longer);
    require(incl(&cp, sz, env, env_len, cpath, n) == SDM_CLIENT_BAD_ARGUMENT);
    /* another index with the same path: the reference decides (equal leaves may agree) */
    (void)incl(&cp, (index + 1 + pick) % sz, env, env_len, cpath, n);

    /* consistency of the first `from` leaves with the first sz */
    sdm_ledger_checkpoint old = cp;
    old.size = from;
    require(sdm_merkle_root(t, from, old.root) == 0);
    require(sdm_merkle_consistency(t, from, sz, path, &n) == 0 && n <= MAX_HASHES);
    require(cons(&old, &cp, cpath, n) == SDM_CLIENT_OK);
    if (n) {
        size_t j = pick % n;
        path[j][pick % 32] ^= 0x80;
        require(cons(&old, &cp, cpath, n) == SDM_CLIENT_UNAUTHORIZED);
        path[j][pick % 32] ^= 0x80;
        require(cons(&old, &cp, cpath, n - 1) == SDM_CLIENT_UNAUTHORIZED);
    }
    memcpy(path[n], cp.root, 32);
    require(cons(&old, &cp, cpath, n + 1) == SDM_CLIENT_UNAUTHORIZED);
    old.root[pick % 32] ^= 0x01;
    require(cons(&old, &cp, cpath, n) == SDM_CLIENT_UNAUTHORIZED);
    old.root[pick % 32] ^= 0x01;
    cp.root[pick % 32] ^= 0x01;
    /* every tree extends the empty one, whatever its root */
    require(cons(&old, &cp, cpath, n) == (from == 0 ? SDM_CLIENT_OK : SDM_CLIENT_UNAUTHORIZED));
    cp.root[pick % 32] ^= 0x01;
    /* the other way round only holds when nothing was added */
    require(cons(&cp, &old, cpath, n) == (from == sz ? SDM_CLIENT_OK : SDM_CLIENT_UNAUTHORIZED));
    sdm_merkle_destroy(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    (void)fixed_key(0);
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 8) {
    case 0:
        fuzz_reply(p, n);
        break;
    case 1:
        check_envelope(p, n);
        break;
    case 2:
        fuzz_sealed(p, n);
        break;
    case 3:
        fuzz_note(p, n);
        break;
    case 4:
        fuzz_signed_note(p, n);
        break;
    case 5:
        fuzz_vkey(p, n);
        break;
    case 6:
        fuzz_proof(p, n);
        break;
    case 7:
        fuzz_tree(p, n);
        break;
    }
    return 0;
}
