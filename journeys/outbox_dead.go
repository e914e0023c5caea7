package journeys

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Buckets of the outbox's failure bookkeeping (created at the first
// failure):
//
//	journey_outbox_fails  outbox sequence (8) → attempts (8-byte big-endian) | not before (8-byte big-endian unix nanos)
//	journey_outbox_dead   unix nanos (8) | outbox sequence (8) → JSON DeadAction, oldest first
var (
	bucketOutboxFails = []byte("journey_outbox_fails")
	bucketOutboxDead  = []byte("journey_outbox_dead")
)

// OutboxMaxAttempts is how many times an action is handed to the
// deliverer before it moves to the dead letters; between tries it waits
// outboxBackoff.
const OutboxMaxAttempts = 10

// outboxBackoff doubles from a second up to ten minutes: ten tries span
// about half an hour, long enough to ride out an outage of the service a
// deliverer calls, short enough not to hold a poisoned action for good.
func outboxBackoff(attempts int) time.Duration {
	d := time.Second
	for i := 1; i < attempts && d < 10*time.Minute; i++ {
		d *= 2
	}
	return min(d, 10*time.Minute)
}

// DeadAction is an action the deliverer kept failing (or one that could
// not be read). It keeps what names the action, not its details, which
// may hold personal data (an ad audience change carries the person's
// emails and phones).
type DeadAction struct {
	// At is when it moved to the dead letters.
	At       time.Time `json:"at"`
	Seq      uint64    `json:"seq"`
	Key      string    `json:"key,omitempty"`
	Profile  string    `json:"profile,omitempty"`
	Journey  string    `json:"journey,omitempty"`
	Step     string    `json:"step,omitempty"`
	Action   string    `json:"action,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
}

func deadOf(seq uint64, a *Action, attempts int, err string, now time.Time) *DeadAction {
	d := &DeadAction{At: now.UTC(), Seq: seq, Attempts: attempts, Error: err}
	if a != nil {
		d.Key, d.Profile, d.Journey, d.Step, d.Action, d.Channel = a.Key, a.Profile, a.Journey, a.Step, a.Action, a.Channel
	}
	return d
}

// outboxFails reads an action's failure record: attempts so far and when
// the next try is due (zero without failures).
func outboxFails(b *bbolt.Bucket, k []byte) (attempts int, notBefore int64) {
	if b == nil {
		return 0, 0
	}
	v := b.Get(k)
	if len(v) != 16 {
		return 0, 0
	}
	return int(binary.BigEndian.Uint64(v[:8])), int64(binary.BigEndian.Uint64(v[8:]))
}

// settleFailure counts one more failed try of an outbox action; at
// OutboxMaxAttempts (or at once for one that cannot be read, a nil a) it
// moves to the dead letters. It reports whether the action died.
func settleFailure(tx *bbolt.Tx, k []byte, a *Action, cause error, now time.Time) (*DeadAction, error) {
	fails, err := tx.CreateBucketIfNotExists(bucketOutboxFails)
	if err != nil {
		return nil, err
	}
	attempts, _ := outboxFails(fails, k)
	attempts++
	if a != nil && attempts < OutboxMaxAttempts {
		v := make([]byte, 16)
		binary.BigEndian.PutUint64(v, uint64(attempts))
		binary.BigEndian.PutUint64(v[8:], uint64(now.Add(outboxBackoff(attempts)).UnixNano()))
		return nil, fails.Put(k, v)
	}
	dead, err := tx.CreateBucketIfNotExists(bucketOutboxDead)
	if err != nil {
		return nil, err
	}
	seq := binary.BigEndian.Uint64(k)
	d := deadOf(seq, a, attempts, cause.Error(), now)
	v, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	dk := make([]byte, 16)
	binary.BigEndian.PutUint64(dk, uint64(max(now.UnixNano(), 0)))
	binary.BigEndian.PutUint64(dk[8:], seq)
	if err := dead.Put(dk, v); err != nil {
		return nil, err
	}
	if err := fails.Delete(k); err != nil {
		return nil, err
	}
	return d, tx.Bucket(bucketOutbox).Delete(k)
}

// DeadActions returns up to limit dead-lettered actions, oldest first.
func (e *Engine) DeadActions(limit int) ([]DeadAction, error) {
	var out []DeadAction
	err := e.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutboxDead)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var d DeadAction
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode dead journey action: %w", err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}
