package fetcher

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A git repository that grew past the cap: the fetch fails naming the cap
// and the setting, and the tree in place stays.
func TestFetchGitOverSizeCapKeepsPrevious(t *testing.T) {
	r := newRepo(t)
	first := r.commit(pluginFiles("v1"))
	dir := t.TempDir()
	ctx := ctxT(t)
	opts := Options{Dir: dir, MaxBytes: 2 << 20}
	if _, err := Fetch(ctx, "geo", r.src(), opts); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20) // random, so git cannot compress it under the cap
	rand.Read(big)
	files := pluginFiles("v2")
	files["assets.bin"] = string(big)
	r.commit(files)
	_, err := Fetch(ctx, "geo", r.src(), opts)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "fetch_max_bytes") || !strings.Contains(err.Error(), "cap of 2 MiB") {
		t.Fatalf("fetch over the cap: want ErrTooLarge naming fetch_max_bytes and 2 MiB, got %v", err)
	}
	assertPrevious(t, dir, first, "v1")
}

// The cap stops a transfer while it runs: a server that streams without
// end is cut off at the cap rather than filling the disk.
func TestFetchHTTPStopsAtSizeCap(t *testing.T) {
	gitEnv(t)
	chunk := make([]byte, 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return
		}
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := Fetch(ctxT(t), "geo", srv.URL+"/geo", Options{Dir: dir, MaxBytes: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("endless download: want a size cap error, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed fetch left %v behind", entries)
	}
}

// A repository with a submodule: by default the submodule is not fetched
// (and the result says so); with Submodules it is.
func TestFetchSubmodulesOnlyWhenAllowed(t *testing.T) {
	lib := newRepo(t)
	lib.commit(map[string]string{"lib.go": "package lib // from the submodule\n"})
	r := newRepo(t)
	r.commit(pluginFiles("v1"))
	r.git(r.work, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "file://"+lib.bare, "lib")
	r.commitAll()
	// Test repositories are local files, which git refuses for submodules
	// unless allowed; a real source would use https.
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "protocol.file.allow")
	t.Setenv("GIT_CONFIG_VALUE_0", "always")
	ctx := ctxT(t)

	dir := t.TempDir()
	res, err := Fetch(ctx, "geo", r.src(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !res.SkippedSubmodules {
		t.Errorf("result does not report the skipped submodule: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "lib", "lib.go")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("submodule fetched without submodules = true (stat: %v)", err)
	}

	dir = t.TempDir()
	res, err = Fetch(ctx, "geo", r.src(), Options{Dir: dir, Submodules: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(res.Dir, "lib", "lib.go")); !strings.Contains(got, "from the submodule") {
		t.Fatalf("lib/lib.go = %q", got)
	}
	if res.SkippedSubmodules {
		t.Errorf("SkippedSubmodules set although they were fetched")
	}
}

// An archive over the cap is stopped while it downloads (it lands outside
// the staging folder) and the error names the cap.
func TestFetchArchiveOverSizeCap(t *testing.T) {
	gitEnv(t)
	big := make([]byte, 2<<20)
	rand.Read(big)
	zipped := zipWithContent(t, map[string][]byte{"plugin": big})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(zipped)
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := Fetch(ctxT(t), "geo", srv.URL+"/geo.zip", Options{Dir: dir, MaxBytes: 1 << 20})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "download") {
		t.Fatalf("archive over the cap: want ErrTooLarge for the download, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed fetch left %v behind", entries)
	}
}

// zipWithContent is a zip of executable files with the given contents.
func zipWithContent(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Store}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err == nil {
			_, err = w.Write(body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
