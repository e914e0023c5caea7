package main

import (
	"encoding/json"

	"cartera/profiles"
)

// mainIdentifier is how a reader knows a person: their user id, else an
// email, else an anonymous id ("" when the profile is gone).
func mainIdentifier(st *profiles.Store, profileID string) string {
	p, err := st.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: profileID})
	if err != nil {
		return ""
	}
	for _, kind := range []string{profiles.KindUserID, profiles.KindEmail, profiles.KindAnonymousID} {
		for _, r := range p.Identities {
			if r.Kind == kind {
				return r.Value
			}
		}
	}
	return ""
}

// personLine is simulate --people's line: one person and the journeys they
// went through, in the order they entered them.
type personLine struct {
	Profile  string         `json:"profile"`
	Person   string         `json:"person"`
	Journeys []journeyTrail `json:"journeys"`
	// Conversions are the sales sent back to the ad platforms, as
	// "<destination>:<order id>" (held-back ones are not listed).
	Conversions []string `json:"conversions,omitempty"`
}

// journeyTrail is what one person did in one journey: the steps they
// reached, how many of each action, and how it ended.
type journeyTrail struct {
	Journey string         `json:"journey"`
	Steps   []string       `json:"steps"`
	Actions map[string]int `json:"actions"`
	Exit    string         `json:"exit,omitempty"`
}

// peopleReport gathers simulate's actions by person.
type peopleReport struct {
	order []string
	lines map[string]*personLine
}

func (r *peopleReport) add(l simLine) {
	if r.lines == nil {
		r.lines = map[string]*personLine{}
	}
	p := r.lines[l.Profile]
	if p == nil {
		p = &personLine{Profile: l.Profile, Journeys: []journeyTrail{}}
		r.lines[l.Profile] = p
		r.order = append(r.order, l.Profile)
	}
	if l.Person != "" {
		p.Person = l.Person
	}
	if l.Journey == "" {
		if d, ok := l.Detail.(ConversionDetail); ok && l.Action == actConversion {
			p.Conversions = append(p.Conversions, d.Destination+":"+d.OrderID)
		}
		return
	}
	var t *journeyTrail
	for i := range p.Journeys {
		if p.Journeys[i].Journey == l.Journey {
			t = &p.Journeys[i]
		}
	}
	if t == nil || l.Action == "enter" && t.Exit != "" {
		p.Journeys = append(p.Journeys, journeyTrail{Journey: l.Journey, Actions: map[string]int{}})
		t = &p.Journeys[len(p.Journeys)-1]
	}
	t.Actions[l.Action]++
	if l.Step != "" && (len(t.Steps) == 0 || t.Steps[len(t.Steps)-1] != l.Step) {
		t.Steps = append(t.Steps, l.Step)
	}
	if l.Action == "exit" {
		if b, err := json.Marshal(l.Detail); err == nil {
			var d struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(b, &d)
			t.Exit = d.Reason
		}
	}
}

func (r *peopleReport) write(out *json.Encoder) error {
	for _, id := range r.order {
		if err := out.Encode(r.lines[id]); err != nil {
			return err
		}
	}
	return nil
}
