package supervisor

// The stages of a running pipeline (RunPipeline in pipeline.go): read
// from the source, call each function stage, write to the sink, and the
// error policy for items a stage rejects.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/internal/backoff"
)

// read takes items from the source and passes them on in batches. While
// the next stage is busy the pending batch grows (up to BatchItems and
// BatchBytes), so batches are as large as the pipeline's slowest stage
// makes useful and no larger: a lone item goes at once. It stops reading
// at ctx (the pipeline's), hands on what it holds, and closes out.
func (rc *runCtx) read(ctx, work context.Context, sub *Subscription, out chan<- batch) error {
	defer close(out)
	st := rc.stats.source()
	var b batch
	size := 0
	add := func(it Item) {
		if b.items == nil {
			b.items = make([][]byte, 0, 16)
		}
		b.items = append(b.items, it.Data)
		size += len(it.Data)
	}
	sent := func() {
		n := uint64(len(b.items))
		st.in.Add(n)
		st.out.Add(n)
		st.pIn.Add(float64(n))
		st.pOut.Add(float64(n))
		b, size = batch{}, 0
	}
	send := func() (ok bool) {
		select {
		case out <- b:
			sent()
			return true
		case <-work.Done():
			return false
		}
	}
	// A clean drain (pl.Drain) stops the source and reads on to the last
	// item it emitted, so its checkpoint covers nothing left unread.
	drain, draining, seen, last := rc.pl.Drain, false, uint64(0), uint64(0)
	take := func(it Item) {
		add(it)
		seen = it.Seq
	}
	startDrain := func() (err error) {
		drain, draining = nil, true
		if last, err = sub.StopSource(work); err != nil {
			return fmt.Errorf("pipeline %s: draining: %w", rc.pl.Name, err)
		}
		return nil
	}
	for {
		if draining && seen >= last {
			if len(b.items) > 0 {
				send()
			}
			return nil
		}
		switch {
		case len(b.items) == 0:
			select {
			case it := <-sub.C():
				take(it)
			case <-drain:
				if err := startDrain(); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
		case len(b.items) >= rc.pl.BatchItems || size >= rc.pl.BatchBytes:
			if !send() {
				return nil
			}
		default:
			select {
			case out <- b:
				sent()
			case it := <-sub.C():
				take(it)
			case <-drain:
				if err := startDrain(); err != nil {
					return err
				}
			case <-ctx.Done():
				send()
				return nil
			case <-work.Done():
				return nil
			}
		}
	}
}

// function runs stage i: up to Window batches are in flight at once, and
// their results are passed on in the order the batches came in.
func (rc *runCtx) function(work context.Context, i int, p *Plugin, in <-chan batch, out chan<- batch) error {
	defer close(out)
	futures := make(chan chan batch, rc.pl.Window-1)
	go func() {
		defer close(futures)
		for b := range in {
			f := make(chan batch, 1)
			go func() { f <- rc.call(work, i, p, b) }()
			select {
			case futures <- f:
			case <-work.Done():
				return
			}
		}
	}()
	for f := range futures {
		var b batch
		select {
		case b = <-f:
		case <-work.Done():
			return nil
		}
		if b.err != nil {
			return b.err
		}
		// Failed items are dead-lettered or dropped here, in source order.
		for _, r := range b.rejects {
			rc.reject(work, i, r.item, r.err)
		}
		if len(b.items) == 0 {
			continue
		}
		b.rejects = nil
		select {
		case out <- b:
		case <-work.Done():
			return nil
		}
	}
	return nil
}

// call runs one batch through stage i's function and applies the error
// policy to the items it failed. A crashed or unreachable plugin is
// waited for and the batch sent again.
func (rc *runCtx) call(ctx context.Context, i int, p *Plugin, b batch) batch {
	ref := rc.pl.Functions[i]
	st := rc.stats.stages[i+1]
	st.in.Add(uint64(len(b.items)))
	st.pIn.Add(float64(len(b.items)))
	res, err := rc.callAll(ctx, p, ref, b.items)
	if res == nil {
		return batch{err: err}
	}
	// kept[j] is item j's output; a failed item keeps its input and its
	// slot, so a successful retry goes back to its place in the order.
	kept := make([][]byte, len(res))
	var failed []int
	inputs := map[int][]byte{}
	errs := map[int]error{}
	for j, r := range res {
		if r.Err == nil {
			kept[j] = r.Out
			continue
		}
		failed = append(failed, j)
		inputs[j], errs[j] = b.items[j], r.Err
	}
	if len(failed) > 0 && rc.pl.onError() == OnErrorRetry {
		bo := backoff.Backoff{Min: rc.pl.RetryDelay, Max: max(rc.pl.RetryDelay, time.Second)}
		for attempt := 0; attempt < rc.pl.Retries && len(failed) > 0; attempt++ {
			select {
			case <-time.After(bo.Next()):
			case <-ctx.Done():
				return batch{}
			}
			again := make([][]byte, len(failed))
			for k, j := range failed {
				again[k] = inputs[j]
			}
			st.retry.Add(uint64(len(failed)))
			st.pRetry.Add(float64(len(failed)))
			res, err := rc.callAll(ctx, p, ref, again)
			if res == nil {
				return batch{err: err}
			}
			still := failed[:0]
			for k, j := range failed {
				if res[k].Err == nil {
					kept[j] = res[k].Out
					delete(errs, j)
					continue
				}
				errs[j] = res[k].Err
				still = append(still, j)
			}
			failed = still
		}
	}
	var rejects []rejected
	for _, j := range failed {
		rejects = append(rejects, rejected{inputs[j], errs[j]})
	}
	if len(failed) > 0 {
		out := kept[:0]
		for j, d := range kept {
			if _, bad := errs[j]; !bad {
				out = append(out, d)
			}
		}
		kept = out
	}
	st.out.Add(uint64(len(kept)))
	st.pOut.Add(float64(len(kept)))
	return batch{items: kept, rejects: rejects}
}

// callAll calls the batch until it is answered: a crash, a restart or a
// failed plugin is waited out (at-least-once for a batch that died with
// its generation). nil, nil once ctx ends; an error when the function or
// its plugin is gone for good (the run ends; the host retries it).
func (rc *runCtx) callAll(ctx context.Context, p *Plugin, ref Ref, items [][]byte) ([]Result, error) {
	bo := backoff.Backoff{Min: rc.s.opts.BackoffMin.Duration, Max: 5 * time.Second}
	for {
		res, err := p.CallBatch(ctx, ref.Symbol, items)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, ErrUnknownSymbol) || errors.Is(err, ErrStopped) {
			return nil, fmt.Errorf("pipeline %s: %s: %w", rc.pl.Name, ref, err)
		}
		rc.stats.setState("", fmt.Errorf("%s: %w (sending the batch again)", ref, err))
		select {
		case <-time.After(bo.Next()):
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// deadLetter is what the dead-letter sink receives.
type deadLetter struct {
	Pipeline string          `json:"pipeline"`
	Stage    string          `json:"stage"` // plugin.symbol of the function that failed it
	Item     json.RawMessage `json:"item"`  // the item as that function received it
	Error    string          `json:"error"`
}

// reject applies the end of the error policy to one item: to the
// dead-letter sink when there is one, else dropped.
func (rc *runCtx) reject(ctx context.Context, i int, item []byte, cause error) {
	ref, st := rc.pl.Functions[i], rc.stats.stages[i+1]
	rc.stats.setState("", fmt.Errorf("%s: %w", ref, cause))
	if rc.dead != nil {
		raw := json.RawMessage(item)
		if !json.Valid(item) {
			raw, _ = json.Marshal(string(item))
		}
		msg, _ := json.Marshal(deadLetter{Pipeline: rc.pl.Name, Stage: ref.String(), Item: raw, Error: cause.Error()})
		if err := rc.dead.Write(ctx, msg); err == nil {
			st.deadLettered.Add(1)
			st.pDead.Inc()
			return
		}
	}
	st.dropped.Add(1)
	st.pDropped.Inc()
	rc.s.bus.publish(Event{Type: "pipeline.dropped", Plugin: ref.Plugin, Error: cause.Error(), Detail: rc.pl.Name})
}

// write hands batches to the sink, in order.
func (rc *runCtx) write(work context.Context, w *SinkWriter, in <-chan batch) error {
	st := rc.stats.sink()
	for b := range in {
		n := uint64(len(b.items))
		st.in.Add(n)
		st.pIn.Add(float64(n))
		if w != nil {
			for _, d := range b.items {
				if err := w.Write(work, d); err != nil {
					if work.Err() != nil {
						return nil
					}
					return fmt.Errorf("pipeline %s: sink %s: %w", rc.pl.Name, rc.pl.Sink, err)
				}
			}
		}
		st.out.Add(n)
		st.pOut.Add(float64(n))
	}
	return nil
}

// sinkWindow bounds a pipeline sink's unacknowledged items: the sink
// acknowledges once per message it received, so the window must cover
// the items that flow during an acknowledgement's round trip.
const sinkWindow = 4096
