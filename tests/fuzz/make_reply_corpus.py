#!/usr/bin/python3
"""make_reply_corpus.py - writes the seed corpus of fuzz_reply: replies of every worker and
ledger op, envelopes, signed checkpoints, verifier keys and Merkle proofs, valid ones and one
for each way of being wrong. The first byte of each seed picks the harness mode (see
fuzz_reply.c): 0 reply, 1 envelope, 2 envelope body, 3 note, 4 checkpoint text,
5 verifier key, 6 proof, 7 tree. Run from the repository root:
    /usr/bin/python3 tests/fuzz/make_reply_corpus.py tests/fuzz/corpus_reply
With --live BIN_DIR it also starts that build's sediment-worker and sediment-ledger and keeps
their real replies (live_*), the ledger's checkpoints and proofs:
    /usr/bin/python3 tests/fuzz/make_reply_corpus.py --live build/bin tests/fuzz/corpus_reply
Everything else is made here from docs/protocol.md, docs/ledger.md and SPEC §4-5, with the
fuzz target's fixed keys (Ed25519 seeds 32 x 0x11 and 32 x 0x22), so it is reproducible.
"""
import base64
import hashlib
import os
import struct
import sys

import msgpack
from nacl.signing import SigningKey

MODE_REPLY, MODE_ENV, MODE_BODY, MODE_NOTE, MODE_TEXT, MODE_VKEY, MODE_PROOF, MODE_TREE = range(8)
TAG = b"sediment-signed-v1"
ORIGIN = "fuzz.example/log"
OTHER = "other.example/log"
KEY = SigningKey(b"\x11" * 32)   # fixed_key(0) in fuzz_reply.c
KEY2 = SigningKey(b"\x22" * 32)  # fixed_key(1)
EM_DASH = "\u2014"


def pack(v, single_float=False):
    return msgpack.packb(v, use_bin_type=True, use_single_float=single_float)


