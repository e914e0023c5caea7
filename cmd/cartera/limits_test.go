package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/internal/clocktest"
	"cartera/profiles"
)

// limitedCount reads cartera_requests_limited_total{limit=name}.
func limitedCount(t *testing.T, s *server, name string) int {
	t.Helper()
	m := s.admin(t, "GET", "/metrics")
	prefix := fmt.Sprintf("cartera_requests_limited_total{limit=%q} ", name)
	for line := range strings.SplitSeq(m.raw, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("metrics lack %s", prefix)
	return 0
}

func want429(t *testing.T, r reply, what string) {
	t.Helper()
	if r.status != 429 {
		t.Fatalf("%s: %d %s, want 429", what, r.status, r.raw)
	}
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("%s: Retry-After %q, want whole seconds", what, r.header.Get("Retry-After"))
	}
	if r.body["success"] != false || !strings.Contains(fmt.Sprint(r.body["error"]), "rate limit") {
		t.Errorf("%s: body %s, want a rate limit error", what, r.raw)
	}
}

// TestWriteKeyFloodLimitsOnlyItself: a write key over its request rate gets
// 429s with Retry-After, while another key's requests, interleaved with
// the flood, all succeed. The rate is so low that no refill can happen
// during the test: exactly the burst gets through.
func TestWriteKeyFloodLimitsOnlyItself(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_LIMITS": "write_key_requests=0.001/3,refusal_delay=0s"})
	const burst = 3
	for i := range 12 {
		flood := s.send(t, "web_dev_write_key", "/v1/track", fmt.Sprintf(`{"anonymousId":"f%d","event":"Product Viewed"}`, i))
		if i < burst {
			mustOK(t, flood)
		} else {
			want429(t, flood, fmt.Sprintf("flooding key, request %d", i+1))
		}
		// The other key, Basic or in the body, keeps its own bucket.
		if i < burst {
			mustOK(t, s.send(t, "app_dev_write_key", "/v1/track", fmt.Sprintf(`{"anonymousId":"o%d","event":"Product Viewed"}`, i)))
		}
	}
	// The key in the body, as browser SDKs send it, is the same key.
	r := s.send(t, "", "/v1/track", `{"writeKey":"web_dev_write_key","anonymousId":"f","event":"Product Viewed"}`)
	want429(t, r, "flooding key in the body")
	if got := limitedCount(t, s, "write_key_requests"); got != 12-burst+1 {
		t.Errorf("cartera_requests_limited_total{limit=write_key_requests} %d, want %d", got, 12-burst+1)
	}
	// An unknown key is not limited per key (it gets its 401).
	if r := s.send(t, "nope_nope_nope", "/v1/track", `{"anonymousId":"x","event":"x"}`); r.status != 401 {
		t.Errorf("unknown key: %d, want 401", r.status)
	}
	// Only the accepted events were kept.
	if p := s.admin(t, "GET", "/v1/profiles/anonymous_id:f5"); p.status != 404 {
		t.Errorf("a refused event was kept: %d", p.status)
	}
}

// TestWriteKeyEventRate: events are charged once accepted; a key in debt
// is refused until it is paid off, whatever the size of its next request.
func TestWriteKeyEventRate(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_LIMITS": "write_key_events=0.001/5,refusal_delay=0s"})
	batch := func(prefix string, n int) string {
		var evs []string
		for i := range n {
			evs = append(evs, fmt.Sprintf(`{"type":"track","anonymousId":"%s%d","event":"Product Viewed"}`, prefix, i))
		}
		return `{"batch":[` + strings.Join(evs, ",") + `]}`
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/batch", batch("a", 4)))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/batch", batch("b", 4))) // 1 token left: accepted, 3 owed
	want429(t, s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"c","event":"Product Viewed"}`), "key in debt")
	mustOK(t, s.send(t, "app_dev_write_key", "/v1/batch", batch("d", 5)))
	if got := limitedCount(t, s, "write_key_events"); got != 1 {
		t.Errorf("limited write_key_events %d, want 1", got)
	}
}

// TestAddressWalletAndLinkLimits: per client address on every route but
// /healthz, per device on the pass web service, per token on email links.
func TestAddressWalletAndLinkLimits(t *testing.T) {
	t.Parallel()
	t.Run("address", func(t *testing.T) {
		s := startServer(t, map[string]string{"CARTERA_LIMITS": "address_requests=0.001/4,refusal_delay=0s"})
		for i := range 4 {
			if r := s.do(t, "GET", "/t/o/x"+strconv.Itoa(i), nil, nil); r.status == 429 {
				t.Fatalf("request %d limited within the burst", i+1)
			}
		}
		want429(t, s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"a","event":"x"}`), "address over its rate")
		if r := s.do(t, "GET", "/healthz", nil, nil); r.status != 200 {
			t.Errorf("healthz limited: %d", r.status)
		}
	})
	t.Run("wallet device and tracking token", func(t *testing.T) {
		s := startServer(t, map[string]string{"CARTERA_LIMITS": "wallet_device_requests=0.001/2,tracking_token_requests=0.001/2,refusal_delay=0s"})
		for _, c := range []struct{ name, first, other string }{
			{"device", "/wallet/v1/devices/dev1/registrations/pass.example", "/wallet/v1/devices/dev2/registrations/pass.example"},
			{"pass", "/wallet/v1/passes/pass.example/S1", "/wallet/v1/passes/pass.example/S2"},
			{"open", "/t/o/token-one", "/t/o/token-two"},
			{"click", "/t/c/token-one", "/t/c/token-two"},
		} {
			for i := range 2 {
				if r := s.do(t, "GET", c.first, nil, nil); r.status == 429 {
					t.Fatalf("%s: request %d limited within the burst", c.name, i+1)
				}
			}
			want429(t, s.do(t, "GET", c.first, nil, nil), c.name)
			if r := s.do(t, "GET", c.other, nil, nil); r.status == 429 {
				t.Errorf("%s: another one limited too", c.name)
			}
		}
		if got := limitedCount(t, s, "wallet_device_requests"); got != 2 {
			t.Errorf("limited wallet_device_requests %d, want 2", got)
		}
		if got := limitedCount(t, s, "tracking_token_requests"); got != 2 {
			t.Errorf("limited tracking_token_requests %d, want 2", got)
		}
	})
}

