#!/usr/bin/env python3
"""test_note.py - C2SP checkpoints and signed notes (SPEC §5), checked by a second implementation.

`test_note DATA --emit DIR` (the C suite, from $SDM_BIN) writes signed checkpoints and verifier
keys into DIR. Everything here is recomputed with hashlib, base64 and PyNaCl only, written from
the C2SP signed-note and tlog-checkpoint specifications: the key ids, verifier keys and every
note must agree byte for byte (Ed25519 is deterministic), and each note must verify here.
This file also holds the computation of the known answers hard-coded in tests/test_note.c.
"""
import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import nacl.exceptions
import nacl.signing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EM_DASH = "\u2014"


# ---- the formats, written from the C2SP specifications ----------------------------------------

def key_id(name, public_key):
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]


def verifier_key(name, public_key):
    return "%s+%s+%s" % (name, key_id(name, public_key).hex(),
                         base64.b64encode(b"\x01" + public_key).decode())


def checkpoint_text(origin, size, root):
    return "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())


def sign_note(signing_key, name, text):
    pk = bytes(signing_key.verify_key)
    sig = signing_key.sign(text.encode()).signature
    blob = base64.b64encode(key_id(name, pk) + sig).decode()
    return text + "\n" + EM_DASH + " " + name + " " + blob + "\n"


def b64_strict(s):
    return base64.b64decode(s, validate=True)


def parse_verifier_key(vkey):
    name, hexid, key = vkey.split("+", 2)
    raw = b64_strict(key)
    if len(hexid) != 8 or len(raw) != 33 or raw[0] != 1:
        raise ValueError("bad verifier key")
    if key_id(name, raw[1:]) != bytes.fromhex(hexid):
        raise ValueError("key id does not match")
    return name, bytes.fromhex(hexid), raw[1:]


def open_note(note, name, kid, public_key):
    """The text of note when it carries a valid signature by (name, kid, public_key)."""
    if not note.endswith("\n"):
        raise ValueError("no final newline")
    split = note.rindex("\n\n")
    text, sigs = note[:split + 1], note[split + 2:]
    ok = False
    for line in sigs.splitlines():
        m = re.fullmatch(EM_DASH + r" ([^ +]+) ([A-Za-z0-9+/=]+)", line)
        if not m:
            raise ValueError("bad signature line %r" % line)
        blob = b64_strict(m.group(2))
        if m.group(1) == name and blob[:4] == kid:
            nacl.signing.VerifyKey(public_key).verify(text.encode(), blob[4:])
            ok = True
    if not ok:
        raise ValueError("no known signature")
    return text


def parse_checkpoint(text):
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) < 4:
        raise ValueError("bad checkpoint")
    origin, size, root = lines[0], lines[1], b64_strict(lines[2])
    if not origin or not re.fullmatch(r"0|[1-9][0-9]*", size) or len(root) != 32:
        raise ValueError("bad checkpoint")
    return origin, int(size), root


# ---- the known answers of tests/test_note.c ----------------------------------------------------

EXAMPLE_SEED = bytes(range(32))
EXAMPLE_NAME = "example.com/log"
EXAMPLE_ROOT = bytes(range(32, 64))


def example_key():
    return nacl.signing.SigningKey(EXAMPLE_SEED)


