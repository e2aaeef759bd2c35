/* test_note.c - C2SP checkpoints and signed notes (SPEC §5): known answers, round trips, tampering.
 *
 * The known answers come from outside this code: Go's golang.org/x/mod/sumdb/note documents the
 * PeterNeumann key and note, and the example.com/log values were computed with Python's hashlib,
 * base64 and PyNaCl (the logic kept in tests/python/test_note.py).
 *
 * Run as `test_note DATA_DIR --emit DIR` it instead writes signed checkpoints and the verifier
 * key into DIR with an index.json, for tests/python/test_note.py to check independently.
 */
#include <CUnit/Basic.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "note.h"
#include "sign.h"
#include "testdata.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

#define EX_NAME "example.com/log"
#define EX_VKEY "example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
#define EX_TEXT "example.com/log\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n"
#define EX_SIG                                                                                  \
    "1FXFIXhcA8bzldY1uKnlMrActd5plu5xDp3ZZyDBhgiujuXf5k0H3IDB+FKhc7DPclM3WiqaYv2LnpSksLE8gIsJ3gg="
#define EX_NOTE EX_TEXT "\n\xe2\x80\x94 " EX_NAME " " EX_SIG "\n"

/* golang.org/x/mod/sumdb/note, package documentation example */
#define GO_NAME "PeterNeumann"
#define GO_SEED_HEX "810a1402d5146c8d84f2443330f54080ebf98ee17d9c74f6252fc5d5c7283173"
#define GO_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define GO_TEXT                                                                                 \
    "If you think cryptography is the answer to your problem,\n"                                \
    "then you don't know what your problem is.\n"
#define GO_NOTE                                                                                 \
    GO_TEXT "\n\xe2\x80\x94 PeterNeumann "                                                      \
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6R" \
            "yyBwJnAM=\n"

static int suite_setup(void)
{
    return sdm_sodium_init();
}

/* A keypair from a 32-byte seed, in the same memory layout sign.c uses. */
static sdm_keypair *seed_keypair(const uint8_t seed[32])
{
    sdm_keypair *kp = calloc(1, sizeof(*kp));
    if (!kp)
        return NULL;
    kp->sk = sodium_malloc(SDM_SK_LEN);
    if (!kp->sk) {
        free(kp);
        return NULL;
    }
    crypto_sign_seed_keypair(kp->pk, kp->sk, seed);
    return kp;
}

static sdm_keypair *example_keypair(void)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    return seed_keypair(seed);
}

static sdm_keypair *random_keypair(void)
{
    uint8_t seed[32];
    randombytes_buf(seed, sizeof(seed));
    return seed_keypair(seed);
}

static void example_root(uint8_t root[32])
{
    for (int i = 0; i < 32; i++)
        root[i] = (uint8_t)(32 + i);
}

static sdm_note_verifier verifier_of(const char *name, const sdm_keypair *kp)
{
    sdm_note_verifier v;
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "%s", name);
    memcpy(v.pk, kp->pk, SDM_PK_LEN);
    sdm_note_keyid(name, kp->pk, v.keyid);
    return v;
}

/* Signs text under name; the note is the caller's to free. */
static char *sign_text(const sdm_keypair *kp, const char *name, const char *text)
{
    char *note = NULL;
    size_t len = 0;
    char err[128] = "";
    sdm_note_status st = sdm_note_sign(kp, name, text, strlen(text), &note, &len, err, sizeof(err));
    CU_ASSERT_EQUAL_FATAL(st, SDM_NOTE_OK);
    CU_ASSERT_EQUAL(len, strlen(note));
    return note;
}

static sdm_note_status verify_str(const char *note, const sdm_note_verifier *keys, size_t n,
                                  char *err, size_t err_len)
{
    size_t text_len = 0;
    err[0] = '\0';
    return sdm_note_verify(note, strlen(note), keys, n, &text_len, err, err_len);
}

/* ---- known answers ------------------------------------------------------------------------ */

