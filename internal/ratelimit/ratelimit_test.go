package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"cartera/internal/ratelimit"
)

func TestSet(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s := ratelimit.New(1, 2)
	for i, want := range []bool{true, true, false} {
		if got := s.Allow("a", t0); got != want {
			t.Errorf("take %d of a at once: %v, want %v", i+1, got, want)
		}
	}
	if !s.Allow("b", t0) {
		t.Error("another key shares a's bucket")
	}
	if !s.Allow("a", t0.Add(time.Second)) {
		t.Error("a's bucket did not refill after a second")
	}
	// A key whose bytes the caller reuses is copied, not kept by reference.
	b := []byte("cc")
	key := string(b)
	s.Allow(key, t0)
	s.Allow(key, t0)
	if s.Allow("cc", t0) {
		t.Error("a third take of cc at once was allowed")
	}
	var off *ratelimit.Set = ratelimit.New(0, 1)
	if off != nil || !off.Allow("x", t0) || off.Get("x", t0) != nil {
		t.Error("a limit of 0 a second is not off")
	}
}

func TestSetIsBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s := ratelimit.New(1, 1)
	for i := range ratelimit.MaxKeys + 10 {
		s.Allow(fmt.Sprint("k", i), t0)
	}
	// Every bucket was emptied: eviction had to forget half at once; a
	// key still kept stays refused, and the set did not grow unbounded.
	kept := 0
	for i := range ratelimit.MaxKeys + 10 {
		if s.Get(fmt.Sprint("k", i), t0).TokensAt(t0) < 1 {
			kept++
		}
	}
	if kept > ratelimit.MaxKeys {
		t.Errorf("%d buckets kept, over %d", kept, ratelimit.MaxKeys)
	}
}
