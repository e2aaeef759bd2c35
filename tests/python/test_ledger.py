"""test_ledger.py - sediment-ledger over real sockets (docs/ledger.md, SPEC §4-§7): every op's
reply, byte-identical entries, checkpoints and RFC 9162 proofs checked in pure Python, every
refusal (also against the ASan build), history and rewards on known and random logs, kill -9
and SIGTERM during floods of appends, refusal to start on a tampered log, and Go's
sumdb/note + sumdb/tlog on the live ledger's checkpoints and proofs."""
import base64
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from fractions import Fraction

import msgpack
import nacl.exceptions
import nacl.signing
import numpy as np
import zmq

from ledgerproc import Ledger, raw_fields, start_refused
from workerproc import BIN, Raw, Worker, matrix

TAG = "sediment-signed-v1"
D, K = 16, 8
T0 = 1_800_000_000_000_000_000  # issued_at of the known bodies (unix ns)


def sha256(b):
    return hashlib.sha256(b).digest()


EMPTY = sha256(b"")


def pack(x):
    return msgpack.packb(x, use_bin_type=True)


def bad(rep, code, *words):
    assert rep["ok"] is False, rep
    assert rep["error"]["code"] == code, rep
    for w in words:
        assert w in rep["error"]["message"], (w, rep)


# ---- RFC 9162 trees and proofs, written from the RFC ----------------------------------------

def leaf_hash(data):
    return sha256(b"\x00" + data)


def node(left, right):
    return sha256(b"\x01" + left + right)


def mth(leaves):
    """MTH of a list of leaf hashes, by the recursive definition."""
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


class Roots:
    """The root of every prefix in O(log n) a leaf: a stack of the perfect subtrees so far,
    folded from the right (the same split as MTH's largest power of two)."""

    def __init__(self):
        self.stack = []  # (height, hash), largest first
        self.size = 0

    def append(self, leaf):
        h, height = leaf, 0
        while self.stack and self.stack[-1][0] == height:
            h = node(self.stack.pop()[1], h)
            height += 1
        self.stack.append((height, h))
        self.size += 1

    def root(self):
        if not self.stack:
            return EMPTY
        h = self.stack[-1][1]
        for _, s in reversed(self.stack[:-1]):
            h = node(s, h)
        return h


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, path, first_root, second_root):
    """RFC 9162 §2.1.4.2 (an empty tree is a prefix of every tree, with an empty path)."""
    if first > second:
        return False
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path
    path = list(path)
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# ---- C2SP signed-note checkpoints -----------------------------------------------------------

class BadNote(Exception):
    pass


def key_id(name, pk):
    return sha256(name.encode() + b"\n\x01" + pk)[:4]


def open_checkpoint(note, origin, pk):
    """(size, root) of a checkpoint signed by pk under the key name origin; BadNote otherwise."""
    if not isinstance(note, str):
        raise BadNote("not a string")
    text, sep, sigs = note.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise BadNote("no signature block")
    text += "\n"
    lines = text.split("\n")[:-1]
    if len(lines) != 3:
        raise BadNote("%d lines, expected origin, size, root" % len(lines))
    if lines[0] != origin:
        raise BadNote("origin %r" % lines[0])
    if not lines[1].isdigit() or (len(lines[1]) > 1 and lines[1][0] == "0"):
        raise BadNote("size %r" % lines[1])
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise BadNote("root %r" % lines[2])
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        raise BadNote("root %r" % lines[2])
    verified = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise BadNote("signature line %r" % line)
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise BadNote("signature line %r" % line)
        name, b64 = parts
        try:
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise BadNote("signature %r" % b64)
        if name != origin or len(blob) != 68 or blob[:4] != key_id(origin, pk):
            continue
        try:
            nacl.signing.VerifyKey(pk).verify(text.encode(), blob[4:])
        except nacl.exceptions.BadSignatureError:
            raise BadNote("the signature does not verify")
        verified = True
    if not verified:
        raise BadNote("no signature by the ledger's key")
    return int(lines[1]), root


# ---- envelopes and bodies -------------------------------------------------------------------

class Signer:
    """An Ed25519 key that signs bodies into envelopes, as a worker does."""

    def __init__(self, seed=None):
        self.sk = nacl.signing.SigningKey(seed) if seed else nacl.signing.SigningKey.generate()
        self.pk = bytes(self.sk.verify_key)

    def sign(self, body):
        """The envelope as a list (what a request embeds); body is bytes or a map."""
        if not isinstance(body, bytes):
            body = pack(body)
        return [TAG, body, self.pk, self.sk.sign(b"sediment-signed-v1\n" + body).signature]


def canon(env):
    """The canonical (shortest) msgpack form of an envelope list: what the ledger stores."""
    return pack(list(env))


def loose(env):
    """The same envelope in the longest encodings msgpack allows: array16, str8, bin32."""
    tag, body, key, sig = env
    out = b"\xdc\x00\x04" + b"\xd9" + bytes([len(tag)]) + tag.encode()
    for b in (body, key, sig):
        out += b"\xc6" + struct.pack(">I", len(b)) + b
    return out


def append_frame(entry_bytes, rid):
    """An append request whose entry is given as encoded bytes."""
    return b"\x83" + pack("op") + pack("append") + pack("id") + pack(rid) + pack("entry") + entry_bytes


def receipt_leaf(model, checkpoint, lr, contributor, shard, n, ids_digest, data_digest,
                 weights_digest, curvature):
    return leaf_hash(pack([model, checkpoint, float(lr), contributor, shard, n, ids_digest,
                           data_digest, weights_digest, curvature]))


def receipt_body(worker, batch, model="m", checkpoint="c0", lr=0.5, contributor="alice",
                 shard="s0", n=1, issued_at=None, curvature=False, salt=b""):
    """A receipt body as sdm_receipt_encode writes it, with a leaf matching its fields."""
    if curvature:
        contributor, shard, ids = "", "", EMPTY
    else:
        ids = sha256(b"ids" + struct.pack("<Q", batch) + salt)
    data = sha256(b"data" + struct.pack("<Q", batch) + salt)
    leaf = receipt_leaf(model, checkpoint, lr, contributor, shard, n, ids, data, EMPTY, curvature)
    return {"v": 1, "type": "contribution", "worker": worker,
            "issued_at": 1_700_000_000_000_000_000 + batch if issued_at is None else issued_at,
            "model": model, "checkpoint": checkpoint, "lr": float(lr), "contributor": contributor,
            "shard": shard, "n": n, "batch": batch, "leaf": leaf, "store_size": batch + 1,
            "store_root": sha256(b"root" + struct.pack("<Q", batch) + salt), "ids_digest": ids,
            "data_digest": data, "weights_digest": EMPTY, "curvature": curvature}


def query(qid, shards, contributors):
    """A proof query; shards [(shard, contributor, score, share)], contributors [(c, score, share)]."""
    return {"id": qid, "shards": [[s, c, float(x), float(y)] for s, c, x, y in shards],
            "contributors": [[c, float(x), float(y)] for c, x, y in contributors],
            "top": [[1, shards[0][0], 1.0]] if shards else [], "bottom": []}


def proof_body(worker, queries, model="m", issued_at=1_700_000_000_000_000_000, request_id=""):
    """A proof body as sdm_proof_encode writes it."""
    return {"v": 1, "type": "attribution", "worker": worker, "issued_at": issued_at, "model": model,
            "projection": {"kind": "rademacher", "dim": K, "seed": 7, "input_dim": D},
            "method": "dot", "lambda": [], "aggregate": "sum",
            "checkpoints": [{"id": "c0", "lr": 0.5}], "store_size": 3, "store_root": sha256(b"sr"),
            "query_digest": sha256(b"qd"), "request_id": request_id, "queries": queries}


class Synthetic:
    """Distinct valid receipts, signed here, many per millisecond."""

    def __init__(self, signer=None, salt=b""):
        self.signer = signer or Signer()
        self.salt = salt
        self.counter = itertools.count()
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            i = next(self.counter)
        return self.signer.sign(receipt_body(self.signer.pk, i, shard="s%d" % (i % 5), salt=self.salt))


# ---- a client that keeps the raw reply ------------------------------------------------------

class Client(Raw):
    def call_raw(self, op, **fields):
        """(reply, {key: raw bytes of the value}) for one request."""
        req = {"op": op, "id": self.next_id}
        self.next_id += 1
        req.update(fields)
        self.send_bytes(pack(req))
        if not self.sock.poll(self.timeout_ms):
            raise TimeoutError("no reply")
        frames = self.sock.recv_multipart()
        rep = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
        assert rep.get("id") == req["id"], (rep, req["id"])
        return rep, raw_fields(frames[-1])

    def entry_bytes(self, index):
        rep, raw = self.call_raw("entry", index=index)
        assert rep["ok"], rep
        return raw["entry"]

    def state(self):
        """(size, latest checkpoint): what a refused request must leave as it was."""
        return self.call("info")["size"], self.call("checkpoint")["checkpoint"]


