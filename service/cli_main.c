/* cli_main.c - `sediment`, the command-line client: info, register, contribute, attribute,
 * stats against a worker; verify and keygen offline; and the auditing tools of a ledger:
 * ledger-info, ledger-key, checkpoint, prove, consistency, audit, append, mirror, history,
 * rewards.
 *
 * Exit status: 0 success; 1 the server answered with an error (or did not answer, or
 * answered nonsense), or verification failed; 2 a usage or local error (bad option,
 * unreadable file, malformed envelope). With --json, stdout carries exactly one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>
#include <zmq.h>

#include "body.h"
#include "fileio.h"
#include "jsonout.h"
#include "merkle.h"
#include "mirror.h"
#include "note.h"
#include "npy.h"
#include "outbox.h"
#include "sediment/client.h"
#include "sign.h"

#define EXIT_SERVER 1
#define EXIT_USAGE 2
#define DEFAULT_ENDPOINT "tcp://127.0.0.1:7710"
#define DEFAULT_LEDGER "tcp://127.0.0.1:7720"
#define DEFAULT_TIMEOUT_S 60.0

typedef struct globals {
    const char *endpoint;
    int json;
    double timeout_s;
    const char *curve_server_key; /* files */
    const char *curve_key;
} globals;

static const char *s_cmd = NULL;        /* the command running, for messages */
static const char *s_server = "worker"; /* what it talks to, for messages */

/* Prints "sediment CMD: message" on stderr, without a newline. */
static void say(const char *fmt, va_list ap)
{
    fprintf(stderr, "sediment%s%s: ", s_cmd ? " " : "", s_cmd ? s_cmd : "");
    vfprintf(stderr, fmt, ap);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "sediment CMD: message" and a hint; returns EXIT_USAGE. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sediment%s%s --help'.\n", s_cmd ? " " : "", s_cmd ? s_cmd : "");
    return EXIT_USAGE;
}

static int local_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A local failure that is not about the command line (a file, memory). */
static int local_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

/* ---- help ---------------------------------------------------------------------------- */

static const char s_usage[] =
    "usage: sediment [--endpoint E] [--json] [--timeout S]\n"
    "                [--curve-server-key FILE --curve-key FILE] <command> [options]\n"
    "\n"
    "Talks to a sediment worker (default tcp://127.0.0.1:7710, or $SEDIMENT_ENDPOINT).\n"
    "\n"
    "commands:\n"
    "  info         the worker's version, backend, key and models\n"
    "  register     register a model and its projection\n"
    "  contribute   send a batch of training gradients or features (or curvature rows)\n"
    "  attribute    score queries against the store; prints shard, contributor and example\n"
    "               attributions and can save the signed proof\n"
    "  stats        the worker's counters\n"
    "  verify       check a saved receipt or proof offline\n"
    "  keygen       make a CURVE key pair for encrypted connections\n"
    "  outbox       the worker's entries waiting for the ledger; requeue rejected ones\n"
    "\n"
    "ledger commands (--ledger E, default tcp://127.0.0.1:7720 or $SEDIMENT_LEDGER):\n"
    "  ledger-info  the ledger's origin, size, key, verifier key and worker allow-list\n"
    "  ledger-key   print the ledger's note verifier key (from the ledger or its data dir)\n"
    "  checkpoint   fetch the signed checkpoint, verify it, optionally save it\n"
    "  prove        prove that an entry is in the log: signature, leaf hash, inclusion path\n"
    "  consistency  prove that a saved checkpoint's log is a prefix of a newer one\n"
    "  audit        fetch every entry, check each signature and body, recompute the root\n"
    "  append       append a saved receipt or proof to the ledger\n"
    "  mirror       keep a verified copy of the log in a directory; check it; restore from it\n"
    "  history      the entries touching a contributor\n"
    "  rewards      split a pool among contributors by their attribution shares\n"
    "\n"
    "evaluation (in this process, no server):\n"
    "  eval         attribution quality against retraining on the bundled digits (LDS, AUC)\n"
    "  demo         the whole pipeline on loopback: worker, ledger, contributors, rewards\n"
    "\n"
    "global options (before or after the command):\n"
    "  --endpoint E            the worker's ZeroMQ endpoint\n"
    "  --json                  print one JSON object on stdout (binary fields as hex)\n"
    "  --timeout S             seconds to wait for a reply (default 60)\n"
    "  --curve-server-key FILE the worker's CURVE public key (Z85, as keygen writes it)\n"
    "  --curve-key FILE        this client's CURVE secret key file (PREFIX.key)\n"
    "\n"
    "'sediment <command> --help' describes a command. Exit status: 0 ok, 1 the server\n"
    "replied with an error, did not reply, or verification failed, 2 usage or local error.\n";

static const char s_help_info[] =
    "usage: sediment info\n"
    "\n"
    "Prints the worker's version, backend and device, its signing key (the key receipts and\n"
    "proofs must verify under) and every registered model with its store size and root.\n";

static const char s_help_register[] =
    "usage: sediment register --model M --input-dim D --kind rademacher|sjlt|none --dim K\n"
    "                         --seed S [--s N]\n"
    "\n"
    "Registers model M: gradients of length D are projected to K dimensions by the\n"
    "projection of the given kind and seed (SPEC section 2). --s is sjlt's non-zeros per\n"
    "input coordinate (default 1; must divide K). With --kind none the client sends\n"
    "features already projected and --dim defaults to D. Registering the same definition\n"
    "again is fine; a different one is a conflict.\n";

static const char s_help_contribute[] =
    "usage: sediment contribute --model M --checkpoint C --lr X --contributor A --shard S\n"
    "                           --ids FILE.npy (--grads FILE.npy | --features FILE.npy)\n"
    "                           [--weights FILE.npy] [--dtype bf16] [--receipt-out FILE]\n"
    "       sediment contribute --curvature --model M --checkpoint C --lr X\n"
    "                           (--grads FILE.npy | --features FILE.npy) [--dtype bf16]\n"
    "\n"
    "Sends one batch: n examples of shard S (owned by contributor A) at checkpoint C with\n"
    "learning-rate weight X. --ids holds n example ids (uint64, 1-D); --grads an n x d\n"
    "matrix of per-example gradients (float32, float16, or float64 which is sent as\n"
    "float32), or --features n x k rows already projected; --weights n float64 example\n"
    "weights. bfloat16 arrays are stored by NumPy as uint16: pass --dtype bf16 to send them\n"
    "as such. --curvature sends rows that shape TRAK's curvature and are never scored.\n"
    "Prints the batch number, its leaf hash and the store's new size and root;\n"
    "--receipt-out saves the signed receipt (check it with 'sediment verify').\n";

static const char s_help_attribute[] =
    "usage: sediment attribute --model M (--queries CKPT=FILE.npy ... |\n"
    "                          --query-features CKPT=FILE.npy ...) [--method dot|cosine|trak]\n"
    "                          [--aggregate sum|mean] [--topk N] [--lambda X]\n"
    "                          [--query-ids FILE.npy] [--request-id R] [--dtype bf16]\n"
    "                          [--proof-out FILE]\n"
    "\n"
    "Scores m queries against every example stored for model M. Each CKPT=FILE gives the\n"
    "m x d query gradients (or m x k features) at one checkpoint; name several checkpoints\n"
    "to sum over them (TracIn-CP). --method defaults to dot, --aggregate to sum, --topk to\n"
    "the server's 10 (0: shard and contributor scores only). --lambda sets trak's damping\n"
    "for every checkpoint. --query-ids names the queries (uint64, 1-D, m values).\n"
    "Prints, per query, every shard and contributor with its score and share and the\n"
    "top and bottom examples, read from the signed proof; --proof-out saves the proof.\n";

static const char s_help_stats[] =
    "usage: sediment stats\n"
    "\n"
    "Prints the worker's counters: requests, requests per op, errors per code, batches,\n"
    "examples and bytes stored, compute seconds and uptime.\n";

static const char s_help_verify[] =
    "usage: sediment verify FILE [--key HEX]... [--json]\n"
    "\n"
    "Checks a receipt or proof saved with --receipt-out/--proof-out, without a server: the\n"
    "envelope's form, its Ed25519 signature over the exact body bytes, that the body names\n"
    "the signing key as its worker, and, when --key is given, that the signer is one of\n"
    "those keys (64 hex digits each). For a receipt it also recomputes the batch's leaf\n"
    "hash from the body's fields. Prints the type and main fields.\n"
    "Exit status: 0 valid, 1 the signature, key or leaf does not hold, 2 malformed file.\n";

static const char s_help_keygen[] =
    "usage: sediment keygen --curve --out PREFIX\n"
    "\n"
    "Writes a new CURVE key pair as Z85 text: PREFIX.key (the secret key, mode 0600) and\n"
    "PREFIX.pub (the public key). Existing files are never overwritten. Give the worker\n"
    "its .key with --curve-secret and list clients' .pub files in its --allow file; give\n"
    "a client the worker's .pub with --curve-server-key and its own .key with --curve-key.\n";

/* ---- small parsers ------------------------------------------------------------------- */

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Matches `--name value` or `--name=value` at argv[*i]; on a match sets *value and moves
 * *i past it. Returns 1 on a match, 0 otherwise, -1 when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != 0)
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Takes a global option at argv[*i] if it is one. 1: taken, 0: not one, EXIT_USAGE+100:
 * a bad value (the message is printed). */
static int global_opt(globals *g, int argc, char **argv, int *i)
{
    const char *v;
    int r;
    if (strcmp(argv[*i], "--json") == 0) {
        g->json = 1;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--endpoint", &v)) != 0) {
        if (r < 0 || !*v)
            return usage_error("--endpoint needs a value") + 100;
        g->endpoint = v;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--timeout", &v)) != 0) {
        double t;
        if (r < 0 || parse_double(v, &t) != 0 || t <= 0 || t > 86400 * 7)
            return usage_error("--timeout: '%s' is not a number of seconds", r < 0 ? "" : v) + 100;
        g->timeout_s = t;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--curve-server-key", &v)) != 0) {
        if (r < 0)
            return usage_error("--curve-server-key needs a file") + 100;
        g->curve_server_key = v;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--curve-key", &v)) != 0) {
        if (r < 0)
            return usage_error("--curve-key needs a file") + 100;
        g->curve_key = v;
        return 1;
    }
    return 0;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A command's option that takes one value: --name VALUE or --name=VALUE. */
typedef struct value_opt {
    const char *name;
    const char **dst;
} value_opt;

/* A command's switch: --name alone sets *dst to 1. */
typedef struct flag_opt {
    const char *name;
    int *dst;
} flag_opt;

/* Which key a ledger command trusts to have signed checkpoints. */
typedef struct trust_opts {
    const char *vkey;
    const char *vkey_file;
    int tofu;
    char *resolved; /* the verifier key in use (malloc'd) */
} trust_opts;

/* What a command takes besides the global options. */
typedef struct command_spec {
    const char *help; /* printed for --help */
    const value_opt *opts;
    size_t n_opts;
    const flag_opt *flags;
    size_t n_flags;
    trust_opts *trust; /* when set, takes --vkey, --vkey-file and --tofu into it */
    const char **file; /* when set, takes one FILE argument into it */
} command_spec;

/* Takes argv[*i] if it is one of the n value options. 1: it was one (*rc: 0, or the exit
 * status of a missing value, reported); 0: it was none of them. */
static int take_value(int argc, char **argv, int *i, const value_opt *opts, size_t n, int *rc)
{
    for (size_t k = 0; k < n; k++) {
        int r = opt_value(argc, argv, i, opts[k].name, opts[k].dst);
        if (r < 0)
            *rc = usage_error("%s needs a value", opts[k].name);
        if (r)
            return 1;
    }
    return 0;
}

/* Takes argv[*i] as a global option or one of the command's options and switches. 0: taken;
 * otherwise the exit status of a usage error (printed), an unknown argument included. */
static int command_opt(globals *g, int argc, char **argv, int *i, const command_spec *s)
{
    const char *a = argv[*i];
    if (s->trust && strcmp(a, "--tofu") == 0) {
        s->trust->tofu = 1;
        return 0;
    }
    for (size_t k = 0; k < s->n_flags; k++)
        if (strcmp(a, s->flags[k].name) == 0) {
            *s->flags[k].dst = 1;
            return 0;
        }
    int rc = global_opt(g, argc, argv, i);
    if (rc > 100)
        return rc - 100;
    if (rc)
        return 0;
    if (take_value(argc, argv, i, s->opts, s->n_opts, &rc))
        return rc;
    if (s->trust) {
        const value_opt trust[] = {{"--vkey", &s->trust->vkey},
                                   {"--vkey-file", &s->trust->vkey_file}};
        if (take_value(argc, argv, i, trust, COUNT(trust), &rc))
            return rc;
    }
    return usage_error("unexpected argument '%s'", a);
}

/* Parses a command's arguments. Returns 1 when the command is done, with *rc its exit
 * status: 0 after --help, or that of a usage error (printed); 0 when it goes on. */
static int parse_command(globals *g, int argc, char **argv, const command_spec *s, int *rc)
{
    *rc = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(s->help, stdout);
            return 1;
        }
        if (s->file && (a[0] != '-' || !a[1])) {
            if (*s->file) {
                *rc = usage_error("one file at a time ('%s' and '%s')", *s->file, a);
                return 1;
            }
            *s->file = a;
            continue;
        }
        if ((*rc = command_opt(g, argc, argv, &i, s)) != 0)
            return 1;
    }
    return 0;
}

/* ---- output helpers ------------------------------------------------------------------ */

static void print_hex(FILE *f, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", b[i]);
}

/* Reports a failed client call; returns the exit status. */
static int call_failed(const globals *g, sdm_client_t *c, sdm_client_status st)
{
    const char *msg = sdm_client_last_error(c);
    if (g->json) {
        printf("{\"ok\": false, \"error\": {\"code\": ");
        sdm_json_write_str(stdout, sdm_client_status_str(st));
        printf(", \"message\": ");
        sdm_json_write_str(stdout, msg);
        printf("}}\n");
    }
    if (sdm_client_status_is_server(st))
        fprintf(stderr, "sediment %s: the %s replied %s: %s\n", s_cmd, s_server,
                sdm_client_status_str(st), msg);
    else
        fprintf(stderr, "sediment %s: %s: %s\n", s_cmd, sdm_client_status_str(st), msg);
    return st == SDM_CLIENT_BAD_ARGUMENT || st == SDM_CLIENT_NOMEM ? EXIT_USAGE : EXIT_SERVER;
}

static int print_reply_json(const sdm_reply_t *r)
{
    char *j = sdm_reply_json(r);
    if (!j)
        return local_error("out of memory");
    printf("%s\n", j);
    free(j);
    return 0;
}

/* Ends a command's connection after its call: reports the call's failure, destroys the
 * client either way. Returns 0, or the exit status of the failure. */
static int end_call(const globals *g, sdm_client_t **c, sdm_client_status st)
{
    int rc = st == SDM_CLIENT_OK ? 0 : call_failed(g, *c, st);
    sdm_client_destroy(c);
    return rc;
}

static void format_time(uint64_t ns, char *out, size_t len)
{
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, len, "%" PRIu64 " ns", ns);
        return;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%09" PRIu64 "Z", base, ns % 1000000000u);
}

