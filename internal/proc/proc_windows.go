package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows a group is a Job Object with kill-on-close: every process
// the child starts joins it, TerminateJobObject ends them all, and when
// the last handle closes (this process exits, however) the job dies.
type groupSys struct {
	job windows.Handle
}

func setAttrs(cmd *exec.Cmd, _ bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
}

func (g *Group) start(bool) error {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return fmt.Errorf("create job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{}
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return fmt.Errorf("job object limits: %w", err)
	}
	if err := g.cmd.Start(); err != nil {
		windows.CloseHandle(job)
		return err
	}
	// The child runs before it joins the job; what it starts in that
	// instant escapes (starting it suspended needs more than os/exec offers).
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(g.cmd.Process.Pid))
	if err == nil {
		err = windows.AssignProcessToJobObject(job, h)
		windows.CloseHandle(h)
	}
	if err != nil {
		_ = g.cmd.Process.Kill()
		windows.CloseHandle(job)
		return fmt.Errorf("assign to job object: %w", err)
	}
	g.sys.job = job
	return nil
}

func (g *Group) kill() error {
	var err error
	if g.sys.job != 0 {
		err = windows.TerminateJobObject(g.sys.job, 1)
	}
	if kerr := g.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) && err == nil {
		err = kerr
	}
	return err
}

func (g *Group) terminate() error { return g.kill() }

func (g *Group) release() {
	if g.sys.job != 0 {
		windows.CloseHandle(g.sys.job) // kill-on-close ends what is left
		g.sys.job = 0
	}
}

// KillGroup has no meaning on Windows: jobs die with the host.
func KillGroup(int) error { return nil }

// KillOwnGroup: the job the host put this process in ends everything.
func KillOwnGroup() {}

// Alive reports whether a process with this pid exists.
func Alive(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if windows.GetExitCodeProcess(h, &code) != nil {
		return false
	}
	return code == 259 // STILL_ACTIVE
}

func startTime(pid int) (uint64, bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return 0, false
	}
	defer windows.CloseHandle(h)
	var c, e, k, u windows.Filetime
	if windows.GetProcessTimes(h, &c, &e, &k, &u) != nil {
		return 0, true
	}
	return uint64(c.Nanoseconds()), true
}

// KillTagged: descendants cannot leave a job, so nothing is looked for.
func KillTagged(string, func(string) bool) int { return 0 }

// CanFindTagged reports whether KillTagged can see other processes.
func CanFindTagged() bool { return false }
