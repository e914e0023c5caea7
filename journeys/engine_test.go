package journeys

import (
	"bytes"
	"cartera/internal/clocktest"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/storetest"
	"cartera/profiles"
	"cartera/rules"
)

// t0 is a Monday, 10:00 UTC: outside the quiet hours of the policy tests.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// testRules declare what the journeys of these tests refer to.
const testRules = `
computed_traits:
  - name: orders_count
    aggregate: count
    event: Order Completed
audiences:
  - name: customers
    expression: profile.computed.orders_count > 0
  - name: vip
    expression: has(profile.traits.vip) && profile.traits.vip == true
`

// openPolicy asks nothing of anyone: the policy tests bring their own.
const openPolicy = `
policies:
  timezone: UTC
  consent_required: []
  ad_audiences:
    - name: retargeting
`

// harness is a profile store in t.TempDir() with the rules and journey
// engines plugged in as serve plugs them, all on one fake clock. It records
// every action the engine tells its observers of and every action the
// outbox delivers, across restarts.
type harness struct {
	t      testing.TB
	path   string
	clock  *clocktest.Clock
	rules  string
	policy string
	// files are the journey files in force, by name.
	files map[string]string
	// noSync turns fsync off (benchmarks).
	noSync bool
	// ids is the source of profile ids: seeded, so that a test's people
	// get the same ids (and split arms) on every run.
	ids *rand.ChaCha8

	store  *profiles.Store
	re     *rules.Engine
	engine *Engine
	seq    int
	// fenced makes Options.Fence fail (a cluster node's lost lease).
	fenced atomic.Bool

	mu        sync.Mutex
	observed  []Action
	delivered []Action
}

func newHarness(t testing.TB, policy string, files map[string]string) *harness {
	t.Helper()
	return openHarness(t, policy, files, false)
}

func openHarness(t testing.TB, policy string, files map[string]string, noSync bool) *harness {
	t.Helper()
	h := &harness{
		t: t, path: filepath.Join(t.TempDir(), "cartera.db"), clock: clocktest.New(t0),
		rules: testRules, policy: policy, files: maps.Clone(files), noSync: noSync,
		ids: rand.NewChaCha8([32]byte{'c', 'a', 'r', 't', 'e', 'r', 'a'}),
	}
	h.open()
	t.Cleanup(func() {
		if h.store != nil {
			if err := h.store.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
	})
	return h
}

// compile builds the definitions the way cmd/cartera does: journeys and
// policy compile in the rules' environment and ask it for their
// event_count indexes.
func (h *harness) compile() (*rules.Ruleset, *Set) {
	h.t.Helper()
	specs, err := rules.Parse("rules.yaml", []byte(h.rules))
	if err != nil {
		h.t.Fatalf("parse rules: %v", err)
	}
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		h.t.Fatalf("compile rules: %v", err)
	}
	pol, err := ParsePolicy("policies.yaml", []byte(h.policy), rs.Env)
	if err != nil {
		h.t.Fatalf("parse policy: %v", err)
	}
	var js []*Journey
	for _, name := range slices.Sorted(maps.Keys(h.files)) {
		j, err := Parse(name, []byte(h.files[name]), rs.Env, knownOf(rs, pol))
		if err != nil {
			h.t.Fatalf("parse journey %s: %v", name, err)
		}
		rs.Require(j.EventCounts()...)
		js = append(js, j)
	}
	for _, s := range pol.Suppress {
		rs.Require(s.When.EventCounts()...)
	}
	set, err := NewSet(js, pol)
	if err != nil {
		h.t.Fatalf("journey set: %v", err)
	}
	return rs, set
}

func knownOf(rs *rules.Ruleset, pol *Policy) Known {
	k := Known{AdAudiences: pol.AdAudienceNames()}
	for _, a := range rs.Audiences {
		k.Audiences = append(k.Audiences, a.Name())
	}
	return k
}

// open opens the store file and plugs new engines into it.
func (h *harness) open() {
	h.t.Helper()
	rs, set := h.compile()
	cfg := profiles.DefaultConfig()
	cfg.NoSync = h.noSync
	st, err := profiles.Open(context.Background(), h.path, cfg, profiles.Options{Now: h.clock.Now, Rand: h.ids})
	if err != nil {
		h.t.Fatalf("open store: %v", err)
	}
	re, err := rules.NewEngine(st.DB(), rs, rules.EngineOptions{Now: h.clock.Now})
	if err != nil {
		h.t.Fatalf("rules engine: %v", err)
	}
	pol := set.Policy
	je, err := New(st.DB(), set, Options{
		Clock: ClockFunc(h.clock.Now), Rules: re, Rand: rand.NewPCG(17, 29),
		Env:   func() *rules.Env { return re.Ruleset().Env },
		Known: func() Known { return knownOf(re.Ruleset(), pol) },
		Fence: func() error {
			if h.fenced.Load() {
				return errTestFenced
			}
			return nil
		},
	})
	if err != nil {
		h.t.Fatalf("journey engine: %v", err)
	}
	je.Observe(func(as []Action) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.observed = append(h.observed, as...)
	})
	st.Use(re, je)
	h.store, h.re, h.engine = st, re, je
}

// restart closes the store and opens the same file with new engines, as a
// restart of serve does.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.store.Close(); err != nil {
		h.t.Fatalf("close store: %v", err)
	}
	h.store = nil
	h.open()
}

// edit changes journey files and puts the new set in force, as a reload
// does.
func (h *harness) edit(files map[string]string) {
	h.t.Helper()
	h.files = maps.Clone(files)
	rs, set := h.compile()
	h.re.Replace(rs)
	if err := h.engine.Replace(set); err != nil {
		h.t.Fatalf("replace journeys: %v", err)
	}
}

func (h *harness) ingest(e *profiles.Event) profiles.Result {
	h.t.Helper()
	h.seq++
	if e.MessageID == "" {
		e.MessageID = fmt.Sprintf("msg-%d", h.seq)
	}
	now := h.clock.Now()
	e.Timestamp, e.ReceivedAt, e.Source = now, now, "test"
	res, err := h.store.Ingest(context.Background(), []*profiles.Event{e})
	if err != nil {
		h.t.Fatalf("ingest %s %s: %v", e.Type, e.Event, err)
	}
	return res[0]
}

// withEmail gives userId who an email (who@example.com), which ad
// audiences match on, and returns the profile id.
func (h *harness) withEmail(who string) string {
	h.t.Helper()
	return h.identify(who, map[string]any{"email": who + "@example.com"})
}

// track sends a track event of userId who and returns the profile id.
func (h *harness) track(who, event string, props map[string]any) string {
	h.t.Helper()
	return h.ingest(&profiles.Event{Type: profiles.TypeTrack, UserID: who, Event: event, Properties: props}).ProfileID
}

// identify sets traits of userId who and returns the profile id.
func (h *harness) identify(who string, traits map[string]any) string {
	h.t.Helper()
	return h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: who, Traits: traits}).ProfileID
}

// fire moves the clock to at and fires the timers due; it returns how many.
func (h *harness) fire(at time.Time) int {
	h.t.Helper()
	h.clock.Set(at)
	n, err := h.engine.FireDue(context.Background(), h.store, at, 100_000)
	if err != nil {
		h.t.Fatalf("FireDue(%s): %v", at.Format(time.RFC3339Nano), err)
	}
	return n
}

// fireUntil fires the timers due up to end one due time after another, as
// a server running all along would; it returns how many fired.
func (h *harness) fireUntil(end time.Time) int {
	h.t.Helper()
	n := 0
	for {
		due, ok := h.engine.NextDue()
		if !ok || due.After(end) {
			break
		}
		n += h.fire(due)
	}
	h.clock.Set(end)
	return n
}

// drain delivers what the outbox holds and returns it.
func (h *harness) drain() []Action {
	h.t.Helper()
	var got []Action
	n, err := h.engine.DrainOutbox(context.Background(), func(_ context.Context, a Action) error {
		got = append(got, a)
		return nil
	}, 100_000)
	if err != nil {
		h.t.Fatalf("drain outbox: %v", err)
	}
	if n != len(got) {
		h.t.Fatalf("DrainOutbox = %d, delivered %d", n, len(got))
	}
	h.mu.Lock()
	h.delivered = append(h.delivered, got...)
	h.mu.Unlock()
	return got
}

