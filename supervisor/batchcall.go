package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugvisor/plugvisor/transport"
)

// Result is one answer of CallBatch: the function's JSON output, or the
// error it returned for that input (a *CallError).
type Result struct {
	Out []byte
	Err error
}

// CallBatch calls function fn once per input and returns the results in
// input order, each an output or the function's own error: one failing
// input does not fail the others. All inputs are in flight at once — in
// one call_batch frame when the plugin's SDK serves them, else as one call
// frame each, pipelined — so a batch costs about one round trip.
//
// Like Call it waits while the plugin starts, restarts or swaps, and a
// planned swap never splits a batch: the whole batch is answered by one
// generation before that generation's state is snapshotted. The error is
// for the batch as a whole (ctx ended, no such function, the plugin
// crashed: then which inputs ran is unknown, and sending the batch again
// is at-least-once). Keep a batch well under the frame limit; a batch
// too large for one frame goes as single calls.
func (p *Plugin) CallBatch(ctx context.Context, fn string, inputs [][]byte) ([]Result, error) {
	if len(inputs) == 0 {
		return nil, nil
	}
	return onFunction(ctx, p, fn, func(g *generation) ([]Result, error) {
		res, err := g.callBatch(ctx, fn, inputs)
		if !errors.Is(err, errRetry) {
			p.metrics.batch(p.name, fn, res, err)
		}
		return res, err
	})
}

// callBatch sends the batch to g and waits for every answer.
func (g *generation) callBatch(ctx context.Context, fn string, inputs [][]byte) ([]Result, error) {
	size := transport.CallBatchSize(fn, inputs)
	if !g.man.Supports(transport.FeatureCallBatch) || transport.HeaderSize+size > g.p.sup.opts.MaxFrame {
		return g.callPipelined(ctx, fn, inputs)
	}
	id, ch := g.pending.add()
	payload := transport.CallBatchPayload(make([]byte, 0, size), fn, inputs)
	if err := g.calls.Send(ctx, transport.Frame{Type: transport.CallBatch, ID: id, Payload: payload}); err != nil {
		g.pending.forget(id)
		if errors.Is(err, transport.ErrClosed) {
			return nil, g.deadErr(fn)
		}
		return nil, err
	}
	var f transport.Frame
	select {
	case f = <-ch:
	case <-g.dead:
		g.pending.forget(id)
		return nil, g.deadErr(fn)
	case <-ctx.Done():
		g.pending.forget(id)
		return nil, fmt.Errorf("call %s.%s: %w", g.p.name, fn, ctx.Err())
	}
	if f.Type != transport.ResultBatch {
		// A fail frame for a whole batch: every input failed the same way.
		err := g.callError(fn, f)
		res := make([]Result, len(inputs))
		for i := range res {
			res[i].Err = err
		}
		return res, nil
	}
	items, err := transport.ParseResultBatch(f.Payload)
	if err == nil && len(items) != len(inputs) {
		err = fmt.Errorf("%w: result_batch of %d items answers a batch of %d", transport.ErrMalformed, len(items), len(inputs))
	}
	if err != nil {
		g.kill(fmt.Errorf("%w: call channel: %w", ErrCrashed, err))
		return nil, fmt.Errorf("call %s.%s: %w", g.p.name, fn, err)
	}
	res := make([]Result, len(items))
	for i, it := range items {
		switch it.Status {
		case transport.ItemOK:
			res[i].Out = it.Data
		default:
			res[i].Err = &CallError{Plugin: g.p.name, Function: fn, Msg: string(it.Data), Panic: it.Status == transport.ItemPanic}
		}
	}
	return res, nil
}

// callPipelined serves a batch with single call frames, all sent before
// the first answer is awaited: a plugin whose SDK predates call_batch.
func (g *generation) callPipelined(ctx context.Context, fn string, inputs [][]byte) ([]Result, error) {
	ids := make([]uint64, 0, len(inputs))
	chs := make([]chan transport.Frame, 0, len(inputs))
	forget := func(from int) {
		for _, id := range ids[from:] {
			g.pending.forget(id)
		}
	}
	for _, in := range inputs {
		id, ch := g.pending.add()
		ids, chs = append(ids, id), append(chs, ch)
		payload := transport.CallPayload(make([]byte, 0, 2+len(fn)+len(in)), fn, in)
		if err := g.calls.Send(ctx, transport.Frame{Type: transport.Call, ID: id, Payload: payload}); err != nil {
			forget(0)
			if errors.Is(err, transport.ErrClosed) {
				return nil, g.deadErr(fn)
			}
			return nil, err
		}
	}
	res := make([]Result, len(inputs))
	for i, ch := range chs {
		select {
		case f := <-ch:
			if f.Type == transport.Fail {
				res[i].Err = g.callError(fn, f)
			} else {
				res[i].Out = f.Payload
			}
		case <-g.dead:
			forget(i)
			return nil, g.deadErr(fn)
		case <-ctx.Done():
			forget(i)
			return nil, fmt.Errorf("call %s.%s: %w", g.p.name, fn, ctx.Err())
		}
	}
	return res, nil
}

// callError turns a fail frame into the function's error.
func (g *generation) callError(fn string, f transport.Frame) *CallError {
	var m transport.ErrorMsg
	_ = transport.Decode(f, &m)
	if m.Code == transport.CodeReplicatedState {
		g.p.replicatedStateWrite(g.num, m.Error)
	}
	return &CallError{Plugin: g.p.name, Function: fn, Msg: m.Error, Panic: m.Panic}
}
