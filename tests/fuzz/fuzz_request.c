/* fuzz_request.c - libFuzzer target for the request codecs: pre-check, worker and ledger
 * decoding, free, the reply helpers, and for a ledger append the envelope and body readers,
 * with the decoders' promises checked on every input.
 *
 * Besides the sanitizers' findings, an input is a finding (abort) when:
 *   - decoding succeeds on a frame the pre-check rejects;
 *   - a decoded request borrows bytes from outside the frame, or a matrix whose data
 *     length is not rows x cols x size;
 *   - a failure carries a code other than bad_request/unknown_op/too_large, or an empty
 *     message, or decoding fails otherwise than the pre-check did;
 *   - the reply packed for it is not exactly one well-formed msgpack object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "body.h"
#include "sign.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

static int inside(const uint8_t *data, size_t size, const void *p, size_t n)
{
    uintptr_t b = (uintptr_t)data, q = (uintptr_t)p;
    return n == 0 || (p && q >= b && q - b <= size && n <= size - (q - b));
}

static void check_matrix(const uint8_t *data, size_t size, const sdm_matrix *m,
                         const uint8_t *bytes, size_t n_bytes)
{
    require(m->rows >= 1 && m->cols >= 1);
    require(m->data == bytes && inside(data, size, bytes, n_bytes));
    require(m->rows * m->cols * sdm_dtype_size(m->dtype) == n_bytes);
}

static void check_request(const uint8_t *data, size_t size, const sdm_worker_request *r)
{
    require(inside(data, size, r->id, r->id_len));
    switch (r->op) {
    case SDM_OP_REGISTER:
        require(r->model && r->projection.input_dim >= 1 && r->projection.dim >= 1);
        break;
    case SDM_OP_CONTRIBUTE:
        require(r->model && r->checkpoint && r->lr > 0);
        check_matrix(data, size, &r->rows, r->data_bytes, r->n_data_bytes);
        require(r->curvature ? !r->example_ids && !r->contributor
                             : r->example_ids && r->contributor && r->shard);
        break;
    case SDM_OP_ATTRIBUTE:
        require(r->model && r->n_queries >= 1 && r->topk <= SDM_WIRE_MAX_TOPK);
        for (size_t i = 0; i < r->n_queries; i++) {
            const sdm_wire_query *q = &r->queries[i];
            require(q->checkpoint && q->rows.rows == r->queries[0].rows.rows);
            check_matrix(data, size, &q->rows, q->bytes, q->n_bytes);
        }
        if (r->query_ids)
            for (uint64_t i = 0; i < r->queries[0].rows.rows; i++)
                require(inside(data, size, r->query_ids[i], r->query_id_lens[i]) &&
                        r->query_id_lens[i] >= 1);
        break;
    case SDM_OP_INFO:
    case SDM_OP_STATS:
        break;
    }
}

/* The same frame as a ledger request; an append's canonical envelope goes on through the
 * signature check and, when some key signed it, the body reader. */
