/* ledger.c - the ledger service: socket loop, append checks, group-commit writer, reads
 * (SPEC §6 "Ledger"). ledger.h says which thread does what.
 */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "body.h"
#include "fileio.h"
#include "ledger_log.h"
#include "netsec.h"
#include "note.h"
#include "ratelog.h"
#include "rewards.h"
#include "sign.h"
#include "wire.h"

#define WRITER_EP "inproc://sdm-ledger-writer" /* checked appends */
#define DONE_EP "inproc://sdm-ledger-done"
#define MAX_PROOF 64

typedef struct ljob {
    sdm_net_request net;
    sdm_ledger_request req;
    sdm_body body; /* append: the checked body */
    msgpack_sbuffer reply;
    struct ljob *next; /* in the check queue */
    uint64_t seq;      /* append: the order the I/O thread took it in */
    int refused;       /* append: the checker answered it with an error */
    struct sdm_ledger *owner; /* for the log of internal errors */
} ljob;

#define MAX_CHECKERS 16

typedef struct checker_arg {
    struct sdm_ledger *l;
    void *to_writer; /* PUSH to the writer, made and connected by sdm_ledger_new; the
                        thread owns it from its start (thread creation is a barrier) */
} checker_arg;

struct sdm_ledger {
    sdm_ledger_opts opts;
    char endpoint[256];
    void *ctx;
    void *front;
    void *to_writer; /* PUSH, I/O side: only the final stop message */
    void *writer_in; /* PULL bound in sdm_ledger_new, owned by the writer thread */
    void *done;      /* PULL, I/O side: appends answered by a checker or the writer */
    pthread_t writer;
    int writer_started;

    /* appends waiting for their signature and body check; checkers take them */
    pthread_mutex_t check_mu;
    sdm_ratelog ilog; /* the internal errors' log lines (log_internal) */
    pthread_cond_t check_cv;
    ljob *check_head, *check_tail;
    int checkers_stop;
    pthread_t checkers[MAX_CHECKERS];
    checker_arg checker_args[MAX_CHECKERS];
    int n_checkers;
    uint32_t outstanding; /* I/O thread only */
    uint64_t next_seq;    /* I/O thread only: the next append's place in the log order */
    int stop_pipe[2];
    volatile sig_atomic_t stop_requested;
    sdm_zap_t *zap;

    sdm_keypair *kp;
    sdm_ledger_log_t *log;
    sdm_ledger_reader_t *reader; /* I/O thread */
    uint8_t (*workers)[SDM_PK_LEN];
    size_t n_workers;
    int any_worker;
};

