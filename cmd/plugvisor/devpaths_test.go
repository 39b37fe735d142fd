package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/api"
)

// copyDir copies the files of src (not subfolders) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// `plugvisor dev` in a plugin folder with no config.toml serves that
// folder; its state lands in the folder's .plugvisor/ and client commands
// started there find the daemon without --api.
func TestDevWithoutConfigServesTheFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon and a Python plugin")
	}
	dir := filepath.Join(t.TempDir(), "my plugin")
	copyDir(t, filepath.Join(repoRoot(t), "examples", "pydemo"), dir)
	d := startChild(t, dir, nil, filepath.Join(dir, ".plugvisor"), "dev")
	waitRunning(t, "http://"+d.addr, "pydemo", 60*time.Second)
	if b, err := os.ReadFile(filepath.Join(dir, ".plugvisor", api.AddrFile)); err != nil || !strings.Contains(string(b), d.addr) {
		t.Fatalf("api.addr: %q %v, want %s", b, err, d.addr)
	}
	// The client finds the daemon from the folder: no --api, no env.
	// No --api, no variables: the address and token files in the folder.
	call := func() (string, string, int) { return cliIn(t, dir, nil, "call", "pydemo.double", "21") }
	if out, errOut, code := call(); code != 0 || strings.TrimSpace(out) != "42" {
		t.Fatalf("call from the folder: %d %q %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, ".plugvisor", "state.db")); err != nil {
		t.Fatalf("state is not under the folder: %v", err)
	}
	d.stop(t)
}

func TestZeroConfig(t *testing.T) {
	root := repoRoot(t)
	clicks := filepath.Join(root, "examples", "clicks")
	py := filepath.Join(root, "examples", "pydemo")
	state := t.TempDir()
	cfg, err := zeroConfig([]string{clicks, py}, "config.toml", false, state)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Plugins["clicks"] == nil || cfg.Plugins["pydemo"] == nil || len(cfg.Plugins) != 2 {
		t.Fatalf("plugins %v, want clicks (folder name) and pydemo (manifest name)", cfg.Plugins)
	}
	if cfg.Supervisor.StateDir != state || cfg.Supervisor.API != "127.0.0.1:0" {
		t.Fatalf("supervisor %+v", cfg.Supervisor)
	}
	if _, err := zeroConfig([]string{clicks, clicks}, "config.toml", false, ""); err == nil || !strings.Contains(err.Error(), "both named") {
		t.Fatalf("the same name twice: %v", err)
	}
	if _, err := zeroConfig([]string{clicks}, "x.toml", true, ""); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("--config with paths: %v", err)
	}
	if _, err := zeroConfig([]string{filepath.Join(root, "docs")}, "config.toml", false, ""); err == nil || !strings.Contains(err.Error(), "docs") {
		t.Fatalf("a folder that is no plugin: %v", err)
	}
	// No PATH and a config.toml present: the config file is used.
	if cfg, err := zeroConfig(nil, filepath.Join(root, "config.toml"), false, ""); cfg != nil || err != nil {
		t.Fatalf("with config.toml present: %v %v", cfg, err)
	}
}
