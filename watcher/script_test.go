package watcher

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Each testdata/*.txt is one scenario, run in a fresh t.TempDir() for both
// backends. A line is a command; "#" starts a comment line; a "poll:" or
// "inotify:" prefix limits a line to one backend. Paths are relative to the
// temp dir.
//
//	mkdir d               create d and its parents
//	write f "text"        create or truncate f and write text (in place)
//	append f "text"       append text to f
//	rename a b            rename a to b
//	rm p                  remove p and everything below
//	touch p               create p, or move its mtime one second on
//	chmod p 0600          change p's mode
//	symlink target name   create a symlink
//	repeat N cmd...       run cmd N times
//	match-not glob...     keep only paths whose base name matches none of
//	                      the globs (Options.Match before watch, SetMatch after)
//	watch                 start watching the temp dir
//	watch-file p          watch p's folder, Match p only (a binary driver)
//	sentinel p            file the final check appends to (default zz_sentinel.go)
//	batch p...            wait for the next batch; its paths must be exactly p...
//	Output:               only a heading for the batch lines that follow
//
// After the last line the sentinel is appended to and the next batch must
// be the sentinel alone: nothing else, no late or duplicate batch, came out.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	for _, mode := range []string{"inotify", "poll"} {
		t.Run(mode, func(t *testing.T) {
			for _, f := range files {
				t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
					t.Parallel()
					runScript(t, f, mode)
				})
			}
		})
	}
}

// waitBatch bounds every wait for a batch.
const waitBatch = 5 * time.Second

type scriptRun struct {
	t        *testing.T
	mode     string
	dir      string
	sentinel string
	opts     Options
	w        *Watcher
}

func runScript(t *testing.T, file, mode string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptRun{t: t, mode: mode, dir: t.TempDir(), sentinel: "zz_sentinel.go"}
	s.opts = Options{Poll: mode == "poll", PollInterval: 50 * time.Millisecond}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line == "Output:" {
			continue
		}
		if m, rest, ok := strings.Cut(line, ": "); ok && (m == "poll" || m == "inotify") {
			if m != mode {
				continue
			}
			line = rest
		}
		args, err := splitArgs(line)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n+1, err)
		}
		if err := s.do(args); err != nil {
			t.Fatalf("%s:%d: %s: %v", file, n+1, line, err)
		}
	}
	if s.w == nil {
		t.Fatalf("%s: no watch command", file)
	}
	if err := s.do([]string{"append", s.sentinel, "sentinel\n"}); err != nil {
		t.Fatal(err)
	}
	if err := s.do([]string{"batch", s.sentinel}); err != nil {
		t.Fatalf("after the script, the sentinel alone: %v", err)
	}
}

func (s *scriptRun) abs(p string) string { return filepath.Join(s.dir, filepath.FromSlash(p)) }

func (s *scriptRun) do(args []string) error {
	cmd, a := args[0], args[1:]
	need := func(n int) error {
		if len(a) != n {
			return fmt.Errorf("%s wants %d arguments, got %d", cmd, n, len(a))
		}
		return nil
	}
	switch cmd {
	case "mkdir":
		if err := need(1); err != nil {
			return err
		}
		return os.MkdirAll(s.abs(a[0]), 0o755)
	case "write", "append":
		if err := need(2); err != nil {
			return err
		}
		flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if cmd == "append" {
			flag = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(s.abs(a[0]), flag, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(a[1])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "rename":
		if err := need(2); err != nil {
			return err
		}
		return os.Rename(s.abs(a[0]), s.abs(a[1]))
	case "rm":
		if err := need(1); err != nil {
			return err
		}
		return os.RemoveAll(s.abs(a[0]))
	case "touch":
		if err := need(1); err != nil {
			return err
		}
		fi, err := os.Stat(s.abs(a[0]))
		if os.IsNotExist(err) {
			return os.WriteFile(s.abs(a[0]), nil, 0o644)
		} else if err != nil {
			return err
		}
		mt := fi.ModTime().Add(time.Second)
		return os.Chtimes(s.abs(a[0]), mt, mt)
	case "chmod":
		if err := need(2); err != nil {
			return err
		}
		m, err := strconv.ParseUint(a[1], 8, 32)
		if err != nil {
			return err
		}
		return os.Chmod(s.abs(a[0]), os.FileMode(m))
	case "symlink":
		if err := need(2); err != nil {
			return err
		}
		return os.Symlink(a[0], s.abs(a[1]))
	case "repeat":
		if len(a) < 2 {
			return fmt.Errorf("repeat wants a count and a command")
		}
		n, err := strconv.Atoi(a[0])
		if err != nil {
			return err
		}
		for range n {
			if err := s.do(a[1:]); err != nil {
				return err
			}
		}
		return nil
	case "match-not":
		globs := a
		match := func(p string) bool {
			for _, g := range globs {
				if ok, _ := path.Match(g, filepath.Base(p)); ok {
					return false
				}
			}
			return true
		}
		if s.w != nil {
			s.w.SetMatch(match)
		} else {
			s.opts.Match = match
		}
		return nil
	case "sentinel":
		if err := need(1); err != nil {
			return err
		}
		s.sentinel = a[0]
		return nil
	case "watch":
		return s.start(s.dir)
	case "watch-file":
		if err := need(1); err != nil {
			return err
		}
		bin := s.abs(a[0])
		s.opts.Match = func(p string) bool { return p == bin }
		s.sentinel = a[0]
		return s.start(filepath.Dir(bin))
	case "batch":
		if s.w == nil {
			return fmt.Errorf("batch before watch")
		}
		return s.expect(a)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func (s *scriptRun) start(root string) error {
	if s.w != nil {
		return fmt.Errorf("already watching")
	}
	w, err := New(root, s.opts)
	if err != nil {
		return err
	}
	s.w = w
	startWatcher(s.t, w)
	return nil
}

// startWatcher runs w until the test ends, then checks Run returned nil.
func startWatcher(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitBatch):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// next waits for the next batch of w.
func next(t *testing.T, w *Watcher) Batch {
	t.Helper()
	select {
	case b, ok := <-w.Batches():
		if !ok {
			t.Fatal("Batches closed early")
		}
		return b
	case <-time.After(waitBatch):
		t.Fatalf("no batch within %v", waitBatch)
	}
	return Batch{}
}

func (s *scriptRun) expect(want []string) error {
	var b Batch
	select {
	case b = <-s.w.Batches():
	case <-time.After(waitBatch):
		return fmt.Errorf("no batch within %v, want %q", waitBatch, want)
	}
	if err := checkBatch(b); err != nil {
		return err
	}
	got := make([]string, len(b.Paths))
	for i, p := range b.Paths {
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		got[i] = filepath.ToSlash(rel)
	}
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) || b.Rescan {
		return fmt.Errorf("batch %q (rescan %v), want %q", got, b.Rescan, want)
	}
	return nil
}

// checkBatch checks the invariants every batch keeps.
func checkBatch(b Batch) error {
	if len(b.Paths) == 0 {
		return fmt.Errorf("empty batch")
	}
	for _, p := range b.Paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("batch path %q is not absolute", p)
		}
	}
	if !slices.IsSorted(b.Paths) || len(slices.Compact(slices.Clone(b.Paths))) != len(b.Paths) {
		return fmt.Errorf("batch paths not sorted and unique: %q", b.Paths)
	}
	if b.First.IsZero() || b.Last.Before(b.First) {
		return fmt.Errorf("batch times First %v Last %v", b.First, b.Last)
	}
	return nil
}

// splitArgs splits a line on spaces; "quoted" arguments use Go syntax.
func splitArgs(line string) ([]string, error) {
	var args []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, fmt.Errorf("bad quoted argument in %q: %w", line, err)
			}
			arg, _ := strconv.Unquote(q)
			args = append(args, arg)
			line = line[len(q):]
			continue
		}
		arg, rest, _ := strings.Cut(line, " ")
		args = append(args, arg)
		line = rest
	}
	return args, nil
}
