package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/pair"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// The test binary doubles as every plugin the tests need (go-plugin's
// helper-process pattern): with PV_TEST_PLUGIN set it becomes that plugin.
const modeEnv = "PV_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if mode := os.Getenv(modeEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	goleak.VerifyTestMain(m,
		// The spawner's OS thread lives as long as the host, by design.
		goleak.IgnoreTopFunction("github.com/plugvisor/plugvisor/internal/proc.spawnLoop"),
		goleak.IgnoreAnyFunction("github.com/plugvisor/plugvisor/internal/proc.spawnLoop"),
	)
}

func helperPlugin() sdk.Plugin {
	version := envOr("PV_TEST_VERSION", "1.0.0")
	p := sdk.Plugin{
		Name: "clicks", Version: version, StateVersion: os.Getenv("PV_TEST_STATE_VERSION"),
		Functions: map[string]any{
			"count": func(ctx context.Context, key string) (int64, error) {
				return sdk.StateOf(ctx).IncrCounter(key, 1)
			},
			"get": func(ctx context.Context, key string) (int64, error) {
				return sdk.StateOf(ctx).GetCounter(key)
			},
			"version": func() (string, error) { return version, nil },
			"echo":    func(in []byte) ([]byte, error) { return in, nil },
			"fail":    func(msg string) error { return errors.New(msg) },
			"panic":   func() error { panic("boom") },
			"sleep": func(ms int) error {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				return nil
			},
			"big":     func(n int) (string, error) { return strings.Repeat("x", n), nil },
			"emitted": func() (int64, error) { return hugeEmitted.Load(), nil },
			"getenv":  func(k string) (string, error) { return os.Getenv(k), nil },
			// pass counts the items it passes on (the state a pipeline's
			// checkpoints must keep exact).
			"pass": func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
				_, err := sdk.StateOf(ctx).IncrCounter("passed", 1)
				return in, err
			},
			// flaky fails every 20th number on its first try only.
			"flaky": func(ctx context.Context, n int) (int, error) {
				if n%20 != 0 {
					return n, nil
				}
				tries, err := sdk.StateOf(ctx).IncrCounter("try/"+strconv.Itoa(n), 1)
				if err == nil && tries == 1 {
					err = fmt.Errorf("transient failure of %d", n)
				}
				return n, err
			},
			"fill": func(ctx context.Context, n int) error {
				st := sdk.StateOf(ctx)
				for i := 0; i < n; i++ {
					if err := st.PutState("key"+strconv.Itoa(i), i); err != nil {
						return err
					}
				}
				return nil
			},
		},
		Sources: map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }, "blob": func() sdk.Source { return &blob{} },
			"huge": func() sdk.Source { return &huge{} }},
		Sinks: map[string]sdk.NewSink{"collect": func() sdk.Sink { return &collect{} }, "stuck": func() sdk.Sink { return &stuck{} }},
	}
	if os.Getenv("PV_TEST_NO_COUNT") != "" {
		delete(p.Functions, "count")
	}
	switch os.Getenv("PV_TEST_MIGRATE") {
	case "double":
		p.Migrate = func(from string, st map[string][]byte) (map[string][]byte, error) {
			out := map[string][]byte{}
			for k, v := range st {
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					out[k] = v
					continue
				}
				out[k] = []byte(strconv.FormatInt(n*2, 10))
			}
			return out, nil
		}
	case "fail":
		p.Migrate = func(string, map[string][]byte) (map[string][]byte, error) {
			return nil, errors.New("cannot read this state")
		}
	}
	return p
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// ticks emits 1, 2, 3, … as fast as the host takes them, position in
// state; with config "limit" it stops after that many (and waits).
type ticks struct{ limit int64 }

func (t *ticks) Configure(props map[string]any) error {
	if l, ok := props["limit"].(float64); ok {
		t.limit = int64(l)
	}
	return nil
}
func (*ticks) Close(sdk.Context) error { return nil }
func (t *ticks) Open(ctx sdk.Context, emit func(any) error) error {
	var n int64
	if _, err := ctx.State().GetState("next", &n); err != nil {
		return err
	}
	if n == 0 {
		n = 1
	}
	for ctx.Err() == nil {
		if t.limit > 0 && n > t.limit {
			<-ctx.Done()
			return nil
		}
		if err := emit(n); err != nil {
			return err
		}
		n++
		if err := ctx.State().PutState("next", n); err != nil {
			return err
		}
	}
	return nil
}

