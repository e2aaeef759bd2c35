/* worker.c - the worker service: socket loop, ingest and compute threads, ops (SPEC §6).
 *
 * Threads and what they own:
 * - the I/O thread (sdm_worker_run) owns the ROUTER socket: it pre-checks and decodes every
 *   frame, answers info and stats, and hands register/contribute to the ingest thread and
 *   attribute to the compute thread through inproc sockets, each with a bounded queue;
 * - the ingest thread validates, projects, makes a batch durable, grows the Merkle tree,
 *   signs the receipt, and then adds the features to the engine's store;
 * - the compute thread runs attributions and signs proofs;
 * - with --ledger, the forwarder thread (forwarder.c) owns a DEALER socket to the ledger and
 *   delivers the receipts and proofs that the other two put into the durable outbox (and
 *   then nudge it) before replying. Here the outbox is opened, put into and counted for
 *   `stats`; the link itself lives in forwarder.c.
 *
 * The engine's store is not safe to grow while it is read, so each model's store sits under
 * a read-write lock: an attribution holds it for reading for its whole run. A contribution
 * never waits for that: it checks the store under a read lock, is made durable and
 * acknowledged, and only then tries the write lock; when an attribution holds the store,
 * the batch waits in a pending list (and in a small shadow store used for conflict checks
 * of later batches), and is moved into the store before the next attribution or the next
 * contribution that finds the store free. Conflicts are between two batches at a time, so
 * checking a batch against the store and against the shadow store is exact.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>
#include <zmq.h>

#include "durable.h"
#include "forwarder.h"
#include "merkle.h"
#include "netsec.h"
#include "outbox.h"
#include "ratelog.h"
#include "sha256.h"
#include "sign.h"
#include "wire.h"

#define INGEST 0
#define COMPUTE 1

/* A batch acknowledged but not yet moved into the engine's store. */
typedef struct pending_batch {
    char *checkpoint;
    char *contributor;
    char *shard;
    double lr;
    int curvature;
    uint64_t n;
    uint64_t *ids;
    double *weights;
    float *features; /* n x k */
} pending_batch;

typedef struct wmodel {
    char *name;
    sdm_projection proj;
    pthread_rwlock_t rw;  /* guards store */
    sdm_store_t *store;   /* on the compute engine */
    /* under the worker's mu: */
    sdm_store_t *shadow;  /* the pending batches only, on the ingest engine */
    pending_batch *pend;
    size_t n_pend, cap_pend;
    sdm_merkle_t *tree;   /* every durable batch */
    uint64_t receipts_next; /* with --ledger: batches 0 .. this-1 have their receipts in the
                             * outbox (the ingest thread's; see queue_receipt) */
} wmodel;

typedef struct job {
    sdm_net_request net; /* routing frames and the payload */
    sdm_worker_request req;
    int target;
    msgpack_sbuffer reply;
} job;

struct sdm_worker {
    sdm_worker_opts opts;
    char *data_dir;
    char endpoint[256];
    void *ctx;
    void *front;
    void *to_thread[2]; /* PUSH, I/O side */
    void *replies;      /* PULL, I/O side */
    pthread_t threads[2];
    int threads_started;
    uint32_t outstanding[2]; /* I/O thread only */
    int stop_pipe[2];
    volatile sig_atomic_t stop_requested;

    sdm_zap_t *zap;     /* the allow-list handler when CURVE is on */

    /* with --ledger (docs/worker.md, "The ledger link") */
    sdm_outbox_t *outbox;        /* put by ingest and compute, settled by the forwarder */
    sdm_forwarder_t *forwarder;  /* delivers the outbox to the ledger (forwarder.c) */

    sdm_engine_t *eng;        /* compute thread */
    sdm_engine_t *ingest_eng; /* ingest thread */
    sdm_durable_t *durable;   /* ingest thread (and start-up) */
    sdm_keypair *kp;

    pthread_mutex_t mu; /* models array, trees, pending lists, shadow stores */
    sdm_ratelog ilog;   /* the internal errors' log lines (log_internal) */
    /* SDM_TEST_FAULT=receipt-put-fail:N[-M] or receipt-put-crash:N, for the tests only: the
     * Nth (to Mth) receipt this process tries to queue fails, or the process dies (_exit 137,
     * as a kill -9 would) just before the Nth, after its batch was stored */
    int fault_crash;
    uint64_t fault_at, fault_to, receipt_puts;
    wmodel **models;
    size_t n_models, cap_models;

    _Atomic uint64_t requests, ops[5], errors[SDM_WIRE_CODES];
    _Atomic uint64_t batches, examples, bytes, compute_ns;
    struct timespec started;
};


