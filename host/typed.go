package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/plugvisor/plugvisor/schema"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// Errors of the typed handles (Func, Subscribe, OpenSink), for errors.Is;
// a function's own error is a *CallError, a value that does not decode a
// *DecodeError, a Go type that does not fit the announced schema a
// *SchemaError (errors.As).
var (
	// ErrUnknownPlugin: no plugin of that name is configured or running.
	ErrUnknownPlugin = supervisor.ErrUnknownPlugin
	// ErrUnknownSymbol: the plugin offers no such function, source or sink.
	ErrUnknownSymbol = supervisor.ErrUnknownSymbol
	// ErrCrashed: the plugin died while the call was in flight (it is
	// restarted; the call is not retried).
	ErrCrashed = supervisor.ErrCrashed
	// ErrDecode: a value did not decode into the handle's Go type.
	ErrDecode = errors.New("cannot decode")
	// ErrSchemaMismatch: the handle's Go type does not fit the schema the
	// plugin announced for the symbol.
	ErrSchemaMismatch = errors.New("the handle's type does not fit the plugin's schema")
)

// CallError is an error the plugin's function returned itself.
type CallError = supervisor.CallError

// DecodeError is a value from a plugin that does not decode into the
// handle's Go type: a function's output or a source's item.
type DecodeError struct {
	Ref  string // plugin.symbol
	What string // "output" or "item"
	Type string // the Go type
	Data []byte // the JSON received (up to 256 bytes)
	Err  error  // from encoding/json
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s: %s %s does not decode into %s: %v", e.Ref, e.What, e.Data, e.Type, e.Err)
}

// Unwrap makes a DecodeError match ErrDecode and the JSON error.
func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }

func decodeErr(ref, what string, data []byte, into any, err error) *DecodeError {
	if len(data) > 256 {
		data = append(data[:256:256], "…"...)
	}
	return &DecodeError{Ref: ref, What: what, Type: fmt.Sprintf("%T", into), Data: data, Err: err}
}

// SchemaError says how a handle's Go type does not fit what the plugin
// announced for the symbol, checked when the handle is first used (and
// again when the plugin's announced schema changes).
type SchemaError struct {
	Ref       string   // plugin.symbol
	Part      string   // "input", "output" or "item"
	GoType    string   // the handle's type, as a schema
	Announced string   // the plugin's schema
	Problems  []string // from schema.Compatible
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s: %s: the handle's %s (%s) does not fit the plugin's %s (%s)",
		e.Ref, strings.Join(e.Problems, "; "), e.Part, e.GoType, e.Part, e.Announced)
}

// Is makes a SchemaError match ErrSchemaMismatch.
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaMismatch }

// splitRef splits "plugin.symbol"; a ref without a dot wraps ErrUnknownSymbol.
func splitRef(ref string) (string, string, error) {
	plugin, sym, ok := strings.Cut(ref, ".")
	if !ok || plugin == "" || sym == "" {
		return "", "", fmt.Errorf("%w: %q is not a symbol reference — write \"plugin.symbol\", e.g. \"clicks.count\"", ErrUnknownSymbol, ref)
	}
	return plugin, sym, nil
}

// typeCheck compares a Go type's schema with an announced one; producer
// says which side writes the values (true: the plugin).
type typeCheck struct {
	ref, part string
	goType    *schema.Schema
	producer  bool

	mu      sync.Mutex
	checked []byte // the announced schema last found to fit
	valid   bool
}

func (c *typeCheck) check(announced []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && bytes.Equal(c.checked, announced) {
		return nil
	}
	s, err := schema.Parse(announced)
	if err != nil {
		return fmt.Errorf("%s: %s schema: %w", c.ref, c.part, err)
	}
	if c.producer && s != nil && s.Type == schema.Null {
		return nil // no output: JSON null decodes into any Go value, as its zero
	}
	from, to := c.goType, s
	if c.producer {
		from, to = s, c.goType
	}
	if p := schema.Compatible(from, to); len(p) > 0 {
		return &SchemaError{Ref: c.ref, Part: c.part, GoType: c.goType.String(), Announced: s.String(), Problems: p}
	}
	c.checked, c.valid = append(c.checked[:0], announced...), true
	return nil
}

