package main

import (
	"fmt"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
)

// getJourney is GET /v1/journeys/{id}: the summary, the counters of each
// step, the results of the journey's experiments (its splits and the
// global holdout: journeys.ExperimentResult) and the file.
func (a *api) getJourney(c *fiber.Ctx) error {
	id := pathParam(c, "id")
	j := a.core.journeys.Set().Journey(id)
	if j == nil {
		return &httpError{fiber.StatusNotFound, fmt.Sprintf("no journey %q", id)}
	}
	s, counts, err := a.summary(j)
	if err != nil {
		return err
	}
	steps := make([]stepView, 0, len(j.Steps))
	for _, st := range j.Steps {
		sc := journeys.StepCounts{"entered": 0, "waiting": 0, "sent": 0, "suppressed": 0, "exited": 0}
		for k, v := range counts[st.ID] {
			sc[k] = v
		}
		steps = append(steps, stepView{ID: st.ID, Kind: st.Kind, Next: st.Next, Counts: sc})
	}
	exps, err := a.core.journeys.Experiments(j)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"journey": s, "steps": steps, "experiments": exps, "definition": string(j.Source)})
}
