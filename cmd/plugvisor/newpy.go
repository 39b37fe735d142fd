package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/sdk/python"
)

// scaffoldPython writes a Python plugin folder: plugin.json, main.py (its
// PLUGIN served by plugvisor.serve) and test_main.py (plugvisor.testing).
func scaffoldPython(out io.Writer, name, parent string) error {
	target, err := scaffoldTarget(name, parent)
	if err != nil {
		return err
	}
	files := map[string]string{
		"plugin.json":  fmt.Sprintf(`{"name": %q, "version": "0.1.0", "language": "python", "executable": "main.py"}`+"\n", name),
		"main.py":      strings.ReplaceAll(pyMain, "NAME", name),
		"test_main.py": pyTest,
	}
	if err := writeScaffold(target, files); err != nil {
		return err
	}
	fmt.Fprintf(out, `created %s (a Python plugin; plugvisor brings its SDK)

Run it:    plugvisor dev %s
Call it:   plugvisor call %s.greet '"world"'   (from that folder, or with --api)
Test it:   cd %s && PYTHONPATH=$(plugvisor pythonpath) python3 -m unittest
`, target, target, name, target)
	return nil
}

// pythonPathCmd prints a folder holding this binary's Python SDK, for
// PYTHONPATH when running plugin tests or tools outside plugvisor.
func pythonPathCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pythonpath",
		Short: "Print a folder with this plugvisor's Python SDK, for PYTHONPATH",
		Long: `Pythonpath extracts the Python SDK embedded in this binary (once per
version) into the user cache folder and prints that folder, so plugin tests
can import plugvisor and plugvisor.testing:

  PYTHONPATH=$(plugvisor pythonpath) python3 -m unittest

(pip install ./sdk/python from a checkout works as well.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := os.UserCacheDir()
			if err != nil {
				cache = os.TempDir()
			}
			dir, err := python.Extract(filepath.Join(cache, "plugvisor", "python-sdk"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), dir)
			return nil
		},
	}
}

const pyMain = `"""NAME: a plugvisor plugin in Python. Edit and save while "plugvisor dev"
runs: the new code takes over with the state of the old process."""

import plugvisor


def greet(ctx, who):
    """A function: JSON in, JSON out. Its count lives in the plugin's state."""
    n = ctx.state.incr_counter("greetings", 1)
    ctx.log.info("greeting %s", who)
    return "hello, %s (#%d)" % (who, n)


class Ticks:
    """A source: emits 1, 2, 3, ... every interval_ms (config, default 1000),
    keeping its position in state so a new process continues the sequence."""

    def configure(self, props):
        self.interval = float(props.get("interval_ms", 1000)) / 1000.0

    def open(self, ctx, emit):
        n = ctx.state.get("next", 1)
        while not ctx.done():
            emit(n)
            n += 1
            ctx.state.put("next", n)  # after emit: a checkpoint never claims an item the host lacks
            if self.interval > 0 and ctx.wait(self.interval):
                break

    def close(self, ctx):
        pass


# PLUGIN is what serve runs; test_main.py runs it with plugvisor.testing.
PLUGIN = dict(name="NAME", version="0.1.0", functions={"greet": greet}, sources={"ticks": Ticks})

if __name__ == "__main__":
    plugvisor.serve(**PLUGIN)
`

const pyTest = `"""Run with: PYTHONPATH=$(plugvisor pythonpath) python3 -m unittest"""

import unittest

from plugvisor.testing import Harness

import main


class TestPlugin(unittest.TestCase):
    def setUp(self):
        self.h = Harness(main.PLUGIN, config={"interval_ms": 0})
        self.addCleanup(self.h.close)

    def test_greet_counts_across_a_swap(self):
        self.assertEqual(self.h.call("greet", "world"), "hello, world (#1)")
        self.h.swap(dict(main.PLUGIN, version="0.2.0"))  # a new version takes the state over
        self.assertEqual(self.h.call("greet", "world"), "hello, world (#2)")

    def test_ticks_resume(self):
        self.assertEqual(self.h.read("ticks", 3), [1, 2, 3])
        self.h.checkpoint()
        self.h.crash()
        nxt = self.h.get("source/ticks/test", "next")
        self.assertEqual(self.h.read("ticks", 1), [nxt])


if __name__ == "__main__":
    unittest.main()
`
