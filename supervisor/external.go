package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// External plugins (docs/DESIGN.md "External instances"): plugvisor never
// starts them. Their instances run elsewhere (another container, another
// machine), connect to Options.Listen over mutual TLS, and the client
// certificate names the plugin. The first instance to connect starts a
// generation from the checkpoint; one connecting while another serves
// takes over through the swap transaction (a handover); a lost one leaves
// the plugin waiting for the next.

// KindExternal is Spec.Kind of a plugin whose instances connect from
// outside (config driver "external"). Such a Spec has no Path.
const KindExternal = "external"

// Instance events.
const (
	EventInstanceConnected  EventType = "instance.connected"   // an instance completed the handshake
	EventInstanceRefused    EventType = "instance.refused"     // a connection or a handover target was refused
	EventInstanceHandedOver EventType = "instance.handed_over" // a handover moved the work to a new instance
	EventInstanceLost       EventType = "instance.lost"        // the serving instance's connection ended
	EventInstanceLeaving    EventType = "instance.leaving"     // an instance said it got SIGTERM (leaving.go)
)

// ErrNoInstance is returned to calls that waited for an external plugin
// no instance of which was connected.
var ErrNoInstance = errors.New("no instance connected")

// listenExternal starts the listener for external instances when the
// options ask for one.
func (s *Supervisor) listenExternal() error {
	o := s.opts
	if o.Listen == "" {
		return nil
	}
	m, err := transport.ListenMux(transport.MuxConfig{
		Addr: o.Listen, Cert: o.TLSCert, Key: o.TLSKey, ClientCA: o.TLSClientCA,
		Known:    s.knownExternal,
		Instance: s.arrive,
		Log:      s.muxLog,
	})
	if err != nil {
		return err
	}
	s.mux = m
	s.log.Info().Str("listen", m.Addr()).Msg("listening for external instances")
	return nil
}

// ListenAddr is where external instances connect ("tls+tcp://HOST:PORT"
// as bound), "" without a listener.
func (s *Supervisor) ListenAddr() string {
	if s.mux == nil {
		return ""
	}
	return s.mux.Addr()
}

// knownExternal says whether name is a plugin external instances may
// connect as (asked during the TLS handshake).
func (s *Supervisor) knownExternal(name string) bool {
	s.mu.Lock()
	p, ok := s.plugins[name]
	closed := s.closed
	s.mu.Unlock()
	return ok && !closed && p.isExternal()
}

func (s *Supervisor) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// maxArriving bounds the instances of one plugin waiting for its loop
// (each holds a connection): a crash-looping Deployment or a flood from
// a leaked certificate is refused beyond it, not queued without end.
const maxArriving = 4

// arrive takes an authenticated control connection to its plugin's loop,
// without holding up the listener.
func (s *Supervisor) arrive(in *transport.Incoming) {
	s.mu.Lock()
	p, ok := s.plugins[in.Name]
	s.mu.Unlock()
	if !ok || !p.isExternal() {
		s.refuse(in, fmt.Sprintf("no plugin %q with driver \"external\" is configured", in.Name))
		return
	}
	s.mu.Lock()
	closed, queued := s.closed, s.arriving[in.Name]
	if !closed && queued < maxArriving {
		if s.arriving == nil {
			s.arriving = map[string]int{}
		}
		s.arriving[in.Name]++
	}
	s.mu.Unlock()
	switch {
	case closed:
		s.refuse(in, "plugvisor is shutting down")
		return
	case queued >= maxArriving:
		s.refuse(in, fmt.Sprintf("%d instances of %s are already waiting to connect; try again later", queued, in.Name))
		return
	}
	go func() {
		defer func() {
			s.mu.Lock()
			s.arriving[in.Name]--
			s.mu.Unlock()
		}()
		if err := p.do(p.ctx, func() { p.connect(in) }); err != nil {
			s.refuse(in, fmt.Sprintf("plugin %s is being removed", p.name))
		}
	}()
}

// refuse turns an instance away; the listener logs why (muxLog).
func (s *Supervisor) refuse(in *transport.Incoming, why string) { in.Refuse(why) }

// refusalsPerSec bounds the refusal lines (and events) per second: a
// flood of strangers at the listener cannot flood the log. What is left
// out is counted in the next line.
const refusalsPerSec = 10

