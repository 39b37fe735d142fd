//go:build unix

package main

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugvisor/plugvisor/config"
	"github.com/plugvisor/plugvisor/host"
)

// The first SIGTERM ends the run group cleanly; a second one, or the clean
// stop outlasting its bound, exits at once with status 1.
func TestSignalsForceExit(t *testing.T) {
	cfg, err := config.Parse([]byte("[supervisor]\nstate_dir = \""+filepath.Join(t.TempDir(), "s")+"\"\n"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.New(cfg, host.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Supervisor().Close(context.Background())
	exits := make(chan int, 2)
	old := forceExit
	forceExit = func(code int) { exits <- code }
	defer func() { forceExit = old }()
	log := zerolog.Nop()

	run := func(bound time.Duration, second bool) (time.Duration, int) {
		execute, _ := signals(h, &log, bound)
		done := make(chan error, 1)
		go func() { done <- execute() }()
		// Signals reach execute once it is registered, which signals() did.
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.As(err, new(errSignal)) {
				t.Fatalf("execute: %v, want the signal", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("SIGTERM did not end the actor")
		}
		start := time.Now()
		if second {
			if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case code := <-exits:
			return time.Since(start), code
		case <-time.After(10 * time.Second):
			t.Fatal("no forced exit")
		}
		return 0, 0
	}
	if took, code := run(time.Hour, true); code != 1 || took > 5*time.Second {
		t.Fatalf("second signal: exit %d after %v, want 1 at once", code, took)
	}
	if took, code := run(100*time.Millisecond, false); code != 1 || took < 50*time.Millisecond {
		t.Fatalf("bound: exit %d after %v, want 1 after the 100ms bound", code, took)
	}
}
