package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/plugvisor/plugvisor/supervisor"
)

// StateBackend is a Backend whose plugins' state can be read and changed
// (the /state endpoints behind `plugvisor state`).
type StateBackend interface {
	SavedStates(ctx context.Context) ([]supervisor.SavedState, error)
	ExportState(ctx context.Context, plugin string) (*supervisor.StateExport, error)
	EditState(ctx context.Context, plugin string, ed supervisor.StateEdit) error
}

// maxImport bounds a state import body.
const maxImport = 256 << 20

func (s *server) stateBackend(w http.ResponseWriter) (StateBackend, bool) {
	b, ok := s.b.(StateBackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this daemon has no state endpoints")
	}
	return b, ok
}

// GET /state: every plugin with state, orphaned ones marked.
func (s *server) stateList(w http.ResponseWriter, r *http.Request) {
	b, ok := s.stateBackend(w)
	if !ok {
		return
	}
	list, err := b.SavedStates(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// GET /state/{plugin}: the plugin's state export.
func (s *server) stateGet(w http.ResponseWriter, r *http.Request) {
	b, ok := s.stateBackend(w)
	if !ok {
		return
	}
	e, err := b.ExportState(r.Context(), r.PathValue("plugin"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// PUT /state/{plugin}: import an export; each scope in it is replaced.
func (s *server) statePut(w http.ResponseWriter, r *http.Request) {
	b, ok := s.stateBackend(w)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxImport+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the state: "+err.Error())
		return
	}
	if len(body) > maxImport {
		writeError(w, http.StatusRequestEntityTooLarge, "state import larger than 256 MiB")
		return
	}
	var e supervisor.StateExport
	if err := json.Unmarshal(body, &e); err != nil || e.Scopes == nil {
		msg := "the body is not a state export (plugvisor state export NAME): want {\"scopes\": {...}}"
		if err != nil {
			msg += ": " + err.Error()
		}
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if err := b.EditState(r.Context(), r.PathValue("plugin"), supervisor.StateEdit{Set: &e}); err != nil {
		s.stateFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DELETE /state/{plugin}?scope=S&key=K: remove a key, a scope or all.
func (s *server) stateDelete(w http.ResponseWriter, r *http.Request) {
	b, ok := s.stateBackend(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	if q.Get("key") != "" && q.Get("scope") == "" {
		writeError(w, http.StatusBadRequest, "key= needs scope=")
		return
	}
	ed := supervisor.StateEdit{Delete: true, Scope: q.Get("scope"), Key: q.Get("key")}
	if err := b.EditState(r.Context(), r.PathValue("plugin"), ed); err != nil {
		s.stateFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) stateFail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, supervisor.ErrStateIncompatible) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.fail(w, r, err)
}
