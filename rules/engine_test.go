package rules

import (
	"cartera/internal/clocktest"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"

	"cartera/internal/storetest"
	"cartera/profiles"
)

// engineRules is the ruleset of most engine tests: every aggregate kind the
// audiences need, a window, a where, an expression trait, event_count and
// in_audience.
const engineRules = `
computed_traits:
  - name: orders_count
    aggregate: count
    event: Order Completed
  - name: lifetime_value
    aggregate: sum
    event: Order Completed
    property: revenue
  - name: last_order_at
    aggregate: last
    event: Order Completed
  - name: orders_30d
    aggregate: count
    event: Order Completed
    window: 30d
  - name: store_orders
    aggregate: count
    event: Order Completed
    where: has(event.properties.channel) && event.properties.channel == "pos"
  - name: favourite_category
    aggregate: most_frequent
    event: Product Viewed
    property: category
  - name: recency_score
    expression: 'days_since(profile.computed.last_order_at) <= 7 ? 1.0 : 0.0'
audiences:
  - name: recent_buyers
    expression: profile.computed.orders_30d > 0
  - name: vip
    expression: has(profile.traits.vip) && profile.traits.vip == true
  - name: big_spenders
    expression: profile.computed.lifetime_value > 1000.0
  - name: frequent
    expression: event_count("Order Completed", duration("24h")) >= 2
  - name: vip_recent
    expression: in_audience("vip") && in_audience("recent_buyers")
`

