package journeys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// Buckets of the journey engine, in the profile store's file:
//
//	journey_instances  instance id (8-byte big-endian sequence) → Instance (codec.Format1 binary; JSON from earlier versions)
//	sidecar "a" 0x00 journey id 0x00 instance key of a profile (profiles.Sidecars: beside the profile's record)
//	                   → instance id (8-byte big-endian), then the version it runs (older entries hold the id
//	                   only): one live instance each; earlier versions kept these in a bucket journey_active
//	journey_timers     due (8-byte big-endian unix nanos) | instance id (8) → timer kind ("i" step, "s" schedule, "d" delayed
//	                   send) and, for "s", the journey id; for "d", when the send was first held (8-byte unix nanos)
//	                   and whether the instance had converted then (1 byte)
//	sidecar "e" 0x00 journey id of a profile → entry history (re-entry, cooldown): codec.Format1 binary, JSON from
//	                   earlier versions; earlier versions kept these in a bucket journey_entries
//	journey_counts     journey id 0x00 step id 0x00 counter → 8-byte big-endian count
//	journey_defs       journey id 0x00 version → journey file bytes (instances finish on their version)
//	journey_outbox     sequence (8) → JSON Action awaiting delivery
//	journey_outbox_keys idempotency key → sequence: a step's effect is recorded once
//	journey_sends      profile id 0x00 channel 0x00 unix nanos (8) | sequence (8) → journey id (caps, priorities)
//	journey_ad_members audience 0x00 profile id → journey id that added the person
//	journey_schedules  journey id → JSON schedule record: the cron spec armed, the due of its one
//	                   timer, and the progress of a tick being enrolled page by page (schedule.go)
var (
	bucketInstances = []byte("journey_instances")
	bucketOldActive = []byte("journey_active")
	bucketTimers    = []byte("journey_timers")
	bucketOldEntry  = []byte("journey_entries")
	bucketCounts    = []byte("journey_counts")
	bucketDefs      = []byte("journey_defs")
	bucketOutbox    = []byte("journey_outbox")
	bucketOutboxKey = []byte("journey_outbox_keys")
	bucketSends     = []byte("journey_sends")
	bucketAdMembers = []byte("journey_ad_members")
	bucketSchedules = []byte("journey_schedules")
)

// Actions a journey takes (the simulate output's "action").
const (
	ActEnter          = "enter"
	ActSend           = "send"
	ActAudienceAdd    = "audience_add"
	ActAudienceRemove = "audience_remove"
	ActPassUpdate     = "pass_update"
	ActSetTrait       = "set_trait"
	ActGoal           = "goal"
	ActExit           = "exit"
	ActSuppressed     = "suppressed"
	// ActDelayed is a send that quiet hours or a frequency cap hold back
	// until detail "until"; then it is a send or suppressed.
	ActDelayed = "delayed"
)

// Action is one thing a journey did, as simulate prints it and the outbox
// keeps it.
type Action struct {
	At      time.Time `json:"at"`
	Profile string    `json:"profile"`
	Journey string    `json:"journey"`
	Step    string    `json:"step"`
	Action  string    `json:"action"`
	Channel string    `json:"channel"`
	Detail  Detail    `json:"detail"`
	// Key is the idempotency key: journey, version, instance, step.
	Key string `json:"key,omitempty"`
	// Identifiers are the person's emails and phones when an ad audience
	// changed, captured in the commit: a removal after an erase still
	// knows whom to remove. Never printed by simulate nor logged.
	Identifiers *Identifiers `json:"identifiers,omitempty"`
	// Trigger is the properties of the event that started the instance,
	// for a send's template ("the shoes you left in your cart").
	Trigger map[string]any `json:"trigger,omitempty"`
}

// Instance is one run of a journey for one profile (and key).
type Instance struct {
	ID        uint64         `json:"id"`
	Journey   string         `json:"journey"`
	Version   string         `json:"version"`
	ProfileID string         `json:"profile_id"`
	Key       string         `json:"key,omitempty"`
	Step      string         `json:"step"`
	Done      bool           `json:"done"`
	Trigger   *TriggerRecord `json:"trigger"`
	EnteredAt time.Time      `json:"entered_at"`
	// Timer is the key of the pending timer; a timer whose key differs is
	// stale and ignored.
	Timer     []byte   `json:"timer,omitempty"`
	Audiences []string `json:"audiences,omitempty"`
	Variant   string   `json:"variant,omitempty"`
	Converted bool     `json:"converted,omitempty"`
	// Steps counts executions of each step, so a step run twice by a loop
	// gets a fresh idempotency key.
	Steps map[string]int `json:"steps,omitempty"`
}