// actions returns the observed actions of a kind ("" for all), for a
// profile ("" for all).
func (h *harness) actions(kind, profile string) []Action {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Action
	for _, a := range h.observed {
		if (kind == "" || a.Action == kind) && (profile == "" || a.Profile == profile) {
			out = append(out, a)
		}
	}
	return out
}

// deliveredKeys counts deliveries by idempotency key.
func (h *harness) deliveredKeys() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, a := range h.delivered {
		out[a.Key]++
	}
	return out
}

// instances returns a profile's live instances.
func (h *harness) instances(profileID string) []InstanceView {
	h.t.Helper()
	v, err := h.engine.Instances(profileID)
	if err != nil {
		h.t.Fatalf("instances of %s: %v", profileID, err)
	}
	return v
}

// count returns a journey's counter what of a step.
func (h *harness) count(journey, step, what string) int64 {
	h.t.Helper()
	c, err := h.engine.Counts(journey)
	if err != nil {
		h.t.Fatalf("counts of %s: %v", journey, err)
	}
	return c[step][what]
}

// noTimers fails the test if any timer is pending.
func (h *harness) noTimers() {
	h.t.Helper()
	if due, ok := h.engine.NextDue(); ok {
		h.t.Errorf("a timer is still pending, due %s", due.Format(time.RFC3339Nano))
	}
}

// only returns the one action of as, failing the test unless there is
// exactly one.
func only(t testing.TB, what string, as []Action) Action {
	t.Helper()
	if len(as) != 1 {
		t.Fatalf("%s: got %d actions, want 1: %s", what, len(as), describe(as))
	}
	return as[0]
}

func describe(as []Action) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  %s %s %s/%s %s %v key=%s", a.At.Format(time.RFC3339Nano), a.Profile, a.Journey, a.Step, a.Action, a.Detail, a.Key)
	}
	return b.String()
}

const welcomeJourney = `
id: welcome
trigger:
  event: Signed Up
steps:
  - id: hello
    send: {channel: email, template: welcome}
`

// reminderJourney sends an hour after a cart add, unless the person buys.
const reminderJourney = `
id: reminder
trigger:
  event: Product Added
exit_when:
  - event: Order Completed
steps:
  - id: idle
    wait: 1h
  - id: remind
    send: {channel: email, template: cart_reminder}
  - id: hold
    wait: 1d
`

// TestSendOnTrigger: a trigger enters a profile and its send is recorded in
// the outbox in the same commit; the outbox delivers it once.
func TestSendOnTrigger(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
	pid := h.track("ana", "Signed Up", nil)

	enter := only(t, "enter", h.actions(ActEnter, pid))
	if enter.Journey != "welcome" || dm(enter)["trigger"] != "Signed Up" {
		t.Errorf("enter = %+v", enter)
	}
	send := only(t, "send", h.actions(ActSend, pid))
	if send.Step != "hello" || send.Channel != "email" || dm(send)["template"] != "welcome" || !send.At.Equal(t0) {
		t.Errorf("send = %+v", send)
	}
	if exit := only(t, "exit", h.actions(ActExit, pid)); dm(exit)["reason"] != "completed" {
		t.Errorf("exit reason = %v, want completed", dm(exit)["reason"])
	}

	got := h.drain()
	a := only(t, "first drain", got)
	if a.Action != ActSend || a.Profile != pid || a.Key != send.Key || dm(a)["template"] != "welcome" {
		t.Errorf("delivered %+v, want the send %+v", a, send)
	}
	wantKey := fmt.Sprintf("welcome/%s/", h.engine.Set().Journey("welcome").Version)
	if !strings.HasPrefix(a.Key, wantKey) || !strings.HasSuffix(a.Key, "/hello/1/"+pid) {
		t.Errorf("key = %q, want %s<instance>/hello/1/%s", a.Key, wantKey, pid)
	}
	if again := h.drain(); len(again) != 0 {
		t.Errorf("second drain delivered %s", describe(again))
	}
	if n := h.count("welcome", "hello", "sent"); n != 1 {
		t.Errorf("sent count = %d, want 1", n)
	}
	if n := h.count("welcome", "", "entered"); n != 1 {
		t.Errorf("entered count = %d, want 1", n)
	}
	if v := h.instances(pid); len(v) != 0 {
		t.Errorf("live instances after completion: %+v", v)
	}
}

// TestDrainRetriesFailedDelivery: a deliverer's error leaves the action in
// the outbox; the first drain after its backoff delivers it with the same
// key.
func TestDrainRetriesFailedDelivery(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
	h.track("ana", "Signed Up", nil)
	h.track("bea", "Signed Up", nil)

	boom := errors.New("smtp down")
	var tried []string
	n, err := h.engine.DrainOutbox(context.Background(), func(_ context.Context, a Action) error {
		tried = append(tried, a.Key)
		if len(tried) == 2 {
			return boom
		}
		return nil
	}, 100)
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("DrainOutbox = %d, %v; want 1, %v", n, err, boom)
	}
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("retried before its backoff: %+v", got)
	}
	h.clock.Advance(outboxBackoff(1))
	got := h.drain()
	if a := only(t, "retry", got); a.Key != tried[1] {
		t.Errorf("retry delivered %s, want the failed %s", a.Key, tried[1])
	}
}

// TestWaitFiresOnce: a wait's timer fires at its due time, once.
func TestWaitFiresOnce(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
	pid := h.track("ana", "Product Added", nil)

	due, ok := h.engine.NextDue()
	if !ok || !due.Equal(t0.Add(time.Hour)) {
		t.Fatalf("NextDue = %s %v, want %s", due, ok, t0.Add(time.Hour))
	}
	v := h.instances(pid)
	if len(v) != 1 || v[0].Step != "idle" || !v[0].WaitingUntil.Equal(t0.Add(time.Hour)) {
		t.Fatalf("instances = %+v, want one waiting at idle until %s", v, t0.Add(time.Hour))
	}
	if n := h.count("reminder", "idle", "waiting"); n != 1 {
		t.Errorf("waiting at idle = %d, want 1", n)
	}
	if n := h.fire(t0.Add(time.Hour - time.Nanosecond)); n != 0 {
		t.Fatalf("FireDue a nanosecond early fired %d", n)
	}
	if len(h.drain()) != 0 {
		t.Fatal("something was sent before the wait ended")
	}

	if n := h.fire(t0.Add(time.Hour)); n != 1 {
		t.Fatalf("FireDue at the due time fired %d, want 1", n)
	}
	if n := h.fire(t0.Add(time.Hour)); n != 0 {
		t.Fatalf("FireDue again at the same time fired %d, want 0", n)
	}
	send := only(t, "send", h.drain())
	if send.Step != "remind" || !send.At.Equal(t0.Add(time.Hour)) {
		t.Errorf("send = %+v", send)
	}
	if n := h.count("reminder", "idle", "waiting"); n != 0 {
		t.Errorf("waiting at idle after the timer = %d, want 0", n)
	}
	if n := h.count("reminder", "hold", "waiting"); n != 1 {
		t.Errorf("waiting at hold = %d, want 1", n)
	}

	end := t0.Add(time.Hour + 24*time.Hour)
	if n := h.fire(end); n != 1 {
		t.Fatalf("FireDue at the end of hold fired %d, want 1", n)
	}
	if exit := only(t, "exit", h.actions(ActExit, pid)); dm(exit)["reason"] != "completed" || exit.Step != "hold" {
		t.Errorf("exit = %+v", exit)
	}
	h.noTimers()
	if len(h.drain()) != 0 {
		t.Error("the end of the journey sent something")
	}
}

const openedJourney = `
id: opened
trigger:
  event: Product Added
steps:
  - id: first
    send: {channel: email, template: first}
  - id: watch
    wait_for:
      event: Email Opened
      when: has(event.properties.template) && event.properties.template == "first"
      timeout: 24h
      on_event: thanks
      on_timeout: nudge
  - id: nudge
    send: {channel: sms, template: nudge}
  - id: done
    exit: true
  - id: thanks
    send: {channel: email, template: thanks}
`

