/* ledger_main.c - `sediment-ledger`: the command line of the ledger service (SPEC §7). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

static sdm_ledger_t *g_ledger;

static void on_signal(int sig)
{
    (void)sig;
    if (g_ledger)
        sdm_ledger_stop(g_ledger);
}

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

static int parse_long(const char *flag, const char *s, long long min, long long max,
                      long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "sediment-ledger: %s: expected an integer from %lld to %lld, got '%s'\n",
                flag, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
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
            if (parse_long("--max-msg", optarg, 1024, INT64_MAX, &v) != 0)
                return 2;
            o.max_msg = v;
            break;
        case 'q':
            if (parse_long("--queue", optarg, 1, UINT32_MAX, &v) != 0)
                return 2;
            o.queue_depth = (uint32_t)v;
            break;
        case 'g':
            if (parse_long("--group", optarg, 1, 1 << 20, &v) != 0)
                return 2;
            o.max_group = (uint32_t)v;
            break;
        case 'k':
            if (parse_long("--checkers", optarg, 1, 16, &v) != 0)
                return 2;
            o.checkers = (uint32_t)v;
            break;
        case 'Q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sediment-ledger: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char err[1024];
    g_ledger = sdm_ledger_new(&o, err, sizeof(err));
    if (!g_ledger) {
        fprintf(stderr, "sediment-ledger: %s\n", err);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("%s\n", sdm_ledger_endpoint(g_ledger));
    fflush(stdout);
    int rc = sdm_ledger_run(g_ledger);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sdm_ledger_t *l = g_ledger;
    g_ledger = NULL;
    sdm_ledger_destroy(&l);
    return rc == 0 ? 0 : 1;
}
