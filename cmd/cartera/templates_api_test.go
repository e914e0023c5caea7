package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cartera/internal/smtptest"
)

func (s *server) testSend(t *testing.T, name string, body any, token string) reply {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"Content-Type": "application/json"}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return s.do(t, "POST", "/v1/templates/"+name+"/test", h, b)
}

// TestTemplateTestSend is issue 20's item 7: POST /v1/templates/{name}/test
// sends one rendered mail with a person's data to the given address,
// marked as a test, through the real email destination, and it shows in
// nobody's statistics.
func TestTemplateTestSend(t *testing.T) {
	t.Parallel()
	relay := smtptest.Start(t, "cartera", "relay-pass")
	s := startServer(t, map[string]string{"CARTERA_SMTP_URL": relay.URL, "CARTERA_SMTP_CA_FILE": relay.CAFile})
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"ana","traits":{"first_name":"Ana","email":"ana@example.com","locale":"es"}}`))

	r := s.testSend(t, "cart_reminder", map[string]any{
		"to": "qa@shoes.example", "profile": "user_id:ana", "locale": "es",
		"data": map[string]any{"trigger": map[string]any{"cart_id": "c9", "url": "https://shoes.example/cart/c9"}},
	}, testAdminToken)
	if r.status != 200 || r.body["success"] != true || r.body["locale"] != "es" {
		t.Fatalf("test send: %d %s", r.status, r.raw)
	}
	mails := relay.Mails()
	if len(mails) != 1 || len(mails[0].To) != 1 || mails[0].To[0] != "qa@shoes.example" {
		t.Fatalf("relay got %+v, want one mail to the tester", mails)
	}
	raw := string(mails[0].Data)
	for _, want := range []string{"\r\nX-Cartera-Test: 1\r\n", "https://shoes.example/cart/c9"} {
		if !strings.Contains(raw, want) {
			t.Errorf("mail lacks %q:\n%s", want, raw)
		}
	}
	if subj, _ := r.body["subject"].(string); !strings.HasPrefix(subj, "[TEST] Ana") {
		t.Errorf("subject = %q, want [TEST] first and the person's name", subj)
	}
	for _, never := range []string{"/t/c/", "/t/o/", "ana@example.com"} {
		if strings.Contains(raw, never) {
			t.Errorf("test mail holds %q", never)
		}
	}
	// Nobody's statistics: no outcome event on the person, nothing in the
	// outbox.
	p := s.profile(t, "user_id:ana")
	for _, name := range []string{"Email Delivered", "Email Opened", "Email Bounced"} {
		if evs := eventsNamed(p, name); len(evs) > 0 {
			t.Errorf("the person got %s from a test send: %v", name, evs)
		}
	}
	ob := s.admin(t, "GET", "/v1/outbox")
	if strings.Contains(ob.raw, "test-") {
		t.Errorf("the test send went through the outbox: %s", ob.raw)
	}

	errs := []struct {
		name, template string
		body           map[string]any
		token          string
		status         int
		want           string
	}{
		{"unknown template", "nope", map[string]any{"to": "qa@shoes.example"}, testAdminToken, 404, `template "nope": no such email template`},
		{"unknown person", "welcome", map[string]any{"to": "qa@shoes.example", "profile": "user_id:bob"}, testAdminToken, 404, "profile: no profile holds that identifier"},
		{"no address", "welcome", map[string]any{}, testAdminToken, 400, "to: required"},
		{"bad address", "welcome", map[string]any{"to": "qa"}, testAdminToken, 400, "to: want one email address"},
		{"relay refuses", "welcome", map[string]any{"to": "bounce@shoes.example"}, testAdminToken, 502, `template "welcome": test send failed`},
		{"not admin", "welcome", map[string]any{"to": "qa@shoes.example"}, "", 401, ""},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			r := s.testSend(t, tc.template, tc.body, tc.token)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", r.status, tc.status, r.raw)
			}
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, tc.want) || r.body["success"] != false {
				t.Errorf("body = %s, want error %q", r.raw, tc.want)
			}
		})
	}
	if n := len(relay.Mails()); n != 1 {
		t.Errorf("relay got %d mails, want only the first one", n)
	}
}

// TestTemplateTestSendOutboxFolder: without a relay, the test mail is an
// .eml file in the outbox folder, with the test header.
func TestTemplateTestSendOutboxFolder(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	r := s.testSend(t, "welcome", map[string]any{"to": "qa@shoes.example", "locale": "en"}, testAdminToken)
	if r.status != 200 {
		t.Fatalf("test send: %d %s", r.status, r.raw)
	}
	file, _ := r.body["file"].(string)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.data), "outbox", file))
	if err != nil {
		t.Fatalf("outbox file %q: %v", file, err)
	}
	if !strings.Contains(string(b), "X-Cartera-Test: 1") || !strings.Contains(string(b), "To: <qa@shoes.example>") {
		t.Errorf("outbox file:\n%s", b)
	}
}
