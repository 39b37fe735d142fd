"""Test a plugvisor Python plugin from a unit test, in-process.

The plugin runs in the SDK's real Server — the same call, source, sink,
snapshot, restore and migrate code as under plugvisor — with the sockets
replaced by in-memory channels:

    # main.py
    PLUGIN = dict(name="demo", version="1.0.0", functions={"double": double})
    if __name__ == "__main__":
        plugvisor.serve(**PLUGIN)

    # test_main.py
    from plugvisor.testing import Harness
    import main

    class TestDemo(unittest.TestCase):
        def test_double(self):
            h = Harness(main.PLUGIN)
            self.addCleanup(h.close)
            self.assertEqual(h.call("double", 21), 42)
            h.swap(dict(main.PLUGIN, version="2.0.0"))  # migrate runs
            self.assertEqual(h.get("function/double", "calls"), 1)

Scopes are named as in `plugvisor state ls`: "function/<name>" for a
Python function, "source/<symbol>/test" and "sink/<symbol>/test" for the
instances the harness opens. A `plugvisor state export` file loads with
load_state() and seeds a Harness with state=.
"""

import base64
import json
import queue
import threading
from typing import Any, Dict, List, Optional

from . import frames as fr
from .server import Server
from .sp import Closed
from .state import encode_json

INSTANCE = "test"
TIMEOUT = 10.0


class CallError(Exception):
    """A function returned an error (panic: it raised SystemExit or the like)."""

    def __init__(self, msg: str, panic: bool = False):
        super().__init__(msg)
        self.panic = panic


class _Chan:
    """An in-memory stand-in for a data channel: what the plugin sends
    lands in out; what the test sends is returned by recv."""

    def __init__(self, bound: int = 16):
        self.out: "queue.Queue[fr.Frame]" = queue.Queue(bound)
        self.inbox: "queue.Queue[Optional[List[fr.Frame]]]" = queue.Queue()
        self.closed = threading.Event()

    def send(self, ftype: int, fid: int = 0, payload: bytes = b"") -> None:
        while not self.closed.is_set():
            try:
                self.out.put(fr.Frame(ftype, fid, bytes(payload)), timeout=0.05)
                return
            except queue.Full:
                continue  # push back, as a full socket would
        raise Closed("channel closed")

    def recv(self) -> List[fr.Frame]:
        got = self.inbox.get()
        if got is None:
            raise Closed("channel closed")
        return got

    def close(self, drain: float = 0) -> None:
        self.closed.set()
        self.inbox.put(None)

    def take(self, timeout: float = TIMEOUT) -> fr.Frame:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("plugin sent nothing within %.0fs" % timeout) from None


def load_state(path: str) -> Dict[str, Any]:
    """Read a `plugvisor state export` file for Harness(state=...)."""
    with open(path, encoding="utf-8") as f:
        e = json.load(f)
    if not isinstance(e, dict) or not isinstance(e.get("scopes"), dict):
        raise ValueError("%s is not a plugvisor state export (no \"scopes\" object)" % path)
    return e


def _raw_scopes(export: Dict[str, Any]) -> Dict[str, Dict[str, bytes]]:
    out = {}
    for scope, kv in (export.get("scopes") or {}).items():
        out[scope] = {k: _raw_value(v) for k, v in (kv or {}).items()}
    return out


def _raw_value(v: Any) -> bytes:
    # Values that are not JSON are exported as {"$bytes": "<base64>"}.
    if isinstance(v, dict) and set(v) == {"$bytes"}:
        return base64.b64decode(v["$bytes"])
    return encode_json(v)


