"""test_worker_ledger.py - `sediment-worker --ledger`: every receipt and proof reaches the
ledger byte for byte, waits in the durable outbox while the ledger is down or silent, survives
kill -9 (also in the middle of delivering a backlog), is delivered once (the ledger's dedup
turns resends into the same index), and an entry the ledger refuses for good is counted and not
sent again, as is one too large for the ledger's --max-msg. Most tests use a fake ledger that
speaks SPEC §6's `append` exactly as sediment-ledger does; the rest run sediment-ledger itself,
plain and with CURVE (right keys deliver; a wrong server key, a client key not on the ledger's
allow-list or a plain link hold the entries in the outbox until the keys are right)."""
import base64
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
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
    answer an error instead; `mangle(env, answer)` may change the answer, or return bytes to
    send instead of it."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.index_of = {}   # envelope bytes -> index
        self.log = []        # the envelopes, in index order: what the real ledger would hold
        self.wire = []       # every append received, resends included
        self.keys = []       # the key sets of the requests
        self.answers = []    # every answer sent
        self.answering = True
        self.delay = 0.0     # seconds spent on each append (a slow ledger)
        self.refuse = lambda env: None
        self.mangle = lambda env, rep: rep
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
            if self.delay:
                time.sleep(self.delay)
            rep = self.handle(payload)
            if rep is not None:
                if not isinstance(rep, bytes):
                    rep = msgpack.packb(rep, use_bin_type=True)
                self.sock.send_multipart([ident, b"", rep])

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
            rep = self.mangle(env, rep)
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


def batch_fields(b, model="m"):
    """The contribute request of batch b (examples 10b..10b+2)."""
    g = np.random.default_rng(b).standard_normal((3, D)).astype(np.float32)
    return dict(model=model, checkpoint="c0", lr=0.5, contributor="alice", shard="s%d" % (b % 2),
                example_ids=[10 * b, 10 * b + 1, 10 * b + 2], grads=matrix(g))


def contribute(c, b, model="m"):
    """Contributes batch b; its receipt's envelope bytes."""
    rep, raw = call_raw(c, "contribute", **batch_fields(b, model))
    return raw["receipt"]


def attribute(c, model="m"):
    rep, raw = call_raw(c, "attribute", model=model, query_features={"c0": matrix(np.ones((1, K), np.float32))},
                        topk=2, request_id="q")
    return raw["proof"]


def outbox_cli(data, *args, check=True):
    """`sediment --json outbox --data DATA ARGS`: its JSON document, or (check=False) the
    finished process."""
    p = subprocess.run([os.path.join(BIN, "sediment"), "--json", "outbox", "--data", data] + list(args),
                       capture_output=True, timeout=60)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    import json
    return json.loads(p.stdout)


def ledger_stats(c):
    rep = c.call("stats")
    assert rep["ok"], rep
    return rep["ledger"]


def counts(c):
    s = ledger_stats(c)
    return s["pending"], s["delivered"], s["rejected"]


def outbox_rows(data):
    """(seq, kind, entry, rejected_code, rejected_message) of every row left in outbox.db."""
    db = sqlite3.connect(os.path.join(data, "outbox.db"))
    try:
        return db.execute("SELECT seq, kind, entry, rejected_code, rejected_message FROM entries "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()


def outbox_counter(data, name):
    db = sqlite3.connect(os.path.join(data, "outbox.db"))
    try:
        return db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]
    finally:
        db.close()


def big_attribute(c, queries=60, model="m"):
    """A proof of many queries: about 12.7 KB, over a ledger's --max-msg of 4096."""
    rep, raw = call_raw(c, "attribute", model=model,
                        query_features={"c0": matrix(np.ones((queries, K), np.float32))},
                        topk=3, request_id="big")
    return raw["proof"]


