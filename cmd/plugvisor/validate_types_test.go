package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// validate builds and starts the plugins the pipelines use and refuses a
// pipeline whose stages do not fit, naming the stages and both types; a
// fitting one is OK.
func TestValidateRefusesIllTypedPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	dir := t.TempDir()
	counter := filepath.Join(repoRoot(t), "examples", "counter")
	conf := func(name, fn string) string {
		path := filepath.Join(dir, name+".toml")
		data := fmt.Sprintf("[supervisor]\nmode = \"inproc\"\napi = \"\"\n\n[plugins.counter]\ndriver = %q\n\n"+
			"[plugins.upper]\ndriver = \"upper\"\n\n[plugins.json]\ndriver = \"json\"\n\n"+
			"[[pipeline]]\nname = %q\nsource = \"counter.ticks\"\nfunctions = [%q]\n", counter, name, fn)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, errOut, code := cli(t, nil, "validate", "-c", conf("bad", "upper.upper"))
	if code != 1 {
		t.Fatalf("validate of an ill-typed pipeline: exit %d\n%s%s", code, out, errOut)
	}
	want := "pipeline bad: schema incompatible: source counter.ticks emits integer but function upper.upper takes string"
	if !strings.Contains(errOut, want) {
		t.Fatalf("validate says:\n%s\nwant %q", errOut, want)
	}
	out, errOut, code = cli(t, nil, "validate", "-c", conf("good", "json.compact"))
	if code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("validate of a fitting pipeline: exit %d\n%s%s", code, out, errOut)
	}
	// Nothing was written next to the config: bins and state were private.
	if _, err := os.Stat(filepath.Join(dir, "bin")); !os.IsNotExist(err) {
		t.Errorf("validate wrote %s: %v", filepath.Join(dir, "bin"), err)
	}
}

// plugvisor symbols, GET /symbols and GET /plugins/{name} show the types
// the plugins announce.
func TestSymbolsShowsTypes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a plugin")
	}
	d := startDaemonWith(t, "run", "[plugins.upper]\ndriver = \"upper\"\n")
	env := []string{"PLUGVISOR_API=" + d.addr, "PLUGVISOR_TOKEN=" + d.token}
	waitRunning(t, "http://"+d.addr, "upper", 90*time.Second)
	out, errOut, code := cli(t, env, "symbols")
	if code != 0 || !regexp.MustCompile(`(?m)^upper\.upper\s+function\s+string → string$`).MatchString(out) {
		t.Fatalf("symbols: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cli(t, env, "symbols", "upper", "--json")
	var syms []struct {
		Name string
		In   struct{ Type string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &syms) != nil || len(syms) != 2 || syms[1].In.Type != "string" {
		t.Fatalf("symbols upper --json: %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = cli(t, env, "symbols", "nope"); code != 1 || !strings.Contains(errOut, `"nope"`) {
		t.Fatalf("symbols of an unknown plugin: %d %s", code, errOut)
	}
	out, errOut, code = cli(t, env, "status", "upper", "--json")
	var st struct {
		Symbols struct {
			Schemas map[string]struct{ In, Out struct{ Type string } }
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Symbols.Schemas["lower"].Out.Type != "string" {
		t.Fatalf("status upper --json lacks the schemas: %d\n%s%s", code, out, errOut)
	}
	d.stop(t)
}

// api = "" means no API; the daemon, whose CLI needs one, says how to fix it.
func TestDaemonRefusesNoAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("[supervisor]\napi = \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := cli(t, nil, "run", "-c", path)
	if code != 1 || !strings.Contains(errOut, `[supervisor] api is "" (no API)`) || !strings.Contains(errOut, "--api") {
		t.Fatalf("run with api = \"\": exit %d\n%s", code, errOut)
	}
}