static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void logf_(const sdm_worker_t *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void logf_(const sdm_worker_t *w, const char *fmt, ...)
{
    if (w->opts.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("sediment-worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- models -------------------------------------------------------------------------- */

static wmodel *find_model(sdm_worker_t *w, const char *name)
{
    wmodel *found = NULL;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_models && !found; i++)
        if (strcmp(w->models[i]->name, name) == 0)
            found = w->models[i];
    pthread_mutex_unlock(&w->mu);
    return found;
}

static void pending_free(pending_batch *p)
{
    free(p->checkpoint);
    free(p->contributor);
    free(p->shard);
    free(p->ids);
    free(p->weights);
    free(p->features);
    memset(p, 0, sizeof(*p));
}

static void model_destroy(wmodel **mp)
{
    wmodel *m = *mp;
    if (!m)
        return;
    sdm_store_destroy(&m->store);
    sdm_store_destroy(&m->shadow);
    for (size_t i = 0; i < m->n_pend; i++)
        pending_free(&m->pend[i]);
    free(m->pend);
    sdm_merkle_destroy(&m->tree);
    pthread_rwlock_destroy(&m->rw);
    free(m->name);
    free(m);
    *mp = NULL;
}

/* A new in-memory model with empty stores and tree (not yet listed). */
static wmodel *model_new(sdm_worker_t *w, const char *name, const sdm_projection *proj)
{
    wmodel *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_rwlock_init(&m->rw, NULL);
    m->name = strdup(name);
    m->proj = *proj;
    m->store = sdm_store_new(w->eng, proj);
    m->shadow = sdm_store_new(w->ingest_eng, proj);
    m->tree = sdm_merkle_new();
    if (!m->name || !m->store || !m->shadow || !m->tree)
        model_destroy(&m);
    return m;
}

static int model_list(sdm_worker_t *w, wmodel *m)
{
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (w->n_models == w->cap_models) {
        size_t cap = w->cap_models ? 2 * w->cap_models : 8;
        wmodel **p = realloc(w->models, cap * sizeof(*p));
        if (p) {
            w->models = p;
            w->cap_models = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0)
        w->models[w->n_models++] = m;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int same_projection(const sdm_projection *a, const sdm_projection *b)
{
    uint32_t sa = a->kind == SDM_PROJ_SJLT ? (a->s ? a->s : 1) : 0;
    uint32_t sb = b->kind == SDM_PROJ_SJLT ? (b->s ? b->s : 1) : 0;
    return a->kind == b->kind && a->input_dim == b->input_dim && a->dim == b->dim &&
           a->seed == b->seed && sa == sb;
}

/* Moves the pending batches into the store, in order. Caller holds m->rw for writing and
 * w->mu. On failure (out of memory) the rest stay pending and the next flush retries. */
static sdm_status flush_pending(sdm_worker_t *w, wmodel *m)
{
    if (m->n_pend == 0)
        return SDM_OK;
    size_t done = 0;
    sdm_status st = SDM_OK;
    for (; done < m->n_pend; done++) {
        pending_batch *p = &m->pend[done];
        sdm_batch b = {
            .checkpoint = p->checkpoint, .lr = p->lr, .contributor = p->contributor,
            .shard = p->shard, .curvature = p->curvature, .ids = p->ids,
            .rows = {SDM_F32, p->n, m->proj.dim, p->features}, .is_features = 1,
            .weights = p->weights};
        uint64_t no;
        st = sdm_store_append(m->store, &b, &no, NULL);
        if (st != SDM_OK) {
            logf_(w, "model %s: moving a pending batch into the store: %s", m->name,
                  sdm_engine_last_error(w->eng));
            break;
        }
        pending_free(p);
    }
    memmove(m->pend, m->pend + done, (m->n_pend - done) * sizeof(*m->pend));
    m->n_pend -= done;
    if (m->n_pend == 0) {
        sdm_store_t *fresh = sdm_store_new(w->ingest_eng, &m->proj);
        if (fresh) {
            sdm_store_destroy(&m->shadow);
            m->shadow = fresh;
        }
    }
    return st;
}

/* ---- replies ------------------------------------------------------------------------- */

/* An internal error is the worker's fault or its machine's (a disk full or failing, memory
 * short), not the client's: the operator must see it, not only the client. Through the
 * ratelog, so that a client retrying against a full disk does not flood the log. */
static void log_internal(sdm_worker_t *w, sdm_worker_op op, const char *message)
{
    if (w->opts.quiet)
        return;
    char line[384];
    snprintf(line, sizeof(line), "%s: %s", sdm_wire_op_name(op), message);
    sdm_ratelog_log(&w->ilog, stderr, "sediment-worker", "internal error answered", line);
}

/* Every error reply goes through here: it packs the stable code and the message and counts
 * it. The message names the field; it never holds more than the request gave. */
static void reply_error(sdm_worker_t *w, job *j, sdm_wire_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void reply_error(sdm_worker_t *w, job *j, sdm_wire_code code, const char *fmt, ...)
{
    sdm_wire_error e = {code, ""};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    /* keep the message printable: it may quote bytes from the request */
    for (char *c = e.message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    atomic_fetch_add(&w->errors[code], 1);
    if (code == SDM_WIRE_INTERNAL)
        log_internal(w, j->req.op, e.message);
    msgpack_sbuffer_clear(&j->reply);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_error(&pk, j->req.id, j->req.id_len, &e);
}

static void reply_status(sdm_worker_t *w, job *j, sdm_status st, const char *msg)
{
    reply_error(w, j, sdm_wire_code_of_status(st), "%s", msg && *msg ? msg : sdm_status_str(st));
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    sdm_wire_pack_str(pk, key);
}

static void pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

static void pack_projection(msgpack_packer *pk, const sdm_projection *p)
{
    int sjlt = p->kind == SDM_PROJ_SJLT;
    msgpack_pack_map(pk, sjlt ? 4 : 3);
    pack_key(pk, "kind");
    sdm_wire_pack_str(pk, sdm_proj_kind_name(p->kind));
    pack_key(pk, "dim");
    msgpack_pack_uint32(pk, p->dim);
    pack_key(pk, "seed");
    msgpack_pack_uint64(pk, p->seed);
    if (sjlt) {
        pack_key(pk, "s");
        msgpack_pack_uint32(pk, p->s ? p->s : 1);
    }
}

static void do_info(sdm_worker_t *w, job *j)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_ok(&pk, j->req.id, j->req.id_len, 5);
    pack_key(&pk, "version");
    sdm_wire_pack_str(&pk, SDM_VERSION);
    pack_key(&pk, "backend");
    sdm_wire_pack_str(&pk, sdm_engine_backend(w->eng));
    pack_key(&pk, "device");
    sdm_wire_pack_str(&pk, sdm_engine_device(w->eng));
    pack_key(&pk, "worker_key");
    pack_bin(&pk, w->kp->pk, SDM_PK_LEN);
    pack_key(&pk, "models");
    pthread_mutex_lock(&w->mu);
    msgpack_pack_array(&pk, w->n_models);
    for (size_t i = 0; i < w->n_models; i++) {
        wmodel *m = w->models[i];
        uint64_t size = sdm_merkle_size(m->tree);
        uint8_t root[SDM_HASH_LEN];
        sdm_merkle_root(m->tree, size, root);
        msgpack_pack_map(&pk, 5);
        pack_key(&pk, "model");
        sdm_wire_pack_str(&pk, m->name);
        pack_key(&pk, "input_dim");
        msgpack_pack_uint64(&pk, m->proj.input_dim);
        pack_key(&pk, "projection");
        pack_projection(&pk, &m->proj);
        pack_key(&pk, "store_size");
        msgpack_pack_uint64(&pk, size);
        pack_key(&pk, "store_root");
        pack_bin(&pk, root, SDM_HASH_LEN);
    }
    pthread_mutex_unlock(&w->mu);
}

static void do_stats(sdm_worker_t *w, job *j)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_ok(&pk, j->req.id, j->req.id_len, w->outbox ? 9 : 8);
    pack_key(&pk, "requests");
    msgpack_pack_uint64(&pk, atomic_load(&w->requests));
    pack_key(&pk, "ops");
    msgpack_pack_map(&pk, 5);
    for (int i = 0; i < 5; i++) {
        pack_key(&pk, sdm_wire_op_name((sdm_worker_op)i));
        msgpack_pack_uint64(&pk, atomic_load(&w->ops[i]));
    }
    pack_key(&pk, "errors");
    msgpack_pack_map(&pk, SDM_WIRE_CODES - 1);
    for (int c = 1; c < SDM_WIRE_CODES; c++) {
        pack_key(&pk, sdm_wire_code_name((sdm_wire_code)c));
        msgpack_pack_uint64(&pk, atomic_load(&w->errors[c]));
    }
    pack_key(&pk, "batches");
    msgpack_pack_uint64(&pk, atomic_load(&w->batches));
    pack_key(&pk, "examples");
    msgpack_pack_uint64(&pk, atomic_load(&w->examples));
    pack_key(&pk, "bytes");
    msgpack_pack_uint64(&pk, atomic_load(&w->bytes));
    pack_key(&pk, "compute_seconds");
    msgpack_pack_double(&pk, (double)atomic_load(&w->compute_ns) * 1e-9);
    pack_key(&pk, "uptime_seconds");
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    msgpack_pack_double(&pk, (double)(now.tv_sec - w->started.tv_sec) +
                                 (double)(now.tv_nsec - w->started.tv_nsec) * 1e-9);
    if (w->outbox) {
        sdm_outbox_counts c;
        sdm_outbox_get_counts(w->outbox, &c);
        pack_key(&pk, "ledger");
        msgpack_pack_map(&pk, 5);
        pack_key(&pk, "endpoint");
        sdm_wire_pack_str(&pk, w->opts.ledger);
        pack_key(&pk, "pending");
        msgpack_pack_uint64(&pk, c.pending);
        pack_key(&pk, "delivered");
        msgpack_pack_uint64(&pk, c.delivered);
        pack_key(&pk, "rejected");
        msgpack_pack_uint64(&pk, c.rejected);
        pack_key(&pk, "held");
        msgpack_pack_uint64(&pk, sdm_forwarder_held(w->forwarder));
    }
}

/* ---- the ledger's outbox ------------------------------------------------------------- */

/* With --ledger, puts a signed envelope into the durable outbox (returning once it is on
 * disk) and wakes the forwarder; without, does nothing. 0, or -1 with err set. Called by the
 * ingest and compute threads before they reply, so whatever a client was given reaches the
 * ledger even if the worker dies right after. */
static int queue_for_ledger(sdm_worker_t *w, const char *kind, const uint8_t *env, size_t len,
                            char *err, size_t err_len)
{
    if (!w->outbox)
        return 0;
    if (sdm_outbox_put(w->outbox, kind, env, len, NULL, err, err_len) != 0)
        return -1;
    sdm_forwarder_nudge(w->forwarder);
    return 0;
}

/* Signs rc as this worker's receipt (sets rc->worker): its envelope in *env (the caller
 * frees it). 0, or -1 when out of memory. */
static int sign_receipt(const sdm_worker_t *w, sdm_receipt *rc, uint8_t **env, size_t *env_len)
{
    uint8_t *body = NULL;
    size_t body_len = 0;
    memcpy(rc->worker, w->kp->pk, SDM_PK_LEN);
    int st = sdm_receipt_encode(rc, &body, &body_len);
    if (st == 0)
        st = sdm_envelope_sign(w->kp, body, body_len, env, env_len);
    free(body);
    return st != 0 ? -1 : 0;
}

/* Queues the receipts of batches first .. first+n-1 of m in one transaction and raises
 * m->receipts_next past them: 0, or -1 with err set. Ingest thread (or the start, before the
 * threads run). */
static int queue_receipts(sdm_worker_t *w, wmodel *m, uint64_t first, const uint8_t *const *envs,
                          const size_t *lens, size_t n, char *err, size_t err_len)
{
    if (w->fault_at && ++w->receipt_puts >= w->fault_at && w->receipt_puts <= w->fault_to) {
        if (w->fault_crash)
            _exit(137);
        snprintf(err, err_len, "outbox.db: injected failure (SDM_TEST_FAULT)");
        return -1;
    }
    if (sdm_outbox_put_receipts(w->outbox, m->name, first, envs, lens, n, NULL, err,
                                err_len) != 0)
        return -1;
    if (first + n > m->receipts_next)
        m->receipts_next = first + n;
    sdm_forwarder_nudge(w->forwarder);
    return 0;
}

static int queue_receipt(sdm_worker_t *w, wmodel *m, uint64_t batch, const uint8_t *env,
                         size_t len, char *err, size_t err_len)
{
    return queue_receipts(w, m, batch, &env, &len, 1, err, err_len);
}

typedef struct resign_ctx {
    sdm_worker_t *w;
    wmodel *m;
    uint8_t *env;
    size_t env_len;
    char *err;
    size_t err_len;
} resign_ctx;

/* Signs the receipt of a recorded batch again, from its row: the same fields, the same
 * issued_at and the store's size and root right after it, so the same bytes as the receipt
 * made when it was stored (Ed25519 signatures are deterministic). */
static int resign_cb(void *ctx, const sdm_durable_batch *b)
{
    resign_ctx *c = ctx;
    sdm_receipt rc = {.leaf_fields = b->leaf_fields, .issued_at = b->issued_at,
                      .batch = b->batch, .store_size = b->batch + 1};
    rc.leaf_fields.model = c->m->name;
    memcpy(rc.leaf, b->leaf, SDM_HASH_LEN);
    uint8_t leaf[SDM_HASH_LEN];
    pthread_mutex_lock(&c->w->mu);
    int tree_ok = sdm_merkle_size(c->m->tree) > b->batch &&
                  sdm_merkle_root(c->m->tree, rc.store_size, rc.store_root) == 0;
    pthread_mutex_unlock(&c->w->mu);
    if (!tree_ok || sdm_leaf_hash(&rc.leaf_fields, leaf) != 0 ||
        memcmp(leaf, b->leaf, SDM_HASH_LEN) != 0) {
        snprintf(c->err, c->err_len, "batch %llu: its row does not give back its leaf",
                 (unsigned long long)b->batch);
        return -1;
    }
    if (sign_receipt(c->w, &rc, &c->env, &c->env_len) != 0) {
        snprintf(c->err, c->err_len, "batch %llu: signing its receipt: out of memory",
                 (unsigned long long)b->batch);
        return -1;
    }
    return 0;
}

#define OWED_CHUNK 256 /* receipts signed again and queued per transaction */

/* Queues the receipts m owes the ledger: those of the batches stored while their receipts
 * could not be queued (a failed write, or a run without --ledger after the model was
 * tracked), or before a crash between the two writes; OWED_CHUNK per transaction. 0 when
 * none is owed any more, or -1 with err set. */
static int queue_owed_receipts(sdm_worker_t *w, wmodel *m, char *err, size_t err_len)
{
    uint64_t stored = sdm_durable_batches(w->durable, m->name), from = m->receipts_next;
    uint8_t *envs[OWED_CHUNK];
    size_t lens[OWED_CHUNK];
    while (m->receipts_next < stored) {
        uint64_t first = m->receipts_next;
        size_t n = 0;
        int ret = 0;
        char why[256] = "";
        while (n < OWED_CHUNK && first + n < stored) {
            resign_ctx c = {w, m, NULL, 0, why, sizeof(why)};
            if (sdm_durable_batch_meta(w->durable, m->name, first + n, resign_cb, &c, why,
                                       sizeof(why)) != 0) {
                snprintf(err, err_len, "the receipt of batch %llu, stored earlier, cannot be "
                         "signed again: %s", (unsigned long long)(first + n), why);
                free(c.env);
                ret = -1;
                break;
            }
            envs[n] = c.env;
            lens[n++] = c.env_len;
        }
        if (ret == 0 && queue_receipts(w, m, first, (const uint8_t *const *)envs, lens, n, why,
                                       sizeof(why)) != 0) {
            snprintf(err, err_len, "the receipt of batch %llu, stored earlier, could not be "
                     "queued for the ledger: %s", (unsigned long long)first, why);
            ret = -1;
        }
        for (size_t i = 0; i < n; i++)
            free(envs[i]);
        if (ret != 0)
            break;
    }
    if (m->receipts_next - from == 1)
        logf_(w, "model %s batch %llu: its receipt is queued for the ledger now (the batch was "
              "stored, but its receipt was not queued then)", m->name,
              (unsigned long long)from);
    else if (m->receipts_next > from)
        logf_(w, "model %s batches %llu to %llu: their receipts are queued for the ledger now "
              "(the batches were stored, but their receipts were not queued then)", m->name,
              (unsigned long long)from, (unsigned long long)(m->receipts_next - 1));
    return m->receipts_next < stored ? -1 : 0;
}

/* At the start, with --ledger: each model's mark from the outbox (a model it does not track
 * yet is tracked from its present size: receipts of batches stored without --ledger are not
 * sent), then the receipts owed. A failure is logged; the next contribute tries again. */
static int settle_receipts_at_start(sdm_worker_t *w, char *err, size_t err_len)
{
    for (size_t i = 0; i < w->n_models; i++) {
        wmodel *m = w->models[i];
        uint64_t stored = sdm_durable_batches(w->durable, m->name), next = 0;
        int r = sdm_outbox_receipts_next(w->outbox, m->name, &next, err, err_len);
        if (r < 0)
            return -1;
        if (r == 0 && sdm_outbox_track(w->outbox, m->name, stored, err, err_len) != 0)
            return -1;
        m->receipts_next = r == 0 || next > stored ? stored : next;
        char why[512];
        if (queue_owed_receipts(w, m, why, sizeof(why)) != 0)
            logf_(w, "model %s: %s; the next contribute tries again", m->name, why);
    }
    return 0;
}

/* ---- register ------------------------------------------------------------------------ */

static void do_register(sdm_worker_t *w, job *j)
{
    const sdm_worker_request *r = &j->req;
    wmodel *m = find_model(w, r->model);
    int created = 0;
    if (m) {
        if (!same_projection(&m->proj, &r->projection)) {
            reply_error(w, j, SDM_WIRE_CONFLICT,
                        "projection: model %s is registered with a different definition",
                        r->model);
            return;
        }
    } else {
        char err[256];
        m = model_new(w, r->model, &r->projection);
        if (!m) {
            reply_error(w, j, SDM_WIRE_INTERNAL, "model %s: out of memory", r->model);
            return;
        }
        if (sdm_durable_put_model(w->durable, r->model, &r->projection, err, sizeof(err)) != 0) {
            model_destroy(&m);
            reply_error(w, j, SDM_WIRE_INTERNAL, "model %s: %s", r->model, err);
            return;
        }
        if (model_list(w, m) != 0) {
            model_destroy(&m);
            reply_error(w, j, SDM_WIRE_INTERNAL, "model %s: out of memory", r->model);
            return;
        }
        created = 1;
        if (w->outbox && sdm_outbox_track(w->outbox, r->model, 0, err, sizeof(err)) != 0)
            logf_(w, "model %s: %s (its first receipt tracks it instead)", r->model, err);
        logf_(w, "registered model %s (%s, d=%llu, k=%u)", r->model,
              sdm_proj_kind_name(r->projection.kind),
              (unsigned long long)r->projection.input_dim, r->projection.dim);
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_ok(&pk, r->id, r->id_len, 2);
    pack_key(&pk, "model");
    sdm_wire_pack_str(&pk, r->model);
    pack_key(&pk, "created");
    if (created)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
}

/* ---- contribute ---------------------------------------------------------------------- */

/* A matrix whose data is aligned for its dtype: the frame's bytes when they are, else a
 * copy in *copy (the caller frees). */
static int aligned_matrix(const sdm_matrix *in, sdm_matrix *out, void **copy)
{
    *out = *in;
    *copy = NULL;
    size_t size = sdm_dtype_size(in->dtype);
    if (!in->data || ((uintptr_t)in->data % size) == 0)
        return 0;
    size_t bytes = (size_t)(in->rows * in->cols) * size;
    *copy = malloc(bytes ? bytes : 1);
    if (!*copy)
        return -1;
    memcpy(*copy, in->data, bytes);
    out->data = *copy;
    return 0;
}

/* Adds an acknowledged batch to the engine store, or to the pending list when an
 * attribution holds the store. Takes ownership of features. */
static void add_to_store(sdm_worker_t *w, wmodel *m, const sdm_batch *b, float *features)
{
    sdm_batch fb = *b;
    fb.rows = (sdm_matrix){SDM_F32, b->rows.rows, m->proj.dim, features};
    fb.is_features = 1;
    uint64_t no;
    if (pthread_rwlock_trywrlock(&m->rw) == 0) {
        pthread_mutex_lock(&w->mu);
        sdm_status st = flush_pending(w, m);
        if (st == SDM_OK)
            st = sdm_store_append(m->store, &fb, &no, NULL);
        pthread_mutex_unlock(&w->mu);
        pthread_rwlock_unlock(&m->rw);
        if (st == SDM_OK) {
            free(features);
            return;
        }
    }
    /* the store is busy (or could not take it now): keep it pending */
    pthread_mutex_lock(&w->mu);
    int ok = 0;
    if (m->n_pend == m->cap_pend) {
        size_t cap = m->cap_pend ? 2 * m->cap_pend : 16;
        pending_batch *p = realloc(m->pend, cap * sizeof(*p));
        if (p) {
            m->pend = p;
            m->cap_pend = cap;
        }
    }
    if (m->n_pend < m->cap_pend) {
        pending_batch *p = &m->pend[m->n_pend];
        uint64_t n = b->rows.rows;
        *p = (pending_batch){.checkpoint = dupstr(b->checkpoint),
                             .contributor = dupstr(b->contributor),
                             .shard = dupstr(b->shard), .lr = b->lr,
                             .curvature = b->curvature, .n = n, .features = features};
        ok = p->checkpoint && (b->curvature || (p->contributor && p->shard));
        if (ok && b->ids) {
            p->ids = malloc(n * sizeof(uint64_t) + 1);
            ok = p->ids != NULL;
            if (ok)
                memcpy(p->ids, b->ids, n * sizeof(uint64_t));
        }
        if (ok && b->weights) {
            p->weights = malloc(n * sizeof(double) + 1);
            ok = p->weights != NULL;
            if (ok)
                memcpy(p->weights, b->weights, n * sizeof(double));
        }
        if (ok)
            ok = sdm_store_append(m->shadow, &fb, &no, NULL) == SDM_OK;
        if (ok)
            m->n_pend++;
        else
            pending_free(p); /* frees features too */
    } else {
        free(features);
    }
    pthread_mutex_unlock(&w->mu);
    if (!ok)
        /* The batch is durable and acknowledged; only memory ran out. A restart reloads it. */
        logf_(w, "model %s: out of memory keeping an acknowledged batch in memory; "
                 "restart the worker to reload it from disk", m->name);
}

static void do_contribute(sdm_worker_t *w, job *j)
{
    const sdm_worker_request *r = &j->req;
    wmodel *m = find_model(w, r->model);
    if (!m) {
        reply_error(w, j, SDM_WIRE_NOT_FOUND, "model: no model named %s", r->model);
        return;
    }
    /* every stored batch's receipt goes to the ledger before another batch is taken */
    char owed[512];
    if (w->outbox && queue_owed_receipts(w, m, owed, sizeof(owed)) != 0) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "receipt: %s; no batch of model %s is taken until "
                    "it is", owed, m->name);
        return;
    }
    void *copy = NULL;
    sdm_batch b = {.checkpoint = r->checkpoint, .lr = r->lr,
                   .contributor = r->curvature ? "" : r->contributor,
                   .shard = r->curvature ? "" : r->shard, .curvature = r->curvature,
                   .ids = r->example_ids, .is_features = r->is_features,
                   .weights = r->weights};
    if (aligned_matrix(&r->rows, &b.rows, &copy) != 0) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "%s: out of memory", r->is_features ? "features" : "grads");
        return;
    }
    /* 1. every check, against the store and the pending batches, before anything changes */
    pthread_rwlock_rdlock(&m->rw);
    pthread_mutex_lock(&w->mu);
    sdm_status st = sdm_store_check(m->store, &b);
    const char *msg = sdm_engine_last_error(w->eng);
    if (st == SDM_OK) {
        st = sdm_store_check(m->shadow, &b);
        msg = sdm_engine_last_error(w->ingest_eng);
    }
    char msgbuf[256];
    snprintf(msgbuf, sizeof(msgbuf), "%s", msg);
    pthread_mutex_unlock(&w->mu);
    pthread_rwlock_unlock(&m->rw);
    if (st != SDM_OK) {
        free(copy);
        reply_status(w, j, st, msgbuf);
        return;
    }
    /* 2. project (features arrive as they are; f16/bf16 become f32) */
    uint64_t n = b.rows.rows;
    uint32_t k = m->proj.dim;
    float *features = malloc((size_t)n * k * sizeof(float) + 1);
    if (!features) {
        free(copy);
        reply_error(w, j, SDM_WIRE_INTERNAL, "features: out of memory for %llu x %u",
                    (unsigned long long)n, k);
        return;
    }
    sdm_projection as_is = {SDM_PROJ_NONE, k, k, 0, 0};
    int project = !(b.is_features || m->proj.kind == SDM_PROJ_NONE);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    st = sdm_project(w->ingest_eng, project ? &m->proj : &as_is, &b.rows, features);
    if (project)
        atomic_fetch_add(&w->compute_ns, now_ns(CLOCK_MONOTONIC) - t0);
    free(copy);
    b.rows.data = NULL; /* the frame's copy is gone; from here on features stand for it */
    if (st != SDM_OK) {
        free(features);
        reply_status(w, j, st, sdm_engine_last_error(w->ingest_eng));
        return;
    }
    /* 3. the leaf, then durable, then the tree */
    sdm_leaf_fields lf = {.model = m->name, .checkpoint = b.checkpoint, .lr = b.lr,
                          .contributor = b.contributor, .shard = b.shard, .n = n,
                          .curvature = b.curvature};
    sdm_digest_ids(b.ids, b.ids ? n : 0, lf.ids_digest);
    sdm_digest_bytes(r->data_bytes, r->n_data_bytes, lf.data_digest);
    sdm_digest_weights(b.weights, b.weights ? n : 0, lf.weights_digest);
    sdm_receipt rc = {.leaf_fields = lf, .issued_at = now_ns(CLOCK_REALTIME)};
    if (sdm_leaf_hash(&lf, rc.leaf) != 0) {
        free(features);
        reply_error(w, j, SDM_WIRE_INTERNAL, "leaf: out of memory");
        return;
    }
    pthread_mutex_lock(&w->mu);
    rc.batch = sdm_merkle_size(m->tree); /* only this thread appends */
    pthread_mutex_unlock(&w->mu);
    sdm_durable_batch db = {.model = m->name, .batch = rc.batch, .leaf_fields = lf,
                            .issued_at = rc.issued_at, .k = k, .features = features,
                            .ids = b.ids, .weights = b.weights};
    memcpy(db.leaf, rc.leaf, SDM_HASH_LEN);
    char err[256];
    if (sdm_durable_append(w->durable, &db, err, sizeof(err)) != 0) {
        free(features);
        reply_error(w, j, SDM_WIRE_INTERNAL, "store: %s", err);
        return;
    }
    pthread_mutex_lock(&w->mu);
    int tree_rc = sdm_merkle_append(m->tree, rc.leaf);
    rc.store_size = sdm_merkle_size(m->tree);
    sdm_merkle_root(m->tree, rc.store_size, rc.store_root);
    pthread_mutex_unlock(&w->mu);
    if (tree_rc != 0) {
        /* durable but not in the tree: a restart rebuilds the tree from disk */
        free(features);
        logf_(w, "model %s: out of memory growing the tree; restart to reload", m->name);
        reply_error(w, j, SDM_WIRE_INTERNAL, "store: out of memory after the batch was stored");
        return;
    }
    atomic_fetch_add(&w->batches, 1);
    atomic_fetch_add(&w->examples, n);
    atomic_fetch_add(&w->bytes, r->n_data_bytes);
    /* 4. the receipt */
    uint8_t *env = NULL;
    size_t env_len = 0;
    char qerr[256];
    if (sign_receipt(w, &rc, &env, &env_len) != 0) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "receipt: out of memory (batch %llu is stored)",
                    (unsigned long long)rc.batch);
    } else if (w->outbox &&
               queue_receipt(w, m, rc.batch, env, env_len, qerr, sizeof(qerr)) != 0) {
        /* owed: queued before the model's next batch is taken, or at the next start */
        reply_error(w, j, SDM_WIRE_INTERNAL, "receipt: batch %llu is stored, but its receipt "
                    "could not be queued for the ledger: %s (it will be, before the next batch "
                    "of this model)", (unsigned long long)rc.batch, qerr);
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
        sdm_wire_reply_ok(&pk, r->id, r->id_len, 5);
        pack_key(&pk, "batch");
        msgpack_pack_uint64(&pk, rc.batch);
        pack_key(&pk, "leaf");
        pack_bin(&pk, rc.leaf, SDM_HASH_LEN);
        pack_key(&pk, "store_size");
        msgpack_pack_uint64(&pk, rc.store_size);
        pack_key(&pk, "store_root");
        pack_bin(&pk, rc.store_root, SDM_HASH_LEN);
        pack_key(&pk, "receipt");
        sdm_wire_pack_raw(&pk, env, env_len);
    }
    free(env);
    /* 5. into memory (features change hands) */
    add_to_store(w, m, &b, features);
}

