/* test_body.c - the ledger's body reader: real receipts and proofs read back field by field,
 * and every kind of malformed body refused with bad_request naming the field.
 *
 * Valid bodies come from sdm_receipt_encode and sdm_proof_encode, the worker's own encoders.
 * Malformed ones are those bodies re-packed with msgpack-c with one thing changed (a key
 * dropped, added or given another value, at any depth), so each case differs from a body the
 * reader accepts in exactly the way its name says.
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "sign.h"
#include "fixtures.h"
#include "testdata.h"

#define H SDM_HASH_LEN

static uint8_t worker_pk[32]; /* the signer of every body unless a test says otherwise */

static int suite_setup(void)
{
    if (sdm_sodium_init() != 0)
        return -1;
    memset(worker_pk, 0x77, sizeof(worker_pk));
    return 0;
}

/* ---- valid bodies -------------------------------------------------------------------------- */

static const char *const receipt_keys[18] = {
    "v",          "type",       "worker",     "issued_at",   "model",          "checkpoint",
    "lr",         "contributor", "shard",     "n",           "batch",          "leaf",
    "store_size", "store_root", "ids_digest", "data_digest", "weights_digest", "curvature"};

static const char *const proof_keys[15] = {
    "v",          "type",       "worker",       "issued_at",  "model",
    "projection", "method",     "lambda",       "aggregate",  "checkpoints",
    "store_size", "store_root", "query_digest", "request_id", "queries"};

/* A receipt as the worker writes it: leaf computed from its fields. */
static void make_receipt(int curvature, uint8_t **body, size_t *len)
{
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields = (sdm_leaf_fields){"model-a", "ckpt-1",     0.25, curvature ? "" : "alice",
                                      curvature ? "" : "alice/wiki", 12, {0}, {0}, {0}, curvature};
    uint64_t ids[3] = {4, 5, 6};
    double w[3] = {1.0, 0.5, 0.25};
    sdm_digest_ids(ids, curvature ? 0 : 3, r.leaf_fields.ids_digest);
    memset(r.leaf_fields.data_digest, 0xda, H);
    sdm_digest_weights(curvature ? NULL : w, 3, r.leaf_fields.weights_digest);
    memcpy(r.worker, worker_pk, 32);
    r.issued_at = 1700000000123456789ull;
    r.batch = 6;
    r.store_size = 7;
    memset(r.store_root, 0x5e, H);
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_hash(&r.leaf_fields, r.leaf), 0);
    CU_ASSERT_EQUAL_FATAL(sdm_receipt_encode(&r, body, len), 0);
}

/* The proof the mutation suite starts from: trak over sjlt, two checkpoints, two queries. */
static void make_proof(uint8_t **body, size_t *len)
{
    static const sdm_projection proj = {SDM_PROJ_SJLT, 4096, 512, 4, 0x1234567890ull};
    sdm_attr_result res = fixture_result();
    sdm_proof p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_TRAK);
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, body, len), 0);
}

/* Reads a body that must be accepted; failures print the reader's message. */
static int read_ok(const uint8_t *body, size_t len, sdm_body *out)
{
    sdm_wire_error err;
    memset(&err, 0, sizeof(err));
    sdm_wire_code c = sdm_body_read(body, len, worker_pk, out, &err);
    if (c != SDM_WIRE_OK)
        fprintf(stderr, "\n  refused: %s: %s\n", sdm_wire_code_name(c), err.message);
    return c == SDM_WIRE_OK;
}

