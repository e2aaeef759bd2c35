/* sign.c - keys, digests and the signed objects of SPEC §4: envelopes, receipts, proofs.
 *
 * Bodies are packed with msgpack-c, whose packer always writes the shortest form of an
 * integer and of a str/bin/array/map length (str8 included), and doubles as float64: the
 * encoding SPEC §5 asks for. Envelopes arriving from outside are pre-checked by the wire
 * codec and then read by hand, so that nothing is allocated before the bytes are known to
 * be an envelope.
 */
#include "sign.h"
#include "errmsg.h"

#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"

#define TAG_LEN (sizeof(SDM_ENVELOPE_TAG) - 1)
#define KEY_HEX_LEN (2 * SDM_SK_LEN)
#define PUB_HEX_LEN (2 * SDM_PK_LEN)

int sdm_sodium_init(void)
{
    /* sodium_init is itself thread-safe and returns 1 when already done */
    return sodium_init() < 0 ? -1 : 0;
}

/* ---- hex ---------------------------------------------------------------------------------- */

void sdm_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The string must be exactly 2n hex digits; out is written only when it is. */
int sdm_unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++)
        if (hex_value(hex[i]) < 0)
            return -1;
    if (hex[2 * n] != '\0')
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
    return 0;
}

int sdm_worker_keys_load(const char *flag, const char *path, uint8_t (**keys)[SDM_PK_LEN],
                         size_t *n, char *err, size_t err_len)
{
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    char line[512];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = line + strspn(line, " \t");
        s[strcspn(s, " \t#\r\n")] = 0;
        if (!*s)
            continue;
        uint8_t (*p)[SDM_PK_LEN] = realloc(*keys, (*n + 1) * sizeof(*p));
        if (!p) {
            snprintf(err, err_len, "%s: out of memory", flag);
            rc = -1;
            break;
        }
        *keys = p;
        if (strlen(s) != 2 * SDM_PK_LEN || sdm_unhex(s, (*keys)[*n], SDM_PK_LEN) != 0) {
            snprintf(err, err_len, "%s %s:%d: not a worker public key (64 hex digits)", flag,
                     path, lineno);
            rc = -1;
            break;
        }
        (*n)++;
    }
    fclose(f);
    if (rc == 0 && *n == 0) {
        snprintf(err, err_len, "%s %s: no keys", flag, path);
        rc = -1;
    }
    if (rc != 0) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- digests ------------------------------------------------------------------------------ */

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void sdm_digest_ids(const uint64_t *ids, uint64_t n, uint8_t out[SDM_HASH_LEN])
{
    sdm_sha256_ctx h;
    sdm_sha256_init(&h);
    uint8_t buf[8 * 512];
    for (uint64_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < 512 && i < n; k++, i++)
            put_le64(buf + 8 * k, ids[i]);
        sdm_sha256_update(&h, buf, 8 * k);
    }
    sdm_sha256_final(&h, out);
}

void sdm_digest_weights(const double *w, uint64_t n, uint8_t out[SDM_HASH_LEN])
{
    sdm_sha256_ctx h;
    sdm_sha256_init(&h);
    uint8_t buf[8 * 512];
    for (uint64_t i = 0; w && i < n;) {
        size_t k = 0;
        for (; k < 512 && i < n; k++, i++) {
            uint64_t bits;
            memcpy(&bits, &w[i], 8);
            put_le64(buf + 8 * k, bits);
        }
        sdm_sha256_update(&h, buf, 8 * k);
    }
    sdm_sha256_final(&h, out);
}

void sdm_digest_bytes(const uint8_t *b, size_t n, uint8_t out[SDM_HASH_LEN])
{
    sdm_sha256(b, n, out);
}

/* ---- key files ---------------------------------------------------------------------------- */

static sdm_keypair *keypair_alloc(void)
{
    sdm_keypair *kp = calloc(1, sizeof(*kp));
    if (!kp)
        return NULL;
    kp->sk = sodium_malloc(SDM_SK_LEN);
    if (!kp->sk) {
        free(kp);
        return NULL;
    }
    return kp;
}

