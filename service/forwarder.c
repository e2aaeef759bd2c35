/* forwarder.c - the worker's ledger link: delivers the durable outbox's rows to a ledger.
 *
 * The forwarder sends the outbox's pending rows to the ledger as `append` requests on a
 * DEALER socket (a CURVE client when it has the ledger's public key), oldest first, at most
 * LEDGER_WINDOW unanswered at a time, each with its outbox seq as the request id. An answer
 * settles its row: ok (with the leaf hash of exactly the bytes sent) -> delivered;
 * bad_request, unauthorized or too_large -> rejected for good, since the same bytes would get
 * the same answer; anything else -> sent again after a backoff of 50 ms doubling to 5 s. The
 * answers read in one round are settled together, in one outbox transaction (one fsync).
 *
 * A request larger than the ledger's --max-msg never gets an answer: the ledger's socket
 * drops the connection instead (ZMQ_MAXMSGSIZE). So a row whose request would be larger than
 * opts.max_msg is rejected here as too_large and never sent, instead of being sent again
 * every 5 s for ever.
 *
 * A request larger than the ledger's --max-msg but not the worker's (the two set apart) is
 * dropped the same way, and takes along the requests sent behind it on that connection. The
 * monitor sees the drop at once (ZMQ_EVENT_DISCONNECTED). With requests unanswered, the socket
 * is closed and opened again (LINGER 0: nothing queued on the old one survives) and the link
 * goes into probing: one request at a time until one is answered, then the whole window again.
 * A request that was alone on the connection when it dropped is "held": taken out of the
 * window and tried again only alone (nothing else in flight, the window drained for it), after
 * 1 s doubling to 60 s, so the rows behind it go on. A drop with nothing of ours in flight
 * (the ledger restarted, perhaps with a larger --max-msg) makes every held row due at once.
 *
 * When a request has waited LEDGER_SILENCE_NS with no answer, or the socket has not taken a
 * row for that long (libzmq stops reconnecting once the ledger refused a handshake), the
 * socket is closed and opened again and the unanswered rows are sent again, probing as above
 * (silence is never blamed on a row: a ledger that is down drops nothing). The ledger answers
 * an envelope it already has with the same index (duplicate: true), so sending at least once
 * gives exactly one log entry. The monitor also reports failed handshakes (a wrong CURVE key,
 * a key not on the ledger's allow-list, CURVE on one side only), which would otherwise look
 * like silence.
 */
#include "forwarder.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <sodium.h>
#include <zmq.h>

#include "client_internal.h"
#include "merkle.h"
#include "netsec.h"
#include "sign.h"
#include "wire.h"

#define LEDGER_WINDOW 64
#define LEDGER_SILENCE_NS (5000ull * 1000000ull)
#define LEDGER_BACKOFF_MIN_MS 50
#define LEDGER_BACKOFF_MAX_MS 5000
#define LEDGER_HELD_MIN_MS 1000    /* a held row's first wait before it is tried alone again */
#define LEDGER_HELD_MAX_MS 60000
#define LEDGER_TICK_MS 1000
#define LEDGER_MAX_REPLY (1 << 20) /* answers are a few hundred bytes */
#define LEDGER_MIN_MAX_MSG 1024    /* the ledger's own lower bound for --max-msg */
#define NEVER UINT64_MAX

#define MON_EVENTS                                                                                 \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                        \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |                       \
     ZMQ_EVENT_DISCONNECTED)

typedef struct flight {
    uint64_t seq;
    uint8_t leaf[SDM_HASH_LEN]; /* SHA-256(0x00 || envelope): the leaf_hash the ledger must give */
    uint64_t sent_at;           /* monotonic ns; 0 while waiting to be sent again or settled */
    uint64_t retry_at;          /* while waiting: not before this (NEVER while being settled) */
    uint32_t backoff_ms;        /* the wait after the next transient error (held: the next
                                 * wait before it is tried alone again) */
    size_t bytes;               /* the request's size, for the log */
    int settling;               /* an outcome is queued in settle[]: later answers are ignored */
} flight;

/* An outcome waiting for this round's outbox transaction. */
typedef struct outcome {
    uint64_t seq, index;
    int rejected;      /* 0: delivered at index */
    int local;         /* rejected here (too large to send), not by the ledger */
    char code[32];
    char message[256];
} outcome;

struct sdm_forwarder {
    /* set by new and start, then only read */
    void *ctx;
    char *endpoint;
    sdm_outbox_t *ob;         /* put by the worker's threads, settled here */
    int quiet;
    int64_t max_msg;
    int curve;
    uint8_t server_key[32];   /* the ledger's CURVE public key */
    uint8_t client_pub[32];   /* ours, for the log and the socket */
    uint8_t *client_sec;      /* 32 bytes of sodium_malloc memory */
    char client_pub_z85[41];
    int nudge_pipe[2];        /* a byte here wakes the thread: a row was put, or stop */
    atomic_int stop;
    int started;
    pthread_t thread;

