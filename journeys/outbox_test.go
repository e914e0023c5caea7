package journeys

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// queued lists the keys a test enqueuer wrote to its bucket.
func queued(t *testing.T, h *harness, bucket []byte) []string {
	t.Helper()
	var out []string
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// outboxLen is how many actions wait in the journeys' outbox.
func outboxLen(t *testing.T, h *harness) int {
	t.Helper()
	n := 0
	if err := h.store.DB().View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDrainEnqueueFailureKeepsAction: an action whose enqueue fails stays
// in the journeys' outbox and a drain after its backoff enqueues it; the
// others, before and after it, are enqueued and removed once.
func TestDrainEnqueueFailureKeepsAction(t *testing.T) {
	queue := []byte("test_channel_queue")
	boom := errors.New("channel queue full")
	for _, tc := range []struct {
		name string
		// fail is where the first drain fails: "prepare" or "write".
		fail string
	}{{"the write fails", "write"}, {"preparing fails", "prepare"}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
			var keys []string
			for _, who := range []string{"ana", "bea", "cara"} {
				pid := h.track(who, "Signed Up", nil)
				keys = append(keys, only(t, "send", h.actions(ActSend, pid)).Key)
			}
			failing := true
			enq := func(_ context.Context, a Action) (func(*bbolt.Tx) error, error) {
				if a.Action != ActSend {
					return nil, nil
				}
				bad := failing && a.Key == keys[1]
				if bad && tc.fail == "prepare" {
					return nil, boom
				}
				return func(tx *bbolt.Tx) error {
					b, err := tx.CreateBucketIfNotExists(queue)
					if err != nil {
						return err
					}
					if err := b.Put([]byte(a.Key), []byte(a.Profile)); err != nil {
						return err
					}
					if bad {
						return boom
					}
					return nil
				}, nil
			}
			delivered := 0
			deliver := func(context.Context, Action) error { delivered++; return nil }

			n, err := h.engine.DrainOutboxTo(context.Background(), enq, deliver, 100)
			if !errors.Is(err, boom) || n != 2 {
				t.Fatalf("first drain = %d, %v; want 2, %v", n, err, boom)
			}
			if got, want := queued(t, h, queue), []string{keys[0], keys[2]}; !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Errorf("enqueued %v, want %v (the failed one held back alone)", got, want)
			}
			if n := outboxLen(t, h); n != 1 {
				t.Errorf("%d actions left in the journeys' outbox, want the failed one", n)
			}
			failing = false
			if n, err := h.engine.DrainOutboxTo(context.Background(), enq, deliver, 100); n != 0 || err != nil {
				t.Fatalf("a drain within the failed action's backoff = %d, %v; want 0, nil", n, err)
			}
			h.clock.Advance(2 * time.Second)
			n, err = h.engine.DrainOutboxTo(context.Background(), enq, deliver, 100)
			if err != nil || n != 1 {
				t.Fatalf("second drain = %d, %v; want 1, nil", n, err)
			}
			want := slices.Sorted(slices.Values(keys))
			if got := queued(t, h, queue); !slices.Equal(got, want) {
				t.Errorf("enqueued %v, want %v", got, want)
			}
			if n := outboxLen(t, h); n != 0 || delivered != 0 {
				t.Errorf("%d actions left, %d given to the deliverer; want 0, 0", n, delivered)
			}
		})
	}
}

// TestDrainEnqueueKeepsOrder: the enqueues recorded before an action the
// deliverer takes are committed before it is delivered.
func TestDrainEnqueueKeepsOrder(t *testing.T) {
	queue := []byte("test_channel_queue")
	src := `
id: gold
trigger:
  event: Signed Up
steps:
  - id: hello
    send: {channel: email, template: welcome}
  - id: tier
    set_trait: {name: tier, value: '"gold"'}
`
	h := newHarness(t, openPolicy, map[string]string{"gold.yaml": src})
	h.track("ana", "Signed Up", nil)
	enq := func(_ context.Context, a Action) (func(*bbolt.Tx) error, error) {
		if a.Action != ActSend {
			return nil, nil
		}
		return func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(queue)
			if err != nil {
				return err
			}
			return b.Put([]byte(a.Key), nil)
		}, nil
	}
	var seen [][]string
	deliver := func(_ context.Context, a Action) error {
		seen = append(seen, queued(t, h, queue))
		return nil
	}
	if n, err := h.engine.DrainOutboxTo(context.Background(), enq, deliver, 100); err != nil || n != 2 {
		t.Fatalf("drain = %d, %v", n, err)
	}
	if len(seen) != 1 || len(seen[0]) != 1 {
		t.Errorf("when the set_trait was delivered the channel queue held %v, want the send before it", seen)
	}
}
