package supervisor_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// CallBatch answers each input on its own, in input order, and stays
// exact across swaps: batches in flight while the plugin is swapped are
// answered once each, and the state counts every input once.
func TestCallBatch(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	ctx := ctxT(t, 60*time.Second)
	var in [][]byte
	for i := 1; i <= 40; i++ {
		in = append(in, []byte(strconv.Itoa(i)))
	}
	res, err := p.CallBatch(ctx, "flaky", in)
	if err != nil || len(res) != 40 {
		t.Fatalf("CallBatch: %d results, %v", len(res), err)
	}
	for i, r := range res {
		var ce *supervisor.CallError
		if (i+1)%20 == 0 {
			if !errors.As(r.Err, &ce) || ce.Msg != "transient failure of "+strconv.Itoa(i+1) {
				t.Fatalf("input %d: %v, want its own error", i+1, r.Err)
			}
		} else if r.Err != nil || string(r.Out) != strconv.Itoa(i+1) {
			t.Fatalf("input %d: %s, %v", i+1, r.Out, r.Err)
		}
	}
	if _, err := p.CallBatch(ctx, "nope", in); !errors.Is(err, supervisor.ErrUnknownSymbol) {
		t.Fatalf("unknown function: %v", err)
	}

	const workers, batches, size = 4, 30, 50
	key := make([][]byte, size)
	for i := range key {
		key[i] = []byte(`"k"`)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				res, err := p.CallBatch(ctx, "count", key)
				if err != nil {
					errs <- err
					return
				}
				// A batch's inputs run in order (other batches may run
				// between them): its counts increase.
				last := 0
				for _, r := range res {
					n, _ := strconv.Atoi(string(r.Out))
					if r.Err != nil || n <= last {
						errs <- errors.New("batch answered out of order: " + string(r.Out))
						return
					}
					last = n
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		reload(t, p, supervisor.ReloadOptions{})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := call(t, p, "get", `"k"`); got != strconv.Itoa(workers*batches*size) {
		t.Fatalf("counter = %s, want %d: an input was lost or counted twice across the swaps", got, workers*batches*size)
	}

	// A panic answers its input as a panic and the rest "not run", then
	// the process ends (the answer may or may not beat the exit, as for a
	// single call) and is restarted.
	res, err = p.CallBatch(ctx, "panic", [][]byte{nil, nil})
	var ce *supervisor.CallError
	switch {
	case err != nil:
		if !errors.Is(err, supervisor.ErrCrashed) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("panicking batch: %v", err)
		}
	case !errors.As(res[0].Err, &ce) || !ce.Panic || !errors.As(res[1].Err, &ce) || ce.Msg != "not run: an earlier input of its batch panicked":
		t.Fatalf("panicking batch: %+v", res)
	}
	waitFor(t, "the restart after the panic", 20*time.Second, func() bool { return p.Status().Restarts == 1 && p.Status().State == supervisor.StateRunning })
}

// A checkpoint waits for the calls in flight (and holds new ones until
// the plugin answered it), so the function state it saves covers exactly
// the calls answered.
func TestCheckpointWaitsForCallsInFlight(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	slow := make(chan error, 1)
	go func() {
		_, err := p.Call(ctxT(t, 20*time.Second), "sleep", []byte("300"))
		slow <- err
	}()
	waitFor(t, "the slow call to start", 5*time.Second, func() bool { return p.Status().InFlight == 1 })
	if err := p.Checkpoint(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-slow:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the checkpoint was taken while a call was in flight")
	}
	call(t, p, "count", `"k"`) // calls resume after it
}
