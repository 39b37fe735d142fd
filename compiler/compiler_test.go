package compiler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Prove the builds need no network; modules are stdlib-only.
	os.Setenv("GOPROXY", "off")
	os.Setenv("GOTOOLCHAIN", "local")
	goleak.VerifyTestMain(m)
}

const goMod = "module example.com/p\n\ngo 1.26\n"

func mainGo(msg string) string {
	return "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"" + msg + "\")\n}\n"
}

// writeFiles writes files (relative path → content) under root.
func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// newModule makes a one-package module and a bin dir; it returns both.
func newModule(t testing.TB, msg string) (pkg, bin string) {
	t.Helper()
	root := t.TempDir()
	pkg = filepath.Join(root, "p")
	writeFiles(t, pkg, map[string]string{"go.mod": goMod, "main.go": mainGo(msg)})
	return pkg, filepath.Join(root, "bin")
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustBuild(t testing.TB, plugin, pkg string, opts Options) *Result {
	t.Helper()
	res, err := Build(ctxT(t), plugin, pkg, opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return res
}

func sha12(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:12]
}

func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func runBinary(t testing.TB, bin string) string {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("run %s: %v\n%s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestBuildProducesHashedExecutable(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "v1")
	res := mustBuild(t, "counter", pkg, Options{BinDir: bin})

	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(res.ID) {
		t.Fatalf("ID %q is not 12 hex digits", res.ID)
	}
	want := filepath.Join(bin, "counter", "counter-"+res.ID)
	if res.Binary != want {
		t.Fatalf("Binary = %s, want %s", res.Binary, want)
	}
	fi, err := os.Stat(res.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("binary mode %v is not executable", fi.Mode())
	}
	if got := sha12(t, res.Binary); got != res.ID {
		t.Fatalf("ID %s is not the binary's hash %s", res.ID, got)
	}
	if !res.Changed {
		t.Fatal("first build (no current) must be Changed")
	}
	if res.Plugin != "counter" || res.Duration <= 0 {
		t.Fatalf("Plugin %q Duration %v", res.Plugin, res.Duration)
	}
	if got := runBinary(t, res.Binary); got != "v1" {
		t.Fatalf("binary printed %q", got)
	}
	if res.WatchSet.Module != pkg || !res.WatchSet.Matches(filepath.Join(pkg, "main.go")) {
		t.Fatalf("watch set %+v does not cover the package", res.WatchSet)
	}
	if tmp := tempFiles(t, filepath.Join(bin, "counter")); len(tmp) > 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
	// Build does not point current.
	if _, err := Current(bin, "counter"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Current after Build = %v, want ErrNotExist", err)
	}
}

func TestRebuildUnchangedAndChanged(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "v1")
	opts := Options{BinDir: bin}
	first := mustBuild(t, "counter", pkg, opts)
	if err := SetCurrent(bin, "counter", first.Binary); err != nil {
		t.Fatal(err)
	}
	info1, _ := os.Stat(first.Binary)

	again := mustBuild(t, "counter", pkg, opts)
	if again.Changed || again.ID != first.ID || again.Binary != first.Binary {
		t.Fatalf("unchanged rebuild: %+v, first %+v", again, first)
	}
	if bs, _ := Builds(bin, "counter"); len(bs) != 1 {
		t.Fatalf("unchanged rebuild left %d builds: %v", len(bs), bs)
	}
	if info2, _ := os.Stat(first.Binary); !os.SameFile(info1, info2) {
		t.Fatal("unchanged rebuild replaced the running binary's file")
	}

	writeFiles(t, pkg, map[string]string{"main.go": mainGo("v2")})
	edited := mustBuild(t, "counter", pkg, opts)
	if !edited.Changed || edited.ID == first.ID {
		t.Fatalf("edit: Changed %v ID %s (first %s)", edited.Changed, edited.ID, first.ID)
	}
	if got := runBinary(t, edited.Binary); got != "v2" {
		t.Fatalf("new build printed %q", got)
	}
	bs, err := Builds(bin, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bs, []string{edited.Binary, first.Binary}) {
		t.Fatalf("Builds = %v, want newest first", bs)
	}
	if cur, _ := Current(bin, "counter"); cur != first.Binary {
		t.Fatalf("Build moved current to %s", cur)
	}
}

func TestCompileErrorKeepsPreviousBuild(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "v1")
	opts := Options{BinDir: bin}
	good := mustBuild(t, "counter", pkg, opts)
	if err := SetCurrent(bin, "counter", good.Binary); err != nil {
		t.Fatal(err)
	}

	broken := "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(undefinedThing)\n}\n"
	writeFiles(t, pkg, map[string]string{"main.go": broken})
	res, err := Build(ctxT(t), "counter", pkg, opts)
	var be *BuildError
	if !errors.As(err, &be) || res != nil {
		t.Fatalf("Build = %v, %v; want *BuildError", res, err)
	}
	file := filepath.Join(pkg, "main.go")
	want := Diagnostic{File: file, Line: 6, Col: 14, Msg: "undefined: undefinedThing"}
	if len(be.Diagnostics) != 1 || be.Diagnostics[0] != want {
		t.Fatalf("Diagnostics = %+v, want [%+v]\noutput:\n%s", be.Diagnostics, want, be.Output)
	}
	wantErr := "build counter failed:\n  " + file + ":6:14: undefined: undefinedThing"
	if err.Error() != wantErr {
		t.Fatalf("Error() = %q, want %q", err.Error(), wantErr)
	}
	if !strings.Contains(be.Output, "# example.com/p") {
		t.Fatalf("raw output not kept: %q", be.Output)
	}
	if !be.WatchSet.Matches(file) {
		t.Fatalf("failed build's watch set %+v misses main.go", be.WatchSet)
	}
	// The previous build is untouched and still current.
	if sha12(t, good.Binary) != good.ID {
		t.Fatal("previous build changed")
	}
	if cur, _ := Current(bin, "counter"); cur != good.Binary {
		t.Fatalf("current = %s", cur)
	}
	if bs, _ := Builds(bin, "counter"); len(bs) != 1 {
		t.Fatalf("builds after failure: %v", bs)
	}
	if tmp := tempFiles(t, filepath.Join(bin, "counter")); len(tmp) > 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}

