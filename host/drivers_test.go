package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// TestBinaryDriver swaps a local binary replaced by copy-then-rename and by
// a slow write in place (once, after the file is complete), then refuses a
// binary whose checksum differs from the config's.
func TestBinaryDriver(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeModule(t, src, "b1")
	b1 := filepath.Join(dir, "b1")
	goBuild(t, src, b1)
	writeFile(t, filepath.Join(src, "version.go"), versionGo("b2"))
	b2 := filepath.Join(dir, "b2")
	goBuild(t, src, b2)
	drop := filepath.Join(dir, "drop", "plug")
	copyFile(t, b1, drop)

	base := "[supervisor]\ndebounce = \"20ms\"\nstop_grace = \"1s\"\nstate_dir = \"st\"\n[plugins.plug]\ndriver = \"./drop/plug\"\n"
	hs := startHost(t, dir, base, Options{})
	if got := hs.call("plug", "version"); got != `"b1"` {
		t.Fatalf("version = %s", got)
	}
	hs.call("plug", "count")

	t.Run("copy then rename", func(t *testing.T) {
		m := hs.rec.mark()
		copyFile(t, b2, drop+".new")
		must(t, os.Rename(drop+".new", drop))
		hs.waitVersion("b2")
		if got := hs.call("plug", "count"); got != "2" {
			t.Errorf("count = %s, want 2 (state kept)", got)
		}
		if n := hs.rec.count(m, supervisor.EventSwapFinished, "plug"); n != 1 {
			t.Errorf("%d swaps, want 1", n)
		}
	})

	t.Run("slow write in place", func(t *testing.T) {
		m := hs.rec.mark()
		data, err := os.ReadFile(b1)
		must(t, err)
		f, err := os.OpenFile(drop, os.O_WRONLY|os.O_TRUNC, 0o755)
		must(t, err)
		// A slow writer (not synchronisation): pauses longer than the
		// debounce end batches mid-write, so only WaitStable prevents a swap
		// to a partial file.
		chunk := len(data)/6 + 1
		for off := 0; off < len(data); off += chunk {
			_, err := f.Write(data[off:min(off+chunk, len(data))])
			must(t, err)
			time.Sleep(40 * time.Millisecond)
		}
		must(t, f.Close())
		hs.waitVersion("b1")
		// One more, so any swap the partial file caused would be counted.
		copyFile(t, b2, drop+".new")
		must(t, os.Rename(drop+".new", drop))
		hs.waitVersion("b2")
		if n := hs.rec.count(m, supervisor.EventSwapFinished, "plug"); n != 2 {
			t.Errorf("%d swaps for two replacements, want 2; events: %s", n, hs.rec.dump(m))
		}
		if n := hs.rec.count(m, supervisor.EventSwapFailed, "plug"); n != 0 {
			t.Errorf("%d failed swaps (a partial binary was started?); events: %s", n, hs.rec.dump(m))
		}
	})

	t.Run("checksum mismatch refused", func(t *testing.T) {
		m := hs.rec.mark()
		sum := fileSum(t, b2) // the binary serving now
		writeFile(t, hs.cfg, base+"checksum = \"sha256:"+sum+"\"\n")
		hs.rec.waitFor(t, m, supervisor.EventConfigApplied, "")
		m = hs.rec.mark()
		copyFile(t, b1, drop+".new")
		must(t, os.Rename(drop+".new", drop))
		e, _ := hs.rec.waitFor(t, m, supervisor.EventSwapFailed, "plug")
		if !strings.Contains(e.Error, "refusing") || !strings.Contains(e.Error, sum) {
			t.Errorf("refusal = %q, want it to name the checksum", e.Error)
		}
		if got := hs.call("plug", "version"); got != `"b2"` {
			t.Errorf("version = %s, want the old b2 serving", got)
		}
		st, err := hs.h.Status("plug")
		must(t, err)
		if !strings.Contains(st.LastError, "refusing") {
			t.Errorf("last_error = %q, want the refusal", st.LastError)
		}
	})
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	must(t, os.WriteFile(to, data, 0o755))
}

