package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestEraseLeavesNothingInTheOutbox: after DELETE /v1/profiles/..., no
// byte of the person's email or phone is left in the outbox's buckets,
// though a failed webhook send had put both in a dead letter (the
// properties of the event that triggered it); the erasure's removals from
// the ad audiences still go out.
func TestEraseLeavesNothingInTheOutbox(t *testing.T) {
	t.Parallel()
	hook := newHookStandIn(t)
	rig := newDeliveryRig(t, hook.URL+"/hook")
	hook.set(func(hs *hookStandIn) { hs.failing = true })
	s, stop := rig.serve(t, nil)

	const email, phone = "eve.erased@example.com", "600111222"
	mustOK(t, s.send(t, dlWebKey, "/v1/identify", `{"userId":"u-eve","traits":{"email":"`+email+`","phone":"+34`+phone+`","consent":{"email":true,"ads":true}}}`))
	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-eve","event":"Back In Stock","properties":{"sku":"RUN-42","contact":"`+email+`","mobile":"+34 `+phone+`"}}`))
	eventually(t, 10*time.Second, "the failing webhook send in the dead letters", func() bool {
		return len(s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any)) == 1
	})
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:u-eve"); r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.raw)
	}
	if d := s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any); len(d) != 0 {
		t.Errorf("dead letters after the erasure: %v", d)
	}
	eventually(t, 10*time.Second, "the erasure's audience removals delivered", func() bool {
		return len(s.admin(t, "GET", "/v1/outbox?state=queued").body["messages"].([]any)) == 0
	})
	if len(rig.meta.Hits()) == 0 {
		t.Error("no removal reached Meta")
	}
	stop()

	needles := [][]byte{[]byte(email), []byte(phone)}
	db, err := bbolt.Open(rig.data, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string]bool{}
	if err := db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return walkBucket(b, func(k, v []byte) {
				for _, n := range needles {
					if bytes.Contains(k, n) || bytes.Contains(v, n) {
						holders[string(name)] = true
					}
				}
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for name := range holders {
		t.Errorf("bucket %s still holds the erased person's email or phone", name)
	}
	// Nor in the file's free pages: the erasure scrubbed them.
	raw, err := os.ReadFile(rig.data)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needles {
		if c := bytes.Count(raw, n); c > 0 {
			i := bytes.Index(raw, n)
			t.Errorf("the file still holds %q %d times after the erasure; page %d: %q", n, c, i/4096, raw[max(0, i-300):min(len(raw), i+200)])
		}
	}
}

// walkBucket calls f on every key and value of b and its nested buckets.
func walkBucket(b *bbolt.Bucket, f func(k, v []byte)) error {
	return b.ForEach(func(k, v []byte) error {
		f(k, v)
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb, f)
			}
		}
		return nil
	})
}
