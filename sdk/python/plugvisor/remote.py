"""External instances: a plugin started outside plugvisor (its own container,
another machine) connects out to the daemon over mutual TLS
(docs/protocol.md, "External instances").

    PLUGVISOR_CONNECT=tls+tcp://HOST:PORT   the daemon's [supervisor] listen
    PLUGVISOR_TLS_CERT, PLUGVISOR_TLS_KEY   this instance's client certificate
                                            (PEM; its Common Name or a DNS
                                            SAN names the plugin in the config)
    PLUGVISOR_TLS_CA                        the CA that signed the daemon's
                                            certificate (PEM)
    PLUGVISOR_TLS_SERVER_NAME               optional: the name to verify in
                                            the daemon's certificate (default HOST)

The control channel is TLS to HOST:PORT with ALPN "plugvisor.1", then SP
PAIR v0 over TCP framing; each channel the daemon opens as mux://ID is
another TLS connection to the same HOST:PORT with ALPN "plugvisor.1/ID".
A lost connection (or a failed TLS handshake) is retried with backoff,
each failure one line on stderr; shutdown exits 0, refuse exits 1.
"""

import os
import random
import re
import signal
import socket
import ssl
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping

from . import frames as fr
from .sp import Closed, SPSocket
from .tls import TLSStream

CONNECT = "PLUGVISOR_CONNECT"
CERT = "PLUGVISOR_TLS_CERT"
KEY = "PLUGVISOR_TLS_KEY"
CA = "PLUGVISOR_TLS_CA"
SERVER_NAME = "PLUGVISOR_TLS_SERVER_NAME"

ALPN = "plugvisor.1"
BACKOFF_MIN = 0.1  # seconds before the first retry; doubles per failure
BACKOFF_MAX = 5.0
JITTER = 0.2  # each wait is ±20%, so instances restarted together do not reconnect in step

_ADDRESS = re.compile(r"tls\+tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):([0-9]{1,5})")
_CHANNEL_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")  # the daemon sends 32 lowercase hex


class ConfigError(ValueError):
    """The environment cannot work; the message names the variable and the fix."""


