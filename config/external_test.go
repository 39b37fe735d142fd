package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A complete listener and an external plugin: the certificate paths
// resolve from the config's folder, the heartbeats take their settings.
func TestExternalPluginConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse([]byte(`
[supervisor]
listen = "tls+tcp://0.0.0.0:9443"
tls_cert = "certs/server.pem"
tls_key = "certs/server-key.pem"
tls_client_ca = "/etc/pki/ca.pem"
remote_heartbeat_interval = "3s"

[plugins.geo]
driver = "external"
[plugins.geo.config]
zone = "eu"
`), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Supervisor
	if s.Listen != "tls+tcp://0.0.0.0:9443" || s.TLSCert != filepath.Join(dir, "certs", "server.pem") ||
		s.TLSKey != filepath.Join(dir, "certs", "server-key.pem") || s.TLSClientCA != "/etc/pki/ca.pem" {
		t.Fatalf("listener settings: %+v", s)
	}
	if s.RemoteHeartbeatInterval.Duration != 3*time.Second || s.RemoteHeartbeatTimeout.Duration != 10*time.Second {
		t.Fatalf("remote heartbeats %v / %v, want 3s / 10s (the default)", s.RemoteHeartbeatInterval, s.RemoteHeartbeatTimeout)
	}
	geo := cfg.Plugins["geo"]
	if geo.Resolved.Kind != KindExternal || geo.Resolved.Path != "" || geo.Config["zone"] != "eu" {
		t.Fatalf("geo: %+v", geo)
	}
	if _, err := cfg.NewPlugin("geo2", "external", nil, nil); err != nil {
		t.Fatalf("adding an external plugin at run time with a listener: %v", err)
	}
}

// Every way to get the listener wrong is named with its key and the fix.
func TestExternalConfigErrors(t *testing.T) {
	const tlsFiles = "tls_cert = \"s.pem\"\ntls_key = \"s.key\"\ntls_client_ca = \"ca.pem\"\n"
	cases := []struct{ name, src, key, want string }{
		{"external without a listener", "[plugins.geo]\ndriver = \"external\"\n",
			"plugins.geo.driver", "[supervisor] needs listen, tls_cert, tls_key and tls_client_ca"},
		{"listen without TLS", "[supervisor]\nlisten = \"tls+tcp://:9443\"\ntls_cert = \"s.pem\"\n",
			"supervisor.listen", "set tls_key, tls_client_ca too"},
		{"plain tcp", "[supervisor]\nlisten = \"tcp://0.0.0.0:9443\"\n" + tlsFiles,
			"supervisor.listen", "mutual TLS only — write \"tls+tcp://0.0.0.0:9443\""},
		{"no port", "[supervisor]\nlisten = \"tls+tcp://0.0.0.0\"\n" + tlsFiles,
			"supervisor.listen", "is not a listen address"},
		{"TLS files without listen", "[supervisor]\n" + tlsFiles,
			"supervisor.tls_cert", "only apply with listen"},
		{"heartbeat timeout not above the interval", "[supervisor]\nremote_heartbeat_interval = \"5s\"\nremote_heartbeat_timeout = \"5s\"\n",
			"supervisor.remote_heartbeat_timeout", "must be longer than remote_heartbeat_interval"},
		{"env of an external plugin", "[supervisor]\nlisten = \"tls+tcp://:9443\"\n" + tlsFiles + "[plugins.geo]\ndriver = \"external\"\n[plugins.geo.env]\nA = \"b\"\n",
			"plugins.geo.env", "does not apply to an external plugin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.src), t.TempDir(), nil)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.src)
			}
			if !strings.Contains(err.Error(), c.key+": ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to name %s and say %q", err, c.key, c.want)
			}
		})
	}
	cfg, err := Parse(nil, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.NewPlugin("geo", "external", nil, nil); err == nil || !strings.Contains(err.Error(), "needs listen") {
		t.Fatalf("adding an external plugin at run time without a listener: %v", err)
	}
}
