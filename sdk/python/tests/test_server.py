"""The plugin side end to end, in process, against a host made of the SDK's
own listener (the Go interop tests do the same against the Go transport)."""

import io
import json
import logging
import os
import sys
import shutil
import socket
import tempfile
import threading
import unittest

from plugvisor import frames as fr
from plugvisor.channel import Channel
from plugvisor.server import Server
from plugvisor.sp import listen

TIMEOUT = 10

_stderr = None


def setUpModule():
    # Plugin errors are expected here; keep them out of the test output.
    global _stderr
    logging.getLogger("plugvisor").addHandler(logging.NullHandler())
    logging.getLogger("plugvisor").propagate = False
    _stderr, sys.stderr = sys.stderr, io.StringIO()


def tearDownModule():
    sys.stderr = _stderr


def double(ctx, x):
    ctx.state.incr_counter("calls")
    return x * 2


def hello(ctx):
    return "hi"


def boom(ctx, x):
    return {}[x]


def big(ctx, n):
    return "x" * n


class Ticks:
    def configure(self, props):
        self.limit = props.get("limit")

    def open(self, ctx, emit):
        n = ctx.state.get("next", 0)
        while not ctx.done():
            if self.limit is not None and n >= self.limit:
                return
            emit(n)
            n += 1
            ctx.state.put("next", n)


class Bad:
    def open(self, ctx, emit):
        emit("one")
        raise RuntimeError("lost the feed")


class Collect:
    def __init__(self):
        self.items = []

    def collect(self, ctx, item):
        self.items.append(item)
        ctx.state.incr_counter("items")


class Host:
    """A minimal host: control channel, requests, data channels."""

    def __init__(self, test, heartbeat_ms=0, token="tok", answer_token="tok", migrate=None, state_version="1",
                 max_frame=None):
        self.dir = tempfile.mkdtemp(prefix="pv")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.n = 0
        ln = listen("ipc://" + os.path.join(self.dir, "c"))
        env = {"PLUGVISOR_CONTROL": ln.address, "PLUGVISOR_TOKEN": token}
        if max_frame:
            env["PLUGVISOR_MAX_FRAME"] = str(max_frame)
        self.server = Server("t", "1.0.0", functions={"double": double, "hello": hello, "boom": boom, "big": big},
                             sources={"ticks": Ticks, "bad": Bad}, sinks={"collect": Collect},
                             state_version=state_version, migrate=migrate, env=env)
        self.code = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.server.run()), daemon=True)
        self.thread.start()
        self.ctl = Channel(ln.accept(TIMEOUT), name="host-control")
        ln.close()
        hello_f = self.ctl.recv()[0]
        test.assertEqual(hello_f.type, fr.HELLO)
        self.hello = json.loads(hello_f.payload)
        if self.hello["token"] != answer_token:
            self.ctl.send(fr.REFUSE, 0, b'{"error":"wrong token"}')
            self.ctl.flush(TIMEOUT)
        else:
            self.ctl.send(fr.WELCOME, 0, json.dumps(
                {"plugin": "t", "generation": 1, "config": {"limit": None}, "heartbeat_ms": heartbeat_ms}).encode())
        test.addCleanup(self.close)

    def close(self):
        self.ctl.close()
        self.thread.join(TIMEOUT)

    def exit_code(self):
        self.thread.join(TIMEOUT)
        return self.code[0] if self.code else None

    def request(self, ftype, payload=b""):
        self.n += 1
        rid = self.n
        self.ctl.send(ftype, rid, payload)
        while True:
            for f in self.ctl.recv():
                if f.id == rid and f.type != fr.PONG:
                    return f

    def open(self, kind, symbol="", instance=None):
        instance = instance or kind + "-" + symbol
        addr = "ipc://" + os.path.join(self.dir, "d%d" % (self.n + 1))
        ln = listen(addr)
        box = {}

        def accept():
            try:
                box["c"] = ln.accept(TIMEOUT)
            except Exception as e:
                box["err"] = e

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        r = self.request(fr.OPEN, json.dumps(
            {"instance": instance, "kind": kind, "symbol": symbol, "address": addr}).encode())
        if r.type != fr.OK:
            # Nobody dialed: knock once so the accepting thread ends.
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(addr[len("ipc://"):])
        t.join(TIMEOUT)
        ln.close()
        if r.type != fr.OK:
            return r, None
        return r, Reader(Channel(box["c"], name="host-" + instance))


class Reader:
    """A host-side data channel that hands out frames one at a time."""

    def __init__(self, chan):
        self.chan = chan
        self.buf = []

    def send(self, *a):
        self.chan.send(*a)

    def next(self):
        while not self.buf:
            self.buf = self.chan.recv()
        return self.buf.pop(0)


def recv_until(r, pred):
    out = []
    while True:
        f = r.next()
        out.append(f)
        if pred(f):
            return out