func compileRules(t testing.TB, src string) *Ruleset {
	t.Helper()
	specs, err := Parse("engine.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	rs, err := Compile(specs, EnvOptions{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs
}

// rig is a profile store in t.TempDir() with an engine plugged in, and a
// subscriber that records every audience change.
type rig struct {
	t       testing.TB
	path    string
	clock   *clocktest.Clock
	store   *profiles.Store
	engine  *Engine
	metrics *Metrics
	seq     int

	mu      sync.Mutex
	changes []Change
	notify  chan struct{}
}

func newRig(t testing.TB, rs *Ruleset) *rig {
	t.Helper()
	r := &rig{t: t, path: filepath.Join(t.TempDir(), "cartera.db"), clock: clocktest.New(now), notify: make(chan struct{}, 1)}
	r.open(rs)
	t.Cleanup(func() {
		if r.store != nil {
			if err := r.store.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
	})
	return r
}

// open opens the store file and starts an engine on it with rs, as
// cartera serve does.
func (r *rig) open(rs *Ruleset) {
	r.t.Helper()
	cfg := profiles.DefaultConfig()
	st, err := profiles.Open(context.Background(), r.path, cfg, profiles.Options{Now: r.clock.Now})
	if err != nil {
		r.t.Fatalf("open store: %v", err)
	}
	r.metrics = NewMetrics(nil)
	eng, err := NewEngine(st.DB(), rs, EngineOptions{Now: r.clock.Now, Metrics: r.metrics})
	if err != nil {
		_ = st.Close()
		r.t.Fatalf("NewEngine: %v", err)
	}
	st.Use(eng)
	eng.Subscribe(func(cs []Change) {
		r.mu.Lock()
		r.changes = append(r.changes, cs...)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	r.store, r.engine = st, eng
}

// restart closes the store and opens it again with rs.
func (r *rig) restart(rs *Ruleset) {
	r.t.Helper()
	if err := r.store.Close(); err != nil {
		r.t.Fatalf("close store: %v", err)
	}
	r.store = nil
	r.open(rs)
}

func (r *rig) ingest(evs ...*profiles.Event) []profiles.Result {
	r.t.Helper()
	res, err := r.store.Ingest(context.Background(), evs)
	if err != nil {
		r.t.Fatalf("ingest: %v", err)
	}
	return res
}

func (r *rig) event(typ, user, name string, at time.Time, props map[string]any) *profiles.Event {
	r.seq++
	e := &profiles.Event{
		Type: typ, MessageID: fmt.Sprintf("msg-%d", r.seq), UserID: user, Properties: props,
		Timestamp: at, ReceivedAt: r.clock.Now(), Source: "web",
	}
	if typ == profiles.TypeTrack {
		e.Event = name
	} else {
		e.Name = name
	}
	return e
}

func (r *rig) order(user string, at time.Time, revenue any) *profiles.Event {
	return r.event(profiles.TypeTrack, user, "Order Completed", at, map[string]any{"revenue": revenue})
}

func (r *rig) identify(user string, at time.Time, traits map[string]any) *profiles.Event {
	e := r.event(profiles.TypeIdentify, user, "", at, nil)
	e.Traits = traits
	return e
}

// profileID returns the id of the profile of a user, failing if none.
func (r *rig) profileID(kind, value string) string {
	r.t.Helper()
	p, err := r.store.Lookup(profiles.Identifier{Kind: kind, Value: value})
	if err != nil {
		r.t.Fatalf("lookup %s:%s: %v", kind, value, err)
	}
	return p.ID
}

func (r *rig) standing(profileID string) *Standing {
	r.t.Helper()
	p, err := r.store.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: profileID})
	if err != nil {
		r.t.Fatalf("lookup profile %s: %v", profileID, err)
	}
	s, err := r.engine.Standing(p)
	if err != nil {
		r.t.Fatalf("Standing: %v", err)
	}
	return s
}

// member reports whether the standing says the profile is in an audience.
func (s *Standing) member(audience string) bool {
	m := s.Audiences[audience]
	return m != nil && m.Member
}

func (r *rig) members(audience string) []string {
	r.t.Helper()
	ms, next, err := r.engine.Members(audience, "", 1000)
	if err != nil {
		r.t.Fatalf("Members(%s): %v", audience, err)
	}
	if next != "" {
		r.t.Fatalf("Members(%s): more than one page", audience)
	}
	ids := []string{}
	for _, m := range ms {
		ids = append(ids, m.ProfileID)
	}
	return ids
}

func (r *rig) sizes() map[string]int64 {
	r.t.Helper()
	infos, err := r.engine.Audiences()
	if err != nil {
		r.t.Fatalf("Audiences: %v", err)
	}
	out := map[string]int64{}
	for _, a := range infos {
		out[a.Name] = a.Size
	}
	return out
}

// takeChanges returns the changes published since the last call.
func (r *rig) takeChanges() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	select {
	case <-r.notify:
	default:
	}
	return out
}

// audienceEvents lists the events the engine recorded on a profile, oldest
// first, as "Audience Entered recent_buyers".
func (r *rig) audienceEvents(profileID string) []string {
	r.t.Helper()
	evs, err := r.store.Events(profileID, 0)
	if err != nil {
		r.t.Fatalf("Events: %v", err)
	}
	var out []string
	for _, e := range slices.Backward(evs) {
		if e.Source != profiles.SourceCartera {
			continue
		}
		if e.Type != profiles.TypeTrack || (e.Event != EventAudienceEntered && e.Event != EventAudienceExited) {
			r.t.Errorf("unexpected derived event %+v", e)
		}
		out = append(out, fmt.Sprintf("%s %v", e.Event, e.Properties["audience"]))
	}
	return out
}

func (r *rig) eventCount(profileID string) int {
	r.t.Helper()
	evs, err := r.store.Events(profileID, 0)
	if err != nil {
		r.t.Fatalf("Events: %v", err)
	}
	return len(evs)
}

func entered(profileID, audience string, at time.Time, reason string) Change {
	return Change{ProfileID: profileID, Audience: audience, Entered: true, At: at, Reason: reason}
}

func exited(profileID, audience string, at time.Time, reason string) Change {
	return Change{ProfileID: profileID, Audience: audience, Entered: false, At: at, Reason: reason}
}

func checkChanges(t testing.TB, got []Change, want ...Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("changes:\n%s\nwant:\n%s", fmtChanges(got), fmtChanges(want))
		return
	}
	for i := range got {
		if got[i].ProfileID != want[i].ProfileID || got[i].Audience != want[i].Audience || got[i].Entered != want[i].Entered ||
			!got[i].At.Equal(want[i].At) || got[i].Reason != want[i].Reason {
			t.Errorf("changes:\n%s\nwant:\n%s", fmtChanges(got), fmtChanges(want))
			return
		}
	}
}

func fmtChanges(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		verb := "exited"
		if c.Entered {
			verb = "entered"
		}
		fmt.Fprintf(&b, "  %s %s %s at %s (%s)\n", c.ProfileID, verb, c.Audience, c.At.Format(time.RFC3339Nano), c.Reason)
	}
	if b.Len() == 0 {
		return "  none\n"
	}
	return b.String()
}

func checkComputed(t testing.TB, s *Standing, want map[string]any) {
	t.Helper()
	for name, w := range want {
		got, ok := s.Computed[name]
		if !ok {
			t.Errorf("computed %s missing", name)
			continue
		}
		if !sameValue(got, w) {
			t.Errorf("computed %s = %#v, want %#v", name, got, w)
		}
	}
}