    /* the thread's own */
    void *sock;
    void *mon;                /* PAIR receiving the socket's handshake events */
    unsigned mon_gen;         /* a fresh inproc name for each socket's monitor */
    flight fl[LEDGER_WINDOW]; /* in order of seq */
    size_t n;
    flight *held;             /* rows a connection dropped on while alone, in order of seq;
                               * out of the window, sent only alone */
    size_t n_held, cap_held;
    atomic_size_t held_count; /* n_held, for stats from the worker's threads */
    int probing;              /* after a drop or a silence: one request at a time until an
                               * answer comes */
    int dropped;              /* the monitor saw the connection drop */
    int connected;            /* the monitor saw the handshake succeed, and no drop since */
    uint64_t last_seq;        /* the highest seq taken into the window on this socket */
    uint64_t now;             /* for the peek callbacks */
    uint64_t target;          /* fwd_resend_cb: the row wanted */
    int skipped;              /* fwd_fill_cb passed a held row */
    int sent;                 /* fwd_resend_cb: 1 sent (or queued as too large), -1 the socket
                               * would not take it */
    uint64_t stuck_since;     /* when the socket first would not take a row (0: it takes
                               * them); libzmq gives up on a connection whose handshake the
                               * ledger refused, so a socket stuck that long is remade */
    int silence_logged;       /* log once per outage, not every 5 s */
    int handshake_logged;     /* the same for a failing handshake */
    outcome settle[LEDGER_WINDOW];
    size_t n_settle;
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

/* ---- the socket ---------------------------------------------------------------------- */

static void fwd_close_socket(sdm_forwarder_t *f)
{
    if (f->sock)
        zmq_close(f->sock);
    if (f->mon)
        zmq_close(f->mon);
    f->sock = f->mon = NULL;
}

/* A DEALER connected to the ledger: LINGER 0, so closing it (on a reconnect or at stop)
 * never waits for a ledger that is down; CURVE keys when given; a monitor PAIR for its
 * handshake events, connected before the DEALER so that no event is missed. Without the
 * monitor the link still works, it only cannot say why a handshake fails. 0, or -1 with err
 * set. */
static int fwd_open_socket(sdm_forwarder_t *f, char *err, size_t err_len)
{
    f->sock = zmq_socket(f->ctx, ZMQ_DEALER);
    if (!f->sock) {
        snprintf(err, err_len, "--ledger: zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int linger = 0;
    int64_t max_reply = LEDGER_MAX_REPLY;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(f->sock, ZMQ_MAXMSGSIZE, &max_reply, sizeof(max_reply));
    if (f->curve &&
        (zmq_setsockopt(f->sock, ZMQ_CURVE_SERVERKEY, f->server_key, 32) != 0 ||
         zmq_setsockopt(f->sock, ZMQ_CURVE_PUBLICKEY, f->client_pub, 32) != 0 ||
         zmq_setsockopt(f->sock, ZMQ_CURVE_SECRETKEY, f->client_sec, 32) != 0)) {
        snprintf(err, err_len, "--ledger-client-key: setting the CURVE keys: %s",
                 zmq_strerror(zmq_errno()));
        fwd_close_socket(f);
        return -1;
    }
    char addr[96];
    snprintf(addr, sizeof(addr), "inproc://sdm-forwarder-monitor-%p-%u", (void *)f, ++f->mon_gen);
    if (zmq_socket_monitor(f->sock, addr, MON_EVENTS) == 0) {
        f->mon = zmq_socket(f->ctx, ZMQ_PAIR);
        if (f->mon) {
            zmq_setsockopt(f->mon, ZMQ_LINGER, &linger, sizeof(linger));
            if (zmq_connect(f->mon, addr) != 0) {
                zmq_close(f->mon);
                f->mon = NULL;
            }
        }
    }
    if (zmq_connect(f->sock, f->endpoint) != 0) {
        snprintf(err, err_len, "--ledger %s: %s", f->endpoint, zmq_strerror(zmq_errno()));
        fwd_close_socket(f);
        return -1;
    }
    return 0;
}

/* Logs why a handshake failed, once until one succeeds. */
static void fwd_handshake_event(sdm_forwarder_t *f, uint16_t event, uint32_t value)
{
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (f->handshake_logged)
            fwd_log(f, "ledger %s: handshake succeeded%s", f->endpoint,
                    f->curve ? " (CURVE)" : "");
        f->handshake_logged = 0;
        return;
    }
    if (f->handshake_logged)
        return;
    f->handshake_logged = 1;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        fwd_log(f, "ledger %s: the ledger refused this worker's CURVE client key (status %u): "
                "its --allow file must list %s; the entries wait in outbox.db", f->endpoint,
                value, f->client_pub_z85);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
             value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH && f->curve)
        fwd_log(f, "ledger %s: the ledger does not speak CURVE (started without "
                "--curve-secret?); the entries wait in outbox.db", f->endpoint);
    else if (f->curve)
        fwd_log(f, "ledger %s: the CURVE handshake failed: is --ledger-server-key the ledger's "
                "public key (the pair of its --curve-secret), and is the ledger started with "
                "--curve-secret? the entries wait in outbox.db", f->endpoint);
    else
        fwd_log(f, "ledger %s: the handshake failed (a CURVE ledger needs --ledger-server-key "
                "and --ledger-client-key); the entries wait in outbox.db", f->endpoint);
}

/* Reads the monitor's events: two frames each, [u16 event, u32 value] and the endpoint. A
 * dropped connection is noted for the main loop, which reads the answers first. */
static void fwd_read_events(sdm_forwarder_t *f)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, f->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        int ok = zmq_msg_size(&m) >= 6;
        if (ok) {
            memcpy(&event, zmq_msg_data(&m), 2);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        while (zmq_msg_more(&m) && zmq_msg_recv(&m, f->mon, 0) >= 0)
            ;
        zmq_msg_close(&m);
        if (ok && event == ZMQ_EVENT_DISCONNECTED) {
            /* only a connection that was up can have been dropped for a request: one whose
             * handshake failed never carried any */
            f->dropped |= f->connected;
            f->connected = 0;
        } else if (ok) {
            f->connected = event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
            fwd_handshake_event(f, event, value);
        }
    }
}

