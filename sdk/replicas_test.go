package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// With replicas > 1, a function's state write is refused, and the call
// fails with the replicated_state code even when the function ignores the
// error; reads pass; with one replica the same function writes.
func TestReplicatedFunctionStateWrite(t *testing.T) {
	plug := Plugin{Name: "rep", Version: "1", Functions: map[string]any{
		"sneaky": func(ctx context.Context, key string) (string, error) {
			_ = StateOf(ctx).PutState(key, 1) // error ignored: the call must fail anyway
			return "ok", nil
		},
		"peek": func(ctx context.Context, key string) (bool, error) {
			return StateOf(ctx).GetState(key, new(int))
		},
	}}
	for _, c := range []struct {
		replicas int
		fn       string
		code     string // "" = the call succeeds
	}{
		{3, "sneaky", transport.CodeReplicatedState},
		{3, "peek", ""},
		{1, "sneaky", ""},
		{0, "sneaky", ""},
	} {
		s, err := newServer(plug, Env{})
		if err != nil {
			t.Fatal(err)
		}
		s.replicas, s.ctx = c.replicas, context.Background()
		host, err := transport.Listen("inproc://replicas-test", transport.Options{})
		if err != nil {
			t.Fatal(err)
		}
		peer, err := transport.Dial(host.Addr(), transport.Options{})
		if err != nil {
			t.Fatal(err)
		}
		go s.call(peer, s.funcs[c.fn], 9, []byte(`"k"`))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var got transport.Frame
		recv := make(chan error, 1)
		go func() {
			recv <- host.Recv(func(f transport.Frame) error { got = f; return errStop })
		}()
		select {
		case err := <-recv:
			if !errors.Is(err, errStop) {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("no answer")
		}
		cancel()
		peer.Close()
		host.Close()
		var m transport.ErrorMsg
		if got.Type == transport.Fail {
			_ = transport.Decode(got, &m)
		}
		if m.Code != c.code {
			t.Errorf("replicas %d, %s: answer %s %+v, want code %q", c.replicas, c.fn, got.Type, m, c.code)
		}
		if c.code != "" && (!strings.Contains(m.Error, "replicas = 3") || !strings.Contains(m.Error, `state "k"`)) {
			t.Errorf("error %q names neither replicas nor the state key", m.Error)
		}
	}
}

var errStop = errors.New("got one")
