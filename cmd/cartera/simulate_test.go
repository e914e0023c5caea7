package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the .golden files of simulate's scenarios")

// simDir holds simulate's test config (cartera.yaml with its rules,
// policies and journeys), the scenarios (*.ndjson) and their expected
// output (*.ndjson.golden).
const simDir = "testdata/simulate"

// scenario is what a scenario must show beyond its golden file, so that a
// golden rewritten with -update after an engine change cannot quietly
// accept a wrong journey. Lines are summaries (see summarize).
type scenario struct {
	// until is simulate's --until ("": the default 7 days).
	until string
	// want are summaries that must appear, in this order (others may come
	// between them).
	want []string
	// never are substrings no summary may contain.
	never []string
}

// scenarios covers every testdata/simulate/*.ndjson.
var scenarios = map[string]scenario{
	"cart_not_opened": {
		until: "240h",
		want: []string{
			"2026-11-20T10:05:00Z cart_abandonment - enter key=c1 trigger=Product Added",
			"2026-11-20T10:35:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-21T10:35:00Z cart_abandonment retarget audience_add audience audience=retargeting",
			"2026-11-28T10:35:00Z cart_abandonment leave audience_remove audience audience=retargeting",
			"2026-11-28T10:35:00Z cart_abandonment done exit reason=exit step",
		},
	},
	"eval_error": {
		want: []string{
			"2026-11-20T10:05:00Z review_request - error",
			"2026-11-20T11:05:00Z review_request - enter key=o-9",
			"2026-11-20T11:05:00Z review_request ask send email",
		},
	},
	"shared_audience": {
		until: "720h",
		want: []string{
			"2026-11-20T10:01:00Z vip_winback retarget audience_add audience audience=retargeting",
			"2026-11-24T10:35:00Z cart_abandonment retarget audience_add audience audience=retargeting held_by=[vip_winback] reason=already in: held by vip_winback",
			"2026-12-01T10:35:00Z cart_abandonment leave suppressed audience audience=retargeting held_by=[vip_winback] reason=held: still in retargeting for vip_winback",
			"2026-12-20T10:01:00Z vip_winback leave audience_remove audience audience=retargeting",
		},
	},
	"store_conversions": {
		want: []string{
			"2026-11-20T10:10:00Z - - conversion ads currency=EUR destination=meta event=Order Completed order_id=pos-100 value=89.5",
			"2026-11-20T10:10:00Z - - conversion ads currency=EUR destination=google event=Order Completed order_id=pos-100 value=89.5",
			"2026-11-20T12:05:00Z - - suppressed ads destination=meta event=Order Completed order_id=pos-101 reason=consent: no ads consent",
			"2026-11-20T12:05:00Z - - suppressed ads destination=google event=Order Completed order_id=pos-101 reason=consent: no ads consent",
			"2026-11-20T13:02:00Z - - conversion ads currency=EUR destination=meta event=Order Completed order_id=pos-102 value=12",
			"2026-11-20T13:02:00Z - - conversion ads currency=EUR destination=google event=Order Completed order_id=pos-102 value=12",
		},
		// The till's second report of pos-100 is not sent again, and a
		// web shop's sale never.
		never: []string{"10:11:00Z - - conversion", "web-7"},
	},
	"cart_opened": {
		want: []string{
			"2026-11-20T15:40:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-21T08:30:00Z cart_abandonment done exit reason=exit step",
		},
		never: []string{"audience_add", "retarget"},
	},
	"cart_pos_purchase": {
		want: []string{
			"2026-11-20T10:05:00Z cart_abandonment - enter key=k1",
			"2026-11-20T10:25:00Z cart_abandonment idle goal event=Order Completed",
			"2026-11-20T10:25:00Z cart_abandonment idle exit reason=exit_when: Order Completed",
			"2026-11-20T11:35:00Z cart_abandonment reminder send email template=cart_reminder",
			"2026-11-21T11:35:00Z cart_abandonment retarget audience_add audience audience=retargeting",
			"2026-11-22T12:00:00Z cart_abandonment hold goal event=Order Completed",
			"2026-11-22T12:00:00Z cart_abandonment hold audience_remove audience audience=retargeting reason=exit_when: Order Completed",
			"2026-11-22T12:00:00Z cart_abandonment hold exit reason=exit_when: Order Completed",
		},
		// Carla's reminder was due at 10:35, after her purchase.
		never: []string{"2026-11-20T10:35:00Z", "leave"},
	},
	"frequency_cap": {
		until: "1h",
		want: []string{
			"2026-11-20T09:30:00Z cart_abandonment reminder send email",
			"2026-11-20T10:40:00Z cart_abandonment reminder send email",
			"2026-11-20T11:50:00Z cart_abandonment reminder suppressed email reason=frequency_cap: 2 email per 24h",
		},
	},
	"quiet_hours": {
		until: "24h",
		want: []string{
			"2026-11-20T13:20:00Z cart_abandonment reminder delayed email reason=quiet_hours: 21:00-09:00 template=cart_reminder until=2026-11-20T14:0",
			"2026-11-20T14:0?:??Z cart_abandonment reminder send email", // Hana's, 09:0x in New York
			"2026-11-20T19:55:00Z cart_abandonment reminder send email",
			"2026-11-20T20:05:00Z cart_abandonment reminder delayed email reason=quiet_hours: 21:00-09:00 template=cart_reminder until=2026-11-21T08:0",
			"2026-11-21T08:0?:??Z cart_abandonment reminder send email", // Gael's, 09:0x in Madrid
		},
		never: []string{"suppressed"},
	},
	"quiet_hours_delay": {
		until: "30h",
		want: []string{
			"2026-11-20T20:30:00Z cart_abandonment - enter key=n1",
			"2026-11-20T21:00:00Z cart_abandonment reminder delayed email reason=quiet_hours: 21:00-09:00 template=cart_reminder until=2026-11-21T08:0",
			"2026-11-21T08:0?:??Z cart_abandonment reminder send email template=cart_reminder",
		},
		never: []string{"suppressed", "2026-11-20T21:00:00Z cart_abandonment reminder send"},
	},
	"quiet_hours_purchase": {
		until: "30h",
		want: []string{
			"2026-11-20T20:30:00Z cart_abandonment - enter key=p9",
			"2026-11-20T21:00:00Z cart_abandonment reminder delayed email reason=quiet_hours: 21:00-09:00 template=cart_reminder until=2026-11-21T08:0",
			"2026-11-21T07:00:00Z cart_abandonment reminder goal event=Order Completed",
			"2026-11-21T07:00:00Z cart_abandonment reminder exit reason=exit_when: Order Completed",
		},
		never: []string{"send", "suppressed", "retarget"},
	},
	"consent": {
		until: "240h",
		want: []string{
			"2026-11-20T10:35:00Z cart_abandonment reminder suppressed email reason=consent: no email consent",
			"2026-11-20T10:35:00Z cart_abandonment reminder send email",
			"2026-11-21T10:35:00Z cart_abandonment retarget suppressed audience audience=retargeting reason=consent: no ads consent",
			"2026-11-21T10:35:00Z cart_abandonment retarget suppressed audience audience=retargeting reason=consent: no ads consent",
			"2026-11-21T12:05:00Z cart_abandonment - enter key=i2",
			"2026-11-21T12:35:00Z cart_abandonment reminder send email",
			"2026-11-22T12:35:00Z cart_abandonment retarget suppressed audience audience=retargeting reason=consent: no ads consent",
			"2026-11-28T10:35:00Z cart_abandonment done exit reason=exit step",
			"2026-11-28T10:35:00Z cart_abandonment done exit reason=exit step",
			"2026-11-29T12:35:00Z cart_abandonment done exit reason=exit step",
		},
		// Never added (no ads consent), so never removed either.
		never: []string{"audience_add", "audience_remove"},
	},
	"cart_keys_cooldown": {
		until: "1h",
		want: []string{
			"2026-11-20T10:00:00Z cart_abandonment - enter key=l1",
			"2026-11-20T10:30:00Z cart_abandonment reminder send email",
			"2026-11-20T11:05:00Z cart_abandonment - enter key=l3",
			"2026-11-20T11:35:00Z cart_abandonment reminder send email",
		},
		never: []string{"key=l2", "2026-11-20T10:10:00Z"},
	},
	"tier_upgrade_once": {
		want: []string{
			"2026-11-20T11:00:00Z tier_upgrade - enter trigger=Order Completed",
			"2026-11-20T11:00:00Z tier_upgrade set_gold set_trait trait=tier value=gold",
			"2026-11-20T11:00:00Z tier_upgrade pass pass_update wallet fields=map[balance:620 tier:gold] push=You are now Gold",
			"2026-11-20T11:00:00Z tier_upgrade congratulate send email template=welcome_gold",
			"2026-11-20T11:00:00Z tier_upgrade congratulate exit reason=completed",
		},
		never: []string{"2026-11-23"},
	},
	"transactional_at_night": {
		want: []string{
			"2026-11-20T21:40:00Z cart_abandonment reminder delayed email reason=quiet_hours: 21:00-09:00",
			"2026-11-20T22:30:00Z cart_abandonment reminder exit reason=exit_when: Order Completed",
			"2026-11-20T22:30:00Z tier_upgrade pass pass_update wallet",
			"2026-11-20T22:30:00Z tier_upgrade congratulate send email template=welcome_gold",
		},
		never: []string{"tier_upgrade congratulate suppressed", "tier_upgrade congratulate delayed", "cart_abandonment reminder send"},
	},
	"birthday_cron": {
		until: "240h",
		want: []string{
			"2026-10-24T07:00:00Z birthday - enter trigger=Scheduled",
			"2026-10-24T07:00:00Z birthday treat send email template=birthday",
			"2026-10-26T08:00:00Z birthday - enter trigger=Scheduled",
			"2026-10-26T08:00:00Z birthday treat send email template=birthday",
			// Quinn, in New York: 04:00 there, delayed to 09:0x his time.
			"2026-10-28T08:00:00Z birthday treat delayed email reason=quiet_hours: 21:00-09:00 template=birthday until=2026-10-28T13:0",
			"2026-10-28T13:0?:??Z birthday treat send email template=birthday",
		},
		// Pia (22 October) is not a customer; nobody else has a birthday.
		never: []string{"2026-10-22", "browse_abandonment", "cart_abandonment"},
	},
	"branch_split": {
		want: []string{
			"2026-11-20T11:10:00Z browse_abandonment vip_offer send email template=vip_early_access",
			"2026-11-20T11:10:00Z browse_abandonment done exit reason=exit step", // no variant: not split
			"2026-11-20T11:11:00Z browse_abandonment reminder send email template=browse_reminder",
			"2026-11-20T11:12:00Z browse_abandonment shoes_best send email template=shoes_bestsellers",
			"2026-11-20T11:12:00Z browse_abandonment done exit reason=exit step variant=bestsellers",
			"2026-11-20T11:13:00Z browse_abandonment shoes_new send email template=shoes_new_arrivals",
			"2026-11-20T11:13:00Z browse_abandonment done exit reason=exit step variant=new_arrivals",
			// Ada: the control group.
			"2026-11-20T11:17:00Z browse_abandonment done exit reason=exit step variant=control",
			// Tom again two days later: the same arm (sticky per person).
			"2026-11-22T11:12:00Z browse_abandonment shoes_best send email template=shoes_bestsellers",
			"2026-11-22T11:12:00Z browse_abandonment done exit reason=exit step variant=bestsellers",
			// Ada again: the control group again.
			"2026-11-22T11:17:00Z browse_abandonment done exit reason=exit step variant=control",
		},
		never: []string{
			"2026-11-20T11:17:00Z browse_abandonment shoes", "2026-11-22T11:17:00Z browse_abandonment shoes", "suppressed",
			"11:10:00Z browse_abandonment done exit reason=exit step variant", "11:11:00Z browse_abandonment done exit reason=exit step variant",
		},
	},
	"suppression_after_purchase": {
		want: []string{
			"2026-11-20T12:00:00Z browse_abandonment reminder suppressed email reason=suppression: after_purchase",
			"2026-11-22T12:00:00Z browse_abandonment reminder suppressed email reason=suppression: after_purchase",
			"2026-11-23T12:00:00Z browse_abandonment reminder send email template=browse_reminder",
		},
	},
	"priority": {
		until: "3h",
		want: []string{
			"2026-11-20T10:30:00Z cart_abandonment reminder send email",
			"2026-11-20T12:40:00Z browse_abandonment reminder suppressed email reason=priority: a journey of higher priority sent on email",
		},
	},
	"merge_mid_journey": {
		want: []string{
			"2026-11-20T10:00:00Z cart_abandonment - enter key=p1",
			"2026-11-20T10:30:00Z cart_abandonment reminder send email",
			"2026-11-20T18:00:00Z cart_abandonment opened exit reason=exit_when: Order Completed",
		},
		never: []string{"suppressed"},
	},
	"best_time": {
		until: "48h",
		want: []string{
			// Gael: 19:xx in Madrid, learned from opens, a click and an app open.
			"2026-11-20T09:00:00Z back_in_stock tell delayed email best_time=map[at:19:00 events:4 source:learned zone:Europe/Madrid] reason=best_time template=back_in_stock until=2026-11-20T18:00:00Z",
			"2026-11-20T09:00:00Z back_in_stock tell delayed email best_time=map[at:19:00 events:2 source:learned zone:America/New_York] reason=best_time template=back_in_stock until=2026-11-21T00:00:00Z",
			"2026-11-20T09:00:00Z back_in_stock tell delayed email best_time=map[at:23:00 events:2 source:learned zone:Europe/Madrid] reason=best_time template=back_in_stock until=2026-11-20T22:00:00Z",
			"2026-11-20T10:00:00Z back_in_stock tell delayed email best_time=map[at:10:00 events:0 source:fallback zone:Europe/Madrid] reason=best_time template=back_in_stock until=2026-11-21T09:00:00Z",
			"2026-11-20T18:00:00Z back_in_stock tell send email template=back_in_stock",
			// Olga's 23:00 is in quiet hours: held to 09:0x.
			"2026-11-20T22:00:00Z back_in_stock tell delayed email reason=quiet_hours: 21:00-09:00 template=back_in_stock until=2026-11-21T08:0",
			"2026-11-21T00:00:00Z back_in_stock tell send email template=back_in_stock",
			"2026-11-21T08:0?:??Z back_in_stock tell send email template=back_in_stock",
			"2026-11-21T09:00:00Z back_in_stock tell send email template=back_in_stock",
		},
		never: []string{"suppressed", "2026-11-20T09:00:00Z back_in_stock tell send"},
	},
	"merge_keeps_history": {
		until: "1h",
		want: []string{
			"2026-11-20T09:45:00Z cart_abandonment reminder send email",
			"2026-11-20T10:50:00Z cart_abandonment reminder send email",
			"2026-11-20T11:25:00Z cart_abandonment - enter key=c4",
			"2026-11-20T11:55:00Z cart_abandonment reminder suppressed email reason=frequency_cap: 2 email per 24h",
		},
		never: []string{"key=c3", "11:55:00Z cart_abandonment reminder send"},
	},
}

