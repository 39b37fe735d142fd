package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/plugvisor/plugvisor/transport"
)

// checkpoint is the saved state of a plugin: every scope, and which
// version wrote it (so a restore into another version can migrate).
type checkpoint struct {
	meta   transport.RestoreMeta
	scopes transport.Scopes
	at     time.Time
}

// store keeps the latest checkpoint of each plugin in a bbolt file under
// state_dir, so state survives crashes and host restarts.
type store struct {
	db   *bolt.DB
	path string
}

var bucket = []byte("checkpoints")

// ErrStoreDamaged is wrapped when state.db cannot be read safely. The
// daemon refuses to start on it; Options.ResetDamagedState (the
// --reset-state flag) moves the file aside and starts with empty state.
var ErrStoreDamaged = errors.New("checkpoint store is damaged")

// openStore opens state.db and checks every page of it first: bbolt
// panics on a damaged page when it meets one, so a damaged file is found
// here, at start, rather than by a crash in the middle of a checkpoint.
func openStore(dir string, reset bool, log func(string)) (*store, error) {
	path := filepath.Join(dir, "state.db")
	st, err := openCheckedStore(path)
	if !errors.Is(err, ErrStoreDamaged) || !reset {
		return st, err
	}
	aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside: %w", err, rerr)
	}
	log(fmt.Sprintf("%v — moved it to %s and starting with empty state", err, aside))
	return openCheckedStore(path)
}

func openCheckedStore(path string) (st *store, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := checkStore(path); err != nil {
			return nil, err
		}
	}
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil { // damaged between the check and now
			err = damaged(path, fmt.Errorf("%v", r))
		}
		if err != nil && db != nil {
			db.Close()
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, damaged(path, err)
	}
	return &store{db: db, path: path}, nil
}

// checkStore reads every page of the file. It opens it read-only, which
// reads only the checksummed meta pages; the rest is read by Tx.Check,
// which turns bbolt's panics into errors. (Opened read-write, bbolt reads
// the freelist inside Open, and a panic there would leave the file mapped
// and locked.)
func checkStore(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, fmt.Errorf("%v", r))
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	var problems []error
	if err := db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() { // read to the end: Check's goroutine sends every problem
			if len(problems) < 3 {
				problems = append(problems, e)
			}
		}
		return nil
	}); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return damaged(path, errors.Join(problems...))
	}
	return nil
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open checkpoint store %s: %w (is another plugvisor using this state_dir?)", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return damaged(path, err)
	}
	return fmt.Errorf("open checkpoint store %s: %w", path, err)
}

// damaged is the one line a user sees: which file, what is wrong, the way out.
func damaged(path string, cause error) error {
	// bbolt reports a page it could not read as "panic: …": say what it is.
	msg := strings.ReplaceAll(strings.ReplaceAll(cause.Error(), "panic: ", ""), "\n", "; ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Errorf("%w: %s (%s) — start with --reset-state to move it aside and begin with empty state, or restore a backup", ErrStoreDamaged, path, msg)
}

// guard turns a bbolt panic (a page damaged after start) into an error.
func (s *store) guard(err *error) {
	if r := recover(); r != nil {
		*err = damaged(s.path, fmt.Errorf("%v", r))
	}
}

func (s *store) save(plugin string, ck *checkpoint) (err error) {
	defer s.guard(&err)
	blob := transport.RestorePayload(ck.meta, ck.scopes)
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(plugin), blob)
	})
}

func (s *store) load(plugin string) (_ *checkpoint, err error) {
	defer s.guard(&err)
	var blob []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucket).Get([]byte(plugin)); v != nil {
			blob = append([]byte(nil), v...)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if blob == nil {
		return nil, nil
	}
	meta, scopes, err := transport.ParseRestore(blob)
	if err != nil {
		return nil, fmt.Errorf("checkpoint of %s is corrupt: %w", plugin, err)
	}
	return &checkpoint{meta: meta, scopes: scopes}, nil
}

func (s *store) close() error { return s.db.Close() }