/* Writes bytes to path (created or truncated, 0644). */
static int write_file(const char *path, const uint8_t *b, size_t n, char *err, size_t err_len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t w = fwrite(b, 1, n, f);
    int bad = w != n || fflush(f) != 0;
    if (fclose(f) != 0 || bad) {
        snprintf(err, err_len, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads a whole file (at most max bytes). *out is malloc'd, with a NUL after the *len
 * bytes so that a text file is a string. */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *len, char *err,
                     size_t err_len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > max) {
        snprintf(err, err_len, "%s: %lld bytes, more than the %zu this reads", path,
                 (long long)st.st_size, max);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got;
    uint8_t *b = malloc(n + 1);
    if (!b) {
        snprintf(err, err_len, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    int rc = sdm_read_all(fd, b, n, &got);
    int saved = errno;
    close(fd);
    if (rc != 0 || got != n) {
        snprintf(err, err_len, "%s: read failed: %s", path,
                 rc ? strerror(saved) : "the file shrank while being read");
        free(b);
        return -1;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

/* ---- CURVE key files ----------------------------------------------------------------- */

/* Reads a Z85 key (40 characters, surrounding whitespace allowed) from path into out[41].
 * A secret key file must not be readable by group or others. */
static int read_z85_key(const char *path, int secret, char out[41], char *err, size_t err_len)
{
    uint8_t *b;
    size_t n;
    if (read_file(path, 4096, &b, &n, err, err_len) != 0)
        return -1;
    if (secret) {
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077)) {
            snprintf(err, err_len,
                     "%s: a secret key file must not be readable by group or "
                     "others (chmod 600 %s)",
                     path, path);
            sodium_memzero(b, n);
            free(b);
            return -1;
        }
    }
    size_t start = 0, end = n;
    while (start < end &&
           (b[start] == ' ' || b[start] == '\n' || b[start] == '\r' || b[start] == '\t'))
        start++;
    while (end > start &&
           (b[end - 1] == ' ' || b[end - 1] == '\n' || b[end - 1] == '\r' || b[end - 1] == '\t'))
        end--;
    int ok = end - start == 40;
    if (ok) {
        memcpy(out, b + start, 40);
        out[40] = 0;
        uint8_t raw[32];
        ok = zmq_z85_decode(raw, out) != NULL;
        sodium_memzero(raw, sizeof(raw));
    }
    sodium_memzero(b, n);
    free(b);
    if (!ok) {
        snprintf(err, err_len, "%s: not a Z85 CURVE key (40 characters)", path);
        return -1;
    }
    return 0;
}

static sdm_client_t *make_client(const globals *g, int *rc)
{
    sdm_client_opts o;
    memset(&o, 0, sizeof(o));
    double ms = g->timeout_s * 1000.0;
    o.timeout_ms = ms > INT_MAX ? INT_MAX : ms < 1 ? 1 : (int)ms;
    char server[41] = {0}, secret[41] = {0}, public_key[41] = {0};
    char err[512];
    if (!!g->curve_server_key != !!g->curve_key) {
        *rc = usage_error("--curve-server-key and --curve-key go together");
        return NULL;
    }
    if (g->curve_key) {
        if (read_z85_key(g->curve_server_key, 0, server, err, sizeof(err)) != 0 ||
            read_z85_key(g->curve_key, 1, secret, err, sizeof(err)) != 0) {
            *rc = local_error("%s", err);
            return NULL;
        }
        if (zmq_curve_public(public_key, secret) != 0) {
            sodium_memzero(secret, sizeof(secret));
            *rc = local_error("%s: cannot derive the public key: %s", g->curve_key,
                              zmq_strerror(zmq_errno()));
            return NULL;
        }
        o.server_key = server;
        o.public_key = public_key;
        o.secret_key = secret;
    }
    sdm_client_t *c = sdm_client_new(g->endpoint, &o, err, sizeof(err));
    sodium_memzero(secret, sizeof(secret));
    if (!c)
        *rc = local_error("%s", err);
    return c;
}

/* ---- matrices from .npy files -------------------------------------------------------- */

typedef struct loaded_matrix {
    sdm_npy npy;
    float *converted; /* float64 files are sent as float32 */
    sdm_matrix m;
} loaded_matrix;

static void loaded_free(loaded_matrix *l)
{
    sdm_npy_free(&l->npy);
    free(l->converted);
    memset(l, 0, sizeof(*l));
}

/* Loads a 2-D matrix file. dtype_flag is --dtype (NULL when absent): "bf16" makes <u2
 * files bfloat16; "f32"/"f16" insist on that dtype. */
static int load_matrix(const char *path, const char *dtype_flag, const char *what, loaded_matrix *l,
                       char *err, size_t err_len)
{
    memset(l, 0, sizeof(*l));
    int bf16 = dtype_flag && strcmp(dtype_flag, "bf16") == 0;
    unsigned accept =
        SDM_NPY_MASK(SDM_NPY_F4) | SDM_NPY_MASK(SDM_NPY_F2) | SDM_NPY_MASK(SDM_NPY_F8);
    if (bf16)
        accept = SDM_NPY_MASK(SDM_NPY_U2);
    else if (dtype_flag && strcmp(dtype_flag, "f16") == 0)
        accept = SDM_NPY_MASK(SDM_NPY_F2);
    else if (dtype_flag && strcmp(dtype_flag, "f32") == 0)
        accept = SDM_NPY_MASK(SDM_NPY_F4) | SDM_NPY_MASK(SDM_NPY_F8);
    if (sdm_npy_read(path, accept, &l->npy, err, err_len) != 0) {
        /* a uint16 file without --dtype bf16 is the one mistake worth a hint */
        sdm_npy probe;
        char e2[64];
        if (!bf16 && sdm_npy_read(path, SDM_NPY_MASK(SDM_NPY_U2), &probe, e2, sizeof(e2)) == 0) {
            sdm_npy_free(&probe);
            size_t used = strlen(err);
            snprintf(err + used, err_len - used,
                     " (for bfloat16 stored as uint16, pass --dtype "
                     "bf16)");
        }
        return -1;
    }
    if (l->npy.ndim != 2) {
        snprintf(err, err_len, "%s: %s must be a 2-D array (rows x columns), this one is 1-D", path,
                 what);
        loaded_free(l);
        return -1;
    }
    l->m.rows = l->npy.shape[0];
    l->m.cols = l->npy.shape[1];
    l->m.data = l->npy.data;
    switch (l->npy.dtype) {
    case SDM_NPY_F4:
        l->m.dtype = SDM_F32;
        break;
    case SDM_NPY_F2:
        l->m.dtype = SDM_F16;
        break;
    case SDM_NPY_U2:
        l->m.dtype = SDM_BF16;
        break;
    case SDM_NPY_F8: {
        size_t n = (size_t)(l->m.rows * l->m.cols);
        const double *d = l->npy.data;
        l->converted = malloc((n ? n : 1) * sizeof(float));
        if (!l->converted) {
            snprintf(err, err_len, "%s: out of memory", path);
            loaded_free(l);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (isfinite(d[i]) && fabs(d[i]) > FLT_MAX) {
                snprintf(err, err_len, "%s: element %zu (row %zu) is %g, outside float32's range",
                         path, i, i / (size_t)l->m.cols, d[i]);
                loaded_free(l);
                return -1;
            }
            l->converted[i] = (float)d[i];
        }
        l->m.dtype = SDM_F32;
        l->m.data = l->converted;
        break;
    }
    default:
        snprintf(err, err_len, "%s: unexpected dtype", path);
        loaded_free(l);
        return -1;
    }
    return 0;
}

/* Loads a 1-D array of one dtype with an expected length (0: any). */
static int load_vector(const char *path, sdm_npy_dtype dtype, uint64_t want_n, const char *what,
                       const char *against, sdm_npy *out, char *err, size_t err_len)
{
    if (sdm_npy_read(path, SDM_NPY_MASK(dtype), out, err, err_len) != 0) {
        if (dtype == SDM_NPY_U8 && strstr(err, "'<i8'")) {
            size_t used = strlen(err);
            snprintf(err + used, err_len - used, " (np.asarray(ids, dtype=np.uint64))");
        }
        return -1;
    }
    if (out->ndim != 1) {
        snprintf(err, err_len, "%s: %s must be a 1-D array", path, what);
        sdm_npy_free(out);
        return -1;
    }
    if (want_n && out->shape[0] != want_n) {
        snprintf(err, err_len, "%s: %" PRIu64 " %s, but %s has %" PRIu64 " rows", path,
                 out->shape[0], what, against, want_n);
        sdm_npy_free(out);
        return -1;
    }
    return 0;
}

static int check_dtype_flag(const char *v)
{
    return strcmp(v, "bf16") == 0 || strcmp(v, "f16") == 0 || strcmp(v, "f32") == 0;
}

/* What info and stats share: global options only, then one call that takes no arguments.
 * Returns the reply for the command to print for people (the caller's); NULL when the
 * command is done, with *rc its exit status: after --help, a usage error, a failed call,
 * or --json, which printed the reply. */
static sdm_reply_t *plain_call(globals *g, int argc, char **argv, const char *help,
                               sdm_client_status (*call)(sdm_client_t *, sdm_reply_t **), int *rc)
{
    const command_spec spec = {.help = help};
    if (parse_command(g, argc, argv, &spec, rc))
        return NULL;
    sdm_client_t *c = make_client(g, rc);
    if (!c)
        return NULL;
    sdm_reply_t *r = NULL;
    sdm_client_status st = call(c, &r);
    if ((*rc = end_call(g, &c, st)) != 0)
        return NULL;
    if (g->json) {
        *rc = print_reply_json(r);
        sdm_reply_destroy(&r);
    }
    return r;
}

/* ---- info ---------------------------------------------------------------------------- */

static int cmd_info(globals *g, int argc, char **argv)
{
    int rc;
    sdm_reply_t *r = plain_call(g, argc, argv, s_help_info, sdm_client_info, &rc);
    if (r) {
        size_t klen;
        const uint8_t *key = sdm_reply_bin(r, "worker_key", &klen);
        printf("version     %s\n", sdm_reply_str(r, "version"));
        printf("backend     %s (%s)\n", sdm_reply_str(r, "backend"), sdm_reply_str(r, "device"));
        printf("worker key  ");
        print_hex(stdout, key, klen);
        printf("\nmodels      %zu\n", sdm_reply_n_models(r));
        for (size_t i = 0; i < sdm_reply_n_models(r); i++) {
            const sdm_model_info *m = sdm_reply_model(r, i);
            printf("  %s: input_dim %" PRIu64 ", %s k=%" PRIu64 " seed=%" PRIu64, m->model,
                   m->input_dim, m->kind, m->dim, m->seed);
            if (strcmp(m->kind, "sjlt") == 0)
                printf(" s=%" PRIu64, m->s ? m->s : 1);
            printf(", store_size %" PRIu64 ", store_root ", m->store_size);
            print_hex(stdout, m->store_root, 32);
            printf("\n");
        }
    }
    sdm_reply_destroy(&r);
    return rc;
}

/* ---- register ------------------------------------------------------------------------ */

static int cmd_register(globals *g, int argc, char **argv)
{
    const char *model = NULL, *input_dim = NULL, *kind = NULL, *dim = NULL, *seed = NULL, *s = NULL;
    const value_opt opts[] = {{"--model", &model}, {"--input-dim", &input_dim}, {"--kind", &kind},
                              {"--dim", &dim},     {"--seed", &seed},           {"--s", &s}};
    const command_spec spec = {.help = s_help_register, .opts = opts, .n_opts = COUNT(opts)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!model || !input_dim || !kind || !seed)
        return usage_error("--%s is required", !model       ? "model"
                                               : !input_dim ? "input-dim"
                                               : !kind      ? "kind"
                                                            : "seed");
    sdm_projection p;
    memset(&p, 0, sizeof(p));
    uint64_t v;
    if (sdm_proj_kind_parse(kind, &p.kind) != SDM_OK)
        return usage_error("--kind: '%s' is not rademacher, sjlt or none", kind);
    if (parse_u64(input_dim, &p.input_dim) != 0 || p.input_dim == 0)
        return usage_error("--input-dim: '%s' is not a positive integer", input_dim);
    if (!dim && p.kind != SDM_PROJ_NONE)
        return usage_error("--dim is required");
    if (dim) {
        if (parse_u64(dim, &v) != 0 || v == 0 || v > UINT32_MAX)
            return usage_error("--dim: '%s' is not a positive 32-bit integer", dim);
        p.dim = (uint32_t)v;
    } else {
        if (p.input_dim > UINT32_MAX)
            return usage_error("--dim: give it; --input-dim is too large to default to");
        p.dim = (uint32_t)p.input_dim;
    }
    if (parse_u64(seed, &p.seed) != 0)
        return usage_error("--seed: '%s' is not an unsigned 64-bit integer", seed);
    if (s) {
        if (p.kind != SDM_PROJ_SJLT)
            return usage_error("--s is for --kind sjlt only");
        if (parse_u64(s, &v) != 0 || v == 0 || v > UINT32_MAX)
            return usage_error("--s: '%s' is not a positive integer", s);
        p.s = (uint32_t)v;
    }
    sdm_client_t *c = make_client(g, &rc);
    if (!c)
        return rc;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_register(c, model, &p, &r);
    if ((rc = end_call(g, &c, st)) != 0)
        return rc;
    if (g->json) {
        rc = print_reply_json(r);
    } else {
        int created = 0;
        (void)sdm_reply_bool(r, "created", &created);
        printf(created ? "registered model %s\n"
                       : "model %s was already registered with this definition\n",
               model);
    }
    sdm_reply_destroy(&r);
    return rc;
}

/* ---- contribute ---------------------------------------------------------------------- */

static int cmd_contribute(globals *g, int argc, char **argv)
{
    const char *model = NULL, *ckpt = NULL, *lr_s = NULL, *contributor = NULL, *shard = NULL,
               *ids_path = NULL, *grads = NULL, *features = NULL, *weights_path = NULL,
               *dtype = NULL, *receipt_out = NULL;
    int curvature = 0;
    const value_opt opts[] = {{"--model", &model},
                              {"--checkpoint", &ckpt},
                              {"--lr", &lr_s},
                              {"--contributor", &contributor},
                              {"--shard", &shard},
                              {"--ids", &ids_path},
                              {"--grads", &grads},
                              {"--features", &features},
                              {"--weights", &weights_path},
                              {"--dtype", &dtype},
                              {"--receipt-out", &receipt_out}};
    const flag_opt flags[] = {{"--curvature", &curvature}};
    const command_spec spec = {.help = s_help_contribute,
                               .opts = opts,
                               .n_opts = COUNT(opts),
                               .flags = flags,
                               .n_flags = COUNT(flags)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!model || !ckpt || !lr_s)
        return usage_error("--%s is required", !model ? "model" : !ckpt ? "checkpoint" : "lr");
    if (!!grads == !!features)
        return usage_error("give exactly one of --grads and --features");
    if (curvature) {
        if (contributor || shard || ids_path || weights_path)
            return usage_error("--curvature rows carry no %s", contributor ? "--contributor"
                                                               : shard     ? "--shard"
                                                               : ids_path  ? "--ids"
                                                                           : "--weights");
    } else if (!contributor || !shard || !ids_path) {
        return usage_error("--%s is required (or --curvature)", !contributor ? "contributor"
                                                                : !shard     ? "shard"
                                                                             : "ids");
    }
    double lr;
    if (parse_double(lr_s, &lr) != 0)
        return usage_error("--lr: '%s' is not a finite number", lr_s);
    if (dtype && !check_dtype_flag(dtype))
        return usage_error("--dtype: '%s' is not bf16, f16 or f32", dtype);

    char err[512];
    loaded_matrix rows;
    sdm_npy ids, weights;
    memset(&ids, 0, sizeof(ids));
    memset(&weights, 0, sizeof(weights));
    if (load_matrix(grads ? grads : features, dtype, grads ? "--grads" : "--features", &rows, err,
                    sizeof(err)) != 0)
        return local_error("%s", err);
    const char *rows_path = grads ? grads : features;
    if (!curvature && load_vector(ids_path, SDM_NPY_U8, rows.m.rows, "example ids", rows_path, &ids,
                                  err, sizeof(err)) != 0) {
        rc = local_error("%s", err);
        goto done;
    }
    if (weights_path && load_vector(weights_path, SDM_NPY_F8, rows.m.rows, "weights", rows_path,
                                    &weights, err, sizeof(err)) != 0) {
        rc = local_error("%s", err);
        goto done;
    }
    sdm_batch b;
    memset(&b, 0, sizeof(b));
    b.checkpoint = ckpt;
    b.lr = lr;
    b.contributor = contributor;
    b.shard = shard;
    b.curvature = curvature;
    b.ids = curvature ? NULL : (const uint64_t *)ids.data;
    b.rows = rows.m;
    b.is_features = features != NULL;
    b.weights = weights_path ? (const double *)weights.data : NULL;

    sdm_client_t *c = make_client(g, &rc);
    if (!c)
        goto done;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_contribute(c, model, &b, &r);
    if ((rc = end_call(g, &c, st)) != 0)
        goto done;
    size_t env_len = 0;
    const uint8_t *env = sdm_reply_envelope(r, &env_len);
    if (receipt_out && write_file(receipt_out, env, env_len, err, sizeof(err)) != 0) {
        /* the batch is stored; say so, so the user does not send it again */
        fprintf(stderr,
                "sediment contribute: the batch was accepted, but saving the receipt "
                "failed: %s\n",
                err);
        rc = EXIT_USAGE;
    }
    if (g->json) {
        if (print_reply_json(r) != 0)
            rc = EXIT_USAGE;
    } else {
        uint64_t batch = 0, size = 0;
        size_t l;
        (void)sdm_reply_u64(r, "batch", &batch);
        (void)sdm_reply_u64(r, "store_size", &size);
        printf("batch       %" PRIu64 "\nleaf        ", batch);
        print_hex(stdout, sdm_reply_bin(r, "leaf", &l), 32);
        printf("\nstore_size  %" PRIu64 "\nstore_root  ", size);
        print_hex(stdout, sdm_reply_bin(r, "store_root", &l), 32);
        printf("\n");
        if (receipt_out && rc == 0)
            printf("receipt     %s (%zu bytes)\n", receipt_out, env_len);
    }
    sdm_reply_destroy(&r);
done:
    loaded_free(&rows);
    sdm_npy_free(&ids);
    sdm_npy_free(&weights);
    return rc;
}

/* ---- attribute ----------------------------------------------------------------------- */

static void print_queries(const sdm_reply_t *body)
{
    for (size_t q = 0; q < sdm_reply_n_queries(body); q++) {
        const sdm_query_result *qr = sdm_reply_query(body, q);
        printf("\nquery %s\n", qr->id);
        printf("  %-24s %-20s %14s %8s\n", "shard", "contributor", "score", "share");
        for (size_t i = 0; i < qr->n_shards; i++)
            printf("  %-24s %-20s %14.6g %7.2f%%\n", qr->shards[i].shard, qr->shards[i].contributor,
                   qr->shards[i].score, 100 * qr->shards[i].share);
        printf("  %-45s %14s %8s\n", "contributor", "score", "share");
        for (size_t i = 0; i < qr->n_contributors; i++)
            printf("  %-45s %14.6g %7.2f%%\n", qr->contributors[i].contributor,
                   qr->contributors[i].score, 100 * qr->contributors[i].share);
        if (qr->n_top) {
            printf("  top (helps most)          %-20s %14s\n", "shard", "score");
            for (size_t i = 0; i < qr->n_top; i++)
                printf("    example %-15" PRIu64 " %-20s %14.6g\n", qr->top[i].example_id,
                       qr->top[i].shard, qr->top[i].score);
        }
        if (qr->n_bottom) {
            printf("  bottom (hurts most)       %-20s %14s\n", "shard", "score");
            for (size_t i = 0; i < qr->n_bottom; i++)
                printf("    example %-15" PRIu64 " %-20s %14.6g\n", qr->bottom[i].example_id,
                       qr->bottom[i].shard, qr->bottom[i].score);
        }
    }
}

/* The header lines of a proof body: model, method, checkpoints, store. */
static void print_proof_header(const sdm_reply_t *body)
{
    uint64_t size = 0;
    size_t l = 0;
    printf("model       %s\n", sdm_reply_str(body, "model") ? sdm_reply_str(body, "model") : "?");
    printf("method      %s, aggregate %s\n",
           sdm_reply_str(body, "method") ? sdm_reply_str(body, "method") : "?",
           sdm_reply_str(body, "aggregate") ? sdm_reply_str(body, "aggregate") : "?");
    int64_t n_ck = sdm_reply_count(body, "checkpoints");
    printf("checkpoints");
    for (int64_t i = 0; i < n_ck; i++) {
        char p_id[48], p_lr[48];
        snprintf(p_id, sizeof(p_id), "checkpoints.%" PRId64 ".id", i);
        snprintf(p_lr, sizeof(p_lr), "checkpoints.%" PRId64 ".lr", i);
        double lr = NAN, lambda = NAN;
        (void)sdm_reply_f64(body, p_lr, &lr);
        const char *id = sdm_reply_str(body, p_id);
        printf(" %s (lr %g", id ? id : "?", lr);
        char p_lam[48];
        snprintf(p_lam, sizeof(p_lam), "lambda.%" PRId64, i);
        if (sdm_reply_f64(body, p_lam, &lambda) == 0)
            printf(", lambda %g", lambda);
        printf(")");
    }
    (void)sdm_reply_u64(body, "store_size", &size);
    printf("\nstore_size  %" PRIu64 "\nstore_root  ", size);
    const uint8_t *root = sdm_reply_bin(body, "store_root", &l);
    if (root)
        print_hex(stdout, root, l);
    const char *rid = sdm_reply_str(body, "request_id");
    printf("\n");
    if (rid && *rid)
        printf("request_id  %s\n", rid);
}

typedef struct query_arg {
    const char *checkpoint; /* points into argv (the part before '=') */
    const char *path;
    loaded_matrix mat;
} query_arg;

static int cmd_attribute(globals *g, int argc, char **argv)
{
    const char *model = NULL, *method_s = NULL, *agg_s = NULL, *topk_s = NULL, *lambda_s = NULL,
               *request_id = NULL, *proof_out = NULL, *dtype = NULL, *qids_path = NULL;
    const value_opt opts[] = {
        {"--model", &model},         {"--method", &method_s}, {"--aggregate", &agg_s},
        {"--topk", &topk_s},         {"--lambda", &lambda_s}, {"--request-id", &request_id},
        {"--proof-out", &proof_out}, {"--dtype", &dtype},     {"--query-ids", &qids_path}};
    const command_spec spec = {.help = s_help_attribute, .opts = opts, .n_opts = COUNT(opts)};
    query_arg *qa = calloc((size_t)argc + 1, sizeof(query_arg));
    if (!qa)
        return local_error("out of memory");
    size_t n_q = 0;
    int features = -1; /* -1: not yet known; 0: --queries; 1: --query-features */
    int rc = 0;
    /* CKPT=FILE values follow --queries / --query-features until the next option */
    int collecting = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(s_help_attribute, stdout);
            free(qa);
            return 0;
        }
        const char *a = argv[i];
        int is_q = strcmp(a, "--queries") == 0 || strncmp(a, "--queries=", 10) == 0;
        int is_f = strcmp(a, "--query-features") == 0 || strncmp(a, "--query-features=", 17) == 0;
        const char *pair = NULL;
        if (is_q || is_f) {
            if (features >= 0 && features != is_f) {
                rc = usage_error("--queries and --query-features cannot be mixed");
                goto done;
            }
            features = is_f;
            const char *eq = strchr(a, '=');
            if (eq) {
                pair = eq + 1;
            } else {
                collecting = 1;
                if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
                    rc = usage_error("%s needs CKPT=FILE.npy", a);
                    goto done;
                }
                continue;
            }
        } else if (collecting && strncmp(a, "--", 2) != 0) {
            pair = a;
        }
        if (pair) {
            const char *eq = strchr(pair, '=');
            if (!eq || eq == pair || !eq[1]) {
                rc = usage_error("'%s' is not CKPT=FILE.npy", pair);
                goto done;
            }
            /* the checkpoint name is the text before the first '=' */
            size_t n = (size_t)(eq - pair);
            char *ck = malloc(n + 1);
            if (!ck) {
                rc = local_error("out of memory");
                goto done;
            }
            memcpy(ck, pair, n);
            ck[n] = 0;
            qa[n_q].checkpoint = ck;
            qa[n_q].path = eq + 1;
            n_q++;
            continue;
        }
        collecting = 0;
        if ((rc = command_opt(g, argc, argv, &i, &spec)) != 0)
            goto done;
    }
    if (!model) {
        rc = usage_error("--model is required");
        goto done;
    }
    if (n_q == 0) {
        rc = usage_error("give the queries: --queries CKPT=FILE.npy or --query-features "
                         "CKPT=FILE.npy");
        goto done;
    }
    sdm_client_attr req;
    memset(&req, 0, sizeof(req));
    req.model = model;
    req.topk = -1;
    if (method_s && sdm_method_parse(method_s, &req.method) != SDM_OK) {
        rc = usage_error("--method: '%s' is not dot, cosine or trak", method_s);
        goto done;
    }
    if (agg_s && sdm_aggregate_parse(agg_s, &req.aggregate) != SDM_OK) {
        rc = usage_error("--aggregate: '%s' is not sum or mean", agg_s);
        goto done;
    }
    if (topk_s) {
        uint64_t t;
        if (parse_u64(topk_s, &t) != 0 || t > INT_MAX) {
            rc = usage_error("--topk: '%s' is not a non-negative integer", topk_s);
            goto done;
        }
        req.topk = (int)t;
    }
    if (lambda_s) {
        if (parse_double(lambda_s, &req.lambda) != 0 || req.lambda < 0) {
            rc = usage_error("--lambda: '%s' is not a non-negative number", lambda_s);
            goto done;
        }
        req.has_lambda = 1;
    }
    if (dtype && !check_dtype_flag(dtype)) {
        rc = usage_error("--dtype: '%s' is not bf16, f16 or f32", dtype);
        goto done;
    }
    for (size_t i = 0; i < n_q; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(qa[i].checkpoint, qa[j].checkpoint) == 0) {
                rc = usage_error("checkpoint '%s' is given twice", qa[i].checkpoint);
                goto done;
            }

    char err[512];
    sdm_query *queries = calloc(n_q, sizeof(sdm_query));
    sdm_npy qids;
    memset(&qids, 0, sizeof(qids));
    if (!queries) {
        rc = local_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_q; i++) {
        if (load_matrix(qa[i].path, dtype, features ? "--query-features" : "--queries", &qa[i].mat,
                        err, sizeof(err)) != 0) {
            rc = local_error("%s", err);
            goto done_q;
        }
        if (i > 0 && qa[i].mat.m.rows != qa[0].mat.m.rows) {
            rc = local_error("%s has %" PRIu64 " queries but %s has %" PRIu64
                             "; every checkpoint needs the same queries",
                             qa[i].path, qa[i].mat.m.rows, qa[0].path, qa[0].mat.m.rows);
            goto done_q;
        }
        queries[i].checkpoint = qa[i].checkpoint;
        queries[i].rows = qa[i].mat.m;
        queries[i].is_features = features;
        queries[i].lambda = NAN;
    }
    if (qids_path) {
        if (load_vector(qids_path, SDM_NPY_U8, qa[0].mat.m.rows, "query ids", qa[0].path, &qids,
                        err, sizeof(err)) != 0) {
            rc = local_error("%s", err);
            goto done_q;
        }
        req.query_ids = qids.data; /* NULL for zero queries: nothing to name */
    }
    req.n_queries = n_q;
    req.queries = queries;
    req.request_id = request_id;

    sdm_client_t *c = make_client(g, &rc);
    if (!c)
        goto done_q;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_attribute(c, &req, &r);
    if ((rc = end_call(g, &c, st)) != 0)
        goto done_q;
    size_t env_len = 0;
    const uint8_t *env = sdm_reply_envelope(r, &env_len);
    if (proof_out && write_file(proof_out, env, env_len, err, sizeof(err)) != 0) {
        fprintf(stderr, "sediment attribute: saving the proof failed: %s\n", err);
        rc = EXIT_USAGE;
    }
    /* what we print comes from the signed body, so check it first */
    sdm_reply_t *body = NULL;
    uint8_t signer[32];
    sdm_client_status vs = sdm_client_open_envelope(env, env_len, &body, signer, err, sizeof(err));
    if (vs != SDM_CLIENT_OK) {
        fprintf(stderr, "sediment attribute: the worker's proof does not verify: %s\n", err);
        rc = EXIT_SERVER;
    }
    if (g->json) {
        if (print_reply_json(r) != 0)
            rc = EXIT_USAGE;
    } else if (body) {
        print_proof_header(body);
        printf("signed by   ");
        print_hex(stdout, signer, 32);
        printf(" (signature ok)\n");
        if (proof_out && rc == 0)
            printf("proof       %s (%zu bytes)\n", proof_out, env_len);
        print_queries(body);
    }
    sdm_reply_destroy(&body);
    sdm_reply_destroy(&r);
done_q:
    sdm_npy_free(&qids);
    free(queries);
done:
    for (size_t i = 0; i < n_q; i++) {
        free((char *)qa[i].checkpoint);
        loaded_free(&qa[i].mat);
    }
    free(qa);
    return rc;
}

/* ---- stats --------------------------------------------------------------------------- */

static int cmd_stats(globals *g, int argc, char **argv)
{
    int rc;
    sdm_reply_t *r = plain_call(g, argc, argv, s_help_stats, sdm_client_stats, &rc);
    if (r) {
        /* every field but id and ok, one level of maps flattened as "errors.not_found" */
        int64_t n = sdm_reply_count(r, NULL);
        for (int64_t i = 0; i < n; i++) {
            const char *key = sdm_reply_key(r, NULL, (size_t)i);
            if (!key || strcmp(key, "id") == 0 || strcmp(key, "ok") == 0)
                continue;
            int64_t sub = sdm_reply_count(r, key);
            for (int64_t j = 0; j < (sub < 0 ? 1 : sub); j++) {
                char path[256], label[256];
                if (sub < 0) {
                    snprintf(path, sizeof(path), "%s", key);
                } else {
                    const char *sk = sdm_reply_key(r, key, (size_t)j);
                    if (!sk)
                        continue;
                    snprintf(path, sizeof(path), "%s.%s", key, sk);
                }
                snprintf(label, sizeof(label), "%s", path);
                uint64_t u;
                double d;
                const char *s;
                if (sdm_reply_u64(r, path, &u) == 0)
                    printf("%-28s %" PRIu64 "\n", label, u);
                else if (sdm_reply_f64(r, path, &d) == 0)
                    printf("%-28s %.6g\n", label, d);
                else if ((s = sdm_reply_str(r, path)))
                    printf("%-28s %s\n", label, s);
            }
        }
    }
    sdm_reply_destroy(&r);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------- */

#define MAX_KEYS 64

/* Recomputes a receipt's leaf hash from its body. 0 when it matches, 1 when it does not,
 * -1 when the body lacks a field (*what names it). */
static int check_receipt_leaf(const sdm_reply_t *body, const char **what)
{
    sdm_leaf_fields f;
    memset(&f, 0, sizeof(f));
    size_t l;
    const uint8_t *b;
    f.model = sdm_reply_str(body, "model");
    f.checkpoint = sdm_reply_str(body, "checkpoint");
    f.contributor = sdm_reply_str(body, "contributor");
    f.shard = sdm_reply_str(body, "shard");
    *what = !f.model         ? "model"
            : !f.checkpoint  ? "checkpoint"
            : !f.contributor ? "contributor"
            : !f.shard       ? "shard"
                             : NULL;
    if (*what)
        return -1;
    if (sdm_reply_f64(body, "lr", &f.lr) != 0) {
        *what = "lr";
        return -1;
    }
    if (sdm_reply_u64(body, "n", &f.n) != 0) {
        *what = "n";
        return -1;
    }
    if (sdm_reply_bool(body, "curvature", &f.curvature) != 0) {
        *what = "curvature";
        return -1;
    }
    static const char *const digests[3] = {"ids_digest", "data_digest", "weights_digest"};
    uint8_t *dst[3] = {f.ids_digest, f.data_digest, f.weights_digest};
    for (int i = 0; i < 3; i++) {
        if (!(b = sdm_reply_bin(body, digests[i], &l)) || l != SDM_HASH_LEN) {
            *what = digests[i];
            return -1;
        }
        memcpy(dst[i], b, SDM_HASH_LEN);
    }
    const uint8_t *leaf = sdm_reply_bin(body, "leaf", &l);
    if (!leaf || l != SDM_HASH_LEN) {
        *what = "leaf";
        return -1;
    }
    uint8_t want[SDM_HASH_LEN];
    if (sdm_leaf_hash(&f, want) != 0) {
        *what = "leaf (out of memory)";
        return -1;
    }
    return memcmp(want, leaf, SDM_HASH_LEN) == 0 ? 0 : 1;
}

static int cmd_verify(globals *g, int argc, char **argv)
{
    const char *path = NULL;
    uint8_t keys[MAX_KEYS][32];
    size_t n_keys = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(s_help_verify, stdout);
            return 0;
        }
        const char *v;
        int r = opt_value(argc, argv, &i, "--key", &v);
        if (r < 0)
            return usage_error("--key needs 64 hex digits");
        if (r) {
            if (n_keys == MAX_KEYS)
                return usage_error("at most %d --key options", MAX_KEYS);
            if (strlen(v) != 64 || sdm_unhex(v, keys[n_keys], 32) != 0)
                return usage_error("--key: '%s' is not 64 hex digits", v);
            n_keys++;
            continue;
        }
        r = global_opt(g, argc, argv, &i);
        if (r > 100)
            return r - 100;
        if (r)
            continue;
        if (argv[i][0] == '-' && argv[i][1])
            return usage_error("unexpected option '%s'", argv[i]);
        if (path)
            return usage_error("one file at a time ('%s' and '%s')", path, argv[i]);
        path = argv[i];
    }
    if (!path)
        return usage_error("give the receipt or proof file to verify");

    char err[512];
    uint8_t *env;
    size_t env_len;
    if (read_file(path, (size_t)1 << 34, &env, &env_len, err, sizeof(err)) != 0)
        return local_error("%s", err);
    sdm_reply_t *body = NULL;
    uint8_t signer[32];
    sdm_client_status st = sdm_client_open_envelope(env, env_len, &body, signer, err, sizeof(err));
    free(env);
    int rc = 0;
    const char *problem = NULL;
    char problem_buf[600];
    if (st == SDM_CLIENT_BAD_REPLY) {
        snprintf(problem_buf, sizeof(problem_buf), "%s: malformed: %s", path, err);
        problem = problem_buf;
        rc = EXIT_USAGE;
    } else if (st != SDM_CLIENT_OK) {
        snprintf(problem_buf, sizeof(problem_buf), "%s: the signature does not hold (%s)", path,
                 err);
        problem = problem_buf;
        rc = EXIT_SERVER;
    }
    const char *type = body ? sdm_reply_str(body, "type") : NULL;
    uint64_t v = 0;
    size_t wl = 0;
    const uint8_t *worker = body ? sdm_reply_bin(body, "worker", &wl) : NULL;
    int leaf_state = -2; /* -2: not a receipt; 0 ok; 1 mismatch */
    int key_allowed = -1;
    if (rc == 0) {
        if (sdm_reply_u64(body, "v", &v) != 0 || v != 1 || !type ||
            (strcmp(type, "contribution") != 0 && strcmp(type, "attribution") != 0) || !worker ||
            wl != 32) {
            snprintf(problem_buf, sizeof(problem_buf), "%s: malformed body: %s", path,
                     sdm_reply_u64(body, "v", &v) != 0 || v != 1 ? "'v' is not 1"
                     : !type                                     ? "'type' missing"
                     : (!worker || wl != 32) &&
                             (strcmp(type, "contribution") == 0 || strcmp(type, "attribution") == 0)
                         ? "'worker' is not a 32-byte key"
                         : "'type' is neither contribution nor attribution");
            problem = problem_buf;
            rc = EXIT_USAGE;
        } else if (memcmp(worker, signer, 32) != 0) {
            problem = "the body's worker is not the key that signed it";
            rc = EXIT_SERVER;
        }
    }
    if (rc == 0 && n_keys) {
        key_allowed = 0;
        for (size_t i = 0; i < n_keys; i++)
            if (memcmp(keys[i], signer, 32) == 0)
                key_allowed = 1;
        if (!key_allowed) {
            problem = "signed by a key that is not one of --key";
            rc = EXIT_SERVER;
        }
    }
    if (rc == 0 && strcmp(type, "contribution") == 0) {
        const char *what = NULL;
        leaf_state = check_receipt_leaf(body, &what);
        if (leaf_state < 0) {
            snprintf(problem_buf, sizeof(problem_buf),
                     "%s: malformed receipt: '%s' missing or "
                     "of the wrong type",
                     path, what);
            problem = problem_buf;
            rc = EXIT_USAGE;
        } else if (leaf_state == 1) {
            problem = "the receipt's leaf is not the hash of its fields";
            rc = EXIT_SERVER;
        }
    }

    if (g->json) {
        printf("{\"ok\": %s, \"file\": ", rc == 0 ? "true" : "false");
        sdm_json_write_str(stdout, path);
        printf(", \"signature\": %s", st == SDM_CLIENT_OK ? "true" : "false");
        if (st == SDM_CLIENT_OK) {
            printf(", \"signer\": \"");
            print_hex(stdout, signer, 32);
            printf("\"");
        }
        if (key_allowed >= 0)
            printf(", \"key_allowed\": %s", key_allowed ? "true" : "false");
        if (leaf_state >= 0)
            printf(", \"leaf_ok\": %s", leaf_state == 0 ? "true" : "false");
        if (problem) {
            printf(", \"problem\": ");
            sdm_json_write_str(stdout, problem);
        }
        if (body) {
            char *j = sdm_reply_json(body);
            if (j)
                printf(", \"body\": %s", j);
            free(j);
        }
        printf("}\n");
    } else if (body && type) {
        printf("type        %s\n", type);
        printf("signed by   ");
        print_hex(stdout, signer, 32);
        printf("\n");
        uint64_t issued = 0;
        if (sdm_reply_u64(body, "issued_at", &issued) == 0) {
            char t[64];
            format_time(issued, t, sizeof(t));
            printf("issued_at   %s\n", t);
        }
        if (strcmp(type, "contribution") == 0) {
            double lr = 0;
            uint64_t n = 0, batch = 0, size = 0;
            int curv = 0;
            size_t l;
            (void)sdm_reply_f64(body, "lr", &lr);
            (void)sdm_reply_u64(body, "n", &n);
            (void)sdm_reply_u64(body, "batch", &batch);
            (void)sdm_reply_u64(body, "store_size", &size);
            (void)sdm_reply_bool(body, "curvature", &curv);
            const char *m = sdm_reply_str(body, "model"), *ck = sdm_reply_str(body, "checkpoint");
            const char *co = sdm_reply_str(body, "contributor"), *sh = sdm_reply_str(body, "shard");
            printf("model       %s\ncheckpoint  %s (lr %g)\n", m ? m : "?", ck ? ck : "?", lr);
            if (curv)
                printf("curvature   %" PRIu64 " rows\n", n);
            else
                printf("shard       %s of %s, %" PRIu64 " examples\n", sh ? sh : "?", co ? co : "?",
                       n);
            printf("batch       %" PRIu64 "\nleaf        ", batch);
            const uint8_t *leaf = sdm_reply_bin(body, "leaf", &l);
            if (leaf)
                print_hex(stdout, leaf, l);
            printf("\nstore_size  %" PRIu64 "\nstore_root  ", size);
            const uint8_t *root = sdm_reply_bin(body, "store_root", &l);
            if (root)
                print_hex(stdout, root, l);
            printf("\n");
        } else {
            print_proof_header(body);
            printf("queries     %zu\n", sdm_reply_n_queries(body));
        }
    }
    if (problem)
        fprintf(stderr, "sediment verify: %s\n", problem);
    else if (!g->json)
        printf("valid: the signature holds%s%s\n", n_keys ? " and the key is allowed" : "",
               leaf_state == 0 ? "; the leaf matches the fields" : "");
    sdm_reply_destroy(&body);
    return rc;
}

