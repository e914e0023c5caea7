package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cartera/channels"
	"cartera/channels/email"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

// api holds what the HTTP handlers need. It is the only place that knows
// Fiber; the packages below it never see a request.
type api struct {
	store   *profiles.Store
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
}

// httpError is an error with the status the edge answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func (a *api) routes() *fiber.App {
	app := fiber.New(fiber.Config{
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
	})
	guardEdge(app)
	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(a.gather, promhttp.HandlerOpts{})))

	v1 := app.Group("/v1")
	for _, t := range []string{profiles.TypeTrack, profiles.TypeIdentify, profiles.TypePage, profiles.TypeScreen, profiles.TypeGroup, profiles.TypeAlias} {
		v1.Post("/"+t, a.ingest(t))
	}
	v1.Post("/batch", a.ingest(""))

	app.Get(email.OpenPath+":token", a.caughtUp, a.trackOpen)
	app.Get(email.ClickPath+":token", a.caughtUp, a.trackClick)
	app.Get(email.UnsubscribePath+":token", a.caughtUp, a.unsubscribePage)
	app.Post(email.UnsubscribePath+":token", a.caughtUp, a.unsubscribe)

	v1.Get("/outbox", a.requireAdmin, a.listOutbox)
	v1.Post("/outbox/:seq/retry", a.requireAdmin, a.retryOutbox)
	v1.Delete("/outbox/:seq", a.requireAdmin, a.dropOutbox)
	v1.Get("/audiences/:id/export.csv", a.requireAdmin, a.exportAudience)
	v1.Get("/journeys", a.requireAdmin, a.listJourneys)
	v1.Post("/journeys/reload", a.requireAdmin, a.reloadJourneys)
	v1.Get("/journeys/:id", a.requireAdmin, a.getJourney)
	v1.Get("/audiences", a.requireAdmin, a.listAudiences)
	v1.Get("/audiences/:id/members", a.requireAdmin, a.audienceMembers)
	v1.Get("/admin/backup", a.requireAdmin, a.backup)
	v1.Post("/templates/:name/test", a.requireAdmin, a.testTemplate)

	a.walletRoutes(app)
	v1.Get("/admin/clock", a.requireAdmin, a.getClock)
	v1.Post("/admin/clock", a.requireAdmin, a.advanceClock)
	adm := v1.Group("/profiles", a.requireAdmin)
	adm.Get("/:ident/export", a.exportProfile)
	adm.Get("/:ident", a.getProfile)
	adm.Delete("/:ident", a.eraseProfile)
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

// requestBody returns the body, inflating gzip (as SDKs may send) within
// the batch limit.
func requestBody(c *fiber.Ctx) ([]byte, error) {
	raw := c.Request().Body()
	if len(raw) > profiles.MaxBatchBytes {
		return nil, fmt.Errorf("request body is %d bytes, limit %d: %w", len(raw), profiles.MaxBatchBytes, profiles.ErrTooLarge)
	}
	enc := strings.ToLower(strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)))
	switch enc {
	case "", "identity":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, &httpError{fiber.StatusBadRequest, "body: invalid gzip: " + err.Error()}
		}
		b, err := io.ReadAll(io.LimitReader(zr, profiles.MaxBatchBytes+1))
		if err != nil {
			return nil, &httpError{fiber.StatusBadRequest, "body: invalid gzip: " + err.Error()}
		}
		if len(b) > profiles.MaxBatchBytes {
			return nil, fmt.Errorf("inflated body over %d bytes: %w", profiles.MaxBatchBytes, profiles.ErrTooLarge)
		}
		return b, nil
	default:
		return nil, &httpError{fiber.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: want gzip or none", enc)}
	}
}

// authenticate finds the source by write key: HTTP Basic user name as
// Segment does, or a writeKey field in the body.
func (a *api) authenticate(c *fiber.Ctx, body []byte) (string, error) {
	key := ""
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return "", &httpError{fiber.StatusUnauthorized, "Authorization: want Basic with the write key as user name"}
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", &httpError{fiber.StatusUnauthorized, "Authorization: invalid base64"}
		}
		key, _, _ = strings.Cut(string(dec), ":")
	}
	if key == "" {
		var w struct {
			WriteKey string `json:"writeKey"`
		}
		_ = json.Unmarshal(body, &w)
		key = w.WriteKey
	}
	if key == "" {
		return "", &httpError{fiber.StatusUnauthorized, "missing write key: send it as the HTTP Basic user name or in writeKey"}
	}
	source, ok := a.sources.Authenticate(key)
	if !ok {
		return "", &httpError{fiber.StatusUnauthorized, "unknown write key"}
	}
	return source, nil
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

