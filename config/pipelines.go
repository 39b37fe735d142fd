package config

// [[pipeline]] tables: each pipeline's keys, and its plugin.symbol references
// checked against the configured plugins.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

func (p *parser) pipelines(path []string, v any, cfg *Config) {
	var elems []map[string]any
	switch a := v.(type) {
	case []map[string]any:
		elems = a
	case []any:
		for i, e := range a {
			m, ok := e.(map[string]any)
			if !ok {
				p.errorf(child(path, index(i)), "want a table, got %s — write each pipeline as [[pipeline]]", tomlType(e))
				return
			}
			elems = append(elems, m)
		}
	default:
		p.errorf(path, "want [[pipeline]] tables, got %s", tomlType(v))
		return
	}
	seen := map[string]bool{}
	for i, t := range elems {
		ep := child(path, index(i))
		var pl Pipeline
		n := len(p.errs)
		for _, k := range slices.Sorted(maps.Keys(t)) {
			kp, v := child(ep, k), t[k]
			switch k {
			case "name":
				if s, ok := p.str(kp, v); ok {
					if err := ValidName(s); err != nil {
						p.errorf(kp, "%s", strings.Replace(err.Error(), "plugin name", "pipeline name", 1))
					} else if seen[s] {
						p.errorf(kp, "a pipeline named %q is already defined; names must be unique", s)
					}
					seen[s] = true
					pl.Name = s
				}
			case "source", "sink":
				if s, ok := p.str(kp, v); ok && p.ref(kp, s, cfg) {
					if k == "source" {
						pl.Source = s
					} else {
						pl.Sink = s
					}
				}
			case "functions":
				if l, ok := p.strList(kp, v); ok {
					for j, s := range l {
						p.ref(child(kp, index(j)), s, cfg)
					}
					pl.Functions = l
				}
			case "on_error":
				if s, ok := p.str(kp, v); ok {
					switch s {
					case "drop", "retry", "dead_letter":
						pl.OnError = s
					default:
						p.errorf(kp, "%q is not an error policy — write \"drop\" (the default), \"retry\" or \"dead_letter\"", s)
					}
				}
			case "dead_letter":
				if s, ok := p.str(kp, v); ok && p.ref(kp, s, cfg) {
					pl.DeadLetter = s
				}
			case "retries":
				p.integer(kp, v, &pl.Retries, 1, 100, "retries")
			default:
				p.unknown(kp, pipelineKeys)
			}
		}
		if _, ok := t["name"]; !ok {
			p.errorf(ep, "name is missing — every [[pipeline]] needs a name")
		}
		if _, ok := t["source"]; !ok {
			p.errorf(ep, "source is missing — write source = \"plugin.symbol\"")
		}
		if pl.OnError == "dead_letter" && pl.DeadLetter == "" && len(p.errs) == n {
			p.errorf(ep, "on_error = \"dead_letter\" needs dead_letter = \"plugin.sink\" naming the sink that receives the failed items")
		}
		if pl.DeadLetter != "" && (pl.OnError == "" || pl.OnError == "drop") && len(p.errs) == n {
			p.errorf(ep, "dead_letter is set but on_error drops failed items — set on_error = \"dead_letter\" (or \"retry\", which dead-letters what still fails)")
		}
		if pl.Retries != 0 && pl.OnError != "retry" && len(p.errs) == n {
			p.errorf(ep, "retries only applies with on_error = \"retry\"")
		}
		if _, ok := t["sink"]; !ok && len(pl.Functions) == 0 && len(p.errs) == n {
			p.errorf(ep, "a pipeline needs a sink or at least one function — add sink = \"plugin.symbol\"")
		}
		cfg.Pipelines = append(cfg.Pipelines, pl)
	}
}

// ref checks a "plugin.symbol" reference; the plugin must be configured.
func (p *parser) ref(path []string, s string, cfg *Config) bool {
	plugin, symbol, ok := strings.Cut(s, ".")
	if !ok || !nameRe.MatchString(plugin) || !symbolRe.MatchString(symbol) {
		p.errorf(path, "%q is not a symbol reference — write \"plugin.symbol\", e.g. \"counter.ticks\"", s)
		return false
	}
	if _, ok := cfg.Plugins[plugin]; !ok {
		known := "none is configured"
		if len(cfg.Plugins) > 0 {
			known = "configured: " + strings.Join(slices.Sorted(maps.Keys(cfg.Plugins)), ", ")
		}
		if near := closest(plugin, slices.Sorted(maps.Keys(cfg.Plugins))); near != "" {
			known = fmt.Sprintf("did you mean %q? %s", near, known)
		}
		p.errorf(path, "%q refers to plugin %q, which is not configured (%s) — add [plugins.%s] or fix the name", s, plugin, known, plugin)
		return false
	}
	return true
}
