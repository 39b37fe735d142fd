package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/api"
	"github.com/plugvisor/plugvisor/host"
)

// Live and Ready make the daemon's backend an api.Prober (/livez, /readyz).
func (b backend) Live(ctx context.Context) error { return b.Host.Live(ctx) }

func (b backend) Ready(context.Context) []api.NotReady {
	not := b.Host.Ready()
	out := make([]api.NotReady, len(not))
	for i, n := range not {
		out[i] = api.NotReady(n)
	}
	return out
}

// forceExit ends the process when a clean stop is abandoned.
var forceExit = os.Exit

// signals is the daemon's signal actor. SIGHUP re-reads the config. The
// first SIGINT or SIGTERM returns (the run group then stops the API,
// pipelines and plugins, each plugin checkpointed); from then on a second
// signal, or the clean stop taking longer than bound, exits at once with
// status 1 (plugins are process-group children with a parent-death signal,
// so they follow).
func signals(h *host.Host, log *zerolog.Logger, bound time.Duration) (execute func() error, interrupt func(error)) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	execute = func() error {
		for {
			select {
			case <-ctx.Done():
				signal.Stop(sigs)
				return ctx.Err()
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					log.Info().Msg("SIGHUP: re-reading the config")
					h.ReloadConfig()
					continue
				}
				if err := sdNotify("STOPPING=1"); err != nil {
					log.Warn().Err(err).Msg("systemd notify")
				}
				log.Info().Str("signal", sig.String()).Dur("bound", bound).Msg("stopping: draining pipelines, checkpointing and stopping plugins (a second signal forces)")
				go func() {
					t := time.NewTimer(bound)
					defer t.Stop()
					select {
					case sig := <-sigs:
						log.Error().Str("signal", sig.String()).Msg("second signal: exiting without a clean stop")
					case <-t.C:
						log.Error().Dur("shutdown_timeout", bound).Msg("clean stop took longer than shutdown_timeout: exiting without it")
					}
					signal.Stop(sigs)
					forceExit(1)
				}()
				return errSignal{sig}
			}
		}
	}
	return execute, func(error) { cancel() }
}

// errSignal ends the run group on a stop signal.
type errSignal struct{ sig os.Signal }

func (e errSignal) Error() string { return "received signal " + e.sig.String() }

// notifyReady tells systemd READY=1 once every plugin has had its first
// start and those /readyz waits for serve, or, failing that, after the
// start timeout (a failed plugin must not keep the unit "activating"
// forever: STATUS= names it). It then sends WATCHDOG=1 every half
// $WATCHDOG_USEC while the host's loops answer (the liveness check).
func notifyReady(ctx context.Context, h *host.Host, log *zerolog.Logger, startTimeout time.Duration) error {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		<-ctx.Done()
		return nil
	}
	select {
	case <-h.Started():
	case <-ctx.Done():
		return nil
	}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	status := "STATUS=serving"
wait:
	for {
		not := h.Ready()
		if len(not) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			var parts []string
			for _, n := range not {
				parts = append(parts, fmt.Sprintf("%s %s: %s", n.Kind, n.Name, n.Reason))
			}
			status = "STATUS=degraded: " + strings.Join(parts, "; ")
			break wait
		case <-tick.C:
		}
	}
	if err := sdNotify("READY=1\n" + status); err != nil {
		log.Warn().Err(err).Msg("systemd notify")
	}
	every := watchdogInterval()
	if every <= 0 {
		<-ctx.Done()
		return nil
	}
	wd := time.NewTicker(every)
	defer wd.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wd.C:
			lctx, cancel := context.WithTimeout(ctx, every)
			err := h.Live(lctx)
			cancel()
			if err != nil {
				if !errors.Is(ctx.Err(), context.Canceled) {
					log.Error().Err(err).Msg("liveness check failed: no watchdog ping (systemd restarts the daemon if it persists)")
				}
				continue
			}
			if err := sdNotify("WATCHDOG=1"); err != nil {
				log.Warn().Err(err).Msg("systemd watchdog")
			}
		}
	}
}
