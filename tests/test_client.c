/* test_client.c - the C client and the `sediment` command line: .npy files, reply parsing,
 * a lying server, then every op and the CLI end to end against a live sediment-worker, and
 * the ledger ops, checkpoint and proof checks and auditing commands against a live
 * sediment-ledger. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "json.h"
#include "note.h"
#include "npy.h"
#include "sediment/client.h"
#include "sign.h"
#include "testdata.h"

static char s_dir[64]; /* this run's scratch directory */

static const char *scratch(const char *name)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", s_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(b, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    b[*n] = 0;
    return b;
}

static int contains(const char *haystack, const char *needle)
{
    return haystack && strstr(haystack, needle) != NULL;
}

/* contains(), saying what was missing where when it is not */
static int contains_or_say(const char *haystack, const char *needle)
{
    if (contains(haystack, needle))
        return 1;
    fprintf(stderr, "\n  expected \"%s\" in \"%s\"\n", needle, haystack ? haystack : "(null)");
    return 0;
}

#define ASSERT_CONTAINS(hay, needle) CU_ASSERT(contains_or_say((hay), (needle)))

/* ---- npy ----------------------------------------------------------------------------- */

static void test_npy_round_trip(void)
{
    char err[256];
    float f[6] = {1.5f, -2, 3, 4e-3f, 5, -6};
    uint64_t ids[4] = {0, 7, UINT64_MAX, 42};
    double w[3] = {0.25, -1e300, 3};
    uint16_t h[4] = {0x3c00, 0xbc00, 0x3f80, 0x0001};
    uint64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s22[2] = {2, 2}, s05[2] = {0, 5};
    struct {
        const char *name;
        sdm_npy_dtype dt;
        int ndim;
        const uint64_t *shape;
        const void *data;
        size_t bytes;
    } cases[] = {
        {"f4.npy", SDM_NPY_F4, 2, s23, f, sizeof(f)},
        {"u8.npy", SDM_NPY_U8, 1, s4, ids, sizeof(ids)},
        {"f8.npy", SDM_NPY_F8, 1, s3, w, sizeof(w)},
        {"f2.npy", SDM_NPY_F2, 2, s22, h, sizeof(h)},
        {"u2.npy", SDM_NPY_U2, 2, s22, h, sizeof(h)},
        {"empty.npy", SDM_NPY_F4, 2, s05, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = scratch(cases[i].name);
        CU_ASSERT_EQUAL_FATAL(sdm_npy_write(path, cases[i].dt, cases[i].ndim, cases[i].shape,
                                            cases[i].data, err, sizeof(err)),
                              0);
        /* NumPy aligns the data to 64 bytes; readers that mmap rely on it */
        size_t n;
        uint8_t *raw = read_bytes(path, &n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
        CU_ASSERT_EQUAL((n - cases[i].bytes) % 64, 0);
        CU_ASSERT_EQUAL(memcmp(raw, "\x93NUMPY\x01\x00", 8), 0);
        free(raw);

        sdm_npy a;
        CU_ASSERT_EQUAL_FATAL(sdm_npy_read(path, SDM_NPY_MASK(cases[i].dt), &a, err, sizeof(err)),
                              0);
        CU_ASSERT_EQUAL(a.dtype, cases[i].dt);
        CU_ASSERT_EQUAL(a.ndim, cases[i].ndim);
        CU_ASSERT_EQUAL(a.shape[0], cases[i].shape[0]);
        CU_ASSERT_EQUAL(a.shape[1], cases[i].ndim == 2 ? cases[i].shape[1] : 1);
        CU_ASSERT_EQUAL(a.n_bytes, cases[i].bytes);
        if (cases[i].bytes)
            CU_ASSERT_EQUAL(memcmp(a.data, cases[i].data, cases[i].bytes), 0);
        sdm_npy_free(&a);
        CU_ASSERT_PTR_NULL(a.data);
    }
}

/* A header as NumPy writes it, padded to 64 bytes, with the version asked for. */
static size_t make_npy(uint8_t *out, int major, const char *dict, const void *data, size_t data_len)
{
    size_t prefix = major == 1 ? 10 : 12;
    size_t dl = strlen(dict);
    size_t total = (prefix + dl + 1 + 63) / 64 * 64;
    size_t hlen = total - prefix;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    out[8] = (uint8_t)(hlen & 0xff);
    out[9] = (uint8_t)(hlen >> 8);
    if (major != 1) {
        out[10] = 0;
        out[11] = 0;
    }
    memcpy(out + prefix, dict, dl);
    memset(out + prefix + dl, ' ', hlen - dl - 1);
    out[total - 1] = '\n';
    if (data_len)
        memcpy(out + total, data, data_len);
    return total + data_len;
}

static void test_npy_versions_and_layouts(void)
{
    char err[256];
    uint8_t buf[512];
    float f[4] = {1, 2, 3, 4};
    /* version 2.0 (a 32-bit header length), double quotes, keys in another order, and no
     * trailing comma: all legal Python, all things NumPy or other writers produce */
    size_t n = make_npy(buf, 2, "{\"shape\": (2, 2), \"fortran_order\": False, \"descr\": \"<f4\"}",
                        f, sizeof(f));
    const char *path = scratch("v2.npy");
    write_bytes(path, buf, n);
    sdm_npy a;
    CU_ASSERT_EQUAL_FATAL(sdm_npy_read(path, SDM_NPY_ANY, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(a.shape[0], 2);
    CU_ASSERT_EQUAL(a.shape[1], 2);
    CU_ASSERT_EQUAL(((float *)a.data)[3], 4.0f);
    sdm_npy_free(&a);
    /* the in-memory parser agrees */
    CU_ASSERT_EQUAL(sdm_npy_parse(buf, n, "mem", SDM_NPY_ANY, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(a.n_bytes, sizeof(f));
    sdm_npy_free(&a);
    /* a 1-D array: shape (4,) */
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", f, sizeof(f));
    CU_ASSERT_EQUAL(sdm_npy_parse(buf, n, "mem", SDM_NPY_ANY, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(a.ndim, 1);
    CU_ASSERT_EQUAL(a.shape[0], 4);
    sdm_npy_free(&a);
}

/* Each bad file must fail, name the file, say what is wrong, and leave *out empty. */
static void expect_npy_error(const uint8_t *b, size_t n, unsigned accept, const char *want)
{
    const char *path = scratch("bad.npy");
    write_bytes(path, b, n);
    char err[256] = "";
    sdm_npy a;
    memset(&a, 0x5a, sizeof(a));
    CU_ASSERT_EQUAL(sdm_npy_read(path, accept, &a, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, want);
    ASSERT_CONTAINS(err, "bad.npy");
    CU_ASSERT_PTR_NULL(a.data);
    CU_ASSERT_EQUAL(a.n_bytes, 0);
    /* the memory parser gives the same verdict */
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_npy_parse(b, n, "mem.npy", accept, &a, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, want);
}

static void test_npy_rejects(void)
{
    uint8_t buf[512];
    float f[6] = {0};
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    size_t n = make_npy(buf, 1, good, f, sizeof(f));
    unsigned f4 = SDM_NPY_MASK(SDM_NPY_F4);

    uint8_t bad[512];
    memcpy(bad, buf, n);
    bad[1] = 'X';
    expect_npy_error(bad, n, f4, "wrong magic");
    expect_npy_error(buf, n - 1, f4, "truncated data");
    expect_npy_error(buf, 40, f4, "truncated");
    memcpy(bad, buf, n);
    bad[n] = 0;
    expect_npy_error(bad, n + 1, f4, "1 unexpected bytes after the data");
    expect_npy_error(buf, n, SDM_NPY_MASK(SDM_NPY_U8), "dtype '<f4', expected '<u8'");

    size_t m = make_npy(bad, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f,
                        sizeof(f));
    expect_npy_error(bad, m, f4, "fortran_order");
    m = make_npy(bad, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", f, 24);
    expect_npy_error(bad, m, SDM_NPY_ANY, "dtype '<i8'");
    m = make_npy(bad, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f,
                 sizeof(f));
    expect_npy_error(bad, m, f4, "big-endian");
    m = make_npy(bad, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", f,
                 sizeof(f));
    expect_npy_error(bad, m, f4, "3-dimensional");
    m = make_npy(bad, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f, 4);
    expect_npy_error(bad, m, f4, "0-dimensional");
    m = make_npy(bad, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", f, sizeof(f));
    expect_npy_error(bad, m, f4, "not a tuple");
    m = make_npy(bad, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", f,
                 sizeof(f));
    expect_npy_error(bad, m, f4, "unexpected or repeated key 'x'");
    m = make_npy(bad, 1, "{'descr': '<f4', 'shape': (2, 3), }", f, sizeof(f));
    expect_npy_error(bad, m, f4, "lacks 'fortran_order'");
    m = make_npy(bad, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f,
                 8);
    expect_npy_error(bad, m, SDM_NPY_ANY, "structured");
    m = make_npy(bad, 3, good, f, sizeof(f));
    expect_npy_error(bad, m, f4, "version 3.0");
    /* a shape whose byte size overflows must not turn into a small allocation */
    m = make_npy(bad, 1,
                 "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", f,
                 8);
    expect_npy_error(bad, m, SDM_NPY_ANY, "too large");

    char err[256];
    sdm_npy a;
    CU_ASSERT_EQUAL(sdm_npy_read(scratch("does-not-exist.npy"), f4, &a, err, sizeof(err)), -1);
    ASSERT_CONTAINS(err, "does-not-exist.npy");
}

/* ---- reply parsing ------------------------------------------------------------------- */

typedef struct packbuf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} packbuf;

static void pb_init(packbuf *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_bin(msgpack_packer *pk, const void *b, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

/* One query of a result: shards s1 (alice) and s2 (bob), top/bottom of one hit each. */
static void pk_query(msgpack_packer *pk, int str_id)
{
    msgpack_pack_map(pk, 5);
    pk_str(pk, "id");
    if (str_id)
        pk_str(pk, "q-seven");
    else
        msgpack_pack_uint64(pk, 7);
    pk_str(pk, "shards");
    msgpack_pack_array(pk, 2);
    msgpack_pack_array(pk, 4);
    pk_str(pk, "s1");
    pk_str(pk, "alice");
    msgpack_pack_double(pk, 2.5);
    msgpack_pack_double(pk, 1.0);
    msgpack_pack_array(pk, 4);
    pk_str(pk, "s2");
    pk_str(pk, "bob");
    msgpack_pack_double(pk, -1.0);
    msgpack_pack_double(pk, 0.0);
    pk_str(pk, "contributors");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    pk_str(pk, "alice");
    msgpack_pack_double(pk, 2.5);
    msgpack_pack_double(pk, 1.0);
    pk_str(pk, "top");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 1234567890123ull);
    pk_str(pk, "s1");
    msgpack_pack_double(pk, 0.75);
    pk_str(pk, "bottom");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 3);
    pk_str(pk, "s2");
    msgpack_pack_double(pk, -0.5);
}

static void test_reply_getters_and_json(void)
{
    packbuf p;
    pb_init(&p);
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7);
    msgpack_pack_map(&p.pk, 8);
    pk_str(&p.pk, "id");
    msgpack_pack_uint64(&p.pk, 5);
    pk_str(&p.pk, "ok");
    msgpack_pack_true(&p.pk);
    pk_str(&p.pk, "worker_key");
    pk_bin(&p.pk, key, 32);
    pk_str(&p.pk, "name");
    pk_str(&p.pk, "tab\there \"quoted\" \xe2\x82\xac and \xff");
    pk_str(&p.pk, "errors");
    msgpack_pack_map(&p.pk, 2);
    pk_str(&p.pk, "not_found");
    msgpack_pack_uint64(&p.pk, 3);
    pk_str(&p.pk, "conflict");
    msgpack_pack_uint64(&p.pk, 0);
    pk_str(&p.pk, "neg");
    msgpack_pack_int64(&p.pk, -12);
    pk_str(&p.pk, "x");
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_double(&p.pk, 0.1);
    msgpack_pack_float(&p.pk, 0.1f);
    msgpack_pack_double(&p.pk, NAN);
    pk_str(&p.pk, "result");
    msgpack_pack_array(&p.pk, 2);
    pk_query(&p.pk, 0);
    pk_query(&p.pk, 1);

    char err[256];
    sdm_reply_t *r = sdm_reply_parse((const uint8_t *)p.sb.data, p.sb.size, err, sizeof(err));
    msgpack_sbuffer_destroy(&p.sb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    uint64_t u;
    int64_t i64;
    double d;
    int b;
    size_t len;
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "errors.not_found", &u), 0);
    CU_ASSERT_EQUAL(u, 3);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "errors.busy", &u), -1);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "neg", &u), -1); /* negative is not a u64 */
    CU_ASSERT_EQUAL(sdm_reply_i64(r, "neg", &i64), 0);
    CU_ASSERT_EQUAL(i64, -12);
    CU_ASSERT_EQUAL(sdm_reply_f64(r, "x.0", &d), 0);
    CU_ASSERT_EQUAL(d, 0.1);
    CU_ASSERT_EQUAL(sdm_reply_f64(r, "x.3", &d), -1);
    CU_ASSERT_EQUAL(sdm_reply_bool(r, "ok", &b), 0);
    CU_ASSERT_EQUAL(b, 1);
    CU_ASSERT_PTR_NULL(sdm_reply_str(r, "ok"));
    const uint8_t *k = sdm_reply_bin(r, "worker_key", &len);
    CU_ASSERT_EQUAL(len, 32);
    CU_ASSERT(k && memcmp(k, key, 32) == 0);
    CU_ASSERT_EQUAL(sdm_reply_count(r, "errors"), 2);
    CU_ASSERT_STRING_EQUAL(sdm_reply_key(r, "errors", 1), "conflict");
    CU_ASSERT_PTR_NULL(sdm_reply_envelope(r, &len));

    /* the typed view of the result */
    CU_ASSERT_EQUAL_FATAL(sdm_reply_n_queries(r), 2);
    const sdm_query_result *q = sdm_reply_query(r, 0);
    CU_ASSERT_STRING_EQUAL(q->id, "7");
    CU_ASSERT_STRING_EQUAL(sdm_reply_query(r, 1)->id, "q-seven");
    CU_ASSERT_EQUAL_FATAL(q->n_shards, 2);
    CU_ASSERT_STRING_EQUAL(q->shards[1].shard, "s2");
    CU_ASSERT_STRING_EQUAL(q->shards[1].contributor, "bob");
    CU_ASSERT_EQUAL(q->shards[0].score, 2.5);
    CU_ASSERT_EQUAL(q->n_contributors, 1);
    CU_ASSERT_PTR_NULL(q->contributors[0].shard);
    CU_ASSERT_EQUAL(q->top[0].example_id, 1234567890123ull);
    CU_ASSERT_EQUAL(q->bottom[0].score, -0.5);
    CU_ASSERT_PTR_NULL(sdm_reply_query(r, 2));

    char *text = sdm_reply_json(r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    /* hex for binary, escapes, U+FFFD for the stray byte, shortest floats, null for NaN */
    ASSERT_CONTAINS(text, "\"worker_key\": \"00070e151c");
    ASSERT_CONTAINS(text, "\"tab\\u0009here \\\"quoted\\\" \xe2\x82\xac and \\ufffd\"");
    ASSERT_CONTAINS(text, "\"x\": [0.1, 0.1, null]");
    ASSERT_CONTAINS(text, "\"neg\": -12");
    ASSERT_CONTAINS(text, "[1234567890123, \"s1\", 0.75]");
    /* and it is JSON: the tests' reader takes it */
    const char *jpath = scratch("reply.json");
    write_bytes(jpath, text, strlen(text));
    json *j = json_load(jpath);
    CU_ASSERT_PTR_NOT_NULL(j);
    if (j) {
        const json *e = json_get(json_get(j, "errors"), "not_found");
        CU_ASSERT(e && e->type == JSON_NUMBER && e->number == 3);
        json_free(j);
    }
    free(text);
    sdm_reply_destroy(&r);
    CU_ASSERT_PTR_NULL(r);
    sdm_reply_destroy(&r);
}

/* The envelope inside a reply comes back as its exact bytes, whatever precedes it. */
static void test_reply_envelope_bytes(void)
{
    uint8_t blob[300];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)i;
    packbuf env;
    pb_init(&env);
    msgpack_pack_array(&env.pk, 4);
    pk_str(&env.pk, "sediment-signed-v1");
    pk_bin(&env.pk, blob, 300); /* bin16 */
    pk_bin(&env.pk, blob, 32);
    pk_bin(&env.pk, blob, 64);

    packbuf p;
    pb_init(&p);
    msgpack_pack_map(&p.pk, 4);
    pk_str(&p.pk, "a"); /* every kind of value the skipper must step over */
    msgpack_pack_array(&p.pk, 9);
    msgpack_pack_ext(&p.pk, 3, 7);
    msgpack_pack_ext_body(&p.pk, "xyz", 3);
    msgpack_pack_ext(&p.pk, 4, 1); /* fixext4 */
    msgpack_pack_ext_body(&p.pk, "abcd", 4);
    msgpack_pack_float(&p.pk, 1.5f);
    msgpack_pack_int64(&p.pk, -70000);
    msgpack_pack_uint64(&p.pk, UINT64_MAX);
    pk_str(&p.pk, "a string longer than thirty-one bytes, so str8");
    msgpack_pack_nil(&p.pk);
    msgpack_pack_map(&p.pk, 17); /* map16 */
    for (int i = 0; i < 17; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        pk_str(&p.pk, k);
        msgpack_pack_array(&p.pk, 0);
    }
    msgpack_pack_array(&p.pk, 16); /* array16 */
    for (int i = 0; i < 16; i++)
        msgpack_pack_true(&p.pk);
    pk_str(&p.pk, "receipt");
    msgpack_sbuffer_write(&p.sb, env.sb.data, env.sb.size);
    pk_str(&p.pk, "store_size");
    msgpack_pack_uint64(&p.pk, 3);
    pk_str(&p.pk, "z");
    msgpack_pack_nil(&p.pk);

    char err[256];
    sdm_reply_t *r = sdm_reply_parse((const uint8_t *)p.sb.data, p.sb.size, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    size_t len = 0;
    const uint8_t *got = sdm_reply_envelope(r, &len);
    CU_ASSERT_EQUAL(len, env.sb.size);
    CU_ASSERT(got && memcmp(got, env.sb.data, env.sb.size) == 0);
    /* and the JSON carries the same bytes as one hex string */
    char *text = sdm_reply_json(r);
    char *hex = malloc(2 * env.sb.size + 1);
    sdm_hex((const uint8_t *)env.sb.data, env.sb.size, hex);
    ASSERT_CONTAINS(text, hex);
    free(hex);
    free(text);
    sdm_reply_destroy(&r);
    msgpack_sbuffer_destroy(&p.sb);
    msgpack_sbuffer_destroy(&env.sb);
}

static void expect_parse_error(const uint8_t *b, size_t n, const char *want)
{
    char err[256] = "";
    sdm_reply_t *r = sdm_reply_parse(b, n, err, sizeof(err));
    CU_ASSERT_PTR_NULL(r);
    ASSERT_CONTAINS(err, want);
    sdm_reply_destroy(&r);
}

static void test_reply_rejects(void)
{
    /* an array claiming 2^32-1 elements in five bytes: refused before anything allocates */
    const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    char err[256] = "";
    CU_ASSERT_PTR_NULL(sdm_reply_parse(huge, sizeof(huge), err, sizeof(err)));
    CU_ASSERT(err[0] != 0);
    const uint8_t trailing[] = {0x80, 0x00};
    err[0] = 0;
    CU_ASSERT_PTR_NULL(sdm_reply_parse(trailing, sizeof(trailing), err, sizeof(err)));
    CU_ASSERT(err[0] != 0);
    const uint8_t array[] = {0x91, 0x01};
    expect_parse_error(array, sizeof(array), "not a map");
    const uint8_t intkey[] = {0x81, 0x01, 0x02};
    expect_parse_error(intkey, sizeof(intkey), "not a string");

    /* a result whose hit is not [id, shard, score] */
    packbuf p;
    pb_init(&p);
    msgpack_pack_map(&p.pk, 1);
    pk_str(&p.pk, "result");
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_map(&p.pk, 5);
    pk_str(&p.pk, "id");
    msgpack_pack_uint64(&p.pk, 0);
    pk_str(&p.pk, "shards");
    msgpack_pack_array(&p.pk, 0);
    pk_str(&p.pk, "contributors");
    msgpack_pack_array(&p.pk, 0);
    pk_str(&p.pk, "top");
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_array(&p.pk, 3);
    pk_str(&p.pk, "not-an-id");
    pk_str(&p.pk, "s");
    msgpack_pack_double(&p.pk, 1);
    pk_str(&p.pk, "bottom");
    msgpack_pack_array(&p.pk, 0);
    expect_parse_error((const uint8_t *)p.sb.data, p.sb.size, "queries[0].top[0]");
    msgpack_sbuffer_destroy(&p.sb);

    /* models lacking a store_root */
    pb_init(&p);
    msgpack_pack_map(&p.pk, 1);
    pk_str(&p.pk, "models");
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_map(&p.pk, 3);
    pk_str(&p.pk, "model");
    pk_str(&p.pk, "m");
    pk_str(&p.pk, "input_dim");
    msgpack_pack_uint64(&p.pk, 4);
    pk_str(&p.pk, "projection");
    msgpack_pack_map(&p.pk, 3);
    pk_str(&p.pk, "kind");
    pk_str(&p.pk, "none");
    pk_str(&p.pk, "dim");
    msgpack_pack_uint64(&p.pk, 4);
    pk_str(&p.pk, "seed");
    msgpack_pack_uint64(&p.pk, 0);
    expect_parse_error((const uint8_t *)p.sb.data, p.sb.size, "models[0].store_size");
    msgpack_sbuffer_destroy(&p.sb);
}

/* ---- a lying server ------------------------------------------------------------------ */

typedef enum fake_behaviour {
    FAKE_GOOD_STATS,
    FAKE_GARBAGE,
    FAKE_WRONG_ID,
    FAKE_UNKNOWN_CODE,
    FAKE_NOT_FOUND,
    FAKE_SILENT,
    FAKE_MISSING_LEAF,
    FAKE_RECEIPT_AS_BIN,
    FAKE_EXTRA_FRAME,
    /* ledger replies */
    FAKE_LEDGER_INFO_BAD_WORKER, /* workers: [bin 31] */
    FAKE_HASHES_SHORT,           /* inclusion: hashes [bin 31] */
    FAKE_ENTRY_AS_BIN,           /* entry: bin instead of an array */
    FAKE_HISTORY_BAD_INDEX,      /* entries: [{index: "x", ...}] */
    FAKE_REWARDS_NEGATIVE,       /* allocations: [["a", -1]] */
    FAKE_ENTRY,                  /* entry: [index] for the requested index */
    FAKE_ENTRY_SWAP,             /* takes two entry requests, answers the second first */
    FAKE_ENTRY_WRONG_ID,         /* entry with an id nobody asked for */
    FAKE_STOP,
} fake_behaviour;

typedef struct fake_server {
    void *ctx;
    void *sock;
    char endpoint[256];
    const fake_behaviour *script;
    pthread_t thread;
} fake_server;

/* The unsigned integer `key` of a request, or 0. */
static uint64_t request_uint(const void *data, size_t len, const char *key)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t id = 0;
    if (msgpack_unpack_next(&up, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
                memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                id = kv->val.via.u64;
        }
    msgpack_unpacked_destroy(&up);
    return id;
}

static uint64_t request_id(const void *data, size_t len)
{
    return request_uint(data, len, "id");
}

/* {"id", "ok": true, "entry": [index]}: an entry reply the client can tell apart. */
static void pack_fake_entry(packbuf *p, uint64_t id, uint64_t index)
{
    msgpack_pack_map(&p->pk, 3);
    pk_str(&p->pk, "id");
    msgpack_pack_uint64(&p->pk, id);
    pk_str(&p->pk, "ok");
    msgpack_pack_true(&p->pk);
    pk_str(&p->pk, "entry");
    msgpack_pack_array(&p->pk, 1);
    msgpack_pack_uint64(&p->pk, index);
}

static void fake_send(fake_server *fs, zmq_msg_t *ident, const packbuf *p)
{
    zmq_msg_send(ident, fs->sock, ZMQ_SNDMORE);
    zmq_send(fs->sock, "", 0, ZMQ_SNDMORE);
    zmq_send(fs->sock, p->sb.data, p->sb.size, 0);
}

static void *fake_main(void *arg)
{
    fake_server *fs = arg;
    for (const fake_behaviour *b = fs->script; *b != FAKE_STOP; b++) {
        zmq_msg_t ident, delim, body;
        zmq_msg_init(&ident);
        zmq_msg_init(&delim);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&ident, fs->sock, 0) < 0 || zmq_msg_recv(&delim, fs->sock, 0) < 0 ||
            zmq_msg_recv(&body, fs->sock, 0) < 0)
            break;
        uint64_t id = request_id(zmq_msg_data(&body), zmq_msg_size(&body));
        uint64_t index = request_uint(zmq_msg_data(&body), zmq_msg_size(&body), "index");
        packbuf p;
        pb_init(&p);
        uint8_t zero[32] = {0};
        switch (*b) {
        case FAKE_LEDGER_INFO_BAD_WORKER:
            msgpack_pack_map(&p.pk, 7);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "version");
            pk_str(&p.pk, "0.1.0");
            pk_str(&p.pk, "ledger_key");
            pk_bin(&p.pk, zero, 32);
            pk_str(&p.pk, "origin");
            pk_str(&p.pk, "o");
            pk_str(&p.pk, "size");
            msgpack_pack_uint64(&p.pk, 0);
            pk_str(&p.pk, "workers");
            msgpack_pack_array(&p.pk, 1);
            pk_bin(&p.pk, zero, 31);
            break;
        case FAKE_HASHES_SHORT:
            msgpack_pack_map(&p.pk, 4);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "leaf_hash");
            pk_bin(&p.pk, zero, 32);
            pk_str(&p.pk, "hashes");
            msgpack_pack_array(&p.pk, 2);
            pk_bin(&p.pk, zero, 32);
            pk_bin(&p.pk, zero, 31);
            break;
        case FAKE_ENTRY_AS_BIN:
            msgpack_pack_map(&p.pk, 3);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "entry");
            pk_bin(&p.pk, zero, 8);
            break;
        case FAKE_HISTORY_BAD_INDEX:
            msgpack_pack_map(&p.pk, 3);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "entries");
            msgpack_pack_array(&p.pk, 1);
            msgpack_pack_map(&p.pk, 1);
            pk_str(&p.pk, "index");
            pk_str(&p.pk, "x");
            break;
        case FAKE_REWARDS_NEGATIVE:
            msgpack_pack_map(&p.pk, 5);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "allocations");
            msgpack_pack_array(&p.pk, 1);
            msgpack_pack_array(&p.pk, 2);
            pk_str(&p.pk, "a");
            msgpack_pack_int64(&p.pk, -1);
            pk_str(&p.pk, "flagged");
            msgpack_pack_array(&p.pk, 0);
            pk_str(&p.pk, "unallocated");
            msgpack_pack_uint64(&p.pk, 0);
            break;
        case FAKE_ENTRY:
        case FAKE_ENTRY_WRONG_ID:
            pack_fake_entry(&p, *b == FAKE_ENTRY ? id : id + 100, index);
            break;
        case FAKE_ENTRY_SWAP: {
            zmq_msg_t ident2, delim2, body2;
            zmq_msg_init(&ident2);
            zmq_msg_init(&delim2);
            zmq_msg_init(&body2);
            if (zmq_msg_recv(&ident2, fs->sock, 0) >= 0 &&
                zmq_msg_recv(&delim2, fs->sock, 0) >= 0 && zmq_msg_recv(&body2, fs->sock, 0) >= 0) {
                packbuf p2;
                pb_init(&p2);
                pack_fake_entry(&p2, request_id(zmq_msg_data(&body2), zmq_msg_size(&body2)),
                                request_uint(zmq_msg_data(&body2), zmq_msg_size(&body2), "index"));
                fake_send(fs, &ident2, &p2);
                msgpack_sbuffer_destroy(&p2.sb);
            }
            zmq_msg_close(&ident2);
            zmq_msg_close(&delim2);
            zmq_msg_close(&body2);
            pack_fake_entry(&p, id, index);
            break;
        }
        case FAKE_GARBAGE: {
            const uint8_t g[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
            msgpack_sbuffer_write(&p.sb, (const char *)g, sizeof(g));
            break;
        }
        case FAKE_WRONG_ID:
        case FAKE_GOOD_STATS:
            msgpack_pack_map(&p.pk, 3);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, *b == FAKE_WRONG_ID ? id + 100 : id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "requests");
            msgpack_pack_uint64(&p.pk, 77);
            break;
        case FAKE_UNKNOWN_CODE:
        case FAKE_NOT_FOUND:
            msgpack_pack_map(&p.pk, 3);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_false(&p.pk);
            pk_str(&p.pk, "error");
            msgpack_pack_map(&p.pk, 2);
            pk_str(&p.pk, "code");
            pk_str(&p.pk, *b == FAKE_NOT_FOUND ? "not_found" : "teapot");
            pk_str(&p.pk, "message");
            pk_str(&p.pk, "model 'zz' is not registered");
            break;
        case FAKE_MISSING_LEAF:
        case FAKE_RECEIPT_AS_BIN:
            msgpack_pack_map(&p.pk, *b == FAKE_MISSING_LEAF ? 6 : 7);
            pk_str(&p.pk, "id");
            msgpack_pack_uint64(&p.pk, id);
            pk_str(&p.pk, "ok");
            msgpack_pack_true(&p.pk);
            pk_str(&p.pk, "batch");
            msgpack_pack_uint64(&p.pk, 0);
            if (*b != FAKE_MISSING_LEAF) {
                pk_str(&p.pk, "leaf");
                pk_bin(&p.pk, zero, 32);
            }
            pk_str(&p.pk, "store_size");
            msgpack_pack_uint64(&p.pk, 1);
            pk_str(&p.pk, "store_root");
            pk_bin(&p.pk, zero, 32);
            pk_str(&p.pk, "receipt");
            if (*b == FAKE_RECEIPT_AS_BIN) {
                pk_bin(&p.pk, zero, 8);
            } else {
                msgpack_pack_array(&p.pk, 4);
                pk_str(&p.pk, "sediment-signed-v1");
                pk_bin(&p.pk, zero, 1);
                pk_bin(&p.pk, zero, 32);
                pk_bin(&p.pk, zero, 32);
            }
            break;
        default:
            break;
        }
        if (*b != FAKE_SILENT) {
            zmq_msg_send(&ident, fs->sock, ZMQ_SNDMORE);
            zmq_send(fs->sock, "", 0, ZMQ_SNDMORE);
            zmq_send(fs->sock, p.sb.data, p.sb.size, *b == FAKE_EXTRA_FRAME ? ZMQ_SNDMORE : 0);
            if (*b == FAKE_EXTRA_FRAME)
                zmq_send(fs->sock, "x", 1, 0);
        }
        msgpack_sbuffer_destroy(&p.sb);
        zmq_msg_close(&ident);
        zmq_msg_close(&delim);
        zmq_msg_close(&body);
    }
    return NULL;
}

