package journeys

// What New does to a store an earlier version wrote.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// upgrade brings a store an earlier version wrote to the current layout.
func upgrade(db *bbolt.DB, log *slog.Logger) error {
	if err := migrateSidecars(db, log); err != nil {
		return err
	}
	if err := markExperimentLayout(db); err != nil {
		return fmt.Errorf("mark experiment layout: %w", err)
	}
	return migrateCounters(db, log, migratePage)
}

// migrateSidecars moves live-instance and entry records that earlier
// versions kept in buckets of their own (keyed by profile id 0x00 ...)
// beside the profiles.
func migrateSidecars(db *bbolt.DB, log *slog.Logger) error {
	for _, m := range []struct {
		bucket []byte
		tag    string
	}{{bucketOldActive, sidecarActive}, {bucketOldEntry, sidecarEntry}} {
		moved, err := profiles.MigrateToSidecars(db, m.bucket, func(k []byte) (string, string, bool) {
			pid, rest, ok := bytes.Cut(k, []byte{0})
			return string(pid), m.tag + string(rest), ok
		})
		if err != nil {
			return err
		}
		if moved > 0 {
			log.Info("journey records moved beside the profiles", "bucket", string(m.bucket), "records", moved)
		}
	}
	return nil
}

// expLayoutKey, in bucket journey_experiments, says that every experiment
// assignment of the store is in the one-record layout (assignments.go):
// no counter key starts with 0x00 (journey ids are not empty).
var expLayoutKey = []byte("\x00layout")

// markExperimentLayout records that the store holds no assignment of the
// layout before the record when that is so: when no experiment was ever
// counted (every assignment was), neither in journey_experiments (where
// the counters were a key each) nor in a journey's tally. A store with
// counters and no mark may hold the old layout, which runs then look for
// beside each record.
func markExperimentLayout(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketExperiments)
		if b.Get(expLayoutKey) != nil {
			return nil
		}
		if k, _ := b.Cursor().First(); k != nil {
			return nil
		}
		counted := false
		err := tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			err := eachCounter(v, func(name []byte, _ int64) {
				counted = counted || len(name) > 0 && name[0] == expMark
			})
			// A damaged tally may have held some: no mark.
			counted = counted || err != nil
			return nil
		})
		if err != nil || counted {
			return err
		}
		return b.Put(expLayoutKey, []byte("record"))
	})
}

// Buckets of the counters' layout before the tallies: a key per counter,
// journey id 0x00 step id 0x00 counter (journey_counts), journey id 0x00
// hour (8) step id 0x00 counter (journey_hourly) → 8-byte big-endian
// count; and the experiments' in journey_experiments.
var (
	bucketOldCounts = []byte("journey_counts")
	bucketOldHourly = []byte("journey_hourly")
)

// migratePage is the most old counter keys New folds per transaction.
const migratePage = 20000

// migrateCounters folds the counters of the layout before the tallies
// into them: each old key's count is added to its tally and the key
// deleted in the same transaction, a page of keys per transaction (a
// crash between two leaves each count in one place), and an emptied old
// bucket is dropped. It runs after markExperimentLayout, which looks at
// journey_experiments as an earlier version left it. page is the most
// keys per transaction.
func migrateCounters(db *bbolt.DB, log *slog.Logger, page int) error {
	for _, m := range []struct {
		old, new []byte
		// from is where the old keys start (journey_experiments also
		// holds the layout mark, which starts with 0x00).
		from []byte
		// split returns a key's tally key and counter name.
		split func(k []byte) (key, name []byte, ok bool)
		drop  bool
	}{
		{bucketOldCounts, bucketCounters, nil, func(k []byte) ([]byte, []byte, bool) {
			return bytes.Cut(k, []byte{0})
		}, true},
		{bucketExperiments, bucketCounters, []byte{expMark}, func(k []byte) ([]byte, []byte, bool) {
			j, rest, ok := bytes.Cut(k, []byte{0})
			return j, append([]byte{expMark}, rest...), ok
		}, false},
		{bucketOldHourly, bucketHourly, nil, func(k []byte) ([]byte, []byte, bool) {
			j, rest, ok := bytes.Cut(k, []byte{0})
			if !ok || len(rest) < 9 {
				return nil, nil, false
			}
			return k[:len(j)+9], rest[8:], true
		}, true},
	} {
		moved := 0
		from := m.from
		for done := false; !done; {
			err := db.Update(func(tx *bbolt.Tx) error {
				old := tx.Bucket(m.old)
				if old == nil {
					done = true
					return nil
				}
				c := old.Cursor()
				k, v := c.First()
				if from != nil {
					k, v = c.Seek(from)
				}
				sums := map[string]map[string]int64{}
				var doomed [][]byte
				for ; k != nil && len(doomed) < page; k, v = c.Next() {
					key, name, ok := m.split(k)
					if !ok || len(v) != 8 {
						continue // not a counter: left as it is
					}
					if sums[string(key)] == nil {
						sums[string(key)] = map[string]int64{}
					}
					sums[string(key)][string(name)] += int64(binary.BigEndian.Uint64(v))
					doomed = append(doomed, bytes.Clone(k))
				}
				if k == nil {
					done = true
				} else {
					from = bytes.Clone(k)
				}
				nb, err := tx.CreateBucketIfNotExists(m.new)
				if err != nil {
					return err
				}
				for key, counts := range sums {
					t, err := decodeTally(nb.Get([]byte(key)))
					if err != nil {
						log.Error("journey counters damaged: folding into what could be read", "key", fmt.Sprintf("%q", key), "err", err)
					}
					for name, n := range counts {
						t.add([]byte(name), n)
					}
					if err := nb.Put([]byte(key), t.encode()); err != nil {
						return err
					}
				}
				for _, k := range doomed {
					if err := old.Delete(k); err != nil {
						return err
					}
				}
				moved += len(doomed)
				if done && m.drop {
					return tx.DeleteBucket(m.old)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("fold %s into %s: %w", m.old, m.new, err)
			}
		}
		if moved > 0 {
			log.Info("journey counters folded into one record per journey", "bucket", string(m.old), "counters", moved)
		}
	}
	return nil
}

// oldExpLayout reports whether the run's store may hold assignments of
// the layout before the record, reading the mark once per run.
func (r *run) oldExpLayout() bool {
	if r.layout == layoutUnknown {
		r.layout = layoutOld
		if r.tx.Bucket(bucketExperiments).Get(expLayoutKey) != nil {
			r.layout = layoutRecord
		}
	}
	return r.layout == layoutOld
}

// Layouts of the experiment assignments, as a run found them.
const (
	layoutUnknown = iota
	layoutRecord
	layoutOld
)
