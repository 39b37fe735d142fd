package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The supervisor's spawner thread lives as long as the process, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/plugvisor/plugvisor/internal/proc.spawnLoop"))
}

// The embedding example builds (this test compiles it) and runs: it hosts
// the clicks example, built from source, and its typed calls count up.
func TestEmbedRuns(t *testing.T) {
	dir := t.TempDir()
	clicks, _ := filepath.Abs("../clicks")
	state, err := os.MkdirTemp("", "pvemb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	cfg := fmt.Sprintf("[supervisor]\nbin_dir = %q\nstate_dir = %q\n\n[plugins.clicks]\ndriver = %q\n",
		filepath.Join(dir, "bin"), state, clicks)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	conf, err := loadOrBuild(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, conf, "embed", time.Millisecond, 3, &out); err != nil {
		t.Fatal(err)
	}
	want := "clicks.count gen 1: 1\nclicks.count gen 1: 2\nclicks.count gen 1: 3\n"
	if got := out.String(); !strings.Contains(got, want) {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}
