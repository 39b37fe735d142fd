package sdk

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
// channel opened through the Mux; call checks more.
func (i *hostInstance) welcome(h *remoteHost) (call func(id uint64)) {
	i.t.Helper()
	return i.welcomeWith(h, transport.WelcomeMsg{Plugin: "geo", Generation: 1})
}

// welcomeWith is welcome with the WelcomeMsg w.
func (i *hostInstance) welcomeWith(h *remoteHost, w transport.WelcomeMsg) (call func(id uint64)) {
	t := i.t
	t.Helper()
	i.send(i.ctl, transport.Frame{Type: transport.Welcome, Payload: transport.JSON(w)})
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
	call = func(id uint64) {
		t.Helper()
		i.send(data, transport.Frame{Type: transport.Call, ID: id, Payload: transport.CallPayload(nil, "double", []byte("21"))})
		if f := nextFrame(t, results, transport.Result); f.ID != id || string(f.Payload) != "42" {
			t.Fatalf("double(21) = %+v", f)
		}
	}
	call(1)
	return call
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

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait returns the output once it holds n lines containing every part.
func (l *lines) wait(t *testing.T, n int, parts ...string) string {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		s := l.String()
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
	return serveEnvAsync(ctx, remoteEnv(t, env, log))
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
	if s := log.String(); s != "" {
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
	start := func(env map[string]string) (*exec.Cmd, *lines, chan error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeExternalExitCodes$")
		cmd.Env = append([]string(nil), base...)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out := newLines()
		cmd.Stdout, cmd.Stderr = out, out
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
		return cmd, out, exited
	}
	code := func(exited chan error, out *lines) int {
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

	// SIGTERM (an orchestrator rolling the instance) does not end it while
	// it serves: it waits for plugvisor to retire it.
	cmd, out, exited := start(h.env(t, "geo"))
	i := h.accept(t)
	call := i.welcome(h)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out.wait(t, 1, "SIGTERM: serving on until plugvisor retires this instance")
	call(2)
	i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
	if c := code(exited, out); c != 0 {
		t.Fatalf("shutdown: exit %d\n%s", c, out)
	}

	// SIGTERM while it has no daemon to serve ends it.
	gone := h.mux.Addr()
	h.mux.Close()
	env := h.env(t, "geo")
	env[transport.EnvConnect] = gone
	cmd, out, exited = start(env)
	out.wait(t, 1, "connection refused", "reconnecting")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if c := code(exited, out); c != 0 {
		t.Fatalf("SIGTERM while disconnected: exit %d\n%s", c, out)
	}
	h.listen(t, gone)

	_, out, exited = start(h.env(t, "geo"))
	i = h.accept(t)
	i.send(i.ctl, transport.Frame{Type: transport.Refuse, Payload: transport.JSON(transport.ErrorMsg{Error: "state version 3 is too new"})})
	if c := code(exited, out); c != 1 || !strings.Contains(out.String(), "state version 3 is too new") {
		t.Fatalf("refuse: exit %d\n%s", c, out)
	}

	env = h.env(t, "geo")
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

// A client certificate rotated on disk is used at the next reconnect: an
// instance refused for its old certificate gets in with the new one, and
// a broken file keeps the previous one.
func TestExternalInstanceReloadsCertificate(t *testing.T) {
	h := newRemoteHost(t)
	cert, key := h.pki.ClientFor("instance", "nobody") // names no configured plugin
	env := h.env(t, "geo")
	env[transport.EnvTLSCert], env[transport.EnvTLSKey] = cert, key
	log := newLines()
	done := serveAsync(t, context.Background(), env, log)
	log.wait(t, 1, "refused by the server during the TLS handshake", "reconnecting")
	if err := os.WriteFile(key, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 1, "keeping the previous TLS files", transport.EnvTLSKey)
	h.pki.ClientFor("instance", "geo") // rotated: now names plugin geo
	i := h.accept(t)
	i.welcome(h)
	i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
	if err := waitServe(t, done); err != nil {
		t.Fatalf("shutdown: ServeEnv = %v, want nil", err)
	}
	if n := strings.Count(log.String(), "keeping the previous TLS files"); n != 1 {
		t.Fatalf("the same reload error logged %d times:\n%s", n, log)
	}
}

// A host written from docs/protocol.md §5 alone — TLS with ALPN, SP
// header, length-prefixed frames — that welcomes the instance, tells it
// to shut down and drops the connection at once: the instance exits
// (nil) instead of taking the drop for a lost daemon and reconnecting.
func TestExternalInstanceShutdownThenDrop(t *testing.T) {
	pki := testpki.New(t)
	cert, err := tls.LoadX509KeyPair(pki.File("server.pem"), pki.File("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pki.CA,
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{transport.ALPNControl}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hostErr := make(chan error, 1)
	go func() { hostErr <- shutdownThenDrop(ln) }()
	ccert, ckey := pki.ClientFor("", "geo")
	env := map[string]string{transport.EnvConnect: "tls+tcp://" + ln.Addr().String(), transport.EnvTLSCert: ccert,
		transport.EnvTLSKey: ckey, transport.EnvTLSCA: pki.File("ca.pem")}
	log := newLines()
	if err := waitServe(t, serveAsync(t, context.Background(), env, log)); err != nil {
		t.Fatalf("ServeEnv = %v, want nil\n%s", err, log)
	}
	if err := <-hostErr; err != nil {
		t.Fatal(err)
	}
	if s := log.String(); s != "" {
		t.Fatalf("shutdown taken for a lost daemon:\n%s", s)
	}
}

func shutdownThenDrop(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitFor))
	tc := c.(*tls.Conn)
	if err := tc.Handshake(); err != nil {
		return err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != transport.ALPNControl {
		return fmt.Errorf("ALPN %q", p)
	}
	header := []byte{0, 'S', 'P', 0, 0, 0x10, 0, 0}
	if _, err := c.Write(header); err != nil {
		return err
	}
	peer := make([]byte, 8)
	if _, err := io.ReadFull(c, peer); err != nil || !bytes.Equal(peer, header) {
		return fmt.Errorf("SP header %x: %v", peer, err)
	}
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint64(n[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	if f, err := transport.ParseFrame(body); err != nil || f.Type != transport.Hello {
		return fmt.Errorf("first frame %v: %v", f.Type, err)
	}
	var out []byte
	for _, f := range []transport.Frame{
		{Type: transport.Welcome, Payload: transport.JSON(transport.WelcomeMsg{Plugin: "geo", Generation: 1})},
		{Type: transport.Shutdown},
	} {
		b := transport.AppendFrame(nil, f)
		out = binary.BigEndian.AppendUint64(out, uint64(len(b)))
		out = append(out, b...)
	}
	_, err = c.Write(out)
	return err
}
