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
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"cartera/internal/codec"
	"cartera/profiles"
	"cartera/rules"
)

// Sidecar names of the engine's experiment records about a profile:
//
//	"x" 0x00 journey id 0x00 experiment → assignment (codec.Format1: variant,
//	               assigned at, converted, revenue in cents)
//	"xm" 0x00 journey id 0x00 experiment 0x00 merged-away profile id → the
//	               assignment that profile had when it merged into this one
//	               and lost to this one's (the ledger)
//
// Bucket journey_experiments holds the counters: journey id 0x00
// experiment 0x00 variant 0x00 counter (assigned, converted, revenue_cents)
// → 8-byte big-endian count.
const (
	sidecarExperiment = "x\x00"
	sidecarExpLedger  = "xm\x00"
)

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

func expName(journey, experiment string) string {
	return sidecarExperiment + journey + "\x00" + experiment
}

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
}

// assignment is a person's arm in one experiment.
type assignment struct {
	Variant      string
	At           time.Time
	Converted    bool
	RevenueCents int64
}

func encodeAssignment(a assignment) []byte {
	w := &codec.Writer{B: make([]byte, 0, 32)}
	w.B = append(w.B, codec.Format1)
	w.String(a.Variant)
	w.Time(a.At)
	w.Bool(a.Converted)
	w.Varint(a.RevenueCents)
	return w.B
}

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
	sc, err := r.sidecars()
	if err != nil {
		return Variant{}, err
	}
	if v := sc.Get(profileID, expName(j.ID, exp)); v != nil {
		a, err := decodeAssignment(v)
		if err != nil {
			return Variant{}, fmt.Errorf("experiment %s of %s for %s: %w", exp, j.ID, profileID, err)
		}
		for _, vr := range s.Variants {
			if vr.Name == a.Variant {
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
	if err := sc.Put(profileID, expName(j.ID, exp), encodeAssignment(assignment{Variant: vr.Name, At: r.now})); err != nil {
		return Variant{}, err
	}
	r.expCount(j.ID, exp, vr.Name, "assigned", 1)
	return vr, nil
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
	sc, err := r.sidecars()
	if err != nil {
		return false, err
	}
	exp := holdoutExperiment(h.Name)
	if sc.Get(profileID, expName(j.ID, exp)) == nil {
		variant := TreatedVariant
		if out {
			variant = HoldoutVariant
			r.count(j.ID, "", "holdout", 1)
		}
		if err := sc.Put(profileID, expName(j.ID, exp), encodeAssignment(assignment{Variant: variant, At: r.now})); err != nil {
			return false, err
		}
		r.expCount(j.ID, exp, variant, "assigned", 1)
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
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	type hit struct {
		sidecar string
		a       assignment
	}
	var hits []hit
	err = sc.Scan(p.ID, sidecarExperiment, func(sidecar string, v []byte) error {
		journey, exp, ok := strings.Cut(sidecar[len(sidecarExperiment):], "\x00")
		j := r.set.Journey(journey)
		if !ok || j == nil || j.Goal == nil || j.Goal.Event != name {
			return nil
		}
		a, err := decodeAssignment(v)
		if err != nil {
			return fmt.Errorf("experiment %s of %s for %s: %w", exp, journey, p.ID, err)
		}
		window := j.Goal.Within
		if window == 0 {
			window = DefaultExperimentWindow
		}
		if a.Converted || r.now.After(a.At.Add(window)) {
			return nil
		}
		if !converted[journey] && j.Goal.When != nil {
			// No instance to give the trigger: a condition that reads it
			// does not hold.
			ok, err := j.Goal.When.Bool(&rules.Input{Profile: pv, Event: rules.ViewOf(ev), Now: r.now})
			if err != nil || !ok {
				return nil
			}
		}
		hits = append(hits, hit{sidecar, a})
		return nil
	})
	if err != nil {
		return err
	}
	rev, _ := revenueOf(ev)
	cents := int64(math.Round(rev * 100))
	for _, h := range hits {
		journey, exp, _ := strings.Cut(h.sidecar[len(sidecarExperiment):], "\x00")
		h.a.Converted, h.a.RevenueCents = true, cents
		if err := sc.Put(p.ID, h.sidecar, encodeAssignment(h.a)); err != nil {
			return err
		}
		r.expCount(journey, exp, h.a.Variant, "converted", 1)
		r.expCount(journey, exp, h.a.Variant, "revenue_cents", cents)
	}
	return nil
}

// mergeExperiments moves a merged-away profile's assignments to the
// survivor. Where both were assigned, the survivor's wins: the other is
// kept in the survivor's ledger and taken out of the counts (two profiles
// were one person all along).
func (r *run) mergeExperiments(survivorID, loserID string) error {
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	type record struct{ name, v string }
	var moved []record
	for _, prefix := range []string{sidecarExperiment, sidecarExpLedger} {
		err := sc.Scan(loserID, prefix, func(name string, v []byte) error {
			moved = append(moved, record{name, string(v)})
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, m := range moved {
		if err := sc.Delete(loserID, m.name); err != nil {
			return err
		}
		if strings.HasPrefix(m.name, sidecarExpLedger) || sc.Get(survivorID, m.name) == nil {
			if err := sc.Put(survivorID, m.name, []byte(m.v)); err != nil {
				return err
			}
			continue
		}
		a, err := decodeAssignment([]byte(m.v))
		if err != nil {
			return fmt.Errorf("merge experiments of %s: %w", loserID, err)
		}
		rest := m.name[len(sidecarExperiment):]
		if err := sc.Put(survivorID, sidecarExpLedger+rest+"\x00"+loserID, []byte(m.v)); err != nil {
			return err
		}
		journey, exp, _ := strings.Cut(rest, "\x00")
		r.expCount(journey, exp, a.Variant, "assigned", -1)
		if a.Converted {
			r.expCount(journey, exp, a.Variant, "converted", -1)
			r.expCount(journey, exp, a.Variant, "revenue_cents", -a.RevenueCents)
		}
	}
	return nil
}

// expCount adds to an experiment counter; flushExperiments writes them
// with the step counters.
func (r *run) expCount(journey, experiment, variant, what string, delta int64) {
	r.key = counterKey(r.key, journey, experiment, variant, what)
	r.expCounts.add(r.tx.Bucket(bucketExperiments), r.key, delta)
}

func (r *run) flushExperiments() error {
	return r.expCounts.flush(r.tx.Bucket(bucketExperiments))
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
