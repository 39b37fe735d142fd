// Package builtin is the registry of builtin plugins: ordinary SDK plugins
// that run inside the host (mode = "inproc") or, compiled from their
// folder, as hot-reloadable processes (mode = "process").
package builtin

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/plugvisor/plugvisor/builtin/json"
	"github.com/plugvisor/plugvisor/builtin/upper"
	"github.com/plugvisor/plugvisor/sdk"
)

var plugins = map[string]sdk.Plugin{
	"json":  json.Plugin,
	"upper": upper.Plugin,
}

// Get returns the builtin named name.
func Get(name string) (sdk.Plugin, bool) {
	p, ok := plugins[name]
	return p, ok
}

// Names lists the builtins.
func Names() []string {
	out := make([]string, 0, len(plugins))
	for n := range plugins {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Sources maps each builtin to the folder of its main package, or "" when
// the sources are not on this machine (a binary built elsewhere or with
// -trimpath): such a builtin can only run in process.
func Sources() map[string]string {
	_, file, _, ok := runtime.Caller(0)
	out := make(map[string]string, len(plugins))
	for n := range plugins {
		out[n] = ""
		if !ok {
			continue
		}
		dir := filepath.Join(filepath.Dir(file), n, "cmd")
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			out[n] = dir
		}
	}
	return out
}
