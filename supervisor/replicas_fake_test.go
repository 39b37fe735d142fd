package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
)

// fakeFleet hands out fake runners (runner_test.go) with pids 1000, 1001, …;
// while failing is set, their start fails.
type fakeFleet struct {
	mu      sync.Mutex
	runners map[int]*fakeRunner
	ends    map[int]<-chan struct{} // of the runners started
	failing atomic.Bool
}

func newFakeSup(t *testing.T) (*Supervisor, *fakeFleet) {
	t.Helper()
	o := Options{Supervisor: config.Supervisor{StateDir: t.TempDir()}}
	o.BackoffMin.Duration, o.BackoffMax.Duration, o.StopGrace.Duration = 5*time.Millisecond, 20*time.Millisecond, 100*time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	f := &fakeFleet{runners: map[int]*fakeRunner{}, ends: map[int]<-chan struct{}{}}
	s.newRunner = func(rs runSpec) runner {
		f.mu.Lock()
		defer f.mu.Unlock()
		r := &fakeRunner{rs: rs, fpid: 1000 + len(f.runners)}
		f.runners[r.fpid] = r
		if f.failing.Load() {
			return failingRunner{r}
		}
		return trackedRunner{r, f}
	}
	return s, f
}

// trackedRunner records its end channel once started.
type trackedRunner struct {
	*fakeRunner
	f *fakeFleet
}

func (r trackedRunner) start() error {
	err := r.fakeRunner.start()
	r.f.mu.Lock()
	r.f.ends[r.fpid] = r.end
	r.f.mu.Unlock()
	return err
}

// failingRunner cannot start.
type failingRunner struct{ *fakeRunner }

func (failingRunner) start() error { return errors.New("exec format error") }

// running lists the pids of the runners not ended.
func (f *fakeFleet) running() map[int]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int]bool{}
	for pid, end := range f.ends {
		select {
		case <-end:
		default:
			out[pid] = true
		}
	}
	return out
}

func waitInstances(t *testing.T, p *Plugin, n int) []InstanceStatus {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		in := p.Status().Instances
		if len(in) == n && in[0].Role == RolePrimary {
			return in
		}
		select {
		case <-deadline:
			t.Fatalf("want %d instances, have %+v", n, in)
		case <-tick.C:
		}
	}
}

// A reload that changes replicas rolls the secondaries it keeps, retires
// the surplus or starts the missing, and leaves exactly the new set running.
func TestReplicasReloadScales(t *testing.T) {
	for _, c := range []struct{ from, to, rolled int }{
		{3, 3, 2}, {3, 1, 0}, {1, 3, 0}, {2, 4, 1}, {4, 2, 1},
	} {
		t.Run(fmt.Sprintf("%d→%d", c.from, c.to), func(t *testing.T) {
			s, fleet := newFakeSup(t)
			p, err := s.Add("fake", Spec{Kind: "binary", Path: "/nonexistent/fake", Replicas: c.from})
			if err != nil {
				t.Fatal(err)
			}
			before := waitInstances(t, p, c.from)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rep, err := p.Reload(ctx, ReloadOptions{Spec: &Spec{Kind: "binary", Path: "/nonexistent/fake", Replicas: c.to}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Replicas != c.rolled {
				t.Errorf("rolled %d secondaries, want %d", rep.Replicas, c.rolled)
			}
			after := waitInstances(t, p, c.to)
			running := fleet.running()
			if len(running) != c.to {
				t.Errorf("%d runners running, want %d: %v", len(running), c.to, running)
			}
			for _, b := range before {
				for _, a := range after {
					if a.PID == b.PID {
						t.Errorf("pid %d served before and after the reload", a.PID)
					}
				}
			}
			for _, a := range after {
				if !running[a.PID] {
					t.Errorf("instance %d listed but its runner ended", a.PID)
				}
			}
			if err := s.Remove(ctx, "fake"); err != nil {
				t.Fatal(err)
			}
			if r := fleet.running(); len(r) != 0 {
				t.Errorf("runners left after removal: %v", r)
			}
		})
	}
}

// A secondary that cannot start again after a crash gives up after
// maxStartFailures, says so in last_error, and the primary serves every
// call meanwhile; a reload fills the slot again.
func TestReplicaGivesUpThenReloadRefills(t *testing.T) {
	s, fleet := newFakeSup(t)
	p, err := s.Add("fake", Spec{Kind: "binary", Path: "/nonexistent/fake", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	in := waitInstances(t, p, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fleet.failing.Store(true)
	fleet.mu.Lock()
	fleet.runners[in[1].PID].crash("segfault")
	fleet.mu.Unlock()
	// A call sent to the secondary as it crashes fails with it; from its
	// being out of service on, the primary answers every call.
	waitInstances(t, p, 1)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Status().LastError, "gave up") {
		if _, err := p.Call(ctx, "pid", nil); err != nil {
			t.Fatalf("call while the replica restarts: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never gave up: %+v", p.Status())
		}
	}
	if st := p.Status(); len(st.Instances) != 1 || !strings.Contains(st.LastError, "exec format error") {
		t.Fatalf("after giving up: %+v", st)
	}
	fleet.failing.Store(false)
	rep, err := p.Reload(ctx, ReloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitInstances(t, p, 2)
	if rep.Replicas != 0 || p.Status().LastError != "" {
		t.Errorf("after the reload: report %+v, last error %q", rep, p.Status().LastError)
	}
}
