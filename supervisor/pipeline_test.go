package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/supervisor"
)

// runPipeline starts pl in the background; the returned stop cancels it
// and returns RunPipeline's error (which flushed the sink).
func runPipeline(t *testing.T, sup *supervisor.Supervisor, pl supervisor.Pipeline) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.RunPipeline(ctx, pl) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitOut waits until the pipeline passed want items on (or dropped or
// dead-lettered them), failing after a generous deadline.
func waitOut(t *testing.T, sup *supervisor.Supervisor, name string, want uint64) supervisor.PipelineStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, ok := sup.PipelineStatus(name)
		if ok && st.Out+st.Dropped+st.DeadLettered >= want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline %s: %+v after 60s, want %d items through", name, st, want)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter under a deadline
	}
}

// lines reads a collect sink's file.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // the sink was never opened
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Test 1: three plugins, flat out, each swapped three times mid-stream
// (the source never ends, so every swap is): the sink sees 1..N in order,
// once each, and the function's state counter (checkpointed across its
// swaps) equals N. Stopping the pipeline finishes the items in flight.
func TestPipelineFullSpeedSwapsExactlyOnce(t *testing.T) {
	// A busy machine must not turn a slow heartbeat into a crash here.
	sup := newSup(t, func(o *supervisor.Options) { o.HeartbeatTimeout.Duration = time.Minute })
	dstSpec, out := sinkSpec(t)
	src, _ := sup.Add("src", helperSpec("plugin"))
	fn, _ := sup.Add("fn", helperSpec("plugin"))
	dst, _ := sup.Add("dst", dstSpec)
	pl := supervisor.Pipeline{Name: "full", Source: supervisor.Ref{Plugin: "src", Symbol: "ticks"},
		Functions: []supervisor.Ref{{Plugin: "fn", Symbol: "pass"}}, Sink: supervisor.Ref{Plugin: "dst", Symbol: "collect"},
		BatchItems: 64} // small batches: more of them in flight across each swap
	stop := runPipeline(t, sup, pl)
	waitOut(t, sup, "full", 1)
	var moved []uint64
	for i, p := range []*supervisor.Plugin{fn, src, dst, fn, src, dst, fn, src, dst} {
		before, _ := sup.PipelineStatus("full")
		if rep := reload(t, p, supervisor.ReloadOptions{}); rep.AtLeastOnce != "" {
			t.Fatalf("swap %d of %s was not exact: %s", i, p.Name(), rep.AtLeastOnce)
		}
		// Items flow between swaps, so the next one is mid-stream.
		after := waitOut(t, sup, "full", before.Out+100)
		moved = append(moved, after.Out-before.Out)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*supervisor.Plugin{src, fn, dst} {
		if st := p.Status(); st.Restarts > 0 {
			// A crash (a heartbeat missed on an overloaded machine, say) is
			// at-least-once by design: this test is about planned swaps.
			t.Fatalf("plugin %s restarted %d times (%s): planned swaps only, please", p.Name(), st.Restarts, st.LastError)
		}
	}
	got := lines(t, out)
	for i, l := range got {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("sink line %d = %q, want %d (gap, duplicate or reorder)", i+1, l, i+1)
		}
	}
	if c := call(t, fn, "get", `"passed"`); c != strconv.Itoa(len(got)) {
		t.Fatalf("function state counter = %s, sink got %d items", c, len(got))
	}
	st, _ := sup.PipelineStatus("full")
	if st.InFlight != 0 || st.Dropped != 0 || st.Out != uint64(len(got)) {
		t.Fatalf("status after the run: %+v, sink got %d", st, len(got))
	}
	t.Logf("%d items exactly once in order over 9 swaps (items per swap interval: %v)", len(got), moved)
}

// pipeAPI serves GET /pipelines from a supervisor.
type pipeAPI struct {
	api.Backend
	sup *supervisor.Supervisor
}

func (b pipeAPI) Gatherer() prometheus.Gatherer          { return b.sup.Registry() }
func (b pipeAPI) Pipelines() []supervisor.PipelineStatus { return b.sup.Pipelines() }
func (b pipeAPI) Pipeline(n string) (supervisor.PipelineStatus, error) {
	if st, ok := b.sup.PipelineStatus(n); ok {
		return st, nil
	}
	return supervisor.PipelineStatus{}, fmt.Errorf("no pipeline %q", n)
}

