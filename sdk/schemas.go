package sdk

import (
	"encoding/json"
	"reflect"

	"github.com/plugvisor/plugvisor/schema"
	"github.com/plugvisor/plugvisor/transport"
)

// Typed is implemented by a Source or a Sink that declares the Go type of
// its items, so the plugin announces their JSON Schema in its manifest and
// plugvisor can check a pipeline before it runs. ItemType returns a value
// of that type (its zero value will do):
//
//	func (*ticks) ItemType() any { return Tick{} }
//
// The SDK calls the symbol's factory once at start to ask; a factory must
// therefore be cheap and free of side effects (do real work in Open).
type Typed interface {
	ItemType() any
}

// symbolSchemas derives the announced schemas: each function's input and
// output from its signature, each typed source's and sink's item. []byte
// (raw JSON) and a missing input are not announced: anything goes.
func symbolSchemas(p Plugin, funcs map[string]*function) map[string]transport.SymbolSchema {
	out := map[string]transport.SymbolSchema{}
	for name, f := range funcs {
		var ss transport.SymbolSchema
		if f.in != nil && f.in != bytesType {
			ss.In = schema.For(f.in).JSON()
		}
		switch {
		case !f.out:
			ss.Out = json.RawMessage(`{"type":"null"}`)
		case f.fn.Type().Out(0) != bytesType:
			ss.Out = schema.For(f.fn.Type().Out(0)).JSON()
		}
		out[name] = ss
	}
	for name, mk := range p.Sources {
		if mk == nil {
			continue
		}
		if s := itemSchema(mk()); s != nil {
			out[name] = transport.SymbolSchema{Item: s}
		}
	}
	for name, mk := range p.Sinks {
		if mk == nil {
			continue
		}
		if s := itemSchema(mk()); s != nil {
			out[name] = transport.SymbolSchema{Item: s}
		}
	}
	for name, ss := range out {
		if len(ss.In)+len(ss.Out)+len(ss.Item) == 0 {
			delete(out, name)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func itemSchema(sym any) json.RawMessage {
	t, ok := sym.(Typed)
	if !ok {
		return nil
	}
	v := t.ItemType()
	if v == nil {
		return nil
	}
	return schema.For(reflect.TypeOf(v)).JSON()
}
