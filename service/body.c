/* body.c - the ledger's reader of signed bodies: receipts and proofs checked field by field.
 *
 * The same three steps as a worker request (wire.c): sdm_wire_precheck bounds the bytes,
 * msgpack-c unpacks them, and a strict reader checks every key and value against what
 * sdm_receipt_encode and sdm_proof_encode write. Nothing reaches the caller unless the whole
 * body passed.
 *
 * A proof lists every shard for every query, so its (shard, contributor) pairs are tallied
 * through a hash table. The names come from whoever signed the body, so the table is keyed
 * with SipHash (libsodium's crypto_shorthash) under a random key: names chosen to collide
 * cannot make the tally quadratic. Rows keep their order of first appearance and sums are
 * taken in body order, so the result never depends on the key.
 */
#include "body.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sign.h"

#define PATH_CAP 96   /* "queries[4294967295].contributors[4294967295][2]" and room to spare */
#define PRINT_CAP 72  /* body bytes quoted in a message */

/* ---- errors -------------------------------------------------------------------------------- */

static sdm_wire_code bad(sdm_wire_error *err, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* bad_request, with the message "entry.body.<path>: <why>" ("entry.body: <why>" when path
 * is ""): the ledger's request field is `entry`, and the body sits inside it. */
static sdm_wire_code bad(sdm_wire_error *err, const char *path, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "entry.body%s%s: %s", *path ? "." : "", path,
                         why);
}

static sdm_wire_code no_memory(sdm_wire_error *err)
{
    return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "entry.body: out of memory");
}

/* ---- fields -------------------------------------------------------------------------------- */

static int str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* The index of the word o spells, or -1 when it is not a string or not one of them. */
static int which_word(const msgpack_object *o, const char *const *words, int n)
{
    for (int i = 0; i < n; i++)
        if (str_is(o, words[i]))
            return i;
    return -1;
}

static sdm_wire_code get_uint(sdm_wire_error *err, const char *path, const msgpack_object *o,
                              uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return bad(err, path, "expected a non-negative integer");
    *out = o->via.u64;
    return SDM_WIRE_OK;
}

/* The encoders write every lr, lambda, score and share as float64: a float32 or an integer
 * in its place is not a body a worker wrote. */
static sdm_wire_code get_f64(sdm_wire_error *err, const char *path, const msgpack_object *o,
                             double *out)
{
    if (o->type != MSGPACK_OBJECT_FLOAT64)
        return bad(err, path, "expected float64");
    if (!isfinite(o->via.f64))
        return bad(err, path, "%g, must be finite", o->via.f64);
    *out = o->via.f64;
    return SDM_WIRE_OK;
}

static sdm_wire_code get_share(sdm_wire_error *err, const char *path, const msgpack_object *o,
                               double *out)
{
    sdm_wire_code c = get_f64(err, path, o, out);
    if (c == SDM_WIRE_OK && !(*out >= 0 && *out <= 1))
        return bad(err, path, "%g, expected a share in [0, 1]", *out);
    return c;
}

static sdm_wire_code get_bool(sdm_wire_error *err, const char *path, const msgpack_object *o,
                              int *out)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return bad(err, path, "expected true or false");
    *out = o->via.boolean ? 1 : 0;
    return SDM_WIRE_OK;
}

/* Keys, hashes, roots and digests: bin of exactly 32 bytes. */
static sdm_wire_code get_bin32(sdm_wire_error *err, const char *path, const msgpack_object *o,
                               uint8_t out[32])
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return bad(err, path, "expected bin(32)");
    if (o->via.bin.size != 32)
        return bad(err, path, "%u bytes, expected 32", o->via.bin.size);
    memcpy(out, o->via.bin.ptr, 32);
    return SDM_WIRE_OK;
}

/* A name as the worker accepts it (wire.c): 1 to SDM_WIRE_MAX_NAME bytes of UTF-8 without
 * NUL; with may_be_empty, "" too (curvature batches, request_id). */
static sdm_wire_code check_name(sdm_wire_error *err, const char *path, const msgpack_object *o,
                                int may_be_empty)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return bad(err, path, "expected a string");
    const uint8_t *p = (const uint8_t *)o->via.str.ptr;
    size_t n = o->via.str.size;
    if (n == 0 && !may_be_empty)
        return bad(err, path, "must not be empty");
    if (n > SDM_WIRE_MAX_NAME)
        return bad(err, path, "%zu bytes, at most %d", n, SDM_WIRE_MAX_NAME);
    if (n > 0 && memchr(p, 0, n))
        return bad(err, path, "contains a NUL byte");
    if (!sdm_wire_utf8_valid(p, n))
        return bad(err, path, "not valid UTF-8");
    return SDM_WIRE_OK;
}

