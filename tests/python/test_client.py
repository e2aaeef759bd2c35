"""test_client.py - the Python client: its verifiers and projections offline, then a live worker.

TestOffline needs no worker: Philox and the projections against SPEC's known answers, bf16
rounding, the leaf encoding and Merkle root built by hand, envelope verification with keys
made here, and the client's socket handling against a fake server (timeouts, reply ids).

TestLiveWorker starts `$SDM_BIN/sediment-worker` on a free port and checks, through the
client only, what a user of the worker sees: receipts that verify and commit to what was
sent, the known answers of `scoring_case` for dot, cosine and trak, proofs that verify, and
error codes that name the field while the worker keeps serving and changes nothing.
"""

import hashlib
import json
import math
import os
import select
import signal
import struct
import subprocess
import tempfile
import threading
import unittest

import msgpack
import numpy as np
import zmq
from nacl.signing import SigningKey

import sediment_client as sc

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.environ.get("SDM_TESTDATA", os.path.join(HERE, "..", "data"))


def load_reference():
    with open(os.path.join(TESTDATA, "reference_vectors.json")) as f:
        return json.load(f)


REF = load_reference()
CASE = REF["scoring_case"]


def make_envelope(sk, body_dict):
    body = msgpack.packb(body_dict, use_bin_type=True)
    sig = sk.sign(b"sediment-signed-v1\n" + body).signature
    return [sc.ENVELOPE_TAG, body, bytes(sk.verify_key), sig]


