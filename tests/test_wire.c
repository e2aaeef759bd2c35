/* test_wire.c - the wire codec: the msgpack pre-check on hostile bytes, decoding of every
 * op field by field, every bad request naming its field, and the exact reply maps. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "testdata.h"
#include "wire.h"

/* ---- building frames --------------------------------------------------------------------
 * pack(pk, fmt, ...) packs the values fmt names, one letter each (spaces ignored):
 *   M map (unsigned count)   A array (unsigned count)   s str (const char *)
 *   S str (const char *, size_t)   u uint64_t   i int64_t   d double   f float32 (double)
 *   n nil   T true   F false   b bin (const void *, size_t)   r raw msgpack (const void *, size_t)
 */
#define U(x) ((uint64_t)(x))
#define I(x) ((int64_t)(x))
#define Z(x) ((size_t)(x))

static void vpack(msgpack_packer *pk, const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p; p++) {
        switch (*p) {
        case 'M':
            msgpack_pack_map(pk, va_arg(ap, unsigned));
            break;
        case 'A':
            msgpack_pack_array(pk, va_arg(ap, unsigned));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            msgpack_pack_str(pk, strlen(s));
            msgpack_pack_str_body(pk, s, strlen(s));
            break;
        }
        case 'S': {
            const char *s = va_arg(ap, const char *);
            size_t n = va_arg(ap, size_t);
            msgpack_pack_str(pk, n);
            msgpack_pack_str_body(pk, s, n);
            break;
        }
        case 'u':
            msgpack_pack_uint64(pk, va_arg(ap, uint64_t));
            break;
        case 'i':
            msgpack_pack_int64(pk, va_arg(ap, int64_t));
            break;
        case 'd':
            msgpack_pack_double(pk, va_arg(ap, double));
            break;
        case 'f':
            msgpack_pack_float(pk, (float)va_arg(ap, double));
            break;
        case 'n':
            msgpack_pack_nil(pk);
            break;
        case 'T':
            msgpack_pack_true(pk);
            break;
        case 'F':
            msgpack_pack_false(pk);
            break;
        case 'b': {
            const void *b = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            msgpack_pack_bin(pk, n);
            msgpack_pack_bin_body(pk, b, n);
            break;
        }
        case 'r': {
            const char *b = va_arg(ap, const char *);
            size_t n = va_arg(ap, size_t);
            msgpack_sbuffer_write(pk->data, b, n);
            break;
        }
        case ' ':
            break;
        default:
            CU_FAIL_FATAL("bad pack format");
        }
    }
}

/* A value packed into a fresh buffer. */
static msgpack_sbuffer packed(const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    va_list ap;
    va_start(ap, fmt);
    vpack(&pk, fmt, ap);
    va_end(ap);
    return sb;
}

static msgpack_sbuffer matrix(const char *dtype, uint64_t rows, uint64_t cols, const void *data,
                              size_t n)
{
    return packed("M s s s u s u s b", 4, "dtype", dtype, "rows", rows, "cols", cols, "data", data,
                  n);
}

/* The request being built: top-level keys in order, each with its packed value; keys may
 * repeat (fadd) to make duplicate-key frames. */
#define MAX_KEYS 24
static struct {
    int n;
    const char *key[MAX_KEYS];
    msgpack_sbuffer val[MAX_KEYS];
} B;

static void breset(void)
{
    for (int i = 0; i < B.n; i++)
        msgpack_sbuffer_destroy(&B.val[i]);
    B.n = 0;
}

static int bfind(const char *key)
{
    for (int i = 0; i < B.n; i++)
        if (strcmp(B.key[i], key) == 0)
            return i;
    return -1;
}

static void bput(const char *key, msgpack_sbuffer val, int replace)
{
    int i = replace ? bfind(key) : -1;
    if (i >= 0) {
        msgpack_sbuffer_destroy(&B.val[i]);
    } else {
        CU_ASSERT_FATAL(B.n < MAX_KEYS);
        i = B.n++;
        B.key[i] = key;
    }
    B.val[i] = val;
}

/* Sets key to the packed value (replacing it where present). */
static void fset(const char *key, const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    va_list ap;
    va_start(ap, fmt);
    vpack(&pk, fmt, ap);
    va_end(ap);
    bput(key, sb, 1);
}

/* Adds key once more, even when present. */
static void fadd(const char *key, const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    va_list ap;
    va_start(ap, fmt);
    vpack(&pk, fmt, ap);
    va_end(ap);
    bput(key, sb, 0);
}

static void fdel(const char *key)
{
    int i = bfind(key);
    if (i < 0)
        return;
    msgpack_sbuffer_destroy(&B.val[i]);
    for (int j = i + 1; j < B.n; j++) {
        B.key[j - 1] = B.key[j];
        B.val[j - 1] = B.val[j];
    }
    B.n--;
}

/* The frame, and the request decoded from it. The frame is an exactly sized copy, so ASan
 * sees a read past its end. */
static uint8_t *F;
static size_t FN;
static sdm_worker_request R;
static sdm_wire_error E;

static void set_frame(const void *bytes, size_t n)
{
    sdm_worker_request_free(&R);
    free(F);
    F = malloc(n ? n : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(F);
    memcpy(F, bytes, n);
    FN = n;
}

static sdm_wire_code decode_raw(const void *bytes, size_t n)
{
    set_frame(bytes, n);
    memset(&E, 0, sizeof(E));
    return sdm_wire_decode_worker(F, FN, NULL, &R, &E);
}

static sdm_wire_code decode_built(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, B.n);
    for (int i = 0; i < B.n; i++) {
        msgpack_pack_str(&pk, strlen(B.key[i]));
        msgpack_pack_str_body(&pk, B.key[i], strlen(B.key[i]));
        msgpack_sbuffer_write(&sb, B.val[i].data, B.val[i].size);
    }
    sdm_wire_code c = decode_raw(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return c;
}

static void done(void)
{
    breset();
    sdm_worker_request_free(&R);
    free(F);
    F = NULL;
    FN = 0;
}

static int in_frame(const void *p, size_t n)
{
    return (const uint8_t *)p >= F && (const uint8_t *)p + n <= F + FN;
}

/* Decodes the built request and checks the code, that the message holds `want` and that
 * the request's id was still recovered for the reply. */
static void expect_at(int line, sdm_wire_code code, const char *want)
{
    sdm_wire_code got = decode_built();
    char what[600];
    snprintf(what, sizeof(what), "got %s \"%s\"; want %s with \"%s\"", sdm_wire_code_name(got),
             E.message, sdm_wire_code_name(code), want);
    CU_assertImplementation(got == code && E.code == code && strstr(E.message, want) != NULL, line,
                            what, __FILE__, "", CU_FALSE);
    int id = bfind("id");
    if (id >= 0)
        CU_assertImplementation(
            R.id && R.id_len == B.val[id].size && memcmp(R.id, B.val[id].data, R.id_len) == 0, line,
            "the failed request's id is recovered", __FILE__, "", CU_FALSE);
}
#define EXPECT_BAD(want) expect_at(__LINE__, SDM_WIRE_BAD_REQUEST, want)

/* ---- base requests -------------------------------------------------------------------- */

static const float G[12] = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f,  5.5f,
                            6.5f, 7.5f, 8.5f, 9.5f, 10.5f, 11.5f};
static const uint16_t H[8] = {0x3c00, 0x4000, 0x4200, 0x4400, 0xbc00, 0x0000, 0x3800, 0x3555};

static void put_matrix(const char *key, const char *dtype, uint64_t rows, uint64_t cols,
                       const void *data, size_t n)
{
    bput(key, matrix(dtype, rows, cols, data, n), 1);
}

