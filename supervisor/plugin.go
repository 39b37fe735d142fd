package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/internal/broadcast"
	"github.com/plugvisor/plugvisor/transport"
)

// Plugin is one configured plugin and its live generation. Its methods
// are safe for concurrent use; handles taken from it (Call, Subscribe,
// OpenSink) stay valid across swaps and restarts.
type Plugin struct {
	sup     *Supervisor
	name    string
	short   string
	logs    *ring
	out     *outputLimiter // output on its way to the daemon's log
	log     zerolog.Logger
	metrics *metrics

	mu         sync.Mutex // guards the fields below; the gate of every handle
	spec       Spec
	hasSpec    bool // false while the driver layer makes the first (AddPending)
	cur        *generation
	phase      phase            // see lifecycle.go; changed only by to
	wake       broadcast.Signal // fired by every phase change
	activity   Activity
	genNum     int
	served     int // the last generation that served (the status shows it while none does)
	restarts   int
	lastErr    string
	lastReload *Report
	man        transport.Manifest // of the last generation that served
	fns        map[string]bool    // functions called through handles: "in use" for swaps
	instances  map[string]*instance

	reps replicaSet // generations serving functions beside cur (replicas.go)

	// Owned by the loop goroutine.
	attempted   bool // a start was attempted: the next one is a restart
	ck          *checkpoint
	consecutive int
	retry       <-chan time.Time

	ctx      context.Context // ends when the plugin is stopped: bounds starts and swaps
	cancel   context.CancelFunc
	ops      chan func()
	quit     chan struct{}
	loopDone chan struct{}
}

func newPlugin(s *Supervisor, name string, spec Spec) *Plugin {
	// Socket names start with short: the name's head for people reading
	// the socket dir, and a number that keeps it unique whatever the length.
	s.seq++
	short := name
	if len(short) > 8 {
		short = short[:8]
	}
	short += "." + strconv.Itoa(s.seq)
	p := &Plugin{sup: s, name: name, short: short, spec: spec, logs: newRing(s.opts.LogLines), out: newOutputLimiter(s.opts),
		log: s.log.With().Str("plugin", name).Logger(), metrics: s.metrics,
		phase: phaseStarting, activity: ActivityIdle,
		fns: map[string]bool{}, instances: map[string]*instance{},
		ops: make(chan func()), quit: make(chan struct{}), loopDone: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Name is the plugin's name in the config.
func (p *Plugin) Name() string { return p.name }

// acquire returns the serving generation with a call of fn counted in
// flight, waiting while there is none or a swap has paused the handles. It
// also marks fn as in use, which a swap checks the new generation offers.
func (p *Plugin) acquire(ctx context.Context, fn string) (*generation, error) {
	var waited time.Time // set once the call has to wait: its pause
	defer p.reps.notePause(&waited)
	p.mu.Lock()
	for {
		w := p.wake.Wait() // before the check: a change in between still wakes us
		g, err := p.pickLocked()
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if g != nil {
			if !p.fns[fn] && g.man.Has(transport.KindFunction, fn) {
				p.fns[fn] = true // only names it offers: callers cannot grow the set
			}
			g.enter()
			p.mu.Unlock()
			return g, nil
		}
		p.mu.Unlock()
		if waited.IsZero() {
			waited = time.Now()
		}
		select {
		case <-w:
		case <-ctx.Done():
			if err := p.noInstance(ctx.Err()); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("waiting for plugin %s (%s): %w", p.name, p.phaseNow(), ctx.Err())
		}
		p.mu.Lock()
	}
}

func (p *Plugin) current() *generation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// do runs fn on the plugin's loop, which serialises every lifecycle change.
func (p *Plugin) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case p.ops <- func() { fn(); close(done) }:
	case <-p.loopDone:
		return fmt.Errorf("%w: %s", ErrStopped, p.name)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Plugin) loop() {
	defer close(p.loopDone)
	if ck, err := p.sup.store.load(p.name); err != nil {
		p.logf(0, "ignoring the saved state: %v", err)
	} else {
		p.ck = ck
	}
	if p.hasSpecNow() {
		p.bringUpAll(p.ctx)
	}
	ckTick := time.NewTicker(p.sup.opts.CheckpointInterval.Duration)
	defer ckTick.Stop()
	for {
		var dead <-chan struct{}
		if g := p.current(); g != nil {
			dead = g.dead
		}
		select {
		case <-p.quit:
			p.shutdown()
			return
		case op := <-p.ops:
			op()
		case <-dead:
			p.crashed()
		case <-p.retry:
			p.retry = nil
			p.bringUpAll(p.ctx)
		case <-ckTick.C:
			if err := p.checkpoint(context.Background()); err != nil {
				p.logf(p.genNum, "periodic checkpoint failed: %v", err)
			}
		}
	}
}

// restoreAndOpen loads ck into g, then opens every instance on it.
func (p *Plugin) restoreAndOpen(ctx context.Context, g *generation, ck *checkpoint, send bool) error {
	if err := p.restoreState(ctx, g, ck); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout.Duration)
	defer cancel()
	for _, inst := range p.sortedInstances() {
		if err := p.bindInstance(octx, g, inst, send); err != nil {
			return err
		}
	}
	return nil
}

