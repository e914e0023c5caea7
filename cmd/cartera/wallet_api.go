package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/wallet"
)

// Limits of the PassKit web service's inputs.
const (
	maxRegistrationBody = 4 << 10
	maxLogBody          = 64 << 10
	maxLogLines         = 50
)

// walletRoutes adds pass issuing (admin) and Apple's PassKit web service.
func (a *api) walletRoutes(app *fiber.App) {
	app.Post("/v1/profiles/:ident/passes", a.requireAdmin, a.issuePass)
	w := app.Group("/wallet", a.caughtUp)
	w.Get("/download/:file", a.downloadPass)
	w.Post("/v1/devices/:device/registrations/:passType/:serial", a.registerDevice)
	w.Delete("/v1/devices/:device/registrations/:passType/:serial", a.unregisterDevice)
	w.Get("/v1/devices/:device/registrations/:passType", a.updatedPasses)
	w.Get("/v1/passes/:passType/:serial", a.latestPass)
	w.Post("/v1/log", a.walletLog)
}

func (a *api) wallet() (*wallet.Service, error) {
	if a.core == nil || a.core.wallet == nil {
		return nil, &httpError{fiber.StatusNotFound, "wallet: no pass templates configured (wallet.templates)"}
	}
	return a.core.wallet, nil
}

// decodeStrict reads a small admin request body into v, refusing unknown
// fields; the 400 shows the body wanted.
func decodeStrict(body []byte, v any, want string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &httpError{fiber.StatusBadRequest, "body: want " + want + ": " + err.Error()}
	}
	return nil
}

// passView is a pass as the admin API shows it.
type passView struct {
	Serial             string         `json:"serial"`
	PassTypeIdentifier string         `json:"pass_type_identifier"`
	Template           string         `json:"template"`
	Tier               string         `json:"tier"`
	Values             map[string]any `json:"values"`
	Voided             bool           `json:"voided,omitempty"`
	Updated            time.Time      `json:"updated"`
	Created            time.Time      `json:"created"`
	wallet.Links
}

func newPassView(svc *wallet.Service, p *wallet.Pass) (passView, error) {
	links, err := svc.Links(p)
	if err != nil {
		return passView{}, err
	}
	v := passView{Serial: p.Serial, PassTypeIdentifier: svc.PassTypeID(), Template: p.Template, Tier: p.Tier,
		Values: p.Values, Voided: p.Voided, Updated: p.Updated, Created: p.Created, Links: links}
	if v.Values == nil {
		v.Values = map[string]any{}
	}
	return v, nil
}

// passViews lists a person's passes for the profile API ([] without a
// wallet).
func (a *api) passViews(profileID string) ([]passView, error) {
	out := []passView{}
	if a.core == nil || a.core.wallet == nil {
		return out, nil
	}
	svc := a.core.wallet
	passes, err := svc.Passes(profileID)
	if err != nil {
		return nil, err
	}
	for _, p := range passes {
		v, err := newPassView(svc, p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// issuePass is POST /v1/profiles/{kind}:{value}/passes {"template": id}.
func (a *api) issuePass(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	id, err := identParam(c)
	if err != nil {
		return err
	}
	var req struct {
		Template string `json:"template"`
	}
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeStrict(c.Body(), &req, `{"template": "<id>"}`); err != nil {
			return err
		}
	}
	p, err := a.store.Lookup(id)
	if err != nil {
		return err
	}
	pass, created, err := svc.Issue(c.UserContext(), p.ID, req.Template)
	switch {
	case errors.Is(err, wallet.ErrUnknownTemplate):
		return &httpError{fiber.StatusBadRequest, "template: " + err.Error()}
	case errors.Is(err, wallet.ErrNotFound):
		return &httpError{fiber.StatusNotFound, "no profile holds that identifier"}
	case err != nil:
		return err
	}
	v, err := newPassView(svc, pass)
	if err != nil {
		return err
	}
	status := fiber.StatusOK
	if created {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(v)
}

// sendPass answers with a signed .pkpass and its Last-Modified.
func sendPass(c *fiber.Ctx, p *wallet.Pass, b []byte) error {
	c.Set(fiber.HeaderContentType, "application/vnd.apple.pkpass")
	c.Set(fiber.HeaderLastModified, p.Updated.UTC().Format(http.TimeFormat))
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(b)
}

// downloadPass is the signed download link of a pass.
func (a *api) downloadPass(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	serial, ok := strings.CutSuffix(pathParam(c, "file"), ".pkpass")
	if !ok {
		return &httpError{fiber.StatusNotFound, "not found"}
	}
	p, b, err := svc.Download(serial, c.Query("exp"), c.Query("sig"))
	switch {
	case errors.Is(err, wallet.ErrBadLink), errors.Is(err, wallet.ErrNotFound):
		return &httpError{fiber.StatusForbidden, "download link invalid or expired: ask for a new one"}
	case err != nil:
		return err
	}
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+p.Template+`.pkpass"`)
	return sendPass(c, p, b)
}

// applePassToken reads Authorization: ApplePass <token>.
func applePassToken(c *fiber.Ctx) string {
	scheme, token, _ := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
	if scheme != "ApplePass" {
		return ""
	}
	return strings.TrimSpace(token)
}

// walletStatus answers the web service's errors with Apple's codes and no
// body but a short text.
func (a *api) walletStatus(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, wallet.ErrUnauthorized):
		return c.SendStatus(fiber.StatusUnauthorized)
	case errors.Is(err, wallet.ErrInvalid):
		// The wrapped message names the field and what is wanted; it
		// never echoes the value.
		msg := strings.TrimPrefix(err.Error(), wallet.ErrInvalid.Error()+": ")
		if msg == wallet.ErrInvalid.Error() {
			msg = "invalid device library identifier"
		}
		return c.Status(fiber.StatusBadRequest).SendString(msg)
	}
	return err
}

