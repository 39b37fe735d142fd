package supervisor_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

var payload64 = []byte(`"` + strings.Repeat("x", 62) + `"`)

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[int(float64(len(d)-1)*p)]) / float64(time.Microsecond)
}

func benchPlugin(b *testing.B) *supervisor.Plugin {
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: b.TempDir()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sup.Close(context.Background()) })
	p, _ := sup.Add("bench", helperSpec("plugin", "PV_TEST_CPUPROFILE", os.Getenv("PV_BENCH_PLUGIN_PROFILE")))
	if _, err := p.Call(context.Background(), "echo", payload64); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkCallRoundTrip: one caller, 64-byte echo through a child process.
func BenchmarkCallRoundTrip(b *testing.B) {
	p := benchPlugin(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := p.Call(ctx, "echo", payload64); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.ReportMetric(pct(lat, 0.5), "p50-µs")
	b.ReportMetric(pct(lat, 0.99), "p99-µs")
}

// BenchmarkCallPipelined: 64 calls in flight (64 goroutines calling).
func BenchmarkCallPipelined(b *testing.B) {
	p := benchPlugin(b)
	ctx := context.Background()
	const inflight = 64
	var wg sync.WaitGroup
	per := b.N/inflight + 1
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < inflight; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := p.Call(ctx, "echo", payload64); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*inflight)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkSourceStream: 64-byte items from a child's source to the host.
func BenchmarkSourceStream(b *testing.B) {
	p := benchPlugin(b)
	sub, err := p.Subscribe(context.Background(), "blob", "bench", 1024)
	if err != nil {
		b.Fatal(err)
	}
	<-sub.C()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		<-sub.C()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	_ = sub.Close(context.Background())
}

// BenchmarkSwap: swaps under a steady call load, with 0, 1k and 100k state
// keys; reports the pause and the extra latency the callers saw.
func BenchmarkSwap(b *testing.B) {
	for _, keys := range []int{0, 1000, 100000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			p := benchPlugin(b)
			ctx := context.Background()
			if _, err := p.Call(ctx, "fill", []byte(fmt.Sprint(keys))); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var mu sync.Mutex
			var lat []time.Duration
			done := make(chan struct{})
			go func() { // ~10k calls/s
				defer close(done)
				tick := time.NewTicker(100 * time.Microsecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					t := time.Now()
					if _, err := p.Call(ctx, "count", []byte(`"k"`)); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t))
					mu.Unlock()
				}
			}()
			var pauses []time.Duration
			var ph supervisor.Phases
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rep, err := p.Reload(ctx, supervisor.ReloadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				pauses = append(pauses, time.Duration(rep.PauseMS*float64(time.Millisecond)))
				ph.StartMS += rep.Phases.StartMS / float64(b.N)
				ph.DrainMS += rep.Phases.DrainMS / float64(b.N)
				ph.SnapshotMS += rep.Phases.SnapshotMS / float64(b.N)
				ph.RestoreMS += rep.Phases.RestoreMS / float64(b.N)
				ph.OpenMS += rep.Phases.OpenMS / float64(b.N)
				ph.RetireMS += rep.Phases.RetireMS / float64(b.N)
			}
			b.StopTimer()
			close(stop)
			<-done
			b.ReportMetric(pct(pauses, 0.5)/1000, "pause-p50-ms")
			b.ReportMetric(pct(pauses, 0.99)/1000, "pause-p99-ms")
			mu.Lock()
			b.ReportMetric(pct(lat, 0.99)/1000, "call-p99-ms")
			b.ReportMetric(pct(lat, 1)/1000, "call-max-ms")
			mu.Unlock()
			b.ReportMetric(ph.StartMS, "start-ms")
			b.ReportMetric(ph.DrainMS, "drain-ms")
			b.ReportMetric(ph.SnapshotMS, "snapshot-ms")
			b.ReportMetric(ph.RestoreMS, "restore-ms")
			b.ReportMetric(ph.RetireMS, "retire-ms")
		})
	}
}
