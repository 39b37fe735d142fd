// Package sdktest runs a plugin from a Go unit test, in-process, under the
// real supervisor with a real state store: the same handshake, state
// snapshots, restores, swaps and Migrate calls as under plugvisor, without
// building a binary.
//
//	func TestCount(t *testing.T) {
//		h := sdktest.Start(t, plugin) // plugin is the sdk.Plugin main serves
//		if n := sdktest.Call[int64](h, "count", "a"); n != 1 {
//			t.Fatalf("count = %d, want 1", n)
//		}
//		rep := h.Swap(pluginV2) // v2's Migrate runs on v1's state
//		var got int64
//		h.Get("functions", "a", &got)
//	}
//
// State scopes are named as in `plugvisor state ls`: "functions" (shared
// by every function of a Go plugin), "source/<symbol>/<name>",
// "sink/<symbol>/<name>"; the harness opens sources and sinks under the
// name "test". A fixture written by `plugvisor state export` loads with
// LoadState and seeds the store with Options.State.
package sdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// Instance is the name the harness opens sources and sinks under.
const Instance = "test"

// Options tune Start.
type Options struct {
	Config  map[string]any          // the plugin's [plugins.NAME.config]
	State   *supervisor.StateExport // seeds the state store (e.g. LoadState of a fixture)
	Timeout time.Duration           // bounds every wait [10s]
}

// Harness is one plugin running under a supervisor for one test.
type Harness struct {
	t       testing.TB
	sup     *supervisor.Supervisor
	p       *supervisor.Plugin
	name    string
	spec    supervisor.Spec
	timeout time.Duration
	subs    map[string]*supervisor.Subscription // open sources, by symbol
}

// Start runs plugin p in-process and waits until it serves. Everything it
// starts is stopped when the test ends.
func Start(t testing.TB, p sdk.Plugin, opts ...Options) *Harness {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	// Socket paths are short-lived and must stay under ~108 bytes: a
	// short temp dir, not t.TempDir's long test name.
	dir, err := os.MkdirTemp("", "sdktest")
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var so supervisor.Options
	so.StateDir, so.BackoffMin.Duration, so.HeartbeatInterval.Duration = dir, 10*time.Millisecond, time.Second
	sup, err := supervisor.New(so)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	h := &Harness{t: t, sup: sup, name: p.Name, timeout: o.Timeout, subs: map[string]*supervisor.Subscription{}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		defer cancel()
		// Sources first: the final checkpoint waits for a running source's
		// stream to reach the host, and nothing reads it any more.
		for sym, sub := range h.subs {
			if err := sub.Close(ctx); err != nil {
				t.Errorf("sdktest: stop source %s: %v", sym, err)
			}
		}
		if err := sup.Close(ctx); err != nil {
			t.Errorf("sdktest: stop %s: %v", p.Name, err)
		}
	})
	if o.State != nil {
		st := *o.State
		st.Plugin = p.Name
		if err := sup.EditSaved(p.Name, supervisor.StateEdit{Set: &st}); err != nil {
			t.Fatalf("sdktest: seed the state of %s: %v", p.Name, err)
		}
	}
	plug := p
	serving := make(chan struct{})
	var once sync.Once
	h.spec = supervisor.Spec{Kind: "builtin", Driver: "sdktest", InProc: &plug, Config: o.Config, Build: p.Version,
		Started: func() { once.Do(func() { close(serving) }) }}
	pl, err := sup.Add(p.Name, h.spec)
	if err != nil {
		t.Fatalf("sdktest: add %s: %v", p.Name, err)
	}
	h.p = pl
	h.waitRunning(serving)
	return h
}

func (h *Harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.timeout)
}

// waitRunning fails the test unless the plugin serves within the timeout.
func (h *Harness) waitRunning(serving <-chan struct{}) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	select {
	case <-serving:
	case <-ctx.Done():
		st := h.p.Status()
		h.t.Fatalf("sdktest: %s did not start within %s: state %s, %s", h.name, h.timeout, st.State, st.LastError)
	}
}

// Plugin is the supervisor's handle, for what the harness does not wrap.
func (h *Harness) Plugin() *supervisor.Plugin { return h.p }