// TestWaitFor: the awaited event takes the on_event path at once and
// cancels the timeout; without it, the timeout takes the other path.
func TestWaitFor(t *testing.T) {
	t.Run("event", func(t *testing.T) {
		h := newHarness(t, openPolicy, map[string]string{"opened.yaml": openedJourney})
		pid := h.track("ana", "Product Added", nil)
		if a := only(t, "first send", h.drain()); a.Step != "first" {
			t.Fatalf("first action = %+v", a)
		}
		// An open of another email is not the one awaited.
		h.clock.Advance(time.Hour)
		h.track("ana", "Email Opened", map[string]any{"template": "other"})
		if v := h.instances(pid); len(v) != 1 || v[0].Step != "watch" {
			t.Fatalf("after another email's open: instances %+v, want one at watch", v)
		}
		h.clock.Advance(time.Hour)
		h.track("ana", "Email Opened", map[string]any{"template": "first"})
		if a := only(t, "on_event", h.drain()); a.Step != "thanks" || dm(a)["template"] != "thanks" || !a.At.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("on_event action = %+v", a)
		}
		h.noTimers()
		if n := h.fire(t0.Add(48 * time.Hour)); n != 0 {
			t.Errorf("the cancelled timeout fired %d timers", n)
		}
		if got := h.drain(); len(got) != 0 {
			t.Errorf("after the event path, the timeout path sent %s", describe(got))
		}
		if n := h.count("opened", "watch", "waiting"); n != 0 {
			t.Errorf("waiting at watch = %d, want 0", n)
		}
		if exit := only(t, "exit", h.actions(ActExit, pid)); dm(exit)["reason"] != "completed" {
			t.Errorf("exit = %+v", exit)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t, openPolicy, map[string]string{"opened.yaml": openedJourney})
		pid := h.track("ana", "Product Added", nil)
		h.drain()
		if n := h.fire(t0.Add(24*time.Hour - time.Millisecond)); n != 0 {
			t.Fatalf("timeout fired %d timers early", n)
		}
		if n := h.fire(t0.Add(24 * time.Hour)); n != 1 {
			t.Fatalf("timeout fired %d timers, want 1", n)
		}
		if a := only(t, "on_timeout", h.drain()); a.Step != "nudge" || a.Channel != "sms" {
			t.Errorf("on_timeout action = %+v", a)
		}
		if exit := only(t, "exit", h.actions(ActExit, pid)); exit.Step != "done" || dm(exit)["reason"] != "exit step" {
			t.Errorf("exit = %+v", exit)
		}
		// The event after the timeout no longer matters.
		h.track("ana", "Email Opened", map[string]any{"template": "first"})
		if got := h.drain(); len(got) != 0 {
			t.Errorf("a late open sent %s", describe(got))
		}
	})
}

// retargetJourney adds the person to an ad audience, then waits in each
// kind of wait; a purchase ends it wherever it stands.
const retargetJourney = `
id: retarget
trigger:
  event: Product Added
exit_when:
  - event: Order Completed
steps:
  - id: add
    audience: {add: retargeting}
  - id: pause
    wait: 1h
  - id: watch
    wait_for:
      event: Email Opened
      timeout: 1h
      on_event: hold
      on_timeout: hold
  - id: hold
    wait: 1d
`

