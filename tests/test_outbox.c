/* test_outbox.c - the worker's durable outbox: FIFO order, done and reject, settling many rows
 * in one transaction (all or nothing, also under SIGKILL), counts, reopening, crashes (a child
 * that exits without closing, a child killed mid-stream), two threads, and bad arguments that
 * change nothing. */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "outbox.h"
#include "testdata.h"

/* ---- helpers ------------------------------------------------------------------------- */

static int make_root(void)
{
    return test_scratch_make("sdm-outbox");
}

static sdm_outbox_t *open_ok(const char *dir)
{
    char err[256] = "";
    sdm_outbox_t *ob = sdm_outbox_open(dir, err, sizeof(err));
    if (!ob)
        fprintf(stderr, "\nsdm_outbox_open(%s): %s\n", dir, err);
    return ob;
}

/* The envelope-like bytes of row i: 0x94 (an array of 4) then len-1 bytes that depend on i,
 * so a row handed back with another row's bytes is caught. */
static size_t entry_len(uint64_t i)
{
    return 1 + (size_t)((i * 37) % 300) + (i % 5 == 0 ? 70000 : 0);
}

static uint8_t *make_entry(uint64_t i, size_t *len)
{
    *len = entry_len(i);
    uint8_t *e = malloc(*len);
    test_rng r = {0x5eed0000u + i};
    e[0] = 0x94;
    for (size_t k = 1; k < *len; k++)
        e[k] = (uint8_t)test_rng_u64(&r);
    return e;
}

static const char *kind_of(uint64_t i)
{
    return i % 3 == 2 ? "proof" : "receipt";
}

static uint64_t put_entry(sdm_outbox_t *ob, uint64_t i)
{
    size_t len;
    uint8_t *e = make_entry(i, &len);
    uint64_t seq = 0;
    char err[256] = "";
    int rc = sdm_outbox_put(ob, kind_of(i), e, len, &seq, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "\nput %" PRIu64 ": %s\n", i, err);
    free(e);
    return rc == 0 ? seq : 0;
}

/* Collects what peek hands over (copies, since the row is valid during the call only). */
#define MAX_SEEN 4096
typedef struct seen_rows {
    size_t n;
    uint64_t seq[MAX_SEEN];
    char kind[MAX_SEEN][8];
    uint8_t *entry[MAX_SEEN];
    size_t len[MAX_SEEN];
    size_t stop_after; /* 0: never stop */
} seen_rows;

static int collect(void *ctx, const sdm_outbox_row *row)
{
    seen_rows *s = ctx;
    if (s->n < MAX_SEEN) {
        s->seq[s->n] = row->seq;
        snprintf(s->kind[s->n], sizeof(s->kind[0]), "%s", row->kind);
        s->entry[s->n] = malloc(row->len);
        memcpy(s->entry[s->n], row->entry, row->len);
        s->len[s->n] = row->len;
        s->n++;
    }
    return s->stop_after && s->n >= s->stop_after;
}

static void seen_free(seen_rows *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->entry[i]);
    s->n = 0;
}

static seen_rows *peek_all(sdm_outbox_t *ob, uint64_t after, size_t max)
{
    seen_rows *s = calloc(1, sizeof(*s));
    char err[256] = "";
    int n = sdm_outbox_peek(ob, after, max, collect, s, err, sizeof(err));
    CU_ASSERT_EQUAL(n, (int)s->n);
    if (n < 0)
        fprintf(stderr, "\npeek: %s\n", err);
    return s;
}

/* Whether row k of s is the entry that put_entry(i) made. */
static int row_is(const seen_rows *s, size_t k, uint64_t i)
{
    size_t len;
    uint8_t *e = make_entry(i, &len);
    int same = s->len[k] == len && memcmp(s->entry[k], e, len) == 0 &&
               strcmp(s->kind[k], kind_of(i)) == 0;
    free(e);
    return same;
}

static sdm_outbox_counts counts(const sdm_outbox_t *ob)
{
    sdm_outbox_counts c;
    sdm_outbox_get_counts(ob, &c);
    return c;
}

#define ASSERT_COUNTS(ob, p, d, r)                                                                 \
    do {                                                                                           \
        sdm_outbox_counts c_ = counts(ob);                                                         \
        CU_ASSERT_EQUAL(c_.pending, (uint64_t)(p));                                                \
        CU_ASSERT_EQUAL(c_.delivered, (uint64_t)(d));                                              \
        CU_ASSERT_EQUAL(c_.rejected, (uint64_t)(r));                                               \
    } while (0)

