package main

// End-to-end tests of delivery through the real `cartera serve`, in
// process: the config of testdata/delivery (journeys with waits of
// seconds, so the real clock runs them), a real SMTP relay with STARTTLS
// and AUTH (emersion/go-smtp) and httptest stand-ins for Meta, Google Ads
// and a webhook receiver. serve has no injectable clock, so the tests poll
// with deadlines where a timer has to run; they never sleep a fixed time.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/net/html"

	"cartera/channels"
	"cartera/channels/webhook"
	"cartera/internal/smtptest"
)

// What testdata/delivery/cartera.yaml names.
const (
	dlWebKey        = "web_test_key"
	dlPOSKey        = "pos_test_key"
	dlHookSecret    = "delivery-test-webhook-secret"
	dlHookURL       = "http://webhook.invalid/hook" // replaced by the stand-in's
	dlShopURL       = "https://shoes.example/new?utm_source=email&utm_campaign=welcome"
	dlRetargetPath  = "/v21.0/23850000000000001/users"
	dlCustomersPath = "/v21.0/23850000000000002/users"
	dlGoogleJobs    = "/v18/customers/1234567890/offlineUserDataJobs"
	dlGoogleCreate  = `{"job":{"type":"CUSTOMER_MATCH_USER_LIST","customerMatchUserListMetadata":{"userList":"customers/1234567890/userLists/987654321"}}}`
	// The wait_for timeout of journeys/cart_abandonment.yaml.
	dlCartTimeout = 2 * time.Second
)

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// eventually polls cond until it holds or within passes. It is for what
// the real clock drives (timers, batching windows, retries).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer collects the server's log for a failing test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hit is one request a stand-in received.
type hit struct {
	At     time.Time
	Method string
	Path   string
	Header http.Header
	Body   string
}

// standIn is an outside API: it records every request and answers with
// respond (200 {} when nil).
type standIn struct {
	*httptest.Server
	mu      sync.Mutex
	hits    []hit
	respond func(h hit, n int) (int, string)
}

func newStandIn(t *testing.T, respond func(h hit, n int) (int, string)) *standIn {
	t.Helper()
	s := &standIn{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := hit{At: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(b)}
		s.mu.Lock()
		s.hits = append(s.hits, h)
		n := len(s.hits)
		s.mu.Unlock()
		status, body := 200, `{}`
		if s.respond != nil {
			status, body = s.respond(h, n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *standIn) Hits() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hits)
}

// deliveryRig is a copy of testdata/delivery with the Meta and Google
// stand-ins its serve runs talk to.
type deliveryRig struct {
	dir, config, data string
	env               map[string]string
	meta, google      *standIn
}

func newDeliveryRig(t *testing.T, hookURL string) *deliveryRig {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, "testdata/delivery", dir)
	r := &deliveryRig{dir: dir, config: filepath.Join(dir, "cartera.yaml"), data: filepath.Join(dir, "data", "cartera.db")}
	if hookURL != "" {
		b, err := os.ReadFile(r.config)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.config, bytes.ReplaceAll(b, []byte(dlHookURL), []byte(hookURL)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.meta = newStandIn(t, func(h hit, n int) (int, string) {
		return 200, `{"audience_id":"23850000000000001","num_received":1,"num_invalid_entries":0}`
	})
	var jobs int
	var jobsMu sync.Mutex
	r.google = newStandIn(t, func(h hit, n int) (int, string) {
		switch {
		case strings.HasSuffix(h.Path, ":create"):
			jobsMu.Lock()
			jobs++
			id := jobs
			jobsMu.Unlock()
			return 200, fmt.Sprintf(`{"resourceName":"customers/1234567890/offlineUserDataJobs/%d"}`, id)
		case strings.HasSuffix(h.Path, ":run"):
			return 200, `{"name":"customers/1234567890/operations/op"}`
		}
		return 200, `{}`
	})
	r.env = map[string]string{
		"CARTERA_ADMIN_TOKEN":    testAdminToken,
		"CARTERA_LOG_LEVEL":      "warn",
		"CARTERA_META_URL":       r.meta.URL + "/v21.0",
		"CARTERA_GOOGLE_ADS_URL": r.google.URL + "/v18",
	}
	return r
}

// serve runs `cartera serve` on the rig's config and data file; stop ends
// it (also at cleanup) and fails the test if serve failed.
func (r *deliveryRig) serve(t *testing.T, extra map[string]string) (s *server, stop func()) {
	t.Helper()
	vars := maps.Clone(r.env)
	maps.Copy(vars, extra)
	logs := &lockedBuffer{}
	addr := make(chan string, 1)
	m := &Main{Stdout: io.Discard, Stderr: logs, Getenv: envOf(vars), OnListen: func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", r.data, "--config", r.config})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			if t.Failed() {
				t.Logf("serve log:\n%s", logs.String())
			}
		})
	}
	select {
	case a := <-addr:
		t.Cleanup(stop)
		return &server{base: "http://" + a, data: r.data}, stop
	case err := <-done:
		cancel()
		t.Fatalf("serve exited: %v\n%s", err, logs.String())
	case <-time.After(startTimeout):
		cancel()
		t.Fatal("server did not start")
	}
	return nil, nil
}

// profile reads a person through the admin API.
func (s *server) profile(t *testing.T, ident string) map[string]any {
	t.Helper()
	r := s.admin(t, "GET", "/v1/profiles/"+ident)
	if r.status != 200 {
		t.Fatalf("GET profile %s: %d %s", ident, r.status, r.raw)
	}
	return r.body
}

