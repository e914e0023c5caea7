package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"cartera/channels"
	"cartera/channels/email"
)

// people is an in-memory channels.Profiles.
type people map[string]*channels.Profile

func (p people) Profile(_ context.Context, id string) (*channels.Profile, error) {
	if id == "broken" {
		return nil, errors.New("store unavailable")
	}
	return p[id], nil
}

func testPeople() people {
	yes := map[string]bool{"email": true}
	return people{
		"lucia":   {ID: "lucia", Emails: []string{"lucia@example.com"}, Traits: map[string]any{"first_name": "Lucía"}, Consent: yes, Locale: "es-MX"},
		"ana":     {ID: "ana", Emails: []string{"ana@example.com"}, Traits: map[string]any{"first_name": "Ana"}, Consent: yes},
		"bounce":  {ID: "bounce", Emails: []string{"bounce@example.com"}, Consent: yes},
		"busy":    {ID: "busy", Emails: []string{"busy@example.com"}, Consent: yes},
		"reject":  {ID: "reject", Emails: []string{"reject@example.com"}, Consent: yes},
		"silent":  {ID: "silent", Emails: []string{"silent@example.com"}},
		"refused": {ID: "refused", Emails: []string{"refused@example.com"}, Consent: map[string]bool{"email": false}},
		"nomail":  {ID: "nomail", Phones: []string{"+34600000000"}, Consent: yes},
		"spoof":   {ID: "spoof", Emails: []string{"spoof@example.com"}, Traits: map[string]any{"first_name": "=?utf-8?b?WW91ciBhY2NvdW50IGlzIGxvY2tlZA==?="}, Consent: yes},
	}
}

func message(profile, template string, data map[string]any) *channels.Message {
	p, err := json.Marshal(channels.SendPayload{Template: template, Data: data})
	if err != nil {
		panic(err)
	}
	return &channels.Message{
		Key:         "cart_abandonment/v1/7/reminder/1:" + profile,
		Destination: email.Name,
		ProfileID:   profile,
		Journey:     "cart_abandonment",
		Step:        "reminder",
		Payload:     p,
	}
}

var cartData = map[string]any{"trigger": map[string]any{"cart_id": "c1", "name": "Zapatillas trail", "url": "https://shop.example/cart/c1?src=mail&x=1"}}

func smtpConfig(ms *email.Config, addr string) {
	ms.SMTPURL = "smtp://" + url.UserPassword(smtpUser, smtpPass).String() + "@" + addr
}

