// Package host is plugvisor's driver layer: it turns a config into running
// plugins and keeps them current. Each configured plugin gets one worker
// goroutine that owns its builds, fetches and swaps, so a change arriving
// during a swap is applied after it. Go sources are compiled and watched,
// binaries watched and swapped once stable, command plugins restarted with
// their state when a file in their folder changes, remote drivers re-fetched
// on their update interval, and the config file itself re-applied when it
// is edited.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/sdk/python"
	"github.com/plugvisor/plugvisor/supervisor"
)

// Options tune a Host.
type Options struct {
	Logger     *zerolog.Logger
	Registerer prometheus.Registerer // nil: the supervisor's own registry
	Builtins   map[string]string     // builtin name → source folder (builtin.Sources()); nil = builtin.Sources()
	NoWatch    bool                  // don't watch sources/binaries/config (plugvisor build, tests)
	// PythonSDK is the folder put on PYTHONPATH for python command plugins
	// (the one holding the plugvisor package). "" extracts the SDK embedded
	// in this binary into state_dir/python-sdk/<version>/.
	PythonSDK string
	// Streamed says the caller shows events and plugin output itself
	// (plugvisor dev): plugin output and failures already in an event are
	// not logged again.
	Streamed bool
	// NoPipelines starts the plugins but not the config's pipelines
	// (plugvisor validate learns the plugins' schemas this way).
	NoPipelines bool
	// ResetDamagedState moves a damaged state.db aside and starts with
	// empty state (plugvisor run --reset-state); see supervisor.Options.
	ResetDamagedState bool
}

// ErrNotRunning is returned by the calls that need Run to be running.
var ErrNotRunning = errors.New("host is not running (call Run first)")

// Host runs the plugins of one config.
type Host struct {
	opts     Options
	log      zerolog.Logger
	sup      *supervisor.Supervisor
	reg      config.Registry
	pySDK    string
	started  chan struct{}
	applyMu  sync.Mutex // serialises Apply (config file watch and API)
	workerWG sync.WaitGroup
	pipes    pipelines
	cfgw     configWatch // configwatch.go

	mu      sync.Mutex
	cfg     *config.Config
	workers map[string]*worker
	runCtx  context.Context // nil until Run
}

// New prepares a host for cfg: the supervisor is made with cfg's
// [supervisor] options; nothing is built or started until Run.
func New(cfg *config.Config, o Options) (*Host, error) {
	if cfg == nil {
		return nil, errors.New("host: no config")
	}
	h := &Host{opts: o, cfg: cfg, workers: map[string]*worker{}, started: make(chan struct{})}
	if o.Logger != nil {
		h.log = *o.Logger
	} else {
		h.log = zerolog.Nop()
	}
	if o.Builtins == nil {
		o.Builtins = builtin.Sources()
		h.opts.Builtins = o.Builtins
	}
	h.reg = config.Registry(o.Builtins)
	s := cfg.Supervisor
	sup, err := supervisor.New(supervisor.Options{
		StateDir:           s.StateDir,
		StartTimeout:       s.StartTimeout.Duration,
		DrainTimeout:       s.DrainTimeout.Duration,
		SnapshotTimeout:    s.SnapshotTimeout.Duration,
		RestoreTimeout:     s.RestoreTimeout.Duration,
		StopGrace:          s.StopGrace.Duration,
		HeartbeatInterval:  s.HeartbeatInterval.Duration,
		HeartbeatTimeout:   s.HeartbeatTimeout.Duration,
		CheckpointInterval: s.CheckpointInterval.Duration,
		BackoffMin:         s.BackoffMin.Duration,
		BackoffMax:         s.BackoffMax.Duration,
		MaxFrame:           s.MaxFrame,
		LogLines:           s.LogLines,
		QueueBytes:         s.QueueBytes,
		RecvQueueBytes:     s.RecvQueueBytes,
		LogBytesPerSec:     s.LogBytesPerSec,
		LogLinesPerSec:     s.LogLinesPerSec,
		LogLineMax:         s.LogLineMax,
		EnvInherit:         s.EnvInherit,
		Logger:             o.Logger,
		Registerer:         o.Registerer,
		QuietOutput:        o.Streamed,
		ResetDamagedState:  o.ResetDamagedState,
		// External instances (config/external.go).
		Listen: s.Listen, TLSCert: s.TLSCert, TLSKey: s.TLSKey, TLSClientCA: s.TLSClientCA,
		RemoteHeartbeatInterval: s.RemoteHeartbeatInterval.Duration, RemoteHeartbeatTimeout: s.RemoteHeartbeatTimeout.Duration,
	})
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	h.sup = sup
	h.pySDK = o.PythonSDK
	if h.pySDK == "" {
		// The SDK of this binary's own version, embedded in it: a binary
		// copied anywhere runs Python plugins.
		if h.pySDK, err = python.Extract(filepath.Join(s.StateDir, "python-sdk")); err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
	}
	return h, nil
}

