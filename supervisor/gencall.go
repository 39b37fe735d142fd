package supervisor

// A generation's call channel: calls sent and their results routed
// back, calls in flight counted for the drain.

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugvisor/plugvisor/transport"
)

// readCalls routes call results to their callers.
func (g *generation) readCalls() {
	for {
		err := g.calls.Recv(func(f transport.Frame) error {
			switch f.Type {
			case transport.Result, transport.Fail, transport.ResultBatch:
				g.pending.deliver(f)
				return nil
			}
			return fmt.Errorf("%w: unexpected %s frame on the call channel", transport.ErrMalformed, f.Type)
		})
		if err != nil {
			if !errors.Is(err, transport.ErrClosed) {
				g.kill(fmt.Errorf("%w: call channel: %w", ErrCrashed, err))
			}
			return
		}
	}
}

// errRetry tells Call that a forced swap killed the generation before it
// answered: the call goes to the next generation.
var errRetry = errors.New("retry on the next generation")

func (g *generation) call(ctx context.Context, fn string, input []byte) ([]byte, error) {
	id, ch := g.pending.add()
	forget := func() { g.pending.forget(id) }
	payload := transport.CallPayload(make([]byte, 0, 2+len(fn)+len(input)), fn, input)
	if err := g.calls.Send(ctx, transport.Frame{Type: transport.Call, ID: id, Payload: payload}); err != nil {
		forget()
		if errors.Is(err, transport.ErrClosed) {
			return nil, g.deadErr(fn)
		}
		return nil, err
	}
	select {
	case f := <-ch:
		if f.Type == transport.Fail {
			return nil, g.callError(fn, f)
		}
		return f.Payload, nil
	case <-g.dead:
		forget()
		return nil, g.deadErr(fn)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("call %s.%s: %w", g.p.name, fn, ctx.Err())
	}
}

func (g *generation) deadErr(fn string) error {
	if g.forced.Load() {
		return errRetry
	}
	return fmt.Errorf("call %s.%s: %w", g.p.name, fn, g.reason())
}

// enter counts a call in flight; leave ends it.
func (g *generation) enter() {
	g.actMu.Lock()
	g.active++
	g.actMu.Unlock()
}

func (g *generation) leave() {
	g.actMu.Lock()
	g.active--
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
	g.actMu.Unlock()
}

// waitIdle waits until no call is in flight.
func (g *generation) waitIdle(ctx context.Context) (int, error) {
	g.actMu.Lock()
	n := g.active
	if n == 0 {
		g.actMu.Unlock()
		return 0, nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	ch := g.idle
	g.actMu.Unlock()
	select {
	case <-ch:
		return n, nil
	case <-g.dead:
		return n, g.reason()
	case <-ctx.Done():
		return n, fmt.Errorf("%w: %d calls still in flight", ErrDrainTimeout, n)
	}
}