static int touch_is(const sdm_body_touch *t, const char *contributor, const char *shard,
                    double score, double share)
{
    int ok = t->contributor && strcmp(t->contributor, contributor) == 0 &&
             (shard ? t->shard && strcmp(t->shard, shard) == 0 : t->shard == NULL) &&
             t->score == score && t->share == share;
    if (!ok)
        fprintf(stderr, "\n  touch (%s, %s, %g, %g), expected (%s, %s, %g, %g)\n",
                t->contributor ? t->contributor : "NULL", t->shard ? t->shard : "NULL", t->score,
                t->share, contributor, shard ? shard : "NULL", score, share);
    return ok;
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void test_receipt(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    sdm_body b;
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL(b.type, SDM_BODY_RECEIPT);
    CU_ASSERT_STRING_EQUAL(sdm_body_type_name(b.type), "contribution");
    CU_ASSERT_EQUAL(memcmp(b.worker, worker_pk, 32), 0);
    CU_ASSERT_EQUAL(b.issued_at, 1700000000123456789ull);
    CU_ASSERT_STRING_EQUAL(b.model, "model-a");
    CU_ASSERT_EQUAL_FATAL(b.n_touches, 1);
    CU_ASSERT(touch_is(&b.touches[0], "alice", "alice/wiki", 0, 0));
    CU_ASSERT_EQUAL(b.n_contributors, 0);
    CU_ASSERT_PTR_NULL(b.contributors);
    sdm_body_free(&b);
    CU_ASSERT(all_zero(&b, sizeof(b)));
    sdm_body_free(&b); /* idempotent */
    sdm_body_free(NULL);
    free(body);
}

static void test_curvature_receipt(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(1, &body, &len);
    sdm_body b;
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL(b.type, SDM_BODY_RECEIPT);
    CU_ASSERT_STRING_EQUAL(b.model, "model-a");
    CU_ASSERT_EQUAL(b.n_touches, 0); /* a curvature batch belongs to no contributor */
    CU_ASSERT_PTR_NULL(b.touches);
    CU_ASSERT_EQUAL(b.n_contributors, 0);
    sdm_body_free(&b);
    free(body);
}

static void test_proof(void)
{
    uint8_t *body;
    size_t len;
    make_proof(&body, &len);
    sdm_body b;
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL(b.type, SDM_BODY_PROOF);
    CU_ASSERT_STRING_EQUAL(sdm_body_type_name(b.type), "attribution");
    CU_ASSERT_EQUAL(memcmp(b.worker, worker_pk, 32), 0);
    CU_ASSERT_EQUAL(b.issued_at, 1700000000999ull);
    CU_ASSERT_STRING_EQUAL(b.model, "model-a");
    /* per (shard, contributor), summed over the two queries, in order of first appearance */
    CU_ASSERT_EQUAL_FATAL(b.n_touches, 3);
    CU_ASSERT(touch_is(&b.touches[0], "alice", "s-a", 1.5 + 0.0, 0.75 + 0.0));
    CU_ASSERT(touch_is(&b.touches[1], "bob", "s-b", -0.25 + 2.0, 0.0 + 1.0));
    CU_ASSERT(touch_is(&b.touches[2], "alice", "s-c", 0.5 - 1.0, 0.25 + 0.0));
    CU_ASSERT_EQUAL_FATAL(b.n_contributors, 2);
    CU_ASSERT(touch_is(&b.contributors[0], "alice", NULL, 2.0 - 1.0, 1.0 + 0.0));
    CU_ASSERT(touch_is(&b.contributors[1], "bob", NULL, -0.25 + 2.0, 0.0 + 1.0));
    sdm_body_free(&b);
    free(body);

    /* dot over rademacher: empty lambda, no s, query ids numbered 0..m-1 */
    sdm_projection proj = {SDM_PROJ_RADEMACHER, 4096, 512, 0, 9};
    sdm_attr_result res = fixture_result();
    sdm_proof p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_DOT);
    p.query_ids = NULL;
    p.request_id = "";
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL(b.n_touches, 3);
    CU_ASSERT_EQUAL(b.n_contributors, 2);
    sdm_body_free(&b);
    free(body);

    /* kind none (dim == input_dim) and a proof over an empty store: nothing touched */
    proj = (sdm_projection){SDM_PROJ_NONE, 64, 64, 0, 0};
    res.n_shards = 0;
    res.n_contributors = 0;
    res.topk = 0;
    p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_COSINE);
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL(b.n_touches, 0);
    CU_ASSERT_EQUAL(b.n_contributors, 0);
    sdm_body_free(&b);
    free(body);
}

/* Many shards and contributors: the tally's table grows many times and still sums every
 * (shard, contributor) pair exactly once per query. */
static void test_proof_many_shards(void)
{
    enum { NS = 3000, NC = 70, M = 3 };
    static char shard_buf[NS][16], contrib_buf[NC][16];
    static const char *shards[NS], *owners[NS], *contribs[NC];
    static uint32_t owner_idx[NS];
    static double ss[M * NS], sh[M * NS], cs[M * NC], ch[M * NC];
    for (int c = 0; c < NC; c++) {
        snprintf(contrib_buf[c], sizeof(contrib_buf[c]), "contrib-%02d", c);
        contribs[c] = contrib_buf[c];
    }
    for (int s = 0; s < NS; s++) {
        snprintf(shard_buf[s], sizeof(shard_buf[s]), "shard-%04d", s);
        shards[s] = shard_buf[s];
        owner_idx[s] = (uint32_t)(s % NC);
        owners[s] = contribs[s % NC];
    }
    /* small binary fractions: every sum below is exact */
    for (int q = 0; q < M; q++) {
        for (int s = 0; s < NS; s++) {
            ss[q * NS + s] = s + 0.5 * q;
            sh[q * NS + s] = 0.25 * q;
        }
        for (int c = 0; c < NC; c++) {
            cs[q * NC + c] = -c - 0.5 * q;
            ch[q * NC + c] = 0.125 * q;
        }
    }
    sdm_attr_result res;
    memset(&res, 0, sizeof(res));
    res.m = M;
    res.n_shards = NS;
    res.n_contributors = NC;
    res.shard_names = shards;
    res.shard_contributor = owners;
    res.shard_owner = owner_idx;
    res.contributor_names = contribs;
    res.shard_score = ss;
    res.shard_share = sh;
    res.contributor_score = cs;
    res.contributor_share = ch;
    static sdm_hit no_hits[1];
    res.top = res.bottom = no_hits; /* topk 0: the encoder offsets them by 0 */
    sdm_projection proj = {SDM_PROJ_RADEMACHER, 100, 10, 0, 1};
    sdm_proof p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_DOT);
    p.query_ids = NULL;
    uint8_t *body;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    sdm_body b;
    CU_ASSERT_FATAL(read_ok(body, len, &b));
    CU_ASSERT_EQUAL_FATAL(b.n_touches, NS);
    CU_ASSERT_EQUAL_FATAL(b.n_contributors, NC);
    int bad = 0;
    for (int s = 0; s < NS; s++)
        bad += !touch_is(&b.touches[s], owners[s], shards[s], 3.0 * s + 1.5, 0.75);
    for (int c = 0; c < NC; c++)
        bad += !touch_is(&b.contributors[c], contribs[c], NULL, -3.0 * c - 1.5, 0.375);
    CU_ASSERT_EQUAL(bad, 0);
    sdm_body_free(&b);
    free(body);
}

