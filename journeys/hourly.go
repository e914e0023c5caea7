package journeys

// Hourly counters: what each step of a journey did, hour by hour, so that
// the console can show a journey's counts for a chosen time range. They
// are a tally per journey and hour (counters.go):
//
//	journey_counters_hourly  journey id 0x00 hour (8-byte big-endian unix seconds of its start) → tally
//
// Its counters are the journey's that only grow (entered, sent,
// suppressed, delayed, exited, converted, variant:<arm>, ...; "waiting"
// is a gauge and is not there), and besides them:
//
//	suppressed:<reason>, delayed:<reason>, exited:<reason>
//	               the same, by reason (the detail's reason, held ones
//	               without the journeys that hold)
//	from:<step>    entries into the step from that step ("" : the trigger),
//	               the edges of the journey's graph
//	goal_seconds   on step "": time from entry to goal, summed over goals
//
// Prune drops the hours older than the journeys' retention.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

// Counters of the hourly buckets besides the cumulative ones.
const (
	CounterFrom        = "from:"
	CounterGoalSeconds = "goal_seconds"
)

// hourKey builds the key of a journey's hour in buf (reused).
func hourKey(buf []byte, journey string, hour int64) []byte {
	buf = append(buf[:0], journey...)
	buf = append(buf, 0)
	return binary.BigEndian.AppendUint64(buf, uint64(hour))
}

// countAction counts an action by its reason.
func (r *run) countAction(in *Instance, step, action string, detail Detail) {
	switch d := detail.(type) {
	case SuppressedDetail:
		r.countHourly(in.Journey, step, "suppressed:"+ReasonKey(d.Reason), 1)
	case DelayedDetail:
		r.countHourly(in.Journey, step, "delayed:"+ReasonKey(d.Reason), 1)
	case ExitDetail:
		r.countHourly(in.Journey, step, "exited:"+ReasonKey(d.Reason), 1)
	case GoalDetail:
		r.countHourly(in.Journey, "", CounterGoalSeconds, int64(max(r.now.Sub(in.EnteredAt), 0)/time.Second))
	}
}

// ReasonKey is the reason a counter is kept under: without the journeys
// that hold a person in an audience (their combinations would multiply
// the counters), at most 80 bytes.
func ReasonKey(reason string) string {
	if strings.HasPrefix(reason, "held: ") {
		reason, _, _ = strings.Cut(reason, " for ")
	}
	if len(reason) > 80 {
		cut := 80
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return reason
}

// Period returns a journey's hourly counters summed over the hours from
// from's to to's (both included), by step ("" is the journey as a whole).
// It reads only that journey's tallies of those hours.
func (e *Engine) Period(journeyID string, from, to time.Time) (map[string]StepCounts, error) {
	out := map[string]StepCounts{}
	prefix := []byte(journeyID + "\x00")
	start := hourKey(nil, journeyID, max(from.Truncate(time.Hour).Unix(), 0))
	last := uint64(max(to.Truncate(time.Hour).Unix(), 0))
	err := e.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketHourly).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rest := k[len(prefix):]
			if len(rest) != 8 {
				continue
			}
			if binary.BigEndian.Uint64(rest) > last {
				break
			}
			err := eachCounter(v, func(name []byte, n int64) {
				step, what, ok := bytes.Cut(name, []byte{0})
				if !ok {
					return
				}
				sc := out[string(step)]
				if sc == nil {
					sc = StepCounts{}
					out[string(step)] = sc
				}
				sc[string(what)] += n
			})
			if err != nil {
				return fmt.Errorf("journey %s hour %d: %w", journeyID, binary.BigEndian.Uint64(rest), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read hourly journey counters: %w", err)
	}
	return out, nil
}

// pruneHourly removes the hours before cutoff, journey by journey, a page
// of keys per transaction.
func (e *Engine) pruneHourly(ctx context.Context, cutoff time.Time, st *PruneStats) error {
	limit := uint64(max(cutoff.UTC().Truncate(time.Hour).Unix(), 0))
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := false
		err := e.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketHourly)
			c := b.Cursor()
			k, _ := c.First()
			if from != nil {
				k, _ = c.Seek(from)
			}
			var doomed [][]byte
			for n := 0; ; n++ {
				if k == nil {
					done = true
					break
				}
				if n == prunePage {
					from = bytes.Clone(k)
					break
				}
				j, rest, ok := bytes.Cut(k, []byte{0})
				if ok && len(rest) >= 8 && binary.BigEndian.Uint64(rest[:8]) < limit {
					doomed = append(doomed, bytes.Clone(k))
					k, _ = c.Next()
					continue
				}
				// The rest of this journey is recent: on to the next one.
				k, _ = c.Seek(append(bytes.Clone(j), 1))
			}
			for _, k := range doomed {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			st.Hours += len(doomed)
			return nil
		})
		if err != nil {
			return fmt.Errorf("prune hourly journey counters: %w", err)
		}
		if done {
			return nil
		}
	}
}