/* ---- attribute ----------------------------------------------------------------------- */

static void do_attribute(sdm_worker_t *w, job *j)
{
    const sdm_worker_request *r = &j->req;
    wmodel *m = find_model(w, r->model);
    if (!m) {
        reply_error(w, j, SDM_WIRE_NOT_FOUND, "model: no model named %s", r->model);
        return;
    }
    size_t nq = r->n_queries;
    sdm_query *qs = calloc(nq, sizeof(*qs));
    void **copies = calloc(nq, sizeof(*copies));
    double *lrs = calloc(nq, sizeof(double));
    const char **names = calloc(nq, sizeof(char *));
    sdm_attr_result *res = NULL;
    uint8_t *body = NULL, *env = NULL;
    size_t body_len = 0, env_len = 0;
    if (!qs || !copies || !lrs || !names) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "queries: out of memory");
        goto done;
    }
    sdm_sha256_ctx qd;
    sdm_sha256_init(&qd);
    for (size_t i = 0; i < nq; i++) {
        const sdm_wire_query *q = &r->queries[i];
        names[i] = q->checkpoint;
        qs[i].checkpoint = q->checkpoint;
        qs[i].is_features = r->queries_are_features;
        qs[i].lambda = q->lambda;
        if (aligned_matrix(&q->rows, &qs[i].rows, &copies[i]) != 0) {
            reply_error(w, j, SDM_WIRE_INTERNAL, "queries: out of memory");
            goto done;
        }
        sdm_sha256_update(&qd, q->bytes, q->n_bytes);
    }
    sdm_proof proof = {.issued_at = 0, .model = m->name, .projection = &m->proj,
                       .method = r->method, .aggregate = r->aggregate, .n_checkpoints = nq,
                       .checkpoints = names, .lrs = lrs,
                       .request_id = r->request_id ? r->request_id : "",
                       .query_ids = r->query_ids, .query_id_lens = r->query_id_lens};
    memcpy(proof.worker, w->kp->pk, SDM_PK_LEN);
    sdm_sha256_final(&qd, proof.query_digest);

    /* the store as it stands now: every acknowledged batch */
    pthread_rwlock_wrlock(&m->rw);
    pthread_mutex_lock(&w->mu);
    flush_pending(w, m);
    uint64_t size = sdm_store_batches(m->store);
    sdm_merkle_root(m->tree, size, proof.store_root);
    pthread_mutex_unlock(&w->mu);
    pthread_rwlock_unlock(&m->rw);
    proof.store_size = size;

    pthread_rwlock_rdlock(&m->rw);
    sdm_status st = SDM_OK;
    char msgbuf[256] = "";
    for (size_t i = 0; i < nq && st == SDM_OK; i++)
        if (sdm_store_checkpoint_lr(m->store, names[i], &lrs[i]) != SDM_OK) {
            st = SDM_ERR_NOT_FOUND;
            snprintf(msgbuf, sizeof(msgbuf), "%s.%s: model %s has no checkpoint named %s",
                     r->queries_are_features ? "query_features" : "queries", names[i],
                     m->name, names[i]);
        }
    if (st == SDM_OK) {
        sdm_attr_request areq = {r->method, r->aggregate, r->topk, nq, qs, size};
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        st = sdm_attribute(w->eng, m->store, &areq, &res);
        atomic_fetch_add(&w->compute_ns, now_ns(CLOCK_MONOTONIC) - t0);
        if (st != SDM_OK)
            snprintf(msgbuf, sizeof(msgbuf), "%s", sdm_engine_last_error(w->eng));
    }
    pthread_rwlock_unlock(&m->rw);
    if (st != SDM_OK) {
        reply_status(w, j, st, msgbuf);
        goto done;
    }
    proof.result = res;
    proof.lambdas = res->lambdas;
    proof.issued_at = now_ns(CLOCK_REALTIME);
    /* the proof holds the store's names: encode while nothing can free them (never: the
     * store only grows), then sign */
    if (sdm_proof_encode(&proof, &body, &body_len) != 0 ||
        sdm_envelope_sign(w->kp, body, body_len, &env, &env_len) != 0) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "proof: out of memory");
        goto done;
    }
    char qerr[256];
    if (queue_for_ledger(w, "proof", env, env_len, qerr, sizeof(qerr)) != 0) {
        logf_(w, "model %s: %s", m->name, qerr);
        reply_error(w, j, SDM_WIRE_INTERNAL, "proof: could not be queued for the ledger: %s",
                    qerr);
        goto done;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_ok(&pk, r->id, r->id_len, 2);
    pack_key(&pk, "proof");
    sdm_wire_pack_raw(&pk, env, env_len);
    pack_key(&pk, "result");
    sdm_proof_pack_queries(&pk, &proof);
done:
    if (copies)
        for (size_t i = 0; i < nq; i++)
            free(copies[i]);
    free(copies);
    free(qs);
    free(lrs);
    free(names);
    free(body);
    free(env);
    sdm_attr_result_free(&res);
}

