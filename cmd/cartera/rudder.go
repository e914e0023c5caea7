package main

import (
	"github.com/gofiber/fiber/v2"
)

// rudderConfigPath is where RudderStack's browser SDK (@rudderstack/analytics-js)
// asks its control plane for the source's configuration before it sends
// anything: `${configUrl}/sourceConfig/?p=...&v=...&writeKey=...`, with the
// write key as HTTP Basic user too. With the load option configUrl set to
// the gateway's URL the SDK asks Cartera, which answers for the source the
// write key belongs to.
const rudderConfigPath = "/sourceConfig"

// rudderSourceConfig answers the SDK's source configuration request: the
// source is enabled and has no device-mode destinations, so the SDK loads
// no integration from a CDN and sends every event to the data plane (the
// gateway), and its error and metrics reporting to RudderStack stay off.
func (a *api) rudderSourceConfig(c *fiber.Ctx) error {
	source, err := a.authenticate(c, nil)
	if err != nil {
		return err
	}
	if err := a.checkOrigin(c, source); err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	off := fiber.Map{"enabled": false}
	return c.JSON(fiber.Map{
		"isHosted": false,
		"source": fiber.Map{
			"id":           source,
			"name":         source,
			"enabled":      true,
			"workspaceId":  "cartera",
			"config":       fiber.Map{"statsCollection": fiber.Map{"errors": off, "metrics": off}},
			"destinations": []any{},
		},
	})
}
