/* ledger_bench.c - times the ledger in this process over loopback TCP: durable appends per
 * second with 1, 4 and 16 clients (next to the raw fsync-bound SQLite commit rate measured in
 * the same directory and run), inclusion/consistency/entry latency at 10^6 entries (next to the
 * same calls in-process and a bare ZeroMQ echo), start-up rebuild time and bytes per entry.
 *
 * Everything a client sends is a real signed receipt made here before any timing, so the
 * figures include the ledger's whole path: frame decode, Ed25519 verify, body check, group
 * commit with fsync, checkpoint signing, reply. One JSON document goes to stdout, progress
 * to stderr. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>
#include <sqlite3.h>
#include <zmq.h>

#include "benchutil.h"
#include "body.h"
#include "jsonout.h"
#include "ledger.h"
#include "ledger_log.h"
#include "merkle.h"
#include "note.h"
#include "sign.h"
#include "wire.h"

#define H SDM_HASH_LEN
#define MAX_PATH_HASHES 64
#define MAX_CLIENT_CONFIGS 8

/* ---- options ------------------------------------------------------------------------------ */

typedef struct opts {
    const char *dir;
    uint64_t appends;      /* per configuration with the window */
    uint64_t sync_appends; /* per configuration with window 1 */
    uint32_t window;
    int clients[MAX_CLIENT_CONFIGS];
    int n_clients;
    uint64_t entries;  /* the log proofs are timed on */
    uint64_t requests; /* timed proof requests of each kind */
    uint64_t commits;  /* baseline commits */
    uint64_t build_group;
    int quick, keep;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sediment-ledger-bench [options]\n"
            "Runs a sediment ledger in this process on a fresh data dir and times it over\n"
            "loopback TCP with real signed receipts: durable appends/s for 1, 4 and 16 clients\n"
            "(next to the raw rate of fsync-bound SQLite commits in the same directory),\n"
            "inclusion, consistency and entry latency on a log of --entries entries (next to\n"
            "the in-process calls and a bare ZeroMQ echo), start-up rebuild time, and bytes of\n"
            "ledger.db per entry. One JSON document on stdout; progress on stderr.\n\n"
            "  --dir DIR          parent of the scratch data dirs (default /tmp); the disk timed\n"
            "  --appends N        appends per configuration with the window (default 20000)\n"
            "  --sync-appends N   appends per configuration with window 1 (default 2000)\n"
            "  --window W         requests in flight per client (default 32; window 1, what a\n"
            "                     REQ client gets, is always timed too)\n"
            "  --clients LIST     comma-separated client counts (default 1,4,16)\n"
            "  --entries N        entries of the log proofs are timed on (default 1000000)\n"
            "  --requests N       timed requests of each read kind (default 10000)\n"
            "  --commits N        baseline SQLite commits (default 1000)\n"
            "  --build-group N    entries per transaction when building that log (default 8192)\n"
            "  --quick            a small run: 2000 appends, 300 with window 1, 20000 entries,\n"
            "                     2000 requests, 200 commits (explicit options still win)\n"
            "  --keep             leave the scratch directory in place\n"
            "  --help             this text\n");
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ledger-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ledger-bench: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* xorshift64: reproducible random indexes */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* This thread's CPU seconds. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The threads of this process and their CPU seconds so far, from /proc/self/task: how the
 * ledger's own threads (whose handles this program does not have) spend the machine. */
#define MAX_TASKS 128

typedef struct task_cpu {
    int tid;
    char comm[32];
    double s;
} task_cpu;

static int snapshot_tasks(task_cpu *out)
{
    int n = 0;
    long hz = sysconf(_SC_CLK_TCK);
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_TASKS) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        /* after "(comm)": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
         * cmajflt utime stime */
        if (!open || !close || sscanf(close + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
                                      "%llu %llu", &ut, &st) != 2)
            continue;
        task_cpu *t = &out[n++];
        t->tid = atoi(e->d_name);
        snprintf(t->comm, sizeof(t->comm), "%.*s", (int)(close - open - 1), open + 1);
        t->s = (double)(ut + st) / hz;
    }
    closedir(d);
    return n;
}

static const task_cpu *find_task(const task_cpu *t, int n, int tid)
{
    for (int i = 0; i < n; i++)
        if (t[i].tid == tid)
            return &t[i];
    return NULL;
}

typedef struct quantiles {
    double p50, p99, max, mean;
} quantiles;

/* Order statistics of v[0..n) in the units given (v is sorted). */
static quantiles summarise(double *v, uint64_t n, double unit)
{
    quantiles q = {0, 0, 0, 0};
    if (n == 0)
        return q;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += v[i];
    q.p99 = bench_quantile(v, (int)n, 0.99) * unit;
    q.p50 = bench_quantile(v, (int)n, 0.5) * unit;
    q.max = v[n - 1] * unit;
    q.mean = sum / n * unit;
    return q;
}

/* ---- signed receipts, made before anything is timed --------------------------------------- */

#define N_WORKERS 4

static sdm_keypair workers[N_WORKERS];

static void make_workers(void)
{
    if (sdm_sodium_init() != 0)
        die("libsodium failed to initialise");
    for (int w = 0; w < N_WORKERS; w++) {
        workers[w].sk = sodium_malloc(SDM_SK_LEN);
        if (!workers[w].sk || crypto_sign_keypair(workers[w].pk, workers[w].sk) != 0)
            die("cannot make a worker key pair");
    }
}

static const sdm_keypair *worker_of(uint64_t receipt)
{
    return &workers[receipt % N_WORKERS];
}

/* Receipt number i as a worker writes it: its own contributor, shard, batch and digests (so
 * every body, and so every envelope, is distinct) and the leaf hash of its fields. *body and
 * *env are malloc'd. */
static void make_receipt(uint64_t i, uint8_t **body, size_t *body_len, uint8_t **env,
                         size_t *env_len)
{
    const sdm_keypair *kp = worker_of(i);
    char checkpoint[32], contributor[32], shard[48];
    snprintf(checkpoint, sizeof(checkpoint), "ckpt-%" PRIu64, i / 100000);
    snprintf(contributor, sizeof(contributor), "contributor-%04" PRIu64, i % 1000);
    snprintf(shard, sizeof(shard), "contributor-%04" PRIu64 "/shard-%" PRIu64, i % 1000,
             i / 1000);
    sdm_receipt r;
    memset(&r, 0, sizeof(r));
    r.leaf_fields = (sdm_leaf_fields){"bench-model", checkpoint, 0.01, contributor, shard, 64,
                                      {0}, {0}, {0}, 0};
    uint64_t ids[64];
    for (int k = 0; k < 64; k++)
        ids[k] = i * 64 + (uint64_t)k;
    sdm_digest_ids(ids, 64, r.leaf_fields.ids_digest);
    uint64_t tag[2] = {i, 0xda7a};
    sdm_digest_bytes((const uint8_t *)tag, sizeof(tag), r.leaf_fields.data_digest);
    sdm_digest_weights(NULL, 0, r.leaf_fields.weights_digest);
    memcpy(r.worker, kp->pk, SDM_PK_LEN);
    r.issued_at = 1700000000000000000ull + i * 1000;
    r.batch = i;
    r.store_size = i + 1;
    tag[1] = 0x5707e;
    sdm_digest_bytes((const uint8_t *)tag, sizeof(tag), r.store_root);
    if (sdm_leaf_hash(&r.leaf_fields, r.leaf) != 0 || sdm_receipt_encode(&r, body, body_len) != 0 ||
        sdm_envelope_sign(kp, *body, *body_len, env, env_len) != 0)
        die("cannot make receipt %" PRIu64, i);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* One append request, ready to send. */
typedef struct append_frame {
    char *data;
    size_t len;
    size_t env_len;
    uint8_t leaf[H]; /* SHA-256(0x00 || envelope): what the reply's leaf_hash must be */
} append_frame;

typedef struct receipt_pool {
    append_frame *frames;
    uint64_t n;
    double seconds, mean_env, mean_frame;
} receipt_pool;

static void make_pool(receipt_pool *p, uint64_t n)
{
    p->frames = xcalloc(n, sizeof(*p->frames));
    p->n = n;
    double t0 = bench_now(), env_sum = 0, frame_sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *body, *env;
        size_t body_len, env_len;
        make_receipt(i, &body, &body_len, &env, &env_len);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        pack_str(&pk, "id");
        msgpack_pack_uint64(&pk, i);
        pack_str(&pk, "op");
        pack_str(&pk, "append");
        pack_str(&pk, "entry");
        msgpack_sbuffer_write(&sb, (const char *)env, env_len); /* the envelope array, raw */
        append_frame *f = &p->frames[i];
        f->data = sb.data;
        f->len = sb.size;
        f->env_len = env_len;
        sdm_merkle_leaf_hash(env, env_len, f->leaf);
        env_sum += env_len;
        frame_sum += sb.size;
        free(body);
        free(env);
    }
    p->seconds = bench_now() - t0;
    p->mean_env = env_sum / n;
    p->mean_frame = frame_sum / n;
}