/* The path the ledger takes: sign, open the envelope, read its body with the envelope's key. */
static void test_through_envelope(void)
{
    sdm_keypair kp = {{0}, sodium_malloc(SDM_SK_LEN)};
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp.sk);
    crypto_sign_keypair(kp.pk, kp.sk);
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields = (sdm_leaf_fields){"m", "c", 1.0, "bob", "bob/1", 1, {0}, {0}, {0}, 0};
    memcpy(r.worker, kp.pk, 32);
    r.store_size = 1;
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_hash(&r.leaf_fields, r.leaf), 0);
    uint8_t *body, *env;
    size_t len, env_len;
    CU_ASSERT_EQUAL_FATAL(sdm_receipt_encode(&r, &body, &len), 0);
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(&kp, body, len, &env, &env_len), 0);

    const uint8_t *got;
    size_t got_len;
    uint8_t key[32];
    sdm_wire_error err;
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_open(env, env_len, &got, &got_len, key, &err), SDM_WIRE_OK);
    sdm_body b;
    CU_ASSERT_EQUAL(sdm_body_read(got, got_len, key, &b, &err), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(b.n_touches, 1);
    CU_ASSERT_EQUAL(memcmp(b.worker, kp.pk, 32), 0);
    sdm_body_free(&b);

    /* a body naming another worker, signed by this key: refused */
    CU_ASSERT_EQUAL(sdm_body_read(got, got_len, worker_pk, &b, &err), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_STRING_EQUAL(err.message,
                           "entry.body.worker: not the key that signed the envelope");
    free(env);
    free(body);
    sodium_free(kp.sk);
}

/* ---- re-packing with one change ------------------------------------------------------------ */

enum { V_UINT, V_NEG, V_F64, V_F32, V_STR, V_STRN, V_BIN, V_BOOL, V_NIL, V_ARRAY0, V_MAP0 };

/* A msgpack value to put somewhere: kind, and the number, string or length it needs. */
typedef struct value {
    int kind;
    double x;      /* V_UINT, V_F64, V_F32, V_BOOL */
    const char *s; /* V_STR, V_STRN */
    size_t n;      /* V_STRN: bytes of s; V_BIN: bytes */
} value;

static void pack_value(msgpack_packer *pk, const value *v)
{
    /* 0xab then zeros: never a real key, hash or digest */
    static const uint8_t fill[512] = {0xab};
    switch (v->kind) {
    case V_UINT:
        msgpack_pack_uint64(pk, (uint64_t)v->x);
        break;
    case V_NEG:
        msgpack_pack_int64(pk, -5);
        break;
    case V_F64:
        msgpack_pack_double(pk, v->x);
        break;
    case V_F32:
        msgpack_pack_float(pk, (float)v->x);
        break;
    case V_STR:
    case V_STRN: {
        size_t n = v->kind == V_STR ? strlen(v->s) : v->n;
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, v->s, n);
        break;
    }
    case V_BIN:
        msgpack_pack_bin(pk, v->n);
        msgpack_pack_bin_body(pk, fill, v->n);
        break;
    case V_BOOL:
        if (v->x)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case V_NIL:
        msgpack_pack_nil(pk);
        break;
    case V_ARRAY0:
        msgpack_pack_array(pk, 0);
        break;
    case V_MAP0:
        msgpack_pack_map(pk, 0);
        break;
    }
}

enum { E_SET, E_DROP, E_ADD };

/* One change at a path of map keys and array indices joined by '/' ("queries/1/shards/0/2").
 * E_SET replaces the value there, E_DROP removes the entry or element, E_ADD appends an
 * entry with the path's last segment as key (an element, for an array) to the container at
 * the rest of the path. */
typedef struct edit {
    int op;
    const char *path;
    value v;
    int hits; /* how many places the edit applied to: a test asserts 1 */
} edit;

static void parent_of(const char *path, char *parent, size_t cap, const char **last)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    snprintf(parent, cap, "%.*s", (int)n, path);
    *last = slash ? slash + 1 : path;
}

static void repack(msgpack_packer *pk, const msgpack_object *o, const char *path, edit *e);

