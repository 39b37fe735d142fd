package supervisor

import "fmt"

// Crash kills the serving generation as if it had crashed (for testkits
// and fault injection): in-flight calls fail, and the plugin restarts with
// backoff from its last checkpoint. It returns the generation it killed,
// 0 when none served.
func (p *Plugin) Crash(reason string) int {
	g := p.current()
	if g == nil {
		return 0
	}
	g.kill(fmt.Errorf("%w: %s", ErrCrashed, reason))
	return g.num
}
