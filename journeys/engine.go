package journeys

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
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
//	sidecar "t" of a profile → engagement by local hour, for best times (besttime.go): codec.Format1, 24 counters
//	sidecar "e" 0x00 journey id of a profile → entry history (re-entry, cooldown): codec.Format1 binary, JSON from
//	                   earlier versions; earlier versions kept these in a bucket journey_entries
//	journey_counters   journey id → the journey's counters, one value (counters.go)
//	journey_defs       journey id 0x00 version → journey file bytes (instances finish on their version)
//	journey_outbox     sequence (8) → JSON Action awaiting delivery
//	journey_outbox_keys idempotency key → sequence: a step's effect is recorded once
//	journey_sends      profile id 0x00 channel 0x00 unix nanos (8) | sequence (8) → journey id (caps, priorities)
//	journey_ad_members audience 0x00 profile id → the ids of the instances holding the person there (adhold.go)
//	journey_schedules  journey id → JSON schedule record: the cron spec armed, the due of its one
//	                   timer, and the progress of a tick being enrolled page by page (schedule.go)
//	journey_history    profile id → the person's latest actions and decisions (history.go)
var (
	bucketInstances = []byte("journey_instances")
	bucketOldActive = []byte("journey_active")
	bucketTimers    = []byte("journey_timers")
	bucketOldEntry  = []byte("journey_entries")
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
	// expGoals are the goal events of journeys with experiments (splits,
	// or the holdout): only these look at a person's assignments.
	expGoals map[string]bool
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
	s.expGoals = experimentGoalEvents(js, s.Policy)
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
	// Rand draws the arms of adaptive splits (nil: seeded from
	// crypto/rand); tests and simulate pass a seeded one.
	Rand mrand.Source
	// Fence, when set, is asked before the engine commits work of its
	// own (timers firing) and before it hands actions to the outside
	// world (DrainOutboxTo): an error stops that work. A cluster node
	// sets it to its lease of the partition the engine's file holds
	// (profiles.ErrFenced once another node may hold it). Processing
	// events needs none: the store's commit of a partition is fenced.
	Fence func() error
}

// Engine runs journeys durably. It is a profiles.Processor (after the rules
// engine): triggers, wait_for and exit_when are evaluated in the commit of
// the event; timers fire from FireDue.
type Engine struct {
	db      *bbolt.DB
	set     atomic.Pointer[Set]
	clock   Clock
	log     *slog.Logger
	evalLog evalLog
	metrics *Metrics
	rules   *rules.Engine
	opts    Options

	mu        sync.Mutex
	versions  map[string]*Journey
	observers []func([]Action)
	wake      chan struct{}
	draws     *draws
}

// New creates the engine's buckets and starts with set.
func New(db *bbolt.DB, set *Set, opts Options) (*Engine, error) {
	e := &Engine{db: db, clock: opts.Clock, log: opts.Logger, metrics: opts.Metrics, rules: opts.Rules, opts: opts,
		versions: map[string]*Journey{}, wake: make(chan struct{}, 1), draws: newDraws(opts.Rand)}
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
		for _, b := range [][]byte{bucketInstances, bucketTimers, bucketCounters, bucketDefs, bucketOutbox, bucketOutboxKey, bucketSends, bucketAdMembers, bucketSchedules, bucketExperiments, bucketHourly, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := upgrade(db, e.log); err != nil {
		return nil, err
	}
	if err := e.Replace(set); err != nil {
		return nil, err
	}
	return e, nil
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
	// counts are the counters this transaction read and changed, written
	// by Flush (counters.go).
	counts tallies
	// trial is its experiment state (experiment.go).
	trial
	// memo holds the trigger conditions evaluated for the current event,
	// by source.
	memo map[string]memoResult
	// people are the profiles this run was handed, as the commit holds
	// them (see identifiersOf).
	people map[string]*profiles.Profile
	// leaving says whether a person is moving out of this file
	// (profiles.Store.Leaving; nil: none is).
	leaving func(profileID string) bool
	journal
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

// Flush implements profiles.TxProcessor: the assignments, histories and
// counters are written; everything else is written as it goes.
func (r *run) Flush() error {
	if err := r.flushAssignments(); err != nil {
		return err
	}
	if err := r.flushHistory(); err != nil {
		return err
	}
	return r.flushCounters()
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
	if speaksOfConsent(ev) && r.consent(pv, "audience") != "" {
		// Ads consent withdrawn: out of every ad audience at once.
		if err := r.dropAudiences(p, "ads consent withdrawn"); err != nil {
			return nil, err
		}
	}
	evView := rules.ViewOf(ev)
	if err := r.learnSendHour(p, ev, evView.Name, pv); err != nil {
		return nil, err
	}
	insts, err := r.activeFor(p.ID, evView.Name)
	if err != nil {
		return nil, err
	}
	var converted map[string]bool // journeys whose instance this event converted
	for _, in := range insts {
		j, err := r.e.version(r.tx, in.Journey, in.Version)
		if err != nil {
			r.e.log.Error("journey instance left as is", "instance", in.ID, "err", err)
			continue
		}
		input := &rules.Input{Profile: pv, Event: evView, Trigger: in.Trigger.view(), Now: r.now}
		name := evView.Name
		if j.Goal != nil && !in.Converted && j.Goal.Event == name && (j.Goal.Within == 0 || !r.now.After(in.EnteredAt.Add(j.Goal.Within))) &&
			r.eval(j.Goal.When, input, j, in.Step, "goal.when") {
			in.Converted = true
			if converted == nil {
				converted = map[string]bool{}
			}
			converted[j.ID] = true
			r.count(j.ID, "", "converted", 1)
			// Revenue attributed to the journey: the goal event's, in
			// cents (counters are integers).
			if rev, ok := revenueOf(ev); ok {
				r.count(j.ID, "", "revenue_cents", int64(math.Round(rev*100)))
			}
			r.act(in, in.Step, ActGoal, "", GoalDetail{Event: name, Variant: in.Variant})
			if err := r.save(in); err != nil {
				return nil, err
			}
		}
		exited := false
		for _, c := range j.ExitWhen {
			if c.Event == name && r.eval(c.When, input, j, in.Step, "exit_when.when") {
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
		if s != nil && s.Kind == StepWaitFor && s.For.Event == name && r.eval(s.For.When, input, j, s.ID, "steps."+s.ID+".wait_for.when") {
			if err := r.clearTimer(in); err != nil {
				return nil, err
			}
			r.count(j.ID, s.ID, "waiting", -1)
			r.decide(in, s.ID, DecisionWaitFor, name+" came")
			if err := r.advance(p, j, in, s.OnEvent); err != nil {
				return nil, err
			}
		}
	}
	if err := r.experimentGoals(p, ev, evView.Name, pv, converted); err != nil {
		return nil, err
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