class ServerTest(unittest.TestCase):
    def test_handshake_and_shutdown(self):
        h = Host(self)
        m = h.hello["manifest"]
        self.assertEqual(h.hello["protocol"], 1)
        self.assertEqual(h.hello["pid"], os.getpid())
        self.assertEqual((m["name"], m["language"], m["functions"], m["sources"], m["sinks"], m["migrate"]),
                         ("t", "python", ["big", "boom", "double", "hello"], ["bad", "ticks"], ["collect"], False))
        h.ctl.send(fr.PING, 77)
        f = h.ctl.recv()[0]
        self.assertEqual((f.type, f.id), (fr.PONG, 77))
        h.ctl.send(fr.SHUTDOWN)
        self.assertEqual(h.exit_code(), 0)

    def test_refused(self):
        h = Host(self, token="bad")
        self.assertEqual(h.exit_code(), 1)

    def test_heartbeat_silence_exits(self):
        h = Host(self, heartbeat_ms=20)
        self.assertEqual(h.exit_code(), 1)
        self.assertIn("3 heartbeats", h.server._exit_msg)

    def test_calls(self):
        h = Host(self)
        r, c = h.open("functions", instance="functions")
        self.assertEqual(r.type, fr.OK)
        for i in range(1, 51):
            c.send(fr.CALL, i, fr.call_payload("double", str(i).encode()))
        c.send(fr.CALL, 100, fr.call_payload("hello"))
        c.send(fr.CALL, 101, fr.call_payload("boom", b'"k"'))
        c.send(fr.CALL, 102, fr.call_payload("nope", b"1"))
        c.send(fr.CALL, 103, fr.call_payload("double", b"{bad"))
        got = {}
        while len(got) < 54:
            f = c.next()
            got[f.id] = f
        for i in range(1, 51):
            self.assertEqual((got[i].type, json.loads(got[i].payload)), (fr.RESULT, 2 * i))
        self.assertEqual(got[100].payload, b'"hi"')
        self.assertEqual(got[101].type, fr.FAIL)
        err = json.loads(got[101].payload)["error"]
        self.assertRegex(err, r"^KeyError: 'k' \(test_server\.py:\d+ in boom\)$")
        self.assertIn("no function 'nope'", json.loads(got[102].payload)["error"])
        self.assertIn("not valid JSON", json.loads(got[103].payload)["error"])
        state = fr.parse_state(h.request(fr.SNAPSHOT).payload)
        self.assertEqual(state["function/double"], {"calls": b"50"})

    def test_oversize_result_fails_only_that_call(self):
        h = Host(self, max_frame=64 << 10)
        r, c = h.open("functions", instance="functions")
        self.assertEqual(r.type, fr.OK)
        c.send(fr.CALL, 1, fr.call_payload("big", str(100 << 10).encode()))
        f = c.next()
        self.assertEqual((f.type, f.id), (fr.FAIL, 1))
        err = json.loads(f.payload)
        self.assertIn("limit of 65536 bytes", err["error"])
        self.assertIn("raise max_frame", err["error"])
        self.assertFalse(err.get("panic"))
        # The same server keeps serving.
        c.send(fr.CALL, 2, fr.call_payload("double", b"21"))
        f = c.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.RESULT, 2, b"42"))
        self.assertTrue(h.thread.is_alive())
    def test_call_batch(self):
        h = Host(self)
        self.assertEqual(h.hello["manifest"]["features"], [fr.FEATURE_CALL_BATCH])
        r, c = h.open("functions", instance="functions")
        self.assertEqual(r.type, fr.OK)
        inputs = [str(i).encode() for i in range(1, 21)]
        inputs[6] = b"{bad"  # one failing input fails only itself
        c.send(fr.CALL_BATCH, 7, fr.call_batch_payload("double", inputs))
        c.send(fr.CALL_BATCH, 8, fr.call_batch_payload("boom", [b'"a"', b'"b"']))
        c.send(fr.CALL_BATCH, 9, fr.call_batch_payload("nope", [b"1"]))
        got = {}
        while len(got) < 3:
            f = c.next()
            self.assertEqual(f.type, fr.RESULT_BATCH)
            got[f.id] = fr.parse_result_batch(f.payload)
        items = got[7]
        self.assertEqual(len(items), 20)
        for i, (status, out) in enumerate(items, 1):
            if i == 7:
                self.assertEqual(status, fr.ITEM_ERROR)
                self.assertIn(b"not valid JSON", out)
            else:
                self.assertEqual((status, json.loads(out)), (fr.ITEM_OK, 2 * i))
        self.assertEqual([s for s, _ in got[8]], [fr.ITEM_ERROR, fr.ITEM_ERROR])
        self.assertIn(b"KeyError: 'b'", got[8][1][1])
        self.assertIn(b"no function 'nope'", got[9][0][1])
        state = fr.parse_state(h.request(fr.SNAPSHOT).payload)
        self.assertEqual(state["function/double"], {"calls": b"19"})

    def test_source_stop_snapshot_restore(self):
        h = Host(self)
        _, d = h.open("source", "ticks", "tk")
        first = recv_until(d, lambda f: f.id >= 20)
        self.assertEqual([json.loads(f.payload) for f in first[:20]], list(range(20)))
        snap = h.request(fr.SNAPSHOT)
        self.assertEqual(snap.type, fr.STATE)
        # The checkpoint marker sits in the stream where the state was copied.
        frames = recv_until(d, lambda f: f.type == fr.CHECKPOINT)
        self.assertEqual(frames[-1].id, snap.id)
        before = [f for f in first + frames if f.type == fr.DATA]
        # The state never claims an item the host lacks; it may lag the one
        # item emitted but not yet recorded (emit first, then update state).
        nxt = int(fr.parse_state(snap.payload)["tk"]["next"])
        self.assertIn(nxt, (len(before) - 1, len(before)))
        stop = {}
        t = threading.Thread(target=lambda: stop.setdefault("r", h.request(fr.STOP, b'{"instance":"tk"}')))
        t.start()
        rest = recv_until(d, lambda f: f.type == fr.EOS)
        t.join(TIMEOUT)
        self.assertEqual(stop["r"].type, fr.OK)
        data = before + [f for f in rest if f.type == fr.DATA]
        self.assertEqual([f.id for f in data], list(range(1, len(data) + 1)))
        self.assertEqual([json.loads(f.payload) for f in data], list(range(len(data))))
        self.assertEqual(rest[-1].id, len(data))
        self.assertEqual(rest[-1].payload, b"")
        blob = h.request(fr.SNAPSHOT).payload
        self.assertEqual(fr.parse_state(blob)["tk"]["next"], str(len(data)).encode())

        h2 = Host(self)
        r = h2.request(fr.RESTORE, fr.restore_payload({"from_version": "1.0.0", "from_state_version": "1"},
                                                      fr.parse_state(blob)))
        self.assertEqual(r.type, fr.OK)
        _, d2 = h2.open("source", "ticks", "tk")
        f = d2.next()
        self.assertEqual((f.id, json.loads(f.payload)), (1, len(data)))

    def test_failing_source_sends_eos_with_error(self):
        h = Host(self)
        _, d = h.open("source", "bad", "b")
        frames = recv_until(d, lambda f: f.type == fr.EOS)
        self.assertEqual([(f.type, f.id) for f in frames], [(fr.DATA, 1), (fr.EOS, 1)])
        self.assertRegex(json.loads(frames[-1].payload)["error"], r"^RuntimeError: lost the feed \(test_server.py:\d+ in open\)")

    def test_sink(self):
        h = Host(self)
        _, d = h.open("sink", "collect", "sk")
        for i in range(1, 101):
            d.send(fr.DATA, i, json.dumps({"i": i}).encode())
        d.send(fr.BARRIER, 100)
        acks = recv_until(d, lambda f: f.id == 100 and f.type == fr.ACK)
        self.assertTrue(all(f.type == fr.ACK for f in acks))
        self.assertEqual([f.id for f in acks], sorted(f.id for f in acks))
        self.assertEqual(h.request(fr.STOP, b'{"instance":"sk"}').type, fr.OK)
        self.assertEqual(fr.parse_state(h.request(fr.SNAPSHOT).payload)["sk"], {"items": b"100"})

    def test_open_errors(self):
        h = Host(self)
        r, _ = h.open("source", "nope", "x")
        self.assertEqual(r.type, fr.ERROR)
        self.assertIn("no source 'nope'", json.loads(r.payload)["error"])
        r = h.request(fr.STOP, b'{"instance":"x"}')
        self.assertIn("no open instance", json.loads(r.payload)["error"])

    def test_restore_versions(self):
        h = Host(self, state_version="2")
        r = h.request(fr.RESTORE, fr.restore_payload({"from_version": "0.9", "from_state_version": "1"}, {"s": {}}))
        self.assertEqual(r.type, fr.ERROR)
        self.assertIn("no migrate hook", json.loads(r.payload)["error"])

        calls = []

        def migrate(frm, kv):
            calls.append(frm)
            return {"v": 2, "old": kv.get("old", b"null")}

        h2 = Host(self, state_version="2", migrate=migrate)
        self.assertTrue(h2.hello["manifest"]["migrate"])
        r = h2.request(fr.RESTORE, fr.restore_payload({"from_version": "0.9", "from_state_version": "1"},
                                                      {"s": {"old": b"[1]"}}))
        self.assertEqual(r.type, fr.OK)
        self.assertEqual(calls, ["0.9"])
        self.assertEqual(fr.parse_state(h2.request(fr.SNAPSHOT).payload)["s"], {"old": b"[1]", "v": b"2"})

    def test_malformed_control_frame_exits(self):
        h = Host(self)
        h.ctl.send(fr.DATA, 1, b"1")
        self.assertEqual(h.exit_code(), 1)
        self.assertIn("unexpected data frame", h.server._exit_msg)


if __name__ == "__main__":
    unittest.main()
