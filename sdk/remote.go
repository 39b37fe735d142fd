package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
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
	b := backoff.Backoff{Min: reconnectMin, Max: reconnectMax}
	for {
		s, err := newServer(p, env)
		if err != nil {
			return err
		}
		err = s.run(ctx)
		if err == nil || ctx.Err() != nil || !errors.As(err, new(hostLost)) {
			return err
		}
		if s.welcomed {
			b.Reset() // it served: the next failure starts from the shortest wait
		}
		d := jitter(b.Next())
		fmt.Fprintf(logw, "plugin %s: %v; reconnecting to %s in %s\n", p.Name, err, env.Remote.Connect, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// jitter spreads d by ±20%, so instances that lost the daemon together do
// not all come back in the same instant.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
