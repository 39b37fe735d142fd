"""Unit tests of the pydemo plugin, run in-process with plugvisor.testing:
    PYTHONPATH=../../sdk/python python3 -m unittest test_main
"""

import unittest

from plugvisor.testing import CallError, Harness

import main


class TestPydemo(unittest.TestCase):
    def setUp(self):
        self.h = Harness(main.PLUGIN, config={"interval_ms": 0})
        self.addCleanup(self.h.close)

    def test_double_counts_calls_across_a_swap(self):
        self.assertEqual(self.h.call("double", 21), 42)
        self.h.swap(dict(main.PLUGIN, version="1.1.0"))
        self.assertEqual(self.h.call("double", 2), 4)
        self.assertEqual(self.h.get("function/double", "calls"), 2)

    def test_div_by_zero_is_the_callers_error(self):
        with self.assertRaisesRegex(CallError, "ZeroDivisionError"):
            self.h.call("div", [1, 0])

    def test_ticks_resume_and_collect_counts(self):
        self.assertEqual(self.h.read("ticks", 3), [0, 1, 2])
        self.h.checkpoint()
        self.h.crash()
        nxt = self.h.get("source/ticks/test", "next")
        self.assertEqual(self.h.read("ticks", 1), [nxt])
        self.h.feed("collect", "a", "b")
        self.assertEqual(self.h.get("sink/collect/test", "items"), 2)


if __name__ == "__main__":
    unittest.main()
