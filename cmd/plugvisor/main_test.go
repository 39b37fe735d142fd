package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/internal/proc"
	"github.com/plugvisor/plugvisor/supervisor"
)

// binary is the plugvisor built once for the tests that run it as a child.
var binary string

func TestMain(m *testing.M) {
	if code, ok := helperMain(); ok { // this binary run as a test's helper process
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "plugvisor-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "plugvisor")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building plugvisor: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// cli runs the plugvisor binary and returns stdout, stderr and the exit code.
func cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return cliIn(t, "", env, args...)
}

// cliIn runs the plugvisor binary in dir ("" = here) with env added to
// this process's environment, minus any PLUGVISOR_API or PLUGVISOR_TOKEN
// of its own.
func cliIn(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLUGVISOR_API=") && !strings.HasPrefix(kv, "PLUGVISOR_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("plugvisor %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// child is a plugvisor run/dev child process.
type child struct {
	cmd    *exec.Cmd
	addr   string
	dir    string      // holds config.toml; the CLI run here needs no flags
	token  string      // the API token the daemon wrote
	lines  chan string // stdout lines
	exited chan error
	logs   *bytes.Buffer // stderr; read only after exited
	done   bool
}

// tokens maps a daemon's base URL ("http://127.0.0.1:PORT") to its API
// token, so helpers given only the URL can authenticate.
var tokens sync.Map

// authDo sends req with the token of the daemon it is addressed to.
func authDo(req *http.Request) (*http.Response, error) {
	if tok, ok := tokens.Load("http://" + req.URL.Host); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return http.DefaultClient.Do(req)
}

// authGet is http.Get with the token of the daemon at base.
func authGet(base, path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		return nil, err
	}
	if tok, ok := tokens.Load(base); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return http.DefaultClient.Do(req)
}

// cli runs the plugvisor CLI in the daemon's folder, beside its
// config.toml, with no flag or variable saying where the daemon is.
func (d *child) cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return cliIn(t, d.dir, nil, args...)
}

// startDaemon runs `plugvisor MODE` on a config with the clicks example
// and waits for its API address; cleanup kills it if the test did not stop it.
func startDaemon(t *testing.T, mode string) *child {
	t.Helper()
	clicks := filepath.Join(repoRoot(t), "examples", "clicks")
	return startDaemonWith(t, mode, fmt.Sprintf("[plugins.clicks]\ndriver = %q\n", clicks))
}

// startDaemonWith runs the daemon on a config of the given plugin tables.
func startDaemonWith(t *testing.T, mode, plugins string) *child {
	t.Helper()
	return startDaemonCmd(t, "[supervisor]\napi = \"127.0.0.1:0\"\n\n"+plugins, nil, mode)
}

// startDaemonCmd writes cfg to config.toml in a temp folder and runs
// argv (prefix, then the binary with args and -c config.toml there).
func startDaemonCmd(t *testing.T, cfg string, prefix []string, args ...string) *child {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append(append(append([]string{}, prefix...), binary), args...)
	argv = append(argv, "-c", cfgPath)
	return startDaemonExec(t, exec.Command(argv[0], argv[1:]...), cfgPath)
}

// startDaemonConfig runs the daemon on an existing config file, with extra
// environment variables.
func startDaemonConfig(t *testing.T, mode, cfgPath string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(binary, mode, "-c", cfgPath)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	return startDaemonExec(t, cmd, cfgPath)
}

// startDaemonExec starts cmd, a daemon on the config at cfgPath (possibly
// behind a wrapper such as unshare), and waits for its API address.
func startDaemonExec(t *testing.T, cmd *exec.Cmd, cfgPath string) *child {
	t.Helper()
	sup, err := config.LoadSupervisor(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return startDaemonIn(t, cmd, filepath.Dir(cfgPath), sup.TokenFile())
}

// startChild runs a config-less daemon (dev PATH) in dir with extra
// environment env; its state (and token) is in stateDir.
func startChild(t *testing.T, dir string, env []string, stateDir string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return startDaemonIn(t, cmd, dir, filepath.Join(stateDir, api.TokenFile))
}

// env names the daemon to a client command by variables.
func (d *child) env() []string {
	return []string{"PLUGVISOR_API=" + d.addr, "PLUGVISOR_TOKEN=" + d.token}
}

// startDaemonIn starts cmd, a daemon whose token file is tokenFile, and
// waits for its API address.
func startDaemonIn(t *testing.T, cmd *exec.Cmd, dir, tokenFile string) *child {
	t.Helper()
	d := &child{cmd: cmd, dir: dir, lines: make(chan string, 100), exited: make(chan error, 1), logs: &bytes.Buffer{}}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case d.lines <- sc.Text():
			default: // nobody is reading that many lines
			}
		}
	}()
	go func() {
		rd := bufio.NewReader(stderr)
		for {
			line, err := rd.ReadString('\n')
			d.logs.WriteString(line)
			if a, ok := strings.CutPrefix(strings.TrimSpace(line), "api listening on "); ok {
				addrc <- a
			}
			if err != nil {
				<-outDone
				d.exited <- d.cmd.Wait()
				return
			}
		}
	}()
	t.Cleanup(func() {
		if !d.done {
			_ = d.cmd.Process.Kill()
			<-d.exited
			t.Logf("daemon stderr:\n%s", d.logs.String())
		}
	})
	select {
	case d.addr = <-addrc:
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatalf("the daemon listens but wrote no token: %v", err)
		}
		d.token = strings.TrimSpace(string(tok))
		tokens.Store("http://"+d.addr, d.token)
		t.Cleanup(func() { tokens.Delete("http://" + d.addr) })
	case err := <-d.exited:
		d.done = true
		t.Fatalf("daemon exited before listening: %v\n%s", err, d.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("daemon never printed its API address")
	}
	return d
}

