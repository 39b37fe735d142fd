package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UnixScheme prefixes an API address that is a Unix socket path
// ("unix:///run/plugvisor/api.sock"); the CLI accepts the same form.
const UnixScheme = "unix://"

// DefaultMaxConns caps concurrent API connections unless ListenOptions
// says otherwise; Listen lowers any cap to a quarter of the process's
// file descriptor limit so plugins (pipes, sockets) always find some.
const DefaultMaxConns = 512

// ListenOptions say where and how the API listens.
type ListenOptions struct {
	// Addr is "host:port" (DefaultAddr when empty; port 0 picks one) or
	// UnixScheme followed by a socket path.
	Addr string
	// TLSCert and TLSKey are PEM files; with them the API speaks HTTPS.
	// A TCP address other machines can reach requires them.
	TLSCert, TLSKey string
	// ClientCA is a PEM file of CAs; when set, clients must present a
	// certificate one of them signed (mutual TLS).
	ClientCA string
	// MaxConns caps concurrent connections (DefaultMaxConns when 0);
	// further clients wait in the kernel's accept queue.
	MaxConns int
}

// Listen opens the API's listener: a Unix socket (mode 0600), or TCP with
// TLS when configured. Plain HTTP on an address other machines can reach
// is refused with the way to enable TLS. url is what a client connects to:
// "http://127.0.0.1:9081", "https://…" or "unix:///path".
func Listen(o ListenOptions) (ln net.Listener, url string, err error) {
	addr := o.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	var tlsCfg *tls.Config
	if o.TLSCert != "" || o.TLSKey != "" {
		if tlsCfg, err = serverTLS(o); err != nil {
			return nil, "", err
		}
	}
	if path, ok := strings.CutPrefix(addr, UnixScheme); ok {
		ln, err = listenUnix(path)
		url = UnixScheme + path
	} else {
		ln, err = listenTCP(addr, tlsCfg != nil)
		if err == nil {
			url = clientURL(ln.Addr().(*net.TCPAddr), tlsCfg != nil)
		}
	}
	if err != nil {
		return nil, "", err
	}
	ln = newLimitListener(ln, connCap(o.MaxConns, fdLimit()))
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return ln, url, nil
}

// clientURL is the URL a client on this machine dials to reach a: the
// loopback address when a listens on every interface.
func clientURL(a *net.TCPAddr, tls bool) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

func listenTCP(addr string, tls bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("API: listen on %s: %w (is another plugvisor running? change [supervisor] api or pass --api)", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !tls {
		ln.Close()
		return nil, fmt.Errorf("API: %s is reachable from other machines, and plain HTTP there would let anyone on the network who gets the token run code here: "+
			"set [supervisor] api_tls_cert and api_tls_key (PEM files; api_client_ca to require client certificates), "+
			"or listen on loopback (api = \"127.0.0.1:9081\") or a Unix socket (api = \"unix:///path/api.sock\")", addr)
	}
	return ln, nil
}

func serverTLS(o ListenOptions) (*tls.Config, error) {
	if o.TLSCert == "" || o.TLSKey == "" {
		return nil, errors.New("API TLS: api_tls_cert and api_tls_key go together: set both")
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("API TLS: loading api_tls_cert %s and api_tls_key %s: %w", o.TLSCert, o.TLSKey, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	if o.ClientCA != "" {
		pem, err := os.ReadFile(o.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("API TLS: api_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("API TLS: api_client_ca %s holds no PEM certificate", o.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// listenUnix serves on a socket file of mode 0600. The socket is bound in
// a fresh 0700 folder, narrowed to 0600 and renamed into place, so it is
// never reachable by other users, not even between bind and chmod.
func listenUnix(path string) (net.Listener, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("API: %q: a Unix socket address needs an absolute path, such as unix:///run/plugvisor/api.sock", UnixScheme+path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("API: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("API: %s exists and is not a socket; remove it or choose another [supervisor] api path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("API: another process serves on %s (is another plugvisor running?)", path)
		}
		// A dead daemon's socket: replaced by the rename below.
	}
	tmpDir, err := os.MkdirTemp(dir, ".api-")
	if err != nil {
		return nil, fmt.Errorf("API: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("API: listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("API: socket %s: %w", path, err)
	}
	return &unixListener{Listener: ln, path: path, fi: fi}, nil
}

// unixListener removes its socket file on Close, unless another process
// has put its own there since.
type unixListener struct {
	net.Listener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *unixListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		if fi, serr := os.Stat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return err
}

// connCap is the connection cap: want (DefaultMaxConns when 0), at most a
// quarter of the fd limit (0 = unknown).
func connCap(want, fds int) int {
	if want <= 0 {
		want = DefaultMaxConns
	}
	if fds > 0 {
		want = min(want, max(fds/4, 4))
	}
	return want
}

// limitListener accepts at most cap connections at once; beyond that,
// Accept waits for one to close and new clients wait in the kernel's
// queue, holding no descriptor of this process.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, sem: l.sem}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	sem  chan struct{}
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.sem })
	return err
}
