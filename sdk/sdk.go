// Package sdk is what plugin authors write against. A plugin is one
// process serving sources, sinks and functions; main calls Serve:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{
//			Name: "demo", Version: "1.2.0",
//			Sources:   map[string]sdk.NewSource{"ticks": func() sdk.Source { return &ticks{} }},
//			Functions: map[string]any{"double": double},
//		})
//	}
//
// The SDK announces a JSON Schema for each function's input and output
// (from its signature) and for the items of each source or sink that
// implements Typed, so hosts can check pipelines and typed handles before
// anything runs.
//
// State lives in the plugin process, scoped per symbol instance; plugvisor
// snapshots it on every swap and periodically, and restores it into the
// next process, so a plugin keeps its state across reloads and crashes.
package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/transport"
)

// Plugin describes a plugin: its identity and its symbols.
type Plugin struct {
	Name    string
	Version string
	// StateVersion names the layout of the plugin's state. A swap to a
	// generation with another StateVersion needs Migrate; without it the
	// swap is refused before anything pauses. Empty means "1".
	StateVersion string

	Sources   map[string]NewSource
	Sinks     map[string]NewSink
	Functions map[string]any // see the accepted signatures in checkFunction

	// Migrate converts one symbol instance's state written by fromVersion
	// (the Version of the generation being replaced). It is called when the
	// versions differ; nil means state passes unchanged.
	Migrate func(fromVersion string, state map[string][]byte) (map[string][]byte, error)

	// MigrateScope, when set, is used instead of Migrate and is told more:
	// which scope it converts and the plugin and state versions that wrote
	// it. It is called under the same conditions as Migrate.
	MigrateScope func(m Migration, state map[string][]byte) (map[string][]byte, error)
}

// Migration tells MigrateScope what it converts.
type Migration struct {
	Scope            string // "functions", "source/<symbol>/<name>", "sink/<symbol>/<name>"
	FromVersion      string // plugin version that wrote the state ("" if unknown)
	FromStateVersion string // state version that wrote it
	ToVersion        string // this plugin's Version
	ToStateVersion   string // this plugin's StateVersion ("1" when empty)
}

// migrates reports whether p has a migration hook.
func (p *Plugin) migrates() bool { return p.Migrate != nil || p.MigrateScope != nil }

// migrate runs whichever hook p has on one scope.
func (p *Plugin) migrate(m Migration, kv map[string][]byte) (map[string][]byte, error) {
	if p.MigrateScope != nil {
		return p.MigrateScope(m, kv)
	}
	return p.Migrate(m.FromVersion, kv)
}

// NewSource makes a fresh source instance.
type NewSource func() Source

// NewSink makes a fresh sink instance.
type NewSink func() Sink

// Source streams items to the host.
type Source interface {
	// Configure receives the plugin's [plugins.NAME.config] table.
	Configure(props map[string]any) error
	// Open runs until ctx is done, calling emit for each item; emit blocks
	// while the host is behind (push-back). Update state after emit returns,
	// so a checkpoint never claims an item the host has not received.
	Open(ctx Context, emit func(item any) error) error
	Close(ctx Context) error
}

// Sink receives items from the host, in order. Items arrive as
// json.RawMessage (the exact JSON the host sent).
type Sink interface {
	Configure(props map[string]any) error
	Open(ctx Context) error
	Collect(ctx Context, item any) error
	Close(ctx Context) error
}

// Context is a context.Context with the symbol instance's state and logger.
type Context interface {
	context.Context
	State() State
	Logger() *zerolog.Logger
}

// State is scoped to one symbol instance; values are JSON-encoded.
type State interface {
	PutState(key string, value any) error
	GetState(key string, into any) (found bool, err error)
	DeleteState(key string) error
	IncrCounter(key string, delta int64) (int64, error) // returns the new value
	GetCounter(key string) (int64, error)
}

type stateKey struct{}

type configKey struct{}

// ConfigOf returns the plugin's [plugins.NAME.config] table inside a
// function that takes a context.Context (sources and sinks get it in
// Configure). It is nil when the plugin has no config or outside a call;
// treat it as read-only: every call shares it.
func ConfigOf(ctx context.Context) map[string]any {
	c, _ := ctx.Value(configKey{}).(map[string]any)
	return c
}

