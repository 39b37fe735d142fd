package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/config"
)

const modulePath = "github.com/plugvisor/plugvisor"

func newCmd() *cobra.Command {
	var dir, sdkDir, lang string
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a Go plugin with a function, a source and a sink",
		Long: `New writes DIR/NAME/main.go: a plugin with a function, a source and a sink
written against the SDK, ready to build, run and hot-reload, and prints the
config.toml lines that run it.

It also writes main_test.go, a unit test that runs the plugin in-process
with the testkit sdk/sdktest ("go test ./..." in the folder).

Inside a plugvisor checkout the repository's module covers the new folder,
so no go.mod is written. Elsewhere a go.mod (module NAME) requires
` + modulePath + ` at this binary's own version, and go mod tidy
completes it; the module must be published at that version for this to
resolve. --sdk DIR builds against a plugvisor checkout instead (a replace
to DIR, plus DIR's go.sum, so it works offline); a development build of
plugvisor, which has no version, needs --sdk.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch lang {
			case "go":
				return scaffold(cmd.OutOrStdout(), args[0], dir, sdkDir)
			case "python":
				return scaffoldPython(cmd.OutOrStdout(), args[0], dir)
			}
			return fmt.Errorf("--lang %q: want go or python", lang)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "parent folder of the new plugin folder")
	cmd.Flags().StringVar(&lang, "lang", "go", "go, or python (main.py, plugin.json and a plugvisor.testing test)")
	cmd.Flags().StringVar(&sdkDir, "sdk", "", "plugvisor checkout to build against, with a replace (default: the published module at this binary's version)")
	return cmd
}

func scaffold(out io.Writer, name, parent, sdkDir string) error {
	target, err := scaffoldTarget(name, parent)
	if err != nil {
		return err
	}
	files := map[string]string{}
	var buf bytes.Buffer
	for file, tmpl := range map[string]*template.Template{"main.go": mainTmpl, "main_test.go": testTmpl} {
		buf.Reset()
		if err := tmpl.Execute(&buf, map[string]string{"Name": name}); err != nil {
			return err
		}
		files[file] = buf.String()
	}

	note := "inside the plugvisor module: no go.mod needed"
	tidy := false
	if root := enclosingModule(parent); root == "" {
		mod, sum, n, err := goModFor(name, sdkDir)
		if err != nil {
			return err
		}
		files["go.mod"], note, tidy = mod, n, true
		if sum != "" {
			files["go.sum"] = sum
		}
	}
	if err := writeScaffold(target, files); err != nil {
		return err
	}
	if tidy {
		// go mod tidy writes the requirements the SDK and sdktest pull in (-e:
		// the tests of dependencies may not resolve offline, and need not);
		// with --sdk they come from that checkout's go.sum and the module
		// cache, so it works offline.
		if msg, err := goModTidy(target); err != nil {
			fmt.Fprintf(out, "warning: go mod tidy in %s failed (%v):\n%s\nrun it there once the module resolves.\n\n", target, err, msg)
		}
	}
	driver := target
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, target); err == nil && !strings.HasPrefix(rel, "..") {
			driver = "./" + rel
		}
	}
	fmt.Fprintf(out, `created %s (%s)

Add to config.toml (a relative driver is taken from the config file's folder):

[plugins.%s]
driver = %q
[plugins.%s.config]
interval = "1s"

[[pipeline]]
name = "%s-demo"
source = "%s.ticks"
sink = "%s.print"

Then: plugvisor call %s.greet '"world"'
`, target, note, name, driver, name, name, name, name, name)
	return nil
}

// enclosingModule returns the root of the plugvisor module dir lies in, or "".
func enclosingModule(dir string) string {
	for {
		if modulePathOf(dir) != "" {
			if modulePathOf(dir) == modulePath {
				return dir
			}
			return "" // inside another module: the new folder gets its own
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// modulePathOf reads the module line of dir/go.mod ("" when there is none).
func modulePathOf(dir string) string {
	return goModLine(dir, "module ")
}

func goVersionOf(dir string) string {
	if v := goModLine(dir, "go "); v != "" {
		return v
	}
	return strings.TrimPrefix(runtime.Version(), "go")
}

func goModLine(dir, prefix string) string {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, prefix) {
			return strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, prefix)), `"`)
		}
	}
	return ""
}

