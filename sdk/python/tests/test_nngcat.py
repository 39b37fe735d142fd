"""Interoperability of the SDK's SP layer with NNG's nngcat (Debian nng-utils)."""

import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from plugvisor import frames as fr
from plugvisor.channel import Channel
from plugvisor.sp import listen

NNGCAT = shutil.which("nngcat")
TIMEOUT = 10


@unittest.skipUnless(NNGCAT, "nngcat (Debian nng-utils) is not installed")
class NNGCatTest(unittest.TestCase):
    def exchange(self, addr, box):
        """Listen on addr, let nngcat dial and send a frame, answer with a batch."""
        try:
            d = tempfile.mkdtemp(prefix="pv")
            try:
                sent = fr.encode_frame(fr.CALL, 5, fr.call_payload("double", b"21"))
                path = os.path.join(d, "msg")
                with open(path, "wb") as f:
                    f.write(sent)
                ln = listen(addr.replace("DIR", d))
                # nngcat sends the file, prints what it receives raw, and
                # exits after a second without messages.
                p = subprocess.Popen([NNGCAT, "--pair0", "--dial", ln.address, "--raw", "--recv-timeout", "1",
                                      "--file", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    c = Channel(ln.accept(TIMEOUT), name="nngcat")
                    ln.close()
                    box["got"] = c.recv()
                    reply = fr.encode_batch([fr.encode_frame(fr.RESULT, 5, b"42"), fr.encode_frame(fr.ACK, 9)])
                    c._sp.send(reply)
                    out, err = p.communicate(timeout=TIMEOUT)
                    c.close()
                    box["out"], box["err"], box["rc"], box["reply"] = out, err, p.returncode, reply
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait(TIMEOUT)
            finally:
                shutil.rmtree(d, True)
        except Exception as e:
            box["exc"] = e

    def test_ipc_and_tcp(self):
        boxes = {a: {} for a in ("ipc://DIR/s", "tcp://127.0.0.1:0")}
        ts = [threading.Thread(target=self.exchange, args=(a, b)) for a, b in boxes.items()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(2 * TIMEOUT)
        for addr, box in boxes.items():
            with self.subTest(addr=addr):
                self.assertNotIn("exc", box)
                self.assertEqual([(f.type, f.id, f.payload) for f in box["got"]],
                                 [(fr.CALL, 5, fr.call_payload("double", b"21"))])
                self.assertEqual(box["rc"], 0, box["err"])
                self.assertEqual(box["out"], box["reply"])
                self.assertEqual([(f.type, f.id) for f in fr.parse_message(box["out"])], [(fr.RESULT, 5), (fr.ACK, 9)])


if __name__ == "__main__":
    unittest.main()
