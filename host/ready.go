package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/plugvisor/plugvisor/supervisor"
)

// NotReady is one reason the host does not serve fully (GET /readyz).
type NotReady struct {
	Kind   string `json:"kind"` // "plugin", "pipeline", or "host" (starting or stopping)
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Ready lists what keeps the host from serving fully: a plugin not marked
// `required = false` that has no running generation (its state restored:
// the supervisor marks a generation running only after its restore), and
// a pipeline that is not flowing. Empty means ready. A plugin whose old
// generation serves while a new build or swap is under way counts as ready:
// a hot swap must not take the daemon out of a load balancer.
func (h *Host) Ready() []NotReady {
	h.mu.Lock()
	if h.runCtx == nil || h.runCtx.Err() != nil || !h.registered {
		h.mu.Unlock()
		return []NotReady{{Kind: "host", Name: "host", Reason: "not running (starting or shutting down)"}}
	}
	ws := make([]*worker, 0, len(h.workers))
	optional := map[string]bool{}
	for _, n := range slices.Sorted(maps.Keys(h.workers)) {
		w := h.workers[n]
		ws = append(ws, w)
		if p := h.cfg.Plugins[n]; p != nil {
			optional[n] = p.Optional
		} else {
			optional[n] = w.cfg.Optional
		}
	}
	h.mu.Unlock()
	var out []NotReady
	for _, w := range ws {
		if optional[w.name] {
			continue
		}
		st := h.statusOf(w)
		if st.State == supervisor.StateRunning && st.Generation > 0 {
			continue
		}
		out = append(out, NotReady{Kind: "plugin", Name: w.name, Reason: notRunningReason(st)})
	}
	return append(out, h.pipes.notFlowing()...)
}

func notRunningReason(st supervisor.Status) string {
	var b strings.Builder
	b.WriteString(string(st.State))
	if st.State == supervisor.StateWaiting {
		b.WriteString(" for an external instance to connect")
	}
	if st.Activity != "" && st.Activity != supervisor.ActivityIdle {
		b.WriteString(", " + string(st.Activity))
	}
	if st.LastError != "" {
		b.WriteString(": " + st.LastError)
	}
	return b.String()
}

// Live returns nil when the host's loops answer before ctx ends: Run is
// running, every plugin's status can be read (no lock is wedged), and
// every idle worker loop takes a no-op request. A worker still on its first
// start, or busy building, fetching or swapping, is bounded by its own
// deadlines and is not asked.
func (h *Host) Live(ctx context.Context) error {
	h.mu.Lock()
	running := h.runCtx != nil && h.runCtx.Err() == nil
	ws := make([]*worker, 0, len(h.workers))
	for _, n := range slices.Sorted(maps.Keys(h.workers)) {
		ws = append(ws, h.workers[n])
	}
	h.mu.Unlock()
	if !running {
		return errors.New("host is not running")
	}
	done := make(chan error, 1)
	go func() {
		_ = h.Statuses()
		var errs []error
		for _, w := range ws {
			select {
			case <-w.first:
			default:
				continue // its first start is bounded by start_timeout
			}
			if w.currentActivity() != supervisor.ActivityIdle {
				continue
			}
			if err := w.do(ctx, func(context.Context) {}); err != nil && !errors.Is(err, supervisor.ErrStopped) {
				errs = append(errs, fmt.Errorf("plugin %q: its worker loop did not answer: %w", w.name, err))
			}
		}
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the host did not answer within the liveness deadline (a lock or loop is wedged): %w", ctx.Err())
	}
}

// currentActivity is the plugin's: building, fetching, swapping or idle.
func (w *worker) currentActivity() supervisor.Activity {
	if w.p == nil {
		return supervisor.ActivityIdle
	}
	return w.p.Status().Activity
}
