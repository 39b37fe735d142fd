package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/fetcher"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/watcher"
)

// stableTimeout bounds the wait for a changed binary to be fully written.
const stableTimeout = 30 * time.Second

// worker owns one plugin's builds, fetches, watches and swaps: it only
// produces specs. Everything it does runs on its loop, one thing at a
// time; what it does and how it went goes into the plugin's lifecycle
// (progress), which holds the spec, the error and the activity.
type worker struct {
	h      *Host
	name   string
	p      *supervisor.Plugin // registered with AddPending before the loop starts
	first  chan struct{}      // closed after the first start attempt
	done   chan struct{}      // closed when the loop has returned
	cancel context.CancelFunc
	reqs   chan func(context.Context)
	kick   chan struct{} // a watched file changed (cap 1: changes coalesce)

	// Owned by the loop.
	cfg     *config.Plugin
	fetched string // remote: the fetched folder
	ws      compiler.WatchSet
	lateWS  func() (compiler.WatchSet, error) // the last build's watch set, not computed yet
	wsSeq   int                               // late watch sets started (applyWatchSet takes the newest)
	wsReady chan lateWatchSet
	builtAt time.Time // when the last build started
	watches map[string]*watch

	mu         sync.Mutex
	lastBatch  watcher.Batch
	lastChange time.Time // when a watched file last changed (the quiet period counts from it)
}

// progress is how the worker reports into its plugin's lifecycle
// (implemented by *supervisor.Plugin).
type progress interface {
	Preparing(activity supervisor.Activity) // building, fetching; idle when done
	Prepared(err error)                     // how making a spec went; nil clears the error
}

func newWorker(h *Host, name string, p *config.Plugin, plug *supervisor.Plugin) *worker {
	return &worker{h: h, name: name, p: plug, cfg: p, first: make(chan struct{}), done: make(chan struct{}),
		cancel: func() {}, reqs: make(chan func(context.Context)), kick: make(chan struct{}, 1), wsReady: make(chan lateWatchSet),
		watches: map[string]*watch{}}
}

func (w *worker) progress() progress {
	if w.p == nil {
		return noProgress{} // a build-only worker of a plugin that does not run
	}
	return w.p
}

type noProgress struct{}

func (noProgress) Preparing(supervisor.Activity) {}
func (noProgress) Prepared(error)                {}

// spec is the spec the plugin runs, nil before the first.
func (w *worker) spec() *supervisor.Spec {
	if w.p == nil {
		return nil
	}
	if s, ok := w.p.Spec(); ok {
		return &s
	}
	return nil
}

func (w *worker) sup() *supervisor.Supervisor { return w.h.sup }
func (w *worker) scfg() config.Supervisor {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	return w.h.cfg.Supervisor
}

func (w *worker) loop(ctx context.Context) {
	defer close(w.done)
	defer w.stopWatches()
	func() {
		defer close(w.first)
		w.start(ctx)
	}()
	w.settleWatchSet(ctx)
	var tick <-chan time.Time
	if every, ok := w.cfg.UpdateInterval(); ok {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case fn := <-w.reqs:
			fn(ctx)
			w.settleWatchSet(ctx)
		case <-w.kick:
			w.onChange(ctx)
			w.settleWatchSet(ctx)
		case <-tick:
			w.onUpdate(ctx)
		case l := <-w.wsReady:
			w.applyWatchSet(ctx, l)
		}
	}
}

