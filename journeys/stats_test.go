package journeys

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// binomial draws the conversions of n people who each convert with p.
func binomial(rng *rand.Rand, n int, p float64) int64 {
	var c int64
	for range n {
		if rng.Float64() < p {
			c++
		}
	}
	return c
}

// TestAnalyze: the numbers of clear cases, and the same counts always give
// the same answer.
func TestAnalyze(t *testing.T) {
	arms := []Arm{{Name: "a", Assigned: 1000, Converted: 100, RevenueCents: 250000}, {Name: "off", Control: true, Assigned: 1000, Converted: 100}, {Name: "b", Assigned: 1000, Converted: 200}}
	got := Analyze(arms, 7)
	if !reflect.DeepEqual(got, Analyze(arms, 7)) {
		t.Error("the same counts gave other results")
	}
	a, off, b := got[0], got[1], got[2]
	if off.Uplift != nil || off.ProbBeatsBaseline != nil || off.Verdict != "" {
		t.Errorf("control = %+v, want the baseline", off)
	}
	if a.ConversionRate != 0.1 || a.Revenue != 2500 || a.RevenuePerPerson != 2.5 {
		t.Errorf("a = %+v", a)
	}
	// Same rate as the control: an even chance, an interval around 0.
	if p := *a.ProbBeatsBaseline; p < 0.4 || p > 0.6 || a.Uplift.Low > 0 || a.Uplift.High < 0 || a.Uplift.Estimate != 0 || a.Verdict != VerdictInconclusive {
		t.Errorf("a against the control: p %.3f, uplift %+v, %s", p, *a.Uplift, a.Verdict)
	}
	// Twice the rate: uplift 100 %, clearly better.
	if p := *b.ProbBeatsBaseline; p < 0.999 || math.Abs(b.Uplift.Estimate-1) > 1e-9 || b.Uplift.Low < 0.5 || b.Uplift.High > 1.6 || b.Verdict != VerdictBetter {
		t.Errorf("b against the control: p %.4f, uplift %+v, %s", p, *b.Uplift, b.Verdict)
	}
	// No control: the first arm is the baseline. Nobody yet: no rates.
	got = Analyze([]Arm{{Name: "x"}, {Name: "y"}}, 1)
	if got[0].Uplift != nil || got[1].Uplift == nil || got[1].ConversionRate != 0 || got[1].Verdict != VerdictInconclusive {
		t.Errorf("empty = %+v", got)
	}
}

// TestStatsCalibration simulates experiments whose true conversion rates
// are known, with fixed seeds, and checks the error rates the README
// promises:
//   - one look at the end, no difference: a 95 % interval of the uplift
//     leaves out 0 in about 5 % of experiments;
//   - one look, a real difference: it finds it about as often as a
//     fixed-horizon test's power says;
//   - a look every day, no difference: the verdict says better or worse,
//     at any of the looks, in at most 5 % of experiments (while the
//     posterior probability read against the same 95 % every day would
//     cry wolf far more often);
//   - a look every day, a real difference: the verdict finds it.
func TestStatsCalibration(t *testing.T) {
	const runs, draws = 300, 2000
	oneLook := func(pa, pb float64, n int, seed uint64) float64 {
		rng := rand.New(rand.NewPCG(seed, 1))
		found := 0
		for i := range runs {
			arms := []Arm{{Name: "off", Control: true, Assigned: int64(n), Converted: binomial(rng, n, pa)}, {Name: "v", Assigned: int64(n), Converted: binomial(rng, n, pb)}}
			v := analyze(arms, uint64(i), draws)[1]
			if v.Uplift.Low > 0 || v.Uplift.High < 0 {
				found++
			}
		}
		return float64(found) / runs
	}
	// Null: around 5 % (binomial sd with 300 runs: 1.3 points).
	for _, seed := range []uint64{1, 2} {
		if got := oneLook(0.10, 0.10, 2000, seed); got < 0.015 || got > 0.095 {
			t.Errorf("seed %d, no difference: the interval left out 0 in %.1f%% of experiments, want about 5%%", seed, 100*got)
		} else {
			t.Logf("seed %d, no difference, one look: %.1f%% declared", seed, 100*got)
		}
	}
	// Power: 10 % against 12 % with 4000 people an arm.
	n, pa, pb := 4000, 0.10, 0.12
	se := math.Sqrt(pa*(1-pa)/float64(n) + pb*(1-pb)/float64(n))
	power := normalCDF((pb-pa)/se - 1.959964)
	got := oneLook(pa, pb, n, 3)
	t.Logf("10%% vs 12%%, %d an arm, one look: found in %.1f%%, expected power %.1f%%", n, 100*got, 100*power)
	if math.Abs(got-power) > 0.08 {
		t.Errorf("10%% vs 12%%: found in %.1f%% of experiments, want about the power %.1f%%", 100*got, 100*power)
	}

	// Daily looks: 20 days of 200 people an arm each day.
	daily := func(pa, pb float64, seed uint64) (verdicts, naive float64) {
		rng := rand.New(rand.NewPCG(seed, 2))
		var v, nv int
		for range runs {
			a, b := Arm{Control: true}, Arm{}
			said, saidNaive := false, false
			for range 20 {
				a.Assigned, a.Converted = a.Assigned+200, a.Converted+binomial(rng, 200, pa)
				b.Assigned, b.Converted = b.Assigned+200, b.Converted+binomial(rng, 200, pb)
				if Verdict(b, a) != VerdictInconclusive {
					said = true
				}
				// The naive rule: the posterior probability against 97.5 %
				// (normal approximation, to keep the test fast).
				if z := math.Abs(float64(b.Converted-a.Converted)) / float64(a.Assigned) / math.Sqrt(2*pa*(1-pa)/float64(a.Assigned)); pa > 0 && z > 1.96 {
					saidNaive = true
				}
			}
			if said {
				v++
			}
			if saidNaive {
				nv++
			}
		}
		return float64(v) / runs, float64(nv) / runs
	}
	for _, seed := range []uint64{4, 5, 6} {
		v, naive := daily(0.10, 0.10, seed)
		t.Logf("seed %d, no difference, 20 daily looks: the verdict declared in %.1f%%, the naive daily 95%% in %.1f%%", seed, 100*v, 100*naive)
		if v > 0.06 {
			t.Errorf("seed %d: under daily looks the verdict declared a winner in %.1f%% of experiments, want at most 5%%", seed, 100*v)
		}
		if naive <= v {
			t.Errorf("seed %d: the naive rule (%.1f%%) did no worse than the verdict (%.1f%%)", seed, 100*naive, 100*v)
		}
	}
	v, _ := daily(0.10, 0.13, 7)
	t.Logf("10%% vs 13%%, 20 daily looks of 200 an arm: the verdict found it in %.1f%%", 100*v)
	if v < 0.80 {
		t.Errorf("10%% vs 13%%: the verdict found the difference in %.1f%% of experiments, want at least 80%%", 100*v)
	}
}

func normalCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// TestExperimentFindsDifference runs synthetic people through the engine:
// a 50/50 split whose arms convert at 10 % and 40 %; the counts are exact
// and the result says the second arm is better.
func TestExperimentFindsDifference(t *testing.T) {
	journey := `
id: offer
trigger:
  event: Product Added
goal:
  event: Order Completed
steps:
  - id: test
    split:
      - {name: plain, percent: 50, next: hold}
      - {name: discount, percent: 50, next: hold}
  - id: hold
    wait: 1d
`
	h := openHarness(t, openPolicy, map[string]string{"offer.yaml": journey}, true)
	rng := rand.New(rand.NewPCG(11, 12))
	rate := map[string]float64{"plain": 0.10, "discount": 0.40}
	want := map[string]*Arm{"plain": {}, "discount": {}}
	for i := range 400 {
		who := fmt.Sprintf("s%03d", i)
		pid := h.track(who, "Product Added", nil)
		as, err := h.engine.Assignments(pid)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s: assignments %+v, %v", who, as, err)
		}
		w := want[as[0].Variant]
		w.Assigned++
		if rng.Float64() < rate[as[0].Variant] {
			h.track(who, "Order Completed", map[string]any{"revenue": 30})
			w.Converted++
		}
	}
	res := h.results("offer")["test"]
	for name, w := range want {
		got := arm(res, name)
		if got.Assigned != w.Assigned || got.Converted != w.Converted || got.Revenue != float64(30*w.Converted) {
			t.Errorf("%s = %+v, want %d assigned, %d converted", name, got, w.Assigned, w.Converted)
		}
	}
	if d := arm(res, "discount"); d.Verdict != VerdictBetter || *d.ProbBeatsBaseline < 0.99 || d.Uplift.Low <= 0 {
		t.Errorf("discount = %+v (uplift %+v), want clearly better", d, d.Uplift)
	}
}

// Experiments' results from two stores add up to what one store with
// everyone would show: the counts summed, the statistics computed on the
// sums with the experiment's seed (a holdout's name without its '@'), and
// an arm only one store has kept.
func TestMergeExperiments(t *testing.T) {
	partA := []Arm{{Name: "control", Control: true, Assigned: 40, Converted: 4, RevenueCents: 1999}, {Name: "at_once", Assigned: 41, Converted: 9, RevenueCents: 4550}}
	partB := []Arm{{Name: "control", Control: true, Assigned: 38, Converted: 3, RevenueCents: 1001}, {Name: "at_once", Assigned: 40, Converted: 8, RevenueCents: 2000}, {Name: "late", Assigned: 2}}
	hold := []Arm{{Name: HoldoutVariant, Control: true, Assigned: 5}, {Name: TreatedVariant, Assigned: 50, Converted: 5}}
	result := func(arms []Arm) []ExperimentResult {
		return []ExperimentResult{
			{Name: "timing", Kind: "split", Step: "timing", Allocation: "fixed", Window: "7d", Variants: Analyze(arms, seedOf("cart", "timing"))},
			{Name: "global", Kind: "holdout", Window: "7d", Variants: Analyze(hold, seedOf("cart", "@global"))},
		}
	}
	got := MergeExperiments("cart", [][]ExperimentResult{result(partA), result(partB)})
	sum := []Arm{{Name: "control", Control: true, Assigned: 78, Converted: 7, RevenueCents: 3000}, {Name: "at_once", Assigned: 81, Converted: 17, RevenueCents: 6550}, {Name: "late", Assigned: 2}}
	doubled := []Arm{{Name: HoldoutVariant, Control: true, Assigned: 10}, {Name: TreatedVariant, Assigned: 100, Converted: 10}}
	want := []ExperimentResult{
		{Name: "timing", Kind: "split", Step: "timing", Allocation: "fixed", Window: "7d", Variants: Analyze(sum, seedOf("cart", "timing"))},
		{Name: "global", Kind: "holdout", Window: "7d", Variants: Analyze(doubled, seedOf("cart", "@global"))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merged:\n%+v\nwant:\n%+v", got, want)
	}
	if got := MergeExperiments("cart", nil); got == nil || len(got) != 0 {
		t.Fatalf("merging nothing = %#v, want an empty list", got)
	}
}
