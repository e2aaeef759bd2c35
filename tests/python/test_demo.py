"""test_demo.py - `sediment demo --quick`: the whole pipeline (an in-process worker and ledger,
ten contributors, trak attribution, ledger verification, rewards) at reduced size. A user would
notice if the corrupted contributor were not flagged, if any receipt or proof were missing from
the ledger or failed to verify, or if the reward table did not add up to the pool."""
import json
import os
import subprocess
import tempfile
import unittest

BIN = os.environ.get("SDM_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))


def run_demo(*args):
    p = subprocess.run([os.path.join(BIN, "sediment")] + list(args), capture_output=True,
                       timeout=300)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class DemoCommand(unittest.TestCase):
    def test_quick_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "run")
            rc, out, err = run_demo("--json", "demo", "--quick", "--data", data, "--pool", "1000")
            self.assertEqual(rc, 0, err)
            doc = json.loads(out)

            # the ledger holds every receipt and the proof, and each entry verified
            led = doc["ledger"]
            n_ckpt = len(doc["checkpoints"])
            self.assertGreaterEqual(n_ckpt, 2)
            self.assertEqual(led["receipts"], n_ckpt * (10 + 1))  # 10 shards + curvature
            self.assertEqual(led["proofs"], 1)
            self.assertEqual(led["size"], led["receipts"] + led["proofs"])
            self.assertEqual(led["verified"], led["size"])
            self.assertEqual(len(led["root"]), 64)

            # the contributor table
            rows = {r["contributor"]: r for r in doc["contributors"]}
            self.assertEqual(len(rows), 10)
            bad = rows[doc["corrupt"]]
            self.assertEqual(bad["role"], "corrupted")
            self.assertLess(bad["score"], 0)
            self.assertTrue(bad["flagged"])
            self.assertEqual(bad["reward"], 0)
            for name, r in rows.items():
                if name != doc["corrupt"]:
                    self.assertGreater(r["score"], 0, name)
                    self.assertFalse(r["flagged"], name)
                    self.assertGreater(r["reward"], 0, name)
            self.assertEqual(sum(r["reward"] for r in rows.values()) + doc["unallocated"], 1000)
            self.assertEqual(doc["unallocated"], 0)
            # the copier sent contributor 0's examples: the same gradients, the same score,
            # and it is told apart as the copy (c0's receipts came first); nobody else is
            self.assertAlmostEqual(rows[doc["copier"]]["score"], rows["c0"]["score"],
                                   delta=1e-6 * abs(rows["c0"]["score"]))
            self.assertEqual(rows[doc["copier"]]["copy_of"], "c0")
            for name, r in rows.items():
                if name != doc["copier"]:
                    self.assertIsNone(r["copy_of"], name)

            # progress went to stderr, and the data dir is left for inspection
            self.assertIn("verified", err)
            self.assertTrue(os.path.isfile(os.path.join(data, "ledger", "ledger.db")))
            self.assertTrue(os.path.isdir(os.path.join(data, "worker")))
            self.assertEqual(doc["data_dir"], data)

            # a second run into the same dir is refused and leaves the log as it was
            before = os.path.getsize(os.path.join(data, "ledger", "ledger.db"))
            rc, out, err = run_demo("demo", "--quick", "--quiet", "--data", data)
            self.assertEqual(rc, 1)
            self.assertIn("--data", err)
            self.assertEqual(out, "")
            self.assertEqual(os.path.getsize(os.path.join(data, "ledger", "ledger.db")), before)

    def test_table_and_bad_options(self):
        rc, out, _ = run_demo("demo", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("--pool", out)
        rc, _, err = run_demo("demo", "--contributors", "2")
        self.assertEqual(rc, 2)
        self.assertIn("--contributors", err)
        rc, _, err = run_demo("demo", "--pool", "lots")
        self.assertEqual(rc, 2)
        self.assertIn("--pool", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
