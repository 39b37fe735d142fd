package supervisor_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// A host embeds the supervisor, adds a plugin (here an SDK plugin run
// in-process; a Spec with Path runs an executable), calls it, and swaps it
// for a new generation while the handle stays valid and state is kept.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "pvex")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: dir}})
	if err != nil {
		panic(err)
	}
	defer sup.Close(ctx)

	greeter := sdk.Plugin{Name: "greeter", Version: "1.0.0", Functions: map[string]any{
		"greet": func(ctx context.Context, name string) (string, error) {
			n, err := sdk.StateOf(ctx).IncrCounter("greeted", 1)
			return fmt.Sprintf("hello %s (#%d)", name, n), err
		},
	}}
	p, err := sup.Add("greeter", supervisor.Spec{InProc: &greeter})
	if err != nil {
		panic(err)
	}
	out, err := p.Call(ctx, "greet", []byte(`"gopher"`)) // waits for the plugin to come up
	fmt.Println(string(out), err)

	rep, err := p.Reload(ctx, supervisor.ReloadOptions{}) // swap: a new generation, same state
	fmt.Println("swapped", rep.From, "→", rep.Generation, err)

	out, err = p.Call(ctx, "greet", []byte(`"gopher"`))
	fmt.Println(string(out), err)
	fmt.Println(string(p.Status().Symbols.Schemas["greet"].In))
	// Output:
	// "hello gopher (#1)" <nil>
	// swapped 1 → 2 <nil>
	// "hello gopher (#2)" <nil>
	// {"type":"string"}
}