// TestConnectionCapPerAddress: past max_connections_per_address a new
// connection is answered 429 and closed; those already served go on.
func TestConnectionCapPerAddress(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_LIMITS": "max_connections_per_address=2"})
	addr := strings.TrimPrefix(s.base, "http://")
	get := func(c net.Conn) (*http.Response, error) {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var open []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r, err := get(c); err != nil || r.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", i+1, r, err)
		}
		open = append(open, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := get(c); err == nil && r.StatusCode != 429 {
		t.Errorf("third connection: %d, want 429 or closed", r.StatusCode)
	}
	for i, c := range open {
		if r, err := get(c); err != nil || r.StatusCode != 200 {
			t.Errorf("connection %d after the cap: %v %v", i+1, r, err)
		}
	}
}

// TestSlowHeadersAreCut: a client that never finishes its headers is cut
// after header_timeout (here 200 ms; the read below would wait 20 s).
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_LIMITS": "header_timeout=200ms"})
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a connection with unfinished headers open")
	}
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Errorf("answer to unfinished headers: %q, want 408 or a closed connection", b)
	}
}

func TestLimitsConfig(t *testing.T) {
	for _, c := range []struct {
		env, err string
	}{
		{"off", ""},
		{"write_key_requests=50/100,address_requests=off,header_timeout=5s,max_connections=10", ""},
		{"write_key_requests=50", "write_key_requests: want PER_SECOND/BURST or off"},
		{"write_key_requests=5/0", "limits.write_key_requests.burst: want at least 1"},
		{"write_key_events=-1/3", "limits.write_key_events.per_second"},
		{"header_timeout=soon", "header_timeout: want a duration"},
		{"speed=3", `unknown limit "speed"`},
		{"fair_share.lag_events=5000,fair_share.lag=250ms,fair_share.cpu_wait=0,fair_share.window=5s,fair_share.margin=2,fair_share.min_rate=100", ""},
		{"fair_share=off", ""},
		{"fair_share=on", "fair_share: want off"},
		{"fair_share.lag_events=-1", "limits.fair_share.lag_events: want 0 (off) or more"},
		{"fair_share.lag=-1s", "limits.fair_share.lag: want 0 (off)"},
		{"fair_share.lag=soon", "fair_share.lag: want a duration"},
		{"fair_share.cpu_wait=2s", "limits.fair_share.cpu_wait: want 0 (off) up to 1s"},
		{"fair_share.window=10ms", "limits.fair_share.window: want 100ms to 1m"},
		{"fair_share.margin=0.5", "limits.fair_share.margin: want 1 (an even split) or more"},
		{"fair_share.min_rate=-3", "limits.fair_share.min_rate: want 0 or more"},
		{"fair_share.speed=3", `unknown limit "fair_share.speed"`},
		{"write_key_concurrency=2", ""},
		{"write_key_concurrency=0", ""},
		{"write_key_concurrency=two", "write_key_concurrency: want a whole number"},
		{"write_key_concurrency=-1", "limits.write_key_concurrency: want 0 (no cap) or more"},
	} {
		cfg := DefaultLimitsConfig()
		err := applyLimitsEnv(&cfg, c.env)
		if err == nil {
			err = cfg.Validate()
		}
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("CARTERA_LIMITS=%s: %v, want %q", c.env, err, c.err)
		}
	}
	cfg := DefaultLimitsConfig()
	cfg.ProxyHeader = "X-Real-IP"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Errorf("proxy_header without trusted_proxies: %v", err)
	}
	if got := addressKey("2001:db8:1:2:3:4:5:6"); got != "2001:db8:1:2::" {
		t.Errorf("IPv6 address key %s, want its /64", got)
	}
}

