package main

import (
	"bytes"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// reapGrace is how long a zombie child must stay unreaped before the PID 1
// reaper collects it. Every child plugvisor starts itself (plugins, go
// build, git) has a goroutine blocked in its Wait, which collects it at
// once; only processes adopted from dead parents linger. Reaping by pid
// after this grace, never with wait(-1), keeps the reaper from stealing an
// exit status os/exec is about to read.
const reapGrace = 2 * time.Second

// reapAdopted reaps the zombies re-parented to this process when it runs
// as PID 1 (a container without an init); elsewhere it does nothing. The
// returned function stops it.
func reapAdopted(log *zerolog.Logger) (stop func()) {
	if os.Getpid() != 1 {
		return func() {}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		seen := map[int]time.Time{}
		for {
			select {
			case <-done:
				return
			case <-sigs:
			case <-tick.C:
			}
			for _, pid := range reapZombies(os.Getpid(), seen, time.Now(), reapGrace) {
				log.Debug().Int("pid", pid).Msg("reaped an adopted process")
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		<-finished
	}
}

// reapZombies reaps the zombie children of parent that seen says have been
// zombies for at least grace, and returns their pids. seen records when
// each zombie was first noticed; entries of processes gone are dropped.
func reapZombies(parent int, seen map[int]time.Time, now time.Time, grace time.Duration) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	alive := map[int]bool{}
	var reaped []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, ok := procStat(pid)
		if !ok || ppid != parent || state != 'Z' {
			continue
		}
		alive[pid] = true
		first, ok := seen[pid]
		if !ok {
			seen[pid] = now
			continue
		}
		if now.Sub(first) < grace {
			continue
		}
		var ws syscall.WaitStatus
		if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil && got == pid {
			reaped = append(reaped, pid)
			delete(alive, pid)
		}
	}
	for pid := range seen {
		if !alive[pid] {
			delete(seen, pid)
		}
	}
	return reaped
}

// procStat reads a process's state letter and parent pid from
// /proc/<pid>/stat ("pid (comm) S ppid …"; comm may hold spaces and ')').
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}