class Watched(Client):
    """A client that, when no reply comes, says whether the ledger process died."""

    def __init__(self, ledger, timeout_ms=10000):
        super().__init__(ledger.endpoint, timeout_ms=timeout_ms)
        self.ledger = ledger

    def call_bytes(self, payload, timeout_ms=None):
        try:
            return super().call_bytes(payload, timeout_ms)
        except TimeoutError:
            how = "is still running" if self.ledger.alive() else \
                "exited with status %s (its stderr is above)" % self.ledger.proc.poll()
            raise AssertionError("no reply to %r: the ledger %s" % (payload[:80], how)) from None


def ledger_identity(c):
    info = c.call("info")
    return info["origin"], info["ledger_key"]


def pipelined(endpoint, requests, window=64, timeout_ms=30000):
    """Sends request frames (bytes, ids 0..n-1 inside) on one DEALER keeping `window` in
    flight; returns the raw reply payloads in request order."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out = [None] * len(requests)
    sent = got = 0
    try:
        while got < len(requests):
            while sent < len(requests) and sent - got < window:
                sock.send_multipart([b"", requests[sent]])
                sent += 1
            if not sock.poll(timeout_ms):
                raise TimeoutError("no reply")
            payload = sock.recv_multipart()[-1]
            rid = msgpack.unpackb(payload, raw=False)["id"]
            out[rid] = payload
            got += 1
    finally:
        sock.close(0)
    return out


def all_entries(endpoint, size):
    """Every entry's canonical bytes, as the ledger returns them."""
    reqs = [pack({"op": "entry", "id": i, "index": i}) for i in range(size)]
    entries = []
    for payload in pipelined(endpoint, reqs):
        rep = msgpack.unpackb(payload, raw=False)
        assert rep["ok"], rep
        entries.append(raw_fields(payload)["entry"])
    return entries


def roots_at(leaves, sizes):
    """{size: MTH of the first size leaves} for every size asked."""
    want = set(sizes)
    r = Roots()
    out = {}
    if 0 in want:
        out[0] = EMPTY
    for leaf in leaves:
        r.append(leaf)
        if r.size in want:
            out[r.size] = r.root()
    return out


def is_uint(x):
    return type(x) is int and x >= 0


# ---- 1. every op's reply --------------------------------------------------------------------

class Ops(unittest.TestCase):
    """Success replies of every op, as docs/ledger.md lists them, with envelopes a real
    worker signed."""

    @classmethod
    def setUpClass(cls):
        cls.w = Worker()
        cls.wc = Raw(cls.w.endpoint)
        rep = cls.wc.call("register", model="m", input_dim=D,
                          projection={"kind": "rademacher", "dim": K, "seed": 7})
        assert rep["ok"], rep
        cls.worker_key = cls.wc.call("info")["worker_key"]
        rng = np.random.default_rng(3)
        cls.envs = []
        for b in range(4):
            rep = cls.wc.call("contribute", model="m", checkpoint="c0", lr=0.5,
                              contributor="alice" if b % 2 else "bob", shard="s%d" % b,
                              example_ids=[10 * b, 10 * b + 1],
                              grads=matrix(rng.standard_normal((2, D)).astype(np.float32)))
            assert rep["ok"], rep
            cls.envs.append(rep["receipt"])
        rep = cls.wc.call("contribute", model="m", checkpoint="c0", lr=0.5, curvature=True,
                          grads=matrix(rng.standard_normal((3, D)).astype(np.float32)))
        assert rep["ok"], rep
        cls.envs.append(rep["receipt"])
        rep = cls.wc.call("attribute", model="m",
                          queries={"c0": matrix(rng.standard_normal((2, D)).astype(np.float32))},
                          topk=2)
        assert rep["ok"], rep
        cls.envs.append(rep["proof"])
        cls.l = Ledger()
        cls.c = Client(cls.l.endpoint)
        cls.origin, cls.key = ledger_identity(cls.c)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.wc.close()
        assert cls.l.stop() == 0
        cls.l.close()
        assert cls.w.stop() == 0
        cls.w.close()

    def append_checked(self, env, expect_duplicate=False):
        before = self.c.call("info")["size"]
        rep = self.c.call("append", entry=env)
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(set(rep), {"id", "ok", "index", "leaf_hash", "size", "checkpoint",
                                    "duplicate"})
        self.assertTrue(is_uint(rep["index"]) and is_uint(rep["size"]), rep)
        self.assertIs(rep["duplicate"], expect_duplicate)
        self.assertEqual(rep["leaf_hash"], leaf_hash(canon(env)))
        if not expect_duplicate:
            self.assertEqual(rep["index"], before)
            self.assertEqual(rep["size"], before + 1)
        else:
            self.assertEqual(rep["size"], before)
        size, root = open_checkpoint(rep["checkpoint"], self.origin, self.key)
        self.assertEqual(size, rep["size"])
        self.assertGreater(size, rep["index"])  # the checkpoint covers the entry
        leaves = [leaf_hash(e) for e in all_entries(self.l.endpoint, size)]
        self.assertEqual(root, mth(leaves))
        self.assertEqual(leaves[rep["index"]], rep["leaf_hash"])
        return rep

    def test_info(self):
        rep = self.c.call("info")
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(set(rep), {"id", "ok", "version", "ledger_key", "origin", "size", "workers"})
        self.assertIsInstance(rep["version"], str)
        self.assertTrue(rep["version"])
        self.assertIsInstance(rep["ledger_key"], bytes)
        self.assertEqual(len(rep["ledger_key"]), 32)
        # no --origin: sediment-ledger-<first 16 hex digits of the key>
        self.assertEqual(rep["origin"], "sediment-ledger-" + rep["ledger_key"].hex()[:16])
        self.assertTrue(is_uint(rep["size"]))
        self.assertIsNone(rep["workers"])  # no --workers: any valid signature is accepted

    def test_id_echo(self):
        for rid in ["abc", 2 ** 63, [1, {"x": None}], None, b"\x00\x01"]:
            rep = self.c.call_bytes(pack({"op": "info", "id": rid}))
            self.assertEqual(rep["id"], rid)
        self.assertIsNone(self.c.call_bytes(pack({"op": "checkpoint"}))["id"])
        rep = self.c.call_bytes(pack({"op": "teleport", "id": "x7"}))
        self.assertEqual(rep["id"], "x7")
        bad(rep, "unknown_op", "teleport")

    def test_append_then_entry_is_byte_identical(self):
        for env in self.envs:
            rep = self.c.call("append", entry=env)
            self.assertTrue(rep["ok"], rep)
            idx = rep["index"]
            got = self.c.entry_bytes(idx)
            self.assertEqual(got, canon(env))
            self.assertEqual(msgpack.unpackb(got, raw=False), list(env))
            # the embedded entry opens as the worker's own signature
            tag, body, key, sig = msgpack.unpackb(got, raw=False)
            self.assertEqual(key, self.worker_key)
            nacl.signing.VerifyKey(key).verify(b"sediment-signed-v1\n" + body, sig)

    def test_append_reply_and_checkpoint(self):
        s = Signer()
        fresh = [s.sign(receipt_body(s.pk, i, salt=b"ops")) for i in range(3)]
        for env in self.envs + fresh:
            present = canon(env) in all_entries(self.l.endpoint, self.c.call("info")["size"])
            rep = self.append_checked(env, expect_duplicate=present)
            self.assertEqual(self.c.call("info")["size"], rep["size"])
            # the checkpoint op hands out the note the append was answered with
            self.assertEqual(self.c.call("checkpoint")["checkpoint"], rep["checkpoint"])
        # the same envelope again: its first index, duplicate true, nothing grows
        first = self.c.call("append", entry=fresh[0])
        again = self.append_checked(fresh[0], expect_duplicate=True)
        self.assertEqual(again["index"], first["index"])
        self.assertEqual(again["index"], rep["index"] - 2)

    def test_non_canonical_encoding_is_the_same_entry(self):
        s = Signer()
        env = s.sign(receipt_body(s.pk, 0, salt=b"loose"))
        first = self.c.call("append", entry=env)
        self.assertTrue(first["ok"], first)
        self.assertFalse(first["duplicate"])
        size = self.c.call("info")["size"]
        rep = self.c.call_bytes(append_frame(loose(env), 77))
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(rep["id"], 77)
        self.assertEqual(rep["index"], first["index"])
        self.assertIs(rep["duplicate"], True)
        self.assertEqual(rep["leaf_hash"], first["leaf_hash"])
        self.assertEqual(self.c.call("info")["size"], size)
        # a new envelope sent in the loose form is stored (and hashed) in the canonical one
        env2 = s.sign(receipt_body(s.pk, 1, salt=b"loose"))
        self.assertNotEqual(loose(env2), canon(env2))
        rep = self.c.call_bytes(append_frame(loose(env2), 78))
        self.assertTrue(rep["ok"], rep)
        self.assertFalse(rep["duplicate"])
        self.assertEqual(rep["leaf_hash"], leaf_hash(canon(env2)))
        self.assertEqual(self.c.entry_bytes(rep["index"]), canon(env2))
        rep = self.c.call("append", entry=env2)
        self.assertTrue(rep["duplicate"])

    def test_copies_in_flight_together_are_one_entry(self):
        # sent back to back, the copies (half of them in the loose encoding) reach the writer
        # together or nearly: however they are grouped, one entry, every reply its index
        s = Signer()
        env = s.sign(receipt_body(s.pk, 0, salt=b"together"))
        size = self.c.call("info")["size"]
        reqs = [append_frame(loose(env), i) if i % 2 else pack({"op": "append", "id": i, "entry": env})
                for i in range(32)]
        reps = [msgpack.unpackb(p, raw=False) for p in pipelined(self.l.endpoint, reqs, window=32)]
        self.assertTrue(all(r["ok"] for r in reps), reps)
        self.assertEqual({r["index"] for r in reps}, {size})
        self.assertEqual(sum(not r["duplicate"] for r in reps), 1)
        self.assertEqual(self.c.call("info")["size"], size + 1)
        self.assertEqual(self.c.entry_bytes(size), canon(env))

    def test_read_op_replies(self):
        s = Signer()
        rep = self.c.call("append", entry=s.sign(receipt_body(s.pk, 0, contributor="opsreader",
                                                                salt=b"read")))
        self.assertTrue(rep["ok"], rep)
        size, idx = rep["size"], rep["index"]
        r = self.c.call("checkpoint")
        self.assertEqual(set(r), {"id", "ok", "checkpoint"})
        self.assertIsInstance(r["checkpoint"], str)
        self.assertGreaterEqual(open_checkpoint(r["checkpoint"], self.origin, self.key)[0], size)
        r = self.c.call("entry", index=idx)
        self.assertEqual(set(r), {"id", "ok", "entry"})
        self.assertIsInstance(r["entry"], list)
        r = self.c.call("inclusion", index=idx, size=size)
        self.assertEqual(set(r), {"id", "ok", "leaf_hash", "hashes"})
        self.assertEqual(r["leaf_hash"], rep["leaf_hash"])
        self.assertTrue(all(isinstance(h, bytes) and len(h) == 32 for h in r["hashes"]))
        r = self.c.call("consistency", **{"from": 1, "to": size})
        self.assertEqual(set(r), {"id", "ok", "hashes"})
        self.assertTrue(all(isinstance(h, bytes) and len(h) == 32 for h in r["hashes"]))
        self.assertEqual(self.c.call("consistency", **{"from": 0, "to": size})["hashes"], [])
        self.assertEqual(self.c.call("consistency", **{"from": size, "to": size})["hashes"], [])
        r = self.c.call("history", contributor="opsreader")
        self.assertEqual(set(r), {"id", "ok", "entries"})
        self.assertEqual(r["entries"], [{"index": idx, "issued_at": 1_700_000_000_000_000_000,
                                         "type": "contribution", "model": "m", "shard": "s0",
                                         "score": None, "share": None}])
        r = self.c.call("rewards", pool=10)
        self.assertEqual(set(r), {"id", "ok", "allocations", "flagged", "unallocated"})
        self.assertIsInstance(r["allocations"], list)
        self.assertIsInstance(r["flagged"], list)
        self.assertTrue(is_uint(r["unallocated"]))
        self.assertEqual(sum(a for _, a in r["allocations"]) + r["unallocated"], 10)


