package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// shutdownKey marks the base context of requests served by Serve: its
// value is a channel closed when shutdown begins, so event streams end
// instead of holding the graceful shutdown open.
type shutdownKey struct{}

// ShutdownGrace bounds how long Serve waits for in-flight requests (a
// reload in progress, say) once its context ends.
const ShutdownGrace = 10 * time.Second

// Serve listens on addr as Listen does (DefaultAddr when empty; port 0
// picks a free one; plain HTTP only on loopback or a Unix socket) and
// serves h until ctx ends, then shuts down gracefully. Wrap h in Guard.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	ln, _, err := Listen(ListenOptions{Addr: addr})
	if err != nil {
		return err
	}
	return ServeListener(ctx, ln, h)
}

// Server limits (see "API access" in docs/DESIGN.md); variables for tests.
var (
	// readTimeout bounds reading a request, headers and body; a slow
	// client cannot hold a connection by trickling its body. (net/http
	// lifts it once the body is read, so long reloads and event streams
	// are not cut.)
	readTimeout = 60 * time.Second
	// idleTimeout closes keep-alive connections left idle.
	idleTimeout = 60 * time.Second
)

// MaxHeaderBytes bounds a request's header block.
const MaxHeaderBytes = 64 << 10

// ServeListener serves h on ln until ctx ends, then shuts down gracefully:
// event streams end at once, other requests get ShutdownGrace to finish.
// It closes ln.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	closing := make(chan struct{})
	base := context.WithValue(context.Background(), shutdownKey{}, (<-chan struct{})(closing))
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	srv.RegisterOnShutdown(func() { close(closing) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("api: shutdown: %w", err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("api: serve: %w", serr)
	}
	return err
}

// events streams lifecycle events as server-sent events until the client
// goes away, the server shuts down or the backend ends the stream.
// ?plugin=NAME keeps only that plugin's events.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported by this connection")
		return
	}
	only := r.URL.Query().Get("plugin")
	evs, stop := s.b.Events(256)
	defer stop()
	var closing <-chan struct{}
	if c, ok := r.Context().Value(shutdownKey{}).(<-chan struct{}); ok {
		closing = c
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": plugvisor events\n\n")
	fl.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-closing:
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
				return
			}
			fl.Flush()
		case e, ok := <-evs:
			if !ok {
				return
			}
			if only != "" && e.Plugin != only {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				s.log.Warn().Err(err).Str("event", e.Type).Msg("cannot encode event")
				continue
			}
			// json.Marshal output holds no raw newline, so one data: line.
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(r.Body)
}

// decodeStrict decodes one JSON value, refusing unknown fields and
// trailing data, with errors that say where.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("the body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("syntax error at byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return fmt.Errorf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
		}
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
