"""The plugin side of symbols: functions called one by one or in
batches, sources streaming, sinks collecting, on their channels. Server
(server.py) runs them through the SymbolRunner mixin."""

import json
import logging
import os
import threading
import traceback
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import frames as fr
from .channel import Channel
from .sp import Closed
from .state import ReplicatedScope, Scope, encode_json


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


REPLICATED_STATE = "replicated_state"  # the fail code of a state write with replicas > 1


def _refused_write(ctx: "Context") -> bool:
    return isinstance(ctx.state, ReplicatedScope) and ctx.state.refused is not None


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


def _error_payload(msg: str, panic: bool = False, code: str = "") -> bytes:
    d: Dict[str, Any] = {"error": msg}
    if panic:
        d["panic"] = True
    if code:
        d["code"] = code
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


class _RequestError(Exception):
    """A request failed for a reason already phrased for the user."""


class SymbolRunner:
    """Server's symbol methods; they use its pool, state, config and _fatal."""

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
        scope: Any = self.state.scope("function/" + fn.name)
        if self.replicas > 1:
            scope = ReplicatedScope(scope, self.name, fn.name, self.replicas)
        return Context(scope,
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
        ctx = self._function_ctx(fn)
        status, out = self._apply(ctx, fn, cid, data)
        if status == fr.ITEM_OK:
            frame = (fr.RESULT, out)
        else:
            frame = (fr.FAIL, _error_payload(out.decode(), panic=status == fr.ITEM_PANIC))
        if status != fr.ITEM_PANIC and _refused_write(ctx):
            frame = (fr.FAIL, _error_payload(str(ctx.state.refused), code=REPLICATED_STATE))
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
        if fn is not None and panicked is None and _refused_write(ctx):
            # The batch is one call of fn: it fails whole, with the code.
            try:
                c.send(fr.FAIL, bid, _error_payload(str(ctx.state.refused), code=REPLICATED_STATE))
            except Closed:
                pass
            return
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
