package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/config"
)

const modulePath = "github.com/plugvisor/plugvisor"

func newCmd() *cobra.Command {
	var dir, sdkDir string
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a Go plugin with a function, a source and a sink",
		Long: `New writes DIR/NAME/main.go: a plugin with a function, a source and a sink
written against the SDK, ready to build, run and hot-reload, and prints the
config.toml lines that run it.

Inside a plugvisor checkout the repository's module covers the new folder,
so no go.mod is written. Elsewhere a go.mod (module NAME) requiring
` + modulePath + ` is written, with a replace pointing at the plugvisor
sources (--sdk, or the checkout this binary was built from) and that
checkout's go.sum, so it builds offline.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return scaffold(cmd.OutOrStdout(), args[0], dir, sdkDir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "parent folder of the new plugin folder")
	cmd.Flags().StringVar(&sdkDir, "sdk", "", "plugvisor checkout to build against (default: the one this binary was built from)")
	return cmd
}

func scaffold(out io.Writer, name, parent, sdkDir string) error {
	if err := config.ValidName(name); err != nil {
		return fmt.Errorf("bad plugin name %q: %w", name, err)
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return err
	}
	target := filepath.Join(parent, name)
	if _, err := os.Stat(target); err == nil {
		return fmt.Errorf("%s already exists: pick another name or --dir", target)
	}
	files := map[string]string{}
	var buf bytes.Buffer
	if err := mainTmpl.Execute(&buf, map[string]string{"Name": name}); err != nil {
		return err
	}
	files["main.go"] = buf.String()

	note := "inside the plugvisor module: no go.mod needed"
	if root := enclosingModule(parent); root == "" {
		if sdkDir == "" {
			sdkDir = builtFrom()
		}
		if sdkDir == "" {
			return errors.New("this plugvisor binary was not built from a checkout it can find: pass --sdk with the path of a plugvisor checkout")
		}
		if sdkDir, err = filepath.Abs(sdkDir); err != nil {
			return err
		}
		if modulePathOf(sdkDir) != modulePath {
			return fmt.Errorf("--sdk %s is not a plugvisor checkout (its go.mod does not declare %s)", sdkDir, modulePath)
		}
		// plugvisor's own requirements, so the build needs no go mod tidy
		// (and no network): the go.sum copied below covers them.
		files["go.mod"] = fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s v0.0.0\n\nrequire (\n%s)\n\nreplace %s => %s\n",
			name, goVersionOf(sdkDir), modulePath, requiresOf(sdkDir), modulePath, sdkDir)
		if sum, err := os.ReadFile(filepath.Join(sdkDir, "go.sum")); err == nil {
			files["go.sum"] = string(sum)
		}
		note = "go.mod: module " + name + ", plugvisor from " + sdkDir
	}

	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", target, err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(target, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", f, err)
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

// requiresOf returns the require lines of dir/go.mod, marked indirect.
func requiresOf(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	var b strings.Builder
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			in = true
		case in && line == ")":
			in = false
		case in && line != "" || strings.HasPrefix(line, "require ") && !strings.HasSuffix(line, "("):
			f := strings.Fields(strings.TrimPrefix(line, "require "))
			if len(f) >= 2 {
				fmt.Fprintf(&b, "\t%s %s // indirect\n", f[0], f[1])
			}
		}
	}
	return b.String()
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

// builtFrom is the checkout this binary was compiled from, if it is still
// on this machine.
func builtFrom() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // cmd/plugvisor/new.go → root
	if modulePathOf(root) != modulePath {
		return ""
	}
	return root
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

func main() {
	sdk.Serve(sdk.Plugin{
		Name: "{{.Name}}", Version: "0.1.0",
		Functions: map[string]any{"greet": greet},
		Sources:   map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
		Sinks:     map[string]sdk.NewSink{"print": func() sdk.Sink { return &printSink{} }},
	})
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
