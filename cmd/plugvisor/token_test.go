package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/api"
)

// The client finds address and token in this order: flag, variable,
// config (with api.addr when the config's port is 0).
func TestClientFindsAddressAndToken(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[supervisor]\napi = \"127.0.0.1:0\"\nstate_dir = \"st\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "st")
	fileTok, err := api.EnsureToken(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PLUGVISOR_API", "")
	t.Setenv("PLUGVISOR_TOKEN", "")
	// Port 0 in the config and no daemon has written where it listens.
	if _, err := newClient(clientFlags{config: cfg}, true); err == nil || !strings.Contains(err.Error(), api.AddrFile) {
		t.Fatalf("port 0 without api.addr: %v", err)
	}
	if err := api.WriteAddr(st, "http://127.0.0.1:4242"); err != nil {
		t.Fatal(err)
	}
	c, err := newClient(clientFlags{config: cfg}, true)
	if err != nil || c.token != fileTok || c.base != "http://127.0.0.1:4242" {
		t.Fatalf("from the config: %+v %v", c, err)
	}
	t.Setenv("PLUGVISOR_API", "unix:///run/pv/api.sock")
	t.Setenv("PLUGVISOR_TOKEN", "from-env")
	c, err = newClient(clientFlags{config: cfg}, true)
	if err != nil || c.token != "from-env" || c.base != "http://localhost" || c.shown != "unix:///run/pv/api.sock" {
		t.Fatalf("from the environment: %+v %v", c, err)
	}
	c, err = newClient(clientFlags{config: cfg, api: "https://pv.example:9443/", token: "from-flag"}, true)
	if err != nil || c.token != "from-flag" || c.base != "https://pv.example:9443" {
		t.Fatalf("from flags: %+v %v", c, err)
	}
	// Flags and variables say everything: a missing default config is fine,
	// a missing config named with -c is not.
	if _, err := newClient(clientFlags{config: filepath.Join(dir, "nope.toml")}, false); err != nil {
		t.Fatalf("no config beside, all from the environment: %v", err)
	}
	t.Setenv("PLUGVISOR_TOKEN", "")
	if _, err := newClient(clientFlags{config: filepath.Join(dir, "nope.toml")}, true); err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("-c naming a missing file: %v", err)
	}
	for _, bad := range []string{"ftp://x:1", "unix://", "http://"} {
		if _, err := newClient(clientFlags{api: bad, token: "t"}, false); err == nil || !strings.Contains(err.Error(), "bad API address") {
			t.Errorf("--api %s: %v", bad, err)
		}
	}
}
