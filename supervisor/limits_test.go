package supervisor_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// hugeRSSBound is the documented bound on the host's memory under a source
// of 15 MiB items feeding a sink that never acknowledges, with the default
// queue_bytes (32 MiB) and recv_queue_bytes (32 MiB): 256 MiB (measured
// about 160 MiB), three times that under the race detector.
const hugeRSSBound = 256 << 10 * raceFactor // KiB

// 15 MiB items into a sink that never acks: every host buffer fills to its
// byte bound and then pushes back; the host's RSS stays under the bound.
func TestHugeItemsIntoStuckSinkStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a few hundred MiB")
	}
	exe, _ := os.Executable()
	ctx := ctxT(t, 90*time.Second)
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), modeEnv+"=host-huge", "PV_TEST_STATE="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("host: %v\n%s\n%s", err, out, stderr.String())
	}
	var rss, hwm, items, emitted int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "RSS %d HWM %d ITEMS %d EMITTED %d", &rss, &hwm, &items, &emitted); err != nil {
		t.Fatalf("host said %q: %v", out, err)
	}
	t.Logf("host VmRSS %d MiB, VmHWM %d MiB; %d items written to the sink, %d emitted", rss>>10, hwm>>10, items, emitted)
	if items < 2 {
		t.Fatalf("only %d items reached the sink: the test did not exercise the buffers", items)
	}
	if hwm > hugeRSSBound || hwm <= 0 {
		t.Fatalf("host peak RSS %d MiB over the %d MiB bound", hwm>>10, hugeRSSBound>>10)
	}
}