// blob emits 64-byte items as fast as the host takes them.
type blob struct{}

func (*blob) Configure(map[string]any) error { return nil }
func (*blob) Close(sdk.Context) error        { return nil }
func (*blob) Open(ctx sdk.Context, emit func(any) error) error {
	item := []byte(`"` + strings.Repeat("x", 62) + `"`)
	for ctx.Err() == nil {
		if err := emit(item); err != nil {
			return err
		}
	}
	return nil
}

// collect appends each item to the file named by config "path".
type collect struct{ f *os.File }

func (c *collect) Configure(props map[string]any) error {
	p, _ := props["path"].(string)
	if p == "" {
		return errors.New("collect needs a path")
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	c.f = f
	return err
}
func (c *collect) Open(sdk.Context) error { return nil }
func (c *collect) Collect(ctx sdk.Context, item any) error {
	raw := item.(json.RawMessage)
	_, err := c.f.Write(append(append([]byte(nil), raw...), '\n'))
	return err
}
func (c *collect) Close(sdk.Context) error { return c.f.Close() }

func runHelper(mode string) int {
	env, ok := sdk.EnvFromOS()
	if !ok && !strings.HasPrefix(mode, "host") && mode != "external" {
		fmt.Fprintln(os.Stderr, "helper: no plugvisor environment")
		return 2
	}
	env.ExitOnPanic, env.WatchParent = true, true
	switch mode {
	case "plugin":
		if path := os.Getenv("PV_TEST_CPUPROFILE"); path != "" {
			f, err := os.Create(path)
			if err == nil && pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
		if err := sdk.ServeEnv(context.Background(), helperPlugin(), env); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 1
		}
		return 0
	case "exit":
		fmt.Fprintln(os.Stderr, "helper: cannot open the database: no such file")
		return 3
	case "hang":
		select {} // never dials: the start deadline must kill it
	case "hang-restore":
		p := helperPlugin()
		p.Migrate = func(string, map[string][]byte) (map[string][]byte, error) {
			fmt.Fprintln(os.Stderr, "migrating: pid", os.Getpid())
			select {}
		}
		p.StateVersion = "2"
		return serve(p, env)
	case "bad-signature":
		p := helperPlugin()
		p.Functions["add"] = func(a, b int) int { return a + b }
		return serve(p, env)
	case "ignore-shutdown":
		signal.Ignore(syscall.SIGTERM)
		_ = sdk.ServeEnv(context.Background(), helperPlugin(), sdk.Env{Control: env.Control, Token: env.Token, MaxFrame: env.MaxFrame})
		select {}
	case "wrong-token":
		env.Token = "not-the-token"
		return serve(helperPlugin(), env)
	case "bad-manifest":
		p := helperPlugin()
		p.Name = "bad name!"
		return serve(p, env)
	case "wrong-version", "garbage", "oversized", "wrong-token-stay":
		return rawPlugin(mode, env)
	case "old-sdk":
		return oldSDKPlugin(env)
	case "external": // an instance started outside plugvisor (external_test.go)
		sdk.Serve(helperPlugin())
		return 0
	case "host":
		return runHost()
	case "host-swap":
		return runHostSwap()
	case "host-huge":
		return runHostHuge()
	}
	if code, ok := osHelper(mode, env); ok {
		return code
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
	return 2
}

func serve(p sdk.Plugin, env sdk.Env) int {
	if err := sdk.ServeEnv(context.Background(), p, env); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// rawPlugin speaks the wire protocol by hand over a bare mangos socket,
// to misbehave on purpose.
func rawPlugin(mode string, env sdk.Env) int {
	sock, err := pair.NewSocket()
	if err != nil {
		return 1
	}
	defer sock.Close()
	_ = sock.SetOption(mangos.OptionMaxRecvSize, 0)
	if err := sock.Dial(env.Control); err != nil {
		return 1
	}
	man := transport.Manifest{Name: "raw", Version: "1", Functions: []string{"f"}}
	hello := transport.AppendFrame(nil, transport.Frame{Type: transport.Hello,
		Payload: transport.JSON(transport.HelloMsg{Protocol: 1, Token: env.Token, Manifest: man})})
	if mode == "wrong-version" {
		hello[0] = 7
	}
	if mode == "wrong-token-stay" { // a peer that is refused and does not hang up
		hello = transport.AppendFrame(nil, transport.Frame{Type: transport.Hello,
			Payload: transport.JSON(transport.HelloMsg{Protocol: transport.Version, Token: "stolen", Manifest: man})})
	}
	if err := sock.Send(hello); err != nil {
		return 1
	}
	reply, err := sock.Recv()
	if err != nil || len(reply) < 2 || transport.Type(reply[1]) != transport.Welcome {
		fmt.Fprintln(os.Stderr, "raw: refused")
		if mode == "wrong-token-stay" {
			select {}
		}
		return 1
	}
	switch mode {
	case "garbage":
		_ = sock.Send([]byte("this is not a frame at all"))
	case "oversized":
		big := make([]byte, env.MaxFrame+100)
		big[0], big[1] = 1, byte(transport.Pong)
		_ = sock.Send(big)
	}
	select {}
}

// runHost is a host process for the "kill -9 the host" test: it starts a
// plugin, prints its pid and waits to be killed.
func runHost() int {
	dir, _ := os.MkdirTemp("", "pvhost")
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: dir}})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	p, err := sup.Add("clicks", helperSpec("plugin"))
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.Call(ctx, "count", []byte(`"x"`)); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	fmt.Println("PID", p.Status().PID)
	select {}
}

