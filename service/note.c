/* note.c - C2SP tlog-checkpoints and Ed25519 signed-notes: formatting, signing, strict parsing. */
#include "note.h"
#include "errmsg.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EM_DASH_SP "\xe2\x80\x94 " /* U+2014 and a space: starts every signature line */
#define EM_DASH_SP_LEN 4
#define SIG_BLOB_LEN (SDM_NOTE_KEYID_LEN + SDM_SIG_LEN)
/* Go's note package refuses more signatures than this; so do we, to bound the work. */
#define MAX_SIGNATURES 100

const char *sdm_note_status_str(sdm_note_status s)
{
    switch (s) {
    case SDM_NOTE_OK:
        return "ok";
    case SDM_NOTE_MALFORMED:
        return "malformed";
    case SDM_NOTE_UNVERIFIED:
        return "unverified";
    case SDM_NOTE_NOMEM:
        return "out of memory";
    }
    return "unknown";
}

/* ---- base64 (RFC 4648 standard alphabet, padded) ----------------------------------------- */

/* Whether b64[0..len) holds only the alphabet and '='. libsodium 1.0.18 decodes every byte
 * above 0x7f as some digit (found by tests/fuzz/fuzz_reply.c), so it cannot be left to it. */
static int b64_alphabet(const char *b64, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '='))
            return 0;
    }
    return 1;
}

/* Decodes exactly n bytes of b64[0..len) (no whitespace, canonical padding): 0 or -1. */
static int b64_decode_exact(const char *b64, size_t len, uint8_t *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;
    if (!b64_alphabet(b64, len))
        return -1;
    /* libsodium rejects missing padding and non-zero trailing bits; we also insist that it
     * consumed everything and produced exactly n bytes */
    if (sodium_base642bin(out, n, b64, len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) !=
        0)
        return -1;
    return (end == b64 + len && got == n) ? 0 : -1;
}

/* Decodes b64[0..len) into a buffer of cap bytes; *n receives the decoded length. */
static int b64_decode(const char *b64, size_t len, uint8_t *out, size_t cap, size_t *n)
{
    const char *end = NULL;
    if (!b64_alphabet(b64, len) ||
        sodium_base642bin(out, cap, b64, len, NULL, n, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return end == b64 + len ? 0 : -1;
}

/* ---- names and key ids ------------------------------------------------------------------- */

int sdm_note_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > SDM_NOTE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f || c == '+')
            return 0;
    }
    return 1;
}

static void keyid_of(const char *name, size_t name_len, const uint8_t pk[SDM_PK_LEN],
                     uint8_t keyid[SDM_NOTE_KEYID_LEN])
{
    static const uint8_t sep[2] = {'\n', SDM_NOTE_ALG_ED25519};
    crypto_hash_sha256_state st;
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, name_len);
    crypto_hash_sha256_update(&st, sep, sizeof(sep));
    crypto_hash_sha256_update(&st, pk, SDM_PK_LEN);
    crypto_hash_sha256_final(&st, h);
    memcpy(keyid, h, SDM_NOTE_KEYID_LEN);
}

