package journeys

// Timers: durable waits in journey_timers, fired in due order.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

func timerKey(due time.Time, id uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(due.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

func (r *run) setTimer(in *Instance, due time.Time) error {
	k := timerKey(due, in.ID)
	if err := r.tx.Bucket(bucketTimers).Put(k, []byte("i")); err != nil {
		return err
	}
	in.Timer = k
	return nil
}

func (r *run) clearTimer(in *Instance) error {
	if in.Timer == nil {
		return nil
	}
	if err := r.tx.Bucket(bucketTimers).Delete(in.Timer); err != nil {
		return err
	}
	in.Timer = nil
	return nil
}

// NextDue returns when the earliest timer is due.
func (e *Engine) NextDue() (time.Time, bool) {
	var due time.Time
	ok := false
	_ = e.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketTimers).Cursor().First(); k != nil {
			due, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(), true
		}
		return nil
	})
	return due, ok
}

// FireDue runs the timers due at or before now, in due order, up to limit
// of them in one transaction; it returns how many it fired. A timer fires
// in the same commit that removes it, so a crash neither loses nor doubles
// one.
func (e *Engine) FireDue(ctx context.Context, st *profiles.Store, now time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err // a shutdown: the timers stay for the restart
	}
	var r *run
	n := 0
	err := e.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		if err := e.fence(); err != nil {
			return err
		}
		r = e.Begin(tx).(*run)
		r.now = now
		if st != nil {
			r.leaving = st.Leaving
		}
		timers := tx.Bucket(bucketTimers)
		for n < limit {
			k, v := timers.Cursor().First()
			if k == nil || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			k, v = bytes.Clone(k), bytes.Clone(v)
			if err := timers.Delete(k); err != nil {
				return err
			}
			n++
			if len(v) > 0 && v[0] == 's' {
				more, err := r.schedule(string(v[1:]), k)
				if err != nil {
					return err
				}
				if more {
					// A page of a cron tick's audience is a transaction
					// of its own: commit it, and let ingestion in, before
					// the next.
					break
				}
				continue
			}
			if err := r.fire(k, v); err != nil {
				return err
			}
		}
		return r.Flush()
	})
	if r != nil {
		r.Done(err == nil)
	}
	if err != nil {
		return 0, fmt.Errorf("fire journey timers: %w", err)
	}
	return n, nil
}

// fire moves an instance past the wait its timer ended, or releases the
// send it delayed (v, the timer's value, says which).
func (r *run) fire(k, v []byte) error {
	in, err := r.load(binary.BigEndian.Uint64(k[8:]))
	if err != nil {
		r.e.log.Error("journey timer without instance", "err", err)
		return nil
	}
	if in.Done || !bytes.Equal(in.Timer, k) {
		return nil // stale: the instance moved on or ended
	}
	if r.leaving != nil && r.leaving(in.ProfileID) {
		// The person's state went to another partition with this timer
		// pending: it fires there. Here it waits until the move commits,
		// which ends the instance without acting on it.
		return r.postpone(in, v)
	}
	in.Timer = nil
	r.count(in.Journey, in.Step, "waiting", -1)
	j, err := r.e.version(r.tx, in.Journey, in.Version)
	if err != nil {
		// The version cannot run any more (it names what the rules or the
		// policies no longer declare): the instance ends, rather than stay
		// live with no timer and keep the person out of the journey.
		r.e.log.Error("journey instance ended: its version cannot run", "instance", in.ID, "err", err)
		return r.finish(in, "version unavailable", false)
	}
	p, err := profiles.ReadProfile(r.tx, in.ProfileID)
	if errors.Is(err, profiles.ErrNotFound) {
		return r.finish(in, "profile gone", true)
	} else if err != nil {
		return err
	}
	s := j.Step(in.Step)
	next := ""
	switch {
	case s != nil && s.Kind == StepSend && isDelay(v):
		return r.release(p, j, in, s, v)
	case s == nil:
	case s.Kind == StepWaitFor:
		next = s.OnTimeout
		r.decide(in, s.ID, DecisionWaitFor, "timed out after "+fmtDuration(s.Timeout)+": no "+s.For.Event)
	default:
		next = s.Next
	}
	return r.advance(p, j, in, next)
}

// leavingRetry is how long a timer of a person moving out of the file
// waits before it is looked at again.
const leavingRetry = time.Second

// postpone puts an instance's timer (its value v) off by leavingRetry.
func (r *run) postpone(in *Instance, v []byte) error {
	k := timerKey(r.now.Add(leavingRetry), in.ID)
	if err := r.tx.Bucket(bucketTimers).Put(k, v); err != nil {
		return err
	}
	in.Timer = k
	return r.save(in)
}

// Run fires timers as they fall due until ctx ends.
func (e *Engine) Run(ctx context.Context, st *profiles.Store) {
	for ctx.Err() == nil {
		wait := time.Minute
		if due, ok := e.NextDue(); ok {
			wait = max(due.Sub(e.clock.Now()), 0)
		}
		if wait == 0 {
			if _, err := e.FireDue(ctx, st, e.clock.Now(), 500); err != nil {
				e.log.Error("journey timers", "err", err)
				wait = time.Second
			} else {
				continue
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
