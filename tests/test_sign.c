/* test_sign.c - keys, digests, envelopes, leaf data, receipt and proof bodies (SPEC §4–§5).
 *
 * Run as `test_sign DATA_DIR --emit DIR` it instead writes signed envelopes, leaf data and
 * Merkle roots and proofs into DIR with an index.json, for tests/python/test_formats.py to
 * check with independent implementations (hashlib, msgpack, PyNaCl).
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "merkle.h"
#include "sign.h"
#include "fixtures.h"
#include "testdata.h"

#define H SDM_HASH_LEN

/* ---- helpers ------------------------------------------------------------------------------ */

static char tmp_dir[64];

static int suite_setup(void)
{
    if (sdm_sodium_init() != 0)
        return -1;
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/sdm_test_sign_XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

/* Removes the files in a flat directory and the directory. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int suite_teardown(void)
{
    remove_dir(tmp_dir);
    return 0;
}

static void unhex(const char *hex, uint8_t *out)
{
    CU_ASSERT_EQUAL_FATAL(sdm_unhex(hex, out, strlen(hex) / 2), 0);
}

static char *read_text(const char *path)
{
    static char buf[512];
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

/* A packer writing into a fresh sbuffer. */
typedef struct packbuf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} packbuf;

static void pb_init(packbuf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void pb_str(packbuf *b, const char *s)
{
    msgpack_pack_str(&b->pk, strlen(s));
    msgpack_pack_str_body(&b->pk, s, strlen(s));
}

static void pb_bin(packbuf *b, const void *p, size_t n)
{
    msgpack_pack_bin(&b->pk, n);
    msgpack_pack_bin_body(&b->pk, p, n);
}

static sdm_keypair *test_key(const char *name)
{
    char err[256] = "";
    sdm_keypair *kp = sdm_keypair_load_or_create(tmp_dir, name, err, sizeof(err));
    if (!kp)
        fprintf(stderr, "key: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    return kp;
}

/* ---- keys --------------------------------------------------------------------------------- */

static void test_key_create_and_load(void)
{
    char err[256] = "", path[256];
    sdm_keypair *a = sdm_keypair_load_or_create(tmp_dir, "worker", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    snprintf(path, sizeof(path), "%s/worker.key", tmp_dir);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(st.st_size, 129);
    snprintf(path, sizeof(path), "%s/worker.key.tmp", tmp_dir);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0); /* no temporary left behind */

    /* the .pub file is the public key in hex, and it is the key file's second half */
    char pub_hex[2 * SDM_PK_LEN + 1];
    sdm_hex(a->pk, SDM_PK_LEN, pub_hex);
    snprintf(path, sizeof(path), "%s/worker.pub", tmp_dir);
    const char *text = read_text(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(strncmp(text, pub_hex, 64), 0);
    CU_ASSERT_STRING_EQUAL(text + 64, "\n");
    CU_ASSERT_EQUAL(memcmp(a->sk + 32, a->pk, SDM_PK_LEN), 0);

    /* loading again, either way, gives the same key, and it signs the same */
    sdm_keypair *b = sdm_keypair_load_or_create(tmp_dir, "worker", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(memcmp(a->pk, b->pk, SDM_PK_LEN), 0);
    CU_ASSERT_EQUAL(memcmp(a->sk, b->sk, SDM_SK_LEN), 0);
    snprintf(path, sizeof(path), "%s/worker.key", tmp_dir);
    sdm_keypair *c = sdm_keypair_load(path, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(memcmp(a->sk, c->sk, SDM_SK_LEN), 0);

    /* a second name is a second key */
    sdm_keypair *d = sdm_keypair_load_or_create(tmp_dir, "other", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_NOT_EQUAL(memcmp(a->pk, d->pk, SDM_PK_LEN), 0);

    sdm_keypair_destroy(&a);
    CU_ASSERT_PTR_NULL(a);
    sdm_keypair_destroy(&a);
    sdm_keypair_destroy(&b);
    sdm_keypair_destroy(&c);
    sdm_keypair_destroy(&d);
}

/* A refused key file is left exactly as it was: nothing is "repaired" over a secret. */
static void expect_refused(const char *name, const char *contents, mode_t mode,
                           const char *want_in_err)
{
    char path[256], err[256] = "";
    snprintf(path, sizeof(path), "%s/%s.key", tmp_dir, name);
    write_text(path, contents, mode);
    sdm_keypair *kp = sdm_keypair_load_or_create(tmp_dir, name, err, sizeof(err));
    CU_ASSERT_PTR_NULL(kp);
    sdm_keypair_destroy(&kp);
    if (!strstr(err, want_in_err) || !strstr(err, path)) {
        fprintf(stderr, "\n  error for %s was \"%s\", want \"%s\"\n", name, err, want_in_err);
        CU_FAIL("the error names the file and the problem");
    }
    kp = sdm_keypair_load(path, err, sizeof(err));
    CU_ASSERT_PTR_NULL(kp);
    sdm_keypair_destroy(&kp);
    const char *now = read_text(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(now);
    CU_ASSERT_STRING_EQUAL(now, contents);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, mode);
}

/* Writes text to tmp_dir/name and loads it as a worker key list. */
static int load_keys_text(const char *name, const char *text, uint8_t (**keys)[SDM_PK_LEN],
                          size_t *n, char *err, size_t err_len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    return sdm_worker_keys_load("--workers", path, keys, n, err, err_len);
}

/* One parser for the ledger's and the audit's --workers: comments, labels, CRLF, blank lines;
 * a bad line is named, an empty list refused, nothing left allocated on failure. */
static void test_worker_keys_file(void)
{
    char a[65], b[65], text[512], err[512];
    uint8_t ka[SDM_PK_LEN], kb[SDM_PK_LEN];
    memset(ka, 0xa1, sizeof(ka));
    memset(kb, 0x0b, sizeof(kb));
    sdm_hex(ka, SDM_PK_LEN, a);
    sdm_hex(kb, SDM_PK_LEN, b);
    uint8_t (*keys)[SDM_PK_LEN] = NULL;
    size_t n = 0;
    snprintf(text, sizeof(text), "# workers\n\n  %s   worker-a # the first\r\n\t%s#b\n   \n", a,
             b);
    CU_ASSERT_EQUAL_FATAL(load_keys_text("good", text, &keys, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(memcmp(keys[0], ka, SDM_PK_LEN), 0);
    CU_ASSERT_EQUAL(memcmp(keys[1], kb, SDM_PK_LEN), 0);
    free(keys);

    snprintf(text, sizeof(text), "%s\n%.63s\n", a, b); /* line 2 is one digit short */
    CU_ASSERT_EQUAL(load_keys_text("short", text, &keys, &n, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(keys);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--workers"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "short:2: not a worker public key"));
    snprintf(text, sizeof(text), "%.63sg\n", a);
    CU_ASSERT_EQUAL(load_keys_text("nothex", text, &keys, &n, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nothex:1"));
    CU_ASSERT_EQUAL(load_keys_text("empty", "# nobody\n\n", &keys, &n, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no keys"));
    CU_ASSERT_EQUAL(sdm_worker_keys_load("--workers", "/nonexistent/workers.txt", &keys, &n, err,
                                         sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/workers.txt"));
    CU_ASSERT_PTR_NULL(keys);
}

static void test_bad_key_files(void)
{
    /* a good key's text, to damage */
    uint8_t pk[SDM_PK_LEN], sk[SDM_SK_LEN];
    crypto_sign_keypair(pk, sk);
    char good[2 * SDM_SK_LEN + 2];
    sdm_hex(sk, SDM_SK_LEN, good);
    strcat(good, "\n");

    expect_refused("open0644", good, 0644, "0644");
    expect_refused("open0640", good, 0640, "0640");

    char bad[sizeof(good) + 8];
    strcpy(bad, good);
    bad[100] = bad[100] == '0' ? '1' : '0'; /* the public half no longer matches */
    expect_refused("flipped", bad, 0600, "public half");
    strcpy(bad, good);
    bad[10] = bad[10] == '0' ? '1' : '0'; /* the seed no longer gives the public half */
    expect_refused("seedflip", bad, 0600, "public half");
    strcpy(bad, good);
    bad[7] = 'g';
    expect_refused("nothex", bad, 0600, "hex digits");
    strcpy(bad, good);
    bad[127] = '\n';
    bad[128] = '\0';
    expect_refused("short", bad, 0600, "hex digits");
    strcpy(bad, good);
    strcat(bad, "00\n");
    expect_refused("long", bad, 0600, "longer than a key");
    expect_refused("empty", "", 0600, "hex digits");

    /* a .pub file that disagrees with the key file */
    char err[256] = "", path[256];
    sdm_keypair *kp = test_key("pubcheck");
    sdm_keypair_destroy(&kp);
    snprintf(path, sizeof(path), "%s/pubcheck.pub", tmp_dir);
    char other[2 * SDM_PK_LEN + 2];
    sdm_hex(pk, SDM_PK_LEN, other);
    strcat(other, "\n");
    write_text(path, other, 0644);
    kp = sdm_keypair_load_or_create(tmp_dir, "pubcheck", err, sizeof(err));
    CU_ASSERT_PTR_NULL(kp);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "pubcheck.pub"));
    sdm_keypair_destroy(&kp);

    /* a symbolic link is not followed to a key somewhere else */
    char target[256];
    snprintf(target, sizeof(target), "%s/pubcheck.key", tmp_dir);
    snprintf(path, sizeof(path), "%s/linked.key", tmp_dir);
    CU_ASSERT_EQUAL_FATAL(symlink(target, path), 0);
    kp = sdm_keypair_load_or_create(tmp_dir, "linked", err, sizeof(err));
    CU_ASSERT_PTR_NULL(kp);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "linked.key"));
    sdm_keypair_destroy(&kp);

    /* no such directory */
    kp = sdm_keypair_load_or_create("/nonexistent/sediment", "worker", err, sizeof(err));
    CU_ASSERT_PTR_NULL(kp);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/sediment/worker.key"));
}

static void test_hex(void)
{
    uint8_t in[4] = {0x00, 0x9f, 0xa0, 0xff}, out[4] = {1, 2, 3, 4};
    char hex[9];
    sdm_hex(in, 4, hex);
    CU_ASSERT_STRING_EQUAL(hex, "009fa0ff");
    CU_ASSERT_EQUAL(sdm_unhex("009FA0ff", out, 4), 0);
    CU_ASSERT_EQUAL(memcmp(in, out, 4), 0);
    uint8_t keep[4] = {7, 7, 7, 7};
    CU_ASSERT_EQUAL(sdm_unhex("009fa0f", keep, 4), -1);   /* too short */
    CU_ASSERT_EQUAL(sdm_unhex("009fa0ff0", keep, 4), -1); /* too long */
    CU_ASSERT_EQUAL(sdm_unhex("009fa0fg", keep, 4), -1);
    CU_ASSERT_EQUAL(sdm_unhex("009f a0ff", keep, 4), -1);
    CU_ASSERT_EQUAL(keep[0], 7); /* a failed parse writes nothing */
}

/* ---- digests ------------------------------------------------------------------------------ */

static void test_digests(void)
{
    uint8_t got[H], want[H];
    sdm_digest_bytes((const uint8_t *)"abc", 3, got); /* FIPS 180-2 */
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);

    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    sdm_digest_bytes(NULL, 0, got);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
    sdm_digest_ids(NULL, 0, got); /* a curvature batch: the digest of no ids */
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
    sdm_digest_weights(NULL, 0, got);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);

    /* SHA-256 of the little-endian bytes, computed with Python's hashlib and struct */
    uint64_t ids[3] = {1, 0x0102030405060708ull, UINT64_MAX};
    sdm_digest_ids(ids, 3, got);
    unhex("2a900f7fb6d22a4bc1f3b9c6c39c005a6c76a5467348243ad85c88fe886c1625", want);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
    double w[2] = {1.0, -0.5};
    sdm_digest_weights(w, 2, got);
    unhex("b75ba3b875def5d2f34361fcc7cbea9b45aa3f9ef590f96ad71c90a955800533", want);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);

    /* more ids than one internal chunk */
    uint64_t many[1000];
    for (uint64_t i = 0; i < 1000; i++)
        many[i] = i * 0x9E3779B97F4A7C15ull;
    sdm_digest_ids(many, 1000, got);
    unhex("aafc38dcbed9e6d256b3fefdb2a77d28d86e1a587a9932409981c9b82ae90c97", want);
    CU_ASSERT_EQUAL(memcmp(got, want, H), 0);
}

/* ---- envelopes ---------------------------------------------------------------------------- */

/* A map body {"type": "test", "blob": bin(48)}. */
static void test_body(packbuf *b)
{
    pb_init(b);
    msgpack_pack_map(&b->pk, 2);
    pb_str(b, "type");
    pb_str(b, "test");
    pb_str(b, "blob");
    uint8_t blob[48];
    for (int i = 0; i < 48; i++)
        blob[i] = (uint8_t)(i * 37);
    pb_bin(b, blob, sizeof(blob));
}

static void test_envelope_round_trip(void)
{
    sdm_keypair *kp = test_key("env");
    packbuf body;
    test_body(&body);
    uint8_t *env;
    size_t env_len;
    CU_ASSERT_EQUAL_FATAL(
        sdm_envelope_sign(kp, (uint8_t *)body.sb.data, body.sb.size, &env, &env_len), 0);
    /* [fixstr 18 tag, bin8 body, bin8 32 key, bin8 64 sig] */
    size_t body_at = 1 + 1 + 18 + 2;
    CU_ASSERT_EQUAL_FATAL(env_len, body_at + body.sb.size + 2 + 32 + 2 + 64);
    CU_ASSERT_EQUAL(env[0], 0x94);
    CU_ASSERT_EQUAL(env[1], 0xa0 | 18);
    CU_ASSERT_EQUAL(memcmp(env + 2, "sediment-signed-v1", 18), 0);
    CU_ASSERT_EQUAL(env[20], 0xc4);
    CU_ASSERT_EQUAL(env[21], body.sb.size);
    CU_ASSERT_EQUAL(memcmp(env + body_at, body.sb.data, body.sb.size), 0);
    size_t key_at = body_at + body.sb.size + 2, sig_at = key_at + 32 + 2;
    CU_ASSERT_EQUAL(memcmp(env + key_at, kp->pk, 32), 0);
    /* the signature is plain Ed25519 over the tag, a newline and the body */
    uint8_t msg[256];
    memcpy(msg, "sediment-signed-v1\n", 19);
    memcpy(msg + 19, body.sb.data, body.sb.size);
    CU_ASSERT_EQUAL(crypto_sign_verify_detached(env + sig_at, msg, 19 + body.sb.size, kp->pk), 0);

    const uint8_t *got_body = NULL;
    size_t got_len = 0;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error err = {0};
    CU_ASSERT_EQUAL(sdm_envelope_open(env, env_len, &got_body, &got_len, key, &err), SDM_WIRE_OK);
    CU_ASSERT_PTR_EQUAL(got_body, env + body_at);
    CU_ASSERT_EQUAL(got_len, body.sb.size);
    CU_ASSERT_EQUAL(memcmp(key, kp->pk, SDM_PK_LEN), 0);

    /* flipping any one bit of body, key or signature is never accepted; inside the blob,
     * the key and the signature (where the structure survives) it is unauthorized */
    int accepted = 0, not_unauthorized = 0;
    size_t blob_at = body_at + body.sb.size - 48;
    for (size_t i = body_at; i < env_len; i++) {
        if (i >= body_at + body.sb.size && i < key_at)
            continue; /* the key's bin header */
        if (i >= key_at + 32 && i < sig_at)
            continue;
        for (int bit = 0; bit < 8; bit += 7) {
            env[i] ^= (uint8_t)(1 << bit);
            sdm_wire_code c = sdm_envelope_open(env, env_len, &got_body, &got_len, key, &err);
            env[i] ^= (uint8_t)(1 << bit);
            accepted += c == SDM_WIRE_OK;
            if (i >= blob_at)
                not_unauthorized += c != SDM_WIRE_UNAUTHORIZED;
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    CU_ASSERT_EQUAL(not_unauthorized, 0);
    CU_ASSERT_EQUAL(sdm_envelope_open(env, env_len, &got_body, &got_len, key, &err), SDM_WIRE_OK);

    /* a valid signature by another key, under this key, is unauthorized */
    sdm_keypair *other = test_key("env-other");
    uint8_t *env2;
    size_t env2_len;
    CU_ASSERT_EQUAL_FATAL(
        sdm_envelope_sign(other, (uint8_t *)body.sb.data, body.sb.size, &env2, &env2_len), 0);
    memcpy(env2 + key_at, kp->pk, 32);
    CU_ASSERT_EQUAL(sdm_envelope_open(env2, env2_len, &got_body, &got_len, key, &err),
                    SDM_WIRE_UNAUTHORIZED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "envelope.sig"));

    free(env);
    free(env2);
    msgpack_sbuffer_destroy(&body.sb);
    sdm_keypair_destroy(&kp);
    sdm_keypair_destroy(&other);
}

/* Packs an envelope from parts: n elements of tag, body, key, sig (and an extra nil). */
static void hand_envelope(packbuf *b, int n, const char *tag, const uint8_t *body, size_t body_len,
                          const uint8_t *key, size_t key_len, const uint8_t *sig, size_t sig_len)
{
    pb_init(b);
    msgpack_pack_array(&b->pk, (size_t)n);
    pb_str(b, tag);
    if (n > 1)
        pb_bin(b, body, body_len);
    if (n > 2)
        pb_bin(b, key, key_len);
    if (n > 3)
        pb_bin(b, sig, sig_len);
    if (n > 4)
        msgpack_pack_nil(&b->pk);
}

static void expect_bad(const uint8_t *env, size_t len, const char *field)
{
    const uint8_t *body = NULL;
    size_t body_len = 0;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error err = {0};
    sdm_wire_code c = sdm_envelope_open(env, len, &body, &body_len, key, &err);
    CU_ASSERT_EQUAL(c, SDM_WIRE_BAD_REQUEST);
    CU_ASSERT_EQUAL(err.code, SDM_WIRE_BAD_REQUEST);
    if (!strstr(err.message, field)) {
        fprintf(stderr, "\n  message \"%s\" does not name %s\n", err.message, field);
        CU_FAIL("the message names the field");
    }
    CU_ASSERT_PTR_NULL(body);
}

static void test_malformed_envelopes(void)
{
    sdm_keypair *kp = test_key("env");
    packbuf body;
    test_body(&body);
    const uint8_t *bb = (const uint8_t *)body.sb.data;
    size_t bl = body.sb.size;
    uint8_t msg[256], sig[SDM_SIG_LEN];
    memcpy(msg, "sediment-signed-v1\n", 19);
    memcpy(msg + 19, bb, bl);
    crypto_sign_detached(sig, NULL, msg, 19 + bl, kp->sk);

    packbuf e;
    /* the hand-made envelope with the right parts opens: the cases below differ only in
     * what they name */
    hand_envelope(&e, 4, SDM_ENVELOPE_TAG, bb, bl, kp->pk, 32, sig, 64);
    const uint8_t *got;
    size_t got_len;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error err;
    CU_ASSERT_EQUAL(sdm_envelope_open((uint8_t *)e.sb.data, e.sb.size, &got, &got_len, key, &err),
                    SDM_WIRE_OK);

    /* trailing bytes */
    uint8_t *longer = malloc(e.sb.size + 1);
    memcpy(longer, e.sb.data, e.sb.size);
    longer[e.sb.size] = 0xc0;
    expect_bad(longer, e.sb.size + 1, "trailing");
    /* truncated */
    expect_bad(longer, e.sb.size - 1, "envelope");
    expect_bad(longer, 0, "envelope");
    free(longer);
    msgpack_sbuffer_destroy(&e.sb);

    hand_envelope(&e, 4, "sediment-signed-v2", bb, bl, kp->pk, 32, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope.tag");
    msgpack_sbuffer_destroy(&e.sb);
    hand_envelope(&e, 3, SDM_ENVELOPE_TAG, bb, bl, kp->pk, 32, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "3 elements");
    msgpack_sbuffer_destroy(&e.sb);
    hand_envelope(&e, 5, SDM_ENVELOPE_TAG, bb, bl, kp->pk, 32, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "5 elements");
    msgpack_sbuffer_destroy(&e.sb);
    hand_envelope(&e, 4, SDM_ENVELOPE_TAG, bb, bl, kp->pk, 31, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope.key");
    msgpack_sbuffer_destroy(&e.sb);
    hand_envelope(&e, 4, SDM_ENVELOPE_TAG, bb, bl, kp->pk, 32, sig, 63);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope.sig");
    msgpack_sbuffer_destroy(&e.sb);

    /* the key as a string, the body as a string */
    pb_init(&e);
    msgpack_pack_array(&e.pk, 4);
    pb_str(&e, SDM_ENVELOPE_TAG);
    pb_bin(&e, bb, bl);
    msgpack_pack_str(&e.pk, 32);
    msgpack_pack_str_body(&e.pk, kp->pk, 32);
    pb_bin(&e, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope.key");
    msgpack_sbuffer_destroy(&e.sb);
    pb_init(&e);
    msgpack_pack_array(&e.pk, 4);
    pb_str(&e, SDM_ENVELOPE_TAG);
    msgpack_pack_str(&e.pk, bl);
    msgpack_pack_str_body(&e.pk, bb, bl);
    pb_bin(&e, kp->pk, 32);
    pb_bin(&e, sig, 64);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope.body");
    msgpack_sbuffer_destroy(&e.sb);

    /* not an array at all */
    pb_init(&e);
    msgpack_pack_map(&e.pk, 0);
    expect_bad((uint8_t *)e.sb.data, e.sb.size, "envelope");
    msgpack_sbuffer_destroy(&e.sb);

    /* a properly signed body that is not a map, and one that is not msgpack */
    uint8_t *env;
    size_t env_len;
    const uint8_t array_body[3] = {0x92, 0x01, 0x02};
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(kp, array_body, 3, &env, &env_len), 0);
    expect_bad(env, env_len, "envelope.body");
    free(env);
    const uint8_t torn_body[3] = {0x82, 0xa1, 0x61};
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(kp, torn_body, 3, &env, &env_len), 0);
    expect_bad(env, env_len, "envelope.body");
    free(env);
    const uint8_t two_maps[2] = {0x80, 0x80};
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(kp, two_maps, 2, &env, &env_len), 0);
    expect_bad(env, env_len, "envelope.body");
    free(env);

    msgpack_sbuffer_destroy(&body.sb);
    sdm_keypair_destroy(&kp);
}

/* ---- leaf data ---------------------------------------------------------------------------- */

static void fill(uint8_t *p, size_t n, uint8_t v)
{
    memset(p, v, n);
}

/* Appends bytes to a hand-assembled expectation. */
typedef struct bytes {
    uint8_t b[2048];
    size_t n;
} bytes;

static void put(bytes *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put1(bytes *w, uint8_t v)
{
    w->b[w->n++] = v;
}

static void put_digests(bytes *w, const sdm_leaf_fields *f)
{
    put1(w, 0xc4);
    put1(w, 32);
    put(w, f->ids_digest, 32);
    put1(w, 0xc4);
    put1(w, 32);
    put(w, f->data_digest, 32);
    put1(w, 0xc4);
    put1(w, 32);
    put(w, f->weights_digest, 32);
}

static void check_leaf(const sdm_leaf_fields *f, const bytes *want)
{
    uint8_t *data;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_encode(f, &data, &len), 0);
    CU_ASSERT_EQUAL(len, want->n);
    CU_ASSERT(len == want->n && memcmp(data, want->b, len) == 0);
    uint8_t hash[H], expect[H];
    CU_ASSERT_EQUAL(sdm_leaf_hash(f, hash), 0);
    uint8_t *prefixed = malloc(want->n + 1);
    prefixed[0] = 0x00;
    memcpy(prefixed + 1, want->b, want->n);
    crypto_hash_sha256(expect, prefixed, want->n + 1);
    CU_ASSERT_EQUAL(memcmp(hash, expect, H), 0);
    free(prefixed);
    free(data);
}

static void test_leaf_short(void)
{
    sdm_leaf_fields f = {"m", "c0", 0.5, "alice", "s1", 3, {0}, {0}, {0}, 0};
    fill(f.ids_digest, H, 0x11);
    fill(f.data_digest, H, 0x22);
    fill(f.weights_digest, H, 0x33);
    bytes w = {.n = 0};
    put1(&w, 0x9a); /* fixarray 10 */
    put1(&w, 0xa1);
    put(&w, "m", 1);
    put1(&w, 0xa2);
    put(&w, "c0", 2);
    put(&w, "\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00", 9); /* float64 0.5 */
    put1(&w, 0xa5);
    put(&w, "alice", 5);
    put1(&w, 0xa2);
    put(&w, "s1", 2);
    put1(&w, 0x03); /* positive fixint */
    put_digests(&w, &f);
    put1(&w, 0xc2); /* false */
    check_leaf(&f, &w);
    /* the same leaf's hash as Python's msgpack and hashlib compute it (docs/formats.md) */
    uint8_t hash[H], want[H];
    CU_ASSERT_EQUAL(sdm_leaf_hash(&f, hash), 0);
    unhex("cbe745ecc488277cfe643de8c06eef58f025ac91c2b21a1db22e885a0ca83352", want);
    CU_ASSERT_EQUAL(memcmp(hash, want, H), 0);

    /* a curvature batch: empty names, zero rows would be fixint 0, true */
    sdm_leaf_fields c = f;
    c.contributor = "";
    c.shard = "";
    c.n = 127;
    c.curvature = 1;
    bytes wc = {.n = 0};
    put1(&wc, 0x9a);
    put1(&wc, 0xa1);
    put(&wc, "m", 1);
    put1(&wc, 0xa2);
    put(&wc, "c0", 2);
    put(&wc, "\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00", 9);
    put1(&wc, 0xa0);
    put1(&wc, 0xa0);
    put1(&wc, 0x7f);
    put_digests(&wc, &c);
    put1(&wc, 0xc3);
    check_leaf(&c, &wc);
}

static void test_leaf_long(void)
{
    char model[41], checkpoint[301], contributor[32], shard[33];
    memset(model, 'M', 40);
    model[40] = '\0';
    memset(checkpoint, 'c', 300);
    checkpoint[300] = '\0';
    memset(contributor, 'a', 31);
    contributor[31] = '\0';
    memset(shard, 's', 32);
    shard[32] = '\0';
    sdm_leaf_fields f = {model, checkpoint, 1e-3, contributor, shard, 70000, {0}, {0}, {0}, 1};
    fill(f.ids_digest, H, 0xaa);
    fill(f.data_digest, H, 0xbb);
    fill(f.weights_digest, H, 0xcc);
    bytes w = {.n = 0};
    put1(&w, 0x9a);
    put(&w, "\xd9\x28", 2); /* str8, 40 */
    put(&w, model, 40);
    put(&w, "\xda\x01\x2c", 3); /* str16, 300 */
    put(&w, checkpoint, 300);
    put(&w, "\xcb\x3f\x50\x62\x4d\xd2\xf1\xa9\xfc", 9); /* float64 0.001 */
    put1(&w, 0xbf);                                     /* fixstr 31 */
    put(&w, contributor, 31);
    put(&w, "\xd9\x20", 2); /* str8, 32 */
    put(&w, shard, 32);
    put(&w, "\xce\x00\x01\x11\x70", 5); /* uint32 70000 */
    put_digests(&w, &f);
    put1(&w, 0xc3);
    check_leaf(&f, &w);

    /* every width of n: the shortest form each time */
    struct {
        uint64_t n;
        const char *enc;
        size_t len;
    } widths[] = {
        {0, "\x00", 1},
        {128, "\xcc\x80", 2},
        {255, "\xcc\xff", 2},
        {256, "\xcd\x01\x00", 3},
        {65535, "\xcd\xff\xff", 3},
        {65536, "\xce\x00\x01\x00\x00", 5},
        {(uint64_t)1 << 32, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9},
    };
    sdm_leaf_fields s = {"m", "c", 2.0, "a", "b", 0, {0}, {0}, {0}, 0};
    for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
        s.n = widths[i].n;
        bytes ws = {.n = 0};
        put1(&ws, 0x9a);
        /* "m", "c", 2.0, "a", "b" */
        put(&ws, "\xa1m\xa1\x63\xcb\x40\x00\x00\x00\x00\x00\x00\x00\xa1\x61\xa1\x62", 17);
        put(&ws, widths[i].enc, widths[i].len);
        put_digests(&ws, &s);
        put1(&ws, 0xc2);
        check_leaf(&s, &ws);
    }
}

/* ---- receipt and proof bodies ------------------------------------------------------------- */

static int key_is(const msgpack_object_kv *kv, const char *key)
{
    size_t n = strlen(key);
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
           memcmp(kv->key.via.str.ptr, key, n) == 0;
}

static int str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

static int bin_is(const msgpack_object *o, const uint8_t *b, size_t n)
{
    return o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == n &&
           memcmp(o->via.bin.ptr, b, n) == 0;
}

/* Checks that a map has exactly these keys in this order. */
static void check_keys(const msgpack_object *map, const char *const *keys, size_t n,
                       const char *what)
{
    CU_ASSERT_EQUAL_FATAL(map->type, MSGPACK_OBJECT_MAP);
    CU_ASSERT_EQUAL_FATAL(map->via.map.size, n);
    for (size_t i = 0; i < n; i++)
        if (!key_is(&map->via.map.ptr[i], keys[i])) {
            fprintf(stderr, "\n  %s: key %zu is not %s\n", what, i, keys[i]);
            CU_FAIL("keys in the documented order");
        }
}

static const msgpack_object *val(const msgpack_object *map, size_t i)
{
    return &map->via.map.ptr[i].val;
}

static void test_receipt_body(void)
{
    sdm_keypair *kp = test_key("env");
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields =
        (sdm_leaf_fields){"model-a", "ckpt-1", 0.25, "alice", "alice/wiki", 12, {0}, {0}, {0}, 0};
    fill(r.leaf_fields.ids_digest, H, 1);
    fill(r.leaf_fields.data_digest, H, 2);
    fill(r.leaf_fields.weights_digest, H, 3);
    memcpy(r.worker, kp->pk, SDM_PK_LEN);
    r.issued_at = 1700000000123456789ull;
    r.batch = 41;
    CU_ASSERT_EQUAL(sdm_leaf_hash(&r.leaf_fields, r.leaf), 0);
    r.store_size = 42;
    fill(r.store_root, H, 9);

    uint8_t *body, *env;
    size_t len, env_len;
    CU_ASSERT_EQUAL_FATAL(sdm_receipt_encode(&r, &body, &len), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&u, (const char *)body, len, &off),
                          MSGPACK_UNPACK_SUCCESS);
    CU_ASSERT_EQUAL(off, len);
    static const char *const keys[] = {
        "v",          "type",        "worker",     "issued_at",   "model",          "checkpoint",
        "lr",         "contributor", "shard",      "n",           "batch",          "leaf",
        "store_size", "store_root",  "ids_digest", "data_digest", "weights_digest", "curvature"};
    const msgpack_object *m = &u.data;
    check_keys(m, keys, 18, "receipt");
    CU_ASSERT_EQUAL(val(m, 0)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    CU_ASSERT_EQUAL(val(m, 0)->via.u64, 1);
    CU_ASSERT(str_is(val(m, 1), "contribution"));
    CU_ASSERT(bin_is(val(m, 2), kp->pk, 32));
    CU_ASSERT_EQUAL(val(m, 3)->via.u64, r.issued_at);
    CU_ASSERT(str_is(val(m, 4), "model-a"));
    CU_ASSERT(str_is(val(m, 5), "ckpt-1"));
    CU_ASSERT_EQUAL(val(m, 6)->type, MSGPACK_OBJECT_FLOAT64);
    CU_ASSERT_EQUAL(val(m, 6)->via.f64, 0.25);
    CU_ASSERT(str_is(val(m, 7), "alice"));
    CU_ASSERT(str_is(val(m, 8), "alice/wiki"));
    CU_ASSERT_EQUAL(val(m, 9)->via.u64, 12);
    CU_ASSERT_EQUAL(val(m, 10)->via.u64, 41);
    CU_ASSERT(bin_is(val(m, 11), r.leaf, H));
    CU_ASSERT_EQUAL(val(m, 12)->via.u64, 42);
    CU_ASSERT(bin_is(val(m, 13), r.store_root, H));
    CU_ASSERT(bin_is(val(m, 14), r.leaf_fields.ids_digest, H));
    CU_ASSERT(bin_is(val(m, 15), r.leaf_fields.data_digest, H));
    CU_ASSERT(bin_is(val(m, 16), r.leaf_fields.weights_digest, H));
    CU_ASSERT_EQUAL(val(m, 17)->type, MSGPACK_OBJECT_BOOLEAN);
    CU_ASSERT_EQUAL(val(m, 17)->via.boolean, false);
    msgpack_unpacked_destroy(&u);

    /* signed, it opens to the same bytes */
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(kp, body, len, &env, &env_len), 0);
    const uint8_t *got;
    size_t got_len;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error err;
    CU_ASSERT_EQUAL(sdm_envelope_open(env, env_len, &got, &got_len, key, &err), SDM_WIRE_OK);
    CU_ASSERT(got_len == len && memcmp(got, body, len) == 0);
    free(env);
    free(body);
    sdm_keypair_destroy(&kp);
}

static void test_proof_body(void)
{
    sdm_keypair *kp = test_key("env");
    sdm_projection proj = {SDM_PROJ_SJLT, 4096, 512, 4, 0x1234567890ull};
    sdm_attr_result res = fixture_result();
    sdm_proof p = fixture_proof(kp->pk, &proj, &res, SDM_METHOD_TRAK);

    uint8_t *body;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&u, (const char *)body, len, &off),
                          MSGPACK_UNPACK_SUCCESS);
    CU_ASSERT_EQUAL(off, len);
    static const char *const keys[] = {
        "v",          "type",       "worker",       "issued_at",  "model",
        "projection", "method",     "lambda",       "aggregate",  "checkpoints",
        "store_size", "store_root", "query_digest", "request_id", "queries"};
    const msgpack_object *m = &u.data;
    check_keys(m, keys, 15, "proof");
    CU_ASSERT_EQUAL(val(m, 0)->via.u64, 1);
    CU_ASSERT(str_is(val(m, 1), "attribution"));
    CU_ASSERT(bin_is(val(m, 2), kp->pk, 32));
    CU_ASSERT_EQUAL(val(m, 3)->via.u64, 1700000000999ull);
    CU_ASSERT(str_is(val(m, 4), "model-a"));
    static const char *const proj_keys[] = {"kind", "dim", "seed", "input_dim", "s"};
    const msgpack_object *pj = val(m, 5);
    check_keys(pj, proj_keys, 5, "projection");
    CU_ASSERT(str_is(val(pj, 0), "sjlt"));
    CU_ASSERT_EQUAL(val(pj, 1)->via.u64, 512);
    CU_ASSERT_EQUAL(val(pj, 2)->via.u64, 0x1234567890ull);
    CU_ASSERT_EQUAL(val(pj, 3)->via.u64, 4096);
    CU_ASSERT_EQUAL(val(pj, 4)->via.u64, 4);
    CU_ASSERT(str_is(val(m, 6), "trak"));
    const msgpack_object *lam = val(m, 7);
    CU_ASSERT_EQUAL_FATAL(lam->type, MSGPACK_OBJECT_ARRAY);
    CU_ASSERT_EQUAL_FATAL(lam->via.array.size, 2);
    CU_ASSERT_EQUAL(lam->via.array.ptr[1].type, MSGPACK_OBJECT_FLOAT64);
    CU_ASSERT_EQUAL(lam->via.array.ptr[1].via.f64, 3.5);
    CU_ASSERT(str_is(val(m, 8), "mean"));
    const msgpack_object *ck = val(m, 9);
    CU_ASSERT_EQUAL_FATAL(ck->via.array.size, 2);
    static const char *const ck_keys[] = {"id", "lr"};
    check_keys(&ck->via.array.ptr[1], ck_keys, 2, "checkpoints[1]");
    CU_ASSERT(str_is(val(&ck->via.array.ptr[1], 0), "ckpt-2"));
    CU_ASSERT_EQUAL(val(&ck->via.array.ptr[1], 1)->via.f64, 0.25);
    CU_ASSERT_EQUAL(val(m, 10)->via.u64, 5);
    CU_ASSERT(val(m, 11)->type == MSGPACK_OBJECT_BIN && val(m, 11)->via.bin.size == H);
    CU_ASSERT(val(m, 12)->type == MSGPACK_OBJECT_BIN && val(m, 12)->via.bin.size == H);
    CU_ASSERT(str_is(val(m, 13), "req-17"));

    const msgpack_object *qs = val(m, 14);
    CU_ASSERT_EQUAL_FATAL(qs->type, MSGPACK_OBJECT_ARRAY);
    CU_ASSERT_EQUAL_FATAL(qs->via.array.size, 2);
    static const char *const q_keys[] = {"id", "shards", "contributors", "top", "bottom"};
    const msgpack_object *q0 = &qs->via.array.ptr[0], *q1 = &qs->via.array.ptr[1];
    check_keys(q0, q_keys, 5, "queries[0]");
    check_keys(q1, q_keys, 5, "queries[1]");
    CU_ASSERT(str_is(val(q0, 0), "q-a"));
    CU_ASSERT_EQUAL(val(q1, 0)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    CU_ASSERT_EQUAL(val(q1, 0)->via.u64, 256);
    /* query 1, shard 2: [s-c, alice, -1.0, 0.0] */
    const msgpack_object *shards = val(q1, 1);
    CU_ASSERT_EQUAL_FATAL(shards->via.array.size, 3);
    const msgpack_object *s2 = &shards->via.array.ptr[2];
    CU_ASSERT_EQUAL_FATAL(s2->via.array.size, 4);
    CU_ASSERT(str_is(&s2->via.array.ptr[0], "s-c"));
    CU_ASSERT(str_is(&s2->via.array.ptr[1], "alice"));
    CU_ASSERT_EQUAL(s2->via.array.ptr[2].via.f64, -1.0);
    CU_ASSERT_EQUAL(s2->via.array.ptr[3].type, MSGPACK_OBJECT_FLOAT64);
    CU_ASSERT_EQUAL(s2->via.array.ptr[3].via.f64, 0.0);
    /* query 0, contributor 1: [bob, -0.25, 0.0] */
    const msgpack_object *c1 = &val(q0, 2)->via.array.ptr[1];
    CU_ASSERT_EQUAL_FATAL(c1->via.array.size, 3);
    CU_ASSERT(str_is(&c1->via.array.ptr[0], "bob"));
    CU_ASSERT_EQUAL(c1->via.array.ptr[1].via.f64, -0.25);
    /* query 1, top 0: [11, s-b, 1.25]; bottom 1: [4, s-a, -0.75] */
    const msgpack_object *t = &val(q1, 3)->via.array.ptr[0];
    CU_ASSERT_EQUAL_FATAL(t->via.array.size, 3);
    CU_ASSERT_EQUAL(t->via.array.ptr[0].via.u64, 11);
    CU_ASSERT(str_is(&t->via.array.ptr[1], "s-b"));
    CU_ASSERT_EQUAL(t->via.array.ptr[2].via.f64, 1.25);
    const msgpack_object *b = &val(q1, 4)->via.array.ptr[1];
    CU_ASSERT_EQUAL(b->via.array.ptr[0].via.u64, 4);
    CU_ASSERT(str_is(&b->via.array.ptr[1], "s-a"));
    CU_ASSERT_EQUAL(b->via.array.ptr[2].via.f64, -0.75);
    msgpack_unpacked_destroy(&u);
    free(body);

    /* dot over a rademacher projection: no lambdas, no s, ids numbered 0..m-1 */
    proj.kind = SDM_PROJ_RADEMACHER;
    p = fixture_proof(kp->pk, &proj, &res, SDM_METHOD_DOT);
    p.query_ids = NULL;
    p.query_id_lens = NULL;
    p.request_id = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_proof_encode(&p, &body, &len), 0);
    msgpack_unpacked_init(&u);
    off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&u, (const char *)body, len, &off),
                          MSGPACK_UNPACK_SUCCESS);
    m = &u.data;
    check_keys(m, keys, 15, "proof");
    check_keys(val(m, 5), proj_keys, 4, "projection");
    CU_ASSERT(str_is(val(val(m, 5), 0), "rademacher"));
    CU_ASSERT(str_is(val(m, 6), "dot"));
    CU_ASSERT_EQUAL(val(m, 7)->type, MSGPACK_OBJECT_ARRAY);
    CU_ASSERT_EQUAL(val(m, 7)->via.array.size, 0);
    CU_ASSERT(str_is(val(m, 13), ""));
    qs = val(m, 14);
    CU_ASSERT_EQUAL(val(&qs->via.array.ptr[0], 0)->via.u64, 0);
    CU_ASSERT_EQUAL(val(&qs->via.array.ptr[1], 0)->via.u64, 1);
    CU_ASSERT_EQUAL(val(&qs->via.array.ptr[1], 0)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    msgpack_unpacked_destroy(&u);

    /* the reply's `result` is the body's `queries`, byte for byte */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sdm_proof_pack_queries(&pk, &p);
    CU_ASSERT(sb.size < len && memcmp(body + len - sb.size, sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb);
    free(body);

    /* a trak proof with no lambdas anywhere cannot be written */
    res.n_lambdas = 0;
    p = fixture_proof(kp->pk, &proj, &res, SDM_METHOD_TRAK);
    CU_ASSERT_EQUAL(sdm_proof_encode(&p, &body, &len), -1);
    CU_ASSERT_PTR_NULL(body);
    sdm_keypair_destroy(&kp);
}

/* ---- --emit: files for the Python cross-check ---------------------------------------------- */

static int write_file(const char *dir, const char *name, const uint8_t *b, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void json_hex(FILE *f, const uint8_t *b, size_t n)
{
    char hex[2 * 64 + 1];
    sdm_hex(b, n, hex);
    fprintf(f, "\"%s\"", hex);
}

/* The batches emitted: names with multi-byte UTF-8, str8 and str16 lengths, every width
 * of n, awkward lrs, and a curvature batch. */
static sdm_leaf_fields emit_leaf(int i, char *long_name, char *longer_name)
{
    static const double lrs[] = {0.1, 1e-3, 3.0, 2.5e-7, 1.0 / 3.0, 65536.0};
    static const uint64_t ns[] = {1, 127, 128, 300, 65535, 70000, (uint64_t)1 << 33};
    sdm_leaf_fields f = {"model-a", "ckpt-1", lrs[i % 6], "alice", "alice/wiki",
                         ns[i % 7], {0},      {0},        {0},     0};
    if (i % 3 == 1) {
        f.model = long_name;
        f.shard = "données-été";
    }
    if (i % 4 == 2)
        f.checkpoint = longer_name;
    if (i % 5 == 4) {
        f.contributor = "";
        f.shard = "";
        f.curvature = 1;
    }
    uint64_t ids[3] = {(uint64_t)i, (uint64_t)i * 1000003u, UINT64_MAX - (uint64_t)i};
    double w[2] = {1.0 / (i + 1), -0.5 * i};
    sdm_digest_ids(ids, f.curvature ? 0 : 3, f.ids_digest);
    uint8_t data[16];
    for (int j = 0; j < 16; j++)
        data[j] = (uint8_t)(i * 16 + j);
    sdm_digest_bytes(data, sizeof(data), f.data_digest);
    sdm_digest_weights(i % 2 ? w : NULL, 2, f.weights_digest);
    return f;
}

static int emit(const char *dir)
{
    if (sdm_sodium_init() != 0)
        return 1;
    char err[256] = "", path[512];
    sdm_keypair *kp = sdm_keypair_load_or_create(dir, "emit", err, sizeof(err));
    if (!kp) {
        fprintf(stderr, "test_sign --emit: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/index.json", dir);
    FILE *js = fopen(path, "w");
    if (!js)
        return 1;
    int rc = 0;
    fprintf(js, "{\n\"public_key\": ");
    json_hex(js, kp->pk, SDM_PK_LEN);
    fprintf(js, ",\n\"key_file\": \"emit.key\",\n");

    /* digests of known inputs */
    uint64_t ids[4] = {0, 1, 0x0102030405060708ull, UINT64_MAX};
    double w[3] = {1.0, -0.5, 1e-300};
    uint8_t d_ids[H], d_w[H], d_none[H];
    sdm_digest_ids(ids, 4, d_ids);
    sdm_digest_weights(w, 3, d_w);
    sdm_digest_weights(NULL, 0, d_none);
    fprintf(js, "\"digests\": {\"ids\": [0, 1, %llu, %llu], \"ids_digest\": ",
            (unsigned long long)ids[2], (unsigned long long)ids[3]);
    json_hex(js, d_ids, H);
    fprintf(js, ", \"weights\": [1.0, -0.5, 1e-300], \"weights_digest\": ");
    json_hex(js, d_w, H);
    fprintf(js, ", \"no_weights_digest\": ");
    json_hex(js, d_none, H);
    fprintf(js, "},\n");

    /* leaves, and the model tree over them */
    enum { N_LEAVES = 12 };
    char long_name[201], longer_name[301];
    memset(long_name, 'L', 200);
    long_name[200] = '\0';
    memset(longer_name, 'x', 300);
    longer_name[300] = '\0';
    sdm_merkle_t *tree = sdm_merkle_new();
    sdm_leaf_fields leaves[N_LEAVES];
    fprintf(js, "\"leaves\": [\n");
    for (int i = 0; i < N_LEAVES && rc == 0; i++) {
        sdm_leaf_fields f = emit_leaf(i, long_name, longer_name);
        leaves[i] = f;
        uint8_t *data, hash[H];
        size_t len;
        char name[32];
        snprintf(name, sizeof(name), "leaf%02d.bin", i);
        if (sdm_leaf_encode(&f, &data, &len) != 0 || write_file(dir, name, data, len) != 0)
            rc = 1;
        else
            free(data);
        if (sdm_leaf_hash(&f, hash) != 0 || sdm_merkle_append(tree, hash) != 0)
            rc = 1;
        fprintf(js,
                "  {\"file\": \"%s\", \"model\": \"%s\", \"checkpoint\": \"%s\", "
                "\"lr\": %.17g, \"contributor\": \"%s\", \"shard\": \"%s\", \"n\": %llu, "
                "\"curvature\": %s, \"ids_digest\": ",
                name, f.model, f.checkpoint, f.lr, f.contributor, f.shard, (unsigned long long)f.n,
                f.curvature ? "true" : "false");
        json_hex(js, f.ids_digest, H);
        fprintf(js, ", \"data_digest\": ");
        json_hex(js, f.data_digest, H);
        fprintf(js, ", \"weights_digest\": ");
        json_hex(js, f.weights_digest, H);
        fprintf(js, ", \"leaf_hash\": ");
        json_hex(js, hash, H);
        fprintf(js, "}%s\n", i + 1 < N_LEAVES ? "," : "");
    }
    fprintf(js, "],\n");

    /* a larger tree of its own for proofs: leaf i is the leaf hash of the bytes "leaf i" */
    enum { N_TREE = 37 };
    sdm_merkle_t *big = sdm_merkle_new();
    fprintf(js, "\"tree\": {\"leaf_data\": \"leaf %%d\", \"roots\": [");
    for (int i = 0; i <= N_TREE; i++) {
        uint8_t root[H];
        if (i > 0) {
            char text[32];
            uint8_t hash[H];
            int n = snprintf(text, sizeof(text), "leaf %d", i - 1);
            sdm_merkle_leaf_hash((const uint8_t *)text, (size_t)n, hash);
            if (sdm_merkle_append(big, hash) != 0)
                rc = 1;
        }
        if (sdm_merkle_root(big, (uint64_t)i, root) != 0)
            rc = 1;
        json_hex(js, root, H);
        fprintf(js, "%s", i < N_TREE ? ", " : "],\n");
    }
    fprintf(js, "\"inclusion\": [");
    int first = 1;
    for (uint64_t size = 1; size <= N_TREE; size += 3)
        for (uint64_t index = 0; index < size; index += 1 + size / 5) {
            uint8_t path[64][H];
            size_t np;
            if (sdm_merkle_inclusion(big, index, size, path, &np) != 0)
                rc = 1;
            fprintf(js, "%s\n  {\"index\": %llu, \"size\": %llu, \"path\": [", first ? "" : ",",
                    (unsigned long long)index, (unsigned long long)size);
            for (size_t j = 0; j < np; j++) {
                json_hex(js, path[j], H);
                fprintf(js, "%s", j + 1 < np ? ", " : "");
            }
            fprintf(js, "]}");
            first = 0;
        }
    fprintf(js, "],\n\"consistency\": [");
    first = 1;
    for (uint64_t to = 1; to <= N_TREE; to += 2)
        for (uint64_t from = 0; from <= to; from += 1 + to / 6) {
            uint8_t path[64][H];
            size_t np;
            if (sdm_merkle_consistency(big, from, to, path, &np) != 0)
                rc = 1;
            fprintf(js, "%s\n  {\"from\": %llu, \"to\": %llu, \"path\": [", first ? "" : ",",
                    (unsigned long long)from, (unsigned long long)to);
            for (size_t j = 0; j < np; j++) {
                json_hex(js, path[j], H);
                fprintf(js, "%s", j + 1 < np ? ", " : "");
            }
            fprintf(js, "]}");
            first = 0;
        }
    fprintf(js, "]},\n");

    /* a receipt for batch 7 of the leaf tree, a proof, and a plain test body */
    fprintf(js, "\"envelopes\": [\n");
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields = leaves[7];
    memcpy(r.worker, kp->pk, SDM_PK_LEN);
    r.issued_at = 1700000000123456789ull;
    r.batch = 7;
    if (sdm_leaf_hash(&r.leaf_fields, r.leaf) != 0 || sdm_merkle_root(tree, 8, r.store_root) != 0)
        rc = 1;
    r.store_size = 8;
    sdm_projection proj = {SDM_PROJ_SJLT, 4096, 512, 4, 0x1234567890ull};
    sdm_attr_result res = fixture_result();
    sdm_proof p = fixture_proof(kp->pk, &proj, &res, SDM_METHOD_TRAK);
    p.store_size = N_LEAVES;
    if (sdm_merkle_root(tree, N_LEAVES, p.store_root) != 0)
        rc = 1;
    packbuf plain;
    test_body(&plain);

    for (int e = 0; e < 3 && rc == 0; e++) {
        uint8_t *body = NULL, *env = NULL;
        size_t len = 0, env_len = 0;
        const char *name = e == 0 ? "receipt.env" : e == 1 ? "proof.env" : "plain.env";
        int ok = e == 0   ? sdm_receipt_encode(&r, &body, &len) == 0
                 : e == 1 ? sdm_proof_encode(&p, &body, &len) == 0
                          : (body = malloc(plain.sb.size)) != NULL;
        if (e == 2 && ok) {
            memcpy(body, plain.sb.data, plain.sb.size);
            len = plain.sb.size;
        }
        if (!ok || sdm_envelope_sign(kp, body, len, &env, &env_len) != 0 ||
            write_file(dir, name, env, env_len) != 0)
            rc = 1;
        fprintf(js, "  {\"file\": \"%s\", \"type\": \"%s\"}%s\n", name,
                e == 0   ? "contribution"
                : e == 1 ? "attribution"
                         : "test",
                e < 2 ? "," : "");
        free(body);
        free(env);
    }
    fprintf(js, "],\n\"receipt\": {\"leaf\": 7, \"store_size\": 8},\n");
    fprintf(js, "\"proof\": {\"store_size\": %d}\n}\n", N_LEAVES);
    msgpack_sbuffer_destroy(&plain.sb);
    if (fclose(js) != 0)
        rc = 1;
    sdm_merkle_destroy(&tree);
    sdm_merkle_destroy(&big);
    sdm_keypair_destroy(&kp);
    if (rc != 0)
        fprintf(stderr, "test_sign --emit: writing to %s failed\n", dir);
    return rc;
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("sign", suite_setup, suite_teardown);
    if (!s)
        return -1;
    CU_add_test(s, "key create, load", test_key_create_and_load);
    CU_add_test(s, "bad key files are refused and left alone", test_bad_key_files);
    CU_add_test(s, "hex", test_hex);
    CU_add_test(s, "worker key lists", test_worker_keys_file);
    CU_add_test(s, "digests", test_digests);
    CU_add_test(s, "envelope round trip and tampering", test_envelope_round_trip);
    CU_add_test(s, "malformed envelopes", test_malformed_envelopes);
    CU_add_test(s, "leaf data, short forms", test_leaf_short);
    CU_add_test(s, "leaf data, long strings and wide n", test_leaf_long);
    CU_add_test(s, "receipt body", test_receipt_body);
    CU_add_test(s, "proof body", test_proof_body);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[2], "--emit") == 0)
        return emit(argv[3]);
    return test_main(argc, argv, register_suites);
}
