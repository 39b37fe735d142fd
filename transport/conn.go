package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/pair"

	// The transports plugvisor speaks: ipc for plugin processes, inproc for
	// builtins run inside the host, tcp for plugins on another machine.
	_ "go.nanomsg.org/mangos/v3/transport/inproc"
	_ "go.nanomsg.org/mangos/v3/transport/ipc"
	_ "go.nanomsg.org/mangos/v3/transport/tcp"
)

// DefaultMaxFrame is the frame size limit unless configured otherwise.
const DefaultMaxFrame = 16 << 20

// ErrClosed is returned by a Conn that was closed.
var ErrClosed = errors.New("channel closed")

// Options tune a Conn. The zero value is usable.
type Options struct {
	MaxFrame int // largest message accepted or sent, in bytes; default DefaultMaxFrame
}

func (o Options) maxFrame() int {
	if o.MaxFrame <= 0 {
		return DefaultMaxFrame
	}
	return o.MaxFrame
}

// Conn is one PAIR channel: an ordered, bounded, bidirectional frame
// stream with exactly one peer.
//
// Send is safe for concurrent use and batches: frames queued while a send
// is in progress leave together in one message, so many small frames cost
// one socket write. Nothing is dropped: when the batch is full, Send waits
// (bounded by its context) — that is the push-back.
type Conn struct {
	sock mangos.Socket
	addr string
	max  int

	mu       sync.Mutex
	batch    []byte // pending frames, each u32 length + frame
	n        int    // frames in batch
	flushing bool
	space    chan struct{} // closed and replaced when a flush frees the batch

	done      chan struct{}
	closeOnce sync.Once

	pmu      sync.Mutex
	rejected map[uint32]bool
	attached chan struct{}
	lost     chan struct{}
	peer     uint32
	peerPID  int
}

// Listen opens the host side of a channel at addr (ipc://path, inproc://name, tcp://host:port).
func Listen(addr string, o Options) (*Conn, error) {
	c, err := newConn(addr, o)
	if err != nil {
		return nil, err
	}
	if err := c.sock.Listen(addr); err != nil {
		c.sock.Close()
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return c, nil
}

// Dial opens the plugin side of a channel; the host must be listening.
func Dial(addr string, o Options) (*Conn, error) {
	c, err := newConn(addr, o)
	if err != nil {
		return nil, err
	}
	if err := c.sock.DialOptions(addr, map[string]any{mangos.OptionDialAsynch: false}); err != nil {
		c.sock.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

func newConn(addr string, o Options) (*Conn, error) {
	sock, err := pair.NewSocket()
	if err != nil {
		return nil, fmt.Errorf("pair socket: %w", err)
	}
	c := &Conn{
		sock: sock, addr: addr, max: o.maxFrame(),
		space: make(chan struct{}), done: make(chan struct{}),
		rejected: map[uint32]bool{}, attached: make(chan struct{}), lost: make(chan struct{}),
	}
	for name, v := range map[string]any{
		// Twice the limit at the socket, so a frame just over it arrives and
		// is refused with a message naming the limit; far over it, mangos
		// drops the connection.
		mangos.OptionMaxRecvSize: 2*c.max + HeaderSize,
		// No send queue beyond the message in flight: frames wait in our
		// batch instead, which is what makes batching happen under load.
		mangos.OptionWriteQLen:    0,
		mangos.OptionReadQLen:     64,
		mangos.OptionSendDeadline: 100 * time.Millisecond,
	} {
		if err := sock.SetOption(name, v); err != nil {
			sock.Close()
			return nil, fmt.Errorf("socket option %s: %w", name, err)
		}
	}
	sock.SetPipeEventHook(c.pipeEvent)
	return c, nil
}

func (c *Conn) pipeEvent(ev mangos.PipeEvent, p mangos.Pipe) {
	switch ev {
	case mangos.PipeEventAttaching:
		// Only processes of our own user may connect (the socket dir is 0700
		// too; this also covers tcp peers, whose uid is unknown).
		if v, err := p.GetOption(mangos.OptionPeerUID); err == nil {
			if uid, ok := v.(int); ok && uid != os.Getuid() {
				c.Reject(p)
			}
		}
	case mangos.PipeEventAttached:
		c.pmu.Lock()
		if c.rejected[p.ID()] {
			c.pmu.Unlock()
			return
		}
		c.peer = p.ID()
		if v, err := p.GetOption(mangos.OptionPeerPID); err == nil {
			c.peerPID, _ = v.(int)
		}
		select {
		case <-c.attached:
		default:
			close(c.attached)
		}
		c.pmu.Unlock()
	case mangos.PipeEventDetached:
		c.pmu.Lock()
		if c.rejected[p.ID()] {
			delete(c.rejected, p.ID())
		} else if p.ID() == c.peer {
			select {
			case <-c.lost:
			default:
				close(c.lost)
			}
		}
		c.pmu.Unlock()
	}
}

// Reject disconnects a peer (a wrong token, say) without counting it as the
// channel's peer being lost; the rightful peer may still connect.
func (c *Conn) Reject(p mangos.Pipe) {
	c.pmu.Lock()
	c.rejected[p.ID()] = true
	c.pmu.Unlock()
	p.Close()
}

// Attached is closed once a peer has connected.
func (c *Conn) Attached() <-chan struct{} { return c.attached }

// Lost is closed when the connected peer disconnects.
func (c *Conn) Lost() <-chan struct{} { return c.lost }

// PeerPID is the peer's process id where the transport knows it (ipc), else 0.
func (c *Conn) PeerPID() int {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.peerPID
}

// Addr is the address the channel was opened on.
func (c *Conn) Addr() string { return c.addr }

// MaxFrame is the frame size limit of this channel.
func (c *Conn) MaxFrame() int { return c.max }

// Close closes the channel; pending Sends and Recvs return ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.sock.Close()
	})
	return nil
}

