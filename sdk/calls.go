package sdk

// The plugin side of function calls: the call channel, one goroutine per
// call, panics turned into failures, results over the frame limit refused.

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/plugvisor/plugvisor/transport"
)

// serveCalls reads the call channel; each call runs on its own goroutine.
// (Running the last call of a message inline, with a successor goroutine
// reading on, measured slower: the successor's wake-up costs more than it saves.)
func (s *server) serveCalls(c *transport.Conn) {
	for {
		err := c.Recv(func(f transport.Frame) error {
			switch f.Type {
			case transport.Call:
				go s.dispatch(c, f)
			case transport.CallBatch:
				go s.dispatchBatch(c, f)
			default:
				return fmt.Errorf("%w: unexpected %s frame on the call channel", transport.ErrMalformed, f.Type)
			}
			return nil
		})
		if err != nil {
			if !errors.Is(err, transport.ErrClosed) {
				s.fail(fmt.Errorf("call channel: %w", err))
			}
			return
		}
	}
}

// dispatch runs one call frame.
func (s *server) dispatch(c *transport.Conn, f transport.Frame) {
	name, input, err := transport.ParseCall(f.Payload)
	if err != nil {
		s.fail(err)
		return
	}
	fn, ok := s.funcs[name]
	if !ok {
		err := fmt.Errorf("no function %q in plugin %s (it has: %s)", name, s.p.Name, strings.Join(s.man.Functions, ", "))
		if err := c.Send(s.ctx, failFrame(f.ID, err, false)); err != nil && !errors.Is(err, transport.ErrClosed) {
			s.fail(err)
		}
		return
	}
	s.call(c, fn, f.ID, input)
}

// functionScope is the state scope every function of a plugin shares:
// functions are handlers over the plugin's state (count and get of the
// same counter), unlike source and sink instances, which own theirs.
const functionScope = "functions"

func failFrame(id uint64, err error, panicked bool) transport.Frame {
	return transport.Frame{Type: transport.Fail, ID: id, Payload: transport.JSON(transport.ErrorMsg{Error: err.Error(), Panic: panicked})}
}

func (s *server) call(c *transport.Conn, fn *function, id uint64, input []byte) {
	st, rs := s.functionState(fn.name)
	ctx := &symCtx{Context: s.ctx, state: st, log: fn.logger(s), config: s.config}
	out, err, panicked := protect(func() ([]byte, error) { return fn.call(ctx, input) })
	f := transport.Frame{Type: transport.Result, ID: id, Payload: out}
	if err != nil {
		f = failFrame(id, err, panicked)
	}
	if werr := rs.refused(); werr != nil && !panicked {
		f = replicatedFail(id, werr)
	}
	serr := c.Send(s.ctx, f)
	if errors.Is(serr, transport.ErrTooLarge) {
		// Only this call is wrong: answer it with an error naming the limit
		// and keep serving (a failed Send queued nothing).
		serr = c.Send(s.ctx, failFrame(id, tooLarge(fn.name, serr), false))
	}
	if serr != nil && !errors.Is(serr, transport.ErrClosed) {
		s.fail(fmt.Errorf("function %s: %w", fn.name, serr))
	}
	if panicked {
		// A panic may have left state half-written: end this process so the
		// host restarts it from the last checkpoint. The stack first, the
		// message last: the host quotes the last lines.
		fmt.Fprintln(os.Stderr, err)
		s.fail(fmt.Errorf("function %s: %s", fn.name, strings.SplitN(err.Error(), "\n", 2)[0]))
	}
}

// tooLarge phrases a result over the frame limit for the caller.
func tooLarge(fn string, err error) error {
	return fmt.Errorf("function %s: answer not sent: %w — return less, or raise max_frame in the host's [supervisor] config", fn, err)
}

// protect runs f, turning a panic into an error that names it.
func protect(f func() ([]byte, error)) (out []byte, err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			stack := strings.Split(string(debug.Stack()), "\n")
			if len(stack) > 12 {
				stack = stack[:12]
			}
			err, panicked = fmt.Errorf("panic: %v\n%s", r, strings.Join(stack, "\n")), true
		}
	}()
	out, err = f()
	return out, err, false
}
