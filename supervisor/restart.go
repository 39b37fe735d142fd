package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/internal/backoff"
	"github.com/plugvisor/plugvisor/transport"
)

// maxStartFailures is how many starts in a row may fail before a plugin is
// marked failed and left alone until a reload or a new build.
const maxStartFailures = 5

// healthyAfter is how long a generation must live for its crash not to
// count towards the crash loop.
const healthyAfter = 10 * time.Second

// bringUp starts a generation from the last checkpoint when none serves:
// starting → serving, or → backoff (a retry is due after the delay), or
// → failed after maxStartFailures in a row. Any start after the first is
// a restart (the event says so).
func (p *Plugin) bringUp(ctx context.Context) error {
	if p.awaitInstance() {
		return nil // an external plugin starts when an instance connects
	}
	restart, num, g, err := p.startFromCheckpoint(ctx, nil)
	if err != nil {
		p.consecutive++
		if restart {
			p.mu.Lock()
			p.restarts++ // a failed restart attempt counts, not only crashes
			p.mu.Unlock()
		}
		if p.consecutive >= maxStartFailures {
			p.logf(num, "giving up after %d failed starts: %v", p.consecutive, err)
			p.to(phaseFailed, change{err: err,
				events: []Event{{Type: EventPluginCrashed, Generation: num, Error: err.Error()}}})
			return err
		}
		delay := p.backoff()
		p.logf(num, "start failed, retrying in %s: %v", delay, err)
		p.to(phaseBackoff, change{err: err})
		p.retry = time.After(delay)
		return err
	}
	ev := Event{Type: EventPluginStarted, Generation: g.num}
	if restart {
		ev.Type = EventPluginRestarted
	}
	p.serveOn(phaseServing, g, change{events: []Event{ev}})
	return nil
}

// startFromCheckpoint starts the next generation of the spec, a process
// or (in not nil) on a connected external instance, and opens every
// instance on it with the last checkpoint: starting → (the caller's
// choice). restart says an earlier start was attempted.
func (p *Plugin) startFromCheckpoint(ctx context.Context, in *transport.Incoming) (restart bool, num int, g *generation, err error) {
	restart = p.attempted
	p.attempted = true
	p.to(phaseStarting, change{})
	p.mu.Lock()
	spec := p.spec
	p.mu.Unlock()
	num = p.nextGen()
	g, err = p.startGenerationOn(ctx, spec, num, in)
	if err == nil {
		if err = p.restoreAndOpen(ctx, g, p.ck, true); err != nil {
			g.abandon(err)
		}
	}
	return restart, num, g, err
}

// serveOn makes g the generation handles reach, in phase ph (serving, or
// retiring while a swap ends), and releases waiting handles.
func (p *Plugin) serveOn(ph phase, g *generation, c change) {
	c.cur, c.setCur = g, true
	p.to(ph, c)
	if p.metrics != nil {
		p.metrics.generation.WithLabelValues(p.name).Set(float64(g.num))
	}
	if g.spec.Started != nil {
		g.spec.Started()
	}
}

// nextGen allocates a generation number. Numbers are never reused, not
// even by failed starts, so logs and events stay unambiguous.
func (p *Plugin) nextGen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.genNum++
	return p.genNum
}

func (p *Plugin) backoff() time.Duration {
	return backoff.Delay(p.sup.opts.BackoffMin.Duration, p.sup.opts.BackoffMax.Duration, p.consecutive)
}

// crashed handles the unplanned end of the serving generation:
// serving → backoff, a start due after the delay.
func (p *Plugin) crashed() {
	if p.lost() {
		return // an external instance: wait for the next (external.go)
	}
	p.mu.Lock()
	g := p.cur
	p.restarts++
	p.mu.Unlock()
	reason := g.reason()
	if time.Since(g.started) > healthyAfter {
		p.consecutive = 0
	}
	p.consecutive++
	p.logf(g.num, "crashed: %v", reason)
	if p.metrics != nil {
		p.metrics.restarts.WithLabelValues(p.name).Inc()
	}
	p.unbind(g)
	g.retire(0)
	delay := p.backoff()
	p.to(phaseBackoff, change{setCur: true, err: reason,
		events: []Event{{Type: EventPluginCrashed, Generation: g.num, Error: reason.Error()}}})
	p.retry = time.After(delay)
}

// restartByReload is a reload while nothing serves (crash loop, failed
// start): a fresh start from the last checkpoint, reported as a swap.
func (p *Plugin) restartByReload(o ReloadOptions) (*Report, error) {
	rep := &Report{Forced: o.Force, BuildMS: o.BuildMS, At: time.Now()}
	p.mu.Lock()
	if o.Spec != nil {
		p.spec, p.hasSpec = *o.Spec, true
	}
	hasSpec := p.hasSpec
	p.mu.Unlock()
	if !hasSpec {
		err := fmt.Errorf("plugin %s has no spec yet (its first build or fetch has not succeeded): nothing to reload", p.name)
		rep.Error = err.Error()
		return rep, err
	}
	p.sup.bus.publish(Event{Type: EventSwapStarted, Plugin: p.name})
	p.consecutive, p.retry = 0, nil
	err := p.bringUp(p.ctx)
	p.mu.Lock()
	num := p.genNum
	p.mu.Unlock()
	if err != nil {
		return p.finishReload(rep, p.phaseNow(), num, fmt.Errorf("%w: %w", ErrSwapFailed, err))
	}
	rep.Generation = num
	p.rollReplicas(rep)
	return p.finishReload(rep, phaseServing, num, nil)
}
