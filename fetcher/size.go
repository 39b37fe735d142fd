package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"
)

// ErrTooLarge is wrapped when a fetch exceeds its size cap.
var ErrTooLarge = errors.New("fetch exceeds the size cap")

// sizePoll is how often a running fetch's folder is measured.
const sizePoll = 100 * time.Millisecond

// watchSize measures dir while a fetch writes into it and cancels the
// returned context once it holds more than limit bytes, which stops git
// or the HTTP transfer. stop ends the watch, measures once more and
// returns the cap error if the cap was exceeded, else nil.
func watchSize(ctx context.Context, dir string, limit int64) (context.Context, func() error) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	ended := make(chan struct{})
	over := func() error {
		if n := dirSize(dir); n > limit {
			return fmt.Errorf("%w: the fetched tree reached %d MiB, over the cap of %d MiB — raise fetch_max_bytes in [supervisor] if the plugin really is that large",
				ErrTooLarge, n>>20, limit>>20)
		}
		return nil
	}
	go func() {
		defer close(ended)
		t := time.NewTicker(sizePoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := over(); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return ctx, func() error {
		close(done)
		<-ended
		err := context.Cause(ctx)
		cancel(nil)
		if errors.Is(err, ErrTooLarge) {
			return err
		}
		return over()
	}
}

// dirSize adds up the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