class Harness:
    """One plugin (the keyword arguments of plugvisor.serve) under test."""

    def __init__(self, plugin: Dict[str, Any], config: Optional[Dict[str, Any]] = None,
                 state: Optional[Dict[str, Any]] = None):
        self.plugin = dict(plugin)
        self.config = dict(config or {})
        self._sources: Dict[str, _Chan] = {}
        self._ids = 0
        self._checkpoint: Optional[bytes] = None
        self.server = self._start(self.plugin)
        if state is not None:
            meta = {"from_version": state.get("version") or self.server.version,
                    "from_state_version": state.get("state_version") or self.server.state_version}
            self._restore(self.server, meta, _raw_scopes(state))

    def _start(self, plugin: Dict[str, Any]) -> Server:
        srv = Server(env={}, **plugin)
        srv.config = self.config
        srv._dial = self._dial  # data channels are in memory
        return srv

    def _dial(self, addr: str, name: str) -> _Chan:
        return self._pending

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    @staticmethod
    def _restore(srv: Server, meta: Dict[str, str], scopes: Dict[str, Dict[str, bytes]]) -> None:
        srv._restore(fr.restore_payload(meta, scopes))

    def close(self) -> None:
        """Stop open sources and the server's worker threads."""
        for sym in list(self._sources):
            self.stop_source(sym)
        self.server._stopping.set()
        self.server._pool.shutdown(wait=True)

    # -- functions

    def call(self, fn: str, input: Any = None) -> Any:
        """Call fn with input (JSON-encoded) and return its decoded result;
        raises CallError with the function's error."""
        f = self.server.functions.get(fn)
        if f is None:
            raise KeyError("no function %r in plugin %s (it has: %s)"
                           % (fn, self.server.name, ", ".join(sorted(self.server.functions)) or "none"))
        c = _Chan()
        self.server._call(c, f, self._next_id(), encode_json(input))
        frame = c.take()
        if frame.type == fr.RESULT:
            return json.loads(frame.payload) if frame.payload else None
        err = json.loads(frame.payload)
        raise CallError(err.get("error", ""), bool(err.get("panic")))

    # -- sources and sinks

    def read(self, symbol: str, n: int) -> List[Any]:
        """The next n items of source symbol; the first read opens it as
        instance "test" and it keeps running until stop_source."""
        c = self._sources.get(symbol)
        if c is None:
            c = self._open("source", symbol)
            self._sources[symbol] = c
        out = []
        while len(out) < n:
            f = c.take()
            if f.type == fr.EOS:
                raise AssertionError("source %s ended after %d of %d items: %s"
                                     % (symbol, len(out), n, f.payload.decode() or "no error"))
            if f.type == fr.DATA:
                out.append(json.loads(f.payload) if f.payload else None)
        return out

    def stop_source(self, symbol: str) -> None:
        """Stop source symbol: open returns, close runs, state stays. Items
        it emitted that no read took are dropped; its state counts them."""
        c = self._sources.pop(symbol, None)
        if c is None:
            return
        iid = "source/%s/%s" % (symbol, INSTANCE)
        with self.server._lock:
            inst = self.server._instances.get(iid)
        if inst is not None:
            inst.stopped.set()
            while c.take().type != fr.EOS:
                pass  # read to the end of stream, as the host does
            self.server._stop({"instance": iid})
        c.close()

    def feed(self, symbol: str, *items: Any) -> None:
        """Open sink symbol as instance "test", send items, wait until it
        acknowledged them, and close it."""
        c = self._open("sink", symbol)
        batch = [fr.Frame(fr.DATA, i + 1, encode_json(it)) for i, it in enumerate(items)]
        barrier = len(items) + 1
        c.inbox.put(batch + [fr.Frame(fr.BARRIER, barrier)])
        while True:
            f = c.take()
            if f.type == fr.ACK and f.id == barrier:
                break
        self.server._stop({"instance": "sink/%s/%s" % (symbol, INSTANCE)})
        c.close()

    def _open(self, kind: str, symbol: str) -> _Chan:
        c = _Chan()
        self._pending = c
        self.server._open({"instance": "%s/%s/%s" % (kind, symbol, INSTANCE), "kind": kind,
                           "symbol": symbol, "address": "inmemory://"})
        return c

    # -- state

    def checkpoint(self) -> None:
        """Save the state now, as plugvisor's periodic checkpoint does;
        crash() restores the last one. Open sources are stopped first."""
        for sym in list(self._sources):
            self.stop_source(sym)
        self._checkpoint = self.server._snapshot(self._next_id())

    def export(self) -> Dict[str, Any]:
        """The state in `plugvisor state export` form (checkpointed now)."""
        self.checkpoint()
        scopes = fr.parse_state(self._checkpoint)
        return {"plugin": self.server.name, "version": self.server.version,
                "state_version": self.server.state_version,
                "scopes": {s: {k: json.loads(v) for k, v in kv.items()} for s, kv in scopes.items() if kv}}

    def get(self, scope: str, key: str, default: Any = None) -> Any:
        return self.server.state.scope(scope).get(key, default)

    def put(self, scope: str, key: str, value: Any) -> None:
        self.server.state.scope(scope).put(key, value)

    def delete(self, scope: str, key: str) -> None:
        self.server.state.scope(scope).delete(key)

    # -- crashes and swaps

    def crash(self) -> None:
        """Replace the plugin by a fresh one restored from the last
        checkpoint (taken by checkpoint(), export() and swap()), as a crash
        restart under plugvisor: whatever changed since is lost."""
        self.close()
        old = self.server
        self.server = self._start(self.plugin)
        if self._checkpoint is not None:
            meta = {"from_version": old.version, "from_state_version": old.state_version}
            self._restore(self.server, meta, fr.parse_state(self._checkpoint))

    def swap(self, plugin: Dict[str, Any]) -> None:
        """Swap to plugin (a new version): sources stop, the state moves
        over and the new version's migrate runs when the versions differ.
        A refused swap raises and leaves the old version serving."""
        new = self._start(plugin)
        if new.name != self.server.name:
            raise ValueError("swap %s for a plugin named %r: the name must stay" % (self.server.name, new.name))
        if new.state_version != self.server.state_version and new.migrate is None:
            raise RuntimeError("state version %s cannot read state version %s and plugin %s has no migrate hook"
                               % (new.state_version, self.server.state_version, new.name))
        self.checkpoint()
        meta = {"from_version": self.server.version, "from_state_version": self.server.state_version}
        self._restore(new, meta, fr.parse_state(self._checkpoint))
        old = self.server
        self.server, self.plugin = new, dict(plugin)
        old._stopping.set()
        old._pool.shutdown(wait=True)
        self._checkpoint = self.server._snapshot(self._next_id())
