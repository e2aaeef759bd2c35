"""ledgerproc.py - starts a sediment-ledger for the Python tests (on top of workerproc)."""
import os
import signal
import subprocess
import tempfile

import msgpack

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


def raw_fields(payload):
    """The msgpack map in payload as {key: the value's encoded bytes}, cut out as they are
    (so that an embedded envelope can be compared byte for byte)."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(payload)
    out = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        start = u.tell()
        u.skip()
        out[key] = payload[start:u.tell()]
    return out


def start_refused(data, args=(), exe="sediment-ledger", timeout=60):
    """Runs a ledger that is expected not to start: (exit status, stderr text). A ledger that
    does start (prints its endpoint) is killed and reported as (None, its endpoint)."""
    cmd = [os.path.join(BIN, exe), "--listen", "tcp://127.0.0.1:0", "--data", data] + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode().strip()
    if line.startswith("tcp://"):
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=timeout)
        return None, line
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")