// restoreState loads ck into g (Migrate on a state version change).
func (p *Plugin) restoreState(ctx context.Context, g *generation, ck *checkpoint) error {
	if ck != nil && len(ck.scopes) > 0 {
		if ck.meta.FromStateVersion != g.man.StateVersion && !g.man.Migrate {
			return fmt.Errorf("%w: the saved state has state version %q, %s %s reads %q and has no Migrate hook",
				ErrStateIncompatible, ck.meta.FromStateVersion, g.man.Name, g.man.Version, g.man.StateVersion)
		}
		rctx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout.Duration)
		_, err := g.request(rctx, transport.Restore, transport.RestorePayload(ck.meta, ck.scopes))
		cancel()
		if err != nil {
			return fmt.Errorf("restore state: %w", err)
		}
	}
	return nil
}

func (p *Plugin) sortedInstances() []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*instance, 0, len(p.instances))
	for _, in := range p.instances {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// unbind detaches every instance from g; their queued work waits for the
// next generation.
func (p *Plugin) unbind(g *generation) {
	for _, inst := range p.sortedInstances() {
		if inst.bind == nil || inst.bind.g != g {
			continue
		}
		inst.bind.conn.Close()
		<-inst.bind.done
		inst.bind = nil
		if w := inst.sink; w != nil {
			w.pause()
		}
	}
}

// Checkpoint snapshots the serving generation's state and saves it now
// (it also happens every checkpoint_interval and at every swap).
func (p *Plugin) Checkpoint(ctx context.Context) error {
	var err error
	if derr := p.do(ctx, func() { err = p.checkpoint(ctx) }); derr != nil {
		return derr
	}
	return err
}

// checkpoint snapshots the serving generation and saves it.
func (p *Plugin) checkpoint(ctx context.Context) error {
	g := p.current()
	if g == nil {
		return nil
	}
	// Hold new calls and let those in flight finish, as a swap's drain
	// does, so the function state saved covers exactly the calls (and
	// batches) whose results were handed back — what a pipeline passed on.
	// Calls resume as soon as the plugin has answered the snapshot.
	p.to(phaseCheckpointing, change{})
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			p.to(phaseServing, change{})
		}
	}
	defer resume()
	dctx, cancel := context.WithTimeout(ctx, p.sup.opts.DrainTimeout.Duration)
	_, err := g.waitIdle(dctx)
	cancel()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	ck, err := p.snapshot(ctx, g, true, resume)
	if err != nil {
		return err
	}
	p.ck = ck
	return p.sup.store.save(p.name, ck)
}