/* The path of element i (a key string or an index) below path. */
static void child_path(char *out, size_t cap, const char *path, const msgpack_object *key,
                       uint32_t index)
{
    const char *sep = *path ? "/" : "";
    if (key && key->type == MSGPACK_OBJECT_STR)
        snprintf(out, cap, "%s%s%.*s", path, sep, (int)key->via.str.size, key->via.str.ptr);
    else
        snprintf(out, cap, "%s%s%u", path, sep, index);
}

static void repack_container(msgpack_packer *pk, const msgpack_object *o, const char *path,
                             edit *e)
{
    int is_map = o->type == MSGPACK_OBJECT_MAP;
    uint32_t n = is_map ? o->via.map.size : o->via.array.size;
    char parent[256], at[256];
    const char *last;
    parent_of(e->path, parent, sizeof(parent), &last);
    int adding = e->op == E_ADD && strcmp(parent, path) == 0;
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < n; i++) {
        child_path(at, sizeof(at), path, is_map ? &o->via.map.ptr[i].key : NULL, i);
        dropped += e->op == E_DROP && strcmp(at, e->path) == 0;
    }
    if (is_map)
        msgpack_pack_map(pk, n - dropped + adding);
    else
        msgpack_pack_array(pk, n - dropped + adding);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *key = is_map ? &o->via.map.ptr[i].key : NULL;
        const msgpack_object *val = is_map ? &o->via.map.ptr[i].val : &o->via.array.ptr[i];
        child_path(at, sizeof(at), path, key, i);
        int here = strcmp(at, e->path) == 0 && e->op != E_ADD;
        e->hits += here;
        if (here && e->op == E_DROP)
            continue;
        if (key)
            msgpack_pack_object(pk, *key);
        if (here)
            pack_value(pk, &e->v);
        else
            repack(pk, val, at, e);
    }
    if (adding) {
        e->hits++;
        if (is_map) {
            msgpack_pack_str(pk, strlen(last));
            msgpack_pack_str_body(pk, last, strlen(last));
        }
        pack_value(pk, &e->v);
    }
}

static void repack(msgpack_packer *pk, const msgpack_object *o, const char *path, edit *e)
{
    if (o->type == MSGPACK_OBJECT_MAP || o->type == MSGPACK_OBJECT_ARRAY)
        repack_container(pk, o, path, e);
    else
        msgpack_pack_object(pk, *o);
}

/* The body with the edit applied, in sb (the caller destroys it). Asserts the edit found
 * its place, so that a mistyped path cannot pass as a refused body. */
static void edited(const uint8_t *body, size_t len, edit *e, msgpack_sbuffer *sb)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&u, (const char *)body, len, &off),
                          MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    e->hits = 0;
    repack(&pk, &u.data, "", e);
    msgpack_unpacked_destroy(&u);
    if (e->hits != 1)
        fprintf(stderr, "\n  edit of %s applied %d times\n", e->path, e->hits);
    CU_ASSERT_EQUAL_FATAL(e->hits, 1);
}

/* The bytes must be refused with bad_request, a message starting with `want`, and *out
 * left zeroed. */
static void expect_bad(const uint8_t *body, size_t len, const uint8_t *signer, const char *want,
                       const char *what)
{
    sdm_body out;
    memset(&out, 0x5a, sizeof(out));
    sdm_wire_error err;
    memset(&err, 0, sizeof(err));
    sdm_wire_code c = sdm_body_read(body, len, signer, &out, &err);
    int ok = c == SDM_WIRE_BAD_REQUEST && strncmp(err.message, want, strlen(want)) == 0;
    if (!ok)
        fprintf(stderr, "\n  %s: %s \"%s\", expected bad_request \"%s...\"\n", what,
                sdm_wire_code_name(c), err.message, want);
    CU_ASSERT(ok);
    CU_ASSERT(all_zero(&out, sizeof(out)));
    if (c == SDM_WIRE_OK)
        sdm_body_free(&out);
}

/* Applies one edit to body and expects it refused. */
static void expect_edit_bad(const uint8_t *body, size_t len, int op, const char *path, value v,
                            const char *want)
{
    edit e = {op, path, v, 0};
    msgpack_sbuffer sb;
    edited(body, len, &e, &sb);
    char what[160];
    snprintf(what, sizeof(what), "%s %s", op == E_SET ? "set" : op == E_DROP ? "drop" : "add",
             path);
    expect_bad((const uint8_t *)sb.data, sb.size, worker_pk, want, what);
    msgpack_sbuffer_destroy(&sb);
}

