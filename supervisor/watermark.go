package supervisor

import (
	"context"
	"sync"
)

// watermark is a number that only grows — the last acknowledged sink item,
// the last checkpoint marker a source passed — and lets goroutines wait
// for it. Its lock is never held while sending, so acks always get through.
type watermark struct {
	mu sync.Mutex
	v  uint64
	ch chan struct{} // closed and replaced when v grows
}

// load returns the value and a channel closed when it next grows.
func (w *watermark) load() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.v, w.ch
}

// raise sets the value to v if that is higher and returns by how much it grew.
func (w *watermark) raise(v uint64) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v <= w.v {
		return 0
	}
	d := v - w.v
	w.v = v
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	return d
}

// wait blocks until the value reaches v (nil), gone closes (errGone) or
// ctx ends (its error).
func (w *watermark) wait(ctx context.Context, v uint64, gone <-chan struct{}) error {
	for {
		cur, ch := w.load()
		if cur >= v {
			return nil
		}
		select {
		case <-ch:
		case <-gone:
			return errGone
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
