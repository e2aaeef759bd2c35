"""test_ledger_client.py - the Python LedgerClient and its checks of checkpoints and proofs.

TestOfflineProofs needs no server: signed checkpoints made here with PyNaCl, and RFC 9162
inclusion and consistency proofs generated here from the RFC's recursive definitions
(PATH, PROOF) for every size up to 17, verified by sediment_client and, tampered with in each
part, refused.

TestLiveLedger runs `$SDM_BIN/sediment-ledger` and a worker: real receipts and a proof go
into the C ledger through LedgerClient, and this module's own implementation checks the
ledger's checkpoints, inclusion and consistency proofs (and refuses tampered ones), agrees
with `sediment ledger-key` and `sediment audit`, and reads history and rewards.

TestTamperedLedger changes one byte of a stored envelope with sqlite3 while the ledger is
stopped: the ledger must then refuse to start, naming the leaf hash.
"""
import base64
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import unittest

import msgpack
import numpy as np
from nacl.signing import SigningKey

import sediment_client as sc
from ledgerproc import Ledger
from workerproc import BIN, Worker

EM_DASH = "\u2014"
ORIGIN = "test.example/py-ledger"


def have_binaries(*names):
    return all(os.access(os.path.join(BIN, n), os.X_OK) for n in names)


# ---- written from the specifications, independently of sediment_client ------------------------

def key_id(name, pk):
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + pk).digest()[:4]


def sign_note(sk, name, text):
    pk = bytes(sk.verify_key)
    sig = sk.sign(text.encode()).signature
    blob = base64.b64encode(key_id(name, pk) + sig).decode()
    return text + "\n" + EM_DASH + " " + name + " " + blob + "\n"


def checkpoint_text(origin, size, root):
    return "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())


def vkey_of(name, pk):
    return "%s+%s+%s" % (name, key_id(name, pk).hex(), base64.b64encode(b"\x01" + pk).decode())


