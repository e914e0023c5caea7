package journeys

// Adaptive allocation: a split with `allocation: adaptive` sends each new
// person to an arm by Thompson sampling. The control keeps its share: a
// person whose hash falls in the control's percent is in the control, as
// with a fixed split; everyone else gets the arm whose draw from its
// posterior, Beta(1+converted, 1+assigned-converted) over the counters the
// results are computed from, is highest. An arm that converts better wins
// more draws and so more people, while the others keep a chance in
// proportion to the doubt about them. A person already assigned keeps
// their arm (assign reads it first).

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"sync"

	"gopkg.in/yaml.v3"

	"cartera/rules"
)

// Allocations of a split.
const (
	// AllocFixed draws each person's arm from the hash, by the percents.
	AllocFixed = "fixed"
	// AllocAdaptive shifts the non-control share towards the better arm
	// by Thompson sampling.
	AllocAdaptive = "adaptive"
)

// draws is the engine's source of random numbers for adaptive splits,
// safe for concurrent use (runs take turns, but a read-only caller may
// not).
type draws struct {
	mu  sync.Mutex
	rng *mrand.Rand
}

// newDraws uses src, or a source seeded from crypto/rand when nil.
func newDraws(src mrand.Source) *draws {
	if src == nil {
		var seed [32]byte
		_, _ = rand.Read(seed[:]) // never fails (crypto/rand's contract since Go 1.24)
		src = mrand.NewChaCha8(seed)
	}
	return &draws{rng: mrand.New(src)}
}

// thompson returns the index of the arm (among those not excluded) whose
// draw from its posterior is highest.
func (d *draws) thompson(arms []Arm, skip func(i int) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	best, bestDraw := -1, -1.0
	for i, a := range arms {
		if skip(i) {
			continue
		}
		alpha := 1 + float64(a.Converted)
		beta := 1 + float64(max(a.Assigned-a.Converted, 0))
		x := gamma(d.rng, alpha)
		if p := x / (x + gamma(d.rng, beta)); p > bestDraw {
			best, bestDraw = i, p
		}
	}
	return best
}

// adaptiveArm is the arm of an adaptive split for a person whose hash
// does not put them in the control.
func (r *run) adaptiveArm(journey, experiment string, variants []Variant) Variant {
	arms := make([]Arm, len(variants))
	for i, v := range variants {
		if !v.Control {
			arms[i] = Arm{Name: v.Name, Assigned: r.expValue(journey, experiment, v.Name, "assigned"),
				Converted: r.expValue(journey, experiment, v.Name, "converted")}
		}
	}
	i := r.e.draws.thompson(arms, func(i int) bool { return variants[i].Control })
	return variants[i]
}

// allocation reads a split's allocation.
func allocation(f *rules.File, v *yaml.Node) string {
	s := f.String(v, "split.allocation")
	if s != AllocFixed && s != AllocAdaptive {
		f.Errorf(v, "split.allocation: want %s or %s, got %q", AllocFixed, AllocAdaptive, s)
	}
	return s
}

// checkAdaptive reports adaptive splits that have nothing to learn from:
// no goal, or fewer than two arms besides the control.
func checkAdaptive(f *rules.File, j *Journey) {
	for _, s := range j.Steps {
		if s.Kind != StepSplit || s.Allocation != AllocAdaptive {
			continue
		}
		if j.Goal == nil {
			f.Errorf(s.node, "step %s: split.allocation: adaptive needs the journey's goal (the arms are compared on it)", s.ID)
		}
		arms := 0
		for _, v := range s.Variants {
			if !v.Control {
				arms++
			}
		}
		if arms < 2 {
			f.Errorf(s.node, "step %s: split.allocation: adaptive needs two or more arms besides the control, got %d", s.ID, arms)
		}
	}
}

// allocationOf names a split's allocation for the results.
func allocationOf(s *Step) string {
	if s.Allocation == "" {
		return AllocFixed
	}
	return s.Allocation
}
