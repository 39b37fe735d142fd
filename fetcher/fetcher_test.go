package fetcher

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// repo is a bare git repository plus a work clone that pushes to it.
type repo struct {
	t    *testing.T
	bare string
	work string
}

// gitEnv isolates git (ours and go-getter's) from the machine's config.
func gitEnv(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_TERMINAL_PROMPT", "0")
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	gitEnv(t)
	r := &repo{t: t, bare: filepath.Join(t.TempDir(), "geo.git"), work: t.TempDir()}
	r.git("", "init", "-q", "--bare", "--initial-branch=main", r.bare)
	r.git(r.work, "init", "-q", "--initial-branch=main")
	r.git(r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	full := append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com"}, args...)
	cmd := exec.Command("git", full...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("git %v: %v: %s", args, err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// commit writes files (path -> content) and pushes; it returns the hash.
func (r *repo) commit(files map[string]string) string {
	r.t.Helper()
	for name, body := range files {
		p := filepath.Join(r.work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	return r.commitAll()
}

func (r *repo) commitAll() string {
	r.t.Helper()
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "-m", "change")
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

func (r *repo) src() string { return "git::file://" + r.bare }

func pluginFiles(msg string) map[string]string {
	return map[string]string{
		"go.mod":  "module example.com/geo\n\ngo 1.26\n",
		"main.go": "package main\n\nfunc main() { println(\"" + msg + "\") }\n",
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlyPlugin asserts Dir holds just the plugin folder: no staging or backup left.
func onlyPlugin(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "geo" {
		t.Fatalf("remote-plugins dir holds %v, want only [geo]", names)
	}
}

func TestFetchGitAndUpdate(t *testing.T) {
	r := newRepo(t)
	first := r.commit(pluginFiles("v1"))
	dir := t.TempDir()
	ctx := ctxT(t)

	res, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plugin != "geo" || res.Dir != filepath.Join(dir, "geo") || res.Rev != first || !res.Changed {
		t.Fatalf("first fetch = %+v, want rev %s changed", res, first)
	}
	if got := readFile(t, filepath.Join(res.Dir, "main.go")); !strings.Contains(got, "v1") {
		t.Fatalf("main.go = %q", got)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "go.mod")); err != nil {
		t.Fatal(err)
	}
	onlyPlugin(t, dir)

	res, err = Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Rev != first {
		t.Fatalf("refetch without new commits = %+v, want unchanged at %s", res, first)
	}

	second := r.commit(pluginFiles("v2"))
	res, err = Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Rev != second {
		t.Fatalf("fetch after push = %+v, want changed at %s", res, second)
	}
	if got := readFile(t, filepath.Join(res.Dir, "main.go")); !strings.Contains(got, "v2") {
		t.Fatalf("main.go after update = %q", got)
	}
	onlyPlugin(t, dir)
}

func TestFetchRefPinsTag(t *testing.T) {
	r := newRepo(t)
	tagged := r.commit(pluginFiles("v1"))
	r.git(r.work, "tag", "-a", "-m", "release", "v1.0.0")
	r.git(r.work, "push", "-q", "origin", "v1.0.0")
	newer := r.commit(pluginFiles("v2"))
	dir := t.TempDir()

	res, err := Fetch(ctxT(t), "geo", r.src()+"?ref=v1.0.0", Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rev != tagged || res.Rev == newer {
		t.Fatalf("pinned fetch rev = %s, want tag commit %s (newest is %s)", res.Rev, tagged, newer)
	}
	if got := readFile(t, filepath.Join(res.Dir, "main.go")); !strings.Contains(got, "v1") {
		t.Fatalf("pinned main.go = %q", got)
	}
}

func TestFetchRefusesRefOption(t *testing.T) {
	r := newRepo(t)
	r.commit(pluginFiles("v1"))
	_, err := Fetch(ctxT(t), "geo", r.src()+"?ref=--orphan=x", Options{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "must not start with '-'") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchRefusesEscapingSymlink(t *testing.T) {
	r := newRepo(t)
	good := r.commit(pluginFiles("v1"))
	dir := t.TempDir()
	ctx := ctxT(t)
	if _, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}

	if err := os.Symlink("../../../etc", filepath.Join(r.work, "evil")); err != nil {
		t.Fatal(err)
	}
	r.commit(pluginFiles("v2"))

	_, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if err == nil {
		t.Fatal("fetch of a tree with an escaping symlink succeeded")
	}
	for _, want := range []string{"remote plugin geo", r.src(), "symlink evil -> ../../../etc escaping the folder", "refuses symlinks"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	assertPrevious(t, dir, good, "v1")
}

// assertPrevious checks the tree from the last good fetch is intact.
func assertPrevious(t *testing.T, dir, rev, msg string) {
	t.Helper()
	plugin := filepath.Join(dir, "geo")
	if got := readFile(t, filepath.Join(plugin, "main.go")); !strings.Contains(got, msg) {
		t.Fatalf("previous tree changed: main.go = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(plugin, "evil")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("evil link present in the kept tree: %v", err)
	}
	if head, err := gitHead(context.Background(), plugin); err != nil || head != rev {
		t.Fatalf("previous tree HEAD = %s, %v; want %s", head, err, rev)
	}
	onlyPlugin(t, dir)
}

func TestFetchBadSourceKeepsPrevious(t *testing.T) {
	r := newRepo(t)
	good := r.commit(pluginFiles("v1"))
	dir := t.TempDir()
	ctx := ctxT(t)
	if _, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}

	bad := "git::file://" + filepath.Join(t.TempDir(), "missing.git")
	_, err := Fetch(ctx, "geo", bad, Options{Dir: dir})
	if err == nil {
		t.Fatal("fetch of a missing repository succeeded")
	}
	if !strings.Contains(err.Error(), "remote plugin geo") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("error %q does not name the plugin and source %s", err, bad)
	}
	assertPrevious(t, dir, good, "v1")
}

func TestFetchLocalFolder(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "geo-linux"), []byte("#!/bin/sh\necho v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("docs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := ctxT(t)

	res, err := Fetch(ctx, "geo", "file::"+src, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(res.Rev) || !res.Changed {
		t.Fatalf("result = %+v, want a 12-hex content rev, changed", res)
	}
	if fi, err := os.Lstat(res.Dir); err != nil || !fi.IsDir() {
		t.Fatalf("plugin folder is not a real folder (go-getter links local folders): %v %v", fi, err)
	}
	exe, err := Executable(res.Dir)
	if err != nil || exe != filepath.Join(res.Dir, "geo-linux") {
		t.Fatalf("Executable = %q, %v", exe, err)
	}

	again, err := Fetch(ctx, "geo", "file::"+src, Options{Dir: dir})
	if err != nil || again.Changed || again.Rev != res.Rev {
		t.Fatalf("refetch of an unchanged folder = %+v, %v", again, err)
	}

	if err := os.WriteFile(filepath.Join(src, "geo-linux"), []byte("#!/bin/sh\necho v2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed, err := Fetch(ctx, "geo", "file::"+src, Options{Dir: dir})
	if err != nil || !changed.Changed || changed.Rev == res.Rev {
		t.Fatalf("refetch of a changed folder = %+v, %v", changed, err)
	}
	if got := readFile(t, filepath.Join(dir, "geo", "geo-linux")); !strings.Contains(got, "v2") {
		t.Fatalf("copied executable = %q", got)
	}
	onlyPlugin(t, dir)
}

func TestFetchLocalFolderWithSymlinkRefused(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("main.go", filepath.Join(src, "alias.go")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := Fetch(ctxT(t), "geo", "file::"+src, Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "symlink alias.go -> main.go;") {
		t.Fatalf("err = %v, want an in-folder symlink refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "geo")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused fetch left a plugin folder: %v", err)
	}
}

func zipWith(t *testing.T, files map[string]os.FileMode) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, mode := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("content of " + name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFetchZipOverHTTP(t *testing.T) {
	gitEnv(t) // no ~/.netrc from the machine
	body := zipWith(t, map[string]os.FileMode{"geo": 0o755, "LICENSE": 0o644})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/geo.zip" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	sum := sha256.Sum256(body)
	dir := t.TempDir()
	ctx := ctxT(t)

	res, err := Fetch(ctx, "geo", srv.URL+"/geo.zip", Options{Dir: dir, Checksum: "sha256:" + hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := Executable(res.Dir)
	if err != nil || exe != filepath.Join(dir, "geo", "geo") {
		t.Fatalf("Executable = %q, %v", exe, err)
	}

	wrong := strings.Repeat("0", 64)
	_, err = Fetch(ctx, "geo", srv.URL+"/geo.zip", Options{Dir: dir, Checksum: "sha256:" + wrong})
	if err == nil || !strings.Contains(err.Error(), "remote plugin geo") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("wrong checksum: err = %v", err)
	}
	if _, err := Executable(res.Dir); err != nil {
		t.Fatalf("previous tree damaged by a failed fetch: %v", err)
	}

	_, err = Fetch(ctx, "geo", srv.URL+"/missing.zip", Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/missing.zip") {
		t.Fatalf("missing archive: err = %v", err)
	}
	onlyPlugin(t, dir)
}

func TestFetchBareBinaryOverHTTPIsExecutable(t *testing.T) {
	gitEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("\x7fELF pretend"))
	}))
	defer srv.Close()
	res, err := Fetch(ctxT(t), "geo", srv.URL+"/geo-linux-amd64", Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if exe, err := Executable(res.Dir); err != nil || filepath.Base(exe) != "geo-linux-amd64" {
		t.Fatalf("Executable = %q, %v", exe, err)
	}
}

func TestExecutableNoneOrSeveral(t *testing.T) {
	none := t.TempDir()
	os.WriteFile(filepath.Join(none, "data"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(none, "sub"), 0o755)
	if _, err := Executable(none); err == nil || !strings.Contains(err.Error(), "no executable") {
		t.Fatalf("none: err = %v", err)
	}
	several := t.TempDir()
	os.WriteFile(filepath.Join(several, "a"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(several, "b"), []byte("x"), 0o755)
	if _, err := Executable(several); err == nil || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("several: err = %v", err)
	}
}

func TestFetchCancelled(t *testing.T) {
	r := newRepo(t)
	r.commit(pluginFiles("v1"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	start := time.Now()
	_, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled fetch took %v", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "geo")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cancelled fetch created the plugin folder: %v", err)
	}
}

func TestFetchRejectsBadInput(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	for _, name := range []string{"", "..", ".hidden", "a/b", "../x"} {
		if _, err := Fetch(ctx, name, "file::/nonexistent", Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "invalid plugin name") {
			t.Errorf("name %q: err = %v", name, err)
		}
	}
	if _, err := Fetch(ctx, "geo", "file::/x", Options{Dir: "relative"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative dir: err = %v", err)
	}
	if _, err := Fetch(ctx, "geo", "https://h/x.zip?checksum=sha256:00", Options{Dir: dir, Checksum: "sha256:11"}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("double checksum: err = %v", err)
	}
}

func TestRedact(t *testing.T) {
	got := redact("git::https://bob:s3cret@example.com/x.git?ref=v1")
	if strings.Contains(got, "s3cret") || !strings.HasPrefix(got, "git::https://bob:") {
		t.Fatalf("redact = %q", got)
	}
	if got := redact("github.com/x/y?ref=v1"); got != "github.com/x/y?ref=v1" {
		t.Fatalf("redact changed a plain source: %q", got)
	}
}

func TestEscapes(t *testing.T) {
	cases := []struct {
		rel, target string
		want        bool
	}{
		{"evil", "../../etc", true},
		{"a/b", "../c", false},
		{"a/b", "../../c", true},
		{"x", "/etc/passwd", true},
		{"x", "y", false},
	}
	for _, c := range cases {
		if got := escapes(c.rel, c.target); got != c.want {
			t.Errorf("escapes(%q, %q) = %v", c.rel, c.target, got)
		}
	}
}

func TestFetchGitSubdir(t *testing.T) {
	r := newRepo(t)
	r.commit(map[string]string{"README": "root\n", "plugins/geo/main.go": "package main\n"})
	res, err := Fetch(ctxT(t), "geo", r.src()+"//plugins/geo", Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "main.go")); err != nil {
		t.Fatalf("subdir not fetched to the plugin root: %v", err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(res.Rev) {
		t.Fatalf("subdir rev = %q, want a content hash", res.Rev)
	}
}

func TestFetchConcurrentSamePlugin(t *testing.T) {
	r := newRepo(t)
	want := r.commit(pluginFiles("v1"))
	dir := t.TempDir()
	ctx := ctxT(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			res, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir})
			if err == nil && res.Rev != want {
				err = errors.New("wrong rev " + res.Rev)
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	assertPrevious(t, dir, want, "v1")
}

func TestFetchCancelledMidDownload(t *testing.T) {
	gitEnv(t)
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-r.Context().Done() // a stalled server: only the client's ctx ends this
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		<-started
		cancel()
	}()
	dir := t.TempDir()
	_, err := Fetch(ctx, "geo", srv.URL+"/geo.zip", Options{Dir: dir})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("cancelled fetch left %v behind", entries)
	}
}

func TestRecoverStaleKeepsOtherPluginsStaging(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".geo.tmp-123", ".geo.tmp-1.tmp-456", ".geo.old"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	recoverStale(dir, "geo")
	// geo was missing, so its backup is restored; the other plugin's staging stays.
	for n, want := range map[string]bool{".geo.tmp-123": false, ".geo.tmp-1.tmp-456": true, ".geo.old": false, "geo": true} {
		_, err := os.Stat(filepath.Join(dir, n))
		if (err == nil) != want {
			t.Errorf("%s present = %v, want %v", n, err == nil, want)
		}
	}
}
