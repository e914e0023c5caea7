package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/channels"
	"cartera/profiles"
)

func (c *Console) overview(ctx *fiber.Ctx) error {
	r, err := read(c.o.Metrics, c.o.Now())
	if err != nil {
		return err
	}
	type source struct {
		Name               string
		Accepted, Rejected float64
		rateRow
	}
	type dest struct {
		Name                                 string
		Queued                               int
		Delivered, Retried, Dead, Suppressed float64
	}
	names := map[string]bool{}
	for k := range r.Accepted {
		names[k] = true
	}
	for k := range r.Rejected {
		names[k] = true
	}
	var sources []source
	list, err := c.samples.since(r.At.Add(-24*time.Hour - 2*c.o.SampleEvery))
	if err != nil {
		return err
	}
	bySource := func(s sample) map[string]float64 { return s.Sources }
	lastHour := slices.DeleteFunc(append(slices.Clone(list), sampleOf(r)), func(s sample) bool { return s.At.Before(r.At.Add(-time.Hour - c.o.SampleEvery)) })
	rate := map[string]rateRow{}
	withNow := append(slices.Clone(list), sampleOf(r))
	for _, x := range withDaySparks(withSparks(perSecond(list, r.At, r.Accepted, bySource), lastHour, bySource, "events from"), withNow, r.At, bySource, "events from") {
		rate[x.Name] = x
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		sources = append(sources, source{Name: n, Accepted: r.Accepted[n], Rejected: r.Rejected[n], rateRow: rate[n]})
	}
	sizes := channels.Sizes{Queued: map[string]int{}}
	if c.o.Outbox != nil {
		if sizes, err = c.o.Outbox.Sizes(); err != nil {
			return err
		}
	}
	dn := map[string]bool{}
	for _, m := range []map[string]float64{r.Delivered, r.Retried, r.Dead, r.Suppressed} {
		for k := range m {
			dn[k] = true
		}
	}
	for k := range sizes.Queued {
		dn[k] = true
	}
	var dests []dest
	for _, n := range slices.Sorted(maps.Keys(dn)) {
		dests = append(dests, dest{Name: n, Queued: sizes.Queued[n], Delivered: r.Delivered[n], Retried: r.Retried[n], Dead: r.Dead[n], Suppressed: r.Suppressed[n]})
	}
	byChannel := func(s sample) map[string]float64 { return s.Channels }
	chRates := withDaySparks(withSparks(perSecond(list, r.At, r.Channels, byChannel), lastHour, byChannel, "actions on"), withNow, r.At, byChannel, "actions on")
	list = append(list, sampleOf(r))
	hourChart, dayChart := overviewCharts(list, r.At)
	return c.render(ctx, fiber.StatusOK, "overview", "Overview", "overview", map[string]any{
		"Sources": sources, "Destinations": dests, "Actions": rowsOf(r.Actions), "DeadNow": sizes.Dead,
		"AcceptedTotal": sum(r.Accepted), "DeliveredTotal": sum(r.Delivered), "FailedTotal": sum(r.Retried) + sum(r.Dead),
		"AcceptedSpark":  sparkline(rates(lastHour, func(s sample) float64 { return s.Accepted }), "events accepted"),
		"DeliveredSpark": sparkline(rates(lastHour, func(s sample) float64 { return s.Delivered }), "deliveries"),
		"FailedSpark":    sparkline(rates(lastHour, func(s sample) float64 { return s.Failed }), "failures"),
		"Samples":        len(list) - 1, "HourChart": hourChart, "DayChart": dayChart,
		"Lag": c.lag(), "Channels": chRates,
	})
}

// searchKinds are searched when the query names no kind.
var searchKinds = []string{profiles.KindEmail, profiles.KindPhone, profiles.KindUserID}

const searchLimit = 50

func (c *Console) people(ctx *fiber.Ctx) error {
	s := c.session(ctx)
	prefix := s.role.Can(RoleMarketer)
	q := strings.TrimSpace(ctx.Query("q"))
	data := map[string]any{"Kinds": c.o.Kinds, "Prefix": prefix, "Query": q, "Searched": q != ""}
	if q == "" {
		return c.render(ctx, fiber.StatusOK, "people", "People", "people", data)
	}
	if len(q) > 256 {
		return c.fail(ctx, fiber.StatusBadRequest, "The query is over 256 characters.")
	}
	kind, value, hasKind := strings.Cut(q, ":")
	if hasKind && slices.Contains(c.o.Kinds, kind) {
		p, err := c.o.People.Person(profiles.Identifier{Kind: kind, Value: value}, 0)
		switch {
		case err == nil:
			return ctx.Redirect("/console/people/profile_id:"+p.ID, fiber.StatusSeeOther)
		case !errors.Is(err, profiles.ErrNotFound):
			return c.lookupFailed(ctx, err)
		}
	} else {
		hasKind, value = false, q
	}
	if !s.role.Can(RoleMarketer) {
		data["Query"] = ""
		data["Matches"] = []profiles.IdentityMatch{}
		return c.render(ctx, fiber.StatusOK, "people", "People", "people", data)
	}
	kinds := searchKinds
	if hasKind {
		kinds = []string{kind}
	}
	var matches []profiles.IdentityMatch
	for _, k := range kinds {
		m, err := c.o.People.Search(k, value, searchLimit+1)
		if err != nil {
			if hasKind {
				return c.lookupFailed(ctx, err)
			}
			continue // e.g. letters searched as a phone
		}
		matches = append(matches, m...)
	}
	data["More"] = len(matches) > searchLimit
	if len(matches) > searchLimit {
		matches = matches[:searchLimit]
	}
	if matches == nil {
		matches = []profiles.IdentityMatch{}
	}
	data["Matches"] = matches
	return c.render(ctx, fiber.StatusOK, "people", "People", "people", data)
}