def raw_map(pairs):
    """A map from (key, value-bytes) pairs, kept in order and allowing repeated keys."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(pack(k) + v for k, v in pairs)


def sha(b):
    return hashlib.sha256(b).digest()


# ---- envelopes (SPEC §4) -------------------------------------------------------------------

def envelope(body, key=KEY):
    sig = key.sign(TAG + b"\n" + body).signature
    return pack([TAG.decode(), body, bytes(key.verify_key), sig])


def receipt_body(n=2, curvature=False):
    return pack({
        "v": 1, "type": "contribution", "worker": bytes(KEY.verify_key),
        "issued_at": 1763700000123456789, "model": "m", "checkpoint": "c0", "lr": 0.5,
        "contributor": "" if curvature else "alice", "shard": "" if curvature else "s0",
        "n": n, "batch": 3, "leaf": sha(b"leaf"), "store_size": 4, "store_root": sha(b"root"),
        "ids_digest": sha(b"ids"), "data_digest": sha(b"data"), "weights_digest": sha(b""),
        "curvature": curvature})


def queries(n=1, topk=2):
    return [{"id": q if q % 2 == 0 else "q%d" % q,
             "shards": [["s0", "alice", 1.25, 0.75], ["s1", "bob", -0.5, 0.25]],
             "contributors": [["alice", 1.25, 0.75], ["bob", -0.5, 0.25]],
             "top": [[k, "s0", 2.0 - k] for k in range(topk)],
             "bottom": [[k + 10, "s1", -1.0 - k] for k in range(topk)]} for q in range(n)]


def proof_body(n=2):
    return pack({
        "v": 1, "type": "attribution", "worker": bytes(KEY.verify_key),
        "issued_at": 1763700000223456789, "model": "m",
        "projection": {"kind": "rademacher", "dim": 4, "seed": 7, "input_dim": 8, "s": 1},
        "method": "trak", "lambda": [0.3], "aggregate": "sum",
        "checkpoints": [{"id": "c0", "lr": 0.5}], "store_size": 4, "store_root": sha(b"root"),
        "query_digest": sha(b"q"), "request_id": "r-1", "queries": queries(n)})


RECEIPT = envelope(receipt_body())
PROOF = envelope(proof_body())


# ---- checkpoints (SPEC §5, C2SP signed-note) -------------------------------------------------

def key_id(name, pk):
    return sha(name.encode() + b"\n\x01" + pk)[:4]


def sig_line(key, name, text):
    blob = key_id(name, bytes(key.verify_key)) + key.sign(text).signature
    return (EM_DASH + " " + name + " " + base64.b64encode(blob).decode() + "\n").encode()


def note(text, key=KEY, name=ORIGIN):
    return text + b"\n" + sig_line(key, name, text)


def cp_text(size, root, origin=ORIGIN, ext=b""):
    return ("%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())).encode() + ext


def vkey(name=ORIGIN, key=KEY):
    pk = bytes(key.verify_key)
    return "%s+%s+%s" % (name, key_id(name, pk).hex(), base64.b64encode(b"\x01" + pk).decode())


# ---- RFC 9162 trees --------------------------------------------------------------------------

def leaf_hash(data):
    return sha(b"\x00" + data)


def split(n):
    k = 1
    while k < n - k:
        k <<= 1
    return k


def mth(hs):
    if not hs:
        return sha(b"")
    if len(hs) == 1:
        return hs[0]
    k = split(len(hs))
    return sha(b"\x01" + mth(hs[:k]) + mth(hs[k:]))


def inclusion(m, hs):
    if len(hs) == 1:
        return []
    k = split(len(hs))
    if m < k:
        return inclusion(m, hs[:k]) + [mth(hs[k:])]
    return inclusion(m - k, hs[k:]) + [mth(hs[:k])]


def subproof(m, hs, b):
    if m == len(hs):
        return [] if b else [mth(hs)]
    k = split(len(hs))
    if m <= k:
        return subproof(m, hs[:k], b) + [mth(hs[k:])]
    return subproof(m - k, hs[k:], False) + [mth(hs[:k])]


def consistency(m, hs):
    return subproof(m, hs, True) if 0 < m < len(hs) else []


def varint(v):
    out = b""
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def proof_seed(flags, a, b, root_a, root_b, path, env=b""):
    return (bytes([MODE_PROOF, flags]) + varint(a) + varint(b) + root_a + root_b +
            bytes([len(path)]) + b"".join(path) + env)


def note_seed(origin, key_bytes, text_note):
    o = origin.encode()
    return bytes([MODE_NOTE, len(o)]) + o + key_bytes + text_note


# ---- seeds -----------------------------------------------------------------------------------

def ok(id_, **fields):
    d = {"id": id_, "ok": True}
    d.update(fields)
    return d


def error(id_, code, message="model 'zz' is not registered"):
    return {"id": id_, "ok": False, "error": {"code": code, "message": message}}


def model(name="m", kind="rademacher", **over):
    proj = {"kind": kind, "dim": 4, "seed": 7}
    if kind == "sjlt":
        proj["s"] = 2
    m = {"model": name, "input_dim": 8, "projection": proj, "store_size": 4,
         "store_root": sha(b"root")}
    m.update(over)
    return m


def contribute_reply(id_=5, receipt=RECEIPT):
    return raw_map([("id", pack(id_)), ("ok", pack(True)), ("batch", pack(3)),
                    ("leaf", pack(sha(b"leaf"))), ("store_size", pack(4)),
                    ("store_root", pack(sha(b"root"))), ("receipt", receipt)])


def attribute_reply(id_=6, proof=PROOF, n=2):
    return raw_map([("id", pack(id_)), ("ok", pack(True)), ("proof", proof),
                    ("result", pack(queries(n)))])


def entry_reply(id_=9, env=RECEIPT):
    return raw_map([("id", pack(id_)), ("ok", pack(True)), ("entry", env)])


HS = [leaf_hash(b"entry %d" % i) for i in range(7)]


def reply_seeds():
    stats = ok(4, requests=10, ops={"info": 1, "register": 2, "contribute": 3, "attribute": 1,
                                    "stats": 3},
               errors={c: 0 for c in ["bad_request", "unknown_op", "too_large", "not_found",
                                      "conflict", "unauthorized", "busy", "internal"]},
               batches=3, examples=6, bytes=96, compute_seconds=0.25, uptime_seconds=12.5,
               ledger={"endpoint": "tcp://127.0.0.1:7720", "pending": 0, "delivered": 3,
                       "rejected": 0})
    hist = [{"index": 0, "issued_at": 17, "type": "contribution", "model": "m", "shard": "s0",
             "score": None, "share": None},
            {"index": 1, "issued_at": 18, "type": "attribution", "model": "m", "shard": "s0",
             "score": 1.25, "share": 0.75}]
    note3 = note(cp_text(3, mth(HS[:3])))
    s = {
        # worker ops
        "ok_info": pack(ok(1, version="0.1.0", backend="cpu", device="cpu (2 threads)",
                           worker_key=bytes(KEY.verify_key),
                           models=[model(), model("sj", "sjlt"), model("n", "none", input_dim=4)])),
        "ok_info_no_models": pack(ok(1, version="0.1.0", backend="cuda", device="H100",
                                     worker_key=bytes(32), models=[])),
        "ok_register": pack(ok(2, model="m", created=True)),
        "ok_register_again": pack(ok(2, model="m", created=False)),
        "ok_contribute": contribute_reply(),
        "ok_contribute_curvature": contribute_reply(receipt=envelope(receipt_body(
            curvature=True))),
        "ok_attribute": attribute_reply(),
        "ok_attribute_float32": pack(ok(6, proof=[TAG.decode(), proof_body(1), bytes(32),
                                                 bytes(64)], result=queries(1)),
                                     single_float=True),
        "ok_attribute_no_queries": attribute_reply(n=0, proof=envelope(proof_body(0))),
        "ok_stats": pack(stats),
        "ok_stats_minimal": pack(ok(4, requests=77)),
        # ledger ops
        "ok_ledger_info": pack(ok(1, version="0.1.0", ledger_key=bytes(KEY.verify_key),
                                  origin=ORIGIN, size=3, workers=None)),
        "ok_ledger_info_workers": pack(ok(1, version="0.1.0", ledger_key=bytes(KEY.verify_key),
                                          origin=ORIGIN, size=3,
                                          workers=[bytes(KEY.verify_key), bytes(32)])),
        "ok_append": pack(ok(7, index=2, leaf_hash=HS[2], size=3, checkpoint=note3.decode(),
                             duplicate=False)),
        "ok_append_nil_checkpoint": pack(ok(7, index=2, leaf_hash=HS[2], size=3,
                                            checkpoint=None, duplicate=True)),
        "ok_checkpoint": pack(ok(8, checkpoint=note3.decode())),
        "ok_entry": entry_reply(),
        "ok_entry_proof": entry_reply(env=PROOF),
        "ok_inclusion": pack(ok(10, leaf_hash=HS[1], hashes=inclusion(1, HS[:7]))),
        "ok_inclusion_empty": pack(ok(10, leaf_hash=HS[0], hashes=[])),
        "ok_consistency": pack(ok(11, hashes=consistency(3, HS[:7]))),
        "ok_history": pack(ok(12, entries=hist)),
        "ok_rewards": pack(ok(13, allocations=[["alice", 60], ["bob", 40]], flagged=["eve"],
                              unallocated=0)),
        "ok_rewards_empty": pack(ok(13, allocations=[], flagged=[], unallocated=100)),
        # error replies
        "err_unknown_code": pack(error(3, "teapot", "short and stout")),
        "err_empty_message": pack(error(3, "busy", "")),
        "err_code_not_str": pack({"id": 3, "ok": False, "error": {"code": 4, "message": "x"}}),
        "err_no_error": pack({"id": 3, "ok": False}),
        "err_ok_not_bool": pack({"id": 3, "ok": 1, "requests": 1}),
        "err_id_str": pack({"id": "3", "ok": True, "requests": 1}),
        "err_id_missing": pack({"ok": True, "requests": 1}),
        # malformed replies
        "bad_empty": b"",
        "bad_not_map": pack([1, 2, 3]),
        "bad_key_not_str": b"\x82" + pack("id") + pack(1) + pack(5) + pack(True),
        "bad_nested_key_not_str": pack(ok(1)).replace(b"\x82", b"\x83", 1) + pack("x") + b"\x81\x01\x02",
        "bad_trailing": pack(ok(1, requests=1)) + b"\xc0",
        "bad_truncated": pack(ok(1, requests=1))[:-1],
        "bad_map32_huge": b"\xdf\xff\xff\xff\xff",
        "bad_str32_huge": b"\x81\xa1k\xdb\xff\xff\xff\xff",
        "bad_depth_33": b"\x81\xa1k" + b"\x91" * 31 + b"\x90",
        "ok_depth_32": b"\x81\xa1k" + b"\x91" * 30 + b"\x90",
        "bad_never_used": b"\x81\xa1k\xc1",
        "bad_models_not_array": pack(ok(1, models={"m": 1})),
        "bad_models_no_root": pack(ok(1, models=[{k: v for k, v in model().items()
                                                  if k != "store_root"}])),
        "bad_models_root_31": pack(ok(1, models=[model(store_root=bytes(31))])),
        "bad_models_s_str": pack(ok(1, models=[model("sj", "sjlt", projection={
            "kind": "sjlt", "dim": 4, "seed": 1, "s": "2"})])),
        "bad_models_name_nul": pack(ok(1, models=[model("m\x00x")])),
        "bad_result_not_array": pack(ok(6, result={"id": 0})),
        "bad_result_short_row": pack(ok(6, result=[dict(queries(1)[0], shards=[["s0", "a", 1]])])),
        "bad_result_top_negative_id": pack(ok(6, result=[dict(queries(1)[0],
                                                              top=[[-1, "s0", 1.0]])])),
        "bad_result_id_float": pack(ok(6, result=[dict(queries(1)[0], id=1.5)])),
        "bad_result_no_bottom": pack(ok(6, result=[{k: v for k, v in queries(1)[0].items()
                                                    if k != "bottom"}])),
        "bad_queries_score_str": pack(ok(6, queries=[dict(queries(1)[0],
                                                          contributors=[["a", "1", 0]])])),
        "edge_result_over_queries": pack(ok(6, result=queries(1), queries=5)),
        "edge_receipt_and_entry": raw_map([("id", pack(9)), ("ok", pack(True)),
                                           ("receipt", RECEIPT), ("entry", PROOF)]),
        "edge_receipt_repeated": raw_map([("id", pack(5)), ("ok", pack(True)),
                                          ("receipt", RECEIPT), ("batch", pack(3)),
                                          ("receipt", pack(7))]),
        "edge_receipt_repeated_last": raw_map([("id", pack(5)), ("ok", pack(True)),
                                               ("receipt", pack(7)), ("receipt", RECEIPT)]),
        "edge_receipt_as_bin": pack(ok(5, batch=3, leaf=sha(b"l"), store_size=4,
                                       store_root=sha(b"r"), receipt=RECEIPT)),
        "edge_key_str8": b"\x83" + b"\xd9\x02id" + pack(9) + b"\xd9\x02ok" + pack(True) +
                         b"\xd9\x05entry" + RECEIPT,
        "edge_map16_receipt": b"\xde\x00\x07" + contribute_reply()[1:],
        "edge_map32_key_str16_str32": b"\xdf\x00\x00\x00\x03" + b"\xda\x00\x02id" + pack(9) +
                                      b"\xdb\x00\x00\x00\x02ok" + pack(True) +
                                      b"\xda\x00\x05entry" + b"\xdc\x00\x04" + RECEIPT[1:],
        "edge_envelope_array32": entry_reply(env=b"\xdd\x00\x00\x00\x04" + RECEIPT[1:]),
        "edge_key_with_dot": pack(ok(1, **{"a.b": 1, "": 2, "c\x00d": 3})),
        "edge_every_type": raw_map([("id", pack(1)), ("ok", pack(True)), ("t", b"\xdc\x00\x0c" +
                                    b"\xc0\xc2\xc3\x05\xff\xcc\x80\xd3" + struct.pack(">q", -2**40) +
                                    b"\xca" + struct.pack(">f", 1.5) + b"\xcb" +
                                    struct.pack(">d", float("nan")) + b"\xa1x\xc4\x01\x00" +
                                    b"\xd4\x01\x00\xc7\x01\x05\x00\xcf" + b"\xff" * 8)]),
        "edge_strings": pack(ok(1, s="caf\u00e9 \u2014 \x01\"\\", bad=b"\xff\xfe",
                                inf=float("inf"), neg=-0.0, big=2**64 - 1, small=-2**63)),
        "edge_str_invalid_utf8": raw_map([("id", pack(1)), ("ok", pack(True)),
                                          ("s", b"\xa4\xff\xc0\xed\xa0")]),
        "edge_hashes_65": pack(ok(11, hashes=[bytes(32)] * 65)),
        "edge_hashes_31": pack(ok(11, hashes=[bytes(31)])),
        "edge_workers_bad": pack(ok(1, version="v", ledger_key=bytes(32), origin=ORIGIN, size=0,
                                    workers=[bytes(31)])),
        "edge_history_bad": pack(ok(12, entries=[dict(hist[0], index="x")])),
        "edge_history_no_score": pack(ok(12, entries=[{k: v for k, v in hist[0].items()
                                                       if k != "score"}])),
        "edge_rewards_negative": pack(ok(13, allocations=[["a", -1]], flagged=[], unallocated=0)),
        "edge_append_checkpoint_int": pack(ok(7, index=2, leaf_hash=HS[2], size=3, checkpoint=1,
                                              duplicate=False)),
        "edge_entry_bad_envelope": entry_reply(env=pack([TAG.decode(), b"\x80", bytes(31),
                                                         bytes(64)])),
    }
    return {"reply_" + k: bytes([MODE_REPLY]) + v for k, v in s.items()}


def envelope_seeds():
    body = receipt_body()
    sig = KEY.sign(TAG + b"\n" + body).signature
    pk = bytes(KEY.verify_key)
    s = {
        "ok_receipt": RECEIPT,
        "ok_proof": PROOF,
        "ok_curvature": envelope(receipt_body(curvature=True)),
        "ok_other_key": envelope(receipt_body(), KEY2),
        "ok_tag_str8": b"\x94\xd9\x12" + TAG + pack(body) + pack(pk) + pack(sig),
        "ok_body_bin16": b"\x94" + pack(TAG.decode()) + b"\xc5" + struct.pack(">H", len(body)) +
                         body + pack(pk) + pack(sig),
        "ok_array16": b"\xdc\x00\x04" + RECEIPT[1:],
        "bad_sig": RECEIPT[:-1] + bytes([RECEIPT[-1] ^ 1]),
        "bad_body_byte": RECEIPT.replace(b"alice", b"alicf"),
        "bad_tag": pack(["sediment-signed-v2", body, pk, sig]),
        "bad_tag_bin": pack([TAG, body, pk, sig]),
        "bad_key_31": pack([TAG.decode(), body, pk[:31], sig]),
        "bad_sig_63": pack([TAG.decode(), body, pk, sig[:63]]),
        "bad_three": pack([TAG.decode(), body, pk]),
        "bad_five": pack([TAG.decode(), body, pk, sig, 0]),
        "bad_trailing": RECEIPT + b"\xc0",
        "bad_body_not_map": envelope(pack([1, 2])),
        "bad_body_empty": envelope(b""),
        "bad_body_trailing": envelope(pack({"v": 1}) + b"\x00"),
        "bad_body_models": envelope(pack({"v": 1, "models": 3})),
        "bad_body_queries": envelope(pack({"v": 1, "queries": [{"id": 0}]})),
        "bad_body_key_int": envelope(b"\x81\x01\x02"),
        "bad_not_array": pack({"tag": TAG.decode()}),
        "bad_empty": b"",
    }
    return {"env_" + k: bytes([MODE_ENV]) + v for k, v in s.items()}


def body_seeds():
    s = {
        "ok_receipt": receipt_body(),
        "ok_proof": proof_body(3),
        "ok_empty_map": b"\x80",
        "ok_map16": b"\xde\x00\x01\xa1v\x01",
        "bad_not_map": pack([1]),
        "bad_queries": pack({"queries": [{"id": 0, "shards": []}]}),
        "bad_models": pack({"models": [{"model": "m"}]}),
        "bad_key_bin": b"\x81\xc4\x01k\x01",
        "bad_trailing": b"\x80\x80",
        "bad_depth": b"\x81\xa1k" + b"\x91" * 31 + b"\x90",
    }
    return {"body_" + k: bytes([MODE_BODY]) + v for k, v in s.items()}


def note_seeds():
    root = mth(HS[:5])
    pk = bytes(KEY.verify_key)
    t = cp_text(5, root)
    two = t + b"\n" + sig_line(KEY2, OTHER, t) + sig_line(KEY, ORIGIN, t)
    s = {
        "ok": note_seed(ORIGIN, pk, note(t)),
        "ok_two_sigs": note_seed(ORIGIN, pk, two),
        "ok_extension": note_seed(ORIGIN, pk, note(cp_text(5, root, ext=b"ext line\n"))),
        "ok_size_0": note_seed(ORIGIN, pk, note(cp_text(0, sha(b"")))),
        "ok_size_max": note_seed(ORIGIN, pk, note(cp_text(2**64 - 1, root))),
        "bad_other_origin": note_seed(ORIGIN, pk, note(cp_text(5, root, OTHER))),
        "bad_wrong_key": note_seed(ORIGIN, bytes(KEY2.verify_key), note(t)),
        "bad_origin_space": note_seed("a b", pk, note(t)),
        "bad_origin_empty": note_seed("", pk, note(t)),
        "bad_no_blank": note_seed(ORIGIN, pk, t + sig_line(KEY, ORIGIN, t)),
        "bad_no_sig": note_seed(ORIGIN, pk, t + b"\n"),
        "bad_no_newline": note_seed(ORIGIN, pk, note(t)[:-1]),
        "bad_sig_b64": note_seed(ORIGIN, pk, t + b"\n" + EM_DASH.encode() + b" " +
                                 ORIGIN.encode() + b" !!!!\n"),
        "bad_sig_short": note_seed(ORIGIN, pk, t + b"\n" + EM_DASH.encode() + b" " +
                                   ORIGIN.encode() + b" " + base64.b64encode(key_id(
                                       ORIGIN, pk) + b"x") + b"\n"),
        "bad_sig_high_byte": note_seed(ORIGIN, pk, note(t)[:-10] + b"\xc3\xa9" +
                                       note(t)[-8:]),
        "bad_other_sig_high_byte": note_seed(ORIGIN, pk, note(t) + sig_line(KEY2, OTHER, t)[:-10]
                                             + b"\xc3\xa9" + sig_line(KEY2, OTHER, t)[-8:]),
        "bad_hyphen": note_seed(ORIGIN, pk, note(t).replace(EM_DASH.encode(), b"-")),
        "bad_twice": note_seed(ORIGIN, pk, note(t) + sig_line(KEY, ORIGIN, t)),
        "bad_many_sigs": note_seed(ORIGIN, pk, t + b"\n" + b"".join(
            sig_line(KEY2, "k%d" % i, t) for i in range(101))),
        "bad_crlf": note_seed(ORIGIN, pk, note(t).replace(b"\n", b"\r\n")),
        "bad_nul": note_seed(ORIGIN, pk, note(t).replace(b"5", b"\x00", 1)),
        "bad_utf8": note_seed(ORIGIN, pk, note(cp_text(5, root, ext=b"\xff\n"))),
        "bad_text_tampered": note_seed(ORIGIN, pk, note(t).replace(b"\n5\n", b"\n6\n", 1)),
    }
    return {"note_" + k: v for k, v in s.items()}


def text_seeds():
    root = mth(HS[:5])
    b64 = base64.b64encode(root)
    odd = b64[:42] + b"B="  # non-zero trailing bits
    s = {
        "ok": (0, cp_text(5, root)),
        "ok_two_sigs": (1, cp_text(5, root)),
        "other_key_only": (2, cp_text(5, root)),
        "ok_extension": (0, cp_text(5, root, ext=b"ext\nmore \xe2\x80\x94 ext\n")),
        "ok_size_0": (0, cp_text(0, sha(b""))),
        "ok_size_max": (0, cp_text(2**64 - 1, root)),
        "ok_origin_utf8": (0, cp_text(7, root, origin="caf\u00e9.example/log")),
        "bad_size_overflow": (0, cp_text(2**64, root)),
        "bad_size_leading_zero": (0, b"%s\n05\n%s\n" % (ORIGIN.encode(), b64)),
        "bad_size_sign": (0, b"%s\n+5\n%s\n" % (ORIGIN.encode(), b64)),
        "bad_size_empty": (0, b"%s\n\n%s\n" % (ORIGIN.encode(), b64)),
        "bad_root_short": (0, b"%s\n5\n%s\n" % (ORIGIN.encode(), base64.b64encode(root[:31]))),
        "bad_root_unpadded": (0, b"%s\n5\n%s\n" % (ORIGIN.encode(), b64.rstrip(b"="))),
        "bad_root_trailing_bits": (0, b"%s\n5\n%s\n" % (ORIGIN.encode(), odd)),
        "bad_root_high_byte": (0, b"%s\n5\n%s\xc3\xa9%s\n" % (ORIGIN.encode(), b64[:22],
                                                                 b64[24:])),
        "bad_root_urlsafe": (0, b"%s\n5\n%s\n" % (ORIGIN.encode(),
                                                   base64.urlsafe_b64encode(b"\xfb" * 32))),
        "bad_empty_extension": (0, cp_text(5, root, ext=b"\n")),
        "bad_no_final_newline": (0, cp_text(5, root)[:-1]),
        "bad_origin_space": (0, cp_text(5, root, origin="a b")),
        "bad_origin_plus": (0, cp_text(5, root, origin="a+b")),
        "bad_two_lines": (0, b"%s\n5\n" % ORIGIN.encode()),
        "bad_utf8": (0, cp_text(5, root, ext=b"\xc0\x80\n")),
        "bad_nul": (0, cp_text(5, root, ext=b"a\x00b\n")),
        "bad_empty": (0, b""),
    }
    return {"text_" + k: bytes([MODE_TEXT, f]) + t for k, (f, t) in s.items()}


def vkey_seeds():
    good = vkey()
    name, kid, b64 = good.split("+", 2)
    s = {
        "ok": good,
        "ok_upper_hex": "%s+%s+%s" % (name, kid.upper(), b64),
        "bad_other_key": vkey(ORIGIN, KEY2),
        "bad_other_name": vkey(OTHER),
        "bad_keyid": "%s+%s+%s" % (name, "00000000", b64),
        "bad_keyid_short": "%s+%s+%s" % (name, kid[:7], b64),
        "bad_alg": "%s+%s+%s" % (name, kid, base64.b64encode(b"\x02" + bytes(KEY.verify_key))
                                 .decode()),
        "bad_b64": "%s+%s+%s" % (name, kid, b64[:-1]),
        "bad_b64_high_byte": "%s+%s+%s" % (name, kid, b64[:20] + "\u00e9" + b64[22:]),
        "bad_one_plus": "%s+%s" % (name, kid),
        "bad_empty_name": "+%s+%s" % (kid, b64),
        "bad_name_long": vkey("n" * 256),
        "bad_name_space": "a b+%s+%s" % (kid, b64),
        "bad_empty": "",
    }
    return {"vkey_" + k: bytes([MODE_VKEY]) + v.encode() for k, v in s.items()}


def proof_seeds():
    s = {}
    envs = [b"entry %d" % i for i in range(7)]
    hs = [leaf_hash(e) for e in envs]
    for size in (1, 2, 3, 5, 7):
        for index in sorted({0, size // 2, size - 1}):
            path = inclusion(index, hs[:size])
            s["ok_inclusion_%d_of_%d" % (index, size)] = proof_seed(
                0, index, size, bytes(32), mth(hs[:size]), path, envs[index])
    for old, new in ((0, 3), (1, 2), (2, 7), (3, 7), (4, 7), (5, 5), (6, 7)):
        s["ok_consistency_%d_%d" % (old, new)] = proof_seed(
            1, old, new, mth(hs[:old]), mth(hs[:new]), consistency(old, hs[:new]))
    s["bad_inclusion_index"] = proof_seed(0, 7, 7, bytes(32), mth(hs), inclusion(6, hs), envs[6])
    s["bad_inclusion_extra"] = proof_seed(0, 2, 5, bytes(32), mth(hs[:5]),
                                          inclusion(2, hs[:5]) + [bytes(32)], envs[2])
    s["bad_inclusion_65"] = proof_seed(0, 0, 2**64 - 1, bytes(32), bytes(32), [bytes(32)] * 65)
    s["bad_consistency_shrink"] = proof_seed(1, 5, 3, mth(hs[:5]), mth(hs[:3]), [])
    s["bad_consistency_fork"] = proof_seed(1, 3, 3, mth(hs[:3]), mth(hs[:2]), [])
    s["bad_consistency_origin"] = proof_seed(3, 3, 7, mth(hs[:3]), mth(hs), consistency(3, hs))
    s["bad_consistency_key"] = proof_seed(5, 3, 7, mth(hs[:3]), mth(hs), consistency(3, hs))
    s["big_sizes"] = proof_seed(9, 2**63, 2**64 - 1, bytes(32), bytes(32), [bytes(32)] * 64)
    return {"proof_" + k: v for k, v in s.items()}


def tree_seeds():
    s = {}
    for n, size, index, frm in ((1, 1, 0, 0), (2, 2, 1, 1), (7, 7, 3, 4), (8, 8, 7, 4),
                                (33, 20, 19, 8), (600, 513, 300, 256)):
        s["%d_%d_%d_%d" % (n, size, index, frm)] = (
            bytes([MODE_TREE]) + varint(n - 1) + varint(size - 1) + varint(index) +
            varint(frm) + bytes([n % 251]) + bytes(range(n % 17, 40)))
    s["equal_leaves"] = bytes([MODE_TREE]) + varint(15) + varint(15) + varint(5) + varint(3) + \
        b"\x07" + b"a"
    s["no_data"] = bytes([MODE_TREE]) + varint(9) + varint(9) + varint(2) + varint(0) + b"\x01"
    return {"tree_" + k: v for k, v in s.items()}


# ---- live replies ----------------------------------------------------------------------------

def live_seeds(bin_dir):
    """Real replies of every op from a worker and a ledger of the build in bin_dir."""
    os.environ["SDM_BIN"] = os.path.abspath(bin_dir)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import numpy as np
    import zmq
    from ledgerproc import Ledger, raw_fields
    from workerproc import Worker, matrix

    class Capture:
        def __init__(self, endpoint):
            self.sock = zmq.Context.instance().socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.connect(endpoint)
            self.next_id = 1

        def call(self, op, **fields):
            req = {"op": op, "id": self.next_id}
            self.next_id += 1
            req.update(fields)
            self.sock.send_multipart([b"", pack(req)])
            if not self.sock.poll(30000):
                raise TimeoutError(op)
            return self.sock.recv_multipart()[-1]

    out = {}
    worker = Worker()
    ledger = Ledger(args=["--origin", "live.example/log"])
    try:
        w, lc = Capture(worker.endpoint), Capture(ledger.endpoint)
        out["info_empty"] = w.call("info")
        out["register"] = w.call("register", model="m", input_dim=4,
                                 projection={"kind": "rademacher", "dim": 2, "seed": 42})
        out["register_again"] = w.call("register", model="m", input_dim=4,
                                       projection={"kind": "rademacher", "dim": 2, "seed": 42})
        out["register_sjlt"] = w.call("register", model="sj", input_dim=4,
                                      projection={"kind": "sjlt", "dim": 4, "seed": 1, "s": 2})
        out["register_conflict"] = w.call("register", model="m", input_dim=4,
                                          projection={"kind": "none", "dim": 4, "seed": 0})
        x = np.array([[1, 0.5, -1, 2], [0.25, 1, 1, -0.5]], dtype=np.float32)
        receipts = []
        for i, (who, shard) in enumerate([("alice", "a"), ("bob", "b"), ("alice", "a2")]):
            rep = w.call("contribute", model="m", checkpoint="c0", lr=0.5, contributor=who,
                         shard=shard, example_ids=[2 * i, 2 * i + 1], grads=matrix(x))
            receipts.append(raw_fields(rep)["receipt"])
            if i == 0:
                out["contribute"] = rep
        out["contribute_curvature"] = w.call("contribute", model="m", checkpoint="c0", lr=0.5,
                                             curvature=True, grads=matrix(x))
        out["contribute_conflict"] = w.call("contribute", model="m", checkpoint="c0", lr=0.5,
                                            contributor="alice", shard="a", example_ids=[0, 1],
                                            grads=matrix(x))
        out["contribute_not_found"] = w.call("contribute", model="zz", checkpoint="c0", lr=0.5,
                                             contributor="a", shard="a", example_ids=[9],
                                             grads=matrix(x[:1]))
        out["attribute"] = w.call("attribute", model="m", queries={"c0": matrix(x)}, topk=2)
        out["attribute_trak"] = w.call("attribute", model="m", queries={"c0": matrix(x)},
                                       method="trak", query_ids=["first", 7], request_id="r-1")
        out["attribute_scores_only"] = w.call("attribute", model="m", queries={"c0": matrix(x)},
                                              topk=0, aggregate="mean")
        proof = raw_fields(out["attribute"])["proof"]
        out["bad_request"] = w.call("attribute", model="m")
        out["unknown_op"] = w.call("explode")
        out["info"] = w.call("info")
        out["stats"] = w.call("stats")

        out["ledger_info"] = lc.call("info")
        envs = receipts + [proof]
        appends = []
        for env in envs:
            sock_req = b"\x83" + pack("op") + pack("append") + pack("id") + pack(lc.next_id) + \
                pack("entry") + env
            lc.next_id += 1
            lc.sock.send_multipart([b"", sock_req])
            lc.sock.poll(30000)
            appends.append(lc.sock.recv_multipart()[-1])
        out["append"] = appends[0]
        out["append_proof"] = appends[-1]
        lc.sock.send_multipart([b"", b"\x83" + pack("op") + pack("append") + pack("id") +
                                pack(99) + pack("entry") + envs[1]])
        lc.sock.poll(30000)
        out["append_duplicate"] = lc.sock.recv_multipart()[-1]
        lc.sock.send_multipart([b"", b"\x83" + pack("op") + pack("append") + pack("id") +
                                pack(98) + pack("entry") + envs[0][:-1] + bytes([envs[0][-1] ^ 1])])
        lc.sock.poll(30000)
        out["append_unauthorized"] = lc.sock.recv_multipart()[-1]
        out["checkpoint"] = lc.call("checkpoint")
        out["entry"] = lc.call("entry", index=0)
        out["entry_proof"] = lc.call("entry", index=3)
        out["entry_not_found"] = lc.call("entry", index=4)
        out["inclusion"] = lc.call("inclusion", index=1, size=4)
        out["consistency"] = lc.call("consistency", **{"from": 1, "to": 4})
        out["consistency_empty"] = lc.call("consistency", **{"from": 0, "to": 4})
        out["history"] = lc.call("history", contributor="alice")
        out["rewards"] = lc.call("rewards", pool=1000)
        out["rewards_model"] = lc.call("rewards", pool=7, model="nope")
        info = msgpack.unpackb(out["ledger_info"], raw=False)
        origin, lkey = info["origin"], info["ledger_key"]
        seeds = {"live_" + k: bytes([MODE_REPLY]) + v for k, v in out.items()}
        for i, env in enumerate(envs):
            seeds["live_env_%d" % i] = bytes([MODE_ENV]) + env
        # the ledger's notes with its own key, and its proofs against them
        notes = [msgpack.unpackb(a, raw=False)["checkpoint"].encode() for a in appends]
        for i, n in enumerate(notes):
            seeds["live_note_%d" % (i + 1)] = note_seed(origin, lkey, n)
        seeds["live_note_wrong_origin"] = note_seed("other.example/log", lkey, notes[0])
        roots = [base64.b64decode(n.split(b"\n")[2]) for n in notes]
        inc = msgpack.unpackb(out["inclusion"], raw=False)["hashes"]
        seeds["live_proof_inclusion"] = proof_seed(0, 1, 4, bytes(32), roots[3], inc, envs[1])
        con = msgpack.unpackb(out["consistency"], raw=False)["hashes"]
        seeds["live_proof_consistency"] = proof_seed(1, 1, 4, roots[0], roots[3], con)
        return seeds
    finally:
        worker.close()
        ledger.close()


def main():
    args = sys.argv[1:]
    live = None
    if args[:1] == ["--live"]:
        live, args = args[1], args[2:]
    out = args[0] if args else os.path.join(os.path.dirname(__file__), "corpus_reply")
    os.makedirs(out, exist_ok=True)
    seeds = {}
    for make in (reply_seeds, envelope_seeds, body_seeds, note_seeds, text_seeds, vkey_seeds,
                 proof_seeds, tree_seeds):
        seeds.update(make())
    if live:
        seeds.update(live_seeds(live))
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
