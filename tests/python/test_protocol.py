"""test_protocol.py - the worker over real sockets, with raw msgpack frames: every op, every
error code the worker can give, the bad-input suite (also against the ASan build), the known
answers through the service, CURVE admission, clean shutdown and kill -9 crash recovery."""
import hashlib
import json
import math
import os
import struct
import threading
import time
import unittest

import msgpack
import numpy as np
import zmq

from workerproc import BIN, Raw, Worker, matrix

TESTDATA = os.environ.get("SDM_TESTDATA", os.path.join(os.path.dirname(__file__), "..", "data"))
SC = json.load(open(os.path.join(TESTDATA, "reference_vectors.json")))["scoring_case"]

D, K = 16, 8


def register(c, model="m", d=D, k=K, kind="rademacher", seed=7):
    return c.call("register", model=model, input_dim=d, projection={"kind": kind, "dim": k, "seed": seed})


def contribute(c, ids, grads, model="m", ckpt="c0", lr=0.5, contributor="alice", shard="s0", **kw):
    return c.call("contribute", model=model, checkpoint=ckpt, lr=lr, contributor=contributor,
                  shard=shard, example_ids=list(ids), grads=matrix(grads), **kw)


def leaf_hash(model, ckpt, lr, contributor, shard, n, ids, data, weights=None, curvature=False):
    ids_digest = hashlib.sha256(struct.pack("<%dQ" % len(ids), *ids)).digest()
    wd = hashlib.sha256(b"" if weights is None else struct.pack("<%dd" % len(weights), *weights)).digest()
    leaf = msgpack.packb([model, ckpt, float(lr), contributor, shard, n, ids_digest,
                          hashlib.sha256(data).digest(), wd, curvature], use_bin_type=True)
    return hashlib.sha256(b"\x00" + leaf).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def open_envelope(env):
    import nacl.signing
    tag, body, key, sig = env
    assert tag == "sediment-signed-v1"
    nacl.signing.VerifyKey(key).verify(b"sediment-signed-v1\n" + body, sig)
    return msgpack.unpackb(body, raw=False), key


def bad(rep, code, *words):
    assert rep["ok"] is False, rep
    assert rep["error"]["code"] == code, rep
    for w in words:
        assert w in rep["error"]["message"], (w, rep)


class Protocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Worker()
        cls.c = Raw(cls.w.endpoint)
        register(cls.c)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.w.stop() == 0
        cls.w.close()

    def test_info(self):
        rep = self.c.call("info")
        self.assertTrue(rep["ok"])
        self.assertEqual(rep["backend"], "cpu")
        self.assertEqual(len(rep["worker_key"]), 32)
        names = [m["model"] for m in rep["models"]]
        self.assertIn("m", names)
        m = rep["models"][names.index("m")]
        self.assertEqual(m["projection"], {"kind": "rademacher", "dim": K, "seed": 7})

    def test_id_echo(self):
        for rid in ["abc", 2 ** 63, [1, {"x": None}], None]:
            rep = self.c.call_bytes(msgpack.packb({"op": "info", "id": rid}, use_bin_type=True))
            self.assertEqual(rep["id"], rid)
        rep = self.c.call_bytes(msgpack.packb({"op": "info"}))
        self.assertIsNone(rep["id"])

    def test_register(self):
        rep = register(self.c, model="reg")
        self.assertTrue(rep["created"])
        rep = register(self.c, model="reg")
        self.assertTrue(rep["ok"])
        self.assertFalse(rep["created"])
        bad(register(self.c, model="reg", seed=8), "conflict", "projection")
        bad(self.c.call("register", model="x", input_dim=4, projection={"kind": "none", "dim": 3, "seed": 0}),
            "bad_request", "dim")
        bad(self.c.call("register", model="x", input_dim=8, projection={"kind": "sjlt", "dim": 8, "seed": 0, "s": 3}),
            "bad_request", "s")

    def test_contribute_receipt_and_tree(self):
        register(self.c, model="tree")
        rng = np.random.default_rng(1)
        leaves = []
        key = self.c.call("info")["worker_key"]
        for b in range(5):
            n = 1 + b
            ids = list(range(100 * b, 100 * b + n))
            g = rng.standard_normal((n, D)).astype(np.float32)
            w = [1.0 + i for i in range(n)] if b % 2 else None
            kw = {"weights": w} if w else {}
            rep = contribute(self.c, ids, g, model="tree", shard="s%d" % (b % 2), **kw)
            self.assertTrue(rep["ok"], rep)
            self.assertEqual(rep["batch"], b)
            lh = leaf_hash("tree", "c0", 0.5, "alice", "s%d" % (b % 2), n, ids, g.tobytes(), w)
            self.assertEqual(rep["leaf"], lh)
            leaves.append(lh)
            self.assertEqual(rep["store_size"], b + 1)
            self.assertEqual(rep["store_root"], mth(leaves))
            body, signer = open_envelope(rep["receipt"])
            self.assertEqual(signer, key)
            self.assertEqual(list(body.keys()), ["v", "type", "worker", "issued_at", "model", "checkpoint", "lr",
                                                 "contributor", "shard", "n", "batch", "leaf", "store_size",
                                                 "store_root", "ids_digest", "data_digest", "weights_digest",
                                                 "curvature"])
            self.assertEqual(body["type"], "contribution")
            self.assertEqual(body["leaf"], lh)
            self.assertEqual(body["store_root"], mth(leaves))
        # curvature batch: empty contributor and shard, digest of no ids
        g = rng.standard_normal((3, D)).astype(np.float32)
        rep = self.c.call("contribute", model="tree", checkpoint="c0", lr=0.5, curvature=True, grads=matrix(g))
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(rep["leaf"], leaf_hash("tree", "c0", 0.5, "", "", 3, [], g.tobytes(), curvature=True))
        info = self.c.call("info")
        m = [x for x in info["models"] if x["model"] == "tree"][0]
        self.assertEqual(m["store_size"], 6)

    def test_contribute_errors_change_nothing(self):
        register(self.c, model="err")
        g = np.ones((2, D), np.float32)
        self.assertTrue(contribute(self.c, [1, 2], g, model="err")["ok"])
        before = [x for x in self.c.call("info")["models"] if x["model"] == "err"][0]
        bad(contribute(self.c, [3, 3], g, model="err"), "conflict", "3")
        bad(contribute(self.c, [2, 4], g, model="err"), "conflict", "2")
        bad(contribute(self.c, [5, 6], g, model="err", lr=0.25), "conflict", "lr")
        bad(contribute(self.c, [1, 7], g, model="err", ckpt="c1", shard="other"), "conflict", "shard")
        bad(contribute(self.c, [8, 9], g, model="err", contributor="bob"), "conflict")
        bad(contribute(self.c, [8, 9], g, model="nope"), "not_found", "model")
        nan = g.copy()
        nan[1, 3] = np.nan
        bad(contribute(self.c, [8, 9], nan, model="err"), "bad_request", "grads")
        inf = g.copy()
        inf[0, 0] = np.inf
        bad(contribute(self.c, [8, 9], inf, model="err"), "bad_request", "grads")
        bad(contribute(self.c, [8, 9], np.ones((2, D + 1), np.float32), model="err"), "bad_request", "grads")
        bad(contribute(self.c, [8], g, model="err"), "bad_request", "example_ids")
        bad(contribute(self.c, [8, 9], g, model="err", weights=[1.0]), "bad_request", "weights")
        bad(contribute(self.c, [8, 9], g, model="err", weights=[1.0, float("nan")]), "bad_request", "weights")
        bad(contribute(self.c, [8, 9], g, model="err", lr=float("inf")), "bad_request", "lr")
        bad(contribute(self.c, [8, 9], g, model="err", colour="red"), "bad_request", "colour")
        bad(contribute(self.c, [-1, 9], g, model="err"), "bad_request", "example_ids")
        bad(contribute(self.c, [8, 9], g, model="err", lr="0.5"), "bad_request", "lr")
        bad(contribute(self.c, [8, 9], g, model="", shard="s0"), "bad_request", "model")
        after = [x for x in self.c.call("info")["models"] if x["model"] == "err"][0]
        self.assertEqual(before, after)

    def test_bad_frames(self):
        c = self.c
        good = msgpack.packb({"op": "info", "id": 1})
        for cut in range(1, len(good)):
            bad(c.call_bytes(good[:cut]), "bad_request")
        bad(c.call_bytes(b"\xdd\xff\xff\xff\xff"), "bad_request")
        bad(c.call_bytes(b"\xdf\xff\xff\xff\xff"), "bad_request")
        bad(c.call_bytes(b"\xc6\xff\xff\xff\xff"), "bad_request")
        bad(c.call_bytes(good + b"\x00"), "bad_request")
        bad(c.call_bytes(b""), "bad_request")
        deep = {"op": "info", "x": 0}
        for _ in range(40):
            deep["x"] = [deep["x"]]
        bad(c.call_bytes(msgpack.packb(deep)), "bad_request")
        bad(c.call_bytes(msgpack.packb([1, 2])), "bad_request")
        bad(c.call_bytes(msgpack.packb({"op": 3})), "bad_request", "op")
        bad(c.call_bytes(msgpack.packb({"id": 4})), "bad_request", "op")
        bad(c.call("teleport"), "unknown_op", "teleport")
        bad(c.call("info", extra=1), "bad_request", "extra")

    def test_bad_matrices(self):
        c = self.c
        g = np.ones((2, D), np.float32)
        base = dict(model="m", checkpoint="bm", lr=1.0, contributor="a", shard="bm", example_ids=[1, 2])

        def send(mat):
            return c.call("contribute", grads=mat, **base)

        m = matrix(g)
        bad(send(dict(m, dtype="f64")), "bad_request", "dtype")
        bad(send(dict(m, dtype="f16")), "bad_request", "data")  # 4-byte elements sent as f16: wrong length
        bad(send(dict(m, data=m["data"][:-1])), "bad_request", "data")
        bad(send(dict(m, rows=2 ** 62, cols=2 ** 62)), "bad_request")
        bad(send(dict(m, rows=2 ** 63, cols=4)), "bad_request")
        bad(send(dict(m, rows="2")), "bad_request", "rows")
        bad(send(dict(m, data="text")), "bad_request", "data")
        bad(send(dict(m, extra=1)), "bad_request", "extra")
        bad(send({"dtype": "f32", "rows": 2, "cols": D}), "bad_request", "data")
        half = matrix(g, "f16")
        half["data"] = np.array([np.nan] * (2 * D), "<f2").tobytes()
        bad(send(half), "bad_request", "grads")

    def test_attribute_errors(self):
        c = self.c
        q = matrix(np.ones((1, D), np.float32))
        bad(c.call("attribute", model="nope", queries={"c0": q}), "not_found", "model")
        bad(c.call("attribute", model="m", queries={"nowhere": q}), "not_found", "nowhere")
        bad(c.call("attribute", model="m", queries={}), "bad_request", "queries")
        bad(c.call("attribute", model="m", queries={"c0": q}, method="magic"), "bad_request", "method")
        bad(c.call("attribute", model="m", queries={"c0": q}, aggregate="max"), "bad_request", "aggregate")
        bad(c.call("attribute", model="m", queries={"c0": q}, topk=-1), "bad_request", "topk")
        bad(c.call("attribute", model="m", queries={"c0": q}, query_ids=[1, 2]), "bad_request", "query_ids")
        bad(c.call("attribute", model="m", queries={"c0": q}, query_features={"c0": q}), "bad_request")
        bad(c.call("attribute", model="m", queries={"a": q, "b": matrix(np.ones((2, D), np.float32))}),
            "bad_request", "rows")

    def test_too_large(self):
        # more elements than the frame's budget (2^24): refused before msgpack-c sees it
        n = (1 << 24) + 1
        frame = b"\x83" + msgpack.packb("op") + msgpack.packb("info") + msgpack.packb("id") + msgpack.packb(9) \
            + msgpack.packb("x") + b"\xdd" + struct.pack(">I", n) + b"\xc0" * n
        bad(self.c.call_bytes(frame), "too_large")
        self.assertTrue(self.c.call("info")["ok"])

    def test_stats(self):
        before = self.c.call("stats")
        self.assertTrue(before["ok"])
        bad(self.c.call("teleport"), "unknown_op")
        after = self.c.call("stats")
        self.assertEqual(after["errors"]["unknown_op"], before["errors"]["unknown_op"] + 1)
        self.assertEqual(set(after["errors"]), {"bad_request", "unknown_op", "too_large", "not_found", "conflict",
                                                "unauthorized", "busy", "internal"})
        self.assertEqual(after["ops"]["stats"], before["ops"]["stats"] + 1)
        self.assertGreaterEqual(after["requests"], before["requests"] + 2)
        for key in ("batches", "examples", "bytes", "compute_seconds", "uptime_seconds"):
            self.assertIn(key, after)


