//go:build unix

package supervisor_test

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/plugvisor/plugvisor/supervisor"
)

// A rolling update where the orchestrator deletes a pod that is not the
// oldest: of 3 external replicas the youngest secondary gets SIGTERM. It
// says leaving: the status and an instance.leaving event show it, and it
// takes no new calls while the others serve. The next instance to connect
// takes over from it (not from the oldest), and it exits 0; the oldest
// and the other replica serve on.
func TestExternalReplicaLeavingHandsOverFirst(t *testing.T) {
	r := newExtRig(t, nil)
	r.p = r.addN("fleet", nil, 3)
	insts := startFleet(r, 0, 3, true)
	in := waitServing(t, r.p, 3)
	if err := insts[2].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e := r.waitEvent(supervisor.EventInstanceLeaving, "fleet")
	if st, _ := e.Detail.(supervisor.InstanceStatus); st.Generation != in[2].Generation || st.Role != supervisor.RoleReplica || !st.Leaving {
		t.Fatalf("leaving: %+v, want generation %d, a replica, leaving", e.Detail, in[2].Generation)
	}
	for i, st := range r.p.Status().Instances {
		if st.Leaving != (st.Generation == in[2].Generation) {
			t.Fatalf("status instance %d: %+v, want only generation %d leaving", i, st, in[2].Generation)
		}
	}
	answered := map[string]int{}
	for range 20 {
		answered[r.call(r.p, "getenv", `"PV_TEST_ID"`)]++
	}
	if answered[`"2"`] > 0 || len(answered) != 2 {
		t.Fatalf("20 calls with instance 2 leaving were answered by %v, want instances 0 and 1 only", answered)
	}

	startFleet(r, 10, 1, false)
	e = r.waitEvent(supervisor.EventInstanceHandedOver, "fleet")
	if h, _ := e.Detail.(supervisor.Handover); h.From.Generation != in[2].Generation || h.From.Role != supervisor.RoleReplica {
		t.Fatalf("handed over: %+v, want from the leaving replica, generation %d", e.Detail, in[2].Generation)
	}
	if err := insts[2].waitExit(t); err != nil {
		t.Fatalf("the leaving instance exited with %v, want status 0", err)
	}
	got := waitServing(t, r.p, 3)
	if got[0].Generation != in[0].Generation || got[1].Generation != in[1].Generation && got[2].Generation != in[1].Generation {
		t.Fatalf("after the handover: %+v, want the oldest (generation %d) primary and generation %d serving on", got, in[0].Generation, in[1].Generation)
	}
	for i, inst := range insts[:2] {
		select {
		case <-inst.exited:
			t.Fatalf("instance %d exited (%v); only the leaving one should", i, inst.err)
		default:
		}
	}
}

// replicas = 1, a Python instance: SIGTERM makes it say leaving (status,
// event) against the real daemon; the plain handover is unchanged — the
// next instance takes over with the state and the old one exits 0.
func TestExternalPythonLeavingHandover(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	r := newExtRig(t, nil)
	py := r.start("geo", true)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	r.call(r.p, "count", `"k"`)
	if err := py.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e := r.waitEvent(supervisor.EventInstanceLeaving, "geo")
	if st, _ := e.Detail.(supervisor.InstanceStatus); st.Role != supervisor.RolePrimary || !st.Leaving {
		t.Fatalf("leaving: %+v", e.Detail)
	}
	if in := r.p.Status().Instances; len(in) != 1 || !in[0].Leaving {
		t.Fatalf("status instances %+v, want the one leaving", in)
	}
	if got := r.call(r.p, "count", `"k"`); got != "2" { // it serves on
		t.Fatalf("count on the leaving instance = %s, want 2", got)
	}
	r.start("geo", true) // Python again: the Go SDK keeps function state in another scope
	r.waitEvent(supervisor.EventInstanceHandedOver, "geo")
	if err := py.waitExit(t); err != nil {
		t.Fatalf("the leaving instance exited with %v, want status 0", err)
	}
	if in := r.p.Status().Instances; len(in) != 1 || in[0].Leaving {
		t.Fatalf("status instances after the handover %+v, want the new one, not leaving", in)
	}
	if got := r.call(r.p, "count", `"k"`); got != "3" {
		t.Fatalf("count after the handover = %s, want 3 (the state moved)", got)
	}
}
