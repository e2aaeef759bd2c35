/* durable.c - the worker's durable store: batches as fsynced .npy files, metadata in SQLite.
 *
 * The order of writes is what makes a batch durable (see durable.h and docs/worker.md):
 * every file of a batch is written under a temporary name, fsynced and renamed, the model's
 * directory is fsynced once, and only then does one SQLite transaction (WAL, synchronous=FULL)
 * record the batch. The row is the commit point: files that no row names are leftovers of an
 * append that never returned, and opening the store removes them. A recorded batch whose files
 * are missing or the wrong size is damage, never silently dropped: the store refuses to open.
 */
#include "durable.h"
#include "errmsg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "npy.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "durable.c writes memory as little-endian .npy data: port it for big-endian hosts"
#endif

#define SCHEMA_VERSION 1
/* "SDM1" (0x53444d31) in the database header, so we never adopt a stranger's SQLite file */
#define APPLICATION_ID 1396985137
#define STR_(x) #x
#define STR(x) STR_(x)
#define MODEL_NAME_MAX 256 /* bytes, as the protocol allows */
#define SAFE_NAME_MAX 64

/* The files of a batch. Their order is also the order they are written and renamed in. */
enum { F_FEATURES = 0, F_IDS = 1, F_WEIGHTS = 2, F_KINDS = 3 };

static const struct file_kind {
    const char *suffix; /* <batch>.<suffix>.npy */
    sdm_npy_dtype dtype;
    int two_d; /* shape (n, k) rather than (n,) */
} file_kinds[F_KINDS] = {
    {"features", SDM_NPY_F4, 1},
    {"ids", SDM_NPY_U8, 0},
    {"weights", SDM_NPY_F8, 0},
};

typedef struct durable_model {
    int64_t idx;
    char *name;
    char *dir; /* "<idx>-<safe name>", under models/ */
    sdm_projection proj;
    uint64_t count; /* batches recorded: the next batch number */
} durable_model;

struct sdm_durable {
    char *dir;
    int lock_fd;
    sqlite3 *db;
    sqlite3_stmt *ins_model;
    sqlite3_stmt *ins_batch;
    sqlite3_stmt *sel_batches; /* one model's batches, in order */
    durable_model *models;     /* in idx order */
    size_t n_models, cap_models;
    uint8_t *buf[F_KINDS]; /* sdm_durable_load's file buffers, reused across batches */
    size_t buf_cap[F_KINDS];
};

/* ---- small helpers ------------------------------------------------------------------- */

/* u64 values (seed, input_dim, n, batch, issued_at, created_at) live in INTEGER columns as
 * the int64 with the same 64 bits: a seed >= 2^63 reads back as a negative number in the
 * sqlite3 shell but round-trips exactly here. */
static sqlite3_int64 u64_to_db(uint64_t v)
{
    sqlite3_int64 s;
    memcpy(&s, &v, sizeof(s));
    return s;
}

static uint64_t u64_from_db(sqlite3_int64 s)
{
    uint64_t v;
    memcpy(&v, &s, sizeof(v));
    return v;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* snprintf into a path buffer; -1 with a message when the path would not fit. */
__attribute__((format(printf, 5, 6))) static int path_fmt(char *out, size_t out_len, char *err,
                                                          size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, out_len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= out_len) {
        sdm_errf(err, err_len, "path too long (%d bytes, at most %zu)", n, out_len - 1);
        return -1;
    }
    return 0;
}

/* "<idx>-<name with every byte outside [A-Za-z0-9._-] as '_', at most 64 of them>". The
 * index alone makes it unique; the name is there for people browsing the directory. */
static void model_dir_name(int64_t idx, const char *name, char *out, size_t out_len)
{
    char safe[SAFE_NAME_MAX + 1];
    size_t i = 0;
    for (; name[i] && i < SAFE_NAME_MAX; i++) {
        char c = name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        safe[i] = ok ? c : '_';
    }
    safe[i] = '\0';
    snprintf(out, out_len, "%" PRId64 "-%s", idx, safe);
}

static durable_model *find_model(const sdm_durable_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_models; i++)
        if (strcmp(self->models[i].name, name) == 0)
            return &self->models[i];
    return NULL;
}

/* ---- .npy ---------------------------------------------------------------------------- */

/* The header of a batch file: npy.c's format 1.0 header for shape (n, k) or (n,), the one
 * the client writes too. Returns its length. */
static size_t npy_header(uint8_t hdr[SDM_NPY_HEADER_MAX], int kind, uint64_t n, uint32_t k)
{
    uint64_t shape[2] = {n, k};
    return sdm_npy_header(file_kinds[kind].dtype, file_kinds[kind].two_d ? 2 : 1, shape, hdr,
                          SDM_NPY_HEADER_MAX);
}

static size_t elem_size(int kind)
{
    return sdm_npy_itemsize(file_kinds[kind].dtype);
}

/* The exact size of a batch file: header plus data. -1 when it would overflow. */
static int npy_file_size(int kind, uint64_t n, uint32_t k, uint64_t *size)
{
    uint8_t hdr[SDM_NPY_HEADER_MAX];
    uint64_t elems = file_kinds[kind].two_d ? 0 : n, bytes;
    if (file_kinds[kind].two_d && __builtin_mul_overflow(n, (uint64_t)k, &elems))
        return -1;
    if (__builtin_mul_overflow(elems, (uint64_t)elem_size(kind), &bytes) ||
        __builtin_add_overflow(bytes, (uint64_t)npy_header(hdr, kind, n, k), size) ||
        *size > (uint64_t)INT64_MAX || *size > SIZE_MAX)
        return -1;
    return 0;
}

/* Copies a header's dict for a message: printable bytes only, padding trimmed. */
static void header_text(const uint8_t *p, size_t len, char *out, size_t out_len)
{
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\n'))
        len--;
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < out_len; i++)
        out[j++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    if (len > 0 && j + 4 >= out_len) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
}