def scoring_worker_requests(c, model, curvature=False, ckpt_names=("0", "1")):
    """Registers the scoring case's model and contributes it: example i, one batch each."""
    rep = c.call("register", model=model, input_dim=SC["d"],
                 projection={"kind": "rademacher", "dim": SC["k"], "seed": SC["seed"]})
    assert rep["ok"], rep
    for ci, name in enumerate(ckpt_names):
        g = np.array(SC["train_grads"][ci], np.float32)
        for i in range(SC["n"]):
            sh = SC["shard_of"][i]
            rep = contribute(c, [i], g[i:i + 1], model=model, ckpt=name, lr=SC["lrs"][ci],
                             contributor="c%d" % sh, shard="s%d" % sh)
            assert rep["ok"], rep
        cg = SC["curvature_grads"][ci]
        if curvature and cg:
            rep = c.call("contribute", model=model, checkpoint=name, lr=SC["lrs"][ci], curvature=True,
                         grads=matrix(np.array(cg, np.float32)))
            assert rep["ok"], rep


class KnownAnswers(unittest.TestCase):
    """SPEC's known answers, through the service, for every method."""

    @classmethod
    def setUpClass(cls):
        cls.w = Worker()
        cls.c = Raw(cls.w.endpoint)
        scoring_worker_requests(cls.c, "sc")
        scoring_worker_requests(cls.c, "scc", curvature=True)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.w.stop() == 0
        cls.w.close()

    def check(self, model, method, want, aggregate="sum"):
        qs = {str(ci): matrix(np.array(SC["query_grads"][ci], np.float32)) for ci in range(2)}
        rep = self.c.call("attribute", model=model, queries=qs, method=method, aggregate=aggregate, topk=3,
                          query_ids=["q0", "q1", 2], request_id="r-%s" % method)
        self.assertTrue(rep["ok"], rep)
        body, _ = open_envelope(rep["proof"])
        self.assertEqual(body["type"], "attribution")
        self.assertEqual(body["queries"], rep["result"])
        self.assertEqual(body["request_id"], "r-%s" % method)
        self.assertEqual([q["id"] for q in body["queries"]], ["q0", "q1", 2])
        self.assertEqual(body["checkpoints"], [{"id": "0", "lr": SC["lrs"][0]}, {"id": "1", "lr": SC["lrs"][1]}])
        self.assertEqual(body["query_digest"], hashlib.sha256(qs["0"]["data"] + qs["1"]["data"]).digest())
        info = [m for m in self.c.call("info")["models"] if m["model"] == model][0]
        self.assertEqual(body["store_size"], info["store_size"])
        self.assertEqual(body["store_root"], info["store_root"])
        key = "shard_sum" if aggregate == "sum" else "shard_mean"
        for qi, q in enumerate(body["queries"]):
            shards = {s[0]: s for s in q["shards"]}
            scale = max(abs(x) for x in want[key][qi])
            for s in range(SC["nshards"]):
                row = shards["s%d" % s]
                self.assertEqual(row[1], "c%d" % s)
                self.assertLess(abs(row[2] - want[key][qi][s]), 1e-4 * scale, (method, qi, s))
                if aggregate == "sum":
                    self.assertLess(abs(row[3] - want["shares"][qi][s]), 1e-4, (method, qi, s))
            self.assertEqual([t[0] for t in q["top"]], want["top3"][qi]["pro"])
            self.assertEqual([t[0] for t in q["bottom"]], want["top3"][qi]["opp"])
            for t in q["top"]:
                self.assertLess(abs(t[2] - want["scores"][qi][t[0]]), 1e-4 * scale)
        if method == "trak":
            self.assertEqual(len(body["lambda"]), 2)
            for got, exp in zip(body["lambda"], want["lambdas"]):
                self.assertLess(abs(got - exp), 1e-4 * exp)
        else:
            self.assertEqual(body["lambda"], [])

    def test_dot(self):
        self.check("sc", "dot", SC["dot"])
        self.check("sc", "dot", SC["dot"], aggregate="mean")

    def test_cosine(self):
        self.check("sc", "cosine", SC["cosine"])

    def test_trak(self):
        self.check("sc", "trak", SC["trak"])

    def test_trak_with_curvature(self):
        self.check("scc", "trak", SC["trak_with_curvature"])

    def test_query_features_equal_projected_queries(self):
        # the scoring case's train features are projections of its gradients: scoring them as
        # query features must give the same shard scores as sending the gradients
        g = matrix(np.array(SC["train_grads"][0][:3], np.float32))
        f = matrix(np.array(SC["train_features"][0][:3], np.float32))
        a = self.c.call("attribute", model="sc", queries={"0": g}, topk=0)
        b = self.c.call("attribute", model="sc", query_features={"0": f}, topk=0)
        self.assertTrue(a["ok"] and b["ok"], (a, b))
        for qa, qb in zip(a["result"], b["result"]):
            for sa, sb in zip(qa["shards"], qb["shards"]):
                self.assertLess(abs(sa[2] - sb[2]), 1e-4 * max(1.0, abs(sb[2])))