// TestExitWhenRemovesAudiences: exit_when ends an instance at any wait,
// cancels its timer and takes the person out of the ad audiences the
// instance added; keep_audiences leaves them.
func TestExitWhenRemovesAudiences(t *testing.T) {
	for _, tc := range []struct {
		step  string
		after time.Duration // fire timers up to t0+after before the purchase
	}{
		{"pause", 0},
		{"watch", time.Hour},
		{"hold", 2 * time.Hour},
	} {
		t.Run(tc.step, func(t *testing.T) {
			h := newHarness(t, openPolicy, map[string]string{"retarget.yaml": retargetJourney})
			h.withEmail("ana")
			pid := h.track("ana", "Product Added", map[string]any{"cart_id": "c1"})
			add := only(t, "audience add", h.drain())
			if add.Action != ActAudienceAdd || dm(add)["audience"] != "retargeting" || add.Channel != "audience" {
				t.Fatalf("first action = %+v", add)
			}
			h.fireUntil(t0.Add(tc.after))
			if v := h.instances(pid); len(v) != 1 || v[0].Step != tc.step {
				t.Fatalf("instances = %+v, want one at %s", v, tc.step)
			}
			h.clock.Set(t0.Add(tc.after + time.Minute))
			h.track("ana", "Order Completed", map[string]any{"revenue": 10.0})

			exit := only(t, "exit", h.actions(ActExit, pid))
			if exit.Step != tc.step || dm(exit)["reason"] != "exit_when: Order Completed" {
				t.Errorf("exit = %+v", exit)
			}
			rm := only(t, "audience remove", h.drain())
			if rm.Action != ActAudienceRemove || dm(rm)["audience"] != "retargeting" || rm.Profile != pid || rm.Key == "" || rm.Key == add.Key {
				t.Errorf("remove = %+v (add key %s)", rm, add.Key)
			}
			if v := h.instances(pid); len(v) != 0 {
				t.Errorf("live instances after exit: %+v", v)
			}
			h.noTimers()
			if n := h.fire(t0.Add(30 * 24 * time.Hour)); n != 0 {
				t.Errorf("%d timers fired after the exit", n)
			}
			if got := h.drain(); len(got) != 0 {
				t.Errorf("actions after the exit: %s", describe(got))
			}
			for _, s := range []string{"pause", "watch", "hold"} {
				if n := h.count("retarget", s, "waiting"); n != 0 {
					t.Errorf("waiting at %s = %d after the exit, want 0", s, n)
				}
			}
			if n := h.count("retarget", tc.step, "exited"); n != 1 {
				t.Errorf("exited at %s = %d, want 1", tc.step, n)
			}
			err := h.store.DB().View(func(tx *bbolt.Tx) error {
				if v := tx.Bucket(bucketAdMembers).Get([]byte("retargeting\x00" + pid)); v != nil {
					t.Errorf("the person is still recorded in retargeting (by %s)", v)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("keep_audiences", func(t *testing.T) {
		src := strings.Replace(retargetJourney, "  - event: Order Completed\n", "  - event: Order Completed\n    keep_audiences: true\n", 1)
		h := newHarness(t, openPolicy, map[string]string{"retarget.yaml": src})
		pid := h.track("ana", "Product Added", nil)
		h.drain()
		h.clock.Advance(time.Minute)
		h.track("ana", "Order Completed", nil)
		only(t, "exit", h.actions(ActExit, pid))
		if got := h.drain(); len(got) != 0 {
			t.Errorf("keep_audiences: the exit delivered %s", describe(got))
		}
	})
}

// TestRestartFiresEachTimerOnce: instances waiting on timers survive a
// restart of the process (new engines on the same file); each timer fires
// once, and each step's effect is delivered once.
func TestRestartFiresEachTimerOnce(t *testing.T) {
	const people = 20
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney, "welcome.yaml": welcomeJourney})
	pids := map[string]bool{}
	for i := range people {
		h.clock.Set(t0.Add(time.Duration(i) * time.Second))
		pids[h.track(fmt.Sprintf("user-%02d", i), "Product Added", nil)] = true
	}
	// A send recorded just before the restart and not yet delivered.
	h.track("late", "Signed Up", nil)

	h.restart()
	if got := h.drain(); len(got) != 1 || got[0].Journey != "welcome" {
		t.Fatalf("after the restart, the outbox held %s; want the one welcome send", describe(got))
	}
	if n := h.fire(t0.Add(30 * time.Minute)); n != 0 {
		t.Fatalf("%d timers fired early after the restart", n)
	}
	h.restart()
	if n := h.fire(t0.Add(2 * time.Hour)); n != people {
		t.Fatalf("FireDue after the restart fired %d timers, want %d", n, people)
	}
	if n := h.fire(t0.Add(2 * time.Hour)); n != 0 {
		t.Fatalf("FireDue again fired %d timers", n)
	}
	h.restart()
	sends := h.drain()
	if len(sends) != people {
		t.Fatalf("delivered %d reminders, want %d: %s", len(sends), people, describe(sends))
	}
	for _, a := range sends {
		if a.Step != "remind" || !pids[a.Profile] {
			t.Errorf("unexpected delivery %+v", a)
		}
	}
	// The hold timers, armed before the last restart, end the journeys.
	h.restart()
	if n := h.fire(t0.Add(3 * 24 * time.Hour)); n != people {
		t.Fatalf("hold timers fired %d, want %d", n, people)
	}
	h.restart()
	if got := h.drain(); len(got) != 0 {
		t.Errorf("the end of the journeys delivered %s", describe(got))
	}
	h.noTimers()
	for key, n := range h.deliveredKeys() {
		if n != 1 {
			t.Errorf("key %s delivered %d times", key, n)
		}
	}
	if n := len(h.deliveredKeys()); n != people+1 {
		t.Errorf("%d distinct keys delivered, want %d", n, people+1)
	}
	if n := h.count("reminder", "remind", "sent"); n != people {
		t.Errorf("sent counter = %d, want %d", n, people)
	}
	if n := h.count("reminder", "hold", "exited"); n != people {
		t.Errorf("exited at hold = %d, want %d", n, people)
	}
	for pid := range pids {
		if v := h.instances(pid); len(v) != 0 {
			t.Errorf("profile %s still has instances %+v", pid, v)
		}
	}
}

// TestExitBoundary: a purchase acknowledged before the send falls due ends
// the journey without the send; one acknowledged just after it comes too
// late for the send, which happened once, and still ends the journey.
func TestExitBoundary(t *testing.T) {
	due := t0.Add(time.Hour)
	t.Run("purchase before the send", func(t *testing.T) {
		h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
		pid := h.track("ana", "Product Added", nil)
		h.clock.Set(due.Add(-time.Millisecond))
		h.track("ana", "Order Completed", nil)
		if n := h.fire(due); n != 0 {
			t.Errorf("FireDue(T) fired %d timers after the exit", n)
		}
		if got := h.drain(); len(got) != 0 {
			t.Errorf("sent after a purchase at T-1ms: %s", describe(got))
		}
		if len(h.actions(ActSend, pid)) != 0 {
			t.Error("a send was recorded")
		}
		if exit := only(t, "exit", h.actions(ActExit, pid)); exit.Step != "idle" || !exit.At.Equal(due.Add(-time.Millisecond)) {
			t.Errorf("exit = %+v", exit)
		}
	})
	t.Run("purchase after the send", func(t *testing.T) {
		h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
		pid := h.track("ana", "Product Added", nil)
		if n := h.fire(due); n != 1 {
			t.Fatalf("FireDue(T) fired %d, want 1", n)
		}
		h.clock.Set(due.Add(time.Millisecond))
		h.track("ana", "Order Completed", nil)
		send := only(t, "send", h.drain())
		if send.Step != "remind" || !send.At.Equal(due) {
			t.Errorf("send = %+v", send)
		}
		if exit := only(t, "exit", h.actions(ActExit, pid)); exit.Step != "hold" || dm(exit)["reason"] != "exit_when: Order Completed" {
			t.Errorf("exit = %+v", exit)
		}
		if n := h.fire(due.Add(48 * time.Hour)); n != 0 {
			t.Errorf("%d timers fired after the exit", n)
		}
		if got := h.drain(); len(got) != 0 {
			t.Errorf("more deliveries: %s", describe(got))
		}
		if n := len(h.actions(ActSend, pid)); n != 1 {
			t.Errorf("%d sends, want 1", n)
		}
	})
}

const editV1 = `
id: offer
trigger:
  event: Product Added
steps:
  - id: idle
    wait: 1h
  - id: old_offer
    send: {channel: email, template: offer_v1}
`

const editV2 = `
id: offer
trigger:
  event: Product Added
steps:
  - id: idle
    wait: 2h
  - id: new_offer
    send: {channel: sms, template: offer_v2}
  - id: thanks
    send: {channel: email, template: thanks_v2}
`

// TestEditKeepsRunningVersion: after a journey file changes, instances
// started before finish on their version's steps, also across a restart
// that knows only the new file; new entries take the new version.
func TestEditKeepsRunningVersion(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			h := newHarness(t, openPolicy, map[string]string{"offer.yaml": editV1})
			v1 := h.engine.Set().Journey("offer").Version
			old := h.track("ana", "Product Added", nil)

			h.edit(map[string]string{"offer.yaml": editV2})
			v2 := h.engine.Set().Journey("offer").Version
			if v1 == v2 {
				t.Fatalf("both files have version %s", v1)
			}
			if restart {
				h.restart()
			}
			h.clock.Set(t0.Add(time.Minute))
			fresh := h.track("bea", "Product Added", nil)
			if v := h.instances(old); len(v) != 1 || v[0].Version != v1 {
				t.Errorf("old instance = %+v, want version %s", v, v1)
			}
			if v := h.instances(fresh); len(v) != 1 || v[0].Version != v2 || !v[0].WaitingUntil.Equal(t0.Add(time.Minute+2*time.Hour)) {
				t.Errorf("new instance = %+v, want version %s waiting 2h", v, v2)
			}

			if n := h.fire(t0.Add(time.Hour)); n != 1 {
				t.Fatalf("at +1h fired %d, want the old instance's 1h wait", n)
			}
			a := only(t, "old version's send", h.drain())
			if a.Profile != old || a.Step != "old_offer" || dm(a)["template"] != "offer_v1" || !strings.HasPrefix(a.Key, "offer/"+v1+"/") {
				t.Errorf("old instance did %+v", a)
			}
			if n := h.fire(t0.Add(3 * time.Hour)); n != 1 {
				t.Fatalf("at +3h fired %d, want the new instance's 2h wait", n)
			}
			got := h.drain()
			if len(got) != 2 {
				t.Fatalf("new instance delivered %s, want new_offer and thanks", describe(got))
			}
			for i, want := range []string{"new_offer", "thanks"} {
				if got[i].Profile != fresh || got[i].Step != want || !strings.HasPrefix(got[i].Key, "offer/"+v2+"/") {
					t.Errorf("delivery %d = %+v, want %s of version %s", i, got[i], want, v2)
				}
			}
			if len(h.instances(old))+len(h.instances(fresh)) != 0 {
				t.Error("instances still live")
			}
		})
	}
}

// TestEntryRules: reentry, cooldown, one live instance per profile, and one
// per key.
func TestEntryRules(t *testing.T) {
	enters := func(h *harness, pid string) int { return len(h.actions(ActEnter, pid)) }
	t.Run("reentry false", func(t *testing.T) {
		h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
		pid := h.track("ana", "Signed Up", nil)
		h.clock.Advance(30 * 24 * time.Hour)
		h.track("ana", "Signed Up", nil)
		if n := enters(h, pid); n != 1 {
			t.Errorf("entered %d times, want 1", n)
		}
		if n := len(h.drain()); n != 1 {
			t.Errorf("%d sends, want 1", n)
		}
	})
	t.Run("cooldown", func(t *testing.T) {
		src := welcomeJourney + "entry:\n  reentry: true\n  cooldown: 1h\n"
		h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": src})
		pid := h.track("ana", "Signed Up", nil)
		h.clock.Set(t0.Add(59 * time.Minute))
		h.track("ana", "Signed Up", nil)
		if n := enters(h, pid); n != 1 {
			t.Fatalf("within the cooldown: entered %d times, want 1", n)
		}
		h.clock.Set(t0.Add(time.Hour))
		h.track("ana", "Signed Up", nil)
		if n := enters(h, pid); n != 2 {
			t.Fatalf("after the cooldown: entered %d times, want 2", n)
		}
		keys := map[string]bool{}
		for _, a := range h.drain() {
			keys[a.Key] = true
		}
		if len(keys) != 2 {
			t.Errorf("two runs delivered %d distinct keys, want 2", len(keys))
		}
	})
	t.Run("one live instance", func(t *testing.T) {
		src := reminderJourney + "entry:\n  reentry: true\n"
		h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": src})
		pid := h.track("ana", "Product Added", nil)
		h.clock.Advance(10 * time.Minute)
		h.track("ana", "Product Added", nil)
		if n := enters(h, pid); n != 1 {
			t.Errorf("a trigger while the instance runs entered again: %d enters", n)
		}
		if v := h.instances(pid); len(v) != 1 || !v[0].WaitingUntil.Equal(t0.Add(time.Hour)) {
			t.Errorf("instances = %+v", v)
		}
		// Once it ended, reentry lets the person in again.
		h.fireUntil(t0.Add(48 * time.Hour))
		h.track("ana", "Product Added", nil)
		if n := enters(h, pid); n != 2 {
			t.Errorf("after the end: %d enters, want 2", n)
		}
	})
	t.Run("key", func(t *testing.T) {
		src := reminderJourney + "entry:\n  reentry: true\n  key: 'has(trigger.properties.cart_id) ? string(trigger.properties.cart_id) : \"none\"'\n"
		h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": src})
		pid := h.track("ana", "Product Added", map[string]any{"cart_id": "a"})
		h.clock.Advance(time.Minute)
		h.track("ana", "Product Added", map[string]any{"cart_id": "b"})
		h.clock.Advance(time.Minute)
		h.track("ana", "Product Added", map[string]any{"cart_id": "a"})
		v := h.instances(pid)
		var keys []string
		for _, in := range v {
			keys = append(keys, in.Key)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"a", "b"}) {
			t.Fatalf("instance keys = %q, want [a b]", keys)
		}
		// A purchase ends both carts' instances.
		if n := h.fire(t0.Add(2 * time.Hour)); n != 2 {
			t.Errorf("fired %d, want 2 (one per cart)", n)
		}
		got := h.drain()
		if len(got) != 2 || got[0].Key == got[1].Key {
			t.Errorf("delivered %s, want one reminder per cart", describe(got))
		}
		h.track("ana", "Order Completed", nil)
		if v := h.instances(pid); len(v) != 0 {
			t.Errorf("after the purchase: %+v", v)
		}
	})
}

