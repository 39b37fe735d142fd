package sdk

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/transport"
)

// On SIGTERM an external instance serves on and, if the daemon's welcome
// lists the feature "leaving", sends one leaving frame (id 0, empty) —
// never to a daemon that did not list it, which would drop it for an
// unknown frame (docs/protocol.md §5).
func TestExternalInstanceSaysLeavingOnlyIfWelcomed(t *testing.T) {
	h := newRemoteHost(t)
	for _, features := range [][]string{nil, {"other", transport.FeatureLeaving}} {
		log := newLines()
		env := remoteEnv(t, h.env(t, "geo"), log)
		term := make(chan os.Signal, 1)
		env.term = term
		done := serveEnvAsync(context.Background(), env)
		i := h.accept(t)
		call := i.welcomeWith(h, transport.WelcomeMsg{Plugin: "geo", Generation: 1, Features: features})
		term <- syscall.SIGTERM
		log.wait(t, 1, "SIGTERM: serving on")
		if features != nil {
			if f := i.next(transport.Leaving); f.ID != 0 || len(f.Payload) != 0 {
				t.Fatalf("leaving frame %+v, want id 0 and no payload", f)
			}
		}
		call(2) // it serves on
		i.send(i.ctl, transport.Frame{Type: transport.Ping, ID: 9})
		if f := i.next(transport.Pong); f.ID != 9 {
			t.Fatalf("pong %+v", f)
		}
		i.send(i.ctl, transport.Frame{Type: transport.Shutdown})
		if err := waitServe(t, done); err != nil {
			t.Fatalf("features %q: ServeEnv = %v, want nil after shutdown", features, err)
		}
		// Whatever else it sent before closing: no (second) leaving frame.
		select {
		case <-i.ctl.Lost():
		case <-time.After(waitFor):
			t.Fatal("the control connection did not end after shutdown")
		}
		for len(i.frames) > 0 {
			if f := <-i.frames; f.Type == transport.Leaving {
				t.Fatalf("features %q: a leaving frame after the pong", features)
			}
		}
	}
}

// remoteEnv is the Env of an external instance with environment env.
func remoteEnv(t *testing.T, env map[string]string, log *lines) Env {
	t.Helper()
	r, err := transport.RemoteFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	reload := func() (*transport.Remote, error) {
		return transport.RemoteFromEnv(func(k string) string { return env[k] })
	}
	return Env{Remote: r, log: log, reload: reload}
}

func serveEnvAsync(ctx context.Context, env Env) chan error {
	done := make(chan error, 1)
	go func() { done <- ServeEnv(ctx, geoPlugin, env) }()
	return done
}
