/* outbox.c - the worker's durable outbox (outbox.h): a FIFO of envelopes in outbox.db.
 *
 * Table `entries` holds one row per envelope not yet delivered: pending while rejected_code is
 * NULL, rejected otherwise. seq is an AUTOINCREMENT rowid, so a number is never handed out
 * twice even after the newest rows were delivered and deleted (the forwarder uses it as the
 * request id on the wire). Table `counters` keeps `delivered` (and the highest ledger index
 * seen, for people reading the file), updated in the transaction that deletes the rows.
 *
 * Table `receipts` keeps, per model, how many of its batches have their receipts queued
 * (`next`: batches 0 .. next-1), raised in the transaction that queues a receipt. The worker
 * compares it with its store at start and before each contribute, so that a batch stored
 * while its receipt could not be queued (a failed write, or a crash between the two writes)
 * still gets its receipt queued. Files made before the table existed get it at open.
 *
 * Settling is one transaction for all the rows the forwarder has answers for, so a round of
 * up to 64 answers costs one fsync rather than 64: the guarantee is the same per row (settled
 * only after the ledger's answer, nothing settled half), and a kill -9 before the commit only
 * means that those rows are sent again, which the ledger answers as duplicates.
 */
#include "outbox.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "errmsg.h"
#include "sqlite_util.h"

#define OUTBOX_FILE "outbox.db"
#define SCHEMA_VERSION 1
/* "SDO1" (0x53444f31): not sediment.db's "SDM1", so neither file is taken for the other */
#define APPLICATION_ID 1396985649
#define STR_(x) #x
#define STR(x) STR_(x)