#define SET(path, v, want) expect_edit_bad(body, len, E_SET, path, v, want)
#define DROP(path, want) expect_edit_bad(body, len, E_DROP, path, (value){V_NIL, 0, 0, 0}, want)
#define ADD(path, v, want) expect_edit_bad(body, len, E_ADD, path, v, want)
#define UINT(x) ((value){V_UINT, (x), NULL, 0})
#define F64(x) ((value){V_F64, (x), NULL, 0})
#define F32(x) ((value){V_F32, (x), NULL, 0})
#define STR(s) ((value){V_STR, 0, (s), 0})
#define STRN(s, n) ((value){V_STRN, 0, (s), (n)})
#define BIN(n) ((value){V_BIN, 0, NULL, (n)})
#define BOOL(b) ((value){V_BOOL, (b), NULL, 0})
#define NEG ((value){V_NEG, 0, NULL, 0})
#define NIL ((value){V_NIL, 0, NULL, 0})
#define ARRAY0 ((value){V_ARRAY0, 0, NULL, 0})
#define MAP0 ((value){V_MAP0, 0, NULL, 0})

/* The edit helper itself: an edit that changes nothing the reader checks is accepted, so
 * refusals below come from the change and not from re-packing. */
static void test_repack_is_faithful(void)
{
    uint8_t *body;
    size_t len;
    make_proof(&body, &len);
    edit e = {E_SET, "request_id", STR("another"), 0};
    msgpack_sbuffer sb;
    edited(body, len, &e, &sb);
    sdm_body b;
    CU_ASSERT(read_ok((const uint8_t *)sb.data, sb.size, &b));
    CU_ASSERT_EQUAL(b.n_touches, 3);
    sdm_body_free(&b);
    msgpack_sbuffer_destroy(&sb);
    free(body);

    make_receipt(0, &body, &len);
    e = (edit){E_SET, "issued_at", UINT(5), 0};
    edited(body, len, &e, &sb);
    CU_ASSERT(read_ok((const uint8_t *)sb.data, sb.size, &b));
    CU_ASSERT_EQUAL(b.issued_at, 5);
    sdm_body_free(&b);
    msgpack_sbuffer_destroy(&sb);
    free(body);
}

/* A proof whose queries do not list the same pairs: a shard that another contributor holds
 * in query 1 is a pair of its own, added where it first appears. */
static void test_proof_distinct_pairs(void)
{
    uint8_t *body;
    size_t len;
    make_proof(&body, &len);
    edit e = {E_SET, "queries/1/shards/0/1", STR("bob"), 0};
    msgpack_sbuffer sb;
    edited(body, len, &e, &sb);
    sdm_body b;
    CU_ASSERT_FATAL(read_ok((const uint8_t *)sb.data, sb.size, &b));
    CU_ASSERT_EQUAL_FATAL(b.n_touches, 4);
    CU_ASSERT(touch_is(&b.touches[0], "alice", "s-a", 1.5, 0.75));
    CU_ASSERT(touch_is(&b.touches[1], "bob", "s-b", 1.75, 1.0));
    CU_ASSERT(touch_is(&b.touches[2], "alice", "s-c", -0.5, 0.25));
    CU_ASSERT(touch_is(&b.touches[3], "bob", "s-a", 0.0, 0.0));
    sdm_body_free(&b);
    msgpack_sbuffer_destroy(&sb);
    free(body);
}

/* ---- refused receipts ---------------------------------------------------------------------- */

static void test_receipt_keys(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    char want[96];
    for (int i = 0; i < 18; i++) {
        snprintf(want, sizeof(want), "entry.body.%s: missing", receipt_keys[i]);
        DROP(receipt_keys[i], want);
    }
    ADD("extra", UINT(1), "entry.body.extra: unknown key in a contribution body");
    /* keys of the other type are unknown here too */
    ADD("queries", ARRAY0, "entry.body.queries: unknown key");
    ADD("model", STR("model-a"), "entry.body.model: appears twice");
    ADD("\xff", UINT(1), "entry.body.\\xff: unknown key");
    free(body);
}

static void test_receipt_types(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    SET("v", STR("1"), "entry.body.v: expected the integer 1");
    SET("v", UINT(2), "entry.body.v: 2, expected 1");
    SET("type", UINT(1), "entry.body.type: expected a string");
    SET("type", STR("payment"), "entry.body.type: unknown type \"payment\"");
    SET("worker", STR("key"), "entry.body.worker: expected bin(32)");
    SET("worker", BIN(31), "entry.body.worker: 31 bytes, expected 32");
    SET("issued_at", F64(1.0), "entry.body.issued_at: expected a non-negative integer");
    SET("issued_at", NEG, "entry.body.issued_at: expected a non-negative integer");
    SET("model", UINT(5), "entry.body.model: expected a string");
    SET("checkpoint", NIL, "entry.body.checkpoint: expected a string");
    SET("lr", UINT(1), "entry.body.lr: expected float64");
    SET("lr", F32(0.25), "entry.body.lr: expected float64");
    SET("lr", F64(NAN), "entry.body.lr: nan, must be finite");
    SET("lr", F64(INFINITY), "entry.body.lr: inf, must be finite");
    SET("contributor", BOOL(1), "entry.body.contributor: expected a string");
    SET("shard", ARRAY0, "entry.body.shard: expected a string");
    SET("n", STR("12"), "entry.body.n: expected a non-negative integer");
    SET("batch", F64(6), "entry.body.batch: expected a non-negative integer");
    SET("leaf", STR("leaf"), "entry.body.leaf: expected bin(32)");
    SET("leaf", BIN(33), "entry.body.leaf: 33 bytes, expected 32");
    SET("store_size", NEG, "entry.body.store_size: expected a non-negative integer");
    SET("store_root", UINT(0), "entry.body.store_root: expected bin(32)");
    SET("store_root", BIN(0), "entry.body.store_root: 0 bytes, expected 32");
    SET("ids_digest", STR(""), "entry.body.ids_digest: expected bin(32)");
    SET("data_digest", NIL, "entry.body.data_digest: expected bin(32)");
    SET("weights_digest", MAP0, "entry.body.weights_digest: expected bin(32)");
    SET("curvature", UINT(1), "entry.body.curvature: expected true or false");
    free(body);
}

