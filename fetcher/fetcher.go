// Package fetcher downloads remote plugin drivers with go-getter into
// remote-plugins/<plugin>/. It knows nothing of processes or builds: the
// driver layer (package host) calls Fetch (on its update timer or on
// reload), checks Changed and resolves Result.Dir like a local folder.
//
// A fetch lands in a fresh staging folder, is validated (no symlinks at all)
// and then swapped into place, so a failed fetch leaves the previous tree
// untouched.
package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
)

// Options configures one Fetch.
type Options struct {
	// Dir is the absolute remote-plugins folder; the plugin lands in Dir/<plugin>.
	Dir string
	// Checksum is optional. It is handed to go-getter as its `checksum=` query
	// ("sha256:<hex>", "file:<url>", or bare hex), so it is verified on the
	// downloaded file or archive; go-getter refuses it for a directory
	// source such as a git repository (pin those with ?ref= instead).
	Checksum string
	// MaxBytes caps what one fetch may write (the fetched tree, and each
	// downloaded file); over it the transfer is stopped and the fetch
	// fails. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Submodules lets a git source's submodules be fetched (recursively);
	// by default they are not, so a repository cannot make the daemon
	// fetch other URLs.
	Submodules bool
}

// DefaultMaxBytes is the fetch size cap unless configured otherwise.
const DefaultMaxBytes = 512 << 20

func (o Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

// Result describes a successful Fetch.
type Result struct {
	Plugin string
	// Dir is Dir/<plugin>: the fetched tree, ready to resolve like a local
	// folder (Go source, plugin.json, or one executable).
	Dir string
	// Rev is the commit checked out for a git source (full hash), and for
	// any other source the first 12 hex digits of a sha256 over the tree
	// listing and contents (.git excluded).
	Rev string
	// Changed reports that Rev differs from the tree that was in place
	// before (true on the first fetch). When false the previous tree is kept
	// as it was and the fresh download is discarded.
	Changed bool
	// SkippedSubmodules reports a git source with submodules that were not
	// fetched (Options.Submodules is off).
	SkippedSubmodules bool
}

// validName keeps plugin names to one plain path element; a leading dot
// would collide with the staging and backup names below.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// forcedPrefix matches go-getter's "getter::" forcing syntax.
var forcedPrefix = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// locks serialises fetches of the same target folder within this process;
// each value is a 1-slot semaphore so waiting honours the context.
var locks sync.Map // string -> chan struct{}

// Fetch downloads src (anything go-getter detects: git::…, github.com/x/y,
// https://…, file::…, optionally with ?ref=) into opts.Dir/<plugin>.
//
// Errors name the plugin, the (redacted) source and the reason; on any
// error the previous tree is left as it was. A cancelled ctx stops git and
// HTTP transfers and the error wraps ctx.Err().
func Fetch(ctx context.Context, plugin, src string, opts Options) (*Result, error) {
	shown := redact(src)
	fail := func(err error) error {
		return fmt.Errorf("remote plugin %s: source %s: %w", plugin, shown, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(err)
	}
	if !validName.MatchString(plugin) {
		return nil, fail(fmt.Errorf("invalid plugin name %q: use letters, digits, '.', '_' or '-', not starting with '.'", plugin))
	}
	if !filepath.IsAbs(opts.Dir) {
		return nil, fail(fmt.Errorf("remote-plugins folder %q must be an absolute path", opts.Dir))
	}
	full, err := prepareSource(src, opts.Checksum)
	if err != nil {
		return nil, fail(err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fail(fmt.Errorf("create remote-plugins folder: %w", err))
	}

	target := filepath.Join(opts.Dir, plugin)
	unlock, err := lock(ctx, target)
	if err != nil {
		return nil, fail(err)
	}
	defer unlock()
	recoverStale(opts.Dir, plugin)

	staging, err := os.MkdirTemp(opts.Dir, "."+plugin+".tmp-")
	if err != nil {
		return nil, fail(fmt.Errorf("create staging folder: %w", err))
	}
	defer os.RemoveAll(staging)
	tree := filepath.Join(staging, "tree")

	usedGit, skipped, err := download(ctx, full, tree, opts)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fail(fmt.Errorf("%w (%v)", cerr, err))
		}
		return nil, fail(err)
	}
	if err := checkTree(tree); err != nil {
		return nil, fail(err)
	}

	rev, isGit, err := revision(ctx, tree, usedGit)
	if err != nil {
		return nil, fail(err)
	}
	prev := previousRev(ctx, target, isGit)
	res := &Result{Plugin: plugin, Dir: target, Rev: rev, Changed: prev != rev, SkippedSubmodules: skipped}
	if !res.Changed {
		return res, nil
	}
	if err := swap(opts.Dir, plugin, tree); err != nil {
		return nil, fail(err)
	}
	return res, nil
}

// Executable returns the single executable regular file directly in dir,
// as left by an archive of a prebuilt plugin. It is an error if there is
// none or more than one.
func Executable(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("look for the plugin executable: %w", err)
	}
	var found []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", fmt.Errorf("look for the plugin executable: %w", err)
		}
		if info.Mode().Perm()&0o111 != 0 {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 1:
		return filepath.Join(dir, found[0]), nil
	case 0:
		return "", fmt.Errorf("no executable file in %s: a prebuilt plugin must ship exactly one executable (set its execute bit before archiving)", dir)
	default:
		return "", fmt.Errorf("several executable files in %s (%s): a prebuilt plugin must ship exactly one executable", dir, strings.Join(found, ", "))
	}
}