/* clang-format off */
static const char schema_sql[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE entries("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL CHECK(kind IN ('receipt', 'proof')),"
    " entry BLOB NOT NULL,"
    " queued_at INTEGER NOT NULL,"       /* unix ns */
    " rejected_code TEXT,"               /* NULL while pending */
    " rejected_message TEXT,"
    " rejected_at INTEGER);"
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters(name, value) VALUES('delivered', 0), ('last_index', -1);"
    "PRAGMA application_id = " STR(APPLICATION_ID) ";"
    "PRAGMA user_version = " STR(SCHEMA_VERSION) ";"
    "COMMIT;";
/* clang-format on */

/* added after version 1 without changing it: a file without the table gets it at open, and
 * an older program opening a newer file never looks at it */
static const char receipts_sql[] =
    "CREATE TABLE IF NOT EXISTS receipts(model TEXT PRIMARY KEY, next INTEGER NOT NULL)"
    " WITHOUT ROWID";

enum { ST_PUT, ST_PEEK, ST_DELETE, ST_DELIVERED, ST_REJECT, ST_MARK, ST_NEXT, ST_TRACK, ST_COUNT };

static const char *const stmt_sql[ST_COUNT] = {
    "INSERT INTO entries(kind, entry, queued_at) VALUES(?, ?, ?)",
    "SELECT seq, kind, entry FROM entries WHERE seq > ? AND rejected_code IS NULL"
    " ORDER BY seq LIMIT ?",
    "DELETE FROM entries WHERE seq = ? AND rejected_code IS NULL",
    "UPDATE counters SET value = CASE name WHEN 'delivered' THEN value + ?1"
    " ELSE max(value, ?2) END WHERE name IN ('delivered', 'last_index')",
    "UPDATE entries SET rejected_code = ?, rejected_message = ?, rejected_at = ?"
    " WHERE seq = ? AND rejected_code IS NULL",
    "INSERT INTO receipts(model, next) VALUES(?1, ?2)"
    " ON CONFLICT(model) DO UPDATE SET next = max(next, excluded.next)",
    "SELECT next FROM receipts WHERE model = ?",
    "INSERT OR IGNORE INTO receipts(model, next) VALUES(?, ?)",
};

struct sdm_outbox {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    pthread_mutex_t mu; /* every use of db */
    /* written under mu after each commit, read without it */
    _Atomic uint64_t pending, delivered, rejected;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* seq and counters are SQLite INTEGERs (int64); seq only grows from 1, so it fits. */
static sqlite3_int64 to_db(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

static int count_rows(sqlite3 *db, const char *sql, _Atomic uint64_t *out, char *err,
                      size_t err_len)
{
    sqlite3_int64 v;
    if (sdm_sqlite_int(db, sql, &v, err, err_len) != 0)
        return -1;
    atomic_store(out, v < 0 ? 0 : (uint64_t)v);
    return 0;
}

sdm_outbox_t *sdm_outbox_open(const char *dir, char *err, size_t err_len)
{
    struct stat sb;
    if (!dir || !dir[0]) {
        sdm_errf(err, err_len, "dir: empty path");
        return NULL;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        sdm_errf(err, err_len, "dir: %s is not a directory", dir);
        return NULL;
    }
    sdm_outbox_t *self = calloc(1, sizeof(*self));
    if (!self) {
        sdm_errf(err, err_len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    self->db = sdm_sqlite_open(dir, OUTBOX_FILE, schema_sql, APPLICATION_ID, SCHEMA_VERSION, err,
                               err_len);
    if (!self->db)
        goto fail;
    /* an operator's sqlite3 shell writing the file should delay us, not fail a reply */
    sqlite3_busy_timeout(self->db, 2000);
    if (sdm_sqlite_exec(self->db, receipts_sql, "adding the receipts table", err, err_len) != 0)
        goto fail;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(self->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->st[i],
                               NULL) != SQLITE_OK) {
            sdm_errf(err, err_len, OUTBOX_FILE ": preparing \"%.40s...\": %s", stmt_sql[i],
                     sqlite3_errmsg(self->db));
            goto fail;
        }
    }
    if (count_rows(self->db, "SELECT count(*) FROM entries WHERE rejected_code IS NULL",
                   &self->pending, err, err_len) ||
        count_rows(self->db, "SELECT count(*) FROM entries WHERE rejected_code IS NOT NULL",
                   &self->rejected, err, err_len) ||
        count_rows(self->db, "SELECT value FROM counters WHERE name = 'delivered'",
                   &self->delivered, err, err_len))
        goto fail;
    return self;
fail:
    sdm_outbox_close(&self);
    return NULL;
}

void sdm_outbox_close(sdm_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_outbox_t *self = *self_p;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(self->st[i]);
    sqlite3_close(self->db);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

/* Runs one prepared statement to completion. SQLITE_DONE or the failing code. */
static int step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Checks put's arguments: 0, or -1 with err naming the one at fault. */
static int check_put(const char *kind, const uint8_t *entry, size_t len, char *err,
                     size_t err_len)
{
    if (!kind || (strcmp(kind, "receipt") != 0 && strcmp(kind, "proof") != 0)) {
        sdm_errf(err, err_len, "kind: expected receipt or proof, got %s%s%s", kind ? "'" : "",
                 kind ? kind : "NULL", kind ? "'" : "");
        return -1;
    }
    if (!entry || len == 0) {
        sdm_errf(err, err_len, "entry: empty");
        return -1;
    }
    /* every envelope is ["sediment-signed-v1", body, key, sig]: a fixarray of 4 */
    if (entry[0] != 0x94) {
        sdm_errf(err, err_len, "entry: not a signed envelope (starts with 0x%02x, expected a "
                 "msgpack array of 4, 0x94)", entry[0]);
        return -1;
    }
    return 0;
}

/* Inserts the n rows (kind, entries[i], lens[i]) and, with model, raises its receipts mark
 * to next; one transaction, on disk when it returns. *seq gets the first row's number. Under
 * mu. 0, or -1 with err. */
static int put_locked(sdm_outbox_t *self, const char *kind, const uint8_t *const *entries,
                      const size_t *lens, size_t n, const char *model, uint64_t next,
                      uint64_t *seq, char *err, size_t err_len)
{
    const char *what = "BEGIN";
    sqlite3_int64 first = 0;
    size_t i = 0;
    int txn = model || n > 1;
    if (txn && sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    what = "inserting it";
    const sqlite3_int64 at = to_db(now_ns());
    for (i = 0; i < n; i++) {
        sqlite3_stmt *st = self->st[ST_PUT];
        sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, entries[i], lens[i], SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, at);
        /* alone: autocommit in WAL mode with synchronous=FULL, on disk when step returns */
        if (step_once(st) != SQLITE_DONE)
            goto fail;
        if (i == 0)
            first = sqlite3_last_insert_rowid(self->db);
    }
    i = 0;
    if (model) {
        what = "marking the model's receipts queued";
        sqlite3_stmt *st = self->st[ST_MARK];
        sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, to_db(next));
        if (step_once(st) != SQLITE_DONE)
            goto fail;
    }
    what = "COMMIT";
    if (txn && sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (seq)
        *seq = (uint64_t)first;
    atomic_fetch_add(&self->pending, n);
    return 0;
fail:
    if (n == 1)
        sdm_errf(err, err_len, OUTBOX_FILE ": queueing a %s of %zu bytes: %s%s%s", kind, lens[0],
                 txn ? what : "", txn ? ": " : "", sqlite3_errmsg(self->db));
    else
        sdm_errf(err, err_len, OUTBOX_FILE ": queueing %zu %ss (at the %zu%s): %s: %s", n, kind,
                 i + 1, i == 0 ? "st" : i == 1 ? "nd" : i == 2 ? "rd" : "th", what,
                 sqlite3_errmsg(self->db));
    if (!sqlite3_get_autocommit(self->db))
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int sdm_outbox_put(sdm_outbox_t *self, const char *kind, const uint8_t *entry, size_t len,
                   uint64_t *seq, char *err, size_t err_len)
{
    if (check_put(kind, entry, len, err, err_len) != 0)
        return -1;
    pthread_mutex_lock(&self->mu);
    int ret = put_locked(self, kind, &entry, &len, 1, NULL, 0, seq, err, err_len);
    pthread_mutex_unlock(&self->mu);
    return ret;
}

int sdm_outbox_put_receipts(sdm_outbox_t *self, const char *model, uint64_t first_batch,
                            const uint8_t *const *entries, const size_t *lens, size_t n,
                            uint64_t *seq, char *err, size_t err_len)
{
    if (!model || !model[0]) {
        sdm_errf(err, err_len, "model: empty");
        return -1;
    }
    if (n == 0 || !entries || !lens) {
        sdm_errf(err, err_len, "entries: none");
        return -1;
    }
    if (first_batch >= (uint64_t)INT64_MAX - n) {
        sdm_errf(err, err_len, "batch: %" PRIu64 " out of range", first_batch);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char why[200];
        if (check_put("receipt", entries[i], lens[i], why, sizeof(why)) != 0) {
            /* one receipt's error reads as put's; of several, it names the one */
            if (n == 1)
                sdm_errf(err, err_len, "%s", why);
            else
                sdm_errf(err, err_len, "entries[%zu]: %s", i, why);
            return -1;
        }
    }
    pthread_mutex_lock(&self->mu);
    int ret = put_locked(self, "receipt", entries, lens, n, model, first_batch + n, seq, err,
                         err_len);
    pthread_mutex_unlock(&self->mu);
    return ret;
}

int sdm_outbox_put_receipt(sdm_outbox_t *self, const char *model, uint64_t batch,
                           const uint8_t *entry, size_t len, uint64_t *seq, char *err,
                           size_t err_len)
{
    return sdm_outbox_put_receipts(self, model, batch, &entry, &len, 1, seq, err, err_len);
}

int sdm_outbox_receipts_next(sdm_outbox_t *self, const char *model, uint64_t *next, char *err,
                             size_t err_len)
{
    pthread_mutex_lock(&self->mu);
    sqlite3_stmt *st = self->st[ST_NEXT];
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        *next = v < 0 ? 0 : (uint64_t)v;
        ret = 1;
    } else if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, OUTBOX_FILE ": reading the receipts mark of model %s: %s", model,
                 sqlite3_errmsg(self->db));
        ret = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&self->mu);
    return ret;
}

int sdm_outbox_track(sdm_outbox_t *self, const char *model, uint64_t next, char *err,
                     size_t err_len)
{
    pthread_mutex_lock(&self->mu);
    sqlite3_stmt *st = self->st[ST_TRACK];
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, to_db(next));
    int ret = 0;
    if (step_once(st) != SQLITE_DONE) {
        sdm_errf(err, err_len, OUTBOX_FILE ": tracking the receipts of model %s: %s", model,
                 sqlite3_errmsg(self->db));
        ret = -1;
    }
    pthread_mutex_unlock(&self->mu);
    return ret;
}

int sdm_outbox_peek(sdm_outbox_t *self, uint64_t after_seq, size_t max, sdm_outbox_row_cb cb,
                    void *ctx, char *err, size_t err_len)
{
    if (!cb) {
        sdm_errf(err, err_len, "cb: a callback is required");
        return -1;
    }
    if (max == 0 || max > INT32_MAX) {
        sdm_errf(err, err_len, "max: %zu, expected 1 to %d", max, INT32_MAX);
        return -1;
    }
    pthread_mutex_lock(&self->mu);
    sqlite3_stmt *st = self->st[ST_PEEK];
    sqlite3_bind_int64(st, 1, to_db(after_seq));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int seen = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sdm_outbox_row row = {
            .seq = (uint64_t)sqlite3_column_int64(st, 0),
            .kind = (const char *)sqlite3_column_text(st, 1),
            .entry = sqlite3_column_blob(st, 2),
            .len = (size_t)sqlite3_column_bytes(st, 2),
        };
        if (!row.kind || !row.entry) {
            rc = SQLITE_NOMEM; /* the text or blob could not be materialised */
            break;
        }
        seen++;
        if (cb(ctx, &row) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, OUTBOX_FILE ": reading pending rows after %" PRIu64 ": %s",
                 after_seq, rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(self->db));
        seen = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&self->mu);
    return seen;
}

int sdm_outbox_settle(sdm_outbox_t *self, sdm_outbox_settlement *items, size_t n, char *err,
                      size_t err_len)
{
    if (n && !items) {
        sdm_errf(err, err_len, "items: NULL with n = %zu", n);
        return -1;
    }
    if (n > INT32_MAX) {
        sdm_errf(err, err_len, "n: %zu rows, at most %d in one call", n, INT32_MAX);
        return -1;
    }
    /* the whole call is checked before anything is written */
    for (size_t i = 0; i < n; i++) {
        items[i].settled = 0;
        if (items[i].code && !items[i].code[0]) {
            sdm_errf(err, err_len, "items[%zu].code: empty (NULL for a delivered row)", i);
            return -1;
        }
    }
    if (n == 0)
        return 0;
    pthread_mutex_lock(&self->mu);
    int ret = -1;
    uint64_t done = 0, rejected = 0, last_index = 0;
    const sqlite3_int64 at = to_db(now_ns());
    const char *what = "BEGIN";
    size_t i = n; /* < n while a row's statement is the one failing */
    if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    for (i = 0; i < n; i++) {
        sdm_outbox_settlement *it = &items[i];
        sqlite3_stmt *st;
        if (it->code) {
            what = "marking it rejected";
            st = self->st[ST_REJECT];
            sqlite3_bind_text(st, 1, it->code, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, it->message ? it->message : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, at);
            sqlite3_bind_int64(st, 4, to_db(it->seq));
        } else {
            what = "deleting the delivered row";
            st = self->st[ST_DELETE];
            sqlite3_bind_int64(st, 1, to_db(it->seq));
        }
        if (step_once(st) != SQLITE_DONE)
            goto out;
        it->settled = sqlite3_changes(self->db) ? 1 : 0;
        if (it->settled && it->code) {
            rejected++;
        } else if (it->settled) {
            if (done == 0 || it->index > last_index)
                last_index = it->index;
            done++;
        }
    }
    i = n;
    if (done) {
        what = "counting them delivered";
        sqlite3_bind_int64(self->st[ST_DELIVERED], 1, (sqlite3_int64)done);
        sqlite3_bind_int64(self->st[ST_DELIVERED], 2, to_db(last_index));
        if (step_once(self->st[ST_DELIVERED]) != SQLITE_DONE)
            goto out;
    }
    what = "COMMIT";
    /* WAL with synchronous=FULL: on disk when COMMIT returns; the one fsync of the round */
    if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    ret = (int)(done + rejected);
    atomic_fetch_sub(&self->pending, done + rejected);
    atomic_fetch_add(&self->delivered, done);
    atomic_fetch_add(&self->rejected, rejected);
out:
    if (ret < 0) {
        if (i < n)
            sdm_errf(err, err_len, OUTBOX_FILE ": settling row %" PRIu64 " (%zu of %zu): %s: %s",
                     items[i].seq, i + 1, n, what, sqlite3_errmsg(self->db));
        else
            sdm_errf(err, err_len, OUTBOX_FILE ": settling %zu rows: %s: %s", n, what,
                     sqlite3_errmsg(self->db));
        if (!sqlite3_get_autocommit(self->db))
            sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        for (size_t k = 0; k < n; k++)
            items[k].settled = 0;
    }
    pthread_mutex_unlock(&self->mu);
    return ret;
}

int sdm_outbox_done(sdm_outbox_t *self, uint64_t seq, uint64_t index, char *err,
                    size_t err_len)
{
    sdm_outbox_settlement it = {.seq = seq, .index = index};
    return sdm_outbox_settle(self, &it, 1, err, err_len);
}

int sdm_outbox_reject(sdm_outbox_t *self, uint64_t seq, const char *code, const char *message,
                      char *err, size_t err_len)
{
    if (!code || !code[0]) {
        sdm_errf(err, err_len, "code: empty");
        return -1;
    }
    sdm_outbox_settlement it = {.seq = seq, .code = code, .message = message};
    return sdm_outbox_settle(self, &it, 1, err, err_len);
}

void sdm_outbox_get_counts(const sdm_outbox_t *self, sdm_outbox_counts *out)
{
    /* the atomics are only read; the cast drops const for C11's atomic_load signature */
    sdm_outbox_t *s = (sdm_outbox_t *)self;
    out->pending = atomic_load(&s->pending);
    out->delivered = atomic_load(&s->delivered);
    out->rejected = atomic_load(&s->rejected);
}

int sdm_outbox_rejected(sdm_outbox_t *self,
                        int (*cb)(void *ctx, const sdm_outbox_rejected_row *row), void *ctx,
                        char *err, size_t err_len)
{
    pthread_mutex_lock(&self->mu);
    sqlite3_stmt *st = NULL;
    int seen = 0, rc = sqlite3_prepare_v2(
                      self->db,
                      "SELECT seq, kind, rejected_code, rejected_message, rejected_at,"
                      " length(entry) FROM entries WHERE rejected_code IS NOT NULL ORDER BY seq",
                      -1, &st, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sdm_outbox_rejected_row row = {
                .seq = (uint64_t)sqlite3_column_int64(st, 0),
                .kind = (const char *)sqlite3_column_text(st, 1),
                .code = (const char *)sqlite3_column_text(st, 2),
                .message = (const char *)sqlite3_column_text(st, 3),
                .rejected_at = (uint64_t)sqlite3_column_int64(st, 4),
                .len = (size_t)sqlite3_column_int64(st, 5),
            };
            if (!row.kind || !row.code) {
                rc = SQLITE_NOMEM;
                break;
            }
            if (!row.message)
                row.message = "";
            seen++;
            if (cb(ctx, &row) != 0) {
                rc = SQLITE_DONE;
                break;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, OUTBOX_FILE ": reading the rejected rows: %s",
                 rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(self->db));
        seen = -1;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&self->mu);
    return seen;
}

int64_t sdm_outbox_requeue(sdm_outbox_t *self, const char *code, char *err, size_t err_len)
{
    if (code && !code[0]) {
        sdm_errf(err, err_len, "code: empty (NULL for every rejected row)");
        return -1;
    }
    pthread_mutex_lock(&self->mu);
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(self->db,
                           "UPDATE entries SET rejected_code = NULL, rejected_message = NULL,"
                           " rejected_at = NULL WHERE rejected_code IS NOT NULL"
                           " AND (?1 IS NULL OR rejected_code = ?1)",
                           -1, &st, NULL) == SQLITE_OK) {
        if (code)
            sqlite3_bind_text(st, 1, code, -1, SQLITE_STATIC);
        /* one statement in autocommit: all of the rows or none, on disk when it returns */
        if (sqlite3_step(st) == SQLITE_DONE)
            n = sqlite3_changes(self->db);
    }
    if (n < 0) {
        sdm_errf(err, err_len, OUTBOX_FILE ": requeueing the rejected rows: %s",
                 sqlite3_errmsg(self->db));
    } else {
        atomic_fetch_add(&self->pending, (uint64_t)n);
        atomic_fetch_sub(&self->rejected, (uint64_t)n);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&self->mu);
    return n;
}
