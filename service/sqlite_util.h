/* sqlite_util.h - opening the project's SQLite files the one durable way: WAL,
 * synchronous=FULL, schema created once and checked by application_id and user_version.
 */
#ifndef SDM_SERVICE_SQLITE_UTIL_H
#define SDM_SERVICE_SQLITE_UTIL_H

#include <stddef.h>

#include <sqlite3.h>

/* Opens (creating when absent) dir/name. A new file gets schema_sql (which must set
 * application_id and user_version itself, inside its own transaction) and the directory is
 * fsynced; an existing one must carry app_id and version. NULL with err set ("name: why")
 * on failure. */
sqlite3 *sdm_sqlite_open(const char *dir, const char *name, const char *schema_sql, int app_id,
                         int version, char *err, size_t err_len);

/* Runs sql (no rows); 0, or -1 with err "name: what: why". */
int sdm_sqlite_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t err_len);

/* Runs a query returning one integer; 0, or -1 with err set. */
int sdm_sqlite_int(sqlite3 *db, const char *sql, sqlite3_int64 *out, char *err, size_t err_len);

#endif /* SDM_SERVICE_SQLITE_UTIL_H */
