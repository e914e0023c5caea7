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

// Enqueuer hands an action to another durable queue in the same bbolt file
// (the channels' outbox) instead of delivering it: it prepares, outside any
// transaction, the write that enqueues the action, and the drain runs that
// write in the very transaction that removes the action from the journeys'
// outbox — the action is in one queue or the other, never in neither. A
// nil write (and no error): the action is not the enqueuer's, the
// Deliverer gets it. The write must be safe to run twice (a transaction
// may be retried).
type Enqueuer func(ctx context.Context, a Action) (write func(tx *bbolt.Tx) error, err error)

// DrainOutbox hands pending actions to deliver in the order they were
// recorded, removing those delivered in one transaction at the end (or at
// the first failure); it returns how many it delivered. The action's Key
// is its idempotency key: a crash after delivery and before removal
// delivers it again with the same key. One removal per action would cost
// a commit, two fsyncs and the file's single writer lock each, which
// ingestion waits for.
func (e *Engine) DrainOutbox(ctx context.Context, deliver Deliverer, limit int) (int, error) {
	return e.DrainOutboxTo(ctx, nil, deliver, limit)
}

// drained is an action on its way out of the outbox: its key, and the
// write that enqueues it elsewhere (nil: delivered already).
type drained struct {
	k     []byte
	write func(tx *bbolt.Tx) error
}

// DrainOutboxTo is DrainOutbox with an enqueuer: the actions enq takes are
// enqueued and removed in one transaction; the others go to deliver. Order
// is kept: the enqueues recorded before an action that deliver takes
// commit before it is delivered. A failed enqueue leaves that action, and
// those after it, in the outbox, and returns the error.
func (e *Engine) DrainOutboxTo(ctx context.Context, enq Enqueuer, deliver Deliverer, limit int) (int, error) {
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
	var pending []drained
	// commit removes what is pending, with its enqueues.
	commit := func() error {
		done, err := e.commitDrained(pending)
		n += done
		pending = nil
		return err
	}
	writes := false
	for _, it := range items {
		if enq != nil {
			w, err := enq(ctx, it.a)
			if err != nil {
				return n, errors.Join(fmt.Errorf("prepare journey action %s: %w", it.a.Key, err), commit())
			}
			if w != nil {
				pending, writes = append(pending, drained{k: it.k, write: w}), true
				continue
			}
		}
		if writes {
			if err := commit(); err != nil {
				return n, err
			}
			writes = false
		}
		if err := deliver(ctx, it.a); err != nil {
			return n, errors.Join(err, commit())
		}
		pending = append(pending, drained{k: it.k})
	}
	return n, commit()
}

// commitDrained removes actions from the outbox, running their enqueues in
// the same transaction. When an enqueue fails, the actions before it are
// removed (and enqueued) in a transaction of their own; it and those after
// it stay. It returns how many were removed.
func (e *Engine) commitDrained(ds []drained) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	failed, werr := -1, error(nil)
	err := e.db.Update(func(tx *bbolt.Tx) error {
		failed, werr = -1, nil
		b := tx.Bucket(bucketOutbox)
		for i, d := range ds {
			if d.write != nil {
				if err := d.write(tx); err != nil {
					failed, werr = i, err
					return err
				}
			}
			if err := b.Delete(d.k); err != nil {
				return err
			}
		}
		return nil
	})
	if failed < 0 {
		if err != nil {
			return 0, fmt.Errorf("remove delivered journey actions: %w", err)
		}
		return len(ds), nil
	}
	done, err := e.commitDrained(ds[:failed])
	return done, errors.Join(fmt.Errorf("enqueue journey action: %w", werr), err)
}

// ApplyTraits is the part of delivery that stays inside Cartera: a
// set_trait action becomes an identify event on the profile, with the
// action's key as messageId, so a repeat is a no-op. It reports whether it
// handled the action.
func ApplyTraits(ctx context.Context, st *profiles.Store, a Action, now time.Time) (bool, error) {
	d, ok := a.Detail.(TraitDetail)
	if !ok {
		return false, nil
	}
	ev := &profiles.Event{
		Type: profiles.TypeIdentify, MessageID: "journey:" + a.Key,
		Traits:    map[string]any{d.Trait: d.Value},
		Timestamp: a.At, ReceivedAt: now, Source: profiles.SourceCartera,
	}
	_, err := st.IngestFor(ctx, a.Profile, ev)
	if errors.Is(err, profiles.ErrNotFound) {
		return true, nil // the person is gone: nothing to set
	}
	return true, err
}