func newSender(t *testing.T, mutate func(*email.Config)) *email.Sender {
	t.Helper()
	cfg := email.DefaultConfig()
	cfg.From = "Tienda <hola@shop.example>"
	cfg.Links = map[string]string{"shop": "https://shop.example/"}
	cfg.OutboxDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := email.New(cfg, loadExamples(t), newTracker(), testPeople())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeliverSMTP(t *testing.T) {
	ms := startMailServer(t, false)
	s := newSender(t, func(c *email.Config) { smtpConfig(c, ms.Addr); c.RootCAs = ms.CA })
	if s.Name() != "email" {
		t.Errorf("Name() = %q", s.Name())
	}
	msg := message("lucia", "cart_reminder", cartData)
	res := s.Deliver(context.Background(), []*channels.Message{msg})
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("Deliver: %+v", res)
	}
	if len(res[0].Events) != 1 || res[0].Events[0].Event != "Email Delivered" {
		t.Fatalf("events %+v", res[0].Events)
	}
	props := res[0].Events[0].Properties
	if props["journey"] != "cart_abandonment" || props["step"] != "reminder" || props["template"] != "cart_reminder" {
		t.Errorf("delivered properties %v", props)
	}

	mails := ms.Mails()
	if len(mails) != 1 {
		t.Fatalf("server got %d mails", len(mails))
	}
	got := mails[0]
	if !got.TLS || got.User != smtpUser || got.From != "hola@shop.example" || len(got.To) != 1 || got.To[0] != "lucia@example.com" {
		t.Errorf("envelope %+v", got)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "Lucía, tu carrito te espera" {
		t.Errorf("Subject %q (%v)", subject, err)
	}
	if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "hola@shop.example" || from.Name != "Tienda" {
		t.Errorf("From %q", h.Get("From"))
	}
	if to, err := mail.ParseAddress(h.Get("To")); err != nil || to.Address != "lucia@example.com" {
		t.Errorf("To %q", h.Get("To"))
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := h.Get("Message-Id"); id != props["message_id"] || !regexp.MustCompile(`^<cartera\.[0-9a-f]{32}@shop\.example>$`).MatchString(id) {
		t.Errorf("Message-ID %q, outcome says %v", id, props["message_id"])
	}
	if h.Get("X-Cartera-Key") != msg.Key {
		t.Errorf("X-Cartera-Key %q", h.Get("X-Cartera-Key"))
	}
	if h.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", h.Get("List-Unsubscribe-Post"))
	}
	lu := regexp.MustCompile(`^<(https://cartera\.example/t/u/[^>]+)>, <mailto:hola@shop\.example\?subject=unsubscribe>$`).FindStringSubmatch(h.Get("List-Unsubscribe"))
	if lu == nil {
		t.Fatalf("List-Unsubscribe %q", h.Get("List-Unsubscribe"))
	}
	tr := newTracker()
	unsub, err := tr.Unsubscribe(tokenOf(t, lu[1], email.UnsubscribePath))
	if err != nil || unsub.ProfileID != "lucia" || unsub.Key != msg.Key || unsub.Journey != "cart_abandonment" || unsub.Template != "cart_reminder" {
		t.Errorf("unsubscribe token: %+v %v", unsub, err)
	}

	text, htmlBody := parts(t, m)
	for _, want := range []string{"Hola, Lucía:", "Zapatillas trail", "Vuelve a tu carrito: https://cartera.example/t/c/", lu[1]} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	// The text part's link is tracked too, for text-only mail clients.
	if m := regexp.MustCompile(`Vuelve a tu carrito: https://cartera\.example/t/c/(\S+)`).FindStringSubmatch(text); m != nil {
		if ti, err := tr.Click(m[1]); err != nil || ti.URL != "https://shop.example/cart/c1?src=mail&x=1" || ti.Key != msg.Key {
			t.Errorf("text part click token: %+v %v", ti, err)
		}
	}
	for _, want := range []string{`<html lang="es">`, "Hola, Lucía:", "<strong>Zapatillas trail</strong>", "Hemos guardado tus artículos"} {
		if !strings.Contains(htmlBody, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, htmlBody)
		}
	}
	links, pixels := hrefs(htmlBody)
	var cartClicks int
	for _, l := range links {
		switch {
		case l == lu[1]:
			// The unsubscribe link stays as it is.
		case strings.HasPrefix(l, "https://cartera.example/t/c/"):
			ti, err := tr.Click(tokenOf(t, l, email.ClickPath))
			if err != nil {
				t.Fatalf("click link %s: %v", l, err)
			}
			if ti.URL != "https://shop.example/cart/c1?src=mail&x=1" || ti.ProfileID != "lucia" || ti.Key != msg.Key {
				t.Errorf("click token %+v", ti)
			}
			cartClicks++
		default:
			t.Errorf("link not rewritten: %s", l)
		}
	}
	if cartClicks != 1 {
		t.Errorf("want 1 cart click link, got %d in %v", cartClicks, links)
	}
	if len(pixels) != 1 {
		t.Fatalf("pixels %v", pixels)
	}
	if ti, err := tr.Open(tokenOf(t, pixels[0], email.OpenPath)); err != nil || ti.ProfileID != "lucia" {
		t.Errorf("pixel %s: %+v %v", pixels[0], ti, err)
	}

	// A retry carries the same Message-ID.
	res2 := s.Deliver(context.Background(), []*channels.Message{msg})
	if res2[0].Err != nil || res2[0].Events[0].Properties["message_id"] != props["message_id"] {
		t.Errorf("retry: %+v", res2)
	}
}

// parts returns the text and HTML parts of a multipart/alternative mail.
func parts(t *testing.T, m *mail.Message) (text, htmlBody string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p) // quoted-printable is decoded by NextPart
		if err != nil {
			t.Fatal(err)
		}
		ct, ps, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if !strings.EqualFold(ps["charset"], "utf-8") {
			t.Errorf("part %s charset %q", ct, ps["charset"])
		}
		types = append(types, ct)
		switch ct {
		case "text/plain":
			text = string(b)
		case "text/html":
			htmlBody = string(b)
		}
	}
	// Text first: clients show the last part they can, HTML.
	if strings.Join(types, ",") != "text/plain,text/html" {
		t.Errorf("parts %v", types)
	}
	return text, htmlBody
}

