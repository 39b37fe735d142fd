//go:build unix

package supervisor_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// A frozen instance (SIGSTOP: a partition, a stuck node) answers no
// heartbeats: after remote_heartbeat_timeout it is lost and the plugin
// waits; thawed, it finds its connection gone, reconnects by itself and
// serves again from the checkpoint.
func TestExternalFrozenInstance(t *testing.T) {
	r := newExtRigWith(t, nil, supervisor.Options{Supervisor: config.Supervisor{RemoteHeartbeatTimeout: config.Duration{Duration: time.Second}}})
	in := r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	r.call(r.p, "count", `"k"`)
	if err := r.p.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	e := r.waitEvent(supervisor.EventInstanceLost, "geo")
	if !strings.Contains(e.Error, "remote_heartbeat_timeout") {
		t.Fatalf("lost: %+v, want the heartbeat timeout named", e)
	}
	if st := r.p.Status(); st.State != supervisor.StateWaiting {
		t.Fatalf("status of a frozen instance's plugin: %+v", st)
	}
	if err := in.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(supervisor.EventPluginRestarted, "geo")
	if got := r.call(r.p, "count", `"k"`); got != "2" {
		t.Fatalf("count on the thawed instance = %s, want 2", got)
	}
	if !strings.Contains(in.stderr.String(), "reconnecting") {
		t.Fatalf("the instance did not say it reconnects:\n%s", in.stderr.String())
	}
}