// Done is closed when the channel is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Send queues f for sending, in order with every earlier Send. It returns
// once f is in the batch (or sent); it waits while the batch is full.
func (c *Conn) Send(ctx context.Context, f Frame) error {
	need := 4 + f.Size()
	if f.Size() > c.max {
		return fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d bytes (max_frame)", ErrTooLarge, f.Type, f.Size(), c.max)
	}
	for {
		c.mu.Lock()
		select {
		case <-c.done:
			c.mu.Unlock()
			return ErrClosed
		default:
		}
		if c.n == 0 || HeaderSize+len(c.batch)+need <= c.max {
			c.batch = binary.BigEndian.AppendUint32(c.batch, uint32(f.Size()))
			c.batch = AppendFrame(c.batch, f)
			c.n++
			if c.flushing {
				c.mu.Unlock()
				return nil
			}
			c.flushing = true
			return c.flush(ctx) // unlocks
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-c.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("send %s on %s: %w", f.Type, c.addr, ctx.Err())
		}
	}
}

// flush sends the batch until it is empty; called with mu held and
// flushing set, returns with mu released. The caller that found no flush
// in progress does it, so a lone Send costs no goroutine switch. If its
// ctx ends while the peer is not taking messages, a goroutine carries on
// flushing (the batch holds other callers' frames, already accepted) and
// the caller gets the context error: its frame may still be delivered.
func (c *Conn) flush(ctx context.Context) error {
	for c.n > 0 {
		var body []byte
		if c.n == 1 {
			body = append([]byte(nil), c.batch[4:]...)
		} else {
			body = AppendFrame(make([]byte, 0, HeaderSize+len(c.batch)), Frame{Type: Batch, ID: uint64(c.n)})
			body = append(body, c.batch...)
		}
		c.batch, c.n = c.batch[:0], 0
		close(c.space)
		c.space = make(chan struct{})
		c.mu.Unlock()
		err := c.sendMsg(ctx, body)
		if err != nil && ctx.Err() != nil && !errors.Is(err, ErrClosed) {
			go func() {
				if c.sendMsg(context.Background(), body) == nil {
					c.mu.Lock()
					c.flush(context.Background()) //nolint:errcheck // a closed channel is all it can report
				}
			}()
			return fmt.Errorf("send on %s: %w", c.addr, ctx.Err())
		}
		c.mu.Lock()
		if err != nil {
			c.flushing = false
			c.mu.Unlock()
			return err
		}
	}
	c.flushing = false
	c.mu.Unlock()
	return nil
}

// sendMsg hands body to mangos, waiting while the peer is not taking
// messages, until ctx ends or the channel closes.
func (c *Conn) sendMsg(ctx context.Context, body []byte) error {
	m := mangos.NewMessage(0)
	m.Body = body
	for {
		err := c.sock.SendMsg(m)
		if err == nil {
			return nil
		}
		if errors.Is(err, mangos.ErrSendTimeout) {
			// Not accepted, so not sent: waiting again cannot duplicate.
			select {
			case <-c.done:
				return ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			default:
				continue
			}
		}
		if errors.Is(err, mangos.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("send on %s: %w", c.addr, err)
	}
}

// Recv waits for the next message and calls fn for each of its frames.
// The frames alias the message; fn must copy what it keeps past the call
// only if it reuses buffers (Recv never reuses them).
func (c *Conn) Recv(fn func(Frame) error) error {
	m, err := c.RecvMsg()
	if err != nil {
		return err
	}
	return ParseMessage(m.Body, fn)
}

// RecvMsg waits for the next raw message, enforcing the size limit. Use it
// when the sender's pipe matters (to Reject it); parse with ParseMessage.
func (c *Conn) RecvMsg() (*mangos.Message, error) {
	m, err := c.sock.RecvMsg()
	if err != nil {
		if errors.Is(err, mangos.ErrClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("receive on %s: %w", c.addr, err)
	}
	if len(m.Body) > c.max {
		return m, fmt.Errorf("%w: peer sent a message of %d bytes, over the limit of %d bytes (max_frame)", ErrTooLarge, len(m.Body), c.max)
	}
	return m, nil
}
