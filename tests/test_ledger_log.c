/* test_ledger_log.c - the ledger's durable log: group appends, duplicates, proofs against the
 * signed checkpoint, reopen, and the start-up checks that refuse a log which no longer holds
 * what was signed (a changed envelope, a lost entry, another key, another origin), and the
 * roll-back of a group whose commit fails.
 */
#include <CUnit/Basic.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "body.h"
#include "ledger_log.h"
#include "note.h"
#include "sign.h"
#include "testdata.h"

#define H SDM_HASH_LEN
#define MAXE 64

static sdm_keypair *g_ledger_kp, *g_other_kp;

/* A worker's signed receipt: envelope and its checked body. */
typedef struct made {
    uint8_t *env;
    size_t env_len;
    sdm_body body;
} made;

static sdm_keypair *seed_keypair(uint8_t fill)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof(seed));
    sdm_keypair *kp = calloc(1, sizeof(*kp));
    kp->sk = sodium_malloc(SDM_SK_LEN);
    crypto_sign_seed_keypair(kp->pk, kp->sk, seed);
    return kp;
}

static int suite_setup(void)
{
    if (sdm_sodium_init() != 0 || test_scratch_make("sdm-ledger-log") != 0)
        return -1;
    g_ledger_kp = seed_keypair(0x11);
    g_other_kp = seed_keypair(0x22);
    return 0;
}

static int suite_teardown(void)
{
    sdm_keypair_destroy(&g_ledger_kp);
    sdm_keypair_destroy(&g_other_kp);
    return test_scratch_remove();
}

/* Receipt number i of contributor c (distinct envelopes for distinct (i, c, model)). */
static void make_receipt(made *m, uint64_t i, const char *contributor, const char *model)
{
    static sdm_keypair *worker;
    if (!worker)
        worker = seed_keypair(0x33);
    char shard[32];
    snprintf(shard, sizeof(shard), "%s/s%" PRIu64, contributor, i % 3);
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields = (sdm_leaf_fields){model, "ckpt", 0.5, contributor, shard, 4, {0}, {0}, {0}, 0};
    uint64_t ids[4] = {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3};
    sdm_digest_ids(ids, 4, r.leaf_fields.ids_digest);
    memset(r.leaf_fields.data_digest, (int)(i & 0xff), H);
    sdm_digest_weights(NULL, 0, r.leaf_fields.weights_digest);
    memcpy(r.worker, worker->pk, 32);
    r.issued_at = 1000 + i;
    r.batch = i;
    r.store_size = i + 1;
    CU_ASSERT_EQUAL_FATAL(sdm_leaf_hash(&r.leaf_fields, r.leaf), 0);
    uint8_t *body;
    size_t body_len;
    CU_ASSERT_EQUAL_FATAL(sdm_receipt_encode(&r, &body, &body_len), 0);
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_sign(worker, body, body_len, &m->env, &m->env_len), 0);
    free(body);
    const uint8_t *b;
    size_t bl;
    uint8_t key[32];
    sdm_wire_error e;
    CU_ASSERT_EQUAL_FATAL(sdm_envelope_open(m->env, m->env_len, &b, &bl, key, &e), SDM_WIRE_OK);
    CU_ASSERT_EQUAL_FATAL(sdm_body_read(b, bl, key, &m->body, &e), SDM_WIRE_OK);
}

static void made_free(made *m)
{
    free(m->env);
    sdm_body_free(&m->body);
}

/* A fresh, empty directory for one log (a scratch dir of its own, so several may be open). */
static char *new_dir(void)
{
    static int n;
    char name[32];
    snprintf(name, sizeof(name), "log-%d", n++);
    char *d = strdup(test_scratch_dir(name, 1));
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

static void remove_dir(char *d)
{
    test_rm_tree(d);
    free(d);
}

/* Verifies a note with the ledger key under origin; returns the checkpoint's size and root. */
static int open_checkpoint(const char *note, const char *origin, const sdm_keypair *kp,
                           uint64_t *size, uint8_t root[H])
{
    sdm_note_verifier v;
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "%s", origin);
    memcpy(v.pk, kp->pk, 32);
    sdm_note_keyid(origin, kp->pk, v.keyid);
    size_t text_len;
    char err[256];
    if (sdm_note_verify(note, strlen(note), &v, 1, &text_len, err, sizeof(err)) != SDM_NOTE_OK)
        return -1;
    char *o = NULL;
    if (sdm_checkpoint_parse(note, text_len, &o, size, root, err, sizeof(err)) != SDM_NOTE_OK)
        return -1;
    int same = strcmp(o, origin) == 0;
    free(o);
    return same ? 0 : -1;
}