class LoudWorker(Worker):
    """A worker without --quiet whose log (standard error) goes to a file, for the tests that
    check what it tells an operator."""

    def start(self, listen="tcp://127.0.0.1:0"):
        self.log_path = os.path.abspath(self.data) + ".log"  # beside the data dir
        cmd = [os.path.join(BIN, self.exe), "--listen", listen, "--data", self.data,
               "--backend", "cpu"] + self.args
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "2")
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("tcp://"):
            self.proc.wait(10)
            raise RuntimeError("worker did not start: %r (exit %s): %s" %
                               (line, self.proc.returncode, self.log()))
        self.endpoint = line

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def curve_keys(d, name):
    """A CURVE key pair in d/name.key (0600) and d/name.pub, as `sediment keygen --curve`
    writes them; returns (public, secret) as Z85 bytes."""
    pub, sec = zmq.curve_keypair()
    fd = os.open(os.path.join(d, name + ".key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(sec + b"\n")
    with open(os.path.join(d, name + ".pub"), "wb") as f:
        f.write(pub + b"\n")
    return pub, sec


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
        self.assertEqual(s, {"endpoint": self.ep, "pending": 0, "delivered": 3, "rejected": 0,
                             "held": 0})
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
        # the operator's view: `sediment outbox`, also while the worker runs
        doc = outbox_cli(self.w.data, "--rejected")
        self.assertEqual((doc["pending"], doc["delivered"], doc["rejected"]), (0, 2, 1))
        [row] = doc["rejected_entries"]
        self.assertEqual((row["kind"], row["bytes"], row["code"], row["message"]),
                         ("receipt", len(sent[1]), "unauthorized", "worker key is not on the allow-list"))
        # requeueing needs the worker stopped
        p = outbox_cli(self.w.data, "--requeue", "unauthorized", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("a worker is running on it", p.stderr.decode())
        self.assertEqual(self.stop_worker()[0], 0)
        # the operator's way back (docs/worker.md): with the worker stopped, the row is
        # requeued, and the next start delivers it; a code no row has requeues nothing
        self.ledger.refuse = lambda env: None
        self.assertEqual(outbox_cli(self.w.data, "--requeue", "bad_request")["requeued"], 0)
        doc = outbox_cli(self.w.data, "--requeue", "unauthorized")
        self.assertEqual((doc["requeued"], doc["pending"], doc["rejected"]), (1, 1, 0))
        self.restart_worker()
        wait_for(lambda: counts(self.c) == (0, 3, 0), what="the requeued row delivered")
        self.assertEqual(self.ledger.entries(), [sent[0], sent[2], sent[1]])
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
        # past the 5 s silence: the worker reconnects and probes, sending the oldest again
        # alone, and nothing more until an answer comes
        wait_for(lambda: len(self.ledger.wire) >= 4, timeout=12, what="the resend after 5 s of silence")
        time.sleep(1.0)
        self.assertEqual(len(self.ledger.wire), 4)
        self.assertEqual([self.ledger.sends(e) for e in sent], [2, 1, 1])
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


    # answers that break the rules are never taken as a delivery or a refusal: not msgpack,
    # ok without index, another leaf_hash, an unknown error code, a refusal without its
    # message. The row goes again each time and ends in the log once.
    def test_malformed_answers_are_sent_again(self):
        self.ledger = FakeLedger(self.ep)
        tries = {}

        def mangle(env, rep):
            tries[env] = tries.get(env, 0) + 1
            t, head = tries[env], {"id": rep["id"], "ok": False}
            if t == 1:
                return b"\x93\x01\x02"  # an array, not a map: no id to go by
            if t == 2:
                return {k: v for k, v in rep.items() if k != "index"}
            if t == 3:
                return dict(rep, leaf_hash=b"\0" * 32)
            if t == 4:
                return dict(head, error={"code": "no_such_code", "message": "?"})
            if t == 5:
                return dict(head, error={"code": "unauthorized"})
            return rep

        self.ledger.mangle = mangle
        self.w = LoudWorker(args=["--ledger", self.ep])
        self.c = Raw(self.w.endpoint)
        register(self.c)
        sent = [contribute(self.c, b) for b in range(2)]
        # the first answer cannot be matched to a row, so that row waits out a 5 s silence
        wait_for(lambda: counts(self.c) == (0, 2, 0), timeout=20, what="both delivered")
        self.assertEqual(self.ledger.entries(), sent)
        self.assertEqual([self.ledger.sends(e) for e in sent], [6, 6])
        log = self.w.log()
        self.assertIn("unreadable answer dropped", log)
        self.assertIn("is malformed (reply: 'index' missing", log)
        self.assertIn("names another leaf_hash", log)
        self.assertIn("unknown code 'no_such_code'", log)
        self.assertIn("'error.code' or 'error.message' missing", log)
        self.assertNotIn("refused", log)
        self.assertEqual(self.stop_worker()[0], 0)

    # a batch stored while its receipt could not be queued (a failed outbox write): the client
    # is told, no further batch of the model is taken until the receipt is queued, and the
    # ledger gets it, signed again from the batch's row: the bytes the client would have had
    # (the same fields and issued_at, the store's size and root right after the batch)
    def test_receipt_not_queued_is_owed_not_lost(self):
        self.ledger = FakeLedger(self.ep)
        self.w = LoudWorker(args=["--ledger", self.ep], env={"SDM_TEST_FAULT": "receipt-put-fail:3-4"})
        self.c = Raw(self.w.endpoint)
        key = self.c.call("info")["worker_key"]
        register(self.c)
        sent = [contribute(self.c, b) for b in range(2)]
        rep = self.c.call("contribute", **batch_fields(2))  # stored; its receipt fails (3rd)
        self.assertFalse(rep["ok"])
        self.assertEqual(rep["error"]["code"], "internal")
        self.assertIn("batch 2 is stored, but its receipt could not be queued", rep["error"]["message"])
        rep = self.c.call("contribute", **batch_fields(3))  # the owed one fails again (4th)
        self.assertFalse(rep["ok"])
        self.assertIn("the receipt of batch 2, stored earlier, could not be queued", rep["error"]["message"])
        self.assertIn("no batch of model m is taken until it is", rep["error"]["message"])
        self.assertEqual(self.c.call("info")["models"][0]["store_size"], 3)  # batch 3 not taken
        r3 = contribute(self.c, 3)  # the owed receipt goes first (5th), then batch 3's (6th)
        wait_for(lambda: counts(self.c) == (0, 4, 0), what="4 receipts delivered")
        got = self.ledger.entries()
        self.assertEqual(got[:2], sent)
        self.assertEqual(got[3], r3)
        bodies = [open_envelope(e, key) for e in got]
        self.assertEqual([b["batch"] for b in bodies], [0, 1, 2, 3])
        leaves = [b["leaf"] for b in bodies]
        for i, b in enumerate(bodies):
            self.assertEqual((b["store_size"], b["store_root"]), (i + 1, mth(leaves[:i + 1])))
        self.assertEqual(bodies[2]["n"], 3)
        # the batch is stored: sending it again is a conflict, as for any stored batch
        rep = self.c.call("contribute", **batch_fields(2))
        self.assertEqual(rep["error"]["code"], "conflict", rep)
        self.assertIn("model m batch 2: its receipt is queued for the ledger now", self.w.log())
        self.assertEqual(self.stop_worker()[0], 0)

    # a worker killed between storing a batch and queueing its receipt: the client has no
    # answer, and the next start queues the receipt, so the ledger still has every stored batch
    def test_crash_between_batch_and_receipt(self):
        self.ledger = FakeLedger(self.ep)
        self.w = LoudWorker(args=["--ledger", self.ep], env={"SDM_TEST_FAULT": "receipt-put-crash:2"})
        self.c = Raw(self.w.endpoint, timeout_ms=5000)
        key = self.c.call("info")["worker_key"]
        register(self.c)
        r0 = contribute(self.c, 0)
        with self.assertRaises(Exception):
            self.c.call("contribute", **batch_fields(1))
        self.assertEqual(self.w.proc.wait(10), 137)
        self.w.proc.stdout.close()
        self.w.proc = None
        self.c.close()
        self.w.env = None
        self.w.start()
        self.c = Raw(self.w.endpoint)
        self.assertEqual(self.c.call("info")["models"][0]["store_size"], 2)
        wait_for(lambda: len(self.ledger.entries()) == 2, what="both receipts in the ledger")
        got = self.ledger.entries()
        self.assertEqual(got[0], r0)
        b0, b1 = open_envelope(got[0], key), open_envelope(got[1], key)
        self.assertEqual((b1["batch"], b1["store_size"]), (1, 2))
        self.assertEqual(b1["store_root"], mth([b0["leaf"], b1["leaf"]]))
        self.assertIn("model m batch 1: its receipt is queued for the ledger now", self.w.log())
        self.assertEqual(counts(self.c), (0, 2, 0))
        self.assertEqual(self.stop_worker()[0], 0)

    # a tracked model's batches stored while the worker ran without --ledger: the next start
    # with it signs their receipts again and queues them (256 per transaction), so the ledger
    # has no gap in the model's history
    def test_batches_stored_without_ledger_are_sent_later(self):
        self.ledger = FakeLedger(self.ep)
        self.w = LoudWorker(args=["--ledger", self.ep])
        self.c = Raw(self.w.endpoint)
        key = self.c.call("info")["worker_key"]
        register(self.c)
        first = [contribute(self.c, b) for b in range(2)]
        self.assertEqual(self.stop_worker()[0], 0)
        self.w.args = []
        self.w.start()
        self.c = Raw(self.w.endpoint)
        later = [contribute(self.c, b) for b in range(2, 302)]
        self.assertEqual(self.stop_worker()[0], 0)
        self.w.args = ["--ledger", self.ep]
        self.w.start()
        self.c = Raw(self.w.endpoint)
        wait_for(lambda: counts(self.c) == (0, 302, 0), timeout=60, what="302 receipts delivered")
        got = self.ledger.entries()
        self.assertEqual(got, first + later)  # byte for byte what the clients were given
        self.assertIn("model m batches 2 to 301: their receipts are queued for the ledger now",
                      self.w.log())
        self.assertEqual(self.stop_worker()[0], 0)

    # a backlog answered together: deliveries, a refusal and a transient error in the same
    # rounds are each settled as the ledger said, and the counters agree with the ledger
    def test_mixed_answers_settled_together(self):
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(12)]
        self.assertEqual(counts(self.c), (12, 0, 0))
        tries = {}

        def refuse(env):
            tries[env] = tries.get(env, 0) + 1
            if env == sent[4]:
                return ("bad_request", "entry.body.n: refused by the test")
            if env == sent[7] and tries[env] == 1:
                return ("busy", "try later")
            return None

        self.ledger = FakeLedger(self.ep)
        self.ledger.refuse = refuse
        wait_for(lambda: counts(self.c) == (0, 11, 1), what="11 delivered, 1 rejected")
        want = [e for i, e in enumerate(sent) if i != 4]
        log = self.ledger.entries()
        self.assertEqual(sorted(log), sorted(want))  # each once (the busy one after its retry)
        self.assertEqual(self.ledger.sends(sent[4]), 1)
        self.assertEqual(self.ledger.sends(sent[7]), 2)
        rows = outbox_rows(self.w.data)
        self.assertEqual([(r[2], r[3], r[4]) for r in rows],
                         [(sent[4], "bad_request", "entry.body.n: refused by the test")])
        self.assertEqual(outbox_counter(self.w.data, "delivered"), 11)
        self.assertEqual(outbox_counter(self.w.data, "last_index"), 10)
        self.assertEqual(self.stop_worker()[0], 0)

    # kill -9 in the middle of delivering a backlog: rows settled in a round that had not
    # committed are sent again and answered as duplicates; none is lost or logged twice, and
    # `delivered` counts each once
    def test_kill9_mid_backlog(self):
        n = 150
        self.start_worker()
        register(self.c)
        sent = [contribute(self.c, b) for b in range(n)]
        self.ledger = FakeLedger(self.ep)
        self.ledger.delay = 0.004  # about 0.6 s for the backlog: time to kill in the middle
        got = wait_for(lambda: (lambda k: k if k[1] >= 20 else None)(counts(self.c)),
                       what="20 delivered")
        self.w.kill9()
        self.assertGreater(got[0], 0, "the kill came after the whole backlog was delivered")
        self.ledger.delay = 0.0
        self.restart_worker()
        wait_for(lambda: counts(self.c) == (0, n, 0), what="the backlog delivered after the restart")
        self.assertEqual(self.ledger.entries(), sent)
        self.assertEqual(outbox_rows(self.w.data), [])
        self.assertEqual(outbox_counter(self.w.data, "delivered"), n)
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


    def ledger_size(self, led, curve=None):
        c = Raw(led.endpoint, curve=curve)
        try:
            rep = c.call("info")
            assert rep["ok"], rep
            return rep["size"]
        finally:
            c.close()

    # an entry whose append is over the ledger's --max-msg: the ledger would drop the
    # connection without an answer, so the worker, told the limit, rejects it itself (once,
    # kept in outbox.db) and the entries after it go on
    def test_entry_over_the_ledgers_max_msg_is_rejected_not_resent(self):
        from ledgerproc import Ledger
        led = Ledger(args=["--max-msg", "4096"])
        w = LoudWorker(args=["--ledger", led.endpoint, "--ledger-max-msg", "4096"])
        c = Raw(w.endpoint)
        try:
            register(c)
            r0 = contribute(c, 0)
            proof = big_attribute(c)
            self.assertGreater(len(proof), 4096)
            r1 = contribute(c, 1)
            wait_for(lambda: counts(c) == (0, 2, 1), what="2 delivered, the proof rejected")
            self.assertEqual([self.entry(led, i) for i in range(2)], [r0, r1])
            rows = outbox_rows(w.data)
            self.assertEqual(len(rows), 1)
            seq, kind, entry, code, message = rows[0]
            self.assertEqual((kind, entry, code), ("proof", proof, "too_large"))
            self.assertIn("--ledger-max-msg", message)
            self.assertIn("4096", message)
            self.assertIn("outbox row %d not sent" % seq, w.log())
            time.sleep(1.0)
            self.assertEqual(counts(c), (0, 2, 1))
            self.assertEqual(self.ledger_size(led), 2)
            c.close()
            self.assertEqual(w.stop(), 0)
            # a restart neither sends it nor forgets it
            w.start()
            c = Raw(w.endpoint)
            self.assertEqual(counts(c), (0, 2, 1))
            time.sleep(0.5)
            self.assertEqual(self.ledger_size(led), 2)
            self.assertEqual(len(outbox_rows(w.data)), 1)
            c.close()
            self.assertEqual(w.stop(), 0)
        finally:
            w.close()
            led.close()

    # the limit is the one the ledger applies: a request of exactly --max-msg bytes is sent
    # and logged, one byte over it is rejected by the worker
    def test_max_msg_boundary_matches_the_ledger(self):
        from ledgerproc import Ledger
        # a proof's size depends only on the request (fixed-width time, keys and scores)
        w = Worker()
        c = Raw(w.endpoint)
        try:
            register(c)
            contribute(c, 0)
            size = len(big_attribute(c))
        finally:
            c.close()
            w.close()
        # {"id": 2, "op": "append", "entry": ...}: 21 bytes around the envelope
        limit = size + 21
        led = Ledger(args=["--max-msg", str(limit)])
        try:
            for worker_limit, want in [(limit, (0, 2, 0)), (limit - 1, (0, 1, 1))]:
                w = Worker(args=["--ledger", led.endpoint, "--ledger-max-msg", str(worker_limit)])
                c = Raw(w.endpoint)
                try:
                    before = self.ledger_size(led)
                    register(c)
                    contribute(c, 0)
                    proof = big_attribute(c)
                    self.assertEqual(len(proof), size)
                    wait_for(lambda: counts(c) == want, what="%s at --ledger-max-msg %d" % (want, worker_limit))
                    self.assertEqual(self.ledger_size(led), before + want[1])
                    if want[1] == 2:
                        self.assertEqual(self.entry(led, before + 1), proof)
                    else:
                        self.assertEqual([r[3] for r in outbox_rows(w.data)], ["too_large"])
                finally:
                    c.close()
                    w.close()
        finally:
            led.close()

    # what a ledger whose --max-msg is below the worker's --ledger-max-msg does to such an
    # entry: it drops the connection without an answer, taking the requests behind it along.
    # The worker sees the drop, finds the entry by sending one request at a time, and holds it:
    # kept pending (never rejected), tried again only alone, while the entries behind it are
    # delivered. Raising the ledger's limit (a restart) delivers it too, each entry once.
    def test_max_msg_mismatch_holds_the_entry_alone(self):
        from ledgerproc import Ledger
        led = Ledger(args=["--max-msg", "4096"])
        w = LoudWorker(args=["--ledger", led.endpoint])  # the default --ledger-max-msg, 64 MiB
        c = Raw(w.endpoint)
        try:
            register(c)
            r0 = contribute(c, 0)
            wait_for(lambda: counts(c) == (0, 1, 0), what="the first receipt delivered")
            proof = big_attribute(c)
            after = [contribute(c, 1)]
            proof2 = big_attribute(c)
            after += [contribute(c, b) for b in range(2, 4)]
            # the receipts behind the proofs go on; well within one 5 s silence
            t0 = time.monotonic()
            wait_for(lambda: counts(c) == (2, 4, 0), timeout=4.5,
                     what="the receipts behind the held proofs delivered")
            took = time.monotonic() - t0
            self.assertEqual(ledger_stats(c)["held"], 2)
            rows = [(r[1], r[2], r[3]) for r in outbox_rows(w.data)]
            self.assertEqual(sorted(rows), sorted([("proof", proof, None), ("proof", proof2, None)]))
            self.assertEqual(self.entry(led, 0), r0)
            self.assertEqual(sorted(self.entry(led, i) for i in range(1, 4)), sorted(after))
            log = w.log()
            self.assertIn("dropped the connection on outbox row", log)
            self.assertIn("--max-msg", log)
            # still held after several tries alone (1 s, 2 s, 4 s ...), the log said it once
            time.sleep(3.5)
            self.assertEqual(counts(c), (2, 4, 0))
            self.assertEqual(self.ledger_size(led), 4)
            self.assertEqual(w.log().count("dropped the connection on outbox row"), 2)
            # the ledger's limit raised: its restart makes the held entry due at once
            ep = led.endpoint
            self.assertEqual(led.stop(), 0)
            led.args = []
            led.start(listen=ep)
            t0 = time.monotonic()
            wait_for(lambda: counts(c) == (0, 6, 0), timeout=30, what="the held proofs delivered")
            sys.stderr.write("\n(receipts behind the held proofs delivered in %.2f s; the proofs "
                             "%.2f s after the ledger's restart) " % (took, time.monotonic() - t0))
            self.assertEqual(ledger_stats(c)["held"], 0)
            self.assertEqual(w.log().count("ledger took the held outbox row"), 2)
            self.assertEqual(self.ledger_size(led), 6)
            entries = [self.entry(led, i) for i in range(6)]
            self.assertEqual(entries[0], r0)
            self.assertEqual(sorted(entries[1:]), sorted([proof, proof2] + after))
            c.close()
            self.assertEqual(w.stop(), 0)
        finally:
            w.close()
            led.close()

    # a backlog left by an earlier run goes to the ledger in order, each entry once. With
    # SDM_LINK_RATE_N=2000 it doubles as the delivery-rate measurement (printed, not asserted)
    def test_backlog_delivery(self):
        from ledgerproc import Ledger
        n = int(os.environ.get("SDM_LINK_RATE_N", "200"))
        ep = free_endpoint()
        w = Worker(args=["--ledger", ep])
        c = Raw(w.endpoint)
        led = None
        try:
            register(c)
            sent = [contribute(c, b) for b in range(n)]
            self.assertEqual(counts(c), (n, 0, 0))
            c.close()
            self.assertEqual(w.stop(), 0)
            led = Ledger()
            self.assertEqual(led.stop(), 0)
            led.start(listen=ep)
            w.start()
            c = Raw(w.endpoint)
            first = counts(c)[1]
            t0 = time.monotonic()
            wait_for(lambda: counts(c) == (0, n, 0), timeout=60, what="the backlog delivered")
            dt = time.monotonic() - t0
            sys.stderr.write("\n(backlog of %d receipts: %d delivered before the first look, the "
                             "other %d in %.3f s, %.0f rows/s) " % (n, first, n - first, dt,
                                                                     (n - first) / max(dt, 1e-9)))
            self.assertEqual(self.ledger_size(led), n)
            for i in sorted({0, n // 2, n - 1}):
                self.assertEqual(self.entry(led, i), sent[i])
            self.assertEqual(outbox_rows(w.data), [])
            c.close()
            self.assertEqual(w.stop(), 0)
        finally:
            w.close()
            if led:
                led.close()


@unittest.skipUnless(os.path.exists(os.path.join(BIN, "sediment-ledger")), "sediment-ledger not built")
class CurveLink(unittest.TestCase):
    """The worker->ledger link with CURVE, against sediment-ledger started with --curve-secret
    and an allow-list."""

    def setUp(self):
        from ledgerproc import Ledger
        self.tmp = tempfile.TemporaryDirectory(prefix="sdm-curve-link-")
        self.d = self.tmp.name
        self.keys = {name: curve_keys(self.d, name)
                     for name in ("ledger", "worker", "reader", "other", "wserver")}
        with open(self.path("ledger-allow"), "wb") as f:
            f.write(b"# the worker's link and the test's reader\n%s\n%s\n"
                    % (self.keys["worker"][0], self.keys["reader"][0]))
        with open(self.path("worker-allow"), "wb") as f:
            f.write(self.keys["reader"][0] + b"\n")
        self.led = Ledger(args=["--curve-secret", self.path("ledger.key"),
                                "--allow", self.path("ledger-allow")])
        self.w = None
        self.c = None

    def tearDown(self):
        if self.c:
            self.c.close()
        if self.w:
            self.w.close()
        self.led.close()
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.d, name)

    def reader(self, server="ledger"):
        return (self.keys[server][0], self.keys["reader"][0], self.keys["reader"][1])

    def ledger_entries(self):
        c = Raw(self.led.endpoint, curve=self.reader())
        try:
            size = c.call("info")["size"]
            out = []
            for i in range(size):
                c.send_bytes(msgpack.packb({"op": "entry", "id": 100 + i, "index": i}, use_bin_type=True))
                assert c.sock.poll(30000)
                out.append(raw_fields(c.sock.recv_multipart()[-1])["entry"])
            return out
        finally:
            c.close()

    def link_args(self, server_key=None, client_key="worker.key"):
        return ["--ledger", self.led.endpoint,
                "--ledger-server-key", server_key or self.path("ledger.pub"),
                "--ledger-client-key", self.path(client_key)]

    # the right keys: everything arrives, byte for byte; the worker's own socket is CURVE too
    # (its ZAP handler shares the context with the link's client socket)
    def test_curve_link_delivers(self):
        # the ledger really is CURVE: a plain client gets nowhere
        plain = Raw(self.led.endpoint, timeout_ms=500)
        with self.assertRaises(TimeoutError):
            plain.call("info")
        plain.close()
        self.w = LoudWorker(args=self.link_args() + [
            "--curve-secret", self.path("wserver.key"), "--allow", self.path("worker-allow")])
        self.c = Raw(self.w.endpoint, curve=self.reader("wserver"))
        register(self.c)
        sent = [contribute(self.c, 0), contribute(self.c, 1), attribute(self.c)]
        wait_for(lambda: counts(self.c) == (0, 3, 0), what="3 delivered over CURVE")
        self.assertEqual(self.ledger_entries(), sent)
        log = self.w.log()
        self.assertIn("CURVE, with the client key %s" % self.keys["worker"][0].decode(), log)
        self.assertNotIn("handshake failed", log)
        self.assertNotIn("not a loopback", log)
        self.c.close()
        self.c = None
        self.assertEqual(self.w.stop(), 0)

    # a plain link, a wrong server key, a client key not on the allow-list: nothing is
    # delivered, the rows stay pending, the log says what to fix; then the right keys (the
    # server key given as Z85 text this time) deliver every one of them, once
    def test_wrong_keys_hold_the_rows_until_the_right_ones(self):
        self.w = LoudWorker(args=["--ledger", self.led.endpoint])
        self.c = Raw(self.w.endpoint)
        register(self.c)
        sent = []
        attempts = [
            ([], "a CURVE ledger needs --ledger-server-key and --ledger-client-key"),
            (self.link_args(client_key="other.key"),
             "its --allow file must list %s" % self.keys["other"][0].decode()),
            (self.link_args(server_key=self.path("other.pub")),
             "is --ledger-server-key the ledger's public key"),
        ]
        for i, (args, hint) in enumerate(attempts):
            if i:
                self.c.close()
                self.assertEqual(self.w.stop(), 0)
                self.w.args = ["--ledger", self.led.endpoint] + args[2:]
                self.w.start()
                self.c = Raw(self.w.endpoint)
            sent.append(contribute(self.c, i))
            wait_for(lambda: hint in self.w.log(), what="the log line: " + hint)
            time.sleep(0.5)
            self.assertEqual(counts(self.c), (len(sent), 0, 0), hint)
            # a failed handshake is not a dropped connection: no row is held for it
            self.assertEqual(ledger_stats(self.c)["held"], 0, hint)
            self.assertNotIn("dropped the connection", self.w.log(), hint)
            rows = outbox_rows(self.w.data)
            self.assertEqual([(r[2], r[3]) for r in rows], [(e, None) for e in sent])
            self.assertEqual(self.ledger_entries(), [])
        self.c.close()
        self.assertEqual(self.w.stop(), 0)
        self.w.args = self.link_args(server_key=self.keys["ledger"][0].decode())
        self.w.start()
        self.c = Raw(self.w.endpoint)
        wait_for(lambda: counts(self.c) == (0, 3, 0), what="the 3 held rows delivered")
        self.assertEqual(self.ledger_entries(), sent)
        self.assertEqual(outbox_rows(self.w.data), [])
        self.c.close()
        self.c = None
        self.assertEqual(self.w.stop(), 0)

    # the ledger refuses the worker's client key, and then its operator adds the key and
    # restarts it: the running worker notices (libzmq gives up on a refused handshake, so the
    # forwarder makes a new socket after 5 s of not getting through) and delivers
    def test_allow_list_fixed_while_the_worker_runs(self):
        self.w = LoudWorker(args=self.link_args(client_key="other.key"))
        self.c = Raw(self.w.endpoint)
        register(self.c)
        sent = [contribute(self.c, 0), contribute(self.c, 1)]
        wait_for(lambda: "its --allow file must list" in self.w.log(), what="the refusal logged")
        self.assertEqual(counts(self.c), (2, 0, 0))
        with open(self.path("ledger-allow"), "ab") as f:
            f.write(self.keys["other"][0] + b"\n")
        self.assertEqual(self.led.stop(), 0)
        self.led.start(listen=self.led.endpoint)
        wait_for(lambda: counts(self.c) == (0, 2, 0), timeout=20, what="delivery after the fix")
        self.assertEqual(self.ledger_entries(), sent)
        self.assertIn("handshake succeeded (CURVE)", self.w.log())
        self.c.close()
        self.c = None
        self.assertEqual(self.w.stop(), 0)


class Options(unittest.TestCase):
    # `sediment outbox`: its usage errors name the option, and a dir without an outbox says so
    def test_outbox_command_errors(self):
        with tempfile.TemporaryDirectory() as d:
            sed = os.path.join(BIN, "sediment")
            for args, want in [([], "--data DIR is required"),
                               (["--data", d, "--requeue", "x", "--requeue-all"], "not both"),
                               (["--data", d, "--requeue", ""], "--requeue: empty code"),
                               (["--data", d], "outbox.db: No such file or directory")]:
                p = subprocess.run([sed, "outbox"] + args, capture_output=True, timeout=30)
                self.assertEqual(p.returncode, 2, args)
                self.assertIn(want, p.stderr.decode(), args)
                self.assertEqual(p.stdout, b"", args)
            self.assertFalse(os.path.exists(os.path.join(d, "outbox.db")))

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
        for opt in [b"--ledger ENDPOINT", b"--ledger-server-key", b"--ledger-client-key", b"--ledger-max-msg"]:
            self.assertIn(opt, p.stdout)
        self.assertIn(b"CURVE", p.stdout)

    # each bad combination or value stops the start, names the option, and makes nothing
    def test_bad_ledger_link_options(self):
        with tempfile.TemporaryDirectory() as d:
            pub, _ = curve_keys(d, "ledger")
            curve_keys(d, "worker")
            open(os.path.join(d, "empty"), "w").close()
            ep = "tcp://127.0.0.1:7720"
            server = ["--ledger-server-key", os.path.join(d, "ledger.pub")]
            client = ["--ledger-client-key", os.path.join(d, "worker.key")]
            cases = [
                (["--ledger", ep] + server, "--ledger-client-key: needed with --ledger-server-key"),
                (["--ledger", ep] + client, "--ledger-server-key: needed with --ledger-client-key"),
                (server + client, "--ledger-server-key: needs --ledger"),
                (["--ledger-max-msg", "4096"], "--ledger-max-msg: needs --ledger"),
                (["--ledger", ep, "--ledger-server-key", "not-a-key"] + client,
                 "--ledger-server-key not-a-key: neither a file nor a CURVE public key"),
                (["--ledger", ep, "--ledger-server-key", pub.decode()[:-1]] + client,
                 "--ledger-server-key"),
                (["--ledger", ep, "--ledger-server-key", os.path.join(d, "empty")] + client,
                 "no CURVE public key"),
                (["--ledger", ep] + server + ["--ledger-client-key", os.path.join(d, "missing.key")],
                 "--ledger-client-key %s" % os.path.join(d, "missing.key")),
                (["--ledger", ep] + server + ["--ledger-client-key", os.path.join(d, "empty")],
                 "no CURVE secret key"),
                (["--ledger", ep, "--ledger-max-msg", "100"], "--ledger-max-msg"),
                (["--ledger", ep, "--ledger-max-msg", "lots"], "--ledger-max-msg"),
                # the queue and thread counts are range-checked, not cut to their C types
                (["--queue", "4294967297"], "--queue: expected an integer from 1 to 4294967295"),
                (["--queue", "0"], "--queue"),
                (["--threads", "4097"], "--threads: expected an integer from 0 to 4096"),
                (["--threads", "-1"], "--threads"),
            ]
            for args, msg in cases:
                data = os.path.join(d, "data")
                p = subprocess.run([os.path.join(BIN, "sediment-worker"), "--listen", "tcp://127.0.0.1:0",
                                    "--data", data, "--backend", "cpu"] + args,
                                   capture_output=True, timeout=60)
                self.assertNotEqual(p.returncode, 0, args)
                self.assertIn(msg, p.stderr.decode(), args)
                self.assertEqual(p.stdout, b"", args)
                self.assertFalse(os.path.exists(data), args)

    # the warning is for a plain link off loopback only; a CURVE link names its client key
    def test_plain_link_off_loopback_warns(self):
        with tempfile.TemporaryDirectory() as d:
            pub, _ = curve_keys(d, "ledger")
            wpub, _ = curve_keys(d, "worker")
            far = "tcp://192.0.2.1:7720"  # TEST-NET-1: never answers, the worker does not care
            runs = [
                (["--ledger", far], "not a loopback address, and the link is plain"),
                (["--ledger", far, "--ledger-server-key", pub.decode(), "--ledger-client-key",
                  os.path.join(d, "worker.key")], "CURVE, with the client key " + wpub.decode()),
                (["--ledger", "tcp://127.0.0.1:7720"], None),
            ]
            for i, (args, want) in enumerate(runs):
                w = LoudWorker(data=os.path.join(d, "data%d" % i), args=args)
                try:
                    self.assertEqual(w.stop(), 0)
                    log = w.log()
                    if want:
                        self.assertIn(want, log)
                    if want is None or "CURVE" in want:
                        self.assertNotIn("not a loopback", log)
                finally:
                    w.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
