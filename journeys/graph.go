package journeys

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Edge is one way out of a step, as the file draws it: To "" is the end
// of the journey.
type Edge struct {
	To string
	// Label is what takes it: a branch case's condition ("else" for the
	// default), a split arm with its share, a wait_for's event or timeout.
	Label string
}

// Edges returns the ways out of a step, in the file's order.
func (s *Step) Edges() []Edge {
	switch s.Kind {
	case StepExit:
		return nil
	case StepBranch:
		out := make([]Edge, 0, len(s.Cases))
		for _, c := range s.Cases {
			label := "else"
			if c.When != nil {
				label = c.When.Source
			}
			out = append(out, Edge{To: c.Next, Label: label})
		}
		return out
	case StepSplit:
		out := make([]Edge, 0, len(s.Variants))
		for _, v := range s.Variants {
			label := fmt.Sprintf("%s %d%%", v.Name, v.Percent)
			if v.Control {
				label += " (control)"
			}
			out = append(out, Edge{To: v.Next, Label: label})
		}
		return out
	case StepWaitFor:
		event := ""
		if s.For != nil {
			event = s.For.Event
		}
		return []Edge{{To: s.OnEvent, Label: "on " + event}, {To: s.OnTimeout, Label: "after " + fmtDuration(s.Timeout)}}
	case StepWait:
		label := "after " + fmtDuration(s.Wait)
		if s.WaitUntil != "" {
			label = "then at " + s.WaitUntil
		}
		return []Edge{{To: s.Next, Label: label}}
	}
	return []Edge{{To: s.Next}}
}

// Summary is what a step does, in a few words: "email cart_reminder",
// "wait 30m", "add to retargeting".
func (s *Step) Summary() string {
	switch s.Kind {
	case StepSend:
		return s.Channel + " " + s.Template
	case StepWait:
		if s.WaitUntil != "" {
			return fmt.Sprintf("wait %s, until %s", fmtDuration(s.Wait), s.WaitUntil)
		}
		return "wait " + fmtDuration(s.Wait)
	case StepWaitFor:
		if s.For != nil {
			return fmt.Sprintf("wait for %s, %s", s.For.Event, fmtDuration(s.Timeout))
		}
	case StepBranch:
		return fmt.Sprintf("branch, %d cases", len(s.Cases))
	case StepSplit:
		exp := s.Experiment
		if exp == "" {
			exp = s.ID
		}
		return "split " + exp
	case StepAudience:
		if s.Add != "" {
			return "add to " + s.Add
		}
		return "remove from " + s.Remove
	case StepSetTrait:
		return "set " + s.Trait
	case StepPass:
		fields := slices.Sorted(maps.Keys(s.Fields))
		return strings.TrimSpace("update pass " + strings.Join(fields, ", "))
	case StepExit:
		return "exit"
	}
	return s.Kind
}