static int append(sdm_ledger_log_t *log, made *m, size_t n, sdm_ledger_item *items,
                  uint64_t *size, char **note, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++)
        items[i] = (sdm_ledger_item){.entry = m[i].env, .entry_len = m[i].env_len,
                                     .body = &m[i].body};
    return sdm_ledger_log_append(log, items, n, size, note, err, err_len);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_new_log(void)
{
    char *dir = new_dir(), err[512] = "";
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    char hex[65];
    sdm_hex(g_ledger_kp->pk, 32, hex);
    char want[64];
    snprintf(want, sizeof(want), "sediment-ledger-%.16s", hex);
    CU_ASSERT_STRING_EQUAL(sdm_ledger_log_origin(log), want);
    CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 0);
    char *note = sdm_ledger_log_checkpoint(log);
    uint64_t size = 99;
    uint8_t root[H], empty[H];
    CU_ASSERT_EQUAL(open_checkpoint(note, want, g_ledger_kp, &size, root), 0);
    CU_ASSERT_EQUAL(size, 0);
    crypto_hash_sha256(empty, NULL, 0);
    CU_ASSERT_EQUAL(memcmp(root, empty, H), 0); /* MTH({}) = SHA-256() */
    free(note);
    sdm_ledger_log_close(&log);
    remove_dir(dir);
}

