"""Frames, batches, call payloads and the state blob of plugvisor protocol 1.

Pure functions on bytes; docs/protocol.md is the spec and the Go package
``transport`` the reference encoder. All integers are big endian.
"""

import json
import struct
from typing import Dict, List, NamedTuple, Tuple

VERSION = 1
HEADER_SIZE = 12
DEFAULT_MAX_FRAME = 16 << 20

# Control channel.
HELLO, WELCOME, REFUSE, OPEN, STOP, SNAPSHOT, RESTORE, PING, SHUTDOWN = range(1, 10)
OK, ERROR, STATE, PONG = 10, 11, 12, 13
LEAVING = 14  # plugin → host: got SIGTERM; only to a host whose welcome lists FEATURE_LEAVING
# Data channels.
DATA, BARRIER, ACK, EOS, CALL, RESULT, FAIL, CHECKPOINT = range(32, 40)
CALL_BATCH, RESULT_BATCH = 40, 41
BATCH = 64

# Protocol features a manifest may announce ("features"): the host sends
# call_batch frames only to a plugin that announces FEATURE_CALL_BATCH.
FEATURE_CALL_BATCH = "call_batch"
# Frames a host's welcome may list ("features") as understood: an older
# host drops a plugin that sends a frame it does not know.
FEATURE_LEAVING = "leaving"
# Per-item status in a result_batch payload.
ITEM_OK, ITEM_ERROR, ITEM_PANIC = 0, 1, 2
MAX_BATCH_ITEMS = 1 << 16

TYPE_NAMES = {
    HELLO: "hello", WELCOME: "welcome", REFUSE: "refuse", OPEN: "open", STOP: "stop",
    SNAPSHOT: "snapshot", RESTORE: "restore", PING: "ping", SHUTDOWN: "shutdown",
    OK: "ok", ERROR: "error", STATE: "state", PONG: "pong", LEAVING: "leaving",
    DATA: "data", BARRIER: "barrier", ACK: "ack", EOS: "eos", CALL: "call",
    RESULT: "result", FAIL: "fail", CHECKPOINT: "checkpoint", BATCH: "batch",
    CALL_BATCH: "call_batch", RESULT_BATCH: "result_batch",
}