// A package imported before it exists: the build fails, and creating the
// package's file must trigger the next build.
func TestFailedBuildWatchesMissingLocalPackage(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "")
	writeFiles(t, pkg, map[string]string{"main.go": "package main\n\nimport \"example.com/p/later\"\n\nfunc main() { later.F() }\n"})
	_, err := Build(ctxT(t), "counter", pkg, Options{BinDir: bin})
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("want *BuildError, got %v", err)
	}
	if !be.WatchSet.Matches(filepath.Join(pkg, "later", "later.go")) {
		t.Fatalf("watch set %+v misses the missing package's folder", be.WatchSet)
	}
	if be.WatchSet.Matches(filepath.Join(pkg, "other", "x.go")) {
		t.Fatal("an unrelated new folder matched")
	}
}

func TestModuleErrorIsDiagnostic(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "")
	writeFiles(t, pkg, map[string]string{"go.mod": goMod + "bogus directive\n"})
	_, err := Build(ctxT(t), "counter", pkg, Options{BinDir: bin})
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("want *BuildError, got %v", err)
	}
	var sawGo, sawMod bool
	for _, d := range be.Diagnostics {
		sawGo = sawGo || (d.File == "" && strings.HasPrefix(d.Msg, "go: "))
		sawMod = sawMod || (d.File == filepath.Join(pkg, "go.mod") && d.Line == 4)
	}
	if !sawGo || !sawMod {
		t.Fatalf("diagnostics %+v: want a go: line and go.mod:4", be.Diagnostics)
	}
	// go list fails too; the fallback still watches go.mod.
	if !be.WatchSet.Matches(filepath.Join(pkg, "go.mod")) || !be.WatchSet.Matches(filepath.Join(pkg, "main.go")) {
		t.Fatalf("fallback watch set %+v", be.WatchSet)
	}
}

