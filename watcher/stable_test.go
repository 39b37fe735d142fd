package watcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A writer adds one chunk between every two checks of WaitStable (the
// checks and the writes are interleaved through channels), so WaitStable
// must see the file change every time until the last chunk is in.
func TestWaitStableWaitsForLastChunk(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plugin")
	const chunks = 6
	chunk := []byte(strings.Repeat("x", 1000))
	checked, written := make(chan struct{}), make(chan struct{})
	stop := make(chan struct{})
	var finished atomic.Bool
	afterCheck = func() {
		checked <- struct{}{}
		<-written
	}
	t.Cleanup(func() { afterCheck = nil })

	writerDone := make(chan error, 1)
	go func() {
		f, err := os.Create(file + ".part")
		if err != nil {
			writerDone <- err
			return
		}
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-checked:
			}
			switch {
			case i == 0:
				// First check saw no file; make it appear (empty).
				err = os.Rename(file+".part", file)
			case i <= chunks:
				_, err = f.Write(chunk)
				if i == chunks {
					finished.Store(true)
				}
			}
			written <- struct{}{}
			if err != nil {
				writerDone <- err
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fi, err := WaitStable(ctx, file, time.Millisecond)
	close(stop)
	if werr := <-writerDone; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("WaitStable returned before the last chunk was written")
	}
	if want := int64(chunks * len(chunk)); fi.Size() != want {
		t.Fatalf("size %d, want %d", fi.Size(), want)
	}
}

func TestWaitStableGivesUpOnContext(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for _, p := range []string{dir, filepath.Join(dir, "missing")} {
		_, err := WaitStable(ctx, p, time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), p) {
			t.Errorf("WaitStable(%s) = %v, want a deadline error naming the path", p, err)
		}
	}
}

func TestWaitStableFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "plugin-1")
	if err := os.WriteFile(target, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "current")
	if err := os.Symlink("plugin-1", link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fi, err := WaitStable(ctx, link, time.Millisecond)
	if err != nil || fi.Size() != 6 {
		t.Fatalf("WaitStable(link) = %v, %v; want the 6-byte target", fi, err)
	}
}
