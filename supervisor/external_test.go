package supervisor_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/internal/testpki"
	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// extRig is a supervisor listening for external instances on loopback
// with a fresh PKI, and one external plugin, "geo".
type extRig struct {
	t      testing.TB
	pki    *testpki.PKI
	sup    *supervisor.Supervisor
	p      *supervisor.Plugin
	events *supervisor.Subscriber
	sink   string // the collect sink's file
}

func newExtRig(t testing.TB, pcfg map[string]any) *extRig {
	return newExtRigWith(t, pcfg, supervisor.Options{Supervisor: config.Supervisor{RemoteHeartbeatTimeout: config.Duration{Duration: 5 * time.Second}}})
}

// newExtRigWith is newExtRig with some options (heartbeats) set.
func newExtRigWith(t testing.TB, pcfg map[string]any, o supervisor.Options) *extRig {
	t.Helper()
	pki := testpki.New(t)
	o.StateDir, o.Listen = t.TempDir(), "tls+tcp://127.0.0.1:0"
	o.TLSCert, o.TLSKey, o.TLSClientCA = pki.File("server.pem"), pki.File("server.key"), pki.File("ca.pem")
	o.StopGrace.Duration, o.RemoteHeartbeatInterval.Duration = 2*time.Second, 200*time.Millisecond
	sup, err := supervisor.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := &extRig{t: t, pki: pki, sup: sup, events: sup.Subscribe(1024), sink: filepath.Join(t.TempDir(), "sink.jsonl")}
	t.Cleanup(func() {
		r.events.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := sup.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	r.p = r.add("geo", pcfg)
	return r
}

// add adds external plugin name; its config has the sink's path.
func (r *extRig) add(name string, pcfg map[string]any) *supervisor.Plugin {
	return r.addN(name, pcfg, 1)
}

// addN adds external plugin name with replicas = n.
func (r *extRig) addN(name string, pcfg map[string]any, n int) *supervisor.Plugin {
	cfg := map[string]any{"path": r.sink}
	for k, v := range pcfg {
		cfg[k] = v
	}
	p, err := r.sup.Add(name, supervisor.Spec{Kind: supervisor.KindExternal, Driver: "external", Config: cfg, Replicas: n})
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// instance is one external instance process.
type instance struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // its exit, valid after exited
}

// start runs an external instance of plugin name: the test binary as the
// Go helper plugin, or with python the Python one, with a client
// certificate named name. It is killed and reaped when the test ends.
func (r *extRig) start(name string, python bool, env ...string) *instance {
	r.t.Helper()
	cert, key := r.pki.ClientFor(name+"-"+strconv.Itoa(time.Now().Nanosecond()), name)
	var cmd *exec.Cmd
	if python {
		root, err := filepath.Abs("..")
		if err != nil {
			r.t.Fatal(err)
		}
		cmd = exec.Command("python3", filepath.Join("testdata", "extplugin.py"))
		env = append(env, "PYTHONPATH="+filepath.Join(root, "sdk", "python"), "PYTHONDONTWRITEBYTECODE=1")
	} else {
		exe, err := os.Executable()
		if err != nil {
			r.t.Fatal(err)
		}
		cmd = exec.Command(exe, "-test.run=^$")
		env = append(env, modeEnv+"=external", "GORACE=atexit_sleep_ms=0") // no -race exit sleep (helperSpec)
	}
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		transport.EnvConnect + "=" + r.sup.ListenAddr(), transport.EnvTLSCert + "=" + cert, transport.EnvTLSKey + "=" + key,
		transport.EnvTLSCA + "=" + r.pki.File("ca.pem")}, env...)
	in := &instance{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = in.stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		in.err = cmd.Wait()
		close(in.exited)
	}()
	r.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-in.exited
		if r.t.Failed() {
			r.t.Logf("instance %d stderr:\n%s", cmd.Process.Pid, in.stderr.String())
		}
	})
	return in
}

// waitExit waits for the instance to exit by itself and returns how.
func (in *instance) waitExit(t testing.TB) error {
	t.Helper()
	select {
	case <-in.exited:
		return in.err
	case <-time.After(20 * time.Second):
		t.Fatalf("instance %d did not exit within 20s; stderr:\n%s", in.cmd.Process.Pid, in.stderr.String())
		return nil
	}
}

