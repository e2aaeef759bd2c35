/* emit_tlog.c - our checkpoints and Merkle proofs as JSON, for Go's sumdb (tests/go/tlogcheck).
 *
 * Usage: emit_tlog OUT.json
 *
 * Builds a 300-leaf tree with service/merkle.c (varied leaf data, the empty leaf included),
 * signs checkpoints of its prefixes under origin "sediment.test/ledger" with service/note.c and
 * a key from a fixed seed (so the file is the same on every run), and writes the input format
 * documented at the top of tests/go/tlogcheck/main.go: the verifier key, the checkpoints,
 * inclusion proofs for a spread of (index, size), consistency proofs between every pair of
 * checkpoints, and tampered proofs and checkpoints that must be rejected. Every item is also
 * checked here with our own verifiers first, so that the Go run compares two implementations
 * that each agree with what the item is meant to be.
 *
 * On stdout it prints the summary tlogcheck must print for this file, one line, so that the
 * driver (tests/go/run.sh) checks the counts too and an emitter that wrote nothing cannot pass.
 * Exit status 0, or 1 with a message on stderr.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "merkle.h"
#include "note.h"
#include "sign.h"

#define ORIGIN "sediment.test/ledger"
#define N_LEAVES 300
#define MAX_LEAF 300 /* bytes of the longest leaf */
#define MAX_PATH 64

static const uint64_t cp_sizes[] = {1, 2, 3, 7, 8, 9, 64, 255, 256, 300};
#define N_CPS (sizeof(cp_sizes) / sizeof(cp_sizes[0]))

typedef struct leaf {
    uint8_t data[MAX_LEAF];
    size_t len;
} leaf;

typedef struct proof {
    uint8_t path[MAX_PATH + 1][SDM_HASH_LEN]; /* one spare slot for the "extra hash" case */
    size_t n;
} proof;

typedef struct emitter {
    FILE *out;
    sdm_merkle_t *tree;
    leaf *leaves;
    uint8_t roots[N_CPS][SDM_HASH_LEN];
    int first; /* no item written yet in the current list */
    int failed;
    unsigned n_inclusion, n_consistency, n_bad;
} emitter;

static void fail(emitter *e, const char *what)
{
    fprintf(stderr, "emit_tlog: %s\n", what);
    e->failed = 1;
}

/* A keypair from a fixed seed, in the memory layout sign.c uses (sk in sodium_malloc). */
static sdm_keypair *seed_keypair(uint8_t seed_byte)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(seed_byte + 7 * i);
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

/* Leaf i: lengths 0, 1, 2, ... up to MAX_LEAF-1 in a scattered order, so the tree has empty,
 * one-byte, short and long (over 255 bytes) leaves; bytes that differ between leaves. */
static void make_leaf(uint64_t i, leaf *l)
{
    l->len = i == 0 ? 0 : (size_t)((i * 37) % MAX_LEAF);
    for (size_t j = 0; j < l->len; j++)
        l->data[j] = (uint8_t)(i * 131 + j * 17 + (j >> 3));
}

/* ---- JSON writing ------------------------------------------------------------------------- */

static void put_hex(FILE *f, const uint8_t *b, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", b[i]);
    fputc('"', f);
}

static void put_hashes(FILE *f, const proof *p)
{
    fputs("\"hashes\": [", f);
    for (size_t i = 0; i < p->n; i++) {
        if (i)
            fputs(", ", f);
        put_hex(f, p->path[i], SDM_HASH_LEN);
    }
    fputc(']', f);
}

static void begin_list(emitter *e, const char *name)
{
    fprintf(e->out, ",\n\"%s\": [", name);
    e->first = 1;
}

static void next_item(emitter *e)
{
    fputs(e->first ? "\n  " : ",\n  ", e->out);
    e->first = 0;
}

static void end_list(emitter *e)
{
    fputs("\n]", e->out);
}

/* ---- items -------------------------------------------------------------------------------- */

static int cp_of_size(uint64_t size)
{
    for (size_t c = 0; c < N_CPS; c++)
        if (cp_sizes[c] == size)
            return (int)c;
    return -1;
}

static int inclusion_of(emitter *e, uint64_t index, uint64_t size, proof *p)
{
    return sdm_merkle_inclusion(e->tree, index, size, p->path, &p->n);
}

/* Writes an inclusion item for checkpoint c. want_ok says whether it must verify; our own
 * verifier must agree before it is written. */
