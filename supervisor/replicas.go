package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/plugvisor/plugvisor/internal/backoff"
	"github.com/plugvisor/plugvisor/transport"
)

// This file is replicas (Spec.Replicas > 1): N generations of one plugin
// serve at once. cur stays the primary: it alone runs the sources and
// sinks, owns the state (checkpoints, the swap transaction) and moves
// through the phases of lifecycle.go. The other N−1 generations, the
// secondaries, serve function calls only, each in a slot of its own:
//
//   - acquire (pick) takes the serving generation with the fewest calls in
//     flight, round-robin among ties. A secondary serves whatever the
//     primary's phase (but stopped), so while the primary is paused,
//     draining, restoring, checkpointing or restarting, calls go to the
//     secondaries and callers see no pause.
//   - A reload swaps the primary with the usual transaction (refused before
//     any pause if the new generation cannot take over), then rolls the
//     secondaries one at a time (rollReplicas).
//   - A crashed secondary restarts after its own backoff while the others
//     serve; a crashed primary restarts as without replicas, while the
//     secondaries go on serving functions.
//
// Function state would split between replicas, so with N > 1 the SDKs
// fail any function call that writes it (transport.CodeReplicatedState);
// a secondary opens with the function scopes of the last checkpoint,
// which then never change. Everything here runs on the plugin's loop but
// pick and the status, which read the slots under mu.

// replicaSet is a replicated plugin's secondaries.
type replicaSet struct {
	slots []*replicaSlot // the slice and each slot's g are guarded by mu
	next  int            // mu: where pick starts, so ties go round-robin
	// maxPause is the longest any call waited for a serving generation
	// (ns): what replicas are for keeping at 0 through reloads.
	maxPause atomic.Int64
	// joining (loop) says the instance handshaking now joins as a
	// secondary: its instance.connected event says role replica.
	joining bool
}

// notePause records how long a call waited in acquire, if it had to.
func (r *replicaSet) notePause(since *time.Time) {
	if since.IsZero() {
		return
	}
	d := int64(time.Since(*since))
	for {
		old := r.maxPause.Load()
		if d <= old || r.maxPause.CompareAndSwap(old, d) {
			return
		}
	}
}

// replicaSlot is one secondary.
type replicaSlot struct {
	g *generation // serving; nil while it (re)starts. Guarded by mu.
	// Owned by the loop.
	failures int  // failed starts and quick crashes in a row: its backoff
	pending  bool // a restart is scheduled
	gaveUp   bool // maxStartFailures starts in a row failed: left empty until a reload
}

// replicasOf is how many generations serve a spec: 1 unless Replicas says more.
func replicasOf(s Spec) int { return max(1, s.Replicas) }