static void test_receipt_names(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    static char long_name[SDM_WIRE_MAX_NAME + 1];
    memset(long_name, 'x', sizeof(long_name));
    SET("model", STR(""), "entry.body.model: must not be empty");
    SET("model", STRN("a\0b", 3), "entry.body.model: contains a NUL byte");
    SET("checkpoint", STR("\xc3\x28"), "entry.body.checkpoint: not valid UTF-8");
    SET("checkpoint", STRN(long_name, SDM_WIRE_MAX_NAME + 1),
        "entry.body.checkpoint: 257 bytes, at most 256");
    SET("contributor", STR(""), "entry.body.contributor: must not be empty");
    SET("shard", STR("\xed\xa0\x80"), "entry.body.shard: not valid UTF-8"); /* a surrogate */
    free(body);
}

static void test_receipt_consistency(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    SET("leaf", BIN(32), "entry.body.leaf: does not match the receipt's fields");
    /* any field the leaf covers, changed, breaks the match */
    SET("checkpoint", STR("ckpt-2"), "entry.body.leaf: does not match the receipt's fields");
    SET("lr", F64(0.5), "entry.body.leaf: does not match the receipt's fields");
    SET("n", UINT(13), "entry.body.leaf: does not match the receipt's fields");
    SET("model", STR("model-b"), "entry.body.leaf: does not match the receipt's fields");
    SET("data_digest", BIN(32), "entry.body.leaf: does not match the receipt's fields");
    SET("curvature", BOOL(1), "entry.body.contributor: must be \"\" in a curvature batch");
    SET("batch", UINT(7), "entry.body.batch: 7, must be below store_size (7)");
    SET("store_size", UINT(0), "entry.body.batch: 6, must be below store_size (0)");
    expect_bad(body, len, (const uint8_t[32]){1}, "entry.body.worker: not the key that signed",
               "another signer");
    free(body);

    make_receipt(1, &body, &len);
    SET("contributor", STR("alice"), "entry.body.contributor: must be \"\" in a curvature batch");
    SET("shard", STR("alice/wiki"), "entry.body.shard: must be \"\" in a curvature batch");
    SET("ids_digest", BIN(32), "entry.body.ids_digest: a curvature batch has no example ids");
    SET("weights_digest", BIN(32), "entry.body.weights_digest: a curvature batch has no weights");
    SET("curvature", BOOL(0), "entry.body.contributor: must not be empty");
    free(body);
}

/* ---- refused proofs ------------------------------------------------------------------------ */

static void test_proof_keys(void)
{
    uint8_t *body;
    size_t len;
    make_proof(&body, &len);
    char want[96];
    for (int i = 0; i < 15; i++) {
        snprintf(want, sizeof(want), "entry.body.%s: missing", proof_keys[i]);
        DROP(proof_keys[i], want);
    }
    ADD("extra", UINT(1), "entry.body.extra: unknown key in an attribution body");
    ADD("leaf", BIN(32), "entry.body.leaf: unknown key");
    ADD("queries", ARRAY0, "entry.body.queries: appears twice");
    ADD("projection/extra", UINT(1), "entry.body.projection.extra: unknown key");
    DROP("projection/seed", "entry.body.projection.seed: missing");
    DROP("projection/s", "entry.body.projection.s: missing (kind sjlt)");
    ADD("checkpoints/1/step", UINT(1), "entry.body.checkpoints[1].step: unknown key");
    DROP("checkpoints/0/lr", "entry.body.checkpoints[0].lr: missing");
    DROP("queries/1/top", "entry.body.queries[1].top: missing");
    ADD("queries/0/score", F64(1), "entry.body.queries[0].score: unknown key");
    free(body);
}

