/* worker_main.c - `sediment-worker`: the command line of the worker service (SPEC §7). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

static sdm_worker_t *g_worker;

static void on_signal(int sig)
{
    (void)sig;
    if (g_worker)
        sdm_worker_stop(g_worker);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sediment-worker [options]\n"
            "\n"
            "Takes training contributions (per-example gradients of a dataset shard at a model\n"
            "checkpoint) over ZeroMQ, projects and stores them durably, and answers attribution\n"
            "requests with Ed25519-signed proofs. The first line of standard output is the bound\n"
            "endpoint. SIGTERM or SIGINT: finish the requests taken, then exit 0.\n"
            "\n"
            "  --listen ENDPOINT     where to bind (default %s; port 0 picks one)\n"
            "  --data DIR            durable store and key pair (default ./sediment-data)\n"
            "  --backend KIND        auto, cpu or cuda (default auto)\n"
            "  --curve-secret FILE   serve CURVE with this secret key (Z85); needs --allow\n"
            "  --allow FILE          client CURVE public keys allowed in, one a line\n"
            "  --insecure-bind       allow a non-loopback endpoint without CURVE\n"
            "  --ledger ENDPOINT     forward every receipt and proof to this ledger; while it is\n"
            "                        down they wait in DIR/outbox.db and go when it is back.\n"
            "                        Plain tcp or ipc only (no CURVE on this link yet): run it\n"
            "                        over loopback or a private network\n"
            "  --max-msg BYTES       largest request frame (default 2147483648)\n"
            "  --queue N             requests waiting per thread before `busy` (default 64)\n"
            "  --threads N           cpu threads per engine (default: all cores)\n"
            "  --quiet               no log lines on standard error\n"
            "  --help                this text\n",
            SDM_WORKER_DEFAULT_ENDPOINT);
}

static int parse_long(const char *flag, const char *s, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "sediment-worker: %s: expected an integer >= %lld, got '%s'\n", flag, min, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    sdm_worker_opts o = {.data_dir = "sediment-data", .backend = SDM_BACKEND_AUTO};
    static const struct option longopts[] = {
        {"listen", required_argument, 0, 'l'},  {"data", required_argument, 0, 'd'},
        {"backend", required_argument, 0, 'b'}, {"curve-secret", required_argument, 0, 'c'},
        {"allow", required_argument, 0, 'a'},   {"insecure-bind", no_argument, 0, 'i'},
        {"ledger", required_argument, 0, 'L'},  {"max-msg", required_argument, 0, 'm'},
        {"queue", required_argument, 0, 'q'},   {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'Q'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 'd': o.data_dir = optarg; break;
        case 'b':
            if (sdm_backend_kind_parse(optarg, &o.backend) != SDM_OK) {
                fprintf(stderr, "sediment-worker: --backend: expected auto, cpu or cuda, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c': o.curve_secret = optarg; break;
        case 'a': o.allow = optarg; break;
        case 'i': o.insecure_bind = 1; break;
        case 'L':
            if (!*optarg) {
                fprintf(stderr, "sediment-worker: --ledger: expected an endpoint such as "
                        "tcp://127.0.0.1:7720, got ''\n");
                return 2;
            }
            o.ledger = optarg;
            break;
        case 'm':
            if (parse_long("--max-msg", optarg, 1024, &v) != 0)
                return 2;
            o.max_msg = v;
            break;
        case 'q':
            if (parse_long("--queue", optarg, 1, &v) != 0)
                return 2;
            o.queue_depth = (uint32_t)v;
            break;
        case 't':
            if (parse_long("--threads", optarg, 0, &v) != 0)
                return 2;
            o.threads = (int)v;
            break;
        case 'Q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sediment-worker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char err[512];
    g_worker = sdm_worker_new(&o, err, sizeof(err));
    if (!g_worker) {
        fprintf(stderr, "sediment-worker: %s\n", err);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("%s\n", sdm_worker_endpoint(g_worker));
    fflush(stdout);
    int rc = sdm_worker_run(g_worker);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sdm_worker_t *w = g_worker;
    g_worker = NULL;
    sdm_worker_destroy(&w);
    return rc == 0 ? 0 : 1;
}
