package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawner starts every child from one OS thread that lives as long as the
// host: the parent-death signal fires when the thread that forked the child
// exits, not the process (golang/go#27505), so that thread must never exit.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: see spawner
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawner.reqs <- r
	return <-r.done
}

// process is one plugin child: its own process group, output captured
// line by line, always reaped.
type process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed once reaped
	err    error         // exit status, valid after exited
	tail   *tail         // last lines of stderr, for start-failure messages
}

// lineSink receives each output line of a plugin.
type lineSink func(stream string, line string)

func startProcess(path string, args, env []string, dir string, out lineSink) (*process, error) {
	cmd := &exec.Cmd{Path: path, Args: append([]string{path}, args...), Env: env, Dir: dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	or, ow, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	er, ew, err := os.Pipe()
	if err != nil {
		or.Close()
		ow.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = ow, ew
	err = startCmd(cmd)
	ow.Close()
	ew.Close()
	if err != nil {
		or.Close()
		er.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), tail: &tail{max: 4}}
	var readers sync.WaitGroup
	readers.Add(2)
	go readLines(&readers, or, func(l string) { out("stdout", l) })
	go readLines(&readers, er, func(l string) { p.tail.add(l); out("stderr", l) })
	go func() {
		p.err = cmd.Wait()
		// Output is read to the end so the tail holds the last words; a
		// grandchild keeping the pipe open is killed with the group.
		readers.Wait()
		close(p.exited)
	}()
	return p, nil
}

// readLines splits r into lines of any length (no bufio.Scanner "token too
// long"); very long lines are cut into 64 KiB pieces.
func readLines(wg *sync.WaitGroup, r io.ReadCloser, fn func(string)) {
	defer wg.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			fn(strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// signal sends sig to the whole process group.
func (p *process) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.pid, sig)
}

// stop ends the process: ask (the caller already sent shutdown), wait
// grace, SIGTERM the group, wait grace, SIGKILL the group, reap.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.exited:
		p.signal(syscall.SIGKILL) // leftovers of the group, if any
		return
	case <-time.After(grace):
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		p.signal(syscall.SIGKILL)
		return
	case <-time.After(grace):
	}
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// describe says how the process ended, with its last stderr lines.
func (p *process) describe() string {
	s := "exited"
	if p.err != nil {
		s = p.err.Error()
	}
	if t := p.tail.String(); t != "" {
		s += "; last output: " + t
	}
	return s
}

type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(l) > 500 {
		l = l[:500] + "…"
	}
	t.lines = append(t.lines, l)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// LogLine is one captured output line of a plugin.
type LogLine struct {
	At         time.Time `json:"at"`
	Generation int       `json:"generation"`
	Stream     string    `json:"stream"` // stdout, stderr, or plugvisor for the supervisor's own notes
	Line       string    `json:"line"`
}

// ring keeps the last lines of a plugin's output across generations.
type ring struct {
	mu    sync.Mutex
	lines []LogLine
	next  int
	full  bool
}

func newRing(n int) *ring {
	if n <= 0 {
		n = 1000
	}
	return &ring{lines: make([]LogLine, n)}
}

func (r *ring) add(l LogLine) {
	r.mu.Lock()
	r.lines[r.next] = l
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// last returns up to n lines, oldest first.
func (r *ring) last(n int) []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []LogLine
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
