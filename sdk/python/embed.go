// Package python carries the Python SDK (the plugvisor package next to
// this file) inside every binary that imports it, so a plugvisor binary
// copied anywhere can put the SDK of its own version on PYTHONPATH.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed plugvisor/*.py
var sdk embed.FS

// Version identifies the embedded SDK: a hash of its files, so every
// build of plugvisor that changes the SDK extracts into its own folder.
var Version = func() string {
	h := sha256.New()
	files, _ := fs.Glob(sdk, "plugvisor/*.py")
	for _, f := range files {
		b, _ := sdk.ReadFile(f)
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}()

// Extract writes the embedded SDK to dir/<Version>/plugvisor (once; an
// existing complete copy is reused) and returns dir/<Version>, the folder
// to put on PYTHONPATH.
func Extract(dir string) (string, error) {
	root := filepath.Join(dir, Version)
	if _, err := os.Stat(filepath.Join(root, "plugvisor", ".complete")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("python sdk: %w", err)
	}
	// Written aside and renamed into place, so a concurrent daemon or a
	// crash never leaves a half-written SDK on PYTHONPATH.
	tmp, err := os.MkdirTemp(dir, ".extract-")
	if err != nil {
		return "", fmt.Errorf("python sdk: %w", err)
	}
	defer os.RemoveAll(tmp)
	files, err := fs.Glob(sdk, "plugvisor/*.py")
	if err != nil {
		return "", err
	}
	if err := os.Mkdir(filepath.Join(tmp, "plugvisor"), 0o755); err != nil {
		return "", fmt.Errorf("python sdk: %w", err)
	}
	for _, f := range files {
		b, err := sdk.ReadFile(f)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, filepath.FromSlash(f)), b, 0o644); err != nil {
			return "", fmt.Errorf("python sdk: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "plugvisor", ".complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("python sdk: %w", err)
	}
	if err := os.Rename(tmp, root); err != nil {
		if _, serr := os.Stat(filepath.Join(root, "plugvisor", ".complete")); serr == nil {
			return root, nil // another process got there first
		}
		return "", fmt.Errorf("python sdk: %w", err)
	}
	return root, nil
}
