package transport_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/pair"
	_ "go.nanomsg.org/mangos/v3/transport/tlstcp"

	"github.com/plugvisor/plugvisor/internal/testpki"
	"github.com/plugvisor/plugvisor/transport"
)

// muxHost is a Mux under test with its log and its incoming control
// connections as channels.
type muxHost struct {
	*transport.Mux
	pki  *testpki.PKI
	logs chan string
	in   chan *transport.Incoming
}

func newMuxHost(t *testing.T, pki *testpki.PKI, known ...string) *muxHost {
	t.Helper()
	return newMuxHostWith(t, pki, transport.MuxConfig{}, known...)
}

func newMuxHostWith(t *testing.T, pki *testpki.PKI, c transport.MuxConfig, known ...string) *muxHost {
	t.Helper()
	h := &muxHost{pki: pki, logs: make(chan string, 100), in: make(chan *transport.Incoming, 10)}
	if c.Addr == "" {
		c.Addr = "tls+tcp://127.0.0.1:0"
	}
	c.Cert, c.Key, c.ClientCA = pki.File("server.pem"), pki.File("server.key"), pki.File("ca.pem")
	c.Known = func(n string) bool {
		for _, k := range known {
			if k == n {
				return true
			}
		}
		return false
	}
	c.Instance = func(in *transport.Incoming) { h.in <- in }
	c.Log = func(m string) {
		select {
		case h.logs <- m:
		default:
			t.Errorf("log overflow: %s", m)
		}
	}
	m, err := transport.ListenMux(c)
	if err != nil {
		t.Fatal(err)
	}
	h.Mux = m
	t.Cleanup(func() { m.Close() })
	return h
}

// remote is the Remote of a client certificate (cn, sans) signed by p,
// built from the environment the SDK reads.
func (h *muxHost) remote(t *testing.T, p *testpki.PKI, cn string, sans ...string) transport.Remote {
	t.Helper()
	cert, key := p.ClientFor("", cn, sans...)
	env := map[string]string{transport.EnvConnect: h.Addr(), transport.EnvTLSCert: cert, transport.EnvTLSKey: key,
		transport.EnvTLSCA: h.pki.File("ca.pem")}
	r, err := transport.RemoteFromEnv(func(k string) string { return env[k] })
	if err != nil || r == nil {
		t.Fatalf("remote from env: %v %v", r, err)
	}
	return *r
}

// wantLog waits for a log line containing every part.
func (h *muxHost) wantLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-h.logs:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				t.Logf("log: %s", l)
				return l
			}
			t.Logf("other log line: %s", l)
		case <-deadline:
			t.Fatalf("no log line with %q", parts)
		}
	}
}

type dialed struct {
	c   *transport.Conn
	err error
}

func dialAsync(r transport.Remote, addr string) chan dialed {
	ch := make(chan dialed, 1)
	go func() {
		c, err := r.Dial(addr, transport.Options{})
		ch <- dialed{c, err}
	}()
	return ch
}

func waitDial(t *testing.T, ch chan dialed) (*transport.Conn, error) {
	t.Helper()
	select {
	case d := <-ch:
		if d.c != nil {
			t.Cleanup(func() { d.c.Close() })
		}
		return d.c, d.err
	case <-time.After(15 * time.Second):
		t.Fatal("dial did not return")
		return nil, nil
	}
}

