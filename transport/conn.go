package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
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

// idleGap is how long a channel must have been quiet for a Send to write
// its frame itself instead of batching it for the writer: lone calls get
// the shortest path, streams and pipelined calls get batches.
const idleGap = 20 * time.Microsecond

// DefaultMaxFrame is the frame size limit unless configured otherwise.
const DefaultMaxFrame = 16 << 20

// ErrClosed is returned by a Conn that was closed.
var ErrClosed = errors.New("channel closed")

// DefaultRecvQueueBytes bounds the messages a Conn holds received but not
// yet read, unless configured otherwise.
const DefaultRecvQueueBytes = 32 << 20

// Options tune a Conn. The zero value is usable.
type Options struct {
	MaxFrame int // largest message accepted or sent, in bytes; default DefaultMaxFrame
	// RecvQueueBytes bounds the messages received but not yet read (mangos'
	// read queue plus the one its reader holds), counting each as MaxFrame
	// bytes: at least one message, at most 65. When it is full the peer's
	// sends wait. Default DefaultRecvQueueBytes.
	RecvQueueBytes int
}

// readQLen is the mangos read queue length that keeps RecvQueueBytes: the
// pipe's reader holds one more message while the queue is full.
func (o Options) readQLen() int {
	b := o.RecvQueueBytes
	if b <= 0 {
		b = DefaultRecvQueueBytes
	}
	return min(max(b/o.maxFrame()-1, 0), 64)
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
// Send is safe for concurrent use and batches: frames queued while a
// message is being written leave together in the next one, so many small
// frames cost one socket write. Nothing is dropped: when the batch is full,
// Send waits (bounded by its context) — that is the push-back.
type Conn struct {
	sock mangos.Socket
	addr string
	max  int

	mu       sync.Mutex
	batch    []byte // pending frames, each u32 length + frame
	batchMax int    // bytes a batch may hold before Send waits
	n        int    // frames in batch
	err      error  // why sending stopped
	writing  bool   // a message is being handed to mangos (by the writer or inline)
	last     time.Time
	wake     chan struct{}
	space    chan struct{} // closed and replaced when the writer takes the batch

	done      chan struct{}
	closeOnce sync.Once

	pmu      sync.Mutex
	rejected map[uint32]bool
	attached chan struct{}
	lost     chan struct{}
	peer     uint32
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
		space: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		rejected: map[uint32]bool{}, attached: make(chan struct{}), lost: make(chan struct{}),
	}
	for name, v := range map[string]any{
		// Twice the limit at the socket, so a frame just over it arrives and
		// is refused with a message naming the limit; far over it, mangos
		// drops the connection.
		mangos.OptionMaxRecvSize: 2*c.max + HeaderSize,
		// No send queue beyond the message in flight: frames wait in our
		// batch instead, which is what makes batching happen under load.
		mangos.OptionWriteQLen: 0,
		// Bounded in bytes: a source of big items waits instead of piling
		// them up here.
		mangos.OptionReadQLen:     o.readQLen(),
		mangos.OptionSendDeadline: 100 * time.Millisecond,
	} {
		if err := sock.SetOption(name, v); err != nil {
			sock.Close()
			return nil, fmt.Errorf("socket option %s: %w", name, err)
		}
	}
	c.batchMax = min(c.max, 1<<20)
	sock.SetPipeEventHook(c.pipeEvent)
	go c.writer()
	return c, nil
}

