// Package config reads plugvisor's config.toml: the schema, its defaults,
// strict validation (an unknown key or a bad value is an error naming the key
// and its line) and the resolution of each plugin's driver string into what
// runs it: a builtin, a binary, a Go source folder, a remote repository or a
// command folder with a plugin.json manifest.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"
)

// Modes of running builtins.
const (
	// ModeProcess runs builtins out of process from their sources, so they
	// hot-reload like any source driver (development).
	ModeProcess = "process"
	// ModeInproc runs builtins inside the host (production).
	ModeInproc = "inproc"
)

// Duration is a time.Duration written in TOML as a string such as "100ms".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string ("100ms", "1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"100ms\", \"2s\" or \"1m30s\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is a loaded and validated config.toml.
type Config struct {
	Path       string             // absolute path of the file it was loaded from ("" if parsed from bytes)
	Dir        string             // absolute folder relative paths resolve against
	Supervisor Supervisor         // [supervisor]
	Plugins    map[string]*Plugin // [plugins.NAME], key = plugin name; never nil
	Pipelines  []Pipeline         // [[pipeline]], in file order
}

// Supervisor holds the [supervisor] table.
type Supervisor struct {
	// Folders, absolute (relative ones are taken from the config file's folder).
	BinDir    string // compiled plugins; default "bin"
	RemoteDir string // fetched repositories; default "remote-plugins"
	StateDir  string // sockets and checkpoints; default ".plugvisor"

	API      string   // HTTP API address; default "127.0.0.1:9081"
	Debounce Duration // quiet period after a change; default 100ms
	MaxWait  Duration // longest a stream of changes may delay a build; default 2s
	Mode     string   // ModeProcess (default) or ModeInproc
	Poll     bool     // watch by polling (filesystems without inotify); default false

	// Deadlines of the plugin lifecycle and the swap phases.
	StartTimeout       Duration // default 10s
	DrainTimeout       Duration // default 10s
	SnapshotTimeout    Duration // default 10s
	RestoreTimeout     Duration // default 10s
	StopGrace          Duration // default 3s
	HeartbeatInterval  Duration // default 1s
	HeartbeatTimeout   Duration // default 5s
	CheckpointInterval Duration // default 30s
	BackoffMin         Duration // default 100ms
	BackoffMax         Duration // default 30s

	MaxFrame   int // largest transport frame in bytes; default 16 MiB, at least 64 KiB
	KeepBuilds int // builds kept per plugin for rollback; default 5
	LogLines   int // log lines kept per plugin; default 1000

	// API access (docs/DESIGN.md "API access"). API may also be
	// "unix:///path/api.sock" (relative paths from the config's folder).
	APIHosts    []string // Host names accepted besides loopback (DNS rebinding guard)
	APITLSCert  string   // absolute; with APITLSKey serves HTTPS (required off loopback)
	APITLSKey   string   // absolute
	APIClientCA string   // absolute; when set, clients need a certificate it signed (mTLS)
	APIMaxConns int      // concurrent API connections; default 512, lowered to leave fds for plugins
	CallTimeout Duration // default deadline of calls through the API/CLI; default 30s
	// Byte bounds of host buffers and fetches (issue 9).
	QueueBytes     int   // each subscription queue and sink window; default 32 MiB
	RecvQueueBytes int   // each channel's received-but-unread messages; default 32 MiB
	FetchMaxBytes  int64 // what one fetch of a remote plugin may write; default 512 MiB
	// Plugin output on its way to the daemon's log, per plugin: bytes and
	// lines per second (more is dropped and counted), and the longest line.
	LogBytesPerSec int // default 1 MiB
	LogLinesPerSec int // default 1000
	LogLineMax     int // default 4096 bytes
	// EnvInherit names host variables every plugin gets beyond the minimal
	// set (PATH, HOME, …; see docs/DESIGN.md); default none.
	EnvInherit []string
	// Production (docs/deploy.md).
	ConfigCheck     Duration // config_check: how often the config file's content hash is compared, a backstop for missed events (ConfigMap swaps); 0 = never; default 10s
	ShutdownTimeout Duration // shutdown_timeout: bound on a clean stop after SIGTERM (drain, checkpoint, stop plugins); default 30s
	APITokenFile    string   // api_token_file: read the API token from this file (a mounted Secret) instead of <state_dir>/api.token; "" = default
	// External instances (config/external.go, docs/DESIGN.md "External
	// instances"): where plugins with driver = "external" connect, with
	// mutual TLS (PEM files, absolute), and their heartbeats.
	Listen                  string   // "tls+tcp://HOST:PORT"; "" = no listener
	TLSCert                 string   // tls_cert: the listener's certificate
	TLSKey                  string   // tls_key
	TLSClientCA             string   // tls_client_ca: signs the instances' client certificates
	RemoteHeartbeatInterval Duration // remote_heartbeat_interval; default 2s
	RemoteHeartbeatTimeout  Duration // remote_heartbeat_timeout; default 10s
}

