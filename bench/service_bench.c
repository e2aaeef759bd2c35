/* service_bench.c - times the worker over loopback against baselines run in the same process:
 * contribution ingest (GB/s of gradient bytes, fsync included) next to the engine's own
 * projection of the same batches, `attribute` through the service next to the in-process
 * engine call on an identical store, and `info` round trips next to a bare ZeroMQ echo. */
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "benchutil.h"
#include "sediment/engine.h"
#include "worker.h"

typedef struct opts {
    const char *op; /* ingest, attribute, info, all */
    sdm_backend_kind backend;
    uint64_t n, m, d, batch;
    uint32_t k, topk;
    size_t shards;
    sdm_method method;
    int reps, warmup, threads, json, rounds;
    const char *data;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sediment-service-bench [options]\n"
            "Times an in-process sediment worker over loopback TCP, next to baselines timed in\n"
            "the same run: the engine's projection of the same batches (ingest), the in-process\n"
            "engine call on an identical store (attribute), a bare ZeroMQ echo (info).\n\n"
            "  --op ingest|attribute|info|all   what to time (default all)\n"
            "  --backend auto|cpu|cuda   engine backend (default auto)\n"
            "  --n N        training examples in the attribute store (default 200000)\n"
            "  --k K        projected dimension (default 1024)\n"
            "  --m M        queries (default 64)\n"
            "  --d D        gradient dimension for ingest (default 8192)\n"
            "  --batch B    rows per contribution for ingest (default 512)\n"
            "  --rounds R   contributions timed for ingest (default 32)\n"
            "  --method dot|cosine|trak  (default dot)\n"
            "  --topk T     (default 10)\n"
            "  --shards S   shards in the attribute store (default 100)\n"
            "  --reps R     timed attribute runs; the median is reported (default 5)\n"
            "  --warmup W   untimed attribute runs first (default 1)\n"
            "  --threads T  cpu threads per engine (default: all cores)\n"
            "  --data DIR   the worker's data dir (default: a fresh one under /tmp)\n"
            "  --json       one JSON object on stdout instead of text\n"
            "  --help       this text\n");
}

