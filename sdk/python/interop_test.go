// Integration tests of the Python SDK against the Go transport, with a
// minimal host written here (the supervisor is not involved), plus
// benchmarks comparing it with the Go SDK on the same host.
package python_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/transport"
)

// wait bounds every wait on the plugin.
const wait = 10 * time.Second

var (
	goPluginOnce sync.Once
	goPluginDir  string
	goPluginPath string
	goPluginErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if goPluginDir != "" {
		os.RemoveAll(goPluginDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// syncBuffer collects a child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// host is a minimal plugvisor host for one plugin process.
type host struct {
	t      testing.TB
	dir    string
	token  string
	ctl    *transport.Conn
	hello  chan transport.Frame
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of cmd.Wait, set before exited closes
	stderr *syncBuffer

	mu      sync.Mutex
	pending map[uint64]chan transport.Frame
	nextID  uint64
	nchan   int
}

func pythonCommand(t testing.TB) []string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	main, err := filepath.Abs("../../examples/pydemo/main.py")
	if err != nil {
		t.Fatal(err)
	}
	return []string{py, main}
}

func goPluginCommand(t testing.TB) []string {
	t.Helper()
	goPluginOnce.Do(func() {
		goPluginDir, goPluginErr = os.MkdirTemp("", "pvgo")
		if goPluginErr != nil {
			return
		}
		goPluginPath = filepath.Join(goPluginDir, "goplugin")
		out, err := exec.Command("go", "build", "-o", goPluginPath, "./testdata/goplugin").CombinedOutput()
		if err != nil {
			goPluginErr = fmt.Errorf("go build ./testdata/goplugin: %w\n%s", err, out)
		}
	})
	if goPluginErr != nil {
		t.Fatal(goPluginErr)
	}
	return []string{goPluginPath}
}

// start listens on a fresh control socket and starts argv with the
// plugvisor environment; the plugin's hello is waiting in h.hello.
func start(t testing.TB, argv []string) *host {
	t.Helper()
	// Unix socket paths must stay under ~100 bytes: t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "pv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tok := make([]byte, 16)
	rand.Read(tok)
	h := &host{t: t, dir: dir, token: hex.EncodeToString(tok), hello: make(chan transport.Frame, 1),
		exited: make(chan struct{}), stderr: &syncBuffer{}, pending: map[uint64]chan transport.Frame{}}
	h.ctl, err = transport.Listen("ipc://"+filepath.Join(dir, "c"), transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ctl.Close() })
	sdkDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(argv[0], argv[1:]...)
	h.cmd.Env = append(os.Environ(),
		transport.EnvControl+"=ipc://"+filepath.Join(dir, "c"),
		transport.EnvToken+"="+h.token,
		transport.EnvProtocol+"=1",
		transport.EnvPlugin+"=demo",
		transport.EnvGeneration+"=1",
		transport.EnvHostPID+"="+strconv.Itoa(os.Getpid()),
		transport.EnvMaxFrame+"="+strconv.Itoa(transport.DefaultMaxFrame),
		"PYTHONPATH="+sdkDir,
	)
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	go func() {
		h.err = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-h.exited:
		default:
			h.cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() {
			t.Logf("plugin stderr:\n%s", h.stderr.String())
		}
	})
	go h.readControl()
	return h
}

// readControl routes control frames: the first one to h.hello, replies to
// whoever waits for their id.
func (h *host) readControl() {
	first := true
	for {
		err := h.ctl.Recv(func(f transport.Frame) error {
			if first {
				first = false
				h.hello <- f
				return nil
			}
			h.mu.Lock()
			ch := h.pending[f.ID]
			delete(h.pending, f.ID)
			h.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			return nil
		})
		if err != nil {
			return
		}
	}
}

// handshake reads hello, checks it and answers welcome.
func (h *host) handshake(heartbeatMS int64) transport.HelloMsg {
	h.t.Helper()
	var hello transport.HelloMsg
	select {
	case f := <-h.hello:
		if f.Type != transport.Hello {
			h.t.Fatalf("first frame is %s, want hello", f.Type)
		}
		if err := transport.Decode(f, &hello); err != nil {
			h.t.Fatal(err)
		}
	case <-h.exited:
		h.t.Fatalf("plugin exited before its hello: %v\n%s", h.err, h.stderr)
	case <-time.After(wait):
		h.t.Fatal("no hello within", wait)
	}
	if hello.Token != h.token {
		h.t.Fatalf("hello token %q, want %q", hello.Token, h.token)
	}
	if err := hello.Manifest.Validate(); err != nil {
		h.t.Fatal(err)
	}
	h.send(h.ctl, transport.Frame{Type: transport.Welcome, Payload: transport.JSON(transport.WelcomeMsg{
		Plugin: "demo", Generation: 1, Config: map[string]any{"interval_ms": 0}, HeartbeatMS: heartbeatMS})})
	return hello
}

