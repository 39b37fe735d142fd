package host

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/plugvisor/plugvisor/internal/proc.spawnLoop"))
}

const wait = 60 * time.Second // generous deadline for builds on a loaded machine

// repoRoot finds the plugvisor module root above the test's working dir.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/plugvisor/plugvisor\n") {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("plugvisor module root not found above the working dir")
		}
		dir = filepath.Dir(dir)
	}
}

const mainGo = `package main

import (
	"context"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{Name: "plug", Version: "1.0.0", Functions: map[string]any{"version": version, "count": count}})
}

func version() (string, error) { return Version + extra(), nil }

func count(ctx context.Context) (int64, error) { return sdk.StateOf(ctx).IncrCounter("n", 1) }
`

func versionGo(v string) string {
	return "package main\n\n// Version is what the version function returns.\nconst Version = \"" + v + "\"\n\nfunc extra() string { return \"\" }\n"
}

// writeModule writes a tiny plugin module example.com/plug into dir.
func writeModule(t testing.TB, dir, version string) {
	t.Helper()
	root := repoRoot(t)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	mod := "module example.com/plug\n\ngo 1.24\n\nrequire github.com/plugvisor/plugvisor v0.0.0\n\nreplace github.com/plugvisor/plugvisor => " + root + "\n"
	writeFile(t, filepath.Join(dir, "go.mod"), mod)
	writeFile(t, filepath.Join(dir, "go.sum"), string(sum))
	writeFile(t, filepath.Join(dir, "main.go"), mainGo)
	writeFile(t, filepath.Join(dir, "version.go"), versionGo(version))
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildEnv is the [build] env every test plugin needs: the temp module has
// no complete go.sum of its own.
const buildEnv = "[plugins.plug.build]\nenv = { GOFLAGS = \"-mod=mod\" }\n"

func supervisorTOML(extra string) string {
	return "[supervisor]\ndebounce = \"50ms\"\nstop_grace = \"1s\"\nstate_dir = \"st\"\n" + extra + "\n"
}

// recorder keeps every event of a host.
type recorder struct {
	mu     sync.Mutex
	events []supervisor.Event
	notify chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

func record(h *Host) *recorder {
	r := &recorder{notify: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	sub := h.Events(4096)
	go func() {
		defer close(r.done)
		defer sub.Close()
		for {
			select {
			case e := <-sub.C:
				r.mu.Lock()
				r.events = append(r.events, e)
				r.mu.Unlock()
				select {
				case r.notify <- struct{}{}:
				default:
				}
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

func (r *recorder) close() { close(r.stop); <-r.done }

// mark is the index of the next event.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// waitFor waits for an event of type typ (for plugin, "" = any) at or
// after index from, returning it and its index.
func (r *recorder) waitFor(t testing.TB, from int, typ, plugin string) (supervisor.Event, int) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.events); i++ {
			if e := r.events[i]; e.Type == typ && (plugin == "" || e.Plugin == plugin) {
				r.mu.Unlock()
				return e, i
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("no %s event for %q within %s; events: %s", typ, plugin, wait, r.dump(from))
		}
	}
}

func (r *recorder) count(from int, typ, plugin string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := from; i < len(r.events); i++ {
		if r.events[i].Type == typ && (plugin == "" || r.events[i].Plugin == plugin) {
			n++
		}
	}
	return n
}

func (r *recorder) dump(from int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i := from; i < len(r.events); i++ {
		e := r.events[i]
		fmt.Fprintf(&b, "\n  %s %s gen=%d err=%q", e.Type, e.Plugin, e.Generation, e.Error)
	}
	return b.String()
}

// harness runs a host on a config file in a temp dir.
type harness struct {
	t      testing.TB
	dir    string
	cfg    string // config.toml path
	h      *Host
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func startHost(t testing.TB, dir, toml string, o Options) *harness {
	t.Helper()
	cfgPath := filepath.Join(dir, "config.toml")
	writeFile(t, cfgPath, toml)
	cfg, err := config.Load(cfgPath, config.Registry(builtinsOrDefault(o.Builtins)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, dir: dir, cfg: cfgPath, h: h, rec: record(h), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	hs.cancel = cancel
	go func() { hs.done <- h.Run(ctx) }()
	t.Cleanup(hs.stop)
	select {
	case <-h.Started():
	case <-time.After(wait):
		t.Fatal("host did not start its plugins")
	}
	return hs
}

func builtinsOrDefault(b map[string]string) map[string]string {
	if b != nil {
		return b
	}
	return builtin.Sources()
}

func (hs *harness) stop() {
	if hs.cancel == nil {
		return
	}
	hs.cancel()
	hs.cancel = nil
	select {
	case err := <-hs.done:
		if err != nil {
			hs.t.Errorf("Run: %v", err)
		}
	case <-time.After(wait):
		hs.t.Error("Run did not return after cancel")
	}
	hs.rec.close()
}

func (hs *harness) call(plugin, fn string) string {
	hs.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := hs.h.Call(ctx, plugin, fn, nil)
	if err != nil {
		hs.t.Fatalf("call %s.%s: %v", plugin, fn, err)
	}
	return string(out)
}

// goBuild compiles the module in dir into out (a plain `go build`).
func goBuild(t testing.TB, dir, out string) time.Duration {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return time.Since(start)
}