// simulateRun runs `cartera simulate args...` in-process.
func simulateRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	err = m.Run(context.Background(), append([]string{"simulate"}, args...))
	return out.String(), errb.String(), err
}

func TestSimulateGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(simDir, "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in %s: %v", simDir, err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".ndjson")
		seen[name] = true
		sc, ok := scenarios[name]
		if !ok {
			t.Errorf("%s: no entry in scenarios (what must it show?)", file)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--config", filepath.Join(simDir, "cartera.yaml"), "--events", file}
			if sc.until != "" {
				args = append(args, "--until", sc.until)
			}
			out, stderr, err := simulateRun(t, args...)
			if err != nil {
				t.Fatalf("simulate: %v\nstderr:\n%s", err, stderr)
			}
			// The same events give the same output, profile ids included.
			if again, _, err := simulateRun(t, args...); err != nil || again != out {
				t.Fatalf("a second run differs (err %v):\nfirst:\n%s\nsecond:\n%s", err, out, again)
			}
			sums := checkActions(t, out)
			checkScenario(t, sums, sc)
			golden := file + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSimulateGolden -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (-update rewrites it):\n%s", golden, lineDiff(string(want), out))
			}
		})
	}
	for name := range scenarios {
		if !seen[name] {
			t.Errorf("scenarios names %s, but %s/%s.ndjson does not exist", name, simDir, name)
		}
	}
	goldens, _ := filepath.Glob(filepath.Join(simDir, "*.golden"))
	for _, g := range goldens {
		if !seen[strings.TrimSuffix(strings.TrimSuffix(filepath.Base(g), ".golden"), ".ndjson")] {
			t.Errorf("%s has no scenario", g)
		}
	}
}