/* ---- scratch directories -------------------------------------------------------------------- */

static char scratch[512];

static void subdir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", scratch, name);
    if (mkdir(out, 0700) != 0)
        die("mkdir %s: %s", out, strerror(errno));
}

static void remove_tree(const char *path)
{
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        progress("could not remove %s", path);
}

static off_t file_size(const char *dir, const char *name)
{
    char path[800];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* ---- the ledger in this process -------------------------------------------------------------- */

typedef struct served {
    sdm_ledger_t *l;
    pthread_t thread;
    double startup_s;
    _Atomic int io_tid;      /* the thread in sdm_ledger_run */
    int new_tids[MAX_TASKS]; /* threads sdm_ledger_new started (writer, ZeroMQ's) */
    int n_new;
} served;

static void *serve_main(void *arg)
{
    served *s = arg;
    s->io_tid = (int)syscall(SYS_gettid);
    if (sdm_ledger_run(s->l) != 0)
        progress("sdm_ledger_run returned an error");
    return NULL;
}

static void served_start(served *s, const char *dir)
{
    sdm_ledger_opts lo = {.listen = "tcp://127.0.0.1:0", .data_dir = dir, .quiet = 1};
    char err[512] = "";
    task_cpu before[MAX_TASKS], after[MAX_TASKS];
    int nb = snapshot_tasks(before);
    double t0 = bench_now();
    s->l = sdm_ledger_new(&lo, err, sizeof(err));
    s->startup_s = bench_now() - t0;
    if (!s->l)
        die("ledger on %s: %s", dir, err);
    int na = snapshot_tasks(after);
    s->n_new = 0;
    for (int i = 0; i < na; i++)
        if (!find_task(before, nb, after[i].tid))
            s->new_tids[s->n_new++] = after[i].tid;
    s->io_tid = 0;
    if (pthread_create(&s->thread, NULL, serve_main, s) != 0)
        die("cannot start the ledger thread");
}

static void served_stop(served *s)
{
    sdm_ledger_stop(s->l);
    pthread_join(s->thread, NULL);
    sdm_ledger_destroy(&s->l);
}

/* ---- reply reading ------------------------------------------------------------------------- */

static int key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static const msgpack_object *field(const msgpack_object *map, const char *name)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, name))
            return &map->via.map.ptr[i].val;
    return NULL;
}

/* The reply's ok; on an error reply prints it and exits. */
static void expect_ok(const msgpack_object *reply, const char *what)
{
    const msgpack_object *ok = field(reply, "ok");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean) {
        fprintf(stderr, "ledger-bench: FAILED: %s: error reply: ", what);
        msgpack_object_print(stderr, *reply);
        fputc('\n', stderr);
        exit(1);
    }
}

static uint64_t uint_field(const msgpack_object *reply, const char *name, const char *what)
{
    const msgpack_object *v = field(reply, name);
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        die("%s: reply without an unsigned %s", what, name);
    return v->via.u64;
}

static const msgpack_object *bin_field(const msgpack_object *reply, const char *name,
                                       uint32_t len, const char *what)
{
    const msgpack_object *v = field(reply, name);
    if (!v || v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != len)
        die("%s: reply without %s as bin(%u)", what, name, len);
    return v;
}

/* ---- append throughput ------------------------------------------------------------------------ */

typedef struct append_run {
    const receipt_pool *pool;
    uint64_t n;
    double *sent_at, *latency;
    uint64_t *index, *size; /* per receipt, from the reply */
    pthread_barrier_t start;
} append_run;

typedef struct append_client {
    append_run *run;
    void *ctx;
    const char *ep;
    uint32_t window;
    uint64_t first, count; /* receipts [first, first + count) */
    double t_first, t_last;
    double cpu_s; /* this client thread's CPU while timed */
} append_client;

static void *append_client_main(void *arg)
{
    append_client *c = arg;
    append_run *run = c->run;
    void *sock = zmq_socket(c->ctx, ZMQ_DEALER);
    int zero = 0, timeout_ms = 60000;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (zmq_connect(sock, c->ep) != 0)
        die("connect %s: %s", c->ep, zmq_strerror(zmq_errno()));
    /* one untimed info round trip: the connection is up before the clock starts */
    static const char info[] = "\x81\xa2op\xa4info";
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, info, 9, 0) < 0 ||
        zmq_msg_recv(&m, sock, 0) < 0 || zmq_msg_recv(&m, sock, 0) < 0)
        die("info before appends: %s", zmq_strerror(zmq_errno()));
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    pthread_barrier_wait(&run->start);

    uint64_t sent = 0, done = 0;
    double cpu0 = thread_cpu_seconds();
    c->t_first = bench_now();
    while (done < c->count) {
        while (sent < c->count && sent - done < c->window) {
            uint64_t i = c->first + sent;
            const append_frame *f = &run->pool->frames[i];
            run->sent_at[i] = bench_now();
            /* REQ framing (empty delimiter), as every ledger client sends */
            if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, f->data, f->len, 0) < 0)
                die("send append %" PRIu64 ": %s", i, zmq_strerror(zmq_errno()));
            sent++;
        }
        if (zmq_msg_recv(&m, sock, 0) < 0 || !zmq_msg_more(&m) || zmq_msg_size(&m) != 0 ||
            zmq_msg_recv(&m, sock, 0) < 0)
            die("append reply: %s (no reply within %d s?)", zmq_strerror(zmq_errno()),
                timeout_ms / 1000);
        double now = bench_now();
        size_t off = 0;
        if (msgpack_unpack_next(&up, zmq_msg_data(&m), zmq_msg_size(&m), &off) !=
            MSGPACK_UNPACK_SUCCESS)
            die("append: unreadable reply");
        const msgpack_object *r = &up.data;
        expect_ok(r, "append");
        uint64_t id = uint_field(r, "id", "append");
        if (id < c->first || id >= c->first + c->count)
            die("append: reply id %" PRIu64 " is not one this client sent", id);
        if (run->latency[id] != 0)
            die("append: a second reply for id %" PRIu64, id);
        run->latency[id] = now - run->sent_at[id];
        run->index[id] = uint_field(r, "index", "append");
        run->size[id] = uint_field(r, "size", "append");
        const msgpack_object *leaf = bin_field(r, "leaf_hash", H, "append");
        if (memcmp(leaf->via.bin.ptr, run->pool->frames[id].leaf, H) != 0)
            die("append %" PRIu64 ": leaf_hash is not SHA-256(0x00 || envelope)", id);
        const msgpack_object *dup = field(r, "duplicate");
        if (!dup || dup->type != MSGPACK_OBJECT_BOOLEAN || dup->via.boolean)
            die("append %" PRIu64 ": expected duplicate: false (every receipt is distinct)", id);
        if (run->index[id] >= run->size[id])
            die("append %" PRIu64 ": index %" PRIu64 " not below size %" PRIu64, id,
                run->index[id], run->size[id]);
        /* the checkpoint's second line is the size it signs: it must be the reply's size */
        const msgpack_object *ck = field(r, "checkpoint");
        if (!ck || ck->type != MSGPACK_OBJECT_STR)
            die("append %" PRIu64 ": no checkpoint", id);
        const char *nl = memchr(ck->via.str.ptr, '\n', ck->via.str.size);
        if (!nl || strtoull(nl + 1, NULL, 10) != run->size[id])
            die("append %" PRIu64 ": the checkpoint does not sign size %" PRIu64, id,
                run->size[id]);
        done++;
    }
    c->t_last = bench_now();
    c->cpu_s = thread_cpu_seconds() - cpu0;
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&m);
    zmq_close(sock);
    return NULL;
}

