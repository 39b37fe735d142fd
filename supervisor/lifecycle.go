package supervisor

import (
	"fmt"
	"slices"
)

// This file is the plugin lifecycle: every phase a plugin can be in, every
// way between them (next), and the one function that moves it (to). The
// steps that decide which way to go are in restart.go (start, crash,
// backoff, give up) and swap.go (the swap transaction); shutdown is in
// plugin.go. Everything that changes the phase runs on the plugin's loop,
// but for the driver layer's progress (prepare.go), which only records.

// phase is where a plugin is in its lifecycle. The status shows the
// coarser State (stateOf); handles pass only in the phases where
// phase.serves says a generation takes work.
type phase string

const (
	// phaseStarting: a generation is starting and none serves (first start,
	// restart after a crash or a failed start, reload of a failed plugin),
	// or the driver layer is still making the first spec (AddPending).
	// Handles wait.
	phaseStarting phase = "starting"
	// phaseServing: cur serves; handles pass. A swap's first step (start
	// N+1 beside N and check it) runs here, with ActivitySwapping.
	phaseServing phase = "serving"
	// phasePaused: swap step 2 — handles stop sending to N; new work waits.
	phasePaused phase = "paused"
	// phaseDraining: swap steps 3 and 4 — N finishes its work and its state
	// is snapshotted. Handles wait.
	phaseDraining phase = "draining"
	// phaseRestoring: swap step 5 — every instance opens on N+1 with N's
	// state. Handles wait.
	phaseRestoring phase = "restoring"
	// phaseRetiring: swap steps 6 and 7 — N+1 serves, handles pass to it,
	// N is shut down.
	phaseRetiring phase = "retiring"
	// phaseCheckpointing: a periodic or asked-for checkpoint holds new
	// calls and waits for those in flight until the plugin answered the
	// snapshot, so the state saved covers exactly the calls answered.
	// Handles wait.
	phaseCheckpointing phase = "checkpointing"
	// phaseBackoff: nothing serves after a crash or a failed start; a start
	// is due when the backoff delay ends. Handles wait.
	phaseBackoff phase = "backoff"
	// phaseFailed: maxStartFailures starts in a row failed, or the driver
	// layer could not make the first spec (Prepared). Nothing runs until a
	// reload or a new spec; handles fail at once.
	phaseFailed phase = "failed"
	// phaseStopped: the plugin was removed or the supervisor closed. Final;
	// handles fail at once.
	phaseStopped phase = "stopped"
	// phaseWaiting: an external plugin (external.go) with no instance
	// connected, before the first or after one was lost. Nothing is due
	// until an instance connects; handles wait, bounded by their context.
	phaseWaiting phase = "waiting"
)

// next lists every way out of each phase; to logs any other as a bug. A
// phase may also change to itself, to record activity, error or events.
var next = map[phase][]phase{
	// a start serves, fails and backs off, fails for the last time, is
	// cut short by a stop, or (external) waits for an instance
	phaseStarting: {phaseServing, phaseBackoff, phaseFailed, phaseStopped, phaseWaiting},
	// a swap pauses the handles, a checkpoint holds them, the generation
	// crashes, a stop, or (external) its instance is lost
	phaseServing: {phasePaused, phaseCheckpointing, phaseBackoff, phaseStopped, phaseWaiting},
	// (or, the driver became external, the last checkpoint of the local
	// process holds them until an instance connects)
	phaseCheckpointing: {phaseServing, phaseWaiting},
	// every exit from a paused swap either goes on or aborts to N serving
	phasePaused:    {phaseDraining, phaseServing},
	phaseDraining:  {phaseRestoring, phaseServing},
	phaseRestoring: {phaseRetiring, phaseServing},
	phaseRetiring:  {phaseServing},
	// the delay ended (or a reload came): start again; or the driver
	// became external: wait for an instance
	phaseBackoff: {phaseStarting, phaseStopped, phaseWaiting},
	// a reload or a new spec starts again (or waits, as above)
	phaseFailed: {phaseStarting, phaseStopped, phaseWaiting},
	// an instance connected (it starts from the checkpoint), or a stop
	phaseWaiting: {phaseStarting, phaseStopped},
	phaseStopped: nil,
}

// serves says whether handles may send to cur in this phase.
func (ph phase) serves() bool {
	return ph == phaseServing || ph == phaseRetiring
}

// stateOf is the phase as the status and the API show it.
func stateOf(ph phase) State {
	switch ph {
	case phaseStarting:
		return StateStarting
	case phaseBackoff:
		return StateBackoff
	case phaseFailed:
		return StateFailed
	case phaseStopped:
		return StateStopped
	case phaseWaiting:
		return StateWaiting
	}
	return StateRunning
}

// change is what a transition records besides the phase.
type change struct {
	activity Activity    // "" keeps the current activity
	err      error       // recorded as the last error; nil keeps it
	clearErr bool        // forget the last error (a swap succeeded)
	cur      *generation // with setCur, the generation handles reach from now on
	setCur   bool
	reload   *Report // the last successful reload, for the status
	events   []Event // published after the change, in order
}

// to moves the plugin to phase ph: it sets the phase, the activity, the
// last error and the serving generation together under mu, always wakes
// every waiting handle (so none is left waiting on a phase it cannot see
// end), then publishes the events. A move not listed in next is a bug in
// this package; it is logged and made anyway so nothing wedges.
func (p *Plugin) to(ph phase, c change) { p.move(func(phase) phase { return ph }, c) }

// move is to with the phase picked under mu from the current one, for
// changes made off the loop (the driver layer's progress).
func (p *Plugin) move(pick func(from phase) phase, c change) {
	p.mu.Lock()
	from := p.phase
	ph := pick(from)
	if ph != from && !slices.Contains(next[from], ph) {
		p.log.Error().Str("from", string(from)).Str("to", string(ph)).Msg("bug: phase change not in the lifecycle table")
	}
	p.phase = ph
	if c.activity != "" {
		p.activity = c.activity
	}
	if c.err != nil {
		p.lastErr = c.err.Error()
	}
	if c.clearErr {
		p.lastErr = ""
	}
	if c.reload != nil {
		p.lastReload = c.reload
	}
	if c.setCur {
		p.cur = c.cur
		if c.cur != nil {
			p.man, p.served = c.cur.man, c.cur.num
		}
	}
	p.wake.Fire()
	hook := p.sup.onPhase
	p.mu.Unlock()
	p.metrics.setState(p.name, stateOf(ph))
	if hook != nil {
		hook(p, from, ph)
	}
	for _, e := range c.events {
		e.Plugin = p.name
		p.sup.bus.publish(e)
	}
}

// phaseNow is the current phase.
func (p *Plugin) phaseNow() phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase
}

// gateLocked says whether a handle may use the serving generation now:
// g and nil, or an error that ends the wait, or neither (wait for the
// next transition); mu held.
func (p *Plugin) gateLocked() (*generation, error) {
	switch p.phase {
	case phaseStopped:
		return nil, fmt.Errorf("%w: %s", ErrStopped, p.name)
	case phaseFailed:
		return nil, fmt.Errorf("%w: %s is failed: %s", ErrNotRunning, p.name, p.lastErr)
	}
	if g := p.cur; g != nil && p.phase.serves() && !g.isDead() {
		return g, nil
	}
	return nil, nil
}
