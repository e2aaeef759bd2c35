"""sediment_client.py - Python clients of the sediment worker and ledger, and verifiers.

The clients speak SPEC §6 over a ZeroMQ REQ socket: one msgpack map per frame, request ids
counting up and checked on every reply. The verifiers re-derive everything a receipt or a
proof claims from what the client sent (SHA-256 digests, the RFC 9162 leaf hash, the Ed25519
signature) and the projections of SPEC §2 are reimplemented in numpy, so a client can check
the worker without trusting any of its code. For the ledger, C2SP signed checkpoints and RFC
9162 inclusion and consistency proofs are checked here from the specifications alone
(hashlib, base64, PyNaCl), a second implementation beside the C one.

Needs pyzmq, msgpack, numpy and (for verification) PyNaCl; Debian ships all four.
"""

import base64
import binascii
import collections
import hashlib

import msgpack
import numpy as np
import zmq

__all__ = [
    "Client", "LedgerClient", "SedimentError", "SedimentTimeout", "VerificationError",
    "encode_matrix", "float32_to_bf16",
    "digest_ids", "digest_bytes", "digest_weights",
    "verify_envelope", "leaf_data", "leaf_hash", "merkle_root", "merkle_root_stream",
    "verify_receipt", "verify_proof",
    "philox4x32", "rademacher_matrix", "sjlt_matrix", "rademacher_project", "sjlt_project",
    "Checkpoint", "note_key_id", "verifier_key", "parse_verifier_key", "verify_checkpoint",
    "ledger_leaf_hash", "verify_inclusion", "verify_consistency",
]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7710"
DEFAULT_LEDGER_ENDPOINT = "tcp://127.0.0.1:7720"
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


class _Connection:
    """A REQ connection to one server (worker or ledger); Client and LedgerClient add the ops.
    With curve_server_key (the server's CURVE public key) the connection is encrypted;
    curve_public/curve_secret are this client's pair, made fresh when not given."""

    def __init__(self, endpoint, timeout=30.0, curve_server_key=None, curve_public=None,
                 curve_secret=None):
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

    def _socket(self, kind):
        """A socket of kind connected to the endpoint, with this connection's CURVE keys."""
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self._server_key is not None:
            sock.curve_serverkey = self._server_key
            sock.curve_publickey = self.curve_public
            sock.curve_secretkey = self._curve_secret
        sock.connect(self.endpoint)
        return sock

    def _connect(self):
        self._sock = self._socket(zmq.REQ)

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
        return self._call_frame(op, fields)[0]

    def _call_frame(self, op, fields=None, encoded=None):
        """call(), also returning the reply frame's bytes. encoded: {key: bytes} of values
        already msgpack-encoded, sent exactly as they are (a signed envelope)."""
        req_id = self._next_id
        self._next_id += 1
        req = {"op": op, "id": req_id}
        if fields:
            req.update(fields)
        if encoded:
            packer = msgpack.Packer(use_bin_type=True)
            frame = packer.pack_map_header(len(req) + len(encoded))
            for key, value in req.items():
                frame += packer.pack(key) + packer.pack(value)
            for key, value in encoded.items():
                frame += packer.pack(key) + bytes(value)
        else:
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
        return reply, raw


class Client(_Connection):
    """A connection to one sediment worker.

    Every method returns the reply as a dict (without "id" and "ok") or raises SedimentError
    with the wire code. Signed envelopes (`receipt`, `proof`) are kept as the reply has them,
    decoded msgpack lists, ready for verify_envelope/verify_receipt/verify_proof.

    With curve_server_key (the worker's CURVE public key) the connection is encrypted;
    curve_public/curve_secret are this client's pair, made fresh when not given (the worker's
    allow-list must then hold `client.curve_public`)."""

    def __init__(self, endpoint=DEFAULT_ENDPOINT, timeout=30.0, curve_server_key=None,
                 curve_public=None, curve_secret=None):
        super().__init__(endpoint, timeout, curve_server_key, curve_public, curve_secret)

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