// Run builds or fetches and starts every configured plugin, watches their
// sources, binaries and the config file (unless NoWatch), and blocks until
// ctx ends; then it stops everything, every child reaped, and returns nil.
func (h *Host) Run(ctx context.Context) error {
	h.mu.Lock()
	if h.runCtx != nil {
		h.mu.Unlock()
		return errors.New("host: Run called twice")
	}
	h.runCtx = ctx
	cfg := h.cfg
	h.mu.Unlock()

	// Watch the config before anything starts, so an edit made once
	// Started is closed is never missed.
	var cfgWatch sync.WaitGroup
	if !h.opts.NoWatch && cfg.Path != "" {
		if err := h.watchConfig(ctx, &cfgWatch); err != nil {
			h.log.Warn().Err(err).Msg("config file is not watched; edits need a restart")
		}
	}

	h.applyMu.Lock() // a config edit seen meanwhile applies after the first starts
	h.mu.Lock()
	names := slices.Sorted(maps.Keys(cfg.Plugins))
	firsts := make([]<-chan struct{}, 0, len(names))
	for _, n := range names {
		w := h.startWorkerLocked(ctx, n, cfg.Plugins[n])
		firsts = append(firsts, w.first)
	}
	h.mu.Unlock()
	if !h.opts.NoPipelines {
		h.pipes.sync(ctx, h, cfg.Pipelines)
	}
	h.applyMu.Unlock()

	go func() {
		for _, f := range firsts {
			select {
			case <-f:
			case <-ctx.Done():
				return
			}
		}
		close(h.started)
	}()

	<-ctx.Done()
	h.teardown(cfg, &cfgWatch)
	return nil
}

// startWorkerLocked makes and starts the worker of plugin name; h.mu held.
func (h *Host) startWorkerLocked(ctx context.Context, name string, p *config.Plugin) *worker {
	plug, err := h.sup.AddPending(name, supervisor.Spec{Driver: p.Driver, Kind: string(p.Resolved.Kind)})
	if err != nil {
		// Added to the supervisor directly (embedded use) under the same
		// name: the worker reports into it. Closed: the worker has none,
		// and says so when it has a spec to start.
		plug, _ = h.sup.Plugin(name)
	}
	w := newWorker(h, name, p, plug)
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	h.workers[name] = w
	h.workerWG.Add(1)
	go func() {
		defer h.workerWG.Done()
		defer cancel()
		w.loop(wctx)
	}()
	return w
}

// Started is closed once every configured plugin has had its first start
// attempt (built or fetched, then handed to the supervisor, or failed).
func (h *Host) Started() <-chan struct{} { return h.started }

// Supervisor is the supervisor running the plugins.
func (h *Host) Supervisor() *supervisor.Supervisor { return h.sup }