// stop sends SIGTERM and requires a clean exit.
func (d *child) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.done = true
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, d.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	d := startDaemon(t, "run")
	addr := d.addr
	// The CLI runs beside the daemon's config.toml with no flag or
	// variable: it finds the address and the token there.

	// Wait (bounded) until the first build is done and clicks serves.
	st := waitRunning(t, "http://"+addr, "clicks", 90*time.Second)
	pids := []int{st.PID}

	out, errOut, code := d.cli(t, "status")
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "LAST ERROR") || !strings.Contains(out, "clicks") || !strings.Contains(out, "running") {
		t.Fatalf("status: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = d.cli(t, "status", "--json")
	var list []struct{ Name, State string }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "clicks" || list[0].State != "running" {
		t.Fatalf("status --json: %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"1", "2"} {
		out, errOut, code = d.cli(t, "call", "clicks.count", `"a"`)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Fatalf("call clicks.count \"a\": %d %q %s, want %s", code, out, errOut, want)
		}
	}
	out, errOut, code = d.cli(t, "reload", "clicks")
	if code != 0 || !strings.Contains(out, "clicks: gen 1 → 2") || !strings.Contains(out, "state keys") {
		t.Fatalf("reload: %d\n%s%s", code, out, errOut)
	}
	// State survived the swap.
	if out, errOut, code = d.cli(t, "call", "clicks.count", `"a"`); code != 0 || strings.TrimSpace(out) != "3" {
		t.Fatalf("call after reload: %d %q %s, want 3", code, out, errOut)
	}
	out, errOut, code = d.cli(t, "status", "clicks", "--json")
	var one struct{ Generation, PID int }
	if code != 0 || json.Unmarshal([]byte(out), &one) != nil || one.Generation != 2 {
		t.Fatalf("status clicks --json after reload: %d\n%s%s", code, out, errOut)
	}
	pids = append(pids, one.PID)
	out, errOut, code = d.cli(t, "logs", "clicks", "-n", "10")
	if code != 0 || !strings.Contains(out, "gen 2") {
		t.Fatalf("logs: %d\n%s%s", code, out, errOut)
	}
	// A function's own error (422) and an unknown symbol (404) exit 1.
	out, errOut, code = d.cli(t, "call", "clicks.count", "5")
	if code != 1 || !strings.HasPrefix(errOut, "plugvisor: ") || !strings.Contains(errOut, "string") || out != "" {
		t.Fatalf("failing call: %d %q %q", code, out, errOut)
	}
	if _, errOut, code = d.cli(t, "call", "clicks.nope"); code != 1 || !strings.Contains(errOut, "nope") {
		t.Fatalf("call of an unknown function: %d %q", code, errOut)
	}
	if _, errOut, code = d.cli(t, "reload", "nope"); code != 1 || !strings.Contains(errOut, "nope") {
		t.Fatalf("reload of an unknown plugin: %d %q", code, errOut)
	}

	d.stop(t)
	// The daemon reaped its plugins: no pid of theirs is left.
	for _, pid := range pids {
		if proc.Alive(pid) {
			t.Errorf("plugin process %d outlived the daemon", pid)
		}
	}
}

// waitRunning polls the API until plugin runs, failing after limit.
func waitRunning(t *testing.T, base, plugin string, limit time.Duration) supervisor.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		resp, err := authGet(base, "/plugins/"+plugin)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(body)
			var st supervisor.Status
			if json.Unmarshal(body, &st) == nil && st.State == supervisor.StateRunning && st.PID > 0 {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not running after %s: %s", plugin, limit, last)
		}
		<-tick.C
	}
}

