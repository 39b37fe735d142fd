package config

import (
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
)

// supervisorSettings is the [supervisor] table, described once: each key as
// written in config.toml, the Supervisor field it sets and the kind of
// value it takes. The known keys of "unknown key" messages, the reading and
// checking of each value and the folding of relative paths all come from
// it; the defaults come from DefaultSupervisor, and supervisor.Options
// embeds Supervisor itself. So a new setting is a field on Supervisor, its
// default in DefaultSupervisor and one line here (see docs/DESIGN.md
// "Settings and defaults"). Order: as "known keys" lists them.
var supervisorSettings = []setting{
	{"bin_dir", "BinDir", fsPath},
	{"remote_dir", "RemoteDir", fsPath},
	{"state_dir", "StateDir", fsPath},
	{"api", "API", apiAddr},
	{"debounce", "Debounce", durationOrOff},
	{"max_wait", "MaxWait", positiveDuration},
	{"mode", "Mode", runMode},
	{"poll", "Poll", boolean},
	{"start_timeout", "StartTimeout", positiveDuration},
	{"drain_timeout", "DrainTimeout", positiveDuration},
	{"snapshot_timeout", "SnapshotTimeout", positiveDuration},
	{"restore_timeout", "RestoreTimeout", positiveDuration},
	{"stop_grace", "StopGrace", positiveDuration},
	{"heartbeat_interval", "HeartbeatInterval", positiveDuration},
	{"heartbeat_timeout", "HeartbeatTimeout", positiveDuration},
	{"checkpoint_interval", "CheckpointInterval", positiveDuration},
	{"backoff_min", "BackoffMin", positiveDuration},
	{"backoff_max", "BackoffMax", positiveDuration},
	{"max_frame", "MaxFrame", intRange(MinMaxFrame, MaxMaxFrame, "bytes")},
	{"keep_builds", "KeepBuilds", intRange(1, 1000, "builds")},
	{"log_lines", "LogLines", intRange(1, 10_000_000, "lines")},
	{"api_hosts", "APIHosts", hostNames},
	{"api_tls_cert", "APITLSCert", fsPath},
	{"api_tls_key", "APITLSKey", fsPath},
	{"api_client_ca", "APIClientCA", fsPath},
	{"api_max_conns", "APIMaxConns", intRange(1, 1_000_000, "connections")},
	{"call_timeout", "CallTimeout", positiveDuration},
	{"queue_bytes", "QueueBytes", intRange(MinQueueBytes, MaxQueueBytes, "bytes")},
	{"recv_queue_bytes", "RecvQueueBytes", intRange(MinQueueBytes, MaxQueueBytes, "bytes")},
	{"fetch_max_bytes", "FetchMaxBytes", intRange(1<<20, MaxFetchMaxBytes, "bytes")},
	{"log_bytes_per_sec", "LogBytesPerSec", intRange(1024, 1<<30, "bytes per second")},
	{"log_lines_per_sec", "LogLinesPerSec", intRange(1, 10_000_000, "lines per second")},
	{"log_line_max", "LogLineMax", intRange(80, 1<<20, "bytes")},
	{"env_inherit", "EnvInherit", envList},
	{"config_check", "ConfigCheck", durationOrOff},
	{"shutdown_timeout", "ShutdownTimeout", positiveDuration},
	{"api_token_file", "APITokenFile", tokenFile},
	// External instances (config/external.go).
	{"listen", "Listen", listenAddr},
	{"tls_cert", "TLSCert", tlsFile},
	{"tls_key", "TLSKey", tlsFile},
	{"tls_client_ca", "TLSClientCA", tlsFile},
	{"remote_heartbeat_interval", "RemoteHeartbeatInterval", positiveDuration},
	{"remote_heartbeat_timeout", "RemoteHeartbeatTimeout", positiveDuration},
}

// A setting is one key of the [supervisor] table.
type setting struct {
	key   string // as written in config.toml
	field string // the Supervisor field it sets
	kind  kind
}

// A kind reads a decoded TOML value into a field of one Go type, reporting
// what is wrong with it (naming what is accepted) instead.
type kind struct {
	typ  reflect.Type // the field's type; nil: any integer type
	read func(p *parser, path []string, v any, f reflect.Value)
	path bool // a file or folder, made absolute from the config's folder
}

