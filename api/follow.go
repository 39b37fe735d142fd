package api

import (
	"encoding/json"
	"net/http"

	"github.com/plugvisor/plugvisor/supervisor"
)

// LogFollower is a Backend that can stream plugin output
// (GET /plugins/{name}/logs?follow=1).
type LogFollower interface {
	FollowOutput(buf int) *supervisor.Feed[supervisor.OutputLine]
}

// followLogs streams a plugin's output as JSON lines (one LogLine each,
// Content-Type application/x-ndjson): its last n lines, then every new one
// as it is printed, until the client goes away.
func (s *server) followLogs(w http.ResponseWriter, r *http.Request, n int) {
	f, ok := s.b.(LogFollower)
	fl, flushes := w.(http.Flusher)
	if !ok || !flushes {
		writeError(w, http.StatusNotImplemented, "this daemon cannot follow logs; poll GET /plugins/{name}/logs")
		return
	}
	name := r.PathValue("name")
	// Subscribe before reading the backlog, so no line falls between.
	feed := f.FollowOutput(1024)
	defer feed.Close()
	backlog, err := s.b.Logs(name, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	seen := map[supervisor.LogLine]bool{}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, l := range backlog {
		seen[l] = true
		if enc.Encode(l) != nil {
			return
		}
	}
	fl.Flush()
	// Like the event stream, it ends when shutdown begins instead of
	// holding the graceful shutdown open.
	closing, _ := r.Context().Value(shutdownKey{}).(<-chan struct{})
	var dropped int64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-closing:
			return
		case l := <-feed.C:
			if l.Plugin != name || seen[l.LogLine] {
				continue
			}
			clear(seen) // the backlog overlap is behind us
			if d := feed.Dropped(); d > dropped {
				note := supervisor.LogLine{At: l.At, Generation: l.Generation, Stream: "plugvisor",
					Line: "(this follower fell behind: output lines were skipped)"}
				dropped = d
				if enc.Encode(note) != nil {
					return
				}
			}
			if enc.Encode(l.LogLine) != nil {
				return
			}
			fl.Flush()
		}
	}
}
