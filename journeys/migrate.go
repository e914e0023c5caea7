package journeys

// What New does to a store an earlier version wrote.

import (
	"bytes"
	"log/slog"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

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
// counted (every assignment was). A store with counters and no mark may
// hold the old layout, which runs then look for beside each record.
func markExperimentLayout(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketExperiments)
		if b.Get(expLayoutKey) != nil {
			return nil
		}
		if k, _ := b.Cursor().First(); k != nil {
			return nil
		}
		return b.Put(expLayoutKey, []byte("record"))
	})
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
