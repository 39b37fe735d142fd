package supervisor

import (
	"context"
	"fmt"

	"github.com/plugvisor/plugvisor/transport"
)

// StopSource ends the source instance the way a planned swap does before a
// clean shutdown: the source is told to stop and its stream is read to its
// end, every item it emitted staying queued for C. It returns the Seq of
// the last item; a reader that has taken every item up to it has
// everything the source's state accounts for, so a checkpoint taken after
// it resumes exactly after that item. The subscription stays open (Close
// it once drained).
func (s *Subscription) StopSource(ctx context.Context) (last uint64, err error) {
	derr := s.p.do(ctx, func() {
		b := s.inst.bind
		if b == nil {
			last = s.seq // no reader runs without a binding
			return
		}
		s.setDraining(true) // the queue takes the whole rest of the stream
		if _, err = b.g.request(ctx, transport.Stop, transport.JSON(transport.StopMsg{Instance: s.inst.id})); err != nil {
			err = fmt.Errorf("stop source %s: %w", s.inst.symbol, err)
			return
		}
		select {
		case <-b.done:
		case <-ctx.Done():
			err = fmt.Errorf("%w: source %s did not reach its end of stream", ErrDrainTimeout, s.inst.symbol)
			return
		}
		select {
		case <-b.eos:
		default:
			err = fmt.Errorf("source %s: channel lost before its end of stream", s.inst.symbol)
			return
		}
		// Stopped: unbound, so a final snapshot does not wait for a
		// marker on a stream that has ended.
		b.conn.Close()
		s.inst.bind = nil
		last = s.seq
	})
	if derr != nil {
		return 0, derr
	}
	return last, err
}
