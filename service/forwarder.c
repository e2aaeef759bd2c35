/* forwarder.c - the worker's ledger link: delivers the durable outbox's rows to a ledger.
 *
 * The forwarder sends the outbox's pending rows to the ledger as `append` requests on a
 * DEALER socket, oldest first, at most LEDGER_WINDOW unanswered at a time, each with its
 * outbox seq as the request id. An answer settles its row: ok (with the leaf hash of exactly
 * the bytes sent) -> done; bad_request, unauthorized or too_large -> rejected for good, since
 * the same bytes would get the same answer; anything else -> sent again after a backoff of
 * 50 ms doubling to 5 s. When a request has waited LEDGER_SILENCE_NS with no answer, the
 * socket is closed and opened again and every unanswered row is sent again. The ledger
 * answers an envelope it already has with the same index (duplicate: true), so sending at
 * least once gives exactly one log entry.
 */
#include "forwarder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "merkle.h"
#include "netsec.h"
#include "wire.h"

#define LEDGER_WINDOW 64
#define LEDGER_SILENCE_NS (5000ull * 1000000ull)
#define LEDGER_BACKOFF_MIN_MS 50
#define LEDGER_BACKOFF_MAX_MS 5000
#define LEDGER_TICK_MS 1000
#define LEDGER_MAX_REPLY (1 << 20) /* answers are a few hundred bytes */

typedef struct flight {
    uint64_t seq;
    uint8_t leaf[SDM_HASH_LEN]; /* SHA-256(0x00 || envelope): the leaf_hash the ledger must give */
    uint64_t sent_at;           /* monotonic ns; 0 while waiting to be sent again */
    uint64_t retry_at;          /* while waiting: not before this */
    uint32_t backoff_ms;        /* the wait after the next transient error */
} flight;

struct sdm_forwarder {
    /* set at start, then only read */
    void *ctx;
    char *endpoint;
    sdm_outbox_t *ob;         /* put by the worker's threads, settled here */
    int quiet;
    int nudge_pipe[2];        /* a byte here wakes the thread: a row was put, or stop */
    atomic_int stop;
    pthread_t thread;

