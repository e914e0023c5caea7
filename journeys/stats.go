package journeys

// Stats: what an experiment's counters say. Two methods, each for what it
// is good at (README, "Reading an experiment"):
//
//   - A Bayesian Beta-Binomial posterior per arm, with a uniform prior:
//     the conversion rate's posterior is Beta(1+converted, 1+assigned-
//     converted). The uplift against the control (relative, with a 95 %
//     credible interval) and the probability that an arm beats the control
//     are read from 20,000 Monte Carlo draws with a fixed seed, so the same
//     counts always give the same numbers.
//   - The verdict (better, worse, inconclusive) of a mixture sequential
//     probability ratio test (mSPRT, as in Johari et al., "Always valid
//     inference", and Optimizely's stats engine): under no difference the
//     chance that it EVER says better or worse, however often someone
//     looks, is at most 5 % (Ville's inequality). A posterior probability
//     compared with a fixed threshold every day does not keep that promise,
//     which is why the verdict does not come from it.

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
)

// Arm is one arm's counters.
type Arm struct {
	Name    string
	Control bool
	// Assigned is the people in the arm; Converted those who reached the
	// goal; RevenueCents the goal events' revenue.
	Assigned, Converted, RevenueCents int64
}

// VariantResult is one arm of an experiment, compared with the baseline
// (the control, or the first arm when none is a control).
type VariantResult struct {
	Name             string  `json:"name"`
	Control          bool    `json:"control,omitempty"`
	Assigned         int64   `json:"assigned"`
	Converted        int64   `json:"converted"`
	ConversionRate   float64 `json:"conversion_rate"`
	Revenue          float64 `json:"revenue"`
	RevenuePerPerson float64 `json:"revenue_per_person"`
	// Uplift is the relative change of the conversion rate against the
	// baseline (0.1: ten per cent more), with its 95 % credible interval;
	// absent for the baseline itself.
	Uplift *Interval `json:"uplift,omitempty"`
	// ProbBeatsBaseline is the posterior probability that the arm's rate
	// is above the baseline's.
	ProbBeatsBaseline *float64 `json:"p_beats_control,omitempty"`
	// Verdict is the sequential test's: better, worse or inconclusive.
	Verdict string `json:"verdict,omitempty"`
}

// Interval is an estimate with a 95 % interval.
type Interval struct {
	Estimate float64 `json:"estimate"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
}

// Verdicts of the sequential test.
const (
	VerdictBetter       = "better"
	VerdictWorse        = "worse"
	VerdictInconclusive = "inconclusive"
)

// Stats settings.
const (
	// mcDraws is the Monte Carlo draws per arm.
	mcDraws = 20000
	// sprtAlpha bounds the chance of a wrong verdict under no difference.
	sprtAlpha = 0.05
	// sprtTau is the mixture's spread of the absolute difference in
	// conversion rate (two points): the effects the test is tuned to find.
	sprtTau = 0.02
	// sprtMinPeople is the fewest people per arm before a verdict: below
	// it the normal approximation of the test is not to be trusted.
	sprtMinPeople = 100
)

// Analyze compares each arm with the baseline: the control, or arms[0]
// when none is a control. seed fixes the Monte Carlo draws.
func Analyze(arms []Arm, seed uint64) []VariantResult { return analyze(arms, seed, mcDraws) }

// analyze is Analyze with a number of draws.
func analyze(arms []Arm, seed uint64, n int) []VariantResult {
	out := make([]VariantResult, len(arms))
	base := 0
	for i, a := range arms {
		if a.Control {
			base = i
			break
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	baseDraws := betaDraws(rng, arms[base], make([]float64, n))
	draws := make([]float64, n)
	lifts := make([]float64, n)
	for i, a := range arms {
		r := VariantResult{Name: a.Name, Control: a.Control, Assigned: a.Assigned, Converted: a.Converted, Revenue: float64(a.RevenueCents) / 100}
		if a.Assigned > 0 {
			r.ConversionRate = float64(a.Converted) / float64(a.Assigned)
			r.RevenuePerPerson = r.Revenue / float64(a.Assigned)
		}
		if i != base {
			draws = betaDraws(rng, a, draws)
			beats := 0
			for k := range draws {
				if draws[k] > baseDraws[k] {
					beats++
				}
				lifts[k] = draws[k]/baseDraws[k] - 1
			}
			p := float64(beats) / float64(n)
			slices.Sort(lifts)
			est := lifts[n/2]
			if b := arms[base]; b.Assigned > 0 && b.Converted > 0 && a.Assigned > 0 {
				est = r.ConversionRate/(float64(b.Converted)/float64(b.Assigned)) - 1
			}
			r.Uplift = &Interval{Estimate: est, Low: lifts[n*25/1000], High: lifts[n*975/1000-1]}
			r.ProbBeatsBaseline = &p
			r.Verdict = Verdict(a, arms[base])
		}
		out[i] = r
	}
	return out
}

// Verdict is the mixture SPRT's verdict on an arm against the baseline.
func Verdict(a, base Arm) string {
	if a.Assigned < sprtMinPeople || base.Assigned < sprtMinPeople {
		return VerdictInconclusive
	}
	pa := float64(a.Converted) / float64(a.Assigned)
	pb := float64(base.Converted) / float64(base.Assigned)
	// The variance from the posterior means, so that a rate of 0 or 1
	// still has some.
	sa := (float64(a.Converted) + 1) / (float64(a.Assigned) + 2)
	sb := (float64(base.Converted) + 1) / (float64(base.Assigned) + 2)
	v := sa*(1-sa)/float64(a.Assigned) + sb*(1-sb)/float64(base.Assigned)
	d := pa - pb
	t2 := sprtTau * sprtTau
	// The likelihood ratio of the difference under a N(0, tau²) mixture
	// against no difference, in logs.
	logLR := 0.5*math.Log(v/(v+t2)) + t2*d*d/(2*v*(v+t2))
	if logLR < math.Log(1/sprtAlpha) {
		return VerdictInconclusive
	}
	if d > 0 {
		return VerdictBetter
	}
	return VerdictWorse
}

// betaDraws fills into with draws from the arm's posterior,
// Beta(1+converted, 1+assigned-converted).
func betaDraws(rng *rand.Rand, a Arm, into []float64) []float64 {
	alpha := 1 + float64(a.Converted)
	beta := 1 + float64(max(a.Assigned-a.Converted, 0))
	for k := range into {
		x := gamma(rng, alpha)
		into[k] = x / (x + gamma(rng, beta))
	}
	return into
}

// gamma draws from Gamma(shape, 1) (Marsaglia and Tsang); shape >= 1.
func gamma(rng *rand.Rand, shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// seedOf is the Monte Carlo seed of one experiment.
func seedOf(journey, experiment string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(journey + "\x00" + experiment))
	return binary.BigEndian.Uint64(h.Sum(nil))
}