// Plugin returns the named running plugin. A configured plugin that never
// started (its first build failed) wraps supervisor.ErrNotRunning.
func (h *Host) Plugin(name string) (*supervisor.Plugin, error) {
	p, err := h.sup.Plugin(name)
	if err != nil {
		return nil, err
	}
	if _, ok := p.Spec(); !ok {
		why := p.Status().LastError
		if why == "" {
			why = "not started yet"
		}
		return nil, fmt.Errorf("plugin %q: %w: %s", name, supervisor.ErrNotRunning, why)
	}
	return p, nil
}

func (h *Host) worker(name string) *worker {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.workers[name]
}

func (h *Host) workerOrErr(name string) (*worker, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.runCtx == nil {
		return nil, ErrNotRunning
	}
	w := h.workers[name]
	if w == nil {
		names := slices.Sorted(maps.Keys(h.workers))
		return nil, fmt.Errorf("%w: %q (configured: %v)", supervisor.ErrUnknownPlugin, name, names)
	}
	return w, nil
}

// Apply hot-applies cfg: plugins added start, removed ones stop, changed
// ones (driver, config, env, build, checksum, update) are swapped to their
// new spec with their state kept. Supervisor-level changes need a restart
// and are only logged. It publishes config.applied.
func (h *Host) Apply(ctx context.Context, cfg *config.Config) error {
	h.applyMu.Lock()
	defer h.applyMu.Unlock()
	h.mu.Lock()
	old := h.cfg
	runCtx := h.runCtx
	h.mu.Unlock()
	ch := config.Diff(old, cfg)
	if err := h.refuseBadPipelines(ch, cfg); err != nil {
		return err
	}
	if runCtx == nil {
		h.mu.Lock()
		h.cfg = cfg
		h.mu.Unlock()
		return nil
	}
	if ch.SupervisorChanged {
		h.log.Warn().Msg("config: [supervisor] changed; those settings apply after a restart")
	}
	var errs []error
	for _, n := range ch.Removed {
		if err := h.RemovePlugin(ctx, n); err != nil && !errors.Is(err, supervisor.ErrUnknownPlugin) {
			errs = append(errs, err)
		}
	}
	h.mu.Lock()
	var added []*worker
	for _, n := range ch.Added {
		if w := h.workers[n]; w != nil { // added at run time, now in the file
			ch.Changed = append(ch.Changed, n)
			continue
		}
		added = append(added, h.startWorkerLocked(runCtx, n, cfg.Plugins[n]))
	}
	h.cfg = cfg
	h.mu.Unlock()
	for _, w := range added {
		select {
		case <-w.first:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	for _, n := range ch.Changed {
		w := h.worker(n)
		if w == nil {
			continue
		}
		if _, err := w.reconfigure(ctx, cfg.Plugins[n]); err != nil {
			errs = append(errs, fmt.Errorf("plugin %q: %w", n, err))
		}
	}
	if (ch.PipelinesChanged || len(ch.Removed) > 0 || len(ch.Added) > 0) && !h.opts.NoPipelines {
		h.pipes.sync(runCtx, h, cfg.Pipelines)
	}
	err := errors.Join(errs...)
	ev := supervisor.Event{Type: supervisor.EventConfigApplied, Detail: map[string]any{
		"added": nonNil(ch.Added), "removed": nonNil(ch.Removed), "changed": nonNil(ch.Changed),
		"supervisor_changed": ch.SupervisorChanged, "pipelines_changed": ch.PipelinesChanged}}
	if err != nil {
		ev.Error = err.Error()
	}
	h.sup.Publish(ev)
	h.log.Info().Strs("added", ch.Added).Strs("removed", ch.Removed).Strs("changed", ch.Changed).Msg("config applied")
	return err
}

// AddPlugin adds a plugin at run time (POST /plugins), validated like one
// in the config file. It returns once its first start was attempted.
func (h *Host) AddPlugin(ctx context.Context, name, driver string, cfg map[string]any) (supervisor.Status, error) {
	h.mu.Lock()
	if h.runCtx == nil {
		h.mu.Unlock()
		return supervisor.Status{}, ErrNotRunning
	}
	if _, dup := h.workers[name]; dup {
		h.mu.Unlock()
		return supervisor.Status{}, fmt.Errorf("plugin %q already exists; remove it first or pick another name", name)
	}
	p, err := h.cfg.NewPlugin(name, driver, cfg, h.reg)
	if err != nil {
		h.mu.Unlock()
		return supervisor.Status{}, err
	}
	w := h.startWorkerLocked(h.runCtx, name, p)
	h.mu.Unlock()
	select {
	case <-w.first:
	case <-ctx.Done():
		return supervisor.Status{}, ctx.Err()
	}
	st := h.statusOf(w)
	if st.State == supervisor.StateFailed && st.PID == 0 && st.Generation == 0 {
		return st, fmt.Errorf("plugin %q added but not started: %s", name, st.LastError)
	}
	return st, nil
}

// RemovePlugin stops a plugin and forgets it (its checkpoint stays, so
// adding it again resumes its state).
func (h *Host) RemovePlugin(ctx context.Context, name string) error {
	h.mu.Lock()
	w := h.workers[name]
	delete(h.workers, name)
	h.mu.Unlock()
	if w == nil {
		return fmt.Errorf("%w: %q", supervisor.ErrUnknownPlugin, name)
	}
	w.cancel()
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := h.sup.Remove(ctx, name); err != nil && !errors.Is(err, supervisor.ErrUnknownPlugin) {
		return err
	}
	return nil
}

// Reload re-fetches (remote) or rebuilds (source) the plugin and swaps to
// the result, or to a fresh process of the current build when nothing
// changed. force replaces a generation whose drain times out.
func (h *Host) Reload(ctx context.Context, name string, force bool) (*supervisor.Report, error) {
	w, err := h.workerOrErr(name)
	if err != nil {
		return nil, err
	}
	return w.reload(ctx, force)
}

// Rollback swaps the plugin to the build kept before the current one
// (compiler.Builds) and re-points bin/<plugin>/current at it.
func (h *Host) Rollback(ctx context.Context, name string) (*supervisor.Report, error) {
	w, err := h.workerOrErr(name)
	if err != nil {
		return nil, err
	}
	return w.rollback(ctx)
}

// Build compiles one plugin (fetching it first if remote) without
// starting it: `plugvisor build NAME`. name "" builds all (BuildAll) and
// returns a nil result.
func (h *Host) Build(ctx context.Context, name string) (*compiler.Result, error) {
	if name == "" {
		_, err := h.BuildAll(ctx)
		return nil, err
	}
	h.mu.Lock()
	p := h.cfg.Plugins[name]
	h.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: %q", supervisor.ErrUnknownPlugin, name)
	}
	return h.buildWorker(name, p).buildOnly(ctx)
}

// buildWorker makes a worker that only builds; it reports into the
// plugin's lifecycle when the plugin runs.
func (h *Host) buildWorker(name string, p *config.Plugin) *worker {
	plug, _ := h.sup.Plugin(name)
	return newWorker(h, name, p, plug)
}

// BuildAll builds every Go plugin of the config (sources, builtins in
// process mode, remote Go sources); the others are skipped.
func (h *Host) BuildAll(ctx context.Context) (map[string]*compiler.Result, error) {
	h.mu.Lock()
	cfg := h.cfg
	h.mu.Unlock()
	out := map[string]*compiler.Result{}
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(cfg.Plugins)) {
		r, err := h.buildWorker(n, cfg.Plugins[n]).buildOnly(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != nil {
			out[n] = r
		}
	}
	return out, errors.Join(errs...)
}

// Statuses returns the status of every plugin, by name, including those
// whose first build or fetch failed (state failed, no generation).
func (h *Host) Statuses() []supervisor.Status {
	h.mu.Lock()
	ws := make([]*worker, 0, len(h.workers))
	for _, n := range slices.Sorted(maps.Keys(h.workers)) {
		ws = append(ws, h.workers[n])
	}
	h.mu.Unlock()
	out := make([]supervisor.Status, 0, len(ws))
	seen := map[string]bool{}
	for _, w := range ws {
		out = append(out, h.statusOf(w))
		seen[w.name] = true
	}
	for _, p := range h.sup.Plugins() { // embedded use: plugins added to the supervisor directly
		if !seen[p.Name()] {
			out = append(out, p.Status())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Status returns one plugin's status.
func (h *Host) Status(name string) (supervisor.Status, error) {
	if w := h.worker(name); w != nil {
		return h.statusOf(w), nil
	}
	p, err := h.sup.Plugin(name)
	if err != nil {
		return supervisor.Status{}, err
	}
	return p.Status(), nil
}

func (h *Host) statusOf(w *worker) supervisor.Status {
	if w.p == nil { // registered while the supervisor closed
		return supervisor.Status{Name: w.name, Driver: w.cfg.Driver, Kind: string(w.cfg.Resolved.Kind), State: supervisor.StateStopped}
	}
	return w.p.Status()
}

// Logs returns up to n of the plugin's last output lines.
func (h *Host) Logs(name string, n int) ([]supervisor.LogLine, error) {
	p, err := h.sup.Plugin(name)
	if err != nil {
		if w := h.worker(name); w != nil {
			return []supervisor.LogLine{}, nil
		}
		return nil, err
	}
	return p.Logs(n), nil
}

// Symbol is one symbol a running plugin offers, with the JSON Schemas it
// announced (absent when it announced none): In and Out for a function,
// Item for a source or a sink.
type Symbol struct {
	Plugin string          `json:"plugin"`
	Kind   string          `json:"kind"` // source, sink or function
	Name   string          `json:"name"`
	In     json.RawMessage `json:"in,omitempty"`
	Out    json.RawMessage `json:"out,omitempty"`
	Item   json.RawMessage `json:"item,omitempty"`
}

// Symbols lists the symbols of every plugin, by plugin, kind and name.
func (h *Host) Symbols() []Symbol {
	var out []Symbol
	for _, p := range h.sup.Plugins() {
		st := p.Status()
		sym := func(kind, name string) Symbol {
			ss := st.Symbols.Schemas[name]
			return Symbol{Plugin: p.Name(), Kind: kind, Name: name, In: ss.In, Out: ss.Out, Item: ss.Item}
		}
		for _, s := range st.Symbols.Sources {
			out = append(out, sym("source", s))
		}
		for _, s := range st.Symbols.Sinks {
			out = append(out, sym("sink", s))
		}
		for _, s := range st.Symbols.Functions {
			out = append(out, sym("function", s))
		}
	}
	if out == nil {
		out = []Symbol{}
	}
	return out
}

// Call calls function fn of plugin with JSON input.
func (h *Host) Call(ctx context.Context, plugin, fn string, input []byte) ([]byte, error) {
	p, err := h.Plugin(plugin)
	if err != nil {
		return nil, err
	}
	return p.Call(ctx, fn, input)
}

// Events subscribes to lifecycle events (see supervisor.Subscribe).
func (h *Host) Events(buf int) *supervisor.Subscriber { return h.sup.Subscribe(buf) }

// Gatherer serves the metrics: the supervisor's own registry, or the
// Registerer given in Options when it can gather.
func (h *Host) Gatherer() prometheus.Gatherer {
	if h.opts.Registerer == nil {
		return h.sup.Registry()
	}
	if g, ok := h.opts.Registerer.(prometheus.Gatherer); ok {
		return g
	}
	return prometheus.DefaultGatherer
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
