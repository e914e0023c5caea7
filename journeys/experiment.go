package journeys

// Experiments: sticky split assignments, the global holdout, and the
// counters their results are computed from (stats.go).
//
// An assignment is a person's arm in one experiment of one journey. It is
// drawn once, from a hash of (profile id, journey id, experiment name), and
// kept beside the profile, so re-entries, restarts and edits of the other
// steps never move a person to another arm; a merge keeps the survivor's
// and records the other in a ledger. Conversions are counted per
// assignment, not per instance: a person counts as converted when the
// journey's goal event reaches them within the experiment's window of their
// assignment, whether their instance still lives or not. So a control arm,
// whose instance ends at once, is measured exactly as the others are.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"cartera/internal/codec"
	"cartera/profiles"
	"cartera/rules"
)

// A person's assignments are one record beside the profile
// (assignments.go); the experiments' counters (assigned, converted,
// revenue_cents by variant) are in their journey's tally (counters.go).
// Bucket journey_experiments holds the assignments' layout mark
// (migrate.go); earlier versions kept the counters there, a key each:
// journey id 0x00 experiment 0x00 variant 0x00 counter → 8-byte
// big-endian count.
var bucketExperiments = []byte("journey_experiments")

// DefaultExperimentWindow is how long after their assignment a person's
// goal event counts for an experiment when the journey's goal has no
// within.
const DefaultExperimentWindow = 7 * 24 * time.Hour

// Holdout arms: a held-out person is in HoldoutVariant of the holdout's
// experiment, everyone who entered in TreatedVariant.
const (
	HoldoutVariant = "holdout"
	TreatedVariant = "treated"
)

// holdoutExperiment is the experiment name the holdout's records use: the
// "@" keeps it apart from split experiments (lower_snake_case names).
func holdoutExperiment(name string) string { return "@" + name }

// ExperimentName is the split step's experiment: its experiment field, or
// its id.
func (s *Step) ExperimentName() string {
	if s.Experiment != "" {
		return s.Experiment
	}
	return s.ID
}

// split reads a split step: a list of variants, or a mapping with
// experiment and variants.
func (p *parser) split(s *Step, v *yaml.Node) {
	f := p.f
	list := v
	if v.Kind == yaml.MappingNode {
		list = nil
		f.Mapping(v, "split", func(key string, k, v *yaml.Node) {
			switch key {
			case "experiment":
				s.Experiment = f.String(v, "split.experiment")
				if !validID(s.Experiment) {
					f.Errorf(v, "split.experiment: want lower_snake_case, got %q", s.Experiment)
				}
			case "variants":
				list = v
			case "allocation":
				s.Allocation = allocation(f, v)
			default:
				f.Errorf(k, "split: unknown field %q: want experiment, allocation or variants", key)
			}
		})
		if list == nil {
			f.Errorf(v, "split: variants are required")
			return
		}
	}
	total, controls := 0, 0
	names := map[string]bool{}
	f.Sequence(list, "split", func(item *yaml.Node) {
		var vr Variant
		f.Mapping(item, "split variant", func(key string, k, v *yaml.Node) {
			switch key {
			case "name":
				vr.Name = f.String(v, "split.name")
			case "percent":
				vr.Percent = f.Int(v, "split.percent")
			case "next":
				vr.Next = f.String(v, "split.next")
			case "control":
				vr.Control = f.Bool(v, "split.control")
			default:
				f.Errorf(k, "split: unknown field %q: want name, percent, next or control", key)
			}
		})
		switch {
		case !validID(vr.Name):
			f.Errorf(item, "split variant: name must be lower_snake_case, got %q", vr.Name)
		case names[vr.Name]:
			f.Errorf(item, "split variant %q declared twice", vr.Name)
		case vr.Percent < 1:
			f.Errorf(item, "split variant %s: percent must be at least 1, got %d", vr.Name, vr.Percent)
		case vr.Next == "" && !vr.Control:
			f.Errorf(item, "split variant %s: next is required (only a control may end the journey)", vr.Name)
		}
		names[vr.Name] = true
		if vr.Control {
			controls++
		}
		total += vr.Percent
		s.Variants = append(s.Variants, vr)
	})
	if len(s.Variants) < 2 {
		f.Errorf(list, "split: want two or more variants, got %d", len(s.Variants))
	}
	if controls > 1 {
		f.Errorf(list, "split: want at most one control variant, got %d", controls)
	}
	if total != 100 {
		f.Errorf(list, "split: percentages add up to %d, want 100", total)
	}
	for i := range s.Variants {
		s.Variants[i].why = splitWhy(s, s.Variants[i])
	}
}

