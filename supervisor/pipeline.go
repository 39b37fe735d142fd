package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ref names a plugin's symbol.
type Ref struct{ Plugin, Symbol string }

func (r Ref) String() string { return r.Plugin + "." + r.Symbol }

// Pipeline wires a source through zero or more functions into a sink,
// inside the host. Each item passes the stages in order before the next
// is read, so back-pressure runs end to end: a slow sink slows the source.
type Pipeline struct {
	Name      string
	Source    Ref
	Functions []Ref
	Sink      Ref
	// Drain, when closed, ends the pipeline cleanly: the source is
	// stopped, every item it emitted passes the stages into the sink, the
	// sink is flushed, and RunPipeline returns nil (a clean shutdown).
	Drain <-chan struct{}
}

// RunPipeline runs pl until ctx ends. It survives swaps and restarts of
// every plugin involved: the handles it holds stay valid, calls wait,
// sink writes queue. An item whose function call fails because the plugin
// crashed or is down is retried until it is answered (at-least-once); an
// error the function itself returns drops that item, with a log line and a
// pipeline.dropped event.
func (s *Supervisor) RunPipeline(ctx context.Context, pl Pipeline) error {
	if err := s.CheckPipeline(ctx, pl); err != nil { // types first: nothing runs ill-typed
		return err
	}
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
	var sinkP *Plugin
	if pl.Sink.Plugin != "" {
		if sinkP, err = s.Plugin(pl.Sink.Plugin); err != nil {
			return fmt.Errorf("pipeline %s: sink: %w", pl.Name, err)
		}
	}
	var w *SinkWriter
	if sinkP != nil {
		if w, err = sinkP.OpenSink(ctx, pl.Sink.Symbol, pl.Name, 0); err != nil {
			return fmt.Errorf("pipeline %s: open sink %s: %w", pl.Name, pl.Sink, err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
			defer cancel()
			_ = w.Flush(cctx)
			_ = w.Close(cctx)
		}()
	}
	var seen uint64 // Seq of the last item taken
	sub, err := src.Subscribe(ctx, pl.Source.Symbol, pl.Name, 64)
	if err != nil {
		return fmt.Errorf("pipeline %s: subscribe to %s: %w", pl.Name, pl.Source, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
		defer cancel()
		_ = sub.Close(cctx)
	}()
	drain, draining, last := pl.Drain, false, uint64(0)
	for {
		var it Item
		if draining && seen >= last {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-drain:
			drain = nil
			if last, err = sub.StopSource(ctx); err != nil {
				return fmt.Errorf("pipeline %s: draining: %w", pl.Name, err)
			}
			draining = true
			continue
		case it = <-sub.C():
			seen = it.Seq
		}
		data, ok := s.stages(ctx, pl, fns, it.Data)
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if w != nil {
			if err := w.Write(ctx, data); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("pipeline %s: sink %s: %w", pl.Name, pl.Sink, err)
			}
		}
	}
}

// stages calls each function on data in turn.
func (s *Supervisor) stages(ctx context.Context, pl Pipeline, fns []*Plugin, data []byte) ([]byte, bool) {
	for i, f := range pl.Functions {
		for {
			out, err := fns[i].Call(ctx, f.Symbol, data)
			if err == nil {
				data = out
				break
			}
			if ctx.Err() != nil {
				return nil, false
			}
			var ce *CallError
			if !errors.As(err, &ce) {
				// The plugin crashed, is restarting or failed: wait and send
				// the item again (at-least-once for a call that died with it).
				select {
				case <-time.After(s.opts.BackoffMin):
				case <-ctx.Done():
					return nil, false
				}
				continue
			}
			fns[i].logf(0, "pipeline %s: %s dropped an item: %v", pl.Name, f, err)
			s.bus.publish(Event{Type: "pipeline.dropped", Plugin: f.Plugin, Error: err.Error(), Detail: pl.Name})
			return nil, false
		}
	}
	return data, true
}
