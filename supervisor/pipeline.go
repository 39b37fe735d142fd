package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/internal/backoff"
)

// Ref names a plugin's symbol.
type Ref struct{ Plugin, Symbol string }

func (r Ref) String() string { return r.Plugin + "." + r.Symbol }

// Error policies of a pipeline (Pipeline.OnError).
const (
	OnErrorDrop       = "drop"        // an item its function fails is dropped (logged, counted)
	OnErrorRetry      = "retry"       // it is retried with backoff; then dead-lettered or dropped
	OnErrorDeadLetter = "dead_letter" // it goes to the DeadLetter sink with the stage and the error
)

// Pipeline wires a source through zero or more functions into a sink,
// inside the host.
//
// Items move in batches, and every function stage keeps several batches
// in flight (Window), each one call_batch round trip; the stages run
// concurrently, so a pipeline moves many items per round trip. Output
// order is the source's order whatever the stages' timing: each stage
// hands batches on in the order it took them. The bounds (Window batches
// of at most BatchItems items and BatchBytes bytes per stage) make the
// back-pressure run end to end: a slow sink slows the source, and
// nothing is dropped for lack of room.
type Pipeline struct {
	Name      string
	Source    Ref
	Functions []Ref
	Sink      Ref // zero: items are discarded after the last function

	OnError    string        // drop (default), retry or dead_letter
	DeadLetter Ref           // sink receiving {"pipeline","stage","item","error"}; with retry: where exhausted items go
	Retries    int           // on_error retry: attempts after the first [3]
	RetryDelay time.Duration // first retry's delay, doubling [10ms]
	Window     int           // batches in flight per function stage [4]
	BatchItems int           // items per batch at most [256]
	BatchBytes int           // bytes per batch at most [256 KiB]
	// Drain, when closed, ends the pipeline cleanly: the source is
	// stopped, every item it emitted passes the stages into the sink, the
	// sink is flushed, and RunPipeline returns nil (a clean shutdown).
	Drain <-chan struct{}
}

func (pl Pipeline) onError() string {
	if pl.OnError == "" {
		return OnErrorDrop
	}
	return pl.OnError
}

func (pl *Pipeline) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&pl.Retries, 3)
	def(&pl.Window, 4)
	def(&pl.BatchItems, 256)
	def(&pl.BatchBytes, 256<<10)
	if pl.RetryDelay <= 0 {
		pl.RetryDelay = 10 * time.Millisecond
	}
}

// batch is a run of consecutive source items; items[i] is the current
// data of the item, as the previous stage passed it on.
type batch struct {
	items   [][]byte
	rejects []rejected // items the stage failed, handled in order by its collector
	err     error      // the stage cannot go on (its function is gone): the run ends
}

// rejected is an item a function failed for good (after any retries).
type rejected struct {
	item []byte
	err  error
}

// runCtx is what the stages of one run share.
type runCtx struct {
	s     *Supervisor
	pl    Pipeline
	stats *pipeStats
	dead  *SinkWriter // dead-letter sink, or nil
}

