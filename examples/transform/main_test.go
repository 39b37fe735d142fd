package main

import (
	"testing"

	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

func TestDoubleCountsCalls(t *testing.T) {
	h := sdktest.Start(t, plugin)
	if got := sdktest.Call[int64](h, "double", 21); got != 42 {
		t.Fatalf("double(21) = %d, want 42", got)
	}
	if err := h.CallErr("double", "x", nil); err == nil {
		t.Fatal(`double("x") succeeded; want an input decoding error`)
	}
	h.Swap(plugin) // a reload of the same code keeps the count
	if got := sdktest.Call[int64](h, "calls", nil); got != 1 {
		t.Fatalf("calls = %d, want 1", got)
	}
}
