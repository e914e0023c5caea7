package journeys

// Steps: moving an instance through its journey's steps.

import (
	"fmt"
	"slices"
	"time"

	"cartera/profiles"
	"cartera/rules"
)

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
		r.countHourly(j.ID, s.ID, CounterFrom+in.Step, 1)
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
		return r.sendStep(p, pv, j, in, s)
	case StepWait:
		due := r.now.Add(s.Wait)
		if s.WaitUntil != "" {
			due = nextLocal(r.now.Add(s.Wait), s.WaitUntil, r.set.Policy.location(pv.Traits))
		}
		return "", true, r.setTimer(in, due)
	case StepWaitFor:
		return "", true, r.setTimer(in, r.now.Add(s.Timeout))
	case StepBranch:
		for i, c := range s.Cases {
			if c.When == nil || r.eval(c.When, input, j, s.ID, "steps."+s.ID+".branch.when") {
				r.decide(in, s.ID, DecisionBranch, caseWhy(i, c))
				return c.Next, false, nil
			}
		}
		r.decide(in, s.ID, DecisionBranch, "no case matched: the journey ends")
		return "", false, nil
	case StepSplit:
		v, err := r.assign(in.ProfileID, j, s)
		if err != nil {
			return "", false, err
		}
		in.Variant = v.Name
		why := v.why
		if why == "" {
			why = splitWhy(s, v)
		}
		r.decide(in, s.ID, DecisionSplit, why)
		r.countArm(j.ID, s.ID, v.Name)
		return v.Next, false, nil
	case StepAudience:
		if s.Add != "" {
			return s.Next, false, r.audienceAdd(j, in, s, s.Add, pv)
		}
		if !slices.Contains(in.Audiences, s.Remove) && !r.heldBy(s.Remove, p.ID, in) {
			return s.Next, false, nil
		}
		r.count(j.ID, s.ID, "sent", 1)
		return s.Next, false, r.audienceRelease(in, s.ID, s.ID, s.Remove, "")
	case StepSetTrait:
		var value any
		if s.Value != nil {
			out, err := s.Value.Eval(input)
			if err != nil {
				r.evalError(s.Value, input, err, j, s.ID, "steps."+s.ID+".set_trait.value")
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
				r.evalError(prg, input, err, j, s.ID, "steps."+s.ID+".pass.fields."+name)
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
