package rules

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// Records of the rules engine, in the profile store's file:
//
//	sidecar "r" of a profile (profiles.Sidecars: beside the profile's record)
//	                  → profileState (trait states, audience memberships): codec.Format1 binary, JSON from earlier versions;
//	                  earlier versions kept it in a bucket rules_state, moved here at start-up
//	audience_members  audience name 0x00 profile id → 8-byte big-endian unix millis of entry
//	audience_sizes    audience name → 8-byte big-endian member count
//	rules_defs        "trait:<name>" or "audience:<name>" → hash of the definition backfilled last
var (
	bucketOldState = []byte("rules_state")
	bucketMembers  = []byte("audience_members")
	bucketSizes    = []byte("audience_sizes")
	bucketDefs     = []byte("rules_defs")
)

// sidecarState names the rules state among a profile's sidecars.
const sidecarState = "r"

// Events the engine records on a profile.
const (
	EventAudienceEntered = "Audience Entered"
	EventAudienceExited  = "Audience Exited"
)

// Change is one audience entry or exit, published after it commits.
type Change struct {
	ProfileID string    `json:"profile_id"`
	Audience  string    `json:"audience"`
	Entered   bool      `json:"entered"`
	At        time.Time `json:"at"`
	// Reason is "evaluated", "merged", "erased" or "removed" (the audience
	// left the rule files).
	Reason string `json:"reason"`
}

// Membership is a profile's standing in one audience.
type Membership struct {
	Member    bool      `json:"member"`
	EnteredAt time.Time `json:"entered_at"`
	ExitedAt  time.Time `json:"exited_at,omitzero"`
}

type profileState struct {
	Traits    map[string]*traitState `json:"t,omitempty"`
	Audiences map[string]*Membership `json:"a,omitempty"`
}

func (ps *profileState) members() []string {
	var out []string
	for name, m := range ps.Audiences {
		if m.Member {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Metrics are the engine's Prometheus collectors.
type Metrics struct {
	AudienceChanges *prometheus.CounterVec
	EvalErrors      prometheus.Counter
	Backfilled      *prometheus.CounterVec
	BackfillPending prometheus.Gauge
}

// NewMetrics makes and registers (when reg is not nil) the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		AudienceChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_audience_changes_total", Help: "Audience entries and exits.",
		}, []string{"change"}),
		EvalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_rule_eval_errors_total", Help: "Conditions that failed to evaluate (counted as false).",
		}),
		Backfilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_rules_backfilled_profiles_total", Help: "Profiles re-evaluated by a backfill of new or changed rules.",
		}, []string{"result"}),
		BackfillPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cartera_rules_backfill_running", Help: "1 while a backfill of new or changed rules runs.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.AudienceChanges, m.EvalErrors, m.Backfilled, m.BackfillPending)
	}
	return m
}

// Subscriber is told of audience changes after they commit, in commit
// order. It must not block for long: it runs on the commit path.
type Subscriber func(changes []Change)

// Engine maintains computed traits and audience memberships as events
// commit. It is a profiles.Processor.
type Engine struct {
	db      *bbolt.DB
	rs      atomic.Pointer[Ruleset]
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics

	mu   sync.Mutex
	subs []Subscriber
	// active maps a write transaction to the engine's work in it, so a
	// processor after this one sees traits as this transaction left them.
	active sync.Map
}

// EngineOptions carry the engine's dependencies.
type EngineOptions struct {
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
}

// NewEngine creates the engine's buckets in db and starts with rs.
func NewEngine(db *bbolt.DB, rs *Ruleset, opts EngineOptions) (*Engine, error) {
	e := &Engine{db: db, now: opts.Now, log: opts.Logger, metrics: opts.Metrics}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	e.rs.Store(rs)
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMembers, bucketSizes, bucketDefs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	moved, err := profiles.MigrateToSidecars(db, bucketOldState, func(k []byte) (string, string, bool) {
		return string(k), sidecarState, true
	})
	if err != nil {
		return nil, err
	}
	if moved > 0 {
		e.log.Info("rules state moved beside the profiles", "profiles", moved)
	}
	return e, nil
}

// Replace puts a new ruleset in force. Traits whose definition changed are
// rebuilt per profile as events arrive (and by Backfill).
func (e *Engine) Replace(rs *Ruleset) { e.rs.Store(rs) }

// Ruleset is the ruleset in force.
func (e *Engine) Ruleset() *Ruleset { return e.rs.Load() }

