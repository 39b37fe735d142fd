package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// ALPN protocols of external instances: the control connection offers
// ALPNControl, every other channel ALPNControl + "/" + its 32-hex ID.
const (
	ALPNControl      = "plugvisor.1"
	alpnChannel      = ALPNControl + "/"
	muxScheme        = "mux"
	muxIDLen         = 32
	defaultHSTimeout = 10 * time.Second
	defaultMaxHS     = 64
)

// MuxConfig configures the listener for external instances.
type MuxConfig struct {
	Addr                string // "tls+tcp://host:port" (port 0 allowed: Addr() tells the bound one)
	Cert, Key, ClientCA string // PEM file paths
	// Known reports whether name is a configured external plugin
	// (checked during the TLS handshake, for control connections; called
	// concurrently).
	Known func(name string) bool
	// Instance receives each authenticated control connection; the
	// receiver owns it (must Listen on it or Refuse it). It runs on the
	// connection's own goroutine and may block, but Close waits for it;
	// the instance waits at most 10 s for Listen.
	Instance func(in *Incoming)
	Log      func(msg string) // refusals and errors, one line each

	// HandshakeTimeout bounds the TLS and SP handshakes of an accepted
	// connection, so a client that says nothing holds nothing for long.
	// Default 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakes caps the connections being handshaken at once; more
	// wait in the kernel's accept queue. Default 64.
	MaxHandshakes int
}

// Mux is one TLS listener carrying the control and data channels of every
// external instance: each connection is routed by the ALPN protocol it
// negotiated, and admitted only for the plugin its client certificate names.
type Mux struct {
	cfg MuxConfig
	ln  net.Listener
	// tls holds the server configuration, reloaded when the PEM files
	// change (certificates rotated by cert-manager or by hand).
	tls  tlsFiles
	addr string
	sem  chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[*muxConn]struct{}  // every accepted connection not yet closed
	chans  map[string]*muxChannel // by ID
}

// muxChannel is a host-side channel waiting for (or holding) its one
// connection.
type muxChannel struct {
	owner string
	conn  *Conn
	lst   *muxListener // set once its socket listens
	busy  *muxConn     // the connection routed to it, while open
}

