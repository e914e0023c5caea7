package journeys

import (
	"encoding/json"
	"fmt"
	"time"
)

// Detail is what an action did, one type per kind of action; simulate
// prints it as the action's "detail", whose keys are the JSON names
// below (fields in the order of their names, so the output reads as a
// sorted object).
type Detail interface{ actionDetail() }

// EnterDetail is an enter's: the instance key, the trigger event's name,
// the journey version.
type EnterDetail struct {
	Key     string `json:"key"`
	Trigger string `json:"trigger"`
	Version string `json:"version"`
}

// SendDetail is a send's: the template, and the best time it was timed
// for when it went at once (its hour had come).
type SendDetail struct {
	BestTime *BestTimeDetail `json:"best_time,omitempty"`
	Template string          `json:"template"`
}

// DelayedDetail is a delayed send's: why, the template, and when it is
// released; for a send timed by its best time (reason best_time), the
// hour chosen and why.
type DelayedDetail struct {
	BestTime *BestTimeDetail `json:"best_time,omitempty"`
	Reason   string          `json:"reason"`
	Template string          `json:"template"`
	Until    time.Time       `json:"until"`
}

// SuppressedDetail is a suppressed send's (template) or ad audience
// change's (audience), with why.
type SuppressedDetail struct {
	Audience string `json:"audience,omitempty"`
	Reason   string `json:"reason"`
	Template string `json:"template,omitempty"`
	// HeldBy names the journeys that still hold the person in the
	// audience a removal was held back from.
	HeldBy []string `json:"held_by,omitempty"`
}

// AudienceDetail is an audience_add's or audience_remove's: the ad
// audience, and for a removal at an exit, the exit's reason.
type AudienceDetail struct {
	Audience string `json:"audience"`
	Reason   string `json:"reason,omitempty"`
	// HeldBy names the other journeys that hold the person in the
	// audience (an add that found them in it already).
	HeldBy []string `json:"held_by,omitempty"`
}

// PassDetail is a pass_update's: field values, the lock-screen message,
// and why that message was held back.
type PassDetail struct {
	Fields         map[string]any `json:"fields,omitempty"`
	Push           string         `json:"push,omitempty"`
	PushSuppressed string         `json:"push_suppressed,omitempty"`
}

// TraitDetail is a set_trait's: the trait and its value (JSON values).
type TraitDetail struct {
	Trait string `json:"trait"`
	Value any    `json:"value"`
}

// GoalDetail is a goal's: the event that reached it, and the split arm
// the person took.
type GoalDetail struct {
	Event   string `json:"event"`
	Variant string `json:"variant,omitempty"`
}

// ExitDetail is an exit's: why, and the split arm the person took.
type ExitDetail struct {
	Reason  string `json:"reason"`
	Variant string `json:"variant,omitempty"`
}

func (EnterDetail) actionDetail()      {}
func (SendDetail) actionDetail()       {}
func (DelayedDetail) actionDetail()    {}
func (SuppressedDetail) actionDetail() {}
func (AudienceDetail) actionDetail()   {}
func (PassDetail) actionDetail()       {}
func (TraitDetail) actionDetail()      {}
func (GoalDetail) actionDetail()       {}
func (ExitDetail) actionDetail()       {}

// newDetail is the empty detail of a kind of action.
func newDetail(action string) (Detail, error) {
	switch action {
	case ActEnter:
		return &EnterDetail{}, nil
	case ActSend:
		return &SendDetail{}, nil
	case ActDelayed:
		return &DelayedDetail{}, nil
	case ActSuppressed:
		return &SuppressedDetail{}, nil
	case ActAudienceAdd, ActAudienceRemove:
		return &AudienceDetail{}, nil
	case ActPassUpdate:
		return &PassDetail{}, nil
	case ActSetTrait:
		return &TraitDetail{}, nil
	case ActGoal:
		return &GoalDetail{}, nil
	case ActExit:
		return &ExitDetail{}, nil
	case ActError:
		return &ErrorDetail{}, nil
	}
	return nil, fmt.Errorf("action %q: unknown kind", action)
}

// UnmarshalJSON reads an action with the detail of its kind (the outbox
// keeps actions as JSON).
func (a *Action) UnmarshalJSON(b []byte) error {
	type plain Action
	var raw struct {
		plain
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*a = Action(raw.plain)
	d, err := newDetail(a.Action)
	if err != nil {
		return err
	}
	if len(raw.Detail) > 0 && string(raw.Detail) != "null" {
		if err := json.Unmarshal(raw.Detail, d); err != nil {
			return fmt.Errorf("action %s: detail: %w", a.Action, err)
		}
	}
	a.Detail = deref(d)
	return nil
}

// deref gives the value form of a detail, as the engine records them, so
// that a type switch over an action's detail has one case per kind.
func deref(d Detail) Detail {
	switch x := d.(type) {
	case *EnterDetail:
		return *x
	case *SendDetail:
		return *x
	case *DelayedDetail:
		return *x
	case *SuppressedDetail:
		return *x
	case *AudienceDetail:
		return *x
	case *PassDetail:
		return *x
	case *TraitDetail:
		return *x
	case *GoalDetail:
		return *x
	case *ExitDetail:
		return *x
	case *ErrorDetail:
		return *x
	}
	return d
}