class MaxMsg(unittest.TestCase):
    def test_oversized_frame_drops_only_its_connection(self):
        w = Worker(args=["--max-msg", "4096"])
        try:
            big = Raw(w.endpoint)
            with self.assertRaises(TimeoutError):
                big.call_bytes(msgpack.packb({"op": "info", "pad": b"x" * 8192}), timeout_ms=1500)
            big.close()
            c = Raw(w.endpoint)
            self.assertTrue(c.call("info")["ok"])
            c.close()
            self.assertTrue(w.alive())
        finally:
            self.assertEqual(w.stop(), 0)
            w.close()


class Internal(unittest.TestCase):
    def test_disk_failure_is_internal_and_changes_nothing(self):
        import shutil
        w = Worker()
        try:
            c = Raw(w.endpoint)
            register(c, model="disk")
            g = np.ones((2, D), np.float32)
            self.assertTrue(contribute(c, [1, 2], g, model="disk")["ok"])
            mdir = [os.path.join(w.data, "models", x) for x in os.listdir(os.path.join(w.data, "models"))
                    if x.endswith("-disk")][0]
            # the model's directory becomes a plain file: writing the batch fails (root or not)
            shutil.move(mdir, mdir + ".away")
            with open(mdir, "w") as f:
                f.write("not a directory")
            before = [m for m in c.call("info")["models"] if m["model"] == "disk"][0]
            bad(contribute(c, [3, 4], g, model="disk"), "internal", "store")
            after = [m for m in c.call("info")["models"] if m["model"] == "disk"][0]
            self.assertEqual(before, after)
            os.remove(mdir)
            shutil.move(mdir + ".away", mdir)
            # the same batch goes in once the disk is back, as batch 1
            rep = contribute(c, [3, 4], g, model="disk")
            self.assertTrue(rep["ok"], rep)
            self.assertEqual(rep["batch"], 1)
            c.close()
        finally:
            self.assertEqual(w.stop(), 0)
            w.close()


