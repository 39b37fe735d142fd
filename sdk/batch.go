package sdk

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/plugvisor/plugvisor/transport"
)

// dispatchBatch runs one CallBatch frame: the function is applied to each
// input in order, on this goroutine, and the batch is answered in one
// ResultBatch frame with a result or an error per input — one failing
// input does not fail its neighbours. A panic ends the batch there (the
// rest are answered "not run") and then the process, as for a single call.
func (s *server) dispatchBatch(c *transport.Conn, f transport.Frame) {
	name, inputs, err := transport.ParseCallBatch(f.Payload)
	if err != nil {
		s.fail(err)
		return
	}
	items := make([]transport.BatchItem, len(inputs))
	fn, ok := s.funcs[name]
	if !ok {
		msg := []byte(fmt.Sprintf("no function %q in plugin %s (it has: %s)", name, s.p.Name, strings.Join(s.man.Functions, ", ")))
		for i := range items {
			items[i] = transport.BatchItem{Status: transport.ItemError, Data: msg}
		}
		s.sendBatch(c, f.ID, items, name)
		return
	}
	st, rs := s.functionState(name)
	ctx := &symCtx{Context: s.ctx, state: st, log: fn.logger(s), config: s.config}
	// One recover for the batch, not one per input: a panic at input i
	// marks it, and the inputs after it are not run.
	var at int
	_, panicErr, panicked := protect(func() ([]byte, error) {
		for ; at < len(inputs); at++ {
			out, err := fn.call(ctx, inputs[at])
			if err != nil {
				items[at] = transport.BatchItem{Status: transport.ItemError, Data: []byte(err.Error())}
			} else {
				items[at] = transport.BatchItem{Status: transport.ItemOK, Data: out}
			}
		}
		return nil, nil
	})
	if panicked {
		items[at] = transport.BatchItem{Status: transport.ItemPanic, Data: []byte(panicErr.Error())}
		for j := at + 1; j < len(inputs); j++ {
			items[j] = transport.BatchItem{Status: transport.ItemError, Data: []byte("not run: an earlier input of its batch panicked")}
		}
	}
	if werr := rs.refused(); werr != nil && !panicked {
		// The batch is one call of fn: it fails whole, with the code.
		if err := c.Send(s.ctx, replicatedFail(f.ID, werr)); err != nil && !errors.Is(err, transport.ErrClosed) {
			s.fail(fmt.Errorf("function %s: %w", name, err))
		}
		return
	}
	s.sendBatch(c, f.ID, items, name)
	if panicErr != nil {
		fmt.Fprintln(os.Stderr, panicErr)
		s.fail(fmt.Errorf("function %s: %s", name, strings.SplitN(panicErr.Error(), "\n", 2)[0]))
	}
}

func (s *server) sendBatch(c *transport.Conn, id uint64, items []transport.BatchItem, name string) {
	n := 4
	for _, it := range items {
		n += 5 + len(it.Data)
	}
	f := transport.Frame{Type: transport.ResultBatch, ID: id, Payload: transport.ResultBatchPayload(make([]byte, 0, n), items)}
	if err := c.Send(s.ctx, f); err != nil && !errors.Is(err, transport.ErrClosed) {
		s.fail(fmt.Errorf("function %s: %w", name, err))
	}
}
