package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/channels/email"
	"cartera/internal/clocktest"
	"cartera/journeys"
	"cartera/profiles"
)

// TestEventTimesOverHTTP: a time outside 2000..2100 is refused with the
// field named, and one still far in the future after the sentAt correction
// is stored at the receipt time, with the time as sent kept.
func TestEventTimesOverHTTP(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	refused := []struct{ path, body, want string }{
		{"/v1/track", `{"userId":"t1","event":"x","timestamp":"9999-01-01T00:00:00Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "9999-01-01T00:00:00Z"`},
		{"/v1/track", `{"userId":"t1","event":"x","sentAt":"1999-12-31T00:00:00Z"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "1999-12-31T00:00:00Z"`},
		{"/v1/batch", `{"batch":[{"type":"page","userId":"t1"},{"type":"page","userId":"t1"},{"type":"page","userId":"t1"},{"type":"track","userId":"t1","event":"x","timestamp":"2100-06-01T00:00:00Z"}]}`,
			`batch[3].timestamp: want a time from 2000-01-01 to before 2100-01-01, got "2100-06-01T00:00:00Z"`},
	}
	for _, tt := range refused {
		r := s.send(t, "web_dev_write_key", tt.path, tt.body)
		if r.status != 400 || r.body["error"] != tt.want {
			t.Errorf("%s %s: %d %s, want 400 %q", tt.path, tt.body, r.status, r.raw, tt.want)
		}
	}
	// A refused batch stores nothing of itself.
	if r := s.admin(t, "GET", "/v1/profiles/user_id:t1"); r.status != 404 {
		t.Errorf("after refusals: profile %d %s, want 404", r.status, r.raw)
	}

	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"t1","event":"Far Future","timestamp":"2099-01-01T00:00:00Z"}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"t1","event":"Old Sent","timestamp":"2026-03-02T10:00:00Z","sentAt":"2001-01-01T00:00:00Z"}`))
	p := s.profile(t, "user_id:t1")
	for _, tt := range []struct{ event, original string }{
		{"Far Future", "2099-01-01T00:00:00Z"},
		{"Old Sent", "2026-03-02T10:00:00Z"},
	} {
		evs := eventsNamed(p, tt.event)
		if len(evs) != 1 {
			t.Fatalf("%s: %d events, want 1", tt.event, len(evs))
		}
		ev := evs[0]
		if ev["timestamp"] != ev["receivedAt"] {
			t.Errorf("%s: timestamp %v, want the receipt time %v", tt.event, ev["timestamp"], ev["receivedAt"])
		}
		if ev["originalTimestamp"] != tt.original {
			t.Errorf("%s: originalTimestamp %v, want %s", tt.event, ev["originalTimestamp"], tt.original)
		}
		at, err := time.Parse(time.RFC3339Nano, ev["timestamp"].(string))
		if err != nil || at.Year() >= 2099 {
			t.Errorf("%s: timestamp %v (%v) still in the far future", tt.event, ev["timestamp"], err)
		}
	}
}

// consentOf reads a person's consent for a purpose through the admin API.
func (s *server) consentOf(t *testing.T, ident, purpose string) (granted, said bool) {
	t.Helper()
	c, _ := s.profile(t, ident)["consent"].(map[string]any)
	v, ok := c[purpose].(map[string]any)
	if !ok {
		return false, false
	}
	return v["granted"] == true, true
}

// unsubscribeToken signs an unsubscribe link as the gateway's mail does,
// with the tracking secret it keeps beside its data file.
func unsubscribeToken(t *testing.T, s *server, profileID, key string) string {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(filepath.Dir(s.data), "tracking.key"))
	if err != nil {
		t.Fatalf("read tracking secret: %v", err)
	}
	tr := &email.Tracker{Secret: secret, BaseURL: "http://cartera.test"}
	u := tr.UnsubscribeURL(email.MessageInfo{ProfileID: profileID, Journey: "cart_abandonment", Step: "reminder", Key: key})
	return strings.TrimPrefix(u, "http://cartera.test")
}

// TestConsentCannotBePinnedOpen reproduces issue 23 item 1 with only the
// public web key: a grant dated far in the future (or with a sentAt far in
// the past) must not outlive the person's own withdrawal, and a messageId
// that predicts the unsubscribe's must not make it a dropped duplicate.
func TestConsentCannotBePinnedOpen(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	const web = "web_dev_write_key"
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","traits":{"email":"victim@example.com","consent":{"email":true}}}`))
	p := s.profile(t, "user_id:victim")
	pid, _ := p["id"].(string)
	evs, _ := p["events"].([]any)
	received, err := time.Parse(time.RFC3339Nano, fmt.Sprint(evs[0].(map[string]any)["receivedAt"]))
	if err != nil {
		t.Fatalf("receivedAt of the first event: %v", err)
	}
	// Within the clock skew allowed, a time ahead is kept as the event
	// time; it must still not order consent.
	ahead := received.Add(20 * time.Hour).Format(time.RFC3339)

	// The attacker grants with a time in the future: within the skew, far
	// ahead, and through a sentAt far in the past (the correction moves it
	// forward).
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","timestamp":"`+ahead+`","traits":{"consent":{"email":true}}}`))
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","timestamp":"2099-12-31T23:59:59Z","traits":{"consent":{"email":true}}}`))
	mustOK(t, s.send(t, web, "/v1/track", `{"userId":"victim","event":"Consent Updated","timestamp":"2026-03-02T10:00:00Z","sentAt":"2000-01-01T00:00:00Z","properties":{"email":true}}`))
	// The victim withdraws from the preference centre: it holds.
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","traits":{"consent":{"email":false}}}`))
	if granted, _ := s.consentOf(t, "user_id:victim", "email"); granted {
		t.Fatal("a future-dated grant outlived the person's later withdrawal")
	}

	// The attacker grants again and plants the messageId an unsubscribe
	// of a predictable message key would have had.
	const key = "cart_abandonment/1/1/reminder/1"
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","timestamp":"`+ahead+`","traits":{"consent":{"email":true}}}`))
	mustOK(t, s.send(t, web, "/v1/track", `{"userId":"victim","event":"Page Viewed","messageId":"unsubscribe:`+key+`"}`))
	// A client messageId in the internal namespace is refused outright.
	if r := s.send(t, web, "/v1/track", `{"userId":"victim","event":"x","messageId":"cartera:abc"}`); r.status != 400 ||
		!strings.HasPrefix(fmt.Sprint(r.body["error"]), `messageId: the prefix "cartera:" is reserved`) {
		t.Errorf("client messageId in the internal namespace: %d %s, want 400 naming messageId", r.status, r.raw)
	}
	if granted, _ := s.consentOf(t, "user_id:victim", "email"); !granted {
		t.Fatal("setup: the attacker's newer grant should stand until the person withdraws again")
	}

	// The one-click unsubscribe works and says so only once it is true.
	path := unsubscribeToken(t, s, pid, key)
	r := s.do(t, "POST", path, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte("List-Unsubscribe=One-Click"))
	if r.status != 200 || !strings.Contains(r.raw, "<h1>Unsubscribed</h1>") {
		t.Errorf("unsubscribe: %d %s, want 200 Unsubscribed", r.status, r.raw)
	}
	if granted, said := s.consentOf(t, "user_id:victim", "email"); granted || !said {
		t.Fatal("email consent still granted after the unsubscribe link")
	}
	// The withdrawal was recorded once, under an id in the internal
	// namespace; a second click while unsubscribed records nothing more.
	withdrawals := func() []map[string]any {
		var out []map[string]any
		for _, ev := range eventsNamed(s.profile(t, "user_id:victim"), "Consent Updated") {
			if ev["source"] == "email" {
				out = append(out, ev)
			}
		}
		return out
	}
	w := withdrawals()
	if len(w) != 1 {
		t.Fatalf("%d withdrawals from the unsubscribe link, want 1: the planted messageId made it a duplicate", len(w))
	}
	if id := fmt.Sprint(w[0]["messageId"]); !strings.HasPrefix(id, "cartera:") || strings.Contains(id, key) {
		t.Errorf("withdrawal recorded with messageId %q, want an opaque id in the internal namespace", id)
	}
	r = s.do(t, "POST", path, nil, nil)
	if r.status != 200 || !strings.Contains(r.raw, "<h1>Unsubscribed</h1>") {
		t.Errorf("second unsubscribe: %d %s", r.status, r.raw)
	}
	if n := len(withdrawals()); n != 1 {
		t.Errorf("%d withdrawals after a second click, want 1", n)
	}
}