// ListenMux opens the listener. Its errors name the [supervisor] setting
// at fault and how to fix it.
func ListenMux(c MuxConfig) (*Mux, error) {
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = defaultHSTimeout
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = defaultMaxHS
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	hostport, ok := strings.CutPrefix(c.Addr, "tls+tcp://")
	if !ok || hostport == "" {
		return nil, fmt.Errorf("[supervisor] listen = %q: external instances connect over mutual TLS; use \"tls+tcp://HOST:PORT\", e.g. \"tls+tcp://0.0.0.0:9443\"", c.Addr)
	}
	base, err := serverTLS(c)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", strings.TrimPrefix(hostport, "*")) // tls+tcp://*:PORT as in mangos
	if err != nil {
		return nil, fmt.Errorf("[supervisor] listen = %q: %w (is the port in use? pick another or stop what holds it)", c.Addr, err)
	}
	m := &Mux{cfg: c, ln: ln, tls: tlsFiles{conf: base, stamp: fileStamp(c.Cert, c.Key, c.ClientCA)}, addr: "tls+tcp://" + ln.Addr().String(),
		sem: make(chan struct{}, c.MaxHandshakes), done: make(chan struct{}),
		conns: map[*muxConn]struct{}{}, chans: map[string]*muxChannel{}}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// serverTLS loads the server certificate and the client CA.
func serverTLS(c MuxConfig) (*tls.Config, error) {
	if c.Cert == "" || c.Key == "" {
		return nil, errors.New("[supervisor] tls_cert and tls_key: both are required with listen; set them to the PEM server certificate and its key")
	}
	if c.ClientCA == "" {
		return nil, errors.New("[supervisor] tls_client_ca: required with listen (external instances authenticate with client certificates); set it to the PEM CA that signs them")
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("[supervisor] tls_cert %q / tls_key %q: %w (both must be PEM files, the key matching the certificate)", c.Cert, c.Key, err)
	}
	pool, err := loadPool(c.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("[supervisor] tls_client_ca %q: %w", c.ClientCA, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")
	}
	return pool, nil
}

// Addr is the address the listener is bound to, tls+tcp://HOST:PORT.
func (m *Mux) Addr() string { return m.addr }

// Close stops accepting and closes every connection and channel of the
// listener, waiting for its goroutines.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	conns := make([]*muxConn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	var chans []*Conn
	for _, ch := range m.chans {
		chans = append(chans, ch.conn)
	}
	m.mu.Unlock()
	err := m.ln.Close()
	for _, c := range chans {
		c.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	m.wg.Wait()
	return err
}

// logf logs one line: control characters a client slipped into what it
// sent cannot start a forged one.
func (m *Mux) logf(format string, args ...any) {
	m.cfg.Log(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, fmt.Sprintf(format, args...)))
}

// serve accepts connections, at most MaxHandshakes being handshaken at once.
func (m *Mux) serve() {
	defer m.wg.Done()
	for {
		select {
		case m.sem <- struct{}{}:
		case <-m.done:
			return
		}
		raw, err := m.ln.Accept()
		if err != nil {
			<-m.sem
			select {
			case <-m.done:
				return
			default:
			}
			// Out of file descriptors and the like: say so, and retry soon.
			m.logf("external instances: accept on %s: %v", m.addr, err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-m.done:
				return
			}
			continue
		}
		c := m.track(raw)
		if c == nil {
			<-m.sem
			continue
		}
		m.wg.Add(1)
		go m.handshake(c)
	}
}

// route is what a connection's TLS handshake decided.
type route struct {
	id   string // channel ID; "" for a control connection
	name string // plugin the certificate names
	cn   string
	why  string // refusal reason, when a callback refused
}

// handshake runs the TLS handshake of one accepted connection and hands it
// to its receiver.
func (m *Mux) handshake(c *muxConn) {
	defer m.wg.Done()
	held := true
	release := func() {
		if held {
			<-m.sem
			held = false
		}
	}
	defer release()
	var r route
	tc := tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		return m.configFor(h, &r)
	}})
	remote := c.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.HandshakeTimeout)
	// Also bounds the TLS layer's reads and writes; deliver sets a fresh
	// one for the SP header exchange.
	_ = c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.Close()
		m.logf("external instance from %s refused: %s", remote, m.refusal(r, err))
		return
	}
	release()
	if r.id != "" {
		if err := m.deliver(r.id, r.name, c, tc); err != nil {
			c.Close()
			m.logf("external instance from %s refused: %v", remote, err)
		}
		return
	}
	in := &Incoming{Name: r.name, Remote: remote, Cert: r.cn, At: time.Now(), m: m, c: c, tc: tc}
	if m.cfg.Instance == nil {
		in.Refuse("this daemon takes no external instances")
		return
	}
	m.cfg.Instance(in)
}

// refusal phrases why a handshake failed.
func (m *Mux) refusal(r route, err error) string {
	var ve *tls.CertificateVerificationError
	switch {
	case r.why != "":
		return r.why
	case errors.As(err, &ve):
		cn := ""
		if len(ve.UnverifiedCertificates) > 0 {
			cn = ve.UnverifiedCertificates[0].Subject.CommonName
		}
		if errors.As(ve.Err, new(x509.UnknownAuthorityError)) {
			return fmt.Sprintf("client certificate CN=%q is not signed by tls_client_ca: %v", cn, ve.Err)
		}
		return fmt.Sprintf("client certificate CN=%q is not valid for a client: %v", cn, ve.Err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no TLS handshake within %s", m.cfg.HandshakeTimeout)
	case errors.Is(err, io.EOF):
		return "closed the connection before completing a TLS handshake"
	case errors.As(err, new(tls.RecordHeaderError)):
		return "not a TLS client (plain TCP?)"
	}
	return fmt.Sprintf("TLS handshake: %v", err)
}

// configFor picks the connection's protocol from the ALPN list it offers:
// the control protocol or a channel that exists.
func (m *Mux) configFor(h *tls.ClientHelloInfo, r *route) (*tls.Config, error) {
	proto, err := m.pickProto(h.SupportedProtos, r)
	if err != nil {
		r.why = err.Error()
		return nil, err
	}
	c := m.tlsConfig().Clone()
	c.NextProtos = []string{proto}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := m.identify(cs, r); err != nil {
			r.why = err.Error()
			return err
		}
		return nil
	}
	return c, nil
}

