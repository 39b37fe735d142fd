package compiler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// WatchSet is what a build depends on, as absolute paths.
type WatchSet struct {
	Module string   // module root dir
	Dirs   []string // package dirs the build depends on inside the module or local replace targets (sorted)
	Files  []string // go.mod, go.sum, go.work (if any), embedded files (sorted)
}

// buildExts are the files, besides .go, that go build compiles from a
// package folder (assembly, cgo sources, system objects).
var buildExts = map[string]bool{
	".go": true, ".s": true, ".S": true, ".c": true, ".h": true, ".cc": true,
	".cpp": true, ".cxx": true, ".hh": true, ".hpp": true, ".hxx": true, ".m": true, ".syso": true,
}

// Matches reports whether a change to path can change the build: a source
// file (a .go file that is not a _test.go, or an assembly/cgo source)
// directly inside one of Dirs, or one of Files. Names starting with "." or
// "_" are ignored by go and so here (editor locks such as ".#main.go"). A
// new .go file in a new folder does not match: it matters once imported,
// and the import edits a file that matches.
func (w WatchSet) Matches(path string) bool {
	path = filepath.Clean(path)
	if _, ok := slices.BinarySearch(w.Files, path); ok {
		return true
	}
	base := filepath.Base(path)
	if base[0] == '.' || base[0] == '_' || strings.HasSuffix(base, "_test.go") || !buildExts[filepath.Ext(base)] {
		return false
	}
	_, ok := slices.BinarySearch(w.Dirs, filepath.Dir(path))
	return ok
}

