package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A plugin's output reaches the daemon's log through a per-plugin token
// bucket in bytes and in lines (one second's worth of burst), so a plugin
// printing without pause cannot fill the disk or take the daemon's CPU.
// What is dropped is counted in a note in the log and in metrics; the
// ring behind `logs` still gets every (cut) line.

type outputMetrics struct {
	bytes *prometheus.CounterVec
	lines *prometheus.CounterVec
}

func newOutputMetrics(reg prometheus.Registerer) *outputMetrics {
	m := &outputMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_plugin_output_dropped_bytes_total",
			Help: "Bytes of plugin output kept out of the daemon's log by the output limit (log_bytes_per_sec, log_line_max)."}, []string{"plugin"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plugvisor_plugin_output_dropped_lines_total",
			Help: "Lines of plugin output kept out of the daemon's log by the output limit (log_lines_per_sec, log_bytes_per_sec)."}, []string{"plugin"}),
	}
	m.bytes, m.lines = register(reg, m.bytes), register(reg, m.lines)
	return m
}

// register registers c, or returns the same collector another supervisor
// on this registry registered first.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return old
			}
		}
	}
	return c
}

// outputLimiter is one plugin's bucket.
type outputLimiter struct {
	mu                   sync.Mutex
	byteRate, lineRate   float64
	bytes, lines         float64 // tokens left
	last                 time.Time
	dropBytes, dropLines int64 // since the last note
	lastNote             time.Time
}

func newOutputLimiter(o Options) *outputLimiter {
	return &outputLimiter{byteRate: float64(o.LogBytesPerSec), lineRate: float64(o.LogLinesPerSec),
		bytes: float64(o.LogBytesPerSec), lines: float64(o.LogLinesPerSec)}
}

// admit decides whether a line of n bytes goes to the log. When lines
// were dropped, it also returns their count for a note: when a line passes
// again, or at most once a second while dropping goes on.
func (l *outputLimiter) admit(n int, now time.Time) (ok bool, dropLines, dropBytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		el := now.Sub(l.last).Seconds()
		l.bytes = min(l.bytes+el*l.byteRate, l.byteRate)
		l.lines = min(l.lines+el*l.lineRate, l.lineRate)
	}
	l.last = now
	// A line longer than the whole bucket passes when the bucket is full.
	if l.lines >= 1 && l.bytes >= min(float64(n), l.byteRate) {
		l.bytes -= float64(n)
		l.lines--
		ok = true
	} else {
		l.dropLines++
		l.dropBytes += int64(n)
	}
	if l.dropLines > 0 && (ok || now.Sub(l.lastNote) >= time.Second) {
		dropLines, dropBytes = l.dropLines, l.dropBytes
		l.dropLines, l.dropBytes, l.lastNote = 0, 0, now
	}
	return ok, dropLines, dropBytes
}

// outputOf is where generation gen's output lines go: cut at LogLineMax,
// into the ring, and through the limiter into the daemon's log.
func (p *Plugin) outputOf(gen int) lineSink {
	maxLine := p.sup.opts.LogLineMax
	return func(stream, line string) {
		if len(line) > maxLine {
			p.sup.dropped.bytes.WithLabelValues(p.name).Add(float64(len(line) - maxLine))
			line = line[:maxLine] + "…"
		}
		l := LogLine{At: time.Now(), Generation: gen, Stream: stream, Line: line}
		p.logs.add(l)
		ok, dl, db := p.out.admit(len(line), time.Now())
		if !ok {
			p.sup.dropped.lines.WithLabelValues(p.name).Inc()
			p.sup.dropped.bytes.WithLabelValues(p.name).Add(float64(len(line)))
		}
		if dl > 0 {
			p.log.Warn().Int("generation", gen).Int64("dropped_lines", dl).Int64("dropped_bytes", db).
				Msg("plugin output over the limit (log_bytes_per_sec, log_lines_per_sec): lines dropped from this log; `plugvisor logs` has the latest")
			p.follow(LogLine{At: l.At, Generation: gen, Stream: "plugvisor",
				Line: fmt.Sprintf("output over the limit: %d lines (%d bytes) not shown; plugvisor logs has the latest", dl, db)})
		}
		if ok {
			p.follow(l)
			p.logLine(l)
		}
	}
}
