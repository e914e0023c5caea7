package main

import (
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"cartera/channels/email"
	"cartera/profiles"
)

// confirmUnsubscribe answers the unsubscribe POST after reading the person
// back: the page says "Unsubscribed" only when their email consent is now
// withdrawn (or they were erased, so nothing is sent to them), and asks to
// try again otherwise, with a 500 that a mail client's one-click request
// reports as a failure.
func (a *api) confirmUnsubscribe(c *fiber.Ctx, ti *email.TokenInfo) error {
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	p, err := a.store.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: ti.ProfileID})
	switch {
	case errors.Is(err, profiles.ErrNotFound):
	case err != nil:
		a.log.Error("unsubscribe: read profile back", "profile", ti.ProfileID, "err", err)
		return a.unsubscribeFailed(c)
	default:
		if cons, said := p.Consent["email"]; !said || cons.Granted {
			a.log.Error("unsubscribe: email consent not withdrawn", "profile", ti.ProfileID)
			return a.unsubscribeFailed(c)
		}
	}
	return c.SendString(fmt.Sprintf(unsubscribeHTML, "Unsubscribed", "You will not get these emails any more.", ""))
}

func (a *api) unsubscribeFailed(c *fiber.Ctx) error {
	return c.Status(fiber.StatusInternalServerError).SendString(fmt.Sprintf(unsubscribeHTML, "Not unsubscribed yet",
		"Something went wrong and you are still subscribed. Please try again.",
		`<form method="post"><button type="submit">Try again</button></form>`))
}
