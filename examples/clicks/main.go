// Command clicks is an example function plugin with state: count returns
// IncrCounter of the key it is given, so every call sees the next number.
package main

import (
	"context"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(plugin) }

// plugin is what main serves; the tests run it with sdktest.
var plugin = sdk.Plugin{
	Name: "clicks", Version: "1.0.0",
	Functions: map[string]any{"count": count, "get": get},
}

func count(ctx context.Context, key string) (int64, error) {
	return sdk.StateOf(ctx).IncrCounter(key, 1)
}

func get(ctx context.Context, key string) (int64, error) {
	return sdk.StateOf(ctx).GetCounter(key)
}