func TestSimulateErrors(t *testing.T) {
	config := filepath.Join(simDir, "cartera.yaml")
	events := filepath.Join(simDir, "cart_opened.ndjson")
	usage := func(t *testing.T, err error, want string) {
		t.Helper()
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want a usage error with %q", err, want)
		}
	}
	t.Run("no events flag", func(t *testing.T) {
		out, _, err := simulateRun(t, "--config", config)
		usage(t, err, "--events is required")
		if out != "" {
			t.Errorf("stdout = %q", out)
		}
	})
	t.Run("unknown flag", func(t *testing.T) {
		_, stderr, err := simulateRun(t, "--config", config, "--events", events, "--speed", "2")
		usage(t, err, "-speed")
		if !strings.Contains(stderr, "-until duration") {
			t.Errorf("stderr does not list the flags:\n%s", stderr)
		}
	})
	t.Run("stray argument", func(t *testing.T) {
		_, _, err := simulateRun(t, "--config", config, "--events", events, "more.ndjson")
		usage(t, err, `"more.ndjson"`)
	})
	t.Run("bad until", func(t *testing.T) {
		_, _, err := simulateRun(t, "--config", config, "--events", events, "--until", "7d")
		usage(t, err, "until")
	})
	for _, tc := range []struct{ file, want string }{
		// Line 5: comments and blank lines count.
		{"bad_field.ndjson", ":5: properties: want object, got string"},
		{"no_timestamp.ndjson", ":2: timestamp: required (it drives the virtual clock)"},
		{"bad_timestamp.ndjson", `:2: timestamp: want ISO-8601 time such as 2026-11-24T10:00:00Z, got "yesterday"`},
		{"bad_json.ndjson", ":3: invalid JSON"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join(simDir, "errors", tc.file)
			out, _, err := simulateRun(t, "--config", config, "--events", file)
			if err == nil || !strings.HasPrefix(err.Error(), file+tc.want) {
				t.Errorf("err = %v, want %s%s", err, file, tc.want)
			}
			if out != "" {
				t.Errorf("nothing should run before the events are read; stdout:\n%s", out)
			}
		})
	}
	t.Run("missing events file", func(t *testing.T) {
		_, _, err := simulateRun(t, "--config", config, "--events", filepath.Join(simDir, "errors", "nope.ndjson"))
		if err == nil || !strings.Contains(err.Error(), "nope.ndjson") {
			t.Errorf("err = %v, want one naming the file", err)
		}
	})
	t.Run("journey with errors", func(t *testing.T) {
		dir := filepath.Join(simDir, "broken")
		out, stderr, err := simulateRun(t, "--config", config, "--journeys", dir, "--events", events)
		if !errors.Is(err, errReported) {
			t.Fatalf("err = %v, want errReported", err)
		}
		file := filepath.Join(dir, "welcome.yaml")
		want := []string{
			file + `:6:39: found no matching overload for '_>_' applied to '(int, string)'`,
			file + `:9:21: send.channel: unknown channel "fax": want one of email, sms, webhook, push, wallet`,
		}
		if got := strings.Split(strings.TrimSpace(stderr), "\n"); !slices.Equal(got, want) {
			t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(want, "\n"))
		}
		if out != "" {
			t.Errorf("stdout = %q", out)
		}
	})
}

