package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: whatever a config file holds, Parse returns a config or
// errors that are all *Error (file, line, key, message), never a panic;
// an accepted config keeps its defaults' invariants.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	for p, body := range map[string]string{
		"examples/counter/main.go": "package main\nfunc main() {}\n",
		"builtin/json/main.go":     "package main\n",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	builtins := Registry{"json": filepath.Join(dir, "builtin", "json"), "upper": ""}
	f.Add("[supervisor]\napi = \"127.0.0.1:9081\"\nmax_frame = 65536\nqueue_bytes = 1048576\n\n[plugins.counter]\ndriver = \"./examples/counter\"\n[plugins.counter.config]\ninterval = \"10ms\"\n\n[[pipeline]]\nname = \"p\"\nsource = \"counter.ticks\"\nsink = \"counter.out\"\n")
	f.Add("[plugins.geo]\ndriver = \"git::https://example.com/geo.git?ref=v1\"\nupdate = \"10m\"\nsubmodules = true\n")
	f.Add("[plugins.j]\ndriver = \"json\"\nenv = { A = \"1\" }\n[plugins.j.build]\ntags = [\"x\"]\n")
	f.Add("[supervisor]\ndebounce = \"3s\"\nbogus = 1\n[plugins.\"a b\"]\ndriver = 1\n")
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := Parse([]byte(src), dir, builtins)
		if err != nil {
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			} else {
				list = []error{err}
			}
			for _, e := range list {
				var ce *Error
				if !errors.As(e, &ce) || ce.Msg == "" {
					t.Fatalf("error %v (%T) is not a *config.Error with a message", e, e)
				}
				if ce.Line < 0 || ce.Line > strings.Count(src, "\n")+1 {
					t.Fatalf("error at line %d of a %d-line file: %v", ce.Line, strings.Count(src, "\n")+1, ce)
				}
			}
			return
		}
		s := cfg.Supervisor
		if s.MaxFrame < MinMaxFrame || s.QueueBytes <= 0 || s.RecvQueueBytes <= 0 || s.FetchMaxBytes <= 0 ||
			s.HeartbeatTimeout.Duration <= s.HeartbeatInterval.Duration || s.MaxWait.Duration < s.Debounce.Duration {
			t.Fatalf("accepted a config breaking the defaults' invariants: %+v", s)
		}
		for name, p := range cfg.Plugins {
			if ValidName(name) != nil || p.Resolved.Kind == "" || p.Config == nil || p.Env == nil {
				t.Fatalf("accepted plugin %q: %+v", name, p)
			}
		}
	})
}