/* A checked name into a buffer of SDM_WIRE_MAX_NAME + 1 bytes, NUL-terminated. */
static void name_into(const msgpack_object *o, char *buf)
{
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
}

/* A checked name as a malloc'd string; NULL when out of memory. */
static char *name_dup(const msgpack_object *o)
{
    char *s = malloc(o->via.str.size + 1);
    if (s)
        name_into(o, s);
    return s;
}

/* "<path>.<key>", or "<key>" at the top, cut at PATH_CAP - 1 bytes (a message's field
 * name, so a cut is harmless; copied by hand, since snprintf's truncation warning cannot
 * tell an intended cut from a mistake). */
static void child(char *out, const char *path, const char *key)
{
    size_t n = 0;
    for (const char *p = path; *p && n < PATH_CAP - 1; p++)
        out[n++] = *p;
    if (*path && n < PATH_CAP - 1)
        out[n++] = '.';
    for (const char *p = key; *p && n < PATH_CAP - 1; p++)
        out[n++] = *p;
    out[n] = '\0';
}

/* "<path>[i]"; the path is cut short rather than the index lost. */
static void indexed(char *out, const char *path, uint32_t i)
{
    snprintf(out, PATH_CAP, "%.*s[%u]", PATH_CAP - 16, path, i);
}

/* The values of a map with a fixed key set: v[j] for keys[j], NULL when absent. Every key
 * must be one of them and appear once, and every key not in the `optional` bit set must be
 * there. `what` names the map in the message for an unknown key. */
static sdm_wire_code get_fields(sdm_wire_error *err, const char *path, const char *what,
                                const msgpack_object *o, const char *const *keys, int n_keys,
                                uint32_t optional, const msgpack_object **v)
{
    char name[PRINT_CAP], at[PATH_CAP];
    if (o->type != MSGPACK_OBJECT_MAP)
        return bad(err, path, "expected a map");
    for (int j = 0; j < n_keys; j++)
        v[j] = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return bad(err, path, "key %u is not a string", i);
        int j = which_word(k, keys, n_keys);
        if (j < 0) {
            sdm_wire_printable(name, sizeof(name), k->via.str.ptr, k->via.str.size);
            child(at, path, name);
            return bad(err, at, "unknown key in %s", what);
        }
        child(at, path, keys[j]);
        if (v[j])
            return bad(err, at, "appears twice");
        v[j] = &o->via.map.ptr[i].val;
    }
    for (int j = 0; j < n_keys; j++)
        if (!v[j] && !(optional & (UINT32_C(1) << j))) {
            child(at, path, keys[j]);
            return bad(err, at, "missing");
        }
    return SDM_WIRE_OK;
}

/* An array of `size` elements (size 0: any); `shape` describes it for the message. */
static sdm_wire_code get_array(sdm_wire_error *err, const char *path, const msgpack_object *o,
                               uint32_t size, const char *shape)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || (size && o->via.array.size != size))
        return bad(err, path, "expected an array %s", shape);
    return SDM_WIRE_OK;
}

/* ---- tallies ------------------------------------------------------------------------------- */

/* Rows keyed by (shard, contributor) (shard NULL for contributor rows), each summing the
 * scores and shares of its key in the order they come. */
typedef struct tally {
    sdm_body_touch *rows;
    uint64_t *hashes; /* per row, kept so that the table can grow without rehashing names */
    size_t n, cap;
    size_t *slots; /* row index + 1, 0 when empty; a power of two, at most half full */
    size_t n_slots;
    uint8_t key[crypto_shorthash_KEYBYTES];
} tally;

static void touches_free(sdm_body_touch *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].contributor);
        free(rows[i].shard);
    }
    free(rows);
}

static void tally_init(tally *t)
{
    memset(t, 0, sizeof(*t));
    randombytes_buf(t->key, sizeof(t->key));
}