static void put_inclusion(emitter *e, int c, uint64_t index, const leaf *l, const proof *p,
                          int want_ok, const char *label)
{
    uint8_t lh[SDM_HASH_LEN];
    sdm_merkle_leaf_hash(l->data, l->len, lh);
    int ok =
        sdm_merkle_verify_inclusion(lh, index, cp_sizes[c], (const uint8_t(*)[SDM_HASH_LEN])p->path,
                                    p->n, e->roots[c]) == 0;
    if (ok != want_ok) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "our verifier %s inclusion item (%s, index %" PRIu64 ", size %" PRIu64 ")",
                 ok ? "accepts a bad" : "rejects a good", label, index, cp_sizes[c]);
        fail(e, msg);
    }
    next_item(e);
    fprintf(e->out, "{\"checkpoint\": %d, \"index\": %" PRIu64 ", \"leaf\": ", c, index);
    put_hex(e->out, l->data, l->len);
    fputs(", ", e->out);
    put_hashes(e->out, p);
    fputc('}', e->out);
    if (want_ok)
        e->n_inclusion++;
    else
        e->n_bad++;
}

static void put_consistency(emitter *e, int from, int to, const proof *p, int want_ok,
                            const char *label)
{
    int ok =
        sdm_merkle_verify_consistency(cp_sizes[from], cp_sizes[to], e->roots[from], e->roots[to],
                                      (const uint8_t(*)[SDM_HASH_LEN])p->path, p->n) == 0;
    if (ok != want_ok) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "our verifier %s consistency item (%s, %" PRIu64 " to %" PRIu64 ")",
                 ok ? "accepts a bad" : "rejects a good", label, cp_sizes[from], cp_sizes[to]);
        fail(e, msg);
    }
    next_item(e);
    fprintf(e->out, "{\"from\": %d, \"to\": %d, ", from, to);
    put_hashes(e->out, p);
    fputc('}', e->out);
    if (want_ok)
        e->n_consistency++;
    else
        e->n_bad++;
}

/* Good inclusion proofs: every index for sizes up to 9; for larger sizes the first, last,
 * middle and the leaves on either side of each power-of-two boundary. */
static void emit_inclusion(emitter *e)
{
    begin_list(e, "inclusion");
    for (size_t c = 0; c < N_CPS; c++) {
        uint64_t size = cp_sizes[c];
        uint64_t picks[32];
        size_t n_picks = 0;
        if (size <= 9) {
            for (uint64_t i = 0; i < size; i++)
                picks[n_picks++] = i;
        } else {
            const uint64_t cand[] = {0,  1,   size / 2, size - 2, size - 1, 31,  32, 63,
                                     64, 127, 128,      254,      255,      256, 299};
            for (size_t k = 0; k < sizeof(cand) / sizeof(cand[0]); k++) {
                int dup = cand[k] >= size;
                for (size_t m = 0; m < n_picks && !dup; m++)
                    dup = picks[m] == cand[k];
                if (!dup)
                    picks[n_picks++] = cand[k];
            }
        }
        for (size_t k = 0; k < n_picks; k++) {
            proof p;
            if (inclusion_of(e, picks[k], size, &p) != 0) {
                fail(e, "sdm_merkle_inclusion failed");
                continue;
            }
            put_inclusion(e, (int)c, picks[k], &e->leaves[picks[k]], &p, 1, "good");
        }
    }
    end_list(e);
}

/* Good consistency proofs between every ordered pair, the equal pairs (empty proofs) too. */
static void emit_consistency(emitter *e)
{
    begin_list(e, "consistency");
    for (size_t from = 0; from < N_CPS; from++) {
        for (size_t to = from; to < N_CPS; to++) {
            proof p;
            if (sdm_merkle_consistency(e->tree, cp_sizes[from], cp_sizes[to], p.path, &p.n) != 0) {
                fail(e, "sdm_merkle_consistency failed");
                continue;
            }
            put_consistency(e, (int)from, (int)to, &p, 1, "good");
        }
    }
    end_list(e);
}

