package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/plugvisor/plugvisor/transport"
)

// StateExport is a plugin's saved state in a portable, readable form:
// what `plugvisor state export` writes and `state import` and the
// testkits read. Values are the JSON the plugin stored; a value that is
// not JSON is written as {"$bytes": "<base64>"}.
type StateExport struct {
	Plugin       string                                `json:"plugin"`
	Version      string                                `json:"version,omitempty"`       // plugin version that wrote it
	StateVersion string                                `json:"state_version,omitempty"` // its state version
	At           time.Time                             `json:"at,omitzero"`
	Scopes       map[string]map[string]json.RawMessage `json:"scopes"`
}

// SavedState summarises one plugin's saved state (plugvisor state ls).
type SavedState struct {
	Plugin     string         `json:"plugin"`
	Configured bool           `json:"configured"` // false: orphaned, kept until "plugvisor state rm"
	Scopes     map[string]int `json:"scopes"`     // scope → number of keys
	// Orphaned lists the scopes of a configured plugin that belong to a
	// source or sink instance no configured pipeline uses (a pipeline
	// removed or renamed): kept until "plugvisor state rm PLUGIN SCOPE".
	Orphaned []string `json:"orphaned_scopes,omitempty"`
}

// ScopeNames lists the export's scopes that hold at least one key, sorted.
func (e *StateExport) ScopeNames() []string {
	out := make([]string, 0, len(e.Scopes))
	for name, kv := range e.Scopes {
		if len(kv) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

type rawBytes struct {
	Bytes []byte `json:"$bytes"`
}

func exportOf(plugin string, ck *checkpoint) *StateExport {
	e := &StateExport{Plugin: plugin, Scopes: map[string]map[string]json.RawMessage{}}
	if ck == nil {
		return e
	}
	e.Version, e.StateVersion, e.At = ck.meta.FromVersion, ck.meta.FromStateVersion, ck.at
	for name, kv := range ck.scopes {
		out := make(map[string]json.RawMessage, len(kv))
		for k, v := range kv {
			if json.Valid(v) {
				out[k] = json.RawMessage(v)
			} else {
				out[k], _ = json.Marshal(rawBytes{Bytes: v})
			}
		}
		e.Scopes[name] = out
	}
	return e
}

// scopesOf turns the export's values back into the bytes plugins stored.
func (e *StateExport) scopesOf() (transport.Scopes, error) {
	out := transport.Scopes{}
	for name, kv := range e.Scopes {
		m := make(map[string][]byte, len(kv))
		for k, v := range kv {
			var rb rawBytes
			if len(v) > 0 && v[0] == '{' && json.Unmarshal(v, &rb) == nil && rb.Bytes != nil {
				m[k] = rb.Bytes
				continue
			}
			if !json.Valid(v) {
				return nil, fmt.Errorf("state of %s, scope %q, key %q: not valid JSON", e.Plugin, name, k)
			}
			m[k] = append([]byte(nil), v...)
		}
		out[name] = m
	}
	return out, nil
}

// StateEdit changes a plugin's saved state: Set replaces whole scopes
// (each named scope ends up holding exactly the given keys), Delete
// removes a key (Key set) or a whole scope (Key empty) or everything
// (Scope empty).
type StateEdit struct {
	Set        *StateExport
	Scope, Key string
	Delete     bool
}

// apply returns the scopes after the edit and the scopes a live process
// must be told about (changed ones; emptied ones as empty maps).
func (ed StateEdit) apply(cur transport.Scopes) (next, changed transport.Scopes, err error) {
	next = transport.Scopes{}
	for name, kv := range cur {
		next[name] = kv
	}
	changed = transport.Scopes{}
	if ed.Set != nil {
		set, err := ed.Set.scopesOf()
		if err != nil {
			return nil, nil, err
		}
		for name, kv := range set {
			next[name], changed[name] = kv, kv
		}
		return next, changed, nil
	}
	if !ed.Delete {
		return next, changed, nil
	}
	for name, kv := range cur {
		if ed.Scope != "" && name != ed.Scope {
			continue
		}
		if ed.Key == "" {
			delete(next, name)
			changed[name] = map[string][]byte{}
			continue
		}
		if _, ok := kv[ed.Key]; !ok {
			continue
		}
		m := make(map[string][]byte, len(kv))
		for k, v := range kv {
			if k != ed.Key {
				m[k] = v
			}
		}
		next[name], changed[name] = m, m
	}
	return next, changed, nil
}

// ExportState checkpoints the serving generation (so the export is
// current) and returns the plugin's state; with no generation serving it
// returns the last checkpoint.
func (p *Plugin) ExportState(ctx context.Context) (*StateExport, error) {
	var e *StateExport
	var err error
	derr := p.do(ctx, func() {
		if err = p.checkpoint(ctx); err == nil {
			e = exportOf(p.name, p.ck)
		}
	})
	if derr != nil {
		return nil, derr
	}
	return e, err
}

// EditState applies ed to the plugin's state: the serving generation gets
// the changed scopes through a restore (an import written by another
// version is migrated by the plugin's Migrate hook), then the result is
// checkpointed. A source that keeps its position in memory sees the new
// state at its next start.
func (p *Plugin) EditState(ctx context.Context, ed StateEdit) error {
	var err error
	derr := p.do(ctx, func() { err = p.editState(ctx, ed) })
	if derr != nil {
		return derr
	}
	return err
}

func (p *Plugin) editState(ctx context.Context, ed StateEdit) error {
	if err := p.checkpoint(ctx); err != nil {
		return err
	}
	var cur transport.Scopes
	meta := transport.RestoreMeta{}
	if p.ck != nil {
		cur, meta = p.ck.scopes, p.ck.meta
	}
	next, changed, err := ed.apply(cur)
	if err != nil {
		return err
	}
	if ed.Set != nil && ed.Set.Version != "" {
		meta = transport.RestoreMeta{FromVersion: ed.Set.Version, FromStateVersion: ed.Set.StateVersion}
	}
	g := p.current()
	if g == nil {
		ck := &checkpoint{meta: meta, scopes: next, at: time.Now()}
		if p.ck != nil && ed.Set == nil {
			ck.meta = p.ck.meta
		}
		p.ck = ck
		return p.sup.store.save(p.name, ck)
	}
	if len(changed) > 0 {
		if meta.FromStateVersion != "" && meta.FromStateVersion != g.man.StateVersion && !g.man.Migrate {
			return fmt.Errorf("%w: the imported state has state version %q, %s %s reads %q and has no Migrate hook",
				ErrStateIncompatible, meta.FromStateVersion, g.man.Name, g.man.Version, g.man.StateVersion)
		}
		rctx, cancel := context.WithTimeout(ctx, p.sup.opts.RestoreTimeout.Duration)
		_, err := g.request(rctx, transport.Restore, transport.RestorePayload(meta, changed))
		cancel()
		if err != nil {
			return fmt.Errorf("restore state into %s: %w", p.name, err)
		}
	}
	if err := p.checkpoint(ctx); err != nil {
		return err
	}
	// A deleted scope comes back from the process as an empty one; the
	// checkpoint forgets it.
	for name, kv := range p.ck.scopes {
		if _, kept := next[name]; !kept && len(kv) == 0 {
			delete(p.ck.scopes, name)
		}
	}
	return p.sup.store.save(p.name, p.ck)
}

// StateFile is the checkpoint store of a stopped daemon, opened for the
// state tools. It fails while a daemon holds the store.
type StateFile struct{ st *store }

// OpenStateFile opens the checkpoint store under stateDir.
func OpenStateFile(stateDir string) (*StateFile, error) {
	st, err := openStore(stateDir, false, func(string) {})
	if err != nil {
		return nil, err
	}
	return &StateFile{st: st}, nil
}

// Close releases the store.
func (f *StateFile) Close() error { return f.st.close() }

// Plugins lists the plugins that have saved state, sorted.
func (f *StateFile) Plugins() ([]string, error) {
	var out []string
	err := f.st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Export returns plugin's saved state (empty when it has none).
func (f *StateFile) Export(plugin string) (*StateExport, error) {
	ck, err := f.st.load(plugin)
	if err != nil {
		return nil, err
	}
	return exportOf(plugin, ck), nil
}

// Edit applies ed to plugin's saved state. Deleting every scope removes
// the plugin's entry.
func (f *StateFile) Edit(plugin string, ed StateEdit) error {
	ck, err := f.st.load(plugin)
	if err != nil {
		return err
	}
	if ck == nil {
		ck = &checkpoint{}
	}
	next, _, err := ed.apply(ck.scopes)
	if err != nil {
		return err
	}
	if ed.Set != nil && ed.Set.Version != "" {
		ck.meta = transport.RestoreMeta{FromVersion: ed.Set.Version, FromStateVersion: ed.Set.StateVersion}
	}
	if len(next) == 0 {
		return f.st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(plugin)) })
	}
	ck.scopes = next
	return f.st.save(plugin, ck)
}

// SavedStatePlugins lists the plugins that have a checkpoint in the
// running supervisor's store (for `status` to show orphaned state).
func (s *Supervisor) SavedStatePlugins() ([]string, error) {
	return (&StateFile{st: s.store}).Plugins()
}

// ExportSaved returns the saved state of a plugin that is not configured
// (orphaned state), straight from the store.
func (s *Supervisor) ExportSaved(plugin string) (*StateExport, error) {
	return (&StateFile{st: s.store}).Export(plugin)
}

// EditSaved edits the saved state of a plugin that is not configured.
func (s *Supervisor) EditSaved(plugin string, ed StateEdit) error {
	if _, err := s.Plugin(plugin); err == nil {
		return fmt.Errorf("plugin %s is running: edit its state through the plugin", plugin)
	}
	return (&StateFile{st: s.store}).Edit(plugin, ed)
}
