package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// runHost builds a config in code (no TOML, no API), runs a host on it and
// returns it with a stop function.
func runHost() (*host.Host, func()) {
	dir, err := os.MkdirTemp("", "pvhost")
	if err != nil {
		panic(err)
	}
	cfg := config.New(dir)
	cfg.Supervisor.API = ""                 // no HTTP API
	cfg.Supervisor.Mode = config.ModeInproc // builtins run inside the host
	if _, err := cfg.AddPlugin("upper", "upper", nil, config.Registry(builtin.Sources())); err != nil {
		panic(err)
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	h, err := host.New(cfg, host.Options{NoWatch: true})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	<-h.Started()
	return h, func() { cancel(); <-done; os.RemoveAll(dir) }
}

// Call a plugin function like a Go function: typed input and output, and
// errors matchable with errors.Is / errors.As.
func ExampleFunc() {
	h, stop := runHost()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	upper := host.Func[string, string](h, "upper.upper")
	s, err := upper.Call(ctx, "hello")
	fmt.Println(s, err)

	// The Go types are checked against the schema the plugin announced.
	_, err = host.Func[int, string](h, "upper.upper").Call(ctx, 42)
	fmt.Println(errors.Is(err, host.ErrSchemaMismatch))

	_, err = host.Func[string, string](h, "upper.nope").Call(ctx, "x")
	fmt.Println(errors.Is(err, host.ErrUnknownSymbol))
	// Output:
	// HELLO <nil>
	// true
	// true
}

// Tick is a source's item; Row a sink's.
type Tick struct {
	N int64 `json:"n"`
}

type Row struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type ticks struct{}

func (*ticks) Configure(map[string]any) error { return nil }
func (*ticks) Close(sdk.Context) error        { return nil }
func (*ticks) ItemType() any                  { return Tick{} }
func (*ticks) Open(ctx sdk.Context, emit func(any) error) error {
	for n := int64(1); ctx.Err() == nil; n++ {
		if err := emit(Tick{N: n}); err != nil {
			return err
		}
	}
	return nil
}

var (
	collectedMu sync.Mutex
	collected   []string
)

type rows struct{}

func (*rows) Configure(map[string]any) error { return nil }
func (*rows) Open(sdk.Context) error         { return nil }
func (*rows) Close(sdk.Context) error        { return nil }
func (*rows) ItemType() any                  { return Row{} }
func (*rows) Collect(_ sdk.Context, item any) error {
	var r Row
	if err := json.Unmarshal(item.(json.RawMessage), &r); err != nil {
		return err
	}
	collectedMu.Lock()
	collected = append(collected, fmt.Sprintf("%d:%s", r.ID, r.Name))
	collectedMu.Unlock()
	return nil
}

// Subscribe to a source with items decoded into a Go type, and write Go
// values to a sink. Both handles stay valid across swaps and restarts.
// (The plugin here runs in-process, added to the host's supervisor; a
// configured plugin is used the same way.)
func ExampleSubscribe() {
	h, stop := runHost()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plug := sdk.Plugin{Name: "demo", Version: "1.0.0",
		Sources: map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
		Sinks:   map[string]sdk.NewSink{"rows": func() sdk.Sink { return &rows{} }}}
	if _, err := h.Supervisor().Add("demo", supervisor.Spec{InProc: &plug}); err != nil {
		panic(err)
	}

	sub, err := host.Subscribe[Tick](ctx, h, "demo.ticks")
	if err != nil {
		panic(err)
	}
	for i := 0; i < 3; i++ {
		it := <-sub.C()
		fmt.Println("tick", it.Value.N, it.Err)
	}
	if err := sub.Close(ctx); err != nil {
		panic(err)
	}

	w, err := host.OpenSink[Row](ctx, h, "demo.rows")
	if err != nil {
		panic(err)
	}
	for i, name := range []string{"ann", "bob"} {
		if err := w.Write(ctx, Row{ID: int64(i + 1), Name: name}); err != nil {
			panic(err)
		}
	}
	if err := w.Close(ctx); err != nil { // waits until the sink collected both
		panic(err)
	}
	collectedMu.Lock()
	fmt.Println("collected", strings.Join(collected, " "))
	collectedMu.Unlock()
	// Output:
	// tick 1 <nil>
	// tick 2 <nil>
	// tick 3 <nil>
	// collected 1:ann 2:bob
}
