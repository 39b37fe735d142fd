package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/internal/testpki"
)

// slowPlugin is a Python plugin with a counter and a function that takes
// as many seconds as it is given.
const slowPlugin = `import os
import time
import plugvisor

# Proof that this folder's plugin was started, written beside the folder
# (a change inside it would restart the plugin).
here = os.path.dirname(os.path.abspath(__file__))
open(here + ".started", "w").close()


def count(ctx, key):
    return ctx.state.incr_counter(key, 1)


def sleep(ctx, seconds):
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    plugvisor.serve(name="slow", version="1.0.0", functions={"count": count, "sleep": sleep})
`

// writeSlowPlugin writes the plugin's folder and returns its path.
func writeSlowPlugin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "slow")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"name":"slow","version":"1.0.0","language":"python","executable":"main.py"}`
	if err := os.WriteFile(filepath.Join(dir, "plugin.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte(slowPlugin), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needPython(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a daemon with a plugin")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
}

// rawRequest sends one request to the daemon as a browser or a script
// would, with exactly the headers given.
func rawRequest(t *testing.T, d *child, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+d.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// Issue 9, test 1: a web page's requests (text/plain from a foreign
// Origin, DNS rebinding with Host: evil.example, no token) are refused and
// add nothing; the CLI run beside the config needs no flag. Also: input
// errors are 400, an oversize input 413, and a call past its deadline 504
// without harm to the plugin.
func TestDaemonRefusesBrowserAttacks(t *testing.T) {
	needPython(t)
	slow := writeSlowPlugin(t)
	evil := writeSlowPlugin(t) // a driver that would run if the request got through
	d := startDaemonWith(t, "run", fmt.Sprintf("[plugins.slow]\ndriver = %q\n", slow))
	st := waitRunning(t, "http://"+d.addr, "slow", 60*time.Second)
	add := fmt.Sprintf(`{"name":"evil","driver":%q}`, evil)
	bearer := "Bearer " + d.token
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		code int
	}{
		{"text/plain from a foreign origin", map[string]string{"Content-Type": "text/plain", "Origin": "http://attacker.example"}, 403},
		{"DNS rebinding", map[string]string{"Content-Type": "application/json", "Host": "evil.example", "Authorization": bearer}, 403},
		{"no token", map[string]string{"Content-Type": "application/json"}, 401},
		{"text/plain with the token", map[string]string{"Content-Type": "text/plain", "Authorization": bearer}, 415},
	} {
		if code, body := rawRequest(t, d, "POST", "/plugins", add, tc.hdr); code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
	if code, body := rawRequest(t, d, "OPTIONS", "/plugins", "", map[string]string{"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST"}); code != 403 || strings.Contains(body, "Access-Control") {
		t.Errorf("preflight: %d %s", code, body)
	}
	if code, body := rawRequest(t, d, "GET", "/healthz", "", nil); code != 200 {
		t.Errorf("healthz without a token: %d %s", code, body)
	}

	// The CLI beside the config: no flag, no variable.
	out, errOut, code := d.cli(t, "status", "--json")
	var list []struct{ Name string }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "slow" {
		t.Fatalf("status after the attacks (want slow alone): %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(slow + ".started"); err != nil {
		t.Fatalf("the start marker does not work: %v", err)
	}
	if _, err := os.Stat(evil + ".started"); err == nil {
		t.Fatal("the attacker's plugin ran")
	}
	if out, errOut, code = d.cli(t, "call", "slow.count", `"a"`); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("call beside the config: %d %q %s", code, out, errOut)
	}
	// Elsewhere, without the config or a token: a clear error.
	if _, errOut, code = cliIn(t, t.TempDir(), []string{"PLUGVISOR_API=" + d.addr}, "status"); code != 1 || !strings.Contains(errOut, "no API token") || !strings.Contains(errOut, "PLUGVISOR_TOKEN") {
		t.Fatalf("status without a token: %d %s", code, errOut)
	}
	if _, errOut, code = cliIn(t, t.TempDir(), []string{"PLUGVISOR_API=" + d.addr, "PLUGVISOR_TOKEN=" + strings.Repeat("0", 64)}, "status"); code != 1 || !strings.Contains(errOut, "wrong API token") {
		t.Fatalf("status with a wrong token: %d %s", code, errOut)
	}

	// A call past its deadline: 504, then the plugin answers the next call.
	start := time.Now()
	if _, errOut, code = d.cli(t, "call", "slow.sleep", "10", "--timeout", "300ms"); code != 1 || !strings.Contains(errOut, "deadline") || !strings.Contains(errOut, "300ms") {
		t.Fatalf("call past its deadline: %d %s", code, errOut)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("the timed-out call took %v: it waited for the function (10s), not its deadline (300ms)", el)
	}
	jsonHdr := map[string]string{"Content-Type": "application/json", "Authorization": bearer}
	if code, body := rawRequest(t, d, "POST", "/functions/slow/sleep?timeout=200ms", "10", jsonHdr); code != 504 {
		t.Errorf("?timeout=200ms: %d %s, want 504", code, body)
	}
	if out, errOut, code = d.cli(t, "call", "slow.count", `"a"`); code != 0 || strings.TrimSpace(out) != "2" {
		t.Fatalf("call after the timeouts: %d %q %s", code, out, errOut)
	}

	// Input errors are 400 with the reason; an input over max_frame is 413.
	for _, tc := range []struct{ body, want string }{
		{`{"name":"9bad","driver":"json"}`, "not a valid plugin name"},
		{`{"name":"x","driver":"nosuchbuiltin"}`, "not a builtin"},
	} {
		if code, body := rawRequest(t, d, "POST", "/plugins", tc.body, jsonHdr); code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("POST /plugins %s: %d %s, want 400 naming %q", tc.body, code, body, tc.want)
		}
	}
	big := `"` + strings.Repeat("x", 16<<20-2) + `"` // 16 MiB: within the body cap, over the frame limit
	if code, body := rawRequest(t, d, "POST", "/functions/slow/count", big, jsonHdr); code != 413 || !strings.Contains(body, "max_frame") {
		t.Errorf("16 MiB input: %d %.300s, want 413 naming max_frame", code, body)
	}
	if code, body := rawRequest(t, d, "POST", "/functions/slow/count", big+"  ", jsonHdr); code != 413 {
		t.Errorf("input over the body cap: %d %.300s, want 413", code, body)
	}
	// Nothing of this harmed the plugin: same process, state intact.
	now := waitRunning(t, "http://"+d.addr, "slow", 10*time.Second)
	if now.PID != st.PID {
		t.Errorf("the plugin was restarted (pid %d → %d)", st.PID, now.PID)
	}
	if out, errOut, code = d.cli(t, "call", "slow.count", `"a"`); code != 0 || strings.TrimSpace(out) != "3" {
		t.Fatalf("call at the end: %d %q %s", code, out, errOut)
	}
	d.stop(t)
}

// The API on a Unix socket: mode 0600, the CLI finds it from the config,
// the socket is gone after the daemon stops. Plain HTTP on every interface
// is refused at start, saying how to enable TLS.
func TestDaemonUnixSocketAndTLSRequirement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon")
	}
	dir, err := os.MkdirTemp("", "pvapi") // socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")
	d := startDaemonCmd(t, fmt.Sprintf("[supervisor]\napi = \"unix://%s\"\n", sock), nil, "run")
	if d.addr != "unix://"+sock {
		t.Fatalf("listening on %q, want unix://%s", d.addr, sock)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", fi, err)
	}
	if out, errOut, code := d.cli(t, "status"); code != 0 || !strings.Contains(out, "NAME") {
		t.Fatalf("status over the socket: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := cli(t, []string{"PLUGVISOR_TOKEN=" + d.token}, "status", "--api", "unix://"+sock, "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("status --api unix://: %d %s %s", code, out, errOut)
	}
	d.stop(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket outlived the daemon: %v", err)
	}

	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("[supervisor]\napi = \"0.0.0.0:0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(t, nil, "run", "-c", cfg); code == 0 || !strings.Contains(errOut, "api_tls_cert") || !strings.Contains(errOut, "reachable from other machines") {
		t.Fatalf("plain HTTP on every interface: %d %s", code, errOut)
	}
}

// Off loopback with TLS and client certificates (all generated here): the
// CLI beside the config gets in with its client certificate and the token
// it finds, and not without the certificate.
func TestDaemonMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon")
	}
	p := testpki.New(t)
	cfg := fmt.Sprintf("[supervisor]\napi = \"0.0.0.0:0\"\napi_tls_cert = %q\napi_tls_key = %q\napi_client_ca = %q\n",
		p.File("server.pem"), p.File("server.key"), p.File("ca.pem"))
	d := startDaemonCmd(t, cfg, nil, "run")
	if !strings.HasPrefix(d.addr, "https://127.0.0.1:") {
		t.Fatalf("listening on %q, want https://127.0.0.1:PORT", d.addr)
	}
	certFlags := []string{"--client-cert", p.File("client.pem"), "--client-key", p.File("client.key")}
	if out, errOut, code := d.cli(t, append([]string{"status", "--json"}, certFlags...)...); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("status over mutual TLS: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := d.cli(t, "status"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("status without a client certificate: %d %s", code, errOut)
	}
	d.stop(t)
}

// helperMain runs this test binary as a helper process when a test asks
// for one through the environment; ok is false otherwise.
func helperMain() (code int, ok bool) {
	if addr := os.Getenv("PLUGVISOR_TEST_FLOOD"); addr != "" {
		return flood(addr), true
	}
	return 0, false
}