/* Proofs that must fail: each is a good proof with one thing changed. */
static void emit_bad_inclusion(emitter *e)
{
    begin_list(e, "bad_inclusion");
    const int c300 = cp_of_size(300), c256 = cp_of_size(256), c8 = cp_of_size(8),
              c2 = cp_of_size(2);
    proof good, p;
    if (inclusion_of(e, 123, 300, &good) != 0 || good.n < 3) {
        fail(e, "no inclusion proof for leaf 123 of 300");
        end_list(e);
        return;
    }

    p = good; /* a flipped bit in the first hash (a leaf's sibling) */
    p.path[0][5] ^= 0x10;
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "bit flipped in hashes[0]");
    p = good; /* ... in the last hash (the root's other child) */
    p.path[p.n - 1][31] ^= 0x01;
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "bit flipped in the last hash");
    p = good; /* the proof of leaf 123 presented as leaf 122's, and as leaf 124's */
    put_inclusion(e, c300, 122, &e->leaves[123], &p, 0, "wrong index, one below");
    put_inclusion(e, c300, 124, &e->leaves[123], &p, 0, "wrong index, one above");
    p = good; /* leaf 124's data with leaf 123's proof */
    put_inclusion(e, c300, 123, &e->leaves[124], &p, 0, "wrong leaf data");
    p = good; /* the last hash dropped */
    p.n--;
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "last hash dropped");
    p = good; /* the first hash dropped */
    memmove(p.path[0], p.path[1], (p.n - 1) * SDM_HASH_LEN);
    p.n--;
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "first hash dropped");
    p = good; /* an extra hash appended: the tree's own root, so every hash is genuine */
    memcpy(p.path[p.n++], e->roots[c300], SDM_HASH_LEN);
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "extra hash");
    p = good; /* two hashes swapped */
    memcpy(p.path[0], good.path[1], SDM_HASH_LEN);
    memcpy(p.path[1], good.path[0], SDM_HASH_LEN);
    put_inclusion(e, c300, 123, &e->leaves[123], &p, 0, "hashes[0] and hashes[1] swapped");

    /* leaf 5's proof at size 256 checked against the size-300 checkpoint */
    if (inclusion_of(e, 5, 256, &p) == 0)
        put_inclusion(e, c300, 5, &e->leaves[5], &p, 0, "proof for another size");
    else
        fail(e, "no inclusion proof for leaf 5 of 256");
    /* leaf 255 is the last of 256 leaves: presented as index 256 (one past the end) */
    if (inclusion_of(e, 255, 256, &p) == 0)
        put_inclusion(e, c256, 256, &e->leaves[255], &p, 0, "index equal to the size");
    else
        fail(e, "no inclusion proof for leaf 255 of 256");
    /* small trees: a flipped bit in the only hash, and an empty proof for a two-leaf tree */
    if (inclusion_of(e, 1, 2, &p) == 0 && p.n == 1) {
        p.path[0][0] ^= 0x80;
        put_inclusion(e, c2, 1, &e->leaves[1], &p, 0, "size 2, bit flipped");
        p.n = 0;
        put_inclusion(e, c2, 1, &e->leaves[1], &p, 0, "size 2, empty proof");
    } else {
        fail(e, "no inclusion proof for leaf 1 of 2");
    }
    /* the empty leaf (index 0) with a flipped bit in its proof in the tree of 8 */
    if (inclusion_of(e, 0, 8, &p) == 0 && p.n == 3) {
        p.path[2][16] ^= 0x04;
        put_inclusion(e, c8, 0, &e->leaves[0], &p, 0, "empty leaf, bit flipped");
    } else {
        fail(e, "no inclusion proof for leaf 0 of 8");
    }
    end_list(e);
}

static void emit_bad_consistency(emitter *e)
{
    begin_list(e, "bad_consistency");
    const int c7 = cp_of_size(7), c8 = cp_of_size(8), c256 = cp_of_size(256),
              c300 = cp_of_size(300);
    proof good, p;
    if (sdm_merkle_consistency(e->tree, 7, 300, good.path, &good.n) != 0 || good.n < 3) {
        fail(e, "no consistency proof from 7 to 300");
        end_list(e);
        return;
    }
    p = good;
    p.path[1][9] ^= 0x02;
    put_consistency(e, c7, c300, &p, 0, "bit flipped in hashes[1]");
    p = good;
    p.path[0][0] ^= 0x01;
    put_consistency(e, c7, c300, &p, 0, "bit flipped in hashes[0]");
    p = good;
    p.n--;
    put_consistency(e, c7, c300, &p, 0, "last hash dropped");
    p = good;
    memcpy(p.path[p.n++], e->roots[c300], SDM_HASH_LEN);
    put_consistency(e, c7, c300, &p, 0, "extra hash");
    p = good; /* 7 to 300 presented as 7 to 256, and as 8 to 300 */
    put_consistency(e, c7, c256, &p, 0, "proof for another new size");
    put_consistency(e, c8, c300, &p, 0, "proof for another old size");
    p = good; /* sizes swapped: the newer tree cannot be a prefix of the older one */
    put_consistency(e, c300, c7, &p, 0, "from and to swapped");
    /* equal sizes take only the empty proof */
    memcpy(p.path[0], e->roots[c8], SDM_HASH_LEN);
    p.n = 1;
    put_consistency(e, c8, c8, &p, 0, "non-empty proof for equal sizes");
    /* 8 to 256: a power of two old tree, whose own root the proof leaves out */
    if (sdm_merkle_consistency(e->tree, 8, 256, p.path, &p.n) == 0 && p.n >= 1) {
        memmove(p.path[1], p.path[0], p.n * SDM_HASH_LEN);
        memcpy(p.path[0], e->roots[c8], SDM_HASH_LEN);
        p.n++;
        put_consistency(e, c8, c256, &p, 0, "old root prepended to a power-of-two proof");
    } else {
        fail(e, "no consistency proof from 8 to 256");
    }
    end_list(e);
}