static void tally_free(tally *t)
{
    touches_free(t->rows, t->n);
    free(t->hashes);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Hands the rows to the caller; the tally is left empty. */
static void tally_take(tally *t, sdm_body_touch **rows, size_t *n)
{
    *rows = t->rows;
    *n = t->n;
    t->rows = NULL;
    t->n = 0;
    tally_free(t);
}

static int row_is(const sdm_body_touch *r, const msgpack_object *shard,
                  const msgpack_object *contributor)
{
    if (shard && (strlen(r->shard) != shard->via.str.size ||
                  memcmp(r->shard, shard->via.str.ptr, shard->via.str.size) != 0))
        return 0;
    return strlen(r->contributor) == contributor->via.str.size &&
           memcmp(r->contributor, contributor->via.str.ptr, contributor->via.str.size) == 0;
}

/* Doubles the slot table (at least 16) and puts every row back. */
static int tally_grow(tally *t)
{
    size_t n_slots = t->n_slots ? 2 * t->n_slots : 16;
    size_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t s = t->hashes[i] & (n_slots - 1);
        while (slots[s])
            s = (s + 1) & (n_slots - 1);
        slots[s] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

/* Adds score and share to the row of (shard, contributor), made at the end when new. The
 * names have been checked (at most SDM_WIRE_MAX_NAME bytes, no NUL). 0, or -1 when out of
 * memory. */
static int tally_add(tally *t, const msgpack_object *shard, const msgpack_object *contributor,
                     double score, double share)
{
    /* shard, 0xff, contributor: 0xff never occurs in UTF-8, so the split is unambiguous */
    uint8_t text[2 * SDM_WIRE_MAX_NAME + 1];
    size_t len = 0;
    if (shard) {
        memcpy(text, shard->via.str.ptr, shard->via.str.size);
        len = shard->via.str.size;
        text[len++] = 0xff;
    }
    memcpy(text + len, contributor->via.str.ptr, contributor->via.str.size);
    len += contributor->via.str.size;
    uint8_t h8[crypto_shorthash_BYTES];
    crypto_shorthash(h8, text, len, t->key);
    uint64_t h;
    memcpy(&h, h8, sizeof(h));

    if (2 * (t->n + 1) > t->n_slots && tally_grow(t) != 0)
        return -1;
    size_t s = h & (t->n_slots - 1);
    for (; t->slots[s]; s = (s + 1) & (t->n_slots - 1)) {
        size_t i = t->slots[s] - 1;
        if (t->hashes[i] == h && row_is(&t->rows[i], shard, contributor)) {
            t->rows[i].score += score;
            t->rows[i].share += share;
            return 0;
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        sdm_body_touch *rows = realloc(t->rows, cap * sizeof(*rows));
        if (!rows)
            return -1;
        t->rows = rows;
        uint64_t *hashes = realloc(t->hashes, cap * sizeof(*hashes));
        if (!hashes)
            return -1;
        t->hashes = hashes;
        t->cap = cap;
    }
    sdm_body_touch *r = &t->rows[t->n];
    memset(r, 0, sizeof(*r));
    r->contributor = name_dup(contributor);
    r->shard = shard ? name_dup(shard) : NULL;
    if (!r->contributor || (shard && !r->shard)) {
        free(r->contributor);
        free(r->shard);
        return -1;
    }
    r->score = score;
    r->share = share;
    t->hashes[t->n] = h;
    t->slots[s] = ++t->n;
    return 0;
}

/* ---- receipts ------------------------------------------------------------------------------ */

enum {
    K_V,
    K_TYPE,
    K_WORKER,
    K_ISSUED_AT,
    K_MODEL, /* the keys before here are common to both types, in this order */
    R_CHECKPOINT = K_MODEL + 1,
    R_LR,
    R_CONTRIBUTOR,
    R_SHARD,
    R_N,
    R_BATCH,
    R_LEAF,
    R_STORE_SIZE,
    R_STORE_ROOT,
    R_IDS_DIGEST,
    R_DATA_DIGEST,
    R_WEIGHTS_DIGEST,
    R_CURVATURE,
    R_COUNT
};

/* What sdm_receipt_encode writes. */
static const char *const receipt_keys[R_COUNT] = {
    "v",          "type",       "worker", "issued_at", "model", "checkpoint",
    "lr",         "contributor", "shard", "n",         "batch", "leaf",
    "store_size", "store_root", "ids_digest", "data_digest", "weights_digest", "curvature"};

/* contributor or shard: "" in a curvature batch, a name otherwise; into buf. */
static sdm_wire_code get_owner_name(sdm_wire_error *err, const char *path,
                                    const msgpack_object *o, int curvature, char *buf)
{
    sdm_wire_code c = check_name(err, path, o, curvature);
    if (c != SDM_WIRE_OK)
        return c;
    if (curvature && o->via.str.size != 0)
        return bad(err, path, "must be \"\" in a curvature batch");
    name_into(o, buf);
    return SDM_WIRE_OK;
}

static sdm_wire_code read_receipt(sdm_wire_error *err, const msgpack_object **v, sdm_body *b)
{
    char checkpoint[SDM_WIRE_MAX_NAME + 1], contributor[SDM_WIRE_MAX_NAME + 1],
        shard[SDM_WIRE_MAX_NAME + 1];
    sdm_leaf_fields f;
    memset(&f, 0, sizeof(f));
    uint64_t batch = 0, store_size = 0;
    uint8_t leaf[SDM_HASH_LEN], store_root[SDM_HASH_LEN];
    sdm_wire_code c;
    /* curvature first: it decides what contributor and shard may hold */
    if ((c = get_bool(err, "curvature", v[R_CURVATURE], &f.curvature)) != SDM_WIRE_OK ||
        (c = check_name(err, "checkpoint", v[R_CHECKPOINT], 0)) != SDM_WIRE_OK ||
        (c = get_f64(err, "lr", v[R_LR], &f.lr)) != SDM_WIRE_OK ||
        (c = get_owner_name(err, "contributor", v[R_CONTRIBUTOR], f.curvature, contributor)) !=
            SDM_WIRE_OK ||
        (c = get_owner_name(err, "shard", v[R_SHARD], f.curvature, shard)) != SDM_WIRE_OK ||
        (c = get_uint(err, "n", v[R_N], &f.n)) != SDM_WIRE_OK ||
        (c = get_uint(err, "batch", v[R_BATCH], &batch)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "leaf", v[R_LEAF], leaf)) != SDM_WIRE_OK ||
        (c = get_uint(err, "store_size", v[R_STORE_SIZE], &store_size)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "store_root", v[R_STORE_ROOT], store_root)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "ids_digest", v[R_IDS_DIGEST], f.ids_digest)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "data_digest", v[R_DATA_DIGEST], f.data_digest)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "weights_digest", v[R_WEIGHTS_DIGEST], f.weights_digest)) !=
            SDM_WIRE_OK)
        return c;
    name_into(v[R_CHECKPOINT], checkpoint);
    f.model = b->model;
    f.checkpoint = checkpoint;
    f.contributor = contributor;
    f.shard = shard;

    /* the batch is in the tree the receipt states */
    if (batch >= store_size)
        return bad(err, "batch", "%llu, must be below store_size (%llu)",
                   (unsigned long long)batch, (unsigned long long)store_size);
    if (f.curvature) {
        /* curvature batches carry no example ids and no weights (SPEC §5, §6) */
        uint8_t nothing[SDM_HASH_LEN];
        sdm_digest_bytes(NULL, 0, nothing);
        if (memcmp(f.ids_digest, nothing, SDM_HASH_LEN) != 0)
            return bad(err, "ids_digest", "a curvature batch has no example ids (expected the "
                                          "digest of nothing)");
        if (memcmp(f.weights_digest, nothing, SDM_HASH_LEN) != 0)
            return bad(err, "weights_digest", "a curvature batch has no weights (expected the "
                                              "digest of nothing)");
    }
    /* the leaf hash is what the worker's tree commits to: it must be these fields' */
    uint8_t want[SDM_HASH_LEN];
    if (sdm_leaf_hash(&f, want) != 0)
        return no_memory(err);
    if (memcmp(want, leaf, SDM_HASH_LEN) != 0)
        return bad(err, "leaf", "does not match the receipt's fields");

    if (f.curvature)
        return SDM_WIRE_OK; /* touches no contributor */
    if (!(b->touches = calloc(1, sizeof(*b->touches))))
        return no_memory(err);
    b->n_touches = 1;
    b->touches[0].contributor = name_dup(v[R_CONTRIBUTOR]);
    b->touches[0].shard = name_dup(v[R_SHARD]);
    if (!b->touches[0].contributor || !b->touches[0].shard)
        return no_memory(err);
    return SDM_WIRE_OK;
}