class TestOffline(unittest.TestCase):

    def test_philox_known_answer(self):
        w = sc.philox4x32((0, 0, 0, 0), (0, 0))
        self.assertEqual(["%08x" % int(x) for x in w],
                         ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"])

    def test_philox_vectorised_matches_scalar(self):
        ctr = (np.array([0, 1, 0xFFFFFFFF]), 7, 3, 0x52414445)
        w = sc.philox4x32(ctr, (5, 9))
        for i, c0 in enumerate([0, 1, 0xFFFFFFFF]):
            one = sc.philox4x32((c0, 7, 3, 0x52414445), (5, 9))
            self.assertEqual([int(x[i]) for x in w], [int(x) for x in one])

    def test_rademacher_signs(self):
        for name in ("rademacher_signs_seed42_d5_k300", "rademacher_signs_seed2^40+7_d3_k130"):
            c = REF[name]
            p = sc.rademacher_matrix(c["d"], c["k"], c["seed"])
            signs = ["".join("+" if v > 0 else "-" for v in row) for row in p]
            self.assertEqual(signs, c["sign_rows"], name)
            np.testing.assert_array_equal(np.abs(p), 1 / math.sqrt(c["k"]))

    def test_sjlt_nonzeros(self):
        c = REF["sjlt_seed7_d6_k64_s4"]
        p = sc.sjlt_matrix(c["d"], c["k"], c["seed"], c["s"])
        got = [[[int(j), float(row[j])] for j in np.nonzero(row)[0]] for row in p]
        self.assertEqual(got, c["nonzeros"])

    def test_projection_reproduces_train_features(self):
        for ck in range(2):
            g = np.array(CASE["train_grads"][ck])
            f = sc.rademacher_project(g, CASE["k"], CASE["seed"])
            np.testing.assert_allclose(f, CASE["train_features"][ck], rtol=1e-12, atol=1e-12)

    def test_projection_in_chunks_equals_whole_matrix(self):
        # A d large enough to need several slices of P must give g P all the same.
        rng = np.random.default_rng(1)
        g = rng.standard_normal((4, 300))
        saved = sc._CHUNK_BYTES
        sc._CHUNK_BYTES = 8 * 64 * 7  # 7 rows of P at a time
        try:
            r = sc.rademacher_project(g, 64, 2 ** 40 + 3)
            s = sc.sjlt_project(g, 64, 11, s=2)
        finally:
            sc._CHUNK_BYTES = saved
        np.testing.assert_allclose(r, g @ sc.rademacher_matrix(300, 64, 2 ** 40 + 3), atol=1e-12)
        np.testing.assert_allclose(s, g @ sc.sjlt_matrix(300, 64, 11, 2), atol=1e-12)

    def test_sjlt_rejects_s_not_dividing_k(self):
        with self.assertRaisesRegex(ValueError, "s: "):
            sc.sjlt_matrix(3, 10, 1, s=3)

    def test_bf16_round_to_nearest_even(self):
        x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.0,
                      np.finfo(np.float32).max, np.inf, np.nan], dtype=np.float32)
        got = sc.float32_to_bf16(x)
        # 1+2^-8 is halfway between 0x3f80 and 0x3f81: ties go to the even 0x3f80;
        # 1+3*2^-8 is halfway between 0x3f81 and 0x3f82: ties go to 0x3f82. The largest
        # float32 is past bf16's largest finite value by more than half a step: infinity.
        self.assertEqual([int(v) for v in got[:7]],
                         [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000, 0x7F80, 0x7F80])
        self.assertTrue((int(got[7]) & 0x7F80) == 0x7F80 and (int(got[7]) & 0x7F) != 0)

    def test_encode_matrix(self):
        a = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
        m = sc.encode_matrix(a)
        self.assertEqual((m["dtype"], m["rows"], m["cols"]), ("f32", 2, 3))
        self.assertEqual(m["data"], struct.pack("<6f", 0, 1, 2, 3, 4, 5))
        big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
        self.assertEqual(sc.encode_matrix(big_endian)["data"], m["data"])
        h = sc.encode_matrix(a.astype(np.float16))
        self.assertEqual((h["dtype"], h["data"]), ("f16", np.arange(6, dtype="<f2").tobytes()))
        b = sc.encode_matrix(np.array([[1.0, -2.0]], dtype=np.float32), dtype="bf16")
        self.assertEqual((b["dtype"], b["data"]), ("bf16", struct.pack("<2H", 0x3F80, 0xC000)))
        with self.assertRaisesRegex(ValueError, "grads: expected a 2-D"):
            sc.encode_matrix(np.zeros(3), field="grads")
        with self.assertRaisesRegex(ValueError, "dtype"):
            sc.encode_matrix(a, dtype="f64")

    def test_leaf_data_by_hand(self):
        ids_d, data_d, w_d = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32
        want = (b"\x9a" + b"\xa1m" + b"\xa2c0" + b"\xcb" + struct.pack(">d", 0.5)
                + b"\xa1a" + b"\xa2s1" + b"\x03"
                + b"\xc4\x20" + ids_d + b"\xc4\x20" + data_d + b"\xc4\x20" + w_d + b"\xc2")
        self.assertEqual(sc.leaf_data("m", "c0", 0.5, "a", "s1", 3, ids_d, data_d, w_d, False),
                         want)
        self.assertEqual(sc.leaf_hash("m", "c0", 0.5, "a", "s1", 3, ids_d, data_d, w_d, False),
                         hashlib.sha256(b"\x00" + want).digest())
        # An integer lr still goes out as float64; n past 127 takes its shortest uint form.
        d = sc.leaf_data("m", "c0", 1, "", "", 300, ids_d, data_d, w_d, True)
        self.assertIn(b"\xcb" + struct.pack(">d", 1.0), d)
        self.assertIn(b"\xa0\xa0\xcd\x01\x2c", d)
        self.assertEqual(d[-1:], b"\xc3")

    def test_merkle_root_by_hand(self):
        leaves = [hashlib.sha256(bytes([i])).digest() for i in range(5)]

        def node(a, b):
            return hashlib.sha256(b"\x01" + a + b).digest()

        self.assertEqual(sc.merkle_root([]), hashlib.sha256(b"").digest())
        self.assertEqual(sc.merkle_root(leaves[:1]), leaves[0])
        self.assertEqual(sc.merkle_root(leaves[:3]),
                         node(node(leaves[0], leaves[1]), leaves[2]))
        self.assertEqual(sc.merkle_root(leaves),
                         node(node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3])),
                              leaves[4]))

    def test_digests(self):
        self.assertEqual(sc.digest_ids([1, 2 ** 64 - 1]),
                         hashlib.sha256(struct.pack("<2Q", 1, 2 ** 64 - 1)).digest())
        self.assertEqual(sc.digest_ids(None), hashlib.sha256(b"").digest())
        self.assertEqual(sc.digest_weights([0.5, 2]),
                         hashlib.sha256(struct.pack("<2d", 0.5, 2.0)).digest())
        self.assertEqual(sc.digest_weights(None), hashlib.sha256(b"").digest())

    def test_verify_envelope(self):
        sk = SigningKey.generate()
        key = bytes(sk.verify_key)
        env = make_envelope(sk, {"v": 1, "type": "x", "worker": key})
        body, body_bytes, got_key = sc.verify_envelope(env, allowed_keys=[key.hex()])
        self.assertEqual((body["type"], got_key, body_bytes), ("x", key, env[1]))
        self.assertEqual(sc.verify_envelope(msgpack.packb(env, use_bin_type=True))[2], key)

        tampered = list(env)
        tampered[1] = env[1].replace(b"x", b"y")
        with self.assertRaisesRegex(sc.VerificationError, "sig"):
            sc.verify_envelope(tampered)
        with self.assertRaisesRegex(sc.VerificationError, "not an allowed signer"):
            sc.verify_envelope(env, allowed_keys=[b"\x00" * 32])
        with self.assertRaisesRegex(sc.VerificationError, "tag"):
            sc.verify_envelope(["sediment-signed-v2"] + env[1:])
        other = SigningKey.generate()
        with self.assertRaisesRegex(sc.VerificationError, "worker"):
            sc.verify_envelope(make_envelope(other, {"v": 1, "type": "x", "worker": key}))

    def test_verify_receipt_and_proof_offline(self):
        sk = SigningKey.generate()
        key = bytes(sk.verify_key)
        ids = [5, 6]
        data = np.ones((2, 3), dtype=np.float32)
        data_bytes = data.tobytes()
        leaf = sc.leaf_hash("m", "c", 0.1, "alice", "s0", 2, sc.digest_ids(ids),
                            sc.digest_bytes(data_bytes), sc.digest_weights(None), False)
        body = {"v": 1, "type": "contribution", "worker": key, "issued_at": 1, "model": "m",
                "checkpoint": "c", "lr": 0.1, "contributor": "alice", "shard": "s0", "n": 2,
                "batch": 0, "leaf": leaf, "store_size": 1, "store_root": leaf,
                "ids_digest": sc.digest_ids(ids), "data_digest": sc.digest_bytes(data_bytes),
                "weights_digest": sc.digest_weights(None), "curvature": False}
        receipt = make_envelope(sk, body)
        self.assertEqual(sc.verify_receipt(receipt, ids, data, model="m")["batch"], 0)
        self.assertEqual(sc.verify_receipt(receipt, ids, data_bytes)["n"], 2)
        with self.assertRaisesRegex(sc.VerificationError, "data_digest"):
            sc.verify_receipt(receipt, ids, data * 2)
        with self.assertRaisesRegex(sc.VerificationError, "ids_digest"):
            sc.verify_receipt(receipt, [5, 7], data)
        with self.assertRaisesRegex(sc.VerificationError, "weights_digest"):
            sc.verify_receipt(receipt, ids, data, weights=[1.0, 1.0])
        with self.assertRaisesRegex(sc.VerificationError, "shard"):
            sc.verify_receipt(receipt, ids, data, shard="s1")
        bad_leaf = dict(body, leaf=b"\x00" * 32)
        with self.assertRaisesRegex(sc.VerificationError, "leaf"):
            sc.verify_receipt(make_envelope(sk, bad_leaf), ids, data)

        q0, q1 = np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32)
        digest = hashlib.sha256(q1.tobytes() + q0.tobytes()).digest()
        proof = make_envelope(sk, {"v": 1, "type": "attribution", "worker": key,
                                   "checkpoints": [{"id": "b", "lr": 1.0}, {"id": "a", "lr": 1.0}],
                                   "query_digest": digest})
        self.assertEqual(sc.verify_proof(proof, [q1, q0])["query_digest"], digest)
        self.assertEqual(sc.verify_proof(proof, {"a": q0, "b": q1})["query_digest"], digest)
        with self.assertRaisesRegex(sc.VerificationError, "query_digest"):
            sc.verify_proof(proof, [q0, q1])
        with self.assertRaisesRegex(sc.VerificationError, "type"):
            sc.verify_proof(receipt, [q1, q0])