// TestUnsubscribePageOnlyWhenTrue: the page says "Unsubscribed" only when
// the person's email consent is withdrawn (or they are gone), and answers
// a 500 asking to try again otherwise.
func TestUnsubscribePageOnlyWhenTrue(t *testing.T) {
	ctx := context.Background()
	st, err := profiles.Open(ctx, filepath.Join(t.TempDir(), "cartera.db"), profiles.DefaultConfig(), profiles.Options{Now: clocktest.New(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)).Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	identify := func(user string, consent map[string]any) string {
		e := &profiles.Event{Type: profiles.TypeIdentify, UserID: user, Traits: map[string]any{"consent": consent}, Source: "web"}
		res, err := st.Ingest(ctx, []*profiles.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].ProfileID
	}
	granted := identify("g", map[string]any{"email": true})
	withdrawn := identify("w", map[string]any{"email": false})
	silent := identify("s", map[string]any{"sms": true})

	a := &api{store: st, log: slog.New(slog.DiscardHandler)}
	app := fiber.New()
	app.Post("/u/:pid", func(c *fiber.Ctx) error {
		return a.confirmUnsubscribe(c, &email.TokenInfo{MessageInfo: email.MessageInfo{ProfileID: c.Params("pid")}})
	})
	for _, tt := range []struct {
		name, pid string
		status    int
		heading   string
	}{
		{"consent withdrawn", withdrawn, 200, "<h1>Unsubscribed</h1>"},
		{"consent still granted", granted, 500, "<h1>Not unsubscribed yet</h1>"},
		{"no email consent recorded", silent, 500, "<h1>Not unsubscribed yet</h1>"},
		{"person erased or unknown", "0123456789abcdef01234567", 200, "<h1>Unsubscribed</h1>"},
	} {
		resp, err := app.Test(httptest.NewRequest("POST", "/u/"+tt.pid, nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.heading) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, resp.StatusCode, body, tt.status, tt.heading)
		}
	}
}

