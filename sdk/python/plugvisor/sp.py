"""SP (nanomsg scalability protocols) PAIR v0 sockets over ipc:// and tcp://.

Just enough of SP for plugvisor: one stream connection, the 8-byte header
exchange, then length-prefixed messages. Over ipc each message is 0x01 +
u64 length + body; over tcp it is u64 length + body.
"""

import socket
import struct
import threading
from typing import Optional, Tuple

from .frames import DEFAULT_MAX_FRAME, FrameTooLarge, MalformedFrame

PAIR_V0 = 0x0010
HEADER = b"\x00SP\x00" + struct.pack(">H", PAIR_V0) + b"\x00\x00"

_IPC_MSG = struct.Struct(">BQ")
_TCP_MSG = struct.Struct(">Q")


class Closed(ConnectionError):
    """The connection is closed (by us or by the peer)."""


def parse_address(addr: str) -> Tuple[str, object]:
    """Split ipc://PATH or tcp://HOST:PORT into (scheme, socket address)."""
    if addr.startswith("ipc://"):
        path = addr[len("ipc://"):]
        if not path:
            raise ValueError("address %r has no socket path" % addr)
        return "ipc", path
    if addr.startswith("tcp://"):
        hostport = addr[len("tcp://"):]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("address %r needs a port: tcp://HOST:PORT" % addr)
        host = host.strip("[]") or "0.0.0.0"
        return "tcp", (host, int(port))
    raise ValueError("address %r: only ipc://PATH and tcp://HOST:PORT are supported" % addr)


class SPSocket:
    """One established PAIR v0 connection. send is safe from several
    threads (whole messages never interleave); recv from one at a time."""

    def __init__(self, sock: socket.socket, ipc: bool, max_recv: int = DEFAULT_MAX_FRAME,
                 timeout: Optional[float] = 10.0):
        self._sock = sock
        self._ipc = ipc
        self._max = max_recv
        self._wlock = threading.Lock()
        self._closed = False
        sock.settimeout(timeout)
        try:
            sock.sendall(HEADER)
            peer = _recv_exact(sock, 8)
        except (OSError, Closed) as e:
            sock.close()
            raise Closed("SP handshake: %s" % e) from None
        if peer != HEADER:
            sock.close()
            if peer[:4] != HEADER[:4]:
                raise MalformedFrame("peer is not an SP socket (header %s)" % peer.hex())
            (proto,) = struct.unpack(">H", peer[4:6])
            raise MalformedFrame("peer speaks SP protocol 0x%04x, PAIR v0 (0x%04x) needs a PAIR v0 peer"
                                 % (proto, PAIR_V0))
        sock.settimeout(None)
        self._rfile = sock.makefile("rb", buffering=1 << 16)

    @property
    def closed(self) -> bool:
        return self._closed

    def settimeout(self, seconds: Optional[float]) -> None:
        self._sock.settimeout(seconds)

    def send(self, body: bytes) -> None:
        if self._ipc:
            head = _IPC_MSG.pack(1, len(body))
        else:
            head = _TCP_MSG.pack(len(body))
        with self._wlock:
            if self._closed:
                raise Closed("connection closed")
            try:
                if len(body) < 4096:
                    self._sock.sendall(head + body)
                else:
                    self._sock.sendall(head)
                    self._sock.sendall(body)
            except OSError as e:
                raise Closed("send: %s" % e) from None

    def recv(self) -> bytes:
        """The next message body; Closed at the end of the stream."""
        try:
            if self._ipc:
                head = self._read(9)
                kind, n = _IPC_MSG.unpack(head)
                if kind != 1:
                    raise MalformedFrame("SP ipc message type %d, expected 1" % kind)
            else:
                (n,) = _TCP_MSG.unpack(self._read(8))
            if n > self._max:
                raise FrameTooLarge("peer sent a message of %d bytes, over the limit of %d bytes (max_frame)"
                                    % (n, self._max))
            return self._read(n)
        except (OSError, ValueError) as e:
            if isinstance(e, (MalformedFrame, FrameTooLarge)):
                raise
            if isinstance(e, socket.timeout):
                raise
            raise Closed("receive: %s" % e) from None

    def _read(self, n: int) -> bytes:
        b = self._rfile.read(n)
        if b is None or len(b) < n:
            raise Closed("peer closed the connection")
        return b

    def close(self) -> None:
        """Close; a recv blocked in another thread returns Closed."""
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            # After the shutdown a reader in another thread has returned, so
            # this does not wait; it drops the file's hold on the socket.
            self._rfile.close()
        except Exception:
            pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Closed("peer closed the connection during the SP handshake")
        buf += chunk
    return buf


def dial(addr: str, max_recv: int = DEFAULT_MAX_FRAME, timeout: float = 10.0) -> SPSocket:
    """Connect to a listening PAIR v0 socket at addr."""
    scheme, where = parse_address(addr)
    try:
        if scheme == "ipc":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(where)
            except OSError:
                s.close()
                raise
        else:
            s = socket.create_connection(where, timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:
        raise Closed("dial %s: %s" % (addr, e)) from None
    return SPSocket(s, scheme == "ipc", max_recv, timeout)


class Listener:
    """A listening PAIR v0 endpoint (tests and tools; plugins only dial)."""

    def __init__(self, addr: str, max_recv: int = DEFAULT_MAX_FRAME):
        self.scheme, where = parse_address(addr)
        self._max = max_recv
        if self.scheme == "ipc":
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self._sock = socket.socket(socket.AF_INET6 if ":" in where[0] else socket.AF_INET)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(where)
        self._sock.listen(8)
        self.address = addr
        if self.scheme == "tcp":
            host, port = self._sock.getsockname()[:2]
            self.address = "tcp://%s:%d" % (host if ":" not in host else "[%s]" % host, port)

    def accept(self, timeout: Optional[float] = None) -> SPSocket:
        self._sock.settimeout(timeout)
        s, _ = self._sock.accept()
        if self.scheme == "tcp":
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SPSocket(s, self.scheme == "ipc", self._max, timeout or 10.0)

    def close(self) -> None:
        self._sock.close()


def listen(addr: str, max_recv: int = DEFAULT_MAX_FRAME) -> Listener:
    return Listener(addr, max_recv)