func (a *api) requireAdmin(c *fiber.Ctx) error {
	scheme, token, _ := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
	if !strings.EqualFold(scheme, "Bearer") || !a.admin.ok(strings.TrimSpace(token)) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="cartera admin"`)
		return &httpError{fiber.StatusUnauthorized, "admin API: want Authorization: Bearer <admin token>"}
	}
	return a.caughtUp(c)
}

func identParam(c *fiber.Ctx) (profiles.Identifier, error) {
	return profiles.ParseIdentifier(pathParam(c, "ident"))
}

// pathParam returns a path parameter, percent-decoded.
func pathParam(c *fiber.Ctx, name string) string {
	raw := c.Params(name)
	if v, err := url.PathUnescape(raw); err == nil {
		return v
	}
	return raw
}

// profileView is the unified profile as the API shows it.
type profileView struct {
	ID             string                      `json:"id"`
	CreatedAt      time.Time                   `json:"created_at"`
	UpdatedAt      time.Time                   `json:"updated_at"`
	LastSeenAt     time.Time                   `json:"last_seen_at"`
	Identities     []profiles.IdentityRecord   `json:"identities"`
	Traits         map[string]any              `json:"traits"`
	Computed       map[string]any              `json:"computed"`
	Consent        map[string]profiles.Consent `json:"consent"`
	ConsentHistory []profiles.ConsentChange    `json:"consent_history"`
	Audiences      []audienceView              `json:"audiences"`
	Journeys       []journeys.InstanceView     `json:"journeys"`
	Passes         []passView                  `json:"passes"`
	Merges         []profiles.LedgerEntry      `json:"merges"`
	MergedFrom     []string                    `json:"merged_from"`
	EventCount     int                         `json:"event_count"`
	Events         []profiles.Event            `json:"events"`
}

// audienceView is one audience the person is or was in.
type audienceView struct {
	ID string `json:"id"`
	rules.Membership
}

func (a *api) profileView(p *profiles.Profile, events []profiles.Event) (profileView, error) {
	standing, err := a.rules.Standing(p)
	if err != nil {
		return profileView{}, err
	}
	v := newProfileView(p, events)
	v.Computed = standing.Computed
	for _, id := range slices.Sorted(maps.Keys(standing.Audiences)) {
		v.Audiences = append(v.Audiences, audienceView{ID: id, Membership: *standing.Audiences[id]})
	}
	if a.core != nil {
		insts, err := a.core.journeys.Instances(p.ID)
		if err != nil {
			return profileView{}, err
		}
		if insts != nil {
			v.Journeys = insts
		}
	}
	if v.Passes, err = a.passViews(p.ID); err != nil {
		return profileView{}, err
	}
	return v, nil
}

func newProfileView(p *profiles.Profile, events []profiles.Event) profileView {
	v := profileView{
		ID: p.ID, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, LastSeenAt: p.LastSeenAt,
		Identities: p.Identities, Traits: p.TraitValues(), Computed: map[string]any{},
		Consent: p.Consent, ConsentHistory: p.ConsentHistory,
		Audiences: []audienceView{}, Journeys: []journeys.InstanceView{}, Passes: []passView{},
		Merges: p.Ledger, MergedFrom: p.MergedFrom, EventCount: p.EventCount, Events: events,
	}
	if v.Consent == nil {
		v.Consent = map[string]profiles.Consent{}
	}
	if v.ConsentHistory == nil {
		v.ConsentHistory = []profiles.ConsentChange{}
	}
	if v.Merges == nil {
		v.Merges = []profiles.LedgerEntry{}
	}
	if v.MergedFrom == nil {
		v.MergedFrom = []string{}
	}
	if v.Events == nil {
		v.Events = []profiles.Event{}
	}
	return v
}

const defaultProfileEvents = 100

func (a *api) getProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	limit := defaultProfileEvents
	if s := c.Query("events"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("events: want a count >= 0, got %q", s)}
		}
	}
	p, err := a.store.Lookup(id)
	if err != nil {
		return err
	}
	var events []profiles.Event
	if limit > 0 {
		if events, err = a.store.Events(p.ID, limit); err != nil {
			return err
		}
	}
	v, err := a.profileView(p, events)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

func (a *api) exportProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	ex, err := a.store.Export(id)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="profile-%s.json"`, ex.Profile.ID))
	v, err := a.profileView(ex.Profile, ex.Events)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"exported_at": a.now().UTC(), "profile": v})
}

func (a *api) eraseProfile(c *fiber.Ctx) error {
	id, err := identParam(c)
	if err != nil {
		return err
	}
	dropLater := false
	if s := c.Query("drop_later"); s != "" {
		if dropLater, err = strconv.ParseBool(s); err != nil {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("drop_later: want true or false, got %q", s)}
		}
	}
	er, err := a.store.Erase(id, dropLater)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"success": true, "erased": er})
}

