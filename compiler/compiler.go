// Package compiler builds a plugin's Go package into bin/<plugin>/ with
// `go build`, names each build by the hash of its binary, parses compile
// errors into diagnostics and discovers the files a build depends on (its
// watch set) with `go list`. It knows nothing of processes or watching.
//
// Layout of BinDir/<plugin>/:
//
//	<plugin>-<build id>   one file per kept build, never overwritten
//	current               symlink to the live build (re-pointed by SetCurrent)
//	.tmp-*                builds and links in progress
package compiler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultKeep is the number of builds kept per plugin when Options.Keep is 0.
const DefaultKeep = 5

// Options configure Build and Discover.
type Options struct {
	BinDir string            // absolute; builds go to BinDir/<plugin>/
	Flags  []string          // extra go build flags from config, e.g. ["-trimpath"]
	Tags   []string          // -tags
	Env    map[string]string // extra env for go and go list (e.g. CGO_ENABLED=0); wins over the host env
	Keep   int               // builds kept per plugin for rollback (default 5); older ones deleted, never the current one
	Go     string            // the go command; default "go" looked up in PATH
	// LateWatchSet keeps go list off the build: Build returns when go
	// build is done, and Result.LateWatchSet (or BuildError.LateWatchSet)
	// runs go list when called (the dev loop swaps first and refreshes its
	// watches after).
	LateWatchSet bool
}

// Result describes a successful build.
type Result struct {
	Plugin   string
	ID       string        // build id: first 12 hex of sha256 of the produced binary
	Binary   string        // absolute path BinDir/<plugin>/<plugin>-<ID>
	Changed  bool          // false if ID equals the current build (nothing to swap)
	Duration time.Duration // wall time of go build
	WatchSet WatchSet      // recomputed after every successful build
	// LateWatchSet, set only with Options.LateWatchSet, runs go list and
	// returns the watch set (WatchSet is then empty).
	LateWatchSet func() (WatchSet, error)
}

// Diagnostic is one message of a failed build. File is absolute, or empty
// for messages that name no file (`go: …` module errors, linker errors).
type Diagnostic struct {
	File      string
	Line, Col int // Col is 0 when the compiler gave none
	Msg       string
}

func (d Diagnostic) String() string {
	switch {
	case d.File == "":
		return d.Msg
	case d.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Msg)
	default:
		return fmt.Sprintf("%s:%d: %s", d.File, d.Line, d.Msg)
	}
}

// BuildError is returned by Build when go build ran and failed.
type BuildError struct {
	Plugin      string
	Diagnostics []Diagnostic
	Output      string // raw output of go build
	// WatchSet is what go list could see of the failed build's
	// dependencies, so that fixing the error anywhere in them (even in a
	// package imported for the first time) triggers the next build.
	WatchSet WatchSet
	// LateWatchSet, with Options.LateWatchSet, computes WatchSet on demand
	// (after the error was shown).
	LateWatchSet func() (WatchSet, error)
}

func (e *BuildError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "build %s failed:", e.Plugin)
	if len(e.Diagnostics) == 0 {
		out := strings.TrimSpace(e.Output)
		if out == "" {
			out = "go build exited with an error and printed nothing"
		}
		for l := range strings.SplitSeq(out, "\n") {
			b.WriteString("\n  " + l)
		}
		return b.String()
	}
	for _, d := range e.Diagnostics {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(d.String(), "\n", "\n  "))
	}
	return b.String()
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkName(plugin string) error {
	if !validName.MatchString(plugin) || plugin == "current" {
		return fmt.Errorf("invalid plugin name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", plugin)
	}
	return nil
}

// testHookStarted, when set by tests, is called with the pid of go build
// right after it started.
var testHookStarted func(pid int)