static int fake_start(fake_server *fs, const fake_behaviour *script)
{
    memset(fs, 0, sizeof(*fs));
    fs->script = script;
    fs->ctx = zmq_ctx_new();
    fs->sock = zmq_socket(fs->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(fs->sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_bind(fs->sock, "tcp://127.0.0.1:*") != 0)
        return -1;
    size_t n = sizeof(fs->endpoint);
    zmq_getsockopt(fs->sock, ZMQ_LAST_ENDPOINT, fs->endpoint, &n);
    return pthread_create(&fs->thread, NULL, fake_main, fs);
}

static void fake_stop(fake_server *fs)
{
    pthread_join(fs->thread, NULL);
    zmq_close(fs->sock);
    zmq_ctx_term(fs->ctx);
}

static void test_untrusted_server(void)
{
    static const fake_behaviour script[] = {
        FAKE_GOOD_STATS,  FAKE_GARBAGE,    FAKE_GOOD_STATS, FAKE_WRONG_ID,     FAKE_UNKNOWN_CODE,
        FAKE_NOT_FOUND,   FAKE_SILENT,     FAKE_GOOD_STATS, FAKE_MISSING_LEAF, FAKE_RECEIPT_AS_BIN,
        FAKE_EXTRA_FRAME, FAKE_GOOD_STATS, FAKE_STOP};
    fake_server fs;
    CU_ASSERT_EQUAL_FATAL(fake_start(&fs, script), 0);
    sdm_client_opts o = {.timeout_ms = 400};
    char err[256];
    sdm_client_t *c = sdm_client_new(fs.endpoint, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r = NULL;
    uint64_t u = 0;

    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "requests", &u), 0);
    CU_ASSERT_EQUAL(u, 77);
    sdm_reply_destroy(&r);

    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_BAD_REPLY);
    CU_ASSERT_PTR_NULL(r);
    ASSERT_CONTAINS(sdm_client_last_error(c), "msgpack");
    /* the client recovers from a bad reply */
    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_STRING_EQUAL(sdm_client_last_error(c), "");
    sdm_reply_destroy(&r);

    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "id");

    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "unknown code 'teapot'");

    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_NOT_FOUND);
    CU_ASSERT_EQUAL(sdm_client_last_status(c), SDM_CLIENT_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(sdm_client_last_error(c), "model 'zz' is not registered");
    CU_ASSERT_STRING_EQUAL(sdm_client_status_str(SDM_CLIENT_NOT_FOUND), "not_found");
    CU_ASSERT(sdm_client_status_is_server(SDM_CLIENT_NOT_FOUND));

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CU_ASSERT(waited >= 0.35 && waited < 10.0);
    CU_ASSERT(!sdm_client_status_is_server(SDM_CLIENT_TIMEOUT));
    /* after a timeout the next request gets its own answer */
    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_OK);
    sdm_reply_destroy(&r);

    float g[4] = {1, 2, 3, 4};
    uint64_t ids[1] = {9};
    sdm_batch b = {"c", 1.0, "alice", "s", 0, ids, {SDM_F32, 1, 4, g}, 0, NULL};
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "m", &b, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "'leaf'");
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "m", &b, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "'receipt'");
    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "frame");
    CU_ASSERT_EQUAL(sdm_client_stats(c, &r), SDM_CLIENT_OK);
    sdm_reply_destroy(&r);

    /* arguments that cannot be sent fail here, and send nothing */
    sdm_batch nb = b;
    nb.ids = NULL;
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "m", &nb, &r), SDM_CLIENT_BAD_ARGUMENT);
    ASSERT_CONTAINS(sdm_client_last_error(c), "example_ids");
    nb = b;
    nb.rows.dtype = (sdm_dtype)9;
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "m", &nb, &r), SDM_CLIENT_BAD_ARGUMENT);
    ASSERT_CONTAINS(sdm_client_last_error(c), "grads.dtype");
    sdm_client_destroy(&c);
    CU_ASSERT_PTR_NULL(c);
    fake_stop(&fs);
}

