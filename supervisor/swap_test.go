package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

func reload(t *testing.T, p *supervisor.Plugin, o supervisor.ReloadOptions) *supervisor.Report {
	t.Helper()
	rep, err := p.Reload(ctxT(t, 30*time.Second), o)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return rep
}

// Several callers hammer a counter while the plugin is swapped 50 times:
// each caller sees 1..N exactly once, in order, and no error.
func TestSwapUnderCallLoad(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"warm"`)
	stop := countLoad(p, 4)
	var pauses []float64
	for i := 0; i < 50; i++ {
		rep := reload(t, p, supervisor.ReloadOptions{})
		pauses = append(pauses, rep.PauseMS)
	}
	counts, errs := stop()
	for _, err := range errs {
		t.Error(err)
	}
	if st := p.Status(); st.Generation != 51 || st.LastReload == nil || st.LastReload.Generation != 51 {
		t.Fatalf("status after 50 swaps: %+v", st)
	}
	t.Logf("calls per caller %v; pause ms of the swaps: %v", counts, pauses[:5])
}

// A source's items reach the host as 1..N across 20 swaps: no gap,
// duplicate or reorder.
func TestSwapSourceNoGapNoDup(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	sub, err := p.Subscribe(ctxT(t, 10*time.Second), "ticks", "t", 64)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	got := make(chan int, 1)
	go func() {
		want := 1
		for it := range sub.C() {
			if string(it.Data) != strconv.Itoa(want) {
				done <- fmt.Errorf("item %d = %s (generation %d)", want, it.Data, it.Generation)
				return
			}
			if it.Generation == 21 && want > 1000 {
				got <- want
				done <- nil
				return
			}
			want++
		}
	}()
	for i := 0; i < 20; i++ {
		rep := reload(t, p, supervisor.ReloadOptions{})
		if rep.StateKeys == 0 {
			t.Fatalf("swap %d moved no state: %+v", i, rep)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctxT(t, 30*time.Second).Done():
		t.Fatal("source did not continue on generation 21")
	}
	t.Logf("read %d items in order over 20 swaps", <-got)
	if err := sub.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// Every item written to a sink across 20 swaps is collected exactly once,
// in order.
func TestSwapSinkExactlyOnce(t *testing.T) {
	sup := newSup(t)
	spec, out := sinkSpec(t)
	p, _ := sup.Add("clicks", spec)
	w, err := p.OpenSink(ctxT(t, 10*time.Second), "collect", "c", 64)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	wrote := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if err := w.Write(context.Background(), []byte(strconv.Itoa(i))); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	for i := 0; i < 20; i++ {
		reload(t, p, supervisor.ReloadOptions{})
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkLines(t, out, n)
}

// A new generation that cannot take over is refused; the old one serves on
// with its state, and calls made during the attempt reach it in order.
func TestSwapRollback(t *testing.T) {
	cases := []struct {
		name string
		spec supervisor.Spec
		want string
	}{
		{"exits", helperSpec("exit"), "cannot open the database"},
		{"panics-at-start", helperSpec("bad-signature"), "signature"},
		{"hangs-in-handshake", helperSpec("hang"), "no handshake within"},
		{"lacks-a-symbol-in-use", helperSpec("plugin", "PV_TEST_NO_COUNT", "1"), "function [count] is in use"},
		{"fails-to-migrate", helperSpec("plugin", "PV_TEST_STATE_VERSION", "2", "PV_TEST_MIGRATE", "fail", "PV_TEST_VERSION", "2.0.0"), "cannot read this state"},
		{"hangs-in-restore", helperSpec("hang-restore"), "no answer"},
	}
	sup := newSup(t, func(o *supervisor.Options) {
		o.StartTimeout.Duration = time.Second
		o.RestoreTimeout.Duration = time.Second
	})
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, _ := strconv.Atoi(call(t, p, "count", `"k"`))
			pid := p.Status().PID
			// Calls keep going during the attempt.
			stop := make(chan struct{})
			res := make(chan error, 1)
			go func() {
				last := n
				for {
					select {
					case <-stop:
						res <- nil
						return
					default:
					}
					out, err := p.Call(context.Background(), "count", []byte(`"k"`))
					if err != nil {
						res <- err
						return
					}
					if got, _ := strconv.Atoi(string(out)); got != last+1 {
						res <- fmt.Errorf("count went %d → %s", last, out)
						return
					}
					last++
				}
			}()
			spec := c.spec
			_, err := p.Reload(ctxT(t, 30*time.Second), supervisor.ReloadOptions{Spec: &spec})
			close(stop)
			if cerr := <-res; cerr != nil {
				t.Fatal(cerr)
			}
			if !errors.Is(err, supervisor.ErrSwapFailed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("reload error = %v, want ErrSwapFailed with %q", err, c.want)
			}
			st := p.Status()
			if st.PID != pid || st.State != supervisor.StateRunning || !strings.Contains(st.LastError, c.want) {
				t.Fatalf("after the failed swap: %+v (old pid %d)", st, pid)
			}
		})
	}
	// A good swap afterwards clears the error, and reports the generation it
	// replaced, not the numbers the failed attempts used.
	if rep := reload(t, p, supervisor.ReloadOptions{}); rep.From != 1 {
		t.Fatalf("report from generation %d, want 1", rep.From)
	}
	if st := p.Status(); st.LastError != "" {
		t.Fatalf("last_error not cleared: %q", st.LastError)
	}
}

func TestSwapMigrate(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	for i := 0; i < 3; i++ {
		call(t, p, "count", `"k"`)
	}
	// Without a hook, another state version is refused before any pause.
	v2 := helperSpec("plugin", "PV_TEST_STATE_VERSION", "2", "PV_TEST_VERSION", "2.0.0")
	rep, err := p.Reload(ctxT(t, 20*time.Second), supervisor.ReloadOptions{Spec: &v2})
	if !errors.Is(err, supervisor.ErrStateIncompatible) || rep.PauseMS != 0 {
		t.Fatalf("incompatible state: err %v, pause %v", err, rep.PauseMS)
	}
	// With one, v2 reads v1's state through it (this hook doubles counters).
	v2m := helperSpec("plugin", "PV_TEST_STATE_VERSION", "2", "PV_TEST_VERSION", "2.0.0", "PV_TEST_MIGRATE", "double")
	reload(t, p, supervisor.ReloadOptions{Spec: &v2m})
	if got := call(t, p, "get", `"k"`); got != "6" {
		t.Fatalf("after migrate get = %s, want 6", got)
	}
	if got := call(t, p, "version", ``); got != `"2.0.0"` {
		t.Fatalf("version = %s", got)
	}
}

// kill -9 of the old generation while it drains: the swap completes from
// the last checkpoint, what may repeat is said, one generation lives.
func TestSwapOldKilledDuringDrain(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	if err := p.Checkpoint(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	old := p.Status().PID
	slow := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), "sleep", []byte("5000"))
		slow <- err
	}()
	events := sup.Subscribe(16)
	defer events.Close()
	swapped := make(chan *supervisor.Report, 1)
	go func() {
		rep, err := p.Reload(context.Background(), supervisor.ReloadOptions{})
		if err != nil {
			t.Error(err)
		}
		swapped <- rep
	}()
	for e := range events.C {
		if e.Type == supervisor.EventSwapStarted {
			break
		}
	}
	waitFor(t, "the swap to pause", 10*time.Second, func() bool { return p.Status().Activity == supervisor.ActivitySwapping })
	if err := killPID(old); err != nil {
		t.Fatal(err)
	}
	rep := <-swapped
	if rep == nil || rep.AtLeastOnce == "" {
		t.Fatalf("report does not say what may repeat: %+v", rep)
	}
	if err := <-slow; !errors.Is(err, supervisor.ErrCrashed) {
		t.Fatalf("in-flight call: %v", err)
	}
	if got := call(t, p, "count", `"k"`); got != "2" {
		t.Fatalf("count after = %s, want 2 (from the checkpoint)", got)
	}
	if alive(old) || !alive(p.Status().PID) {
		t.Fatal("want exactly the new generation alive")
	}
}

// A drain that times out aborts the swap, unless forced: then the old
// generation is killed and the unanswered call goes to the new one.
func TestSwapDrainTimeoutAndForce(t *testing.T) {
	sup := newSup(t, func(o *supervisor.Options) { o.DrainTimeout.Duration = 300 * time.Millisecond })
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	slow := make(chan error, 2)
	go func() { _, err := p.Call(context.Background(), "sleep", []byte("1500")); slow <- err }()
	waitFor(t, "the slow call to start", 5*time.Second, func() bool { return p.Status().InFlight == 1 })
	_, err := p.Reload(ctxT(t, 20*time.Second), supervisor.ReloadOptions{})
	if !errors.Is(err, supervisor.ErrDrainTimeout) {
		t.Fatalf("unforced reload with a slow call: %v", err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the slow call on the old generation: %v", err)
	}
	go func() { _, err := p.Call(context.Background(), "sleep", []byte("3000")); slow <- err }()
	waitFor(t, "a call in flight", 5*time.Second, func() bool { return p.Status().InFlight == 1 })
	rep, err := p.Reload(ctxT(t, 20*time.Second), supervisor.ReloadOptions{Force: true})
	if err != nil || !rep.Forced || rep.AtLeastOnce == "" {
		t.Fatalf("forced reload: %+v %v", rep, err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("forced: the unanswered call should be re-sent and answered: %v", err)
	}
}

func TestConcurrentReloadsRunOneAtATime(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	var wg sync.WaitGroup
	gens := make(chan int, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := p.Reload(ctxT(t, 30*time.Second), supervisor.ReloadOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if rep.Generation != rep.From+1 {
				t.Errorf("swap %d → %d overlapped another", rep.From, rep.Generation)
			}
			gens <- rep.Generation
		}()
	}
	wg.Wait()
	close(gens)
	seen := map[int]bool{}
	for g := range gens {
		seen[g] = true
	}
	if len(seen) != 3 || p.Status().Generation != 4 {
		t.Fatalf("generations %v, now %d", seen, p.Status().Generation)
	}
	if got := call(t, p, "count", `"k"`); got != "2" {
		t.Fatalf("count = %s", got)
	}
}

// After 200 swaps the host holds no more descriptors or children than
// after the first.
func TestSwapsLeakNothing(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	reload(t, p, supervisor.ReloadOptions{})
	fds, kids := countFDs(t), countChildren(t)
	for i := 0; i < 200; i++ {
		reload(t, p, supervisor.ReloadOptions{})
	}
	if got := call(t, p, "count", `"k"`); got != "2" {
		t.Fatalf("count = %s", got)
	}
	if f, k := countFDs(t), countChildren(t); f > fds+4 || k != kids {
		t.Fatalf("after 200 swaps: %d fds (was %d), %d children (was %d)", f, fds, k, kids)
	}
}

func countFDs(t *testing.T) int {
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

func countChildren(t *testing.T) int {
	me := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(me) {
			n++
		}
	}
	return n
}

// TestSoak is `make soak`: PLUGVISOR_SOAK swaps under steady call load,
// counting lost and duplicated results.
func TestSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PLUGVISOR_SOAK"))
	if n == 0 {
		t.Skip("set PLUGVISOR_SOAK=1000 (make soak)")
	}
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	stop := make(chan struct{})
	res := make(chan string, 1)
	go func() {
		want, bad := 1, 0
		for {
			select {
			case <-stop:
				res <- fmt.Sprintf("%d calls, %d lost or duplicated", want-1, bad)
				return
			default:
			}
			out, err := p.Call(context.Background(), "count", []byte(`"soak"`))
			if err != nil || string(out) != strconv.Itoa(want) {
				bad++
				if got, err2 := strconv.Atoi(string(out)); err2 == nil {
					want = got
				}
			}
			want++
		}
	}()
	for i := 0; i < n; i++ {
		reload(t, p, supervisor.ReloadOptions{})
	}
	close(stop)
	r := <-res
	t.Log(n, "swaps:", r)
	if !strings.HasSuffix(r, " 0 lost or duplicated") {
		t.Fatal(r)
	}
}

// A pipeline source → function → sink keeps every item exactly once and in
// order while each of its three plugins is swapped.
func TestPipelineAcrossSwaps(t *testing.T) {
	sup := newSup(t)
	dstSpec, out := sinkSpec(t)
	src, _ := sup.Add("src", helperSpec("plugin"))
	fn, _ := sup.Add("fn", helperSpec("plugin"))
	dst, _ := sup.Add("dst", dstSpec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sup.RunPipeline(ctx, supervisor.Pipeline{Name: "demo",
			Source: supervisor.Ref{Plugin: "src", Symbol: "ticks"}, Functions: []supervisor.Ref{{Plugin: "fn", Symbol: "echo"}},
			Sink: supervisor.Ref{Plugin: "dst", Symbol: "collect"}})
	}()
	plugins := []*supervisor.Plugin{src, fn, dst}
	for i := 0; i < 10; i++ {
		reload(t, plugins[i%3], supervisor.ReloadOptions{})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every item that reached the sink is there once, in order, from 1.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("line %d = %q", i+1, l)
		}
	}
	if len(lines) < 100 {
		t.Fatalf("only %d items flowed", len(lines))
	}
	t.Logf("%d items, exactly once and in order, over 10 swaps", len(lines))
}

// metric reads one series from the supervisor's registry (0 if absent).
func metric(t *testing.T, sup *supervisor.Supervisor, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := sup.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// Metrics move with the work, and lost stays 0 across swaps under load.
func TestMetricsMoveAndLostStaysZero(t *testing.T) {
	sup := newSup(t)
	spec, _ := sinkSpec(t)
	p, _ := sup.Add("clicks", spec)
	sub, err := p.Subscribe(ctxT(t, 10*time.Second), "ticks", "m", 64)
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.OpenSink(ctxT(t, 10*time.Second), "collect", "m", 64)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		call(t, p, "count", `"k"`)
		for j := 0; j < 100; j++ {
			<-sub.C()
			if err := w.Write(ctxT(t, 5*time.Second), []byte("1")); err != nil {
				t.Fatal(err)
			}
		}
		reload(t, p, supervisor.ReloadOptions{})
	}
	if err := w.Flush(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"plugvisor_swaps_total":       5,
		"plugvisor_calls_total":       5,
		"plugvisor_plugin_generation": 6,
	}
	for name, v := range want {
		if got := metric(t, sup, name, nil); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if got := metric(t, sup, "plugvisor_messages_total", map[string]string{"direction": "out"}); got < 500 {
		t.Errorf("source items counted: %v, want ≥ 500", got)
	}
	if got := metric(t, sup, "plugvisor_messages_total", map[string]string{"direction": "in"}); got != 500 {
		t.Errorf("sink items acknowledged: %v, want 500", got)
	}
	if got := metric(t, sup, "plugvisor_lost_total", nil); got != 0 {
		t.Errorf("lost = %v", got)
	}
	if got := metric(t, sup, "plugvisor_plugin_state", map[string]string{"state": "running"}); got != 1 {
		t.Errorf("running state gauge = %v", got)
	}
	_ = sub.Close(ctxT(t, 10*time.Second))
}

// newPID finds the pid the hang-restore plugin logs once it is restoring.
func restoringPID(t *testing.T, p *supervisor.Plugin) int {
	t.Helper()
	pid := 0
	waitFor(t, "the new generation to restore", 15*time.Second, func() bool {
		for _, l := range p.Logs(0) {
			if n, ok := strings.CutPrefix(l.Line, "migrating: pid "); ok {
				pid, _ = strconv.Atoi(n)
			}
		}
		return pid != 0
	})
	return pid
}

// kill -9 of the new generation while it restores: the swap rolls back at
// once, the old generation serves on with its state.
func TestSwapNewKilledDuringRestore(t *testing.T) {
	sup := newSup(t, func(o *supervisor.Options) { o.RestoreTimeout.Duration = time.Minute })
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	old := p.Status().PID
	spec := helperSpec("hang-restore")
	res := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.Reload(context.Background(), supervisor.ReloadOptions{Spec: &spec})
		res <- err
	}()
	pid := restoringPID(t, p)
	if err := killPID(pid); err != nil {
		t.Fatal(err)
	}
	err := <-res
	if !errors.Is(err, supervisor.ErrSwapFailed) || !strings.Contains(err.Error(), "crashed") {
		t.Fatalf("reload: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("rollback took %s: it waited for the deadline instead of the death", d)
	}
	if got := call(t, p, "count", `"k"`); got != "2" {
		t.Fatalf("count = %s, want 2", got)
	}
	if p.Status().PID != old || !alive(old) || alive(pid) {
		t.Fatalf("want the old generation %d alone alive (new was %d)", old, pid)
	}
}

// kill -9 of the host in the middle of a swap: both generations die with
// it, and a new host resumes from the last checkpoint.
func TestHostKilledMidSwap(t *testing.T) {
	state, err := os.MkdirTemp("", "pvks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), modeEnv+"=host-swap", "PV_TEST_STATE="+state)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var oldPID, newPID int
	if _, serr := fmt.Sscanf(line, "PIDS %d %d", &oldPID, &newPID); err != nil || serr != nil {
		t.Fatalf("host said %q: %v %v", line, err, serr)
	}
	if !alive(oldPID) || !alive(newPID) {
		t.Fatal("both generations should run mid-swap")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	waitFor(t, "both generations to die with the host", 2*time.Second, func() bool { return !alive(oldPID) && !alive(newPID) })
	sup := newSup(t, func(o *supervisor.Options) { o.StateDir = state })
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	if got := call(t, p, "count", `"k"`); got != "4" {
		t.Fatalf("after the host restart count = %s, want 4", got)
	}
}