    /* the thread's own */
    void *sock;
    flight fl[LEDGER_WINDOW]; /* in order of seq */
    size_t n;
    uint64_t last_seq;        /* the highest seq taken into the window on this socket */
    uint64_t now;             /* for the peek callbacks */
    uint64_t target;          /* fwd_resend_cb: the row wanted */
    int sent;                 /* fwd_resend_cb: 1 sent, -1 the socket would not take it */
    int silence_logged;       /* log once per outage, not every 5 s */
    msgpack_sbuffer buf;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The worker's log: these lines are the worker's, so they carry its prefix. */
static void log_line(int quiet, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void log_line(int quiet, const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("sediment-worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#define fwd_log(f, ...) log_line((f)->quiet, __VA_ARGS__)

/* A DEALER connected to the ledger: LINGER 0, so closing it (on a reconnect or at stop)
 * never waits for a ledger that is down. NULL with err set. */
static void *ledger_socket(void *ctx, const char *endpoint, char *err, size_t err_len)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s) {
        snprintf(err, err_len, "--ledger: zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0;
    int64_t max_reply = LEDGER_MAX_REPLY;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_reply, sizeof(max_reply));
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(err, err_len, "--ledger %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Sends row as {"id": seq, "op": "append", "entry": <the envelope as it is>}. 0, or -1
 * when out of memory or the socket will not take it now. */
static int fwd_send(sdm_forwarder_t *f, const sdm_outbox_row *row)
{
    msgpack_sbuffer_clear(&f->buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    sdm_wire_pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, row->seq);
    sdm_wire_pack_str(&pk, "op");
    sdm_wire_pack_str(&pk, "append");
    sdm_wire_pack_str(&pk, "entry");
    size_t head = f->buf.size;
    sdm_wire_pack_raw(&pk, row->entry, row->len);
    if (!f->buf.data || f->buf.size != head + row->len)
        return -1; /* a write into the buffer failed for memory */
    if (zmq_send(f->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 0)
        return -1;
    /* the first part was taken, so the rest of the message is too */
    zmq_send(f->sock, f->buf.data, f->buf.size, 0);
    return 0;
}

static void fwd_remove(sdm_forwarder_t *f, size_t i)
{
    memmove(&f->fl[i], &f->fl[i + 1], (f->n - i - 1) * sizeof(f->fl[0]));
    f->n--;
}

/* A transient failure for flight i: send it again after its backoff, which then doubles. */
static void fwd_later(sdm_forwarder_t *f, size_t i, uint64_t now)
{
    flight *fl = &f->fl[i];
    fl->sent_at = 0;
    fl->retry_at = now + (uint64_t)fl->backoff_ms * 1000000ull;
    fl->backoff_ms = fl->backoff_ms * 2 > LEDGER_BACKOFF_MAX_MS ? LEDGER_BACKOFF_MAX_MS
                                                                : fl->backoff_ms * 2;
}

static int fwd_fill_cb(void *ctx, const sdm_outbox_row *row)
{
    sdm_forwarder_t *f = ctx;
    if (f->n == LEDGER_WINDOW || fwd_send(f, row) != 0)
        return 1;
    flight *fl = &f->fl[f->n++];
    fl->seq = row->seq;
    sdm_merkle_leaf_hash(row->entry, row->len, fl->leaf);
    fl->sent_at = f->now;
    fl->retry_at = 0;
    fl->backoff_ms = LEDGER_BACKOFF_MIN_MS;
    f->last_seq = row->seq;
    return 0;
}

/* Takes the pending rows that are not in the window yet, up to its size, and sends them. */
static void fwd_fill(sdm_forwarder_t *f, uint64_t now)
{
    sdm_outbox_counts c;
    sdm_outbox_get_counts(f->ob, &c);
    /* every pending row up to last_seq is in the window, so this says whether any is not */
    if (f->n >= LEDGER_WINDOW || c.pending <= f->n)
        return;
    char err[256];
    f->now = now;
    if (sdm_outbox_peek(f->ob, f->last_seq, LEDGER_WINDOW - f->n, fwd_fill_cb, f, err,
                        sizeof(err)) < 0)
        fwd_log(f, "ledger: %s", err);
}

static int fwd_resend_cb(void *ctx, const sdm_outbox_row *row)
{
    sdm_forwarder_t *f = ctx;
    if (row->seq == f->target)
        f->sent = fwd_send(f, row) == 0 ? 1 : -1;
    return 1;
}

/* Sends again the rows whose backoff has run out. */
static void fwd_resend_due(sdm_forwarder_t *f, uint64_t now)
{
    for (size_t i = 0; i < f->n;) {
        flight *fl = &f->fl[i];
        if (fl->sent_at || fl->retry_at > now) {
            i++;
            continue;
        }
        char err[256];
        f->target = fl->seq;
        f->sent = 0;
        if (sdm_outbox_peek(f->ob, fl->seq - 1, 1, fwd_resend_cb, f, err,
                            sizeof(err)) < 0) {
            fwd_log(f, "ledger: %s", err);
            fwd_later(f, i++, now);
        } else if (f->sent == 0) {
            fwd_remove(f, i); /* no longer pending */
        } else if (f->sent < 0) {
            fwd_later(f, i++, now);
        } else {
            fl->sent_at = now;
            i++;
        }
    }
}

static int fwd_key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static void fwd_str(const msgpack_object *o, char *out, size_t cap)
{
    if (o->type == MSGPACK_OBJECT_STR)
        sdm_wire_printable(out, cap, o->via.str.ptr, o->via.str.size);
    else
        snprintf(out, cap, "?");
}

/* Settles the row an answer is about (see the comment above LEDGER_WINDOW). An answer that
 * cannot be read, or is about no row in the window (an answer to an earlier socket's
 * request), is dropped. */
static void fwd_answer(sdm_forwarder_t *f, const uint8_t *p, size_t len, uint64_t now)
{
    sdm_wire_error e = {0, ""};
    sdm_wire_limits lim = {0, 0};
    if (sdm_wire_precheck(p, len, &lim, &e) != SDM_WIRE_OK) {
        fwd_log(f, "ledger: unreadable answer dropped: %s", e.message);
        return;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)p, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        fwd_log(f, "ledger: an answer that is not a map was dropped");
        msgpack_unpacked_destroy(&u);
        return;
    }
    int have_id = 0, ok = -1, have_index = 0, duplicate = 0;
    uint64_t id = 0, index = 0;
    const uint8_t *leaf = NULL;
    char code[64] = "", message[256] = "";
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (fwd_key_is(k, "id") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            have_id = 1;
            id = v->via.u64;
        } else if (fwd_key_is(k, "ok") && v->type == MSGPACK_OBJECT_BOOLEAN) {
            ok = v->via.boolean;
        } else if (fwd_key_is(k, "index") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            have_index = 1;
            index = v->via.u64;
        } else if (fwd_key_is(k, "leaf_hash") && v->type == MSGPACK_OBJECT_BIN &&
                   v->via.bin.size == SDM_HASH_LEN) {
            leaf = (const uint8_t *)v->via.bin.ptr;
        } else if (fwd_key_is(k, "duplicate") && v->type == MSGPACK_OBJECT_BOOLEAN) {
            duplicate = v->via.boolean;
        } else if (fwd_key_is(k, "error") && v->type == MSGPACK_OBJECT_MAP) {
            for (uint32_t j = 0; j < v->via.map.size; j++) {
                const msgpack_object *ek = &v->via.map.ptr[j].key, *ev = &v->via.map.ptr[j].val;
                if (fwd_key_is(ek, "code"))
                    fwd_str(ev, code, sizeof(code));
                else if (fwd_key_is(ek, "message"))
                    fwd_str(ev, message, sizeof(message));
            }
        }
    }
    size_t i = 0;
    while (have_id && i < f->n && f->fl[i].seq != id)
        i++;
    if (!have_id || i == f->n) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    if (f->silence_logged) {
        fwd_log(f, "ledger %s: answering again", f->endpoint);
        f->silence_logged = 0;
    }
    char err[256];
    if (ok == 1) {
        int rc = -1;
        if (!have_index || !leaf)
            fwd_log(f, "ledger: the answer to outbox row %llu has no index or leaf_hash; "
                    "sending it again later", (unsigned long long)id);
        else if (memcmp(leaf, f->fl[i].leaf, SDM_HASH_LEN) != 0)
            fwd_log(f, "ledger: the answer to outbox row %llu names another leaf_hash than "
                    "the envelope sent; sending it again later", (unsigned long long)id);
        else if ((rc = sdm_outbox_done(f->ob, id, index, err, sizeof(err))) < 0)
            fwd_log(f, "ledger: %s", err);
        (void)duplicate; /* a duplicate is delivered all the same: the ledger has it once */
        if (rc < 0)
            fwd_later(f, i, now);
        else
            fwd_remove(f, i);
    } else if (ok == 0 && (strcmp(code, "bad_request") == 0 || strcmp(code, "unauthorized") == 0 ||
                           strcmp(code, "too_large") == 0)) {
        int rc = sdm_outbox_reject(f->ob, id, code, message, err, sizeof(err));
        if (rc < 0) {
            fwd_log(f, "ledger: %s", err);
            fwd_later(f, i, now);
        } else {
            fwd_log(f, "ledger refused outbox row %llu: %s: %s (kept in outbox.db as rejected, "
                    "not sent again)", (unsigned long long)id, code, message);
            fwd_remove(f, i);
        }
    } else {
        /* busy, internal, or an answer we cannot read: try again later */
        fwd_later(f, i, now);
    }
    msgpack_unpacked_destroy(&u);
}

/* Reads every answer waiting on the socket. The ledger's ROUTER sends [empty, payload]. */
static void fwd_read(sdm_forwarder_t *f)
{
    for (;;) {
        zmq_msg_t part[2], tmp;
        zmq_msg_init(&part[0]);
        zmq_msg_init(&part[1]);
        zmq_msg_init(&tmp);
        int n = 0, frames = 0, flags = ZMQ_DONTWAIT;
        /* the parts of a message arrive together: only the first read may find nothing */
        while (zmq_msg_recv(&tmp, f->sock, flags) >= 0) {
            frames++;
            int more = zmq_msg_more(&tmp);
            if (n < 2)
                zmq_msg_move(&part[n++], &tmp);
            if (!more)
                break;
            flags = 0;
        }
        if (frames == 2 && zmq_msg_size(&part[0]) == 0)
            fwd_answer(f, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]),
                       mono_ns());
        else if (frames > 0)
            fwd_log(f, "ledger: a malformed answer (%d frames) was dropped", frames);
        zmq_msg_close(&tmp);
        zmq_msg_close(&part[0]);
        zmq_msg_close(&part[1]);
        if (frames == 0)
            return; /* nothing more waiting */
    }
}

/* Closes the socket, opens a new one and empties the window: every pending row is sent
 * again from the oldest. */
static void fwd_reconnect(sdm_forwarder_t *f)
{
    if (f->sock && !f->silence_logged) {
        fwd_log(f, "ledger %s: no answer for %llu s; reconnecting, and sending the %zu "
                "unanswered entries again (they wait in outbox.db meanwhile)", f->endpoint,
                LEDGER_SILENCE_NS / 1000000000ull, f->n);
        f->silence_logged = 1;
    }
    if (f->sock)
        zmq_close(f->sock);
    char err[256];
    f->sock = ledger_socket(f->ctx, f->endpoint, err, sizeof(err));
    if (!f->sock)
        fwd_log(f, "%s", err);
    f->n = 0;
    f->last_seq = 0;
}

static int fwd_silent(const sdm_forwarder_t *f, uint64_t now)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->fl[i].sent_at && now - f->fl[i].sent_at >= LEDGER_SILENCE_NS)
            return 1;
    return 0;
}