// TriggerRecord is the event that started an instance, kept for the
// trigger variable of later conditions.
type TriggerRecord struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Source     string         `json:"source"`
	MessageID  string         `json:"message_id,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
}

func (t *TriggerRecord) view() *rules.EventView {
	if t == nil {
		return nil
	}
	return &rules.EventView{Name: t.Name, Type: t.Type, Source: t.Source, MessageID: t.MessageID, Properties: t.Properties, Timestamp: t.Timestamp}
}

// Clock is the engine's time; simulate drives a virtual one.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now implements Clock.
func (f ClockFunc) Now() time.Time { return f() }

// Set is a compiled set of journeys with the policy they share.
type Set struct {
	Journeys []*Journey
	Policy   *Policy
	byID     map[string]*Journey
	// byEvent lists, in file order, the journeys an event of a name may
	// trigger, so an event costs only the journeys that care about it.
	byEvent map[string][]*Journey
}

// NewSet indexes journeys; ids must be unique.
func NewSet(js []*Journey, pol *Policy) (*Set, error) {
	s := &Set{Journeys: js, Policy: pol, byID: map[string]*Journey{}, byEvent: map[string][]*Journey{}}
	if s.Policy == nil {
		s.Policy = DefaultPolicy()
	}
	var errs rules.FileErrors
	for _, j := range js {
		if other, dup := s.byID[j.ID]; dup {
			errs = append(errs, &rules.FileError{File: j.File, Line: 1, Col: 1, Msg: fmt.Sprintf("journey id %q is also used by %s", j.ID, other.File)})
			continue
		}
		s.byID[j.ID] = j
		switch t := j.Trigger; {
		case t.Event != "":
			s.byEvent[t.Event] = append(s.byEvent[t.Event], j)
		case t.AudienceEnter != "":
			s.byEvent[rules.EventAudienceEntered] = append(s.byEvent[rules.EventAudienceEntered], j)
		case t.AudienceExit != "":
			s.byEvent[rules.EventAudienceExited] = append(s.byEvent[rules.EventAudienceExited], j)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// Journey returns the current version of a journey.
func (s *Set) Journey(id string) *Journey { return s.byID[id] }

// Options carry the engine's dependencies.
type Options struct {
	Clock   Clock
	Logger  *slog.Logger
	Metrics *Metrics
	// Rules builds profile views with computed traits inside a transaction.
	Rules *rules.Engine
	// Env compiles stored versions of journeys.
	Env func() *rules.Env
	// Known names for recompiling stored versions.
	Known func() Known
}

// Engine runs journeys durably. It is a profiles.Processor (after the rules
// engine): triggers, wait_for and exit_when are evaluated in the commit of
// the event; timers fire from FireDue.
type Engine struct {
	db      *bbolt.DB
	set     atomic.Pointer[Set]
	clock   Clock
	log     *slog.Logger
	metrics *Metrics
	rules   *rules.Engine
	opts    Options

	mu        sync.Mutex
	versions  map[string]*Journey
	observers []func([]Action)
	wake      chan struct{}
}

// New creates the engine's buckets and starts with set.
func New(db *bbolt.DB, set *Set, opts Options) (*Engine, error) {
	e := &Engine{db: db, clock: opts.Clock, log: opts.Logger, metrics: opts.Metrics, rules: opts.Rules, opts: opts,
		versions: map[string]*Journey{}, wake: make(chan struct{}, 1)}
	if e.clock == nil {
		e.clock = ClockFunc(time.Now)
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketInstances, bucketTimers, bucketCounts, bucketDefs, bucketOutbox, bucketOutboxKey, bucketSends, bucketAdMembers, bucketSchedules} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := migrateSidecars(db, e.log); err != nil {
		return nil, err
	}
	if err := e.Replace(set); err != nil {
		return nil, err
	}
	return e, nil
}

// migrateSidecars moves live-instance and entry records that earlier
// versions kept in buckets of their own (keyed by profile id 0x00 ...)
// beside the profiles.
func migrateSidecars(db *bbolt.DB, log *slog.Logger) error {
	for _, m := range []struct {
		bucket []byte
		tag    string
	}{{bucketOldActive, sidecarActive}, {bucketOldEntry, sidecarEntry}} {
		moved, err := profiles.MigrateToSidecars(db, m.bucket, func(k []byte) (string, string, bool) {
			pid, rest, ok := bytes.Cut(k, []byte{0})
			return string(pid), m.tag + string(rest), ok
		})
		if err != nil {
			return err
		}
		if moved > 0 {
			log.Info("journey records moved beside the profiles", "bucket", string(m.bucket), "records", moved)
		}
	}
	return nil
}

// Sidecar names (prefixes) of the engine's records about a profile.
const (
	sidecarActive = "a\x00" // + journey id 0x00 instance key
	sidecarEntry  = "e\x00" // + journey id
)

func activeName(journey, key string) string { return sidecarActive + journey + "\x00" + key }

func entryName(journey string) string { return sidecarEntry + journey }

// sidecars are the profile records of the run's transaction.
func (r *run) sidecars() (profiles.Sidecars, error) {
	if r.sc == nil {
		sc, err := profiles.SidecarsIn(r.tx)
		if err != nil {
			return profiles.Sidecars{}, err
		}
		r.sc = &sc
	}
	return *r.sc, nil
}

// Set is the journeys in force.
func (e *Engine) Set() *Set { return e.set.Load() }

// Observe adds a function told of actions after they commit.
func (e *Engine) Observe(f func([]Action)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observers = append(e.observers, f)
}

// Wake makes Run look at the timers again now (after the clock jumped).
func (e *Engine) Wake() { e.poke() }

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func defKey(id, version string) []byte { return []byte(id + "\x00" + version) }

// version returns a journey at a version: the current one, or one compiled
// from the stored file for instances started before an edit.
func (e *Engine) version(tx *bbolt.Tx, id, version string) (*Journey, error) {
	k := defKey(id, version)
	e.mu.Lock()
	j := e.versions[string(k)]
	e.mu.Unlock()
	if j != nil {
		return j, nil
	}
	src := tx.Bucket(bucketDefs).Get(k)
	if src == nil {
		return nil, fmt.Errorf("journey %s version %s: not stored", id, version)
	}
	if e.opts.Env == nil {
		return nil, fmt.Errorf("journey %s version %s: no environment to compile it", id, version)
	}
	var known Known
	if e.opts.Known != nil {
		known = e.opts.Known()
	}
	j, err := Parse(id+"@"+version, bytes.Clone(src), e.opts.Env(), known)
	if err != nil {
		return nil, fmt.Errorf("journey %s version %s no longer compiles: %w", id, version, err)
	}
	j.Version = version
	e.mu.Lock()
	e.versions[string(k)] = j
	e.mu.Unlock()
	return j, nil
}

// run is the engine's work in one write transaction.
type run struct {
	e       *Engine
	tx      *bbolt.Tx
	sc      *profiles.Sidecars
	set     *Set
	now     time.Time
	actions []Action
	views   map[string]*rules.ProfileView
	// received is when the event being handled (or, for an event Cartera
	// derived from it, its origin) was received; latencies are what
	// Done observes once the actions are durable.
	received  time.Time
	latencies []latency
	// counts are the step counters this transaction changed, written by
	// Flush.
	counts map[string]int64
	// memo holds the trigger conditions evaluated for the current event,
	// by source.
	memo map[string]bool
	// people are the profiles this run was handed, as the commit holds
	// them (see identifiersOf).
	people map[string]*profiles.Profile
}

// latency is one observation for the engine's latency histograms.
type latency struct {
	received time.Time
	purchase bool // an Order Completed that ended an instance or left an ad audience
}

// eventOrderCompleted is the purchase event of Segment's e-commerce spec.
const eventOrderCompleted = "Order Completed"

// Begin implements profiles.Processor.
func (e *Engine) Begin(tx *bbolt.Tx) profiles.TxProcessor {
	if tx.Writable() {
		// Keys that mostly grow: sequences and due times.
		for _, b := range [][]byte{bucketInstances, bucketTimers, bucketOutbox} {
			tx.Bucket(b).FillPercent = profiles.AppendFillPercent
		}
	}
	return &run{e: e, tx: tx, set: e.set.Load(), views: map[string]*rules.ProfileView{}}
}

// Flush implements profiles.TxProcessor: the step counters are written;
// everything else is written as it goes.
func (r *run) Flush() error {
	if len(r.counts) == 0 {
		return nil
	}
	b := r.tx.Bucket(bucketCounts)
	for k, n := range r.counts {
		if err := b.Put([]byte(k), u64(uint64(n))); err != nil {
			return err
		}
	}
	clear(r.counts)
	return nil
}

// Done implements profiles.TxProcessor: actions are told after commit.
func (r *run) Done(committed bool) {
	if committed && len(r.latencies) > 0 {
		now := r.e.clock.Now()
		for _, l := range r.latencies {
			h := r.e.metrics.EventToAction
			if l.purchase {
				h = r.e.metrics.PurchaseToSuppression
			}
			h.Observe(now.Sub(l.received).Seconds())
		}
	}
	r.latencies = r.latencies[:0]
	if committed && len(r.actions) > 0 {
		r.e.metrics.observe(r.actions)
		r.e.mu.Lock()
		obs := slices.Clone(r.e.observers)
		r.e.mu.Unlock()
		for _, f := range obs {
			f(r.actions)
		}
		r.e.poke()
	}
	r.actions = nil
}

// Merged implements profiles.TxProcessor: the merged-away profile's live
// instances move to the survivor unless it runs the same journey already.
func (r *run) Merged(survivor *profiles.Profile, loserID string) error {
	r.hold(survivor)
	insts, err := r.activeOf(loserID)
	if err != nil {
		return err
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := sc.Delete(loserID, activeName(in.Journey, in.Key)); err != nil {
			return err
		}
		if sc.Get(survivor.ID, activeName(in.Journey, in.Key)) != nil {
			r.now = r.e.clock.Now()
			if err := r.finish(in, "merged", false); err != nil {
				return err
			}
			continue
		}
		in.ProfileID = survivor.ID
		if err := sc.Put(survivor.ID, activeName(in.Journey, in.Key), activeValue(in.ID, in.Version)); err != nil {
			return err
		}
		if err := r.save(in); err != nil {
			return err
		}
	}
	return r.mergeHistory(survivor.ID, loserID)
}

// mergeHistory moves what the engine keeps about a merged-away profile to
// the survivor, so that entry rules (reentry, cooldown), frequency caps and
// ad audience removals see one person.
func (r *run) mergeHistory(survivorID, loserID string) error {
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	type record struct {
		name string
		v    []byte
	}
	var moved []record
	err = sc.Scan(loserID, sidecarEntry, func(name string, v []byte) error {
		moved = append(moved, record{name, bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range moved {
		var rec entryRecord
		if err := decodeEntry(m.v, &rec); err != nil {
			return fmt.Errorf("decode journey entries of %s: %w", loserID, err)
		}
		if v := sc.Get(survivorID, m.name); v != nil {
			var kept entryRecord
			if err := decodeEntry(v, &kept); err != nil {
				return fmt.Errorf("decode journey entries of %s: %w", survivorID, err)
			}
			rec.Entries += kept.Entries
			if kept.LastEntered.After(rec.LastEntered) {
				rec.LastEntered = kept.LastEntered
			}
		}
		if err := sc.Put(survivorID, m.name, encodeEntry(rec)); err != nil {
			return err
		}
		if err := sc.Delete(loserID, m.name); err != nil {
			return err
		}
	}
	prefix := []byte(loserID + "\x00")
	sends := r.tx.Bucket(bucketSends)
	for _, kv := range withPrefix(sends, prefix) {
		if err := sends.Put(append([]byte(survivorID+"\x00"), kv[0][len(prefix):]...), kv[1]); err != nil {
			return err
		}
		if err := sends.Delete(kv[0]); err != nil {
			return err
		}
	}
	ads := r.tx.Bucket(bucketAdMembers)
	for _, a := range r.set.Policy.AdAudiences {
		k := []byte(a.Name + "\x00" + loserID)
		v := ads.Get(k)
		if v == nil {
			continue
		}
		if sk := []byte(a.Name + "\x00" + survivorID); ads.Get(sk) == nil {
			if err := ads.Put(sk, bytes.Clone(v)); err != nil {
				return err
			}
		}
		if err := ads.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// withPrefix copies out the keys and values of b that start with prefix,
// so the caller may change b while going through them.
func withPrefix(b *bbolt.Bucket, prefix []byte) [][2][]byte {
	var out [][2][]byte
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	}
	return out
}

// Erased implements profiles.TxProcessor: the person's instances end and
// the ad audiences journeys added them to are left.
func (r *run) Erased(p *profiles.Profile) error {
	r.now = r.e.clock.Now()
	r.hold(p)
	insts, err := r.activeOf(p.ID)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := r.finish(in, "erased", true); err != nil {
			return err
		}
	}
	// The person's send history (caps) goes too; the entry histories are
	// sidecars of the profile, which the erasure removes with it.
	sends := r.tx.Bucket(bucketSends)
	for _, kv := range withPrefix(sends, []byte(p.ID+"\x00")) {
		if err := sends.Delete(kv[0]); err != nil {
			return err
		}
	}
	return nil
}

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// activeValue is the value of an active entry: the instance id, then the
// version it runs, so that an event the instance's version does not react
// to need not load the instance.
func activeValue(id uint64, version string) []byte {
	return append(u64(id), version...)
}

func (r *run) activeOf(profileID string) ([]*Instance, error) {
	return r.activeFor(profileID, "")
}

// activeFor returns the live instances of a profile that an event of the
// name may move (all of them for ""): those whose journey version has a
// goal, exit_when or wait_for on it, and those whose version the entry
// does not say.
func (r *run) activeFor(profileID, event string) ([]*Instance, error) {
	sc, err := r.sidecars()
	if err != nil {
		return nil, err
	}
	var out []*Instance
	err = sc.Scan(profileID, sidecarActive, func(name string, v []byte) error {
		if len(v) < 8 {
			return fmt.Errorf("journey live instance %q of %s: %d-byte record", name, profileID, len(v))
		}
		if event != "" && len(v) > 8 {
			journey, _, _ := strings.Cut(name[len(sidecarActive):], "\x00")
			if j, err := r.e.version(r.tx, journey, string(v[8:])); err == nil && !j.reactsTo(event) {
				return nil
			}
		}
		in, err := r.load(binary.BigEndian.Uint64(v[:8]))
		if err != nil {
			return err
		}
		out = append(out, in)
		return nil
	})
	return out, err
}

func (r *run) load(id uint64) (*Instance, error) {
	v := r.tx.Bucket(bucketInstances).Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("journey instance %d: missing", id)
	}
	in := &Instance{}
	if err := decodeInstance(v, in); err != nil {
		return nil, fmt.Errorf("decode journey instance %d: %w", id, err)
	}
	return in, nil
}

func (r *run) save(in *Instance) error {
	v, err := encodeInstance(in)
	if err != nil {
		return fmt.Errorf("encode journey instance %d: %w", in.ID, err)
	}
	return r.tx.Bucket(bucketInstances).Put(u64(in.ID), v)
}

// view is the profile as conditions see it, with computed traits as this
// transaction left them.
func (r *run) view(p *profiles.Profile) (*rules.ProfileView, error) {
	if v, ok := r.views[p.ID]; ok {
		return v, nil
	}
	var v *rules.ProfileView
	if r.e.rules != nil {
		var err error
		if v, err = r.e.rules.ViewIn(r.tx, p, r.now); err != nil {
			return nil, err
		}
	} else {
		v = &rules.ProfileView{ID: p.ID, Traits: p.TraitValues(), Consent: p.ConsentValues(), CreatedAt: p.CreatedAt, LastSeenAt: p.LastSeenAt}
	}
	r.views[p.ID] = v
	return v, nil
}

func (r *run) eval(prg *rules.Program, in *rules.Input) bool {
	if prg == nil {
		return true
	}
	ok, err := prg.Bool(in)
	if err != nil {
		r.e.metrics.EvalErrors.Inc()
		return false
	}
	return ok
}

// Event implements profiles.TxProcessor: live instances of the profile see
// the event first (exit_when, goal, wait_for), then triggers start new ones.
func (r *run) Event(p *profiles.Profile, ev *profiles.Event) ([]*profiles.Event, error) {
	r.now = r.e.clock.Now()
	r.hold(p)
	if ev.Source != profiles.SourceCartera {
		r.received = ev.ReceivedAt
	}
	if !r.received.IsZero() {
		defer r.observeLatency(len(r.actions), ev)
	}
	delete(r.views, p.ID) // rules may have changed it since
	pv, err := r.view(p)
	if err != nil {
		return nil, err
	}
	evView := rules.ViewOf(ev)
	insts, err := r.activeFor(p.ID, evView.Name)
	if err != nil {
		return nil, err
	}
	for _, in := range insts {
		j, err := r.e.version(r.tx, in.Journey, in.Version)
		if err != nil {
			r.e.log.Error("journey instance left as is", "instance", in.ID, "err", err)
			continue
		}
		input := &rules.Input{Profile: pv, Event: evView, Trigger: in.Trigger.view(), Now: r.now}
		name := evView.Name
		if j.Goal != nil && !in.Converted && j.Goal.Event == name && r.eval(j.Goal.When, input) {
			in.Converted = true
			r.count(j.ID, "", "converted", 1)
			r.act(in, in.Step, ActGoal, "", GoalDetail{Event: name})
			if err := r.save(in); err != nil {
				return nil, err
			}
		}
		exited := false
		for _, c := range j.ExitWhen {
			if c.Event == name && r.eval(c.When, input) {
				if err := r.finish(in, "exit_when: "+name, !c.KeepAudiences); err != nil {
					return nil, err
				}
				exited = true
				break
			}
		}
		if exited {
			continue
		}
		s := j.Step(in.Step)
		if s != nil && s.Kind == StepWaitFor && s.For.Event == name && r.eval(s.For.When, input) {
			if err := r.clearTimer(in); err != nil {
				return nil, err
			}
			r.count(j.ID, s.ID, "waiting", -1)
			if err := r.advance(p, j, in, s.OnEvent); err != nil {
				return nil, err
			}
		}
	}
	candidates := r.set.byEvent[evView.Name]
	if len(candidates) == 0 {
		return nil, nil
	}
	// One input for every trigger condition: entering a journey changes
	// nothing a condition reads (the profile view, the event, now), so
	// identical conditions of several journeys are evaluated once.
	in := &rules.Input{Profile: pv, Event: evView, Now: r.now}
	clear(r.memo)
	for _, j := range candidates {
		if !r.triggers(j, ev, evView, in) {
			continue
		}
		if err := r.enter(p, j, ev); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// observeLatency notes the latencies of the actions an event caused, the
// actions from index before on.
func (r *run) observeLatency(before int, ev *profiles.Event) {
	if len(r.actions) == before {
		return
	}
	r.latencies = append(r.latencies, latency{received: r.received})
	if ev.Type == profiles.TypeTrack && ev.Event == eventOrderCompleted {
		for _, a := range r.actions[before:] {
			if a.Action == ActExit || a.Action == ActAudienceRemove {
				r.latencies = append(r.latencies, latency{received: r.received, purchase: true})
				break
			}
		}
	}
}

func (r *run) triggers(j *Journey, ev *profiles.Event, v *rules.EventView, in *rules.Input) bool {
	t := j.Trigger
	switch {
	case t.Event != "":
		if t.Event != v.Name {
			return false
		}
		if t.When == nil {
			return true
		}
		if len(t.conjuncts) == 0 {
			return r.evalOnce(t.When, in)
		}
		// Part by part, left to right, as && would: the first false
		// part decides (an error counts as false, as for the whole).
		for _, c := range t.conjuncts {
			if !r.evalOnce(c, in) {
				return false
			}
		}
		return true
	case t.AudienceEnter != "":
		return v.Name == rules.EventAudienceEntered && ev.Properties["audience"] == t.AudienceEnter
	case t.AudienceExit != "":
		return v.Name == rules.EventAudienceExited && ev.Properties["audience"] == t.AudienceExit
	}
	return false
}

// evalOnce evaluates a trigger condition, or part of one, once per event.
func (r *run) evalOnce(prg *rules.Program, in *rules.Input) bool {
	if ok, seen := r.memo[prg.Source]; seen {
		return ok
	}
	ok := r.eval(prg, in)
	if r.memo == nil {
		r.memo = map[string]bool{}
	}
	r.memo[prg.Source] = ok
	return ok
}

// entryRecord is a profile's history with one journey.
type entryRecord struct {
	LastEntered time.Time `json:"last_entered"`
	Entries     int       `json:"entries"`
}

// enter starts an instance if the entry rules allow it.
func (r *run) enter(p *profiles.Profile, j *Journey, ev *profiles.Event) error {
	pv, err := r.view(p)
	if err != nil {
		return err
	}
	trig := &TriggerRecord{Timestamp: r.now}
	if ev != nil {
		trig = &TriggerRecord{Name: rules.ViewOf(ev).Name, Type: ev.Type, Source: ev.Source, MessageID: ev.MessageID, Properties: ev.Properties, Timestamp: ev.Timestamp}
	}
	key := ""
	if j.Entry.Key != nil {
		out, err := j.Entry.Key.Eval(&rules.Input{Profile: pv, Event: trig.view(), Trigger: trig.view(), Now: r.now})
		if err != nil {
			r.e.metrics.EvalErrors.Inc()
			return nil
		}
		key, _ = out.Value().(string)
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	if sc.Get(p.ID, activeName(j.ID, key)) != nil {
		return nil // at most one live instance per profile (and key)
	}
	var rec entryRecord
	if v := sc.Get(p.ID, entryName(j.ID)); v != nil {
		if err := decodeEntry(v, &rec); err != nil {
			return err
		}
		if !j.Entry.Reentry {
			return nil
		}
		if j.Entry.Cooldown > 0 && r.now.Before(rec.LastEntered.Add(j.Entry.Cooldown)) {
			return nil
		}
	}
	rec.LastEntered, rec.Entries = r.now, rec.Entries+1
	if err := sc.Put(p.ID, entryName(j.ID), encodeEntry(rec)); err != nil {
		return err
	}
	seq, err := r.tx.Bucket(bucketInstances).NextSequence()
	if err != nil {
		return err
	}
	in := &Instance{ID: seq, Journey: j.ID, Version: j.Version, ProfileID: p.ID, Key: key, Trigger: trig, EnteredAt: r.now}
	if err := sc.Put(p.ID, activeName(j.ID, key), activeValue(seq, j.Version)); err != nil {
		return err
	}
	r.count(j.ID, "", "entered", 1)
	r.act(in, "", ActEnter, "", EnterDetail{Key: key, Trigger: trig.Name, Version: j.Version})
	return r.advance(p, j, in, j.Steps[0].ID)
}

// maxStepsPerRun bounds the steps one run takes without waiting (the
// validator already refuses loops with no wait).
const maxStepsPerRun = 100

// advance runs an instance from a step until it waits or ends.
func (r *run) advance(p *profiles.Profile, j *Journey, in *Instance, stepID string) error {
	r.hold(p)
	for range maxStepsPerRun {
		if stepID == "" {
			return r.finish(in, "completed", false)
		}
		s := j.Step(stepID)
		if s == nil {
			return r.finish(in, "unknown step "+stepID, false)
		}
		in.Step = s.ID
		if in.Steps == nil {
			in.Steps = map[string]int{}
		}
		in.Steps[s.ID]++
		r.count(j.ID, s.ID, "entered", 1)
		next, wait, err := r.step(p, j, in, s)
		if err != nil {
			return err
		}
		if wait {
			r.count(j.ID, s.ID, "waiting", 1)
			return r.save(in)
		}
		if s.Kind == StepExit {
			return r.finish(in, "exit step", false)
		}
		stepID = next
	}
	return r.finish(in, "too many steps without a wait", false)
}

// step executes one step; wait says the instance now waits on a timer.
func (r *run) step(p *profiles.Profile, j *Journey, in *Instance, s *Step) (next string, wait bool, err error) {
	pv, err := r.view(p)
	if err != nil {
		return "", false, err
	}
	input := &rules.Input{Profile: pv, Trigger: in.Trigger.view(), Now: r.now}
	switch s.Kind {
	case StepSend:
		return r.send(p, pv, j, in, s, time.Time{})
	case StepWait:
		due := r.now.Add(s.Wait)
		if s.WaitUntil != "" {
			due = nextLocal(r.now.Add(s.Wait), s.WaitUntil, r.set.Policy.location(pv.Traits))
		}
		return "", true, r.setTimer(in, due)
	case StepWaitFor:
		return "", true, r.setTimer(in, r.now.Add(s.Timeout))
	case StepBranch:
		for _, c := range s.Cases {
			if c.When == nil || r.eval(c.When, input) {
				return c.Next, false, nil
			}
		}
		return "", false, nil
	case StepSplit:
		h := sha256.Sum256(fmt.Appendf(nil, "%d/%s", in.ID, s.ID))
		roll := int(binary.BigEndian.Uint32(h[:4]) % 100)
		for _, v := range s.Variants {
			if roll < v.Percent {
				in.Variant = v.Name
				r.count(j.ID, s.ID, "variant:"+v.Name, 1)
				return v.Next, false, nil
			}
			roll -= v.Percent
		}
		return "", false, nil
	case StepAudience:
		if s.Add != "" {
			if reason := r.consent(pv, "audience"); reason != "" {
				r.count(j.ID, s.ID, "suppressed", 1)
				r.act(in, s.ID, ActSuppressed, "audience", SuppressedDetail{Audience: s.Add, Reason: reason})
				return s.Next, false, nil
			}
			if r.identifiersOf(p.ID) == nil {
				r.count(j.ID, s.ID, "suppressed", 1)
				r.act(in, s.ID, ActSuppressed, "audience", SuppressedDetail{Audience: s.Add, Reason: ReasonNoIdentifiers})
				return s.Next, false, nil
			}
			if err := r.tx.Bucket(bucketAdMembers).Put([]byte(s.Add+"\x00"+p.ID), []byte(j.ID)); err != nil {
				return "", false, err
			}
			if !slices.Contains(in.Audiences, s.Add) {
				in.Audiences = append(in.Audiences, s.Add)
			}
			r.count(j.ID, s.ID, "sent", 1)
			return s.Next, false, r.outbox(in, s.ID, ActAudienceAdd, "audience", AudienceDetail{Audience: s.Add})
		}
		in.Audiences = slices.DeleteFunc(in.Audiences, func(a string) bool { return a == s.Remove })
		ads, member := r.tx.Bucket(bucketAdMembers), []byte(s.Remove+"\x00"+p.ID)
		if ads.Get(member) == nil {
			// Not in the audience (an add held back for consent, or a
			// removal already made): nothing to tell the ad platforms.
			return s.Next, false, nil
		}
		if err := ads.Delete(member); err != nil {
			return "", false, err
		}
		if r.identifiersOf(p.ID) == nil {
			r.count(j.ID, s.ID, "suppressed", 1)
			r.act(in, s.ID, ActSuppressed, "audience", SuppressedDetail{Audience: s.Remove, Reason: ReasonNoIdentifiers})
			return s.Next, false, nil
		}
		r.count(j.ID, s.ID, "sent", 1)
		return s.Next, false, r.outbox(in, s.ID, ActAudienceRemove, "audience", AudienceDetail{Audience: s.Remove})
	case StepSetTrait:
		var value any
		if s.Value != nil {
			out, err := s.Value.Eval(input)
			if err != nil {
				r.e.metrics.EvalErrors.Inc()
				return s.Next, false, nil
			}
			value = out.Value()
		}
		return s.Next, false, r.outbox(in, s.ID, ActSetTrait, "", TraitDetail{Trait: s.Trait, Value: jsonable(value)})
	case StepPass:
		fields := map[string]any{}
		for name, prg := range s.Fields {
			if out, err := prg.Eval(input); err == nil {
				fields[name] = jsonable(out.Value())
			} else {
				r.e.metrics.EvalErrors.Inc()
			}
		}
		detail := PassDetail{Push: s.Push}
		if len(fields) > 0 {
			detail.Fields = fields
		}
		if s.Push != "" {
			if reason := r.consent(pv, "push"); reason != "" {
				detail.Push, detail.PushSuppressed = "", reason
			}
		}
		r.count(j.ID, s.ID, "sent", 1)
		return s.Next, false, r.outbox(in, s.ID, ActPassUpdate, "wallet", detail)
	case StepExit:
		return "", false, nil
	}
	return "", false, fmt.Errorf("step %s: unknown kind %q", s.ID, s.Kind)
}

// jsonable turns CEL results into plain JSON values.
func jsonable(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	}
	return v
}

// consent says why a channel may not be used for the person ("" if it may).
func (r *run) consent(pv *rules.ProfileView, channel string) string {
	purpose := purposeOf(channel)
	if purpose == "" || !slices.Contains(r.set.Policy.ConsentRequired, purpose) {
		return ""
	}
	if !pv.Consent[purpose] {
		return "consent: no " + purpose + " consent"
	}
	return ""
}

// policy applies consent, quiet hours, suppressions, priorities and caps
// to a send; it returns why the send is held back (a zero hold: it may go).
func (r *run) policy(p *profiles.Profile, pv *rules.ProfileView, j *Journey, channel string) hold {
	pol := r.set.Policy
	if reason := r.consent(pv, channel); reason != "" {
		return hold{reason: reason}
	}
	if j.Category == "transactional" {
		return hold{}
	}
	if loc := pol.location(pv.Traits); pol.Quiet.holds(channel, r.now.In(loc)) {
		return hold{reason: fmt.Sprintf("quiet_hours: %s-%s", pol.Quiet.Start, pol.Quiet.End), kind: holdQuiet,
			until: pol.Quiet.release(r.now, loc, p.ID)}
	}
	for _, s := range pol.Suppress {
		if r.eval(s.When, &rules.Input{Profile: pv, Now: r.now}) {
			return hold{reason: "suppression: " + s.Name}
		}
	}
	sends := r.tx.Bucket(bucketSends).Cursor()
	for _, c := range pol.Caps {
		if c.Channel != "any" && c.Channel != channel {
			continue
		}
		if n := r.sendsSince(sends, p.ID, c.Channel, r.now.Add(-c.Per), nil); n >= c.Max {
			return hold{reason: "frequency_cap: " + c.String(), kind: holdCap, until: r.capRelease(sends, p.ID, c)}
		}
	}
	if pol.PriorityWindow > 0 {
		higher := func(other string) bool {
			oj := r.set.Journey(other)
			return oj != nil && oj.ID != j.ID && oj.Priority > j.Priority
		}
		if n := r.sendsSince(sends, p.ID, channel, r.now.Add(-pol.PriorityWindow), higher); n > 0 {
			return hold{reason: "priority: a journey of higher priority sent on " + channel}
		}
	}
	return hold{}
}

// sendsSince counts a person's sends on a channel ("any": all) after since,
// by journeys match accepts (nil: all).
func (r *run) sendsSince(c *bbolt.Cursor, profileID, channel string, since time.Time, match func(journey string) bool) int {
	if channel != "any" {
		return countSince(c, []byte(profileID+"\x00"+channel+"\x00"), since, match)
	}
	// Every channel of the person: seek into each channel's records at
	// since, then on to the next channel, so a person's old sends are
	// never read.
	person := []byte(profileID + "\x00")
	n := 0
	for k, _ := c.Seek(person); k != nil && bytes.HasPrefix(k, person); {
		ch, _, ok := bytes.Cut(k[len(person):], []byte{0})
		if !ok {
			k, _ = c.Next()
			continue
		}
		prefix := append(bytes.Clone(person), ch...)
		prefix = append(prefix, 0)
		n += countSince(c, prefix, since, match)
		// Past the last possible key of this channel.
		k, _ = c.Seek(append(prefix[:len(prefix)-1:len(prefix)-1], 1))
	}
	return n
}

// countSince counts the send records under prefix made after since that
// match, reading only those.
func countSince(c *bbolt.Cursor, prefix []byte, since time.Time, match func(journey string) bool) int {
	from := append(bytes.Clone(prefix), u64(uint64(max(since.UnixNano()+1, 0)))...)
	n := 0
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) == len(prefix)+16 && (match == nil || match(string(v))) {
			n++
		}
	}
	return n
}

// recordSend notes a send for caps and priorities. The sequence keeps
// sends made at the same instant (two journeys answering one event) apart.
func (r *run) recordSend(profileID, channel, journey string) error {
	b := r.tx.Bucket(bucketSends)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	k := append([]byte(profileID+"\x00"+channel+"\x00"), u64(uint64(r.now.UnixNano()))...)
	return b.Put(append(k, u64(seq)...), []byte(journey))
}

// outbox records an action that must reach the outside world, once: its
// idempotency key is (journey, version, instance, step, run of the step).
func (r *run) outbox(in *Instance, step, action, channel string, detail Detail) error {
	key := fmt.Sprintf("%s/%s/%d/%s/%d", in.Journey, in.Version, in.ID, step, in.Steps[step])
	keys := r.tx.Bucket(bucketOutboxKey)
	if keys.Get([]byte(key)) != nil {
		return nil // already recorded: a replay is a no-op
	}
	a := *r.act(in, step, action, channel, detail)
	a.Key = key
	if action == ActAudienceAdd || action == ActAudienceRemove {
		a.Identifiers = r.identifiersOf(in.ProfileID)
	}
	if action == ActSend && in.Trigger != nil {
		a.Trigger = in.Trigger.Properties
	}
	r.actions[len(r.actions)-1].Key = key
	ob := r.tx.Bucket(bucketOutbox)
	seq, err := ob.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode action: %w", err)
	}
	if err := ob.Put(u64(seq), v); err != nil {
		return err
	}
	return keys.Put([]byte(key), u64(seq))
}

func (r *run) act(in *Instance, step, action, channel string, detail Detail) *Action {
	r.actions = append(r.actions, Action{At: r.now.UTC(), Profile: in.ProfileID, Journey: in.Journey, Step: step, Action: action, Channel: channel, Detail: detail})
	return &r.actions[len(r.actions)-1]
}

// finish ends an instance; removeAudiences takes the person out of the ad
// audiences this instance added.
func (r *run) finish(in *Instance, reason string, removeAudiences bool) error {
	if in.Done {
		return nil
	}
	waiting := in.Timer != nil
	if err := r.clearTimer(in); err != nil {
		return err
	}
	if removeAudiences {
		for _, a := range in.Audiences {
			if err := r.tx.Bucket(bucketAdMembers).Delete([]byte(a + "\x00" + in.ProfileID)); err != nil {
				return err
			}
			if in.Steps == nil {
				in.Steps = map[string]int{}
			}
			in.Steps["exit:"+a]++
			if r.identifiersOf(in.ProfileID) == nil {
				r.act(in, in.Step, ActSuppressed, "audience", SuppressedDetail{Audience: a, Reason: ReasonNoIdentifiers})
				continue
			}
			if err := r.outbox(in, "exit:"+a, ActAudienceRemove, "audience", AudienceDetail{Audience: a, Reason: reason}); err != nil {
				return err
			}
			// Shown at the step the instance stood on.
			r.actions[len(r.actions)-1].Step = in.Step
		}
		in.Audiences = nil
	}
	if waiting {
		r.count(in.Journey, in.Step, "waiting", -1)
	}
	in.Done = true
	// The trigger event is the person's data and no condition reads it
	// again: an ended instance does not keep it (nor does an erasure
	// leave it behind).
	in.Trigger = nil
	r.count(in.Journey, in.Step, "exited", 1)
	// The split arm the person took is visible even for a control group
	// that gets nothing.
	r.act(in, in.Step, ActExit, "", ExitDetail{Reason: reason, Variant: in.Variant})
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	if err := sc.Delete(in.ProfileID, activeName(in.Journey, in.Key)); err != nil {
		return err
	}
	return r.save(in)
}

func timerKey(due time.Time, id uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(due.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

func (r *run) setTimer(in *Instance, due time.Time) error {
	k := timerKey(due, in.ID)
	if err := r.tx.Bucket(bucketTimers).Put(k, []byte("i")); err != nil {
		return err
	}
	in.Timer = k
	return nil
}

func (r *run) clearTimer(in *Instance) error {
	if in.Timer == nil {
		return nil
	}
	if err := r.tx.Bucket(bucketTimers).Delete(in.Timer); err != nil {
		return err
	}
	in.Timer = nil
	return nil
}

// count adds to a per-step counter (step "" is the journey as a whole).
// Counters are kept in memory for the transaction and written by Flush.
func (r *run) count(journey, step, what string, delta int64) {
	k := journey + "\x00" + step + "\x00" + what
	n, ok := r.counts[k]
	if !ok {
		if v := r.tx.Bucket(bucketCounts).Get([]byte(k)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
	}
	if r.counts == nil {
		r.counts = map[string]int64{}
	}
	r.counts[k] = max(n+delta, 0)
}

// NextDue returns when the earliest timer is due.
func (e *Engine) NextDue() (time.Time, bool) {
	var due time.Time
	ok := false
	_ = e.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketTimers).Cursor().First(); k != nil {
			due, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(), true
		}
		return nil
	})
	return due, ok
}

// FireDue runs the timers due at or before now, in due order, up to limit
// of them in one transaction; it returns how many it fired. A timer fires
// in the same commit that removes it, so a crash neither loses nor doubles
// one.
func (e *Engine) FireDue(ctx context.Context, st *profiles.Store, now time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err // a shutdown: the timers stay for the restart
	}
	var r *run
	n := 0
	err := e.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		r = e.Begin(tx).(*run)
		r.now = now
		timers := tx.Bucket(bucketTimers)
		for n < limit {
			k, v := timers.Cursor().First()
			if k == nil || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			k, v = bytes.Clone(k), bytes.Clone(v)
			if err := timers.Delete(k); err != nil {
				return err
			}
			n++
			if len(v) > 0 && v[0] == 's' {
				more, err := r.schedule(string(v[1:]), k)
				if err != nil {
					return err
				}
				if more {
					// A page of a cron tick's audience is a transaction
					// of its own: commit it, and let ingestion in, before
					// the next.
					break
				}
				continue
			}
			if err := r.fire(k, v); err != nil {
				return err
			}
		}
		return r.Flush()
	})
	if r != nil {
		r.Done(err == nil)
	}
	if err != nil {
		return 0, fmt.Errorf("fire journey timers: %w", err)
	}
	return n, nil
}

// fire moves an instance past the wait its timer ended, or releases the
// send it delayed (v, the timer's value, says which).
func (r *run) fire(k, v []byte) error {
	in, err := r.load(binary.BigEndian.Uint64(k[8:]))
	if err != nil {
		r.e.log.Error("journey timer without instance", "err", err)
		return nil
	}
	if in.Done || !bytes.Equal(in.Timer, k) {
		return nil // stale: the instance moved on or ended
	}
	in.Timer = nil
	r.count(in.Journey, in.Step, "waiting", -1)
	j, err := r.e.version(r.tx, in.Journey, in.Version)
	if err != nil {
		// The version cannot run any more (it names what the rules or the
		// policies no longer declare): the instance ends, rather than stay
		// live with no timer and keep the person out of the journey.
		r.e.log.Error("journey instance ended: its version cannot run", "instance", in.ID, "err", err)
		return r.finish(in, "version unavailable", false)
	}
	p, err := profiles.ReadProfile(r.tx, in.ProfileID)
	if errors.Is(err, profiles.ErrNotFound) {
		return r.finish(in, "profile gone", true)
	} else if err != nil {
		return err
	}
	s := j.Step(in.Step)
	next := ""
	switch {
	case s != nil && s.Kind == StepSend && isDelay(v):
		return r.release(p, j, in, s, v)
	case s == nil:
	case s.Kind == StepWaitFor:
		next = s.OnTimeout
	default:
		next = s.Next
	}
	return r.advance(p, j, in, next)
}

// Run fires timers as they fall due until ctx ends.
func (e *Engine) Run(ctx context.Context, st *profiles.Store) {
	for ctx.Err() == nil {
		wait := time.Minute
		if due, ok := e.NextDue(); ok {
			wait = max(due.Sub(e.clock.Now()), 0)
		}
		if wait == 0 {
			if _, err := e.FireDue(ctx, st, e.clock.Now(), 500); err != nil {
				e.log.Error("journey timers", "err", err)
				wait = time.Second
			} else {
				continue
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
