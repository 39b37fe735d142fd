import threading
import unittest

from plugvisor.state import Scope, Store


class ScopeTest(unittest.TestCase):
    def test_put_get_delete(self):
        s = Scope()
        self.assertIsNone(s.get("missing"))
        self.assertEqual(s.get("missing", 5), 5)
        s.put("k", {"a": [1, "x"]})
        self.assertEqual(s.get("k"), {"a": [1, "x"]})
        self.assertEqual(s.copy(), {"k": b'{"a":[1,"x"]}'})
        s.delete("k")
        s.delete("k")  # missing: no error
        self.assertIsNone(s.get("k"))
        s.put("n", None)
        self.assertIn("n", s.keys())
        self.assertIsNone(s.get("n", 1), "a stored null is not a missing key")

    def test_put_rejects_non_json(self):
        s = Scope()
        with self.assertRaises(TypeError):
            s.put("k", object())
        with self.assertRaises(TypeError):
            s.put("k", float("nan"))

    def test_counters(self):
        s = Scope()
        self.assertEqual(s.get_counter("c"), 0)
        self.assertEqual(s.incr_counter("c"), 1)
        self.assertEqual(s.incr_counter("c", 41), 42)
        self.assertEqual(s.incr_counter("c", -50), -8)
        self.assertEqual(s.copy()["c"], b"-8")
        self.assertEqual(s.get("c"), -8, "a counter is a JSON integer")
        s.put("c", 7)
        self.assertEqual(s.incr_counter("c"), 8)
        s.put("t", "x")
        with self.assertRaises(ValueError):
            s.get_counter("t")
        with self.assertRaises(ValueError):
            s.incr_counter("t")
        with self.assertRaises(TypeError):
            s.incr_counter("c", 1.5)

    def test_concurrent_counter(self):
        s = Scope()
        ts = [threading.Thread(target=lambda: [s.incr_counter("c") for _ in range(1000)]) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        self.assertEqual(s.get_counter("c"), 8000)

    def test_store(self):
        st = Store()
        a = st.scope("a")
        self.assertIs(st.scope("a"), a)
        a.put("k", 1)
        a.replace({"x": b"2"})
        self.assertEqual(st.all()["a"].get("x"), 2)
        self.assertIsNone(a.get("k"))


if __name__ == "__main__":
    unittest.main()