/* ---- keygen -------------------------------------------------------------------------- */

static int write_new(const char *path, const char *text, mode_t mode, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path,
                 errno == EEXIST ? "exists; not overwriting a key" : strerror(errno));
        return -1;
    }
    int bad = sdm_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0;
    if (close(fd) != 0 || bad) {
        snprintf(err, err_len, "%s: write failed: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static int cmd_keygen(globals *g, int argc, char **argv)
{
    const char *out = NULL;
    int curve = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(s_help_keygen, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--curve") == 0) {
            curve = 1;
            continue;
        }
        int r = opt_value(argc, argv, &i, "--out", &out);
        if (r < 0)
            return usage_error("--out needs a PREFIX");
        if (r)
            continue;
        r = global_opt(g, argc, argv, &i);
        if (r > 100)
            return r - 100;
        if (!r)
            return usage_error("unexpected argument '%s'", argv[i]);
    }
    if (!curve)
        return usage_error("--curve is required (CURVE pairs are the only kind it makes)");
    if (!out || !*out)
        return usage_error("--out PREFIX is required");
    if (!zmq_has("curve"))
        return local_error("this libzmq was built without CURVE");
    size_t n = strlen(out) + 5;
    char *key_path = malloc(n), *pub_path = malloc(n);
    if (!key_path || !pub_path) {
        free(key_path);
        free(pub_path);
        return local_error("out of memory");
    }
    snprintf(key_path, n, "%s.key", out);
    snprintf(pub_path, n, "%s.pub", out);
    char pub[41], sec[41], err[512];
    char line[42];
    int rc = 0;
    if (zmq_curve_keypair(pub, sec) != 0) {
        rc = local_error("zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
        goto done;
    }
    snprintf(line, sizeof(line), "%s\n", sec);
    if (write_new(key_path, line, 0600, err, sizeof(err)) != 0) {
        rc = local_error("%s", err);
        goto done;
    }
    snprintf(line, sizeof(line), "%s\n", pub);
    if (write_new(pub_path, line, 0644, err, sizeof(err)) != 0) {
        unlink(key_path); /* half a pair is no use */
        rc = local_error("%s", err);
        goto done;
    }
    if (g->json) {
        printf("{\"public_key\": ");
        sdm_json_write_str(stdout, pub);
        printf(", \"key_file\": ");
        sdm_json_write_str(stdout, key_path);
        printf(", \"pub_file\": ");
        sdm_json_write_str(stdout, pub_path);
        printf("}\n");
    } else {
        printf("secret key  %s (mode 0600)\npublic key  %s: %s\n", key_path, pub_path, pub);
    }
done:
    sodium_memzero(sec, sizeof(sec));
    sodium_memzero(line, sizeof(line));
    free(key_path);
    free(pub_path);
    return rc;
}

/* ---- ledger: shared pieces ------------------------------------------------------------ */

static const char s_help_ledger_info[] =
    "usage: sediment ledger-info [--ledger E]\n"
    "\n"
    "Prints the ledger's version, origin, size, Ed25519 key, its note verifier key (computed\n"
    "here from the origin and the key) and the worker keys it accepts entries from.\n"
    "The endpoint is --ledger, else $SEDIMENT_LEDGER, else tcp://127.0.0.1:7720.\n";

static const char s_help_ledger_key[] =
    "usage: sediment ledger-key [--ledger E]\n"
    "       sediment ledger-key --data DIR [--origin NAME]\n"
    "\n"
    "Prints the ledger's note verifier key, <origin>+<key id>+<base64 key>, the form Go's\n"
    "golang.org/x/mod/sumdb/note reads and that --vkey takes. With --ledger it comes from\n"
    "the ledger's info (as trustworthy as the connection: publish it from --data). With\n"
    "--data it is read from DIR/ledger.pub and the origin stored in DIR/ledger.db, or\n"
    "--origin when given.\n";

/* The trust options, described in the help of every command that verifies checkpoints. */
#define TRUST_HELP                                                                                 \
    "\n"                                                                                           \
    "Trust: checkpoints must be signed by the verifier key given with --vkey KEY or\n"             \
    "--vkey-file FILE (as `sediment ledger-key` prints it). --tofu instead trusts the key\n"       \
    "the ledger reports about itself, which proves nothing against a lying ledger; the\n"          \
    "output says so.\n"

/* TRUST_HELP on a line of its own, which clang-format would glue onto the text before it */
/* clang-format off */
static const char s_help_checkpoint[] =
    "usage: sediment checkpoint [--ledger E] (--vkey KEY | --vkey-file FILE | --tofu)\n"
    "                           [--out FILE]\n"
    "\n"
    "Fetches the ledger's latest signed checkpoint (a C2SP tlog-checkpoint signed as a\n"
    "signed-note), verifies its signature and prints its origin, size and root. --out saves\n"
    "the note exactly as signed, for `prove --checkpoint` and `consistency --old` later.\n"
    TRUST_HELP;

static const char s_help_prove[] =
    "usage: sediment prove [--ledger E] --index I [--checkpoint FILE] [--entry FILE]\n"
    "                      [--entry-out FILE] (--vkey KEY | --vkey-file FILE | --tofu)\n"
    "\n"
    "Proves that entry I is in the log: verifies the checkpoint (the saved FILE, or the\n"
    "ledger's latest), fetches entry I and its inclusion proof for the checkpoint's size,\n"
    "checks the entry's signature, that its leaf hash is SHA-256(0x00 || entry), and that\n"
    "the path leads from it to the checkpoint's root. --entry FILE proves an envelope you\n"
    "hold (a saved receipt or proof): it must be byte-identical to entry I. --entry-out\n"
    "saves the entry. Exit status 1 when any check fails or I is beyond the checkpoint.\n"
    TRUST_HELP;

static const char s_help_consistency[] =
    "usage: sediment consistency [--ledger E] --old FILE [--new FILE] [--out FILE]\n"
    "                            (--vkey KEY | --vkey-file FILE | --tofu)\n"
    "\n"
    "Proves that the log a saved checkpoint (--old) describes is a prefix of a newer one\n"
    "(--new FILE, or the ledger's latest): both must be signed by the trusted key, and the\n"
    "ledger's consistency proof must link the two roots (RFC 9162). A failure means the\n"
    "ledger rewrote or forked its past. --out saves the newer checkpoint once it is proven,\n"
    "so that a monitor can run `consistency --old F --out F` again and again.\n"
    TRUST_HELP;

static const char s_help_audit[] =
    "usage: sediment audit [--ledger E] (--vkey KEY | --vkey-file FILE | --tofu)\n"
    "                      [--checkpoint FILE] [--workers FILE] [--window N] [--jobs N]\n"
    "                      [--progress] [--progress-every N]\n"
    "\n"
    "Audits the whole log of a checkpoint (the saved FILE, or the ledger's latest): fetches\n"
    "every entry 0..size-1 (--window requests in flight, default 64), checks each\n"
    "envelope's signature and body as the ledger must have, and with --workers (64 hex\n"
    "digits a line, # comments) that its signer is listed; then recomputes the Merkle root\n"
    "from all the entries and compares it with the checkpoint's. The checks run on --jobs\n"
    "threads (default: one per CPU). --progress prints progress on stderr every 10000\n"
    "entries (or every --progress-every N). Exit status 1 when any entry is bad or the root\n"
    "differs; --json prints {ok, size, root_ok, entries_ok, bad: [{index, why}], ...}.\n"
    TRUST_HELP;
/* clang-format on */

static const char s_help_append[] =
    "usage: sediment append [--ledger E] FILE\n"
    "\n"
    "Appends a saved receipt or proof (--receipt-out, --proof-out, prove --entry-out) to the\n"
    "ledger and prints its index, leaf hash and the log's new size. The same envelope\n"
    "again gets the same index (duplicate). A bad signature, a worker key the ledger does\n"
    "not allow, or a malformed body is refused (exit 1).\n";

static const char s_help_history[] =
    "usage: sediment history [--ledger E] --contributor NAME [--since T] [--until T]\n"
    "                        [--limit N]\n"
    "\n"
    "Lists the ledger's entries touching a contributor, oldest first: receipts of its\n"
    "batches and its shards' scores and shares in attribution proofs. T is unix nanoseconds\n"
    "or UTC time as 2026-11-21T22:34:21Z (fractions allowed); the window is since <= t <\n"
    "until. --limit is 1 to 100000 (default 1000). This is the ledger's index, not a proof:\n"
    "`prove --index` checks any entry it names.\n";

static const char s_help_rewards[] =
    "usage: sediment rewards [--ledger E] --pool N [--since T] [--until T] [--model M]\n"
    "\n"
    "Splits a pool of N units among contributors by their summed shares in the attribution\n"
    "proofs of the window (and of model M), exactly, by largest remainder. Contributors\n"
    "whose summed score is negative are flagged and get nothing. T as for history.\n";

static const char *default_ledger(void)
{
    const char *e = getenv("SEDIMENT_LEDGER");
    return e && *e ? e : DEFAULT_LEDGER;
}

static sdm_client_t *make_ledger_client(const globals *g, const char *ledger, int *rc)
{
    globals lg = *g;
    lg.endpoint = ledger ? ledger : default_ledger();
    s_server = "ledger";
    return make_client(&lg, rc);
}

/* The ledger's info (origin, key, size, workers), or NULL with *rc (reported). */
static sdm_reply_t *ledger_info(const globals *g, const char *ledger, int *rc)
{
    sdm_client_t *c = make_ledger_client(g, ledger, rc);
    if (!c)
        return NULL;
    sdm_reply_t *r; /* NULL when the call fails */
    sdm_client_status st = sdm_client_ledger_info(c, &r);
    *rc = end_call(g, &c, st);
    return r;
}

/* A verification that did not hold (exit 1), or a malformed file (exit 2): the reason on
 * stderr and, with --json, as {"ok": false, "problem": ...} on stdout. Returns rc. */
static int check_failed(const globals *g, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int check_failed(const globals *g, int rc, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g->json) {
        printf("{\"ok\": false, \"problem\": ");
        sdm_json_write_str(stdout, msg);
        printf("}\n");
    }
    fprintf(stderr, "sediment %s: %s\n", s_cmd, msg);
    return rc;
}

/* Checks the trust options before anything is fetched; reads --vkey-file. 0 or an exit
 * status (message printed). */
static int trust_prepare(trust_opts *t)
{
    int n = !!t->vkey + !!t->vkey_file + !!t->tofu;
    if (n == 0)
        return usage_error("say which key signs the checkpoints: --vkey KEY, --vkey-file FILE "
                           "(from `sediment ledger-key`), or --tofu to trust the key the ledger "
                           "reports");
    if (n > 1)
        return usage_error("give one of --vkey, --vkey-file and --tofu");
    char err[512];
    if (t->vkey_file) {
        uint8_t *b;
        size_t len;
        if (read_file(t->vkey_file, 4096, &b, &len, err, sizeof(err)) != 0)
            return local_error("--vkey-file %s", err);
        int has_nul = memchr(b, 0, len) != NULL;
        char *k = sdm_trim((char *)b);
        if (has_nul || strchr(k, '\n') || !*k) {
            free(b);
            return local_error("--vkey-file %s: expected one line, the verifier key", t->vkey_file);
        }
        t->resolved = strdup(k);
        free(b);
        if (!t->resolved)
            return local_error("out of memory");
    } else if (t->vkey) {
        t->resolved = strdup(t->vkey);
        if (!t->resolved)
            return local_error("out of memory");
    } else {
        return 0; /* --tofu: resolved from the ledger's info */
    }
    sdm_note_verifier v;
    if (sdm_note_verifier_parse(t->resolved, &v, err, sizeof(err)) != SDM_NOTE_OK) {
        int rc = t->vkey_file ? local_error("--vkey-file %s: %s", t->vkey_file, err)
                              : usage_error("--vkey: %s", err);
        free(t->resolved);
        t->resolved = NULL;
        return rc;
    }
    return 0;
}

/* With --tofu, asks the ledger for its origin and key. 0 or an exit status. */
static int trust_resolve(const globals *g, sdm_client_t *c, trust_opts *t)
{
    if (t->resolved)
        return 0;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_ledger_info(c, &r);
    if (st != SDM_CLIENT_OK)
        return call_failed(g, c, st);
    t->resolved =
        sdm_client_verifier_key(sdm_reply_str(r, "origin"), sdm_reply_bin(r, "ledger_key", NULL));
    sdm_reply_destroy(&r);
    if (!t->resolved)
        return check_failed(g, EXIT_SERVER,
                            "--tofu: the ledger's origin is not a valid key "
                            "name, so no key can vouch for its checkpoints");
    fprintf(stderr,
            "sediment %s: --tofu: trusting the key the ledger reports, %s; compare it "
            "with the one its operator publishes\n",
            s_cmd, t->resolved);
    return 0;
}

static const char *trust_name(const trust_opts *t)
{
    return t->tofu ? "tofu" : "vkey";
}

/* Verifies a checkpoint note; what: "the ledger's checkpoint" or the file's name. from_file:
 * a malformed note is the user's file (exit 2) rather than the ledger's fault (exit 1).
 * 0 or an exit status (reported). */
static int open_checkpoint(const globals *g, const char *note, size_t len, const char *vkey,
                           const char *what, int from_file, sdm_ledger_checkpoint *cp)
{
    char err[512];
    sdm_client_status st = sdm_client_checkpoint_verify(note, len, vkey, cp, err, sizeof(err));
    if (st == SDM_CLIENT_OK)
        return 0;
    if (st == SDM_CLIENT_NOMEM)
        return local_error("out of memory");
    int rc = st == SDM_CLIENT_BAD_REPLY && from_file ? EXIT_USAGE : EXIT_SERVER;
    return check_failed(g, rc, "%s does not verify: %s", what, err);
}

/* Reads and verifies a saved checkpoint; *note (malloc'd, NUL-terminated) may be NULL. */
static int load_checkpoint(const globals *g, const char *path, const char *vkey,
                           sdm_ledger_checkpoint *cp, char **note)
{
    uint8_t *b;
    size_t len;
    char err[512];
    if (read_file(path, 1 << 16, &b, &len, err, sizeof(err)) != 0)
        return local_error("%s", err);
    char *text = (char *)b;
    int rc = open_checkpoint(g, text, len, vkey, path, 1, cp);
    if (rc == 0 && note)
        *note = text;
    else
        free(text);
    return rc;
}

/* Fetches and verifies the ledger's latest checkpoint; *note as above. */
static int fetch_checkpoint(const globals *g, sdm_client_t *c, const char *vkey,
                            sdm_ledger_checkpoint *cp, char **note)
{
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_ledger_checkpoint(c, &r);
    if (st != SDM_CLIENT_OK)
        return call_failed(g, c, st);
    const char *text = sdm_reply_str(r, "checkpoint");
    int rc = open_checkpoint(g, text, strlen(text), vkey, "the ledger's checkpoint", 0, cp);
    if (rc == 0 && note && !(*note = strdup(text)))
        rc = local_error("out of memory");
    sdm_reply_destroy(&r);
    return rc;
}

/* Verifies the saved checkpoint in file, or the ledger's latest when file is NULL. */
static int checkpoint_from(const globals *g, sdm_client_t *c, const char *file, const char *vkey,
                           sdm_ledger_checkpoint *cp, char **note)
{
    return file ? load_checkpoint(g, file, vkey, cp, note) : fetch_checkpoint(g, c, vkey, cp, note);
}

/* How every command that checks the log starts, after trust_prepare: connects to the
 * ledger, settles the trusted key (--tofu asks the ledger) and verifies a checkpoint as
 * checkpoint_from does. 0 or an exit status (reported); *c is the caller's to destroy
 * either way. */
static int open_ledger(const globals *g, const char *ledger, trust_opts *t, const char *cp_file,
                       sdm_client_t **c, sdm_ledger_checkpoint *cp, char **note)
{
    int rc = 0;
    if (!(*c = make_ledger_client(g, ledger, &rc)) || (rc = trust_resolve(g, *c, t)) != 0)
        return rc;
    return checkpoint_from(g, *c, cp_file, t->resolved, cp, note);
}

static void print_json_hex(FILE *f, const uint8_t *b, size_t n)
{
    fputc('"', f);
    print_hex(f, b, n);
    fputc('"', f);
}

/* "<origin>", size, root as JSON members (after an opening brace and other members). */
static void print_checkpoint_json(const sdm_ledger_checkpoint *cp)
{
    printf("\"origin\": ");
    sdm_json_write_str(stdout, cp->origin);
    printf(", \"size\": %" PRIu64 ", \"root\": ", cp->size);
    print_json_hex(stdout, cp->root, 32);
}

static void print_checkpoint_line(const char *label, const sdm_ledger_checkpoint *cp,
                                  const char *suffix)
{
    printf("%-11s %s, size %" PRIu64 ", root ", label, cp->origin, cp->size);
    print_hex(stdout, cp->root, 32);
    printf("%s\n", suffix);
}

static void print_trust_line(const trust_opts *t)
{
    if (t->tofu)
        printf("trust       --tofu: the key the ledger reports about itself, not checked "
               "against a published one\n");
    printf("signed by   %s (signature ok)\n", t->resolved);
}

/* Index and sizes: a decimal u64. */
static int parse_index(const char *opt, const char *v, uint64_t *out)
{
    if (parse_u64(v, out) != 0)
        return usage_error("%s: '%s' is not an unsigned integer", opt, v);
    return 0;
}

/* ---- ledger-info and ledger-key ----------------------------------------------------- */

static int cmd_ledger_info(globals *g, int argc, char **argv)
{
    const char *ledger = NULL;
    const value_opt opts[] = {{"--ledger", &ledger}};
    const command_spec spec = {.help = s_help_ledger_info, .opts = opts, .n_opts = COUNT(opts)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    sdm_reply_t *r = ledger_info(g, ledger, &rc);
    if (!r)
        return rc;
    const char *origin = sdm_reply_str(r, "origin");
    const uint8_t *key = sdm_reply_bin(r, "ledger_key", NULL);
    char *vkey = sdm_client_verifier_key(origin, key);
    int64_t n_workers = sdm_reply_count(r, "workers");
    if (g->json) {
        char *j = sdm_reply_json(r);
        if (!j) {
            rc = local_error("out of memory");
        } else {
            /* the reply as received, plus the verifier key computed here */
            j[strlen(j) - 1] = 0;
            printf("%s, \"verifier_key\": ", j);
            if (vkey)
                sdm_json_write_str(stdout, vkey);
            else
                printf("null");
            printf("}\n");
            free(j);
        }
    } else {
        uint64_t size = 0;
        (void)sdm_reply_u64(r, "size", &size);
        printf("version     %s\norigin      %s\nsize        %" PRIu64 "\nledger key  ",
               sdm_reply_str(r, "version"), origin, size);
        print_hex(stdout, key, 32);
        printf("\nverifier    %s\n", vkey ? vkey : "(none: the origin is not a valid key name)");
        if (n_workers < 0) {
            printf("workers     any valid signature (the ledger has no --workers list)\n");
        } else {
            printf("workers     %" PRId64 " allowed\n", n_workers);
            for (int64_t i = 0; i < n_workers; i++) {
                char path[32];
                snprintf(path, sizeof(path), "workers.%" PRId64, i);
                printf("  ");
                print_hex(stdout, sdm_reply_bin(r, path, NULL), 32);
                printf("\n");
            }
        }
    }
    free(vkey);
    sdm_reply_destroy(&r);
    return rc;
}

/* The origin a ledger stored in DIR/ledger.db (read-only). malloc'd, or NULL with err. */
static char *stored_origin(const char *dir, char *err, size_t err_len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/ledger.db", dir);
    if (access(path, R_OK) != 0) {
        snprintf(err, err_len, "%s: %s (give --origin NAME)", path, strerror(errno));
        return NULL;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *origin = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'origin'", -1, &st, NULL) !=
            SQLITE_OK) {
        snprintf(err, err_len, "%s: cannot read the stored origin: %s (give --origin NAME)", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
    } else if (sqlite3_step(st) != SQLITE_ROW || !sqlite3_column_text(st, 0)) {
        snprintf(err, err_len, "%s: no origin stored (give --origin NAME)", path);
    } else if (!(origin = strdup((const char *)sqlite3_column_text(st, 0)))) {
        snprintf(err, err_len, "out of memory");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return origin;
}

static int cmd_ledger_key(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *data = NULL, *origin_opt = NULL;
    const value_opt opts[] = {{"--ledger", &ledger}, {"--data", &data}, {"--origin", &origin_opt}};
    const command_spec spec = {.help = s_help_ledger_key, .opts = opts, .n_opts = COUNT(opts)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (ledger && data)
        return usage_error("give --ledger or --data, not both");
    if (origin_opt && !data)
        return usage_error("--origin goes with --data (the ledger reports its own)");
    uint8_t key[32];
    char *origin = NULL;
    char err[4200];
    if (data) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/ledger.pub", data);
        uint8_t *b;
        size_t len;
        if (read_file(path, 4096, &b, &len, err, sizeof(err)) != 0)
            return local_error("%s", err);
        char text[80] = "";
        if (len < sizeof(text)) {
            memcpy(text, b, len);
            text[len] = 0;
        }
        free(b);
        char *hex = sdm_trim(text);
        if (strlen(hex) != 64 || sdm_unhex(hex, key, 32) != 0)
            return local_error("%s: not a public key (64 hex digits)", path);
        origin = origin_opt ? strdup(origin_opt) : stored_origin(data, err, sizeof(err));
        if (!origin)
            return local_error("%s", origin_opt ? "out of memory" : err);
    } else {
        sdm_reply_t *r = ledger_info(g, ledger, &rc);
        if (!r)
            return rc;
        memcpy(key, sdm_reply_bin(r, "ledger_key", NULL), 32);
        origin = strdup(sdm_reply_str(r, "origin"));
        sdm_reply_destroy(&r);
        if (!origin)
            return local_error("out of memory");
    }
    char *vkey = sdm_client_verifier_key(origin, key);
    if (!vkey) {
        rc = data ? usage_error("--origin: '%s' is not a valid key name (1 to 255 bytes, no "
                                "space, '+' or control character)",
                                origin)
                  : check_failed(g, EXIT_SERVER,
                                 "the ledger's origin '%s' is not a valid key "
                                 "name",
                                 origin);
    } else if (g->json) {
        printf("{\"verifier_key\": ");
        sdm_json_write_str(stdout, vkey);
        printf(", \"origin\": ");
        sdm_json_write_str(stdout, origin);
        printf(", \"ledger_key\": ");
        print_json_hex(stdout, key, 32);
        printf("}\n");
    } else {
        printf("%s\n", vkey);
    }
    free(vkey);
    free(origin);
    return rc;
}

/* ---- checkpoint ---------------------------------------------------------------------- */

static int cmd_checkpoint(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *out = NULL;
    trust_opts t = {0};
    const value_opt opts[] = {{"--ledger", &ledger}, {"--out", &out}};
    const command_spec spec = {
        .help = s_help_checkpoint, .opts = opts, .n_opts = COUNT(opts), .trust = &t};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc) || (rc = trust_prepare(&t)) != 0)
        return rc;
    sdm_client_t *c = NULL;
    char *note = NULL;
    sdm_ledger_checkpoint cp;
    if ((rc = open_ledger(g, ledger, &t, NULL, &c, &cp, &note)) != 0)
        goto done;
    char err[512];
    if (out && write_file(out, (const uint8_t *)note, strlen(note), err, sizeof(err)) != 0) {
        rc = local_error("the checkpoint verifies, but saving it failed: %s", err);
        goto done;
    }
    if (g->json) {
        printf("{\"ok\": true, ");
        print_checkpoint_json(&cp);
        printf(", \"verifier_key\": ");
        sdm_json_write_str(stdout, t.resolved);
        printf(", \"trust\": \"%s\", \"checkpoint\": ", trust_name(&t));
        sdm_json_write_str(stdout, note);
        if (out) {
            printf(", \"out\": ");
            sdm_json_write_str(stdout, out);
        }
        printf("}\n");
    } else {
        printf("origin      %s\nsize        %" PRIu64 "\nroot        ", cp.origin, cp.size);
        print_hex(stdout, cp.root, 32);
        printf("\n");
        print_trust_line(&t);
        if (out)
            printf("saved       %s\n", out);
    }
done:
    free(note);
    free(t.resolved);
    sdm_client_destroy(&c);
    return rc;
}

/* ---- prove --------------------------------------------------------------------------- */

static int cmd_prove(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *index_s = NULL, *cp_file = NULL, *entry_file = NULL,
               *entry_out = NULL;
    trust_opts t = {0};
    const value_opt opts[] = {{"--ledger", &ledger},
                              {"--index", &index_s},
                              {"--checkpoint", &cp_file},
                              {"--entry", &entry_file},
                              {"--entry-out", &entry_out}};
    const command_spec spec = {
        .help = s_help_prove, .opts = opts, .n_opts = COUNT(opts), .trust = &t};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!index_s)
        return usage_error("--index is required (the ledger has no lookup by hash: the index is "
                           "in the append reply, `history`, or the worker's forwarding log)");
    uint64_t index = 0;
    if ((rc = parse_index("--index", index_s, &index)) != 0 || (rc = trust_prepare(&t)) != 0)
        return rc;
    char err[512];
    uint8_t *held = NULL;
    size_t held_len = 0;
    if (entry_file &&
        read_file(entry_file, (size_t)1 << 30, &held, &held_len, err, sizeof(err)) != 0) {
        free(t.resolved);
        return local_error("--entry %s", err);
    }
    sdm_client_t *c = NULL;
    sdm_reply_t *er = NULL, *ir = NULL, *body = NULL;
    sdm_ledger_checkpoint cp;
    if ((rc = open_ledger(g, ledger, &t, cp_file, &c, &cp, NULL)) != 0)
        goto done;
    if (index >= cp.size) {
        if (cp.size == 0)
            rc = check_failed(g, EXIT_SERVER,
                              "index %" PRIu64 " is not in the checkpoint: its "
                              "log is empty",
                              index);
        else
            rc = check_failed(g, EXIT_SERVER,
                              "index %" PRIu64 " is not in the checkpoint: its "
                              "log has %" PRIu64 " entries (0 to %" PRIu64 ")",
                              index, cp.size, cp.size - 1);
        goto done;
    }
    sdm_client_status st = sdm_client_ledger_entry(c, index, &er);
    if (st == SDM_CLIENT_OK)
        st = sdm_client_ledger_inclusion(c, index, cp.size, &ir);
    if (st != SDM_CLIENT_OK) {
        rc = call_failed(g, c, st);
        goto done;
    }
    size_t env_len = 0, n_path = 0;
    const uint8_t *env = sdm_reply_envelope(er, &env_len);
    uint8_t path[64][32], leaf[32];
    if (sdm_reply_hashes(ir, "hashes", path, 64, &n_path) != 0) {
        rc = check_failed(g, EXIT_SERVER, "the ledger's inclusion reply has no usable hashes");
        goto done;
    }
    if (held && (held_len != env_len || memcmp(held, env, env_len) != 0)) {
        rc = check_failed(g, EXIT_SERVER,
                          "%s is not entry %" PRIu64 " of the ledger: the bytes "
                          "differ (%zu bytes held, %zu in the log)",
                          entry_file, index, held_len, env_len);
        goto done;
    }
    uint8_t signer[32];
    st = sdm_client_open_envelope(env, env_len, &body, signer, err, sizeof(err));
    if (st != SDM_CLIENT_OK) {
        rc = check_failed(g, EXIT_SERVER, "entry %" PRIu64 ": %s: %s", index,
                          st == SDM_CLIENT_UNAUTHORIZED ? "the signature does not hold"
                                                        : "not a well-formed envelope",
                          err);
        goto done;
    }
    sdm_client_leaf_hash(env, env_len, leaf);
    if (memcmp(leaf, sdm_reply_bin(ir, "leaf_hash", NULL), 32) != 0) {
        rc = check_failed(
            g, EXIT_SERVER,
            "the ledger's leaf_hash for entry %" PRIu64 " is not SHA-256(0x00 || entry)", index);
        goto done;
    }
    st = sdm_client_verify_inclusion(&cp, index, env, env_len, (const uint8_t(*)[32])path, n_path,
                                     err, sizeof(err));
    if (st != SDM_CLIENT_OK) {
        rc = check_failed(g, EXIT_SERVER, "%s", err);
        goto done;
    }
    if (entry_out && write_file(entry_out, env, env_len, err, sizeof(err)) != 0) {
        rc = local_error("the entry is proven, but saving it failed: %s", err);
        goto done;
    }
    const char *type = sdm_reply_str(body, "type");
    if (g->json) {
        printf("{\"ok\": true, \"index\": %" PRIu64 ", ", index);
        print_checkpoint_json(&cp);
        printf(", \"trust\": \"%s\", \"leaf_hash\": ", trust_name(&t));
        print_json_hex(stdout, leaf, 32);
        printf(", \"hashes\": [");
        for (size_t i = 0; i < n_path; i++) {
            printf(i ? ", " : "");
            print_json_hex(stdout, path[i], 32);
        }
        printf("], \"type\": ");
        sdm_json_write_str(stdout, type ? type : "");
        printf(", \"signer\": ");
        print_json_hex(stdout, signer, 32);
        printf(", \"entry\": ");
        print_json_hex(stdout, env, env_len);
        if (entry_file) {
            printf(", \"entry_file\": ");
            sdm_json_write_str(stdout, entry_file);
        }
        printf("}\n");
    } else {
        print_checkpoint_line("checkpoint", &cp, cp_file ? "" : " (latest)");
        print_trust_line(&t);
        printf("entry       %" PRIu64 ": %s signed by ", index, type ? type : "?");
        print_hex(stdout, signer, 32);
        printf(" (signature ok), %zu bytes\n", env_len);
        if (entry_file)
            printf("matches     %s, byte for byte\n", entry_file);
        printf("leaf_hash   ");
        print_hex(stdout, leaf, 32);
        printf(" = SHA-256(0x00 || entry)\npath        %zu hashes\n", n_path);
        if (entry_out)
            printf("saved       %s\n", entry_out);
        printf("included: entry %" PRIu64 " is in the log of size %" PRIu64
               " whose checkpoint %s signed\n",
               index, cp.size, cp.origin);
    }
done:
    sdm_reply_destroy(&body);
    sdm_reply_destroy(&er);
    sdm_reply_destroy(&ir);
    free(held);
    free(t.resolved);
    sdm_client_destroy(&c);
    return rc;
}

/* ---- consistency --------------------------------------------------------------------- */

static int cmd_consistency(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *old_file = NULL, *new_file = NULL, *out = NULL;
    trust_opts t = {0};
    const value_opt opts[] = {
        {"--ledger", &ledger}, {"--old", &old_file}, {"--new", &new_file}, {"--out", &out}};
    const command_spec spec = {
        .help = s_help_consistency, .opts = opts, .n_opts = COUNT(opts), .trust = &t};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!old_file)
        return usage_error("--old FILE is required (a checkpoint saved with `sediment "
                           "checkpoint --out`)");
    if ((rc = trust_prepare(&t)) != 0)
        return rc;
    sdm_client_t *c = NULL;
    sdm_reply_t *r = NULL;
    char *new_note = NULL;
    sdm_ledger_checkpoint oldc, newc;
    /* the old checkpoint is the file, the new one the file or the ledger's latest */
    if ((rc = open_ledger(g, ledger, &t, old_file, &c, &oldc, NULL)) != 0 ||
        (rc = checkpoint_from(g, c, new_file, t.resolved, &newc, &new_note)) != 0)
        goto done;
    uint8_t path[64][32];
    size_t n_path = 0;
    if (oldc.size <= newc.size) {
        /* a shrinking log needs no proof to be caught: verify_consistency says so */
        sdm_client_status st = sdm_client_ledger_consistency(c, oldc.size, newc.size, &r);
        if (st != SDM_CLIENT_OK) {
            rc = call_failed(g, c, st);
            goto done;
        }
        if (sdm_reply_hashes(r, "hashes", path, 64, &n_path) != 0) {
            rc = check_failed(g, EXIT_SERVER,
                              "the ledger's consistency reply has no usable "
                              "hashes");
            goto done;
        }
    }
    char err[512];
    if (sdm_client_verify_consistency(&oldc, &newc, (const uint8_t(*)[32])path, n_path, err,
                                      sizeof(err)) != SDM_CLIENT_OK) {
        rc = check_failed(g, EXIT_SERVER, "%s and %s: %s", old_file,
                          new_file ? new_file : "the ledger's latest checkpoint", err);
        goto done;
    }
    if (out &&
        write_file(out, (const uint8_t *)new_note, strlen(new_note), err, sizeof(err)) != 0) {
        rc = local_error("the checkpoints are consistent, but saving the new one failed: %s", err);
        goto done;
    }
    if (g->json) {
        printf("{\"ok\": true, \"origin\": ");
        sdm_json_write_str(stdout, oldc.origin);
        printf(", \"old\": {\"size\": %" PRIu64 ", \"root\": ", oldc.size);
        print_json_hex(stdout, oldc.root, 32);
        printf("}, \"new\": {\"size\": %" PRIu64 ", \"root\": ", newc.size);
        print_json_hex(stdout, newc.root, 32);
        printf("}, \"trust\": \"%s\", \"hashes\": [", trust_name(&t));
        for (size_t i = 0; i < n_path; i++) {
            printf(i ? ", " : "");
            print_json_hex(stdout, path[i], 32);
        }
        printf("]}\n");
    } else {
        print_checkpoint_line("old", &oldc, "");
        print_checkpoint_line("new", &newc, new_file ? "" : " (latest)");
        print_trust_line(&t);
        printf("path        %zu hashes\n", n_path);
        if (out)
            printf("saved       %s (the new checkpoint)\n", out);
        if (oldc.size == newc.size)
            printf("consistent: both checkpoints sign the same log of size %" PRIu64 "\n",
                   newc.size);
        else
            printf("consistent: the log of size %" PRIu64 " extends the log of size %" PRIu64 "\n",
                   newc.size, oldc.size);
    }
done:
    free(new_note);
    free(t.resolved);
    sdm_reply_destroy(&r);
    sdm_client_destroy(&c);
    return rc;
}

/* ---- audit --------------------------------------------------------------------------- */

typedef struct bad_entry {
    uint64_t index;
    char *why;
} bad_entry;

/* An entry waiting for its checks. Ed25519 verification, not the network, bounds a
 * pipelined audit, so entries are checked a batch at a time on --jobs threads while the
 * next batch is being fetched. */
typedef struct audit_item {
    uint64_t index;
    uint8_t *env; /* a copy: the fetch lends the bytes for the callback only */
    size_t len;
    char *why; /* NULL: every check held */
    int nomem;
} audit_item;

#define AUDIT_BATCH 512
#define MAX_JOBS 64

typedef struct audit_ctx audit_ctx;

typedef struct audit_job {
    audit_ctx *a;
    audit_item *items;
    size_t n;
    unsigned first, step; /* checks items first, first + step, ... */
} audit_job;

struct audit_ctx {
    sdm_merkle_t *tree;
    const uint8_t (*workers)[32];
    size_t n_workers;
    char workers_what[PATH_MAX + 64]; /* the list, for messages: "--workers FILE" */
    audit_item batch[2][AUDIT_BATCH];
    size_t n_batch[2];
    int filling;  /* the batch the fetch fills */
    int checking; /* the batch the threads check, or -1 */
    unsigned jobs;
    pthread_t threads[MAX_JOBS];
    audit_job job[MAX_JOBS];
    unsigned started; /* threads running on `checking` */
    bad_entry *bad;
    size_t n_bad, cap_bad;
    uint64_t n_ok;
    uint64_t first;          /* the index checks start at (progress counts from it) */
    uint64_t total;          /* the index they end before */
    uint64_t progress_every; /* 0: none */
    struct timespec start;
    int nomem;
};

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void item_bad(audit_item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void item_bad(audit_item *it, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!(it->why = strdup(msg)))
        it->nomem = 1;
}

/* The checks the ledger made when it took the entry: envelope and signature, the allow-list,
 * the body (docs/ledger.md, "Appends"). Reads only what no thread writes while it runs. */
static void audit_check(const audit_ctx *a, audit_item *it)
{
    const uint8_t *body;
    size_t body_len;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error e = {0, ""};
    sdm_wire_code code = sdm_envelope_open(it->env, it->len, &body, &body_len, key, &e);
    if (code != SDM_WIRE_OK) {
        item_bad(it, "%s: %s",
                 code == SDM_WIRE_UNAUTHORIZED ? "the signature does not hold"
                                               : "not a well-formed envelope",
                 e.message);
        return;
    }
    int allowed = a->workers == NULL;
    for (size_t i = 0; i < a->n_workers && !allowed; i++)
        allowed = memcmp(a->workers[i], key, SDM_PK_LEN) == 0;
    if (!allowed) {
        char hex[2 * SDM_PK_LEN + 1];
        sdm_hex(key, SDM_PK_LEN, hex);
        item_bad(it, "signed by %s, which is not in %s", hex, a->workers_what);
        return;
    }
    sdm_body b;
    memset(&b, 0, sizeof(b));
    code = sdm_body_read(body, body_len, key, &b, &e);
    if (code == SDM_WIRE_INTERNAL)
        it->nomem = 1;
    else if (code != SDM_WIRE_OK)
        item_bad(it, "body: %s", e.message);
    else if (b.issued_at > INT64_MAX) /* refused by the ledger too: SQLite integers are signed */
        item_bad(it, "body: issued_at %" PRIu64 " is beyond 2^63-1 ns", b.issued_at);
    sdm_body_free(&b);
}

static void *audit_thread(void *arg)
{
    audit_job *job = arg;
    for (size_t i = job->first; i < job->n; i += job->step)
        audit_check(job->a, &job->items[i]);
    return NULL;
}

/* Starts the checks of batch b on the job threads; they run while the fetch goes on. */
static void audit_start(audit_ctx *a, int b)
{
    a->checking = b;
    a->started = 0;
    for (unsigned k = 0; k < a->jobs && k < a->n_batch[b]; k++) {
        a->job[k] = (audit_job){a, a->batch[b], a->n_batch[b], k, a->jobs};
        if (pthread_create(&a->threads[k], NULL, audit_thread, &a->job[k]) != 0)
            break; /* this thread checks the rest in audit_finish */
        a->started = k + 1;
    }
}

/* Waits for the checks of the batch under way, then records its results in index order. */
static void audit_finish(audit_ctx *a)
{
    int b = a->checking;
    if (b < 0)
        return;
    for (unsigned k = 0; k < a->started; k++)
        pthread_join(a->threads[k], NULL);
    for (size_t i = 0; i < a->n_batch[b]; i++)
        if (i % a->jobs >= a->started)
            audit_check(a, &a->batch[b][i]);
    for (size_t i = 0; i < a->n_batch[b]; i++) {
        audit_item *it = &a->batch[b][i];
        if (it->nomem)
            a->nomem = 1;
        if (it->why && !a->nomem) {
            if (a->n_bad == a->cap_bad) {
                size_t cap = a->cap_bad ? 2 * a->cap_bad : 16;
                bad_entry *p = realloc(a->bad, cap * sizeof(*p));
                if (!p)
                    a->nomem = 1;
                else
                    a->bad = p, a->cap_bad = cap;
            }
            if (!a->nomem) {
                a->bad[a->n_bad++] = (bad_entry){it->index, it->why};
                it->why = NULL;
            }
        } else if (!it->why) {
            a->n_ok++;
        }
        uint64_t n = it->index + 1 - a->first, total = a->total - a->first;
        if (a->progress_every && (n % a->progress_every == 0 || n == total)) {
            double secs = seconds_since(&a->start);
            fprintf(stderr,
                    "sediment %s: %" PRIu64 "/%" PRIu64 " entries (%.0f%%), %zu bad, "
                    "%.0f entries/s\n",
                    s_cmd, n, total, 100.0 * (double)n / (double)total, a->n_bad,
                    secs > 0 ? (double)n / secs : 0.0);
        }
        free(it->why);
        free(it->env);
        memset(it, 0, sizeof(*it));
    }
    a->n_batch[b] = 0;
    a->checking = -1;
}

/* Hands the batch being filled to the threads (after the previous one is done). */
static void audit_flush(audit_ctx *a)
{
    audit_finish(a);
    if (a->n_batch[a->filling]) {
        audit_start(a, a->filling);
        a->filling ^= 1;
    }
}

/* Queues an entry (its bytes copied) for the checks of its batch. Returns non-zero when
 * out of memory. */
static int audit_queue(audit_ctx *a, uint64_t index, const uint8_t *env, size_t env_len)
{
    audit_item *it = &a->batch[a->filling][a->n_batch[a->filling]];
    it->index = index;
    it->len = env_len;
    if (!(it->env = malloc(env_len ? env_len : 1))) {
        a->nomem = 1;
        return 1;
    }
    memcpy(it->env, env, env_len);
    if (++a->n_batch[a->filling] == AUDIT_BATCH)
        audit_flush(a);
    return a->nomem;
}

/* One fetched entry: its leaf goes into the tree now, in index order and whatever else is
 * wrong with it, so that the root comparison stays about the log as stored; its checks wait
 * for its batch. */
static int audit_entry(void *ctx, uint64_t index, const uint8_t *env, size_t env_len)
{
    audit_ctx *a = ctx;
    uint8_t leaf[SDM_HASH_LEN];
    sdm_client_leaf_hash(env, env_len, leaf);
    if (sdm_merkle_append(a->tree, leaf) != 0) {
        a->nomem = 1;
        return 1;
    }
    return audit_queue(a, index, env, env_len);
}

/* Waits for the checks under way and frees everything; NULL-safe. */
static void audit_free(audit_ctx *a)
{
    if (!a)
        return;
    audit_finish(a); /* no thread may outlive the batches */
    for (size_t i = 0; i < a->n_bad; i++)
        free(a->bad[i].why);
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; i < a->n_batch[b]; i++) {
            free(a->batch[b][i].env);
            free(a->batch[b][i].why);
        }
    free(a->bad);
    sdm_merkle_destroy(&a->tree);
    free(a);
}

