package journeys

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

const adsPolicy = `
policies:
  timezone: UTC
  consent_required: [ads]
  ad_audiences:
    - name: retargeting
`

const winbackJourney = `
id: winback
trigger: {event: Lapsed}
steps:
  - id: add
    audience: {add: retargeting}
  - id: hold
    wait: 30d
  - id: leave
    audience: {remove: retargeting}
`

const cartHoldJourney = `
id: cart
trigger: {event: Product Added}
exit_when:
  - event: Order Completed
steps:
  - id: add
    audience: {add: retargeting}
  - id: hold
    wait: 7d
  - id: leave
    audience: {remove: retargeting}
`

// adActions lists the audience actions the platforms get (the outbox).
func adActions(as []Action) []string {
	var out []string
	for _, a := range as {
		if a.Action == ActAudienceAdd || a.Action == ActAudienceRemove {
			out = append(out, a.Journey+":"+a.Action)
		}
	}
	return out
}

func holdHarness(t *testing.T) (*harness, string) {
	h := newHarness(t, adsPolicy, map[string]string{"winback.yaml": winbackJourney, "cart.yaml": cartHoldJourney})
	pid := h.identify("lena", map[string]any{"email": "lena@example.com", "consent": map[string]any{"ads": true}})
	h.track("lena", "Lapsed", nil)
	h.clock.Advance(72 * time.Hour)
	h.track("lena", "Product Added", nil)
	if got := adActions(h.drain()); len(got) != 1 || got[0] != "winback:audience_add" {
		t.Fatalf("the platforms got %v, want the win-back's one add", got)
	}
	return h, pid
}

// A person leaves a shared ad audience only when the last journey holding
// them lets go.
func TestAudienceHeldUntilTheLastJourneyLetsGo(t *testing.T) {
	h, pid := holdHarness(t)
	h.fireUntil(h.clock.Now().Add(8 * 24 * time.Hour)) // the cart journey lets go
	if got := adActions(h.drain()); len(got) != 0 {
		t.Errorf("when the cart journey let go the platforms got %v, want nothing (the win-back holds her)", got)
	}
	held := h.actions(ActSuppressed, pid)
	if len(held) != 1 || dm(held[0])["reason"] != "held: still in retargeting for winback" {
		t.Errorf("the held-back removal is not shown: %s", describe(held))
	}
	h.fireUntil(h.clock.Now().Add(30 * 24 * time.Hour))
	if got := adActions(h.drain()); len(got) != 1 || got[0] != "winback:audience_remove" {
		t.Errorf("when the win-back let go the platforms got %v, want its removal", got)
	}
	h.noTimers()
}

// An exit_when of one journey does not take the person out while another
// holds them.
func TestExitReleasesOnlyItsHold(t *testing.T) {
	h, _ := holdHarness(t)
	h.track("lena", "Order Completed", nil)
	if got := adActions(h.drain()); len(got) != 0 {
		t.Errorf("the cart journey's exit sent %v, want nothing (the win-back holds her)", got)
	}
}

// An erasure, or ads consent withdrawn, takes the person out at once,
// whoever holds them, with one removal.
func TestAudienceDroppedAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(h *harness)
	}{
		{"ads consent withdrawn", func(h *harness) {
			h.ingest(&profiles.Event{Type: profiles.TypeTrack, UserID: "lena", Event: profiles.EventConsentUpdated, Properties: map[string]any{"ads": false}})
		}},
		{"erased", func(h *harness) {
			if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "lena"}, false); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := holdHarness(t)
			tc.do(h)
			if got := adActions(h.drain()); len(got) != 1 || !strings.HasSuffix(got[0], ":audience_remove") {
				t.Fatalf("the platforms got %v, want one removal", got)
			}
			// The journeys' own removals later have nothing left to say.
			h.fireUntil(h.clock.Now().Add(40 * 24 * time.Hour))
			if got := adActions(h.drain()); len(got) != 0 {
				t.Errorf("later steps sent %v, want nothing", got)
			}
			var left int
			if err := h.store.DB().View(func(tx *bbolt.Tx) error { left = tx.Bucket(bucketAdMembers).Stats().KeyN; return nil }); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("%d ad audience memberships left", left)
			}
		})
	}
}

