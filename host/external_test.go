package host

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/internal/testpki"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// The config's listener and an external plugin, end to end through the
// host: the plugin waits, an instance built with go build and started by
// hand connects with its certificate and serves calls through the host.
func TestExternalPluginThroughTheHost(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t)
	mod := filepath.Join(dir, "plug")
	writeModule(t, mod, "1.0.0")
	exe := filepath.Join(dir, "plug-bin")
	goBuild(t, mod, exe)
	hs := startHost(t, dir, supervisorTOML(fmt.Sprintf(`listen = "tls+tcp://127.0.0.1:0"
tls_cert = %q
tls_key = %q
tls_client_ca = %q

[plugins.plug]
driver = "external"
`, pki.File("server.pem"), pki.File("server.key"), pki.File("ca.pem"))), Options{NoWatch: true})
	addr := hs.h.Supervisor().ListenAddr()
	if !strings.HasPrefix(addr, "tls+tcp://127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("listening on %q", addr)
	}
	st, err := hs.h.Status("plug")
	if err != nil || st.Kind != "external" || st.State != supervisor.StateWaiting {
		t.Fatalf("before any instance: %+v, %v", st, err)
	}
	if nr := hs.h.Ready(); len(nr) != 1 || nr[0].Name != "plug" || !strings.Contains(nr[0].Reason, "waiting for an external instance") {
		t.Fatalf("readiness while waiting: %+v", nr)
	}
	cert, key := pki.ClientFor("", "plug")
	cmd := exec.Command(exe)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), transport.EnvConnect + "=" + addr,
		transport.EnvTLSCert + "=" + cert, transport.EnvTLSKey + "=" + key, transport.EnvTLSCA + "=" + pki.File("ca.pem")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reconnecting := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "reconnecting") {
				select {
				case reconnecting <- sc.Text():
				default:
				}
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := hs.h.Call(ctx, "plug", "count", nil) // waits for the instance
	if err != nil || string(out) != "1" {
		t.Fatalf("count through the host: %s, %v", out, err)
	}
	st, _ = hs.h.Status("plug")
	if st.State != supervisor.StateRunning || len(st.Instances) != 1 || st.Instances[0].Cert != "plug" || st.Instances[0].Version != "1.0.0" {
		t.Fatalf("with an instance: %+v", st)
	}
	if nr := hs.h.Ready(); len(nr) != 0 {
		t.Fatalf("not ready with an instance serving: %+v", nr)
	}
	// The daemon stops: the instance is not retired, it reconnects (to
	// nothing here) rather than exit.
	hs.stop()
	select {
	case err := <-exited:
		t.Fatalf("the instance exited (%v) when the daemon stopped; it should keep reconnecting", err)
	case <-reconnecting:
	case <-time.After(wait):
		t.Fatal("the instance did not say it reconnects after the daemon stopped")
	}
}