static void logf_(const sdm_ledger_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_(const sdm_ledger_t *l, const char *fmt, ...)
{
    if (l->opts.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("sediment-ledger: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
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

static void job_free(ljob *j)
{
    sdm_net_request_close(&j->net);
    sdm_ledger_request_free(&j->req);
    sdm_body_free(&j->body);
    msgpack_sbuffer_destroy(&j->reply);
    free(j);
}

static void reply_error(ljob *j, sdm_wire_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void log_internal(sdm_ledger_t *l, sdm_ledger_op op, const char *message);

static void reply_error(ljob *j, sdm_wire_code code, const char *fmt, ...)
{
    sdm_wire_error e = {code, ""};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    if (code == SDM_WIRE_INTERNAL && j->owner)
        log_internal(j->owner, j->req.op, e.message);
    msgpack_sbuffer_clear(&j->reply);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_error(&pk, j->req.id, j->req.id_len, &e);
}

static void reply_ok(ljob *j, msgpack_packer *pk, uint32_t n_fields)
{
    msgpack_sbuffer_clear(&j->reply);
    msgpack_packer_init(pk, &j->reply, msgpack_sbuffer_write);
    sdm_wire_reply_ok(pk, j->req.id, j->req.id_len, n_fields);
}

/* An internal error is the ledger's fault or its machine's (a full disk, memory short), not
 * the client's: logged, through the ratelog so that clients retrying against a full disk do
 * not flood the log (a group of appends that fails is one line, not one per append). */
static void log_internal(sdm_ledger_t *l, sdm_ledger_op op, const char *message)
{
    if (l->opts.quiet)
        return;
    char line[384];
    snprintf(line, sizeof(line), "%s: %s", sdm_wire_ledger_op_name(op), message);
    sdm_ratelog_log(&l->ilog, stderr, "sediment-ledger", "internal error answered", line);
}

/* ---- reads (I/O thread) -------------------------------------------------------------- */

static void do_info(sdm_ledger_t *l, ljob *j)
{
    msgpack_packer pk;
    reply_ok(j, &pk, 5);
    pack_key(&pk, "version");
    sdm_wire_pack_str(&pk, SDM_VERSION);
    pack_key(&pk, "ledger_key");
    pack_bin(&pk, l->kp->pk, SDM_PK_LEN);
    pack_key(&pk, "origin");
    sdm_wire_pack_str(&pk, sdm_ledger_log_origin(l->log));
    pack_key(&pk, "size");
    msgpack_pack_uint64(&pk, sdm_ledger_log_size(l->log));
    pack_key(&pk, "workers");
    /* nil: no allow-list, any valid signature is accepted */
    if (l->any_worker) {
        msgpack_pack_nil(&pk);
    } else {
        msgpack_pack_array(&pk, (uint32_t)l->n_workers);
        for (size_t i = 0; i < l->n_workers; i++)
            pack_bin(&pk, l->workers[i], SDM_PK_LEN);
    }
}

static void do_checkpoint(sdm_ledger_t *l, ljob *j)
{
    char *note = sdm_ledger_log_checkpoint(l->log);
    if (!note) {
        reply_error(j, SDM_WIRE_INTERNAL, "checkpoint: out of memory");
        return;
    }
    msgpack_packer pk;
    reply_ok(j, &pk, 1);
    pack_key(&pk, "checkpoint");
    sdm_wire_pack_str(&pk, note);
    free(note);
}

static void do_entry(sdm_ledger_t *l, ljob *j)
{
    uint8_t *env = NULL;
    size_t len = 0;
    char err[256] = "";
    int rc = sdm_ledger_entry(l->reader, j->req.index, &env, &len, err, sizeof(err));
    if (rc == 1) {
        reply_error(j, SDM_WIRE_NOT_FOUND, "index: %llu, the log has %llu entries",
                    (unsigned long long)j->req.index,
                    (unsigned long long)sdm_ledger_log_size(l->log));
        return;
    }
    if (rc != 0) {
        reply_error(j, SDM_WIRE_INTERNAL, "entry: %s", err);
        return;
    }
    msgpack_packer pk;
    reply_ok(j, &pk, 1);
    pack_key(&pk, "entry");
    sdm_wire_pack_raw(&pk, env, len);
    free(env);
}

static void pack_hashes(msgpack_packer *pk, uint8_t path[][SDM_HASH_LEN], size_t n)
{
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        pack_bin(pk, path[i], SDM_HASH_LEN);
}

static void do_inclusion(sdm_ledger_t *l, ljob *j)
{
    uint8_t leaf[SDM_HASH_LEN], path[MAX_PROOF][SDM_HASH_LEN];
    size_t n = 0;
    int rc = sdm_ledger_inclusion(l->log, j->req.index, j->req.size, leaf, path, &n);
    if (rc == 1) {
        reply_error(j, SDM_WIRE_NOT_FOUND, "size: %llu, the log has %llu entries",
                    (unsigned long long)j->req.size,
                    (unsigned long long)sdm_ledger_log_size(l->log));
        return;
    }
    if (rc != 0) {
        reply_error(j, SDM_WIRE_INTERNAL, "inclusion: cannot build the proof");
        return;
    }
    msgpack_packer pk;
    reply_ok(j, &pk, 2);
    pack_key(&pk, "leaf_hash");
    pack_bin(&pk, leaf, SDM_HASH_LEN);
    pack_key(&pk, "hashes");
    pack_hashes(&pk, path, n);
}

static void do_consistency(sdm_ledger_t *l, ljob *j)
{
    uint8_t path[MAX_PROOF][SDM_HASH_LEN];
    size_t n = 0;
    int rc = sdm_ledger_consistency(l->log, j->req.from, j->req.to, path, &n);
    if (rc == 1) {
        reply_error(j, SDM_WIRE_NOT_FOUND, "to: %llu, the log has %llu entries",
                    (unsigned long long)j->req.to,
                    (unsigned long long)sdm_ledger_log_size(l->log));
        return;
    }
    if (rc != 0) {
        reply_error(j, SDM_WIRE_INTERNAL, "consistency: cannot build the proof");
        return;
    }
    msgpack_packer pk;
    reply_ok(j, &pk, 1);
    pack_key(&pk, "hashes");
    pack_hashes(&pk, path, n);
}

/* history rows are packed into a side buffer first: the array's length comes first */
typedef struct history_ctx {
    msgpack_packer pk;
    uint32_t n;
} history_ctx;

static void pack_score(msgpack_packer *pk, double v)
{
    if (isnan(v))
        msgpack_pack_nil(pk); /* receipts carry no score */
    else
        msgpack_pack_double(pk, v);
}

static int history_row(void *ctx, const sdm_ledger_touch *t)
{
    history_ctx *h = ctx;
    msgpack_packer *pk = &h->pk;
    msgpack_pack_map(pk, 7);
    pack_key(pk, "index");
    msgpack_pack_uint64(pk, t->index);
    pack_key(pk, "issued_at");
    msgpack_pack_uint64(pk, t->issued_at);
    pack_key(pk, "type");
    sdm_wire_pack_str(pk, sdm_body_type_name(t->type));
    pack_key(pk, "model");
    sdm_wire_pack_str(pk, t->model ? t->model : "");
    pack_key(pk, "shard");
    sdm_wire_pack_str(pk, t->shard ? t->shard : "");
    pack_key(pk, "score");
    pack_score(pk, t->score);
    pack_key(pk, "share");
    pack_score(pk, t->share);
    h->n++;
    return 0;
}

static void do_history(sdm_ledger_t *l, ljob *j)
{
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    history_ctx h = {.n = 0};
    msgpack_packer_init(&h.pk, &rows, msgpack_sbuffer_write);
    char err[256] = "";
    const sdm_ledger_request *r = &j->req;
    if (sdm_ledger_history(l->reader, r->contributor, r->has_since ? r->since : 0,
                           r->has_until ? r->until : UINT64_MAX, r->limit, history_row, &h, err,
                           sizeof(err)) != 0) {
        reply_error(j, SDM_WIRE_INTERNAL, "history: %s", err);
    } else {
        msgpack_packer pk;
        reply_ok(j, &pk, 1);
        pack_key(&pk, "entries");
        msgpack_pack_array(&pk, h.n);
        if (rows.size)
            sdm_wire_pack_raw(&pk, (const uint8_t *)rows.data, rows.size);
    }
    msgpack_sbuffer_destroy(&rows);
}

/* rewards: per-contributor sums of the proofs' credits. The rows come in log order; they are
 * sorted by (name, log position) so each contributor's sum is taken in log order, the same
 * floating-point result whatever the number of contributors. */
typedef struct credit_row_t {
    char *name;
    double score, share;
    size_t seq;
} credit_row_t;

typedef struct credits_ctx {
    credit_row_t *rows;
    size_t n, cap;
    int nomem;
} credits_ctx;

static int credit_row(void *ctx, const char *contributor, double score, double share)
{
    credits_ctx *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        credit_row_t *p = realloc(c->rows, cap * sizeof(*p));
        if (!p) {
            c->nomem = 1;
            return -1;
        }
        c->rows = p;
        c->cap = cap;
    }
    char *name = strdup(contributor);
    if (!name) {
        c->nomem = 1;
        return -1;
    }
    c->rows[c->n] = (credit_row_t){name, score, share, c->n};
    c->n++;
    return 0;
}

static int credit_cmp(const void *a, const void *b)
{
    const credit_row_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void do_rewards(sdm_ledger_t *l, ljob *j)
{
    credits_ctx c = {0};
    char err[256] = "";
    const sdm_ledger_request *r = &j->req;
    sdm_reward_input *in = NULL;
    sdm_reward_split split = {0};
    if (sdm_ledger_credits(l->reader, r->model, r->has_since ? r->since : 0,
                           r->has_until ? r->until : UINT64_MAX, credit_row, &c, err,
                           sizeof(err)) != 0) {
        reply_error(j, SDM_WIRE_INTERNAL, "rewards: %s", c.nomem ? "out of memory" : err);
        goto out;
    }
    in = calloc(c.n ? c.n : 1, sizeof(*in));
    if (!in) {
        reply_error(j, SDM_WIRE_INTERNAL, "rewards: out of memory");
        goto out;
    }
    if (c.n)
        qsort(c.rows, c.n, sizeof(*c.rows), credit_cmp);
    size_t n_in = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (n_in == 0 || strcmp(in[n_in - 1].name, c.rows[i].name) != 0)
            in[n_in++] = (sdm_reward_input){c.rows[i].name, 0.0, 0.0};
        in[n_in - 1].score += c.rows[i].score;
        in[n_in - 1].share += c.rows[i].share;
    }
    if (sdm_rewards_split(in, n_in, r->pool, &split, err, sizeof(err)) != SDM_OK) {
        /* the log only holds checked, finite values: this is the ledger's fault */
        reply_error(j, SDM_WIRE_INTERNAL, "rewards: %s", err);
        goto out;
    }
    msgpack_packer pk;
    reply_ok(j, &pk, 3);
    pack_key(&pk, "allocations");
    msgpack_pack_array(&pk, (uint32_t)split.n_allocations);
    for (size_t i = 0; i < split.n_allocations; i++) {
        msgpack_pack_array(&pk, 2);
        sdm_wire_pack_str(&pk, in[split.allocations[i].index].name);
        msgpack_pack_uint64(&pk, split.allocations[i].amount);
    }
    pack_key(&pk, "flagged");
    msgpack_pack_array(&pk, (uint32_t)split.n_flagged);
    for (size_t i = 0; i < split.n_flagged; i++)
        sdm_wire_pack_str(&pk, in[split.flagged[i]].name);
    pack_key(&pk, "unallocated");
    msgpack_pack_uint64(&pk, split.unallocated);
out:
    sdm_reward_split_free(&split);
    free(in);
    for (size_t i = 0; i < c.n; i++)
        free(c.rows[i].name);
    free(c.rows);
}

/* ---- append: checks on the I/O thread, commit on the writer -------------------------- */

/* 0 when the append may go to the writer; otherwise the error reply is already in j. */
static int check_append(sdm_ledger_t *l, ljob *j)
{
    const uint8_t *body;
    size_t body_len;
    uint8_t key[SDM_PK_LEN];
    sdm_wire_error e = {0, ""};
    sdm_wire_code c =
        sdm_envelope_open(j->req.entry, j->req.entry_len, &body, &body_len, key, &e);
    if (c != SDM_WIRE_OK) {
        reply_error(j, c, "entry: %s", e.message);
        return -1;
    }
    if (!l->any_worker) {
        int allowed = 0;
        for (size_t i = 0; i < l->n_workers && !allowed; i++)
            allowed = memcmp(l->workers[i], key, SDM_PK_LEN) == 0;
        if (!allowed) {
            char hex[2 * SDM_PK_LEN + 1];
            sdm_hex(key, SDM_PK_LEN, hex);
            reply_error(j, SDM_WIRE_UNAUTHORIZED, "entry[2] (key): worker %s is not on this "
                        "ledger's allow-list", hex);
            return -1;
        }
    }
    c = sdm_body_read(body, body_len, key, &j->body, &e);
    if (c != SDM_WIRE_OK) {
        reply_error(j, c, "%s", e.message);
        return -1;
    }
    if (j->body.issued_at > INT64_MAX) {
        reply_error(j, SDM_WIRE_BAD_REQUEST, "entry.body.issued_at: %llu is beyond 2^63-1 ns",
                    (unsigned long long)j->body.issued_at);
        return -1;
    }
    return 0;
}

static int send_ptr(void *sock, void *p)
{
    return zmq_send(sock, &p, sizeof(p), 0) == (int)sizeof(p) ? 0 : -1;
}

static void *writer_main(void *arg)
{
    sdm_ledger_t *l = arg;
    uint32_t max_group = l->opts.max_group;
    void *in = l->writer_in; /* handed over by sdm_ledger_new (thread creation is a barrier) */
    void *out = zmq_socket(l->ctx, ZMQ_PUSH);
    ljob **group = calloc(max_group, sizeof(*group));
    sdm_ledger_item *items = calloc(max_group, sizeof(*items));
    ljob **ring = calloc(l->opts.queue_depth, sizeof(*ring));
    if (!out || !group || !items || !ring || zmq_connect(out, DONE_EP) != 0) {
        logf_(l, "writer: cannot start (%s)", zmq_strerror(zmq_errno()));
        goto out;
    }
    /* Checkers finish out of order; the log keeps the order in which the I/O thread took
     * the appends. Every taken append (refused ones too) comes here with its sequence
     * number and waits in `ring` until all before it have come. At most queue_depth are
     * outstanding, so seq % queue_depth never collides. */
    uint32_t cap = l->opts.queue_depth;
    uint64_t next = 0;
    int stop = 0;
    while (!stop) {
        /* block until the next append in order is here, then take whatever else has come */
        int blocking = ring[next % cap] == NULL;
        for (;;) {
            void *p = NULL;
            int rc = zmq_recv(in, &p, sizeof(p), blocking ? 0 : ZMQ_DONTWAIT);
            if (rc != (int)sizeof(p)) {
                if (blocking && zmq_errno() == EINTR)
                    continue;
                if (blocking)
                    stop = 1; /* context gone */
                break;
            }
            if (!p) {
                stop = 1; /* told to stop (nothing is outstanding then) */
                break;
            }
            ljob *j = p;
            ring[j->seq % cap] = j;
            blocking = ring[next % cap] == NULL;
        }
        size_t n = 0;
        while (n < max_group && ring[next % cap]) {
            ljob *j = ring[next % cap];
            ring[next % cap] = NULL;
            next++;
            if (j->refused) /* answered by its checker: it only had to keep its place */
                while (send_ptr(out, j) != 0 && zmq_errno() == EINTR)
                    ;
            else
                group[n++] = j;
        }
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++)
            items[i] = (sdm_ledger_item){.entry = group[i]->req.entry,
                                         .entry_len = group[i]->req.entry_len,
                                         .body = &group[i]->body};
        uint64_t size = 0;
        char *note = NULL;
        char err[512] = "";
        if (sdm_ledger_log_append(l->log, items, n, &size, &note, err, sizeof(err)) != 0) {
            for (size_t i = 0; i < n; i++)
                reply_error(group[i], SDM_WIRE_INTERNAL, "not appended: %s", err);
        } else {
            for (size_t i = 0; i < n; i++) {
                msgpack_packer pk;
                reply_ok(group[i], &pk, 5);
                pack_key(&pk, "index");
                msgpack_pack_uint64(&pk, items[i].index);
                pack_key(&pk, "leaf_hash");
                pack_bin(&pk, items[i].leaf, SDM_HASH_LEN);
                pack_key(&pk, "size");
                msgpack_pack_uint64(&pk, size);
                pack_key(&pk, "checkpoint");
                if (note)
                    sdm_wire_pack_str(&pk, note);
                else
                    msgpack_pack_nil(&pk); /* committed, but no memory to copy the note */
                pack_key(&pk, "duplicate");
                if (items[i].duplicate)
                    msgpack_pack_true(&pk);
                else
                    msgpack_pack_false(&pk);
            }
        }
        free(note);
        for (size_t i = 0; i < n; i++)
            while (send_ptr(out, group[i]) != 0 && zmq_errno() == EINTR)
                ;
    }
out:
    free(ring);
    free(group);
    free(items);
    if (out)
        zmq_close(out);
    return NULL;
}

/* Checker threads: an append's signature check (most of its CPU) and body check run here,
 * off the I/O thread, so that reads stay quick and several cores verify at once. A checked
 * append goes on to the writer; a refused one goes back to the I/O thread with its error. */
static void *checker_main(void *arg)
{
    checker_arg *ca = arg;
    sdm_ledger_t *l = ca->l;
    void *to_writer = ca->to_writer;
    for (;;) {
        pthread_mutex_lock(&l->check_mu);
        while (!l->check_head && !l->checkers_stop)
            pthread_cond_wait(&l->check_cv, &l->check_mu);
        ljob *j = l->check_head;
        if (j) {
            l->check_head = j->next;
            if (!l->check_head)
                l->check_tail = NULL;
            j->next = NULL;
        }
        pthread_mutex_unlock(&l->check_mu);
        if (!j)
            break; /* stopping and nothing left */
        j->refused = check_append(l, j) != 0;
        /* refused appends go to the writer too, to keep their place in the order */
        while (send_ptr(to_writer, j) != 0 && zmq_errno() == EINTR)
            ;
    }
    return NULL;
}

static void check_enqueue(sdm_ledger_t *l, ljob *j)
{
    pthread_mutex_lock(&l->check_mu);
    j->next = NULL;
    if (l->check_tail)
        l->check_tail->next = j;
    else
        l->check_head = j;
    l->check_tail = j;
    pthread_cond_signal(&l->check_cv);
    pthread_mutex_unlock(&l->check_mu);
}

/* ---- the loop ------------------------------------------------------------------------ */

static void send_reply(sdm_ledger_t *l, ljob *j)
{
    sdm_net_reply(l->front, &j->net, j->reply.data, j->reply.size);
    job_free(j);
}

static void handle_request(sdm_ledger_t *l, ljob *j)
{
    sdm_wire_error e = {0, ""};
    sdm_wire_limits lim = {0, 0};
    sdm_wire_code code = sdm_wire_decode_ledger(zmq_msg_data(&j->net.payload),
                                                zmq_msg_size(&j->net.payload), &lim, &j->req, &e);
    if (code != SDM_WIRE_OK) {
        reply_error(j, code, "%s", e.message);
        send_reply(l, j);
        return;
    }
    switch (j->req.op) {
    case SDM_LOP_INFO: do_info(l, j); break;
    case SDM_LOP_CHECKPOINT: do_checkpoint(l, j); break;
    case SDM_LOP_ENTRY: do_entry(l, j); break;
    case SDM_LOP_INCLUSION: do_inclusion(l, j); break;
    case SDM_LOP_CONSISTENCY: do_consistency(l, j); break;
    case SDM_LOP_HISTORY: do_history(l, j); break;
    case SDM_LOP_REWARDS: do_rewards(l, j); break;
    case SDM_LOP_APPEND:
        if (l->stop_requested) {
            reply_error(j, SDM_WIRE_BUSY, "the ledger is shutting down");
        } else if (l->outstanding >= l->opts.queue_depth) {
            reply_error(j, SDM_WIRE_BUSY, "append: %u entries already waiting; retry later",
                        l->outstanding);
        } else {
            l->outstanding++;
            j->seq = l->next_seq++;
            check_enqueue(l, j);
            return; /* answered by a checker or the writer */
        }
        break;
    }
    send_reply(l, j);
}

static int ledger_idle(void *ctx)
{
    return ((sdm_ledger_t *)ctx)->outstanding == 0;
}

static void ledger_on_reply(void *ctx, void *p)
{
    sdm_ledger_t *l = ctx;
    l->outstanding--;
    send_reply(l, p);
}

static int ledger_on_request(void *ctx)
{
    sdm_ledger_t *l = ctx;
    ljob *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->owner = l;
    msgpack_sbuffer_init(&j->reply);
    if (sdm_net_request_read(l->front, &j->net) != 0) {
        job_free(j);
        return 0;
    }
    handle_request(l, j);
    return 0;
}

int sdm_ledger_run(sdm_ledger_t *self)
{
    sdm_net_loop lp = {.front = self->front,
                       .replies = self->done,
                       .stop_fd = self->stop_pipe[0],
                       .stop_requested = &self->stop_requested,
                       .burst = 256,
                       .ctx = self,
                       .idle = ledger_idle,
                       .on_reply = ledger_on_reply,
                       .on_request = ledger_on_request};
    return sdm_net_serve(&lp);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

/* --workers: one hex Ed25519 public key a line; '#' comments and blank lines skipped. */
static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

sdm_ledger_t *sdm_ledger_new(const sdm_ledger_opts *opts, char *err, size_t err_len)
{
    char tmp[512];
    if (!opts || !opts->data_dir) {
        snprintf(err, err_len, "--data: a data directory is required");
        return NULL;
    }
    sdm_ledger_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    l->opts = *opts;
    l->stop_pipe[0] = l->stop_pipe[1] = -1;
    pthread_mutex_init(&l->check_mu, NULL);
    sdm_ratelog_init(&l->ilog);
    pthread_cond_init(&l->check_cv, NULL);
    l->opts.listen = strdup(opts->listen ? opts->listen : SDM_LEDGER_DEFAULT_ENDPOINT);
    l->opts.data_dir = strdup(opts->data_dir);
    l->opts.workers = dupstr(opts->workers);
    l->opts.origin = dupstr(opts->origin);
    l->opts.curve_secret = dupstr(opts->curve_secret);
    l->opts.allow = dupstr(opts->allow);
    if (!l->opts.max_msg)
        l->opts.max_msg = (int64_t)64 << 20;
    if (!l->opts.queue_depth)
        l->opts.queue_depth = 8192;
    if (!l->opts.max_group)
        l->opts.max_group = 1024;
    if (!l->opts.checkers) {
        /* signature checks are most of an append's CPU; the I/O thread and the writer
         * mostly wait, so the checkers get one thread a core */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        l->opts.checkers = cpus > 1 ? (uint32_t)cpus : 1;
    }
    if (l->opts.checkers > MAX_CHECKERS)
        l->opts.checkers = MAX_CHECKERS;


    if (!l->opts.curve_secret && !l->opts.insecure_bind &&
        !sdm_net_is_local_endpoint(l->opts.listen)) {
        snprintf(err, err_len, "--listen %s: not a loopback address; give --curve-secret and "
                 "--allow, or --insecure-bind", l->opts.listen);
        goto fail;
    }
    if (!!l->opts.curve_secret != !!l->opts.allow) {
        snprintf(err, err_len, "--curve-secret and --allow go together");
        goto fail;
    }
    if (sdm_sodium_init() != 0) {
        snprintf(err, err_len, "libsodium failed to initialise");
        goto fail;
    }
    if (pipe(l->stop_pipe) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(l->stop_pipe[1], F_SETFL, O_NONBLOCK);
    if (l->opts.workers) {
        if (sdm_worker_keys_load("--workers", l->opts.workers, &l->workers, &l->n_workers, err,
                                 err_len) != 0)
            goto fail;
    } else {
        l->any_worker = 1;
    }
    int made = 0;
    if (sdm_make_dir(l->opts.data_dir, &made, tmp, sizeof(tmp)) != 0 ||
        (made && sdm_fsync_parent(l->opts.data_dir) != 0)) {
        snprintf(err, err_len, "--data %s: %s", l->opts.data_dir,
                 made ? "cannot fsync its parent directory" : tmp);
        goto fail;
    }
    l->kp = sdm_keypair_load_or_create(l->opts.data_dir, "ledger", tmp, sizeof(tmp));
    if (!l->kp) {
        snprintf(err, err_len, "--data %s: %s", l->opts.data_dir, tmp);
        goto fail;
    }
    l->log = sdm_ledger_log_open(l->opts.data_dir, l->opts.origin, l->kp, tmp, sizeof(tmp));
    if (!l->log) {
        snprintf(err, err_len, "--data %s: %s", l->opts.data_dir, tmp);
        goto fail;
    }
    l->reader = sdm_ledger_reader_open(l->log, tmp, sizeof(tmp));
    if (!l->reader) {
        snprintf(err, err_len, "--data %s: %s", l->opts.data_dir, tmp);
        goto fail;
    }

    l->ctx = zmq_ctx_new();
    if (!l->ctx) {
        snprintf(err, err_len, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (l->opts.curve_secret) {
        uint8_t (*allow)[32];
        size_t n_allow;
        if (sdm_net_load_allow(l->opts.allow, &allow, &n_allow, err, err_len) != 0)
            goto fail;
        l->zap = sdm_zap_start(l->ctx, (const uint8_t(*)[32])allow, n_allow, err, err_len);
        free(allow);
        if (!l->zap)
            goto fail;
    }
    l->front = zmq_socket(l->ctx, ZMQ_ROUTER);
    l->to_writer = zmq_socket(l->ctx, ZMQ_PUSH);
    l->writer_in = zmq_socket(l->ctx, ZMQ_PULL);
    l->done = zmq_socket(l->ctx, ZMQ_PULL);
    if (!l->front || !l->to_writer || !l->writer_in || !l->done) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int linger = 2000, hwm = 0;
    zmq_setsockopt(l->front, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(l->front, ZMQ_MAXMSGSIZE, &l->opts.max_msg, sizeof(l->opts.max_msg));
    /* the queue bound is ours (outstanding); inproc must never drop or block on it */
    zmq_setsockopt(l->to_writer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(l->writer_in, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(l->done, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (l->opts.curve_secret &&
        sdm_net_curve_server(l->front, l->opts.curve_secret, err, err_len) != 0)
        goto fail;
    if (zmq_bind(l->writer_in, WRITER_EP) != 0 || zmq_bind(l->done, DONE_EP) != 0 ||
        zmq_connect(l->to_writer, WRITER_EP) != 0) {
        snprintf(err, err_len, "inproc bind: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_bind(l->front, l->opts.listen) != 0) {
        snprintf(err, err_len, "--listen %s: %s", l->opts.listen, zmq_strerror(zmq_errno()));
        goto fail;
    }
    size_t eplen = sizeof(l->endpoint);
    zmq_getsockopt(l->front, ZMQ_LAST_ENDPOINT, l->endpoint, &eplen);
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        snprintf(err, err_len, "cannot start the writer thread");
        goto fail;
    }
    l->writer_started = 1;
    for (uint32_t i = 0; i < l->opts.checkers; i++) {
        checker_arg *ca = &l->checker_args[i];
        ca->l = l;
        ca->to_writer = zmq_socket(l->ctx, ZMQ_PUSH);
        if (!ca->to_writer) {
            snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
        zmq_setsockopt(ca->to_writer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        if (zmq_connect(ca->to_writer, WRITER_EP) != 0) {
            snprintf(err, err_len, "inproc connect: %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
        if (pthread_create(&l->checkers[i], NULL, checker_main, ca) != 0) {
            snprintf(err, err_len, "cannot start the checker threads");
            goto fail;
        }
        l->n_checkers++;
    }
    logf_(l, "origin %s, %llu entries, %s", sdm_ledger_log_origin(l->log),
          (unsigned long long)sdm_ledger_log_size(l->log),
          l->any_worker ? "any worker key accepted (no --workers)" : "worker allow-list on");
    return l;
fail:
    sdm_ledger_destroy(&l);
    return NULL;
}

const char *sdm_ledger_endpoint(const sdm_ledger_t *self)
{
    return self->endpoint;
}

const uint8_t *sdm_ledger_key(const sdm_ledger_t *self)
{
    return self->kp->pk;
}

void sdm_ledger_stop(sdm_ledger_t *self)
{
    self->stop_requested = 1;
    char c = 1;
    ssize_t rc = write(self->stop_pipe[1], &c, 1);
    (void)rc;
}

void sdm_ledger_destroy(sdm_ledger_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_ledger_t *l = *self_p;
    /* the checkers finish what is queued (nothing, after a clean run) and go */
    pthread_mutex_lock(&l->check_mu);
    l->checkers_stop = 1;
    pthread_cond_broadcast(&l->check_cv);
    pthread_mutex_unlock(&l->check_mu);
    for (int i = 0; i < l->n_checkers; i++)
        pthread_join(l->checkers[i], NULL);
    for (int i = 0; i < MAX_CHECKERS; i++)
        if (l->checker_args[i].to_writer)
            zmq_close(l->checker_args[i].to_writer);
    if (l->writer_started) {
        send_ptr(l->to_writer, NULL);
        pthread_join(l->writer, NULL);
    }
    if (l->done) {
        void *p;
        while (zmq_recv(l->done, &p, sizeof(p), ZMQ_DONTWAIT) == (int)sizeof(p))
            job_free(p);
    }
    void *socks[] = {l->front, l->to_writer, l->writer_in, l->done};
    for (size_t i = 0; i < 4; i++)
        if (socks[i])
            zmq_close(socks[i]);
    if (l->zap)
        sdm_zap_stop(&l->zap, l->ctx);
    if (l->ctx)
        zmq_ctx_term(l->ctx);
    sdm_ledger_reader_close(&l->reader);
    sdm_ledger_log_close(&l->log);
    sdm_keypair_destroy(&l->kp);
    free(l->workers);
    pthread_mutex_destroy(&l->check_mu);
    sdm_ratelog_destroy(&l->ilog);
    pthread_cond_destroy(&l->check_cv);
    for (int i = 0; i < 2; i++)
        if (l->stop_pipe[i] >= 0)
            close(l->stop_pipe[i]);
    free((char *)l->opts.listen);
    free((char *)l->opts.data_dir);
    free((char *)l->opts.workers);
    free((char *)l->opts.origin);
    free((char *)l->opts.curve_secret);
    free((char *)l->opts.allow);
    free(l);
    *self_p = NULL;
}
