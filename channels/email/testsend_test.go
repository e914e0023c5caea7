package email_test

import (
	"context"
	"errors"
	"mime"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cartera/channels"
	"cartera/channels/email"
)

func TestSendTest(t *testing.T) {
	ms := startMailServer(t, false)
	s := newSender(t, func(c *email.Config) { smtpConfig(c, ms.Addr); c.RootCAs = ms.CA })
	lucia := testPeople()["lucia"]
	data := map[string]any{"trigger": map[string]any{"cart_id": "c1", "name": "Zapatillas trail", "url": "https://shop.example/cart/c1", "evil": "https://evil.example/x"}}

	res, err := s.SendTest(context.Background(), email.Test{To: "Marketing <qa@shop.example>", Template: "cart_reminder", Person: lucia, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if res.Locale != "es" || !strings.HasPrefix(res.Subject, "[TEST] ") {
		t.Errorf("result = %+v, want the person's locale (es) and a [TEST] subject", res)
	}
	mails := ms.Mails()
	if len(mails) != 1 {
		t.Fatalf("relay got %d mails", len(mails))
	}
	m := mails[0]
	if len(m.To) != 1 || m.To[0] != "qa@shop.example" {
		t.Errorf("RCPT TO = %v, want the tester's address only", m.To)
	}
	body := string(m.Data)
	parsed, err := netmail.ReadMessage(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if subj, _ := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject")); !strings.HasPrefix(subj, "[TEST] ") || subj != res.Subject {
		t.Errorf("Subject = %q, want %q with [TEST] first", subj, res.Subject)
	}
	for _, want := range []string{"\r\nX-Cartera-Test: 1\r\n", "https://shop.example/cart/c1", "To: <qa@shop.example>"} {
		if !strings.Contains(body, want) {
			t.Errorf("mail lacks %q:\n%s", want, body)
		}
	}
	// Nothing in it counts for anyone: no click links, no pixel, no
	// unsubscribe link that works, no List-Unsubscribe.
	for _, never := range []string{"/t/c/", "/t/o/", "List-Unsubscribe", "lucia@example.com"} {
		if strings.Contains(body, never) {
			t.Errorf("test mail holds %q:\n%s", never, body)
		}
	}

	t.Run("sample person and an explicit locale", func(t *testing.T) {
		res, err := s.SendTest(context.Background(), email.Test{To: "qa@shop.example", Template: "welcome", Locale: "en"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Locale != "en" || !strings.Contains(res.Subject, "Ana") {
			t.Errorf("result = %+v", res)
		}
	})
	errs := []struct {
		name string
		test email.Test
		want error
	}{
		{"unknown template", email.Test{To: "qa@shop.example", Template: "nope"}, email.ErrUnknownTemplate},
		{"two addresses", email.Test{To: "a@shop.example, b@shop.example", Template: "welcome"}, email.ErrBadAddress},
		{"not an address", email.Test{To: "qa", Template: "welcome"}, email.ErrBadAddress},
		{"relay refuses", email.Test{To: "bounce@example.com", Template: "welcome"}, email.ErrNotSent},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.SendTest(context.Background(), tc.test)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSendTestRenderError(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "code.yaml", "subject: Your code\n")
	write(t, dir, "code.html", "<p>{{.Vars.code}}</p>\n")
	write(t, dir, "code.txt", "{{.Vars.code}}\n")
	tpl, err := email.LoadTemplates(dir, "en")
	if err != nil {
		t.Fatal(err)
	}
	cfg := email.DefaultConfig()
	cfg.OutboxDir = t.TempDir()
	s, err := email.New(cfg, tpl, newTracker(), testPeople())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.SendTest(context.Background(), email.Test{To: "qa@shop.example", Template: "code"})
	if !errors.Is(err, email.ErrRender) || !strings.Contains(err.Error(), "render code.en html") {
		t.Errorf("err = %v, want a render error naming the template, locale and part", err)
	}
	if _, err := s.SendTest(context.Background(), email.Test{To: "qa@shop.example", Template: "code", Data: map[string]any{"code": "X1"}}); err != nil {
		t.Errorf("with the data: %v", err)
	}
}

func TestSendTestToOutboxFolder(t *testing.T) {
	dir := t.TempDir()
	s := newSender(t, func(c *email.Config) { c.OutboxDir = dir })
	res, err := s.SendTest(context.Background(), email.Test{To: "qa@shop.example", Template: "welcome", Person: &channels.Profile{ID: "p1", Traits: map[string]any{"first_name": "Lucía"}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, res.File))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "X-Cartera-Test: 1") || res.Subject != "[TEST] Welcome to Cartera Rewards, Lucía" {
		t.Errorf("outbox file:\n%s", b)
	}
}
