package main

import (
	"sort"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
	"github.com/plugvisor/plugvisor/supervisor"
)

// checkPipelineSymbols checks the pipelines' symbols of the plugins whose
// symbols are known without starting them: the builtins. Other plugins'
// symbols are known once they run; the daemon checks those.
func checkPipelineSymbols(cfg *config.Config) error {
	known := map[string]supervisor.Symbols{}
	for name, p := range cfg.Plugins {
		if p.Resolved.Builtin == "" {
			continue
		}
		bp, ok := builtin.Get(p.Resolved.Builtin)
		if !ok {
			continue
		}
		known[name] = supervisor.Symbols{Sources: sortedNames(bp.Sources), Sinks: sortedNames(bp.Sinks), Functions: sortedNames(bp.Functions)}
	}
	return host.CheckPipelines(cfg.Pipelines, known)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
