package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// flood opens PLUGVISOR_TEST_FLOOD_N connections to addr without waiting
// for them (non-blocking connects: the ones the daemon's accept queue has
// no room for stay pending), sends a request on each so those accepted
// become idle keep-alive connections, prints "ready N" and holds them all
// until stdin closes.
func flood(addr string) int {
	n, _ := strconv.Atoi(os.Getenv("PLUGVISOR_TEST_FLOOD_N"))
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "flood: bad address %q or count: %v\n", addr, err)
		return 2
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	fds := make([]int, 0, n)
	for len(fds) < n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "flood: socket %d: %v\n", len(fds), err)
			return 1
		}
		if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
			fmt.Fprintf(os.Stderr, "flood: connect %d: %v\n", len(fds), err)
			return 1
		}
		fds = append(fds, fd)
	}
	req := []byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	for _, fd := range fds {
		_, _ = syscall.Write(fd, req) // pending connects refuse it: they stay bare
	}
	fmt.Println("ready", len(fds))
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, fd := range fds {
		syscall.Close(fd)
	}
	return 0
}

// openFDs counts the descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Issue 9, test 4: 20,000 idle connections do not stop a killed plugin
// from restarting. The daemon runs with 4096 descriptors, as a small
// server would; two helper processes hold 10,000 connections each.
func TestIdleConnectionsDoNotStopRestarts(t *testing.T) {
	needPython(t)
	const fdLimit, helpers, perHelper = 4096, 2, 10_000
	slow := writeSlowPlugin(t)
	cfg := fmt.Sprintf("[supervisor]\napi = \"127.0.0.1:0\"\n\n[plugins.slow]\ndriver = %q\n", slow)
	// dash and bash set the soft and hard limits both; exec keeps the pid.
	d := startDaemonCmd(t, cfg, []string{"sh", "-c", `ulimit -n ` + strconv.Itoa(fdLimit) + ` && exec "$0" "$@"`}, "dev")
	pid := d.cmd.Process.Pid
	before := waitRunning(t, "http://"+d.addr, "slow", 60*time.Second)

	var stops []func()
	for i := range helpers {
		h := exec.Command(os.Args[0], "-test.run=^$")
		h.Env = append(os.Environ(), "PLUGVISOR_TEST_FLOOD="+d.addr, "PLUGVISOR_TEST_FLOOD_N="+strconv.Itoa(perHelper))
		stdin, err := h.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := h.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		h.Stderr = os.Stderr
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stop := func() {
			once.Do(func() {
				stdin.Close()
				if err := h.Wait(); err != nil {
					t.Errorf("flood helper %d: %v", i, err)
				}
			})
		}
		t.Cleanup(stop)
		stops = append(stops, stop)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready "+strconv.Itoa(perHelper) {
			t.Fatalf("flood helper %d: %q %v", i, line, err)
		}
	}
	// The flood reaches the daemon: it holds connections up to its cap.
	deadline := time.Now().Add(20 * time.Second)
	for openFDs(t, pid) < fdLimit/8 {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon holds only %d descriptors under the flood", openFDs(t, pid))
		}
		time.Sleep(20 * time.Millisecond) // polling /proc; the accepts are what we wait for
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	most := 0
	timeout := time.After(60 * time.Second)
	for restarted := false; !restarted; {
		select {
		case line := <-d.lines:
			restarted = strings.HasPrefix(line, "slow: restarted as gen")
		case <-time.After(50 * time.Millisecond):
		case <-timeout:
			t.Fatalf("the killed plugin was not restarted under the flood (daemon holds %d descriptors)", openFDs(t, pid))
		}
		most = max(most, openFDs(t, pid))
	}
	if most > fdLimit/2 {
		t.Errorf("the daemon held %d of its %d descriptors under the flood", most, fdLimit)
	}
	t.Logf("under %d connections the daemon held at most %d descriptors (limit %d)", helpers*perHelper, most, fdLimit)
	// The flood ends: the API answers and the new process serves.
	for _, stop := range stops {
		stop()
	}
	if out, errOut, code := d.cli(t, "call", "slow.count", `"a"`); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("call after the flood: %d %q %s", code, out, errOut)
	}
	if now := waitRunning(t, "http://"+d.addr, "slow", 30*time.Second); now.PID == before.PID {
		t.Fatalf("still pid %d after the kill", now.PID)
	}
	d.stop(t)
}