// waitEvent waits for the next event of type typ (of plugin, if set).
func (r *extRig) waitEvent(typ supervisor.EventType, plugin string) supervisor.Event {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-r.events.C:
			if e.Type == typ && (plugin == "" || e.Plugin == plugin) {
				return e
			}
		case <-deadline:
			r.t.Fatalf("no %s event of %q within 20s; status %+v", typ, plugin, r.p.Status())
		}
	}
}

func (r *extRig) call(p *supervisor.Plugin, fn, in string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := p.Call(ctx, fn, []byte(in))
	if err != nil {
		r.t.Fatalf("%s.%s(%s): %v", p.Name(), fn, in, err)
	}
	return string(out)
}

// nextItems reads n items of sub as integers.
func nextItems(t testing.TB, sub *supervisor.Subscription, n int) []int64 {
	t.Helper()
	out := make([]int64, 0, n)
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case it := <-sub.C():
			v, err := strconv.ParseInt(string(it.Data), 10, 64)
			if err != nil {
				t.Fatalf("item %q: %v", it.Data, err)
			}
			out = append(out, v)
		case <-deadline:
			t.Fatalf("%d of %d items within 20s", len(out), n)
		}
	}
	return out
}

func consecutive(items []int64) error {
	for i := 1; i < len(items); i++ {
		if items[i] != items[i-1]+1 {
			return fmt.Errorf("item %d after %d", items[i], items[i-1])
		}
	}
	return nil
}

