package profiles

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestConsentOrderedByReceipt: consent follows the server's receipt time,
// never the event time a client claims, and a withdrawal wins over any
// grant not received after it.
func TestConsentOrderedByReceipt(t *testing.T) {
	grant := func(id string, opts ...eventOpt) *Event {
		return identify(id, append([]eventOpt{user("u1"), traits("consent", map[string]any{"email": true})}, opts...)...)
	}
	withdraw := func(id string, opts ...eventOpt) *Event {
		return track(id, EventConsentUpdated, append([]eventOpt{user("u1"), props("email", false)}, opts...)...)
	}
	tests := []struct {
		name  string
		steps [][]*Event
		want  bool
	}{
		{"a grant dated a century ahead does not outlive a later withdrawal",
			each(grant("g", at(100*365*24*time.Hour), recv(0)), withdraw("w", at(0), recv(time.Minute))), false},
		{"a withdrawal dated in the past still wins when received later",
			each(grant("g", recv(0)), withdraw("w", at(-1000*time.Hour), recv(time.Minute))), false},
		{"a grant received after a withdrawal wins",
			each(withdraw("w", recv(0)), grant("g", recv(time.Minute))), true},
		{"a grant received after, though dated before, wins",
			each(withdraw("w", at(time.Hour), recv(0)), grant("g", at(0), recv(time.Minute))), true},
		{"withdrawal wins a tie, grant applied first",
			each(grant("g", recv(0)), withdraw("w", recv(0))), false},
		{"withdrawal wins a tie, withdrawal applied first",
			each(withdraw("w", recv(0)), grant("g", recv(0))), false},
		{"withdrawal wins a tie within one batch",
			[][]*Event{{withdraw("w", recv(0)), grant("g", recv(0))}}, false},
		{"a grant received earlier but committed later does not undo a withdrawal",
			each(withdraw("w", recv(2*time.Minute)), grant("g", recv(time.Minute))), false},
		{"a withdrawal received earlier but committed later does not undo a newer grant",
			each(grant("g", recv(2*time.Minute)), withdraw("w", recv(time.Minute))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := openStore(t, DefaultConfig())
			for _, step := range tt.steps {
				ts.ingest(step...)
			}
			p := ts.lookup(KindUserID, "u1")
			c, ok := p.Consent["email"]
			if !ok || c.Granted != tt.want {
				t.Errorf("email consent %+v (set %v), want granted=%v", c, ok, tt.want)
			}
		})
	}
}

// TestConsentWithoutReceipt: an event made without a receipt time takes
// the store's clock, so it can neither lose to nor pin a dated grant.
func TestConsentWithoutReceipt(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	g := identify("g", user("u1"), traits("consent", map[string]any{"email": true}), at(1000*time.Hour))
	ts.ingest(g)
	ts.clock.Advance(time.Minute)
	w := track("w", EventConsentUpdated, user("u1"), props("email", false))
	w.ReceivedAt = time.Time{}
	ts.ingest(w)
	c := ts.lookup(KindUserID, "u1").Consent["email"]
	if c.Granted || !c.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("email consent %+v, want withdrawn at the store clock %s", c, t0.Add(time.Minute))
	}
}

// TestConsentMergeWithdrawalWins: when two profiles merge, a withdrawal
// received at the same instant as a grant wins, whichever profile survives.
func TestConsentMergeWithdrawalWins(t *testing.T) {
	for _, survivorWithdrew := range []bool{true, false} {
		ts := openStore(t, DefaultConfig())
		first, second := props("email", false), props("email", true)
		if !survivorWithdrew {
			first, second = second, first
		}
		ts.ingest(track("a", EventConsentUpdated, anon("a1"), first, recv(time.Minute)))
		ts.clock.Advance(time.Minute)
		ts.ingest(track("b", EventConsentUpdated, anon("a2"), second, recv(time.Minute)))
		ts.ingest(identify("m", user("u1"), anon("a1"), recv(2*time.Minute)))
		ts.ingest(identify("n", user("u1"), anon("a2"), recv(3*time.Minute)))
		p := ts.lookup(KindUserID, "u1")
		if len(p.MergedFrom) != 1 {
			t.Fatalf("survivor withdrew %v: merged from %v, want one profile", survivorWithdrew, p.MergedFrom)
		}
		if c := p.Consent["email"]; c.Granted {
			t.Errorf("survivor withdrew %v: email consent %+v after the merge, want withdrawn", survivorWithdrew, c)
		}
	}
}

// TestInternalMessageIDs: events Cartera records itself get messageIds
// keyed with the store's secret in their own namespace, so a client that
// sends the natural key first cannot make them duplicates; a repeat of the
// same internal event is still one, across restarts.
func TestInternalMessageIDs(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ctx := context.Background()
	const natural = "unsubscribe:cart_abandonment/1/7/reminder/1"
	ts.ingest(identify("i1", user("victim"), traits("consent", map[string]any{"email": true}), recv(0)))
	pid := ts.lookup(KindUserID, "victim").ID

	// The attacker sends the natural key as a client messageId first.
	planted, err := Decode([]byte(`{"userId":"victim","event":"Page Viewed","messageId":"`+natural+`"}`),
		DecodeOptions{Type: TypeTrack, Source: "web", ReceivedAt: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ts.ingest(planted)

	ts.clock.Advance(2 * time.Minute)
	unsub := func() *Event {
		return &Event{Type: TypeTrack, Event: EventConsentUpdated, MessageID: natural, Properties: map[string]any{"email": false}, Source: "email"}
	}
	res, err := ts.IngestFor(ctx, pid, unsub())
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate {
		t.Fatal("the unsubscribe was taken for a duplicate of the client's planted messageId")
	}
	if c := ts.lookup(KindUserID, "victim").Consent["email"]; c.Granted {
		t.Errorf("email consent %+v after the unsubscribe, want withdrawn", c)
	}
	ids := ts.messageIDs(pid, 1)
	if len(ids) != 1 || !strings.HasPrefix(ids[0], InternalIDPrefix) || strings.Contains(ids[0], "cart_abandonment") {
		t.Errorf("stored messageId %v, want an opaque id starting with %q", ids, InternalIDPrefix)
	}

	// A repeat is a duplicate, also after a restart (the key is kept).
	ts.reopen()
	if res, err := ts.IngestFor(ctx, pid, unsub()); err != nil || !res.Duplicate {
		t.Errorf("repeat after restart: %+v, %v; want a duplicate", res, err)
	}

	// Another store has another key: the id cannot be computed from the
	// natural key alone.
	other := openStore(t, DefaultConfig())
	if a, b := ts.internalID(natural), other.internalID(natural); a == b {
		t.Errorf("two stores map %q to the same id %q", natural, a)
	}
}