class Busy(unittest.TestCase):
    def test_busy_when_the_queue_is_full(self):
        w = Worker(args=["--queue", "1"])
        try:
            c = Raw(w.endpoint)
            register(c, model="b", d=4096, k=512)
            rng = np.random.default_rng(3)
            for b in range(4):
                contribute(c, range(b * 500, b * 500 + 500), rng.standard_normal((500, 4096)).astype(np.float32),
                           model="b", shard="s%d" % b)
            q = {"c0": matrix(rng.standard_normal((64, 4096)).astype(np.float32))}
            socks = [Raw(w.endpoint) for _ in range(6)]
            for s in socks:
                s.send_bytes(msgpack.packb({"op": "attribute", "id": 1, "model": "b", "queries": q,
                                            "method": "trak", "topk": 50}, use_bin_type=True))
            codes = []
            for s in socks:
                rep = s.recv(120000)
                codes.append("ok" if rep["ok"] else rep["error"]["code"])
                s.close()
            self.assertIn("busy", codes)
            self.assertIn("ok", codes)
            # info is answered by the I/O thread while attributions run
            self.assertTrue(c.call("info")["ok"])
            c.close()
        finally:
            self.assertEqual(w.stop(), 0)
            w.close()


class NotStarved(unittest.TestCase):
    def test_contribute_and_info_during_a_long_attribute(self):
        w = Worker()
        try:
            c = Raw(w.endpoint)
            register(c, model="big", d=2048, k=1024)
            rng = np.random.default_rng(5)
            for b in range(8):
                contribute(c, range(b * 2000, b * 2000 + 2000),
                           rng.standard_normal((2000, 2048)).astype(np.float32), model="big", shard="s%d" % b)
            q = {"c0": matrix(rng.standard_normal((256, 2048)).astype(np.float32))}
            slow = Raw(w.endpoint)
            t0 = time.time()
            slow.send_bytes(msgpack.packb({"op": "attribute", "id": 1, "model": "big", "queries": q,
                                           "method": "trak", "topk": 100}, use_bin_type=True))
            time.sleep(0.05)
            lat = []
            for i in range(5):
                t = time.time()
                rep = contribute(c, [10 ** 6 + i], rng.standard_normal((1, 2048)).astype(np.float32), model="big",
                                 shard="late")
                self.assertTrue(rep["ok"], rep)
                lat.append(time.time() - t)
                self.assertTrue(c.call("info")["ok"])
            # every contribution was answered while the attribution was still running
            self.assertEqual(slow.sock.poll(0), 0, "the attribution finished too soon to tell")
            rep = slow.recv(300000)
            total = time.time() - t0
            self.assertTrue(rep["ok"], rep)
            body, _ = open_envelope(rep["proof"])
            self.assertLess(sum(lat), total)
            # and the next attribution sees them (they moved from pending into the store)
            rep = c.call("attribute", model="big", queries={"c0": matrix(rng.standard_normal((1, 2048)).astype(np.float32))},
                         topk=0)
            body2, _ = open_envelope(rep["proof"])
            self.assertEqual(body2["store_size"], 13)
            shards = {s[0] for s in rep["result"][0]["shards"]}
            self.assertIn("late", shards)
            slow.close()
            c.close()
        finally:
            self.assertEqual(w.stop(), 0)
            w.close()


