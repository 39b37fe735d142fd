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
	if err := p.reloadExternal(ctx, o); err != nil {
		return nil, err
	}
	var rep *Report
	var err error
	if derr := p.do(ctx, func() { rep, err = p.swap(o) }); derr != nil {
		return nil, derr
	}
	return rep, err
}

// swapTx is one swap, a transaction with one method per step of "The
// swap" in docs/DESIGN.md. Steps 1-5 may fail; every failure goes through
// abort, the only way back. Steps 6-7 (commit) cannot fail.
type swapTx struct {
	p          *Plugin
	o          ReloadOptions
	ctx        context.Context
	rep        *Report
	start      time.Time
	spec       Spec
	num        int                 // the generation this swap starts
	in         *transport.Incoming // N+1 is this connected instance (a handover, external.go), not a new process
	old, ng    *generation         // N and N+1
	pauseStart time.Time           // zero until step 2
	insts      []*instance
	oldBinds   map[*instance]*binding // where each instance was on N
	drainErr   error                  // a drain that did not finish, when the swap goes on anyway
	ck         *checkpoint            // the state N+1 opens with
}

// swap runs on the loop. With nothing serving a reload is a restart.
func (p *Plugin) swap(o ReloadOptions) (*Report, error) {
	if o.Spec != nil && o.Spec.Kind == KindExternal {
		return p.becomeExternal(*o.Spec) // a local plugin's driver became "external"
	}
	old := p.current()
	if old == nil {
		return p.restartByReload(o)
	}
	return p.swapTo(old, o, nil)
}

// swapTo runs the swap transaction from old to a new generation: a new
// process of the spec, or the connected instance in.
func (p *Plugin) swapTo(old *generation, o ReloadOptions, in *transport.Incoming) (*Report, error) {
	p.mu.Lock()
	spec := p.spec
	p.mu.Unlock()
	if o.Spec != nil {
		spec = *o.Spec
	}
	tx := &swapTx{p: p, o: o, ctx: p.ctx, start: time.Now(), spec: spec, old: old, num: p.nextGen(), in: in}
	tx.rep = &Report{Forced: o.Force, BuildMS: o.BuildMS, At: tx.start, From: old.num}
	p.to(phaseServing, change{activity: ActivitySwapping,
		events: []Event{{Type: EventSwapStarted, Generation: tx.num}}})
	for _, step := range []func() error{tx.startNext, tx.pause, tx.drain, tx.snapshot, tx.restore} {
		if err := step(); err != nil {
			return tx.abort(err)
		}
	}
	tx.resume()
	tx.retire()
	p.rollReplicas(tx.rep)
	return p.finishReload(tx.rep, phaseServing, tx.num, nil)
}

// startNext is step 1: start N+1 beside N and check it can take over.
// Nothing has paused.
func (tx *swapTx) startNext() error {
	p, t := tx.p, time.Now()
	ng, err := p.startGenerationOn(tx.ctx, tx.spec, tx.num, tx.in)
	tx.rep.Phases.StartMS = ms(time.Since(t))
	if err != nil {
		return err
	}
	tx.ng = ng
	if err := p.compatible(tx.old, ng); err != nil {
		return err
	}
	if tx.rep.SchemaChanges, err = p.schemaChanges(tx.old, ng); err != nil && !tx.o.Force {
		return err
	}
	return nil
}

// pause is step 2: handles stop sending to N; new work waits at the host.
func (tx *swapTx) pause() error {
	p := tx.p
	tx.pauseStart = time.Now()
	p.to(phasePaused, change{})
	tx.insts = p.sortedInstances()
	tx.oldBinds = map[*instance]*binding{}
	for _, inst := range tx.insts {
		tx.oldBinds[inst] = inst.bind
		if inst.sink != nil {
			inst.sink.pause()
		}
	}
	return nil
}

// drain is step 3: N finishes its work. If N dies meanwhile, or the drain
// times out on a forced reload (N is killed), the swap goes on from the
// last checkpoint.
func (tx *swapTx) drain() error {
	p, old, t := tx.p, tx.old, time.Now()
	p.to(phaseDraining, change{})
	drained, err := p.drain(tx.ctx, old, tx.insts)
	tx.rep.Drained = drained
	tx.rep.Phases.DrainMS = ms(time.Since(t))
	switch {
	case err == nil:
	case old.isDead():
		tx.drainErr = err
	case tx.o.Force:
		old.forced.Store(true)
		old.kill(fmt.Errorf("forced swap: %w", err))
		<-old.dead
		tx.drainErr = err
	default:
		return err
	}
	return nil
}

// snapshot is step 4: N's state after its work, or the last checkpoint
// when N could not give it (said in the report: at-least-once).
func (tx *swapTx) snapshot() error {
	p, old := tx.p, tx.old
	if tx.drainErr == nil {
		t := time.Now()
		ck, err := p.snapshot(tx.ctx, old, false, nil)
		tx.rep.Phases.SnapshotMS = ms(time.Since(t))
		if err != nil && !old.isDead() {
			return err
		}
		tx.ck = ck
	}
	if tx.ck == nil {
		tx.ck = p.ck
		tx.rep.AtLeastOnce = fmt.Sprintf("generation %d did not drain (%v): its unanswered calls were re-sent or failed, source items after the last checkpoint may repeat, unacknowledged sink items were re-sent", old.num, tx.drainErr)
	} else {
		p.ck = tx.ck // written to disk once the handles resume: fsync stays out of the pause
	}
	if tx.ck != nil {
		tx.rep.StateKeys = tx.ck.scopes.Keys()
	}
	return nil
}

