package profiles

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// openGuardedStore opens a store that knows web as a client source and pos
// as a server source.
func openGuardedStore(t *testing.T, cfg Config) *testStore {
	t.Helper()
	srcs, err := NewSources([]SourceConfig{{Name: "web", Trust: TrustClient}, {Name: "pos", Trust: TrustServer}})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testStore{t: t, path: filepath.Join(t.TempDir(), "cartera.db"), cfg: cfg, clock: clocktest.New(t0), metrics: NewMetrics(nil)}
	st, err := Open(context.Background(), ts.path, cfg, Options{Now: ts.clock.Now, Metrics: ts.metrics, Trust: srcs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ts.Store = st
	return ts
}

func verified(e *Event) { e.Verified = true }

func lastLedger(p *Profile, action string) *LedgerEntry {
	for i := len(p.Ledger) - 1; i >= 0; i-- {
		if p.Ledger[i].Action == action {
			return &p.Ledger[i]
		}
	}
	return nil
}

func TestGuardProtectedProfiles(t *testing.T) {
	cardKind := func(c *Config) {
		c.Identity.Kinds = []KindConfig{{Name: "loyalty_card", Paths: []string{"traits.loyalty_card", "properties.loyalty_card"}, Normalize: "digits"}}
	}
	// The till links a card: that profile is protected.
	tillOrder := track("t1", "Order Completed", anon("till-1"), props("loyalty_card", "4000 7777"), source("pos"), recv(0))
	tests := []struct {
		name  string
		steps []*Event
		check func(t *testing.T, ts *testStore, till *Profile)
	}{
		{
			name:  "an unverified identify with the card stays on its own profile, as a claim",
			steps: []*Event{identify("m1", anon("e2"), traits("loyalty_card", "4000 7777", "email", "mallory@evil.example", "consent", map[string]any{"email": true}), recv(time.Minute))},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				m := ts.lookup(KindEmail, "mallory@evil.example")
				if m.ID == till.ID || ts.lookup("loyalty_card", "40007777").ID != till.ID {
					t.Fatalf("attacker's email on %s, card on %s; want them apart", m.ID, ts.lookup("loyalty_card", "40007777").ID)
				}
				c := lastLedger(m, LedgerClaim)
				if c == nil || c.Profile != till.ID || !slices.Equal(c.Identifiers, []Identifier{{"loyalty_card", "40007777"}}) || c.MessageID != "m1" {
					t.Errorf("claim %+v, want the card claimed from %s by m1", c, till.ID)
				}
				if _, ok := m.Traits["loyalty_card"]; ok {
					t.Errorf("the claimed card is a trait of the claimant: %v", m.TraitValues())
				}
				if !m.ConsentValues()["email"] || len(ts.lookup("loyalty_card", "40007777").Identities) != 2 {
					t.Errorf("claimant's consent %v (its own profile keeps it); till identities %v", m.ConsentValues(), till.Identities)
				}
			},
		},
		{
			name:  "a verified identify with the card joins the till's profile",
			steps: []*Event{identify("m1", user("vera"), traits("loyalty_card", "4000 7777", "email", "vera@example.com"), verified, recv(time.Minute))},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				if p := ts.lookup(KindEmail, "vera@example.com"); p.ID != till.ID || p.TraitValues()["loyalty_card"] != "4000 7777" {
					t.Errorf("verified login on %s (traits %v), want the till's %s", p.ID, p.TraitValues(), till.ID)
				}
			},
		},
		{
			name: "the protected profile's own id alone: stored, traits and grants not applied, withdrawals applied",
			steps: []*Event{
				identify("v", user("vera"), traits("loyalty_card", "4000 7777", "first_name", "Vera", "consent", map[string]any{"email": true}), verified, recv(time.Minute)),
				identify("x", user("vera"), traits("first_name", "X", "consent", map[string]any{"sms": true, "email": false}), recv(2*time.Minute)),
			},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				p := ts.lookup(KindUserID, "vera")
				if p.TraitValues()["first_name"] != "Vera" {
					t.Errorf("first_name %v, want Vera", p.TraitValues()["first_name"])
				}
				if c := p.ConsentValues(); c["sms"] || c["email"] {
					t.Errorf("consent %v, want the sms grant refused and the email withdrawal applied", c)
				}
				if ids := ts.messageIDs(p.ID, 1); !slices.Equal(ids, []string{"x"}) {
					t.Errorf("latest event %v, want x stored", ids)
				}
				if l := lastLedger(p, LedgerRefusedChange); l == nil || l.MessageID != "x" {
					t.Errorf("ledger %+v, want a refused_change by x", p.Ledger)
				}
			},
		},
		{
			name:  "a server source changes a protected profile",
			steps: []*Event{identify("p", anon("till-1"), traits("first_name", "Vera"), source("pos"), recv(time.Minute))},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				if got := ts.lookup(KindAnonymousID, "till-1").TraitValues()["first_name"]; got != "Vera" {
					t.Errorf("first_name %v, want Vera", got)
				}
			},
		},
		{
			name: "an unverified event naming two protected profiles does not merge them",
			steps: []*Event{
				track("t2", "Order Completed", anon("till-2"), props("loyalty_card", "5000 8888"), source("pos"), recv(time.Minute)),
				identify("m", anon("till-1"), traits("loyalty_card", "5000 8888"), recv(2*time.Minute)),
			},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				other := ts.lookup(KindAnonymousID, "till-2")
				if other.ID == till.ID || ts.ProfileCount() != 2 {
					t.Fatalf("%d profiles, till-2 on %s; want the two tills' profiles apart", ts.ProfileCount(), other.ID)
				}
				// The event lands on the profile of its most trusted
				// identifier (the card) and names the other as a claim.
				if c := lastLedger(other, LedgerClaim); c == nil || c.Profile != till.ID || !slices.Equal(c.Identifiers, []Identifier{{KindAnonymousID, "till-1"}}) {
					t.Errorf("ledger %+v, want a claim of till-1 naming %s", other.Ledger, till.ID)
				}
			},
		},
		{
			name: "profiles only client sources made are not protected",
			steps: []*Event{
				identify("a", user("ana"), traits("email", "ana@example.com"), recv(time.Minute)),
				identify("b", anon("phone-1"), traits("email", "ana@example.com", "first_name", "Ana"), recv(2*time.Minute)),
			},
			check: func(t *testing.T, ts *testStore, till *Profile) {
				p := ts.lookup(KindUserID, "ana")
				if ts.lookup(KindAnonymousID, "phone-1").ID != p.ID || p.TraitValues()["first_name"] != "Ana" {
					t.Errorf("phone on %s, traits %v; want linked to ana's profile", ts.lookup(KindAnonymousID, "phone-1").ID, p.TraitValues())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cardKind(&cfg)
			ts := openGuardedStore(t, cfg)
			o := *tillOrder
			ts.ingest(&o)
			till := ts.lookup(KindAnonymousID, "till-1")
			for _, e := range tt.steps {
				ts.clock.Advance(time.Minute)
				ts.ingest(e)
			}
			tt.check(t, ts, till)
		})
	}
}

