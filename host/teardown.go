package host

import (
	"context"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/config"
)

// teardown is the host's one way down, once Run's context ended. The
// order matters, which is why it is a sequence and not a run group (whose
// interrupts run at once):
//
//  1. the config watch ends, so no edit starts anything new;
//  2. pipelines drain: sources stop as in a planned swap and what they
//     emitted reaches the sinks (bounded by drain_timeout), then they stop;
//  3. workers end: builds, fetches and watches stop, nothing produces a
//     spec any more;
//  4. the supervisor closes: every plugin takes its final checkpoint and
//     is stopped with its grace (bounded by 3 graces + 10 s).
func (h *Host) teardown(cfg *config.Config, cfgWatch *sync.WaitGroup) {
	cfgWatch.Wait()
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.Supervisor.DrainTimeout.Duration)
	h.pipes.drain(dctx)
	dcancel()
	h.pipes.stop()

	h.mu.Lock()
	ws := make([]*worker, 0, len(h.workers))
	for _, w := range h.workers {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.cancel()
	}
	h.workerWG.Wait()

	s := cfg.Supervisor
	cctx, cancel := context.WithTimeout(context.Background(), 3*s.StopGrace.Duration+10*time.Second)
	defer cancel()
	if err := h.sup.Close(cctx); err != nil {
		h.log.Warn().Err(err).Msg("stopping plugins")
	}
}
