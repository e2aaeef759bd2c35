"""test_worker_ledger.py - `sediment-worker --ledger`: every receipt and proof reaches the
ledger byte for byte, waits in the durable outbox while the ledger is down or silent, survives
kill -9, is delivered once (the ledger's dedup turns resends into the same index), and an
entry the ledger refuses for good is counted and not sent again. The ledger here is a fake
that speaks SPEC §6's `append` exactly as sediment-ledger does."""
import base64
import hashlib
import os
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

import msgpack
import numpy as np
import zmq

from workerproc import BIN, Raw, Worker, matrix

D, K = 16, 8


def raw_fields(payload):
    """The msgpack map in payload as {key: the value's encoded bytes}, cut out as they are."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(payload)
    out = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        start = u.tell()
        u.skip()
        out[key] = payload[start:u.tell()]
    return out


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def open_envelope(env_bytes, key=None):
    import nacl.signing
    tag, body, signer, sig = msgpack.unpackb(env_bytes, raw=False)
    assert tag == "sediment-signed-v1"
    nacl.signing.VerifyKey(signer).verify(b"sediment-signed-v1\n" + body, sig)
    if key is not None:
        assert signer == key
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def free_endpoint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "tcp://127.0.0.1:%d" % port


def wait_for(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


class FakeLedger:
    """SPEC §6's ledger `append` on a ROUTER socket. A new envelope gets the next index; the
    same bytes again get the same index with duplicate: true. `answering` False commits but
    never replies (an answer lost on the way); `refuse(env)` may return (code, message) to
    answer an error instead."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.index_of = {}   # envelope bytes -> index
        self.log = []        # the envelopes, in index order: what the real ledger would hold
        self.wire = []       # every append received, resends included
        self.keys = []       # the key sets of the requests
        self.answers = []    # every answer sent
        self.answering = True
        self.refuse = lambda env: None
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            ident, payload = frames[0], frames[-1]
            assert frames[1] == b"", frames
            rep = self.handle(payload)
            if rep is not None:
                self.sock.send_multipart([ident, b"", msgpack.packb(rep, use_bin_type=True)])

    def handle(self, payload):
        fields = raw_fields(payload)
        req_id = msgpack.unpackb(fields["id"]) if "id" in fields else None
        op = msgpack.unpackb(fields.get("op", b"\xc0"), raw=False)
        with self.lock:
            self.keys.append(sorted(fields))
            if op != "append" or "entry" not in fields:
                return {"id": req_id, "ok": False, "error": {"code": "bad_request", "message": "op"}}
            env = fields["entry"]
            self.wire.append(env)
            refused = self.refuse(env)
            if refused:
                rep = {"id": req_id, "ok": False, "error": {"code": refused[0], "message": refused[1]}}
            else:
                dup = env in self.index_of
                if not dup:
                    self.index_of[env] = len(self.log)
                    self.log.append(env)
                size = len(self.log)
                root = mth([leaf_hash(e) for e in self.log])
                rep = {"id": req_id, "ok": True, "index": self.index_of[env], "leaf_hash": leaf_hash(env),
                       "size": size,
                       "checkpoint": "fake.ledger/test\n%d\n%s\n" % (size, base64.b64encode(root).decode()),
                       "duplicate": dup}
            self.answers.append(rep)
            return rep if self.answering else None

    def sends(self, env):
        with self.lock:
            return sum(1 for e in self.wire if e == env)

    def entries(self):
        with self.lock:
            return list(self.log)

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close(0)


def call_raw(c, op, **fields):
    """A request whose reply comes back both decoded and as {key: raw bytes}."""
    req = {"op": op, "id": c.next_id}
    c.next_id += 1
    req.update(fields)
    c.send_bytes(msgpack.packb(req, use_bin_type=True))
    if not c.sock.poll(c.timeout_ms):
        raise TimeoutError("no reply")
    payload = c.sock.recv_multipart()[-1]
    rep = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    assert rep["ok"], rep
    return rep, raw_fields(payload)


def register(c, model="m"):
    rep = c.call("register", model=model, input_dim=D, projection={"kind": "rademacher", "dim": K, "seed": 7})
    assert rep["ok"], rep


