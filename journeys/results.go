package journeys

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// ExperimentResult is one experiment of a journey: a split, or the global
// holdout (held-out people against those who entered).
type ExperimentResult struct {
	Name string `json:"name"`
	// Kind is "split" or "holdout".
	Kind string `json:"kind"`
	// Step is the split step ("" for the holdout).
	Step string `json:"step,omitempty"`
	// Allocation is the split's: fixed or adaptive ("" for the holdout).
	Allocation string `json:"allocation,omitempty"`
	// Window is how long after their assignment a goal event counts.
	Window   string          `json:"window"`
	Variants []VariantResult `json:"variants"`
}

// Experiments returns the results of a journey's experiments: each split
// of its current version, then the holdout if anyone was held out of it or
// entered it while the policy had one.
func (e *Engine) Experiments(j *Journey) ([]ExperimentResult, error) {
	counts := map[string]map[string]*Arm{} // experiment → variant → arm
	var order []string                     // experiments in key order
	err := e.db.View(func(tx *bbolt.Tx) error {
		return eachCounter(tx.Bucket(bucketCounters).Get([]byte(j.ID)), func(name []byte, n int64) {
			if len(name) == 0 || name[0] != expMark {
				return
			}
			parts := strings.SplitN(string(name[1:]), "\x00", 3)
			if len(parts) != 3 {
				return
			}
			exp, variant, what := parts[0], parts[1], parts[2]
			if counts[exp] == nil {
				counts[exp] = map[string]*Arm{}
				order = append(order, exp)
			}
			a := counts[exp][variant]
			if a == nil {
				a = &Arm{Name: variant}
				counts[exp][variant] = a
			}
			switch what {
			case "assigned":
				a.Assigned = n
			case "converted":
				a.Converted = n
			case "revenue_cents":
				a.RevenueCents = n
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read experiment counters of %s: %w", j.ID, err)
	}
	window := DefaultExperimentWindow
	if j.Goal != nil && j.Goal.Within > 0 {
		window = j.Goal.Within
	}
	// arms lists the declared arms in order, then any arm the file no
	// longer declares but people were assigned to.
	arms := func(exp string, declared []Arm) []Arm {
		got := counts[exp]
		seen := map[string]bool{}
		for i := range declared {
			if a := got[declared[i].Name]; a != nil {
				declared[i].Assigned, declared[i].Converted, declared[i].RevenueCents = a.Assigned, a.Converted, a.RevenueCents
			}
			seen[declared[i].Name] = true
		}
		for name, a := range got {
			if !seen[name] {
				declared = append(declared, *a)
			}
		}
		return declared
	}
	out := []ExperimentResult{}
	for _, s := range j.Steps {
		if s.Kind != StepSplit {
			continue
		}
		declared := make([]Arm, len(s.Variants))
		for i, v := range s.Variants {
			declared[i] = Arm{Name: v.Name, Control: v.Control}
		}
		exp := s.ExperimentName()
		out = append(out, ExperimentResult{Name: exp, Kind: "split", Step: s.ID, Allocation: allocationOf(s), Window: days(window),
			Variants: Analyze(arms(exp, declared), seedOf(j.ID, exp))})
	}
	for _, exp := range order {
		if !strings.HasPrefix(exp, "@") {
			continue
		}
		declared := []Arm{{Name: HoldoutVariant, Control: true}, {Name: TreatedVariant}}
		out = append(out, ExperimentResult{Name: exp[1:], Kind: "holdout", Window: days(window),
			Variants: Analyze(arms(exp, declared), seedOf(j.ID, exp))})
	}
	return out, nil
}

// Assignments returns a profile's experiment arms, then the ledger of
// those that lost to them in merges.
func (e *Engine) Assignments(profileID string) ([]Assignment, error) {
	var out []Assignment
	err := e.db.View(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		// Whatever the layout mark says: a rare read, and the scan finds
		// both layouts.
		x, err := readExpRecord(sc, profileID, true)
		if err != nil {
			return err
		}
		out = assignmentsOf(x)
		return nil
	})
	return out, err
}

// days writes a whole number of days as 7d, anything else as fmtDuration.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return fmtDuration(d)
}

// MergeExperiments adds up the results of one journey's experiments taken
// from several stores (a cluster's partitions, each counting its own
// people) and analyzes the sums as Experiments would have with every
// person in one store: the same arms in the same order, the same seed.
// An experiment or arm only some parts have is kept, in the order first
// seen.
func MergeExperiments(journeyID string, parts [][]ExperimentResult) []ExperimentResult {
	var out []ExperimentResult
	arms := map[string][]Arm{} // by kind and name
	seen := map[string]bool{}
	for _, part := range parts {
		for _, r := range part {
			key := r.Kind + "\x00" + r.Name
			if !seen[key] {
				seen[key] = true
				out = append(out, ExperimentResult{Name: r.Name, Kind: r.Kind, Step: r.Step, Allocation: r.Allocation, Window: r.Window})
			}
			for _, v := range r.Variants {
				as := arms[key]
				j := slices.IndexFunc(as, func(a Arm) bool { return a.Name == v.Name })
				if j < 0 {
					as = append(as, Arm{Name: v.Name, Control: v.Control})
					j = len(as) - 1
				}
				as[j].Assigned += v.Assigned
				as[j].Converted += v.Converted
				as[j].RevenueCents += int64(math.Round(v.Revenue * 100))
				arms[key] = as
			}
		}
	}
	for i, r := range out {
		exp := r.Name
		if r.Kind == "holdout" {
			exp = "@" + exp
		}
		out[i].Variants = Analyze(arms[r.Kind+"\x00"+r.Name], seedOf(journeyID, exp))
	}
	if out == nil {
		out = []ExperimentResult{}
	}
	return out
}