// Test 2: a function failing one item in twenty, under each policy; the
// rest keep their order, and GET /pipelines counts what happened.
func TestPipelineErrorPolicies(t *testing.T) {
	const n = 200
	sup := newSup(t)
	srv := httptest.NewServer(api.NewServer(pipeAPI{sup: sup}, nil))
	defer srv.Close()
	for _, policy := range []string{supervisor.OnErrorDrop, supervisor.OnErrorRetry, supervisor.OnErrorDeadLetter} {
		t.Run(policy, func(t *testing.T) {
			srcSpec := helperSpec("plugin")
			srcSpec.Config = map[string]any{"limit": n}
			dstSpec, out := sinkSpec(t)
			dlSpec, dlOut := sinkSpec(t)
			src, _ := sup.Add("src-"+policy, srcSpec)
			dst, _ := sup.Add("dst-"+policy, dstSpec)
			dl, _ := sup.Add("dl-"+policy, dlSpec)
			fn, _ := sup.Add("fn-"+policy, helperSpec("plugin")) // fresh: flaky's tries are in its state
			defer func() {
				for _, p := range []*supervisor.Plugin{src, dst, dl, fn} {
					_ = sup.Remove(ctxT(t, 10*time.Second), p.Name())
				}
			}()
			// Series exist at 0 before anything happened.
			if !hasSeries(t, sup, "plugvisor_lost_total", "plugin", src.Name()) {
				t.Fatal("plugvisor_lost_total has no series for a new plugin")
			}
			pl := supervisor.Pipeline{Name: "p-" + policy, Source: supervisor.Ref{Plugin: src.Name(), Symbol: "ticks"},
				Functions: []supervisor.Ref{{Plugin: fn.Name(), Symbol: "flaky"}}, Sink: supervisor.Ref{Plugin: dst.Name(), Symbol: "collect"},
				OnError: policy, RetryDelay: time.Millisecond}
			if policy == supervisor.OnErrorDeadLetter {
				pl.DeadLetter = supervisor.Ref{Plugin: dl.Name(), Symbol: "collect"}
			}
			stop := runPipeline(t, sup, pl)
			waitOut(t, sup, pl.Name, n)
			if !hasSeries(t, sup, "plugvisor_pipeline_dropped_total", "pipeline", pl.Name) {
				t.Fatal("plugvisor_pipeline_dropped_total has no series for a pipeline")
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := 1; i <= n; i++ {
				if i%20 != 0 || policy == supervisor.OnErrorRetry {
					want = append(want, strconv.Itoa(i))
				}
			}
			if got := lines(t, out); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("sink got %v\nwant %v", got, want)
			}
			var st supervisor.PipelineStatus
			resp, err := http.Get(srv.URL + "/pipelines/" + pl.Name)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET /pipelines/%s: %d %v", pl.Name, resp.StatusCode, err)
			}
			fnStage := st.Stages[1]
			wantDropped, wantDead, wantRetried := 0, 0, 0
			switch policy {
			case supervisor.OnErrorDrop:
				wantDropped = n / 20
			case supervisor.OnErrorRetry:
				wantRetried = n / 20
			case supervisor.OnErrorDeadLetter:
				wantDead = n / 20
			}
			if st.In != n || st.Out != uint64(len(want)) || fnStage.In != n || st.Dropped != uint64(wantDropped) ||
				st.DeadLettered != uint64(wantDead) || fnStage.Retried != uint64(wantRetried) || st.InFlight != 0 {
				t.Fatalf("GET /pipelines/%s = %+v", pl.Name, st)
			}
			if wantDropped+wantDead > 0 && !strings.Contains(st.LastError, "transient failure") {
				t.Errorf("last_error = %q", st.LastError)
			}
			if got := metric(t, sup, "plugvisor_pipeline_dropped_total", map[string]string{"pipeline": pl.Name}); got != float64(wantDropped) {
				t.Errorf("plugvisor_pipeline_dropped_total = %v, want %d", got, wantDropped)
			}
			dead := lines(t, dlOut)
			if len(dead) != wantDead {
				t.Fatalf("dead-letter sink got %d items, want %d: %v", len(dead), wantDead, dead)
			}
			for i, d := range dead {
				var m struct {
					Pipeline, Stage, Error string
					Item                   int
				}
				if err := json.Unmarshal([]byte(d), &m); err != nil || m.Item != 20*(i+1) || m.Stage != fn.Name()+".flaky" ||
					m.Pipeline != pl.Name || !strings.Contains(m.Error, "transient failure") {
					t.Fatalf("dead letter %d = %s (%v)", i, d, err)
				}
			}
		})
	}
	resp, err := http.Get(srv.URL + "/pipelines")
	if err != nil {
		t.Fatal(err)
	}
	var list []supervisor.PipelineStatus
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 3 || list[0].State != supervisor.PipelineStopped {
		t.Fatalf("GET /pipelines = %+v", list)
	}
}

// hasSeries reports whether the registry has a series of name with label=value.
func hasSeries(t *testing.T, sup *supervisor.Supervisor, name, label, value string) bool {
	t.Helper()
	mfs, err := sup.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// Test 3: a plugin built with an SDK from before call batches (single
// calls only, no features in its manifest) works in a pipeline, across a
// swap, with its calls pipelined.
func TestPipelineOldProtocolPlugin(t *testing.T) {
	const n = 500
	sup := newSup(t)
	srcSpec := helperSpec("plugin")
	srcSpec.Config = map[string]any{"limit": n}
	dstSpec, out := sinkSpec(t)
	_, _ = sup.Add("src", srcSpec)
	old, _ := sup.Add("old", helperSpec("old-sdk"))
	_, _ = sup.Add("dst", dstSpec)
	stop := runPipeline(t, sup, supervisor.Pipeline{Name: "old", Source: supervisor.Ref{Plugin: "src", Symbol: "ticks"},
		Functions: []supervisor.Ref{{Plugin: "old", Symbol: "double"}}, Sink: supervisor.Ref{Plugin: "dst", Symbol: "collect"}})
	waitOut(t, sup, "old", 1)
	reload(t, old, supervisor.ReloadOptions{})
	waitOut(t, sup, "old", n)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, out)
	if len(got) != n {
		t.Fatalf("sink got %d items, want %d", len(got), n)
	}
	for i, l := range got {
		if l != strconv.Itoa(2*(i+1)) {
			t.Fatalf("sink line %d = %q, want %d", i+1, l, 2*(i+1))
		}
	}
	if st := old.Status(); st.Restarts != 0 || st.Version != "0.9.0" {
		t.Fatalf("old plugin status: %+v", st)
	}
}