# ---- 2. proofs ------------------------------------------------------------------------------

N_PROOF = 40


class Proofs(unittest.TestCase):
    """Inclusion proofs for every index of every size up to 40, consistency proofs for every
    pair, checked against the checkpoints the appends were answered with."""

    @classmethod
    def setUpClass(cls):
        cls.l = Ledger(args=["--origin", "example.org/proofs"])
        cls.c = Client(cls.l.endpoint)
        cls.origin, cls.key = ledger_identity(cls.c)
        gen = Synthetic(salt=b"proofs")
        cls.envs, cls.roots = [], {}
        first = cls.c.call("checkpoint")["checkpoint"]
        cls.roots[0] = open_checkpoint(first, cls.origin, cls.key)
        for i in range(N_PROOF):
            env = gen.next()
            rep = cls.c.call("append", entry=env)
            assert rep["ok"] and rep["index"] == i, rep
            cls.envs.append(canon(env))
            cls.roots[rep["size"]] = open_checkpoint(rep["checkpoint"], cls.origin, cls.key)
        cls.leaves = [leaf_hash(e) for e in cls.envs]

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.l.stop() == 0
        cls.l.close()

    def root(self, size):
        got_size, root = self.roots[size]
        self.assertEqual(got_size, size)
        return root

    def inclusion(self, index, size):
        rep = self.c.call("inclusion", index=index, size=size)
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(rep["leaf_hash"], self.leaves[index])
        return rep["hashes"]

    def test_origin_and_roots(self):
        self.assertEqual(self.origin, "example.org/proofs")
        self.assertEqual(self.root(0), EMPTY)
        r = Roots()
        for n in range(1, N_PROOF + 1):
            r.append(self.leaves[n - 1])
            self.assertEqual(self.root(n), mth(self.leaves[:n]), n)
            self.assertEqual(r.root(), mth(self.leaves[:n]), n)

    def test_checkpoint_verifier_rejects_forgeries(self):
        note = self.c.call("checkpoint")["checkpoint"]
        size, root = open_checkpoint(note, self.origin, self.key)
        self.assertEqual(size, N_PROOF)
        text, _, sig = note.partition("\n\n")
        forged = [
            note.replace("\n%d\n" % size, "\n%d\n" % (size + 1), 1),
            text.replace(base64.b64encode(root).decode(), base64.b64encode(EMPTY).decode()) + "\n\n" + sig,
            note.replace(self.origin, "example.org/other"),
            note[:-1],
            text + "\n\n",
        ]
        for f in forged:
            with self.assertRaises(BadNote, msg=f):
                open_checkpoint(f, self.origin, self.key)
        with self.assertRaises(BadNote):
            open_checkpoint(note, self.origin, Signer().pk)
        # a note signed by another key under the same name is not the ledger's
        other = Signer()
        body = text + "\n"
        blob = key_id(self.origin, other.pk) + other.sk.sign(body.encode()).signature
        with self.assertRaises(BadNote):
            open_checkpoint(body + "\n\u2014 %s %s\n" % (self.origin, base64.b64encode(blob).decode()),
                            self.origin, self.key)
        # ... and the same construction with the right key would be accepted: the check is real
        self.assertEqual(open_checkpoint(body + "\n\u2014 %s %s\n" % (self.origin,
                                         base64.b64encode(blob).decode()), self.origin, other.pk),
                         (size, root))

    def test_inclusion_every_index_every_size(self):
        for size in range(1, N_PROOF + 1):
            root = self.root(size)
            for index in range(size):
                path = self.inclusion(index, size)
                self.assertTrue(verify_inclusion(index, size, self.leaves[index], path, root),
                                (index, size))

    def test_consistency_every_pair(self):
        for second in range(0, N_PROOF + 1):
            for first in range(0, second + 1):
                rep = self.c.call("consistency", **{"from": first, "to": second})
                self.assertTrue(rep["ok"], rep)
                self.assertTrue(verify_consistency(first, second, rep["hashes"], self.root(first),
                                                   self.root(second)), (first, second))

    def test_corrupted_proofs_are_rejected(self):
        flip = lambda h: bytes([h[0] ^ 1]) + h[1:]
        for size in range(1, N_PROOF + 1):
            root = self.root(size)
            for index in range(size):
                path = self.inclusion(index, size)
                leaf = self.leaves[index]
                probes = []
                for other in {0, index - 1, index + 1, size - 1} - {index}:
                    if 0 <= other < size:
                        probes.append((other, size, leaf, path, root))
                for other in {1, size - 1, size + 1, size * 2} - {size}:
                    if index < other <= N_PROOF:
                        probes.append((index, other, leaf, path, self.root(other)))
                probes.append((index, size, flip(leaf), path, root))
                probes.append((index, size, leaf, path, flip(root)))
                for k in range(len(path)):
                    probes.append((index, size, leaf, path[:k] + [flip(path[k])] + path[k + 1:], root))
                probes.append((index, size, leaf, path + [leaf], root))
                if path:
                    probes.append((index, size, leaf, path[:-1], root))
                    probes.append((index, size, leaf, path[1:], root))
                for p in probes:
                    self.assertFalse(verify_inclusion(*p), (index, size, p[:2]))
        for second in range(2, N_PROOF + 1):
            for first in range(1, second):
                path = self.c.call("consistency", **{"from": first, "to": second})["hashes"]
                r1, r2 = self.root(first), self.root(second)
                probes = [(first, second, path, r2, r1), (first, second, path, flip(r1), r2),
                          (first, second, path, r1, flip(r2)), (first, second, path + [r1], r1, r2)]
                if path:
                    probes.append((first, second, path[:-1], r1, r2))
                for k in range(len(path)):
                    probes.append((first, second, path[:k] + [flip(path[k])] + path[k + 1:], r1, r2))
                for other in {first - 1, first + 1} - {0, second}:
                    probes.append((other, second, path, self.root(other), r2))
                for other in {second - 1, second + 1} - {first}:
                    if other <= N_PROOF:
                        probes.append((first, other, path, r1, self.root(other)))
                for p in probes:
                    self.assertFalse(verify_consistency(*p), (first, second, p[:2]))

    def test_out_of_range(self):
        n = self.c.call("info")["size"]
        bad(self.c.call("entry", index=n), "not_found", "index")
        bad(self.c.call("entry", index=2 ** 64 - 1), "not_found", "index")
        bad(self.c.call("inclusion", index=n, size=n), "bad_request", "index")
        bad(self.c.call("inclusion", index=3, size=2), "bad_request", "index")
        bad(self.c.call("inclusion", index=0, size=n + 1), "not_found", "size")
        bad(self.c.call("inclusion", index=0, size=2 ** 64 - 1), "not_found", "size")
        bad(self.c.call("consistency", **{"from": 0, "to": n + 1}), "not_found", "to")
        bad(self.c.call("consistency", **{"from": 5, "to": 4}), "bad_request", "from")
        bad(self.c.call("consistency", **{"from": n + 2, "to": n + 1}), "bad_request", "from")
        bad(self.c.call("entry", index=-1), "bad_request", "index")
        bad(self.c.call("inclusion", index="0", size=3), "bad_request", "index")
        self.assertEqual(self.c.call("info")["size"], n)


