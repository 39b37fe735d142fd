package python_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Python plugin that sees its host go kills its process group: a child
// it started (subprocess.Popen) does not outlive it.
func TestPythonWatchdogKillsItsGroup(t *testing.T) {
	argv := pythonCommand(t)
	// Lead a group of its own as plugvisor starts it, start a child, then
	// run the demo plugin.
	code := fmt.Sprintf(`import os, runpy, subprocess, sys
os.setpgid(0, 0)
child = subprocess.Popen(["sleep", "300"])
sys.stderr.write("CHILD %%d\n" %% child.pid)
sys.stderr.flush()
runpy.run_path(%q, run_name="__main__")
`, argv[1])
	h := start(t, []string{argv[0], "-c", code})
	h.handshake(50)
	var child int
	for _, l := range strings.Split(h.stderr.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "CHILD "); ok {
			child, _ = strconv.Atoi(s)
		}
	}
	if child == 0 {
		t.Fatalf("no CHILD line:\n%s", h.stderr)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	// Then silence: the plugin ends itself and its group.
	select {
	case <-h.exited:
	case <-time.After(wait):
		t.Fatal("plugin still running after the host went silent")
	}
	if !strings.Contains(h.stderr.String(), "ending its process group") {
		t.Fatalf("stderr does not say it ends its group:\n%s", h.stderr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child %d outlived it", child)
		}
		time.Sleep(5 * time.Millisecond) // polling /proc with a deadline
	}
}

// running: the process exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