func (m *Mux) pickProto(offered []string, r *route) (string, error) {
	for _, p := range offered {
		if p == ALPNControl {
			return p, nil
		}
		if id, ok := strings.CutPrefix(p, alpnChannel); ok && validMuxID(id) {
			m.mu.Lock()
			ch := m.chans[id]
			m.mu.Unlock()
			if ch == nil {
				return "", fmt.Errorf("unknown channel %s (it was closed, or never opened for this instance)", id)
			}
			r.id = id
			return p, nil
		}
	}
	if len(offered) == 0 {
		return "", fmt.Errorf("offers no ALPN protocol (plugvisor clients offer %s or %sID)", ALPNControl, alpnChannel)
	}
	return "", fmt.Errorf("offers ALPN %q, not %s or %sID", offered, ALPNControl, alpnChannel)
}

// identify checks the verified client certificate names the plugin the
// connection is for: any configured external plugin for a control
// connection, the channel's owner for a channel.
func (m *Mux) identify(cs tls.ConnectionState, r *route) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	cert := cs.PeerCertificates[0]
	r.cn = cert.Subject.CommonName
	names := append([]string{cert.Subject.CommonName}, cert.DNSNames...)
	if r.id == "" {
		for _, n := range names {
			if n != "" && m.cfg.Known != nil && m.cfg.Known(n) {
				r.name = n
				return nil
			}
		}
		return fmt.Errorf("client certificate CN=%q DNS=%q names no plugin with driver = \"external\"", cert.Subject.CommonName, cert.DNSNames)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.chans[r.id]
	switch {
	case ch == nil:
		return fmt.Errorf("unknown channel %s", r.id)
	case !slices.Contains(names, ch.owner):
		return fmt.Errorf("client certificate CN=%q DNS=%q may not attach to channel %s of plugin %s", cert.Subject.CommonName, cert.DNSNames, r.id, ch.owner)
	case ch.busy != nil:
		return fmt.Errorf("channel %s of plugin %s is already connected", r.id, ch.owner)
	}
	r.name = ch.owner
	return nil
}

// deliver hands an authenticated connection to channel id's listener,
// which runs the SP handshake.
func (m *Mux) deliver(id, owner string, c *muxConn, tc *tls.Conn) error {
	m.mu.Lock()
	ch := m.chans[id]
	switch {
	case m.closed:
		m.mu.Unlock()
		return errors.New("the listener is closing")
	case ch == nil || ch.lst == nil:
		m.mu.Unlock()
		return fmt.Errorf("channel %s was closed", id)
	case ch.owner != owner:
		m.mu.Unlock()
		return fmt.Errorf("channel %s belongs to plugin %s, not %s", id, ch.owner, owner)
	case ch.busy != nil:
		m.mu.Unlock()
		return fmt.Errorf("channel %s of plugin %s is already connected", id, owner)
	}
	ch.busy = c
	c.ch = ch
	l := ch.lst
	m.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	l.start(&pipeConn{tc})
	return nil
}

// Listen opens a host-side channel that only a connection of owner (its
// certificate name) dialing ALPN plugvisor.1/ID may attach to. Its Addr()
// is "mux://ID".
func (m *Mux) Listen(owner string, o Options) (*Conn, error) {
	c, _, err := m.listen(owner, o)
	return c, err
}

