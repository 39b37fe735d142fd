// Package supervisor runs plugins as child processes and keeps them
// serving: it starts them, talks to them over the transport, restarts them
// when they crash, and swaps a running plugin for a new build without
// losing, duplicating or reordering anything (see docs/DESIGN.md).
//
// A host embeds it like this:
//
//	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: ".plugvisor"}})
//	p, err := sup.Add("counter", supervisor.Spec{Path: "bin/counter"})
//	out, err := p.Call(ctx, "count", []byte(`"clicks"`))
//	rep, err := p.Reload(ctx, supervisor.ReloadOptions{})   // swap, state kept
//	defer sup.Close(ctx)
//
// Handles (Call, Subscribe, OpenSink) stay valid across swaps and restarts.
// The driver layer (package host) turns config entries into Specs: it
// builds Go sources, fetches remote ones and watches for changes.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/transport"
)

// Options tune the supervisor. Its settings are config's [supervisor]
// table as config parses it (config.Supervisor, embedded: a new setting is
// added there, docs/DESIGN.md "Settings and defaults"); a field left unset
// (zero) takes config.DefaultSupervisor's value. The supervisor reads the
// state folder, the lifecycle deadlines and heartbeats, backoff, frame and
// queue sizes, output limits and env_inherit; the other settings are the
// host's.
type Options struct {
	config.Supervisor
	Logger      *zerolog.Logger
	Registerer  prometheus.Registerer // metrics; nil = a private registry
	QuietOutput bool                  // plugin output is only kept and followed (FollowOutput), not logged
	// ResetDamagedState moves a damaged state.db aside
	// (state.db.damaged-<time>) and starts with empty state, saying so in
	// the log; without it New refuses with ErrStoreDamaged. A healthy
	// store is kept either way.
	ResetDamagedState bool
}

func (o *Options) defaults() { o.Supervisor = o.Supervisor.WithDefaults() }

// Supervisor owns the plugins of one host.
type Supervisor struct {
	opts     Options
	sockDir  string
	store    *store
	bus      bus
	output   fanout[OutputLine] // plugin output lines, for FollowOutput
	metrics  *metrics
	log      zerolog.Logger
	registry *prometheus.Registry
	scope    string // names this state_dir in process tags and socket dirs
	dropped  *outputMetrics
	// newRunner starts generations; tests put a fake in its place.
	newRunner func(runSpec) runner
	seq       int // numbers plugins for unique socket names (under mu)

	// onPhase, set by tests before any plugin is added, sees every phase
	// change (lifecycle.go).
	onPhase func(p *Plugin, from, to phase)

	mu      sync.Mutex
	plugins map[string]*Plugin
	closed  bool

	pipes pipeRegistry // status of the pipelines run by RunPipeline

	mux      *transport.Mux // where external instances connect (Options.Listen); nil without
	arriving map[string]int // per plugin, instances waiting for its loop (external.go); under mu
	refusals refusalLimit   // of the listener's log lines
}

// New prepares a supervisor: the state dir, a private socket dir (0700)
// for this run, and the checkpoint store.
func New(opts Options) (*Supervisor, error) {
	opts.defaults()
	s := &Supervisor{opts: opts, plugins: map[string]*Plugin{}, scope: scopeOf(opts.StateDir), newRunner: defaultRunner}
	if opts.Logger != nil {
		s.log = *opts.Logger
	} else {
		s.log = zerolog.Nop()
	}
	if opts.Registerer == nil {
		s.registry = prometheus.NewRegistry()
		opts.Registerer = s.registry
	}
	s.metrics = newMetrics(opts.Registerer)
	s.dropped = newOutputMetrics(opts.Registerer)
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", opts.StateDir, err)
	}
	st, err := openStore(opts.StateDir, opts.ResetDamagedState, func(msg string) { s.log.Warn().Msg(msg) })
	if err != nil {
		return nil, err
	}
	s.store = st
	// The store's lock says no other host runs on this state_dir: what an
	// earlier one left is fair game, and must be gone before we serve.
	s.reapLeftovers()
	dir, err := s.socketDir()
	if err != nil {
		st.close()
		return nil, err
	}
	s.sockDir = dir
	if err := s.listenExternal(); err != nil {
		st.close()
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// SocketDir is this run's private socket directory.
func (s *Supervisor) SocketDir() string { return s.sockDir }

// Registry is the supervisor's Prometheus registry when it made its own
// (Options.Registerer nil), for serving /metrics.
func (s *Supervisor) Registry() *prometheus.Registry { return s.registry }

// Add starts a plugin. It returns at once; the plugin comes up in the
// background (Status shows how), and handles wait for it.
func (s *Supervisor) Add(name string, spec Spec) (*Plugin, error) { return s.add(name, spec, true) }

// add registers a plugin and starts its loop, which starts it when it
// has its spec (AddPending: once Start hands it over).
func (s *Supervisor) add(name string, spec Spec, hasSpec bool) (*Plugin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("supervisor is closed")
	}
	if _, dup := s.plugins[name]; dup {
		return nil, fmt.Errorf("plugin %q already exists", name)
	}
	p := newPlugin(s, name, spec)
	p.hasSpec = hasSpec
	s.plugins[name] = p
	s.metrics.initPlugin(name)
	go p.loop()
	s.bus.publish(Event{Type: EventPluginAdded, Plugin: name})
	return p, nil
}

// Remove stops a plugin and forgets it. Its checkpoint stays on disk, so
// adding it again resumes its state.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	p, ok := s.plugins[name]
	delete(s.plugins, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownPlugin, name)
	}
	err := p.stop(ctx)
	s.bus.publish(Event{Type: EventPluginRemoved, Plugin: name})
	return err
}

// Plugin returns the named plugin.
func (s *Supervisor) Plugin(name string) (*Plugin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.plugins[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (running: %v)", ErrUnknownPlugin, name, slices.Sorted(maps.Keys(s.plugins)))
	}
	return p, nil
}

// Plugins returns every plugin, by name.
func (s *Supervisor) Plugins() []*Plugin {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Plugin, 0, len(s.plugins))
	for _, p := range s.plugins {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Subscribe returns a subscriber to lifecycle events; buf bounds what a
// slow reader may fall behind before it loses the oldest.
func (s *Supervisor) Subscribe(buf int) *Subscriber { return s.bus.subscribe(buf) }

// Publish sends an event (the driver layer reports builds through it).
func (s *Supervisor) Publish(e Event) { s.bus.publish(e) }

// RecordBuild feeds a build's outcome into the metrics.
func (s *Supervisor) RecordBuild(plugin string, d time.Duration, err error) {
	s.metrics.build(plugin, d.Seconds(), err)
}

// Close stops every plugin (a final checkpoint each, then shutdown, grace,
// SIGTERM, SIGKILL) and releases the store and the socket dir.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	plugins := make([]*Plugin, 0, len(s.plugins))
	for _, p := range s.plugins {
		plugins = append(plugins, p)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(plugins))
	for i, p := range plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.stop(ctx)
		}()
	}
	wg.Wait()
	if s.mux != nil {
		errs = append(errs, s.mux.Close())
	}
	errs = append(errs, s.store.close())
	os.RemoveAll(s.sockDir)
	return errors.Join(errs...)
}

// Run blocks until ctx ends, then closes the supervisor: an actor for an
// oklog/run group.
func (s *Supervisor) Run(ctx context.Context) error {
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), s.opts.StopGrace.Duration*3+5*time.Second)
	defer cancel()
	return s.Close(cctx)
}
