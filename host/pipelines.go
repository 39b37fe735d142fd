package host

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/internal/backoff"
	"github.com/plugvisor/plugvisor/supervisor"
)

// pipelines runs the config's [[pipeline]] entries in the daemon, each in
// its own goroutine, and follows config edits: added ones start, removed
// ones stop, changed ones restart (the source instance keeps its state).
type pipelines struct {
	mu      sync.Mutex
	running map[string]*runningPipeline
	wg      sync.WaitGroup
}

type runningPipeline struct {
	spec   config.Pipeline
	cancel context.CancelFunc
	done   chan struct{}
	health pipelineHealth // for /readyz: health.go
	drain  chan struct{}  // closed: end cleanly (stop the source, deliver the rest)
}

func toSupervisor(p config.Pipeline) supervisor.Pipeline {
	ref := func(s string) supervisor.Ref {
		pl, sym := config.SplitRef(s)
		return supervisor.Ref{Plugin: pl, Symbol: sym}
	}
	out := supervisor.Pipeline{Name: p.Name, Source: ref(p.Source), OnError: p.OnError, Retries: p.Retries}
	if p.DeadLetter != "" {
		out.DeadLetter = ref(p.DeadLetter)
	}
	for _, f := range p.Functions {
		out.Functions = append(out.Functions, ref(f))
	}
	if p.Sink != "" {
		out.Sink = ref(p.Sink)
	}
	return out
}

// sync makes the running pipelines match want.
func (ps *pipelines) sync(ctx context.Context, h *Host, want []config.Pipeline) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.running == nil {
		ps.running = map[string]*runningPipeline{}
	}
	keep := map[string]config.Pipeline{}
	for _, p := range want {
		keep[p.Name] = p
	}
	for name, r := range ps.running {
		if p, ok := keep[name]; !ok || !reflect.DeepEqual(p, r.spec) {
			r.cancel()
			<-r.done
			delete(ps.running, name)
			if !ok {
				h.sup.ForgetPipeline(name)
				// Its source position and sink state stay in the store: a
				// pipeline renamed back picks them up; say where they are.
				h.log.Warn().Str("pipeline", name).Msg("pipeline removed: the state of its source and sink instances (scopes source/…/" + name +
					", sink/…/" + name + ") is kept; plugvisor state ls shows it as orphaned, plugvisor state rm PLUGIN SCOPE deletes it")
			}
		}
	}
	for _, p := range want {
		if _, ok := ps.running[p.Name]; ok {
			continue
		}
		// Not cancelled with ctx: a clean stop drains first (drain), then
		// stop cancels.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &runningPipeline{spec: p, cancel: cancel, done: make(chan struct{}), drain: make(chan struct{})}
		ps.running[p.Name] = r
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			defer close(r.done)
			h.runPipeline(pctx, p, r)
		}()
	}
}

// stop ends every pipeline and waits for them.
func (ps *pipelines) stop() {
	ps.mu.Lock()
	for name, r := range ps.running {
		r.cancel()
		delete(ps.running, name)
	}
	ps.mu.Unlock()
	ps.wg.Wait()
}

// runPipeline keeps one pipeline running: until its plugins exist (their
// first build may still run) and again after an error, it retries.
func (h *Host) runPipeline(ctx context.Context, p config.Pipeline, r *runningPipeline) {
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	sp := toSupervisor(p)
	sp.Drain = r.drain
	for {
		r.health.set(true, nil)
		err := h.sup.RunPipeline(ctx, sp)
		r.health.set(false, err)
		if ctx.Err() != nil || isClosed(r.drain) {
			return
		}
		delay := bo.Next()
		if errors.Is(err, supervisor.ErrUnknownPlugin) {
			// Its plugins are still being built: not worth a warning.
			h.log.Debug().Err(err).Str("pipeline", p.Name).Msg("pipeline waits for its plugins")
		} else if cerr := CheckPipelines([]config.Pipeline{p}, h.knownSymbols(nil)); cerr != nil {
			// Its plugin is up and lacks the symbol: say which and what is
			// near; a new build may add it, so keep trying, slowly.
			h.log.Error().Err(cerr).Str("pipeline", p.Name).Msg("pipeline cannot run")
			delay = 5 * time.Second
		} else if err != nil {
			h.log.Warn().Err(err).Str("pipeline", p.Name).Dur("retry_in", delay).Msg("pipeline stopped")
		}
		select {
		case <-ctx.Done():
			return
		case <-r.drain:
			return
		case <-time.After(delay):
		}
	}
}
