package supervisor

import (
	"sync"
	"sync/atomic"
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

// bus fans events out to subscribers. A subscriber that falls behind by
// more than its buffer loses the oldest events and is told so through
// Dropped — the daemon never blocks on a slow reader.
type bus struct {
	mu   sync.Mutex
	subs map[*Subscriber]struct{}
}

// Subscriber receives events until Close.
type Subscriber struct {
	C       <-chan Event
	c       chan Event
	b       *bus
	dropped atomic.Int64
}

// Dropped counts events this subscriber missed because it fell behind.
func (s *Subscriber) Dropped() int64 { return s.dropped.Load() }

// Close stops delivery.
func (s *Subscriber) Close() {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
}

func (b *bus) subscribe(buf int) *Subscriber {
	if buf <= 0 {
		buf = 256
	}
	c := make(chan Event, buf)
	s := &Subscriber{C: c, c: c, b: b}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*Subscriber]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *bus) publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for {
			select {
			case s.c <- e:
			default:
				select {
				case <-s.c:
					s.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
}