// pickLocked is gateLocked widened to the secondaries: the serving
// generation with the fewest calls in flight; mu held.
func (p *Plugin) pickLocked() (*generation, error) {
	g, err := p.gateLocked()
	slots := p.reps.slots
	if len(slots) == 0 || p.phase == phaseStopped {
		return g, err
	}
	// candidate i: 0 the primary (if its phase lets it serve), i the secondary of slot i-1
	n := len(slots) + 1
	start := p.reps.next % n
	p.reps.next++
	var best *generation
	bestLoad, bestLeaving := 0, false
	for k := range n {
		i := (start + k) % n
		c := g
		if i > 0 {
			c = slots[i-1].g
			if c == nil || c.isDead() {
				continue
			}
		}
		if c == nil {
			continue
		}
		// A leaving secondary (leaving.go) takes calls only when no other
		// instance can: its orchestrator is about to end it.
		l, leaving := c.inFlight(), i > 0 && c.leaving.Load()
		if best == nil || bestLeaving && !leaving || bestLeaving == leaving && l < bestLoad {
			best, bestLoad, bestLeaving = c, l, leaving
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, err
}

// inFlight counts the calls in flight through handles.
func (g *generation) inFlight() int {
	g.actMu.Lock()
	defer g.actMu.Unlock()
	return g.active
}

// bringUpAll starts the primary (bringUp) and fills every empty slot.
func (p *Plugin) bringUpAll(ctx context.Context) {
	_ = p.bringUp(ctx) // it reports and schedules its own retry
	p.ensureReplicas(false)
}

// ensureReplicas makes the slots match the spec: surplus secondaries are
// retired, missing ones started. With again, slots that gave up (or wait
// for a restart) start now too.
func (p *Plugin) ensureReplicas(again bool) {
	p.mu.Lock()
	want := p.slotsWantedLocked()
	hasSpec, external := p.hasSpec, p.spec.Kind == KindExternal
	var surplus []*replicaSlot
	if len(p.reps.slots) > want {
		surplus = slices.Clone(p.reps.slots[want:])
		p.reps.slots = slices.Clone(p.reps.slots[:want])
		p.wake.Fire()
	}
	for len(p.reps.slots) < want {
		p.reps.slots = append(p.reps.slots, &replicaSlot{})
	}
	slots := slices.Clone(p.reps.slots)
	p.mu.Unlock()
	for _, s := range surplus {
		p.retireReplica(s)
	}
	if !hasSpec || external {
		return // an external plugin's slots are filled by instances connecting (extreplicas.go)
	}
	for _, s := range slots {
		if p.replicaOf(s) != nil || (!again && (s.pending || s.gaveUp)) {
			continue
		}
		if again {
			s.failures, s.gaveUp = 0, false
		}
		_ = p.startReplica(s)
	}
}

// replicaOf is the generation serving in slot s, or nil.
func (p *Plugin) replicaOf(s *replicaSlot) *generation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.g
}

// startReplica starts a secondary for slot s from the current spec and
// puts it in service; a failed start schedules a retry after the slot's
// backoff, up to maxStartFailures in a row.
func (p *Plugin) startReplica(s *replicaSlot) error {
	p.mu.Lock()
	spec := p.spec
	p.mu.Unlock()
	num := p.nextGen()
	g, err := p.startSecondary(p.ctx, spec, num, nil)
	if err != nil {
		p.replicaFailed(s, num, fmt.Errorf("replica start: %w", err))
		return err
	}
	s.pending = false
	p.addReplica(s, g)
	p.logf(num, "replica serving (pid %d)", g.pid())
	return nil
}

// startSecondary starts generation num as a secondary: a process (in
// nil) or the connected instance in, with only its call channel open and
// the function state of the last checkpoint restored. Nothing of it is
// left running on error.
func (p *Plugin) startSecondary(ctx context.Context, spec Spec, num int, in *transport.Incoming) (*generation, error) {
	g, err := p.startGenerationOn(ctx, spec, num, in)
	if err != nil {
		return nil, err
	}
	if err := p.restoreState(ctx, g, functionState(p.ck)); err != nil {
		g.abandon(err)
		return nil, err
	}
	return g, nil
}

// functionState is ck without the scopes of source and sink instances,
// which only the primary runs.
func functionState(ck *checkpoint) *checkpoint {
	if ck == nil {
		return nil
	}
	out := &checkpoint{meta: ck.meta, at: ck.at, scopes: transport.Scopes{}}
	for name, kv := range ck.scopes {
		if !strings.HasPrefix(name, transport.KindSource+"/") && !strings.HasPrefix(name, transport.KindSink+"/") {
			out.scopes[name] = kv
		}
	}
	return out
}

// addReplica puts generation g in service in slot s, which is empty, and
// watches it for a crash. Any started generation fits (an external
// instance as well as a process).
func (p *Plugin) addReplica(s *replicaSlot, g *generation) {
	p.replaceReplica(s, g)
}

// replaceReplica puts ng in service in slot s and takes the generation it
// replaces out in the same step, so the slot never stops serving; the old
// one then finishes the calls it has and is retired. Loop only.
func (p *Plugin) replaceReplica(s *replicaSlot, ng *generation) {
	p.mu.Lock()
	old := s.g
	s.g = ng
	p.wake.Fire()
	p.mu.Unlock()
	go p.watchReplica(s, ng)
	if old != nil {
		p.drainAndRetire(old)
	}
}

// retireReplica takes slot s's generation out of service and retires it.
func (p *Plugin) retireReplica(s *replicaSlot) {
	p.mu.Lock()
	old := s.g
	s.g = nil
	p.wake.Fire()
	p.mu.Unlock()
	if old != nil {
		p.drainAndRetire(old)
	}
}

// drainAndRetire waits (up to drain_timeout) for the calls a secondary out
// of service still has, then retires it.
func (p *Plugin) drainAndRetire(g *generation) {
	ctx, cancel := context.WithTimeout(p.ctx, p.sup.opts.DrainTimeout.Duration)
	n, err := g.waitIdle(ctx)
	cancel()
	if err != nil && !g.isDead() {
		p.logf(g.num, "replica retired with calls in flight (%d): %v", n, err)
	}
	if g.in != nil && p.sup.isClosing() {
		g.disconnect() // the daemon stops: the instance reconnects to the next one
		return
	}
	g.retire(p.sup.opts.StopGrace.Duration)
}

// watchReplica reports g's end to the loop. A generation replaced or
// retired meanwhile is no longer in its slot, and replicaDied ignores it.
func (p *Plugin) watchReplica(s *replicaSlot, g *generation) {
	select {
	case <-g.dead:
	case <-p.ctx.Done():
		return
	}
	_ = p.do(p.ctx, func() { p.replicaDied(s, g) })
}

// replicaDied handles the unplanned end of a secondary: out of service at
// once (pick already skips a dead one), restarted after the slot's backoff.
func (p *Plugin) replicaDied(s *replicaSlot, g *generation) {
	p.mu.Lock()
	if s.g != g {
		p.mu.Unlock()
		return
	}
	s.g = nil
	p.wake.Fire()
	p.mu.Unlock()
	if p.isExternal() {
		p.replicaLost(g) // no restart: the next instance to connect fills the slot
		return
	}
	g.retire(0)
	if time.Since(g.started) > healthyAfter {
		s.failures = 0
	}
	p.replicaFailed(s, g.num, fmt.Errorf("replica crashed: %w", g.reason()))
}

// replicaFailed records a secondary's crash or failed start and schedules
// its restart, or gives the slot up after maxStartFailures in a row.
func (p *Plugin) replicaFailed(s *replicaSlot, num int, err error) {
	s.failures++
	if s.failures >= maxStartFailures {
		s.pending, s.gaveUp = false, true
		err = fmt.Errorf("%w; gave up after %d in a row (a reload tries again)", err, s.failures)
		p.logf(num, "%v", err)
		p.to(p.phaseNow(), change{err: err})
		return
	}
	delay := backoff.Delay(p.sup.opts.BackoffMin.Duration, p.sup.opts.BackoffMax.Duration, s.failures)
	p.logf(num, "%v; restarting it in %s", err, delay)
	p.to(p.phaseNow(), change{err: err})
	s.pending = true
	go func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return
		}
		_ = p.do(p.ctx, func() { p.restartReplica(s) })
	}()
}

