/* netsec.c - CURVE keys, the ZAP allow-list handler and ROUTER request framing (netsec.h). */
#include "netsec.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "sign.h"

int sdm_net_parse_curve_key(const char *line, uint8_t out[32])
{
    size_t len = strlen(line);
    if (len == 40)
        return zmq_z85_decode(out, line) ? 0 : -1;
    if (len == 64)
        return sdm_unhex(line, out, 32);
    return -1;
}

int sdm_net_load_allow(const char *path, uint8_t (**keys)[32], size_t *n_keys, char *err,
                       size_t err_len)
{
    *keys = NULL;
    *n_keys = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "--allow %s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == 0 || *s == '#')
            continue;
        s[strcspn(s, " \t")] = 0;
        uint8_t (*p)[32] = realloc(*keys, (*n_keys + 1) * sizeof(*p));
        if (!p) {
            rc = -1;
            snprintf(err, err_len, "--allow: out of memory");
            break;
        }
        *keys = p;
        if (sdm_net_parse_curve_key(s, (*keys)[*n_keys]) != 0) {
            snprintf(err, err_len, "--allow %s:%d: not a CURVE public key (Z85 or hex)", path,
                     lineno);
            rc = -1;
            break;
        }
        (*n_keys)++;
    }
    fclose(f);
    if (rc == 0 && *n_keys == 0) {
        snprintf(err, err_len, "--allow %s: no keys (nobody could connect)", path);
        rc = -1;
    }
    if (rc != 0) {
        free(*keys);
        *keys = NULL;
        *n_keys = 0;
    }
    return rc;
}

int sdm_net_read_curve_secret(const char *path, uint8_t out[32], char *err, size_t err_len)
{
    return sdm_net_read_curve_key("--curve-secret", path, "CURVE secret key", out, err, err_len);
}

int sdm_net_read_curve_key(const char *flag, const char *path, const char *what, uint8_t out[32],
                           char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    char line[256] = "";
    int rc = -1;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n \t")] = 0;
        if (line[0] == 0 || line[0] == '#')
            continue;
        rc = sdm_net_parse_curve_key(line, out);
        break;
    }
    fclose(f);
    sodium_memzero(line, sizeof(line));
    if (rc != 0)
        snprintf(err, err_len, "%s %s: no %s (Z85 or hex) found", flag, path, what);
    return rc;
}

int sdm_net_is_local_endpoint(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return 1;
    if (strncmp(ep, "tcp://", 6) != 0)
        return 0;
    const char *h = ep + 6;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0;
}

int sdm_net_curve_server(void *sock, const char *secret_path, char *err, size_t err_len)
{
    uint8_t secret[32];
    if (sdm_net_read_curve_secret(secret_path, secret, err, err_len) != 0)
        return -1;
    int one = 1;
    int rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one));
    if (rc == 0)
        rc = zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 32);
    if (rc == 0)
        rc = zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "sediment", 8);
    sodium_memzero(secret, sizeof(secret));
    if (rc != 0)
        snprintf(err, err_len, "--curve-secret: %s", zmq_strerror(zmq_errno()));
    return rc;
}

/* ---- ZAP (RFC 27): admit CURVE clients on the allow-list ------------------------------ */

struct sdm_zap {
    void *sock; /* REP on inproc://zeromq.zap.01 */
    pthread_t thread;
    uint8_t (*keys)[32];
    size_t n_keys;
};

static void zap_answer(sdm_zap_t *z, zmq_msg_t *f, int n)
{
    /* version, request id, domain, address, identity, mechanism, credentials */
    int allowed = 0;
    if (n == 7 && zmq_msg_size(&f[6]) == 32 && zmq_msg_size(&f[5]) == 5 &&
        memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0)
        for (size_t i = 0; i < z->n_keys && !allowed; i++)
            allowed = memcmp(z->keys[i], zmq_msg_data(&f[6]), 32) == 0;
    const char *code = allowed ? "200" : "400";
    const char *text = allowed ? "OK" : "client key not allowed";
    zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(z->sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
    zmq_send(z->sock, code, 3, ZMQ_SNDMORE);
    zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
    zmq_send(z->sock, "", 0, 0);
}

static void *zap_main(void *arg)
{
    sdm_zap_t *z = arg;
    for (;;) {
        zmq_msg_t f[7];
        int n = 0, more = 1, failed = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, z->sock, 0) < 0) {
                zmq_msg_close(&part);
                failed = 1;
                break;
            }
            more = zmq_msg_more(&part);
            if (n < 7)
                f[n++] = part;
            else
                zmq_msg_close(&part);
        }
        if (!failed)
            zap_answer(z, f, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        if (failed && zmq_errno() != EINTR)
            return NULL; /* context terminated */
    }
}

