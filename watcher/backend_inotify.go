package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// inotifyBackend uses fsnotify (inotify on Linux, kqueue/FEN/ReadDirectory
// ChangesW elsewhere). fsnotify is not recursive: every folder of the tree
// is added on its own, and folders are added as they appear.
type inotifyBackend struct {
	w     *Watcher
	fs    *fsnotify.Watcher
	dirs  map[string]struct{} // folders watched; owned by run after New
	lost  bool                // the root itself went away; retrying
	retry *time.Ticker
}

func newInotify(w *Watcher) (*inotifyBackend, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", w.root, hint(err))
	}
	b := &inotifyBackend{w: w, fs: fw, dirs: map[string]struct{}{}}
	if err := fw.Add(w.root); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch %s: %w", w.root, hint(err))
	}
	if err := b.addTree(w.root, nil); err != nil {
		fw.Close()
		return nil, err
	}
	return b, nil
}

func (b *inotifyBackend) needsSettle() bool { return false }

func (b *inotifyBackend) run(ctx context.Context, out chan<- []change) error {
	defer b.fs.Close()
	var retry <-chan time.Time
	defer func() {
		if b.retry != nil {
			b.retry.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-b.fs.Events:
			if !ok {
				return errors.New("fsnotify stopped unexpectedly")
			}
			if cs := b.handle(ev); len(cs) > 0 {
				send(ctx, out, cs)
			}
		case err, ok := <-b.fs.Errors:
			if !ok {
				return errors.New("fsnotify stopped unexpectedly")
			}
			// Events were (or may have been) lost: the tree is walked
			// again and the consumer told to look at everything.
			b.w.report(fmt.Errorf("watch %s: %w; rescanning the tree", b.w.root, err))
			if b.rescan() {
				send(ctx, out, []change{{path: b.w.root, rescan: true}})
			}
		case <-retry:
			if b.rescan() {
				send(ctx, out, []change{{path: b.w.root, rescan: true}})
			}
		}
		// The root was removed or renamed: its watch is gone. Look for
		// it again now and then; it is often recreated (a fetch that
		// swaps in a fresh folder, a branch switch).
		if b.lost && retry == nil {
			b.retry = time.NewTicker(b.w.opts.PollInterval)
			retry = b.retry.C
		} else if !b.lost && retry != nil {
			b.retry.Stop()
			retry = nil
		}
	}
}

// handle turns one fsnotify event into changes, watching new folders.
func (b *inotifyBackend) handle(ev fsnotify.Event) []change {
	if !ev.Has(fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename) {
		return nil // attribute changes only: touch, chmod, a link count drop
	}
	p := filepath.Clean(ev.Name)
	if p == b.w.root {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			b.forget(p)
			b.lost = true
			return []change{{path: p}}
		}
		return nil
	}
	_, isDir := b.dirs[p]
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(p); err == nil {
			isDir = fi.IsDir()
		}
	} else if isDir && ev.Op == fsnotify.Write {
		return nil // kqueue/Windows report a folder whose entries changed
	}
	if b.w.ignored(p, isDir) {
		return nil
	}
	cs := []change{{path: p}}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		b.forget(p)
	}
	if ev.Has(fsnotify.Create) && isDir {
		// Files may have been written into the new folder before its
		// watch was in place: report everything already inside.
		err := b.addTree(p, func(q string) { cs = append(cs, change{path: q}) })
		if err != nil {
			b.w.report(err)
		}
	}
	return cs
}

// addTree watches dir and every folder below it; report, if set, receives
// every path found below dir.
func (b *inotifyBackend) addTree(dir string, report func(string)) error {
	if err := b.addDir(dir); err != nil {
		if errors.Is(err, fs.SkipDir) {
			return nil
		}
		return err
	}
	return b.w.walk(dir, b.w.report, func(p string, d fs.DirEntry) error {
		if report != nil {
			report(p)
		}
		if d.IsDir() {
			return b.addDir(p)
		}
		return nil
	})
}

func (b *inotifyBackend) addDir(dir string) error {
	err := b.fs.Add(dir)
	switch {
	case err == nil:
		b.dirs[dir] = struct{}{}
		return nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil // gone again; its removal is reported by the parent
	case errors.Is(err, fs.ErrPermission):
		b.w.report(fmt.Errorf("watch %s (its changes are not seen): %w", dir, err))
		return fs.SkipDir
	default:
		return fmt.Errorf("watch %s: %w", dir, hint(err))
	}
}

// forget drops the watches of a removed or renamed folder and everything
// below it. A renamed folder keeps its inotify watches under the old name;
// they must go before the new name is added, or its events would carry
// stale paths.
func (b *inotifyBackend) forget(dir string) {
	if _, ok := b.dirs[dir]; !ok {
		return
	}
	prefix := dir + string(filepath.Separator)
	for d := range b.dirs {
		if d == dir || strings.HasPrefix(d, prefix) {
			_ = b.fs.Remove(d) // often already gone with the folder
			delete(b.dirs, d)
		}
	}
}

// rescan walks the tree again, watching new folders and dropping vanished
// ones. It reports whether the root is watched.
func (b *inotifyBackend) rescan() bool {
	root := b.w.root
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		b.forget(root)
		b.lost = true
		return false
	}
	seen := map[string]struct{}{}
	err := b.addTree(root, func(p string) { seen[p] = struct{}{} })
	if err != nil {
		b.w.report(err)
	}
	if _, ok := b.dirs[root]; !ok {
		b.lost = true
		return false
	}
	seen[root] = struct{}{}
	for d := range b.dirs {
		if _, ok := seen[d]; !ok {
			_ = b.fs.Remove(d)
			delete(b.dirs, d)
		}
	}
	b.lost = false
	return true
}

// hint adds the fix to the kernel limits people hit.
func hint(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w (inotify watch limit reached: raise sysctl fs.inotify.max_user_watches, ignore large folders in .gitignore, or use polling)", err)
	case errors.Is(err, syscall.EMFILE):
		return fmt.Errorf("%w (too many inotify instances: raise sysctl fs.inotify.max_user_instances or use polling)", err)
	}
	return err
}