// assignment is a person's arm in one experiment.
type assignment struct {
	Variant      string
	At           time.Time
	Converted    bool
	RevenueCents int64
}

// decodeAssignment reads an assignment of the layout before the record
// (codec.Format1: variant, assigned at, converted, revenue in cents).
func decodeAssignment(v []byte) (assignment, error) {
	if len(v) == 0 || v[0] != codec.Format1 {
		return assignment{}, fmt.Errorf("experiment assignment: unknown format")
	}
	r := codec.NewReader(v[1:])
	a := assignment{Variant: r.String(), At: r.Time(), Converted: r.Bool(), RevenueCents: r.Varint()}
	return a, r.Done()
}

// roll is a person's fixed point in [0, 10000) for one experiment.
func roll(profileID, journey, experiment string) int {
	// Hashed from a buffer on the stack: no allocation for ids of
	// ordinary length.
	var buf [160]byte
	b := append(buf[:0], profileID...)
	b = append(b, 0)
	b = append(b, journey...)
	b = append(b, 0)
	b = append(b, experiment...)
	h := sha256.Sum256(b)
	return int(binary.BigEndian.Uint64(h[:8]) % 10000)
}

// pick is the variant a roll falls in.
func pick(variants []Variant, at int) Variant {
	for _, v := range variants {
		if at < v.Percent*100 {
			return v
		}
		at -= v.Percent * 100
	}
	return variants[len(variants)-1]
}

// assign returns a person's variant in a split, drawing and recording it
// the first time.
func (r *run) assign(profileID string, j *Journey, s *Step) (Variant, error) {
	exp := s.ExperimentName()
	x, err := r.experiments(profileID)
	if err != nil {
		return Variant{}, err
	}
	if e := x.live(j.ID, exp); e != nil {
		for _, vr := range s.Variants {
			if vr.Name == e.Variant {
				return vr, nil
			}
		}
		// The arm was removed from the file since: the hash picks among
		// those left; the record (and its counts) stay as they were.
		return pick(s.Variants, roll(profileID, j.ID, exp)), nil
	}
	vr := pick(s.Variants, roll(profileID, j.ID, exp))
	if s.Allocation == AllocAdaptive && !vr.Control {
		vr = r.adaptiveArm(j.ID, exp, s.Variants)
	}
	x.add(expEntry{journey: j.ID, experiment: exp, assignment: assignment{Variant: vr.Name, At: r.now}})
	r.expCount(j.ID, exp, vr.Name, "assigned", 1)
	return vr, r.place(profileID, x)
}

// heldRoll is a person's roll for a holdout.
type heldRoll struct {
	profileID, holdout string
	roll               int
}

// heldOut reports whether the policy's global holdout keeps a person out
// of a marketing journey, recording the person's arm of the journey's
// holdout experiment the first time (held out, or treated).
func (r *run) heldOut(profileID string, j *Journey) (bool, error) {
	h := r.set.Policy.Holdout
	if h == nil || j.Category != "marketing" {
		return false, nil
	}
	if r.held.profileID != profileID || r.held.holdout != h.Name {
		// Once per person and run, not once per journey an event enters.
		r.held = heldRoll{profileID: profileID, holdout: h.Name, roll: roll(profileID, "", h.Name)}
	}
	out := r.held.roll < h.Basis
	x, err := r.experiments(profileID)
	if err != nil {
		return false, err
	}
	exp := holdoutExperiment(h.Name)
	if x.live(j.ID, exp) == nil {
		variant := TreatedVariant
		if out {
			variant = HoldoutVariant
			r.count(j.ID, "", "holdout", 1)
		}
		x.add(expEntry{journey: j.ID, experiment: exp, assignment: assignment{Variant: variant, At: r.now}})
		r.expCount(j.ID, exp, variant, "assigned", 1)
		if err := r.place(profileID, x); err != nil {
			return false, err
		}
	}
	return out, nil
}

