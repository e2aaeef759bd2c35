#!/usr/bin/env python3
"""test_formats.py - the byte formats of SPEC §4-§5, checked by a second implementation.

`test_sign DATA --emit DIR` (the C suite, from $SDM_BIN) writes a key file, signed envelopes,
leaf data and Merkle roots and proofs into DIR. Everything here is recomputed with Python's
hashlib and struct, msgpack and PyNaCl only, and must agree byte for byte.
"""
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import unittest

import msgpack
import nacl.exceptions
import nacl.signing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TAG = b"sediment-signed-v1"

RECEIPT_KEYS = ["v", "type", "worker", "issued_at", "model", "checkpoint", "lr", "contributor",
                "shard", "n", "batch", "leaf", "store_size", "store_root", "ids_digest",
                "data_digest", "weights_digest", "curvature"]
PROOF_KEYS = ["v", "type", "worker", "issued_at", "model", "projection", "method", "lambda",
              "aggregate", "checkpoints", "store_size", "store_root", "query_digest",
              "request_id", "queries"]
QUERY_KEYS = ["id", "shards", "contributors", "top", "bottom"]


# ---- RFC 9162 §2.1, written from the RFC ------------------------------------------------------

def sha256(b):
    return hashlib.sha256(b).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split(n):
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def mth(hashes):
    """MTH over leaf hashes."""
    if not hashes:
        return sha256(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = split(len(hashes))
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def path(m, hashes):
    if len(hashes) <= 1:
        return []
    k = split(len(hashes))
    if m < k:
        return path(m, hashes[:k]) + [mth(hashes[k:])]
    return path(m - k, hashes[k:]) + [mth(hashes[:k])]


def subproof(m, hashes, whole):
    n = len(hashes)
    if m == n:
        return [] if whole else [mth(hashes)]
    k = split(n)
    if m <= k:
        return subproof(m, hashes[:k], whole) + [mth(hashes[k:])]
    return subproof(m - k, hashes[k:], False) + [mth(hashes[:k])]


def consistency(m, hashes):
    if m == 0 or m == len(hashes):
        return []
    return subproof(m, hashes, True)


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2, with the empty proofs for first == 0 and first == second."""
    if first > second:
        return False
    if first == 0:
        return not proof and first_root == sha256(b"")
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# ---- the formats ------------------------------------------------------------------------------

def leaf_data(leaf):
    """SPEC §5 leaf data from the index's fields, as Python's msgpack packs it."""
    return msgpack.packb([leaf["model"], leaf["checkpoint"], float(leaf["lr"]),
                          leaf["contributor"], leaf["shard"], leaf["n"],
                          bytes.fromhex(leaf["ids_digest"]), bytes.fromhex(leaf["data_digest"]),
                          bytes.fromhex(leaf["weights_digest"]), leaf["curvature"]],
                         use_bin_type=True)


def open_envelope(raw):
    """Returns (body bytes, key); raises on anything that is not a valid envelope."""
    env = msgpack.unpackb(raw, raw=False)  # raises ExtraData on trailing bytes
    assert isinstance(env, list) and len(env) == 4, "envelope is an array of 4"
    tag, body, key, sig = env
    assert tag == TAG.decode(), "envelope tag"
    assert isinstance(body, bytes) and isinstance(key, bytes) and isinstance(sig, bytes)
    assert len(key) == 32 and len(sig) == 64
    nacl.signing.VerifyKey(key).verify(TAG + b"\n" + body, sig)
    return body, key


class Formats(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bin_dir = os.environ.get("SDM_BIN", os.path.join(REPO, "build", "bin"))
        exe = os.path.join(bin_dir, "test_sign")
        if not os.access(exe, os.X_OK):
            raise RuntimeError(f"{exe} not found: build test_sign and set SDM_BIN")
        data = os.environ.get("SDM_TESTDATA", os.path.join(REPO, "tests", "data"))
        cls.dir = tempfile.mkdtemp(prefix="sdm_formats_")
        subprocess.run([exe, data, "--emit", cls.dir], check=True, timeout=60)
        with open(os.path.join(cls.dir, "index.json"), encoding="utf-8") as f:
            cls.index = json.load(f)
        cls.public_key = bytes.fromhex(cls.index["public_key"])
        cls.leaves = cls.index["leaves"]
        cls.leaf_hashes = [leaf_hash(leaf_data(leaf)) for leaf in cls.leaves]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def envelope(self, kind):
        for e in self.index["envelopes"]:
            if e["type"] == kind:
                return self.read(e["file"])
        self.fail(f"no {kind} envelope emitted")

    # -- keys

    def test_key_file(self):
        path = os.path.join(self.dir, self.index["key_file"])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        text = self.read(self.index["key_file"]).decode("ascii")
        self.assertRegex(text, r"^[0-9a-f]{128}\n$")
        sk = bytes.fromhex(text.strip())
        # libsodium's 64-byte secret key is seed || public key
        signer = nacl.signing.SigningKey(sk[:32])
        self.assertEqual(bytes(signer.verify_key), sk[32:])
        self.assertEqual(sk[32:], self.public_key)
        pub = self.read(self.index["key_file"][:-4] + ".pub").decode("ascii")
        self.assertEqual(pub, self.public_key.hex() + "\n")

    # -- envelopes

    def test_envelopes_verify_and_bodies_are_maps(self):
        for e in self.index["envelopes"]:
            raw = self.read(e["file"])
            body, key = open_envelope(raw)
            self.assertEqual(key, self.public_key)
            decoded = msgpack.unpackb(body, raw=False)
            self.assertIsInstance(decoded, dict)
            if e["type"] != "test":
                self.assertEqual(decoded["type"], e["type"])
                self.assertEqual(decoded["v"], 1)
                self.assertEqual(decoded["worker"], self.public_key)
            # shortest ints and lengths, float64 floats: Python packs it back to the same bytes
            self.assertEqual(msgpack.packb(decoded, use_bin_type=True), body, e["file"])
            # and the whole envelope is what Python would have packed
            env = msgpack.unpackb(raw, raw=False)
            self.assertEqual(msgpack.packb(env, use_bin_type=True), raw)

    def test_tampered_envelope_fails_here_too(self):
        raw = bytearray(self.envelope("contribution"))
        env = msgpack.unpackb(bytes(raw), raw=False)
        body = bytearray(env[1])
        body[-40] ^= 1  # inside ids_digest
        with self.assertRaises(nacl.exceptions.BadSignatureError):
            open_envelope(msgpack.packb([env[0], bytes(body), env[2], env[3]], use_bin_type=True))
        with self.assertRaises(msgpack.ExtraData):
            open_envelope(bytes(raw) + b"\xc0")

    def test_receipt(self):
        body, _ = open_envelope(self.envelope("contribution"))
        r = msgpack.unpackb(body, raw=False)
        self.assertEqual(list(r), RECEIPT_KEYS)
        want = self.index["receipt"]
        leaf = self.leaves[want["leaf"]]
        for k in ("model", "checkpoint", "contributor", "shard", "n", "curvature"):
            self.assertEqual(r[k], leaf[k], k)
        self.assertIsInstance(r["lr"], float)
        self.assertEqual(r["lr"], float(leaf["lr"]))
        for k in ("ids_digest", "data_digest", "weights_digest"):
            self.assertEqual(r[k], bytes.fromhex(leaf[k]), k)
        self.assertEqual(r["batch"], want["leaf"])
        self.assertEqual(r["leaf"], self.leaf_hashes[want["leaf"]])
        self.assertEqual(r["store_size"], want["store_size"])
        self.assertEqual(r["store_root"], mth(self.leaf_hashes[:want["store_size"]]))
        self.assertIsInstance(r["issued_at"], int)
        # the receipt's leaf is included in the tree it names
        p = path(r["batch"], self.leaf_hashes[:r["store_size"]])
        self.assertTrue(verify_inclusion(r["leaf"], r["batch"], r["store_size"], p,
                                         r["store_root"]))

    def test_proof(self):
        body, _ = open_envelope(self.envelope("attribution"))
        p = msgpack.unpackb(body, raw=False)
        self.assertEqual(list(p), PROOF_KEYS)
        proj = p["projection"]
        keys = ["kind", "dim", "seed", "input_dim"] + (["s"] if proj["kind"] == "sjlt" else [])
        self.assertEqual(list(proj), keys)
        self.assertIn(p["method"], ("dot", "cosine", "trak"))
        self.assertIn(p["aggregate"], ("sum", "mean"))
        self.assertIsInstance(p["checkpoints"], list)
        for c in p["checkpoints"]:
            self.assertEqual(list(c), ["id", "lr"])
            self.assertIsInstance(c["lr"], float)
        if p["method"] == "trak":
            self.assertEqual(len(p["lambda"]), len(p["checkpoints"]))
            self.assertTrue(all(isinstance(x, float) for x in p["lambda"]))
        else:
            self.assertEqual(p["lambda"], [])
        self.assertEqual(p["store_size"], self.index["proof"]["store_size"])
        self.assertEqual(p["store_root"], mth(self.leaf_hashes[:p["store_size"]]))
        self.assertEqual(len(p["query_digest"]), 32)
        self.assertIsInstance(p["request_id"], str)
        self.assertGreater(len(p["queries"]), 0)
        for q in p["queries"]:
            self.assertEqual(list(q), QUERY_KEYS)
            self.assertIsInstance(q["id"], (int, str))
            shard_names = set()
            for row in q["shards"]:
                self.assertEqual(len(row), 4)
                self.assertIsInstance(row[0], str)
                self.assertIsInstance(row[1], str)
                self.assertIsInstance(row[2], float)
                self.assertIsInstance(row[3], float)
                shard_names.add(row[0])
            for rows in (q["shards"], q["contributors"]):
                total = sum(row[-1] for row in rows)
                self.assertTrue(abs(total - 1) < 1e-12 or total == 0, total)
            for row in q["contributors"]:
                self.assertEqual(len(row), 3)
                self.assertIsInstance(row[0], str)
                self.assertIsInstance(row[1], float)
            for side in ("top", "bottom"):
                for row in q[side]:
                    self.assertEqual(len(row), 3)
                    self.assertIsInstance(row[0], int)
                    self.assertIn(row[1], shard_names)
                    self.assertIsInstance(row[2], float)
            scores = [row[2] for row in q["top"]]
            self.assertEqual(scores, sorted(scores, reverse=True))
            scores = [row[2] for row in q["bottom"]]
            self.assertEqual(scores, sorted(scores))

    # -- leaves and digests

    def test_leaf_data_is_byte_identical(self):
        self.assertGreaterEqual(len(self.leaves), 10)
        for leaf, want_hash in zip(self.leaves, self.leaf_hashes):
            got = self.read(leaf["file"])
            self.assertEqual(got, leaf_data(leaf), leaf["file"])
            self.assertEqual(bytes.fromhex(leaf["leaf_hash"]), want_hash, leaf["file"])
        # the set covers the forms that matter: str8/str16 names, uint32/uint64 n, curvature
        lens = {len(leaf["model"].encode()) for leaf in self.leaves}
        lens |= {len(leaf["checkpoint"].encode()) for leaf in self.leaves}
        self.assertTrue(any(32 <= n < 256 for n in lens) and any(n >= 256 for n in lens))
        self.assertTrue(any(leaf["n"] > 0xffff for leaf in self.leaves))
        self.assertTrue(any(leaf["n"] > 0xffffffff for leaf in self.leaves))
        self.assertTrue(any(leaf["curvature"] for leaf in self.leaves))
        self.assertTrue(any(not leaf["shard"].isascii() for leaf in self.leaves))

    def test_digests(self):
        d = self.index["digests"]
        ids = struct.pack("<%dQ" % len(d["ids"]), *d["ids"])
        self.assertEqual(bytes.fromhex(d["ids_digest"]), sha256(ids))
        weights = struct.pack("<%dd" % len(d["weights"]), *d["weights"])
        self.assertEqual(bytes.fromhex(d["weights_digest"]), sha256(weights))
        self.assertEqual(bytes.fromhex(d["no_weights_digest"]), sha256(b""))

    # -- Merkle trees

    def tree_leaves(self):
        t = self.index["tree"]
        fmt = t["leaf_data"]
        return [leaf_hash((fmt % i).encode()) for i in range(len(t["roots"]) - 1)]

    def test_roots(self):
        hashes = self.tree_leaves()
        roots = [bytes.fromhex(h) for h in self.index["tree"]["roots"]]
        for n, root in enumerate(roots):
            self.assertEqual(root, mth(hashes[:n]), f"root of size {n}")

    def test_inclusion_proofs(self):
        hashes = self.tree_leaves()
        cases = self.index["tree"]["inclusion"]
        self.assertGreater(len(cases), 20)
        for c in cases:
            i, n = c["index"], c["size"]
            proof = [bytes.fromhex(h) for h in c["path"]]
            root = mth(hashes[:n])
            self.assertEqual(proof, path(i, hashes[:n]), f"path {i} of {n}")
            self.assertTrue(verify_inclusion(hashes[i], i, n, proof, root), f"{i} of {n}")
            if proof:
                bad = list(proof)
                bad[-1] = bytes([bad[-1][0] ^ 1]) + bad[-1][1:]
                self.assertFalse(verify_inclusion(hashes[i], i, n, bad, root))
                self.assertFalse(verify_inclusion(hashes[i], i, n, proof[:-1], root))
            self.assertFalse(verify_inclusion(hashes[i], i, n, proof + [b"\0" * 32], root))

    def test_consistency_proofs(self):
        hashes = self.tree_leaves()
        cases = self.index["tree"]["consistency"]
        self.assertGreater(len(cases), 20)
        for c in cases:
            m, n = c["from"], c["to"]
            proof = [bytes.fromhex(h) for h in c["path"]]
            old, new = mth(hashes[:m]), mth(hashes[:n])
            self.assertEqual(proof, consistency(m, hashes[:n]), f"{m} -> {n}")
            self.assertTrue(verify_consistency(m, n, old, new, proof), f"{m} -> {n}")
            if proof:
                bad = list(proof)
                bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
                self.assertFalse(verify_consistency(m, n, old, new, bad))
                self.assertFalse(verify_consistency(m, n, old, new, proof[:-1]))
            if 0 < m < n:
                self.assertFalse(verify_consistency(m, n, new, new, proof))


if __name__ == "__main__":
    unittest.main()
