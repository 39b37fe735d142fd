// Package proc starts child processes as a unit that can be ended whole:
// a process group on Unix (with a parent-death signal on Linux), a Job
// Object with kill-on-close on Windows. The supervisor and the compiler
// share it so that what is OS-specific lives in the files behind build
// tags here and nowhere else.
package proc

import (
	"errors"
	"os"
	"os/exec"
)

// Group is a started child and every process it starts that stays in its
// group (Unix) or job (Windows).
type Group struct {
	cmd *exec.Cmd
	//lint:ignore U1000 empty on Unix; the job handle on Windows
	sys groupSys
}

// Start starts cmd as the leader of a new group. With tie, the child is
// also ended when this process dies (Linux: parent-death signal, sent
// from an OS thread that lives as long as the process; Windows: the job
// dies with its last handle; other systems: the SDK's watchdog). When cmd
// has a Cancel (exec.CommandContext), it is replaced by one that kills
// the whole group.
func Start(cmd *exec.Cmd, tie bool) (*Group, error) {
	g := &Group{cmd: cmd}
	setAttrs(cmd, tie)
	if cmd.Cancel != nil {
		cmd.Cancel = g.Kill
	}
	if err := g.start(tie); err != nil {
		return nil, err
	}
	return g, nil
}

// Pid is the leader's process id (and, on Unix, the group id).
func (g *Group) Pid() int { return g.cmd.Process.Pid }

// Kill ends the leader and every process in its group or job at once. A
// group that is already gone is not an error.
func (g *Group) Kill() error {
	err := g.kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Terminate asks the group to stop (SIGTERM). Windows has no such request
// for console-less children: there it is Kill.
func (g *Group) Terminate() error { return g.terminate() }

// Release frees what the group holds in this process once the leader is
// reaped (the job handle on Windows, which kills what is left in it).
func (g *Group) Release() { g.release() }

// Identity names a process across a restart of the host: its pid and its
// start time, so that a reused pid is not mistaken for it.
type Identity struct {
	Pid   int
	Start uint64 // 0 when the system cannot tell
}

// Same reports whether the process id.Pid is alive and is the one id
// names. alive is false when no process has that pid.
func Same(id Identity) (alive, same bool) {
	st, ok := startTime(id.Pid)
	if !ok {
		return false, false
	}
	return true, st != 0 && st == id.Start
}

// Identify returns the identity of a live process (Start 0 if unknown).
func Identify(pid int) Identity {
	st, _ := startTime(pid)
	return Identity{Pid: pid, Start: st}
}