// liveProcsWithEnv lists processes (not zombies) whose environment holds kv.
func liveProcsWithEnv(t *testing.T, kv string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var found []string
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(b []byte) bool { return string(b) == kv }) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		found = append(found, e.Name()+" "+string(stat))
	}
	return found
}

// Not parallel: it sets the package's start hook.
func TestCancelKillsBuild(t *testing.T) {
	pkg, bin := newModule(t, "v1")
	// A fresh cache makes go build compile the runtime: seconds of work
	// in several processes, to be killed.
	cache := "GOCACHE=" + t.TempDir()
	_, v, _ := strings.Cut(cache, "=")
	opts := Options{BinDir: bin, Env: map[string]string{"GOCACHE": v}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pid int
	testHookStarted = func(p int) { pid = p; cancel() }
	defer func() { testHookStarted = nil }()

	start := time.Now()
	res, err := Build(ctx, "counter", pkg, opts)
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("Build = %v, %v; want context.Canceled", res, err)
	}
	if pid == 0 {
		t.Fatal("go build never started")
	}
	if elapsed > 10*time.Second {
		t.Fatalf("cancelled build took %v to return", elapsed)
	}
	if left := liveProcsWithEnv(t, cache); len(left) > 0 {
		t.Fatalf("processes left after cancel:\n%s", strings.Join(left, "\n"))
	}
	dir := filepath.Join(bin, "counter")
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
	if bs, _ := Builds(bin, "counter"); len(bs) != 0 {
		t.Fatalf("cancelled build left builds %v", bs)
	}
}

// A go command that starts a grandchild and then hangs: cancelling must
// kill the whole process group, not just the go process.
func TestCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ready")
	if err := mkfifo(fifo); err != nil {
		t.Skip("no fifo:", err)
	}
	fakeGo := filepath.Join(dir, "go")
	script := "#!/bin/sh\n[ \"$1\" = build ] || exit 3\nsleep 300 &\necho \"$!\" > \"$PV_FIFO\"\nwait\n"
	if err := os.WriteFile(fakeGo, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// O_RDWR: the open does not wait for a writer and reads block (with a
	// deadline) until the script writes.
	ready, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()

	pkg, bin := newModule(t, "")
	marker := "PV_FIFO=" + fifo
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Build(ctx, "counter", pkg, Options{BinDir: bin, Go: fakeGo, Env: map[string]string{"PV_FIFO": fifo}})
		done <- err
	}()
	if err := ready.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := ready.Read(buf); err != nil {
		t.Fatalf("fake go never started its child: %v", err)
	}
	// The child may be between fork and exec, when its environ reads
	// empty for a moment: wait (bounded) until both are seen.
	for deadline := time.Now().Add(10 * time.Second); len(liveProcsWithEnv(t, marker)) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("expected the fake go and its child to be running")
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: there is no event to wait on
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Build = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Build did not return after cancel")
	}
	if left := liveProcsWithEnv(t, marker); len(left) > 0 {
		t.Fatalf("processes left after cancel:\n%s", strings.Join(left, "\n"))
	}
	if tmp := tempFiles(t, filepath.Join(bin, "counter")); len(tmp) > 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}

