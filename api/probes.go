package api

import (
	"context"
	"net/http"
	"time"

	"github.com/plugvisor/plugvisor/version"
)

// Prober is implemented by a Backend whose health can be probed. Without
// it, /livez and /readyz answer 200 as long as the API serves.
type Prober interface {
	// Live returns nil when the daemon's loops answer before ctx ends.
	Live(ctx context.Context) error
	// Ready lists what keeps the daemon from serving fully; empty = ready.
	Ready(ctx context.Context) []NotReady
}

// NotReady is one reason /readyz answers 503.
type NotReady struct {
	Kind   string `json:"kind"` // "plugin", "pipeline", or "host" (starting or stopping)
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// LiveTimeout bounds a liveness check: loops that do not answer within it
// are taken as wedged (a probe's own timeout should be longer).
const LiveTimeout = 3 * time.Second

var liveTimeout = LiveTimeout // tests shorten it

// probes registers /livez, /readyz and /healthz (an alias of /livez).
// They carry no secrets, so they need no token: a kubelet or a load
// balancer must be able to call them.
func (s *server) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", s.livez)
	mux.HandleFunc("GET /healthz", s.livez)
	mux.HandleFunc("GET /readyz", s.readyz)
}

func (s *server) livez(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.b.(Prober); ok {
		ctx, cancel := context.WithTimeout(r.Context(), liveTimeout)
		defer cancel()
		if err := p.Live(ctx); err != nil {
			s.log.Error().Err(err).Msg("liveness check failed")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "error": err.Error(), "build": version.Get()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "build": version.Get()})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	var not []NotReady
	if p, ok := s.b.(Prober); ok {
		not = p.Ready(r.Context())
	}
	if len(not) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "not_ready": not})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "not_ready": []NotReady{}})
}
