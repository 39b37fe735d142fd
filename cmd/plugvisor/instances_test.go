package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

func TestPrintInstances(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printInstances(&b, []supervisor.InstanceStatus{
		{Address: "pid:41", Generation: 7, Version: "1.2.0", ConnectedSince: now.Add(-90 * time.Second), InFlight: 3, Role: supervisor.RolePrimary},
		{Address: "10.0.0.9:52110", CertName: "geo", Generation: 9, Version: "1.3.0", ConnectedSince: now.Add(-time.Second), Role: supervisor.RoleReplica},
	}, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || lines[0] != "instances:" {
		t.Fatalf("output:\n%s", b.String())
	}
	for i, want := range [][]string{{"primary", "pid:41", "-", "7", "1.2.0", "1m30s", "3"}, {"replica", "10.0.0.9:52110", "geo", "9", "1.3.0", "1s", "0"}} {
		if got := strings.Fields(lines[i+2]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %q, want %q", i, got, want)
		}
	}
	b.Reset()
	printInstances(&b, nil, now)
	if b.Len() != 0 {
		t.Errorf("no instances printed %q", b.String())
	}
}