/* --workers: 64 hex digits a line, '#' comments and blank lines skipped (as the ledger's). */
static int cmd_audit(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *cp_file = NULL, *workers_file = NULL, *window_s = NULL,
               *every_s = NULL, *jobs_s = NULL;
    int progress = 0;
    trust_opts t = {0};
    const value_opt opts[] = {{"--ledger", &ledger},          {"--checkpoint", &cp_file},
                              {"--workers", &workers_file},   {"--window", &window_s},
                              {"--progress-every", &every_s}, {"--jobs", &jobs_s}};
    const flag_opt flags[] = {{"--progress", &progress}};
    const command_spec spec = {.help = s_help_audit,
                               .opts = opts,
                               .n_opts = COUNT(opts),
                               .flags = flags,
                               .n_flags = COUNT(flags),
                               .trust = &t};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    uint64_t window = 64, every = 10000;
    if (window_s && (parse_u64(window_s, &window) != 0 || window == 0 || window > 1024))
        return usage_error("--window: '%s' is not a number from 1 to 1024", window_s);
    if (every_s && (parse_u64(every_s, &every) != 0 || every == 0))
        return usage_error("--progress-every: '%s' is not a positive integer", every_s);
    if (every_s)
        progress = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t jobs = cpus < 1 ? 1 : cpus > MAX_JOBS ? MAX_JOBS : (uint64_t)cpus;
    if (jobs_s && (parse_u64(jobs_s, &jobs) != 0 || jobs == 0 || jobs > MAX_JOBS))
        return usage_error("--jobs: '%s' is not a number from 1 to %d", jobs_s, MAX_JOBS);
    if ((rc = trust_prepare(&t)) != 0)
        return rc;
    char err[600];
    uint8_t(*workers)[32] = NULL;
    size_t n_workers = 0;
    if (workers_file &&
        sdm_worker_keys_load("--workers", workers_file, &workers, &n_workers, err, sizeof(err)) != 0) {
        free(t.resolved);
        return local_error("%s", err);
    }
    /* the batch makes the context large: it lives on the heap */
    audit_ctx *a = calloc(1, sizeof(*a));
    sdm_client_t *c = NULL;
    sdm_ledger_checkpoint cp;
    if (!a || !(a->tree = sdm_merkle_new())) {
        rc = local_error("out of memory");
        goto done;
    }
    if ((rc = open_ledger(g, ledger, &t, cp_file, &c, &cp, NULL)) != 0)
        goto done;
    a->workers = (const uint8_t(*)[32])workers;
    a->n_workers = n_workers;
    snprintf(a->workers_what, sizeof(a->workers_what), "--workers %s",
             workers_file ? workers_file : "");
    a->jobs = (unsigned)jobs;
    a->checking = -1;
    a->total = cp.size;
    a->progress_every = progress ? every : 0;
    clock_gettime(CLOCK_MONOTONIC, &a->start);
    sdm_client_status st =
        sdm_client_ledger_entries(c, 0, cp.size, (unsigned)window, audit_entry, a);
    audit_flush(a); /* the last batch: started, or checked here */
    audit_finish(a);
    if (a->nomem) {
        rc = local_error("out of memory after %" PRIu64 " entries", sdm_merkle_size(a->tree));
        goto done;
    }
    if (st != SDM_CLIENT_OK) {
        rc = call_failed(g, c, st);
        goto done;
    }
    double secs = seconds_since(&a->start);
    uint8_t root[SDM_HASH_LEN];
    int root_ok =
        sdm_merkle_root(a->tree, cp.size, root) == 0 && memcmp(root, cp.root, SDM_HASH_LEN) == 0;
    int ok = root_ok && a->n_bad == 0;
    rc = ok ? 0 : EXIT_SERVER;
    if (g->json) {
        printf("{\"ok\": %s, ", ok ? "true" : "false");
        print_checkpoint_json(&cp);
        printf(", \"trust\": \"%s\", \"computed_root\": ", trust_name(&t));
        print_json_hex(stdout, root, 32);
        printf(", \"root_ok\": %s, \"entries_ok\": %" PRIu64 ", \"bad\": [",
               root_ok ? "true" : "false", a->n_ok);
        for (size_t i = 0; i < a->n_bad; i++) {
            printf("%s{\"index\": %" PRIu64 ", \"why\": ", i ? ", " : "", a->bad[i].index);
            sdm_json_write_str(stdout, a->bad[i].why);
            printf("}");
        }
        printf("], \"seconds\": %.3f}\n", secs);
    } else {
        print_checkpoint_line("checkpoint", &cp, cp_file ? "" : " (latest)");
        print_trust_line(&t);
        printf("entries     %" PRIu64 " fetched and checked in %.2f s; %" PRIu64 " ok, %zu bad\n",
               cp.size, secs, a->n_ok, a->n_bad);
        for (size_t i = 0; i < a->n_bad && i < 20; i++)
            printf("  entry %" PRIu64 ": %s\n", a->bad[i].index, a->bad[i].why);
        if (a->n_bad > 20)
            printf("  ... and %zu more (--json lists them all)\n", a->n_bad - 20);
        printf("root        ");
        print_hex(stdout, root, 32);
        printf(" recomputed from the %" PRIu64 " entries: %s\n", cp.size,
               root_ok ? "matches the checkpoint" : "DIFFERS from the checkpoint");
        printf(ok ? "audit passed: every entry verifies and the root matches\n" : "");
    }
    if (!ok)
        fprintf(stderr, "sediment audit: audit failed: %zu bad entr%s%s\n", a->n_bad,
                a->n_bad == 1 ? "y" : "ies",
                root_ok ? "" : ", and the entries do not hash to the checkpoint's root");
done:
    audit_free(a);
    free(workers);
    free(t.resolved);
    sdm_client_destroy(&c);
    return rc;
}