func (a *api) listAudiences(c *fiber.Ctx) error {
	list, err := a.rules.Audiences()
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"audiences": list})
}

const (
	defaultPage = 100
	maxPage     = 1000
)

func (a *api) audienceMembers(c *fiber.Ctx) error {
	limit := defaultPage
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			return &httpError{fiber.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d, got %q", maxPage, s)}
		}
		limit = n
	}
	id := pathParam(c, "id")
	members, next, err := a.rules.Members(id, c.Query("after"), limit)
	if err != nil {
		return err
	}
	if members == nil {
		members = []rules.Member{}
	}
	return c.JSON(fiber.Map{"audience": id, "members": members, "next": next})
}

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
		Trigger: triggerText(j.Trigger), File: j.File, Entered: counts[""]["entered"], Converted: counts[""]["converted"]}
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
	return c.JSON(fiber.Map{"journey": s, "steps": steps, "definition": string(j.Source)})
}

// reloadJourneys compiles the files again; a broken file never replaces a
// working version, and the answer lists every error.
func (a *api) reloadJourneys(c *fiber.Ctx) error {
	defs, err := a.core.reload(c.UserContext())
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = e.Error()
		}
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"success": false, "error": "reload refused: the running versions stay", "errors": msgs})
	}
	if err != nil {
		return err
	}
	list := make([]fiber.Map, 0, len(defs.journeys.Journeys))
	for _, j := range defs.journeys.Journeys {
		list = append(list, fiber.Map{"id": j.ID, "version": j.Version})
	}
	return c.JSON(fiber.Map{"success": true, "journeys": list})
}

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

func (a *api) outbox() (*channels.Outbox, error) {
	if a.core == nil || a.core.delivery == nil {
		return nil, &httpError{fiber.StatusNotFound, "delivery is off"}
	}
	return a.core.delivery.outbox, nil
}

func (a *api) listOutbox(c *fiber.Ctx) error {
	ob, err := a.outbox()
	if err != nil {
		return err
	}
	state := c.Query("state", channels.StateQueued)
	if state != channels.StateQueued && state != channels.StateDead {
		return &httpError{fiber.StatusBadRequest, fmt.Sprintf("state: want queued or dead, got %q", state)}
	}
	msgs, err := ob.List(state, maxPage)
	if err != nil {
		return err
	}
	if msgs == nil {
		msgs = []*channels.Message{}
	}
	return c.JSON(fiber.Map{"state": state, "messages": msgs})
}

func seqParam(c *fiber.Ctx) (uint64, error) {
	seq, err := strconv.ParseUint(c.Params("seq"), 10, 64)
	if err != nil {
		return 0, &httpError{fiber.StatusBadRequest, fmt.Sprintf("seq: want a message number, got %q", c.Params("seq"))}
	}
	return seq, nil
}

func (a *api) retryOutbox(c *fiber.Ctx) error {
	return a.outboxOp(c, (*channels.Outbox).Retry, "no dead message with that number")
}

func (a *api) dropOutbox(c *fiber.Ctx) error {
	return a.outboxOp(c, (*channels.Outbox).Drop, "no message with that number")
}

// outboxOp runs an admin operation on one message by its number.
func (a *api) outboxOp(c *fiber.Ctx, op func(*channels.Outbox, uint64) error, notFound string) error {
	ob, err := a.outbox()
	if err != nil {
		return err
	}
	seq, err := seqParam(c)
	if err != nil {
		return err
	}
	if err := op(ob, seq); errors.Is(err, channels.ErrNotFound) {
		return &httpError{fiber.StatusNotFound, notFound}
	} else if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"success": true})
}

// exportAudience writes an audience's members as CSV with hashed
// identifiers (SHA-256 of the normalized email and E.164 phone), the form
// ad platforms take in their upload screens.
func (a *api) exportAudience(c *fiber.Ctx) error {
	id := pathParam(c, "id")
	var b strings.Builder
	b.WriteString("profile_id,entered_at,email_sha256,phone_sha256\n")
	after := ""
	for {
		members, next, err := a.rules.Members(id, after, maxPage)
		if err != nil {
			return err
		}
		for _, m := range members {
			var emails, phones []string
			if p, err := a.store.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: m.ProfileID}); err == nil {
				for _, r := range p.Identities {
					switch r.Kind {
					case profiles.KindEmail:
						emails = append(emails, sha256Hex(r.Value))
					case profiles.KindPhone:
						phones = append(phones, sha256Hex(r.Value))
					}
				}
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s\n", m.ProfileID, m.EnteredAt.Format(time.RFC3339), strings.Join(emails, ";"), strings.Join(phones, ";"))
		}
		if next == "" {
			break
		}
		after = next
	}
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audience-%s.csv"`, id))
	return c.SendString(b.String())
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
