package sdk

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/plugvisor/plugvisor/transport"
)

// A plugin that cannot start says so once, naming itself once (not
// "plugin x: plugin x: ..."), and exits 1.
func TestServeErrorNamesThePluginOnce(t *testing.T) {
	if os.Getenv("SDK_SERVE_CHILD") == "1" {
		Serve(Plugin{Name: "greeter", Version: "1", Functions: map[string]any{"bad": 42}})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeErrorNamesThePluginOnce$")
	cmd.Env = append(os.Environ(), "SDK_SERVE_CHILD=1", transport.EnvControl+"=ipc:///nonexistent", transport.EnvToken+"=t")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "plugin greeter:"); n != 1 || !strings.Contains(string(out), `function "bad"`) {
		t.Fatalf("output names the plugin %d times:\n%s", n, out)
	}
}
