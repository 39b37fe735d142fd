// Command transform is an example function plugin: double doubles a
// number; edit it while `make run` runs and the new code serves at once.
package main

import (
	"context"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(plugin) }

// plugin is what main serves; the tests run it with sdktest.
var plugin = sdk.Plugin{
	Name: "transform", Version: "1.0.0",
	Functions: map[string]any{"double": double, "calls": calls},
}

func double(ctx context.Context, x int64) (int64, error) {
	if _, err := sdk.StateOf(ctx).IncrCounter("calls", 1); err != nil {
		return 0, err
	}
	return x * 2, nil
}

// calls reports how many numbers double has seen (state survives swaps).
func calls(ctx context.Context) (int64, error) {
	return sdk.StateOf(ctx).GetCounter("calls")
}