// Subscribe adds a subscriber to audience changes.
func (e *Engine) Subscribe(s Subscriber) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = append(e.subs, s)
}

func (e *Engine) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	for _, c := range changes {
		if c.Entered {
			e.metrics.AudienceChanges.WithLabelValues("entered").Inc()
		} else {
			e.metrics.AudienceChanges.WithLabelValues("exited").Inc()
		}
	}
	e.mu.Lock()
	subs := slices.Clone(e.subs)
	e.mu.Unlock()
	for _, s := range subs {
		s(changes)
	}
}

// Begin implements profiles.Processor.
func (e *Engine) Begin(tx *bbolt.Tx) profiles.TxProcessor {
	w := &txWork{e: e, tx: tx, rs: e.rs.Load(), states: map[string]*profileState{}, dirty: map[string]bool{}, views: map[string]cachedView{}}
	if tx.Writable() {
		// Keyed by audience, then profile id: new profiles' ids start
		// with their creation time.
		tx.Bucket(bucketMembers).FillPercent = profiles.AppendFillPercent
	}
	e.active.Store(tx, w)
	return w
}

// ViewIn returns the profile as conditions see it at now, within tx: with
// the computed traits and audiences this transaction has already changed.
func (e *Engine) ViewIn(tx *bbolt.Tx, p *profiles.Profile, now time.Time) (*ProfileView, error) {
	w, _ := e.active.Load(tx)
	work, ok := w.(*txWork)
	if !ok {
		work = &txWork{e: e, tx: tx, rs: e.rs.Load(), states: map[string]*profileState{}, dirty: map[string]bool{}}
	}
	if c, ok := work.views[p.ID]; ok && c.p == p {
		// Built by this transaction's evaluation of the profile for the
		// same event (computed traits read at that instant, microseconds
		// before now), and nothing the view holds has changed since but
		// the last event's time (an event the engine derived).
		c.v.LastSeenAt = p.LastSeenAt
		return c.v, nil
	}
	ps, err := work.state(p.ID)
	if err != nil {
		return nil, err
	}
	return work.rs.view(p, ps, now), nil
}

// cachedView is the view the last evaluation of a profile built.
type cachedView struct {
	p *profiles.Profile
	v *ProfileView
}

// txWork is the engine's work in one write transaction.
type txWork struct {
	e       *Engine
	tx      *bbolt.Tx
	rs      *Ruleset
	states  map[string]*profileState
	dirty   map[string]bool
	changes []Change
	// views are the views the audiences were last evaluated with, for
	// ViewIn; a change of the state outside evaluate forgets them.
	views map[string]cachedView
	// store records derived events during a backfill or sweep; after are
	// the processors they went to, told when the transaction ends.
	store *profiles.Store
	after []func(committed bool)
}

func (w *txWork) state(id string) (*profileState, error) {
	if ps, ok := w.states[id]; ok {
		if ps == nil { // left everything in this transaction
			return &profileState{Traits: map[string]*traitState{}, Audiences: map[string]*Membership{}}, nil
		}
		return ps, nil
	}
	ps := &profileState{}
	sc, err := profiles.SidecarsIn(w.tx)
	if err != nil {
		return nil, err
	}
	if v := sc.Get(id, sidecarState); v != nil {
		if err := decodeState(v, ps); err != nil {
			return nil, fmt.Errorf("decode rules state of %s: %w", id, err)
		}
	} else if w.tx.Writable() {
		// A new profile's state: its key is placed now, next to the
		// profile's other records, and overwritten in place by Flush
		// (profiles.txState.placeNew says why).
		v, err := encodeState(ps, nil)
		if err != nil {
			return nil, fmt.Errorf("encode rules state of %s: %w", id, err)
		}
		if err := sc.Put(id, sidecarState, v); err != nil {
			return nil, err
		}
	}
	if ps.Traits == nil {
		ps.Traits = map[string]*traitState{}
	}
	if ps.Audiences == nil {
		ps.Audiences = map[string]*Membership{}
	}
	w.states[id] = ps
	return ps, nil
}