// serveAll checks a connected instance serves a call, a source and a sink
// of plugin p, and that the status lists it.
func (r *extRig) serveAll(p *supervisor.Plugin, version string) {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got := r.call(p, "count", `"a"`); got != "1" {
		t.Fatalf("count = %s, want 1", got)
	}
	sub, err := p.Subscribe(ctx, "ticks", "t", 16)
	if err != nil {
		t.Fatal(err)
	}
	if items := nextItems(t, sub, 5); items[0] != 1 || consecutive(items) != nil {
		t.Fatalf("ticks %v, want 1, 2, 3, …", items)
	}
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := p.OpenSink(ctx, "collect", p.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := w.Write(ctx, []byte(fmt.Sprintf(`{"%s":%d}`, p.Name(), i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.sink)
	for i := 1; i <= 3; i++ {
		if !bytes.Contains(data, []byte(fmt.Sprintf(`{"%s":%d}`, p.Name(), i))) {
			t.Fatalf("the sink wrote %q, missing item %d of %s", data, i, p.Name())
		}
	}
	st := p.Status()
	if st.State != supervisor.StateRunning || st.Kind != supervisor.KindExternal || st.PID != 0 || len(st.Instances) != 1 {
		t.Fatalf("status %+v", st)
	}
	in := st.Instances[0]
	if in.Cert != p.Name() || !strings.HasPrefix(in.Address, "127.0.0.1:") || in.Version != version ||
		in.Generation != st.Generation || in.Role != supervisor.RolePrimary || in.ConnectedSince.IsZero() {
		t.Fatalf("instance %+v", in)
	}
}

// 1. An external Go instance and a Python one connect and serve calls,
// a source and a sink; the plugin waits for them before.
func TestExternalInstancesServe(t *testing.T) {
	r := newExtRig(t, nil)
	waitFor(t, "state waiting", 20*time.Second, func() bool { return r.p.Status().State == supervisor.StateWaiting })
	if st := r.p.Status(); len(st.Instances) != 0 || st.Generation != 0 {
		t.Fatalf("before any instance: %+v", st)
	}
	r.start("geo", false)
	if e := r.waitEvent(supervisor.EventInstanceConnected, "geo"); e.Generation != 1 {
		t.Fatalf("connected: %+v", e)
	}
	r.serveAll(r.p, "1.0.0")

	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the Python instance is not tested")
	}
	py := r.add("pygeo", nil)
	r.start("pygeo", true, "PV_TEST_VERSION=3.1.0")
	r.waitEvent(supervisor.EventInstanceConnected, "pygeo")
	r.serveAll(py, "3.1.0")
}

// 2. A newer instance connects during a steady load of calls, a running
// source and a stream into a sink: the handover keeps the state, every
// call is answered once and in order, the source's stream goes on and
// the sink collects every item without a gap, a repeat or a reorder, and
// the old instance exits by itself with status 0.
func TestExternalHandover(t *testing.T) {
	r := newExtRig(t, nil)
	old := r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := r.p.Subscribe(ctx, "ticks", "t", 16)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(context.Background())

	w, err := r.p.OpenSink(ctx, "collect", "c", 16)
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan int, 1)
	writing, stopWriting := context.WithCancel(ctx)
	go func() { // a steady stream into the sink, numbered
		n := 0
		for ; writing.Err() == nil; n++ {
			if err := w.Write(ctx, []byte(strconv.Itoa(n+1))); err != nil {
				t.Errorf("sink write %d: %v", n+1, err)
				break
			}
		}
		written <- n
	}()

	stop := countLoad(r.p, 4)
	var items []int64
	items = append(items, nextItems(t, sub, 50)...)
	r.start("geo", false, "PV_TEST_VERSION=2.0.0")
	e := r.waitEvent(supervisor.EventInstanceHandedOver, "geo")
	items = append(items, nextItems(t, sub, 50)...)
	counts, errs := stop()
	stopWriting()
	n := <-written
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.sink)
	lines := strings.Fields(string(data))
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("sink line %d is %s: lost, repeated or reordered across the handover", i+1, l)
		}
	}
	if len(lines) != n || n == 0 {
		t.Fatalf("the sink collected %d items of %d written", len(lines), n)
	}
	for _, err := range errs {
		t.Error(err)
	}
	if err := consecutive(items); err != nil || items[0] != 1 {
		t.Fatalf("the source across the handover: %v (%v…)", err, items[:5])
	}
	if e.Report == nil || e.Report.From != 1 || e.Report.Generation != 2 || e.Report.StateKeys == 0 {
		t.Fatalf("handed over: %+v", e)
	}
	h, ok := e.Detail.(supervisor.Handover)
	if !ok || h.From.Version != "1.0.0" || h.To.Version != "2.0.0" || h.From.Address == h.To.Address {
		t.Fatalf("handover detail %#v", e.Detail)
	}
	if got := r.call(r.p, "version", ""); got != `"2.0.0"` {
		t.Fatalf("version after the handover: %s", got)
	}
	if err := old.waitExit(t); err != nil {
		t.Fatalf("the old instance exited with %v, want status 0; stderr:\n%s", err, old.stderr.String())
	}
	for c, n := range counts {
		if n == 0 {
			t.Errorf("caller %d made no call", c)
		}
		if got := r.call(r.p, "get", fmt.Sprintf(`"caller%d"`, c)); got != strconv.Itoa(n) {
			t.Errorf("counter of caller %d is %s after %d calls", c, got, n)
		}
	}
	if st := r.p.Status(); st.Generation != 2 || len(st.Instances) != 1 || st.Instances[0].Version != "2.0.0" || st.Restarts != 0 {
		t.Fatalf("status after the handover: %+v", st)
	}
}

