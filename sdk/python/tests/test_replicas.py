"""With replicas > 1 a function that writes state fails that call."""

import json
import unittest

from plugvisor import frames as fr
from plugvisor.testing import CallError, Harness, _Chan

from .test_testing import Seq  # a source that writes its state


def hit(ctx, key):
    return ctx.state.incr_counter("hits:" + key, 1)


def sneaky(ctx, key):
    try:
        ctx.state.put(key, 1)
    except Exception:
        pass  # swallowed: the call must fail anyway
    return "ok"


def peek(ctx, key):
    return ctx.state.get(key, "none")


def batch_hit(ctx, key):
    ctx.state.delete(key)
    return key


PLUGIN = dict(name="rep", version="1", functions={"hit": hit, "sneaky": sneaky, "peek": peek, "del": batch_hit},
              sources={"seq": Seq})


class TestReplicatedState(unittest.TestCase):
    def harness(self, replicas):
        h = Harness(PLUGIN)
        self.addCleanup(h.close)
        h.server.replicas = replicas  # as the welcome would set it
        return h

    def raw(self, h, fn, arg):
        c = _Chan()
        h.server._call(c, h.server.functions[fn], 1, json.dumps(arg).encode())
        return c.take()

    def test_write_fails_with_replicas(self):
        h = self.harness(3)
        for fn in ("hit", "sneaky"):
            f = self.raw(h, fn, "k")
            self.assertEqual(f.type, fr.FAIL, fn)
            err = json.loads(f.payload)
            self.assertEqual(err.get("code"), "replicated_state")
            for want in ("replicas = 3", "state", "set replicas = 1", "source or sink", fn):
                self.assertIn(want, err["error"])
        with self.assertRaises(CallError):
            h.call("hit", "k")
        self.assertEqual(h.call("peek", "k"), "none")  # reads pass, nothing was written

    def test_batch_fails_whole(self):
        h = self.harness(2)
        c = _Chan()
        h.server._call_batch(c, "del", 7, [b'"a"', b'"b"'])
        f = c.take()
        self.assertEqual((f.type, f.id), (fr.FAIL, 7))
        self.assertEqual(json.loads(f.payload)["code"], "replicated_state")

    def test_one_replica_writes(self):
        h = self.harness(1)
        self.assertEqual(h.call("hit", "k"), 1)
        self.assertEqual(h.call("sneaky", "k"), "ok")

    def test_source_writes_with_replicas(self):
        h = self.harness(3)
        self.assertEqual(h.read("seq", 3), [0, 1, 2])
        h.stop_source("seq")
        self.assertGreaterEqual(h.get("source/seq/test", "next"), 3)


if __name__ == "__main__":
    unittest.main()
