package host

// What the host shows and serves: plugin statuses, logs and symbols,
// calls, events and metrics.

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugvisor/plugvisor/supervisor"
)

// Statuses returns the status of every plugin, by name, including those
// whose first build or fetch failed (state failed, no generation).
func (h *Host) Statuses() []supervisor.Status {
	h.mu.Lock()
	ws := make([]*worker, 0, len(h.workers))
	for _, n := range slices.Sorted(maps.Keys(h.workers)) {
		ws = append(ws, h.workers[n])
	}
	h.mu.Unlock()
	out := make([]supervisor.Status, 0, len(ws))
	seen := map[string]bool{}
	for _, w := range ws {
		out = append(out, h.statusOf(w))
		seen[w.name] = true
	}
	for _, p := range h.sup.Plugins() { // embedded use: plugins added to the supervisor directly
		if !seen[p.Name()] {
			out = append(out, p.Status())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Status returns one plugin's status.
func (h *Host) Status(name string) (supervisor.Status, error) {
	if w := h.worker(name); w != nil {
		return h.statusOf(w), nil
	}
	p, err := h.sup.Plugin(name)
	if err != nil {
		return supervisor.Status{}, err
	}
	return p.Status(), nil
}

func (h *Host) statusOf(w *worker) supervisor.Status {
	if w.p == nil { // registered while the supervisor closed
		return supervisor.Status{Name: w.name, Driver: w.cfg.Driver, Kind: string(w.cfg.Resolved.Kind), State: supervisor.StateStopped}
	}
	return w.p.Status()
}

// Logs returns up to n of the plugin's last output lines.
func (h *Host) Logs(name string, n int) ([]supervisor.LogLine, error) {
	p, err := h.sup.Plugin(name)
	if err != nil {
		if w := h.worker(name); w != nil {
			return []supervisor.LogLine{}, nil
		}
		return nil, err
	}
	return p.Logs(n), nil
}

// Symbol is one symbol a running plugin offers, with the JSON Schemas it
// announced (absent when it announced none): In and Out for a function,
// Item for a source or a sink.
type Symbol struct {
	Plugin string          `json:"plugin"`
	Kind   string          `json:"kind"` // source, sink or function
	Name   string          `json:"name"`
	In     json.RawMessage `json:"in,omitempty"`
	Out    json.RawMessage `json:"out,omitempty"`
	Item   json.RawMessage `json:"item,omitempty"`
}

// Symbols lists the symbols of every plugin, by plugin, kind and name.
func (h *Host) Symbols() []Symbol {
	var out []Symbol
	for _, p := range h.sup.Plugins() {
		st := p.Status()
		sym := func(kind, name string) Symbol {
			ss := st.Symbols.Schemas[name]
			return Symbol{Plugin: p.Name(), Kind: kind, Name: name, In: ss.In, Out: ss.Out, Item: ss.Item}
		}
		for _, s := range st.Symbols.Sources {
			out = append(out, sym("source", s))
		}
		for _, s := range st.Symbols.Sinks {
			out = append(out, sym("sink", s))
		}
		for _, s := range st.Symbols.Functions {
			out = append(out, sym("function", s))
		}
	}
	if out == nil {
		out = []Symbol{}
	}
	return out
}

// Call calls function fn of plugin with JSON input.
func (h *Host) Call(ctx context.Context, plugin, fn string, input []byte) ([]byte, error) {
	p, err := h.Plugin(plugin)
	if err != nil {
		return nil, err
	}
	return p.Call(ctx, fn, input)
}

// Events subscribes to lifecycle events (see supervisor.Subscribe).
func (h *Host) Events(buf int) *supervisor.Subscriber { return h.sup.Subscribe(buf) }

// Gatherer serves the metrics: the supervisor's own registry, or the
// Registerer given in Options when it can gather.
func (h *Host) Gatherer() prometheus.Gatherer {
	if h.opts.Registerer == nil {
		return h.sup.Registry()
	}
	if g, ok := h.opts.Registerer.(prometheus.Gatherer); ok {
		return g
	}
	return prometheus.DefaultGatherer
}