/* ---- the window ---------------------------------------------------------------------- */

/* Packs row as {"id": seq, "op": "append", "entry": <the envelope as it is>} into f->buf and
 * sets *bytes to the request's size. 0; 1 when the request would be over max_msg (then only
 * its head is packed: a huge entry is not copied for nothing); -1 when out of memory. */
static int fwd_pack(sdm_forwarder_t *f, const sdm_outbox_row *row, size_t *bytes)
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
    *bytes = head + row->len;
    if (!f->buf.data)
        return -1;
    if ((uint64_t)*bytes > (uint64_t)f->max_msg)
        return 1;
    sdm_wire_pack_raw(&pk, row->entry, row->len);
    return f->buf.data && f->buf.size == head + row->len ? 0 : -1;
}

/* Queues an outcome for the round's transaction; the flight waits for it. */
static outcome *fwd_queue(sdm_forwarder_t *f, flight *fl)
{
    outcome *o = &f->settle[f->n_settle++];
    memset(o, 0, sizeof(*o));
    o->seq = fl->seq;
    fl->settling = 1;
    fl->sent_at = 0;
    fl->retry_at = NEVER;
    return o;
}

/* A row whose request is over max_msg: rejected here, since the ledger would drop it. */
static void fwd_too_large(sdm_forwarder_t *f, flight *fl, size_t bytes)
{
    outcome *o = fwd_queue(f, fl);
    o->rejected = 1;
    o->local = 1;
    snprintf(o->code, sizeof(o->code), "too_large");
    snprintf(o->message, sizeof(o->message),
             "not sent: the append request is %zu bytes, over the ledger's --max-msg of %" PRId64
             " (--ledger-max-msg)", bytes, f->max_msg);
}

/* Sends row as flight fl (sent_at = f->now): 0 sent or queued as too large, -1 when out of
 * memory or the socket will not take it now. */
static int fwd_send(sdm_forwarder_t *f, flight *fl, const sdm_outbox_row *row)
{
    size_t bytes;
    int rc = fwd_pack(f, row, &bytes);
    if (rc < 0)
        return -1;
    fl->bytes = bytes;
    if (rc > 0) {
        fwd_too_large(f, fl, bytes);
        return 0;
    }
    if (zmq_send(f->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 0) {
        if (!f->stuck_since)
            f->stuck_since = f->now;
        return -1;
    }
    /* the first part was taken, so the rest of the message is too */
    zmq_send(f->sock, f->buf.data, f->buf.size, 0);
    fl->sent_at = f->now;
    f->stuck_since = 0;
    return 0;
}

static int fwd_is_held(const sdm_forwarder_t *f, const flight *fl)
{
    return f->n_held && fl >= f->held && fl < f->held + f->n_held;
}

/* The held row seq (they are in order of seq), or NULL. */
static flight *fwd_find_held(sdm_forwarder_t *f, uint64_t seq)
{
    size_t lo = 0, hi = f->n_held;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->held[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->n_held && f->held[lo].seq == seq ? &f->held[lo] : NULL;
}

/* Row seq's flight, in the window or held, or NULL. */
static flight *fwd_find(sdm_forwarder_t *f, uint64_t seq)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->fl[i].seq == seq)
            return &f->fl[i];
    return fwd_find_held(f, seq);
}

/* Takes fl out of the window, or out of the held rows. */
static void fwd_remove(sdm_forwarder_t *f, flight *fl)
{
    int held = fwd_is_held(f, fl);
    flight *base = held ? f->held : f->fl;
    size_t *n = held ? &f->n_held : &f->n;
    size_t i = (size_t)(fl - base);
    memmove(&base[i], &base[i + 1], (*n - i - 1) * sizeof(*fl));
    (*n)--;
    atomic_store(&f->held_count, f->n_held);
}

