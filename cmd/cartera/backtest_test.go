package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBacktestFromTheLog: the tier journey with a lower threshold, run over
// the events the log holds, would have made Ana gold as well as Cleo; the
// person erased since is not in it; the live store is untouched; bad
// requests get a 400 that says what is wrong.
func TestBacktestFromTheLog(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	const pos = "pos_dev_write_key"
	order := func(user, id string, revenue int) {
		t.Helper()
		mustOK(t, s.send(t, pos, "/v1/track", `{"userId":"`+user+`","event":"Order Completed","properties":{"order_id":"`+id+`","revenue":`+strconv.Itoa(revenue)+`,"currency":"EUR","channel":"pos"}}`))
	}
	for _, u := range []string{"ana", "cleo", "dora"} {
		mustOK(t, s.send(t, pos, "/v1/identify", `{"userId":"`+u+`","traits":{"email":"`+u+`@example.com","consent":{"email":true}}}`))
	}
	order("ana", "a1", 120)
	order("ana", "a2", 120)
	order("cleo", "c1", 600)
	order("dora", "d1", 300)
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:dora"); r.status != 200 {
		t.Fatalf("erase dora: %d %s", r.status, r.raw)
	}

	tier, err := os.ReadFile("../../examples/journeys/tier_upgrade.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lower := strings.Replace(string(tier), "lifetime_value >= 500.0", "lifetime_value >= 200.0", 1)
	if lower == string(tier) {
		t.Fatal("tier_upgrade.yaml has no lifetime_value >= 500.0 to lower")
	}
	run := func(body any) (int, backtestResult, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		r := s.do(t, "POST", "/v1/journeys/backtest", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, b)
		var res backtestResult
		if r.status == 200 {
			if err := json.Unmarshal([]byte(r.raw), &res); err != nil {
				t.Fatalf("decode %s: %v", r.raw, err)
			}
		}
		return r.status, res, r.raw
	}

	status, res, raw := run(map[string]any{"files": map[string]string{"tier_upgrade.yaml": lower}, "since": "1d", "until": "1h"})
	if status != 200 {
		t.Fatalf("backtest: %d %s", status, raw)
	}
	if !slices.Equal(res.Journeys, []string{"tier_upgrade"}) || res.Entered != 2 || res.People != 2 || res.Sends["email"] != 2 {
		t.Errorf("lower threshold: journeys %v, entered %d, people %d, sends %v; want tier_upgrade alone, Ana and Cleo, two emails", res.Journeys, res.Entered, res.People, res.Sends)
	}
	if !slices.Contains(res.Sample, "ana") || !slices.Contains(res.Sample, "cleo") || slices.Contains(res.Sample, "dora") {
		t.Errorf("sample %v, want ana and cleo, not the erased dora", res.Sample)
	}
	if res.Skipped != 2 || res.Events != 5 {
		t.Errorf("events %d, skipped %d; want 5 replayed (Ana 3, Cleo 2) and Dora's 2 skipped", res.Events, res.Skipped)
	}
	if strings.Contains(raw, "dora") {
		t.Error("the backtest answer names the erased person")
	}

	// The journeys in force: only Cleo crosses 500.
	if status, res, raw = run(map[string]any{"since": "1d", "until": "1h"}); status != 200 {
		t.Fatalf("backtest of the journeys in force: %d %s", status, raw)
	}
	n := 0
	for _, a := range res.Actions {
		if a.Journey == "tier_upgrade" && a.Action == "enter" {
			n++
		}
	}
	if n != 1 || len(res.Journeys) < 2 {
		t.Errorf("journeys in force: %d tier_upgrade entries over %v, want 1 (Cleo)", n, res.Journeys)
	}

	// Nothing of it reached the live store.
	if tr, _ := s.profile(t, "user_id:ana")["traits"].(map[string]any); tr["tier"] == "gold" {
		t.Error("the backtest made Ana gold in the live store")
	}

	// The same from the command line.
	file := filepath.Join(t.TempDir(), "tier_upgrade.yaml")
	if err := os.WriteFile(file, []byte(lower), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: envOf(map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken})}
	if err := m.Run(context.Background(), []string{"simulate", "--config", "../../examples/cartera.yaml", "--from-store", "--since", "1d", "--until", "1h",
		"--url", s.base, "--journeys", file, "--people"}); err != nil {
		t.Fatalf("simulate --from-store: %v\n%s", err, errb.String())
	}
	for _, want := range []string{`"person":"ana"`, `"person":"cleo"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("simulate --from-store --people printed %s, want %s", out.String(), want)
		}
	}
	if !strings.Contains(errb.String(), "backtest of tier_upgrade over") || !strings.Contains(errb.String(), "5 events (2 skipped") {
		t.Errorf("simulate --from-store summary: %s", errb.String())
	}

	for name, tc := range map[string]struct {
		body any
		want string
	}{
		"broken file": {map[string]any{"files": map[string]string{"tier_upgrade.yaml": "id: tier_upgrade\nsteps: [{id: x, send: {channel: pigeon}}]\n"}}, "tier_upgrade.yaml:"},
		"bad name":    {map[string]any{"files": map[string]string{"../x.yaml": lower}}, `files: \"../x.yaml\": want a plain file name`},
		"bad since":   {map[string]any{"since": "last week"}, `since: want a duration such as 36h or a number of days such as 7d, got \"last week\"`},
	} {
		if status, _, raw := run(tc.body); status != 400 || !strings.Contains(raw, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", name, status, raw, tc.want)
		}
	}
}

// Backtests run one at a time: a second while one runs is refused with a
// message, not queued, and the next after it runs.
func TestBacktestOneAtATime(t *testing.T) {
	a := openTestApp(t, filepath.Join(t.TempDir(), "c.db"), "../../examples/cartera.yaml")
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	a.backtests <- struct{}{} // one is running
	if _, err := a.backtest(context.Background(), backtestRequest{Since: "1d"}, now); !errors.Is(err, errBacktestBusy) {
		t.Fatalf("backtest while one runs: err %v, want %v", err, errBacktestBusy)
	}
	<-a.backtests // it ended
	if _, err := a.backtest(context.Background(), backtestRequest{Since: "1d"}, now); errors.Is(err, errBacktestBusy) {
		t.Fatalf("backtest after the other ended: %v", err)
	}
	if len(a.backtests) != 0 {
		t.Errorf("a finished backtest still holds its token")
	}
	// One that runs out of time stops with a message saying so.
	a.backtestTime = time.Nanosecond
	_, err := a.backtest(context.Background(), backtestRequest{Since: "1d"}, now)
	if msg, _, ok := backtestError(err); !ok || !strings.Contains(msg, "ran longer than") {
		t.Errorf("backtest out of time: err %v, want one that asks for a shorter window", err)
	}
	if len(a.backtests) != 0 {
		t.Errorf("a stopped backtest still holds its token")
	}
}