// snapshot asks g for its state. With marks, it also waits until every
// running source's stream has passed the checkpoint marker, so the saved
// state never claims an item the host has not received. answered (if not
// nil) runs once the plugin answered, before that wait.
func (p *Plugin) snapshot(ctx context.Context, g *generation, marks bool, answered func()) (*checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, p.sup.opts.SnapshotTimeout.Duration)
	defer cancel()
	f, err := g.request(ctx, transport.Snapshot, nil)
	if answered != nil {
		answered()
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	scopes, err := transport.ParseState(f.Payload)
	if err != nil {
		g.kill(fmt.Errorf("%w: %w", ErrCrashed, err))
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if marks {
		for _, inst := range p.sortedInstances() {
			if b := inst.bind; b != nil && b.g == g && inst.kind == transport.KindSource {
				if err := b.waitMark(ctx, f.ID); err != nil {
					return nil, err
				}
			}
		}
	}
	return &checkpoint{meta: transport.RestoreMeta{FromVersion: g.man.Version, FromStateVersion: g.man.StateVersion},
		scopes: scopes, at: time.Now()}, nil
}

// attach registers inst and opens it on the serving generation.
func (p *Plugin) attach(ctx context.Context, inst *instance) error {
	var err error
	derr := p.do(ctx, func() {
		p.mu.Lock()
		if _, dup := p.instances[inst.id]; dup {
			p.mu.Unlock()
			err = fmt.Errorf("%s %s of plugin %s is already open", inst.kind, inst.id, p.name)
			return
		}
		p.instances[inst.id] = inst
		g := p.cur
		p.mu.Unlock()
		if g == nil {
			return // opened when a generation comes up
		}
		octx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout.Duration)
		defer cancel()
		if err = p.bindInstance(octx, g, inst, true); err != nil {
			p.mu.Lock()
			delete(p.instances, inst.id)
			p.mu.Unlock()
		}
	})
	if derr != nil {
		return derr
	}
	return err
}

// detach stops inst on the serving generation and forgets it.
func (p *Plugin) detach(ctx context.Context, inst *instance) error {
	var err error
	derr := p.do(ctx, func() {
		p.mu.Lock()
		delete(p.instances, inst.id)
		p.mu.Unlock()
		b := inst.bind
		if b == nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, p.sup.opts.DrainTimeout.Duration)
		defer cancel()
		_, err = b.g.request(sctx, transport.Stop, transport.JSON(transport.StopMsg{Instance: inst.id}))
		b.conn.Close()
		<-b.done
		inst.bind = nil
		if w := inst.sink; w != nil {
			w.pause()
		}
	})
	if derr != nil {
		return derr
	}
	return err
}

// stop ends the plugin: its generation is retired and handles fail.
func (p *Plugin) stop(ctx context.Context) error {
	select {
	case <-p.quit:
	default:
		close(p.quit)
		p.cancel()
	}
	select {
	case <-p.loopDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", p.name, ctx.Err())
	}
}

func (p *Plugin) shutdown() {
	g := p.current()
	p.to(phaseStopped, change{setCur: true})
	p.retireReplicas()
	if g == nil {
		return
	}
	// The last words: a final checkpoint, so a host restart resumes here.
	if ck, err := p.snapshot(context.Background(), g, true, nil); err == nil {
		p.ck = ck
		if err := p.sup.store.save(p.name, ck); err != nil {
			p.logf(g.num, "final checkpoint: %v", err)
		}
	}
	p.unbind(g)
	if g.in != nil && p.sup.isClosing() {
		// The daemon stops, the plugin stays: its instance reconnects to the
		// next daemon rather than exit.
		g.disconnect()
		return
	}
	g.retire(p.sup.opts.StopGrace.Duration)
}

// Status returns a snapshot of the plugin's state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Name: p.name, Driver: p.spec.Driver, Kind: p.spec.Kind, State: stateOf(p.phase), Activity: p.activity,
		Generation: p.served, Version: p.man.Version, Build: p.spec.Build, Restarts: p.restarts,
		LastError: p.lastErr, LastReload: p.lastReload,
		Symbols: Symbols{Sources: nonNil(p.man.Sources), Sinks: nonNil(p.man.Sinks), Functions: nonNil(p.man.Functions), Schemas: p.man.Schemas}}
	if g := p.cur; g != nil {
		st.Generation = g.num
		st.PID = g.pid()
		st.Build = g.spec.Build
		st.Uptime = Duration(time.Since(g.started))
		g.actMu.Lock()
		st.InFlight = g.active
		g.actMu.Unlock()
	}
	st.Instances = p.instancesLocked()
	st.InFlight += replicasInFlight(st.Instances)
	return st
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Logs returns up to n of the plugin's last output lines, oldest first.
func (p *Plugin) Logs(n int) []LogLine { return p.logs.last(n) }

// logf records a note of the supervisor's about this plugin.
func (p *Plugin) logf(gen int, format string, args ...any) {
	p.record(newLine(gen, "plugvisor", fmt.Sprintf(format, args...)))
}

func asCallError(err error, target **CallError) bool { return errors.As(err, target) }
