package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestIngestCORS drives the CORS of ingestion as a browser would: the web
// source allows one shop origin, the app source ("*") any origin, and
// nothing else has CORS at all.
func TestIngestCORS(t *testing.T) {
	t.Parallel()
	const shop, evil = "https://shop.example", "https://evil.example"
	s := startServer(t, map[string]string{"CARTERA_ALLOWED_ORIGINS": "web=" + shop + ",app=*"})
	// Another server in which no source takes every origin.
	strict := startServer(t, map[string]string{"CARTERA_ALLOWED_ORIGINS": "web=" + shop})
	const webKey, appKey = "web_dev_write_key", "app_dev_write_key"
	preflight := func(origin, method, headers string) map[string]string {
		h := map[string]string{"Access-Control-Request-Method": method}
		if origin != "" {
			h["Origin"] = origin
		}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		return h
	}
	textPlain := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Content-Type": "text/plain"}
	}
	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		status             int
		acao               string // "" : the header must be absent
		// also checked when set
		maxAge, allowHeaders, allowMethods string
		errContains                        string
		// stored is an anonymous id whose profile must exist (or, with
		// notStored, must not) after the request.
		stored, notStored string
		// strict sends to the server where no source allows "*".
		strict bool
	}{
		{name: "preflight of an allowed origin", method: "OPTIONS", path: "/v1/t",
			header: preflight(shop, "POST", "authorization,content-type"), status: 204, acao: shop,
			maxAge: "7200", allowHeaders: "Content-Type,Authorization", allowMethods: "POST"},
		{name: "preflight of a long path", method: "OPTIONS", path: "/v1/identify",
			header: preflight(shop, "POST", "content-type"), status: 204, acao: shop, maxAge: "7200"},
		{name: "preflight of RudderStack's headers", method: "OPTIONS", path: "/v1/track",
			header: preflight(shop, "POST", "anonymousid,authorization,content-type,sentat"), status: 204, acao: shop,
			allowHeaders: "AnonymousId,SentAt"},
		{name: "preflight of an origin only the * source allows", method: "OPTIONS", path: "/v1/batch",
			header: preflight(evil, "POST", "content-type"), status: 204, acao: evil},
		{name: "preflight of an origin no source allows", method: "OPTIONS", path: "/v1/t",
			header: preflight(evil, "POST", "content-type"), status: 403, errContains: "no source allows it", strict: true},
		{name: "a post from an origin no source allows", method: "POST", path: "/v1/t", strict: true,
			header: textPlain(evil), body: `{"writeKey":"` + webKey + `","anonymousId":"cors-x5","event":"Product Viewed"}`,
			status: 403, notStored: "cors-x5"},
		{name: "preflight without Origin", method: "OPTIONS", path: "/v1/p", header: map[string]string{}, status: 204},
		{name: "text/plain from the allowed origin, key in the body", method: "POST", path: "/v1/t",
			header: textPlain(shop), body: `{"writeKey":"` + webKey + `","anonymousId":"cors-a1","event":"Product Viewed"}`,
			status: 200, acao: shop, stored: "cors-a1"},
		{name: "origin spelled with a default port", method: "POST", path: "/v1/p",
			header: textPlain("https://SHOP.example:443"), body: `{"writeKey":"` + webKey + `","anonymousId":"cors-a2","name":"Home"}`,
			status: 200, stored: "cors-a2", acao: "https://shop.example:443"},
		{name: "an origin the source does not allow is refused", method: "POST", path: "/v1/t",
			header: textPlain(evil), body: `{"writeKey":"` + webKey + `","anonymousId":"cors-x1","event":"Product Viewed"}`,
			status: 403, errContains: `origin "https://evil.example" may not send with the write key of source web`, notStored: "cors-x1"},
		{name: "refused in a batch too", method: "POST", path: "/v1/b",
			header: textPlain(evil), body: `{"writeKey":"` + webKey + `","batch":[{"type":"track","anonymousId":"cors-x2","event":"Product Added"}]}`,
			status: 403, notStored: "cors-x2"},
		{name: "refused with Basic auth", method: "POST", path: "/v1/track",
			header: map[string]string{"Origin": "http://shop.example", "Authorization": basic(webKey), "Content-Type": "application/json"},
			body:   `{"anonymousId":"cors-x3","event":"Product Viewed"}`, status: 403, notStored: "cors-x3"},
		{name: "the * source takes any origin", method: "POST", path: "/v1/i",
			header: textPlain(evil), body: `{"writeKey":"` + appKey + `","anonymousId":"cors-a3","traits":{"plan":"free"}}`,
			status: 200, acao: evil, stored: "cors-a3"},
		{name: "a source with no allowed_origins takes no page", method: "POST", path: "/v1/track",
			header: textPlain(shop), body: `{"writeKey":"pos_dev_write_key","userId":"cors-u1","event":"Order Refunded","properties":{"order_id":"o1"}}`,
			status: 403},
		{name: "a server sends no Origin", method: "POST", path: "/v1/track",
			header: map[string]string{"Authorization": basic(webKey), "Content-Type": "application/json"},
			body:   `{"anonymousId":"cors-a4","event":"Product Viewed"}`, status: 200, stored: "cors-a4"},
		{name: "an unknown key from an allowed origin can read the 401", method: "POST", path: "/v1/t",
			header: textPlain(shop), body: `{"writeKey":"nobody-knows-this","anonymousId":"cors-x4","event":"E"}`,
			status: 401, acao: shop, notStored: "cors-x4"},
		{name: "RudderStack's beacon: key in the query", method: "POST", path: "/beacon/v1/batch?writeKey=" + webKey,
			header: textPlain(shop), body: `{"batch":[{"type":"track","anonymousId":"cors-a5","event":"Product Viewed"}],"sentAt":"2026-01-01T00:00:00Z"}`,
			status: 200, acao: shop, stored: "cors-a5"},
		{name: "admin route: no CORS", method: "GET", path: "/v1/profiles/anonymous_id:cors-a1",
			header: map[string]string{"Origin": shop, "Authorization": "Bearer " + testAdminToken}, status: 200},
		{name: "admin route: no preflight", method: "OPTIONS", path: "/v1/profiles/anonymous_id:cors-a1",
			header: preflight(shop, "GET", "authorization"), status: 401},
		{name: "journeys: no preflight", method: "OPTIONS", path: "/v1/journeys",
			header: preflight(shop, "GET", "authorization"), status: 405},
		{name: "wallet service: no CORS", method: "OPTIONS", path: "/wallet/v1/log",
			header: preflight(shop, "POST", "content-type"), status: 405},
		{name: "health: no CORS", method: "GET", path: "/healthz", header: map[string]string{"Origin": shop}, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := s
			if tc.strict {
				srv = strict
			}
			r := srv.do(t, tc.method, tc.path, tc.header, []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tc.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.acao)
			}
			if tc.acao == "" {
				for k := range r.header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("header %s: %q, want no CORS header", k, r.header.Get(k))
					}
				}
			} else if vary := r.header.Get("Vary"); !strings.Contains(vary, "Origin") {
				t.Errorf("Vary %q, want Origin in it (the answer depends on it)", vary)
			}
			if tc.maxAge != "" && r.header.Get("Access-Control-Max-Age") != tc.maxAge {
				t.Errorf("Access-Control-Max-Age %q, want %q", r.header.Get("Access-Control-Max-Age"), tc.maxAge)
			}
			allowed := strings.ReplaceAll(r.header.Get("Access-Control-Allow-Headers"), " ", "")
			for _, h := range strings.Split(tc.allowHeaders, ",") {
				if h != "" && !strings.Contains(","+allowed+",", ","+h+",") {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
				}
			}
			if tc.allowMethods != "" && r.header.Get("Access-Control-Allow-Methods") != tc.allowMethods {
				t.Errorf("Access-Control-Allow-Methods %q, want %q", r.header.Get("Access-Control-Allow-Methods"), tc.allowMethods)
			}
			if tc.errContains != "" {
				if msg, _ := r.body["error"].(string); !strings.Contains(msg, tc.errContains) || r.body["success"] != false {
					t.Errorf("body %s, want success false and an error with %q", r.raw, tc.errContains)
				}
			}
			if tc.stored != "" {
				if p := srv.admin(t, "GET", "/v1/profiles/anonymous_id:"+tc.stored); p.status != 200 {
					t.Errorf("profile of %s: status %d, want the event stored", tc.stored, p.status)
				}
			}
			if tc.notStored != "" {
				if p := srv.admin(t, "GET", "/v1/profiles/anonymous_id:"+tc.notStored); p.status != 404 {
					t.Errorf("profile of %s: status %d, want 404: nothing stored", tc.notStored, p.status)
				}
			}
		})
	}
}

