// Package transport is the wire between the plugvisor host and its plugins:
// mangos PAIR sockets, versioned length-checked frames, batching, the
// handshake and the state encoding. Host and SDK both use it; it knows
// nothing of supervision. docs/protocol.md is the language-neutral spec.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the wire protocol version carried in every frame header.
const Version = 1

// HeaderSize is the fixed frame header: version, type, flags, id.
const HeaderSize = 12

// Type says what a frame carries.
type Type uint8

// Control channel frames.
const (
	Hello    Type = 1  // plugin → host: handshake (JSON HelloMsg)
	Welcome  Type = 2  // host → plugin: accepted (JSON WelcomeMsg)
	Refuse   Type = 3  // host → plugin: refused (JSON ErrorMsg)
	Open     Type = 4  // host → plugin: open a symbol instance (JSON OpenMsg)
	Stop     Type = 5  // host → plugin: stop an instance (JSON StopMsg)
	Snapshot Type = 6  // host → plugin: send the state of every scope
	Restore  Type = 7  // host → plugin: load state (RestoreMsg + state blob)
	Ping     Type = 8  // host → plugin: heartbeat
	Shutdown Type = 9  // host → plugin: exit cleanly
	OK       Type = 10 // plugin → host: request with the same id succeeded
	Error    Type = 11 // plugin → host: request with the same id failed (JSON ErrorMsg)
	State    Type = 12 // plugin → host: reply to Snapshot (state blob)
	Pong     Type = 13 // plugin → host: reply to Ping
	Leaving  Type = 14 // plugin → host: got SIGTERM, its orchestrator is ending it (only to a host welcoming with FeatureLeaving)
)

// Data channel frames. A data channel carries data and markers in one
// ordered stream, so a marker is always behind the data sent before it.
const (
	Data        Type = 32 // one item; id = sequence number on this channel
	Barrier     Type = 33 // host → sink: answer Ack with this id once every earlier item is collected
	Ack         Type = 34 // sink → host: every item with sequence ≤ id is collected
	EOS         Type = 35 // source → host: the source stopped; nothing follows
	Call        Type = 36 // host → plugin: call a function; id = call id; payload = u16 name length, name, input
	Result      Type = 37 // plugin → host: the call with this id returned; payload = output
	Fail        Type = 38 // plugin → host: the call with this id failed (JSON ErrorMsg)
	Checkpoint  Type = 39 // source → host: a snapshot with this id was taken here in the stream
	CallBatch   Type = 40 // host → plugin: call a function on n inputs; id = batch id (see batchcall.go)
	ResultBatch Type = 41 // plugin → host: the batch with this id returned; one result or error per input, in order
)

// Batch wraps several frames in one message: payload is a sequence of
// u32 length + frame. It exists for throughput; it is never nested.
const Batch Type = 64

var typeNames = map[Type]string{
	Hello: "hello", Welcome: "welcome", Refuse: "refuse", Open: "open", Stop: "stop",
	Snapshot: "snapshot", Restore: "restore", Ping: "ping", Shutdown: "shutdown",
	OK: "ok", Error: "error", State: "state", Pong: "pong", Leaving: "leaving",
	Data: "data", Barrier: "barrier", Ack: "ack", EOS: "eos", Call: "call",
	Result: "result", Fail: "fail", Checkpoint: "checkpoint", Batch: "batch",
	CallBatch: "call_batch", ResultBatch: "result_batch",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Frame is one protocol unit. Payload aliases the received message.
type Frame struct {
	Type    Type
	Flags   uint16
	ID      uint64
	Payload []byte
}

// Size is the encoded size of f.
func (f Frame) Size() int { return HeaderSize + len(f.Payload) }

// ErrMalformed is wrapped by every decoding error: a peer that sends one
// is broken or hostile, and its generation is dropped.
var ErrMalformed = errors.New("malformed frame")

// ErrTooLarge is wrapped when a frame exceeds the configured size limit.
var ErrTooLarge = errors.New("frame too large")

// AppendFrame encodes f onto dst.
func AppendFrame(dst []byte, f Frame) []byte {
	var h [HeaderSize]byte
	h[0] = Version
	h[1] = byte(f.Type)
	binary.BigEndian.PutUint16(h[2:], f.Flags)
	binary.BigEndian.PutUint64(h[4:], f.ID)
	dst = append(dst, h[:]...)
	return append(dst, f.Payload...)
}

// ParseFrame decodes one frame (not a batch) from b, which it aliases.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < HeaderSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformed, len(b), HeaderSize)
	}
	if b[0] != Version {
		return Frame{}, fmt.Errorf("%w: protocol version %d, this side speaks %d", ErrMalformed, b[0], Version)
	}
	t := Type(b[1])
	if _, ok := typeNames[t]; !ok {
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, b[1])
	}
	return Frame{
		Type:    t,
		Flags:   binary.BigEndian.Uint16(b[2:]),
		ID:      binary.BigEndian.Uint64(b[4:]),
		Payload: b[HeaderSize:],
	}, nil
}

// ParseMessage decodes a message — one frame or a batch — calling fn for
// each frame in order. It stops at the first error.
func ParseMessage(b []byte, fn func(Frame) error) error {
	f, err := ParseFrame(b)
	if err != nil {
		return err
	}
	if f.Type != Batch {
		return fn(f)
	}
	p := f.Payload
	if len(p) == 0 && f.ID != 0 {
		return fmt.Errorf("%w: batch announced %d frames, carried none", ErrMalformed, f.ID)
	}
	for n := uint64(0); len(p) > 0; n++ {
		if len(p) < 4 {
			return fmt.Errorf("%w: batch truncated in a length prefix", ErrMalformed)
		}
		l := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(l) > uint64(len(p)) {
			return fmt.Errorf("%w: batch entry of %d bytes overruns the message (%d left)", ErrMalformed, l, len(p))
		}
		sub, err := ParseFrame(p[:l])
		if err != nil {
			return err
		}
		if sub.Type == Batch {
			return fmt.Errorf("%w: nested batch", ErrMalformed)
		}
		if err := fn(sub); err != nil {
			return err
		}
		p = p[l:]
		if len(p) == 0 && n+1 != f.ID {
			return fmt.Errorf("%w: batch announced %d frames, carried %d", ErrMalformed, f.ID, n+1)
		}
	}
	return nil
}

// CallPayload encodes a Call payload: u16 name length, name, input.
func CallPayload(dst []byte, name string, input []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(name)))
	dst = append(dst, name...)
	return append(dst, input...)
}

// ParseCall splits a Call payload into the function name and its input.
func ParseCall(p []byte) (name string, input []byte, err error) {
	if len(p) < 2 {
		return "", nil, fmt.Errorf("%w: call payload of %d bytes", ErrMalformed, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n {
		return "", nil, fmt.Errorf("%w: call name of %d bytes overruns the payload", ErrMalformed, n)
	}
	return string(p[2 : 2+n]), p[2+n:], nil
}