func TestDevPrintsSwaps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	d := startDaemon(t, "dev")
	waitRunning(t, "http://"+d.addr, "clicks", 90*time.Second)
	if out, errOut, code := d.cli(t, "reload", "clicks", "--json"); code != 0 || !strings.Contains(out, `"generation": 2`) {
		t.Fatalf("reload --json: %d\n%s%s", code, out, errOut)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line := <-d.lines:
			if strings.HasPrefix(line, "clicks: gen 1 → 2 ") && strings.Contains(line, "swap ") && strings.Contains(line, "pause ") {
				d.stop(t)
				return
			}
		case <-timeout:
			t.Fatal("dev printed no line for the swap")
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[supervisor]\ndebounce = \"100ms\"\n\n[plugins.x]\ndriver = \"json\"\nbogus = 1\n"), 0o644)
	var out, errb bytes.Buffer
	if code := execute([]string{"validate", "-c", bad}, &out, &errb); code != 1 {
		t.Fatalf("validate of a broken config: exit %d, want 1\n%s", code, errb.String())
	}
	if e := errb.String(); !strings.Contains(e, "bad.toml:6") || !strings.Contains(e, "plugins.x.bogus") || !strings.HasPrefix(e, "plugvisor: ") {
		t.Fatalf("validate does not name the key and its line:\n%s", e)
	}
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[plugins.x]\ndriver = \"json\"\n"), 0o644)
	out.Reset()
	errb.Reset()
	if code := execute([]string{"validate", "-c", good}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "OK") {
		t.Fatalf("validate of a good config: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

func TestNewBuildsOutsideTheRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	dir := t.TempDir()
	offline := []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off"}
	out, errOut, code := cli(t, offline, "new", "demo", "--dir", dir, "--sdk", repoRoot(t))
	if code != 0 || !strings.Contains(out, "[plugins.demo]") || strings.Contains(out, "warning") {
		t.Fatalf("new demo: %d\n%s%s", code, out, errOut)
	}
	target := filepath.Join(dir, "demo")
	mod, err := os.ReadFile(filepath.Join(target, "go.mod"))
	if err != nil || !strings.Contains(string(mod), "replace github.com/plugvisor/plugvisor => "+repoRoot(t)) {
		t.Fatalf("go.mod: %v\n%s", err, mod)
	}
	// Offline: the scaffold's own test passes with go test ./... as written.
	test := exec.Command("go", "test", "-count=1", "./...")
	test.Dir = target
	test.Env = append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false", "GOPROXY=off")
	if b, err := test.CombinedOutput(); err != nil || !strings.Contains(string(b), "ok") {
		t.Fatalf("go test ./... in the scaffold: %v\n%s", err, b)
	}
	if _, errOut, code = cli(t, nil, "new", "demo", "--dir", dir); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("new over an existing folder: %d %s", code, errOut)
	}
	// A development build has no version to require: it asks for --sdk.
	if _, errOut, code = cli(t, nil, "new", "other", "--dir", dir); code != 1 || !strings.Contains(errOut, "--sdk") {
		t.Fatalf("new without --sdk from a development build: %d %s", code, errOut)
	}
}

