package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// benchCmd measures a real plugin process through the supervisor: call
// round trip, pipelined calls, swap pause under load, and the host's
// memory. Run ../shared/anchors/ipcbench beside it for the baselines.
func benchCmd() *cobra.Command {
	var plugin string
	var calls, swaps int
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure calls and swaps against a real plugin process",
		Long: `bench builds a plugin (default ./examples/clicks, whose count function
returns IncrCounter of its input), starts it under a supervisor in a temp
dir and prints a table: call round trip p50/p99, pipelined calls/s with 64
in flight, swap pause p50/p99 under a steady call load, and the host's
memory; then pipelines (it builds examples/counter, transform and
filesink of the module the plugin is in): items/s for source → sink,
source → function → sink and source → 3 functions → sink into a
discarding sink, and the output stall of a pipeline whose function plugin
is swapped at full speed. Absolute numbers drift between machines and runs: compare them
with ipcbench run beside it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			return runBench(ctx, cmd.OutOrStdout(), plugin, calls, swaps, window)
		},
	}
	cmd.Flags().StringVar(&plugin, "plugin", "./examples/clicks", "Go plugin package with a count(string) function")
	cmd.Flags().IntVar(&calls, "calls", 20000, "sequential calls for the round trip")
	cmd.Flags().IntVar(&swaps, "swaps", 50, "swaps under load")
	cmd.Flags().DurationVar(&window, "window", 2*time.Second, "how long each pipeline row is measured")
	return cmd
}

func runBench(ctx context.Context, out io.Writer, plugin string, calls, swaps int, window time.Duration) error {
	dir, err := os.MkdirTemp("", "pvbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pkg, err := filepath.Abs(plugin)
	if err != nil {
		return err
	}
	res, err := compiler.Build(ctx, "bench", pkg, compiler.Options{BinDir: filepath.Join(dir, "bin")})
	if err != nil {
		return fmt.Errorf("build %s: %w", plugin, err)
	}
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: filepath.Join(dir, "st")}})
	if err != nil {
		return err
	}
	defer sup.Close(context.Background())
	p, err := sup.Add("bench", supervisor.Spec{Kind: "source", Driver: plugin, Path: res.Binary, Build: res.ID})
	if err != nil {
		return err
	}
	in := []byte(`"bench"`)
	for i := 0; i < 1000; i++ { // warm-up, and wait for the start
		if _, err := p.Call(ctx, "count", in); err != nil {
			return fmt.Errorf("call %s.count: %w", plugin, err)
		}
	}
	lat := make([]time.Duration, 0, calls)
	for i := 0; i < calls; i++ {
		t := time.Now()
		if _, err := p.Call(ctx, "count", in); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	const inflight = 64
	per := max(calls/inflight, 1)
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	t := time.Now()
	for g := 0; g < inflight; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := p.Call(ctx, "count", in); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(per*inflight) / time.Since(t).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	stop := make(chan struct{})
	loadDone := make(chan error, 1)
	go func() { // about 10k calls/s during the swaps
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				loadDone <- nil
				return
			case <-tick.C:
			}
			if _, err := p.Call(ctx, "count", in); err != nil {
				loadDone <- err
				return
			}
		}
	}()
	var pauses, totals []time.Duration
	for i := 0; i < swaps; i++ {
		rep, err := p.Reload(ctx, supervisor.ReloadOptions{})
		if err != nil {
			close(stop)
			<-loadDone
			return err
		}
		pauses = append(pauses, time.Duration(rep.PauseMS*float64(time.Millisecond)))
		totals = append(totals, time.Duration(rep.SwapMS*float64(time.Millisecond)))
	}
	close(stop)
	if err := <-loadDone; err != nil {
		return fmt.Errorf("a call during the swaps failed: %w", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(out, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(out, "| call round trip p50 / p99 | %s / %s |\n", pct(lat, 0.5), pct(lat, 0.99))
	fmt.Fprintf(out, "| pipelined calls, %d in flight | %.0f calls/s |\n", inflight, rate)
	fmt.Fprintf(out, "| swap pause p50 / p99 (%d swaps under load) | %s / %s |\n", swaps, pct(pauses, 0.5), pct(pauses, 0.99))
	fmt.Fprintf(out, "| whole swap p50 | %s |\n", pct(totals, 0.5))
	fmt.Fprintf(out, "| host heap in use / RSS | %.1f MiB / %s |\n", float64(ms.HeapInuse)/(1<<20), rss())
	return benchPipelines(ctx, out, dir, pkg, min(swaps, 20), window)
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)].Round(100 * time.Nanosecond)
}

// rss reads the process's resident set size from /proc.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.Atoi(f[0]); err == nil {
				return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
			}
		}
	}
	return "?"
}