def contribute(c, b, model="m"):
    """Batch b (examples 10b..10b+2) and its receipt's envelope bytes."""
    g = np.random.default_rng(b).standard_normal((3, D)).astype(np.float32)
    rep, raw = call_raw(c, "contribute", model=model, checkpoint="c0", lr=0.5, contributor="alice",
                        shard="s%d" % (b % 2), example_ids=[10 * b, 10 * b + 1, 10 * b + 2], grads=matrix(g))
    return raw["receipt"]


def attribute(c, model="m"):
    rep, raw = call_raw(c, "attribute", model=model, query_features={"c0": matrix(np.ones((1, K), np.float32))},
                        topk=2, request_id="q")
    return raw["proof"]


def ledger_stats(c):
    rep = c.call("stats")
    assert rep["ok"], rep
    return rep["ledger"]


def counts(c):
    s = ledger_stats(c)
    return s["pending"], s["delivered"], s["rejected"]


class LedgerLink(unittest.TestCase):
    def setUp(self):
        self.ep = free_endpoint()
        self.ledger = None
        self.w = None
        self.c = None

    def tearDown(self):
        if self.c:
            self.c.close()
        if self.w:
            self.w.close()
        if self.ledger:
            self.ledger.close()

    def start_worker(self):
        self.w = Worker(args=["--ledger", self.ep])
        self.c = Raw(self.w.endpoint)

    def restart_worker(self):
        if self.c:
            self.c.close()
        self.w.start()
        self.c = Raw(self.w.endpoint)

    def stop_worker(self, timeout=10):
        """SIGTERM; returns (exit status, seconds it took)."""
        self.c.close()
        self.c = None
        t0 = time.monotonic()
        rc = self.w.stop(timeout=timeout)
        return rc, time.monotonic() - t0

    # (a) ledger up: both kinds arrive exactly as the client got them
    def test_receipts_and_proofs_arrive_byte_identical(self):
        self.ledger = FakeLedger(self.ep)
        self.start_worker()
        key = self.c.call("info")["worker_key"]
        register(self.c)
        sent = [contribute(self.c, 0), contribute(self.c, 1), attribute(self.c)]
        wait_for(lambda: counts(self.c) == (0, 3, 0), what="3 delivered")
        # in order, byte for byte, each sent once, each a valid envelope of this worker
        self.assertEqual(self.ledger.entries(), sent)
        self.assertEqual(len(self.ledger.wire), 3)
        self.assertEqual([open_envelope(e, key)["type"] for e in sent], ["contribution", "contribution", "attribution"])
        # the request is exactly {"id", "op": "append", "entry"}
        self.assertEqual(self.ledger.keys, [["entry", "id", "op"]] * 3)
        s = ledger_stats(self.c)
        self.assertEqual(s, {"endpoint": self.ep, "pending": 0, "delivered": 3, "rejected": 0})
        rc, _ = self.stop_worker()
        self.assertEqual(rc, 0)

    # (b) ledger down at start: the entries wait, then go when it comes up
    def test_ledger_down_then_up(self):
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(3)]
        self.assertEqual(counts(self.c), (3, 0, 0))
        time.sleep(0.3)
        self.assertEqual(counts(self.c), (3, 0, 0))
        self.ledger = FakeLedger(self.ep)
        wait_for(lambda: counts(self.c) == (0, 3, 0), what="3 delivered once the ledger is up")
        self.assertEqual(self.ledger.entries(), sent)
        self.assertEqual(self.stop_worker()[0], 0)

    # (c) kill -9 while the ledger is down: acknowledged receipts survive in the outbox
    def test_kill9_while_ledger_down(self):
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(5)]
        self.assertEqual(counts(self.c)[0], 5)
        self.w.kill9()
        self.ledger = FakeLedger(self.ep)
        self.restart_worker()
        wait_for(lambda: counts(self.c) == (0, 5, 0), what="5 delivered after the restart")
        self.assertEqual(self.ledger.entries(), sent)
        self.assertEqual(self.stop_worker()[0], 0)

    # (c) kill -9 after the ledger committed but before any answer came back: the resends
    # after the restart get the same indexes, and each receipt is one log entry
    def test_kill9_with_answers_lost(self):
        self.ledger = FakeLedger(self.ep)
        self.ledger.answering = False
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(4)]
        wait_for(lambda: len(self.ledger.wire) >= 4, what="4 appends on the wire")
        self.assertEqual(counts(self.c), (4, 0, 0))
        self.w.kill9()
        self.ledger.answering = True
        self.restart_worker()
        wait_for(lambda: counts(self.c) == (0, 4, 0), what="4 delivered after the restart")
        self.assertEqual(self.ledger.entries(), sent)
        for env in sent:
            self.assertGreaterEqual(self.ledger.sends(env), 2)
        dups = [a for a in self.ledger.answers if a.get("duplicate")]
        self.assertEqual(sorted(a["index"] for a in dups[:4]), [0, 1, 2, 3])
        # delivered counts entries, not answers: still 4 after another restart
        self.assertEqual(self.stop_worker()[0], 0)
        self.restart_worker()
        self.assertEqual(counts(self.c), (0, 4, 0))
        self.assertEqual(self.stop_worker()[0], 0)

    # (d) an entry the ledger refuses for good is counted, kept, and not sent again
    def test_unauthorized_is_rejected_not_retried(self):
        self.ledger = FakeLedger(self.ep)
        key_refused = {}

        def refuse(env):
            body = open_envelope(env)
            if body["type"] == "contribution" and body["batch"] == 1:
                key_refused["env"] = env
                return ("unauthorized", "worker key is not on the allow-list")
            return None

        self.ledger.refuse = refuse
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(3)]
        wait_for(lambda: counts(self.c) == (0, 2, 1), what="2 delivered, 1 rejected")
        self.assertEqual(self.ledger.entries(), [sent[0], sent[2]])
        time.sleep(1.0)  # many backoff periods: a retry would have happened by now
        self.assertEqual(self.ledger.sends(sent[1]), 1)
        # the refused envelope and the ledger's reason stay readable in outbox.db
        db = sqlite3.connect(os.path.join(self.w.data, "outbox.db"))
        rows = db.execute("SELECT kind, entry, rejected_code, rejected_message FROM entries").fetchall()
        db.close()
        self.assertEqual(rows, [("receipt", sent[1], "unauthorized", "worker key is not on the allow-list")])
        # and after a restart: still counted, still not sent
        self.assertEqual(self.stop_worker()[0], 0)
        self.restart_worker()
        self.assertEqual(counts(self.c), (0, 2, 1))
        time.sleep(0.5)
        self.assertEqual(self.ledger.sends(sent[1]), 1)
        self.assertEqual(self.stop_worker()[0], 0)

    # busy (and internal) are transient: sent again with backoff until accepted
    def test_busy_is_retried(self):
        self.ledger = FakeLedger(self.ep)
        tries = {}

        def refuse(env):
            tries[env] = tries.get(env, 0) + 1
            if tries[env] <= 2:
                return ("busy", "try later")
            if tries[env] == 3:
                return ("internal", "disk hiccup")
            return None

        self.ledger.refuse = refuse
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(2)]
        wait_for(lambda: counts(self.c) == (0, 2, 0), what="2 delivered after busy answers")
        self.assertEqual(self.ledger.entries(), sent)
        for env in sent:
            self.assertEqual(self.ledger.sends(env), 4)
        self.assertEqual(self.stop_worker()[0], 0)

    # (e) a ledger that takes appends but answers nothing for a while, then recovers: no
    # loss, one entry each; and SIGTERM while it is silent does not hang
    def test_silent_ledger_then_recovery(self):
        self.ledger = FakeLedger(self.ep)
        self.ledger.answering = False
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(3)]
        # past the 5 s silence: the worker reconnects and sends everything again
        wait_for(lambda: len(self.ledger.wire) >= 6, timeout=12, what="the resend after 5 s of silence")
        self.assertEqual(counts(self.c), (3, 0, 0))
        self.ledger.answering = True
        wait_for(lambda: counts(self.c) == (0, 3, 0), timeout=15, what="delivery after recovery")
        self.assertEqual(self.ledger.entries(), sent)

        # silent again: one more, then SIGTERM must not wait for the ledger
        self.ledger.answering = False
        more = contribute(self.c, 3)
        wait_for(lambda: self.ledger.sends(more) >= 1, what="the 4th append on the wire")
        rc, took = self.stop_worker()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        # it waited in the outbox, and goes once the ledger answers again
        self.ledger.answering = True
        self.restart_worker()
        wait_for(lambda: counts(self.c) == (0, 4, 0), what="the 4th delivered after the restart")
        self.assertEqual(self.ledger.entries(), sent + [more])
        self.assertEqual(self.stop_worker()[0], 0)


