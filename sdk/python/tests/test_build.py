"""pip install ./sdk/python works offline: the in-tree build backend
(standard library only) makes a correct wheel of the plugvisor package."""

import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "_build"))
import plugvisor_build  # noqa: E402


class BuildTest(unittest.TestCase):
    def test_wheel_has_every_module_with_a_true_record(self):
        with tempfile.TemporaryDirectory() as d:
            name = plugvisor_build.build_wheel(d)
            self.assertEqual(name, "plugvisor-1.0.0-py3-none-any.whl")
            path = os.path.join(d, name)
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                sources = {f for f in os.listdir(os.path.join(HERE, "plugvisor")) if f.endswith(".py")}
                self.assertEqual({n for n in names if n.startswith("plugvisor/")}, {"plugvisor/" + f for f in sources})
                record = z.read("plugvisor-1.0.0.dist-info/RECORD").decode().splitlines()
                for line in record:
                    arc, digest, size = line.split(",")
                    if arc.endswith("RECORD"):
                        continue
                    data = z.read(arc)
                    want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual((digest, int(size)), ("sha256=" + want, len(data)), arc)
                self.assertIn(b"Name: plugvisor", z.read("plugvisor-1.0.0.dist-info/METADATA"))
            # The wheel alone is importable (pure Python): nothing outside it is needed.
            out = subprocess.run([sys.executable, "-c", "import plugvisor.testing, plugvisor; print(plugvisor.__file__)"],
                                 env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")}, cwd=d,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(name, out.stdout)

    def test_pip_installs_offline(self):
        with tempfile.TemporaryDirectory() as d:
            venv = os.path.join(d, "venv")
            made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True, timeout=120)
            py = os.path.join(venv, "bin", "python")
            if made.returncode != 0 or not os.path.exists(py) or subprocess.run([py, "-m", "pip", "--version"], capture_output=True).returncode != 0:
                self.skipTest("no venv with pip on this machine (Debian: apt-get install python3-venv)")
            out = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", HERE], capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            out = subprocess.run([py, "-c", "import plugvisor, plugvisor.testing; print(plugvisor.__version__)"],
                                 cwd=d, capture_output=True, text=True, timeout=60)
            self.assertEqual((out.returncode, out.stdout.strip()), (0, "1.0.0"), out.stderr)


if __name__ == "__main__":
    unittest.main()
