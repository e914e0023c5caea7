package channels

import (
	"go.etcd.io/bbolt"
)

// Sizes are the outbox's queue lengths by destination, and the number of
// dead letters.
type Sizes struct {
	Queued map[string]int `json:"queued"`
	Dead   int            `json:"dead"`
}

// Sizes counts the queued messages of each destination and the dead
// letters. It reads bbolt's bucket statistics, which walk the buckets'
// pages: fine for an operator's page, not for a hot path.
func (o *Outbox) Sizes() (Sizes, error) {
	s := Sizes{Queued: map[string]int{}}
	err := o.db.View(func(tx *bbolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		if err := q.ForEachBucket(func(name []byte) error {
			if n := q.Bucket(name).Stats().KeyN; n > 0 {
				s.Queued[string(name)] = n
			}
			return nil
		}); err != nil {
			return err
		}
		s.Dead = tx.Bucket(bucketDead).Stats().KeyN
		return nil
	})
	return s, err
}
