package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// typedGo is a plugin with typed symbols. PV_VARIANT picks the item type
// of its ticks source, so one binary can play a version whose schema
// changed compatibly ("compat": an optional field added) or not
// ("incompat": n became a string).
const typedGo = `package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

type Tick struct {
	N int64 ` + "`json:\"n\"`" + `
}

type TickCompat struct {
	N    int64  ` + "`json:\"n\"`" + `
	Note string ` + "`json:\"note,omitempty\"`" + `
}

type TickIncompat struct {
	N string ` + "`json:\"n\"`" + `
}

type Row struct {
	ID   int64  ` + "`json:\"id\"`" + `
	Name string ` + "`json:\"name\"`" + `
}

func main() {
	sdk.Serve(sdk.Plugin{Name: "typed", Version: "1.0.0",
		Sources: map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
		Sinks: map[string]sdk.NewSink{
			"rows": func() sdk.Sink { return &rows{} },
			"log":  func() sdk.Sink { return &rows{} },
		},
		Functions: map[string]any{
			"count": func(ctx context.Context, who string) (int64, error) { return sdk.StateOf(ctx).IncrCounter(who, 1) },
			"total": func(ctx context.Context) (int64, error) { return sdk.StateOf(ctx).GetCounter("a") },
			"fail":  func(s string) error { return errors.New("refused " + s) },
			"crash": func() error { os.Exit(3); return nil },
			"raw":   func() ([]byte, error) { return []byte(` + "`\"not a number\"`" + `), nil },
		}})
}

type ticks struct{}

func (*ticks) Configure(map[string]any) error { return nil }
func (*ticks) Close(sdk.Context) error         { return nil }
func (*ticks) ItemType() any {
	switch os.Getenv("PV_VARIANT") {
	case "compat":
		return TickCompat{}
	case "incompat":
		return TickIncompat{}
	}
	return Tick{}
}

func (*ticks) Open(ctx sdk.Context, emit func(any) error) error {
	var n int64
	if _, err := ctx.State().GetState("n", &n); err != nil {
		return err
	}
	for ctx.Err() == nil {
		var item any = Tick{N: n + 1}
		if os.Getenv("PV_VARIANT") == "incompat" {
			item = TickIncompat{N: fmt.Sprint(n + 1)}
		}
		if err := emit(item); err != nil {
			return err
		}
		select { // a tick a millisecond at most: the test reads only a few
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
		n++
		if err := ctx.State().PutState("n", n); err != nil {
			return err
		}
	}
	return nil
}

// rows appends each row's id to the file named by the "out" config key,
// one per line.
type rows struct{ path string }

func (r *rows) Configure(props map[string]any) error { r.path, _ = props["out"].(string); return nil }
func (*rows) Open(sdk.Context) error                 { return nil }
func (*rows) Close(sdk.Context) error                { return nil }
func (*rows) ItemType() any                          { return Row{} }
func (r *rows) Collect(ctx sdk.Context, item any) error {
	var row Row
	if err := json.Unmarshal(item.(json.RawMessage), &row); err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%d\n", row.ID)
	return err
}
`

// buildTyped builds the typed test plugin into dir and returns its path.
func buildTyped(t *testing.T, dir string) string {
	t.Helper()
	mod := filepath.Join(dir, "typed")
	writeModule(t, mod, "1.0.0")
	writeFile(t, filepath.Join(mod, "main.go"), typedGo)
	os.Remove(filepath.Join(mod, "version.go"))
	bin := filepath.Join(dir, "typed.bin")
	goBuild(t, mod, bin)
	return bin
}

// codeHost runs a host on a config built in code (no TOML, no API).
func codeHost(t *testing.T, cfg *config.Config) *Host {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.Started():
	case <-ctx.Done():
	}
	return h
}

func shortStateDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pvty")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type tick struct {
	N int64 `json:"n"`
}

