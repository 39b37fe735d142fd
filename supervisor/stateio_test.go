package supervisor_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// A plugin that never started shows no generation (not the number its
// failed attempts used) and counts its failed restart attempts.
func TestStatusOfNeverStartedPlugin(t *testing.T) {
	sup := newSup(t, func(o *supervisor.Options) {
		o.BackoffMin.Duration, o.BackoffMax.Duration = time.Millisecond, time.Millisecond
	})
	p, err := sup.Add("ghost", supervisor.Spec{Kind: "binary", Path: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failed", 10*time.Second, func() bool { return p.Status().State == supervisor.StateFailed })
	if st := p.Status(); st.Generation != 0 || st.Restarts != 4 {
		t.Fatalf("never started: generation %d restarts %d, want 0 and 4 (5 failed starts)", st.Generation, st.Restarts)
	}
}

// The store of a stopped supervisor: export, edit, delete, list; bad
// imports are refused with the key named.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	f, err := supervisor.OpenStateFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := &supervisor.StateExport{Plugin: "p", Version: "1.0.0", StateVersion: "1", Scopes: map[string]map[string]json.RawMessage{
		"functions": {"n": json.RawMessage("3"), "raw": json.RawMessage(`{"$bytes":"AAE="}`)}}}
	if err := f.Edit("p", supervisor.StateEdit{Set: set}); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.Plugins(); len(names) != 1 || names[0] != "p" {
		t.Fatalf("plugins %v", names)
	}
	e, err := f.Export("p")
	if err != nil || string(e.Scopes["functions"]["n"]) != "3" || string(e.Scopes["functions"]["raw"]) != `{"$bytes":"AAE="}` || e.Version != "1.0.0" {
		t.Fatalf("export %+v %v", e, err)
	}
	if err := f.Edit("p", supervisor.StateEdit{Delete: true, Scope: "functions", Key: "n"}); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.Export("p"); len(e.Scopes["functions"]) != 1 {
		t.Fatalf("after rm of n: %v", e.Scopes)
	}
	bad := &supervisor.StateExport{Scopes: map[string]map[string]json.RawMessage{"s": {"k": json.RawMessage("{nope")}}}
	if err := f.Edit("p", supervisor.StateEdit{Set: bad}); err == nil || !strings.Contains(err.Error(), `key "k"`) {
		t.Fatalf("invalid JSON import: %v", err)
	}
	if err := f.Edit("p", supervisor.StateEdit{Delete: true}); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.Plugins(); len(names) != 0 {
		t.Fatalf("after rm of everything: %v", names)
	}
	// A running daemon holds the store: the tools say so.
	held := t.TempDir()
	newSup(t, func(o *supervisor.Options) { o.StateDir = held })
	if _, err := supervisor.OpenStateFile(held); err == nil || !strings.Contains(err.Error(), "another plugvisor") {
		t.Fatalf("opening a held store: %v", err)
	}
}