// policyJourney sends an email on every cart add; it re-enters freely.
const policyJourney = `
id: promo
trigger:
  event: Product Added
entry:
  reentry: true
steps:
  - id: mail
    send: {channel: email, template: promo}
`

// TestPolicy: what holds a send back at send time.
func TestPolicy(t *testing.T) {
	t.Run("consent", func(t *testing.T) {
		h := newHarness(t, "policies:\n  consent_required: [email]\n", map[string]string{"promo.yaml": policyJourney})
		pid := h.track("ana", "Product Added", nil)
		s := only(t, "suppressed", h.actions(ActSuppressed, pid))
		if s.Step != "mail" || dm(s)["reason"] != "consent: no email consent" {
			t.Errorf("suppressed = %+v", s)
		}
		if got := h.drain(); len(got) != 0 {
			t.Errorf("sent without consent: %s", describe(got))
		}
		if n := h.count("promo", "mail", "suppressed"); n != 1 {
			t.Errorf("suppressed counter = %d", n)
		}
		h.identify("ana", map[string]any{"consent": map[string]any{"email": true}})
		h.clock.Advance(time.Minute)
		h.track("ana", "Product Added", nil)
		if a := only(t, "send with consent", h.drain()); a.Action != ActSend {
			t.Errorf("with consent: %+v", a)
		}
		h.ingest(&profiles.Event{Type: profiles.TypeTrack, UserID: "ana", Event: profiles.EventConsentUpdated, Properties: map[string]any{"email": false}})
		h.clock.Advance(time.Minute)
		h.track("ana", "Product Added", nil)
		if got := h.drain(); len(got) != 0 {
			t.Errorf("sent after consent was withdrawn: %s", describe(got))
		}
	})
	t.Run("frequency cap", func(t *testing.T) {
		pol := "policies:\n  consent_required: []\n  frequency_caps:\n    - {channel: email, max: 2, per: 24h}\n"
		h := newHarness(t, pol, map[string]string{"promo.yaml": policyJourney})
		var pid string
		for i := range 3 {
			h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
			pid = h.track("ana", "Product Added", nil)
		}
		if n := len(h.drain()); n != 2 {
			t.Errorf("3 triggers in a day sent %d, want 2", n)
		}
		s := only(t, "suppressed", h.actions(ActSuppressed, pid))
		if dm(s)["reason"] != "frequency_cap: 2 email per 24h0m0s" {
			t.Errorf("reason = %v", dm(s)["reason"])
		}
		// The window slides: 24h after the first send, one more may go.
		h.clock.Set(t0.Add(24*time.Hour + time.Second))
		h.track("ana", "Product Added", nil)
		if n := len(h.drain()); n != 1 {
			t.Errorf("after the window slid: %d sends, want 1", n)
		}
		// Another person has a cap of their own.
		h.track("bea", "Product Added", nil)
		if n := len(h.drain()); n != 1 {
			t.Errorf("another person: %d sends, want 1", n)
		}
	})
	t.Run("frequency cap, simultaneous sends", func(t *testing.T) {
		// Three journeys answer one event at one instant; the cap allows
		// two of their sends.
		pol := "policies:\n  consent_required: []\n  frequency_caps:\n    - {channel: email, max: 2, per: 24h}\n"
		files := map[string]string{}
		for _, id := range []string{"promo_a", "promo_b", "promo_c"} {
			files[id+".yaml"] = strings.Replace(policyJourney, "id: promo", "id: "+id, 1)
		}
		h := newHarness(t, pol, files)
		pid := h.track("ana", "Product Added", nil)
		if n := len(h.drain()); n != 2 {
			t.Errorf("three simultaneous sends under a cap of 2: %d went out", n)
		}
		if n := len(h.actions(ActSuppressed, pid)); n != 1 {
			t.Errorf("%d suppressed, want 1", n)
		}
	})
	t.Run("quiet hours in the profile's timezone", func(t *testing.T) {
		// Skipped, not delayed (delay_test.go delays them).
		pol := `
policies:
  timezone: UTC
  consent_required: []
  quiet_hours: {start: "21:00", end: "09:00", channels: [email]}
  on_quiet_hours: skip
`
		trans := strings.Replace(strings.Replace(policyJourney, "id: promo", "id: receipt\ncategory: transactional", 1), "Product Added", "Order Completed", 1)
		h := newHarness(t, pol, map[string]string{"promo.yaml": policyJourney, "receipt.yaml": trans})
		ny := h.identify("ny", map[string]any{"timezone": "America/New_York"})
		utc := h.identify("utc", nil)
		bad := h.identify("bad", map[string]any{"timezone": "Mars/Olympus"})

		// 23:00 UTC is 18:00 in New York: quiet in UTC, not there.
		h.clock.Set(time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC))
		for _, who := range []string{"ny", "utc", "bad"} {
			h.track(who, "Product Added", nil)
		}
		sent := map[string]bool{}
		for _, a := range h.drain() {
			sent[a.Profile] = true
		}
		if !sent[ny] || sent[utc] || sent[bad] {
			t.Errorf("at 23:00 UTC sent to ny=%v utc=%v bad-timezone=%v; want only ny", sent[ny], sent[utc], sent[bad])
		}
		if s := only(t, "suppressed utc", h.actions(ActSuppressed, utc)); dm(s)["reason"] != "quiet_hours: 21:00-09:00" {
			t.Errorf("reason = %v", dm(s)["reason"])
		}
		// 03:00 UTC is 22:00 in New York (quiet there); 10:00 UTC is not.
		h.clock.Set(time.Date(2026, 3, 3, 3, 0, 0, 0, time.UTC))
		h.track("ny", "Product Added", nil)
		if got := h.drain(); len(got) != 0 {
			t.Errorf("22:00 in New York: sent %s", describe(got))
		}
		// A transactional journey is not held by quiet hours.
		h.track("utc", "Order Completed", nil)
		if a := only(t, "transactional", h.drain()); a.Journey != "receipt" {
			t.Errorf("transactional at night: %+v", a)
		}
		h.clock.Set(time.Date(2026, 3, 3, 14, 0, 0, 0, time.UTC))
		h.track("ny", "Product Added", nil)
		if n := len(h.drain()); n != 1 {
			t.Errorf("9:00 in New York: %d sends, want 1", n)
		}
	})
	t.Run("suppression by event_count", func(t *testing.T) {
		pol := `
policies:
  consent_required: []
  suppress:
    - name: after_purchase
      when: event_count("Order Completed", duration("72h")) > 0
`
		h := newHarness(t, pol, map[string]string{"promo.yaml": policyJourney})
		pid := h.track("ana", "Order Completed", nil)
		h.clock.Set(t0.Add(time.Hour))
		h.track("ana", "Product Added", nil)
		if got := h.drain(); len(got) != 0 {
			t.Errorf("an hour after a purchase: sent %s", describe(got))
		}
		if s := only(t, "suppressed", h.actions(ActSuppressed, pid)); dm(s)["reason"] != "suppression: after_purchase" {
			t.Errorf("reason = %v", dm(s)["reason"])
		}
		// Someone who never bought is not suppressed.
		h.track("bea", "Product Added", nil)
		if n := len(h.drain()); n != 1 {
			t.Errorf("no purchase: %d sends, want 1", n)
		}
		h.clock.Set(t0.Add(72*time.Hour + time.Second))
		h.track("ana", "Product Added", nil)
		if n := len(h.drain()); n != 1 {
			t.Errorf("72h after the purchase: %d sends, want 1", n)
		}
	})
	t.Run("priority window", func(t *testing.T) {
		pol := "policies:\n  consent_required: []\n  priority_window: 24h\n"
		high := strings.Replace(policyJourney, "id: promo", "id: high\npriority: 20", 1)
		low := strings.Replace(policyJourney, "id: promo", "id: low\npriority: 10", 1)
		h := newHarness(t, pol, map[string]string{"high.yaml": high, "low.yaml": low})
		pid := h.track("ana", "Product Added", nil)
		if a := only(t, "send", h.drain()); a.Journey != "high" {
			t.Errorf("sent %+v, want the high priority journey's", a)
		}
		if s := only(t, "suppressed", h.actions(ActSuppressed, pid)); s.Journey != "low" || !strings.HasPrefix(dm(s)["reason"].(string), "priority:") {
			t.Errorf("suppressed = %+v", s)
		}
	})
}

