package supervisor

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pipeline states in PipelineStatus.
const (
	PipelineWaiting = "waiting" // its plugins are not all there yet, or it restarts after an error
	PipelineRunning = "running"
	PipelineStopped = "stopped"
)

// StageStatus counts one stage of a pipeline. Items in = items handed to
// the stage; out = passed on; dropped and dead-lettered per the error
// policy; retried counts retries of items the function failed.
type StageStatus struct {
	Stage        string `json:"stage"` // source, function1…, sink
	Ref          string `json:"ref"`   // plugin.symbol
	In           uint64 `json:"in"`
	Out          uint64 `json:"out"`
	Dropped      uint64 `json:"dropped"`
	DeadLettered uint64 `json:"dead_lettered"`
	Retried      uint64 `json:"retried"`
	InFlight     int64  `json:"in_flight"` // taken in, not yet passed on or rejected
}

// PipelineStatus is a pipeline as GET /pipelines shows it.
type PipelineStatus struct {
	Name         string        `json:"name"`
	State        string        `json:"state"`
	OnError      string        `json:"on_error"`
	DeadLetter   string        `json:"dead_letter,omitempty"`
	Stages       []StageStatus `json:"stages"`
	In           uint64        `json:"in"`  // items read from the source
	Out          uint64        `json:"out"` // items written to the sink
	InFlight     int64         `json:"in_flight"`
	Dropped      uint64        `json:"dropped"`
	DeadLettered uint64        `json:"dead_lettered"`
	LastError    string        `json:"last_error,omitempty"`
	Throughput   float64       `json:"throughput"` // items/s out of the pipeline over the last seconds
	Since        time.Time     `json:"since"`
}

// stageStats are one stage's live counters.
type stageStats struct {
	name, ref                             string
	in, out, dropped, deadLettered, retry atomic.Uint64

	// Prometheus series, fetched once.
	pIn, pOut, pDropped, pDead, pRetry prometheus.Counter
}

// pipeStats are a pipeline's live counters and state.
type pipeStats struct {
	name, onError, deadLetter string
	stages                    []*stageStats

	mu      sync.Mutex
	state   string
	lastErr string
	since   time.Time
	samples [8]sample // ring of (time, out) for the throughput
	nsample int
}

type sample struct {
	at  time.Time
	out uint64
}

func (ps *pipeStats) setState(state string, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if state != "" && ps.state != state {
		ps.state, ps.since = state, time.Now()
	}
	if err != nil {
		ps.lastErr = err.Error()
	}
}

func (ps *pipeStats) source() *stageStats { return ps.stages[0] }
func (ps *pipeStats) sink() *stageStats   { return ps.stages[len(ps.stages)-1] }

// status reads the counters; it also samples the throughput.
func (ps *pipeStats) status() PipelineStatus {
	st := PipelineStatus{Name: ps.name, OnError: ps.onError, DeadLetter: ps.deadLetter}
	for _, s := range ps.stages {
		ss := StageStatus{Stage: s.name, Ref: s.ref, In: s.in.Load(), Out: s.out.Load(), Dropped: s.dropped.Load(),
			DeadLettered: s.deadLettered.Load(), Retried: s.retry.Load()}
		ss.InFlight = max(0, int64(ss.In)-int64(ss.Out)-int64(ss.Dropped)-int64(ss.DeadLettered))
		st.Dropped += ss.Dropped
		st.DeadLettered += ss.DeadLettered
		st.Stages = append(st.Stages, ss)
	}
	st.In = st.Stages[0].Out
	st.Out = st.Stages[len(st.Stages)-1].Out
	st.InFlight = int64(st.In) - int64(st.Out) - int64(st.Dropped) - int64(st.DeadLettered)
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st.State, st.LastError, st.Since = ps.state, ps.lastErr, ps.since
	// Throughput over the oldest sample at least a second old, if any.
	last := ps.samples[(ps.nsample+len(ps.samples)-1)%len(ps.samples)]
	if ps.nsample == 0 || now.Sub(last.at) >= 250*time.Millisecond {
		ps.samples[ps.nsample%len(ps.samples)] = sample{now, st.Out}
		ps.nsample++
	}
	n := min(ps.nsample, len(ps.samples))
	oldest := ps.samples[(ps.nsample-n)%len(ps.samples)]
	if d := now.Sub(oldest.at); d > 0 && st.Out >= oldest.out {
		st.Throughput = float64(st.Out-oldest.out) / d.Seconds()
	}
	return st
}