// Limits of the [supervisor] integers.
const (
	DefaultMaxFrame = 16 << 20
	MinMaxFrame     = 64 << 10
	MaxMaxFrame     = 1 << 30

	DefaultQueueBytes     = 32 << 20
	DefaultRecvQueueBytes = 32 << 20
	DefaultFetchMaxBytes  = 512 << 20
	MinQueueBytes         = 64 << 10
	MaxQueueBytes         = 16 << 30
	MaxFetchMaxBytes      = 1 << 40
)

// DefaultSupervisor returns the defaults, with the folders still relative.
func DefaultSupervisor() Supervisor {
	d := func(v time.Duration) Duration { return Duration{v} }
	return Supervisor{
		BinDir:             "bin",
		RemoteDir:          "remote-plugins",
		StateDir:           ".plugvisor",
		API:                "127.0.0.1:9081",
		Debounce:           d(100 * time.Millisecond),
		MaxWait:            d(2 * time.Second),
		Mode:               ModeProcess,
		StartTimeout:       d(10 * time.Second),
		DrainTimeout:       d(10 * time.Second),
		SnapshotTimeout:    d(10 * time.Second),
		RestoreTimeout:     d(10 * time.Second),
		StopGrace:          d(3 * time.Second),
		HeartbeatInterval:  d(time.Second),
		HeartbeatTimeout:   d(5 * time.Second),
		CheckpointInterval: d(30 * time.Second),
		BackoffMin:         d(100 * time.Millisecond),
		BackoffMax:         d(30 * time.Second),
		MaxFrame:           DefaultMaxFrame,
		KeepBuilds:         5,
		LogLines:           1000,
		APIMaxConns:        512,
		CallTimeout:        d(30 * time.Second),
		QueueBytes:         DefaultQueueBytes,
		RecvQueueBytes:     DefaultRecvQueueBytes,
		FetchMaxBytes:      DefaultFetchMaxBytes,
		LogBytesPerSec:     1 << 20,
		LogLinesPerSec:     1000,
		LogLineMax:         4096,
		ConfigCheck:        d(10 * time.Second),
		ShutdownTimeout:    d(30 * time.Second),

		RemoteHeartbeatInterval: d(2 * time.Second),
		RemoteHeartbeatTimeout:  d(10 * time.Second),
	}
}

// UpdateManual is the Update value meaning "fetch only on reload".
const UpdateManual = "manual"

// Plugin holds one [plugins.NAME] table.
type Plugin struct {
	Name     string
	Driver   string            // as written
	Checksum string            // "" or "sha256:<64 lowercase hex>"; binary and remote drivers only
	Update   string            // remote drivers: a duration ("10m") or "manual" (the default); "" otherwise
	Config   map[string]any    // [plugins.NAME.config], handed to the plugin; never nil
	Build    Build             // [plugins.NAME.build]
	Env      map[string]string // extra environment of the plugin process; never nil
	Resolved Driver            // what the driver string resolved to

	Submodules bool // remote git drivers: also fetch the repository's submodules; default false
	// EnvInherit names host variables this plugin gets beyond the minimal
	// set; nil takes [supervisor] env_inherit, empty passes none.
	EnvInherit []string
	Optional   bool // required = false: /readyz does not wait for this plugin
	// Replicas is replicas = N: instances serving the functions at once
	// (0 = unset = 1; see ReplicaCount and config/replicas.go).
	Replicas int
}

// Build holds [plugins.NAME.build]: how a Go plugin is compiled.
type Build struct {
	Flags []string          // extra go build flags (not -o: plugvisor names the output)
	Tags  []string          // build tags
	Env   map[string]string // extra environment of go build; never nil
}