static void base_contribute(void)
{
    breset();
    fset("op", "s", "contribute");
    fset("id", "u", U(7));
    fset("model", "s", "m");
    fset("checkpoint", "s", "ckpt-0");
    fset("lr", "d", 0.5);
    fset("contributor", "s", "alice");
    fset("shard", "s", "s0");
    fset("example_ids", "A u u u", 3, U(10), U(11), U(12));
    put_matrix("grads", "f32", 3, 4, G, sizeof(G));
}

/* queries {ckpt-0: 2x4 f32, ckpt-1: 2x4 f16} */
static void put_queries(const char *key)
{
    msgpack_sbuffer a = matrix("f32", 2, 4, G, 32), b = matrix("f16", 2, 4, H, 16);
    fset(key, "M s r s r", 2, "ckpt-0", a.data, a.size, "ckpt-1", b.data, b.size);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

static void base_attribute(void)
{
    breset();
    fset("op", "s", "attribute");
    fset("id", "s", "q1");
    fset("model", "s", "m");
    put_queries("queries");
}

static void base_register(void)
{
    breset();
    fset("op", "s", "register");
    fset("id", "A u s", 2, U(1), "a");
    fset("model", "s", "m");
    fset("input_dim", "u", U(4));
    fset("projection", "M s s s u s u", 3, "kind", "rademacher", "dim", U(2), "seed", U(42));
}

/* ---- codes ---------------------------------------------------------------------------- */

static void test_codes(void)
{
    static const char *const want[SDM_WIRE_CODES] = {
        "ok",       "bad_request",  "unknown_op", "too_large", "not_found",
        "conflict", "unauthorized", "busy",       "internal",
    };
    for (int c = 0; c < SDM_WIRE_CODES; c++)
        CU_ASSERT_STRING_EQUAL(sdm_wire_code_name((sdm_wire_code)c), want[c]);
    CU_ASSERT_STRING_EQUAL(sdm_wire_code_name((sdm_wire_code)99), "internal");
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_OK), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_BAD_INPUT), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_NOT_FOUND), SDM_WIRE_NOT_FOUND);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_CONFLICT), SDM_WIRE_CONFLICT);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_NOMEM), SDM_WIRE_INTERNAL);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_DEVICE), SDM_WIRE_INTERNAL);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_INTERNAL), SDM_WIRE_INTERNAL);
    CU_ASSERT_EQUAL(sdm_wire_code_of_status(SDM_ERR_UNSUPPORTED), SDM_WIRE_INTERNAL);

    sdm_wire_error e;
    CU_ASSERT_EQUAL(sdm_wire_fail(&e, SDM_WIRE_CONFLICT, "lr: %d", 3), SDM_WIRE_CONFLICT);
    CU_ASSERT_EQUAL(e.code, SDM_WIRE_CONFLICT);
    CU_ASSERT_STRING_EQUAL(e.message, "lr: 3");
    CU_ASSERT_EQUAL(sdm_wire_fail(NULL, SDM_WIRE_BUSY, "x"), SDM_WIRE_BUSY);
    char longer[400];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    sdm_wire_fail(&e, SDM_WIRE_INTERNAL, "%s", longer); /* cut, still terminated */
    CU_ASSERT_EQUAL(strlen(e.message), sizeof(e.message) - 1);
}

/* ---- pre-check ------------------------------------------------------------------------ */

static sdm_wire_code pre(const void *bytes, size_t n, const sdm_wire_limits *lim)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    memset(&E, 0, sizeof(E));
    sdm_wire_code c = sdm_wire_precheck(copy, n, lim, &E);
    free(copy);
    return c;
}

static void test_precheck_prefixes(void)
{
    base_contribute();
    fset("weights", "A d f i", 3, 1.0, 0.5, I(-2));
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    size_t n = FN;
    uint8_t *whole = malloc(n);
    memcpy(whole, F, n);
    CU_ASSERT_EQUAL(pre(whole, n, NULL), SDM_WIRE_OK);
    /* every strict prefix is a truncated frame: bad_request, from precheck and decode */
    int all_bad = 1, all_decode_bad = 1;
    for (size_t k = 0; k < n; k++) {
        if (pre(whole, k, NULL) != SDM_WIRE_BAD_REQUEST || !strstr(E.message, "msgpack"))
            all_bad = 0;
        if (decode_raw(whole, k) != SDM_WIRE_BAD_REQUEST || R.id != NULL)
            all_decode_bad = 0;
    }
    CU_ASSERT(all_bad);
    CU_ASSERT(all_decode_bad);
    free(whole);
    done();
}

