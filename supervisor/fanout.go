package supervisor

import (
	"sync"
	"sync/atomic"
)

// fanout delivers values to subscribers. A subscriber that falls behind by
// more than its buffer loses the oldest values and is told so through
// Dropped — the daemon never blocks on a slow reader.
type fanout[T any] struct {
	mu   sync.Mutex
	subs map[*Feed[T]]struct{}
}

// Feed receives values until Close.
type Feed[T any] struct {
	C       <-chan T
	c       chan T
	f       *fanout[T]
	dropped atomic.Int64
}

// Dropped counts values this subscriber missed because it fell behind.
func (s *Feed[T]) Dropped() int64 { return s.dropped.Load() }

// Close stops delivery.
func (s *Feed[T]) Close() {
	s.f.mu.Lock()
	delete(s.f.subs, s)
	s.f.mu.Unlock()
}

func (f *fanout[T]) subscribe(buf int) *Feed[T] {
	if buf <= 0 {
		buf = 256
	}
	c := make(chan T, buf)
	s := &Feed[T]{C: c, c: c, f: f}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[*Feed[T]]struct{}{}
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	return s
}

func (f *fanout[T]) publish(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		for {
			select {
			case s.c <- v:
			default:
				select {
				case <-s.c:
					s.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
}
