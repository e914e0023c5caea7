package journeys

import (
	"bytes"
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
// recorded and settles them in one transaction at the end: delivered ones
// leave the outbox; a failed one stays, is tried again after a backoff,
// and after OutboxMaxAttempts tries (at once if it cannot be read) moves
// to the dead letters, so one poisoned action never holds back the rest.
// It returns how many it delivered, and the first failure. A cancelled
// ctx stops the drain without counting the interrupted action as a
// failure. The action's Key is its idempotency key: a crash after
// delivery and before removal delivers it again with the same key. One
// removal per action would cost a commit, two fsyncs and the file's
// single writer lock each, which ingestion waits for.
func (e *Engine) DrainOutbox(ctx context.Context, deliver Deliverer, limit int) (int, error) {
	type item struct {
		k   []byte
		a   *Action
		err error
	}
	now := e.clock.Now()
	var items, poisoned []item
	err := e.db.View(func(tx *bbolt.Tx) error {
		fails := tx.Bucket(bucketOutboxFails)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(items) < limit; k, v = c.Next() {
			if _, notBefore := outboxFails(fails, k); notBefore > now.UnixNano() {
				continue // failed lately: its next try is not due
			}
			a := &Action{}
			if err := json.Unmarshal(v, a); err != nil {
				poisoned = append(poisoned, item{k: bytes.Clone(k), err: fmt.Errorf("decode outbox action: %w", err)})
				continue
			}
			items = append(items, item{k: bytes.Clone(k), a: a})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var delivered, failed []item
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		err := deliver(ctx, *it.a)
		if err == nil {
			delivered = append(delivered, it)
			continue
		}
		if ctx.Err() != nil {
			break // a shutdown, not a failure: the action stays as it was
		}
		it.err = err
		failed = append(failed, it)
	}
	var dead []*DeadAction
	if len(delivered)+len(failed)+len(poisoned) > 0 {
		err := e.db.Update(func(tx *bbolt.Tx) error {
			dead = dead[:0]
			b, fails := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxFails)
			for _, it := range delivered {
				if err := b.Delete(it.k); err != nil {
					return err
				}
				if fails != nil {
					if err := fails.Delete(it.k); err != nil {
						return err
					}
				}
			}
			for _, it := range append(poisoned, failed...) {
				d, err := settleFailure(tx, it.k, it.a, it.err, now)
				if err != nil {
					return err
				}
				if d != nil {
					dead = append(dead, d)
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("settle journey outbox: %w", err)
		}
	}
	for _, d := range dead {
		e.log.Error("journey action moved to the dead letters", "seq", d.Seq, "journey", d.Journey, "step", d.Step, "action", d.Action, "attempts", d.Attempts, "err", d.Error)
	}
	switch {
	case ctx.Err() != nil:
		return len(delivered), ctx.Err()
	case len(failed) > 0:
		return len(delivered), fmt.Errorf("deliver journey actions: %d of %d failed, first: %w", len(failed), len(items), failed[0].err)
	case len(poisoned) > 0:
		return len(delivered), fmt.Errorf("journey outbox: %d unreadable actions moved to the dead letters, first: %w", len(poisoned), poisoned[0].err)
	}
	return len(delivered), nil
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