// refusalLimit is the window of refusalsPerSec.
type refusalLimit struct {
	mu      sync.Mutex
	window  time.Time
	n       int
	dropped int
}

// allow says whether a refusal line may be written now, and how many
// were left out before it.
func (l *refusalLimit) allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= refusalsPerSec {
		l.dropped++
		return false, 0
	}
	l.n++
	dropped, l.dropped = l.dropped, 0
	return true, dropped
}

// muxLog records what the listener refused (at the handshake, or by
// refuse): a log line and an instance.refused event, whose plugin is the
// one the certificate named, if it named one; at most refusalsPerSec.
func (s *Supervisor) muxLog(msg string) {
	ok, dropped := s.refusals.allow(time.Now())
	if !ok {
		return
	}
	if dropped > 0 {
		msg += fmt.Sprintf(" (and %d more refusals not logged: over %d a second)", dropped, refusalsPerSec)
	}
	s.log.Warn().Str("listen", s.opts.Listen).Msg(msg)
	e := Event{Type: EventInstanceRefused, Error: msg}
	if rest, ok := strings.CutPrefix(msg, "external instance "); ok {
		if name, _, ok := strings.Cut(rest, " "); ok && s.knownExternal(name) {
			e.Plugin = name
		}
	}
	s.bus.publish(e)
}

func (p *Plugin) isExternal() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec.Kind == KindExternal
}

// connect runs on the loop for each instance that connected: the first
// one serves (from the checkpoint), a later one takes over by handover.
func (p *Plugin) connect(in *transport.Incoming) {
	p.mu.Lock()
	hasSpec, external, cur := p.hasSpec, p.spec.Kind == KindExternal, p.cur
	p.mu.Unlock()
	switch {
	case !hasSpec || !external:
		p.sup.refuse(in, fmt.Sprintf("plugin %s does not take external instances now (its driver is not \"external\" or not ready yet)", p.name))
	case cur == nil:
		p.connectFirst(in)
	default:
		p.connectMore(cur, in) // a secondary, or a rolling update (extreplicas.go)
	}
}

// connectFirst starts a generation on in from the last checkpoint:
// waiting → starting → serving, or back to waiting if it cannot.
func (p *Plugin) connectFirst(in *transport.Incoming) {
	restart, num, g, err := p.startFromCheckpoint(p.ctx, in)
	if err != nil {
		p.logf(num, "instance from %s (%s) could not start: %v", in.Remote, in.Cert, err)
		p.to(phaseWaiting, change{err: err, events: []Event{{Type: EventInstanceRefused, Generation: num,
			Error: err.Error(), Detail: incomingStatus(in, num)}}})
		return
	}
	p.consecutive = 0
	ev := Event{Type: EventPluginStarted, Generation: g.num}
	if restart {
		ev.Type = EventPluginRestarted
	}
	p.serveOn(phaseServing, g, change{clearErr: true, events: []Event{ev}})
	p.ensureReplicas(false) // slots as this primary's replicas say
}

// handover moves the work of cur's instance to in with the swap
// transaction: refused before any pause if in cannot take over (it is
// told to exit, cur serves on); after it, cur is told to exit.
func (p *Plugin) handover(cur *generation, in *transport.Incoming) {
	from := cur.instanceStatus()
	rep, err := p.swapTo(cur, ReloadOptions{}, in)
	if err != nil {
		p.sup.log.Warn().Str("plugin", p.name).Str("remote", in.Remote).Err(err).Msg("handover refused")
		p.sup.bus.publish(Event{Type: EventInstanceRefused, Plugin: p.name, Generation: rep.Generation,
			Error: err.Error(), Report: rep, Detail: incomingStatus(in, 0)})
		return
	}
	to := p.current().instanceStatus()
	p.sup.bus.publish(Event{Type: EventInstanceHandedOver, Plugin: p.name, Generation: rep.Generation, Report: rep,
		Detail: Handover{From: from, To: to}})
}

// Handover is the Detail of an instance.handed_over event.
type Handover struct {
	From InstanceStatus `json:"from"`
	To   InstanceStatus `json:"to"`
}

