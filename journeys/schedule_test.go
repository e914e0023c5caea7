package journeys

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

const digest = `
id: digest
trigger:
  schedule:
    cron: "%s"
    audience: customers
entry:
  reentry: true
steps:
  - id: mail
    send: {channel: email, template: digest}
`

// scheduleTimers lists the pending timers of cron journeys.
func (h *harness) scheduleTimers() []time.Time {
	h.t.Helper()
	var out []time.Time
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTimers).ForEach(func(k, v []byte) error {
			if len(v) > 0 && v[0] == 's' {
				out = append(out, time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC())
			}
			return nil
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// A cron tick enrols its audience a page per transaction, so ingestion
// goes on between pages, and goes on where it stopped after a restart.
func TestScheduleEnrolsPageByPage(t *testing.T) {
	h := openHarness(t, openPolicy, map[string]string{"digest.yaml": fmt.Sprintf(digest, "0 12 * * *")}, true)
	const people = 2*schedulePage + 100
	for i := range people {
		h.track(fmt.Sprintf("c%04d", i), "Order Completed", nil)
	}
	tick := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	h.clock.Set(tick)
	fire := func() {
		t.Helper()
		if _, err := h.engine.FireDue(context.Background(), h.store, tick, 100_000); err != nil {
			t.Fatal(err)
		}
	}
	fire()
	if got := h.count("digest", "", "entered"); got != schedulePage {
		t.Fatalf("after one FireDue: %d entered, want one page of %d (one transaction per page)", got, schedulePage)
	}
	// Ingestion is not held for the whole tick: an event commits between
	// pages.
	h.track("late", "Product Viewed", nil)
	h.restart()
	fire()
	if got := h.count("digest", "", "entered"); got != 2*schedulePage {
		t.Fatalf("after a restart and a second FireDue: %d entered, want %d (progress kept)", got, 2*schedulePage)
	}
	fire()
	if got := h.count("digest", "", "entered"); got != people {
		t.Fatalf("after the last page: %d entered, want %d", got, people)
	}
	if ts := h.scheduleTimers(); len(ts) != 1 || !ts[0].Equal(tick.Add(24*time.Hour)) {
		t.Errorf("schedule timers %v, want one, the next day's tick", ts)
	}
	// Nobody enters twice in one tick.
	fire()
	if got := h.count("digest", "", "entered"); got != people {
		t.Errorf("a FireDue with nothing due entered %d, want %d", got, people)
	}
}

// An edited cron expression takes effect at once: the pending tick of the
// old expression goes, and there is still one timer per schedule.
func TestScheduleEditRearms(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"digest.yaml": fmt.Sprintf(digest, "0 12 * * *")})
	h.track("ana", "Order Completed", nil)
	noon := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC) // t0 is 10:00 that day
	if ts := h.scheduleTimers(); len(ts) != 1 || !ts[0].Equal(noon) {
		t.Fatalf("schedule timers %v, want today's noon", ts)
	}
	h.edit(map[string]string{"digest.yaml": fmt.Sprintf(digest, "0 13 * * *")})
	if ts := h.scheduleTimers(); len(ts) != 1 || !ts[0].Equal(noon.Add(time.Hour)) {
		t.Fatalf("after moving the tick to 13:00: timers %v, want one at 13:00", ts)
	}
	if n := h.fire(noon); n != 0 {
		t.Errorf("the old noon tick fired %d timers after the edit", n)
	}
	h.edit(map[string]string{"digest.yaml": fmt.Sprintf(digest, "0 13 * * *")})
	h.restart()
	if ts := h.scheduleTimers(); len(ts) != 1 || !ts[0].Equal(noon.Add(time.Hour)) {
		t.Errorf("an unchanged expression, reloaded and restarted: timers %v, want the one at 13:00", ts)
	}
	h.fire(noon.Add(time.Hour))
	if got := h.count("digest", "", "entered"); got != 1 {
		t.Errorf("at 13:00: %d entered, want 1", got)
	}
}
