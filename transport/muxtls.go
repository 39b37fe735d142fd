package transport

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// tlsFiles is the Mux's server TLS configuration and the state of the
// files it was loaded from.
type tlsFiles struct {
	mu    sync.Mutex
	conf  *tls.Config
	stamp string // of the files conf was loaded from
	bad   string // stamp of files that failed to load (logged once)
}

// fileStamp identifies the current content of files cheaply: size and
// modification time of each (os.Stat follows the symlinks a Kubernetes
// Secret volume swaps).
func fileStamp(paths ...string) string {
	s := ""
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%d.%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "?;"
		}
	}
	return s
}

// tlsConfig is the server configuration for a new connection: reloaded
// first if the certificate, key or client CA files changed. Files that do
// not load (half written, mismatched) keep the previous configuration,
// logged once.
func (m *Mux) tlsConfig() *tls.Config {
	t := &m.tls
	t.mu.Lock()
	defer t.mu.Unlock()
	st := fileStamp(m.cfg.Cert, m.cfg.Key, m.cfg.ClientCA)
	if st == t.stamp || st == t.bad {
		return t.conf
	}
	conf, err := serverTLS(m.cfg)
	if err != nil {
		t.bad = st
		m.logf("external instances: keeping the previous TLS certificates: %v", err)
		return t.conf
	}
	t.conf, t.stamp, t.bad = conf, st, ""
	m.logf("external instances: reloaded the TLS certificates (%s, %s, %s)", m.cfg.Cert, m.cfg.Key, m.cfg.ClientCA)
	return t.conf
}
