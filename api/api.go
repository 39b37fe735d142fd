// Package api is plugvisor's HTTP management API (see "HTTP API" in
// docs/DESIGN.md): plugin status, add/remove, reload and rollback, logs,
// symbols, function calls, server-sent lifecycle events, Prometheus metrics
// and a health check. JSON in, JSON out; every error is {"error": "..."}.
//
// Security: whoever can use the API can run code as the daemon's user
// (POST /plugins builds and starts any driver). NewServer is the routes
// alone; the daemon serves them through Guard (bearer token, Host, Origin
// and Content-Type rules) on a listener from Listen (loopback, a 0600 Unix
// socket, or TLS). See "API access" in docs/DESIGN.md.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// DefaultAddr is where the API listens unless configured otherwise.
const DefaultAddr = "127.0.0.1:9081"

// MaxBody bounds request bodies (a function's JSON input, a new plugin's
// config); a larger body is refused with 413.
const MaxBody = 16 << 20

// Symbol is one symbol a plugin serves, an element of GET /symbols.
type Symbol struct {
	Plugin string          `json:"plugin"`
	Kind   string          `json:"kind"` // source, sink or function
	Name   string          `json:"name"`
	In     json.RawMessage `json:"in,omitempty"`   // function input's JSON Schema, when announced
	Out    json.RawMessage `json:"out,omitempty"`  // function output's
	Item   json.RawMessage `json:"item,omitempty"` // a source's or sink's item
}

// Backend is what the API serves: the daemon's host. Errors are matched
// with errors.Is against the supervisor's sentinels to pick status codes.
type Backend interface {
	Statuses() []supervisor.Status
	Status(name string) (supervisor.Status, error)
	AddPlugin(ctx context.Context, name, driver string, cfg map[string]any) (supervisor.Status, error)
	RemovePlugin(ctx context.Context, name string) error
	Reload(ctx context.Context, name string, force bool) (*supervisor.Report, error)
	Rollback(ctx context.Context, name string) (*supervisor.Report, error)
	Logs(name string, n int) ([]supervisor.LogLine, error)
	Symbols() []Symbol
	Call(ctx context.Context, plugin, fn string, input []byte) ([]byte, error)
	// Events subscribes to lifecycle events; buf bounds how far a slow
	// reader may fall behind. stop ends the subscription.
	Events(buf int) (events <-chan supervisor.Event, stop func())
	Gatherer() prometheus.Gatherer
}

type server struct {
	b           Backend
	log         zerolog.Logger
	callTimeout time.Duration
}

// DefaultCallTimeout bounds a call through the API unless CallTimeout or
// the request's ?timeout= says otherwise.
const DefaultCallTimeout = 30 * time.Second

// Option changes a NewServer default.
type Option func(*server)

// CallTimeout sets the default deadline of POST /functions ([supervisor]
// call_timeout); a request's ?timeout= overrides it.
func CallTimeout(d time.Duration) Option {
	return func(s *server) {
		if d > 0 {
			s.callTimeout = d
		}
	}
}

// NewServer returns the API's routes, without access control (wrap them
// in Guard to serve them). log may be nil.
func NewServer(b Backend, log *zerolog.Logger, opts ...Option) http.Handler {
	s := &server{b: b, log: zerolog.Nop(), callTimeout: DefaultCallTimeout}
	if log != nil {
		s.log = *log
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /plugins", s.list)
	mux.HandleFunc("POST /plugins", s.add)
	mux.HandleFunc("GET /plugins/{name}", s.get)
	mux.HandleFunc("DELETE /plugins/{name}", s.remove)
	mux.HandleFunc("POST /plugins/{name}/reload", s.reload)
	mux.HandleFunc("POST /plugins/{name}/rollback", s.rollback)
	mux.HandleFunc("GET /plugins/{name}/logs", s.logs)
	mux.HandleFunc("GET /symbols", s.symbols)
	mux.HandleFunc("POST /functions/{plugin}/{function}", s.call)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /state", s.stateList)
	mux.HandleFunc("GET /state/{plugin}", s.stateGet)
	mux.HandleFunc("PUT /state/{plugin}", s.statePut)
	mux.HandleFunc("DELETE /state/{plugin}", s.stateDelete)
	s.pipelineRoutes(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.Gatherer(), promhttp.HandlerOpts{}))
	s.probes(mux) // /livez, /readyz, /healthz: probes.go
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			notFound(w, r, mux)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// notFound answers a request no endpoint matched as JSON, keeping the
// mux's status code (404, or 405 with its Allow header).
func notFound(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	rec := &headerOnly{h: http.Header{}}
	mux.ServeHTTP(rec, r)
	if allow := rec.h.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	code := rec.code
	if code == 0 || code < 400 {
		code = http.StatusNotFound
	}
	msg := fmt.Sprintf("no endpoint %s %s (see GET /plugins, /symbols, /events, /metrics, /healthz, /livez, /readyz)", r.Method, r.URL.Path)
	if code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("%s %s is not allowed; allowed: %s", r.Method, r.URL.Path, rec.h.Get("Allow"))
	}
	writeError(w, code, msg)
}

// headerOnly records the status and headers of the mux's own error reply.
type headerOnly struct {
	h    http.Header
	code int
}

func (h *headerOnly) Header() http.Header         { return h.h }
func (h *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerOnly) WriteHeader(code int)        { h.code = code }