// TestOrdersOnlyFromServerSources reproduces issue 23 item 3: with the
// public web key, an Order Completed claiming the till raised the points
// and store_orders. Orders are now refused from client sources, and the
// example rules read the source from the write key, not properties.channel.
func TestOrdersOnlyFromServerSources(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"shopper","traits":{"email":"shopper@example.com"}}`))

	const want = `event: "Order Completed" is accepted only from server sources; source "web" is a client source (sources[].allow_events to allow it)`
	r := s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"shopper","event":"Order Completed","properties":{"order_id":"x1","revenue":99999,"channel":"pos"}}`)
	if r.status != 400 || r.body["error"] != want {
		t.Errorf("web key, Order Completed: %d %s, want 400 %q", r.status, r.raw, want)
	}
	r = s.send(t, "app_dev_write_key", "/v1/batch", `{"batch":[{"type":"track","userId":"shopper","event":"Product Viewed"},{"type":"track","userId":"shopper","event":"Order Refunded","properties":{"order_id":"x1"}}]}`)
	if r.status != 400 || !strings.HasPrefix(fmt.Sprint(r.body["error"]), `batch[1].event: "Order Refunded" is accepted only from server sources; source "app"`) {
		t.Errorf("app key, batch with Order Refunded: %d %s, want 400 naming batch[1].event", r.status, r.raw)
	}
	p := s.profile(t, "user_id:shopper")
	if n := len(eventsNamed(p, "Order Completed")) + len(eventsNamed(p, "Order Refunded")) + len(eventsNamed(p, "Product Viewed")); n != 0 {
		t.Errorf("%d events of refused requests stored", n)
	}
	computed, _ := p["computed"].(map[string]any)
	if v, _ := computed["lifetime_value"].(float64); v != 0 {
		t.Errorf("lifetime_value = %v after refused orders, want 0", computed["lifetime_value"])
	}

	// The shop's backend (a server source) sends online orders; one that
	// says channel pos is still not a till order.
	mustOK(t, s.send(t, "shop_dev_write_key", "/v1/track", `{"userId":"shopper","event":"Order Completed","properties":{"order_id":"w1","revenue":50,"channel":"pos"}}`))
	mustOK(t, s.send(t, "pos_dev_write_key", "/v1/track", `{"userId":"shopper","event":"Order Completed","properties":{"order_id":"p1","revenue":20,"channel":"pos"}}`))
	computed, _ = s.profile(t, "user_id:shopper")["computed"].(map[string]any)
	if computed["orders_count"] != 2.0 || computed["store_orders"] != 1.0 || computed["lifetime_value"] != 70.0 {
		t.Errorf("computed orders_count %v, store_orders %v, lifetime_value %v; want 2, 1 (the till's only), 70",
			computed["orders_count"], computed["store_orders"], computed["lifetime_value"])
	}
	m := s.admin(t, "GET", "/metrics")
	for _, w := range []string{`cartera_events_rejected_total{reason="source_trust",source="web"} 1`, `cartera_events_rejected_total{reason="source_trust",source="app"} 1`} {
		if !strings.Contains(m.raw, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}

// ledgerActions lists a profile's ledger entries ("merges" in the API) of
// an action.
func ledgerActions(p map[string]any, action string) []map[string]any {
	var out []map[string]any
	entries, _ := p["merges"].([]any)
	for _, e := range entries {
		if m, ok := e.(map[string]any); ok && m["action"] == action {
			out = append(out, m)
		}
	}
	return out
}

// TestProfileTakeoverNeedsVerification reproduces issue 23 item 2 with
// the public web key: knowing a loyalty card number or an email must not
// let a client source take over the profile a till linked them to, while a
// login the shop's backend signed (identity verification) still finds it.
func TestProfileTakeoverNeedsVerification(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	const web, card = "web_dev_write_key", "4000 7777 6666"
	userHash := func(subject string) string {
		return profiles.IdentityHash([]byte("web_dev_identity_secret_change_me"), subject)
	}
	// The till knows the card; the shop's signed-in page links her.
	mustOK(t, s.send(t, "pos_dev_write_key", "/v1/track", `{"anonymousId":"till-1","event":"Order Completed","properties":{"order_id":"p1","revenue":100,"loyalty_card":"`+card+`"}}`))
	till := s.profile(t, "loyalty_card:"+card)
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","context":{"user_hash":"`+userHash("victim")+`"},
		"traits":{"email":"victim@example.com","first_name":"Vera","loyalty_card":"`+card+`","consent":{"email":true}}}`))
	victim := s.profile(t, "user_id:victim")
	if victim["id"] != till["id"] || s.profile(t, "email:victim@example.com")["id"] != till["id"] {
		t.Fatalf("a verified login with the card: profile %v, want the till's %v", victim["id"], till["id"])
	}

	// A wrong or unusable hash is refused, naming the field.
	for body, want := range map[string]string{
		`{"userId":"victim","context":{"user_hash":"` + userHash("someone-else") + `"},"traits":{"first_name":"X"}}`: "context.user_hash: does not match the userId",
		`{"anonymousId":"x","context":{"user_hash":"00"}}`:                                                           "context.user_hash: needs a userId or traits.email to verify",
	} {
		if r := s.send(t, web, "/v1/identify", body); r.status != 400 || r.body["error"] != want {
			t.Errorf("identify %s: %d %s, want 400 %q", body, r.status, r.raw, want)
		}
	}
	if r := s.send(t, "pos_dev_write_key", "/v1/identify", `{"userId":"victim","context":{"user_hash":"00"}}`); r.status != 400 ||
		r.body["error"] != `context.user_hash: source "pos" has no identity_secret to check it with` {
		t.Errorf("user_hash from a source without a secret: %d %s", r.status, r.raw)
	}

	// Mallory knows the card: her identify stays on her own profile, as a
	// claim support can see, and her address never reaches Vera's.
	mustOK(t, s.send(t, web, "/v1/identify", `{"anonymousId":"e2","traits":{"loyalty_card":"`+card+`","email":"mallory@evil.example","consent":{"email":true}}}`))
	mallory := s.profile(t, "email:mallory@evil.example")
	if mallory["id"] == till["id"] {
		t.Fatal("an unverified identify with a known card linked the attacker's email to the card holder's profile")
	}
	if claims := ledgerActions(mallory, "unverified_claim"); len(claims) != 1 || claims[0]["profile"] != till["id"] {
		t.Errorf("attacker's ledger %v, want one unverified_claim naming %v", mallory["merges"], till["id"])
	}
	if tr, _ := mallory["traits"].(map[string]any); tr["loyalty_card"] != nil {
		t.Errorf("the claimed card was kept as the attacker's trait: %v", tr)
	}
	// She knows the email: a user id of her own with it stays apart too.
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"attacker","traits":{"email":"victim@example.com","first_name":"X"}}`))
	if s.profile(t, "user_id:attacker")["id"] == till["id"] {
		t.Error("an unverified identify with a known email merged into its owner's profile")
	}
	// She sends Vera's user id with an address of hers: the address stays
	// on a profile of its own, claiming the user id.
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","traits":{"email":"mallory2@evil.example","first_name":"X"}}`))
	if m2 := s.profile(t, "email:mallory2@evil.example"); m2["id"] == till["id"] || len(ledgerActions(m2, "unverified_claim")) != 1 {
		t.Errorf("attacker's second address on %v (ledger %v), want a profile of its own with a claim", m2["id"], m2["merges"])
	}
	// Vera's user id alone: stored on her profile, but no traits or
	// consent grants change.
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","traits":{"first_name":"X","consent":{"sms":true}}}`))
	victim = s.profile(t, "user_id:victim")
	if tr, _ := victim["traits"].(map[string]any); tr["first_name"] != "Vera" || tr["email"] != "victim@example.com" {
		t.Errorf("victim's traits %v, want first_name Vera and her own email", tr)
	}
	if granted, said := s.consentOf(t, "user_id:victim", "sms"); granted || said {
		t.Error("an unverified client grant of sms consent reached the protected profile")
	}
	if len(ledgerActions(victim, "refused_change")) != 1 {
		t.Errorf("victim's ledger %v, want one refused_change", victim["merges"])
	}
	// A withdrawal is honoured from anyone.
	mustOK(t, s.send(t, web, "/v1/identify", `{"userId":"victim","traits":{"consent":{"email":false}}}`))
	if granted, _ := s.consentOf(t, "user_id:victim", "email"); granted {
		t.Error("an unverified withdrawal was not applied")
	}
	m := s.admin(t, "GET", "/metrics")
	for _, w := range []string{`cartera_unverified_events_guarded_total{outcome="claim",source="web"} 3`, `cartera_unverified_events_guarded_total{outcome="limited",source="web"} 1`} {
		if !strings.Contains(m.raw, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}

func TestIdentitySecretsFromEnv(t *testing.T) {
	path := writeFile(t, "c.yaml", `
sources:
  - name: web
    identity_secret: file_web_identity_secret
  - name: app
    identity_secret: file_app_identity_secret
  - name: pos
    trust: server
`)
	var stderr bytes.Buffer
	f, err := parseServeFlags([]string{"--config", path}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, envOf(map[string]string{"CARTERA_IDENTITY_SECRETS": "web=env_web_identity_secret"}))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range cfg.Sources {
		got[s.Name] = s.IdentitySecret
	}
	if want := map[string]string{"web": "env_web_identity_secret", "app": "", "pos": ""}; !maps.Equal(got, want) {
		t.Errorf("identity secrets %v, want %v (the environment replaces the file's)", got, want)
	}
	for env, want := range map[string]string{
		"web":                    "CARTERA_IDENTITY_SECRETS: entry 1: want source=secret",
		"kiosk=some_long_secret": `CARTERA_IDENTITY_SECRETS: entry 1: no source "kiosk"`,
		"web=short":              "sources[0].identity_secret: want at least 16 characters",
	} {
		if _, err := loadConfig(f, envOf(map[string]string{"CARTERA_IDENTITY_SECRETS": env})); err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("CARTERA_IDENTITY_SECRETS=%s: %v, want %q", env, err, want)
		}
	}
}

