// Package backoff is the one exponential backoff of the module: restarts,
// pipeline retries and pipeline restarts wait with it.
package backoff

import "time"

// Delay is lo doubled for each failure after the first, capped at hi:
// lo, 2·lo, 4·lo, … hi. failures below 1 count as 1.
func Delay(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Backoff counts failures and gives the delay before the next attempt.
// The zero value is not useful: set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	failures int
}

// Next counts a failure and returns how long to wait before trying again.
func (b *Backoff) Next() time.Duration {
	b.failures++
	return Delay(b.Min, b.Max, b.failures)
}

// Reset forgets the failures: the next delay is Min again.
func (b *Backoff) Reset() { b.failures = 0 }