var (
	positiveDuration = kind{typ: reflect.TypeFor[Duration](), read: readDuration(false)}
	durationOrOff    = kind{typ: reflect.TypeFor[Duration](), read: readDuration(true)} // 0 turns it off
	boolean          = kind{typ: reflect.TypeFor[bool](), read: func(p *parser, path []string, v any, f reflect.Value) {
		if b, ok := v.(bool); ok {
			f.SetBool(b)
		} else {
			p.errorf(path, "want true or false, got %s", tomlType(v))
		}
	}}
	fsPath    = nonEmpty("want a folder path, got an empty string")
	tokenFile = nonEmpty("want a file path (a mounted Secret), or leave the key out for <state_dir>/api.token")
	apiAddr   = text(func(p *parser, path []string, s string) (string, bool) {
		if s == "" { // no HTTP API
			return "", true
		}
		if err := checkAddr(s); err != nil {
			p.errorf(path, "%v", err)
			return "", false
		}
		return s, true
	})
	runMode = text(func(p *parser, path []string, s string) (string, bool) {
		if s != ModeProcess && s != ModeInproc {
			p.errorf(path, "unknown mode %q — want %q (builtins run out of process and hot-reload) or %q (builtins run inside the host)",
				s, ModeProcess, ModeInproc)
			return "", false
		}
		return s, true
	})
	hostNames = kind{typ: reflect.TypeFor[[]string](), read: func(p *parser, path []string, v any, f reflect.Value) {
		l, ok := p.strList(path, v)
		if !ok {
			return
		}
		for _, h := range l {
			if h == "" || strings.ContainsAny(h, "/:@ \t") && net.ParseIP(h) == nil {
				p.errorf(path, "%q is not a host name — write names such as \"plugvisor.internal\" (no scheme, port or path)", h)
			}
		}
		for i := range l {
			l[i] = strings.ToLower(l[i])
		}
		f.Set(reflect.ValueOf(l))
	}}
	envList = kind{typ: reflect.TypeFor[[]string](), read: func(p *parser, path []string, v any, f reflect.Value) {
		if names, ok := p.envNames(path, v); ok {
			f.Set(reflect.ValueOf(names))
		}
	}}
)

func readDuration(allowZero bool) func(p *parser, path []string, v any, f reflect.Value) {
	return func(p *parser, path []string, v any, f reflect.Value) {
		p.duration(path, v, f.Addr().Interface().(*Duration), allowZero)
	}
}

// intRange takes a whole number from lo to hi, counted in unit.
func intRange(lo, hi int64, unit string) kind {
	return kind{read: func(p *parser, path []string, v any, f reflect.Value) {
		if n, ok := p.intIn(path, v, lo, hi, unit); ok {
			f.SetInt(n)
		}
	}}
}

// text takes a string that check accepts (and may rewrite).
func text(check func(p *parser, path []string, s string) (string, bool)) kind {
	return kind{typ: reflect.TypeFor[string](), read: func(p *parser, path []string, v any, f reflect.Value) {
		if s, ok := p.str(path, v); ok {
			if s, ok := check(p, path, s); ok {
				f.SetString(s)
			}
		}
	}}
}

// nonEmpty takes a path, made absolute from the config's folder; empty is
// refused with msg.
func nonEmpty(msg string) kind {
	k := text(func(p *parser, path []string, s string) (string, bool) {
		if s == "" {
			p.errorf(path, "%s", msg)
			return "", false
		}
		return s, true
	})
	k.path = true
	return k
}

func (k kind) fits(t reflect.Type) bool {
	if k.typ == nil {
		return t.Kind() == reflect.Int || t.Kind() == reflect.Int64
	}
	return t == k.typ
}

// indexed is a setting with its field's index in Supervisor.
type indexed struct {
	setting
	index int
}

var supervisorIndex = indexSettings(reflect.TypeFor[Supervisor](), supervisorSettings)

func keysOf(settings []setting) []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

