package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"cartera/profiles"
)

const (
	floodKey   = "flood_key_0123456789"
	trickleKey = "trickle_key_0123456789"
)

// fairBatch is a batch of n track events.
func fairBatch(prefix string, n int) string {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"type":"track","anonymousId":"%s%d","event":"Product Viewed"}`, prefix, i)
	}
	return `{"batch":[` + strings.Join(evs, ",") + `]}`
}

// TestFairShareRefusesTheFloodNotTheTrickle: one write key floods while the
// apply is held back (or the CPU signal is on); once the gateway is under
// load the flooding key is paced: a request at its slot goes in, the
// others get 429s with Retry-After, counted by source and
// signal, while the other key, sending a trickle between the flood's
// requests, is never refused. Once the load is gone the flood is accepted
// again. The gateway's parts are the real ones: the store, the event log,
// the ingest route with its limits; only the apply waits for the test.
func TestFairShareRefusesTheFloodNotTheTrickle(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		signal string
		fair   FairShareConfig
		// press puts the gateway under load once the flood has 300
		// events in (nil: those are the load).
		press func(la *logAPI, f *fairShare)
		// wantDetail is in the refusal's message.
		wantDetail string
	}{
		{signal: "lag_events", fair: FairShareConfig{LagEvents: 300},
			wantDetail: "applying lagged 4"},
		{signal: "lag", fair: FairShareConfig{Lag: 100 * time.Millisecond},
			press:      func(la *logAPI, _ *fairShare) { la.clock.Advance(150 * time.Millisecond) },
			wantDetail: "applying lagged 150ms"},
		{signal: "cpu", fair: FairShareConfig{CPUWait: 10 * time.Millisecond},
			press: func(_ *logAPI, f *fairShare) {
				f.cpuWait = func(time.Time) time.Duration { return 20 * time.Millisecond }
			},
			wantDetail: "requests waited 20ms for a CPU"},
	} {
		t.Run(c.signal, func(t *testing.T) {
			t.Parallel()
			la := newLogAPI(t, profiles.DefaultLogConfig(),
				profiles.SourceConfig{Name: "web", WriteKeys: []string{floodKey}},
				profiles.SourceConfig{Name: "pos", WriteKeys: []string{trickleKey}})
			cfg := DefaultLimitsConfig()
			cfg.FairShare = c.fair
			cfg.FairShare.Window, cfg.FairShare.Margin, cfg.FairShare.MinRate = 2*time.Second, 1.5, 50
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			l := newEdgeLimits(cfg, reg)
			l.now = la.clock.Now
			var paused []time.Duration
			l.pause = func(d time.Duration) { paused = append(paused, d) }
			l.watchLag(la.store.Lag)
			l.fair.cpuWait = func(time.Time) time.Duration { return 0 }
			la.a.limits = l
			la.a.ingestRoute(la.app, func(c *fiber.Ctx) error { return c.Next() }, "/fair/batch", la.a.ingest(""))

			post := func(key, body string) reply {
				t.Helper()
				req := httptest.NewRequest("POST", "/fair/batch", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.SetBasicAuth(key, "")
				resp, err := la.app.Test(req, 10_000)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
				_ = json.Unmarshal(raw, &r.body)
				return r
			}

			// Before the load, 3 requests go in; under it, the flood is
			// over its share: one more is let in at its pace (its slot is
			// now), the next slot is more than the longest hold away
			// (100 events at 1.5 × half of ~300 events in 2 s), so the
			// rest are refused.
			const accepted, flood = 3, 12
			for i := range flood {
				if i == accepted && c.press != nil {
					c.press(la, l.fair)
				}
				r := post(floodKey, fairBatch(fmt.Sprintf("f%d-", i), 100))
				if i <= accepted {
					mustOK(t, r)
				} else {
					want429(t, r, fmt.Sprintf("flood request %d under load", i+1))
					if msg := fmt.Sprint(r.body["error"]); !strings.Contains(msg, "limits.fair_share") || !strings.Contains(msg, c.wantDetail) {
						t.Errorf("flood refusal %d: %q, want limits.fair_share and %q", i+1, msg, c.wantDetail)
					}
					if ra := r.header.Get("Retry-After"); ra != "2" {
						t.Errorf("flood refusal %d: Retry-After %q, want 2 (its next slot, 1.3 s on)", i+1, ra)
					}
				}
				// The trickle, between the flood's requests, is never refused.
				mustOK(t, post(trickleKey, fairBatch(fmt.Sprintf("t%d-", i), 1)))
			}
			refused := flood - accepted - 1
			if got := testutil.ToFloat64(l.fair.refused.WithLabelValues("web", c.signal)); got != float64(refused) {
				t.Errorf("cartera_fair_share_refused_total{source=web,signal=%s} = %v, want %d", c.signal, got, refused)
			}
			if got := testutil.ToFloat64(l.fair.paced.WithLabelValues("web")); got != 1 {
				t.Errorf("cartera_fair_share_paced_total{source=web} = %v, want 1", got)
			}
			if got := testutil.ToFloat64(l.limited.WithLabelValues("fair_share")); got != float64(refused) {
				t.Errorf("cartera_requests_limited_total{limit=fair_share} = %v, want %d", got, refused)
			}
			for _, s := range []string{"lag_events", "lag", "cpu"} {
				if got := testutil.ToFloat64(l.fair.refused.WithLabelValues("pos", s)); got != 0 {
					t.Errorf("the trickle's source was refused %v times (%s)", got, s)
				}
			}
			if len(paused) != refused || paused[0] != time.Second {
				t.Errorf("paused %v, want %d refusals of 1s", paused, refused)
			}
			// Only what was accepted is in the log: the refusals took nothing.
			if got, want := la.elog.Committed(), uint64((accepted+1)*100+flood); got != want {
				t.Errorf("the log holds %d events, want %d", got, want)
			}

			// The load goes: the applier catches up, the CPU is free.
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { la.store.RunApplier(ctx) })
			defer func() { cancel(); wg.Wait() }()
			if err := la.store.WaitApplied(ctx, la.elog.Committed()); err != nil {
				t.Fatal(err)
			}
			l.fair.cpuWait = func(time.Time) time.Duration { return 0 }
			// The load counts for a window after it was last seen: the
			// flood, still over its share, still pays; the trickle not.
			// It is paced: held until its slot (0.3 s on), then let in;
			// a second request at once is refused.
			la.clock.Advance(time.Second)
			paused = nil
			mustOK(t, post(floodKey, fairBatch("held-", 100)))
			if len(paused) != 1 || paused[0] <= 0 || paused[0] >= time.Second {
				t.Errorf("the paced request was held %v, want once until its slot, under 1s", paused)
			}
			r := post(floodKey, fairBatch("held2-", 100))
			want429(t, r, "flood's second request a second after the load")
			if msg := fmt.Sprint(r.body["error"]); !strings.Contains(msg, "ago") {
				t.Errorf("refusal after the load: %q, want when the load was seen", msg)
			}
			mustOK(t, post(trickleKey, fairBatch("held-t", 1)))
			// Applied before the clock moves on, or its age is a lag.
			if err := la.store.WaitApplied(ctx, la.elog.Committed()); err != nil {
				t.Fatal(err)
			}
			la.clock.Advance(time.Second)
			mustOK(t, post(floodKey, fairBatch("after-", 100)))
		})
	}
}

// TestFairShareLoad: which signal of load is on, first match in the order
// lag in events, lag in time, CPU; and how long it counts.
func TestFairShareLoad(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	cfg := FairShareConfig{LagEvents: 1000, Lag: time.Second, CPUWait: 10 * time.Millisecond, Window: time.Second, Margin: 1.5}
	for _, c := range []struct {
		name   string
		cfg    FairShareConfig
		events uint64
		age    time.Duration
		cpu    time.Duration
		want   string
	}{
		{"idle", cfg, 0, 0, 0, ""},
		{"under every bound", cfg, 999, 999 * time.Millisecond, 9 * time.Millisecond, ""},
		{"lag in events", cfg, 1000, 0, 0, "lag_events"},
		{"lag in time", cfg, 10, time.Second, 0, "lag"},
		{"CPU", cfg, 0, 0, 10 * time.Millisecond, "cpu"},
		{"all: events first", cfg, 5000, 5 * time.Second, time.Second, "lag_events"},
		{"events signal off", FairShareConfig{Lag: time.Second}, 1e6, 0, time.Second, ""},
		{"CPU signal off", FairShareConfig{LagEvents: 10}, 0, time.Hour, time.Second, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFairShare(c.cfg, nil)
			f.lag = func() (uint64, time.Duration) { return c.events, c.age }
			f.cpuWait = func(time.Time) time.Duration { return c.cpu }
			if got, detail := f.load(t0); got != c.want || (got != "") != (detail != "") {
				t.Errorf("load = %q (%s), want %q", got, detail, c.want)
			}
		})
	}
	// A signal seen counts for a window (a second here), then no more.
	f := newFairShare(cfg, nil)
	lag := uint64(5000)
	f.lag = func() (uint64, time.Duration) { return lag, 0 }
	f.cpuWait = func(time.Time) time.Duration { return 0 }
	for _, c := range []struct {
		after time.Duration
		lag   uint64
		want  string
	}{
		{0, 5000, "lag_events"},
		{500 * time.Millisecond, 0, "lag_events"},
		{999 * time.Millisecond, 0, "lag_events"},
		{time.Second, 0, ""},
		{2 * time.Second, 1000, "lag_events"},
		{2*time.Second + 100*time.Millisecond, 0, "lag_events"},
	} {
		lag = c.lag
		if got, _ := f.load(t0.Add(c.after)); got != c.want {
			t.Errorf("%s after, lag %d: load %q, want %q", c.after, c.lag, got, c.want)
		}
	}
	if newFairShare(FairShareConfig{Window: time.Second, Margin: 2}, nil) != nil {
		t.Error("a fair share with every signal off is on")
	}
}

// TestFairShareConfig: CARTERA_LIMITS=off turns the fair share off, and its
// soft bounds must come before the 503 bounds. (Its CARTERA_LIMITS
// settings are cases of TestLimitsConfig.)
func TestFairShareConfig(t *testing.T) {
	off := DefaultLimitsConfig()
	if err := applyLimitsEnv(&off, "off"); err != nil || off.FairShare.on() {
		t.Errorf("CARTERA_LIMITS=off leaves the fair share on: %+v %v", off.FairShare, err)
	}
	// The soft bounds must come before the 503 bounds of profiles.log.
	for _, c := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Limits.FairShare.LagEvents = c.Profiles.Log.MaxLagEvents }, "limits.fair_share.lag_events: want under profiles.log.max_lag_events (1000000)"},
		{func(c *Config) { c.Limits.FairShare.Lag = 45 * time.Second }, "limits.fair_share.lag: want under profiles.log.max_lag (30s)"},
	} {
		cfg := DefaultConfig()
		c.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: %v, want %q", err, c.want)
		}
	}
	if cfg := DefaultConfig(); cfg.Validate() != nil {
		t.Errorf("the default config: %v", cfg.Validate())
	}

	// From the config file: what it names, over the defaults; the rest kept.
	path := writeFile(t, "c.yaml", `
