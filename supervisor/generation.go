package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/transport"
)

// Spec says how to start a plugin's process; the driver layer (build,
// fetch) produces one, the supervisor runs it.
type Spec struct {
	Kind    string            // builtin, binary, source, remote, command
	Driver  string            // as configured, for the status
	Path    string            // executable to start; empty when InProc is set
	Args    []string          // arguments after the executable
	Dir     string            // working directory ("" = the host's)
	Env     map[string]string // extra environment for the process
	Config  map[string]any    // handed to every symbol's Configure
	Build   string            // build id or checksum, for the status
	InProc  *sdk.Plugin       // run inside the host over inproc:// (builtins in inproc mode)
	Started func()            // called once the generation serves (the compiler re-points bin/<p>/current)
	// EnvInherit names host variables passed on beyond the minimal set
	// (baseEnv); nil takes Options.EnvInherit.
	EnvInherit []string
	// Replicas is how many generations serve the plugin's functions at
	// once (0 = 1; see replicas.go).
	Replicas int
}

// generation is one process of a plugin.
type generation struct {
	p       *Plugin
	num     int
	spec    Spec
	man     transport.Manifest
	ctl     *transport.Conn
	calls   *transport.Conn
	run     runner // the process, or the in-process plugin
	started time.Time
	in      *transport.Incoming // the connected instance of an external plugin (external.go); nil for local ones

	dead      chan struct{} // closed once the process is gone (reaped)
	deathMu   sync.Mutex
	deathErr  error
	forced    atomic.Bool // killed by a forced swap: unanswered calls go to the next generation
	lastHeard atomic.Int64
	refused   atomic.Pointer[string] // why a peer's hello was refused, if one was
	leaving   atomic.Bool            // an external instance said it got SIGTERM (leaving.go)

	reqs    waiters // control requests awaiting their reply
	pending waiters // function calls awaiting their result

	actMu  sync.Mutex
	active int           // calls in flight through handles
	idle   chan struct{} // closed when active drops to 0, if someone waits

	connMu  sync.Mutex
	conns   []*transport.Conn
	sockets []string
	nextCh  int
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// address returns a fresh channel address of this generation.
func (g *generation) address(ch string) (string, error) {
	g.connMu.Lock()
	g.nextCh++
	n := g.nextCh
	g.connMu.Unlock()
	name := fmt.Sprintf("%s.%d.%s%d", g.p.short, g.num, ch, n)
	if g.spec.InProc != nil {
		return "inproc://" + g.p.sup.sockDir + "/" + name, nil
	}
	addr, path, err := ipcAddress(g.p.sup.sockDir, name)
	if err != nil {
		return "", err
	}
	if path != "" {
		g.connMu.Lock()
		g.sockets = append(g.sockets, path)
		g.connMu.Unlock()
	}
	return addr, nil
}

// listen opens a host-side channel of this generation.
func (g *generation) listen(ch string) (*transport.Conn, error) {
	o := transport.Options{MaxFrame: g.p.sup.opts.MaxFrame, RecvQueueBytes: g.p.sup.opts.RecvQueueBytes}
	var c *transport.Conn
	var err error
	if g.in != nil {
		c, err = g.listenRemote(ch, o)
	} else {
		var addr string
		if addr, err = g.address(ch); err != nil {
			return nil, err
		}
		c, err = transport.Listen(addr, o)
	}
	if err != nil {
		return nil, err
	}
	g.connMu.Lock()
	g.conns = append(g.conns, c)
	g.connMu.Unlock()
	return c, nil
}

// startGenerationOn launches generation num of p (in nil), or takes the
// connected instance in of an external plugin, and completes the
// handshake and the call channel. On error nothing of it is left running.
func (p *Plugin) startGenerationOn(ctx context.Context, spec Spec, num int, in *transport.Incoming) (*generation, error) {
	g := &generation{p: p, num: num, spec: spec, dead: make(chan struct{}), in: in}
	g.lastHeard.Store(time.Now().UnixNano())
	ctl, err := g.listen("c")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStartFailed, p.name, err)
	}
	g.ctl = ctl
	token := newToken()
	if err := g.launch(token); err != nil {
		g.closeConns()
		return nil, fmt.Errorf("%w: %s: %w", ErrStartFailed, p.name, err)
	}
	hs := make(chan error, 1)
	go g.readControl(token, hs)

	ctx, cancel := context.WithTimeout(ctx, p.sup.opts.StartTimeout.Duration)
	defer cancel()
	fail := func(err error) (*generation, error) {
		g.abandon(err)
		if r := g.refused.Load(); r != nil {
			// Say what went wrong, not that the wait ran out after it.
			return nil, fmt.Errorf("%w: %s: handshake refused: %s (then: %w)", ErrStartFailed, p.name, *r, g.reason())
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrStartFailed, p.name, g.reason())
	}
	select {
	case err := <-hs:
		if err != nil {
			return fail(err)
		}
	case <-g.dead:
		return fail(errors.New("exited before the handshake"))
	case <-ctx.Done():
		return fail(fmt.Errorf("no handshake within %s (start_timeout)", p.sup.opts.StartTimeout.Duration))
	}
	if pid := g.pid(); pid != 0 {
		p.logf(num, "started pid %d: %s %s", pid, g.man.Name, g.man.Version)
	}
	if in != nil {
		p.connected(g)
	}
	calls, err := g.listen("f")
	if err != nil {
		return fail(err)
	}
	g.calls = calls
	go g.readCalls()
	if err := g.open(ctx, transport.OpenMsg{Instance: "functions", Kind: transport.KindFunctions, Address: calls.Addr()}); err != nil {
		return fail(fmt.Errorf("open the call channel: %w", err))
	}
	g.started = time.Now()
	go g.heartbeat()
	return g, nil
}