static void test_precheck_hostile_headers(void)
{
    /* each claims far more than the five bytes it has; none may reach an allocation */
    CU_ASSERT_EQUAL(pre("\xdd\xff\xff\xff\xff", 5, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "array32 of 4294967295 elements with 0 bytes left"));
    CU_ASSERT_EQUAL(pre("\xdf\xff\xff\xff\xff", 5, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "map32 of 4294967295 entries with 0 bytes left"));
    CU_ASSERT_EQUAL(pre("\xc6\xff\xff\xff\xff", 5, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "bin32 needs 4294967295 bytes, 0 left"));
    CU_ASSERT_EQUAL(decode_raw("\xdd\xff\xff\xff\xff", 5), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_EQUAL(decode_raw("\xdf\xff\xff\xff\xff", 5), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_EQUAL(decode_raw("\xc6\xff\xff\xff\xff", 5), SDM_WIRE_BAD_REQUEST);

    CU_ASSERT_EQUAL(pre("\xdb\xff\xff\xff\xff", 5, NULL), SDM_WIRE_BAD_REQUEST);     /* str32 */
    CU_ASSERT_EQUAL(pre("\xc9\x00\x00\x00\x01\x05", 6, NULL), SDM_WIRE_BAD_REQUEST); /* ext32 */
    /* the count is refused before any element is read */
    CU_ASSERT_EQUAL(pre("\xdc\x00\x03\xc0\xc0", 5, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "at byte 0, array16 of 3 elements with 2 bytes left"));
    CU_ASSERT_EQUAL(pre("\xdc\x00\x02\xc0\xc0", 5, NULL), SDM_WIRE_OK);
    /* a map entry takes two objects: one entry in one byte cannot be */
    CU_ASSERT_EQUAL(pre("\x81\xc0", 2, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "fixmap of 1 entries"));
    CU_ASSERT_EQUAL(pre("\x81\xc0\xc0", 3, NULL), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(pre("\xd8\x01\x00", 3, NULL), SDM_WIRE_BAD_REQUEST); /* fixext16 short */
    CU_ASSERT_EQUAL(pre("\xcb\x00\x00", 3, NULL), SDM_WIRE_BAD_REQUEST); /* float64 short */
    CU_ASSERT_EQUAL(pre("\xc1", 1, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "0xc1"));
    CU_ASSERT_EQUAL(pre("", 0, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "empty"));
    CU_ASSERT_EQUAL(sdm_wire_precheck(NULL, 0, NULL, NULL), SDM_WIRE_BAD_REQUEST);
    done();
}

/* {"op": "info", "id": [[...[]...]]}: the whole frame nests `depth` containers. */
static size_t nested_info(uint8_t *out, int depth)
{
    static const uint8_t head[] = {0x82, 0xa2, 'o', 'p', 0xa4, 'i', 'n', 'f', 'o', 0xa2, 'i', 'd'};
    size_t n = sizeof(head);
    memcpy(out, head, n);
    for (int i = 0; i < depth - 2; i++)
        out[n++] = 0x91;
    out[n++] = 0x90;
    return n;
}

static void test_precheck_depth(void)
{
    uint8_t buf[64];
    /* bare arrays: 32 deep passes, 33 does not */
    memset(buf, 0x91, sizeof(buf));
    buf[31] = 0xc0; /* 31 arrays around nil: depth 31 */
    CU_ASSERT_EQUAL(pre(buf, 32, NULL), SDM_WIRE_OK);
    buf[31] = 0x91;
    buf[32] = 0xc0; /* 32 arrays */
    CU_ASSERT_EQUAL(pre(buf, 33, NULL), SDM_WIRE_OK);
    buf[32] = 0x91;
    buf[33] = 0xc0; /* 33 arrays */
    CU_ASSERT_EQUAL(pre(buf, 34, NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "nesting deeper than 32"));
    /* an empty container counts as a level too: 31 arrays around [] pass, 32 do not */
    buf[31] = 0x90;
    CU_ASSERT_EQUAL(pre(buf, 32, NULL), SDM_WIRE_OK);
    buf[31] = 0x91;
    buf[32] = 0x90;
    CU_ASSERT_EQUAL(pre(buf, 33, NULL), SDM_WIRE_BAD_REQUEST);

    /* through the decoder, with msgpack-c unpacking the deepest frame allowed */
    size_t n = nested_info(buf, 32);
    CU_ASSERT_EQUAL(decode_raw(buf, n), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_INFO);
    CU_ASSERT_EQUAL(R.id_len, 31u);
    CU_ASSERT(R.id && memcmp(R.id, buf + 12, 31) == 0);
    n = nested_info(buf, 33);
    CU_ASSERT_EQUAL(decode_raw(buf, n), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "nesting deeper than 32"));

    /* a tighter limit */
    sdm_wire_limits lim = {2, 0};
    CU_ASSERT_EQUAL(pre("\x91\x91\xc0", 3, &lim), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(pre("\x91\x91\x91\xc0", 4, &lim), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "nesting deeper than 2"));
    done();
}

static void test_precheck_trailing_and_budget(void)
{
    static const uint8_t info[] = {0x81, 0xa2, 'o', 'p', 0xa4, 'i', 'n', 'f', 'o', 0xc0};
    CU_ASSERT_EQUAL(pre(info, sizeof(info) - 1, NULL), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(pre(info, sizeof(info), NULL), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "1 trailing bytes"));
    CU_ASSERT_EQUAL(decode_raw(info, sizeof(info)), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "trailing"));
    CU_ASSERT_EQUAL(decode_raw(info, sizeof(info) - 1), SDM_WIRE_OK);

    /* [1, 2, {"a": 3}]: 3 array elements + 1 map entry */
    static const uint8_t four[] = {0x93, 0x01, 0x02, 0x81, 0xa1, 'a', 0x03};
    sdm_wire_limits lim = {0, 4};
    CU_ASSERT_EQUAL(pre(four, sizeof(four), &lim), SDM_WIRE_OK);
    lim.max_elements = 3; /* well-formed but over the budget: too_large */
    CU_ASSERT_EQUAL(pre(four, sizeof(four), &lim), SDM_WIRE_TOO_LARGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "at byte 3, fixmap of 1: over the element budget"));
    /* the decoder applies the caller's budget */
    base_contribute();
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    sdm_worker_request_free(&R);
    lim.max_elements = 8; /* 9 top-level entries */
    CU_ASSERT_EQUAL(sdm_wire_decode_worker(F, FN, &lim, &R, &E), SDM_WIRE_TOO_LARGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "element budget"));

    /* the default budget is 2^24 elements: an array of 2^24 nils passes, one more does not */
    size_t n = (size_t)1 << 24;
    uint8_t *big = malloc(n + 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 0xc0, n + 6);
    memcpy(big, "\xdd\x01\x00\x00\x00", 5); /* array32 of 2^24 */
    CU_ASSERT_EQUAL(sdm_wire_precheck(big, n + 5, NULL, &E), SDM_WIRE_OK);
    big[4] = 0x01; /* 2^24 + 1 */
    CU_ASSERT_EQUAL(sdm_wire_precheck(big, n + 6, NULL, &E), SDM_WIRE_TOO_LARGE);
    free(big);
    done();
}

/* An info request whose id holds every msgpack format once. */
static void test_precheck_every_format(void)
{
    /* clang-format off */
    static const uint8_t idv[] = {
        0xdc, 0x00, 35,                                  /* array16 of 35 */
        0xc0, 0xc2, 0xc3, 0x05, 0xff,                    /* nil, false, true, fixints */
        0xcc, 0x80, 0xcd, 0x01, 0x00, 0xce, 0, 1, 0, 0,  /* uint8/16/32 */
        0xcf, 0, 0, 1, 0, 0, 0, 0, 0,                    /* uint64 */
        0xd0, 0x80, 0xd1, 0x80, 0, 0xd2, 0x80, 0, 0, 0,  /* int8/16/32 */
        0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0,           /* int64 */
        0xca, 0x3f, 0xc0, 0, 0,                          /* float32 1.5 */
        0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0,              /* float64 2.5 */
        0xa1, 'x', 0xd9, 1, 'y', 0xda, 0, 1, 'z', 0xdb, 0, 0, 0, 1, 'w', /* str */
        0xc4, 1, 0, 0xc5, 0, 1, 0, 0xc6, 0, 0, 0, 1, 0,  /* bin8/16/32 */
        0xd4, 1, 0, 0xd5, 1, 0, 0, 0xd6, 1, 0, 0, 0, 0,  /* fixext 1/2/4 */
        0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0,                 /* fixext 8 */
        0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* fixext 16 */
        0xc7, 1, 5, 0, 0xc8, 0, 1, 5, 0, 0xc9, 0, 0, 0, 1, 5, 0, /* ext8/16/32 */
        0xdc, 0, 1, 0xc0, 0xdd, 0, 0, 0, 1, 0xc0,        /* array16/32 */
        0xde, 0, 1, 0xa1, 'k', 0xc0, 0xdf, 0, 0, 0, 1, 0xa1, 'k', 0xc0, /* map16/32 */
        0x80,                                            /* empty fixmap */
    };
    /* clang-format on */
    uint8_t frame[sizeof(idv) + 12] = {0x82, 0xa2, 'o', 'p',  0xa4, 'i',
                                       'n',  'f',  'o', 0xa2, 'i',  'd'};
    memcpy(frame + 12, idv, sizeof(idv));
    CU_ASSERT_EQUAL(pre(frame, sizeof(frame), NULL), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(decode_raw(frame, sizeof(frame)), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_INFO);
    CU_ASSERT_EQUAL(R.id_len, sizeof(idv));
    CU_ASSERT(R.id == F + 12);
    /* cut anywhere inside, it is truncated */
    int all_bad = 1;
    for (size_t k = 12; k < sizeof(frame); k++)
        if (pre(frame, k, NULL) != SDM_WIRE_BAD_REQUEST)
            all_bad = 0;
    CU_ASSERT(all_bad);
    done();
}

/* ---- decoding valid requests ------------------------------------------------------------ */

static void test_decode_info_stats(void)
{
    breset();
    fset("op", "s", "info");
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_INFO);
    CU_ASSERT_PTR_NULL(R.id);
    CU_ASSERT_EQUAL(R.id_len, 0u);
    CU_ASSERT_EQUAL(E.code, SDM_WIRE_OK);

    breset();
    fset("id", "M s A u n", 1, "n", 2, U(1));
    fset("op", "s", "stats");
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_STATS);
    CU_ASSERT_EQUAL(R.id_len, B.val[0].size);
    CU_ASSERT(R.id && in_frame(R.id, R.id_len) && memcmp(R.id, B.val[0].data, B.val[0].size) == 0);
    /* nil is an id too, echoed as sent */
    fset("id", "n");
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT(R.id && R.id_len == 1 && R.id[0] == 0xc0);
    done();
}

