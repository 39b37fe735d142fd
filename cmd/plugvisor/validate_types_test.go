package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