static void fuzz_ledger(const uint8_t *data, size_t size, sdm_wire_code pre)
{
    sdm_wire_error err;
    sdm_ledger_request req;
    sdm_wire_code code = sdm_wire_decode_ledger(data, size, NULL, &req, &err);
    require(code == SDM_WIRE_OK || pre == SDM_WIRE_OK || code == pre);
    require(pre == SDM_WIRE_OK || code != SDM_WIRE_OK);
    require(inside(data, size, req.id, req.id_len));
    if (code != SDM_WIRE_OK) {
        require(code == SDM_WIRE_BAD_REQUEST || code == SDM_WIRE_UNKNOWN_OP ||
                code == SDM_WIRE_TOO_LARGE);
        require(err.code == code && err.message[0] != '\0');
    } else if (req.op == SDM_LOP_APPEND) {
        require(req.entry && req.entry_len >= 1);
        const uint8_t *body;
        size_t body_len;
        uint8_t key[SDM_PK_LEN];
        sdm_wire_code c = sdm_envelope_open(req.entry, req.entry_len, &body, &body_len, key, &err);
        require(c == SDM_WIRE_OK || c == SDM_WIRE_UNAUTHORIZED || c == SDM_WIRE_BAD_REQUEST);
        /* a forged signature stops a real ledger here; read the body anyway, it is the
         * reader's input whoever signed it */
        if (c == SDM_WIRE_UNAUTHORIZED) {
            sdm_body b;
            c = sdm_body_read(body, body_len, key, &b, &err);
            require(c == SDM_WIRE_OK || (c == SDM_WIRE_BAD_REQUEST && err.message[0]));
            sdm_body_free(&b);
        }
    } else if (req.op == SDM_LOP_INCLUSION) {
        require(req.index < req.size);
    } else if (req.op == SDM_LOP_CONSISTENCY) {
        require(req.from <= req.to);
    } else if (req.op == SDM_LOP_HISTORY) {
        require(req.contributor && req.limit >= 1 && req.limit <= SDM_WIRE_MAX_HISTORY);
    }
    sdm_ledger_request_free(&req);
    require(req.entry == NULL && req.contributor == NULL && req.model == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_wire_error err;
    sdm_wire_limits tight = {4, 16};
    /* tight limits reach the depth and budget checks on small inputs */
    sdm_wire_code tight_code = sdm_wire_precheck(data, size, &tight, &err);
    require(tight_code == SDM_WIRE_OK || tight_code == SDM_WIRE_BAD_REQUEST ||
            tight_code == SDM_WIRE_TOO_LARGE);
    sdm_wire_code pre = sdm_wire_precheck(data, size, NULL, &err);
    require(pre == SDM_WIRE_OK ||
            ((pre == SDM_WIRE_BAD_REQUEST || pre == SDM_WIRE_TOO_LARGE) && err.message[0]));

    sdm_worker_request req;
    sdm_wire_code code = sdm_wire_decode_worker(data, size, NULL, &req, &err);
    require(code == SDM_WIRE_OK || pre == SDM_WIRE_OK || code == pre);
    require(pre == SDM_WIRE_OK || code != SDM_WIRE_OK);
    require(inside(data, size, req.id, req.id_len));

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (code == SDM_WIRE_OK) {
        check_request(data, size, &req);
        sdm_wire_reply_ok(&pk, req.id, req.id_len, 2);
        sdm_wire_pack_str(&pk, "model");
        sdm_wire_pack_str(&pk, req.model ? req.model : "");
        sdm_wire_pack_str(&pk, "query_ids");
        uint64_t m = req.query_ids ? req.queries[0].rows.rows : 0;
        msgpack_pack_array(&pk, (size_t)m);
        for (uint64_t i = 0; i < m; i++)
            sdm_wire_pack_raw(&pk, req.query_ids[i], req.query_id_lens[i]);
    } else {
        require(code == SDM_WIRE_BAD_REQUEST || code == SDM_WIRE_UNKNOWN_OP ||
                code == SDM_WIRE_TOO_LARGE);
        require(err.code == code && err.message[0] != '\0');
        require(memchr(err.message, 0, sizeof(err.message)) != NULL);
        sdm_wire_reply_error(&pk, req.id, req.id_len, &err);
    }
    /* the reply is one well-formed object (the id echoed raw must not break it) */
    sdm_wire_limits roomy = {SDM_WIRE_MAX_DEPTH + 2, 0};
    require(sdm_wire_precheck((const uint8_t *)sb.data, sb.size, &roomy, NULL) == SDM_WIRE_OK);
    msgpack_sbuffer_destroy(&sb);
    sdm_worker_request_free(&req);
    require(req.model == NULL && req.queries == NULL && req.id == NULL);
    sdm_worker_request_free(&req); /* freeing twice is harmless */
    fuzz_ledger(data, size, pre);
    return 0;
}
