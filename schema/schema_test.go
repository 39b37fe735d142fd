package schema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, s string) *Schema {
	t.Helper()
	sc, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return sc
}

func TestCompatible(t *testing.T) {
	tick := `{"type":"object","properties":{"n":{"type":"integer"},"at":{"type":"string"}},"required":["at","n"]}`
	cases := []struct {
		name, from, to string
		ok             bool
		want           string // in the problem text
	}{
		{"equal", tick, tick, true, ""},
		{"integer into number", `{"type":"integer"}`, `{"type":"number"}`, true, ""},
		{"number into integer", `{"type":"number"}`, `{"type":"integer"}`, false, "number does not fit integer"},
		{"string into integer", `{"type":"string"}`, `{"type":"integer"}`, false, "string does not fit integer"},
		{"unknown producer", ``, `{"type":"integer"}`, true, ""},
		{"any consumer", `{"type":"string"}`, `{}`, true, ""},
		{"consumer added optional field",
			tick, `{"type":"object","properties":{"n":{"type":"integer"},"at":{"type":"string"},"note":{"type":"string"}},"required":["at","n"]}`, true, ""},
		{"producer added field", `{"type":"object","properties":{"n":{"type":"integer"},"at":{"type":"string"},"x":{"type":"boolean"}},"required":["at","n","x"]}`, tick, true, ""},
		{"producer removed required field",
			`{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}`, tick, false, "field at: required field missing"},
		{"retyped field", `{"type":"object","properties":{"n":{"type":"string"},"at":{"type":"string"}},"required":["at","n"]}`, tick, false, "field n: string does not fit integer"},
		{"array items", `{"type":"array","items":{"type":"string"}}`, `{"type":"array","items":{"type":"integer"}}`, false, "field []: string"},
		{"map values into object", `{"type":"object","additionalProperties":{"type":"integer"}}`,
			`{"type":"object","properties":{"n":{"type":"string"}}}`, false, "field n: integer does not fit string"},
		{"object into map", tick, `{"type":"object","additionalProperties":{"type":"integer"}}`, false, "field at: string does not fit integer"},
		{"null into object", `{"type":"null"}`, tick, false, "null does not fit"},
		{"nullable list", `{"type":["integer","null"]}`, `{"type":"integer"}`, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Compatible(mustParse(t, c.from), mustParse(t, c.to))
			if c.ok != (len(p) == 0) {
				t.Fatalf("Compatible = %q, want ok=%v", p, c.ok)
			}
			if c.want != "" && !strings.Contains(strings.Join(p, "; "), c.want) {
				t.Fatalf("problems %q do not mention %q", p, c.want)
			}
		})
	}
}

type inner struct {
	City string `json:"city"`
}

type sample struct {
	inner
	N       int64            `json:"n"`
	Note    string           `json:"note,omitempty"`
	Hidden  string           `json:"-"`
	private int              //nolint:unused // not a JSON field
	Tags    []string         `json:"tags"`
	Attrs   map[string]uint8 `json:"attrs,omitempty"`
	At      time.Time        `json:"at"`
	Raw     json.RawMessage  `json:"raw,omitempty"`
	Blob    []byte           `json:"blob,omitempty"`
	Ptr     *float64         `json:"ptr"`
	Str     int              `json:"str,string"`
	Self    *sample          `json:"self,omitempty"`
	Nested  struct{ A bool } `json:"nested"`
	NoTag   string
}

func TestFor(t *testing.T) {
	_ = sample{}.private
	got := Of[sample]().String()
	want := "object{NoTag: string, at: string, attrs?: map<integer>, blob?: string, city: string, n: integer, " +
		"nested: object{A: boolean}, note?: string, ptr: number, raw?: any, self?: any, str: string, tags: array<string>}"
	if got != want {
		t.Fatalf("Of[sample]:\n got %s\nwant %s", got, want)
	}
	for typ, want := range map[reflect.Type]string{
		reflect.TypeFor[int64]():     "integer",
		reflect.TypeFor[*string]():   "string",
		reflect.TypeFor[any]():       "any",
		reflect.TypeFor[[]float32](): "array<number>",
		nil:                          "any",
	} {
		if got := For(typ).String(); got != want {
			t.Errorf("For(%v) = %s, want %s", typ, got, want)
		}
	}
	// The JSON form parses back to the same schema.
	s := Of[sample]()
	back, err := Parse(s.JSON())
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, s)
	}
}

func TestDiff(t *testing.T) {
	old := Of[struct {
		N  int64  `json:"n"`
		At string `json:"at"`
	}]()
	nw := Of[struct {
		N    string `json:"n"`
		Note string `json:"note,omitempty"`
	}]()
	got := strings.Join(Diff(old, nw), "; ")
	want := "field at removed; field n: integer → string; field note added (optional)"
	if got != want {
		t.Fatalf("Diff = %s, want %s", got, want)
	}
	if d := Diff(old, old); len(d) != 0 {
		t.Fatalf("Diff of equal schemas: %q", d)
	}
}

func TestFit(t *testing.T) {
	str, num := &Schema{Type: String}, &Schema{Type: Integer}
	ok := []Stage{{Ref: "a.src", Kind: "source", Out: num}, {Ref: "b.f", Kind: "function", In: num, Out: str},
		{Ref: "c.fn", Kind: "function", In: nil, Out: nil}, {Ref: "d.sink", Kind: "sink", In: str}}
	if err := Fit(ok); err != nil {
		t.Fatal(err)
	}
	bad := []Stage{{Ref: "a.src", Kind: "source", Out: str}, {Ref: "b.f", Kind: "function", In: num, Out: num}}
	err := Fit(bad)
	want := "source a.src emits string but function b.f takes integer"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Fit = %v, want %q", err, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{`[]`, `{"type":"int"}`, `{"type":3}`, `{"properties":{"a":1}}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) = nil error", in)
		}
	}
}