static void test_kat_example(void)
{
    sdm_keypair *kp = example_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    uint8_t keyid[4], root[32];
    sdm_note_keyid(EX_NAME, kp->pk, keyid);
    CU_ASSERT_EQUAL(memcmp(keyid, "\xd4\x55\xc5\x21", 4), 0);

    char *vkey = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_key(EX_NAME, kp->pk, &vkey), SDM_NOTE_OK);
    CU_ASSERT_STRING_EQUAL(vkey, EX_VKEY);
    free(vkey);

    example_root(root);
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_checkpoint_format(EX_NAME, 5, root, &text), SDM_NOTE_OK);
    CU_ASSERT_STRING_EQUAL(text, EX_TEXT);

    char *note = sign_text(kp, EX_NAME, text);
    CU_ASSERT_STRING_EQUAL(note, EX_NOTE);
    free(note);
    free(text);
    sdm_keypair_destroy(&kp);
    CU_ASSERT_PTR_NULL(kp);
}

/* Our signer reproduces Go's published note byte for byte, and our verifier opens it. */
static void test_kat_go(void)
{
    uint8_t seed[32];
    CU_ASSERT_EQUAL_FATAL(sdm_unhex(GO_SEED_HEX, seed, 32), 0);
    sdm_keypair *kp = seed_keypair(seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);

    char *vkey = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_key(GO_NAME, kp->pk, &vkey), SDM_NOTE_OK);
    CU_ASSERT_STRING_EQUAL(vkey, GO_VKEY);
    free(vkey);

    char *note = sign_text(kp, GO_NAME, GO_TEXT);
    CU_ASSERT_STRING_EQUAL(note, GO_NOTE);
    free(note);

    sdm_note_verifier v;
    char err[160] = "";
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_parse(GO_VKEY, &v, err, sizeof(err)), SDM_NOTE_OK);
    CU_ASSERT_STRING_EQUAL(v.name, GO_NAME);
    CU_ASSERT_EQUAL(memcmp(v.pk, kp->pk, 32), 0);
    size_t text_len = 0;
    CU_ASSERT_EQUAL(sdm_note_verify(GO_NOTE, strlen(GO_NOTE), &v, 1, &text_len, err, sizeof(err)),
                    SDM_NOTE_OK);
    CU_ASSERT_EQUAL(text_len, strlen(GO_TEXT));
    sdm_keypair_destroy(&kp);
}

/* ---- round trips -------------------------------------------------------------------------- */

static void test_round_trip(void)
{
    sdm_keypair *kp = random_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    const char *origin = "ledger.example/sediment/v1";
    uint64_t sizes[] = {0, 1, 7, 1000000, UINT64_MAX};
    char *vkey = NULL;
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_key(origin, kp->pk, &vkey), SDM_NOTE_OK);
    sdm_note_verifier v;
    char err[160] = "";
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_parse(vkey, &v, err, sizeof(err)), SDM_NOTE_OK);
    free(vkey);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t root[32], got_root[32];
        randombytes_buf(root, sizeof(root));
        char *text = NULL;
        CU_ASSERT_EQUAL_FATAL(sdm_checkpoint_format(origin, sizes[i], root, &text), SDM_NOTE_OK);
        char *note = sign_text(kp, origin, text);

        size_t text_len = 0;
        CU_ASSERT_EQUAL_FATAL(
            sdm_note_verify(note, strlen(note), &v, 1, &text_len, err, sizeof(err)), SDM_NOTE_OK);
        CU_ASSERT_EQUAL(text_len, strlen(text));

        char *got_origin = NULL;
        uint64_t got_size = 1234;
        CU_ASSERT_EQUAL_FATAL(sdm_checkpoint_parse(note, text_len, &got_origin, &got_size,
                                                   got_root, err, sizeof(err)),
                              SDM_NOTE_OK);
        CU_ASSERT_STRING_EQUAL(got_origin, origin);
        CU_ASSERT_EQUAL(got_size, sizes[i]);
        CU_ASSERT_EQUAL(memcmp(got_root, root, 32), 0);
        free(got_origin);
        free(note);
        free(text);
    }
    sdm_keypair_destroy(&kp);
}

