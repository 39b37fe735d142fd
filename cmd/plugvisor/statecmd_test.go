package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// state ls/get/export/import/rm against a running daemon (through its
// API, changes restored into the live plugin) and a stopped one (the
// store); state of an unconfigured plugin shows as orphaned in status.
func TestStateTools(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon and a Python plugin")
	}
	dir := filepath.Join(t.TempDir(), "pydemo")
	copyDir(t, filepath.Join(repoRoot(t), "examples", "pydemo"), dir)
	state := filepath.Join(t.TempDir(), "st")
	start := func() (*child, []string) {
		d := startChild(t, "", nil, state, "dev", "--quiet", dir, "--state", state)
		waitRunning(t, "http://"+d.addr, "pydemo", 60*time.Second)
		return d, d.env()
	}
	run := func(env []string, want string, args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, env, args...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("plugvisor %s: exit %d, want %q in\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out
	}
	offline := []string{"PLUGVISOR_API="}
	d, env := start()
	run(env, "1", "call", "pydemo.count")
	run(env, "2", "call", "pydemo.count")
	run(env, "function/count  1", "state", "ls", "pydemo")
	run(env, "2", "state", "get", "pydemo", "function/count", "n")
	fixture := filepath.Join(t.TempDir(), "pydemo.json")
	run(env, "", "state", "export", "pydemo", "-o", fixture)
	run(env, "removed", "state", "rm", "pydemo", "function/count", "n")
	run(env, "1", "call", "pydemo.count") // the live plugin lost the key
	run(env, "imported", "state", "import", "pydemo", fixture)
	run(env, "3", "call", "pydemo.count") // and got it back
	d.stop(t)

	// Stopped: the store itself.
	run(offline, "pydemo", "state", "ls", "--state-dir", state)
	run(offline, "3", "state", "get", "pydemo", "function/count", "n", "--state-dir", state)
	run(offline, "removed", "state", "rm", "pydemo", "--state-dir", state)
	if out := run(offline, "PLUGIN", "state", "ls", "--state-dir", state); strings.Contains(out, "pydemo") {
		t.Fatalf("pydemo state after rm:\n%s", out)
	}
	run(offline, "imported", "state", "import", "pydemo", fixture, "--state-dir", state)
	run(offline, "imported", "state", "import", "gone", fixture, "--state-dir", state)

	d, env = start()
	run(env, "3", "call", "pydemo.count") // the offline import: 2 + 1
	run(env, "orphaned state (no such plugin configured; kept until plugvisor state rm NAME): gone", "status")
	run(env, "orphaned", "state", "ls")
	d.stop(t)
	if _, err := os.Stat(filepath.Join(state, "state.db")); err != nil {
		t.Fatal(err)
	}
}