// restartReplica is a slot's scheduled restart, unless the slot was
// dropped or filled meanwhile (a reload).
func (p *Plugin) restartReplica(s *replicaSlot) {
	p.mu.Lock()
	live := slices.Contains(p.reps.slots, s) && s.g == nil
	p.mu.Unlock()
	if !live || !s.pending {
		return
	}
	_ = p.startReplica(s)
}

// rollReplicas ends a reload whose primary now serves the new spec: each
// secondary in turn is replaced by a new one (start it → in service → the
// old out of service → its calls finish → retired), then the count is
// made to match the spec. A secondary whose replacement does not start
// serves on; the report says so. Calls never pause: every step leaves at
// least the other generations serving.
func (p *Plugin) rollReplicas(rep *Report) {
	if p.isExternal() {
		// A handover of the primary: the secondaries are instances of their
		// own, which the orchestrator rolls; they serve on.
		p.ensureReplicas(false)
		return
	}
	p.mu.Lock()
	want := replicasOf(p.spec) - 1
	spec := p.spec
	slots := slices.Clone(p.reps.slots)
	p.mu.Unlock()
	for i, s := range slots {
		if i >= want {
			break // surplus: retired by ensureReplicas below
		}
		old := p.replicaOf(s)
		if old == nil {
			continue // restarting: ensureReplicas starts it with the new spec
		}
		num := p.nextGen()
		ng, err := p.startSecondary(p.ctx, spec, num, nil)
		if err != nil {
			rep.ReplicaErrors = append(rep.ReplicaErrors, fmt.Sprintf("replica generation %d serves on: its replacement (generation %d) did not start: %v", old.num, num, err))
			p.logf(num, "replica replacement failed, generation %d serves on: %v", old.num, err)
			continue
		}
		s.failures, s.gaveUp, s.pending = 0, false, false
		p.replaceReplica(s, ng)
		rep.Replicas++
		p.logf(num, "replica %d → %d (pid %d)", old.num, num, ng.pid())
	}
	p.ensureReplicas(true)
}

// retireReplicas ends every secondary (the plugin stops).
func (p *Plugin) retireReplicas() {
	p.mu.Lock()
	slots := p.reps.slots
	p.reps.slots = nil
	p.mu.Unlock()
	for _, s := range slots {
		p.retireReplica(s)
	}
}

// replicasInFlight sums the calls in flight on the secondaries listed.
func replicasInFlight(list []InstanceStatus) int {
	n := 0
	for _, in := range list {
		if in.Role == RoleReplica {
			n += in.InFlight
		}
	}
	return n
}

// replicatedStateWrite records that a function call failed because it
// wrote state on a replicated plugin: the SDK phrased why (replicas and
// state, and the fix); last_error and the log say it, once per message.
func (p *Plugin) replicatedStateWrite(gen int, msg string) {
	p.mu.Lock()
	same := p.lastErr == msg
	p.lastErr = msg
	p.mu.Unlock()
	if !same {
		p.logf(gen, "%s", msg)
	}
}
