package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// Editors' save styles, replayed as the file system sees them.
func saveInPlace(t testing.TB, path, data string) { writeFile(t, path, data) }

func saveVim(t testing.TB, path, data string) {
	dir := filepath.Dir(path)
	probe := filepath.Join(dir, "4913")
	writeFile(t, probe, "")
	must(t, os.Remove(probe))
	must(t, os.Rename(path, path+"~"))
	writeFile(t, path, data)
	must(t, os.Remove(path+"~"))
}

func saveJetBrains(t testing.TB, path, data string) {
	tmp, old := path+"___jb_tmp___", path+"___jb_old___"
	writeFile(t, tmp, data)
	must(t, os.Rename(path, old))
	must(t, os.Rename(tmp, path))
	must(t, os.Remove(old))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitVersion waits until the plugin's version function returns want,
// checking after every finished swap.
func (hs *harness) waitVersion(want string) {
	hs.t.Helper()
	for range 10 {
		m := hs.rec.mark()
		if got := hs.call("plug", "version"); got == strconv.Quote(want) {
			return
		}
		hs.rec.waitFor(hs.t, m, supervisor.EventSwapFinished, "plug")
	}
	hs.t.Fatalf("version never became %q; events: %s", want, hs.rec.dump(0))
}

// TestSourceDevLoop runs one host on a Go source plugin through the dev
// loop: saves in three editor styles, a compile error and its fix, a new
// sub-package, a local replace module, and changes that must not build.
func TestSourceDevLoop(t *testing.T) {
	dir := t.TempDir()
	plug := filepath.Join(dir, "plug")
	writeModule(t, plug, "v1")
	hs := startHost(t, dir, supervisorTOML("")+"[plugins.plug]\ndriver = \"./plug\"\n"+buildEnv, Options{})
	if got := hs.call("plug", "version"); got != `"v1"` {
		t.Fatalf("version = %s, want \"v1\"", got)
	}
	calls := 0
	count := func(t *testing.T) {
		t.Helper()
		calls++
		if got := hs.call("plug", "count"); got != strconv.Itoa(calls) {
			logs, _ := hs.h.Logs("plug", 40)
			t.Fatalf("count = %s, want %d: state was not kept; events: %s\nlogs: %v", got, calls, hs.rec.dump(0), logs)
		}
	}
	count(t)
	versionFile := filepath.Join(plug, "version.go")

	t.Run("saves", func(t *testing.T) {
		saves := []struct {
			name string
			save func(testing.TB, string, string)
		}{{"in-place", saveInPlace}, {"vim", saveVim}, {"jetbrains", saveJetBrains}}
		start := hs.rec.mark()
		var timings []string
		for i, s := range saves {
			v := fmt.Sprintf("v%d", i+2)
			m := hs.rec.mark()
			saved := time.Now()
			s.save(t, versionFile, versionGo(v))
			bs, _ := hs.rec.waitFor(t, m, supervisor.EventBuildStarted, "plug")
			bd, _ := hs.rec.waitFor(t, m, supervisor.EventBuildSucceeded, "plug")
			sw, _ := hs.rec.waitFor(t, m, supervisor.EventSwapFinished, "plug")
			if got := hs.call("plug", "version"); got != strconv.Quote(v) {
				t.Fatalf("%s save: version = %s, want %q", s.name, got, v)
			}
			count(t)
			timings = append(timings, fmt.Sprintf("%s: save→build start %.0f ms (debounce), build %.0f ms, swap %.1f ms (pause %.2f ms), save→serving %.0f ms",
				s.name, ms(bs.At.Sub(saved)), bd.BuildMS, sw.Report.SwapMS, sw.Report.PauseMS, ms(sw.At.Sub(saved))))
		}
		// The worker is serial: by the time the last swap finished, a
		// duplicate batch of any earlier save would have built already.
		// (A build started at a save's first event and restarted by its
		// next one never completes: count completed builds.)
		if n := hs.rec.count(start, supervisor.EventBuildSucceeded, "plug"); n != len(saves) {
			t.Errorf("%d builds for %d saves; events: %s", n, len(saves), hs.rec.dump(start))
		}
		if n := hs.rec.count(start, supervisor.EventSwapFinished, "plug"); n != len(saves) {
			t.Errorf("%d swaps for %d saves", n, len(saves))
		}
		warm := goBuild(t, plug, filepath.Join(t.TempDir(), "plain"))
		for _, l := range timings {
			t.Log(l)
		}
		t.Logf("plain warm go build of the same package: %.0f ms", ms(warm))
	})

	t.Run("compile error", func(t *testing.T) {
		m := hs.rec.mark()
		broken := mainGo + "\nfunc broken() int { return \"not an int\" }\n"
		line := strings.Count(broken, "\n") // the last line
		writeFile(t, filepath.Join(plug, "main.go"), broken)
		e, _ := hs.rec.waitFor(t, m, supervisor.EventBuildFailed, "plug")
		want := fmt.Sprintf("main.go:%d:", line)
		if !strings.Contains(e.Error, want) {
			t.Fatalf("build.failed error %q does not name %s", e.Error, want)
		}
		st, err := hs.h.Status("plug")
		must(t, err)
		if !strings.Contains(st.LastError, want) || st.State != supervisor.StateRunning {
			t.Errorf("status = %s, last_error %q; want running with the diagnostic", st.State, st.LastError)
		}
		if got := hs.call("plug", "version"); got != `"v4"` {
			t.Errorf("old generation should serve during a compile error: version = %s", got)
		}
		count(t)
		writeFile(t, filepath.Join(plug, "main.go"), mainGo)
		writeFile(t, versionFile, versionGo("v5"))
		hs.waitVersion("v5")
		count(t)
		if st, _ := hs.h.Status("plug"); st.LastError != "" {
			t.Errorf("last_error after the fix = %q, want cleared", st.LastError)
		}
	})

	t.Run("new sub-package", func(t *testing.T) {
		writeFile(t, filepath.Join(plug, "sub", "sub.go"), "package sub\n\nfunc Extra() string { return \"+sub1\" }\n")
		writeFile(t, versionFile, "package main\n\nimport \"example.com/plug/sub\"\n\nconst Version = \"v6\"\n\nfunc extra() string { return sub.Extra() }\n")
		hs.waitVersion("v6+sub1")
		m := hs.rec.mark()
		writeFile(t, filepath.Join(plug, "sub", "sub.go"), "package sub\n\nfunc Extra() string { return \"+sub2\" }\n")
		hs.waitVersion("v6+sub2")
		if hs.rec.count(m, supervisor.EventBuildStarted, "plug") == 0 {
			t.Error("no build after a change in the sub-package")
		}
		count(t)
	})

	t.Run("replace module and ignored changes", func(t *testing.T) {
		lib := filepath.Join(dir, "lib")
		writeFile(t, filepath.Join(lib, "go.mod"), "module example.com/lib\n\ngo 1.24\n")
		writeFile(t, filepath.Join(lib, "lib.go"), "package lib\n\nfunc Extra() string { return \"+lib1\" }\n")
		gomod, err := os.ReadFile(filepath.Join(plug, "go.mod"))
		must(t, err)
		writeFile(t, filepath.Join(plug, "go.mod"), string(gomod)+"\nrequire example.com/lib v0.0.0\n\nreplace example.com/lib => ../lib\n")
		writeFile(t, versionFile, "package main\n\nimport \"example.com/lib\"\n\nconst Version = \"v7\"\n\nfunc extra() string { return lib.Extra() }\n")
		hs.waitVersion("v7+lib1")
		writeFile(t, filepath.Join(lib, "lib.go"), "package lib\n\nfunc Extra() string { return \"+lib2\" }\n")
		hs.waitVersion("v7+lib2")

		// Sentinel: changes no build depends on, then a real one; exactly one
		// build must follow, and its batch must hold only the real change.
		m := hs.rec.mark()
		writeFile(t, filepath.Join(plug, "README.md"), "# plug\n")
		writeFile(t, filepath.Join(plug, "x_test.go"), "package main\n")
		writeFile(t, filepath.Join(lib, "README.md"), "# lib\n")
		writeFile(t, filepath.Join(lib, "lib_test.go"), "package lib\n")
		writeFile(t, filepath.Join(plug, "bin", "ignored.go"), "package main\n")
		writeFile(t, filepath.Join(plug, "notimported", "x.go"), "package notimported\n")
		writeFile(t, filepath.Join(lib, "lib.go"), "package lib\n\nfunc Extra() string { return \"+lib3\" }\n")
		hs.waitVersion("v7+lib3")
		if n := hs.rec.count(m, supervisor.EventBuildStarted, "plug"); n != 1 {
			t.Fatalf("%d builds, want 1; events: %s", n, hs.rec.dump(m))
		}
		e, _ := hs.rec.waitFor(t, m, supervisor.EventBuildStarted, "plug")
		paths, _ := e.Detail.(map[string]any)["paths"].([]string)
		if len(paths) != 1 || paths[0] != filepath.Join(lib, "lib.go") {
			t.Errorf("build triggered by %v, want only %s", paths, filepath.Join(lib, "lib.go"))
		}
		count(t)
	})

	t.Run("rollback", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := hs.h.Rollback(ctx, "plug"); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := hs.call("plug", "version"); got != `"v7+lib2"` {
			t.Errorf("after rollback version = %s, want the previous build v7+lib2", got)
		}
		count(t)
		// A reload with nothing changed in the sources rebuilds the newest
		// code and swaps to it.
		if _, err := hs.h.Reload(ctx, "plug", false); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := hs.call("plug", "version"); got != `"v7+lib3"` {
			t.Errorf("after reload version = %s, want v7+lib3", got)
		}
		count(t)
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestModeSwitch runs the same builtin name in both modes: inside the host
// (inproc) and compiled from builtin/json/cmd as a process (json, not upper: see the report).
func TestModeSwitch(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		t.Run(mode, func(t *testing.T) {
			hs := startHost(t, t.TempDir(), supervisorTOML("mode = \""+mode+"\"")+"[plugins.up]\ndriver = \"json\"\n", Options{})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			out, err := hs.h.Call(ctx, "up", "compact", []byte(`{ "a": 1 }`))
			if err != nil || string(out) != `{"a":1}` {
				t.Fatalf("compact = %s, %v", out, err)
			}
			st, err := hs.h.Status("up")
			must(t, err)
			wantKind, inproc := "source", mode == "inproc"
			if inproc {
				wantKind = "builtin"
			}
			if st.Kind != wantKind || (st.PID == 0) != inproc {
				t.Errorf("mode %s: kind %s pid %d, want kind %s, in-process %v", mode, st.Kind, st.PID, wantKind, inproc)
			}
		})
	}
}