/* Moves window flight fl to the held rows. The held flight, or NULL when out of memory (then
 * fl stays in the window). */
static flight *fwd_hold(sdm_forwarder_t *f, flight *fl)
{
    if (f->n_held == f->cap_held) {
        size_t cap = f->cap_held ? 2 * f->cap_held : 16;
        flight *h = realloc(f->held, cap * sizeof(*h));
        if (!h)
            return NULL;
        f->held = h;
        f->cap_held = cap;
    }
    size_t i = f->n_held;
    while (i > 0 && f->held[i - 1].seq > fl->seq)
        i--;
    memmove(&f->held[i + 1], &f->held[i], (f->n_held - i) * sizeof(*fl));
    f->held[i] = *fl;
    f->held[i].backoff_ms = LEDGER_HELD_MIN_MS;
    f->n_held++;
    fwd_remove(f, fl);
    return &f->held[i];
}

/* A held row's connection dropped again: it is tried alone again after its wait, which then
 * doubles. */
static void fwd_held_later(flight *h, uint64_t now)
{
    h->settling = 0;
    h->sent_at = 0;
    h->retry_at = now + (uint64_t)h->backoff_ms * 1000000ull;
    h->backoff_ms = h->backoff_ms * 2 > LEDGER_HELD_MAX_MS ? LEDGER_HELD_MAX_MS : h->backoff_ms * 2;
}

/* Every flight, the window's then the held rows': i from 0 to f->n + f->n_held. */
static flight *fwd_flight_at(sdm_forwarder_t *f, size_t i)
{
    return i < f->n ? &f->fl[i] : &f->held[i - f->n];
}

/* How many requests wait for an answer; *only (when given) is set to one of them. */
static size_t fwd_in_flight(sdm_forwarder_t *f, flight **only)
{
    size_t k = 0;
    for (size_t i = 0; i < f->n + f->n_held; i++) {
        flight *fl = fwd_flight_at(f, i);
        if (fl->sent_at) {
            k++;
            if (only)
                *only = fl;
        }
    }
    return k;
}

/* A held row that is due to be tried (alone), or NULL. */
static flight *fwd_held_due(sdm_forwarder_t *f, uint64_t now)
{
    for (size_t i = 0; i < f->n_held; i++) {
        flight *h = &f->held[i];
        if (!h->sent_at && !h->settling && h->retry_at <= now)
            return h;
    }
    return NULL;
}

/* Whether a window row may be sent now: never while a held row is in flight or due (the
 * window drains for it), and while probing only when nothing is in flight. */
static int fwd_may_send(sdm_forwarder_t *f, uint64_t now)
{
    for (size_t i = 0; i < f->n_held; i++)
        if (f->held[i].sent_at)
            return 0;
    if (fwd_held_due(f, now))
        return 0;
    return !f->probing || fwd_in_flight(f, NULL) == 0;
}

/* A transient failure for fl: send it again after its backoff, which then doubles. */
static void fwd_later(flight *fl, uint64_t now)
{
    fl->settling = 0;
    fl->sent_at = 0;
    fl->retry_at = now + (uint64_t)fl->backoff_ms * 1000000ull;
    fl->backoff_ms = fl->backoff_ms * 2 > LEDGER_BACKOFF_MAX_MS ? LEDGER_BACKOFF_MAX_MS
                                                                : fl->backoff_ms * 2;
}

/* Writes the round's outcomes to the outbox in one transaction and takes their rows out of
 * the window. When the transaction fails, every one of them stays pending and is sent again
 * after its backoff (the ledger answers the resend as a duplicate). */
static void fwd_settle(sdm_forwarder_t *f, uint64_t now)
{
    if (f->n_settle == 0)
        return;
    sdm_outbox_settlement items[LEDGER_WINDOW];
    for (size_t k = 0; k < f->n_settle; k++) {
        const outcome *o = &f->settle[k];
        items[k] = (sdm_outbox_settlement){.seq = o->seq, .index = o->index,
                                           .code = o->rejected ? o->code : NULL,
                                           .message = o->rejected ? o->message : NULL};
    }
    char err[256];
    int rc = sdm_outbox_settle(f->ob, items, f->n_settle, err, sizeof(err));
    if (rc < 0)
        fwd_log(f, "ledger: %s; those rows stay pending and go again", err);
    for (size_t k = 0; k < f->n_settle; k++) {
        const outcome *o = &f->settle[k];
        flight *fl = fwd_find(f, o->seq);
        if (rc < 0) {
            if (fl)
                fwd_later(fl, now);
            continue;
        }
        if (items[k].settled && o->local)
            fwd_log(f, "outbox row %" PRIu64 " %s (kept in outbox.db as rejected: %s)", o->seq,
                    o->message, o->code);
        else if (items[k].settled && o->rejected)
            fwd_log(f, "ledger refused outbox row %" PRIu64 ": %s: %s (kept in outbox.db as "
                    "rejected, not sent again)", o->seq, o->code, o->message);
        else if (items[k].settled && fl && fwd_is_held(f, fl))
            fwd_log(f, "ledger took the held outbox row %" PRIu64 " (%zu bytes)", o->seq,
                    fl->bytes);
        if (fl)
            fwd_remove(f, fl);
    }
    f->n_settle = 0;
}