// StateOf returns the state of the function being called; inside a
// function that takes a context.Context. All functions of a plugin share
// one scope. Outside a function it returns nil.
func StateOf(ctx context.Context) State {
	s, _ := ctx.Value(stateKey{}).(State)
	return s
}

// LoggerOf returns the logger of the symbol being run, or a disabled one.
func LoggerOf(ctx context.Context) *zerolog.Logger {
	if c, ok := ctx.(Context); ok {
		return c.Logger()
	}
	l := zerolog.Nop()
	return &l
}

// Serve runs the plugin until plugvisor shuts it down, then exits. It
// never returns. With PLUGVISOR_CONNECT (and the PLUGVISOR_TLS_* files) it
// is an external instance: it connects out to the daemon's TLS listener
// and reconnects when the daemon goes away (docs/protocol.md, External
// instances). Started by hand with neither environment, it says so and
// exits with status 2.
func Serve(p Plugin) {
	env, ok := EnvFromOS()
	if !ok {
		var err error
		if env, ok, err = remoteFromOS(); err != nil {
			fmt.Fprintf(os.Stderr, "plugin %s: %v\n", p.Name, err)
			os.Exit(1)
		}
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "%s %s is a plugvisor plugin: it must be started by plugvisor.\n"+
			"Add it to config.toml as a driver, e.g.\n\n  [plugins.%s]\n  driver = %q\n\nthen run `plugvisor dev` (or `make run`).\n"+
			"To run it elsewhere as an external instance, set %s=tls+tcp://HOST:PORT (the daemon's listen address)\n"+
			"and %s, %s, %s (see docs/protocol.md, External instances).\n",
			p.Name, p.Version, p.Name, os.Args[0], transport.EnvConnect, transport.EnvTLSCert, transport.EnvTLSKey, transport.EnvTLSCA)
		os.Exit(2)
	}
	env.ExitOnPanic = true
	env.WatchParent = env.Remote == nil // an external instance has no parent to watch
	if env.Remote != nil {
		env.term = notifyTerm()
	}
	err := ServeEnv(context.Background(), p, env)
	if err != nil {
		msg := err.Error()
		if prefix := "plugin " + p.Name + ": "; !strings.HasPrefix(msg, prefix) {
			msg = prefix + msg // ServeEnv's own errors may name the plugin already
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
	os.Exit(0)
}

// Env is what the host hands a plugin: where to dial and how to prove it
// was started by that host.
type Env struct {
	Control  string // control socket address
	Token    string
	MaxFrame int
	HostPID  int // 0: don't watch the parent

	// ExitOnPanic makes a panicking function end the process after its
	// caller got the error (the host restarts it with checkpointed state).
	// In-process builtins leave it false: ServeEnv returns instead.
	ExitOnPanic bool
	// WatchParent exits when the parent process changes (the host died and
	// its parent-death signal was lost).
	WatchParent bool

	// Remote, when set, makes this an external instance: it dials the
	// daemon's TLS listener instead of Control (Token is empty) and
	// reconnects with backoff when the daemon goes away.
	Remote *transport.Remote
	log    io.Writer        // reconnect lines of an external instance; default stderr
	term   <-chan os.Signal // SIGTERM of an external instance (Serve only)
	// reload re-reads an external instance's TLS files before each
	// reconnect, so rotated certificates are used without a restart.
	reload func() (*transport.Remote, error)
}

// EnvFromOS reads the plugvisor environment; ok is false when the process
// was not started by plugvisor.
func EnvFromOS() (Env, bool) {
	e := Env{Control: os.Getenv(transport.EnvControl), Token: os.Getenv(transport.EnvToken)}
	if e.Control == "" || e.Token == "" {
		return e, false
	}
	e.MaxFrame, _ = strconv.Atoi(os.Getenv(transport.EnvMaxFrame))
	e.HostPID, _ = strconv.Atoi(os.Getenv(transport.EnvHostPID))
	return e, true
}
