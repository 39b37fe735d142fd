package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
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
			return capError("the fetched tree", n, limit)
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

func capError(what string, n, limit int64) error {
	return fmt.Errorf("%w: %s reached %d MiB, over the cap of %d MiB — raise fetch_max_bytes in [supervisor] if the plugin really is that large",
		ErrTooLarge, what, n>>20, limit>>20)
}

// capTransport fails a response body with ErrTooLarge once it passed
// limit bytes: a download (an archive lands outside the staging folder
// before it is unpacked) stops at the cap with an error that says so.
type capTransport struct {
	base  http.RoundTripper
	limit int64
}

func newCapClient(limit int64) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DisableKeepAlives = true // a client per fetch: leave no idle connections behind
	return &http.Client{Transport: capTransport{base: base, limit: limit}}
}

func (t capTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		resp.Body = &capBody{ReadCloser: resp.Body, limit: t.limit}
	}
	return resp, err
}

type capBody struct {
	io.ReadCloser
	n, limit int64
}

func (b *capBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		return n, capError("the download", b.n, b.limit)
	}
	return n, err
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