// simAction is one line of simulate's output as a reader decodes it.
type simAction struct {
	At      string         `json:"at"`
	Profile string         `json:"profile"`
	Journey string         `json:"journey"`
	Step    string         `json:"step"`
	Action  string         `json:"action"`
	Channel string         `json:"channel"`
	Detail  map[string]any `json:"detail"`
}

// Actions and channels of the contract.
var (
	simActions  = []string{"enter", "send", "delayed", "audience_add", "audience_remove", "pass_update", "set_trait", "goal", "exit", "suppressed", "error", "conversion"}
	simChannels = []string{"email", "sms", "webhook", "audience", "wallet", "ads", ""}
)

// checkActions checks every line is an action in the contract's shape, in
// time order, and returns their summaries.
func checkActions(t *testing.T, out string) []string {
	t.Helper()
	if out == "" {
		t.Fatal("no actions")
	}
	var sums []string
	var last time.Time
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			// person (the main identifier) is added beside the contract's
			// keys, and only while the profile has an identifier.
			if k != "person" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if want := []string{"action", "at", "channel", "detail", "journey", "profile", "step"}; !slices.Equal(keys, want) {
			t.Fatalf("line %d: fields %v, want %v: %s", i+1, keys, want, line)
		}
		var a simAction
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		at, err := time.Parse(time.RFC3339, a.At)
		if err != nil {
			t.Errorf("line %d: at: %v", i+1, err)
		}
		if at.Before(last) {
			t.Errorf("line %d: at %s is before the line above (%s)", i+1, a.At, last.Format(time.RFC3339))
		}
		last = at
		if !slices.Contains(simActions, a.Action) {
			t.Errorf("line %d: action %q is not one of %v", i+1, a.Action, simActions)
		}
		if !slices.Contains(simChannels, a.Channel) {
			t.Errorf("line %d: channel %q is not one of %v", i+1, a.Channel, simChannels)
		}
		// A sale sent back to the ad platforms (channel ads) belongs to no
		// journey: channels.conversions sends it.
		if conv := a.Channel == "ads"; conv {
			if a.Profile == "" || a.Journey != "" || a.Step != "" || a.Detail["order_id"] == nil || a.Detail["destination"] == nil ||
				(a.Action != "conversion" && a.Action != "suppressed") {
				t.Errorf("line %d: a conversion needs a profile, an order id and a destination, and no journey: %s", i+1, line)
			}
		} else if a.Profile == "" || a.Journey == "" || a.Detail == nil || a.Action == "conversion" {
			t.Errorf("line %d: profile, journey and detail are required: %s", i+1, line)
		}
		// An error of a trigger or entry key belongs to no step yet.
		if a.Action != "error" && a.Channel != "ads" && (a.Action == "enter") != (a.Step == "") {
			t.Errorf("line %d: step %q with action %s", i+1, a.Step, a.Action)
		}
		if (a.Action == "send" || a.Action == "suppressed" || a.Action == "delayed") && a.Channel == "" || (a.Action == "suppressed" || a.Action == "delayed") && a.Detail["reason"] == nil {
			t.Errorf("line %d: a send needs a channel, a suppression or a delay a reason: %s", i+1, line)
		}
		if a.Action == "delayed" {
			if until, err := time.Parse(time.RFC3339, fmt.Sprint(a.Detail["until"])); err != nil || !until.After(at) {
				t.Errorf("line %d: a delay needs an until after its time: %s", i+1, line)
			}
		}
		sums = append(sums, summarize(a))
	}
	return sums
}

