package journeys

// Triggers: which journeys an event starts, each condition evaluated once
// per event however many journeys share it.

import (
	"cartera/profiles"
	"cartera/rules"
)

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
			return r.evalOnce(t.When, in, j)
		}
		// Part by part, left to right, as && would: the first false
		// part decides (an error counts as false, as for the whole).
		for _, c := range t.conjuncts {
			if !r.evalOnce(c, in, j) {
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
func (r *run) evalOnce(prg *rules.Program, in *rules.Input, j *Journey) bool {
	if res, seen := r.memo[prg.Source]; seen {
		if res.err != nil {
			// The same failing condition in another journey: reported
			// for that journey too.
			r.evalError(prg, in, res.err, j, "", "trigger.when")
		}
		return res.ok
	}
	ok, err := prg.Bool(in)
	if err != nil {
		r.evalError(prg, in, err, j, "", "trigger.when")
	}
	if r.memo == nil {
		r.memo = map[string]memoResult{}
	}
	r.memo[prg.Source] = memoResult{ok: ok && err == nil, err: err}
	return ok && err == nil
}

// memoResult is a trigger condition's outcome for one event.
type memoResult struct {
	ok  bool
	err error
}
