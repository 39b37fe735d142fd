package supervisor

import "time"

// SetTieToHost lets a test host start plugins without the parent-death
// signal, so the SDK's watchdog (all macOS has) is what ends them.
func SetTieToHost(tie bool) { tieToHost = tie }

// MaxCallPause is the longest any call of p waited for a serving
// generation (0: no call ever waited).
func (p *Plugin) MaxCallPause() time.Duration { return time.Duration(p.reps.maxPause.Load()) }

// ResetMaxCallPause forgets the waits so far (a benchmark's start-up).
func (p *Plugin) ResetMaxCallPause() { p.reps.maxPause.Store(0) }
