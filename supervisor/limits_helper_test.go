package supervisor_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
	"github.com/plugvisor/plugvisor/supervisor"
)

// hugeItem is the size of the items the huge source emits: 15 MiB.
const hugeItem = 15 << 20

// hugeEmitted counts the items huge emitted (the emitted function).
var hugeEmitted atomic.Int64

// huge emits 15 MiB items (a JSON string) as fast as the host takes them.
type huge struct{}

func (*huge) Configure(map[string]any) error { return nil }
func (*huge) Close(sdk.Context) error        { return nil }
func (*huge) Open(ctx sdk.Context, emit func(any) error) error {
	item := []byte(`"` + strings.Repeat("x", hugeItem-2) + `"`)
	for ctx.Err() == nil {
		if err := emit(item); err != nil {
			return err
		}
		hugeEmitted.Add(1)
	}
	return nil
}

// stuck is a sink that never collects anything, so never acknowledges.
type stuck struct{}

func (*stuck) Configure(map[string]any) error { return nil }
func (*stuck) Open(sdk.Context) error         { return nil }
func (*stuck) Close(sdk.Context) error        { return nil }
func (*stuck) Collect(ctx sdk.Context, _ any) error {
	<-ctx.Done()
	return ctx.Err()
}

// procStatus reads a field of /proc/self/status in KiB.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb
		}
	}
	return -1
}

// runHostHuge is a host with the default options that pipes the huge
// source into the stuck sink until the sink's window is full and stays
// full, then reports its memory: "RSS <VmRSS kB> HWM <VmHWM kB> ITEMS <n>".
func runHostHuge() int {
	// Default buffer sizes; short deadlines only so that stopping the stuck
	// sink at the end does not take long.
	var o supervisor.Options
	o.StateDir = os.Getenv("PV_TEST_STATE")
	o.DrainTimeout.Duration, o.SnapshotTimeout.Duration, o.StopGrace.Duration = 200*time.Millisecond, time.Second, 200*time.Millisecond
	sup, err := supervisor.New(o)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sup.Close(ctx)
	}()
	p, _ := sup.Add("big", helperSpec("plugin"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := p.Subscribe(ctx, "huge", "h", 0)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	w, err := p.OpenSink(ctx, "stuck", "s", 0)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	items := 0
	for {
		var it supervisor.Item
		select {
		case it = <-sub.C():
		case <-ctx.Done():
			fmt.Println("ERR source stalled before the sink filled:", ctx.Err())
			return 1
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		err := w.Write(wctx, it.Data)
		wcancel()
		if err != nil {
			break // the sink is full and stays full: every buffer is at its bound
		}
		items++
	}
	// The source's reader fills the subscription queue and the transport
	// behind the stalled consumer until the plugin's emit blocks: wait until
	// its count of emitted items stops moving.
	last := int64(-1)
	for {
		out, err := p.Call(ctx, "emitted", nil)
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		var n int64
		fmt.Sscan(string(out), &n)
		if n == last {
			break
		}
		last = n
		select {
		case <-time.After(time.Second): // a measurement interval, not synchronisation
		case <-ctx.Done():
			fmt.Println("ERR the source never stalled:", ctx.Err())
			return 1
		}
	}
	fmt.Println("RSS", procStatus("VmRSS"), "HWM", procStatus("VmHWM"), "ITEMS", items, "EMITTED", last)
	return 0
}