@unittest.skipUnless(os.path.exists(os.path.join(BIN, "sediment-ledger")), "sediment-ledger not built")
class RealLedger(unittest.TestCase):
    """The same link against sediment-ledger itself: what the fake stands in for."""

    def entry(self, led, index):
        c = Raw(led.endpoint)
        try:
            c.send_bytes(msgpack.packb({"op": "entry", "id": 1, "index": index}, use_bin_type=True))
            assert c.sock.poll(30000)
            payload = c.sock.recv_multipart()[-1]
            assert msgpack.unpackb(payload, raw=False)["ok"], payload
            return raw_fields(payload)["entry"]
        finally:
            c.close()

    def test_delivery_and_restart_of_the_ledger(self):
        from ledgerproc import Ledger
        led = Ledger()
        w = Worker(args=["--ledger", led.endpoint])
        c = Raw(w.endpoint)
        try:
            register(c)
            sent = [contribute(c, 0), contribute(c, 1), attribute(c)]
            wait_for(lambda: counts(c) == (0, 3, 0), what="3 delivered to sediment-ledger")
            self.assertEqual([self.entry(led, i) for i in range(3)], sent)
            # the ledger goes away; entries wait; it comes back on the same endpoint
            self.assertEqual(led.stop(), 0)
            more = [contribute(c, 2), contribute(c, 3)]
            self.assertEqual(counts(c), (2, 3, 0))
            led.start(listen=led.endpoint)
            wait_for(lambda: counts(c) == (0, 5, 0), timeout=20, what="2 more after the ledger's restart")
            self.assertEqual([self.entry(led, i) for i in range(5)], sent + more)
            c.close()
            self.assertEqual(w.stop(), 0)
        finally:
            w.close()
            led.close()

    def test_worker_not_on_the_allow_list_is_rejected(self):
        from ledgerproc import Ledger
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            workers = os.path.join(d, "workers")
            with open(workers, "w") as f:
                f.write("ab" * 32 + "\n")  # somebody else's key
            led = Ledger(args=["--workers", workers])
            w = Worker(args=["--ledger", led.endpoint])
            c = Raw(w.endpoint)
            try:
                register(c)
                contribute(c, 0)
                wait_for(lambda: counts(c) == (0, 0, 1), what="the receipt rejected")
                db = sqlite3.connect(os.path.join(w.data, "outbox.db"))
                code = db.execute("SELECT rejected_code FROM entries").fetchall()
                db.close()
                self.assertEqual(code, [("unauthorized",)])
                c.close()
                self.assertEqual(w.stop(), 0)
            finally:
                w.close()
                led.close()


class Options(unittest.TestCase):
    def test_stats_without_ledger_has_no_ledger_key(self):
        w = Worker()
        try:
            c = Raw(w.endpoint)
            rep = c.call("stats")
            self.assertTrue(rep["ok"])
            self.assertNotIn("ledger", rep)
            self.assertFalse(os.path.exists(os.path.join(w.data, "outbox.db")))
            c.close()
            self.assertEqual(w.stop(), 0)
        finally:
            w.close()

    def test_bad_ledger_endpoint_stops_the_start(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            for ep in ["nonsense", "tcp://", ""]:
                p = subprocess.run([os.path.join(BIN, "sediment-worker"), "--listen", "tcp://127.0.0.1:0",
                                    "--data", os.path.join(d, "data"), "--backend", "cpu", "--ledger", ep],
                                   capture_output=True, timeout=60)
                self.assertNotEqual(p.returncode, 0, ep)
                self.assertIn(b"--ledger", p.stderr, ep)
                self.assertEqual(p.stdout, b"", ep)

    def test_help_mentions_ledger(self):
        p = subprocess.run([os.path.join(BIN, "sediment-worker"), "--help"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--ledger ENDPOINT", p.stdout)
        self.assertIn(b"CURVE", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
