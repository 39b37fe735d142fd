package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// status NAME lists the instances: an external one by its address and
// certificate, a local one by its pid, one that got SIGTERM as leaving; a plugin waiting for an instance
// shows its state and no instance table.
func TestStatusListsInstances(t *testing.T) {
	since := time.Date(2026, 11, 26, 1, 2, 3, 0, time.Local)
	var out bytes.Buffer
	printStatus(&out, []status{{Name: "geo", State: supervisor.StateRunning, Kind: "external", Generation: 4,
		Instances: []supervisor.InstanceStatus{
			{Address: "10.1.2.3:41234", Cert: "geo", Generation: 4, Version: "1.4.0", ConnectedSince: since, InFlight: 2, Role: supervisor.RolePrimary},
			{PID: 4242, Generation: 5, Version: "1.4.0", Role: supervisor.RoleReplica, Leaving: true},
		}}}, true)
	got := out.String()
	if strings.Count(got, "leaving") != 1 {
		t.Fatalf("status output: only generation 5 is leaving:\n%s", got)
	}
	for _, want := range []string{"instances:", "10.1.2.3:41234", "geo", "1.4.0", "2026-11-26 01:02:03", "primary", "pid 4242", "replica (leaving)"} {
		if !strings.Contains(got, want) {
			t.Fatalf("status output lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	printStatus(&out, []status{{Name: "geo", State: supervisor.StateWaiting, Kind: "external", Instances: []supervisor.InstanceStatus{}}}, true)
	if got := out.String(); !strings.Contains(got, "waiting") || strings.Contains(got, "instances:") {
		t.Fatalf("a waiting plugin:\n%s", got)
	}
}