class KnownAnswers(unittest.TestCase):
    def test_example_vectors(self):
        sk = example_key()
        pk = bytes(sk.verify_key)
        self.assertEqual(key_id(EXAMPLE_NAME, pk).hex(), "d455c521")
        self.assertEqual(verifier_key(EXAMPLE_NAME, pk),
                         "example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4")
        text = checkpoint_text(EXAMPLE_NAME, 5, EXAMPLE_ROOT)
        self.assertEqual(text, "example.com/log\n5\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n")
        note = sign_note(sk, EXAMPLE_NAME, text)
        self.assertTrue(note.endswith(
            " 1FXFIXhcA8bzldY1uKnlMrActd5plu5xDp3ZZyDBhgiujuXf5k0H3IDB+FKhc7DPclM3WiqaYv2LnpSksLE8"
            "gIsJ3gg=\n"))

    def test_go_vector(self):
        # golang.org/x/mod/sumdb/note's documented example: checks this file's own logic
        seed = b64_strict("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
        sk = nacl.signing.SigningKey(seed)
        self.assertEqual(verifier_key("PeterNeumann", bytes(sk.verify_key)),
                         "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        text = ("If you think cryptography is the answer to your problem,\n"
                "then you don't know what your problem is.\n")
        self.assertEqual(sign_note(sk, "PeterNeumann", text), text + "\n" + EM_DASH +
                         " PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
                         "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


# ---- the C implementation's output -------------------------------------------------------------

class EmittedNotes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bin_dir = os.environ.get("SDM_BIN", os.path.join(REPO, "build", "bin"))
        exe = os.path.join(bin_dir, "test_note")
        if not os.access(exe, os.X_OK):
            raise RuntimeError(f"{exe} not found: build test_note and set SDM_BIN")
        data = os.environ.get("SDM_TESTDATA", os.path.join(REPO, "tests", "data"))
        cls.dir = tempfile.mkdtemp(prefix="sdm_note_")
        subprocess.run([exe, data, "--emit", cls.dir], check=True, timeout=60)
        with open(os.path.join(cls.dir, "index.json"), encoding="utf-8") as f:
            cls.index = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read().decode("utf-8")

    def test_two_keys_emitted(self):
        self.assertEqual(len(self.index["keys"]), 2)
        for k in self.index["keys"]:
            self.assertEqual(len(k["notes"]), 5)

    def test_example_key_is_the_seeded_one(self):
        k = self.index["keys"][0]
        self.assertEqual(k["name"], EXAMPLE_NAME)
        self.assertEqual(bytes.fromhex(k["public_key"]), bytes(example_key().verify_key))

    def test_verifier_keys(self):
        for k in self.index["keys"]:
            pk = bytes.fromhex(k["public_key"])
            self.assertEqual(k["vkey"], verifier_key(k["name"], pk))
            self.assertEqual(parse_verifier_key(k["vkey"])[2], pk)

    def test_notes_byte_for_byte(self):
        # the random key's seed is not emitted, so byte equality is checked for the seeded
        # key; the random key's notes are checked by verification below
        k = self.index["keys"][0]
        sk = example_key()
        for n in k["notes"]:
            want = sign_note(sk, k["name"],
                             checkpoint_text(k["name"], int(n["size"]), bytes.fromhex(n["root"])))
            self.assertEqual(self.read(n["file"]), want, n["file"])

    def test_notes_verify_and_parse(self):
        for k in self.index["keys"]:
            name, kid, pk = parse_verifier_key(k["vkey"])
            for n in k["notes"]:
                note = self.read(n["file"])
                text = open_note(note, name, kid, pk)
                origin, size, root = parse_checkpoint(text)
                self.assertEqual(origin, k["name"])
                self.assertEqual(size, int(n["size"]))
                self.assertEqual(root.hex(), n["root"])

    def test_tampered_notes_fail_here(self):
        # guards this file's verifier: were it to accept anything, the checks above would be void
        k = self.index["keys"][1]
        name, kid, pk = parse_verifier_key(k["vkey"])
        note = self.read(k["notes"][2]["file"])
        with self.assertRaises(nacl.exceptions.BadSignatureError):
            open_note(note[:1].swapcase() + note[1:], name, kid, pk)
        other = bytes(nacl.signing.SigningKey.generate().verify_key)
        with self.assertRaises(nacl.exceptions.BadSignatureError):
            open_note(note, name, kid, other)
        with self.assertRaises(ValueError):
            open_note(note, name, b"\0\0\0\0", pk)
        with self.assertRaises((ValueError, binascii.Error)):
            open_note(note.rstrip("\n"), name, kid, pk)


if __name__ == "__main__":
    unittest.main(verbosity=2)