func TestDiscoverModuleSubpackageEmbedReplace(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	p, lib := filepath.Join(root, "p"), filepath.Join(root, "lib")
	writeFiles(t, p, map[string]string{
		"go.mod": goMod + "\nrequire example.com/lib v0.0.0\n\nreplace example.com/lib => ../lib\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/lib\"\n\t\"example.com/p/sub\"\n)\n\n" +
			"func main() { fmt.Println(sub.Data, lib.X()) }\n",
		"main_test.go":  "package main\n",
		"README.md":     "hi\n",
		"sub/sub.go":    "package sub\n\nimport _ \"embed\"\n\n//go:embed data.txt\nvar Data string\n",
		"sub/data.txt":  "data\n",
		"unused/u.go":   "package unused\n",
		"../lib/go.mod": "module example.com/lib\n\ngo 1.26\n",
		"../lib/x.go":   "package lib\n\nfunc X() int { return 1 }\n",
	})
	ws, err := Discover(ctxT(t), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ws.Module != p {
		t.Fatalf("Module = %s, want %s", ws.Module, p)
	}
	if want := []string{lib, p, filepath.Join(p, "sub")}; !slices.Equal(ws.Dirs, want) {
		t.Fatalf("Dirs = %v, want %v", ws.Dirs, want)
	}
	for _, f := range []string{filepath.Join(p, "go.mod"), filepath.Join(p, "go.sum"), filepath.Join(lib, "go.mod"), filepath.Join(p, "sub", "data.txt")} {
		if !slices.Contains(ws.Files, f) {
			t.Errorf("Files %v lacks %s", ws.Files, f)
		}
	}
	if want := []string{p, lib}; !slices.Equal(ws.Roots(), want) {
		t.Fatalf("Roots = %v, want %v", ws.Roots(), want)
	}
	for path, want := range map[string]bool{
		filepath.Join(p, "main.go"):            true,
		filepath.Join(p, "sub", "sub.go"):      true,
		filepath.Join(p, "sub", "data.txt"):    true,
		filepath.Join(p, "go.mod"):             true,
		filepath.Join(lib, "x.go"):             true,
		filepath.Join(lib, "go.mod"):           true,
		filepath.Join(p, "main_test.go"):       false,
		filepath.Join(p, "README.md"):          false,
		filepath.Join(p, ".#main.go"):          false,
		filepath.Join(p, "unused", "u.go"):     false,
		filepath.Join(p, "newdir", "n.go"):     false,
		filepath.Join(p, "sub", "other.txt"):   false,
		filepath.Join(root, "elsewhere.go"):    false,
		filepath.Join(p, "sub", "new_file.go"): true,
	} {
		if got := ws.Matches(path); got != want {
			t.Errorf("Matches(%s) = %v, want %v", path, got, want)
		}
	}

	// In a workspace, go.work joins the watch set.
	writeFiles(t, root, map[string]string{"go.work": "go 1.26\n\nuse ./p\n"})
	ws, err = Discover(ctxT(t), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !ws.Matches(filepath.Join(root, "go.work")) {
		t.Fatalf("Files %v lack go.work", ws.Files)
	}
}

func TestDiscoverOutsideModule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"main.go": mainGo("x")})
	_, err := Discover(ctxT(t), dir, Options{Env: map[string]string{"GOWORK": "off"}})
	if err == nil {
		t.Fatal("Discover outside a module succeeded")
	}
}

