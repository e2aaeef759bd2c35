/* ledger_log.c - the ledger's durable, verified append-only log (ledger_log.h). */
#include "ledger_log.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "note.h"
#include "sqlite_util.h"

#define DB_NAME "ledger.db"
#define APPLICATION_ID 1396985164 /* "SDML" */
#define SCHEMA_VERSION 1

/* clang-format off */
static const char schema_sql[] =
    "BEGIN IMMEDIATE;"
    /* every entry; idx is its leaf index; leaf = SHA-256(0x00 || envelope) */
    "CREATE TABLE entries("
    " idx INTEGER PRIMARY KEY,"
    " leaf BLOB NOT NULL UNIQUE CHECK(length(leaf) = 32),"
    " envelope BLOB NOT NULL,"
    " type INTEGER NOT NULL,"      /* sdm_body_type */
    " issued_at INTEGER NOT NULL,"
    " model TEXT NOT NULL,"
    " worker BLOB NOT NULL CHECK(length(worker) = 32));"
    /* history: one row per (entry, contributor, shard) */
    "CREATE TABLE touches("
    " idx INTEGER NOT NULL REFERENCES entries(idx),"
    " contributor TEXT NOT NULL,"
    " issued_at INTEGER NOT NULL,"
    " shard TEXT NOT NULL,"
    " score REAL," /* NULL for receipts */
    " share REAL);"
    "CREATE INDEX touches_by_contributor ON touches(contributor, issued_at, idx);"
    /* rewards: one row per (attribution proof, contributor), summed over its queries */
    "CREATE TABLE credits("
    " idx INTEGER NOT NULL REFERENCES entries(idx),"
    " contributor TEXT NOT NULL,"
    " issued_at INTEGER NOT NULL,"
    " model TEXT NOT NULL,"
    " score REAL NOT NULL,"
    " share REAL NOT NULL);"
    "CREATE INDEX credits_by_time ON credits(issued_at, idx);"
    /* origin and the last signed checkpoint */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;"
    "PRAGMA application_id = 1396985164;"
    "PRAGMA user_version = 1;"
    "COMMIT;";
/* clang-format on */

struct sdm_ledger_log {
    char *dir;
    char *origin;
    const sdm_keypair *kp;
    sqlite3 *db; /* writer */
    sqlite3_stmt *find_leaf, *ins_entry, *ins_touch, *ins_credit, *put_meta;

    pthread_rwlock_t tree_rw; /* tree's arrays (appends may move them) */
    sdm_merkle_t *tree;       /* may run ahead of `committed` inside an append */
    _Atomic uint64_t committed;

    pthread_mutex_t ck_mu;
    char *checkpoint; /* latest signed note */
};

struct sdm_ledger_reader {
    sdm_ledger_log_t *log;
    sqlite3 *db;
};

static void db_err(sqlite3 *db, const char *what, char *err, size_t err_len)
{
    sdm_errf(err, err_len, DB_NAME ": %s: %s", what, sqlite3_errmsg(db));
}

/* ---- checkpoints ---------------------------------------------------------------------- */

/* Signs the checkpoint of the first size leaves; *note malloc'd. */
static int sign_checkpoint(sdm_ledger_log_t *self, uint64_t size, char **note, char *err,
                           size_t err_len)
{
    uint8_t root[SDM_HASH_LEN];
    char *text = NULL;
    size_t note_len;
    pthread_rwlock_rdlock(&self->tree_rw);
    int rc = sdm_merkle_root(self->tree, size, root);
    pthread_rwlock_unlock(&self->tree_rw);
    if (rc != 0) {
        sdm_errf(err, err_len, "checkpoint: size %" PRIu64 " beyond the tree", size);
        return -1;
    }
    if (sdm_checkpoint_format(self->origin, size, root, &text) != SDM_NOTE_OK) {
        sdm_errf(err, err_len, "checkpoint: cannot format (origin \"%s\")", self->origin);
        return -1;
    }
    sdm_note_status st =
        sdm_note_sign(self->kp, self->origin, text, strlen(text), note, &note_len, err, err_len);
    free(text);
    return st == SDM_NOTE_OK ? 0 : -1;
}