// connected records a generation's instance completing the handshake.
func (p *Plugin) connected(g *generation) {
	p.logf(g.num, "instance connected from %s (certificate %s): %s %s", g.in.Remote, g.in.Cert, g.man.Name, g.man.Version)
	st := g.instanceStatus()
	if p.reps.joining {
		st.Role = RoleReplica
	}
	p.sup.bus.publish(Event{Type: EventInstanceConnected, Plugin: p.name, Generation: g.num, Detail: st})
}

// lost handles the end of an external plugin's serving generation: like
// a crash (in-flight calls fail, sinks keep their unacknowledged items,
// the next instance starts from the checkpoint) but no restart is due:
// serving → waiting until an instance connects. False for local plugins.
func (p *Plugin) lost() bool {
	g := p.current()
	if g == nil || g.in == nil {
		return false
	}
	reason := g.reason()
	p.mu.Lock()
	p.restarts++
	p.mu.Unlock()
	p.logf(g.num, "instance at %s lost: %v; waiting for an instance to connect to %s", g.in.Remote, reason, p.sup.ListenAddr())
	if p.metrics != nil {
		p.metrics.restarts.WithLabelValues(p.name).Inc()
	}
	st := g.instanceStatus()
	p.unbind(g)
	g.retire(0)
	p.to(phaseWaiting, change{setCur: true, err: reason, events: []Event{
		{Type: EventInstanceLost, Generation: g.num, Error: reason.Error(), Detail: st},
		{Type: EventPluginCrashed, Generation: g.num, Error: reason.Error()}}})
	return true
}

// awaitInstance puts an external plugin in waiting instead of starting
// a process; false for local plugins.
func (p *Plugin) awaitInstance() bool {
	if !p.isExternal() {
		return false
	}
	p.to(phaseWaiting, change{})
	return true
}

// noInstance is the error of a call whose wait ended while no instance
// of an external plugin was connected (nil otherwise).
func (p *Plugin) noInstance(cause error) error {
	if p.phaseNow() != phaseWaiting {
		return nil
	}
	where := "this plugvisor has no listener for external instances: set [supervisor] listen (it applies after a restart)"
	if a := p.sup.ListenAddr(); a != "" {
		where = "instances connect to " + a + " with a client certificate named " + p.name
	}
	return fmt.Errorf("external plugin %s: %w (the call waited until %w); %s", p.name, ErrNoInstance, cause, where)
}

// reloadExternal refuses a reload of an external plugin: its reload is a
// new instance connecting. A new spec (a config change) is kept for the
// next instance; one that is no longer external swaps as usual.
func (p *Plugin) reloadExternal(ctx context.Context, o ReloadOptions) error {
	if !p.isExternal() || o.Spec != nil && o.Spec.Kind != KindExternal {
		return nil
	}
	if o.Spec != nil {
		if err := p.do(ctx, func() {
			p.mu.Lock()
			p.spec = *o.Spec
			p.mu.Unlock()
		}); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: plugin %s is external: plugvisor does not start its instances, so it cannot reload it — "+
		"start a new instance (roll its Deployment) and it takes over with the state; a new config applies to the next instance",
		ErrSwapFailed, p.name)
}

// becomeExternal applies a spec whose driver became "external" to a
// local plugin: its process is checkpointed and retired, and the plugin
// waits for an instance, which starts from that checkpoint.
func (p *Plugin) becomeExternal(spec Spec) (*Report, error) {
	rep := &Report{At: time.Now()}
	if old := p.current(); old != nil {
		rep.From = old.num
		// As a checkpoint does: hold new calls, let those in flight end,
		// so the state saved covers every call answered.
		p.to(phaseCheckpointing, change{activity: ActivitySwapping, events: []Event{{Type: EventSwapStarted}}})
		dctx, cancel := context.WithTimeout(p.ctx, p.sup.opts.DrainTimeout.Duration)
		_, err := old.waitIdle(dctx)
		cancel()
		var ck *checkpoint
		if err == nil {
			ck, err = p.snapshot(p.ctx, old, true, nil)
		}
		if err != nil {
			err = fmt.Errorf("%w: plugin %s becomes external: %w; generation %d serves on", ErrSwapFailed, p.name, err, old.num)
			return p.finishReload(rep, phaseServing, old.num, err)
		}
		p.ck = ck
		if err := p.sup.store.save(p.name, ck); err != nil {
			p.logf(old.num, "saving the checkpoint: %v", err)
		}
		rep.StateKeys = ck.scopes.Keys()
		p.unbind(old)
		old.retire(p.sup.opts.StopGrace.Duration)
	}
	p.retireReplicas() // local secondaries too: an external plugin's are instances that connect
	p.mu.Lock()
	p.spec = spec
	p.mu.Unlock()
	p.ensureReplicas(false)
	p.retry, p.consecutive = nil, 0
	p.logf(rep.From, "driver is external now: waiting for an instance to connect to %s", p.sup.ListenAddr())
	rep.SwapMS = ms(time.Since(rep.At))
	p.to(phaseWaiting, change{setCur: true, activity: ActivityIdle, clearErr: true, reload: rep,
		events: []Event{{Type: EventSwapFinished, Generation: rep.From, Report: rep}}})
	return rep, nil
}

