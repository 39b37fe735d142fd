package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/watcher"
)

// configWatch follows the config file. Every trigger (a change in its
// folder, the periodic check, ReloadConfig) reads the file through its
// path afresh, so a path that is a symlink into a Kubernetes ConfigMap's
// `..data` folder is re-resolved each time, and compares the content's
// hash with the one last handled: one update is applied once, however many
// events its atomic swap makes, and a missed event is caught by the
// periodic check (config_check).
type configWatch struct {
	once sync.Once
	kick chan struct{} // cap 1: ReloadConfig requests coalesce

	mu   sync.Mutex
	last [sha256.Size]byte // hash of the content that runs or was last refused
}

func (c *configWatch) kickC() chan struct{} {
	c.once.Do(func() { c.kick = make(chan struct{}, 1) })
	return c.kick
}

// ReloadConfig asks the host to re-read its config file now (SIGHUP). It
// does not wait; an unchanged file changes nothing.
func (h *Host) ReloadConfig() {
	select {
	case h.cfgw.kickC() <- struct{}{}:
	default:
	}
}

// watchConfig re-applies the config file when its content changes; an
// invalid edit is logged and published (config.applied with an error) and
// changes nothing. An empty file is taken as a save in progress.
func (h *Host) watchConfig(ctx context.Context, wg *sync.WaitGroup) error {
	h.mu.Lock()
	path := h.cfg.Path
	s := h.cfg.Supervisor
	h.mu.Unlock()
	dir, base := filepath.Dir(path), filepath.Base(path)
	if data, err := os.ReadFile(path); err == nil {
		h.cfgw.mu.Lock()
		h.cfgw.last = sha256.Sum256(data)
		h.cfgw.mu.Unlock()
	}
	kick := h.cfgw.kickC()
	var tick <-chan time.Time
	if s.ConfigCheck.Duration > 0 {
		t := time.NewTicker(s.ConfigCheck.Duration)
		tick = t.C
		wg.Add(1)
		go func() { defer wg.Done(); <-ctx.Done(); t.Stop() }()
	}
	// The folder, not the file: editors save by rename, and a ConfigMap
	// update replaces `..data` (a symlink) and a `..<timestamp>` folder.
	wt, werr := watcher.New(dir, watcher.Options{Debounce: s.Debounce.Duration, MaxWait: s.MaxWait.Duration, Poll: s.Poll,
		Match: func(p string) bool {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return false
			}
			first, _, _ := strings.Cut(rel, string(filepath.Separator))
			return first == base || strings.HasPrefix(first, "..") && first != ".."
		}})
	var batches <-chan watcher.Batch
	if werr == nil {
		batches = wt.Batches()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wt.Run(ctx); err != nil {
				h.log.Warn().Err(err).Str("config", path).Msg("config watch stopped")
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				if batches != nil {
					for range batches { // until the watcher has stopped
					}
				}
				return
			case _, ok := <-batches:
				if !ok {
					batches = nil
					continue
				}
				h.checkConfig(ctx, path, "changed")
			case <-tick:
				h.checkConfig(ctx, path, "periodic check")
			case <-kick:
				h.checkConfig(ctx, path, "reload requested")
			}
		}
	}()
	if werr != nil {
		return fmt.Errorf("watch config %s (still checked every %v and on SIGHUP): %w", path, s.ConfigCheck.Duration, werr)
	}
	return nil
}

// checkConfig applies the file at path when its content differs from the
// last content handled.
func (h *Host) checkConfig(ctx context.Context, path, why string) {
	if ctx.Err() != nil {
		return
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return // a rename save or a ConfigMap swap in progress; its end comes next
	case err != nil:
		h.log.Warn().Err(err).Str("config", path).Msg("config not re-read")
		return
	case len(data) == 0:
		// An in-place save truncates before it writes: applying the empty
		// file would stop every plugin.
		h.log.Warn().Str("config", path).Msg("config file is empty: taken as a save in progress, nothing changed (the running plugins stay)")
		return
	}
	sum := sha256.Sum256(data)
	h.cfgw.mu.Lock()
	same := sum == h.cfgw.last
	h.cfgw.last = sum
	h.cfgw.mu.Unlock()
	if same {
		return
	}
	cfg, err := config.LoadData(path, data, h.reg)
	if err != nil {
		h.log.Error().Err(err).Str("trigger", why).Msg("config edit not applied")
		h.sup.Publish(supervisor.Event{Type: supervisor.EventConfigApplied,
			Error: fmt.Sprintf("%v (nothing changed; fix the file and save again)", err)})
		return
	}
	h.log.Info().Str("config", path).Str("trigger", why).Msg("config changed")
	if err := h.Apply(ctx, cfg); err != nil {
		h.log.Error().Err(err).Msg("config applied with errors")
	}
}
