package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// guarded serves the fake backend through Guard on a real loopback port.
func guarded(t *testing.T, f *fake, hosts ...string) string {
	t.Helper()
	h := Guard(NewServer(f, nil, CallTimeout(200*time.Millisecond)), Access{Token: testToken, TokenFile: "/st/api.token", Hosts: hosts})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

type req struct {
	method, path, body string
	hdr                map[string]string
}

func send(t *testing.T, base string, r req) (int, http.Header, string) {
	t.Helper()
	var body *strings.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	var hr *http.Request
	var err error
	if body != nil {
		hr, err = http.NewRequest(r.method, base+r.path, body)
	} else {
		hr, err = http.NewRequest(r.method, base+r.path, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.hdr {
		if k == "Host" {
			hr.Host = v
		} else {
			hr.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, sb.String()
}

func auth(extra map[string]string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + testToken}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// Every way a web page or a stranger could drive the API is refused, and
// none of them adds a plugin.
func TestGuardRefusesBrowserAttacks(t *testing.T) {
	f := newFake()
	base := guarded(t, f)
	add := `{"name":"evil","driver":"http://attacker.example/evil.tar.gz"}`
	for _, tc := range []struct {
		name string
		r    req
		code int
		want string
	}{
		{"no token", req{"POST", "/plugins", add, map[string]string{"Content-Type": "application/json"}}, 401, "missing API token"},
		{"wrong token", req{"POST", "/plugins", add, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + strings.Repeat("f", 64)}}, 401, "wrong API token"},
		{"basic auth", req{"GET", "/plugins", "", map[string]string{"Authorization": "Basic " + testToken}}, 401, "/st/api.token"},
		{"text/plain from a foreign origin", req{"POST", "/plugins", add, map[string]string{"Content-Type": "text/plain", "Origin": "http://attacker.example"}}, 403, "attacker.example"},
		{"foreign origin with the token", req{"POST", "/plugins", add, auth(map[string]string{"Content-Type": "application/json", "Origin": "http://attacker.example"})}, 403, "cross-origin"},
		{"null origin", req{"GET", "/plugins", "", auth(map[string]string{"Origin": "null"})}, 403, "cross-origin"},
		{"DNS rebinding host", req{"POST", "/plugins", add, auth(map[string]string{"Content-Type": "application/json", "Host": "evil.example"})}, 403, "api_hosts"},
		{"rebinding host on a probe-free path", req{"GET", "/plugins", "", map[string]string{"Host": "evil.example:9081"}}, 403, "evil.example"},
		{"text/plain with the token", req{"POST", "/plugins", add, auth(map[string]string{"Content-Type": "text/plain"})}, 415, "application/json"},
		{"form with the token", req{"POST", "/functions/clicks/count", `"a"`, auth(map[string]string{"Content-Type": "application/x-www-form-urlencoded"})}, 415, "application/json"},
		{"body without a type", req{"POST", "/plugins", add, auth(nil)}, 415, "Content-Type: application/json"},
		{"preflight", req{"OPTIONS", "/plugins", "", map[string]string{"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST"}}, 403, "cross-origin"},
		{"same-origin preflight", req{"OPTIONS", "/plugins", "", auth(map[string]string{"Access-Control-Request-Method": "POST"})}, 403, "cross-origin"},
	} {
		code, hdr, body := send(t, base, tc.r)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, code, body, tc.code, tc.want)
		}
		for k := range hdr {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: answered with %s: %v", tc.name, k, hdr[k])
			}
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	if _, err := f.Status("evil"); err == nil {
		t.Fatal("a refused request added a plugin")
	}
	if n := len(f.counts); n != 0 {
		t.Fatalf("a refused request called a function: %v", f.counts)
	}
}

// notRefused: any answer but the guard's 401 and 403 (a probe another
// part of the API may or may not serve).
const notRefused = -1

// What the CLI and scripts send passes; probes need nothing.
func TestGuardAdmits(t *testing.T) {
	f := newFake()
	base := guarded(t, f, "plugvisor.internal")
	port := base[strings.LastIndex(base, ":")+1:]
	for _, tc := range []struct {
		name string
		r    req
		code int
	}{
		{"token", req{"GET", "/plugins", "", auth(nil)}, 200},
		{"lower-case scheme", req{"GET", "/plugins", "", map[string]string{"Authorization": "bearer " + testToken}}, 200},
		{"json body", req{"POST", "/functions/clicks/count", `"a"`, auth(map[string]string{"Content-Type": "application/json; charset=utf-8"})}, 200},
		{"empty POST without a type", req{"POST", "/plugins/clicks/reload", "", auth(nil)}, 200},
		{"localhost", req{"GET", "/plugins", "", auth(map[string]string{"Host": "localhost:" + port})}, 200},
		{"ipv6 loopback", req{"GET", "/plugins", "", auth(map[string]string{"Host": "[::1]:" + port})}, 200},
		{"api_hosts name", req{"GET", "/plugins", "", auth(map[string]string{"Host": "PlugVisor.internal:" + port})}, 200},
		{"own origin", req{"GET", "/plugins", "", auth(map[string]string{"Origin": base})}, 200},
		{"healthz without a token", req{"GET", "/healthz", "", nil}, 200},
		{"readyz without a token", req{"GET", "/readyz", "", nil}, notRefused},
		{"probe from a foreign origin", req{"GET", "/healthz", "", map[string]string{"Origin": "http://attacker.example"}}, 403},
	} {
		code, _, body := send(t, base, tc.r)
		if tc.code == notRefused && (code == 401 || code == 403) || tc.code != notRefused && code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
	// An empty token refuses everything but the probes.
	srv := httptest.NewServer(Guard(NewServer(f, nil), Access{}))
	defer srv.Close()
	if code, _, body := send(t, srv.URL, req{"GET", "/plugins", "", map[string]string{"Authorization": "Bearer "}}); code != 401 {
		t.Fatalf("empty token: %d %s", code, body)
	}
}

// A call past its deadline is 504 and names how to raise it; ?timeout=
// overrides the default, and a bad one is 400.
func TestCallTimeout(t *testing.T) {
	f := newFake()
	base := guarded(t, f)
	json := auth(map[string]string{"Content-Type": "application/json"})
	code, _, body := send(t, base, req{"POST", "/functions/clicks/block", `1`, json})
	if code != 504 || !strings.Contains(body, "200ms") || !strings.Contains(body, "call_timeout") {
		t.Fatalf("blocked call: %d %s", code, body)
	}
	start := time.Now()
	code, _, body = send(t, base, req{"POST", "/functions/clicks/block?timeout=50ms", `1`, json})
	if code != 504 || !strings.Contains(body, "50ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("?timeout=50ms: %d %s", code, body)
	}
	if code, _, body = send(t, base, req{"POST", "/functions/clicks/count?timeout=soon", `"a"`, json}); code != 400 || !strings.Contains(body, "timeout") {
		t.Fatalf("?timeout=soon: %d %s", code, body)
	}
	if code, _, body = send(t, base, req{"POST", "/functions/clicks/count?timeout=-1s", `"a"`, json}); code != 400 {
		t.Fatalf("?timeout=-1s: %d %s", code, body)
	}
	// The next call is answered.
	if code, _, body = send(t, base, req{"POST", "/functions/clicks/count?timeout=5s", `"a"`, json}); code != 200 || body != "1" {
		t.Fatalf("call after a timeout: %d %s", code, body)
	}
}

func TestTokenFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	tok, err := EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
		t.Fatalf("token %q is not 256 bits of hex", tok)
	}
	fi, err := os.Stat(TokenPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi.Mode(), err)
	}
	if again, err := EnsureToken(dir); err != nil || again != tok {
		t.Fatalf("second start: %q %v, want the same token", again, err)
	}
	// No temporary files are left beside it.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("state dir holds %d entries, want only %s", len(ents), TokenFile)
	}
	// Daemons starting at once agree on one token.
	other := filepath.Join(t.TempDir(), "state")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = EnsureToken(other)
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g == "" || g != got[0] {
			t.Fatalf("concurrent starts made different tokens: %q", got)
		}
	}
	// A token others can read, or a file that holds none, is refused.
	if err := os.Chmod(TokenPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureToken(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token: %v", err)
	}
	if err := os.WriteFile(TokenPath(other), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(TokenPath(other)); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("empty token file: %v", err)
	}
}

