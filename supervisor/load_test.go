package supervisor_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/plugvisor/plugvisor/supervisor"
)

// countLoad starts callers goroutines, each counting its own key on p
// back to back and checking every answer is the next number: a call
// lost, repeated or reordered (or failed) is an error. stop ends them
// and returns how many calls each made and the errors.
func countLoad(p *supervisor.Plugin, callers int) (stop func() (counts []int, errs []error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, callers)
	counts := make([]int, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf(`"caller%d"`, c)
			for want := 1; ctx.Err() == nil; want++ {
				out, err := p.Call(context.WithoutCancel(ctx), "count", []byte(key))
				if err != nil {
					errc <- fmt.Errorf("caller %d call %d: %w", c, want, err)
					return
				}
				if string(out) != strconv.Itoa(want) {
					errc <- fmt.Errorf("caller %d: call %d answered %s, want %d (lost, repeated or reordered)", c, want, out, want)
					return
				}
				counts[c] = want
			}
		}()
	}
	return func() ([]int, []error) {
		cancel()
		wg.Wait()
		close(errc)
		var errs []error
		for err := range errc {
			errs = append(errs, err)
		}
		return counts, errs
	}
}
