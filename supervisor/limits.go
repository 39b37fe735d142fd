package supervisor

import (
	"fmt"

	"github.com/plugvisor/plugvisor/transport"
)

// checkInput refuses a call whose frame would exceed max_frame before it
// waits for a generation: the caller's mistake, matchable with
// errors.Is(err, transport.ErrTooLarge) (the API answers 413).
func (p *Plugin) checkInput(fn string, input []byte) error {
	size := transport.HeaderSize + 2 + len(fn) + len(input)
	if limit := p.sup.opts.MaxFrame; size > limit {
		return fmt.Errorf("%w: input of %d bytes to %s.%s exceeds the limit of %d bytes (max_frame in [supervisor])",
			transport.ErrTooLarge, len(input), p.name, fn, limit)
	}
	return nil
}
