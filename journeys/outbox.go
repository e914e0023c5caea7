package journeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// Deliverer takes one action out of the outbox. An error leaves the action
// in the outbox for the next try.
type Deliverer func(ctx context.Context, a Action) error

// DrainOutbox hands pending actions to deliver in the order they were
// recorded, removing those delivered in one transaction at the end (or at
// the first failure); it returns how many it delivered. The action's Key
// is its idempotency key: a crash after delivery and before removal
// delivers it again with the same key. One removal per action would cost
// a commit, two fsyncs and the file's single writer lock each, which
// ingestion waits for.
func (e *Engine) DrainOutbox(ctx context.Context, deliver Deliverer, limit int) (int, error) {
	type item struct {
		k []byte
		a Action
	}
	var items []item
	err := e.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(items) < limit; k, v = c.Next() {
			var a Action
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode outbox action: %w", err)
			}
			items = append(items, item{k: append([]byte(nil), k...), a: a})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	var failed error
	for _, it := range items {
		if failed = deliver(ctx, it.a); failed != nil {
			break
		}
		n++
	}
	if n > 0 {
		err := e.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketOutbox)
			for _, it := range items[:n] {
				if err := b.Delete(it.k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, failed
}

// ApplyTraits is the part of delivery that stays inside Cartera: a
// set_trait action becomes an identify event on the profile, with the
// action's key as messageId, so a repeat is a no-op. It reports whether it
// handled the action.
func ApplyTraits(ctx context.Context, st *profiles.Store, a Action, now time.Time) (bool, error) {
	if a.Action != ActSetTrait {
		return false, nil
	}
	name, _ := a.Detail["trait"].(string)
	ev := &profiles.Event{
		Type: profiles.TypeIdentify, MessageID: "journey:" + a.Key,
		Traits:    map[string]any{name: a.Detail["value"]},
		Timestamp: a.At, ReceivedAt: now, Source: profiles.SourceCartera,
	}
	_, err := st.IngestFor(ctx, a.Profile, ev)
	if errors.Is(err, profiles.ErrNotFound) {
		return true, nil // the person is gone: nothing to set
	}
	return true, err
}
