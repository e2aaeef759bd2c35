"""test_mirror.py - `sediment mirror` against a live sediment-ledger (docs/cli.md, "mirror").

A mirror directory is checked here with code of its own: `entries` parsed as 4-byte big-endian
lengths and envelopes and compared byte for byte with what was appended, the root recomputed
with RFC 9162's recursive MTH, the checkpoint opened with PyNaCl. The runs covered: a first
mirror, an incremental one, nothing new; ledgers that are not the mirrored log (a new key, the
same key with another history, a shorter log) refused with the directory unchanged; a ledger
that serves a validly signed entry other than the one it signed caught by the root, the
entries already written cut back; a changed byte in `entries` found by --check and by the next
run; a partial append (a run killed before
its commit, also a real kill -9) cut off, and a cut-short or missing file refused; --json
fields; bad options named; and a restore into a fresh ledger started with the original key,
which ends with the same root at the same size.
"""
import fcntl
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import msgpack
import zmq

from ledgerproc import Ledger
from test_ledger import Client, Synthetic, append_frame, leaf_hash, mth, open_checkpoint, pack, \
    pipelined
from workerproc import BIN

ORIGIN = "test.example/mirror"
JSON_FIELDS = {"ok", "origin", "size", "previous_size", "new_entries", "root", "seconds"}


def have_binaries():
    return all(os.access(os.path.join(BIN, n), os.X_OK) for n in ("sediment", "sediment-ledger"))


def cli(*args, timeout=300):
    p = subprocess.run([os.path.join(BIN, "sediment")] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def read_entries(path):
    """The envelopes of a mirror's `entries`: 4-byte big-endian length, then the bytes."""
    with open(path, "rb") as f:
        b = f.read()
    out, i = [], 0
    while i < len(b):
        assert i + 4 <= len(b), "a partial length at byte %d" % i
        n = struct.unpack(">I", b[i:i + 4])[0]
        assert i + 4 + n <= len(b), "a partial entry at byte %d" % i
        out.append(b[i + 4:i + 4 + n])
        i += 4 + n
    return out


def record(env):
    return struct.pack(">I", len(env)) + env


def snapshot(d):
    """Every file of the directory and its bytes: what a refused run must leave as it was."""
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


def ask(endpoint, op, **fields):
    """One request to a ledger on a socket of its own."""
    c = Client(endpoint)
    try:
        return c.call(op, **fields)
    finally:
        c.close()


def ledger_key(data):
    rc, out, err = cli("ledger-key", "--data", data)
    assert rc == 0, err
    return out.strip()


def key_copy(src_data, dst_data):
    """A data dir holding only another ledger's key pair: a ledger started on it signs as
    that ledger (with the same --origin) over a log of its own."""
    os.makedirs(dst_data, 0o700)
    for name in ("ledger.key", "ledger.pub"):
        shutil.copy2(os.path.join(src_data, name), os.path.join(dst_data, name))


class Forger(threading.Thread):
    """A ledger in front of a real one that passes every request on, but answers `entry` for
    one index with another envelope, validly signed: only the root can tell."""

    def __init__(self, upstream, index, forged):
        super().__init__(daemon=True)
        ctx = zmq.Context.instance()
        self.front = ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        self.endpoint = "tcp://127.0.0.1:%d" % self.front.bind_to_random_port("tcp://127.0.0.1")
        self.up = ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.LINGER, 0)
        self.up.connect(upstream)
        self.index, self.forged = index, forged
        self.served = 0
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            if not self.front.poll(50):
                continue
            ident, _, payload = self.front.recv_multipart()
            req = msgpack.unpackb(payload, raw=False)
            self.up.send_multipart([b"", payload])
            reply = self.up.recv_multipart()[-1]
            if req.get("op") == "entry" and req.get("index") == self.index:
                reply = pack({"id": req["id"], "ok": True,
                              "entry": msgpack.unpackb(self.forged, raw=False)})
                self.served += 1
            self.front.send_multipart([ident, b"", reply])

    def close(self):
        self.done.set()
        self.join(10)
        self.front.close(0)
        self.up.close(0)


