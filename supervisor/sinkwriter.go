package supervisor

// A sink handle: items queued at the host until the sink acknowledges
// them, paused and resent across swaps and restarts.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/plugvisor/plugvisor/transport"
)

// SinkWriter writes items to a sink instance, in order, across swaps.
// Items are kept at the host until the sink acknowledges them, so a crash
// redelivers them to the next generation (at-least-once); a planned swap
// delivers each exactly once.
type SinkWriter struct {
	p        *Plugin
	inst     *instance
	window   int
	maxBytes int // Options.QueueBytes: the window in bytes

	mu    sync.Mutex // orders writes and guards the queue and conn
	queue []sinkItem // unacknowledged items, in order
	bytes int        // their cost (itemCost)
	seq   uint64
	sent  uint64 // highest seq sent on conn
	// seqPublished mirrors seq for the ack reader, which must not take mu.
	seqPublished uint64
	conn         *transport.Conn // nil while paused or no generation serves
	closed       bool

	acked watermark // the last item the sink acknowledged
}

type sinkItem struct {
	seq  uint64
	data []byte
}

// OpenSink opens instance name of sink symbol. window bounds the items
// written but not yet acknowledged, Options.QueueBytes their bytes (an
// item larger than that is let in alone); Write waits when either is full.
func (p *Plugin) OpenSink(ctx context.Context, symbol, name string, window int) (*SinkWriter, error) {
	if window <= 0 {
		window = 1024
	}
	inst := &instance{id: "sink/" + symbol + "/" + name, kind: transport.KindSink, symbol: symbol}
	w := &SinkWriter{p: p, inst: inst, window: window, maxBytes: p.sup.opts.QueueBytes}
	inst.sink = w
	if err := p.attach(ctx, inst); err != nil {
		return nil, err
	}
	return w, nil
}

// Write queues a JSON item for the sink. It returns once the item is
// accepted by the host's bounded queue; from then on it is delivered.
func (w *SinkWriter) Write(ctx context.Context, item []byte) error {
	cost := itemCost(item)
	for {
		acked, ch := w.acked.load()
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return ErrStopped
		}
		w.trim(acked)
		if len(w.queue) == 0 || len(w.queue) < w.window && w.bytes+cost <= w.maxBytes {
			break
		}
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sink %s.%s: queue full: %w", w.p.name, w.inst.symbol, ctx.Err())
		}
	}
	defer w.mu.Unlock()
	w.seq++
	atomic.StoreUint64(&w.seqPublished, w.seq)
	w.queue = append(w.queue, sinkItem{seq: w.seq, data: item})
	w.bytes += cost
	w.sendPending(ctx)
	return nil
}

// trim drops acknowledged items; mu held.
func (w *SinkWriter) trim(acked uint64) {
	i := 0
	for i < len(w.queue) && w.queue[i].seq <= acked {
		w.bytes -= itemCost(w.queue[i].data)
		i++
	}
	if i > 0 {
		w.queue = append(w.queue[:0], w.queue[i:]...)
	}
}

// sendPending sends queued items not yet sent on the current conn; mu
// held. An item that cannot be sent now stays queued and goes later, in
// order.
func (w *SinkWriter) sendPending(ctx context.Context) {
	if w.conn == nil {
		return
	}
	// Queued seqs are consecutive: start at the first one not sent.
	start := 0
	if len(w.queue) > 0 && w.sent >= w.queue[0].seq {
		start = min(int(w.sent-w.queue[0].seq+1), len(w.queue))
	}
	for _, it := range w.queue[start:] {
		if it.seq <= w.sent {
			continue
		}
		if err := w.conn.Send(ctx, transport.Frame{Type: transport.Data, ID: it.seq, Payload: it.data}); err != nil {
			return
		}
		w.sent = it.seq
	}
}

func (w *SinkWriter) ack(id uint64) {
	if n := w.acked.raise(id); n > 0 {
		w.p.metrics.acked(w.p.name, w.inst.symbol, n, atomic.LoadUint64(&w.seqPublished)-id)
	}
}

// waitAcked waits until every item up to seq is acknowledged.
func (w *SinkWriter) waitAcked(ctx context.Context, seq uint64, b *binding) error {
	switch err := w.acked.wait(ctx, seq, b.done); {
	case err == errGone:
		return fmt.Errorf("sink %s.%s: channel lost before the barrier was acknowledged", w.p.name, w.inst.symbol)
	case err != nil:
		acked, _ := w.acked.load()
		return fmt.Errorf("%w: sink %s.%s acknowledged %d of %d items", ErrDrainTimeout, w.p.name, w.inst.symbol, acked, seq)
	}
	return nil
}

// Flush waits until every item written so far is collected by the sink.
func (w *SinkWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	seq := w.seq
	w.mu.Unlock()
	if err := w.acked.wait(ctx, seq, nil); err != nil {
		return fmt.Errorf("flush sink %s.%s: %w", w.p.name, w.inst.symbol, err)
	}
	return nil
}

// Close flushes nothing: it stops the sink instance. Call Flush first to
// wait for delivery.
func (w *SinkWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	return w.p.detach(ctx, w.inst)
}

// Pending counts items written but not yet acknowledged.
func (w *SinkWriter) Pending() int {
	acked, _ := w.acked.load()
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.seq - min(acked, w.seq))
}

// resume points the writer at binding b and sends what is queued. With
// resend (a new generation), anything unacknowledged goes again.
func (w *SinkWriter) resume(ctx context.Context, b *binding, resend bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if resend {
		w.sent, _ = w.acked.load()
	}
	w.conn = b.conn
	w.sendPending(ctx)
}

// pause stops sending; Write keeps queueing (bounded).
func (w *SinkWriter) pause() {
	w.mu.Lock()
	w.conn = nil
	w.mu.Unlock()
}

func (p *Plugin) readSinkAcks(w *SinkWriter, b *binding) {
	defer close(b.done)
	for {
		err := b.conn.Recv(func(f transport.Frame) error {
			if f.Type != transport.Ack {
				return fmt.Errorf("%w: unexpected %s frame on sink %s", transport.ErrMalformed, f.Type, w.inst.symbol)
			}
			if f.ID > w.seqSnapshot() {
				return fmt.Errorf("%w: sink %s acknowledged item %d, never sent", transport.ErrMalformed, w.inst.symbol, f.ID)
			}
			w.ack(f.ID)
			return nil
		})
		if err == nil {
			continue
		}
		if errors.Is(err, transport.ErrMalformed) || errors.Is(err, transport.ErrTooLarge) {
			b.g.kill(fmt.Errorf("%w: plugin sent a bad frame: %w", ErrCrashed, err))
		}
		return
	}
}

// seqSnapshot reads the last written seq without the write lock (which a
// blocked sender may hold).
func (w *SinkWriter) seqSnapshot() uint64 {
	return atomic.LoadUint64(&w.seqPublished)
}