func TestNewInsideTheRepoWritesNoGoMod(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/plugvisor/plugvisor\n\ngo 1.26\n"), 0o644)
	parent := filepath.Join(root, "examples")
	var out bytes.Buffer
	if err := scaffold(&out, "demo", parent, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(parent, "demo", "main.go")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(parent, "demo", "go.mod")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a go.mod was written inside the plugvisor module: %v", err)
	}
	if err := scaffold(&out, "9bad", parent, ""); err == nil {
		t.Fatal("new accepted an invalid plugin name")
	}
}

func TestClientUnreachable(t *testing.T) {
	var out, errb bytes.Buffer
	// Port 1 on loopback: nothing listens there.
	code := execute([]string{"status", "--api", "127.0.0.1:1", "--token", strings.Repeat("x", 64)}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "plugvisor: cannot reach the plugvisor API at http://127.0.0.1:1") {
		t.Fatalf("unreachable API: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := execute([]string{"call", "nodot"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "PLUGIN.FUNCTION") {
		t.Fatalf("call without a dot: %d %s", code, errb.String())
	}
}

func TestReportLine(t *testing.T) {
	got := reportLine("counter", report{From: 3, Generation: 4, BuildMS: 182.3, SwapMS: 12.41, PauseMS: 1.1, Drained: 5, StateKeys: 2})
	want := "counter: gen 3 → 4 build 182ms swap 12.4ms pause 1.1ms drained 5 state keys 2"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	noStatus := func(string) (supervisor.Status, error) { return supervisor.Status{}, errors.New("no such plugin") }
	line := (&devPrinter{status: noStatus}).devLine(supervisor.Event{Type: supervisor.EventBuildFailed, Plugin: "counter", Error: "/x/main.go:3:1: syntax error\n/x/main.go:4:2: undefined: y"})
	if !strings.Contains(line, "\n  /x/main.go:3:1: syntax error\n  /x/main.go:4:2: undefined: y") {
		t.Fatalf("build failure line: %q", line)
	}
}

// The SSE stream of a real daemon delivers build, swap and crash events in
// the order they happen.
func TestEventsStreamInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	d := startDaemon(t, "run")
	base := "http://" + d.addr
	st := waitRunning(t, base, "clicks", 90*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	types := make(chan string, 64)
	go func() {
		defer close(types)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				types <- ev
			}
		}
	}()
	if out, errOut, code := d.cli(t, "reload", "clicks"); code != 0 {
		t.Fatalf("reload: %d %s %s", code, out, errOut)
	}
	pid := waitRunning(t, base, "clicks", 30*time.Second).PID
	if pid == st.PID {
		t.Fatalf("reload kept pid %d", pid)
	}
	if err := killPID(pid); err != nil {
		t.Fatal(err)
	}
	want := []string{"build.started", "build.succeeded", "swap.started", "swap.finished", "plugin.crashed", "plugin.restarted"}
	var got []string
	for len(want) > 0 {
		select {
		case ev, ok := <-types:
			if !ok {
				t.Fatalf("stream ended; got %v, still waiting for %v", got, want)
			}
			got = append(got, ev)
			if ev == want[0] {
				want = want[1:]
			}
		case <-ctx.Done():
			t.Fatalf("got %v, still waiting for %v in order", got, want)
		}
	}
	cancel()
	d.stop(t)
}

