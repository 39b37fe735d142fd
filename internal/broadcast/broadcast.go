// Package broadcast wakes every waiter at once, as often as needed: the
// close-and-replace channel, written once.
package broadcast

import "sync"

// Signal is a repeatable broadcast. The zero value is ready to use and
// it is safe for concurrent use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel that is closed by the next Fire. Take it before
// checking the condition waited for, so a Fire in between is not missed.
func (s *Signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Fire wakes everyone waiting on a channel from Wait.
func (s *Signal) Fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
