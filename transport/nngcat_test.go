package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// Interoperability with NNG's nngcat (Debian nng-utils), an SP
// implementation independent of mangos, and with the Python SDK's socket
// layer through it.

const nngWait = 10 * time.Second

func nngcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nngcat")
	if err != nil {
		t.Skip("nngcat is not installed (apt-get install nng-utils)")
	}
	return p
}

// shortDir is a temp dir short enough for a Unix socket path.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type nngcat struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
	done chan struct{}
}

// nngcatDial starts nngcat dialing addr: it sends the contents of a file
// holding msg, prints every message it receives raw, and exits after a
// second without messages.
func nngcatDial(t *testing.T, dir, addr string, msg []byte) *nngcat {
	t.Helper()
	file := filepath.Join(dir, "msg.bin")
	if err := os.WriteFile(file, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	n := &nngcat{done: make(chan struct{})}
	n.cmd = exec.Command(nngcatPath(t), "--pair0", "--dial", addr, "--raw", "--recv-timeout", "1", "--file", file)
	n.cmd.Stdout, n.cmd.Stderr = &n.out, &n.errb
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("nngcat stderr: %s", n.errb.String())
		}
	})
	return n
}

// wait waits for nngcat to exit successfully and returns what it received.
func (n *nngcat) wait(t *testing.T) []byte {
	t.Helper()
	select {
	case <-n.done:
	case <-time.After(nngWait):
		t.Fatal("nngcat still running after", nngWait)
	}
	if !n.cmd.ProcessState.Success() {
		t.Fatalf("nngcat: %v: %s", n.cmd.ProcessState, n.errb.String())
	}
	return n.out.Bytes()
}

func TestNNGCatWithGoTransport(t *testing.T) {
	t.Parallel()
	nngcatPath(t)
	dir := shortDir(t)
	addr := "ipc://" + filepath.Join(dir, "s")
	c, err := transport.Listen(addr, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	sent := transport.AppendFrame(nil, transport.Frame{Type: transport.Call, ID: 5, Payload: transport.CallPayload(nil, "double", []byte("21"))})
	nc := nngcatDial(t, dir, addr, sent)

	got := make(chan transport.Frame, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Recv(func(f transport.Frame) error {
			got <- f
			return nil
		})
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(nngWait):
		t.Fatal("nothing from nngcat within", nngWait)
	}
	f := <-got
	name, input, err := transport.ParseCall(f.Payload)
	if f.Type != transport.Call || f.ID != 5 || err != nil || name != "double" || string(input) != "21" {
		t.Fatalf("received %s id %d %q %q (%v)", f.Type, f.ID, name, input, err)
	}

	reply := transport.Frame{Type: transport.Result, ID: 5, Payload: []byte("42")}
	ctx, cancel := context.WithTimeout(context.Background(), nngWait)
	defer cancel()
	if err := c.Send(ctx, reply); err != nil {
		t.Fatal(err)
	}
	if got, want := nc.wait(t), transport.AppendFrame(nil, reply); !bytes.Equal(got, want) {
		t.Fatalf("nngcat received %x, want %x", got, want)
	}
}

func TestNNGCatWithPythonSDK(t *testing.T) {
	t.Parallel()
	nngcatPath(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	sdk, err := filepath.Abs("../sdk/python")
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	addr := "ipc://" + filepath.Join(dir, "s")
	reply := transport.AppendFrame(nil, transport.Frame{Type: transport.Result, ID: 5, Payload: []byte("42")})

	peer := exec.Command(py, filepath.Join(sdk, "tests", "sp_peer.py"), addr, hex.EncodeToString(reply))
	peer.Env = append(os.Environ(), "PYTHONPATH="+sdk)
	var perr bytes.Buffer
	peer.Stderr = &perr
	stdout, err := peer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16) // the peer prints 3 lines
	exited := make(chan error, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		exited <- peer.Wait() // after the last read, as StdoutPipe requires
	}()
	t.Cleanup(func() {
		peer.Process.Kill()
		<-exited
	})
	line := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sp_peer.py ended early: %s", perr.String())
			}
			return l
		case <-time.After(nngWait):
			t.Fatal("sp_peer.py said nothing within", nngWait)
		}
		return ""
	}
	if l := line(); !strings.HasPrefix(l, "READY ") {
		t.Fatalf("sp_peer.py: %q", l)
	}

	sent := transport.AppendFrame(nil, transport.Frame{Type: transport.Data, ID: 3, Payload: []byte(`{"x":1}`)})
	nc := nngcatDial(t, dir, addr, sent)
	if l := line(); l != "GOT "+hex.EncodeToString(sent) {
		t.Fatalf("sp_peer.py: %q, want GOT %x", l, sent)
	}
	if l := line(); l != "FRAME 32 3 "+hex.EncodeToString([]byte(`{"x":1}`)) {
		t.Fatalf("sp_peer.py parsed %q", l)
	}
	if got := nc.wait(t); !bytes.Equal(got, reply) {
		t.Fatalf("nngcat received %x from the Python SDK, want %x", got, reply)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("sp_peer.py: %v: %s", err, perr.String())
		}
	case <-time.After(nngWait):
		t.Fatal("sp_peer.py still running after", nngWait)
	}
}
