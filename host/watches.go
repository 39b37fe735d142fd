package host

import (
	"context"
	"path/filepath"
	"sync"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/watcher"
)

type watch struct {
	wt     *watcher.Watcher
	cancel context.CancelFunc
	done   chan struct{}
}

// setWatches makes the watchers match what the plugin depends on now.
func (w *worker) setWatches(ctx context.Context) {
	if w.h.opts.NoWatch || ctx.Err() != nil {
		return
	}
	var roots []string
	var match func(string) bool
	d := w.cfg.Resolved
	switch d.Kind {
	case config.KindSource:
		roots, match = w.ws.Roots(), w.ws.Matches
		if len(roots) == 0 && d.Path != "" {
			// No watch set (go list failed entirely): watch the package folder.
			roots, match = []string{d.Path}, config.IsGoSource
		}
	case config.KindBinary:
		file := d.Path
		roots, match = []string{filepath.Dir(file)}, func(p string) bool { return p == file }
	case config.KindCommand:
		roots = []string{d.Path}
	}
	want := map[string]bool{}
	for _, r := range roots {
		want[r] = true
	}
	for r, wa := range w.watches {
		if !want[r] {
			wa.cancel()
			<-wa.done
			delete(w.watches, r)
		}
	}
	s := w.scfg()
	for _, r := range roots {
		if wa := w.watches[r]; wa != nil {
			wa.wt.SetMatch(match)
			continue
		}
		wt, err := watcher.New(r, watcher.Options{Debounce: w.debounce(s.Debounce.Duration), MaxWait: s.MaxWait.Duration, Poll: s.Poll, Match: match,
			OnError: func(err error) { w.h.log.Warn().Str("plugin", w.name).Err(err).Msg("watch") }})
		if err != nil {
			w.h.log.Warn().Str("plugin", w.name).Err(err).Msg("not watching; changes need a reload")
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		wa := &watch{wt: wt, cancel: cancel, done: make(chan struct{})}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := wt.Run(wctx); err != nil {
				w.h.log.Warn().Str("plugin", w.name).Err(err).Msg("watch stopped")
			}
		}()
		go func() {
			defer wg.Done()
			for b := range wt.Batches() {
				w.mu.Lock()
				w.lastChange = b.Last
				if len(w.lastBatch.Paths) == 0 {
					w.lastBatch = b
				} else {
					w.lastBatch.Paths = append(w.lastBatch.Paths, b.Paths...)
					w.lastBatch.Last = b.Last
				}
				w.mu.Unlock()
				select {
				case w.kick <- struct{}{}:
				default:
				}
			}
		}()
		go func() { wg.Wait(); close(wa.done) }()
		w.watches[r] = wa
	}
}

func (w *worker) stopWatches() {
	for r, wa := range w.watches {
		wa.cancel()
		<-wa.done
		delete(w.watches, r)
	}
}