// indexSettings finds each setting's field. A name that is not a field, or
// a kind that does not fit the field's type, is a mistake in the table
// above: it panics when the package loads, so no test run misses it.
func indexSettings(t reflect.Type, settings []setting) map[string]indexed {
	m := make(map[string]indexed, len(settings))
	for _, s := range settings {
		f, ok := t.FieldByName(s.field)
		switch {
		case !ok || len(f.Index) != 1:
			panic(fmt.Sprintf("config: [supervisor] %s: %s has no field %s", s.key, t.Name(), s.field))
		case !s.kind.fits(f.Type):
			panic(fmt.Sprintf("config: [supervisor] %s: field %s.%s is a %v; its kind reads another type", s.key, t.Name(), s.field, f.Type))
		}
		if _, dup := m[s.key]; dup {
			panic(fmt.Sprintf("config: [supervisor] %s is listed twice", s.key))
		}
		m[s.key] = indexed{s, f.Index[0]}
	}
	return m
}

func (p *parser) supervisor(path []string, v any, s *Supervisor, base string) {
	t, ok := p.table(path, v)
	if !ok {
		return
	}
	fields := reflect.ValueOf(s).Elem()
	for _, k := range slices.Sorted(maps.Keys(t)) {
		kp := child(path, k)
		set, ok := supervisorIndex[k]
		if !ok {
			p.unknown(kp, supervisorKeys)
			continue
		}
		set.kind.read(p, kp, t[k], fields.Field(set.index))
	}
	// Relations between values: reported at the later key's line.
	if s.MaxWait.Duration < s.Debounce.Duration {
		p.errorf(child(path, "max_wait"), "%v is shorter than debounce (%v) — max_wait bounds how long debouncing may delay a build", s.MaxWait, s.Debounce)
	}
	if s.HeartbeatTimeout.Duration <= s.HeartbeatInterval.Duration {
		p.errorf(child(path, "heartbeat_timeout"), "%v must be longer than heartbeat_interval (%v)", s.HeartbeatTimeout, s.HeartbeatInterval)
	}
	if s.BackoffMax.Duration < s.BackoffMin.Duration {
		p.errorf(child(path, "backoff_max"), "%v is shorter than backoff_min (%v)", s.BackoffMax, s.BackoffMin)
	}
	if (s.APITLSCert == "") != (s.APITLSKey == "") {
		p.errorf(child(path, "api_tls_key"), "api_tls_cert and api_tls_key go together — set both (PEM files) to serve the API over TLS, or neither")
	}
	if s.APIClientCA != "" && s.APITLSCert == "" {
		p.errorf(child(path, "api_client_ca"), "client certificates need TLS — set api_tls_cert and api_tls_key too")
	}
	if s.ShutdownTimeout.Duration < s.StopGrace.Duration {
		p.errorf(child(path, "shutdown_timeout"), "%v is shorter than stop_grace (%v) — a clean stop gives every plugin its grace", s.ShutdownTimeout, s.StopGrace)
	}
	for _, k := range supervisorKeys {
		set := supervisorIndex[k]
		if !set.kind.path {
			continue
		}
		f := fields.Field(set.index)
		if f.String() == "" {
			continue
		}
		if abs, err := expandPath(f.String(), base); err == nil {
			f.SetString(abs)
		}
	}
	if rest, ok := strings.CutPrefix(s.API, UnixScheme); ok {
		if abs, err := expandPath(rest, base); err == nil {
			s.API = UnixScheme + abs
		}
	}
	p.externalSupervisor(path, s)
}

// WithDefaults returns s with every unset field (a zero or negative number
// or duration, an empty string, a nil list) taken from DefaultSupervisor:
// for settings written in code (a program embedding the supervisor, a
// test), where parsing has not started from the defaults. Booleans are
// kept as they are (every default is false).
func (s Supervisor) WithDefaults() Supervisor {
	def := reflect.ValueOf(DefaultSupervisor())
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		n := f
		if f.Type() == reflect.TypeFor[Duration]() {
			n = f.Field(0)
		}
		var unset bool
		switch {
		case n.CanInt():
			unset = n.Int() <= 0
		case n.Kind() == reflect.String:
			unset = n.String() == ""
		case n.Kind() == reflect.Slice:
			unset = n.IsNil()
		}
		if unset {
			f.Set(def.Field(i))
		}
	}
	return s
}
