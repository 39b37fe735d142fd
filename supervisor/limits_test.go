package supervisor_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
	"github.com/plugvisor/plugvisor/transport"
)

// A result over max_frame fails that call only: the error names the limit
// and how to raise it, and the same process answers the next call.
func TestOversizeResultFailsOnlyThatCall(t *testing.T) {
	sup := newSup(t) // max_frame 256 KiB
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	pid := p.Status().PID
	_, err := p.Call(ctxT(t, 10*time.Second), "big", []byte(strconv.Itoa(300<<10)))
	var ce *supervisor.CallError
	if !errors.As(err, &ce) || ce.Panic || !strings.Contains(ce.Msg, "limit of 262144 bytes") || !strings.Contains(ce.Msg, "raise max_frame") {
		t.Fatalf("oversize result: want a CallError naming the limit, got %v", err)
	}
	if got := call(t, p, "count", `"k"`); got != "2" {
		t.Fatalf("count after the oversize result = %s, want 2 (state kept)", got)
	}
	if st := p.Status(); st.PID != pid || st.Restarts != 0 {
		t.Fatalf("plugin restarted: pid %d → %d, restarts %d", pid, st.PID, st.Restarts)
	}
}

// An input over max_frame is refused before it is sent, with an error the
// API can match (transport.ErrTooLarge) to answer 413; the plugin is untouched.
func TestOversizeInputIsTyped(t *testing.T) {
	sup := newSup(t)
	p, _ := sup.Add("clicks", helperSpec("plugin"))
	call(t, p, "count", `"k"`)
	pid := p.Status().PID
	in := []byte(`"` + strings.Repeat("x", 256<<10) + `"`)
	_, err := p.Call(ctxT(t, 10*time.Second), "echo", in)
	if !errors.Is(err, transport.ErrTooLarge) || !strings.Contains(err.Error(), "max_frame") {
		t.Fatalf("oversize input: want transport.ErrTooLarge naming max_frame, got %v", err)
	}
	if got := call(t, p, "count", `"k"`); got != "2" || p.Status().PID != pid {
		t.Fatalf("after the oversize input: count = %s, pid %d → %d", got, pid, p.Status().PID)
	}
}