// registerDevice is POST .../devices/{device}/registrations/{passType}/{serial}
// with {"pushToken": "..."}: 201 new, 200 already, 401 bad token.
func (a *api) registerDevice(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	if len(c.Body()) > maxRegistrationBody {
		return &httpError{fiber.StatusRequestEntityTooLarge, "registration body too large"}
	}
	var req struct {
		PushToken string `json:"pushToken"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.PushToken == "" {
		// Authorise first, so a stranger learns nothing from the 400.
		if _, aerr := svc.Authorize(pathParam(c, "passType"), pathParam(c, "serial"), applePassToken(c)); aerr != nil {
			return a.walletStatus(c, aerr)
		}
		return c.Status(fiber.StatusBadRequest).SendString("body: want {\"pushToken\": \"...\"}")
	}
	created, err := svc.Register(c.UserContext(), pathParam(c, "device"), pathParam(c, "passType"), pathParam(c, "serial"), applePassToken(c), req.PushToken)
	if err != nil {
		return a.walletStatus(c, err)
	}
	if created {
		return c.SendStatus(fiber.StatusCreated)
	}
	return c.SendStatus(fiber.StatusOK)
}

// unregisterDevice is DELETE of a registration: 200, or 401.
func (a *api) unregisterDevice(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	if err := svc.Unregister(c.UserContext(), pathParam(c, "device"), pathParam(c, "passType"), pathParam(c, "serial"), applePassToken(c)); err != nil {
		return a.walletStatus(c, err)
	}
	return c.SendStatus(fiber.StatusOK)
}

// updatedPasses is GET .../devices/{device}/registrations/{passType}
// ?passesUpdatedSince=TAG: 200 with the serials and a string tag, 204
// when none changed.
func (a *api) updatedPasses(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	serials, last, err := svc.Updated(pathParam(c, "device"), pathParam(c, "passType"), c.Query("passesUpdatedSince"))
	if err != nil {
		return err
	}
	if len(serials) == 0 {
		return c.SendStatus(fiber.StatusNoContent)
	}
	return c.JSON(fiber.Map{"serialNumbers": serials, "lastUpdated": last})
}

// latestPass is GET /wallet/v1/passes/{passType}/{serial}: the pass,
// 304 when not modified since If-Modified-Since, 401 on a bad token.
func (a *api) latestPass(c *fiber.Ctx) error {
	svc, err := a.wallet()
	if err != nil {
		return err
	}
	p, err := svc.Authorize(pathParam(c, "passType"), pathParam(c, "serial"), applePassToken(c))
	if err != nil {
		return a.walletStatus(c, err)
	}
	if ims := c.Get(fiber.HeaderIfModifiedSince); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !p.Updated.After(t) {
			c.Set(fiber.HeaderLastModified, p.Updated.UTC().Format(http.TimeFormat))
			return c.SendStatus(fiber.StatusNotModified)
		}
	}
	b, err := svc.PKPass(p)
	if err != nil {
		return err
	}
	return sendPass(c, p, b)
}

// walletLog is POST /wallet/v1/log {"logs": [...]}: devices report
// problems with passes here; they are logged, bounded.
func (a *api) walletLog(c *fiber.Ctx) error {
	if len(c.Body()) > maxLogBody {
		return &httpError{fiber.StatusRequestEntityTooLarge, "log body too large"}
	}
	var req struct {
		Logs []string `json:"logs"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return &httpError{fiber.StatusBadRequest, "body: want {\"logs\": [\"...\"]}"}
	}
	var kept []string
	for i, line := range req.Logs {
		if i == maxLogLines {
			a.log.Warn("wallet device log truncated", "lines", len(req.Logs))
			break
		}
		if len(line) > 1024 {
			line = strings.ToValidUTF8(line[:1024], "")
		}
		a.log.Warn("wallet device log", "message", line)
		kept = append(kept, line)
	}
	// The console's Wallet page shows the latest lines.
	if svc, err := a.wallet(); err == nil {
		if err := svc.LogDevice(kept); err != nil {
			a.log.Error("wallet device log", "err", err)
		}
	}
	return c.SendStatus(fiber.StatusOK)
}