// A membership written by an earlier version (the journey id as value)
// is one unnamed hold, released by the first removal.
func TestLegacyMembership(t *testing.T) {
	for _, tc := range []struct {
		v    []byte
		want []uint64
	}{
		{[]byte("winback"), []uint64{legacyHolder}},
		{[]byte{}, []uint64{legacyHolder}},
		{nil, nil},
		{encodeHolders([]uint64{7, 9}), []uint64{7, 9}},
		{encodeHolders(nil), []uint64{}},
	} {
		got := decodeHolders(tc.v)
		if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Errorf("decodeHolders(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
	h, pid := holdHarness(t)
	// As an earlier version left it: one key, the adding journey's id.
	if err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAdMembers).Put(adMemberKey("retargeting", pid), []byte("winback"))
	}); err != nil {
		t.Fatal(err)
	}
	h.fireUntil(h.clock.Now().Add(8 * 24 * time.Hour))
	if got := adActions(h.drain()); len(got) != 1 || got[0] != "cart:audience_remove" {
		t.Errorf("the first removal after an upgrade: %v, want it sent", got)
	}
}

// AdMembers lists who is in an ad audience and the journeys holding
// them, paged in profile id order; AdAudienceSizes counts them.
func TestAdMembersAndSizes(t *testing.T) {
	h, lena := holdHarness(t)
	ivo := h.identify("ivo", map[string]any{"email": "ivo@example.com", "consent": map[string]any{"ads": true}})
	h.track("ivo", "Lapsed", nil)
	h.drain()
	members, next, err := h.engine.AdMembers("retargeting", "", 10)
	if err != nil || next != "" || len(members) != 2 {
		t.Fatalf("AdMembers = %v, %q, %v; want Lena and Ivo on one page", members, next, err)
	}
	byID := map[string]AdMember{}
	for _, m := range members {
		byID[m.ProfileID] = m
	}
	if m := byID[lena]; len(m.Holds) != 2 || m.Holds[0] != (AdHold{Journey: "winback", Step: "hold"}) || m.Holds[1] != (AdHold{Journey: "cart", Step: "hold"}) {
		t.Errorf("Lena's holds: %+v, want winback then cart, both waiting at hold", m.Holds)
	}
	if m := byID[ivo]; len(m.Holds) != 1 || m.Holds[0].Journey != "winback" {
		t.Errorf("Ivo's holds: %+v", m.Holds)
	}
	first, next, err := h.engine.AdMembers("retargeting", "", 1)
	if err != nil || len(first) != 1 || next != first[0].ProfileID {
		t.Fatalf("page of one: %v, next %q, %v", first, next, err)
	}
	second, next2, err := h.engine.AdMembers("retargeting", next, 1)
	if err != nil || len(second) != 1 || next2 != "" || second[0].ProfileID == first[0].ProfileID || second[0].ProfileID < first[0].ProfileID {
		t.Fatalf("second page: %v, next %q, %v", second, next2, err)
	}
	sizes, err := h.engine.AdAudienceSizes()
	if err != nil || sizes["retargeting"] != 2 {
		t.Errorf("sizes = %v, %v; want retargeting 2", sizes, err)
	}
	if _, _, err := h.engine.AdMembers("nope", "", 10); !errors.Is(err, ErrUnknownAdAudience) {
		t.Errorf("an undeclared audience: %v", err)
	}
	// After 31 days every journey has let go: nobody is left.
	h.fireUntil(h.clock.Now().Add(31 * 24 * time.Hour))
	h.drain()
	if sizes, err := h.engine.AdAudienceSizes(); err != nil || sizes["retargeting"] != 0 {
		t.Errorf("after every hold ended: sizes %v, %v; want 0", sizes, err)
	}
}

// BenchmarkAdAudience: a retargeting audience of 100,000 people, counted
// (the console's samples and pages) and its first page of 50 read.
func BenchmarkAdAudience(b *testing.B) {
	h := openHarness(b, adsPolicy, nil, true)
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketAdMembers)
		for i := range 100_000 {
			if err := bk.Put(adMemberKey("retargeting", fmt.Sprintf("p%012d", i)), encodeHolders([]uint64{uint64(i + 1)})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sizes", func(b *testing.B) {
		for b.Loop() {
			if s, err := h.engine.AdAudienceSizes(); err != nil || s["retargeting"] != 100_000 {
				b.Fatal(s, err)
			}
		}
	})
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			if m, _, err := h.engine.AdMembers("retargeting", "p000000050000", 50); err != nil || len(m) != 50 {
				b.Fatal(len(m), err)
			}
		}
	})
}
