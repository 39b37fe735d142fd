package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/internal/proc"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// atomicWrite replays kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go),
// the way a ConfigMap volume is updated: the files go into a new
// timestamped folder, a `..data_tmp` symlink to it is renamed over
// `..data`, the user-visible names are symlinks through `..data` (made
// once), and the old timestamped folder is removed.
func atomicWrite(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// configEvents streams the daemon's config.applied events.
func configEvents(t *testing.T, base string) <-chan supervisor.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	resp, err := authDo(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	out := make(chan supervisor.Event, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e supervisor.Event
			if json.Unmarshal([]byte(data), &e) == nil && e.Type == supervisor.EventConfigApplied {
				out <- e
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	return out
}

// nextApplied waits for the next config.applied event.
func nextApplied(t *testing.T, evs <-chan supervisor.Event, what string) supervisor.Event {
	t.Helper()
	select {
	case e, ok := <-evs:
		if !ok {
			t.Fatalf("%s: event stream ended", what)
		}
		return e
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no config.applied event", what)
	}
	return supervisor.Event{}
}

// detailList returns one list ("added", "removed", "changed") of a
// config.applied event.
func detailList(e supervisor.Event, key string) []string {
	m, _ := e.Detail.(map[string]any)
	l, _ := m[key].([]any)
	out := []string{}
	for _, v := range l {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// pluginNames lists the plugins the API reports, with their states.
func pluginNames(t *testing.T, base string) map[string]string {
	t.Helper()
	code, body := get(t, base+"/plugins")
	var list []supervisor.Status
	if code != 200 || json.Unmarshal(body, &list) != nil {
		t.Fatalf("GET /plugins: %d %s", code, body)
	}
	out := map[string]string{}
	for _, s := range list {
		out[s.Name] = string(s.State)
	}
	return out
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := authDo(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// holdsFor checks cond every 50ms for d (an observation window, not a
// synchronisation): the running set must stay as it is.
func holdsFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := cond(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sameSet(got map[string]string, want ...string) error {
	names := make([]string, 0, len(got))
	for n, st := range got {
		if supervisor.State(st) != supervisor.StateRunning {
			return fmt.Errorf("plugin %s is %s", n, st)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		return fmt.Errorf("plugins %v, want %v", names, want)
	}
	return nil
}

const inprocHead = "[supervisor]\napi = \"127.0.0.1:0\"\nmode = \"inproc\"\nconfig_check = \"100ms\"\n\n"

// Test 1 of issue 14: a ConfigMap update (kubelet's atomic symlink swap) is
// applied once, a second one too, and a broken one is refused with the
// running set kept. Each swap makes several events (a folder made, a
// symlink renamed, a folder removed); an update applied twice would show
// as an extra event before the next one's.
func TestConfigMapUpdates(t *testing.T) {
	dir := t.TempDir()
	// The content check is off (1h): the watch alone must see each swap.
	inprocHead := strings.Replace(inprocHead, `config_check = "100ms"`, `config_check = "1h"`, 1)
	atomicWrite(t, dir, map[string]string{"config.toml": inprocHead + "[plugins.a]\ndriver = \"upper\"\n"})
	d := startDaemonConfig(t, "run", filepath.Join(dir, "config.toml"))
	base := "http://" + d.addr
	waitUp(t, base, "a")
	evs := configEvents(t, base)

	atomicWrite(t, dir, map[string]string{"config.toml": inprocHead + "[plugins.a]\ndriver = \"upper\"\n[plugins.b]\ndriver = \"json\"\n"})
	e := nextApplied(t, evs, "first update")
	if e.Error != "" || strings.Join(detailList(e, "added"), ",") != "b" {
		t.Fatalf("first update: %+v", e)
	}
	atomicWrite(t, dir, map[string]string{"config.toml": inprocHead + "[plugins.b]\ndriver = \"json\"\n"})
	e = nextApplied(t, evs, "second update")
	if e.Error != "" || strings.Join(detailList(e, "removed"), ",") != "a" || len(detailList(e, "added")) != 0 {
		t.Fatalf("second update: %+v", e)
	}
	atomicWrite(t, dir, map[string]string{"config.toml": inprocHead + "[plugins.b\ndriver = \"json\"\n"})
	e = nextApplied(t, evs, "broken update")
	if !strings.Contains(e.Error, "config.toml") || !strings.Contains(e.Error, "nothing changed") {
		t.Fatalf("broken update: want an error naming the file, got %+v", e)
	}
	holdsFor(t, time.Second, func() error { return sameSet(pluginNames(t, base), "b") })
	// The fence: the next event must be this update's, so nothing was
	// applied or refused twice above.
	atomicWrite(t, dir, map[string]string{"config.toml": inprocHead + "[plugins.b]\ndriver = \"json\"\n[plugins.c]\ndriver = \"upper\"\n"})
	e = nextApplied(t, evs, "fixed update")
	if e.Error != "" || strings.Join(detailList(e, "added"), ",") != "c" {
		t.Fatalf("fixed update: %+v (an update applied twice, or the refusal repeated)", e)
	}
	waitUp(t, base, "c")
	if err := sameSet(pluginNames(t, base), "b", "c"); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
}

// symlinkedDaemon runs `plugvisor run` on etc/config.toml, a symlink to
// real/config.toml (head plus plugin a), where no watch of etc sees a
// change: it returns the real file, the daemon and its config events.
func symlinkedDaemon(t *testing.T, head string) (string, *child, <-chan supervisor.Event) {
	t.Helper()
	dir := t.TempDir()
	real := filepath.Join(dir, "real", "config.toml")
	os.MkdirAll(filepath.Dir(real), 0o755)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(real, []byte(head+"[plugins.a]\ndriver = \"upper\"\n"), 0o644)
	link := filepath.Join(dir, "etc", "config.toml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	d := startDaemonConfig(t, "run", link)
	base := "http://" + d.addr
	waitUp(t, base, "a")
	return real, d, configEvents(t, base)
}

// A change no watch can see (the config is a symlink to a file in another
// folder) is found by the periodic content check.
func TestConfigCheckCatchesUnwatchedChange(t *testing.T) {
	real, d, evs := symlinkedDaemon(t, inprocHead)
	os.WriteFile(real, []byte(inprocHead+"[plugins.a]\ndriver = \"upper\"\n[plugins.b]\ndriver = \"json\"\n"), 0o644)
	if e := nextApplied(t, evs, "unwatched change"); e.Error != "" || strings.Join(detailList(e, "added"), ",") != "b" {
		t.Fatalf("unwatched change: %+v", e)
	}
	d.stop(t)
}

// SIGHUP re-reads the config, with the periodic check off and no watch
// that could see the change.
func TestSIGHUPRereadsConfig(t *testing.T) {
	head := strings.Replace(inprocHead, `config_check = "100ms"`, `config_check = "0s"`, 1)
	real, d, evs := symlinkedDaemon(t, head)
	os.WriteFile(real, []byte(head+"[plugins.b]\ndriver = \"json\"\n"), 0o644)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e := nextApplied(t, evs, "SIGHUP")
	if e.Error != "" || strings.Join(detailList(e, "added"), ",") != "b" || strings.Join(detailList(e, "removed"), ",") != "a" {
		t.Fatalf("after SIGHUP: %+v", e)
	}
	d.stop(t)
}

// Issue 9: truncating config.toml to zero bytes (an in-place save caught
// mid-write) changes nothing; the save's end is applied.
func TestEmptyConfigIsASaveInProgress(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(inprocHead+"[plugins.a]\ndriver = \"upper\"\n"), 0o644)
	d := startDaemonConfig(t, "run", cfg)
	base := "http://" + d.addr
	waitUp(t, base, "a")
	evs := configEvents(t, base)
	if err := os.Truncate(cfg, 0); err != nil {
		t.Fatal(err)
	}
	holdsFor(t, time.Second, func() error { return sameSet(pluginNames(t, base), "a") })
	os.WriteFile(cfg, []byte(inprocHead+"[plugins.a]\ndriver = \"upper\"\n[plugins.b]\ndriver = \"json\"\n"), 0o644)
	e := nextApplied(t, evs, "save completed")
	if e.Error != "" || strings.Join(detailList(e, "added"), ",") != "b" || len(detailList(e, "removed")) != 0 {
		t.Fatalf("the first event after the empty file must be the completed save: %+v", e)
	}
	d.stop(t)
	if !strings.Contains(d.logs.String(), "config file is empty") {
		t.Fatalf("no log line for the empty file:\n%s", d.logs.String())
	}
}

type readyBody struct {
	Status   string `json:"status"`
	NotReady []struct {
		Kind, Name, Reason string
	} `json:"not_ready"`
}

func readyz(t *testing.T, base string) (int, readyBody) {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var rb readyBody
	if err := json.Unmarshal(body, &rb); err != nil {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	return code, rb
}

// Test 2 of issue 14: /readyz is 503 while a plugin builds or has failed,
// naming it, and 200 once all serve; `required = false` excludes one.
func TestReadyz(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'no plugin here' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	clicks := filepath.Join(repoRoot(t), "examples", "clicks")
	head := "[supervisor]\napi = \"127.0.0.1:0\"\nmode = \"inproc\"\nbackoff_max = \"200ms\"\n\n"
	plugins := fmt.Sprintf("[plugins.clicks]\ndriver = %q\n[plugins.bad]\ndriver = %q\n", clicks, bad)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(head+plugins), 0o644)
	d := startDaemonConfig(t, "run", cfg)
	base := "http://" + d.addr

	// Until clicks runs, /readyz must not say ready; once it runs, it is
	// 503 for bad alone.
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, rb := readyz(t, base)
		if code == 200 {
			t.Fatalf("/readyz 200 while bad cannot start: %+v", rb)
		}
		st := pluginNames(t, base)
		if supervisor.State(st["clicks"]) == supervisor.StateRunning && len(rb.NotReady) == 1 {
			if n := rb.NotReady[0]; n.Kind != "plugin" || n.Name != "bad" || n.Reason == "" {
				t.Fatalf("want bad alone not ready, got %+v", rb)
			}
			break
		}
		for _, n := range rb.NotReady {
			if n.Name == "clicks" && !strings.Contains(n.Reason, "starting") {
				t.Fatalf("clicks before its first start: reason %q", n.Reason)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("clicks never ran: %+v %v", rb, st)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// required = false: bad no longer holds readiness back.
	os.WriteFile(cfg, []byte(head+strings.Replace(plugins, "[plugins.bad]\n", "[plugins.bad]\nrequired = false\n", 1)), 0o644)
	waitReadyz(t, base, 200)
	// Required again with a working driver: 200 once it serves.
	os.WriteFile(cfg, []byte(head+fmt.Sprintf("[plugins.clicks]\ndriver = %q\n[plugins.bad]\ndriver = \"upper\"\n", clicks)), 0o644)
	waitUp(t, base, "bad")
	waitReadyz(t, base, 200)
	if code, body := get(t, base+"/livez"); code != 200 || !strings.Contains(string(body), `"protocol"`) {
		t.Fatalf("/livez: %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(string(body), `plugvisor_build_info{goversion="go`) {
		t.Fatalf("/metrics has no plugvisor_build_info: %d", code)
	}
	out, _, code := cli(t, nil, "version", "--json")
	var v struct {
		Protocol  int    `json:"protocol"`
		GoVersion string `json:"go_version"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Protocol != transport.Version || !strings.HasPrefix(v.GoVersion, "go") {
		t.Fatalf("version --json: %d %s", code, out)
	}
	d.stop(t)
}

func waitReadyz(t *testing.T, base string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, rb := readyz(t, base)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d, want %d: %+v", code, want, rb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUp waits until plugin runs (in process or not).
func waitUp(t *testing.T, base, plugin string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for supervisor.State(pluginNames(t, base)[plugin]) != supervisor.StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("%s not running after 30s", plugin)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// callJSON calls plugin.fn through the API and decodes the result.
func callJSON(t *testing.T, base, fn string, in any, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", base+"/functions/"+fn, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := authDo(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, out) != nil {
		t.Fatalf("call %s: %d %s", fn, resp.StatusCode, body)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitLines waits until path holds at least n complete lines.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if l := readLines(t, path); len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d lines after 60s", path, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processGone(pid int) bool {
	return !proc.Alive(pid)
}

// Test 3 of issue 14: SIGTERM stops the daemon with exit 0 within
// shutdown_timeout, leaves no plugin process, and checkpoints state: a
// daemon restarted on the same state_dir continues every counter exactly.
func TestSIGTERMCheckpointsAndExits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	dir := t.TempDir()
	ex := filepath.Join(repoRoot(t), "examples")
	out := filepath.Join(dir, "out.jsonl")
	// A checkpoint interval far beyond the test: only the stop checkpoints.
	// A pipeline runs too: counter's ticks into filesink, which must go on
	// from where it stopped, no item lost or repeated.
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[supervisor]
api = "127.0.0.1:0"
checkpoint_interval = "1h"
shutdown_timeout = "20s"

[plugins.clicks]
driver = %q
[plugins.counter]
driver = %q
[plugins.counter.config]
interval = "2ms"
[plugins.filesink]
driver = %q
[plugins.filesink.config]
path = %q

[[pipeline]]
name = "p"
source = "counter.ticks"
sink = "filesink.append"
`, filepath.Join(ex, "clicks"), filepath.Join(ex, "counter"), filepath.Join(ex, "filesink"), out)), 0o644)
	d := startDaemonConfig(t, "run", cfg)
	base := "http://" + d.addr
	pid := waitRunning(t, base, "clicks", 90*time.Second).PID
	pids := []int{pid, waitRunning(t, base, "counter", 90*time.Second).PID, waitRunning(t, base, "filesink", 90*time.Second).PID}
	waitLines(t, out, 20)
	want := map[string]int64{"a": 3, "b": 1, "c": 7}
	for k, n := range want {
		for range n {
			var v int64
			callJSON(t, base, "clicks/count", k, &v)
		}
	}
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.done = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v (want status 0)\n%s", err, d.logs.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatal("no exit within shutdown_timeout")
	}
	t.Logf("stopped in %v", time.Since(start))
	for _, pid := range pids {
		if !processGone(pid) {
			t.Fatalf("plugin pid %d outlived the daemon", pid)
		}
	}
	before := len(readLines(t, out))
	d2 := startDaemonConfig(t, "run", cfg)
	base = "http://" + d2.addr
	waitRunning(t, base, "clicks", 90*time.Second)
	lines := waitLines(t, out, before+20)
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("pipeline output line %d is %q, want %d (%d lines before the restart)", i+1, l, i+1, before)
		}
	}
	for k, n := range want {
		var v int64
		callJSON(t, base, "clicks/get", k, &v)
		if v != n {
			t.Fatalf("counter %s = %d after the restart, want %d", k, v, n)
		}
		callJSON(t, base, "clicks/count", k, &v)
		if v != n+1 {
			t.Fatalf("counter %s counted to %d, want %d", k, v, n+1)
		}
	}
	st2 := time.Now()
	d2.stop(t)
	t.Logf("second stop in %v", time.Since(st2))
}

// Test 4 of issue 14: with NOTIFY_SOCKET (here an abstract socket, as
// systemd often hands out), the daemon sends READY=1 once its plugins are
// up, WATCHDOG=1 pings when WATCHDOG_USEC is set, and STOPPING=1 on
// SIGTERM.
func TestSdNotify(t *testing.T) {
	name := fmt.Sprintf("@plugvisor-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("no abstract unix datagram sockets here: %v", err)
	}
	defer conn.Close()
	msgs := make(chan string, 16)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(inprocHead+"[plugins.a]\ndriver = \"upper\"\n[plugins.b]\ndriver = \"json\"\n"), 0o644)
	// WATCHDOG_USEC of 400ms: a ping every 200ms while the host answers.
	d := startDaemonConfig(t, "run", cfg, "NOTIFY_SOCKET="+name, "WATCHDOG_USEC=400000")
	base := "http://" + d.addr
	next := func(what string) string {
		select {
		case m := <-msgs:
			return m
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s message", what)
		}
		return ""
	}
	m := next("READY=1")
	if !strings.HasPrefix(m, "READY=1\n") || !strings.Contains(m, "STATUS=serving") {
		t.Fatalf("first message %q, want READY=1 with STATUS=serving", m)
	}
	if err := sameSet(pluginNames(t, base), "a", "b"); err != nil {
		t.Fatalf("READY=1 before the plugins were up: %v", err)
	}
	if m := next("WATCHDOG=1"); m != "WATCHDOG=1" {
		t.Fatalf("after READY=1: %q, want WATCHDOG=1", m)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		m := next("STOPPING=1")
		if m == "STOPPING=1" {
			break
		}
		if m != "WATCHDOG=1" {
			t.Fatalf("after SIGTERM: %q, want STOPPING=1", m)
		}
	}
	select {
	case err := <-d.exited:
		d.done = true
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit")
	}
}
