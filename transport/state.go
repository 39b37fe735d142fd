package transport

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
)

// Scopes is the state of a plugin process: scope (a symbol instance) →
// key → JSON-encoded value.
type Scopes map[string]map[string][]byte

// Keys counts the keys of every scope.
func (s Scopes) Keys() int {
	n := 0
	for _, kv := range s {
		n += len(kv)
	}
	return n
}

// AppendState encodes s: u32 scope count, then per scope u16 name length,
// name, u32 key count, then per key u32 length, key, u32 length, value.
// Scopes are sorted; keys are not (sorting 100k keys would lengthen a
// swap's pause for nothing: readers build maps).
func AppendState(dst []byte, s Scopes) []byte {
	size := 4
	for n, kv := range s {
		size += 6 + len(n)
		for k, v := range kv {
			size += 8 + len(k) + len(v)
		}
	}
	dst = slices.Grow(dst, size)
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(names)))
	for _, n := range names {
		kv := s[n]
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(n)))
		dst = append(dst, n...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(kv)))
		for k, v := range kv {
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(k)))
			dst = append(dst, k...)
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

// ParseState decodes a state blob. Values alias b (one big allocation
// instead of one per key), so b must not be reused afterwards.
func ParseState(b []byte) (Scopes, error) {
	r := reader{b: b}
	n := r.u32()
	// Size hints never exceed what the remaining bytes can hold (a scope
	// takes at least 6, a key 8): announced counts are the peer's word.
	s := make(Scopes, min(n, 1024, uint32(len(r.b)/6)))
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := string(r.bytes(int(r.u16())))
		keys := r.u32()
		kv := make(map[string][]byte, min(keys, 1<<16, uint32(len(r.b)/8)))
		for j := uint32(0); j < keys && r.err == nil; j++ {
			k := string(r.bytes(int(r.u32())))
			v := r.bytes(int(r.u32()))
			kv[k] = v[:len(v):len(v)] // capped: an append never writes into b
		}
		s[name] = kv
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: state blob: %v", ErrMalformed, r.err)
	}
	return s, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("truncated: need %d bytes, have %d", n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) bytes(n int) []byte { return r.take(n) }

// RestorePayload encodes a Restore payload: u32 meta length, JSON meta, state blob.
func RestorePayload(meta RestoreMeta, s Scopes) []byte {
	m := JSON(meta)
	dst := binary.BigEndian.AppendUint32(nil, uint32(len(m)))
	dst = append(dst, m...)
	return AppendState(dst, s)
}

// ParseRestore decodes a Restore payload.
func ParseRestore(p []byte) (RestoreMeta, Scopes, error) {
	var meta RestoreMeta
	if len(p) < 4 {
		return meta, nil, fmt.Errorf("%w: restore payload of %d bytes", ErrMalformed, len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return meta, nil, fmt.Errorf("%w: restore meta overruns the payload", ErrMalformed)
	}
	if err := Decode(Frame{Type: Restore, Payload: p[4 : 4+n]}, &meta); err != nil {
		return meta, nil, err
	}
	s, err := ParseState(p[4+n:])
	return meta, s, err
}