// TestMerge: when two profiles with instances merge, the survivor takes the
// loser's instances, except for journeys it already runs (one instance per
// person); each step still happens once.
func TestMerge(t *testing.T) {
	other := strings.NewReplacer("id: reminder", "id: other", "Product Added", "Product Viewed", "cart_reminder", "viewed").Replace(reminderJourney)
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney, "other.yaml": other, "welcome.yaml": welcomeJourney})

	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Product Added"}).ProfileID
	h.clock.Advance(time.Minute)
	h.withEmail("ana")
	known := h.track("ana", "Product Added", nil)
	h.track("ana", "Product Viewed", nil)
	h.track("ana", "Signed Up", nil)
	h.drain()
	if anon == known {
		t.Fatal("the two events made one profile")
	}

	h.clock.Advance(time.Minute)
	res := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	if res.ProfileID != anon || !slices.Equal(res.Merged, []string{known}) {
		t.Fatalf("merge result = %+v, want %s (older) to survive %s", res, anon, known)
	}
	if v := h.instances(known); len(v) != 0 {
		t.Errorf("the merged-away profile still has instances %+v", v)
	}
	// Its record and sidecars (rules state, journey entries and live
	// instances, messageIds) are gone or moved to the survivor.
	if n := h.keysOf(known); n["profiles"] != 0 || n["journey_sends"] != 0 {
		t.Errorf("the merged-away profile keeps keys %v", n)
	}
	var journeys []string
	for _, in := range h.instances(anon) {
		journeys = append(journeys, in.Journey)
	}
	slices.Sort(journeys)
	if !slices.Equal(journeys, []string{"other", "reminder"}) {
		t.Errorf("survivor's instances = %q, want [other reminder]", journeys)
	}
	var merged []Action
	for _, a := range h.actions(ActExit, known) {
		if dm(a)["reason"] == "merged" {
			merged = append(merged, a)
		}
	}
	if e := only(t, "merged exit", merged); e.Journey != "reminder" {
		t.Errorf("exit = %+v, want the duplicate reminder", e)
	}

	if n := h.fire(t0.Add(2 * time.Hour)); n != 2 {
		t.Errorf("fired %d timers, want 2 (the duplicate's timer is gone)", n)
	}
	got := h.drain()
	byJourney := map[string]int{}
	for _, a := range got {
		byJourney[a.Journey]++
		if a.Profile != anon {
			t.Errorf("delivered %+v to %s, want the survivor %s", a, a.Profile, anon)
		}
	}
	if byJourney["reminder"] != 1 || byJourney["other"] != 1 || len(got) != 2 {
		t.Errorf("after the merge delivered %s; want one reminder and one other", describe(got))
	}

	// The person went through welcome (reentry false) as the merged-away
	// profile: they do not go through it again as the survivor.
	h.track("ana", "Signed Up", nil)
	for _, a := range h.actions(ActEnter, anon) {
		if a.Journey == "welcome" {
			t.Errorf("welcome entered again after the merge: %+v", a)
		}
	}
	if got := h.drain(); len(got) != 0 {
		t.Errorf("after the merge, Signed Up sent %s", describe(got))
	}
}

