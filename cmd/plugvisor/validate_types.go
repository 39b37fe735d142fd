package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
	"github.com/plugvisor/plugvisor/supervisor"
)

// checkPipelineTypes learns the schemas of the plugins the pipelines use
// by building and starting them — in a private bin and state dir, with no
// pipeline running, no watch and no API, so a daemon running on the same
// config is not disturbed — and checks each pipeline's stages fit
// (source item → function input → … → sink item). The plugins are stopped
// again before it returns. A plugin that does not build or start is a
// problem too: the daemon could not run that pipeline either.
func checkPipelineTypes(ctx context.Context, cfg *config.Config, timeout time.Duration) error {
	if len(cfg.Pipelines) == 0 {
		return nil
	}
	tmp, err := os.MkdirTemp("", "pvvalidate")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c := *cfg
	c.Path = "" // not watched
	c.Supervisor.BinDir = filepath.Join(tmp, "bin")
	c.Supervisor.StateDir = filepath.Join(tmp, "st")
	c.Supervisor.API = ""
	c.Plugins = map[string]*config.Plugin{}
	for _, pl := range cfg.Pipelines {
		for _, ref := range append(append([]string{pl.Source}, pl.Functions...), pl.Sink) {
			if name, _ := config.SplitRef(ref); name != "" {
				c.Plugins[name] = cfg.Plugins[name]
			}
		}
	}
	h, err := host.New(&c, host.Options{Builtins: builtin.Sources(), NoWatch: true, NoPipelines: true})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()
	defer func() { stop(); <-done }()
	select {
	case <-h.Started():
	case <-ctx.Done():
		return fmt.Errorf("checking pipeline types: the plugins did not start within %s", timeout)
	}
	var errs []error
	for _, st := range h.Statuses() {
		if st.State == supervisor.StateFailed { // its build or fetch failed
			errs = append(errs, fmt.Errorf("plugin %s did not start, so its pipelines cannot be checked: %s", st.Name, st.LastError))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return h.CheckPipelines(ctx)
}