// attach connects an instance of r: its control channel and one data
// channel, both sides.
func (h *muxHost) attach(t *testing.T, r transport.Remote, name string) (hostCtl, plugCtl, hostData, plugData *transport.Conn) {
	t.Helper()
	d := dialAsync(r, "")
	var in *transport.Incoming
	select {
	case in = <-h.in:
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming control connection")
	}
	if in.Name != name || !strings.HasPrefix(in.Remote, "127.0.0.1:") || in.At.IsZero() {
		t.Fatalf("incoming: %+v, want name %s", in, name)
	}
	hostCtl, err := in.Listen(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostCtl.Close() })
	plugCtl, err = waitDial(t, d)
	if err != nil {
		t.Fatal(err)
	}
	hostData, err = h.Listen(name, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostData.Close() })
	if !strings.HasPrefix(hostData.Addr(), "mux://") || len(hostData.Addr()) != len("mux://")+32 {
		t.Fatalf("channel address %q", hostData.Addr())
	}
	plugData, err = waitDial(t, dialAsync(r, hostData.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	return
}

// exchange sends a frame each way and checks it arrives.
func exchange(t *testing.T, a, b *transport.Conn, id uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range [][2]*transport.Conn{{a, b}, {b, a}} {
		if err := p[0].Send(ctx, transport.Frame{Type: transport.Ping, ID: id}); err != nil {
			t.Fatal(err)
		}
		got := make(chan transport.Frame, 1)
		go func() {
			_ = p[1].Recv(func(f transport.Frame) error { got <- f; return nil })
		}()
		select {
		case f := <-got:
			if f.Type != transport.Ping || f.ID != id {
				t.Fatalf("got %+v, want ping %d", f, id)
			}
		case <-ctx.Done():
			t.Fatalf("frame %d not received on %s", id, p[1].Addr())
		}
	}
}

func TestMuxControlAndChannel(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHost(t, pki, "geo")
	// The certificate's CN is no plugin; its second DNS SAN is.
	hostCtl, plugCtl, hostData, plugData := h.attach(t, h.remote(t, pki, "ops", "www.example", "geo"), "geo")
	exchange(t, hostCtl, plugCtl, 1)
	exchange(t, hostData, plugData, 2)
	select {
	case l := <-h.logs:
		t.Fatalf("unexpected log: %s", l)
	default:
	}
}

// Every refusal fails the handshake with one log line naming the peer and
// why, and leaves the attached instance alone.
func TestMuxRefusals(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHost(t, pki, "geo", "other")
	geo := h.remote(t, pki, "geo")
	hostCtl, plugCtl, hostData, plugData := h.attach(t, geo, "geo")
	otherChan, err := h.Listen("other", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer otherChan.Close()

	for _, tc := range []struct {
		name string
		r    transport.Remote
		addr string
		why  string
	}{
		{"other CA", h.remote(t, testpki.New(t), "geo"), "", "is not signed by tls_client_ca"},
		{"unknown name", h.remote(t, pki, "nobody", "nobody.example"), "", `names no plugin with driver = "external"`},
		{"channel of another plugin", geo, otherChan.Addr(), "may not attach to channel"},
		{"unknown channel", geo, "mux://0123456789abcdef0123456789abcdef", "unknown channel 0123456789abcdef0123456789abcdef"},
		{"channel already connected", geo, hostData.Addr(), "is already connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := waitDial(t, dialAsync(tc.r, tc.addr))
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			t.Logf("client sees: %v", err)
			h.wantLog(t, "refused", "127.0.0.1:", tc.why)
		})
	}
	t.Run("plain TCP", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(h.Addr(), "tls+tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 100)); err == nil {
			t.Fatal("read succeeded")
		}
		h.wantLog(t, c.LocalAddr().String(), "not a TLS client")
	})
	cert, key := pki.ClientFor("geo2", "geo")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		protos []string
		certs  []tls.Certificate
		why    string
	}{
		"no ALPN":            {nil, []tls.Certificate{pair}, "offers no ALPN protocol"},
		"other ALPN":         {[]string{"h2", "plugvisor.1/x\nforged log line"}, []tls.Certificate{pair}, `offers ALPN ["h2" "plugvisor.1/x\nforged log line"]`},
		"no certificate":     {[]string{transport.ALPNControl}, nil, "didn't provide a certificate"},
		"server certificate": {[]string{transport.ALPNControl}, []tls.Certificate{serverPair(t, pki)}, `CN="plugvisor" is not valid for a client: x509: certificate specifies an incompatible key usage`},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", strings.TrimPrefix(h.Addr(), "tls+tcp://"), &tls.Config{
				Certificates: tc.certs, RootCAs: pki.CA, ServerName: "localhost", NextProtos: tc.protos})
			if err == nil {
				// TLS 1.3: the client learns of the refusal on its first read.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
			}
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			}
			if l := h.wantLog(t, "refused", tc.why); strings.Contains(l, "\n") {
				t.Fatalf("log line split by the client: %q", l)
			}
		})
	}
	select {
	case <-plugCtl.Lost():
		t.Fatal("the serving instance's control channel was lost")
	case <-plugData.Lost():
		t.Fatal("the serving instance's data channel was lost")
	default:
	}
	exchange(t, hostCtl, plugCtl, 3)
	exchange(t, hostData, plugData, 4)
}

