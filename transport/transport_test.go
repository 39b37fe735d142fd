package transport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plugvisor/plugvisor/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFrameRoundTrip(t *testing.T) {
	f := transport.Frame{Type: transport.Call, Flags: 0, ID: 1<<40 + 7, Payload: transport.CallPayload(nil, "double", []byte("21"))}
	g, err := transport.ParseFrame(transport.AppendFrame(nil, f))
	if err != nil || g.Type != f.Type || g.ID != f.ID || string(g.Payload) != string(f.Payload) {
		t.Fatalf("round trip: %+v %v", g, err)
	}
	name, in, err := transport.ParseCall(g.Payload)
	if err != nil || name != "double" || string(in) != "21" {
		t.Fatalf("call payload: %q %q %v", name, in, err)
	}
}

func TestMalformed(t *testing.T) {
	good := transport.AppendFrame(nil, transport.Frame{Type: transport.Data, ID: 1, Payload: []byte("1")})
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 9
	badType := append([]byte(nil), good...)
	badType[1] = 200
	nested := transport.AppendFrame(nil, transport.Frame{Type: transport.Batch, ID: 1,
		Payload: append([]byte{0, 0, 0, 12}, transport.AppendFrame(nil, transport.Frame{Type: transport.Batch})...)})
	for name, b := range map[string][]byte{
		"short":        good[:5],
		"version":      badVersion,
		"type":         badType,
		"nested batch": nested,
		"overrun":      transport.AppendFrame(nil, transport.Frame{Type: transport.Batch, ID: 1, Payload: []byte{0, 0, 1, 0, 1}}),
		"empty batch":  transport.AppendFrame(nil, transport.Frame{Type: transport.Batch, ID: 3}),
		"count":        transport.AppendFrame(nil, transport.Frame{Type: transport.Batch, ID: 2, Payload: append([]byte{0, 0, 0, byte(len(good))}, good...)}),
	} {
		if err := transport.ParseMessage(b, func(transport.Frame) error { return nil }); !errors.Is(err, transport.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := transport.Scopes{"functions": {"a": []byte("1"), "b": []byte(`"x"`)}, "source/ticks/demo": {"next": []byte("42")}}
	meta := transport.RestoreMeta{FromVersion: "1.0.0", FromStateVersion: "1"}
	m, got, err := transport.ParseRestore(transport.RestorePayload(meta, s))
	if err != nil || m != meta || got.Keys() != 3 || string(got["source/ticks/demo"]["next"]) != "42" {
		t.Fatalf("restore: %+v %v %v", m, got, err)
	}
	if _, err := transport.ParseState(transport.AppendState(nil, s)[:10]); !errors.Is(err, transport.ErrMalformed) {
		t.Fatalf("truncated state: %v", err)
	}
}

// Frames sent concurrently arrive complete and, per sender, in order,
// batched; a frame over the limit is refused with an error naming it.
func TestConnOrderBatchingAndLimit(t *testing.T) {
	addr := fmt.Sprintf("inproc://test-%d", time.Now().UnixNano())
	host, err := transport.Listen(addr, transport.Options{MaxFrame: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	plug, err := transport.Dial(addr, transport.Options{MaxFrame: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer plug.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := transport.Frame{Type: transport.Data, Payload: make([]byte, 64<<10)}
	if err := plug.Send(ctx, big); !errors.Is(err, transport.ErrTooLarge) || !strings.Contains(err.Error(), "max_frame") {
		t.Fatalf("oversized send: %v", err)
	}
	const senders, per = 4, 5000
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				if err := plug.Send(ctx, transport.Frame{Type: transport.Data, ID: uint64(i), Flags: uint16(s)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	last := make([]uint64, senders)
	n, msgs := 0, 0
	for n < senders*per {
		err := host.Recv(func(f transport.Frame) error {
			if f.ID != last[f.Flags]+1 {
				return fmt.Errorf("sender %d: %d after %d", f.Flags, f.ID, last[f.Flags])
			}
			last[f.Flags] = f.ID
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		msgs++
	}
	wg.Wait()
	t.Logf("%d frames in %d messages", n, msgs)
}

// The manifest's optional schemas: absent is fine (older plugins); a
// schema for no symbol, of the wrong part, or not parsing is refused.
func TestManifestSchemas(t *testing.T) {
	base := func() transport.Manifest {
		return transport.Manifest{Name: "p", Version: "1", Sources: []string{"ticks"}, Functions: []string{"double"}}
	}
	m := base()
	if err := m.Validate(); err != nil {
		t.Fatalf("no schemas: %v", err)
	}
	m.Schemas = map[string]transport.SymbolSchema{"double": {In: []byte(`{"type":"integer"}`)}, "ticks": {Item: []byte(`{"type":"object"}`)}}
	if err := m.Validate(); err != nil {
		t.Fatalf("good schemas: %v", err)
	}
	for want, ss := range map[string]map[string]transport.SymbolSchema{
		"not one of its symbols":      {"nope": {In: []byte(`{}`)}},
		"functions have in and out":   {"double": {Item: []byte(`{}`)}},
		"sources and sinks have item": {"ticks": {Out: []byte(`{}`)}},
		"unknown type \"int\"":        {"double": {In: []byte(`{"type":"int"}`)}},
		"not a JSON object":           {"double": {Out: []byte(`[1]`)}},
	} {
		m := base()
		m.Schemas = ss
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%v) = %v, want %q", ss, err, want)
		}
	}
}