/* Signatures by keys we do not know are skipped; one known good signature suffices. */
static void test_unknown_signatures_ignored(void)
{
    sdm_keypair *a = random_keypair(), *b = random_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char *na = sign_text(a, "log.a", EX_TEXT);
    char *nb = sign_text(b, "witness.b", EX_TEXT);
    /* both signatures on one note: the text, a blank line, a's line then b's line */
    const char *line_b = nb + strlen(EX_TEXT) + 1;
    size_t cap = strlen(na) + strlen(line_b) + 1;
    char *both = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(both);
    snprintf(both, cap, "%s%s", na, line_b);

    sdm_note_verifier va = verifier_of("log.a", a), vb = verifier_of("witness.b", b);
    sdm_note_verifier only_b[1] = {vb}, ab[2] = {va, vb};
    char err[160];
    CU_ASSERT_EQUAL(verify_str(both, &va, 1, err, sizeof(err)), SDM_NOTE_OK);
    CU_ASSERT_EQUAL(verify_str(both, only_b, 1, err, sizeof(err)), SDM_NOTE_OK);
    CU_ASSERT_EQUAL(verify_str(both, ab, 2, err, sizeof(err)), SDM_NOTE_OK);
    /* a note signed only by a key we do not know is unverified, with a message */
    CU_ASSERT_EQUAL(verify_str(nb, &va, 1, err, sizeof(err)), SDM_NOTE_UNVERIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no signature by a known key"));
    CU_ASSERT_EQUAL(verify_str(nb, NULL, 0, err, sizeof(err)), SDM_NOTE_UNVERIFIED);

    /* the same signature line twice is malformed (Go refuses it too) */
    cap = strlen(na) + strlen(na + strlen(EX_TEXT) + 1) + 1;
    char *twice = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(twice);
    snprintf(twice, cap, "%s%s", na, na + strlen(EX_TEXT) + 1);
    CU_ASSERT_EQUAL(verify_str(twice, &va, 1, err, sizeof(err)), SDM_NOTE_MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "second signature"));

    free(twice);
    free(both);
    free(na);
    free(nb);
    sdm_keypair_destroy(&a);
    sdm_keypair_destroy(&b);
}

/* ---- tampering ---------------------------------------------------------------------------- */

