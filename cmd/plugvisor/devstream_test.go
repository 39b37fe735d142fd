package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

const talkerPy = `import json, logging, sys, traceback
import plugvisor

def talk(ctx, x):
    print("plain stdout line", flush=True)
    print(json.dumps({"level": "warn", "time": "2026-01-02T03:04:05Z", "message": "disk low", "free_mb": 3}), flush=True)
    ctx.log.error("python says %s", x)
    try:
        raise ValueError("boom")
    except ValueError:
        traceback.print_exc()
    sys.stderr.flush()
    return x

if __name__ == "__main__":
    plugvisor.serve(name="talker", version="1.0.0", functions={"talk": talk})
`

// Plugin stdout, stderr and structured log lines reach the dev terminal
// with their real level and time, prefixed with the plugin's name; a
// traceback stays multi-line; --quiet keeps only plugvisor's lines.
func TestDevStreamShowsPluginOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon and a Python plugin")
	}
	dir := filepath.Join(t.TempDir(), "talker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.py"), []byte(talkerPy), 0o644)
	os.WriteFile(filepath.Join(dir, "plugin.json"), []byte(`{"name":"talker","version":"1.0.0","language":"python","executable":"main.py"}`), 0o644)
	for _, quiet := range []bool{false, true} {
		args := []string{"dev", dir, "--state", filepath.Join(t.TempDir(), "st")}
		if quiet {
			args = append(args, "--quiet")
		}
		d := startChild(t, "", nil, args[3], args...)
		waitRunning(t, "http://"+d.addr, "talker", 60*time.Second)
		if out, errOut, code := cli(t, d.env(), "call", "talker.talk", `"hi"`); code != 0 {
			t.Fatalf("call: %d %s %s", code, out, errOut)
		}
		want := []string{
			"talker | ",                                        // the prefix
			" out plain stdout line",                           // stdout, plain
			"05.000 WRN disk low free_mb=3",                    // JSON log line: its level, its time, its fields
			" ERR python says hi logger=plugvisor.talker.talk", // Python logging: its level
			" ERR Traceback (most recent call last):",          // the traceback's first line …
			`talker |   File "`,                                // … its frames as printed …
			" err ValueError: boom",                            // … and its last line
		}
		if quiet {
			// Nothing from the plugin: a swap line proves the stream runs.
			if out, errOut, code := cli(t, d.env(), "reload", "talker"); code != 0 {
				t.Fatalf("reload: %d %s %s", code, out, errOut)
			}
			want = []string{"talker: gen 1 → 2 "}
		}
		var got []string
		deadline := time.After(30 * time.Second)
		for missing := want; len(missing) > 0; {
			select {
			case l := <-d.lines:
				got = append(got, l)
				if quiet && strings.HasPrefix(l, "talker |") {
					t.Fatalf("--quiet printed plugin output: %q", l)
				}
				missing = missing[:0:0]
				for _, w := range want {
					if !anyContains(got, w) {
						missing = append(missing, w)
					}
				}
			case <-deadline:
				t.Fatalf("quiet=%v: dev stream lacks %q; got:\n%s", quiet, missing, strings.Join(got, "\n"))
			}
		}
		d.stop(t)
	}
}

func anyContains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

type fakeStatus map[string]supervisor.Status

func (f fakeStatus) get(name string) (supervisor.Status, error) {
	st, ok := f[name]
	if !ok {
		return st, os.ErrNotExist
	}
	return st, nil
}