func lock(ctx context.Context, key string) (func(), error) {
	v, _ := locks.LoadOrStore(key, make(chan struct{}, 1))
	sem := v.(chan struct{})
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another fetch of the same plugin: %w", ctx.Err())
	}
}

// recoverStale cleans what an interrupted Fetch may have left: staging
// folders, and a backup that never got removed (restored if the swap was
// cut between its two renames).
func recoverStale(dir, plugin string) {
	prefix := filepath.Join(dir, "."+plugin+".tmp-")
	stale, _ := filepath.Glob(prefix + "*")
	for _, s := range stale {
		// Only our own random digits: ".geo.tmp-1.tmp-42" is plugin "geo.tmp-1"'s.
		if strings.Trim(strings.TrimPrefix(s, prefix), "0123456789") == "" {
			os.RemoveAll(s)
		}
	}
	target := filepath.Join(dir, plugin)
	old := filepath.Join(dir, "."+plugin+".old")
	if _, err := os.Lstat(old); err != nil {
		return
	}
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		os.Rename(old, target)
		return
	}
	os.RemoveAll(old)
}

// recorder wraps a getter to learn which one did the download (the client
// tries them in order); only the git getter's result has a commit to report.
type recorder struct {
	getter.Getter
	used *getter.Getter
}

func (r recorder) Get(ctx context.Context, req *getter.Request) error {
	*r.used = r.Getter
	return r.Getter.Get(ctx, req)
}

func (r recorder) GetFile(ctx context.Context, req *getter.Request) error {
	*r.used = r.Getter
	return r.Getter.GetFile(ctx, req)
}

