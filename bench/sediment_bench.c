/* sediment_bench.c - times projection and attribution against baselines run in the same
 * process: OpenBLAS sgemm of the same shape on the cpu backend, cuBLAS GEMM and device
 * memcpy bandwidth on the cuda backend, and optionally the numpy implementation of the
 * same maths (bench/numpy_attribute.py). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baseline.h"
#include "benchutil.h"
#include "sediment/engine.h"

typedef struct opts {
    const char *op; /* project, attribute, all */
    sdm_backend_kind backend;
    uint64_t n, m, d;
    uint32_t k, topk, s;
    size_t shards;
    sdm_dtype dtype;
    sdm_method method;
    sdm_proj_kind kind;
    int reps, warmup, threads, json;
    const char *numpy; /* path of numpy_attribute.py, or NULL */
    size_t workspace;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sediment-bench [options]\n"
            "Times sediment's projection and attribution next to a baseline timed in the same\n"
            "run (cpu: OpenBLAS sgemm of the same shape; cuda: cuBLAS GEMM and memcpy).\n\n"
            "  --op project|attribute|all   what to time (default all)\n"
            "  --backend auto|cpu|cuda      engine backend (default auto)\n"
            "  --n N          training examples / projected rows (default 200000)\n"
            "  --m M          queries (default 64)\n"
            "  --d D          gradient dimension for projection (default 4096)\n"
            "  --k K          projected dimension (default 1024)\n"
            "  --dtype f32|f16|bf16   projection input dtype (default f32)\n"
            "  --kind rademacher|sjlt projection kind (default rademacher)\n"
            "  --s S          sjlt non-zeros per coordinate (default 1)\n"
            "  --method dot|cosine|trak   attribution method (default dot)\n"
            "  --topk T       proponents/opponents per query (default 10)\n"
            "  --shards S     shards in the store (default 100)\n"
            "  --reps R       timed runs, the median is reported (default 5)\n"
            "  --warmup W     untimed runs first (default 1)\n"
            "  --threads T    cpu threads (default: all cores)\n"
            "  --workspace MB engine workspace in MiB (default 256)\n"
            "  --numpy PATH   also time PATH (bench/numpy_attribute.py) with /usr/bin/python3\n"
            "  --json         print one JSON object instead of text\n"
            "  --help         this text\n");
}

static uint64_t rng_state = 88172645463325252ull;

static float *random_floats(uint64_t n)
{
    return bench_random_floats(&rng_state, n, "sediment-bench");
}

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(out, len, "%s", c);
            }
            break;
        }
    if (f)
        fclose(f);
}

typedef struct result {
    char op[16];
    char what[160];
    double seconds, base_seconds, numpy_seconds;
    double rate, base_rate; /* GFLOP/s */
    double bytes_rate, memcpy_rate; /* GB/s, cuda small-m only */
    char base_name[64];
    char note[160];
} result;

/* ---- projection ---------------------------------------------------------------------- */

static void bench_project(sdm_engine_t *eng, const opts *o, result *r)
{
    uint64_t n = o->n < 65536 ? o->n : 65536, d = o->d;
    uint32_t k = o->k;
    sdm_projection p = {o->kind, d, k, o->kind == SDM_PROJ_SJLT ? o->s : 0, 42};
    float *x = random_floats(n * d);
    void *data = x;
    uint16_t *h = NULL;
    if (o->dtype != SDM_F32) {
        h = malloc(n * d * sizeof(uint16_t));
        for (uint64_t i = 0; i < n * d; i++)
            h[i] = o->dtype == SDM_F16 ? sdm_f32_to_f16(x[i]) : sdm_f32_to_bf16(x[i]);
        data = h;
    }
    sdm_matrix m = {o->dtype, n, d, data};
    float *out = malloc(n * k * sizeof(float));
    double *t = calloc(o->reps, sizeof(double));
    fprintf(stderr, "project: %s n=%llu d=%llu k=%u %s ...\n", sdm_proj_kind_name(o->kind),
            (unsigned long long)n, (unsigned long long)d, k, sdm_dtype_name(o->dtype));
    for (int i = 0; i < o->warmup + o->reps; i++) {
        double t0 = bench_now();
        if (sdm_project(eng, &p, &m, out) != SDM_OK) {
            fprintf(stderr, "sediment-bench: project: %s\n", sdm_engine_last_error(eng));
            exit(1);
        }
        if (i >= o->warmup)
            t[i - o->warmup] = bench_now() - t0;
    }
    double flops = 2.0 * n * d * k;
    snprintf(r->op, sizeof(r->op), "project");
    snprintf(r->what, sizeof(r->what), "%s n=%llu d=%llu k=%u %s", sdm_proj_kind_name(o->kind),
             (unsigned long long)n, (unsigned long long)d, k, sdm_dtype_name(o->dtype));
    r->seconds = bench_median(t, o->reps);
    r->rate = flops / r->seconds * 1e-9;
    /* baseline: the same product with a stored P */
    char err[256] = "";
    if (strcmp(sdm_engine_backend(eng), "cuda") == 0) {
        snprintf(r->base_name, sizeof(r->base_name), "cublas gemm, stored P (%s)",
                 sdm_dtype_name(o->dtype));
        if (sdm_bench_cuda_gemm(n, k, d, o->dtype, o->reps, &r->base_seconds, err,
                                sizeof(err)) != 0)
            snprintf(r->note, sizeof(r->note), "baseline failed: %s", err);
    } else {
        snprintf(r->base_name, sizeof(r->base_name), "openblas sgemm, stored P (f32)");
        float *P = random_floats((uint64_t)d * k);
        for (int i = 0; i < o->warmup + o->reps; i++) {
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)d, 1.0f,
                        x, (int)d, P, (int)k, 0.0f, out, (int)k);
            if (i >= o->warmup)
                t[i - o->warmup] = bench_now() - t0;
        }
        r->base_seconds = bench_median(t, o->reps);
        free(P);
    }
    if (r->base_seconds > 0)
        r->base_rate = flops / r->base_seconds * 1e-9;
    free(x);
    free(h);
    free(out);
    free(t);
}

