package host

import (
	"context"
	"time"

	"github.com/plugvisor/plugvisor/config"
)

// speculativeDebounce is how long a Go plugin's watcher groups events
// before the build starts: long enough to see one save's burst of events
// (vim's rename and write, JetBrains' temp file and renames) as one, far
// shorter than the quiet period. The quiet period still decides which
// build is used (awaitQuiet): the build just starts at the first change
// instead of after it.
const speculativeDebounce = 10 * time.Millisecond

// debounce is the watcher's debounce for this plugin: Go sources start
// building at once; other kinds wait the quiet period (a restart of a
// command plugin cannot be taken back).
func (w *worker) debounce(quiet time.Duration) time.Duration {
	if w.cfg.Resolved.Kind == config.KindSource || w.cfg.Resolved.Kind == config.KindRemote {
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

// settleWatchSet takes the watch set of the last build once its go list
// finished — after the swap, off the path from save to serving — and
// re-targets the watchers.
func (w *worker) settleWatchSet(ctx context.Context) {
	late := w.lateWS
	if late == nil {
		return
	}
	w.lateWS = nil
	ws, err := late()
	if err != nil {
		w.h.log.Warn().Str("plugin", w.name).Err(err).Msg("watch set not refreshed; the previous one stays")
		return
	}
	if len(ws.Dirs) > 0 || ws.Module != "" {
		w.ws = ws
		w.setWatches(ctx)
	}
}