func (s *server) list(w http.ResponseWriter, _ *http.Request) {
	st := s.b.Statuses()
	if st == nil {
		st = []supervisor.Status{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// addRequest is the body of POST /plugins.
type addRequest struct {
	Name   string         `json:"name"`
	Driver string         `json:"driver"`
	Config map[string]any `json:"config"`
}

func (s *server) add(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if !readJSON(w, r, &req) {
		return
	}
	switch {
	case req.Name == "":
		writeError(w, http.StatusBadRequest, `missing "name": POST /plugins takes {"name", "driver", "config"}`)
		return
	case req.Driver == "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`missing "driver" for plugin %q: a builtin name, a path or a remote URL`, req.Name))
		return
	}
	if _, err := s.b.Status(req.Name); err == nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("plugin %q already exists: DELETE /plugins/%s first", req.Name, req.Name))
		return
	}
	st, err := s.b.AddPlugin(r.Context(), req.Name, req.Driver, req.Config)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (s *server) remove(w http.ResponseWriter, r *http.Request) {
	if err := s.b.RemovePlugin(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) reload(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force, err := boolParam(r, "force")
	if err == nil {
		var async bool
		async, err = boolParam(r, "async")
		if err == nil && async {
			if _, err := s.b.Status(name); err != nil {
				s.fail(w, r, err)
				return
			}
			// The reload outlives the request; the swap is bounded by its
			// own phase deadlines, the context only bounds waiting for it.
			ctx := context.WithoutCancel(r.Context())
			go func() {
				if _, err := s.b.Reload(ctx, name, force); err != nil {
					s.log.Warn().Err(err).Str("plugin", name).Msg("async reload failed")
				}
			}()
			writeJSON(w, http.StatusAccepted, map[string]string{"status": "reloading", "plugin": name})
			return
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rep, err := s.b.Reload(r.Context(), name, force)
	s.report(w, r, rep, err)
}

func (s *server) rollback(w http.ResponseWriter, r *http.Request) {
	rep, err := s.b.Rollback(r.Context(), r.PathValue("name"))
	s.report(w, r, rep, err)
}

// report answers a reload or rollback: the report, or the error with the
// failed attempt's report beside it when there is one.
func (s *server) report(w http.ResponseWriter, r *http.Request, rep *supervisor.Report, err error) {
	if err != nil {
		code := statusOf(err)
		s.logErr(r, code, err)
		body := map[string]any{"error": err.Error()}
		if rep != nil {
			body["report"] = rep
		}
		writeJSON(w, code, body)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad n=%q: want a count of lines, such as n=100", v))
			return
		}
	}
	if r.URL.Query().Get("follow") == "1" {
		s.followLogs(w, r, n)
		return
	}
	lines, err := s.b.Logs(r.PathValue("name"), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if lines == nil {
		lines = []supervisor.LogLine{}
	}
	writeJSON(w, http.StatusOK, lines)
}

func (s *server) symbols(w http.ResponseWriter, _ *http.Request) {
	syms := s.b.Symbols()
	if syms == nil {
		syms = []Symbol{}
	}
	writeJSON(w, http.StatusOK, syms)
}

func (s *server) call(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var input []byte // nil = null
	if len(body) > 0 {
		if !json.Valid(body) {
			writeError(w, http.StatusBadRequest, "the body is not valid JSON: send the function's input as JSON (a string is \"quoted\"), or nothing for null")
			return
		}
		input = body
	}
	timeout := s.callTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("bad timeout=%q: want a positive duration such as 2s or 500ms", v))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	out, err := s.b.Call(ctx, r.PathValue("plugin"), r.PathValue("function"), input)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		err = fmt.Errorf("%w (the call's deadline, %v: raise it with ?timeout= or [supervisor] call_timeout)", err, timeout)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(out) == 0 {
		out = []byte("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// fail writes err as {"error"} with the status code that fits it.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	s.logErr(r, code, err)
	writeError(w, code, err.Error())
}

func (s *server) logErr(r *http.Request, code int, err error) {
	if code >= 500 {
		s.log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Int("status", code).Msg("api request failed")
	}
}

// statusOf maps the backend's errors to HTTP status codes.
func statusOf(err error) int {
	var callErr *supervisor.CallError
	var cfgErr *config.Error
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &callErr):
		return http.StatusUnprocessableEntity
	case errors.Is(err, supervisor.ErrUnknownPlugin), errors.Is(err, supervisor.ErrUnknownSymbol):
		return http.StatusNotFound
	case errors.Is(err, supervisor.ErrCrashed):
		return http.StatusBadGateway
	case errors.As(err, &cfgErr):
		return http.StatusBadRequest
	case errors.As(err, &maxErr), errors.Is(err, transport.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	// The old generation keeps serving: the request conflicts with the
	// plugin's current state rather than failing the server.
	case errors.Is(err, supervisor.ErrSwapFailed), errors.Is(err, supervisor.ErrSwapInProgress),
		errors.Is(err, supervisor.ErrDrainTimeout), errors.Is(err, supervisor.ErrStateIncompatible),
		errors.Is(err, supervisor.ErrStartFailed):
		return http.StatusConflict
	case errors.Is(err, supervisor.ErrStopped), errors.Is(err, supervisor.ErrNotRunning):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func boolParam(r *http.Request, key string) (bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("bad %s=%q: want 1 or 0", key, v)
	}
	return b, nil
}

// readBody reads a body of at most MaxBody bytes, answering 413 beyond.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	buf, err := readAll(r)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d MiB", MaxBody>>20))
		} else {
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return buf, true
}

// readJSON decodes the body into v, strictly, answering 400 (or 413).
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readBody(w, r)
	if !ok {
		return false
	}
	if err := decodeStrict(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// heartbeat is how often /events writes a comment so proxies and clients
// see a live connection; a variable for tests.
var heartbeat = 15 * time.Second
