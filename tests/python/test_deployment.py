"""test_deployment.py - runs docs/deployment.md's commands, in order, as a reader would.

The page's ```sh blocks run one after another in a fresh folder (each under `sh -eu`, with the
variables set by earlier blocks); ```sh background blocks are servers, started and left
running (a server started on a data dir that an earlier one still holds stops that one first,
as the reader is told to). Ports 7710 and 7720 become free loopback ports. A reader would
notice a command that fails, a server that does not start, entries that never reach the
ledger, an audit that does not pass, or a pool that does not reach alice."""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from workerproc import BIN

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "deployment.md")
PROGRAMS = ("sediment", "sediment-worker", "sediment-ledger")


def blocks(text):
    """[(kind, code)] of the page's sh blocks, kind "sh" or "background"."""
    out = []
    for info, code in re.findall(r"^```(sh(?: background)?)\n(.*?)^```", text, re.M | re.S):
        out.append(("background" if info.endswith("background") else "sh", code))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(all(os.access(os.path.join(BIN, p), os.X_OK) for p in PROGRAMS),
                     "the sediment programs are not in SDM_BIN")
class Deployment(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sdm-deploy-")
        self.dir = self.tmp.name
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.abspath(BIN) + os.pathsep + self.env.get("PATH", "")
        self.env.pop("SEDIMENT_ENDPOINT", None)
        self.env.pop("SEDIMENT_LEDGER", None)
        self.env.setdefault("OMP_NUM_THREADS", "2")
        self.servers = []  # (data dir, Popen)
        self.ports = {"7710": str(free_port()), "7720": str(free_port())}

    def tearDown(self):
        for _, p in self.servers:
            self.stop(p)
        self.tmp.cleanup()

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stdout.close()
        return p.returncode

    def local(self, code):
        for port, free in self.ports.items():
            code = code.replace(":" + port, ":" + free)
        return code

    def start(self, code):
        data = re.search(r"--data (\S+)", code).group(1)
        for held, p in [s for s in self.servers if s[0] == data]:
            self.assertEqual(self.stop(p), 0, "stopping the server on %s" % held)
            self.servers.remove((held, p))
        p = subprocess.Popen(["sh", "-c", "exec " + code.replace("\\\n", " ")], cwd=self.dir,
                             env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.servers.append((data, p))
        line = p.stdout.readline().decode().strip()
        self.assertTrue(line.startswith("tcp://"), "%s did not start: %r" % (code, line))

    def run_sh(self, code, assigned):
        p = subprocess.run(["sh", "-euc", "".join(assigned) + code], cwd=self.dir, env=self.env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, "%s\nstdout: %s\nstderr: %s" % (code, p.stdout, p.stderr))
        assigned.extend(l + "\n" for l in code.splitlines() if re.match(r"^[A-Z]+=", l))
        return p.stdout

    def wait_delivered(self, assigned, want):
        deadline = time.time() + 60
        while True:
            stats = json.loads(self.run_sh("sediment --json stats $W\n", assigned))
            if stats["ledger"]["pending"] == 0 and stats["ledger"]["delivered"] >= want:
                return stats
            self.assertLess(time.time(), deadline, "the ledger link did not deliver: %r" % stats)
            time.sleep(0.2)

    def test_the_page_runs(self):
        with open(DOC) as f:
            steps = blocks(f.read())
        self.assertGreaterEqual(len(steps), 8)
        assigned, outputs = [], []
        for kind, code in steps:
            code = self.local(code)
            if kind == "background":
                self.start(code)
                continue
            out = self.run_sh(code, assigned)
            outputs.append(out)
            if "sediment stats $W" in code:
                # a reader looks until pending is 0: the receipt and the proof
                stats = self.wait_delivered(assigned, 2)
                self.assertEqual(stats["ledger"]["rejected"], 0)
        text = "".join(outputs)
        self.assertIn("signature ok", text)
        self.assertIn("audit passed", text)
        self.assertRegex(text, r"entries\s+2 fetched and checked")
        self.assertRegex(text, r"alice\s+1000")
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "seen.note")))
        # every hop was CURVE: the worker and the ledger refuse a plain client
        plain = subprocess.run(["sediment", "--timeout", "2", "info", "--endpoint",
                                "tcp://127.0.0.1:" + self.ports["7710"]], cwd=self.dir,
                               env=self.env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(plain.returncode, 0)
        for _, p in self.servers:
            self.assertEqual(self.stop(p), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
