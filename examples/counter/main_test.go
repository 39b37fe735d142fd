package main

import (
	"testing"

	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

func TestTicksResumeAfterCrash(t *testing.T) {
	h := sdktest.Start(t, plugin, sdktest.Options{Config: map[string]any{"interval": "0s"}})
	if got := sdktest.ReadAs[int64](h, "ticks", 3); got[0] != 1 || got[2] != 3 {
		t.Fatalf("first items %v, want 1 2 3", got)
	}
	var next int64
	if !h.Get("source/ticks/test", "next", &next) || next < 4 {
		t.Fatalf("checkpointed next = %d, want at least 4", next)
	}
	h.Crash()
	// The position survived the crash: the stream goes on after it.
	if got := sdktest.ReadAs[int64](h, "ticks", 2); got[0] < next || got[1] != got[0]+1 {
		t.Fatalf("items after the crash %v, want consecutive from %d", got, next)
	}
}

func TestBadInterval(t *testing.T) {
	if err := (&ticks{}).Configure(map[string]any{"interval": "soon"}); err == nil {
		t.Fatal(`interval "soon" accepted`)
	}
}
