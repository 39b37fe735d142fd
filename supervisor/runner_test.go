package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

// fakeRunner runs a generation as an SDK server on a goroutine, dialling
// the real control socket, with a made-up pid: restart and swap logic
// without processes. crash ends it as a killed process would.
type fakeRunner struct {
	rs     runSpec
	fpid   int
	cancel context.CancelFunc
	end    chan struct{}
	mu     sync.Mutex
	why    string
}

func (f *fakeRunner) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.end = cancel, make(chan struct{})
	plug := sdk.Plugin{Name: "fake", Version: "1", Functions: map[string]any{
		"pid": func() (int, error) { return f.fpid, nil },
	}}
	go func() {
		defer close(f.end)
		_ = sdk.ServeEnv(ctx, plug, f.rs.sdkEnv)
	}()
	return nil
}

func (f *fakeRunner) crash(why string) {
	f.mu.Lock()
	f.why = why
	f.mu.Unlock()
	f.cancel()
}

func (f *fakeRunner) pid() int              { return f.fpid }
func (f *fakeRunner) terminate()            { f.crash("terminated") }
func (f *fakeRunner) kill()                 { f.crash("killed") }
func (f *fakeRunner) done() <-chan struct{} { return f.end }
func (f *fakeRunner) describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "fake process: " + f.why
}

// A generation whose runner dies is noticed from the runner alone, the
// plugin is restarted through a new runner, and calls reach it; a swap
// goes through the runner too.
func TestRestartAndSwapThroughFakeRunner(t *testing.T) {
	var o Options
	o.StateDir, o.BackoffMin.Duration, o.StopGrace.Duration = t.TempDir(), 10*time.Millisecond, 100*time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var mu sync.Mutex
	var runners []*fakeRunner
	s.newRunner = func(rs runSpec) runner {
		mu.Lock()
		defer mu.Unlock()
		f := &fakeRunner{rs: rs, fpid: 1000 + len(runners)}
		runners = append(runners, f)
		return f
	}
	p, err := s.Add("fake", Spec{Kind: "binary", Path: "/nonexistent/fake"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := p.Call(ctx, "pid", nil); err != nil || string(out) != "1000" {
		t.Fatalf("first call: %s, %v", out, err)
	}
	if st := p.Status(); st.PID != 1000 {
		t.Fatalf("status pid %d, want the runner's 1000", st.PID)
	}
	events := s.Subscribe(16)
	defer events.Close()
	mu.Lock()
	first := runners[0]
	mu.Unlock()
	first.crash("segfault")

	for want := EventPluginCrashed; want != ""; {
		select {
		case e := <-events.C:
			if e.Type != want {
				continue
			}
			if want == EventPluginCrashed {
				if !strings.Contains(e.Error, "fake process: segfault") {
					t.Fatalf("crash event: %+v", e)
				}
				want = EventPluginRestarted
			} else {
				want = ""
			}
		case <-ctx.Done():
			t.Fatalf("no restart: %+v", p.Status())
		}
	}
	if out, err := p.Call(ctx, "pid", nil); err != nil || string(out) != "1001" {
		t.Fatalf("call after the restart: %s, %v", out, err)
	}
	st := p.Status()
	if st.PID != 1001 || st.Restarts != 1 || st.State != StateRunning || !strings.Contains(st.LastError, "segfault") {
		t.Fatalf("after the restart: %+v", st)
	}
	// A swap starts the next generation through the runner and retires
	// the old one through it.
	if _, err := p.Reload(ctx, ReloadOptions{}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if out, err := p.Call(ctx, "pid", nil); err != nil || string(out) != "1002" {
		t.Fatalf("call after the swap: %s, %v", out, err)
	}
	mu.Lock()
	retired := runners[1]
	mu.Unlock()
	select {
	case <-retired.done():
	case <-ctx.Done():
		t.Fatal("the swapped-out runner was not ended")
	}
	if err := s.Remove(ctx, "fake"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range runners {
		select {
		case <-r.done():
		default:
			t.Fatalf("runner %d still running after removal", r.fpid)
		}
	}
}
