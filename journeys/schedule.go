package journeys

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// schedulePage is how many audience members one transaction of a cron
// tick enrols: a tick of a million-person audience holds the writer for a
// page at a time, and ingestion goes on between pages.
const schedulePage = 500

// scheduleRecord is a cron journey's schedule state, one per journey: the
// spec its timer was armed for, the due of that one timer, and, while a
// tick is being enrolled, which tick and the last member enrolled.
type scheduleRecord struct {
	Spec  string `json:"spec"`
	Due   int64  `json:"due"`
	Tick  int64  `json:"tick,omitempty"`
	After string `json:"after,omitempty"`
}

// scheduleID gives a schedule's timers a second key half of their own (top
// bit set, so never an instance id), so two journeys due at the same
// instant keep both their ticks.
func scheduleID(journey string) uint64 {
	h := sha256.Sum256([]byte(journey))
	return binary.BigEndian.Uint64(h[:8]) | 1<<63
}

// scheduleSpec is what a timer was armed for: an edit of either part
// re-arms it.
func scheduleSpec(j *Journey) string {
	return j.Trigger.Cron + "\x00" + j.Trigger.Location.String()
}

func loadSchedule(tx *bbolt.Tx, journey string) (*scheduleRecord, error) {
	v := tx.Bucket(bucketSchedules).Get([]byte(journey))
	if v == nil {
		return nil, nil
	}
	var rec scheduleRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("schedule of %s: %w", journey, err)
	}
	return &rec, nil
}

func saveSchedule(tx *bbolt.Tx, journey string, rec *scheduleRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSchedules).Put([]byte(journey), v)
}

// armSchedule keeps one pending tick for a cron journey: nothing changes
// when the tick armed is for the same spec; an edited cron expression or
// time zone replaces the pending tick (and any enrolment in progress) by
// the new spec's next one at once, rather than waiting for the old tick.
func (e *Engine) armSchedule(tx *bbolt.Tx, j *Journey, now time.Time) error {
	timers := tx.Bucket(bucketTimers)
	sid := scheduleID(j.ID)
	rec, err := loadSchedule(tx, j.ID)
	if err != nil {
		return err
	}
	if rec == nil {
		// A file from before schedule records: adopt the pending tick,
		// found once by a scan, as armed for this spec.
		c := timers.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) > 0 && v[0] == 's' && string(v[1:]) == j.ID {
				rec = &scheduleRecord{Spec: scheduleSpec(j), Due: int64(binary.BigEndian.Uint64(k[:8]))}
				return saveSchedule(tx, j.ID, rec)
			}
		}
	}
	spec := scheduleSpec(j)
	if rec != nil && rec.Spec == spec && timers.Get(timerKey(time.Unix(0, rec.Due), sid)) != nil {
		return nil
	}
	if rec != nil && rec.Due != 0 {
		if err := timers.Delete(timerKey(time.Unix(0, rec.Due), sid)); err != nil {
			return err
		}
	}
	next := j.Trigger.schedule.Next(now.In(j.Trigger.Location))
	if err := timers.Put(timerKey(next, sid), append([]byte("s"), j.ID...)); err != nil {
		return err
	}
	return saveSchedule(tx, j.ID, &scheduleRecord{Spec: spec, Due: next.UnixNano()})
}

// schedule runs one page of a cron tick (k is its timer, already removed):
// members of the journey's audience after the last one enrolled are
// entered, up to schedulePage. When more remain, the progress is saved, the
// same timer is armed again and more is true: the caller commits, and the
// next transaction goes on from there. After the last page, the next tick
// is armed.
func (r *run) schedule(journeyID string, k []byte) (more bool, err error) {
	j := r.set.Journey(journeyID)
	if j == nil || j.Trigger.schedule == nil {
		// The journey is gone or no longer scheduled.
		return false, r.tx.Bucket(bucketSchedules).Delete([]byte(journeyID))
	}
	due := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
	rec, err := loadSchedule(r.tx, j.ID)
	if err != nil {
		return false, err
	}
	after := ""
	if rec != nil && rec.Tick == due.UnixNano() {
		after = rec.After
	}
	if r.e.rules != nil {
		members, next, err := r.e.rules.MembersIn(r.tx, j.Trigger.Audience, after, schedulePage)
		if err != nil {
			return false, err
		}
		tick := &profiles.Event{Type: profiles.TypeTrack, Event: "Scheduled", Timestamp: due.UTC(), Source: profiles.SourceCartera,
			Properties: map[string]any{"schedule": j.Trigger.Cron}}
		for _, m := range members {
			p, err := profiles.ReadProfile(r.tx, m.ProfileID)
			if err != nil {
				continue
			}
			if j.Trigger.When != nil {
				pv, err := r.view(p)
				if err != nil {
					return false, err
				}
				if !r.eval(j.Trigger.When, &rules.Input{Profile: pv, Event: rules.ViewOf(tick), Now: r.now}, j, "", "trigger.when") {
					continue
				}
			}
			if err := r.enter(p, j, tick); err != nil {
				return false, err
			}
		}
		if next != "" {
			if err := r.tx.Bucket(bucketTimers).Put(bytes.Clone(k), append([]byte("s"), j.ID...)); err != nil {
				return false, err
			}
			return true, saveSchedule(r.tx, j.ID, &scheduleRecord{Spec: scheduleSpec(j), Due: due.UnixNano(), Tick: due.UnixNano(), After: next})
		}
	}
	nextTick := j.Trigger.schedule.Next(due.In(j.Trigger.Location))
	if err := r.tx.Bucket(bucketTimers).Put(timerKey(nextTick, scheduleID(j.ID)), append([]byte("s"), j.ID...)); err != nil {
		return false, err
	}
	return false, saveSchedule(r.tx, j.ID, &scheduleRecord{Spec: scheduleSpec(j), Due: nextTick.UnixNano()})
}
