package console

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// The console's bucket in the gateway's bbolt file:
//
//	console_audit  8-byte big-endian sequence (NextSequence) → JSON Entry
var bucketAudit = []byte("console_audit")

// Entry is one line of the audit log: who did what, when. Target names
// people by profile id, never by email or phone.
type Entry struct {
	At     time.Time `json:"at"`
	User   string    `json:"user"`
	Role   Role      `json:"role,omitempty"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Audit is the console's audit log.
type Audit struct {
	db *bbolt.DB
}

// OpenAudit makes the audit bucket if it is missing.
func OpenAudit(db *bbolt.DB) (*Audit, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketAudit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open console audit log: %w", err)
	}
	return &Audit{db: db}, nil
}

// Record appends an entry.
func (a *Audit) Record(e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	err = a.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		return b.Put(k[:], v)
	})
	if err != nil {
		return fmt.Errorf("record audit entry: %w", err)
	}
	return nil
}

// prunePage bounds the entries one pruning transaction deletes.
const prunePage = 5000

// Prune deletes the entries made before cutoff, oldest first, a page per
// transaction, and returns how many. Entries are in the order they were
// made, so it stops at the first one made at or after cutoff.
func (a *Audit) Prune(cutoff time.Time) (int, error) {
	total := 0
	for {
		n, more := 0, false
		err := a.db.Update(func(tx *bbolt.Tx) error {
			n, more = 0, false
			b := tx.Bucket(bucketAudit)
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				if n == prunePage {
					more = true
					return nil
				}
				var e Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("decode audit entry %x: %w", k, err)
				}
				if !e.At.Before(cutoff) {
					return nil
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune audit log: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

// Recent returns up to limit entries, newest first.
func (a *Audit) Recent(limit int) ([]Entry, error) {
	var out []Entry
	err := a.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
