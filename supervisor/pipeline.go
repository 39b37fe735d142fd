package supervisor

import (
	"context"
	"fmt"
	"time"
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