// TestMergeMovesAdAudience: an ad audience a merged-away profile was added
// to is the survivor's to leave when the moved instance exits.
func TestMergeMovesAdAudience(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"retarget.yaml": retargetJourney})
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Product Viewed"}).ProfileID
	h.clock.Advance(time.Minute)
	h.withEmail("ana")
	known := h.track("ana", "Product Added", nil)
	if a := only(t, "audience add", h.drain()); a.Profile != known || a.Action != ActAudienceAdd {
		t.Fatalf("add = %+v", a)
	}
	h.clock.Advance(time.Minute)
	h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	if v := h.instances(anon); len(v) != 1 || !slices.Equal(v[0].Audiences, []string{"retargeting"}) {
		t.Fatalf("survivor's instances = %+v", v)
	}
	h.clock.Advance(time.Minute)
	h.track("ana", "Order Completed", nil)
	if rm := only(t, "audience remove", h.drain()); rm.Action != ActAudienceRemove || rm.Profile != anon {
		t.Errorf("remove = %+v, want the survivor %s out of retargeting", rm, anon)
	}
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAdMembers).ForEach(func(k, v []byte) error {
			t.Errorf("after the exit, ad audience member %q (added by %s) remains", k, v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMergeThenRemoveStep: a journey's own audience remove step, reached
// after a merge, takes the merged person out of the audience the
// merged-away profile was added to.
func TestMergeThenRemoveStep(t *testing.T) {
	src := `
id: window
trigger:
  event: Product Added
steps:
  - id: add
    audience: {add: retargeting}
  - id: pause
    wait: 1h
  - id: drop
    audience: {remove: retargeting}
`
	h := newHarness(t, openPolicy, map[string]string{"window.yaml": src})
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Product Viewed"}).ProfileID
	h.clock.Advance(time.Minute)
	h.withEmail("ana")
	h.track("ana", "Product Added", nil)
	h.drain()
	h.clock.Advance(time.Minute)
	h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	h.fireUntil(t0.Add(2 * time.Hour))
	rm := only(t, "audience remove", h.drain())
	if rm.Action != ActAudienceRemove || rm.Step != "drop" || rm.Profile != anon {
		t.Errorf("remove = %+v, want the survivor %s out at drop", rm, anon)
	}
}

// TestMergeKeepsFrequencyCap: sends to either profile count against the
// merged person's cap.
func TestMergeKeepsFrequencyCap(t *testing.T) {
	pol := "policies:\n  consent_required: []\n  frequency_caps:\n    - {channel: email, max: 2, per: 24h}\n"
	h := newHarness(t, pol, map[string]string{"promo.yaml": policyJourney})
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Product Added"}).ProfileID
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", nil)
	if n := len(h.drain()); n != 2 {
		t.Fatalf("two profiles, one send each: %d sends", n)
	}
	h.clock.Advance(time.Minute)
	h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", nil)
	if got := h.drain(); len(got) != 0 {
		t.Errorf("the merged person had 2 emails today; a third went out: %s", describe(got))
	}
	if n := len(h.actions(ActSuppressed, anon)); n != 1 {
		t.Errorf("%d suppressed, want 1", n)
	}
}

// TestErase: erasing a person ends their instances, takes them out of the
// ad audiences journeys added them to, and no timer of theirs fires later.
func TestErase(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"retarget.yaml": retargetJourney, "reminder.yaml": reminderJourney})
	// Emails, so that the ad audiences can match them.
	h.withEmail("ana")
	h.withEmail("bea")
	pid := h.track("ana", "Product Added", map[string]any{"cart_id": "c1"})
	keep := h.track("bea", "Product Added", nil)
	h.drain()

	if n := h.keysOf(pid); n["profiles"] < 4 {
		t.Fatalf("before the erase ana has %v keys, want her profile with its sidecars", n)
	}
	h.clock.Advance(time.Minute)
	er, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if er.ProfileID != pid {
		t.Fatalf("erased %s, want %s", er.ProfileID, pid)
	}
	exits := h.actions(ActExit, pid)
	if len(exits) != 2 {
		t.Fatalf("erase ended %d instances, want 2: %s", len(exits), describe(exits))
	}
	for _, e := range exits {
		if dm(e)["reason"] != "erased" {
			t.Errorf("exit = %+v", e)
		}
	}
	rm := only(t, "audience remove", h.drain())
	if rm.Action != ActAudienceRemove || dm(rm)["audience"] != "retargeting" || rm.Profile != pid ||
		rm.Identifiers == nil || len(rm.Identifiers.Emails) != 1 || rm.Identifiers.Emails[0] != "ana@example.com" {
		t.Errorf("erase delivered %+v (identifiers %+v), want the removal of the erased person's email", rm, rm.Identifiers)
	}
	// Nothing keyed by the person is left: not the profile, its sidecars
	// (rules state, journey entries and instances), nor the send history.
	if n := h.keysOf(pid); len(n) != 0 {
		t.Errorf("after the erase, keys of ana: %v", n)
	}
	if v := h.instances(pid); len(v) != 0 {
		t.Errorf("instances after erase: %+v", v)
	}
	// Only bea's timers are left: retarget's pause, watch and hold, and
	// reminder's idle and hold.
	if n := h.fireUntil(t0.Add(30 * 24 * time.Hour)); n != 5 {
		t.Errorf("fired %d timers, want bea's 5", n)
	}
	for _, a := range h.drain() {
		if a.Profile == pid {
			t.Errorf("after the erase: %+v", a)
		}
	}
	for _, a := range h.actions("", "") {
		if a.Profile == pid && a.At.After(t0.Add(time.Minute)) {
			t.Errorf("action for the erased person after the erase: %+v", a)
		}
	}
	if n := len(h.actions(ActSend, keep)); n != 1 {
		t.Errorf("the other person got %d reminders, want 1", n)
	}
	// The person's identifiers now start a new, empty profile that may
	// enter afresh.
	again := h.track("ana", "Product Added", nil)
	if again == pid {
		t.Fatal("erased profile id reused")
	}
	if n := len(h.actions(ActEnter, again)); n != 2 {
		t.Errorf("the new profile entered %d journeys, want 2", n)
	}
}

// TestEraseLeavesNoTriggerData: what the trigger event carried is personal
// data; after an erase no journey instance keeps it.
func TestEraseLeavesNoTriggerData(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney, "welcome.yaml": welcomeJourney})
	const secret = "ana.secret@example.com"
	h.track("ana", "Signed Up", map[string]any{"email": secret}) // completes at once
	h.track("ana", "Product Added", map[string]any{"email": secret})
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}, false); err != nil {
		t.Fatal(err)
	}
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketInstances).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(secret)) {
				t.Errorf("instance %d keeps the erased person's data: %s", binary.BigEndian.Uint64(k), v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestScheduleSameTick: two cron journeys with the same schedule both run
// at their tick.
func TestScheduleSameTick(t *testing.T) {
	cron := func(id, template string) string {
		return fmt.Sprintf(`
id: %s
trigger:
  schedule:
    cron: "0 12 * * *"
    audience: customers
entry:
  reentry: true
steps:
  - id: mail
    send: {channel: email, template: %s}
`, id, template)
	}
	h := newHarness(t, openPolicy, map[string]string{"a.yaml": cron("digest_a", "a"), "b.yaml": cron("digest_b", "b")})
	pid := h.track("ana", "Order Completed", nil)
	h.restart() // arming again must not add ticks
	tick := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	if due, ok := h.engine.NextDue(); !ok || !due.Equal(tick) {
		t.Fatalf("NextDue = %s %v, want %s", due, ok, tick)
	}
	h.fire(tick)
	got := map[string]int{}
	for _, a := range h.drain() {
		if a.Profile != pid {
			t.Errorf("sent to %s, not a customer", a.Profile)
		}
		got[a.Journey]++
	}
	if got["digest_a"] != 1 || got["digest_b"] != 1 {
		t.Errorf("at the tick: sends by journey %v, want one of each", got)
	}
	// The next day's ticks are armed, one per journey.
	h.fire(tick.Add(24 * time.Hour))
	got = map[string]int{}
	for _, a := range h.drain() {
		got[a.Journey]++
	}
	if got["digest_a"] != 1 || got["digest_b"] != 1 {
		t.Errorf("next day: sends by journey %v, want one of each", got)
	}
	var pending int
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		pending = tx.Bucket(bucketTimers).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pending != 2 {
		t.Errorf("%d timers pending, want the 2 next ticks", pending)
	}
}

// TestAudienceTrigger: entering a rules audience in the commit of an event
// starts the journey in that commit.
func TestAudienceTrigger(t *testing.T) {
	src := `
id: first_order
trigger:
  audience: {enter: customers}
steps:
  - id: thanks
    send: {channel: email, template: first_order}
`
	h := newHarness(t, openPolicy, map[string]string{"first_order.yaml": src})
	pid := h.track("ana", "Product Added", nil)
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("before the order: %s", describe(got))
	}
	h.track("ana", "Order Completed", nil)
	if a := only(t, "send", h.drain()); a.Profile != pid || a.Journey != "first_order" {
		t.Errorf("send = %+v", a)
	}
	h.track("ana", "Order Completed", nil) // still a customer: no new entry
	if got := h.drain(); len(got) != 0 {
		t.Errorf("second order: %s", describe(got))
	}
}

// TestActionJSON pins the outbox action's JSON shape channels rely on.
func TestActionJSON(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
	h.track("ana", "Signed Up", nil)
	var raw []byte
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		_, v := tx.Bucket(bucketOutbox).Cursor().First()
		raw = bytes.Clone(v)
		return nil
	})
	if err != nil || raw == nil {
		t.Fatalf("outbox: %s %v", raw, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"at", "profile", "journey", "step", "action", "channel", "detail", "key"} {
		if _, ok := m[k]; !ok {
			t.Errorf("outbox action %s lacks %q", raw, k)
		}
	}
}

// TestWaitUntil: a wait until a time of day ends at that time in the
// profile's timezone, or the policy's.
func TestWaitUntil(t *testing.T) {
	src := `
id: morning
trigger:
  event: Product Added
steps:
  - id: sleep
    wait: {until: "09:00"}
  - id: hello
    send: {channel: email, template: morning}
`
	h := newHarness(t, openPolicy, map[string]string{"morning.yaml": src})
	h.identify("ny", map[string]any{"timezone": "America/New_York"})
	ny := h.track("ny", "Product Added", nil)   // 05:00 in New York
	utc := h.track("utc", "Product Added", nil) // 10:00 UTC, past 09:00
	for pid, want := range map[string]time.Time{
		ny:  time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC),
		utc: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC),
	} {
		if v := h.instances(pid); len(v) != 1 || !v[0].WaitingUntil.Equal(want) {
			t.Errorf("instances of %s = %+v, want waiting until %s", pid, v, want)
		}
	}
}

