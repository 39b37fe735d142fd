package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3/protocol/pair"

	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

func newSup(t *testing.T, mut ...func(*supervisor.Options)) *supervisor.Supervisor {
	t.Helper()
	var o supervisor.Options
	o.StateDir, o.MaxFrame = t.TempDir(), 256<<10
	o.StopGrace.Duration, o.StartTimeout.Duration = 300*time.Millisecond, 10*time.Second
	o.BackoffMin.Duration, o.BackoffMax.Duration = 20*time.Millisecond, 200*time.Millisecond
	o.HeartbeatInterval.Duration, o.HeartbeatTimeout.Duration = 200*time.Millisecond, 3*time.Second
	for _, f := range mut {
		f(&o)
	}
	sup, err := supervisor.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := sup.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return sup
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func call(t *testing.T, p *supervisor.Plugin, fn, in string) string {
	t.Helper()
	out, err := p.Call(ctxT(t, 20*time.Second), fn, []byte(in))
	if err != nil {
		t.Fatalf("call %s(%s): %v", fn, in, err)
	}
	return string(out)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes (its parent will reap it).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestCallSourceSink(t *testing.T) {
	sup := newSup(t)
	spec, out := sinkSpec(t)
	p, err := sup.Add("clicks", spec)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if got := call(t, p, "count", `"a"`); got != strconv.Itoa(i) {
			t.Fatalf("count #%d = %s", i, got)
		}
	}
	if got := call(t, p, "echo", `{"x":[1,2]}`); got != `{"x":[1,2]}` {
		t.Fatalf("echo = %s", got)
	}
	_, err = p.Call(ctxT(t, 5*time.Second), "fail", []byte(`"no luck"`))
	var ce *supervisor.CallError
	if !errors.As(err, &ce) || ce.Msg != "no luck" {
		t.Fatalf("fail: want CallError no luck, got %v", err)
	}
	if _, err := p.Call(ctxT(t, 5*time.Second), "nope", nil); !errors.Is(err, supervisor.ErrUnknownSymbol) {
		t.Fatalf("unknown function: %v", err)
	}

	sub, err := p.Subscribe(ctxT(t, 10*time.Second), "ticks", "t", 16)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		it := <-sub.C()
		if it.Seq != uint64(i) || string(it.Data) != strconv.Itoa(i) {
			t.Fatalf("item %d: seq %d data %s", i, it.Seq, it.Data)
		}
	}
	if err := sub.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}

	w, err := p.OpenSink(ctxT(t, 10*time.Second), "collect", "c", 32)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		if err := w.Write(ctxT(t, 5*time.Second), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkLines(t, out, 100)
	if err := w.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != supervisor.StateRunning || st.Generation != 1 || st.PID == 0 ||
		len(st.Symbols.Functions) == 0 || !slices.Contains(st.Symbols.Sources, "ticks") {
		t.Fatalf("status: %+v", st)
	}
}

// checkLines asserts the file holds exactly the lines 1..n in order.
func checkLines(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for sc.Scan() {
		i++
		if sc.Text() != strconv.Itoa(i) {
			t.Fatalf("%s line %d = %q, want %d", path, i, sc.Text(), i)
		}
	}
	if i != n {
		t.Fatalf("%s has %d lines, want %d", path, i, n)
	}
}

func TestCrashRestartsWithCheckpoint(t *testing.T) {
	sup := newSup(t)
	a, _ := sup.Add("a", helperSpec("plugin"))
	b, _ := sup.Add("b", helperSpec("plugin"))
	for i := 0; i < 5; i++ {
		call(t, a, "count", `"k"`)
	}
	call(t, b, "count", `"k"`)
	if err := a.Checkpoint(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	pid := a.Status().PID
	events := sup.Subscribe(64)
	defer events.Close()
	if err := killPID(pid); err != nil {
		t.Fatal(err)
	}
	// The other plugin serves on while a is down.
	if got := call(t, b, "count", `"k"`); got != "2" {
		t.Fatalf("b after a's crash: %s", got)
	}
	// a is back from its checkpoint.
	waitFor(t, "a to restart", 10*time.Second, func() bool {
		st := a.Status()
		return st.Restarts == 1 && st.State == supervisor.StateRunning
	})
	if got := call(t, a, "count", `"k"`); got != "6" {
		t.Fatalf("a after restart: count = %s, want 6 (state from the checkpoint)", got)
	}
	st := a.Status()
	if st.Restarts != 1 || st.PID == pid || st.Generation != 2 || !strings.Contains(st.LastError, "crashed") {
		t.Fatalf("status after crash: %+v", st)
	}
	seen := map[supervisor.EventType]bool{}
	for len(seen) < 2 {
		select {
		case e := <-events.C:
			seen[e.Type] = true
		case <-ctxT(t, 5*time.Second).Done():
			t.Fatalf("events: got %v", seen)
		}
	}
	if !seen[supervisor.EventPluginCrashed] || !seen[supervisor.EventPluginRestarted] {
		t.Fatalf("events: %v", seen)
	}
}

func TestHostRestartRestoresState(t *testing.T) {
	dir := t.TempDir()
	o := func(o *supervisor.Options) { o.StateDir = dir }
	sup := newSup(t, o)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	for i := 0; i < 7; i++ {
		call(t, p, "count", `"k"`)
	}
	if err := sup.Close(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	sup2 := newSup(t, o)
	p2, _ := sup2.Add("clicks", helperSpec("plugin"))
	if got := call(t, p2, "count", `"k"`); got != "8" {
		t.Fatalf("after host restart count = %s, want 8", got)
	}
}

func TestKillHostLeavesNoPlugin(t *testing.T) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), modeEnv+"=host")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PID ") {
		t.Fatalf("host said %q, %v", line, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID ")))
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, "the plugin to die with its host", 2*time.Second, func() bool { return !alive(pid) })
}