typedef struct append_result {
    int clients;
    uint32_t window;
    uint64_t appends, commits, max_group;
    double seconds, per_s, cpu_s, mean_group;
    /* CPU seconds by thread: the ledger's I/O thread (decode, verify, reads, replies), its
     * writer (SQLite, checkpoint signing), its ZeroMQ threads, the client threads, the rest
     * (this program's ZeroMQ thread, main) */
    double cpu_io, cpu_writer, cpu_ledger_zmq, cpu_clients, cpu_other;
    quantiles lat_ms;
} append_result;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static append_result bench_appends(const receipt_pool *pool, void *ctx, int n_clients,
                                   uint32_t window, uint64_t n)
{
    char name[64], dir[700];
    snprintf(name, sizeof(name), "append-c%d-w%u", n_clients, window);
    subdir(dir, sizeof(dir), name);
    served s;
    served_start(&s, dir);
    append_run run = {.pool = pool, .n = n};
    run.sent_at = xcalloc(n, sizeof(double));
    run.latency = xcalloc(n, sizeof(double));
    run.index = xcalloc(n, sizeof(uint64_t));
    run.size = xcalloc(n, sizeof(uint64_t));
    pthread_barrier_init(&run.start, NULL, (unsigned)n_clients + 1);
    append_client *cl = xcalloc((size_t)n_clients, sizeof(*cl));
    pthread_t *th = xcalloc((size_t)n_clients, sizeof(*th));
    progress("appends: %d client(s), window %u, %" PRIu64 " appends", n_clients, window, n);
    for (int k = 0; k < n_clients; k++) {
        uint64_t lo = n * (uint64_t)k / (uint64_t)n_clients;
        uint64_t hi = n * (uint64_t)(k + 1) / (uint64_t)n_clients;
        cl[k] = (append_client){&run, ctx, sdm_ledger_endpoint(s.l), window, lo, hi - lo, 0, 0, 0};
        if (pthread_create(&th[k], NULL, append_client_main, &cl[k]) != 0)
            die("cannot start client thread %d", k);
    }
    task_cpu t0[MAX_TASKS], t1[MAX_TASKS];
    pthread_barrier_wait(&run.start);
    double cpu0 = cpu_seconds();
    int n0 = snapshot_tasks(t0);
    for (int k = 0; k < n_clients; k++)
        pthread_join(th[k], NULL);
    double cpu1 = cpu_seconds();
    int n1 = snapshot_tasks(t1); /* the ledger's threads are still there, idle */

    append_result res = {.clients = n_clients, .window = window, .appends = n};
    for (int i = 0; i < n1; i++) {
        const task_cpu *was = find_task(t0, n0, t1[i].tid);
        double d = t1[i].s - (was ? was->s : 0);
        int is_new = 0;
        for (int j = 0; j < s.n_new; j++)
            is_new |= s.new_tids[j] == t1[i].tid;
        if (t1[i].tid == s.io_tid)
            res.cpu_io += d;
        else if (is_new && strncmp(t1[i].comm, "ZMQbg", 5) == 0)
            res.cpu_ledger_zmq += d;
        else if (is_new)
            res.cpu_writer += d;
    }
    served_stop(&s);
    for (int k = 0; k < n_clients; k++)
        res.cpu_clients += cl[k].cpu_s;
    double t_first = INFINITY, t_last = 0;
    for (int k = 0; k < n_clients; k++) {
        if (cl[k].count == 0)
            continue;
        t_first = fmin(t_first, cl[k].t_first);
        t_last = fmax(t_last, cl[k].t_last);
    }
    res.seconds = t_last - t_first;
    res.per_s = n / res.seconds;
    res.cpu_s = cpu1 - cpu0;
    res.cpu_other = res.cpu_s - res.cpu_io - res.cpu_writer - res.cpu_ledger_zmq - res.cpu_clients;
    /* every index 0..n-1 exactly once: a fresh ledger, no duplicates, nothing lost */
    uint8_t *seen = xcalloc(n, 1);
    for (uint64_t i = 0; i < n; i++) {
        if (run.index[i] >= n || seen[run.index[i]])
            die("appends: index %" PRIu64 " given twice or beyond %" PRIu64, run.index[i], n);
        seen[run.index[i]] = 1;
    }
    free(seen);
    /* one commit per distinct size: each group signs the size after it */
    qsort(run.size, n, sizeof(uint64_t), cmp_u64);
    uint64_t run_len = 0;
    for (uint64_t i = 0; i < n; i++) {
        run_len = (i > 0 && run.size[i] == run.size[i - 1]) ? run_len + 1 : 1;
        if (i + 1 == n || run.size[i + 1] != run.size[i]) {
            res.commits++;
            if (run_len > res.max_group)
                res.max_group = run_len;
        }
    }
    if (run.size[n - 1] != n)
        die("appends: the last commit signs size %" PRIu64 ", expected %" PRIu64,
            run.size[n - 1], n);
    res.mean_group = (double)n / res.commits;
    res.lat_ms = summarise(run.latency, n, 1e3);
    progress("  %.0f appends/s, p50 %.2f ms, p99 %.2f ms, %" PRIu64 " commits (mean group %.1f)",
             res.per_s, res.lat_ms.p50, res.lat_ms.p99, res.commits, res.mean_group);
    progress("  CPU s over %.2f s: ledger I/O thread %.2f, writer %.2f, ledger zmq %.2f, "
             "clients %.2f, other %.2f", res.seconds, res.cpu_io, res.cpu_writer,
             res.cpu_ledger_zmq, res.cpu_clients, res.cpu_other);
    pthread_barrier_destroy(&run.start);
    free(run.sent_at);
    free(run.latency);
    free(run.index);
    free(run.size);
    free(cl);
    free(th);
    remove_tree(dir);
    return res;
}

/* ---- the baseline: one fsync-bound SQLite commit ----------------------------------------------- */

typedef struct baseline_result {
    uint64_t commits;
    double seconds, per_s;
    quantiles lat_ms;
} baseline_result;

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die("sqlite: %s: %s", sql, msg ? msg : "?");
}

/* Single-row INSERT + COMMIT, WAL, synchronous=FULL (the ledger's settings), a blob the size
 * of a mean envelope: the commit rate the disk allows without grouping. */
