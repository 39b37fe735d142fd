// Package watcher reports debounced batches of changed paths under a folder
// tree. It watches folders (never single files: a rename save drops a file
// watch) recursively, ignores editor noise, build output and the root's
// .gitignore, and falls back to polling where inotify is unavailable. It
// knows nothing of builds or processes.
//
// To follow one file, such as a plugin binary, watch its folder and filter:
//
//	w, err := watcher.New(filepath.Dir(bin), watcher.Options{
//		Match: func(p string) bool { return p == bin },
//	})
package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
)

// Options tune a Watcher. Zero values take the defaults.
type Options struct {
	// Debounce is the quiet period that ends a batch; default 100ms.
	Debounce time.Duration
	// MaxWait bounds a batch: it is emitted at the latest this long after
	// its first change even if changes keep coming; default 2s.
	MaxWait time.Duration
	// Poll walks the tree every PollInterval instead of using inotify, for
	// filesystems without change notification (network mounts, some
	// container volumes).
	Poll bool
	// PollInterval is the time between two walks in Poll mode; default 250ms.
	PollInterval time.Duration
	// Match, if set, keeps only the paths (absolute) for which it returns
	// true, after the ignore rules. nil keeps all.
	Match func(path string) bool
	// OnError, if set, receives problems the watcher recovers from: a
	// folder it cannot watch, a queue overflow that forced a rescan.
	OnError func(error)
}

// Batch is one debounced set of changes.
type Batch struct {
	// Paths are the changed files and folders (created, written, removed,
	// renamed), absolute, sorted and deduplicated.
	Paths []string
	// First and Last are when the first and last change of the batch were
	// seen.
	First, Last time.Time
	// Rescan means events may have been lost (queue overflow, watch error,
	// root folder replaced): anything under the root may have changed.
	// Paths then holds the root, whatever Match says.
	Rescan bool
}

// Watcher watches one folder tree. Create it with New, then call Run.
type Watcher struct {
	root      string
	gitignore string
	opts      Options
	rules     atomic.Pointer[rules]
	match     atomic.Pointer[func(string) bool]
	be        backend
	batches   chan Batch
	started   atomic.Bool
}

// change is one raw observation from a backend.
type change struct {
	path   string
	rescan bool
}

// backend produces raw changes. run owns the backend's resources and
// releases them when it returns. A poll backend sends an empty slice after
// a walk that found nothing new, which tells the debouncer that the tree has
// settled; an event backend never needs to.
type backend interface {
	run(ctx context.Context, out chan<- []change) error
	needsSettle() bool
}

// New watches root, a folder, recursively. Changes made after New returns
// are reported once Run runs. Run must be called: it releases the watch.
func New(root string, opts Options) (*Watcher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watch %s: not a folder; watch the folder that holds the file and select it with Options.Match", root)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	w := &Watcher{
		root:      abs,
		gitignore: filepath.Join(abs, ".gitignore"),
		opts:      opts,
		batches:   make(chan Batch),
	}
	r, err := loadRules(w.gitignore)
	if err != nil {
		return nil, fmt.Errorf("watch %s: read ignore rules: %w", root, err)
	}
	w.rules.Store(r)
	w.SetMatch(opts.Match)
	if opts.Poll {
		w.be = newPoll(w)
	} else if w.be, err = newInotify(w); err != nil {
		return nil, err
	}
	return w, nil
}

// Batches delivers the debounced batches; it is closed when Run returns.
// While nobody reads, further changes merge into the waiting batch.
func (w *Watcher) Batches() <-chan Batch { return w.batches }

// SetMatch replaces Options.Match for changes seen from now on; nil keeps
// all paths. Safe to call while Run runs.
func (w *Watcher) SetMatch(match func(string) bool) {
	if match == nil {
		w.match.Store(nil)
		return
	}
	w.match.Store(&match)
}

// Run watches until ctx is done and returns nil then. It returns an error
// only if the watch itself breaks down.
func (w *Watcher) Run(parent context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice; create a new Watcher")
	}
	defer close(w.batches)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	raw := make(chan []change, 16)
	done := make(chan struct{})
	var berr error
	go func() {
		defer close(done)
		berr = w.be.run(ctx, raw)
	}()
	w.loop(ctx, raw, done)
	cancel()
	<-done
	if parent.Err() != nil {
		return nil
	}
	if berr == nil {
		berr = errors.New("stopped unexpectedly")
	}
	return fmt.Errorf("watch %s: %w", w.root, berr)
}

