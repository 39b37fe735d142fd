// Package schema describes the JSON a plugin symbol takes or emits with a
// small subset of JSON Schema, derives it from Go types, and checks whether
// one side's values fit the other's: a pipeline stage into the next, a
// host's Go types against what a plugin announces, a new plugin version
// against the one it replaces. It is pure (standard library only), so the
// SDK, the transport and the supervisor can all use it.
package schema

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Types a Schema can have. "" (Any) accepts every value.
const (
	Any     = ""
	Null    = "null"
	Boolean = "boolean"
	Integer = "integer"
	Number  = "number"
	String  = "string"
	Array   = "array"
	Object  = "object"
)

// Schema is the subset of JSON Schema plugvisor derives and checks. A nil
// *Schema means "not announced": it fits everything and everything fits it.
type Schema struct {
	Type       string             `json:"type,omitempty"`
	Properties map[string]*Schema `json:"properties,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Items      *Schema            `json:"items,omitempty"`
	// AdditionalProperties is the schema of a map's values (a Go map, a
	// Python dict[str, T]).
	AdditionalProperties *Schema `json:"additionalProperties,omitempty"`
}

// Parse reads a JSON Schema. It is lenient in what it takes (a "type" list
// with "null" in it, a boolean additionalProperties, keywords it does not
// check) and strict about shape: empty input is nil (not announced).
func Parse(raw []byte) (*Schema, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("schema is not a JSON object: %w", err)
	}
	return fromMap(m, "")
}

func fromMap(m map[string]any, path string) (*Schema, error) {
	s := &Schema{}
	switch t := m["type"].(type) {
	case nil:
	case string:
		s.Type = t
	case []any: // ["integer", "null"]: a nullable integer
		var nonNull []string
		for _, e := range t {
			if str, ok := e.(string); ok && str != Null {
				nonNull = append(nonNull, str)
			}
		}
		if len(nonNull) == 1 {
			s.Type = nonNull[0]
		} else if len(nonNull) == 0 && len(t) > 0 {
			s.Type = Null
		}
	default:
		return nil, fmt.Errorf("schema%s: \"type\" must be a string or a list of strings", at(path))
	}
	switch s.Type {
	case Any, Null, Boolean, Integer, Number, String, Array, Object:
	default:
		return nil, fmt.Errorf("schema%s: unknown type %q (want null, boolean, integer, number, string, array or object)", at(path), s.Type)
	}
	if props, ok := m["properties"].(map[string]any); ok {
		s.Properties = map[string]*Schema{}
		for k, v := range props {
			pm, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schema%s: property %q is not a schema object", at(path), k)
			}
			ps, err := fromMap(pm, join(path, k))
			if err != nil {
				return nil, err
			}
			s.Properties[k] = ps
		}
	}
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if str, ok := r.(string); ok {
				s.Required = append(s.Required, str)
			}
		}
		sort.Strings(s.Required)
	}
	if items, ok := m["items"].(map[string]any); ok {
		is, err := fromMap(items, path+"[]")
		if err != nil {
			return nil, err
		}
		s.Items = is
	}
	if ap, ok := m["additionalProperties"].(map[string]any); ok {
		as, err := fromMap(ap, join(path, "*"))
		if err != nil {
			return nil, err
		}
		s.AdditionalProperties = as
	}
	return s, nil
}

// JSON encodes s; nil encodes as nothing (not announced).
func (s *Schema) JSON() json.RawMessage {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil { // only strings, maps and slices: cannot fail
		panic(fmt.Sprintf("schema: %v", err))
	}
	return b
}

func (s *Schema) required(name string) bool {
	for _, r := range s.Required {
		if r == name {
			return true
		}
	}
	return false
}

// String describes s compactly for messages: integer, array<string>,
// object{n: integer, note?: string}, map<number>, any; "?" marks an
// optional field.
func (s *Schema) String() string {
	if s == nil || s.Type == Any {
		return "any"
	}
	switch s.Type {
	case Array:
		return "array<" + s.Items.String() + ">"
	case Object:
		if len(s.Properties) == 0 {
			if s.AdditionalProperties != nil {
				return "map<" + s.AdditionalProperties.String() + ">"
			}
			return "object"
		}
		names := make([]string, 0, len(s.Properties))
		for n := range s.Properties {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			opt := "?"
			if s.required(n) {
				opt = ""
			}
			parts[i] = n + opt + ": " + s.Properties[n].String()
		}
		return "object{" + strings.Join(parts, ", ") + "}"
	}
	return s.Type
}

// Describe is String on a raw announced schema; "any" when none was
// announced, and the parse error's text when it does not parse.
func Describe(raw []byte) string {
	s, err := Parse(raw)
	if err != nil {
		return "invalid schema: " + err.Error()
	}
	return s.String()
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " at " + path
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
