package proc

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gone waits until pid is gone or a zombie.
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 0 && f[0] == "Z" {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling /proc with a deadline
	}
	t.Fatalf("process %d still alive", pid)
}

// Kill ends the leader and a child in its group; KillTagged finds a child
// that left the group; Same tells the recorded process from a stranger.
func TestGroupAndTag(t *testing.T) {
	tag := "proc-test-" + strconv.Itoa(os.Getpid())
	sh := exec.Command("/bin/sh", "-c", `sleep 300 & echo $!; setsid sleep 300 & echo $!; wait`)
	sh.Env = []string{"PATH=" + os.Getenv("PATH"), "PV_PROC_TAG=" + tag}
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Start(sh, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	buf := make([]byte, 64)
	var got string
	for strings.Count(got, "\n") < 2 {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	f := strings.Fields(got)
	child, _ := strconv.Atoi(f[0])
	escaped, _ := strconv.Atoi(f[1])
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })

	// $! is known before the child has called setsid: wait until it has.
	deadline := time.Now().Add(5 * time.Second)
	for !inOwnSession(escaped) {
		if time.Now().After(deadline) {
			t.Fatal("the setsid child never left the group")
		}
		time.Sleep(5 * time.Millisecond) // polling /proc with a deadline
	}
	id := Identify(g.Pid())
	if alive, same := Same(id); !alive || !same {
		t.Fatalf("Same(%+v) = %v, %v for the live leader", id, alive, same)
	}
	if alive, same := Same(Identity{Pid: id.Pid, Start: id.Start + 1}); !alive || same {
		t.Fatal("a different start time passed for the same process")
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sh.Wait()
	gone(t, child)
	if !Alive(escaped) {
		t.Fatal("the setsid child died with the group: the test proves nothing")
	}
	if n := KillTagged("PV_PROC_TAG", func(v string) bool { return v == tag }); n != 1 {
		t.Fatalf("KillTagged killed %d, want 1", n)
	}
	gone(t, escaped)
	if err := g.Kill(); err != nil {
		t.Fatalf("killing a gone group: %v", err)
	}
}

func inOwnSession(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 3 && f[3] == strconv.Itoa(pid) && strings.Contains(string(b), "(sleep)")
}