// Roots are the folders to watch recursively: the module root plus each
// local module (replace target, workspace module) outside it. The other
// modules are known by their go.mod in Files.
func (w WatchSet) Roots() []string {
	roots := []string{}
	if w.Module != "" {
		roots = append(roots, w.Module)
	}
	var mods []string
	for _, f := range w.Files {
		if filepath.Base(f) == "go.mod" {
			mods = append(mods, filepath.Dir(f))
		}
	}
	// Shortest first, so a module nested in another one is dropped.
	slices.SortStableFunc(mods, func(a, b string) int { return len(a) - len(b) })
	for _, d := range mods {
		if !slices.ContainsFunc(roots, func(r string) bool { return within(d, r) }) {
			roots = append(roots, d)
		}
	}
	return roots
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

type listModule struct {
	Path    string
	Main    bool
	Dir     string
	Version string
	Replace *listModule
}

type listPackage struct {
	Dir        string
	ImportPath string
	Module     *listModule
	EmbedFiles []string
	Standard   bool
}

// localDir returns the folder of a module whose sources are local (the
// main or a workspace module, or one replaced by a directory), or "".
func (m *listModule) localDir() string {
	switch {
	case m == nil:
		return ""
	case m.Main:
		return m.Dir
	case m.Replace != nil && m.Replace.Version == "":
		if m.Replace.Dir != "" {
			return m.Replace.Dir
		}
		return m.Dir
	}
	return ""
}

// Discover computes the watch set of the package in pkgDir with
// `go list -e -deps -json` run from pkgDir, using opts' Env, Tags and
// module flags (-mod, -modfile) so it sees the files the build sees.
// With -e it also lists a package that does not compile yet (or is
// imported but missing inside a local module), so fixing it triggers a build.
func Discover(ctx context.Context, pkgDir string, opts Options) (WatchSet, error) {
	pkgDir, err := filepath.Abs(pkgDir)
	if err != nil {
		return WatchSet{}, err
	}
	args := []string{"list", "-e", "-deps", "-json=Dir,ImportPath,Module,EmbedFiles,Standard"}
	for _, f := range opts.Flags {
		// Only flags that change which files belong to the build; the rest
		// (ldflags, trimpath…) do not matter to go list.
		if strings.HasPrefix(f, "-mod=") || strings.HasPrefix(f, "-modfile=") || strings.HasPrefix(f, "--mod=") || strings.HasPrefix(f, "--modfile=") {
			args = append(args, f)
		}
	}
	if len(opts.Tags) > 0 {
		args = append(args, "-tags", strings.Join(opts.Tags, ","))
	}
	args = append(args, ".")
	out, err := run(ctx, opts, pkgDir, args, nil)
	if err != nil {
		if ctx.Err() != nil {
			return WatchSet{}, fmt.Errorf("go list in %s: cancelled: %w", pkgDir, ctx.Err())
		}
		return WatchSet{}, fmt.Errorf("find what %s depends on (go list): %w\n%s", pkgDir, err, strings.TrimSpace(out))
	}

	var pkgs []listPackage
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p listPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return WatchSet{}, fmt.Errorf("read go list output in %s: %w", pkgDir, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return WatchSet{}, fmt.Errorf("go list in %s listed no package", pkgDir)
	}
	// -deps lists dependencies first: the package itself comes last.
	self := pkgs[len(pkgs)-1]
	root := self.Module.localDir()
	if self.Module == nil || root == "" {
		return WatchSet{}, fmt.Errorf("%s is not inside a Go module: add a go.mod (go mod init) to build it", pkgDir)
	}

	ws := WatchSet{Module: filepath.Clean(root)}
	mods := map[string]string{} // module path → local dir
	for _, p := range pkgs {
		if d := p.Module.localDir(); d != "" {
			mods[p.Module.Path] = filepath.Clean(d)
		}
	}
	dirs := map[string]bool{}
	files := map[string]bool{}
	for _, d := range mods {
		files[filepath.Join(d, "go.mod")] = true
		files[filepath.Join(d, "go.sum")] = true
	}
	for _, p := range pkgs {
		if p.Standard {
			continue
		}
		dir := p.Dir
		if p.Module.localDir() == "" {
			if p.Module != nil || dir != "" {
				continue // a module from the module cache
			}
			// Imported but not found: if it belongs to a local module,
			// watch the folder it is expected in, so creating it builds.
			dir = missingDir(p.ImportPath, mods)
			if dir == "" {
				continue
			}
		}
		dir = filepath.Clean(dir)
		dirs[dir] = true
		for _, e := range p.EmbedFiles {
			files[filepath.Join(dir, e)] = true
		}
	}
	if gw, err := goWork(ctx, pkgDir, opts); err != nil {
		return WatchSet{}, err
	} else if gw != "" {
		files[gw] = true
		files[gw+".sum"] = true // go.work.sum
	}
	ws.Dirs = slices.Sorted(maps.Keys(dirs))
	ws.Files = slices.Sorted(maps.Keys(files))
	return ws, nil
}

// missingDir is where the package path would live inside one of the local
// modules, by longest module path prefix.
func missingDir(importPath string, mods map[string]string) string {
	best, dir := "", ""
	for mp, d := range mods {
		if strings.HasPrefix(importPath, mp+"/") && len(mp) > len(best) {
			best, dir = mp, filepath.Join(d, filepath.FromSlash(strings.TrimPrefix(importPath, mp+"/")))
		}
	}
	return dir
}

func goWork(ctx context.Context, pkgDir string, opts Options) (string, error) {
	out, err := run(ctx, opts, pkgDir, []string{"env", "GOWORK"}, nil)
	if err != nil {
		var exitErr *exec.ExitError
		if ctx.Err() == nil && errors.As(err, &exitErr) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
		}
		return "", fmt.Errorf("go env GOWORK in %s: %w", pkgDir, err)
	}
	gw := strings.TrimSpace(out)
	if gw == "" || gw == "off" {
		return "", nil
	}
	return filepath.Clean(gw), nil
}

// fallbackWatchSet is used when go list itself fails (a go.mod that does
// not parse): the package folder and the nearest go.mod/go.sum, where the
// fix will be made.
func fallbackWatchSet(pkgDir string) WatchSet {
	ws := WatchSet{Module: pkgDir, Dirs: []string{pkgDir}}
	for d := pkgDir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			ws.Module = d
			ws.Files = []string{filepath.Join(d, "go.mod"), filepath.Join(d, "go.sum")}
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return ws
}
