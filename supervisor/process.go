package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/plugvisor/plugvisor/internal/proc"
)

// process runs a generation as a child process: its own process group
// (a job on Windows), output captured line by line, always reaped. Its end
// is the leader's wait status, never the EOF of its pipes: a descendant
// may hold them open forever.
type process struct {
	path string
	args []string
	env  []string
	dir  string
	tag  string   // generation tag in env, to find descendants that left the group
	out  lineSink // receives each output line

	grp    *proc.Group
	exited chan struct{} // closed once reaped, the group killed and output cut off
	err    error         // exit status, valid after exited
	tail   *tail         // last lines of stderr, for start-failure messages
}

// lineSink receives each output line of a plugin.
type lineSink func(stream string, line string)

// outputDrain is how long output readers may run on after the process
// exited, to catch its last words; then they are cut off, whatever still
// holds the pipes.
const outputDrain = 200 * time.Millisecond

// tieToHost makes children die with the host (parent-death signal on
// Linux). Tests turn it off to exercise the SDK's watchdog as on macOS.
var tieToHost = true

func (p *process) start() error {
	cmd := &exec.Cmd{Path: p.path, Args: append([]string{p.path}, p.args...), Env: p.env, Dir: p.dir}
	or, ow, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	er, ew, err := os.Pipe()
	if err != nil {
		or.Close()
		ow.Close()
		return fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = ow, ew
	grp, err := proc.Start(cmd, tieToHost)
	ow.Close()
	ew.Close()
	if err != nil {
		or.Close()
		er.Close()
		return fmt.Errorf("start %s: %w", p.path, err)
	}
	p.grp, p.exited, p.tail = grp, make(chan struct{}), &tail{max: 4}
	var readers sync.WaitGroup
	readers.Add(2)
	go readLines(&readers, or, func(l string) { p.out("stdout", l) })
	go readLines(&readers, er, func(l string) { p.tail.add(l); p.out("stderr", l) })
	go func() {
		p.err = cmd.Wait()
		// The generation is over: nothing it started may outlive it.
		p.killDescendants()
		// Read what is buffered for the tail's last words, then cut the
		// readers off even if something escaped and holds the pipes.
		deadline := time.Now().Add(outputDrain)
		for _, f := range []*os.File{or, er} {
			if f.SetReadDeadline(deadline) != nil {
				f.Close() // no deadlines on this pipe: closing ends the read
			}
		}
		readers.Wait()
		grp.Release()
		close(p.exited)
	}()
	return nil
}

// killDescendants kills the generation's group and, where the system can
// find them (Linux), every process carrying its tag that left the group.
func (p *process) killDescendants() {
	_ = p.grp.Kill()
	if p.tag != "" {
		proc.KillTagged(envTag, func(v string) bool { return v == p.tag })
	}
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

func (p *process) pid() int              { return p.grp.Pid() }
func (p *process) done() <-chan struct{} { return p.exited }
func (p *process) kill()                 { _ = p.grp.Kill() }
func (p *process) terminate()            { _ = p.grp.Terminate() }

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
