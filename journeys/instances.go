package journeys

// Instances: how a journey run is stored (records, live-instance sidecars,
// entry histories), entered, recorded and ended.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cartera/profiles"
	"cartera/rules"
)

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
		if errors.Is(err, errNoInstance) || (err == nil && in.ProfileID != profileID) {
			// A sidecar of another file's instance, carried with a
			// profile merged in from another partition by a version that
			// did not move instances (move.go): not this person's.
			journey, _, _ := strings.Cut(name[len(sidecarActive):], "\x00")
			r.e.log.Warn("journey live-instance record of a profile points at no instance of theirs; ignored", "profile", profileID, "journey", journey)
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, in)
		return nil
	})
	return out, err
}

// errNoInstance is a journey instance a record names and the file lacks.
var errNoInstance = errors.New("missing")

func (r *run) load(id uint64) (*Instance, error) {
	v := r.tx.Bucket(bucketInstances).Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("journey instance %d: %w", id, errNoInstance)
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
		kin := &rules.Input{Profile: pv, Event: trig.view(), Trigger: trig.view(), Now: r.now}
		out, err := j.Entry.Key.Eval(kin)
		if err != nil {
			r.evalError(j.Entry.Key, kin, err, j, "", "entry.key")
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
	if out, err := r.heldOut(p.ID, j); out || err != nil {
		return err // the global holdout: recorded, not entered
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

// outbox records an action that must reach the outside world, once: its
// idempotency key is (journey, version, instance, step, run of the step,
// profile). Instance numbers count per store file, so in a cluster, where
// each partition has a file of its own, two people's instances can share
// one: the profile id makes the key the cluster's alone (receivers dedupe
// on it). The instance comes first: pruning finds an instance's keys by
// that prefix, in this layout and the one before it, which ended at the
// run.
func (r *run) outbox(in *Instance, step, action, channel string, detail Detail) error {
	key := fmt.Sprintf("%s/%s/%d/%s/%d/%s", in.Journey, in.Version, in.ID, step, in.Steps[step], in.ProfileID)
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
	r.note(in.ProfileID, HistoryEntry{At: r.now.UTC(), Journey: in.Journey, Instance: in.ID, Step: step, Action: action, Channel: channel, Detail: detail, Why: r.why})
	r.why = ""
	r.countAction(in, step, action, detail)
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
	for _, a := range slices.Clone(in.Audiences) {
		if !removeAudiences {
			// keep_audiences: the person stays in, held for no live
			// instance, until a removal lets them go.
			if err := r.orphanHold(a, in); err != nil {
				return err
			}
			continue
		}
		if in.Steps == nil {
			in.Steps = map[string]int{}
		}
		in.Steps["exit:"+a]++
		if err := r.audienceRelease(in, in.Step, "exit:"+a, a, reason); err != nil {
			return err
		}
	}
	in.Audiences = nil
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

// revenueOf is an event's revenue property (Segment's e-commerce spec), as
// a number.
func revenueOf(ev *profiles.Event) (float64, bool) {
	switch v := ev.Properties["revenue"].(type) {
	case float64:
		return v, true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}