// A client that connects and says nothing is dropped after the handshake
// timeout, before TLS and after it (no SP header); the channel it
// occupied takes its rightful connection afterwards.
func TestMuxSilentClientsTimeOut(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHostWith(t, pki, transport.MuxConfig{HandshakeTimeout: time.Second}, "geo")
	hostport := strings.TrimPrefix(h.Addr(), "tls+tcp://")
	raw, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("silent TCP client not dropped by the host: %v", err)
	}
	h.wantLog(t, raw.LocalAddr().String(), "no TLS handshake within 1s")

	ch, err := h.Listen("geo", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cert, key := pki.ClientFor("", "geo")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(ch.Addr(), "mux://")
	tc, err := tls.Dial("tcp", hostport, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pki.CA,
		ServerName: "localhost", NextProtos: []string{"plugvisor.1/" + id}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// TLS done, no SP header: the host sends its header, then gives up.
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8)
	if _, err := tc.Read(buf); err != nil {
		t.Fatalf("no SP header from the host: %v", err)
	}
	if _, err := tc.Read(buf); err == nil || os.IsTimeout(err) {
		t.Fatalf("silent TLS client not dropped by the host: %v", err)
	}
	plug, err := waitDial(t, dialAsync(h.remote(t, pki, "geo"), ch.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, ch, plug, 5)
}

// The wire is exactly mangos tls+tcp with an ALPN protocol: a stock
// mangos PAIR socket attaches to a channel.
func TestMuxSpeaksMangosTLS(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHost(t, pki, "geo")
	ch, err := h.Listen("geo", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cert, key := pki.ClientFor("", "geo")
	pair0, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := pair.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	conf := &tls.Config{Certificates: []tls.Certificate{pair0}, RootCAs: pki.CA, ServerName: "localhost",
		NextProtos: []string{"plugvisor.1/" + strings.TrimPrefix(ch.Addr(), "mux://")}}
	if err := sock.DialOptions(h.Addr(), map[string]any{mangos.OptionTLSConfig: conf, mangos.OptionDialAsynch: false}); err != nil {
		t.Fatal(err)
	}
	_ = sock.SetOption(mangos.OptionRecvDeadline, 10*time.Second)
	msg := transport.AppendFrame(nil, transport.Frame{Type: transport.Ping, ID: 9})
	if err := sock.Send(msg); err != nil {
		t.Fatal(err)
	}
	got := make(chan transport.Frame, 1)
	go func() { _ = ch.Recv(func(f transport.Frame) error { got <- f; return nil }) }()
	select {
	case f := <-got:
		if f.Type != transport.Ping || f.ID != 9 {
			t.Fatalf("got %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no frame")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.Send(ctx, transport.Frame{Type: transport.Pong, ID: 9}); err != nil {
		t.Fatal(err)
	}
	b, err := sock.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := transport.ParseFrame(b); err != nil || f.Type != transport.Pong {
		t.Fatalf("got %+v %v", f, err)
	}
}

// tlsClient completes a TLS handshake as plugin geo offering protos, and
// then does nothing.
func tlsClient(t *testing.T, h *muxHost, protos ...string) *tls.Conn {
	t.Helper()
	cert, key := h.pki.ClientFor("", "geo")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", strings.TrimPrefix(h.Addr(), "tls+tcp://"), &tls.Config{Certificates: []tls.Certificate{pair},
		RootCAs: h.pki.CA, ServerName: "localhost", NextProtos: protos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *muxHost) incoming(t *testing.T) *transport.Incoming {
	t.Helper()
	select {
	case in := <-h.in:
		return in
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming control connection")
		return nil
	}
}

// An instance that goes away before the host listens on its control
// connection makes Listen fail at once, not hang.
func TestMuxIncomingGoneBeforeListen(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHostWith(t, pki, transport.MuxConfig{HandshakeTimeout: time.Minute}, "geo")
	c := tlsClient(t, h, transport.ALPNControl)
	in := h.incoming(t)
	c.Close()
	done := make(chan error, 1)
	go func() {
		ctl, err := in.Listen(transport.Options{})
		if ctl != nil {
			ctl.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "went away") {
			t.Fatalf("Listen = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen hangs on a vanished instance")
	}
	if _, err := in.Listen(transport.Options{}); err == nil {
		t.Fatal("second Listen on one Incoming succeeded")
	}
}

// Closing the Mux drops every connection — attached instances, a held
// Incoming, a handshake in progress — promptly: the plugin side sees
// them lost, and no goroutine is left (goleak in TestMain).
func TestMuxCloseDropsInstances(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHostWith(t, pki, transport.MuxConfig{HandshakeTimeout: time.Minute}, "geo")
	_, plugCtl, _, plugData := h.attach(t, h.remote(t, pki, "geo"), "geo")
	held := tlsClient(t, h, transport.ALPNControl)
	h.incoming(t) // held, never listened on
	silent, err := net.Dial("tcp", strings.TrimPrefix(h.Addr(), "tls+tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Mux.Close hangs")
	}
	for _, c := range []net.Conn{held, silent} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("connection from %s still open after Mux.Close: %v", c.LocalAddr(), err)
		}
	}
	for _, c := range []*transport.Conn{plugCtl, plugData} {
		select {
		case <-c.Lost():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not lost after Mux.Close", c.Addr())
		}
	}
	if _, err := h.Listen("geo", transport.Options{}); err == nil {
		t.Fatal("Listen on a closed Mux succeeded")
	}
}

// Configuration errors name the setting and the fix.
func TestMuxConfigErrors(t *testing.T) {
	pki := testpki.New(t)
	good := transport.MuxConfig{Addr: "tls+tcp://127.0.0.1:0", Cert: pki.File("server.pem"), Key: pki.File("server.key"), ClientCA: pki.File("ca.pem")}
	for _, tc := range []struct {
		edit func(c *transport.MuxConfig)
		want string
	}{
		{func(c *transport.MuxConfig) { c.Addr = "tcp://127.0.0.1:0" }, `listen = "tcp://127.0.0.1:0"`},
		{func(c *transport.MuxConfig) { c.Addr = "tls+tcp://256.0.0.1:1" }, "listen"},
		{func(c *transport.MuxConfig) { c.Cert = "" }, "tls_cert and tls_key"},
		{func(c *transport.MuxConfig) { c.ClientCA = "" }, "tls_client_ca: required"},
		{func(c *transport.MuxConfig) { c.Key = pki.File("client.key") }, "tls_key"},
		{func(c *transport.MuxConfig) { c.ClientCA = pki.File("server.key") }, "tls_client_ca"},
		{func(c *transport.MuxConfig) { c.Cert = pki.File("missing.pem") }, "tls_cert"},
	} {
		c := good
		tc.edit(&c)
		m, err := transport.ListenMux(c)
		if err == nil {
			m.Close()
			t.Errorf("%+v: no error", c)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "[supervisor]") {
			t.Errorf("error %q does not name %q", err, tc.want)
		}
	}
}

func TestRemoteFromEnvErrors(t *testing.T) {
	pki := testpki.New(t)
	base := map[string]string{transport.EnvConnect: "tls+tcp://127.0.0.1:9443", transport.EnvTLSCert: pki.File("client.pem"),
		transport.EnvTLSKey: pki.File("client.key"), transport.EnvTLSCA: pki.File("ca.pem")}
	for name, tc := range map[string]struct {
		k, v, want string
	}{
		"no scheme":   {transport.EnvConnect, "127.0.0.1:9443", transport.EnvConnect},
		"no cert":     {transport.EnvTLSCert, "", transport.EnvTLSCert + " is not"},
		"bad key":     {transport.EnvTLSKey, pki.File("server.key"), transport.EnvTLSKey},
		"missing CA":  {transport.EnvTLSCA, pki.File("nope.pem"), transport.EnvTLSCA},
		"CA not PEM":  {transport.EnvTLSCA, pki.File("client.key"), "no PEM certificate"},
		"unset":       {transport.EnvConnect, "", ""},
		"server name": {transport.EnvTLSServerName, "daemon.example", ""},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		env[tc.k] = tc.v
		r, err := transport.RemoteFromEnv(func(k string) string { return env[k] })
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want == "" && tc.k == transport.EnvConnect && r != nil:
			t.Errorf("%s: a Remote without %s", name, transport.EnvConnect)
		case tc.want == "" && tc.k == transport.EnvTLSServerName && (r == nil || r.TLS.ServerName != tc.v):
			t.Errorf("%s: server name not taken: %+v", name, r)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v does not name %s", name, err, tc.want)
		}
	}
}

// At most MaxHandshakes connections are handshaken at once: while a silent
// client holds the only slot, the next waits in the accept queue, and is
// served as soon as the slot frees.
func TestMuxCapsHandshakes(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHostWith(t, pki, transport.MuxConfig{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, "geo")
	hostport := strings.TrimPrefix(h.Addr(), "tls+tcp://")
	silent, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cert, key := pki.ClientFor("", "geo")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pki.CA,
		ServerName: "localhost", NextProtos: []string{transport.ALPNControl}})
	defer tc.Close()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- tc.HandshakeContext(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("second handshake ran while the only slot was taken: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	silent.Close()
	h.wantLog(t, silent.LocalAddr().String(), "closed the connection before completing a TLS handshake")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("second handshake not served after the slot freed")
	}
	h.incoming(t).Refuse("test over")
	h.wantLog(t, "refused: test over")
}

// serverPair is the daemon's own certificate, used as a client one.
func serverPair(t *testing.T, pki *testpki.PKI) tls.Certificate {
	t.Helper()
	p, err := tls.LoadX509KeyPair(pki.File("server.pem"), pki.File("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Rotated certificate files are picked up by the next connection without
// a restart; files that do not load keep the previous ones.
func TestMuxReloadsCertificates(t *testing.T) {
	pki := testpki.New(t)
	h := newMuxHost(t, pki, "geo")
	next := testpki.New(t) // the CA the client certificates move to
	r := h.remote(t, next, "geo")
	ch, err := h.Listen("geo", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if c, err := waitDial(t, dialAsync(r, ch.Addr())); err == nil {
		c.Close()
		t.Fatal("certificate of a CA not yet trusted accepted")
	}
	h.wantLog(t, "is not signed by tls_client_ca")

	// During the rotation tls_client_ca holds both CAs.
	bundle := readFile(t, pki.File("ca.pem")) + readFile(t, next.File("ca.pem"))
	writeFile(t, pki.File("ca.pem"), bundle)
	plug, err := waitDial(t, dialAsync(r, ch.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	h.wantLog(t, "reloaded the TLS certificates")
	exchange(t, ch, plug, 1)

	writeFile(t, pki.File("server.key"), "half a key")
	ch2, err := h.Listen("geo", transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ch2.Close()
	plug2, err := waitDial(t, dialAsync(r, ch2.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	h.wantLog(t, "keeping the previous TLS certificates", "tls_key")
	exchange(t, ch2, plug2, 2)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
