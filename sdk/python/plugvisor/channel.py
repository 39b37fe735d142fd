"""A frame channel: an SP connection with a bounded, batching send queue."""

import collections
import threading
from typing import List, Optional

from . import frames as fr
from .sp import Closed, SPSocket


class Channel:
    """Ordered frames over one SP PAIR connection.

    send queues a frame and returns; one writer thread drains the queue and
    sends whatever queued during the previous write as one batch message,
    so a busy channel costs one socket write per batch. The queue is
    bounded by max_frame bytes: send blocks while it is full — that is the
    push-back a source feels when the host is behind.
    """

    def __init__(self, sp: SPSocket, max_frame: int = fr.DEFAULT_MAX_FRAME, name: str = "channel"):
        self._sp = sp
        self._max = max_frame
        self.name = name
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._queued = 0  # bytes in queue, each frame counted with its 4-byte batch prefix
        self._writing = False
        self._closed = False
        self.error: Optional[BaseException] = None
        self._writer = threading.Thread(target=self._write_loop, name="plugvisor-writer-" + name, daemon=True)
        self._writer.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, ftype: int, fid: int = 0, payload: bytes = b"") -> None:
        """Queue a frame, in order with every earlier send."""
        size = fr.HEADER_SIZE + len(payload)
        if size > self._max:
            raise fr.FrameTooLarge("%s frame of %d bytes exceeds the limit of %d bytes (PLUGVISOR_MAX_FRAME)"
                                   % (fr.type_name(ftype), size, self._max))
        data = fr.encode_frame(ftype, fid, payload)
        need = 4 + size
        with self._cond:
            while True:
                if self._closed:
                    raise Closed("%s is closed" % self.name)
                if not self._queue or fr.HEADER_SIZE + self._queued + need <= self._max:
                    break
                self._cond.wait()
            self._queue.append(data)
            self._queued += need
            if len(self._queue) == 1:
                self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._writing = False
                    self._cond.notify_all()
                    self._cond.wait()
                if not self._queue:
                    self._writing = False
                    self._cond.notify_all()
                    return
                batch: List[bytes] = list(self._queue)
                self._queue.clear()
                self._queued = 0
                self._writing = True
                self._cond.notify_all()
            try:
                self._sp.send(fr.encode_message(batch))
            except Closed as e:
                self._fail(e)
                return

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued has been written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or (not self._queue and not self._writing), timeout)

    def recv(self) -> List[fr.Frame]:
        """The frames of the next message; Closed at the end, MalformedFrame
        or FrameTooLarge for a broken peer."""
        return fr.parse_message(self._sp.recv())

    def _fail(self, err: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = err
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._sp.close()

    def close(self, drain: float = 0.0) -> None:
        """Close the channel, first giving queued frames up to drain seconds
        to leave."""
        if drain > 0:
            self.flush(drain)
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._sp.close()
