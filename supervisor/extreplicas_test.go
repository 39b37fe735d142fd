package supervisor_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// startFleet starts n instances of the external plugin "fleet" one after
// another (PV_TEST_ID their index, then from) and waits for each to
// connect: the first as the primary if primary, the others as replicas.
func startFleet(r *extRig, from, n int, primary bool, env ...string) []*instance {
	r.t.Helper()
	var out []*instance
	for i := range n {
		e := append([]string{"PV_TEST_ID=" + strconv.Itoa(from+i)}, env...)
		out = append(out, r.start("fleet", false, e...))
		ev := r.waitEvent(supervisor.EventInstanceConnected, "fleet")
		want := supervisor.RoleReplica
		if primary && i == 0 {
			want = supervisor.RolePrimary
		}
		if st, _ := ev.Detail.(supervisor.InstanceStatus); st.Role != want || st.Cert != "fleet" {
			r.t.Fatalf("instance %d connected as %+v, want role %s", from+i, ev.Detail, want)
		}
	}
	return out
}

// waitCalls waits until the load made n more calls.
func (l *load) waitCalls(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	from := len(l.lat)
	l.mu.Unlock()
	waitFor(t, fmt.Sprintf("%d more calls", n), 20*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.lat) >= from+n
	})
}

// External replicas = 3: three instances connect (the first the primary,
// the next two replicas) and calls land on all three; a function writing
// state fails on each (their welcome said replicas). Then three newer
// instances connect one by one under a steady call load, a rolling
// update: each takes over from the oldest serving instance — the primary
// by the swap, then each replica in its slot — with no failed call and no
// call waiting for an instance, and every old instance exits 0; one
// lacking a function in use is refused and exits 0. Removing the plugin
// tells the new ones to exit.
func TestExternalReplicasRollingUpdate(t *testing.T) {
	r := newExtRig(t, nil)
	r.p = r.addN("fleet", nil, 3)
	olds := startFleet(r, 0, 3, true)
	in := waitServing(t, r.p, 3)
	for i, st := range in {
		if st.Cert != "fleet" || st.Address == "" || st.PID != 0 || (i > 0) != (st.Role == supervisor.RoleReplica) {
			t.Fatalf("instance %d in the status: %+v", i, st)
		}
	}
	for _, l := range r.p.Logs(1000) { // plugvisor starts no process of an external plugin
		if strings.Contains(l.Line, "replica start") || strings.Contains(l.Line, "restarting") {
			t.Fatalf("plugvisor tried to start a replica of an external plugin: %s", l.Line)
		}
	}
	answered := map[string]int{}
	for range 30 {
		answered[r.call(r.p, "getenv", `"PV_TEST_ID"`)]++
	}
	if len(answered) != 3 {
		t.Fatalf("30 calls were answered by %v, want all 3 instances", answered)
	}
	for range 3 { // ties go round-robin: each instance takes one
		_, err := r.p.Call(ctxT(t, 10*time.Second), "count", []byte(`"k"`))
		if err == nil || !strings.Contains(err.Error(), "replicas = 3") || !strings.Contains(err.Error(), "state") {
			t.Fatalf("a function writing state on external replicas: %v, want it failed naming replicas = 3 and state", err)
		}
	}

	l := startLoad(r.p, 2)
	endLoad := sync.OnceFunc(l.end)
	defer endLoad()
	l.waitCalls(t, 300)
	var news []*instance
	for i := range 3 {
		if i == 1 { // one that lacks a function in use cannot replace a replica: told to exit, the old one serves on
			bad := startFleet(r, 20, 1, false, "PV_TEST_NO_COUNT=1")[0]
			if e := r.waitEvent(supervisor.EventInstanceRefused, "fleet"); !strings.Contains(e.Error, "count") ||
				!strings.Contains(e.Error, fmt.Sprintf("replica generation %d serves on", in[1].Generation)) {
				t.Fatalf("refused replica handover: %+v", e)
			}
			if err := bad.waitExit(t); err != nil {
				t.Fatalf("the refused instance exited with %v, want status 0", err)
			}
		}
		news = append(news, startFleet(r, 10+i, 1, i == 0, "PV_TEST_VERSION=2.0.0")...)
		e := r.waitEvent(supervisor.EventInstanceHandedOver, "fleet")
		h, _ := e.Detail.(supervisor.Handover)
		role := supervisor.RoleReplica
		if i == 0 {
			role = supervisor.RolePrimary
		}
		if h.From.Generation != in[i].Generation || h.From.Role != role || h.To.Role != role ||
			h.From.Version != "1.0.0" || h.To.Version != "2.0.0" || e.Report == nil || e.Report.From != in[i].Generation ||
			len(e.Report.ReplicaErrors) > 0 { // the primary's handover leaves the replicas alone
			t.Fatalf("handover %d: %+v (detail %+v), want from the oldest, generation %d, a %s", i, e, e.Detail, in[i].Generation, role)
		}
		if err := olds[i].waitExit(t); err != nil {
			t.Fatalf("the %s handed over from exited with %v, want status 0", role, err)
		}
		l.waitCalls(t, 100)
	}
	endLoad()
	lat, errs := l.take()
	for i, err := range errs {
		if i < 5 {
			t.Errorf("call failed during the rolling update: %v", err)
		}
	}
	if d := r.p.MaxCallPause(); d != 0 {
		t.Errorf("a call waited %v for an instance during the rolling update, want no wait at all", d)
	}
	t.Logf("%d calls through a rolling update of 3 external replicas: p50 %v p99 %v max %v",
		len(lat), quantile(lat, 0.5), quantile(lat, 0.99), quantile(lat, 1))
	for _, st := range waitServing(t, r.p, 3) {
		if st.Version != "2.0.0" {
			t.Errorf("after the rolling update: %+v", st)
		}
	}
	if err := r.sup.Remove(ctxT(t, 20*time.Second), "fleet"); err != nil {
		t.Fatal(err)
	}
	for i, n := range news {
		if err := n.waitExit(t); err != nil {
			t.Errorf("instance %d exited with %v after the plugin was removed, want status 0", i, err)
		}
	}
}