// 3. A certificate from another CA, one whose name is no external plugin,
// and a plain TCP client are refused at the handshake, each with a
// reason; the serving instance is not touched.
func TestExternalRefusesStrangers(t *testing.T) {
	r := newExtRig(t, nil)
	r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	r.call(r.p, "count", `"a"`)
	before := r.p.Status()
	addr := strings.TrimPrefix(r.sup.ListenAddr(), "tls+tcp://")

	other := testpki.New(t)
	foreignCert, foreignKey := other.ClientFor("", "geo")
	wrongCert, wrongKey := r.pki.ClientFor("", "billing")
	for _, c := range []struct {
		name, cert, key, why string
	}{
		{"another CA", foreignCert, foreignKey, "certificate"},
		{"a name that is no external plugin", wrongCert, wrongKey, "billing"},
	} {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			Certificates: []tls.Certificate{pair}, RootCAs: r.pki.CA, ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNControl}})
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives after the client's side of the handshake.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: not refused (%v)", c.name, err)
		}
		if e := r.waitEvent(supervisor.EventInstanceRefused, ""); !strings.Contains(e.Error, c.why) {
			t.Fatalf("%s refused with %q, want it to say %q", c.name, e.Error, c.why)
		}
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("\x00SP\x00\x00\x10\x00\x00"))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	conn.Close()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a plain TCP client was not refused: %v", err)
	}
	r.waitEvent(supervisor.EventInstanceRefused, "")

	if got := r.call(r.p, "count", `"a"`); got != "2" {
		t.Fatalf("count after the refusals = %s, want 2", got)
	}
	after := r.p.Status()
	if after.Generation != before.Generation || after.Restarts != 0 || len(after.Instances) != 1 ||
		after.Instances[0].Address != before.Instances[0].Address {
		t.Fatalf("the serving instance was touched: before %+v, after %+v", before.Instances, after.Instances)
	}
}

