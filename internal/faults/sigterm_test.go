package faults_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/internal/sdktest"
	"cartera/internal/smtptest"
)

// A real SIGTERM to the serve binary while mails are held at a slow relay:
// it exits cleanly within a bounded time, no message is dead-lettered or
// charged an attempt, and after a restart every mail goes out.
func TestSIGTERMWhileSendingLosesNothing(t *testing.T) {
	relay := smtptest.StartWith(t, smtptest.Options{User: "u", Pass: "p", Delay: time.Minute})
	srv := sdktest.Start(t, bin, sdktest.Options{Env: map[string]string{
		"CARTERA_LOG_LEVEL":    "info",
		"CARTERA_SMTP_URL":     relay.URL,
		"CARTERA_SMTP_CA_FILE": relay.CAFile,
	}})
	const n = 6
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL()+path, strings.NewReader(body))
		req.SetBasicAuth("web_dev_write_key", "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	// VIPs living where it is noon on the gateway's clock: each cart is
	// reminded at once, whatever hour the suite runs at.
	tz := clocktest.NoonZone(srv.Clock().Now())
	for i := range n {
		post("/v1/identify", fmt.Sprintf(`{"userId":"t%d","traits":{"email":"t%d@example.com","vip":true,"timezone":%q,"consent":{"email":true}}}`, i, i, tz))
		post("/v1/track", fmt.Sprintf(`{"userId":"t%d","event":"Product Added","properties":{"cart_id":"c%d"}}`, i, i))
	}
	deadline := time.Now().Add(30 * time.Second)
	for relay.Receiving() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the relay, not a clock
	}
	if relay.Receiving() == 0 {
		t.Fatal("no mail reached the relay")
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("serve after SIGTERM with mails in flight: %v", err)
	}
	relay.SetDelay(0)
	srv.Restart()
	for len(relay.Mails()) < n && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := len(relay.Mails()); got != n {
		t.Errorf("after the restart the relay got %d mails, want %d", got, n)
	}
	req, _ := http.NewRequest("GET", srv.URL()+"/v1/outbox?state=dead", nil)
	req.Header.Set("Authorization", "Bearer "+sdktest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dead struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dead); err != nil || resp.StatusCode != 200 {
		t.Fatalf("dead letters: %d %v", resp.StatusCode, err)
	}
	if len(dead.Messages) != 0 {
		t.Errorf("dead letters after the SIGTERM: %s", dead.Messages)
	}
}
