package main

import (
	"fmt"
	"testing"
)

// TestBrowserContext sends page views as analytics-next does (text/plain,
// the key in the body, the browser's context) and finds the context kept
// on the events and the campaign in the first- and last-touch traits of
// examples/rules/traits.yaml.
func TestBrowserContext(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_ALLOWED_ORIGINS": "web=https://shop.example"})
	page := func(ts, search, campaign string) string {
		ctx := `"page":{"url":"https://shop.example/` + search + `","path":"/","referrer":"https://news.example/","search":"` + search + `","title":"Shoes"},` +
			`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/156","locale":"es-ES","timezone":"Europe/Madrid",` +
			`"library":{"name":"analytics.js","version":"next-1.84.3"}`
		if campaign != "" {
			ctx += `,"campaign":` + campaign
		}
		return fmt.Sprintf(`{"writeKey":"web_dev_write_key","type":"page","anonymousId":"ctx-a1","name":"Home","timestamp":%q,"context":{%s}}`, ts, ctx)
	}
	h := map[string]string{"Origin": "https://shop.example", "Content-Type": "text/plain"}
	for _, body := range []string{
		page("2026-11-01T10:00:00Z", "?utm_source=newsletter&utm_campaign=spring", `{"source":"newsletter","medium":"email","name":"spring"}`),
		page("2026-11-02T10:00:00Z", "", ""),
		page("2026-11-03T10:00:00Z", "?utm_source=google&utm_campaign=black_friday", `{"source":"google","medium":"cpc","name":"black_friday"}`),
		page("2026-11-04T10:00:00Z", "", ""),
	} {
		mustOK(t, s.do(t, "POST", "/v1/p", h, []byte(body)))
	}
	// RudderStack's identify: the traits in context.traits only.
	mustOK(t, s.do(t, "POST", "/v1/identify", map[string]string{"Authorization": basic("web_dev_write_key"), "Origin": "https://shop.example", "Content-Type": "application/json;charset=UTF-8"},
		[]byte(`{"type":"identify","anonymousId":"ctx-a1","userId":"ctx-u1","event":null,"properties":null,"channel":"web","context":{"traits":{"email":"Ana@Example.com","first_name":"Ana"}},"originalTimestamp":"2026-11-05T10:00:00Z"}`)))

	r := s.admin(t, "GET", "/v1/profiles/anonymous_id:ctx-a1")
	if r.status != 200 {
		t.Fatalf("profile: %d %s", r.status, r.raw)
	}
	computed, _ := r.body["computed"].(map[string]any)
	want := map[string]any{"first_touch_source": "newsletter", "first_touch_campaign": "spring", "last_touch_source": "google", "last_touch_campaign": "black_friday"}
	for k, v := range want {
		if computed[k] != v {
			t.Errorf("computed.%s = %#v, want %#v", k, computed[k], v)
		}
	}
	traits, _ := r.body["traits"].(map[string]any)
	if traits["first_name"] != "Ana" || traits["email"] != "ana@example.com" {
		t.Errorf("traits %v: want context.traits of the identify applied (first_name Ana, email normalized)", traits)
	}
	if u := s.admin(t, "GET", "/v1/profiles/user_id:ctx-u1"); u.status != 200 || u.body["id"] != r.body["id"] {
		t.Errorf("user_id:ctx-u1: %d, id %v; want the visitor's profile %v", u.status, u.body["id"], r.body["id"])
	}
	events, _ := r.body["events"].([]any)
	var first map[string]any
	for _, e := range events {
		m := e.(map[string]any)
		if m["type"] == "page" && m["timestamp"] == "2026-11-01T10:00:00Z" {
			first = m
		}
	}
	if first == nil {
		t.Fatalf("the first page view is not among the events: %v", events)
	}
	ctx, _ := first["context"].(map[string]any)
	pg, _ := ctx["page"].(map[string]any)
	camp, _ := ctx["campaign"].(map[string]any)
	if pg["url"] != "https://shop.example/?utm_source=newsletter&utm_campaign=spring" || pg["referrer"] != "https://news.example/" ||
		ctx["userAgent"] == nil || ctx["locale"] != "es-ES" || ctx["timezone"] != "Europe/Madrid" || camp["source"] != "newsletter" {
		t.Errorf("stored context %v: want page, referrer, userAgent, locale, timezone and campaign as sent", ctx)
	}
}