// TestRefusalDelay: a refused request is held before its 429 for the
// configured delay, or less when the limit lets a request through sooner,
// so a client that ignores Retry-After cannot spin on refusals; with no
// delay the 429 is at once. The pause is recorded, not slept.
func TestRefusalDelay(t *testing.T) {
	for _, c := range []struct {
		name      string
		perSecond float64
		delay     time.Duration
		want      time.Duration
	}{
		{"the delay, when the limit lets the next one through later", 0.5, time.Second, time.Second},
		{"until the next one may go, when sooner", 4, time.Second, 250 * time.Millisecond},
		{"none when off", 0.5, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultLimitsConfig()
			cfg.AddressRequests = RateLimit{PerSecond: c.perSecond, Burst: 1}
			cfg.RefusalDelay = c.delay
			l := newEdgeLimits(cfg, nil)
			at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			l.now = func() time.Time { return at }
			var paused []time.Duration
			l.pause = func(d time.Duration) { paused = append(paused, d) }
			app := fiber.New(fiber.Config{ErrorHandler: (&api{}).errorHandler})
			app.Use(l.edge)
			app.Get("/x", func(c *fiber.Ctx) error { return c.SendString("ok") })
			for i, want := range []int{200, 429} {
				resp, err := app.Test(httptest.NewRequest("GET", "/x", nil))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != want {
					t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
				}
			}
			var wantPaused []time.Duration
			if c.want > 0 {
				wantPaused = []time.Duration{c.want}
			}
			if !slices.Equal(paused, wantPaused) {
				t.Errorf("paused %v, want %v", paused, wantPaused)
			}
		})
	}
	cfg := DefaultLimitsConfig()
	if err := applyLimitsEnv(&cfg, "refusal_delay=11s"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "limits.refusal_delay: want 0 (answer at once) to 10s") {
		t.Errorf("refusal_delay=11s: %v", err)
	}
}

// TestWriteKeyEventsChargedWhenAccepted: a request's events are charged
// when the handler has accepted them, not as of the request's start. A
// slow request charged at its start would move the bucket's clock back
// over a faster one's charge and credit the time between twice: here
// the key, 10 events a second, sends 20 in its first second and would be
// let through at the second's end.
func TestWriteKeyEventsChargedWhenAccepted(t *testing.T) {
	cfg := DefaultLimitsConfig()
	cfg.WriteKeyEvents = RateLimit{PerSecond: 10, Burst: 10}
	cfg.RefusalDelay = 0
	cfg.FairShare = FairShareConfig{}
	l := newEdgeLimits(cfg, nil)
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	l.now = clock.Now
	sources, err := profiles.NewSources([]profiles.SourceConfig{{Name: "web", WriteKeys: []string{"web_key_0123456789"}}})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	app := fiber.New(fiber.Config{ErrorHandler: (&api{}).errorHandler})
	app.Post("/b", l.ingestLimit(sources), func(c *fiber.Ctx) error {
		if c.Query("slow") != "" {
			entered <- struct{}{}
			<-release
		}
		n, _ := strconv.Atoi(c.Query("n"))
		setAccepted(c, n)
		return c.SendString("ok")
	})
	post := func(query string) int {
		req := httptest.NewRequest("POST", "/b?"+query, nil)
		req.SetBasicAuth("web_key_0123456789", "")
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Error(err)
			return 0
		}
		return resp.StatusCode
	}
	slow := make(chan int, 1)
	go func() { slow <- post("n=10&slow=1") }() // comes in at 0 s
	<-entered
	clock.Advance(time.Second)
	if got := post("n=10"); got != 200 { // at 1 s: the bucket is full
		t.Fatalf("second request: %d", got)
	}
	close(release) // the slow one is accepted at 1 s: 20 events in a second
	if got := <-slow; got != 200 {
		t.Fatalf("slow request: %d", got)
	}
	clock.Advance(time.Second) // 10 more allowed: the debt of 10 is paid, no more
	if got := post("n=1"); got != 429 {
		t.Errorf("at 2 s, after 20 events in the first second at 10 a second: %d, want 429", got)
	}
	clock.Advance(100 * time.Millisecond)
	if got := post("n=1"); got != 200 {
		t.Errorf("at 2.1 s: %d, want 200", got)
	}
}
