package supervisor

import (
	"context"
	"fmt"
	"time"
)

// The driver layer (package host) builds and fetches the specs a plugin
// runs. These methods are its one way into the plugin's lifecycle: it
// registers the plugin before its first spec exists, reports what it is
// doing and how it went, and hands over specs; it keeps no status of its
// own.

// AddPending registers a plugin whose first spec the driver layer is
// still making (a build or a fetch): it is starting, shows the driver
// layer's activity and errors, and starts on Start. spec carries only
// what the status shows (Driver, Kind).
func (s *Supervisor) AddPending(name string, spec Spec) (*Plugin, error) {
	return s.add(name, spec, false)
}

// Start hands a pending plugin its first spec; the start runs on the
// plugin's loop (its outcome shows in the status and events). A plugin
// that has a spec takes new ones through Reload.
func (p *Plugin) Start(ctx context.Context, spec Spec) error {
	var err error
	derr := p.do(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.hasSpec {
			err = fmt.Errorf("plugin %s already has a spec: reload it instead", p.name)
			return
		}
		p.spec, p.hasSpec = spec, true
		now := make(chan time.Time, 1)
		now <- time.Now()
		p.retry = now // the loop starts it next, as a retry is started
	})
	if derr != nil {
		return derr
	}
	return err
}

// Spec returns the spec the plugin runs (the last one started or swapped
// to); ok is false while the first is still being made.
func (p *Plugin) Spec() (spec Spec, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec, p.hasSpec
}

func (p *Plugin) hasSpecNow() bool {
	_, ok := p.Spec()
	return ok
}

// Preparing shows what the driver layer does for the plugin's next spec
// (ActivityBuilding, ActivityFetching; ActivityIdle when done).
func (p *Plugin) Preparing(activity Activity) {
	p.move(func(from phase) phase { return from }, change{activity: activity})
}

// Prepared records how making a spec went: err is shown as the last error
// while the running generation (if any) serves on; nil clears it. A
// plugin that never had a spec is failed until one is made.
func (p *Plugin) Prepared(err error) {
	p.move(func(from phase) phase {
		if err != nil && !p.hasSpec {
			return phaseFailed
		}
		return from
	}, change{err: err, clearErr: err == nil})
}