func (h *host) send(c *transport.Conn, f transport.Frame) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Send(ctx, f); err != nil {
		h.t.Fatal(err)
	}
}

// requestAsync sends a request; its reply arrives on the channel.
func (h *host) requestAsync(typ transport.Type, payload []byte) (uint64, <-chan transport.Frame) {
	h.mu.Lock()
	h.nextID++
	id := h.nextID
	ch := make(chan transport.Frame, 1)
	h.pending[id] = ch
	h.mu.Unlock()
	h.send(h.ctl, transport.Frame{Type: typ, ID: id, Payload: payload})
	return id, ch
}

func (h *host) reply(ch <-chan transport.Frame, what string) transport.Frame {
	h.t.Helper()
	select {
	case f := <-ch:
		return f
	case <-h.exited:
		h.t.Fatalf("plugin exited waiting for the reply to %s: %v", what, h.err)
	case <-time.After(wait):
		h.t.Fatalf("no reply to %s within %s", what, wait)
	}
	return transport.Frame{}
}

func (h *host) request(typ transport.Type, payload []byte, want transport.Type) transport.Frame {
	h.t.Helper()
	_, ch := h.requestAsync(typ, payload)
	f := h.reply(ch, typ.String())
	if f.Type != want {
		h.t.Fatalf("%s answered %s (%s), want %s", typ, f.Type, transport.ErrorText(f), want)
	}
	return f
}

