package supervisor

import (
	"sync"
	"sync/atomic"

	"github.com/plugvisor/plugvisor/transport"
)

// waiters pairs replies with the requests waiting for them by frame id:
// control requests and function calls each have a set.
type waiters struct {
	seq atomic.Uint64
	mu  sync.Mutex
	m   map[uint64]chan transport.Frame
}

// add allocates an id and the channel its reply will arrive on.
func (w *waiters) add() (uint64, chan transport.Frame) {
	id := w.seq.Add(1)
	ch := make(chan transport.Frame, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[uint64]chan transport.Frame{}
	}
	w.m[id] = ch
	w.mu.Unlock()
	return id, ch
}

// forget drops id: its caller stopped waiting.
func (w *waiters) forget(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// deliver hands f to whoever waits for its id; a reply nobody waits for
// (the caller gave up) is dropped.
func (w *waiters) deliver(f transport.Frame) {
	w.mu.Lock()
	ch := w.m[f.ID]
	delete(w.m, f.ID)
	w.mu.Unlock()
	if ch != nil {
		ch <- f
	}
}