// pipeRegistry holds the stats of every pipeline run by RunPipeline.
type pipeRegistry struct {
	mu sync.Mutex
	m  map[string]*pipeStats
}

// stats returns the pipeline's stats, made afresh when its stages changed.
func (s *Supervisor) pipeStats(pl Pipeline) *pipeStats {
	names := []string{"source"}
	refs := []string{pl.Source.String()}
	for i, f := range pl.Functions {
		names = append(names, "function"+strconv.Itoa(i+1))
		refs = append(refs, f.String())
	}
	names = append(names, "sink")
	sink := ""
	if pl.Sink.Plugin != "" {
		sink = pl.Sink.String()
	}
	refs = append(refs, sink)
	dl := ""
	if pl.DeadLetter.Plugin != "" {
		dl = pl.DeadLetter.String()
	}
	r := &s.pipes
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*pipeStats{}
	}
	if ps, ok := r.m[pl.Name]; ok && len(ps.stages) == len(refs) && ps.onError == pl.onError() && ps.deadLetter == dl {
		same := true
		for i, st := range ps.stages {
			same = same && st.ref == refs[i]
		}
		if same {
			return ps
		}
	}
	ps := &pipeStats{name: pl.Name, onError: pl.onError(), deadLetter: dl, state: PipelineWaiting, since: time.Now()}
	for i := range refs {
		st := &stageStats{name: names[i], ref: refs[i]}
		st.pIn, st.pOut, st.pDropped, st.pDead, st.pRetry = s.metrics.pipeline(pl.Name, names[i], refs[i])
		ps.stages = append(ps.stages, st)
	}
	r.m[pl.Name] = ps
	return ps
}

// Pipelines reports every pipeline RunPipeline has run, sorted by name.
func (s *Supervisor) Pipelines() []PipelineStatus {
	s.pipes.mu.Lock()
	list := make([]*pipeStats, 0, len(s.pipes.m))
	for _, ps := range s.pipes.m {
		list = append(list, ps)
	}
	s.pipes.mu.Unlock()
	out := make([]PipelineStatus, 0, len(list))
	for _, ps := range list {
		out = append(out, ps.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PipelineStatus reports one pipeline; false if RunPipeline never ran it.
func (s *Supervisor) PipelineStatus(name string) (PipelineStatus, bool) {
	s.pipes.mu.Lock()
	ps, ok := s.pipes.m[name]
	s.pipes.mu.Unlock()
	if !ok {
		return PipelineStatus{}, false
	}
	return ps.status(), true
}

// ForgetPipeline drops a pipeline's status (it was removed from the config).
func (s *Supervisor) ForgetPipeline(name string) {
	s.pipes.mu.Lock()
	delete(s.pipes.m, name)
	s.pipes.mu.Unlock()
}

// pipeMetrics are the per-pipeline, per-stage series.
type pipeMetrics struct {
	items, dropped, dead, retried *prometheus.CounterVec
}

func newPipeMetrics() *pipeMetrics {
	labels := []string{"pipeline", "stage", "symbol"}
	return &pipeMetrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_pipeline_items_total",
			Help: "Items into and out of each pipeline stage (direction in, out)."}, append(labels, "direction")),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_pipeline_dropped_total",
			Help: "Items a pipeline stage dropped (its function failed them; on_error drop, or retries exhausted)."}, labels),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_pipeline_dead_lettered_total",
			Help: "Items a pipeline stage sent to the dead-letter sink."}, labels),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_pipeline_retries_total",
			Help: "Retries of items a pipeline stage's function failed (on_error retry)."}, labels),
	}
}

func (pm *pipeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{pm.items, pm.dropped, pm.dead, pm.retried}
}

// pipeline creates (at 0) and returns a stage's series.
func (m *metrics) pipeline(pl, stage, ref string) (in, out, dropped, dead, retried prometheus.Counter) {
	pm := m.pipe
	return pm.items.WithLabelValues(pl, stage, ref, "in"), pm.items.WithLabelValues(pl, stage, ref, "out"),
		pm.dropped.WithLabelValues(pl, stage, ref), pm.dead.WithLabelValues(pl, stage, ref), pm.retried.WithLabelValues(pl, stage, ref)
}