type row struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Typed calls, subscriptions and sink writes keep working across swaps,
// values decoded, nothing lost or repeated; every typed error kind is
// matchable; a swap changing a symbol in use incompatibly is refused
// before any pause, a compatible change is accepted and reported.
func TestTypedHandlesAcrossSwaps(t *testing.T) {
	dir := t.TempDir()
	bin := buildTyped(t, dir)
	cfg := config.New(dir)
	cfg.Supervisor.API = ""
	cfg.Supervisor.StateDir = shortStateDir(t)
	rowsOut := filepath.Join(dir, "rows.txt")
	p, err := cfg.AddPlugin("typed", bin, map[string]any{"out": rowsOut}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Env["PV_VARIANT"] = "v1"
	h := codeHost(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	count := Func[string, int64](h, "typed.count")
	sub, err := Subscribe[tick](ctx, h, "typed.ticks", Buffer(8))
	if err != nil {
		t.Fatal(err)
	}
	w, err := OpenSink[row](ctx, h, "typed.rows")
	if err != nil {
		t.Fatal(err)
	}
	var next int64 = 1 // the tick expected next
	readTicks := func(n int) (gens map[int]bool) {
		gens = map[int]bool{}
		for i := 0; i < n; i++ {
			select {
			case it := <-sub.C():
				if it.Err != nil || it.Value.N != next {
					t.Fatalf("tick %+v, want n=%d", it, next)
				}
				gens[it.Generation] = true
				next++
			case <-ctx.Done():
				t.Fatalf("no tick %d", next)
			}
		}
		return gens
	}
	var id int64
	use := func(round int) {
		for i := 1; i <= 3; i++ {
			n, err := count.Call(ctx, "a")
			if err != nil || n != int64(3*round+i) {
				t.Fatalf("count = %d, %v; want %d", n, err, 3*round+i)
			}
			id++
			if err := w.Write(ctx, row{ID: id, Name: "r"}); err != nil {
				t.Fatal(err)
			}
		}
		readTicks(5)
	}
	use(0)
	plug, err := h.Plugin("typed")
	if err != nil {
		t.Fatal(err)
	}
	swap := func(variant string, force bool) (*supervisor.Report, error) {
		return plug.Reload(ctx, supervisor.ReloadOptions{Force: force,
			Spec: &supervisor.Spec{Kind: "binary", Path: bin, Config: map[string]any{"out": rowsOut}, Env: map[string]string{"PV_VARIANT": variant}}})
	}
	if rep, err := swap("v1", false); err != nil || rep.Generation != 2 || len(rep.SchemaChanges) != 0 {
		t.Fatalf("plain swap: %+v, %v", rep, err)
	}
	use(1)

	// An incompatible item type: refused before anything paused.
	rep, err := swap("incompat", false)
	if !errors.Is(err, supervisor.ErrSwapFailed) || !errors.Is(err, supervisor.ErrSchemaIncompatible) {
		t.Fatalf("incompatible swap: %v, want ErrSchemaIncompatible", err)
	}
	if !strings.Contains(err.Error(), "source ticks item: field n: string does not fit integer") {
		t.Errorf("the refusal does not say what changed: %v", err)
	}
	if rep.PauseMS != 0 || rep.Phases.DrainMS != 0 || rep.Drained != 0 {
		t.Errorf("refused swap paused or drained: %+v", rep)
	}
	if st := plug.Status(); st.Generation != 2 || st.State != supervisor.StateRunning {
		t.Errorf("after the refusal: generation %d state %s, want 2 running", st.Generation, st.State)
	}
	use(2)

	// A compatible change (an optional field added to the item): swapped,
	// and the report says what changed.
	rep, err = swap("compat", false)
	if err != nil {
		t.Fatalf("compatible swap: %v", err)
	}
	if got := strings.Join(rep.SchemaChanges, "; "); !strings.Contains(got, "source ticks item: field note added (optional)") {
		t.Errorf("report's schema changes %q lack the added field", got)
	}
	for !readTicks(1)[rep.Generation] { // what was queued during the swap comes first
	}
	use(3)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(rowsOut)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := int64(1); i <= id; i++ {
		want.WriteString(strconv.FormatInt(i, 10) + "\n")
	}
	if string(data) != want.String() {
		t.Fatalf("sink collected:\n%s\nwant 1..%d once each, in order", data, id)
	}

	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("errors", func(t *testing.T) {
		_, err := Func[string, struct{}](h, "typed.fail").Call(ctx, "x")
		var ce *CallError
		if !errors.As(err, &ce) || ce.Msg != "refused x" {
			t.Errorf("function error: %v, want *CallError \"refused x\"", err)
		}
		if _, err := Func[any, int64](h, "nope.count").Call(ctx, nil); !errors.Is(err, ErrUnknownPlugin) {
			t.Errorf("unknown plugin: %v", err)
		}
		if _, err := Func[any, int64](h, "typed.nope").Call(ctx, nil); !errors.Is(err, ErrUnknownSymbol) {
			t.Errorf("unknown function: %v", err)
		}
		if _, err := Subscribe[tick](ctx, h, "typed.nope"); !errors.Is(err, ErrUnknownSymbol) {
			t.Errorf("unknown source: %v", err)
		}
		if _, err := Func[any, int64](h, "typed").Call(ctx, nil); !errors.Is(err, ErrUnknownSymbol) {
			t.Errorf("a ref without a symbol: %v", err)
		}
		_, err = Func[any, int64](h, "typed.raw").Call(ctx, nil)
		var de *DecodeError
		if !errors.Is(err, ErrDecode) || !errors.As(err, &de) || de.What != "output" || de.Type != "int64" {
			t.Errorf("undecodable output: %v, want a *DecodeError", err)
		}
		// No input: any In; the output decodes.
		if n, err := Func[any, int64](h, "typed.total").Call(ctx, nil); err != nil || n != 12 {
			t.Errorf("total = %d, %v; want 12", n, err)
		}
		// Go types that do not fit the announced schemas.
		_, err = Func[string, bool](h, "typed.count").Call(ctx, "a")
		var se *SchemaError
		if !errors.Is(err, ErrSchemaMismatch) || !errors.As(err, &se) || se.Part != "output" ||
			!strings.Contains(err.Error(), "integer does not fit boolean") {
			t.Errorf("output type mismatch: %v", err)
		}
		if _, err := Func[int, int64](h, "typed.count").Call(ctx, 1); !errors.Is(err, ErrSchemaMismatch) || !strings.Contains(err.Error(), "input") {
			t.Errorf("input type mismatch: %v", err)
		}
		if _, err := Subscribe[struct {
			N bool `json:"n"`
		}](ctx, h, "typed.ticks", Instance("x")); !errors.Is(err, ErrSchemaMismatch) {
			t.Errorf("item type mismatch: %v", err)
		}
		if _, err := OpenSink[tick](ctx, h, "typed.rows", Instance("x")); !errors.Is(err, ErrSchemaMismatch) ||
			!strings.Contains(err.Error(), "field id: required field missing") {
			t.Errorf("sink item mismatch: %v", err)
		}
		// The plugin dies during the call.
		_, err = Func[any, any](h, "typed.crash").Call(ctx, nil)
		if !errors.Is(err, ErrCrashed) {
			t.Errorf("crash: %v, want ErrCrashed", err)
		}
		// It restarts with its state; the handles still work.
		// (from the last checkpoint: the swap's, when the count was 9).
		if n, err := count.Call(ctx, "a"); err != nil || n < 10 {
			t.Errorf("count after the crash = %d, %v; want it to go on from the checkpoint", n, err)
		}
	})
}

// The pipeline fit check: a live config edit with an ill-typed pipeline
// is refused and changes nothing; a fitting one is applied.
func TestIllTypedPipelineEditRefused(t *testing.T) {
	dir := t.TempDir()
	bin := buildTyped(t, dir)
	base := supervisorTOML(fmt.Sprintf("state_dir = %q\napi = \"\"", shortStateDir(t))) +
		fmt.Sprintf("[plugins.typed]\ndriver = %q\n[plugins.typed.config]\nout = %q\n", bin, filepath.Join(dir, "rows.txt"))
	base = strings.Replace(base, "state_dir = \"st\"\n", "", 1)
	hs := startHost(t, dir, base, Options{NoWatch: true})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	plug, err := hs.h.Plugin("typed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plug.Manifest(ctx); err != nil { // its schemas are known once it serves
		t.Fatal(err)
	}
	edit := func(pipeline string) error {
		path := filepath.Join(dir, "edit.toml")
		writeFile(t, path, base+pipeline)
		cfg, err := config.Load(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return hs.h.Apply(ctx, cfg)
	}
	from := hs.rec.mark()
	err = edit("[[pipeline]]\nname = \"bad\"\nsource = \"typed.ticks\"\nfunctions = [\"typed.count\"]\nsink = \"typed.rows\"\n")
	want := "pipeline bad: schema incompatible: source typed.ticks emits object{n: integer} but function typed.count takes string"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("ill-typed edit: %v\nwant %q", err, want)
	}
	if e, _ := hs.rec.waitFor(t, from, supervisor.EventConfigApplied, ""); !strings.Contains(e.Error, "nothing changed") {
		t.Errorf("config.applied event: %+v", e)
	}
	if n := len(hs.h.currentConfig().Pipelines); n != 0 {
		t.Fatalf("the refused edit was applied: %d pipelines", n)
	}
	// The sink's item type must fit too: integer (count's output) is not a row.
	err = edit("[[pipeline]]\nname = \"bad2\"\nsource = \"typed.ticks\"\nsink = \"typed.rows\"\n")
	if err == nil || !strings.Contains(err.Error(), "field id: required field missing") {
		t.Fatalf("ill-typed sink: %v", err)
	}
	if err := edit("[[pipeline]]\nname = \"log\"\nsource = \"typed.ticks\"\nsink = \"typed.log\"\n"); err == nil {
		t.Fatal("log takes rows, ticks are not rows: want a refusal")
	}
	// A fitting pipeline: ticks into a function taking anything.
	if err := edit("[[pipeline]]\nname = \"good\"\nsource = \"typed.ticks\"\nfunctions = [\"typed.total\"]\n"); err != nil {
		t.Fatalf("fitting pipeline refused: %v", err)
	}
	if n := len(hs.h.currentConfig().Pipelines); n != 1 {
		t.Fatalf("pipelines after the good edit: %d", n)
	}
}

// A host whose config is built in code, without TOML and without an API,
// runs a builtin and is called through the typed API.
func TestConfigInCodeNoAPI(t *testing.T) {
	cfg := config.New(t.TempDir())
	cfg.Supervisor.API = ""
	cfg.Supervisor.Mode = config.ModeInproc
	cfg.Supervisor.StateDir = shortStateDir(t)
	if _, err := cfg.AddPlugin("upper", "upper", nil, config.Registry(builtinsOrDefault(nil))); err != nil {
		t.Fatal(err)
	}
	h := codeHost(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := Func[string, string](h, "upper.upper").Call(ctx, "typed")
	if err != nil || got != "TYPED" {
		t.Fatalf("upper.upper = %q, %v", got, err)
	}
	syms := h.Symbols()
	found := false
	for _, s := range syms {
		if s.Plugin == "upper" && s.Name == "upper" {
			found = string(s.In) == `{"type":"string"}` && string(s.Out) == `{"type":"string"}`
		}
	}
	if !found {
		t.Errorf("symbols lack upper.upper's schemas: %+v", syms)
	}
}
