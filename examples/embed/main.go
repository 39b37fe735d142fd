// Command embed is a small Go host that embeds plugvisor: it runs the
// clicks example plugin and calls its count function every few
// milliseconds through a typed handle — while you edit the plugin and it is
// swapped underneath — printing each result.
//
//	go run ./examples/embed                 # config built in code, no TOML, no API
//	go run ./examples/embed -c config.toml  # or the plugins of a config file
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/plugvisor/plugvisor/builtin"
	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
)

func main() {
	cfgPath := flag.String("c", "", "config file (default: a config built in code running ./examples/clicks)")
	who := flag.String("key", "embed", "the key clicks.count counts")
	every := flag.Duration("every", 200*time.Millisecond, "call interval")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadOrBuild(*cfgPath)
	if err == nil {
		err = run(ctx, cfg, *who, *every, -1, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// loadOrBuild loads the config file at path, or with path "" builds one in
// Go: the clicks example from source, state in .plugvisor, no HTTP API.
func loadOrBuild(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path, builtin.Sources())
	}
	_, file, _, _ := runtime.Caller(0)
	examples := filepath.Dir(filepath.Dir(file))
	cfg := config.New(filepath.Dir(examples))
	cfg.Supervisor.API = ""
	if _, err := cfg.AddPlugin("clicks", filepath.Join(examples, "clicks"), nil, builtin.Sources()); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// run hosts the plugins of cfg and calls clicks.count(key) n times (n < 0:
// until ctx ends), printing one line per result.
func run(ctx context.Context, cfg *config.Config, key string, every time.Duration, n int, out io.Writer) error {
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
	// A typed handle: string in, int64 out, checked against the schema
	// clicks announces; it stays valid across swaps and restarts.
	count := host.Func[string, int64](h, "clicks.count")
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; n < 0 || i < n; i++ {
		// Call waits while the plugin starts, restarts or swaps.
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		res, err := count.Call(cctx, key)
		ccancel()
		var ce *host.CallError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, host.ErrUnknownPlugin), errors.Is(err, host.ErrUnknownSymbol), errors.Is(err, host.ErrSchemaMismatch):
			return err // the config or the plugin does not offer what this host needs
		case errors.As(err, &ce):
			fmt.Fprintf(out, "clicks.count refused: %v\n", ce)
		case errors.Is(err, host.ErrCrashed):
			fmt.Fprintf(out, "clicks crashed during the call (it restarts): %v\n", err)
		case err != nil:
			fmt.Fprintf(out, "error: %v\n", err)
		default:
			st, _ := h.Status("clicks")
			fmt.Fprintf(out, "clicks.count gen %d: %d\n", st.Generation, res)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}
