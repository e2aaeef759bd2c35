#!/usr/bin/python3
"""make_corpus.py - writes the fuzzer's seed corpus: valid requests of every op and one
frame for each bad-input case the decoder must reject. Run once from the repository root:
    /usr/bin/python3 tests/fuzz/make_corpus.py tests/fuzz/corpus
"""
import os
import struct
import sys

import msgpack


def pack(v):
    return msgpack.packb(v, use_bin_type=True)


def raw_map(pairs):
    """A map from (key, value) pairs, kept in order and allowing repeated keys."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(pack(k) + pack(v) for k, v in pairs)


def matrix(rows, cols, dtype="f32", data=None):
    size = {"f32": 4, "f16": 2, "bf16": 2}[dtype]
    if data is None:
        if dtype == "f32":
            data = struct.pack("<%df" % (rows * cols), *[0.5 + i for i in range(rows * cols)])
        else:
            data = bytes(range(rows * cols * size))
    return {"dtype": dtype, "rows": rows, "cols": cols, "data": data}


def contribute(**over):
    req = {"op": "contribute", "id": 7, "model": "m", "checkpoint": "ckpt-0", "lr": 0.5,
           "contributor": "alice", "shard": "s0", "example_ids": [1, 2, 3],
           "grads": matrix(3, 4)}
    req.update(over)
    return {k: v for k, v in req.items() if v is not None}


def attribute(**over):
    req = {"op": "attribute", "id": "q1", "model": "m",
           "queries": {"ckpt-0": matrix(2, 4), "ckpt-1": matrix(2, 4, "f16")}}
    req.update(over)
    return {k: v for k, v in req.items() if v is not None}


def register(**over):
    req = {"op": "register", "id": [1, "a"], "model": "m", "input_dim": 4,
           "projection": {"kind": "rademacher", "dim": 2, "seed": 42}}
    req.update(over)
    return {k: v for k, v in req.items() if v is not None}


def every_type():
    """An info request whose id holds one of every msgpack format."""
    parts = [
        b"\xc0", b"\xc2", b"\xc3", b"\x05", b"\xff",            # nil, bools, fixints
        b"\xcc\x80", b"\xcd\x01\x00", b"\xce\x00\x01\x00\x00",  # uint 8/16/32
        b"\xcf" + (1 << 40).to_bytes(8, "big"),                 # uint64
        b"\xd0\x80", b"\xd1\x80\x00", b"\xd2\x80\x00\x00\x00",  # int 8/16/32
        b"\xd3" + (-(1 << 40)).to_bytes(8, "big", signed=True),  # int64
        b"\xca" + struct.pack(">f", 1.5), b"\xcb" + struct.pack(">d", 2.5),
        b"\xa1x", b"\xd9\x01y", b"\xda\x00\x01z", b"\xdb\x00\x00\x00\x01w",
        b"\xc4\x01\x00", b"\xc5\x00\x01\x00", b"\xc6\x00\x00\x00\x01\x00",
        b"\xd4\x01\x00", b"\xd5\x01" + b"\x00" * 2, b"\xd6\x01" + b"\x00" * 4,
        b"\xd7\x01" + b"\x00" * 8, b"\xd8\x01" + b"\x00" * 16,
        b"\xc7\x01\x05\x00", b"\xc8\x00\x01\x05\x00", b"\xc9\x00\x00\x00\x01\x05\x00",
        b"\xdc\x00\x01\xc0", b"\xdd\x00\x00\x00\x01\xc0",
        b"\xde\x00\x01\xa1k\xc0", b"\xdf\x00\x00\x00\x01\xa1k\xc0",
    ]
    idv = b"\xdc" + len(parts).to_bytes(2, "big") + b"".join(parts)
    return b"\x82" + pack("op") + pack("info") + pack("id") + idv


def nested(depth):
    """An info request whose id nests arrays so that the whole frame is `depth` deep."""
    return b"\x82" + pack("op") + pack("info") + pack("id") + b"\x91" * (depth - 2) + b"\x90"


SEEDS = {
    # valid requests
    "ok_info": pack({"op": "info"}),
    "ok_info_id": pack({"op": "info", "id": {"n": 1}}),
    "ok_stats": pack({"op": "stats", "id": 3}),
    "ok_every_type": every_type(),
    "ok_depth_32": nested(32),
    "ok_register": pack(register()),
    "ok_register_sjlt": pack(register(projection={"kind": "sjlt", "dim": 4, "seed": 1, "s": 2})),
    "ok_register_none": pack(register(projection={"kind": "none", "dim": 4, "seed": 0})),
    "ok_contribute": pack(contribute()),
    "ok_contribute_f16_weights": pack(contribute(grads=matrix(3, 4, "f16"),
                                                 weights=[1, 0.5, 2.0])),
    "ok_contribute_features": pack(contribute(grads=None, features=matrix(3, 2, "bf16"),
                                              curvature=False)),
    "ok_contribute_curvature": pack(contribute(contributor=None, shard=None, example_ids=None,
                                               curvature=True)),
    "ok_attribute": pack(attribute()),
    "ok_attribute_trak": pack(attribute(method="trak", aggregate="mean", topk=5,
                                        query_ids=[7, "x"], request_id="r-1",
                                        **{"lambda": {"ckpt-1": 0.25}})),
    "ok_attribute_features": pack(attribute(queries=None, query_features={"c": matrix(1, 2)},
                                            method="trak", topk=0)),
    "ok_attribute_float32": msgpack.packb(attribute(method="trak", **{"lambda": 0.5}),
                                          use_bin_type=True, use_single_float=True),
    "ok_contribute_float32": msgpack.packb(contribute(lr=0.25, weights=[0.5, 1.5, 2.5]),
                                          use_bin_type=True, use_single_float=True),
    # pre-check
    "bad_empty": b"",
    "bad_array32_huge": b"\xdd\xff\xff\xff\xff",
    "bad_map32_huge": b"\xdf\xff\xff\xff\xff",
    "bad_bin32_huge": b"\xc6\xff\xff\xff\xff",
    "bad_depth_33": nested(33),
    "bad_trailing": pack({"op": "info"}) + b"\xc0",
    "bad_truncated": pack(contribute())[:-3],
    "bad_never_used": b"\x81\xa2op\xc1",
    # request
    "bad_not_map": pack(["op", "info"]),
    "bad_unknown_op": pack({"op": "explode", "id": 1}),
    "bad_unknown_key": pack({"op": "info", "extra": 1}),
    "bad_duplicate_key": raw_map([("op", "stats"), ("id", 1), ("id", 2)]),
    "bad_op_missing": pack({"id": 1}),
    "bad_key_not_str": b"\x82" + pack("op") + pack("info") + pack(1) + pack(2),
    # names and numbers
    "bad_name_long": pack(contribute(model="m" * 257)),
    "bad_name_nul": pack(contribute(shard="s\x000")),
    "bad_name_utf8": pack(contribute(model="m")).replace(b"\xa1m", b"\xa1\xff", 1),
    "bad_lr_nan": pack(contribute(lr=float("nan"))),
    "bad_lr_zero": pack(contribute(lr=0)),
    # contribute
    "bad_data_short": pack(contribute(grads=matrix(3, 4, data=b"\x00" * 44))),
    "bad_rows_overflow": pack(contribute(grads=matrix(1 << 62, 1 << 3, data=b""))),
    "bad_example_ids_count": pack(contribute(example_ids=[1, 2])),
    "bad_example_ids_negative": pack(contribute(example_ids=[1, -2, 3])),
    "bad_weights_inf": pack(contribute(weights=[1, float("inf"), 1])),
    "bad_grads_and_features": pack(contribute(features=matrix(3, 2))),
    "bad_curvature_contributor": pack(contribute(shard=None, example_ids=None, curvature=True)),
    "bad_matrix_extra_key": pack(contribute(grads=dict(matrix(3, 4), order="C"))),
    # attribute
    "bad_queries_rows": pack(attribute(queries={"a": matrix(2, 4), "b": matrix(3, 4)})),
    "bad_queries_cols": pack(attribute(queries={"a": matrix(2, 4), "b": matrix(2, 5)})),
    "bad_queries_empty": pack(attribute(queries={})),
    "bad_queries_duplicate":
        b"\x83" + pack("op") + pack("attribute") + pack("model") + pack("m") + pack("queries")
        + raw_map([("c", matrix(1, 2)), ("c", matrix(1, 2))]),
    "bad_lambda_unknown_ckpt": pack(attribute(method="trak", **{"lambda": {"nope": 1.0}})),
    "bad_lambda_duplicate":
        b"\x85" + pack("op") + pack("attribute") + pack("model") + pack("m") + pack("method")
        + pack("trak") + pack("queries") + pack({"c": matrix(1, 2)}) + pack("lambda")
        + raw_map([("c", 1.0), ("c", 2.0)]),
    "bad_queries_and_features": pack(attribute(query_features={"c": matrix(2, 4)})),
    "bad_queries_missing": pack(attribute(queries=None)),
    "bad_lambda_for_dot": pack(attribute(**{"lambda": 0.5})),
    "bad_topk": pack(attribute(topk=100001)),
    "bad_query_ids_count": pack(attribute(query_ids=[1])),
    "bad_request_id_long": pack(attribute(request_id="r" * 300)),
    # register
    "bad_kind": pack(register(projection={"kind": "gaussian", "dim": 2, "seed": 1})),
    "bad_dim_zero": pack(register(projection={"kind": "rademacher", "dim": 0, "seed": 1})),
    "bad_s_not_sjlt": pack(register(projection={"kind": "rademacher", "dim": 2, "seed": 1,
                                                "s": 1})),
    "bad_s_divides": pack(register(projection={"kind": "sjlt", "dim": 4, "seed": 1, "s": 3})),
    "bad_input_dim_zero": pack(register(input_dim=0)),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
