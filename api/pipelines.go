package api

import (
	"net/http"

	"github.com/plugvisor/plugvisor/supervisor"
)

// PipelineBackend is implemented by a backend that runs pipelines (the
// daemon's host): GET /pipelines and GET /pipelines/{name} serve it. A
// backend without it answers those with an empty list and 404.
type PipelineBackend interface {
	Pipelines() []supervisor.PipelineStatus
	// Pipeline returns one pipeline; an error means there is none by that name.
	Pipeline(name string) (supervisor.PipelineStatus, error)
}

// pipelineRoutes adds the pipeline endpoints to mux.
func (s *server) pipelineRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /pipelines", func(w http.ResponseWriter, _ *http.Request) {
		list := []supervisor.PipelineStatus{}
		if pb, ok := s.b.(PipelineBackend); ok {
			list = append(list, pb.Pipelines()...)
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /pipelines/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		pb, ok := s.b.(PipelineBackend)
		if !ok {
			writeError(w, http.StatusNotFound, "no pipeline "+name+": this host runs no pipelines")
			return
		}
		st, err := pb.Pipeline(name)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}
