package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// prober is the fake backend with health answers.
type prober struct {
	*fake
	live     error
	notReady []NotReady
}

func (p *prober) Live(ctx context.Context) error {
	if p.live == nil {
		return nil
	}
	<-ctx.Done() // a wedged loop: the probe's deadline answers
	return p.live
}

func (p *prober) Ready(context.Context) []NotReady { return p.notReady }

// /livez and /healthz say 503 when the backend's loops do not answer, and
// carry the build; /readyz says which plugin is not ready and why.
func TestProbes(t *testing.T) {
	b := &prober{fake: newFake()}
	h := NewServer(b, nil)
	for _, path := range []string{"/livez", "/healthz"} {
		code, body := do(t, h, "GET", path, "")
		if code != 200 || !strings.Contains(string(body), `"protocol"`) || !strings.Contains(string(body), `"go_version"`) {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	if code, body := do(t, h, "GET", "/readyz", ""); code != 200 || !strings.Contains(string(body), `"ready"`) {
		t.Fatalf("/readyz: %d %s", code, body)
	}

	b.notReady = []NotReady{{Kind: "plugin", Name: "geo", Reason: "failed: build failed"}}
	code, body := do(t, h, "GET", "/readyz", "")
	var rb struct {
		Status   string     `json:"status"`
		NotReady []NotReady `json:"not_ready"`
	}
	if code != 503 || json.Unmarshal(body, &rb) != nil || len(rb.NotReady) != 1 || rb.NotReady[0] != b.notReady[0] {
		t.Fatalf("/readyz with a failed plugin: %d %s", code, body)
	}

	b.live = errors.New("wedged")
	old := liveTimeout
	liveTimeout = 50 * time.Millisecond // the fake blocks until the deadline
	defer func() { liveTimeout = old }()
	for _, path := range []string{"/livez", "/healthz"} {
		if code, body := do(t, h, "GET", path, ""); code != 503 || !strings.Contains(string(body), "wedged") {
			t.Fatalf("%s with wedged loops: %d %s", path, code, body)
		}
	}
}