@unittest.skipUnless(have_binaries(), "needs sediment and sediment-ledger in $SDM_BIN")
class TestMirror(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sdm-mirror-")
        self.ledgers = []
        self.ledger = self.start_ledger()
        self.syn = Synthetic(salt=b"mirror")
        self.log = []  # what self.ledger holds, in order
        self.vkey = ledger_key(self.ledger.data)
        self.dir = os.path.join(self.tmp.name, "m")

    def tearDown(self):
        for l in self.ledgers:
            l.close()
        self.tmp.cleanup()

    def start_ledger(self, data=None, args=()):
        l = Ledger(data=data, args=["--origin", ORIGIN] + list(args))
        self.ledgers.append(l)
        return l

    def append(self, ledger, envs):
        reps = pipelined(ledger.endpoint, [append_frame(e, i) for i, e in enumerate(envs)],
                         window=256)
        for rep in reps:
            rep = msgpack.unpackb(rep, raw=False)
            self.assertTrue(rep["ok"], rep)

    def fill(self, n):
        envs = [pack(self.syn.next()) for _ in range(n)]
        self.append(self.ledger, envs)
        self.log += envs
        return envs

    def mirror(self, *args, ledger=None, d=None):
        """`sediment --json mirror`: (exit status, the JSON object or None, stderr)."""
        ledger = ledger or self.ledger
        rc, out, err = cli("--timeout", 30, "--json", "mirror", "--ledger", ledger.endpoint,
                           "--dir", d or self.dir, *args)
        return rc, json.loads(out) if out.strip() else None, err

    def check(self, *args, d=None):
        rc, out, err = cli("--json", "mirror", "--dir", d or self.dir, "--check", *args)
        return rc, json.loads(out) if out.strip() else None, err

    def assert_mirrors(self, envs, d=None):
        """DIR holds exactly envs, and its checkpoint is the ledger's signature over them."""
        d = d or self.dir
        self.assertEqual(read_entries(os.path.join(d, "entries")), envs)
        with open(os.path.join(d, "checkpoint")) as f:
            note = f.read()
        with open(os.path.join(d, "vkey")) as f:
            self.assertEqual(f.read(), self.vkey + "\n")
        if self.ledger.alive():
            pk = bytes(ask(self.ledger.endpoint, "info")["ledger_key"])
            size, root = open_checkpoint(note, ORIGIN, pk)
            self.assertEqual((size, root), (len(envs), mth([leaf_hash(e) for e in envs])))

    # ---- runs ---------------------------------------------------------------------------------

    def test_first_incremental_and_nothing_new(self):
        rc, j, err = self.mirror("--vkey", self.vkey)  # an empty log
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["size"], j["previous_size"], j["new_entries"]), (0, 0, 0))
        self.assertEqual(stat.S_IMODE(os.stat(self.dir).st_mode), 0o700)
        self.assertEqual(sorted(os.listdir(self.dir)), ["checkpoint", "entries", "vkey"])

        self.fill(300)
        rc, j, err = self.mirror()  # the key is the one DIR keeps
        self.assertEqual(rc, 0, err)
        self.assertTrue(JSON_FIELDS <= set(j), j)
        root = mth([leaf_hash(e) for e in self.log])
        self.assertEqual((j["ok"], j["origin"], j["size"], j["previous_size"], j["new_entries"],
                          j["root"], j["trust"]), (True, ORIGIN, 300, 0, 300, root.hex(), "stored"))
        self.assertGreaterEqual(j["seconds"], 0)
        self.assert_mirrors(self.log)
        latest = ask(self.ledger.endpoint, "checkpoint")["checkpoint"]
        with open(os.path.join(self.dir, "checkpoint")) as f:
            self.assertEqual(f.read(), latest)

        self.fill(100)
        rc, j, err = self.mirror("--vkey", self.vkey, "--window", 3)  # the same key again is fine
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["size"], j["previous_size"], j["new_entries"], j["trust"]),
                         (400, 300, 100, "vkey"))
        self.assert_mirrors(self.log)

        before = snapshot(self.dir)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["size"], j["previous_size"], j["new_entries"]), (400, 400, 0))
        self.assertEqual(snapshot(self.dir), before)

        rc, out, err = cli("mirror", "--ledger", self.ledger.endpoint, "--dir", self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("mirrored: %s holds the log of size 400" % self.dir, out)

        rc, j, err = self.check()
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["ok"], j["size"], j["entries_ok"], j["bad"], j["root_ok"],
                          j["trailing_bytes"], j["root"]),
                         (True, 400, 400, [], True, 0, mth([leaf_hash(e) for e in self.log]).hex()))
        rc, out, err = cli("mirror", "--dir", self.dir, "--check", "--vkey", self.vkey)
        self.assertEqual(rc, 0, err)
        self.assertIn("check passed", out)

    def test_tofu_then_a_different_key_is_refused(self):
        self.fill(10)
        rc, j, err = self.mirror("--tofu")
        self.assertEqual(rc, 0, err)
        self.assertEqual(j["trust"], "tofu")
        self.assertIn("--tofu: trusting the key the ledger reports", err)
        self.assert_mirrors(self.log)
        other = self.start_ledger()
        before = snapshot(self.dir)
        rc, j, err = self.mirror("--vkey", ledger_key(other.data))
        self.assertEqual(rc, 1)
        self.assertIn("mirrors the log signed by " + self.vkey, err)
        self.assertEqual(snapshot(self.dir), before)
        rc, j, err = self.check("--vkey", ledger_key(other.data))
        self.assertEqual(rc, 1)
        self.assertIn("not by the key given", err)

    def test_a_ledger_that_is_not_the_mirrored_log_is_refused(self):
        first = self.fill(50)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        before = snapshot(self.dir)
        self.ledger.stop()

        # restarted on another data dir: a new key and a new history
        fresh = self.start_ledger()
        self.append(fresh, [pack(Synthetic(salt=b"fresh").next()) for _ in range(60)])
        rc, j, err = self.mirror(ledger=fresh)
        self.assertEqual(rc, 1)
        self.assertIn("does not verify", err)
        self.assertEqual(j["ok"], False)
        self.assertEqual(snapshot(self.dir), before)
        rc, j, err = self.mirror("--tofu", ledger=fresh)
        self.assertEqual(rc, 1)
        self.assertIn("mirrors the log signed by " + self.vkey, err)
        self.assertEqual(snapshot(self.dir), before)

        # the same key over another history: the consistency proof cannot hold
        data = os.path.join(self.tmp.name, "forked")
        key_copy(self.ledger.data, data)
        forked = self.start_ledger(data)
        self.append(forked, [pack(Synthetic(salt=b"fork").next()) for _ in range(60)])
        rc, j, err = self.mirror(ledger=forked)
        self.assertEqual(rc, 1)
        self.assertIn("is not consistent with the one %s holds (size 50)" % self.dir, err)
        self.assertIn("rewrote its past", err)
        self.assertEqual(snapshot(self.dir), before)

        # the same key, a shorter log
        data = os.path.join(self.tmp.name, "shorter")
        key_copy(self.ledger.data, data)
        shorter = self.start_ledger(data)
        self.append(shorter, first[:20])
        rc, j, err = self.mirror(ledger=shorter)
        self.assertEqual(rc, 1)
        self.assertIn("never shrinks", err)
        self.assertEqual(snapshot(self.dir), before)

        # the same key and the same 50 entries, then more: the log extended, as a restore does
        data = os.path.join(self.tmp.name, "extended")
        key_copy(self.ledger.data, data)
        extended = self.start_ledger(data)
        more = [pack(self.syn.next()) for _ in range(10)]
        self.append(extended, first + more)
        rc, j, err = self.mirror(ledger=extended)
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["previous_size"], j["new_entries"], j["size"]), (50, 10, 60))
        self.assertEqual(read_entries(os.path.join(self.dir, "entries")), first + more)

    def test_changed_byte_found_by_check_and_by_the_next_run(self):
        self.fill(40)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        path = os.path.join(self.dir, "entries")
        with open(path, "rb") as f:
            good = f.read()
        at = sum(4 + len(e) for e in self.log[:7]) + 4 + len(self.log[7]) - 10  # in entry 7's sig
        bad = bytearray(good)
        bad[at] ^= 0x01
        with open(path, "wb") as f:
            f.write(bad)

        rc, j, err = self.check()
        self.assertEqual(rc, 1)
        self.assertEqual((j["ok"], j["root_ok"], j["entries_ok"]), (False, False, 39))
        self.assertEqual([b["index"] for b in j["bad"]], [7])
        self.assertIn("signature does not hold", j["bad"][0]["why"])
        self.assertIn("not the checkpoint's", j["problem"])
        self.assertIn("check failed: entry 7", err)

        self.fill(5)
        tampered = snapshot(self.dir)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 1)
        self.assertIn("hash to the root", err)
        self.assertIn("altered or damaged", err)
        self.assertEqual(snapshot(self.dir), tampered)

        with open(path, "wb") as f:  # put the byte back: the next run goes on
            f.write(good)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["previous_size"], j["new_entries"]), (40, 5))
        self.assert_mirrors(self.log)

        # a length that no envelope has, and a checkpoint whose text was changed
        with open(path, "r+b") as f:
            f.write(b"\xff\xff\xff\xff")
        rc, j, err = self.check()
        self.assertEqual(rc, 1)
        self.assertIn("has length 4294967295", err)
        with open(path, "r+b") as f:  # a length that runs past the end of the file
            f.write(struct.pack(">I", 1 << 29))
        rc, j, err = self.check()
        self.assertEqual(rc, 1)
        self.assertIn("holds only 0 whole entries, but the checkpoint covers 45", err)
        with open(path, "wb") as f:
            f.write(good + b"".join(record(e) for e in self.log[40:]))
        self.assertEqual(self.check()[0], 0)
        cp = os.path.join(self.dir, "checkpoint")
        with open(cp) as f:
            note = f.read()
        with open(cp, "w") as f:
            f.write(note.replace("\n45\n", "\n44\n"))
        rc, j, err = self.check()
        self.assertEqual(rc, 1)
        self.assertIn("checkpoint does not verify", err)
        self.assertEqual(self.mirror()[0], 1)

    def test_interrupted_runs_are_cut_back_and_a_short_file_refused(self):
        self.fill(30)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        path = os.path.join(self.dir, "entries")

        # half an entry past the checkpoint's: a run that died while appending
        with open(path, "ab") as f:
            f.write(struct.pack(">I", 500) + b"x" * 100)
        rc, j, err = self.check()
        self.assertEqual((rc, j["ok"], j["trailing_bytes"]), (0, True, 104), err)
        self.fill(10)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertIn("cut off 104 bytes", err)
        self.assertEqual((j["previous_size"], j["new_entries"]), (30, 10))
        self.assert_mirrors(self.log)

        # whole entries past it: a run that died after its fsync, before its checkpoint
        new = self.fill(3)
        with open(path, "ab") as f:
            f.write(b"".join(record(e) for e in new[:2]))
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertIn("cut off %d bytes" % sum(4 + len(e) for e in new[:2]), err)
        self.assertEqual((j["previous_size"], j["new_entries"]), (40, 3))
        self.assert_mirrors(self.log)

        # shorter than the checkpoint says: refused, by --check and by a run
        with open(path, "rb") as f:
            good = f.read()
        with open(path, "wb") as f:
            f.write(good[:-10])
        before = snapshot(self.dir)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 1)
        self.assertIn("holds only 42 whole entries, but the checkpoint covers 43", err)
        self.assertEqual(snapshot(self.dir), before)
        self.assertEqual(self.check()[0], 1)
        os.remove(path)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 1)
        self.assertIn("entries", err)
        self.assertFalse(os.path.exists(path))  # not made again over a damaged mirror

    def test_kill9_mid_run_leaves_a_usable_mirror(self):
        self.fill(20)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        with open(os.path.join(self.dir, "checkpoint")) as f:
            old_note = f.read()
        self.fill(6000)
        path = os.path.join(self.dir, "entries")
        start = os.path.getsize(path)
        p = subprocess.Popen([os.path.join(BIN, "sediment"), "mirror", "--ledger",
                              self.ledger.endpoint, "--dir", self.dir, "--window", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while p.poll() is None and os.path.getsize(path) == start and time.time() < deadline:
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        with open(os.path.join(self.dir, "checkpoint")) as f:
            note = f.read()
        if p.returncode == -signal.SIGKILL and note == old_note:
            # killed between its appends and its commit: entries run past the checkpoint
            self.assertGreater(os.path.getsize(path), start)
            rc, j, err = self.check()
            self.assertEqual((rc, j["size"]), (0, 20), err)
            self.assertGreater(j["trailing_bytes"], 0)
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertEqual(j["size"], 6020)
        self.assert_mirrors(self.log)

    def test_entries_that_do_not_hash_to_the_checkpoint_are_not_kept(self):
        self.fill(10)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        before = snapshot(self.dir)
        self.fill(2500)  # more than one write buffer: the run has written to `entries`
        forger = Forger(self.ledger.endpoint, 2509, pack(Synthetic(salt=b"forged").next()))
        try:
            rc, out, err = cli("--json", "mirror", "--ledger", forger.endpoint, "--dir", self.dir)
        finally:
            forger.close()
        self.assertEqual(forger.served, 1)
        self.assertEqual(rc, 1)
        self.assertIn("not the log it signed", err)
        self.assertEqual(json.loads(out)["ok"], False)
        self.assertEqual(snapshot(self.dir), before)  # cut back, checkpoint as it was
        rc, j, err = self.mirror()
        self.assertEqual(rc, 0, err)
        self.assertEqual((j["previous_size"], j["new_entries"]), (10, 2500))
        self.assert_mirrors(self.log)

    # ---- options ------------------------------------------------------------------------------

    def test_bad_options_are_named_and_change_nothing(self):
        ep = self.ledger.endpoint
        for args, words in [
                ((), ["--dir DIR is required"]),
                (("--dir", self.dir), ["holds no mirror yet", "--vkey"]),
                (("--dir", self.dir, "--vkey", "nonsense"), ["--vkey"]),
                (("--dir", self.dir, "--tofu", "--window", "0"), ["--window", "'0'"]),
                (("--dir", self.dir, "--tofu", "--window", "2000"), ["--window"]),
                (("--dir", self.dir, "--tofu", "--jobs", "x"), ["--jobs", "'x'"]),
                (("--dir", self.dir, "--tofu", "--vkey", self.vkey), ["one of --vkey"]),
                (("--dir", self.dir, "--tofu", "--bogus"), ["unexpected argument '--bogus'"]),
                (("--dir", self.dir, "--tofu", "--workers", "/nonexistent/w.txt"), ["--workers"]),
                (("--dir", self.dir, "--check", "--ledger", ep), ["--ledger does not apply"]),
                (("--dir", self.dir, "--check", "--tofu"), ["--tofu does not apply"]),
                (("--dir", self.dir, "--check", "--window", "4"), ["--window does not apply"]),
                (("--dir", self.dir, "--check", "--restore-to", ep), ["one at a time"]),
                (("--dir", self.dir, "--restore-to", ep, "--workers", "w"), ["--workers does not"]),
        ]:
            rc, out, err = cli("mirror", *args)
            self.assertEqual(rc, 2, (args, err))
            for w in words:
                self.assertIn(w, err, args)
            self.assertFalse(os.path.exists(self.dir), args)
        rc, out, err = cli("mirror", "--dir", self.dir, "--check")
        self.assertEqual(rc, 2)
        self.assertIn("No such file", err)
        os.makedirs(self.dir)
        rc, out, err = cli("mirror", "--dir", self.dir, "--check")
        self.assertEqual(rc, 2)
        self.assertIn("holds no mirror", err)
        os.rmdir(self.dir)

        rc, out, _ = cli("mirror", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: sediment mirror", out)
        self.assertIn("--tofu", out)
        self.assertEqual(cli("help", "mirror")[0], 0)

    def test_unreachable_ledger_and_bad_entries_leave_dir_as_it_was(self):
        self.fill(15)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        self.fill(5)
        before = snapshot(self.dir)
        rc, out, err = cli("--timeout", "1", "--json", "mirror", "--ledger",
                           "tcp://127.0.0.1:9", "--dir", self.dir)
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["error"]["code"], "timeout")
        self.assertEqual(snapshot(self.dir), before)

        # --workers without the signer: the first new entry is bad, nothing is kept
        wrong = os.path.join(self.tmp.name, "workers-wrong.txt")
        with open(wrong, "w") as f:
            f.write("# not the signer\n" + "ab" * 32 + " someone\n")
        rc, j, err = self.mirror("--workers", wrong)
        self.assertEqual(rc, 1)
        self.assertIn("entry 15: signed by %s, which is not in --workers %s" %
                      (self.syn.signer.pk.hex(), wrong), err)
        self.assertEqual(snapshot(self.dir), before)
        rc, j, err = self.check("--workers", wrong)
        self.assertEqual((rc, j["entries_ok"], len(j["bad"])), (1, 0, 15))
        right = os.path.join(self.tmp.name, "workers.txt")
        with open(right, "w") as f:
            f.write(self.syn.signer.pk.hex() + "\n")
        rc, j, err = self.mirror("--workers", right, "--progress")
        self.assertEqual(rc, 0, err)
        self.assertEqual(j["new_entries"], 5)
        self.assertIn("5/5 entries", err)
        self.assert_mirrors(self.log)

        # a second run while one holds the directory's lock
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            rc, j, err = self.mirror()
            self.assertEqual(rc, 2)
            self.assertIn("another `sediment mirror` is using it", err)
        finally:
            os.close(fd)

    # ---- restore ------------------------------------------------------------------------------

    def test_restore_into_a_fresh_ledger_gives_the_same_root(self):
        self.fill(250)
        self.assertEqual(self.mirror("--vkey", self.vkey)[0], 0)
        want_root = mth([leaf_hash(e) for e in self.log])

        stranger = self.start_ledger()  # another key: not this log
        rc, out, err = cli("--json", "mirror", "--dir", self.dir, "--restore-to", stranger.endpoint)
        self.assertEqual(rc, 1)
        self.assertIn("start it with the original ledger.key", err)
        self.assertEqual(ask(stranger.endpoint, "info")["size"], 0)

        data = os.path.join(self.tmp.name, "restored")
        key_copy(self.ledger.data, data)
        target = self.start_ledger(data)
        self.append(target, self.log[:20])  # a restore that stopped after 20
        rc, out, err = cli("--json", "mirror", "--dir", self.dir, "--restore-to", target.endpoint,
                           "--window", 32, "--progress")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual((j["ok"], j["size"], j["previous_size"], j["new_entries"], j["root"]),
                         (True, 250, 20, 230, want_root.hex()))
        self.assertIn("230/230 entries restored", err)
        c = Client(target.endpoint)
        info = c.call("info")
        size, root = open_checkpoint(c.call("checkpoint")["checkpoint"], ORIGIN,
                                     bytes(info["ledger_key"]))
        self.assertEqual((size, root), (250, want_root))
        for i in (0, 20, 249):
            self.assertEqual(c.entry_bytes(i), self.log[i])
        c.close()
        # a mirror of the restored ledger is the same file, byte for byte
        d2 = os.path.join(self.tmp.name, "m2")
        rc, j, err = self.mirror("--vkey", self.vkey, ledger=target, d=d2)
        self.assertEqual(rc, 0, err)
        self.assertEqual(snapshot(d2)["entries"], snapshot(self.dir)["entries"])

        rc, out, err = cli("--json", "mirror", "--dir", self.dir, "--restore-to", target.endpoint)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["new_entries"], 0)

        # the same key over another prefix, and a target whose --workers refuses the signer
        data = os.path.join(self.tmp.name, "other-prefix")
        key_copy(self.ledger.data, data)
        other = self.start_ledger(data)
        self.append(other, [pack(Synthetic(salt=b"other").next()) for _ in range(3)])
        rc, out, err = cli("mirror", "--dir", self.dir, "--restore-to", other.endpoint)
        self.assertEqual(rc, 1)
        self.assertIn("is not the mirror's first 3 entries", err)
        self.assertEqual(ask(other.endpoint, "info")["size"], 3)
        data = os.path.join(self.tmp.name, "strict")
        key_copy(self.ledger.data, data)
        workers = os.path.join(self.tmp.name, "ledger-workers.txt")
        with open(workers, "w") as f:
            f.write("cd" * 32 + "\n")
        strict = self.start_ledger(data, args=["--workers", workers])
        rc, out, err = cli("mirror", "--dir", self.dir, "--restore-to", strict.endpoint)
        self.assertEqual(rc, 1)
        self.assertIn("would refuse entry 0: signed by", err)
        self.assertIn("nothing was appended", err)
        self.assertEqual(ask(strict.endpoint, "info")["size"], 0)


@unittest.skipUnless(have_binaries() and os.environ.get("SDM_MIRROR_BENCH"),
                     "a timing run: SDM_MIRROR_BENCH=N (entries; optionally N,M for M more)")
class TestMirrorSpeed(unittest.TestCase):
    """Times a first mirror of N entries on loopback and an incremental run of M (default 100):
    SDM_MIRROR_BENCH=10000 python3 tests/python/test_mirror.py TestMirrorSpeed"""

    def test_first_and_incremental_run(self):
        n, _, m = os.environ["SDM_MIRROR_BENCH"].partition(",")
        n, m = int(n), int(m or 100)
        with tempfile.TemporaryDirectory(prefix="sdm-mirror-bench-") as tmp:
            ledger = Ledger(args=["--origin", ORIGIN])
            try:
                syn = Synthetic(salt=b"bench")
                log = []

                def fill(k):
                    envs = [pack(syn.next()) for _ in range(k)]
                    pipelined(ledger.endpoint, [append_frame(e, i) for i, e in enumerate(envs)],
                              window=256)
                    log.extend(envs)

                def run(*args):
                    t = time.monotonic()
                    rc, out, err = cli("--json", "mirror", "--ledger", ledger.endpoint, "--dir",
                                       os.path.join(tmp, "m"), *args)
                    wall = time.monotonic() - t
                    self.assertEqual(rc, 0, err)
                    return json.loads(out), wall

                fill(n)
                j, wall = run("--vkey", ledger_key(ledger.data))
                self.assertEqual(j["size"], n)
                print("\nfirst run, %d entries: %.3f s in the command, %.3f s wall" %
                      (n, j["seconds"], wall))
                fill(m)
                j, wall = run()
                self.assertEqual((j["previous_size"], j["new_entries"]), (n, m))
                print("incremental run, %d new of %d: %.3f s in the command, %.3f s wall" %
                      (m, n + m, j["seconds"], wall))
                j, wall = run()
                self.assertEqual(j["new_entries"], 0)
                print("nothing new, %d entries rehashed: %.3f s in the command, %.3f s wall" %
                      (n + m, j["seconds"], wall))
                self.assertEqual(j["root"], mth([leaf_hash(e) for e in log]).hex())
            finally:
                ledger.close()


if __name__ == "__main__":
    unittest.main()