limits:
  fair_share: {lag: 250ms, cpu_wait: 20ms, min_rate: 200}
sources:
  - name: web
    write_keys: [file_web_key]
`)
	f, err := parseServeFlags([]string{"--config", path}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultFairShareConfig()
	want.Lag, want.CPUWait, want.MinRate = 250*time.Millisecond, 20*time.Millisecond, 200
	if cfg.Limits.FairShare != want {
		t.Errorf("limits.fair_share from the file: %+v, want %+v", cfg.Limits.FairShare, want)
	}
	path = writeFile(t, "bad.yaml", "limits:\n  fair_share: {margin: 0.9}\n")
	if f, err = parseServeFlags([]string{"--config", path}, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(f, envOf(nil)); err == nil || !strings.Contains(err.Error(), "limits.fair_share.margin: want 1 (an even split) or more, got 0.9") {
		t.Errorf("margin 0.9 in the file: %v", err)
	}
}

// TestFairShareServed: serve runs the fair share, with the settings of
// CARTERA_LIMITS, and shows it in /metrics; a setting past the 503 bounds
// stops start-up with the field named.
func TestFairShareServed(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"CARTERA_LIMITS": "fair_share.lag=250ms,fair_share.min_rate=100"})
	m := s.admin(t, "GET", "/metrics")
	for _, want := range []string{`cartera_requests_limited_total{limit="fair_share"} 0`, "\ncartera_cpu_wait_seconds "} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	m2 := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(map[string]string{"CARTERA_LIMITS": "fair_share.lag=45s"})}
	err := m2.Run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"})
	if err == nil || !strings.Contains(err.Error(), "limits.fair_share.lag: want under profiles.log.max_lag (30s), got 45s") {
		t.Errorf("fair_share.lag over profiles.log.max_lag: %v", err)
	}
}

// TestFairShareServedFloodAndTrickle runs `serve` itself with its applier
// held back: one write key floods in batches of 100 while another sends
// one event at a time between them. Once the lag reaches the soft bound
// (300 events) the flood is paced: one request is let in at its slot, and
// the next slot being past the hold (refusal_delay 0s), the rest are
// refused with 429 and Retry-After, counted by source and signal; the
// trickle is never refused; once applying
// runs, everything acknowledged is there and nothing refused is. Only
// the signal in events is on, and the shares' half-life is a minute, so
// that a slow machine (the wall clock runs here) changes nothing.
func TestFairShareServedFloodAndTrickle(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	s := startServerMain(t, filepath.Join(t.TempDir(), "cartera.db"), "../../examples/cartera.yaml",
		map[string]string{"CARTERA_LIMITS": "fair_share.lag_events=300,fair_share.lag=0,fair_share.cpu_wait=0,fair_share.min_rate=0,fair_share.window=1m,refusal_delay=0s"},
		io.Discard, func(m *Main) { m.holdApply = release })

	const accepted, flood = 3, 10
	for i := range flood {
		r := s.send(t, "web_dev_write_key", "/v1/batch", fairBatch(fmt.Sprintf("f%d-", i), 100))
		if i <= accepted {
			mustOK(t, r) // the last at its pace: its slot was now
		} else {
			want429(t, r, fmt.Sprintf("flood request %d, applying held back", i+1))
			if msg := fmt.Sprint(r.body["error"]); !strings.Contains(msg, "limits.fair_share") || !strings.Contains(msg, "applying lagged 4") {
				t.Errorf("flood refusal %d: %q", i+1, msg)
			}
		}
		mustOK(t, s.send(t, "app_dev_write_key", "/v1/track", fmt.Sprintf(`{"anonymousId":"t%d","event":"Product Viewed"}`, i)))
	}
	m := s.admin(t, "GET", "/metrics")
	for _, want := range []string{
		fmt.Sprintf(`cartera_fair_share_refused_total{signal="lag_events",source="web"} %d`, flood-accepted-1),
		`cartera_fair_share_paced_total{source="web"} 1`,
	} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m.raw, `cartera_fair_share_refused_total{signal="lag_events",source="app"}`) {
		t.Error("the trickle's source was refused")
	}

	close(release)
	released = true
	for _, c := range []struct {
		who  string
		want int
	}{
		{"anonymous_id:t9", 200}, {"anonymous_id:f0-99", 200}, {"anonymous_id:f3-0", 200}, {"anonymous_id:f4-0", 404}, {"anonymous_id:f9-50", 404},
	} {
		// A read waits for what was acknowledged before it (up to 2 s,
		// then 503: ask again).
		r := s.admin(t, "GET", "/v1/profiles/"+c.who)
		for r.status == 503 {
			r = s.admin(t, "GET", "/v1/profiles/"+c.who)
		}
		if r.status != c.want {
			t.Errorf("%s: %d, want %d", c.who, r.status, c.want)
		}
	}
}