sdm_zap_t *sdm_zap_start(void *ctx, const uint8_t (*keys)[32], size_t n_keys, char *err,
                         size_t err_len)
{
    sdm_zap_t *z = calloc(1, sizeof(*z));
    if (z && n_keys) {
        z->keys = malloc(n_keys * sizeof(*z->keys));
        if (z->keys)
            memcpy(z->keys, keys, n_keys * sizeof(*z->keys));
    }
    if (!z || (n_keys && !z->keys)) {
        if (z)
            free(z);
        snprintf(err, err_len, "ZAP handler: out of memory");
        return NULL;
    }
    z->n_keys = n_keys;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock || zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, err_len, "ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        snprintf(err, err_len, "ZAP handler: cannot start its thread");
        goto fail;
    }
    return z;
fail:
    if (z->sock)
        zmq_close(z->sock);
    free(z->keys);
    free(z);
    return NULL;
}

void sdm_zap_stop(sdm_zap_t **self_p, void *ctx)
{
    if (!self_p || !*self_p)
        return;
    sdm_zap_t *z = *self_p;
    zmq_ctx_shutdown(ctx); /* wakes the handler with ETERM */
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    free(z->keys);
    free(z);
    *self_p = NULL;
}

/* ---- ROUTER framing ------------------------------------------------------------------ */

int sdm_net_request_read(void *router, sdm_net_request *r)
{
    memset(r, 0, sizeof(*r));
    zmq_msg_init(&r->payload);
    int parts = 0, more = 1, bad = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            bad = 1;
            break;
        }
        more = zmq_msg_more(&part);
        parts++;
        if (!more) {
            zmq_msg_move(&r->payload, &part);
        } else if (r->n_route < SDM_NET_MAX_ROUTE) {
            zmq_msg_init(&r->route[r->n_route]);
            zmq_msg_move(&r->route[r->n_route++], &part);
        } else {
            bad = 1; /* too many frames: read them all, then drop */
        }
        zmq_msg_close(&part);
    }
    return bad || parts < 2 ? -1 : 0;
}

void sdm_net_reply(void *router, const sdm_net_request *r, const void *data, size_t len)
{
    for (int i = 0; i < r->n_route; i++)
        zmq_send(router, zmq_msg_data((zmq_msg_t *)&r->route[i]),
                 zmq_msg_size((zmq_msg_t *)&r->route[i]), ZMQ_SNDMORE);
    /* a peer that has gone away (EHOSTUNREACH) simply misses its reply */
    zmq_send(router, len ? data : "", len, 0);
}

void sdm_net_request_close(sdm_net_request *r)
{
    for (int i = 0; i < r->n_route; i++)
        zmq_msg_close(&r->route[i]);
    r->n_route = 0;
    zmq_msg_close(&r->payload);
}

/* ---- the I/O loop -------------------------------------------------------------------- */

int sdm_net_serve(const sdm_net_loop *lp)
{
    for (;;) {
        int stopping = *lp->stop_requested;
        if (stopping && lp->idle(lp->ctx))
            return 0;
        zmq_pollitem_t items[3] = {
            {lp->replies, 0, ZMQ_POLLIN, 0},
            {NULL, lp->stop_fd, ZMQ_POLLIN, 0},
            {lp->front, 0, ZMQ_POLLIN, 0},
        };
        /* once stopping, take no new requests: finish those taken */
        if (zmq_poll(items, stopping ? 2 : 3, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return -1;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            char buf[16];
            ssize_t r = read(lp->stop_fd, buf, sizeof(buf));
            (void)r;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            for (;;) {
                void *p = NULL;
                if (zmq_recv(lp->replies, &p, sizeof(p), ZMQ_DONTWAIT) != (int)sizeof(p))
                    break;
                lp->on_reply(lp->ctx, p);
            }
        }
        if (!stopping && (items[2].revents & ZMQ_POLLIN)) {
            for (int burst = 0; burst < lp->burst; burst++) {
                int events = 0;
                size_t elen = sizeof(events);
                if (zmq_getsockopt(lp->front, ZMQ_EVENTS, &events, &elen) != 0 ||
                    !(events & ZMQ_POLLIN))
                    break;
                if (lp->on_request(lp->ctx) != 0)
                    break;
            }
        }
    }
}
