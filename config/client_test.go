package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A client reads [supervisor] even when a plugin table is broken, with
// its folders and a relative unix:// API path made absolute.
func TestLoadSupervisor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	src := "[supervisor]\napi = \"unix://run/api.sock\"\nstate_dir = \"st\"\n\n[plugins.x]\ndriver = \"./does-not-exist\"\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSupervisor(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.API != "unix://"+filepath.Join(dir, "run", "api.sock") || s.StateDir != filepath.Join(dir, "st") {
		t.Fatalf("api %q state_dir %q", s.API, s.StateDir)
	}
	if _, err := Load(path, nil); err == nil {
		t.Fatal("the full load should fail on the broken plugin")
	}
	if err := os.WriteFile(path, []byte("[supervisor]\ncall_timeout = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSupervisor(path); err == nil || !strings.Contains(err.Error(), "config.toml:2") || !strings.Contains(err.Error(), "call_timeout") {
		t.Fatalf("a bad [supervisor] value: %v", err)
	}
	// The CLI tells "no config here" from a broken one with errors.Is.
	if _, err := LoadSupervisor(filepath.Join(dir, "nope.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}