// eventsNamed are the profile's events of a name, most recent first.
func eventsNamed(p map[string]any, name string) []map[string]any {
	var out []map[string]any
	evs, _ := p["events"].([]any)
	for _, e := range evs {
		if m, ok := e.(map[string]any); ok && m["event"] == name {
			out = append(out, m)
		}
	}
	return out
}

func props(ev map[string]any) map[string]any {
	p, _ := ev["properties"].(map[string]any)
	return p
}

// stepCounts reads a journey's counters per step.
func (s *server) stepCounts(t *testing.T, journey string) map[string]map[string]float64 {
	t.Helper()
	r := s.admin(t, "GET", "/v1/journeys/"+journey)
	if r.status != 200 {
		t.Fatalf("GET journey %s: %d %s", journey, r.status, r.raw)
	}
	out := map[string]map[string]float64{}
	steps, _ := r.body["steps"].([]any)
	for _, st := range steps {
		m := st.(map[string]any)
		c := map[string]float64{}
		for k, v := range m["counts"].(map[string]any) {
			c[k], _ = v.(float64)
		}
		out[m["id"].(string)] = c
	}
	return out
}

// exactJSON decodes raw into v, refusing unknown fields, and checks that
// encoding v again gives raw byte for byte: the wire format is exactly v's.
func exactJSON(t *testing.T, what, raw string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: body %s: %v", what, raw, err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != strings.TrimSpace(raw) {
		t.Fatalf("%s: body\n%s\nis not exactly\n%s", what, raw, again)
	}
}

// ---- the SMTP relay --------------------------------------------------------

const (
	dlSMTPUser = "cartera"
	dlSMTPPass = "relay p@ss/word"
)

// mailParts reads a multipart/alternative mail's parts by media type,
// decoded (multipart decodes quoted-printable itself).
func mailParts(t *testing.T, msg *mail.Message) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	out := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, pp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		if cs := strings.ToLower(pp["charset"]); cs != "utf-8" {
			t.Errorf("part %s: charset %q, want utf-8", pt, cs)
		}
		var r io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			r = base64.NewDecoder(base64.StdEncoding, p)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out[pt] = string(b)
	}
	return out
}

// ---- 1. email over SMTP, tracked ------------------------------------------

