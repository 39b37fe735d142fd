// Package deploy holds the packaging of plugvisor (systemd unit, container
// image, Kubernetes manifests; docs/deploy.md) and the tests that keep them
// in step with the daemon.
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
)

// obj is one decoded YAML node.
type obj = map[string]any

// at walks keys ("spec", "template", …) and list indexes (ints).
func at(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				t.Fatalf("want a mapping holding %q, got %T", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("want a list with element %d, got %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func str(t *testing.T, v any, keys ...any) string {
	t.Helper()
	s, ok := at(t, v, keys...).(string)
	if !ok {
		t.Fatalf("%v: want a string, got %v", keys, at(t, v, keys...))
	}
	return s
}

func byName(t *testing.T, list any, name string) obj {
	t.Helper()
	l, _ := list.([]any)
	for _, e := range l {
		if m, ok := e.(obj); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no element named %q in %v", name, list)
	return nil
}

// manifests loads every YAML document under deploy/kubernetes by kind.
func manifests(t *testing.T) (kust obj, byKind map[string]obj) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind = map[string]obj{}
	var listed []string
	for _, f := range files {
		for _, doc := range yamlDocs(t, f) {
			kind, _ := doc["kind"].(string)
			if kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			if kind == "Kustomization" {
				kust = doc
				continue
			}
			if _, dup := byKind[kind]; dup {
				t.Fatalf("%s: a second %s", f, kind)
			}
			byKind[kind] = doc
			listed = append(listed, filepath.Base(f))
		}
	}
	if kust == nil {
		t.Fatal("no kustomization.yaml")
	}
	var res []string
	for _, r := range at(t, kust, "resources").([]any) {
		res = append(res, r.(string))
	}
	sort.Strings(res)
	sort.Strings(listed)
	if strings.Join(res, ",") != strings.Join(listed, ",") {
		t.Fatalf("kustomization resources %v, manifest files %v: every manifest must be listed", res, listed)
	}
	return kust, byKind
}

// pendingKeys are [supervisor] keys another branch adds (API TLS and
// hosts, issue 9). Until it is merged they are stripped before parsing;
// once merged, the config parses as it is and this does nothing.
var pendingKeys = []string{"api_tls_cert", "api_tls_key", "api_hosts"}

func parseConfig(t *testing.T, file, text string) *config.Config {
	t.Helper()
	cfg, err := config.LoadData(file, []byte(text), config.Registry(builtin.Sources()))
	if err == nil {
		return cfg
	}
	var kept []string
	for _, l := range strings.Split(text, "\n") {
		k, _, _ := strings.Cut(strings.TrimSpace(l), " =")
		if !containsStr(pendingKeys, k) {
			kept = append(kept, l)
		}
	}
	cfg, err2 := config.LoadData(file, []byte(strings.Join(kept, "\n")), config.Registry(builtin.Sources()))
	if err2 != nil {
		t.Fatalf("%s does not load: %v", file, err)
	}
	t.Logf("%s: parsed without %v, keys this branch does not know yet: %v", file, pendingKeys, err)
	return cfg
}

func containsStr(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Test 5 of issue 14: the Kubernetes manifests agree with the daemon —
// ports, probe paths (served by the API), the state volume, the config
// path inside the ConfigMap mount, the token from a Secret, the grace
// period against shutdown_timeout, and the security context.
func TestKubernetesManifests(t *testing.T) {
	_, k := manifests(t)
	for _, kind := range []string{"StatefulSet", "Service", "ConfigMap"} {
		if k[kind] == nil {
			t.Fatalf("no %s manifest", kind)
		}
	}
	sts, svc, cm := k["StatefulSet"], k["Service"], k["ConfigMap"]
	pod := at(t, sts, "spec", "template", "spec").(obj)
	ctr := at(t, pod, "containers", 0).(obj)

	// The config: the path passed with -c lies in the ConfigMap's mount.
	args := at(t, ctr, "args").([]any)
	cfgPath := ""
	for i, a := range args {
		if a == "-c" && i+1 < len(args) {
			cfgPath = args[i+1].(string)
		}
	}
	if cfgPath == "" || args[0] != "run" {
		t.Fatalf("container args %v: want run -c <config>", args)
	}
	mounts := map[string]obj{} // volume name → mount
	for _, m := range at(t, ctr, "volumeMounts").([]any) {
		mounts[m.(obj)["name"].(string)] = m.(obj)
	}
	vols := at(t, pod, "volumes")
	cmName := str(t, cm, "metadata", "name")
	var cfgMount obj
	for _, v := range vols.([]any) {
		if c, ok := v.(obj)["configMap"].(obj); ok && c["name"] == cmName {
			cfgMount = mounts[v.(obj)["name"].(string)]
		}
	}
	if cfgMount == nil {
		t.Fatalf("the ConfigMap %s is not mounted", cmName)
	}
	if _, ok := cfgMount["subPath"]; ok {
		t.Fatal("the ConfigMap is mounted with subPath: such mounts never see updates")
	}
	if path.Dir(cfgPath) != cfgMount["mountPath"] {
		t.Fatalf("config %s is not in the ConfigMap mount %s", cfgPath, cfgMount["mountPath"])
	}
	text, ok := at(t, cm, "data").(obj)[path.Base(cfgPath)].(string)
	if !ok {
		t.Fatalf("the ConfigMap has no key %s", path.Base(cfgPath))
	}
	cfg := parseConfig(t, cfgPath, text)
	s := cfg.Supervisor

	// Ports: the API's port (the daemon's default) everywhere.
	def := port(t, config.DefaultSupervisor().API)
	if p := port(t, s.API); p != def {
		t.Fatalf("ConfigMap api port %d, daemon default %d", p, def)
	}
	cport := byName(t, at(t, ctr, "ports"), "api")
	if cport["containerPort"] != def {
		t.Fatalf("containerPort %v, want %d", cport["containerPort"], def)
	}
	sport := byName(t, at(t, svc, "spec", "ports"), "api")
	if sport["port"] != def || sport["targetPort"] != "api" {
		t.Fatalf("Service port %v → %v, want %d → api", sport["port"], sport["targetPort"], def)
	}
	if str(t, sts, "spec", "serviceName") != str(t, svc, "metadata", "name") {
		t.Fatal("the StatefulSet's serviceName is not the Service")
	}
	if h := strings.Split(s.API, ":")[0]; h != "0.0.0.0" && h != "" {
		t.Fatalf("api %q: in a pod the API must listen on every address for probes and the Service", s.API)
	}

	// Probes: paths the API serves without a token, on the API port.
	tlsOn := strings.Contains(text, "api_tls_cert")
	srv := httptest.NewServer(api.NewServer(gathererOnly{}, nil))
	defer srv.Close()
	for probe, want := range map[string]string{"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"} {
		g := at(t, ctr, probe, "httpGet").(obj)
		if g["path"] != want || g["port"] != "api" {
			t.Fatalf("%s: %v, want path %s on port api", probe, g, want)
		}
		if tlsOn != (g["scheme"] == "HTTPS") {
			t.Fatalf("%s: scheme %v, but the API's TLS is %v", probe, g["scheme"], tlsOn)
		}
		resp, err := http.Get(srv.URL + want)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("the API answers %s with %d", want, resp.StatusCode)
		}
	}

	// State: state_dir is the volume claim's mount; the folders the
	// daemon writes are on it.
	claim := str(t, sts, "spec", "volumeClaimTemplates", 0, "metadata", "name")
	sm := mounts[claim]
	if sm == nil || sm["mountPath"] != s.StateDir {
		t.Fatalf("state_dir %s is not the mount of the volume claim %s (%v)", s.StateDir, claim, sm)
	}
	for _, d := range []string{s.BinDir, s.RemoteDir} {
		if !under(d, s.StateDir) {
			t.Fatalf("%s is not on the state volume %s (the root filesystem is read-only)", d, s.StateDir)
		}
	}

	// The API token from a Secret.
	if s.APITokenFile == "" {
		t.Fatal("api_token_file is not set: the token must come from a Secret")
	}
	tokenFromSecret := false
	for _, v := range vols.([]any) {
		vm := v.(obj)
		if _, ok := vm["secret"].(obj); ok {
			if m := mounts[vm["name"].(string)]; m != nil && filepath.Dir(s.APITokenFile) == m["mountPath"] {
				tokenFromSecret = true
			}
		}
	}
	if !tokenFromSecret {
		t.Fatalf("api_token_file %s is not in a Secret's mount", s.APITokenFile)
	}

	// A clean stop fits in the grace period.
	grace, _ := at(t, pod, "terminationGracePeriodSeconds").(int)
	if time.Duration(grace)*time.Second < s.ShutdownTimeout.Duration+5*time.Second {
		t.Fatalf("terminationGracePeriodSeconds %d leaves no margin over shutdown_timeout %v", grace, s.ShutdownTimeout)
	}

	// Security context.
	if at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Fatal("runAsNonRoot is not set")
	}
	sc := at(t, ctr, "securityContext").(obj)
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
		t.Fatalf("container securityContext %v: want a read-only root and no privilege escalation", sc)
	}

	// Prometheus scrapes the API port's /metrics.
	ann := at(t, sts, "spec", "template", "metadata", "annotations").(obj)
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(def) || ann["prometheus.io/path"] != "/metrics" {
		t.Fatalf("Prometheus annotations %v", ann)
	}
}