# ---- 3. refusals ----------------------------------------------------------------------------

class Refusals(unittest.TestCase):
    """Every refused append leaves the log as it was (size and checkpoint) and names why."""

    @classmethod
    def setUpClass(cls):
        cls.w = Worker()
        cls.wc = Raw(cls.w.endpoint)
        assert cls.wc.call("register", model="m", input_dim=D,
                           projection={"kind": "rademacher", "dim": K, "seed": 7})["ok"]
        cls.worker_key = cls.wc.call("info")["worker_key"]
        rep = cls.wc.call("contribute", model="m", checkpoint="c0", lr=0.5, contributor="alice",
                          shard="s0", example_ids=[1, 2], grads=matrix(np.ones((2, D), np.float32)))
        assert rep["ok"], rep
        cls.receipt = rep["receipt"]
        rep = cls.wc.call("attribute", model="m", queries={"c0": matrix(np.ones((1, D), np.float32))})
        assert rep["ok"], rep
        cls.proof = rep["proof"]
        cls.signer = Signer()
        cls.tmp = tempfile.TemporaryDirectory(prefix="sdm-refusals-")
        cls.workers_file = os.path.join(cls.tmp.name, "workers.txt")
        with open(cls.workers_file, "w") as f:
            f.write("# the test worker\n%s\n\n%s  # python signer\n" % (cls.worker_key.hex(),
                                                                       cls.signer.pk.hex()))
        cls.l = Ledger(args=["--workers", cls.workers_file])
        cls.c = Client(cls.l.endpoint)
        # something in the log, so that "unchanged" is about a non-empty tree
        assert cls.c.call("append", entry=cls.receipt)["ok"]

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.wc.close()
        assert cls.l.stop() == 0
        cls.l.close()
        assert cls.w.stop() == 0
        cls.w.close()
        cls.tmp.cleanup()

    def refused(self, rep, code, *words):
        bad(rep, code, *words)
        self.assertEqual(self.c.state(), self.before)

    def setUp(self):
        self.before = self.c.state()

    def test_info_lists_the_workers(self):
        self.assertEqual(self.c.call("info")["workers"], [self.worker_key, self.signer.pk])

    def test_real_envelopes_are_accepted(self):
        rep = self.c.call("append", entry=self.proof)
        self.assertTrue(rep["ok"], rep)
        rep = self.c.call("append", entry=self.signer.sign(receipt_body(self.signer.pk, 0, salt=b"ok")))
        self.assertTrue(rep["ok"], rep)

    def test_signatures(self):
        tag, body, key, sig = self.receipt
        forged = bytes(64)
        self.refused(self.c.call("append", entry=[tag, body, key, forged]), "unauthorized", "sig")
        # one bit of the body flipped, inside store_root (the body is still well-formed msgpack)
        at = body.index(msgpack.unpackb(body, raw=False)["store_root"]) + 7
        flipped = body[:at] + bytes([body[at] ^ 0x10]) + body[at + 1:]
        self.refused(self.c.call("append", entry=[tag, flipped, key, sig]), "unauthorized", "sig")
        # signed by the python key, presented under the worker's key
        other = self.signer.sign(body)
        self.refused(self.c.call("append", entry=[tag, body, key, other[3]]), "unauthorized", "sig")
        # the same signature with the signer's own key is a valid one, but the body names
        # another worker: that is the body check's (worker must equal key)
        self.refused(self.c.call("append", entry=other), "bad_request", "entry.body.worker")
        # a valid signature by a key that is not on --workers
        stranger = Signer()
        rep = self.c.call("append", entry=stranger.sign(receipt_body(stranger.pk, 0)))
        self.refused(rep, "unauthorized", stranger.pk.hex(), "allow-list")

    def body_refused(self, body, *words):
        rep = self.c.call("append", entry=self.signer.sign(body))
        self.refused(rep, "bad_request", *words)

    def test_bodies(self):
        pk = self.signer.pk
        good = receipt_body(pk, 5, salt=b"bodies")
        self.body_refused(dict(good, type="donation"), "entry.body.type", "donation")
        self.body_refused({k: v for k, v in good.items() if k != "lr"}, "entry.body.lr", "missing")
        self.body_refused({k: v for k, v in good.items() if k != "type"}, "entry.body.type", "missing")
        self.body_refused(dict(good, colour="red"), "entry.body.colour")
        self.body_refused(dict(good, n="1"), "entry.body.n")
        self.body_refused(dict(good, lr=1), "entry.body.lr", "float64")
        self.body_refused(dict(good, lr=float("nan")), "entry.body.lr")
        self.body_refused(dict(good, v=2), "entry.body.v")
        self.body_refused(dict(good, worker=pk[:31]), "entry.body.worker")
        self.body_refused(dict(good, worker=self.worker_key), "entry.body.worker")
        self.body_refused(dict(good, leaf=sha256(b"x")), "entry.body.leaf")
        self.body_refused(dict(good, contributor="carol"), "entry.body.leaf")  # leaf no longer matches
        self.body_refused(dict(good, batch=9, store_size=9), "entry.body.batch")
        self.body_refused(dict(good, issued_at=-5), "entry.body.issued_at")
        self.body_refused(dict(good, model=""), "entry.body.model")
        rep = self.c.call("append", entry=self.signer.sign(dict(good, issued_at=2 ** 63)))
        self.refused(rep, "bad_request", "issued_at")
        self.body_refused(pack(good) + b"\xc0", "entry")  # trailing bytes
        rep = self.c.call("append", entry=self.signer.sign(pack([1, 2])))
        self.refused(rep, "bad_request", "body", "map")
        proof = proof_body(pk, [query(0, [("s0", "alice", 0.5, 0.5)], [("alice", 0.5, 0.5)])])
        self.assertTrue(self.c.call("append", entry=self.signer.sign(proof))["ok"])
        self.before = self.c.state()
        self.body_refused(proof_body(pk, [query(0, [("s0", "alice", 0.5, 1.5)], [("alice", 0.5, 1.0)])]),
                          "entry.body.queries[0].shards[0][3]")
        self.body_refused(proof_body(pk, [query(0, [("s0", "alice", 0.5, 0.5)], [("alice", float("inf"), 0.5)])]),
                          "entry.body.queries[0].contributors[0][1]")
        self.body_refused(proof_body(pk, [query(0, [("s0", "alice", 0.5, 0.5)], [("alice", 0.5, -0.25)])]),
                          "entry.body.queries[0].contributors[0][2]")
        self.body_refused(dict(proof, method="magic"), "entry.body.method")
        self.body_refused(dict(proof, checkpoints=[]), "entry.body.checkpoints")
        self.body_refused(dict(proof, store_size=3.0), "entry.body.store_size")
        q = query(0, [("s0", "alice", 0.5, 0.5)], [])
        q["shards"][0] = ["s0", "alice", 0.5]
        self.body_refused(proof_body(pk, [q]), "entry.body.queries[0].shards[0]")

    def test_malformed_envelopes(self):
        tag, body, key, sig = self.receipt
        self.refused(self.c.call("append", entry=[tag, body, key]), "bad_request", "entry")
        self.refused(self.c.call("append", entry=[tag, body, key, sig, b""]), "bad_request", "entry")
        self.refused(self.c.call("append", entry=["sediment-signed-v2", body, key, sig]),
                     "bad_request", "entry[0]")
        self.refused(self.c.call("append", entry=[tag.encode(), body, key, sig]), "bad_request", "entry[0]")
        self.refused(self.c.call("append", entry=[tag, body, key[:31], sig]), "bad_request", "entry[2]")
        self.refused(self.c.call("append", entry=[tag, body, key, sig.hex()]), "bad_request", "entry[3]")
        self.refused(self.c.call("append", entry=[tag, body.decode("latin-1"), key, sig]),
                     "bad_request", "entry[1]")
        self.refused(self.c.call("append", entry=canon(self.receipt)), "bad_request", "entry")
        self.refused(self.c.call("append", entry={"tag": tag}), "bad_request", "entry")
        frame = append_frame(canon(self.receipt)[:-3], 5)
        self.refused(self.c.call_bytes(frame), "bad_request")

    def test_requests(self):
        self.refused(self.c.call("teleport"), "unknown_op", "teleport")
        self.refused(self.c.call("append", entry=self.receipt, extra=1), "bad_request", "extra")
        self.refused(self.c.call("info", index=0), "bad_request", "index")
        self.refused(self.c.call("append"), "bad_request", "entry", "missing")
        self.refused(self.c.call("entry"), "bad_request", "index", "missing")
        self.refused(self.c.call("inclusion", index=0), "bad_request", "size", "missing")
        self.refused(self.c.call("consistency", to=1), "bad_request", "from", "missing")
        self.refused(self.c.call("history"), "bad_request", "contributor", "missing")
        self.refused(self.c.call("rewards"), "bad_request", "pool", "missing")
        self.refused(self.c.call("history", contributor="alice", limit=0), "bad_request", "limit")
        self.refused(self.c.call("history", contributor="alice", limit=100001), "bad_request", "limit")
        self.refused(self.c.call("history", contributor="alice", since=5, until=4), "bad_request", "until")
        self.refused(self.c.call("rewards", pool=5, since=5, until=4), "bad_request", "until")
        self.refused(self.c.call("rewards", pool=-1), "bad_request", "pool")
        self.refused(self.c.call("rewards", pool=1.5), "bad_request", "pool")
        self.refused(self.c.call("history", contributor=""), "bad_request", "contributor")
        self.refused(self.c.call("rewards", pool=1, model=7), "bad_request", "model")
        self.refused(self.c.call_bytes(pack({"op": 3})), "bad_request", "op")
        self.refused(self.c.call_bytes(pack([1, 2])), "bad_request")
        self.refused(self.c.call_bytes(b""), "bad_request")
        good = pack({"op": "info", "id": 1})
        for cut in range(1, len(good)):
            self.refused(self.c.call_bytes(good[:cut]), "bad_request")
        self.refused(self.c.call_bytes(good + b"\x00"), "bad_request")
        n = (1 << 24) + 1
        frame = b"\x82" + pack("op") + pack("info") + pack("x") + b"\xdd" + struct.pack(">I", n) + b"\xc0" * n
        self.refused(self.c.call_bytes(frame), "too_large")


