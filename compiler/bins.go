package compiler

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const currentLink = "current"

// staleTemp is the age after which a leftover .tmp-* file (from a daemon
// that died mid-build) is removed by the next build of that plugin.
const staleTemp = time.Hour

var buildID = regexp.MustCompile(`^[0-9a-f]{12}$`)

// The bin/ layout, here only: BinDir/<plugin>/<plugin>-<build id> per
// build (the id is 12 hex digits of the binary's SHA-256), and
// BinDir/<plugin>/current, a link to the live one.

// BuildPath is where the build id of plugin lives.
func BuildPath(binDir, plugin, id string) string {
	return filepath.Join(binDir, plugin, plugin+"-"+id)
}

// BuildIDOf returns the build id of a path BuildPath made for plugin.
func BuildIDOf(plugin, path string) (string, bool) {
	id, ok := strings.CutPrefix(filepath.Base(path), plugin+"-")
	return id, ok && buildID.MatchString(id)
}

// Current resolves BinDir/<plugin>/current to the absolute path of the live
// build. The error wraps fs.ErrNotExist when there is no current build or
// its target is gone.
func Current(binDir, plugin string) (string, error) {
	if err := checkName(plugin); err != nil {
		return "", err
	}
	dir := filepath.Join(binDir, plugin)
	target, err := os.Readlink(filepath.Join(dir, currentLink))
	if err != nil {
		return "", fmt.Errorf("plugin %s has no current build: %w", plugin, err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(dir, target)
	}
	target = filepath.Clean(target)
	if _, err := os.Stat(target); err != nil {
		return target, fmt.Errorf("current build of plugin %s is missing: %w", plugin, err)
	}
	return target, nil
}

type build struct {
	path string
	mod  time.Time
}

// Builds lists the kept builds of plugin, newest first (by mtime), as
// absolute paths. No bin folder yet means no builds and no error.
func Builds(binDir, plugin string) ([]string, error) {
	if err := checkName(plugin); err != nil {
		return nil, err
	}
	bs, err := builds(filepath.Join(binDir, plugin), plugin)
	if err != nil {
		return nil, fmt.Errorf("list builds of plugin %s: %w", plugin, err)
	}
	paths := make([]string, len(bs))
	for i, b := range bs {
		paths[i] = b.path
	}
	return paths, nil
}

func builds(dir, plugin string) ([]build, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var bs []build
	for _, e := range ents {
		if _, ok := BuildIDOf(plugin, e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		bs = append(bs, build{filepath.Join(dir, e.Name()), info.ModTime()})
	}
	slices.SortFunc(bs, func(a, b build) int {
		if c := b.mod.Compare(a.mod); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	return bs, nil
}

// SetCurrent atomically re-points BinDir/<plugin>/current at binary: a
// symlink made under a temp name is renamed over the old link, so a reader
// sees the old target or the new one, never none. A binary inside the
// plugin's folder is linked by its name, so the bin dir can be moved.
func SetCurrent(binDir, plugin, binary string) error {
	if err := checkName(plugin); err != nil {
		return err
	}
	dir := filepath.Join(binDir, plugin)
	abs, err := filepath.Abs(binary)
	if err != nil {
		return fmt.Errorf("set current build of %s: %w", plugin, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return fmt.Errorf("set current build of %s: %w", plugin, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("set current build of %s: %s is not a regular file", plugin, abs)
	}
	target := abs
	if filepath.Dir(abs) == filepath.Clean(dir) {
		target = filepath.Base(abs)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("set current build of %s: %w", plugin, err)
	}
	for {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		tmp := filepath.Join(dir, ".tmp-current-"+hex.EncodeToString(rnd[:]))
		err := os.Symlink(target, tmp)
		if errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("set current build of %s: %w", plugin, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, currentLink)); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("set current build of %s: %w", plugin, err)
		}
		return nil
	}
}

// prune deletes builds beyond the newest keep, never current or the build
// just made, and temp files left by a build that died. Best effort: a
// failure to delete only leaves a file behind.
func prune(dir, plugin string, keep int, current, just string) {
	bs, err := builds(dir, plugin)
	if err != nil {
		return
	}
	kept := 0
	for _, b := range bs {
		if b.path == current || b.path == just {
			kept++
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		os.Remove(b.path)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