func TestBadPlugins(t *testing.T) {
	cases := []struct {
		mode, want string
	}{
		{"exit", "cannot open the database"},
		{"hang", "no handshake within"},
		{"wrong-version", "protocol version 7"},
		{"wrong-token", "wrong token"},
		{"bad-manifest", "not a valid name"},
		{"bad-signature", `function "add" has signature func(int, int) int`},
		{"garbage", "bad frame"},
		{"oversized", "over the limit"},
	}
	sup := newSup(t, func(o *supervisor.Options) { o.StartTimeout.Duration = 1500 * time.Millisecond })
	good, _ := sup.Add("good", helperSpec("plugin"))
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			p, err := sup.Add(c.mode, helperSpec(c.mode))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, c.mode+" to report "+c.want, 15*time.Second, func() bool {
				return strings.Contains(p.Status().LastError, c.want)
			})
			if st := p.Status(); st.State == supervisor.StateRunning && st.PID != 0 && !alive(st.PID) {
				t.Fatalf("status claims a dead process serves: %+v", st)
			}
			call(t, good, "count", `"alive"`)
			if err := sup.Remove(ctxT(t, 20*time.Second), c.mode); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPanicFailsCallAndRestarts(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	_, err := p.Call(ctxT(t, 10*time.Second), "panic", nil)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic call: %v", err)
	}
	waitFor(t, "restart after the panic", 10*time.Second, func() bool { return p.Status().Restarts == 1 })
	call(t, p, "count", `"k"`)
}

func TestShutdownIgnoredIsKilledAfterGrace(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("stubborn", helperSpec("ignore-shutdown"))
	call(t, p, "count", `"k"`)
	pid := p.Status().PID
	start := time.Now()
	if err := sup.Remove(ctxT(t, 20*time.Second), "stubborn"); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d survives removal", pid)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("killed after %s, before the grace", d)
	}
}

func TestSocketDirPrivateAndTokenChecked(t *testing.T) {
	sup := newSup(t, func(o *supervisor.Options) { o.StartTimeout.Duration = 30 * time.Second })
	fi, err := os.Stat(sup.SocketDir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir %s: %v %v", sup.SocketDir(), fi.Mode(), err)
	}
	// A plugin that never dials leaves its control socket waiting; an
	// intruder without the token is refused there.
	if _, err := sup.Add("waiting", helperSpec("hang")); err != nil {
		t.Fatal(err)
	}
	var ctl string
	waitFor(t, "the control socket", 10*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(sup.SocketDir(), "waiting.*.c*"))
		if len(m) > 0 {
			ctl = m[0]
		}
		return ctl != ""
	})
	sock, _ := pair.NewSocket()
	defer sock.Close()
	if err := sock.Dial("ipc://" + ctl); err != nil {
		t.Fatal(err)
	}
	hello := transport.AppendFrame(nil, transport.Frame{Type: transport.Hello, Payload: transport.JSON(transport.HelloMsg{
		Protocol: 1, Token: "guess", Manifest: transport.Manifest{Name: "evil", Version: "1"}})})
	if err := sock.Send(hello); err != nil {
		t.Fatal(err)
	}
	_ = sock.SetOption("RECV-DEADLINE", 10*time.Second)
	reply, err := sock.Recv()
	if err != nil {
		t.Fatal(err)
	}
	f, err := transport.ParseFrame(reply)
	if err != nil || f.Type != transport.Refuse || !strings.Contains(transport.ErrorText(f), "wrong token") {
		t.Fatalf("intruder got %v %q %v", f.Type, f.Payload, err)
	}
}