static void progress(const opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("service-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    (void)o;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float *random_floats(uint64_t n)
{
    return bench_random_floats(&rng_state, n, "service-bench");
}

/* ---- a raw protocol client ------------------------------------------------------------- */

typedef struct client {
    void *sock;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    zmq_msg_t reply;
    msgpack_unpacked up;
} client;

static void client_open(client *c, void *ctx, const char *ep)
{
    c->sock = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(c->sock, ep) != 0) {
        fprintf(stderr, "service-bench: connect %s: %s\n", ep, zmq_strerror(zmq_errno()));
        exit(1);
    }
    msgpack_sbuffer_init(&c->buf);
    msgpack_packer_init(&c->pk, &c->buf, msgpack_sbuffer_write);
    zmq_msg_init(&c->reply);
    msgpack_unpacked_init(&c->up);
}

static void client_close(client *c)
{
    zmq_close(c->sock);
    msgpack_sbuffer_destroy(&c->buf);
    zmq_msg_close(&c->reply);
    msgpack_unpacked_destroy(&c->up);
}

static void key(client *c, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(&c->pk, n);
    msgpack_pack_str_body(&c->pk, k, n);
}

static void pack_matrix(client *c, const float *x, uint64_t rows, uint64_t cols)
{
    msgpack_pack_map(&c->pk, 4);
    key(c, "dtype");
    key(c, "f32");
    key(c, "rows");
    msgpack_pack_uint64(&c->pk, rows);
    key(c, "cols");
    msgpack_pack_uint64(&c->pk, cols);
    key(c, "data");
    msgpack_pack_bin(&c->pk, rows * cols * 4);
    msgpack_pack_bin_body(&c->pk, x, rows * cols * 4);
}

/* Sends the packed request, waits for the reply and exits on an error reply. */
static msgpack_object *call(client *c, const char *what)
{
    if (zmq_send(c->sock, c->buf.data, c->buf.size, 0) < 0 ||
        zmq_msg_recv(&c->reply, c->sock, 0) < 0) {
        fprintf(stderr, "service-bench: %s: %s\n", what, zmq_strerror(zmq_errno()));
        exit(1);
    }
    msgpack_sbuffer_clear(&c->buf);
    size_t off = 0;
    if (msgpack_unpack_next(&c->up, zmq_msg_data(&c->reply), zmq_msg_size(&c->reply), &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        c->up.data.type != MSGPACK_OBJECT_MAP) {
        fprintf(stderr, "service-bench: %s: unreadable reply\n", what);
        exit(1);
    }
    msgpack_object_map *m = &c->up.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_object_kv *kv = &m->ptr[i];
        if (kv->key.via.str.size == 2 && memcmp(kv->key.via.str.ptr, "ok", 2) == 0 &&
            kv->val.type == MSGPACK_OBJECT_BOOLEAN && !kv->val.via.boolean) {
            fprintf(stderr, "service-bench: %s failed: ", what);
            msgpack_object_print(stderr, c->up.data);
            fputc('\n', stderr);
            exit(1);
        }
    }
    return &c->up.data;
}

/* Every model is registered with this seed, so the in-process baselines project alike. */
#define BENCH_SEED 42

static void do_register(client *c, const char *model, uint64_t d, uint32_t k)
{
    msgpack_pack_map(&c->pk, 4);
    key(c, "op");
    key(c, "register");
    key(c, "model");
    key(c, model);
    key(c, "input_dim");
    msgpack_pack_uint64(&c->pk, d);
    key(c, "projection");
    msgpack_pack_map(&c->pk, 3);
    key(c, "kind");
    key(c, "rademacher");
    key(c, "dim");
    msgpack_pack_uint32(&c->pk, k);
    key(c, "seed");
    msgpack_pack_uint64(&c->pk, BENCH_SEED);
    call(c, "register");
}

static void do_contribute(client *c, const char *model, const char *shard, const char *contrib,
                          uint64_t id0, const float *x, uint64_t rows, uint64_t cols,
                          int features)
{
    msgpack_pack_map(&c->pk, 8);
    key(c, "op");
    key(c, "contribute");
    key(c, "model");
    key(c, model);
    key(c, "checkpoint");
    key(c, "c0");
    key(c, "lr");
    msgpack_pack_double(&c->pk, 1.0);
    key(c, "contributor");
    key(c, contrib);
    key(c, "shard");
    key(c, shard);
    key(c, "example_ids");
    msgpack_pack_array(&c->pk, rows);
    for (uint64_t i = 0; i < rows; i++)
        msgpack_pack_uint64(&c->pk, id0 + i);
    key(c, features ? "features" : "grads");
    pack_matrix(c, x, rows, cols);
    call(c, "contribute");
}

/* ---- the worker in this process ---------------------------------------------------------- */

typedef struct served {
    sdm_worker_t *w;
    pthread_t thread;
    char dir[256];
} served;

static void *serve(void *arg)
{
    sdm_worker_run(arg);
    return NULL;
}

static void served_start(served *s, const opts *o)
{
    if (o->data) {
        snprintf(s->dir, sizeof(s->dir), "%s", o->data);
    } else {
        snprintf(s->dir, sizeof(s->dir), "/tmp/sdm-bench-XXXXXX");
        if (!mkdtemp(s->dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    sdm_worker_opts wo = {.listen = "tcp://127.0.0.1:0", .data_dir = s->dir,
                          .backend = o->backend, .threads = o->threads, .quiet = 1};
    char err[512];
    s->w = sdm_worker_new(&wo, err, sizeof(err));
    if (!s->w) {
        fprintf(stderr, "service-bench: worker: %s\n", err);
        exit(1);
    }
    pthread_create(&s->thread, NULL, serve, s->w);
}

static void served_stop(served *s)
{
    sdm_worker_stop(s->w);
    pthread_join(s->thread, NULL);
    sdm_worker_destroy(&s->w);
    if (!s->dir[0])
        return;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "service-bench: could not remove %s\n", s->dir);
}

/* The in-process baseline: an engine as the worker's and the projection do_register asks
 * for (d -> k). Exits on failure. */
static sdm_engine_t *baseline_engine(const opts *o, sdm_projection *p)
{
    sdm_engine_opts eo = {o->backend, 0, o->threads, 0};
    sdm_status st;
    char err[256] = "";
    sdm_engine_t *eng = sdm_engine_new(&eo, &st, err, sizeof(err));
    if (!eng) {
        fprintf(stderr, "service-bench: engine: %s\n", err);
        exit(1);
    }
    *p = (sdm_projection){SDM_PROJ_RADEMACHER, o->d, o->k, 0, BENCH_SEED};
    return eng;
}

/* ---- ingest ------------------------------------------------------------------------------ */

static void bench_ingest(const opts *o, void *ctx, FILE *out, int *first)
{
    served s;
    served_start(&s, o);
    client c;
    client_open(&c, ctx, sdm_worker_endpoint(s.w));
    do_register(&c, "ingest", o->d, o->k);
    float *g = random_floats(o->batch * o->d);
    progress(o, "ingest: %d contributions of %llu x %llu f32 (%.1f MiB each)", o->rounds,
             (unsigned long long)o->batch, (unsigned long long)o->d,
             o->batch * o->d * 4.0 / (1 << 20));
    do_contribute(&c, "ingest", "warm", "a", 1ull << 40, g, o->batch, o->d, 0);
    double t0 = bench_now();
    for (int r = 0; r < o->rounds; r++)
        do_contribute(&c, "ingest", "s", "a", (uint64_t)r * o->batch, g, o->batch, o->d, 0);
    double t_service = (bench_now() - t0) / o->rounds;
    client_close(&c);
    served_stop(&s);

    /* baseline: the engine's projection of the same batch in this process */
    sdm_projection p;
    sdm_engine_t *eng = baseline_engine(o, &p);
    float *f = malloc(o->batch * o->k * sizeof(float));
    sdm_matrix mat = {SDM_F32, o->batch, o->d, g};
    if (!f || sdm_project(eng, &p, &mat, f) != SDM_OK) {
        fprintf(stderr, "service-bench: projection baseline failed\n");
        exit(1);
    }
    t0 = bench_now();
    for (int r = 0; r < o->rounds; r++)
        if (sdm_project(eng, &p, &mat, f) != SDM_OK)
            exit(1);
    double t_project = (bench_now() - t0) / o->rounds;
    double bytes = (double)o->batch * o->d * 4.0;
    if (o->json) {
        fprintf(out, "%s\"ingest\": {\"batch\": %llu, \"d\": %llu, \"k\": %u, \"dtype\": \"f32\", "
                "\"rounds\": %d, \"seconds_per_batch\": %.6f, \"gb_per_s\": %.4f, "
                "\"project_seconds_per_batch\": %.6f, \"project_gb_per_s\": %.4f, "
                "\"ratio_to_projection\": %.4f}",
                *first ? "" : ", ", (unsigned long long)o->batch, (unsigned long long)o->d, o->k,
                o->rounds, t_service, bytes / t_service / 1e9, t_project,
                bytes / t_project / 1e9, t_service / t_project);
    } else {
        fprintf(out, "ingest  %llu x %llu f32 -> k=%u: %.3f GB/s through the worker (fsync "
                "included), %.3f GB/s bare projection in-process; ratio %.2f\n",
                (unsigned long long)o->batch, (unsigned long long)o->d, o->k,
                bytes / t_service / 1e9, bytes / t_project / 1e9, t_service / t_project);
    }
    *first = 0;
    free(f);
    free(g);
    sdm_engine_destroy(&eng);
}

/* ---- attribute --------------------------------------------------------------------------- */

static void pack_attribute(client *c, const opts *o, const float *q)
{
    msgpack_pack_map(&c->pk, 6);
    key(c, "op");
    key(c, "attribute");
    key(c, "model");
    key(c, "attr");
    key(c, "query_features");
    msgpack_pack_map(&c->pk, 1);
    key(c, "c0");
    pack_matrix(c, q, o->m, o->k);
    key(c, "method");
    key(c, sdm_method_name(o->method));
    key(c, "topk");
    msgpack_pack_uint32(&c->pk, o->topk);
    key(c, "aggregate");
    key(c, "sum");
}

static void bench_attribute(const opts *o, void *ctx, FILE *out, int *first)
{
    served s;
    served_start(&s, o);
    client c;
    client_open(&c, ctx, sdm_worker_endpoint(s.w));
    do_register(&c, "attr", o->d, o->k);
    /* the same features go to the worker and to an in-process store */
    sdm_projection p;
    sdm_engine_t *eng = baseline_engine(o, &p);
    sdm_store_t *store = sdm_store_new(eng, &p);
    if (!store) {
        fprintf(stderr, "service-bench: engine: %s\n", sdm_engine_last_error(eng));
        exit(1);
    }
    uint64_t per = (o->n + o->shards - 1) / o->shards;
    progress(o, "attribute: storing %llu x %u features in %zu shards", (unsigned long long)o->n,
             o->k, o->shards);
    uint64_t *ids = malloc(per * sizeof(uint64_t));
    for (size_t sh = 0, done = 0; done < o->n; sh++) {
        uint64_t rows = o->n - done < per ? o->n - done : per;
        float *x = random_floats(rows * o->k);
        char shard[32], contrib[32];
        snprintf(shard, sizeof(shard), "shard-%zu", sh);
        snprintf(contrib, sizeof(contrib), "contributor-%zu", sh % 10);
        do_contribute(&c, "attr", shard, contrib, done, x, rows, o->k, 1);
        for (uint64_t i = 0; i < rows; i++)
            ids[i] = done + i;
        sdm_batch b = {"c0", 1.0, contrib, shard, 0, ids, {SDM_F32, rows, o->k, x}, 1, NULL};
        if (sdm_store_append(store, &b, NULL, NULL) != SDM_OK) {
            fprintf(stderr, "service-bench: %s\n", sdm_engine_last_error(eng));
            exit(1);
        }
        free(x);
        done += rows;
    }
    free(ids);
    float *q = random_floats(o->m * o->k);
    sdm_query query = {"c0", {SDM_F32, o->m, o->k, q}, 1, NAN};
    sdm_attr_request req = {o->method, SDM_AGG_SUM, o->topk, 1, &query, SDM_STORE_NOW};
    double *ts = calloc(o->reps, sizeof(double)), *te = calloc(o->reps, sizeof(double));
    progress(o, "attribute: %d warm-up and %d timed runs each, service and in-process",
             o->warmup, o->reps);
    for (int r = 0; r < o->warmup + o->reps; r++) {
        /* alternate, so both see the same machine state */
        double t0 = bench_now();
        pack_attribute(&c, o, q);
        call(&c, "attribute");
        double t1 = bench_now();
        sdm_attr_result *res = NULL;
        if (sdm_attribute(eng, store, &req, &res) != SDM_OK) {
            fprintf(stderr, "service-bench: %s\n", sdm_engine_last_error(eng));
            exit(1);
        }
        double t2 = bench_now();
        sdm_attr_result_free(&res);
        if (r >= o->warmup) {
            ts[r - o->warmup] = t1 - t0;
            te[r - o->warmup] = t2 - t1;
        }
    }
    double service = bench_quantile(ts, o->reps, 0.5), engine = bench_quantile(te, o->reps, 0.5);
    if (o->json) {
        fprintf(out, "%s\"attribute\": {\"n\": %llu, \"k\": %u, \"m\": %llu, \"dtype\": \"f32\", "
                "\"method\": \"%s\", \"topk\": %u, \"shards\": %zu, \"reps\": %d, "
                "\"service_seconds\": %.6f, \"engine_seconds\": %.6f, \"overhead\": %.4f}",
                *first ? "" : ", ", (unsigned long long)o->n, o->k, (unsigned long long)o->m,
                sdm_method_name(o->method), o->topk, o->shards, o->reps, service, engine,
                service / engine - 1.0);
    } else {
        fprintf(out, "attribute n=%llu k=%u m=%llu %s top-%u: %.4f s through the worker, %.4f s "
                "in-process engine; overhead %+.1f%%\n",
                (unsigned long long)o->n, o->k, (unsigned long long)o->m,
                sdm_method_name(o->method), o->topk, service, engine,
                100.0 * (service / engine - 1.0));
    }
    *first = 0;
    free(ts);
    free(te);
    free(q);
    sdm_store_destroy(&store);
    sdm_engine_destroy(&eng);
    client_close(&c);
    served_stop(&s);
}

/* ---- info round trips ---------------------------------------------------------------------- */

static void *echo_main(void *sock)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, sock, 0) >= 0)
        if (zmq_msg_send(&m, sock, 0) < 0)
            break;
    zmq_msg_close(&m);
    return NULL;
}

