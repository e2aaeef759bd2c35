"""workerproc.py - starts a sediment-worker for the Python tests and speaks raw msgpack to it."""
import os
import signal
import subprocess
import tempfile

import msgpack
import zmq

BIN = os.environ.get("SDM_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))


class Worker:
    """A worker process on an ephemeral loopback port with its own data dir."""

    def __init__(self, data=None, exe="sediment-worker", args=(), env=None):
        self.tmp = None
        if data is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="sdm-worker-")
            data = os.path.join(self.tmp.name, "data")
        self.data = data
        self.exe = exe
        self.args = list(args)
        self.env = env
        self.proc = None
        self.endpoint = None
        self.start()

    def start(self, listen="tcp://127.0.0.1:0"):
        cmd = [os.path.join(BIN, self.exe), "--listen", listen, "--data", self.data,
               "--backend", "cpu", "--quiet"] + self.args
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "2")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("tcp://"):
            self.proc.wait(10)
            raise RuntimeError("worker did not start: %r (exit %s)" % (line, self.proc.returncode))
        self.endpoint = line

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the worker and returns its exit status."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def close(self):
        if self.alive():
            self.stop(signal.SIGKILL)
        if self.tmp is not None:
            self.tmp.cleanup()


class Raw:
    """A DEALER socket that sends frames as they are (with the empty delimiter)."""

    def __init__(self, endpoint, timeout_ms=30000, ctx=None, curve=None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            server_pub, pub, sec = curve
            self.sock.curve_serverkey = server_pub
            self.sock.curve_publickey = pub
            self.sock.curve_secretkey = sec
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms
        self.next_id = 1

    def send_bytes(self, payload):
        self.sock.send_multipart([b"", payload])

    def recv(self, timeout_ms=None):
        if not self.sock.poll(self.timeout_ms if timeout_ms is None else timeout_ms):
            raise TimeoutError("no reply")
        frames = self.sock.recv_multipart()
        assert frames[0] == b"", frames
        return msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)

    def call_bytes(self, payload, timeout_ms=None):
        self.send_bytes(payload)
        return self.recv(timeout_ms)

    def call(self, op, **fields):
        req = {"op": op, "id": self.next_id}
        self.next_id += 1
        req.update(fields)
        rep = self.call_bytes(msgpack.packb(req, use_bin_type=True))
        assert rep.get("id") == req["id"], (rep, req["id"])
        return rep

    def close(self):
        self.sock.close(0)


def matrix(a, dtype="f32"):
    import numpy as np
    a = np.ascontiguousarray(a)
    if dtype == "f32":
        data = a.astype("<f4").tobytes()
    elif dtype == "f16":
        data = a.astype("<f2").tobytes()
    else:
        raise ValueError(dtype)
    return {"dtype": dtype, "rows": a.shape[0], "cols": a.shape[1], "data": data}
