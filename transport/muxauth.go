package transport

// How the mux decides who a connection is: the TLS handshake of each
// accepted connection, its ALPN route (control or a channel), the
// certificate's name checked against the plugins and channel owners, and
// the one log line a refusal gets.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

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