func checkStrings(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestEngineTraitsAndAudiences(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))

	// An identify makes the profile; no orders yet.
	res := r.ingest(r.identify("u1", now.Add(-3*day), map[string]any{"email": "ana@example.com", "plan": "pro"}))
	pid := res[0].ProfileID
	if !res[0].Created || pid == "" {
		t.Fatalf("identify: %+v, want a new profile", res[0])
	}
	s := r.standing(pid)
	checkComputed(t, s, map[string]any{
		"orders_count": int64(0), "lifetime_value": 0.0, "last_order_at": nil, "orders_30d": int64(0),
		"store_orders": int64(0), "favourite_category": nil, "recency_score": 0.0,
	})
	if len(s.Computed) != 7 {
		t.Errorf("Standing has %d computed traits, want the 7 declared: %v", len(s.Computed), s.Computed)
	}
	checkChanges(t, r.takeChanges())

	// The first order enters recent_buyers in the commit of the order.
	orderAt := now.Add(-2 * day)
	r.ingest(
		r.order("u1", orderAt, json.Number("100")),
		r.event(profiles.TypeTrack, "u1", "Product Viewed", now.Add(-2*day), map[string]any{"category": "shoes"}),
	)
	s = r.standing(pid)
	checkComputed(t, s, map[string]any{
		"orders_count": int64(1), "lifetime_value": 100.0, "last_order_at": orderAt, "orders_30d": int64(1),
		"store_orders": int64(0), "favourite_category": "shoes", "recency_score": 1.0,
	})
	if m := s.Audiences["recent_buyers"]; m == nil || !m.Member || !m.EnteredAt.Equal(now) || !m.ExitedAt.IsZero() {
		t.Errorf("recent_buyers standing = %+v, want a member since now", m)
	}
	checkStrings(t, "recent_buyers members", r.members("recent_buyers"), pid)
	if ms, _, _ := r.engine.Members("recent_buyers", "", 10); len(ms) != 1 || !ms[0].EnteredAt.Equal(now) {
		t.Errorf("Members = %+v, want entered at now", ms)
	}
	if got, want := r.sizes(), map[string]int64{"recent_buyers": 1, "vip": 0, "big_spenders": 0, "frequent": 0, "vip_recent": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %v, want %v", got, want)
	}
	checkChanges(t, r.takeChanges(), entered(pid, "recent_buyers", now, "evaluated"))
	evs, err := r.store.Events(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	var derived *profiles.Event
	for i := range evs {
		if evs[i].Event == EventAudienceEntered {
			derived = &evs[i]
		}
	}
	if derived == nil || derived.Source != profiles.SourceCartera || derived.Properties["audience"] != "recent_buyers" ||
		!derived.Timestamp.Equal(now) || !derived.ReceivedAt.Equal(now) || derived.MessageID == "" {
		t.Errorf("Audience Entered event = %+v, want one for recent_buyers at the time of entry", derived)
	}

	// Two more orders, one at a till: over 1000 in total and two within
	// 24 hours. Changes come in the order of the events.
	r.ingest(
		r.event(profiles.TypeTrack, "u1", "Order Completed", now.Add(-time.Hour), map[string]any{"revenue": 950.5, "channel": "pos"}),
		r.order("u1", now.Add(-30*time.Minute), 1),
	)
	checkComputed(t, r.standing(pid), map[string]any{
		"orders_count": int64(3), "lifetime_value": 1051.5, "last_order_at": now.Add(-30 * time.Minute),
		"orders_30d": int64(3), "store_orders": int64(1),
	})
	checkChanges(t, r.takeChanges(), entered(pid, "big_spenders", now, "evaluated"), entered(pid, "frequent", now, "evaluated"))

	// A trait set true, then false: vip_recent follows vip in the same
	// evaluation, since audiences are evaluated in file order.
	r.clock.Advance(time.Minute)
	t1 := r.clock.Now()
	r.ingest(r.identify("u1", t1, map[string]any{"vip": true}))
	checkChanges(t, r.takeChanges(), entered(pid, "vip", t1, "evaluated"), entered(pid, "vip_recent", t1, "evaluated"))
	r.clock.Advance(time.Minute)
	t2 := r.clock.Now()
	r.ingest(r.identify("u1", t2, map[string]any{"vip": false}))
	checkChanges(t, r.takeChanges(), exited(pid, "vip", t2, "evaluated"), exited(pid, "vip_recent", t2, "evaluated"))
	s = r.standing(pid)
	if m := s.Audiences["vip"]; m == nil || m.Member || !m.EnteredAt.Equal(t1) || !m.ExitedAt.Equal(t2) {
		t.Errorf("vip standing = %+v, want left at t2 after entering at t1", m)
	}
	checkStrings(t, "vip members", r.members("vip"))

	// A month later the orders have left the 30-day window. The next event
	// re-evaluates the profile.
	r.clock.Advance(31 * day)
	t3 := r.clock.Now()
	if got := r.standing(pid).Computed["orders_30d"]; got != int64(0) {
		t.Errorf("orders_30d a month later = %v, want 0", got)
	}
	r.ingest(r.event(profiles.TypePage, "u1", "Home", t3, nil))
	checkChanges(t, r.takeChanges(), exited(pid, "recent_buyers", t3, "evaluated"), exited(pid, "frequent", t3, "evaluated"))
	s = r.standing(pid)
	if s.member("recent_buyers") || s.member("frequent") || !s.member("big_spenders") {
		t.Errorf("audiences a month later = %+v, want big_spenders only", s.Audiences)
	}
	checkStrings(t, "recent_buyers members", r.members("recent_buyers"))
	if got, want := r.sizes(), map[string]int64{"recent_buyers": 0, "vip": 0, "big_spenders": 1, "frequent": 0, "vip_recent": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %v, want %v", got, want)
	}
	checkStrings(t, "audience events", r.audienceEvents(pid),
		"Audience Entered recent_buyers",
		"Audience Entered big_spenders",
		"Audience Entered frequent",
		"Audience Entered vip",
		"Audience Entered vip_recent",
		"Audience Exited vip",
		"Audience Exited vip_recent",
		"Audience Exited recent_buyers",
		"Audience Exited frequent",
	)
	if got := testutil.ToFloat64(r.metrics.AudienceChanges.WithLabelValues("entered")); got != 5 {
		t.Errorf("entered changes metric = %v, want 5", got)
	}
	if got := testutil.ToFloat64(r.metrics.AudienceChanges.WithLabelValues("exited")); got != 4 {
		t.Errorf("exited changes metric = %v, want 4", got)
	}
	if got := testutil.ToFloat64(r.metrics.EvalErrors); got != 0 {
		t.Errorf("eval errors = %v, want 0", got)
	}
}

