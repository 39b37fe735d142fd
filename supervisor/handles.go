package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/plugvisor/plugvisor/transport"
)

// Call calls function fn of the plugin with JSON input (nil = null) and
// returns its JSON output. It waits (bounded by ctx) while the plugin is
// starting, restarting or swapping; calls are never lost by a planned swap.
// A function's own error is a *CallError; a crash during the call wraps
// ErrCrashed.
func (p *Plugin) Call(ctx context.Context, fn string, input []byte) ([]byte, error) {
	if err := p.checkInput(fn, input); err != nil {
		return nil, err
	}
	return onFunction(ctx, p, fn, func(g *generation) ([]byte, error) {
		out, err := g.call(ctx, fn, input)
		if !errors.Is(err, errRetry) {
			p.metrics.call(p.name, fn, err)
		}
		return out, err
	})
}

// onFunction runs call on a generation that serves function fn, and again
// on the next one when a forced swap killed it unanswered (errRetry:
// at-least-once for that call). Call and CallBatch share it.
func onFunction[T any](ctx context.Context, p *Plugin, fn string, call func(*generation) (T, error)) (T, error) {
	var zero T
	for {
		g, err := p.acquire(ctx, fn)
		if err != nil {
			return zero, err
		}
		if !g.man.Has(transport.KindFunction, fn) {
			g.leave()
			return zero, fmt.Errorf("%w: plugin %s has no function %q (it has: %v)", ErrUnknownSymbol, p.name, fn, g.man.Functions)
		}
		out, err := call(g)
		g.leave()
		if !errors.Is(err, errRetry) {
			return out, err
		}
	}
}

// Item is one item from a source.
type Item struct {
	Seq        uint64 // 1, 2, … per subscription, across generations
	Generation int
	Data       []byte // JSON
}

// instance is a source or sink instance the host keeps open across
// generations; it is opened on every new generation with its state.
type instance struct {
	id, kind, symbol string
	sub              *Subscription
	sink             *SinkWriter
	bind             *binding // on the serving generation; nil while none
}

// binding is an instance opened on one generation.
type binding struct {
	g     *generation
	conn  *transport.Conn
	done  chan struct{} // reader ended
	eos   chan struct{} // source: end of stream received
	items atomic.Int64  // items read (drain accounting)
	mark  watermark     // checkpoint markers passed
}

// waitMark waits until the source's stream passed checkpoint id (or ended).
func (b *binding) waitMark(ctx context.Context, id uint64) error {
	if err := b.mark.wait(ctx, id, b.done); err != nil && err != errGone {
		return fmt.Errorf("checkpoint marker: %w", err)
	}
	return nil
}

// Subscription receives a source's items, in order, across swaps.
//
// Items pass through a host queue of buf items and at most
// Options.QueueBytes bytes (an item larger than that passes alone): the
// source's reader fills it, a pump empties it into C. When the queue is
// full the reader waits,
// and the source is pushed back — except while a swap drains the source:
// then the queue takes everything up to the end-of-stream marker, so a
// slow consumer never stalls a swap (the excess is bounded by what the
// transport held in flight).
type Subscription struct {
	p    *Plugin
	inst *instance
	c    chan Item
	done chan struct{}
	once sync.Once
	seq  uint64 // written by one reader at a time

	buf      int
	maxBytes int
	qmu      sync.Mutex
	q        []Item
	bytes    int           // cost of the items queued or held by the pump, not yet in C
	waiting  bool          // the reader waits for space
	space    chan struct{} // closed and replaced when the pump takes items
	wake     chan struct{} // tells the pump there are items
	draining atomic.Bool
}

// itemCost is what an item counts against a byte bound: its data and
// the bookkeeping around it, so that even empty items are bounded.
func itemCost(data []byte) int { return len(data) + 64 }

// C delivers the items. It is never closed while the subscription lives;
// a slow reader slows the source down (push-back), it loses nothing.
func (s *Subscription) C() <-chan Item { return s.c }

// Close stops the source instance and ends the subscription.
func (s *Subscription) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.p.detach(ctx, s.inst)
	})
	return err
}

// setDraining lets the queue take everything while a swap drains the
// source, waking a reader that waits for room.
func (s *Subscription) setDraining(on bool) {
	s.qmu.Lock()
	s.draining.Store(on)
	close(s.space)
	s.space = make(chan struct{})
	s.qmu.Unlock()
}