static void test_decode_register(void)
{
    base_register();
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_REGISTER);
    CU_ASSERT_STRING_EQUAL(R.model, "m");
    CU_ASSERT_EQUAL(R.projection.kind, SDM_PROJ_RADEMACHER);
    CU_ASSERT_EQUAL(R.projection.input_dim, 4u);
    CU_ASSERT_EQUAL(R.projection.dim, 2u);
    CU_ASSERT_EQUAL(R.projection.seed, 42u);
    CU_ASSERT_EQUAL(R.projection.s, 0u);
    CU_ASSERT(R.id_len == 4 && memcmp(R.id, "\222\001\241a", 4) == 0); /* [1, "a"] */

    fset("input_dim", "u", U(1) << 40);
    fset("projection", "M s s s u s u s u", 4, "kind", "sjlt", "dim", U(65536), "seed", UINT64_MAX,
         "s", U(4));
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.projection.kind, SDM_PROJ_SJLT);
    CU_ASSERT_EQUAL(R.projection.input_dim, U(1) << 40);
    CU_ASSERT_EQUAL(R.projection.dim, 65536u);
    CU_ASSERT_EQUAL(R.projection.seed, UINT64_MAX);
    CU_ASSERT_EQUAL(R.projection.s, 4u);
    /* sjlt without s: the default 1, explicit */
    fset("projection", "M s s s u s u", 3, "kind", "sjlt", "dim", U(8), "seed", U(0));
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.projection.s, 1u);
    fset("input_dim", "u", U(8));
    fset("projection", "M s u s s s u", 3, "dim", U(8), "kind", "none", "seed", U(3));
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.projection.kind, SDM_PROJ_NONE);
    CU_ASSERT_EQUAL(R.projection.dim, 8u);
    done();
}

static void test_decode_contribute(void)
{
    base_contribute();
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_CONTRIBUTE);
    CU_ASSERT(R.id_len == 1 && R.id[0] == 7);
    CU_ASSERT_STRING_EQUAL(R.model, "m");
    CU_ASSERT_STRING_EQUAL(R.checkpoint, "ckpt-0");
    CU_ASSERT_EQUAL(R.lr, 0.5);
    CU_ASSERT_STRING_EQUAL(R.contributor, "alice");
    CU_ASSERT_STRING_EQUAL(R.shard, "s0");
    CU_ASSERT_EQUAL(R.curvature, 0);
    CU_ASSERT_FATAL(R.example_ids != NULL);
    CU_ASSERT(R.example_ids[0] == 10 && R.example_ids[1] == 11 && R.example_ids[2] == 12);
    CU_ASSERT_EQUAL(R.is_features, 0);
    CU_ASSERT_EQUAL(R.rows.dtype, SDM_F32);
    CU_ASSERT_EQUAL(R.rows.rows, 3u);
    CU_ASSERT_EQUAL(R.rows.cols, 4u);
    CU_ASSERT(R.rows.data == R.data_bytes && in_frame(R.data_bytes, R.n_data_bytes));
    CU_ASSERT_EQUAL(R.n_data_bytes, sizeof(G));
    CU_ASSERT(memcmp(R.data_bytes, G, sizeof(G)) == 0);
    CU_ASSERT_PTR_NULL(R.weights);

    /* numbers of every kind: int lr, float32 and int weights; largest ids */
    fset("lr", "u", U(2));
    fset("weights", "A i f d", 3, I(-1), 0.25, 1e300);
    fset("example_ids", "A u u u", 3, U(0), UINT64_MAX, U(1) << 33);
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.lr, 2.0);
    CU_ASSERT_FATAL(R.weights != NULL);
    CU_ASSERT(R.weights[0] == -1.0 && R.weights[1] == 0.25 && R.weights[2] == 1e300);
    CU_ASSERT(R.example_ids[1] == UINT64_MAX && R.example_ids[2] == U(1) << 33);
    fset("lr", "f", 0.125);
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.lr, 0.125);

    /* features, f16, and curvature: false is an ordinary batch */
    fdel("grads");
    put_matrix("features", "f16", 3, 2, H, 12);
    fset("curvature", "F");
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.is_features, 1);
    CU_ASSERT_EQUAL(R.curvature, 0);
    CU_ASSERT_EQUAL(R.rows.dtype, SDM_F16);
    CU_ASSERT(R.rows.rows == 3 && R.rows.cols == 2 && R.n_data_bytes == 12);
    CU_ASSERT(memcmp(R.rows.data, H, 12) == 0);
    CU_ASSERT_STRING_EQUAL(R.contributor, "alice");
    /* a bf16 matrix, 256-byte names */
    char name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    put_matrix("features", "bf16", 3, 1, H, 6);
    fset("shard", "s", name);
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.rows.dtype, SDM_BF16);
    CU_ASSERT_STRING_EQUAL(R.shard, name);
    done();
}

static void test_decode_curvature(void)
{
    base_contribute();
    fdel("contributor");
    fdel("shard");
    fdel("example_ids");
    fset("curvature", "T");
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.curvature, 1);
    CU_ASSERT_STRING_EQUAL(R.model, "m");
    CU_ASSERT_STRING_EQUAL(R.checkpoint, "ckpt-0");
    CU_ASSERT_EQUAL(R.lr, 0.5);
    CU_ASSERT_PTR_NULL(R.contributor);
    CU_ASSERT_PTR_NULL(R.shard);
    CU_ASSERT_PTR_NULL(R.example_ids);
    CU_ASSERT_PTR_NULL(R.weights);
    CU_ASSERT_EQUAL(R.rows.rows, 3u);
    /* nothing else may ride along */
    fset("contributor", "s", "alice");
    EXPECT_BAD("contributor: not allowed in a curvature batch");
    fdel("contributor");
    fset("shard", "s", "s0");
    EXPECT_BAD("shard: not allowed in a curvature batch");
    fdel("shard");
    fset("example_ids", "A u u u", 3, U(1), U(2), U(3));
    EXPECT_BAD("example_ids: not allowed in a curvature batch");
    fdel("example_ids");
    fset("weights", "A d d d", 3, 1.0, 1.0, 1.0);
    EXPECT_BAD("weights: not allowed in a curvature batch");
    fdel("weights");
    fdel("lr");
    EXPECT_BAD("lr: missing");
    fset("lr", "d", 0.5);
    fset("curvature", "u", U(1));
    EXPECT_BAD("curvature: expected true or false");
    done();
}