// Event implements profiles.TxProcessor: it folds the event into the
// profile's computed traits and re-evaluates the profile's audiences.
func (w *txWork) Event(p *profiles.Profile, ev *profiles.Event) ([]*profiles.Event, error) {
	delete(w.views, p.ID) // evaluate builds it again
	ps, err := w.state(p.ID)
	if err != nil {
		return nil, err
	}
	now := w.e.now()
	maintained := w.rs.maintained()
	var stale []*Trait
	for _, t := range maintained {
		if st := ps.Traits[t.Spec.Name]; st == nil || st.Hash != t.hash {
			stale = append(stale, t)
		}
	}
	rebuilt := map[*Trait]bool{}
	switch {
	case len(stale) == 0:
	case p.EventCount <= 1:
		// A new profile: its only event is this one, folded in below.
		for _, t := range stale {
			ps.Traits[t.Spec.Name] = &traitState{Hash: t.hash}
		}
	default:
		// New or changed definitions: rebuild them from the stored
		// events, this one included, in one pass.
		if err := w.recompute(p, ps, stale); err != nil {
			return nil, err
		}
		for _, t := range stale {
			rebuilt[t] = true
		}
	}
	var in *Input
	for _, t := range maintained {
		st := ps.Traits[t.Spec.Name]
		if !rebuilt[t] {
			// The view costs the expression traits' evaluation: build it
			// only for a where whose event this is.
			if t.where != nil && in == nil && (t.Spec.Event == "" || t.Spec.Event == eventName(ev)) {
				in = &Input{Profile: w.rs.view(p, ps, now), Event: ViewOf(ev), Now: now}
			}
			ok, err := t.matches(ev, in)
			if err != nil {
				w.e.metrics.EvalErrors.Inc()
			}
			if ok {
				t.add(st, ev)
			}
		}
		t.prune(st, now)
	}
	w.dirty[p.ID] = true
	return w.evaluate(p, ps, now)
}

