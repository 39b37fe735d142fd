package main

import (
	"context"
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

func TestCountKeepsStateAcrossSwap(t *testing.T) {
	h := sdktest.Start(t, plugin)
	sdktest.Call[int64](h, "count", "home")
	if n := sdktest.Call[int64](h, "count", "home"); n != 2 {
		t.Fatalf("second count = %d, want 2", n)
	}
	// v2 keeps counters under "clicks:<key>" (state version 2); its
	// migration renames v1's keys, so no count starts from zero again.
	v2 := plugin
	v2.Version, v2.StateVersion = "2.0.0", "2"
	v2.Functions = map[string]any{"count": func(ctx context.Context, key string) (int64, error) {
		return sdk.StateOf(ctx).IncrCounter("clicks:"+key, 1)
	}}
	v2.MigrateScope = func(m sdk.Migration, kv map[string][]byte) (map[string][]byte, error) {
		out := map[string][]byte{}
		for k, v := range kv {
			if !strings.HasPrefix(k, "clicks:") {
				k = "clicks:" + k
			}
			out[k] = v
		}
		return out, nil
	}
	h.Swap(v2)
	if n := sdktest.Call[int64](h, "count", "home"); n != 3 {
		t.Fatalf("count after the swap to v2 = %d, want 3", n)
	}
}
