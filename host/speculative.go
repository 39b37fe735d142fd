package host

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
)

// speculativeDebounce is how long a Go plugin's watcher groups events
// before the build starts: long enough to see one save's burst of events
// (vim's rename and write, JetBrains' temp file and renames) as one, far
// shorter than the quiet period. The quiet period still decides which
// build is used (awaitQuiet): the build just starts at the first change
// instead of after it.
const speculativeDebounce = 10 * time.Millisecond

// speculative switches the above (and go list off the save→serving path)
// on; the save benchmark turns it off to measure the plain debounce.
var speculative = true

// debounce is the watcher's debounce for this plugin: Go sources start
// building at once; other kinds wait the quiet period (a restart of a
// command plugin cannot be taken back).
func (w *worker) debounce(quiet time.Duration) time.Duration {
	if speculative && (w.cfg.Resolved.Kind == config.KindSource || w.cfg.Resolved.Kind == config.KindRemote) {
		return min(quiet, speculativeDebounce)
	}
	return quiet
}

// awaitQuiet holds a finished build until the quiet period after the last
// change has passed; true means another change arrived meanwhile and the
// build is stale (build it again). The wait only costs time when the build
// was faster than the quiet period.
func (w *worker) awaitQuiet(ctx context.Context) bool {
	quiet := w.scfg().Debounce.Duration
	for {
		w.mu.Lock()
		last := w.lastChange
		w.mu.Unlock()
		wait := quiet - time.Since(last)
		if last.IsZero() || wait <= 0 {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-w.kick:
			t.Stop()
			return true
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}

// lateWatchSet is a watch set computed after its build.
type lateWatchSet struct {
	seq   int
	ws    compiler.WatchSet
	err   error
	since time.Time // when its build started
}

// settleWatchSet starts go list for the last build's watch set — after the
// swap, off the path from save to serving, and off the loop so the next
// save is not held up by it; the loop applies it (applyWatchSet).
func (w *worker) settleWatchSet(ctx context.Context) {
	late := w.lateWS
	if late == nil {
		return
	}
	w.lateWS = nil
	w.wsSeq++
	seq, since := w.wsSeq, w.builtAt
	go func() {
		ws, err := late()
		select {
		case w.wsReady <- lateWatchSet{seq: seq, ws: ws, err: err, since: since}:
		case <-ctx.Done():
		}
	}()
}

// applyWatchSet re-targets the watchers to a late watch set, unless a
// newer build's is on its way. Folders the build newly depends on (a
// package imported for the first time, a new replace target) were not
// watched while it built and swapped: an edit made there since the build
// started starts another build.
func (w *worker) applyWatchSet(ctx context.Context, l lateWatchSet) {
	if l.seq != w.wsSeq {
		return
	}
	if l.err != nil {
		w.h.log.Warn().Str("plugin", w.name).Err(l.err).Msg("watch set not refreshed; the previous one stays")
		return
	}
	if len(l.ws.Dirs) == 0 && l.ws.Module == "" {
		return
	}
	old := w.ws
	w.ws = l.ws
	w.setWatches(ctx)
	if changedSince(old, l.ws, l.since) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// changedSince reports whether a build file in a folder (or a file) that
// ws has and old had not was modified after since.
func changedSince(old, ws compiler.WatchSet, since time.Time) bool {
	for _, f := range ws.Files {
		if _, had := slices.BinarySearch(old.Files, f); !had && modifiedAfter(f, since) {
			return true
		}
	}
	for _, d := range ws.Dirs {
		if _, had := slices.BinarySearch(old.Dirs, d); had {
			continue
		}
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if !e.IsDir() && ws.Matches(p) && modifiedAfter(p, since) {
				return true
			}
		}
	}
	return false
}

func modifiedAfter(path string, t time.Time) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.ModTime().After(t)
}