// TestEngineDuplicateEvent checks that a retried event changes nothing.
func TestEngineDuplicateEvent(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))
	e := r.order("u1", now.Add(-time.Hour), 600)
	r.ingest(e)
	pid := r.profileID(profiles.KindUserID, "u1")
	again := *e
	if res := r.ingest(&again); !res[0].Duplicate {
		t.Fatalf("retry: %+v, want a duplicate", res[0])
	}
	checkComputed(t, r.standing(pid), map[string]any{"orders_count": int64(1), "lifetime_value": 600.0})
	checkChanges(t, r.takeChanges(), entered(pid, "recent_buyers", now, "evaluated"))
}

// TestEngineRestart checks that trait states and memberships survive a
// restart, also from a file an earlier version wrote (the state in a
// bucket of its own, moved beside the profiles at start-up).
func TestEngineRestart(t *testing.T) {
	for _, oldLayout := range []bool{false, true} {
		t.Run(fmt.Sprintf("old_layout=%v", oldLayout), func(t *testing.T) {
			r := newRig(t, compileRules(t, engineRules))
			r.ingest(
				r.order("u1", now.Add(-2*day), 700),
				r.order("u1", now.Add(-day), 400),
				r.order("u2", now.Add(-40*day), 20),
				r.order("u3", now.Add(-time.Hour), 5),
				r.order("u3", now.Add(-time.Minute), 5),
			)
			ids := []string{r.profileID(profiles.KindUserID, "u1"), r.profileID(profiles.KindUserID, "u2"), r.profileID(profiles.KindUserID, "u3")}
			members := map[string][]string{}
			for _, a := range []string{"recent_buyers", "big_spenders", "frequent"} {
				members[a] = r.members(a)
			}
			checkStrings(t, "big_spenders", members["big_spenders"], ids[0])
			checkStrings(t, "frequent", members["frequent"], ids[2])
			if len(members["recent_buyers"]) != 2 {
				t.Errorf("recent_buyers = %v, want u1 and u3", members["recent_buyers"])
			}
			sizes := r.sizes()
			var standings []*Standing
			for _, id := range ids {
				standings = append(standings, r.standing(id))
			}

			if oldLayout {
				// As versions before sidecars left the file: the state in
				// a bucket of its own, keyed by profile id.
				n := storetest.UnmoveSidecars(t, r.store.DB(), sidecarState, bucketOldState, func(pid, _ string) []byte { return []byte(pid) })
				if n != len(ids) {
					t.Fatalf("%d states moved to the old bucket, want %d", n, len(ids))
				}
			}
			r.restart(compileRules(t, engineRules))
			_ = r.store.DB().View(func(tx *bbolt.Tx) error {
				if tx.Bucket(bucketOldState) != nil {
					t.Error("rules_state bucket still there after start-up")
				}
				return nil
			})
			for a, want := range members {
				checkStrings(t, a+" after restart", r.members(a), want...)
				if got := r.sizes()[a]; got != int64(len(want)) {
					t.Errorf("size of %s after restart = %d, want %d", a, got, len(want))
				}
			}
			if got := r.sizes(); !reflect.DeepEqual(got, sizes) {
				t.Errorf("sizes after restart = %v, want %v", got, sizes)
			}
			for i, id := range ids {
				if got := r.standing(id); !reflect.DeepEqual(got, standings[i]) {
					t.Errorf("standing of %s after restart:\n%+v\nwant\n%+v", id, got, standings[i])
				}
			}

			// The kept state goes on from where it was.
			r.takeChanges()
			r.ingest(r.order("u2", now.Add(-time.Minute), 1000))
			checkComputed(t, r.standing(ids[1]), map[string]any{"orders_count": int64(2), "lifetime_value": 1020.0, "orders_30d": int64(1)})
			checkChanges(t, r.takeChanges(), entered(ids[1], "recent_buyers", now, "evaluated"), entered(ids[1], "big_spenders", now, "evaluated"))
			if got := r.sizes()["big_spenders"]; got != 2 {
				t.Errorf("big_spenders size = %d, want 2", got)
			}
		})
	}
}