/* ---- tests --------------------------------------------------------------------------- */

static void test_fifo(void)
{
    const char *dir = test_scratch_dir("fifo", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 0, 0, 0);
    uint64_t seq[6];
    for (uint64_t i = 0; i < 6; i++) {
        seq[i] = put_entry(ob, i);
        CU_ASSERT(seq[i] > 0);
        if (i)
            CU_ASSERT(seq[i] > seq[i - 1]);
    }
    ASSERT_COUNTS(ob, 6, 0, 0);

    /* everything, oldest first, byte for byte (row 0 and 5 are over 64 KiB) */
    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL_FATAL(s->n, 6);
    for (size_t k = 0; k < 6; k++) {
        CU_ASSERT_EQUAL(s->seq[k], seq[k]);
        CU_ASSERT(row_is(s, k, k));
    }
    seen_free(s);
    free(s);

    /* a window: after the second row, at most two */
    s = peek_all(ob, seq[1], 2);
    CU_ASSERT_EQUAL_FATAL(s->n, 2);
    CU_ASSERT_EQUAL(s->seq[0], seq[2]);
    CU_ASSERT_EQUAL(s->seq[1], seq[3]);
    CU_ASSERT(row_is(s, 0, 2) && row_is(s, 1, 3));
    seen_free(s);
    free(s);

    /* the callback stops it */
    s = calloc(1, sizeof(*s));
    s->stop_after = 1;
    CU_ASSERT_EQUAL(sdm_outbox_peek(ob, 0, 100, collect, s, NULL, 0), 1);
    CU_ASSERT_EQUAL(s->n, 1);
    CU_ASSERT_EQUAL(s->seq[0], seq[0]);
    seen_free(s);
    free(s);

    /* nothing after the last */
    s = peek_all(ob, seq[5], 10);
    CU_ASSERT_EQUAL(s->n, 0);
    free(s);
    /* peeking takes nothing out */
    ASSERT_COUNTS(ob, 6, 0, 0);
    sdm_outbox_close(&ob);
    CU_ASSERT_PTR_NULL(ob);
    sdm_outbox_close(&ob); /* idempotent */
}

static sqlite3 *open_file(const char *dir)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/outbox.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int read_rejected(const char *dir, uint64_t seq, char *code, char *msg, size_t cap)
{
    sqlite3 *db = open_file(dir);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (db &&
        sqlite3_prepare_v2(db, "SELECT rejected_code, rejected_message FROM entries WHERE seq = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
            snprintf(code, cap, "%s", sqlite3_column_text(st, 0));
            snprintf(msg, cap, "%s", sqlite3_column_text(st, 1));
            found = 1;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

static void test_done_and_reject(void)
{
    const char *dir = test_scratch_dir("settle", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t seq[5];
    for (uint64_t i = 0; i < 5; i++)
        seq[i] = put_entry(ob, i);
    char err[256];

    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[1], 10, err, sizeof(err)), 1);
    ASSERT_COUNTS(ob, 4, 1, 0);
    /* the ledger's answer to a resend counts once */
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[1], 10, err, sizeof(err)), 0);
    ASSERT_COUNTS(ob, 4, 1, 0);

    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[3], "unauthorized", "worker key not allowed", err,
                                      sizeof(err)), 1);
    ASSERT_COUNTS(ob, 3, 1, 1);
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[3], "bad_request", "again", err, sizeof(err)), 0);
    /* a rejected row is not delivered later, a delivered one not rejected */
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[3], 11, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[1], "bad_request", "late", err, sizeof(err)), 0);
    /* rows never put */
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, 999, 12, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, 0, 12, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, 999, "bad_request", NULL, err, sizeof(err)), 0);
    ASSERT_COUNTS(ob, 3, 1, 1);

    /* neither comes back from peek; the rest keep their order */
    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL_FATAL(s->n, 3);
    CU_ASSERT_EQUAL(s->seq[0], seq[0]);
    CU_ASSERT_EQUAL(s->seq[1], seq[2]);
    CU_ASSERT_EQUAL(s->seq[2], seq[4]);
    CU_ASSERT(row_is(s, 0, 0) && row_is(s, 1, 2) && row_is(s, 2, 4));
    seen_free(s);
    free(s);

    /* the rejected row is kept, readable, with the first code and message */
    char code[128], msg[128];
    CU_ASSERT_FATAL(read_rejected(dir, seq[3], code, msg, sizeof(code)));
    CU_ASSERT_STRING_EQUAL(code, "unauthorized");
    CU_ASSERT_STRING_EQUAL(msg, "worker key not allowed");
    /* the delivered one is gone from the file */
    CU_ASSERT_FALSE(read_rejected(dir, seq[1], code, msg, sizeof(code)));
    sdm_outbox_close(&ob);
}