static void test_decode_attribute(void)
{
    base_attribute();
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.op, SDM_OP_ATTRIBUTE);
    CU_ASSERT(R.id_len == 3 && memcmp(R.id, "\xa2q1", 3) == 0);
    CU_ASSERT_STRING_EQUAL(R.model, "m");
    CU_ASSERT_EQUAL(R.queries_are_features, 0);
    CU_ASSERT_EQUAL_FATAL(R.n_queries, 2u);
    CU_ASSERT_STRING_EQUAL(R.queries[0].checkpoint, "ckpt-0");
    CU_ASSERT_STRING_EQUAL(R.queries[1].checkpoint, "ckpt-1");
    CU_ASSERT_EQUAL(R.queries[0].rows.dtype, SDM_F32);
    CU_ASSERT_EQUAL(R.queries[1].rows.dtype, SDM_F16);
    for (int q = 0; q < 2; q++) {
        CU_ASSERT_EQUAL(R.queries[q].rows.rows, 2u);
        CU_ASSERT_EQUAL(R.queries[q].rows.cols, 4u);
        CU_ASSERT(isnan(R.queries[q].lambda));
        CU_ASSERT(R.queries[q].rows.data == R.queries[q].bytes);
        CU_ASSERT(in_frame(R.queries[q].bytes, R.queries[q].n_bytes));
    }
    CU_ASSERT(R.queries[0].n_bytes == 32 && memcmp(R.queries[0].bytes, G, 32) == 0);
    CU_ASSERT(R.queries[1].n_bytes == 16 && memcmp(R.queries[1].bytes, H, 16) == 0);
    CU_ASSERT_EQUAL(R.method, SDM_METHOD_DOT);
    CU_ASSERT_EQUAL(R.aggregate, SDM_AGG_SUM);
    CU_ASSERT_EQUAL(R.topk, 10u);
    CU_ASSERT_PTR_NULL(R.query_ids);
    CU_ASSERT_PTR_NULL(R.query_id_lens);
    CU_ASSERT_PTR_NULL(R.request_id);

    /* every option */
    fset("method", "s", "trak");
    fset("aggregate", "s", "mean");
    fset("topk", "u", U(100000));
    fset("lambda", "M s d", 1, "ckpt-1", 0.25);
    fset("query_ids", "A u s", 2, U(1) << 40, "x");
    fset("request_id", "s", "req-9");
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.method, SDM_METHOD_TRAK);
    CU_ASSERT_EQUAL(R.aggregate, SDM_AGG_MEAN);
    CU_ASSERT_EQUAL(R.topk, 100000u);
    CU_ASSERT(isnan(R.queries[0].lambda));
    CU_ASSERT_EQUAL(R.queries[1].lambda, 0.25);
    CU_ASSERT_FATAL(R.query_ids != NULL && R.query_id_lens != NULL);
    CU_ASSERT(R.query_id_lens[0] == 9 && in_frame(R.query_ids[0], 9) &&
              memcmp(R.query_ids[0], "\xcf\x00\x00\x01\x00\x00\x00\x00\x00", 9) == 0);
    CU_ASSERT(R.query_id_lens[1] == 2 && memcmp(R.query_ids[1], "\xa1x", 2) == 0);
    CU_ASSERT_STRING_EQUAL(R.request_id, "req-9");

    /* one lambda for every checkpoint; ints are numbers; topk 0; cosine, empty request id */
    fset("lambda", "u", U(3));
    fset("topk", "u", U(0));
    fset("request_id", "s", "");
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT(R.queries[0].lambda == 3.0 && R.queries[1].lambda == 3.0);
    CU_ASSERT_EQUAL(R.topk, 0u);
    CU_ASSERT_STRING_EQUAL(R.request_id, "");
    fdel("lambda");
    fset("method", "s", "cosine");
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.method, SDM_METHOD_COSINE);

    /* query_features */
    fdel("queries");
    fdel("query_ids");
    msgpack_sbuffer a = matrix("bf16", 1, 3, H, 6);
    fset("query_features", "M s r", 1, "c", a.data, a.size);
    msgpack_sbuffer_destroy(&a);
    CU_ASSERT_EQUAL_FATAL(decode_built(), SDM_WIRE_OK);
    CU_ASSERT_EQUAL(R.queries_are_features, 1);
    CU_ASSERT_EQUAL_FATAL(R.n_queries, 1u);
    CU_ASSERT_STRING_EQUAL(R.queries[0].checkpoint, "c");
    CU_ASSERT(R.queries[0].rows.dtype == SDM_BF16 && R.queries[0].rows.rows == 1 &&
              R.queries[0].rows.cols == 3);
    done();
}

/* ---- bad requests --------------------------------------------------------------------- */

static void test_bad_envelope(void)
{
    CU_ASSERT_EQUAL(decode_raw("\x92\xa2op\xa4info", 9), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "request: expected a map"));
    CU_ASSERT_EQUAL(decode_raw("\x82\xa2op\xa4info\x01\x02", 11), SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(strstr(E.message, "request: key 1 is not a string"));

    breset();
    fset("id", "u", U(5));
    EXPECT_BAD("op: missing");
    fset("op", "u", U(1));
    EXPECT_BAD("op: expected a string");
    fset("op", "s", "explode");
    expect_at(__LINE__, SDM_WIRE_UNKNOWN_OP, "op: unknown op \"explode\"");
    fset("op", "S", "in\001fo", Z(5)); /* request bytes reach messages escaped */
    expect_at(__LINE__, SDM_WIRE_UNKNOWN_OP, "\"in\\x01fo\"");
    fset("op", "s", "info");
    fadd("op", "s", "info");
    EXPECT_BAD("op: appears twice");

    breset();
    fset("op", "s", "info");
    fset("id", "u", U(5));
    fset("extra", "u", U(1));
    EXPECT_BAD("extra: unknown key for op info");
    fdel("extra");
    fset("model", "s", "m"); /* a key of another op */
    EXPECT_BAD("model: unknown key for op info");
    fdel("model");
    fadd("id", "u", U(6));
    EXPECT_BAD("id: appears twice");
    CU_ASSERT(R.id && R.id[0] == 5); /* the first id is echoed */

    base_contribute();
    fset("queries", "n");
    EXPECT_BAD("queries: unknown key for op contribute");
    base_contribute();
    fadd("model", "s", "m2");
    EXPECT_BAD("model: appears twice");
    base_attribute();
    fset("\001bad\377", "u", U(1));
    EXPECT_BAD("\\x01bad\\xff: unknown key for op attribute");
    done();
}

static void test_bad_names(void)
{
    char name[258];
    memset(name, 'n', 257);
    name[257] = '\0';
    base_contribute();
    fset("model", "s", "");
    EXPECT_BAD("model: must not be empty");
    fset("model", "s", name);
    EXPECT_BAD("model: 257 bytes, at most 256");
    fset("model", "u", U(3));
    EXPECT_BAD("model: expected a string");
    fdel("model");
    EXPECT_BAD("model: missing");
    base_contribute();
    fset("shard", "S", "s\0000", Z(3));
    EXPECT_BAD("shard: contains a NUL byte");
    fset("shard", "s", "\xc3\xa9t\xc3\xa9"); /* "été" is fine */
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    fset("contributor", "s", "a\xff");
    EXPECT_BAD("contributor: not valid UTF-8");
    fset("contributor", "s", "\xed\xa0\x80"); /* a UTF-16 surrogate */
    EXPECT_BAD("contributor: not valid UTF-8");
    fset("contributor", "s", "\xc0\xaf"); /* overlong */
    EXPECT_BAD("contributor: not valid UTF-8");
    fset("contributor", "s", "\xe2\x82"); /* cut short */
    EXPECT_BAD("contributor: not valid UTF-8");
    fset("contributor", "s", "alice");
    fset("checkpoint", "A", 0);
    EXPECT_BAD("checkpoint: expected a string");
    done();
}

