package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// State is a plugin's lifecycle state as the status and the HTTP API show
// it: the phases of lifecycle.go, coarser (stateOf).
type State string

// Plugin lifecycle states.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff" // crashed; restarting after a delay
	StateFailed   State = "failed"  // gave up restarting; a reload or a new build tries again
	StateStopped  State = "stopped"
	StateWaiting  State = "waiting" // an external plugin with no instance connected
)

// Activity says what a plugin is doing besides serving.
type Activity string

// Activities.
const (
	ActivityIdle     Activity = "idle"
	ActivityFetching Activity = "fetching"
	ActivityBuilding Activity = "building"
	ActivitySwapping Activity = "swapping"
)

// Status is a snapshot of one plugin, the object of GET /plugins/{name}.
type Status struct {
	Name       string   `json:"name"`
	Driver     string   `json:"driver"`
	Kind       string   `json:"kind"` // builtin, binary, source, remote, command
	State      State    `json:"state"`
	Activity   Activity `json:"activity"`
	Generation int      `json:"generation"`
	PID        int      `json:"pid"`
	Version    string   `json:"version"`
	Build      string   `json:"build"`
	Restarts   int      `json:"restarts"`
	Symbols    Symbols  `json:"symbols"`
	LastError  string   `json:"last_error"`
	LastReload *Report  `json:"last_reload"`
	Uptime     Duration `json:"uptime_ms"`
	InFlight   int      `json:"in_flight"` // calls awaiting an answer
	// Instances lists the generations serving now (instances.go): the
	// primary, and replicas where configured. External instances show
	// where they connected from and their certificate name.
	Instances []InstanceStatus `json:"instances"`
}

// Symbols lists what a plugin offers.
type Symbols struct {
	Sources   []string `json:"sources"`
	Sinks     []string `json:"sinks"`
	Functions []string `json:"functions"`
	// Schemas is what the plugin announced about its symbols' JSON, by
	// symbol name (absent for symbols, or plugins, that announce none).
	Schemas map[string]transport.SymbolSchema `json:"schemas,omitempty"`
}

// Report describes one swap (or a failed attempt), the body of
// POST /plugins/{name}/reload and Status.LastReload.
type Report struct {
	Generation  int       `json:"generation"` // the generation serving afterwards
	From        int       `json:"from"`       // the generation replaced
	BuildMS     float64   `json:"build_ms"`
	SwapMS      float64   `json:"swap_ms"`  // start of the new generation to retirement of the old
	PauseMS     float64   `json:"pause_ms"` // handles paused: the extra latency a call could see
	Drained     int       `json:"drained"`  // calls answered, source items read and sink items acknowledged while draining
	StateKeys   int       `json:"state_keys"`
	Phases      Phases    `json:"phases"`
	Forced      bool      `json:"forced,omitempty"`
	AtLeastOnce string    `json:"at_least_once,omitempty"` // what may have been delivered twice, when a drain could not finish
	Error       string    `json:"error,omitempty"`
	At          time.Time `json:"at"`
	// SchemaChanges lists how the schemas of symbols in use changed
	// ("function count: input: field n: integer → string").
	SchemaChanges []string `json:"schema_changes,omitempty"`
	// Replicas counts the secondaries the reload replaced one at a time;
	// ReplicaErrors says which serve on because their replacement failed.
	Replicas      int      `json:"replicas,omitempty"`
	ReplicaErrors []string `json:"replica_errors,omitempty"`
}

// Phases splits a swap's duration, in milliseconds.
type Phases struct {
	StartMS    float64 `json:"start_ms"`
	DrainMS    float64 `json:"drain_ms"`
	SnapshotMS float64 `json:"snapshot_ms"`
	RestoreMS  float64 `json:"restore_ms"`
	OpenMS     float64 `json:"open_ms"`
	RetireMS   float64 `json:"retire_ms"`
}

// Duration marshals as milliseconds.
type Duration time.Duration

// MarshalJSON writes the duration in milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", float64(time.Duration(d))/float64(time.Millisecond))), nil
}

// UnmarshalJSON reads milliseconds back.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("duration in ms: %w", err)
	}
	*d = Duration(v * float64(time.Millisecond))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Errors callers can test with errors.Is.
var (
	ErrUnknownPlugin     = errors.New("no such plugin")
	ErrUnknownSymbol     = errors.New("no such symbol")
	ErrStopped           = errors.New("plugin stopped")
	ErrCrashed           = errors.New("plugin crashed")
	ErrSwapFailed        = errors.New("swap failed")
	ErrSwapInProgress    = errors.New("a swap is in progress")
	ErrNotRunning        = errors.New("plugin is not running")
	ErrStartFailed       = errors.New("plugin failed to start")
	ErrDrainTimeout      = errors.New("drain timed out")
	ErrStateIncompatible = errors.New("state version incompatible")
)

// CallError is an error returned by the plugin's function itself (HTTP 422).
type CallError struct {
	Plugin, Function string
	Msg              string
	Panic            bool
}

func (e *CallError) Error() string {
	if e.Panic {
		return fmt.Sprintf("%s.%s panicked: %s", e.Plugin, e.Function, e.Msg)
	}
	return e.Msg
}
