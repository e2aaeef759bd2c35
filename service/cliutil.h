/* cliutil.h - what the mains of sediment-worker and sediment-ledger share: strict integer
 * options, the operand check, and running a server until SIGTERM or SIGINT. */
#ifndef SDM_SERVICE_CLIUTIL_H
#define SDM_SERVICE_CLIUTIL_H

/* Parses flag's value s as a decimal integer from min to max into *out. Anything else (no
 * digits, trailing characters, out of range) prints "PROG: FLAG: expected an integer from
 * MIN to MAX, got 'S'" on stderr and returns -1; *out is then unchanged. */
int sdm_cli_int_range(const char *prog, const char *flag, const char *s, long long min,
                      long long max, long long *out);

/* The same with only a lower bound; the message says "expected an integer >= MIN". */
int sdm_cli_int_min(const char *prog, const char *flag, const char *s, long long min,
                    long long *out);

/* 0 when getopt took every argument (first is its optind); else prints "PROG: unexpected
 * argument 'A'" on stderr and returns -1. */
int sdm_cli_no_operands(const char *prog, int argc, char **argv, int first);

/* A server as a main runs it: run serves until stop is called and returns 0 after a clean
 * stop; stop must be async-signal-safe (a signal handler calls it). */
typedef struct sdm_cli_server {
    void *self;
    int (*run)(void *self);
    void (*stop)(void *self);
} sdm_cli_server;

/* Prints endpoint as the first line of standard output, then runs the server with SIGTERM
 * and SIGINT asking it to stop and SIGPIPE ignored. When run returns, SIGTERM and SIGINT
 * are back to their defaults and no handler refers to the server, so the caller may
 * destroy it. Returns the exit status: 0 when run returned 0, else 1. One server at a
 * time. */
int sdm_cli_serve(const sdm_cli_server *server, const char *endpoint);

#endif /* SDM_SERVICE_CLIUTIL_H */
