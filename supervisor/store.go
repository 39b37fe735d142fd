package supervisor

import (
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

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
	db *bolt.DB
}

var bucket = []byte("checkpoints")

func openStore(dir string) (*store, error) {
	path := filepath.Join(dir, "state.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open checkpoint store %s: %w (is another plugvisor using this state_dir?)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpoint store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) save(plugin string, ck *checkpoint) error {
	blob := transport.RestorePayload(ck.meta, ck.scopes)
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(plugin), blob)
	})
}

func (s *store) load(plugin string) (*checkpoint, error) {
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