_HEADER = struct.Struct(">BBHQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class MalformedFrame(ValueError):
    """A peer sent bytes that are not a valid frame; the channel is unusable."""


class FrameTooLarge(ValueError):
    """A frame or message exceeds the size limit (PLUGVISOR_MAX_FRAME)."""


def type_name(t: int) -> str:
    return TYPE_NAMES.get(t, "type(%d)" % t)


class Frame(NamedTuple):
    type: int
    id: int = 0
    payload: bytes = b""
    flags: int = 0

    def __repr__(self) -> str:
        return "Frame(%s id=%d %d bytes)" % (type_name(self.type), self.id, len(self.payload))


def encode_frame(ftype: int, fid: int = 0, payload: bytes = b"", flags: int = 0) -> bytes:
    """One frame: version, type, flags, id, payload."""
    return _HEADER.pack(VERSION, ftype, flags, fid) + bytes(payload)


def encode_batch(frames: List[bytes]) -> bytes:
    """A batch message of already encoded frames (never nested)."""
    parts = [_HEADER.pack(VERSION, BATCH, 0, len(frames))]
    for f in frames:
        parts.append(_U32.pack(len(f)))
        parts.append(f)
    return b"".join(parts)


def encode_message(frames: List[bytes]) -> bytes:
    """One frame alone, several as a batch."""
    if len(frames) == 1:
        return frames[0]
    return encode_batch(frames)


def parse_frame(b: bytes) -> Frame:
    """Decode one frame (a batch comes back as a frame of type BATCH)."""
    if len(b) < HEADER_SIZE:
        raise MalformedFrame("%d bytes, shorter than the %d-byte header" % (len(b), HEADER_SIZE))
    version, ftype, flags, fid = _HEADER.unpack_from(b)
    if version != VERSION:
        raise MalformedFrame("protocol version %d, this side speaks %d" % (version, VERSION))
    if ftype not in TYPE_NAMES:
        raise MalformedFrame("unknown frame type %d" % ftype)
    return Frame(ftype, fid, bytes(b[HEADER_SIZE:]), flags)


def parse_message(b: bytes) -> List[Frame]:
    """Decode a message — one frame or a batch — into its frames.

    The whole message is checked before anything is returned, so a bad
    entry late in a batch never lets earlier entries be acted on.
    """
    f = parse_frame(b)
    if f.type != BATCH:
        return [f]
    mv = memoryview(b)[HEADER_SIZE:]
    out = []
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < 4:
            raise MalformedFrame("batch truncated in a length prefix")
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        if n > end - pos:
            raise MalformedFrame("batch entry of %d bytes overruns the message (%d left)" % (n, end - pos))
        sub = parse_frame(mv[pos:pos + n])
        if sub.type == BATCH:
            raise MalformedFrame("nested batch")
        out.append(sub)
        pos += n
    if len(out) != f.id:
        raise MalformedFrame("batch announced %d frames, carried %d" % (f.id, len(out)))
    return out


def call_payload(name: str, input_json: bytes = b"") -> bytes:
    """A call payload: u16 name length, name, input JSON (empty = null)."""
    nb = name.encode()
    return _U16.pack(len(nb)) + nb + bytes(input_json)


def parse_call(p: bytes) -> Tuple[str, bytes]:
    if len(p) < 2:
        raise MalformedFrame("call payload of %d bytes" % len(p))
    (n,) = _U16.unpack_from(p)
    if len(p) < 2 + n:
        raise MalformedFrame("call name of %d bytes overruns the payload" % n)
    try:
        name = bytes(p[2:2 + n]).decode()
    except UnicodeDecodeError as e:
        raise MalformedFrame("call name is not UTF-8: %s" % e) from None
    return name, bytes(p[2 + n:])


Scopes = Dict[str, Dict[str, bytes]]


def encode_state(scopes: Scopes) -> bytes:
    """The state blob. Scopes and keys are sorted by their UTF-8 bytes (as
    Go sorts strings), so equal states encode equally."""
    out = [_U32.pack(len(scopes))]
    for name, kv in sorted(((n.encode(), kv) for n, kv in scopes.items())):
        out.append(_U16.pack(len(name)))
        out.append(name)
        out.append(_U32.pack(len(kv)))
        for k, v in sorted((k.encode(), v) for k, v in kv.items()):
            out.append(_U32.pack(len(k)))
            out.append(k)
            out.append(_U32.pack(len(v)))
            out.append(bytes(v))
    return b"".join(out)


def parse_state(b: bytes) -> Scopes:
    mv = memoryview(b)
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if n > len(mv) - pos:
            raise MalformedFrame("state blob: truncated: need %d bytes, have %d" % (n, len(mv) - pos))
        p = mv[pos:pos + n]
        pos += n
        return p

    def text(p: memoryview) -> str:
        try:
            return bytes(p).decode()
        except UnicodeDecodeError as e:
            raise MalformedFrame("state blob: name is not UTF-8: %s" % e) from None

    scopes: Scopes = {}
    (count,) = _U32.unpack(take(4))
    for _ in range(count):
        (nl,) = _U16.unpack(take(2))
        name = text(take(nl))
        (keys,) = _U32.unpack(take(4))
        kv = {}
        for _ in range(keys):
            (kl,) = _U32.unpack(take(4))
            k = text(take(kl))
            (vl,) = _U32.unpack(take(4))
            kv[k] = bytes(take(vl))
        scopes[name] = kv
    if pos != len(mv):
        raise MalformedFrame("state blob: %d trailing bytes" % (len(mv) - pos))
    return scopes


def restore_payload(meta: dict, scopes: Scopes) -> bytes:
    """A restore payload: u32 meta length, JSON meta, state blob."""
    m = json.dumps(meta, separators=(",", ":")).encode()
    return _U32.pack(len(m)) + m + encode_state(scopes)


def parse_restore(p: bytes) -> Tuple[dict, Scopes]:
    if len(p) < 4:
        raise MalformedFrame("restore payload of %d bytes" % len(p))
    (n,) = _U32.unpack_from(p)
    if n > len(p) - 4:
        raise MalformedFrame("restore meta overruns the payload")
    try:
        meta = json.loads(bytes(p[4:4 + n]))
    except ValueError as e:
        raise MalformedFrame("restore payload: meta is not valid JSON: %s" % e) from None
    if not isinstance(meta, dict):
        raise MalformedFrame("restore payload: meta is not a JSON object")
    return meta, parse_state(p[4 + n:])


def _split_items(p: bytes, count: int, with_status: bool) -> List[Tuple[int, bytes]]:
    """count entries of ([u8 status], u32 length, bytes) filling p exactly."""
    if count > MAX_BATCH_ITEMS:
        raise MalformedFrame("batch of %d items, over the limit of %d" % (count, MAX_BATCH_ITEMS))
    head = 5 if with_status else 4
    if count * head > len(p):
        raise MalformedFrame("batch announces %d items in %d bytes" % (count, len(p)))
    out, off = [], 0
    for i in range(count):
        if len(p) - off < head:
            raise MalformedFrame("batch truncated at item %d" % i)
        status = 0
        if with_status:
            status = p[off]
            if status > ITEM_PANIC:
                raise MalformedFrame("item %d has unknown status %d" % (i, status))
            off += 1
        (n,) = _U32.unpack_from(p, off)
        off += 4
        if n > len(p) - off:
            raise MalformedFrame("batch item %d of %d bytes overruns the payload (%d left)" % (i, n, len(p) - off))
        out.append((status, bytes(p[off:off + n])))
        off += n
    if off != len(p):
        raise MalformedFrame("%d bytes after the last of %d batch items" % (len(p) - off, count))
    return out


def call_batch_payload(name: str, inputs: List[bytes]) -> bytes:
    """u16 name length, name, u32 count, then per input u32 length + input."""
    n = name.encode()
    parts = [_U16.pack(len(n)), n, _U32.pack(len(inputs))]
    for i in inputs:
        parts += [_U32.pack(len(i)), bytes(i)]
    return b"".join(parts)


def parse_call_batch(p: bytes) -> Tuple[str, List[bytes]]:
    if len(p) < 2:
        raise MalformedFrame("call_batch payload of %d bytes" % len(p))
    (n,) = _U16.unpack_from(p)
    if len(p) < 2 + n + 4:
        raise MalformedFrame("call_batch name of %d bytes overruns the payload" % n)
    try:
        name = bytes(p[2:2 + n]).decode()
    except UnicodeDecodeError as e:
        raise MalformedFrame("call_batch name is not UTF-8: %s" % e) from None
    (count,) = _U32.unpack_from(p, 2 + n)
    return name, [d for _, d in _split_items(p[2 + n + 4:], count, False)]


def result_batch_payload(items: List[Tuple[int, bytes]]) -> bytes:
    """u32 count, then per item u8 status, u32 length, bytes."""
    parts = [_U32.pack(len(items))]
    for status, data in items:
        parts += [bytes([status]), _U32.pack(len(data)), bytes(data)]
    return b"".join(parts)


def parse_result_batch(p: bytes) -> List[Tuple[int, bytes]]:
    if len(p) < 4:
        raise MalformedFrame("result_batch payload of %d bytes" % len(p))
    (count,) = _U32.unpack_from(p)
    return _split_items(p[4:], count, True)