static void test_client_new_rejects(void)
{
    char err[256] = "";
    CU_ASSERT_PTR_NULL(sdm_client_new("nope://where", NULL, err, sizeof(err)));
    ASSERT_CONTAINS(err, "nope://where");
    char pub[41], sec[41];
    CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(pub, sec), 0);
    sdm_client_opts o = {.server_key = pub, .public_key = pub};
    CU_ASSERT_PTR_NULL(sdm_client_new("tcp://127.0.0.1:1", &o, err, sizeof(err)));
    ASSERT_CONTAINS(err, "together");
    o.secret_key = "too short";
    CU_ASSERT_PTR_NULL(sdm_client_new("tcp://127.0.0.1:1", &o, err, sizeof(err)));
    ASSERT_CONTAINS(err, "secret_key");
    o.secret_key = sec;
    sdm_client_t *c = sdm_client_new("tcp://127.0.0.1:1", &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(c);
    sdm_client_destroy(&c);
}

typedef struct fake_entries_ctx {
    uint64_t next;
    int ok;
} fake_entries_ctx;

/* Each fake entry is [index]: it must come in order and be the one asked for. */
static int check_fake_entry(void *ctx, uint64_t index, const uint8_t *env, size_t len)
{
    fake_entries_ctx *fc = ctx;
    if (index != fc->next || len != 2 || env[0] != 0x91 || env[1] != (uint8_t)index)
        fc->ok = 0;
    fc->next = index + 1;
    return 0;
}

/* Ledger replies that lie about their fields are refused; pipelined entries answered out
 * of order are still delivered in order; a reply to a request nobody made is refused. */
static void test_untrusted_ledger(void)
{
    static const fake_behaviour script[] = {
        FAKE_LEDGER_INFO_BAD_WORKER, FAKE_HASHES_SHORT, FAKE_HASHES_SHORT, FAKE_ENTRY_AS_BIN,
        FAKE_HISTORY_BAD_INDEX, FAKE_REWARDS_NEGATIVE,
        /* entries 0..5 with a window of 3: 0, then 2 before 1, then 3, then 5 before 4 */
        FAKE_ENTRY, FAKE_ENTRY_SWAP, FAKE_ENTRY, FAKE_ENTRY_SWAP,
        /* entries 0..3 with a window of 2: 0, then an id no request had */
        FAKE_ENTRY, FAKE_ENTRY_WRONG_ID, FAKE_STOP};
    fake_server fs;
    CU_ASSERT_EQUAL_FATAL(fake_start(&fs, script), 0);
    sdm_client_opts o = {.timeout_ms = 2000};
    char err[256];
    sdm_client_t *c = sdm_client_new(fs.endpoint, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r = NULL;
    CU_ASSERT_EQUAL(sdm_client_ledger_info(c, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "workers[0]");
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(sdm_client_ledger_inclusion(c, 0, 2, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "hashes[1]");
    CU_ASSERT_EQUAL(sdm_client_ledger_consistency(c, 1, 2, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "hashes[1]");
    CU_ASSERT_EQUAL(sdm_client_ledger_entry(c, 0, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "'entry'");
    CU_ASSERT_EQUAL(sdm_client_ledger_history(c, "a", NULL, 0, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "entries[0].index");
    CU_ASSERT_EQUAL(sdm_client_ledger_rewards(c, 10, NULL, NULL, &r), SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "allocations[0]");
    CU_ASSERT_PTR_NULL(r);

    fake_entries_ctx fc = {0, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 0, 6, 3, check_fake_entry, &fc), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(fc.next, 6);
    CU_ASSERT(fc.ok);
    fc = (fake_entries_ctx){0, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 0, 4, 2, check_fake_entry, &fc),
                    SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(sdm_client_last_error(c), "does not echo");
    CU_ASSERT_EQUAL(fc.next, 1);
    sdm_client_destroy(&c);
    fake_stop(&fs);
}

/* ---- a live worker ------------------------------------------------------------------- */

typedef struct live_worker {
    pid_t pid;
    char endpoint[256];
} live_worker;

static live_worker s_w = {-1, ""};
static char s_bin[512];
static char s_worker_key[65]; /* hex, from info */

static const char *sdm_bin(void)
{
    const char *b = getenv("SDM_BIN");
    return b && *b ? b : "build/bin";
}

/* Starts build/bin/<prog> with `--listen tcp://127.0.0.1:0 --data data_dir`, then `base`
 * and `extra` (both NULL-terminated, may be NULL), stdout to the scratch file out_name, and
 * reads the endpoint from its first line (up to 20 s). */
static int start_server(live_worker *w, const char *prog, const char *data_dir,
                        const char *out_name, const char *const *base, const char *const *extra)
{
    char exe[600], out[512];
    snprintf(exe, sizeof(exe), "%s/%s", sdm_bin(), prog);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "\n  %s is not there (set SDM_BIN): %s\n", exe, strerror(errno));
        return -1;
    }
    snprintf(out, sizeof(out), "%s", scratch(out_name));
    const char *argv[32] = {exe, "--listen", "tcp://127.0.0.1:0", "--data", data_dir};
    int argc = 5;
    for (int i = 0; base && base[i] && argc < 30; i++)
        argv[argc++] = base[i];
    for (int i = 0; extra && extra[i] && argc < 30; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
        close(fd);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    w->pid = pid;
    for (int i = 0; i < 400; i++) {
        size_t n;
        uint8_t *b = read_bytes(out, &n);
        char *nl = b ? strchr((char *)b, '\n') : NULL;
        if (nl) {
            *nl = 0;
            snprintf(w->endpoint, sizeof(w->endpoint), "%s", (char *)b);
            free(b);
            return 0;
        }
        free(b);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "\n  %s exited before printing its endpoint\n", prog);
            w->pid = -1;
            return -1;
        }
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    w->pid = -1;
    return -1;
}

/* sediment-worker on the cpu backend, two threads, quiet. */
static int start_worker(live_worker *w, const char *data_dir, const char *out_name,
                        const char *const *extra)
{
    static const char *const base[] = {"--backend", "cpu", "--threads", "2", "--quiet", NULL};
    return start_server(w, "sediment-worker", data_dir, out_name, base, extra);
}

/* SIGTERM and the exit status (-1 when it did not exit within 20 s or was killed). */
static int stop_worker(live_worker *w)
{
    if (w->pid <= 0)
        return -1;
    kill(w->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 400; i++) {
        if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
            w->pid = -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        usleep(50000);
    }
    kill(w->pid, SIGKILL);
    waitpid(w->pid, NULL, 0);
    w->pid = -1;
    return -1;
}

static int live_setup(void)
{
    return start_worker(&s_w, scratch("data"), "worker.out", NULL);
}

static int live_teardown(void)
{
    if (s_w.pid > 0)
        stop_worker(&s_w);
    return 0;
}

static sdm_client_t *live_client(void)
{
    sdm_client_opts o = {.timeout_ms = 20000};
    char err[256];
    sdm_client_t *c = sdm_client_new(s_w.endpoint, &o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "\n  client: %s\n", err);
    return c;
}

#define D 6
#define K 6

static void test_live_info_register(void)
{
    sdm_client_t *c = live_client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r;
    CU_ASSERT_EQUAL_FATAL(sdm_client_info(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(r, "version"), SDM_VERSION);
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(r, "backend"), "cpu");
    size_t klen = 0;
    const uint8_t *key = sdm_reply_bin(r, "worker_key", &klen);
    CU_ASSERT_EQUAL_FATAL(klen, 32);
    sdm_hex(key, 32, s_worker_key);
    CU_ASSERT_EQUAL(sdm_reply_n_models(r), 0);
    sdm_reply_destroy(&r);

    /* "none": the features are the gradients, so expected scores are plain dot products */
    sdm_projection p = {SDM_PROJ_NONE, D, K, 0, 0};
    CU_ASSERT_EQUAL_FATAL(sdm_client_register(c, "plain", &p, &r), SDM_CLIENT_OK);
    int created = 0;
    CU_ASSERT_EQUAL(sdm_reply_bool(r, "created", &created), 0);
    CU_ASSERT_EQUAL(created, 1);
    sdm_reply_destroy(&r);
    CU_ASSERT_EQUAL(sdm_client_register(c, "plain", &p, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_bool(r, "created", &created), 0);
    CU_ASSERT_EQUAL(created, 0);
    sdm_reply_destroy(&r);

    sdm_projection other = {SDM_PROJ_SJLT, D, 3, 3, 5};
    CU_ASSERT_EQUAL(sdm_client_register(c, "plain", &other, &r), SDM_CLIENT_CONFLICT);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT(strlen(sdm_client_last_error(c)) > 0);
    CU_ASSERT_EQUAL(sdm_client_register(c, "sj", &other, &r), SDM_CLIENT_OK);
    sdm_reply_destroy(&r);
    sdm_projection bad = {SDM_PROJ_NONE, D, K + 1, 0, 0};
    CU_ASSERT_EQUAL(sdm_client_register(c, "bad", &bad, &r), SDM_CLIENT_BAD_REQUEST);
    ASSERT_CONTAINS(sdm_client_last_error(c), "dim");

    CU_ASSERT_EQUAL_FATAL(sdm_client_info(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_reply_n_models(r), 2);
    const sdm_model_info *m = sdm_reply_model(r, 1);
    CU_ASSERT_STRING_EQUAL(m->model, "sj");
    CU_ASSERT_STRING_EQUAL(m->kind, "sjlt");
    CU_ASSERT_EQUAL(m->dim, 3);
    CU_ASSERT_EQUAL(m->s, 3);
    CU_ASSERT_EQUAL(m->seed, 5);
    CU_ASSERT_EQUAL(m->store_size, 0);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&c);
}

/* The training data of the live suite: two shards, five examples, at checkpoint "c0". */
static float s_x[5][D];
static const uint64_t s_ids[5] = {100, 101, 102, 200, 201};
static const double s_wts[2] = {2.0, 0.5}; /* bob's two examples */
#define LR 0.5

static void fill_data(void)
{
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < D; j++)
            s_x[i][j] = (float)((i + 1) * (j % 3 == 0 ? 1 : -1)) * 0.25f + (float)j * 0.125f;
}

static void test_live_contribute(void)
{
    fill_data();
    sdm_client_t *c = live_client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r;
    sdm_batch b = {"c0", LR, "alice", "a", 0, s_ids, {SDM_F32, 3, D, s_x}, 0, NULL};
    CU_ASSERT_EQUAL_FATAL(sdm_client_contribute(c, "plain", &b, &r), SDM_CLIENT_OK);
    uint64_t batch = 9, size = 0;
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "batch", &batch), 0);
    CU_ASSERT_EQUAL(batch, 0);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "store_size", &size), 0);
    CU_ASSERT_EQUAL(size, 1);

    /* the leaf is the hash of what we sent (SPEC §5), computed here independently */
    sdm_leaf_fields lf = {"plain", "c0", LR, "alice", "a", 3, {0}, {0}, {0}, 0};
    sdm_digest_ids(s_ids, 3, lf.ids_digest);
    sdm_digest_bytes((const uint8_t *)s_x, 3 * D * sizeof(float), lf.data_digest);
    sdm_digest_weights(NULL, 0, lf.weights_digest);
    uint8_t want[32];
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_hash(&lf, want), 0);
    size_t len;
    const uint8_t *leaf = sdm_reply_bin(r, "leaf", &len);
    CU_ASSERT(leaf && len == 32 && memcmp(leaf, want, 32) == 0);
    /* with one leaf, the root is the leaf (RFC 9162) */
    const uint8_t *root = sdm_reply_bin(r, "store_root", &len);
    CU_ASSERT(root && memcmp(root, want, 32) == 0);

    /* the receipt is signed by the worker's key and says the same */
    const uint8_t *env = sdm_reply_envelope(r, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    sdm_reply_t *body = NULL;
    uint8_t signer[32];
    char err[256], hex[65];
    CU_ASSERT_EQUAL_FATAL(sdm_client_open_envelope(env, len, &body, signer, err, sizeof(err)),
                          SDM_CLIENT_OK);
    sdm_hex(signer, 32, hex);
    CU_ASSERT_STRING_EQUAL(hex, s_worker_key);
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(body, "type"), "contribution");
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(body, "shard"), "a");
    CU_ASSERT(memcmp(sdm_reply_bin(body, "leaf", &len), want, 32) == 0);
    /* a changed byte in the envelope breaks the signature */
    size_t env_len;
    env = sdm_reply_envelope(r, &env_len);
    uint8_t *copy = malloc(env_len);
    memcpy(copy, env, env_len);
    copy[env_len - 1] ^= 0x01;
    sdm_reply_t *body2 = NULL;
    CU_ASSERT_EQUAL(sdm_client_open_envelope(copy, env_len, &body2, signer, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    CU_ASSERT_PTR_NULL(body2);
    free(copy);
    sdm_reply_destroy(&body);
    sdm_reply_destroy(&r);

    /* bob's batch with weights, then curvature rows */
    sdm_batch b2 = {"c0", LR, "bob", "b", 0, s_ids + 3, {SDM_F32, 2, D, s_x[3]}, 0, s_wts};
    CU_ASSERT_EQUAL_FATAL(sdm_client_contribute(c, "plain", &b2, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "batch", &batch), 0);
    CU_ASSERT_EQUAL(batch, 1);
    sdm_reply_destroy(&r);
    sdm_batch cv = {"c0", LR, NULL, NULL, 1, NULL, {SDM_F32, 2, D, s_x[0]}, 0, NULL};
    CU_ASSERT_EQUAL_FATAL(sdm_client_contribute(c, "plain", &cv, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "store_size", &size), 0);
    CU_ASSERT_EQUAL(size, 3);
    sdm_reply_destroy(&r);

    /* error replies, mapped to their codes; none changes the store */
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "plain", &b, &r), SDM_CLIENT_CONFLICT);
    ASSERT_CONTAINS(sdm_client_last_error(c), "100");
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "no-such-model", &b, &r), SDM_CLIENT_NOT_FOUND);
    ASSERT_CONTAINS(sdm_client_last_error(c), "no-such-model");
    sdm_batch neg = b;
    neg.lr = -1;
    neg.checkpoint = "c9";
    CU_ASSERT_EQUAL(sdm_client_contribute(c, "plain", &neg, &r), SDM_CLIENT_BAD_REQUEST);
    ASSERT_CONTAINS(sdm_client_last_error(c), "lr");
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL_FATAL(sdm_client_info(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_model(r, 0)->store_size, 3);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&c);
}