// The scaffold of `plugvisor new` hot-reloads as is: edit, save, the new
// code serves with its state.
func TestNewScaffoldHotReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	dir := t.TempDir()
	if out, errOut, code := cli(t, nil, "new", "demo", "--dir", dir, "--sdk", repoRoot(t)); code != 0 {
		t.Fatalf("new demo: %d\n%s%s", code, out, errOut)
	}
	target := filepath.Join(dir, "demo")
	d := startDaemonWith(t, "dev", fmt.Sprintf("[plugins.demo]\ndriver = %q\n", target))
	base := "http://" + d.addr
	first := waitRunning(t, base, "demo", 90*time.Second)
	// The token and address by variable, from another folder.
	env := []string{"PLUGVISOR_API=" + d.addr, "PLUGVISOR_TOKEN=" + d.token}
	if out, errOut, code := cli(t, env, "call", "demo.greet", `"world"`); code != 0 || strings.TrimSpace(out) != `"hello, world (#1)"` {
		t.Fatalf("call: %d %q %s", code, out, errOut)
	}
	main := filepath.Join(target, "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), `"hello, %s (#%d)"`, `"hi, %s (#%d)"`, 1)
	if edited == string(src) {
		t.Fatal("the scaffold's greeting changed; update this test")
	}
	if err := os.WriteFile(main, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := waitRunning(t, base, "demo", 30*time.Second)
		if st.Generation >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no swap after the edit: %+v\n%s", st, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the daemon's status; the swap is what we wait for
	}
	if out, errOut, code := cli(t, env, "call", "demo.greet", `"world"`); code != 0 || strings.TrimSpace(out) != `"hi, world (#2)"` {
		t.Fatalf("call after the edit: %d %q %s", code, out, errOut)
	}
	// rollback says which build it went back to: the first one.
	if out, errOut, code := cli(t, env, "rollback", "demo"); code != 0 || !strings.Contains(out, "demo: rolled back to build "+first.Build) {
		t.Fatalf("rollback: %d %q %s (first build %s)", code, out, errOut, first.Build)
	}
	d.stop(t)
}

// plugvisor bench measures a real plugin and prints its table.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	clicks := filepath.Join(repoRoot(t), "examples", "clicks")
	out, errOut, code := cli(t, nil, "bench", "--plugin", clicks, "--calls", "200", "--swaps", "3", "--window", "100ms")
	if code != 0 {
		t.Fatalf("bench: %d\n%s%s", code, out, errOut)
	}
	for _, row := range []string{"call round trip p50 / p99", "pipelined calls, 64 in flight", "swap pause p50 / p99 (3 swaps under load)", "RSS",
		"pipeline source → sink", "pipeline source → function → sink", "pipeline source → 3 functions → sink", "pipeline output stall p99"} {
		if !strings.Contains(out, row) {
			t.Errorf("bench output lacks %q:\n%s", row, out)
		}
	}
}

// Test 4 (validate): a pipeline naming a misspelled symbol, a symbol of
// the wrong kind or a misspelled plugin is refused with a suggestion.
func TestValidatePipelineSymbols(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ pipeline, want string }{
		{`source = "up.upper"
functions = ["up.lower"]`, `plugin up has no source "upper" (up.upper is a function, and source needs a source)`},
		{`source = "up.x"
functions = ["up.uper"]`, `plugin up has no function "uper" — did you mean "up.upper"?; its functions: lower, upper`},
		{`source = "up.x"
functions = ["uq.upper"]`, `refers to plugin "uq", which is not configured (did you mean "up"?`},
	}
	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		os.WriteFile(path, []byte("[plugins.up]\ndriver = \"upper\"\n\n[[pipeline]]\nname = \"p\"\n"+c.pipeline+"\n"), 0o644)
		var out, errb bytes.Buffer
		if code := execute([]string{"validate", "-c", path}, &out, &errb); code != 1 {
			t.Fatalf("case %d: validate exit %d, want 1\n%s%s", i, code, out.String(), errb.String())
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("case %d: validate said:\n%s\nwant it to say: %s", i, errb.String(), c.want)
		}
	}
}
