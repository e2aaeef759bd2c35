"""sediment_client.py - Python client of the sediment worker, and verifiers independent of its C code.

The client speaks SPEC §6 over a ZeroMQ REQ socket: one msgpack map per frame, request ids
counting up and checked on every reply. The verifiers re-derive everything a receipt or a
proof claims from what the client sent (SHA-256 digests, the RFC 9162 leaf hash, the Ed25519
signature) and the projections of SPEC §2 are reimplemented in numpy, so a client can check
the worker without trusting any of its code.

Needs pyzmq, msgpack, numpy and (for verification) PyNaCl; Debian ships all four.
"""

import hashlib

import msgpack
import numpy as np
import zmq

__all__ = [
    "Client", "SedimentError", "SedimentTimeout", "VerificationError",
    "encode_matrix", "float32_to_bf16",
    "digest_ids", "digest_bytes", "digest_weights",
    "verify_envelope", "leaf_data", "leaf_hash", "merkle_root", "verify_receipt", "verify_proof",
    "philox4x32", "rademacher_matrix", "sjlt_matrix", "rademacher_project", "sjlt_project",
]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7710"
ENVELOPE_TAG = "sediment-signed-v1"


class SedimentError(Exception):
    """An error reply from the server: `code` is the wire code (bad_request, not_found, ...)
    and `message` the server's text, which names the field at fault. The client uses two
    codes of its own, "timeout" (SedimentTimeout) and "protocol" (a reply that is not one)."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class SedimentTimeout(SedimentError, TimeoutError):
    """No reply within the client's timeout. The socket has been replaced, so the client
    can be used again; the request may or may not have been carried out."""

    def __init__(self, message):
        SedimentError.__init__(self, "timeout", message)


class VerificationError(ValueError):
    """A receipt, proof or envelope that does not check out; the message says which part."""


# ---- matrices --------------------------------------------------------------------------------

def float32_to_bf16(array):
    """bfloat16 bit patterns (uint16) of a float32 array, rounded to nearest, ties to even.
    NaN stays a (quiet) NaN instead of rounding into the exponent."""
    bits = np.ascontiguousarray(array, dtype="<f4").view("<u4").astype(np.uint64)
    # Adding 0x7fff plus the lowest kept bit carries into the kept half exactly when the
    # dropped half is above one half, or exactly one half and the kept half is odd.
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = np.where(is_nan, (bits >> 16) | 0x40, rounded)
    return rounded.astype("<u2")


_DTYPE_SIZE = {"f32": 4, "f16": 2, "bf16": 2}


def encode_matrix(array, dtype=None, field="matrix"):
    """The wire matrix {"dtype", "rows", "cols", "data"} of a 2-D array.

    dtype None sends float16 arrays as "f16" and every other real array as "f32" (float64 is
    rounded to float32); "f32", "f16" or "bf16" convert to that type ("bf16" rounds float32
    to nearest even). The data is C-contiguous little-endian whatever the array's layout.
    A dict is taken to be a wire matrix already and passed through untouched, which is how
    a caller sends exact bytes of its own."""
    if isinstance(array, dict):
        return array
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError("%s: expected a 2-D array, got %d dimensions" % (field, a.ndim))
    if a.dtype.kind not in "fiu":
        raise TypeError("%s: expected a real numeric array, got dtype %s" % (field, a.dtype))
    if dtype is None:
        dtype = "f16" if a.dtype == np.float16 else "f32"
    if dtype == "f32":
        data = np.ascontiguousarray(a, dtype="<f4").tobytes()
    elif dtype == "f16":
        data = np.ascontiguousarray(a, dtype="<f2").tobytes()
    elif dtype == "bf16":
        data = float32_to_bf16(a).tobytes()
    else:
        raise ValueError("%s: dtype must be f32, f16 or bf16, got %r" % (field, dtype))
    return {"dtype": dtype, "rows": int(a.shape[0]), "cols": int(a.shape[1]), "data": data}


def _matrix_bytes(m, field):
    """The `data` bytes of a wire matrix, bytes, or an array encoded as encode_matrix would."""
    if isinstance(m, (bytes, bytearray, memoryview)):
        return bytes(m)
    return bytes(encode_matrix(m, field=field)["data"])


# ---- client ----------------------------------------------------------------------------------

def _curve_key(key, name):
    if isinstance(key, str):
        key = key.strip().encode("ascii")
    if not isinstance(key, bytes) or len(key) not in (32, 40):
        raise ValueError("%s: expected 32 raw bytes or 40 characters of Z85" % name)
    return key


class Client:
    """A connection to one sediment worker.

    Every method returns the reply as a dict (without "id" and "ok") or raises SedimentError
    with the wire code. Signed envelopes (`receipt`, `proof`) are kept as the reply has them,
    decoded msgpack lists, ready for verify_envelope/verify_receipt/verify_proof.

    With curve_server_key (the worker's CURVE public key) the connection is encrypted;
    curve_public/curve_secret are this client's pair, made fresh when not given (the worker's
    allow-list must then hold `client.curve_public`)."""

    def __init__(self, endpoint=DEFAULT_ENDPOINT, timeout=30.0, curve_server_key=None,
                 curve_public=None, curve_secret=None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._server_key = None
        self.curve_public = None
        self._curve_secret = None
        if curve_server_key is not None:
            self._server_key = _curve_key(curve_server_key, "curve_server_key")
            if (curve_public is None) != (curve_secret is None):
                raise ValueError("curve_public and curve_secret: give both or neither")
            if curve_public is None:
                curve_public, curve_secret = zmq.curve_keypair()
            self.curve_public = _curve_key(curve_public, "curve_public")
            self._curve_secret = _curve_key(curve_secret, "curve_secret")
        self._ctx = zmq.Context()
        self._sock = None
        self._next_id = 1
        self._connect()

    def _connect(self):
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if self._server_key is not None:
            sock.curve_serverkey = self._server_key
            sock.curve_publickey = self.curve_public
            sock.curve_secretkey = self._curve_secret
        sock.connect(self.endpoint)
        self._sock = sock

    def close(self):
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, op, fields=None):
        """Sends {"op": op, "id": <next id>, **fields} and returns the reply's other fields.
        The building block of the named methods; fields go out as given."""
        req_id = self._next_id
        self._next_id += 1
        req = {"op": op, "id": req_id}
        if fields:
            req.update(fields)
        frame = msgpack.packb(req, use_bin_type=True)
        self._sock.send(frame)
        wait_ms = None if self.timeout is None else int(self.timeout * 1000)
        if not self._sock.poll(wait_ms, zmq.POLLIN):
            # A REQ socket that sent and got nothing back refuses to send again; a fresh
            # socket drops the request and any late reply to it.
            self._sock.close(0)
            self._connect()
            raise SedimentTimeout("%s: no reply from %s within %gs" % (op, self.endpoint,
                                                                        self.timeout))
        raw = self._sock.recv()
        try:
            reply = msgpack.unpackb(raw, raw=False)
        except Exception as e:
            raise SedimentError("protocol", "%s: reply is not one msgpack object (%s)" % (op, e))
        if not isinstance(reply, dict) or "ok" not in reply:
            raise SedimentError("protocol", "%s: reply is not a map with \"ok\"" % op)
        if reply.get("id") != req_id:
            raise SedimentError("protocol", "%s: reply id %r, expected %r"
                                % (op, reply.get("id"), req_id))
        if reply["ok"] is not True:
            err = reply.get("error") or {}
            raise SedimentError(err.get("code", "protocol"), err.get("message", ""))
        del reply["id"], reply["ok"]
        return reply

    def info(self):
        return self.call("info")

    def stats(self):
        return self.call("stats")

    def register(self, model, input_dim, kind, dim, seed, s=None):
        projection = {"kind": kind, "dim": int(dim), "seed": int(seed)}
        if s is not None:
            projection["s"] = int(s)
        return self.call("register", {"model": model, "input_dim": int(input_dim),
                                      "projection": projection})

    def contribute(self, model, checkpoint, lr, contributor, shard, example_ids, grads=None,
                   features=None, weights=None, dtype=None):
        """One batch of one shard at one checkpoint: gradients (n x d) or features already
        projected (n x k). Returns batch, leaf, store_size, store_root and receipt."""
        fields = {"model": model, "checkpoint": checkpoint, "lr": float(lr),
                  "contributor": contributor, "shard": shard,
                  "example_ids": [int(i) for i in example_ids]}
        self._rows(fields, grads, features, dtype)
        if weights is not None:
            fields["weights"] = [float(w) for w in weights]
        return self.call("contribute", fields)

    def contribute_curvature(self, model, checkpoint, lr, grads=None, features=None, dtype=None):
        """Curvature rows for trak at one checkpoint: they shape K and are never scored."""
        fields = {"model": model, "checkpoint": checkpoint, "lr": float(lr), "curvature": True}
        self._rows(fields, grads, features, dtype)
        return self.call("contribute", fields)

    @staticmethod
    def _rows(fields, grads, features, dtype):
        if (grads is None) == (features is None):
            raise ValueError("grads, features: give exactly one")
        if grads is not None:
            fields["grads"] = encode_matrix(grads, dtype, "grads")
        else:
            fields["features"] = encode_matrix(features, dtype, "features")

    def attribute(self, model, queries=None, query_features=None, method="dot", aggregate="sum",
                  topk=10, lambda_=None, query_ids=None, request_id=None, dtype=None):
        """Scores the model's store for queries {checkpoint: m x d gradients} or
        query_features {checkpoint: m x k}. The proof lists checkpoints in this dict's order.
        Returns `proof` (envelope) and `result` (the proof's queries, decoded)."""
        if (queries is None) == (query_features is None):
            raise ValueError("queries, query_features: give exactly one")
        name = "queries" if queries is not None else "query_features"
        given = queries if queries is not None else query_features
        fields = {"model": model, "method": method, "aggregate": aggregate, "topk": int(topk),
                  name: {ck: encode_matrix(m, dtype, "%s.%s" % (name, ck))
                         for ck, m in given.items()}}
        if lambda_ is not None:
            if isinstance(lambda_, dict):
                fields["lambda"] = {ck: float(v) for ck, v in lambda_.items()}
            else:
                fields["lambda"] = float(lambda_)
        if query_ids is not None:
            fields["query_ids"] = [q if isinstance(q, str) else int(q) for q in query_ids]
        if request_id is not None:
            fields["request_id"] = request_id
        return self.call("attribute", fields)


# ---- digests, envelopes, Merkle trees --------------------------------------------------------

def digest_ids(ids):
    """SHA-256 of the example ids as little-endian u64 (of nothing for None or [])."""
    if ids is None:
        ids = []
    return hashlib.sha256(np.asarray(ids, dtype="<u8").tobytes()).digest()


def digest_weights(weights):
    """SHA-256 of the weights as little-endian f64 (of nothing for None)."""
    if weights is None:
        weights = []
    return hashlib.sha256(np.asarray(weights, dtype="<f8").tobytes()).digest()


def digest_bytes(data):
    return hashlib.sha256(bytes(data)).digest()


def _as_key(k):
    if isinstance(k, str):
        k = bytes.fromhex(k)
    return bytes(k)


def verify_envelope(env, allowed_keys=None):
    """Checks a signed envelope ["sediment-signed-v1", body, key, sig] (the decoded list, or
    its msgpack bytes) and returns (body_dict, body_bytes, key). allowed_keys, when given,
    is the set of signer public keys (bytes or hex) to accept. Raises VerificationError."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if isinstance(env, (bytes, bytearray, memoryview)):
        try:
            env = msgpack.unpackb(bytes(env), raw=False)
        except Exception as e:
            raise VerificationError("envelope: not one msgpack object (%s)" % e)
    if not isinstance(env, (list, tuple)) or len(env) != 4:
        raise VerificationError("envelope: expected an array of 4")
    tag, body, key, sig = env
    if tag != ENVELOPE_TAG:
        raise VerificationError("envelope tag: %r, expected %r" % (tag, ENVELOPE_TAG))
    if not isinstance(body, bytes):
        raise VerificationError("envelope body: not bin")
    if not isinstance(key, bytes) or len(key) != 32:
        raise VerificationError("envelope key: expected bin of 32 bytes")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise VerificationError("envelope sig: expected bin of 64 bytes")
    if allowed_keys is not None and key not in {_as_key(k) for k in allowed_keys}:
        raise VerificationError("envelope key: %s is not an allowed signer" % key.hex())
    try:
        VerifyKey(key).verify((ENVELOPE_TAG + "\n").encode() + body, sig)
    except BadSignatureError:
        raise VerificationError("envelope sig: bad Ed25519 signature")
    try:
        body_dict = msgpack.unpackb(body, raw=False)
    except Exception as e:
        raise VerificationError("envelope body: not one msgpack object (%s)" % e)
    if not isinstance(body_dict, dict):
        raise VerificationError("envelope body: not a map")
    if body_dict.get("v") != 1:
        raise VerificationError("body v: %r, expected 1" % body_dict.get("v"))
    if body_dict.get("worker") != key:
        raise VerificationError("body worker: not the signing key")
    return body_dict, body, key


def leaf_data(model, checkpoint, lr, contributor, shard, n, ids_digest, data_digest,
              weights_digest, curvature):
    """SPEC §5 leaf data of a batch: msgpack [model, checkpoint, lr, contributor, shard, n,
    ids_digest, data_digest, weights_digest, curvature], shortest forms, lr as float64."""
    return msgpack.packb([model, checkpoint, float(lr), contributor, shard, int(n),
                          bytes(ids_digest), bytes(data_digest), bytes(weights_digest),
                          bool(curvature)], use_bin_type=True)


def leaf_hash(*args, **kwargs):
    """SHA-256(0x00 || leaf_data(...)); takes leaf_data's arguments."""
    return hashlib.sha256(b"\x00" + leaf_data(*args, **kwargs)).digest()


def merkle_root(leaf_hashes):
    """RFC 9162 tree hash over leaf hashes (not leaf data); SHA-256() for none."""
    leaf_hashes = list(leaf_hashes)
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return bytes(leaf_hashes[0])
    split = 1
    while split * 2 < len(leaf_hashes):
        split *= 2
    left = merkle_root(leaf_hashes[:split])
    right = merkle_root(leaf_hashes[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check(body, field, want):
    if body.get(field) != want:
        raise VerificationError("%s: receipt has %r, expected %r" % (field, body.get(field), want))


def verify_receipt(receipt, ids, data, weights=None, allowed_keys=None, **expect):
    """Checks a contribution receipt against what was sent: the signature, ids_digest (ids,
    None for a curvature batch), data_digest (data: the matrix bytes, the wire matrix, or the
    array as contribute encoded it), weights_digest, n, and that `leaf` is the leaf hash of
    those fields. Keyword arguments (model=, checkpoint=, lr=, shard=, ...) must equal the
    body's. Returns the body dict."""
    body, _, _ = verify_envelope(receipt, allowed_keys)
    _check(body, "type", "contribution")
    if ids is None:
        ids = []
    ids_d = digest_ids(ids)
    data_d = digest_bytes(_matrix_bytes(data, "data"))
    weights_d = digest_weights(weights)
    _check(body, "ids_digest", ids_d)
    _check(body, "data_digest", data_d)
    _check(body, "weights_digest", weights_d)
    for field, want in expect.items():
        _check(body, field, want)
    if body.get("curvature"):
        _check(body, "contributor", "")
        _check(body, "shard", "")
    else:
        _check(body, "n", len(ids))
    try:
        leaf = leaf_hash(body["model"], body["checkpoint"], body["lr"], body["contributor"],
                         body["shard"], body["n"], ids_d, data_d, weights_d, body["curvature"])
    except KeyError as e:
        raise VerificationError("%s: missing from the receipt" % e.args[0])
    _check(body, "leaf", leaf)
    return body


def verify_proof(proof, query_matrices, allowed_keys=None):
    """Checks an attribution proof: the signature and that query_digest is SHA-256 over the
    query matrices' data bytes in the order of the proof's checkpoints. query_matrices is a
    sequence in that order or a dict {checkpoint: matrix}; each a numpy array (encoded as
    attribute encodes it), a wire matrix dict or raw bytes. Returns the body dict."""
    body, _, _ = verify_envelope(proof, allowed_keys)
    _check(body, "type", "attribution")
    checkpoints = [c["id"] for c in body.get("checkpoints", [])]
    if isinstance(query_matrices, dict):
        missing = [c for c in checkpoints if c not in query_matrices]
        if missing or len(query_matrices) != len(checkpoints):
            raise VerificationError("checkpoints: proof lists %r, queries given for %r"
                                    % (checkpoints, list(query_matrices)))
        query_matrices = [query_matrices[c] for c in checkpoints]
    if len(query_matrices) != len(checkpoints):
        raise VerificationError("checkpoints: proof lists %d, %d query matrices given"
                                % (len(checkpoints), len(query_matrices)))
    h = hashlib.sha256()
    for i, m in enumerate(query_matrices):
        h.update(_matrix_bytes(m, "queries[%d]" % i))
    _check(body, "query_digest", h.digest())
    return body


# ---- projections (SPEC §2) -------------------------------------------------------------------

_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def philox4x32(ctr, key):
    """Philox4x32-10, vectorised: ctr is four arrays (or ints) of 32-bit words broadcast
    together, key two; returns four uint64 arrays holding the 32-bit output words.
    32x32-bit products fit in uint64, so numpy's unsigned arithmetic is exact."""
    c0, c1, c2, c3 = (np.asarray(x, dtype=np.uint64) & _MASK32 for x in ctr)
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0 = np.uint64(int(key[0]) & 0xFFFFFFFF)
    k1 = np.uint64(int(key[1]) & 0xFFFFFFFF)
    for r in range(10):
        if r > 0:
            k0 = (k0 + _PHILOX_W0) & _MASK32
            k1 = (k1 + _PHILOX_W1) & _MASK32
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32)
    return c0, c1, c2, c3


def _seed_key(seed):
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError("seed: must be a u64")
    return (seed & 0xFFFFFFFF, seed >> 32)


_RADEMACHER_TAG = 0x52414445  # "RADE"
_SJLT_TAG = 0x534A4C54        # "SJLT"


def _rademacher_rows(j0, j1, k, seed):
    """Rows j0..j1 of the rademacher P as float64 (±1/sqrt(k))."""
    key = _seed_key(seed)
    j = np.arange(j0, j1, dtype=np.uint64)[:, None]
    blocks = np.arange((k + 127) // 128, dtype=np.uint64)[None, :]
    w = philox4x32((j & _MASK32, j >> _SHIFT32, blocks, _RADEMACHER_TAG), key)
    words = np.stack(w, axis=-1)                     # rows x blocks x 4
    c = np.arange(k)
    word = words[:, c // 128, (c % 128) // 32]       # rows x k
    negative = (word >> (c % 32).astype(np.uint64)) & np.uint64(1)
    return np.where(negative == 1, -1.0, 1.0) / np.sqrt(k)


def _sjlt_rows(j0, j1, k, seed, s):
    """Rows j0..j1 of the sjlt P as float64."""
    if s < 1 or k % s != 0:
        raise ValueError("s: must be at least 1 and divide k=%d" % k)
    key = _seed_key(seed)
    width = k // s
    j = np.arange(j0, j1, dtype=np.uint64)
    p = np.zeros((j1 - j0, k))
    rows = np.arange(j1 - j0)
    for t in range(s):
        w = philox4x32((j & _MASK32, j >> _SHIFT32, t, _SJLT_TAG), key)
        bucket = t * width + (w[0] % np.uint64(width)).astype(np.int64)
        sign = np.where(w[1] & np.uint64(1), -1.0, 1.0)
        np.add.at(p, (rows, bucket), sign / np.sqrt(s))
    return p


def rademacher_matrix(d, k, seed):
    """The whole d x k rademacher projection matrix (float64); for small d and k."""
    return _rademacher_rows(0, d, k, seed)


def sjlt_matrix(d, k, seed, s=1):
    """The whole d x k sjlt projection matrix (float64); for small d and k."""
    return _sjlt_rows(0, d, k, seed, s)


# Bytes of P made at a time: bounds memory for large d without a per-row Python loop.
_CHUNK_BYTES = 1 << 26


def _project(grads, k, rows_of):
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError("grads: expected a 2-D array, got %d dimensions" % g.ndim)
    d = g.shape[1]
    out = np.zeros((g.shape[0], k))
    step = max(1, _CHUNK_BYTES // (8 * max(k, 1)))
    for j0 in range(0, d, step):
        j1 = min(d, j0 + step)
        out += g[:, j0:j1] @ rows_of(j0, j1)
    return out


def rademacher_project(grads, k, seed):
    """phi = g P with SPEC §2's rademacher P, in float64; P is made a slice of rows at a time."""
    return _project(grads, k, lambda j0, j1: _rademacher_rows(j0, j1, k, seed))


def sjlt_project(grads, k, seed, s=1):
    """phi = g P with SPEC §2's sjlt P (s non-zeros per input coordinate), in float64."""
    return _project(grads, k, lambda j0, j1: _sjlt_rows(j0, j1, k, seed, s))