// TestDeliveryEmailSMTPAndTracking: an identify with an address and email
// consent enters the welcome journey; its mail goes through a real relay
// over STARTTLS with AUTH; the parsed MIME message has the headers, both
// parts and the person's content; the open pixel records Email Opened and
// takes the wait_for's event path (no retargeting); a click redirects to
// the signed URL and records Email Link Clicked; the one-click
// List-Unsubscribe POST withdraws email consent; Email Delivered is on the
// profile.
func TestDeliveryEmailSMTPAndTracking(t *testing.T) {
	t.Parallel()
	relay := smtptest.Start(t, dlSMTPUser, dlSMTPPass)
	rig := newDeliveryRig(t, "")
	const public = "https://track.shoes.example"
	s, _ := rig.serve(t, map[string]string{
		"CARTERA_SMTP_URL":     relay.URL,
		"CARTERA_SMTP_CA_FILE": relay.CAFile,
		"CARTERA_PUBLIC_URL":   public,
	})
	mustOK(t, s.send(t, dlWebKey, "/v1/identify", `{"userId":"u-ana","traits":{"email":"Ana@Example.com","first_name":"Ana","favourite_shoe":"Oxford brogue","consent":{"email":true,"ads":true}}}`))
	sent := time.Now()

	eventually(t, 10*time.Second, "the welcome mail at the relay", func() bool { return len(relay.Mails()) > 0 })
	t.Logf("identify → mail at the relay: %s", time.Since(sent).Round(time.Millisecond))
	mails := relay.Mails()
	if len(mails) != 1 {
		t.Fatalf("relay got %d mails, want 1", len(mails))
	}
	rm := mails[0]
	if !rm.TLS || rm.User != dlSMTPUser {
		t.Errorf("relay session: TLS %v, user %q; want STARTTLS and AUTH as %q", rm.TLS, rm.User, dlSMTPUser)
	}
	if rm.From != "hello@shoes.example" || !slices.Equal(rm.To, []string{"ana@example.com"}) {
		t.Errorf("envelope: from %q to %q", rm.From, rm.To)
	}

	msg, err := mail.ReadMessage(bytes.NewReader(rm.Data))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, rm.Data)
	}
	h := msg.Header
	if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Name != "Cartera Shoes" || from.Address != "hello@shoes.example" {
		t.Errorf("From = %q (%v)", h.Get("From"), err)
	}
	if to, err := mail.ParseAddressList(h.Get("To")); err != nil || len(to) != 1 || to[0].Address != "ana@example.com" {
		t.Errorf("To = %q (%v)", h.Get("To"), err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "Welcome, Ana!" {
		t.Errorf("Subject = %q (%v), want %q", subject, err, "Welcome, Ana!")
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	key := h.Get("X-Cartera-Key")
	if !strings.HasPrefix(key, "welcome/") || !strings.Contains(key, "/hello/1/") {
		t.Errorf("X-Cartera-Key = %q, want the welcome journey's hello step", key)
	}
	messageID := h.Get("Message-Id")
	if !strings.HasPrefix(messageID, "<") || !strings.HasSuffix(messageID, "@shoes.example>") {
		t.Errorf("Message-Id = %q", messageID)
	}
	// List-Unsubscribe: <https unsubscribe URL>, <mailto:...>; one-click
	// because the public base is https (RFC 8058).
	var unsub, mailto string
	for _, f := range strings.Split(h.Get("List-Unsubscribe"), ",") {
		f = strings.Trim(strings.TrimSpace(f), "<>")
		switch {
		case strings.HasPrefix(f, public+"/t/u/"):
			unsub = f
		case strings.HasPrefix(f, "mailto:"):
			mailto = f
		}
	}
	if unsub == "" || mailto != "mailto:hello@shoes.example?subject=unsubscribe" {
		t.Fatalf("List-Unsubscribe = %q", h.Get("List-Unsubscribe"))
	}
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", got)
	}

	parts := mailParts(t, msg)
	text, htmlBody := parts["text/plain"], parts["text/html"]
	// The text part's shop link is tracked too (text-only mail clients).
	for _, want := range []string{"Hi Ana,", "Your Oxford brogue is waiting in the new collection: " + public + "/t/c/", "Unsubscribe: " + unsub} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"Hi Ana,", "Your Oxford brogue is waiting"} {
		if !strings.Contains(htmlBody, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, htmlBody)
		}
	}
	// The HTML's links are tracked: the shop link became a click URL, the
	// unsubscribe link stayed, and the open pixel was added.
	var pixel, click string
	var hrefs []string
	z := html.NewTokenizer(strings.NewReader(htmlBody))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		for _, a := range tok.Attr {
			switch {
			case tok.Data == "img" && a.Key == "src":
				if strings.HasPrefix(a.Val, public+"/t/o/") {
					pixel = a.Val
				}
			case tok.Data == "a" && a.Key == "href":
				hrefs = append(hrefs, a.Val)
				if strings.HasPrefix(a.Val, public+"/t/c/") {
					click = a.Val
				}
			}
		}
	}
	if pixel == "" || click == "" || !slices.Contains(hrefs, unsub) || slices.Contains(hrefs, dlShopURL) {
		t.Fatalf("HTML links: pixel %q, click %q, hrefs %q (want a pixel, a tracked shop link and the unsubscribe link as is)", pixel, click, hrefs)
	}

	// The links point at the public https base; the test reaches the same
	// routes on the server's own http address.
	local := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.Scheme, u.Host = "http", strings.TrimPrefix(s.base, "http://")
		return u.String()
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Open.
	resp, err := noRedirect.Get(local(pixel))
	if err != nil {
		t.Fatal(err)
	}
	gif, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.HasPrefix(gif, []byte("GIF89a")) {
		t.Fatalf("pixel: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), gif)
	}
	p := s.profile(t, "user_id:u-ana")
	opened := eventsNamed(p, "Email Opened")
	if len(opened) != 1 || props(opened[0])["journey"] != "welcome" || props(opened[0])["template"] != "welcome" || props(opened[0])["message_key"] != key {
		t.Fatalf("Email Opened events = %v", opened)
	}
	// Replays of the pixel (a mail client loading it again, or anyone who
	// has the URL) are counted, not added to the person's events.
	for range 4 {
		resp, err := noRedirect.Get(local(pixel))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if opened := eventsNamed(s.profile(t, "user_id:u-ana"), "Email Opened"); len(opened) != 1 {
		t.Errorf("after 4 replays of the pixel: %d Email Opened events, want 1", len(opened))
	}
	m := s.do(t, "GET", "/metrics", map[string]string{"Authorization": "Bearer " + testAdminToken}, nil)
	for _, want := range []string{`cartera_email_opens_total{open="first"} 1`, `cartera_email_opens_total{open="repeat"} 4`} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The wait_for took its event path: engaged is set, the instance
	// ended, nothing went to retargeting.
	eventually(t, 5*time.Second, "the engaged trait of the on_event path", func() bool {
		tr, _ := s.profile(t, "user_id:u-ana")["traits"].(map[string]any)
		return tr["engaged"] == true
	})
	counts := s.stepCounts(t, "welcome")
	if counts["engaged"]["entered"] != 1 || counts["retarget"]["entered"] != 0 || counts["retarget"]["sent"] != 0 || counts["opened"]["waiting"] != 0 {
		t.Errorf("welcome step counts = %v, want engaged entered once and retarget never", counts)
	}
	if js := s.profile(t, "user_id:u-ana")["journeys"].([]any); len(js) != 0 {
		t.Errorf("live instances after the open = %v", js)
	}

	// Click: a 302 to the URL signed into the link, recorded.
	resp, err = noRedirect.Get(local(click))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != dlShopURL {
		t.Fatalf("click: %d Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), dlShopURL)
	}
	clicked := eventsNamed(s.profile(t, "user_id:u-ana"), "Email Link Clicked")
	if len(clicked) != 1 || props(clicked[0])["url"] != dlShopURL || props(clicked[0])["journey"] != "welcome" {
		t.Fatalf("Email Link Clicked events = %v", clicked)
	}

	// One-click unsubscribe, as a mail client posts it.
	req, _ := http.NewRequest("POST", local(unsub), strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("unsubscribe POST: %d", resp.StatusCode)
	}
	p = s.profile(t, "user_id:u-ana")
	consent := p["consent"].(map[string]any)
	if c, _ := consent["email"].(map[string]any); c == nil || c["granted"] != false {
		t.Errorf("email consent after unsubscribe = %v, want granted false", consent["email"])
	}
	if c, _ := consent["ads"].(map[string]any); c == nil || c["granted"] != true {
		t.Errorf("ads consent after an email unsubscribe = %v, want it untouched", consent["ads"])
	}
	if len(eventsNamed(p, "Unsubscribed")) != 1 {
		t.Errorf("Unsubscribed events = %v", eventsNamed(p, "Unsubscribed"))
	}
	// Ana says yes again, then unsubscribes again from the same mail: the
	// second unsubscribe is not taken for a repeat of the first.
	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-ana","event":"Consent Updated","properties":{"email":true}}`))
	if c := s.profile(t, "user_id:u-ana")["consent"].(map[string]any)["email"].(map[string]any); c["granted"] != true {
		t.Fatalf("email consent after saying yes again = %v", c)
	}
	req, _ = http.NewRequest("POST", local(unsub), strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err = noRedirect.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := s.profile(t, "user_id:u-ana")["consent"].(map[string]any)["email"].(map[string]any); resp.StatusCode != 200 || c["granted"] != false {
		t.Errorf("a second unsubscribe from the same mail: %d, consent %v; want 200 and withdrawn", resp.StatusCode, c)
	}

	eventually(t, 5*time.Second, "Email Delivered on the profile", func() bool {
		return len(eventsNamed(s.profile(t, "user_id:u-ana"), "Email Delivered")) > 0
	})
	del := eventsNamed(s.profile(t, "user_id:u-ana"), "Email Delivered")
	if len(del) != 1 || props(del[0])["message_id"] != messageID || props(del[0])["journey"] != "welcome" || props(del[0])["step"] != "hello" {
		t.Errorf("Email Delivered events = %v, want one for %s", del, messageID)
	}
	if n := len(relay.Mails()); n != 1 {
		t.Errorf("relay got %d mails, want 1", n)
	}
	if h := append(rig.meta.Hits(), rig.google.Hits()...); len(h) != 0 {
		t.Errorf("ad platforms were called for an opened mail: %v", h)
	}
}

// ---- 2 and 4. ad audiences on Meta and Google ------------------------------

// metaBody is the users edge's JSON (channels/meta).
type metaBody struct {
	Session struct {
		ID    int64 `json:"session_id"`
		Seq   int   `json:"batch_seq"`
		Last  bool  `json:"last_batch_flag"`
		Total int   `json:"estimated_num_total"`
	} `json:"session"`
	Payload struct {
		Schema []string   `json:"schema"`
		Data   [][]string `json:"data"`
	} `json:"payload"`
}

// metaRows checks every request to the Meta stand-in (auth, type, exact
// body) and returns the rows sent with method to path.
func metaRows(t *testing.T, hits []hit, method, path string) map[[2]string]time.Time {
	t.Helper()
	rows := map[[2]string]time.Time{}
	for _, h := range hits {
		if got := h.Header.Get("Authorization"); got != "Bearer meta-test-token" {
			t.Fatalf("meta %s %s: Authorization %q", h.Method, h.Path, got)
		}
		if ct := h.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("meta %s %s: Content-Type %q", h.Method, h.Path, ct)
		}
		if h.Path != dlRetargetPath && h.Path != dlCustomersPath {
			t.Fatalf("meta: unexpected path %s", h.Path)
		}
		if h.Method != "POST" && h.Method != "DELETE" {
			t.Fatalf("meta: unexpected method %s", h.Method)
		}
		var b metaBody
		exactJSON(t, "meta "+h.Method+" "+h.Path, h.Body, &b)
		if !slices.Equal(b.Payload.Schema, []string{"EMAIL", "PHONE", "FN", "LN", "COUNTRY", "EXTERN_ID"}) || len(b.Payload.Data) == 0 ||
			b.Session.ID == 0 || b.Session.Seq != 1 || !b.Session.Last || b.Session.Total != len(b.Payload.Data) {
			t.Fatalf("meta body %s", h.Body)
		}
		if h.Method != method || h.Path != path {
			continue
		}
		for _, row := range b.Payload.Data {
			r := [2]string{row[0], row[1]}
			if _, dup := rows[r]; !dup {
				rows[r] = h.At
			}
		}
	}
	return rows
}

// googleJob is one offline user data job as the stand-in saw it.
type googleJob struct {
	op      string   // "create" or "remove"
	ids     []string // "e:<hash>" / "p:<hash>", in order
	people  [][]string
	ran     bool
	ranAt   time.Time
	created time.Time
}

type googleAdd struct {
	Operations []struct {
		Create *googleUser `json:"create,omitempty"`
		Remove *googleUser `json:"remove,omitempty"`
	} `json:"operations"`
	EnablePartialFailure bool `json:"enablePartialFailure"`
}

type googleUser struct {
	UserIdentifiers []map[string]string `json:"userIdentifiers"`
}

// googleJobs checks every request to the Google stand-in (headers, paths,
// exact bodies) and groups them by job.
func googleJobs(t *testing.T, hits []hit) map[string]*googleJob {
	t.Helper()
	jobs := map[string]*googleJob{}
	for _, h := range hits {
		for name, want := range map[string]string{"Authorization": "Bearer google-test-token", "Developer-Token": "google-dev-token", "Login-Customer-Id": "1112223333", "Content-Type": "application/json"} {
			if got := h.Header.Get(name); got != want {
				t.Fatalf("google %s: %s = %q, want %q", h.Path, name, got, want)
			}
		}
		if h.Method != "POST" {
			t.Fatalf("google %s: method %s", h.Path, h.Method)
		}
		switch {
		case h.Path == dlGoogleJobs+":create":
			if h.Body != dlGoogleCreate {
				t.Fatalf("google create body\n%s\nwant\n%s", h.Body, dlGoogleCreate)
			}
		case strings.HasPrefix(h.Path, dlGoogleJobs+"/") && strings.HasSuffix(h.Path, ":addOperations"):
			name := strings.TrimSuffix(strings.TrimPrefix(h.Path, dlGoogleJobs+"/"), ":addOperations")
			var b googleAdd
			exactJSON(t, "google addOperations", h.Body, &b)
			if !b.EnablePartialFailure || len(b.Operations) == 0 {
				t.Fatalf("google addOperations body %s", h.Body)
			}
			j := jobs[name]
			if j == nil {
				j = &googleJob{created: h.At}
				jobs[name] = j
			}
			for _, op := range b.Operations {
				kind, u := "create", op.Create
				if op.Remove != nil {
					kind, u = "remove", op.Remove
				}
				if (op.Create == nil) == (op.Remove == nil) || (j.op != "" && j.op != kind) {
					t.Fatalf("google job %s: operations mix create and remove or have neither: %s", name, h.Body)
				}
				j.op = kind
				var person []string
				for _, id := range u.UserIdentifiers {
					if len(id) != 1 {
						t.Fatalf("google: a UserIdentifier holds one value: %s", h.Body)
					}
					if v, ok := id["hashedEmail"]; ok {
						person = append(person, "e:"+v)
					} else if v, ok := id["hashedPhoneNumber"]; ok {
						person = append(person, "p:"+v)
					} else {
						t.Fatalf("google: unknown identifier in %s", h.Body)
					}
				}
				j.people = append(j.people, person)
				j.ids = append(j.ids, person...)
			}
		case strings.HasPrefix(h.Path, dlGoogleJobs+"/") && strings.HasSuffix(h.Path, ":run"):
			name := strings.TrimSuffix(strings.TrimPrefix(h.Path, dlGoogleJobs+"/"), ":run")
			if h.Body != "{}" {
				t.Fatalf("google run body %q", h.Body)
			}
			if j := jobs[name]; j != nil {
				j.ran, j.ranAt = true, h.At
			} else {
				t.Fatalf("google: run of job %s that got no operations", name)
			}
		default:
			t.Fatalf("google: unexpected path %s", h.Path)
		}
	}
	return jobs
}

// googleRan reports when a job with op that holds person (all of its
// identifiers, as one UserData) ran.
func googleRan(jobs map[string]*googleJob, op string, person ...string) (time.Time, bool) {
	for _, j := range jobs {
		if !j.ran || j.op != op {
			continue
		}
		for _, p := range j.people {
			if slices.Equal(p, person) {
				return j.ranAt, true
			}
		}
	}
	return time.Time{}, false
}

// TestDeliveryAdAudiences: shoppers who leave a cart join the retargeting
// audience on Meta and Google once the reminder's wait_for times out (2s);
// one without ads consent is never sent; a purchase at the shop's till ends
// the journey and the removal reaches both platforms within about one
// batching window; a GDPR erase sends the removal of the erased person; a
// rules audience mirrored on Meta (customers) follows orders, with the
// same consent rule.
func TestDeliveryAdAudiences(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	s, _ := rig.serve(t, nil)
	// No email consent: the reminders are held back, nobody opens them,
	// and the wait_for times out.
	mustOK(t, s.send(t, dlWebKey, "/v1/batch", `{"batch":[
		{"type":"identify","userId":"u-bea","traits":{"email":" Bea@Example.com ","consent":{"ads":true}}},
		{"type":"identify","userId":"u-carl","traits":{"email":"carl@example.com","consent":{"ads":false}}},
		{"type":"identify","userId":"u-dana","traits":{"email":"dana@example.com","phone":"+34 600 111 222","consent":{"ads":true}}}]}`))
	mustOK(t, s.send(t, dlWebKey, "/v1/batch", `{"batch":[
		{"type":"track","userId":"u-bea","event":"Product Added","properties":{"cart_id":"c-bea","name":"Runner"}},
		{"type":"track","userId":"u-carl","event":"Product Added","properties":{"cart_id":"c-carl","name":"Boot"}},
		{"type":"track","userId":"u-dana","event":"Product Added","properties":{"cart_id":"c-dana","name":"Sandal"}}]}`))
	added := time.Now()

	bea := [2]string{hashOf("bea@example.com"), ""}
	carl := hashOf("carl@example.com")
	dana := [2]string{hashOf("dana@example.com"), hashOf("34600111222")} // Meta: digits with country code, no "+"
	beaG := []string{"e:" + bea[0]}
	danaG := []string{"e:" + dana[0], "p:" + hashOf("+34600111222")} // Google: E.164

	eventually(t, 10*time.Second, "the retargeting adds on Meta and Google", func() bool {
		rows := metaRows(t, rig.meta.Hits(), "POST", dlRetargetPath)
		jobs := googleJobs(t, rig.google.Hits())
		_, gb := googleRan(jobs, "create", beaG...)
		_, gd := googleRan(jobs, "create", danaG...)
		_, mb := rows[bea]
		_, md := rows[dana]
		return mb && md && gb && gd
	})
	rows := metaRows(t, rig.meta.Hits(), "POST", dlRetargetPath)
	if len(rows) != 2 {
		t.Errorf("Meta retargeting adds = %v, want Bea's and Dana's rows only", rows)
	}
	jobs := googleJobs(t, rig.google.Hits())
	for name, who := range map[string][2]string{"Bea": bea, "Dana": dana} {
		metaAt := rows[who]
		gAt, _ := googleRan(jobs, "create", map[string][]string{"Bea": beaG, "Dana": danaG}[name]...)
		t.Logf("%s: Product Added → add on Meta %s, on Google %s (wait_for timeout %s, batching window 1s)", name,
			metaAt.Sub(added).Round(time.Millisecond), gAt.Sub(added).Round(time.Millisecond), dlCartTimeout)
		if metaAt.Sub(added) < dlCartTimeout || gAt.Sub(added) < dlCartTimeout {
			t.Errorf("%s was added before the wait_for timed out", name)
		}
	}
	// Carl said no to ads: the policy held his add back.
	eventually(t, 5*time.Second, "Carl's retargeting add suppressed", func() bool {
		return s.stepCounts(t, "cart_abandonment")["retarget"]["suppressed"] == 1
	})
	if c := s.stepCounts(t, "cart_abandonment")["retarget"]; c["sent"] != 2 {
		t.Errorf("retarget counts = %v, want 2 sent and 1 suppressed", c)
	}

	// Carl, then Bea, buy at the till; Dana asks to be erased.
	mustOK(t, s.send(t, dlPOSKey, "/v1/track", `{"userId":"u-carl","event":"Order Completed","properties":{"order_id":"pos-1","revenue":80,"channel":"pos","store_id":"madrid-1"}}`))
	mustOK(t, s.send(t, dlPOSKey, "/v1/track", `{"userId":"u-bea","event":"Order Completed","properties":{"order_id":"pos-2","revenue":59.9,"channel":"pos","store_id":"madrid-1"}}`))
	ordered := time.Now()
	if js := s.profile(t, "user_id:u-bea")["journeys"].([]any); len(js) != 0 {
		t.Errorf("Bea's instances after the purchase = %v, want none (exit_when)", js)
	}
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:u-dana"); r.status != 200 {
		t.Fatalf("erase Dana: %d %s", r.status, r.raw)
	}
	erased := time.Now()

	var beaMeta, beaGoogle, danaMeta, danaGoogle time.Time
	eventually(t, 10*time.Second, "the removals of Bea and Dana on Meta and Google", func() bool {
		rm := metaRows(t, rig.meta.Hits(), "DELETE", dlRetargetPath)
		jobs := googleJobs(t, rig.google.Hits())
		var ok1, ok2, ok3, ok4 bool
		beaMeta, ok1 = rm[bea]
		danaMeta, ok2 = rm[dana]
		beaGoogle, ok3 = googleRan(jobs, "remove", beaG...)
		danaGoogle, ok4 = googleRan(jobs, "remove", danaG...)
		return ok1 && ok2 && ok3 && ok4
	})
	t.Logf("POS Order Completed → removal on Meta %s, on Google %s", beaMeta.Sub(ordered).Round(time.Millisecond), beaGoogle.Sub(ordered).Round(time.Millisecond))
	t.Logf("GDPR erase → removal on Meta %s, on Google %s", danaMeta.Sub(erased).Round(time.Millisecond), danaGoogle.Sub(erased).Round(time.Millisecond))
	// One batching window is 1s; allow for a loaded machine.
	for what, d := range map[string]time.Duration{"Meta (order)": beaMeta.Sub(ordered), "Google (order)": beaGoogle.Sub(ordered),
		"Meta (erase)": danaMeta.Sub(erased), "Google (erase)": danaGoogle.Sub(erased)} {
		if d > 4*time.Second {
			t.Errorf("removal on %s took %s, want about one batching window (1s)", what, d)
		}
	}

	// The rules audience customers, mirrored on Meta: Bea's order adds
	// her; Carl's does not, for want of ads consent.
	eventually(t, 5*time.Second, "Bea's add to the customers audience", func() bool {
		_, ok := metaRows(t, rig.meta.Hits(), "POST", dlCustomersPath)[bea]
		return ok
	})
	for _, h := range append(rig.meta.Hits(), rig.google.Hits()...) {
		if strings.Contains(h.Body, carl) {
			t.Errorf("Carl (no ads consent) was sent: %s %s %s", h.Method, h.Path, h.Body)
		}
	}
	if q := s.admin(t, "GET", "/v1/outbox?state=dead"); len(q.body["messages"].([]any)) != 0 {
		t.Errorf("dead letters: %s", q.raw)
	}
	// Audience Synced is on Bea's profile for both platforms.
	eventually(t, 5*time.Second, "Audience Synced on Bea's profile for each add and removal", func() bool {
		synced := map[string]bool{}
		for _, e := range eventsNamed(s.profile(t, "user_id:u-bea"), "Audience Synced") {
			synced[fmt.Sprint(props(e)["destination"], "/", props(e)["audience"], "/", props(e)["op"])] = true
		}
		return synced["meta/retargeting/add"] && synced["google/retargeting/add"] &&
			synced["meta/retargeting/remove"] && synced["google/retargeting/remove"] && synced["meta/customers/add"]
	})
}

// ---- 3. retries, dead letters, restart --------------------------------------

// hookCall is one request the webhook stand-in received.
type hookCall struct {
	At     time.Time
	Key    string
	Status int // 0: held until the client went away
	Run    int // which serve run sent it
}

// hookStandIn is the webhook receiver: it answers 503 while failing, and
// from the holdFrom-th request of a phase on, holds requests until the
// client gives up (a crash between the receiver's work and its answer).
type hookStandIn struct {
	*httptest.Server
	mu       sync.Mutex
	calls    []hookCall
	failing  bool
	run      int
	holdFrom int // 0: never hold
	phase    int // requests since the phase began
	held     chan string
	release  chan struct{}
	badSig   []string
}

func newHookStandIn(t *testing.T) *hookStandIn {
	t.Helper()
	hs := &hookStandIn{held: make(chan string, 64), release: make(chan struct{}), run: 1}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get("X-Cartera-Key")
		sigErr := webhook.Verify([]byte(dlHookSecret), r.Header.Get("X-Cartera-Timestamp"), r.Header.Get("X-Cartera-Signature"), body, time.Now(), time.Minute)
		var b webhook.Body
		_ = json.Unmarshal(body, &b)
		hs.mu.Lock()
		if sigErr != nil || b.ID != key || r.URL.Path != "/hook" || r.Method != "POST" {
			hs.badSig = append(hs.badSig, fmt.Sprintf("%s %s key %q id %q: %v", r.Method, r.URL.Path, key, b.ID, sigErr))
		}
		hs.phase++
		hold := hs.holdFrom > 0 && hs.phase >= hs.holdFrom
		status := 200
		if hs.failing {
			status = 503
		}
		call := hookCall{At: time.Now(), Key: key, Status: status, Run: hs.run}
		if hold {
			call.Status = 0
		}
		hs.calls = append(hs.calls, call)
		hs.mu.Unlock()
		if hold {
			hs.held <- key
			select {
			case <-r.Context().Done():
			case <-hs.release:
			}
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(func() {
		close(hs.release)
		hs.Close()
	})
	return hs
}

func (hs *hookStandIn) Calls() []hookCall {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return slices.Clone(hs.calls)
}

func (hs *hookStandIn) set(f func(hs *hookStandIn)) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	f(hs)
}

// queuedKeys reads the outbox of a stopped server's data file.
func queuedKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := channels.NewOutbox(db, channels.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, state := range []string{channels.StateQueued, channels.StateDead} {
		msgs, err := ob.List(state, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if state == channels.StateDead {
				t.Errorf("dead letter at the stop: %s: %s", m.Key, m.LastError)
			}
			out[m.Key] = true
		}
	}
	return out
}

// TestDeliveryRetriesDeadLettersAndRestart: a webhook answering 503 is
// tried max_attempts (3) times with growing backoff, then the message is a
// dead letter; once the receiver recovers, an admin retry delivers it
// exactly once. Then the server is stopped in the middle of a burst of
// deliveries and restarted on the same data file: every message arrives,
// and none that was settled before the stop is sent again.
func TestDeliveryRetriesDeadLettersAndRestart(t *testing.T) {
	t.Parallel()
	hook := newHookStandIn(t)
	rig := newDeliveryRig(t, hook.URL+"/hook")
	hook.set(func(hs *hookStandIn) { hs.failing = true })
	s, stop := rig.serve(t, nil)

	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-eve","event":"Back In Stock","properties":{"sku":"RUN-42"}}`))
	var dead []any
	eventually(t, 10*time.Second, "the failing webhook message in the dead letters", func() bool {
		dead = s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any)
		return len(dead) > 0
	})
	if len(dead) != 1 {
		t.Fatalf("dead letters = %v", dead)
	}
	dm := dead[0].(map[string]any)
	key := dm["key"].(string)
	if dm["destination"] != "webhook" || dm["attempts"] != 3.0 || !strings.Contains(fmt.Sprint(dm["last_error"]), "503") || !strings.HasPrefix(key, "restock/") {
		t.Fatalf("dead letter = %v, want the webhook send after 3 attempts failing with 503", dm)
	}
	calls := hook.Calls()
	if len(calls) != 3 {
		t.Fatalf("webhook calls = %v, want 3 attempts", calls)
	}
	// Backoff 40ms doubling, with jitter in [half, full]: the second try
	// comes at least 20ms after the first, the third 40ms after the second.
	for i, least := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond} {
		gap := calls[i+1].At.Sub(calls[i].At)
		t.Logf("retry %d after %s", i+1, gap.Round(time.Millisecond))
		if calls[i].Key != key || calls[i+1].Key != key || calls[i].Status != 503 || gap < least {
			t.Errorf("attempt %d → %d: %+v → %+v (gap %s), want the same key, 503, at least %s apart", i+1, i+2, calls[i], calls[i+1], gap, least)
		}
	}
	if q := s.admin(t, "GET", "/v1/outbox?state=queued").body["messages"].([]any); len(q) != 0 {
		t.Errorf("queued after the dead letter: %v", q)
	}

	// The receiver recovers; an admin retries the dead letter.
	hook.set(func(hs *hookStandIn) { hs.failing = false })
	seq := fmt.Sprint(dm["seq"])
	if r := s.admin(t, "POST", "/v1/outbox/"+seq+"/retry"); r.status != 200 || r.body["success"] != true {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	eventually(t, 5*time.Second, "Webhook Sent on Eve's profile", func() bool {
		return len(eventsNamed(s.profile(t, "user_id:u-eve"), "Webhook Sent")) == 1
	})
	if r := s.admin(t, "POST", "/v1/outbox/"+seq+"/retry"); r.status != 404 {
		t.Errorf("second retry of a delivered message: %d %s", r.status, r.raw)
	}
	for _, state := range []string{"queued", "dead"} {
		if q := s.admin(t, "GET", "/v1/outbox?state="+state).body["messages"].([]any); len(q) != 0 {
			t.Errorf("%s after the retry: %v", state, q)
		}
	}
	calls = hook.Calls()
	if len(calls) != 4 || calls[3].Key != key || calls[3].Status != 200 {
		t.Fatalf("calls after the retry = %v, want one more, answered 200", calls)
	}

	// A burst; the receiver holds every request from the 8th on, and the
	// server stops while they are in flight.
	const n = 24
	var batch []string
	for i := range n {
		batch = append(batch, fmt.Sprintf(`{"type":"track","userId":"u-r%02d","event":"Back In Stock","properties":{"sku":"SKU-%d"}}`, i, i))
	}
	hook.set(func(hs *hookStandIn) { hs.phase, hs.holdFrom = 0, 8 })
	mustOK(t, s.send(t, dlWebKey, "/v1/batch", `{"batch":[`+strings.Join(batch, ",")+`]}`))
	select {
	case <-hook.held:
	case <-time.After(startTimeout):
		t.Fatalf("no request held; calls %v", hook.Calls())
	}
	stop()
	hook.set(func(hs *hookStandIn) { hs.holdFrom, hs.run = 0, 2 })
	before := hook.Calls()
	unsettled := queuedKeys(t, rig.data)
	settled := map[string]bool{}
	for _, c := range before {
		if c.Status == 200 && !unsettled[c.Key] {
			settled[c.Key] = true
		}
	}
	t.Logf("at the stop: %d requests made, %d messages settled, %d left in the outbox", len(before), len(settled), len(unsettled))
	if len(unsettled) == 0 || len(settled) < 2 {
		t.Fatalf("the stop did not fall in the middle: settled %v, queued %v", settled, unsettled)
	}
	for _, c := range before {
		if c.Status == 0 && !unsettled[c.Key] {
			t.Errorf("a request whose answer never came was settled: %s", c.Key)
		}
	}

	// Restart on the same file: the rest arrives.
	s, _ = rig.serve(t, nil)
	delivered := func() map[string]int {
		ok := map[string]int{}
		for _, c := range hook.Calls() {
			if c.Status == 200 {
				ok[c.Key]++
			}
		}
		return ok
	}
	eventually(t, 10*time.Second, "every message delivered after the restart", func() bool {
		return len(delivered()) == n+1 && len(s.admin(t, "GET", "/v1/outbox?state=queued").body["messages"].([]any)) == 0
	})
	if d := s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any); len(d) != 0 {
		t.Errorf("dead letters after the restart: %v", d)
	}
	got := delivered()
	distinct := map[string]bool{}
	after := map[string]int{}
	for _, c := range hook.Calls() {
		distinct[c.Key] = true
		if c.Run == 2 {
			after[c.Key]++
		}
	}
	if len(distinct) != n+1 {
		t.Errorf("distinct keys at the receiver = %d, want %d messages", len(distinct), n+1)
	}
	for k, c := range got {
		if c != 1 && !unsettled[k] {
			t.Errorf("key %s answered 200 %d times, though settled before the stop", k, c)
		}
	}
	for k, c := range after {
		if settled[k] {
			t.Errorf("key %s, settled before the stop, was sent again after the restart", k)
		}
		if c != 1 {
			t.Errorf("key %s sent %d times after the restart, want once", k, c)
		}
	}
	for k := range unsettled {
		if after[k] != 1 {
			t.Errorf("queued key %s sent %d times after the restart, want once", k, after[k])
		}
	}
	hook.set(func(hs *hookStandIn) {
		if len(hs.badSig) > 0 {
			t.Errorf("badly signed or addressed requests: %v", hs.badSig)
		}
	})
	t.Logf("after the restart: %d sent, %d requests in all for %d messages", len(after), len(hook.Calls()), n+1)
}