/* How long poll may wait: until the next silence deadline or retry, at most a tick. */
static long fwd_timeout_ms(const sdm_forwarder_t *f, uint64_t now)
{
    uint64_t deadline = now + LEDGER_TICK_MS * 1000000ull;
    for (size_t i = 0; i < f->n; i++) {
        const flight *fl = &f->fl[i];
        uint64_t t = fl->sent_at ? fl->sent_at + LEDGER_SILENCE_NS : fl->retry_at;
        if (t < deadline)
            deadline = t;
    }
    return deadline <= now ? 0 : (long)((deadline - now + 999999) / 1000000);
}

static void *forwarder_main(void *arg)
{
    sdm_forwarder_t *f = arg;
    while (!atomic_load(&f->stop)) {
        uint64_t now = mono_ns();
        if (!f->sock || fwd_silent(f, now))
            fwd_reconnect(f);
        if (f->sock) {
            fwd_resend_due(f, now);
            fwd_fill(f, now);
        }
        zmq_pollitem_t items[2] = {
            {NULL, f->nudge_pipe[0], ZMQ_POLLIN, 0},
            {f->sock, 0, ZMQ_POLLIN, 0},
        };
        int rc = zmq_poll(items, f->sock ? 2 : 1, fwd_timeout_ms(f, now));
        if (rc < 0) {
            if (zmq_errno() != EINTR) {
                fwd_log(f, "ledger: poll: %s", zmq_strerror(zmq_errno()));
                usleep(100000);
            }
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char buf[64];
            while (read(f->nudge_pipe[0], buf, sizeof(buf)) > 0)
                ;
        }
        if (f->sock && (items[1].revents & ZMQ_POLLIN))
            fwd_read(f);
    }
    /* unanswered rows stay pending in outbox.db: the next start sends them first */
    if (f->sock)
        zmq_close(f->sock);
    f->sock = NULL;
    return NULL;
}

