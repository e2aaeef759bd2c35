"""test_eval_cli.py - `sediment eval` runs sediment-eval (beside it) in its place: --quick, global
--json, a clear error without sediment-eval, and figures that say the attributions carry signal (trak well above dot, and far
above zero), so a broken wiring or a broken pipeline fails here."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("SDM_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))


class EvalCommand(unittest.TestCase):
    def run_eval(self, *args):
        p = subprocess.run([os.path.join(BIN, "sediment")] + list(args), capture_output=True,
                           timeout=300)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_quick_json(self):
        rc, out, err = self.run_eval("--json", "eval", "--quick", "--model", "logreg", "--quiet")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        run = doc["runs"][0]
        self.assertEqual(run["model"], "logreg")
        self.assertTrue(run["train"]["converged"])
        rows = {(r["name"], r["projection"]): r for r in run["rows"]}
        trak, dot = rows[("trak curv", "none")], rows[("dot", "none")]
        for r in run["rows"]:
            for key in ("lds_shard", "lds_example"):
                self.assertGreaterEqual(r[key], -1.0)
                self.assertLessEqual(r[key], 1.0)
        self.assertGreater(trak["lds_shard"], 0.6)
        self.assertGreater(trak["lds_shard"], dot["lds_shard"] + 0.2)
        self.assertGreater(trak["auc"], 0.8)
        path = run["tracin_path"]
        self.assertEqual(path["checkpoints"], 4)
        self.assertEqual(path["steps"], 200)
        self.assertGreater(path["lr"], 0)
        tracin = rows[("tracin-cp", "none")]
        self.assertEqual(tracin["checkpoints"], 4)
        self.assertEqual(tracin["method"], "dot")
        self.assertEqual(rows[("trak curv ckpts", "none")]["checkpoints"], 4)
        self.assertEqual(trak["checkpoints"], 1)

    def test_help_and_bad_option(self):
        rc, out, _ = self.run_eval("eval", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("--quick", out)
        rc, _, err = self.run_eval("eval", "--model", "forest")
        self.assertEqual(rc, 2)
        self.assertIn("--model", err)

    # without the program beside it, eval and demo say which program and how to build it
    def test_missing_program_beside(self):
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(BIN, "sediment"), d)
            for cmd, prog in [("eval", "sediment-eval"), ("demo", "sediment-demo")]:
                p = subprocess.run([os.path.join(d, "sediment"), cmd, "--quick"], capture_output=True,
                                   timeout=60)
                self.assertEqual(p.returncode, 1, cmd)
                err = p.stderr.decode()
                self.assertIn("sediment %s: cannot run %s" % (cmd, os.path.join(os.path.realpath(d), prog)), err)
                self.assertIn("--target %s" % prog, err)
                self.assertEqual(p.stdout, b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
