package supervisor

import "time"

// InstanceStatus is one generation serving a plugin, an element of
// Status.Instances: the primary (sources, sinks, state) and, with
// replicas, the secondaries that serve functions beside it.
type InstanceStatus struct {
	Address        string    `json:"address"`             // "pid:N" for a local process, "inproc" for a builtin in the host, the peer's address for an external instance
	CertName       string    `json:"cert_name,omitempty"` // external instances: the client certificate's name
	Generation     int       `json:"generation"`
	Version        string    `json:"version"`
	ConnectedSince time.Time `json:"connected_since"` // when it started serving
	InFlight       int       `json:"in_flight"`       // calls awaiting its answer
	Role           string    `json:"role"`            // RolePrimary or RoleReplica
}

// Roles of an instance.
const (
	RolePrimary = "primary" // runs the sources and sinks and holds the state
	RoleReplica = "replica" // serves function calls only
)