static void test_append_duplicates_proofs(void)
{
    char *dir = new_dir(), err[512] = "";
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, "test.example/log", g_ledger_kp, err,
                                                sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    made m[6];
    for (int i = 0; i < 5; i++)
        make_receipt(&m[i], (uint64_t)i, i % 2 ? "bob" : "alice", "model-a");
    m[5] = m[1]; /* the same envelope twice in one group */
    sdm_ledger_item items[6];
    uint64_t size = 0;
    char *note = NULL;
    CU_ASSERT_EQUAL_FATAL(append(log, m, 6, items, &size, &note, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(size, 5);
    CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 5);
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(items[i].index, (uint64_t)i);
        CU_ASSERT_FALSE(items[i].duplicate);
        uint8_t leaf[H];
        sdm_merkle_leaf_hash(m[i].env, m[i].env_len, leaf);
        CU_ASSERT_EQUAL(memcmp(leaf, items[i].leaf, H), 0);
    }
    CU_ASSERT_EQUAL(items[5].index, 1);
    CU_ASSERT_TRUE(items[5].duplicate);

    /* the group's checkpoint covers every entry; each inclusion proof verifies against it */
    uint64_t ck_size;
    uint8_t root[H];
    CU_ASSERT_EQUAL_FATAL(open_checkpoint(note, "test.example/log", g_ledger_kp, &ck_size, root), 0);
    CU_ASSERT_EQUAL(ck_size, 5);
    for (uint64_t i = 0; i < 5; i++) {
        uint8_t leaf[H], path[64][H];
        size_t n = 0;
        CU_ASSERT_EQUAL(sdm_ledger_inclusion(log, i, 5, leaf, path, &n), 0);
        CU_ASSERT_EQUAL(sdm_merkle_verify_inclusion(leaf, i, 5, (const uint8_t(*)[H])path, n, root), 0);
    }
    uint8_t leaf[H], path[64][H];
    size_t n;
    CU_ASSERT_EQUAL(sdm_ledger_inclusion(log, 5, 6, leaf, path, &n), 1); /* beyond the log */
    CU_ASSERT_EQUAL(sdm_ledger_inclusion(log, 5, 5, leaf, path, &n), 1); /* index == size */

    /* a later duplicate: same index, nothing new, and a second group chains consistently */
    made later[2];
    later[0] = m[3];
    make_receipt(&later[1], 100, "carol", "model-b");
    char *note2 = NULL;
    CU_ASSERT_EQUAL_FATAL(append(log, later, 2, items, &size, &note2, err, sizeof(err)), 0);
    CU_ASSERT_TRUE(items[0].duplicate);
    CU_ASSERT_EQUAL(items[0].index, 3);
    CU_ASSERT_FALSE(items[1].duplicate);
    CU_ASSERT_EQUAL(items[1].index, 5);
    CU_ASSERT_EQUAL(size, 6);
    uint64_t size2;
    uint8_t root2[H];
    CU_ASSERT_EQUAL_FATAL(open_checkpoint(note2, "test.example/log", g_ledger_kp, &size2, root2), 0);
    CU_ASSERT_EQUAL(sdm_ledger_consistency(log, 5, 6, path, &n), 0);
    CU_ASSERT_EQUAL(sdm_merkle_verify_consistency(5, 6, root, root2, (const uint8_t(*)[H])path, n), 0);
    CU_ASSERT_EQUAL(sdm_ledger_consistency(log, 5, 7, path, &n), 1);

    /* entries come back byte for byte */
    sdm_ledger_reader_t *r = sdm_ledger_reader_open(log, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    for (uint64_t i = 0; i < 5; i++) {
        uint8_t *env = NULL;
        size_t len = 0;
        CU_ASSERT_EQUAL(sdm_ledger_entry(r, i, &env, &len, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(len, m[i].env_len);
        CU_ASSERT(env && memcmp(env, m[i].env, len) == 0);
        free(env);
    }
    uint8_t *env = NULL;
    size_t len;
    CU_ASSERT_EQUAL(sdm_ledger_entry(r, 6, &env, &len, err, sizeof(err)), 1);
    sdm_ledger_reader_close(&r);
    free(note);
    free(note2);
    sdm_ledger_log_close(&log);

    /* reopen: same size, same root, the last checkpoint accepted */
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_STRING_EQUAL(sdm_ledger_log_origin(log), "test.example/log");
    CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 6);
    note = sdm_ledger_log_checkpoint(log);
    uint8_t root3[H];
    CU_ASSERT_EQUAL(open_checkpoint(note, "test.example/log", g_ledger_kp, &size, root3), 0);
    CU_ASSERT_EQUAL(size, 6);
    CU_ASSERT_EQUAL(memcmp(root2, root3, H), 0);
    free(note);
    sdm_ledger_log_close(&log);
    for (int i = 0; i < 5; i++)
        made_free(&m[i]);
    made_free(&later[1]);
    remove_dir(dir);
}

typedef struct rows {
    int n;
    uint64_t index[16];
    char shard[16][32];
    int nan_score;
} rows;

static int collect(void *ctx, const sdm_ledger_touch *t)
{
    rows *r = ctx;
    if (r->n < 16) {
        r->index[r->n] = t->index;
        snprintf(r->shard[r->n], 32, "%s", t->shard);
        r->nan_score += isnan(t->score);
    }
    r->n++;
    return 0;
}

static void test_history_window(void)
{
    char *dir = new_dir(), err[512] = "";
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    made m[8];
    for (int i = 0; i < 8; i++)
        make_receipt(&m[i], (uint64_t)i, i % 2 ? "bob" : "alice", "model-a");
    sdm_ledger_item items[8];
    uint64_t size;
    char *note = NULL;
    CU_ASSERT_EQUAL_FATAL(append(log, m, 8, items, &size, &note, err, sizeof(err)), 0);
    free(note);
    sdm_ledger_reader_t *r = sdm_ledger_reader_open(log, err, sizeof(err));
    rows got = {0};
    /* alice has receipts 0, 2, 4, 6 issued at 1000 + i */
    CU_ASSERT_EQUAL(sdm_ledger_history(r, "alice", 0, UINT64_MAX, 100, collect, &got, err,
                                       sizeof(err)), 0);
    CU_ASSERT_EQUAL(got.n, 4);
    CU_ASSERT_EQUAL(got.index[0], 0);
    CU_ASSERT_EQUAL(got.index[3], 6);
    CU_ASSERT_STRING_EQUAL(got.shard[1], "alice/s2");
    CU_ASSERT_EQUAL(got.nan_score, 4); /* receipts carry no score */
    memset(&got, 0, sizeof(got));
    CU_ASSERT_EQUAL(sdm_ledger_history(r, "alice", 1002, 1006, 100, collect, &got, err,
                                       sizeof(err)), 0);
    CU_ASSERT_EQUAL(got.n, 2); /* 1002 and 1004: since inclusive, until exclusive */
    CU_ASSERT_EQUAL(got.index[0], 2);
    CU_ASSERT_EQUAL(got.index[1], 4);
    memset(&got, 0, sizeof(got));
    CU_ASSERT_EQUAL(sdm_ledger_history(r, "bob", 0, UINT64_MAX, 3, collect, &got, err,
                                       sizeof(err)), 0);
    CU_ASSERT_EQUAL(got.n, 3); /* limit */
    memset(&got, 0, sizeof(got));
    CU_ASSERT_EQUAL(sdm_ledger_history(r, "nobody", 0, UINT64_MAX, 3, collect, &got, err,
                                       sizeof(err)), 0);
    CU_ASSERT_EQUAL(got.n, 0);
    sdm_ledger_reader_close(&r);
    sdm_ledger_log_close(&log);
    for (int i = 0; i < 8; i++)
        made_free(&m[i]);
    remove_dir(dir);
}

/* Builds a log of n receipts in dir and closes it. */
static void build_log(const char *dir, int n)
{
    char err[512] = "";
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, "test.example/log", g_ledger_kp, err,
                                                sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    made m[MAXE];
    sdm_ledger_item items[MAXE];
    for (int i = 0; i < n; i++)
        make_receipt(&m[i], (uint64_t)i, "alice", "model-a");
    uint64_t size;
    char *note = NULL;
    CU_ASSERT_EQUAL(append(log, m, (size_t)n, items, &size, &note, err, sizeof(err)), 0);
    free(note);
    for (int i = 0; i < n; i++)
        made_free(&m[i]);
    sdm_ledger_log_close(&log);
}

static void db_exec(const char *dir, const char *sql)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ledger.db", dir);
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    CU_ASSERT_EQUAL(rc, SQLITE_OK);
    sqlite3_free(msg);
    sqlite3_close(db);
}

static void test_refuses_what_was_not_signed(void)
{
    char err[512];
    sdm_ledger_log_t *log;

    /* one byte of one envelope changed (its stored leaf kept): refused, entry named */
    char *dir = new_dir();
    build_log(dir, 5);
    db_exec(dir, "UPDATE entries SET envelope = substr(envelope, 1, 40) || x'00' || "
                 "substr(envelope, 42) WHERE idx = 2");
    err[0] = 0;
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "entry 2"));
    sdm_ledger_log_close(&log);
    remove_dir(dir);

    /* the same change with the stored leaf rewritten to match: the root then differs from
     * the signed checkpoint */
    dir = new_dir();
    build_log(dir, 5);
    db_exec(dir, "UPDATE entries SET envelope = substr(envelope, 1, 40) || x'00' || "
                 "substr(envelope, 42) WHERE idx = 2");
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/ledger.db", dir);
        sqlite3 *db;
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT envelope FROM entries WHERE idx = 2", -1, &st, NULL);
        CU_ASSERT_EQUAL_FATAL(sqlite3_step(st), SQLITE_ROW);
        uint8_t leaf[H];
        sdm_merkle_leaf_hash(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), leaf);
        sqlite3_finalize(st);
        sqlite3_prepare_v2(db, "UPDATE entries SET leaf = ? WHERE idx = 2", -1, &st, NULL);
        sqlite3_bind_blob(st, 1, leaf, H, SQLITE_STATIC);
        CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    err[0] = 0;
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "do not contain the last signed checkpoint"));
    sdm_ledger_log_close(&log);
    remove_dir(dir);

    /* the last entry lost */
    dir = new_dir();
    build_log(dir, 5);
    db_exec(dir, "DELETE FROM touches WHERE idx = 4; DELETE FROM entries WHERE idx = 4");
    err[0] = 0;
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "do not contain the last signed checkpoint"));
    sdm_ledger_log_close(&log);
    remove_dir(dir);

    /* a hole in the indices */
    dir = new_dir();
    build_log(dir, 5);
    db_exec(dir, "DELETE FROM touches WHERE idx = 1; DELETE FROM entries WHERE idx = 1");
    err[0] = 0;
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "entry 1 is missing"));
    sdm_ledger_log_close(&log);

    /* another key: the last checkpoint is not this key's */
    err[0] = 0;
    char *dir2 = new_dir();
    build_log(dir2, 3);
    log = sdm_ledger_log_open(dir2, NULL, g_other_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not verify"));
    sdm_ledger_log_close(&log);

    /* another origin */
    err[0] = 0;
    log = sdm_ledger_log_open(dir2, "other.example/log", g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "origin"));
    sdm_ledger_log_close(&log);
    /* and the untouched log still opens */
    log = sdm_ledger_log_open(dir2, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(log);
    if (log)
        CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 3);
    sdm_ledger_log_close(&log);
    remove_dir(dir);
    remove_dir(dir2);
}

