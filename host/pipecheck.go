package host

import (
	"errors"
	"fmt"
	"strings"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// CheckPipelines checks every symbol a pipeline names against the symbols
// its plugin is known to offer (known: plugin → symbols; a plugin missing
// from known is not checked — its manifest is not known yet). A missing
// symbol, or one of the wrong kind, is an error naming the pipeline, with
// the nearest name of the right kind ("did you mean") and the full list.
func CheckPipelines(pls []config.Pipeline, known map[string]supervisor.Symbols) error {
	var errs []error
	for i, pl := range pls {
		check := func(key, ref, kind string) {
			plugin, sym := config.SplitRef(ref)
			syms, ok := known[plugin]
			if !ok {
				return
			}
			want := map[string][]string{"source": syms.Sources, "sink": syms.Sinks, "function": syms.Functions}
			if contains(want[kind], sym) {
				return
			}
			msg := fmt.Sprintf("pipeline %q (pipeline[%d].%s): plugin %s has no %s %q", pl.Name, i, key, plugin, kind, sym)
			for _, k := range []string{"source", "sink", "function"} {
				if k != kind && contains(want[k], sym) {
					msg += fmt.Sprintf(" (%s is a %s, and %s needs a %s)", ref, k, key, kind)
				}
			}
			if near := nearest(sym, want[kind]); near != "" {
				msg += fmt.Sprintf(" — did you mean %q?", plugin+"."+near)
			}
			if len(want[kind]) == 0 {
				msg += fmt.Sprintf("; it offers no %ss", kind)
			} else {
				msg += fmt.Sprintf("; its %ss: %s", kind, strings.Join(want[kind], ", "))
			}
			errs = append(errs, errors.New(msg))
		}
		check("source", pl.Source, "source")
		for j, f := range pl.Functions {
			check(fmt.Sprintf("functions[%d]", j), f, "function")
		}
		if pl.Sink != "" {
			check("sink", pl.Sink, "sink")
		}
		if pl.DeadLetter != "" {
			check("dead_letter", pl.DeadLetter, "sink")
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest is the name in list closest to s by edit distance, if within
// a third of s's length (at least 2).
func nearest(s string, list []string) string {
	best, bestD := "", max(2, len(s)/3)+1
	for _, c := range list {
		if d := config.EditDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// ErrUnknownPipeline is returned for a pipeline name that is not running.
var ErrUnknownPipeline = errors.New("no such pipeline")

// knownSymbols are the symbols of the plugins serving now, except those
// in skip (about to change: their next version may offer others).
func (h *Host) knownSymbols(skip map[string]bool) map[string]supervisor.Symbols {
	out := map[string]supervisor.Symbols{}
	for _, p := range h.sup.Plugins() {
		st := p.Status()
		if skip[p.Name()] || st.Generation == 0 || st.Version == "" {
			continue
		}
		out[p.Name()] = st.Symbols
	}
	return out
}

// Pipelines reports the pipelines (GET /pipelines).
func (h *Host) Pipelines() []supervisor.PipelineStatus { return h.sup.Pipelines() }

// Pipeline reports one pipeline (GET /pipelines/{name}).
func (h *Host) Pipeline(name string) (supervisor.PipelineStatus, error) {
	if st, ok := h.sup.PipelineStatus(name); ok {
		return st, nil
	}
	var names []string
	for _, st := range h.sup.Pipelines() {
		names = append(names, st.Name)
	}
	return supervisor.PipelineStatus{}, fmt.Errorf("%w: no pipeline %q (pipelines: %v)", ErrUnknownPipeline, name, names)
}