/* ---- append -------------------------------------------------------------------------- */

static int cmd_append(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *path = NULL;
    const value_opt opts[] = {{"--ledger", &ledger}};
    const command_spec spec = {
        .help = s_help_append, .opts = opts, .n_opts = COUNT(opts), .file = &path};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!path)
        return usage_error("give the receipt or proof file to append");
    char err[512];
    uint8_t *env;
    size_t env_len;
    if (read_file(path, (size_t)1 << 30, &env, &env_len, err, sizeof(err)) != 0)
        return local_error("%s", err);
    sdm_client_t *c = make_ledger_client(g, ledger, &rc);
    if (!c) {
        free(env);
        return rc;
    }
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_ledger_append(c, env, env_len, &r);
    free(env);
    if (st == SDM_CLIENT_BAD_ARGUMENT) {
        /* the file's fault, found before anything was sent */
        rc = local_error("%s: %s", path, sdm_client_last_error(c));
        sdm_client_destroy(&c);
        return rc;
    }
    if ((rc = end_call(g, &c, st)) != 0)
        return rc;
    if (g->json) {
        rc = print_reply_json(r);
    } else {
        uint64_t index = 0, size = 0;
        int dup = 0;
        (void)sdm_reply_u64(r, "index", &index);
        (void)sdm_reply_u64(r, "size", &size);
        (void)sdm_reply_bool(r, "duplicate", &dup);
        printf("index       %" PRIu64 "%s\nleaf_hash   ", index,
               dup ? " (already in the log: a duplicate)" : "");
        print_hex(stdout, sdm_reply_bin(r, "leaf_hash", NULL), 32);
        printf("\nsize        %" PRIu64 "\n", size);
    }
    sdm_reply_destroy(&r);
    return rc;
}

