import os
import socket
import struct
import tempfile
import threading
import unittest

from plugvisor import frames as fr
from plugvisor.channel import Channel
from plugvisor.sp import HEADER, Closed, SPSocket, dial, listen

TIMEOUT = 10


def sp_pair(max_recv=fr.DEFAULT_MAX_FRAME):
    """Two connected SPSockets over a Unix socketpair (the header exchange
    needs both sides at once, so one is built on a thread)."""
    a, b = socket.socketpair()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("b", SPSocket(b, True, max_recv)))
    t.start()
    sa = SPSocket(a, True, max_recv)
    t.join(TIMEOUT)
    return sa, out["b"]


class SPTest(unittest.TestCase):
    def test_header_and_framing_bytes(self):
        a, raw = socket.socketpair()
        raw.settimeout(TIMEOUT)
        raw.sendall(b"\x00SP\x00\x00\x10\x00\x00")
        sp = SPSocket(a, True)
        self.assertEqual(raw.recv(8), HEADER)
        self.assertEqual(HEADER, bytes([0, 0x53, 0x50, 0, 0, 0x10, 0, 0]))
        sp.send(b"hello")
        self.assertEqual(_recv_n(raw, 14), b"\x01" + struct.pack(">Q", 5) + b"hello")
        raw.sendall(b"\x01" + struct.pack(">Q", 3) + b"abc" + b"\x01" + struct.pack(">Q", 0))
        self.assertEqual(sp.recv(), b"abc")
        self.assertEqual(sp.recv(), b"")
        raw.close()
        with self.assertRaises(Closed):
            sp.recv()
        sp.close()

    def test_rejects_other_protocols(self):
        for peer, text in ((b"\x00SP\x00\x00\x11\x00\x00", "0x0011"), (b"GET / HTTP/1.1\r\n", "not an SP socket")):
            a, raw = socket.socketpair()
            raw.sendall(peer)
            with self.assertRaises(fr.MalformedFrame) as cm:
                SPSocket(a, True)
            self.assertIn(text, str(cm.exception))
            raw.close()

    def test_bad_message_type_and_size(self):
        a, b = sp_pair(max_recv=100)
        b._sock.sendall(b"\x02" + struct.pack(">Q", 1) + b"x")
        with self.assertRaises(fr.MalformedFrame):
            a.recv()
        a.close(), b.close()
        a, b = sp_pair(max_recv=100)
        b.send(b"x" * 101)
        with self.assertRaises(fr.FrameTooLarge) as cm:
            a.recv()
        self.assertIn("limit of 100 bytes", str(cm.exception))
        a.close(), b.close()

    def test_close_unblocks_recv(self):
        a, b = sp_pair()
        got = []
        t = threading.Thread(target=lambda: got.append(_catch(a.recv)))
        t.start()
        a.close()
        t.join(TIMEOUT)
        self.assertFalse(t.is_alive())
        self.assertIsInstance(got[0], Closed)
        b.close()

    def test_listen_dial_ipc_and_tcp(self):
        d = tempfile.mkdtemp(prefix="pv")
        try:
            for addr in ("ipc://" + os.path.join(d, "s"), "tcp://127.0.0.1:0"):
                ln = listen(addr)
                accepted = {}
                t = threading.Thread(target=lambda: accepted.setdefault("s", ln.accept(TIMEOUT)))
                t.start()
                c = dial(ln.address)
                t.join(TIMEOUT)
                s = accepted["s"]
                c.send(b"ping" * 2000)
                self.assertEqual(s.recv(), b"ping" * 2000)
                s.send(b"")
                self.assertEqual(c.recv(), b"")
                c.close(), s.close(), ln.close()
        finally:
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)

    def test_dial_errors_name_the_address(self):
        with self.assertRaises(Closed) as cm:
            dial("ipc:///nonexistent/pv/sock")
        self.assertIn("ipc:///nonexistent/pv/sock", str(cm.exception))
        with self.assertRaises(ValueError):
            dial("inproc://x")


class _GatedSP:
    """An SP stand-in whose first send waits for a gate: frames sent
    meanwhile must leave together as one batch."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.sent = []
        self.lock = threading.Condition()

    def send(self, body):
        self.entered.set()
        if not self.gate.wait(TIMEOUT):
            raise Closed("gate timed out")
        with self.lock:
            self.sent.append(body)
            self.lock.notify_all()

    def close(self):
        pass

    def wait_sent(self, n):
        with self.lock:
            return self.lock.wait_for(lambda: len(self.sent) >= n, TIMEOUT)


class ChannelTest(unittest.TestCase):
    def test_batches_what_queued_during_a_write(self):
        sp = _GatedSP()
        c = Channel(sp, name="t")
        c.send(fr.DATA, 1, b"1")
        self.assertTrue(sp.entered.wait(TIMEOUT))
        for i in range(2, 6):
            c.send(fr.DATA, i, str(i).encode())
        sp.gate.set()
        self.assertTrue(sp.wait_sent(2))
        self.assertTrue(c.flush(TIMEOUT))
        self.assertEqual(sp.sent[0], fr.encode_frame(fr.DATA, 1, b"1"))
        self.assertEqual([(f.type, f.id) for f in fr.parse_message(sp.sent[1])], [(fr.DATA, i) for i in range(2, 6)])
        self.assertEqual(sp.sent[1][:12], fr.encode_frame(fr.BATCH, 4))
        c.close()
        with self.assertRaises(Closed):
            c.send(fr.DATA, 9)

    def test_push_back_when_full(self):
        sp = _GatedSP()
        c = Channel(sp, max_frame=64, name="t")
        c.send(fr.DATA, 1, b"x" * 40)
        self.assertTrue(sp.entered.wait(TIMEOUT))
        c.send(fr.DATA, 2, b"x" * 40)  # queue was empty: accepted
        done = threading.Event()
        t = threading.Thread(target=lambda: (c.send(fr.DATA, 3, b"x" * 40), done.set()))
        t.start()
        self.assertFalse(done.wait(0.05), "a full queue must make send wait")
        sp.gate.set()
        self.assertTrue(done.wait(TIMEOUT))
        t.join(TIMEOUT)
        self.assertTrue(sp.wait_sent(3))
        with self.assertRaises(fr.FrameTooLarge) as cm:
            c.send(fr.DATA, 4, b"x" * 60)
        self.assertIn("limit of 64 bytes", str(cm.exception))
        c.close()

    def test_over_a_real_socket(self):
        a, b = sp_pair()
        ca, cb = Channel(a, name="a"), Channel(b, name="b")
        for i in range(1, 1001):
            ca.send(fr.DATA, i, str(i).encode())
        got = []
        while len(got) < 1000:
            got.extend(cb.recv())
        self.assertEqual([f.id for f in got], list(range(1, 1001)))
        self.assertEqual(got[-1].payload, b"1000")
        ca.close()
        with self.assertRaises(Closed):
            cb.recv()
        cb.close()


def _recv_n(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _catch(fn):
    try:
        return fn()
    except Exception as e:
        return e


if __name__ == "__main__":
    unittest.main()
