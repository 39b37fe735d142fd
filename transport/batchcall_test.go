package transport

import (
	"bytes"
	"errors"
	"testing"
)

func TestCallBatchPayloads(t *testing.T) {
	in := [][]byte{[]byte("1"), {}, []byte(`"x"`)}
	p := CallBatchPayload(nil, "double", in)
	if len(p) != CallBatchSize("double", in) {
		t.Fatalf("CallBatchSize = %d, encoded %d", CallBatchSize("double", in), len(p))
	}
	name, got, err := ParseCallBatch(p)
	if err != nil || name != "double" || len(got) != 3 || !bytes.Equal(got[2], in[2]) || len(got[1]) != 0 {
		t.Fatalf("ParseCallBatch = %q %q %v", name, got, err)
	}
	items := []BatchItem{{ItemOK, []byte("2")}, {ItemError, []byte("bad")}, {ItemPanic, nil}}
	back, err := ParseResultBatch(ResultBatchPayload(nil, items))
	if err != nil || len(back) != 3 || back[1].Status != ItemError || string(back[1].Data) != "bad" || back[2].Status != ItemPanic {
		t.Fatalf("ParseResultBatch = %+v %v", back, err)
	}
	// A hostile peer: truncated, trailing bytes, a huge count, a bad status.
	for _, bad := range [][]byte{p[:len(p)-1], append(bytes.Clone(p), 'x'), p[:9], {0}} {
		if _, _, err := ParseCallBatch(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCallBatch(%q) = %v, want malformed", bad, err)
		}
	}
	for _, bad := range [][]byte{{0xff, 0xff, 0xff, 0xff}, ResultBatchPayload(nil, []BatchItem{{Status: 9}}), {0, 0, 0, 1, 0, 0, 0, 0, 5}} {
		if _, err := ParseResultBatch(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseResultBatch(%q) = %v, want malformed", bad, err)
		}
	}
}