static int fwd_fill_cb(void *ctx, const sdm_outbox_row *row)
{
    sdm_forwarder_t *f = ctx;
    if (f->n == LEDGER_WINDOW || !fwd_may_send(f, f->now))
        return 1;
    if (fwd_find_held(f, row->seq)) {
        f->last_seq = row->seq; /* it goes alone, in its own time */
        f->skipped = 1;
        return 0;
    }
    flight *fl = &f->fl[f->n];
    memset(fl, 0, sizeof(*fl));
    fl->seq = row->seq;
    fl->backoff_ms = LEDGER_BACKOFF_MIN_MS;
    if (fwd_send(f, fl, row) != 0)
        return 1;
    sdm_merkle_leaf_hash(row->entry, row->len, fl->leaf);
    f->n++;
    f->last_seq = row->seq;
    return 0;
}

/* Takes the pending rows that are neither in the window nor held, up to the window's size,
 * and sends them. */
static void fwd_fill(sdm_forwarder_t *f, uint64_t now)
{
    f->now = now;
    for (;;) {
        sdm_outbox_counts c;
        sdm_outbox_get_counts(f->ob, &c);
        /* every pending row up to last_seq is in the window or held, and every held row is
         * pending, so this says whether any row is neither */
        if (f->n >= LEDGER_WINDOW || c.pending <= f->n + f->n_held || !fwd_may_send(f, now))
            return;
        char err[256];
        uint64_t before = f->last_seq;
        f->skipped = 0;
        if (sdm_outbox_peek(f->ob, f->last_seq, LEDGER_WINDOW - f->n, fwd_fill_cb, f, err,
                            sizeof(err)) < 0) {
            fwd_log(f, "ledger: %s", err);
            return;
        }
        /* again only to get past held rows that took the peek's places */
        if (!f->skipped || f->last_seq == before)
            return;
    }
}

static int fwd_resend_cb(void *ctx, const sdm_outbox_row *row)
{
    sdm_forwarder_t *f = ctx;
    if (row->seq == f->target) {
        flight *fl = fwd_find(f, row->seq);
        f->sent = fl && fwd_send(f, fl, row) == 0 ? 1 : -1;
    }
    return 1;
}

/* Sends fl's row again: 1 sent (or queued as too large), 0 the row is no longer pending
 * (fl is removed), -1 not sent (an outbox error, logged, or the socket would not take it). */
static int fwd_resend(sdm_forwarder_t *f, flight *fl)
{
    char err[256];
    f->target = fl->seq;
    f->sent = 0;
    if (sdm_outbox_peek(f->ob, fl->seq - 1, 1, fwd_resend_cb, f, err, sizeof(err)) < 0) {
        fwd_log(f, "ledger: %s", err);
        return -1;
    }
    if (f->sent == 0)
        fwd_remove(f, fl);
    return f->sent;
}

/* Sends again the window's rows whose backoff has run out, as far as fwd_may_send allows. */
static void fwd_resend_due(sdm_forwarder_t *f, uint64_t now)
{
    f->now = now;
    for (size_t i = 0; i < f->n && fwd_may_send(f, now);) {
        flight *fl = &f->fl[i];
        if (fl->sent_at || fl->settling || fl->retry_at > now) {
            i++;
            continue;
        }
        int rc = fwd_resend(f, fl);
        if (rc < 0)
            fwd_later(fl, now);
        if (rc != 0)
            i++;
    }
}

/* Sends the held row that is due, alone: once nothing else is in flight. */
static void fwd_send_held(sdm_forwarder_t *f, uint64_t now)
{
    f->now = now;
    flight *h = fwd_held_due(f, now);
    if (!h || fwd_in_flight(f, NULL) > 0)
        return;
    if (fwd_resend(f, h) < 0) {
        h->sent_at = 0;
        h->retry_at = now + LEDGER_BACKOFF_MIN_MS * 1000000ull;
    }
}

/* The ledger's codes that mean the entry itself is refused (SPEC §6, docs/ledger.md): the
 * same bytes would get the same answer. busy and internal are the ledger's state; any other
 * code (unknown_op: not a ledger at that endpoint?) is not the entry's fault either. */
static int fwd_permanent(const char *code)
{
    return strcmp(code, "bad_request") == 0 || strcmp(code, "unauthorized") == 0 ||
           strcmp(code, "too_large") == 0;
}