void sdm_keypair_destroy(sdm_keypair **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_keypair *kp = *self_p;
    if (kp->sk) {
        sodium_mprotect_readwrite(kp->sk);
        sodium_memzero(kp->sk, SDM_SK_LEN);
        sodium_free(kp->sk);
    }
    free(kp);
    *self_p = NULL;
}

/* Reads a small file whole into buf (at most cap bytes; more is an error). */
static int read_small(int fd, char *buf, size_t cap, size_t *len)
{
    if (sdm_read_all(fd, buf, cap, len) != 0)
        return -1;
    if (*len == cap) {
        char extra;
        size_t more;
        if (sdm_read_all(fd, &extra, 1, &more) != 0 || more != 0) {
            errno = EFBIG;
            return -1;
        }
    }
    return 0;
}

/* Accepts exactly `digits` hex digits, optionally followed by one newline; NUL-terminates
 * the digits in place. */
static int strip_line(char *buf, size_t len, size_t digits)
{
    if (len == digits + 1 && buf[digits] == '\n')
        len--;
    if (len != digits)
        return -1;
    buf[digits] = '\0';
    return 0;
}

sdm_keypair *sdm_keypair_load(const char *path, char *err, size_t err_len)
{
    if (sdm_sodium_init() != 0) {
        sdm_errf(err, err_len, "libsodium failed to initialise");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        sdm_errf(err, err_len, "key file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sdm_errf(err, err_len, "key file %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        sdm_errf(err, err_len, "key file %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_mode & 077) {
        sdm_errf(err, err_len,
                "key file %s: mode %04o lets group or others read the secret key; it must be "
                "0600 (chmod 600 %s)",
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return NULL;
    }
    /* the hex text is as secret as the key: it lives in guarded memory too */
    char *text = sodium_malloc(KEY_HEX_LEN + 2);
    sdm_keypair *kp = keypair_alloc();
    if (!text || !kp) {
        sdm_errf(err, err_len, "key file %s: out of memory", path);
        goto fail;
    }
    size_t len = 0;
    if (read_small(fd, text, KEY_HEX_LEN + 1, &len) != 0) {
        sdm_errf(err, err_len, "key file %s: %s", path,
                errno == EFBIG ? "longer than a key" : strerror(errno));
        goto fail;
    }
    if (strip_line(text, len, KEY_HEX_LEN) != 0 || sdm_unhex(text, kp->sk, SDM_SK_LEN) != 0) {
        sdm_errf(err, err_len, "key file %s: expected %d hex digits and a newline", path,
                KEY_HEX_LEN);
        goto fail;
    }
    /* the secret key is seed || public key: a damaged file shows as a public half that
     * the seed does not give */
    uint8_t derived[SDM_PK_LEN];
    uint8_t *scratch = sodium_malloc(SDM_SK_LEN);
    if (!scratch) {
        sdm_errf(err, err_len, "key file %s: out of memory", path);
        goto fail;
    }
    crypto_sign_seed_keypair(derived, scratch, kp->sk);
    sodium_free(scratch);
    if (sodium_memcmp(derived, kp->sk + 32, SDM_PK_LEN) != 0) {
        sdm_errf(err, err_len,
                "key file %s: the public half does not match the secret key "
                "(the file is damaged)",
                path);
        goto fail;
    }
    memcpy(kp->pk, kp->sk + 32, SDM_PK_LEN);
    sodium_mprotect_readonly(kp->sk);
    sodium_free(text);
    close(fd);
    return kp;
fail:
    if (text)
        sodium_free(text);
    sdm_keypair_destroy(&kp);
    close(fd);
    return NULL;
}

/* Writes text to path through a temporary file, fsynced. With exclusive, the final name is
 * claimed with link(), which fails rather than replace a file someone else made first
 * (errno EEXIST); otherwise rename() replaces it. The final name never holds half a file. */
static int write_file(const char *path, const char *text, size_t len, mode_t mode, int exclusive)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* a temporary left by a crash is never trusted: it may be half written */
    if (unlink(tmp) != 0 && errno != ENOENT)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if (sdm_write_all(fd, text, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    int rc = exclusive ? link(tmp, path) : rename(tmp, path);
    int e = errno;
    if (exclusive || rc != 0)
        unlink(tmp);
    errno = e;
    return rc;
}

/* Checks <name>.pub against the key, writing it when absent. */
static int check_pub(const char *pub_path, const char *dir, const uint8_t pk[SDM_PK_LEN], char *err,
                     size_t err_len)
{
    char text[PUB_HEX_LEN + 2];
    int fd = open(pub_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        size_t len = 0;
        uint8_t have[SDM_PK_LEN];
        int ok = read_small(fd, text, PUB_HEX_LEN + 1, &len) == 0 &&
                 strip_line(text, len, PUB_HEX_LEN) == 0 &&
                 sdm_unhex(text, have, SDM_PK_LEN) == 0 && memcmp(have, pk, SDM_PK_LEN) == 0;
        close(fd);
        if (!ok) {
            sdm_errf(err, err_len, "public key file %s does not hold the key file's public key",
                    pub_path);
            return -1;
        }
        return 0;
    }
    if (errno != ENOENT) {
        sdm_errf(err, err_len, "public key file %s: %s", pub_path, strerror(errno));
        return -1;
    }
    sdm_hex(pk, SDM_PK_LEN, text);
    text[PUB_HEX_LEN] = '\n';
    if (write_file(pub_path, text, PUB_HEX_LEN + 1, 0644, 0) != 0 || sdm_fsync_dir(dir) != 0) {
        sdm_errf(err, err_len, "public key file %s: %s", pub_path, strerror(errno));
        return -1;
    }
    return 0;
}

sdm_keypair *sdm_keypair_load_or_create(const char *dir, const char *name, char *err,
                                        size_t err_len)
{
    if (sdm_sodium_init() != 0) {
        sdm_errf(err, err_len, "libsodium failed to initialise");
        return NULL;
    }
    char path[PATH_MAX], pub_path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s.key", dir, name) >= (int)sizeof(path) ||
        snprintf(pub_path, sizeof(pub_path), "%s/%s.pub", dir, name) >= (int)sizeof(pub_path)) {
        sdm_errf(err, err_len, "key file in %s: path too long", dir);
        return NULL;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            sdm_errf(err, err_len, "key file %s: %s", path, strerror(errno));
            return NULL;
        }
        sdm_keypair *kp = keypair_alloc();
        char *text = sodium_malloc(KEY_HEX_LEN + 2);
        if (!kp || !text) {
            sdm_errf(err, err_len, "key file %s: out of memory", path);
            if (text)
                sodium_free(text);
            sdm_keypair_destroy(&kp);
            return NULL;
        }
        crypto_sign_keypair(kp->pk, kp->sk);
        sdm_hex(kp->sk, SDM_SK_LEN, text);
        text[KEY_HEX_LEN] = '\n';
        int rc = write_file(path, text, KEY_HEX_LEN + 1, 0600, 1);
        int e = errno;
        sodium_free(text);
        sdm_keypair_destroy(&kp);
        if (rc != 0 && e != EEXIST) {
            sdm_errf(err, err_len, "key file %s: %s", path, strerror(e));
            return NULL;
        }
        if (sdm_fsync_dir(dir) != 0) {
            sdm_errf(err, err_len, "key file %s: fsync of %s: %s", path, dir, strerror(errno));
            return NULL;
        }
        /* EEXIST: another process made the key first; everyone uses that one. Either way
         * the key is read back from disk, so what is used is what was stored. */
    }
    sdm_keypair *kp = sdm_keypair_load(path, err, err_len);
    if (!kp)
        return NULL;
    if (check_pub(pub_path, dir, kp->pk, err, err_len) != 0) {
        sdm_keypair_destroy(&kp);
        return NULL;
    }
    return kp;
}

/* ---- packing into memory ------------------------------------------------------------------ */

/* An sbuffer that remembers a failed write, so an encoder can pack everything and check
 * once at the end instead of after every call. */
typedef struct out_buf {
    msgpack_sbuffer sb;
    int failed;
} out_buf;

static int out_write(void *data, const char *buf, size_t len)
{
    out_buf *o = data;
    if (o->failed)
        return -1;
    if (msgpack_sbuffer_write(&o->sb, buf, len) != 0) {
        o->failed = 1;
        return -1;
    }
    return 0;
}

static void out_init(out_buf *o, msgpack_packer *pk)
{
    msgpack_sbuffer_init(&o->sb);
    o->failed = 0;
    msgpack_packer_init(pk, o, out_write);
}

/* Hands the bytes to the caller (0), or frees them after a failed write (-1). */
static int out_finish(out_buf *o, uint8_t **data, size_t *len)
{
    if (o->failed) {
        msgpack_sbuffer_destroy(&o->sb);
        *data = NULL;
        *len = 0;
        return -1;
    }
    *len = o->sb.size;
    *data = (uint8_t *)msgpack_sbuffer_release(&o->sb);
    if (!*data) /* an empty buffer releases as NULL; never the case for a whole object */
        return -1;
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    pack_str(pk, key);
}

static void pack_bool(msgpack_packer *pk, int v)
{
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* ---- envelopes ---------------------------------------------------------------------------- */

/* "sediment-signed-v1\n" || body, malloc'd; NULL when out of memory. */
static uint8_t *signed_message(const uint8_t *body, size_t body_len, size_t *len)
{
    if (body_len > SIZE_MAX - TAG_LEN - 1)
        return NULL;
    uint8_t *msg = malloc(TAG_LEN + 1 + body_len + 1);
    if (!msg)
        return NULL;
    memcpy(msg, SDM_ENVELOPE_TAG, TAG_LEN);
    msg[TAG_LEN] = '\n';
    if (body_len > 0)
        memcpy(msg + TAG_LEN + 1, body, body_len);
    *len = TAG_LEN + 1 + body_len;
    return msg;
}

int sdm_envelope_sign(const sdm_keypair *kp, const uint8_t *body, size_t body_len, uint8_t **env,
                      size_t *env_len)
{
    *env = NULL;
    *env_len = 0;
    if (sdm_sodium_init() != 0 || body_len > UINT32_MAX)
        return -1;
    size_t msg_len;
    uint8_t *msg = signed_message(body, body_len, &msg_len);
    if (!msg)
        return -1;
    uint8_t sig[SDM_SIG_LEN];
    crypto_sign_detached(sig, NULL, msg, msg_len, kp->sk);
    free(msg);

    msgpack_packer pk;
    out_buf o;
    out_init(&o, &pk);
    msgpack_pack_array(&pk, 4);
    pack_str(&pk, SDM_ENVELOPE_TAG);
    pack_bin(&pk, body, body_len);
    pack_bin(&pk, kp->pk, SDM_PK_LEN);
    pack_bin(&pk, sig, SDM_SIG_LEN);
    return out_finish(&o, env, env_len);
}

/* A reader over bytes that sdm_wire_precheck has already walked; it still checks every
 * length it reads, so it never depends on that for safety. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static int rd_uint(reader *r, int width, uint32_t *out)
{
    if (r->left < (size_t)width)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < width; i++)
        v = v << 8 | r->p[i];
    r->p += width;
    r->left -= (size_t)width;
    *out = v;
    return 0;
}

static int rd_array(reader *r, uint32_t *n)
{
    if (r->left < 1)
        return -1;
    uint8_t b = *r->p;
    r->p++;
    r->left--;
    if ((b & 0xf0) == 0x90) {
        *n = b & 0x0f;
        return 0;
    }
    if (b == 0xdc)
        return rd_uint(r, 2, n);
    if (b == 0xdd)
        return rd_uint(r, 4, n);
    return -1;
}

/* A str (want_bin 0) or bin (want_bin 1) of any width; the bytes stay where they are. */
static int rd_bytes(reader *r, int want_bin, const uint8_t **bytes, uint32_t *len)
{
    if (r->left < 1)
        return -1;
    uint8_t b = *r->p;
    r->p++;
    r->left--;
    int rc;
    if (!want_bin && (b & 0xe0) == 0xa0) {
        *len = b & 0x1f;
        rc = 0;
    } else if (b == (want_bin ? 0xc4 : 0xd9)) {
        rc = rd_uint(r, 1, len);
    } else if (b == (want_bin ? 0xc5 : 0xda)) {
        rc = rd_uint(r, 2, len);
    } else if (b == (want_bin ? 0xc6 : 0xdb)) {
        rc = rd_uint(r, 4, len);
    } else {
        return -1;
    }
    if (rc != 0 || r->left < *len)
        return -1;
    *bytes = r->p;
    r->p += *len;
    r->left -= *len;
    return 0;
}

sdm_wire_code sdm_envelope_open(const uint8_t *env, size_t env_len, const uint8_t **body,
                                size_t *body_len, uint8_t key[SDM_PK_LEN], sdm_wire_error *err)
{
    if (sdm_sodium_init() != 0)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "libsodium failed to initialise");
    sdm_wire_limits lim = {0, 0};
    sdm_wire_error inner;
    if (sdm_wire_precheck(env, env_len, &lim, &inner) != SDM_WIRE_OK)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope: %s", inner.message);

    reader r = {env, env_len};
    uint32_t n;
    if (rd_array(&r, &n) != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope: not a msgpack array");
    if (n != 4)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST,
                             "envelope: %u elements, expected 4 "
                             "[tag, body, key, sig]",
                             n);
    const uint8_t *tag, *b, *k, *s;
    uint32_t tag_len, b_len, k_len, s_len;
    if (rd_bytes(&r, 0, &tag, &tag_len) != 0 || tag_len != TAG_LEN ||
        memcmp(tag, SDM_ENVELOPE_TAG, TAG_LEN) != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST,
                             "envelope.tag: expected the string \"" SDM_ENVELOPE_TAG "\"");
    if (rd_bytes(&r, 1, &b, &b_len) != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.body: expected bin");
    if (rd_bytes(&r, 1, &k, &k_len) != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.key: expected bin");
    if (k_len != SDM_PK_LEN)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.key: %u bytes, expected %d",
                             k_len, SDM_PK_LEN);
    if (rd_bytes(&r, 1, &s, &s_len) != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.sig: expected bin");
    if (s_len != SDM_SIG_LEN)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.sig: %u bytes, expected %d",
                             s_len, SDM_SIG_LEN);
    if (r.left != 0)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope: %zu trailing bytes", r.left);

    /* the body is someone else's msgpack too: bounded before anyone unpacks it */
    if (sdm_wire_precheck(b, b_len, &lim, &inner) != SDM_WIRE_OK)
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.body: %s", inner.message);
    if (b_len == 0 || !((b[0] & 0xf0) == 0x80 || b[0] == 0xde || b[0] == 0xdf))
        return sdm_wire_fail(err, SDM_WIRE_BAD_REQUEST, "envelope.body: not a msgpack map");

    /* well-formed: body and key are given out from here on, checked or not (see sign.h) */
    *body = b;
    *body_len = b_len;
    memcpy(key, k, SDM_PK_LEN);
    size_t msg_len;
    uint8_t *msg = signed_message(b, b_len, &msg_len);
    if (!msg)
        return sdm_wire_fail(err, SDM_WIRE_INTERNAL, "envelope: out of memory");
    int bad = crypto_sign_verify_detached(s, msg, msg_len, k);
    free(msg);
    if (bad)
        return sdm_wire_fail(err, SDM_WIRE_UNAUTHORIZED,
                             "envelope.sig: the signature does not verify with envelope.key");
    return SDM_WIRE_OK;
}

/* ---- leaves and receipts ------------------------------------------------------------------ */

static void pack_leaf(msgpack_packer *pk, const sdm_leaf_fields *f)
{
    msgpack_pack_array(pk, 10);
    pack_str(pk, f->model);
    pack_str(pk, f->checkpoint);
    msgpack_pack_double(pk, f->lr);
    pack_str(pk, f->contributor);
    pack_str(pk, f->shard);
    msgpack_pack_uint64(pk, f->n);
    pack_bin(pk, f->ids_digest, SDM_HASH_LEN);
    pack_bin(pk, f->data_digest, SDM_HASH_LEN);
    pack_bin(pk, f->weights_digest, SDM_HASH_LEN);
    pack_bool(pk, f->curvature);
}

int sdm_leaf_encode(const sdm_leaf_fields *f, uint8_t **data, size_t *len)
{
    msgpack_packer pk;
    out_buf o;
    out_init(&o, &pk);
    pack_leaf(&pk, f);
    return out_finish(&o, data, len);
}

int sdm_leaf_hash(const sdm_leaf_fields *f, uint8_t out[SDM_HASH_LEN])
{
    uint8_t *data;
    size_t len;
    if (sdm_leaf_encode(f, &data, &len) != 0)
        return -1;
    sdm_merkle_leaf_hash(data, len, out);
    free(data);
    return 0;
}

int sdm_receipt_encode(const sdm_receipt *r, uint8_t **body, size_t *len)
{
    const sdm_leaf_fields *f = &r->leaf_fields;
    msgpack_packer pk;
    out_buf o;
    out_init(&o, &pk);
    msgpack_pack_map(&pk, 18);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "type");
    pack_str(&pk, "contribution");
    pack_key(&pk, "worker");
    pack_bin(&pk, r->worker, SDM_PK_LEN);
    pack_key(&pk, "issued_at");
    msgpack_pack_uint64(&pk, r->issued_at);
    pack_key(&pk, "model");
    pack_str(&pk, f->model);
    pack_key(&pk, "checkpoint");
    pack_str(&pk, f->checkpoint);
    pack_key(&pk, "lr");
    msgpack_pack_double(&pk, f->lr);
    pack_key(&pk, "contributor");
    pack_str(&pk, f->contributor);
    pack_key(&pk, "shard");
    pack_str(&pk, f->shard);
    pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, f->n);
    pack_key(&pk, "batch");
    msgpack_pack_uint64(&pk, r->batch);
    pack_key(&pk, "leaf");
    pack_bin(&pk, r->leaf, SDM_HASH_LEN);
    pack_key(&pk, "store_size");
    msgpack_pack_uint64(&pk, r->store_size);
    pack_key(&pk, "store_root");
    pack_bin(&pk, r->store_root, SDM_HASH_LEN);
    pack_key(&pk, "ids_digest");
    pack_bin(&pk, f->ids_digest, SDM_HASH_LEN);
    pack_key(&pk, "data_digest");
    pack_bin(&pk, f->data_digest, SDM_HASH_LEN);
    pack_key(&pk, "weights_digest");
    pack_bin(&pk, f->weights_digest, SDM_HASH_LEN);
    pack_key(&pk, "curvature");
    pack_bool(&pk, f->curvature);
    return out_finish(&o, body, len);
}

/* ---- proofs ------------------------------------------------------------------------------- */

void sdm_proof_pack_queries(msgpack_packer *pk, const sdm_proof *p)
{
    const sdm_attr_result *res = p->result;
    uint64_t m = res ? res->m : 0;
    msgpack_pack_array(pk, (size_t)m);
    for (uint64_t q = 0; q < m; q++) {
        msgpack_pack_map(pk, 5);
        pack_key(pk, "id");
        if (p->query_ids)
            sdm_wire_pack_raw(pk, p->query_ids[q], p->query_id_lens[q]);
        else
            msgpack_pack_uint64(pk, q);

        size_t ns = res->n_shards;
        pack_key(pk, "shards");
        msgpack_pack_array(pk, ns);
        for (size_t s = 0; s < ns; s++) {
            msgpack_pack_array(pk, 4);
            pack_str(pk, res->shard_names[s]);
            pack_str(pk, res->shard_contributor[s]);
            msgpack_pack_double(pk, res->shard_score[q * ns + s]);
            msgpack_pack_double(pk, res->shard_share[q * ns + s]);
        }

        size_t nc = res->n_contributors;
        pack_key(pk, "contributors");
        msgpack_pack_array(pk, nc);
        for (size_t c = 0; c < nc; c++) {
            msgpack_pack_array(pk, 3);
            pack_str(pk, res->contributor_names[c]);
            msgpack_pack_double(pk, res->contributor_score[q * nc + c]);
            msgpack_pack_double(pk, res->contributor_share[q * nc + c]);
        }

        for (int side = 0; side < 2; side++) {
            const sdm_hit *hits = (side ? res->bottom : res->top) + q * res->topk;
            pack_key(pk, side ? "bottom" : "top");
            msgpack_pack_array(pk, res->topk);
            for (uint32_t t = 0; t < res->topk; t++) {
                msgpack_pack_array(pk, 3);
                msgpack_pack_uint64(pk, hits[t].example_id);
                pack_str(pk, res->shard_names[hits[t].shard]);
                msgpack_pack_double(pk, hits[t].score);
            }
        }
    }
}

int sdm_proof_encode(const sdm_proof *p, uint8_t **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    /* trak proofs state the lambda of every checkpoint; take them from the result when the
     * caller did not pass them separately. Without either the proof cannot be written. */
    const double *lambdas = NULL;
    size_t n_lambdas = 0;
    if (p->method == SDM_METHOD_TRAK) {
        lambdas = p->lambdas;
        if (!lambdas && p->result && p->result->n_lambdas == p->n_checkpoints)
            lambdas = p->result->lambdas;
        if (!lambdas && p->n_checkpoints > 0)
            return -1;
        n_lambdas = p->n_checkpoints;
    }
    const sdm_projection *proj = p->projection;

    msgpack_packer pk;
    out_buf o;
    out_init(&o, &pk);
    msgpack_pack_map(&pk, 15);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "type");
    pack_str(&pk, "attribution");
    pack_key(&pk, "worker");
    pack_bin(&pk, p->worker, SDM_PK_LEN);
    pack_key(&pk, "issued_at");
    msgpack_pack_uint64(&pk, p->issued_at);
    pack_key(&pk, "model");
    pack_str(&pk, p->model);

    pack_key(&pk, "projection");
    int sjlt = proj->kind == SDM_PROJ_SJLT;
    msgpack_pack_map(&pk, sjlt ? 5 : 4);
    pack_key(&pk, "kind");
    pack_str(&pk, sdm_proj_kind_name(proj->kind));
    pack_key(&pk, "dim");
    msgpack_pack_uint64(&pk, proj->dim);
    pack_key(&pk, "seed");
    msgpack_pack_uint64(&pk, proj->seed);
    pack_key(&pk, "input_dim");
    msgpack_pack_uint64(&pk, proj->input_dim);
    if (sjlt) {
        pack_key(&pk, "s");
        msgpack_pack_uint64(&pk, proj->s ? proj->s : 1); /* 0 means the default, 1 */
    }

    pack_key(&pk, "method");
    pack_str(&pk, sdm_method_name(p->method));
    pack_key(&pk, "lambda");
    msgpack_pack_array(&pk, n_lambdas);
    for (size_t c = 0; c < n_lambdas; c++)
        msgpack_pack_double(&pk, lambdas[c]);
    pack_key(&pk, "aggregate");
    pack_str(&pk, sdm_aggregate_name(p->aggregate));

    pack_key(&pk, "checkpoints");
    msgpack_pack_array(&pk, p->n_checkpoints);
    for (size_t c = 0; c < p->n_checkpoints; c++) {
        msgpack_pack_map(&pk, 2);
        pack_key(&pk, "id");
        pack_str(&pk, p->checkpoints[c]);
        pack_key(&pk, "lr");
        msgpack_pack_double(&pk, p->lrs[c]);
    }

    pack_key(&pk, "store_size");
    msgpack_pack_uint64(&pk, p->store_size);
    pack_key(&pk, "store_root");
    pack_bin(&pk, p->store_root, SDM_HASH_LEN);
    pack_key(&pk, "query_digest");
    pack_bin(&pk, p->query_digest, SDM_HASH_LEN);
    pack_key(&pk, "request_id");
    pack_str(&pk, p->request_id);
    pack_key(&pk, "queries");
    sdm_proof_pack_queries(&pk, p);
    return out_finish(&o, body, len);
}