/* ---- proofs -------------------------------------------------------------------------------- */

enum {
    P_PROJECTION = K_MODEL + 1,
    P_METHOD,
    P_LAMBDA,
    P_AGGREGATE,
    P_CHECKPOINTS,
    P_STORE_SIZE,
    P_STORE_ROOT,
    P_QUERY_DIGEST,
    P_REQUEST_ID,
    P_QUERIES,
    P_COUNT
};

/* What sdm_proof_encode writes. */
static const char *const proof_keys[P_COUNT] = {
    "v",          "type",        "worker",     "issued_at",  "model",
    "projection", "method",      "lambda",     "aggregate",  "checkpoints",
    "store_size", "store_root",  "query_digest", "request_id", "queries"};

/* {kind, dim, seed, input_dim, s (sjlt only)}: a definition `register` accepts. */
static sdm_wire_code read_projection(sdm_wire_error *err, const msgpack_object *o)
{
    static const char *const keys[5] = {"kind", "dim", "seed", "input_dim", "s"};
    static const char *const kinds[3] = {"none", "rademacher", "sjlt"}; /* sdm_proj_kind order */
    const msgpack_object *v[5];
    uint64_t dim = 0, seed = 0, input_dim = 0, s = 0;
    sdm_wire_code c = get_fields(err, "projection", "the projection", o, keys, 5, 1u << 4, v);
    if (c != SDM_WIRE_OK)
        return c;
    int kind = which_word(v[0], kinds, 3);
    if (kind < 0)
        return bad(err, "projection.kind", "must be none, rademacher or sjlt");
    if ((c = get_uint(err, "projection.dim", v[1], &dim)) != SDM_WIRE_OK ||
        (c = get_uint(err, "projection.seed", v[2], &seed)) != SDM_WIRE_OK ||
        (c = get_uint(err, "projection.input_dim", v[3], &input_dim)) != SDM_WIRE_OK)
        return c;
    if (dim < 1 || dim > 65536)
        return bad(err, "projection.dim", "%llu, expected 1 to 65536", (unsigned long long)dim);
    if (input_dim < 1)
        return bad(err, "projection.input_dim", "must be at least 1");
    if (kind == SDM_PROJ_NONE && dim != input_dim)
        return bad(err, "projection.dim", "%llu, must equal projection.input_dim (%llu) for kind "
                   "none", (unsigned long long)dim, (unsigned long long)input_dim);
    if (kind != SDM_PROJ_SJLT) {
        if (v[4])
            return bad(err, "projection.s", "only kind sjlt takes s");
        return SDM_WIRE_OK;
    }
    /* the encoder always writes sjlt's s, the default 1 included */
    if (!v[4])
        return bad(err, "projection.s", "missing (kind sjlt)");
    if ((c = get_uint(err, "projection.s", v[4], &s)) != SDM_WIRE_OK)
        return c;
    if (s < 1 || s > dim || dim % s != 0)
        return bad(err, "projection.s", "%llu, must divide projection.dim (%llu)",
                   (unsigned long long)s, (unsigned long long)dim);
    return SDM_WIRE_OK;
}

