package config

// Reading the decoded TOML values the schema walks: each reader checks the
// value's type (and what else it promises) and reports what is accepted.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

func child(path []string, k string) []string {
	return append(append(make([]string, 0, len(path)+1), path...), k)
}

// tomlType names a decoded value's TOML type for messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("%T", v)
}

func (p *parser) table(path []string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		p.errorf(path, "want a table, got %s", tomlType(v))
	}
	return t, ok
}

func (p *parser) str(path []string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(path, "want a string, got %s", tomlType(v))
	}
	return s, ok
}

func (p *parser) strList(path []string, v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "want an array of strings, got %s", tomlType(v))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(child(path, index(i)), "want a string, got %s", tomlType(e))
			return nil, false
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, true
	}
	return out, true
}

// envNames reads a list of environment variable names; an empty list is
// empty, not nil (it overrides a default).
func (p *parser) envNames(path []string, v any) ([]string, bool) {
	names, ok := p.strList(path, v)
	if !ok {
		return nil, false
	}
	for i, n := range names {
		if !envKeyRe.MatchString(n) {
			p.errorf(child(path, index(i)), "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", n)
			return nil, false
		}
	}
	if names == nil {
		names = []string{}
	}
	return names, true
}

func (p *parser) strMap(path []string, v any) (map[string]string, bool) {
	t, ok := p.table(path, v)
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(t))
	good := true
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp := child(path, k)
		if !envKeyRe.MatchString(k) {
			p.errorf(kp, "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", k)
			good = false
			continue
		}
		s, ok := t[k].(string)
		if !ok {
			p.errorf(kp, "want a string, got %s (quote it)", tomlType(t[k]))
			good = false
			continue
		}
		out[k] = s
	}
	return out, good
}

func (p *parser) duration(path []string, v any, dst *Duration, allowZero bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(path, "want a duration string such as \"100ms\", \"2s\" or \"1m30s\", got %s", tomlType(v))
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			p.errorf(path, "%q has no unit — write it like \"%sms\" or \"%ss\"", s, s, s)
		} else {
			p.errorf(path, "%q is not a duration — write it like \"100ms\", \"2s\" or \"1m30s\"", s)
		}
		return
	}
	if d < 0 || d == 0 && !allowZero {
		p.errorf(path, "%q: want a positive duration", s)
		return
	}
	dst.Duration = d
}

func (p *parser) integer(path []string, v any, dst *int, lo, hi int64, unit string) {
	if n, ok := p.intIn(path, v, lo, hi, unit); ok {
		*dst = int(n)
	}
}

// intIn reads a whole number from lo to hi, counted in unit.
func (p *parser) intIn(path []string, v any, lo, hi int64, unit string) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		p.errorf(path, "want an integer (%s), got %s", unit, tomlType(v))
		return 0, false
	}
	if n < lo || n > hi {
		p.errorf(path, "%d is out of range — want %d to %d %s", n, lo, hi, unit)
		return 0, false
	}
	return n, true
}
