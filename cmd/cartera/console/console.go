package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options carry the console's dependencies. Outbox may be nil (delivery
// off); the others are required.
type Options struct {
	// DB is the gateway's bbolt file, for the console's own audit bucket.
	DB        *bbolt.DB
	People    People
	Journeys  Journeys
	Audiences Audiences
	// AdAudiences may be nil (no journeys engine): only rules audiences
	// then have pages.
	AdAudiences AdAudiences
	Outbox      Outbox
	// Wallet may be nil (no pass templates).
	Wallet Wallet
	// Backtest may be nil (no event log): the page says so.
	Backtest Backtester
	// Cluster is set on a cluster node: the Cluster page.
	Cluster Cluster
	// Metrics is the binary's Prometheus registry.
	Metrics prometheus.Gatherer
	// EventLog may be nil (no event log): the Overview then shows no lag.
	EventLog EventLog
	// Kinds are the identifier kinds people can be looked up by.
	Kinds []string
	Now   func() time.Time
	Log   *slog.Logger
	// SampleEvery is the interval of the Overview's samples (1m).
	SampleEvery time.Duration
	// AdDestinations are the outbox destinations that mirror each
	// audience on ad platforms ("meta:retargeting", "google:retargeting"),
	// by audience.
	AdDestinations map[string][]string
}

// Console serves the pages under /console.
type Console struct {
	cfg      Config
	users    map[string]User
	o        Options
	sessions *sessions
	limit    *loginLimit
	audit    *Audit
	samples  *samples
	pages    map[string]*template.Template
	// dummy is compared with for unknown user names, so a login takes as
	// long whether the name exists or not.
	dummy []byte
}

// Login attempts: 5 at once per address and per user name, then one
// every 20 s.
const (
	loginBurst = 5
	loginEvery = 20 * time.Second
)

// New checks the config and prepares the pages.
func New(cfg Config, o Options) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.DB == nil || o.People == nil || o.Journeys == nil || o.Audiences == nil {
		return nil, errors.New("console: DB, People, Journeys and Audiences are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Minute
	}
	audit, err := OpenAudit(o.DB)
	if err != nil {
		return nil, err
	}
	samples, err := openSamples(o.DB)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user"), HashCost)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{cfg: cfg, users: map[string]User{}, o: o, sessions: newSessions(cfg.SessionTTL),
		limit: newLoginLimit(loginBurst, loginEvery), audit: audit, samples: samples, pages: pages, dummy: dummy}
	for _, u := range cfg.Users {
		c.users[u.Name] = u
	}
	return c, nil
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"num": func(v float64) string {
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
		return fmt.Sprintf("%.2f", v)
	},
	// rate is a rate per second, to two decimals ("0.15/s").
	"rate":   func(v float64) string { return fmt.Sprintf("%.2f/s", v) },
	"secs":   func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) },
	"join":   strings.Join,
	"reason": Reason,
	// split cuts "journey/step" in two.
	"split": func(s string) []string { return strings.SplitN(s, "/", 2) },
	"base":  filepath.Base,
	// bytes writes a size in B, KiB, MiB or GiB.
	"bytes": func(n uint64) string {
		switch {
		case n < 1<<10:
			return fmt.Sprintf("%d B", n)
		case n < 1<<20:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		case n < 1<<30:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		}
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	},
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", base, err)
		}
		out[base] = t
	}
	return out, nil
}

// Run samples the metrics for the Overview's charts every SampleEvery
// until ctx ends; serve takes a first sample itself, before it listens.
// It also prunes the audit log, at start and then hourly.
func (c *Console) Run(ctx context.Context) {
	c.PruneAudit()
	pruned := c.o.Now()
	t := time.NewTicker(c.o.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Sample()
			if now := c.o.Now(); now.Sub(pruned) >= time.Hour {
				c.PruneAudit()
				pruned = now
			}
		}
	}
}

// PruneAudit deletes the audit entries older than the retention
// (console.audit_retention) and returns how many.
func (c *Console) PruneAudit() int {
	n, err := c.audit.Prune(c.o.Now().Add(-c.cfg.AuditRetention))
	if err != nil {
		c.o.Log.Error("console: prune audit log", "err", err)
	}
	if n > 0 {
		c.o.Log.Info("console audit log pruned", "entries", n, "retention", c.cfg.AuditRetention.String())
	}
	return n
}

// Sample takes one sample of the counters now.
func (c *Console) Sample() {
	r, err := read(c.o.Metrics, c.o.Now())
	if err != nil {
		c.o.Log.Warn("console: sample metrics", "err", err)
		return
	}
	if err := c.samples.add(c.sampleOf(r)); err != nil {
		c.o.Log.Warn("console: sample metrics", "err", err)
	}
}

const (
	cookieSession = "cartera_console"
	cookieLogin   = "cartera_console_login"
)

