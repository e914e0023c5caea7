package storetest

import (
	"bytes"
	"testing"

	"go.etcd.io/bbolt"
)

// profileIDLen is the length of a profile id (24 hex digits).
const profileIDLen = 24

// UnmoveSidecars puts the sidecars whose name starts with prefix back in
// a bucket of their own, as versions before sidecars kept them: the old
// key of each is key(profile id, name after the prefix). It returns how
// many it moved; the file must not be open elsewhere for writing.
func UnmoveSidecars(t testing.TB, db *bbolt.DB, prefix string, bucket []byte, key func(profileID, rest string) []byte) int {
	t.Helper()
	n := 0
	err := db.Update(func(tx *bbolt.Tx) error {
		old, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		profiles := tx.Bucket([]byte("profiles"))
		var keys [][]byte
		c := profiles.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) <= profileIDLen || k[profileIDLen] != 0 || !bytes.HasPrefix(k[profileIDLen+1:], []byte(prefix)) {
				continue
			}
			pid, rest := string(k[:profileIDLen]), string(k[profileIDLen+1+len(prefix):])
			if err := old.Put(key(pid, rest), bytes.Clone(v)); err != nil {
				return err
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := profiles.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		t.Fatalf("move sidecars %q back to %s: %v", prefix, bucket, err)
	}
	return n
}
