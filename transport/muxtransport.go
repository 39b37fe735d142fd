package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.nanomsg.org/mangos/v3"
	mtransport "go.nanomsg.org/mangos/v3/transport"
)

// The private mangos transport behind external instances, scheme "mux".
// Listening on mux://ID makes a socket accept the TLS connections a Mux
// routes to channel ID; dialing mux://HOST:PORT (with OptionTLSConfig
// carrying the ALPN protocol) speaks exactly what mangos tls+tcp speaks,
// but with every step of the dial bounded in time, and without redialing
// on its own: the SDK reconnects a whole instance, never one channel.
func init() { mtransport.RegisterTransport(muxTransport{}) }

// optMux hands a mux listener its Mux (a listen option).
const optMux = "plugvisor-mux"

// optNetConn records a pipe's connection, so its handshake deadline can
// be lifted once the SP handshake is done.
const optNetConn = "plugvisor-net-conn"

// dialTimeout bounds connecting, the TLS handshake and the SP handshake of
// a Remote dial.
const dialTimeout = 10 * time.Second

type muxTransport struct{}

func (muxTransport) Scheme() string { return muxScheme }

func (t muxTransport) NewListener(addr string, sock mangos.Socket) (mtransport.Listener, error) {
	id, err := mtransport.StripScheme(t, addr)
	if err != nil {
		return nil, err
	}
	if !validMuxID(id) {
		return nil, fmt.Errorf("mux address %q: want mux://ID with ID %d lowercase hex digits", addr, muxIDLen)
	}
	return &muxListener{id: id, proto: sock.Info(), hs: mtransport.NewConnHandshaker()}, nil
}

func (t muxTransport) NewDialer(addr string, sock mangos.Socket) (mtransport.Dialer, error) {
	hostport, err := mtransport.StripScheme(t, addr)
	if err != nil {
		return nil, err
	}
	return &muxDialer{addr: hostport, proto: sock.Info(), hs: mtransport.NewConnHandshaker()}, nil
}

func validMuxID(id string) bool {
	if len(id) != muxIDLen {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// muxListener is the listening end of one host-side channel.
type muxListener struct {
	id    string
	proto mtransport.ProtocolInfo
	hs    mtransport.Handshaker

	mu      sync.Mutex
	m       *Mux
	maxRecv int
	closed  bool
}

func (l *muxListener) Listen() error {
	l.mu.Lock()
	m := l.m
	l.mu.Unlock()
	if m == nil {
		return errors.New("mux listener without its Mux (use Mux.Listen)")
	}
	return m.attach(l.id, l)
}

// start runs the SP handshake on a connection routed to this channel.
func (l *muxListener) start(c *pipeConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return
	}
	p := mtransport.NewConnPipe(c, l.proto)
	p.SetOption(mangos.OptionMaxRecvSize, l.maxRecv)
	p.SetOption(mangos.OptionTLSConnState, c.ConnectionState())
	p.SetOption(optNetConn, net.Conn(c))
	l.hs.Start(p)
}

func (l *muxListener) Accept() (mtransport.Pipe, error) {
	p, err := l.hs.Wait()
	if err != nil {
		return nil, err
	}
	liftDeadline(p)
	return p, nil
}

// liftDeadline clears the handshake deadline of a pipe's connection.
func liftDeadline(p mtransport.Pipe) {
	if v, err := p.GetOption(optNetConn); err == nil {
		if c, ok := v.(net.Conn); ok {
			_ = c.SetDeadline(time.Time{})
		}
	}
}

func (l *muxListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	m := l.m
	l.mu.Unlock()
	l.hs.Close()
	if m != nil {
		m.drop(l.id)
	}
	return nil
}

func (l *muxListener) Address() string { return muxScheme + "://" + l.id }

func (l *muxListener) SetOption(n string, v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch n {
	case mangos.OptionMaxRecvSize:
		if b, ok := v.(int); ok {
			l.maxRecv = b
			return nil
		}
		return mangos.ErrBadValue
	case optMux:
		if m, ok := v.(*Mux); ok {
			l.m = m
			return nil
		}
		return mangos.ErrBadValue
	}
	return mangos.ErrBadOption
}

func (l *muxListener) GetOption(n string) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == mangos.OptionMaxRecvSize {
		return l.maxRecv, nil
	}
	return nil, mangos.ErrBadOption
}

// muxDialer dials one connection of an external instance, once.
type muxDialer struct {
	addr  string
	proto mtransport.ProtocolInfo
	hs    mtransport.Handshaker

	mu      sync.Mutex
	conf    *tls.Config
	maxRecv int
	used    bool
}

func (d *muxDialer) Dial() (mtransport.Pipe, error) {
	d.mu.Lock()
	conf, maxRecv, used := d.conf, d.maxRecv, d.used
	d.used = true
	d.mu.Unlock()
	if used {
		// mangos redials when a pipe closes; ErrClosed stops it.
		return nil, mangos.ErrClosed
	}
	if conf == nil {
		return nil, mangos.ErrTLSNoConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	raw, err := (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	dl, _ := ctx.Deadline()
	_ = tc.SetDeadline(dl)
	c := &pipeConn{tc}
	p := mtransport.NewConnPipe(c, d.proto)
	p.SetOption(mangos.OptionMaxRecvSize, maxRecv)
	p.SetOption(mangos.OptionTLSConnState, tc.ConnectionState())
	d.hs.Start(p)
	got, err := d.hs.Wait()
	if err != nil {
		raw.Close()
		return nil, refusedAfterTLS(err)
	}
	_ = tc.SetDeadline(time.Time{})
	return got, nil
}

// refusedAfterTLS explains an SP handshake that failed right after TLS:
// with TLS 1.3 the server checks the client certificate after the client
// thinks the handshake is done, so a refusal shows up here.
func refusedAfterTLS(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return fmt.Errorf("refused by the server during the TLS handshake: %w", err)
	}
	return fmt.Errorf("SP handshake: %w", err)
}

func (d *muxDialer) SetOption(n string, v any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch n {
	case mangos.OptionMaxRecvSize:
		if b, ok := v.(int); ok {
			d.maxRecv = b
			return nil
		}
		return mangos.ErrBadValue
	case mangos.OptionTLSConfig:
		if b, ok := v.(*tls.Config); ok {
			d.conf = b
			return nil
		}
		return mangos.ErrBadValue
	}
	return mangos.ErrBadOption
}

func (d *muxDialer) GetOption(n string) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch n {
	case mangos.OptionMaxRecvSize:
		return d.maxRecv, nil
	case mangos.OptionTLSConfig:
		return d.conf, nil
	}
	return nil, mangos.ErrBadOption
}