static void test_live_attribute(void)
{
    sdm_client_t *c = live_client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    float q[2][D];
    for (int j = 0; j < D; j++) {
        q[0][j] = (float)(j + 1) * 0.5f;
        q[1][j] = j % 2 ? -1.0f : 0.25f;
    }
    sdm_query qs = {"c0", {SDM_F32, 2, D, q}, 1, NAN};
    uint64_t qids[2] = {70, 71};
    sdm_client_attr a = {.model = "plain",
                         .n_queries = 1,
                         .queries = &qs,
                         .method = SDM_METHOD_DOT,
                         .aggregate = SDM_AGG_SUM,
                         .topk = 2,
                         .query_ids = qids,
                         .request_id = "req-1"};
    sdm_reply_t *r;
    CU_ASSERT_EQUAL_FATAL(sdm_client_attribute(c, &a, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_reply_n_queries(r), 2);
    /* expected: S[q][i] = lr * w_i * q . x_i; shard sums; top-2 by score */
    for (int qi = 0; qi < 2; qi++) {
        double s[5], shard_a = 0, shard_b = 0;
        for (int i = 0; i < 5; i++) {
            double dot = 0;
            for (int j = 0; j < D; j++)
                dot += (double)q[qi][j] * s_x[i][j];
            s[i] = LR * dot * (i < 3 ? 1.0 : s_wts[i - 3]);
            *(i < 3 ? &shard_a : &shard_b) += s[i];
        }
        const sdm_query_result *res = sdm_reply_query(r, (size_t)qi);
        CU_ASSERT_STRING_EQUAL(res->id, qi ? "71" : "70");
        CU_ASSERT_EQUAL_FATAL(res->n_shards, 2);
        for (size_t k = 0; k < 2; k++) {
            double want = strcmp(res->shards[k].shard, "a") == 0 ? shard_a : shard_b;
            CU_ASSERT(test_close(res->shards[k].score, want, 1e-5, 1e-6));
        }
        CU_ASSERT_EQUAL_FATAL(res->n_top, 2);
        int best = 0;
        for (int i = 1; i < 5; i++)
            if (s[i] > s[best])
                best = i;
        CU_ASSERT_EQUAL(res->top[0].example_id, s_ids[best]);
        CU_ASSERT(test_close(res->top[0].score, s[best], 1e-5, 1e-6));
        CU_ASSERT_EQUAL(res->n_bottom, 2);
        double share_sum = 0;
        for (size_t k = 0; k < res->n_shards; k++)
            share_sum += res->shards[k].share;
        CU_ASSERT(fabs(share_sum - 1.0) < 1e-9 || share_sum == 0);
    }
    /* the proof commits to the store it used and to this request */
    size_t len;
    const uint8_t *env = sdm_reply_envelope(r, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    sdm_reply_t *body = NULL;
    uint8_t signer[32];
    char err[256];
    CU_ASSERT_EQUAL_FATAL(sdm_client_open_envelope(env, len, &body, signer, err, sizeof(err)),
                          SDM_CLIENT_OK);
    uint64_t size = 0;
    CU_ASSERT_EQUAL(sdm_reply_u64(body, "store_size", &size), 0);
    CU_ASSERT_EQUAL(size, 3);
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(body, "request_id"), "req-1");
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(body, "type"), "attribution");
    CU_ASSERT_EQUAL(sdm_reply_n_queries(body), 2);
    CU_ASSERT_EQUAL(sdm_reply_query(body, 0)->top[0].example_id,
                    sdm_reply_query(r, 0)->top[0].example_id);
    sdm_reply_destroy(&body);
    sdm_reply_destroy(&r);

    a.model = "missing";
    CU_ASSERT_EQUAL(sdm_client_attribute(c, &a, &r), SDM_CLIENT_NOT_FOUND);
    a.model = "plain";
    qs.checkpoint = "no-such-checkpoint";
    sdm_client_status st = sdm_client_attribute(c, &a, &r);
    CU_ASSERT(st == SDM_CLIENT_NOT_FOUND || st == SDM_CLIENT_BAD_REQUEST);
    ASSERT_CONTAINS(sdm_client_last_error(c), "no-such-checkpoint");
    qs.checkpoint = "c0";
    a.topk = 100001;
    CU_ASSERT_EQUAL(sdm_client_attribute(c, &a, &r), SDM_CLIENT_BAD_REQUEST);
    ASSERT_CONTAINS(sdm_client_last_error(c), "topk");
    sdm_client_destroy(&c);
}

static void test_live_stats(void)
{
    sdm_client_t *c = live_client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r;
    CU_ASSERT_EQUAL_FATAL(sdm_client_stats(c, &r), SDM_CLIENT_OK);
    uint64_t v = 0;
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "ops.contribute", &v), 0);
    CU_ASSERT(v >= 5);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "errors.conflict", &v), 0);
    CU_ASSERT(v >= 2);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "errors.not_found", &v), 0);
    CU_ASSERT(v >= 2);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "batches", &v), 0);
    CU_ASSERT_EQUAL(v, 3);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "examples", &v), 0);
    CU_ASSERT_EQUAL(v, 7);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&c);
}

/* ---- the command line ---------------------------------------------------------------- */

/* Runs `sediment ARGS` with stdout and stderr to scratch files; returns the exit status
 * (-1 when it did not exit normally). */