class Sanitized(unittest.TestCase):
    """The bad-input suite against the ASan+UBSan worker: errors, it keeps serving, RSS bounded."""

    def test_bad_input_under_asan(self):
        exe = "sediment-worker-asan"
        if not os.path.exists(os.path.join(BIN, exe)):
            self.fail("%s not built" % exe)
        w = Worker(exe=exe, env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"})
        try:
            c = Raw(w.endpoint)
            register(c)
            g = np.ones((2, D), np.float32)
            self.assertTrue(contribute(c, [1, 2], g)["ok"])
            frames = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                      b"\xdb\xff\xff\xff\xff", b"\x91" * 40 + b"\xc0", b"\x81\xa2op\xa4info\xc0",
                      msgpack.packb({"op": "info"}) + b"\x01"]
            base = dict(op="contribute", model="m", checkpoint="c0", lr=0.5, contributor="alice", shard="s0")
            m = matrix(g)
            for mat in [dict(m, rows=2 ** 62, cols=2 ** 62), dict(m, dtype="bf16"), dict(m, data=b"x"),
                        dict(m, rows=-1), dict(m, cols="many")]:
                frames.append(msgpack.packb(dict(base, example_ids=[3, 4], grads=mat), use_bin_type=True))
            nan = g.copy()
            nan[0, 0] = np.nan
            frames.append(msgpack.packb(dict(base, example_ids=[3, 4], grads=matrix(nan)), use_bin_type=True))
            frames.append(msgpack.packb(dict(base, example_ids=["3", 4], grads=m), use_bin_type=True))
            rss0 = None
            for rnd in range(30):
                for f in frames:
                    for cut in (len(f), max(1, len(f) // 2)):
                        rep = c.call_bytes(f[:cut])
                        self.assertFalse(rep["ok"], (f[:cut], rep))
                        self.assertIn(rep["error"]["code"], ("bad_request", "too_large", "unknown_op"))
                if rnd == 5:
                    rss0 = w.rss_kib()
            rss1 = w.rss_kib()
            # memory stays bounded: 25 more rounds of bad input grow RSS by less than 32 MiB
            self.assertLess(rss1 - rss0, 32 * 1024, (rss0, rss1))
            self.assertTrue(contribute(c, [5, 6], g)["ok"])
            self.assertTrue(c.call("info")["ok"])
            c.close()
            self.assertEqual(w.stop(), 0)  # ASan exits non-zero on a leak or an error
        finally:
            w.close()


class Curve(unittest.TestCase):
    def test_only_allowed_keys_get_in(self):
        import tempfile
        server_pub, server_sec = zmq.curve_keypair()
        ok_pub, ok_sec = zmq.curve_keypair()
        other_pub, other_sec = zmq.curve_keypair()
        with tempfile.TemporaryDirectory() as d:
            sec = os.path.join(d, "server.key")
            with open(sec, "wb") as f:
                f.write(server_sec + b"\n")
            os.chmod(sec, 0o600)
            allow = os.path.join(d, "allow")
            with open(allow, "wb") as f:
                f.write(b"# allowed clients\n" + ok_pub + b"\n")
            w = Worker(args=["--curve-secret", sec, "--allow", allow])
            try:
                ok = Raw(w.endpoint, curve=(server_pub, ok_pub, ok_sec))
                self.assertTrue(ok.call("info")["ok"])
                other = Raw(w.endpoint, curve=(server_pub, other_pub, other_sec))
                with self.assertRaises(TimeoutError):
                    other.call_bytes(msgpack.packb({"op": "info"}), timeout_ms=1500)
                plain = Raw(w.endpoint)
                with self.assertRaises(TimeoutError):
                    plain.call_bytes(msgpack.packb({"op": "info"}), timeout_ms=1500)
                self.assertTrue(ok.call("info")["ok"])
                for s in (ok, other, plain):
                    s.close()
            finally:
                self.assertEqual(w.stop(), 0)
                w.close()

    def test_non_loopback_needs_curve(self):
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([os.path.join(BIN, "sediment-worker"), "--listen", "tcp://0.0.0.0:0", "--data", d,
                                "--backend", "cpu"], capture_output=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"--listen", p.stderr)


class CrashRecovery(unittest.TestCase):
    """kill -9 during a stream of contributions: every acknowledged batch survives, with the
    same store root, at several kill points."""

    def batch(self, i):
        rng = np.random.default_rng(1000 + i)
        n = 1 + i % 7
        ids = list(range(i * 10, i * 10 + n))
        g = rng.standard_normal((n, D)).astype(np.float32)
        w = [float(x) for x in rng.uniform(0.5, 2, n)] if i % 3 == 0 else None
        return ids, g, w, "s%d" % (i % 4), "ck%d" % (i % 2)

    def leaf(self, i):
        ids, g, w, shard, ck = self.batch(i)
        return leaf_hash("crash", ck, 0.5, "alice", shard, len(ids), ids, g.tobytes(), w)

    def test_kill9(self):
        w = Worker()
        try:
            c = Raw(w.endpoint)
            register(c, model="crash")
            c.close()
            sent = 0
            acked_per_round = []
            for round_, delay in enumerate([0.0, 0.02, 0.1, 0.3, 0.15, 0.6]):
                acked = []
                stop = threading.Event()

                def stream():
                    nonlocal sent
                    s = Raw(w.endpoint, timeout_ms=5000)
                    try:
                        while not stop.is_set():
                            ids, g, wt, shard, ck = self.batch(sent)
                            kw = {"weights": wt} if wt else {}
                            sent += 1
                            rep = contribute(s, ids, g, model="crash", ckpt=ck, shard=shard, **kw)
                            if not rep["ok"]:
                                raise AssertionError(rep)
                            acked.append(rep)
                    except TimeoutError:
                        pass
                    finally:
                        s.close()

                t = threading.Thread(target=stream)
                t.start()
                time.sleep(delay)
                w.kill9()
                stop.set()
                t.join()
                w.start()
                c = Raw(w.endpoint)
                info = [m for m in c.call("info")["models"] if m["model"] == "crash"][0]
                size = info["store_size"]
                n_acked = acked[-1]["batch"] + 1 if acked else 0
                acked_per_round.append(len(acked))
                # every acknowledged batch is there; at most the one in flight beyond them
                self.assertGreaterEqual(size, n_acked, round_)
                self.assertLessEqual(size, sent, round_)
                leaves = [self.leaf(i) for i in range(size)]
                self.assertEqual(info["store_root"], mth(leaves), round_)
                for rep in acked:
                    self.assertEqual(rep["leaf"], leaves[rep["batch"]])
                    self.assertEqual(rep["store_root"], mth(leaves[:rep["batch"] + 1]))
                # the batch in flight, when it was not kept, is sent again next round
                sent = size
                # the restarted store answers queries over every batch
                rep = c.call("attribute", model="crash", query_features={
                    "ck0": matrix(np.ones((1, K), np.float32))}, topk=1)
                if size:
                    self.assertTrue(rep["ok"], rep)
                    body, _ = open_envelope(rep["proof"])
                    self.assertEqual(body["store_size"], size)
                c.close()
            # the kills really fell in the middle of streams
            self.assertGreaterEqual(sum(1 for a in acked_per_round if a > 0), 3, acked_per_round)
        finally:
            self.assertEqual(w.stop(), 0)
            w.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