static void bench_info(const opts *o, void *ctx, FILE *out, int *first)
{
    const int N = 2000;
    double *lat = malloc(N * sizeof(double)), *base = malloc(N * sizeof(double));
    served s;
    served_start(&s, o);
    client c;
    client_open(&c, ctx, sdm_worker_endpoint(s.w));
    do_register(&c, "info-model", 64, 16);
    for (int i = 0; i < N + 100; i++) {
        double t0 = bench_now();
        msgpack_pack_map(&c.pk, 1);
        key(&c, "op");
        key(&c, "info");
        call(&c, "info");
        if (i >= 100)
            lat[i - 100] = bench_now() - t0;
    }
    client_close(&c);
    served_stop(&s);
    /* baseline: a REP echo over loopback TCP in this process, same payload size */
    void *rep = zmq_socket(ctx, ZMQ_REP), *req = zmq_socket(ctx, ZMQ_REQ);
    char ep[256];
    size_t eplen = sizeof(ep);
    zmq_bind(rep, "tcp://127.0.0.1:*");
    zmq_getsockopt(rep, ZMQ_LAST_ENDPOINT, ep, &eplen);
    zmq_connect(req, ep);
    pthread_t t;
    pthread_create(&t, NULL, echo_main, rep);
    char msg[16] = "\x81\xa2op\xa4info";
    for (int i = 0; i < N + 100; i++) {
        double t0 = bench_now();
        char buf[64];
        zmq_send(req, msg, 9, 0);
        zmq_recv(req, buf, sizeof(buf), 0);
        if (i >= 100)
            base[i - 100] = bench_now() - t0;
    }
    zmq_close(req);
    int zero = 0;
    zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof(zero));
    double p50 = bench_quantile(lat, N, 0.5), p99 = bench_quantile(lat, N, 0.99);
    double b50 = bench_quantile(base, N, 0.5), b99 = bench_quantile(base, N, 0.99);
    if (o->json) {
        fprintf(out, "%s\"info\": {\"round_trips\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f, "
                "\"echo_p50_us\": %.2f, \"echo_p99_us\": %.2f, \"ratio_p50\": %.3f}",
                *first ? "" : ", ", N, p50 * 1e6, p99 * 1e6, b50 * 1e6, b99 * 1e6, p50 / b50);
    } else {
        fprintf(out, "info    %d round trips: p50 %.1f us, p99 %.1f us; bare zmq echo p50 %.1f "
                "us, p99 %.1f us; ratio p50 %.2f\n",
                N, p50 * 1e6, p99 * 1e6, b50 * 1e6, b99 * 1e6, p50 / b50);
    }
    *first = 0;
    /* the echo thread ends when the context terminates; detach it */
    pthread_detach(t);
    free(lat);
    free(base);
}

