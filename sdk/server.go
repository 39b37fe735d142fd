package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/internal/proc"
	"github.com/plugvisor/plugvisor/transport"
)

// handshakeTimeout bounds the wait for the host's answer to Hello.
const handshakeTimeout = 10 * time.Second

// ServeEnv runs plugin p against the host described by env until the host
// shuts it down (nil), ctx ends (ctx.Err()), or something fatal happens: a
// refused handshake, a lost host, a malformed frame, a panicking function.
// Serve wraps it for plugin binaries; builtins run it in the host's process.
func ServeEnv(ctx context.Context, p Plugin, env Env) error {
	if env.Remote != nil {
		return serveRemote(ctx, p, env)
	}
	s, err := newServer(p, env)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

type server struct {
	p      Plugin
	env    Env
	man    transport.Manifest
	funcs  map[string]*function
	state  stateStore
	config map[string]any
	log    zerolog.Logger
	// replicas is from the welcome: with more than one, function state
	// writes fail (replicas.go).
	replicas int

	ctl   *transport.Conn
	ctx   context.Context
	fatal chan error

	mu        sync.Mutex
	instances map[string]*instance
	conns     []*transport.Conn

	heard    chan struct{}
	welcomed bool          // the handshake succeeded
	leave    chan struct{} // closed on SIGTERM of an external instance (remote.go)
}

type instance struct {
	id, kind, symbol string
	conn             *transport.Conn
	scope            *scope
	sctx             *symCtx
	cancel           context.CancelFunc
	done             chan struct{} // the source's Open returned and EOS is queued

	mu      sync.Mutex // serialises emit with snapshots (source), Collect with Close (sink)
	seq     uint64
	stopped bool
	src     Source
	snk     Sink
}

// symCtx is the Context handed to plugin code.
type symCtx struct {
	context.Context
	state  State
	log    *zerolog.Logger
	config map[string]any
}

func (c *symCtx) State() State            { return c.state }
func (c *symCtx) Logger() *zerolog.Logger { return c.log }
func (c *symCtx) Value(k any) any {
	switch k {
	case stateKey{}:
		return c.state
	case configKey{}:
		return c.config
	}
	return c.Context.Value(k)
}

func newServer(p Plugin, env Env) (*server, error) {
	s := &server{p: p, env: env, funcs: map[string]*function{}, instances: map[string]*instance{},
		fatal: make(chan error, 1), heard: make(chan struct{}, 1)}
	s.log = zerolog.New(os.Stderr).With().Timestamp().Str("plugin", p.Name).Logger()
	s.man = transport.Manifest{Name: p.Name, Version: p.Version, StateVersion: stateVersion(p.StateVersion),
		Language: "go", Migrate: p.migrates(), Features: []string{transport.FeatureCallBatch}, Sources: keys(p.Sources), Sinks: keys(p.Sinks), Functions: keys(p.Functions)}
	for _, name := range s.man.Functions {
		f, err := checkFunction(name, p.Functions[name])
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Name, err)
		}
		s.funcs[name] = f
	}
	s.man.Schemas = symbolSchemas(p, s.funcs)
	if err := s.man.Validate(); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.Name, err)
	}
	return s, nil
}

func stateVersion(v string) string {
	if v == "" {
		return "1"
	}
	return v
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *server) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	ctl, err := s.connect(s.env.Control)
	if err != nil {
		return lost(fmt.Errorf("connect to the plugvisor host: %w", err))
	}
	s.ctl = ctl
	defer s.closeAll()

	welcome, early, err := s.handshake(ctx)
	if err != nil {
		return err
	}
	s.config, s.welcomed, s.replicas = welcome.Config, true, welcome.Replicas
	s.log = s.log.With().Int("generation", welcome.Generation).Logger()

	for _, f := range early {
		if err := s.control(f); err != nil {
			return fmt.Errorf("control channel: %w", err)
		}
	}
	go s.readControl()
	var silent <-chan time.Time
	var parent <-chan time.Time
	if welcome.HeartbeatMS > 0 {
		t := time.NewTicker(time.Duration(welcome.HeartbeatMS) * time.Millisecond)
		defer t.Stop()
		silent = t.C
	}
	if s.env.WatchParent && s.env.HostPID > 0 {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		parent = t.C
	}
	missed := 0
	leaving := s.leavingOn(welcome)
	for {
		select {
		case <-leaving:
			leaving = nil
			s.sayLeaving()
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.fatal:
			return err
		case <-ctl.Lost():
			if ok, err := s.lastWords(); ok {
				return err
			}
			return s.hostGone(lost(errors.New("lost the control channel to the plugvisor host")))
		case <-s.heard:
			missed = 0
		case <-silent:
			// The host pings every interval; three silent ones mean it is gone
			// or wedged, and a plugin must not outlive its host.
			if missed++; missed > 3 {
				return s.hostGone(lost(errors.New("the plugvisor host stopped sending heartbeats")))
			}
		case <-parent:
			if os.Getppid() != s.env.HostPID {
				return s.hostGone(fmt.Errorf("the plugvisor host (pid %d) is gone", s.env.HostPID))
			}
		}
	}
}

