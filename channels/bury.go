package channels

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
)

// Bury puts messages straight into the dead letters, in a transaction of
// its own: deliveries a platform accepted and later reported failed (a
// Data Manager request whose processing FAILED), for an operator to see,
// retry or drop. A message whose key was used before is skipped; it
// returns how many were new. It does not change the caller's messages.
func (o *Outbox) Bury(msgs ...*Message) (int, error) {
	var buried []string // destinations of the new ones
	err := o.db.Update(func(tx *bbolt.Tx) error {
		buried = buried[:0]
		keys, dead, queue := tx.Bucket(bucketKeys), tx.Bucket(bucketDead), tx.Bucket(bucketQueue)
		for _, m := range msgs {
			if m.Key == "" || m.Destination == "" {
				return errors.New("bury: a message needs a key and a destination")
			}
			if keys.Get([]byte(m.Key)) != nil {
				continue
			}
			seq, err := queue.NextSequence()
			if err != nil {
				return err
			}
			c := *m
			c.Seq = seq
			now := o.now().UTC()
			if c.CreatedAt.IsZero() {
				c.CreatedAt = now
			}
			if c.DeadAt.IsZero() {
				c.DeadAt = now
			}
			v, err := json.Marshal(&c)
			if err != nil {
				return fmt.Errorf("encode message: %w", err)
			}
			if err := dead.Put(u64(seq), v); err != nil {
				return err
			}
			if err := keys.Put([]byte(c.Key), keyValue(seq, c.CreatedAt)); err != nil {
				return err
			}
			buried = append(buried, c.Destination)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bury messages: %w", err)
	}
	for _, d := range buried {
		o.metrics.Dead.WithLabelValues(d).Inc()
	}
	return len(buried), nil
}
