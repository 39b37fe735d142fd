// Command goplugin is the Go twin of examples/pydemo (double and ticks),
// built by the benchmarks in interop_test.go to compare the two SDKs
// against the same mini-host.
package main

import (
	"context"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

func double(ctx context.Context, x int) (int, error) {
	if _, err := sdk.StateOf(ctx).IncrCounter("calls", 1); err != nil {
		return 0, err
	}
	return 2 * x, nil
}

type ticks struct{ interval time.Duration }

func (t *ticks) Configure(props map[string]any) error {
	t.interval = 10 * time.Millisecond
	if v, ok := props["interval_ms"].(float64); ok {
		t.interval = time.Duration(v * float64(time.Millisecond))
	}
	return nil
}

func (t *ticks) Open(ctx sdk.Context, emit func(any) error) error {
	var n int64
	if _, err := ctx.State().GetState("next", &n); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if err := emit(n); err != nil {
			return err
		}
		n++
		if err := ctx.State().PutState("next", n); err != nil {
			return err
		}
		if t.interval > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(t.interval):
			}
		}
	}
	return nil
}

func (t *ticks) Close(sdk.Context) error { return nil }

func main() {
	sdk.Serve(sdk.Plugin{
		Name: "godemo", Version: "1.0.0",
		Functions: map[string]any{"double": double},
		Sources:   map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
	})
}
