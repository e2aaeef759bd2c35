"""test_disk_full.py - a worker and a ledger whose disk fills up. The file-size limit
(RLIMIT_FSIZE, with SIGXFSZ ignored) makes every write past it fail the way a full disk does:
the request that cannot be made durable is answered `internal` and never acknowledged, the
server stays up and keeps answering what needs no write, the operator is told once (not once
per retry), and after a restart with room again everything acknowledged is there, nothing
else, and the refused requests go through."""
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import unittest

from workerproc import BIN, Raw
from test_ledger import append_frame
from test_worker_ledger import contribute, register


class Server:
    """A worker or ledger process (not quiet: its log is read) whose files may not grow past
    limit bytes, or without a limit."""

    def __init__(self, test, exe, data, limit=None, args=()):
        self.log_path = data + ".log-%d" % len(os.listdir(os.path.dirname(data)))

        def pre():
            if limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        self.log = open(self.log_path, "w")
        env = dict(os.environ, OMP_NUM_THREADS="2")
        self.proc = subprocess.Popen([os.path.join(BIN, exe), "--listen", "tcp://127.0.0.1:0",
                                      "--data", data] + list(args), stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, preexec_fn=pre)
        line = self.proc.stdout.readline().decode().strip()
        test.assertTrue(line.startswith("tcp://"), (line, self.text()))
        self.c = Raw(line)
        test.addCleanup(self.close)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        self.c.close()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.proc.stdout.close()
        self.log.close()
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if not self.proc.stdout.closed:
            self.proc.stdout.close()
            self.c.close()
        self.log.close()


def fill(call, n_max, refused_in_a_row=4):
    """Calls call(i) for i = 0, 1, ... until refused_in_a_row refusals in a row: the answers'
    indices split into (acknowledged, refused) and every refusal answer."""
    ok, refused, errors = [], [], []
    for i in range(n_max):
        rep = call(i)
        if rep["ok"]:
            ok.append(i)
        else:
            refused.append(i)
            errors.append(rep["error"])
            if len(refused) >= refused_in_a_row and refused[-refused_in_a_row] == i - refused_in_a_row + 1:
                break
    return ok, refused, errors


class DiskFull(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="sdm-diskfull-")
        self.addCleanup(shutil.rmtree, self.d, True)

    def test_worker(self):
        data = os.path.join(self.d, "worker")
        w = Server(self, "sediment-worker", data, limit=1 << 20, args=["--backend", "cpu"])
        register(w.c)
        receipts = {}

        def one(b):
            rep = w.c.call("contribute", **batch(b))
            if rep["ok"]:
                receipts[b] = rep["store_root"]
            return rep

        ok, refused, errors = fill(one, 2000)
        self.assertGreater(len(ok), 10)
        self.assertEqual(ok, list(range(len(ok))))  # nothing acknowledged after the first refusal
        self.assertTrue(refused, "the disk never filled")
        for e in errors:
            self.assertEqual(e["code"], "internal", e)
            self.assertIn("sediment.db", e["message"])
        # still up: reads and attributions need no write
        info = w.c.call("info")
        self.assertTrue(info["ok"], info)
        size, root = info["models"][0]["store_size"], info["models"][0]["store_root"]
        self.assertEqual(root, receipts[ok[-1]])
        att = w.c.call("attribute", model="m", query_features={"c0": ones(1)}, topk=2)
        self.assertTrue(att["ok"], att)
        stats = w.c.call("stats")
        self.assertEqual(stats["errors"]["internal"], len(refused))
        self.assertEqual(w.stop(), 0)
        log = w.text()
        # told once, not once per refusal
        self.assertEqual(log.count("internal error answered"), 1, log)
        self.assertIn("internal error answered: contribute: store: sediment.db", log)

        # room again: the acknowledged batches and nothing else, and the refused ones go in
        w = Server(self, "sediment-worker", data, args=["--backend", "cpu"])
        info = w.c.call("info")["models"][0]
        self.assertEqual((info["store_size"], info["store_root"]), (size, root))
        for b in refused:
            rep = w.c.call("contribute", **batch(b))
            self.assertTrue(rep["ok"], rep)
        self.assertEqual(w.c.call("info")["models"][0]["store_size"], size + len(refused))
        self.assertEqual(w.stop(), 0)

    def test_ledger(self):
        # receipts from a worker with room, appended to a ledger without
        w = Server(self, "sediment-worker", os.path.join(self.d, "worker"), args=["--backend", "cpu"])
        register(w.c)
        envs = [contribute(w.c, b) for b in range(1500)]
        self.assertEqual(w.stop(), 0)
        data = os.path.join(self.d, "ledger")
        led = Server(self, "sediment-ledger", data, limit=1 << 20)
        answers = {}

        def one(i):
            rep = led.c.call_bytes(append_frame(envs[i], led.c.next_id))
            led.c.next_id += 1
            if rep["ok"]:
                answers[i] = rep["index"]
            return rep

        ok, refused, errors = fill(one, len(envs))
        self.assertGreater(len(ok), 10)
        self.assertTrue(refused, "the disk never filled")
        self.assertEqual(ok, list(range(len(ok))))
        self.assertEqual([answers[i] for i in ok], list(range(len(ok))))
        for e in errors:
            self.assertEqual(e["code"], "internal", e)
        info = led.c.call("info")
        self.assertTrue(info["ok"], info)
        self.assertEqual(info["size"], len(ok))
        cp = led.c.call("checkpoint")
        self.assertTrue(cp["ok"], cp)
        self.assertEqual(led.stop(), 0)
        log = led.text()
        self.assertEqual(log.count("internal error answered"), 1, log)
        self.assertIn("internal error answered: append: not appended: ledger.db:", log)

        led = Server(self, "sediment-ledger", data)
        self.assertEqual(led.c.call("info")["size"], len(ok))
        for i in ok[-3:]:
            rep = led.c.call("entry", index=i)
            self.assertTrue(rep["ok"], rep)
        for i in refused:
            rep = led.c.call_bytes(append_frame(envs[i], led.c.next_id))
            led.c.next_id += 1
            self.assertTrue(rep["ok"], rep)
            self.assertFalse(rep["duplicate"], rep)
        self.assertEqual(led.c.call("info")["size"], len(ok) + len(refused))
        self.assertEqual(led.stop(), 0)


def ones(m):
    import numpy as np
    from workerproc import matrix
    from test_worker_ledger import K
    return matrix(np.ones((m, K), np.float32))


def batch(b):
    import numpy as np
    from workerproc import matrix
    from test_worker_ledger import D
    g = np.random.default_rng(b).standard_normal((32, D)).astype(np.float32)
    return dict(model="m", checkpoint="c0", lr=0.5, contributor="c%d" % (b % 2), shard="s%d" % (b % 2),
                example_ids=list(range(32 * b, 32 * b + 32)), grads=matrix(g))


if __name__ == "__main__":
    unittest.main(verbosity=2)
