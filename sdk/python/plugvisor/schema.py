"""JSON Schemas of symbols, announced in the manifest so plugvisor can check
a pipeline's stages fit before anything runs (optional: a symbol without one
accepts and emits anything).

A function's schemas come from its type hints (the input parameter and the
return annotation); a source's or sink's from an ``item_type`` attribute of
its class (a type or a schema dict). ``serve(schemas=...)`` gives them
explicitly and wins: ``{"double": {"in": {"type": "integer"}, "out": ...},
"ticks": {"item": {...}}}``.

Types understood: bool, int, float, str, None, list[T], tuple[T, ...],
dict[str, T], Optional[T], dataclasses and TypedDicts (fields without a
default are required), Any (not announced). Anything else is not announced.
"""

import dataclasses
import inspect
import typing
from typing import Any, Callable, Dict, Optional

_SIMPLE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def schema_of(tp: Any, _seen: Optional[set] = None) -> Optional[Dict[str, Any]]:
    """The JSON Schema of values of type tp, or None when it cannot tell."""
    if isinstance(tp, dict):
        return tp
    if tp is None:
        return {"type": "null"}
    if tp is Any or tp is inspect.Parameter.empty:
        return None
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    seen = _seen if _seen is not None else set()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return schema_of(rest[0], seen) if len(rest) == 1 else None
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        item = args[0] if args else Any
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and len(set(args)) != 1:
            item = Any  # tuple[int, str]: mixed items
        s: Dict[str, Any] = {"type": "array"}
        items = schema_of(item, seen)
        if items is not None:
            s["items"] = items
        return s
    if origin is dict or tp is dict:
        s = {"type": "object"}
        if len(args) == 2:
            values = schema_of(args[1], seen)
            if values is not None:
                s["additionalProperties"] = values
        return s
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or _is_typeddict(tp)):
        if tp in seen:
            return None  # recursive: any where it recurs
        seen.add(tp)
        try:
            hints = typing.get_type_hints(tp)
        except Exception:
            return None
        finally:
            seen.discard(tp)
        if dataclasses.is_dataclass(tp):
            required = [f.name for f in dataclasses.fields(tp)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            names = [f.name for f in dataclasses.fields(tp)]
        else:
            required = sorted(getattr(tp, "__required_keys__", hints.keys()))
            names = list(hints)
        seen.add(tp)
        props = {}
        for n in names:
            ps = schema_of(hints.get(n, Any), seen)
            props[n] = ps if ps is not None else {}
        seen.discard(tp)
        s = {"type": "object", "properties": props}
        if required:
            s["required"] = sorted(required)
        return s
    return None


def _is_typeddict(tp: type) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def function_schemas(fn: Callable, takes_input: bool) -> Dict[str, Any]:
    """{"in": …, "out": …} from fn's type hints; parts it cannot tell left out."""
    out: Dict[str, Any] = {}
    try:
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
    except Exception:
        return out
    if takes_input and len(params) >= 2 and params[1].name in hints:
        s = schema_of(hints[params[1].name])
        if s is not None:
            out["in"] = s
    if "return" in hints:
        s = schema_of(hints["return"])
        if s is not None:
            out["out"] = s
    return out


def item_schema(factory: Any) -> Optional[Dict[str, Any]]:
    """The item schema a source's or sink's class declares with item_type."""
    if not hasattr(factory, "item_type"):
        return None
    return schema_of(getattr(factory, "item_type"))