// CallRaw calls function fn with raw JSON input and returns raw JSON output.
func (h *Harness) CallRaw(fn string, input []byte) ([]byte, error) {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.p.Call(ctx, fn, input)
}

// CallErr calls fn with in (JSON-encoded) and decodes the result into
// out (nil: ignore it). It returns the function's error.
func (h *Harness) CallErr(fn string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("sdktest: input of %s: %w", fn, err)
	}
	res, err := h.CallRaw(fn, b)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("sdktest: result of %s (%s) does not decode into %T: %w", fn, res, out, err)
	}
	return nil
}

// Call calls function fn of the harness's plugin with in and returns its
// result as Out; an error fails the test.
func Call[Out any](h *Harness, fn string, in any) Out {
	h.t.Helper()
	var out Out
	if err := h.CallErr(fn, in, &out); err != nil {
		h.t.Fatalf("sdktest: call %s: %v", fn, err)
	}
	return out
}

// Read returns the next n items of source symbol. The first Read opens
// the source as instance "test"; it keeps running (pushing back once the
// host's buffer is full), so the next Read continues the stream.
// StopSource ends it.
func (h *Harness) Read(symbol string, n int) []json.RawMessage {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	sub := h.subs[symbol]
	if sub == nil {
		var err error
		if sub, err = h.p.Subscribe(ctx, symbol, Instance, 16); err != nil {
			h.t.Fatalf("sdktest: open source %s: %v", symbol, err)
		}
		h.subs[symbol] = sub
	}
	out := make([]json.RawMessage, 0, n)
	for len(out) < n {
		select {
		case it := <-sub.C():
			out = append(out, json.RawMessage(it.Data))
		case <-ctx.Done():
			h.t.Fatalf("sdktest: source %s gave %d of %d items within %s", symbol, len(out), n, h.timeout)
		}
	}
	return out
}

// StopSource stops source symbol's instance: Open returns, Close runs, the
// state stays. Items it emitted that no Read took are dropped, and its
// state already counts them.
func (h *Harness) StopSource(symbol string) {
	h.t.Helper()
	sub := h.subs[symbol]
	if sub == nil {
		return
	}
	delete(h.subs, symbol)
	ctx, cancel := h.ctx()
	defer cancel()
	if err := sub.Close(ctx); err != nil {
		h.t.Fatalf("sdktest: stop source %s: %v", symbol, err)
	}
}

func (h *Harness) stopSources() {
	h.t.Helper()
	for sym := range h.subs {
		h.StopSource(sym)
	}
}

// ReadAs is Read decoding each item into T.
func ReadAs[T any](h *Harness, symbol string, n int) []T {
	h.t.Helper()
	raw := h.Read(symbol, n)
	out := make([]T, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			h.t.Fatalf("sdktest: item %d of %s (%s) does not decode into %T: %v", i, symbol, r, out[i], err)
		}
	}
	return out
}