static void test_bad_matrix(void)
{
    static float big[100];
    base_contribute();
    /* grads.data one element short */
    fset("example_ids", "A u u u u u u u u u u", 10, U(0), U(1), U(2), U(3), U(4), U(5), U(6), U(7),
         U(8), U(9));
    put_matrix("grads", "f32", 10, 10, big, 396);
    EXPECT_BAD("grads.data: 396 bytes, expected 400 (rows 10 x cols 10 x 4)");
    put_matrix("grads", "f32", 10, 10, big, 400);
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    put_matrix("grads", "f16", 10, 10, big, 400);
    EXPECT_BAD("grads.data: 400 bytes, expected 200 (rows 10 x cols 10 x 2)");

    base_contribute();
    put_matrix("grads", "f32", U(1) << 62, 8, big, 0);
    EXPECT_BAD("grads: rows 4611686018427387904 x cols 8 x 4 bytes overflows");
    put_matrix("grads", "f16", U(1) << 32, U(1) << 32, big, 0);
    EXPECT_BAD("grads: rows 4294967296 x cols 4294967296 x 2 bytes overflows");
    put_matrix("grads", "f64", 3, 4, G, 48);
    EXPECT_BAD("grads.dtype: must be f32, f16 or bf16");
    put_matrix("grads", "f32", 0, 4, G, 0);
    EXPECT_BAD("grads.rows: must be at least 1");
    put_matrix("grads", "f32", 3, 0, G, 0);
    EXPECT_BAD("grads.cols: must be at least 1");
    fset("grads", "M s s s i s u s b", 4, "dtype", "f32", "rows", I(-3), "cols", U(4), "data", G,
         Z(48));
    EXPECT_BAD("grads.rows: expected a non-negative integer");
    fset("grads", "M s s s u s d s b", 4, "dtype", "f32", "rows", U(3), "cols", 4.0, "data", G,
         Z(48));
    EXPECT_BAD("grads.cols: expected a non-negative integer");
    fset("grads", "M s s s u s u s s", 4, "dtype", "f32", "rows", U(3), "cols", U(4), "data",
         "abc");
    EXPECT_BAD("grads.data: expected bin");
    fset("grads", "M s s s u s b", 3, "dtype", "f32", "rows", U(3), "data", G, Z(48));
    EXPECT_BAD("grads.cols: missing");
    fset("grads", "M s s s u s u s b s s", 5, "dtype", "f32", "rows", U(3), "cols", U(4), "data", G,
         Z(48), "order", "C");
    EXPECT_BAD("grads.order: unknown key");
    fset("grads", "M s s s u s u s u s b", 5, "dtype", "f32", "rows", U(3), "cols", U(4), "rows",
         U(3), "data", G, Z(48));
    EXPECT_BAD("grads.rows: appears twice");
    fset("grads", "M u s s u s u s b", 4, U(1), "f32", "rows", U(3), "cols", U(4), "data", G,
         Z(48));
    EXPECT_BAD("grads: key 0 is not a string");
    fset("grads", "b", G, Z(48));
    EXPECT_BAD("grads: expected a map {dtype, rows, cols, data}");

    base_contribute();
    put_matrix("features", "f32", 3, 2, G, 24);
    EXPECT_BAD("grads, features: give one of them, not both");
    fdel("grads");
    put_matrix("features", "bf16", 3, 2, G, 24);
    EXPECT_BAD("features.data: 24 bytes, expected 12 (rows 3 x cols 2 x 2)");
    fdel("features");
    EXPECT_BAD("grads: missing (or features)");
    done();
}

static void test_bad_contribute(void)
{
    base_contribute();
    fset("lr", "d", NAN);
    EXPECT_BAD("lr: nan, must be a finite number > 0");
    fset("lr", "d", INFINITY);
    EXPECT_BAD("lr: inf, must be a finite number > 0");
    fset("lr", "u", U(0));
    EXPECT_BAD("lr: 0, must be a finite number > 0");
    fset("lr", "i", I(-1));
    EXPECT_BAD("lr: -1, must be a finite number > 0");
    fset("lr", "s", "0.5");
    EXPECT_BAD("lr: expected a number");
    fdel("lr");
    EXPECT_BAD("lr: missing");

    base_contribute();
    fset("example_ids", "A u u", 2, U(1), U(2));
    EXPECT_BAD("example_ids: 2 values, expected 3 (grads.rows)");
    fset("example_ids", "A u i u", 3, U(1), I(-2), U(3));
    EXPECT_BAD("example_ids[1]: expected a non-negative integer");
    fset("example_ids", "A u u d", 3, U(1), U(2), 3.0);
    EXPECT_BAD("example_ids[2]: expected a non-negative integer");
    fset("example_ids", "u", U(1));
    EXPECT_BAD("example_ids: expected an array");
    fdel("example_ids");
    EXPECT_BAD("example_ids: missing");
    /* the 18th of 20 */
    static float g20[20 * 4];
    base_contribute();
    put_matrix("grads", "f32", 20, 4, g20, sizeof(g20));
    fset("example_ids", "A u u u u u u u u u u u u u u u u u s u u", 20, U(0), U(1), U(2), U(3),
         U(4), U(5), U(6), U(7), U(8), U(9), U(10), U(11), U(12), U(13), U(14), U(15), U(16), "17",
         U(18), U(19));
    EXPECT_BAD("example_ids[17]: expected a non-negative integer");

    base_contribute();
    fset("weights", "A d d", 2, 1.0, 1.0);
    EXPECT_BAD("weights: 2 values, expected 3 (grads.rows)");
    fset("weights", "A d d d", 3, 1.0, INFINITY, 1.0);
    EXPECT_BAD("weights[1]: must be finite");
    fset("weights", "A d d f", 3, 1.0, 1.0, NAN);
    EXPECT_BAD("weights[2]: must be finite");
    fset("weights", "A d d s", 3, 1.0, 1.0, "x");
    EXPECT_BAD("weights[2]: expected a number");
    fset("weights", "d", 1.0);
    EXPECT_BAD("weights: expected an array");
    fdel("weights");
    fdel("contributor");
    EXPECT_BAD("contributor: missing");
    base_contribute();
    fdel("shard");
    EXPECT_BAD("shard: missing");
    base_contribute();
    fdel("checkpoint");
    EXPECT_BAD("checkpoint: missing");
    done();
}

