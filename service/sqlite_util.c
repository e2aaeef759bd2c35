/* sqlite_util.c - opening the project's SQLite files (sqlite_util.h). */
#include "sqlite_util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "fileio.h"

static const char *db_name(sqlite3 *db)
{
    const char *path = sqlite3_db_filename(db, "main");
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : (path ? path : "database");
}

int sdm_sqlite_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t err_len)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sdm_errf(err, err_len, "%s: %s: %s", db_name(db), what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int sdm_sqlite_int(sqlite3 *db, const char *sql, sqlite3_int64 *out, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sdm_errf(err, err_len, "%s: %s: %s", db_name(db), sql, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int setup(sqlite3 *db, const char *dir, const char *name, const char *schema_sql,
                 int app_id, int version, char *err, size_t err_len)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        sdm_errf(err, err_len, "%s: cannot switch to WAL journal mode (%s)", name,
                 mode ? mode : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    if (sdm_sqlite_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", "pragmas", err,
                        err_len))
        return -1;
    sqlite3_int64 have_version, have_app, tables;
    if (sdm_sqlite_int(db, "PRAGMA user_version", &have_version, err, err_len) ||
        sdm_sqlite_int(db, "PRAGMA application_id", &have_app, err, err_len) ||
        sdm_sqlite_int(db, "SELECT count(*) FROM sqlite_master", &tables, err, err_len))
        return -1;
    if (have_version == 0) {
        if (tables != 0 || have_app != 0) {
            sdm_errf(err, err_len,
                     "%s: not a sediment file (user_version 0, %lld schema objects, "
                     "application_id %lld)",
                     name, (long long)tables, (long long)have_app);
            return -1;
        }
        if (sdm_sqlite_exec(db, schema_sql, "creating the schema", err, err_len)) {
            if (!sqlite3_get_autocommit(db))
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        /* the database and its WAL are new entries in the directory */
        if (sdm_fsync_dir(dir) != 0) {
            sdm_errf(err, err_len, "%s: fsync: %s", dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (have_version != version) {
        sdm_errf(err, err_len, "%s: schema version %lld, this build reads version %d", name,
                 (long long)have_version, version);
        return -1;
    }
    if (have_app != app_id) {
        sdm_errf(err, err_len, "%s: application_id %lld is not the expected %d", name,
                 (long long)have_app, app_id);
        return -1;
    }
    return 0;
}

sqlite3 *sdm_sqlite_open(const char *dir, const char *name, const char *schema_sql, int app_id,
                         int version, char *err, size_t err_len)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        sdm_errf(err, err_len, "%s/%s: path too long", dir, name);
        return NULL;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        sdm_errf(err, err_len, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    if (setup(db, dir, name, schema_sql, app_id, version, err, err_len) != 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}
