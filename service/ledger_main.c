/* ledger_main.c - `sediment-ledger`: the command line of the ledger service (SPEC §7). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "cliutil.h"
#include "ledger.h"

#define PROG "sediment-ledger"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sediment-ledger [options]\n"
            "\n"
            "Verifies and records signed receipts and attribution proofs in an append-only\n"
            "Merkle log (RFC 9162) with signed C2SP checkpoints, and answers inclusion,\n"
            "consistency, history and rewards queries over ZeroMQ. An append is answered only\n"
            "after it is durable. The first line of standard output is the bound endpoint.\n"
            "SIGTERM or SIGINT: commit and answer the appends taken, then exit 0.\n"
            "\n"
            "  --listen ENDPOINT     where to bind (default %s; port 0 picks one)\n"
            "  --data DIR            ledger.db and the key pair (default ./sediment-ledger)\n"
            "  --workers FILE        allowed worker public keys, 64 hex digits a line;\n"
            "                        without it any valid signature is accepted\n"
            "  --origin NAME         checkpoint origin and key name (default: the stored one,\n"
            "                        or sediment-ledger-<key prefix> for a new log)\n"
            "  --curve-secret FILE   serve CURVE with this secret key (Z85); needs --allow\n"
            "  --allow FILE          client CURVE public keys allowed in, one a line\n"
            "  --insecure-bind       allow a non-loopback endpoint without CURVE\n"
            "  --max-msg BYTES       largest request frame (default 67108864)\n"
            "  --queue N             appends waiting for a commit before `busy` (default 8192)\n"
            "  --group N             appends per commit at most (default 1024)\n"
            "  --checkers N          threads checking signatures (default: one a core)\n"
            "  --quiet               no log lines on standard error\n"
            "  --help                this text\n",
            SDM_LEDGER_DEFAULT_ENDPOINT);
}

/* sdm_cli_serve runs any server through void pointers */
static int run_ledger(void *l)
{
    return sdm_ledger_run(l);
}

static void stop_ledger(void *l)
{
    sdm_ledger_stop(l);
}

int main(int argc, char **argv)
{
    sdm_ledger_opts o = {.data_dir = "sediment-ledger"};
    static const struct option longopts[] = {
        {"listen", required_argument, 0, 'l'},  {"data", required_argument, 0, 'd'},
        {"workers", required_argument, 0, 'w'}, {"origin", required_argument, 0, 'o'},
        {"curve-secret", required_argument, 0, 'c'}, {"allow", required_argument, 0, 'a'},
        {"insecure-bind", no_argument, 0, 'i'}, {"max-msg", required_argument, 0, 'm'},
        {"queue", required_argument, 0, 'q'},   {"group", required_argument, 0, 'g'},
        {"checkers", required_argument, 0, 'k'},
        {"quiet", no_argument, 0, 'Q'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 'd': o.data_dir = optarg; break;
        case 'w': o.workers = optarg; break;
        case 'o': o.origin = optarg; break;
        case 'c': o.curve_secret = optarg; break;
        case 'a': o.allow = optarg; break;
        case 'i': o.insecure_bind = 1; break;
        case 'm':
            if (sdm_cli_int_range(PROG, "--max-msg", optarg, 1024, INT64_MAX, &v) != 0)
                return 2;
            o.max_msg = v;
            break;
        case 'q':
            if (sdm_cli_int_range(PROG, "--queue", optarg, 1, UINT32_MAX, &v) != 0)
                return 2;
            o.queue_depth = (uint32_t)v;
            break;
        case 'g':
            if (sdm_cli_int_range(PROG, "--group", optarg, 1, 1 << 20, &v) != 0)
                return 2;
            o.max_group = (uint32_t)v;
            break;
        case 'k':
            if (sdm_cli_int_range(PROG, "--checkers", optarg, 1, 16, &v) != 0)
                return 2;
            o.checkers = (uint32_t)v;
            break;
        case 'Q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (sdm_cli_no_operands(PROG, argc, argv, optind) != 0)
        return 2;
    char err[1024];
    sdm_ledger_t *l = sdm_ledger_new(&o, err, sizeof(err));
    if (!l) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    int rc = sdm_cli_serve(&(sdm_cli_server){l, run_ledger, stop_ledger}, sdm_ledger_endpoint(l));
    sdm_ledger_destroy(&l);
    return rc;
}
