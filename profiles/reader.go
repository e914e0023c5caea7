package profiles

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrInUse means a store's file is open for writing by another process
// (a running cartera serve), so it cannot be read beside it.
var ErrInUse = errors.New("the data file is in use by a running cartera serve")

// Reader reads profiles from a store's file without writing to it, for
// commands that look at a person (cartera preview). It never creates the
// file, and holds only a shared lock.
type Reader struct{ s *Store }

// OpenReader opens the bbolt file at path read-only. cfg must be the one
// the store runs with, so identifiers normalize as on ingestion.
func OpenReader(path string, cfg Config) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open profile store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open profile store %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open profile store %s: %w", path, err)
	}
	ok := false
	_ = db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketProfiles) != nil && tx.Bucket(bucketIdentities) != nil
		return nil
	})
	if !ok {
		_ = db.Close()
		return nil, fmt.Errorf("open profile store %s: not a cartera data file", path)
	}
	return &Reader{s: &Store{db: db, cfg: cfg, res: newResolver(cfg.Identity)}}, nil
}

// Lookup returns the profile an identifier names, as Store.Lookup does.
func (r *Reader) Lookup(id Identifier) (*Profile, error) { return r.s.Lookup(id) }

// Close releases the file.
func (r *Reader) Close() error { return r.s.db.Close() }
