package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/transport"
)

// The external-plugin overlay agrees with the daemon and the SDK: its
// config loads with the listener and an external plugin whose name the
// client certificate carries, the certificate files are in the mounted
// Secrets, the ports line up, the listener's Service publishes
// not-ready addresses, and the plugin's environment uses the SDK's
// variables and reaches that Service at the name its certificate has.
func TestExternalPluginOverlay(t *testing.T) {
	dir := "external-plugin"
	k := map[string][]obj{} // kind → documents
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		for _, doc := range yamlDocs(t, f) {
			kind, _ := doc["kind"].(string)
			k[kind] = append(k[kind], doc)
		}
	}
	kust := k["Kustomization"][0]
	listed := map[string]bool{}
	for _, r := range at(t, kust, "resources").([]any) {
		listed[r.(string)] = true
	}
	for _, p := range at(t, kust, "patches").([]any) {
		listed[p.(obj)["path"].(string)] = true
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is neither a resource nor a patch of the overlay", b)
		}
	}

	byName := func(kind, name string) obj {
		for _, d := range k[kind] {
			if str(t, d, "metadata", "name") == name {
				return d
			}
		}
		t.Fatalf("no %s %s in the overlay", kind, name)
		return nil
	}
	text := str(t, byName("ConfigMap", "plugvisor-config"), "data", "config.toml")
	cfg := parseConfig(t, "/etc/plugvisor/config/config.toml", text)
	s := cfg.Supervisor
	var external []string
	for name, p := range cfg.Plugins {
		if p.Resolved.Kind == config.KindExternal {
			external = append(external, name)
		}
	}
	if s.Listen == "" || len(external) != 1 {
		t.Fatalf("listen %q, external plugins %v", s.Listen, external)
	}
	plugin := external[0]

	// The daemon: listener files in the listener Secret's mount, the port
	// named plugins, the Service publishing not-ready addresses.
	sts := byName("StatefulSet", "plugvisor")
	ctr := at(t, sts, "spec", "template", "spec", "containers", 0).(obj)
	mount := at(t, ctr, "volumeMounts", 0).(obj)
	vol := at(t, sts, "spec", "template", "spec", "volumes", 0).(obj)
	if mount["name"] != vol["name"] {
		t.Fatalf("mount %v is not volume %v", mount, vol)
	}
	serverSecret := str(t, vol, "secret", "secretName")
	for _, f := range []string{s.TLSCert, s.TLSKey, s.TLSClientCA} {
		if path.Dir(f) != mount["mountPath"] {
			t.Fatalf("%s is not in the mount of Secret %s (%v)", f, serverSecret, mount["mountPath"])
		}
	}
	listenPort := s.Listen[strings.LastIndex(s.Listen, ":")+1:]
	cport := at(t, ctr, "ports", 0).(obj)
	if strconv.Itoa(cport["containerPort"].(int)) != listenPort || cport["name"] != "plugins" {
		t.Fatalf("container port %v, listen %s", cport, s.Listen)
	}
	svc := byName("Service", "plugvisor-plugins")
	if at(t, svc, "spec", "publishNotReadyAddresses") != true {
		t.Fatal("the listener's Service must publish not-ready addresses: the daemon is not ready until instances connect")
	}
	sport := at(t, svc, "spec", "ports", 0).(obj)
	if sport["targetPort"] != "plugins" {
		t.Fatalf("Service port %v", sport)
	}

	// The plugin: the SDK's variables, files in its Secret's mount, the
	// Service's name, which the server certificate carries.
	dep := byName("Deployment", plugin)
	pctr := at(t, dep, "spec", "template", "spec", "containers", 0).(obj)
	env := map[string]string{}
	for _, e := range at(t, pctr, "env").([]any) {
		env[e.(obj)["name"].(string)] = e.(obj)["value"].(string)
	}
	pmount := at(t, pctr, "volumeMounts", 0).(obj)
	clientSecret := str(t, dep, "spec", "template", "spec", "volumes", 0, "secret", "secretName")
	for _, v := range []string{transport.EnvTLSCert, transport.EnvTLSKey, transport.EnvTLSCA} {
		if path.Dir(env[v]) != pmount["mountPath"] {
			t.Fatalf("%s=%q is not in the mount of Secret %s", v, env[v], clientSecret)
		}
	}
	host, ok := strings.CutPrefix(env[transport.EnvConnect], "tls+tcp://")
	if !ok || !strings.HasSuffix(host, ":"+strconv.Itoa(sport["port"].(int))) ||
		!strings.HasPrefix(host, str(t, svc, "metadata", "name")+".") {
		t.Fatalf("%s=%q does not reach Service %s", transport.EnvConnect, env[transport.EnvConnect], str(t, svc, "metadata", "name"))
	}
	hostname := host[:strings.LastIndex(host, ":")]

	// cert-manager: the server certificate names that host, the client
	// certificate names the plugin, both in the Secrets mounted above.
	for _, c := range k["Certificate"] {
		switch str(t, c, "spec", "secretName") {
		case serverSecret:
			found := false
			for _, n := range at(t, c, "spec", "dnsNames").([]any) {
				found = found || n == hostname
			}
			if !found {
				t.Fatalf("the server certificate does not name %s", hostname)
			}
		case clientSecret:
			if str(t, c, "spec", "commonName") != plugin {
				t.Fatalf("the client certificate's name is not the plugin's, %s", plugin)
			}
		}
	}
	if st := at(t, dep, "spec", "strategy", "rollingUpdate").(obj); st["maxSurge"] != 0 {
		t.Fatalf("rolling update %v: the old pod must be terminating (not restarted) when the handover retires it", st)
	}
}

// The overlay builds with kustomize (kubectl kustomize, offline), where
// kubectl is installed: an overlay nested in its base, say, is refused.
func TestExternalPluginOverlayBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", "external-plugin").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize external-plugin: %v\n%s", err, out)
	}
	for _, want := range []string{"name: plugvisor-plugins", "containerPort: 9443", "secretName: plugvisor-listener-tls", "name: geo"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("the built overlay has no %q", want)
		}
	}
}

// yamlDocs decodes every YAML document of file.
func yamlDocs(t *testing.T, file string) []obj {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []obj
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc obj
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		docs = append(docs, doc)
	}
}
