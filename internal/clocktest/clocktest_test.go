package clocktest_test

import (
	"sync"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	c := clocktest.New(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %s", c.Now())
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { c.Advance(time.Minute) })
	}
	wg.Wait()
	if got := c.Now().Sub(t0); got != 10*time.Minute {
		t.Errorf("after 10 concurrent advances of a minute: +%s", got)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("Set: %s", c.Now())
	}
}
func TestNoonZone(t *testing.T) {
	for h := range 24 {
		for _, m := range []int{0, 59} {
			at := time.Date(2028, 2, 29, h, m, 0, 0, time.UTC)
			name := clocktest.NoonZone(at)
			loc, err := time.LoadLocation(name)
			if err != nil {
				t.Fatalf("%s: %v", at, err)
			}
			if got := at.In(loc).Hour(); got != 12 {
				t.Errorf("%s in %s is %s, want 12:xx", at, name, at.In(loc).Format("15:04"))
			}
		}
	}
}