class Busy(unittest.TestCase):
    def test_a_full_queue_is_busy_and_appends_nothing(self):
        gen = Synthetic(salt=b"busy")
        l = Ledger(args=["--queue", "1", "--group", "1"])
        try:
            envs = [gen.next() for _ in range(300)]
            reqs = [pack({"op": "append", "id": i, "entry": e}) for i, e in enumerate(envs)]
            reps = [msgpack.unpackb(p, raw=False) for p in pipelined(l.endpoint, reqs, window=64)]
            ok = [i for i, r in enumerate(reps) if r["ok"]]
            for r in reps:
                if not r["ok"]:
                    bad(r, "busy", "retry")
            self.assertGreater(len(ok), 0)
            self.assertLess(len(ok), len(envs))
            c = Client(l.endpoint)
            entries = all_entries(l.endpoint, c.call("info")["size"])
            # exactly the accepted appends are in the log, at the indexes they were given
            self.assertEqual(sorted(entries), sorted(canon(envs[i]) for i in ok))
            for i in ok:
                self.assertEqual(entries[reps[i]["index"]], canon(envs[i]))
            # and a refused one goes in when sent again
            i = next(i for i, r in enumerate(reps) if not r["ok"])
            rep = c.call("append", entry=envs[i])
            self.assertTrue(rep["ok"], rep)
            self.assertFalse(rep["duplicate"])
            c.close()
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()


class Order(unittest.TestCase):
    def test_one_pipelined_client_keeps_its_order(self):
        """Several checker threads verify at once, yet the log keeps the order in which the
        ledger took the appends: a pipelined client's entries get increasing indexes, refused
        appends in between included."""
        gen = Synthetic(salt=b"order")
        l = Ledger(args=["--checkers", "4"])
        try:
            envs = []
            for i in range(400):
                e = gen.next()
                if i % 7 == 3:  # a forged signature: refused, in the middle of the stream
                    e = [e[0], e[1], e[2], bytes(64)]
                envs.append(e)
            reqs = [pack({"op": "append", "id": i, "entry": e}) for i, e in enumerate(envs)]
            reps = [msgpack.unpackb(p, raw=False) for p in pipelined(l.endpoint, reqs, window=64)]
            indexes = []
            for i, r in enumerate(reps):
                if i % 7 == 3:
                    bad(r, "unauthorized", "signature")
                else:
                    self.assertTrue(r["ok"], r)
                    indexes.append(r["index"])
            self.assertEqual(indexes, list(range(len(indexes))))
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()


def bad_input_frames(signer, receipt):
    """Frames the ledger must refuse, each with bad_request, unauthorized, too_large or
    unknown_op."""
    tag, body, key, sig = receipt
    frames = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
              b"\xdb\xff\xff\xff\xff", b"\x91" * 40 + b"\xc0", b"\x81\xa2op\xa4info\xc0",
              pack({"op": "info"}) + b"\x01", pack({"op": "inclusion", "index": 9, "size": 2}),
              pack({"op": "history", "contributor": "a" * 5000}),
              b"\x82" + pack("op") + pack("history") + pack("contributor") + b"\xa2\xff\xfe",
              append_frame(b"\x94\xb2" + TAG.encode() + b"\xc6\xff\xff\xff\xff", 1),
              append_frame(b"\xdd\x00\x00\x00\x04\xc0\xc0\xc0\xc0", 2),
              append_frame(loose([tag, body, key, sig])[:-10], 3)]
    for b in [b"\xdf\xff\xff\xff\xff", b"\x91" * 40 + b"\xc0", b"\x81\xa1v\x01",
              pack({"v": 1, "type": "contribution"}), pack({"v": 1, "type": 7}), body[:-1],
              pack(dict(msgpack.unpackb(body, raw=False), queries=[[1] * 100]))]:
        frames.append(pack({"op": "append", "entry": signer.sign(b)}))
    deep = [0.5]
    for _ in range(30):
        deep = [deep]
    for b in [proof_body(signer.pk, [query(0, [("s", "a", 0.5, 0.5)], [("a", 0.5, 0.5)])] * 3 + [deep]),
              proof_body(signer.pk, [query(0, [("s", "a", float("nan"), 0.5)], [])]),
              proof_body(signer.pk, [{"id": -1}])]:
        frames.append(pack({"op": "append", "entry": signer.sign(b)}))
    frames.append(pack({"op": "append", "entry": [tag, body, key, bytes(64)]}))
    frames.append(pack({"op": "append", "entry": [tag, body, key[:31], sig]}))
    return frames


