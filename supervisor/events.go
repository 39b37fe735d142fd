package supervisor

import (
	"time"
)

// Event types, the `event:` names of GET /events.
const (
	EventBuildStarted    = "build.started"
	EventBuildFailed     = "build.failed"
	EventBuildSucceeded  = "build.succeeded"
	EventSwapStarted     = "swap.started"
	EventSwapFinished    = "swap.finished"
	EventSwapFailed      = "swap.failed"
	EventPluginCrashed   = "plugin.crashed"
	EventPluginRestarted = "plugin.restarted"
	EventPluginStarted   = "plugin.started" // first generation serving (after add or a host start)
	EventPluginAdded     = "plugin.added"
	EventPluginRemoved   = "plugin.removed"
	EventConfigApplied   = "config.applied"
	EventFetchFailed     = "fetch.failed"
)

// Event is one lifecycle event.
type Event struct {
	Type       string    `json:"type"`
	Plugin     string    `json:"plugin,omitempty"`
	Generation int       `json:"generation,omitempty"`
	At         time.Time `json:"at"`
	Error      string    `json:"error,omitempty"`
	Report     *Report   `json:"report,omitempty"`
	BuildMS    float64   `json:"build_ms,omitempty"`
	Build      string    `json:"build,omitempty"`
	Detail     any       `json:"detail,omitempty"`
}

// bus fans events out to subscribers (see fanout).
type bus struct{ fanout[Event] }

// Subscriber receives events until Close; Dropped counts those it missed
// by falling behind.
type Subscriber = Feed[Event]

func (b *bus) publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	b.fanout.publish(e)
}