static void test_tampering(void)
{
    sdm_keypair *kp = example_keypair(), *other = random_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    sdm_note_verifier v = verifier_of(EX_NAME, kp);
    char err[160];
    CU_ASSERT_EQUAL_FATAL(verify_str(EX_NOTE, &v, 1, err, sizeof(err)), SDM_NOTE_OK);

    char note[sizeof(EX_NOTE)];
    size_t text_len = strlen(EX_TEXT), len = strlen(EX_NOTE);

    /* every byte of the text, changed in its lowest bit (keeping it ASCII and not a newline
     * or NUL where it was a printable character) */
    for (size_t i = 0; i < text_len; i++) {
        memcpy(note, EX_NOTE, sizeof(note));
        note[i] ^= (note[i] == '\n') ? 0x02 : 0x01;
        sdm_note_status st = verify_str(note, &v, 1, err, sizeof(err));
        if (st == SDM_NOTE_OK)
            fprintf(stderr, "text byte %zu flipped still verifies\n", i);
        CU_ASSERT_NOT_EQUAL(st, SDM_NOTE_OK);
    }

    /* every character of the signature's base64, swapped for another base64 character */
    size_t sig_at = len - 1 - strlen(EX_SIG);
    for (size_t i = sig_at; i < len - 2; i++) { /* the last two are a digit and '=' */
        memcpy(note, EX_NOTE, sizeof(note));
        note[i] = note[i] == 'A' ? 'B' : 'A';
        CU_ASSERT_NOT_EQUAL(verify_str(note, &v, 1, err, sizeof(err)), SDM_NOTE_OK);
    }

    /* a different name on the signature line: the key id no longer names our key */
    char renamed[sizeof(EX_NOTE)];
    memcpy(renamed, EX_NOTE, sizeof(renamed));
    char *at = strstr(renamed + text_len, "example.com");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    at[0] = 'E';
    CU_ASSERT_EQUAL(verify_str(renamed, &v, 1, err, sizeof(err)), SDM_NOTE_UNVERIFIED);

    /* a verifier with the right name and key id but another public key: a known key whose
     * signature does not verify */
    sdm_note_verifier wrong = v;
    memcpy(wrong.pk, other->pk, 32);
    CU_ASSERT_EQUAL(verify_str(EX_NOTE, &wrong, 1, err, sizeof(err)), SDM_NOTE_UNVERIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not verify"));

    /* another key entirely (its own name and id) */
    sdm_note_verifier stranger = verifier_of(EX_NAME, other);
    CU_ASSERT_EQUAL(verify_str(EX_NOTE, &stranger, 1, err, sizeof(err)), SDM_NOTE_UNVERIFIED);

    /* the text cut short but still signed by that line: the blank line moves */
    CU_ASSERT_NOT_EQUAL(sdm_note_verify(EX_NOTE + 16, len - 16, &v, 1, NULL, err, sizeof(err)),
                        SDM_NOTE_OK);

    sdm_keypair_destroy(&kp);
    sdm_keypair_destroy(&other);
}

/* ---- malformed notes ---------------------------------------------------------------------- */

#define DASH "\xe2\x80\x94 "

static void test_malformed_notes(void)
{
    sdm_keypair *kp = example_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    sdm_note_verifier v = verifier_of(EX_NAME, kp);
    sdm_keypair_destroy(&kp);

    static const struct {
        const char *note;
        const char *err_has; /* part of the message */
    } cases[] = {
        {"", "newline"},
        {EX_TEXT "\n" DASH EX_NAME " " EX_SIG, "newline"},           /* no final newline */
        {EX_TEXT DASH EX_NAME " " EX_SIG "\n", "blank line"},        /* no blank line */
        {EX_TEXT "\n", "signatures: none"},                          /* nothing after it */
        {EX_TEXT "\n\n", "signatures: none"},
        {EX_TEXT "\n- " EX_NAME " " EX_SIG "\n", "line 1"},          /* hyphen, not em dash */
        {EX_TEXT "\n" "\xe2\x80\x94" EX_NAME " " EX_SIG "\n", "line 1"}, /* no space after it */
        {EX_TEXT "\n" DASH EX_NAME EX_SIG "\n", "line 1"},           /* name and sig run together */
        {EX_TEXT "\n" DASH " " EX_SIG "\n", "name"},                 /* empty name */
        {EX_TEXT "\n" DASH "example.com+log " EX_SIG "\n", "name"},  /* '+' in the name */
        {EX_TEXT "\n" DASH EX_NAME " " EX_SIG " \n", "signature"},   /* trailing space */
        {EX_TEXT "\n" DASH EX_NAME " 1FXFIXhc*A8bzl\n", "signature"}, /* not base64 */
        {EX_TEXT "\n" DASH EX_NAME " 1FXFIQ\n", "signature"},        /* unpadded */
        {EX_TEXT "\n" DASH EX_NAME " 1FXFIQ==\n", "signature"},      /* 4 bytes: only a key id */
        {EX_TEXT "\n" DASH EX_NAME " 1FXFIR==\n", "signature"},      /* non-zero trailing bits */
        {EX_TEXT "\n" DASH EX_NAME " " EX_SIG "\n\n", "signatures: none"}, /* blank after them */
        {EX_TEXT "\n" DASH EX_NAME " " EX_SIG "\nextra\n", "line 2"},
        {"caf\xc3\n\n" DASH EX_NAME " " EX_SIG "\n", "UTF-8"},       /* truncated UTF-8 */
        {"\xc0\xaf\n\n" DASH EX_NAME " " EX_SIG "\n", "UTF-8"},      /* overlong */
    };
    char err[160];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sdm_note_status st = verify_str(cases[i].note, &v, 1, err, sizeof(err));
        if (st != SDM_NOTE_MALFORMED || !strstr(err, cases[i].err_has))
            fprintf(stderr, "malformed case %zu: status %s, message \"%s\"\n", i,
                    sdm_note_status_str(st), err);
        CU_ASSERT_EQUAL(st, SDM_NOTE_MALFORMED);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].err_has));
    }

    /* a NUL byte inside the given length */
    char with_nul[sizeof(EX_NOTE)];
    memcpy(with_nul, EX_NOTE, sizeof(with_nul));
    with_nul[3] = '\0';
    CU_ASSERT_EQUAL(sdm_note_verify(with_nul, sizeof(with_nul) - 1, &v, 1, NULL, err, sizeof(err)),
                    SDM_NOTE_MALFORMED);
    /* the length is honoured: a prefix of a valid note is not read past */
    CU_ASSERT_EQUAL(sdm_note_verify(EX_NOTE, strlen(EX_NOTE) - 1, &v, 1, NULL, err, sizeof(err)),
                    SDM_NOTE_MALFORMED);
}

