package supervisor

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the supervisor's Prometheus series. Hot-path counters are
// cached per label set so a call costs an atomic add, not a map lookup.
type metrics struct {
	state      *prometheus.GaugeVec
	generation *prometheus.GaugeVec
	restarts   *prometheus.CounterVec
	swaps      *prometheus.CounterVec
	builds     *prometheus.CounterVec
	buildSec   *prometheus.HistogramVec
	swapSec    *prometheus.HistogramVec
	pauseSec   *prometheus.HistogramVec
	calls      *prometheus.CounterVec
	items      *prometheus.CounterVec
	queue      *prometheus.GaugeVec
	lost       *prometheus.CounterVec
	pipe       *pipeMetrics

	cache sync.Map // label key → prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "plugvisor_plugin_state",
			Help: "1 for the state a plugin is in."}, []string{"plugin", "state"}),
		generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "plugvisor_plugin_generation",
			Help: "Generation serving each plugin."}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_plugin_restarts_total",
			Help: "Restarts after a crash."}, []string{"plugin"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_swaps_total",
			Help: "Swaps by outcome (finished, failed)."}, []string{"plugin", "outcome"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_builds_total",
			Help: "Builds by outcome (succeeded, failed)."}, []string{"plugin", "outcome"}),
		buildSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "plugvisor_build_seconds",
			Help: "go build duration.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}, []string{"plugin"}),
		swapSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "plugvisor_swap_seconds",
			Help: "Whole swap duration.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"plugin"}),
		pauseSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "plugvisor_swap_pause_seconds",
			Help: "Time handles were paused during a swap.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"plugin"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_calls_total",
			Help: "Function calls by outcome (ok, error, crashed)."}, []string{"plugin", "function", "outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_messages_total",
			Help: "Source items received and sink items acknowledged, per symbol."}, []string{"plugin", "symbol", "direction"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "plugvisor_queue_depth",
			Help: "Sink items written but not yet acknowledged."}, []string{"plugin", "symbol"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_lost_total",
			Help: "Source items that never reached the host (gaps in a stream's sequence numbers). Must stay 0."}, []string{"plugin"}),
		pipe: newPipeMetrics(),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.state, m.generation, m.restarts, m.swaps, m.builds, m.buildSec,
			m.swapSec, m.pauseSec, m.calls, m.items, m.queue, m.lost} {
			_ = reg.Register(c)
		}
		for _, c := range m.pipe.collectors() {
			_ = reg.Register(c)
		}
	}
	return m
}

// counterKey names a cached series; a struct of strings, so looking one
// up allocates nothing on the per-call and per-item paths.
type counterKey struct {
	vec     *prometheus.CounterVec
	a, b, c string
}

func (m *metrics) counter(vec *prometheus.CounterVec, a, b, c string) prometheus.Counter {
	k := counterKey{vec, a, b, c}
	if v, ok := m.cache.Load(k); ok {
		return v.(prometheus.Counter)
	}
	v := vec.WithLabelValues(a, b, c)
	m.cache.Store(k, v)
	return v
}

func (m *metrics) call(plugin, fn string, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		var ce *CallError
		if !asCallError(err, &ce) {
			outcome = "crashed"
		}
	}
	m.counter(m.calls, plugin, fn, outcome).Inc()
}

func (m *metrics) item(plugin, symbol, dir string) {
	if m == nil {
		return
	}
	m.counter(m.items, plugin, symbol, dir).Inc()
}

func (m *metrics) setState(plugin string, state State) {
	if m == nil {
		return
	}
	for _, s := range []State{StateStarting, StateRunning, StateBackoff, StateFailed, StateStopped, StateWaiting} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.state.WithLabelValues(plugin, string(s)).Set(v)
	}
}

func (m *metrics) swap(plugin string, r *Report, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.swaps.WithLabelValues(plugin, "failed").Inc()
		return
	}
	m.swaps.WithLabelValues(plugin, "finished").Inc()
	m.swapSec.WithLabelValues(plugin).Observe(r.SwapMS / 1000)
	m.pauseSec.WithLabelValues(plugin).Observe(r.PauseMS / 1000)
}

// Build records a build's outcome (the driver layer calls it).
func (m *metrics) build(plugin string, sec float64, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.builds.WithLabelValues(plugin, "failed").Inc()
		return
	}
	m.builds.WithLabelValues(plugin, "succeeded").Inc()
	m.buildSec.WithLabelValues(plugin).Observe(sec)
}

func (m *metrics) addLost(plugin string, n uint64) {
	if m != nil {
		m.lost.WithLabelValues(plugin).Add(float64(n))
	}
}

// acked records n sink items acknowledged and the items still pending.
func (m *metrics) acked(plugin, symbol string, n, pending uint64) {
	if m == nil {
		return
	}
	m.counter(m.items, plugin, symbol, "in").Add(float64(n))
	m.queue.WithLabelValues(plugin, symbol).Set(float64(pending))
}

// batch records the outcomes of a CallBatch: one add per outcome.
func (m *metrics) batch(plugin, fn string, res []Result, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.call(plugin, fn, err)
		return
	}
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
		}
	}
	if ok := len(res) - failed; ok > 0 {
		m.counter(m.calls, plugin, fn, "ok").Add(float64(ok))
	}
	if failed > 0 {
		m.counter(m.calls, plugin, fn, "error").Add(float64(failed))
	}
}

// initPlugin creates a plugin's counter series at 0, so an alert on
// increase(...) has a series to watch before the first event.
func (m *metrics) initPlugin(plugin string) {
	if m == nil {
		return
	}
	m.lost.WithLabelValues(plugin)
	m.restarts.WithLabelValues(plugin)
	for _, o := range []string{"finished", "failed"} {
		m.swaps.WithLabelValues(plugin, o)
	}
	for _, o := range []string{"succeeded", "failed"} {
		m.builds.WithLabelValues(plugin, o)
	}
}