// gathererOnly is the least Backend that lets the probes be served.
type gathererOnly struct{ api.Backend }

func (gathererOnly) Gatherer() prometheus.Gatherer { return prometheus.NewRegistry() }

// The image's default config loads, keeps its state on the image's volume
// and listens on the port the image exposes; the unit matches the daemon.
func TestContainerAndSystemd(t *testing.T) {
	cf, err := os.ReadFile(filepath.Join("container", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join("container", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, "/etc/plugvisor/config.toml", string(text))
	def := port(t, config.DefaultSupervisor().API)
	for _, want := range []string{
		fmt.Sprintf("EXPOSE %d", def),
		fmt.Sprintf(`VOLUME ["%s"]`, cfg.Supervisor.StateDir),
		`CMD ["run", "-c", "/etc/plugvisor/config.toml"]`,
		"USER 65532:65532",
		"CGO_ENABLED=0",
		"AS python",
		"AS static",
	} {
		if !bytes.Contains(cf, []byte(want)) {
			t.Fatalf("Containerfile lacks %q", want)
		}
	}
	unit, err := os.ReadFile(filepath.Join("systemd", "plugvisor.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=plugvisor",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "KillMode=mixed", "WatchdogSec="} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Fatalf("plugvisor.service lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("plugvisor.service has no TimeoutStopSec=<n>s")
	}
	if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second <= config.DefaultSupervisor().ShutdownTimeout.Duration {
		t.Fatalf("TimeoutStopSec=%ss is not above the default shutdown_timeout", m[1])
	}
}

// Test 6 of issue 14: `make image` builds both images with buildah or
// docker; without either it says plainly that it skipped, and succeeds.
func TestMakeImage(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make image skipped: make is not installed")
	}
	// The Makefile's choice: buildah, else docker when its daemon answers.
	tool := ""
	if _, err := exec.LookPath("buildah"); err == nil {
		tool = "buildah"
	} else if _, err := exec.LookPath("docker"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if exec.CommandContext(ctx, "docker", "info").Run() == nil {
			tool = "docker"
		}
		cancel()
	}
	if tool != "" && testing.Short() {
		t.Skip("make image builds two images")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", "..", "image")
	out, err := cmd.CombinedOutput()
	if tool == "" {
		if err != nil || !strings.Contains(string(out), "skipped") {
			t.Fatalf("make image without buildah or docker: %v\n%s", err, out)
		}
		t.Skipf("make image skipped: neither buildah nor a running docker is available (it said: %s)", strings.TrimSpace(string(out)))
	}
	if err != nil {
		t.Fatalf("make image with %s: %v\n%s", tool, err, out)
	}
}