static baseline_result bench_baseline(uint64_t commits, size_t blob_len)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/baseline.db", scratch);
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("%s: %s", path, sqlite3_errmsg(db));
    exec_or_die(db, "PRAGMA journal_mode=WAL");
    exec_or_die(db, "PRAGMA synchronous=FULL");
    exec_or_die(db, "CREATE TABLE t(idx INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO t(idx, v) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        die("baseline: %s", sqlite3_errmsg(db));
    uint8_t *blob = xmalloc(blob_len);
    randombytes_buf(blob, blob_len);
    double *lat = xcalloc(commits, sizeof(double));
    progress("baseline: %" PRIu64 " single-row fsynced SQLite commits in %s", commits, scratch);
    double t0 = bench_now();
    for (uint64_t i = 0; i < commits; i++) {
        double t = bench_now();
        exec_or_die(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(st, 1, (sqlite3_int64)i);
        sqlite3_bind_blob(st, 2, blob, (int)blob_len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("baseline insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
        exec_or_die(db, "COMMIT");
        lat[i] = bench_now() - t;
    }
    baseline_result b = {.commits = commits, .seconds = bench_now() - t0};
    b.per_s = commits / b.seconds;
    b.lat_ms = summarise(lat, commits, 1e3);
    progress("  %.0f commits/s, p50 %.2f ms", b.per_s, b.lat_ms.p50);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(blob);
    free(lat);
    return b;
}

/* ---- where an append's time goes, stage by stage, in-process ---------------------------------- */

typedef struct stage_result {
    uint64_t n;
    double decode_us, open_us, body_us; /* I/O thread CPU per append */
    double sign_us;                     /* writer CPU per checkpoint signature */
    double group1_ms, group1_cpu_ms;    /* writer: a commit of one entry, wall and CPU */
    uint64_t big_group;
    double big_group_ms, big_group_cpu_ms; /* writer: a commit of big_group entries */
} stage_result;

static sdm_ledger_log_t *open_log(const char *dir, sdm_keypair **kp)
{
    char err[512] = "";
    *kp = sdm_keypair_load_or_create(dir, "ledger", err, sizeof(err));
    if (!*kp)
        die("ledger key in %s: %s", dir, err);
    sdm_ledger_log_t *log = sdm_ledger_log_open(dir, NULL, *kp, err, sizeof(err));
    if (!log)
        die("ledger log in %s: %s", dir, err);
    return log;
}

/* Appends items[0..n) as one group; adds its wall and CPU seconds. */
static void commit_group(sdm_ledger_log_t *log, sdm_ledger_item *items, uint64_t n,
                         double *wall, double *cpu)
{
    uint64_t size = 0;
    char *note = NULL, err[512] = "";
    double t0 = bench_now(), c0 = thread_cpu_seconds();
    if (sdm_ledger_log_append(log, items, n, &size, &note, err, sizeof(err)) != 0)
        die("log append: %s", err);
    *cpu += thread_cpu_seconds() - c0; /* the rest of the wall time waits on the disk */
    *wall += bench_now() - t0;
    free(note);
}

/* The I/O thread's checks of an append and the writer's commits, each stage timed alone over
 * many appends in thread CPU time (other work on the machine inflates wall time, not this). */
static stage_result bench_stages(const receipt_pool *pool)
{
    char dir[700];
    subdir(dir, sizeof(dir), "stages");
    sdm_keypair *kp = NULL;
    sdm_ledger_log_t *log = open_log(dir, &kp);
    stage_result r = {0};
    r.big_group = pool->n >= 1024 + 100 ? 1024 : pool->n / 2;
    uint64_t singles = pool->n - r.big_group < 100 ? pool->n - r.big_group : 100;
    uint64_t n = r.n = r.big_group + singles;
    progress("stages: checks of %" PRIu64 " appends, %" PRIu64 " single-entry commits and one "
             "of %" PRIu64 " entries, straight into the log", n, singles, r.big_group);
    sdm_ledger_request *req = xcalloc(n, sizeof(*req));
    sdm_body *body = xcalloc(n, sizeof(*body));
    sdm_ledger_item *items = xcalloc(n, sizeof(*items));
    const uint8_t **bodies = xcalloc(n, sizeof(*bodies));
    size_t *body_lens = xcalloc(n, sizeof(*body_lens));
    uint8_t (*keys)[SDM_PK_LEN] = xcalloc(n, sizeof(*keys));
    sdm_wire_limits lim = {0, 0};
    sdm_wire_error e = {0, ""};

    double c0 = thread_cpu_seconds();
    for (uint64_t i = 0; i < n; i++)
        if (sdm_wire_decode_ledger((const uint8_t *)pool->frames[i].data, pool->frames[i].len,
                                   &lim, &req[i], &e) != SDM_WIRE_OK)
            die("decode: %s", e.message);
    double c1 = thread_cpu_seconds();
    for (uint64_t i = 0; i < n; i++)
        if (sdm_envelope_open(req[i].entry, req[i].entry_len, &bodies[i], &body_lens[i], keys[i],
                              &e) != SDM_WIRE_OK)
            die("envelope: %s", e.message);
    double c2 = thread_cpu_seconds();
    for (uint64_t i = 0; i < n; i++)
        if (sdm_body_read(bodies[i], body_lens[i], keys[i], &body[i], &e) != SDM_WIRE_OK)
            die("body: %s", e.message);
    double c3 = thread_cpu_seconds();
    r.decode_us = (c1 - c0) / n * 1e6;
    r.open_us = (c2 - c1) / n * 1e6;
    r.body_us = (c3 - c2) / n * 1e6;

    for (uint64_t i = 0; i < n; i++)
        items[i] = (sdm_ledger_item){.entry = req[i].entry, .entry_len = req[i].entry_len,
                                     .body = &body[i]};
    double wall1 = 0, cpu1 = 0, wall_big = 0, cpu_big = 0;
    for (uint64_t i = 0; i < singles; i++)
        commit_group(log, &items[r.big_group + i], 1, &wall1, &cpu1);
    commit_group(log, items, r.big_group, &wall_big, &cpu_big);
    for (uint64_t i = 0; i < n; i++)
        if (items[i].duplicate || memcmp(items[i].leaf, pool->frames[i].leaf, H) != 0)
            die("log append: entry %" PRIu64 " was a duplicate or got another leaf hash", i);
    r.group1_ms = wall1 / singles * 1e3;
    r.group1_cpu_ms = cpu1 / singles * 1e3;
    r.big_group_ms = wall_big * 1e3;
    r.big_group_cpu_ms = cpu_big * 1e3;

    /* the signature each commit adds (a checkpoint note like the log's) */
    char *ck = sdm_ledger_log_checkpoint(log), *text_end = ck ? strstr(ck, "\n\n") : NULL;
    if (!text_end)
        die("stages: the log has no checkpoint note");
    c0 = thread_cpu_seconds();
    for (int i = 0; i < 200; i++) {
        char *note = NULL, err[256] = "";
        size_t note_len = 0;
        if (sdm_note_sign(kp, sdm_ledger_log_origin(log), ck, (size_t)(text_end - ck) + 1, &note,
                          &note_len, err, sizeof(err)) != SDM_NOTE_OK)
            die("stages: signing a checkpoint: %s", err);
        free(note);
    }
    r.sign_us = (thread_cpu_seconds() - c0) / 200 * 1e6;
    free(ck);
    progress("  CPU per append: decode %.1f us, envelope (Ed25519 verify) %.1f us, body %.1f us; "
             "commit of 1: %.2f ms (%.2f ms CPU), of %" PRIu64 ": %.1f ms (%.1f ms CPU); "
             "checkpoint signature %.1f us CPU",
             r.decode_us, r.open_us, r.body_us, r.group1_ms, r.group1_cpu_ms, r.big_group,
             r.big_group_ms, r.big_group_cpu_ms, r.sign_us);
    for (uint64_t i = 0; i < n; i++) {
        sdm_ledger_request_free(&req[i]);
        sdm_body_free(&body[i]);
    }
    free(req);
    free(body);
    free(items);
    free(bodies);
    free(body_lens);
    free(keys);
    sdm_ledger_log_close(&log);
    sdm_keypair_destroy(&kp);
    remove_tree(dir);
    return r;
}

/* ---- a big log: proofs, start-up, size ------------------------------------------------------- */

typedef struct read_result {
    uint64_t requests;
    quantiles wire_us, local_us;
    double mean_hashes, mean_reply_bytes;
} read_result;

typedef struct proof_result {
    uint64_t entries;
    double build_s, sign_s, startup_s;
    read_result inclusion, consistency, entry;
    quantiles echo_us;
    size_t echo_bytes;
    /* size after a TRUNCATE checkpoint */
    off_t db_bytes, wal_bytes;
    double mean_env;
    char tables[2048]; /* JSON object of dbstat bytes per table/index, or "null" */
} proof_result;

/* Builds a log of n entries in dir straight through sdm_ledger_log_append in large groups
 * of freshly signed receipts; returns the log (open) and fills tree with the same leaves,
 * computed independently, to check every proof the ledger hands out. */
static sdm_ledger_log_t *build_log(const char *dir, uint64_t n, uint64_t group, sdm_keypair **kp,
                                   sdm_merkle_t *tree, proof_result *pr)
{
    sdm_ledger_log_t *log = open_log(dir, kp);
    sdm_ledger_item *items = xcalloc(group, sizeof(*items));
    sdm_body *bodies = xcalloc(group, sizeof(*bodies));
    uint8_t **envs = xcalloc(group, sizeof(*envs));
    double t0 = bench_now(), sign_s = 0, env_sum = 0, last_report = t0;
    for (uint64_t done = 0; done < n;) {
        uint64_t g = n - done < group ? n - done : group;
        double ts = bench_now();
        for (uint64_t i = 0; i < g; i++) {
            uint8_t *body;
            size_t body_len, env_len;
            /* numbers past the append pool's, so no envelope repeats one timed above */
            uint64_t num = (1ull << 40) + done + i;
            make_receipt(num, &body, &body_len, &envs[i], &env_len);
            sdm_wire_error e = {0, ""};
            if (sdm_body_read(body, body_len, worker_of(num)->pk, &bodies[i], &e) != SDM_WIRE_OK)
                die("body of entry %" PRIu64 ": %s", done + i, e.message);
            free(body);
            items[i] = (sdm_ledger_item){.entry = envs[i], .entry_len = env_len,
                                         .body = &bodies[i]};
            env_sum += env_len;
        }
        sign_s += bench_now() - ts;
        uint64_t size = 0;
        char *note = NULL, err[512] = "";
        if (sdm_ledger_log_append(log, items, g, &size, &note, err, sizeof(err)) != 0)
            die("building the log: %s", err);
        free(note);
        for (uint64_t i = 0; i < g; i++) {
            uint8_t leaf[H];
            sdm_merkle_leaf_hash(envs[i], items[i].entry_len, leaf);
            if (items[i].duplicate || items[i].index != done + i ||
                memcmp(leaf, items[i].leaf, H) != 0 || sdm_merkle_append(tree, leaf) != 0)
                die("building the log: entry %" PRIu64 " not appended as expected", done + i);
            free(envs[i]);
            sdm_body_free(&bodies[i]);
        }
        done += g;
        if (size != done)
            die("building the log: size %" PRIu64 " after %" PRIu64 " entries", size, done);
        if (bench_now() - last_report > 5 || done == n) {
            last_report = bench_now();
            progress("  %" PRIu64 " / %" PRIu64 " entries (%.0f s, of which %.0f s making "
                     "signed receipts)", done, n, last_report - t0, sign_s);
        }
    }
    pr->build_s = bench_now() - t0;
    pr->sign_s = sign_s;
    pr->mean_env = env_sum / n;
    free(items);
    free(bodies);
    free(envs);
    return log;
}

/* A request client (REQ framing, one at a time) */
typedef struct req_client {
    void *sock;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    zmq_msg_t reply;
    msgpack_unpacked up;
} req_client;

static void req_open(req_client *c, void *ctx, const char *ep)
{
    c->sock = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0, timeout_ms = 60000;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (zmq_connect(c->sock, ep) != 0)
        die("connect %s: %s", ep, zmq_strerror(zmq_errno()));
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    zmq_msg_init(&c->reply);
    msgpack_unpacked_init(&c->up);
}

static void req_close(req_client *c)
{
    zmq_close(c->sock);
    msgpack_sbuffer_destroy(&c->sb);
    zmq_msg_close(&c->reply);
    msgpack_unpacked_destroy(&c->up);
}

/* Sends the packed request and waits; returns the round trip in seconds. The reply is in
 * c->up (checked ok). */
static double req_call(req_client *c, const char *what)
{
    double t0 = bench_now();
    if (zmq_send(c->sock, c->sb.data, c->sb.size, 0) < 0 ||
        zmq_msg_recv(&c->reply, c->sock, 0) < 0)
        die("%s: %s", what, zmq_strerror(zmq_errno()));
    double t = bench_now() - t0;
    msgpack_sbuffer_clear(&c->sb);
    size_t off = 0;
    if (msgpack_unpack_next(&c->up, zmq_msg_data(&c->reply), zmq_msg_size(&c->reply), &off) !=
        MSGPACK_UNPACK_SUCCESS)
        die("%s: unreadable reply", what);
    expect_ok(&c->up.data, what);
    return t;
}

/* The reply's `hashes` must be exactly want[0..n). */
static void check_hashes(const msgpack_object *reply, uint8_t want[][H], size_t n,
                         const char *what, uint64_t a, uint64_t b)
{
    const msgpack_object *hs = field(reply, "hashes");
    if (!hs || hs->type != MSGPACK_OBJECT_ARRAY || hs->via.array.size != n)
        die("%s(%" PRIu64 ", %" PRIu64 "): expected %zu hashes", what, a, b, n);
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *h = &hs->via.array.ptr[i];
        if (h->type != MSGPACK_OBJECT_BIN || h->via.bin.size != H ||
            memcmp(h->via.bin.ptr, want[i], H) != 0)
            die("%s(%" PRIu64 ", %" PRIu64 "): hash %zu differs from the independent tree's",
                what, a, b, i);
    }
}

typedef struct echo_arg {
    void *sock;
    size_t reply_len;
    uint64_t count;
} echo_arg;

/* Answers exactly count requests with reply_len bytes each, then closes its socket. */
static void *echo_main(void *arg)
{
    echo_arg *e = arg;
    char *payload = xcalloc(e->reply_len, 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (uint64_t i = 0; i < e->count; i++)
        if (zmq_msg_recv(&m, e->sock, 0) < 0 || zmq_send(e->sock, payload, e->reply_len, 0) < 0)
            break;
    zmq_msg_close(&m);
    zmq_close(e->sock);
    free(payload);
    return NULL;
}

/* A bare REQ/REP echo over loopback TCP, the floor under any request's latency: a thread
 * answering count requests. The caller's client connects to e->ep. */
static pthread_t echo_start(echo_arg *e, void *ctx, char *ep, size_t ep_cap)
{
    e->sock = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    zmq_setsockopt(e->sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(e->sock, "tcp://127.0.0.1:*") != 0)
        die("echo bind: %s", zmq_strerror(zmq_errno()));
    zmq_getsockopt(e->sock, ZMQ_LAST_ENDPOINT, ep, &ep_cap);
    pthread_t t;
    if (pthread_create(&t, NULL, echo_main, e) != 0)
        die("cannot start the echo thread");
    return t;
}

/* One request of the kind (0 inclusion, 1 consistency, 2 entry) at a random place in the
 * log of n entries; returns its round trip. The answer is then checked against the
 * independent tree, outside the timing. */
static double read_once(req_client *c, int kind, uint64_t id, uint64_t *rng, uint64_t n,
                        const sdm_merkle_t *tree, double *hashes, double *bytes)
{
    static const char *const names[3] = {"inclusion", "consistency", "entry"};
    uint8_t want[MAX_PATH_HASHES][H], leaf[H];
    size_t nw = 0;
    uint64_t a = next_u64(rng) % n, b = n;
    msgpack_pack_map(&c->pk, kind == 2 ? 3 : 4);
    pack_str(&c->pk, "id");
    msgpack_pack_uint64(&c->pk, id);
    pack_str(&c->pk, "op");
    pack_str(&c->pk, names[kind]);
    if (kind == 0) {
        pack_str(&c->pk, "index");
        msgpack_pack_uint64(&c->pk, a);
        pack_str(&c->pk, "size");
        msgpack_pack_uint64(&c->pk, b);
    } else if (kind == 1) {
        a = 1 + a % (n - 1); /* 1 <= from < to = n: a non-empty proof */
        pack_str(&c->pk, "from");
        msgpack_pack_uint64(&c->pk, a);
        pack_str(&c->pk, "to");
        msgpack_pack_uint64(&c->pk, b);
    } else {
        pack_str(&c->pk, "index");
        msgpack_pack_uint64(&c->pk, a);
    }
    double t = req_call(c, names[kind]);
    const msgpack_object *r = &c->up.data;
    *bytes += zmq_msg_size(&c->reply);
    if (kind == 0) {
        if (sdm_merkle_inclusion(tree, a, b, want, &nw) != 0 || sdm_merkle_leaf(tree, a, leaf) != 0)
            die("reference inclusion(%" PRIu64 ")", a);
        if (memcmp(bin_field(r, "leaf_hash", H, "inclusion")->via.bin.ptr, leaf, H) != 0)
            die("inclusion(%" PRIu64 "): wrong leaf_hash", a);
        check_hashes(r, want, nw, "inclusion", a, b);
        *hashes += nw;
    } else if (kind == 1) {
        if (sdm_merkle_consistency(tree, a, b, want, &nw) != 0)
            die("reference consistency(%" PRIu64 ")", a);
        check_hashes(r, want, nw, "consistency", a, b);
        *hashes += nw;
    } else {
        /* the envelope comes embedded; packed again it must hash to the leaf */
        const msgpack_object *e = field(r, "entry");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (!e || e->type != MSGPACK_OBJECT_ARRAY || msgpack_pack_object(&pk, *e) != 0)
            die("entry(%" PRIu64 "): no envelope", a);
        sdm_merkle_leaf_hash((const uint8_t *)sb.data, sb.size, leaf);
        msgpack_sbuffer_destroy(&sb);
        if (sdm_merkle_leaf(tree, a, want[0]) != 0 || memcmp(leaf, want[0], H) != 0)
            die("entry(%" PRIu64 "): the envelope does not hash to leaf %" PRIu64, a, a);
    }
    return t;
}

static void bench_reads(proof_result *pr, sdm_ledger_log_t *log, const sdm_merkle_t *tree,
                        void *ctx, const char *dir, uint64_t requests)
{
    uint64_t n = pr->entries, rng = 0x2545f4914f6cdd1dull;
    uint8_t path[MAX_PATH_HASHES][H], leaf[H];
    size_t np = 0;
    double *lat = xcalloc(requests, sizeof(double));
    char err[512] = "";

    /* in-process, on the log the ledger will open: what a request costs without the wire */
    progress("reads in-process: %" PRIu64 " inclusion, consistency and entry calls", requests);
    for (uint64_t i = 0; i < requests; i++) {
        uint64_t idx = next_u64(&rng) % n;
        double t0 = bench_now();
        if (sdm_ledger_inclusion(log, idx, n, leaf, path, &np) != 0)
            die("in-process inclusion(%" PRIu64 ", %" PRIu64 ")", idx, n);
        lat[i] = bench_now() - t0;
    }
    pr->inclusion.local_us = summarise(lat, requests, 1e6);
    for (uint64_t i = 0; i < requests; i++) {
        uint64_t from = 1 + next_u64(&rng) % (n - 1 ? n - 1 : 1);
        double t0 = bench_now();
        if (sdm_ledger_consistency(log, from, n, path, &np) != 0)
            die("in-process consistency(%" PRIu64 ", %" PRIu64 ")", from, n);
        lat[i] = bench_now() - t0;
    }
    pr->consistency.local_us = summarise(lat, requests, 1e6);
    sdm_ledger_reader_t *reader = sdm_ledger_reader_open(log, err, sizeof(err));
    if (!reader)
        die("reader: %s", err);
    for (uint64_t i = 0; i < requests; i++) {
        uint64_t idx = next_u64(&rng) % n;
        uint8_t *env = NULL;
        size_t len = 0;
        double t0 = bench_now();
        if (sdm_ledger_entry(reader, idx, &env, &len, err, sizeof(err)) != 0)
            die("in-process entry(%" PRIu64 "): %s", idx, err);
        lat[i] = bench_now() - t0;
        free(env);
    }
    pr->entry.local_us = summarise(lat, requests, 1e6);
    sdm_ledger_reader_close(&reader);
    sdm_ledger_log_close(&log);

    /* the ledger on that data dir: start-up rebuilds the tree from every envelope */
    progress("starting the ledger on %" PRIu64 " entries (rebuild from the envelopes)", n);
    served s;
    served_start(&s, dir);
    pr->startup_s = s.startup_s;
    progress("  started in %.2f s", pr->startup_s);
    req_client c;
    req_open(&c, ctx, sdm_ledger_endpoint(s.l));
    msgpack_pack_map(&c.pk, 1);
    pack_str(&c.pk, "op");
    pack_str(&c.pk, "info");
    req_call(&c, "info");
    if (uint_field(&c.up.data, "size", "info") != n)
        die("info: the ledger reports another size than the %" PRIu64 " entries built", n);

    /* the three kinds and the echo take turns, so that all four see the same machine (other
     * work on it comes and goes) */
    read_result *rr[3] = {&pr->inclusion, &pr->consistency, &pr->entry};
    double hashes[3] = {0, 0, 0}, bytes[3] = {0, 0, 0};
    double *lats[4];
    for (int k = 0; k < 4; k++)
        lats[k] = xcalloc(requests, sizeof(double));
    for (uint64_t i = 0; i < 100; i++) /* warm-up; sizes the echo's reply */
        for (int kind = 0; kind < 3; kind++)
            read_once(&c, kind, i, &rng, n, tree, &hashes[kind], &bytes[kind]);
    pr->echo_bytes = (size_t)(bytes[0] / 100 + 0.5);
    echo_arg e = {NULL, pr->echo_bytes, requests};
    char ep[256];
    pthread_t et = echo_start(&e, ctx, ep, sizeof(ep));
    req_client ec;
    req_open(&ec, ctx, ep);
    char echo_req[40] = {0}; /* about an inclusion request's size */
    progress("reads over the socket, taking turns: %" PRIu64 " each of inclusion, consistency, "
             "entry (after 100 warm-up each) and a bare echo with %zu-byte replies", requests,
             pr->echo_bytes);
    for (uint64_t i = 0; i < requests; i++) {
        for (int kind = 0; kind < 3; kind++)
            lats[kind][i] = read_once(&c, kind, 100 + i, &rng, n, tree, &hashes[kind],
                                      &bytes[kind]);
        double t0 = bench_now();
        if (zmq_send(ec.sock, echo_req, sizeof(echo_req), 0) < 0 ||
            zmq_msg_recv(&ec.reply, ec.sock, 0) < 0)
            die("echo: %s", zmq_strerror(zmq_errno()));
        lats[3][i] = bench_now() - t0;
    }
    pthread_join(et, NULL);
    req_close(&ec);
    pr->echo_us = summarise(lats[3], requests, 1e6);
    for (int kind = 0; kind < 3; kind++) {
        rr[kind]->requests = requests;
        rr[kind]->wire_us = summarise(lats[kind], requests, 1e6);
        rr[kind]->mean_hashes = hashes[kind] / (requests + 100);
        rr[kind]->mean_reply_bytes = bytes[kind] / (requests + 100);
        progress("  %s: p50 %.1f us, p99 %.1f us, max %.1f us (in-process p50 %.2f us)",
                 kind == 0 ? "inclusion" : kind == 1 ? "consistency" : "entry",
                 rr[kind]->wire_us.p50, rr[kind]->wire_us.p99, rr[kind]->wire_us.max,
                 rr[kind]->local_us.p50);
    }
    progress("  echo: p50 %.1f us, p99 %.1f us", pr->echo_us.p50, pr->echo_us.p99);
    for (int k = 0; k < 4; k++)
        free(lats[k]);
    req_close(&c);
    served_stop(&s);
    free(lat);
}

/* Bytes of ledger.db after folding the WAL in from a separate connection, and per
 * table/index when SQLite has the dbstat table. */
static void measure_size(proof_result *pr, const char *dir)
{
    char path[800];
    snprintf(path, sizeof(path), "%s/ledger.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("%s: %s", path, sqlite3_errmsg(db));
    exec_or_die(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    pr->db_bytes = file_size(dir, "ledger.db");
    pr->wal_bytes = file_size(dir, "ledger.db-wal");
    sqlite3_stmt *st = NULL;
    snprintf(pr->tables, sizeof(pr->tables), "null");
    if (sqlite3_prepare_v2(db, "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name "
                           "ORDER BY 2 DESC", -1, &st, NULL) == SQLITE_OK) {
        size_t o = (size_t)snprintf(pr->tables, sizeof(pr->tables), "{");
        int first = 1;
        while (sqlite3_step(st) == SQLITE_ROW && o < sizeof(pr->tables) - 100) {
            o += (size_t)snprintf(pr->tables + o, sizeof(pr->tables) - o, "%s\"%s\": %lld",
                                  first ? "" : ", ", (const char *)sqlite3_column_text(st, 0),
                                  (long long)sqlite3_column_int64(st, 1));
            first = 0;
        }
        snprintf(pr->tables + o, sizeof(pr->tables) - o, "}");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void bench_proofs(proof_result *pr, void *ctx, uint64_t entries, uint64_t requests,
                         uint64_t group)
{
    char dir[700];
    subdir(dir, sizeof(dir), "proofs");
    pr->entries = entries;
    sdm_merkle_t *tree = sdm_merkle_new();
    if (!tree)
        die("out of memory for the reference tree");
    sdm_keypair *kp = NULL;
    progress("building a log of %" PRIu64 " entries (signing each receipt), groups of %" PRIu64,
             entries, group);
    sdm_ledger_log_t *log = build_log(dir, entries, group, &kp, tree, pr);
    bench_reads(pr, log, tree, ctx, dir, requests); /* closes log */
    sdm_keypair_destroy(&kp);
    sdm_merkle_destroy(&tree);
    measure_size(pr, dir);
    progress("size: %.1f bytes an entry (ledger.db %lld, -wal %lld) for %.1f-byte envelopes",
             (double)(pr->db_bytes + pr->wal_bytes) / entries, (long long)pr->db_bytes,
             (long long)pr->wal_bytes, pr->mean_env);
    remove_tree(dir);
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static void json_q(FILE *f, const char *name, const quantiles *q, int digits)
{
    fprintf(f, "\"%s\": {\"p50\": %.*f, \"p99\": %.*f, \"max\": %.*f, \"mean\": %.*f}", name,
            digits, q->p50, digits, q->p99, digits, q->max, digits, q->mean);
}

static void loadavg(double out[3])
{
    out[0] = out[1] = out[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3)
            out[0] = out[1] = out[2] = -1;
        fclose(f);
    }
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 2;
            colon[strcspn(colon, "\n")] = 0;
            snprintf(out, cap, "%s", colon);
            break;
        }
    }
    fclose(f);
}

/* ---- main ------------------------------------------------------------------------------------- */

static int parse_u64(const char *v, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || !end || *end || v[0] == '-' || x == 0)
        return -1;
    *out = x;
    return 0;
}

static int parse_clients(const char *v, opts *o)
{
    o->n_clients = 0;
    for (const char *p = v; *p;) {
        char *end = NULL;
        long c = strtol(p, &end, 10);
        if (end == p || c < 1 || c > 1024 || o->n_clients == MAX_CLIENT_CONFIGS)
            return -1;
        o->clients[o->n_clients++] = (int)c;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return o->n_clients ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o = {.dir = "/tmp", .window = 32, .clients = {1, 4, 16}, .n_clients = 3};
    uint64_t window = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.quick = 1;
            continue;
        } else if (!strcmp(a, "--keep")) {
            o.keep = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ledger-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--dir"))
            o.dir = v;
        else if (!strcmp(a, "--appends"))
            bad = parse_u64(v, &o.appends);
        else if (!strcmp(a, "--sync-appends"))
            bad = parse_u64(v, &o.sync_appends);
        else if (!strcmp(a, "--window"))
            bad = parse_u64(v, &window) || window > 100000;
        else if (!strcmp(a, "--clients"))
            bad = parse_clients(v, &o);
        else if (!strcmp(a, "--entries"))
            bad = parse_u64(v, &o.entries) || o.entries < 2;
        else if (!strcmp(a, "--requests"))
            bad = parse_u64(v, &o.requests);
        else if (!strcmp(a, "--commits"))
            bad = parse_u64(v, &o.commits);
        else if (!strcmp(a, "--build-group"))
            bad = parse_u64(v, &o.build_group);
        else {
            fprintf(stderr, "ledger-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "ledger-bench: %s %s: expected a positive integer%s\n", a, v,
                    !strcmp(a, "--clients") ? " list such as 1,4,16" :
                    !strcmp(a, "--entries") ? " of at least 2" : "");
            return 2;
        }
    }
    if (window)
        o.window = (uint32_t)window;
    if (!o.appends)
        o.appends = o.quick ? 2000 : 20000;
    if (!o.sync_appends)
        o.sync_appends = o.quick ? 300 : 2000;
    if (!o.entries)
        o.entries = o.quick ? 20000 : 1000000;
    if (!o.requests)
        o.requests = o.quick ? 2000 : 10000;
    if (!o.commits)
        o.commits = o.quick ? 200 : 1000;
    if (!o.build_group)
        o.build_group = 8192;

    double load0[3];
    loadavg(load0);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(scratch, sizeof(scratch), "%s/sdm-ledger-bench-XXXXXX", o.dir);
    if (!mkdtemp(scratch))
        die("mkdtemp %s: %s", scratch, strerror(errno));
    progress("scratch directory %s", scratch);

    make_workers();
    uint64_t pool_n = o.appends > o.sync_appends ? o.appends : o.sync_appends;
    if (pool_n < 1200)
        pool_n = 1200;
    progress("making %" PRIu64 " signed receipts", pool_n);
    receipt_pool pool;
    make_pool(&pool, pool_n);
    progress("  %.2f s (%.1f us each); mean envelope %.1f bytes, request %.1f bytes",
             pool.seconds, pool.seconds / pool_n * 1e6, pool.mean_env, pool.mean_frame);

    void *ctx = zmq_ctx_new();
    baseline_result base = bench_baseline(o.commits, (size_t)(pool.mean_env + 0.5));
    stage_result stages = bench_stages(&pool);

    append_result res[2 * MAX_CLIENT_CONFIGS];
    int n_res = 0;
    uint32_t windows[2] = {o.window, 1};
    for (int w = 0; w < (o.window == 1 ? 1 : 2); w++)
        for (int k = 0; k < o.n_clients; k++)
            res[n_res++] = bench_appends(&pool, ctx, o.clients[k], windows[w],
                                         windows[w] == 1 ? o.sync_appends : o.appends);

    proof_result pr;
    memset(&pr, 0, sizeof(pr));
    bench_proofs(&pr, ctx, o.entries, o.requests, o.build_group);

    double load1[3];
    loadavg(load1);

    /* ---- the document ---- */
    FILE *f = stdout;
    char host[128] = "", cpu[256];
    gethostname(host, sizeof(host) - 1);
    cpu_model(cpu, sizeof(cpu));
    int zmaj, zmin, zpat;
    zmq_version(&zmaj, &zmin, &zpat);
    char command[4096];
    size_t co = 0;
    for (int i = 0; i < argc && co < sizeof(command) - 1; i++)
        co += (size_t)snprintf(command + co, sizeof(command) - co, "%s%s", i ? " " : "", argv[i]);

    fprintf(f, "{\"bench\": \"ledger\", \"command\": ");
    sdm_json_write_str(f, command);
    fprintf(f, ", \"date\": \"%s\",\n \"machine\": {\"host\": ", date);
    sdm_json_write_str(f, host);
    fprintf(f, ", \"cpu\": ");
    sdm_json_write_str(f, cpu);
    fprintf(f, ", \"nproc\": %ld, \"loadavg_start\": [%.2f, %.2f, %.2f], "
            "\"loadavg_end\": [%.2f, %.2f, %.2f], \"dir\": ",
            sysconf(_SC_NPROCESSORS_ONLN), load0[0], load0[1], load0[2], load1[0], load1[1],
            load1[2]);
    sdm_json_write_str(f, o.dir);
#ifdef __OPTIMIZE__
    const char *build = "optimized";
#else
    const char *build = "unoptimized (Debug): do not quote these figures";
#endif
    fprintf(f, ", \"sqlite\": \"%s\", \"libsodium\": \"%s\", \"zmq\": \"%d.%d.%d\", "
            "\"build\": \"%s\"},\n",
            sqlite3_libversion(), sodium_version_string(), zmaj, zmin, zpat, build);
    fprintf(f, " \"targets\": {\"appends_per_s\": 5000, \"inclusion_ms_at_1e6_entries\": 1.0},\n");
    fprintf(f, " \"receipts\": {\"count\": %" PRIu64 ", \"workers\": %d, \"make_s\": %.3f, "
            "\"mean_envelope_bytes\": %.1f, \"mean_request_bytes\": %.1f},\n",
            pool.n, N_WORKERS, pool.seconds, pool.mean_env, pool.mean_frame);
    fprintf(f, " \"baseline\": {\"what\": \"SQLite single-row INSERT + COMMIT of a mean-envelope "
            "blob, WAL, synchronous=FULL, in the same directory\", \"commits\": %" PRIu64
            ", \"seconds\": %.3f, \"commits_per_s\": %.1f, ",
            base.commits, base.seconds, base.per_s);
    json_q(f, "commit_ms", &base.lat_ms, 3);
    fprintf(f, "},\n");
    /* one I/O thread checks every append before it is queued: its ceiling on appends/s */
    double io_us = stages.decode_us + stages.open_us + stages.body_us;
    fprintf(f, " \"stages\": {\"what\": \"in-process, one thread, CPU time unless wall: the I/O "
            "thread's checks of an append, and the writer's sdm_ledger_log_append commits\", "
            "\"appends\": %" PRIu64 ", \"decode_us\": %.2f, \"envelope_open_us\": %.2f, "
            "\"body_read_us\": %.2f, \"io_thread_us_per_append\": %.2f, "
            "\"io_thread_bound_per_s\": %.0f, \"commit_of_1_wall_ms\": %.3f, "
            "\"commit_of_1_cpu_ms\": %.3f, \"checkpoint_sign_us\": %.1f, \"big_group\": %" PRIu64
            ", \"commit_of_big_group_wall_ms\": %.2f, \"commit_of_big_group_cpu_ms\": %.2f, "
            "\"commit_cpu_us_per_entry_in_big_group\": %.2f},\n",
            stages.n, stages.decode_us, stages.open_us, stages.body_us, io_us, 1e6 / io_us,
            stages.group1_ms, stages.group1_cpu_ms, stages.sign_us, stages.big_group,
            stages.big_group_ms, stages.big_group_cpu_ms,
            stages.big_group_cpu_ms * 1e3 / stages.big_group);
    fprintf(f, " \"appends\": [\n");
    int met_all = 1;
    for (int i = 0; i < n_res; i++) {
        const append_result *r = &res[i];
        if (r->window != 1 && r->per_s < 5000)
            met_all = 0;
        fprintf(f, "  {\"clients\": %d, \"window\": %u, \"appends\": %" PRIu64 ", \"seconds\": "
                "%.3f, \"appends_per_s\": %.1f, \"ratio_to_baseline_commits\": %.2f, "
                "\"commits\": %" PRIu64 ", \"mean_group\": %.2f, \"max_group\": %" PRIu64
                ", \"process_cpu_s\": %.3f, \"cpu_busy\": %.2f, \"cpu_s_by_thread\": "
                "{\"ledger_io\": %.2f, \"ledger_writer\": %.2f, \"ledger_zmq\": %.2f, "
                "\"clients\": %.2f, \"other\": %.2f}, ",
                r->clients, r->window, r->appends, r->seconds, r->per_s, r->per_s / base.per_s,
                r->commits, r->mean_group, r->max_group, r->cpu_s, r->cpu_s / r->seconds,
                r->cpu_io, r->cpu_writer, r->cpu_ledger_zmq, r->cpu_clients, r->cpu_other);
        json_q(f, "ack_ms", &r->lat_ms, 3);
        fprintf(f, "}%s\n", i + 1 < n_res ? "," : "");
    }
    fprintf(f, " ],\n \"appends_target_met\": %s,\n",
            met_all ? "true" : "false");
    fprintf(f, " \"proofs\": {\"entries\": %" PRIu64 ", \"build_s\": %.2f, "
            "\"build_making_receipts_s\": %.2f, \"startup_s\": %.3f, \"startup_us_per_entry\": "
            "%.3f,\n",
            pr.entries, pr.build_s, pr.sign_s, pr.startup_s, pr.startup_s / pr.entries * 1e6);
    const char *names[3] = {"inclusion", "consistency", "entry"};
    read_result *rr[3] = {&pr.inclusion, &pr.consistency, &pr.entry};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "  \"%s\": {\"requests\": %" PRIu64 ", ", names[k], rr[k]->requests);
        json_q(f, "socket_us", &rr[k]->wire_us, 2);
        fprintf(f, ", ");
        json_q(f, "in_process_us", &rr[k]->local_us, 3);
        fprintf(f, ", \"ratio_p50_to_echo\": %.2f, \"mean_hashes\": %.2f, "
                "\"mean_reply_bytes\": %.1f},\n",
                rr[k]->wire_us.p50 / pr.echo_us.p50, rr[k]->mean_hashes,
                rr[k]->mean_reply_bytes);
    }
    fprintf(f, "  \"echo\": {\"what\": \"bare ZeroMQ REQ/REP round trip over loopback TCP in this "
            "process, reply the size of an inclusion reply\", \"reply_bytes\": %zu, ",
            pr.echo_bytes);
    json_q(f, "us", &pr.echo_us, 2);
    fprintf(f, "}},\n");
    int p99_ok = pr.inclusion.wire_us.p99 < 1000.0;
    fprintf(f, " \"inclusion_p99_under_1ms\": %s, \"inclusion_target_met\": %s,\n",
            p99_ok ? "true" : "false", p99_ok && pr.entries >= 1000000 ? "true" : "false");
    double total = (double)(pr.db_bytes + pr.wal_bytes);
    fprintf(f, " \"size\": {\"entries\": %" PRIu64 ", \"db_bytes\": %lld, \"wal_bytes\": %lld, "
            "\"bytes_per_entry\": %.1f, \"mean_envelope_bytes\": %.1f, "
            "\"overhead_bytes_per_entry\": %.1f, "
            "\"by_table\": %s}\n}\n",
            pr.entries, (long long)pr.db_bytes, (long long)pr.wal_bytes, total / pr.entries,
            pr.mean_env, total / pr.entries - pr.mean_env, pr.tables);
    fflush(f);

    for (uint64_t i = 0; i < pool.n; i++)
        free(pool.frames[i].data);
    free(pool.frames);
    for (int w = 0; w < N_WORKERS; w++)
        sodium_free(workers[w].sk);
    zmq_ctx_shutdown(ctx);
    if (!o.keep)
        remove_tree(scratch);
    else
        progress("kept %s", scratch);
    return 0;
}