/* Checkpoints that must not open: each is rejected by our own verifier too. */
static void put_bad_checkpoint(emitter *e, const sdm_note_verifier *v, const char *note, size_t len,
                               const char *label)
{
    char err[160] = "";
    sdm_note_status st = sdm_note_verify(note, len, v, 1, NULL, err, sizeof(err));
    if (st == SDM_NOTE_OK) {
        char msg[160];
        snprintf(msg, sizeof(msg), "our verifier accepts a bad checkpoint (%s)", label);
        fail(e, msg);
    }
    next_item(e);
    sdm_json_write_strn(e->out, note, len);
    e->n_bad++;
}

static char *sign_checkpoint(emitter *e, const sdm_keypair *kp, const char *name, uint64_t size,
                             const uint8_t root[SDM_HASH_LEN], size_t *len)
{
    char *text = NULL, *note = NULL, err[160] = "";
    if (sdm_checkpoint_format(ORIGIN, size, root, &text) != SDM_NOTE_OK) {
        fail(e, "sdm_checkpoint_format failed");
        return NULL;
    }
    if (sdm_note_sign(kp, name, text, strlen(text), &note, len, err, sizeof(err)) != SDM_NOTE_OK) {
        fail(e, err);
        note = NULL;
    }
    free(text);
    return note;
}

static void emit_bad_checkpoints(emitter *e, const sdm_note_verifier *v, const char *good_300)
{
    begin_list(e, "bad_checkpoints");
    const int c300 = cp_of_size(300);
    size_t len = strlen(good_300);
    char *note = malloc(len + 2);
    if (!note) {
        fail(e, "out of memory");
        end_list(e);
        return;
    }

    /* the size line "300" made "301", signature kept */
    memcpy(note, good_300, len + 1);
    char *size_line = strstr(note, "\n300\n");
    if (size_line) {
        size_line[3] = '1';
        put_bad_checkpoint(e, v, note, len, "tampered size");
    } else {
        fail(e, "size line 300 not found in the checkpoint");
    }
    /* one base64 character of the root changed ('A' <-> 'B' keeps it valid base64) */
    memcpy(note, good_300, len + 1);
    char *root_line = strchr(strchr(note, '\n') + 1, '\n') + 1;
    root_line[0] = root_line[0] == 'A' ? 'B' : 'A';
    put_bad_checkpoint(e, v, note, len, "tampered root");
    /* the origin line changed */
    memcpy(note, good_300, len + 1);
    note[0] = note[0] == 's' ? 't' : 's';
    put_bad_checkpoint(e, v, note, len, "tampered origin");
    /* one base64 character of the Ed25519 signature changed (the first 8 characters hold the
     * 4-byte key id, so character 8 lies in the signature proper) */
    memcpy(note, good_300, len + 1);
    char *sig = strstr(note, " " ORIGIN " ");
    if (sig) {
        sig += strlen(" " ORIGIN " ") + 8; /* past the key id's base64 */
        *sig = *sig == 'A' ? 'B' : 'A';
        put_bad_checkpoint(e, v, note, len, "tampered signature");
    } else {
        fail(e, "signature line not found in the checkpoint");
    }
    /* the signature block removed: no blank line, no signature */
    memcpy(note, good_300, len + 1);
    char *blank = strstr(note, "\n\n");
    if (blank) {
        blank[1] = '\0';
        put_bad_checkpoint(e, v, note, (size_t)(blank + 1 - note), "unsigned");
    }
    free(note);

    /* the same checkpoint signed by another key under the same name, and under another name */
    sdm_keypair *other = seed_keypair(0xA5);
    if (!other) {
        fail(e, "out of memory");
        end_list(e);
        return;
    }
    size_t olen = 0;
    char *onote = sign_checkpoint(e, other, ORIGIN, 300, e->roots[c300], &olen);
    if (onote)
        put_bad_checkpoint(e, v, onote, olen, "another key, same name");
    free(onote);
    onote = sign_checkpoint(e, other, "other.test/ledger", 300, e->roots[c300], &olen);
    if (onote)
        put_bad_checkpoint(e, v, onote, olen, "another key and name");
    free(onote);
    sdm_keypair_destroy(&other);
    end_list(e);
}