// loop debounces raw changes into batches until ctx is done or the backend
// stops.
func (w *Watcher) loop(ctx context.Context, raw <-chan []change, done <-chan struct{}) {
	var (
		pending     = map[string]struct{}{}
		rescan      bool
		first, last time.Time
		settled     = true
		ready       *Batch // emitted, waiting for a reader
		timer       = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	for {
		var out chan<- Batch
		var next Batch
		if ready != nil {
			out, next = w.batches, *ready
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case out <- next:
			ready = nil
		case <-timer.C:
		case cs := <-raw:
			now := time.Now()
			if len(cs) == 0 {
				settled = true
			} else if w.be.needsSettle() {
				settled = false
			}
			for _, c := range cs {
				if !c.rescan && c.path == w.gitignore {
					w.reloadRules()
				}
				if !c.rescan && !w.matches(c.path) {
					continue
				}
				if len(pending) == 0 && !rescan {
					first = now
				}
				last = now
				if c.rescan {
					rescan = true
				} else {
					pending[c.path] = struct{}{}
				}
			}
		}
		if len(pending) == 0 && !rescan {
			continue
		}
		now := time.Now()
		deadline, quiet := first.Add(w.opts.MaxWait), last.Add(w.opts.Debounce)
		if !now.Before(deadline) || (settled && !now.Before(quiet)) {
			timer.Stop()
			ready = merge(ready, w.batch(pending, rescan, first, last))
			pending, rescan = map[string]struct{}{}, false
			continue
		}
		at := deadline
		if settled && quiet.Before(at) {
			at = quiet
		}
		timer.Reset(at.Sub(now))
	}
}

func (w *Watcher) batch(pending map[string]struct{}, rescan bool, first, last time.Time) *Batch {
	b := &Batch{First: first, Last: last, Rescan: rescan}
	for p := range pending {
		b.Paths = append(b.Paths, p)
	}
	if rescan {
		b.Paths = append(b.Paths, w.root)
	}
	slices.Sort(b.Paths)
	b.Paths = slices.Compact(b.Paths)
	return b
}

// merge folds b into a batch nobody has read yet.
func merge(old, b *Batch) *Batch {
	if old == nil {
		return b
	}
	old.Paths = append(old.Paths, b.Paths...)
	slices.Sort(old.Paths)
	old.Paths = slices.Compact(old.Paths)
	old.Last = b.Last
	old.Rescan = old.Rescan || b.Rescan
	return old
}

func (w *Watcher) matches(p string) bool {
	m := w.match.Load()
	return m == nil || (*m)(p)
}

// reloadRules picks up an edited .gitignore for the changes that follow.
func (w *Watcher) reloadRules() {
	r, err := loadRules(w.gitignore)
	if err != nil {
		w.report(fmt.Errorf("reload %s (keeping the previous rules): %w", w.gitignore, err))
		return
	}
	w.rules.Store(r)
}

func (w *Watcher) report(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// ignored applies the ignore rules to an absolute path under the root.
func (w *Watcher) ignored(p string, isDir bool) bool {
	rel, err := filepath.Rel(w.root, p)
	if err != nil || rel == "." {
		return false
	}
	return w.rules.Load().ignored(filepath.ToSlash(rel), isDir)
}

// walk visits every entry under dir that the ignore rules keep, a folder
// before its contents. Symlinks are visited, never followed. A folder that
// cannot be read is skipped (it may have vanished since the event); the
// error goes to onErr if set. fn may return fs.SkipDir for a folder.
func (w *Watcher) walk(dir string, onErr func(error), fn func(p string, d fs.DirEntry) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil && onErr != nil && !errors.Is(err, fs.ErrNotExist) {
		onErr(fmt.Errorf("read folder %s (its changes are not watched): %w", dir, err))
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if w.ignored(p, e.IsDir()) {
			continue
		}
		if err := fn(p, e); err != nil {
			if errors.Is(err, fs.SkipDir) {
				continue
			}
			return err
		}
		if e.IsDir() {
			if err := w.walk(p, onErr, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// send hands changes to the debouncer unless ctx ends first.
func send(ctx context.Context, out chan<- []change, cs []change) {
	select {
	case out <- cs:
	case <-ctx.Done():
	}
}
