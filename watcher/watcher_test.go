package watcher

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fakeBackend forwards what the test sends, to drive the debouncer alone.
type fakeBackend struct {
	in     chan []change
	settle bool
}

func (f *fakeBackend) needsSettle() bool { return f.settle }

func (f *fakeBackend) run(ctx context.Context, out chan<- []change) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case cs := <-f.in:
			send(ctx, out, cs)
		}
	}
}

func fakeWatcher(t *testing.T, opts Options, settle bool) (*Watcher, chan<- []change) {
	t.Helper()
	w, err := New(t.TempDir(), Options{Poll: true, Debounce: opts.Debounce, MaxWait: opts.MaxWait})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{in: make(chan []change), settle: settle}
	w.be = fb
	startWatcher(t, w)
	return w, fb.in
}

func paths(ps ...string) []change {
	cs := make([]change, len(ps))
	for i, p := range ps {
		cs[i] = change{path: "/x/" + p}
	}
	return cs
}

// Changes that keep coming still make a batch once MaxWait is over.
func TestMaxWait(t *testing.T) {
	w, in := fakeWatcher(t, Options{Debounce: time.Hour, MaxWait: 50 * time.Millisecond}, false)
	start := time.Now()
	in <- paths("a.go")
	in <- paths("b.go", "a.go")
	b := next(t, w)
	if got := strings.Join(b.Paths, " "); got != "/x/a.go /x/b.go" {
		t.Fatalf("batch %q, want a.go and b.go", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("batch after %v, want about MaxWait", d)
	}
}

// In poll mode a batch waits for a walk that saw nothing new: a save split
// over two walks stays one batch even when the walks are further apart
// than the debounce.
func TestPollBatchWaitsForSettledWalk(t *testing.T) {
	w, in := fakeWatcher(t, Options{Debounce: time.Millisecond}, true)
	in <- paths("f.go") // first walk: f.go renamed away
	select {
	case b := <-w.Batches():
		t.Fatalf("batch %q before the tree settled", b.Paths)
	case <-time.After(50 * time.Millisecond): // 50× the debounce
	}
	in <- paths("f.go", "g.go") // second walk: the new f.go
	in <- nil                   // third walk: nothing new
	b := next(t, w)
	if got := strings.Join(b.Paths, " "); got != "/x/f.go /x/g.go" {
		t.Fatalf("batch %q, want f.go and g.go", got)
	}
}

func TestMerge(t *testing.T) {
	t0 := time.Now()
	a := &Batch{Paths: []string{"/b", "/c"}, First: t0, Last: t0.Add(1)}
	b := &Batch{Paths: []string{"/a", "/b"}, First: t0.Add(2), Last: t0.Add(3), Rescan: true}
	m := merge(a, b)
	if got := strings.Join(m.Paths, " "); got != "/a /b /c" || !m.First.Equal(t0) || !m.Last.Equal(t0.Add(3)) || !m.Rescan {
		t.Fatalf("merge = %+v", m)
	}
}

// An overflow (or any watch error) triggers a rescan: a Rescan batch, and
// folders whose watch was lost are watched again.
func TestRescanOnOverflow(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	w, err := New(root, Options{OnError: func(err error) { errs <- err }})
	if err != nil {
		t.Fatal(err)
	}
	be := w.be.(*inotifyBackend)
	// Lose sub's watch the way an overflow loses its creation event.
	if err := be.fs.Remove(sub); err != nil {
		t.Fatal(err)
	}
	startWatcher(t, w)
	be.fs.Errors <- fsnotify.ErrEventOverflow

	b := next(t, w)
	if !b.Rescan || len(b.Paths) != 1 || b.Paths[0] != w.root {
		t.Fatalf("batch %+v, want a Rescan batch naming the root", b)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "overflow") || !strings.Contains(err.Error(), root) {
			t.Errorf("OnError got %v, want the overflow and the root", err)
		}
	default:
		t.Error("OnError not called for the overflow")
	}
	f := filepath.Join(sub, "f.go")
	if err := os.WriteFile(f, []byte("package sub\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b := next(t, w); len(b.Paths) != 1 || b.Paths[0] != f {
		t.Fatalf("batch %q, want %s: sub is watched again", b.Paths, f)
	}
}

// A root folder replaced wholesale (a fetch swapping in a new tree) is
// found again.
func TestRootReplaced(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(map[bool]string{false: "inotify", true: "poll"}[poll], func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "plugin")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := New(root, Options{Poll: poll, PollInterval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			startWatcher(t, w)
			if err := os.Rename(root, root+".old"); err != nil {
				t.Fatal(err)
			}
			if !poll { // an empty tree going away is no change to a poller
				if b := next(t, w); len(b.Paths) != 1 || b.Paths[0] != root {
					t.Fatalf("batch %q, want the root", b.Paths)
				}
			}
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(root, "main.go")
			if err := os.WriteFile(f, []byte("package main\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Until main.go shows up: inotify first rescans (a Rescan
			// batch), polling simply sees it.
			deadline := time.Now().Add(waitBatch)
			for {
				b := next(t, w)
				if b.Rescan || (len(b.Paths) == 1 && b.Paths[0] == f) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("root not watched again; last batch %q", b.Paths)
				}
			}
			// Watched again for real.
			g := filepath.Join(root, "g.go")
			if err := os.WriteFile(g, []byte("package main\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for {
				b := next(t, w)
				if len(b.Paths) == 1 && b.Paths[0] == g {
					break
				}
				if b.Paths[0] != f && !b.Rescan {
					t.Fatalf("batch %q, want %s", b.Paths, g)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app")
	if err := os.WriteFile(file, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ root, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{file, "Options.Match"},
	} {
		_, err := New(tt.root, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.root) {
			t.Errorf("New(%s) = %v, want an error naming it and mentioning %q", tt.root, err, tt.want)
		}
	}
}

func TestRunTwiceAndClose(t *testing.T) {
	w, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
	if _, ok := <-w.Batches(); ok {
		t.Fatal("Batches not closed after Run returned")
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run did not fail")
	}
}