func (m *Mux) listen(owner string, o Options) (*Conn, string, error) {
	var b [muxIDLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", fmt.Errorf("channel id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	addr := muxScheme + "://" + id
	c, err := newConn(addr, o)
	if err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return nil, "", fmt.Errorf("listen on %s: %w", addr, ErrClosed)
	}
	m.chans[id] = &muxChannel{owner: owner, conn: c}
	m.mu.Unlock()
	if err := c.sock.ListenOptions(addr, map[string]any{optMux: m}); err != nil {
		m.drop(id)
		c.Close()
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	return c, id, nil
}

// attach records the listener of channel id once its socket listens.
func (m *Mux) attach(id string, l *muxListener) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.chans[id]
	if ch == nil || m.closed {
		return ErrClosed
	}
	ch.lst = l
	return nil
}

// drop forgets channel id (its socket closed) and closes its connection.
func (m *Mux) drop(id string) {
	m.mu.Lock()
	ch := m.chans[id]
	delete(m.chans, id)
	var busy *muxConn
	if ch != nil {
		busy = ch.busy
	}
	m.mu.Unlock()
	if busy != nil {
		busy.Close()
	}
}

// track registers an accepted connection, or closes it if the mux is closing.
func (m *Mux) track(raw net.Conn) *muxConn {
	c := &muxConn{Conn: raw, m: m, closed: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		raw.Close()
		return nil
	}
	m.conns[c] = struct{}{}
	return c
}

// muxConn is an accepted TCP connection, forgotten by the mux (and its
// channel) when closed.
type muxConn struct {
	net.Conn
	m      *Mux
	ch     *muxChannel // channel it was routed to; guarded by m.mu
	once   sync.Once
	closed chan struct{}
}

// pipeConn is the TLS connection a mangos pipe runs on. A failed write
// closes it: mangos' SP handshake leaves a connection whose header write
// failed open.
type pipeConn struct{ *tls.Conn }

func (c *pipeConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.Conn.Close()
	}
	return n, err
}

func (c *muxConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.m.mu.Lock()
		delete(c.m.conns, c)
		if c.ch != nil && c.ch.busy == c {
			c.ch.busy = nil
		}
		c.m.mu.Unlock()
	})
	return c.Conn.Close()
}

// Incoming is an authenticated control connection of an external
// instance, waiting for its receiver to Listen on it or Refuse it.
type Incoming struct {
	Name   string    // plugin name from the certificate
	Remote string    // peer address
	Cert   string    // certificate subject CN (for status)
	At     time.Time // connected at

	m    *Mux
	c    *muxConn
	tc   *tls.Conn
	once sync.Once
}

// take claims the connection for Listen or Refuse, once.
func (in *Incoming) take() bool {
	ok := false
	in.once.Do(func() { ok = true })
	return ok
}

// Listen turns the accepted control connection into the generation's
// control Conn: it returns once the SP handshake is done and the instance
// attached, or with an error if the instance went away first (bounded by
// the handshake timeout).
func (in *Incoming) Listen(o Options) (*Conn, error) {
	if !in.take() {
		return nil, fmt.Errorf("control connection of %s from %s was already taken or refused", in.Name, in.Remote)
	}
	c, id, err := in.m.listen(in.Name, o)
	if err != nil {
		in.c.Close()
		return nil, err
	}
	if err := in.m.deliver(id, in.Name, in.c, in.tc); err != nil {
		in.c.Close()
		c.Close()
		return nil, err
	}
	// The handshake deadline closes the connection if the instance is
	// silent; the timer is a backstop.
	t := time.NewTimer(2 * in.m.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-c.Attached():
		return c, nil
	case <-in.c.closed:
	case <-t.C:
	}
	in.c.Close()
	c.Close()
	return nil, fmt.Errorf("external instance %s from %s went away before its control channel was up", in.Name, in.Remote)
}

// Refuse closes the connection, logging why.
func (in *Incoming) Refuse(why string) {
	if !in.take() {
		return
	}
	in.c.Close()
	in.m.logf("external instance %s from %s refused: %s", in.Name, in.Remote, why)
}