static int cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int cli(const char *fmt, ...)
{
    char args[2048], cmd[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s > %s/cli.out 2> %s/cli.err", s_bin, args, s_dir, s_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *cli_output(const char *which)
{
    size_t n;
    char name[32];
    snprintf(name, sizeof(name), "cli.%s", which);
    return (char *)read_bytes(scratch(name), &n);
}

static json *cli_json(void)
{
    json *j = json_load(scratch("cli.out"));
    if (!j) {
        char *o = cli_output("out");
        fprintf(stderr, "\n  not JSON: %s\n", o ? o : "(none)");
        free(o);
    }
    return j;
}

static double json_num(const json *j, const char *key)
{
    const json *v = json_get(j, key);
    return v && v->type == JSON_NUMBER ? v->number : -1;
}

static const char *json_s(const json *j, const char *key)
{
    const json *v = json_get(j, key);
    return v && v->type == JSON_STRING ? v->string : "";
}

static void test_cli_end_to_end(void)
{
    const char *E = s_w.endpoint;
    /* --help for the tool and each command */
    CU_ASSERT_EQUAL(cli("--help"), 0);
    char *o = cli_output("out");
    ASSERT_CONTAINS(o, "attribute");
    free(o);
    const char *cmds[] = {"info",  "register", "contribute", "attribute",
                          "stats", "verify",   "keygen"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        CU_ASSERT_EQUAL(cli("%s --help", cmds[i]), 0);
        o = cli_output("out");
        char want[64];
        snprintf(want, sizeof(want), "usage: sediment %s", cmds[i]);
        ASSERT_CONTAINS(o, want);
        free(o);
    }

    /* info: one JSON object, the same key the C client saw */
    CU_ASSERT_EQUAL_FATAL(cli("--endpoint %s --json info", E), 0);
    json *j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(json_s(j, "worker_key"), s_worker_key);
    CU_ASSERT_STRING_EQUAL(json_s(j, "backend"), "cpu");
    json_free(j);

    CU_ASSERT_EQUAL(cli("--endpoint %s register --model cli --input-dim 8 --kind rademacher "
                        "--dim 4 --seed 11",
                        E),
                    0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "registered model cli");
    free(o);
    CU_ASSERT_EQUAL(cli("--endpoint %s --json register --model cli --input-dim 8 --kind sjlt "
                        "--dim 4 --seed 11",
                        E),
                    1);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(json_s(json_get(j, "error"), "code"), "conflict");
    json_free(j);

    /* .npy inputs: float64 gradients (sent as float32), uint64 ids, float64 weights */
    char err[256];
    double g[3][8];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 8; k++)
            g[i][k] = (i + 1) * 0.5 - k * 0.25;
    uint64_t ids[3] = {1, 2, 3}, gshape[2] = {3, 8}, n3[1] = {3}, qshape[2] = {2, 8};
    double w[3] = {1, 0.5, 0.25};
    float q[2][8];
    for (int k = 0; k < 8; k++) {
        q[0][k] = (float)k;
        q[1][k] = -1.0f;
    }
    uint16_t qb[2][8];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 8; k++)
            qb[i][k] = sdm_f32_to_bf16(q[i][k]);
    CU_ASSERT_EQUAL_FATAL(
        sdm_npy_write(scratch("g.npy"), SDM_NPY_F8, 2, gshape, g, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(
        sdm_npy_write(scratch("ids.npy"), SDM_NPY_U8, 1, n3, ids, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(sdm_npy_write(scratch("w.npy"), SDM_NPY_F8, 1, n3, w, err, sizeof(err)),
                          0);
    CU_ASSERT_EQUAL_FATAL(
        sdm_npy_write(scratch("q.npy"), SDM_NPY_F4, 2, qshape, q, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(
        sdm_npy_write(scratch("qb.npy"), SDM_NPY_U2, 2, qshape, qb, err, sizeof(err)), 0);

    CU_ASSERT_EQUAL_FATAL(cli("--endpoint %s --json contribute --model cli --checkpoint k1 "
                              "--lr 0.1 --contributor carol --shard c1 --ids %s --grads %s "
                              "--weights %s --receipt-out %s",
                              E, scratch("ids.npy"), scratch("g.npy"), scratch("w.npy"),
                              scratch("receipt.bin")),
                          0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_num(j, "batch"), 0);
    CU_ASSERT_EQUAL(json_num(j, "store_size"), 1);
    CU_ASSERT_EQUAL(strlen(json_s(j, "store_root")), 64);
    /* the JSON's receipt is the hex of the saved file */
    size_t rlen;
    uint8_t *receipt = read_bytes(scratch("receipt.bin"), &rlen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(receipt);
    char *rhex = malloc(2 * rlen + 1);
    sdm_hex(receipt, rlen, rhex);
    CU_ASSERT_STRING_EQUAL(json_s(j, "receipt"), rhex);
    free(rhex);
    free(receipt);
    json_free(j);

    /* the human form prints the four fields */
    CU_ASSERT_EQUAL(cli("--endpoint %s contribute --model cli --checkpoint k1 --lr 0.1 "
                        "--curvature --grads %s",
                        E, scratch("g.npy")),
                    0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "batch       1");
    ASSERT_CONTAINS(o, "store_size  2");
    ASSERT_CONTAINS(o, "store_root  ");
    free(o);

    /* attribute, with a bfloat16 query file at the same checkpoint layout */
    CU_ASSERT_EQUAL_FATAL(cli("--endpoint %s attribute --model cli --queries k1=%s --topk 2 "
                              "--proof-out %s --request-id r9",
                              E, scratch("q.npy"), scratch("proof.bin")),
                          0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "signature ok");
    ASSERT_CONTAINS(o, "carol");
    ASSERT_CONTAINS(o, "query 1");
    ASSERT_CONTAINS(o, "request_id  r9");
    free(o);
    CU_ASSERT_EQUAL(cli("--endpoint %s --json attribute --model cli --queries k1=%s "
                        "--dtype bf16 --method cosine --aggregate mean",
                        E, scratch("qb.npy")),
                    0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL(j);
    const json *res = json_get(j, "result");
    CU_ASSERT(res && res->type == JSON_ARRAY && res->len == 2);
    json_free(j);
    /* a uint16 file without --dtype bf16 is refused locally, with the hint */
    CU_ASSERT_EQUAL(
        cli("--endpoint %s attribute --model cli --queries k1=%s", E, scratch("qb.npy")), 2);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "--dtype bf16");
    free(o);

    /* verify: the proof and the receipt hold, under the worker's key */
    CU_ASSERT_EQUAL(cli("verify %s", scratch("proof.bin")), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "attribution");
    free(o);
    CU_ASSERT_EQUAL(cli("verify %s --key %s", scratch("receipt.bin"), s_worker_key), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "the leaf matches");
    free(o);
    CU_ASSERT_EQUAL(cli("--json verify %s", scratch("receipt.bin")), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const json *lok = json_get(j, "leaf_ok");
    CU_ASSERT(lok && lok->type == JSON_BOOL && lok->number == 1);
    CU_ASSERT_STRING_EQUAL(json_s(json_get(j, "body"), "contributor"), "carol");
    json_free(j);
    /* another key is not enough */
    CU_ASSERT_EQUAL(cli("verify %s --key %064d", scratch("receipt.bin"), 0), 1);
    /* one flipped byte: the signature fails */
    size_t plen;
    uint8_t *proof = read_bytes(scratch("proof.bin"), &plen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(proof);
    proof[plen - 10] ^= 0x20;
    write_bytes(scratch("proof-bad.bin"), proof, plen);
    CU_ASSERT_EQUAL(cli("verify %s", scratch("proof-bad.bin")), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "signature");
    free(o);
    /* a cut file is malformed: 2 */
    write_bytes(scratch("proof-cut.bin"), proof, plen / 2);
    CU_ASSERT_EQUAL(cli("verify %s", scratch("proof-cut.bin")), 2);
    free(proof);

    /* stats, and the exit statuses of failures */
    CU_ASSERT_EQUAL(cli("--endpoint %s --json stats", E), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL(j);
    CU_ASSERT(json_num(j, "requests") > 10);
    json_free(j);
    CU_ASSERT_EQUAL(cli("--endpoint %s contribute --model nope --checkpoint k1 --lr 0.1 "
                        "--contributor x --shard y --ids %s --grads %s",
                        E, scratch("ids.npy"), scratch("g.npy")),
                    1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "not_found");
    free(o);
    CU_ASSERT_EQUAL(cli("--endpoint %s contribute --checkpoint k1 --lr 0.1", E), 2);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "--model");
    free(o);
    CU_ASSERT_EQUAL(cli("--endpoint %s contribute --model cli --checkpoint k9 --lr 0.1 "
                        "--contributor x --shard y --ids %s --grads %s",
                        E, scratch("w.npy"), scratch("g.npy")),
                    2);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "expected '<u8'");
    free(o);
    CU_ASSERT_EQUAL(cli("frobnicate"), 2);
    /* nobody there: a timeout is exit 1 */
    CU_ASSERT_EQUAL(cli("--endpoint tcp://127.0.0.1:1 --timeout 0.3 info"), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "timeout");
    free(o);
}

static void test_cli_keygen_and_curve(void)
{
    char prefix[600];
    snprintf(prefix, sizeof(prefix), "%s", scratch("server"));
    CU_ASSERT_EQUAL_FATAL(cli("keygen --curve --out %s", prefix), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(scratch("server.key"), &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(stat(scratch("server.pub"), &st), 0);
    /* never overwrites a key */
    CU_ASSERT_EQUAL(cli("keygen --curve --out %s", prefix), 2);
    CU_ASSERT_EQUAL(cli("keygen --curve --out %s", scratch("alice")), 0);
    CU_ASSERT_EQUAL(cli("keygen --curve --out %s", scratch("mallory")), 0);
    CU_ASSERT_EQUAL(cli("keygen --out %s", scratch("x")), 2);

    /* a CURVE worker that admits alice only */
    live_worker cw = {-1, ""};
    const char *extra[] = {"--curve-secret", scratch("server.key"), "--allow", scratch("alice.pub"),
                           NULL};
    char extra_copy[4][512];
    for (int i = 0; i < 4; i++)
        snprintf(extra_copy[i], sizeof(extra_copy[i]), "%s", extra[i]);
    const char *args[] = {extra_copy[0], extra_copy[1], extra_copy[2], extra_copy[3], NULL};
    if (start_worker(&cw, scratch("data-curve"), "worker-curve.out", args) != 0) {
        CU_FAIL("the CURVE worker did not start");
        return;
    }
    char server_pub[512], alice[512], mallory[512];
    snprintf(server_pub, sizeof(server_pub), "%s", scratch("server.pub"));
    snprintf(alice, sizeof(alice), "%s", scratch("alice.key"));
    snprintf(mallory, sizeof(mallory), "%s", scratch("mallory.key"));
    CU_ASSERT_EQUAL(cli("--endpoint %s --curve-server-key %s --curve-key %s --json info",
                        cw.endpoint, server_pub, alice),
                    0);
    json *j = cli_json();
    CU_ASSERT_PTR_NOT_NULL(j);
    CU_ASSERT_STRING_EQUAL(json_s(j, "version"), SDM_VERSION);
    json_free(j);
    /* mallory is refused in the handshake: no reply */
    CU_ASSERT_EQUAL(cli("--endpoint %s --curve-server-key %s --curve-key %s --timeout 0.5 info",
                        cw.endpoint, server_pub, mallory),
                    1);
    /* and plain text gets nothing either */
    CU_ASSERT_EQUAL(cli("--endpoint %s --timeout 0.5 info", cw.endpoint), 1);
    /* a secret key readable by others is refused before anything is sent */
    chmod(alice, 0644);
    CU_ASSERT_EQUAL(cli("--endpoint %s --curve-server-key %s --curve-key %s info", cw.endpoint,
                        server_pub, alice),
                    2);
    char *o = cli_output("err");
    ASSERT_CONTAINS(o, "chmod 600");
    free(o);
    CU_ASSERT_EQUAL(stop_worker(&cw), 0);
}

/* Receipts signed by a key of our own: valid ones pass, and a signed receipt whose leaf is
 * not the hash of its fields, or whose body names another worker, fails with status 1. */
static void test_cli_verify_forged(void)
{
    char err[256];
    sdm_keypair *kp = sdm_keypair_load_or_create(s_dir, "forger", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    uint64_t ids[2] = {5, 6};
    sdm_receipt rc;
    memset(&rc, 0, sizeof(rc));
    sdm_leaf_fields lf = {"m", "c", 0.25, "alice", "s", 2, {0}, {0}, {0}, 0};
    sdm_digest_ids(ids, 2, lf.ids_digest);
    sdm_digest_bytes((const uint8_t *)"abcd", 4, lf.data_digest);
    sdm_digest_weights(NULL, 0, lf.weights_digest);
    rc.leaf_fields = lf;
    memcpy(rc.worker, kp->pk, 32);
    rc.issued_at = 1700000000123456789ull;
    rc.batch = 0;
    rc.store_size = 1;
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_hash(&lf, rc.leaf), 0);
    memcpy(rc.store_root, rc.leaf, 32);

    struct {
        const char *file;
        int tamper; /* 0 none, 1 leaf, 2 worker */
        int want;
        const char *say;
    } cases[] = {{"forged-ok.bin", 0, 0, "leaf matches"},
                 {"forged-leaf.bin", 1, 1, "leaf"},
                 {"forged-worker.bin", 2, 1, "worker"}};
    for (size_t i = 0; i < 3; i++) {
        sdm_receipt r = rc;
        if (cases[i].tamper == 1)
            r.leaf[0] ^= 1;
        if (cases[i].tamper == 2)
            r.worker[0] ^= 1;
        uint8_t *body = NULL, *env = NULL;
        size_t body_len = 0, env_len = 0;
        CU_ASSERT_EQUAL_FATAL(sdm_receipt_encode(&r, &body, &body_len), 0);
        CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(kp, body, body_len, &env, &env_len), 0);
        write_bytes(scratch(cases[i].file), env, env_len);
        free(body);
        free(env);
        CU_ASSERT_EQUAL(cli("verify %s", scratch(cases[i].file)), cases[i].want);
        char *o = cli_output(cases[i].want ? "err" : "out");
        ASSERT_CONTAINS(o, cases[i].say);
        free(o);
    }
    char key[65];
    sdm_hex(kp->pk, 32, key);
    CU_ASSERT_EQUAL(cli("verify %s --key %s", scratch("forged-ok.bin"), key), 0);
    CU_ASSERT_EQUAL(cli("verify %s --key nothex", scratch("forged-ok.bin")), 2);
    CU_ASSERT_EQUAL(cli("verify %s", scratch("no-such-file.bin")), 2);
    sdm_keypair_destroy(&kp);
}

static void test_live_sigterm(void)
{
    CU_ASSERT_EQUAL(stop_worker(&s_w), 0);
}

/* ---- a live ledger ------------------------------------------------------------------- */

/* The ledger suite has its own worker (receipts and a proof to append) and ledger. */
static live_worker s_lw = {-1, ""}, s_ld = {-1, ""};
#define LEDGER_ORIGIN "test.example/ledger"
#define N_ENV 4
static uint8_t *s_env[N_ENV + 1]; /* 3 receipts and a proof from the worker, then a forgery */
static size_t s_env_len[N_ENV + 1];
static char *s_cp_note[N_ENV + 1]; /* the checkpoint of each append: s_cp_note[i] has size i+1 */
static uint8_t s_ledger_key[32];
static char s_vkey[400];
static char s_lworker_key[65];

/* sediment-ledger, quiet. */
static int start_ledger(live_worker *w, const char *data_dir, const char *out_name,
                        const char *const *extra)
{
    static const char *const base[] = {"--quiet", NULL};
    return start_server(w, "sediment-ledger", data_dir, out_name, base, extra);
}

static int ledger_setup(void)
{
    char wdir[512], ldir[512];
    snprintf(wdir, sizeof(wdir), "%s", scratch("ledger-suite-worker"));
    snprintf(ldir, sizeof(ldir), "%s", scratch("ledger-suite-ledger"));
    const char *extra[] = {"--origin", LEDGER_ORIGIN, NULL};
    if (start_worker(&s_lw, wdir, "lworker.out", NULL) != 0 ||
        start_ledger(&s_ld, ldir, "ledger.out", extra) != 0)
        return -1;
    return 0;
}

static int ledger_teardown(void)
{
    if (s_lw.pid > 0)
        stop_worker(&s_lw);
    if (s_ld.pid > 0)
        stop_worker(&s_ld);
    for (int i = 0; i <= N_ENV; i++) {
        free(s_env[i]);
        free(s_cp_note[i]);
    }
    return 0;
}

/* st == SDM_CLIENT_OK, saying the client's last error when it is not */
static int ok_or_say(sdm_client_status st, const sdm_client_t *c)
{
    if (st == SDM_CLIENT_OK)
        return 1;
    fprintf(stderr, "\n  %s: %s\n", sdm_client_status_str(st), sdm_client_last_error(c));
    return 0;
}

#define ASSERT_OK_FATAL(call, c) CU_ASSERT_FATAL(ok_or_say((call), (c)))

static sdm_client_t *client_at(const char *endpoint)
{
    sdm_client_opts o = {.timeout_ms = 20000};
    char err[256];
    sdm_client_t *c = sdm_client_new(endpoint, &o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "\n  client: %s\n", err);
    return c;
}

static uint8_t *dup_bytes(const uint8_t *b, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (p && n)
        memcpy(p, b, n);
    return p;
}

/* A receipt that the ledger accepts, signed by kp (a key no worker has): its leaf is the
 * hash of its own fields. `seed` makes each one different. */
static uint8_t *forge_receipt(const sdm_keypair *kp, uint64_t seed, size_t *len)
{
    uint64_t ids[2] = {seed, seed + 1};
    sdm_receipt rc;
    memset(&rc, 0, sizeof(rc));
    sdm_leaf_fields lf = {"forged", "c", 0.25, "mallory", "m", 2, {0}, {0}, {0}, 0};
    sdm_digest_ids(ids, 2, lf.ids_digest);
    sdm_digest_bytes((const uint8_t *)&seed, sizeof(seed), lf.data_digest);
    sdm_digest_weights(NULL, 0, lf.weights_digest);
    rc.leaf_fields = lf;
    memcpy(rc.worker, kp->pk, 32);
    rc.issued_at = 1700000000000000000ull + seed;
    rc.batch = 0;
    rc.store_size = 1;
    if (sdm_leaf_hash(&lf, rc.leaf) != 0)
        return NULL;
    memcpy(rc.store_root, rc.leaf, 32);
    uint8_t *body = NULL, *env = NULL;
    size_t body_len = 0;
    if (sdm_receipt_encode(&rc, &body, &body_len) != 0)
        return NULL;
    if (sdm_envelope_sign(kp, body, body_len, &env, len) != 0)
        env = NULL;
    free(body);
    return env;
}

/* Every op against the live ledger with real receipts and a proof. */
static void test_ledger_ops(void)
{
    sdm_client_t *c = client_at(s_ld.endpoint), *w = client_at(s_lw.endpoint);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    sdm_reply_t *r;
    char err[512];

    /* info: the origin we gave, an empty log, no allow-list */
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_info(c, &r), SDM_CLIENT_OK);
    CU_ASSERT_STRING_EQUAL(sdm_reply_str(r, "origin"), LEDGER_ORIGIN);
    uint64_t size = 99;
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "size", &size), 0);
    CU_ASSERT_EQUAL(size, 0);
    CU_ASSERT(sdm_reply_has(r, "workers"));
    CU_ASSERT_EQUAL(sdm_reply_count(r, "workers"), -1); /* nil: any valid signature */
    size_t klen = 0;
    memcpy(s_ledger_key, sdm_reply_bin(r, "ledger_key", &klen), 32);
    CU_ASSERT_EQUAL(klen, 32);
    sdm_reply_destroy(&r);
    char *vkey = sdm_client_verifier_key(LEDGER_ORIGIN, s_ledger_key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(vkey);
    snprintf(s_vkey, sizeof(s_vkey), "%s", vkey);
    free(vkey);
    CU_ASSERT(strncmp(s_vkey, LEDGER_ORIGIN "+", strlen(LEDGER_ORIGIN) + 1) == 0);
    CU_ASSERT_PTR_NULL(sdm_client_verifier_key("has space", s_ledger_key));

    /* three receipts and a proof from the worker */
    CU_ASSERT_EQUAL_FATAL(sdm_client_info(w, &r), SDM_CLIENT_OK);
    sdm_hex(sdm_reply_bin(r, "worker_key", NULL), 32, s_lworker_key);
    sdm_reply_destroy(&r);
    sdm_projection p = {SDM_PROJ_NONE, 4, 4, 0, 0};
    CU_ASSERT_EQUAL_FATAL(sdm_client_register(w, "lm", &p, &r), SDM_CLIENT_OK);
    sdm_reply_destroy(&r);
    float x[2][4] = {{1, 0.5f, -1, 2}, {0.25f, 1, 1, -0.5f}};
    uint64_t ids[3][2] = {{1, 2}, {3, 4}, {5, 6}};
    const char *who[3][2] = {{"alice", "a"}, {"bob", "b"}, {"alice", "a2"}};
    for (int i = 0; i < 3; i++) {
        sdm_batch b = {"c0", 0.5, who[i][0], who[i][1], 0, ids[i], {SDM_F32, 2, 4, x}, 0, NULL};
        CU_ASSERT_EQUAL_FATAL(sdm_client_contribute(w, "lm", &b, &r), SDM_CLIENT_OK);
        const uint8_t *env = sdm_reply_envelope(r, &s_env_len[i]);
        s_env[i] = dup_bytes(env, s_env_len[i]);
        sdm_reply_destroy(&r);
    }
    sdm_query q = {"c0", {SDM_F32, 2, 4, x}, 1, NAN};
    sdm_client_attr a = {.model = "lm", .n_queries = 1, .queries = &q, .topk = 1};
    CU_ASSERT_EQUAL_FATAL(sdm_client_attribute(w, &a, &r), SDM_CLIENT_OK);
    const uint8_t *proof = sdm_reply_envelope(r, &s_env_len[3]);
    s_env[3] = dup_bytes(proof, s_env_len[3]);
    sdm_reply_destroy(&r);
    for (int i = 0; i < N_ENV; i++) {
        char name[32];
        snprintf(name, sizeof(name), "l-env%d.bin", i);
        write_bytes(scratch(name), s_env[i], s_env_len[i]);
    }

    /* append: the next index, the leaf hash of the exact bytes, a checkpoint covering it */
    for (int i = 0; i < N_ENV; i++) {
        ASSERT_OK_FATAL(sdm_client_ledger_append(c, s_env[i], s_env_len[i], &r), c);
        uint64_t index = 99;
        int dup = 1;
        CU_ASSERT_EQUAL(sdm_reply_u64(r, "index", &index), 0);
        CU_ASSERT_EQUAL(index, (uint64_t)i);
        CU_ASSERT_EQUAL(sdm_reply_u64(r, "size", &size), 0);
        CU_ASSERT_EQUAL(size, (uint64_t)i + 1);
        CU_ASSERT_EQUAL(sdm_reply_bool(r, "duplicate", &dup), 0);
        CU_ASSERT_EQUAL(dup, 0);
        uint8_t leaf[32];
        sdm_client_leaf_hash(s_env[i], s_env_len[i], leaf);
        CU_ASSERT_EQUAL(memcmp(sdm_reply_bin(r, "leaf_hash", NULL), leaf, 32), 0);
        const char *note = sdm_reply_str(r, "checkpoint");
        CU_ASSERT_PTR_NOT_NULL_FATAL(note);
        s_cp_note[i] = strdup(note);
        sdm_ledger_checkpoint cp;
        CU_ASSERT_EQUAL(
            sdm_client_checkpoint_verify(note, strlen(note), s_vkey, &cp, err, sizeof(err)),
            SDM_CLIENT_OK);
        CU_ASSERT_EQUAL(cp.size, (uint64_t)i + 1);
        CU_ASSERT_STRING_EQUAL(cp.origin, LEDGER_ORIGIN);
        CU_ASSERT_EQUAL(memcmp(cp.key, s_ledger_key, 32), 0);
        sdm_reply_destroy(&r);
    }
    /* the same envelope again: the same index, flagged, and the log does not grow */
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_append(c, s_env[0], s_env_len[0], &r), SDM_CLIENT_OK);
    uint64_t index = 99;
    int dup = 0;
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "index", &index), 0);
    CU_ASSERT_EQUAL(index, 0);
    CU_ASSERT_EQUAL(sdm_reply_bool(r, "duplicate", &dup), 0);
    CU_ASSERT_EQUAL(dup, 1);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "size", &size), 0);
    CU_ASSERT_EQUAL(size, N_ENV);
    sdm_reply_destroy(&r);

    /* refused appends: not an envelope (never sent), a broken signature (the ledger says
     * unauthorized); none changes the log */
    CU_ASSERT_EQUAL(sdm_client_ledger_append(c,
                                             (const uint8_t *)"\xa3"
                                                              "abc",
                                             4, &r),
                    SDM_CLIENT_BAD_ARGUMENT);
    ASSERT_CONTAINS(sdm_client_last_error(c), "entry");
    CU_ASSERT_EQUAL(sdm_client_ledger_append(c, s_env[0], s_env_len[0] - 1, &r),
                    SDM_CLIENT_BAD_ARGUMENT);
    CU_ASSERT_PTR_NULL(r);
    uint8_t *bad = dup_bytes(s_env[1], s_env_len[1]);
    bad[s_env_len[1] - 1] ^= 1;
    CU_ASSERT_EQUAL(sdm_client_ledger_append(c, bad, s_env_len[1], &r), SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(sdm_client_last_error(c), "entry");
    free(bad);

    /* checkpoint: signed by the ledger's key, covering all four */
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_checkpoint(c, &r), SDM_CLIENT_OK);
    const char *note = sdm_reply_str(r, "checkpoint");
    sdm_ledger_checkpoint cp, cp2;
    CU_ASSERT_EQUAL_FATAL(
        sdm_client_checkpoint_verify(note, strlen(note), s_vkey, &cp, err, sizeof(err)),
        SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(cp.size, N_ENV);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify_key(note, strlen(note), LEDGER_ORIGIN,
                                                     s_ledger_key, &cp2, err, sizeof(err)),
                    SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(memcmp(&cp, &cp2, sizeof(cp)), 0);
    sdm_reply_destroy(&r);

    /* entry: the exact bytes appended; beyond the log: not_found naming the index */
    for (int i = 0; i < N_ENV; i++) {
        CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_entry(c, (uint64_t)i, &r), SDM_CLIENT_OK);
        size_t len = 0;
        const uint8_t *env = sdm_reply_envelope(r, &len);
        CU_ASSERT(env && len == s_env_len[i] && memcmp(env, s_env[i], len) == 0);
        sdm_reply_destroy(&r);
    }
    CU_ASSERT_EQUAL(sdm_client_ledger_entry(c, N_ENV, &r), SDM_CLIENT_NOT_FOUND);
    ASSERT_CONTAINS(sdm_client_last_error(c), "index");
    CU_ASSERT_PTR_NULL(r);

    /* inclusion of every entry in every checkpoint that covers it */
    for (int s = 0; s < N_ENV; s++) {
        sdm_ledger_checkpoint at;
        CU_ASSERT_EQUAL_FATAL(sdm_client_checkpoint_verify(s_cp_note[s], strlen(s_cp_note[s]),
                                                           s_vkey, &at, err, sizeof(err)),
                              SDM_CLIENT_OK);
        for (int i = 0; i <= s; i++) {
            CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_inclusion(c, (uint64_t)i, at.size, &r),
                                  SDM_CLIENT_OK);
            uint8_t path[64][32], leaf[32];
            size_t n = 99;
            CU_ASSERT_EQUAL(sdm_reply_hashes(r, "hashes", path, 64, &n), 0);
            sdm_client_leaf_hash(s_env[i], s_env_len[i], leaf);
            CU_ASSERT_EQUAL(memcmp(sdm_reply_bin(r, "leaf_hash", NULL), leaf, 32), 0);
            CU_ASSERT_EQUAL(sdm_client_verify_inclusion(&at, (uint64_t)i, s_env[i], s_env_len[i],
                                                        (const uint8_t(*)[32])path, n, err,
                                                        sizeof(err)),
                            SDM_CLIENT_OK);
            sdm_reply_destroy(&r);
        }
        /* and consistency of this checkpoint with the latest */
        CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_consistency(c, at.size, cp.size, &r),
                              SDM_CLIENT_OK);
        uint8_t path[64][32];
        size_t n = 99;
        CU_ASSERT_EQUAL(sdm_reply_hashes(r, "hashes", path, 64, &n), 0);
        CU_ASSERT_EQUAL(n == 0, at.size == cp.size);
        CU_ASSERT_EQUAL(sdm_client_verify_consistency(&at, &cp, (const uint8_t(*)[32])path, n, err,
                                                      sizeof(err)),
                        SDM_CLIENT_OK);
        sdm_reply_destroy(&r);
    }
    CU_ASSERT_EQUAL(sdm_client_ledger_inclusion(c, 0, N_ENV + 1, &r), SDM_CLIENT_NOT_FOUND);
    ASSERT_CONTAINS(sdm_client_last_error(c), "size");
    CU_ASSERT_EQUAL(sdm_client_ledger_inclusion(c, 3, 2, &r), SDM_CLIENT_BAD_REQUEST);
    CU_ASSERT_EQUAL(sdm_client_ledger_consistency(c, 3, 2, &r), SDM_CLIENT_BAD_REQUEST);
    CU_ASSERT_EQUAL(sdm_client_ledger_consistency(c, 1, N_ENV + 1, &r), SDM_CLIENT_NOT_FOUND);

    /* history: alice's two receipts (nil score) and the proof's rows for her shards */
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_history(c, "alice", NULL, 0, &r), SDM_CLIENT_OK);
    int64_t n_rows = sdm_reply_count(r, "entries");
    CU_ASSERT_EQUAL(n_rows, 4);
    int receipts = 0, proofs = 0;
    for (int64_t i = 0; i < n_rows; i++) {
        char path[64];
        double v;
        snprintf(path, sizeof(path), "entries.%" PRId64 ".type", i);
        const char *type = sdm_reply_str(r, path);
        snprintf(path, sizeof(path), "entries.%" PRId64 ".share", i);
        if (type && strcmp(type, "contribution") == 0) {
            receipts++;
            CU_ASSERT_EQUAL(sdm_reply_f64(r, path, &v), -1); /* nil */
        } else if (type && strcmp(type, "attribution") == 0) {
            proofs++;
            CU_ASSERT_EQUAL(sdm_reply_f64(r, path, &v), 0);
            snprintf(path, sizeof(path), "entries.%" PRId64 ".index", i);
            CU_ASSERT_EQUAL(sdm_reply_u64(r, path, &index), 0);
            CU_ASSERT_EQUAL(index, 3);
        }
    }
    CU_ASSERT_EQUAL(receipts, 2);
    CU_ASSERT_EQUAL(proofs, 2);
    sdm_reply_destroy(&r);
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_history(c, "alice", NULL, 1, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_count(r, "entries"), 1);
    sdm_reply_destroy(&r);
    sdm_client_window later = {.has_since = 1, .since = UINT64_MAX / 2};
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_history(c, "alice", &later, 0, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_count(r, "entries"), 0);
    sdm_reply_destroy(&r);
    CU_ASSERT_EQUAL(sdm_client_ledger_history(c, NULL, NULL, 0, &r), SDM_CLIENT_BAD_ARGUMENT);
    CU_ASSERT_EQUAL(sdm_client_ledger_history(c, "alice", NULL, 100001, &r),
                    SDM_CLIENT_BAD_REQUEST);
    ASSERT_CONTAINS(sdm_client_last_error(c), "limit");

    /* rewards: the whole pool, exactly, among contributors; another model: unallocated */
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_rewards(c, 1000, NULL, NULL, &r), SDM_CLIENT_OK);
    uint64_t sum = 0, unalloc = 99;
    for (int64_t i = 0; i < sdm_reply_count(r, "allocations"); i++) {
        char path[64];
        uint64_t amount = 0;
        snprintf(path, sizeof(path), "allocations.%" PRId64 ".1", i);
        CU_ASSERT_EQUAL(sdm_reply_u64(r, path, &amount), 0);
        sum += amount;
    }
    CU_ASSERT(sdm_reply_count(r, "allocations") >= 1);
    CU_ASSERT_EQUAL(sum, 1000);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "unallocated", &unalloc), 0);
    CU_ASSERT_EQUAL(unalloc, 0);
    sdm_reply_destroy(&r);
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_rewards(c, 1000, NULL, "no-such-model", &r),
                          SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_count(r, "allocations"), 0);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "unallocated", &unalloc), 0);
    CU_ASSERT_EQUAL(unalloc, 1000);
    sdm_reply_destroy(&r);
    sdm_client_window empty = {.has_since = 1, .since = 10, .has_until = 1, .until = 11};
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_rewards(c, 7, &empty, NULL, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_reply_u64(r, "unallocated", &unalloc), 0);
    CU_ASSERT_EQUAL(unalloc, 7);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&w);
    sdm_client_destroy(&c);
}

