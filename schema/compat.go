package schema

import (
	"fmt"
	"sort"
	"strings"
)

// Compatible lists why a value described by from (the producer: a source's
// item, a function's output, a caller's input) may not be read as to (the
// consumer). No problems means it fits. The rules follow how JSON decodes
// into Go and Python values:
//
//   - an unknown side (nil, or type any) fits;
//   - equal types fit, and an integer fits a number (not the reverse);
//   - arrays fit when their items fit, maps when their values fit;
//   - objects fit when every field the consumer requires is one the producer
//     has, and every field both have fits; fields only the producer has are
//     ignored by the consumer; fields only the consumer has and does not
//     require (optional, e.g. added in a new version) are fine.
func Compatible(from, to *Schema) []string {
	var out []string
	compat(from, to, "", &out)
	return out
}

func compat(from, to *Schema, path string, out *[]string) {
	if from == nil || to == nil || from.Type == Any || to.Type == Any {
		return
	}
	if from.Type != to.Type {
		if from.Type == Integer && to.Type == Number {
			return
		}
		*out = append(*out, fmt.Sprintf("%s: %s does not fit %s", where(path), from, to))
		return
	}
	switch from.Type {
	case Array:
		compat(from.Items, to.Items, path+"[]", out)
	case Object:
		compatObject(from, to, path, out)
	}
}

func compatObject(from, to *Schema, path string, out *[]string) {
	for _, name := range sortedNames(to.Properties) {
		ts := to.Properties[name]
		fs, ok := from.Properties[name]
		switch {
		case ok:
			compat(fs, ts, join(path, name), out)
		case from.AdditionalProperties != nil:
			compat(from.AdditionalProperties, ts, join(path, name), out)
		case to.required(name) && len(from.Properties) > 0:
			*out = append(*out, fmt.Sprintf("%s: required field missing", where(join(path, name))))
		}
	}
	for _, name := range sortedNames(from.Properties) {
		if _, ok := to.Properties[name]; !ok && to.AdditionalProperties != nil {
			compat(from.Properties[name], to.AdditionalProperties, join(path, name), out)
		}
	}
	if from.AdditionalProperties != nil && to.AdditionalProperties != nil {
		compat(from.AdditionalProperties, to.AdditionalProperties, join(path, "*"), out)
	}
}

func where(path string) string {
	if path == "" {
		return "value"
	}
	return "field " + path
}

func sortedNames(m map[string]*Schema) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Diff lists what changed from old to new in words ("field note added
// (optional)", "field n: integer → string", "field at removed"), for swap
// reports. It says nothing about compatibility; Compatible does.
func Diff(old, new *Schema) []string {
	var out []string
	diff(old, new, "", &out)
	return out
}

func diff(old, new *Schema, path string, out *[]string) {
	switch {
	case old == nil && new == nil:
		return
	case old == nil || new == nil || old.Type != new.Type:
		*out = append(*out, fmt.Sprintf("%s: %s → %s", where(path), old, new))
		return
	}
	switch old.Type {
	case Array:
		diff(old.Items, new.Items, path+"[]", out)
	case Object:
		if (old.AdditionalProperties == nil) != (new.AdditionalProperties == nil) {
			*out = append(*out, fmt.Sprintf("%s: %s → %s", where(path), old, new))
			return
		}
		diff(old.AdditionalProperties, new.AdditionalProperties, join(path, "*"), out)
		for _, n := range sortedNames(old.Properties) {
			if _, ok := new.Properties[n]; !ok {
				*out = append(*out, fmt.Sprintf("%s removed", where(join(path, n))))
			}
		}
		for _, n := range sortedNames(new.Properties) {
			p := join(path, n)
			os, ok := old.Properties[n]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s added (%s)", where(p), optional(new, n)))
				continue
			}
			if old.required(n) != new.required(n) {
				*out = append(*out, fmt.Sprintf("%s: %s → %s", where(p), optional(old, n), optional(new, n)))
			}
			diff(os, new.Properties[n], p, out)
		}
	}
}

func optional(s *Schema, name string) string {
	if s.required(name) {
		return "required"
	}
	return "optional"
}

// Stage is one step of a pipeline as the fit check sees it: what it takes
// (a sink's item, a function's input) and what it emits (a source's item, a
// function's output). Nil means not announced.
type Stage struct {
	Ref     string // plugin.symbol
	Kind    string // source, function or sink
	In, Out *Schema
}

// FitError says which two stages of a pipeline do not fit and why.
type FitError struct {
	From, To Stage
	Problems []string
}

func (e *FitError) Error() string {
	return fmt.Sprintf("%s %s emits %s but %s %s takes %s (%s)",
		e.From.Kind, e.From.Ref, e.From.Out, e.To.Kind, e.To.Ref, e.To.In, strings.Join(e.Problems, "; "))
}

// Fit checks that each stage's output fits the next stage's input
// (source item → function input → … → sink item); nil when every
// announced pair fits. Pairs where a side is not announced are skipped.
func Fit(stages []Stage) error {
	for i := 0; i+1 < len(stages); i++ {
		if p := Compatible(stages[i].Out, stages[i+1].In); len(p) > 0 {
			return &FitError{From: stages[i], To: stages[i+1], Problems: p}
		}
	}
	return nil
}
