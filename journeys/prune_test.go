package journeys

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

const pruneCapPolicy = `
policies:
  timezone: UTC
  consent_required: []
  frequency_caps:
    - {channel: email, max: 5, per: 7d}
`

const quickJourney = `
id: thanks
trigger: {event: Order Completed}
entry: {reentry: true}
steps:
  - id: mail
    send: {channel: email, template: thanks}
`

const slowJourney = `
id: slow
trigger: {event: Signed Up}
steps:
  - id: later
    wait: 365d
  - id: mail
    send: {channel: email, template: hello}
`

func bucketLen(t *testing.T, h *harness, b []byte) int {
	t.Helper()
	n := 0
	if err := h.store.DB().View(func(tx *bbolt.Tx) error { n = tx.Bucket(b).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// Finished instances, their actions' idempotency keys and send records no
// cap can count any more are pruned; live instances and recent sends stay.
func TestPrune(t *testing.T) {
	h := newHarness(t, pruneCapPolicy, map[string]string{"thanks.yaml": quickJourney, "slow.yaml": slowJourney})
	h.track("ana", "Order Completed", nil)
	h.track("ana", "Order Completed", nil)
	h.track("ben", "Signed Up", nil)
	h.drain()
	if n := bucketLen(t, h, bucketInstances); n != 3 {
		t.Fatalf("%d instances, want 3", n)
	}
	if n := bucketLen(t, h, bucketSends); n != 2 {
		t.Fatalf("%d send records, want 2", n)
	}
	// Within the retention nothing goes.
	st, err := h.engine.Prune(context.Background(), h.clock.Now().Add(6*24*time.Hour), 30*24*time.Hour)
	if err != nil || st != (PruneStats{}) {
		t.Fatalf("prune within every window: %+v %v", st, err)
	}
	h.clock.Advance(31 * 24 * time.Hour)
	h.track("cleo", "Order Completed", nil) // recent: stays
	h.drain()
	st, err = h.engine.Prune(context.Background(), h.clock.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances != 2 || st.OutboxKeys != 2 || st.Sends != 2 {
		t.Errorf("pruned %+v, want Ana's 2 finished instances, their 2 keys and her 2 sends", st)
	}
	if n := bucketLen(t, h, bucketInstances); n != 2 {
		t.Errorf("%d instances left, want Ben's live one and Cleo's", n)
	}
	if got := h.instances(h.track("ben", "Page Viewed", nil)); len(got) != 1 || got[0].Step != "later" {
		t.Errorf("Ben's waiting instance: %+v", got)
	}
	if n := bucketLen(t, h, bucketOutboxKey); n != 1 {
		t.Errorf("%d outbox keys left, want Cleo's", n)
	}
	if n := bucketLen(t, h, bucketSends); n != 1 {
		t.Errorf("%d send records left, want Cleo's", n)
	}
	// Ana may enter again after the pruning, and is counted afresh.
	h.track("ana", "Order Completed", nil)
	if sends := h.drain(); len(sends) != 1 {
		t.Errorf("Ana's order after pruning: %d actions", len(sends))
	}
	// Ben's wait still ends.
	h.fireUntil(h.clock.Now().Add(366 * 24 * time.Hour))
	if sends := h.drain(); len(sends) != 1 || sends[0].Journey != "slow" {
		t.Errorf("Ben's wait: %+v", sends)
	}
}

// The cap counts each channel's sends from the window's start only, for
// one channel and for all of them.
func TestSendsSinceSeeks(t *testing.T) {
	h := newHarness(t, pruneCapPolicy, nil)
	t0 := h.clock.Now()
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		r := h.engine.Begin(tx).(*run)
		for i, ch := range []string{"email", "sms", "email", "push", "email2", "sms"} {
			r.now = t0.Add(time.Duration(i) * time.Hour)
			if err := r.recordSend("p1", ch, "j"); err != nil {
				return err
			}
			if err := r.recordSend("p2", ch, "j"); err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketSends).Cursor()
		for _, tc := range []struct {
			channel string
			since   time.Duration
			want    int
		}{
			{"email", -time.Hour, 2}, {"email", time.Hour, 1}, {"email", 2 * time.Hour, 0},
			{"email2", 0, 1}, {"sms", 0, 2}, {"sms", 5 * time.Hour, 0},
			{"any", -time.Hour, 6}, {"any", 2*time.Hour + time.Minute, 3}, {"any", 5 * time.Hour, 0},
		} {
			if got := r.sendsSince(c, "p1", tc.channel, t0.Add(tc.since), nil); got != tc.want {
				t.Errorf("sendsSince(%s, %s) = %d, want %d", tc.channel, tc.since, got, tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
