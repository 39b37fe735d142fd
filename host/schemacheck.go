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

// refuseBadPipelines refuses a config edit whose pipelines do not fit the
// plugins serving now, in one pass over their manifests: a symbol missing
// or of the wrong kind ("did you mean"), or stages whose types do not fit.
// A plugin not serving yet, or one this edit adds, changes or removes, is
// checked when the pipeline starts. Nothing is changed; config.applied
// carries the error.
func (h *Host) refuseBadPipelines(ch config.Changes, cfg *config.Config) error {
	skip := map[string]bool{}
	for _, n := range append(append(ch.Added, ch.Changed...), ch.Removed...) {
		skip[n] = true
	}
	known := h.knownSymbols(skip)
	err := CheckPipelines(cfg.Pipelines, known)
	if err == nil {
		man := func(plugin string) (transport.Manifest, bool) {
			syms, ok := known[plugin]
			return transport.Manifest{Schemas: syms.Schemas}, ok
		}
		var errs []error
		for _, p := range cfg.Pipelines {
			if err := supervisor.FitPipeline(toSupervisor(p), man); err != nil {
				errs = append(errs, err)
			}
		}
		err = errors.Join(errs...)
	}
	if err != nil {
		err = fmt.Errorf("config edit refused, nothing changed: %w (fix the pipeline and save again)", err)
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
