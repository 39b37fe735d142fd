package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plugvisor/plugvisor/sdk"
)

// runner is how one generation executes: a child process (process.go,
// with the OS-specific parts in internal/proc), an in-process builtin, or
// a fake in tests. Modelled on go-plugin's runner.Runner and tableflip's
// process: start, signal, wait, pid.
type runner interface {
	start() error
	pid() int              // 0 when not a process
	terminate()            // ask it to end (SIGTERM to the group)
	kill()                 // end it now, with everything it started
	done() <-chan struct{} // closed once it ended and was reaped
	describe() string      // how it ended, valid after done
}

// runSpec is what a runner needs to start generation num of a plugin.
type runSpec struct {
	spec   Spec
	env    []string // the process environment (environ)
	sdkEnv sdk.Env  // the same for an in-process plugin
	tag    string   // the generation's tag (containment)
	out    lineSink
}

// newRunner picks the runner of a generation. Tests replace it through
// Supervisor.newRunner.
func defaultRunner(rs runSpec) runner {
	if rs.spec.InProc != nil {
		return &inproc{plug: *rs.spec.InProc, env: rs.sdkEnv}
	}
	return &process{path: rs.spec.Path, args: rs.spec.Args, env: rs.env, dir: rs.spec.Dir, tag: rs.tag, out: rs.out}
}

// stopRunner ends r: the caller already sent shutdown; wait grace, ask
// the group to terminate, wait grace, kill it, wait until reaped.
func stopRunner(r runner, grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.done():
		return
	case <-t.C:
	}
	r.terminate()
	t.Reset(grace)
	select {
	case <-r.done():
		return
	case <-t.C:
	}
	r.kill()
	<-r.done()
}

// inproc runs a builtin inside the host over inproc:// channels.
type inproc struct {
	plug   sdk.Plugin
	env    sdk.Env
	cancel context.CancelFunc
	end    chan struct{}
	err    error
}

func (r *inproc) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.end = cancel, make(chan struct{})
	go func() {
		defer close(r.end)
		if err := sdk.ServeEnv(ctx, r.plug, r.env); err != nil && !errors.Is(err, context.Canceled) {
			r.err = err
		}
	}()
	return nil
}

func (r *inproc) pid() int              { return 0 }
func (r *inproc) terminate()            { r.cancel() }
func (r *inproc) kill()                 { r.cancel() }
func (r *inproc) done() <-chan struct{} { return r.end }
func (r *inproc) describe() string {
	if r.err != nil {
		return fmt.Sprintf("in-process plugin ended: %v", r.err)
	}
	return "in-process plugin ended"
}
