package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevClock(t *testing.T) {
	t.Parallel()
	post := func(s *server, body string) reply {
		return s.do(t, "POST", "/v1/admin/clock", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(body))
	}
	off := startServer(t, map[string]string{"CARTERA_DEV_CLOCK": "0"})
	if r := post(off, `{"advance":"1h"}`); r.status != 404 || !strings.Contains(r.raw, "CARTERA_DEV_CLOCK") {
		t.Errorf("clock off: %d %s, want 404 naming how to turn it on", r.status, r.raw)
	}

	s := startServer(t, map[string]string{"CARTERA_DEV_CLOCK": "1"})
	if r := s.do(t, "POST", "/v1/admin/clock", nil, []byte(`{"advance":"1h"}`)); r.status != 401 {
		t.Errorf("without the admin token: %d", r.status)
	}
	before, err := time.Parse(time.RFC3339Nano, fmt.Sprint(s.admin(t, "GET", "/v1/admin/clock").body["now"]))
	if err != nil {
		t.Fatal(err)
	}
	r := post(s, `{"advance":"24h"}`)
	now, err := time.Parse(time.RFC3339Nano, r.body["now"].(string))
	if r.status != 200 || err != nil || now.Sub(before) < 24*time.Hour || r.body["offset"] != "24h0m0s" {
		t.Fatalf("advance: %d %s (%v)", r.status, r.raw, err)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"advance":"soon"}`, "advance: want a duration"},
		{`{"advance":"100d"}`, "at most 90d"},
		{`{"advance":"-1h"}`, "advance: want a duration"},
		{`{"by":"1h"}`, `unknown field \"by\"`},
	} {
		if r := post(s, tc.body); r.status != 400 || !strings.Contains(r.raw, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.body, r.status, r.raw, tc.want)
		}
	}
	// Events take the moved clock.
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1"}`))
	p := s.admin(t, "GET", "/v1/profiles/user_id:u1")
	created, _ := time.Parse(time.RFC3339Nano, p.body["created_at"].(string))
	if created.Sub(before) < 24*time.Hour {
		t.Errorf("profile created at %s, want the dev clock's time (a day ahead)", created)
	}
}

// CARTERA_DEV_CLOCK may name the instant serve's clock starts at, so a
// demo or a test runs at 23:30 in Madrid, or 09:00, whatever the hour.
func TestDevClockStart(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 6, 23, 30, 0, 0, time.FixedZone("CET", 3600))
	s := startServer(t, map[string]string{"CARTERA_DEV_CLOCK": start.Format(time.RFC3339)})
	r := s.admin(t, "GET", "/v1/admin/clock")
	now, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r.body["now"]))
	if r.status != 200 || err != nil {
		t.Fatalf("clock: %d %s", r.status, r.raw)
	}
	if d := now.Sub(start); d < 0 || d > time.Minute {
		t.Errorf("clock reads %s, want just after %s", now, start)
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1"}`))
	p := s.admin(t, "GET", "/v1/profiles/user_id:u1")
	created, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(p.body["created_at"]))
	if d := created.Sub(start); d < 0 || d > time.Minute {
		t.Errorf("profile created at %s, want the dev clock's %s", created, start)
	}

	var stderr strings.Builder
	m := &Main{Stdout: io.Discard, Stderr: &stderr, Getenv: envOf(map[string]string{"CARTERA_DEV_CLOCK": "tonight"})}
	err = m.Run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"})
	if err == nil || !strings.Contains(err.Error(), "CARTERA_DEV_CLOCK: want 1, 0 or an RFC 3339 start instant") {
		t.Errorf("a bad start instant: %v", err)
	}
}