static int emit(const char *path)
{
    emitter e;
    memset(&e, 0, sizeof(e));
    if (sdm_sodium_init() != 0) {
        fprintf(stderr, "emit_tlog: sodium_init failed\n");
        return 1;
    }
    e.tree = sdm_merkle_new();
    e.leaves = calloc(N_LEAVES, sizeof(leaf));
    sdm_keypair *kp = seed_keypair(0x01);
    if (!e.tree || !e.leaves || !kp) {
        fprintf(stderr, "emit_tlog: out of memory\n");
        return 1;
    }
    for (uint64_t i = 0; i < N_LEAVES; i++) {
        uint8_t lh[SDM_HASH_LEN];
        make_leaf(i, &e.leaves[i]);
        sdm_merkle_leaf_hash(e.leaves[i].data, e.leaves[i].len, lh);
        if (sdm_merkle_append(e.tree, lh) != 0) {
            fprintf(stderr, "emit_tlog: out of memory\n");
            return 1;
        }
    }

    e.out = fopen(path, "w");
    if (!e.out) {
        perror(path);
        return 1;
    }
    char *vkey = NULL, err[160] = "";
    sdm_note_verifier v;
    if (sdm_note_verifier_key(ORIGIN, kp->pk, &vkey) != SDM_NOTE_OK ||
        sdm_note_verifier_parse(vkey, &v, err, sizeof(err)) != SDM_NOTE_OK) {
        fprintf(stderr, "emit_tlog: verifier key: %s\n", err);
        return 1;
    }
    fputs("{\"vkey\": ", e.out);
    sdm_json_write_strn(e.out, vkey, strlen(vkey));

    char *notes[N_CPS] = {0};
    begin_list(&e, "checkpoints");
    for (size_t c = 0; c < N_CPS; c++) {
        size_t len = 0;
        if (sdm_merkle_root(e.tree, cp_sizes[c], e.roots[c]) != 0) {
            fail(&e, "sdm_merkle_root failed");
            continue;
        }
        notes[c] = sign_checkpoint(&e, kp, ORIGIN, cp_sizes[c], e.roots[c], &len);
        if (!notes[c])
            continue;
        if (sdm_note_verify(notes[c], len, &v, 1, NULL, err, sizeof(err)) != SDM_NOTE_OK)
            fail(&e, "our verifier rejects a checkpoint we signed");
        next_item(&e);
        sdm_json_write_strn(e.out, notes[c], len);
    }
    end_list(&e);

    emit_inclusion(&e);
    emit_consistency(&e);
    emit_bad_inclusion(&e);
    emit_bad_consistency(&e);
    if (notes[N_CPS - 1])
        emit_bad_checkpoints(&e, &v, notes[N_CPS - 1]);
    fputs("\n}\n", e.out);

    if (fclose(e.out) != 0) {
        perror(path);
        e.failed = 1;
    }
    if (!e.failed)
        printf(
            "{\"checkpoints_ok\":%zu,\"inclusion_ok\":%u,\"consistency_ok\":%u,\"bad_rejected\":%u,"
            "\"failures\":[]}\n",
            N_CPS, e.n_inclusion, e.n_consistency, e.n_bad);

    for (size_t c = 0; c < N_CPS; c++)
        free(notes[c]);
    free(vkey);
    free(e.leaves);
    sdm_merkle_destroy(&e.tree);
    sdm_keypair_destroy(&kp);
    return e.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr,
                "usage: emit_tlog OUT.json\n"
                "Writes sediment checkpoints and Merkle proofs for tests/go/tlogcheck and prints\n"
                "the summary tlogcheck must print for them.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    return emit(argv[1]);
}
