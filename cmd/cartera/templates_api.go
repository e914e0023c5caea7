package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"cartera/channels/email"
	"cartera/profiles"
)

// maxTestSendBytes bounds a test send's request body.
const maxTestSendBytes = 64 << 10

// testSendRequest is the body of POST /v1/templates/{name}/test.
type testSendRequest struct {
	// To is the address the test goes to (the tester's).
	To string `json:"to"`
	// Profile, as kind:value, is whose data the template sees; empty: a
	// sample person.
	Profile string `json:"profile"`
	Locale  string `json:"locale"`
	// Data is a send's payload data: "trigger" (an event's properties),
	// "links", anything else in .Vars.
	Data map[string]any `json:"data"`
}

// testTemplate renders an email template with a person's data and sends
// it once to the given address, marked as a test. It goes straight
// through the email sender, not the outbox: the sender records no
// outcome event, journeys never see it, so it is in no statistics and
// counts toward no frequency cap (see email.Sender.SendTest).
func (a *api) testTemplate(c *fiber.Ctx) error {
	name := pathParam(c, "name")
	if len(c.Body()) > maxTestSendBytes {
		return &httpError{fiber.StatusRequestEntityTooLarge, fmt.Sprintf("body: over %d bytes", maxTestSendBytes)}
	}
	var req testSendRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return &httpError{fiber.StatusBadRequest, "body: want {\"to\": address, \"profile\": \"kind:value\", \"locale\": \"es\", \"data\": {...}}"}
	}
	if req.To == "" {
		return &httpError{fiber.StatusBadRequest, "to: required: the address the test goes to"}
	}
	if a.core == nil || a.core.delivery == nil || a.core.delivery.email == nil {
		return &httpError{fiber.StatusNotFound, fmt.Sprintf("template %q: email is not set up (the config names no channels.email.templates)", name)}
	}
	test := email.Test{To: req.To, Template: name, Locale: req.Locale, Data: req.Data}
	if req.Profile != "" {
		id, err := profiles.ParseIdentifier(req.Profile)
		if err != nil {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("profile: %v", err)}
		}
		p, err := a.store.Lookup(id)
		if errors.Is(err, profiles.ErrNotFound) {
			return &httpError{fiber.StatusNotFound, "profile: no profile holds that identifier"}
		} else if err != nil {
			return err
		}
		test.Person = channelProfile(p)
	}
	res, err := a.core.delivery.email.SendTest(c.UserContext(), test)
	switch {
	case errors.Is(err, email.ErrUnknownTemplate):
		return &httpError{fiber.StatusNotFound, fmt.Sprintf("template %q: no such email template", name)}
	case errors.Is(err, email.ErrBadAddress):
		return &httpError{fiber.StatusBadRequest, err.Error()}
	case errors.Is(err, email.ErrRender):
		return &httpError{fiber.StatusUnprocessableEntity, fmt.Sprintf("template %q, locale %q: %v", name, req.Locale, err)}
	case errors.Is(err, email.ErrNotSent):
		a.log.Warn("test email not sent", "template", name, "err", err)
		return &httpError{fiber.StatusBadGateway, fmt.Sprintf("template %q: %v", name, err)}
	case err != nil:
		return err
	}
	a.log.Info("test email sent", "template", name, "locale", res.Locale)
	return c.JSON(struct {
		Success  bool   `json:"success"`
		Template string `json:"template"`
		*email.TestResult
	}{true, name, res})
}