// Build compiles the Go package in pkgDir (run from that folder, building
// ".") into BinDir/<plugin>/<plugin>-<id>. It does not re-point `current`;
// Result.Changed tells whether the build differs from it. A compile error
// is returned as a *BuildError and leaves every existing build untouched.
// Cancelling ctx kills go build with its whole process group.
func Build(ctx context.Context, plugin, pkgDir string, opts Options) (*Result, error) {
	if err := checkName(plugin); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(opts.BinDir) {
		return nil, fmt.Errorf("build %s: bin dir %q must be an absolute path", plugin, opts.BinDir)
	}
	for _, f := range opts.Flags {
		if f == "-o" || strings.HasPrefix(f, "-o=") || f == "--o" || strings.HasPrefix(f, "--o=") {
			return nil, fmt.Errorf("build %s: flag %q is not allowed: plugvisor chooses the output file", plugin, f)
		}
	}
	pkgDir, err := filepath.Abs(pkgDir)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", plugin, err)
	}
	if fi, err := os.Stat(pkgDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("build %s: package folder %s is not a readable directory", plugin, pkgDir)
	}
	dir := filepath.Join(opts.BinDir, plugin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build %s: create bin dir: %w", plugin, err)
	}
	// Reserve a unique name; go build replaces the empty file.
	f, err := os.CreateTemp(dir, ".tmp-"+plugin+"-*")
	if err != nil {
		return nil, fmt.Errorf("build %s: create temp output in %s: %w", plugin, dir, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp) // a no-op once the build was linked into place

	args := []string{"build", "-o", tmp}
	args = append(args, opts.Flags...)
	if len(opts.Tags) > 0 {
		args = append(args, "-tags", strings.Join(opts.Tags, ","))
	}
	args = append(args, ".")

	if opts.LateWatchSet {
		return buildLate(ctx, plugin, pkgDir, dir, tmp, args, opts)
	}
	// go list runs beside go build: the caller waits for the slower one,
	// not for both.
	var (
		ws     WatchSet
		wsErr  error
		listWG sync.WaitGroup
	)
	listWG.Go(func() { ws, wsErr = Discover(ctx, pkgDir, opts) })

	start := time.Now()
	out, runErr := run(ctx, opts, pkgDir, args, testHookStarted)
	dur := time.Since(start)
	listWG.Wait()

	if err := buildFailure(ctx, plugin, pkgDir, out, runErr, ws, wsErr, nil); err != nil {
		return nil, err
	}
	if wsErr != nil {
		return nil, fmt.Errorf("build %s: %w", plugin, wsErr)
	}
	r, err := finishBuild(plugin, dir, tmp, opts, dur)
	if r != nil {
		r.WatchSet = ws
	}
	return r, err
}

// buildLate is Build with Options.LateWatchSet: go list runs only when the
// caller asks for the watch set, after it used the build (no CPU taken
// from go build, nothing added to the path from save to serving).
func buildLate(ctx context.Context, plugin, pkgDir, dir, tmp string, args []string, opts Options) (*Result, error) {
	start := time.Now()
	out, runErr := run(ctx, opts, pkgDir, args, testHookStarted)
	dur := time.Since(start)
	late := func() (WatchSet, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateListTimeout)
		defer cancel()
		ws, err := Discover(lctx, pkgDir, opts)
		if err != nil {
			return WatchSet{}, fmt.Errorf("build %s: %w", plugin, err)
		}
		return ws, nil
	}
	if err := buildFailure(ctx, plugin, pkgDir, out, runErr, WatchSet{}, nil, late); err != nil {
		return nil, err
	}
	r, err := finishBuild(plugin, dir, tmp, opts, dur)
	if r != nil {
		r.LateWatchSet = late
	}
	return r, err
}

// buildFailure turns a failed go build into its error (nil: it built).
func buildFailure(ctx context.Context, plugin, pkgDir, out string, runErr error, ws WatchSet, wsErr error,
	late func() (WatchSet, error)) error {
	if ctx.Err() != nil {
		return fmt.Errorf("build %s: cancelled: %w", plugin, ctx.Err())
	}
	if runErr == nil {
		return nil
	}
	var exitErr *exec.ExitError
	if !errors.As(runErr, &exitErr) {
		return fmt.Errorf("build %s: %w", plugin, runErr)
	}
	if wsErr != nil {
		ws = fallbackWatchSet(pkgDir)
	}
	return &BuildError{Plugin: plugin, Diagnostics: ParseDiagnostics(out, pkgDir), Output: out, WatchSet: ws, LateWatchSet: late}
}

// finishBuild names the built binary by its hash and moves it into place.
func finishBuild(plugin, dir, tmp string, opts Options, dur time.Duration) (*Result, error) {
	sum, err := FileSHA256(tmp)
	if err != nil {
		return nil, fmt.Errorf("build %s: read built binary: %w", plugin, err)
	}
	id := sum[:12]
	bin := BuildPath(opts.BinDir, plugin, id)
	if err := place(tmp, bin); err != nil {
		return nil, fmt.Errorf("build %s: %w", plugin, err)
	}
	cur, _ := Current(opts.BinDir, plugin)
	keep := opts.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	prune(dir, plugin, keep, cur, bin)
	return &Result{Plugin: plugin, ID: id, Binary: bin, Changed: cur != bin, Duration: dur}, nil
}

// lateListTimeout bounds a go list that runs on after its build returned.
const lateListTimeout = 2 * time.Minute

// place moves the finished temp build to its final name without ever
// writing over an existing file (it may be a running executable): a hard
// link fails if the name exists, and an existing name holds the same bytes.
func place(tmp, bin string) error {
	now := time.Now()
	err := os.Link(tmp, bin)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		// Same hash, same binary (a revert to an earlier version). Touch
		// it so pruning by age treats it as the newest build.
	default:
		// No hard links on this file system: rename, after checking the
		// name is free (builds of one plugin are serialised by the caller).
		if _, serr := os.Lstat(bin); serr == nil {
			break
		}
		if rerr := os.Rename(tmp, bin); rerr != nil {
			return fmt.Errorf("move build into place: %w", rerr)
		}
	}
	if err := os.Chtimes(bin, now, now); err != nil {
		return fmt.Errorf("touch build: %w", err)
	}
	return nil
}

// FileSHA256 is the hex sha256 of a file's contents; a build id is its
// first 12 digits.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
