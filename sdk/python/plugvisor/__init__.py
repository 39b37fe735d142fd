"""plugvisor: write plugvisor plugins in Python (standard library only).

    import plugvisor

    def double(ctx, x):
        ctx.state.incr_counter("calls", 1)
        return x * 2

    plugvisor.serve(name="demo", version="1.0.0", functions={"double": double})

Functions are fn(ctx, input) or fn(ctx); input and result are JSON values.
Sources are classes (or factories) with configure(props), open(ctx, emit)
— running until ctx.stopped is set; emit blocks while the host is behind;
update state after emit returns — and close(ctx). Sinks have configure(props),
open(ctx), collect(ctx, item) and close(ctx). ctx.state is the instance's
state scope (put, get, delete, incr_counter, get_counter), ctx.log a logger
writing to stderr, which the host keeps in its logs. docs/protocol.md is
the wire protocol.
"""

import logging
import os
import sys
from typing import Any, Callable, Dict, Optional

from .frames import FrameTooLarge, MalformedFrame
from .schema import schema_of
from . import remote
from .server import Context, Migration, Server, describe
from .sp import Closed
from .state import Scope

__all__ = ["serve", "Context", "Migration", "Scope", "Closed", "MalformedFrame", "FrameTooLarge", "describe", "schema_of"]

__version__ = "1.0.0"


def serve(name: str, version: str, functions: Optional[Dict[str, Callable]] = None,
          sources: Optional[Dict[str, Callable]] = None, sinks: Optional[Dict[str, Callable]] = None,
          state_version: str = "1",
          migrate: Optional[Callable[[str, Dict[str, bytes]], Dict[str, Any]]] = None,
          schemas: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
    """Run the plugin until plugvisor shuts it down, then exit; never returns.

    migrate(from_version, {key: JSON bytes}) -> {key: JSON bytes} converts one
    scope written by another plugin version; it is needed when state_version
    changes. A migrate taking a third argument also gets a Migration: the
    scope and the plugin and state versions that wrote it. schemas
    ({symbol: {"in"|"out"|"item": JSON Schema}}) declares symbols' JSON
    explicitly; without it they come from type hints and a source's or
    sink's item_type (see plugvisor.schema). Started by hand (no plugvisor environment) it says so and exits
    with status 2.

    Started outside plugvisor with PLUGVISOR_CONNECT=tls+tcp://HOST:PORT
    and PLUGVISOR_TLS_CERT, PLUGVISOR_TLS_KEY, PLUGVISOR_TLS_CA, it is an
    external instance (plugvisor.remote): it connects to the daemon over
    mutual TLS, reconnects with backoff, exits 0 when the daemon retires it
    and 1 when the daemon refuses it; a setting that cannot work exits 2.
    """
    env = os.environ
    local = env.get("PLUGVISOR_CONTROL") and env.get("PLUGVISOR_TOKEN")
    if not local and env.get(remote.CONNECT):
        try:
            where = remote.Remote.from_env(env)
        except remote.ConfigError as e:
            _refuse_to_run("plugin %s: %s\n" % (name, e))
        _setup_logging(name)
        remote.exit_on_sigterm(name)
        logging.getLogger("plugvisor").info("external instance of %s %s: connecting to %s", name, version, where.address)
        code = remote.run(lambda r: Server(name, version, functions, sources, sinks, state_version, migrate,
                                           env=remote.strip_local(env), schemas=schemas, remote=r), where, name)
        _exit(code)
    if not local:
        prog = sys.argv[0] if sys.argv and sys.argv[0] else "main.py"
        _refuse_to_run(
            "%s %s is a plugvisor plugin: it must be started by plugvisor.\n"
            "Add its folder to config.toml as a driver, e.g.\n\n  [plugins.%s]\n  driver = \"%s\"\n\n"
            "then run `plugvisor dev` (or `make run`). To run it outside plugvisor as an external\n"
            "instance, set PLUGVISOR_CONNECT=tls+tcp://HOST:PORT with PLUGVISOR_TLS_CERT,\n"
            "PLUGVISOR_TLS_KEY and PLUGVISOR_TLS_CA (see docs/protocol.md).\n"
            % (name, version, name, _folder_of(prog)))
    _setup_logging(name)
    server = Server(name, version, functions, sources, sinks, state_version, migrate, schemas=schemas)
    _exit(server.run())


def _refuse_to_run(msg: str) -> None:
    sys.stderr.write(msg)
    sys.stderr.flush()
    os._exit(2)


def _exit(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Daemon threads may sit in plugin code; the process ends here regardless.
    os._exit(code)


def _folder_of(prog: str) -> str:
    rel = os.path.relpath(os.path.dirname(os.path.abspath(prog)))
    return rel if rel.startswith(".") else "./" + rel


def _setup_logging(name: str) -> None:
    log = logging.getLogger("plugvisor")
    if log.handlers:
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