// TestLimitRefusesTheWholeIdentityChange: when one new identifier would
// break a limit, none is linked and the event's traits and consent grants
// are not applied (they were said of someone the profile cannot be).
func TestLimitRefusesTheWholeIdentityChange(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("v", user("victim"), anon("a1"), traits("email", "victim@example.com", "first_name", "Vera", "consent", map[string]any{"email": true}), recv(0)))
	ts.clock.Advance(time.Minute)
	ts.ingest(identify("x", user("attacker"), traits("email", "victim@example.com", "phone", "+34 600 111 222", "first_name", "X",
		"consent", map[string]any{"sms": true, "email": false}), recv(time.Minute)))
	p := ts.lookup(KindEmail, "victim@example.com")
	if p.TraitValues()["first_name"] != "Vera" {
		t.Errorf("first_name %v, want Vera", p.TraitValues()["first_name"])
	}
	ts.notFound(KindUserID, "attacker")
	ts.notFound(KindPhone, "+34600111222")
	if c := p.ConsentValues(); c["sms"] || c["email"] {
		t.Errorf("consent %v, want the grant refused and the withdrawal applied", c)
	}
	l := lastLedger(p, LedgerRefusedIdentifier)
	want := []Identifier{{KindUserID, "attacker"}, {KindPhone, "+34600111222"}}
	if l == nil || !slices.Equal(l.Identifiers, want) || l.MessageID != "x" {
		t.Errorf("ledger %+v, want refused_identifier of %v by x", p.Ledger, want)
	}
}

// What only unverified client events linked is marked so; a server source
// or a verified event naming it later clears the mark, and the mark
// survives the stored form.
func TestUnverifiedAddresses(t *testing.T) {
	ts := openGuardedStore(t, DefaultConfig())
	ts.ingest(identify("m1", anon("w1"), traits("email", "signup@example.com", "phone", "+34 600 000 001")))
	p := ts.lookup(KindEmail, "signup@example.com")
	if emails, verified := p.Addresses(KindEmail); !slices.Equal(emails, []string{"signup@example.com"}) || verified != 0 {
		t.Fatalf("after a web identify: emails %v (%d verified), want the address, unverified", emails, verified)
	}
	for _, r := range p.Identities {
		if r.Kind == KindAnonymousID && !r.Unverified {
			t.Error("the web anonymous id is not marked unverified")
		}
	}

	// A verified web identify adds a second address, confirmed: it comes
	// first.
	ts.ingest(identify("m2", anon("w1"), user("u1"), traits("email", "second@example.com"), verified))
	p = ts.lookup(KindEmail, "signup@example.com")
	if emails, verified := p.Addresses(KindEmail); !slices.Equal(emails, []string{"second@example.com", "signup@example.com"}) || verified != 1 {
		t.Errorf("after a verified identify: emails %v (%d verified), want the verified one first, 1 verified", emails, verified)
	}

	// The till names the first address: confirmed, and still after a
	// reopen (the stored form keeps the marks).
	ts.ingest(identify("m3", anon("till-9"), traits("email", "signup@example.com"), source("pos")))
	ts.Close()
	ts.open()
	p = ts.lookup(KindEmail, "signup@example.com")
	if _, verified := p.Addresses(KindEmail); verified != 2 {
		t.Errorf("after the till named it: %d verified emails, want 2", verified)
	}
	if phones, verified := p.Addresses(KindPhone); len(phones) != 1 || verified != 0 {
		t.Errorf("phones %v (%d verified), want the web phone, still unverified", phones, verified)
	}
}
