package transport_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/plugvisor/plugvisor/transport"
)

// Seeds beyond these live in testdata/fuzz/<target>/; `go test` runs all of
// them, `make fuzz` explores from them.

// FuzzParseMessage: any bytes a peer sends decode to frames or to an error
// wrapping ErrMalformed, never a panic; a decoded frame re-encodes to the
// bytes it came from.
func FuzzParseMessage(f *testing.F) {
	f.Add(transport.AppendFrame(nil, transport.Frame{Type: transport.Data, ID: 7, Payload: []byte(`"x"`)}))
	f.Add(batch(transport.Frame{Type: transport.Data, ID: 1, Payload: []byte("1")}, transport.Frame{Type: transport.Ack, ID: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var frames []transport.Frame
		err := transport.ParseMessage(b, func(fr transport.Frame) error {
			if fr.Type == transport.Batch {
				t.Fatalf("a batch frame reached the callback")
			}
			frames = append(frames, fr)
			return nil
		})
		if err != nil {
			if !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var again []byte
		if len(frames) == 1 && b[1] != byte(transport.Batch) {
			again = transport.AppendFrame(nil, frames[0])
		} else {
			again = batchFlags(b[2:4], frames...)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, decoded from %x", again, b)
		}
	})
}

func batch(frames ...transport.Frame) []byte { return batchFlags([]byte{0, 0}, frames...) }

// batchFlags encodes frames as one batch whose header carries flags.
func batchFlags(flags []byte, frames ...transport.Frame) []byte {
	var p []byte
	for _, fr := range frames {
		enc := transport.AppendFrame(nil, fr)
		p = append(p, byte(len(enc)>>24), byte(len(enc)>>16), byte(len(enc)>>8), byte(len(enc)))
		p = append(p, enc...)
	}
	out := transport.AppendFrame(nil, transport.Frame{Type: transport.Batch, ID: uint64(len(frames)), Payload: p})
	copy(out[2:4], flags)
	return out
}

// FuzzParseCall: a call payload splits into name and input or fails
// cleanly; what splits re-encodes to itself.
func FuzzParseCall(f *testing.F) {
	f.Add(transport.CallPayload(nil, "double", []byte("21")))
	f.Add([]byte{0xff, 0xff, 'x'})
	f.Fuzz(func(t *testing.T, p []byte) {
		name, in, err := transport.ParseCall(p)
		if err != nil {
			if !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if again := transport.CallPayload(nil, name, in); !bytes.Equal(again, p) {
			t.Fatalf("re-encoded %x, decoded from %x", again, p)
		}
	})
}

// FuzzParseState: a state blob (a plugin's snapshot, a checkpoint read
// back from disk) decodes or fails cleanly, and what decodes survives an
// encode/decode round trip unchanged.
func FuzzParseState(f *testing.F) {
	f.Add(transport.AppendState(nil, transport.Scopes{"functions": {"n": []byte("3")}, "source/ticks/a": {"next": []byte("17"), "": nil}}))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := transport.ParseState(b)
		if err != nil {
			if !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, err := transport.ParseState(transport.AppendState(nil, s))
		if err != nil || !equalScopes(again, s) {
			t.Fatalf("round trip: %v\n got %v\nwant %v", err, again, s)
		}
	})
}

// FuzzParseRestore: the restore payload (meta JSON + state blob) likewise.
func FuzzParseRestore(f *testing.F) {
	f.Add(transport.RestorePayload(transport.RestoreMeta{FromVersion: "1.0.0", FromStateVersion: "1"}, transport.Scopes{"functions": {"k": []byte(`"v"`)}}))
	f.Add([]byte{0, 0, 0, 2, '{', '}', 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		meta, s, err := transport.ParseRestore(p)
		if err != nil {
			if !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		meta2, s2, err := transport.ParseRestore(transport.RestorePayload(meta, s))
		if err != nil || meta2 != meta || !equalScopes(s2, s) {
			t.Fatalf("round trip: %v: %+v %v, want %+v %v", err, meta2, s2, meta, s)
		}
	})
}

// equalScopes treats nil and empty values alike (both encode as length 0).
func equalScopes(a, b transport.Scopes) bool {
	if len(a) != len(b) {
		return false
	}
	for n, kv := range a {
		kv2, ok := b[n]
		if !ok || len(kv) != len(kv2) {
			return false
		}
		for k, v := range kv {
			v2, ok := kv2[k]
			if !ok || !bytes.Equal(v, v2) {
				return false
			}
		}
	}
	return true
}

// FuzzHello: the handshake as the host reads it — a hello frame's JSON and
// its manifest — is accepted or refused with an error, never a panic; an
// accepted manifest offers exactly the symbols it lists, under valid names.
func FuzzHello(f *testing.F) {
	f.Add(transport.JSON(transport.HelloMsg{Protocol: 1, Token: "t", PID: 42, Manifest: transport.Manifest{
		Name: "demo", Version: "1.2.0", Sources: []string{"ticks"}, Sinks: []string{"append"}, Functions: []string{"double"}}}))
	f.Add([]byte(`{"protocol":1,"manifest":{"name":"x","version":"1","functions":["a","a"]}}`))
	f.Add([]byte(`{"manifest":{"name":"x","version":"1","sources":["a"],"sinks":["a"]}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var hello transport.HelloMsg
		if err := transport.Decode(transport.Frame{Type: transport.Hello, Payload: payload}, &hello); err != nil {
			if !errors.Is(err, transport.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		m := hello.Manifest
		if m.Validate() != nil {
			return
		}
		for kind, names := range map[string][]string{transport.KindSource: m.Sources, transport.KindSink: m.Sinks, transport.KindFunction: m.Functions} {
			for _, n := range names {
				if !m.Has(kind, n) {
					t.Fatalf("validated manifest lists %s %q but does not have it", kind, n)
				}
				for _, other := range []string{transport.KindSource, transport.KindSink, transport.KindFunction} {
					if other != kind && m.Has(other, n) {
						t.Fatalf("validated manifest has %q as both %s and %s", n, kind, other)
					}
				}
			}
		}
		var back transport.HelloMsg
		if err := json.Unmarshal(transport.JSON(hello), &back); err != nil || !reflect.DeepEqual(back, hello) {
			t.Fatalf("hello does not survive JSON: %v\n got %+v\nwant %+v", err, back, hello)
		}
	})
}