var mainTmpl = template.Must(template.New("main.go").Parse(`// Command {{.Name}} is a plugvisor plugin. Edit it while "plugvisor dev"
// runs: every save rebuilds it and swaps it in, keeping its state.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(plugin) }

// plugin is what main serves; main_test.go runs it with sdktest.
var plugin = sdk.Plugin{
	Name: "{{.Name}}", Version: "0.1.0",
	Functions: map[string]any{"greet": greet},
	Sources:   map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
	Sinks:     map[string]sdk.NewSink{"print": func() sdk.Sink { return &printSink{} }},
}

// greet is a function: JSON in, JSON out. Its call count lives in the
// plugin's state, so it survives reloads.
func greet(ctx context.Context, who string) (string, error) {
	n, err := sdk.StateOf(ctx).IncrCounter("greetings", 1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("hello, %s (#%d)", who, n), nil
}

// ticks is a source: it emits 1, 2, 3, … every interval and keeps its
// position in state, so a swap resumes the sequence.
type ticks struct{ interval time.Duration }

func (t *ticks) Configure(props map[string]any) error {
	t.interval = time.Second
	if v, ok := props["interval"].(string); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("interval %q: %w", v, err)
		}
		t.interval = d
	}
	return nil
}

func (t *ticks) Open(ctx sdk.Context, emit func(any) error) error {
	var n int64
	if _, err := ctx.State().GetState("next", &n); err != nil {
		return err
	}
	tk := time.NewTicker(t.interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
		n++
		if err := emit(n); err != nil {
			return err
		}
		if err := ctx.State().PutState("next", n); err != nil {
			return err
		}
	}
}

func (t *ticks) Close(sdk.Context) error { return nil }

// printSink is a sink: it logs every item it collects and counts them.
type printSink struct{}

func (s *printSink) Configure(map[string]any) error { return nil }
func (s *printSink) Open(sdk.Context) error         { return nil }

func (s *printSink) Collect(ctx sdk.Context, item any) error {
	raw, _ := json.Marshal(item)
	n, err := ctx.State().IncrCounter("collected", 1)
	if err != nil {
		return err
	}
	ctx.Logger().Info().Int64("n", n).RawJSON("item", raw).Msg("collected")
	return nil
}

func (s *printSink) Close(sdk.Context) error { return nil }
`))

var testTmpl = template.Must(template.New("main_test.go").Parse(`package main

import (
	"testing"

	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

// The plugin runs in-process under the real supervisor: calls, sources,
// sinks, state, crashes and swaps behave as under plugvisor dev.
func TestGreetCountsAcrossSwap(t *testing.T) {
	h := sdktest.Start(t, plugin, sdktest.Options{Config: map[string]any{"interval": "1ms"}})
	if got := sdktest.Call[string](h, "greet", "world"); got != "hello, world (#1)" {
		t.Fatalf("greet = %q", got)
	}
	h.Swap(plugin) // a new build of the same code: the count moves along
	if got := sdktest.Call[string](h, "greet", "world"); got != "hello, world (#2)" {
		t.Fatalf("greet after the swap = %q", got)
	}
	if got := sdktest.ReadAs[int64](h, "ticks", 2); got[0] != 1 || got[1] != 2 {
		t.Fatalf("ticks = %v, want 1 2", got)
	}
	h.Feed("print", "a", "b")
	var n int64
	if !h.Get("sink/print/test", "collected", &n) || n != 2 {
		t.Fatalf("collected = %d, want 2", n)
	}
}
`))

// ownVersion is the version of the plugvisor module this binary was built
// from ("" for a development build).
func ownVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := bi.Main.Version; bi.Main.Path == modulePath && strings.HasPrefix(v, "v") {
		return v
	}
	return ""
}

// goModFor writes the go.mod of a scaffold outside the plugvisor module:
// the SDK module at this binary's version, or a replace to sdkDir.
func goModFor(name, sdkDir string) (mod, sum, note string, err error) {
	version := ownVersion()
	if sdkDir == "" {
		if version == "" {
			return "", "", "", errors.New("this plugvisor is a development build with no module version to require: " +
				"pass --sdk DIR with the plugvisor checkout to build against")
		}
		mod = fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s %s\n", name, strings.TrimPrefix(runtime.Version(), "go"), modulePath, version)
		return mod, "", "go.mod: module " + name + ", " + modulePath + " " + version, nil
	}
	if sdkDir, err = filepath.Abs(sdkDir); err != nil {
		return "", "", "", err
	}
	if modulePathOf(sdkDir) != modulePath {
		return "", "", "", fmt.Errorf("--sdk %s is not a plugvisor checkout (its go.mod does not declare %s)", sdkDir, modulePath)
	}
	if version == "" {
		version = "v0.0.0"
	}
	mod = fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s %s\n\nreplace %s => %s\n",
		name, goVersionOf(sdkDir), modulePath, version, modulePath, sdkDir)
	if b, err := os.ReadFile(filepath.Join(sdkDir, "go.sum")); err == nil {
		sum = string(b)
	}
	return mod, sum, "go.mod: module " + name + ", plugvisor from " + sdkDir, nil
}

// goModTidy runs go mod tidy in dir, bounded in time.
func goModTidy(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "tidy", "-e")
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// scaffoldTarget checks a new plugin's name and returns its folder under
// parent, which must not exist yet.
func scaffoldTarget(name, parent string) (string, error) {
	if err := config.ValidName(name); err != nil {
		return "", fmt.Errorf("bad plugin name %q: %w", name, err)
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return "", err
	}
	target := filepath.Join(parent, name)
	if _, err := os.Stat(target); err == nil {
		return "", fmt.Errorf("%s already exists: pick another name or --dir", target)
	}
	return target, nil
}

// writeScaffold creates target and writes files (name → content) into it.
func writeScaffold(target string, files map[string]string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", target, err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(target, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", f, err)
		}
	}
	return nil
}
