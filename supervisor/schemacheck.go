package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/plugvisor/plugvisor/schema"
	"github.com/plugvisor/plugvisor/transport"
)

// ErrSchemaIncompatible is wrapped by a swap refused because the new
// version's schema for a symbol in use no longer fits its users, and by a
// pipeline whose stages do not fit.
var ErrSchemaIncompatible = errors.New("schema incompatible")

// Manifest waits (bounded by ctx) until a generation serves and returns
// what it announced: its symbols and their schemas.
func (p *Plugin) Manifest(ctx context.Context) (transport.Manifest, error) {
	g, err := p.acquire(ctx, "")
	if err != nil {
		return transport.Manifest{}, err
	}
	defer g.leave()
	return g.man, nil
}

// part is one announced schema of a symbol and which way its values flow:
// produced by the plugin (a source's item, a function's output) or
// consumed by it (a sink's item, a function's input).
type part struct {
	label    string
	old, new []byte
	produced bool
}

// schemaChanges compares the schemas of the symbols in use on old and ng.
// It returns every change, in words, and an error wrapping
// ErrSchemaIncompatible when one no longer fits its users: a value the
// host sends must still be read by ng, a value ng emits must still be read
// by the host's users.
func (p *Plugin) schemaChanges(old, ng *generation) ([]string, error) {
	var parts []part
	p.mu.Lock()
	for fn := range p.fns {
		o, n := old.man.Schemas[fn], ng.man.Schemas[fn]
		parts = append(parts,
			part{"function " + fn + " input", o.In, n.In, false},
			part{"function " + fn + " output", o.Out, n.Out, true})
	}
	for _, inst := range p.instances {
		o, n := old.man.Schemas[inst.symbol], ng.man.Schemas[inst.symbol]
		parts = append(parts, part{inst.kind + " " + inst.symbol + " item", o.Item, n.Item, inst.kind == transport.KindSource})
	}
	p.mu.Unlock()
	sort.Slice(parts, func(i, j int) bool { return parts[i].label < parts[j].label })
	var changes, problems []string
	seen := map[string]bool{}
	for _, pt := range parts {
		if seen[pt.label] {
			continue // two instances of one symbol
		}
		seen[pt.label] = true
		os, err1 := schema.Parse(pt.old)
		ns, err2 := schema.Parse(pt.new)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s: %w", pt.label, err) // validated with the manifest: cannot happen
		}
		if os == nil || ns == nil {
			continue // not announced on one side: nothing to compare
		}
		for _, d := range schema.Diff(os, ns) {
			changes = append(changes, pt.label+": "+d)
		}
		from, to := os, ns // the host's users send old values to the new consumer
		if pt.produced {
			from, to = ns, os // the new producer's values go to users of the old type
		}
		for _, pr := range schema.Compatible(from, to) {
			problems = append(problems, fmt.Sprintf("%s: %s (was %s, now %s)", pt.label, pr, os, ns))
		}
	}
	if len(problems) > 0 {
		return changes, fmt.Errorf("%w: %s %s changes symbols in use: %s (force the reload to swap anyway)",
			ErrSchemaIncompatible, ng.man.Name, ng.man.Version, strings.Join(problems, "; "))
	}
	return changes, nil
}

// PipelineStages turns pl into the stages the fit check compares, with the
// schemas the manifests announce; man returns a plugin's manifest, ok
// false when unknown (its stages are then not announced).
func PipelineStages(pl Pipeline, man func(plugin string) (transport.Manifest, bool)) []schema.Stage {
	get := func(r Ref) transport.SymbolSchema {
		m, ok := man(r.Plugin)
		if !ok {
			return transport.SymbolSchema{}
		}
		return m.Schemas[r.Symbol]
	}
	parse := func(raw []byte) *schema.Schema {
		s, _ := schema.Parse(raw) // validated with the manifest
		return s
	}
	stages := []schema.Stage{{Ref: pl.Source.String(), Kind: transport.KindSource, Out: parse(get(pl.Source).Item)}}
	for _, f := range pl.Functions {
		ss := get(f)
		stages = append(stages, schema.Stage{Ref: f.String(), Kind: transport.KindFunction, In: parse(ss.In), Out: parse(ss.Out)})
	}
	if pl.Sink.Plugin != "" {
		stages = append(stages, schema.Stage{Ref: pl.Sink.String(), Kind: transport.KindSink, In: parse(get(pl.Sink).Item)})
	}
	return stages
}

// CheckPipeline refuses a pipeline whose stages do not fit (source item →
// function input → … → sink item), naming the stages and both types. It
// waits (bounded by ctx) for each plugin involved to serve, to learn its
// schemas; stages that announce none are not checked.
func (s *Supervisor) CheckPipeline(ctx context.Context, pl Pipeline) error {
	mans := map[string]transport.Manifest{}
	refs := append([]Ref{pl.Source}, pl.Functions...)
	if pl.Sink.Plugin != "" {
		refs = append(refs, pl.Sink)
	}
	for _, r := range refs {
		if _, ok := mans[r.Plugin]; ok {
			continue
		}
		p, err := s.Plugin(r.Plugin)
		if err != nil {
			return err
		}
		m, err := p.Manifest(ctx)
		if err != nil {
			return err
		}
		mans[r.Plugin] = m
	}
	return FitPipeline(pl, func(n string) (transport.Manifest, bool) { m, ok := mans[n]; return m, ok })
}

// FitPipeline is the fit check of CheckPipeline on manifests at hand.
func FitPipeline(pl Pipeline, man func(plugin string) (transport.Manifest, bool)) error {
	var fe *schema.FitError
	if errors.As(schema.Fit(PipelineStages(pl, man)), &fe) {
		return &pipelineFitError{pipeline: pl.Name, fit: fe}
	}
	return nil
}

// pipelineFitError is ErrSchemaIncompatible for one pipeline; it unwraps
// to the *schema.FitError naming the stages.
type pipelineFitError struct {
	pipeline string
	fit      *schema.FitError
}

func (e *pipelineFitError) Error() string {
	return fmt.Sprintf("pipeline %s: %v: %v", e.pipeline, ErrSchemaIncompatible, e.fit)
}

func (e *pipelineFitError) Is(target error) bool { return target == ErrSchemaIncompatible }
func (e *pipelineFitError) Unwrap() error        { return e.fit }