/* queries {ckpt-0: a, ckpt-1: b} from two packed matrices */
static void put_two(const char *key, msgpack_sbuffer a, msgpack_sbuffer b)
{
    fset(key, "M s r s r", 2, "ckpt-0", a.data, a.size, "ckpt-1", b.data, b.size);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

static void test_bad_attribute(void)
{
    static float q[32];
    base_attribute();
    put_two("queries", matrix("f32", 4, 2, q, 32), matrix("f32", 3, 2, q, 24));
    EXPECT_BAD("queries.ckpt-1.rows: 3, expected 4 (as at ckpt-0)");
    put_two("queries", matrix("f32", 4, 2, q, 32), matrix("f16", 4, 3, q, 24));
    EXPECT_BAD("queries.ckpt-1.cols: 3, expected 2 (as at ckpt-0)");
    put_two("queries", matrix("f32", 4, 2, q, 32), matrix("f32", 4, 2, q, 31));
    EXPECT_BAD("queries.ckpt-1.data: 31 bytes, expected 32");
    put_two("query_features", matrix("f32", 1, 2, q, 8), matrix("f32", 1, 2, q, 8));
    EXPECT_BAD("queries, query_features: give one of them, not both");
    fdel("queries");
    put_two("query_features", matrix("f32", 1, 2, q, 8), matrix("f32", 1, 0, q, 0));
    EXPECT_BAD("query_features.ckpt-1.cols: must be at least 1");
    fdel("query_features");
    EXPECT_BAD("queries: missing (or query_features)");
    fset("queries", "M", 0);
    EXPECT_BAD("queries: empty, give at least one checkpoint");
    fset("queries", "A", 0);
    EXPECT_BAD("queries: expected a map {checkpoint: matrix}");
    fset("queries", "M u n", 1, U(1));
    EXPECT_BAD("queries: checkpoint 0: expected a string");
    fset("queries", "M s n", 1, "");
    EXPECT_BAD("queries: checkpoint 0: must not be empty");
    fset("queries", "M s n", 1, "c");
    EXPECT_BAD("queries.c: expected a map");
    /* the same checkpoint twice, anywhere in the map */
    msgpack_sbuffer a = matrix("f32", 1, 2, q, 8);
    fset("queries", "M s r s r s r", 3, "x", a.data, a.size, "y", a.data, a.size, "x", a.data,
         a.size);
    EXPECT_BAD("queries.x: checkpoint appears twice");
    msgpack_sbuffer_destroy(&a);

    base_attribute();
    fset("method", "s", "pagerank");
    EXPECT_BAD("method: must be dot, cosine or trak");
    fset("method", "u", U(0));
    EXPECT_BAD("method: must be dot, cosine or trak");
    fset("method", "s", "dot");
    fset("aggregate", "s", "median");
    EXPECT_BAD("aggregate: must be sum or mean");
    fdel("aggregate");
    fset("topk", "u", U(100001));
    EXPECT_BAD("topk: 100001, at most 100000");
    fset("topk", "i", I(-1));
    EXPECT_BAD("topk: expected a non-negative integer");
    fdel("topk");

    /* lambda */
    fset("lambda", "d", 0.5);
    EXPECT_BAD("lambda: only method trak takes lambda");
    fset("method", "s", "trak");
    fset("lambda", "d", NAN);
    EXPECT_BAD("lambda: nan, must be a finite number >= 0");
    fset("lambda", "i", I(-1));
    EXPECT_BAD("lambda: -1, must be a finite number >= 0");
    fset("lambda", "s", "0.5");
    EXPECT_BAD("lambda: expected a number or a map {checkpoint: number}");
    fset("lambda", "M s d", 1, "nope", 1.0);
    EXPECT_BAD("lambda.nope: not a checkpoint of queries");
    fset("lambda", "M s d s d", 2, "ckpt-0", 1.0, "ckpt-0", 2.0);
    EXPECT_BAD("lambda.ckpt-0: appears twice");
    fset("lambda", "M s d s d", 2, "ckpt-0", 1.0, "ckpt-1", INFINITY);
    EXPECT_BAD("lambda.ckpt-1: inf, must be a finite number >= 0");
    fset("lambda", "M s s", 1, "ckpt-1", "x");
    EXPECT_BAD("lambda.ckpt-1: expected a number");
    fset("lambda", "M u d", 1, U(0), 1.0);
    EXPECT_BAD("lambda: key 0 is not a string");
    fdel("lambda");

    /* query_ids and request_id */
    fset("query_ids", "A u", 1, U(1));
    EXPECT_BAD("query_ids: 1 values, expected 2 (the queries' rows)");
    fset("query_ids", "A u i", 2, U(1), I(-1));
    EXPECT_BAD("query_ids[1]: expected a non-negative integer or a string");
    fset("query_ids", "A n u", 2, U(1));
    EXPECT_BAD("query_ids[0]: expected a non-negative integer or a string");
    fset("query_ids", "A s u", 2, "\xff", U(1));
    EXPECT_BAD("query_ids[0]: not valid UTF-8");
    fset("query_ids", "s", "ab");
    EXPECT_BAD("query_ids: expected an array");
    fdel("query_ids");
    char rid[258];
    memset(rid, 'r', 257);
    rid[257] = '\0';
    fset("request_id", "s", rid);
    EXPECT_BAD("request_id: 257 bytes, at most 256");
    rid[256] = '\0';
    fset("request_id", "s", rid);
    CU_ASSERT_EQUAL(decode_built(), SDM_WIRE_OK);
    fset("request_id", "u", U(1));
    EXPECT_BAD("request_id: expected a string");
    fset("request_id", "S", "a\0b", Z(3));
    EXPECT_BAD("request_id: contains a NUL byte");
    fdel("request_id");
    fdel("model");
    EXPECT_BAD("model: missing");
    done();
}

static void test_bad_register(void)
{
    base_register();
    fset("input_dim", "u", U(0));
    EXPECT_BAD("input_dim: must be at least 1");
    fset("input_dim", "i", I(-4));
    EXPECT_BAD("input_dim: expected a non-negative integer");
    fdel("input_dim");
    EXPECT_BAD("input_dim: missing");

    base_register();
    fset("projection", "s", "rademacher");
    EXPECT_BAD("projection: expected a map {kind, dim, seed, s?}");
    fset("projection", "M s s s u", 2, "kind", "rademacher", "dim", U(2));
    EXPECT_BAD("projection.seed: missing");
    fset("projection", "M s u s u", 2, "dim", U(2), "seed", U(2));
    EXPECT_BAD("projection.kind: missing");
    fset("projection", "M s s s u s u", 3, "kind", "gaussian", "dim", U(2), "seed", U(1));
    EXPECT_BAD("projection.kind: must be rademacher, sjlt or none");
    fset("projection", "M s s s u s u", 3, "kind", "rademacher", "dim", U(0), "seed", U(1));
    EXPECT_BAD("projection.dim: 0, expected 1 to 65536");
    fset("projection", "M s s s u s u", 3, "kind", "rademacher", "dim", U(65537), "seed", U(1));
    EXPECT_BAD("projection.dim: 65537, expected 1 to 65536");
    fset("projection", "M s s s u s i", 3, "kind", "rademacher", "dim", U(2), "seed", I(-1));
    EXPECT_BAD("projection.seed: expected a non-negative integer");
    fset("projection", "M s s s u s u s u", 4, "kind", "rademacher", "dim", U(2), "seed", U(1), "s",
         U(1));
    EXPECT_BAD("projection.s: only kind sjlt takes s");
    fset("projection", "M s s s u s u s u", 4, "kind", "sjlt", "dim", U(4), "seed", U(1), "s",
         U(0));
    EXPECT_BAD("projection.s: 0, expected 1 to projection.dim (4)");
    fset("projection", "M s s s u s u s u", 4, "kind", "sjlt", "dim", U(4), "seed", U(1), "s",
         U(3));
    EXPECT_BAD("projection.s: must divide projection.dim");
    fset("projection", "M s s s u s u", 3, "kind", "none", "dim", U(2), "seed", U(1));
    EXPECT_BAD("projection.dim: must equal input_dim");
    fset("projection", "M s s s u s u s s", 4, "kind", "none", "dim", U(4), "seed", U(1), "mode",
         "x");
    EXPECT_BAD("projection.mode: unknown key");
    fset("projection", "M s s s u s u s u", 4, "kind", "none", "dim", U(4), "seed", U(1), "dim",
         U(4));
    EXPECT_BAD("projection.dim: appears twice");
    done();
}

/* ---- free ----------------------------------------------------------------------------- */

static void test_free(void)
{
    sdm_worker_request r;
    memset(&r, 0, sizeof(r));
    sdm_worker_request_free(&r);
    sdm_worker_request_free(NULL);
    /* a request that failed half-way owns some names; free takes them all (ASan checks) */
    base_attribute();
    fset("method", "s", "bad");
    EXPECT_BAD("method:");
    CU_ASSERT_PTR_NOT_NULL(R.model);
    CU_ASSERT_EQUAL(R.n_queries, 2u);
    sdm_worker_request_free(&R);
    CU_ASSERT_PTR_NULL(R.model);
    CU_ASSERT_PTR_NULL(R.queries);
    CU_ASSERT_PTR_NULL(R.id);
    CU_ASSERT_EQUAL(R.n_queries, 0u);
    sdm_worker_request_free(&R);
    done();
}

/* ---- replies -------------------------------------------------------------------------- */

/* Unpacks a reply, checking it is exactly one object. */
static void unpack_reply(msgpack_sbuffer *sb, msgpack_unpacked *up)
{
    size_t off = 0;
    msgpack_unpacked_init(up);
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(up, sb->data, sb->size, &off),
                          MSGPACK_UNPACK_SUCCESS);
    CU_ASSERT_EQUAL(off, sb->size);
    CU_ASSERT_EQUAL_FATAL(up->data.type, MSGPACK_OBJECT_MAP);
}

