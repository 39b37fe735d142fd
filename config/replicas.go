package config

// MaxReplicas bounds replicas = N on a plugin.
const MaxReplicas = 64

// replicas reads a plugin's replicas = N: how many instances serve its
// functions at once (sources and sinks run on one of them).
func (p *parser) replicas(path []string, v any, pl *Plugin) {
	n, ok := v.(int64)
	if !ok {
		p.errorf(path, "plugin %s: want a whole number of instances (1 to %d), got %s — write replicas = 3, or leave it out for one", pl.Name, MaxReplicas, tomlType(v))
		return
	}
	if n < 1 || n > MaxReplicas {
		p.errorf(path, "plugin %s: replicas = %d is out of range — want 1 to %d (1 = no replicas; more instances than that belong in external instances)", pl.Name, n, MaxReplicas)
		return
	}
	pl.Replicas = int(n)
}

// ReplicaCount is how many instances serve the plugin: replicas, 1 when unset.
func (p *Plugin) ReplicaCount() int { return max(1, p.Replicas) }
