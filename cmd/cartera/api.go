package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/channels/email"
	"cartera/cmd/cartera/console"
	"cartera/profiles"
	"cartera/rules"
)

// api holds what the HTTP handlers need. It is the only place that knows
// Fiber; the packages below it never see a request.
type api struct {
	store *profiles.Store
	// events is where ingestion acknowledges events, when not store (a
	// cluster node's: node.go).
	events  eventAppender
	rules   *rules.Engine
	core    *app
	sources *profiles.Sources
	metrics *profiles.Metrics
	log     *slog.Logger
	admin   tokenCheck
	now     func() time.Time
	newID   func() string
	gather  prometheus.Gatherer
	// clock is the dev clock, nil unless dev_clock is on.
	clock *devClock
	// maxSkew is profiles.max_clock_skew.
	maxSkew time.Duration
	// opens counts open pixels, first and repeat (nil: not counted).
	opens *prometheus.CounterVec
	// console is the web console under /console (nil: not mounted).
	console *console.Console
	// readAfter, when set, waits until the store has applied what was
	// acknowledged before the request (a cluster node's partition core:
	// its partition's records in the stream); nil: the store's own log.
	readAfter func(ctx context.Context) error
	// reloader reloads a cluster node's definitions (node_reload.go).
	reloader *nodeReloader
	// metricsElsewhere: /metrics has its own listener (metrics_addr).
	metricsElsewhere bool
	// limits are the rate limits and connection caps of the edge.
	limits *edgeLimits
	// people sends requests about a person to the node holding them (a
	// cluster node's; nil otherwise: forward.go).
	people *personForwarder
	// clusterBackup takes backups of the cluster's streams (a cluster
	// node's GET /v1/admin/backup; node_backup.go).
	clusterBackup *clusterBackup
	// clockMoved, when set, is called after the dev clock moved (a
	// cluster node tells the others and wakes its cores).
	clockMoved func() error
}

// httpError is an error with the status the edge answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// StatusCode is the answer's status (the console answers with it too).
func (e *httpError) StatusCode() int { return e.status }

func (a *api) routes() *fiber.App {
	app := a.newApp()
	a.ingestRoutes(app)
	v1 := app.Group("/v1")

	app.Get(email.OpenPath+":token", a.caughtUp, a.trackOpen)
	app.Get(email.ClickPath+":token", a.caughtUp, a.trackClick)
	app.Get(email.UnsubscribePath+":token", securePage, a.caughtUp, a.unsubscribePage)
	app.Post(email.UnsubscribePath+":token", securePage, a.caughtUp, a.unsubscribe)

	v1.Get("/outbox", a.requireAdmin, a.listOutbox)
	v1.Post("/outbox/:seq/retry", a.requireAdmin, a.retryOutbox)
	v1.Delete("/outbox/:seq", a.requireAdmin, a.dropOutbox)
	v1.Get("/audiences/:id/export.csv", a.requireAdmin, a.exportAudience)
	v1.Get("/journeys", a.requireAdmin, a.listJourneys)
	v1.Post("/journeys/reload", a.requireAdmin, a.reloadJourneys)
	v1.Post("/journeys/backtest", a.requireAdmin, a.backtestJourneys)
	v1.Get("/journeys/:id", a.requireAdmin, a.getJourney)
	v1.Get("/audiences", a.requireAdmin, a.listAudiences)
	v1.Get("/audiences/:id/members", a.requireAdmin, a.audienceMembers)
	v1.Get("/admin/backup", a.requireAdmin, a.backup)
	v1.Post("/templates/:name/test", a.requireAdmin, a.testTemplate)

	a.walletRoutes(app)
	if a.console != nil {
		// Console pages are admin reads: they show every event
		// acknowledged before them (read-your-writes).
		app.Use("/console", a.caughtUp)
		a.console.Mount(app)
	}
	v1.Get("/admin/clock", a.requireAdmin, a.getClock)
	v1.Post("/admin/clock", a.requireAdmin, a.advanceClock)
	adm := v1.Group("/profiles", a.requireAdmin)
	adm.Get("/:ident/export", a.exportProfile)
	adm.Get("/:ident", a.getProfile)
	adm.Delete("/:ident", a.eraseProfile)
	return app
}

// newApp is the fiber app of every route: its limits, transport headers,
// /healthz and /metrics.
func (a *api) newApp() *fiber.App {
	if a.limits == nil {
		a.limits = newEdgeLimits(DefaultLimitsConfig(), nil)
	}
	fcfg := fiber.Config{
		// Fiber's limit is set well above the batch limit: past it fasthttp
		// closes the connection unread, and clients often see a reset
		// instead of the 413. Up to it, the handler answers a clean 413.
		BodyLimit:             4 * profiles.MaxBatchBytes,
		DisableStartupMessage: true,
		// Paths are matched raw and parameters unescaped by the handlers,
		// so an identifier may hold a '/' (%2F).
		ErrorHandler: a.errorHandler,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  120 * time.Second,
	}
	a.limits.fiberConfig(&fcfg)
	app := fiber.New(fcfg)
	guardEdge(app)
	a.limits.serverConfig(app.Server())
	app.Use(transportHeaders, a.limits.edge)
	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	a.metricsRoute(app)
	return app
}

