package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/internal/testpki"
)

// serve runs ServeListener on ln with the guarded fake until the test ends.
func serve(t *testing.T, ln net.Listener, f *fake) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, Guard(NewServer(f, nil), Access{Token: testToken})) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func getWith(t *testing.T, c *http.Client, url string) (int, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "pvsock") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "run", "api.sock")
	ln, url, err := Listen(ListenOptions{Addr: UnixScheme + path})
	if err != nil {
		t.Fatal(err)
	}
	if url != UnixScheme+path {
		t.Fatalf("url %q", url)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v, want a socket of mode 0600", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("the socket folder holds %d entries, want the socket alone", len(ents))
	}
	f := newFake()
	serve(t, ln, f)
	c := unixClient(path)
	defer c.CloseIdleConnections()
	// Over the socket any Host passes (no browser can open it); the token is still required.
	if code, err := getWith(t, c, "http://anything.example/plugins"); err != nil || code != 200 {
		t.Fatalf("GET over the socket: %d %v", code, err)
	}
	resp, err := c.Get("http://localhost/plugins")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token over the socket: %d", resp.StatusCode)
	}
	// A second daemon on the same socket is refused, the first keeps it.
	if _, _, err := Listen(ListenOptions{Addr: UnixScheme + path}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second listener: %v", err)
	}
	if code, err := getWith(t, c, "http://localhost/healthz"); err != nil || code != 200 {
		t.Fatalf("the first daemon lost its socket: %d %v", code, err)
	}
}

func TestListenUnixReplacesDeadSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pvsock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "api.sock")
	// A socket file left by a killed daemon: nobody listens.
	dead, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close()
	ln, _, err := Listen(ListenOptions{Addr: UnixScheme + path})
	if err != nil {
		t.Fatalf("a dead socket blocked the start: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket behind: %v", err)
	}
	// Not a socket: refused, untouched.
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Listen(ListenOptions{Addr: UnixScheme + path}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if _, _, err := Listen(ListenOptions{Addr: UnixScheme + "rel/api.sock"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("relative socket path: %v", err)
	}
}

func TestListenRefusesPlainHTTPOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		ln, _, err := Listen(ListenOptions{Addr: addr})
		if err == nil {
			ln.Close()
			t.Fatalf("%s: plain HTTP on every interface was accepted", addr)
		}
		if !strings.Contains(err.Error(), "api_tls_cert") || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("%s: %v does not say how to enable TLS", addr, err)
		}
	}
	if _, _, err := Listen(ListenOptions{Addr: "127.0.0.1:0", TLSCert: "/nope/cert.pem", TLSKey: "/nope/key.pem"}); err == nil || !strings.Contains(err.Error(), "/nope/cert.pem") {
		t.Fatalf("missing cert: %v", err)
	}
}

// Off loopback with TLS and client certificates: only a client with a
// certificate the CA signed, and the token, gets in.
func TestListenMutualTLS(t *testing.T) {
	p := testpki.New(t)
	ln, url, err := Listen(ListenOptions{Addr: "0.0.0.0:0", TLSCert: p.File("server.pem"), TLSKey: p.File("server.key"), ClientCA: p.File("ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("url %q", url)
	}
	serve(t, ln, newFake())
	port := ln.Addr().(*net.TCPAddr).Port
	base := "https://127.0.0.1:" + strconv.Itoa(port)
	client := func(certs ...tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: p.CA}
		if len(certs) > 0 {
			// Sent whatever CAs the server names, as an attacker would.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	ok := client(p.Client)
	defer ok.CloseIdleConnections()
	if code, err := getWith(t, ok, base+"/plugins"); err != nil || code != 200 {
		t.Fatalf("client with a certificate: %d %v", code, err)
	}
	for name, c := range map[string]*http.Client{"no client certificate": client(), "unknown client certificate": client(p.Stranger)} {
		if code, err := getWith(t, c, base+"/plugins"); err == nil {
			t.Errorf("%s: got in (%d)", name, code)
		}
		c.CloseIdleConnections()
	}
	// Plain HTTP to the TLS port gets nothing of the API.
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/healthz")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP to the TLS port: %d %s", resp.StatusCode, body)
		}
	}
}

// A connection left idle is closed; a request body that trickles in is
// cut off at the read timeout; an event stream outlives the read timeout.
func TestServeTimeouts(t *testing.T) {
	oldR, oldI, oldH := readTimeout, idleTimeout, heartbeat
	readTimeout, idleTimeout, heartbeat = 300*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond
	defer func() { readTimeout, idleTimeout, heartbeat = oldR, oldI, oldH }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, newFake())
	addr := ln.Addr().String()
	closedWithin := func(name string, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s: the server did not close the connection: %v", name, err)
		}
	}
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	closedWithin("idle keep-alive", idle)

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /functions/clicks/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+testToken+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n\"abc"); err != nil {
		t.Fatal(err)
	}
	closedWithin("trickled body", slow)

	// The stream lives on well past the read timeout, heartbeats flowing.
	req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	until := time.Now().Add(4 * readTimeout)
	for time.Now().Before(until) {
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatalf("the event stream ended after %v, before 4× the read timeout: %v", time.Since(until.Add(-4*readTimeout)), err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}