// hrefs lists the <a href> values and <img src> values of a document.
func hrefs(doc string) (links, imgs []string) {
	z := html.NewTokenizer(strings.NewReader(doc))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		for _, a := range tok.Attr {
			if tok.Data == "a" && a.Key == "href" {
				links = append(links, a.Val)
			}
			if tok.Data == "img" && a.Key == "src" {
				imgs = append(imgs, a.Val)
			}
		}
	}
	return links, imgs
}

func TestDeliverFailures(t *testing.T) {
	ms := startMailServer(t, false)
	s := newSender(t, func(c *email.Config) { smtpConfig(c, ms.Addr); c.RootCAs = ms.CA })
	for _, tc := range []struct {
		name      string
		msg       *channels.Message
		permanent bool
		is        error
		bounce    string // reason prefix of an Email Bounced outcome
	}{
		{name: "hard bounce on RCPT", msg: message("bounce", "cart_reminder", nil), permanent: true, bounce: "550 "},
		{name: "refused after DATA", msg: message("reject", "cart_reminder", nil), permanent: true, bounce: "554 "},
		{name: "greylisted", msg: message("busy", "cart_reminder", nil)},
		{name: "no consent given", msg: message("silent", "cart_reminder", nil), permanent: true, is: channels.ErrNoConsent},
		{name: "consent withdrawn", msg: message("refused", "cart_reminder", nil), permanent: true, is: channels.ErrNoConsent},
		{name: "no address", msg: message("nomail", "cart_reminder", nil), permanent: true, is: email.ErrNoAddress},
		{name: "unknown template", msg: message("ana", "nope", nil), permanent: true, is: email.ErrUnknownTemplate},
		{name: "person gone", msg: message("gone", "cart_reminder", nil), permanent: true},
		{name: "profile store down", msg: message("broken", "cart_reminder", nil)},
		{name: "bad payload", msg: &channels.Message{Key: "k", ProfileID: "ana", Payload: json.RawMessage(`[1]`)}, permanent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.Deliver(context.Background(), []*channels.Message{tc.msg})
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			r := res[0]
			if r.Err == nil {
				t.Fatalf("delivered: %+v", r)
			}
			if got := channels.IsPermanent(r.Err); got != tc.permanent {
				t.Errorf("permanent = %v, want %v (%v)", got, tc.permanent, r.Err)
			}
			if tc.is != nil && !errors.Is(r.Err, tc.is) {
				t.Errorf("error %v is not %v", r.Err, tc.is)
			}
			if !strings.Contains(r.Err.Error(), tc.msg.Key) {
				t.Errorf("error %q does not name the message", r.Err)
			}
			if strings.Contains(r.Err.Error(), "@example.com") {
				t.Errorf("error %q holds the address", r.Err)
			}
			if tc.bounce == "" {
				if len(r.Events) != 0 {
					t.Errorf("events %+v", r.Events)
				}
				return
			}
			if len(r.Events) != 1 {
				t.Fatalf("events %+v", r.Events)
			}
			o := r.Events[0]
			reason, _ := o.Properties["reason"].(string)
			if o.Event != "Email Bounced" || !strings.HasPrefix(reason, tc.bounce) || strings.Contains(reason, "@") ||
				o.Properties["journey"] != "cart_abandonment" || o.Properties["step"] != "reminder" || o.Properties["template"] != "cart_reminder" {
				t.Errorf("bounce outcome %+v", o)
			}
			if len(o.Consent) != 1 || o.Consent["email"] {
				t.Errorf("bounce consent %v, want email false", o.Consent)
			}
		})
	}
	if len(ms.Mails()) != 0 {
		t.Errorf("server accepted %d mails", len(ms.Mails()))
	}
}

