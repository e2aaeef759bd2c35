"""test_torch_projection.py - sediment_torch's projections against SPEC's known answers, the
numpy reference in sediment_client, and a live worker.

A PyTorch client that projects on its own device and sends features must get what the worker
would have made of the gradients: the same signs and buckets bit for bit, the same features to
f32 rounding, and the same attribution. Skipped when python3-torch is not installed."""
import importlib.util
import json
import os
import unittest

import numpy as np

import sediment_client as sc
import workerproc

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if HAVE_TORCH:
    import torch

    import sediment_torch as st

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def rel_err(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class Offline(unittest.TestCase):

    def test_philox_matches_the_numpy_reference(self):
        rng = np.random.default_rng(3)
        ctr = [rng.integers(0, 2 ** 32, size=4096, dtype=np.uint64) for _ in range(4)]
        ctr[0][:4] = [0, 2 ** 32 - 1, 1, 0x80000000]
        for key in ((0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0xDEADBEEF, 7)):
            want = sc.philox4x32(ctr, key)
            got = st.philox4x32([torch.from_numpy(c.astype(np.int64)) for c in ctr], key)
            for w, g in zip(want, got):
                np.testing.assert_array_equal(g.numpy().astype(np.uint64), w)

    def test_known_answer_signs_and_buckets(self):
        with open(os.path.join(TESTDATA, "reference_vectors.json")) as f:
            ref = json.load(f)
        for name in ("rademacher_signs_seed42_d5_k300", "rademacher_signs_seed2^40+7_d3_k130"):
            case = ref[name]
            P = st.rademacher_rows(0, case["d"], case["k"], case["seed"])
            got = ["".join("-" if x < 0 else "+" for x in row) for row in P.tolist()]
            self.assertEqual(got, case["sign_rows"], name)
        case = ref["sjlt_seed7_d6_k64_s4"]
        proj = st.Projector("sjlt", case["d"], case["k"], case["seed"], s=case["s"])
        P = proj(torch.eye(case["d"], dtype=torch.float64)).numpy()
        for j, nonzeros in enumerate(case["nonzeros"]):
            want = np.zeros(case["k"])
            for col, v in nonzeros:
                want[col] += v
            np.testing.assert_allclose(P[j], want, rtol=0, atol=1e-7)

    def test_features_match_the_float64_reference(self):
        rng = np.random.default_rng(5)
        seed = 2 ** 40 + 7
        for d, k in ((1, 1), (257, 130), (3000, 300)):
            g = rng.standard_normal((9, d)).astype(np.float32)
            want = sc.rademacher_project(g, k, seed)
            for cache_bytes, block_bytes in ((1 << 28, 1 << 26), (0, 1 << 14)):
                proj = st.Projector("rademacher", d, k, seed, cache_bytes=cache_bytes,
                                    block_bytes=block_bytes)
                got = proj(torch.from_numpy(g))
                self.assertEqual(got.dtype, torch.float32)
                self.assertLess(rel_err(got, want), 1e-5, (d, k, cache_bytes))
            for s in (1, 2, 5):
                want = sc.sjlt_project(g, 10 * s, seed, s)
                for cache_bytes in (1 << 28, 0):
                    proj = st.Projector("sjlt", d, 10 * s, seed, s=s, cache_bytes=cache_bytes,
                                        block_bytes=1 << 10)
                    self.assertLess(rel_err(proj(torch.from_numpy(g)), want), 1e-5, (d, s))
        g = rng.standard_normal((4, 33)).astype(np.float32)
        np.testing.assert_array_equal(st.Projector("none", 33, 33, 0)(torch.from_numpy(g)).numpy(),
                                      g)

    def test_half_inputs_are_widened_exactly(self):
        rng = np.random.default_rng(6)
        g = torch.from_numpy(rng.standard_normal((5, 700)).astype(np.float32))
        proj = st.Projector("rademacher", 700, 96, 11)
        for dt in (torch.float16, torch.bfloat16):
            h = g.to(dt)
            self.assertTrue(torch.equal(proj(h), proj(h.to(torch.float32))), dt)

    def test_bad_input_names_the_field(self):
        proj = st.Projector("rademacher", 10, 4, 1)
        for bad, field in ((torch.zeros(3, 11), "grads"), (torch.zeros(10), "grads"),
                           (torch.zeros(2, 10, dtype=torch.int64), "grads"),
                           (torch.tensor([[float("nan")] * 10]), "NaN")):
            with self.assertRaises(ValueError) as cm:
                proj(bad)
            self.assertIn(field, str(cm.exception))
        for args, kw, field in ((("gaussian", 10, 4, 1), {}, "kind"),
                                (("sjlt", 10, 6, 1), {"s": 4}, "s"),
                                (("none", 10, 4, 1), {}, "dim"),
                                (("rademacher", 10, 4, -1), {}, "seed"),
                                (("rademacher", 0, 4, 1), {}, "input_dim")):
            with self.assertRaises(ValueError) as cm:
                st.Projector(*args, **kw)
            self.assertIn(field, str(cm.exception))


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
@unittest.skipUnless(os.access(os.path.join(workerproc.BIN, "sediment-worker"), os.X_OK),
                     "no sediment-worker in SDM_BIN")
class AtTheWorker(unittest.TestCase):
    """Two models with the same projection: one is sent gradients, the other the features
    sediment_torch made of them; attribution must agree."""

    def test_features_sent_score_like_gradients_sent(self):
        rng = np.random.default_rng(7)
        d, k, seed = 257, 130, 2 ** 40 + 7
        proj = st.Projector("rademacher", d, k, seed)
        w = workerproc.Worker()
        self.addCleanup(w.close)
        with sc.Client(w.endpoint, timeout=60) as c:
            for model in ("grads", "feats"):
                c.register(model, d, "rademacher", k, seed)
            for i, (who, shard) in enumerate((("alice", "a1"), ("bob", "b1"), ("alice", "a2"))):
                g = rng.standard_normal((6, d)).astype(np.float32)
                ids = list(range(10 * i, 10 * i + 6))
                c.contribute("grads", "c0", 0.5, who, shard, ids, grads=g)
                c.contribute("feats", "c0", 0.5, who, shard, ids,
                             features=proj(torch.from_numpy(g)).numpy())
            q = rng.standard_normal((3, d)).astype(np.float32)
            a = c.attribute("grads", queries={"c0": q}, topk=4)["result"]
            b = c.attribute("feats", query_features={"c0": proj(torch.from_numpy(q)).numpy()},
                            topk=4)["result"]
        for qa, qb in zip(a, b):
            self.assertLess(rel_err([r[2] for r in qb["shards"]], [r[2] for r in qa["shards"]]),
                            1e-5)
            self.assertEqual([r[0] for r in qb["shards"]], [r[0] for r in qa["shards"]])
            self.assertEqual([r[0] for r in qb["top"]], [r[0] for r in qa["top"]])
            self.assertEqual([r[0] for r in qb["bottom"]], [r[0] for r in qa["bottom"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