static void test_proof_types(void)
{
    uint8_t *body;
    size_t len;
    make_proof(&body, &len);
    SET("v", F64(1), "entry.body.v: expected the integer 1");
    SET("v", UINT(2), "entry.body.v: 2, expected 1");
    SET("type", STR("attributions"), "entry.body.type: unknown type \"attributions\"");
    SET("worker", BIN(64), "entry.body.worker: 64 bytes, expected 32");
    SET("issued_at", STR("now"), "entry.body.issued_at: expected a non-negative integer");
    SET("model", BIN(4), "entry.body.model: expected a string");
    SET("projection", UINT(1), "entry.body.projection: expected a map");
    SET("projection/kind", STR("gauss"), "entry.body.projection.kind: must be none, rademacher");
    SET("projection/dim", F64(512), "entry.body.projection.dim: expected a non-negative integer");
    SET("projection/dim", UINT(0), "entry.body.projection.dim: 0, expected 1 to 65536");
    SET("projection/seed", NEG, "entry.body.projection.seed: expected a non-negative integer");
    SET("projection/input_dim", UINT(0), "entry.body.projection.input_dim: must be at least 1");
    SET("projection/s", UINT(3), "entry.body.projection.s: 3, must divide projection.dim");
    SET("method", UINT(0), "entry.body.method: must be dot, cosine or trak");
    SET("method", STR("median"), "entry.body.method: must be dot, cosine or trak");
    SET("lambda", STR("0.3"), "entry.body.lambda: expected an array");
    SET("lambda", ARRAY0, "entry.body.lambda: 0 values, expected 2 (one per checkpoint)");
    SET("lambda/1", F64(NAN), "entry.body.lambda[1]: nan, must be finite");
    SET("lambda/0", F32(0.125), "entry.body.lambda[0]: expected float64");
    SET("aggregate", STR("max"), "entry.body.aggregate: must be sum or mean");
    SET("checkpoints", MAP0, "entry.body.checkpoints: expected an array");
    SET("checkpoints", ARRAY0, "entry.body.checkpoints: must not be empty");
    SET("checkpoints/1", STR("ckpt-2"), "entry.body.checkpoints[1]: expected a map");
    SET("checkpoints/1/id", STR("ckpt-1"),
        "entry.body.checkpoints[1].id: the same id as checkpoints[0]");
    SET("checkpoints/0/id", STR(""), "entry.body.checkpoints[0].id: must not be empty");
    SET("checkpoints/0/lr", UINT(1), "entry.body.checkpoints[0].lr: expected float64");
    SET("checkpoints/1/lr", F64(-INFINITY), "entry.body.checkpoints[1].lr: -inf, must be finite");
    SET("store_size", F64(5), "entry.body.store_size: expected a non-negative integer");
    SET("store_root", STR("root"), "entry.body.store_root: expected bin(32)");
    SET("query_digest", BIN(16), "entry.body.query_digest: 16 bytes, expected 32");
    SET("request_id", UINT(17), "entry.body.request_id: expected a string");
    SET("request_id", STRN("r\0", 2), "entry.body.request_id: contains a NUL byte");
    SET("queries", MAP0, "entry.body.queries: expected an array");
    SET("queries/0", ARRAY0, "entry.body.queries[0]: expected a map");
    SET("queries/0/id", F64(1), "entry.body.queries[0].id: expected a non-negative integer or");
    SET("queries/0/id", STR("\xff"), "entry.body.queries[0].id: not valid UTF-8");
    SET("queries/1/shards", NIL, "entry.body.queries[1].shards: expected an array");
    SET("queries/1/shards/2", UINT(1), "entry.body.queries[1].shards[2]: expected an array");
    DROP("queries/0/shards/0/3", "entry.body.queries[0].shards[0]: expected an array [shard,");
    ADD("queries/0/shards/0/4", F64(0), "entry.body.queries[0].shards[0]: expected an array");
    SET("queries/0/shards/1/0", UINT(1), "entry.body.queries[0].shards[1][0]: expected a string");
    SET("queries/0/shards/1/1", STR(""), "entry.body.queries[0].shards[1][1]: must not be empty");
    SET("queries/1/shards/0/2", F32(0), "entry.body.queries[1].shards[0][2]: expected float64");
    SET("queries/1/shards/0/2", F64(NAN), "entry.body.queries[1].shards[0][2]: nan, must be");
    SET("queries/1/shards/2/2", F64(INFINITY), "entry.body.queries[1].shards[2][2]: inf, must be");
    SET("queries/0/shards/0/3", F64(1.5),
        "entry.body.queries[0].shards[0][3]: 1.5, expected a share in [0, 1]");
    SET("queries/0/shards/0/3", F64(-0.25),
        "entry.body.queries[0].shards[0][3]: -0.25, expected a share in [0, 1]");
    SET("queries/0/contributors", STR("alice"), "entry.body.queries[0].contributors: expected an");
    DROP("queries/0/contributors/1/2", "entry.body.queries[0].contributors[1]: expected an array");
    SET("queries/0/contributors/0/0", NIL, "entry.body.queries[0].contributors[0][0]: expected a");
    SET("queries/0/contributors/0/1", UINT(2),
        "entry.body.queries[0].contributors[0][1]: expected float64");
    SET("queries/1/contributors/1/2", F64(1.25),
        "entry.body.queries[1].contributors[1][2]: 1.25, expected a share in [0, 1]");
    SET("queries/1/contributors/1/2", F64(NAN),
        "entry.body.queries[1].contributors[1][2]: nan, must be finite");
    SET("queries/1/top", MAP0, "entry.body.queries[1].top: expected an array");
    SET("queries/1/top/0/0", STR("11"), "entry.body.queries[1].top[0][0]: expected a non-negative");
    SET("queries/1/top/0/0", NEG, "entry.body.queries[1].top[0][0]: expected a non-negative");
    SET("queries/1/top/1/1", STR(""), "entry.body.queries[1].top[1][1]: must not be empty");
    SET("queries/0/bottom/1/2", F64(-INFINITY), "entry.body.queries[0].bottom[1][2]: -inf");
    SET("queries/0/bottom/1/2", UINT(0), "entry.body.queries[0].bottom[1][2]: expected float64");
    ADD("queries/0/bottom/2", ARRAY0, "entry.body.queries[0].bottom[2]: expected an array");
    free(body);

    /* methods other than trak state no lambda */
    sdm_projection proj = {SDM_PROJ_RADEMACHER, 4096, 512, 0, 9};
    sdm_attr_result res = fixture_result();
    sdm_proof p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_DOT);
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    ADD("lambda/0", F64(0.5), "entry.body.lambda: 1 values, expected none (method dot)");
    ADD("projection/s", UINT(1), "entry.body.projection.s: only kind sjlt takes s");
    free(body);
    proj = (sdm_projection){SDM_PROJ_NONE, 64, 64, 0, 0};
    p = fixture_proof(worker_pk, &proj, &res, SDM_METHOD_DOT);
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    SET("projection/dim", UINT(32),
        "entry.body.projection.dim: 32, must equal projection.input_dim (64) for kind none");
    free(body);
}