// RunPipeline runs pl until ctx ends. It survives swaps and restarts of
// every plugin involved: the handles it holds stay valid, calls wait,
// sink writes queue. A planned swap of any stage keeps every item exactly
// once and in order; a batch whose function plugin crashed is sent again
// once the plugin is back (at-least-once). An error the function itself
// returns for an item is handled by pl.OnError. When ctx ends, the source
// is read no further and the items in flight are finished (bounded by
// the supervisor's DrainTimeout).
func (s *Supervisor) RunPipeline(ctx context.Context, pl Pipeline) (err error) {
	if err := s.CheckPipeline(ctx, pl); err != nil { // types first: nothing runs ill-typed
		return err
	}
	switch {
	case pl.onError() != OnErrorDrop && pl.onError() != OnErrorRetry && pl.onError() != OnErrorDeadLetter:
		return fmt.Errorf("pipeline %s: on_error %q: want %q, %q or %q", pl.Name, pl.OnError, OnErrorDrop, OnErrorRetry, OnErrorDeadLetter)
	case pl.onError() == OnErrorDeadLetter && pl.DeadLetter.Plugin == "":
		return fmt.Errorf("pipeline %s: on_error %q needs a DeadLetter sink", pl.Name, OnErrorDeadLetter)
	case pl.onError() == OnErrorDrop && pl.DeadLetter.Plugin != "":
		return fmt.Errorf("pipeline %s: a DeadLetter sink is set but on_error %q drops failed items", pl.Name, OnErrorDrop)
	}
	pl.defaults()
	// A batch must fit a frame, with room for the function's answer.
	pl.BatchBytes = min(pl.BatchBytes, s.opts.MaxFrame/4)
	rc := &runCtx{s: s, pl: pl, stats: s.pipeStats(pl)}
	rc.stats.setState(PipelineWaiting, nil)
	defer func() {
		if ctx.Err() != nil {
			rc.stats.setState(PipelineStopped, nil)
		} else {
			rc.stats.setState(PipelineWaiting, err)
		}
	}()
	src, err := s.Plugin(pl.Source.Plugin)
	if err != nil {
		return fmt.Errorf("pipeline %s: source: %w", pl.Name, err)
	}
	fns := make([]*Plugin, len(pl.Functions))
	for i, f := range pl.Functions {
		if fns[i], err = s.Plugin(f.Plugin); err != nil {
			return fmt.Errorf("pipeline %s: function %s: %w", pl.Name, f, err)
		}
	}
	// Work outlives ctx by the drain: in-flight items are finished.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.opts.DrainTimeout.Duration, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopAfter()

	closeSink := func(w *SinkWriter) {
		cctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout.Duration)
		defer cancel()
		_ = w.Flush(cctx)
		_ = w.Close(cctx)
	}
	var w *SinkWriter
	if pl.Sink.Plugin != "" {
		if w, err = s.openSink(work, pl.Sink, pl.Name); err != nil {
			return fmt.Errorf("pipeline %s: sink: %w", pl.Name, err)
		}
		defer closeSink(w)
	}
	if pl.DeadLetter.Plugin != "" {
		if rc.dead, err = s.openSink(work, pl.DeadLetter, pl.Name+".dead_letter"); err != nil {
			return fmt.Errorf("pipeline %s: dead_letter: %w", pl.Name, err)
		}
		defer closeSink(rc.dead)
	}
	sub, err := src.Subscribe(ctx, pl.Source.Symbol, pl.Name, pl.BatchItems)
	if err != nil {
		return fmt.Errorf("pipeline %s: subscribe to %s: %w", pl.Name, pl.Source, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout.Duration)
		defer cancel()
		_ = sub.Close(cctx)
	}()
	rc.stats.setState(PipelineRunning, nil)

	// source → stage 1 → … → sink, each a goroutine, joined by channels.
	errc := make(chan error, len(fns)+2)
	ch := make(chan batch, 1)
	go func(out chan<- batch) { errc <- rc.read(ctx, work, sub, out) }(ch)
	for i := range fns {
		next := make(chan batch, 1)
		go func(in <-chan batch, out chan<- batch) { errc <- rc.function(work, i, fns[i], in, out) }(ch, next)
		ch = next
	}
	go func(in <-chan batch) { errc <- rc.write(work, w, in) }(ch)
	var first error
	for range len(fns) + 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancelWork() // one stage failed: stop the rest
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return first
}

func (s *Supervisor) openSink(ctx context.Context, ref Ref, name string) (*SinkWriter, error) {
	p, err := s.Plugin(ref.Plugin)
	if err != nil {
		return nil, err
	}
	w, err := p.OpenSink(ctx, ref.Symbol, name, sinkWindow)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	return w, nil
}

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