// kill -9 of a replica instance: its slot empties (instance.lost), calls
// go on to the other two, and the next instance to connect fills it.
// kill -9 of the primary: the plugin waits for an instance while the
// replicas serve every call; the next instance becomes the primary. The
// daemon closing then disconnects every instance without telling it to
// exit: each reconnects.
func TestExternalReplicaLost(t *testing.T) {
	r := newExtRig(t, nil)
	r.p = r.addN("fleet", nil, 3)
	insts := startFleet(r, 0, 3, true)
	in := waitServing(t, r.p, 3)
	lose := func(victim *instance, gen int, role string) {
		t.Helper()
		if err := victim.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		e := r.waitEvent(supervisor.EventInstanceLost, "fleet")
		if st, _ := e.Detail.(supervisor.InstanceStatus); st.Generation != gen || st.Role != role {
			t.Fatalf("lost: %+v, want generation %d, a %s", e.Detail, gen, role)
		}
		for i := range 50 {
			if got := r.call(r.p, "echo", `"x"`); got != `"x"` {
				t.Fatalf("call %d with the %s lost: %s", i, role, got)
			}
		}
	}

	lose(insts[2], in[2].Generation, supervisor.RoleReplica)
	if st := r.p.Status(); st.State != supervisor.StateRunning || len(st.Instances) != 2 {
		t.Fatalf("status with a replica lost: %+v", st)
	}
	filler := startFleet(r, 3, 1, false)[0]
	waitServing(t, r.p, 3)

	lose(insts[0], in[0].Generation, supervisor.RolePrimary)
	st := r.p.Status()
	if st.State != supervisor.StateWaiting || len(st.Instances) != 2 || st.Instances[0].Role != supervisor.RoleReplica {
		t.Fatalf("status with the primary lost: %+v", st)
	}
	primary := startFleet(r, 4, 1, true)[0]
	r.waitEvent(supervisor.EventPluginRestarted, "fleet")
	if got := waitServing(t, r.p, 3); got[0].Generation < got[1].Generation || got[0].Generation < got[2].Generation {
		t.Fatalf("the primary is not the instance that connected last: %+v", got)
	}

	if err := r.sup.Close(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i, inst := range []*instance{insts[1], filler, primary} {
		waitFor(t, fmt.Sprintf("instance %d to reconnect", i), 20*time.Second, func() bool {
			return strings.Contains(inst.stderr.String(), "reconnecting")
		})
		select {
		case <-inst.exited:
			t.Fatalf("instance %d exited (%v) when the daemon closed; it should reconnect", i, inst.err)
		default:
		}
	}
}

// A new instance connects and a secondary dies before the loop has
// handled either: the new one fills the dead one's slot, and the dead one
// is still reported lost (instance.lost, with its generation).
func TestExternalReplicaLostWhileAnotherArrives(t *testing.T) {
	r := newExtRig(t, nil)
	r.p = r.addN("fleet", nil, 3)
	insts := startFleet(r, 0, 3, true)
	in := waitServing(t, r.p, 3)
	release := r.p.HoldLoop()
	held := true
	defer func() {
		if held {
			release()
		}
	}()
	// The loop takes its work in the order it was queued: the arrival
	// first, then the death, the order that hid the loss.
	r.start("fleet", false, "PV_TEST_ID=3")
	waitFor(t, "the new instance to wait for the loop", 8*time.Second, func() bool { return r.sup.Arriving("fleet") == 1 })
	if err := insts[2].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed replica to end, still in its slot", 8*time.Second, func() bool { return r.p.DeadReplicas() == 1 })
	release()
	held = false
	e := r.waitEvent(supervisor.EventInstanceLost, "fleet")
	if e.Generation != in[2].Generation {
		t.Fatalf("instance.lost for generation %d, want the killed %d", e.Generation, in[2].Generation)
	}
	if got := waitServing(t, r.p, 3); slices.ContainsFunc(got, func(s supervisor.InstanceStatus) bool { return s.Generation == in[2].Generation }) {
		t.Fatalf("the killed generation still serves: %+v", got)
	}
}