// runHostSwap is a host that gets killed in the middle of a swap: three
// counts checkpointed, then a swap that hangs in restore; it prints the
// pids of both generations and waits.
func runHostSwap() int {
	var o supervisor.Options
	o.StateDir, o.RestoreTimeout.Duration = os.Getenv("PV_TEST_STATE"), time.Minute
	sup, err := supervisor.New(o)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if _, err := p.Call(ctx, "count", []byte(`"k"`)); err != nil {
			fmt.Println("ERR", err)
			return 1
		}
	}
	if err := p.Checkpoint(ctx); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	old := p.Status().PID
	spec := helperSpec("hang-restore")
	go func() { _, _ = p.Reload(context.Background(), supervisor.ReloadOptions{Spec: &spec}) }()
	for ctx.Err() == nil {
		for _, l := range p.Logs(0) {
			if n, ok := strings.CutPrefix(l.Line, "migrating: pid "); ok {
				fmt.Println("PIDS", old, n)
				select {}
			}
		}
		time.Sleep(5 * time.Millisecond) // a helper process polling its own log; not a test's synchronisation
	}
	fmt.Println("ERR no migrating line")
	return 1
}

// sinkSpec is the helper plugin with its collect sink writing to a fresh
// file, whose path it returns.
func sinkSpec(t *testing.T) (supervisor.Spec, string) {
	out := filepath.Join(t.TempDir(), "sink.jsonl")
	spec := helperSpec("plugin")
	spec.Config = map[string]any{"path": out}
	return spec, out
}

func helperSpec(mode string, env ...string) supervisor.Spec {
	// Under -race a child sleeps a second before it exits (GORACE
	// atexit_sleep_ms, default 1000), so every retirement would wait out
	// stop_grace and be ended by SIGTERM instead of exiting on shutdown.
	e := map[string]string{modeEnv: mode, "GORACE": "atexit_sleep_ms=0"}
	for i := 0; i+1 < len(env); i += 2 {
		e[env[i]] = env[i+1]
	}
	exe, _ := os.Executable()
	return supervisor.Spec{Kind: "binary", Driver: "helper:" + mode, Path: exe, Env: e,
		Args: []string{"-test.run=^$"}, Config: map[string]any{}}
}