/* ---- attribution ----------------------------------------------------------------------- */

static double run_numpy(const opts *o, char *err, size_t err_len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s --n %llu --m %llu --k %u --topk %u --shards %zu --method %s "
             "--reps %d --threads %d --json",
             o->numpy, (unsigned long long)o->n, (unsigned long long)o->m, o->k, o->topk,
             o->shards, sdm_method_name(o->method), o->reps, o->threads);
    fprintf(stderr, "numpy: %s\n", cmd);
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(err, err_len, "cannot run %s", o->numpy);
        return -1;
    }
    char buf[4096];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[len] = 0;
    int rc = pclose(f);
    char *p = strstr(buf, "\"median_s\":");
    if (rc != 0 || !p) {
        snprintf(err, err_len, "numpy script failed (status %d)", rc);
        return -1;
    }
    return strtod(p + 11, NULL);
}

static void bench_attribute(sdm_engine_t *eng, const opts *o, result *r)
{
    uint64_t n = o->n, m = o->m;
    uint32_t k = o->k;
    sdm_projection p = {SDM_PROJ_NONE, k, k, 0, 1};
    sdm_store_t *s = sdm_store_new(eng, &p);
    if (!s) {
        fprintf(stderr, "sediment-bench: store: %s\n", sdm_engine_last_error(eng));
        exit(1);
    }
    /* fill the store in batches of one shard each */
    uint64_t batch = 4096;
    float *f = random_floats(batch * k);
    uint64_t *ids = malloc(batch * sizeof(uint64_t));
    double t_fill = bench_now();
    for (uint64_t i0 = 0; i0 < n; i0 += batch) {
        uint64_t nb = n - i0 < batch ? n - i0 : batch;
        for (uint64_t i = 0; i < nb; i++)
            ids[i] = i0 + i;
        for (uint64_t i = 0; i < nb * k; i += 97) /* vary the data a little per batch */
            f[i] = bench_rnd(&rng_state);
        char shard[32], contrib[32];
        size_t sh = (size_t)((i0 / batch) % o->shards);
        snprintf(shard, sizeof(shard), "shard-%zu", sh);
        snprintf(contrib, sizeof(contrib), "contrib-%zu", sh % 10);
        sdm_batch b = {"ckpt", 1.0, contrib, shard, 0, ids, {SDM_F32, nb, k, f}, 1, NULL};
        if (sdm_store_append(s, &b, NULL, NULL) != SDM_OK) {
            fprintf(stderr, "sediment-bench: append: %s\n", sdm_engine_last_error(eng));
            exit(1);
        }
        if ((i0 / batch) % 16 == 0)
            fprintf(stderr, "\rfilling store: %llu / %llu rows", (unsigned long long)(i0 + nb),
                    (unsigned long long)n);
    }
    fprintf(stderr, "\rfilling store: %llu rows in %.1f s\n", (unsigned long long)n,
            bench_now() - t_fill);
    float *q = random_floats(m * k);
    sdm_query query = {"ckpt", {SDM_F32, m, k, q}, 1, NAN};
    sdm_attr_request req = {o->method, SDM_AGG_SUM, o->topk, 1, &query, SDM_STORE_NOW};
    double *t = calloc(o->reps, sizeof(double));
    fprintf(stderr, "attribute: %s n=%llu m=%llu k=%u topk=%u ...\n", sdm_method_name(o->method),
            (unsigned long long)n, (unsigned long long)m, k, o->topk);
    for (int i = 0; i < o->warmup + o->reps; i++) {
        sdm_attr_result *res = NULL;
        double t0 = bench_now();
        if (sdm_attribute(eng, s, &req, &res) != SDM_OK) {
            fprintf(stderr, "sediment-bench: attribute: %s\n", sdm_engine_last_error(eng));
            exit(1);
        }
        if (i >= o->warmup)
            t[i - o->warmup] = bench_now() - t0;
        sdm_attr_result_free(&res);
    }
    double flops = 2.0 * m * n * k;
    snprintf(r->op, sizeof(r->op), "attribute");
    snprintf(r->what, sizeof(r->what), "%s n=%llu m=%llu k=%u f32 topk=%u shards=%zu",
             sdm_method_name(o->method), (unsigned long long)n, (unsigned long long)m, k,
             o->topk, o->shards);
    r->seconds = bench_median(t, o->reps);
    r->rate = flops / r->seconds * 1e-9;
    char err[256] = "";
    if (strcmp(sdm_engine_backend(eng), "cuda") == 0) {
        snprintf(r->base_name, sizeof(r->base_name), "cublas sgemm m x n x k");
        if (sdm_bench_cuda_gemm(m, n, k, SDM_F32, o->reps, &r->base_seconds, err,
                                sizeof(err)) != 0)
            snprintf(r->note, sizeof(r->note), "baseline failed: %s", err);
        double mc;
        if (m <= 8 && sdm_bench_cuda_memcpy((size_t)n * k * 4, o->reps, &mc, err,
                                            sizeof(err)) == 0) {
            r->bytes_rate = (double)n * k * 4 / r->seconds * 1e-9;
            r->memcpy_rate = 2.0 * n * k * 4 / mc * 1e-9; /* read + write */
        }
    } else {
        snprintf(r->base_name, sizeof(r->base_name), "openblas sgemm m x n x k");
        float *F = random_floats(n * k);
        float *C = malloc(m * n * sizeof(float));
        for (int i = 0; i < o->warmup + o->reps; i++) {
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, q,
                        (int)k, F, (int)k, 0.0f, C, (int)n);
            if (i >= o->warmup)
                t[i - o->warmup] = bench_now() - t0;
        }
        r->base_seconds = bench_median(t, o->reps);
        free(F);
        free(C);
    }
    if (r->base_seconds > 0)
        r->base_rate = flops / r->base_seconds * 1e-9;
    if (o->numpy) {
        r->numpy_seconds = run_numpy(o, err, sizeof(err));
        if (r->numpy_seconds < 0)
            snprintf(r->note, sizeof(r->note), "%s", err);
    }
    free(t);
    free(q);
    free(f);
    free(ids);
    sdm_store_destroy(&s);
}

