#!/usr/bin/python3
"""numpy_attribute.py - SPEC §3 attribution in numpy, the baseline sediment-bench compares to.

The same maths as sediment's attribute over one checkpoint: scores S = Q' F^T (Q' = Q for
dot, unit rows for cosine, Q (K + lambda I)^-1 for trak with K cached), shard sums through a
one-hot matrix product, shares, and the top-k highest and lowest per query. Shapes and data
mirror sediment-bench's attribute case. Prints the median time; --json for scripts.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200000, help="training examples")
    ap.add_argument("--m", type=int, default=64, help="queries")
    ap.add_argument("--k", type=int, default=1024, help="feature dimension")
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--method", choices=["dot", "cosine", "trak"], default="dot")
    ap.add_argument("--reps", type=int, default=5, help="timed runs (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="BLAS threads (0: all cores)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if a.threads > 0:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[v] = str(a.threads)
    import numpy as np  # after the thread variables are set

    rng = np.random.default_rng(1)
    F = rng.uniform(-1, 1, size=(a.n, a.k)).astype(np.float32)
    Q = rng.uniform(-1, 1, size=(a.m, a.k)).astype(np.float32)
    batch = 4096
    shard_of = (np.arange(a.n) // batch) % a.shards
    onehot = np.zeros((a.n, a.shards), dtype=np.float32)
    onehot[np.arange(a.n), shard_of] = 1
    K = None
    if a.method == "trak":
        K = F.T.astype(np.float64) @ F.astype(np.float64)  # cached, like sediment's K
    norms = np.linalg.norm(F, axis=1) if a.method == "cosine" else None

    def attribute():
        q = Q.astype(np.float64)
        f = F
        if a.method == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
            f = F / np.where(norms > 0, norms, 1)[:, None]
        elif a.method == "trak":
            lam = 0.3 * np.trace(K) / a.k
            L = np.linalg.cholesky(K + lam * np.eye(a.k))
            q = np.linalg.solve(L.T, np.linalg.solve(L, q.T)).T
        S = q.astype(np.float32) @ f.T
        A = (S @ onehot).astype(np.float64)
        pos = np.maximum(A, 0)
        den = pos.sum(axis=1, keepdims=True)
        shares = np.divide(pos, den, out=np.zeros_like(pos), where=den > 0)
        top = np.argpartition(-S, a.topk, axis=1)[:, :a.topk]
        bot = np.argpartition(S, a.topk, axis=1)[:, :a.topk]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1, kind="stable"), 1)
        bot = np.take_along_axis(bot, np.argsort(np.take_along_axis(S, bot, 1), 1, kind="stable"), 1)
        return A, shares, top, bot

    attribute()  # warm-up
    times = []
    for i in range(a.reps):
        t0 = time.perf_counter()
        attribute()
        times.append(time.perf_counter() - t0)
        print(f"numpy: run {i + 1}/{a.reps}: {times[-1]:.4f} s", file=sys.stderr)
    med = float(np.median(times))
    out = {"impl": "numpy " + np.__version__, "method": a.method, "n": a.n, "m": a.m, "k": a.k,
           "topk": a.topk, "median_s": med}
    print(json.dumps(out) if a.json else f"numpy attribute {a.method} n={a.n} m={a.m} k={a.k}: {med:.4f} s")


if __name__ == "__main__":
    main()