func identParam(ctx *fiber.Ctx) (profiles.Identifier, error) {
	raw := ctx.Params("ident")
	if v, err := url.PathUnescape(raw); err == nil {
		raw = v
	}
	return profiles.ParseIdentifier(raw)
}

// named is one row of a name → value table.
type named struct {
	Name  string
	Value string
}

type consentRow struct {
	Name string
	C    profiles.Consent
}

const personEvents = 50

func (c *Console) person(ctx *fiber.Ctx) error {
	id, err := identParam(ctx)
	if err != nil {
		return c.fail(ctx, fiber.StatusBadRequest, err.Error())
	}
	p, err := c.o.People.Person(id, personEvents)
	if errors.Is(err, profiles.ErrNotFound) {
		return c.fail(ctx, fiber.StatusNotFound, "No profile holds that identifier.")
	}
	if err != nil {
		return c.fail(ctx, fiber.StatusBadRequest, err.Error())
	}
	s := c.session(ctx)
	mask := !s.role.Can(RoleMarketer)
	v := map[string]any{"P": p, "Masked": mask, "Admin": s.role.Can(RoleAdmin)}
	var ids []profiles.IdentityRecord
	for _, r := range p.Identities {
		if mask {
			r.Value = MaskIdentifier(r.Kind, r.Value)
		}
		ids = append(ids, r)
	}
	v["Identities"] = ids
	v["Traits"] = table(p.Traits, mask)
	v["Computed"] = table(p.Computed, mask)
	var consent []consentRow
	for _, k := range slices.Sorted(maps.Keys(p.Consent)) {
		consent = append(consent, consentRow{Name: k, C: p.Consent[k]})
	}
	v["Consent"] = consent
	v["Timeline"] = timeline(p.Events, p.History, mask)
	cards := make([]cardView, 0, len(p.Passes))
	for _, pc := range p.Passes {
		if mask {
			pc = maskCard(pc)
		}
		cards = append(cards, cardView{Card: pc, SVG: passCard(pc, mask)})
	}
	v["Cards"] = cards
	return c.render(ctx, fiber.StatusOK, "person", "Person", "people", v)
}

// table renders a map's values as compact JSON, masked for viewers.
func table(m map[string]any, mask bool) []named {
	var out []named
	for _, k := range slices.Sorted(maps.Keys(m)) {
		val := m[k]
		if mask {
			val = maskValue(k, val)
		}
		out = append(out, named{Name: k, Value: compact(val)})
	}
	return out
}