// launch starts the generation's runner and its reaper.
func (g *generation) launch(token string) error {
	p := g.p
	tag := p.sup.tag(p.short, g.num)
	rs := runSpec{spec: g.spec, env: g.environ(token, tag), tag: tag,
		sdkEnv: sdk.Env{Control: g.ctl.Addr(), Token: token, MaxFrame: p.sup.opts.MaxFrame},
		out:    p.outputOf(g.num)}
	r := g.runnerFor(rs)
	if err := r.start(); err != nil {
		return err
	}
	g.run = r
	if pid := r.pid(); pid != 0 {
		p.sup.recordProc(tag, pid)
	}
	go func() {
		<-r.done()
		g.kill(fmt.Errorf("%w: %s", ErrCrashed, r.describe()))
		p.sup.forgetProc(tag)
		close(g.dead)
	}()
	return nil
}

// environ decides the child's environment explicitly: the minimal set
// and the names in env_inherit from the host's, then the plugin's env,
// then ours last so nothing overrides the token or addresses (go-plugin
// #162). Nothing else of the host's (its secrets) reaches a plugin.
func (g *generation) environ(token, tag string) []string {
	p := g.p
	inherit := g.spec.EnvInherit
	if inherit == nil {
		inherit = p.sup.opts.EnvInherit
	}
	env := baseEnv(os.Environ(), inherit)
	for _, k := range slices.Sorted(maps.Keys(g.spec.Env)) {
		env = append(env, k+"="+g.spec.Env[k])
	}
	return append(env,
		transport.EnvControl+"="+g.ctl.Addr(),
		transport.EnvToken+"="+token,
		transport.EnvProtocol+"="+strconv.Itoa(transport.Version),
		transport.EnvPlugin+"="+p.name,
		transport.EnvGeneration+"="+strconv.Itoa(g.num),
		transport.EnvHostPID+"="+strconv.Itoa(os.Getpid()),
		transport.EnvMaxFrame+"="+strconv.Itoa(p.sup.opts.MaxFrame),
		envTag+"="+tag,
	)
}

// kill records why the generation ends (the first reason wins) and makes
// sure it does.
func (g *generation) kill(reason error) {
	g.deathMu.Lock()
	if g.deathErr == nil {
		g.deathErr = reason
	}
	g.deathMu.Unlock()
	if g.run != nil {
		g.run.kill()
	}
}

// abandon ends a generation that never served, or no longer may: killed
// at once for reason, no grace, its channels closed.
func (g *generation) abandon(reason error) {
	g.dismiss()
	g.kill(reason)
	g.retire(0)
}

func (g *generation) reason() error {
	g.deathMu.Lock()
	defer g.deathMu.Unlock()
	if g.deathErr == nil {
		return errors.New("running")
	}
	return g.deathErr
}

func (g *generation) isDead() bool {
	select {
	case <-g.dead:
		return true
	default:
		return false
	}
}

// readControl does the handshake, then routes replies to their requests.
func (g *generation) readControl(token string, hs chan<- error) {
	handshaken := false
	for {
		err := g.ctl.Recv(func(f transport.Frame) error {
			if !handshaken {
				ok, err := g.hello(f, token)
				if ok {
					handshaken = true
					hs <- nil
				}
				return err
			}
			g.lastHeard.Store(time.Now().UnixNano())
			switch f.Type {
			case transport.OK, transport.Error, transport.State:
				g.reqs.deliver(f)
			case transport.Pong:
			case transport.Leaving:
				if g.in == nil {
					return fmt.Errorf("%w: leaving frame from a local plugin", transport.ErrMalformed)
				}
				g.markLeaving()
			default:
				return fmt.Errorf("%w: unexpected %s frame on the control channel", transport.ErrMalformed, f.Type)
			}
			return nil
		})
		switch {
		case err == nil:
			continue
		case !handshaken:
			if !errors.Is(err, transport.ErrClosed) {
				_ = g.ctl.Send(context.Background(), refuse(err.Error()))
				err = fmt.Errorf("handshake refused: %w", err)
			}
			hs <- err
		case errors.Is(err, transport.ErrMalformed), errors.Is(err, transport.ErrTooLarge):
			g.kill(fmt.Errorf("%w: plugin sent a bad frame: %w", ErrCrashed, err))
		case !errors.Is(err, transport.ErrClosed):
			g.kill(fmt.Errorf("control channel: %w", err))
		}
		return
	}
}

