package sdk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/internal/testpki"
	"github.com/plugvisor/plugvisor/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 10 * time.Second

// remoteHost plays the daemon's side of external instances on a real Mux.
type remoteHost struct {
	pki   *testpki.PKI
	known atomic.Bool // whether "geo" is a configured external plugin
	in    chan *transport.Incoming
	logs  chan string
	mux   *transport.Mux
}

func newRemoteHost(t *testing.T) *remoteHost {
	h := &remoteHost{pki: testpki.New(t), in: make(chan *transport.Incoming, 10), logs: make(chan string, 100)}
	h.known.Store(true)
	h.listen(t, "tls+tcp://127.0.0.1:0")
	return h
}

// listen opens the host's Mux on addr (again, after Close, to play a
// daemon restart on the same port).
func (h *remoteHost) listen(t *testing.T, addr string) {
	t.Helper()
	m, err := transport.ListenMux(transport.MuxConfig{Addr: addr,
		Cert: h.pki.File("server.pem"), Key: h.pki.File("server.key"), ClientCA: h.pki.File("ca.pem"),
		Known:    func(n string) bool { return n == "geo" && h.known.Load() },
		Instance: func(in *transport.Incoming) { h.in <- in },
		Log: func(m string) {
			select {
			case h.logs <- m:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.mux = m
	t.Cleanup(func() { m.Close() })
}

// env is what an external instance with a certificate for cn gets.
func (h *remoteHost) env(t *testing.T, cn string) map[string]string {
	cert, key := h.pki.ClientFor("", cn)
	return map[string]string{transport.EnvConnect: h.mux.Addr(), transport.EnvTLSCert: cert, transport.EnvTLSKey: key,
		transport.EnvTLSCA: h.pki.File("ca.pem"), transport.EnvTLSServerName: "localhost"}
}

// instance is the host's view of one connected instance.
type hostInstance struct {
	t      *testing.T
	ctl    *transport.Conn
	frames chan transport.Frame
	hello  transport.HelloMsg
}

// accept takes the next instance: its control channel and its hello.
func (h *remoteHost) accept(t *testing.T) *hostInstance {
	t.Helper()
	var in *transport.Incoming
	select {
	case in = <-h.in:
	case <-time.After(waitFor):
		t.Fatal("no instance connected")
	}
	if in.Name != "geo" || in.Cert != "geo" {
		t.Fatalf("incoming %+v", in)
	}
	ctl, err := in.Listen(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	i := &hostInstance{t: t, ctl: ctl, frames: reader(ctl)}
	f := i.next(transport.Hello)
	if err := transport.Decode(f, &i.hello); err != nil {
		t.Fatal(err)
	}
	if i.hello.Token != "" || i.hello.Manifest.Name != "geoplug" {
		t.Fatalf("hello %+v", i.hello)
	}
	return i
}

// reader delivers every frame c receives, until it closes.
func reader(c *transport.Conn) chan transport.Frame {
	ch := make(chan transport.Frame, 64)
	go func() {
		defer close(ch)
		for {
			err := c.Recv(func(f transport.Frame) error {
				f.Payload = append([]byte(nil), f.Payload...)
				ch <- f
				return nil
			})
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func (i *hostInstance) next(want transport.Type) transport.Frame {
	i.t.Helper()
	return nextFrame(i.t, i.frames, want)
}

func nextFrame(t *testing.T, ch chan transport.Frame, want transport.Type) transport.Frame {
	t.Helper()
	select {
	case f, ok := <-ch:
		if !ok || f.Type != want {
			t.Fatalf("got %v (open %v), want %s", f, ok, want)
		}
		return f
	case <-time.After(waitFor):
		t.Fatalf("no %s frame", want)
	}
	return transport.Frame{}
}

func (i *hostInstance) send(c *transport.Conn, f transport.Frame) {
	i.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Send(ctx, f); err != nil {
		i.t.Fatal(err)
	}
}

// welcome accepts the instance and checks a call round trip on a function
// channel opened through the Mux.
func (i *hostInstance) welcome(h *remoteHost) {
	t := i.t
	t.Helper()
	i.send(i.ctl, transport.Frame{Type: transport.Welcome, Payload: transport.JSON(transport.WelcomeMsg{Plugin: "geo", Generation: 1})})
	data, err := h.mux.Listen("geo", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	i.send(i.ctl, transport.Frame{Type: transport.Open, ID: 7, Payload: transport.JSON(transport.OpenMsg{
		Instance: "functions", Kind: transport.KindFunctions, Address: data.Addr()})})
	if f := i.next(transport.OK); f.ID != 7 {
		t.Fatalf("open answered %+v", f)
	}
	results := reader(data)
	i.send(data, transport.Frame{Type: transport.Call, ID: 1, Payload: transport.CallPayload(nil, "double", []byte("21"))})
	if f := nextFrame(t, results, transport.Result); f.ID != 1 || string(f.Payload) != "42" {
		t.Fatalf("double(21) = %+v", f)
	}
}

var geoPlugin = Plugin{Name: "geoplug", Version: "1.0.0", Functions: map[string]any{
	"double": func(x int) (int, error) { return 2 * x, nil }}}

// lines is a stderr stand-in tests can wait on.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func newLines() *lines { return &lines{more: make(chan struct{}, 1)} }

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return l.buf.Write(b)
}

// wait returns the output once it holds n lines containing every part.
func (l *lines) wait(t *testing.T, n int, parts ...string) string {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		l.mu.Lock()
		s := l.buf.String()
		l.mu.Unlock()
		count := 0
		for _, line := range strings.Split(s, "\n") {
			ok := line != ""
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				count++
			}
		}
		if count >= n {
			return s
		}
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("want %d lines with %q, have:\n%s", n, parts, s)
		}
	}
}

func serveAsync(t *testing.T, ctx context.Context, env map[string]string, log *lines) chan error {
	t.Helper()
	r, err := transport.RemoteFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeEnv(ctx, geoPlugin, Env{Remote: r, log: log}) }()
	return done
}

func waitServe(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitFor):
		t.Fatal("ServeEnv did not return")
		return nil
	}
}

// An external instance connects, is welcomed, serves a call over a
// channel of the Mux, and ends cleanly on shutdown.
func TestExternalInstanceServesAndShutsDown(t *testing.T) {
	h := newRemoteHost(t)
	done := serveAsync(t, context.Background(), h.env(t, "geo"), newLines())
	i := h.accept(t)
	i.welcome(h)
	i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
	if err := waitServe(t, done); err != nil {
		t.Fatalf("shutdown: ServeEnv = %v, want nil", err)
	}
}

// A refused certificate and a lost daemon are retried with a line each;
// the instance comes back to a daemon restarted on the same port.
func TestExternalInstanceReconnects(t *testing.T) {
	h := newRemoteHost(t)
	h.known.Store(false) // the daemon does not know the plugin yet
	log := newLines()
	done := serveAsync(t, context.Background(), h.env(t, "geo"), log)
	log.wait(t, 2, "plugin geoplug: connect to the plugvisor host", "refused by the server during the TLS handshake", "reconnecting to "+h.mux.Addr())
	h.known.Store(true)
	i := h.accept(t)
	i.welcome(h)

	addr := h.mux.Addr()
	h.mux.Close() // the daemon goes away
	t.Logf("instance log:\n%s", log.wait(t, 1, "lost the control channel to the plugvisor host", "reconnecting"))
	h.listen(t, addr)
	i = h.accept(t)
	i.welcome(h)
	i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
	if err := waitServe(t, done); err != nil {
		t.Fatalf("shutdown: ServeEnv = %v, want nil", err)
	}
}

// A refuse in the handshake ends the instance with the reason: no retry.
func TestExternalInstanceRefusedStops(t *testing.T) {
	h := newRemoteHost(t)
	log := newLines()
	done := serveAsync(t, context.Background(), h.env(t, "geo"), log)
	i := h.accept(t)
	i.send(i.ctl, transport.Frame{Type: transport.Refuse, Payload: transport.JSON(transport.ErrorMsg{Error: "missing symbol triple"})})
	err := waitServe(t, done)
	if err == nil || !strings.Contains(err.Error(), "missing symbol triple") || errors.As(err, new(hostLost)) {
		t.Fatalf("refused: ServeEnv = %v", err)
	}
	select {
	case in := <-h.in:
		t.Fatalf("a refused instance connected again from %s", in.Remote)
	default:
	}
	if s := log.buf.String(); s != "" {
		t.Fatalf("refusal logged as a reconnect: %s", s)
	}
}

// Serve as a process: exit 0 on shutdown, 1 on refuse or a broken
// environment (naming the variable), 2 with no plugvisor environment at all.
func TestServeExternalExitCodes(t *testing.T) {
	if os.Getenv("SDK_EXTERNAL_CHILD") == "1" {
		Serve(geoPlugin)
		return
	}
	h := newRemoteHost(t)
	base := []string{"SDK_EXTERNAL_CHILD=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLUGVISOR_") {
			base = append(base, kv)
		}
	}
	start := func(env map[string]string) (*exec.Cmd, *bytes.Buffer, chan error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeExternalExitCodes$")
		cmd.Env = append([]string(nil), base...)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			exited <- nil
		})
		return cmd, &out, exited
	}
	code := func(exited chan error, out *bytes.Buffer) int {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			if err != nil {
				t.Fatal(err)
			}
			return 0
		case <-time.After(waitFor):
			t.Fatalf("child did not exit:\n%s", out)
			return -1
		}
	}

	_, out, exited := start(h.env(t, "geo"))
	i := h.accept(t)
	i.welcome(h)
	i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
	if c := code(exited, out); c != 0 {
		t.Fatalf("shutdown: exit %d\n%s", c, out)
	}

	_, out, exited = start(h.env(t, "geo"))
	i = h.accept(t)
	i.send(i.ctl, transport.Frame{Type: transport.Refuse, Payload: transport.JSON(transport.ErrorMsg{Error: "state version 3 is too new"})})
	if c := code(exited, out); c != 1 || !strings.Contains(out.String(), "state version 3 is too new") {
		t.Fatalf("refuse: exit %d\n%s", c, out)
	}

	env := h.env(t, "geo")
	delete(env, transport.EnvTLSKey)
	_, out, exited = start(env)
	if c := code(exited, out); c != 1 || !strings.Contains(out.String(), transport.EnvTLSKey+" is not") {
		t.Fatalf("broken environment: exit %d\n%s", c, out)
	}

	_, out, exited = start(nil)
	if c := code(exited, out); c != 2 || !strings.Contains(out.String(), transport.EnvConnect+"=tls+tcp://HOST:PORT") {
		t.Fatalf("no environment: exit %d\n%s", c, out)
	}
}
