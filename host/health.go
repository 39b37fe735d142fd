package host

import (
	"context"
	"sort"
	"sync"
)

// pipelineHealth is what /readyz knows of one pipeline: whether its run is
// under way, and why the last one ended. It is deliberately small, so a
// finer signal (items moving, a stage retrying) can replace it here alone.
type pipelineHealth struct {
	mu      sync.Mutex
	flowing bool
	lastErr error
}

func (p *pipelineHealth) set(flowing bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flowing = flowing
	if err != nil || flowing {
		p.lastErr = err
	}
}

// notFlowing lists the pipelines that are not running, with their last error.
func (ps *pipelines) notFlowing() []NotReady {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []NotReady
	for name, r := range ps.running {
		r.health.mu.Lock()
		flowing, err := r.health.flowing, r.health.lastErr
		r.health.mu.Unlock()
		if flowing {
			continue
		}
		reason := "not started yet"
		if err != nil {
			reason = "retrying: " + err.Error()
		}
		out = append(out, NotReady{Kind: "pipeline", Name: name, Reason: reason})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// drain ends every pipeline cleanly (a clean shutdown): each source is
// stopped and what it emitted is delivered and flushed before its
// pipeline returns. Pipelines still running when ctx ends are cancelled
// by stop.
func (ps *pipelines) drain(ctx context.Context) {
	ps.mu.Lock()
	rs := make([]*runningPipeline, 0, len(ps.running))
	for _, r := range ps.running {
		close(r.drain)
		rs = append(rs, r)
	}
	ps.mu.Unlock()
	for _, r := range rs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
