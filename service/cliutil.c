/* cliutil.c - what the mains of sediment-worker and sediment-ledger share (cliutil.h). */
#include "cliutil.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bounded: the message names max; otherwise it is LLONG_MAX and goes unsaid */
static int parse_int(const char *prog, const char *flag, const char *s, long long min,
                     long long max, int bounded, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        if (bounded)
            fprintf(stderr, "%s: %s: expected an integer from %lld to %lld, got '%s'\n", prog, flag,
                    min, max, s);
        else
            fprintf(stderr, "%s: %s: expected an integer >= %lld, got '%s'\n", prog, flag, min, s);
        return -1;
    }
    *out = v;
    return 0;
}

int sdm_cli_int_range(const char *prog, const char *flag, const char *s, long long min,
                      long long max, long long *out)
{
    return parse_int(prog, flag, s, min, max, 1, out);
}

int sdm_cli_int_min(const char *prog, const char *flag, const char *s, long long min,
                    long long *out)
{
    return parse_int(prog, flag, s, min, LLONG_MAX, 0, out);
}

int sdm_cli_no_operands(const char *prog, int argc, char **argv, int first)
{
    if (first >= argc)
        return 0;
    fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[first]);
    return -1;
}

/* The server the signal handler stops; NULL outside sdm_cli_serve. */
static const sdm_cli_server *volatile s_serving;

static void on_signal(int sig)
{
    (void)sig;
    const sdm_cli_server *s = s_serving;
    if (s)
        s->stop(s->self);
}

int sdm_cli_serve(const sdm_cli_server *server, const char *endpoint)
{
    s_serving = server;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("%s\n", endpoint);
    fflush(stdout);
    int rc = server->run(server->self);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    s_serving = NULL;
    return rc == 0 ? 0 : 1;
}
