"""test_torch_example.py - runs clients/python/examples/torch_digits.py against a live worker.

A user following clients/python/examples/README.md would notice if the example crashed, if a
receipt or the proof did not verify against the worker's key, or if the contributor who sent
shuffled labels were not ranked last. Skipped when python3-torch is not installed."""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import unittest
from unittest import mock

import workerproc

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "clients", "python", "examples", "torch_digits.py")
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def run_example(*args, timeout=300):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    p = subprocess.run([sys.executable, EXAMPLE] + list(args), capture_output=True,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Options(unittest.TestCase):
    """Argument checks happen before torch is imported, so these run everywhere."""

    def test_help(self):
        rc, out, _ = run_example("--help")
        self.assertEqual(rc, 0)
        for opt in ("--endpoint", "--checkpoints", "--json"):
            self.assertIn(opt, out)

    def test_bad_checkpoints(self):
        rc, _, err = run_example("--checkpoints", "0")
        self.assertEqual(rc, 2)
        self.assertIn("--checkpoints", err)


@unittest.skipUnless(HAVE_TORCH, "python3-torch not installed")
class TorchExample(unittest.TestCase):
    def setUp(self):
        self.worker = workerproc.Worker()

    def tearDown(self):
        self.worker.close()

    def test_reduced_run(self):
        rc, out, err = run_example("--endpoint", self.worker.endpoint, "--checkpoints", "2",
                                   "--train", "500", "--test", "80", "--epochs", "10",
                                   "--hidden", "16", "--dim", "128", "--json")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertTrue(doc["proof_verified"])
        self.assertTrue(doc["receipts_verified"])
        self.assertIn("proof verified", err)
        self.assertEqual(doc["checkpoints"], ["epoch-5", "epoch-10"])
        rows = doc["contributors"]
        self.assertEqual(len(rows), 5)
        self.assertEqual(sum(r["examples"] for r in rows), 500)
        # rows are ranked by score: the shuffled-label contributor comes last
        self.assertEqual(rows[-1]["contributor"], doc["noisy"])
        self.assertEqual(min(rows, key=lambda r: r["score"])["contributor"], doc["noisy"])
        self.assertGreater(rows[0]["score"], 0)

        # a second run against the same worker makes its own model and also verifies
        rc, out, err = run_example("--endpoint", self.worker.endpoint, "--checkpoints", "1",
                                   "--train", "100", "--test", "10", "--epochs", "2",
                                   "--hidden", "8", "--dim", "32")
        self.assertEqual(rc, 0, err)
        self.assertIn("proof verified", out)
        self.assertIn("noisy", out)

    def test_features_projected_here_give_the_same_scores(self):
        common = ["--endpoint", self.worker.endpoint, "--checkpoints", "2", "--train", "200",
                  "--test", "30", "--epochs", "4", "--hidden", "8", "--dim", "64", "--json"]
        runs = {}
        for send in ("grads", "features"):
            rc, out, err = run_example(*(common + ["--send", send]))
            self.assertEqual(rc, 0, err)
            runs[send] = json.loads(out)
            self.assertEqual(runs[send]["sent"], send)
            self.assertTrue(runs[send]["proof_verified"])
            self.assertTrue(runs[send]["receipts_verified"])
        self.assertIn("projecting here", err)
        g = {r["contributor"]: r["score"] for r in runs["grads"]["contributors"]}
        f = {r["contributor"]: r["score"] for r in runs["features"]["contributors"]}
        self.assertEqual(set(g), set(f))
        scale = max(abs(v) for v in g.values())
        for name in g:
            self.assertAlmostEqual(f[name], g[name], delta=1e-4 * scale, msg=name)

    def test_tampered_proof_fails(self):
        # in-process, with attribute() flipping one bit of the proof's signature on its way
        # back: the example must report it and exit 1 rather than print a trusted table
        import torch  # noqa: F401  imported here, not under the redirected streams below
        sys.path.insert(0, os.path.dirname(EXAMPLE))
        import torch_digits
        real = torch_digits.sc.Client.attribute

        def tampered(client, *args, **kwargs):
            reply = real(client, *args, **kwargs)
            tag, body, key, sig = reply["proof"]
            reply["proof"] = [tag, body, key, bytes([sig[0] ^ 1]) + sig[1:]]
            return reply

        err = io.StringIO()
        with mock.patch.object(torch_digits.sc.Client, "attribute", tampered), \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = torch_digits.main(["--endpoint", self.worker.endpoint, "--checkpoints", "1",
                                    "--train", "100", "--test", "10", "--epochs", "2",
                                    "--hidden", "8", "--dim", "32"])
        self.assertEqual(rc, 1)
        said = err.getvalue()
        self.assertIn("VERIFICATION FAILED: proof", said)
        self.assertIn("signature", said)

    def test_no_worker(self):
        # nothing listens here: the client times out and the example says where it looked
        port = self.worker.endpoint.rsplit(":", 1)[1]
        self.worker.stop()
        rc, _, err = run_example("--endpoint", "tcp://127.0.0.1:%s" % port, "--checkpoints", "1",
                                 "--train", "100", "--test", "10", "--epochs", "1",
                                 "--hidden", "4", "--dim", "16", "--timeout", "1")
        self.assertEqual(rc, 3)
        self.assertIn("127.0.0.1:%s" % port, err)


if __name__ == "__main__":
    unittest.main()