// do runs fn on the loop and waits for it (bounded by ctx).
func (w *worker) do(ctx context.Context, fn func(context.Context)) error {
	finished := make(chan struct{})
	select {
	case w.reqs <- func(c context.Context) { defer close(finished); fn(c) }:
	case <-w.done:
		return fmt.Errorf("plugin %q: %w", w.name, supervisor.ErrStopped)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start makes the first spec and hands it to the supervisor.
func (w *worker) start(ctx context.Context) {
	// Watch before the first build (a source plugin's package folder until
	// its watch set is known), so a save made while it builds is not missed.
	w.setWatches(ctx)
	spec, _, _, err := w.prepare(ctx, true)
	w.setWatches(ctx)
	if err != nil {
		w.fail(err)
		return
	}
	if _, err := w.apply(ctx, spec, 0, false); err != nil {
		w.fail(err)
	}
}

func (w *worker) fail(err error) {
	var bf *buildFailed
	if w.h.opts.Streamed && (errors.As(err, &bf) || errors.Is(err, supervisor.ErrSwapFailed)) {
		// Its build.failed or swap.failed event already showed it.
		w.progress().Prepared(err)
		return
	}
	w.h.log.Error().Str("plugin", w.name).Err(err).Msg("plugin not updated")
	w.progress().Prepared(err)
}

// apply starts the plugin with spec, or swaps the running one to it.
func (w *worker) apply(ctx context.Context, spec *supervisor.Spec, buildMS float64, force bool) (*supervisor.Report, error) {
	if w.p == nil {
		return nil, fmt.Errorf("plugin %q: %w (the supervisor is closed)", w.name, supervisor.ErrStopped)
	}
	if w.spec() == nil {
		w.progress().Prepared(nil)
		return nil, w.p.Start(ctx, *spec)
	}
	return w.p.Reload(ctx, supervisor.ReloadOptions{Spec: spec, Force: force, BuildMS: buildMS})
}

func (w *worker) compilerOptions() compiler.Options {
	s := w.scfg()
	return compiler.Options{BinDir: s.BinDir, Flags: w.cfg.Build.Flags, Tags: w.cfg.Build.Tags,
		Env: w.cfg.Build.Env, Keep: s.KeepBuilds, LateWatchSet: speculative}
}

// build compiles dir, publishing build events; a newer change cancels the
// build in progress and starts it again. It refreshes the watch set.
func (w *worker) build(ctx context.Context, dir string) (*compiler.Result, error) {
	w.progress().Preparing(supervisor.ActivityBuilding)
	defer w.progress().Preparing(supervisor.ActivityIdle)
	opts := w.compilerOptions()
	for {
		detail := map[string]any{}
		w.mu.Lock()
		if b := w.lastBatch; len(b.Paths) > 0 {
			detail["paths"] = b.Paths
			detail["changed_at"] = b.Last
		}
		w.lastBatch = watcher.Batch{}
		w.mu.Unlock()
		w.sup().Publish(supervisor.Event{Type: supervisor.EventBuildStarted, Plugin: w.name, Detail: detail})
		bctx, cancel := context.WithCancel(ctx)
		type out struct {
			r   *compiler.Result
			err error
		}
		res := make(chan out, 1)
		start := time.Now()
		go func() {
			r, err := compiler.Build(bctx, w.name, dir, opts)
			res <- out{r, err}
		}()
		var o out
		superseded := false
		select {
		case o = <-res:
		case <-w.kick:
			superseded = true
			cancel()
			o = <-res
		}
		cancel()
		if !superseded && ctx.Err() == nil && w.awaitQuiet(ctx) {
			superseded = true // a change landed within the quiet period: this build is stale
		}
		if superseded && ctx.Err() == nil {
			w.h.log.Info().Str("plugin", w.name).Msg("build superseded by a newer change")
			continue
		}
		d := time.Since(start)
		ms := float64(d.Microseconds()) / 1000
		w.builtAt = start
		if o.err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			w.sup().RecordBuild(w.name, d, o.err)
			var be *compiler.BuildError
			msg := o.err.Error()
			var diags []string
			if errors.As(o.err, &be) {
				w.lateWS = be.LateWatchSet
				if len(be.WatchSet.Dirs) > 0 || be.WatchSet.Module != "" {
					w.ws = be.WatchSet
				}
				for _, dg := range be.Diagnostics {
					diags = append(diags, dg.String())
				}
				if len(diags) > 0 {
					msg = strings.Join(diags, "\n")
				}
			}
			w.setWatches(ctx)
			bf := &buildFailed{msg: msg, err: o.err}
			w.progress().Prepared(bf) // before the event: a reader of the event sees it in the status
			w.sup().Publish(supervisor.Event{Type: supervisor.EventBuildFailed, Plugin: w.name, BuildMS: ms, Error: msg,
				Detail: map[string]any{"diagnostics": nonNil(diags)}})
			return nil, bf
		}
		w.sup().RecordBuild(w.name, d, nil)
		w.lateWS = o.r.LateWatchSet
		if len(o.r.WatchSet.Dirs) > 0 || o.r.WatchSet.Module != "" {
			w.ws = o.r.WatchSet
		}
		w.setWatches(ctx)
		w.sup().Publish(supervisor.Event{Type: supervisor.EventBuildSucceeded, Plugin: w.name, BuildMS: ms, Build: o.r.ID,
			Detail: map[string]any{"changed": o.r.Changed}})
		return o.r, nil
	}
}

// buildFailed keeps the compiler's error and shows the diagnostics.
type buildFailed struct {
	msg string
	err error
}

func (e *buildFailed) Error() string { return "build failed:\n" + e.msg }
func (e *buildFailed) Unwrap() error { return e.err }

func (w *worker) fetch(ctx context.Context) (*fetcher.Result, error) {
	w.progress().Preparing(supervisor.ActivityFetching)
	defer w.progress().Preparing(supervisor.ActivityIdle)
	r, err := fetcher.Fetch(ctx, w.name, w.cfg.Resolved.URL, fetcher.Options{Dir: w.scfg().RemoteDir, Checksum: w.cfg.Checksum,
		MaxBytes: w.scfg().FetchMaxBytes, Submodules: w.cfg.Submodules})
	if err != nil {
		w.sup().Publish(supervisor.Event{Type: supervisor.EventFetchFailed, Plugin: w.name, Error: err.Error()})
		return nil, err
	}
	if r.SkippedSubmodules {
		w.h.log.Warn().Str("plugin", w.name).Msg("the repository has submodules, not fetched: set submodules = true on the plugin to fetch them")
	}
	return r, nil
}

// onChange handles a batch from the watchers.
func (w *worker) onChange(ctx context.Context) {
	switch w.cfg.Resolved.Kind {
	case config.KindSource:
		spec, ms, changed, err := w.sourceSpec(ctx, w.cfg.Resolved.Path)
		w.finish(ctx, spec, ms, changed, err)
	case config.KindBinary:
		sctx, cancel := context.WithTimeout(ctx, stableTimeout)
		_, err := watcher.WaitStable(sctx, w.cfg.Resolved.Path, w.stableInterval())
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.fail(fmt.Errorf("plugin %q: binary %s did not settle: %w", w.name, w.cfg.Resolved.Path, err))
			}
			return
		}
		spec, ms, changed, err := w.binarySpec(ctx, w.cfg.Resolved.Path, w.cfg.Checksum)
		if err != nil {
			w.progress().Prepared(err) // before the event: a reader of the event sees it in the status
			w.sup().Publish(supervisor.Event{Type: supervisor.EventSwapFailed, Plugin: w.name, Error: err.Error()})
		}
		w.finish(ctx, spec, ms, changed, err)
	case config.KindCommand:
		m, err := config.ReadManifest(w.cfg.Resolved.Path)
		if err != nil {
			w.fail(fmt.Errorf("plugin %q: %w", w.name, err))
			return
		}
		d := w.cfg.Resolved
		d.Manifest = m
		spec, err := w.commandSpec(d)
		w.finish(ctx, spec, 0, true, err)
	}
}

