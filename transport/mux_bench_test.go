package transport_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/plugvisor/plugvisor/internal/testpki"
	"github.com/plugvisor/plugvisor/transport"
)

// BenchmarkCallRTT is one call round trip (call frame out, result frame
// back, 8-byte payload) on a local ipc:// channel and on a channel of an
// external instance over mutual TLS on loopback.
func BenchmarkCallRTT(b *testing.B) {
	b.Run("ipc", func(b *testing.B) {
		dir, err := os.MkdirTemp("", "rtt")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		addr := "ipc://" + filepath.Join(dir, "c.sock")
		host, err := transport.Listen(addr, transport.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer host.Close()
		plug, err := transport.Dial(addr, transport.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer plug.Close()
		benchRTT(b, host, plug)
	})
	b.Run("mux-tls", func(b *testing.B) {
		pki := testpki.New(b)
		m, err := transport.ListenMux(transport.MuxConfig{Addr: "tls+tcp://127.0.0.1:0",
			Cert: pki.File("server.pem"), Key: pki.File("server.key"), ClientCA: pki.File("ca.pem"),
			Known: func(string) bool { return false }, Log: func(s string) { b.Log(s) }})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		host, err := m.Listen("geo", transport.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer host.Close()
		cert, key := pki.ClientFor("", "geo")
		env := map[string]string{transport.EnvConnect: m.Addr(), transport.EnvTLSCert: cert, transport.EnvTLSKey: key, transport.EnvTLSCA: pki.File("ca.pem")}
		r, err := transport.RemoteFromEnv(func(k string) string { return env[k] })
		if err != nil {
			b.Fatal(err)
		}
		plug, err := r.Dial(host.Addr(), transport.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer plug.Close()
		benchRTT(b, host, plug)
	})
}

// benchRTT echoes each call as a result on plug and times round trips
// from host.
func benchRTT(b *testing.B, host, plug *transport.Conn) {
	ctx := context.Background()
	go func() {
		for {
			err := plug.Recv(func(f transport.Frame) error {
				return plug.Send(ctx, transport.Frame{Type: transport.Result, ID: f.ID, Payload: f.Payload})
			})
			if err != nil {
				return
			}
		}
	}()
	payload := transport.CallPayload(nil, "double", []byte("12345678"))
	got := make(chan uint64, 1)
	go func() {
		for {
			err := host.Recv(func(f transport.Frame) error { got <- f.ID; return nil })
			if err != nil {
				close(got)
				return
			}
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		if err := host.Send(ctx, transport.Frame{Type: transport.Call, ID: uint64(i + 1), Payload: payload}); err != nil {
			b.Fatal(err)
		}
		if id := <-got; id != uint64(i+1) {
			b.Fatalf("result %d for call %d", id, i+1)
		}
	}
	b.StopTimer()
	host.Close()
	plug.Close()
	for range got {
	}
}
