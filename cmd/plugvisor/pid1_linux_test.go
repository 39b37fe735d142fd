package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childrenOf lists the pids whose parent is ppid, with their state letter.
func childrenOf(ppid int) map[int]byte {
	out := map[int]byte{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pp, ok := procStat(pid); ok && pp == ppid {
			out[pid] = st
		}
	}
	return out
}

// As PID 1 of a PID namespace (a container without an init), the daemon
// reaps the zombies of processes orphaned to it, and still stops with
// exit 0 on SIGTERM. The plugin is a script that leaves an orphan and
// fails, five times (then the plugin is failed).
func TestPID1ReapsAdoptedZombies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon in a PID namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a PID namespace here (unshare --pid needs root or user namespaces): %v %s", err, out)
	}
	dir := t.TempDir()
	orphaner := filepath.Join(dir, "orphaner")
	// The subshell exits at once: sleep is orphaned to PID 1, where it
	// ends as a zombie that only PID 1 can reap.
	if err := os.WriteFile(orphaner, []byte("#!/bin/sh\n(sleep 0.3 &)\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[supervisor]\napi = \"127.0.0.1:0\"\nbackoff_min = \"50ms\"\nbackoff_max = \"100ms\"\n\n[plugins.o]\ndriver = %q\n", orphaner)), 0o644)
	d := startDaemonExec(t, exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", binary, "run", "-c", cfg), cfg)
	var daemon int
	for pid := range childrenOf(d.cmd.Process.Pid) {
		daemon = pid
	}
	if daemon == 0 {
		t.Fatal("no daemon under unshare")
	}
	base := "http://" + d.addr

	// Zombies of the daemon appear (the orphans) and are all gone once the
	// plugin has stopped being restarted.
	sawZombie := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		zombies := 0
		for _, st := range childrenOf(daemon) {
			if st == 'Z' {
				zombies++
			}
		}
		sawZombie = sawZombie || zombies > 0
		failed := pluginNames(t, base)["o"] == "failed"
		if failed && sawZombie && zombies == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: plugin failed %v, zombies seen %v, zombies now %d (children %v)", failed, sawZombie, zombies, childrenOf(daemon))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(daemon, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.done = true
		if err != nil {
			t.Fatalf("PID 1 exit after SIGTERM: %v\n%s", err, d.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PID 1 did not stop on SIGTERM")
	}
	if strings.Contains(d.logs.String(), "panic") {
		t.Fatalf("daemon log:\n%s", d.logs.String())
	}
}
