package proc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

func setAttrs(cmd *exec.Cmd, tie bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if tie {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
}

// spawner starts tied children from one OS thread that lives as long as
// the process: the parent-death signal fires when the thread that forked
// the child exits, not the process (golang/go#27505), so that thread
// must never exit.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func (g *Group) start(tie bool) error {
	if !tie {
		return g.cmd.Start()
	}
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go spawnLoop()
	})
	r := spawnReq{cmd: g.cmd, done: make(chan error, 1)}
	spawner.reqs <- r
	return <-r.done
}

func spawnLoop() {
	runtime.LockOSThread() // never unlocked: see spawner
	for r := range spawner.reqs {
		r.done <- r.cmd.Start()
	}
}

// startTime is the process's start in clock ticks since boot (field 22
// of /proc/<pid>/stat).
func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, true
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, true
	}
	st, _ := strconv.ParseUint(f[19], 10, 64)
	return st, true
}

// KillTagged kills every process (but this one) whose environment holds
// name=value with match(value) true, and returns how many it killed.
// Children inherit the environment, so this finds a plugin's descendants
// even after they left its process group (setsid) and were re-parented,
// unless they cleared their environment. Processes of other users are
// not readable and so not touched.
func KillTagged(name string, match func(value string) bool) int {
	paths, _ := filepath.Glob("/proc/[0-9]*/environ")
	self := os.Getpid()
	prefix := []byte(name + "=")
	n := 0
	for _, path := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, prefix); ok && match(string(v)) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					n++
				}
				break
			}
		}
	}
	return n
}

// CanFindTagged reports whether KillTagged can see other processes.
func CanFindTagged() bool { return true }
