package host

import (
	"context"
	"sort"
	"strings"

	"github.com/plugvisor/plugvisor/supervisor"
)

// SavedStates lists every plugin with saved state, and every configured
// plugin, sorted. State of a plugin no longer configured (removed or
// renamed) is kept, marked not configured.
func (h *Host) SavedStates(ctx context.Context) ([]supervisor.SavedState, error) {
	names, err := h.sup.SavedStatePlugins()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	for _, st := range h.Statuses() {
		set[st.Name] = true
	}
	// The daemon opens source and sink instances only for pipelines (named
	// after them, plus NAME.dead_letter); an embedding host's own
	// instances are named "host" unless it chose otherwise.
	instances := map[string]bool{"host": true}
	h.mu.Lock()
	for _, p := range h.cfg.Pipelines {
		instances[p.Name] = true
		instances[p.Name+".dead_letter"] = true
	}
	h.mu.Unlock()
	out := make([]supervisor.SavedState, 0, len(set))
	for name := range set {
		_, cfgErr := h.Status(name)
		e, err := h.ExportState(ctx, name)
		if err != nil {
			return nil, err
		}
		s := supervisor.SavedState{Plugin: name, Configured: cfgErr == nil, Scopes: map[string]int{}}
		for _, sc := range e.ScopeNames() {
			s.Scopes[sc] = len(e.Scopes[sc])
			if s.Configured && orphanedScope(sc, instances) {
				s.Orphaned = append(s.Orphaned, sc)
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plugin < out[j].Plugin })
	return out, nil
}

// ExportState returns a plugin's state: checkpointed now when it runs,
// else as saved.
func (h *Host) ExportState(ctx context.Context, name string) (*supervisor.StateExport, error) {
	if p, err := h.sup.Plugin(name); err == nil {
		return p.ExportState(ctx)
	}
	return h.sup.ExportSaved(name)
}

// EditState changes a plugin's state: in the running plugin (restored into
// it, then checkpointed), or in the store when it does not run.
func (h *Host) EditState(ctx context.Context, name string, ed supervisor.StateEdit) error {
	if p, err := h.sup.Plugin(name); err == nil {
		return p.EditState(ctx, ed)
	}
	return h.sup.EditSaved(name, ed)
}

// orphanedScope tells whether scope is a source or sink instance
// ("source/SYMBOL/INSTANCE", "sink/SYMBOL/INSTANCE") that none of the
// configured instances names.
func orphanedScope(scope string, instances map[string]bool) bool {
	kind, rest, ok := strings.Cut(scope, "/")
	if !ok || (kind != "source" && kind != "sink") {
		return false
	}
	_, inst, ok := strings.Cut(rest, "/")
	return ok && !instances[inst]
}
