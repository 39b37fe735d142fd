package transport

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"github.com/plugvisor/plugvisor/schema"
)

// Environment variables through which the host hands a child what it needs.
// The host sets exactly these (and the ones the user configured); it never
// lets the inherited environment override them.
const (
	EnvControl    = "PLUGVISOR_CONTROL"    // address of the control socket to dial
	EnvToken      = "PLUGVISOR_TOKEN"      // per-process secret, echoed in Hello
	EnvProtocol   = "PLUGVISOR_PROTOCOL"   // protocol version the host speaks
	EnvPlugin     = "PLUGVISOR_PLUGIN"     // plugin name in the config
	EnvGeneration = "PLUGVISOR_GENERATION" // generation number
	EnvHostPID    = "PLUGVISOR_HOST_PID"   // the SDK exits when its parent changes
	EnvMaxFrame   = "PLUGVISOR_MAX_FRAME"  // frame size limit in bytes
)

// Environment of an external instance: a plugin started outside plugvisor
// connects out to the daemon's listener with these (see docs/protocol.md,
// External instances).
const (
	EnvConnect       = "PLUGVISOR_CONNECT"         // tls+tcp://HOST:PORT of the daemon's listener
	EnvTLSCert       = "PLUGVISOR_TLS_CERT"        // PEM client certificate
	EnvTLSKey        = "PLUGVISOR_TLS_KEY"         // PEM key of the client certificate
	EnvTLSCA         = "PLUGVISOR_TLS_CA"          // PEM CA that signed the daemon's server certificate
	EnvTLSServerName = "PLUGVISOR_TLS_SERVER_NAME" // name to verify in the server certificate; default HOST
)

// Manifest is what a plugin announces about itself in the handshake.
type Manifest struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	StateVersion string   `json:"state_version,omitempty"`
	Language     string   `json:"language,omitempty"`
	Sources      []string `json:"sources"`
	Sinks        []string `json:"sinks"`
	Functions    []string `json:"functions"`
	Migrate      bool     `json:"migrate,omitempty"` // the plugin has a Migrate hook
	// Schemas describes symbols' JSON (JSON Schema), by symbol name;
	// optional, per symbol: older plugins announce none.
	Schemas map[string]SymbolSchema `json:"schemas,omitempty"`
	// Features lists optional protocol features the plugin serves (see
	// FeatureCallBatch); a plugin built before a feature existed omits it
	// and the host does not use it.
	Features []string `json:"features,omitempty"`
}

// SymbolSchema is the JSON Schema of what a symbol takes and emits: In and
// Out for a function, Item for a source or a sink. Empty means not
// announced.
type SymbolSchema struct {
	In   json.RawMessage `json:"in,omitempty"`
	Out  json.RawMessage `json:"out,omitempty"`
	Item json.RawMessage `json:"item,omitempty"`
}

// Supports reports whether the manifest announces protocol feature f.
func (m *Manifest) Supports(f string) bool {
	for _, x := range m.Features {
		if x == f {
			return true
		}
	}
	return false
}

var symbolName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

// Validate checks a manifest received from a plugin.
func (m *Manifest) Validate() error {
	if !symbolName.MatchString(m.Name) {
		return fmt.Errorf("manifest name %q is not a valid name (letters, digits, _ . -)", m.Name)
	}
	if m.Version == "" {
		return fmt.Errorf("manifest of %q has no version", m.Name)
	}
	seen := map[string]string{}
	for kind, names := range map[string][]string{"source": m.Sources, "sink": m.Sinks, "function": m.Functions} {
		for _, n := range names {
			if !symbolName.MatchString(n) {
				return fmt.Errorf("manifest of %q: %s name %q is not a valid name", m.Name, kind, n)
			}
			if k, dup := seen[n]; dup {
				return fmt.Errorf("manifest of %q: symbol %q is both a %s and a %s", m.Name, n, k, kind)
			}
			seen[n] = kind
		}
	}
	return m.validateSchemas(seen)
}