/* ---- mirror --------------------------------------------------------------------------- */

/* clang-format off */
static const char s_help_mirror[] =
    "usage: sediment mirror [--ledger E] --dir DIR [--vkey KEY | --vkey-file FILE | --tofu]\n"
    "                       [--workers FILE] [--window N] [--jobs N] [--progress]\n"
    "       sediment mirror --dir DIR --check [--vkey KEY | --vkey-file FILE]\n"
    "                       [--workers FILE] [--jobs N] [--progress]\n"
    "       sediment mirror --dir DIR --restore-to E [--vkey KEY | --vkey-file FILE]\n"
    "                       [--window N] [--jobs N] [--progress]\n"
    "\n"
    "Keeps a verified, append-only copy of a ledger's log in DIR (made 0700 on the first\n"
    "run): DIR/entries (each envelope as a 4-byte big-endian length and its bytes, in log\n"
    "order), DIR/checkpoint (the last checkpoint verified) and DIR/vkey (its key). A run\n"
    "fetches and verifies the latest checkpoint, proves it consistent with DIR's (RFC 9162),\n"
    "fetches the new entries (--window requests in flight, default 64), checks each as\n"
    "`audit` does (signature, body, and with --workers the signer), appends them, and\n"
    "stores the checkpoint only once the root of all the entries equals it. Any failure\n"
    "leaves DIR as the last good run left it. Every run first rehashes DIR/entries: bytes\n"
    "past the checkpoint's entries (a run that was killed) are cut off, a shorter or\n"
    "altered file is refused.\n"
    "\n"
    "The first run needs the key (--vkey, --vkey-file or --tofu); DIR keeps it and later\n"
    "runs use it (a key given again must be the same one).\n"
    "\n"
    "--check verifies DIR alone, with no ledger: every envelope's signature and body (and\n"
    "signer, with --workers), the root of all the entries against the stored checkpoint,\n"
    "and the checkpoint's signature by the stored key (or the one given, which must be it).\n"
    "--restore-to E appends DIR's entries in order, pipelined (--window, default 256), to\n"
    "the ledger at E, which must sign with the mirror's key and hold nothing yet or a prefix\n"
    "of the mirror (a restore that stopped); E then holds the same log, with the same root\n"
    "at the same size.\n"
    "--progress prints a line on stderr every 10000 entries.\n"
    TRUST_HELP;
/* clang-format on */

typedef struct mirror_opts {
    const char *dir, *ledger, *restore_to, *workers_file;
    uint8_t (*workers)[32];
    size_t n_workers;
    unsigned window, jobs;
    uint64_t progress_every; /* 0: no progress lines */
    trust_opts t;
    int given; /* a key was given: --vkey, --vkey-file or --tofu */
} mirror_opts;

/* 1 when two verifier keys name the same origin and the same Ed25519 key. */
static int same_vkey(const char *a, const char *b)
{
    sdm_note_verifier va, vb;
    char e[256];
    return a && b && sdm_note_verifier_parse(a, &va, e, sizeof(e)) == SDM_NOTE_OK &&
           sdm_note_verifier_parse(b, &vb, e, sizeof(e)) == SDM_NOTE_OK &&
           strcmp(va.name, vb.name) == 0 && memcmp(va.pk, vb.pk, SDM_PK_LEN) == 0;
}

/* A mirror that does not verify is a failed check (exit 1); a file that cannot be read or
 * written, a lock held by another run, no memory are local errors (exit 2). */
static int mirror_failed(const globals *g, sdm_mirror_status st, const char *err)
{
    if (st == SDM_MIRROR_DAMAGED)
        return check_failed(g, EXIT_SERVER, "%s; the mirror is left as it is", err);
    return check_failed(g, EXIT_USAGE, "%s", err);
}

/* `audit`'s entry checks (without its tree) for entries first..total-1, against the
 * --workers list; or, when what is given, against workers, the list `what` names. */
static audit_ctx *mirror_checks(const mirror_opts *o, const uint8_t (*workers)[32],
                                size_t n_workers, const char *what, uint64_t first, uint64_t total)
{
    audit_ctx *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->workers = what ? workers : (const uint8_t(*)[32])o->workers;
    a->n_workers = what ? n_workers : o->n_workers;
    if (what)
        snprintf(a->workers_what, sizeof(a->workers_what), "%s", what);
    else
        snprintf(a->workers_what, sizeof(a->workers_what), "--workers %s",
                 o->workers_file ? o->workers_file : "");
    a->jobs = o->jobs;
    a->checking = -1;
    a->first = first;
    a->total = total;
    a->progress_every = o->progress_every;
    clock_gettime(CLOCK_MONOTONIC, &a->start);
    return a;
}

/* Waits for the last checks. 0, or the exit status of running out of memory (reported). */
static int checks_done(audit_ctx *a)
{
    audit_flush(a);
    audit_finish(a);
    return a->nomem ? local_error("out of memory while checking the entries") : 0;
}

/* "entry I: why" of the first bad entry, and how many more there are. */
static void first_bad(const audit_ctx *a, char *out, size_t len)
{
    char more[48] = "";
    if (a->n_bad > 1)
        snprintf(more, sizeof(more), " (and %zu more)", a->n_bad - 1);
    snprintf(out, len, "entry %" PRIu64 ": %s%s", a->bad[0].index, a->bad[0].why, more);
}

static void print_bad_json(const audit_ctx *a)
{
    printf("[");
    for (size_t i = 0; i < a->n_bad; i++) {
        printf("%s{\"index\": %" PRIu64 ", \"why\": ", i ? ", " : "", a->bad[i].index);
        sdm_json_write_str(stdout, a->bad[i].why);
        printf("}");
    }
    printf("]");
}

typedef struct mirror_fetch {
    sdm_mirror_t *m;
    audit_ctx *a;
    sdm_mirror_status st;
    char err[512];
} mirror_fetch;

/* A fetched entry goes into `entries` (buffered) and the running root at once, and is
 * checked with its batch. Stops the fetch at the first failure, a bad entry included. */
static int mirror_fetched(void *ctx, uint64_t index, const uint8_t *env, size_t env_len)
{
    mirror_fetch *f = ctx;
    f->st = sdm_mirror_append(f->m, env, env_len, f->err, sizeof(f->err));
    if (f->st != SDM_MIRROR_OK)
        return 1;
    return audit_queue(f->a, index, env, env_len) || f->a->n_bad;
}

/* Proves the ledger's checkpoint newc consistent with the mirror's oldc. 0 or an exit
 * status (reported). */
static int mirror_consistent(const globals *g, sdm_client_t *c, const char *dir,
                             const sdm_ledger_checkpoint *oldc, const sdm_ledger_checkpoint *newc,
                             size_t *n_path)
{
    uint8_t path[64][32];
    *n_path = 0;
    if (oldc->size <= newc->size) {
        /* a shrinking log needs no proof to be caught: verify_consistency says so */
        sdm_reply_t *r;
        sdm_client_status st = sdm_client_ledger_consistency(c, oldc->size, newc->size, &r);
        if (st != SDM_CLIENT_OK)
            return call_failed(g, c, st);
        int bad = sdm_reply_hashes(r, "hashes", path, 64, n_path) != 0;
        sdm_reply_destroy(&r);
        if (bad)
            return check_failed(g, EXIT_SERVER,
                                "the ledger's consistency reply has no usable hashes");
    }
    char e[512];
    if (sdm_client_verify_consistency(oldc, newc, (const uint8_t(*)[32])path, *n_path, e,
                                      sizeof(e)) != SDM_CLIENT_OK)
        return check_failed(g, EXIT_SERVER,
                            "the ledger's checkpoint (size %" PRIu64 ") is not consistent with "
                            "the one %s holds (size %" PRIu64 "), %s unchanged: %s",
                            newc->size, dir, oldc->size, dir, e);
    return 0;
}

/* A run against the ledger: verify its checkpoint, fetch and check the new entries, append
 * them, commit; or roll back. */