class FakeServer:
    """A ROUTER socket on a free port that answers requests the way a test scripts it."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port

    def recv(self, timeout_ms=5000):
        if not self.sock.poll(timeout_ms):
            raise AssertionError("fake server: no request")
        ident, empty, payload = self.sock.recv_multipart()
        return ident, msgpack.unpackb(payload, raw=False)

    def send(self, ident, reply):
        self.sock.send_multipart([ident, b"", msgpack.packb(reply, use_bin_type=True)])

    def close(self):
        self.sock.close(0)
        self.ctx.term()


class TestClientSocket(unittest.TestCase):

    def setUp(self):
        self.server = FakeServer()
        self.client = sc.Client(self.server.endpoint, timeout=0.5)

    def tearDown(self):
        self.client.close()
        self.server.close()

    def test_timeout_resets_and_late_reply_is_dropped(self):
        with self.assertRaises(sc.SedimentTimeout) as cm:
            self.client.info()
        self.assertEqual(cm.exception.code, "timeout")
        first_ident, first = self.server.recv()
        self.assertEqual((first["op"], first["id"]), ("info", 1))

        def serve():
            ident, req = self.server.recv()
            # The answer to the abandoned request arrives first and must not be taken.
            self.server.send(first_ident, {"id": 1, "ok": True, "version": "stale"})
            self.server.send(ident, {"id": req["id"], "ok": True, "version": "fresh"})

        t = threading.Thread(target=serve)
        t.start()
        reply = self.client.info()
        t.join()
        self.assertEqual(reply, {"version": "fresh"})

    def test_reply_with_wrong_id_is_an_error(self):
        def serve():
            ident, req = self.server.recv()
            self.server.send(ident, {"id": req["id"] + 1, "ok": True})

        t = threading.Thread(target=serve)
        t.start()
        with self.assertRaises(sc.SedimentError) as cm:
            self.client.stats()
        t.join()
        self.assertEqual(cm.exception.code, "protocol")

    def test_error_reply_raises_with_wire_code(self):
        def serve():
            ident, req = self.server.recv()
            self.server.send(ident, {"id": req["id"], "ok": False,
                                     "error": {"code": "busy", "message": "ingest queue full"}})

        t = threading.Thread(target=serve)
        t.start()
        with self.assertRaises(sc.SedimentError) as cm:
            self.client.register("m", 4, "none", 4, 0)
        t.join()
        self.assertEqual((cm.exception.code, cm.exception.message), ("busy", "ingest queue full"))

    def test_request_fields_on_the_wire(self):
        got = {}

        def serve():
            for _ in range(2):
                ident, req = self.server.recv()
                got[req["op"]] = req
                self.server.send(ident, {"id": req["id"], "ok": True})

        t = threading.Thread(target=serve)
        t.start()
        g = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
        self.client.contribute("m", "c0", 1, "alice", "s0", np.array([1, 2, 2 ** 63], np.uint64),
                               grads=g, weights=[1, 0.5, 0.25])
        self.client.attribute("m", queries={"c1": g[:1], "c0": g[1:]}, method="trak",
                              lambda_={"c1": 2, "c0": 3.5}, query_ids=[7, "q"], request_id="r")
        t.join()
        c = got["contribute"]
        self.assertEqual(c["id"], 1)
        self.assertEqual(c["example_ids"], [1, 2, 2 ** 63])
        self.assertIsInstance(c["lr"], float)
        self.assertEqual(c["weights"], [1.0, 0.5, 0.25])
        self.assertEqual(c["grads"], {"dtype": "f32", "rows": 3, "cols": 2,
                                      "data": struct.pack("<6f", 0, 1, 2, 3, 4, 5)})
        self.assertNotIn("features", c)
        a = got["attribute"]
        self.assertEqual(a["id"], 2)
        self.assertEqual(list(a["queries"]), ["c1", "c0"])
        self.assertEqual(a["lambda"], {"c1": 2.0, "c0": 3.5})
        self.assertEqual((a["query_ids"], a["request_id"], a["topk"], a["aggregate"]),
                         ([7, "q"], "r", 10, "sum"))


# ---- live worker -------------------------------------------------------------------------------

def worker_binary():
    """The worker to test, or None when SDM_BIN is unset (run by hand without a build).
    Under CTest SDM_BIN is set and a missing worker is a failure, not a skip."""
    bindir = os.environ.get("SDM_BIN")
    if not bindir:
        return None
    return os.path.join(bindir, "sediment-worker")


def assert_close(test, got, ref, what, rel=1e-4):
    """|got - ref| <= rel * (|ref| + 1e-2 * max|ref|): relative, with a floor for values
    near zero where float32 inputs cannot give float64's relative accuracy."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    tol = rel * (np.abs(ref) + 1e-2 * scale)
    bad = np.abs(got - ref) > tol
    if bad.any():
        i = np.argwhere(bad)[0]
        test.fail("%s: at %s got %r, expected %r (tolerance %g)"
                  % (what, tuple(i), got[tuple(i)], ref[tuple(i)], tol[tuple(i)]))