func TestDeliverBatch(t *testing.T) {
	ms := startMailServer(t, false)
	s := newSender(t, func(c *email.Config) { smtpConfig(c, ms.Addr); c.RootCAs = ms.CA })
	msgs := []*channels.Message{
		message("ana", "welcome_gold", nil),
		message("bounce", "welcome_gold", nil),
		message("busy", "welcome_gold", nil),
		message("silent", "welcome_gold", nil),
		message("lucia", "birthday", nil),
	}
	res := s.Deliver(context.Background(), msgs)
	want := []string{"delivered", "permanent", "retry", "permanent", "delivered"}
	for i, r := range res {
		got := "delivered"
		switch {
		case channels.IsPermanent(r.Err):
			got = "permanent"
		case r.Err != nil:
			got = "retry"
		}
		if got != want[i] {
			t.Errorf("message %d: %s (%v), want %s", i, got, r.Err, want[i])
		}
	}
	mails := ms.Mails()
	if len(mails) != 2 || mails[0].To[0] != "ana@example.com" || mails[1].To[0] != "lucia@example.com" {
		t.Fatalf("server got %+v", mails)
	}
	if ms.Connections() != 1 {
		t.Errorf("%d SMTP connections for one batch", ms.Connections())
	}
	m, err := mail.ReadMessage(bytes.NewReader(mails[1].Data))
	if err != nil {
		t.Fatal(err)
	}
	if subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject")); subject != "¡Feliz cumpleaños, Lucía!" {
		t.Errorf("subject %q", subject)
	}
}

func TestDeliverConnection(t *testing.T) {
	ms := startMailServer(t, false)
	tls := startMailServer(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		cfg  func(*email.Config)
		ok   bool
	}{
		{"implicit TLS", func(c *email.Config) {
			c.SMTPURL = "smtps://" + url.UserPassword(smtpUser, smtpPass).String() + "@" + tls.Addr
			c.RootCAs = tls.CA
		}, true},
		{"insecure skip verify", func(c *email.Config) { smtpConfig(c, ms.Addr); c.InsecureSkipVerify = true }, true},
		{"untrusted certificate", func(c *email.Config) { smtpConfig(c, ms.Addr) }, false},
		{"wrong password", func(c *email.Config) {
			c.SMTPURL = "smtp://cartera:nope@" + ms.Addr
			c.RootCAs = ms.CA
		}, false},
		{"nobody listening", func(c *email.Config) { smtpConfig(c, closed) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSender(t, tc.cfg)
			msgs := []*channels.Message{message("ana", "cart_reminder", nil), message("lucia", "cart_reminder", nil)}
			for i, r := range s.Deliver(context.Background(), msgs) {
				if tc.ok && r.Err != nil {
					t.Errorf("message %d: %v", i, r.Err)
				}
				if !tc.ok && (r.Err == nil || channels.IsPermanent(r.Err) || len(r.Events) != 0) {
					t.Errorf("message %d: want a retryable error, got %+v", i, r)
				}
			}
		})
	}
	if n := len(tls.Mails()); n != 2 || !tls.Mails()[0].TLS {
		t.Errorf("implicit TLS server got %d mails", n)
	}

	// A cancelled context sends nothing and is retried.
	s := newSender(t, func(c *email.Config) { smtpConfig(c, ms.Addr); c.RootCAs = ms.CA })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := len(ms.Mails())
	if r := s.Deliver(ctx, []*channels.Message{message("ana", "cart_reminder", nil)}); r[0].Err == nil || channels.IsPermanent(r[0].Err) || !errors.Is(r[0].Err, context.Canceled) {
		t.Errorf("cancelled: %+v", r)
	}
	if len(ms.Mails()) != before {
		t.Error("a cancelled delivery sent mail")
	}
}