// restore is step 5: open every instance on N+1 with that state.
func (tx *swapTx) restore() error {
	p, t := tx.p, time.Now()
	p.to(phaseRestoring, change{})
	err := p.restoreAndOpen(tx.ctx, tx.ng, tx.ck, false)
	tx.rep.Phases.RestoreMS = ms(time.Since(t))
	return err
}

// resume is step 6: handles point at N+1; queued work goes there in
// order. From here the swap cannot be undone.
func (tx *swapTx) resume() {
	p, t := tx.p, time.Now()
	for _, inst := range tx.insts {
		if inst.sink != nil && inst.bind != nil {
			inst.sink.resume(tx.ctx, inst.bind, true)
		}
	}
	p.serveOn(phaseRetiring, tx.ng, change{})
	tx.rep.PauseMS = ms(time.Since(tx.pauseStart))
	tx.rep.Phases.OpenMS = ms(time.Since(t))
	tx.rep.Generation = tx.ng.num
	if tx.ck != nil && tx.ck == p.ck {
		if err := p.sup.store.save(p.name, tx.ck); err != nil {
			p.logf(tx.num, "saving the checkpoint: %v", err)
		}
	}
}

// retire is step 7: N is shut down while N+1 serves.
func (tx *swapTx) retire() {
	p, t := tx.p, time.Now()
	tx.old.retire(p.sup.opts.StopGrace.Duration)
	tx.rep.Phases.RetireMS = ms(time.Since(t))
	if tx.o.Spec != nil {
		p.mu.Lock()
		p.spec = tx.spec
		p.mu.Unlock()
	}
}

// abort is the one way out of a failed swap: N+1 is ended, N resumes
// untouched with its queued work (or, if N died meanwhile, the plugin
// restarts as after any crash), and the report says why.
func (tx *swapTx) abort(cause error) (*Report, error) {
	p, old := tx.p, tx.old
	if tx.ng != nil {
		tx.ng.abandon(fmt.Errorf("swap rolled back: %w", cause))
	}
	err := fmt.Errorf("%w: %w", ErrSwapFailed, cause)
	switch {
	case tx.pauseStart.IsZero(): // nothing paused: N never stopped serving
	case old.isDead():
		err = fmt.Errorf("%w: %w (and generation %d died while draining; restarting)", ErrSwapFailed, cause, old.num)
	default:
		p.resumeOld(tx.ctx, old, tx.insts, tx.oldBinds)
		tx.rep.PauseMS = ms(time.Since(tx.pauseStart))
		err = fmt.Errorf("%w: %w; generation %d serves on", ErrSwapFailed, cause, old.num)
	}
	rep, err := p.finishReload(tx.rep, phaseServing, tx.num, err)
	if old.isDead() {
		p.crashed()
	}
	return rep, err
}

// finishReload ends a reload (swap or restart) in phase ph: it reports
// the outcome in the status, the metrics, the log and an event.
func (p *Plugin) finishReload(rep *Report, ph phase, num int, err error) (*Report, error) {
	rep.SwapMS = ms(time.Since(rep.At))
	p.metrics.swap(p.name, rep, err)
	if err != nil {
		rep.Error = err.Error()
		p.logf(num, "%v", err) // err says "swap failed: …" itself
		p.to(ph, change{activity: ActivityIdle, err: err,
			events: []Event{{Type: EventSwapFailed, Generation: num, Error: err.Error(), Report: rep}}})
		return rep, err
	}
	p.logf(rep.Generation, "swapped %d → %d in %.1f ms (pause %.2f ms, %d drained, %d state keys)",
		rep.From, rep.Generation, rep.SwapMS, rep.PauseMS, rep.Drained, rep.StateKeys)
	p.to(ph, change{activity: ActivityIdle, clearErr: true, reload: rep,
		events: []Event{{Type: EventSwapFinished, Generation: rep.Generation, Report: rep, BuildMS: rep.BuildMS}}})
	return rep, nil
}

// compatible checks, before anything pauses, that ng can take over from old.
func (p *Plugin) compatible(old, ng *generation) error {
	for _, inst := range p.sortedInstances() {
		if !ng.man.Has(inst.kind, inst.symbol) {
			return fmt.Errorf("%w: %s %s is in use and %s %s does not offer it", ErrUnknownSymbol, inst.kind, inst.symbol, ng.man.Name, ng.man.Version)
		}
	}
	if err := p.missingFunctions(old, ng); err != nil {
		return err
	}
	if old.man.StateVersion != ng.man.StateVersion && !ng.man.Migrate {
		return fmt.Errorf("%w: %s %s has state version %q, the running %s has %q, and it has no Migrate hook",
			ErrStateIncompatible, ng.man.Name, ng.man.Version, ng.man.StateVersion, old.man.Version, old.man.StateVersion)
	}
	return nil
}

// missingFunctions says which functions in use old offers and ng does not.
func (p *Plugin) missingFunctions(old, ng *generation) error {
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
	return nil
}

// drain waits for N's in-flight calls, stops its sources (read to their
// end-of-stream) and gets a barrier acknowledged by its sinks.
func (p *Plugin) drain(ctx context.Context, old *generation, insts []*instance) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.sup.opts.DrainTimeout.Duration)
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
// their queued items. abort's transition then releases the handles.
func (p *Plugin) resumeOld(ctx context.Context, old *generation, insts []*instance, oldBinds map[*instance]*binding) {
	octx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout.Duration)
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
}