// summarize writes an action as "at journey step action [channel] k=v..."
// with the detail's keys in order, leaving out the journey version (a hash
// of the file) and empty values.
func summarize(a simAction) string {
	step := a.Step
	if step == "" {
		step = "-"
	}
	journey := a.Journey
	if journey == "" {
		journey = "-"
	}
	parts := []string{a.At, journey, step, a.Action}
	if a.Channel != "" {
		parts = append(parts, a.Channel)
	}
	keys := make([]string, 0, len(a.Detail))
	for k := range a.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := fmt.Sprint(a.Detail[k]); k != "version" && v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// checkScenario checks the summaries hold sc.want in order (each as a
// prefix of a summary, where ? stands for any one character: a release
// time within the spread) and nothing of sc.never.
func checkScenario(t *testing.T, sums []string, sc scenario) {
	t.Helper()
	i := 0
	for _, s := range sums {
		if i < len(sc.want) && hasPattern(s, sc.want[i]) {
			i++
		}
	}
	if i < len(sc.want) {
		t.Errorf("missing, in this order after the ones before it:\n  %s\nactions:\n  %s", sc.want[i], strings.Join(sums, "\n  "))
	}
	for _, s := range sums {
		for _, bad := range sc.never {
			if strings.Contains(s, bad) {
				t.Errorf("unexpected action (matches %q): %s", bad, s)
			}
		}
	}
}

// hasPattern reports whether s starts with pattern, ? matching any byte.
func hasPattern(s, pattern string) bool {
	if len(s) < len(pattern) {
		return false
	}
	for i := range len(pattern) {
		if pattern[i] != '?' && pattern[i] != s[i] {
			return false
		}
	}
	return true
}

// lineDiff lists the lines that differ between want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// simulate --strict fails when a journey condition or value failed to
// evaluate; without it the error actions are printed and it exits 0.
func TestSimulateStrict(t *testing.T) {
	run := func(extra ...string) (string, error) {
		var out, errb bytes.Buffer
		m := &Main{Stdout: &out, Stderr: &errb, Getenv: envOf(nil)}
		args := append([]string{"simulate", "--config", filepath.Join(simDir, "cartera.yaml"), "--events", filepath.Join(simDir, "eval_error.ndjson")}, extra...)
		err := m.Run(context.Background(), args)
		return out.String(), err
	}
	out, err := run()
	if err != nil || !strings.Contains(out, `"action":"error"`) {
		t.Fatalf("without --strict: %v\n%s", err, out)
	}
	out, err = run("--strict")
	if err == nil || !strings.Contains(err.Error(), "1 journey condition(s) failed to evaluate") || !strings.Contains(out, `"action":"error"`) {
		t.Errorf("with --strict: %v\n%s", err, out)
	}
}

// simulate names people: each line carries the person's main identifier
// beside the profile id, and --people prints one line per person with the
// journeys they went through.
func TestSimulatePeople(t *testing.T) {
	file := filepath.Join(simDir, "shared_audience.ndjson")
	out, _, err := simulateRun(t, "--config", filepath.Join(simDir, "cartera.yaml"), "--events", file, "--until", "720h")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, `"person":"lena"`) {
			t.Errorf("line %d does not name Lena: %s", i+1, line)
		}
	}
	out, _, err = simulateRun(t, "--config", filepath.Join(simDir, "cartera.yaml"), "--events", file, "--until", "720h", "--people")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("--people printed %d lines, want one for Lena:\n%s", len(lines), out)
	}
	var p personLine
	if err := json.Unmarshal([]byte(lines[0]), &p); err != nil {
		t.Fatal(err)
	}
	if p.Person != "lena" || len(p.Journeys) != 2 || p.Journeys[0].Journey != "vip_winback" || p.Journeys[1].Journey != "cart_abandonment" {
		t.Fatalf("--people: %+v", p)
	}
	cart := p.Journeys[1]
	if cart.Actions["send"] != 1 || cart.Exit != "exit step" || !slices.Contains(cart.Steps, "retarget") {
		t.Errorf("cart trail: %+v", cart)
	}
}

// --people lists each person's sales sent back to the ad platforms, once
// per platform and order, and none of a person who never said yes to ads.
func TestSimulatePeopleConversions(t *testing.T) {
	file := filepath.Join(simDir, "store_conversions.ndjson")
	out, _, err := simulateRun(t, "--config", filepath.Join(simDir, "cartera.yaml"), "--events", file, "--people")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var p personLine
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		got[p.Person] = p.Conversions
	}
	want := map[string][]string{
		"olga": {"meta:pos-100", "google:pos-100"},
		"pau":  nil,
		"quim": {"meta:pos-102", "google:pos-102"},
	}
	for person, w := range want {
		if c, ok := got[person]; !ok || !slices.Equal(c, w) {
			t.Errorf("%s: conversions %v (listed: %v), want %v\n%s", person, c, ok, w, out)
		}
	}
}
