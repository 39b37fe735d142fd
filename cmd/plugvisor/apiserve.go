package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
)

// listenAPI opens the daemon's API as [supervisor] says (addr, from --api,
// overrides its address): it makes sure the token file exists, listens,
// prints "api listening on ADDR" to stderr (tests and scripts read it) and
// returns the listener with the guarded handler.
func listenAPI(stderr io.Writer, cfg *config.Config, addr string, h *host.Host, log *zerolog.Logger) (net.Listener, http.Handler, error) {
	s := cfg.Supervisor
	if addr == "" {
		addr = s.API
	}
	if addr == "" { // api = "" means no API: fine for an embedding host, not for the daemon its CLI talks to
		return nil, nil, fmt.Errorf("[supervisor] api is \"\" (no API), but the daemon serves the API its CLI talks to: set api = %q or pass --api", api.DefaultAddr)
	}
	var token string
	var err error
	if s.APITokenFile != "" { // a mounted Secret: read it, never create it
		token, err = api.ReadToken(s.APITokenFile)
	} else {
		token, err = api.EnsureToken(s.StateDir)
	}
	if err != nil {
		return nil, nil, err
	}
	ln, url, err := api.Listen(api.ListenOptions{Addr: addr, TLSCert: s.APITLSCert, TLSKey: s.APITLSKey,
		ClientCA: s.APIClientCA, MaxConns: s.APIMaxConns})
	if err != nil {
		return nil, nil, err
	}
	if err := api.WriteAddr(s.StateDir, url); err != nil {
		ln.Close()
		return nil, nil, err
	}
	fmt.Fprintf(stderr, "api listening on %s\n", displayURL(url))
	srv := api.NewServer(backend{h}, log, api.CallTimeout(s.CallTimeout.Duration))
	return ln, api.Guard(srv, api.Access{Token: token, TokenFile: s.TokenFile(), Hosts: s.APIHosts}), nil
}

// displayURL keeps the long-standing "host:port" form for plain HTTP.
func displayURL(url string) string {
	if rest, ok := strings.CutPrefix(url, "http://"); ok {
		return rest
	}
	return url
}
