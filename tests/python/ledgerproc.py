"""ledgerproc.py - starts a sediment-ledger for the Python tests (on top of workerproc)."""
import os
import subprocess
import tempfile

from workerproc import BIN, Worker


class Ledger(Worker):
    """A ledger process on an ephemeral loopback port with its own data dir."""

    def __init__(self, data=None, exe="sediment-ledger", args=(), env=None):
        if data is None:
            self.ledger_tmp = tempfile.TemporaryDirectory(prefix="sdm-ledger-")
            data = os.path.join(self.ledger_tmp.name, "data")
        super().__init__(data=data, exe=exe, args=args, env=env)

    def start(self, listen="tcp://127.0.0.1:0"):
        cmd = [os.path.join(BIN, self.exe), "--listen", listen, "--data", self.data,
               "--quiet"] + self.args
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("tcp://"):
            self.proc.wait(10)
            raise RuntimeError("ledger did not start: %r (exit %s)" % (line, self.proc.returncode))
        self.endpoint = line

    def close(self):
        super().close()
        if getattr(self, "ledger_tmp", None) is not None:
            self.ledger_tmp.cleanup()