static void test_reopen(void)
{
    const char *dir = test_scratch_dir("reopen", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t seq[4];
    for (uint64_t i = 0; i < 4; i++)
        seq[i] = put_entry(ob, i);
    char err[256];
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[0], 0, err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[1], "bad_request", "entry: no", err, sizeof(err)), 1);
    /* the newest row delivered: its number must still never be handed out again */
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[3], 1, err, sizeof(err)), 1);
    sdm_outbox_close(&ob);

    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 1, 2, 1);
    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL_FATAL(s->n, 1);
    CU_ASSERT_EQUAL(s->seq[0], seq[2]);
    CU_ASSERT(row_is(s, 0, 2));
    seen_free(s);
    free(s);
    uint64_t next = put_entry(ob, 4);
    CU_ASSERT(next > seq[3]);
    ASSERT_COUNTS(ob, 2, 2, 1);
    sdm_outbox_close(&ob);

    /* and once more: nothing changes by opening */
    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 2, 2, 1);
    sdm_outbox_close(&ob);
}

static uint64_t mark_of(sdm_outbox_t *ob, const char *model, int *tracked)
{
    uint64_t next = 12345;
    char err[256] = "";
    *tracked = sdm_outbox_receipts_next(ob, model, &next, err, sizeof(err));
    if (*tracked < 0)
        fprintf(stderr, "\nreceipts_next: %s\n", err);
    return *tracked == 1 ? next : 0;
}

/* The receipts mark: raised with the receipt in one transaction, never lowered, tracked
 * from a given size, kept across reopening; and a file made before the table had it gets it
 * at open, its rows untouched. */