// Under `unverified_addresses: hold`, an address that only an unverified
// web identify gave gets no message (the welcome email is suppressed,
// saying why); once the till names it, or when the shop's backend
// verified the identify, the email goes.
func TestNoMessageToAnUnverifiedAddress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyDir(t, "../../examples", dir)
	pol := filepath.Join(dir, "policies.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	held := bytes.Replace(b, []byte("unverified_addresses: send"), []byte("unverified_addresses: hold"), 1)
	if bytes.Equal(held, b) {
		t.Fatal("examples/policies.yaml has no unverified_addresses: send to turn into hold")
	}
	if err := os.WriteFile(pol, held, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerConfig(t, filepath.Join(dir, "c.db"), filepath.Join(dir, "cartera.yaml"), nil, io.Discard)
	const web = "web_dev_write_key"
	signUp := func(anon, card, email, user string) {
		t.Helper()
		ctx := ""
		if user != "" {
			hash := profiles.IdentityHash([]byte("web_dev_identity_secret_change_me"), user)
			ctx = `"userId":"` + user + `","context":{"user_hash":"` + hash + `"},`
		}
		mustOK(t, s.send(t, web, "/v1/identify", `{`+ctx+`"anonymousId":"`+anon+`","traits":{"email":"`+email+`","loyalty_card":"`+card+`","consent":{"email":true}}}`))
		mustOK(t, s.send(t, web, "/v1/track", `{"anonymousId":"`+anon+`","event":"Signed Up"}`))
	}
	welcome := func() map[string]float64 { return s.stepCounts(t, "welcome")["welcome_email"] }

	signUp("w-1", "4000 1111 0001", "someone.else@example.com", "")
	if c := welcome(); c["suppressed"] != 1 || c["sent"] != 0 {
		t.Fatalf("welcome email to an address only the web gave: %v, want suppressed", c)
	}

	// The shop's backend verified this one: it goes.
	signUp("w-2", "4000 1111 0002", "member@example.com", "member-2")
	if c := welcome(); c["sent"] != 1 {
		t.Errorf("welcome email after a verified identify: %v, want one sent", c)
	}

	// The web gives an address, the till names it too: confirmed, the
	// sign-up's email goes.
	mustOK(t, s.send(t, web, "/v1/identify", `{"anonymousId":"w-3","traits":{"email":"third@example.com","loyalty_card":"4000 1111 0003","consent":{"email":true}}}`))
	mustOK(t, s.send(t, "pos_dev_write_key", "/v1/identify", `{"anonymousId":"till-7","traits":{"email":"third@example.com"}}`))
	mustOK(t, s.send(t, web, "/v1/track", `{"anonymousId":"w-3","event":"Signed Up"}`))
	if c := welcome(); c["sent"] != 2 || c["suppressed"] != 1 {
		t.Errorf("welcome email once the till confirmed the address: %v, want a second one sent", c)
	}

	// simulate, with the same config, shows why.
	events := filepath.Join(dir, "signup.ndjson")
	if err := os.WriteFile(events, []byte(`{"type":"identify","anonymousId":"w-9","traits":{"email":"sim@example.com","loyalty_card":"4000 1111 0009","consent":{"email":true}},"timestamp":"2026-11-20T10:00:00Z","source":"web"}
{"type":"track","anonymousId":"w-9","event":"Signed Up","timestamp":"2026-11-20T10:01:00Z","source":"web"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := simulateRun(t, "--config", filepath.Join(dir, "cartera.yaml"), "--events", events)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, stderr)
	}
	checkScenario(t, checkActions(t, out), scenario{
		want:  []string{"2026-11-20T10:01:00Z welcome welcome_email suppressed email reason=" + journeys.ReasonUnverifiedAddress},
		never: []string{"welcome_email send"},
	})
}
