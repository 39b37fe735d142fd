package watcher

import (
	"context"
	"fmt"
	"os"
	"time"
)

// afterCheck, when set by a test, runs after every check of WaitStable.
var afterCheck func()

// WaitStable waits until path (symlinks followed) is a regular file whose
// size, mtime and identity are unchanged over two consecutive checks
// interval apart, and returns its info. Use it before acting on a binary
// that is being written in place or copied: a missing file, or one that
// keeps changing, is waited for until ctx ends.
func WaitStable(ctx context.Context, path string, interval time.Duration) (os.FileInfo, error) {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var prev os.FileInfo
	var why error
	for {
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			prev, why = nil, err
		case !fi.Mode().IsRegular():
			prev, why = nil, fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
		case prev != nil && !changed(prev, fi):
			return fi, nil
		default:
			prev, why = fi, fmt.Errorf("%s is still changing (size %d)", path, fi.Size())
		}
		if afterCheck != nil {
			afterCheck()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %s to be fully written: %w (last seen: %v)", path, ctx.Err(), why)
		case <-t.C:
		}
	}
}