/* ---- main ------------------------------------------------------------------------------ */

static int parse(int argc, char **argv, opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "sediment-bench: %s needs a value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--op") == 0)
            o->op = v, bad = strcmp(v, "project") && strcmp(v, "attribute") && strcmp(v, "all");
        else if (strcmp(a, "--backend") == 0)
            bad = sdm_backend_kind_parse(v, &o->backend) != SDM_OK;
        else if (strcmp(a, "--n") == 0)
            bad = (o->n = strtoull(v, NULL, 10)) == 0;
        else if (strcmp(a, "--m") == 0)
            bad = (o->m = strtoull(v, NULL, 10)) == 0;
        else if (strcmp(a, "--d") == 0)
            bad = (o->d = strtoull(v, NULL, 10)) == 0;
        else if (strcmp(a, "--k") == 0)
            bad = (o->k = (uint32_t)strtoul(v, NULL, 10)) == 0;
        else if (strcmp(a, "--s") == 0)
            bad = (o->s = (uint32_t)strtoul(v, NULL, 10)) == 0;
        else if (strcmp(a, "--topk") == 0)
            o->topk = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--shards") == 0)
            bad = (o->shards = strtoull(v, NULL, 10)) == 0;
        else if (strcmp(a, "--dtype") == 0)
            bad = sdm_dtype_parse(v, &o->dtype) != SDM_OK;
        else if (strcmp(a, "--kind") == 0)
            bad = sdm_proj_kind_parse(v, &o->kind) != SDM_OK || o->kind == SDM_PROJ_NONE;
        else if (strcmp(a, "--method") == 0)
            bad = sdm_method_parse(v, &o->method) != SDM_OK;
        else if (strcmp(a, "--reps") == 0)
            bad = (o->reps = atoi(v)) <= 0;
        else if (strcmp(a, "--warmup") == 0)
            bad = (o->warmup = atoi(v)) < 0;
        else if (strcmp(a, "--threads") == 0)
            bad = (o->threads = atoi(v)) < 0;
        else if (strcmp(a, "--workspace") == 0)
            bad = (o->workspace = strtoull(v, NULL, 10) << 20) == 0;
        else if (strcmp(a, "--numpy") == 0)
            o->numpy = v;
        else {
            fprintf(stderr, "sediment-bench: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "sediment-bench: bad value for %s: %s\n", a, v);
            return -1;
        }
    }
    if (o->kind == SDM_PROJ_SJLT && o->k % o->s != 0) {
        fprintf(stderr, "sediment-bench: --s must divide --k\n");
        return -1;
    }
    return 0;
}