static void test_failed_commit_rolls_back(void)
{
    char *dir = new_dir(), err[512] = "";
    build_log(dir, 3);
    /* entries of model "poison" cannot be inserted: the group holding one fails */
    db_exec(dir, "CREATE TRIGGER poison BEFORE INSERT ON entries WHEN NEW.model = 'poison' "
                 "BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    char *before = sdm_ledger_log_checkpoint(log);
    made m[3];
    make_receipt(&m[0], 10, "alice", "model-a");
    make_receipt(&m[1], 11, "alice", "poison");
    make_receipt(&m[2], 12, "alice", "model-a");
    sdm_ledger_item items[3];
    uint64_t size = 0;
    char *note = NULL;
    CU_ASSERT_EQUAL(append(log, m, 2, items, &size, &note, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "poisoned"));
    CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 3);
    char *after = sdm_ledger_log_checkpoint(log);
    CU_ASSERT_STRING_EQUAL(before, after);
    free(after);
    /* the tree was rolled back too: the next append lands at index 3 and chains */
    made ok[2] = {m[0], m[2]};
    CU_ASSERT_EQUAL_FATAL(append(log, ok, 2, items, &size, &note, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(items[0].index, 3);
    CU_ASSERT_FALSE(items[0].duplicate);
    CU_ASSERT_EQUAL(items[1].index, 4);
    uint64_t s1, s2;
    uint8_t r1[H], r2[H], path[64][H];
    size_t n;
    CU_ASSERT_EQUAL(open_checkpoint(before, "test.example/log", g_ledger_kp, &s1, r1), 0);
    CU_ASSERT_EQUAL(open_checkpoint(note, "test.example/log", g_ledger_kp, &s2, r2), 0);
    CU_ASSERT_EQUAL(s2, 5);
    CU_ASSERT_EQUAL(sdm_ledger_consistency(log, s1, s2, path, &n), 0);
    CU_ASSERT_EQUAL(sdm_merkle_verify_consistency(s1, s2, r1, r2, (const uint8_t(*)[H])path, n), 0);
    free(before);
    free(note);
    sdm_ledger_log_close(&log);
    /* and what was committed is what reopens */
    log = sdm_ledger_log_open(dir, NULL, g_ledger_kp, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(log);
    if (log)
        CU_ASSERT_EQUAL(sdm_ledger_log_size(log), 5);
    sdm_ledger_log_close(&log);
    for (int i = 0; i < 3; i++)
        made_free(&m[i]);
    remove_dir(dir);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("ledger_log", suite_setup, suite_teardown);
    if (!s)
        return -1;
    if (!CU_add_test(s, "a new log: size 0, checkpoint of the empty tree", test_new_log) ||
        !CU_add_test(s, "group append, duplicates, proofs against the checkpoint, reopen",
                     test_append_duplicates_proofs) ||
        !CU_add_test(s, "history rows and windows", test_history_window) ||
        !CU_add_test(s, "start-up refuses a log that does not hold what was signed",
                     test_refuses_what_was_not_signed) ||
        !CU_add_test(s, "a failed commit rolls back entries and tree",
                     test_failed_commit_rolls_back))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
