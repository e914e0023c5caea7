package main

import (
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"

	"cartera/profiles"
)

// Browser SDKs send from a shop's pages, on another origin than the
// gateway's, so ingestion answers CORS: a preflight (OPTIONS) for the
// origins some source allows, and Access-Control-Allow-Origin on the
// answers. A preflight carries no write key, so it is answered for the
// union of the sources' allowed_origins; the request itself is then held
// to the allowed_origins of the source its key belongs to (checkOrigin).
// Administration, the wallet web service, tracking links and the console
// register no CORS at all: a page elsewhere can never read their answers.

// corsMaxAge is how long a browser may keep a preflight's answer, in
// seconds. Chromium caps it at two hours, Firefox at a day.
const corsMaxAge = 7200

// corsAllowHeaders are the request headers the browser SDKs send: Segment's
// analytics-next (Authorization with the write key, X-Retry-Count) and
// RudderStack's analytics-js (AnonymousId and SentAt on every event, the
// Rsa-* headers on a retry).
const corsAllowHeaders = "Content-Type, Authorization, Content-Encoding, X-Retry-Count, AnonymousId, SentAt, " +
	"Rsa-Recovered, Rsa-Retry-Attempt, Rsa-Retry-Reason, Rsa-Since-First-Attempt, Rsa-Since-Last-Attempt"

// ingestTypes are the message types with a path of their own: /v1/<type>,
// and /v1/<first letter> where analytics-next posts (`${apiHost}/${type[0]}`).
var ingestTypes = [...]string{
	profiles.TypeTrack, profiles.TypeIdentify, profiles.TypePage,
	profiles.TypeScreen, profiles.TypeGroup, profiles.TypeAlias,
}

// ingestRoutes registers the Segment Tracking API, the paths browser SDKs
// use for it, and RudderStack's source configuration, each with CORS.
func (a *api) ingestRoutes(app *fiber.App) {
	post := a.corsHandler(fiber.MethodPost)
	for _, t := range ingestTypes {
		h := a.ingest(t)
		a.ingestRoute(app, post, "/v1/"+t, h)
		a.ingestRoute(app, post, "/v1/"+t[:1], h)
	}
	batch := a.ingest("")
	a.ingestRoute(app, post, "/v1/batch", batch)
	// analytics-next's batching delivery.
	a.ingestRoute(app, post, "/v1/b", batch)
	// RudderStack's beacon transport: navigator.sendBeacon on page hide,
	// the write key in the query string.
	a.ingestRoute(app, post, "/beacon/v1/batch", batch)

	get := a.corsHandler(fiber.MethodGet)
	app.Options(rudderConfigPath, get, allowOnly(fiber.MethodGet))
	app.Get(rudderConfigPath, get, a.rudderSourceConfig)
}

func (a *api) ingestRoute(app *fiber.App, mw fiber.Handler, path string, h fiber.Handler) {
	app.Options(path, mw, allowOnly(fiber.MethodPost))
	app.Post(path, mw, a.limits.ingestLimit(a.sources), h)
}

// corsHandler answers preflights and sets Access-Control-Allow-Origin for
// an origin some source allows: the origin itself, with Vary: Origin, also
// for a source that allows "*". Credentials are not allowed: the write key
// authenticates, never a cookie. An origin no source allows gets no CORS
// header at all, and its preflight a 403.
func (a *api) corsHandler(methods string) fiber.Handler {
	allowed := cors.New(cors.Config{
		AllowOriginsFunc: func(origin string) bool { return a.sources.AnyAllowsOrigin(origin) },
		AllowMethods:     methods,
		AllowHeaders:     corsAllowHeaders,
		MaxAge:           corsMaxAge,
	})
	return func(c *fiber.Ctx) error {
		origin := c.Get(fiber.HeaderOrigin)
		if origin == "" || a.sources.AnyAllowsOrigin(origin) {
			return allowed(c)
		}
		c.Vary(fiber.HeaderOrigin)
		if c.Method() == fiber.MethodOptions && c.Get(fiber.HeaderAccessControlRequestMethod) != "" {
			return &httpError{fiber.StatusForbidden, fmt.Sprintf("origin %s: no source allows it (sources[].allowed_origins)", quoteOrigin(origin))}
		}
		return c.Next()
	}
}

// allowOnly answers an OPTIONS that is not a CORS preflight (the CORS
// handler answers those itself) with the methods of the path.
func allowOnly(method string) fiber.Handler {
	allow := method + ", " + fiber.MethodOptions
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderAllow, allow)
		return c.SendStatus(fiber.StatusNoContent)
	}
}

// checkOrigin refuses a browser request from a page on an origin that the
// authenticated source does not allow, and takes back the
// Access-Control-Allow-Origin that the preflight union granted. Requests
// without an Origin (servers, apps, tills) pass.
func (a *api) checkOrigin(c *fiber.Ctx, source string) error {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || a.sources.AllowsOrigin(source, origin) {
		return nil
	}
	h := &c.Response().Header
	for _, k := range []string{fiber.HeaderAccessControlAllowOrigin, fiber.HeaderAccessControlAllowMethods,
		fiber.HeaderAccessControlAllowHeaders, fiber.HeaderAccessControlMaxAge, fiber.HeaderAccessControlExposeHeaders} {
		h.Del(k)
	}
	return &httpError{fiber.StatusForbidden, fmt.Sprintf("origin %s may not send with the write key of source %s: add it to sources[].allowed_origins (or CARTERA_ALLOWED_ORIGINS)", quoteOrigin(origin), source)}
}

// quoteOrigin quotes an Origin header for an error message, cut short.
func quoteOrigin(origin string) string {
	if len(origin) > 200 {
		origin = origin[:200] + "..."
	}
	return strconv.Quote(origin)
}
