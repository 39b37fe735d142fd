package main

import (
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The PID 1 reaper collects a zombie child nobody waits for, but only once
// it has been a zombie for the grace period, so a child whose Wait is
// about to run keeps its exit status.
func TestReapZombies(t *testing.T) {
	// Started without os/exec, so no goroutine waits for it: it stays a
	// zombie, like a process adopted by PID 1.
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
	if err != nil {
		t.Skipf("cannot start /bin/true: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, ppid, ok := procStat(pid); ok && st == 'Z' && ppid == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never became our zombie", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	seen := map[int]time.Time{}
	now := time.Now()
	if got := reapZombies(os.Getpid(), seen, now, reapGrace); slices.Contains(got, pid) {
		t.Fatal("reaped at first sight, before the grace period")
	}
	if _, ok := seen[pid]; !ok {
		t.Fatal("zombie not noticed")
	}
	if got := reapZombies(os.Getpid(), seen, now.Add(reapGrace/2), reapGrace); slices.Contains(got, pid) {
		t.Fatal("reaped within the grace period")
	}
	if got := reapZombies(os.Getpid(), seen, now.Add(reapGrace), reapGrace); !slices.Contains(got, pid) {
		t.Fatalf("not reaped after the grace period (got %v)", got)
	}
	if _, _, ok := procStat(pid); ok {
		t.Fatalf("pid %d still exists", pid)
	}
	if _, ok := seen[pid]; ok {
		t.Fatal("a reaped pid stays in seen")
	}
}
