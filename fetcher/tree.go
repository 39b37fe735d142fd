package fetcher

// The fetched tree: checked for links and special files, copied, and
// hashed into a revision when git names none.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// copyTree copies regular files and folders from src to dst, refusing
// symlinks and special files like checkTree does.
func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case info.Mode().IsRegular():
			return copyFile(p, out, info.Mode().Perm()&^0o022)
		default:
			return refuse(src, p, info)
		}
	})
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkTree walks the fetched tree without following links and refuses any
// symlink or special file: go-getter's DisableSymlinks does not stop git
// from checking links out, and a plugin tree is built and run from here.
func checkTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return refuse(root, p, info)
	})
}

func refuse(root, p string, info fs.FileInfo) error {
	rel, _ := filepath.Rel(root, p)
	if info.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("fetched tree has %s, which is not a regular file or folder (%v); plugvisor accepts only files and folders in fetched plugins", rel, info.Mode().Type())
	}
	target, err := os.Readlink(p)
	if err != nil {
		return err
	}
	where := ""
	if escapes(rel, target) {
		where = " escaping the folder"
	}
	return fmt.Errorf("fetched tree has a symlink %s -> %s%s; plugvisor refuses symlinks in fetched plugins", rel, target, where)
}

func escapes(rel, target string) bool {
	if filepath.IsAbs(target) {
		return true
	}
	j := filepath.Join(filepath.Dir(rel), target)
	return j == ".." || strings.HasPrefix(j, ".."+string(filepath.Separator))
}

// treeHash digests the sorted listing (path, kind, execute bit) and file
// contents, skipping .git folders whose bookkeeping churns on its own.
func treeHash(root string) (string, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		kind := "f"
		switch {
		case info.IsDir():
			kind = "d"
		case info.Mode()&0o111 != 0:
			kind = "x"
		}
		fmt.Fprintf(h, "%s %q\n", kind, filepath.ToSlash(rel))
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			fh := sha256.New()
			_, err = io.Copy(fh, f)
			f.Close()
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%x\n", fh.Sum(nil))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