func TestEngineMerge(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))

	// An anonymous shopper orders twice; later the same person signs in
	// and orders under a user id. The anonymous profile is older.
	anonOrder := func(at time.Time, revenue any) *profiles.Event {
		e := r.order("", at, revenue)
		e.AnonymousID = "a1"
		return e
	}
	r.ingest(anonOrder(now.Add(-2*day), 400), anonOrder(now.Add(-day), 300))
	anon := r.profileID(profiles.KindAnonymousID, "a1")
	r.clock.Advance(time.Minute)
	t1 := r.clock.Now()
	r.ingest(r.identify("u1", now.Add(-3*day), map[string]any{"email": "ana@example.com"}), r.order("u1", now.Add(-3*day), 500))
	user := r.profileID(profiles.KindUserID, "u1")
	if anon == user {
		t.Fatal("two profiles expected before the merge")
	}
	checkChanges(t, r.takeChanges(), entered(anon, "recent_buyers", now, "evaluated"), entered(user, "recent_buyers", t1, "evaluated"))

	// An order that carries both ids merges them; the order itself counts
	// once.
	r.clock.Advance(time.Minute)
	t2 := r.clock.Now()
	merging := r.order("u1", now.Add(-time.Hour), 50)
	merging.AnonymousID = "a1"
	res := r.ingest(merging)
	if res[0].ProfileID != anon || !slices.Equal(res[0].Merged, []string{user}) {
		t.Fatalf("merge result %+v, want %s to survive and absorb %s", res[0], anon, user)
	}
	checkComputed(t, r.standing(anon), map[string]any{
		"orders_count": int64(4), "lifetime_value": 1250.0, "last_order_at": now.Add(-time.Hour), "orders_30d": int64(4),
	})
	checkChanges(t, r.takeChanges(), exited(user, "recent_buyers", t2, "merged"), entered(anon, "big_spenders", t2, "evaluated"))
	checkStrings(t, "recent_buyers", r.members("recent_buyers"), anon)
	checkStrings(t, "big_spenders", r.members("big_spenders"), anon)
	if got := r.sizes(); got["recent_buyers"] != 1 || got["big_spenders"] != 1 {
		t.Errorf("sizes after merge = %v, want 1 and 1", got)
	}
	if got := r.profileID(profiles.KindUserID, "u1"); got != anon {
		t.Errorf("u1 is profile %s after the merge, want %s", got, anon)
	}
	err := r.store.DB().View(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		if v := sc.Get(user, sidecarState); v != nil {
			return fmt.Errorf("state of the merged-away profile kept: %s", v)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// The survivor goes on incrementally from the rebuilt state.
	r.ingest(r.order("u1", now, 1))
	checkComputed(t, r.standing(anon), map[string]any{"orders_count": int64(5), "lifetime_value": 1251.0})
}

func TestEngineErase(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))
	r.ingest(r.order("u1", now.Add(-2*time.Hour), 800), r.order("u1", now.Add(-time.Hour), 300), r.order("u2", now.Add(-time.Hour), 10))
	pid := r.profileID(profiles.KindUserID, "u1")
	other := r.profileID(profiles.KindUserID, "u2")
	r.takeChanges()

	r.clock.Advance(time.Minute)
	t1 := r.clock.Now()
	if _, err := r.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "u1"}, false); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	checkChanges(t, r.takeChanges(),
		exited(pid, "big_spenders", t1, "erased"), exited(pid, "frequent", t1, "erased"), exited(pid, "recent_buyers", t1, "erased"))
	checkStrings(t, "recent_buyers", r.members("recent_buyers"), other)
	checkStrings(t, "big_spenders", r.members("big_spenders"))
	if got := r.sizes(); got["recent_buyers"] != 1 || got["big_spenders"] != 0 || got["frequent"] != 0 {
		t.Errorf("sizes after erase = %v", got)
	}
	err := r.store.DB().View(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		if v := sc.Get(pid, sidecarState); v != nil {
			return fmt.Errorf("state of the erased profile kept: %s", v)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// The same user id later starts from nothing.
	r.ingest(r.order("u1", now, 5))
	fresh := r.profileID(profiles.KindUserID, "u1")
	if fresh == pid {
		t.Fatal("the erased profile came back")
	}
	checkComputed(t, r.standing(fresh), map[string]any{"orders_count": int64(1), "lifetime_value": 5.0})
	checkChanges(t, r.takeChanges(), entered(fresh, "recent_buyers", t1, "evaluated"))
}

func TestEngineBackfill(t *testing.T) {
	const v1 = `
computed_traits:
  - name: orders_count
    aggregate: count
    event: Order Completed
`
	const v2 = v1 + `
  - name: lifetime_value
    aggregate: sum
    event: Order Completed
    property: revenue
audiences:
  - name: customers
    expression: profile.computed.orders_count > 0
  - name: big_spenders
    expression: profile.computed.lifetime_value > 1000.0
`
	const v3 = v1 + `
  - name: lifetime_value
    aggregate: sum
    event: Order Completed
    property: revenue
audiences:
  - name: customers
    expression: profile.computed.orders_count > 0
`
	r := newRig(t, compileRules(t, v1))
	r.ingest(
		r.order("u1", now.Add(-3*day), 900), r.order("u1", now.Add(-2*day), 600),
		r.order("u2", now.Add(-day), 20),
		r.identify("u3", now.Add(-day), map[string]any{"plan": "free"}),
	)
	u1, u2, u3 := r.profileID(profiles.KindUserID, "u1"), r.profileID(profiles.KindUserID, "u2"), r.profileID(profiles.KindUserID, "u3")
	checkChanges(t, r.takeChanges())

	// A new trait and new audiences: nothing until the backfill runs.
	r.clock.Advance(time.Hour)
	t1 := r.clock.Now()
	r.restart(compileRules(t, v2))
	if got := r.standing(u1).Computed["lifetime_value"]; got != nil {
		t.Errorf("lifetime_value before backfill = %v, want nil", got)
	}
	checkStrings(t, "customers before backfill", r.members("customers"))

	if err := r.engine.Backfill(context.Background(), r.store); err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	checkComputed(t, r.standing(u1), map[string]any{"orders_count": int64(2), "lifetime_value": 1500.0})
	checkComputed(t, r.standing(u2), map[string]any{"orders_count": int64(1), "lifetime_value": 20.0})
	checkComputed(t, r.standing(u3), map[string]any{"orders_count": int64(0), "lifetime_value": 0.0})
	customers := []string{u1, u2}
	slices.Sort(customers)
	checkStrings(t, "customers", r.members("customers"), customers...)
	checkStrings(t, "big_spenders", r.members("big_spenders"), u1)
	if got, want := r.sizes(), map[string]int64{"customers": 2, "big_spenders": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %v, want %v", got, want)
	}
	got := r.takeChanges()
	slices.SortFunc(got, func(a, b Change) int { return strings.Compare(a.ProfileID+a.Audience, b.ProfileID+b.Audience) })
	want := []Change{entered(u1, "customers", t1, "evaluated"), entered(u1, "big_spenders", t1, "evaluated"), entered(u2, "customers", t1, "evaluated")}
	slices.SortFunc(want, func(a, b Change) int { return strings.Compare(a.ProfileID+a.Audience, b.ProfileID+b.Audience) })
	checkChanges(t, got, want...)
	checkStrings(t, "u1 audience events", r.audienceEvents(u1), "Audience Entered customers", "Audience Entered big_spenders")
	checkStrings(t, "u3 audience events", r.audienceEvents(u3))
	if got := testutil.ToFloat64(r.metrics.Backfilled.WithLabelValues("ok")); got != 3 {
		t.Errorf("backfilled profiles = %v, want 3", got)
	}
	if got := testutil.ToFloat64(r.metrics.BackfillPending); got != 0 {
		t.Errorf("backfill running gauge = %v after it ended, want 0", got)
	}

	// The same ruleset again, in this run or the next: nothing to do.
	events := r.eventCount(u1)
	for range 2 {
		before := testutil.ToFloat64(r.metrics.Backfilled.WithLabelValues("ok"))
		if err := r.engine.Backfill(context.Background(), r.store); err != nil {
			t.Fatalf("second Backfill: %v", err)
		}
		if got := testutil.ToFloat64(r.metrics.Backfilled.WithLabelValues("ok")); got != before {
			t.Errorf("backfilled profiles after a second run = %v, want %v", got, before)
		}
		checkChanges(t, r.takeChanges())
		if got := r.eventCount(u1); got != events {
			t.Errorf("u1 has %d events after a second backfill, want %d", got, events)
		}
		r.restart(compileRules(t, v2))
	}

	// An audience dropped from the files is left by its members.
	r.clock.Advance(time.Hour)
	t2 := r.clock.Now()
	r.restart(compileRules(t, v3))
	if err := r.engine.Backfill(context.Background(), r.store); err != nil {
		t.Fatalf("Backfill v3: %v", err)
	}
	checkChanges(t, r.takeChanges(), exited(u1, "big_spenders", t2, "removed"))
	checkStrings(t, "u1 audience events", r.audienceEvents(u1), "Audience Entered customers", "Audience Entered big_spenders", "Audience Exited big_spenders")
	if _, _, err := r.engine.Members("big_spenders", "", 10); !errors.Is(err, ErrUnknownAudience) {
		t.Errorf("Members of a removed audience: %v, want ErrUnknownAudience", err)
	}
	if got, want := r.sizes(), map[string]int64{"customers": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %v, want %v", got, want)
	}
}

// TestEngineBackfillCancel checks that a cancelled backfill says so and
// leaves the definitions to be backfilled on the next start.
func TestEngineBackfillCancel(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))
	r.ingest(r.order("u1", now.Add(-day), 10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.engine.Backfill(ctx, r.store); !errors.Is(err, context.Canceled) {
		t.Fatalf("Backfill with a cancelled context = %v, want context.Canceled", err)
	}
	if err := r.engine.Backfill(context.Background(), r.store); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.metrics.Backfilled.WithLabelValues("ok")); got != 1 {
		t.Errorf("backfilled after the cancelled run = %v, want 1", got)
	}
}

