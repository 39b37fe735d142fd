package supervisor

import (
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// Instance roles in Status.Instances.
const (
	RolePrimary = "primary" // serves sources, sinks, state and functions
	RoleReplica = "replica" // serves functions beside the primary
)

// InstanceStatus is one serving generation in Status.Instances and the
// Detail of instance events.
type InstanceStatus struct {
	Address        string    `json:"address,omitempty"` // where an external instance connected from
	Cert           string    `json:"cert,omitempty"`    // its client certificate's name
	PID            int       `json:"pid,omitempty"`     // a local process
	Generation     int       `json:"generation"`
	Version        string    `json:"version,omitempty"`
	ConnectedSince time.Time `json:"connected_since"` // connected (external) or started (local)
	InFlight       int       `json:"in_flight"`
	Role           string    `json:"role,omitempty"`
	Leaving        bool      `json:"leaving,omitempty"` // an external instance that got SIGTERM (leaving.go)
}

// instanceStatus describes g; a nil g describes nothing.
func (g *generation) instanceStatus() InstanceStatus {
	if g == nil {
		return InstanceStatus{}
	}
	st := InstanceStatus{PID: g.pid(), Generation: g.num, Version: g.man.Version, ConnectedSince: g.started, Role: RolePrimary}
	if g.in != nil {
		st.Address, st.Cert, st.ConnectedSince = g.in.Remote, g.in.Cert, g.in.At
	}
	st.Leaving = g.leaving.Load()
	g.actMu.Lock()
	st.InFlight = g.active
	g.actMu.Unlock()
	return st
}

// incomingStatus describes an instance that has no serving generation
// (refused, or still starting as generation num).
func incomingStatus(in *transport.Incoming, num int) InstanceStatus {
	return InstanceStatus{Address: in.Remote, Cert: in.Cert, Generation: num, ConnectedSince: in.At}
}

// instancesLocked lists the serving generations: the primary, then the
// secondaries of a replicated plugin (replicas.go); mu held.
func (p *Plugin) instancesLocked() []InstanceStatus {
	out := []InstanceStatus{}
	if p.cur != nil {
		out = append(out, p.cur.instanceStatus())
	}
	for _, s := range p.reps.slots {
		if s.g != nil {
			in := s.g.instanceStatus()
			in.Role = RoleReplica
			out = append(out, in)
		}
	}
	return out
}