typedef struct ckpt_ref {
    const char *name;
    uint32_t len;
    uint32_t index;
} ckpt_ref;

/* By name (bytes), then by position, so that of two equal ids the later one comes second. */
static int ckpt_ref_cmp(const void *a, const void *b)
{
    const ckpt_ref *x = a, *y = b;
    int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
    if (c == 0)
        c = (x->len > y->len) - (x->len < y->len);
    if (c == 0)
        c = (x->index > y->index) - (x->index < y->index);
    return c;
}

/* [{id, lr}], non-empty, distinct ids. Sorted once: a body may carry a great many. */
static sdm_wire_code read_checkpoints(sdm_wire_error *err, const msgpack_object *o)
{
    static const char *const keys[2] = {"id", "lr"};
    char path[PATH_CAP], at[PATH_CAP];
    sdm_wire_code c;
    if ((c = get_array(err, "checkpoints", o, 0, "[{id, lr}]")) != SDM_WIRE_OK)
        return c;
    uint32_t n = o->via.array.size;
    if (n == 0)
        return bad(err, "checkpoints", "must not be empty");
    ckpt_ref *refs = malloc(n * sizeof(*refs));
    if (!refs)
        return no_memory(err);
    for (uint32_t i = 0; i < n && c == SDM_WIRE_OK; i++) {
        const msgpack_object *v[2];
        double lr;
        snprintf(path, sizeof(path), "checkpoints[%u]", i);
        if ((c = get_fields(err, path, "a checkpoint", &o->via.array.ptr[i], keys, 2, 0, v)) !=
            SDM_WIRE_OK)
            break;
        child(at, path, "id");
        if ((c = check_name(err, at, v[0], 0)) != SDM_WIRE_OK)
            break;
        child(at, path, "lr");
        c = get_f64(err, at, v[1], &lr);
        refs[i] = (ckpt_ref){v[0]->via.str.ptr, v[0]->via.str.size, i};
    }
    if (c != SDM_WIRE_OK) {
        free(refs);
        return c;
    }
    qsort(refs, n, sizeof(*refs), ckpt_ref_cmp);
    for (uint32_t i = 1; i < n && c == SDM_WIRE_OK; i++)
        if (refs[i].len == refs[i - 1].len &&
            memcmp(refs[i].name, refs[i - 1].name, refs[i].len) == 0) {
            snprintf(path, sizeof(path), "checkpoints[%u].id", refs[i].index);
            c = bad(err, path, "the same id as checkpoints[%u]", refs[i - 1].index);
        }
    free(refs);
    return c;
}