// manifestOf waits for the plugin to serve and returns its manifest,
// checking it offers symbol of kind.
func manifestOf(ctx context.Context, p *supervisor.Plugin, kind, sym string) (transport.Manifest, error) {
	m, err := p.Manifest(ctx)
	if err != nil {
		return m, err
	}
	if !m.Has(kind, sym) {
		return m, fmt.Errorf("%w: plugin %s (version %s) has no %s %q (sources %v, sinks %v, functions %v)",
			ErrUnknownSymbol, p.Name(), m.Version, kind, sym, m.Sources, m.Sinks, m.Functions)
	}
	return m, nil
}

// Function is a typed handle on a plugin function; see Func.
type Function[In, Out any] struct {
	h           *Host
	ref         string
	plugin, fn  string
	refErr      error
	inChk, outC *typeCheck
}

// Func returns a typed handle on function "plugin.function". Call encodes
// In as the function's JSON input and decodes its output into Out; a
// function without input is called through any In (host.Func[any, int64],
// Call(ctx, nil)). The handle stays valid across swaps and restarts, like
// the untyped Call. On first use (and whenever the plugin announces a new
// schema) it checks In and Out against the function's announced schema and
// refuses with a *SchemaError when they do not fit.
func Func[In, Out any](h *Host, ref string) *Function[In, Out] {
	plugin, fn, err := splitRef(ref)
	return &Function[In, Out]{h: h, ref: ref, plugin: plugin, fn: fn, refErr: err,
		inChk: &typeCheck{ref: ref, part: "input", goType: schema.Of[In]()},
		outC:  &typeCheck{ref: ref, part: "output", goType: schema.Of[Out](), producer: true}}
}

// Call calls the function. Errors: a *CallError when the function
// returned one, ErrCrashed when the plugin died during the call,
// ErrUnknownPlugin / ErrUnknownSymbol, a *DecodeError when the output does
// not decode into Out, a *SchemaError (ErrSchemaMismatch) when In or Out
// does not fit the announced schema, or ctx's error.
func (f *Function[In, Out]) Call(ctx context.Context, in In) (Out, error) {
	var out Out
	if f.refErr != nil {
		return out, f.refErr
	}
	p, err := f.h.Plugin(f.plugin)
	if err != nil {
		return out, err
	}
	m, err := manifestOf(ctx, p, transport.KindFunction, f.fn)
	if err != nil {
		return out, err
	}
	ss := m.Schemas[f.fn]
	if err := errors.Join(f.inChk.check(ss.In), f.outC.check(ss.Out)); err != nil {
		return out, err
	}
	data, err := json.Marshal(in)
	if err != nil {
		return out, fmt.Errorf("%s: input of type %T cannot be JSON-encoded: %w", f.ref, in, err)
	}
	res, err := p.Call(ctx, f.fn, data)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(res, &out); err != nil {
		return out, decodeErr(f.ref, "output", res, out, err)
	}
	return out, nil
}

// Option tunes Subscribe and OpenSink.
type Option func(*options)

type options struct {
	instance string
	buf      int
}

// Instance names the source or sink instance (default "host"). Its state
// is kept under that name across swaps and restarts; two handles on one
// symbol need different names.
func Instance(name string) Option { return func(o *options) { o.instance = name } }

// Buffer bounds the items buffered at the host: a subscription's queue, a
// sink's unacknowledged window (default: the supervisor's).
func Buffer(n int) Option { return func(o *options) { o.buf = n } }