int main(int argc, char **argv)
{
    opts o = {"all", SDM_BACKEND_AUTO, 200000, 64, 8192, 512, 1024, 10, 100, SDM_METHOD_DOT,
              5, 1, 0, 0, 32, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "service-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--op"))
            o.op = v;
        else if (!strcmp(a, "--backend") && sdm_backend_kind_parse(v, &o.backend) == SDM_OK)
            ;
        else if (!strcmp(a, "--method") && sdm_method_parse(v, &o.method) == SDM_OK)
            ;
        else if (!strcmp(a, "--n"))
            o.n = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--k"))
            o.k = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--m"))
            o.m = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--d"))
            o.d = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--batch"))
            o.batch = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rounds"))
            o.rounds = atoi(v);
        else if (!strcmp(a, "--topk"))
            o.topk = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--shards"))
            o.shards = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--reps"))
            o.reps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            o.warmup = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--data"))
            o.data = v;
        else {
            fprintf(stderr, "service-bench: unknown option or bad value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!o.n || !o.k || !o.m || !o.d || !o.batch || o.reps < 1 || o.rounds < 1 || !o.shards) {
        fprintf(stderr, "service-bench: sizes, --reps and --rounds must be positive\n");
        return 2;
    }
    int all = !strcmp(o.op, "all");
    if (!all && strcmp(o.op, "ingest") && strcmp(o.op, "attribute") && strcmp(o.op, "info")) {
        fprintf(stderr, "service-bench: --op: expected ingest, attribute, info or all\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    int first = 1;
    char host[128] = "";
    gethostname(host, sizeof(host) - 1);
    if (o.json)
        printf("{\"bench\": \"service\", \"host\": \"%s\", ", host);
    if (all || !strcmp(o.op, "info"))
        bench_info(&o, ctx, stdout, &first);
    if (all || !strcmp(o.op, "ingest"))
        bench_ingest(&o, ctx, stdout, &first);
    if (all || !strcmp(o.op, "attribute"))
        bench_attribute(&o, ctx, stdout, &first);
    if (o.json)
        printf("}\n");
    zmq_ctx_shutdown(ctx);
    return 0;
}
