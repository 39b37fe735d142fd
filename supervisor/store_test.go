package supervisor_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugvisor/plugvisor/supervisor"
)

// damageStore overwrites state.db's pages from page 2 on (4 KiB pages; 0
// and 1 are the meta pages) with a byte pattern, as a bad disk or a stray
// write would; with keepFreelist the freelist pages the metas name stay.
func damageStore(t *testing.T, path string, keepFreelist bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	keep := map[int]bool{}
	if keepFreelist { // meta: 16-byte page header, magic, version, page size, flags, root (16), freelist pgid
		for m := 0; m < 2; m++ {
			keep[int(binary.LittleEndian.Uint64(b[m*page+16+32:]))] = true
		}
	}
	damaged := 0
	for pg := 2; pg*page < len(b); pg++ {
		if keep[pg] {
			continue
		}
		for i := pg * page; i < (pg+1)*page && i < len(b); i++ {
			b[i] = byte(0xA5 ^ i)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatalf("state.db (%d bytes): no page to damage", len(b))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged state.db: New refuses with one line naming the file and the
// way out, without a panic; ResetDamagedState moves the file aside and
// starts with empty state.
func TestDamagedStoreRefusedThenReset(t *testing.T) {
	for _, c := range []struct {
		name         string
		keepFreelist bool
	}{{"freelist and data pages", false}, {"data pages", true}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var opts supervisor.Options
			opts.StateDir, opts.StopGrace.Duration = dir, 300*time.Millisecond
			sup, err := supervisor.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := sup.Add("clicks", helperSpec("plugin"))
			call(t, p, "count", `"k"`)
			call(t, p, "count", `"k"`)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := sup.Close(ctx); err != nil { // checkpoints on the way out
				t.Fatal(err)
			}
			db := filepath.Join(dir, "state.db")
			damageStore(t, db, c.keepFreelist)

			_, err = supervisor.New(opts)
			if !errors.Is(err, supervisor.ErrStoreDamaged) {
				t.Fatalf("New on a damaged store: want ErrStoreDamaged, got %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, db) || !strings.Contains(msg, "--reset-state") {
				t.Fatalf("want one line naming %s and --reset-state, got %q", db, msg)
			}
			t.Log(msg)
			if _, err := os.Stat(db); err != nil {
				t.Fatalf("a refusal must leave the file alone: %v", err)
			}

			opts.ResetDamagedState = true
			sup, err = supervisor.New(opts)
			if err != nil {
				t.Fatalf("New with ResetDamagedState: %v", err)
			}
			defer sup.Close(ctx)
			aside, _ := filepath.Glob(db + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("want the damaged file moved aside once, found %v", aside)
			}
			p, _ = sup.Add("clicks", helperSpec("plugin"))
			if got := call(t, p, "count", `"k"`); got != "1" {
				t.Fatalf("count on empty state = %s, want 1", got)
			}
		})
	}
}
