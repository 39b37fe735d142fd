package config_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
)

// A config built in code: no TOML, no API.
func ExampleNew() {
	builtins := config.Registry{"json": "", "upper": ""}
	cfg := config.New("/srv/app")
	cfg.Supervisor.API = "" // no HTTP API
	cfg.Supervisor.Mode = config.ModeInproc
	cfg.Supervisor.StateDir = "state" // relative: taken from /srv/app
	if _, err := cfg.AddPlugin("json", "json", map[string]any{"indent": 2}, builtins); err != nil {
		fmt.Println(err)
	}
	if _, err := cfg.AddPlugin("geo", "git::https://example.com/acme/geo.git?ref=v1.2.0", nil, builtins); err != nil {
		fmt.Println(err)
	}
	if err := cfg.AddPipeline(config.Pipeline{Name: "points", Source: "geo.points", Functions: []string{"json.encode"}}); err != nil {
		fmt.Println(err)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
	}
	fmt.Println(cfg.Supervisor.StateDir, cfg.Plugins["json"].Resolved.Kind, cfg.Plugins["geo"].Resolved.Kind, len(cfg.Pipelines))
	// Bad values get the file's messages, named by their TOML key.
	cfg.Supervisor.MaxWait = config.Duration{Duration: time.Millisecond}
	fmt.Println(cfg.Validate())
	fmt.Println(cfg.AddPipeline(config.Pipeline{Name: "x", Source: "nope.ticks", Sink: "json.out"}))
	// Output:
	// /srv/app/state builtin remote 1
	// supervisor.max_wait: 1ms is shorter than debounce (100ms) — max_wait bounds how long debouncing may delay a build
	// pipeline[1].source: "nope.ticks" refers to plugin "nope", which is not configured (configured: geo, json) — add [plugins.nope] or fix the name
}

func TestBuildInCode(t *testing.T) {
	cfg := config.New(t.TempDir())
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if !filepath.IsAbs(cfg.Supervisor.BinDir) {
		t.Errorf("bin_dir %q not made absolute", cfg.Supervisor.BinDir)
	}
	cfg.Supervisor.API = "localhost"
	cfg.Supervisor.Mode = "fast"
	cfg.Plugins["raw"] = &config.Plugin{Name: "raw", Driver: "json"}
	err := cfg.Validate()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Validate = %v, want *config.Error", err)
	}
	for _, want := range []string{"supervisor.api", "host:port", "supervisor.mode", "plugins.raw", "AddPlugin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if _, err := cfg.AddPlugin("bad name", "json", nil, config.Registry{"json": ""}); err == nil {
		t.Error("AddPlugin accepted a bad name")
	}
	if err := cfg.AddPipeline(config.Pipeline{Name: "p", Source: "raw.s"}); err == nil || !strings.Contains(err.Error(), "needs a sink") {
		t.Errorf("pipeline without sink or function: %v", err)
	}
}

// api = "" in the file means no API (it used to be refused).
func TestEmptyAPIMeansNone(t *testing.T) {
	cfg, err := config.Parse([]byte("[supervisor]\napi = \"\"\n"), t.TempDir(), nil)
	if err != nil || cfg.Supervisor.API != "" {
		t.Fatalf("api = \"\": %v, API %q", err, cfg.Supervisor.API)
	}
}
