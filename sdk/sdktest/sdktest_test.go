package sdktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/sdk/sdktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// v1 counts hits per key in the key "hits:<key>".
var v1 = sdk.Plugin{Name: "hits", Version: "1.0.0",
	Functions: map[string]any{
		"hit": func(ctx context.Context, key string) (int64, error) {
			return sdk.StateOf(ctx).IncrCounter("hits:"+key, 1)
		},
		"greeting": func(ctx context.Context) (string, error) {
			g, _ := sdk.ConfigOf(ctx)["greeting"].(string)
			return g, nil
		},
		"boom": func() error { return errors.New("boom") },
	},
	Sources: map[string]sdk.NewSource{"seq": func() sdk.Source { return &seq{} }},
	Sinks:   map[string]sdk.NewSink{"tally": func() sdk.Sink { return &tally{} }},
}

// v2 renamed the key to "clicks/<key>" (state version 2) and migrates.
func v2(seen *[]sdk.Migration) sdk.Plugin {
	p := v1
	p.Version, p.StateVersion = "2.0.0", "2"
	p.Functions = map[string]any{
		"hit": func(ctx context.Context, key string) (int64, error) {
			return sdk.StateOf(ctx).IncrCounter("clicks/"+key, 1)
		},
	}
	p.MigrateScope = func(m sdk.Migration, kv map[string][]byte) (map[string][]byte, error) {
		*seen = append(*seen, m)
		out := map[string][]byte{}
		for k, v := range kv {
			if rest, ok := strings.CutPrefix(k, "hits:"); ok {
				k = "clicks/" + rest
			}
			out[k] = v
		}
		return out, nil
	}
	return p
}

type seq struct{}

func (*seq) Configure(map[string]any) error { return nil }
func (*seq) Close(sdk.Context) error        { return nil }
func (*seq) Open(ctx sdk.Context, emit func(any) error) error {
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
	}
	return nil
}

type tally struct{}

func (*tally) Configure(map[string]any) error { return nil }
func (*tally) Open(sdk.Context) error         { return nil }
func (*tally) Close(sdk.Context) error        { return nil }
func (*tally) Collect(ctx sdk.Context, item any) error {
	var n int64
	if err := json.Unmarshal(item.(json.RawMessage), &n); err != nil {
		return err
	}
	_, err := ctx.State().IncrCounter("sum", n)
	return err
}

// The swap test an author writes: v1 acts, v2 takes over, its Migrate is
// told the scope and the old versions, and the state reads under v2's key.
func TestSwapMigratesState(t *testing.T) {
	h := sdktest.Start(t, v1)
	for range 3 {
		sdktest.Call[int64](h, "hit", "home")
	}
	var seen []sdk.Migration
	rep := h.Swap(v2(&seen))
	if rep.From != 1 || rep.Generation != 2 {
		t.Fatalf("swap report %+v, want generation 1 → 2", rep)
	}
	if n := sdktest.Call[int64](h, "hit", "home"); n != 4 {
		t.Fatalf("hit after the swap = %d, want 4 (3 migrated + 1)", n)
	}
	var old int64
	if h.Get("functions", "hits:home", &old) {
		t.Fatalf("the old key hits:home is still there (%d) after the migration", old)
	}
	want := sdk.Migration{Scope: "functions", FromVersion: "1.0.0", FromStateVersion: "1", ToVersion: "2.0.0", ToStateVersion: "2"}
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("Migrate saw %+v, want one call with %+v", seen, want)
	}
}

// A swap to a state version without a migration hook is refused and the
// old version keeps serving with its state.
func TestSwapWithoutMigrateIsRefused(t *testing.T) {
	h := sdktest.Start(t, v1)
	sdktest.Call[int64](h, "hit", "a")
	bad := v1
	bad.Version, bad.StateVersion = "3.0.0", "3"
	if _, err := h.SwapErr(bad); err == nil || !strings.Contains(err.Error(), "Migrate") {
		t.Fatalf("swap to state version 3 without Migrate: err = %v, want a refusal naming Migrate", err)
	}
	if n := sdktest.Call[int64](h, "hit", "a"); n != 2 {
		t.Fatalf("after the refused swap hit = %d, want 2 from the old generation", n)
	}
	said := false
	for _, l := range h.Plugin().Logs(20) {
		if strings.Contains(l.Line, "swap failed: swap failed") {
			t.Fatalf("doubled prefix in the log: %q", l.Line)
		}
		said = said || strings.HasPrefix(l.Line, "swap failed: ")
	}
	if !said {
		t.Fatalf("no swap failure in the plugin's log: %v", h.Plugin().Logs(20))
	}
}

func TestSourceSinkStateAndConfig(t *testing.T) {
	h := sdktest.Start(t, v1, sdktest.Options{Config: map[string]any{"greeting": "hi"}})
	if g := sdktest.Call[string](h, "greeting", nil); g != "hi" {
		t.Fatalf("greeting from config = %q, want hi", g)
	}
	if err := h.CallErr("boom", nil, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("boom: err = %v, want the function's error", err)
	}
	first := sdktest.ReadAs[int64](h, "seq", 3)
	next := sdktest.ReadAs[int64](h, "seq", 2)
	if first[0] != 0 || first[2] != 2 || next[0] != 3 || next[1] != 4 {
		t.Fatalf("source items %v then %v, want 0 1 2 then 3 4 (state resumes)", first, next)
	}
	h.Feed("tally", 5, 7)
	var sum int64
	if !h.Get("sink/tally/test", "sum", &sum) || sum != 12 {
		t.Fatalf("sink state sum = %d, want 12", sum)
	}
	h.Put("source/seq/test", "next", 100)
	if got := sdktest.ReadAs[int64](h, "seq", 1); got[0] != 100 {
		t.Fatalf("after Put next=100 the source emitted %v", got)
	}
	h.Delete("sink/tally/test", "")
	if h.Get("sink/tally/test", "sum", &sum) {
		t.Fatalf("sum still there after deleting the scope")
	}
}

// A crash restarts from the last checkpoint: what was checkpointed
// survives, what came after is lost.
func TestCrashRestoresCheckpoint(t *testing.T) {
	h := sdktest.Start(t, v1)
	sdktest.Call[int64](h, "hit", "a")
	h.State() // checkpoint: a=1
	sdktest.Call[int64](h, "hit", "a")
	if gen := h.Crash(); gen < 2 {
		t.Fatalf("restarted as generation %d", gen)
	}
	if n := sdktest.Call[int64](h, "hit", "a"); n != 2 {
		t.Fatalf("hit after the crash = %d, want 2 (checkpoint 1 + 1)", n)
	}
}

// A state export of a v1 daemon loads as a fixture; v2 migrates it on
// start because it was written by state version 1.
func TestFixtureFromExport(t *testing.T) {
	h := sdktest.Start(t, v1)
	sdktest.Call[int64](h, "hit", "x")
	sdktest.Call[int64](h, "hit", "x")
	b, err := json.Marshal(h.State())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var seen []sdk.Migration
	h2 := sdktest.Start(t, v2(&seen), sdktest.Options{State: sdktest.LoadState(t, path)})
	if n := sdktest.Call[int64](h2, "hit", "x"); n != 3 {
		t.Fatalf("v2 on the v1 fixture: hit = %d, want 3", n)
	}
}