/* Queues the outcome an answer gives its row (see the comment at the top). The answer is read
 * and checked by the client's own code (client.c: the same pre-check, parse and `append`
 * rules as `sediment` uses, and fuzzed by tests/fuzz/fuzz_reply.c). An answer that cannot be
 * read, or is about no row in the window or held (an answer to an earlier socket's request),
 * or about a row already settled this round, is dropped. */
static void fwd_answer(sdm_forwarder_t *f, const uint8_t *p, size_t len, uint64_t now)
{
    char err[256];
    sdm_reply_t *r = sdm_reply_parse(p, len, err, sizeof(err));
    if (!r) {
        fwd_log(f, "ledger: unreadable answer dropped: %s", err);
        return;
    }
    uint64_t id = 0;
    flight *fl = sdm_reply_u64(r, "id", &id) == 0 ? fwd_find(f, id) : NULL;
    if (!fl || fl->settling) {
        sdm_reply_destroy(&r);
        return;
    }
    f->probing = 0; /* the connection carries requests again */
    if (f->silence_logged) {
        fwd_log(f, "ledger %s: answering again", f->endpoint);
        f->silence_logged = 0;
    }
    sdm_client_status st = sdm_client_check_reply("append", r, id, err, sizeof(err));
    const char *code = sdm_reply_str(r, "error.code");
    size_t leaf_len = 0;
    const uint8_t *leaf = sdm_reply_bin(r, "leaf_hash", &leaf_len);
    uint64_t index = 0;
    if (st == SDM_CLIENT_OK && leaf && leaf_len == SDM_HASH_LEN &&
        sdm_reply_u64(r, "index", &index) == 0) {
        /* duplicate: true is a delivery all the same: the ledger has the entry once */
        if (memcmp(leaf, fl->leaf, SDM_HASH_LEN) != 0) {
            fwd_log(f, "ledger: the answer to outbox row %" PRIu64 " names another leaf_hash "
                    "than the envelope sent; sending it again later", id);
            fwd_later(fl, now);
        } else {
            fwd_queue(f, fl)->index = index;
        }
    } else if (sdm_client_status_is_server(st) && code && fwd_permanent(code)) {
        outcome *o = fwd_queue(f, fl);
        o->rejected = 1;
        sdm_wire_printable(o->code, sizeof(o->code), code, strlen(code));
        sdm_wire_printable(o->message, sizeof(o->message), err, strlen(err));
    } else {
        /* busy, internal, another code, or an answer that breaks the rules: again later */
        if (!sdm_client_status_is_server(st)) {
            char safe[256];
            sdm_wire_printable(safe, sizeof(safe), err, strlen(err));
            fwd_log(f, "ledger: the answer to outbox row %" PRIu64 " is malformed (%s); sending "
                    "it again later", id, safe);
        }
        fwd_later(fl, now);
    }
    sdm_reply_destroy(&r);
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
            fwd_answer(f, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), mono_ns());
        else if (frames > 0)
            fwd_log(f, "ledger: a malformed answer (%d frames) was dropped", frames);
        zmq_msg_close(&tmp);
        zmq_msg_close(&part[0]);
        zmq_msg_close(&part[1]);
        /* nothing more waiting, or as many outcomes as the window can hold */
        if (frames == 0 || f->n_settle == LEDGER_WINDOW)
            return;
    }
}

/* Closes the socket, opens a new one and empties the window: every pending row that is not
 * held is sent again from the oldest, probing (one request at a time until one is answered).
 * A held row that was in flight is due again at once: it was not to blame. */
static void fwd_reconnect(sdm_forwarder_t *f, uint64_t now)
{
    f->stuck_since = 0;
    fwd_close_socket(f);
    char err[256];
    if (fwd_open_socket(f, err, sizeof(err)) != 0)
        fwd_log(f, "%s", err);
    f->n = 0;
    f->last_seq = 0;
    f->dropped = 0;
    f->connected = 0;
    f->probing = 1;
    for (size_t i = 0; i < f->n_held; i++)
        if (f->held[i].sent_at) {
            f->held[i].sent_at = 0;
            f->held[i].retry_at = now;
        }
}

/* The connection dropped (the monitor said so, and the answers that came before are read).
 * The requests on it are lost. One alone on it is what the ledger dropped it for: held. */
static void fwd_on_drop(sdm_forwarder_t *f, uint64_t now)
{
    f->dropped = 0;
    flight *only = NULL;
    size_t k = fwd_in_flight(f, &only);
    if (k == 0) {
        /* nothing of ours: the ledger went away by itself, and may come back with a larger
         * --max-msg, so the held rows are tried again at once */
        for (size_t i = 0; i < f->n_held; i++)
            if (!f->held[i].settling)
                f->held[i].retry_at = now;
        return;
    }
    if (k == 1) {
        int was_held = fwd_is_held(f, only);
        flight *h = was_held ? only : fwd_hold(f, only);
        if (h) {
            if (!was_held)
                fwd_log(f, "ledger %s dropped the connection on outbox row %" PRIu64 " (an "
                        "append of %zu bytes) sent alone: most likely over the ledger's "
                        "--max-msg (give the worker the same --ledger-max-msg); it stays "
                        "pending in outbox.db and is tried alone again, after 1 s doubling to "
                        "%d s, while the rows behind it go on", f->endpoint, h->seq, h->bytes,
                        LEDGER_HELD_MAX_MS / 1000);
            fwd_held_later(h, now);
        }
    }
    fwd_reconnect(f, now);
}

