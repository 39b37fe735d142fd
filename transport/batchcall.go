package transport

import (
	"encoding/binary"
	"fmt"
)

// FeatureCallBatch is announced in a manifest's features by a plugin that
// answers CallBatch frames. The host sends them only to such plugins;
// others get one Call frame per input (still many in flight).
const FeatureCallBatch = "call_batch"

// Per-item status in a ResultBatch payload.
const (
	ItemOK    byte = 0 // the bytes are the output JSON
	ItemError byte = 1 // the bytes are the error text
	ItemPanic byte = 2 // the function panicked; the bytes are the message
)

// MaxBatchItems bounds the inputs of one CallBatch: a larger count is
// malformed (it also bounds what a hostile count can make a peer allocate).
const MaxBatchItems = 1 << 16

// CallBatchPayload encodes a CallBatch payload: u16 name length, name,
// u32 count, then per input u32 length and the input JSON.
func CallBatchPayload(dst []byte, name string, inputs [][]byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(name)))
	dst = append(dst, name...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(inputs)))
	for _, in := range inputs {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(in)))
		dst = append(dst, in...)
	}
	return dst
}

// CallBatchSize is the encoded size of a CallBatch payload.
func CallBatchSize(name string, inputs [][]byte) int {
	n := 2 + len(name) + 4
	for _, in := range inputs {
		n += 4 + len(in)
	}
	return n
}

// ParseCallBatch splits a CallBatch payload; the inputs alias p.
func ParseCallBatch(p []byte) (name string, inputs [][]byte, err error) {
	if len(p) < 2 {
		return "", nil, fmt.Errorf("%w: call_batch payload of %d bytes", ErrMalformed, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if len(p) < n+4 {
		return "", nil, fmt.Errorf("%w: call_batch name of %d bytes overruns the payload", ErrMalformed, n)
	}
	name = string(p[:n])
	p = p[n:]
	items, err := splitItems(p[4:], binary.BigEndian.Uint32(p), 0)
	if err != nil {
		return "", nil, fmt.Errorf("call_batch %s: %w", name, err)
	}
	inputs = make([][]byte, len(items))
	for i, it := range items {
		inputs[i] = it.Data
	}
	return name, inputs, nil
}

// BatchItem is one entry of a ResultBatch: a status and its bytes.
type BatchItem struct {
	Status byte
	Data   []byte
}

// ResultBatchPayload encodes a ResultBatch payload: u32 count, then per
// item u8 status, u32 length and the bytes.
func ResultBatchPayload(dst []byte, items []BatchItem) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(items)))
	for _, it := range items {
		dst = append(dst, it.Status)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(it.Data)))
		dst = append(dst, it.Data...)
	}
	return dst
}

// ParseResultBatch decodes a ResultBatch payload; the data aliases p.
func ParseResultBatch(p []byte) ([]BatchItem, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: result_batch payload of %d bytes", ErrMalformed, len(p))
	}
	return splitItems(p[4:], binary.BigEndian.Uint32(p), 1)
}

// splitItems reads count entries of (status byte if withStatus, u32 length,
// bytes) that must fill p exactly.
func splitItems(p []byte, count uint32, withStatus int) ([]BatchItem, error) {
	if count > MaxBatchItems {
		return nil, fmt.Errorf("%w: batch of %d items, over the limit of %d", ErrMalformed, count, MaxBatchItems)
	}
	if uint64(count)*uint64(4+withStatus) > uint64(len(p)) {
		return nil, fmt.Errorf("%w: batch announces %d items in %d bytes", ErrMalformed, count, len(p))
	}
	items := make([]BatchItem, count)
	for i := range items {
		if len(p) < 4+withStatus {
			return nil, fmt.Errorf("%w: batch truncated at item %d", ErrMalformed, i)
		}
		if withStatus == 1 {
			items[i].Status = p[0]
			if p[0] > ItemPanic {
				return nil, fmt.Errorf("%w: item %d has unknown status %d", ErrMalformed, i, p[0])
			}
			p = p[1:]
		}
		l := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(l) > uint64(len(p)) {
			return nil, fmt.Errorf("%w: batch item %d of %d bytes overruns the payload (%d left)", ErrMalformed, i, l, len(p))
		}
		items[i].Data = p[:l:l]
		p = p[l:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last of %d batch items", ErrMalformed, len(p), count)
	}
	return items, nil
}