// Feed opens sink symbol as instance "test", writes items (JSON-encoded;
// []byte passes raw), waits until the sink acknowledged all of them, and
// closes it.
func (h *Harness) Feed(symbol string, items ...any) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	w, err := h.p.OpenSink(ctx, symbol, Instance, 0)
	if err != nil {
		h.t.Fatalf("sdktest: open sink %s: %v", symbol, err)
	}
	for i, it := range items {
		b, ok := it.([]byte)
		if !ok {
			if b, err = json.Marshal(it); err != nil {
				h.t.Fatalf("sdktest: item %d for %s: %v", i, symbol, err)
			}
		}
		if err := w.Write(ctx, b); err != nil {
			h.t.Fatalf("sdktest: write item %d to %s: %v", i, symbol, err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		h.t.Fatalf("sdktest: flush %s: %v", symbol, err)
	}
	if err := w.Close(ctx); err != nil {
		h.t.Fatalf("sdktest: close sink %s: %v", symbol, err)
	}
}

// State returns every scope of the plugin's state, checkpointed now. It
// stops sources opened by Read first: a checkpoint waits until a running
// source's stream reached the host, and nothing reads it meanwhile.
func (h *Harness) State() *supervisor.StateExport {
	h.t.Helper()
	h.stopSources()
	ctx, cancel := h.ctx()
	defer cancel()
	e, err := h.p.ExportState(ctx)
	if err != nil {
		h.t.Fatalf("sdktest: state of %s: %v", h.name, err)
	}
	return e
}

// Get decodes key of scope into into; false when it is not there.
func (h *Harness) Get(scope, key string, into any) bool {
	h.t.Helper()
	v, ok := h.State().Scopes[scope][key]
	if !ok {
		return false
	}
	if err := json.Unmarshal(v, into); err != nil {
		h.t.Fatalf("sdktest: state %s/%s (%s) does not decode into %T: %v", scope, key, v, into, err)
	}
	return true
}

// Put sets key of scope to value (JSON-encoded) in the running plugin.
func (h *Harness) Put(scope, key string, value any) {
	h.t.Helper()
	b, err := json.Marshal(value)
	if err != nil {
		h.t.Fatalf("sdktest: state %s/%s: %v", scope, key, err)
	}
	cur := h.State()
	kv := map[string]json.RawMessage{}
	for k, v := range cur.Scopes[scope] {
		kv[k] = v
	}
	kv[key] = b
	h.edit(supervisor.StateEdit{Set: &supervisor.StateExport{Plugin: h.name,
		Scopes: map[string]map[string]json.RawMessage{scope: kv}}})
}

// Delete removes key from scope (key "": the whole scope). Put and Delete
// stop sources opened by Read, as State does.
func (h *Harness) Delete(scope, key string) {
	h.t.Helper()
	h.edit(supervisor.StateEdit{Delete: true, Scope: scope, Key: key})
}

func (h *Harness) edit(ed supervisor.StateEdit) {
	h.t.Helper()
	h.stopSources()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.p.EditState(ctx, ed); err != nil {
		h.t.Fatalf("sdktest: edit the state of %s: %v", h.name, err)
	}
}

// Crash kills the serving generation as a crash would and waits until the
// plugin serves again, restored from its last checkpoint (taken at every
// swap, at every State call and periodically — not at the crash). It
// returns the new generation.
func (h *Harness) Crash() int {
	h.t.Helper()
	events := h.sup.Subscribe(16)
	defer events.Close()
	killed := h.p.Crash("crash injected by sdktest")
	if killed == 0 {
		h.t.Fatalf("sdktest: %s has no serving generation to crash", h.name)
	}
	ctx, cancel := h.ctx()
	defer cancel()
	for {
		select {
		case e := <-events.C:
			if e.Plugin == h.name && e.Type == supervisor.EventPluginRestarted && e.Generation > killed {
				return e.Generation
			}
		case <-ctx.Done():
			h.t.Fatalf("sdktest: %s did not restart within %s after a crash: %s", h.name, h.timeout, h.p.Status().LastError)
		}
	}
}

// SwapErr swaps the running plugin for next, as a new build would: the
// old generation drains, its state moves to next (next's Migrate runs when
// the versions differ). A failed swap leaves the old one serving.
func (h *Harness) SwapErr(next sdk.Plugin) (*supervisor.Report, error) {
	if next.Name != h.name {
		return nil, fmt.Errorf("sdktest: swap %s for a plugin named %q: the name must stay", h.name, next.Name)
	}
	ctx, cancel := h.ctx()
	defer cancel()
	plug := next
	spec := h.spec
	spec.InProc, spec.Build = &plug, next.Version
	rep, err := h.p.Reload(ctx, supervisor.ReloadOptions{Spec: &spec})
	if err == nil {
		h.spec = spec
	}
	return rep, err
}

// Swap is SwapErr failing the test on error.
func (h *Harness) Swap(next sdk.Plugin) *supervisor.Report {
	h.t.Helper()
	rep, err := h.SwapErr(next)
	if err != nil {
		h.t.Fatalf("sdktest: swap %s to %s: %v", h.name, next.Version, err)
	}
	return rep
}

// LoadState reads a state export (`plugvisor state export NAME > file`)
// for Options.State.
func LoadState(t testing.TB, path string) *supervisor.StateExport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	var e supervisor.StateExport
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("sdktest: %s is not a state export: %v", path, err)
	}
	return &e
}
