package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/transport"
)

// script is how one fake generation (by the order its runner was made,
// which is its generation number) behaves.
type script struct {
	startErr     error // its start fails
	exitEarly    bool  // it ends before the handshake
	noGen        bool  // it does not offer "gen", a function in use
	failMigrate  bool  // version 2 with a Migrate hook that fails: the restore fails
	failSnapshot bool  // it answers snapshot requests with an error
}

// rig runs a plugin on scripted fake runners and records its phases.
type rig struct {
	t       *testing.T
	s       *Supervisor
	p       *Plugin
	scripts map[int]script
	release chan struct{} // ends every "block" call
	onEnter func(ph phase)

	mu      sync.Mutex
	runners []*scriptRunner
	phases  []phase      // every change of phase, in order (self-changes left out)
	waiting []chan error // calls made when a swap paused the handles
}

func newRig(t *testing.T, o Options, scripts map[int]script) *rig {
	r := &rig{t: t, scripts: scripts, release: make(chan struct{})}
	o.StateDir = t.TempDir()
	if o.BackoffMin.Duration == 0 {
		o.BackoffMin.Duration = time.Millisecond
	}
	if o.StopGrace.Duration == 0 {
		o.StopGrace.Duration = 100 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	t.Cleanup(func() {
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, f := range r.runners {
			if f.end != nil {
				<-f.end    // every fake generation ended
				<-f.served // and its server with it
			}
		}
	})
	s.newRunner = func(rs runSpec) runner {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := len(r.runners) + 1
		f := &scriptRunner{rs: rs, sc: scripts[n], n: n, release: r.release}
		r.runners = append(r.runners, f)
		return f
	}
	var wakeMu sync.Mutex
	var wake <-chan struct{} // taken on entering a phase: a handle waiting in it
	s.onPhase = func(p *Plugin, from, to phase) {
		wakeMu.Lock()
		if wake != nil {
			select {
			case <-wake:
			default:
				t.Errorf("%s → %s did not wake the handles waiting in %s", from, to, from)
			}
		}
		wake = p.wake.Wait()
		wakeMu.Unlock()
		if from == to {
			return
		}
		if !slices.Contains(next[from], to) {
			t.Errorf("%s → %s is not in the lifecycle table", from, to)
		}
		r.mu.Lock()
		r.phases = append(r.phases, to)
		r.mu.Unlock()
		if to == phasePaused {
			// A call arriving while paused waits, and must be released by
			// whatever ends the pause: an abort or the new generation.
			ch := make(chan error, 1)
			r.mu.Lock()
			r.waiting = append(r.waiting, ch)
			r.mu.Unlock()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := p.Call(ctx, "count", nil)
				ch <- err
			}()
		}
		if r.onEnter != nil {
			r.onEnter(to)
		}
	}
	return r
}

func (r *rig) add() {
	p, err := r.s.Add("fake", Spec{Kind: "binary", Path: "/nonexistent/fake"})
	if err != nil {
		r.t.Fatal(err)
	}
	r.p = p
}

func (r *rig) runner(n int) *scriptRunner {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runners[n-1]
}

// since returns the phases entered after the first n.
func (r *rig) since(n int) []phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.phases[n:])
}

func (r *rig) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.phases)
}

// waitCount waits until n phase changes were recorded (the record follows
// the change by a moment: a handle may see a phase before the hook ran).
func (r *rig) waitCount(n int) {
	deadline := time.Now().Add(20 * time.Second)
	for r.count() < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling a record, not ordering events
	}
}

// waitPhase waits until the plugin is in ph.
func (r *rig) waitPhase(ph phase) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.p.phaseNow() != ph {
		if time.Now().After(deadline) {
			r.t.Fatalf("not %s after 20s: %s, phases %v", ph, r.p.phaseNow(), r.since(0))
		}
		time.Sleep(2 * time.Millisecond) // polling a state, not ordering events
	}
}

// gen calls "gen": the generation that answers.
func (r *rig) gen() int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := r.p.Call(ctx, "gen", nil)
	if err != nil {
		r.t.Fatalf("call gen: %v (phases %v)", err, r.since(0))
	}
	n, _ := strconv.Atoi(string(out))
	return n
}

