/* netsec.h - what both servers share on the socket side: CURVE keys and the ZAP allow-list
 * (SPEC §6, Security), the loopback rule, and reading/answering ROUTER requests.
 */
#ifndef SDM_SERVICE_NETSEC_H
#define SDM_SERVICE_NETSEC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

/* Reads one CURVE key from a line: Z85 (40 characters) or 64 hex digits. 0 or -1. */
int sdm_net_parse_curve_key(const char *line, uint8_t out[32]);

/* Loads an allow-list file: one CURVE public key a line (Z85 or hex), blank lines and
 * '#' comments skipped, anything after the key on its line ignored. *keys is malloc'd.
 * An empty list is an error (nobody could connect). 0, or -1 with err naming file:line. */
int sdm_net_load_allow(const char *path, uint8_t (**keys)[32], size_t *n_keys, char *err,
                       size_t err_len);

/* Reads the first key line of a --curve-secret file. 0, or -1 with err set; the line
 * buffer is wiped. */
int sdm_net_read_curve_secret(const char *path, uint8_t out[32], char *err, size_t err_len);
/* The same for any key file: errors name flag and path and call the key what ("CURVE
 * public key"). */
int sdm_net_read_curve_key(const char *flag, const char *path, const char *what, uint8_t out[32],
                           char *err, size_t err_len);

/* 1 for endpoints that need no CURVE: tcp on 127.0.0.0/8, localhost or [::1], ipc, inproc. */
int sdm_net_is_local_endpoint(const char *ep);

/* A ZAP handler thread on ctx admitting exactly the CURVE client keys given (copied). */
typedef struct sdm_zap sdm_zap_t;

/* Binds inproc://zeromq.zap.01 (must happen before the socket that relies on it binds)
 * and starts the handler. NULL with err set on failure. */
sdm_zap_t *sdm_zap_start(void *ctx, const uint8_t (*keys)[32], size_t n_keys, char *err,
                         size_t err_len);
/* Stops the handler: shuts ctx down (every socket on it then fails with ETERM), joins the
 * thread and closes its socket. Call just before zmq_ctx_term. NULL-safe. */
void sdm_zap_stop(sdm_zap_t **self_p, void *ctx);

/* Makes sock a CURVE server with the secret key in the file at path, in ZAP domain
 * "sediment". 0, or -1 with err set. */
int sdm_net_curve_server(void *sock, const char *secret_path, char *err, size_t err_len);

/* One request read from a ROUTER socket: the routing frames and the payload frame. */
#define SDM_NET_MAX_ROUTE 4
typedef struct sdm_net_request {
    zmq_msg_t route[SDM_NET_MAX_ROUTE];
    int n_route;
    zmq_msg_t payload;
} sdm_net_request;

/* Reads one multipart message without blocking. 0 when it has a routing frame and a
 * payload; -1 when nothing could be read or the message was malformed (then dropped:
 * nobody can be answered). The request is initialised either way; release it with
 * sdm_net_request_close. */
int sdm_net_request_read(void *router, sdm_net_request *r);
/* Sends data as the reply to r. A peer that has gone away simply misses it. */
void sdm_net_reply(void *router, const sdm_net_request *r, const void *data, size_t len);
void sdm_net_request_close(sdm_net_request *r);

/* The I/O loop both servers run: wait on finished jobs, the stop pipe and the front socket;
 * hand each finished job to on_reply; read requests from the front socket in bounded bursts
 * (so replies keep flowing under load) through on_request. Once *stop_requested is set, no
 * new request is read and the loop returns when idle() says nothing is outstanding. */
typedef struct sdm_net_loop {
    void *front;                          /* ROUTER */
    void *replies;                        /* PULL of finished jobs (one pointer a message) */
    int stop_fd;                          /* read end of the stop pipe */
    const volatile sig_atomic_t *stop_requested; /* set (by a signal handler too) to stop */
    int burst;                            /* requests read per wake-up at most */
    void *ctx;
    int (*idle)(void *ctx);               /* 1 when no job is outstanding */
    void (*on_reply)(void *ctx, void *job);
    int (*on_request)(void *ctx);         /* reads and handles one; -1 ends the burst */
} sdm_net_loop;

/* Returns 0 after a clean stop, -1 on a socket failure. */
int sdm_net_serve(const sdm_net_loop *lp);

#endif /* SDM_SERVICE_NETSEC_H */
