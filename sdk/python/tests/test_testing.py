"""plugvisor.testing drives a plugin through the SDK's real server."""

import json
import os
import tempfile
import unittest

from plugvisor.testing import CallError, Harness, load_state


def hit(ctx, key):
    return ctx.state.incr_counter("hits:" + key, 1)


def greeting(ctx):
    return ctx.config.get("greeting")


def fail(ctx, x):
    raise ValueError("no %s" % x)


class Seq:
    def configure(self, props):
        pass

    def open(self, ctx, emit):
        n = ctx.state.get("next", 0)
        while not ctx.done():
            emit(n)
            n += 1
            ctx.state.put("next", n)

    def close(self, ctx):
        pass


class Tally:
    def configure(self, props):
        pass

    def open(self, ctx):
        pass

    def collect(self, ctx, item):
        ctx.state.incr_counter("sum", item)

    def close(self, ctx):
        pass


V1 = dict(name="hits", version="1.0.0", functions={"hit": hit, "greeting": greeting, "fail": fail},
          sources={"seq": Seq}, sinks={"tally": Tally})


def v2(seen):
    def hit2(ctx, key):
        return ctx.state.incr_counter("clicks/" + key, 1)

    def migrate(from_version, kv, m):
        seen.append(m)
        return {k.replace("hits:", "clicks/"): v for k, v in kv.items()}

    return dict(V1, version="2.0.0", state_version="2", functions={"hit": hit2}, migrate=migrate)


class TestHarness(unittest.TestCase):
    def harness(self, plugin=V1, **kw):
        h = Harness(plugin, **kw)
        self.addCleanup(h.close)
        return h

    def test_swap_migrates_with_scope_and_versions(self):
        h = self.harness()
        for _ in range(3):
            h.call("hit", "home")
        seen = []
        # the v2 function is "hit" too, so its scope is the same function/hit
        h.swap(v2(seen))
        self.assertEqual(h.call("hit", "home"), 4)
        self.assertIsNone(h.get("function/hit", "hits:home"))
        scopes = [m.scope for m in seen]
        self.assertIn("function/hit", scopes)
        m = seen[scopes.index("function/hit")]
        self.assertEqual((m.from_version, m.from_state_version, m.to_version, m.to_state_version),
                         ("1.0.0", "1", "2.0.0", "2"))

    def test_swap_without_migrate_is_refused(self):
        h = self.harness()
        h.call("hit", "a")
        with self.assertRaisesRegex(RuntimeError, "migrate"):
            h.swap(dict(V1, version="3.0.0", state_version="3"))
        self.assertEqual(h.call("hit", "a"), 2)

    def test_calls_config_and_errors(self):
        h = self.harness(config={"greeting": "hi"})
        self.assertEqual(h.call("greeting"), "hi")
        with self.assertRaisesRegex(CallError, "ValueError: no x"):
            h.call("fail", "x")

    def test_source_sink_and_crash(self):
        h = self.harness()
        self.assertEqual(h.read("seq", 3), [0, 1, 2])
        self.assertEqual(h.read("seq", 2), [3, 4])
        h.feed("tally", 5, 7)
        self.assertEqual(h.get("sink/tally/test", "sum"), 12)
        h.checkpoint()
        h.put("sink/tally/test", "sum", 100)  # after the checkpoint: lost in a crash
        h.crash()
        self.assertEqual(h.get("sink/tally/test", "sum"), 12)
        nxt = h.get("source/seq/test", "next")
        self.assertGreaterEqual(nxt, 5)
        self.assertEqual(h.read("seq", 1), [nxt])

    def test_fixture_from_export(self):
        h = self.harness()
        h.call("hit", "x")
        h.call("hit", "x")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            with open(path, "w") as f:
                json.dump(h.export(), f)
            seen = []
            h2 = self.harness(v2(seen), state=load_state(path))
        self.assertEqual(h2.call("hit", "x"), 3)


if __name__ == "__main__":
    unittest.main()