// hostGone ends a plugin process whose host is gone together with what it
// started in its process group: with no host, nothing else would (on
// macOS there is no parent-death signal; on Linux it reaches only this
// process). The reason goes to stderr first. In-process plugins
// (WatchParent false) just return.
func (s *server) hostGone(err error) error {
	if s.env.WatchParent {
		// The host held our stderr: with it gone a write would raise
		// SIGPIPE and end us before the group is killed.
		signal.Ignore(syscall.SIGPIPE)
		fmt.Fprintf(os.Stderr, "plugin %s: %v; ending its process group\n", s.man.Name, err)
		proc.KillOwnGroup()
	}
	return err
}

func (s *server) handshake(ctx context.Context) (*transport.WelcomeMsg, []transport.Frame, error) {
	hello := transport.HelloMsg{Protocol: transport.Version, Token: s.env.Token, PID: os.Getpid(), Manifest: s.man}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := s.ctl.Send(ctx, transport.Frame{Type: transport.Hello, Payload: transport.JSON(hello)}); err != nil {
		return nil, nil, lost(fmt.Errorf("handshake: %w", err))
	}
	type reply struct {
		frames []transport.Frame
		err    error
	}
	ch := make(chan reply, 1)
	go func() {
		var r reply
		r.err = s.ctl.Recv(func(f transport.Frame) error {
			f.Payload = append([]byte(nil), f.Payload...)
			r.frames = append(r.frames, f)
			return nil
		})
		ch <- r
	}()
	select {
	case <-ctx.Done():
		s.ctl.Close()
		return nil, nil, lost(fmt.Errorf("handshake: no answer from the host within %s", handshakeTimeout))
	case r := <-ch:
		if r.err != nil {
			return nil, nil, lost(fmt.Errorf("handshake: %w", r.err))
		}
		switch f := r.frames[0]; f.Type {
		case transport.Welcome:
			var w transport.WelcomeMsg
			if err := transport.Decode(f, &w); err != nil {
				return nil, nil, err
			}
			// Whatever the host batched behind the welcome is handled next.
			return &w, r.frames[1:], nil
		case transport.Refuse:
			return nil, nil, fmt.Errorf("the host refused this plugin: %s", transport.ErrorText(f))
		default:
			return nil, nil, fmt.Errorf("handshake: expected welcome, got %s", f.Type)
		}
	}
}

func (s *server) fail(err error) {
	select {
	case s.fatal <- err:
	default:
	}
}

