//go:build unix

package proc

import (
	"errors"
	"os"
	"syscall"
)

//lint:ignore U1000 used on Windows (proc_windows.go)
type groupSys struct{}

func (g *Group) kill() error      { return signalGroup(g.Pid(), syscall.SIGKILL) }
func (g *Group) terminate() error { return signalGroup(g.Pid(), syscall.SIGTERM) }
func (g *Group) release()         {}

// signalGroup signals every process of group pgid; a group that no longer
// exists is fine.
func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return errors.New("proc: no group")
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// KillGroup kills process group pgid (a leftover of an earlier host).
func KillGroup(pgid int) error { return signalGroup(pgid, syscall.SIGKILL) }

// KillOwnGroup kills the calling process's group, itself included, when
// it leads that group (as plugvisor starts plugins). A process that does
// not lead its group (started from a shell) does nothing: its group is
// someone else's.
func KillOwnGroup() {
	if syscall.Getpgrp() == os.Getpid() {
		_ = syscall.Kill(0, syscall.SIGKILL)
	}
}

// Alive reports whether a process with this pid exists.
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
