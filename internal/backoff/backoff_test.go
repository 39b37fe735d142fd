package backoff

import (
	"testing"
	"time"
)

func TestDelayDoublesToTheCap(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{0, 10 * ms}, {1, 10 * ms}, {2, 20 * ms}, {3, 40 * ms}, {5, 100 * ms}, {60, 100 * ms}} {
		if got := Delay(10*ms, 100*ms, c.failures); got != c.want {
			t.Errorf("Delay after %d failures = %s, want %s", c.failures, got, c.want)
		}
	}
	if got := Delay(time.Second, 500*ms, 1); got != 500*ms {
		t.Errorf("a cap below the start: %s, want the cap", got)
	}
	b := Backoff{Min: ms, Max: 3 * ms}
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	want := []time.Duration{ms, 2 * ms, 3 * ms, 3 * ms, ms}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Next sequence %v, want %v", got, want)
		}
	}
}
