package supervisor

import (
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// Replicas of an external plugin (docs/DESIGN.md "External instances",
// "Replicas"): plugvisor starts none of its instances, so the slots of
// replicas.go are filled by instances that connect. The first to connect
// is the primary; the next ones join as secondaries until N serve; one
// connecting while N serve is a rolling update and takes over from the
// oldest leaving instance, else the oldest serving one — the primary by
// the swap transaction, a secondary in its slot. A lost secondary empties
// its slot for the next instance; a lost primary leaves the secondaries
// serving functions until an instance connects and becomes the primary.
// Everything here runs on the plugin's loop.

// slotsWantedLocked is how many secondaries the plugin should have. For
// an external plugin it is the count the primary was welcomed with: a new
// replicas setting applies from the next primary on (a config change
// applies to the next instance), so every instance serving beside others
// was told replicas > 1 and refuses function state writes. mu held.
func (p *Plugin) slotsWantedLocked() int {
	if p.spec.Kind == KindExternal && p.cur != nil && p.cur.in != nil {
		return replicasOf(p.cur.spec) - 1
	}
	return replicasOf(p.spec) - 1
}

// connectMore places an instance that connected while cur serves: in an
// empty slot, else it takes over from the oldest leaving instance (one
// that said it got SIGTERM: leaving.go), else from the oldest serving one.
func (p *Plugin) connectMore(cur *generation, in *transport.Incoming) {
	p.ensureReplicas(false) // the slots as the primary's replicas say (starts nothing for an external plugin)
	// A secondary may have ended with its end still queued behind this
	// arrival: handle it now, as its watcher would (instance.lost), so the
	// slot is empty and not taken over silently.
	p.mu.Lock()
	ended := map[*replicaSlot]*generation{}
	for _, s := range p.reps.slots {
		if s.g != nil && s.g.isDead() {
			ended[s] = s.g
		}
	}
	p.mu.Unlock()
	for s, g := range ended {
		p.replicaDied(s, g)
	}
	p.mu.Lock()
	var empty, oldestSlot *replicaSlot
	oldest := cur
	leaving, leavingSlot := cur, (*replicaSlot)(nil)
	if !cur.leaving.Load() {
		leaving = nil
	}
	for _, s := range p.reps.slots {
		switch {
		case s.g == nil || s.g.isDead():
			if empty == nil {
				empty = s
			}
			continue
		case s.g.num < oldest.num:
			oldest, oldestSlot = s.g, s
		}
		if s.g.leaving.Load() && (leaving == nil || s.g.num < leaving.num) {
			leaving, leavingSlot = s.g, s
		}
	}
	p.mu.Unlock()
	if leaving != nil {
		oldest, oldestSlot = leaving, leavingSlot
	}
	switch {
	case empty != nil:
		p.joinReplica(empty, in)
	case oldestSlot == nil:
		p.handover(cur, in) // the primary is the oldest: the swap, with the state
	default:
		p.handoverReplica(oldestSlot, oldest, in)
	}
}

// startReplicaOn starts generation num on the connected instance in as a
// secondary (instance.connected says role replica).
func (p *Plugin) startReplicaOn(in *transport.Incoming) (int, *generation, error) {
	p.mu.Lock()
	spec := p.spec
	if p.cur != nil && p.cur.in != nil {
		spec = p.cur.spec // as the primary was welcomed (slotsWantedLocked)
	}
	p.mu.Unlock()
	num := p.nextGen()
	p.reps.joining = true
	defer func() { p.reps.joining = false }()
	g, err := p.startSecondary(p.ctx, spec, num, in)
	return num, g, err
}

// joinReplica puts the instance in in the empty slot s.
func (p *Plugin) joinReplica(s *replicaSlot, in *transport.Incoming) {
	num, g, err := p.startReplicaOn(in)
	if err != nil {
		p.refuseReplica(in, num, nil, fmt.Errorf("replica instance could not start: %w", err))
		return
	}
	p.addReplica(s, g)
	p.logf(num, "replica instance from %s (%s) serving", in.Remote, in.Cert)
}

// handoverReplica replaces the secondary old in slot s by the instance in:
// in serves first, then old finishes its calls and is told to exit. A new
// instance lacking a function in use is refused (told to exit) and old
// serves on.
func (p *Plugin) handoverReplica(s *replicaSlot, old *generation, in *transport.Incoming) {
	rep := &Report{At: time.Now(), From: old.num}
	from := old.instanceStatus()
	from.Role = RoleReplica
	num, ng, err := p.startReplicaOn(in)
	if err == nil {
		if err = p.missingFunctions(old, ng); err != nil {
			ng.abandon(err)
		}
	}
	if err != nil {
		p.refuseReplica(in, num, rep, fmt.Errorf("%w: %w; replica generation %d serves on", ErrSwapFailed, err, old.num))
		return
	}
	p.replaceReplica(s, ng)
	to := ng.instanceStatus()
	to.Role = RoleReplica
	rep.Generation, rep.Replicas, rep.SwapMS = ng.num, 1, ms(time.Since(rep.At))
	p.logf(ng.num, "replica handed over %d → %d in %.1f ms (instance %s → %s)", old.num, ng.num, rep.SwapMS, from.Address, to.Address)
	p.sup.bus.publish(Event{Type: EventInstanceHandedOver, Plugin: p.name, Generation: ng.num, Report: rep,
		Detail: Handover{From: from, To: to}})
}

// refuseReplica records an instance that could not serve as a secondary
// (it was told to exit); what served serves on.
func (p *Plugin) refuseReplica(in *transport.Incoming, num int, rep *Report, err error) {
	p.logf(num, "instance from %s (%s): %v", in.Remote, in.Cert, err)
	if rep != nil {
		rep.Error = err.Error()
	}
	p.to(p.phaseNow(), change{err: err, events: []Event{{Type: EventInstanceRefused, Generation: num,
		Error: err.Error(), Report: rep, Detail: incomingStatus(in, num)}}})
}

// replicaLost handles the end of an external secondary, out of its slot
// already: nothing restarts it (the orchestrator does); the slot waits
// for the next instance while the others serve.
func (p *Plugin) replicaLost(g *generation) {
	st := g.instanceStatus()
	st.Role = RoleReplica
	g.retire(0)
	reason := g.reason()
	p.logf(g.num, "replica instance at %s lost: %v; its slot waits for an instance to connect to %s", st.Address, reason, p.sup.ListenAddr())
	p.to(p.phaseNow(), change{err: reason, events: []Event{
		{Type: EventInstanceLost, Generation: g.num, Error: reason.Error(), Detail: st}}})
}