/* ---- refused bytes ------------------------------------------------------------------------- */

static void test_bad_bytes(void)
{
    uint8_t *body;
    size_t len;
    make_receipt(0, &body, &len);
    uint8_t *more = malloc(len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(more);
    memcpy(more, body, len);
    more[len] = 0xc0;
    expect_bad(more, len + 1, worker_pk, "entry.body: msgpack: 1 trailing bytes", "trailing nil");
    free(more);
    /* every proper prefix is refused, none read past its end (the ASan build checks that) */
    for (size_t n = 1; n < len; n++) {
        uint8_t *cut = malloc(n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
        memcpy(cut, body, n);
        expect_bad(cut, n, worker_pk, "entry.body: msgpack: ", "truncated");
        free(cut);
    }
    expect_bad(body, 0, worker_pk, "entry.body: msgpack: empty frame", "empty");
    free(body);

    /* not a map at the top */
    static const uint8_t array[3] = {0x92, 0x01, 0x02};
    expect_bad(array, sizeof(array), worker_pk, "entry.body: expected a map", "array");
    static const uint8_t str[4] = {0xa3, 'a', 'b', 'c'};
    expect_bad(str, sizeof(str), worker_pk, "entry.body: expected a map", "string");
    static const uint8_t nil[1] = {0xc0};
    expect_bad(nil, sizeof(nil), worker_pk, "entry.body: expected a map", "nil");
    /* a map claiming 2^32-1 entries in five bytes: refused before anything is allocated */
    static const uint8_t huge[5] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    expect_bad(huge, sizeof(huge), worker_pk, "entry.body: msgpack: at byte 0", "huge map");
    static const uint8_t never[1] = {0xc1};
    expect_bad(never, sizeof(never), worker_pk, "entry.body: msgpack: at byte 0", "0xc1");

    /* a key that is not a string, and an empty map */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_uint64(&pk, 7);
    expect_bad((const uint8_t *)sb.data, sb.size, worker_pk, "entry.body: key 1 is not a string",
               "int key");
    msgpack_sbuffer_destroy(&sb);
    static const uint8_t empty_map[1] = {0x80};
    expect_bad(empty_map, sizeof(empty_map), worker_pk, "entry.body.v: missing", "empty map");
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("body", suite_setup, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "receipt read back", test_receipt);
    CU_add_test(s, "curvature receipt touches no one", test_curvature_receipt);
    CU_add_test(s, "proof read back, sums per pair and contributor", test_proof);
    CU_add_test(s, "proof with thousands of shards", test_proof_many_shards);
    CU_add_test(s, "envelope, then body", test_through_envelope);
    CU_add_test(s, "re-packed bodies still read", test_repack_is_faithful);
    CU_add_test(s, "proof pairs differing between queries", test_proof_distinct_pairs);
    CU_add_test(s, "receipt: missing, extra and repeated keys", test_receipt_keys);
    CU_add_test(s, "receipt: wrong types and lengths", test_receipt_types);
    CU_add_test(s, "receipt: bad names", test_receipt_names);
    CU_add_test(s, "receipt: leaf, curvature, batch, signer", test_receipt_consistency);
    CU_add_test(s, "proof: missing, extra and repeated keys", test_proof_keys);
    CU_add_test(s, "proof: wrong types, values and shapes", test_proof_types);
    CU_add_test(s, "malformed bytes", test_bad_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
