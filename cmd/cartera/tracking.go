package main

import (
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/channels/email"
	"cartera/profiles"
)

// newOpenCounter counts open pixels served for a valid token, first opens
// apart from repeats (a mail client loading the pixel again, or a replay).
func newOpenCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cartera_email_opens_total",
		Help: "Open pixels of tracked mail served for a valid token, by whether it was the message's first open.",
	}, []string{"open"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// trackOpen answers the open pixel and records Email Opened, once per
// message: repeat opens are counted in cartera_email_opens_total, not
// added to the person's events.
func (a *api) trackOpen(c *fiber.Ctx) error {
	tr, err := a.tracker()
	if err != nil {
		return err
	}
	if ti, err := tr.Open(c.Params("token")); err == nil {
		a.tracked(c, ti)
	}
	// The pixel is served either way: a mail client shows no broken image.
	c.Set(fiber.HeaderCacheControl, "no-store, max-age=0")
	c.Set(fiber.HeaderContentType, "image/gif")
	return c.Send(email.PixelGIF())
}

// trackClick records Email Link Clicked and redirects to the URL sealed
// into the link (and only there).
func (a *api) trackClick(c *fiber.Ctx) error {
	tr, err := a.tracker()
	if err != nil {
		return err
	}
	ti, err := tr.Click(c.Params("token"))
	if errors.Is(err, email.ErrExpiredToken) {
		return &httpError{fiber.StatusGone, "this link has expired"}
	}
	if err != nil {
		return &httpError{fiber.StatusNotFound, "unknown link"}
	}
	a.tracked(c, ti)
	return c.Redirect(ti.URL, fiber.StatusFound)
}

// tracked ingests what a tracking link says happened. An open is keyed by
// its message alone, so the store keeps the first and drops repeats; each
// click is an event of its own, and so is an unsubscribe that changes
// something (a person who subscribed again and unsubscribes again from the
// same mail must be unsubscribed again; a second click while unsubscribed
// records nothing more).
func (a *api) tracked(c *fiber.Ctx, ti *email.TokenInfo) {
	o := ti.Outcome()
	props := map[string]any{"journey": ti.Journey, "step": ti.Step, "template": ti.Template}
	for k, v := range o.Properties {
		props[k] = v
	}
	at := strconv.FormatInt(a.now().UnixNano(), 36)
	id := "track:" + ti.Kind + ":" + ti.Key
	if ti.Kind != email.KindOpen {
		id += ":" + at
	}
	ev := &profiles.Event{Type: profiles.TypeTrack, Event: o.Event, Properties: props, Source: "email", MessageID: id}
	res, err := a.store.IngestFor(c.UserContext(), ti.ProfileID, ev)
	if err != nil && !errors.Is(err, profiles.ErrNotFound) {
		a.log.Error("record tracked event", "event", o.Event, "profile", ti.ProfileID, "err", err)
	}
	if ti.Kind == email.KindOpen && err == nil && a.opens != nil {
		if res.Duplicate {
			a.opens.WithLabelValues("repeat").Inc()
		} else {
			a.opens.WithLabelValues("first").Inc()
		}
	}
	if len(o.Consent) > 0 && !a.alreadyWithdrawn(ti.ProfileID, o.Consent) {
		cons := map[string]any{}
		for k, v := range o.Consent {
			cons[k] = v
		}
		ev := &profiles.Event{Type: profiles.TypeTrack, Event: profiles.EventConsentUpdated, Properties: cons, Source: "email",
			MessageID: "unsubscribe:" + ti.Key + ":" + at}
		if _, err := a.store.IngestFor(c.UserContext(), ti.ProfileID, ev); err != nil && !errors.Is(err, profiles.ErrNotFound) {
			a.log.Error("record unsubscribe", "profile", ti.ProfileID, "err", err)
		}
	}
}

// alreadyWithdrawn reports whether every consent an outcome withdraws is
// withdrawn already (a second click on the same unsubscribe link): then
// nothing more is recorded.
func (a *api) alreadyWithdrawn(profileID string, consent map[string]bool) bool {
	p, err := a.store.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: profileID})
	if err != nil {
		return false
	}
	for purpose, granted := range consent {
		cur, said := p.Consent[purpose]
		if granted || !said || cur.Granted {
			return false
		}
	}
	return true
}

func (a *api) tracker() (*email.Tracker, error) {
	if a.core == nil || a.core.delivery == nil {
		return nil, &httpError{fiber.StatusNotFound, "tracking is off"}
	}
	return a.core.delivery.tracker, nil
}