static int put_meta(sdm_ledger_log_t *self, const char *key, const char *value, char *err,
                    size_t err_len)
{
    sqlite3_stmt *st = self->put_meta;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_err(self->db, "storing the checkpoint", err, err_len);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

/* meta[key] as a malloc'd string, NULL when absent (then *found = 0). */
static int get_meta(sqlite3 *db, const char *key, char **value, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    *value = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        db_err(db, "reading meta", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), out = 0;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *value = strdup(v ? v : "");
        if (!*value) {
            sdm_errf(err, err_len, "out of memory");
            out = -1;
        }
    } else if (rc != SQLITE_DONE) {
        db_err(db, "reading meta", err, err_len);
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

/* ---- open: rebuild the tree from the entries and check it against the last checkpoint -- */

static int rebuild_tree(sdm_ledger_log_t *self, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db, "SELECT idx, envelope, leaf FROM entries ORDER BY idx", -1,
                           &st, NULL) != SQLITE_OK) {
        db_err(self->db, "reading entries", err, err_len);
        return -1;
    }
    uint64_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint8_t leaf[SDM_HASH_LEN];
        const void *env = sqlite3_column_blob(st, 1);
        size_t env_len = (size_t)sqlite3_column_bytes(st, 1);
        const void *stored = sqlite3_column_blob(st, 2);
        if ((uint64_t)sqlite3_column_int64(st, 0) != n) {
            sdm_errf(err, err_len, DB_NAME ": entry %" PRIu64 " is missing", n);
            goto fail;
        }
        /* the tree is derived from the envelopes themselves, not from stored hashes */
        sdm_merkle_leaf_hash(env, env_len, leaf);
        if (sqlite3_column_bytes(st, 2) != SDM_HASH_LEN ||
            memcmp(leaf, stored, SDM_HASH_LEN) != 0) {
            sdm_errf(err, err_len, DB_NAME ": entry %" PRIu64 ": its leaf hash does not match "
                     "its envelope", n);
            goto fail;
        }
        if (sdm_merkle_append(self->tree, leaf) != 0) {
            sdm_errf(err, err_len, "rebuilding the tree: out of memory at %" PRIu64, n);
            goto fail;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        db_err(self->db, "reading entries", err, err_len);
        goto fail;
    }
    sqlite3_finalize(st);
    atomic_store(&self->committed, n);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

/* The stored checkpoint must be ours and contained in the rebuilt tree. */
static int check_last_checkpoint(sdm_ledger_log_t *self, const char *note, char *err,
                                 size_t err_len)
{
    char why[256] = "";
    sdm_note_verifier v;
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "%s", self->origin);
    memcpy(v.pk, self->kp->pk, SDM_PK_LEN);
    sdm_note_keyid(self->origin, self->kp->pk, v.keyid);
    size_t text_len = 0;
    if (sdm_note_verify(note, strlen(note), &v, 1, &text_len, why, sizeof(why)) != SDM_NOTE_OK) {
        sdm_errf(err, err_len, DB_NAME ": the last checkpoint does not verify with this "
                 "ledger's key and origin (%s): refusing to sign anything", why);
        return -1;
    }
    char *origin = NULL;
    uint64_t size;
    uint8_t root[SDM_HASH_LEN], have[SDM_HASH_LEN];
    if (sdm_checkpoint_parse(note, text_len, &origin, &size, root, why, sizeof(why)) !=
        SDM_NOTE_OK) {
        sdm_errf(err, err_len, DB_NAME ": the last checkpoint: %s", why);
        return -1;
    }
    free(origin);
    uint64_t n = atomic_load(&self->committed);
    if (size > n || sdm_merkle_root(self->tree, size, have) != 0 ||
        memcmp(have, root, SDM_HASH_LEN) != 0) {
        sdm_errf(err, err_len, DB_NAME ": the entries (%" PRIu64 ") do not contain the last "
                 "signed checkpoint (size %" PRIu64 "): refusing to sign anything", n, size);
        return -1;
    }
    return 0;
}

