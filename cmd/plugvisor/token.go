package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/config"
)

// clientFlags are what a client command knows of the daemon it talks to.
type clientFlags struct {
	api, token, config    string
	clientCert, clientKey string // PEM files for a daemon that wants client certificates
}

func (f *clientFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.api, "api", "", "daemon API address: host:port, https://host:port or unix:///path (default $PLUGVISOR_API, else the config's [supervisor] api)")
	c.Flags().StringVar(&f.token, "token", "", "API token (default $PLUGVISOR_TOKEN, else <state_dir>/api.token of the config)")
	configFlag(c, &f.config)
	c.Flags().StringVar(&f.clientCert, "client-cert", "", "PEM certificate for a daemon with api_client_ca (mutual TLS)")
	c.Flags().StringVar(&f.clientKey, "client-key", "", "PEM key of --client-cert")
}

// newClient finds the daemon's address and token: --api, then
// PLUGVISOR_API, then the config's [supervisor] api; --token, then
// PLUGVISOR_TOKEN, then the token file in the config's state_dir. The
// config (-c, default ./config.toml) is read only when a flag or variable
// does not already say.
func newClient(f clientFlags, configSet bool) (*client, error) {
	addr := firstOf(f.api, os.Getenv("PLUGVISOR_API"))
	token := firstOf(f.token, os.Getenv("PLUGVISOR_TOKEN"))
	var sup *config.Supervisor
	if addr == "" || token == "" {
		s, err := config.LoadSupervisor(f.config)
		switch {
		case err == nil:
			sup = &s
		case errors.Is(err, fs.ErrNotExist) && !configSet:
			// No config beside us: a config-less daemon (dev PATH) serving
			// this folder keeps its address and token in ./.plugvisor;
			// else flags, variables and defaults only.
			sup = folderDaemon()
		default:
			return nil, fmt.Errorf("reading the daemon's config for its API address and token: %w", err)
		}
	}
	if addr == "" && sup != nil {
		addr = sup.API
		// The system picked the port: the daemon wrote down which.
		if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
			got, err := api.ReadAddr(sup.StateDir)
			if err != nil {
				return nil, fmt.Errorf("the config's api %q lets the system pick the port, and the daemon records the one it got in %s: %w (is the daemon running?)", addr, filepath.Join(sup.StateDir, api.AddrFile), err)
			}
			addr = got
		}
	}
	if addr == "" {
		addr = defaultAPI
	}
	if token == "" {
		if sup == nil {
			return nil, fmt.Errorf("no API token: run the command beside the daemon's config.toml, point at it with -c PATH, or pass --token or PLUGVISOR_TOKEN (the daemon keeps the token in <state_dir>/%s)", api.TokenFile)
		}
		var err error
		if token, err = api.ReadToken(sup.TokenFile()); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no API token at %s: has the daemon of %s started? (or pass --token or PLUGVISOR_TOKEN)", sup.TokenFile(), f.config)
			}
			return nil, err
		}
	}
	return dialer(addr, token, sup, f)
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// dialer builds the HTTP client for addr: a Unix socket, HTTPS (trusting
// the system's roots and the daemon's own api_tls_cert) or plain HTTP.
func dialer(addr, token string, sup *config.Supervisor, f clientFlags) (*client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the token never goes through a proxy
	if path, ok := strings.CutPrefix(addr, api.UnixScheme); ok {
		if path == "" {
			return nil, fmt.Errorf("bad API address %q: want unix:///path/api.sock", addr)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return &client{base: "http://localhost", shown: addr, token: token, http: &http.Client{Transport: tr}}, nil
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("bad API address %q: want host:port, http(s)://host:port or unix:///path/api.sock", addr)
	}
	if u.Scheme == "https" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if sup != nil && sup.APITLSCert != "" {
			roots, err := x509.SystemCertPool()
			if err != nil {
				roots = x509.NewCertPool()
			}
			// The daemon's own certificate is trusted as a root: a
			// self-signed one works without a CA.
			if pem, err := os.ReadFile(sup.APITLSCert); err == nil {
				roots.AppendCertsFromPEM(pem)
			}
			cfg.RootCAs = roots
		}
		if f.clientCert != "" || f.clientKey != "" {
			pair, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
			if err != nil {
				return nil, fmt.Errorf("client certificate (--client-cert %s, --client-key %s): %w", f.clientCert, f.clientKey, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		tr.TLSClientConfig = cfg
	}
	base := strings.TrimRight(u.String(), "/")
	return &client{base: base, shown: base, token: token, http: &http.Client{Transport: tr}}, nil
}