static int mirror_run(globals *g, mirror_opts *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[1024], path[PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/checkpoint", o->dir);
    if (!o->given && stat(path, &sb) != 0) /* refused before anything is made */
        return usage_error("%s holds no mirror yet: say which key signs the ledger's "
                           "checkpoints with --vkey KEY, --vkey-file FILE (from `sediment "
                           "ledger-key`), or --tofu to trust the key the ledger reports",
                           o->dir);
    sdm_mirror_t *m = NULL;
    sdm_client_t *c = NULL;
    audit_ctx *a = NULL;
    char *note = NULL;
    int rc = 0, appended = 0;
    uint64_t tail = 0;
    sdm_mirror_status ms = sdm_mirror_open(o->dir, 1, &m, err, sizeof(err));
    if (ms == SDM_MIRROR_OK)
        ms = sdm_mirror_scan(m, NULL, NULL, &tail, err, sizeof(err));
    if (ms != SDM_MIRROR_OK) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    if (tail)
        fprintf(stderr,
                "sediment mirror: %s/entries: cut off %" PRIu64 " bytes past the "
                "checkpoint's entries, left by a run that did not finish\n",
                o->dir, tail);
    const char *stored = sdm_mirror_vkey(m);
    sdm_ledger_checkpoint oldc;
    memset(&oldc, 0, sizeof(oldc));
    if (stored)
        oldc = *sdm_mirror_checkpoint(m);
    if (!stored && !o->given) { /* its checkpoint vanished since the stat */
        rc = usage_error("%s holds no mirror yet: give --vkey, --vkey-file or --tofu", o->dir);
        goto done;
    }
    if (stored && o->t.resolved && !same_vkey(stored, o->t.resolved)) {
        rc = check_failed(g, EXIT_SERVER, "%s mirrors the log signed by %s, not by %s", o->dir,
                          stored, o->t.resolved);
        goto done;
    }
    if (!(c = make_ledger_client(g, o->ledger, &rc)))
        goto done;
    if (stored && !o->t.tofu && !o->t.resolved && !(o->t.resolved = strdup(stored))) {
        rc = local_error("out of memory");
        goto done;
    }
    if ((rc = trust_resolve(g, c, &o->t)) != 0)
        goto done;
    if (stored && !same_vkey(stored, o->t.resolved)) { /* --tofu: the ledger's word changed */
        rc = check_failed(g, EXIT_SERVER,
                          "the ledger reports the key %s, but %s mirrors the log signed by %s",
                          o->t.resolved, o->dir, stored);
        goto done;
    }
    /* the stored spelling, so that DIR/vkey never changes */
    const char *vkey = stored ? stored : o->t.resolved;
    sdm_ledger_checkpoint newc;
    size_t n_path = 0;
    if ((rc = fetch_checkpoint(g, c, vkey, &newc, &note)) != 0 ||
        (stored && (rc = mirror_consistent(g, c, o->dir, &oldc, &newc, &n_path)) != 0))
        goto done;
    if (!(a = mirror_checks(o, NULL, 0, NULL, oldc.size, newc.size))) {
        rc = local_error("out of memory");
        goto done;
    }
    mirror_fetch f = {m, a, SDM_MIRROR_OK, ""};
    appended = 1; /* from here on a failure cuts `entries` back */
    sdm_client_status st =
        sdm_client_ledger_entries(c, oldc.size, newc.size, o->window, mirror_fetched, &f);
    if ((rc = checks_done(a)) != 0)
        goto done;
    if (f.st != SDM_MIRROR_OK) {
        rc = mirror_failed(g, f.st, f.err);
        goto done;
    }
    if (a->n_bad) {
        char why[700];
        first_bad(a, why, sizeof(why));
        rc = check_failed(g, EXIT_SERVER, "%s; %s unchanged", why, o->dir);
        goto done;
    }
    if (st != SDM_CLIENT_OK) {
        rc = call_failed(g, c, st);
        goto done;
    }
    if ((ms = sdm_mirror_sync(m, err, sizeof(err))) != SDM_MIRROR_OK) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    uint8_t root[SDM_HASH_LEN];
    sdm_mirror_root(m, root);
    if (sdm_mirror_size(m) != newc.size || memcmp(root, newc.root, SDM_HASH_LEN) != 0) {
        char got[17], want[17];
        sdm_hex(root, 8, got);
        sdm_hex(newc.root, 8, want);
        rc = check_failed(g, EXIT_SERVER,
                          "the %" PRIu64 " entries hash to the root %s..., not the checkpoint's "
                          "%s...: the ledger served entries that are not the log it signed; "
                          "%s unchanged",
                          sdm_mirror_size(m), got, want, o->dir);
        goto done;
    }
    /* the commit point: until the checkpoint is replaced, the appended entries are not
     * part of the mirror */
    const char *old_note = sdm_mirror_note(m);
    if ((!old_note || strcmp(old_note, note) != 0) &&
        (ms = sdm_mirror_commit(m, vkey, note, err, sizeof(err))) != SDM_MIRROR_OK) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    appended = 0;
    double secs = seconds_since(&t0);
    const char *trust = o->given ? trust_name(&o->t) : "stored";
    if (g->json) {
        printf("{\"ok\": true, \"dir\": ");
        sdm_json_write_str(stdout, o->dir);
        printf(", ");
        print_checkpoint_json(&newc);
        printf(", \"previous_size\": %" PRIu64 ", \"new_entries\": %" PRIu64
               ", \"trust\": \"%s\", \"seconds\": %.3f}\n",
               oldc.size, newc.size - oldc.size, trust, secs);
    } else {
        printf("dir         %s%s\n", o->dir, stored ? "" : " (a new mirror)");
        print_checkpoint_line("checkpoint", &newc, " (latest)");
        if (!o->given)
            printf("trust       the key %s/vkey holds\n", o->dir);
        print_trust_line(&o->t);
        if (stored)
            printf("consistent  with the mirror's checkpoint of size %" PRIu64 " (%zu hashes)\n",
                   oldc.size, n_path);
        printf("entries     %" PRIu64 " new, fetched and checked; %" PRIu64 " in all\n",
               newc.size - oldc.size, newc.size);
        printf("root        recomputed from all the entries: matches the checkpoint\n");
        printf("mirrored: %s holds the log of size %" PRIu64 " that %s signed (%.2f s)\n", o->dir,
               newc.size, newc.origin, secs);
    }
done:
    if (appended && m) {
        char e2[512];
        if (sdm_mirror_rollback(m, e2, sizeof(e2)) != SDM_MIRROR_OK)
            fprintf(stderr, "sediment mirror: %s (the next run cuts the file back)\n", e2);
    }
    audit_free(a);
    free(note);
    sdm_client_destroy(&c);
    sdm_mirror_destroy(&m);
    return rc;
}

/* Opens DIR to read (check, restore) and settles the key: the stored one, which a key given
 * must be. 0 or an exit status (reported). */
static int mirror_open_read(const globals *g, mirror_opts *o, sdm_mirror_t **m)
{
    char err[1024];
    sdm_mirror_status ms = sdm_mirror_open(o->dir, 0, m, err, sizeof(err));
    if (ms != SDM_MIRROR_OK)
        return mirror_failed(g, ms, err);
    const char *stored = sdm_mirror_vkey(*m);
    if (o->t.resolved && !same_vkey(stored, o->t.resolved))
        return check_failed(g, EXIT_SERVER,
                            "%s/checkpoint is signed by %s, not by the key given, %s", o->dir,
                            stored, o->t.resolved);
    return 0;
}

/* A scanned entry is queued for the checks. */
static int mirror_scanned(void *ctx, uint64_t index, const uint8_t *env, size_t env_len)
{
    return audit_queue(ctx, index, env, env_len);
}

/* --check: the mirror alone, every entry and the root. */
static int mirror_check(globals *g, mirror_opts *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sdm_mirror_t *m = NULL;
    audit_ctx *a = NULL;
    int rc = mirror_open_read(g, o, &m);
    if (rc != 0)
        goto done;
    const sdm_ledger_checkpoint *cp = sdm_mirror_checkpoint(m);
    if (!(a = mirror_checks(o, NULL, 0, NULL, 0, cp->size))) {
        rc = local_error("out of memory");
        goto done;
    }
    char err[1024] = "";
    uint64_t tail = 0;
    sdm_mirror_status ms = sdm_mirror_scan(m, mirror_scanned, a, &tail, err, sizeof(err));
    if ((rc = checks_done(a)) != 0)
        goto done;
    if (ms != SDM_MIRROR_OK && ms != SDM_MIRROR_DAMAGED) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    int ok = ms == SDM_MIRROR_OK && a->n_bad == 0;
    uint64_t read = a->n_ok + a->n_bad;
    double secs = seconds_since(&t0);
    if (g->json) {
        printf("{\"ok\": %s, \"dir\": ", ok ? "true" : "false");
        sdm_json_write_str(stdout, o->dir);
        printf(", ");
        print_checkpoint_json(cp);
        printf(", \"trust\": \"%s\", \"root_ok\": %s, \"entries_ok\": %" PRIu64 ", \"bad\": ",
               o->t.resolved ? "vkey" : "stored", ms == SDM_MIRROR_OK ? "true" : "false", a->n_ok);
        print_bad_json(a);
        printf(", \"trailing_bytes\": %" PRIu64, tail);
        if (ms != SDM_MIRROR_OK) {
            printf(", \"problem\": ");
            sdm_json_write_str(stdout, err);
        }
        printf(", \"seconds\": %.3f}\n", secs);
    } else {
        printf("dir         %s\n", o->dir);
        print_checkpoint_line("checkpoint", cp, " (stored)");
        printf("signed by   %s (signature ok%s)\n", sdm_mirror_vkey(m),
               o->t.resolved ? ", the key given" : ", the key the mirror holds");
        printf("entries     %" PRIu64 " read and checked in %.2f s; %" PRIu64 " ok, %zu bad\n",
               read, secs, a->n_ok, a->n_bad);
        for (size_t i = 0; i < a->n_bad && i < 20; i++)
            printf("  entry %" PRIu64 ": %s\n", a->bad[i].index, a->bad[i].why);
        if (a->n_bad > 20)
            printf("  ... and %zu more (--json lists them all)\n", a->n_bad - 20);
        if (ms == SDM_MIRROR_OK)
            printf("root        recomputed from the %" PRIu64 " entries: matches the checkpoint\n",
                   cp->size);
        else
            printf("root        %s\n", err);
        if (tail)
            printf("tail        %" PRIu64 " bytes past the last entry, left by a run that did "
                   "not finish (the next run cuts them off)\n",
                   tail);
        if (ok)
            printf("check passed: %s holds the log of size %" PRIu64 " that %s signed\n", o->dir,
                   cp->size, cp->origin);
    }
    if (!ok) {
        char why[700] = "";
        if (a->n_bad)
            first_bad(a, why, sizeof(why));
        fprintf(stderr, "sediment mirror: check failed: %s%s%s\n", why,
                a->n_bad && ms != SDM_MIRROR_OK ? "; " : "", ms != SDM_MIRROR_OK ? err : "");
        rc = EXIT_SERVER;
    }
done:
    audit_free(a);
    sdm_mirror_destroy(&m);
    return rc;
}

typedef struct mirror_restore_scan {
    audit_ctx *a;
    uint64_t at;            /* the target's size */
    sdm_mirror_range range; /* the first `at` entries */
} mirror_restore_scan;

/* Checks an entry as the target will, and hashes the target's prefix. Stops at a bad one. */
static int restore_scanned(void *ctx, uint64_t index, const uint8_t *env, size_t env_len)
{
    mirror_restore_scan *s = ctx;
    if (index < s->at) {
        uint8_t leaf[SDM_HASH_LEN];
        sdm_client_leaf_hash(env, env_len, leaf);
        sdm_mirror_range_append(&s->range, leaf);
    }
    return audit_queue(s->a, index, env, env_len) || s->a->n_bad;
}

/* --progress of a restore: a line every 10000 appends, and at the end. */
static void restore_progress(void *ctx, uint64_t done, uint64_t total)
{
    const struct timespec *start = ctx;
    if (done % 10000 && done != total)
        return;
    double secs = seconds_since(start);
    fprintf(stderr,
            "sediment mirror: %" PRIu64 "/%" PRIu64 " entries restored (%.0f%%), %.0f entries/s\n",
            done, total, 100.0 * (double)done / (double)total,
            secs > 0 ? (double)done / secs : 0.0);
}

/* The target's allowed worker keys from its info: *keys NULL when it takes any signature. */
static int target_workers(const sdm_reply_t *info, uint8_t (**keys)[32], size_t *n)
{
    *keys = NULL;
    *n = 0;
    int64_t count = sdm_reply_count(info, "workers");
    if (count <= 0)
        return 0; /* nil: any valid signature */
    if (!(*keys = malloc((size_t)count * 32)))
        return -1;
    for (int64_t i = 0; i < count; i++) {
        char p[48];
        snprintf(p, sizeof(p), "workers.%" PRId64, i);
        memcpy((*keys)[i], sdm_reply_bin(info, p, NULL), 32);
    }
    *n = (size_t)count;
    return 0;
}

/* --restore-to: the mirror's entries appended to a ledger that signs with its key. */
static int mirror_restore(globals *g, mirror_opts *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sdm_mirror_t *m = NULL;
    sdm_client_t *c = NULL;
    sdm_reply_t *info = NULL;
    audit_ctx *a = NULL;
    uint8_t(*keys)[32] = NULL;
    size_t n_keys = 0;
    char err[1024];
    int rc = mirror_open_read(g, o, &m);
    if (rc != 0)
        goto done;
    const sdm_ledger_checkpoint *mc = sdm_mirror_checkpoint(m);
    const char *vkey = sdm_mirror_vkey(m);
    /* checked against the target's own allow-list before anything is sent: a refused entry
     * would leave the ones after it in the log without it */
    if (!(c = make_ledger_client(g, o->restore_to, &rc)))
        goto done;
    sdm_client_status st = sdm_client_ledger_info(c, &info);
    if (st != SDM_CLIENT_OK) {
        rc = call_failed(g, c, st);
        goto done;
    }
    char *target_key = sdm_client_verifier_key(sdm_reply_str(info, "origin"),
                                               sdm_reply_bin(info, "ledger_key", NULL));
    int same = same_vkey(target_key, vkey);
    if (!same) {
        rc = check_failed(g, EXIT_SERVER,
                          "%s signs as %s, but the mirror's log is signed by %s: start it with "
                          "the original ledger.key and ledger.pub in its data directory and "
                          "--origin %s",
                          o->restore_to, target_key ? target_key : "(an invalid origin)", vkey,
                          mc->origin);
        free(target_key);
        goto done;
    }
    free(target_key);
    if (target_workers(info, &keys, &n_keys) != 0) {
        rc = local_error("out of memory");
        goto done;
    }
    sdm_ledger_checkpoint tc;
    if ((rc = fetch_checkpoint(g, c, vkey, &tc, NULL)) != 0)
        goto done;
    if (tc.size > mc->size) {
        rc = check_failed(g, EXIT_SERVER,
                          "%s already holds %" PRIu64 " entries, more than the mirror's %" PRIu64,
                          o->restore_to, tc.size, mc->size);
        goto done;
    }
    char what[320];
    snprintf(what, sizeof(what), "the --workers list of %s", o->restore_to);
    mirror_opts quiet = *o;
    quiet.progress_every = 0;
    if (!(a = mirror_checks(&quiet, (const uint8_t(*)[32])keys, n_keys, what, 0, mc->size))) {
        rc = local_error("out of memory");
        goto done;
    }
    mirror_restore_scan rs = {a, tc.size, {0}};
    sdm_mirror_range_init(&rs.range);
    uint64_t tail;
    sdm_mirror_status ms = sdm_mirror_scan(m, restore_scanned, &rs, &tail, err, sizeof(err));
    if ((rc = checks_done(a)) != 0)
        goto done;
    if (a->n_bad) {
        char why[700];
        first_bad(a, why, sizeof(why));
        rc = check_failed(g, EXIT_SERVER, "%s would refuse %s; nothing was appended", o->restore_to,
                          why);
        goto done;
    }
    if (ms != SDM_MIRROR_OK) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    uint8_t prefix[SDM_HASH_LEN];
    sdm_mirror_range_root(&rs.range, prefix);
    if (memcmp(prefix, tc.root, SDM_HASH_LEN) != 0) {
        rc = check_failed(g, EXIT_SERVER,
                          "%s's log of size %" PRIu64 " is not the mirror's first %" PRIu64
                          " entries: restore into an empty ledger, or one a restore from this "
                          "mirror began",
                          o->restore_to, tc.size, tc.size);
        goto done;
    }
    struct timespec sent_from;
    clock_gettime(CLOCK_MONOTONIC, &sent_from);
    sdm_client_status cs;
    ms = sdm_mirror_send(m, c, tc.size, o->window, o->progress_every ? restore_progress : NULL,
                         &sent_from, &cs, err, sizeof(err));
    if (ms == SDM_MIRROR_LEDGER && cs != SDM_CLIENT_OK) {
        rc = call_failed(g, c, cs);
        goto done;
    }
    if (ms == SDM_MIRROR_LEDGER) {
        rc = check_failed(g, EXIT_SERVER, "%s", err);
        goto done;
    }
    if (ms != SDM_MIRROR_OK) {
        rc = mirror_failed(g, ms, err);
        goto done;
    }
    sdm_ledger_checkpoint fc;
    if ((rc = fetch_checkpoint(g, c, vkey, &fc, NULL)) != 0)
        goto done;
    if (fc.size != mc->size || memcmp(fc.root, mc->root, SDM_HASH_LEN) != 0) {
        rc = check_failed(g, EXIT_SERVER,
                          "after the restore %s signs size %" PRIu64 " with another root than "
                          "the mirror's size %" PRIu64,
                          o->restore_to, fc.size, mc->size);
        goto done;
    }
    double secs = seconds_since(&t0);
    if (g->json) {
        printf("{\"ok\": true, \"dir\": ");
        sdm_json_write_str(stdout, o->dir);
        printf(", \"ledger\": ");
        sdm_json_write_str(stdout, o->restore_to);
        printf(", ");
        print_checkpoint_json(&fc);
        printf(", \"previous_size\": %" PRIu64 ", \"new_entries\": %" PRIu64
               ", \"seconds\": %.3f}\n",
               tc.size, fc.size - tc.size, secs);
    } else {
        printf("dir         %s\n", o->dir);
        print_checkpoint_line("mirror", mc, "");
        printf("ledger      %s, held %" PRIu64 " entries\n", o->restore_to, tc.size);
        printf("appended    %" PRIu64 " entries in %.2f s\n", fc.size - tc.size, secs);
        print_checkpoint_line("checkpoint", &fc, " (the ledger's, after)");
        printf("signed by   %s (signature ok)\n", vkey);
        printf("restored: %s holds the mirror's log, the same root at size %" PRIu64 "\n",
               o->restore_to, fc.size);
    }
done:
    audit_free(a);
    free(keys);
    sdm_reply_destroy(&info);
    sdm_client_destroy(&c);
    sdm_mirror_destroy(&m);
    return rc;
}

static int cmd_mirror(globals *g, int argc, char **argv)
{
    mirror_opts o;
    memset(&o, 0, sizeof(o));
    const char *window_s = NULL, *jobs_s = NULL;
    int check = 0, progress = 0;
    const value_opt opts[] = {
        {"--ledger", &o.ledger}, {"--dir", &o.dir},   {"--workers", &o.workers_file},
        {"--window", &window_s}, {"--jobs", &jobs_s}, {"--restore-to", &o.restore_to}};
    const flag_opt flags[] = {{"--check", &check}, {"--progress", &progress}};
    const command_spec spec = {.help = s_help_mirror,
                               .opts = opts,
                               .n_opts = COUNT(opts),
                               .flags = flags,
                               .n_flags = COUNT(flags),
                               .trust = &o.t};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!o.dir || !*o.dir)
        return usage_error("--dir DIR is required (the mirror's directory)");
    if (check && o.restore_to)
        return usage_error("--check and --restore-to are two different jobs: one at a time");
    const char *mode = check ? "--check" : "--restore-to";
    if ((check || o.restore_to) && o.ledger)
        return usage_error("%s reads no ledger: --ledger does not apply", mode);
    if ((check || o.restore_to) && o.t.tofu)
        return usage_error("%s trusts the key the mirror holds: --tofu does not apply", mode);
    if (check && window_s)
        return usage_error("--check fetches nothing: --window does not apply");
    if (o.restore_to && o.workers_file)
        return usage_error("--restore-to checks the entries against the ledger's own --workers "
                           "list: --workers does not apply");
    /* a restore's window is also the ledger's group commit: wider pays off there (10 100
     * entries: 1.27 s at 256, 1.78 s at 64) */
    uint64_t window = o.restore_to ? 256 : 64;
    if (window_s && (parse_u64(window_s, &window) != 0 || window == 0 || window > 1024))
        return usage_error("--window: '%s' is not a number from 1 to 1024", window_s);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t jobs = cpus < 1 ? 1 : cpus > MAX_JOBS ? MAX_JOBS : (uint64_t)cpus;
    if (jobs_s && (parse_u64(jobs_s, &jobs) != 0 || jobs == 0 || jobs > MAX_JOBS))
        return usage_error("--jobs: '%s' is not a number from 1 to %d", jobs_s, MAX_JOBS);
    o.window = (unsigned)window;
    o.jobs = (unsigned)jobs;
    o.progress_every = progress ? 10000 : 0;
    o.given = o.t.vkey || o.t.vkey_file || o.t.tofu;
    if (o.given && (rc = trust_prepare(&o.t)) != 0)
        return rc;
    char err[600];
    if (o.workers_file && sdm_worker_keys_load("--workers", o.workers_file, &o.workers,
                                               &o.n_workers, err, sizeof(err)) != 0) {
        free(o.t.resolved);
        return local_error("%s", err);
    }
    rc = check ? mirror_check(g, &o) : o.restore_to ? mirror_restore(g, &o) : mirror_run(g, &o);
    free(o.workers);
    free(o.t.resolved);
    return rc;
}