/* The offline checks refuse what was tampered with, and say what. */
static void test_ledger_verify_rejects(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(s_cp_note[N_ENV - 1]);
    char err[512];
    const char *note = s_cp_note[N_ENV - 1];
    size_t len = strlen(note);
    sdm_ledger_checkpoint cp;
    CU_ASSERT_EQUAL_FATAL(sdm_client_checkpoint_verify(note, len, s_vkey, &cp, err, sizeof(err)),
                          SDM_CLIENT_OK);

    /* the size line changed: the signature no longer holds */
    char *t = strdup(note);
    char *nl = strchr(t, '\n');
    CU_ASSERT_EQUAL_FATAL(nl[1], '4');
    nl[1] = '5';
    memset(&cp, 0x5a, sizeof(cp));
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify(t, len, s_vkey, &cp, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "not signed by");
    free(t);
    /* cut short, not a note at all, or an empty string */
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify(note, len - 5, s_vkey, &cp, err, sizeof(err)),
                    SDM_CLIENT_BAD_REPLY);
    ASSERT_CONTAINS(err, "malformed");
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify("hello\n", 6, s_vkey, &cp, err, sizeof(err)),
                    SDM_CLIENT_BAD_REPLY);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify("", 0, s_vkey, &cp, err, sizeof(err)),
                    SDM_CLIENT_BAD_REPLY);
    /* a malformed key is the caller's mistake */
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify(note, len, "nope", &cp, err, sizeof(err)),
                    SDM_CLIENT_BAD_ARGUMENT);
    ASSERT_CONTAINS(err, "verifier key");
    /* another key, or the right key under another name */
    char kerr[256];
    sdm_keypair *other = sdm_keypair_load_or_create(s_dir, "other-ledger", kerr, sizeof(kerr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify_key(note, len, LEDGER_ORIGIN, other->pk, &cp, err,
                                                     sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify_key(note, len, "elsewhere", s_ledger_key, &cp, err,
                                                     sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify_key(note, len, "bad name", s_ledger_key, &cp, err,
                                                     sizeof(err)),
                    SDM_CLIENT_BAD_ARGUMENT);
    /* a note correctly signed under the key's name, whose checkpoint names another origin:
     * the key vouches only for its own log */
    uint8_t root[32] = {1};
    char *text = NULL, *signed_note = NULL;
    size_t signed_len = 0;
    CU_ASSERT_EQUAL_FATAL(sdm_checkpoint_format("someone.else/log", 3, root, &text), SDM_NOTE_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_note_sign(other, "test.example/other", text, strlen(text),
                                        &signed_note, &signed_len, kerr, sizeof(kerr)),
                          SDM_NOTE_OK);
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify_key(signed_note, signed_len, "test.example/other",
                                                     other->pk, &cp, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "origin");
    free(text);
    free(signed_note);

    /* inclusion: the real proof holds; each altered part breaks it */
    CU_ASSERT_EQUAL_FATAL(sdm_client_checkpoint_verify(note, len, s_vkey, &cp, err, sizeof(err)),
                          SDM_CLIENT_OK);
    sdm_client_t *c = client_at(s_ld.endpoint);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    sdm_reply_t *r;
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_inclusion(c, 1, cp.size, &r), SDM_CLIENT_OK);
    uint8_t path[64][32];
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(sdm_reply_hashes(r, "hashes", path, 64, &n), 0);
    CU_ASSERT_EQUAL(n, 2); /* 4 leaves: a sibling and a subtree */
    CU_ASSERT_EQUAL(sdm_reply_hashes(r, "hashes", path, 1, &n), -1);
    CU_ASSERT_EQUAL(sdm_reply_hashes(r, "leaf_hash", path, 64, &n), -1);
    CU_ASSERT_EQUAL_FATAL(sdm_reply_hashes(r, "hashes", path, 64, &n), 0);
    sdm_reply_destroy(&r);
    const uint8_t(*pp)[32] = (const uint8_t(*)[32])path;
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, 1, s_env[1], s_env_len[1], pp, n, err, sizeof(err)),
        SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, 0, s_env[1], s_env_len[1], pp, n, err, sizeof(err)),
        SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "inclusion");
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, 1, s_env[2], s_env_len[2], pp, n, err, sizeof(err)),
        SDM_CLIENT_UNAUTHORIZED);
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, 1, s_env[1], s_env_len[1], pp, n - 1, err, sizeof(err)),
        SDM_CLIENT_UNAUTHORIZED);
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, cp.size, s_env[1], s_env_len[1], pp, n, err, sizeof(err)),
        SDM_CLIENT_BAD_ARGUMENT);
    ASSERT_CONTAINS(err, "index");
    path[1][7] ^= 0x10;
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&cp, 1, s_env[1], s_env_len[1], pp, n, err, sizeof(err)),
        SDM_CLIENT_UNAUTHORIZED);
    sdm_ledger_checkpoint moved = cp;
    moved.root[0] ^= 1;
    path[1][7] ^= 0x10;
    CU_ASSERT_EQUAL(
        sdm_client_verify_inclusion(&moved, 1, s_env[1], s_env_len[1], pp, n, err, sizeof(err)),
        SDM_CLIENT_UNAUTHORIZED);

    /* consistency: from the checkpoint of size 1 to the latest */
    sdm_ledger_checkpoint old;
    CU_ASSERT_EQUAL_FATAL(sdm_client_checkpoint_verify(s_cp_note[0], strlen(s_cp_note[0]), s_vkey,
                                                       &old, err, sizeof(err)),
                          SDM_CLIENT_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_consistency(c, old.size, cp.size, &r), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_reply_hashes(r, "hashes", path, 64, &n), 0);
    sdm_reply_destroy(&r);
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&old, &cp, pp, n, err, sizeof(err)),
                    SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&cp, &old, pp, n, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "shrinks");
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&old, &moved, pp, n, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "rewrote");
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&cp, &moved, NULL, 0, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "forked");
    sdm_ledger_checkpoint renamed = cp;
    snprintf(renamed.origin, sizeof(renamed.origin), "elsewhere");
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&old, &renamed, pp, n, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    ASSERT_CONTAINS(err, "two logs");
    sdm_ledger_checkpoint rekeyed = cp;
    memcpy(rekeyed.key, other->pk, 32);
    CU_ASSERT_EQUAL(sdm_client_verify_consistency(&old, &rekeyed, pp, n, err, sizeof(err)),
                    SDM_CLIENT_UNAUTHORIZED);
    if (n > 0) {
        path[n - 1][0] ^= 1;
        CU_ASSERT_EQUAL(sdm_client_verify_consistency(&old, &cp, pp, n, err, sizeof(err)),
                        SDM_CLIENT_UNAUTHORIZED);
    }
    sdm_keypair_destroy(&other);
    sdm_client_destroy(&c);
}