static int kv_is(const msgpack_object_kv *kv, const char *key)
{
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
           memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0;
}

static int str_eq(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, strlen(s)) == 0;
}

static void test_reply_ok(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static const uint8_t id[] = {0x92, 0x01, 0xa1, 'a'}; /* [1, "a"] */
    sdm_wire_reply_ok(&pk, id, sizeof(id), 2);
    sdm_wire_pack_str(&pk, "model");
    sdm_wire_pack_str(&pk, "m");
    sdm_wire_pack_str(&pk, "raw");
    sdm_wire_pack_raw(&pk, (const uint8_t *)"\xcd\x01\x00", 3);
    /* the exact bytes: {"id": [1, "a"], "ok": true, "model": "m", "raw": 256} */
    static const uint8_t want[] = {0x84, 0xa2, 'i',  'd',  0x92, 0x01, 0xa1, 'a',  0xa2,
                                   'o',  'k',  0xc3, 0xa5, 'm',  'o',  'd',  'e',  'l',
                                   0xa1, 'm',  0xa3, 'r',  'a',  'w',  0xcd, 0x01, 0x00};
    CU_ASSERT_EQUAL(sb.size, sizeof(want));
    CU_ASSERT(sb.size == sizeof(want) && memcmp(sb.data, want, sizeof(want)) == 0);
    msgpack_unpacked up;
    unpack_reply(&sb, &up);
    msgpack_object_map *m = &up.data.via.map;
    CU_ASSERT_EQUAL_FATAL(m->size, 4u);
    CU_ASSERT(kv_is(&m->ptr[0], "id") && m->ptr[0].val.type == MSGPACK_OBJECT_ARRAY);
    CU_ASSERT(kv_is(&m->ptr[1], "ok") && m->ptr[1].val.type == MSGPACK_OBJECT_BOOLEAN &&
              m->ptr[1].val.via.boolean);
    CU_ASSERT(kv_is(&m->ptr[3], "raw") && m->ptr[3].val.via.u64 == 256);
    msgpack_unpacked_destroy(&up);

    /* no id: nil */
    msgpack_sbuffer_clear(&sb);
    sdm_wire_reply_ok(&pk, NULL, 0, 0);
    CU_ASSERT(sb.size == 9 && memcmp(sb.data, "\x82\xa2id\xc0\xa2ok\xc3", 9) == 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_reply_error(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sdm_wire_error e;
    sdm_wire_fail(&e, SDM_WIRE_NOT_FOUND, "model: no model 'x'");
    sdm_wire_reply_error(&pk, (const uint8_t *)"\x07", 1, &e);
    msgpack_unpacked up;
    unpack_reply(&sb, &up);
    msgpack_object_map *m = &up.data.via.map;
    CU_ASSERT_EQUAL_FATAL(m->size, 3u);
    CU_ASSERT(kv_is(&m->ptr[0], "id") && m->ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              m->ptr[0].val.via.u64 == 7);
    CU_ASSERT(kv_is(&m->ptr[1], "ok") && m->ptr[1].val.type == MSGPACK_OBJECT_BOOLEAN &&
              !m->ptr[1].val.via.boolean);
    CU_ASSERT_FATAL(kv_is(&m->ptr[2], "error") && m->ptr[2].val.type == MSGPACK_OBJECT_MAP);
    msgpack_object_map *em = &m->ptr[2].val.via.map;
    CU_ASSERT_EQUAL_FATAL(em->size, 2u);
    CU_ASSERT(kv_is(&em->ptr[0], "code") && str_eq(&em->ptr[0].val, "not_found"));
    CU_ASSERT(kv_is(&em->ptr[1], "message") && str_eq(&em->ptr[1].val, "model: no model 'x'"));
    msgpack_unpacked_destroy(&up);

    /* a decode failure's reply, byte for byte */
    msgpack_sbuffer_clear(&sb);
    CU_ASSERT_EQUAL(decode_raw("\x81\xa2op\xa1x", 6), SDM_WIRE_UNKNOWN_OP);
    sdm_wire_reply_error(&pk, R.id, R.id_len, &E);
    static const char want[] = "\x83\xa2id\xc0\xa2ok\xc2\xa5"
                               "error\x82\xa4"
                               "code\xaa"
                               "unknown_op\xa7message\xb2op: unknown op \"x\"";
    CU_ASSERT(sb.size == sizeof(want) - 1 && memcmp(sb.data, want, sizeof(want) - 1) == 0);

    /* control characters and broken UTF-8 never reach the client; valid UTF-8 does */
    msgpack_sbuffer_clear(&sb);
    sdm_wire_fail(&e, SDM_WIRE_CONFLICT, "shard: 'caf\xc3\xa9\n\xff\xc3'");
    sdm_wire_reply_error(&pk, NULL, 0, &e);
    unpack_reply(&sb, &up);
    em = &up.data.via.map.ptr[2].val.via.map;
    CU_ASSERT(str_eq(&em->ptr[0].val, "conflict"));
    CU_ASSERT(str_eq(&em->ptr[1].val, "shard: 'caf\303\251?\?\?'"));
    CU_ASSERT(up.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_NIL);
    msgpack_unpacked_destroy(&up);

    /* an error reply always carries an error code */
    msgpack_sbuffer_clear(&sb);
    sdm_wire_fail(&e, SDM_WIRE_OK, "ok");
    sdm_wire_reply_error(&pk, NULL, 0, &e);
    unpack_reply(&sb, &up);
    em = &up.data.via.map.ptr[2].val.via.map;
    CU_ASSERT(str_eq(&em->ptr[0].val, "internal"));
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    done();
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("wire", NULL, NULL);
    if (!s)
        return -1;
    CU_add_test(s, "codes and statuses", test_codes);
    CU_add_test(s, "precheck: every prefix is truncated", test_precheck_prefixes);
    CU_add_test(s, "precheck: hostile headers", test_precheck_hostile_headers);
    CU_add_test(s, "precheck: depth", test_precheck_depth);
    CU_add_test(s, "precheck: trailing bytes, element budget", test_precheck_trailing_and_budget);
    CU_add_test(s, "precheck: every format", test_precheck_every_format);
    CU_add_test(s, "decode: info, stats", test_decode_info_stats);
    CU_add_test(s, "decode: register", test_decode_register);
    CU_add_test(s, "decode: contribute", test_decode_contribute);
    CU_add_test(s, "decode: curvature", test_decode_curvature);
    CU_add_test(s, "decode: attribute", test_decode_attribute);
    CU_add_test(s, "bad: op, keys", test_bad_envelope);
    CU_add_test(s, "bad: names", test_bad_names);
    CU_add_test(s, "bad: matrices", test_bad_matrix);
    CU_add_test(s, "bad: contribute", test_bad_contribute);
    CU_add_test(s, "bad: attribute", test_bad_attribute);
    CU_add_test(s, "bad: register", test_bad_register);
    CU_add_test(s, "free", test_free);
    CU_add_test(s, "reply: ok", test_reply_ok);
    CU_add_test(s, "reply: error", test_reply_error);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
