package journeys

// Hourly counters: what each step of a journey did, hour by hour, so that
// the console can show a journey's counts for a chosen time range.
//
//	journey_hourly  journey id 0x00 hour (8-byte big-endian unix seconds of its start) step id 0x00 counter
//	                → 8-byte big-endian count
//
// The counters are those of journey_counts that only grow (entered, sent,
// suppressed, delayed, exited, converted, variant:<arm>, ...; "waiting"
// is a gauge and stays there), and besides them:
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
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

var bucketHourly = []byte("journey_hourly")

// Counters of the hourly buckets besides the cumulative ones.
const (
	CounterFrom        = "from:"
	CounterGoalSeconds = "goal_seconds"
)

func hourKey(journey string, hour time.Time, step, what string) string {
	var b strings.Builder
	b.Grow(len(journey) + len(step) + len(what) + 11)
	b.WriteString(journey)
	b.WriteByte(0)
	var h [8]byte
	binary.BigEndian.PutUint64(h[:], uint64(hour.Unix()))
	b.Write(h[:])
	b.WriteString(step)
	b.WriteByte(0)
	b.WriteString(what)
	return b.String()
}

// countHourly adds to a counter of the current hour.
func (r *run) countHourly(journey, step, what string, delta int64) {
	if r.hourly == nil {
		r.hourly = map[string]int64{}
	}
	r.hourly[hourKey(journey, r.now.UTC().Truncate(time.Hour), step, what)] += delta
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

func (r *run) flushHourly() error {
	if len(r.hourly) == 0 {
		return nil
	}
	// In key order, each value in one block (bbolt keeps a value until
	// the commit), the stored ones read with one cursor: as counters.flush.
	b := r.tx.Bucket(bucketHourly)
	c := b.Cursor()
	keys := slices.Sorted(maps.Keys(r.hourly))
	vals := make([]byte, 8*len(keys))
	for i, k := range keys {
		var n uint64
		if sk, v := c.Seek([]byte(k)); string(sk) == k && len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		v := vals[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(v, n+uint64(max(r.hourly[k], 0)))
		if err := b.Put([]byte(k), v); err != nil {
			return err
		}
	}
	clear(r.hourly)
	return nil
}

// Period returns a journey's hourly counters summed over the hours from
// from's to to's (both included), by step ("" is the journey as a whole).
// It reads only that journey's keys of those hours.
func (e *Engine) Period(journeyID string, from, to time.Time) (map[string]StepCounts, error) {
	out := map[string]StepCounts{}
	prefix := []byte(journeyID + "\x00")
	start := append(bytes.Clone(prefix), u64(uint64(max(from.UTC().Truncate(time.Hour).Unix(), 0)))...)
	last := uint64(max(to.UTC().Truncate(time.Hour).Unix(), 0))
	err := e.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketHourly).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rest := k[len(prefix):]
			if len(rest) < 9 || len(v) != 8 {
				continue
			}
			if binary.BigEndian.Uint64(rest[:8]) > last {
				break
			}
			step, what, ok := strings.Cut(string(rest[8:]), "\x00")
			if !ok {
				continue
			}
			if out[step] == nil {
				out[step] = StepCounts{}
			}
			out[step][what] += int64(binary.BigEndian.Uint64(v))
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