// block starts a call that stays in flight until release, and waits
// until it is.
func (r *rig) block() chan error {
	r.t.Helper()
	ch := make(chan error, 1)
	go func() {
		_, err := r.p.Call(context.Background(), "block", nil)
		ch <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for r.p.Status().InFlight == 0 {
		if time.Now().After(deadline) {
			r.t.Fatal("the blocking call never got in flight")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return ch
}

// scriptRunner runs a generation as an SDK server on goroutines, like
// fakeRunner, following a script. Its control channel passes through a
// proxy that can refuse snapshots; a crash cuts the proxy and ends the
// "process" at once, as a kill would, even while a call still runs.
type scriptRunner struct {
	sc      script
	n       int
	rs      runSpec
	release chan struct{}

	cancel context.CancelFunc
	end    chan struct{} // the "process" is gone
	served chan struct{} // the SDK server returned
	once   sync.Once
	mu     sync.Mutex
	why    string
	conns  []*transport.Conn
}

func (f *scriptRunner) start() error {
	if f.sc.startErr != nil {
		return f.sc.startErr
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.end, f.served = cancel, make(chan struct{}), make(chan struct{})
	if f.sc.exitEarly {
		close(f.served)
		f.crash("exited at once")
		return nil
	}
	plug := sdk.Plugin{Name: "fake", Version: "1", Functions: map[string]any{
		"count": func(ctx context.Context) (int64, error) { return sdk.StateOf(ctx).IncrCounter("n", 1) },
		"block": func() (int, error) { // in flight until the test releases it, whatever happens
			<-f.release
			return f.n, nil
		},
	}}
	if !f.sc.noGen {
		plug.Functions["gen"] = func() (int, error) { return f.n, nil }
	}
	if f.sc.failMigrate {
		plug.Version = "2"
		plug.Migrate = func(string, map[string][]byte) (map[string][]byte, error) {
			return nil, errors.New("scripted migrate failure")
		}
	}
	env := f.rs.sdkEnv
	opts := transport.Options{MaxFrame: env.MaxFrame}
	up, err := transport.Dial(env.Control, opts)
	if err != nil {
		return err
	}
	env.Control = fmt.Sprintf("inproc://lifecycle-proxy-%p", f)
	down, err := transport.Listen(env.Control, opts)
	if err != nil {
		up.Close()
		return err
	}
	f.conns = []*transport.Conn{up, down}
	// plugin → host as is; host → plugin too, but a refused snapshot.
	go func() {
		for down.Recv(func(fr transport.Frame) error { return up.Send(ctx, fr) }) == nil {
		}
	}()
	go func() {
		for up.Recv(func(fr transport.Frame) error {
			if fr.Type == transport.Snapshot && f.sc.failSnapshot {
				return up.Send(ctx, transport.Frame{Type: transport.Error, ID: fr.ID,
					Payload: transport.JSON(transport.ErrorMsg{Error: "scripted snapshot failure"})})
			}
			return down.Send(ctx, fr)
		}) == nil {
		}
	}()
	go func() {
		defer close(f.served)
		_ = sdk.ServeEnv(ctx, plug, env)
		f.crash("exited")
	}()
	return nil
}

func (f *scriptRunner) crash(why string) {
	f.once.Do(func() {
		f.mu.Lock()
		f.why = why
		conns := f.conns
		f.mu.Unlock()
		f.cancel()
		for _, c := range conns {
			c.Close()
		}
		close(f.end)
	})
}

func (f *scriptRunner) pid() int              { return f.n }
func (f *scriptRunner) terminate()            { f.crash("terminated") }
func (f *scriptRunner) kill()                 { f.crash("killed") }
func (f *scriptRunner) done() <-chan struct{} { return f.end }
func (f *scriptRunner) describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "scripted process: " + f.why
}

var errScripted = errors.New("scripted start failure")

// The lifecycle outside swaps: every start, crash, backoff, give-up and
// stop goes through the phases lifecycle.go lists, and nothing else.
func TestLifecyclePhases(t *testing.T) {
	failing := map[int]script{}
	for n := 1; n <= maxStartFailures; n++ {
		failing[n] = script{startErr: errScripted}
	}
	cases := []struct {
		name    string
		scripts map[int]script
		act     func(t *testing.T, r *rig)
		want    []phase
	}{
		{"first start", nil, func(t *testing.T, r *rig) {}, []phase{phaseServing}},
		{"a failed start backs off and starts again", map[int]script{1: {startErr: errScripted}},
			func(t *testing.T, r *rig) {},
			[]phase{phaseBackoff, phaseStarting, phaseServing}},
		{"an exit before the handshake backs off too", map[int]script{1: {exitEarly: true}},
			func(t *testing.T, r *rig) {},
			[]phase{phaseBackoff, phaseStarting, phaseServing}},
		{"a crash backs off and restarts", nil, func(t *testing.T, r *rig) {
			r.waitPhase(phaseServing)
			r.runner(1).crash("segfault")
		}, []phase{phaseServing, phaseBackoff, phaseStarting, phaseServing}},
		{"give up, then a reload starts again", failing, func(t *testing.T, r *rig) {
			r.waitPhase(phaseFailed)
			if _, err := r.p.Call(context.Background(), "gen", nil); !errors.Is(err, ErrNotRunning) {
				t.Fatalf("call while failed: %v, want ErrNotRunning at once", err)
			}
			if _, err := r.p.Reload(context.Background(), ReloadOptions{}); err != nil {
				t.Fatalf("reload of the failed plugin: %v", err)
			}
		}, append(slices.Repeat([]phase{phaseBackoff, phaseStarting}, maxStartFailures-1),
			phaseFailed, phaseStarting, phaseServing)},
		{"a checkpoint holds the handles until the snapshot is answered", nil, func(t *testing.T, r *rig) {
			r.waitPhase(phaseServing)
			if err := r.p.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}, []phase{phaseServing, phaseCheckpointing, phaseServing}},
		{"stop", nil, func(t *testing.T, r *rig) {
			r.waitPhase(phaseServing)
			if err := r.s.Remove(context.Background(), "fake"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.p.Call(context.Background(), "gen", nil); !errors.Is(err, ErrStopped) {
				t.Fatalf("call after the stop: %v, want ErrStopped at once", err)
			}
		}, []phase{phaseServing, phaseStopped}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, Options{}, c.scripts)
			r.add()
			c.act(t, r)
			r.waitCount(len(c.want))
			if got := r.since(0); !slices.Equal(got, c.want) {
				t.Fatalf("phases %v, want %v", got, c.want)
			}
			if c.want[len(c.want)-1] == phaseServing {
				r.gen()
			}
		})
	}
}

// Every swap step that can fail, failing: the swap aborts through the one
// path (N serves on, or restarts if it died), every phase change wakes the
// waiting handles, and a call that arrived while paused is answered.
func TestSwapPhasesAndAborts(t *testing.T) {
	swapped := []phase{phasePaused, phaseDraining, phaseRestoring, phaseRetiring, phaseServing}
	var shortDrain Options
	shortDrain.DrainTimeout.Duration = 200 * time.Millisecond
	cases := []struct {
		name    string
		opts    Options
		scripts map[int]script
		force   bool
		block   bool                   // a call in flight on N when the swap starts
		saved   bool                   // a checkpoint saved before the swap
		during  func(r *rig, ph phase) // on entering each phase
		wantErr string                 // "" for a swap that succeeds
		want    []phase
		serving int // the generation serving afterwards
	}{
		{name: "success", want: swapped, serving: 2},
		{name: "step 1: N+1 fails to start", scripts: map[int]script{2: {startErr: errScripted}},
			wantErr: "scripted start failure", serving: 1},
		{name: "step 1: N+1 exits before the handshake", scripts: map[int]script{2: {exitEarly: true}},
			wantErr: "exited at once", serving: 1},
		{name: "step 1: N+1 lacks a function in use", scripts: map[int]script{2: {noGen: true}},
			wantErr: "does not offer it", serving: 1},
		{name: "step 3: the drain times out", opts: shortDrain, block: true,
			wantErr: "drain timed out", want: []phase{phasePaused, phaseDraining, phaseServing}, serving: 1},
		{name: "step 3: a forced drain timeout kills N", opts: shortDrain,
			force: true, block: true, want: swapped, serving: 2},
		{name: "step 3: N dies while draining", block: true, during: func(r *rig, ph phase) {
			if ph == phaseDraining {
				r.runner(1).crash("died while draining")
			}
		}, want: swapped, serving: 2},
		{name: "step 4: the snapshot fails", scripts: map[int]script{1: {failSnapshot: true}},
			wantErr: "scripted snapshot failure", want: []phase{phasePaused, phaseDraining, phaseServing}, serving: 1},
		{name: "step 5: the restore fails", scripts: map[int]script{2: {failMigrate: true}},
			wantErr: "scripted migrate failure", want: []phase{phasePaused, phaseDraining, phaseRestoring, phaseServing}, serving: 1},
		{name: "step 5: the restore fails after N died",
			scripts: map[int]script{2: {failMigrate: true}}, block: true, saved: true, during: func(r *rig, ph phase) {
				if ph == phaseDraining {
					r.runner(1).crash("died while draining")
				}
			}, wantErr: "died while draining; restarting",
			want:    []phase{phasePaused, phaseDraining, phaseRestoring, phaseServing, phaseBackoff, phaseStarting, phaseServing},
			serving: 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.opts, c.scripts)
			if c.during != nil {
				r.onEnter = func(ph phase) { c.during(r, ph) }
			}
			r.add()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := r.p.Call(ctx, "count", nil); err != nil { // state to carry over
				t.Fatal(err)
			}
			if g := r.gen(); g != 1 {
				t.Fatalf("generation %d serves at first", g)
			}
			if c.saved {
				if err := r.p.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var blocked chan error
			if c.block {
				blocked = r.block()
			}
			r.waitCount(1) // the first start: [serving]
			before := r.count()
			rep, err := r.p.Reload(ctx, ReloadOptions{Force: c.force})
			if c.wantErr == "" && err != nil {
				t.Fatalf("swap: %v", err)
			}
			if c.wantErr != "" && (!errors.Is(err, ErrSwapFailed) || !strings.Contains(err.Error(), c.wantErr) || rep.Error == "") {
				t.Fatalf("swap: %v (report %+v), want ErrSwapFailed saying %q", err, rep, c.wantErr)
			}
			if blocked != nil {
				close(r.release)
				<-blocked // answered by N or N+1, or failed with N: it ends either way
			}
			if g := r.gen(); g != c.serving {
				t.Fatalf("generation %d serves after the swap, want %d", g, c.serving)
			}
			r.waitCount(before + len(c.want))
			if got := r.since(before); !slices.Equal(got, c.want) {
				t.Fatalf("phases %v, want %v", got, c.want)
			}
			r.mu.Lock()
			waiting := slices.Clone(r.waiting)
			r.mu.Unlock()
			for _, ch := range waiting {
				select {
				case err := <-ch:
					if err != nil {
						t.Fatalf("the call that waited while paused: %v", err)
					}
				case <-ctx.Done():
					t.Fatal("the call that waited while paused was never released")
				}
			}
			st := r.p.Status()
			if st.State != StateRunning || st.Activity != ActivityIdle || (c.wantErr == "") != (st.LastError == "") {
				t.Fatalf("status after the swap: %+v", st)
			}
		})
	}
}

// A transition not in the table is reported, and the table lists a way
// out of every phase but stopped, and a way into every phase.
func TestLifecycleTableIsComplete(t *testing.T) {
	all := []phase{phaseStarting, phaseServing, phasePaused, phaseDraining, phaseRestoring,
		phaseRetiring, phaseCheckpointing, phaseBackoff, phaseFailed, phaseStopped, phaseWaiting}
	into := map[phase]bool{phaseStarting: true} // the first phase
	for _, ph := range all {
		outs, ok := next[ph]
		if !ok {
			t.Errorf("phase %s is missing from the table", ph)
		}
		if len(outs) == 0 && ph != phaseStopped {
			t.Errorf("no way out of %s", ph)
		}
		for _, o := range outs {
			into[o] = true
		}
	}
	for _, ph := range all {
		if !into[ph] {
			t.Errorf("no way into %s", ph)
		}
	}
	if len(next) != len(all) {
		t.Errorf("the table has %d phases, the test knows %d", len(next), len(all))
	}
}

// The driver layer's way in: a pending plugin shows the build's activity
// and error (failed until a spec exists), starts on Start, and a later
// failed build is recorded while the generation serves on.
func TestPendingPluginThroughPreparedAndStart(t *testing.T) {
	r := newRig(t, Options{}, nil)
	p, err := r.s.AddPending("fake", Spec{Driver: "./fake", Kind: "source"})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	if _, ok := p.Spec(); ok {
		t.Fatal("a pending plugin has a spec")
	}
	p.Preparing(ActivityBuilding)
	if st := p.Status(); st.State != StateStarting || st.Activity != ActivityBuilding || st.Driver != "./fake" {
		t.Fatalf("while building: %+v", st)
	}
	p.Prepared(errors.New("build failed: main.go:3: undefined: x"))
	p.Preparing(ActivityIdle)
	st := p.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "undefined: x") || st.Generation != 0 {
		t.Fatalf("after the failed first build: %+v", st)
	}
	if _, err := p.Call(context.Background(), "gen", nil); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "undefined: x") {
		t.Fatalf("call while the first build failed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p.Prepared(nil)
	if _, err := p.Reload(ctx, ReloadOptions{}); err == nil || !strings.Contains(err.Error(), "no spec yet") {
		t.Fatalf("reload of a plugin without a spec: %v", err)
	}
	if err := p.Start(ctx, Spec{Driver: "./fake", Kind: "source", Path: "/nonexistent/fake"}); err != nil {
		t.Fatal(err)
	}
	if g := r.gen(); g != 1 {
		t.Fatalf("generation %d serves after Start", g)
	}
	if err := p.Start(ctx, Spec{Path: "/nonexistent/other"}); err == nil {
		t.Fatal("a second Start was taken; a running plugin takes new specs through Reload")
	}
	p.Prepared(errors.New("build failed: a newer edit"))
	if st := p.Status(); st.State != StateRunning || !strings.Contains(st.LastError, "a newer edit") {
		t.Fatalf("a failed rebuild while serving: %+v", st)
	}
	if g := r.gen(); g != 1 {
		t.Fatalf("generation %d serves after the failed rebuild, want 1 serving on", g)
	}
	p.Prepared(nil)
	if st := p.Status(); st.LastError != "" {
		t.Fatalf("a good build did not clear the error: %+v", st)
	}
	r.waitCount(3)
	if got, want := r.since(0), []phase{phaseFailed, phaseStarting, phaseServing}; !slices.Equal(got, want) {
		t.Fatalf("phases %v, want %v", got, want)
	}
}

// An external plugin without an instance: it waits (no start, no
// backoff), calls wait and fail naming the plugin, a reload is refused
// with the reason, and a stop ends the wait.
func TestExternalWaitsForAnInstance(t *testing.T) {
	r := newRig(t, Options{}, nil)
	p, err := r.s.Add("geo", Spec{Kind: KindExternal, Driver: "external"})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	r.waitPhase(phaseWaiting)
	if st := p.Status(); st.State != StateWaiting {
		t.Fatalf("status %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Call(ctx, "count", nil); !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "no listener for external instances") {
		t.Fatalf("call while waiting: %v", err)
	}
	if _, err := p.Reload(context.Background(), ReloadOptions{}); !errors.Is(err, ErrSwapFailed) || !strings.Contains(err.Error(), "is external") {
		t.Fatalf("reload while waiting: %v", err)
	}
	if err := r.s.Remove(context.Background(), "geo"); err != nil {
		t.Fatal(err)
	}
	r.waitCount(2)
	if got, want := r.since(0), []phase{phaseWaiting, phaseStopped}; !slices.Equal(got, want) {
		t.Fatalf("phases %v, want %v", got, want)
	}
	if len(r.runners) != 0 {
		t.Fatalf("%d runners started for an external plugin", len(r.runners))
	}
}