void sdm_note_keyid(const char *name, const uint8_t pk[SDM_PK_LEN],
                    uint8_t keyid[SDM_NOTE_KEYID_LEN])
{
    keyid_of(name, strlen(name), pk, keyid);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

sdm_note_status sdm_checkpoint_format(const char *origin, uint64_t size,
                                      const uint8_t root[SDM_HASH_LEN], char **text)
{
    *text = NULL;
    if (!origin || origin[0] == '\0' || strchr(origin, '\n'))
        return SDM_NOTE_MALFORMED;
    char b64[sodium_base64_ENCODED_LEN(SDM_HASH_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof(b64), root, SDM_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
    size_t cap = strlen(origin) + 1 + 20 + 1 + sizeof(b64) + 1;
    char *t = malloc(cap);
    if (!t)
        return SDM_NOTE_NOMEM;
    snprintf(t, cap, "%s\n%" PRIu64 "\n%s\n", origin, size, b64);
    *text = t;
    return SDM_NOTE_OK;
}

/* The next line of text[*pos..len) without its newline; -1 when no newline ends it. */
static int next_line(const char *text, size_t len, size_t *pos, const char **line,
                     size_t *line_len)
{
    const char *start = text + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    if (!nl)
        return -1;
    *line = start;
    *line_len = (size_t)(nl - start);
    *pos += *line_len + 1;
    return 0;
}

sdm_note_status sdm_checkpoint_parse(const char *text, size_t len, char **origin,
                                     uint64_t *size, uint8_t root[SDM_HASH_LEN], char *err,
                                     size_t err_len)
{
    *origin = NULL;
    if (memchr(text, '\0', len)) {
        sdm_errf(err, err_len, "checkpoint: contains a NUL byte");
        return SDM_NOTE_MALFORMED;
    }
    size_t pos = 0;
    const char *line;
    size_t n;

    if (next_line(text, len, &pos, &line, &n) != 0 || n == 0) {
        sdm_errf(err, err_len, "checkpoint origin: missing or empty line");
        return SDM_NOTE_MALFORMED;
    }
    const char *origin_line = line;
    size_t origin_len = n;

    if (next_line(text, len, &pos, &line, &n) != 0 || n == 0) {
        sdm_errf(err, err_len, "checkpoint size: missing line");
        return SDM_NOTE_MALFORMED;
    }
    if (n > 1 && line[0] == '0') {
        sdm_errf(err, err_len, "checkpoint size: leading zero");
        return SDM_NOTE_MALFORMED;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (line[i] < '0' || line[i] > '9') {
            sdm_errf(err, err_len, "checkpoint size: not a decimal number");
            return SDM_NOTE_MALFORMED;
        }
        unsigned d = (unsigned)(line[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            sdm_errf(err, err_len, "checkpoint size: larger than 2^64-1");
            return SDM_NOTE_MALFORMED;
        }
        v = v * 10 + d;
    }

    uint8_t r[SDM_HASH_LEN];
    if (next_line(text, len, &pos, &line, &n) != 0 || b64_decode_exact(line, n, r, sizeof(r)) != 0) {
        sdm_errf(err, err_len, "checkpoint root hash: expected the base64 of 32 bytes");
        return SDM_NOTE_MALFORMED;
    }

    /* extension lines: opaque to us, but each must be a non-empty, terminated line */
    while (pos < len) {
        if (next_line(text, len, &pos, &line, &n) != 0 || n == 0) {
            sdm_errf(err, err_len, "checkpoint extension line: empty or missing newline");
            return SDM_NOTE_MALFORMED;
        }
    }

    char *o = malloc(origin_len + 1);
    if (!o)
        return SDM_NOTE_NOMEM;
    memcpy(o, origin_line, origin_len);
    o[origin_len] = '\0';
    *origin = o;
    *size = v;
    memcpy(root, r, SDM_HASH_LEN);
    return SDM_NOTE_OK;
}

/* ---- signing and verifier keys ----------------------------------------------------------- */

sdm_note_status sdm_note_sign(const sdm_keypair *kp, const char *name, const char *text,
                              size_t text_len, char **note, size_t *note_len, char *err,
                              size_t err_len)
{
    *note = NULL;
    if (!sdm_note_name_valid(name)) {
        sdm_errf(err, err_len, "note key name: empty, too long, or holds a space or '+'");
        return SDM_NOTE_MALFORMED;
    }
    if (text_len == 0 || text[text_len - 1] != '\n' || memchr(text, '\0', text_len)) {
        sdm_errf(err, err_len, "note text: must be non-empty, end with a newline, hold no NUL");
        return SDM_NOTE_MALFORMED;
    }
    if (sdm_sodium_init() != 0) {
        sdm_errf(err, err_len, "note: libsodium failed to initialise");
        return SDM_NOTE_NOMEM;
    }
    uint8_t blob[SIG_BLOB_LEN];
    sdm_note_keyid(name, kp->pk, blob);
    crypto_sign_detached(blob + SDM_NOTE_KEYID_LEN, NULL, (const uint8_t *)text, text_len,
                         kp->sk);

    char b64[sodium_base64_ENCODED_LEN(SIG_BLOB_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof(b64), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
    size_t name_len = strlen(name), b64_len = strlen(b64);
    size_t total = text_len + 1 + EM_DASH_SP_LEN + name_len + 1 + b64_len + 1;
    char *out = malloc(total + 1);
    if (!out) {
        sdm_errf(err, err_len, "note: out of memory");
        return SDM_NOTE_NOMEM;
    }
    char *p = out;
    memcpy(p, text, text_len), p += text_len;
    *p++ = '\n';
    memcpy(p, EM_DASH_SP, EM_DASH_SP_LEN), p += EM_DASH_SP_LEN;
    memcpy(p, name, name_len), p += name_len;
    *p++ = ' ';
    memcpy(p, b64, b64_len), p += b64_len;
    *p++ = '\n';
    *p = '\0';
    *note = out;
    if (note_len)
        *note_len = total;
    return SDM_NOTE_OK;
}

sdm_note_status sdm_note_verifier_key(const char *name, const uint8_t pk[SDM_PK_LEN],
                                      char **vkey)
{
    *vkey = NULL;
    if (!sdm_note_name_valid(name))
        return SDM_NOTE_MALFORMED;
    uint8_t keyid[SDM_NOTE_KEYID_LEN];
    sdm_note_keyid(name, pk, keyid);
    uint8_t alg_pk[1 + SDM_PK_LEN] = {SDM_NOTE_ALG_ED25519};
    memcpy(alg_pk + 1, pk, SDM_PK_LEN);
    char b64[sodium_base64_ENCODED_LEN(1 + SDM_PK_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof(b64), alg_pk, sizeof(alg_pk), sodium_base64_VARIANT_ORIGINAL);
    char hex[2 * SDM_NOTE_KEYID_LEN + 1];
    sdm_hex(keyid, SDM_NOTE_KEYID_LEN, hex);
    size_t cap = strlen(name) + 1 + sizeof(hex) + 1 + sizeof(b64);
    char *out = malloc(cap);
    if (!out)
        return SDM_NOTE_NOMEM;
    snprintf(out, cap, "%s+%s+%s", name, hex, b64);
    *vkey = out;
    return SDM_NOTE_OK;
}

sdm_note_status sdm_note_verifier_parse(const char *vkey, sdm_note_verifier *v, char *err,
                                        size_t err_len)
{
    const char *plus1 = strchr(vkey, '+');
    const char *plus2 = plus1 ? strchr(plus1 + 1, '+') : NULL;
    if (!plus2) {
        sdm_errf(err, err_len, "verifier key: expected <name>+<keyid>+<key>");
        return SDM_NOTE_MALFORMED;
    }
    size_t name_len = (size_t)(plus1 - vkey);
    if (name_len == 0 || name_len > SDM_NOTE_NAME_MAX) {
        sdm_errf(err, err_len, "verifier key name: empty or longer than %d bytes",
                SDM_NOTE_NAME_MAX);
        return SDM_NOTE_MALFORMED;
    }
    sdm_note_verifier out;
    memcpy(out.name, vkey, name_len);
    out.name[name_len] = '\0';
    if (!sdm_note_name_valid(out.name)) {
        sdm_errf(err, err_len, "verifier key name: holds a space or control character");
        return SDM_NOTE_MALFORMED;
    }
    char hex[2 * SDM_NOTE_KEYID_LEN + 1];
    if (plus2 - plus1 - 1 != 2 * SDM_NOTE_KEYID_LEN) {
        sdm_errf(err, err_len, "verifier key id: expected 8 hex digits");
        return SDM_NOTE_MALFORMED;
    }
    memcpy(hex, plus1 + 1, 2 * SDM_NOTE_KEYID_LEN);
    hex[2 * SDM_NOTE_KEYID_LEN] = '\0';
    if (sdm_unhex(hex, out.keyid, SDM_NOTE_KEYID_LEN) != 0) {
        sdm_errf(err, err_len, "verifier key id: expected 8 hex digits");
        return SDM_NOTE_MALFORMED;
    }
    uint8_t alg_pk[1 + SDM_PK_LEN];
    if (b64_decode_exact(plus2 + 1, strlen(plus2 + 1), alg_pk, sizeof(alg_pk)) != 0) {
        sdm_errf(err, err_len, "verifier key: expected the base64 of 33 bytes (alg, key)");
        return SDM_NOTE_MALFORMED;
    }
    if (alg_pk[0] != SDM_NOTE_ALG_ED25519) {
        sdm_errf(err, err_len, "verifier key algorithm: %u is not Ed25519 (1)", alg_pk[0]);
        return SDM_NOTE_MALFORMED;
    }
    memcpy(out.pk, alg_pk + 1, SDM_PK_LEN);
    uint8_t want[SDM_NOTE_KEYID_LEN];
    sdm_note_keyid(out.name, out.pk, want);
    if (memcmp(want, out.keyid, SDM_NOTE_KEYID_LEN) != 0) {
        sdm_errf(err, err_len, "verifier key id: does not match the name and key");
        return SDM_NOTE_MALFORMED;
    }
    *v = out;
    return SDM_NOTE_OK;
}

/* ---- opening signed notes ---------------------------------------------------------------- */

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

sdm_note_status sdm_note_verify(const char *note, size_t len, const sdm_note_verifier *keys,
                                size_t n_keys, size_t *text_len, char *err, size_t err_len)
{
    if (sdm_sodium_init() != 0) {
        sdm_errf(err, err_len, "note: libsodium failed to initialise");
        return SDM_NOTE_NOMEM;
    }
    if (len == 0 || note[len - 1] != '\n') {
        sdm_errf(err, err_len, "note: does not end with a newline");
        return SDM_NOTE_MALFORMED;
    }
    if (memchr(note, '\0', len) || !utf8_valid((const unsigned char *)note, len)) {
        sdm_errf(err, err_len, "note: not valid UTF-8 text");
        return SDM_NOTE_MALFORMED;
    }
    /* the text ends at the last blank line: signature lines are never empty */
    size_t split = 0;
    int found = 0;
    for (size_t i = len - 1; i > 0; i--) {
        if (note[i - 1] == '\n' && note[i] == '\n') {
            split = i; /* note[0..split) is the text, ending in its newline */
            found = 1;
            break;
        }
    }
    if (!found) {
        sdm_errf(err, err_len, "note: no blank line before the signatures");
        return SDM_NOTE_MALFORMED;
    }
    if (split + 1 >= len) {
        sdm_errf(err, err_len, "note signatures: none");
        return SDM_NOTE_MALFORMED;
    }

    size_t pos = split + 1;
    int n_sigs = 0, verified = 0;
    size_t n_seen = 0;
    struct {
        const char *name;
        size_t name_len;
        uint8_t keyid[SDM_NOTE_KEYID_LEN];
    } seen[MAX_SIGNATURES];

    while (pos < len) {
        const char *line;
        size_t n;
        if (next_line(note, len, &pos, &line, &n) != 0)
            break; /* cannot happen: the note ends with a newline */
        n_sigs++;
        if (n_sigs > MAX_SIGNATURES) {
            sdm_errf(err, err_len, "note signatures: more than %d", MAX_SIGNATURES);
            return SDM_NOTE_MALFORMED;
        }
        if (n < EM_DASH_SP_LEN || memcmp(line, EM_DASH_SP, EM_DASH_SP_LEN) != 0) {
            sdm_errf(err, err_len, "note signature line %d: does not start with \"— \"", n_sigs);
            return SDM_NOTE_MALFORMED;
        }
        const char *name = line + EM_DASH_SP_LEN;
        const char *sp = memchr(name, ' ', n - EM_DASH_SP_LEN);
        if (!sp) {
            sdm_errf(err, err_len, "note signature line %d: expected \"— <name> <signature>\"",
                    n_sigs);
            return SDM_NOTE_MALFORMED;
        }
        size_t name_len = (size_t)(sp - name);
        const char *b64 = sp + 1;
        size_t b64_len = (size_t)(line + n - b64);
        char name_buf[SDM_NOTE_NAME_MAX + 1];
        if (name_len == 0 || name_len > SDM_NOTE_NAME_MAX) {
            sdm_errf(err, err_len, "note signature line %d name: empty or too long", n_sigs);
            return SDM_NOTE_MALFORMED;
        }
        memcpy(name_buf, name, name_len);
        name_buf[name_len] = '\0';
        if (!sdm_note_name_valid(name_buf)) {
            sdm_errf(err, err_len, "note signature line %d name: holds a space or '+'", n_sigs);
            return SDM_NOTE_MALFORMED;
        }
        /* other algorithms may carry longer signatures; the bound only caps the work */
        uint8_t blob[512];
        size_t blob_len = 0;
        if (b64_len == 0 || b64_len > 4 * (sizeof(blob) / 3) ||
            b64_decode(b64, b64_len, blob, sizeof(blob), &blob_len) != 0 ||
            blob_len <= SDM_NOTE_KEYID_LEN) {
            sdm_errf(err, err_len, "note signature line %d signature: bad base64 or too short",
                    n_sigs);
            return SDM_NOTE_MALFORMED;
        }
        for (size_t s = 0; s < n_seen; s++) {
            if (seen[s].name_len == name_len && memcmp(seen[s].name, name, name_len) == 0 &&
                memcmp(seen[s].keyid, blob, SDM_NOTE_KEYID_LEN) == 0) {
                sdm_errf(err, err_len, "note signature line %d: a second signature by %s",
                        n_sigs, name_buf);
                return SDM_NOTE_MALFORMED;
            }
        }
        seen[n_seen].name = name;
        seen[n_seen].name_len = name_len;
        memcpy(seen[n_seen].keyid, blob, SDM_NOTE_KEYID_LEN);
        n_seen++;

        for (size_t k = 0; k < n_keys; k++) {
            if (strcmp(keys[k].name, name_buf) != 0 ||
                memcmp(keys[k].keyid, blob, SDM_NOTE_KEYID_LEN) != 0)
                continue;
            if (blob_len != SIG_BLOB_LEN ||
                crypto_sign_verify_detached(blob + SDM_NOTE_KEYID_LEN, (const uint8_t *)note,
                                            split, keys[k].pk) != 0) {
                sdm_errf(err, err_len, "note signature by %s: does not verify", name_buf);
                return SDM_NOTE_UNVERIFIED;
            }
            verified = 1;
        }
    }
    if (!verified) {
        sdm_errf(err, err_len, "note: no signature by a known key");
        return SDM_NOTE_UNVERIFIED;
    }
    if (text_len)
        *text_len = split;
    return SDM_NOTE_OK;
}