def mth(hashes):
    """RFC 9162 MTH over leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path(m, hashes):
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(hashes)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return path(m, hashes[:k]) + [mth(hashes[k:])]
    return path(m - k, hashes[k:]) + [mth(hashes[:k])]


def subproof(m, hashes, b):
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(hashes)
    if m == n:
        return [] if b else [mth(hashes)]
    k = split(n)
    if m <= k:
        return subproof(m, hashes[:k], b) + [mth(hashes[k:])]
    return subproof(m - k, hashes[k:], False) + [mth(hashes[:k])]


def flip(b, i=0):
    b = bytearray(b)
    b[i] ^= 1
    return bytes(b)


# ---- offline -----------------------------------------------------------------------------------

class TestOfflineProofs(unittest.TestCase):

    def setUp(self):
        self.sk = SigningKey(bytes(range(32)))
        self.pk = bytes(self.sk.verify_key)
        self.vkey = vkey_of(ORIGIN, self.pk)

    def test_verifier_key(self):
        self.assertEqual(sc.verifier_key(ORIGIN, self.pk), self.vkey)
        self.assertEqual(sc.verifier_key(ORIGIN, self.pk.hex()), self.vkey)
        self.assertEqual(sc.parse_verifier_key(self.vkey), (ORIGIN, self.pk))
        self.assertEqual(sc.note_key_id(ORIGIN, self.pk), key_id(ORIGIN, self.pk))
        for bad in ("no-plus", ORIGIN + "+00000000+" + self.vkey.split("+")[2],
                    self.vkey + "x", "a b+" + self.vkey.split("+", 1)[1]):
            with self.assertRaises(sc.VerificationError, msg=bad):
                sc.parse_verifier_key(bad)
        with self.assertRaises(ValueError):
            sc.verifier_key("has space", self.pk)

    def test_checkpoint_verifies_and_refuses_tampering(self):
        root = hashlib.sha256(b"root").digest()
        note = sign_note(self.sk, ORIGIN, checkpoint_text(ORIGIN, 12, root))
        cp = sc.verify_checkpoint(note, self.vkey)
        self.assertEqual((cp.origin, cp.size, cp.root, cp.key), (ORIGIN, 12, root, self.pk))
        self.assertEqual(sc.verify_checkpoint(note.encode(), self.vkey), cp)
        # extension lines are allowed (and signed); another key's signature line is ignored
        other = SigningKey(bytes(range(1, 33)))
        ext = sign_note(self.sk, ORIGIN, checkpoint_text(ORIGIN, 12, root) + "ext line\n")
        cosigned = ext + sign_note(other, "witness", "x\n").split("\n\n")[1]
        self.assertEqual(sc.verify_checkpoint(cosigned, self.vkey).size, 12)

        refused = {
            "size changed": note.replace("\n12\n", "\n13\n"),
            "root changed": note.replace(base64.b64encode(root).decode(),
                                         base64.b64encode(flip(root)).decode()),
            "signed by another key": sign_note(other, ORIGIN, checkpoint_text(ORIGIN, 12, root)),
            "no signature": checkpoint_text(ORIGIN, 12, root),
            "cut short": note[:-3],
            "leading zero": sign_note(self.sk, ORIGIN, checkpoint_text(ORIGIN, 12, root)
                                      .replace("\n12\n", "\n012\n")),
            "root of 31 bytes": sign_note(self.sk, ORIGIN, "%s\n1\n%s\n" % (
                ORIGIN, base64.b64encode(root[:31]).decode())),
            "another origin under our key name": sign_note(
                self.sk, ORIGIN, checkpoint_text("someone.else/log", 12, root)),
            "signature line mangled": note.replace(EM_DASH + " ", "- "),
        }
        for what, bad in refused.items():
            with self.assertRaises(sc.VerificationError, msg=what):
                sc.verify_checkpoint(bad, self.vkey)
        # the right key under another name does not vouch for this origin
        with self.assertRaises(sc.VerificationError):
            sc.verify_checkpoint(note, vkey_of("other.name", self.pk))

    def test_inclusion_proofs_every_index_and_size(self):
        leaves = [hashlib.sha256(b"\x00" + bytes([i])).digest() for i in range(17)]
        for n in range(1, 18):
            root = mth(leaves[:n])
            for m in range(n):
                p = path(m, leaves[:n])
                sc.verify_inclusion(leaves[m], m, n, p, root)
                bad = [(flip(leaves[m]), m, n, p, root), (leaves[m], m, n, p, flip(root))]
                if n > 1:
                    bad.append((leaves[m], (m + 1) % n, n, p, root))
                    bad.append((leaves[m], m, n, p[:-1], root))
                bad.append((leaves[m], m, n, p + [root], root))
                bad.append((leaves[m], n, n, p, root))
                for i in range(len(p)):
                    bad.append((leaves[m], m, n, p[:i] + [flip(p[i], 31)] + p[i + 1:], root))
                for args in bad:
                    with self.assertRaises(sc.VerificationError, msg=(m, n)):
                        sc.verify_inclusion(*args)
        with self.assertRaises(sc.VerificationError):
            sc.verify_inclusion(leaves[0], 0, 2, [b"short"], mth(leaves[:2]))

    def test_consistency_proofs_every_pair_of_sizes(self):
        leaves = [hashlib.sha256(b"\x00" + bytes([i])).digest() for i in range(17)]
        for n in range(0, 18):
            r2 = mth(leaves[:n])
            for m in range(0, n + 1):
                r1 = mth(leaves[:m])
                p = subproof(m, leaves[:n], True) if 0 < m else []
                sc.verify_consistency(m, n, r1, r2, p)
                bad = [(m, n, flip(r1), r2, p), (m, n, r1, r2, p + [r1])]
                if m > 0:  # the empty tree is a prefix of every tree, whatever its root
                    bad.append((m, n, r1, flip(r2), p))
                if p:
                    bad.append((m, n, r1, r2, p[:-1]))
                    for i in range(len(p)):
                        bad.append((m, n, r1, r2, p[:i] + [flip(p[i], 5)] + p[i + 1:]))
                if 0 < m < n:
                    bad.append((n, m, r2, r1, p))  # backwards: a log never shrinks
                for args in bad:
                    with self.assertRaises(sc.VerificationError, msg=(m, n, args[0], args[1])):
                        sc.verify_consistency(*args)

    def test_streamed_root_is_the_tree_hash(self):
        leaves = [hashlib.sha256(bytes([i])).digest() for i in range(70)]
        for n in range(71):
            self.assertEqual(sc.merkle_root_stream(iter(leaves[:n])), sc.merkle_root(leaves[:n]),
                             n)

    def test_ledger_leaf_hash(self):
        self.assertEqual(sc.ledger_leaf_hash(b"abc"), hashlib.sha256(b"\x00abc").digest())


# ---- a live C ledger ---------------------------------------------------------------------------

@unittest.skipUnless(have_binaries("sediment-ledger", "sediment-worker", "sediment"),
                     "no sediment-ledger, sediment-worker and sediment in SDM_BIN")
class TestLiveLedger(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.worker = Worker()
        cls.ledger = Ledger(args=["--origin", ORIGIN])
        try:
            cls.wc = sc.Client(cls.worker.endpoint, timeout=30)
            cls.lc = sc.LedgerClient(cls.ledger.endpoint, timeout=30)
            cls.worker_key = cls.wc.info()["worker_key"]
            cls.populate()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for name in ("wc", "lc"):
            if getattr(cls, name, None) is not None:
                getattr(cls, name).close()
        cls.worker.close()
        cls.ledger.close()

    @classmethod
    def populate(cls):
        """Three receipts and a proof, appended as bytes and as the decoded list."""
        cls.wc.register("pm", 4, "none", 4, 0)
        x = np.array([[1, 0.5, -1, 2], [0.25, 1, 1, -0.5]], dtype=np.float32)
        envs = []
        for i, (who, shard) in enumerate([("alice", "a"), ("bob", "b"), ("alice", "a2")]):
            r = cls.wc.contribute("pm", "c0", 0.5, who, shard, [2 * i, 2 * i + 1], grads=x)
            envs.append(r["receipt"])
        envs.append(cls.wc.attribute("pm", queries={"c0": x}, topk=1)["proof"])
        cls.envelopes = [msgpack.packb(e, use_bin_type=True) for e in envs]
        cls.appends = []
        for i, env in enumerate(cls.envelopes):
            cls.appends.append(cls.lc.append(env if i % 2 == 0 else envs[i]))
        info = cls.lc.info()
        cls.vkey = sc.verifier_key(info["origin"], info["ledger_key"])

    def run_cli(self, *args):
        out = subprocess.run([os.path.join(BIN, "sediment")] + list(args), capture_output=True,
                             text=True, timeout=60)
        return out.returncode, out.stdout, out.stderr

    def test_info_and_verifier_key_agree_with_the_c_tools(self):
        info = self.lc.info()
        self.assertEqual(info["origin"], ORIGIN)
        self.assertEqual(len(info["ledger_key"]), 32)
        self.assertIsNone(info["workers"])
        self.assertEqual(self.vkey, vkey_of(ORIGIN, info["ledger_key"]))
        rc, out, _ = self.run_cli("ledger-key", "--ledger", self.ledger.endpoint)
        self.assertEqual(rc, 0)
        self.assertEqual(out.strip(), self.vkey)
        rc, out, _ = self.run_cli("ledger-key", "--data", self.ledger.data)
        self.assertEqual((rc, out.strip()), (0, self.vkey))

    def test_appends_and_entries_keep_the_exact_bytes(self):
        for i, (env, rep) in enumerate(zip(self.envelopes, self.appends)):
            self.assertEqual(rep["index"], i)
            self.assertFalse(rep["duplicate"])
            self.assertEqual(rep["size"], i + 1)
            self.assertEqual(rep["leaf_hash"], sc.ledger_leaf_hash(env))
            self.assertEqual(self.lc.entry_bytes(i), env)
            self.assertEqual(msgpack.packb(self.lc.entry(i)["entry"], use_bin_type=True), env)
            cp = sc.verify_checkpoint(rep["checkpoint"], self.vkey)
            self.assertEqual(cp.size, i + 1)
        again = self.lc.append(self.envelopes[1])
        self.assertEqual((again["index"], again["duplicate"]), (1, True))
        with self.assertRaises(ValueError):
            self.lc.append(b"\xa3abc")  # a str, not an envelope: never sent
        with self.assertRaises(sc.SedimentError) as e:
            self.lc.append(flip(self.envelopes[0], len(self.envelopes[0]) - 1))
        self.assertEqual(e.exception.code, "unauthorized")
        self.assertEqual(self.lc.info()["size"], len(self.envelopes))

    def test_checkpoint_inclusion_and_consistency(self):
        latest, note = self.lc.verified_checkpoint(self.vkey)
        self.assertEqual(latest.size, len(self.envelopes))
        leaves = [sc.ledger_leaf_hash(e) for e in self.envelopes]
        self.assertEqual(latest.root, mth(leaves))
        # every entry in every checkpoint an append handed out, and each such checkpoint
        # consistent with the latest
        for rep in self.appends:
            cp = sc.verify_checkpoint(rep["checkpoint"], self.vkey)
            for i in range(cp.size):
                self.assertEqual(self.lc.prove(i, cp, entry=self.envelopes[i],
                                               allowed_keys=[self.worker_key]),
                                 self.envelopes[i])
                proof = self.lc.inclusion(i, cp.size)
                self.assertEqual(proof["hashes"], path(i, leaves[:cp.size]))
            self.lc.prove_consistency(cp, latest)
            hashes = self.lc.consistency(cp.size, latest.size)["hashes"]
            self.assertEqual(hashes, subproof(cp.size, leaves, True) if cp.size else [])
            sc.verify_consistency(cp.size, latest.size, cp.root, latest.root, hashes)

        first = sc.verify_checkpoint(self.appends[0]["checkpoint"], self.vkey)
        proof = self.lc.inclusion(1, latest.size)
        with self.assertRaises(sc.VerificationError):
            sc.verify_inclusion(leaves[1], 1, latest.size,
                                [flip(proof["hashes"][0])] + proof["hashes"][1:], latest.root)
        with self.assertRaises(sc.VerificationError):
            sc.verify_inclusion(leaves[2], 1, latest.size, proof["hashes"], latest.root)
        with self.assertRaises(sc.VerificationError):
            self.lc.prove(1, latest, entry=flip(self.envelopes[1], 40))
        with self.assertRaises(sc.VerificationError):
            self.lc.prove(1, latest, allowed_keys=[bytes(32)])
        with self.assertRaises(sc.VerificationError):
            self.lc.prove(latest.size, latest)
        with self.assertRaises(sc.VerificationError):
            self.lc.prove_consistency(latest, first)
        forked = latest._replace(root=flip(latest.root))
        with self.assertRaises(sc.VerificationError):
            self.lc.prove_consistency(first, forked)
        with self.assertRaises(sc.VerificationError):
            sc.verify_checkpoint(note.replace("\n%d\n" % latest.size, "\n%d\n" % (latest.size + 1)),
                                 self.vkey)
        other = SigningKey(bytes(range(2, 34)))
        with self.assertRaises(sc.VerificationError):
            sc.verify_checkpoint(note, vkey_of(ORIGIN, bytes(other.verify_key)))

    def test_root_from_all_entries_agrees_with_sediment_audit(self):
        latest, _ = self.lc.verified_checkpoint(self.vkey)
        leaves = [sc.ledger_leaf_hash(self.lc.entry_bytes(i)) for i in range(latest.size)]
        self.assertEqual(sc.merkle_root(leaves), latest.root)
        rc, out, err = self.run_cli("--json", "audit", "--ledger", self.ledger.endpoint,
                                    "--vkey", self.vkey)
        self.assertEqual(rc, 0, err)
        summary = json.loads(out)
        self.assertTrue(summary["ok"])
        self.assertEqual(bytes.fromhex(summary["computed_root"]), latest.root)
        self.assertGreaterEqual(summary["entries_ok"], len(self.envelopes))

    def test_entries_pipelined_are_the_exact_bytes(self):
        size = self.lc.info()["size"]
        one_by_one = [self.lc.entry_bytes(i) for i in range(size)]
        for window in (1, 3, 64):
            got = list(self.lc.entries(window=window))
            self.assertEqual([i for i, _ in got], list(range(size)))
            self.assertEqual([raw for _, raw in got], one_by_one)
        self.assertEqual([raw for _, raw in self.lc.entries(1, 3)], one_by_one[1:3])
        self.assertEqual(list(self.lc.entries(2, 2)), [])
        # a stop past the end fails on the first missing entry, naming it
        with self.assertRaises(sc.SedimentError) as cm:
            list(self.lc.entries(0, size + 2))
        self.assertEqual(cm.exception.code, "not_found")
        self.assertIn("entry %d" % size, str(cm.exception))
        for bad in ({"window": 0}, {"window": 1025}, {"start": 3, "stop": 2}):
            with self.assertRaises(ValueError):
                list(self.lc.entries(**bad))
        # the connection still answers plain calls afterwards, a generator left early too
        next(self.lc.entries())
        self.assertEqual(self.lc.info()["size"], size)

    def test_audit_checks_every_entry_and_the_root(self):
        latest, _ = self.lc.verified_checkpoint(self.vkey)
        self.assertEqual(self.lc.audit(latest, window=2), latest.size)
        self.assertEqual(self.lc.audit(latest, allowed_keys=[self.worker_key]), latest.size)
        with self.assertRaises(sc.VerificationError) as cm:
            self.lc.audit(latest, allowed_keys=[bytes(32)])
        self.assertIn("entry 0", str(cm.exception))
        forged = latest._replace(root=hashlib.sha256(b"not the root").digest())
        with self.assertRaises(sc.VerificationError) as cm:
            self.lc.audit(forged)
        self.assertIn("root", str(cm.exception))
        # every smaller tree: the entries of its prefix hash to its root
        leaves = [sc.ledger_leaf_hash(raw) for _, raw in self.lc.entries()]
        for n in range(latest.size + 1):
            self.assertEqual(self.lc.audit(latest._replace(size=n, root=sc.merkle_root(leaves[:n]))),
                             n)

    def test_cli_prove_gives_the_path_python_checks(self):
        latest, _ = self.lc.verified_checkpoint(self.vkey)
        rc, out, err = self.run_cli("--json", "prove", "--ledger", self.ledger.endpoint,
                                    "--vkey", self.vkey, "--index", "2")
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        hashes = [bytes.fromhex(h) for h in got["hashes"]]
        entry = bytes.fromhex(got["entry"])
        self.assertEqual(entry, self.envelopes[2])
        sc.verify_inclusion(sc.ledger_leaf_hash(entry), 2, got["size"], hashes,
                            bytes.fromhex(got["root"]))

    def test_errors_name_the_field(self):
        size = self.lc.info()["size"]
        with self.assertRaises(sc.SedimentError) as e:
            self.lc.entry(size)
        self.assertEqual(e.exception.code, "not_found")
        with self.assertRaises(sc.SedimentError) as e:
            self.lc.inclusion(size, size)
        self.assertEqual(e.exception.code, "bad_request")
        with self.assertRaises(sc.SedimentError) as e:
            self.lc.consistency(2, 1)
        self.assertEqual(e.exception.code, "bad_request")
        with self.assertRaises(sc.SedimentError) as e:
            self.lc.history("alice", limit=0)
        self.assertEqual(e.exception.code, "bad_request")
        self.assertIn("limit", e.exception.message)

    def test_history_and_rewards(self):
        rows = self.lc.history("alice")["entries"]
        self.assertEqual([r["type"] for r in rows].count("contribution"), 2)
        self.assertTrue(all(r["score"] is None for r in rows if r["type"] == "contribution"))
        self.assertTrue(any(r["type"] == "attribution" and r["index"] == 3 for r in rows))
        self.assertEqual(self.lc.history("alice", since=2 ** 62)["entries"], [])
        rewards = self.lc.rewards(1000)
        self.assertEqual(sum(a for _, a in rewards["allocations"]), 1000)
        self.assertEqual(self.lc.rewards(5, model="none-such")["unallocated"], 5)


@unittest.skipUnless(have_binaries("sediment-ledger", "sediment-worker"),
                     "no sediment-ledger and sediment-worker in SDM_BIN")
class TestTamperedLedger(unittest.TestCase):

    def test_changed_envelope_byte_stops_the_ledger_from_starting(self):
        worker = Worker()
        with tempfile.TemporaryDirectory(prefix="sdm-tamper-") as tmp:
            data = os.path.join(tmp, "ledger")
            ledger = Ledger(data=data)
            try:
                with sc.Client(worker.endpoint, timeout=30) as wc, \
                        sc.LedgerClient(ledger.endpoint, timeout=30) as lc:
                    wc.register("tm", 2, "none", 2, 0)
                    for i in range(3):
                        r = wc.contribute("tm", "c0", 1.0, "carol", "s%d" % i, [i],
                                          grads=np.ones((1, 2), dtype=np.float32))
                        lc.append(r["receipt"])
                self.assertEqual(ledger.stop(), 0)
            finally:
                ledger.close()
                worker.close()
            db = sqlite3.connect(os.path.join(data, "ledger.db"))
            env = bytearray(db.execute("SELECT envelope FROM entries WHERE idx = 1").fetchone()[0])
            env[len(env) // 2] ^= 0x01
            db.execute("UPDATE entries SET envelope = ? WHERE idx = 1", (bytes(env),))
            db.commit()
            db.close()
            out = subprocess.run([os.path.join(BIN, "sediment-ledger"), "--listen",
                                  "tcp://127.0.0.1:0", "--data", data],
                                 capture_output=True, text=True, timeout=60)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("leaf hash", out.stderr)
            self.assertIn("entry 1", out.stderr)
            self.assertFalse(out.stdout.startswith("tcp://"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
