package schema

import (
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	rawMessage    = reflect.TypeFor[json.RawMessage]()
	timeType      = reflect.TypeFor[time.Time]() // a json.Marshaler that writes a string
)

// Of derives the schema of the JSON encoding/json writes for a value of
// type T. See For.
func Of[T any]() *Schema { return For(reflect.TypeFor[T]()) }

// For derives the schema of the JSON encoding/json writes for a value of
// type t, following its rules: json tags name fields ("-" hides one),
// omitempty makes a field optional, embedded structs are flattened, a
// pointer is its element, []byte is a base64 string. Types that marshal
// themselves (json.Marshaler, json.RawMessage, interfaces) are any; a
// TextMarshaler is a string. A recursive type is any where it recurs.
// t nil is any.
func For(t reflect.Type) *Schema {
	return forType(t, map[reflect.Type]bool{})
}

func forType(t reflect.Type, seen map[reflect.Type]bool) *Schema {
	if t == nil {
		return &Schema{}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return &Schema{Type: String}
	}
	if t == rawMessage || t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		return &Schema{}
	}
	if t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return &Schema{Type: String}
	}
	switch t.Kind() {
	case reflect.Bool:
		return &Schema{Type: Boolean}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return &Schema{Type: Integer}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: Number}
	case reflect.String:
		return &Schema{Type: String}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return &Schema{Type: String} // base64
		}
		return &Schema{Type: Array, Items: forType(t.Elem(), seen)}
	case reflect.Map:
		return &Schema{Type: Object, AdditionalProperties: forType(t.Elem(), seen)}
	case reflect.Struct:
		if seen[t] {
			return &Schema{}
		}
		seen[t] = true
		defer delete(seen, t)
		s := &Schema{Type: Object, Properties: map[string]*Schema{}}
		fields(t, seen, s)
		sort.Strings(s.Required)
		s.Required = slices.Compact(s.Required)
		return s
	}
	return &Schema{} // interfaces, and what encoding/json refuses (chan, func, complex)
}

// fields adds t's JSON fields to s, embedded structs flattened (the outer
// field wins a name clash, as in encoding/json).
func fields(t reflect.Type, seen map[reflect.Type]bool, s *Schema) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			if !seen[ft] {
				seen[ft] = true
				inner := &Schema{Properties: map[string]*Schema{}}
				fields(ft, seen, inner)
				delete(seen, ft)
				for n, p := range inner.Properties {
					if _, dup := s.Properties[n]; !dup {
						s.Properties[n] = p
						if inner.required(n) {
							s.Required = append(s.Required, n)
						}
					}
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		var ps *Schema
		if hasOpt(opts, "string") {
			ps = &Schema{Type: String}
		} else {
			ps = forType(f.Type, seen)
		}
		s.Properties[name] = ps
		if !hasOpt(opts, "omitempty") && !hasOpt(opts, "omitzero") {
			s.Required = append(s.Required, name)
		}
	}
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}