func compact(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// details is an event's properties and traits; viewers get them masked
// and without the context (addresses, devices).
func details(e profiles.Event, mask bool) string {
	d := map[string]any{}
	if len(e.Properties) > 0 {
		d["properties"] = e.Properties
	}
	if len(e.Traits) > 0 {
		d["traits"] = e.Traits
	}
	if e.UserID != "" {
		d["userId"] = e.UserID
	}
	if mask {
		return compact(maskValue("", d))
	}
	if len(e.Context) > 0 {
		d["context"] = e.Context
	}
	s := compact(d)
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

func (c *Console) export(ctx *fiber.Ctx) error {
	id, err := identParam(ctx)
	if err != nil {
		return c.fail(ctx, fiber.StatusBadRequest, err.Error())
	}
	b, err := c.o.People.Export(id)
	if errors.Is(err, profiles.ErrNotFound) {
		return c.fail(ctx, fiber.StatusNotFound, "No profile holds that identifier.")
	}
	if err != nil {
		return err
	}
	c.recordBy(ctx, "export", targetOf(id), "")
	ctx.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="profile-%s.json"`, safeName(id.Value)))
	ctx.Type("json")
	return ctx.Send(b)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

func safeName(s string) string { return unsafeName.ReplaceAllString(s, "_") }

// targetOf names a person in the audit log by profile id only.
func targetOf(id profiles.Identifier) string {
	if id.Kind == profiles.KindProfileID {
		return "profile " + id.Value
	}
	return "profile by " + id.Kind
}

func (c *Console) erase(ctx *fiber.Ctx) error {
	id, err := identParam(ctx)
	if err != nil {
		return c.fail(ctx, fiber.StatusBadRequest, err.Error())
	}
	if ctx.FormValue("confirm") != "yes" {
		return c.fail(ctx, fiber.StatusBadRequest, "Erasing needs the confirmation box ticked.")
	}
	if err := c.o.People.Erase(ctx.UserContext(), id); errors.Is(err, profiles.ErrNotFound) {
		return c.fail(ctx, fiber.StatusNotFound, "No profile holds that identifier.")
	} else if err != nil {
		return err
	}
	c.recordBy(ctx, "erase", targetOf(id), "")
	c.sessions.setFlash(c.session(ctx), "Erased "+targetOf(id)+".", nil)
	return ctx.Redirect("/console/people", fiber.StatusSeeOther)
}

func (c *Console) journeys(ctx *fiber.Ctx) error {
	list, err := c.o.Journeys.Journeys()
	if err != nil {
		return err
	}
	return c.render(ctx, fiber.StatusOK, "journeys", "Journeys", "journeys", list)
}

func (c *Console) audiences(ctx *fiber.Ctx) error {
	list, err := c.o.Audiences.Audiences()
	if err != nil {
		return err
	}
	var ads []AdAudience
	if c.o.AdAudiences != nil {
		if ads, err = c.o.AdAudiences.AdAudiences(); err != nil {
			return err
		}
	}
	return c.render(ctx, fiber.StatusOK, "audiences", "Audiences", "audiences", map[string]any{"Rules": list, "Ads": ads})
}

const outboxLimit = 100

var emailIn = regexp.MustCompile(`[^\s<>"'@:;,()]+@[^\s<>"'@:;,()]+`)

func (c *Console) outbox(ctx *fiber.Ctx) error {
	data := map[string]any{"Limit": outboxLimit}
	if c.o.Outbox == nil {
		data["Off"] = true
		return c.render(ctx, fiber.StatusOK, "outbox", "Outbox", "outbox", data)
	}
	sizes, err := c.o.Outbox.Sizes()
	if err != nil {
		return err
	}
	dead, err := c.o.Outbox.List(channels.StateDead, outboxLimit)
	if err != nil {
		return err
	}
	queued, err := c.o.Outbox.List(channels.StateQueued, outboxLimit)
	if err != nil {
		return err
	}
	inflight := c.o.Outbox.InFlight(outboxLimit)
	if !c.session(ctx).role.Can(RoleMarketer) {
		// Errors from mail servers may quote the address.
		for _, m := range append(slices.Clone(dead), queued...) {
			m.LastError = emailIn.ReplaceAllStringFunc(m.LastError, MaskEmail)
		}
		for i := range inflight {
			inflight[i].LastError = emailIn.ReplaceAllStringFunc(inflight[i].LastError, MaskEmail)
		}
	}
	data["InFlight"] = inflight
	q := make(map[string]float64, len(sizes.Queued))
	for k, v := range sizes.Queued {
		q[k] = float64(v)
	}
	data["Queues"], data["DeadCount"], data["Dead"], data["Queued"] = rowsOf(q), sizes.Dead, dead, queued
	return c.render(ctx, fiber.StatusOK, "outbox", "Outbox", "outbox", data)
}

func (c *Console) outboxOp(op string) fiber.Handler {
	return func(ctx *fiber.Ctx) error {
		seq, err := strconv.ParseUint(ctx.Params("seq"), 10, 64)
		if err != nil {
			return c.fail(ctx, fiber.StatusBadRequest, "Not a message number.")
		}
		if c.o.Outbox == nil {
			return c.fail(ctx, fiber.StatusNotFound, "Delivery is off.")
		}
		do := c.o.Outbox.Retry
		if op == "drop" {
			do = c.o.Outbox.Drop
		}
		if err := do(seq); errors.Is(err, channels.ErrNotFound) {
			return c.fail(ctx, fiber.StatusNotFound, "No such message (already retried or dropped?).")
		} else if err != nil {
			return err
		}
		c.recordBy(ctx, op, fmt.Sprintf("outbox message %d", seq), "")
		c.sessions.setFlash(c.session(ctx), fmt.Sprintf("Message %d: %s done.", seq, op), nil)
		return ctx.Redirect("/console/outbox", fiber.StatusSeeOther)
	}
}

const auditPage = 500

func (c *Console) auditPage(ctx *fiber.Ctx) error {
	list, err := c.audit.Recent(auditPage)
	if err != nil {
		return err
	}
	return c.render(ctx, fiber.StatusOK, "audit", "Audit", "audit", list)
}