static void test_sign_refuses_bad_input(void)
{
    sdm_keypair *kp = example_keypair();
    CU_ASSERT_PTR_NOT_NULL_FATAL(kp);
    char *note = (char *)1;
    char err[160];
    const char *names[] = {"", "has space", "a+b", "tab\tname", "new\nline"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        CU_ASSERT_EQUAL(sdm_note_sign(kp, names[i], EX_TEXT, strlen(EX_TEXT), &note, NULL, err,
                                      sizeof(err)),
                        SDM_NOTE_MALFORMED);
        CU_ASSERT_PTR_NULL(note);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "name"));
        char *vkey = (char *)1;
        CU_ASSERT_EQUAL(sdm_note_verifier_key(names[i], kp->pk, &vkey), SDM_NOTE_MALFORMED);
        CU_ASSERT_PTR_NULL(vkey);
    }
    CU_ASSERT_EQUAL(sdm_note_sign(kp, EX_NAME, "no newline", 10, &note, NULL, err, sizeof(err)),
                    SDM_NOTE_MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "text"));
    CU_ASSERT_EQUAL(sdm_note_sign(kp, EX_NAME, "", 0, &note, NULL, err, sizeof(err)),
                    SDM_NOTE_MALFORMED);

    uint8_t root[32] = {0};
    char *text = (char *)1;
    CU_ASSERT_EQUAL(sdm_checkpoint_format("", 1, root, &text), SDM_NOTE_MALFORMED);
    CU_ASSERT_PTR_NULL(text);
    CU_ASSERT_EQUAL(sdm_checkpoint_format("two\nlines", 1, root, &text), SDM_NOTE_MALFORMED);
    sdm_keypair_destroy(&kp);
}

/* ---- verifier keys ------------------------------------------------------------------------ */