// UpdateInterval returns how often a remote plugin is re-fetched; ok is false
// when it is fetched only on reload ("manual", or not a remote driver).
func (p *Plugin) UpdateInterval() (every time.Duration, ok bool) {
	if p.Update == "" || p.Update == UpdateManual {
		return 0, false
	}
	d, err := time.ParseDuration(p.Update)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// Pipeline holds one [[pipeline]]: data flows from Source through Functions,
// in order, to Sink. Each reference is "plugin.symbol".
type Pipeline struct {
	Name      string
	Source    string
	Functions []string
	Sink      string // "" when the pipeline ends with its last function

	// Error policy for items a function fails (see supervisor.Pipeline):
	// OnError is "" (= drop), "drop", "retry" or "dead_letter"; DeadLetter
	// names the "plugin.sink" that receives {pipeline, stage, item, error}
	// (needed by dead_letter, optional with retry); Retries bounds retry (0 = 3).
	OnError    string
	DeadLetter string
	Retries    int
}

// SplitRef splits a "plugin.symbol" reference (already validated by Parse).
func SplitRef(ref string) (plugin, symbol string) {
	for i := 0; i < len(ref); i++ {
		if ref[i] == '.' {
			return ref[:i], ref[i+1:]
		}
	}
	return ref, ""
}

// Error is one problem in a config file. Parse and Load return either one
// *Error or several joined with errors.Join; errors.As finds the first.
type Error struct {
	File string // the path given to Load; "" when parsed from bytes
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key such as "plugins.counter.driver"; "" for syntax errors
	Msg  string // what is wrong and what is accepted
	Err  error  // underlying error, if any

	keyInMsg bool // Msg already names the key (unknown keys)
}

func (e *Error) Error() string {
	var s string
	switch {
	case e.File != "" && e.Line > 0:
		s = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		s = e.File + ": "
	case e.Line > 0:
		s = fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Key != "" && !e.keyInMsg {
		s += e.Key + ": "
	}
	return s + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads, validates and resolves the config file at path. Relative paths
// in it are taken from the file's folder.
func Load(path string, builtins Registry) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return LoadData(path, data, builtins)
}

// LoadData is Load of data already read from path (so a caller can hash
// exactly the bytes it applies).
func LoadData(path string, data []byte, builtins Registry) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := parse(data, path, filepath.Dir(abs), builtins)
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	return cfg, nil
}

// Parse validates and resolves a config held in memory. Relative paths are
// taken from baseDir ("" means the working directory).
func Parse(data []byte, baseDir string, builtins Registry) (*Config, error) {
	return parse(data, "", baseDir, builtins)
}

// NewPlugin validates a plugin added at run time (outside the file) the way
// Parse would: name, driver (resolved in c's folder and mode) and config.
// It does not add the plugin to c.
func (c *Config) NewPlugin(name, driver string, cfg map[string]any, builtins Registry) (*Plugin, error) {
	// *Error: the API answers a bad name or driver with 400, not 500.
	if err := ValidName(name); err != nil {
		return nil, &Error{Key: "name", Msg: err.Error(), Err: err}
	}
	if _, ok := c.Plugins[name]; ok {
		return nil, fmt.Errorf("plugin %q already exists; remove it first or pick another name", name)
	}
	d, err := ResolveDriver(driver, c.Dir, c.Supervisor.Mode, builtins)
	if err == nil {
		err = c.Supervisor.canServeExternal(name, d)
	}
	if err != nil {
		return nil, &Error{Key: "plugins." + name + ".driver", Msg: err.Error(), Err: err}
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	p := &Plugin{Name: name, Driver: driver, Config: cfg, Env: map[string]string{},
		Build: Build{Env: map[string]string{}}, Resolved: d}
	if d.Kind == KindRemote {
		p.Update = UpdateManual
	}
	return p, nil
}

// Changes is what differs between two configs.
type Changes struct {
	Added, Removed, Changed []string // plugin names, sorted
	PipelinesChanged        bool
	SupervisorChanged       bool
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed) == 0 && !c.PipelinesChanged && !c.SupervisorChanged
}

// Diff compares two configs (either may be nil). A plugin is Changed when
// its driver (as written or as resolved, manifest included), config, build,
// env, checksum or update differ.
func Diff(old, new *Config) Changes {
	var ch Changes
	var oldP, newP map[string]*Plugin
	if old != nil {
		oldP = old.Plugins
	}
	if new != nil {
		newP = new.Plugins
	}
	for name, np := range newP {
		op, ok := oldP[name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, name)
		case pluginChanged(op, np):
			ch.Changed = append(ch.Changed, name)
		}
	}
	for name := range oldP {
		if _, ok := newP[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
	}
	sort.Strings(ch.Added)
	sort.Strings(ch.Removed)
	sort.Strings(ch.Changed)
	var oldPl, newPl []Pipeline
	var oldS, newS Supervisor
	if old != nil {
		oldPl, oldS = old.Pipelines, old.Supervisor
	}
	if new != nil {
		newPl, newS = new.Pipelines, new.Supervisor
	}
	ch.PipelinesChanged = !(len(oldPl) == 0 && len(newPl) == 0) && !reflect.DeepEqual(oldPl, newPl)
	ch.SupervisorChanged = (old == nil) != (new == nil) || !reflect.DeepEqual(oldS, newS)
	return ch
}

func pluginChanged(a, b *Plugin) bool {
	// Optional is not compared: it only changes what /readyz waits for.
	return a.Driver != b.Driver || a.Checksum != b.Checksum || a.Update != b.Update ||
		!reflect.DeepEqual(a.Resolved, b.Resolved) ||
		!equalAny(a.Config, b.Config) || !equalStrings(a.Env, b.Env) ||
		!equalList(a.Build.Flags, b.Build.Flags) || !equalList(a.Build.Tags, b.Build.Tags) ||
		!equalStrings(a.Build.Env, b.Build.Env) ||
		a.Submodules != b.Submodules || a.ReplicaCount() != b.ReplicaCount() ||
		(a.EnvInherit == nil) != (b.EnvInherit == nil) || !equalList(a.EnvInherit, b.EnvInherit) // nil: the default; empty: none
}

// The equal helpers treat nil and empty alike: both mean "none".

func equalAny(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func equalStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func equalList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// joinErrors returns nil, the single error, or all of them joined.
func joinErrors(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// TokenFile is where the API token lives: api_token_file when set (a
// mounted Kubernetes Secret, read only), else <state_dir>/api.token.
func (s Supervisor) TokenFile() string {
	if s.APITokenFile != "" {
		return s.APITokenFile
	}
	return filepath.Join(s.StateDir, "api.token")
}