typedef struct collect_ctx {
    uint64_t next;    /* the index expected next */
    uint64_t stop_at; /* return 1 after this index (UINT64_MAX: never) */
    int in_order, same_bytes;
} collect_ctx;

static int collect_entry(void *ctx, uint64_t index, const uint8_t *env, size_t len)
{
    collect_ctx *cc = ctx;
    if (index != cc->next)
        cc->in_order = 0;
    if (index >= N_ENV || len != s_env_len[index] || memcmp(env, s_env[index], len) != 0)
        cc->same_bytes = 0;
    cc->next = index + 1;
    return index == cc->stop_at;
}

/* Pipelined fetching: every entry once, in order, with the bytes appended; errors name the
 * entry; an early stop leaves the client usable. */
static void test_ledger_entries_pipelined(void)
{
    sdm_client_t *c = client_at(s_ld.endpoint);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    unsigned windows[] = {1, 2, 3, 64};
    for (size_t k = 0; k < sizeof(windows) / sizeof(windows[0]); k++) {
        collect_ctx cc = {0, UINT64_MAX, 1, 1};
        CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 0, N_ENV, windows[k], collect_entry, &cc),
                        SDM_CLIENT_OK);
        CU_ASSERT_EQUAL(cc.next, N_ENV);
        CU_ASSERT(cc.in_order && cc.same_bytes);
    }
    collect_ctx cc = {1, UINT64_MAX, 1, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 1, 3, 8, collect_entry, &cc), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(cc.next, 3);
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 2, 2, 8, collect_entry, &cc), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 3, 2, 8, collect_entry, &cc),
                    SDM_CLIENT_BAD_ARGUMENT);
    /* past the end: the entries before it are delivered, then not_found naming the index */
    cc = (collect_ctx){0, UINT64_MAX, 1, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 0, N_ENV + 3, 4, collect_entry, &cc),
                    SDM_CLIENT_NOT_FOUND);
    ASSERT_CONTAINS(sdm_client_last_error(c), "entry 4");
    CU_ASSERT_EQUAL(cc.next, N_ENV);
    /* stop early with requests in flight; the next call gets its own reply, not a stale one */
    cc = (collect_ctx){0, 1, 1, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(c, 0, N_ENV, 4, collect_entry, &cc), SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(cc.next, 2);
    sdm_reply_t *r;
    CU_ASSERT_EQUAL_FATAL(sdm_client_ledger_entry(c, 3, &r), SDM_CLIENT_OK);
    size_t len = 0;
    const uint8_t *env = sdm_reply_envelope(r, &len);
    CU_ASSERT(len == s_env_len[3] && memcmp(env, s_env[3], len) == 0);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&c);

    /* nobody there: a timeout, not a hang */
    sdm_client_opts o = {.timeout_ms = 300};
    char err[256];
    sdm_client_t *dead = sdm_client_new("tcp://127.0.0.1:1", &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(dead);
    cc = (collect_ctx){0, UINT64_MAX, 1, 1};
    CU_ASSERT_EQUAL(sdm_client_ledger_entries(dead, 0, 10, 4, collect_entry, &cc),
                    SDM_CLIENT_TIMEOUT);
    CU_ASSERT_EQUAL(cc.next, 0);
    sdm_client_destroy(&dead);
}

/* Writes text to a scratch file and returns its path (a copy the caller keeps). */
static void save_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