// open listens on a new data channel and opens an instance on it.
func (h *host) open(kind, symbol, instance string) (*transport.Conn, <-chan transport.Frame) {
	h.t.Helper()
	h.nchan++
	addr := fmt.Sprintf("ipc://%s/d%d", h.dir, h.nchan)
	c, err := transport.Listen(addr, transport.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	h.request(transport.Open, transport.JSON(transport.OpenMsg{Instance: instance, Kind: kind, Symbol: symbol, Address: addr}), transport.OK)
	return c, pump(c)
}

// pump delivers a data channel's frames, ending when the channel closes.
func pump(c *transport.Conn) <-chan transport.Frame {
	ch := make(chan transport.Frame, 1024)
	go func() {
		defer close(ch)
		for {
			err := c.Recv(func(f transport.Frame) error {
				select {
				case ch <- f:
					return nil
				case <-c.Done():
					return transport.ErrClosed
				}
			})
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func (h *host) next(ch <-chan transport.Frame) transport.Frame {
	h.t.Helper()
	select {
	case f, ok := <-ch:
		if !ok {
			h.t.Fatal("data channel closed")
		}
		return f
	case <-time.After(wait):
		h.t.Fatal("no frame within", wait)
	}
	return transport.Frame{}
}

// exitCode waits for the plugin to exit.
func (h *host) exitCode() int {
	h.t.Helper()
	select {
	case <-h.exited:
	case <-time.After(wait):
		h.t.Fatal("plugin still running after", wait)
	}
	var ee *exec.ExitError
	if errors.As(h.err, &ee) {
		return ee.ExitCode()
	}
	if h.err != nil {
		h.t.Fatal(h.err)
	}
	return 0
}

func (h *host) shutdown() {
	h.t.Helper()
	h.send(h.ctl, transport.Frame{Type: transport.Shutdown})
	if code := h.exitCode(); code != 0 {
		h.t.Fatalf("exit status %d after shutdown, want 0\n%s", code, h.stderr)
	}
}

func (h *host) snapshot() transport.Scopes {
	h.t.Helper()
	f := h.request(transport.Snapshot, nil, transport.State)
	s, err := transport.ParseState(f.Payload)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *host) call(c *transport.Conn, id uint64, name, input string) {
	h.t.Helper()
	h.send(c, transport.Frame{Type: transport.Call, ID: id, Payload: transport.CallPayload(nil, name, []byte(input))})
}

func TestPythonHandshakeAndShutdown(t *testing.T) {
	h := start(t, pythonCommand(t))
	hello := h.handshake(0)
	m := hello.Manifest
	if hello.Protocol != 1 || hello.PID != h.cmd.Process.Pid || m.Name != "pydemo" || m.Version != "1.0.0" ||
		m.Language != "python" || m.StateVersion != "1" || m.Migrate ||
		strings.Join(m.Functions, ",") != "count,div,double" || strings.Join(m.Sources, ",") != "ticks" ||
		strings.Join(m.Sinks, ",") != "collect" {
		t.Fatalf("hello = %+v", hello)
	}
	// The type hints arrive as schemas the host accepts.
	if err := m.Validate(); err != nil || string(m.Schemas["double"].In) != `{"type":"integer"}` ||
		string(m.Schemas["count"].Out) != `{"type":"integer"}` || string(m.Schemas["ticks"].Item) != `{"type":"integer"}` ||
		len(m.Schemas["div"].In) != 0 {
		t.Fatalf("schemas %v: %v", m.Schemas, err)
	}
	h.shutdown()
}

func TestPythonFunctions(t *testing.T) {
	h := start(t, pythonCommand(t))
	h.handshake(0)
	c, in := h.open(transport.KindFunctions, "", "functions")
	for i := 1; i <= 1000; i++ {
		h.call(c, uint64(i), "double", strconv.Itoa(i))
		f := h.next(in)
		if f.Type != transport.Result || f.ID != uint64(i) || string(f.Payload) != strconv.Itoa(2*i) {
			t.Fatalf("call %d: got %s id %d %q", i, f.Type, f.ID, f.Payload)
		}
	}
	// 64 in flight, answered in any order.
	for i := 2001; i <= 2064; i++ {
		h.call(c, uint64(i), "double", strconv.Itoa(i))
	}
	got := map[uint64]string{}
	for len(got) < 64 {
		f := h.next(in)
		if f.Type != transport.Result {
			t.Fatalf("call %d: %s %s", f.ID, f.Type, transport.ErrorText(f))
		}
		got[f.ID] = string(f.Payload)
	}
	for i := 2001; i <= 2064; i++ {
		if got[uint64(i)] != strconv.Itoa(2*i) {
			t.Fatalf("call %d = %q, want %d", i, got[uint64(i)], 2*i)
		}
	}

	h.call(c, 3000, "div", "[1,0]")
	f := h.next(in)
	var fail transport.ErrorMsg
	if f.Type != transport.Fail || f.ID != 3000 || json.Unmarshal(f.Payload, &fail) != nil {
		t.Fatalf("div by zero: got %s %q", f.Type, f.Payload)
	}
	if !regexp.MustCompile(`^ZeroDivisionError: division by zero \(main\.py:\d+ in div\)$`).MatchString(fail.Error) || fail.Panic {
		t.Fatalf("div by zero failed with %+v", fail)
	}
	// The plugin keeps serving.
	for i, tc := range []struct{ name, input, want string }{
		{"div", "[7,2]", "3.5"}, {"count", "", "1"}, {"count", "", "2"}, {"double", "21", "42"},
	} {
		h.call(c, uint64(4000+i), tc.name, tc.input)
		if f := h.next(in); f.Type != transport.Result || string(f.Payload) != tc.want {
			t.Fatalf("%s(%s) = %s %q, want %s", tc.name, tc.input, f.Type, f.Payload, tc.want)
		}
	}
	h.call(c, 5000, "nope", "1")
	if f := h.next(in); f.Type != transport.Fail || !strings.Contains(transport.ErrorText(f), "no function 'nope'") {
		t.Fatalf("unknown function: %s %q", f.Type, f.Payload)
	}
	s := h.snapshot()
	if got := string(s["function/double"]["calls"]); got != "1065" {
		t.Fatalf("double's calls counter = %q, want 1065", got)
	}
	if got := string(s["function/count"]["n"]); got != "2" {
		t.Fatalf("count's n = %q, want 2", got)
	}
	h.shutdown()
}

// readSource reads data frames from in until eos, checking sequence numbers
// and that values continue from first; it returns the values.
func readSource(h *host, in <-chan transport.Frame, seq *uint64, next *int64, until func(transport.Frame) bool) {
	h.t.Helper()
	for {
		f := h.next(in)
		switch f.Type {
		case transport.Data:
			*seq++
			v, err := strconv.ParseInt(string(f.Payload), 10, 64)
			if f.ID != *seq || err != nil || v != *next {
				h.t.Fatalf("data frame id %d %q, want id %d value %d", f.ID, f.Payload, *seq, *next)
			}
			*next++
		case transport.EOS:
			if f.ID != *seq || len(f.Payload) != 0 {
				h.t.Fatalf("eos id %d %q after %d items", f.ID, f.Payload, *seq)
			}
		case transport.Checkpoint:
		default:
			h.t.Fatalf("unexpected %s frame on a source channel", f.Type)
		}
		if until(f) {
			return
		}
	}
}

func TestPythonSourceResumesInANewProcess(t *testing.T) {
	h := start(t, pythonCommand(t))
	h.handshake(0)
	_, in := h.open(transport.KindSource, "ticks", "ticks-1")
	var seq uint64
	var next int64
	readSource(h, in, &seq, &next, func(transport.Frame) bool { return seq == 100 })

	// A snapshot of the running source puts a checkpoint in its stream.
	sid, snap := h.requestAsync(transport.Snapshot, nil)
	readSource(h, in, &seq, &next, func(f transport.Frame) bool { return f.Type == transport.Checkpoint })
	if f := h.reply(snap, "snapshot"); f.Type != transport.State || f.ID != sid {
		t.Fatalf("snapshot answered %s", f.Type)
	} else if s, err := transport.ParseState(f.Payload); err != nil {
		t.Fatal(err)
	} else if v, _ := strconv.ParseInt(string(s["ticks-1"]["next"]), 10, 64); v > next || v < next-1 {
		// State is updated after emit: it may lag the last item by one, never lead it.
		t.Fatalf("checkpointed next = %d with %d items before the checkpoint", v, next)
	}

	_, stop := h.requestAsync(transport.Stop, transport.JSON(transport.StopMsg{Instance: "ticks-1"}))
	readSource(h, in, &seq, &next, func(f transport.Frame) bool { return f.Type == transport.EOS })
	if f := h.reply(stop, "stop"); f.Type != transport.OK {
		t.Fatalf("stop answered %s: %s", f.Type, transport.ErrorText(f))
	}
	state := h.snapshot()
	if got := string(state["ticks-1"]["next"]); got != strconv.FormatInt(next, 10) {
		t.Fatalf("state next = %q after %d items", got, next)
	}
	h.shutdown()

	h2 := start(t, pythonCommand(t))
	h2.handshake(0)
	h2.request(transport.Restore, transport.RestorePayload(transport.RestoreMeta{FromVersion: "1.0.0", FromStateVersion: "1"}, state), transport.OK)
	_, in2 := h2.open(transport.KindSource, "ticks", "ticks-1")
	var seq2 uint64
	readSource(h2, in2, &seq2, &next, func(transport.Frame) bool { return seq2 == 10 })
	h2.shutdown()
}

func TestPythonRestoreRefusesAnotherStateVersion(t *testing.T) {
	h := start(t, pythonCommand(t))
	h.handshake(0)
	f := h.request(transport.Restore, transport.RestorePayload(transport.RestoreMeta{FromVersion: "0.9.0", FromStateVersion: "0"},
		transport.Scopes{"ticks-1": {"next": []byte("5")}}), transport.Error)
	if !strings.Contains(transport.ErrorText(f), "no migrate hook") {
		t.Fatalf("restore error %q", transport.ErrorText(f))
	}
	h.shutdown()
}

func TestPythonSink(t *testing.T) {
	h := start(t, pythonCommand(t))
	h.handshake(0)
	c, in := h.open(transport.KindSink, "collect", "sink-1")
	for i := 1; i <= 100; i++ {
		h.send(c, transport.Frame{Type: transport.Data, ID: uint64(i), Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	h.send(c, transport.Frame{Type: transport.Barrier, ID: 100})
	var last uint64
	for last != 100 {
		f := h.next(in)
		if f.Type != transport.Ack || f.ID < last || f.ID > 100 {
			t.Fatalf("got %s %d after ack %d", f.Type, f.ID, last)
		}
		last = f.ID
	}
	h.request(transport.Stop, transport.JSON(transport.StopMsg{Instance: "sink-1"}), transport.OK)
	if got := string(h.snapshot()["sink-1"]["items"]); got != "100" {
		t.Fatalf("sink items = %q, want 100", got)
	}
	h.shutdown()
}

func TestPythonRefusedExitsNonZero(t *testing.T) {
	h := start(t, pythonCommand(t))
	select {
	case f := <-h.hello:
		var hello transport.HelloMsg
		if err := transport.Decode(f, &hello); err != nil || hello.Token != h.token {
			t.Fatalf("hello %q: %v", f.Payload, err)
		}
	case <-time.After(wait):
		t.Fatal("no hello")
	}
	// As a host with another token would.
	h.send(h.ctl, transport.Frame{Type: transport.Refuse, Payload: transport.JSON(transport.ErrorMsg{Error: "wrong token"})})
	if code := h.exitCode(); code == 0 {
		t.Fatal("refused plugin exited 0")
	}
	if !strings.Contains(h.stderr.String(), "refused this plugin: wrong token") {
		t.Fatalf("stderr does not give the reason:\n%s", h.stderr)
	}
}

func TestPythonHeartbeat(t *testing.T) {
	h := start(t, pythonCommand(t))
	h.handshake(50)
	_, pong := h.requestAsync(transport.Ping, nil)
	if f := h.reply(pong, "ping"); f.Type != transport.Pong {
		t.Fatalf("ping answered %s", f.Type)
	}
	// Then silence: the plugin must not outlive a silent host.
	if code := h.exitCode(); code == 0 {
		t.Fatal("plugin exited 0 after the host went silent")
	}
	if !strings.Contains(h.stderr.String(), "heartbeats") {
		t.Fatalf("stderr does not say why:\n%s", h.stderr)
	}
}

func TestPythonWithoutPlugvisor(t *testing.T) {
	argv := pythonCommand(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	sdkDir, _ := filepath.Abs(".")
	cmd.Env = []string{"PYTHONPATH=" + sdkDir, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "must be started by plugvisor") {
		t.Fatalf("got %v:\n%s", err, out)
	}
}

func benchPlugins(b *testing.B, run func(b *testing.B, argv []string)) {
	b.Run("python", func(b *testing.B) { run(b, pythonCommand(b)) })
	b.Run("go", func(b *testing.B) { run(b, goPluginCommand(b)) })
}

// BenchmarkCallRoundTrip: one call at a time, host → plugin → host.
func BenchmarkCallRoundTrip(b *testing.B) {
	benchPlugins(b, func(b *testing.B, argv []string) {
		h := start(b, argv)
		h.handshake(0)
		c, in := h.open(transport.KindFunctions, "", "functions")
		b.ResetTimer()
		for i := 1; i <= b.N; i++ {
			h.call(c, uint64(i), "double", "21")
			if f := h.next(in); f.Type != transport.Result {
				b.Fatalf("%s %q", f.Type, f.Payload)
			}
		}
		b.StopTimer()
		h.shutdown()
	})
}

// BenchmarkSourceThroughput: items a source streams to the host.
func BenchmarkSourceThroughput(b *testing.B) {
	benchPlugins(b, func(b *testing.B, argv []string) {
		h := start(b, argv)
		h.handshake(0)
		_, in := h.open(transport.KindSource, "ticks", "ticks-1")
		h.next(in)
		b.ResetTimer()
		t0 := time.Now()
		for n := 0; n < b.N; {
			if f := h.next(in); f.Type == transport.Data {
				n++
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "msgs/s")
		b.StopTimer()
		h.shutdown()
	})
}

// The Python SDK announces call_batch and answers a batch the Go
// transport encodes: in order, a failing input failing only itself.
func TestPythonCallBatch(t *testing.T) {
	h := start(t, pythonCommand(t))
	hello := h.handshake(0)
	if !hello.Manifest.Supports(transport.FeatureCallBatch) {
		t.Fatalf("manifest features = %v, want call_batch", hello.Manifest.Features)
	}
	c, in := h.open(transport.KindFunctions, "", "functions")
	inputs := [][]byte{[]byte("[1,2]"), []byte("[1,0]"), []byte("[9,3]")}
	h.send(c, transport.Frame{Type: transport.CallBatch, ID: 5, Payload: transport.CallBatchPayload(nil, "div", inputs)})
	f := h.next(in)
	if f.Type != transport.ResultBatch || f.ID != 5 {
		t.Fatalf("got %s id %d", f.Type, f.ID)
	}
	items, err := transport.ParseResultBatch(f.Payload)
	if err != nil || len(items) != 3 {
		t.Fatalf("result_batch: %+v %v", items, err)
	}
	if items[0].Status != transport.ItemOK || string(items[0].Data) != "0.5" || items[1].Status != transport.ItemError ||
		!strings.HasPrefix(string(items[1].Data), "ZeroDivisionError") || items[2].Status != transport.ItemOK || string(items[2].Data) != "3.0" {
		t.Fatalf("items = %q", items)
	}
	h.shutdown()
}
