package supervisor_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

type countIn struct {
	Key string `json:"key"`
}

type countOut struct {
	N int64 `json:"n"`
}

type countOutNote struct {
	N    int64  `json:"n"`
	Note string `json:"note,omitempty"`
}

func inproc(fn any) *sdk.Plugin {
	return &sdk.Plugin{Name: "p", Version: "1.0.0", Functions: map[string]any{"count": fn, "other": func() error { return nil }}}
}

// A swap whose new version changed the schema of a function in use is
// refused before anything pauses (unless forced); a compatible change is
// accepted and reported; a change to a function nobody called is not
// checked.
func TestSwapChecksSchemasOfSymbolsInUse(t *testing.T) {
	ctx, sup := ctxT(t, 30*time.Second), newSup(t)
	v1 := inproc(func(in countIn) (countOut, error) { return countOut{N: 1}, nil })
	p, err := sup.Add("p", supervisor.Spec{InProc: v1})
	if err != nil {
		t.Fatal(err)
	}
	// Not in use yet: any change swaps.
	retyped := inproc(func(in string) (countOut, error) { return countOut{}, nil })
	if _, err := p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{InProc: retyped}}); err != nil {
		t.Fatalf("swap with no symbol in use: %v", err)
	}
	if _, err := p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{InProc: v1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Call(ctx, "count", []byte(`{"key":"a"}`)); err != nil { // now count is in use
		t.Fatal(err)
	}
	gen := p.Status().Generation
	rep, err := p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{InProc: retyped}})
	if !errors.Is(err, supervisor.ErrSchemaIncompatible) || !strings.Contains(err.Error(), "function count input: value: object{key: string} does not fit string") {
		t.Fatalf("retyped input: %v", err)
	}
	if rep.PauseMS != 0 || rep.Phases.DrainMS != 0 || p.Status().Generation != gen {
		t.Fatalf("the refused swap paused or replaced the generation: %+v, generation %d (was %d)", rep, p.Status().Generation, gen)
	}
	removed := inproc(func(in countIn) (struct {
		M int64 `json:"m"`
	}, error) {
		return struct {
			M int64 `json:"m"`
		}{}, nil
	})
	if _, err := p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{InProc: removed}}); !errors.Is(err, supervisor.ErrSchemaIncompatible) ||
		!strings.Contains(err.Error(), "function count output: field n: required field missing") {
		t.Fatalf("removed output field: %v", err)
	}
	added := inproc(func(in countIn) (countOutNote, error) { return countOutNote{N: 2}, nil })
	rep, err = p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{InProc: added}})
	if err != nil || strings.Join(rep.SchemaChanges, ";") != "function count output: field note added (optional)" {
		t.Fatalf("compatible swap: %v, changes %q", err, rep.SchemaChanges)
	}
	rep, err = p.Reload(ctx, supervisor.ReloadOptions{Force: true, Spec: &supervisor.Spec{InProc: retyped}})
	if err != nil || !strings.Contains(strings.Join(rep.SchemaChanges, ";"), "function count input: value: object{key: string} → string") {
		t.Fatalf("forced incompatible swap: %v, changes %q", err, rep.SchemaChanges)
	}
}

// A pipeline whose stages do not fit does not run: RunPipeline says which
// stages and both types before it subscribes to anything.
func TestRunPipelineRefusesIllTyped(t *testing.T) {
	ctx, sup := ctxT(t, 30*time.Second), newSup(t)
	if _, err := sup.Add("p", supervisor.Spec{InProc: inproc(func(in countIn) (countOut, error) { return countOut{}, nil })}); err != nil {
		t.Fatal(err)
	}
	pl := supervisor.Pipeline{Name: "bad", Source: supervisor.Ref{Plugin: "p", Symbol: "count"},
		Functions: []supervisor.Ref{{Plugin: "p", Symbol: "count"}, {Plugin: "p", Symbol: "count"}}}
	// The source stage announces no item (count is no source): not checked;
	// count's output object{n} does not fit its input object{key}.
	err := sup.RunPipeline(ctx, pl)
	if !errors.Is(err, supervisor.ErrSchemaIncompatible) ||
		!strings.Contains(err.Error(), "function p.count emits object{n: integer} but function p.count takes object{key: string} (field key: required field missing)") {
		t.Fatalf("RunPipeline: %v", err)
	}
}