/* ---- threads ------------------------------------------------------------------------- */

typedef struct thread_arg {
    sdm_worker_t *w;
    int which;
} thread_arg;

static const char *const thread_ep[2] = {"inproc://sdm-ingest", "inproc://sdm-compute"};
#define REPLY_EP "inproc://sdm-replies"

static int send_ptr(void *sock, void *p)
{
    return zmq_send(sock, &p, sizeof(p), 0) == (int)sizeof(p) ? 0 : -1;
}

static void *recv_ptr(void *sock, int *ok)
{
    void *p = NULL;
    *ok = zmq_recv(sock, &p, sizeof(p), 0) == (int)sizeof(p);
    return p;
}

static void *thread_main(void *arg)
{
    thread_arg *ta = arg;
    sdm_worker_t *w = ta->w;
    int which = ta->which;
    free(ta);
    void *in = zmq_socket(w->ctx, ZMQ_PULL);
    void *out = zmq_socket(w->ctx, ZMQ_PUSH);
    if (!in || !out || zmq_connect(in, thread_ep[which]) != 0 || zmq_connect(out, REPLY_EP) != 0) {
        logf_(w, "thread %d: inproc sockets: %s", which, zmq_strerror(zmq_errno()));
        goto out;
    }
    for (;;) {
        int ok;
        job *j = recv_ptr(in, &ok);
        if (!ok) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (!j)
            break; /* told to stop */
        if (j->req.op == SDM_OP_REGISTER)
            do_register(w, j);
        else if (j->req.op == SDM_OP_CONTRIBUTE)
            do_contribute(w, j);
        else
            do_attribute(w, j);
        while (send_ptr(out, j) != 0 && zmq_errno() == EINTR)
            ;
    }
out:
    if (in)
        zmq_close(in);
    if (out)
        zmq_close(out);
    return NULL;
}

