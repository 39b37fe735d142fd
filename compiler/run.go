package compiler

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/plugvisor/plugvisor/internal/proc"
)

// waitDelay bounds how long Wait waits for output pipes after go was
// killed (a grandchild that escaped the group could hold them open).
const waitDelay = 5 * time.Second

// dropEnv are host variables that would make go build produce or look for
// something other than what the host runs: the host's GOFLAGS (e.g.
// -mod=vendor, -modfile=… meant for another module), GOOS/GOARCH (a cross
// build the host cannot start) and PWD, which is set to the package dir.
var dropEnv = map[string]bool{"GOFLAGS": true, "GOOS": true, "GOARCH": true, "PWD": true}

// goEnv decides the environment of go build and go list explicitly: host
// env minus dropEnv, then GOFLAGS=-buildvcs=false and PWD, then
// Options.Env, which wins over all of them.
func goEnv(opts Options, dir string) []string {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || dropEnv[k] {
			continue
		}
		vars[k] = v
	}
	// -buildvcs=false: plugin folders are often inside a repository the
	// daemon's user cannot query (or without git installed); VCS stamping
	// would fail the build and change the binary on every commit.
	vars["GOFLAGS"] = "-buildvcs=false"
	// With an explicit Env, exec does not set PWD; go uses it to print
	// paths the way the caller spelled them (symlinked folders).
	vars["PWD"] = dir
	for k, v := range opts.Env {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func goCmd(opts Options) string {
	if opts.Go != "" {
		return opts.Go
	}
	return "go"
}

// run starts the go command directly (no shell) in dir, in its own
// process group so that cancelling ctx kills go and the compilers and
// linker it started. It always waits for the process. The error is an
// *exec.ExitError when go ran and failed.
func run(ctx context.Context, opts Options, dir string, args []string, started func(pid int)) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, goCmd(opts), args...)
	cmd.Dir = dir
	cmd.Env = goEnv(opts, dir)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = waitDelay
	// Its own group (a job on Windows): cancelling ctx kills go and the
	// compilers and linker it started.
	grp, err := proc.Start(cmd, false)
	if err != nil {
		return "", fmt.Errorf("start %s %s: %w (is Go installed and on PATH?)", goCmd(opts), args[0], err)
	}
	defer grp.Release()
	if started != nil {
		started(cmd.Process.Pid)
	}
	// go waits for its children; a killed group dies whole. So once go is
	// reaped nothing of the group is left to kill (and its pid may be reused).
	err = cmd.Wait()
	return out.String(), err
}