class Sanitized(unittest.TestCase):
    """The bad-input suite against the ASan+UBSan ledger: errors only, it keeps serving,
    memory stays bounded, and it exits 0 (ASan exits non-zero on a leak or an error)."""

    def test_bad_input_under_asan(self):
        exe = "sediment-ledger-asan"
        if not os.path.exists(os.path.join(BIN, exe)):
            self.fail("%s not built" % exe)
        l = Ledger(exe=exe, env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"})
        c = Watched(l)
        try:
            s = Signer()
            gen = Synthetic(s, salt=b"asan")
            receipt = gen.next()
            self.assertTrue(c.call("append", entry=receipt)["ok"])
            frames = bad_input_frames(s, receipt)
            before = c.state()
            rss0 = None
            for rnd in range(30):
                for f in frames:
                    for cut in (len(f), max(1, len(f) // 2)):
                        rep = c.call_bytes(f[:cut])
                        self.assertFalse(rep["ok"], (f[:cut], rep))
                        self.assertIn(rep["error"]["code"],
                                      ("bad_request", "too_large", "unknown_op", "unauthorized"))
                if rnd == 5:
                    rss0 = l.rss_kib()
            rss1 = l.rss_kib()
            self.assertLess(rss1 - rss0, 32 * 1024, (rss0, rss1))
            self.assertEqual(c.state(), before)
            # still serving: appends, reads, proofs
            for _ in range(5):
                rep = c.call("append", entry=gen.next())
                self.assertTrue(rep["ok"], rep)
            self.assertTrue(c.call("inclusion", index=0, size=rep["size"])["ok"])
            self.assertTrue(c.call("history", contributor="alice")["ok"])
            proof = proof_body(s.pk, [query(0, [("s0", "alice", 0.5, 0.5)], [("alice", 0.5, 0.5)])],
                               issued_at=T0)
            self.assertTrue(c.call("append", entry=s.sign(proof))["ok"])
            rep = c.call("rewards", pool=10)
            self.assertEqual((rep["allocations"], rep["unallocated"]), ([["alice", 10]], 0), rep)
            # a window without any proof (nothing to sum) is answered too
            rep = c.call("rewards", pool=10, until=T0)
            self.assertEqual((rep["allocations"], rep["unallocated"]), ([], 10), rep)
            self.assertEqual(l.stop(), 0)
        finally:
            c.close()
            if l.proc is not None and not l.alive():
                l.proc.stdout.close()  # it died: nothing left to stop
                l.proc = None
            l.close()


# ---- 4. history and rewards -----------------------------------------------------------------

class HistoryRewards(unittest.TestCase):
    """A known log: receipts and proofs with chosen times, models, scores and shares (binary
    fractions, so that every sum is exact)."""

    @classmethod
    def setUpClass(cls):
        cls.l = Ledger()
        cls.c = Client(cls.l.endpoint)
        s = Signer()
        pk = s.pk
        bodies = [
            receipt_body(pk, 0, model="m1", contributor="alice", shard="a-1", issued_at=T0 + 1000),
            receipt_body(pk, 1, model="m1", contributor="bob", shard="b-1", issued_at=T0 + 1000),
            receipt_body(pk, 2, model="m2", contributor="alice", shard="a-2", issued_at=T0 + 2000),
            receipt_body(pk, 3, model="m1", curvature=True, issued_at=T0 + 2500),
            proof_body(pk, [
                query("q0", [("a-1", "alice", 0.5, 0.25), ("a-2", "alice", 0.25, 0.25),
                             ("b-1", "bob", 1.0, 0.5), ("c-1", "carol", -2.0, 0.0)],
                       [("alice", 0.75, 0.5), ("bob", 1.0, 0.5), ("carol", -2.0, 0.0)]),
                query(1, [("a-1", "alice", 0.125, 0.5), ("a-2", "alice", 0.0, 0.0),
                          ("b-1", "bob", 0.5, 0.5), ("c-1", "carol", -1.0, 0.0)],
                      [("alice", 0.125, 0.5), ("bob", 0.5, 0.5), ("carol", -1.0, 0.0)])],
                model="m1", issued_at=T0 + 3000),
            proof_body(pk, [query(0, [("a-2", "alice", 0.5, 0.75), ("d-1", "dave", 0.25, 0.25)],
                                  [("alice", 0.5, 0.75), ("dave", 0.25, 0.25)])],
                       model="m2", issued_at=T0 + 4000),
            proof_body(pk, [query(0, [("c-1", "carol", 0.5, 1.0)], [("carol", 0.5, 1.0)])],
                       model="m1", issued_at=T0 + 5000),
            proof_body(pk, [query(0, [("a-1", "alice", -0.5, 0.0)], [("alice", -0.5, 0.0)])],
                       model="m1", issued_at=T0 + 6000),
            proof_body(pk, [query(0, [("e-1", "erin", 0.0, 0.0)], [("erin", 0.0, 0.0)])],
                       model="m1", issued_at=T0 + 7000),
            # appended late, issued with the first: history orders by (issued_at, index)
            receipt_body(pk, 9, model="m1", contributor="alice", shard="a-3", issued_at=T0 + 1000),
            # 1500 shards of one contributor, who gets no credit: a history longer than a page
            proof_body(pk, [query(0, [("x%d" % i, "many", 0.5, 0.0) for i in range(1500)], [])],
                       model="m1", issued_at=T0 + 8000),
        ]
        for i, b in enumerate(bodies):
            rep = cls.c.call("append", entry=s.sign(b))
            assert rep["ok"] and rep["index"] == i, rep

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.l.stop() == 0
        cls.l.close()

    def history(self, contributor, **kw):
        rep = self.c.call("history", contributor=contributor, **kw)
        self.assertTrue(rep["ok"], rep)
        return [(e["index"], e["issued_at"] - T0, e["type"], e["model"], e["shard"], e["score"],
                 e["share"]) for e in rep["entries"]]

    ALICE = [
        (0, 1000, "contribution", "m1", "a-1", None, None),
        (9, 1000, "contribution", "m1", "a-3", None, None),
        (2, 2000, "contribution", "m2", "a-2", None, None),
        (4, 3000, "attribution", "m1", "a-1", 0.625, 0.75),
        (4, 3000, "attribution", "m1", "a-2", 0.25, 0.25),
        (5, 4000, "attribution", "m2", "a-2", 0.5, 0.75),
        (7, 6000, "attribution", "m1", "a-1", -0.5, 0.0),
    ]

    def test_history(self):
        self.assertEqual(self.history("alice"), self.ALICE)
        self.assertEqual(self.history("bob"), [(1, 1000, "contribution", "m1", "b-1", None, None),
                                               (4, 3000, "attribution", "m1", "b-1", 1.5, 1.0)])
        self.assertEqual(self.history("carol"), [(4, 3000, "attribution", "m1", "c-1", -3.0, 0.0),
                                                 (6, 5000, "attribution", "m1", "c-1", 0.5, 1.0)])
        self.assertEqual(self.history("erin"), [(8, 7000, "attribution", "m1", "e-1", 0.0, 0.0)])
        self.assertEqual(self.history("nobody"), [])
        self.assertEqual(self.history("alic"), [])

    def test_history_limit(self):
        want = [(10, 8000, "attribution", "m1", "x%d" % i, 0.5, 0.0) for i in range(1500)]
        self.assertEqual(self.history("many"), want[:1000])  # the default limit
        self.assertEqual(self.history("many", limit=100000), want)
        self.assertEqual(self.history("many", limit=1499), want[:1499])

    def test_history_windows_and_paging(self):
        A = self.ALICE
        self.assertEqual(self.history("alice", since=T0 + 2000), A[2:])
        self.assertEqual(self.history("alice", since=T0 + 2001), A[3:])
        self.assertEqual(self.history("alice", until=T0 + 3000), A[:3])
        self.assertEqual(self.history("alice", until=T0 + 3001), A[:5])
        self.assertEqual(self.history("alice", since=T0 + 3000, until=T0 + 4001), A[3:6])
        self.assertEqual(self.history("alice", since=T0 + 3000, until=T0 + 3000), [])
        self.assertEqual(self.history("alice", since=T0 + 9000), [])
        self.assertEqual(self.history("alice", since=2 ** 64 - 1), [])
        self.assertEqual(self.history("alice", until=2 ** 64 - 1), A)
        self.assertEqual(self.history("alice", since=0, until=T0 + 1000), [])
        self.assertEqual(self.history("alice", limit=1), A[:1])
        self.assertEqual(self.history("alice", limit=4), A[:4])
        self.assertEqual(self.history("alice", limit=100000), A)
        # paging as docs/ledger.md says: since = the last row's issued_at, skip the rows seen
        seen = []
        while True:
            kw = {"since": T0 + seen[-1][1]} if seen else {}
            page = self.history("alice", limit=3, **kw)
            new = [r for r in page if r not in seen]
            if not new:
                break
            seen += new
        self.assertEqual(seen, A)

    def rewards(self, pool, **kw):
        rep = self.c.call("rewards", pool=pool, **kw)
        self.assertTrue(rep["ok"], rep)
        return rep["allocations"], rep["flagged"], rep["unallocated"]

    def test_rewards(self):
        # all time: alice 1.75, bob 1.0, dave 0.25 (of 3.0); carol's summed score is -2.5;
        # erin has no share. 100 * (7/12, 4/12, 1/12): every remainder is 1/3, the tie goes
        # to the name that sorts first
        self.assertEqual(self.rewards(100), ([["alice", 59], ["bob", 33], ["dave", 8]], ["carol"], 0))
        self.assertEqual(self.rewards(3), ([["alice", 2], ["bob", 1], ["dave", 0]], ["carol"], 0))
        self.assertEqual(self.rewards(0), ([["alice", 0], ["bob", 0], ["dave", 0]], ["carol"], 0))
        self.assertEqual(self.rewards(2 ** 64 - 1),
                         ([["alice", 10760600709663905109], ["bob", 6148914691236517205],
                           ["dave", 1537228672809129301]], ["carol"], 0))
        # model filter
        self.assertEqual(self.rewards(10, model="m1"), ([["alice", 5], ["bob", 5]], ["carol"], 0))
        self.assertEqual(self.rewards(7, model="m2"), ([["alice", 5], ["dave", 2]], [], 0))
        self.assertEqual(self.rewards(7, model="m3"), ([], [], 7))
        # windows
        self.assertEqual(self.rewards(3, since=T0 + 4000, until=T0 + 5000),
                         ([["alice", 2], ["dave", 1]], [], 0))
        self.assertEqual(self.rewards(9, since=T0 + 5000, until=T0 + 6000), ([["carol", 9]], [], 0))
        # only a flagged contributor and a zero share: nothing allocated
        self.assertEqual(self.rewards(50, since=T0 + 6000), ([], ["alice"], 50))
        self.assertEqual(self.rewards(50, since=T0 + 7000), ([], [], 50))
        # receipts only
        self.assertEqual(self.rewards(11, until=T0 + 3000), ([], [], 11))
        self.assertEqual(self.rewards(11, since=T0, until=T0), ([], [], 11))


def expected_rewards(proofs, pool, since=None, until=None, model=None, ties=None):
    """docs/ledger.md's rewards, in Python: per proof each contributor's share and score summed
    over its queries (in body order), then over proofs in log order (the same float
    additions the ledger does), then largest remainder in exact fractions."""
    score, share = {}, {}
    for p in proofs:
        t = p["issued_at"]
        if (since is not None and t < since) or (until is not None and t >= until):
            continue
        if model is not None and p["model"] != model:
            continue
        ps, pw = {}, {}
        for q in p["queries"]:
            for name, sc, sh in q["contributors"]:
                if name in ps:
                    ps[name] += sc
                    pw[name] += sh
                else:
                    ps[name], pw[name] = sc, sh
        for name in ps:
            score[name] = score.get(name, 0.0) + ps[name]
            share[name] = share.get(name, 0.0) + pw[name]
    flagged = sorted(n for n in score if score[n] < 0)
    eligible = sorted(n for n in score if score[n] >= 0 and share[n] > 0)
    if not eligible:
        return [], flagged, pool
    total = sum(Fraction(share[n]) for n in eligible)
    quota = {n: pool * Fraction(share[n]) / total for n in eligible}
    amount = {n: int(quota[n]) for n in eligible}  # floor: quotas are non-negative
    left = pool - sum(amount.values())
    order = sorted(eligible, key=lambda n: (-(quota[n] - amount[n]), n))
    for n in order[:left]:
        amount[n] += 1
    if ties is not None and 0 < left < len(order):
        a, b = order[left - 1], order[left]
        if quota[a] - int(quota[a]) == quota[b] - int(quota[b]):
            ties.append((a, b))  # the name decided who got the last unit
    return [[n, amount[n]] for n in eligible], flagged, 0


class RewardsProperty(unittest.TestCase):
    """Random proofs and random pools: the allocations always sum to the pool and equal a
    pure-Python largest-remainder split of the same sums."""

    def test_random(self):
        rng = random.Random(20240607)
        names = ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "Zed", "ann2"]
        s = Signer()
        l = Ledger()
        try:
            c = Client(l.endpoint)
            proofs = []
            reqs = []
            for i in range(200):
                model = rng.choice(["m0", "m1", "m2", "tie"])
                queries = []
                for qi in range(rng.randint(1, 3)):
                    who = rng.sample(names, rng.randint(0, 5))
                    rows = []
                    for n in who:
                        if model == "tie":  # binary fractions: equal remainders are common
                            sc = rng.choice([0.0, 0.5, 1.0, -0.25])
                            sh = rng.choice([0.0, 0.125, 0.25, 0.5, 1.0])
                        else:
                            sc = rng.choice([rng.gauss(0.2, 1.0), 0.0, 0.5, -0.25, 1e-300])
                            sh = rng.choice([rng.random(), 0.0, 1.0, 1 / 3, 0.25, 0.1, 5e-324])
                        rows.append((n, sc, sh))
                    queries.append(query(qi, [("sh-" + n, n, sc, sh) for n, sc, sh in rows], rows))
                body = proof_body(s.pk, queries, model=model, issued_at=rng.randrange(10 ** 6))
                proofs.append(body)
                reqs.append(pack({"op": "append", "id": i, "entry": s.sign(body)}))
            for payload in pipelined(l.endpoint, reqs, window=16):
                rep = msgpack.unpackb(payload, raw=False)
                self.assertTrue(rep["ok"], rep)
            self.assertEqual(c.call("info")["size"], len(proofs))
            pools = [0, 1, 2, 3, 7, 10, 99, 100, 1000, 10 ** 6, 2 ** 32 + 1, 2 ** 53 + 1, 2 ** 63, 2 ** 64 - 1]
            nonempty, ties = 0, []
            for trial in range(300):
                pool = rng.choice(pools) if trial % 2 else rng.randrange(2 ** rng.randint(1, 64))
                kw = {}
                if rng.random() < 0.5:
                    kw["since"] = rng.randrange(10 ** 6)
                if rng.random() < 0.5:
                    kw["until"] = rng.randrange(kw.get("since", 0), 10 ** 6 + 1)
                if trial < 100:
                    kw["model"] = "tie"
                elif rng.random() < 0.4:
                    kw["model"] = rng.choice(["m0", "m1", "m2", "m9", "tie"])
                rep = c.call("rewards", pool=pool, **kw)
                self.assertTrue(rep["ok"], rep)
                got = (rep["allocations"], rep["flagged"], rep["unallocated"])
                want = expected_rewards(proofs, pool, ties=ties, **kw)
                self.assertEqual(got, want, (pool, kw))
                self.assertEqual(sum(a for _, a in rep["allocations"]) + rep["unallocated"], pool)
                nonempty += bool(rep["allocations"])
            self.assertGreater(nonempty, 100)
            self.assertGreater(len(ties), 5)  # the tie rule decided some splits
            c.close()
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()


# ---- 5, 7. floods: kill -9 and SIGTERM ------------------------------------------------------

class Flooder(threading.Thread):
    """One DEALER keeping `window` appends of distinct receipts in flight until told to stop;
    records every acknowledged (index, canonical envelope) and every checkpoint handed out."""

    def __init__(self, endpoint, gen, window=16, drain_s=0.5):
        super().__init__(daemon=True)
        self.endpoint, self.gen, self.window, self.drain_s = endpoint, gen, window, drain_s
        self.stop = threading.Event()
        self.acked = []        # (index, envelope bytes)
        self.checkpoints = []  # notes
        self.sent = []         # every envelope sent (canonical bytes)
        self.errors = []       # replies that were not ok

    def run(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        pending = {}
        rid = 0
        try:
            while not self.stop.is_set():
                while len(pending) < self.window:
                    env = self.gen.next()
                    rid += 1
                    pending[rid] = canon(env)
                    self.sent.append(pending[rid])
                    sock.send_multipart([b"", pack({"op": "append", "id": rid, "entry": env})])
                if sock.poll(50):
                    self.take(sock, pending)
            # what was already answered before the stop still counts
            end = time.monotonic() + self.drain_s
            while pending and time.monotonic() < end:
                if sock.poll(50):
                    self.take(sock, pending)
        finally:
            sock.close(0)

    def take(self, sock, pending):
        rep = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
        env = pending.pop(rep["id"])
        if not rep["ok"]:
            self.errors.append(rep)
            return
        self.acked.append((rep["index"], env, rep["duplicate"], rep["size"]))
        self.checkpoints.append(rep["checkpoint"])


def check_log(test, endpoint, origin, key, acked, checkpoints, sent):
    """After a restart: every acknowledged entry is at its index byte for byte, nothing in the
    log was never sent, and the log is consistent with every checkpoint handed out."""
    c = Client(endpoint)
    try:
        final_note = c.call("checkpoint")["checkpoint"]
        size, final_root = open_checkpoint(final_note, origin, key)
        test.assertEqual(c.call("info")["size"], size)
        entries = all_entries(endpoint, size)
        for index, env in acked:
            test.assertLess(index, size)
            test.assertEqual(entries[index], env, index)
        test.assertEqual(len(set(entries)), size)  # each envelope once
        test.assertTrue(set(entries) <= sent)
        leaves = [leaf_hash(e) for e in entries]
        opened = {}
        for note in set(checkpoints):
            n, root = open_checkpoint(note, origin, key)
            test.assertLessEqual(n, size)
            opened.setdefault(n, set()).add(root)
        roots = roots_at(leaves, list(opened) + [size])
        test.assertEqual(roots[size], final_root)
        reqs = [pack({"op": "consistency", "id": i, "from": n, "to": size})
                for i, n in enumerate(sorted(opened))]
        for n, payload in zip(sorted(opened), pipelined(endpoint, reqs)):
            test.assertEqual(opened[n], {roots[n]}, n)  # one root per size, the log's
            rep = msgpack.unpackb(payload, raw=False)
            test.assertTrue(rep["ok"], rep)
            test.assertTrue(verify_consistency(n, size, rep["hashes"], roots[n], final_root), n)
        return size, len(opened)
    finally:
        c.close()


class CrashRecovery(unittest.TestCase):
    """kill -9 during floods of appends from several clients, several rounds on one data dir."""

    def test_kill9_during_floods(self):
        seed = int(time.time())
        rng = random.Random(seed)
        gen = Synthetic(salt=b"crash")
        l = Ledger()
        try:
            c = Client(l.endpoint)
            origin, key = ledger_identity(c)
            c.close()
            acked, checkpoints, sent = [], [], set()
            unanswered = []
            for rnd in range(6):
                clients = [Flooder(l.endpoint, gen) for _ in range(3)]
                for f in clients:
                    f.start()
                time.sleep(rng.uniform(0.15, 0.6))
                l.kill9()
                for f in clients:
                    f.stop.set()
                for f in clients:
                    f.join(30)
                    self.assertFalse(f.is_alive())
                    self.assertEqual(f.errors, [], (seed, rnd))
                    acked += [(i, e) for i, e, dup, _ in f.acked]
                    self.assertFalse(any(dup for _, _, dup, _ in f.acked))
                    checkpoints += f.checkpoints
                    sent.update(f.sent)
                unanswered.append(sum(len(f.sent) - len(f.acked) for f in clients))
                l.start()
                c = Client(l.endpoint)
                size = c.call("info")["size"]
                c.close()
                # every acknowledged append survived this kill
                self.assertGreaterEqual(size, max([i for i, _ in acked], default=-1) + 1, (seed, rnd))
            # the kills fell in the middle of floods
            self.assertTrue(all(u > 0 for u in unanswered), unanswered)
            size, n_checkpoints = check_log(self, l.endpoint, origin, key, acked, checkpoints, sent)
            self.assertGreater(len(acked), 200, seed)
            self.assertGreater(n_checkpoints, 10, seed)
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()


class Shutdown(unittest.TestCase):
    def test_sigterm_during_flood(self):
        gen = Synthetic(salt=b"term")
        l = Ledger()
        try:
            c = Client(l.endpoint)
            origin, key = ledger_identity(c)
            c.close()
            clients = [Flooder(l.endpoint, gen, drain_s=3.0) for _ in range(3)]
            for f in clients:
                f.start()
            time.sleep(0.5)
            self.assertEqual(l.stop(signal.SIGTERM), 0)
            for f in clients:
                f.stop.set()
            acked, checkpoints, sent = [], [], set()
            for f in clients:
                f.join(30)
                # appends taken before the signal are answered; later ones are refused as busy
                for rep in f.errors:
                    bad(rep, "busy", "shutting down")
                acked += [(i, e) for i, e, _, _ in f.acked]
                checkpoints += f.checkpoints
                sent.update(f.sent)
            self.assertGreater(len(acked), 20)
            l.start()
            check_log(self, l.endpoint, origin, key, acked, checkpoints, sent)
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()


# ---- 6. restart safety ----------------------------------------------------------------------

class RestartSafety(unittest.TestCase):
    """The ledger refuses to start on a log that no longer contains what it signed."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sdm-restart-")
        cls.data = os.path.join(cls.tmp.name, "data")
        l = Ledger(data=cls.data, args=["--origin", "example.org/restart"])
        c = Client(l.endpoint)
        gen = Synthetic(salt=b"restart")
        s = gen.signer
        for i in range(12):
            assert c.call("append", entry=gen.next())["ok"]
        proof = proof_body(s.pk, [query(0, [("s0", "alice", 0.5, 0.5)], [("alice", 0.5, 0.5)])])
        assert c.call("append", entry=s.sign(proof))["ok"]
        cls.size, cls.note = c.state()
        c.close()
        assert l.stop() == 0

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def copy(self):
        d = tempfile.mkdtemp(dir=self.tmp.name)
        dst = os.path.join(d, "data")
        shutil.copytree(self.data, dst)
        return dst

    def edit(self, data, *statements):
        db = sqlite3.connect(os.path.join(data, "ledger.db"))
        try:
            for sql, args in statements:
                db.execute(sql, args)
            db.commit()
        finally:
            db.close()

    def envelope(self, data, idx):
        db = sqlite3.connect(os.path.join(data, "ledger.db"))
        try:
            return db.execute("SELECT envelope FROM entries WHERE idx = ?", (idx,)).fetchone()[0]
        finally:
            db.close()

    def test_untouched_copy_starts(self):
        d = self.copy()
        l = Ledger(data=d)
        try:
            c = Client(l.endpoint)
            self.assertEqual(c.state(), (self.size, self.note))
            self.assertEqual(c.call("info")["origin"], "example.org/restart")
            c.close()
            self.assertEqual(l.stop(), 0)
        finally:
            l.close()
        # and so does the same origin given again
        l = Ledger(data=d, args=["--origin", "example.org/restart"])
        self.assertEqual(l.stop(), 0)
        l.close()

    def test_tampered_envelope(self):
        d = self.copy()
        env = bytearray(self.envelope(d, 7))
        env[-5] ^= 0x01  # one byte of the signature
        self.edit(d, ("UPDATE entries SET envelope = ? WHERE idx = ?", (bytes(env), 7)))
        rc, err = start_refused(d)
        self.assertIsNotNone(rc, "the ledger started on a tampered log")
        self.assertNotEqual(rc, 0)
        self.assertIn("entry 7", err)

    def test_tampered_envelope_and_leaf(self):
        # the stored leaf rewritten to match: the rebuilt tree no longer holds the checkpoint
        d = self.copy()
        env = bytearray(self.envelope(d, 3))
        env[-5] ^= 0x01
        self.edit(d, ("UPDATE entries SET envelope = ?, leaf = ? WHERE idx = ?",
                      (bytes(env), leaf_hash(bytes(env)), 3)))
        rc, err = start_refused(d)
        self.assertIsNotNone(rc, "the ledger started on a tampered log")
        self.assertNotEqual(rc, 0)
        self.assertIn("checkpoint", err)

    def test_last_entry_deleted(self):
        d = self.copy()
        last = self.size - 1
        self.edit(d, ("DELETE FROM touches WHERE idx = ?", (last,)),
                  ("DELETE FROM credits WHERE idx = ?", (last,)),
                  ("DELETE FROM entries WHERE idx = ?", (last,)))
        rc, err = start_refused(d)
        self.assertIsNotNone(rc, "the ledger started without its last entry")
        self.assertNotEqual(rc, 0)
        self.assertIn("checkpoint", err)
        self.assertIn(str(self.size), err)

    def test_middle_entry_deleted(self):
        d = self.copy()
        self.edit(d, ("DELETE FROM touches WHERE idx = 5", ()), ("DELETE FROM entries WHERE idx = 5", ()))
        rc, err = start_refused(d)
        self.assertIsNotNone(rc, "the ledger started with a hole in its log")
        self.assertNotEqual(rc, 0)
        self.assertIn("entry 5", err)

    def test_other_origin(self):
        d = self.copy()
        rc, err = start_refused(d, ["--origin", "example.org/elsewhere"])
        self.assertIsNotNone(rc, "the ledger started under another origin")
        self.assertNotEqual(rc, 0)
        self.assertIn("--origin", err)
        self.assertIn("example.org/restart", err)


# ---- 8. Go's sumdb/note and sumdb/tlog ------------------------------------------------------

GOPATH = os.environ.get("SDM_GOPATH", "/usr/share/gocode")
GO = shutil.which(os.environ.get("SDM_GO", "go"))
HAVE_GO = GO is not None and os.path.isdir(os.path.join(GOPATH, "src/golang.org/x/mod/sumdb/tlog"))


@unittest.skipUnless(HAVE_GO, "Go or golang.org/x/mod/sumdb/tlog (golang-golang-x-mod-dev) is not "
                              "installed: the live ledger's proofs are not checked with Go's tlog")
class GoTlog(unittest.TestCase):
    def test_tlogcheck_verifies_the_live_ledger(self):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "go", "tlogcheck")
        with tempfile.TemporaryDirectory(prefix="sdm-tlog-") as work:
            exe = os.path.join(work, "tlogcheck")
            env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH,
                       GOCACHE=os.path.join(work, "gocache"), GOFLAGS="")
            build = subprocess.run([GO, "build", "-o", exe, "."], cwd=src, env=env,
                                   capture_output=True, timeout=300)
            self.assertEqual(build.returncode, 0, build.stderr.decode())

            l = Ledger(args=["--origin", "example.org/go"])
            try:
                c = Client(l.endpoint)
                origin, key = ledger_identity(c)
                gen = Synthetic(salt=b"go")
                envs, notes = [], {}
                for i in range(26):
                    env = gen.next()
                    rep = c.call("append", entry=env)
                    self.assertTrue(rep["ok"], rep)
                    envs.append(canon(env))
                    notes[rep["size"]] = rep["checkpoint"]
                sizes = [1, 2, 3, 4, 7, 8, 13, 16, 21, 26]
                kid = key_id(origin, key)
                doc = {"vkey": "%s+%s+%s" % (origin, kid.hex(),
                                             base64.b64encode(b"\x01" + key).decode()),
                       "checkpoints": [notes[n] for n in sizes], "inclusion": [],
                       "consistency": [], "bad_inclusion": [], "bad_consistency": [],
                       "bad_checkpoints": []}
                for ci, n in enumerate(sizes):
                    for index in range(n):
                        rep = c.call("inclusion", index=index, size=n)
                        self.assertTrue(rep["ok"], rep)
                        doc["inclusion"].append({"checkpoint": ci, "index": index,
                                                 "leaf": envs[index].hex(),
                                                 "hashes": [h.hex() for h in rep["hashes"]]})
                        if index == n // 2:
                            doc["bad_inclusion"].append({"checkpoint": ci, "index": index,
                                                         "leaf": envs[(index + 1) % 26].hex(),
                                                         "hashes": [h.hex() for h in rep["hashes"]]})
                for fi, a in enumerate(sizes):
                    for ti, b in enumerate(sizes[fi:], fi):
                        rep = c.call("consistency", **{"from": a, "to": b})
                        self.assertTrue(rep["ok"], rep)
                        hashes = [h.hex() for h in rep["hashes"]]
                        doc["consistency"].append({"from": fi, "to": ti, "hashes": hashes})
                        if a < b and hashes:
                            flipped = [("0" if hashes[0][0] != "0" else "1") + hashes[0][1:]] + hashes[1:]
                            doc["bad_consistency"].append({"from": fi, "to": ti, "hashes": flipped})
                n = sizes[-1]
                doc["bad_checkpoints"].append(notes[n].replace("\n%d\n" % n, "\n%d\n" % (n + 1), 1))
                c.close()
                self.assertEqual(l.stop(), 0)
            finally:
                l.close()
            path = os.path.join(work, "tlog.json")
            with open(path, "w") as f:
                json.dump(doc, f)
            run = subprocess.run([exe, "-v", path], capture_output=True, timeout=120)
            self.assertEqual(run.returncode, 0, run.stdout.decode() + run.stderr.decode())
            got = json.loads(run.stdout)
            bad_total = len(doc["bad_inclusion"]) + len(doc["bad_consistency"]) + len(doc["bad_checkpoints"])
            self.assertEqual(got, {"checkpoints_ok": len(sizes), "inclusion_ok": len(doc["inclusion"]),
                                   "consistency_ok": len(doc["consistency"]),
                                   "bad_rejected": bad_total, "failures": []})


if __name__ == "__main__":
    unittest.main(verbosity=2)
