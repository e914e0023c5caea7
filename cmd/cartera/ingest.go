package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"cartera/profiles"
)

// planError is a tracking plan refusal, with the index in a batch.
type planError struct {
	prefix string
	v      profiles.Violation
}

func (e planError) Error() string {
	if e.prefix == "" {
		return e.v.Error()
	}
	return e.prefix + "." + e.v.Error()
}

// ingest handles one Segment endpoint; typ "" is the batch endpoint.
func (a *api) ingest(typ string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		received := a.now()
		body, err := requestBody(c)
		if err != nil {
			a.metrics.Rejected.WithLabelValues("unknown", "too_large").Inc()
			return err
		}
		source, err := a.authenticate(c, body)
		if err != nil {
			a.metrics.Rejected.WithLabelValues("unknown", "unauthorized").Inc()
			return err
		}
		if err := a.checkOrigin(c, source); err != nil {
			a.metrics.Rejected.WithLabelValues(source, "origin").Inc()
			return err
		}
		opts := profiles.DecodeOptions{Type: typ, Source: source, ReceivedAt: received, NewID: a.newID, MaxSkew: a.maxSkew}
		var events []*profiles.Event
		if typ == "" {
			events, err = profiles.DecodeBatch(body, opts)
		} else {
			var e *profiles.Event
			if e, err = profiles.Decode(body, opts); err == nil {
				events = []*profiles.Event{e}
			}
		}
		if err != nil {
			reason := "invalid"
			if errors.Is(err, profiles.ErrTooLarge) {
				reason = "too_large"
			}
			a.metrics.Rejected.WithLabelValues(source, reason).Inc()
			return err
		}
		if err := a.sources.CheckTrust(source, typ == "", events); err != nil {
			a.metrics.Rejected.WithLabelValues(source, "source_trust").Inc()
			return err
		}
		if err := a.checkPlan(source, typ == "", events); err != nil {
			a.metrics.Rejected.WithLabelValues(source, "tracking_plan").Inc()
			return err
		}
		offset, err := a.appendTo().Append(c.UserContext(), events)
		if err != nil {
			return a.appendFailed(c, source, err)
		}
		setAccepted(c, len(events))
		if offset == 0 {
			// No event log (applied synchronously): there is no offset.
			return c.JSON(fiber.Map{"success": true})
		}
		return c.JSON(fiber.Map{"success": true, "offset": offset})
	}
}

// checkPlan applies the source's tracking plan: in strict mode the first
// violation refuses the request, in warn mode all are counted.
func (a *api) checkPlan(source string, batch bool, events []*profiles.Event) error {
	plan := a.sources.Plan(source)
	if plan == nil {
		return nil
	}
	for i, e := range events {
		vs := plan.Check(e)
		for _, v := range vs {
			a.metrics.PlanViolations.WithLabelValues(source, v.Reason).Inc()
		}
		if len(vs) > 0 && plan.Mode == profiles.PlanStrict {
			prefix := ""
			if batch {
				prefix = fmt.Sprintf("batch[%d]", i)
			}
			return planError{prefix: prefix, v: vs[0]}
		}
	}
	return nil
}

// eventAppender acknowledges events: profiles.Store (its event log), or a
// cluster node's routerAppender. It returns the offset of the last one (0:
// applied at once, with no log).
type eventAppender interface {
	Append(ctx context.Context, events []*profiles.Event) (uint64, error)
}

// appendTo is where ingestion acknowledges events.
func (a *api) appendTo() eventAppender {
	if a.events != nil {
		return a.events
	}
	return a.store
}
