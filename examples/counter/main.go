// Command counter is an example source plugin: it emits 1, 2, 3, … and
// keeps its position in state, so a swap or a crash resumes the sequence.
package main

import (
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

func main() { sdk.Serve(plugin) }

// plugin is what main serves; the tests run it with sdktest.
var plugin = sdk.Plugin{
	Name: "counter", Version: "1.0.0",
	Sources:   map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
	Functions: map[string]any{"position": position},
}

type ticks struct{ interval time.Duration }

// Configure reads `interval` ("10ms"; "0s" emits as fast as the host takes).
func (t *ticks) Configure(props map[string]any) error {
	t.interval = 10 * time.Millisecond
	if v, ok := props["interval"].(string); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("interval %q: %w", v, err)
		}
		t.interval = d
	}
	return nil
}

func (t *ticks) Open(ctx sdk.Context, emit func(any) error) error {
	var n int64
	if _, err := ctx.State().GetState("next", &n); err != nil {
		return err
	}
	if n == 0 {
		n = 1
	}
	var tick <-chan time.Time
	if t.interval > 0 {
		tk := time.NewTicker(t.interval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		if tick != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-tick:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		if err := emit(n); err != nil {
			return err
		}
		n++ // state after emit: a checkpoint never claims an item not sent
		if err := ctx.State().PutState("next", n); err != nil {
			return err
		}
	}
}

func (t *ticks) Close(sdk.Context) error { return nil }

// ItemType announces what the source emits (an integer), so plugvisor
// checks a pipeline's next stage takes it before anything runs.
func (*ticks) ItemType() any { return int64(0) }

// position is a function view on the source's progress (for status checks).
func position() (string, error) { return "counter 1.0.0", nil }