// TestEngineSweeper checks that a quiet profile leaves an audience whose
// window has passed without waiting for its next event.
func TestEngineSweeper(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))
	r.ingest(r.order("u1", now.Add(-day), 10))
	pid := r.profileID(profiles.KindUserID, "u1")
	r.takeChanges()
	r.clock.Advance(30 * day)
	t1 := r.clock.Now()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.engine.RunSweeper(ctx, r.store, time.Millisecond)
	}()
	select {
	case <-r.notify:
	case <-time.After(20 * time.Second):
		t.Error("no audience change from the sweeper")
	}
	cancel()
	<-done
	checkChanges(t, r.takeChanges(), exited(pid, "recent_buyers", t1, "evaluated"))
	checkStrings(t, "recent_buyers", r.members("recent_buyers"))
	checkStrings(t, "audience events", r.audienceEvents(pid), "Audience Entered recent_buyers", "Audience Exited recent_buyers")
}

func TestEngineMembersPages(t *testing.T) {
	r := newRig(t, compileRules(t, engineRules))
	for _, u := range []string{"u1", "u2", "u3"} {
		r.ingest(r.order(u, now, 1))
	}
	all := r.members("recent_buyers")
	if len(all) != 3 || !slices.IsSorted(all) {
		t.Fatalf("members = %v, want 3 in id order", all)
	}
	page, next, err := r.engine.Members("recent_buyers", "", 2)
	if err != nil || len(page) != 2 || page[0].ProfileID != all[0] || page[1].ProfileID != all[1] || next != all[1] {
		t.Fatalf("first page = %+v, next %q, %v; want %v, next %s", page, next, err, all[:2], all[1])
	}
	page, next, err = r.engine.Members("recent_buyers", next, 2)
	if err != nil || len(page) != 1 || page[0].ProfileID != all[2] || next != "" {
		t.Fatalf("second page = %+v, next %q, %v; want %v and no next", page, next, err, all[2:])
	}
	if page, next, err := r.engine.Members("recent_buyers", "", 3); err != nil || len(page) != 3 || next != "" {
		t.Errorf("exact page = %d members, next %q, %v; want 3 and no next", len(page), next, err)
	}
	if _, _, err := r.engine.Members("nope", "", 10); !errors.Is(err, ErrUnknownAudience) {
		t.Errorf("unknown audience: %v, want ErrUnknownAudience", err)
	}
}

