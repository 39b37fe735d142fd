"""Schemas derived from type hints and item_type, explicit ones, and the
manifest that announces them."""

import dataclasses
import typing
import unittest
from typing import Any, Dict, List, Optional, TypedDict

from plugvisor.schema import schema_of
from plugvisor.server import Server


@dataclasses.dataclass
class Tick:
    n: int
    note: str = ""
    tags: List[str] = dataclasses.field(default_factory=list)


class Row(TypedDict):
    id: int
    name: str


class Node(TypedDict):
    child: Optional["Node"]


def double(ctx, x: int) -> int:
    return x * 2


def untyped(ctx, x):
    return x


def no_input(ctx) -> Dict[str, float]:
    return {}


class Ticks:
    item_type = Tick

    def configure(self, props): pass
    def open(self, ctx, emit): pass
    def close(self, ctx): pass


class Plain:
    def configure(self, props): pass
    def open(self, ctx, emit): pass
    def close(self, ctx): pass


class SchemaOfTest(unittest.TestCase):
    def test_types(self):
        cases = [
            (int, {"type": "integer"}), (bool, {"type": "boolean"}), (float, {"type": "number"}),
            (str, {"type": "string"}), (None, {"type": "null"}), (Optional[int], {"type": "integer"}),
            (List[str], {"type": "array", "items": {"type": "string"}}),
            (list, {"type": "array"}),
            (typing.Tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
            (typing.Tuple[int, str], {"type": "array"}),
            (Dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
            (Tick, {"type": "object", "required": ["n"], "properties": {
                "n": {"type": "integer"}, "note": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}}}}),
            (Row, {"type": "object", "required": ["id", "name"], "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}}}),
            (Any, None), (complex, None), ({"type": "string"}, {"type": "string"}),
        ]
        for tp, want in cases:
            with self.subTest(tp=tp):
                self.assertEqual(schema_of(tp), want)

    def test_recursive_type_is_any_where_it_recurs(self):
        self.assertEqual(schema_of(Node), {"type": "object", "required": ["child"], "properties": {"child": {}}})


class ManifestTest(unittest.TestCase):
    def server(self, **kw):
        return Server("p", "1.0.0", env={}, **kw)

    def test_from_hints_and_item_type(self):
        s = self.server(functions={"double": double, "untyped": untyped, "none": no_input},
                        sources={"ticks": Ticks, "plain": Plain}, sinks={"rows": Plain})
        self.assertEqual(s.manifest["schemas"], {
            "double": {"in": {"type": "integer"}, "out": {"type": "integer"}},
            "none": {"out": {"type": "object", "additionalProperties": {"type": "number"}}},
            "ticks": {"item": schema_of(Tick)},
        })

    def test_explicit_wins(self):
        s = self.server(functions={"double": double}, sinks={"rows": Plain},
                        schemas={"double": {"in": {"type": "number"}}, "rows": {"item": {"type": "string"}}})
        self.assertEqual(s.manifest["schemas"], {
            "double": {"in": {"type": "number"}, "out": {"type": "integer"}},
            "rows": {"item": {"type": "string"}},
        })

    def test_none_announced_leaves_the_manifest_as_before(self):
        s = self.server(functions={"untyped": untyped})
        self.assertNotIn("schemas", s.manifest)

    def test_bad_explicit_schemas(self):
        with self.assertRaisesRegex(TypeError, "not one of the plugin's symbols"):
            self.server(functions={"double": double}, schemas={"nope": {"in": {}}})
        with self.assertRaisesRegex(TypeError, "want in and out"):
            self.server(functions={"double": double}, schemas={"double": {"item": {}}})


if __name__ == "__main__":
    unittest.main()
