package host

import "github.com/plugvisor/plugvisor/supervisor"

// FollowOutput subscribes to every plugin's output lines as they are
// printed (see supervisor.Supervisor.FollowOutput).
func (h *Host) FollowOutput(buf int) *supervisor.Feed[supervisor.OutputLine] {
	return h.sup.FollowOutput(buf)
}