func TestDeliverToFolder(t *testing.T) {
	var logs bytes.Buffer
	dir := filepath.Join(t.TempDir(), "outbox")
	cfg := email.DefaultConfig()
	cfg.OutboxDir = dir
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	// A development base URL: plain http, so no one-click header.
	tr := newTracker()
	tr.BaseURL = "http://127.0.0.1:8080"
	s, err := email.New(cfg, loadExamples(t), tr, testPeople())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), `"outbox_dir":"`+dir+`"`) {
		t.Errorf("want one log line naming the folder, got:\n%s", logs.String())
	}
	msgs := []*channels.Message{message("ana", "cart_reminder", cartData), message("silent", "cart_reminder", nil)}
	res := s.Deliver(context.Background(), msgs)
	if res[0].Err != nil || len(res[0].Events) != 1 || res[0].Events[0].Event != "Email Delivered" {
		t.Fatalf("result %+v", res[0])
	}
	if !errors.Is(res[1].Err, channels.ErrNoConsent) {
		t.Errorf("no consent: %v", res[1].Err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("folder holds %v", entries)
	}
	name := entries[0].Name()
	if !regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-cart_abandonment_v1_7_reminder_1_ana\.eml$`).MatchString(name) {
		t.Errorf("file name %q", name)
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatal(err)
	}
	if subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject")); subject != "Ana, your cart is waiting" {
		t.Errorf("subject %q", subject)
	}
	if m.Header.Get("Message-Id") != res[0].Events[0].Properties["message_id"] {
		t.Errorf("Message-ID %q", m.Header.Get("Message-Id"))
	}
	if lu := m.Header.Get("List-Unsubscribe"); !strings.HasPrefix(lu, "<http://127.0.0.1:8080/t/u/") || !strings.HasSuffix(lu, ", <mailto:hello@cartera.localhost?subject=unsubscribe>") {
		t.Errorf("List-Unsubscribe %q", lu)
	}
	if _, ok := m.Header["List-Unsubscribe-Post"]; ok {
		t.Error("one-click header with an http unsubscribe URL")
	}
	text, htmlBody := parts(t, m)
	if !strings.Contains(text, "Hi Ana,") || !strings.Contains(htmlBody, "Hi Ana,") {
		t.Errorf("bodies:\n%s\n%s", text, htmlBody)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*email.Config)
		want string
	}{
		{"default", func(*email.Config) {}, ""},
		{"smtp", func(c *email.Config) { c.SMTPURL = "smtp://u:p@mail.example:2525"; c.OutboxDir = "" }, ""},
		{"bad from", func(c *email.Config) { c.From = "nobody" }, "email.from"},
		{"bad reply-to", func(c *email.Config) { c.ReplyTo = "x" }, "email.reply_to"},
		{"bad unsubscribe", func(c *email.Config) { c.UnsubscribeMailto = "x" }, "email.unsubscribe_mailto"},
		{"bad scheme", func(c *email.Config) { c.SMTPURL = "http://mail.example" }, "email.smtp_url"},
		{"no host", func(c *email.Config) { c.SMTPURL = "smtp://" }, "email.smtp_url"},
		{"bad port", func(c *email.Config) { c.SMTPURL = "smtp://mail.example:99999" }, "email.smtp_url"},
		{"no folder", func(c *email.Config) { c.OutboxDir = "" }, "email.outbox_dir"},
		{"bad link", func(c *email.Config) { c.Links = map[string]string{"shop": "/x"} }, "email.links.shop"},
		{"timeout", func(c *email.Config) { c.Timeout = 0 }, "email.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := email.DefaultConfig()
			tc.cfg(&cfg)
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %s", err, fmt.Sprint(tc.want))
			}
		})
	}
	if _, err := email.New(email.DefaultConfig(), nil, newTracker(), testPeople()); err == nil {
		t.Error("New without templates")
	}
	if _, err := email.New(email.DefaultConfig(), loadExamples(t), &email.Tracker{}, testPeople()); err == nil {
		t.Error("New with an unusable tracker")
	}
}

// A value that looks like an RFC 2047 encoded word reaches the subject as
// the characters it is, never decoded by the reader's mail client into
// other text.
func TestSubjectEncodedWordsNeutralised(t *testing.T) {
	dir := t.TempDir()
	s := newSender(t, func(c *email.Config) { c.OutboxDir = dir })
	if res := s.Deliver(context.Background(), []*channels.Message{message("spoof", "cart_reminder", cartData)}); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox holds %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(subject, "Your account is locked") {
		t.Errorf("the mail client reads the first name as other text: Subject %q", subject)
	}
	if want := "=\u200b?utf-8?b?WW91ciBhY2NvdW50IGlzIGxvY2tlZA==\u200b?=, your cart is waiting"; subject != want {
		t.Errorf("Subject decodes to %q, want %q", subject, want)
	}
}
