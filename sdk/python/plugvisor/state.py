"""Plugin state: scopes of JSON values, one scope per symbol instance."""

import json
import re
import threading
from typing import Any, Dict, List, Optional

_COUNTER = re.compile(rb"[+-]?[0-9]+")


def encode_json(value: Any) -> bytes:
    """Compact, strict JSON (NaN and Infinity are not JSON)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


class Scope:
    """The state of one symbol instance: string keys to JSON values.

    Safe for concurrent use (functions run in parallel). A counter is a key
    holding a JSON integer.
    """

    def __init__(self, kv: Optional[Dict[str, bytes]] = None):
        self._lock = threading.Lock()
        self._kv: Dict[str, bytes] = dict(kv or {})

    def put(self, key: str, value: Any) -> None:
        """Store value (anything json.dumps accepts) under key."""
        try:
            b = encode_json(value)
        except (TypeError, ValueError) as e:
            raise TypeError("state %r: value of type %s cannot be JSON-encoded: %s"
                            % (key, type(value).__name__, e)) from None
        with self._lock:
            self._kv[key] = b

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of key, or default when it is missing."""
        with self._lock:
            b = self._kv.get(key)
        if b is None:
            return default
        return json.loads(b)

    def delete(self, key: str) -> None:
        """Remove key; a missing key is not an error."""
        with self._lock:
            self._kv.pop(key, None)

    def incr_counter(self, key: str, delta: int = 1) -> int:
        """Add delta to the counter at key (missing = 0); returns the new value."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError("state %r: counter delta must be an int, not %s" % (key, type(delta).__name__))
        with self._lock:
            n = self._counter(key) + delta
            self._kv[key] = str(n).encode()
            return n

    def get_counter(self, key: str) -> int:
        """The counter at key; 0 when missing."""
        with self._lock:
            return self._counter(key)

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self._kv)

    def _counter(self, key: str) -> int:
        b = self._kv.get(key)
        if b is None:
            return 0
        if not _COUNTER.fullmatch(b):
            raise ValueError("state %r holds %s, not a counter" % (key, b.decode(errors="replace")))
        return int(b)

    def copy(self) -> Dict[str, bytes]:
        """A snapshot of the raw keys and values."""
        with self._lock:
            return dict(self._kv)

    def replace(self, kv: Dict[str, bytes]) -> None:
        with self._lock:
            self._kv = dict(kv)


class Store:
    """Every scope of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: Dict[str, Scope] = {}

    def scope(self, name: str) -> Scope:
        with self._lock:
            s = self._scopes.get(name)
            if s is None:
                s = self._scopes[name] = Scope()
            return s

    def all(self) -> Dict[str, Scope]:
        with self._lock:
            return dict(self._scopes)


class ReplicatedStateError(RuntimeError):
    """A function wrote state while its plugin runs with replicas > 1."""


class ReplicatedScope:
    """The function scope as one call of a replicated plugin sees it:
    reads pass, writes raise ReplicatedStateError and are remembered, so
    the call fails even when the function swallows the error. Each replica
    would keep its own copy of function state and the copies would split;
    sources and sinks run on one instance and may write."""

    def __init__(self, scope: Scope, plugin: str, fn: str, replicas: int):
        self._scope = scope
        self._plugin, self._fn, self._replicas = plugin, fn, replicas
        self.refused: Optional[ReplicatedStateError] = None

    def get(self, key: str, default: Any = None) -> Any:
        return self._scope.get(key, default)

    def get_counter(self, key: str) -> int:
        return self._scope.get_counter(key)

    def keys(self) -> List[str]:
        return self._scope.keys()

    def put(self, key: str, value: Any) -> None:
        self._refuse("put", key)

    def delete(self, key: str) -> None:
        self._refuse("delete", key)

    def incr_counter(self, key: str, delta: int = 1) -> int:
        self._refuse("incr", key)
        return 0  # not reached

    def _refuse(self, op: str, key: str) -> None:
        e = ReplicatedStateError(
            "function state cannot be written with replicas > 1: function %s of plugin %s tried to %s "
            "state %r, but the plugin runs with replicas = %d and each replica would keep its own copy "
            "— keep the state in a source or sink, or set replicas = 1"
            % (self._fn, self._plugin, op, key, self._replicas))
        if self.refused is None:
            self.refused = e
        raise e