class Remote:
    """Where and how an external instance connects (built from the environment)."""

    def __init__(self, host: str, port: int, server_name: str, cert: str, key: str, ca: str):
        self.host, self.port, self.server_name = host, port, server_name
        self.cert, self.key, self.ca = cert, key, ca
        self.address = "tls+tcp://%s:%d" % ("[%s]" % host if ":" in host else host, port)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Remote":
        """The PLUGVISOR_CONNECT/TLS settings, checked: ConfigError names the
        variable at fault and the fix."""
        connect = env.get(CONNECT, "")
        m = _ADDRESS.fullmatch(connect)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ConfigError("%s=%r: want tls+tcp://HOST:PORT, the daemon's [supervisor] listen address "
                              "(e.g. tls+tcp://plugvisor.default.svc:9443)" % (CONNECT, connect))
        missing = [v for v in (CERT, KEY, CA) if not env.get(v)]
        if missing:
            raise ConfigError("%s is set but %s %s not: an external instance needs %s and %s (its client "
                              "certificate and key, PEM) and %s (the CA of the daemon's certificate, PEM)"
                              % (CONNECT, " and ".join(missing), "is" if len(missing) == 1 else "are", CERT, KEY, CA))
        for var in (CERT, KEY, CA):
            try:
                with open(env[var], "rb") as f:
                    f.read(1)
            except OSError as e:
                raise ConfigError("%s=%s: cannot read it: %s" % (var, env[var], e.strerror or e)) from None
        host = m.group(1).strip("[]")
        r = cls(host, int(m.group(2)), env.get(SERVER_NAME) or host, env[CERT], env[KEY], env[CA])
        r.context(ALPN)  # the PEM files parse and the key matches the certificate
        return r

    def context(self, alpn: str) -> ssl.SSLContext:
        """A client context offering one ALPN protocol. The files are read
        again for every connection, so renewed certificates (a rotated
        Kubernetes Secret) are picked up on the next one."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key, password=_no_password)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError("%s=%s with %s=%s: not a PEM certificate and its unencrypted private key: %s"
                              % (CERT, self.cert, KEY, self.key, e)) from None
        try:
            ctx.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError("%s=%s: not a PEM CA certificate: %s" % (CA, self.ca, e)) from None
        ctx.set_alpn_protocols([alpn])
        return ctx

    def dial(self, addr: str, max_frame: int, timeout: float) -> SPSocket:
        """One channel: "" is the control channel, "mux://ID" one the
        daemon opened. Closed says why a connection failed."""
        if addr == "":
            alpn = ALPN
        elif addr.startswith("mux://") and _CHANNEL_ID.fullmatch(addr[len("mux://"):]):
            alpn = ALPN + "/" + addr[len("mux://"):]
        else:
            raise ValueError("address %r: an external instance dials only mux://ID channels" % addr)
        ctx = self.context(alpn)
        try:
            raw = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise Closed("%s: %s" % (self.address, e.strerror or e)) from None
        refused = False  # what a failure after our side of the handshake means
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(raw)
            tls = TLSStream(raw, ctx, server_hostname=self.server_name)
            tls.handshake()
            got = tls.selected_alpn_protocol()
            if got != alpn:
                raise Closed("the server agreed to ALPN protocol %r, not %r: is this the daemon's [supervisor] "
                             "listen address?" % (got, alpn))
            # In TLS 1.3 the daemon checks our certificate after our side of
            # the handshake is done: its refusal (an alert, or just the
            # connection closed or reset) comes during the SP header exchange.
            refused = True
            return SPSocket(tls, False, max_frame, timeout)
        except ssl.SSLCertVerificationError as e:
            raw.close()
            raise Closed("TLS handshake with %s: the daemon's certificate did not verify: %s (%s must hold the CA that "
                         "signed it; the name checked is %r, %s changes it)"
                         % (self.address, e.verify_message or e, CA, self.server_name, SERVER_NAME)) from None
        except (Closed, OSError) as e:
            raw.close()
            msg = str(e)
            if refused or "alert" in msg.lower():
                msg += (" — refused by the daemon? Its log says why (e.g. %s not signed by its tls_client_ca, "
                        "or naming no plugin with driver = \"external\")" % CERT)
            raise Closed("TLS handshake with %s: %s" % (self.address, msg)) from None


# _serving is the session that got a welcome and still runs (None when
# there is none); _terminating is set by SIGTERM. Both are read by the
# signal handler, which runs on the main thread between bytecodes.
_serving: List[Any] = [None]
_terminating = threading.Event()


def run(make_server: Callable[["Remote"], Any], remote: Remote, name: str) -> int:
    """Serves sessions until the daemon says shutdown (0) or refuse (1),
    reconnecting with backoff whenever a connection is lost — unless a
    SIGTERM came meanwhile: then a lost connection ends the process (0)."""
    delay = BACKOFF_MIN
    while True:
        srv = make_server(remote)
        srv.on_welcome = lambda: _serving.__setitem__(0, srv)
        try:
            code = srv.run()
        finally:
            _serving[0] = None
        if srv.lost is None:
            return code
        if _terminating.is_set():
            sys.stderr.write("plugin %s: %s; exiting (SIGTERM)\n" % (name, srv.lost))
            sys.stderr.flush()
            return 0
        if srv.welcomed:
            delay = BACKOFF_MIN  # it served: the next failure starts the backoff anew
        wait = delay * random.uniform(1 - JITTER, 1 + JITTER)
        sys.stderr.write("plugin %s: %s; reconnecting in %.2fs\n" % (name, srv.lost, wait))
        sys.stderr.flush()
        time.sleep(wait)  # the backoff itself
        delay = min(delay * 2, BACKOFF_MAX)


def exit_on_sigterm(name: str) -> None:
    """SIGTERM (an orchestrator rolling the instance) as in the Go SDK and
    docs/protocol.md: with a session serving, serve on until the daemon
    retires it with shutdown — it may be handing this instance's work and
    state to the newer one — or the connection ends, then exit 0; with no
    session, exit 0 at once. The handler is needed at all because Python
    leaves SIGTERM at its default, which the kernel ignores for PID 1 — the
    plugin's process in its own container."""
    def on_term(signum, frame):
        _terminating.set()
        if _serving[0] is None:
            sys.stderr.write("plugin %s: SIGTERM with no session; exiting\n" % name)
            sys.stderr.flush()
            os._exit(0)
        sys.stderr.write("plugin %s: SIGTERM: serving on until plugvisor retires this instance or the connection ends\n" % name)
        sys.stderr.flush()
        _say_leaving(_serving[0])

    signal.signal(signal.SIGTERM, on_term)


def _say_leaving(srv: Any) -> None:
    """Tells a daemon whose welcome lists the feature that this instance
    got SIGTERM (docs/protocol.md §5), once: a rolling update's next
    instance then takes over from this one first. On its own thread: the
    signal handler must not wait on the channel's lock."""
    features = srv.host_features if isinstance(srv.host_features, list) else []  # a bad welcome must not raise here
    if fr.FEATURE_LEAVING not in features or getattr(srv, "said_leaving", False):
        return
    srv.said_leaving = True

    def send() -> None:
        try:
            srv.ctl.send(fr.LEAVING, 0, b"")
        except Closed:
            pass  # the connection is ending: that ends the session anyway

    threading.Thread(target=send, name="plugvisor-leaving", daemon=True).start()


def _no_password() -> bytes:
    return b""  # an encrypted key fails to load instead of prompting on a terminal


def _keepalive(s: socket.socket) -> None:
    """TCP keepalive, so a daemon that vanished without a FIN is noticed
    even when welcome asked for no heartbeats."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, v in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            s.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), v)


def strip_local(env: Mapping[str, str]) -> Dict[str, str]:
    """The environment a remote Server sees: nothing of a local handshake."""
    return {k: v for k, v in env.items() if k not in ("PLUGVISOR_CONTROL", "PLUGVISOR_TOKEN", "PLUGVISOR_HOST_PID")}
