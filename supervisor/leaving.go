package supervisor

import "cmp"

// Leaving instances (docs/DESIGN.md "External instances"): an external
// instance that got SIGTERM serves on until it is retired, and says so
// with a leaving frame (docs/protocol.md §5) to a host whose welcome
// listed the feature. In a Kubernetes rolling update that is the pod
// being deleted: the next instance to connect while N serve takes over
// from it (connectMore) rather than from the oldest, which would retire
// a pod that is not terminating (restarted, one more handover) and leave
// the deleted one to be lost when its grace period ends. A leaving
// secondary also takes no new calls while another instance can serve
// (pickLocked), so none is in flight there when its grace period ends.

// markLeaving records that g's instance is leaving. It runs on g's
// control reader, which must not wait for the loop (the loop may be
// waiting for a reply it reads): the flag is set at once, for
// connectMore and pickLocked; the event and log line follow on the loop,
// after g finished starting. Only the first frame counts.
func (g *generation) markLeaving() {
	if g.leaving.Swap(true) {
		return
	}
	go func() { _ = g.p.do(g.p.ctx, g.announceLeaving) }() // ends with the plugin at the latest
}

// announceLeaving logs and publishes (instance.leaving) that g is
// leaving; on the loop.
func (g *generation) announceLeaving() {
	if g.isDead() {
		return // it ended meanwhile: instance.lost or handed_over said so
	}
	p := g.p
	st := g.instanceStatus()
	p.mu.Lock()
	if p.cur != g {
		st.Role = "" // still starting (a handover target or a joining replica), unless in a slot
	}
	for _, s := range p.reps.slots {
		if s.g == g {
			st.Role = RoleReplica
		}
	}
	p.mu.Unlock()
	drain := ""
	if st.Role == RoleReplica {
		drain = "; it takes no new calls while another instance serves"
	}
	p.logf(g.num, "instance at %s (%s) is leaving (it got SIGTERM): the next instance to connect while all replicas serve takes over from it first%s",
		st.Address, cmp.Or(st.Role, "starting"), drain)
	p.sup.bus.publish(Event{Type: EventInstanceLeaving, Plugin: p.name, Generation: g.num, Detail: st})
}