/* ---- the interface ------------------------------------------------------------------- */

/* Frees what start made, the thread being stopped or never started. */
static void forwarder_free(sdm_forwarder_t *f)
{
    if (f->sock)
        zmq_close(f->sock);
    for (int i = 0; i < 2; i++)
        if (f->nudge_pipe[i] >= 0)
            close(f->nudge_pipe[i]);
    msgpack_sbuffer_destroy(&f->buf);
    free(f->endpoint);
    free(f);
}

sdm_forwarder_t *sdm_forwarder_start(void *ctx, const char *endpoint, sdm_outbox_t *ob, int quiet,
                                     char *err, size_t err_len)
{
    sdm_forwarder_t *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, err_len, "--ledger: out of memory");
        return NULL;
    }
    f->nudge_pipe[0] = f->nudge_pipe[1] = -1;
    msgpack_sbuffer_init(&f->buf);
    f->ctx = ctx;
    f->ob = ob;
    f->quiet = quiet;
    f->endpoint = strdup(endpoint);
    if (!f->endpoint) {
        snprintf(err, err_len, "--ledger: out of memory");
        forwarder_free(f);
        return NULL;
    }
    if (pipe(f->nudge_pipe) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        forwarder_free(f);
        return NULL;
    }
    fcntl(f->nudge_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(f->nudge_pipe[1], F_SETFL, O_NONBLOCK);
    sdm_outbox_counts c;
    sdm_outbox_get_counts(ob, &c);
    if (c.pending)
        fwd_log(f, "ledger %s: %llu receipts and proofs from an earlier run wait in outbox.db; "
                "they go first", endpoint, (unsigned long long)c.pending);
    if (!sdm_net_is_local_endpoint(endpoint))
        fwd_log(f, "ledger %s: not a loopback address, and the ledger link has no CURVE yet: "
                "keep it on a private network", endpoint);
    /* connected before the thread starts so that a bad endpoint fails the start */
    f->sock = ledger_socket(ctx, f->endpoint, err, err_len);
    if (!f->sock) {
        forwarder_free(f);
        return NULL;
    }
    /* the socket is handed over: only the thread uses it from here */
    if (pthread_create(&f->thread, NULL, forwarder_main, f) != 0) {
        snprintf(err, err_len, "cannot start the ledger forwarder thread");
        forwarder_free(f);
        return NULL;
    }
    return f;
}

void sdm_forwarder_nudge(sdm_forwarder_t *self)
{
    char c = 1;
    /* non-blocking: a full pipe already holds a wake-up */
    ssize_t r = write(self->nudge_pipe[1], &c, 1);
    (void)r;
}

void sdm_forwarder_stop(sdm_forwarder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sdm_forwarder_t *f = *self_p;
    atomic_store(&f->stop, 1);
    sdm_forwarder_nudge(f);
    pthread_join(f->thread, NULL);
    forwarder_free(f);
    *self_p = NULL;
}

void sdm_forwarder_note_stranded(const char *dir, int quiet)
{
    char path[4096], tmp[256];
    snprintf(path, sizeof(path), "%s/outbox.db", dir);
    if (access(path, F_OK) != 0)
        return;
    sdm_outbox_t *ob = sdm_outbox_open(dir, tmp, sizeof(tmp));
    if (!ob)
        return;
    sdm_outbox_counts c;
    sdm_outbox_get_counts(ob, &c);
    if (c.pending)
        log_line(quiet, "outbox.db holds %llu receipts and proofs not yet delivered to a ledger; "
                 "start with --ledger to deliver them", (unsigned long long)c.pending);
    sdm_outbox_close(&ob);
}
