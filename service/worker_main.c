/* worker_main.c - `sediment-worker`: the command line of the worker service (SPEC §7). */
#include <getopt.h>
#include <stdio.h>

#include "cliutil.h"
#include "worker.h"

#define PROG "sediment-worker"

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
            "                        Plain unless given the next two: then CURVE\n"
            "  --ledger-server-key FILE|KEY\n"
            "                        the ledger's CURVE public key (its .pub file, or Z85)\n"
            "  --ledger-client-key FILE\n"
            "                        this worker's CURVE secret key for the link (the\n"
            "                        ledger's --allow must list its public key)\n"
            "  --ledger-max-msg BYTES\n"
            "                        the ledger's --max-msg: larger entries are rejected,\n"
            "                        not sent (default 67108864)\n"
            "  --max-msg BYTES       largest request frame (default 2147483648)\n"
            "  --queue N             requests waiting per thread before `busy` (default 64)\n"
            "  --threads N           cpu threads per engine (default: all cores)\n"
            "  --quiet               no log lines on standard error\n"
            "  --help                this text\n",
            SDM_WORKER_DEFAULT_ENDPOINT);
}

/* sdm_cli_serve runs any server through void pointers */
static int run_worker(void *w)
{
    return sdm_worker_run(w);
}

static void stop_worker(void *w)
{
    sdm_worker_stop(w);
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
        {"ledger-server-key", required_argument, 0, 'K'},
        {"ledger-client-key", required_argument, 0, 'C'},
        {"ledger-max-msg", required_argument, 0, 'M'},
        {0, 0, 0, 0}};
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 'd': o.data_dir = optarg; break;
        case 'b':
            if (sdm_backend_kind_parse(optarg, &o.backend) != SDM_OK) {
                fprintf(stderr, PROG ": --backend: expected auto, cpu or cuda, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c': o.curve_secret = optarg; break;
        case 'a': o.allow = optarg; break;
        case 'i': o.insecure_bind = 1; break;
        case 'L':
            if (!*optarg) {
                fprintf(stderr, PROG ": --ledger: expected an endpoint such as "
                        "tcp://127.0.0.1:7720, got ''\n");
                return 2;
            }
            o.ledger = optarg;
            break;
        case 'm':
            if (sdm_cli_int_min(PROG, "--max-msg", optarg, 1024, &v) != 0)
                return 2;
            o.max_msg = v;
            break;
        case 'q':
            if (sdm_cli_int_range(PROG, "--queue", optarg, 1, UINT32_MAX, &v) != 0)
                return 2;
            o.queue_depth = (uint32_t)v;
            break;
        case 't':
            if (sdm_cli_int_range(PROG, "--threads", optarg, 0, 4096, &v) != 0)
                return 2;
            o.threads = (int)v;
            break;
        case 'Q': o.quiet = 1; break;
        case 'K': o.ledger_server_key = optarg; break;
        case 'C': o.ledger_client_key = optarg; break;
        case 'M':
            if (sdm_cli_int_min(PROG, "--ledger-max-msg", optarg, 1024, &v) != 0)
                return 2;
            o.ledger_max_msg = v;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (sdm_cli_no_operands(PROG, argc, argv, optind) != 0)
        return 2;
    char err[512];
    sdm_worker_t *w = sdm_worker_new(&o, err, sizeof(err));
    if (!w) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    int rc = sdm_cli_serve(&(sdm_cli_server){w, run_worker, stop_worker}, sdm_worker_endpoint(w));
    sdm_worker_destroy(&w);
    return rc;
}