// download runs go-getter into tree (which must not exist: the git getter
// would otherwise take its odd "update" path), within the size cap. It
// reports whether git did it and whether it left submodules out.
func download(ctx context.Context, src, tree string, o Options) (usedGit, skipped bool, err error) {
	limit := o.maxBytes()
	ctx, stop := watchSize(ctx, filepath.Dir(tree), limit)
	defer func() {
		if cerr := stop(); cerr != nil {
			usedGit, err = false, cerr
		}
	}()
	gitG := gitGetter{GitGetter: &getter.GitGetter{Detectors: []getter.Detector{
		new(getter.GitHubDetector), new(getter.GitDetector),
		new(getter.BitBucketDetector), new(getter.GitLabDetector),
	}}, submodules: o.Submodules, skipped: &skipped}
	fileG := new(getter.FileGetter)
	// Only getters that need neither cloud SDKs nor extra tools beyond git;
	// ctx bounds every transfer, the timeouts are a backstop for a stalled
	// server when the caller's ctx is long-lived.
	httpG := &getter.HttpGetter{
		Netrc:                 true,
		XTerraformGetDisabled: true,
		HeadFirstTimeout:      30 * time.Second,
		ReadTimeout:           10 * time.Minute,
		// go-getter cuts the body off at MaxBytes without an error: one
		// byte more makes a cut-off download exceed the cap, which the
		// size watch then reports instead of keeping a truncated file.
		MaxBytes: limit + 1,
		Client:   newCapClient(limit),
	}
	var used getter.Getter
	client := &getter.Client{
		Getters: []getter.Getter{
			recorder{gitG, &used}, recorder{httpG, &used}, recorder{fileG, &used},
		},
		// Archive bombs: cap the entry count and each entry's size.
		Decompressors:   getter.LimitedDecompressors(100_000, limit),
		DisableSymlinks: true,
	}
	req := &getter.Request{
		Src:             src,
		Dst:             tree,
		GetMode:         getter.ModeAny,
		Copy:            true, // a local file source is copied, not linked
		DisableSymlinks: true,
		Umask:           0o022,
	}
	res, err := client.Get(ctx, req)
	if err != nil {
		var cerr *getter.ChecksumError
		if errors.As(err, &cerr) {
			return false, false, mismatch{cerr}
		}
		if errors.Is(err, getter.ErrSymlinkCopy) {
			return false, false, fmt.Errorf("%w; plugvisor refuses symlinks in fetched plugins", err)
		}
		return false, false, tidy{err}
	}
	if used == getter.Getter(fileG) {
		// go-getter links a local folder instead of copying it; make it a
		// real tree so later edits to the source do not leak in unfetched.
		if fi, err := os.Lstat(tree); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			from, err := os.Readlink(tree)
			if err != nil {
				return false, false, err
			}
			if err := os.Remove(tree); err != nil {
				return false, false, err
			}
			if err := copyTree(ctx, from, tree); err != nil {
				return false, false, err
			}
		}
	}
	if res.Dst != tree {
		// A single non-archive file (a bare binary): make it runnable so
		// Executable finds it.
		if fi, err := os.Lstat(res.Dst); err == nil && fi.Mode().IsRegular() {
			if err := os.Chmod(res.Dst, 0o755); err != nil {
				return false, false, err
			}
		}
	}
	return used == getter.Getter(gitG), skipped, nil
}

// revision names what was fetched: the checked-out commit when git cloned
// the tree (a "//subdir" of a repo has no .git and falls back to the
// content hash), else the content hash.
func revision(ctx context.Context, tree string, usedGit bool) (rev string, isGit bool, err error) {
	if usedGit && isDir(filepath.Join(tree, ".git")) {
		rev, err := gitHead(ctx, tree)
		if err != nil {
			return "", false, fmt.Errorf("read the fetched commit: %w", err)
		}
		return rev, true, nil
	}
	rev, err = treeHash(tree)
	if err != nil {
		return "", false, fmt.Errorf("hash the fetched tree: %w", err)
	}
	return rev, false, nil
}

// previousRev computes the same kind of revision for the tree in place;
// "" (so Changed) when there is none or it cannot be read.
func previousRev(ctx context.Context, target string, isGit bool) string {
	if !isDir(target) {
		return ""
	}
	var rev string
	var err error
	if isGit {
		rev, err = gitHead(ctx, target)
	} else {
		rev, err = treeHash(target)
	}
	if err != nil {
		return ""
	}
	return rev
}

func gitHead(ctx context.Context, dir string) (string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git rev-parse HEAD in %s: %w: %s", dir, err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// swap moves tree into dir/plugin: the old tree is renamed aside, the new
// one renamed in, then the old one removed. Each rename is atomic; if the
// second fails the old tree is put back.
func swap(dir, plugin, tree string) error {
	target := filepath.Join(dir, plugin)
	old := filepath.Join(dir, "."+plugin+".old")
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove stale backup: %w", err)
	}
	hadOld := true
	if err := os.Rename(target, old); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("move the previous tree aside: %w", err)
		}
		hadOld = false
	}
	if err := os.Rename(tree, target); err != nil {
		if hadOld {
			os.Rename(old, target)
		}
		return fmt.Errorf("move the fetched tree into place: %w", err)
	}
	if hadOld {
		os.RemoveAll(old)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