static int fwd_silent(sdm_forwarder_t *f, uint64_t now)
{
    if (f->stuck_since && now - f->stuck_since >= LEDGER_SILENCE_NS)
        return 1;
    for (size_t i = 0; i < f->n + f->n_held; i++) {
        const flight *fl = fwd_flight_at(f, i);
        if (fl->sent_at && now - fl->sent_at >= LEDGER_SILENCE_NS)
            return 1;
    }
    return 0;
}

/* How long poll may wait: until the next silence deadline, or the next retry that may go
 * (one that may not waits for an answer, which wakes poll), at most a tick. */
static long fwd_timeout_ms(sdm_forwarder_t *f, uint64_t now)
{
    uint64_t deadline = now + LEDGER_TICK_MS * 1000000ull;
    int window_may = fwd_may_send(f, now), held_may = fwd_in_flight(f, NULL) == 0;
    for (size_t i = 0; i < f->n + f->n_held; i++) {
        const flight *fl = fwd_flight_at(f, i);
        uint64_t t = fl->sent_at                       ? fl->sent_at + LEDGER_SILENCE_NS
                     : (i < f->n ? window_may : held_may) ? fl->retry_at
                                                          : NEVER;
        if (!fl->settling && t < deadline)
            deadline = t;
    }
    return deadline <= now ? 0 : (long)((deadline - now + 999999) / 1000000);
}

static void *forwarder_main(void *arg)
{
    sdm_forwarder_t *f = arg;
    while (!atomic_load(&f->stop)) {
        uint64_t now = mono_ns();
        if (!f->sock) {
            fwd_reconnect(f, now);
        } else if (fwd_silent(f, now)) {
            if (!f->silence_logged)
                fwd_log(f, "ledger %s: no answer for %llu s; reconnecting, and sending the %zu "
                        "unanswered entries again, one at a time until the ledger answers (they "
                        "wait in outbox.db meanwhile)", f->endpoint,
                        LEDGER_SILENCE_NS / 1000000000ull, fwd_in_flight(f, NULL));
            f->silence_logged = 1;
            fwd_reconnect(f, now);
        }
        if (f->sock) {
            fwd_resend_due(f, now);
            fwd_send_held(f, now);
            fwd_fill(f, now);
            fwd_settle(f, now); /* rows found too large to send */
        }
        zmq_pollitem_t items[3] = {
            {NULL, f->nudge_pipe[0], ZMQ_POLLIN, 0},
            {f->sock, 0, ZMQ_POLLIN, 0},
            {f->mon, 0, ZMQ_POLLIN, 0},
        };
        int n_items = !f->sock ? 1 : f->mon ? 3 : 2;
        int rc = zmq_poll(items, n_items, fwd_timeout_ms(f, now));
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
        if (f->sock && (items[1].revents & ZMQ_POLLIN)) {
            fwd_read(f);
            /* one transaction, one fsync, for every answer of the round */
            fwd_settle(f, mono_ns());
        }
        if (n_items == 3 && (items[2].revents & ZMQ_POLLIN)) {
            fwd_read_events(f);
            if (f->dropped) {
                /* answers that came just before the drop settle their rows first */
                fwd_read(f);
                fwd_settle(f, mono_ns());
                fwd_on_drop(f, mono_ns());
            }
        }
    }
    /* unanswered rows stay pending in outbox.db: the next start sends them first */
    fwd_close_socket(f);
    return NULL;
}

size_t sdm_forwarder_held(sdm_forwarder_t *self)
{
    return self ? atomic_load(&self->held_count) : 0;
}

/* ---- the interface ------------------------------------------------------------------- */

/* The ledger's public key: the file at arg when there is one, else arg itself as a key. */
static int fwd_server_key(const char *arg, uint8_t out[32], char *err, size_t err_len)
{
    if (!*arg) {
        snprintf(err, err_len, "--ledger-server-key: empty");
        return -1;
    }
    if (access(arg, F_OK) == 0)
        return sdm_net_read_curve_key("--ledger-server-key", arg, "CURVE public key", out, err,
                                      err_len);
    if (sdm_net_parse_curve_key(arg, out) == 0)
        return 0;
    snprintf(err, err_len, "--ledger-server-key %s: neither a file nor a CURVE public key (Z85, "
             "40 characters, or 64 hex digits)", arg);
    return -1;
}

