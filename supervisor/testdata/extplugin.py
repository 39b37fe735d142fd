"""An external instance for supervisor/external_test.go: a counting
function, a counter source (position in state) and a sink appending to the
file named by config "path"."""

import json
import os

import plugvisor


def count(ctx, key):
    return ctx.state.incr_counter(key, 1)


class Ticks:
    def configure(self, props):
        pass

    def open(self, ctx, emit):
        n = ctx.state.get("next", 1)
        while not ctx.stopped.is_set():
            emit(n)
            n += 1
            ctx.state.put("next", n)

    def close(self, ctx):
        pass


class Collect:
    def configure(self, props):
        self.path = props["path"]

    def open(self, ctx):
        self.f = open(self.path, "a")

    def collect(self, ctx, item):
        self.f.write(json.dumps(item, separators=(",", ":")) + "\n")
        self.f.flush()

    def close(self, ctx):
        self.f.close()


plugvisor.serve(name="pyclicks", version=os.environ.get("PV_TEST_VERSION", "1.0.0"),
                functions={"count": count}, sources={"ticks": Ticks}, sinks={"collect": Collect})