// errorHandler maps every error to a status and the Segment-style JSON body.
func (a *api) errorHandler(c *fiber.Ctx, err error) error {
	status, msg := fiber.StatusInternalServerError, "internal error"
	var (
		he *httpError
		ve *profiles.ValidationError
		fe *fiber.Error
		pv planError
	)
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.Is(err, profiles.ErrTooLarge):
		status, msg = fiber.StatusRequestEntityTooLarge, err.Error()
	case errors.As(err, &ve):
		status, msg = fiber.StatusBadRequest, ve.Error()
	case errors.As(err, &pv):
		status, msg = fiber.StatusBadRequest, pv.Error()
	case errors.Is(err, profiles.ErrNotFound):
		status, msg = fiber.StatusNotFound, "no profile holds that identifier"
	case errors.Is(err, rules.ErrUnknownAudience):
		status, msg = fiber.StatusNotFound, err.Error()
	case errors.Is(err, profiles.ErrUnknownKind):
		status, msg = fiber.StatusBadRequest, err.Error()
	case errors.Is(err, profiles.ErrClosed), errors.Is(err, context.Canceled):
		status, msg = fiber.StatusServiceUnavailable, "shutting down: retry"
	case errors.As(err, &fe):
		status, msg = fe.Code, fe.Message
		if status == fiber.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("request body over %d bytes", profiles.MaxBatchBytes)
		}
	}
	if status >= 500 && status != fiber.StatusServiceUnavailable {
		a.log.Error("request failed", "method", c.Method(), "path", c.Route().Path, "err", err)
	}
	return c.Status(status).JSON(fiber.Map{"success": false, "error": msg})
}

// tokenCheck compares a bearer token with the admin token in constant time.
type tokenCheck struct {
	hash [32]byte
	set  bool
}

func newTokenCheck(token string) tokenCheck {
	return tokenCheck{hash: sha256.Sum256([]byte(token)), set: token != ""}
}

func (t tokenCheck) ok(token string) bool {
	h := sha256.Sum256([]byte(token))
	return t.set && subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1
}

// requireAdmin lets through requests with the admin token, once every
// event acknowledged before them is applied (the admin API reads its
// writes).
func (a *api) requireAdmin(c *fiber.Ctx) error {
	if err := a.checkAdmin(c); err != nil {
		return err
	}
	return a.caughtUp(c)
}

// adminOnly lets through requests with the admin token at once: for what
// must answer while applying lags (the metrics that show the lag).
func (a *api) adminOnly(c *fiber.Ctx) error {
	if err := a.checkAdmin(c); err != nil {
		return err
	}
	return c.Next()
}

func (a *api) checkAdmin(c *fiber.Ctx) error {
	scheme, token, _ := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
	if !strings.EqualFold(scheme, "Bearer") || !a.admin.ok(strings.TrimSpace(token)) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="cartera admin"`)
		return &httpError{fiber.StatusUnauthorized, "admin API: want Authorization: Bearer <admin token>"}
	}
	return nil
}

// pathParam returns a path parameter, percent-decoded.
func pathParam(c *fiber.Ctx, name string) string {
	raw := c.Params(name)
	if v, err := url.PathUnescape(raw); err == nil {
		return v
	}
	return raw
}

const defaultProfileEvents = 100

const (
	defaultPage = 100
	maxPage     = 1000
)

const unsubscribeHTML = `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Unsubscribe</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto"><h1>%s</h1><p>%s</p>%s</body></html>`

func (a *api) unsubscribePage(c *fiber.Ctx) error {
	tr, err := a.tracker()
	if err != nil {
		return err
	}
	if _, err := tr.Parse(c.Params("token")); err != nil {
		return &httpError{fiber.StatusNotFound, "unknown link"}
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.SendString(fmt.Sprintf(unsubscribeHTML, "Unsubscribe", "Stop receiving these emails?",
		`<form method="post"><button type="submit">Unsubscribe</button></form>`))
}

// unsubscribe is the one-click (RFC 8058) and the page's button: email
// consent becomes false, as an event on the profile.
func (a *api) unsubscribe(c *fiber.Ctx) error {
	tr, err := a.tracker()
	if err != nil {
		return err
	}
	ti, err := tr.Unsubscribe(c.Params("token"))
	if err != nil {
		return &httpError{fiber.StatusNotFound, "unknown link"}
	}
	a.tracked(c, ti)
	return a.confirmUnsubscribe(c, ti)
}
