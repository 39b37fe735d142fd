package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/plugvisor/plugvisor/compiler"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/supervisor"
)

// benchPipelines adds the pipeline rows to bench: items/s for source →
// sink, source → function → sink and source → 3 functions → sink (the
// counter example with interval 0s, transform.double, a discarding
// sink), and the pause a pipeline sees while its function plugin is
// swapped at full speed.
func benchPipelines(ctx context.Context, out io.Writer, dir, pluginPkg string, swaps int, window time.Duration) error {
	root, err := moduleRoot(pluginPkg)
	if err != nil {
		return err
	}
	sup, err := supervisor.New(supervisor.Options{Supervisor: config.Supervisor{StateDir: filepath.Join(dir, "pst")}})
	if err != nil {
		return err
	}
	defer sup.Close(context.Background())
	for name, cfg := range map[string]map[string]any{
		"counter": {"interval": "0s"}, "transform": {}, "filesink": {},
	} {
		pkg := filepath.Join(root, "examples", name)
		res, err := compiler.Build(ctx, name, pkg, compiler.Options{BinDir: filepath.Join(dir, "bin")})
		if err != nil {
			return fmt.Errorf("build %s for the pipeline rows: %w", pkg, err)
		}
		if _, err := sup.Add(name, supervisor.Spec{Kind: "source", Driver: pkg, Path: res.Binary, Build: res.ID, Config: cfg}); err != nil {
			return err
		}
	}
	src := supervisor.Ref{Plugin: "counter", Symbol: "ticks"}
	fn := supervisor.Ref{Plugin: "transform", Symbol: "double"}
	sink := supervisor.Ref{Plugin: "filesink", Symbol: "discard"}
	rates := make([]float64, 3)
	for i, fns := range [][]supervisor.Ref{nil, {fn}, {fn, fn, fn}} {
		pl := supervisor.Pipeline{Name: fmt.Sprintf("bench%d", i), Source: src, Functions: fns, Sink: sink}
		if rates[i], err = pipelineRate(ctx, sup, pl, window); err != nil {
			return err
		}
	}
	p99, pause99, err := pipelineSwapPause(ctx, sup, supervisor.Pipeline{Name: "benchswap", Source: src,
		Functions: []supervisor.Ref{fn}, Sink: sink}, swaps)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "| pipeline source → sink | %.0f items/s |\n", rates[0])
	fmt.Fprintf(out, "| pipeline source → function → sink | %.0f items/s (%.2f× of without) |\n", rates[1], rates[1]/rates[0])
	fmt.Fprintf(out, "| pipeline source → 3 functions → sink | %.0f items/s (%.2f× of one function; +%.0f%% cost per added stage) |\n",
		rates[2], rates[2]/rates[1], 100*((rates[1]/rates[2])-1)/2)
	fmt.Fprintf(out, "| pipeline output stall p99 while its function is swapped (%d swaps at full speed) | %s (the swaps' own pause p99: %s) |\n", swaps, p99, pause99)
	return nil
}

// pipelineRate runs pl, lets it warm up and returns its items/s.
func pipelineRate(ctx context.Context, sup *supervisor.Supervisor, pl supervisor.Pipeline, window time.Duration) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sup.RunPipeline(ctx, pl) }()
	stop := func() error { cancel(); return <-done }
	outNow := func() uint64 { st, _ := sup.PipelineStatus(pl.Name); return st.Out }
	deadline := time.Now().Add(30 * time.Second)
	for outNow() < 10000 { // warm-up, and wait for the plugins to start
		if time.Now().After(deadline) {
			_ = stop()
			return 0, fmt.Errorf("pipeline %s moved nothing in 30s", pl.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n0, t0 := outNow(), time.Now()
	time.Sleep(window)
	rate := float64(outNow()-n0) / time.Since(t0).Seconds()
	if err := stop(); err != nil {
		return 0, err
	}
	return rate, nil
}

// pipelineSwapPause swaps pl's function plugin swaps times while pl runs
// flat out and returns the p99 of the longest stall of the pipeline's
// output during each swap (from the start of the new process to the
// output moving again after the swap), and the p99 of the swaps' reported
// pause (handles paused: drain, snapshot, restore, open).
func pipelineSwapPause(ctx context.Context, sup *supervisor.Supervisor, pl supervisor.Pipeline, swaps int) (stall, pause time.Duration, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sup.RunPipeline(ctx, pl) }()
	outNow := func() uint64 { st, _ := sup.PipelineStatus(pl.Name); return st.Out }
	for outNow() < 10000 {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, err := sup.Plugin(pl.Functions[0].Plugin)
	if err != nil {
		return 0, 0, err
	}
	var stalls, pauses []time.Duration
	for i := 0; i < swaps; i++ {
		var longest atomic.Int64
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() { // watch the output: the longest time it did not move
			defer close(watched)
			last, since := outNow(), time.Now()
			for {
				select {
				case <-stop:
					return
				default:
				}
				time.Sleep(50 * time.Microsecond)
				if n := outNow(); n != last {
					if d := time.Since(since); int64(d) > longest.Load() {
						longest.Store(int64(d))
					}
					last, since = n, time.Now()
				}
			}
		}()
		rep, err := p.Reload(ctx, supervisor.ReloadOptions{})
		// Let the output move again after the swap, so a stall that ends
		// after the reload returns is measured whole.
		for n := outNow(); outNow() == n && ctx.Err() == nil; {
			time.Sleep(50 * time.Microsecond)
		}
		close(stop)
		<-watched
		if err != nil {
			return 0, 0, err
		}
		stalls = append(stalls, time.Duration(longest.Load()))
		pauses = append(pauses, time.Duration(rep.PauseMS*float64(time.Millisecond)))
	}
	cancel()
	if err := <-done; err != nil {
		return 0, 0, err
	}
	return pct(stalls, 0.99), pct(pauses, 0.99), nil
}

// moduleRoot is the folder of the go.mod above dir: the examples the
// pipeline rows build are in the module the benchmarked plugin is in.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: the pipeline rows build the module's examples", dir)
		}
	}
}