// Mount adds the console's routes under /console.
func (c *Console) Mount(app fiber.Router) {
	g := app.Group("/console", c.headers)
	sub, _ := fs.Sub(staticFS, "static")
	g.Use("/static", filesystem.New(filesystem.Config{Root: http.FS(sub), MaxAge: 3600}))
	g.Get("/login", c.loginPage)
	g.Post("/login", c.login)
	in := g.Group("", c.requireSession, c.checkCSRF)
	in.Post("/logout", c.logout)
	in.Get("/", c.overview)
	in.Get("/people", c.people)
	in.Get("/people/:ident", c.person)
	in.Post("/people/:ident/export", c.need(RoleAdmin), c.export)
	in.Post("/people/:ident/erase", c.need(RoleAdmin), c.erase)
	in.Get("/journeys", c.journeys)
	in.Get("/journeys/reload", c.need(RoleMarketer), c.reloadPage)
	in.Post("/journeys/reload", c.need(RoleMarketer), c.reload)
	in.Get("/journeys/:id", c.journey)
	in.Get("/backtest", c.need(RoleMarketer), c.backtestPage)
	in.Post("/backtest", c.need(RoleMarketer), c.backtest)
	in.Get("/audiences", c.audiences)
	in.Get("/audiences/:id", c.audience)
	in.Get("/audiences/:id/export.csv", c.need(RoleMarketer), c.exportAudience)
	in.Get("/outbox", c.outbox)
	in.Get("/wallet", c.walletPage)
	in.Get("/cluster", c.clusterPage)
	in.Post("/outbox/:seq/retry", c.need(RoleAdmin), c.outboxOp("retry"))
	in.Post("/outbox/:seq/drop", c.need(RoleAdmin), c.outboxOp("drop"))
	in.Get("/audit", c.need(RoleAdmin), c.auditPage)
	in.Get("/users", c.need(RoleAdmin), c.usersPage)
	in.Post("/users/:name/signout", c.need(RoleAdmin), c.signOut)
	app.Get("/console", func(ctx *fiber.Ctx) error { return ctx.Redirect("/console/", fiber.StatusFound) })
}

// headers: no caching of personal pages, no framing, scripts and styles
// only from the console's own static files.
func (c *Console) headers(ctx *fiber.Ctx) error {
	ctx.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	ctx.Set("X-Content-Type-Options", "nosniff")
	ctx.Set("Referrer-Policy", "same-origin")
	ctx.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(ctx.Path(), "/console/static/") {
		ctx.Set(fiber.HeaderCacheControl, "no-store")
	}
	return ctx.Next()
}

// page is what every template gets.
type page struct {
	Title, Nav, User, CSRF, Flash string
	Role                          Role
	Admin, Marketer               bool
	// Cluster says the gateway is a cluster node (the Cluster page).
	Cluster bool
	Errors  []string
	Data    any
}

func (c *Console) render(ctx *fiber.Ctx, status int, name, title, nav string, data any) error {
	p := page{Title: title, Nav: nav, Data: data, Cluster: c.o.Cluster != nil}
	if s, ok := ctx.Locals("session").(*session); ok {
		p.User, p.Role, p.CSRF = s.user, s.role, s.csrf
		p.Admin, p.Marketer = s.role.Can(RoleAdmin), s.role.Can(RoleMarketer)
		p.Flash, p.Errors = c.sessions.takeFlash(s)
	}
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	ctx.Type("html", "utf-8")
	return ctx.Status(status).Send(b.Bytes())
}

func (c *Console) fail(ctx *fiber.Ctx, status int, msg string) error {
	return c.render(ctx, status, "error", fmt.Sprintf("%d %s", status, httpStatusText(status)), "", msg)
}

// lookupFailed answers a lookup that failed: with the status the error
// carries (StatusCode: on a cluster node, 503 while a partition moves),
// else 400, the query's fault.
func (c *Console) lookupFailed(ctx *fiber.Ctx, err error) error {
	var se interface{ StatusCode() int }
	if errors.As(err, &se) {
		return c.fail(ctx, se.StatusCode(), err.Error())
	}
	return c.fail(ctx, fiber.StatusBadRequest, err.Error())
}

func httpStatusText(s int) string {
	switch s {
	case fiber.StatusServiceUnavailable:
		return "Unavailable, retry"
	case fiber.StatusGatewayTimeout:
		return "Timed out"
	case fiber.StatusForbidden:
		return "Forbidden"
	case fiber.StatusNotFound:
		return "Not found"
	case fiber.StatusBadRequest:
		return "Bad request"
	case fiber.StatusTooManyRequests:
		return "Too many attempts"
	}
	return "Error"
}

func (c *Console) session(ctx *fiber.Ctx) *session {
	s, _ := ctx.Locals("session").(*session)
	return s
}