// recompute rebuilds traits of a profile from its stored events, in one
// pass over them, into ps.
func (w *txWork) recompute(p *profiles.Profile, ps *profileState, traits []*Trait) error {
	delete(w.views, p.ID)
	states := make([]*traitState, len(traits))
	for i, t := range traits {
		states[i] = &traitState{Hash: t.hash}
	}
	var view *ProfileView
	err := profiles.ForEachEvent(w.tx, p.ID, func(ev *profiles.Event) error {
		if ev.Source == profiles.SourceCartera {
			// Events Cartera derived are never folded in live either.
			return nil
		}
		var in *Input
		for i, t := range traits {
			if t.where != nil && in == nil {
				if view == nil {
					empty := &profileState{Traits: map[string]*traitState{}, Audiences: map[string]*Membership{}}
					view = w.rs.view(p, empty, w.e.now())
				}
				in = &Input{Profile: view, Event: ViewOf(ev), Now: ev.Timestamp}
			}
			ok, err := t.matches(ev, in)
			if err != nil {
				w.e.metrics.EvalErrors.Inc()
			}
			if ok {
				t.add(states[i], ev)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, t := range traits {
		ps.Traits[t.Spec.Name] = states[i]
	}
	return nil
}

// evaluate re-evaluates every audience for one profile and records the
// changes: membership keys, sizes, an event on the profile, and a Change to
// publish after commit.
func (w *txWork) evaluate(p *profiles.Profile, ps *profileState, now time.Time) ([]*profiles.Event, error) {
	if len(w.rs.Audiences) == 0 && len(ps.Audiences) == 0 {
		return nil, nil
	}
	view := w.rs.view(p, ps, now)
	in := &Input{Profile: view, Now: now}
	if w.views != nil {
		defer func() { w.views[p.ID] = cachedView{p: p, v: view} }()
	}
	var derived []*profiles.Event
	for _, a := range w.rs.Audiences {
		member, err := a.prg.Bool(in)
		if err != nil {
			w.e.metrics.EvalErrors.Inc()
			member = false
		}
		cur := ps.Audiences[a.Name()]
		was := cur != nil && cur.Member
		if member == was {
			continue
		}
		if err := w.setMember(p.ID, ps, a.Name(), member, now, "evaluated"); err != nil {
			return nil, err
		}
		// Later audiences see this one's new standing.
		view.Audiences = ps.members()
		derived = append(derived, audienceEvent(p.ID, a.Name(), member, now))
	}
	// Audiences no longer declared are left by their members.
	for name, m := range ps.Audiences {
		if _, ok := w.rs.Audience(name); !ok && m.Member {
			if err := w.setMember(p.ID, ps, name, false, now, "removed"); err != nil {
				return nil, err
			}
			derived = append(derived, audienceEvent(p.ID, name, false, now))
		}
	}
	return derived, nil
}

// audienceEvent records a change at the time it was made (not at the time
// of the event that caused it, which may be a late arrival).
func audienceEvent(profileID, audience string, entered bool, now time.Time) *profiles.Event {
	name, verb := EventAudienceEntered, "entered"
	if !entered {
		name, verb = EventAudienceExited, "exited"
	}
	return &profiles.Event{
		Type:       profiles.TypeTrack,
		MessageID:  fmt.Sprintf("audience-%s:%s:%s:%d", verb, audience, profileID, now.UnixNano()),
		Event:      name,
		Properties: map[string]any{"audience": audience},
		Timestamp:  now.UTC(),
		ReceivedAt: now.UTC(),
		Source:     profiles.SourceCartera,
	}
}

func memberKey(audience, profileID string) []byte {
	k := make([]byte, 0, len(audience)+1+len(profileID))
	k = append(k, audience...)
	k = append(k, 0)
	return append(k, profileID...)
}

func (w *txWork) setMember(profileID string, ps *profileState, audience string, member bool, now time.Time, reason string) error {
	m := ps.Audiences[audience]
	if m == nil {
		m = &Membership{}
		ps.Audiences[audience] = m
	}
	m.Member = member
	members, sizes := w.tx.Bucket(bucketMembers), w.tx.Bucket(bucketSizes)
	key := memberKey(audience, profileID)
	var size int64
	if v := sizes.Get([]byte(audience)); len(v) == 8 {
		size = int64(binary.BigEndian.Uint64(v))
	}
	if member {
		m.EnteredAt, m.ExitedAt = now.UTC(), time.Time{}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(now.UnixMilli()))
		if err := members.Put(key, b[:]); err != nil {
			return err
		}
		size++
	} else {
		m.ExitedAt = now.UTC()
		if err := members.Delete(key); err != nil {
			return err
		}
		size = max(size-1, 0)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(size))
	if err := sizes.Put([]byte(audience), b[:]); err != nil {
		return err
	}
	w.dirty[profileID] = true
	w.changes = append(w.changes, Change{ProfileID: profileID, Audience: audience, Entered: member, At: now.UTC(), Reason: reason})
	return nil
}

// leaveAll takes a profile out of every audience and forgets its state.
func (w *txWork) leaveAll(profileID, reason string) error {
	delete(w.views, profileID)
	ps, err := w.state(profileID)
	if err != nil {
		return err
	}
	now := w.e.now()
	for _, name := range slices.Sorted(maps.Keys(ps.Audiences)) {
		if ps.Audiences[name].Member {
			if err := w.setMember(profileID, ps, name, false, now, reason); err != nil {
				return err
			}
		}
	}
	w.states[profileID] = nil
	w.dirty[profileID] = true
	return nil
}

// Merged implements profiles.TxProcessor: the merged-away profile leaves
// its audiences; the survivor's traits are rebuilt from the events it now
// holds, and its audiences are evaluated with the event that merged them.
func (w *txWork) Merged(survivor *profiles.Profile, loserID string) error {
	if err := w.leaveAll(loserID, "merged"); err != nil {
		return err
	}
	ps, err := w.state(survivor.ID)
	if err != nil {
		return err
	}
	if err := w.recompute(survivor, ps, w.rs.maintained()); err != nil {
		return err
	}
	w.dirty[survivor.ID] = true
	return nil
}

// Erased implements profiles.TxProcessor.
func (w *txWork) Erased(p *profiles.Profile) error {
	return w.leaveAll(p.ID, "erased")
}

// Flush implements profiles.TxProcessor.
func (w *txWork) Flush() error {
	sc, err := profiles.SidecarsIn(w.tx)
	if err != nil {
		return err
	}
	for id := range w.dirty {
		ps := w.states[id]
		if ps == nil {
			if err := sc.Delete(id, sidecarState); err != nil {
				return err
			}
			continue
		}
		v, err := encodeState(ps, nil)
		if err != nil {
			return fmt.Errorf("encode rules state of %s: %w", id, err)
		}
		if err := sc.Put(id, sidecarState, v); err != nil {
			return err
		}
	}
	clear(w.dirty)
	return nil
}

// Done implements profiles.TxProcessor.
func (w *txWork) Done(committed bool) {
	w.e.active.Delete(w.tx)
	for _, done := range w.after {
		done(committed)
	}
	w.after = nil
	if committed {
		w.e.publish(w.changes)
	}
	w.changes = nil
}

// Standing is what the engine knows of one profile, for the profile API.
type Standing struct {
	Computed  map[string]any         `json:"computed"`
	Audiences map[string]*Membership `json:"audiences"`
}

// Standing returns the computed traits (at now) and audience memberships
// of a profile.
func (e *Engine) Standing(p *profiles.Profile) (*Standing, error) {
	rs := e.rs.Load()
	out := &Standing{Computed: map[string]any{}, Audiences: map[string]*Membership{}}
	err := e.db.View(func(tx *bbolt.Tx) error {
		w := &txWork{e: e, tx: tx, rs: rs, states: map[string]*profileState{}}
		ps, err := w.state(p.ID)
		if err != nil {
			return err
		}
		view := rs.view(p, ps, e.now())
		for _, t := range rs.Traits {
			// Unset stays null here (conditions read the kind's zero).
			out.Computed[t.Name()] = view.Computed[t.Index]
		}
		out.Audiences = ps.Audiences
		return nil
	})
	return out, err
}

// AudienceInfo describes an audience for the API.
type AudienceInfo struct {
	Name        string `json:"id"`
	Description string `json:"description,omitempty"`
	Expression  string `json:"expression"`
	Size        int64  `json:"size"`
}

// Audiences lists the declared audiences with their sizes.
func (e *Engine) Audiences() ([]AudienceInfo, error) {
	rs := e.rs.Load()
	out := make([]AudienceInfo, 0, len(rs.Audiences))
	err := e.db.View(func(tx *bbolt.Tx) error {
		sizes := tx.Bucket(bucketSizes)
		for _, a := range rs.Audiences {
			info := AudienceInfo{Name: a.Name(), Description: a.Spec.Description, Expression: a.Spec.Expression.Source}
			if v := sizes.Get([]byte(a.Name())); len(v) == 8 {
				info.Size = int64(binary.BigEndian.Uint64(v))
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// ErrUnknownAudience is returned for an audience the rule files do not declare.
var ErrUnknownAudience = errors.New("unknown audience")

// Member is one member of an audience.
type Member struct {
	ProfileID string    `json:"profile_id"`
	EnteredAt time.Time `json:"entered_at"`
}

// Members pages through an audience's members in profile id order, after
// the given id; next is "" on the last page.
func (e *Engine) Members(audience, after string, limit int) (members []Member, next string, err error) {
	if _, ok := e.rs.Load().Audience(audience); !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownAudience, audience)
	}
	limit = max(limit, 1)
	err = e.db.View(func(tx *bbolt.Tx) error {
		members, next = membersIn(tx, audience, after, limit)
		return nil
	})
	return members, next, err
}

// MembersIn is Members within a transaction of the store's file.
func (e *Engine) MembersIn(tx *bbolt.Tx, audience, after string, limit int) ([]Member, string, error) {
	if _, ok := e.rs.Load().Audience(audience); !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownAudience, audience)
	}
	m, next := membersIn(tx, audience, after, max(limit, 1))
	return m, next, nil
}

func membersIn(tx *bbolt.Tx, audience, after string, limit int) (members []Member, next string) {
	prefix := memberKey(audience, "")
	c := tx.Bucket(bucketMembers).Cursor()
	k, v := c.Seek(memberKey(audience, after))
	if after != "" && k != nil && bytes.Equal(k, memberKey(audience, after)) {
		k, v = c.Next()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(members) == limit {
			return members, members[len(members)-1].ProfileID
		}
		members = append(members, Member{ProfileID: string(k[len(prefix):]), EnteredAt: time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()})
	}
	return members, ""
}

// Backfill brings every profile up to the ruleset in force when its
// definitions differ from those last backfilled: new or changed traits are
// rebuilt from stored events, audiences re-evaluated. Profiles that see an
// event meanwhile are brought up to date by that event; the backfill is
// idempotent and restarts from the beginning after a crash.
func (e *Engine) Backfill(ctx context.Context, st *profiles.Store) error {
	rs := e.rs.Load()
	want := definitions(rs)
	var have map[string]string
	if err := e.db.View(func(tx *bbolt.Tx) error {
		have = map[string]string{}
		return tx.Bucket(bucketDefs).ForEach(func(k, v []byte) error {
			have[string(k)] = string(v)
			return nil
		})
	}); err != nil {
		return err
	}
	if maps.Equal(want, have) {
		return nil
	}
	e.metrics.BackfillPending.Set(1)
	defer e.metrics.BackfillPending.Set(0)
	start := time.Now()
	e.log.Info("backfill of rules started", "traits", len(rs.Traits), "audiences", len(rs.Audiences), "profiles", st.ProfileCount())
	done, err := e.refreshAll(ctx, st, "backfill")
	if err != nil {
		return err
	}
	err = e.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDefs)
		for k := range have {
			if _, ok := want[k]; !ok {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		for k, v := range want {
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.log.Info("backfill of rules done", "profiles_done", done, "seconds", time.Since(start).Seconds())
	return nil
}

// refreshAll brings every profile up to the ruleset in force, 500 to a
// transaction, and returns how many it saw.
func (e *Engine) refreshAll(ctx context.Context, st *profiles.Store, what string) (int, error) {
	after, done := "", 0
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		ids, err := st.ScanIDs(after, 500)
		if err != nil {
			return done, err
		}
		if len(ids) == 0 {
			return done, nil
		}
		var w *txWork
		err = e.db.Update(func(tx *bbolt.Tx) error {
			w = e.Begin(tx).(*txWork)
			w.store = st
			for _, id := range ids {
				p, err := profiles.ReadProfile(tx, id)
				if errors.Is(err, profiles.ErrNotFound) {
					continue // merged or erased meanwhile
				} else if err != nil {
					return err
				}
				if err := w.refresh(p); err != nil {
					return err
				}
			}
			return w.Flush()
		})
		w.Done(err == nil)
		if err != nil {
			e.metrics.Backfilled.WithLabelValues("error").Add(float64(len(ids)))
			return done, fmt.Errorf("%s of rules: %w", what, err)
		}
		e.metrics.Backfilled.WithLabelValues("ok").Add(float64(len(ids)))
		done += len(ids)
		after = ids[len(ids)-1]
		if done%50000 < len(ids) {
			e.log.Info(what+" of rules progress", "profiles_done", done, "profiles", st.ProfileCount())
		}
	}
}

// RunSweeper re-evaluates every profile every interval until ctx ends, for
// what changes with time alone: a windowed trait whose events age out, a
// condition on now or days_since. Event-driven evaluation stays the main
// path; the sweep only catches a profile that has been quiet.
func (e *Engine) RunSweeper(ctx context.Context, st *profiles.Store, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			start := time.Now()
			n, err := e.refreshAll(ctx, st, "sweep")
			if err != nil && !errors.Is(err, context.Canceled) {
				e.log.Error("sweep of audiences", "err", err)
				continue
			}
			e.log.Info("sweep of audiences done", "profiles_done", n, "seconds", time.Since(start).Seconds())
		}
	}
}

func definitions(rs *Ruleset) map[string]string {
	m := map[string]string{}
	for _, t := range rs.maintained() {
		m["trait:"+t.Spec.Name] = t.hash
	}
	for _, t := range rs.Traits {
		m["trait:"+t.Spec.Name] = t.hash
	}
	for _, a := range rs.Audiences {
		m["audience:"+a.Name()] = a.hash
	}
	return m
}

// refresh rebuilds stale traits of a profile and re-evaluates its
// audiences, recording what changes as events on the profile.
func (w *txWork) refresh(p *profiles.Profile) error {
	ps, err := w.state(p.ID)
	if err != nil {
		return err
	}
	now := w.e.now()
	var stale []*Trait
	for _, t := range w.rs.maintained() {
		if st := ps.Traits[t.Spec.Name]; st == nil || st.Hash != t.hash {
			stale = append(stale, t)
		}
	}
	changed := len(stale) > 0
	if changed {
		if err := w.recompute(p, ps, stale); err != nil {
			return err
		}
	}
	for _, t := range w.rs.maintained() {
		t.prune(ps.Traits[t.Spec.Name], now)
	}
	for name := range ps.Traits {
		if _, declared := w.rs.byName[name]; !declared {
			if _, implicit := w.rs.countIndex[name]; !implicit {
				delete(ps.Traits, name)
				changed = true
			}
		}
	}
	if changed {
		// A membership change marks the profile dirty by itself; a sweep
		// that changes nothing writes nothing.
		w.dirty[p.ID] = true
	}
	derived, err := w.evaluate(p, ps, now)
	if err != nil || len(derived) == 0 {
		return err
	}
	done, err := w.store.AppendDerived(w.tx, p, derived, w.e)
	w.after = append(w.after, done)
	return err
}