// TestEngineExampleRules runs the example rule files end to end: the
// expression trait, consent, identities and in_audience chains.
func TestEngineExampleRules(t *testing.T) {
	r := newRig(t, loadExamples(t))
	identify := r.identify("u1", now.Add(-10*day), map[string]any{
		"email": "Ana@Example.com", "consent": map[string]any{"email": true},
	})
	r.ingest(identify)
	pid := r.profileID(profiles.KindUserID, "u1")
	checkChanges(t, r.takeChanges(), entered(pid, "email_reachable", now, "evaluated"))

	r.ingest(
		r.order("u1", now.Add(-5*day), 120),
		r.order("u1", now.Add(-day), 80),
		r.event(profiles.TypeTrack, "u1", "Product Added", now.Add(-2*day), nil),
		r.event(profiles.TypeTrack, "u1", "Product Added", now.Add(-time.Hour), nil),
		r.event(profiles.TypeTrack, "u1", "Product Viewed", now.Add(-time.Hour), map[string]any{"category": "shoes"}),
	)
	s := r.standing(pid)
	checkComputed(t, s, map[string]any{
		"orders_count": int64(2), "lifetime_value": 200.0, "last_order_at": now.Add(-day), "orders_90d": int64(2),
		"carts_7d": int64(2), "favourite_category": "shoes", "store_orders": int64(0),
	})
	// 0.4 for an order within 30 days, 0.1 per order in 90 days, 0.1 per
	// cart add in 7 days.
	if p, _ := s.Computed["purchase_propensity"].(float64); math.Abs(p-0.8) > 1e-9 {
		t.Errorf("purchase_propensity = %v, want 0.8", s.Computed["purchase_propensity"])
	}
	checkChanges(t, r.takeChanges(), entered(pid, "customers", now, "evaluated"), entered(pid, "priority_recovery", now, "evaluated"))

	// A VIP flag from the CRM: vip, and priority_recovery stays.
	r.ingest(r.identify("u1", now, map[string]any{"vip": true}))
	checkChanges(t, r.takeChanges(), entered(pid, "vip", now, "evaluated"))
	for _, a := range []string{"customers", "vip", "priority_recovery", "email_reachable"} {
		checkStrings(t, a, r.members(a), pid)
	}
}