/* ---- start-up: the store from disk --------------------------------------------------- */

typedef struct load_ctx {
    sdm_worker_t *w;
    wmodel *cur;
    char *err;
    size_t err_len;
} load_ctx;

static int load_model_cb(void *ctx, const char *model, const sdm_projection *proj)
{
    load_ctx *lc = ctx;
    wmodel *m = model_new(lc->w, model, proj);
    if (!m || model_list(lc->w, m) != 0) {
        model_destroy(&m);
        snprintf(lc->err, lc->err_len, "model %s: out of memory", model);
        return -1;
    }
    lc->cur = m;
    return 0;
}

static int load_batch_cb(void *ctx, const sdm_durable_batch *db)
{
    load_ctx *lc = ctx;
    wmodel *m = lc->cur;
    const sdm_leaf_fields *lf = &db->leaf_fields;
    uint8_t leaf[SDM_HASH_LEN];
    if (!m || strcmp(m->name, db->model) != 0 || db->batch != sdm_merkle_size(m->tree)) {
        snprintf(lc->err, lc->err_len, "model %s batch %llu: out of order on disk", db->model,
                 (unsigned long long)db->batch);
        return -1;
    }
    /* the recorded leaf must be the hash of the recorded fields: metadata is not trusted
     * blindly */
    if (sdm_leaf_hash(lf, leaf) != 0 || memcmp(leaf, db->leaf, SDM_HASH_LEN) != 0) {
        snprintf(lc->err, lc->err_len, "model %s batch %llu: recorded leaf does not match "
                 "its fields", db->model, (unsigned long long)db->batch);
        return -1;
    }
    sdm_batch b = {.checkpoint = lf->checkpoint, .lr = lf->lr, .contributor = lf->contributor,
                   .shard = lf->shard, .curvature = lf->curvature, .ids = db->ids,
                   .rows = {SDM_F32, lf->n, db->k, db->features}, .is_features = 1,
                   .weights = db->weights};
    uint64_t no;
    if (sdm_store_append(m->store, &b, &no, NULL) != SDM_OK ||
        sdm_merkle_append(m->tree, leaf) != 0) {
        snprintf(lc->err, lc->err_len, "model %s batch %llu: %s", db->model,
                 (unsigned long long)db->batch, sdm_engine_last_error(lc->w->eng));
        return -1;
    }
    atomic_fetch_add(&lc->w->batches, 1);
    atomic_fetch_add(&lc->w->examples, lf->n);
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

sdm_worker_t *sdm_worker_new(const sdm_worker_opts *opts, char *err, size_t err_len)
{
    char tmp[512];
    if (!opts || !opts->data_dir) {
        snprintf(err, err_len, "--data: a data directory is required");
        return NULL;
    }
    sdm_worker_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    w->opts = *opts;
    w->stop_pipe[0] = w->stop_pipe[1] = -1;
    if (!w->opts.listen)
        w->opts.listen = SDM_WORKER_DEFAULT_ENDPOINT;
    if (!w->opts.max_msg)
        w->opts.max_msg = (int64_t)2 << 30;
    if (!w->opts.queue_depth)
        w->opts.queue_depth = 64;
    w->data_dir = strdup(opts->data_dir);
    pthread_mutex_init(&w->mu, NULL);
    sdm_ratelog_init(&w->ilog);
    const char *fault = getenv("SDM_TEST_FAULT");
    if (fault && *fault) {
        unsigned long long at = 0, to = 0;
        char kind[32] = "";
        int got = sscanf(fault, "receipt-put-%31[a-z]:%llu-%llu", kind, &at, &to);
        if (got == 2)
            to = at;
        if (got < 2 || at == 0 || to < at ||
            (strcmp(kind, "fail") != 0 && strcmp(kind, "crash") != 0)) {
            snprintf(err, err_len, "SDM_TEST_FAULT: '%s', expected receipt-put-fail:N[-M] or "
                     "receipt-put-crash:N (1 <= N <= M)", fault);
            goto fail;
        }
        w->fault_at = at;
        w->fault_to = to;
        w->fault_crash = strcmp(kind, "crash") == 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &w->started);
    w->opts.data_dir = w->data_dir;
    w->opts.listen = strdup(w->opts.listen);
    w->opts.curve_secret = dupstr(opts->curve_secret);
    w->opts.allow = dupstr(opts->allow);
    w->opts.ledger = dupstr(opts->ledger);

    if (!w->opts.curve_secret && !w->opts.insecure_bind && !sdm_net_is_local_endpoint(w->opts.listen)) {
        snprintf(err, err_len, "--listen %s: not a loopback address; give --curve-secret and "
                 "--allow, or --insecure-bind", w->opts.listen);
        goto fail;
    }
    if (!!w->opts.curve_secret != !!w->opts.allow) {
        snprintf(err, err_len, "--curve-secret and --allow go together");
        goto fail;
    }
    if (sdm_sodium_init() != 0) {
        snprintf(err, err_len, "libsodium failed to initialise");
        goto fail;
    }
    /* the link's options and keys are checked before anything is made on disk */
    if (w->opts.ledger) {
        sdm_forwarder_opts fo = {w->opts.ledger, opts->ledger_server_key, opts->ledger_client_key,
                                 opts->ledger_max_msg, w->opts.quiet};
        if (!(w->forwarder = sdm_forwarder_new(&fo, err, err_len)))
            goto fail;
    } else if (opts->ledger_server_key || opts->ledger_client_key || opts->ledger_max_msg) {
        snprintf(err, err_len, "%s: needs --ledger", opts->ledger_server_key ? "--ledger-server-key"
                 : opts->ledger_client_key ? "--ledger-client-key" : "--ledger-max-msg");
        goto fail;
    }
    if (pipe(w->stop_pipe) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(w->stop_pipe[1], F_SETFL, O_NONBLOCK);

    sdm_engine_opts eo = {opts->backend, opts->workspace_bytes, opts->threads, 0};
    sdm_status st;
    w->eng = sdm_engine_new(&eo, &st, tmp, sizeof(tmp));
    if (w->eng)
        w->ingest_eng = sdm_engine_new(&eo, &st, tmp, sizeof(tmp));
    if (!w->eng || !w->ingest_eng) {
        snprintf(err, err_len, "--backend: %s", tmp);
        goto fail;
    }
    if (*sdm_engine_note(w->eng))
        logf_(w, "%s", sdm_engine_note(w->eng));

    w->durable = sdm_durable_open(w->data_dir, tmp, sizeof(tmp));
    if (!w->durable) {
        snprintf(err, err_len, "--data %s: %s", w->data_dir, tmp);
        goto fail;
    }
    w->kp = sdm_keypair_load_or_create(w->data_dir, "worker", tmp, sizeof(tmp));
    if (!w->kp) {
        snprintf(err, err_len, "--data %s: %s", w->data_dir, tmp);
        goto fail;
    }
    char cb_err[512] = "";
    load_ctx lc = {w, NULL, cb_err, sizeof(cb_err)};
    tmp[0] = 0;
    if (sdm_durable_load(w->durable, load_model_cb, load_batch_cb, &lc, tmp, sizeof(tmp)) != 0) {
        snprintf(err, err_len, "--data %s: %s", w->data_dir, cb_err[0] ? cb_err : tmp);
        goto fail;
    }
    if (w->opts.ledger) {
        w->outbox = sdm_outbox_open(w->data_dir, tmp, sizeof(tmp));
        if (!w->outbox || settle_receipts_at_start(w, tmp, sizeof(tmp)) != 0) {
            snprintf(err, err_len, "--ledger: --data %s: %s", w->data_dir, tmp);
            goto fail;
        }
    } else {
        sdm_forwarder_note_stranded(w->data_dir, w->opts.quiet);
    }

    w->ctx = zmq_ctx_new();
    if (!w->ctx) {
        snprintf(err, err_len, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (w->opts.curve_secret) {
        uint8_t (*allow)[32];
        size_t n_allow;
        if (sdm_net_load_allow(w->opts.allow, &allow, &n_allow, err, err_len) != 0)
            goto fail;
        /* the ZAP handler must be bound before the socket that relies on it */
        w->zap = sdm_zap_start(w->ctx, (const uint8_t(*)[32])allow, n_allow, err, err_len);
        free(allow);
        if (!w->zap)
            goto fail;
    }
    /* started before the worker listens, so that a bad --ledger endpoint stops the start;
     * it only reads the outbox, which nothing puts into before the worker threads run */
    if (w->forwarder && sdm_forwarder_start(w->forwarder, w->ctx, w->outbox, err, err_len) != 0)
        goto fail;
    w->front = zmq_socket(w->ctx, ZMQ_ROUTER);
    w->replies = zmq_socket(w->ctx, ZMQ_PULL);
    w->to_thread[0] = zmq_socket(w->ctx, ZMQ_PUSH);
    w->to_thread[1] = zmq_socket(w->ctx, ZMQ_PUSH);
    if (!w->front || !w->replies || !w->to_thread[0] || !w->to_thread[1]) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int linger = 2000;
    zmq_setsockopt(w->front, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(w->front, ZMQ_MAXMSGSIZE, &w->opts.max_msg, sizeof(w->opts.max_msg));
    if (w->opts.curve_secret &&
        sdm_net_curve_server(w->front, w->opts.curve_secret, err, err_len) != 0)
        goto fail;
    if (zmq_bind(w->replies, REPLY_EP) != 0 || zmq_bind(w->to_thread[0], thread_ep[0]) != 0 ||
        zmq_bind(w->to_thread[1], thread_ep[1]) != 0) {
        snprintf(err, err_len, "inproc bind: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_bind(w->front, w->opts.listen) != 0) {
        snprintf(err, err_len, "--listen %s: %s", w->opts.listen, zmq_strerror(zmq_errno()));
        goto fail;
    }
    size_t eplen = sizeof(w->endpoint);
    zmq_getsockopt(w->front, ZMQ_LAST_ENDPOINT, w->endpoint, &eplen);
    for (int i = 0; i < 2; i++) {
        thread_arg *ta = malloc(sizeof(*ta));
        if (!ta || (ta->w = w, ta->which = i, pthread_create(&w->threads[i], NULL, thread_main, ta)) != 0) {
            free(ta);
            snprintf(err, err_len, "cannot start the worker threads");
            goto fail;
        }
        w->threads_started = i + 1;
    }
    return w;
fail:
    sdm_worker_destroy(&w);
    return NULL;
}

const char *sdm_worker_endpoint(const sdm_worker_t *self)
{
    return self->endpoint;
}

const uint8_t *sdm_worker_key(const sdm_worker_t *self)
{
    return self->kp->pk;
}

void sdm_worker_stop(sdm_worker_t *self)
{
    self->stop_requested = 1;
    char c = 1;
    ssize_t rc = write(self->stop_pipe[1], &c, 1);
    (void)rc;
}

static void job_free(job *j)
{
    sdm_net_request_close(&j->net);
    sdm_worker_request_free(&j->req);
    msgpack_sbuffer_destroy(&j->reply);
    free(j);
}

/* Sends a job's reply on the front socket and frees the job. */
static void send_reply(sdm_worker_t *w, job *j)
{
    atomic_fetch_add(&w->requests, 1);
    sdm_net_reply(w->front, &j->net, j->reply.data, j->reply.size);
    job_free(j);
}

/* Reads one multipart request from the front socket. NULL when it was malformed (dropped)
 * or when nothing could be read. */
static job *read_request(sdm_worker_t *w)
{
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    msgpack_sbuffer_init(&j->reply);
    if (sdm_net_request_read(w->front, &j->net) != 0) {
        job_free(j);
        return NULL;
    }
    return j;
}

static void handle_request(sdm_worker_t *w, job *j)
{
    sdm_wire_error e = {0, ""};
    sdm_wire_limits lim = {0, 0};
    sdm_wire_code code = sdm_wire_decode_worker(zmq_msg_data(&j->net.payload),
                                                zmq_msg_size(&j->net.payload), &lim, &j->req, &e);
    if (code != SDM_WIRE_OK) {
        reply_error(w, j, code, "%s", e.message);
        send_reply(w, j);
        return;
    }
    atomic_fetch_add(&w->ops[j->req.op], 1);
    switch (j->req.op) {
    case SDM_OP_INFO:
        do_info(w, j);
        send_reply(w, j);
        return;
    case SDM_OP_STATS:
        do_stats(w, j);
        send_reply(w, j);
        return;
    case SDM_OP_ATTRIBUTE:
        j->target = COMPUTE;
        break;
    default:
        j->target = INGEST;
        break;
    }
    if (w->stop_requested) {
        reply_error(w, j, SDM_WIRE_BUSY, "the worker is shutting down");
        send_reply(w, j);
    } else if (w->outstanding[j->target] >= w->opts.queue_depth) {
        reply_error(w, j, SDM_WIRE_BUSY, "%s: %u requests already waiting; retry later",
                    sdm_wire_op_name(j->req.op), w->outstanding[j->target]);
        send_reply(w, j);
    } else if (send_ptr(w->to_thread[j->target], j) != 0) {
        reply_error(w, j, SDM_WIRE_INTERNAL, "cannot reach the %s thread",
                    j->target == INGEST ? "ingest" : "compute");
        send_reply(w, j);
    } else {
        w->outstanding[j->target]++;
    }
}

static int worker_idle(void *ctx)
{
    sdm_worker_t *w = ctx;
    return w->outstanding[0] == 0 && w->outstanding[1] == 0;
}

static void worker_on_reply(void *ctx, void *p)
{
    sdm_worker_t *w = ctx;
    job *j = p;
    w->outstanding[j->target]--;
    send_reply(w, j);
}

static int worker_on_request(void *ctx)
{
    sdm_worker_t *w = ctx;
    job *j = read_request(w);
    if (j)
        handle_request(w, j);
    return 0;
}

int sdm_worker_run(sdm_worker_t *self)
{
    sdm_net_loop lp = {.front = self->front,
                       .replies = self->replies,
                       .stop_fd = self->stop_pipe[0],
                       .stop_requested = &self->stop_requested,
                       .burst = 64,
                       .ctx = self,
                       .idle = worker_idle,
                       .on_reply = worker_on_reply,
                       .on_request = worker_on_request};
    return sdm_net_serve(&lp);
}

void sdm_worker_destroy(sdm_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_worker_t *w = *self_p;
    for (int i = 0; i < w->threads_started; i++) {
        send_ptr(w->to_thread[i], NULL);
        pthread_join(w->threads[i], NULL);
    }
    /* after the threads that put rows; what is unanswered stays in outbox.db */
    sdm_forwarder_stop(&w->forwarder);
    /* replies still queued (from a run that ended early) are dropped with their jobs */
    if (w->replies) {
        void *p;
        while (zmq_recv(w->replies, &p, sizeof(p), ZMQ_DONTWAIT) == (int)sizeof(p))
            job_free(p);
    }
    void *socks[] = {w->front, w->replies, w->to_thread[0], w->to_thread[1]};
    for (size_t i = 0; i < 4; i++)
        if (socks[i])
            zmq_close(socks[i]);
    if (w->zap)
        sdm_zap_stop(&w->zap, w->ctx);
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    for (size_t i = 0; i < w->n_models; i++)
        model_destroy(&w->models[i]);
    free(w->models);
    sdm_durable_close(&w->durable);
    sdm_outbox_close(&w->outbox);
    sdm_keypair_destroy(&w->kp);
    sdm_engine_destroy(&w->ingest_eng);
    sdm_engine_destroy(&w->eng);
    for (int i = 0; i < 2; i++)
        if (w->stop_pipe[i] >= 0)
            close(w->stop_pipe[i]);
    pthread_mutex_destroy(&w->mu);
    sdm_ratelog_destroy(&w->ilog);
    free((char *)w->opts.listen);
    free((char *)w->opts.curve_secret);
    free((char *)w->opts.allow);
    free((char *)w->opts.ledger);
    free(w->data_dir);
    free(w);
    *self_p = NULL;
}
