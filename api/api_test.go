package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a hand-written Backend with one plugin, "clicks".
type fake struct {
	mu       sync.Mutex
	plugins  map[string]supervisor.Status
	counts   map[string]int
	reloads  chan bool // force flag of each reload
	reloadFn func(name string) (*supervisor.Report, error)
	events   chan supervisor.Event
	stopped  chan struct{}
	reg      *prometheus.Registry
	lastLogN int
}

func newFake() *fake {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "plugvisor_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	return &fake{
		plugins: map[string]supervisor.Status{"clicks": {Name: "clicks", Driver: "./examples/clicks", Kind: "source",
			State: supervisor.StateRunning, Activity: supervisor.ActivityIdle, Generation: 3, PID: 42,
			Symbols: supervisor.Symbols{Functions: []string{"count"}}}},
		counts:  map[string]int{},
		reloads: make(chan bool, 4),
		events:  make(chan supervisor.Event, 8),
		stopped: make(chan struct{}),
		reg:     reg,
	}
}

func unknown(name string) error {
	return fmt.Errorf("plugin %q: %w", name, supervisor.ErrUnknownPlugin)
}

func (f *fake) Statuses() []supervisor.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []supervisor.Status
	for _, s := range f.plugins {
		out = append(out, s)
	}
	return out
}

func (f *fake) Status(name string) (supervisor.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.plugins[name]
	if !ok {
		return s, unknown(name)
	}
	return s, nil
}

