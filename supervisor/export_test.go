package supervisor

import (
	"context"
	"time"
)

// SetTieToHost lets a test host start plugins without the parent-death
// signal, so the SDK's watchdog (all macOS has) is what ends them.
func SetTieToHost(tie bool) { tieToHost = tie }

// MaxCallPause is the longest any call of p waited for a serving
// generation (0: no call ever waited).
func (p *Plugin) MaxCallPause() time.Duration { return time.Duration(p.reps.maxPause.Load()) }

// ResetMaxCallPause forgets the waits so far (a benchmark's start-up).
func (p *Plugin) ResetMaxCallPause() { p.reps.maxPause.Store(0) }

// HoldLoop blocks p's loop until release is called, so a test can line
// up what arrives meanwhile.
func (p *Plugin) HoldLoop() (release func()) {
	held, rel := make(chan struct{}), make(chan struct{})
	go func() { _ = p.do(context.Background(), func() { close(held); <-rel }) }()
	<-held
	return func() { close(rel) }
}

// DeadReplicas counts secondaries that ended but are still in their slot
// (the loop has not handled their end yet).
func (p *Plugin) DeadReplicas() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.reps.slots {
		if s.g != nil && s.g.isDead() {
			n++
		}
	}
	return n
}

// Arriving counts the instances of plugin name waiting for its loop.
func (s *Supervisor) Arriving(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arriving[name]
}
