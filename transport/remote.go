package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.nanomsg.org/mangos/v3"
)

// Remote is how an external instance reaches the daemon: every channel is
// a TLS connection to Connect with the instance's client certificate,
// told apart by its ALPN protocol.
type Remote struct {
	Connect string      // tls+tcp://HOST:PORT
	TLS     *tls.Config // client certificate, CA of the server; NextProtos is set per dial
}

// Dial opens the plugin side of a channel of an external instance: addr is
// "" for the control channel or the "mux://ID" an open frame names. It
// fails if the daemon refuses the certificate or does not know the channel.
func (r Remote) Dial(addr string, o Options) (*Conn, error) {
	hostport, err := connectHostPort(r.Connect)
	if err != nil {
		return nil, err
	}
	if r.TLS == nil {
		return nil, errors.New("remote dial: no TLS configuration (client certificate and CA)")
	}
	proto, name := ALPNControl, r.Connect
	if addr != "" {
		id, ok := strings.CutPrefix(addr, muxScheme+"://")
		if !ok || !validMuxID(id) {
			return nil, fmt.Errorf("%w: channel address %q of an external instance is not mux://ID", ErrMalformed, addr)
		}
		proto, name = alpnChannel+id, addr
	}
	conf := r.TLS.Clone()
	conf.NextProtos = []string{proto}
	conf.MinVersion = max(conf.MinVersion, tls.VersionTLS12)
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(hostport)
	}
	c, err := newConn(name, o)
	if err != nil {
		return nil, err
	}
	err = c.sock.DialOptions(muxScheme+"://"+hostport, map[string]any{
		mangos.OptionDialAsynch: false, mangos.OptionTLSConfig: conf})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s (%s): %w", r.Connect, proto, err)
	}
	return c, nil
}

// connectHostPort checks a PLUGVISOR_CONNECT address and returns its HOST:PORT.
func connectHostPort(addr string) (string, error) {
	hp, ok := strings.CutPrefix(addr, "tls+tcp://")
	if ok {
		if _, _, err := net.SplitHostPort(hp); err == nil {
			return hp, nil
		}
	}
	return "", fmt.Errorf("%s=%q: want tls+tcp://HOST:PORT, the daemon's [supervisor] listen address as reachable from here", EnvConnect, addr)
}

// RemoteFromEnv builds the Remote of an external instance from its
// environment (getenv is os.Getenv outside tests). It returns nil when
// PLUGVISOR_CONNECT is not set; its errors name the variable at fault.
func RemoteFromEnv(getenv func(string) string) (*Remote, error) {
	connect := getenv(EnvConnect)
	if connect == "" {
		return nil, nil
	}
	if _, err := connectHostPort(connect); err != nil {
		return nil, err
	}
	for _, v := range []string{EnvTLSCert, EnvTLSKey, EnvTLSCA} {
		if getenv(v) == "" {
			return nil, fmt.Errorf("%s is set but %s is not: an external instance needs %s, %s and %s (PEM files)", EnvConnect, v, EnvTLSCert, EnvTLSKey, EnvTLSCA)
		}
	}
	cert, err := tls.LoadX509KeyPair(getenv(EnvTLSCert), getenv(EnvTLSKey))
	if err != nil {
		return nil, fmt.Errorf("%s=%q / %s=%q: %w (the client certificate and its key, PEM)", EnvTLSCert, getenv(EnvTLSCert), EnvTLSKey, getenv(EnvTLSKey), err)
	}
	pool, err := loadPool(getenv(EnvTLSCA))
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", EnvTLSCA, getenv(EnvTLSCA), err)
	}
	return &Remote{Connect: connect, TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool,
		ServerName: getenv(EnvTLSServerName), MinVersion: tls.VersionTLS12}}, nil
}