// Host GOOS/GOFLAGS must not leak into the plugin build; Options.Env,
// Flags and Tags reach it, and Options.Env wins over the defaults.
func TestEnvFlagsTags(t *testing.T) {
	t.Setenv("GOOS", "windows")
	t.Setenv("GOFLAGS", "-mod=vendor")
	pkg, bin := newModule(t, "")
	writeFiles(t, pkg, map[string]string{
		"main.go":  "package main\n\nimport \"fmt\"\n\nvar greeting = \"default\"\n\nfunc main() { fmt.Println(greeting, extra) }\n",
		"on.go":    "//go:build extra\n\npackage main\n\nconst extra = \"tagged\"\n",
		"off.go":   "//go:build !extra\n\npackage main\n\nconst extra = \"untagged\"\n",
		"extra.go": "//go:build never\n\npackage main\n\nbroken\n",
	})
	opts := Options{
		BinDir: bin,
		Flags:  []string{"-trimpath"},
		Tags:   []string{"extra"},
		Env:    map[string]string{"GOFLAGS": "-ldflags=-X=main.greeting=fromenv"},
	}
	res := mustBuild(t, "counter", pkg, opts)
	if got := runBinary(t, res.Binary); got != "fromenv tagged" {
		t.Fatalf("binary printed %q, want %q", got, "fromenv tagged")
	}
	env := goEnv(Options{}, pkg)
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOOS=") }) {
		t.Fatal("host GOOS passed to go")
	}
	if !slices.Contains(env, "GOFLAGS=-buildvcs=false") || !slices.Contains(env, "PWD="+pkg) {
		t.Fatalf("env lacks defaults: %v", env)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "")
	ctx := ctxT(t)
	for _, tc := range []struct {
		plugin string
		opts   Options
	}{
		{"../evil", Options{BinDir: bin}},
		{"current", Options{BinDir: bin}},
		{"ok", Options{BinDir: "relative/bin"}},
		{"ok", Options{BinDir: bin, Flags: []string{"-o", "/tmp/x"}}},
	} {
		if _, err := Build(ctx, tc.plugin, pkg, tc.opts); err == nil {
			t.Errorf("Build(%q, %+v) succeeded", tc.plugin, tc.opts)
		}
	}
	if _, err := Build(ctx, "ok", filepath.Join(pkg, "nope"), Options{BinDir: bin}); err == nil {
		t.Error("Build of a missing folder succeeded")
	}
	if _, err := Build(ctx, "ok", pkg, Options{BinDir: bin, Go: filepath.Join(pkg, "no-go")}); err == nil || !strings.Contains(err.Error(), "start") {
		t.Errorf("missing go command: %v", err)
	}
}

func TestKeepDeletesOldBuildsButNotCurrent(t *testing.T) {
	t.Parallel()
	pkg, bin := newModule(t, "v0")
	opts := Options{BinDir: bin, Keep: 2}
	var results []*Result
	for i := range 4 {
		writeFiles(t, pkg, map[string]string{"main.go": mainGo(fmt.Sprint("v", i))})
		results = append(results, mustBuild(t, "counter", pkg, opts))
		if i == 0 {
			if err := SetCurrent(bin, "counter", results[0].Binary); err != nil {
				t.Fatal(err)
			}
		}
	}
	bs, err := Builds(bin, "counter")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{results[3].Binary, results[2].Binary, results[0].Binary}
	if !slices.Equal(bs, want) {
		t.Fatalf("Builds = %v, want %v (two newest plus current)", bs, want)
	}
	if _, err := os.Stat(results[1].Binary); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old build not deleted: %v", err)
	}

	// Rebuilding an old version (a revert) makes it the newest, so the
	// next prune keeps it.
	writeFiles(t, pkg, map[string]string{"main.go": mainGo("v2")})
	again := mustBuild(t, "counter", pkg, opts)
	if again.Binary != results[2].Binary {
		t.Fatal("revert produced a different binary")
	}
	if bs, _ := Builds(bin, "counter"); bs[0] != again.Binary {
		t.Fatalf("reverted build is not newest: %v", bs)
	}
}

func fakeBuild(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFiles(t, dir, map[string]string{name: name})
	return p
}

