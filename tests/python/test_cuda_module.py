"""test_cuda_module.py - the cuda backend as a module (lib/libsediment_cuda.so) that the engine
loads only when it wants a device: programs do not link the CUDA libraries, `--backend auto`
runs on the cpu when the module cannot be loaded and says why, `--backend cuda` refuses to
start with the reason, and a module of another kind is refused by name. Only for builds with
CUDA (the module exists); a cpu-only build has nothing of this to check."""
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from workerproc import BIN, Raw

MODULE = os.path.join(BIN, "..", "lib", "libsediment_cuda.so")


def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, check=True).stdout.decode()
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@unittest.skipUnless(os.path.exists(MODULE), "a build without CUDA: no cuda module")
class CudaModule(unittest.TestCase):
    def worker(self, backend, module):
        """Starts sediment-worker (not quiet); returns (process or None, stderr so far)."""
        d = tempfile.mkdtemp(prefix="sdm-cudamod-")
        self.addCleanup(shutil.rmtree, d, True)
        env = dict(os.environ, OMP_NUM_THREADS="2")
        env.pop("SDM_CUDA_MODULE", None)
        if module is not None:
            env["SDM_CUDA_MODULE"] = module
        err = open(os.path.join(d, "log"), "w+")
        self.addCleanup(err.close)
        p = subprocess.Popen([os.path.join(BIN, "sediment-worker"), "--listen", "tcp://127.0.0.1:0",
                              "--data", os.path.join(d, "data"), "--backend", backend],
                             stdout=subprocess.PIPE, stderr=err, env=env)
        line = p.stdout.readline().decode().strip()
        if not line.startswith("tcp://"):
            p.wait(30)
            p.stdout.close()
            err.seek(0)
            return None, p.returncode, err.read()
        c = Raw(line)
        info = c.call("info")
        c.close()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(30), 0)
        p.stdout.close()
        err.seek(0)
        return info, 0, err.read()

    def test_programs_do_not_link_cuda(self):
        for prog in ["sediment-worker", "sediment-ledger", "sediment", "sediment-eval", "sediment-demo"]:
            libs = needed(os.path.join(BIN, prog))
            self.assertFalse([l for l in libs if l.startswith(("libcudart", "libcublas", "libcusolver"))],
                             (prog, libs))
        libs = needed(MODULE)
        for want in ["libcudart", "libcublas", "libcusolver"]:
            self.assertTrue(any(l.startswith(want) for l in libs), (want, libs))

    def test_auto_without_the_module_runs_on_cpu_and_says_why(self):
        info, rc, log = self.worker("auto", "/nonexistent/libsediment_cuda.so")
        self.assertIsNotNone(info, log)
        self.assertEqual(info["backend"], "cpu")
        self.assertIn("using cpu", log)
        self.assertIn("SDM_CUDA_MODULE=/nonexistent/libsediment_cuda.so does not exist", log)

    def test_cuda_without_the_module_refuses_to_start(self):
        info, rc, log = self.worker("cuda", "/nonexistent/libsediment_cuda.so")
        self.assertIsNone(info)
        self.assertNotEqual(rc, 0)
        self.assertIn("SDM_CUDA_MODULE=/nonexistent/libsediment_cuda.so does not exist", log)

    def test_a_file_that_is_not_the_module_is_refused_by_name(self):
        with tempfile.TemporaryDirectory() as d:
            bogus = os.path.join(d, "libsediment_cuda.so")
            with open(bogus, "wb") as f:
                f.write(b"not a shared object\n")
            info, rc, log = self.worker("cuda", bogus)
            self.assertIsNone(info)
            self.assertIn("cannot load the cuda module %s" % bogus, log)
            # a real shared object without the entry points: another build's, or another library
            other = os.path.join(d, "other.so")
            shutil.copy(subprocess.run(["sh", "-c", "ldconfig -p | awk '/libz.so.1 / {print $NF; exit}'"],
                                       capture_output=True, check=True).stdout.decode().strip(), other)
            info, rc, log = self.worker("cuda", other)
            self.assertIsNone(info)
            self.assertIn("the cuda module %s is not of this build (an entry point is missing)" % other, log)

    def test_the_module_is_found_beside_the_build(self):
        # found in ../lib by default and by SDM_CUDA_MODULE: then only the device decides
        for module in [None, os.path.realpath(MODULE)]:
            info, rc, log = self.worker("auto", module)
            self.assertIsNotNone(info, log)
            self.assertNotIn("cuda module", log)
            if info["backend"] == "cpu":  # this machine has no usable device
                self.assertIn("using cpu", log)
            else:
                self.assertEqual(info["backend"], "cuda")


if __name__ == "__main__":
    unittest.main(verbosity=2)