static int prepare_all(sdm_ledger_log_t *self, char *err, size_t err_len)
{
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } q[] = {
        {&self->find_leaf, "SELECT idx FROM entries WHERE leaf = ?"},
        {&self->ins_entry, "INSERT INTO entries(idx, leaf, envelope, type, issued_at, model, "
                           "worker) VALUES(?, ?, ?, ?, ?, ?, ?)"},
        {&self->ins_touch, "INSERT INTO touches(idx, contributor, issued_at, shard, score, "
                           "share) VALUES(?, ?, ?, ?, ?, ?)"},
        {&self->ins_credit, "INSERT INTO credits(idx, contributor, issued_at, model, score, "
                            "share) VALUES(?, ?, ?, ?, ?, ?)"},
        {&self->put_meta, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"},
    };
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
        if (sqlite3_prepare_v3(self->db, q[i].sql, -1, SQLITE_PREPARE_PERSISTENT, q[i].st,
                               NULL) != SQLITE_OK) {
            db_err(self->db, "preparing statements", err, err_len);
            return -1;
        }
    return 0;
}

sdm_ledger_log_t *sdm_ledger_log_open(const char *dir, const char *origin, const sdm_keypair *kp,
                                      char *err, size_t err_len)
{
    sdm_ledger_log_t *self = calloc(1, sizeof(*self));
    if (!self || !(self->dir = strdup(dir)) || !(self->tree = sdm_merkle_new())) {
        sdm_errf(err, err_len, "out of memory");
        if (self) {
            free(self->dir);
            free(self);
        }
        return NULL;
    }
    self->kp = kp;
    pthread_rwlock_init(&self->tree_rw, NULL);
    pthread_mutex_init(&self->ck_mu, NULL);
    char *stored_origin = NULL, *note = NULL;

    self->db = sdm_sqlite_open(dir, DB_NAME, schema_sql, APPLICATION_ID, SCHEMA_VERSION, err,
                               err_len);
    if (!self->db || prepare_all(self, err, err_len) != 0 ||
        get_meta(self->db, "origin", &stored_origin, err, err_len) != 0)
        goto fail;

    if (stored_origin && origin && strcmp(stored_origin, origin) != 0) {
        sdm_errf(err, err_len, "--origin %s: this ledger's origin is \"%s\" (a log keeps its "
                 "origin, or its checkpoints stop chaining)", origin, stored_origin);
        goto fail;
    }
    if (stored_origin) {
        self->origin = stored_origin;
        stored_origin = NULL;
    } else if (origin) {
        self->origin = strdup(origin);
    } else {
        char hex[2 * SDM_PK_LEN + 1], name[64];
        sdm_hex(kp->pk, SDM_PK_LEN, hex);
        snprintf(name, sizeof(name), "sediment-ledger-%.16s", hex);
        self->origin = strdup(name);
    }
    if (!self->origin) {
        sdm_errf(err, err_len, "out of memory");
        goto fail;
    }
    if (!sdm_note_name_valid(self->origin)) {
        sdm_errf(err, err_len, "--origin \"%s\": not a valid key name (1 to %d bytes, no space, "
                 "control character or '+')", self->origin, SDM_NOTE_NAME_MAX);
        goto fail;
    }
    if (rebuild_tree(self, err, err_len) != 0 ||
        get_meta(self->db, "checkpoint", &note, err, err_len) != 0)
        goto fail;
    if (note && check_last_checkpoint(self, note, err, err_len) != 0)
        goto fail;
    free(note);
    note = NULL;
    /* sign the current size (a new log: size 0) and keep origin and checkpoint together */
    if (sign_checkpoint(self, atomic_load(&self->committed), &note, err, err_len) != 0 ||
        sdm_sqlite_exec(self->db, "BEGIN IMMEDIATE", "begin", err, err_len) != 0)
        goto fail;
    if (put_meta(self, "origin", self->origin, err, err_len) != 0 ||
        put_meta(self, "checkpoint", note, err, err_len) != 0 ||
        sdm_sqlite_exec(self->db, "COMMIT", "commit", err, err_len) != 0) {
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    self->checkpoint = note;
    return self;
fail:
    free(stored_origin);
    free(note);
    sdm_ledger_log_close(&self);
    return NULL;
}

void sdm_ledger_log_close(sdm_ledger_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_ledger_log_t *self = *self_p;
    sqlite3_stmt *sts[] = {self->find_leaf, self->ins_entry, self->ins_touch, self->ins_credit,
                           self->put_meta};
    for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
        sqlite3_finalize(sts[i]);
    sqlite3_close(self->db);
    sdm_merkle_destroy(&self->tree);
    pthread_rwlock_destroy(&self->tree_rw);
    pthread_mutex_destroy(&self->ck_mu);
    free(self->checkpoint);
    free(self->origin);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

const char *sdm_ledger_log_origin(const sdm_ledger_log_t *self)
{
    return self->origin;
}

uint64_t sdm_ledger_log_size(sdm_ledger_log_t *self)
{
    return atomic_load(&self->committed);
}

char *sdm_ledger_log_checkpoint(sdm_ledger_log_t *self)
{
    pthread_mutex_lock(&self->ck_mu);
    char *s = strdup(self->checkpoint);
    pthread_mutex_unlock(&self->ck_mu);
    return s;
}

/* ---- append --------------------------------------------------------------------------- */

/* The index of an entry already stored with this leaf: 1 found, 0 not, -1 error. */
static int find_leaf(sdm_ledger_log_t *self, const uint8_t leaf[SDM_HASH_LEN], uint64_t *index)
{
    sqlite3_stmt *st = self->find_leaf;
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 1, leaf, SDM_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(st), out = 0;
    if (rc == SQLITE_ROW) {
        *index = (uint64_t)sqlite3_column_int64(st, 0);
        out = 1;
    } else if (rc != SQLITE_DONE) {
        out = -1;
    }
    sqlite3_reset(st);
    return out;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Inserts one new entry and its index rows. */
static int insert_entry(sdm_ledger_log_t *self, const sdm_ledger_item *it, uint64_t index)
{
    const sdm_body *b = it->body;
    sqlite3_int64 idx = (sqlite3_int64)index, at = (sqlite3_int64)b->issued_at;
    sqlite3_stmt *st = self->ins_entry;
    sqlite3_bind_int64(st, 1, idx);
    sqlite3_bind_blob(st, 2, it->leaf, SDM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, it->entry, (int)it->entry_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)b->type);
    sqlite3_bind_int64(st, 5, at);
    sqlite3_bind_text(st, 6, b->model, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, b->worker, SDM_PK_LEN, SQLITE_STATIC);
    if (step_done(st) != 0)
        return -1;
    for (size_t i = 0; i < b->n_touches; i++) {
        const sdm_body_touch *t = &b->touches[i];
        st = self->ins_touch;
        sqlite3_bind_int64(st, 1, idx);
        sqlite3_bind_text(st, 2, t->contributor, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, at);
        sqlite3_bind_text(st, 4, t->shard ? t->shard : "", -1, SQLITE_STATIC);
        if (b->type == SDM_BODY_PROOF) {
            sqlite3_bind_double(st, 5, t->score);
            sqlite3_bind_double(st, 6, t->share);
        } else {
            sqlite3_bind_null(st, 5);
            sqlite3_bind_null(st, 6);
        }
        if (step_done(st) != 0)
            return -1;
    }
    for (size_t i = 0; i < b->n_contributors; i++) {
        const sdm_body_touch *t = &b->contributors[i];
        st = self->ins_credit;
        sqlite3_bind_int64(st, 1, idx);
        sqlite3_bind_text(st, 2, t->contributor, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, at);
        sqlite3_bind_text(st, 4, b->model, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 5, t->score);
        sqlite3_bind_double(st, 6, t->share);
        if (step_done(st) != 0)
            return -1;
    }
    return 0;
}

int sdm_ledger_log_append(sdm_ledger_log_t *self, sdm_ledger_item *items, size_t n,
                          uint64_t *size, char **checkpoint, char *err, size_t err_len)
{
    uint64_t start = atomic_load(&self->committed), next = start;
    char *note = NULL;
    if (sdm_sqlite_exec(self->db, "BEGIN IMMEDIATE", "begin", err, err_len) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sdm_ledger_item *it = &items[i];
        sdm_merkle_leaf_hash(it->entry, it->entry_len, it->leaf);
        int found = find_leaf(self, it->leaf, &it->index);
        if (found < 0) {
            db_err(self->db, "looking up an entry", err, err_len);
            goto fail;
        }
        it->duplicate = found;
        if (found)
            continue;
        if (insert_entry(self, it, next) != 0) {
            db_err(self->db, "inserting an entry", err, err_len);
            goto fail;
        }
        pthread_rwlock_wrlock(&self->tree_rw);
        int rc = sdm_merkle_append(self->tree, it->leaf);
        pthread_rwlock_unlock(&self->tree_rw);
        if (rc != 0) {
            sdm_errf(err, err_len, "the tree: out of memory");
            goto fail;
        }
        it->index = next++;
    }
    if (sign_checkpoint(self, next, &note, err, err_len) != 0 ||
        put_meta(self, "checkpoint", note, err, err_len) != 0)
        goto fail;
    /* the one fsync of the group */
    if (sdm_sqlite_exec(self->db, "COMMIT", "commit", err, err_len) != 0)
        goto fail;
    atomic_store(&self->committed, next);
    pthread_mutex_lock(&self->ck_mu);
    free(self->checkpoint);
    self->checkpoint = note;
    pthread_mutex_unlock(&self->ck_mu);
    *size = next;
    *checkpoint = strdup(note);
    if (!*checkpoint) {
        /* committed: the caller can still answer with the index and fetch the checkpoint */
        sdm_errf(err, err_len, "out of memory");
    }
    return 0;
fail:
    if (!sqlite3_get_autocommit(self->db))
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_rwlock_wrlock(&self->tree_rw);
    sdm_merkle_truncate(self->tree, start);
    pthread_rwlock_unlock(&self->tree_rw);
    free(note);
    return -1;
}

/* ---- readers -------------------------------------------------------------------------- */

sdm_ledger_reader_t *sdm_ledger_reader_open(sdm_ledger_log_t *log, char *err, size_t err_len)
{
    sdm_ledger_reader_t *r = calloc(1, sizeof(*r));
    if (!r) {
        sdm_errf(err, err_len, "out of memory");
        return NULL;
    }
    r->log = log;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", log->dir, DB_NAME);
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sdm_errf(err, err_len, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "cannot open");
        sqlite3_close(r->db);
        free(r);
        return NULL;
    }
    sqlite3_busy_timeout(r->db, 5000);
    return r;
}

void sdm_ledger_reader_close(sdm_ledger_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sqlite3_close((*self_p)->db);
    free(*self_p);
    *self_p = NULL;
}

int sdm_ledger_entry(sdm_ledger_reader_t *r, uint64_t index, uint8_t **entry, size_t *len,
                     char *err, size_t err_len)
{
    if (index >= sdm_ledger_log_size(r->log) || index > INT64_MAX)
        return 1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT envelope FROM entries WHERE idx = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        db_err(r->db, "reading an entry", err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
    int rc = sqlite3_step(st), out = 0;
    if (rc == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *entry = malloc(*len ? *len : 1);
        if (!*entry) {
            sdm_errf(err, err_len, "out of memory");
            out = -1;
        } else {
            memcpy(*entry, sqlite3_column_blob(st, 0), *len);
        }
    } else {
        /* below the committed size an entry is always there */
        db_err(r->db, "reading an entry", err, err_len);
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

int sdm_ledger_inclusion(sdm_ledger_log_t *log, uint64_t index, uint64_t size,
                         uint8_t leaf[SDM_HASH_LEN], uint8_t path[][SDM_HASH_LEN],
                         size_t *n_path)
{
    if (size > sdm_ledger_log_size(log) || index >= size)
        return 1;
    pthread_rwlock_rdlock(&log->tree_rw);
    int rc = sdm_merkle_leaf(log->tree, index, leaf) == 0 &&
                     sdm_merkle_inclusion(log->tree, index, size, path, n_path) == 0
                 ? 0
                 : -1;
    pthread_rwlock_unlock(&log->tree_rw);
    return rc;
}

int sdm_ledger_consistency(sdm_ledger_log_t *log, uint64_t from, uint64_t to,
                           uint8_t path[][SDM_HASH_LEN], size_t *n_path)
{
    if (to > sdm_ledger_log_size(log) || from > to)
        return 1;
    pthread_rwlock_rdlock(&log->tree_rw);
    int rc = sdm_merkle_consistency(log->tree, from, to, path, n_path);
    pthread_rwlock_unlock(&log->tree_rw);
    return rc;
}

static sqlite3_int64 clamp_i64(uint64_t v)
{
    return v > INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

int sdm_ledger_history(sdm_ledger_reader_t *r, const char *contributor, uint64_t since,
                       uint64_t until, uint64_t limit,
                       int (*fn)(void *ctx, const sdm_ledger_touch *t), void *ctx, char *err,
                       size_t err_len)
{
    sqlite3_stmt *st = NULL;
    /* only committed entries: idx below the size read now */
    if (sqlite3_prepare_v2(r->db,
                           "SELECT t.idx, t.issued_at, e.type, e.model, t.shard, t.score, "
                           "t.share FROM touches t JOIN entries e ON e.idx = t.idx "
                           "WHERE t.contributor = ? AND t.issued_at >= ? AND t.issued_at < ? "
                           "AND t.idx < ? ORDER BY t.issued_at, t.idx, t.rowid LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        db_err(r->db, "history", err, err_len);
        return -1;
    }
    sqlite3_bind_text(st, 1, contributor, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clamp_i64(since));
    sqlite3_bind_int64(st, 3, clamp_i64(until));
    sqlite3_bind_int64(st, 4, clamp_i64(sdm_ledger_log_size(r->log)));
    sqlite3_bind_int64(st, 5, clamp_i64(limit));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sdm_ledger_touch t = {
            .index = (uint64_t)sqlite3_column_int64(st, 0),
            .issued_at = (uint64_t)sqlite3_column_int64(st, 1),
            .type = (sdm_body_type)sqlite3_column_int(st, 2),
            .model = (const char *)sqlite3_column_text(st, 3),
            .shard = (const char *)sqlite3_column_text(st, 4),
            .score = sqlite3_column_type(st, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 5),
            .share = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6),
        };
        if (fn(ctx, &t) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        db_err(r->db, "history", err, err_len);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int sdm_ledger_credits(sdm_ledger_reader_t *r, const char *model, uint64_t since,
                       uint64_t until,
                       int (*fn)(void *ctx, const char *contributor, double score, double share),
                       void *ctx, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT contributor, score, share FROM credits "
                           "WHERE issued_at >= ? AND issued_at < ? AND idx < ? "
                           "AND (?4 IS NULL OR model = ?4) ORDER BY idx, rowid",
                           -1, &st, NULL) != SQLITE_OK) {
        db_err(r->db, "rewards", err, err_len);
        return -1;
    }
    sqlite3_bind_int64(st, 1, clamp_i64(since));
    sqlite3_bind_int64(st, 2, clamp_i64(until));
    sqlite3_bind_int64(st, 3, clamp_i64(sdm_ledger_log_size(r->log)));
    if (model)
        sqlite3_bind_text(st, 4, model, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_double(st, 1),
               sqlite3_column_double(st, 2)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        db_err(r->db, "rewards", err, err_len);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}
