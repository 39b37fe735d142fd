package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// External instances (docs/DESIGN.md "External instances"): a plugin with
// driver = "external" is never started by plugvisor; its instances
// connect to [supervisor] listen over mutual TLS.

// DriverExternal is the driver string of an external plugin.
const DriverExternal = "external"

// KindExternal is the Kind of an external plugin: never started by
// plugvisor, its instances connect to [supervisor] listen.
const KindExternal Kind = "external"

// ListenScheme prefixes [supervisor] listen.
const ListenScheme = "tls+tcp://"

// The listener's keys, as kinds of the [supervisor] table (settings.go).
var (
	listenAddr = text(func(p *parser, path []string, s string) (string, bool) {
		if s == "" {
			p.errorf(path, "is empty — leave the key out, or set it (see docs/deploy.md \"Plugins in other containers\")")
			return "", false
		}
		if err := checkListen(s); err != nil {
			p.errorf(path, "%v", err)
			return "", false
		}
		return s, true
	})
	tlsFile = nonEmpty("is empty — leave the key out, or set it (see docs/deploy.md \"Plugins in other containers\")")
)

// checkListen accepts "tls+tcp://HOST:PORT" with a numeric port (HOST may
// be empty or 0.0.0.0 for every interface).
func checkListen(s string) error {
	rest, ok := strings.CutPrefix(s, ListenScheme)
	if !ok {
		return fmt.Errorf("%q: external instances connect over mutual TLS only — write \"tls+tcp://0.0.0.0:9443\" (tls+tcp://HOST:PORT)", s)
	}
	_, port, err := net.SplitHostPort(rest)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("%q is not a listen address — write tls+tcp://HOST:PORT, e.g. \"tls+tcp://0.0.0.0:9443\"", s)
	}
	return nil
}

// externalSupervisor checks the listener's keys together (the table in
// settings.go read each and made the paths absolute).
func (p *parser) externalSupervisor(path []string, s *Supervisor) {
	files := []struct {
		key string
		v   *string
	}{{"tls_cert", &s.TLSCert}, {"tls_key", &s.TLSKey}, {"tls_client_ca", &s.TLSClientCA}}
	var missing, set []string
	for _, f := range files {
		if *f.v == "" {
			missing = append(missing, f.key)
			continue
		}
		set = append(set, f.key)
	}
	switch {
	case s.Listen != "" && len(missing) > 0:
		p.errorf(child(path, "listen"), "external instances need mutual TLS — set %s too (PEM files: the listener's certificate and key, and the CA that signs the instances' client certificates)",
			strings.Join(missing, ", "))
	case s.Listen == "" && len(set) > 0:
		p.errorf(child(path, set[0]), "%s only apply with listen — set listen = \"tls+tcp://0.0.0.0:9443\" for external instances, or remove them",
			strings.Join(set, ", "))
	}
	if s.RemoteHeartbeatTimeout.Duration <= s.RemoteHeartbeatInterval.Duration {
		p.errorf(child(path, "remote_heartbeat_timeout"), "%v must be longer than remote_heartbeat_interval (%v)",
			s.RemoteHeartbeatTimeout, s.RemoteHeartbeatInterval)
	}
}

// externalPlugins checks every plugin with driver = "external": the
// listener must be configured, and keys about starting a process do not
// apply.
func (p *parser) externalPlugins(doc map[string]any, cfg *Config) {
	plugins, _ := doc["plugins"].(map[string]any)
	for name, pl := range cfg.Plugins {
		if pl.Resolved.Kind != KindExternal {
			continue
		}
		path := []string{"plugins", name, "driver"}
		if err := cfg.Supervisor.canServeExternal(name, pl.Resolved); err != nil {
			p.errorf(path, "%v", err)
		}
		t, _ := plugins[name].(map[string]any)
		for _, k := range []string{"env", "env_inherit", "build"} {
			if _, ok := t[k]; ok {
				p.errorf([]string{"plugins", name, k}, "does not apply to an external plugin: plugvisor does not start its instances — set it where they run")
			}
		}
	}
}

// canServeExternal says why plugin name with driver d cannot run here: an
// external plugin needs the listener.
func (s Supervisor) canServeExternal(name string, d Driver) error {
	if d.Kind != KindExternal || s.Listen != "" {
		return nil
	}
	return fmt.Errorf("plugin %s is external: its instances connect to plugvisor, so [supervisor] needs listen, tls_cert, tls_key and tls_client_ca — "+
		"add listen = \"tls+tcp://0.0.0.0:9443\" and the three PEM files (see docs/deploy.md \"Plugins in other containers\")", name)
}