/* One element of a row that is a name; the row's path is `path`. */
static sdm_wire_code row_name(sdm_wire_error *err, const char *path, const msgpack_object *row,
                              uint32_t j)
{
    char at[PATH_CAP];
    indexed(at, path, j);
    return check_name(err, at, &row->via.array.ptr[j], 0);
}

static sdm_wire_code row_f64(sdm_wire_error *err, const char *path, const msgpack_object *row,
                             uint32_t j, int is_share, double *out)
{
    char at[PATH_CAP];
    indexed(at, path, j);
    return (is_share ? get_share : get_f64)(err, at, &row->via.array.ptr[j], out);
}

/* One query {id, shards, contributors, top, bottom}; its rows go into the tallies. */
static sdm_wire_code read_query(sdm_wire_error *err, const char *qpath, const msgpack_object *o,
                                tally *touches, tally *contributors)
{
    static const char *const keys[5] = {"id", "shards", "contributors", "top", "bottom"};
    const msgpack_object *v[5];
    char path[PATH_CAP], at[PATH_CAP];
    sdm_wire_code c = get_fields(err, qpath, "a query", o, keys, 5, 0, v);
    if (c != SDM_WIRE_OK)
        return c;
    /* the id as the attribute request gave it: a uint or a string */
    child(at, qpath, "id");
    if (v[0]->type == MSGPACK_OBJECT_STR) {
        if (!sdm_wire_utf8_valid((const uint8_t *)v[0]->via.str.ptr, v[0]->via.str.size))
            return bad(err, at, "not valid UTF-8");
    } else if (v[0]->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return bad(err, at, "expected a non-negative integer or a string");
    }

    child(path, qpath, "shards");
    if ((c = get_array(err, path, v[1], 0, "[[shard, contributor, score, share]]")) != SDM_WIRE_OK)
        return c;
    for (uint32_t i = 0; i < v[1]->via.array.size; i++) {
        const msgpack_object *row = &v[1]->via.array.ptr[i];
        double score, share;
        indexed(at, path, i);
        if ((c = get_array(err, at, row, 4, "[shard, contributor, score, share]")) !=
                SDM_WIRE_OK ||
            (c = row_name(err, at, row, 0)) != SDM_WIRE_OK ||
            (c = row_name(err, at, row, 1)) != SDM_WIRE_OK ||
            (c = row_f64(err, at, row, 2, 0, &score)) != SDM_WIRE_OK ||
            (c = row_f64(err, at, row, 3, 1, &share)) != SDM_WIRE_OK)
            return c;
        if (tally_add(touches, &row->via.array.ptr[0], &row->via.array.ptr[1], score, share) != 0)
            return no_memory(err);
    }

    child(path, qpath, "contributors");
    if ((c = get_array(err, path, v[2], 0, "[[contributor, score, share]]")) != SDM_WIRE_OK)
        return c;
    for (uint32_t i = 0; i < v[2]->via.array.size; i++) {
        const msgpack_object *row = &v[2]->via.array.ptr[i];
        double score, share;
        indexed(at, path, i);
        if ((c = get_array(err, at, row, 3, "[contributor, score, share]")) != SDM_WIRE_OK ||
            (c = row_name(err, at, row, 0)) != SDM_WIRE_OK ||
            (c = row_f64(err, at, row, 1, 0, &score)) != SDM_WIRE_OK ||
            (c = row_f64(err, at, row, 2, 1, &share)) != SDM_WIRE_OK)
            return c;
        if (tally_add(contributors, NULL, &row->via.array.ptr[0], score, share) != 0)
            return no_memory(err);
    }

    for (int side = 3; side <= 4; side++) {
        child(path, qpath, keys[side]);
        if ((c = get_array(err, path, v[side], 0, "[[example_id, shard, score]]")) != SDM_WIRE_OK)
            return c;
        for (uint32_t i = 0; i < v[side]->via.array.size; i++) {
            const msgpack_object *row = &v[side]->via.array.ptr[i];
            uint64_t id;
            double score;
            indexed(at, path, i);
            if ((c = get_array(err, at, row, 3, "[example_id, shard, score]")) != SDM_WIRE_OK)
                return c;
            char first[PATH_CAP];
            indexed(first, at, 0);
            if ((c = get_uint(err, first, &row->via.array.ptr[0], &id)) != SDM_WIRE_OK ||
                (c = row_name(err, at, row, 1)) != SDM_WIRE_OK ||
                (c = row_f64(err, at, row, 2, 0, &score)) != SDM_WIRE_OK)
                return c;
        }
    }
    return SDM_WIRE_OK;
}

