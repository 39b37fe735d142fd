"""The plugin side of plugvisor protocol 1: handshake, requests, symbols."""

import concurrent.futures
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import frames as fr
from .channel import Channel
from .schema import function_schemas, item_schema
from .sp import Closed, dial
from .state import Scope, Store, encode_json

HANDSHAKE_TIMEOUT = 10.0
CALL_WORKERS = 64  # calls running at once; more wait in the pool's queue
PARENT_CHECK = 0.5  # seconds between checks that the host is still our parent

_log = logging.getLogger("plugvisor")


class Context:
    """What plugin code gets: its state scope, a logger, the plugin config
    and, for sources, the stop signal."""

    def __init__(self, state: Scope, log: logging.Logger, config: Dict[str, Any],
                 stopped: threading.Event, instance: str = "", symbol: str = ""):
        self.state = state
        self.log = log
        self.config = config
        self.stopped = stopped  # set when the host stops the instance or the process ends
        self.instance = instance
        self.symbol = symbol

    def done(self) -> bool:
        """True once the instance should stop."""
        return self.stopped.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to seconds, waking early on stop; True if stopped."""
        return self.stopped.wait(seconds)


class _Fatal(Exception):
    def __init__(self, msg: str, lost: bool = False):
        super().__init__(msg)
        self.lost = lost  # the host went away (or never answered), rather than refused or broke the protocol


def describe(exc: BaseException) -> str:
    """'Type: message (file.py:line in func)', the line being where it was raised."""
    text = type(exc).__name__
    msg = str(exc)
    if msg:
        text += ": " + msg
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        text += " (%s:%d in %s)" % (os.path.basename(last.filename), last.lineno, last.name)
    return text


def _error_payload(msg: str, panic: bool = False) -> bytes:
    d: Dict[str, Any] = {"error": msg}
    if panic:
        d["panic"] = True
    return encode_json(d)


def _encode_item(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return encode_json(item)


def _decode_item(p: bytes) -> Any:
    if not p:
        return None
    try:
        return json.loads(p)
    except ValueError:
        return p  # a raw byte item is handed over as is


class _Function:
    def __init__(self, name: str, fn: Callable):
        if not callable(fn):
            raise TypeError("function %r is a %s, not callable" % (name, type(fn).__name__))
        self.name = name
        self.fn = fn
        self.takes_input = True
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        except (TypeError, ValueError):
            return  # builtins without a signature: assume fn(ctx, input)
        if not params:
            raise TypeError("function %r takes no arguments; accepted forms: fn(ctx, input) or fn(ctx)" % name)
        var = any(p.kind == p.VAR_POSITIONAL for p in params)
        if len(params) == 1 and not var:
            self.takes_input = False
        elif not var and sum(1 for p in params[2:] if p.default is p.empty) > 0:
            raise TypeError("function %r takes more than (ctx, input); accepted forms: fn(ctx, input) or fn(ctx)" % name)


class _Instance:
    def __init__(self, iid: str, kind: str, symbol: str):
        self.id, self.kind, self.symbol = iid, kind, symbol
        self.chan: Optional[Channel] = None
        self.obj: Any = None
        self.ctx: Optional[Context] = None
        self.scope: Optional[Scope] = None
        self.lock = threading.Lock()  # emit vs snapshot (source), collect vs close (sink)
        self.seq = 0
        self.ended = False
        self.stopped = threading.Event()
        self.done = threading.Event()  # the source's open returned and eos is queued


class Server:
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
        self._heard = time.monotonic()
        self.config = welcome.get("config") or {}
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

    # -- symbols

    def _fail_channel(self, inst: _Instance, e: BaseException) -> None:
        if isinstance(e, Closed):
            return  # the host closed its side: the instance is over
        self._fatal("%s %s: %s" % (inst.kind, inst.id, e))

    def _serve_calls(self, inst: _Instance) -> None:
        c = inst.chan
        while True:
            try:
                frames = c.recv()
                for f in frames:
                    if f.type not in (fr.CALL, fr.CALL_BATCH):
                        raise fr.MalformedFrame("unexpected %s frame on the call channel" % fr.type_name(f.type))
                for f in frames:
                    if f.type == fr.CALL_BATCH:
                        name, inputs = fr.parse_call_batch(f.payload)
                        self._pool.submit(self._call_batch, c, name, f.id, inputs)
                        continue
                    name, data = fr.parse_call(f.payload)
                    fn = self.functions.get(name)
                    if fn is None:
                        c.send(fr.FAIL, f.id, _error_payload("no function %r in plugin %s (it has: %s)" % (
                            name, self.name, ", ".join(sorted(self.functions)) or "none")))
                        continue
                    self._pool.submit(self._call, c, fn, f.id, data)
            except (Closed, fr.MalformedFrame, fr.FrameTooLarge) as e:
                c.close()
                self._fail_channel(inst, e)
                return
            except RuntimeError:  # the pool is shut down: the process is exiting
                return

    def _function_ctx(self, fn: _Function) -> Context:
        return Context(self.state.scope("function/" + fn.name),
                       logging.getLogger("plugvisor.%s.%s" % (self.name, fn.name)), self.config, self._stopping,
                       "function/" + fn.name, fn.name)

    def _apply(self, ctx: Context, fn: _Function, cid: int, data: bytes) -> Tuple[int, bytes]:
        """Runs fn on one input: (ITEM_OK, output) or (ITEM_ERROR/ITEM_PANIC, message)."""
        try:
            if fn.takes_input:
                try:
                    arg = json.loads(data) if data else None
                except ValueError as e:
                    raise _RequestError("function %r: input is not valid JSON: %s" % (fn.name, e)) from None
                out = fn.fn(ctx, arg)
            else:
                out = fn.fn(ctx)
            try:
                return fr.ITEM_OK, _encode_item(out)
            except (TypeError, ValueError) as e:
                raise _RequestError("function %r: result of type %s cannot be JSON-encoded: %s"
                                    % (fn.name, type(out).__name__, e)) from None
        except _RequestError as e:
            return fr.ITEM_ERROR, str(e).encode()
        except Exception as e:
            ctx.log.debug("call %d failed", cid, exc_info=True)
            return fr.ITEM_ERROR, describe(e).encode()
        except BaseException as e:  # SystemExit, KeyboardInterrupt: like a Go panic
            return fr.ITEM_PANIC, describe(e).encode()

    def _call(self, c: Channel, fn: _Function, cid: int, data: bytes) -> None:
        status, out = self._apply(self._function_ctx(fn), fn, cid, data)
        if status == fr.ITEM_OK:
            frame = (fr.RESULT, out)
        else:
            frame = (fr.FAIL, _error_payload(out.decode(), panic=status == fr.ITEM_PANIC))
        try:
            try:
                c.send(frame[0], cid, frame[1])
            except fr.FrameTooLarge as e:
                c.send(fr.FAIL, cid, _error_payload(
                    "function %r: answer not sent: %s — return less, or raise max_frame in the host's "
                    "[supervisor] config" % (fn.name, e)))
        except Closed:
            pass
        if status == fr.ITEM_PANIC:
            # Its state may be half-written: end the process so the host
            # restarts it from the last checkpoint.
            self._fatal("function %s: %s" % (fn.name, out.decode()))

    def _call_batch(self, c: Channel, name: str, bid: int, inputs: List[bytes]) -> None:
        """Applies the function to each input in order and answers the batch
        in one result_batch frame; a failing input fails only itself. A panic
        ends the batch there (the rest are "not run") and then the process."""
        fn = self.functions.get(name)
        if fn is None:
            msg = ("no function %r in plugin %s (it has: %s)" % (
                name, self.name, ", ".join(sorted(self.functions)) or "none")).encode()
            items = [(fr.ITEM_ERROR, msg)] * len(inputs)
        else:
            ctx = self._function_ctx(fn)
            items, panicked = [], None
            for data in inputs:
                if panicked is not None:
                    items.append((fr.ITEM_ERROR, b"not run: an earlier input of its batch panicked"))
                    continue
                status, out = self._apply(ctx, fn, bid, data)
                if status == fr.ITEM_PANIC:
                    panicked = out
                items.append((status, out))
        try:
            try:
                c.send(fr.RESULT_BATCH, bid, fr.result_batch_payload(items))
            except fr.FrameTooLarge as e:
                msg = ("function %r: %s" % (name, e)).encode()
                c.send(fr.RESULT_BATCH, bid, fr.result_batch_payload([(fr.ITEM_ERROR, msg)] * len(inputs)))
        except Closed:
            pass
        if fn is not None and panicked is not None:
            self._fatal("function %s: %s" % (fn.name, panicked.decode()))

    def _run_source(self, inst: _Instance) -> None:
        c = inst.chan
        # The host sends nothing on a source channel; a reader notices it closing.
        threading.Thread(target=self._watch_source, args=(inst,), daemon=True).start()

        def emit(item: Any) -> None:
            b = _encode_item(item)
            with inst.lock:
                # Sent even after a stop: everything emitted before open
                # returns reaches the host ahead of the end of stream.
                inst.seq += 1
                try:
                    c.send(fr.DATA, inst.seq, b)
                except BaseException:
                    inst.seq -= 1
                    raise

        err = b""
        try:
            inst.obj.open(inst.ctx, emit)
        except Exception as e:
            msg = describe(e)
            inst.ctx.log.error("source ended with an error: %s", msg, exc_info=not isinstance(e, Closed))
            err = _error_payload(msg)
        with inst.lock:
            inst.ended = True
            last = inst.seq
        try:
            c.send(fr.EOS, last, err)
        except Closed:
            pass
        inst.done.set()

    def _watch_source(self, inst: _Instance) -> None:
        try:
            frames = inst.chan.recv()
            self._fail_channel(inst, fr.MalformedFrame(
                "unexpected %s frame on source %s" % (fr.type_name(frames[0].type), inst.symbol)))
        except Exception as e:
            self._fail_channel(inst, e)
        inst.chan.close()

    def _run_sink(self, inst: _Instance) -> None:
        c = inst.chan
        try:
            while True:
                last = 0
                for f in c.recv():
                    if f.type == fr.DATA:
                        with inst.lock:
                            if inst.ended:
                                raise fr.MalformedFrame("data for sink %s after it was stopped" % inst.symbol)
                            try:
                                inst.obj.collect(inst.ctx, _decode_item(f.payload))
                            except Exception as e:
                                inst.ctx.log.error("collect of item %d failed: %s", f.id, describe(e))
                        last = f.id
                    elif f.type == fr.BARRIER:
                        last = 0
                        c.send(fr.ACK, f.id)
                    else:
                        raise fr.MalformedFrame("unexpected %s frame on sink %s" % (fr.type_name(f.type), inst.symbol))
                if last:
                    c.send(fr.ACK, last)
        except (Closed, fr.MalformedFrame, fr.FrameTooLarge) as e:
            c.close()
            self._fail_channel(inst, e)


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


class _RequestError(Exception):
    """A request failed for a reason already phrased for the user."""


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