// TestSegmentShortPaths posts each of analytics-next's one-letter paths as
// the SDK does (text/plain, the write key in the body) and finds the event
// stored with the type of its long path.
func TestSegmentShortPaths(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	bodies := map[string]string{
		"t": `"event":"Product Viewed"`,
		"i": `"traits":{"first_name":"Ana"}`,
		"p": `"name":"Home"`,
		"s": `"name":"Cart"`,
		"g": `"groupId":"g1"`,
		"a": `"userId":"short-u1","previousId":"short-a"`,
	}
	types := map[string]string{"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
	for _, p := range []string{"t", "i", "p", "s", "g", "a"} {
		body := fmt.Sprintf(`{"writeKey":"web_dev_write_key","anonymousId":"short-a","messageId":"short-%s",%s}`, p, bodies[p])
		r := s.do(t, "POST", "/v1/"+p, map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, []byte(body))
		mustOK(t, r)
	}
	batch := `{"writeKey":"web_dev_write_key","batch":[{"type":"track","anonymousId":"short-a","messageId":"short-b","event":"Cart Viewed"}]}`
	mustOK(t, s.do(t, "POST", "/v1/b", map[string]string{"Content-Type": "text/plain"}, []byte(batch)))
	// A long-path type in the body that disagrees with the short path is refused.
	r := s.do(t, "POST", "/v1/t", map[string]string{"Content-Type": "text/plain"}, []byte(`{"writeKey":"web_dev_write_key","type":"page","anonymousId":"short-a","name":"X"}`))
	if r.status != 400 || !strings.Contains(r.raw, `endpoint takes \"track\"`) {
		t.Errorf("page sent to /v1/t: %d %s, want 400 naming the type", r.status, r.raw)
	}

	p := s.admin(t, "GET", "/v1/profiles/anonymous_id:short-a")
	if p.status != 200 {
		t.Fatalf("profile: %d %s", p.status, p.raw)
	}
	got := map[string]string{}
	events, _ := p.body["events"].([]any)
	for _, e := range events {
		m := e.(map[string]any)
		if id, _ := m["messageId"].(string); strings.HasPrefix(id, "short-") {
			got[strings.TrimPrefix(id, "short-")], _ = m["type"].(string)
		}
	}
	types["b"] = "track"
	for p, want := range types {
		if got[p] != want {
			t.Errorf("event posted to /v1/%s: stored as %q, want %q (all: %v)", p, got[p], want, got)
		}
	}
}

// TestRudderSourceConfig answers RudderStack's SDK the way its control
// plane does, for the source of the write key only.
func TestRudderSourceConfig(t *testing.T) {
	t.Parallel()
	const shop = "https://shop.example"
	s := startServer(t, map[string]string{"CARTERA_ALLOWED_ORIGINS": "web=" + shop})
	path := "/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=web_dev_write_key&lockIntegrationsVersion=false&lockPluginsVersion=false"

	pre := s.do(t, "OPTIONS", path, map[string]string{"Origin": shop, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, nil)
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != shop || pre.header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Errorf("preflight: %d %v", pre.status, pre.header)
	}
	r := s.do(t, "GET", path, map[string]string{"Origin": shop, "Authorization": basic("web_dev_write_key")}, nil)
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != shop {
		t.Fatalf("GET: %d %s %v", r.status, r.raw, r.header)
	}
	src, _ := r.body["source"].(map[string]any)
	dests, isList := src["destinations"].([]any)
	cfg, isObj := src["config"].(map[string]any)
	if src["id"] != "web" || src["enabled"] != true || !isList || len(dests) != 0 || !isObj {
		t.Errorf("source %v: want id web, enabled, config an object, no destinations", src)
	}
	if stats, _ := cfg["statsCollection"].(map[string]any); fmt.Sprint(stats) != "map[errors:map[enabled:false] metrics:map[enabled:false]]" {
		t.Errorf("statsCollection %v: want errors and metrics reporting off", stats)
	}
	// The key in the query alone is enough, as the SDK always sends it there.
	if r := s.do(t, "GET", path, nil, nil); r.status != 200 {
		t.Errorf("key in the query only: %d %s", r.status, r.raw)
	}
	if r := s.do(t, "GET", "/sourceConfig/?writeKey=unknown-key-123", nil, nil); r.status != 401 {
		t.Errorf("unknown key: %d, want 401", r.status)
	}
	if r := s.do(t, "GET", path, map[string]string{"Origin": "https://evil.example"}, nil); r.status != 403 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("origin not allowed: %d %v, want 403 without CORS", r.status, r.header)
	}
}