// TestRulesetRequire checks that an event_count used only outside the rule
// files (a journey condition) is kept once the ruleset requires it.
func TestRulesetRequire(t *testing.T) {
	rs := compileRules(t, engineRules)
	prg, err := rs.Env.Compile(`event_count("Product Added", duration("1h")) >= 2 && event_count("Order Completed", duration("24h")) == 1`, types.BoolType)
	if err != nil {
		t.Fatal(err)
	}
	rs.Require(prg.EventCounts()...)
	rs.Require(prg.EventCounts()...) // twice is once
	if n := len(rs.maintained()); n != 6+2 {
		t.Errorf("%d maintained traits, want the 6 aggregates and 2 counts (Order Completed 24h is shared)", n)
	}
	r := newRig(t, rs)
	r.ingest(
		r.event(profiles.TypeTrack, "u1", "Product Added", now.Add(-2*time.Hour), nil),
		r.event(profiles.TypeTrack, "u1", "Product Added", now.Add(-30*time.Minute), nil),
		r.event(profiles.TypeTrack, "u1", "Product Added", now.Add(-time.Minute), nil),
		r.order("u1", now.Add(-time.Hour), 5),
	)
	p, err := r.store.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	eval := func(at time.Time) bool {
		var ok bool
		err := r.store.DB().View(func(tx *bbolt.Tx) error {
			w := &txWork{e: r.engine, tx: tx, rs: rs, states: map[string]*profileState{}}
			ps, err := w.state(p.ID)
			if err != nil {
				return err
			}
			ok, err = prg.Bool(&Input{Profile: rs.view(p, ps, at), Now: at})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !eval(now) {
		t.Error("journey condition false at now, want true (2 adds in the last hour, 1 order in 24h)")
	}
	if eval(now.Add(30 * time.Minute)) {
		t.Error("journey condition true half an hour later, want false (1 add in the last hour)")
	}
}