func TestSetCurrent(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	dir := filepath.Join(bin, "counter")
	a := fakeBuild(t, dir, "counter-aaaaaaaaaaaa")
	b := fakeBuild(t, dir, "counter-bbbbbbbbbbbb")

	if err := SetCurrent(bin, "counter", a); err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "current")); target != filepath.Base(a) {
		t.Fatalf("link target %q, want relative %q", target, filepath.Base(a))
	}
	if cur, err := Current(bin, "counter"); err != nil || cur != a {
		t.Fatalf("Current = %s, %v", cur, err)
	}
	if err := SetCurrent(bin, "counter", filepath.Join(dir, "counter-cccccccccccc")); err == nil {
		t.Fatal("SetCurrent to a missing binary succeeded")
	}
	if cur, _ := Current(bin, "counter"); cur != a {
		t.Fatalf("failed SetCurrent moved current to %s", cur)
	}

	// Atomic: a reader never sees the link missing while it flips.
	ctx, cancel := context.WithCancel(context.Background())
	readErr := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if cur, err := Current(bin, "counter"); err != nil || (cur != a && cur != b) {
				readErr <- fmt.Errorf("Current = %q, %v", cur, err)
				return
			}
		}
		readErr <- nil
	}()
	for i := range 500 {
		if err := SetCurrent(bin, "counter", []string{a, b}[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if cur, _ := Current(bin, "counter"); cur != b {
		t.Fatalf("Current = %s, want %s", cur, b)
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Fatalf("temp links left: %v", tmp)
	}
	// Builds lists only build files, not the link.
	bs, _ := Builds(bin, "counter")
	if len(bs) != 2 {
		t.Fatalf("Builds = %v", bs)
	}
	// A binary outside the plugin folder is linked absolutely.
	out := fakeBuild(t, t.TempDir(), "elsewhere")
	if err := SetCurrent(bin, "counter", out); err != nil {
		t.Fatal(err)
	}
	if cur, _ := Current(bin, "counter"); cur != out {
		t.Fatalf("Current = %s, want %s", cur, out)
	}
}

func TestBuildsNoFolder(t *testing.T) {
	t.Parallel()
	bs, err := Builds(t.TempDir(), "counter")
	if err != nil || len(bs) != 0 {
		t.Fatalf("Builds = %v, %v", bs, err)
	}
}

func TestParseDiagnostics(t *testing.T) {
	t.Parallel()
	out := strings.Join([]string{
		"# example.com/p",
		"./main.go:12:5: undefined: x",
		"main.go:7: syntax error: unexpected newline",
		"../lib/x.go:3:1: cannot use y",
		"\thave (int)",
		"\twant ()",
		"/abs/go.mod:4: unknown directive: bogus",
		"go: errors parsing go.mod:",
		"",
		"too many errors",
	}, "\n")
	got := ParseDiagnostics(out, "/m/p")
	want := []Diagnostic{
		{File: "/m/p/main.go", Line: 12, Col: 5, Msg: "undefined: x"},
		{File: "/m/p/main.go", Line: 7, Msg: "syntax error: unexpected newline"},
		{File: "/m/lib/x.go", Line: 3, Col: 1, Msg: "cannot use y\nhave (int)\nwant ()"},
		{File: "/abs/go.mod", Line: 4, Msg: "unknown directive: bogus"},
		{Msg: "go: errors parsing go.mod:"},
		{Msg: "too many errors"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	e := &BuildError{Plugin: "counter", Diagnostics: want[:2]}
	if s := e.Error(); s != "build counter failed:\n  /m/p/main.go:12:5: undefined: x\n  /m/p/main.go:7: syntax error: unexpected newline" {
		t.Fatalf("Error() = %q", s)
	}
}

func BenchmarkRebuild(b *testing.B) {
	b.Run("noop", func(b *testing.B) {
		pkg, bin := newModule(b, "v")
		opts := Options{BinDir: bin}
		mustBuild(b, "bench", pkg, opts)
		b.ResetTimer()
		for b.Loop() {
			if res := mustBuild(b, "bench", pkg, opts); res == nil {
				b.Fatal("no result")
			}
		}
	})
	b.Run("one-line-edit", func(b *testing.B) {
		pkg, bin := newModule(b, "v")
		opts := Options{BinDir: bin, Keep: 2}
		mustBuild(b, "bench", pkg, opts)
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			writeFiles(b, pkg, map[string]string{"main.go": mainGo(fmt.Sprint("v", i))})
			b.StartTimer()
			mustBuild(b, "bench", pkg, opts)
		}
	})
}