func (c *Console) requireSession(ctx *fiber.Ctx) error {
	s := c.sessions.get(ctx.Cookies(cookieSession), c.o.Now())
	if s == nil {
		if ctx.Method() == fiber.MethodGet {
			return ctx.Redirect("/console/login", fiber.StatusSeeOther)
		}
		return c.fail(ctx, fiber.StatusForbidden, "Not logged in, or the session expired.")
	}
	ctx.Locals("session", s)
	return ctx.Next()
}

// checkCSRF refuses a POST without the session's token.
func (c *Console) checkCSRF(ctx *fiber.Ctx) error {
	if ctx.Method() != fiber.MethodPost {
		return ctx.Next()
	}
	if !c.session(ctx).checkCSRF(ctx.FormValue("csrf")) {
		return c.fail(ctx, fiber.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
	}
	return ctx.Next()
}

func (c *Console) need(r Role) fiber.Handler {
	return func(ctx *fiber.Ctx) error {
		if !c.session(ctx).role.Can(r) {
			return c.fail(ctx, fiber.StatusForbidden, fmt.Sprintf("This needs the %s role.", r))
		}
		return ctx.Next()
	}
}

// record writes an audit entry; a failure to record is logged, and the
// change it describes has already happened.
func (c *Console) record(who, action, target, detail string, role Role) {
	if err := c.audit.Record(Entry{At: c.o.Now().UTC(), User: who, Role: role, Action: action, Target: target, Detail: detail}); err != nil {
		c.o.Log.Error("console audit", "action", action, "err", err)
	}
}

func (c *Console) recordBy(ctx *fiber.Ctx, action, target, detail string) {
	s := c.session(ctx)
	c.record(s.user, action, target, detail, s.role)
}

func (c *Console) cookie(name, value string, expires time.Time) *fiber.Cookie {
	return &fiber.Cookie{Name: name, Value: value, Path: "/console", HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.cfg.Secure, Expires: expires}
}

func (c *Console) loginPage(ctx *fiber.Ctx) error {
	if c.sessions.get(ctx.Cookies(cookieSession), c.o.Now()) != nil {
		return ctx.Redirect("/console/", fiber.StatusSeeOther)
	}
	token := randomToken()
	ctx.Cookie(c.cookie(cookieLogin, token, time.Time{}))
	return c.render(ctx, fiber.StatusOK, "login", "Log in", "", map[string]any{"Token": token, "NoUsers": len(c.users) == 0})
}

// login checks the form's token against the login cookie (login CSRF),
// the rate limits, then the password.
func (c *Console) login(ctx *fiber.Ctx) error {
	now := c.o.Now()
	want := ctx.Cookies(cookieLogin)
	if len(want) != 64 || !(&session{csrf: want}).checkCSRF(ctx.FormValue("csrf")) {
		return c.fail(ctx, fiber.StatusForbidden, "The login form's CSRF token is missing or wrong: open the login page again.")
	}
	name := strings.TrimSpace(ctx.FormValue("user"))
	if len(name) > 64 {
		name = name[:64]
	}
	// Fiber's strings live in a buffer reused by the next request; the
	// limiter copies the keys it keeps, but name goes on to the audit.
	name = strings.Clone(name)
	if !c.limit.allow(ctx.IP(), name, now) {
		ctx.Set(fiber.HeaderRetryAfter, fmt.Sprintf("%d", int(loginEvery.Seconds())))
		return c.fail(ctx, fiber.StatusTooManyRequests, "Too many login attempts: wait a minute and try again.")
	}
	u, known := c.users[name]
	hash := c.dummy
	if known {
		hash = []byte(u.PasswordBcrypt)
	}
	pw := ctx.FormValue("password")
	if len(pw) > 72 {
		pw = pw[:72]
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil || !known {
		who := "(unknown user)"
		if known {
			who = name
		}
		c.record(who, "login_failed", "", "", "")
		return c.render(ctx, fiber.StatusUnauthorized, "login", "Log in", "", map[string]any{"Token": want, "Error": true})
	}
	s := c.sessions.create(u.Name, u.Role, now)
	ctx.Cookie(c.cookie(cookieSession, s.id, s.expires))
	ctx.Cookie(c.cookie(cookieLogin, "", now.Add(-time.Hour)))
	c.record(u.Name, "login", "", "", u.Role)
	return ctx.Redirect("/console/", fiber.StatusSeeOther)
}

func (c *Console) logout(ctx *fiber.Ctx) error {
	s := c.session(ctx)
	c.sessions.delete(s.id)
	ctx.Cookie(c.cookie(cookieSession, "", c.o.Now().Add(-time.Hour)))
	c.record(s.user, "logout", "", "", s.role)
	return ctx.Redirect("/console/login", fiber.StatusSeeOther)
}
