"""A TLS stream one reader thread and one writer thread may use at once.

OpenSSL forbids two threads in one SSL object at the same time, and
ssl.SSLSocket does not lock: a send in one thread during a recv in another
can corrupt the connection (python/cpython#151508). A plugvisor channel
always has both (its writer thread and its reader), so the TLS state here is
an SSLObject over memory BIOs, touched only under a lock, while the blocking
socket reads and writes happen outside it.

TLSStream has the socket methods SPSocket uses (settimeout, sendall, recv,
makefile, shutdown, close), so SP runs over it as over a TCP socket.
"""

import io
import socket
import ssl
import threading
from typing import Optional

_CHUNK = 1 << 18  # plaintext encrypted per lock hold when sending a big message


class TLSStream:
    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_side: bool = False,
                 server_hostname: Optional[str] = None):
        self._sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self._lock = threading.Lock()  # the SSLObject and its BIOs
        self._wlock = threading.Lock()  # socket writes, so TLS records leave in the order they were made

    def handshake(self) -> None:
        """The TLS handshake (under the socket's timeout); ssl.SSLError or
        OSError when it fails, after sending our alert to the peer."""
        while True:
            try:
                with self._lock:
                    self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionResetError("the peer closed the connection during the TLS handshake") from None
            except ssl.SSLError:
                try:
                    self._flush()  # our alert says why, on the peer's side too
                except OSError:
                    pass
                raise
        self._flush()

    def selected_alpn_protocol(self) -> Optional[str]:
        with self._lock:
            return self._tls.selected_alpn_protocol()

    def getpeercert(self):
        with self._lock:
            return self._tls.getpeercert()

    def settimeout(self, seconds: Optional[float]) -> None:
        self._sock.settimeout(seconds)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        with self._wlock:
            for i in range(0, len(view), _CHUNK):
                with self._lock:
                    self._tls.write(view[i:i + _CHUNK])
                    out = self._out.read()
                self._sock.sendall(out)

    def recv(self, n: int) -> bytes:
        """Up to n bytes; b"" at the end of the stream."""
        while True:
            with self._lock:
                try:
                    data: Optional[bytes] = self._tls.read(n)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:  # the peer's close_notify
                    data = b""
                reply = self._out.pending > 0  # e.g. a TLS 1.3 key update answer
            if reply:
                self._flush()
            if data is not None:
                return data
            if not self._fill():
                return b""

    def makefile(self, mode: str = "rb", buffering: int = io.DEFAULT_BUFFER_SIZE) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("TLSStream.makefile only reads (mode 'rb')")
        return io.BufferedReader(_Reader(self), buffering)

    def shutdown(self, how: int) -> None:
        """Ends the socket: a recv blocked in another thread returns b""."""
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def _fill(self) -> bool:
        """Reads what the socket has into the TLS state; False at EOF."""
        data = self._sock.recv(1 << 16)
        if not data:
            return False
        with self._lock:
            self._in.write(data)
        return True

    def _flush(self) -> None:
        with self._wlock:
            with self._lock:
                out = self._out.read()
            if out:
                self._sock.sendall(out)


class _Reader(io.RawIOBase):
    def __init__(self, stream: TLSStream):
        self._s = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._s.recv(len(b))
        b[:len(data)] = data
        return len(data)