static void test_receipts_mark(void)
{
    const char *dir = test_scratch_dir("receipts", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    char err[256];
    int tracked;
    mark_of(ob, "m", &tracked);
    CU_ASSERT_EQUAL(tracked, 0);
    size_t len;
    uint8_t *e = make_entry(0, &len);
    uint64_t seq = 0;
    CU_ASSERT_EQUAL(sdm_outbox_put_receipt(ob, "m", 4, e, len, &seq, err, sizeof(err)), 0);
    CU_ASSERT(seq > 0);
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 5);
    CU_ASSERT_EQUAL(tracked, 1);
    /* an older batch's receipt queued late does not lower it */
    CU_ASSERT_EQUAL(sdm_outbox_put_receipt(ob, "m", 2, e, len, NULL, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 5);
    ASSERT_COUNTS(ob, 2, 0, 0);
    /* tracking starts a model once; a tracked model keeps its mark */
    CU_ASSERT_EQUAL(sdm_outbox_track(ob, "n", 7, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(sdm_outbox_track(ob, "n", 0, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(sdm_outbox_track(ob, "m", 0, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(mark_of(ob, "n", &tracked), 7);
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 5);
    /* bad arguments change nothing */
    CU_ASSERT_EQUAL(sdm_outbox_put_receipt(ob, "", 1, e, len, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "model"));
    CU_ASSERT_EQUAL(sdm_outbox_put_receipt(ob, "m", 9, (const uint8_t *)"x", 1, NULL, err,
                                           sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "entry"));
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 5);
    ASSERT_COUNTS(ob, 2, 0, 0);
    sdm_outbox_close(&ob);

    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 5);
    CU_ASSERT_EQUAL(mark_of(ob, "n", &tracked), 7);
    sdm_outbox_close(&ob);

    /* a file from before the table: dropped here, added back at open, the rows kept */
    sqlite3 *db = open_file(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TABLE receipts", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 2, 0, 0);
    mark_of(ob, "m", &tracked);
    CU_ASSERT_EQUAL(tracked, 0);
    CU_ASSERT_EQUAL(sdm_outbox_put_receipt(ob, "m", 0, e, len, NULL, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(mark_of(ob, "m", &tracked), 1);
    sdm_outbox_close(&ob);
    free(e);
}

static int count_rejected_cb(void *ctx, const sdm_outbox_rejected_row *row)
{
    int *n = ctx;
    CU_ASSERT(row->seq > 0);
    CU_ASSERT(row->len > 0);
    CU_ASSERT(row->rejected_at > 0);
    CU_ASSERT(strcmp(row->code, "unauthorized") == 0 || strcmp(row->code, "too_large") == 0);
    (*n)++;
    return 0;
}

/* The operator's view and way back: the rejected rows listed, and requeued by code or all,
 * the counts following, the rows sent again in their old order. */
static void test_requeue(void)
{
    const char *dir = test_scratch_dir("requeue", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t seq[4];
    for (uint64_t i = 0; i < 4; i++)
        seq[i] = put_entry(ob, i);
    char err[256];
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[0], "unauthorized", "key", err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, seq[2], "too_large", "big", err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[3], 0, err, sizeof(err)), 1);
    ASSERT_COUNTS(ob, 1, 1, 2);
    int n = 0;
    CU_ASSERT_EQUAL(sdm_outbox_rejected(ob, count_rejected_cb, &n, err, sizeof(err)), 2);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(sdm_outbox_requeue(ob, "", err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(sdm_outbox_requeue(ob, "busy", err, sizeof(err)), 0);
    ASSERT_COUNTS(ob, 1, 1, 2);
    CU_ASSERT_EQUAL(sdm_outbox_requeue(ob, "unauthorized", err, sizeof(err)), 1);
    ASSERT_COUNTS(ob, 2, 1, 1);
    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL_FATAL(s->n, 2);
    CU_ASSERT_EQUAL(s->seq[0], seq[0]); /* back in its old place, first */
    CU_ASSERT_EQUAL(s->seq[1], seq[1]);
    seen_free(s);
    free(s);
    CU_ASSERT_EQUAL(sdm_outbox_requeue(ob, NULL, err, sizeof(err)), 1);
    ASSERT_COUNTS(ob, 3, 1, 0);
    sdm_outbox_close(&ob);
    /* the counts are the file's */
    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 3, 1, 0);
    sdm_outbox_close(&ob);
}

/* A child that puts n rows and leaves with _exit, never closing the database. */
static void test_exit_without_close(void)
{
    const char *dir = test_scratch_dir("exit", 1);
    const uint64_t n = 40;
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char err[256];
        sdm_outbox_t *ob = sdm_outbox_open(dir, err, sizeof(err));
        if (!ob)
            _exit(2);
        for (uint64_t i = 0; i < n; i++)
            if (put_entry(ob, i) != i + 1)
                _exit(3);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, n, 0, 0);
    seen_rows *s = peek_all(ob, 0, 1000);
    CU_ASSERT_EQUAL_FATAL(s->n, n);
    for (uint64_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(s->seq[i], i + 1);
        CU_ASSERT(row_is(s, i, i));
    }
    seen_free(s);
    free(s);
    sdm_outbox_close(&ob);
}

/* A child putting rows as fast as it can, reporting each returned seq down a pipe, killed
 * with SIGKILL: every reported row is there, in order, intact; at most one more. */
static void test_sigkill(void)
{
    const char *dir = test_scratch_dir("kill", 1);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    static const int delays_us[] = {0, 2000, 20000, 60000, 150000};
    uint64_t total = 0, acked_total = 0;
    for (size_t round = 0; round < sizeof(delays_us) / sizeof(delays_us[0]); round++) {
        int fds[2];
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            char err[256];
            sdm_outbox_t *ob = sdm_outbox_open(dir, err, sizeof(err));
            if (!ob)
                _exit(2);
            for (uint64_t i = total;; i++) {
                uint64_t seq = put_entry(ob, i);
                if (seq == 0 || write(fds[1], &seq, sizeof(seq)) != (ssize_t)sizeof(seq))
                    _exit(3);
            }
        }
        close(fds[1]);
        int base = delays_us[round];
        usleep((useconds_t)(base + (base ? rand() % (base / 2 + 1) : 0)));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        uint64_t seq, next = total + 1;
        while (read(fds[0], &seq, sizeof(seq)) == (ssize_t)sizeof(seq)) {
            CU_ASSERT_EQUAL(seq, next);
            next = seq + 1;
            acked_total++;
        }
        close(fds[0]);
        uint64_t acked = next - 1; /* rows 1..acked were reported durable */

        sdm_outbox_t *ob = open_ok(dir);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
        sdm_outbox_counts c = counts(ob);
        CU_ASSERT(c.pending >= acked && c.pending <= acked + 1);
        seen_rows *s = peek_all(ob, 0, MAX_SEEN);
        CU_ASSERT_EQUAL(s->n, c.pending);
        for (size_t k = 0; k < s->n; k++) {
            CU_ASSERT_EQUAL(s->seq[k], k + 1);
            CU_ASSERT(row_is(s, k, k));
        }
        if (c.pending < acked || c.pending > acked + 1)
            fprintf(stderr, "\nseed %u round %zu: %" PRIu64 " rows, %" PRIu64 " reported\n", seed,
                    round, c.pending, acked);
        total = c.pending;
        seen_free(s);
        free(s);
        sdm_outbox_close(&ob);
        if (total >= MAX_SEEN - 200)
            break;
    }
    /* the kills fell in the middle of streams, not before the first put */
    CU_ASSERT(acked_total >= 5);
    printf("(%" PRIu64 " rows acknowledged over the kills, seed %u) ", acked_total, seed);
}

/* One thread puts while another peeks and marks done, as the worker's threads do. */
typedef struct race {
    sdm_outbox_t *ob;
    uint64_t n;
    int failed;
} race;

static void *putter(void *arg)
{
    race *r = arg;
    for (uint64_t i = 0; i < r->n; i++)
        if (put_entry(r->ob, i) == 0)
            r->failed = 1;
    return NULL;
}

typedef struct settle_ctx {
    uint64_t seqs[64];
    size_t n;
} settle_ctx;

static int take_seq(void *ctx, const sdm_outbox_row *row)
{
    settle_ctx *s = ctx;
    s->seqs[s->n++] = row->seq;
    return 0;
}

static void test_two_threads(void)
{
    const char *dir = test_scratch_dir("threads", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    race r = {ob, 150, 0};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, putter, &r), 0);
    uint64_t done = 0, last = 0, order_ok = 1;
    time_t start = time(NULL);
    while (done < r.n && time(NULL) - start < 60) {
        settle_ctx s = {.n = 0};
        char err[256];
        int n = sdm_outbox_peek(ob, 0, 64, take_seq, &s, err, sizeof(err));
        CU_ASSERT_FATAL(n >= 0);
        for (size_t k = 0; k < s.n; k++) {
            order_ok &= s.seqs[k] > last;
            last = s.seqs[k];
            if (sdm_outbox_done(ob, s.seqs[k], done, err, sizeof(err)) == 1)
                done++;
        }
        if (n == 0)
            usleep(1000);
    }
    pthread_join(t, NULL);
    CU_ASSERT_FALSE(r.failed);
    CU_ASSERT(order_ok);
    CU_ASSERT_EQUAL(done, r.n);
    ASSERT_COUNTS(ob, 0, r.n, 0);
    sdm_outbox_close(&ob);
}

/* Reads one row's state from the file: 'p' pending, 'r' rejected, 'g' gone (delivered or never
 * put), 'e' on an error. */
static char row_state(sqlite3 *db, uint64_t seq)
{
    sqlite3_stmt *st = NULL;
    char state = 'e';
    if (sqlite3_prepare_v2(db, "SELECT rejected_code IS NOT NULL FROM entries WHERE seq = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        int rc = sqlite3_step(st);
        state = rc == SQLITE_ROW ? (sqlite3_column_int(st, 0) ? 'r' : 'p')
                : rc == SQLITE_DONE ? 'g'
                                    : 'e';
    }
    sqlite3_finalize(st);
    return state;
}

static int64_t counter(const char *dir, const char *name)
{
    sqlite3 *db = open_file(dir);
    sqlite3_stmt *st = NULL;
    int64_t v = INT64_MIN;
    if (db && sqlite3_prepare_v2(db, "SELECT value FROM counters WHERE name = ?", -1, &st, NULL) ==
                  SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* One call settles delivered and rejected rows together; rows not pending are reported as
 * such and change nothing; the counts and the file agree. */
static void test_settle_many(void)
{
    const char *dir = test_scratch_dir("settle-many", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t seq[8];
    for (uint64_t i = 0; i < 8; i++)
        seq[i] = put_entry(ob, i);
    char err[256] = "";
    CU_ASSERT_EQUAL(sdm_outbox_done(ob, seq[7], 2, err, sizeof(err)), 1); /* settled before */
    sdm_outbox_settlement it[] = {
        {.seq = seq[0], .index = 40},
        {.seq = seq[1], .code = "bad_request", .message = "entry.body.n: 0"},
        {.seq = seq[2], .index = 41},
        {.seq = seq[0], .index = 40},               /* the same answer twice in one round */
        {.seq = 999, .index = 9},                   /* never put */
        {.seq = seq[3], .code = "too_large"},       /* no message */
        {.seq = seq[7], .index = 2},                /* delivered in an earlier call */
        {.seq = seq[2], .code = "unauthorized"},    /* delivered earlier in this call */
    };
    const size_t n = sizeof(it) / sizeof(it[0]);
    for (size_t k = 0; k < n; k++)
        it[k].settled = -7; /* every one is written */
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, it, n, err, sizeof(err)), 4);
    static const int want[] = {1, 1, 1, 0, 0, 1, 0, 0};
    for (size_t k = 0; k < n; k++)
        CU_ASSERT_EQUAL(it[k].settled, want[k]);
    ASSERT_COUNTS(ob, 3, 3, 2);
    /* the highest index seen; `delivered` in the file is what the counts say */
    CU_ASSERT_EQUAL(counter(dir, "last_index"), 41);
    CU_ASSERT_EQUAL(counter(dir, "delivered"), 3);

    char code[128], msg[128];
    CU_ASSERT_FATAL(read_rejected(dir, seq[1], code, msg, sizeof(code)));
    CU_ASSERT_STRING_EQUAL(code, "bad_request");
    CU_ASSERT_STRING_EQUAL(msg, "entry.body.n: 0");
    CU_ASSERT_FATAL(read_rejected(dir, seq[3], code, msg, sizeof(code)));
    CU_ASSERT_STRING_EQUAL(code, "too_large");
    CU_ASSERT_STRING_EQUAL(msg, "");
    CU_ASSERT_FALSE(read_rejected(dir, seq[2], code, msg, sizeof(code))); /* delivered, gone */

    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL_FATAL(s->n, 3);
    for (size_t k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(s->seq[k], seq[4 + k]);
        CU_ASSERT(row_is(s, k, 4 + k));
    }
    seen_free(s);
    free(s);

    /* nothing to settle is no transaction and no change */
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, NULL, 0, err, sizeof(err)), 0);
    ASSERT_COUNTS(ob, 3, 3, 2);
    sdm_outbox_close(&ob);

    /* and as the file says after reopening */
    ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    ASSERT_COUNTS(ob, 3, 3, 2);
    sdm_outbox_close(&ob);
}

/* A call is all or nothing: a bad argument anywhere, or a statement failing in the middle of
 * the transaction, settles none of its rows, and they can be settled later. */
static void test_settle_all_or_nothing(void)
{
    const char *dir = test_scratch_dir("settle-atomic", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t seq[4];
    for (uint64_t i = 0; i < 4; i++)
        seq[i] = put_entry(ob, i);
    char err[256];

    sdm_outbox_settlement bad[] = {
        {.seq = seq[0], .index = 1},
        {.seq = seq[1], .code = "bad_request", .message = "m"},
        {.seq = seq[2], .code = ""},
    };
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, bad, 3, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "items[2].code"));
    CU_ASSERT(bad[0].settled == 0 && bad[1].settled == 0 && bad[2].settled == 0);
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, NULL, 2, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "items"));
    ASSERT_COUNTS(ob, 4, 0, 0);

    /* a trigger (someone else's, in the file) makes deleting row seq[2] fail: the rows
     * before it in the same call, done and rejected alike, are rolled back */
    sqlite3 *db = open_file(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE TRIGGER no_delete BEFORE DELETE ON entries WHEN old.seq = %"
             PRIu64 " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END", seq[2]);
    CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sdm_outbox_settlement it[] = {
        {.seq = seq[0], .index = 1},
        {.seq = seq[1], .code = "unauthorized", .message = "not on the list"},
        {.seq = seq[2], .index = 2},
        {.seq = seq[3], .index = 3},
    };
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, it, 4, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "refused by the test"));
    char want_row[64];
    snprintf(want_row, sizeof(want_row), "row %" PRIu64, seq[2]);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want_row));
    for (size_t k = 0; k < 4; k++)
        CU_ASSERT_EQUAL(it[k].settled, 0);
    ASSERT_COUNTS(ob, 4, 0, 0);
    for (size_t k = 0; k < 4; k++)
        CU_ASSERT_EQUAL(row_state(db, seq[k]), 'p');
    CU_ASSERT_EQUAL(counter(dir, "delivered"), 0);

    /* once the obstacle is gone the same call goes through */
    CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, "DROP TRIGGER no_delete", NULL, NULL, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL(sdm_outbox_settle(ob, it, 4, err, sizeof(err)), 4);
    ASSERT_COUNTS(ob, 0, 3, 1);
    CU_ASSERT_EQUAL(row_state(db, seq[0]), 'g');
    CU_ASSERT_EQUAL(row_state(db, seq[1]), 'r');
    CU_ASSERT_EQUAL(counter(dir, "delivered"), 3);
    sqlite3_close(db);
    sdm_outbox_close(&ob);
}