static sdm_wire_code read_proof(sdm_wire_error *err, const msgpack_object **v, sdm_body *b)
{
    static const char *const methods[3] = {"dot", "cosine", "trak"};  /* sdm_method order */
    static const char *const aggregates[2] = {"sum", "mean"};
    char path[PATH_CAP];
    uint64_t store_size;
    uint8_t hash[SDM_HASH_LEN];
    sdm_wire_code c;
    if ((c = read_projection(err, v[P_PROJECTION])) != SDM_WIRE_OK)
        return c;
    int method = which_word(v[P_METHOD], methods, 3);
    if (method < 0)
        return bad(err, "method", "must be dot, cosine or trak");
    if (which_word(v[P_AGGREGATE], aggregates, 2) < 0)
        return bad(err, "aggregate", "must be sum or mean");
    if ((c = read_checkpoints(err, v[P_CHECKPOINTS])) != SDM_WIRE_OK)
        return c;

    /* trak states the lambda it used at every checkpoint; the other methods use none */
    const msgpack_object *lam = v[P_LAMBDA];
    uint32_t n_ckpt = v[P_CHECKPOINTS]->via.array.size;
    if ((c = get_array(err, "lambda", lam, 0, "[float64 per checkpoint]")) != SDM_WIRE_OK)
        return c;
    if (method == SDM_METHOD_TRAK && lam->via.array.size != n_ckpt)
        return bad(err, "lambda", "%u values, expected %u (one per checkpoint)",
                   lam->via.array.size, n_ckpt);
    if (method != SDM_METHOD_TRAK && lam->via.array.size != 0)
        return bad(err, "lambda", "%u values, expected none (method %s)", lam->via.array.size,
                   methods[method]);
    for (uint32_t i = 0; i < lam->via.array.size; i++) {
        double x;
        snprintf(path, sizeof(path), "lambda[%u]", i);
        if ((c = get_f64(err, path, &lam->via.array.ptr[i], &x)) != SDM_WIRE_OK)
            return c;
    }

    if ((c = get_uint(err, "store_size", v[P_STORE_SIZE], &store_size)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "store_root", v[P_STORE_ROOT], hash)) != SDM_WIRE_OK ||
        (c = get_bin32(err, "query_digest", v[P_QUERY_DIGEST], hash)) != SDM_WIRE_OK ||
        (c = check_name(err, "request_id", v[P_REQUEST_ID], 1)) != SDM_WIRE_OK)
        return c;

    const msgpack_object *qs = v[P_QUERIES];
    if ((c = get_array(err, "queries", qs, 0, "[{id, shards, contributors, top, bottom}]")) !=
        SDM_WIRE_OK)
        return c;
    tally touches, contributors;
    tally_init(&touches);
    tally_init(&contributors);
    for (uint32_t q = 0; q < qs->via.array.size && c == SDM_WIRE_OK; q++) {
        snprintf(path, sizeof(path), "queries[%u]", q);
        c = read_query(err, path, &qs->via.array.ptr[q], &touches, &contributors);
    }
    if (c == SDM_WIRE_OK) {
        tally_take(&touches, &b->touches, &b->n_touches);
        tally_take(&contributors, &b->contributors, &b->n_contributors);
    }
    tally_free(&touches);
    tally_free(&contributors);
    return c;
}

/* ---- the body ------------------------------------------------------------------------------ */

const char *sdm_body_type_name(sdm_body_type type)
{
    switch (type) {
    case SDM_BODY_RECEIPT:
        return "contribution";
    case SDM_BODY_PROOF:
        return "attribution";
    }
    return "";
}