// deliver queues an item; false once the subscription is closed, or gone
// closes first (the binding is torn down: the item is after the last
// checkpoint, and the next generation emits it again).
func (s *Subscription) deliver(it Item, gone <-chan struct{}) bool {
	cost := itemCost(it.Data)
	for {
		s.qmu.Lock()
		if s.bytes == 0 || s.draining.Load() || len(s.q) < s.buf && s.bytes+cost <= s.maxBytes {
			s.q = append(s.q, it)
			s.bytes += cost
			if len(s.q) == 1 {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
			s.qmu.Unlock()
			return true
		}
		s.waiting = true
		sp := s.space
		s.qmu.Unlock()
		select {
		case <-sp:
		case <-s.done:
			return false
		case <-gone:
			return false
		}
	}
}

// release wakes a reader waiting for space; qmu held.
func (s *Subscription) release() {
	if s.waiting {
		s.waiting = false
		close(s.space)
		s.space = make(chan struct{})
	}
}

// pump moves queued items into C, in order.
func (s *Subscription) pump() {
	var batch []Item
	for {
		s.qmu.Lock()
		batch, s.q = s.q, batch[:0]
		if len(batch) > 0 {
			s.release()
		}
		s.qmu.Unlock()
		if len(batch) == 0 {
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		for _, it := range batch {
			select {
			case s.c <- it:
			case <-s.done:
				return
			}
			s.qmu.Lock()
			s.bytes -= itemCost(it.Data)
			s.release()
			s.qmu.Unlock()
		}
		clear(batch)
	}
}

// Subscribe opens instance name of source symbol and streams its items.
// The instance's state is kept across swaps and restarts under the id
// "source/<symbol>/<name>". buf bounds the items buffered at the host.
func (p *Plugin) Subscribe(ctx context.Context, symbol, name string, buf int) (*Subscription, error) {
	if buf <= 0 {
		buf = 256
	}
	inst := &instance{id: "source/" + symbol + "/" + name, kind: transport.KindSource, symbol: symbol}
	sub := &Subscription{p: p, inst: inst, c: make(chan Item), done: make(chan struct{}),
		buf: buf, maxBytes: p.sup.opts.QueueBytes, space: make(chan struct{}), wake: make(chan struct{}, 1)}
	inst.sub = sub
	go sub.pump()
	if err := p.attach(ctx, inst); err != nil {
		close(sub.done) // ends the pump
		return nil, err
	}
	return sub, nil
}

// bindInstance opens inst on generation g and starts its reader. A sink's
// queued items go out at once if send is set, else at resumeSink (a swap
// releases them only once every instance is open). Loop only.
func (p *Plugin) bindInstance(ctx context.Context, g *generation, inst *instance, send bool) error {
	if !g.man.Has(inst.kind, inst.symbol) {
		return fmt.Errorf("%w: plugin %s (version %s) has no %s %q", ErrUnknownSymbol, p.name, g.man.Version, inst.kind, inst.symbol)
	}
	conn, err := g.listen("d")
	if err != nil {
		return err
	}
	b := &binding{g: g, conn: conn, done: make(chan struct{}), eos: make(chan struct{})}
	if err := g.open(ctx, transport.OpenMsg{Instance: inst.id, Kind: inst.kind, Symbol: inst.symbol, Address: conn.Addr()}); err != nil {
		conn.Close()
		return fmt.Errorf("open %s %s: %w", inst.kind, inst.symbol, err)
	}
	inst.bind = b
	if inst.kind == transport.KindSource {
		go p.readSource(inst.sub, b)
	} else {
		go p.readSinkAcks(inst.sink, b)
		if send {
			inst.sink.resume(ctx, b, true)
		}
	}
	return nil
}

func (p *Plugin) readSource(sub *Subscription, b *binding) {
	defer close(b.done)
	var last uint64
	for {
		err := b.conn.Recv(func(f transport.Frame) error {
			switch f.Type {
			case transport.Data:
				if f.ID <= last {
					return fmt.Errorf("%w: source %s sent item %d after %d", transport.ErrMalformed, sub.inst.symbol, f.ID, last)
				}
				if gap := f.ID - last - 1; gap > 0 {
					// The plugin skipped sequence numbers: items it counted
					// never arrived. Say so loudly; the stream goes on.
					p.logf(b.g.num, "source %s: %d items lost before item %d", sub.inst.symbol, gap, f.ID)
					p.metrics.addLost(p.name, gap)
				}
				last = f.ID
				sub.seq++
				b.items.Add(1)
				// Closed: the source is being stopped; read on to its end of
				// stream so it can finish.
				if sub.deliver(Item{Seq: sub.seq, Generation: b.g.num, Data: f.Payload}, b.conn.Done()) {
					p.metrics.item(p.name, sub.inst.symbol, "out")
				}
			case transport.Checkpoint:
				b.mark.raise(f.ID)
			case transport.EOS:
				if len(f.Payload) > 0 {
					p.logf(b.g.num, "source %s ended: %s", sub.inst.symbol, transport.ErrorText(f))
				}
				close(b.eos)
				return errEOS
			default:
				return fmt.Errorf("%w: unexpected %s frame on source %s", transport.ErrMalformed, f.Type, sub.inst.symbol)
			}
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

var (
	errEOS  = errors.New("end of stream")
	errGone = errors.New("channel gone")
)
