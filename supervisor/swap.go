package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// ReloadOptions says what to swap to.
type ReloadOptions struct {
	Spec    *Spec   // nil: a fresh process of the current spec
	Force   bool    // a drain that times out kills the old generation; its unanswered work goes to the new one
	BuildMS float64 // reported with the swap when a build preceded it
}

// Reload swaps the plugin to a new generation (see "The swap" in
// docs/DESIGN.md) and returns the report. One swap runs at a time per
// plugin; a reload arriving during a swap runs after it. The swap itself is
// bounded by its phase deadlines, not by ctx, which only bounds the wait.
func (p *Plugin) Reload(ctx context.Context, o ReloadOptions) (*Report, error) {
	var rep *Report
	var err error
	if derr := p.do(ctx, func() { rep, err = p.swap(o) }); derr != nil {
		return nil, derr
	}
	return rep, err
}

// swap runs on the loop.
func (p *Plugin) swap(o ReloadOptions) (rep *Report, err error) {
	ctx := p.ctx
	start := time.Now()
	rep = &Report{Forced: o.Force, BuildMS: o.BuildMS, At: start}
	p.mu.Lock()
	spec := p.spec
	if o.Spec != nil {
		spec = *o.Spec
	}
	old := p.cur
	p.mu.Unlock()
	var num int // the generation this swap starts
	if old != nil {
		rep.From = old.num
		num = p.nextGen()
	}

	finish := func(err error) (*Report, error) {
		rep.SwapMS = ms(time.Since(start))
		p.metrics.swap(p.name, rep, err)
		if err != nil {
			rep.Error = err.Error()
			p.SetError(err.Error())
			p.logf(num, "%v", err) // err says "swap failed: …" itself
			p.sup.bus.publish(Event{Type: EventSwapFailed, Plugin: p.name, Generation: num, Error: err.Error(), Report: rep})
			return rep, err
		}
		p.mu.Lock()
		p.lastReload = rep
		p.lastErr = ""
		p.mu.Unlock()
		p.logf(rep.Generation, "swapped %d → %d in %.1f ms (pause %.2f ms, %d drained, %d state keys)",
			rep.From, rep.Generation, rep.SwapMS, rep.PauseMS, rep.Drained, rep.StateKeys)
		p.sup.bus.publish(Event{Type: EventSwapFinished, Plugin: p.name, Generation: rep.Generation, Report: rep, BuildMS: rep.BuildMS})
		return rep, nil
	}
	if old == nil {
		// Nothing serves (crash loop, failed start): a reload is a fresh start
		// from the last checkpoint.
		p.sup.bus.publish(Event{Type: EventSwapStarted, Plugin: p.name})
		p.mu.Lock()
		p.spec = spec
		p.mu.Unlock()
		p.consecutive, p.retry = 0, nil
		err := p.bringUp(ctx, true)
		p.mu.Lock()
		num = p.genNum
		p.mu.Unlock()
		if err != nil {
			return finish(fmt.Errorf("%w: %w", ErrSwapFailed, err))
		}
		rep.Generation = num
		return finish(nil)
	}
	p.sup.bus.publish(Event{Type: EventSwapStarted, Plugin: p.name, Generation: num})

	p.SetActivity(ActivitySwapping)
	defer p.SetActivity(ActivityIdle)

	// 1. Start N+1 beside N and check it can take over — nothing paused yet.
	t := time.Now()
	ng, err := p.startGeneration(ctx, spec, num)
	rep.Phases.StartMS = ms(time.Since(t))
	if err != nil {
		return finish(fmt.Errorf("%w: %w", ErrSwapFailed, err))
	}
	if err := p.compatible(old, ng); err != nil {
		ng.kill(err)
		ng.retire(0)
		return finish(fmt.Errorf("%w: %w", ErrSwapFailed, err))
	}
	if rep.SchemaChanges, err = p.schemaChanges(old, ng); err != nil && !o.Force {
		ng.kill(err)
		ng.retire(0)
		return finish(fmt.Errorf("%w: %w", ErrSwapFailed, err))
	}

	// 2. Pause: handles stop sending to N; new work waits at the host.
	pauseStart := time.Now()
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	insts := p.sortedInstances()
	oldBinds := map[*instance]*binding{}
	for _, inst := range insts {
		oldBinds[inst] = inst.bind
		if inst.sink != nil {
			inst.sink.pause()
		}
	}
	rollback := func(cause error) (*Report, error) {
		ng.kill(fmt.Errorf("swap rolled back: %w", cause))
		ng.retire(0)
		p.resumeOld(ctx, old, insts, oldBinds)
		rep.PauseMS = ms(time.Since(pauseStart))
		return finish(fmt.Errorf("%w: %w; generation %d serves on", ErrSwapFailed, cause, old.num))
	}

	// 3. Drain N.
	t = time.Now()
	ck := (*checkpoint)(nil)
	drained, derr := p.drain(ctx, old, insts)
	rep.Drained = drained
	rep.Phases.DrainMS = ms(time.Since(t))
	switch {
	case derr == nil:
		// 4. Snapshot N.
		t = time.Now()
		ck, err = p.snapshot(ctx, old, false, nil)
		rep.Phases.SnapshotMS = ms(time.Since(t))
		if err != nil && !old.isDead() {
			return rollback(err)
		}
	case old.isDead():
		// N crashed mid-drain: continue from the last checkpoint.
	case o.Force:
		old.forced.Store(true)
		old.kill(fmt.Errorf("forced swap: %w", derr))
		<-old.dead
	default:
		return rollback(derr)
	}
	if ck == nil {
		ck = p.ck
		rep.AtLeastOnce = fmt.Sprintf("generation %d did not drain (%v): its unanswered calls were re-sent or failed, source items after the last checkpoint may repeat, unacknowledged sink items were re-sent", old.num, derr)
	} else {
		p.ck = ck // written to disk once the handles resume: fsync stays out of the pause
	}
	if ck != nil {
		rep.StateKeys = ck.scopes.Keys()
	}

	// 5. Open every instance on N+1 with that state.
	t = time.Now()
	err = p.restoreAndOpen(ctx, ng, ck, false)
	rep.Phases.RestoreMS = ms(time.Since(t))
	if err != nil {
		if old.isDead() {
			ng.kill(err)
			ng.retire(0)
			p.mu.Lock()
			p.paused = false
			p.mu.Unlock()
			return finish(fmt.Errorf("%w: %w (and generation %d died while draining; restarting)", ErrSwapFailed, err, old.num))
		}
		return rollback(err)
	}

	// 6. Resume: handles point at N+1; queued work goes there in order.
	t = time.Now()
	for _, inst := range insts {
		if inst.sink != nil && inst.bind != nil {
			inst.sink.resume(ctx, inst.bind, true)
		}
	}
	p.serve(ng)
	rep.PauseMS = ms(time.Since(pauseStart))
	rep.Phases.OpenMS = ms(time.Since(t))
	rep.Generation = ng.num

	if ck != nil && ck == p.ck {
		if err := p.sup.store.save(p.name, ck); err != nil {
			p.logf(num, "saving the checkpoint: %v", err)
		}
	}

	// 7. Retire N.
	t = time.Now()
	old.retire(p.sup.opts.StopGrace)
	rep.Phases.RetireMS = ms(time.Since(t))
	p.mu.Lock()
	if o.Spec != nil {
		p.spec = spec
	}
	p.mu.Unlock()
	return finish(nil)
}

