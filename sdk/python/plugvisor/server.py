"""The plugin side of plugvisor protocol 1: handshake, control requests,
state; the symbols themselves run in symbols.py."""

import concurrent.futures
import inspect
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from . import frames as fr
from .channel import Channel
from .schema import function_schemas, item_schema
from .sp import Closed, dial
from .state import Scope, Store, encode_json
from .symbols import (REPLICATED_STATE, Context, SymbolRunner, _error_payload, _Function, _Instance,  # noqa: F401
                      _RequestError, describe)

HANDSHAKE_TIMEOUT = 10.0
CALL_WORKERS = 64  # calls running at once; more wait in the pool's queue
PARENT_CHECK = 0.5  # seconds between checks that the host is still our parent

_log = logging.getLogger("plugvisor")


class _Fatal(Exception):
    def __init__(self, msg: str, lost: bool = False):
        super().__init__(msg)
        self.lost = lost  # the host went away (or never answered), rather than refused or broke the protocol


class Server(SymbolRunner):
    """One plugin process talking to its host. serve() wraps it."""

    def __init__(self, name: str, version: str, functions=None, sources=None, sinks=None,
                 state_version: str = "1", migrate: Optional[Callable] = None,
                 env: Optional[Dict[str, str]] = None, schemas: Optional[Dict[str, Dict[str, Any]]] = None,
                 remote: Any = None):
        env = os.environ if env is None else env
        # An external instance (plugvisor.remote.Remote): its channels are TLS
        # connections to the daemon, and losing the host ends only this
        # session (lost says why) — the caller reconnects.
        self.remote = remote
        self.lost: Optional[str] = None
        self.welcomed = False
        self.on_welcome: Optional[Callable[[], None]] = None  # an external session serves (SIGTERM handling)
        self.name, self.version = name, version
        self.state_version = state_version or "1"
        self.migrate = migrate
        self.sources = dict(sources or {})
        self.sinks = dict(sinks or {})
        self.functions = {n: _Function(n, f) for n, f in (functions or {}).items()}
        for kind, table in (("source", self.sources), ("sink", self.sinks)):
            for n, f in table.items():
                if not callable(f):
                    raise TypeError("%s %r must be a class or factory, not a %s" % (kind, n, type(f).__name__))
        self.control = env.get("PLUGVISOR_CONTROL", "")
        self.token = env.get("PLUGVISOR_TOKEN", "")
        self.max_frame = _int(env.get("PLUGVISOR_MAX_FRAME")) or fr.DEFAULT_MAX_FRAME
        self.host_pid = _int(env.get("PLUGVISOR_HOST_PID"))
        self.manifest = {
            "name": name, "version": version, "state_version": self.state_version, "language": "python",
            "sources": sorted(self.sources), "sinks": sorted(self.sinks), "functions": sorted(self.functions),
            "migrate": migrate is not None, "features": [fr.FEATURE_CALL_BATCH],
        }
        announced = self._schemas(schemas or {})
        if announced:
            self.manifest["schemas"] = announced
        self.state = Store()
        self.config: Dict[str, Any] = {}
        self.replicas = 1  # from the welcome
        self.log = logging.getLogger("plugvisor." + name)
        self.ctl: Optional[Channel] = None
        self._lock = threading.Lock()
        self._instances: Dict[str, _Instance] = {}
        self._channels: List[Channel] = []
        self._exit = threading.Event()
        self._exit_code = 0
        self._exit_msg = ""
        self._stopping = threading.Event()  # process-wide: set when exiting
        self._heard = time.monotonic()
        self._early: List[fr.Frame] = []
        self._host_gone = False
        self._pool = concurrent.futures.ThreadPoolExecutor(CALL_WORKERS, thread_name_prefix="plugvisor-call")

    def _schemas(self, explicit: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
        """Each symbol's JSON Schemas: explicit ones win over type hints and
        item_type (see plugvisor.schema)."""
        out: Dict[str, Dict[str, Any]] = {}
        for n, f in self.functions.items():
            out[n] = function_schemas(f.fn, f.takes_input)
        for table in (self.sources, self.sinks):
            for n, factory in table.items():
                item = item_schema(factory)
                if item is not None:
                    out[n] = {"item": item}
        for n, parts in explicit.items():
            if n in self.functions:
                allowed = ("in", "out")
            elif n in self.sources or n in self.sinks:
                allowed = ("item",)
            else:
                raise TypeError("schemas: %r is not one of the plugin's symbols" % n)
            for k, v in parts.items():
                if k not in allowed or not isinstance(v, dict):
                    raise TypeError("schemas[%r]: want %s mapped to schema dicts, got %r" % (n, " and ".join(allowed), k))
                out.setdefault(n, {})[k] = v
        return {n: parts for n, parts in out.items() if parts}

    # -- lifecycle

    def run(self) -> int:
        """Serve until shut down; returns the exit status (0 on shutdown)."""
        try:
            sp = self._sp_dial(self.control)
        except (Closed, ValueError, fr.MalformedFrame) as e:
            return self._die("connect to the plugvisor host: %s" % e, lost=True)
        self.ctl = Channel(sp, self.max_frame, "control")
        try:
            welcome = self._handshake(sp)
        except _Fatal as e:
            self.ctl.close()
            return self._die(str(e), lost=e.lost)
        self.welcomed = True
        self.host_features = welcome.get("features") or []  # frames the host understands (remote.py: leaving)
        if self.on_welcome is not None:
            self.on_welcome()
        self._heard = time.monotonic()
        self.config = welcome.get("config") or {}
        self.replicas = int(welcome.get("replicas") or 1)  # > 1: function state writes fail
        hb = float(welcome.get("heartbeat_ms") or 0) / 1000.0
        # An external instance says so: its operator watches it (re)connect.
        (self.log.info if self.remote else self.log.debug)("welcomed as generation %s", welcome.get("generation"))
        threading.Thread(target=self._read_control, name="plugvisor-control", daemon=True).start()
        tick = min(hb, PARENT_CHECK) if hb else PARENT_CHECK
        while not self._exit.wait(tick):
            if hb and time.monotonic() - self._heard > 3 * hb:
                self._fatal("the plugvisor host sent nothing for %.0f ms (3 heartbeats)%s"
                            % (3000 * hb, "" if self.remote else "; exiting"), host_gone=True)
            elif self.host_pid > 0 and os.getppid() != self.host_pid:
                self._fatal("the plugvisor host (pid %d) is gone; exiting" % self.host_pid, host_gone=True)
        if self._host_gone and self.remote is None:
            try:
                self._die(self._exit_msg + "; ending its process group")
            except OSError:
                pass  # the host held our stderr
            _kill_own_group()
        self._close_all()
        if self._exit_code:
            return self._die(self._exit_msg, lost=self._host_gone)
        return 0

    def _die(self, msg: str, lost: bool = False) -> int:
        if lost and self.remote is not None:
            self.lost = msg  # plugvisor.remote.run says it with the retry
            return 1
        sys.stderr.write("plugin %s: %s\n" % (self.name, msg))
        sys.stderr.flush()
        return 1

    def _handshake(self, sp) -> Dict[str, Any]:
        hello = {"protocol": fr.VERSION, "token": self.token, "pid": os.getpid(), "manifest": self.manifest}
        try:
            self.ctl.send(fr.HELLO, 0, encode_json(hello))
            sp.settimeout(HANDSHAKE_TIMEOUT)
            frames = self.ctl.recv()
            sp.settimeout(None)
        except Closed as e:
            raise _Fatal("handshake: the host closed the connection (%s)" % e, lost=True) from None
        except (fr.MalformedFrame, fr.FrameTooLarge) as e:
            raise _Fatal("handshake: %s" % e) from None
        except OSError:
            raise _Fatal("handshake: no answer from the host within %.0fs" % HANDSHAKE_TIMEOUT, lost=True) from None
        f = frames[0]
        # Frames batched behind the welcome (a ping, an open) are the first requests.
        self._early = frames[1:]
        if f.type == fr.REFUSE:
            raise _Fatal("the host refused this plugin: %s" % _error_text(f))
        if f.type != fr.WELCOME:
            raise _Fatal("handshake: expected welcome, got %s" % fr.type_name(f.type))
        try:
            w = json.loads(f.payload)
        except ValueError as e:
            raise _Fatal("handshake: welcome payload is not valid JSON: %s" % e) from None
        if not isinstance(w, dict):
            raise _Fatal("handshake: welcome payload is not a JSON object")
        return w

    def _fatal(self, msg: str, code: int = 1, host_gone: bool = False) -> None:
        with self._lock:
            if not self._exit.is_set():
                self._exit_code, self._exit_msg = code, msg
                self._host_gone = host_gone
                self._exit.set()

    def _shutdown(self) -> None:
        with self._lock:
            if not self._exit.is_set():
                self._exit_code = 0
                self._exit.set()

    def _close_all(self) -> None:
        self._stopping.set()
        with self._lock:
            chans = list(self._channels)
            for inst in self._instances.values():
                inst.stopped.set()
        for c in chans:
            c.close(drain=0.5 if self._exit_code == 0 else 0)
        if self.ctl is not None:
            self.ctl.close(drain=0.5)
        self._pool.shutdown(wait=False)

    # -- control channel

    def _read_control(self) -> None:
        frames, self._early = self._early, []
        while True:
            if not self._dispatch(frames):
                return
            try:
                frames = self.ctl.recv()
            except Closed:
                self._fatal("lost the control channel to the plugvisor host", host_gone=True)
                return
            except (fr.MalformedFrame, fr.FrameTooLarge) as e:
                self._fatal("control channel: %s" % e)
                return
            self._heard = time.monotonic()

    def _dispatch(self, frames: List[fr.Frame]) -> bool:
        for f in frames:
            if f.type == fr.PING:
                self._reply(fr.PONG, f.id)
            elif f.type == fr.SHUTDOWN:
                self._shutdown()
            elif f.type in (fr.OPEN, fr.STOP, fr.SNAPSHOT, fr.RESTORE):
                # A stop may wait for a source to end: each request runs on its own.
                threading.Thread(target=self._request, args=(f,), daemon=True,
                                 name="plugvisor-" + fr.type_name(f.type)).start()
            else:
                self._fatal("control channel: malformed frame: unexpected %s frame" % fr.type_name(f.type))
                return False
        return True

    def _reply(self, ftype: int, fid: int, payload: bytes = b"") -> None:
        try:
            self.ctl.send(ftype, fid, payload)
        except Closed:
            pass

    def _request(self, f: fr.Frame) -> None:
        try:
            if f.type == fr.OPEN:
                self._open(_json_object(f))
            elif f.type == fr.STOP:
                self._stop(_json_object(f))
            elif f.type == fr.SNAPSHOT:
                self._reply(fr.STATE, f.id, self._snapshot(f.id))
                return
            else:
                self._restore(f.payload)
        except fr.MalformedFrame as e:
            self._fatal("control channel: malformed %s frame: %s" % (fr.type_name(f.type), e))
            return
        except Exception as e:  # the plugin's own code failed: answer, keep running
            msg = str(e) if isinstance(e, _RequestError) else describe(e)
            self.log.error("%s request failed: %s", fr.type_name(f.type), msg)
            self._reply(fr.ERROR, f.id, _error_payload(msg))
            return
        self._reply(fr.OK, f.id)

    # -- requests

    def _sp_dial(self, addr: str):
        if self.remote is not None:
            return self.remote.dial(addr, self.max_frame, HANDSHAKE_TIMEOUT)
        return dial(addr, self.max_frame, HANDSHAKE_TIMEOUT)

    def _dial(self, addr: str, name: str) -> Channel:
        try:
            c = Channel(self._sp_dial(addr), self.max_frame, name)
        except (Closed, ValueError) as e:
            raise _RequestError("dial %s: %s" % (addr, e)) from None
        with self._lock:
            self._channels.append(c)
        return c

    def _open(self, m: Dict[str, Any]) -> None:
        iid, kind, symbol, addr = (str(m.get(k) or "") for k in ("instance", "kind", "symbol", "address"))
        with self._lock:
            if iid in self._instances:
                raise _RequestError("instance %r is already open" % iid)
        inst = _Instance(iid, kind, symbol)
        if kind == "functions":
            pass
        elif kind in ("source", "sink"):
            table = self.sources if kind == "source" else self.sinks
            if symbol not in table:
                raise _RequestError("no %s %r in plugin %s (it has: %s)"
                                    % (kind, symbol, self.name, ", ".join(sorted(table)) or "none"))
            inst.obj = table[symbol]()
            inst.scope = self.state.scope(iid)
            inst.ctx = Context(inst.scope, logging.getLogger("plugvisor.%s.%s" % (self.name, symbol)),
                               self.config, inst.stopped, iid, symbol)
            _call_hook(inst.obj, "configure", kind, symbol, self.config)
            if kind == "sink":
                _call_hook(inst.obj, "open", kind, symbol, inst.ctx)
        else:
            raise _RequestError("unknown instance kind %r (source, sink or functions)" % kind)
        inst.chan = self._dial(addr, "%s %s" % (kind, iid))
        with self._lock:
            self._instances[iid] = inst
        target = {"functions": self._serve_calls, "source": self._run_source, "sink": self._run_sink}[kind]
        threading.Thread(target=target, args=(inst,), daemon=True, name="plugvisor-%s-%s" % (kind, iid)).start()

    def _stop(self, m: Dict[str, Any]) -> None:
        iid = str(m.get("instance") or "")
        with self._lock:
            inst = self._instances.pop(iid, None)
        if inst is None:
            raise _RequestError("no open instance %r" % iid)
        inst.stopped.set()
        if inst.kind == "source":
            inst.done.wait()
            _call_hook(inst.obj, "close", "source", inst.symbol, inst.ctx)
        elif inst.kind == "sink":
            with inst.lock:
                inst.ended = True
                _call_hook(inst.obj, "close", "sink", inst.symbol, inst.ctx)

    def _snapshot(self, sid: int) -> bytes:
        """Every scope; a running source gets a checkpoint marker in its stream
        at the point its scope was copied, so the host knows which items the
        state already accounts for."""
        with self._lock:
            running = [i for i in self._instances.values() if i.kind == "source"]
        out: fr.Scopes = {}
        for inst in running:
            with inst.lock:
                if inst.ended:
                    continue
                out[inst.id] = inst.scope.copy()
                inst.chan.send(fr.CHECKPOINT, sid)
        for name, sc in self.state.all().items():
            if name not in out:
                out[name] = sc.copy()
        return fr.encode_state(out)

    def _restore(self, payload: bytes) -> None:
        meta, scopes = fr.parse_restore(payload)
        from_version = str(meta.get("from_version") or "")
        from_state = str(meta.get("from_state_version") or "") or "1"
        if from_state != self.state_version and self.migrate is None:
            raise _RequestError("state version %s cannot read state version %s and plugin %s has no migrate hook"
                                % (self.state_version, from_state, self.name))
        convert = self.migrate is not None and (
            from_state != self.state_version or (from_version != "" and from_version != self.version))
        for name, kv in scopes.items():
            if convert:
                try:
                    if _takes_info(self.migrate):
                        got = self.migrate(from_version, dict(kv), Migration(
                            name, from_version, from_state, self.version, self.state_version))
                    else:
                        got = self.migrate(from_version, dict(kv))
                except Exception as e:
                    raise _RequestError("migrate %s from version %s: %s" % (name, from_version, describe(e))) from None
                kv = _migrated(name, got)
            self.state.scope(name).replace(kv)

class Migration(NamedTuple):
    """What a three-argument migrate(from_version, kv, m) is told."""
    scope: str  # "function/<name>", "source/<symbol>/<name>", "sink/<symbol>/<name>"
    from_version: str  # plugin version that wrote the state
    from_state_version: str
    to_version: str
    to_state_version: str


def _takes_info(fn: Callable) -> bool:
    """True when migrate accepts a third positional argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 3


def _int(s: Optional[str]) -> int:
    try:
        return int(s or 0)
    except ValueError:
        return 0


def _json_object(f: fr.Frame) -> Dict[str, Any]:
    try:
        v = json.loads(f.payload)
    except ValueError as e:
        raise fr.MalformedFrame("payload is not valid JSON: %s" % e) from None
    if not isinstance(v, dict):
        raise fr.MalformedFrame("payload is not a JSON object")
    return v


def _error_text(f: fr.Frame) -> str:
    try:
        msg = json.loads(f.payload).get("error")
    except (ValueError, AttributeError):
        msg = None
    return msg or "%s frame without a message" % fr.type_name(f.type)


def _call_hook(obj: Any, hook: str, kind: str, symbol: str, arg: Any) -> None:
    fn = getattr(obj, hook, None)
    if fn is None:
        return
    try:
        fn(arg)
    except Exception as e:
        raise _RequestError("%s %s: %s: %s" % (kind, symbol, hook, describe(e))) from None


def _migrated(scope: str, got: Any) -> Dict[str, bytes]:
    if not isinstance(got, dict):
        raise _RequestError("migrate of %s returned a %s, not a dict of key to JSON bytes" % (scope, type(got).__name__))
    out = {}
    for k, v in got.items():
        # Values are JSON bytes; anything else is taken as a value to encode.
        out[str(k)] = bytes(v) if isinstance(v, (bytes, bytearray)) else encode_json(v)
    return out


def _kill_own_group() -> None:
    """The host is gone: end everything this plugin started in its process
    group (itself included), as plugvisor started it leading that group.
    Started any other way (from a shell) the group is not ours: nothing."""
    if hasattr(os, "killpg") and os.getpgrp() == os.getpid():
        import signal
        os.killpg(0, signal.SIGKILL)
