package main

// The journeys API: list, one journey with its step counts, reload.

import (
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
	"cartera/rules"
)

// journeySummary describes a journey for the list.
type journeySummary struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	Category  string `json:"category"`
	Priority  int    `json:"priority"`
	Trigger   string `json:"trigger"`
	File      string `json:"file"`
	Entered   int64  `json:"entered"`
	Waiting   int64  `json:"waiting"`
	Converted int64  `json:"converted"`
	// EvalErrors counts conditions and values that failed to evaluate.
	EvalErrors int64 `json:"eval_errors"`
	// Revenue is the sum of the goal events' revenue (Segment's revenue
	// property), attributed to the journey at conversion.
	Revenue float64 `json:"revenue"`
}

func triggerText(t journeys.Trigger) string {
	switch {
	case t.Event != "":
		return "event: " + t.Event
	case t.AudienceEnter != "":
		return "audience enter: " + t.AudienceEnter
	case t.AudienceExit != "":
		return "audience exit: " + t.AudienceExit
	case t.Cron != "":
		return fmt.Sprintf("schedule: %s (%s) over %s", t.Cron, t.Location, t.Audience)
	}
	return ""
}

func (a *api) summary(j *journeys.Journey) (journeySummary, map[string]journeys.StepCounts, error) {
	counts, err := a.core.journeys.Counts(j.ID)
	if err != nil {
		return journeySummary{}, nil, err
	}
	s := journeySummary{ID: j.ID, Name: j.Name, Version: j.Version, Category: j.Category, Priority: j.Priority,
		Trigger: triggerText(j.Trigger), File: j.File, Entered: counts[""]["entered"], Converted: counts[""]["converted"],
		EvalErrors: counts[""]["eval_errors"], Revenue: float64(counts[""]["revenue_cents"]) / 100}
	for step, c := range counts {
		if step != "" {
			s.Waiting += c["waiting"]
		}
	}
	return s, counts, nil
}

func (a *api) listJourneys(c *fiber.Ctx) error {
	set := a.core.journeys.Set()
	out := make([]journeySummary, 0, len(set.Journeys))
	for _, j := range set.Journeys {
		s, _, err := a.summary(j)
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	return c.JSON(fiber.Map{"journeys": out})
}

// stepView is one step with its counters.
type stepView struct {
	ID     string              `json:"id"`
	Kind   string              `json:"kind"`
	Next   string              `json:"next,omitempty"`
	Counts journeys.StepCounts `json:"counts"`
}

// fileChangeView is a file a reload changes, in the API's answer.
type fileChangeView struct {
	File    string `json:"file"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
	// Diff is the change as diff -u text, in force against on disk.
	Diff string `json:"diff"`
}

// reloadJourneys compiles the files again; a broken file never replaces a
// working version, and the answer lists every error. With dry_run=true it
// only compiles and checks them. Either way the answer lists the files
// that change, with their line diffs.
func (a *api) reloadJourneys(c *fiber.Ctx) error {
	dry := c.QueryBool("dry_run")
	res, err := a.core.reloadOrCheck(c.UserContext(), dry)
	return reloadAnswer(c, res, err, dry)
}

// reloadAnswer is the answer to a reload (or a dry run) that gave res or
// failed with err.
func reloadAnswer(c *fiber.Ctx, res *reloadResult, err error, dry bool) error {
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = e.Error()
		}
		msg := "reload refused: the running versions stay"
		if dry {
			msg = "the files have mistakes: a reload would be refused"
		}
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"success": false, "error": msg, "errors": msgs})
	}
	if err != nil {
		return err
	}
	changes := make([]fileChangeView, 0, len(res.changes))
	for _, fc := range res.changes {
		changes = append(changes, fileChangeView{File: fc.File, Kind: fc.Kind, Status: fc.Status, Added: fc.Added, Removed: fc.Removed, Diff: fc.Unified()})
	}
	versions := res.versions
	if versions == nil {
		versions = []journeyVersion{}
	}
	out := fiber.Map{"success": true, "journeys": versions, "changes": changes}
	if dry {
		out["dry_run"] = true
	}
	return c.JSON(out)
}

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