// compatible checks, before anything pauses, that ng can take over from old.
func (p *Plugin) compatible(old, ng *generation) error {
	for _, inst := range p.sortedInstances() {
		if !ng.man.Has(inst.kind, inst.symbol) {
			return fmt.Errorf("%w: %s %s is in use and %s %s does not offer it", ErrUnknownSymbol, inst.kind, inst.symbol, ng.man.Name, ng.man.Version)
		}
	}
	p.mu.Lock()
	var missing []string
	for fn := range p.fns {
		if old.man.Has(transport.KindFunction, fn) && !ng.man.Has(transport.KindFunction, fn) {
			missing = append(missing, fn)
		}
	}
	p.mu.Unlock()
	if len(missing) > 0 {
		return fmt.Errorf("%w: function %v is in use and %s %s does not offer it", ErrUnknownSymbol, missing, ng.man.Name, ng.man.Version)
	}
	if old.man.StateVersion != ng.man.StateVersion && !ng.man.Migrate {
		return fmt.Errorf("%w: %s %s has state version %q, the running %s has %q, and it has no Migrate hook",
			ErrStateIncompatible, ng.man.Name, ng.man.Version, ng.man.StateVersion, old.man.Version, old.man.StateVersion)
	}
	return nil
}

// drain waits for N's in-flight calls, stops its sources (read to their
// end-of-stream) and gets a barrier acknowledged by its sinks.
func (p *Plugin) drain(ctx context.Context, old *generation, insts []*instance) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.sup.opts.DrainTimeout)
	defer cancel()
	drained, err := old.waitIdle(ctx)
	if err != nil {
		return drained, err
	}
	// Sources stop concurrently: one slow source should not stretch the pause.
	type res struct {
		n   int
		err error
	}
	results := make(chan res, len(insts))
	waiting := 0
	for _, inst := range insts {
		b := inst.bind
		if b == nil || b.g != old {
			continue
		}
		waiting++
		go func() {
			before := b.items.Load()
			var err error
			if inst.kind == transport.KindSource {
				inst.sub.setDraining(true)
				defer inst.sub.setDraining(false)
				if _, err = old.request(ctx, transport.Stop, transport.JSON(transport.StopMsg{Instance: inst.id})); err == nil {
					select {
					case <-b.done: // the reader ends at the end of stream, or when the channel is lost
						select {
						case <-b.eos:
						default:
							err = fmt.Errorf("source %s: channel lost before its end of stream", inst.symbol)
						}
					case <-ctx.Done():
						err = fmt.Errorf("%w: source %s did not reach its end of stream", ErrDrainTimeout, inst.symbol)
					}
				}
				results <- res{int(b.items.Load() - before), err}
				return
			}
			w := inst.sink
			w.mu.Lock()
			sent := w.sent
			w.mu.Unlock()
			acked, _ := w.acked.load()
			if sent > acked {
				err = b.conn.Send(ctx, transport.Frame{Type: transport.Barrier, ID: sent})
				if err == nil {
					err = w.waitAcked(ctx, sent, b)
				}
			}
			results <- res{int(sent - min(acked, sent)), err}
		}()
	}
	var errs []error
	for ; waiting > 0; waiting-- {
		r := <-results
		drained += r.n
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return drained, errors.Join(errs...)
}

// resumeOld puts N back in service after a failed swap: sources stopped
// by the drain are opened again (with the state N still holds), sinks get
// their queued items, handles resume.
func (p *Plugin) resumeOld(ctx context.Context, old *generation, insts []*instance, oldBinds map[*instance]*binding) {
	octx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout)
	defer cancel()
	for _, inst := range insts {
		ob := oldBinds[inst]
		inst.bind = ob
		if ob == nil {
			continue
		}
		if inst.kind == transport.KindSource {
			select {
			case <-ob.eos:
			default:
				continue // never stopped: still streaming from N
			}
			inst.bind = nil
			if err := p.bindInstance(octx, old, inst, true); err != nil {
				p.logf(old.num, "reopening source %s after the failed swap: %v", inst.symbol, err)
				old.kill(fmt.Errorf("%w: could not reopen %s after a failed swap: %w", ErrCrashed, inst.symbol, err))
			}
			continue
		}
		inst.sink.resume(octx, ob, false)
	}
	p.mu.Lock()
	p.paused = false
	p.wakeLocked()
	p.mu.Unlock()
}