// finish swaps to spec when it changed; errors are recorded and the
// running generation keeps serving.
func (w *worker) finish(ctx context.Context, spec *supervisor.Spec, ms float64, changed bool, err error) {
	if err != nil {
		if ctx.Err() == nil {
			w.fail(err)
		}
		return
	}
	if !changed && w.spec() != nil {
		w.progress().Prepared(nil)
		return
	}
	if _, err := w.apply(ctx, spec, ms, false); err != nil && ctx.Err() == nil {
		w.fail(err)
	}
}

// onUpdate re-fetches a remote driver on its interval.
func (w *worker) onUpdate(ctx context.Context) {
	r, err := w.fetch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.fail(err)
		}
		return
	}
	if !r.Changed && w.spec() != nil {
		return
	}
	w.fetched = r.Dir
	spec, ms, changed, err := w.folderSpec(ctx, r.Dir)
	w.finish(ctx, spec, ms, changed || r.Changed, err)
}

func (w *worker) stableInterval() time.Duration {
	// Longer than the debounce: a writer that pauses long enough to end a
	// batch must still be seen as writing.
	d := 2 * w.scfg().Debounce.Duration
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

// reload rebuilds or re-fetches and swaps (a fresh process when nothing
// changed).
func (w *worker) reload(ctx context.Context, force bool) (rep *supervisor.Report, err error) {
	derr := w.do(ctx, func(wctx context.Context) {
		var spec *supervisor.Spec
		var ms float64
		spec, ms, _, err = w.prepare(wctx, true)
		if err != nil {
			w.fail(err)
			return
		}
		rep, err = w.apply(ctx, spec, ms, force)
	})
	if derr != nil {
		return nil, derr
	}
	return rep, err
}

// reconfigure applies a changed config entry: a new spec, new watches, a
// swap with the state kept.
func (w *worker) reconfigure(ctx context.Context, p *config.Plugin) (rep *supervisor.Report, err error) {
	derr := w.do(ctx, func(wctx context.Context) {
		w.mu.Lock()
		w.cfg = p
		w.mu.Unlock()
		w.fetched = ""
		var spec *supervisor.Spec
		var ms float64
		spec, ms, _, err = w.prepare(wctx, true)
		w.setWatches(wctx)
		if err != nil {
			w.fail(err)
			return
		}
		rep, err = w.apply(ctx, spec, ms, false)
	})
	if derr != nil {
		return nil, derr
	}
	return rep, err
}

// rollback swaps to the build kept before the current one.
func (w *worker) rollback(ctx context.Context) (rep *supervisor.Report, err error) {
	derr := w.do(ctx, func(context.Context) {
		cur := w.spec()
		if cur == nil || cur.InProc != nil || w.cfg.Resolved.Kind == config.KindCommand {
			err = fmt.Errorf("plugin %q: nothing to roll back to: only compiled or binary plugins keep builds", w.name)
			return
		}
		binDir := w.scfg().BinDir
		builds, berr := compiler.Builds(binDir, w.name)
		if berr != nil {
			err = fmt.Errorf("plugin %q: list builds: %w", w.name, berr)
			return
		}
		idx := -1
		for i, b := range builds {
			if b == cur.Path {
				idx = i
			}
		}
		if idx < 0 || idx+1 >= len(builds) {
			err = fmt.Errorf("plugin %q: no earlier build kept in %s (keep_builds keeps the last %d)",
				w.name, filepath.Join(binDir, w.name), w.scfg().KeepBuilds)
			return
		}
		prev := builds[idx+1]
		spec := *cur
		spec.Path = prev
		spec.Build, _ = compiler.BuildIDOf(w.name, prev)
		spec.Started = w.setCurrent(binDir, w.name, prev)
		rep, err = w.apply(ctx, &spec, 0, false)
		if err == nil {
			// The rolled-back build is now the newest: touch it so Builds
			// lists it first and a second rollback goes further back.
			now := time.Now()
			_ = os.Chtimes(prev, now, now)
		}
	})
	if derr != nil {
		return nil, derr
	}
	return rep, err
}

// buildOnly builds (fetching first if remote) without starting anything.
// Plugins that are not compiled return a nil result.
func (w *worker) buildOnly(ctx context.Context) (*compiler.Result, error) {
	d := w.cfg.Resolved
	dir := ""
	switch d.Kind {
	case config.KindSource:
		dir = d.Path
	case config.KindRemote:
		r, err := w.fetch(ctx)
		if err != nil {
			return nil, err
		}
		if isGo, _ := config.HasGoSources(r.Dir); !isGo {
			return nil, nil
		}
		dir = r.Dir
	default:
		return nil, nil
	}
	return w.build(ctx, dir)
}
