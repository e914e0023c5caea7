package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// The example cart reminder names the product of the event that started
// the journey: the send carries the trigger's properties to the template.
func TestSendSeesTheTrigger(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "cartera.db")
	s := startServerAt(t, data, nil)
	// What this checks is the template, not the quiet hours: Vera lives
	// where it is noon on the gateway's clock, whatever hour the suite
	// runs at (make test-clock runs it at night in Madrid).
	tz := clocktest.NoonZone(s.clock.Now())
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"vera","traits":{"email":"vera@example.com","vip":true,"timezone":"`+tz+`","consent":{"email":true}}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"vera","event":"Product Added","properties":{"cart_id":"v1","name":"Trail Runner 2"}}`))
	outbox := filepath.Join(filepath.Dir(data), "outbox")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.ReplaceAll(string(b), "=\r\n", ""), "Trail Runner 2") {
				t.Fatalf("the reminder does not name the product:\n%s", b)
			}
			return
		}
		time.Sleep(10 * time.Millisecond) // the real clock runs the outbox
	}
	t.Fatal("no reminder written to the outbox folder")
}

// A URL an event carries (a web key is public: anyone can send one) never
// reaches the mail unless it is on one of the shop's hosts, in the HTML
// and the text part; click links expire.
func TestReminderLinksStayOnTheShop(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "cartera.db")
	s := startServerAt(t, data, nil)
	tz := clocktest.NoonZone(s.clock.Now())
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"vera","traits":{"email":"vera@example.com","vip":true,"timezone":"`+tz+`","consent":{"email":true}}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"vera","event":"Product Added","properties":{"cart_id":"v1","name":"Your account is locked - verify now","url":"https://evil.example/login"}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"lea","traits":{"email":"lea@example.com","vip":true,"timezone":"`+tz+`","consent":{"email":true}}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"lea","event":"Product Added","properties":{"cart_id":"l1","name":"Trail Runner 2","url":"https://shoes.example/p/trail-runner-2"}}`))
	outbox := filepath.Join(filepath.Dir(data), "outbox")
	var files []string
	for deadline := time.Now().Add(10 * time.Second); len(files) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(outbox, "*.eml"))
	}
	if len(files) != 2 {
		t.Fatalf("outbox holds %v, want both reminders", files)
	}
	var click string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		mail := strings.ReplaceAll(string(b), "=\r\n", "")
		if strings.Contains(mail, "vera@example.com") {
			if strings.Contains(mail, "evil.example") {
				t.Errorf("the reminder links to the URL the event carried:\n%s", mail)
			}
			if !strings.Contains(mail, "[link removed]") {
				t.Errorf("the text part does not say a link was removed:\n%s", mail)
			}
			continue
		}
		m := regexp.MustCompile(`http://[^/\s]+(/t/c/[A-Za-z0-9_-]+)`).FindStringSubmatch(mail)
		if m == nil {
			t.Fatalf("Lea's reminder has no tracked shop link:\n%s", mail)
		}
		click = m[1]
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func() *http.Response {
		resp, err := noRedirect.Get(s.base + click)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shoes.example/p/trail-runner-2" {
		t.Fatalf("click: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for range 3 {
		if r := s.do(t, "POST", "/v1/admin/clock", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(`{"advance":"61d"}`)); r.status != 200 {
			t.Fatalf("advance the clock: %d %s", r.status, r.raw)
		}
	}
	if resp := get(); resp.StatusCode != 410 {
		t.Errorf("a click link 183 days on: %d, want 410 (expired)", resp.StatusCode)
	}
}