func applyOptions(opts []Option) options {
	o := options{instance: "host"}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Item is one source item decoded into T. Err is a *DecodeError (and
// Value the zero T) when the item's JSON does not decode into T: the item
// is reported, not dropped.
type Item[T any] struct {
	Seq        uint64 // 1, 2, … per subscription, across generations
	Generation int
	Value      T
	Err        error
}

// Subscription streams a source's items decoded into T, in order, across
// swaps and restarts; see Subscribe.
type Subscription[T any] struct {
	sub  *supervisor.Subscription
	c    chan Item[T]
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Subscribe opens an instance of source "plugin.source" and decodes its
// items into T. It waits (bounded by ctx) for the plugin to serve, then
// checks T against the source's announced item schema (a *SchemaError
// when it does not fit). Close it to stop the instance.
func Subscribe[T any](ctx context.Context, h *Host, ref string, opts ...Option) (*Subscription[T], error) {
	o := applyOptions(opts)
	p, sym, err := typedOpen(ctx, h, ref, transport.KindSource, &typeCheck{ref: ref, part: "item", goType: schema.Of[T](), producer: true})
	if err != nil {
		return nil, err
	}
	sub, err := p.Subscribe(ctx, sym, o.instance, o.buf)
	if err != nil {
		return nil, err
	}
	s := &Subscription[T]{sub: sub, c: make(chan Item[T]), done: make(chan struct{})}
	s.wg.Add(1)
	go s.decode(ref)
	return s, nil
}

// typedOpen resolves ref to its plugin, waits for it to serve, and checks
// the symbol's item schema.
func typedOpen(ctx context.Context, h *Host, ref, kind string, chk *typeCheck) (*supervisor.Plugin, string, error) {
	plugin, sym, err := splitRef(ref)
	if err != nil {
		return nil, "", err
	}
	p, err := h.Plugin(plugin)
	if err != nil {
		return nil, "", err
	}
	m, err := manifestOf(ctx, p, kind, sym)
	if err != nil {
		return nil, "", err
	}
	if err := chk.check(m.Schemas[sym].Item); err != nil {
		return nil, "", err
	}
	return p, sym, nil
}

func (s *Subscription[T]) decode(ref string) {
	defer s.wg.Done()
	for {
		var raw supervisor.Item
		select {
		case raw = <-s.sub.C():
		case <-s.done:
			return
		}
		it := Item[T]{Seq: raw.Seq, Generation: raw.Generation}
		if err := json.Unmarshal(raw.Data, &it.Value); err != nil {
			var zero T
			it.Value, it.Err = zero, decodeErr(ref, "item", raw.Data, zero, err)
		}
		select {
		case s.c <- it:
		case <-s.done:
			return
		}
	}
}

// C delivers the items. It is not closed by Close; a slow reader slows the
// source down (push-back), nothing is lost.
func (s *Subscription[T]) C() <-chan Item[T] { return s.c }

// Close stops the source instance (its state is kept for the next
// subscription of the same instance name).
func (s *Subscription[T]) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		close(s.done)
		s.wg.Wait()
		err = s.sub.Close(ctx)
	})
	return err
}

// SinkWriter writes T values to a sink instance, in order, across swaps
// and restarts; see OpenSink.
type SinkWriter[T any] struct {
	ref string
	w   *supervisor.SinkWriter
}

// OpenSink opens an instance of sink "plugin.sink" taking T values. It
// waits (bounded by ctx) for the plugin to serve, then checks T against
// the sink's announced item schema (a *SchemaError when it does not fit).
func OpenSink[T any](ctx context.Context, h *Host, ref string, opts ...Option) (*SinkWriter[T], error) {
	o := applyOptions(opts)
	p, sym, err := typedOpen(ctx, h, ref, transport.KindSink, &typeCheck{ref: ref, part: "item", goType: schema.Of[T]()})
	if err != nil {
		return nil, err
	}
	w, err := p.OpenSink(ctx, sym, o.instance, o.buf)
	if err != nil {
		return nil, err
	}
	return &SinkWriter[T]{ref: ref, w: w}, nil
}

// Write queues v for the sink; it waits (bounded by ctx) while the
// unacknowledged window is full. Once it returns, v is delivered — across
// a swap exactly once, across a crash at least once.
func (w *SinkWriter[T]) Write(ctx context.Context, v T) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: item of type %T cannot be JSON-encoded: %w", w.ref, v, err)
	}
	return w.w.Write(ctx, data)
}

// Flush waits until the sink has collected every item written so far.
func (w *SinkWriter[T]) Flush(ctx context.Context) error { return w.w.Flush(ctx) }

// Close waits (bounded by ctx) until every item written is collected,
// then stops the sink instance. The instance is stopped even when the
// wait fails; the error says how.
func (w *SinkWriter[T]) Close(ctx context.Context) error {
	ferr := w.w.Flush(ctx)
	return errors.Join(ferr, w.w.Close(ctx))
}
