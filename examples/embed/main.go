// Command embed is a small Go host that embeds plugvisor: it loads a
// config, calls a plugin function every few milliseconds and prints the
// results — while you edit the plugin and it is swapped underneath.
//
//	go run ./examples/embed -c config.toml -call clicks.count -input '"embed"'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
)

func main() {
	cfgPath := flag.String("c", "config.toml", "config file")
	target := flag.String("call", "clicks.count", "PLUGIN.FUNCTION to call")
	input := flag.String("input", `"embed"`, "JSON input")
	every := flag.Duration("every", 200*time.Millisecond, "call interval")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *target, *input, *every, -1, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// run hosts the plugins of cfgPath and calls target n times (n < 0: until
// ctx ends), printing one line per result.
func run(ctx context.Context, cfgPath, target, input string, every time.Duration, n int, out io.Writer) error {
	cfg, err := config.Load(cfgPath, builtin.Sources())
	if err != nil {
		return err
	}
	plugin, fn, ok := strings.Cut(target, ".")
	if !ok {
		return fmt.Errorf("-call %q: want PLUGIN.FUNCTION", target)
	}
	h, err := host.New(cfg, host.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select { // the first build of each plugin
	case <-h.Started():
	case <-ctx.Done():
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; n < 0 || i < n; i++ {
		// Call waits while the plugin restarts or swaps.
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		res, err := h.Call(cctx, plugin, fn, []byte(input))
		ccancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
		} else {
			st, _ := h.Status(plugin)
			fmt.Fprintf(out, "%s gen %d: %s\n", target, st.Generation, res)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}