// ---- 5. audience export -------------------------------------------------------

// TestDeliveryAudienceExportCSV: a rules audience's members come out as
// CSV with SHA-256 hashed identifiers, never the raw ones.
func TestDeliveryAudienceExportCSV(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	s, _ := rig.serve(t, nil)
	mustOK(t, s.send(t, dlWebKey, "/v1/batch", `{"batch":[
		{"type":"identify","userId":"u-fay","traits":{"email":"Fay@Example.com","phone":"+34 600 111 222","consent":{"email":true}}},
		{"type":"identify","userId":"u-gus","traits":{"email":"gus@example.com","consent":{"email":true}}},
		{"type":"identify","userId":"u-hal","traits":{"email":"hal@example.com","consent":{"email":false}}},
		{"type":"identify","userId":"u-ivy","traits":{"consent":{"email":true}}}]}`))
	ids := map[string]string{}
	for _, u := range []string{"fay", "gus"} {
		ids[s.profile(t, "user_id:u-"+u)["id"].(string)] = u
	}

	if r := s.do(t, "GET", "/v1/audiences/email_reachable/export.csv", nil, nil); r.status != 401 {
		t.Errorf("export without the admin token: %d", r.status)
	}
	if r := s.admin(t, "GET", "/v1/audiences/nope/export.csv"); r.status != 404 {
		t.Errorf("export of an unknown audience: %d %s", r.status, r.raw)
	}
	req, _ := http.NewRequest("GET", s.base+"/v1/audiences/email_reachable/export.csv", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="audience-email_reachable.csv"` {
		t.Fatalf("export: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], []string{"profile_id", "entered_at", "email_sha256", "phone_sha256"}) {
		t.Fatalf("CSV header: %v", recs)
	}
	want := map[string][2]string{
		"fay": {hashOf("fay@example.com"), hashOf("+34600111222")},
		"gus": {hashOf("gus@example.com"), ""},
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		who, ok := ids[rec[0]]
		if !ok {
			t.Errorf("CSV row of a non-member: %v", rec)
			continue
		}
		seen[who] = true
		if at, err := time.Parse(time.RFC3339, rec[1]); err != nil || time.Since(at) > time.Minute {
			t.Errorf("%s entered_at %q (%v)", who, rec[1], err)
		}
		if got := [2]string{rec[2], rec[3]}; got != want[who] {
			t.Errorf("%s hashes = %v, want %v", who, got, want[who])
		}
	}
	if len(seen) != 2 || len(recs) != 3 {
		t.Errorf("CSV rows = %v, want Fay and Gus", recs[1:])
	}
	for _, raw := range []string{"@", "fay", "600111222"} {
		if strings.Contains(strings.ToLower(string(body)), raw) {
			t.Errorf("CSV holds %q in clear:\n%s", raw, body)
		}
	}
}