// validateSchemas checks each announced schema names a symbol of the
// manifest, fits its kind and parses.
func (m *Manifest) validateSchemas(kinds map[string]string) error {
	for name, ss := range m.Schemas {
		kind, ok := kinds[name]
		if !ok {
			return fmt.Errorf("manifest of %q: schema for %q, which is not one of its symbols", m.Name, name)
		}
		if kind == KindFunction && len(ss.Item) > 0 {
			return fmt.Errorf("manifest of %q: function %q has an item schema (functions have in and out)", m.Name, name)
		}
		if kind != KindFunction && (len(ss.In) > 0 || len(ss.Out) > 0) {
			return fmt.Errorf("manifest of %q: %s %q has in/out schemas (sources and sinks have item)", m.Name, kind, name)
		}
		for part, raw := range map[string]json.RawMessage{"in": ss.In, "out": ss.Out, "item": ss.Item} {
			if _, err := schema.Parse(raw); err != nil {
				return fmt.Errorf("manifest of %q: %s schema of %s %q: %w", m.Name, part, kind, name, err)
			}
		}
	}
	return nil
}

// Has reports whether the manifest offers symbol name of kind.
func (m *Manifest) Has(kind, name string) bool {
	var list []string
	switch kind {
	case KindSource:
		list = m.Sources
	case KindSink:
		list = m.Sinks
	case KindFunction:
		list = m.Functions
	}
	for _, n := range list {
		if n == name {
			return true
		}
	}
	return false
}

// Symbol kinds.
const (
	KindSource    = "source"
	KindSink      = "sink"
	KindFunction  = "function"
	KindFunctions = "functions" // the one call channel of a process
)

// HelloMsg is the plugin's first frame on the control channel.
type HelloMsg struct {
	Protocol int      `json:"protocol"`
	Token    string   `json:"token"`
	PID      int      `json:"pid"`
	Manifest Manifest `json:"manifest"`
}

// WelcomeMsg accepts a plugin.
type WelcomeMsg struct {
	Plugin      string         `json:"plugin"`
	Generation  int            `json:"generation"`
	Config      map[string]any `json:"config"`
	HeartbeatMS int64          `json:"heartbeat_ms"` // the plugin exits if it hears nothing for 3× this
	// Replicas is how many instances of the plugin serve functions at once
	// (0 or absent = 1). With more than one, a function that writes state
	// fails that call with CodeReplicatedState: each replica would keep
	// its own copy and the state would split.
	Replicas int `json:"replicas,omitempty"`
	// Features lists optional frames the host understands from the
	// plugin (FeatureLeaving); a plugin sends none a host did not list,
	// since an older host drops a plugin sending an unknown frame.
	Features []string `json:"features,omitempty"`
}

// FeatureLeaving in WelcomeMsg.Features: the host takes the Leaving frame.
const FeatureLeaving = "leaving"

// HasFeature says whether the welcome lists feature f.
func (w *WelcomeMsg) HasFeature(f string) bool {
	return slices.Contains(w.Features, f)
}

// OpenMsg opens a symbol instance on its own data channel.
type OpenMsg struct {
	Instance string `json:"instance"` // also the state scope of the instance
	Kind     string `json:"kind"`     // source, sink or functions
	Symbol   string `json:"symbol"`   // empty for functions
	Address  string `json:"address"`  // data channel to dial
}

// StopMsg stops an instance: a source ends its Open, flushes and sends EOS.
type StopMsg struct {
	Instance string `json:"instance"`
}

// RestoreMeta precedes the state blob in a Restore payload.
type RestoreMeta struct {
	FromVersion      string `json:"from_version"`       // plugin version that wrote the state
	FromStateVersion string `json:"from_state_version"` // its state version
}

// ErrorMsg is the payload of Refuse, Error and Fail frames.
type ErrorMsg struct {
	Error string `json:"error"`
	Panic bool   `json:"panic,omitempty"`
	// Code classifies a Fail the host acts on (CodeReplicatedState); most
	// fails have none.
	Code string `json:"code,omitempty"`
}

// CodeReplicatedState marks the Fail of a function call that wrote state
// while the plugin runs with replicas > 1 (see WelcomeMsg.Replicas).
const CodeReplicatedState = "replicated_state"

// JSON encodes v for a frame payload; the types here cannot fail.
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("transport: encoding %T: %v", v, err))
	}
	return b
}

// Decode parses a JSON payload into v, naming the frame on failure.
func Decode(f Frame, v any) error {
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return fmt.Errorf("%w: %s payload is not valid JSON: %v", ErrMalformed, f.Type, err)
	}
	return nil
}

// ErrorText extracts the message of an Error, Fail or Refuse frame.
func ErrorText(f Frame) string {
	var m ErrorMsg
	if json.Unmarshal(f.Payload, &m) != nil || m.Error == "" {
		return fmt.Sprintf("%s frame without a message", f.Type)
	}
	return m.Error
}