func fileSum(t testing.TB, path string) string {
	data, err := os.ReadFile(path)
	must(t, err)
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func git(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestRemoteDriver fetches a Go plugin from a bare git repository, builds
// and serves it, serves a new commit after Reload, and refuses a commit
// with a symlink escaping the folder while the old build serves on.
// remoteRepo makes a bare git repository in dir holding a plugin module
// at version, and the work tree that pushes to it.
func remoteRepo(t *testing.T, dir, version string) (bare, work string) {
	t.Helper()
	bare = filepath.Join(dir, "remote.git")
	work = filepath.Join(dir, "work")
	must(t, os.MkdirAll(bare, 0o755))
	git(t, bare, "init", "-q", "--bare", "-b", "main")
	writeModule(t, work, version)
	git(t, work, "init", "-q", "-b", "main")
	git(t, work, "add", ".")
	git(t, work, "commit", "-q", "-m", version)
	git(t, work, "push", "-q", bare, "main")
	return bare, work
}

// push commits a new version in work and pushes it to bare.
func push(t *testing.T, bare, work, version string) {
	t.Helper()
	writeFile(t, filepath.Join(work, "version.go"), versionGo(version))
	git(t, work, "commit", "-q", "-am", version)
	git(t, work, "push", "-q", bare, "main")
}

func TestRemoteDriver(t *testing.T) {
	dir := t.TempDir()
	bare, work := remoteRepo(t, dir, "r1")

	hs := startHost(t, dir, supervisorTOML("")+"[plugins.plug]\ndriver = \"git::file://"+bare+"\"\n"+buildEnv, Options{})
	if got := hs.call("plug", "version"); got != `"r1"` {
		t.Fatalf("version = %s", got)
	}
	hs.call("plug", "count")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	push(t, bare, work, "r2")
	rep, err := hs.h.Reload(ctx, "plug", false)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if rep == nil || rep.BuildMS <= 0 {
		t.Errorf("report %+v: want a build time", rep)
	}
	if got := hs.call("plug", "version"); got != `"r2"` {
		t.Fatalf("after reload version = %s, want r2", got)
	}
	if got := hs.call("plug", "count"); got != "2" {
		t.Errorf("count = %s, want 2 (state kept)", got)
	}

	must(t, os.Symlink("/etc/passwd", filepath.Join(work, "evil")))
	git(t, work, "add", "evil")
	git(t, work, "commit", "-q", "-m", "symlink")
	git(t, work, "push", "-q", bare, "main")
	if _, err := hs.h.Reload(ctx, "plug", false); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("reload with an escaping symlink: err = %v, want a refusal", err)
	}
	if got := hs.call("plug", "version"); got != `"r2"` {
		t.Errorf("version = %s, want r2 serving on", got)
	}
	if st, _ := hs.h.Status("plug"); !strings.Contains(st.LastError, "symlink") || st.Kind != "remote" {
		t.Errorf("status kind %s last_error %q", st.Kind, st.LastError)
	}
}

// TestConfigHotApply edits the config file under a running host: add,
// change a plugin's config (swap), remove, and an invalid edit that changes nothing.
func TestConfigHotApply(t *testing.T) {
	dir := t.TempDir()
	base := supervisorTOML("mode = \"inproc\"")
	hs := startHost(t, dir, base+"[plugins.a]\ndriver = \"json\"\n", Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	call := func(plugin, fn, in string) (string, error) {
		out, err := hs.h.Call(ctx, plugin, fn, []byte(in))
		return string(out), err
	}
	edit := func(toml string) supervisor.Event {
		t.Helper()
		m := hs.rec.mark()
		writeFile(t, hs.cfg, toml)
		e, _ := hs.rec.waitFor(t, m, supervisor.EventConfigApplied, "")
		return e
	}

	if e := edit(base + "[plugins.a]\ndriver = \"json\"\n[plugins.b]\ndriver = \"json\"\n"); e.Error != "" {
		t.Fatalf("add: %s", e.Error)
	}
	if out, err := call("b", "compact", `{ "x": 1 }`); err != nil || out != `{"x":1}` {
		t.Fatalf("added plugin b: %s, %v", out, err)
	}

	gen := func(name string) int {
		st, err := hs.h.Status(name)
		must(t, err)
		return st.Generation
	}
	g := gen("b")
	if e := edit(base + "[plugins.a]\ndriver = \"json\"\n[plugins.b]\ndriver = \"json\"\n[plugins.b.config]\nk = 1\n"); e.Error != "" {
		t.Fatalf("change: %s", e.Error)
	}
	if got := gen("b"); got != g+1 {
		t.Errorf("changed config: generation %d, want %d (swapped)", got, g+1)
	}

	if e := edit(base + "[plugins.b]\ndriver = \"json\"\n"); e.Error != "" {
		t.Fatalf("remove: %s", e.Error)
	}
	if _, err := hs.h.Status("a"); !errors.Is(err, supervisor.ErrUnknownPlugin) {
		t.Errorf("removed plugin a: err = %v, want ErrUnknownPlugin", err)
	}
	if out, err := call("b", "compact", `[ 1 ]`); err != nil || out != `[1]` {
		t.Errorf("b after removing a: %s, %v", out, err)
	}

	before := hs.h.Statuses()
	e := edit(base + "[plugins.b]\ndriver = \"json\"\nbogus = 1\n")
	if !strings.Contains(e.Error, "bogus") {
		t.Errorf("invalid edit: event error %q, want it to name the bad key", e.Error)
	}
	after := hs.h.Statuses()
	if len(after) != len(before) || after[0].Name != "b" || after[0].Generation != before[0].Generation {
		t.Errorf("invalid edit changed something: before %+v after %+v", before, after)
	}
}

// TestRuntimePlugins adds and removes plugins through the API calls and
// lists their symbols.
func TestRuntimePlugins(t *testing.T) {
	hs := startHost(t, t.TempDir(), supervisorTOML("mode = \"inproc\""), Options{NoWatch: true})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := hs.h.AddPlugin(ctx, "j", "nosuchbuiltin", nil); err == nil {
		t.Error("adding an unknown builtin should fail")
	}
	st, err := hs.h.AddPlugin(ctx, "j", "json", map[string]any{"k": "v"})
	if err != nil || st.Name != "j" {
		t.Fatalf("add: %+v, %v", st, err)
	}
	if _, err := hs.h.AddPlugin(ctx, "j", "json", nil); err == nil {
		t.Error("adding a duplicate should fail")
	}
	if out, err := hs.h.Call(ctx, "j", "compact", []byte(`[ 2 ]`)); err != nil || string(out) != "[2]" {
		t.Fatalf("call: %s, %v", out, err)
	}
	found := false
	for _, s := range hs.h.Symbols() {
		found = found || (s.Plugin == "j" && s.Kind == "function" && s.Name == "compact")
	}
	if !found {
		t.Errorf("symbols %v lack j.compact", hs.h.Symbols())
	}
	must(t, hs.h.RemovePlugin(ctx, "j"))
	if _, err := hs.h.Call(ctx, "j", "compact", nil); !errors.Is(err, supervisor.ErrUnknownPlugin) {
		t.Errorf("call after remove: %v, want ErrUnknownPlugin", err)
	}
	if err := hs.h.RemovePlugin(ctx, "j"); !errors.Is(err, supervisor.ErrUnknownPlugin) {
		t.Errorf("second remove: %v, want ErrUnknownPlugin", err)
	}
}

// TestCommandPlugin runs the Python example and restarts it with its state
// when a file in its folder changes.
func TestCommandPlugin(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	py := filepath.Join(dir, "py")
	for _, f := range []string{"main.py", "plugin.json"} {
		copyFile(t, filepath.Join(repoRoot(t), "examples", "pydemo", f), filepath.Join(py, f))
	}
	hs := startHost(t, dir, supervisorTOML("")+"[plugins.py]\ndriver = \"./py\"\n", Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if out, err := hs.h.Call(ctx, "py", "count", nil); err != nil || string(out) != "1" {
		t.Fatalf("count: %s, %v (logs: %v)", out, err, hs.h.Supervisor().Plugins())
	}
	m := hs.rec.mark()
	writeFile(t, filepath.Join(py, "notes.txt"), "touch\n")
	e, _ := hs.rec.waitFor(t, m, supervisor.EventSwapFinished, "py")
	if e.Generation != 2 {
		t.Errorf("swap to generation %d, want 2", e.Generation)
	}
	if out, err := hs.h.Call(ctx, "py", "count", nil); err != nil || string(out) != "2" {
		t.Errorf("count after restart: %s, %v (want 2: state kept)", out, err)
	}
}

// A remote driver with an update interval picks up a new commit by itself.
func TestRemoteUpdateInterval(t *testing.T) {
	dir := t.TempDir()
	bare, work := remoteRepo(t, dir, "u1")

	hs := startHost(t, dir, supervisorTOML("")+"[plugins.plug]\ndriver = \"git::file://"+bare+"\"\nupdate = \"200ms\"\n"+buildEnv, Options{})
	if got := hs.call("plug", "version"); got != `"u1"` {
		t.Fatalf("version = %s", got)
	}
	m := hs.rec.mark()
	push(t, bare, work, "u2")
	hs.rec.waitFor(t, m, supervisor.EventSwapFinished, "plug")
	if got := hs.call("plug", "version"); got != `"u2"` {
		t.Fatalf("after the update interval version = %s, want u2", got)
	}
}