sdm_forwarder_t *sdm_forwarder_new(const sdm_forwarder_opts *opts, char *err, size_t err_len)
{
    if (!opts || !opts->endpoint || !*opts->endpoint) {
        snprintf(err, err_len, "--ledger: expected an endpoint such as tcp://127.0.0.1:7720");
        return NULL;
    }
    if (!!opts->server_key != !!opts->client_key) {
        snprintf(err, err_len, "%s", opts->server_key
                                         ? "--ledger-client-key: needed with --ledger-server-key"
                                         : "--ledger-server-key: needed with --ledger-client-key");
        return NULL;
    }
    if (opts->max_msg != 0 && opts->max_msg < LEDGER_MIN_MAX_MSG) {
        snprintf(err, err_len, "--ledger-max-msg: %" PRId64 ", expected at least %d (the "
                 "ledger's own lower bound)", opts->max_msg, LEDGER_MIN_MAX_MSG);
        return NULL;
    }
    if (opts->server_key && !zmq_has("curve")) {
        snprintf(err, err_len, "--ledger-server-key: this libzmq was built without CURVE");
        return NULL;
    }
    if (sdm_sodium_init() != 0) {
        snprintf(err, err_len, "libsodium failed to initialise");
        return NULL;
    }
    sdm_forwarder_t *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, err_len, "--ledger: out of memory");
        return NULL;
    }
    f->nudge_pipe[0] = f->nudge_pipe[1] = -1;
    msgpack_sbuffer_init(&f->buf);
    f->quiet = opts->quiet;
    f->max_msg = opts->max_msg ? opts->max_msg : SDM_FORWARDER_DEFAULT_MAX_MSG;
    f->endpoint = strdup(opts->endpoint);
    if (!f->endpoint) {
        snprintf(err, err_len, "--ledger: out of memory");
        goto fail;
    }
    if (opts->server_key) {
        f->curve = 1;
        f->client_sec = sodium_malloc(32);
        if (!f->client_sec) {
            snprintf(err, err_len, "--ledger-client-key: out of memory");
            goto fail;
        }
        if (fwd_server_key(opts->server_key, f->server_key, err, err_len) != 0 ||
            sdm_net_read_curve_key("--ledger-client-key", opts->client_key,
                                   "CURVE secret key", f->client_sec, err, err_len) != 0)
            goto fail;
        /* a CURVE key pair is Curve25519: the public key is the base point times the secret */
        if (crypto_scalarmult_base(f->client_pub, f->client_sec) != 0) {
            snprintf(err, err_len, "--ledger-client-key %s: not a usable CURVE secret key",
                     opts->client_key);
            goto fail;
        }
        zmq_z85_encode(f->client_pub_z85, f->client_pub, 32);
    }
    if (pipe(f->nudge_pipe) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(f->nudge_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(f->nudge_pipe[1], F_SETFL, O_NONBLOCK);
    return f;
fail:
    sdm_forwarder_stop(&f);
    return NULL;
}

int sdm_forwarder_start(sdm_forwarder_t *self, void *ctx, sdm_outbox_t *ob, char *err,
                        size_t err_len)
{
    sdm_forwarder_t *f = self;
    f->ctx = ctx;
    f->ob = ob;
    sdm_outbox_counts c;
    sdm_outbox_get_counts(ob, &c);
    if (c.pending)
        fwd_log(f, "ledger %s: %" PRIu64 " receipts and proofs from an earlier run wait in "
                "outbox.db; they go first", f->endpoint, c.pending);
    if (f->curve)
        fwd_log(f, "ledger %s: CURVE, with the client key %s (the ledger's --allow file must "
                "list it)", f->endpoint, f->client_pub_z85);
    else if (!sdm_net_is_local_endpoint(f->endpoint))
        fwd_log(f, "ledger %s: not a loopback address, and the link is plain (no "
                "--ledger-server-key): keep it on a private network", f->endpoint);
    /* connected before the thread starts so that a bad endpoint fails the start */
    if (fwd_open_socket(f, err, err_len) != 0)
        return -1;
    /* the sockets are handed over: only the thread uses them from here */
    if (pthread_create(&f->thread, NULL, forwarder_main, f) != 0) {
        snprintf(err, err_len, "cannot start the ledger forwarder thread");
        fwd_close_socket(f);
        return -1;
    }
    f->started = 1;
    return 0;
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
    if (f->started) {
        atomic_store(&f->stop, 1);
        sdm_forwarder_nudge(f);
        pthread_join(f->thread, NULL);
    }
    fwd_close_socket(f);
    for (int i = 0; i < 2; i++)
        if (f->nudge_pipe[i] >= 0)
            close(f->nudge_pipe[i]);
    if (f->client_sec)
        sodium_free(f->client_sec); /* wipes it */
    msgpack_sbuffer_destroy(&f->buf);
    free(f->held);
    free(f->endpoint);
    free(f);
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
        log_line(quiet, "outbox.db holds %" PRIu64 " receipts and proofs not yet delivered to a "
                 "ledger; start with --ledger to deliver them", c.pending);
    sdm_outbox_close(&ob);
}