// hello checks the plugin's first frame and welcomes it. A peer with a
// wrong token is refused but not fatal (ok false, nil): it may be someone
// else's or a stale process, and the child we started may still dial. It
// is told and left to hang up, since closing its pipe at once could drop
// the refusal before it is written.
func (g *generation) hello(f transport.Frame, token string) (ok bool, err error) {
	if f.Type != transport.Hello {
		return false, fmt.Errorf("%w: expected hello, got %s", transport.ErrMalformed, f.Type)
	}
	var hello transport.HelloMsg
	if err := transport.Decode(f, &hello); err != nil {
		return false, err
	}
	// An external instance has no token: its client certificate
	// authenticated it (external.go).
	if g.in == nil && subtle.ConstantTimeCompare([]byte(hello.Token), []byte(token)) != 1 {
		g.p.logf(g.num, "refused a peer with a wrong token")
		why := "the plugin presented a wrong token (PLUGVISOR_TOKEN is not the one this host gave it)"
		g.refused.Store(&why)
		return false, g.ctl.Send(context.Background(), refuse("wrong token"))
	}
	if hello.Protocol != transport.Version {
		why := fmt.Sprintf("wrong protocol version: the plugin speaks protocol %d, this host speaks %d (rebuild it against this plugvisor's SDK)", hello.Protocol, transport.Version)
		g.refused.Store(&why)
		return false, errors.New(why)
	}
	if err := hello.Manifest.Validate(); err != nil {
		return false, err
	}
	g.man = hello.Manifest
	welcome := transport.WelcomeMsg{Plugin: g.p.name, Generation: g.num, Config: g.spec.Config,
		HeartbeatMS: g.heartbeatInterval().Milliseconds()}
	if n := replicasOf(g.spec); n > 1 {
		welcome.Replicas = n
	}
	if g.in != nil {
		welcome.Features = []string{transport.FeatureLeaving}
	}
	return true, g.ctl.Send(context.Background(), transport.Frame{Type: transport.Welcome, Payload: transport.JSON(welcome)})
}

func refuse(msg string) transport.Frame {
	return transport.Frame{Type: transport.Refuse, Payload: transport.JSON(transport.ErrorMsg{Error: msg})}
}

// request sends a control request and waits for its reply.
func (g *generation) request(ctx context.Context, t transport.Type, payload []byte) (transport.Frame, error) {
	id, ch := g.reqs.add()
	defer g.reqs.forget(id)
	if err := g.ctl.Send(ctx, transport.Frame{Type: t, ID: id, Payload: payload}); err != nil {
		return transport.Frame{}, err
	}
	select {
	case f := <-ch:
		if f.Type == transport.Error {
			return f, errors.New(transport.ErrorText(f))
		}
		return f, nil
	case <-g.dead:
		return transport.Frame{}, g.reason()
	case <-ctx.Done():
		return transport.Frame{}, fmt.Errorf("%s: no answer: %w", t, ctx.Err())
	}
}

func (g *generation) open(ctx context.Context, m transport.OpenMsg) error {
	_, err := g.request(ctx, transport.Open, transport.JSON(m))
	return err
}

func (g *generation) heartbeat() {
	iv, timeout := g.heartbeatInterval(), g.heartbeatTimeout()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-g.dead:
			return
		case <-t.C:
			silent := time.Since(time.Unix(0, g.lastHeard.Load()))
			if silent > timeout {
				g.kill(fmt.Errorf("%w: no answer to heartbeats for %s (%s)", ErrCrashed, silent.Round(time.Millisecond), g.heartbeatSetting()))
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), iv)
			_ = g.ctl.Send(ctx, transport.Frame{Type: transport.Ping, ID: uint64(time.Now().UnixNano())})
			cancel()
		}
	}
}

// retire ends the generation: shutdown on control, then the grace, SIGTERM
// and SIGKILL to its group; closes its channels and removes its sockets.
func (g *generation) retire(grace time.Duration) {
	if !g.isDead() {
		// Send only waits when the batch is full; bound that for a wedged peer.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = g.ctl.Send(ctx, transport.Frame{Type: transport.Shutdown})
		cancel()
	}
	if g.run != nil {
		stopRunner(g.run, grace)
		<-g.dead
	}
	g.closeConns()
}

func (g *generation) closeConns() {
	g.connMu.Lock()
	conns, socks := g.conns, g.sockets
	g.conns, g.sockets = nil, nil
	g.connMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, s := range socks {
		_ = os.Remove(s)
	}
}

func (g *generation) pid() int {
	if g.run != nil {
		return g.run.pid()
	}
	return 0
}