def _map_value_bytes(frame, key):
    """The exact msgpack bytes of the value of `key` in the map that frame holds, or None."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(frame)
    found = None
    for _ in range(unpacker.read_map_header()):
        k = unpacker.unpack()
        start = unpacker.tell()
        unpacker.skip()
        if k == key:
            found = frame[start:unpacker.tell()]  # the last of repeated keys, as decoders do
    return found


def _envelope_bytes(entry):
    """The msgpack bytes of an envelope given as its bytes or as the decoded list."""
    if isinstance(entry, (bytes, bytearray, memoryview)):
        entry = bytes(entry)
        try:
            decoded = msgpack.unpackb(entry, raw=False)
        except Exception as e:
            raise ValueError("entry: not one msgpack object (%s)" % e)
        if not isinstance(decoded, list):
            raise ValueError("entry: not a msgpack array")
        return entry
    if not isinstance(entry, (list, tuple)):
        raise TypeError("entry: expected the envelope's bytes or its decoded list")
    return msgpack.packb(list(entry), use_bin_type=True)


class LedgerClient(_Connection):
    """A connection to one sediment-ledger (docs/ledger.md).

    Every method returns the reply as a dict (without "id" and "ok") or raises SedimentError.
    Nothing a ledger says is evidence by itself: `verified_checkpoint` checks the signed
    checkpoint against a verifier key you trust, and `prove` / `prove_consistency` check
    entries and the log's history against such a checkpoint, with this module's own
    implementation of C2SP signed notes and RFC 9162 proofs."""

    def __init__(self, endpoint=DEFAULT_LEDGER_ENDPOINT, timeout=30.0, curve_server_key=None,
                 curve_public=None, curve_secret=None):
        super().__init__(endpoint, timeout, curve_server_key, curve_public, curve_secret)

    def info(self):
        """version, ledger_key, origin, size, workers (None: any valid signature)."""
        return self.call("info")

    def append(self, entry):
        """Appends a signed envelope: its bytes (sent exactly as they are) or the decoded
        list a worker reply holds. Returns index, leaf_hash, size, checkpoint, duplicate."""
        return self._call_frame("append", encoded={"entry": _envelope_bytes(entry)})[0]

    def checkpoint(self):
        """The latest signed checkpoint: {"checkpoint": note text}. Check it with
        verify_checkpoint, or use verified_checkpoint."""
        return self.call("checkpoint")

    def entry(self, index):
        """{"entry": the envelope at index, decoded}; not_found at or beyond the size."""
        return self.call("entry", {"index": int(index)})

    def entry_bytes(self, index):
        """The envelope at index as the exact bytes the ledger holds and hashes."""
        reply, frame = self._call_frame("entry", {"index": int(index)})
        raw = _map_value_bytes(frame, "entry")
        if raw is None or not isinstance(reply.get("entry"), list):
            raise SedimentError("protocol", "entry: the reply has no envelope")
        return raw

    def inclusion(self, index, size):
        """{"leaf_hash", "hashes"}: the RFC 9162 path of entry index in the tree of size."""
        return self.call("inclusion", {"index": int(index), "size": int(size)})

    def consistency(self, from_size, to_size):
        """{"hashes"}: the RFC 9162 consistency path between the trees of the two sizes."""
        return self.call("consistency", {"from": int(from_size), "to": int(to_size)})

    def entries(self, start=0, stop=None, window=64):
        """Yields (index, envelope bytes) for entries start .. stop - 1 in order (stop: the
        ledger's size now), the exact bytes the ledger holds and hashes. Up to `window`
        requests (1 .. 1024) are in flight at once on a second socket, so a long log costs
        about one round trip per window rather than per entry. Raises SedimentError naming
        the entry (not_found past the end), SedimentTimeout when the ledger goes quiet."""
        if stop is None:
            stop = self.info()["size"]
        start, stop, window = int(start), int(stop), int(window)
        if start < 0 or stop < start:
            raise ValueError("start, stop: need 0 <= start <= stop, got %d, %d" % (start, stop))
        if not 1 <= window <= 1024:
            raise ValueError("window: 1 .. 1024, got %d" % window)
        sock = self._socket(zmq.DEALER)
        first_id = self._next_id  # the request for entry i has id first_id + (i - start)
        self._next_id += stop - start
        wait_ms = None if self.timeout is None else int(self.timeout * 1000)
        sent = done = start
        early = {}  # replies that came before their turn
        try:
            while done < stop:
                while sent < stop and sent - done < window:
                    req = {"op": "entry", "id": first_id + (sent - start), "index": sent}
                    sock.send_multipart([b"", msgpack.packb(req, use_bin_type=True)])
                    sent += 1
                if not sock.poll(wait_ms, zmq.POLLIN):
                    raise SedimentTimeout("entry %d: no reply from %s within %gs"
                                          % (done, self.endpoint, self.timeout))
                raw = sock.recv_multipart()[-1]
                try:
                    reply = msgpack.unpackb(raw, raw=False)
                except Exception as e:
                    raise SedimentError("protocol", "entry: reply is not one msgpack object (%s)"
                                        % e)
                rid = reply.get("id") if isinstance(reply, dict) else None
                index = start + rid - first_id if isinstance(rid, int) else -1
                if not done <= index < sent or index in early:
                    raise SedimentError("protocol", "entry: reply id %r echoes no request in "
                                        "flight" % (rid,))
                if reply.get("ok") is not True:
                    err = reply.get("error") or {}
                    raise SedimentError(err.get("code", "protocol"), "entry %d: %s"
                                        % (index, err.get("message", "")))
                env = _map_value_bytes(raw, "entry")
                if env is None:
                    raise SedimentError("protocol", "entry %d: the reply has no envelope" % index)
                early[index] = env
                while done in early:
                    yield done, early.pop(done)
                    done += 1
        finally:
            sock.close(0)

    def audit(self, checkpoint, allowed_keys=None, window=64):
        """Checks the whole log of a verified Checkpoint: fetches every entry (pipelined, see
        entries), checks each envelope's signature (and signer, with allowed_keys), and that
        the RFC 9162 root of their leaf hashes is the checkpoint's root. Holds one hash per
        level, not the log. Returns the number of entries checked; raises VerificationError
        naming the first bad entry, or the root."""
        def leaves():
            for index, raw in self.entries(0, checkpoint.size, window):
                try:
                    verify_envelope(raw, allowed_keys)
                except VerificationError as e:
                    raise VerificationError("entry %d: %s" % (index, e))
                yield ledger_leaf_hash(raw)

        root = merkle_root_stream(leaves())
        if root != checkpoint.root:
            raise VerificationError("root: the %d entries hash to %s, the checkpoint says %s"
                                    % (checkpoint.size, root.hex(), checkpoint.root.hex()))
        return checkpoint.size

    @staticmethod
    def _window(fields, since, until):
        if since is not None:
            fields["since"] = int(since)
        if until is not None:
            fields["until"] = int(until)
        return fields

    def history(self, contributor, since=None, until=None, limit=None):
        """{"entries": [{index, issued_at, type, model, shard, score, share}]}, oldest first;
        since/until are unix nanoseconds (since <= issued_at < until)."""
        fields = self._window({"contributor": contributor}, since, until)
        if limit is not None:
            fields["limit"] = int(limit)
        return self.call("history", fields)

    def rewards(self, pool, since=None, until=None, model=None):
        """{"allocations": [[contributor, amount]], "flagged", "unallocated"}."""
        fields = self._window({"pool": int(pool)}, since, until)
        if model is not None:
            fields["model"] = model
        return self.call("rewards", fields)

    def verified_checkpoint(self, vkey):
        """Fetches the latest checkpoint and verifies it with verify_checkpoint(note, vkey);
        returns (Checkpoint, note text)."""
        note = self.checkpoint()["checkpoint"]
        return verify_checkpoint(note, vkey), note

    def prove(self, index, checkpoint, entry=None, allowed_keys=None):
        """Proves that entry index is in the log of a verified Checkpoint: fetches the entry
        and its inclusion path, checks the envelope's signature (and signer, with
        allowed_keys), that the ledger's leaf_hash is SHA-256(0x00 || entry) and the path.
        entry: bytes you hold, which must be the entry byte for byte. Returns the entry's
        bytes. Raises VerificationError."""
        index = int(index)
        if not 0 <= index < checkpoint.size:
            raise VerificationError("index: %d is not in the checkpoint of size %d"
                                    % (index, checkpoint.size))
        raw = self.entry_bytes(index)
        if entry is not None and bytes(entry) != raw:
            raise VerificationError("entry: not entry %d of the log (the bytes differ)" % index)
        verify_envelope(raw, allowed_keys)
        proof = self.inclusion(index, checkpoint.size)
        leaf = ledger_leaf_hash(raw)
        if proof.get("leaf_hash") != leaf:
            raise VerificationError("leaf_hash: the ledger's is not SHA-256(0x00 || entry %d)"
                                    % index)
        verify_inclusion(leaf, index, checkpoint.size, proof.get("hashes"), checkpoint.root)
        return raw

    def prove_consistency(self, old, new):
        """Checks that the log of verified Checkpoint `old` is a prefix of that of `new`
        (same origin and key, the ledger's consistency path). Raises VerificationError."""
        if (old.origin, old.key) != (new.origin, new.key):
            raise VerificationError("checkpoints: of two logs (origin or key differ)")
        if old.size > new.size:
            raise VerificationError("size: the newer checkpoint (%d) is smaller than the older "
                                    "(%d): a log never shrinks" % (new.size, old.size))
        hashes = self.consistency(old.size, new.size)["hashes"]
        verify_consistency(old.size, new.size, old.root, new.root, hashes)


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


def merkle_root_stream(leaf_hashes):
    """merkle_root over an iterable, holding one hash per level (the perfect subtrees so
    far) rather than every leaf: for auditing a long log as it streams in."""
    stack = []  # (leaves, hash), largest subtree first
    for leaf in leaf_hashes:
        node = (1, bytes(leaf))
        while stack and stack[-1][0] == node[0]:
            left = stack.pop()
            node = (left[0] * 2, hashlib.sha256(b"\x01" + left[1] + node[1]).digest())
        stack.append(node)
    if not stack:
        return hashlib.sha256(b"").digest()
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = hashlib.sha256(b"\x01" + h + root).digest()
    return root


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


# ---- ledger checkpoints and proofs (C2SP signed-note, tlog-checkpoint; RFC 9162) ---------------

EM_DASH = "\u2014"


Checkpoint = collections.namedtuple("Checkpoint", "origin size root key")
Checkpoint.__doc__ = """A checkpoint whose signature has been verified: origin (str), size, root
(32 bytes) and key (the Ed25519 public key that signed it)."""


def _b64_strict(text, what):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("%s: not base64" % what)
    if base64.b64encode(raw).decode() != text:
        raise VerificationError("%s: not canonical base64" % what)
    return raw


def _key_name_ok(name):
    return (0 < len(name.encode()) <= 255 and "+" not in name and
            all(c > " " and c != "\x7f" for c in name))


def note_key_id(name, public_key):
    """C2SP signed-note key ID: the first 4 bytes of SHA-256(name || "\n" || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n\x01" + bytes(public_key)).digest()[:4]


def verifier_key(origin, public_key):
    """The note verifier key "<origin>+<8 hex key id>+<base64(0x01 || key)>" of a ledger."""
    if not _key_name_ok(origin):
        raise ValueError("origin: %r is not a valid key name" % origin)
    public_key = _as_key(public_key)
    if len(public_key) != 32:
        raise ValueError("public_key: expected 32 bytes")
    return "%s+%s+%s" % (origin, note_key_id(origin, public_key).hex(),
                         base64.b64encode(b"\x01" + public_key).decode())


def parse_verifier_key(vkey):
    """(name, Ed25519 public key) of a verifier key string; its key ID must match."""
    parts = vkey.split("+", 2)  # base64 may hold '+'; a key name never does
    if len(parts) != 3:
        raise VerificationError("verifier key: expected <name>+<key id>+<key>")
    name, hex_id, b64 = parts
    if not _key_name_ok(name):
        raise VerificationError("verifier key name: %r is not a valid key name" % name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise VerificationError("verifier key id: expected 8 lower-case hex digits")
    raw = _b64_strict(b64, "verifier key")
    if len(raw) != 33 or raw[0] != 1:
        raise VerificationError("verifier key: expected an Ed25519 key (0x01 and 32 bytes)")
    if note_key_id(name, raw[1:]).hex() != hex_id:
        raise VerificationError("verifier key id: does not match the name and key")
    return name, raw[1:]


def _parse_checkpoint_text(text):
    """(origin, size, root) of a tlog-checkpoint body; extension lines are ignored."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("checkpoint: expected origin, size and root lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not origin:
        raise VerificationError("checkpoint origin: empty")
    if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
        raise VerificationError("checkpoint size: %r is not a decimal number" % size_s[:32])
    size = int(size_s)
    if size >= 1 << 64:
        raise VerificationError("checkpoint size: beyond 64 bits")
    root = _b64_strict(root_s, "checkpoint root")
    if len(root) != 32:
        raise VerificationError("checkpoint root: %d bytes, expected 32" % len(root))
    if any(line == "" for line in lines[3:-1]):
        raise VerificationError("checkpoint: an empty extension line")
    return origin, size, root


def verify_checkpoint(note, vkey):
    """Verifies a signed checkpoint (the note text, str or bytes) with a verifier key string
    (as `sediment ledger-key` prints it): a signature line by that key must hold, and the
    checkpoint's origin must be the key's name. Returns a Checkpoint. Raises
    VerificationError naming the part at fault."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    name, public_key = parse_verifier_key(vkey)
    key_id = note_key_id(name, public_key)
    if isinstance(note, (bytes, bytearray, memoryview)):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError("note: not UTF-8 text")
    if not note.endswith("\n") or "\x00" in note:
        raise VerificationError("note: does not end with a newline, or holds NUL")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("note: no blank line before the signatures")
    text, signatures = note[:split + 1], note[split + 2:]
    if not signatures:
        raise VerificationError("note signatures: none")
    verified = False
    for n, line in enumerate(signatures[:-1].split("\n"), 1):
        if not line.startswith(EM_DASH + " "):
            raise VerificationError("note signature line %d: does not start with an em dash" % n)
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise VerificationError("note signature line %d: expected a name and a signature" % n)
        sig_name, blob = fields
        blob = _b64_strict(blob, "note signature line %d" % n)
        if len(blob) < 5:
            raise VerificationError("note signature line %d: too short" % n)
        if sig_name != name or blob[:4] != key_id:
            continue  # another key's signature: not ours to judge
        try:
            VerifyKey(public_key).verify(text.encode(), blob[4:])
        except (BadSignatureError, ValueError):
            raise VerificationError("note signature line %d: the signature of %s does not hold"
                                    % (n, name))
        verified = True
    if not verified:
        raise VerificationError("note: not signed by %s" % vkey)
    origin, size, root = _parse_checkpoint_text(text)
    if origin != name:
        raise VerificationError("checkpoint origin: %r is not the key's name %r" % (origin, name))
    return Checkpoint(origin, size, root, public_key)


def ledger_leaf_hash(entry):
    """A ledger entry's leaf hash: SHA-256(0x00 || the envelope's exact bytes)."""
    return hashlib.sha256(b"\x00" + bytes(entry)).digest()


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _hashes(hashes):
    hashes = [bytes(h) for h in (hashes or [])]
    if any(len(h) != 32 for h in hashes):
        raise VerificationError("hashes: every one must be 32 bytes")
    return hashes


def verify_inclusion(leaf_hash, index, size, hashes, root):
    """RFC 9162 §2.1.3.2: the path `hashes` leads from leaf_hash at index to root in the tree
    of size leaves. Raises VerificationError."""
    hashes = _hashes(hashes)
    if not 0 <= index < size:
        raise VerificationError("inclusion: index %d is not below size %d" % (index, size))
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in hashes:
        if sn == 0:
            raise VerificationError("inclusion: the path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != bytes(root):
        raise VerificationError("inclusion: the path of %d hashes does not lead from leaf %d to "
                                "the root of size %d" % (len(hashes), index, size))


def verify_consistency(size1, size2, root1, root2, hashes):
    """RFC 9162 §2.1.4.2: the path `hashes` shows the tree of size1 leaves (root1) to be a
    prefix of the tree of size2 leaves (root2). Raises VerificationError."""
    hashes = _hashes(hashes)
    root1, root2 = bytes(root1), bytes(root2)
    if not 0 <= size1 <= size2:
        raise VerificationError("consistency: size %d is beyond size %d" % (size1, size2))
    if size1 == 0 or size1 == size2:
        want = hashlib.sha256(b"").digest() if size1 == 0 else root2
        if hashes or root1 != want:
            raise VerificationError("consistency: expected no hashes and %s" %
                                    ("the empty tree's root" if size1 == 0 else "equal roots"))
        return
    if not hashes:
        raise VerificationError("consistency: no hashes")
    if size1 & (size1 - 1) == 0:
        hashes = [root1] + hashes  # the old root is a node of the new tree
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise VerificationError("consistency: the path is too long")
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise VerificationError("consistency: the path of %d hashes does not show size %d "
                                "inside size %d" % (len(hashes), size1, size2))


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
