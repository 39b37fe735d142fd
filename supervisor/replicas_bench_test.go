package supervisor_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// BenchmarkReplicas: calls/s with 64 calls in flight, served by 1 and by
// 3 replicas on this machine: the Go helper's 64-byte echo, and the
// Python example's div (one process of Python runs on one core: the GIL).
func BenchmarkReplicas(b *testing.B) {
	py, _ := exec.LookPath("python3")
	sdkDir, _ := filepath.Abs("../sdk/python")
	pyMain, _ := filepath.Abs("../examples/pydemo/main.py")
	for _, c := range []struct {
		lang, fn string
		in       []byte
		spec     supervisor.Spec
	}{
		{"go", "echo", payload64, helperSpec("plugin")},
		{"python", "div", []byte("[6, 3]"), supervisor.Spec{Kind: "command", Path: py, Args: []string{pyMain},
			Env: map[string]string{"PYTHONPATH": sdkDir}}},
	} {
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/replicas=%d", c.lang, n), func(b *testing.B) {
				if c.spec.Path == "" {
					b.Skip("python3 is not installed")
				}
				benchReplicas(b, c.spec, n, c.fn, c.in)
			})
		}
	}
}

func benchReplicas(b *testing.B, spec supervisor.Spec, n int, fn string, in []byte) {
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: b.TempDir()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sup.Close(context.Background()) })
	spec.Replicas = n
	p, err := sup.Add("bench", spec)
	if err != nil {
		b.Fatal(err)
	}
	benchCalls(b, p, n, fn, in)
}

// BenchmarkExternalReplicas: calls/s with 64 calls in flight served by 1
// and by 3 external Go instances over tls+tcp on loopback (the Go part of
// BenchmarkReplicas, over the network).
func BenchmarkExternalReplicas(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			r := newExtRig(b, nil)
			r.p = r.addN("fleet", nil, n)
			startFleet(r, 0, n, true)
			benchCalls(b, r.p, n, "echo", payload64)
		})
	}
}

// benchCalls waits for n instances of p, then times b.N calls of fn with
// 64 in flight and reports calls/s.
func benchCalls(b *testing.B, p *supervisor.Plugin, n int, fn string, in []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(p.Status().Instances) < n { // every replica up before timing
		if _, err := p.Call(ctx, fn, in); err != nil {
			b.Fatal(err)
		}
	}
	const inflight = 64
	per := b.N/inflight + 1
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if _, err := p.Call(ctx, fn, in); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*inflight)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkRollingReload measures what the issue bounds: the latency
// callers see while a plugin with 3 replicas is reloaded (one rolling
// reload per b.N), next to the same two callers' p99 before any reload.
// It reports both p99s, the slowest call during the reloads, that over
// the quiet p99 (the bound is 2), failed calls, and the longest
// a call waited in the host for a serving generation. The control,
// start-other, does no reload at all: it starts and removes an unrelated
// plugin per b.N under the same load, which shows what a process start
// alone costs the callers on this machine.
func BenchmarkRollingReload(b *testing.B) {
	b.Run("reload", func(b *testing.B) {
		rollingLoad(b, func(ctx context.Context, sup *supervisor.Supervisor, p *supervisor.Plugin, _ int) error {
			_, err := p.Reload(ctx, supervisor.ReloadOptions{})
			return err
		})
	})
	b.Run("start-other", func(b *testing.B) {
		rollingLoad(b, func(ctx context.Context, sup *supervisor.Supervisor, _ *supervisor.Plugin, i int) error {
			name := fmt.Sprintf("other%d", i)
			q, err := sup.Add(name, helperSpec("plugin"))
			if err == nil {
				_, err = q.Call(ctx, "echo", payload64)
			}
			if err == nil {
				err = sup.Remove(ctx, name)
			}
			return err
		})
	})
}

// rollingLoad runs two callers on a plugin with 3 replicas, takes their
// quiet latencies, then times b.N runs of step and reports (see
// BenchmarkRollingReload).
func rollingLoad(b *testing.B, step func(ctx context.Context, sup *supervisor.Supervisor, p *supervisor.Plugin, i int) error) {
	o := supervisor.Options{Supervisor: config.Supervisor{StateDir: b.TempDir()}}
	o.StopGrace.Duration = 300 * time.Millisecond
	sup, err := supervisor.New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sup.Close(context.Background()) })
	spec := helperSpec("plugin")
	spec.Replicas = 3
	p, err := sup.Add("bench", spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for len(p.Status().Instances) < 3 {
		if _, err := p.Call(ctx, "echo", payload64); err != nil {
			b.Fatal(err)
		}
	}
	l := startLoad(p, 2)
	defer l.end()
	// No event marks "enough calls": poll the count, bounded.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for enough := false; !enough; {
		select {
		case <-ctx.Done():
			b.Fatal("no baseline calls")
		case <-tick.C:
		}
		l.mu.Lock()
		enough = len(l.lat) >= 5000
		l.mu.Unlock()
	}
	quiet, _ := l.take()
	p.ResetMaxCallPause() // the first calls waited for the start
	b.ResetTimer()
	for i := range b.N {
		if err := step(ctx, sup, p, i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	during, errs := l.take()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	q99 := quantile(quiet, 0.99)
	b.ReportMetric(us(q99), "quiet-p99-µs")
	b.ReportMetric(us(quantile(during, 0.99)), "during-p99-µs")
	b.ReportMetric(us(slices.Max(during)), "during-max-µs")
	b.ReportMetric(float64(slices.Max(during))/float64(q99), "max/quiet-p99")
	b.ReportMetric(float64(len(errs)), "failed-calls")
	b.ReportMetric(us(p.MaxCallPause()), "max-wait-µs")
}