/* The ledger commands of `sediment`, success and failure paths. */
static void test_cli_ledger(void)
{
    const char *L = s_ld.endpoint;
    char vk[420], cpa[512], cpb[512], tampered[512], other_cp[512], vkfile[512], junk[512];
    snprintf(vk, sizeof(vk), "'%s'", s_vkey);
    snprintf(cpa, sizeof(cpa), "%s", scratch("cp-a.note"));
    snprintf(cpb, sizeof(cpb), "%s", scratch("cp-b.note"));
    snprintf(tampered, sizeof(tampered), "%s", scratch("cp-tampered.note"));
    snprintf(other_cp, sizeof(other_cp), "%s", scratch("cp-other.note"));
    snprintf(vkfile, sizeof(vkfile), "%s", scratch("ledger.vkey"));
    snprintf(junk, sizeof(junk), "%s", scratch("junk.note"));
    const char *cmds[] = {"ledger-info", "ledger-key", "checkpoint", "prove",  "consistency",
                          "audit",       "append",     "history",    "rewards", "mirror"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        CU_ASSERT_EQUAL(cli("%s --help", cmds[i]), 0);
        char *o = cli_output("out");
        char want[64];
        snprintf(want, sizeof(want), "usage: sediment %s", cmds[i]);
        ASSERT_CONTAINS(o, want);
        free(o);
        CU_ASSERT_EQUAL(cli("help %s", cmds[i]), 0);
    }
    CU_ASSERT_EQUAL(cli("help audit"), 0);
    char *o = cli_output("out");
    ASSERT_CONTAINS(o, "--tofu"); /* the trust text is part of the command's help */
    free(o);

    /* ledger-info: the key and the verifier key computed from it */
    CU_ASSERT_EQUAL_FATAL(cli("--json ledger-info --ledger %s", L), 0);
    json *j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(json_s(j, "verifier_key"), s_vkey);
    CU_ASSERT_STRING_EQUAL(json_s(j, "origin"), LEDGER_ORIGIN);
    CU_ASSERT_EQUAL(json_num(j, "size"), N_ENV);
    CU_ASSERT_EQUAL(json_get(j, "workers")->type, JSON_NULL);
    json_free(j);
    CU_ASSERT_EQUAL(cli("ledger-info --ledger %s", L), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, s_vkey);
    ASSERT_CONTAINS(o, "any valid signature");
    free(o);
    /* a ledger command without a ledger there: a timeout, exit 1 */
    CU_ASSERT_EQUAL(cli("--timeout 0.3 ledger-info --ledger tcp://127.0.0.1:1"), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "timeout");
    free(o);

    /* ledger-key: from the ledger and from its data dir, the same key */
    CU_ASSERT_EQUAL(cli("ledger-key --ledger %s", L), 0);
    o = cli_output("out");
    char line[420];
    snprintf(line, sizeof(line), "%s\n", s_vkey);
    CU_ASSERT_STRING_EQUAL(o, line);
    free(o);
    save_text(vkfile, line);
    char ldir[512];
    snprintf(ldir, sizeof(ldir), "%s", scratch("ledger-suite-ledger"));
    CU_ASSERT_EQUAL(cli("ledger-key --data %s", ldir), 0);
    o = cli_output("out");
    CU_ASSERT_STRING_EQUAL(o, line);
    free(o);
    CU_ASSERT_EQUAL(cli("--json ledger-key --data %s --origin other.example", ldir), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT(strncmp(json_s(j, "verifier_key"), "other.example+", 14) == 0);
    json_free(j);
    CU_ASSERT_EQUAL(cli("ledger-key --data %s", scratch("no-such-dir")), 2);
    CU_ASSERT_EQUAL(cli("ledger-key --data %s --origin 'bad name'", ldir), 2);
    CU_ASSERT_EQUAL(cli("ledger-key --data %s --ledger %s", ldir, L), 2);

    /* checkpoint: trust must be said; --vkey, --vkey-file and --tofu all verify */
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s", L), 2);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "--vkey");
    free(o);
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --vkey nonsense", L), 2);
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --vkey %s --tofu", L, vk), 2);
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --vkey %s --out %s", L, vk, cpa), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "signature ok");
    ASSERT_CONTAINS(o, "size        4");
    free(o);
    size_t n;
    char *saved = (char *)read_bytes(cpa, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(saved);
    sdm_ledger_checkpoint cp;
    char err[512];
    CU_ASSERT_EQUAL(sdm_client_checkpoint_verify(saved, n, s_vkey, &cp, err, sizeof(err)),
                    SDM_CLIENT_OK);
    CU_ASSERT_EQUAL(cp.size, N_ENV);
    CU_ASSERT_EQUAL(cli("--json checkpoint --ledger %s --vkey-file %s", L, vkfile), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_get(j, "ok")->type, JSON_BOOL);
    CU_ASSERT_EQUAL(json_get(j, "ok")->number, 1);
    CU_ASSERT_EQUAL(json_num(j, "size"), N_ENV);
    CU_ASSERT_STRING_EQUAL(json_s(j, "trust"), "vkey");
    CU_ASSERT_STRING_EQUAL(json_s(j, "checkpoint"), saved);
    json_free(j);
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --tofu", L), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "--tofu");
    free(o);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "trusting the key the ledger reports");
    free(o);

    /* a saved checkpoint whose size was changed, and one that is not a note at all */
    char *nl = strchr(saved, '\n');
    nl[1] = '3';
    save_text(tampered, saved);
    free(saved);
    save_text(junk, "not a checkpoint\n");
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 0 --checkpoint %s", L, vk, tampered),
                    1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "does not verify");
    free(o);
    CU_ASSERT_EQUAL(cli("--json consistency --ledger %s --vkey %s --old %s", L, vk, tampered), 1);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL(j);
    CU_ASSERT(j && json_get(j, "ok")->number == 0 && strlen(json_s(j, "problem")) > 0);
    json_free(j);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey %s --checkpoint %s", L, vk, tampered), 1);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 0 --checkpoint %s", L, vk, junk), 2);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 0 --checkpoint %s", L, vk,
                        scratch("nothing-here")),
                    2);

    /* a checkpoint of another ledger (same origin, another key) */
    live_worker other = {-1, ""};
    char odir[512];
    snprintf(odir, sizeof(odir), "%s", scratch("ledger-other"));
    const char *extra[] = {"--origin", LEDGER_ORIGIN, NULL};
    CU_ASSERT_EQUAL_FATAL(start_ledger(&other, odir, "ledger-other.out", extra), 0);
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --tofu --out %s", other.endpoint, other_cp), 0);
    CU_ASSERT_EQUAL(stop_worker(&other), 0);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 0 --checkpoint %s", L, vk, other_cp),
                    1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "not signed by");
    free(o);
    CU_ASSERT_EQUAL(cli("consistency --ledger %s --vkey %s --old %s", L, vk, other_cp), 1);
    /* and this ledger's checkpoint under the other ledger's key, as --tofu there would */
    CU_ASSERT_EQUAL(cli("ledger-key --data %s", odir), 0);
    o = cli_output("out");
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    o[strcspn(o, "\n")] = 0;
    CU_ASSERT_EQUAL(cli("checkpoint --ledger %s --vkey '%s'", L, o), 1);
    free(o);

    /* prove */
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s", L, vk), 2); /* no --index */
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index x", L, vk), 2);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index %d", L, vk, N_ENV), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "not in the checkpoint");
    free(o);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 1 --checkpoint %s", L, vk, cpa), 0);
    save_text(cpb, s_cp_note[0]); /* the checkpoint of size 1 */
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 1 --checkpoint %s", L, vk, cpb), 1);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 0 --checkpoint %s", L, vk, cpb), 0);
    char envfile[512], badenv[512], outenv[512];
    snprintf(envfile, sizeof(envfile), "%s", scratch("l-env1.bin"));
    snprintf(badenv, sizeof(badenv), "%s", scratch("l-env1-corrupt.bin"));
    snprintf(outenv, sizeof(outenv), "%s", scratch("l-env2-out.bin"));
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 1 --entry %s", L, vk, envfile), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "included: entry 1");
    ASSERT_CONTAINS(o, "byte for byte");
    ASSERT_CONTAINS(o, s_lworker_key);
    free(o);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 2 --entry %s", L, vk, envfile), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "not entry 2");
    free(o);
    uint8_t *corrupt = dup_bytes(s_env[1], s_env_len[1]);
    corrupt[s_env_len[1] / 2] ^= 0x20;
    write_bytes(badenv, corrupt, s_env_len[1]);
    free(corrupt);
    CU_ASSERT_EQUAL(cli("prove --ledger %s --vkey %s --index 1 --entry %s", L, vk, badenv), 1);
    CU_ASSERT_EQUAL(cli("--json prove --ledger %s --tofu --index 2 --entry-out %s", L, outenv), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    uint8_t leaf[32];
    char leaf_hex[65];
    sdm_client_leaf_hash(s_env[2], s_env_len[2], leaf);
    sdm_hex(leaf, 32, leaf_hex);
    CU_ASSERT_STRING_EQUAL(json_s(j, "leaf_hash"), leaf_hex);
    CU_ASSERT_STRING_EQUAL(json_s(j, "trust"), "tofu");
    CU_ASSERT_STRING_EQUAL(json_s(j, "type"), "contribution");
    CU_ASSERT_EQUAL(json_get(j, "hashes")->len, 2);
    json_free(j);
    uint8_t *got = read_bytes(outenv, &n);
    CU_ASSERT(got && n == s_env_len[2] && memcmp(got, s_env[2], n) == 0);
    free(got);
    CU_ASSERT_EQUAL(cli("verify %s --key %s", outenv, s_lworker_key), 0);

    /* append: a forged but well-formed receipt (a key no worker has), then the same again;
     * files that are not envelopes are refused before anything is sent */
    char kerr[256], forged[512];
    sdm_keypair *kp = sdm_keypair_load_or_create(s_dir, "ledger-forger", kerr, sizeof(kerr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    s_env[N_ENV] = forge_receipt(kp, 77, &s_env_len[N_ENV]);
    sdm_keypair_destroy(&kp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s_env[N_ENV]);
    snprintf(forged, sizeof(forged), "%s", scratch("forged-l.bin"));
    write_bytes(forged, s_env[N_ENV], s_env_len[N_ENV]);
    CU_ASSERT_EQUAL(cli("--json append --ledger %s %s", L, forged), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_num(j, "index"), N_ENV);
    CU_ASSERT_EQUAL(json_get(j, "duplicate")->number, 0);
    json_free(j);
    CU_ASSERT_EQUAL(cli("append --ledger %s %s", L, forged), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "duplicate");
    free(o);
    CU_ASSERT_EQUAL(cli("append --ledger %s %s", L, junk), 2);
    CU_ASSERT_EQUAL(cli("append --ledger %s %s", L, badenv), 1); /* signature */
    o = cli_output("err");
    ASSERT_CONTAINS(o, "the ledger replied unauthorized");
    free(o);

    /* consistency: the saved size-4 checkpoint against the latest (size 5), then backwards */
    CU_ASSERT_EQUAL(cli("consistency --ledger %s --vkey %s --old %s --out %s", L, vk, cpa, cpb), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "consistent: the log of size 5 extends the log of size 4");
    free(o);
    CU_ASSERT_EQUAL(
        cli("--json consistency --ledger %s --vkey %s --old %s --new %s", L, vk, cpa, cpb), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_num(json_get(j, "old"), "size"), 4);
    CU_ASSERT_EQUAL(json_num(json_get(j, "new"), "size"), 5);
    json_free(j);
    CU_ASSERT_EQUAL(cli("consistency --ledger %s --vkey %s --old %s --new %s", L, vk, cpb, cpa), 1);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "never shrinks");
    free(o);
    CU_ASSERT_EQUAL(cli("consistency --ledger %s --vkey %s", L, vk), 2); /* no --old */

    /* audit: all good without an allow-list; with one, the forged entry is named */
    CU_ASSERT_EQUAL(cli("--json audit --ledger %s --vkey %s --progress", L, vk), 0);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "5/5 entries (100%), 0 bad");
    free(o);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_get(j, "ok")->number, 1);
    CU_ASSERT_EQUAL(json_get(j, "root_ok")->number, 1);
    CU_ASSERT_EQUAL(json_num(j, "size"), N_ENV + 1);
    CU_ASSERT_EQUAL(json_num(j, "entries_ok"), N_ENV + 1);
    CU_ASSERT_EQUAL(json_get(j, "bad")->len, 0);
    json_free(j);
    char workers[512];
    snprintf(workers, sizeof(workers), "%s", scratch("audit-workers.txt"));
    char wl[128];
    snprintf(wl, sizeof(wl), "# the suite's worker\n%s\n", s_lworker_key);
    save_text(workers, wl);
    CU_ASSERT_EQUAL(
        cli("--json audit --ledger %s --vkey %s --workers %s --window 2", L, vk, workers), 1);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_get(j, "ok")->number, 0);
    CU_ASSERT_EQUAL(json_get(j, "root_ok")->number, 1);
    CU_ASSERT_EQUAL(json_num(j, "entries_ok"), N_ENV);
    const json *bad = json_get(j, "bad");
    CU_ASSERT_EQUAL_FATAL(bad->len, 1);
    CU_ASSERT_EQUAL(json_num(json_at(bad, 0), "index"), N_ENV);
    ASSERT_CONTAINS(json_s(json_at(bad, 0), "why"), "not in --workers");
    json_free(j);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey %s --workers %s", L, vk, workers), 1);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "entry 4: signed by");
    ASSERT_CONTAINS(o, "matches the checkpoint");
    free(o);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "audit failed: 1 bad entry");
    free(o);
    /* the saved checkpoint of size 4 does not cover the forgery */
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey %s --workers %s --checkpoint %s --progress-every "
                        "2",
                        L, vk, workers, cpa),
                    0);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "2/4 entries");
    ASSERT_CONTAINS(o, "4/4 entries");
    free(o);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey %s --workers %s", L, vk, junk), 2);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey %s --window 0", L, vk), 2);

    /* history and rewards */
    CU_ASSERT_EQUAL(cli("history --ledger %s --contributor alice", L), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "contribution");
    ASSERT_CONTAINS(o, "attribution");
    ASSERT_CONTAINS(o, "4 entries touching alice");
    free(o);
    CU_ASSERT_EQUAL(cli("--json history --ledger %s --contributor alice --limit 3 --since "
                        "2000-01-01T00:00:00Z",
                        L),
                    0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_get(j, "entries")->len, 3);
    json_free(j);
    CU_ASSERT_EQUAL(cli("--json history --ledger %s --contributor alice --until "
                        "2000-01-01T00:00:00.5Z",
                        L),
                    0);
    j = cli_json();
    CU_ASSERT(j && json_get(j, "entries")->len == 0);
    json_free(j);
    CU_ASSERT_EQUAL(cli("history --ledger %s --contributor mallory", L), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "1 entry touching mallory");
    free(o);
    CU_ASSERT_EQUAL(cli("history --ledger %s --contributor alice --since yesterday", L), 2);
    CU_ASSERT_EQUAL(cli("history --ledger %s", L), 2);
    CU_ASSERT_EQUAL(cli("--json rewards --ledger %s --pool 1001", L), 0);
    j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const json *alloc = json_get(j, "allocations");
    double total = 0;
    for (size_t i = 0; alloc && i < alloc->len; i++)
        total += json_at(json_at(alloc, i), 1)->number;
    CU_ASSERT_EQUAL(total, 1001);
    json_free(j);
    CU_ASSERT_EQUAL(cli("rewards --ledger %s --pool 10 --model nothing", L), 0);
    o = cli_output("out");
    ASSERT_CONTAINS(o, "unallocated 10");
    free(o);
    CU_ASSERT_EQUAL(cli("rewards --ledger %s --pool -3", L), 2);
}

/* Appends n forged receipts with every request in flight at once (a DEALER of our own), so
 * that the log grows past several audit batches quickly. 0 or -1. */
static int append_many(const char *endpoint, uint64_t n, uint64_t seed0)
{
    char kerr[256];
    sdm_keypair *kp = sdm_keypair_load_or_create(s_dir, "bulk-forger", kerr, sizeof(kerr));
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int timeout = 30000, linger = 0, rc = kp ? 0 : -1;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(sock, endpoint) != 0)
        rc = -1;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        size_t len = 0;
        uint8_t *env = forge_receipt(kp, seed0 + 2 * i, &len);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, "append", 6);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, i);
        msgpack_pack_str_with_body(&pk, "entry", 5);
        if (!env || msgpack_sbuffer_write(&sb, (const char *)env, len) != 0 ||
            zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, sb.data, sb.size, 0) < 0)
            rc = -1;
        msgpack_sbuffer_destroy(&sb);
        free(env);
    }
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        char buf[4096];
        int more = 0;
        size_t ml = sizeof(more);
        if (zmq_recv(sock, buf, sizeof(buf), 0) < 0 ||
            zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) != 0 || !more) {
            rc = -1;
            break;
        }
        int got = zmq_recv(sock, buf, sizeof(buf), 0);
        sdm_reply_t *r =
            got > 0 ? sdm_reply_parse((const uint8_t *)buf,
                                      (size_t)got < sizeof(buf) ? (size_t)got : sizeof(buf), kerr,
                                      sizeof(kerr))
                    : NULL;
        int ok = 0;
        if (!r || sdm_reply_bool(r, "ok", &ok) != 0 || !ok)
            rc = -1;
        sdm_reply_destroy(&r);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    sdm_keypair_destroy(&kp);
    return rc;
}

/* A log of more than two audit batches: every window and thread count gives the same
 * verdict, the root the checkpoint signs, and bad entries named in index order. */
static void test_cli_audit_many(void)
{
    const uint64_t n_bulk = 1200;
    CU_ASSERT_EQUAL_FATAL(append_many(s_ld.endpoint, n_bulk, 1000), 0);
    const uint64_t size = N_ENV + 1 + n_bulk;
    const char *runs[][2] = {{"1", "1"}, {"7", "3"}, {"256", "2"}};
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(cli("--json audit --ledger %s --vkey '%s' --window %s --jobs %s",
                            s_ld.endpoint, s_vkey, runs[k][0], runs[k][1]),
                        0);
        json *j = cli_json();
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(json_num(j, "size"), size);
        CU_ASSERT_EQUAL(json_num(j, "entries_ok"), size);
        CU_ASSERT_STRING_EQUAL(json_s(j, "computed_root"), json_s(j, "root"));
        json_free(j);
    }
    /* only the suite's worker allowed: every forgery is bad, listed in index order */
    char workers[512];
    snprintf(workers, sizeof(workers), "%s", scratch("audit-workers.txt"));
    CU_ASSERT_EQUAL(cli("--json audit --ledger %s --vkey '%s' --workers %s --jobs 3", s_ld.endpoint,
                        s_vkey, workers),
                    1);
    json *j = cli_json();
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_num(j, "entries_ok"), N_ENV);
    const json *bad = json_get(j, "bad");
    CU_ASSERT_EQUAL_FATAL(bad->len, n_bulk + 1);
    int in_order = 1;
    for (size_t i = 0; i < bad->len; i++)
        in_order &= json_num(json_at(bad, i), "index") == (double)(N_ENV + i);
    CU_ASSERT(in_order);
    json_free(j);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey '%s' --workers %s --progress-every 500",
                        s_ld.endpoint, s_vkey, workers),
                    1);
    char *o = cli_output("out");
    ASSERT_CONTAINS(o, "and 1181 more");
    free(o);
    o = cli_output("err");
    ASSERT_CONTAINS(o, "500/1205 entries");
    ASSERT_CONTAINS(o, "1000/1205 entries");
    ASSERT_CONTAINS(o, "1205/1205 entries (100%), 1201 bad");
    free(o);
    CU_ASSERT_EQUAL(cli("audit --ledger %s --vkey '%s' --jobs 0", s_ld.endpoint, s_vkey), 2);
}

static void test_ledger_sigterm(void)
{
    CU_ASSERT_EQUAL(stop_worker(&s_ld), 0);
    CU_ASSERT_EQUAL(stop_worker(&s_lw), 0);
}

/* ---- main ---------------------------------------------------------------------------- */

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("npy", NULL, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "write then read, every dtype", test_npy_round_trip);
    CU_add_test(s, "versions 1.0 and 2.0, header variants", test_npy_versions_and_layouts);
    CU_add_test(s, "bad files are refused, naming the problem", test_npy_rejects);

    s = CU_add_suite("replies", NULL, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "getters, typed results, JSON", test_reply_getters_and_json);
    CU_add_test(s, "envelopes keep their exact bytes", test_reply_envelope_bytes);
    CU_add_test(s, "malformed replies are refused", test_reply_rejects);
    CU_add_test(s, "a server that lies, stalls or errs", test_untrusted_server);
    CU_add_test(s, "bad endpoints and keys", test_client_new_rejects);
    CU_add_test(s, "a ledger that lies about its replies", test_untrusted_ledger);
    CU_add_test(s, "verify: self-signed receipts, good and forged", test_cli_verify_forged);

    s = CU_add_suite("live worker", live_setup, live_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "info and register", test_live_info_register);
    CU_add_test(s, "contribute", test_live_contribute);
    CU_add_test(s, "attribute", test_live_attribute);
    CU_add_test(s, "stats", test_live_stats);
    CU_add_test(s, "the sediment command line", test_cli_end_to_end);
    CU_add_test(s, "keygen and a CURVE worker", test_cli_keygen_and_curve);
    CU_add_test(s, "SIGTERM stops the worker with status 0", test_live_sigterm);

    s = CU_add_suite("live ledger", ledger_setup, ledger_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "every ledger op, with a worker's receipts and proof", test_ledger_ops);
    CU_add_test(s, "checkpoint, inclusion and consistency checks refuse tampering",
                test_ledger_verify_rejects);
    CU_add_test(s, "pipelined entry fetching", test_ledger_entries_pipelined);
    CU_add_test(s, "the ledger commands of sediment", test_cli_ledger);
    CU_add_test(s, "audit of more than two batches of entries", test_cli_audit_many);
    CU_add_test(s, "SIGTERM stops ledger and worker with status 0", test_ledger_sigterm);
    return 0;
}

int main(int argc, char **argv)
{
    snprintf(s_dir, sizeof(s_dir), "/tmp/sdm_client_XXXXXX");
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(s_bin, sizeof(s_bin), "%s/sediment", sdm_bin());
    int failures = test_main(argc, argv, register_suites);
    if (s_w.pid > 0)
        stop_worker(&s_w);
    if (failures == 0) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s_dir);
    } else {
        fprintf(stderr, "scratch files kept in %s\n", s_dir);
    }
    return failures;
}
