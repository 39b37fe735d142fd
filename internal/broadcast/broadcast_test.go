package broadcast

import (
	"testing"
	"time"
)

func TestFireWakesEveryWaiterOnce(t *testing.T) {
	var s Signal
	a, b := s.Wait(), s.Wait()
	select {
	case <-a:
		t.Fatal("closed before Fire")
	default:
	}
	s.Fire()
	for _, c := range []<-chan struct{}{a, b} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was not woken")
		}
	}
	c := s.Wait()
	select {
	case <-c:
		t.Fatal("a channel taken after Fire is already closed")
	default:
	}
	s.Fire()
	s.Fire() // no waiter: nothing to close twice
	<-c
}