// listenRemote opens a channel of an external generation: the control
// channel on the instance's own connection, every other one on the
// listener, reserved for connections with the same certificate name.
func (g *generation) listenRemote(ch string, o transport.Options) (*transport.Conn, error) {
	if ch == "c" {
		return g.in.Listen(o)
	}
	return g.p.sup.mux.Listen(g.p.name, o)
}

// runnerFor picks the generation's runner: the external one for a
// connected instance, else the supervisor's.
func (g *generation) runnerFor(rs runSpec) runner {
	if g.in != nil {
		return newExternalRun(g.ctl, g.in.Remote)
	}
	return g.p.sup.newRunner(rs)
}

func (g *generation) heartbeatInterval() time.Duration {
	if g.in != nil {
		return g.p.sup.opts.RemoteHeartbeatInterval.Duration
	}
	return g.p.sup.opts.HeartbeatInterval.Duration
}

func (g *generation) heartbeatTimeout() time.Duration {
	if g.in != nil {
		return g.p.sup.opts.RemoteHeartbeatTimeout.Duration
	}
	return g.p.sup.opts.HeartbeatTimeout.Duration
}

func (g *generation) heartbeatSetting() string {
	if g.in != nil {
		return "remote_heartbeat_timeout"
	}
	return "heartbeat_timeout"
}

// dismiss tells an external instance that it is done (it exits rather
// than reconnect): a handover target that was refused.
func (g *generation) dismiss() {
	if g.in == nil || g.ctl == nil || g.isDead() {
		return
	}
	// Bounded: a wedged instance is cut off anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = g.ctl.Send(ctx, transport.Frame{Type: transport.Shutdown})
	// Let the writer hand the frame over before the channel closes.
	select {
	case <-g.dead:
	case <-ctx.Done():
	}
}

// disconnect ends an external generation without telling its instance
// to exit: it reconnects to the next daemon.
func (g *generation) disconnect() {
	if g.run != nil {
		g.run.kill()
		<-g.dead
	}
	g.closeConns()
}

// externalRun is the runner of a connected instance: nothing to start,
// no pid; it ends when its control connection is lost or closed, and
// ending it closes that connection.
type externalRun struct {
	ctl    *transport.Conn
	remote string
	end    chan struct{}
	lost   atomic.Bool
	once   sync.Once
}

func newExternalRun(ctl *transport.Conn, remote string) *externalRun {
	return &externalRun{ctl: ctl, remote: remote, end: make(chan struct{})}
}

func (r *externalRun) start() error {
	go func() {
		select {
		case <-r.ctl.Lost():
			r.lost.Store(true)
		case <-r.ctl.Done():
		}
		close(r.end)
	}()
	return nil
}

func (r *externalRun) pid() int              { return 0 }
func (r *externalRun) terminate()            { r.once.Do(func() { r.ctl.Close() }) }
func (r *externalRun) kill()                 { r.terminate() }
func (r *externalRun) done() <-chan struct{} { return r.end }
func (r *externalRun) describe() string {
	if r.lost.Load() {
		return fmt.Sprintf("the connection to the instance at %s was lost", r.remote)
	}
	return fmt.Sprintf("plugvisor closed the connection to the instance at %s", r.remote)
}