// 4. kill -9 of the serving instance: in-flight calls fail, the plugin
// waits, calls wait for an instance and fail clearly when their deadline
// comes first, and the next instance resumes from the checkpoint: the
// function state, and the counter source from its position (its limit
// raised by a config change that a reload keeps for the next instance).
func TestExternalInstanceKilled(t *testing.T) {
	r := newExtRig(t, map[string]any{"limit": 25})
	first := r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		r.call(r.p, "count", `"k"`)
	}
	sub, err := r.p.Subscribe(ctx, "ticks", "t", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(context.Background())
	if items := nextItems(t, sub, 25); items[0] != 1 || items[24] != 25 || consecutive(items) != nil {
		t.Fatalf("ticks %v, want 1…25", items)
	}
	if err := r.p.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan error, 1)
	go func() {
		_, err := r.p.Call(ctx, "sleep", []byte("10000"))
		inflight <- err
	}()
	waitFor(t, "the sleep call in flight", 20*time.Second, func() bool { return r.p.Status().InFlight == 1 })
	w, err := r.p.OpenSink(ctx, "collect", "c", 64)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	writeItems := func(from, to int) {
		for n := from; n <= to; n++ {
			if err := w.Write(ctx, []byte(strconv.Itoa(n))); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeItems(1, 10)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-inflight:
		if !errors.Is(err, supervisor.ErrCrashed) {
			t.Fatalf("the call in flight on the killed instance: %v, want a crash error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call in flight did not fail within 20s of the kill")
	}
	if e := r.waitEvent(supervisor.EventInstanceLost, "geo"); !strings.Contains(e.Error, "lost") {
		t.Fatalf("lost: %+v", e)
	}
	if st := r.p.Status(); st.State != supervisor.StateWaiting || len(st.Instances) != 0 || st.Restarts != 1 {
		t.Fatalf("status after the kill: %+v", st)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = r.p.Call(short, "count", []byte(`"k"`))
	cancelShort()
	if !errors.Is(err, supervisor.ErrNoInstance) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "external plugin geo") || !strings.Contains(err.Error(), r.sup.ListenAddr()) {
		t.Fatalf("a call while waiting: %v", err)
	}
	spec, _ := r.p.Spec()
	spec.Config = map[string]any{"path": r.sink, "limit": 30}
	if _, err := r.p.Reload(ctx, supervisor.ReloadOptions{Spec: &spec}); err == nil || !strings.Contains(err.Error(), "is external") {
		t.Fatalf("reload of an external plugin: %v, want an error saying it is external", err)
	}
	waited := make(chan string, 1)
	go func() {
		out, err := r.p.Call(ctx, "count", []byte(`"k"`))
		if err != nil {
			out = []byte(err.Error())
		}
		waited <- string(out)
	}()
	writeItems(11, 20) // taken by the host while no instance is connected
	r.start("geo", false)
	r.waitEvent(supervisor.EventPluginRestarted, "geo")
	if got := <-waited; got != "4" {
		t.Fatalf("the call that waited for the new instance: %s, want 4 (three counts checkpointed)", got)
	}
	if items := nextItems(t, sub, 5); items[0] != 26 || consecutive(items) != nil {
		t.Fatalf("ticks after the new instance: %v, want 26…30", items)
	}
	// The sink: every item reaches the new instance at least once (what
	// the killed one had not acknowledged is sent again), in order.
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.sink)
	next := 1
	for _, l := range strings.Fields(string(data)) {
		n, _ := strconv.Atoi(l)
		switch {
		case n == next:
			next++
		case n > next:
			t.Fatalf("sink item %d before %d: one was lost (%q)", n, next, data)
		}
	}
	if next != 21 {
		t.Fatalf("the sink collected up to %d of 20 (%q)", next-1, data)
	}
	if st := r.p.Status(); st.State != supervisor.StateRunning || st.Generation != 2 || st.LastError != "" {
		t.Fatalf("status with the new instance: %+v", st)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer (a process's output, a
// logger) and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.b.Len())
}

// A newer instance that cannot take over (a function in use is missing)
// is refused before anything pauses: it is told to exit (status 0), and
// the serving instance serves on with its state.
func TestExternalHandoverRefused(t *testing.T) {
	r := newExtRig(t, nil)
	r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	r.call(r.p, "count", `"k"`)
	bad := r.start("geo", false, "PV_TEST_NO_COUNT=1", "PV_TEST_VERSION=2.0.0")
	e := r.waitEvent(supervisor.EventInstanceRefused, "geo")
	if !strings.Contains(e.Error, "count") || e.Report == nil || e.Report.PauseMS != 0 {
		t.Fatalf("refused handover: %+v", e)
	}
	if err := bad.waitExit(t); err != nil {
		t.Fatalf("the refused instance exited with %v, want status 0; stderr:\n%s", err, bad.stderr.String())
	}
	if got := r.call(r.p, "count", `"k"`); got != "2" {
		t.Fatalf("count on the old instance = %s, want 2", got)
	}
	if st := r.p.Status(); st.Generation != 1 || st.Instances[0].Version != "1.0.0" || !strings.Contains(st.LastError, "count") {
		t.Fatalf("status after the refused handover: %+v", st)
	}
}

// A local plugin whose driver becomes external (moved to its own
// container): its process is checkpointed and retired, the plugin waits,
// and the instance that connects carries on with the state.
func TestLocalPluginBecomesExternal(t *testing.T) {
	r := newExtRig(t, nil)
	p, err := r.sup.Add("mover", helperSpec("plugin"))
	if err != nil {
		t.Fatal(err)
	}
	r.call(p, "count", `"k"`)
	r.call(p, "count", `"k"`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.Reload(ctx, supervisor.ReloadOptions{Spec: &supervisor.Spec{Kind: supervisor.KindExternal, Driver: "external"}}); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != supervisor.StateWaiting || st.PID != 0 || st.Kind != supervisor.KindExternal {
		t.Fatalf("after the driver became external: %+v", st)
	}
	r.start("mover", false)
	if got := r.call(p, "count", `"k"`); got != "3" {
		t.Fatalf("count on the external instance = %s, want 3", got)
	}
}

// Instances connecting faster than the plugin takes them (a crash-looping
// Deployment, a leaked certificate) queue up to a bound; beyond it they
// are refused, and the serving instance is not touched.
func TestExternalArrivalsBounded(t *testing.T) {
	r := newExtRig(t, nil)
	r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	before := r.call(r.p, "count", `"k"`)
	cert, key := r.pki.ClientFor("", "geo")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(r.sup.ListenAddr(), "tls+tcp://")
	// Control connections that never speak SP: the first holds the
	// plugin's loop in its handover's start, the rest wait for it.
	var conns []*tls.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; ; i++ {
		c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: r.pki.CA,
			ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNControl}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i == 4 {
			break
		}
	}
	e := r.waitEvent(supervisor.EventInstanceRefused, "geo")
	if !strings.Contains(e.Error, "already waiting to connect") {
		t.Fatalf("the fifth waiting instance: %+v", e)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if got := r.call(r.p, "count", `"k"`); before != "1" || got != "2" {
		t.Fatalf("count %s then %s, want 1 then 2 on the untouched instance", before, got)
	}
	if st := r.p.Status(); st.Generation != 1 || st.Restarts != 0 {
		t.Fatalf("status after the flood: %+v", st)
	}
}

// A flood of strangers at the listener cannot flood the log: refusal
// lines (and events) are bounded per second, and the next line says how
// many were left out.
func TestExternalRefusalsBounded(t *testing.T) {
	r := newExtRig(t, nil)
	addr := strings.TrimPrefix(r.sup.ListenAddr(), "tls+tcp://")
	refuse := func() {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a plain TCP client was not refused")
		}
	}
	made, events := 0, 0
	for range 40 {
		refuse()
		made++
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-r.events.C:
			if e.Type != supervisor.EventInstanceRefused {
				continue
			}
			events++
			if strings.Contains(e.Error, "more refusals not logged") {
				if events >= made {
					t.Fatalf("%d refusal events for %d refusals", events, made)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no line saying refusals were left out (%d events for %d refusals)", events, made)
		default:
			refuse() // the summary comes with the first line of a later second
			made++
		}
	}
}

// The daemon restarts: its instance is not retired but reconnects, with
// backoff, to the next daemon on the same address and state, and serves
// on from the checkpoint the first one saved when it stopped.
func TestExternalInstanceOutlivesTheDaemon(t *testing.T) {
	pki := testpki.New(t)
	state := t.TempDir()
	opts := func(listen string) supervisor.Options {
		o := supervisor.Options{Supervisor: config.Supervisor{StateDir: state, Listen: listen,
			TLSCert: pki.File("server.pem"), TLSKey: pki.File("server.key"), TLSClientCA: pki.File("ca.pem")}}
		o.StopGrace.Duration = 2 * time.Second
		return o
	}
	first, err := supervisor.New(opts("tls+tcp://127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	r := &extRig{t: t, pki: pki, sup: first, events: first.Subscribe(256)}
	r.p = r.add("geo", nil)
	in := r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	r.call(r.p, "count", `"k"`)
	r.call(r.p, "count", `"k"`)
	addr := first.ListenAddr()
	r.events.Close()
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	second, err := supervisor.New(opts(addr)) // the same port, as a restarted daemon has
	if err != nil {
		t.Fatal(err)
	}
	r.sup, r.events = second, second.Subscribe(256)
	t.Cleanup(func() {
		r.events.Close()
		if err := second.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	r.p = r.add("geo", nil)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	if got := r.call(r.p, "count", `"k"`); got != "3" {
		t.Fatalf("count on the next daemon = %s, want 3", got)
	}
	select {
	case <-in.exited:
		t.Fatalf("the instance exited (%v); it should have reconnected", in.err)
	default:
	}
	if !strings.Contains(in.stderr.String(), "reconnecting") {
		t.Fatalf("the instance did not say it reconnects:\n%s", in.stderr.String())
	}
}

// A handover needs only the protocol: a Go instance hands its running
// source and its state over to a Python instance of the same plugin, and
// exits. (Function state is not compared: the Go SDK keeps one scope for
// all functions, the Python SDK one per function.)
func TestExternalHandoverGoToPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	r := newExtRig(t, nil)
	goInst := r.start("geo", false)
	r.waitEvent(supervisor.EventInstanceConnected, "geo")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := r.p.Subscribe(ctx, "ticks", "t", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(context.Background())
	items := nextItems(t, sub, 20)
	r.start("geo", true, "PV_TEST_VERSION=9.0.0")
	e := r.waitEvent(supervisor.EventInstanceHandedOver, "geo")
	if h := e.Detail.(supervisor.Handover); h.To.Version != "9.0.0" {
		t.Fatalf("handed over to %+v", h.To)
	}
	items = append(items, nextItems(t, sub, 200)...)
	if err := consecutive(items); err != nil || items[0] != 1 {
		t.Fatalf("ticks across the Go → Python handover: %v", err)
	}
	if err := goInst.waitExit(t); err != nil {
		t.Fatalf("the Go instance exited with %v, want 0", err)
	}
}