func (s *server) closeAll() {
	s.mu.Lock()
	conns := s.conns
	for _, in := range s.instances {
		if in.cancel != nil {
			in.cancel()
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	s.ctl.Close()
}

func (s *server) readControl() {
	for {
		err := s.ctl.Recv(s.control)
		if err != nil {
			if errors.Is(err, transport.ErrClosed) {
				return
			}
			s.fail(fmt.Errorf("control channel: %w", err))
			return
		}
	}
}

// control handles one control frame.
func (s *server) control(f transport.Frame) error {
	select {
	case s.heard <- struct{}{}:
	default:
	}
	switch f.Type {
	case transport.Ping:
		return s.reply(transport.Frame{Type: transport.Pong, ID: f.ID})
	case transport.Shutdown:
		s.fail(nil)
		return nil
	case transport.Open, transport.Stop, transport.Snapshot, transport.Restore:
		// Requests may block (a Stop waits for a source to end), so each
		// runs on its own; the host sequences the ones that must be ordered.
		f.Payload = append([]byte(nil), f.Payload...)
		go s.request(f)
		return nil
	default:
		return fmt.Errorf("%w: unexpected %s frame on the control channel", transport.ErrMalformed, f.Type)
	}
}

func (s *server) reply(f transport.Frame) error {
	return s.ctl.Send(s.ctx, f)
}

func (s *server) request(f transport.Frame) {
	var payload []byte
	var err error
	switch f.Type {
	case transport.Open:
		err = s.open(f)
	case transport.Stop:
		err = s.stop(f)
	case transport.Snapshot:
		payload, err = s.snapshot(f.ID)
	case transport.Restore:
		err = s.restore(f.Payload)
	}
	r := transport.Frame{Type: transport.OK, ID: f.ID}
	if err != nil {
		r = transport.Frame{Type: transport.Error, ID: f.ID, Payload: transport.JSON(transport.ErrorMsg{Error: err.Error()})}
	} else if f.Type == transport.Snapshot {
		r = transport.Frame{Type: transport.State, ID: f.ID, Payload: payload}
	}
	if err := s.reply(r); err != nil && !errors.Is(err, transport.ErrClosed) {
		s.fail(fmt.Errorf("reply to %s: %w", f.Type, err))
	}
}

func (s *server) dial(addr string) (*transport.Conn, error) {
	c, err := s.connect(addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	go func() {
		// The host closes its side when it is done with an instance.
		select {
		case <-c.Lost():
			c.Close()
		case <-c.Done():
		}
	}()
	return c, nil
}

func (s *server) stop(f transport.Frame) error {
	var m transport.StopMsg
	if err := transport.Decode(f, &m); err != nil {
		return err
	}
	s.mu.Lock()
	in, ok := s.instances[m.Instance]
	delete(s.instances, m.Instance)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no open instance %q", m.Instance)
	}
	in.cancel()
	<-in.done
	switch in.kind {
	case transport.KindSource:
		return in.src.Close(&symCtx{Context: s.ctx, state: in.scope, log: in.sctx.log})
	case transport.KindSink:
		in.mu.Lock()
		defer in.mu.Unlock()
		in.stopped = true
		return in.snk.Close(&symCtx{Context: s.ctx, state: in.scope, log: in.sctx.log})
	}
	return nil
}

// snapshot encodes every scope. A running source gets a Checkpoint marker
// in its stream at the point its state was copied, so the host can tell
// which items the checkpoint already accounts for.
func (s *server) snapshot(id uint64) ([]byte, error) {
	s.mu.Lock()
	var running []*instance
	for _, in := range s.instances {
		if in.kind == transport.KindSource {
			running = append(running, in)
		}
	}
	s.mu.Unlock()
	out := transport.Scopes{}
	marked := map[string]bool{}
	for _, in := range running {
		in.mu.Lock()
		if !in.stopped {
			out[in.id] = in.scope.copy()
			marked[in.id] = true
			err := in.conn.Send(s.ctx, transport.Frame{Type: transport.Checkpoint, ID: id})
			in.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		in.mu.Unlock()
	}
	s.state.mu.Lock()
	all := make(map[string]*scope, len(s.state.scopes))
	for k, v := range s.state.scopes {
		all[k] = v
	}
	s.state.mu.Unlock()
	for name, sc := range all {
		if !marked[name] {
			out[name] = sc.copy()
		}
	}
	return transport.AppendState(nil, out), nil
}

func (s *server) restore(p []byte) error {
	meta, scopes, err := transport.ParseRestore(p)
	if err != nil {
		return err
	}
	from := stateVersion(meta.FromStateVersion)
	migrate := s.p.migrates() && meta.FromVersion != "" && meta.FromVersion != s.p.Version
	if from != s.man.StateVersion && !s.p.migrates() {
		return fmt.Errorf("state version %s cannot read state version %s and plugin %s has no Migrate hook", s.man.StateVersion, from, s.p.Name)
	}
	for name, kv := range scopes {
		if migrate || from != s.man.StateVersion {
			m := Migration{Scope: name, FromVersion: meta.FromVersion, FromStateVersion: from,
				ToVersion: s.p.Version, ToStateVersion: s.man.StateVersion}
			kv, err = s.p.migrate(m, kv)
			if err != nil {
				return fmt.Errorf("migrate %s from version %s: %w", name, meta.FromVersion, err)
			}
		}
		sc := s.state.get(name)
		sc.mu.Lock()
		sc.kv = kv
		if sc.kv == nil {
			sc.kv = map[string][]byte{}
		}
		sc.mu.Unlock()
	}
	return nil
}