func (f *fake) AddPlugin(_ context.Context, name, driver string, cfg map[string]any) (supervisor.Status, error) {
	if driver == "bogus word" {
		return supervisor.Status{}, &config.Error{Key: "plugins." + name + ".driver", Msg: "unknown driver"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := supervisor.Status{Name: name, Driver: driver, State: supervisor.StateStarting}
	f.plugins[name] = s
	return s, nil
}

func (f *fake) RemovePlugin(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.plugins[name]; !ok {
		return unknown(name)
	}
	delete(f.plugins, name)
	return nil
}

func (f *fake) Reload(_ context.Context, name string, force bool) (*supervisor.Report, error) {
	if _, err := f.Status(name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	fn := f.reloadFn
	f.mu.Unlock()
	f.reloads <- force
	if fn != nil {
		return fn(name)
	}
	return &supervisor.Report{Generation: 4, From: 3, SwapMS: 12.5, Drained: 5, StateKeys: 2}, nil
}

func (f *fake) Rollback(_ context.Context, name string) (*supervisor.Report, error) {
	if _, err := f.Status(name); err != nil {
		return nil, err
	}
	return &supervisor.Report{Generation: 5, From: 4}, nil
}

func (f *fake) Logs(name string, n int) ([]supervisor.LogLine, error) {
	if _, err := f.Status(name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.lastLogN = n
	f.mu.Unlock()
	return []supervisor.LogLine{{Generation: 3, Stream: "stderr", Line: "hello"}}, nil
}

func (f *fake) Symbols() []Symbol {
	return []Symbol{{Plugin: "clicks", Kind: "function", Name: "count"}}
}

func (f *fake) Call(ctx context.Context, plugin, fn string, input []byte) ([]byte, error) {
	if _, err := f.Status(plugin); err != nil {
		return nil, err
	}
	switch fn {
	case "block": // answers only when the caller gives up, like a stuck plugin
		<-ctx.Done()
		return nil, fmt.Errorf("call %s.%s: %w", plugin, fn, ctx.Err())
	case "count":
		if input == nil {
			return []byte("null"), nil
		}
		var key string
		if err := json.Unmarshal(input, &key); err != nil {
			return nil, &supervisor.CallError{Plugin: plugin, Function: fn, Msg: "want a string: " + err.Error()}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.counts[key]++
		return []byte(fmt.Sprint(f.counts[key])), nil
	case "toolarge": // what the transport says of an input over max_frame
		return nil, fmt.Errorf("%w: call frame of %d bytes exceeds the limit of 65536 bytes (max_frame)", transport.ErrTooLarge, len(input))
	case "crash":
		return nil, fmt.Errorf("call %s.%s: %w", plugin, fn, supervisor.ErrCrashed)
	case "fail":
		return nil, &supervisor.CallError{Plugin: plugin, Function: fn, Msg: "boom"}
	case "echo":
		return input, nil
	}
	return nil, fmt.Errorf("%s.%s: %w", plugin, fn, supervisor.ErrUnknownSymbol)
}

func (f *fake) Events(int) (<-chan supervisor.Event, func()) {
	var once sync.Once
	return f.events, func() { once.Do(func() { close(f.stopped) }) }
}

func (f *fake) Gatherer() prometheus.Gatherer { return f.reg }

func do(t *testing.T, h http.Handler, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	return rec.Code, rec.Body.Bytes()
}

func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("want {\"error\"}, got %s (%v)", body, err)
	}
	return e.Error
}

func TestPlugins(t *testing.T) {
	f := newFake()
	h := NewServer(f, nil)

	code, body := do(t, h, "GET", "/plugins", "")
	var list []map[string]any
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0]["name"] != "clicks" {
		t.Fatalf("GET /plugins: %d %s", code, body)
	}
	for _, k := range []string{"name", "driver", "kind", "state", "activity", "generation", "pid", "version", "build", "restarts", "symbols", "last_error", "last_reload"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("GET /plugins: field %q missing in %s", k, body)
		}
	}

	code, body = do(t, h, "GET", "/plugins/clicks", "")
	// (supervisor.Duration has no UnmarshalJSON: decode the fields we check.)
	var st struct{ Generation, PID int }
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Generation != 3 || st.PID != 42 {
		t.Fatalf("GET /plugins/clicks: %d %s", code, body)
	}
	code, body = do(t, h, "GET", "/plugins/nope", "")
	if code != 404 || !strings.Contains(errorOf(t, body), "nope") {
		t.Fatalf("GET /plugins/nope: %d %s", code, body)
	}

	code, body = do(t, h, "POST", "/plugins", `{"name":"demo","driver":"./demo","config":{"a":1}}`)
	if code != 201 || !strings.Contains(string(body), `"demo"`) {
		t.Fatalf("POST /plugins: %d %s", code, body)
	}
	if _, err := f.Status("demo"); err != nil {
		t.Fatal("POST /plugins did not add the plugin")
	}
	code, body = do(t, h, "POST", "/plugins", `{"name":"demo","driver":"./demo"}`)
	if code != 409 {
		t.Fatalf("POST /plugins twice: %d %s", code, body)
	}
	code, body = do(t, h, "DELETE", "/plugins/demo", "")
	if code != 204 {
		t.Fatalf("DELETE /plugins/demo: %d %s", code, body)
	}
	code, body = do(t, h, "DELETE", "/plugins/demo", "")
	if code != 404 {
		t.Fatalf("DELETE /plugins/demo twice: %d %s", code, body)
	}
}

func TestAddErrors(t *testing.T) {
	h := NewServer(newFake(), nil)
	for _, tc := range []struct{ body, want string }{
		{`{"name":"x",`, "bad JSON"},
		{`{"name":"x","driver":"./x","extra":1}`, `unknown field "extra"`},
		{`{"name":7}`, `field "name" must be string`},
		{`{"driver":"./x"}`, `missing "name"`},
		{`{"name":"x"}`, `missing "driver"`},
		{``, "empty"},
		{`{"name":"x","driver":"./x"} {}`, "after the JSON object"},
		{`{"name":"x","driver":"bogus word"}`, "unknown driver"},
	} {
		code, body := do(t, h, "POST", "/plugins", tc.body)
		if code != 400 || !strings.Contains(errorOf(t, body), tc.want) {
			t.Errorf("POST /plugins %s: %d %s, want 400 naming %q", tc.body, code, body, tc.want)
		}
	}
}

func TestReload(t *testing.T) {
	f := newFake()
	h := NewServer(f, nil)
	code, body := do(t, h, "POST", "/plugins/clicks/reload", "")
	var rep supervisor.Report
	if code != 200 || json.Unmarshal(body, &rep) != nil || rep.Generation != 4 || rep.From != 3 || rep.Drained != 5 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if force := <-f.reloads; force {
		t.Fatal("reload without ?force=1 passed force")
	}
	if code, body = do(t, h, "POST", "/plugins/clicks/reload?force=1", ""); code != 200 {
		t.Fatalf("reload?force=1: %d %s", code, body)
	}
	if force := <-f.reloads; !force {
		t.Fatal("reload?force=1 did not pass force")
	}
	if code, body = do(t, h, "POST", "/plugins/clicks/reload?force=maybe", ""); code != 400 {
		t.Fatalf("reload?force=maybe: %d %s", code, body)
	}

	// async: 202 at once, the reload happens in the background.
	release := make(chan struct{})
	f.reloadFn = func(string) (*supervisor.Report, error) { <-release; return &supervisor.Report{}, nil }
	code, body = do(t, h, "POST", "/plugins/clicks/reload?async=1", "")
	if code != 202 {
		t.Fatalf("reload?async=1: %d %s", code, body)
	}
	select {
	case <-f.reloads:
	case <-time.After(5 * time.Second):
		t.Fatal("async reload never ran")
	}
	close(release)
	if code, body = do(t, h, "POST", "/plugins/nope/reload?async=1", ""); code != 404 {
		t.Fatalf("async reload of unknown: %d %s", code, body)
	}

	// A failed swap: 409 with the reason and the attempt's report.
	f.reloadFn = func(string) (*supervisor.Report, error) {
		return &supervisor.Report{Generation: 3, Error: "handshake timed out"},
			fmt.Errorf("clicks: %w: handshake timed out", supervisor.ErrSwapFailed)
	}
	code, body = do(t, h, "POST", "/plugins/clicks/reload", "")
	<-f.reloads
	if code != 409 || !strings.Contains(errorOf(t, body), "handshake timed out") || !strings.Contains(string(body), `"report"`) {
		t.Fatalf("failed reload: %d %s", code, body)
	}
	f.reloadFn = func(string) (*supervisor.Report, error) { return nil, errors.New("disk on fire") }
	code, body = do(t, h, "POST", "/plugins/clicks/reload", "")
	<-f.reloads
	if code != 500 || errorOf(t, body) != "disk on fire" {
		t.Fatalf("reload internal error: %d %s", code, body)
	}
	if code, body = do(t, h, "POST", "/plugins/nope/reload", ""); code != 404 {
		t.Fatalf("reload unknown: %d %s", code, body)
	}
}

func TestRollbackLogsSymbols(t *testing.T) {
	f := newFake()
	h := NewServer(f, nil)
	code, body := do(t, h, "POST", "/plugins/clicks/rollback", "")
	if code != 200 || !strings.Contains(string(body), `"generation": 5`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	if code, _ = do(t, h, "POST", "/plugins/nope/rollback", ""); code != 404 {
		t.Fatalf("rollback unknown: %d", code)
	}
	code, body = do(t, h, "GET", "/plugins/clicks/logs?n=7", "")
	if code != 200 || !strings.Contains(string(body), `"hello"`) || f.lastLogN != 7 {
		t.Fatalf("logs: %d %s n=%d", code, body, f.lastLogN)
	}
	if do(t, h, "GET", "/plugins/clicks/logs", ""); f.lastLogN != 100 {
		t.Fatalf("logs default n = %d, want 100", f.lastLogN)
	}
	if code, body = do(t, h, "GET", "/plugins/clicks/logs?n=x", ""); code != 400 || !strings.Contains(errorOf(t, body), "n=") {
		t.Fatalf("logs?n=x: %d %s", code, body)
	}
	if code, _ = do(t, h, "GET", "/plugins/nope/logs", ""); code != 404 {
		t.Fatalf("logs unknown: %d", code)
	}
	code, body = do(t, h, "GET", "/symbols", "")
	var syms []Symbol
	if code != 200 || json.Unmarshal(body, &syms) != nil || len(syms) != 1 || syms[0].Plugin+"."+syms[0].Kind+"."+syms[0].Name != "clicks.function.count" {
		t.Fatalf("symbols: %d %s", code, body)
	}
}

func TestCall(t *testing.T) {
	h := NewServer(newFake(), nil)
	for i, want := range []string{"1", "2"} {
		code, body := do(t, h, "POST", "/functions/clicks/count", `"a"`)
		if code != 200 || string(body) != want {
			t.Fatalf("call %d: %d %s, want %s", i, code, body, want)
		}
	}
	if code, body := do(t, h, "POST", "/functions/clicks/count", ""); code != 200 || string(body) != "null" {
		t.Fatalf("empty body is not passed as null: %d %s", code, body)
	}
	if code, body := do(t, h, "POST", "/functions/clicks/echo", `{"x": [1, 2]}`); code != 200 || string(body) != `{"x": [1, 2]}` {
		t.Fatalf("echo: %d %s", code, body)
	}
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/functions/clicks/fail", "1", 422, "boom"},
		{"/functions/clicks/count", "7", 422, "want a string"},
		{"/functions/clicks/crash", "1", 502, "crashed"},
		{"/functions/clicks/toolarge", "1", 413, "max_frame"},
		{"/functions/clicks/nope", "1", 404, "no such symbol"},
		{"/functions/nope/count", "1", 404, "no such plugin"},
		{"/functions/clicks/count", "{not json", 400, "not valid JSON"},
	} {
		code, body := do(t, h, "POST", tc.path, tc.body)
		if code != tc.code || !strings.Contains(errorOf(t, body), tc.want) {
			t.Errorf("POST %s %s: %d %s, want %d naming %q", tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	h := NewServer(newFake(), nil)
	big := `"` + strings.Repeat("x", MaxBody) + `"`
	for _, path := range []string{"/functions/clicks/echo", "/plugins"} {
		code, body := do(t, h, "POST", path, big)
		if code != 413 || !strings.Contains(errorOf(t, body), "16 MiB") {
			t.Errorf("POST %s with %d bytes: %d %.200s", path, len(big), code, body)
		}
	}
}

func TestMetricsHealthNotFound(t *testing.T) {
	h := NewServer(newFake(), nil)
	code, body := do(t, h, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(body), "plugvisor_test_total 3") {
		t.Fatalf("metrics: %d %s", code, body)
	}
	if code, body = do(t, h, "GET", "/healthz", ""); code != 200 || !strings.Contains(string(body), "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body = do(t, h, "GET", "/nothing", ""); code != 404 {
		t.Fatalf("unknown path: %d %s", code, body)
	}
	if code, body = do(t, h, "PUT", "/plugins", ""); code != 405 || !strings.Contains(errorOf(t, body), "GET") {
		t.Fatalf("PUT /plugins: %d %s, want 405 naming the allowed methods", code, body)
	}
}

// readEvent reads one SSE event (skipping comments) from rd.
func readEvent(rd *bufio.Reader) (typ, data string, err error) {
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && typ != "":
			return typ, data, nil
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestEventsInOrder(t *testing.T) {
	f := newFake()
	old := heartbeat
	heartbeat = 10 * time.Millisecond
	defer func() { heartbeat = old }()
	srv := httptest.NewServer(NewServer(f, nil))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	want := []supervisor.Event{
		{Type: supervisor.EventBuildStarted, Plugin: "clicks"},
		{Type: supervisor.EventSwapStarted, Plugin: "clicks", Generation: 4},
		{Type: supervisor.EventSwapFinished, Plugin: "clicks", Generation: 4, Report: &supervisor.Report{Generation: 4, From: 3}},
	}
	for _, e := range want {
		f.events <- e
	}
	rd := bufio.NewReader(resp.Body)
	for i, w := range want {
		typ, data, err := readEvent(rd)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		var got supervisor.Event
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatalf("event %d data %q: %v", i, data, err)
		}
		if typ != w.Type || got.Type != w.Type || got.Generation != w.Generation || got.Plugin != w.Plugin {
			t.Fatalf("event %d: %s %s, want %+v", i, typ, data, w)
		}
	}
	// Heartbeats arrive as comments while nothing happens.
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ": heartbeat\n" {
			break
		}
	}
	// The client goes away: the handler unsubscribes.
	cancel()
	select {
	case <-f.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("event stream did not end after the client left")
	}
}

func TestEventsFilter(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(NewServer(f, nil))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events?plugin=b", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f.events <- supervisor.Event{Type: supervisor.EventPluginAdded, Plugin: "a"}
	f.events <- supervisor.Event{Type: supervisor.EventPluginRemoved, Plugin: "b"}
	typ, data, err := readEvent(bufio.NewReader(resp.Body))
	if err != nil || typ != supervisor.EventPluginRemoved || !strings.Contains(data, `"plugin":"b"`) {
		t.Fatalf("filtered stream: %s %s %v", typ, data, err)
	}
}

func TestServeShutdownEndsStreams(t *testing.T) {
	f := newFake()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, NewServer(f, nil)) }()

	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("stream did not start: %q %v", line, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an open event stream held the shutdown")
	}
	if _, err := io.Copy(io.Discard, rd); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("stream end: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Serve(context.Background(), ln.Addr().String(), http.NotFoundHandler())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Serve on a taken port: %v", err)
	}
}