// TestRunConcurrentWithIngest: Engine.Run fires timers while events are
// ingested from several goroutines and the outbox drains; every instance's
// send is recorded once.
func TestRunConcurrentWithIngest(t *testing.T) {
	const writers, each = 4, 25
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
	sent := make(chan struct{}, writers*each)
	h.engine.Observe(func(as []Action) {
		for _, a := range as {
			if a.Action == ActSend {
				sent <- struct{}{}
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		h.engine.Run(ctx, h.store)
	}()
	defer func() { cancel(); <-ran }()

	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := &profiles.Event{Type: profiles.TypeTrack, MessageID: fmt.Sprintf("w%d-%d", w, i), UserID: fmt.Sprintf("user-%d-%d", w, i),
					Event: "Product Added", Timestamp: t0, ReceivedAt: t0, Source: "test"}
				if _, err := h.store.Ingest(ctx, []*profiles.Event{e}); err != nil {
					errs <- err
				}
				// Deliveries race with the ingestion.
				if _, err := h.engine.DrainOutbox(ctx, func(context.Context, Action) error { return nil }, 10); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.clock.Set(t0.Add(time.Hour))
	h.engine.poke() // the clock jumped: Run must look again
	timeout := time.After(20 * time.Second)
	for range writers * each {
		select {
		case <-sent:
		case <-timeout:
			t.Fatalf("Run did not fire every timer; %d sends pending", h.count("reminder", "idle", "waiting"))
		}
	}
	cancel()
	<-ran
	if n := h.count("reminder", "remind", "sent"); n != writers*each {
		t.Errorf("sent counter = %d, want %d", n, writers*each)
	}
	if n := h.count("reminder", "hold", "waiting"); n != writers*each {
		t.Errorf("waiting at hold = %d, want %d", n, writers*each)
	}
	keys := map[string]bool{}
	for _, a := range h.actions(ActSend, "") {
		if keys[a.Key] {
			t.Errorf("key %s sent twice", a.Key)
		}
		keys[a.Key] = true
	}
	if len(keys) != writers*each {
		t.Errorf("%d distinct send keys, want %d", len(keys), writers*each)
	}
}

// TestStoredVersionNoLongerCompiles: an instance whose version no longer
// compiles after a restart (its ad audience left the policies) ends when
// its timer fires, instead of staying live with no timer, which would keep
// the person out of the journey for good.
func TestStoredVersionNoLongerCompiles(t *testing.T) {
	v1 := `
id: win_back
trigger:
  event: Product Added
entry:
  reentry: true
steps:
  - id: add
    audience: {add: retargeting}
  - id: idle
    wait: 1h
  - id: mail
    send: {channel: email, template: v1}
`
	v2 := `
id: win_back
trigger:
  event: Product Added
entry:
  reentry: true
steps:
  - id: idle
    wait: 1h
  - id: mail
    send: {channel: email, template: v2}
`
	h := newHarness(t, openPolicy, map[string]string{"win_back.yaml": v1})
	pid := h.track("ana", "Product Added", nil)
	h.drain()

	h.policy = "policies:\n  consent_required: []\n"
	h.files = map[string]string{"win_back.yaml": v2}
	h.restart()
	if n := h.fire(t0.Add(time.Hour)); n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}
	if v := h.instances(pid); len(v) != 0 {
		t.Fatalf("the instance of the lost version is still live: %+v", v)
	}
	if e := only(t, "exit", h.actions(ActExit, pid)); e.Step != "idle" || dm(e)["reason"] != "version unavailable" {
		t.Errorf("exit = %+v", e)
	}
	if n := h.count("win_back", "idle", "waiting"); n != 0 {
		t.Errorf("waiting at idle = %d, want 0", n)
	}
	h.clock.Set(t0.Add(2 * time.Hour))
	h.track("ana", "Product Added", nil)
	if v := h.instances(pid); len(v) != 1 || v[0].Version != h.engine.Set().Journey("win_back").Version {
		t.Errorf("after the end, the person did not enter the new version: %+v", v)
	}
}

// TestOldLayoutMigrates: a file written before live instances and entry
// histories moved beside the profiles (buckets journey_active and
// journey_entries) opens with both intact: the instances still react,
// and the entry rules still remember who entered.
func TestOldLayoutMigrates(t *testing.T) {
	reminder := reminderJourney + "entry:\n  reentry: true\n  key: 'has(trigger.properties.cart_id) ? string(trigger.properties.cart_id) : \"none\"'\n"
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminder, "welcome.yaml": welcomeJourney})
	pid := h.track("ana", "Signed Up", nil)
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", map[string]any{"cart_id": "a"})
	h.track("ana", "Product Added", map[string]any{"cart_id": "b"})
	h.drain()

	oldKey := func(pid, rest string) []byte { return []byte(pid + "\x00" + rest) }
	if n := storetest.UnmoveSidecars(t, h.store.DB(), sidecarActive, bucketOldActive, oldKey); n != 2 {
		t.Fatalf("%d live instances moved to the old bucket, want 2", n)
	}
	if n := storetest.UnmoveSidecars(t, h.store.DB(), sidecarEntry, bucketOldEntry, oldKey); n != 2 {
		t.Fatalf("%d entry histories moved to the old bucket, want 2", n)
	}
	h.restart()
	_ = h.store.DB().View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketOldActive, bucketOldEntry} {
			if tx.Bucket(b) != nil {
				t.Errorf("bucket %s still there after start-up", b)
			}
		}
		return nil
	})

	var keys []string
	for _, in := range h.instances(pid) {
		keys = append(keys, in.Key)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("instance keys after migration = %q, want [a b]", keys)
	}
	h.clock.Advance(time.Minute)
	h.track("ana", "Signed Up", nil)
	if n := len(h.actions(ActEnter, pid)); n != 3 {
		t.Errorf("%d entries in all, want 3: welcome must not enter again (no reentry)", n)
	}
	h.track("ana", "Order Completed", nil)
	if v := h.instances(pid); len(v) != 0 {
		t.Errorf("after the purchase: %+v, want the migrated instances ended", v)
	}
	if n := len(h.actions(ActExit, pid)); n != 3 {
		t.Errorf("%d exits, want 3 (welcome completed, both carts on the purchase)", n)
	}
}

// keysOf counts, per bucket, the keys that start with a profile id.
func (h *harness) keysOf(profileID string) map[string]int {
	h.t.Helper()
	out := map[string]int{}
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			c := b.Cursor()
			for k, _ := c.Seek([]byte(profileID)); k != nil && bytes.HasPrefix(k, []byte(profileID)); k, _ = c.Next() {
				out[string(name)]++
			}
			return nil
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// TestEraseForgetsSends: the send history kept for frequency caps goes
// with the person.
func TestEraseForgetsSends(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"promo.yaml": policyJourney})
	pid := h.track("ana", "Product Added", nil)
	h.drain()
	if n := h.keysOf(pid); n["journey_sends"] != 1 {
		t.Fatalf("before the erase ana has %v keys, want one send recorded", n)
	}
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}, false); err != nil {
		t.Fatal(err)
	}
	if n := h.keysOf(pid); len(n) != 0 {
		t.Errorf("after the erase, keys of ana: %v", n)
	}
}

// dm is an action's detail as simulate prints it: a JSON object.
func dm(a Action) map[string]any {
	b, err := json.Marshal(a.Detail)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

var errTestFenced = errors.New("fenced by the test")

// TestFenceStopsTimersAndDrains: with the fence failing (a cluster node
// that lost the lease of the partition this file holds), timers stay
// unfired and the outbox undrained; once it passes again, both go on, once.
func TestFenceStopsTimersAndDrains(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
	pid := h.track("ana", "Product Added", nil)
	due := t0.Add(time.Hour)

	h.fenced.Store(true)
	if n, err := h.engine.FireDue(context.Background(), h.store, due, 100); !errors.Is(err, errTestFenced) || n != 0 {
		t.Fatalf("FireDue fenced = %d, %v; want 0 and the fence's error", n, err)
	}
	if next, ok := h.engine.NextDue(); !ok || !next.Equal(due) {
		t.Fatalf("NextDue after a fenced FireDue = %s %v, want %s", next, ok, due)
	}
	h.fenced.Store(false)
	if n := h.fire(due); n != 1 {
		t.Fatalf("FireDue unfenced fired %d, want 1", n)
	}
	h.fenced.Store(true)
	called := 0
	n, err := h.engine.DrainOutbox(context.Background(), func(context.Context, Action) error { called++; return nil }, 100)
	if !errors.Is(err, errTestFenced) || n != 0 || called != 0 {
		t.Fatalf("DrainOutbox fenced = %d, %v, %d delivered; want 0, the fence's error, none", n, err, called)
	}
	h.fenced.Store(false)
	sends := 0
	for _, a := range h.drain() {
		if a.Action == ActSend && a.Profile == pid && a.Step == "remind" {
			sends++
		}
	}
	if sends != 1 {
		t.Fatalf("%d sends of remind after the fence passed, want 1", sends)
	}
}
