package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

func TestAppendWritesLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	h := sdktest.Start(t, plugin, sdktest.Options{Config: map[string]any{"path": path}})
	h.Feed("append", map[string]int{"a": 1}, 2)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "{\"a\":1}\n2\n" {
		t.Fatalf("file holds %q", got)
	}
	var lines int64
	if !h.Get("sink/append/test", "lines", &lines) || lines != 2 {
		t.Fatalf("lines counter = %d, want 2", lines)
	}
}