/* ---- SQLite -------------------------------------------------------------------------- */

static int db_exec(sdm_durable_t *self, const char *sql, const char *what, char *err,
                   size_t err_len)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sdm_errf(err, err_len, "sediment.db: %s: %s", what, msg ? msg : sqlite3_errmsg(self->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Runs a query returning one integer (a PRAGMA's value, a count). */
static int db_int(sdm_durable_t *self, const char *sql, sqlite3_int64 *out, char *err,
                  size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sdm_errf(err, err_len, "sediment.db: %s: %s", sql, sqlite3_errmsg(self->db));
        sqlite3_finalize(st);
        return -1;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* clang-format off */
static const char schema_sql[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE models("
    " idx INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " dir TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL,"
    " input_dim INTEGER NOT NULL,"
    " dim INTEGER NOT NULL,"
    " s INTEGER NOT NULL,"
    " seed INTEGER NOT NULL," /* u64 as the int64 with the same bits */
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE batches("
    " model_idx INTEGER NOT NULL REFERENCES models(idx),"
    " batch INTEGER NOT NULL,"
    " checkpoint TEXT NOT NULL,"
    " lr REAL NOT NULL,"
    " contributor TEXT NOT NULL," /* '' for curvature batches */
    " shard TEXT NOT NULL,"
    " n INTEGER NOT NULL,"
    " curvature INTEGER NOT NULL,"
    " ids_digest BLOB NOT NULL CHECK(length(ids_digest) = 32),"
    " data_digest BLOB NOT NULL CHECK(length(data_digest) = 32),"
    " weights_digest BLOB NOT NULL CHECK(length(weights_digest) = 32),"
    " leaf BLOB NOT NULL CHECK(length(leaf) = 32),"
    " issued_at INTEGER NOT NULL,"
    " k INTEGER NOT NULL,"
    " has_weights INTEGER NOT NULL,"
    " features_bytes INTEGER NOT NULL," /* size of the .features.npy file, header included */
    " PRIMARY KEY(model_idx, batch)) WITHOUT ROWID;"
    "PRAGMA application_id = " STR(APPLICATION_ID) ";"
    "PRAGMA user_version = " STR(SCHEMA_VERSION) ";"
    "COMMIT;";
/* clang-format on */

static int db_open(sdm_durable_t *self, char *err, size_t err_len)
{
    char path[PATH_MAX];
    if (path_fmt(path, sizeof(path), err, err_len, "%s/sediment.db", self->dir))
        return -1;
    int rc = sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        sdm_errf(err, err_len, "%s: %s", path,
                self->db ? sqlite3_errmsg(self->db) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_extended_result_codes(self->db, 1);

    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    if (sqlite3_prepare_v2(self->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        sdm_errf(err, err_len, "sediment.db: cannot switch to WAL journal mode (%s)",
                mode ? mode : sqlite3_errmsg(self->db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    if (db_exec(self, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", "pragmas", err, err_len))
        return -1;

    sqlite3_int64 version, app_id, tables;
    if (db_int(self, "PRAGMA user_version", &version, err, err_len) ||
        db_int(self, "PRAGMA application_id", &app_id, err, err_len) ||
        db_int(self, "SELECT count(*) FROM sqlite_master", &tables, err, err_len))
        return -1;
    if (version == 0) {
        if (tables != 0 || app_id != 0) {
            sdm_errf(err, err_len,
                    "sediment.db: not a sediment store (user_version 0, %lld schema objects, "
                    "application_id %lld)",
                    (long long)tables, (long long)app_id);
            return -1;
        }
        if (db_exec(self, schema_sql, "creating the schema", err, err_len)) {
            if (!sqlite3_get_autocommit(self->db))
                sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        /* the database and its WAL are new entries in the data dir */
        if (sdm_fsync_dir(self->dir) != 0) {
            sdm_errf(err, err_len, "%s: fsync: %s", self->dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (version != SCHEMA_VERSION) {
        sdm_errf(err, err_len, "sediment.db: schema version %lld, this build reads version %d",
                (long long)version, SCHEMA_VERSION);
        return -1;
    }
    if (app_id != APPLICATION_ID) {
        sdm_errf(err, err_len, "sediment.db: application_id %lld is not sediment's (%d)",
                (long long)app_id, APPLICATION_ID);
        return -1;
    }
    return 0;
}

/* The columns read_row reads, in its order: one list for the load and for one batch. */
#define BATCH_COLUMNS                                                                              \
    "batch, checkpoint, lr, contributor, shard, n, curvature, ids_digest, data_digest,"            \
    " weights_digest, leaf, issued_at, k, has_weights, features_bytes"

static int db_prepare(sdm_durable_t *self, char *err, size_t err_len)
{
    static const char *const sql[3] = {
        "INSERT INTO models(idx, name, dir, kind, input_dim, dim, s, seed, created_at)"
        " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "INSERT INTO batches(model_idx, batch, checkpoint, lr, contributor, shard, n,"
        " curvature, ids_digest, data_digest, weights_digest, leaf, issued_at, k, has_weights,"
        " features_bytes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "SELECT " BATCH_COLUMNS " FROM batches WHERE model_idx = ? ORDER BY batch",
    };
    sqlite3_stmt **out[3] = {&self->ins_model, &self->ins_batch, &self->sel_batches};
    for (int i = 0; i < 3; i++) {
        if (sqlite3_prepare_v3(self->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, out[i], NULL) !=
            SQLITE_OK) {
            sdm_errf(err, err_len, "sediment.db: preparing \"%.40s...\": %s", sql[i],
                    sqlite3_errmsg(self->db));
            return -1;
        }
    }
    return 0;
}

/* Adds a model to the in-memory list (kept in idx order). Takes nothing: copies strings. */
static int add_model(sdm_durable_t *self, int64_t idx, const char *name, const char *dir,
                     const sdm_projection *proj, uint64_t count)
{
    if (self->n_models == self->cap_models) {
        size_t cap = self->cap_models ? 2 * self->cap_models : 8;
        durable_model *m = realloc(self->models, cap * sizeof(*m));
        if (!m)
            return -1;
        self->models = m;
        self->cap_models = cap;
    }
    durable_model *m = &self->models[self->n_models];
    m->name = strdup(name);
    m->dir = strdup(dir);
    if (!m->name || !m->dir) {
        free(m->name);
        free(m->dir);
        return -1;
    }
    m->idx = idx;
    m->proj = *proj;
    m->count = count;
    self->n_models++;
    return 0;
}

static int load_models(sdm_durable_t *self, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT idx, name, dir, kind, input_dim, dim, s, seed FROM models"
                           " ORDER BY idx",
                           -1, &st, NULL) != SQLITE_OK) {
        sdm_errf(err, err_len, "sediment.db: reading models: %s", sqlite3_errmsg(self->db));
        return -1;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *dir = (const char *)sqlite3_column_text(st, 2);
        const char *kind = (const char *)sqlite3_column_text(st, 3);
        sqlite3_int64 dim = sqlite3_column_int64(st, 5), s = sqlite3_column_int64(st, 6);
        sdm_projection p = {0};
        p.input_dim = u64_from_db(sqlite3_column_int64(st, 4));
        p.seed = u64_from_db(sqlite3_column_int64(st, 7));
        char want_dir[32 + SAFE_NAME_MAX];
        if (!name || !dir || !kind) {
            sdm_errf(err, err_len, "sediment.db: model %" PRId64 ": name, dir or kind is NULL", idx);
            goto fail;
        }
        /* the directory name is derived, never trusted: a row naming "../x" would
         * otherwise steer orphan removal outside the store */
        model_dir_name(idx, name, want_dir, sizeof(want_dir));
        if (strcmp(dir, want_dir) != 0) {
            sdm_errf(err, err_len, "sediment.db: model '%s': dir '%s', expected '%s'", name, dir,
                    want_dir);
            goto fail;
        }
        if (sdm_proj_kind_parse(kind, &p.kind) != SDM_OK || dim <= 0 || dim > UINT32_MAX || s < 0 ||
            s > UINT32_MAX) {
            sdm_errf(err, err_len,
                    "sediment.db: model '%s': bad projection (kind '%s', dim %lld, "
                    "s %lld)",
                    name, kind, (long long)dim, (long long)s);
            goto fail;
        }
        p.dim = (uint32_t)dim;
        p.s = (uint32_t)s;
        if (add_model(self, idx, name, dir, &p, 0)) {
            sdm_errf(err, err_len, "out of memory");
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: reading models: %s", sqlite3_errmsg(self->db));
        goto fail;
    }
    sqlite3_finalize(st);

    /* batch counts; batches are numbered 0..count-1 with no gaps */
    if (sqlite3_prepare_v2(self->db,
                           "SELECT model_idx, count(*), max(batch) FROM batches"
                           " GROUP BY model_idx",
                           -1, &st, NULL) != SQLITE_OK) {
        sdm_errf(err, err_len, "sediment.db: counting batches: %s", sqlite3_errmsg(self->db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(st, 0);
        uint64_t count = u64_from_db(sqlite3_column_int64(st, 1));
        uint64_t max = u64_from_db(sqlite3_column_int64(st, 2));
        durable_model *m = NULL;
        for (size_t i = 0; i < self->n_models; i++)
            if (self->models[i].idx == idx)
                m = &self->models[i];
        if (!m) {
            sdm_errf(err, err_len, "sediment.db: batches of an unknown model %" PRId64, idx);
            goto fail;
        }
        if (max + 1 != count) {
            sdm_errf(err, err_len,
                    "sediment.db: model '%s': %" PRIu64 " batches numbered up to %" PRIu64
                    " (a gap)",
                    m->name, count, max);
            goto fail;
        }
        m->count = count;
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: counting batches: %s", sqlite3_errmsg(self->db));
        goto fail;
    }
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

/* ---- orphans and checks -------------------------------------------------------------- */

/* Recognises our batch file names, "<batch as %012llu>.<suffix>.npy" exactly; returns the
 * kind or -1. */
static int parse_batch_file(const char *name, uint64_t *batch)
{
    const char *dot = strchr(name, '.');
    if (!dot || dot - name < 12)
        return -1;
    uint64_t v = 0;
    for (const char *p = name; p < dot; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    char canon[32];
    snprintf(canon, sizeof(canon), "%012" PRIu64, v);
    if (strlen(canon) != (size_t)(dot - name) || memcmp(canon, name, strlen(canon)) != 0)
        return -1;
    for (int kind = 0; kind < F_KINDS; kind++) {
        size_t sl = strlen(file_kinds[kind].suffix);
        if (strncmp(dot + 1, file_kinds[kind].suffix, sl) == 0 &&
            strcmp(dot + 1 + sl, ".npy") == 0) {
            *batch = v;
            return kind;
        }
    }
    return -1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Removes, in models/<mdir>, every *.tmp file and every batch file that no row names:
 * numbered >= count, or an ids/weights file where the row says there is none (want[b] has
 * bit 1<<kind set for each file batch b has). Leaves files that are not ours alone. */
static int remove_orphans(const char *store_dir, const char *mdir, uint64_t count,
                          const uint8_t *want, char *err, size_t err_len)
{
    char path[PATH_MAX];
    if (path_fmt(path, sizeof(path), err, err_len, "%s/models/%s", store_dir, mdir))
        return -1;
    DIR *d = opendir(path);
    if (!d) {
        sdm_errf(err, err_len, "models/%s: cannot open: %s", mdir, strerror(errno));
        return -1;
    }
    int removed = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t b;
        int kind = parse_batch_file(e->d_name, &b);
        int orphan = ends_with(e->d_name, ".tmp") ||
                     (kind >= 0 && (b >= count || !(want[b] & (1u << kind))));
        if (!orphan)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
            sdm_errf(err, err_len, "models/%s/%s: cannot remove orphan: %s", mdir, e->d_name,
                    strerror(errno));
            rc = -1;
            break;
        }
        removed = 1;
    }
    if (removed && fsync(dirfd(d)) != 0 && rc == 0) {
        sdm_errf(err, err_len, "models/%s: fsync: %s", mdir, strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

/* Checks one recorded file: a regular file of exactly `size` bytes. */
static int check_file(const char *store_dir, const durable_model *m, uint64_t batch, int kind,
                      uint64_t size, char *err, size_t err_len)
{
    char rel[PATH_MAX], path[PATH_MAX];
    if (path_fmt(rel, sizeof(rel), err, err_len, "models/%s/%012" PRIu64 ".%s.npy", m->dir, batch,
                 file_kinds[kind].suffix) ||
        path_fmt(path, sizeof(path), err, err_len, "%s/%s", store_dir, rel))
        return -1;
    struct stat st;
    if (lstat(path, &st) != 0) {
        sdm_errf(err, err_len, "%s: %s; batch %" PRIu64 " of model '%s' is recorded", rel,
                strerror(errno), batch, m->name);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        sdm_errf(err, err_len, "%s: not a regular file", rel);
        return -1;
    }
    if ((uint64_t)st.st_size != size) {
        sdm_errf(err, err_len, "%s: %lld bytes, expected %" PRIu64, rel, (long long)st.st_size,
                size);
        return -1;
    }
    return 0;
}

/* For one model: removes orphans, then checks that every recorded batch has its files with
 * the exact sizes its row implies. */
static int check_model(sdm_durable_t *self, durable_model *m, char *err, size_t err_len)
{
    char path[PATH_MAX];
    int made;
    if (path_fmt(path, sizeof(path), err, err_len, "%s/models/%s", self->dir, m->dir))
        return -1;
    if (sdm_make_dir(path, &made, err, err_len))
        return -1;
    if (made && sdm_fsync_parent(path) != 0) {
        sdm_errf(err, err_len, "%s: fsync of the parent: %s", path, strerror(errno));
        return -1;
    }

    uint8_t *want = calloc(m->count ? m->count : 1, 1);
    if (!want) {
        sdm_errf(err, err_len, "out of memory");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db,
                                "SELECT batch, n, k, curvature, has_weights, features_bytes"
                                " FROM batches WHERE model_idx = ? ORDER BY batch",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sdm_errf(err, err_len, "sediment.db: reading batches: %s", sqlite3_errmsg(self->db));
        goto fail;
    }
    sqlite3_bind_int64(st, 1, m->idx);
    uint64_t expect_batch = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t b = u64_from_db(sqlite3_column_int64(st, 0));
        uint64_t n = u64_from_db(sqlite3_column_int64(st, 1));
        sqlite3_int64 k = sqlite3_column_int64(st, 2);
        int curvature = sqlite3_column_int(st, 3) != 0;
        int has_weights = sqlite3_column_int(st, 4) != 0;
        sqlite3_int64 fbytes = sqlite3_column_int64(st, 5);
        uint64_t sizes[F_KINDS];
        if (b != expect_batch || b >= m->count) {
            sdm_errf(err, err_len,
                    "sediment.db: model '%s': batch %" PRIu64 " where %" PRIu64 " was expected",
                    m->name, b, expect_batch);
            goto fail;
        }
        expect_batch++;
        int bad = k != (sqlite3_int64)m->proj.dim;
        for (int kind = 0; kind < F_KINDS && !bad; kind++)
            bad = npy_file_size(kind, n, (uint32_t)k, &sizes[kind]) != 0;
        if (bad || (uint64_t)fbytes != sizes[F_FEATURES]) {
            sdm_errf(err, err_len,
                    "sediment.db: model '%s' batch %" PRIu64 ": n %" PRIu64 ", k %lld and "
                    "features_bytes %lld do not agree (model dim %" PRIu32 ")",
                    m->name, b, n, (long long)k, (long long)fbytes, m->proj.dim);
            goto fail;
        }
        want[b] = (uint8_t)((1u << F_FEATURES) | (curvature ? 0 : 1u << F_IDS) |
                            (has_weights ? 1u << F_WEIGHTS : 0));
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: reading batches: %s", sqlite3_errmsg(self->db));
        goto fail;
    }
    if (expect_batch != m->count) {
        sdm_errf(err, err_len, "sediment.db: model '%s': batches changed while opening", m->name);
        goto fail;
    }
    if (remove_orphans(self->dir, m->dir, m->count, want, err, err_len))
        goto fail;

    /* sizes come from the rows again: cheap, and keeps `want` one byte a batch */
    sqlite3_reset(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t b = u64_from_db(sqlite3_column_int64(st, 0));
        uint64_t n = u64_from_db(sqlite3_column_int64(st, 1));
        uint32_t k = (uint32_t)sqlite3_column_int64(st, 2);
        for (int kind = 0; kind < F_KINDS; kind++) {
            uint64_t size;
            if (!(want[b] & (1u << kind)))
                continue;
            if (npy_file_size(kind, n, k, &size) ||
                check_file(self->dir, m, b, kind, size, err, err_len))
                goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: reading batches: %s", sqlite3_errmsg(self->db));
        goto fail;
    }
    sqlite3_finalize(st);
    free(want);
    return 0;
fail:
    sqlite3_finalize(st);
    free(want);
    return -1;
}

/* Directories under models/ that no model row names are left by a put_model that never
 * committed: remove our files from them and the directory itself when it is then empty. */
static int remove_unrecorded_dirs(sdm_durable_t *self, char *err, size_t err_len)
{
    char path[PATH_MAX];
    if (path_fmt(path, sizeof(path), err, err_len, "%s/models", self->dir))
        return -1;
    DIR *d = opendir(path);
    if (!d) {
        sdm_errf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int removed = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] < '0' || name[0] > '9' || !strchr(name, '-'))
            continue;
        int recorded = 0;
        for (size_t i = 0; i < self->n_models && !recorded; i++)
            recorded = strcmp(self->models[i].dir, name) == 0;
        struct stat st;
        if (recorded || fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (remove_orphans(self->dir, name, 0, NULL, err, err_len)) {
            rc = -1;
            break;
        }
        /* a directory still holding files that are not ours stays as it is */
        if (unlinkat(dirfd(d), name, AT_REMOVEDIR) == 0)
            removed = 1;
    }
    if (removed && rc == 0 && fsync(dirfd(d)) != 0) {
        sdm_errf(err, err_len, "models: fsync: %s", strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

/* ---- open / close -------------------------------------------------------------------- */

sdm_durable_t *sdm_durable_open(const char *dir, char *err, size_t err_len)
{
    if (!dir || !dir[0]) {
        sdm_errf(err, err_len, "data dir: empty path");
        return NULL;
    }
    sdm_durable_t *self = calloc(1, sizeof(*self));
    if (!self || !(self->dir = strdup(dir))) {
        free(self);
        sdm_errf(err, err_len, "out of memory");
        return NULL;
    }
    self->lock_fd = -1;
    char path[PATH_MAX];
    int made;

    if (sdm_make_dir(dir, &made, err, err_len))
        goto fail;
    if (made && sdm_fsync_parent(dir) != 0) {
        sdm_errf(err, err_len, "%s: fsync of the parent: %s", dir, strerror(errno));
        goto fail;
    }
    /* one process at a time: a second worker on the same dir would take the first one's
     * half-written files for orphans */
    if (path_fmt(path, sizeof(path), err, err_len, "%s/sediment.lock", dir))
        goto fail;
    self->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd < 0) {
        sdm_errf(err, err_len, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        sdm_errf(err, err_len, "%s: in use by another process (%s is locked)", dir, path);
        goto fail;
    }
    if (path_fmt(path, sizeof(path), err, err_len, "%s/models", dir) ||
        sdm_make_dir(path, &made, err, err_len))
        goto fail;
    if (made && sdm_fsync_dir(dir) != 0) {
        sdm_errf(err, err_len, "%s: fsync: %s", dir, strerror(errno));
        goto fail;
    }
    if (db_open(self, err, err_len) || load_models(self, err, err_len))
        goto fail;
    for (size_t i = 0; i < self->n_models; i++)
        if (check_model(self, &self->models[i], err, err_len))
            goto fail;
    if (remove_unrecorded_dirs(self, err, err_len) || db_prepare(self, err, err_len))
        goto fail;
    return self;
fail:
    sdm_durable_close(&self);
    return NULL;
}

void sdm_durable_close(sdm_durable_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_durable_t *self = *self_p;
    sqlite3_finalize(self->ins_model);
    sqlite3_finalize(self->ins_batch);
    sqlite3_finalize(self->sel_batches);
    sqlite3_close(self->db);
    if (self->lock_fd >= 0)
        close(self->lock_fd); /* releases the flock */
    for (size_t i = 0; i < self->n_models; i++) {
        free(self->models[i].name);
        free(self->models[i].dir);
    }
    free(self->models);
    for (int i = 0; i < F_KINDS; i++)
        free(self->buf[i]);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* ---- models -------------------------------------------------------------------------- */

static int same_projection(const sdm_projection *a, const sdm_projection *b)
{
    return a->kind == b->kind && a->input_dim == b->input_dim && a->dim == b->dim && a->s == b->s &&
           a->seed == b->seed;
}

int sdm_durable_put_model(sdm_durable_t *self, const char *model, const sdm_projection *proj,
                          char *err, size_t err_len)
{
    char msg[200];
    if (!model || !model[0] || strlen(model) > MODEL_NAME_MAX) {
        sdm_errf(err, err_len, "model: name must be 1 to %d bytes", MODEL_NAME_MAX);
        return -1;
    }
    if (!proj) {
        sdm_errf(err, err_len, "projection: missing");
        return -1;
    }
    if (sdm_projection_check(proj, msg, sizeof(msg)) != SDM_OK) {
        sdm_errf(err, err_len, "%s", msg);
        return -1;
    }
    durable_model *old = find_model(self, model);
    if (old) {
        if (same_projection(&old->proj, proj))
            return 0;
        sdm_errf(err, err_len, "model '%s': already recorded with a different projection", model);
        return -1;
    }

    int64_t idx = self->n_models ? self->models[self->n_models - 1].idx + 1 : 0;
    char mdir[32 + SAFE_NAME_MAX], path[PATH_MAX];
    model_dir_name(idx, model, mdir, sizeof(mdir));
    if (path_fmt(path, sizeof(path), err, err_len, "%s/models/%s", self->dir, mdir))
        return -1;
    int made;
    if (sdm_make_dir(path, &made, err, err_len))
        return -1;
    /* a directory already there was left by a put_model that never committed */
    if (!made && remove_orphans(self->dir, mdir, 0, NULL, err, err_len))
        return -1;
    if (sdm_fsync_parent(path) != 0) {
        sdm_errf(err, err_len, "models: fsync: %s", strerror(errno));
        goto fail;
    }

    sqlite3_stmt *st = self->ins_model;
    sqlite3_bind_int64(st, 1, idx);
    sqlite3_bind_text(st, 2, model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, mdir, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, sdm_proj_kind_name(proj->kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, u64_to_db(proj->input_dim));
    sqlite3_bind_int64(st, 6, proj->dim);
    sqlite3_bind_int64(st, 7, proj->s);
    sqlite3_bind_int64(st, 8, u64_to_db(proj->seed));
    sqlite3_bind_int64(st, 9, u64_to_db(now_ns()));
    int rc = sqlite3_step(st); /* autocommit: this one statement is the transaction */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: recording model '%s': %s", model,
                sqlite3_errmsg(self->db));
        goto fail;
    }
    if (add_model(self, idx, model, mdir, proj, 0)) {
        /* recorded on disk; the next open will see it */
        sdm_errf(err, err_len, "out of memory after recording model '%s'", model);
        return -1;
    }
    return 0;
fail:
    if (made)
        rmdir(path);
    return -1;
}

uint64_t sdm_durable_batches(const sdm_durable_t *self, const char *model)
{
    const durable_model *m = model ? find_model(self, model) : NULL;
    return m ? m->count : 0;
}

/* ---- append -------------------------------------------------------------------------- */

static int check_batch(const sdm_durable_t *self, const sdm_durable_batch *b, durable_model **mp,
                       char *err, size_t err_len)
{
    const sdm_leaf_fields *f = &b->leaf_fields;
    if (!b->model) {
        sdm_errf(err, err_len, "model: missing");
        return -1;
    }
    durable_model *m = find_model(self, b->model);
    if (!m) {
        sdm_errf(err, err_len, "model: unknown model '%s'", b->model);
        return -1;
    }
    if (f->model && strcmp(f->model, b->model) != 0) {
        sdm_errf(err, err_len, "leaf_fields.model: '%s' is not the batch's model '%s'", f->model,
                b->model);
        return -1;
    }
    if (b->batch != m->count) {
        sdm_errf(err, err_len, "batch: %" PRIu64 " is not model '%s''s next batch number %" PRIu64,
                b->batch, b->model, m->count);
        return -1;
    }
    if (!f->checkpoint || !f->checkpoint[0]) {
        sdm_errf(err, err_len, "leaf_fields.checkpoint: missing");
        return -1;
    }
    if (!isfinite(f->lr)) {
        sdm_errf(err, err_len, "leaf_fields.lr: not finite");
        return -1;
    }
    if (f->curvature) {
        if ((f->contributor && f->contributor[0]) || (f->shard && f->shard[0])) {
            sdm_errf(err, err_len,
                    "leaf_fields.contributor/shard: must be \"\" for a curvature "
                    "batch");
            return -1;
        }
        if (b->ids || b->weights) {
            sdm_errf(err, err_len, "%s: a curvature batch has none", b->ids ? "ids" : "weights");
            return -1;
        }
    } else {
        if (!f->contributor || !f->contributor[0] || !f->shard || !f->shard[0]) {
            sdm_errf(err, err_len, "leaf_fields.%s: missing",
                    !f->contributor || !f->contributor[0] ? "contributor" : "shard");
            return -1;
        }
        if (!b->ids && f->n > 0) {
            sdm_errf(err, err_len, "ids: missing for a training batch");
            return -1;
        }
    }
    if (b->k != m->proj.dim) {
        sdm_errf(err, err_len, "k: %" PRIu32 " is not model '%s''s dim %" PRIu32, b->k, b->model,
                m->proj.dim);
        return -1;
    }
    if (!b->features && f->n > 0) {
        sdm_errf(err, err_len, "features: missing");
        return -1;
    }
    uint64_t size;
    if (f->n > (uint64_t)INT64_MAX || npy_file_size(F_FEATURES, f->n, b->k, &size) ||
        npy_file_size(F_IDS, f->n, b->k, &size)) {
        sdm_errf(err, err_len, "leaf_fields.n: %" PRIu64 " rows of %" PRIu32 " is too large", f->n,
                b->k);
        return -1;
    }
    *mp = m;
    return 0;
}

/* Writes <final>.tmp: header and data, fsynced and closed. */
static int write_tmp(const char *tmp, const char *rel, const uint8_t *hdr, size_t hdr_len,
                     const void *data, size_t len, char *err, size_t err_len)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        sdm_errf(err, err_len, "%s.tmp: create: %s", rel, strerror(errno));
        return -1;
    }
    if (sdm_write_all(fd, hdr, hdr_len) != 0 || sdm_write_all(fd, data, len) != 0) {
        sdm_errf(err, err_len, "%s.tmp: write: %s", rel, strerror(errno));
        close(fd);
        return -1;
    }
    if (fsync(fd) != 0) {
        sdm_errf(err, err_len, "%s.tmp: fsync: %s", rel, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0) {
        sdm_errf(err, err_len, "%s.tmp: close: %s", rel, strerror(errno));
        return -1;
    }
    return 0;
}

int sdm_durable_append(sdm_durable_t *self, const sdm_durable_batch *b, char *err, size_t err_len)
{
    durable_model *m = NULL;
    if (!self || !b) {
        sdm_errf(err, err_len, "batch: missing");
        return -1;
    }
    if (check_batch(self, b, &m, err, err_len))
        return -1;
    const sdm_leaf_fields *f = &b->leaf_fields;
    const void *data[F_KINDS] = {b->features, f->curvature ? NULL : b->ids, b->weights};
    int present[F_KINDS] = {1, !f->curvature, b->weights != NULL};
    char dir[PATH_MAX], final[F_KINDS][PATH_MAX], tmp[F_KINDS][PATH_MAX], rel[F_KINDS][PATH_MAX];
    uint64_t features_bytes = 0;

    if (path_fmt(dir, sizeof(dir), err, err_len, "%s/models/%s", self->dir, m->dir))
        return -1;
    for (int kind = 0; kind < F_KINDS; kind++)
        if (present[kind] &&
            (path_fmt(rel[kind], sizeof(rel[kind]), err, err_len, "models/%s/%012" PRIu64 ".%s.npy",
                      m->dir, b->batch, file_kinds[kind].suffix) ||
             path_fmt(final[kind], sizeof(final[kind]), err, err_len, "%s/%s", self->dir,
                      rel[kind]) ||
             path_fmt(tmp[kind], sizeof(tmp[kind]), err, err_len, "%s.tmp", final[kind])))
            return -1;

    /* 1. every file under its temporary name, fsynced */
    for (int kind = 0; kind < F_KINDS; kind++) {
        if (!present[kind])
            continue;
        uint8_t hdr[SDM_NPY_HEADER_MAX];
        size_t hdr_len = npy_header(hdr, kind, f->n, b->k);
        size_t len = (size_t)f->n * elem_size(kind) * (file_kinds[kind].two_d ? b->k : 1);
        if (kind == F_FEATURES)
            features_bytes = hdr_len + len;
        if (write_tmp(tmp[kind], rel[kind], hdr, hdr_len, data[kind], len, err, err_len))
            goto fail;
    }
    /* 2. renamed into place, then the directory fsynced once so the names are durable */
    for (int kind = 0; kind < F_KINDS; kind++) {
        if (present[kind] && rename(tmp[kind], final[kind]) != 0) {
            sdm_errf(err, err_len, "%s: rename: %s", rel[kind], strerror(errno));
            goto fail;
        }
    }
    if (sdm_fsync_dir(dir) != 0) {
        sdm_errf(err, err_len, "models/%s: fsync: %s", m->dir, strerror(errno));
        goto fail;
    }

    /* 3. the row: the commit point (autocommit, synchronous=FULL: durable when it returns) */
    sqlite3_stmt *st = self->ins_batch;
    sqlite3_bind_int64(st, 1, m->idx);
    sqlite3_bind_int64(st, 2, u64_to_db(b->batch));
    sqlite3_bind_text(st, 3, f->checkpoint, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, f->lr);
    sqlite3_bind_text(st, 5, f->curvature ? "" : f->contributor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, f->curvature ? "" : f->shard, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, u64_to_db(f->n));
    sqlite3_bind_int(st, 8, f->curvature ? 1 : 0);
    sqlite3_bind_blob(st, 9, f->ids_digest, SDM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 10, f->data_digest, SDM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 11, f->weights_digest, SDM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 12, b->leaf, SDM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, u64_to_db(b->issued_at));
    sqlite3_bind_int64(st, 14, b->k);
    sqlite3_bind_int(st, 15, present[F_WEIGHTS]);
    sqlite3_bind_int64(st, 16, (sqlite3_int64)features_bytes);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sdm_errf(err, err_len, "sediment.db: recording batch %" PRIu64 " of model '%s': %s",
                b->batch, m->name, sqlite3_errmsg(self->db));
        if (!sqlite3_get_autocommit(self->db))
            sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    m->count++;
    return 0;

fail:
    /* nothing names these files; removing them now saves the next open the work. The
     * batch number is the model's next, so no recorded file can have these names. */
    for (int kind = 0; kind < F_KINDS; kind++) {
        if (!present[kind])
            continue;
        unlink(tmp[kind]);
        unlink(final[kind]);
    }
    sdm_fsync_dir(dir);
    return -1;
}

/* ---- load ---------------------------------------------------------------------------- */

/* Reads a batch file whole into the kind's buffer and checks it strictly: its size, the
 * magic, version 1.0 and a header identical to the one we write for this shape (so dtype,
 * fortran_order and shape all match). Returns a pointer to the data, or NULL with err. */
static const void *read_npy(sdm_durable_t *self, const durable_model *m, uint64_t batch, int kind,
                            uint64_t n, uint32_t k, char *err, size_t err_len)
{
    char rel[PATH_MAX], path[PATH_MAX];
    uint8_t hdr[SDM_NPY_HEADER_MAX];
    if (path_fmt(rel, sizeof(rel), err, err_len, "models/%s/%012" PRIu64 ".%s.npy", m->dir, batch,
                 file_kinds[kind].suffix) ||
        path_fmt(path, sizeof(path), err, err_len, "%s/%s", self->dir, rel))
        return NULL;
    uint64_t want;
    if (npy_file_size(kind, n, k, &want)) {
        sdm_errf(err, err_len, "%s: shape (%" PRIu64 ", %" PRIu32 ") is too large", rel, n, k);
        return NULL;
    }
    size_t hdr_len = npy_header(hdr, kind, n, k);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sdm_errf(err, err_len, "%s: %s", rel, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        sdm_errf(err, err_len, "%s: fstat: %s", rel, strerror(errno));
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size != want) {
        sdm_errf(err, err_len, "%s: %lld bytes, expected %" PRIu64, rel, (long long)st.st_size,
                want);
        close(fd);
        return NULL;
    }
    if (self->buf_cap[kind] < want) {
        uint8_t *nb = realloc(self->buf[kind], want);
        if (!nb) {
            sdm_errf(err, err_len, "%s: out of memory for %" PRIu64 " bytes", rel, want);
            close(fd);
            return NULL;
        }
        self->buf[kind] = nb;
        self->buf_cap[kind] = want;
    }
    uint8_t *p = self->buf[kind];
    size_t got;
    int rc = sdm_read_all(fd, p, want, &got);
    int saved = errno;
    close(fd);
    if (rc != 0 || got != want) {
        sdm_errf(err, err_len, "%s: read: %s", rel,
                rc ? strerror(saved) : "the file shrank while being read");
        return NULL;
    }
    /* hdr is what we would write: its first 6 bytes are the magic */
    if (memcmp(p, hdr, 6) != 0) {
        sdm_errf(err, err_len, "%s: not an .npy file (bad magic)", rel);
        return NULL;
    }
    if (p[6] != 1 || p[7] != 0) {
        sdm_errf(err, err_len, "%s: .npy version %u.%u, expected 1.0", rel, p[6], p[7]);
        return NULL;
    }
    size_t file_hdr_len = 10 + ((size_t)p[8] | (size_t)p[9] << 8);
    if (file_hdr_len != hdr_len || memcmp(p + 10, hdr + 10, hdr_len - 10) != 0) {
        char got_text[160], want_text[160];
        size_t shown = file_hdr_len < want ? file_hdr_len : (size_t)want;
        header_text(p + 10, shown - 10, got_text, sizeof(got_text));
        header_text(hdr + 10, hdr_len - 10, want_text, sizeof(want_text));
        sdm_errf(err, err_len, "%s: header %s, expected %s", rel, got_text, want_text);
        return NULL;
    }
    return p + hdr_len;
}

static int column_hash(sqlite3_stmt *st, int col, uint8_t out[SDM_HASH_LEN])
{
    const void *blob = sqlite3_column_blob(st, col);
    if (!blob || sqlite3_column_bytes(st, col) != SDM_HASH_LEN)
        return -1;
    memcpy(out, blob, SDM_HASH_LEN);
    return 0;
}

/* A row of BATCH_COLUMNS as a batch without its files:
 * 0, or -1 when a column is missing or malformed (b->batch is set for the message). The
 * strings live as long as the statement's row. */
static int read_row(const durable_model *m, sqlite3_stmt *st, sdm_durable_batch *b,
                    int *has_weights)
{
    memset(b, 0, sizeof(*b));
    sdm_leaf_fields *f = &b->leaf_fields;
    b->model = m->name;
    b->batch = u64_from_db(sqlite3_column_int64(st, 0));
    f->model = m->name;
    f->checkpoint = (const char *)sqlite3_column_text(st, 1);
    f->lr = sqlite3_column_double(st, 2);
    f->contributor = (const char *)sqlite3_column_text(st, 3);
    f->shard = (const char *)sqlite3_column_text(st, 4);
    f->n = u64_from_db(sqlite3_column_int64(st, 5));
    f->curvature = sqlite3_column_int(st, 6) != 0;
    b->issued_at = u64_from_db(sqlite3_column_int64(st, 11));
    sqlite3_int64 k = sqlite3_column_int64(st, 12);
    *has_weights = sqlite3_column_int(st, 13) != 0;
    if (!f->checkpoint || !f->contributor || !f->shard || k != (sqlite3_int64)m->proj.dim ||
        column_hash(st, 7, f->ids_digest) || column_hash(st, 8, f->data_digest) ||
        column_hash(st, 9, f->weights_digest) || column_hash(st, 10, b->leaf))
        return -1;
    b->k = (uint32_t)k;
    return 0;
}

int sdm_durable_batch_meta(sdm_durable_t *self, const char *model, uint64_t batch,
                           sdm_durable_batch_cb cb, void *ctx, char *err, size_t err_len)
{
    const durable_model *m = model ? find_model(self, model) : NULL;
    if (!m || batch >= m->count) {
        sdm_errf(err, err_len, "sediment.db: no batch %" PRIu64 " of model '%s'", batch,
                 model ? model : "(null)");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT " BATCH_COLUMNS " FROM batches"
                           " WHERE model_idx = ? AND batch = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        sdm_errf(err, err_len, "sediment.db: reading batch %" PRIu64 " of '%s': %s", batch,
                 m->name, sqlite3_errmsg(self->db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_bind_int64(st, 1, m->idx);
    sqlite3_bind_int64(st, 2, u64_to_db(batch));
    int rc = sqlite3_step(st), result = -1;
    sdm_durable_batch b;
    int has_weights;
    if (rc != SQLITE_ROW)
        sdm_errf(err, err_len, "sediment.db: reading batch %" PRIu64 " of '%s': %s", batch,
                 m->name, rc == SQLITE_DONE ? "no such row" : sqlite3_errmsg(self->db));
    else if (read_row(m, st, &b, &has_weights) != 0)
        sdm_errf(err, err_len, "sediment.db: model '%s' batch %" PRIu64 ": bad row", m->name,
                 batch);
    else
        result = cb(ctx, &b);
    sqlite3_finalize(st);
    return result;
}

int sdm_durable_load(sdm_durable_t *self, sdm_durable_model_cb model_cb,
                     sdm_durable_batch_cb batch_cb, void *ctx, char *err, size_t err_len)
{
    for (size_t i = 0; i < self->n_models; i++) {
        const durable_model *m = &self->models[i];
        if (model_cb) {
            int r = model_cb(ctx, m->name, &m->proj);
            if (r)
                return r;
        }
        if (!batch_cb)
            continue;
        sqlite3_stmt *st = self->sel_batches;
        sqlite3_bind_int64(st, 1, m->idx);
        uint64_t expect = 0;
        int rc, result = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sdm_durable_batch b;
            int has_weights;
            if (read_row(m, st, &b, &has_weights) != 0 || b.batch != expect) {
                sdm_errf(err, err_len, "sediment.db: model '%s' batch %" PRIu64 ": bad row", m->name,
                        b.batch);
                result = -1;
                break;
            }
            expect++;
            sdm_leaf_fields *f = &b.leaf_fields;
            b.features = read_npy(self, m, b.batch, F_FEATURES, f->n, b.k, err, err_len);
            if (b.features && !f->curvature)
                b.ids = read_npy(self, m, b.batch, F_IDS, f->n, b.k, err, err_len);
            if (b.features && has_weights && (f->curvature || b.ids))
                b.weights = read_npy(self, m, b.batch, F_WEIGHTS, f->n, b.k, err, err_len);
            if (!b.features || (!f->curvature && !b.ids) || (has_weights && !b.weights)) {
                result = -1;
                break;
            }
            result = batch_cb(ctx, &b);
            if (result)
                break;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            sdm_errf(err, err_len, "sediment.db: reading batches of '%s': %s", m->name,
                    sqlite3_errmsg(self->db));
            result = -1;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (result)
            return result;
        if (expect != m->count) {
            sdm_errf(err, err_len, "sediment.db: model '%s': %" PRIu64 " batches, expected %" PRIu64,
                    m->name, expect, m->count);
            return -1;
        }
    }
    return 0;
}
