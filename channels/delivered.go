package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// On a cluster node the outbox lives in a partition's file, and the
// partition moves to another node when this one dies: the new owner
// restores the partition's last snapshot and replays the stream after it.
// What the outbox settled after that snapshot is in neither, and without
// more its messages would be delivered again. So after each settle the
// outbox notes the keys of the messages that left the queue for good
// (delivered, or suppressed for want of consent) in the partition's stream
// (OutboxOptions.Note); the new owner applies the note (ApplyDelivered)
// before its own deliveries start, and a key noted there is never
// delivered again: not while it is queued, and not when the journey step
// that made it runs again and enqueues it anew.
//
// What is left is the window of any outbox: a node that dies between a
// destination's answer and the note delivers that batch again, with the
// same idempotency keys.

// NoteDelivered is the kind of the outbox's notes (profiles.Store.Note).
const NoteDelivered = "outbox.delivered"

// deliveredNote is the body of a NoteDelivered note.
type deliveredNote struct {
	// At is when the messages were settled: their keys are kept from
	// then (RetentionConfig.Keys).
	At   time.Time `json:"at"`
	Keys []string  `json:"keys"`
}

// Noter keeps a note of the outbox's state where the next owner of its
// partition finds it: profiles.Store.Note on a cluster node. It returns
// false when profileID's partition is not the outbox's (nothing kept).
type Noter func(ctx context.Context, profileID string, body []byte) (bool, error)

// note notes the keys of settled, a batch that left the queue for good.
func (o *Outbox) note(ctx context.Context, settled []*Message) {
	if o.noter == nil || len(settled) == 0 {
		return
	}
	n := deliveredNote{At: o.now().UTC(), Keys: make([]string, len(settled))}
	for i, m := range settled {
		n.Keys[i] = m.Key
	}
	body, err := json.Marshal(n)
	if err != nil {
		o.log.Error("outbox: encode the note of delivered messages", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	tried := map[string]bool{}
	for _, m := range settled {
		if tried[m.ProfileID] {
			continue
		}
		tried[m.ProfileID] = true
		ok, err := o.noter(ctx, m.ProfileID, body)
		if err != nil {
			o.log.Error("outbox: note delivered messages for the partition's next owner; a node dying before the next snapshot would send them again",
				"destination", m.Destination, "messages", len(settled), "err", err)
			return
		}
		if ok {
			return
		}
	}
}

// ApplyDelivered applies a NoteDelivered note within tx: each key's
// message leaves the queue if it is there, and the key is kept so that it
// is not enqueued again.
func (o *Outbox) ApplyDelivered(tx *bbolt.Tx, body []byte) error {
	var n deliveredNote
	if err := json.Unmarshal(body, &n); err != nil {
		return fmt.Errorf("decode the note of delivered messages: %w", err)
	}
	keys, where, queue := tx.Bucket(bucketKeys), tx.Bucket(bucketWhere), tx.Bucket(bucketQueue)
	for _, k := range n.Keys {
		if k == "" {
			continue
		}
		v := keys.Get([]byte(k))
		if v == nil {
			// Not enqueued here yet: the step that makes it has not run
			// again since the snapshot. It never will enqueue it.
			if err := keys.Put([]byte(k), keyValue(0, n.At)); err != nil {
				return err
			}
			continue
		}
		seq := v[:8]
		w := where.Get(seq)
		if w == nil {
			continue // settled here already
		}
		dest, qk, _ := bytes.Cut(w, []byte{0})
		if lq := queue.Bucket(dest); lq != nil {
			if err := lq.Delete(qk); err != nil {
				return err
			}
		}
		if err := where.Delete(seq); err != nil {
			return err
		}
	}
	return nil
}