static void test_verifier_parse(void)
{
    static const struct {
        const char *vkey;
        const char *err_has;
    } bad[] = {
        {"", "<name>+<keyid>+<key>"},
        {"example.com/log", "<name>+<keyid>+<key>"},
        {"example.com/log+d455c521", "<name>+<keyid>+<key>"},
        {"+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "name"},
        {"example com+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "name"},
        {"example.com/log+d455c52+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "key id"},
        {"example.com/log+d455c5210+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "key id"},
        {"example.com/log+d455c52g+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "key id"},
        {"example.com/log+d455c522+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "does not match"},
        {"example.com/lo+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "does not match"},
        {"example.com/log+d455c521+AgOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", "algorithm"},
        {"example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG", "base64"},
        {"example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4\n", "base64"},
        {"example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4AA==", "base64"},
    };
    char err[160];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sdm_note_verifier v;
        memset(&v, 0x5a, sizeof(v));
        err[0] = '\0';
        sdm_note_status st = sdm_note_verifier_parse(bad[i].vkey, &v, err, sizeof(err));
        if (st != SDM_NOTE_MALFORMED || !strstr(err, bad[i].err_has))
            fprintf(stderr, "verifier case %zu: status %s, message \"%s\"\n", i,
                    sdm_note_status_str(st), err);
        CU_ASSERT_EQUAL(st, SDM_NOTE_MALFORMED);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].err_has));
        CU_ASSERT_EQUAL(v.name[0], 0x5a); /* left untouched */
    }
    sdm_note_verifier v;
    CU_ASSERT_EQUAL_FATAL(sdm_note_verifier_parse(EX_VKEY, &v, err, sizeof(err)), SDM_NOTE_OK);
    CU_ASSERT_STRING_EQUAL(v.name, EX_NAME);
    CU_ASSERT_EQUAL(memcmp(v.keyid, "\xd4\x55\xc5\x21", 4), 0);
    CU_ASSERT_EQUAL(verify_str(EX_NOTE, &v, 1, err, sizeof(err)), SDM_NOTE_OK);
}

/* ---- checkpoint bodies -------------------------------------------------------------------- */

#define ROOT_B64 "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

static void test_checkpoint_parse(void)
{
    static const struct {
        const char *text;
        uint64_t size; /* when ok */
        const char *err_has; /* NULL: must parse */
    } cases[] = {
        {"o\n0\n" ROOT_B64 "\n", 0, NULL},
        {"o\n18446744073709551615\n" ROOT_B64 "\n", UINT64_MAX, NULL},
        {"o\n5\n" ROOT_B64 "\nTimestamp: 1700000000\nmore ext\n", 5, NULL},
        {"o\n18446744073709551616\n" ROOT_B64 "\n", 0, "size"},
        {"o\n00\n" ROOT_B64 "\n", 0, "size"},
        {"o\n01\n" ROOT_B64 "\n", 0, "size"},
        {"o\n-1\n" ROOT_B64 "\n", 0, "size"},
        {"o\n+1\n" ROOT_B64 "\n", 0, "size"},
        {"o\n1 \n" ROOT_B64 "\n", 0, "size"},
        {"o\n\n" ROOT_B64 "\n", 0, "size"},
        {"o\n0x10\n" ROOT_B64 "\n", 0, "size"},
        {"\n5\n" ROOT_B64 "\n", 0, "origin"},
        {"", 0, "origin"},
        {"o", 0, "origin"},
        {"o\n5", 0, "size"},
        {"o\n5\n", 0, "root"},
        {"o\n5\n" ROOT_B64, 0, "root"},                                  /* no final newline */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8\n", 0, "root"}, /* unpadded */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pg==\n", 0, "root"}, /* 31 bytes */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A\n", 0, "root"}, /* 33 bytes */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9=\n", 0, "root"}, /* trailing bits */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\r\n", 0, "root"},
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8_\n", 0, "root"}, /* URL alphabet */
        /* a byte above 0x7f where a digit goes (libsodium 1.0.18 decodes it as one) */
        {"o\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9P" "\xe9" "8=\n", 0, "root"},
        {"o\n5\n" ROOT_B64 "\n\n", 0, "extension"},
        {"o\n5\n" ROOT_B64 "\next", 0, "extension"},
    };
    char err[160];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *origin = (char *)1;
        uint64_t size = 77;
        uint8_t root[32] = {0};
        err[0] = '\0';
        sdm_note_status st = sdm_checkpoint_parse(cases[i].text, strlen(cases[i].text), &origin,
                                                  &size, root, err, sizeof(err));
        if (cases[i].err_has == NULL) {
            CU_ASSERT_EQUAL(st, SDM_NOTE_OK);
            if (st == SDM_NOTE_OK) {
                CU_ASSERT_STRING_EQUAL(origin, "o");
                CU_ASSERT_EQUAL(size, cases[i].size);
                CU_ASSERT_EQUAL(root[0], 32);
                CU_ASSERT_EQUAL(root[31], 63);
            }
            free(origin);
        } else {
            if (st != SDM_NOTE_MALFORMED || !strstr(err, cases[i].err_has))
                fprintf(stderr, "checkpoint case %zu: status %s, message \"%s\"\n", i,
                        sdm_note_status_str(st), err);
            CU_ASSERT_EQUAL(st, SDM_NOTE_MALFORMED);
            CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].err_has));
            CU_ASSERT_PTR_NULL(origin);
            CU_ASSERT_EQUAL(size, 77); /* untouched on failure */
        }
    }
    /* a NUL inside the length is refused rather than cutting the origin short */
    char *origin = NULL;
    uint64_t size = 0;
    uint8_t root[32];
    CU_ASSERT_EQUAL(sdm_checkpoint_parse("o\0x\n5\n" ROOT_B64 "\n", 51, &origin, &size, root, err,
                                         sizeof(err)),
                    SDM_NOTE_MALFORMED);
    CU_ASSERT_PTR_NULL(origin);
}

