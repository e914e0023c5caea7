package channels

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// RetentionConfig says how long the outbox keeps what it no longer needs
// to deliver.
type RetentionConfig struct {
	// Keys is how long the idempotency key of a settled message is kept:
	// a replay of the same step within it is not enqueued again. The
	// journey engine replays at most what it had not handed over at a
	// crash, minutes old.
	Keys time.Duration `yaml:"keys"`
	// DeadLetters is how long a dead letter waits for an admin's retry
	// or drop before it is deleted.
	DeadLetters time.Duration `yaml:"dead_letters"`
}

// DefaultRetentionConfig keeps keys and dead letters 30 days.
func DefaultRetentionConfig() RetentionConfig {
	return RetentionConfig{Keys: 30 * 24 * time.Hour, DeadLetters: 30 * 24 * time.Hour}
}

// Validate names the first bad setting; field is where the config sits
// ("channels.retention").
func (c RetentionConfig) Validate(field string) error {
	switch {
	case c.Keys < time.Hour:
		return fmt.Errorf("%s.keys: want at least 1h, got %s", field, c.Keys)
	case c.DeadLetters < time.Hour:
		return fmt.Errorf("%s.dead_letters: want at least 1h, got %s", field, c.DeadLetters)
	}
	return nil
}

// prunePage is how many records one pruning transaction looks at, so that
// ingestion never waits long for the file's writer lock.
const prunePage = 1000

// Prune deletes the idempotency keys of settled messages older than
// cfg.Keys (a key of a message still queued or dead stays) and dead
// letters older than cfg.DeadLetters. Keys written by earlier versions
// carry no time: they are stamped now and go one retention later.
func (o *Outbox) Prune(cfg RetentionConfig) (keys, dead int, err error) {
	now := o.now()
	keyCut, deadCut := now.Add(-cfg.Keys).UnixNano(), now.Add(-cfg.DeadLetters)
	var after []byte
	for {
		var n, seen int
		err := o.db.Update(func(tx *bbolt.Tx) error {
			n, seen = 0, 0
			kb, where, deadB := tx.Bucket(bucketKeys), tx.Bucket(bucketWhere), tx.Bucket(bucketDead)
			c := kb.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var stamp, drop [][]byte
			for ; k != nil && seen < prunePage; k, v = c.Next() {
				seen++
				after = bytes.Clone(k)
				switch {
				case len(v) == 8:
					stamp = append(stamp, bytes.Clone(k))
				case len(v) == 16 && int64(binary.BigEndian.Uint64(v[8:])) < keyCut:
					if where.Get(v[:8]) == nil && deadB.Get(v[:8]) == nil {
						drop = append(drop, bytes.Clone(k))
					}
				}
			}
			for _, k := range stamp {
				if err := kb.Put(k, keyValue(binary.BigEndian.Uint64(kb.Get(k)), now)); err != nil {
					return err
				}
			}
			for _, k := range drop {
				if err := kb.Delete(k); err != nil {
					return err
				}
			}
			n = len(drop)
			return nil
		})
		if err != nil {
			return keys, dead, fmt.Errorf("prune outbox keys: %w", err)
		}
		keys += n
		if seen < prunePage {
			break
		}
	}
	err = o.db.Update(func(tx *bbolt.Tx) error {
		dead = 0
		b := tx.Bucket(bucketDead)
		var drop [][]byte
		err := b.ForEach(func(k, v []byte) error {
			m := &Message{}
			if json.Unmarshal(v, m) != nil {
				return nil // left for an admin to see
			}
			at := m.DeadAt
			if at.IsZero() {
				at = m.NextAt // dead letters of earlier versions: their last try
			}
			if at.Before(deadCut) {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		dead = len(drop)
		return nil
	})
	if err != nil {
		return keys, 0, fmt.Errorf("prune dead letters: %w", err)
	}
	return keys, dead, nil
}

// RunPruner prunes every interval until ctx ends.
func (o *Outbox) RunPruner(ctx context.Context, cfg RetentionConfig, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			keys, dead, err := o.Prune(cfg)
			if err != nil {
				o.log.Error("prune outbox", "err", err)
				continue
			}
			if keys+dead > 0 {
				o.log.Info("outbox pruned", "keys", keys, "dead_letters", dead)
			}
		}
	}
}

// keyValue is a key's record: the message's seq and when it was enqueued.
func keyValue(seq uint64, at time.Time) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, seq)
	binary.BigEndian.PutUint64(v[8:], uint64(max(at.UnixNano(), 0)))
	return v
}

// ErasePerson removes what the outbox holds about an erased person, in
// the erasure's transaction: every dead letter of theirs, and every queued
// message except those keep says must still go (the erasure's own
// removals from ad audiences, a pass void). Their messages carry personal
// data (an audience change the person's emails and phones, a send the
// properties of the event that triggered it, an error the relay's words),
// and a send to someone erased would only fail for good. It returns how
// many messages it removed; their keys stay spent.
func (o *Outbox) ErasePerson(tx *bbolt.Tx, profileID string, keep func(*Message) bool) (int, error) {
	n := 0
	dead := tx.Bucket(bucketDead)
	var drop [][]byte
	err := dead.ForEach(func(k, v []byte) error {
		m := &Message{}
		if json.Unmarshal(v, m) == nil && m.ProfileID == profileID {
			drop = append(drop, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range drop {
		if err := dead.Delete(k); err != nil {
			return n, err
		}
		n++
	}
	queue, where := tx.Bucket(bucketQueue), tx.Bucket(bucketWhere)
	err = queue.ForEachBucket(func(name []byte) error {
		lq := queue.Bucket(name)
		var drop []*Message
		c := lq.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			m := &Message{}
			if json.Unmarshal(v, m) != nil || m.ProfileID != profileID || (keep != nil && keep(m)) {
				continue
			}
			drop = append(drop, m)
		}
		for _, m := range drop {
			if err := lq.Delete(queueKey(m.NextAt, m.Seq)); err != nil {
				return err
			}
			if err := where.Delete(u64(m.Seq)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("erase person from the outbox: %w", err)
	}
	return n, nil
}