static void print_result(const result *r, int json, int last)
{
    double ratio = r->base_seconds > 0 ? r->seconds / r->base_seconds : 0;
    if (json) {
        printf("    {\"op\": \"%s\", \"case\": \"%s\", \"seconds\": %.6g, \"gflops\": %.6g, "
               "\"baseline\": \"%s\", \"baseline_seconds\": %.6g, \"baseline_gflops\": %.6g, "
               "\"time_ratio\": %.4f",
               r->op, r->what, r->seconds, r->rate, r->base_name, r->base_seconds, r->base_rate,
               ratio);
        if (r->numpy_seconds > 0)
            printf(", \"numpy_seconds\": %.6g, \"speedup_over_numpy\": %.4f", r->numpy_seconds,
                   r->numpy_seconds / r->seconds);
        if (r->memcpy_rate > 0)
            printf(", \"gbps\": %.6g, \"memcpy_gbps\": %.6g, \"bandwidth_ratio\": %.4f",
                   r->bytes_rate, r->memcpy_rate, r->bytes_rate / r->memcpy_rate);
        if (r->note[0])
            printf(", \"note\": \"%s\"", r->note);
        printf("}%s\n", last ? "" : ",");
        return;
    }
    printf("%-9s %s\n", r->op, r->what);
    printf("          sediment  %9.4f s  %8.1f GFLOP/s\n", r->seconds, r->rate);
    if (r->base_seconds > 0)
        printf("          baseline  %9.4f s  %8.1f GFLOP/s  (%s)\n", r->base_seconds,
               r->base_rate, r->base_name);
    if (ratio > 0)
        printf("          time ratio sediment / baseline: %.3f\n", ratio);
    if (r->numpy_seconds > 0)
        printf("          numpy     %9.4f s  (sediment is %.2fx faster)\n", r->numpy_seconds,
               r->numpy_seconds / r->seconds);
    if (r->memcpy_rate > 0)
        printf("          %.1f GB/s read, memcpy %.1f GB/s: %.1f%%\n", r->bytes_rate,
               r->memcpy_rate, 100 * r->bytes_rate / r->memcpy_rate);
    if (r->note[0])
        printf("          note: %s\n", r->note);
}

int main(int argc, char **argv)
{
    opts o = {"all", SDM_BACKEND_AUTO, 200000, 64, 4096, 1024, 10, 1, 100, SDM_F32,
              SDM_METHOD_DOT, SDM_PROJ_RADEMACHER, 5, 1, 0, 0, NULL, 0};
    if (parse(argc, argv, &o) != 0)
        return 2;
    sdm_engine_opts eo = {o.backend, o.workspace, o.threads, 0};
    char err[512];
    sdm_status st;
    sdm_engine_t *eng = sdm_engine_new(&eo, &st, err, sizeof(err));
    if (!eng) {
        fprintf(stderr, "sediment-bench: %s\n", err);
        return 1;
    }
    if (sdm_engine_note(eng)[0])
        fprintf(stderr, "sediment-bench: %s\n", sdm_engine_note(eng));
    result res[2];
    int nres = 0;
    memset(res, 0, sizeof(res));
    if (strcmp(o.op, "project") == 0 || strcmp(o.op, "all") == 0)
        bench_project(eng, &o, &res[nres++]);
    if (strcmp(o.op, "attribute") == 0 || strcmp(o.op, "all") == 0)
        bench_attribute(eng, &o, &res[nres++]);
    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    if (o.json) {
        printf("{\n  \"backend\": \"%s\",\n  \"device\": \"%s\",\n  \"host_cpu\": \"%s\",\n"
               "  \"reps\": %d,\n  \"results\": [\n",
               sdm_engine_backend(eng), sdm_engine_device(eng), cpu, o.reps);
        for (int i = 0; i < nres; i++)
            print_result(&res[i], 1, i == nres - 1);
        printf("  ]\n}\n");
    } else {
        printf("sediment-bench: backend %s (%s), host %s, median of %d\n",
               sdm_engine_backend(eng), sdm_engine_device(eng), cpu, o.reps);
        for (int i = 0; i < nres; i++)
            print_result(&res[i], 0, 0);
    }
    sdm_engine_destroy(&eng);
    return 0;
}
