package supervisor

import (
	"time"
)

// EventType names an event: the `event:` names of GET /events.
type EventType string

// Event types.
const (
	EventBuildStarted    EventType = "build.started"
	EventBuildFailed     EventType = "build.failed"
	EventBuildSucceeded  EventType = "build.succeeded"
	EventSwapStarted     EventType = "swap.started"
	EventSwapFinished    EventType = "swap.finished"
	EventSwapFailed      EventType = "swap.failed"
	EventPluginCrashed   EventType = "plugin.crashed"
	EventPluginRestarted EventType = "plugin.restarted"
	EventPluginStarted   EventType = "plugin.started" // first generation serving (after add or a host start)
	EventPluginAdded     EventType = "plugin.added"
	EventPluginRemoved   EventType = "plugin.removed"
	EventConfigApplied   EventType = "config.applied"
	EventFetchFailed     EventType = "fetch.failed"
)

// Event is one lifecycle event.
type Event struct {
	Type       EventType `json:"type"`
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