/* A child settles the oldest pending rows ten at a time (every fourth one rejected),
 * reporting the last seq of each call once it has returned, and is killed with SIGKILL
 * (again and again, each time a new child going on from where the last one stopped). The
 * file then holds every reported call's rows settled, the call in flight either whole or not
 * at all, and nothing after it: never half a call. */
#define KILL_ROWS 600
#define KILL_BATCH 10

static void test_settle_sigkill(void)
{
    const char *dir = test_scratch_dir("settle-kill", 1);
    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    for (uint64_t i = 0; i < KILL_ROWS; i++)
        CU_ASSERT_EQUAL_FATAL(put_entry(ob, i), i + 1);
    sdm_outbox_close(&ob);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    uint64_t settled_before = 0;
    int mid_stream = 0, unreported = 0;
    for (size_t round = 0; round < 8; round++) {
        int fds[2];
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            char err[256];
            sdm_outbox_t *cob = sdm_outbox_open(dir, err, sizeof(err));
            if (!cob)
                _exit(2);
            for (;;) {
                settle_ctx s = {.n = 0};
                if (sdm_outbox_peek(cob, 0, KILL_BATCH, take_seq, &s, err, sizeof(err)) < 0)
                    _exit(3);
                if (s.n == 0)
                    _exit(0);
                sdm_outbox_settlement it[KILL_BATCH];
                for (size_t k = 0; k < s.n; k++)
                    it[k] = (sdm_outbox_settlement){
                        .seq = s.seqs[k], .index = s.seqs[k],
                        .code = s.seqs[k] % 4 == 3 ? "bad_request" : NULL,
                        .message = s.seqs[k] % 4 == 3 ? "entry: refused" : NULL};
                if (sdm_outbox_settle(cob, it, s.n, err, sizeof(err)) != (int)s.n)
                    _exit(4);
                uint64_t last = s.seqs[s.n - 1];
                if (write(fds[1], &last, sizeof(last)) != (ssize_t)sizeof(last))
                    _exit(5);
            }
        }
        close(fds[1]);
        /* the first kill comes at once; the others after 1 to 4 calls have returned, and a
         * random moment into the next one */
        uint64_t reported = settled_before, last;
        int calls = round == 0 ? 0 : 1 + rand() % 4;
        for (int k = 0; k < calls && read(fds[0], &last, sizeof(last)) == (ssize_t)sizeof(last);
             k++) {
            CU_ASSERT(last > reported);
            reported = last;
        }
        usleep((useconds_t)(rand() % 1500));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CU_ASSERT((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                  (WIFEXITED(status) && WEXITSTATUS(status) == 0));
        while (read(fds[0], &last, sizeof(last)) == (ssize_t)sizeof(last)) {
            CU_ASSERT(last > reported);
            reported = last;
        }
        close(fds[0]);

        /* the settled rows are a prefix 1..x, in whole calls */
        sqlite3 *db = open_file(dir);
        CU_ASSERT_PTR_NOT_NULL_FATAL(db);
        uint64_t x = 0, n_gone = 0, n_rej = 0, wrong = 0;
        int prefix = 1;
        for (uint64_t q = 1; q <= KILL_ROWS; q++) {
            char st = row_state(db, q);
            if (st == 'p') {
                prefix = 0;
                continue;
            }
            if (!prefix || st == 'e')
                wrong++;
            x = q;
            if (st == 'g')
                n_gone++;
            else
                n_rej++;
            wrong += (st == 'r') != (q % 4 == 3);
        }
        sqlite3_close(db);
        CU_ASSERT_EQUAL(wrong, 0);
        uint64_t next = reported + KILL_BATCH > KILL_ROWS ? KILL_ROWS : reported + KILL_BATCH;
        CU_ASSERT(x == reported || x == next);
        if (x != reported && x != next)
            fprintf(stderr, "\nseed %u round %zu: rows 1..%" PRIu64 " settled, %" PRIu64
                    " reported\n", seed, round, x, reported);
        /* the counts, as a reopened outbox reads them, say the same */
        ob = open_ok(dir);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
        ASSERT_COUNTS(ob, KILL_ROWS - x, n_gone, n_rej);
        sdm_outbox_close(&ob);
        CU_ASSERT_EQUAL(counter(dir, "delivered"), (int64_t)n_gone);
        if (x > settled_before && x < KILL_ROWS)
            mid_stream++;
        unreported += x != reported; /* killed between the commit and its report */
        settled_before = x;
        if (x == KILL_ROWS)
            break;
    }
    /* some kills fell in the middle of a stream of settling, not before or after it */
    CU_ASSERT(mid_stream >= 2);
    printf("(%d kills mid-stream, %d after a commit not yet reported, %" PRIu64 " of %d rows "
           "settled, seed %u) ", mid_stream, unreported, settled_before, KILL_ROWS, seed);
}

