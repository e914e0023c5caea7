package profiles

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"
)

// A sidecar is a record a processor keeps about one profile (the rules
// engine's computed-trait state, a journey's live instance), stored in the
// profiles bucket right after the profile's own record: its key is the
// profile id, a 0x00 byte, then the sidecar's name. A person's profile and
// sidecars usually share one B-tree page, so the commit of an event writes
// one page for all of them instead of one per bucket: at peak, the pages
// a commit writes are what bounds ingestion.
//
// Names are the processor's to choose; a processor prefixes them with its
// own tag ("r", "a\x00…") so they never collide. A processor removes its
// sidecars when it forgets a profile (merged away); erasing a profile
// removes whatever sidecars are left.

// SidecarKey is the key of a sidecar in the profiles bucket.
func SidecarKey(profileID, name string) []byte {
	k := make([]byte, 0, len(profileID)+1+len(name))
	k = append(k, profileID...)
	k = append(k, 0)
	return append(k, name...)
}

// Sidecars is the profiles bucket seen for sidecars within one
// transaction. Values returned by Get and Scan are valid only while the
// transaction lasts (bbolt's rule). Like the transaction, it is for one
// goroutine at a time.
type Sidecars struct {
	b *bbolt.Bucket
	// key is where Get, Put and Delete build their keys: bbolt copies a
	// key it keeps, so one buffer serves every call of the transaction
	// (a journey event reads and writes a dozen sidecars). scan is
	// Scan's, apart, since fn may call Get.
	key, scan *[]byte
}

// SidecarsIn opens the sidecars of tx's profile store file.
func SidecarsIn(tx *bbolt.Tx) (Sidecars, error) {
	b := tx.Bucket(bucketProfiles)
	if b == nil {
		return Sidecars{}, fmt.Errorf("profiles bucket missing: the profile store must be opened first")
	}
	return Sidecars{b: b, key: new([]byte), scan: new([]byte)}, nil
}

// keyOf builds a sidecar's key in the scratch buffer, valid until the
// next call.
func (s Sidecars) keyOf(profileID, name string) []byte {
	k := append((*s.key)[:0], profileID...)
	k = append(k, 0)
	k = append(k, name...)
	*s.key = k
	return k
}

// Get returns a sidecar's value, or nil.
func (s Sidecars) Get(profileID, name string) []byte {
	return s.b.Get(s.keyOf(profileID, name))
}

// Put writes a sidecar.
func (s Sidecars) Put(profileID, name string, v []byte) error {
	if err := s.b.Put(s.keyOf(profileID, name), v); err != nil {
		return fmt.Errorf("put sidecar %q of %s: %w", name, profileID, err)
	}
	return nil
}

// Delete removes a sidecar (none is fine).
func (s Sidecars) Delete(profileID, name string) error {
	if err := s.b.Delete(s.keyOf(profileID, name)); err != nil {
		return fmt.Errorf("delete sidecar %q of %s: %w", name, profileID, err)
	}
	return nil
}

// Scan calls fn, in key order, with each sidecar of a profile whose name
// starts with prefix. fn must not write to the bucket; collect first.
func (s Sidecars) Scan(profileID, prefix string, fn func(name string, v []byte) error) error {
	// The start key is built in the scan buffer, taken for the scan's
	// time so that a Scan within fn builds its own.
	start := append(append(append((*s.scan)[:0], profileID...), 0), prefix...)
	*s.scan = nil
	defer func() { *s.scan = start[:0] }()
	skip := len(profileID) + 1
	c := s.b.Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, start); k, v = c.Next() {
		if err := fn(string(k[skip:]), v); err != nil {
			return err
		}
	}
	return nil
}

// deleteSidecars removes every sidecar of a profile.
func deleteSidecars(b *bbolt.Bucket, profileID string) error {
	if _, err := deletePrefix(b, SidecarKey(profileID, "")); err != nil {
		return fmt.Errorf("delete sidecars of %s: %w", profileID, err)
	}
	return nil
}

// deletePrefix removes the keys of b that start with prefix and returns
// how many there were.
func deletePrefix(b *bbolt.Bucket, prefix []byte) (int, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// isProfileKey tells a profile's own record from its sidecars.
func isProfileKey(k []byte) bool { return len(k) == idLen }

// MigrateToSidecars moves every record of a bucket written by an earlier
// version into sidecars, in transactions of a bounded size, then deletes
// the bucket. name maps an old key to the profile id and sidecar name it
// moves to; ok false leaves the record behind (dropped with the bucket),
// and so does a record of a profile that no longer exists (earlier
// versions left some behind an erasure). It returns how many records
// moved; a missing bucket moves none. An interrupted migration resumes
// where it stopped at the next call.
func MigrateToSidecars(db *bbolt.DB, bucket []byte, name func(k []byte) (profileID, sidecar string, ok bool)) (int, error) {
	return migrateToSidecars(db, bucket, name, 20000)
}

func migrateToSidecars(db *bbolt.DB, bucket []byte, name func(k []byte) (string, string, bool), chunk int) (int, error) {
	moved := 0
	for {
		done := false
		err := db.Update(func(tx *bbolt.Tx) error {
			old := tx.Bucket(bucket)
			if old == nil {
				done = true
				return nil
			}
			sc, err := SidecarsIn(tx)
			if err != nil {
				return err
			}
			var keys [][]byte
			c := old.Cursor()
			for k, v := c.First(); k != nil && len(keys) < chunk; k, v = c.Next() {
				keys = append(keys, bytes.Clone(k))
				if pid, n, ok := name(k); ok && sc.b.Get([]byte(pid)) != nil {
					if err := sc.Put(pid, n, bytes.Clone(v)); err != nil {
						return err
					}
					moved++
				}
			}
			if len(keys) < chunk {
				done = true
				if err := tx.DeleteBucket(bucket); err != nil {
					return fmt.Errorf("drop migrated bucket %s: %w", bucket, err)
				}
				return nil
			}
			for _, k := range keys {
				if err := old.Delete(k); err != nil {
					return fmt.Errorf("migrate bucket %s: %w", bucket, err)
				}
			}
			return nil
		})
		if err != nil {
			return moved, fmt.Errorf("move %s into sidecars: %w", bucket, err)
		}
		if done {
			return moved, nil
		}
	}
}