/* ---- history and rewards ------------------------------------------------------------- */

/* Unix nanoseconds, or UTC "YYYY-MM-DDTHH:MM:SS[.fraction]Z". 0 or -1. */
static int parse_time(const char *s, uint64_t *out)
{
    if (parse_u64(s, out) == 0)
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6 ||
        used != 19)
        return -1;
    if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    const char *p = s + used;
    uint64_t frac = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 9) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                digits++;
            }
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 9; digits++)
            frac *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    if (secs < 0 || (uint64_t)secs > UINT64_MAX / 1000000000u - 1)
        return -1;
    *out = (uint64_t)secs * 1000000000u + frac;
    return 0;
}

static int parse_window(const char *since, const char *until, sdm_client_window *w)
{
    memset(w, 0, sizeof(*w));
    if (since && parse_time(since, &w->since) != 0)
        return usage_error("--since: '%s' is neither unix nanoseconds nor a UTC time like "
                           "2026-11-21T22:34:21Z",
                           since);
    if (until && parse_time(until, &w->until) != 0)
        return usage_error("--until: '%s' is neither unix nanoseconds nor a UTC time like "
                           "2026-11-21T22:34:21Z",
                           until);
    w->has_since = since != NULL;
    w->has_until = until != NULL;
    return 0;
}

static int cmd_history(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *contributor = NULL, *since = NULL, *until = NULL, *limit_s = NULL;
    const value_opt opts[] = {{"--ledger", &ledger},
                              {"--contributor", &contributor},
                              {"--since", &since},
                              {"--until", &until},
                              {"--limit", &limit_s}};
    const command_spec spec = {.help = s_help_history, .opts = opts, .n_opts = COUNT(opts)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!contributor)
        return usage_error("--contributor is required");
    sdm_client_window w;
    if ((rc = parse_window(since, until, &w)) != 0)
        return rc;
    uint64_t limit = 0;
    if (limit_s && (parse_u64(limit_s, &limit) != 0 || limit == 0 || limit > 100000))
        return usage_error("--limit: '%s' is not a number from 1 to 100000", limit_s);
    sdm_client_t *c = make_ledger_client(g, ledger, &rc);
    if (!c)
        return rc;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_ledger_history(c, contributor, &w, limit, &r);
    if ((rc = end_call(g, &c, st)) != 0)
        return rc;
    if (g->json) {
        rc = print_reply_json(r);
    } else {
        int64_t n = sdm_reply_count(r, "entries");
        printf("%-8s %-31s %-13s %-16s %-20s %12s %8s\n", "index", "issued_at", "type", "model",
               "shard", "score", "share");
        for (int64_t i = 0; i < n; i++) {
            char p[64], t[64];
            uint64_t index = 0, at = 0;
            double score, share;
            snprintf(p, sizeof(p), "entries.%" PRId64 ".index", i);
            (void)sdm_reply_u64(r, p, &index);
            snprintf(p, sizeof(p), "entries.%" PRId64 ".issued_at", i);
            (void)sdm_reply_u64(r, p, &at);
            format_time(at, t, sizeof(t));
            printf("%-8" PRIu64 " %-31s", index, t);
            snprintf(p, sizeof(p), "entries.%" PRId64 ".type", i);
            printf(" %-13s", sdm_reply_str(r, p));
            snprintf(p, sizeof(p), "entries.%" PRId64 ".model", i);
            printf(" %-16s", sdm_reply_str(r, p));
            snprintf(p, sizeof(p), "entries.%" PRId64 ".shard", i);
            printf(" %-20s", sdm_reply_str(r, p));
            snprintf(p, sizeof(p), "entries.%" PRId64 ".score", i);
            if (sdm_reply_f64(r, p, &score) == 0)
                printf(" %12.6g", score);
            else
                printf(" %12s", "-");
            snprintf(p, sizeof(p), "entries.%" PRId64 ".share", i);
            if (sdm_reply_f64(r, p, &share) == 0)
                printf(" %7.2f%%\n", 100 * share);
            else
                printf(" %8s\n", "-");
        }
        printf("%" PRId64 " entr%s touching %s%s\n", n, n == 1 ? "y" : "ies", contributor,
               limit && (uint64_t)n == limit ? " (the --limit; page on with --since)" : "");
    }
    sdm_reply_destroy(&r);
    return rc;
}

static int cmd_rewards(globals *g, int argc, char **argv)
{
    const char *ledger = NULL, *pool_s = NULL, *since = NULL, *until = NULL, *model = NULL;
    const value_opt opts[] = {{"--ledger", &ledger},
                              {"--pool", &pool_s},
                              {"--since", &since},
                              {"--until", &until},
                              {"--model", &model}};
    const command_spec spec = {.help = s_help_rewards, .opts = opts, .n_opts = COUNT(opts)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!pool_s)
        return usage_error("--pool is required");
    uint64_t pool;
    if (parse_u64(pool_s, &pool) != 0)
        return usage_error("--pool: '%s' is not an unsigned integer number of units", pool_s);
    sdm_client_window w;
    if ((rc = parse_window(since, until, &w)) != 0)
        return rc;
    sdm_client_t *c = make_ledger_client(g, ledger, &rc);
    if (!c)
        return rc;
    sdm_reply_t *r;
    sdm_client_status st = sdm_client_ledger_rewards(c, pool, &w, model, &r);
    if ((rc = end_call(g, &c, st)) != 0)
        return rc;
    if (g->json) {
        rc = print_reply_json(r);
    } else {
        uint64_t unallocated = 0;
        (void)sdm_reply_u64(r, "unallocated", &unallocated);
        printf("pool        %" PRIu64 "%s%s\n", pool, model ? " for model " : "",
               model ? model : "");
        int64_t n = sdm_reply_count(r, "allocations");
        printf("%-32s %20s\n", "contributor", "amount");
        for (int64_t i = 0; i < n; i++) {
            char p[64];
            uint64_t amount = 0;
            snprintf(p, sizeof(p), "allocations.%" PRId64 ".1", i);
            (void)sdm_reply_u64(r, p, &amount);
            snprintf(p, sizeof(p), "allocations.%" PRId64 ".0", i);
            printf("%-32s %20" PRIu64 "\n", sdm_reply_str(r, p), amount);
        }
        int64_t nf = sdm_reply_count(r, "flagged");
        for (int64_t i = 0; i < nf; i++) {
            char p[64];
            snprintf(p, sizeof(p), "flagged.%" PRId64, i);
            printf("flagged     %s (negative summed score: gets nothing)\n", sdm_reply_str(r, p));
        }
        printf("unallocated %" PRIu64 "%s\n", unallocated,
               unallocated ? " (no positive share in the window)" : "");
    }
    sdm_reply_destroy(&r);
    return rc;
}

/* ---- outbox -------------------------------------------------------------------------- */

/* clang-format off */
static const char s_help_outbox[] =
    "usage: sediment outbox --data DIR [--rejected] [--requeue CODE | --requeue-all]\n"
    "\n"
    "Reads a worker's outbox (DIR/outbox.db: the receipts and proofs it signed, kept until\n"
    "the ledger has them) on this machine, without the worker: how many entries are\n"
    "pending, delivered and rejected.\n"
    "--rejected lists each rejected entry: its number, kind, size, the code and message it\n"
    "was refused with, and when.\n"
    "A rejected entry is never sent again by itself: the same bytes would get the same\n"
    "answer. Once its cause is fixed (the worker's key added to the ledger's --workers file,\n"
    "the ledger's --max-msg raised), --requeue CODE makes the entries rejected with CODE\n"
    "(--requeue-all: every one) pending again, and the worker sends them first at its next\n"
    "start. Requeueing needs the worker stopped: it takes the data dir's lock, as the worker\n"
    "does. With --json, one JSON object.\n";
/* clang-format on */

typedef struct outbox_list {
    int json, n;
} outbox_list;

static int outbox_row_cb(void *ctx, const sdm_outbox_rejected_row *row)
{
    outbox_list *l = ctx;
    time_t t = (time_t)(row->rejected_at / 1000000000u);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (l->json) {
        printf("%s{\"seq\": %" PRIu64 ", \"kind\": ", l->n ? ", " : "", row->seq);
        sdm_json_write_str(stdout, row->kind);
        printf(", \"bytes\": %zu, \"code\": ", row->len);
        sdm_json_write_str(stdout, row->code);
        printf(", \"message\": ");
        sdm_json_write_str(stdout, row->message);
        printf(", \"rejected_at\": ");
        sdm_json_write_str(stdout, when);
        printf("}");
    } else {
        printf("%-8" PRIu64 " %-8s %8zu B  %-14s %s  %s\n", row->seq, row->kind, row->len,
               row->code, when, row->message);
    }
    l->n++;
    return 0;
}

static int cmd_outbox(globals *g, int argc, char **argv)
{
    const char *data = NULL, *requeue = NULL;
    int rejected = 0, requeue_all = 0;
    const value_opt opts[] = {{"--data", &data}, {"--requeue", &requeue}};
    const flag_opt flags[] = {{"--rejected", &rejected}, {"--requeue-all", &requeue_all}};
    const command_spec spec = {.help = s_help_outbox, .opts = opts, .n_opts = COUNT(opts),
                               .flags = flags, .n_flags = COUNT(flags)};
    int rc;
    if (parse_command(g, argc, argv, &spec, &rc))
        return rc;
    if (!data)
        return usage_error("--data DIR is required (the worker's data dir)");
    if (requeue && requeue_all)
        return usage_error("give --requeue CODE or --requeue-all, not both");
    if (requeue && !*requeue)
        return usage_error("--requeue: empty code");
    char path[4200], err[512];
    snprintf(path, sizeof(path), "%s/outbox.db", data);
    if (access(path, F_OK) != 0)
        return local_error("%s: %s (a worker makes it when it runs with --ledger)", path,
                           strerror(errno));
    int lock_fd = -1;
    if (requeue || requeue_all) {
        /* the worker's own lock: requeueing changes rows a running worker may be sending */
        snprintf(path, sizeof(path), "%s/sediment.lock", data);
        lock_fd = open(path, O_RDWR | O_CLOEXEC);
        if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            close(lock_fd);
            return local_error("%s: a worker is running on it (%s is locked); stop it first",
                               data, path);
        }
    }
    sdm_outbox_t *ob = sdm_outbox_open(data, err, sizeof(err));
    if (!ob) {
        if (lock_fd >= 0)
            close(lock_fd);
        return local_error("%s", err);
    }
    int64_t requeued = -1;
    rc = 0;
    if (requeue || requeue_all) {
        requeued = sdm_outbox_requeue(ob, requeue_all ? NULL : requeue, err, sizeof(err));
        if (requeued < 0)
            rc = local_error("%s", err);
    }
    sdm_outbox_counts c;
    sdm_outbox_get_counts(ob, &c);
    if (rc == 0 && g->json) {
        printf("{\"outbox\": ");
        snprintf(path, sizeof(path), "%s/outbox.db", data);
        sdm_json_write_str(stdout, path);
        printf(", \"pending\": %" PRIu64 ", \"delivered\": %" PRIu64 ", \"rejected\": %" PRIu64,
               c.pending, c.delivered, c.rejected);
        if (requeued >= 0)
            printf(", \"requeued\": %" PRId64, requeued);
        if (rejected) {
            printf(", \"rejected_entries\": [");
            outbox_list l = {1, 0};
            if (sdm_outbox_rejected(ob, outbox_row_cb, &l, err, sizeof(err)) < 0)
                rc = local_error("%s", err);
            printf("]");
        }
        printf("}\n");
    } else if (rc == 0) {
        printf("outbox      %s/outbox.db\npending     %" PRIu64 "\ndelivered   %" PRIu64
               "\nrejected    %" PRIu64 "\n", data, c.pending, c.delivered, c.rejected);
        if (requeued >= 0)
            printf("requeued    %" PRId64 " (the worker sends them first at its next start)\n",
                   requeued);
        if (rejected && c.rejected) {
            printf("\n%-8s %-8s %10s  %-14s %-20s  %s\n", "seq", "kind", "size", "code",
                   "rejected at", "message");
            outbox_list l = {0, 0};
            if (sdm_outbox_rejected(ob, outbox_row_cb, &l, err, sizeof(err)) < 0)
                rc = local_error("%s", err);
        }
    }
    sdm_outbox_close(&ob);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

/* ---- eval ---------------------------------------------------------------------------- */

static const char s_help_eval[] =
    "usage: sediment eval [options]   (the options of sediment-eval; --help lists them)\n";

/* Runs `prog`, the program beside this one (eval and demo are programs of their own, so that
 * the other commands start without the engine and the CUDA libraries it loads), in this
 * process's place as "sediment CMD": the command's own options, and --json when given
 * globally. Returns only when it cannot be run. */
static int run_beside(globals *g, int argc, char **argv, const char *prog)
{
    char name[32], self[PATH_MAX], path[PATH_MAX + 64];
    snprintf(name, sizeof(name), "sediment %s", s_cmd);
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0) {
        fprintf(stderr, "%s: cannot find this program's directory (/proc/self/exe): %s\n", name,
                strerror(errno));
        return EXIT_SERVER;
    }
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof(path), "%s/%s", slash ? self : ".", prog);
    char **args = calloc((size_t)argc + 3, sizeof(*args));
    if (!args) {
        fprintf(stderr, "%s: out of memory\n", name);
        return EXIT_SERVER;
    }
    int n = 0, has_json = 0;
    args[n++] = name;
    for (int i = 0; i < argc; i++) {
        has_json |= strcmp(argv[i], "--json") == 0;
        args[n++] = argv[i];
    }
    if (g->json && !has_json)
        args[n++] = "--json";
    fflush(NULL);
    execv(path, args);
    fprintf(stderr, "%s: cannot run %s: %s (it is built with sediment: cmake --build BUILD "
            "--target %s)\n", name, path, strerror(errno), prog);
    free(args);
    return EXIT_SERVER;
}

/* The eval (sediment-eval): its own options, and --json when given globally. */
static int cmd_eval(globals *g, int argc, char **argv)
{
    return run_beside(g, argc, argv, "sediment-eval");
}

/* ---- demo ---------------------------------------------------------------------------- */

static const char s_help_demo[] =
    "usage: sediment demo [options]   (--help lists them)\n";

/* The demo (sediment-demo), with its own worker and ledger in its process: its own options,
 * and --json when given globally. */
static int cmd_demo(globals *g, int argc, char **argv)
{
    return run_beside(g, argc, argv, "sediment-demo");
}

/* ---- main ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(globals *g, int argc, char **argv);
    const char *help;
} s_commands[] = {
    {"info", cmd_info, s_help_info},
    {"register", cmd_register, s_help_register},
    {"contribute", cmd_contribute, s_help_contribute},
    {"attribute", cmd_attribute, s_help_attribute},
    {"stats", cmd_stats, s_help_stats},
    {"verify", cmd_verify, s_help_verify},
    {"keygen", cmd_keygen, s_help_keygen},
    {"outbox", cmd_outbox, s_help_outbox},
    {"ledger-info", cmd_ledger_info, s_help_ledger_info},
    {"ledger-key", cmd_ledger_key, s_help_ledger_key},
    {"checkpoint", cmd_checkpoint, s_help_checkpoint},
    {"prove", cmd_prove, s_help_prove},
    {"consistency", cmd_consistency, s_help_consistency},
    {"audit", cmd_audit, s_help_audit},
    {"append", cmd_append, s_help_append},
    {"mirror", cmd_mirror, s_help_mirror},
    {"history", cmd_history, s_help_history},
    {"rewards", cmd_rewards, s_help_rewards},
    {"eval", cmd_eval, s_help_eval},
    {"demo", cmd_demo, s_help_demo},
};

int main(int argc, char **argv)
{
    globals g;
    memset(&g, 0, sizeof(g));
    g.endpoint = getenv("SEDIMENT_ENDPOINT");
    if (!g.endpoint || !*g.endpoint)
        g.endpoint = DEFAULT_ENDPOINT;
    g.timeout_s = DEFAULT_TIMEOUT_S;
    int i = 1;
    for (; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(s_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("sediment %s\n", SDM_VERSION);
            return 0;
        }
        if (argv[i][0] != '-')
            break;
        int r = global_opt(&g, argc, argv, &i);
        if (r > 100)
            return r - 100;
        if (!r)
            return usage_error("unknown option '%s'", argv[i]);
    }
    if (i >= argc) {
        fputs(s_usage, stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i];
    if (strcmp(name, "help") == 0) {
        if (i + 1 >= argc) {
            fputs(s_usage, stdout);
            return 0;
        }
        for (size_t k = 0; k < sizeof(s_commands) / sizeof(s_commands[0]); k++)
            if (strcmp(argv[i + 1], s_commands[k].name) == 0) {
                fputs(s_commands[k].help, stdout);
                return 0;
            }
        return usage_error("no command '%s'", argv[i + 1]);
    }
    for (size_t k = 0; k < sizeof(s_commands) / sizeof(s_commands[0]); k++)
        if (strcmp(name, s_commands[k].name) == 0) {
            s_cmd = name;
            return s_commands[k].run(&g, argc - i - 1, argv + i + 1);
        }
    return usage_error("no command '%s'", name);
}
