package watcher

import (
	"context"
	"io/fs"
	"os"
	"time"
)

// pollBackend walks the tree every PollInterval and compares each file's
// size, mtime, mode and identity (a rename save changes the inode even when
// size and coarse mtime do not). Folders count by existence only: their
// mtime moves with every entry and would only repeat the files' changes.
type pollBackend struct {
	w    *Watcher
	snap map[string]os.FileInfo
}

func newPoll(w *Watcher) *pollBackend {
	b := &pollBackend{w: w}
	b.snap = b.scan()
	return b
}

// needsSettle: a change seen by one walk may be the first half of a save
// the next walk completes, so a batch waits for a walk that saw nothing.
func (b *pollBackend) needsSettle() bool { return true }

func (b *pollBackend) run(ctx context.Context, out chan<- []change) error {
	t := time.NewTimer(b.w.opts.PollInterval)
	defer t.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		next := b.scan()
		cs := diff(b.snap, next)
		b.snap = next
		// An empty slice after a walk with changes says "settled".
		if len(cs) > 0 || dirty {
			send(ctx, out, cs)
		}
		dirty = len(cs) > 0
		t.Reset(b.w.opts.PollInterval)
	}
}

// scan records every kept entry under the root. A missing root yields an
// empty tree: its files show up as removed, and as created when it returns.
func (b *pollBackend) scan() map[string]os.FileInfo {
	m := map[string]os.FileInfo{}
	_ = b.w.walk(b.w.root, nil, func(p string, d fs.DirEntry) error {
		if fi, err := d.Info(); err == nil {
			m[p] = fi
		}
		return nil
	})
	return m
}

func diff(old, cur map[string]os.FileInfo) []change {
	var cs []change
	for p, n := range cur {
		if o, ok := old[p]; !ok || changed(o, n) {
			cs = append(cs, change{path: p})
		}
	}
	for p := range old {
		if _, ok := cur[p]; !ok {
			cs = append(cs, change{path: p})
		}
	}
	return cs
}

func changed(o, n os.FileInfo) bool {
	if o.IsDir() || n.IsDir() {
		return o.IsDir() != n.IsDir()
	}
	return o.Size() != n.Size() || !o.ModTime().Equal(n.ModTime()) ||
		o.Mode() != n.Mode() || !os.SameFile(o, n)
}
