package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/plugvisor/plugvisor/internal/backoff"
	"github.com/plugvisor/plugvisor/transport"
)

// An external instance is a plugin started outside plugvisor (its own
// container, another machine) that connects out to the daemon's TLS
// listener: PLUGVISOR_CONNECT and the PLUGVISOR_TLS_* files in its
// environment. It serves like a child process would, but a lost daemon is
// not the end: it reconnects with backoff until the daemon retires it
// (shutdown) or refuses it.

// Reconnect backoff of an external instance, ±20% jitter.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// hostLost marks errors after which an external instance reconnects: the
// daemon could not be reached, or went away without retiring it.
type hostLost struct{ error }

func (e hostLost) Unwrap() error { return e.error }

func lost(err error) error { return hostLost{err} }

// remoteFromOS reads an external instance's environment. ok is false when
// PLUGVISOR_CONNECT is not set; a broken environment is an error naming
// the variable.
func remoteFromOS() (env Env, ok bool, err error) {
	r, err := transport.RemoteFromEnv(os.Getenv)
	if err != nil || r == nil {
		return env, false, err
	}
	env.Remote = r
	env.reload = func() (*transport.Remote, error) { return transport.RemoteFromEnv(os.Getenv) }
	env.MaxFrame, _ = strconv.Atoi(os.Getenv(transport.EnvMaxFrame))
	return env, true, nil
}

// connect dials a channel of the host: through the TLS listener for an
// external instance, directly otherwise.
func (s *server) connect(addr string) (*transport.Conn, error) {
	o := transport.Options{MaxFrame: s.env.MaxFrame}
	if s.env.Remote != nil {
		return s.env.Remote.Dial(addr, o)
	}
	return transport.Dial(addr, o)
}

// serveRemote runs an external instance: connect, hello, serve; again
// after a backoff whenever the connection is lost or refused at the TLS
// level, one line on stderr each time. It returns nil when the daemon
// shuts the instance down and an error when it refuses it (or on any
// other fatal error).
func serveRemote(ctx context.Context, p Plugin, env Env) error {
	logw := env.log
	if logw == nil {
		logw = os.Stderr
	}
	leave := make(chan struct{})
	if env.term != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-env.term:
				fmt.Fprintf(logw, "plugin %s: SIGTERM: serving on until plugvisor retires this instance or the connection ends\n", p.Name)
				close(leave)
			case <-stop:
			}
		}()
	}
	b := backoff.Backoff{Min: reconnectMin, Max: reconnectMax}
	var reloadErr string
	for attempt := 0; ; attempt++ {
		if attempt > 0 && env.reload != nil {
			// Certificates may have been rotated since the last attempt.
			r, err := env.reload()
			switch {
			case err != nil && err.Error() != reloadErr:
				reloadErr = err.Error()
				fmt.Fprintf(logw, "plugin %s: keeping the previous TLS files: %v\n", p.Name, err)
			case err == nil && r != nil:
				env.Remote, reloadErr = r, ""
			}
		}
		s, err := newServer(p, env)
		if err != nil {
			return err
		}
		s.leave = leave
		err = s.run(ctx)
		if err == nil || ctx.Err() != nil || !errors.As(err, new(hostLost)) {
			return err
		}
		select {
		case <-leave:
			fmt.Fprintf(logw, "plugin %s: %v; exiting (SIGTERM)\n", p.Name, err)
			return nil
		default:
		}
		if s.welcomed {
			b.Reset() // it served: the next failure starts from the shortest wait
		}
		d := jitter(b.Next())
		fmt.Fprintf(logw, "plugin %s: %v; reconnecting to %s in %s\n", p.Name, err, env.Remote.Connect, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-leave:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// leavingOn is what the serving loop watches to say leaving: the SIGTERM
// of an external instance, if the daemon's welcome lists the feature (an
// older daemon drops a plugin that sends a frame it does not know).
func (s *server) leavingOn(w *transport.WelcomeMsg) <-chan struct{} {
	if s.leave == nil || !w.HasFeature(transport.FeatureLeaving) {
		return nil
	}
	return s.leave
}

// sayLeaving tells the daemon this instance got SIGTERM, so a rolling
// update's next instance takes over from this one first. A failed send
// is left to the connection's loss, which ends the session anyway.
func (s *server) sayLeaving() {
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	defer cancel()
	_ = s.ctl.Send(ctx, transport.Frame{Type: transport.Leaving})
}

// lastWordsGrace bounds the wait for frames the daemon sent just before
// the connection dropped.
const lastWordsGrace = 2 * time.Second

// lastWords lets an external instance whose connection just dropped read
// what the daemon sent before it: a shutdown followed at once by the
// drop is a shutdown, not a lost daemon to reconnect to. Those frames are
// already queued when the loss is noticed, so the wait is short unless
// there are none.
func (s *server) lastWords() (ok bool, err error) {
	if s.env.Remote == nil {
		return false, nil
	}
	t := time.NewTimer(lastWordsGrace)
	defer t.Stop()
	select {
	case err := <-s.fatal:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// notifyTerm catches SIGTERM for an external instance. An orchestrator
// sends it to the old instance of a rolling update as soon as the new one
// runs, while plugvisor may still be handing the old one's work and state
// over: dying then would lose what it holds since the last checkpoint. So
// the instance serves on until plugvisor retires it (shutdown, exit 0) or
// its connection ends; the orchestrator's grace period (SIGKILL) bounds
// the wait.
func notifyTerm() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	return ch
}

// jitter spreads d by ±20%, so instances that lost the daemon together do
// not all come back in the same instant.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