// The conn cap leaves most descriptors to plugins.
func TestConnCap(t *testing.T) {
	for _, tc := range []struct{ want, fds, cap int }{
		{0, 0, DefaultMaxConns}, {0, 1024, 256}, {100, 1 << 20, 100}, {0, 8, 4},
	} {
		if got := connCap(tc.want, tc.fds); got != tc.cap {
			t.Errorf("connCap(%d, %d) = %d, want %d", tc.want, tc.fds, got, tc.cap)
		}
	}
}

// Past the cap, clients wait unaccepted until a connection closes.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the cap of 2")
	case <-time.After(200 * time.Millisecond): // proving a negative: bounded wait
	}
	first.Close()
	first.Close() // a second Close frees nothing more
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("closing a connection did not let the next one in")
	}
	second.Close()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case _, ok := <-accepted:
		if ok {
			t.Fatal("accepted after Close")
		}
	case <-ctx.Done():
		t.Fatal("Accept did not return after Close")
	}
}

// The address a request arrived on is an accepted Host (no DNS name, so
// no rebinding); another address is not.
func TestHostOwnAddress(t *testing.T) {
	local := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9443}
	for host, want := range map[string]bool{"10.1.2.3:9443": true, "10.1.2.3": true, "10.1.2.4:9443": false, "": false, "evil.example": false, "127.0.0.9": true} {
		r := httptest.NewRequest("GET", "/plugins", nil)
		r.Host = host
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
		if got := hostAllowed(r, nil); got != want {
			t.Errorf("Host %q on %v: allowed %v, want %v", host, local, got, want)
		}
	}
}