static void test_bad_arguments(void)
{
    char err[256], dir[512];
    snprintf(dir, sizeof(dir), "%s", test_scratch_dir("bad", 1));
    err[0] = 0;
    CU_ASSERT_PTR_NULL(sdm_outbox_open(NULL, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dir"));
    err[0] = 0;
    CU_ASSERT_PTR_NULL(sdm_outbox_open("", err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dir"));
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    err[0] = 0;
    CU_ASSERT_PTR_NULL(sdm_outbox_open(missing, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));

    /* a SQLite file that is not an outbox is refused, and left as it was */
    const char *other = test_scratch_dir("bad-other", 1);
    char path[600];
    snprintf(path, sizeof(path), "%s/outbox.db", other);
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE mine(x); PRAGMA user_version = 7;", NULL, NULL,
                                 NULL), SQLITE_OK);
    sqlite3_close(db);
    err[0] = 0;
    CU_ASSERT_PTR_NULL(sdm_outbox_open(other, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "outbox.db"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "version"));

    sdm_outbox_t *ob = open_ok(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
    uint64_t first = put_entry(ob, 0);
    size_t len;
    uint8_t *e = make_entry(1, &len);
    uint64_t seq = 12345;
    static const struct {
        const char *kind;
        int entry; /* 0: NULL, 1: e, 2: e with a wrong first byte */
        size_t len;
        const char *field;
    } cases[] = {
        {NULL, 1, 10, "kind"},      {"bogus", 1, 10, "kind"},  {"", 1, 10, "kind"},
        {"receipt", 0, 10, "entry"}, {"proof", 1, 0, "entry"}, {"proof", 2, 10, "entry"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t bad[10] = {0x93};
        const uint8_t *p = cases[i].entry == 0 ? NULL : cases[i].entry == 1 ? e : bad;
        err[0] = 0;
        CU_ASSERT_EQUAL(sdm_outbox_put(ob, cases[i].kind, p, cases[i].len, &seq, err,
                                       sizeof(err)), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].field));
        CU_ASSERT_EQUAL(seq, 12345); /* untouched */
    }
    free(e);
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_peek(ob, 0, 0, collect, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "max"));
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_peek(ob, 0, 10, NULL, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cb"));
    err[0] = 0;
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, first, "", "m", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "code"));
    CU_ASSERT_EQUAL(sdm_outbox_reject(ob, first, NULL, "m", err, sizeof(err)), -1);

    /* none of it changed anything: one pending row, still the first one */
    ASSERT_COUNTS(ob, 1, 0, 0);
    seen_rows *s = peek_all(ob, 0, 100);
    CU_ASSERT_EQUAL(s->n, 1);
    if (s->n == 1) {
        CU_ASSERT_EQUAL(s->seq[0], first);
        CU_ASSERT(row_is(s, 0, 0));
    }
    seen_free(s);
    free(s);
    sdm_outbox_close(&ob);
    /* close is NULL-safe */
    sdm_outbox_close(NULL);
    sdm_outbox_close(&ob);
}

static int register_suites(void)
{
    CU_pSuite s = CU_add_suite("outbox", make_root, test_scratch_remove);
    if (!s)
        return -1;
    CU_add_test(s, "put and peek keep FIFO order and bytes", test_fifo);
    CU_add_test(s, "done and reject settle a row once", test_done_and_reject);
    CU_add_test(s, "one call settles many rows, each once", test_settle_many);
    CU_add_test(s, "a call settles all its rows or none", test_settle_all_or_nothing);
    CU_add_test(s, "SIGKILL while settling never leaves half a call", test_settle_sigkill);
    CU_add_test(s, "rows, counts and numbering survive reopening", test_reopen);
    CU_add_test(s, "a writer that exits without closing loses nothing", test_exit_without_close);
    CU_add_test(s, "SIGKILL mid-stream loses nothing acknowledged", test_sigkill);
    CU_add_test(s, "one thread puts while another settles", test_two_threads);
    CU_add_test(s, "bad arguments are named and change nothing", test_bad_arguments);
    CU_add_test(s, "the receipts mark", test_receipts_mark);
    CU_add_test(s, "rejected rows listed and requeued", test_requeue);
    return 0;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, register_suites);
}
