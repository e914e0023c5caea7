package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateCommand(t *testing.T) {
	badJourney := writeFile(t, "journey.yaml", "id: j\ntrigger:\n  event: Product Added\nsteps:\n  - id: a\n    send: {channel: pigeon, template: t}\n  - id: b\n    branch:\n      - when: in_audience(\"nope\")\n        next: a\n")
	bad := writeFile(t, "bad.yaml", "audiences:\n  - name: big_spenders\n    expression: profile.computed.orders_count > \"five\"\n")
	badPolicy := writeFile(t, "policies.yaml", "policies:\n  timezone: Europe/Madrid\n  on_quiet_hours: later\n  max_delay: 0s\n")
	badDelay := writeFile(t, "delay.yaml", "id: j\ntrigger:\n  event: Product Added\nsteps:\n  - id: a\n    send: {channel: email, template: cart_reminder, on_cap: wait}\n")
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		out     string
	}{
		{"examples", []string{"validate", "--config", "../../examples/cartera.yaml"}, false, "computed trait(s), 4 audience(s), "},
		{"examples folder", []string{"validate", "--config", "../../examples/cartera.yaml", "../../examples"}, false, "ok: "},
		{"journey errors", []string{"validate", "--config", "../../examples/cartera.yaml", badJourney}, true,
			badJourney + `:6:21: journey: send.channel: unknown channel "pigeon": want one of email, sms, webhook, push, wallet`},
		{"journey audience", []string{"validate", "--config", "../../examples/cartera.yaml", badJourney}, true,
			badJourney + `:9:15: journey: in_audience: unknown audience "nope"`},
		{"policy delay mode", []string{"validate", "--config", "../../examples/cartera.yaml", badPolicy}, true,
			badPolicy + `:3:19: policies: on_quiet_hours: want delay or skip, got "later"`},
		{"policy max_delay", []string{"validate", "--config", "../../examples/cartera.yaml", badPolicy}, true,
			badPolicy + `:4:14: policies: max_delay: want a positive duration, got "0s"`},
		{"send on_cap", []string{"validate", "--config", "../../examples/cartera.yaml", badDelay}, true,
			badDelay + `:6:61: journey: send.on_cap: want delay or skip, got "wait"`},
		{"type error", []string{"validate", "--config", "../../examples/cartera.yaml", bad}, true,
			bad + ":3:47: rules: found no matching overload for '_>_' applied to '(int, string)'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: envOf(nil)}
			err := m.Run(context.Background(), tc.args)
			if tc.wantErr != (err != nil) {
				t.Fatalf("err = %v, stderr %s", err, stderr.String())
			}
			if tc.wantErr && !errors.Is(err, errReported) {
				t.Errorf("err = %v, want errReported (exit 1 after printing)", err)
			}
			got := stdout.String() + stderr.String()
			if !strings.Contains(got, tc.out) {
				t.Errorf("output %q lacks %q", got, tc.out)
			}
		})
	}
}

// startAt runs a server on a given data file; stop ends it and waits.
func startAt(t *testing.T, data string) (base string, stop func()) {
	t.Helper()
	addr := make(chan string, 1)
	vars := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken}
	withTestClock(t, vars)
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(vars), OnListen: func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--config", "../../examples/cartera.yaml"})
	}()
	select {
	case a := <-addr:
		return "http://" + a, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	case err := <-done:
		t.Fatalf("serve exited: %v", err)
	case <-time.After(startTimeout):
		t.Fatal("server did not start")
	}
	cancel()
	return "", nil
}

func TestAudienceMembershipInSameRequestAndAfterRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "cartera.db")
	base, stop := startAt(t, data)
	s := &server{base: base}

	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"vip-1","traits":{"email":"vip@example.com"}}`))
	if r := s.admin(t, "GET", "/v1/audiences/customers/members"); len(r.body["members"].([]any)) != 0 {
		t.Fatalf("customers before any order: %s", r.raw)
	}
	mustOK(t, s.send(t, "pos_dev_write_key", "/v1/track", `{"userId":"vip-1","event":"Order Completed","properties":{"order_id":"o1","revenue":1500}}`))
	// Right after the 200: the profile is in customers and vip.
	p := s.admin(t, "GET", "/v1/profiles/user_id:vip-1")
	got := map[string]bool{}
	for _, a := range p.body["audiences"].([]any) {
		am := a.(map[string]any)
		got[am["id"].(string)] = am["member"].(bool)
	}
	if !got["customers"] || !got["vip"] || !got["priority_recovery"] {
		t.Fatalf("audiences = %v, want customers, vip and priority_recovery", got)
	}
	if v := p.body["computed"].(map[string]any)["lifetime_value"]; v != 1500.0 {
		t.Errorf("lifetime_value = %v, want 1500", v)
	}
	// The entry is an event on the profile.
	entered := 0
	for _, e := range p.body["events"].([]any) {
		em := e.(map[string]any)
		if em["event"] == "Audience Entered" && em["source"] == "cartera" {
			entered++
		}
	}
	if entered != 3 {
		t.Errorf("Audience Entered events = %d, want 3", entered)
	}
	// Consent to email puts them in email_reachable; withdrawing it takes
	// them out in the same request.
	inReachable := func() bool {
		r := s.admin(t, "GET", "/v1/audiences/email_reachable/members")
		return len(r.body["members"].([]any)) == 1
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"vip-1","traits":{"consent":{"email":true}}}`))
	if !inReachable() {
		t.Fatal("not in email_reachable after consent")
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"vip-1","event":"Consent Updated","properties":{"email":false}}`))
	if inReachable() {
		t.Fatal("still in email_reachable after consent withdrawn")
	}
	exited := false
	for _, e := range s.admin(t, "GET", "/v1/profiles/user_id:vip-1").body["events"].([]any) {
		em := e.(map[string]any)
		if em["event"] == "Audience Exited" && em["properties"].(map[string]any)["audience"] == "email_reachable" {
			exited = true
		}
	}
	if !exited {
		t.Error("no Audience Exited event on the profile")
	}
	members := func() map[string]int {
		out := map[string]int{}
		r := s.admin(t, "GET", "/v1/audiences")
		for _, a := range r.body["audiences"].([]any) {
			am := a.(map[string]any)
			out[am["id"].(string)] = int(am["size"].(float64))
		}
		return out
	}
	before := members()
	if before["vip"] != 1 || before["customers"] != 1 {
		t.Fatalf("sizes = %v", before)
	}
	page := s.admin(t, "GET", "/v1/audiences/vip/members?limit=10")
	stop()

	base, stop = startAt(t, data)
	defer stop()
	s.base = base
	if after := members(); after["vip"] != before["vip"] || after["customers"] != before["customers"] {
		t.Errorf("sizes after restart = %v, before %v", after, before)
	}
	if again := s.admin(t, "GET", "/v1/audiences/vip/members?limit=10"); again.raw != page.raw {
		t.Errorf("members after restart = %s, before %s", again.raw, page.raw)
	}
	if r := s.admin(t, "GET", "/v1/audiences/nope/members"); r.status != 404 {
		t.Errorf("unknown audience: %d %s", r.status, r.raw)
	}
	if r := s.admin(t, "GET", "/v1/audiences/vip/members?limit=0"); r.status != 400 || !strings.Contains(r.raw, "limit") {
		t.Errorf("bad limit: %d %s", r.status, r.raw)
	}
}
