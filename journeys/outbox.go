package journeys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	return e.DrainOutboxTo(ctx, nil, deliver, limit)
}

// outboxItem is an action read from the outbox (a is nil when it could
// not be decoded) and, once tried, why it failed.
type outboxItem struct {
	k   []byte
	a   *Action
	err error
}

// drained is an action on its way out of the outbox: its key, and the
// write that enqueues it elsewhere (nil: delivered already).
type drained struct {
	k     []byte
	a     *Action
	write func(tx *bbolt.Tx) error
}

// DrainOutboxTo is DrainOutbox with an enqueuer: the actions enq takes are
// enqueued and removed in one transaction; the others go to deliver. Order
// is kept: the enqueues recorded before an action that deliver takes
// commit before it is delivered. A failed enqueue counts as a failed
// delivery of that action (backoff, then dead letters); the others go on.
func (e *Engine) DrainOutboxTo(ctx context.Context, enq Enqueuer, deliver Deliverer, limit int) (int, error) {
	if err := e.fence(); err != nil {
		return 0, err
	}
	now := e.clock.Now()
	var items, poisoned []outboxItem
	err := e.db.View(func(tx *bbolt.Tx) error {
		fails := tx.Bucket(bucketOutboxFails)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(items) < limit; k, v = c.Next() {
			if _, notBefore := outboxFails(fails, k); notBefore > now.UnixNano() {
				continue // failed lately: its next try is not due
			}
			a := &Action{}
			if err := json.Unmarshal(v, a); err != nil {
				poisoned = append(poisoned, outboxItem{k: bytes.Clone(k), err: fmt.Errorf("decode outbox action: %w", err)})
				continue
			}
			items = append(items, outboxItem{k: bytes.Clone(k), a: a})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var (
		n       int
		pending []drained
		failed  = poisoned
		nFailed int
		first   error
		dead    []*DeadAction
	)
	fail := func(it outboxItem, err error) {
		it.err = err
		failed = append(failed, it)
	}
	// settle commits what is pending (with its enqueues) and the failures.
	settle := func() error {
		for _, f := range failed {
			if f.a != nil {
				nFailed++
				if first == nil {
					first = f.err
				}
			}
		}
		done, d, werrs, err := e.settle(pending, failed, now)
		n += done
		dead = append(dead, d...)
		for _, werr := range werrs {
			nFailed++
			if first == nil {
				first = werr
			}
		}
		pending, failed = nil, nil
		return err
	}
	writes := false
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		if enq != nil {
			w, err := enq(ctx, *it.a)
			if err != nil {
				if ctx.Err() != nil {
					break // a shutdown, not a failure: the action stays as it was
				}
				fail(it, fmt.Errorf("prepare journey action %s: %w", it.a.Key, err))
				continue
			}
			if w != nil {
				pending, writes = append(pending, drained{k: it.k, a: it.a, write: w}), true
				continue
			}
		}
		if writes {
			if err := settle(); err != nil {
				return n, err
			}
			writes = false
		}
		if err := deliver(ctx, *it.a); err != nil {
			if ctx.Err() != nil {
				break
			}
			fail(it, err)
			continue
		}
		pending = append(pending, drained{k: it.k, a: it.a})
	}
	if err := settle(); err != nil {
		return n, err
	}
	for _, d := range dead {
		e.log.Error("journey action moved to the dead letters", "seq", d.Seq, "journey", d.Journey, "step", d.Step, "action", d.Action, "attempts", d.Attempts, "err", d.Error)
	}
	switch {
	case ctx.Err() != nil:
		return n, ctx.Err()
	case nFailed > 0:
		return n, fmt.Errorf("deliver journey actions: %d of %d failed, first: %w", nFailed, len(items), first)
	case len(poisoned) > 0:
		return n, fmt.Errorf("journey outbox: %d unreadable actions moved to the dead letters, first: %w", len(poisoned), poisoned[0].err)
	}
	return n, nil
}

// settle removes actions from the outbox, running their enqueues, and
// records failures (backoff, or the dead letters), in one transaction.
// When an enqueue's write fails, that action becomes a failure too and
// the transaction is made again without it. It returns how many were
// removed, what went to the dead letters and the enqueues that failed.
func (e *Engine) settle(ds []drained, failed []outboxItem, now time.Time) (int, []*DeadAction, []error, error) {
	if len(ds)+len(failed) == 0 {
		return 0, nil, nil, nil
	}
	var werrs []error
	for {
		bad, werr := -1, error(nil)
		var dead []*DeadAction
		err := e.db.Update(func(tx *bbolt.Tx) error {
			bad, werr, dead = -1, nil, dead[:0]
			b, fails := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxFails)
			for i, d := range ds {
				if d.write != nil {
					if err := d.write(tx); err != nil {
						bad, werr = i, err
						return errEnqueueFailed
					}
				}
				if err := b.Delete(d.k); err != nil {
					return err
				}
				if fails != nil {
					if err := fails.Delete(d.k); err != nil {
						return err
					}
				}
			}
			for _, it := range failed {
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
		if bad >= 0 {
			werr = fmt.Errorf("enqueue journey action %s: %w", ds[bad].a.Key, werr)
			werrs = append(werrs, werr)
			failed = append(failed, outboxItem{k: ds[bad].k, a: ds[bad].a, err: werr})
			ds = slices.Delete(slices.Clone(ds), bad, bad+1)
			continue
		}
		if err != nil {
			return 0, nil, werrs, fmt.Errorf("settle journey outbox: %w", err)
		}
		return len(ds), dead, werrs, nil
	}
}

// errEnqueueFailed rolls back a settling transaction whose enqueue failed.
var errEnqueueFailed = errors.New("enqueue failed")

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

// fence asks Options.Fence, if set, whether this engine may still act on
// its file's people.
func (e *Engine) fence() error {
	if e.opts.Fence == nil {
		return nil
	}
	if err := e.opts.Fence(); err != nil {
		return fmt.Errorf("journeys: %w", err)
	}
	return nil
}
