package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cartera/internal/sdktest"
)

// journeyProcFiles are a deployment of one journey: two seconds after a
// sign-up, a webhook. The send goes through the policies (webhook needs no
// consent; the cap is far above one a person).
var journeyProcFiles = map[string]string{
	"cartera.yaml": `log_level: info
rules: [rules.yaml]
policies: policies.yaml
journeys: journeys
sources:
  - name: web
    write_keys: [` + sdktest.WebKey + `]
`,
	"rules.yaml": `computed_traits:
  - name: signups
    aggregate: count
    event: Signed Up
`,
	"policies.yaml": `policies:
  timezone: UTC
  consent_required: [email, sms, ads]
  frequency_caps:
    - {channel: webhook, max: 5, per: 1h}
`,
	"journeys/follow_up.yaml": `id: follow_up
trigger:
  event: Signed Up
steps:
  - id: pause
    wait: 2s
  - id: hello
    send: {channel: webhook, template: hello}
`,
}

// writeFiles writes files (path → content) into a new folder and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// journeyCounts is what GET /v1/journeys/{id} says of a journey and its
// steps.
type journeyCounts struct {
	Journey struct {
		Entered int64 `json:"entered"`
		Waiting int64 `json:"waiting"`
	} `json:"journey"`
	Steps []struct {
		ID     string           `json:"id"`
		Counts map[string]int64 `json:"counts"`
	} `json:"steps"`
}

// journeyLogAction is a "journey action" line of the outbox's log sink.
type journeyLogAction struct {
	Journey string `json:"journey"`
	Step    string `json:"step"`
	Action  string `json:"action"`
	Profile string `json:"profile"`
	Key     string `json:"key"`
}

// journeyActions returns the "journey action" lines of a process's log.
func journeyActions(t *testing.T, logs string) []journeyLogAction {
	t.Helper()
	var out []journeyLogAction
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
			journeyLogAction
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "journey action" {
			out = append(out, rec.journeyLogAction)
		}
	}
	return out
}

// journeyAdminGet GETs an admin path and decodes the JSON answer into v.
func journeyAdminGet(t *testing.T, base, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sdktest.AdminToken)
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", path, b, err)
		}
	}
	return resp.StatusCode
}

// TestProcessJourneyTimersSurviveKill signs up 50 people, SIGKILLs the
// server while their instances wait, and restarts it: every instance's send
// happens after the restart. The server is killed again as soon as the
// sends start, so delivery is interrupted too. The outbox delivers at least
// once, keyed: each send's key appears at least once across the runs, never
// twice in one run, and the engine recorded exactly one send per instance.
func TestProcessJourneyTimersSurviveKill(t *testing.T) {
	const people = 50
	dir := writeFiles(t, journeyProcFiles)
	srv := sdktest.Start(t, bin, sdktest.Options{Config: filepath.Join(dir, "cartera.yaml")})

	batch := make([]any, people)
	for i := range batch {
		batch[i] = map[string]any{"type": "track", "event": "Signed Up", "userId": fmt.Sprintf("jp-user-%02d", i), "messageId": fmt.Sprintf("jp-%02d", i)}
	}
	c := newClient()
	defer c.CloseIdleConnections()
	status, body, _, err := post(c, srv.URL(), "/v1/batch", sdktest.WebKey, mustJSON(t, map[string]any{"batch": batch}), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("batch: %d %s %v", status, body, err)
	}
	// The 200 means the instances are committed, each waiting 2s.
	srv.Kill()
	runs := []string{srv.Logs()}
	if n := len(journeyActions(t, runs[0])); n == people {
		t.Fatalf("all %d sends happened before the kill; the restart proves nothing", n)
	}

	// Kill again once the restarted server has delivered something.
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for len(journeyActions(t, srv.Logs())) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no send within 30s of the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()
	runs = append(runs, srv.Logs())

	srv.Restart()
	seen := func() map[string]int {
		byKey := map[string]int{}
		for _, logs := range append(runs[:len(runs):len(runs)], srv.Logs()) {
			for _, a := range journeyActions(t, logs) {
				byKey[a.Key]++
			}
		}
		return byKey
	}
	for len(seen()) < people {
		if time.Now().After(deadline) {
			t.Fatalf("after the restarts, %d of %d sends were delivered", len(seen()), people)
		}
		time.Sleep(20 * time.Millisecond)
	}
	runs = append(runs, srv.Logs())

	keyRE := regexp.MustCompile(`^follow_up/[0-9a-f]{12}/[0-9]+/hello/1/[0-9a-f]+$`)
	profileOf := map[string]string{}
	instances := map[string]bool{}
	for i, logs := range runs {
		inRun := map[string]bool{}
		for _, a := range journeyActions(t, logs) {
			if a.Journey != "follow_up" || a.Step != "hello" || a.Action != "send" || !keyRE.MatchString(a.Key) {
				t.Errorf("run %d: unexpected action %+v", i+1, a)
			}
			if inRun[a.Key] {
				t.Errorf("run %d delivered %s twice", i+1, a.Key)
			}
			inRun[a.Key] = true
			if p, ok := profileOf[a.Key]; ok && p != a.Profile {
				t.Errorf("key %s delivered to %s and %s", a.Key, p, a.Profile)
			}
			profileOf[a.Key] = a.Profile
			instances[strings.Split(a.Key, "/")[2]] = true
		}
	}
	profilesSent := map[string]bool{}
	for _, p := range profileOf {
		profilesSent[p] = true
	}
	if len(profileOf) != people || len(profilesSent) != people || len(instances) != people {
		t.Errorf("%d keys, %d profiles, %d instances; want %d of each", len(profileOf), len(profilesSent), len(instances), people)
	}
	repeated := 0
	for key := range profileOf {
		n := 0
		for _, logs := range runs {
			if strings.Contains(logs, `"key":"`+key+`"`) {
				n++
			}
		}
		if n > 1 {
			repeated++
		}
	}
	t.Logf("sends logged by run: %d, %d, %d; delivered again after a crash: %d", len(journeyActions(t, runs[0])), len(journeyActions(t, runs[1])), len(journeyActions(t, runs[2])), repeated)

	// The engine's own count: one entry and one send per person, none
	// left waiting, whatever the crashes did to delivery.
	var got journeyCounts
	if status := journeyAdminGet(t, srv.URL(), "/v1/journeys/follow_up", &got); status != http.StatusOK {
		t.Fatalf("GET /v1/journeys/follow_up: status %d", status)
	}
	if got.Journey.Entered != people || got.Journey.Waiting != 0 {
		t.Errorf("journey counts: entered %d, waiting %d; want %d, 0", got.Journey.Entered, got.Journey.Waiting, people)
	}
	counts := map[string]map[string]int64{}
	for _, s := range got.Steps {
		counts[s.ID] = s.Counts
	}
	if c := counts["pause"]; c["entered"] != people || c["waiting"] != 0 {
		t.Errorf("pause counts %v, want entered %d, waiting 0", c, people)
	}
	if c := counts["hello"]; c["sent"] != people || c["suppressed"] != 0 || c["exited"] != people {
		t.Errorf("hello counts %v, want sent %d, exited %d", c, people, people)
	}
	// Nobody is left in the journey.
	p := srv.MustProfile(t, "user_id:jp-user-07", 0)
	if js, ok := p.Fields["journeys"].([]any); !ok || len(js) != 0 {
		t.Errorf("profile journeys = %v, want none live", p.Fields["journeys"])
	}
}
