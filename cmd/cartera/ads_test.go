package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
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
		{"google v20 within 90 days", "https://googleads.googleapis.com/v20", "https://graph.facebook.com", "v26.0", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), true, []string{`"platform":"google_ads"`, `"version":"v20"`, `"sunset":"2026-06-01"`}},
		{"google v20 far from it", "https://googleads.googleapis.com/v20", "https://graph.facebook.com", "v26.0", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true, nil},
		{"google v18 past it", "https://googleads.googleapis.com/v18", "https://graph.facebook.com", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), true, []string{`"version":"v18"`}},
		{"google path not configured", "https://googleads.googleapis.com/v18", "https://graph.facebook.com", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, nil},
		{"meta older version in the URL", "https://googleads.googleapis.com/v23", "https://graph.facebook.com/v21.0", "v26.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"version":"v21.0"`, `"written_for":"v26.0"`}},
		{"meta v16.0 expired", "https://googleads.googleapis.com/v23", "https://graph.facebook.com", "v16.0", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), false, []string{`"platform":"meta"`, `"sunset":"2024-02-06"`}},
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