SHARDS = ["s%d" % s for s in range(CASE["nshards"])]
CHECKPOINTS = ["ck0", "ck1"]


def contributor_of(shard_index):
    return "alice" if shard_index < 3 else "bob"


class Worker:
    """A sediment-worker process on a free loopback port with its own data dir."""

    def __init__(self, *extra):
        binary = worker_binary()
        if binary is None:
            raise unittest.SkipTest("SDM_BIN is not set: no worker to test")
        self.tmp = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            [binary, "--listen", "tcp://127.0.0.1:0", "--data", self.tmp.name, "--backend", "cpu"]
            + list(extra), stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("tcp://"):
            self.proc.kill()
            self.proc.wait()
            self.tmp.cleanup()
            raise RuntimeError("sediment-worker did not print its endpoint (got %r)" % line)
        self.endpoint = line

    def stop(self):
        """SIGTERM must stop the worker cleanly: exit code 0 within 30 seconds."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("sediment-worker did not stop within 30s of SIGTERM")
        finally:
            self.proc.stdout.close()
            self.tmp.cleanup()
        if code != 0:
            raise AssertionError("sediment-worker exited with %d after SIGTERM" % code)


class TestCurveWorker(unittest.TestCase):
    """With --curve-secret and --allow only listed client keys get an answer."""

    def test_only_allowed_keys_are_served(self):
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        with tempfile.TemporaryDirectory() as keys:
            secret_file = os.path.join(keys, "server.secret")
            allow_file = os.path.join(keys, "allow")
            with open(secret_file, "wb") as f:
                f.write(server_secret + b"\n")
            os.chmod(secret_file, 0o600)
            with open(allow_file, "wb") as f:
                f.write(client_public + b"\n")
            worker = Worker("--curve-secret", secret_file, "--allow", allow_file)
        try:
            with sc.Client(worker.endpoint, timeout=10, curve_server_key=server_public,
                           curve_public=client_public, curve_secret=client_secret) as c:
                self.assertEqual(len(c.info()["worker_key"]), 32)
            with sc.Client(worker.endpoint, timeout=1,
                           curve_server_key=server_public.decode()) as stranger:
                self.assertNotEqual(stranger.curve_public, client_public)
                with self.assertRaises(sc.SedimentTimeout):
                    stranger.info()
            with sc.Client(worker.endpoint, timeout=1) as plain:
                with self.assertRaises(sc.SedimentTimeout):
                    plain.info()
        finally:
            worker.stop()


class TestLiveWorker(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.worker = Worker()
        cls.client = sc.Client(cls.worker.endpoint, timeout=60)
        try:
            cls.worker_key = cls.client.info()["worker_key"]
            cls.sent = []  # (reply, ids, grads bytes, fields) of every batch of model "ref"
            cls.populate()
        except BaseException:
            cls.tearDownClass()  # unittest skips it when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.worker.stop()

    @classmethod
    def contribute_case(cls, model, record):
        for c, ck in enumerate(CHECKPOINTS):
            grads = np.array(CASE["train_grads"][c], dtype=np.float32)
            for s, shard in enumerate(SHARDS):
                ids = [i for i in range(CASE["n"]) if CASE["shard_of"][i] == s]
                fields = {"model": model, "checkpoint": ck, "lr": CASE["lrs"][c],
                          "contributor": contributor_of(s), "shard": shard}
                reply = cls.client.contribute(example_ids=ids, grads=grads[ids], **fields)
                if record is not None:
                    record.append((reply, ids, grads[ids].tobytes(), fields))

    @classmethod
    def populate(cls):
        cls.client.register("ref", CASE["d"], CASE["projection"], CASE["k"], CASE["seed"])
        cls.contribute_case("ref", cls.sent)

    def queries(self):
        return {ck: np.array(CASE["query_grads"][c], dtype=np.float32)
                for c, ck in enumerate(CHECKPOINTS)}

    def store_size(self, model):
        for m in self.client.info()["models"]:
            if m["model"] == model:
                return m["store_size"]
        self.fail("info.models: no %r" % model)

    # -- info, register ------------------------------------------------------------------------

    def test_info(self):
        info = self.client.info()
        self.assertEqual(info["backend"], "cpu")
        self.assertIsInstance(info["version"], str)
        self.assertEqual(len(info["worker_key"]), 32)
        ref = [m for m in info["models"] if m["model"] == "ref"]
        self.assertEqual(len(ref), 1)
        self.assertEqual(ref[0]["input_dim"], CASE["d"])
        p = ref[0]["projection"]
        self.assertEqual((p["kind"], p["dim"], p["seed"]), ("rademacher", CASE["k"], CASE["seed"]))
        self.assertEqual(ref[0]["store_size"], 2 * len(SHARDS))

    def test_register_is_idempotent_and_conflicts_on_change(self):
        r = self.client.register("reg", 10, "sjlt", 4, 2 ** 63 + 5, s=2)
        self.assertIs(r["created"], True)
        r = self.client.register("reg", 10, "sjlt", 4, 2 ** 63 + 5, s=2)
        self.assertIs(r["created"], False)
        for change in ({"seed": 1}, {"dim": 8}, {"s": 4}, {"kind": "rademacher"}):
            args = dict(model="reg", input_dim=10, kind="sjlt", dim=4, seed=2 ** 63 + 5, s=2)
            args.update(change)
            if args["kind"] != "sjlt":
                args["s"] = None
            with self.assertRaises(sc.SedimentError) as cm:
                self.client.register(**args)
            self.assertEqual(cm.exception.code, "conflict", change)
        models = [m for m in self.client.info()["models"] if m["model"] == "reg"]
        self.assertEqual(len(models), 1)
        self.assertEqual(models[0]["projection"]["seed"], 2 ** 63 + 5)

    # -- receipts ------------------------------------------------------------------------------

    def test_receipts_verify_and_commit_to_the_store(self):
        leaves = []
        for b, (reply, ids, data, fields) in enumerate(self.sent):
            body = sc.verify_receipt(reply["receipt"], ids, data, allowed_keys=[self.worker_key],
                                     batch=b, n=len(ids), curvature=False, **fields)
            leaves.append(body["leaf"])
            root = sc.merkle_root(leaves)
            self.assertEqual(reply["batch"], b)
            self.assertEqual(reply["leaf"], body["leaf"])
            self.assertEqual((reply["store_size"], body["store_size"]), (b + 1, b + 1))
            self.assertEqual(reply["store_root"], root, "batch %d" % b)
            self.assertEqual(body["store_root"], root, "batch %d" % b)
            # The envelope bytes are the list re-encoded: what a ledger would be sent.
            env_bytes = msgpack.packb(reply["receipt"], use_bin_type=True)
            self.assertEqual(sc.verify_envelope(env_bytes)[1], reply["receipt"][1])
        info = [m for m in self.client.info()["models"] if m["model"] == "ref"][0]
        self.assertEqual(info["store_root"], sc.merkle_root(leaves))

    # -- attribution against the known answers -------------------------------------------------

    def check_case(self, result, ref, method, aggregate="sum", top=True):
        want = ref["shard_sum"] if aggregate == "sum" else ref["shard_mean"]
        self.assertEqual(len(result), CASE["m"])
        for q, query in enumerate(result):
            self.assertEqual(query["id"], q)
            shards = {row[0]: row for row in query["shards"]}
            self.assertEqual(sorted(shards), SHARDS)
            for s, shard in enumerate(SHARDS):
                self.assertEqual(shards[shard][1], contributor_of(s))
            got = [shards[shard][2] for shard in SHARDS]
            assert_close(self, got, want[q], "%s %s query %d shard scores" % (method, aggregate, q))
            shares = [shards[shard][3] for shard in SHARDS]
            if aggregate == "sum":
                assert_close(self, shares, ref["shares"][q], "%s query %d shares" % (method, q))
            contributors = {row[0]: row for row in query["contributors"]}
            self.assertEqual(sorted(contributors), ["alice", "bob"])
            assert_close(self, [contributors["alice"][1], contributors["bob"][1]],
                         [sum(want[q][:3]), sum(want[q][3:])],
                         "%s query %d contributor scores" % (method, q))
            if top:
                self.assertEqual([row[0] for row in query["top"]], ref["top3"][q]["pro"],
                                 "%s query %d top" % (method, q))
                self.assertEqual([row[0] for row in query["bottom"]], ref["top3"][q]["opp"],
                                 "%s query %d bottom" % (method, q))
                for row in query["top"] + query["bottom"]:
                    self.assertEqual(row[1], SHARDS[CASE["shard_of"][row[0]]])
                    assert_close(self, row[2], ref["scores"][q][row[0]],
                                 "%s query %d example %d score" % (method, q, row[0]))

    def attribute_case(self, method, **kw):
        queries = self.queries()
        reply = self.client.attribute("ref", queries=queries, method=method, topk=3, **kw)
        body = sc.verify_proof(reply["proof"], queries, allowed_keys=[self.worker_key])
        self.assertEqual(body["queries"], reply["result"])
        self.assertEqual(body["store_size"], len(self.sent))
        self.assertEqual(body["store_root"], self.sent[-1][0]["store_root"])
        self.assertEqual(body["checkpoints"], [{"id": ck, "lr": lr}
                                               for ck, lr in zip(CHECKPOINTS, CASE["lrs"])])
        self.assertEqual((body["method"], body["model"]), (method, "ref"))
        return reply, body

    def test_attribute_dot(self):
        reply, body = self.attribute_case("dot")
        self.check_case(reply["result"], CASE["dot"], "dot")
        self.assertEqual(body["lambda"], [])
        reply, _ = self.attribute_case("dot", aggregate="mean")
        self.check_case(reply["result"], CASE["dot"], "dot", aggregate="mean", top=False)

    def test_attribute_cosine(self):
        reply, _ = self.attribute_case("cosine")
        self.check_case(reply["result"], CASE["cosine"], "cosine")
        reply, _ = self.attribute_case("cosine", aggregate="mean")
        self.check_case(reply["result"], CASE["cosine"], "cosine", aggregate="mean", top=False)

    def test_attribute_trak(self):
        reply, body = self.attribute_case("trak")
        self.check_case(reply["result"], CASE["trak"], "trak")
        assert_close(self, body["lambda"], CASE["trak"]["lambdas"], "trak default lambda")
        # The same lambdas given explicitly give the same answer.
        given = dict(zip(CHECKPOINTS, CASE["trak"]["lambdas"]))
        reply, body = self.attribute_case("trak", lambda_=given)
        self.check_case(reply["result"], CASE["trak"], "trak")
        self.assertEqual(body["lambda"], CASE["trak"]["lambdas"])

    def test_attribute_trak_with_curvature(self):
        self.client.register("curv", CASE["d"], CASE["projection"], CASE["k"], CASE["seed"])
        self.contribute_case("curv", None)
        curv = np.array(CASE["curvature_grads"][0], dtype=np.float32)
        reply = self.client.contribute_curvature("curv", "ck0", CASE["lrs"][0], grads=curv)
        body = sc.verify_receipt(reply["receipt"], None, curv, model="curv", checkpoint="ck0",
                                 n=len(curv), curvature=True, contributor="", shard="")
        self.assertEqual(body["batch"], 2 * len(SHARDS))
        queries = self.queries()
        reply = self.client.attribute("curv", queries=queries, method="trak", topk=3)
        body = sc.verify_proof(reply["proof"], [queries[ck] for ck in CHECKPOINTS])
        ref = CASE["trak_with_curvature"]
        self.check_case(reply["result"], ref, "trak with curvature")
        assert_close(self, body["lambda"], ref["lambdas"], "trak with curvature lambda")

    def test_attribute_query_features_match_worker_projection(self):
        # Features projected here must score as the gradients the worker projects itself.
        queries = self.queries()
        feats = {ck: sc.rademacher_project(q, CASE["k"], CASE["seed"]).astype(np.float32)
                 for ck, q in queries.items()}
        a = self.client.attribute("ref", queries=queries, topk=3)["result"]
        b = self.client.attribute("ref", query_features=feats, topk=3)["result"]
        for qa, qb in zip(a, b):
            assert_close(self, [r[2] for r in qb["shards"]], [r[2] for r in qa["shards"]],
                         "query_features shard scores")
            self.assertEqual([r[0] for r in qb["top"]], [r[0] for r in qa["top"]])

    def test_sjlt_with_weights_matches_numpy(self):
        d, k, s, seed = CASE["d"], 64, 4, 7
        self.client.register("sj", d, "sjlt", k, seed, s=s)
        grads = np.array(CASE["train_grads"][0], dtype=np.float32)
        weights = np.linspace(0.5, 1.5, CASE["n"])
        ids = list(range(100, 100 + CASE["n"]))
        reply = self.client.contribute("sj", "c", 0.5, "carol", "all", ids, grads=grads,
                                       weights=weights)
        sc.verify_receipt(reply["receipt"], ids, grads, weights=weights, model="sj")
        q = np.array(CASE["query_grads"][0], dtype=np.float32)
        result = self.client.attribute("sj", queries={"c": q}, topk=CASE["n"])["result"]
        want = 0.5 * (sc.sjlt_project(q, k, seed, s) @ sc.sjlt_project(grads, k, seed, s).T)
        want *= weights
        for i, query in enumerate(result):
            assert_close(self, query["shards"][0][2], want[i].sum(), "sjlt shard score")
            got = {row[0]: row[2] for row in query["top"]}
            self.assertEqual(sorted(got), ids)
            assert_close(self, [got[e] for e in ids], want[i], "sjlt example scores")

    def test_bf16_features(self):
        self.client.register("bf", 8, "none", 8, 0)
        rng = np.random.default_rng(3)
        feats = rng.standard_normal((5, 8)).astype(np.float32)
        reply = self.client.contribute("bf", "c", 1.0, "dave", "x", range(5), features=feats,
                                       dtype="bf16")
        sent = sc.encode_matrix(feats, dtype="bf16")
        sc.verify_receipt(reply["receipt"], list(range(5)), sent)
        stored = (np.frombuffer(sent["data"], "<u2").astype(np.uint32) << 16).view(np.float32)
        q = rng.standard_normal((1, 8)).astype(np.float32)
        result = self.client.attribute("bf", query_features={"c": q}, topk=5)["result"]
        want = (q.astype(np.float64) @ stored.reshape(5, 8).astype(np.float64).T)[0]
        got = {row[0]: row[2] for row in result[0]["top"]}
        assert_close(self, [got[i] for i in range(5)], want, "bf16 example scores")

    # -- errors ---------------------------------------------------------------------------------

    def expect_error(self, code, field, fn, *args, **kw):
        """fn must fail with `code` naming `field`, leave model "ref" as it was, count the
        error in stats, and leave the worker serving."""
        before_size = self.store_size("ref")
        before = self.client.stats()["errors"][code]
        with self.assertRaises(sc.SedimentError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code, code, cm.exception.message)
        self.assertIn(field, cm.exception.message)
        self.assertEqual(self.client.stats()["errors"][code], before + 1)
        self.assertEqual(self.store_size("ref"), before_size)
        return cm.exception

    def ref_batch(self, **change):
        grads = np.array(CASE["train_grads"][0][:2], dtype=np.float32)
        args = dict(model="ref", checkpoint="ck0", lr=CASE["lrs"][0], contributor="alice",
                    shard="s0", example_ids=[1000, 1001], grads=grads)
        args.update(change)
        return args

    def test_error_not_found(self):
        self.expect_error("not_found", "model", self.client.contribute,
                          **self.ref_batch(model="nope"))
        self.expect_error("not_found", "model", self.client.attribute, "nope",
                          queries=self.queries())

    def test_error_conflict(self):
        self.expect_error("conflict", "example_ids", self.client.contribute,
                          **self.ref_batch(example_ids=[0, 1000]))
        self.expect_error("conflict", "lr", self.client.contribute, **self.ref_batch(lr=0.3))
        # At a new checkpoint: example 0 (shard s0) may not move to s1, nor s0 to bob.
        self.expect_error("conflict", "example_ids", self.client.contribute,
                          **self.ref_batch(checkpoint="ck2", shard="s1", example_ids=[0, 1000]))
        self.expect_error("conflict", "shard", self.client.contribute,
                          **self.ref_batch(checkpoint="ck2", contributor="bob"))

    def test_error_bad_request(self):
        nan = np.array(CASE["train_grads"][0][:2], dtype=np.float32)
        nan[1, 7] = np.nan
        self.expect_error("bad_request", "grads", self.client.contribute,
                          **self.ref_batch(grads=nan))
        short = sc.encode_matrix(np.zeros((2, CASE["d"]), np.float32))
        short["data"] = short["data"][:-1]
        self.expect_error("bad_request", "grads", self.client.contribute,
                          **self.ref_batch(grads=short))
        self.expect_error("bad_request", "weights", self.client.contribute,
                          **self.ref_batch(weights=[1.0, math.inf]))
        fields = self.ref_batch()
        fields["grads"] = sc.encode_matrix(fields["grads"])
        fields["bogus"] = 1
        self.expect_error("bad_request", "bogus", self.client.call, "contribute", fields)
        self.expect_error("bad_request", "queries", self.client.attribute, "ref",
                          queries={"ck0": np.zeros((1, CASE["d"] + 1), np.float32)})

    def test_error_unknown_op(self):
        self.expect_error("unknown_op", "op", self.client.call, "frobnicate")


if __name__ == "__main__":
    unittest.main(verbosity=2)
