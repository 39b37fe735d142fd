"""pydemo: a plugvisor plugin in Python — functions, a source and a sink.

plugvisor starts it with `python3 main.py` and sdk/python on PYTHONPATH.
Edit and save while `plugvisor dev` runs: the new code takes over with the
state of the old process.
"""

import plugvisor


def double(ctx, x: int) -> int:
    # The type hints are announced as JSON Schemas: plugvisor checks that a
    # pipeline's stages fit before anything runs.
    ctx.state.incr_counter("calls", 1)
    return x * 2


def count(ctx) -> int:
    return ctx.state.incr_counter("n", 1)


def div(ctx, pair):
    a, b = pair
    return a / b


class Ticks:
    """Emits 0, 1, 2, ... every interval_ms (config, default 10); the next
    number is kept in state, so a new process continues where this one
    stopped."""

    item_type = int  # announced as the item schema

    def configure(self, props):
        self.interval = float(props.get("interval_ms", 10)) / 1000.0

    def open(self, ctx, emit):
        n = ctx.state.get("next", 0)
        while not ctx.done():
            emit(n)
            # After emit: a checkpoint never claims an item the host lacks.
            n += 1
            ctx.state.put("next", n)
            if self.interval > 0 and ctx.wait(self.interval):
                break

    def close(self, ctx):
        ctx.log.info("ticks stopped before %d", ctx.state.get("next", 0))


class Collect:
    """Counts the items it receives."""

    def configure(self, props):
        pass

    def open(self, ctx):
        pass

    def collect(self, ctx, item):
        ctx.state.incr_counter("items", 1)

    def close(self, ctx):
        pass


# PLUGIN is what serve runs; test_main.py runs it with plugvisor.testing.
PLUGIN = dict(name="pydemo", version="1.0.0",
              functions={"double": double, "count": count, "div": div},
              sources={"ticks": Ticks}, sinks={"collect": Collect},
              state_version="1", migrate=None)

if __name__ == "__main__":
    plugvisor.serve(**PLUGIN)