static sdm_wire_code read_top(sdm_wire_error *err, const msgpack_object *top,
                              const uint8_t signer[32], sdm_body *b)
{
    char name[PRINT_CAP];
    if (top->type != MSGPACK_OBJECT_MAP)
        return bad(err, "", "expected a map");
    /* v and type first: together they say which key set the body must have */
    const msgpack_object *ver = NULL, *type = NULL;
    for (uint32_t i = 0; i < top->via.map.size; i++) {
        const msgpack_object *k = &top->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return bad(err, "", "key %u is not a string", i);
        if (!ver && str_is(k, "v"))
            ver = &top->via.map.ptr[i].val;
        if (!type && str_is(k, "type"))
            type = &top->via.map.ptr[i].val;
    }
    if (!ver)
        return bad(err, "v", "missing");
    if (ver->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return bad(err, "v", "expected the integer 1");
    if (ver->via.u64 != 1)
        return bad(err, "v", "%llu, expected 1", (unsigned long long)ver->via.u64);
    if (!type)
        return bad(err, "type", "missing");
    if (type->type != MSGPACK_OBJECT_STR)
        return bad(err, "type", "expected a string");
    if (str_is(type, "contribution"))
        b->type = SDM_BODY_RECEIPT;
    else if (str_is(type, "attribution"))
        b->type = SDM_BODY_PROOF;
    else
        return bad(err, "type", "unknown type \"%s\"",
                   sdm_wire_printable(name, sizeof(name), type->via.str.ptr, type->via.str.size));

    _Static_assert((int)R_COUNT >= (int)P_COUNT, "v holds either key set");
    const msgpack_object *v[R_COUNT];
    int receipt = b->type == SDM_BODY_RECEIPT;
    sdm_wire_code c =
        get_fields(err, "", receipt ? "a contribution body" : "an attribution body", top,
                   receipt ? receipt_keys : proof_keys, receipt ? R_COUNT : P_COUNT, 0, v);
    if (c != SDM_WIRE_OK)
        return c;
    if ((c = get_bin32(err, "worker", v[K_WORKER], b->worker)) != SDM_WIRE_OK)
        return c;
    if (memcmp(b->worker, signer, 32) != 0)
        return bad(err, "worker", "not the key that signed the envelope");
    if ((c = get_uint(err, "issued_at", v[K_ISSUED_AT], &b->issued_at)) != SDM_WIRE_OK ||
        (c = check_name(err, "model", v[K_MODEL], 0)) != SDM_WIRE_OK)
        return c;
    if (!(b->model = name_dup(v[K_MODEL])))
        return no_memory(err);
    return receipt ? read_receipt(err, v, b) : read_proof(err, v, b);
}

sdm_wire_code sdm_body_read(const uint8_t *body, size_t len, const uint8_t signer[32],
                            sdm_body *out, sdm_wire_error *err)
{
    if (!out || !signer)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "entry.body: nowhere to read it into");
    memset(out, 0, sizeof(*out));
    if (sdm_sodium_init() != 0)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "entry.body: libsodium failed to initialise");
    /* bounded before msgpack-c, which has no limits of its own, sees a byte; its stack holds
     * SDM_WIRE_MAX_DEPTH open containers, and a body needs five */
    sdm_wire_limits lim = {SDM_WIRE_MAX_DEPTH, 0};
    sdm_wire_error inner;
    if (sdm_wire_precheck(body, len, &lim, &inner) != SDM_WIRE_OK)
        return bad(err, "", "%s", inner.message);
    /* anything but a map is refused before msgpack-c spends memory on it */
    if ((body[0] & 0xf0) != 0x80 && body[0] != 0xde && body[0] != 0xdf)
        return bad(err, "", "expected a map");

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    sdm_wire_code c;
    msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)body, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        c = no_memory(err);
    else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        c = bad(err, "", "msgpack: malformed (unpack status %d)", (int)ur);
    else
        c = read_top(err, &up.data, signer, out);
    msgpack_unpacked_destroy(&up);
    if (c != SDM_WIRE_OK) {
        sdm_body_free(out);
        return c;
    }
    if (err)
        sdm_wire_fail(err, SDM_WIRE_OK, "ok");
    return SDM_WIRE_OK;
}

void sdm_body_free(sdm_body *b)
{
    if (!b)
        return;
    free(b->model);
    touches_free(b->touches, b->n_touches);
    touches_free(b->contributors, b->n_contributors);
    memset(b, 0, sizeof(*b));
}
