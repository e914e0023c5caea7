package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cartera/channels/google"
	"cartera/channels/meta"
	"cartera/internal/clocktest"
)

func TestWarnSunsets(t *testing.T) {
	for _, tc := range []struct {
		name        string
		adsURL      string
		metaURL     string
		metaVersion string
		now         time.Time
		googleAds   bool
		want        []string // substrings of the log; none: empty log
	}{
		{"google v20 within 90 days", "https://googleads.googleapis.com/v20", "https://graph.facebook.com", "v26.0", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), true, []string{`"platform":"google_ads"`, `"version":"v20"`, `"sunset":"2026-06-10"`}},
		{"google v20 far from it", "https://googleads.googleapis.com/v20", "https://graph.facebook.com", "v26.0", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true, nil},
		{"google v18 past it", "https://googleads.googleapis.com/v18", "https://graph.facebook.com", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), true, []string{`"version":"v18"`, `"sunset":"2025-08-20"`}},
		// The default's sunset is Google's projection (February 2027).
		{"google default v23 in December 2026", google.DefaultBaseURL, "https://graph.facebook.com", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), true, []string{`"version":"v23"`, `"sunset":"2027-02-01"`}},
		{"google default v23 in October 2026", google.DefaultBaseURL, "https://graph.facebook.com", "v26.0", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), true, nil},
		{"google path not configured", "https://googleads.googleapis.com/v18", "https://graph.facebook.com", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, nil},
		{"meta v21.0 in the URL, expired", "https://googleads.googleapis.com/v23", "https://graph.facebook.com/v21.0", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"platform":"meta"`, `"version":"v21.0"`, `"sunset":"2025-09-09"`}},
		{"meta older version without a date", "https://googleads.googleapis.com/v23", "https://graph.facebook.com/v15.0", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"version":"v15.0"`, `"written_for":"v26.0"`}},
		{"meta v16.0 expired", "https://googleads.googleapis.com/v23", "https://graph.facebook.com", "v16.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"platform":"meta"`, `"sunset":"2024-02-06"`}},
		{"meta v25.0 within 90 days", "https://googleads.googleapis.com/v23", "https://graph.facebook.com", "v25.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"version":"v25.0"`, `"sunset":"2027-02-23"`}},
		// Meta has published no expiration for v26.0 (or v27.0) yet.
		{"meta default v26.0", "https://googleads.googleapis.com/v23", "https://graph.facebook.com", meta.DefaultVersion, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			cfg := DefaultConfig()
			cfg.GoogleAdsURL, cfg.MetaURL, cfg.MetaAPIVersion = tc.adsURL, tc.metaURL, tc.metaVersion
			warnSunsets(log, &cfg, tc.now, tc.googleAds, true)
			if len(tc.want) == 0 && buf.Len() > 0 {
				t.Errorf("log %s, want none", buf.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) || !strings.Contains(buf.String(), `"level":"WARN"`) {
					t.Errorf("log %s lacks %s", buf.String(), w)
				}
			}
		})
	}
}

func TestValidateAds(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Channels.Audiences = map[string]AudienceDestinations{"retargeting": {Google: &GoogleAudience{API: "adwords"}}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "channels.audiences.retargeting.google.api") {
		t.Errorf("err = %v, want the api field named", err)
	}
	cfg = DefaultConfig()
	cfg.GoogleTokenURL = "token"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "google_token_url") {
		t.Errorf("err = %v, want google_token_url", err)
	}
}

// The request status poller runs whenever a Data Manager destination is
// configured (an audience or the conversions), and not with
// google_status.off, with the legacy Google Ads API alone, or without
// Google; its settings are checked at start.
func TestGoogleStatusWiring(t *testing.T) {
	dm := func() *GoogleAudience {
		return &GoogleAudience{OperatingAccountID: "123-456-7890", UserListID: "987654321", GoogleCredentials: GoogleCredentials{AccessToken: "ya29.test"}}
	}
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want bool
	}{
		{"data manager audience", func(c *Config) { c.Channels.Audiences = map[string]AudienceDestinations{"vip": {Google: dm()}} }, true},
		{"conversions", func(c *Config) {
			c.Channels.Conversions.Google = &GoogleConversions{OperatingAccountID: "1234567890", ConversionActionID: "555", GoogleCredentials: GoogleCredentials{AccessToken: "ya29.test"}}
		}, true},
		{"off", func(c *Config) {
			c.Channels.Audiences = map[string]AudienceDestinations{"vip": {Google: dm()}}
			c.Channels.GoogleStatus.Off = true
		}, false},
		{"legacy api only", func(c *Config) {
			g := dm()
			g.API, g.CustomerID, g.UserList, g.DeveloperToken = "google_ads", "1234567890", "customers/1234567890/userLists/987654321", "dev"
			c.Channels.Audiences = map[string]AudienceDestinations{"vip": {Google: g}}
		}, false},
		{"no credentials", func(c *Config) {
			g := dm()
			g.AccessToken = ""
			c.Channels.Audiences = map[string]AudienceDestinations{"vip": {Google: g}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Data = filepath.Join(t.TempDir(), "cartera.db")
			tc.set(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			defs, err := compileDefinitions(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := openApp(context.Background(), &cfg, defs, appOptions{Now: clocktest.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)).Now,
				Deliver: true, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			if got := a.delivery.googleStatus != nil; got != tc.want {
				t.Errorf("request status poller on = %v, want %v", got, tc.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Channels.GoogleStatus.MaxWait = time.Minute
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "channels.google_status.max_wait") {
		t.Errorf("err = %v, want channels.google_status.max_wait named", err)
	}
}