func (c *Conn) pipeEvent(ev mangos.PipeEvent, p mangos.Pipe) {
	switch ev {
	case mangos.PipeEventAttaching:
		// Only processes of our own user may connect (the socket dir is 0700
		// too; this also covers tcp peers, whose uid is unknown).
		if v, err := p.GetOption(mangos.OptionPeerUID); err == nil {
			if uid, ok := v.(int); ok && uid != os.Getuid() {
				c.reject(p)
			}
		}
	case mangos.PipeEventAttached:
		c.pmu.Lock()
		if c.rejected[p.ID()] {
			c.pmu.Unlock()
			return
		}
		c.peer = p.ID()
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

// reject disconnects a peer (another user's process) without counting it as
// the channel's peer being lost; the rightful peer may still connect.
func (c *Conn) reject(p mangos.Pipe) {
	c.pmu.Lock()
	c.rejected[p.ID()] = true
	c.pmu.Unlock()
	p.Close()
}

// connected reports whether a peer is attached now.
func (c *Conn) connected() bool {
	select {
	case <-c.lost:
		return false
	default:
	}
	select {
	case <-c.attached:
		return true
	default:
		return false
	}
}

// Attached is closed once a peer has connected.
func (c *Conn) Attached() <-chan struct{} { return c.attached }

// Lost is closed when the connected peer disconnects.
func (c *Conn) Lost() <-chan struct{} { return c.lost }

// Addr is the address the channel was opened on.
func (c *Conn) Addr() string { return c.addr }

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

// Send queues f for sending, in order with every earlier Send, and
// returns once f is in the batch. It waits (bounded by ctx) only while the
// batch is full: that is the push-back. A channel-level send error is
// returned by the Sends after it.
func (c *Conn) Send(ctx context.Context, f Frame) error {
	need := 4 + f.Size()
	if f.Size() > c.max {
		return fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d bytes (max_frame)", ErrTooLarge, f.Type, f.Size(), c.max)
	}
	for {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return err
		}
		if c.n == 0 || HeaderSize+len(c.batch)+need <= c.batchMax {
			now := time.Now()
			if c.n == 0 && !c.writing && now.Sub(c.last) > idleGap && c.connected() {
				// An idle channel: send it ourselves rather than wake the
				// writer — one goroutine switch less on a lone call's path.
				// If mangos does not take it at once (a busy or absent peer),
				// it goes back to the head of the batch for the writer.
				c.last, c.writing = now, true
				c.mu.Unlock()
				body := AppendFrame(make([]byte, 0, f.Size()), f)
				m := mangos.NewMessage(0)
				m.Body = body
				err := c.sock.SendMsg(m)
				c.mu.Lock()
				c.writing = false
				if err != nil {
					head := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)+len(c.batch)), uint32(len(body)))
					c.batch = append(append(head, body...), c.batch...)
					c.n++
				}
				if c.n > 0 {
					c.signal()
				}
				c.mu.Unlock()
				return nil
			}
			c.last = now
			c.batch = binary.BigEndian.AppendUint32(c.batch, uint32(f.Size()))
			c.batch = AppendFrame(c.batch, f)
			c.n++
			if c.n == 1 {
				c.signal()
			}
			c.mu.Unlock()
			return nil
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

// writer sends the batch whenever it holds frames. While one message is
// being written, Sends pile up behind it and leave together in the next:
// under load many small frames cost one socket write.
func (c *Conn) writer() {
	for {
		select {
		case <-c.wake:
		case <-c.done:
			c.fail(ErrClosed)
			return
		}
		// Let goroutines that are about to send (the rest of a burst of
		// call results, say) run first, so they leave in this message.
		runtime.Gosched()
		c.mu.Lock()
		for c.n > 0 && !c.writing { // an inline sender signals again when done
			take, n := c.batchPrefix()
			var body []byte
			if n == 1 && take == len(c.batch) && take > 64<<10 {
				// Hand the buffer itself to mangos rather than a copy: one
				// big frame is not held twice.
				body = c.batch[4:take]
				c.batch, take = nil, 0
			} else if n == 1 {
				body = append([]byte(nil), c.batch[4:take]...)
			} else {
				body = AppendFrame(make([]byte, 0, HeaderSize+take), Frame{Type: Batch, ID: uint64(n)})
				body = append(body, c.batch[:take]...)
			}
			c.batch, c.n = append(c.batch[:0], c.batch[take:]...), c.n-n
			close(c.space)
			c.space = make(chan struct{})
			c.writing = true
			c.mu.Unlock()
			err := c.sendMsg(body)
			c.mu.Lock()
			c.writing = false
			if err != nil {
				if c.err == nil {
					c.err = err
				}
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
	}
}

// batchPrefix returns how many bytes and frames of the batch fit in one
// message of at most max bytes: all of them, unless an inline send that
// failed put a large frame back at the head. At least one frame. mu held.
func (c *Conn) batchPrefix() (bytes, frames int) {
	if HeaderSize+len(c.batch) <= c.max {
		return len(c.batch), c.n
	}
	for bytes < len(c.batch) {
		next := bytes + 4 + int(binary.BigEndian.Uint32(c.batch[bytes:]))
		if frames > 0 && HeaderSize+next > c.max {
			break
		}
		bytes, frames = next, frames+1
	}
	return bytes, frames
}

// signal wakes the writer; mu held.
func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// sendMsg hands body to mangos, waiting while the peer is not taking
// messages, until the channel closes.
func (c *Conn) sendMsg(body []byte) error {
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
	m, err := c.recvMsg()
	if err != nil {
		return err
	}
	return ParseMessage(m.Body, fn)
}

// recvMsg waits for the next raw message, enforcing the size limit.
func (c *Conn) recvMsg() (*mangos.Message, error) {
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
