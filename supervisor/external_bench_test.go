package supervisor_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// BenchmarkHandoverPause: the pause callers see during a handover between
// two external instances (over tls+tcp on loopback) next to a local swap
// of a child process (ipc://), b.N of each in the same run under one
// caller's steady load (-benchtime 20x for 20). Reports p50/p99 of
// Report.PauseMS; ns/op is one handover plus one swap, process starts
// included.
func BenchmarkHandoverPause(b *testing.B) {
	rounds := b.N
	r := newExtRig(b, nil)
	r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	var ext []float64
	steadyLoad(b, r.p, func() {
		for i := range rounds {
			r.start("geo", false, "PV_TEST_VERSION=1.0."+strconv.Itoa(i+1))
			e := r.waitEvent(supervisor.EventInstanceHandedOver, "geo")
			ext = append(ext, e.Report.PauseMS)
		}
	})
	local, err := r.sup.Add("local", helperSpec("plugin"))
	if err != nil {
		b.Fatal(err)
	}
	r.call(local, "count", `"x"`)
	var loc []float64
	steadyLoad(b, local, func() {
		for range rounds {
			rep, err := local.Reload(context.Background(), supervisor.ReloadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			loc = append(loc, rep.PauseMS)
		}
	})
	b.ReportMetric(pctMS(ext, 0.5), "handover-p50-ms")
	b.ReportMetric(pctMS(ext, 0.99), "handover-p99-ms")
	b.ReportMetric(pctMS(loc, 0.5), "local-swap-p50-ms")
	b.ReportMetric(pctMS(loc, 0.99), "local-swap-p99-ms")
}

// load runs fn while one caller counts on p back to back.
func steadyLoad(b *testing.B, p *supervisor.Plugin, fn func()) {
	stop := countLoad(p, 1)
	fn()
	if _, errs := stop(); len(errs) > 0 {
		b.Fatal(errs)
	}
}

func pctMS(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkExternalCallRoundTrip: one caller, 64-byte echo through an
// external instance over tls+tcp on loopback (compare
// BenchmarkCallRoundTrip, the same through a child process over ipc://).
func BenchmarkExternalCallRoundTrip(b *testing.B) {
	r := newExtRig(b, nil)
	r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	ctx := context.Background()
	if _, err := r.p.Call(ctx, "echo", payload64); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		if _, err := r.p.Call(ctx, "echo", payload64); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.ReportMetric(pct(lat, 0.5), "p50-µs")
	b.ReportMetric(pct(lat, 0.99), "p99-µs")
}