/* ---- --emit ------------------------------------------------------------------------------- */

/* Writes index.json, the verifier key and notes signed by the example key (seed 0..31) and by
 * a fresh random key, so the Python check sees both a fixed and an unpredictable key. */
static int emit(const char *dir)
{
    if (sdm_sodium_init() != 0)
        return 1;
    char path[1024];
    snprintf(path, sizeof(path), "%s/index.json", dir);
    FILE *js = fopen(path, "w");
    if (!js) {
        fprintf(stderr, "test_note --emit: cannot write %s\n", path);
        return 1;
    }
    const char *names[2] = {EX_NAME, "sediment.ledger/random-key"};
    uint64_t sizes[] = {0, 1, 5, 4096, UINT64_MAX};
    int rc = 0;
    fprintf(js, "{\"keys\": [");
    for (int k = 0; k < 2 && rc == 0; k++) {
        sdm_keypair *kp = k == 0 ? example_keypair() : random_keypair();
        char *vkey = NULL;
        if (!kp || sdm_note_verifier_key(names[k], kp->pk, &vkey) != SDM_NOTE_OK) {
            sdm_keypair_destroy(&kp);
            rc = 1;
            break;
        }
        char hex[65];
        sdm_hex(kp->pk, 32, hex);
        fprintf(js, "%s\n{\"name\": \"%s\", \"public_key\": \"%s\", \"vkey\": \"%s\", \"notes\": [",
                k ? "," : "", names[k], hex, vkey);
        free(vkey);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++) {
            uint8_t root[32];
            if (k == 0)
                example_root(root), root[0] = (uint8_t)i;
            else
                randombytes_buf(root, sizeof(root));
            char *text = NULL, *note = NULL, err[160];
            size_t note_len = 0;
            if (sdm_checkpoint_format(names[k], sizes[i], root, &text) != SDM_NOTE_OK ||
                sdm_note_sign(kp, names[k], text, strlen(text), &note, &note_len, err,
                              sizeof(err)) != SDM_NOTE_OK) {
                free(text);
                rc = 1;
                break;
            }
            snprintf(path, sizeof(path), "%s/key%d_note%zu.txt", dir, k, i);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(note, 1, note_len, f) != note_len)
                rc = 1;
            if (f && fclose(f) != 0)
                rc = 1;
            sdm_hex(root, 32, hex);
            fprintf(js, "%s\n  {\"file\": \"key%d_note%zu.txt\", \"size\": \"%" PRIu64
                        "\", \"root\": \"%s\"}",
                    i ? "," : "", k, i, sizes[i], hex);
            free(text);
            free(note);
        }
        fprintf(js, "]}");
        sdm_keypair_destroy(&kp);
    }
    fprintf(js, "\n]}\n");
    if (fclose(js) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "test_note --emit: writing to %s failed\n", dir);
    return rc;
}

/* ---- registration ------------------------------------------------------------------------- */

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("note", suite_setup, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "known answers: example.com/log (PyNaCl)", test_kat_example) ||
        !CU_add_test(s, "known answers: Go sumdb/note PeterNeumann", test_kat_go) ||
        !CU_add_test(s, "checkpoint sign/verify/parse round trip", test_round_trip) ||
        !CU_add_test(s, "unknown-key signatures ignored", test_unknown_signatures_ignored) ||
        !CU_add_test(s, "tampering rejected", test_tampering) ||
        !CU_add_test(s, "malformed notes rejected with a message", test_malformed_notes) ||
        !CU_add_test(s, "signing refuses bad names and text", test_sign_refuses_bad_input) ||
        !CU_add_test(s, "verifier key parsing", test_verifier_parse) ||
        !CU_add_test(s, "checkpoint parse edge cases", test_checkpoint_parse))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[2], "--emit") == 0)
        return emit(argv[3]);
    return test_main(argc, argv, register_suites);
}