// The dev messages say what serves: which generation keeps serving after
// a failed swap, that nothing serves after a failed first build, that a
// fix restoring the running code is noticed, no doubled prefixes.
func TestDevMessages(t *testing.T) {
	st := fakeStatus{"up": {Name: "up", State: supervisor.StateRunning, Generation: 3, PID: 42, Build: "b3"}}
	p := &devPrinter{status: st.get, failed: map[string]bool{}, drops: map[string]*drops{}}
	var out strings.Builder
	p.out = &out
	cases := []struct {
		e    supervisor.Event
		want string
	}{
		{supervisor.Event{Type: supervisor.EventSwapFailed, Plugin: "up", Generation: 4, Error: "swap failed: plugin failed to start: exit 1",
			Report: &supervisor.Report{From: 3}}, "up: swap to gen 4 failed, gen 3 keeps serving: plugin failed to start: exit 1\n"},
		{supervisor.Event{Type: supervisor.EventBuildFailed, Plugin: "new", Error: "main.go:1:1: x"},
			"new: build failed (nothing serves yet; save a fix):\n  main.go:1:1: x\n"},
		{supervisor.Event{Type: supervisor.EventBuildFailed, Plugin: "up", Error: "main.go:1:1: x"},
			"up: build failed (gen 3 keeps serving):\n  main.go:1:1: x\n"},
		{supervisor.Event{Type: supervisor.EventBuildSucceeded, Plugin: "up", Build: "b3"},
			"up: build ok again: the same code gen 3 runs, which keeps serving\n"},
		{supervisor.Event{Type: supervisor.EventBuildSucceeded, Plugin: "up", Build: "b4"}, ""}, // not after a failure: the swap line says it
		{supervisor.Event{Type: supervisor.EventPluginStarted, Plugin: "new", Generation: 1}, "new: serving (gen 1)\n"},
		{supervisor.Event{Type: supervisor.EventPluginCrashed, Plugin: "up", Generation: 3, Error: "plugin crashed: exit status 2; last output: panic: x | goroutine 1"},
			"up: gen 3 crashed: plugin crashed: exit status 2 (its output is above)\n"},
	}
	for _, c := range cases {
		out.Reset()
		p.event(c.e)
		if out.String() != c.want {
			t.Errorf("%s event:\n got %q\nwant %q", c.e.Type, out.String(), c.want)
		}
	}
	// A pipeline dropping every item prints the first drop, then a count.
	out.Reset()
	for range 5 {
		p.event(supervisor.Event{Type: "pipeline.dropped", Plugin: "f", Error: "bad item", Detail: "demo"})
	}
	p.flushDrops(time.Now().Add(2 * time.Second))
	if got := out.String(); !strings.HasPrefix(got, "pipeline demo: f dropped an item: bad item\npipeline demo: 4 more items dropped in ") {
		t.Fatalf("drops:\n%s", got)
	}
}

// logs -f prints a plugin's new output as it is printed, and stops
// cleanly on Ctrl-C.
func TestLogsFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon and a Python plugin")
	}
	dir := filepath.Join(t.TempDir(), "talker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.py"), []byte(talkerPy), 0o644)
	os.WriteFile(filepath.Join(dir, "plugin.json"), []byte(`{"name":"talker","version":"1.0.0","language":"python","executable":"main.py"}`), 0o644)
	d := startChild(t, "", nil, filepath.Join(dir, ".plugvisor"), "dev", "--quiet", dir)
	waitRunning(t, "http://"+d.addr, "talker", 60*time.Second)

	f := exec.Command(binary, "logs", "-f", "talker", "-n", "0", "--api", d.addr, "--token", d.token)
	stdout, err := f.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() { _ = f.Process.Kill(); _ = f.Wait() })
	// The follower may not have subscribed when the first call runs: call
	// until a line arrives.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for got := false; !got; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("logs -f ended")
			}
			got = strings.Contains(l, "stdout: plain stdout line")
		case <-tick.C:
			if out, errOut, code := cli(t, d.env(), "call", "talker.talk", `"hi"`); code != 0 {
				t.Fatalf("call: %d %s %s", code, out, errOut)
			}
		case <-deadline:
			t.Fatal("logs -f printed no new line within 30s")
		}
	}
	if err := f.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := f.Wait(); err != nil {
		t.Fatalf("logs -f after Ctrl-C: %v", err)
	}
	d.stop(t)
}