// experimentGoals counts the event as a conversion for each of the
// person's assignments whose journey's goal it meets within the window.
// converted lists the journeys whose live instance this event converted
// (their goal condition held with the instance's trigger).
func (r *run) experimentGoals(p *profiles.Profile, ev *profiles.Event, name string, pv *rules.ProfileView, converted map[string]bool) error {
	if !r.set.expGoals[name] {
		return nil
	}
	x, err := r.experiments(p.ID)
	if err != nil {
		return err
	}
	var cents int64
	if rev, ok := revenueOf(ev); ok {
		cents = int64(math.Round(rev * 100))
	}
	for _, e := range x.list {
		if e.mergedFrom != "" || e.Converted {
			continue
		}
		j := r.set.Journey(e.journey)
		if j == nil || j.Goal == nil || j.Goal.Event != name {
			continue
		}
		window := j.Goal.Within
		if window == 0 {
			window = DefaultExperimentWindow
		}
		if r.now.After(e.At.Add(window)) {
			continue
		}
		if !converted[e.journey] && j.Goal.When != nil {
			// No instance to give the trigger: a condition that reads it
			// does not hold.
			ok, err := j.Goal.When.Bool(&rules.Input{Profile: pv, Event: rules.ViewOf(ev), Now: r.now})
			if err != nil || !ok {
				continue
			}
		}
		e.Converted, e.RevenueCents = true, cents
		x.dirty = true
		r.expCount(e.journey, e.experiment, e.Variant, "converted", 1)
		r.expCount(e.journey, e.experiment, e.Variant, "revenue_cents", cents)
	}
	return nil
}

// mergeExperiments moves a merged-away profile's assignments to the
// survivor. Where both were assigned, the survivor's wins: the other is
// kept in the survivor's ledger and taken out of the counts (two profiles
// were one person all along).
func (r *run) mergeExperiments(survivorID, loserID string) error {
	lost, err := r.experiments(loserID)
	if err != nil {
		return err
	}
	if len(lost.list) == 0 && len(lost.old) == 0 {
		r.forgetExperiments(loserID)
		return nil
	}
	kept, err := r.experiments(survivorID)
	if err != nil {
		return err
	}
	for _, p := range lost.list {
		e := *p
		if e.mergedFrom != "" || kept.live(e.journey, e.experiment) == nil {
			kept.add(e)
			continue
		}
		e.mergedFrom = loserID
		if !kept.add(e) {
			continue
		}
		r.expCount(e.journey, e.experiment, e.Variant, "assigned", -1)
		if e.Converted {
			r.expCount(e.journey, e.experiment, e.Variant, "converted", -1)
			r.expCount(e.journey, e.experiment, e.Variant, "revenue_cents", -e.RevenueCents)
		}
	}
	if err := r.place(survivorID, kept); err != nil {
		return err
	}
	return r.dropExperiments(loserID, lost)
}

// trial is a run's experiment state.
type trial struct {
	// last is the record of the last person it touched (lastID), and
	// assigned, by profile id, the others' that the flush is to write
	// (assignments.go).
	lastID   string
	last     *expRecord
	assigned map[string]*expRecord
	// held is the last person's holdout roll.
	held heldRoll
	// layout is the assignments' layout (migrate.go), once read.
	layout int8
}

// Assignment is a person's arm in one experiment, as the profile API
// shows it.
type Assignment struct {
	Journey    string    `json:"journey"`
	Experiment string    `json:"experiment"`
	Variant    string    `json:"variant"`
	AssignedAt time.Time `json:"assigned_at"`
	Converted  bool      `json:"converted"`
	// MergedFrom names the merged-away profile whose assignment this was
	// (a ledger entry: the survivor's own assignment is the one in force).
	MergedFrom string `json:"merged_from,omitempty"`
}

// parseBasis reads a holdout's percent (decimals allowed, 0 to 50) as
// hundredths of a percent.
func parseBasis(f *rules.File, v *yaml.Node) int {
	x, err := strconv.ParseFloat(v.Value, 64)
	if v.Kind != yaml.ScalarNode || err != nil || x <= 0 || x > 50 {
		f.Errorf(v, "holdout.percent: want a number above 0 and at most 50, got %q", v.Value)
		return 0
	}
	return int(math.Round(x * 100))
}

// experimentGoalEvents are the goal events of the journeys that have
// experiments: a split, or the holdout for marketing journeys.
func experimentGoalEvents(js []*Journey, pol *Policy) map[string]bool {
	out := map[string]bool{}
	for _, j := range js {
		if j.Goal == nil {
			continue
		}
		if pol.Holdout != nil && j.Category == "marketing" {
			out[j.Goal.Event] = true
			continue
		}
		for _, s := range j.Steps {
			if s.Kind == StepSplit {
				out[j.Goal.Event] = true
				break
			}
		}
	}
	return out
}
