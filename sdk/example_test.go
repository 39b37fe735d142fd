package sdk_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// Tick is what the ticks source emits.
type Tick struct {
	N    int64  `json:"n"`
	Note string `json:"note,omitempty"` // optional: omitted when empty
}

type ticks struct{}

func (*ticks) Configure(map[string]any) error { return nil }
func (*ticks) Close(sdk.Context) error        { return nil }

// ItemType declares the item type, so the manifest announces its schema.
func (*ticks) ItemType() any { return Tick{} }

func (*ticks) Open(ctx sdk.Context, emit func(any) error) error {
	for n := int64(1); ctx.Err() == nil; n++ {
		if err := emit(Tick{N: n}); err != nil {
			return err
		}
	}
	return nil
}

// A plugin declares its symbols; the SDK derives the JSON Schema of each
// function's input and output and of each typed source's and sink's item
// from the Go types, and announces them to the host. (main would call
// sdk.Serve(plugin); here the supervisor runs it in-process.)
func Example() {
	plugin := sdk.Plugin{
		Name: "demo", Version: "1.0.0",
		Sources: map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
		Functions: map[string]any{
			"double": func(x int64) (int64, error) { return 2 * x, nil },
			"label":  func(t Tick) (string, error) { return fmt.Sprintf("tick %d", t.N), nil },
		},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "pvsdk")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: dir}})
	if err != nil {
		panic(err)
	}
	defer sup.Close(ctx)
	p, err := sup.Add("demo", supervisor.Spec{InProc: &plugin})
	if err != nil {
		panic(err)
	}
	m, err := p.Manifest(ctx)
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"double", "label"} {
		fmt.Printf("%s: in %s out %s\n", name, m.Schemas[name].In, m.Schemas[name].Out)
	}
	fmt.Printf("ticks: item %s\n", m.Schemas["ticks"].Item)
	// Output:
	// double: in {"type":"integer"} out {"type":"integer"}
	// label: in {"type":"object","properties":{"n":{"type":"integer"},"note":{"type":"string"}},"required":["n"]} out {"type":"string"}
	// ticks: item {"type":"object","properties":{"n":{"type":"integer"},"note":{"type":"string"}},"required":["n"]}
}
