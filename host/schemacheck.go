package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// CheckPipelines checks that the stages of every pipeline of the config
// fit (source item → function input → … → sink item), waiting (bounded by
// ctx) for the plugins involved to serve so their announced schemas are
// known. plugvisor validate uses it on a host started with NoPipelines.
func (h *Host) CheckPipelines(ctx context.Context) error {
	h.mu.Lock()
	pls := h.cfg.Pipelines
	h.mu.Unlock()
	var errs []error
	for _, p := range pls {
		if err := h.sup.CheckPipeline(ctx, toSupervisor(p)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refuseIllTyped refuses a config edit with a pipeline whose stages do not
// fit, as far as the running plugins' schemas tell (a plugin not running
// yet, or one this edit changes, is checked when the pipeline starts). It
// publishes config.applied with the error; nothing is changed.
func (h *Host) refuseIllTyped(cfg *config.Config) error {
	old := h.currentConfig()
	changed := map[string]bool{}
	ch := config.Diff(old, cfg)
	for _, n := range append(ch.Added, ch.Changed...) {
		changed[n] = true
	}
	man := func(plugin string) (transport.Manifest, bool) {
		if changed[plugin] {
			return transport.Manifest{}, false
		}
		p, err := h.sup.Plugin(plugin)
		if err != nil {
			return transport.Manifest{}, false
		}
		st := p.Status()
		return transport.Manifest{Schemas: st.Symbols.Schemas}, st.Version != ""
	}
	var errs []error
	for _, p := range cfg.Pipelines {
		if err := supervisor.FitPipeline(toSupervisor(p), man); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("config edit refused: %w (nothing changed; fix the pipeline and save again)", err)
		h.sup.Publish(supervisor.Event{Type: supervisor.EventConfigApplied, Error: err.Error()})
		return err
	}
	return nil
}

func (h *Host) currentConfig() *config.Config {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg
}
