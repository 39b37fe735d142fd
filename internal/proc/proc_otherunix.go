//go:build unix && !linux

package proc

import (
	"os/exec"
	"syscall"
)

// Outside Linux there is no parent-death signal: a tied child's SDK
// watchdog notices its parent changed and kills its own group.
func setAttrs(cmd *exec.Cmd, _ bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func (g *Group) start(bool) error { return g.cmd.Start() }

// KillTagged needs /proc; elsewhere descendants that left the group are
// not found (see docs/DESIGN.md, "Process containment").
func KillTagged(string, func(string) bool) int { return 0 }

// CanFindTagged reports whether KillTagged can see other processes.
func CanFindTagged() bool { return false }
