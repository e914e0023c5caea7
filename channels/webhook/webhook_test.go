package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"cartera/channels"
	"cartera/channels/webhook"
)

var (
	secret = []byte("s3cret-for-tests")
	// 2025-11-20T10:35:00Z
	fixedNow = time.Unix(1763634900, 0)
)

// people is a profile store in memory.
type people struct {
	byID map[string]*channels.Profile
	err  error
}

func (p people) Profile(_ context.Context, id string) (*channels.Profile, error) {
	if p.err != nil {
		return nil, p.err
	}
	return p.byID[id], nil
}

var ana = &channels.Profile{
	ID:      "p_1",
	Emails:  []string{"ann@example.com"},
	Phones:  []string{"+34600111222"},
	Consent: map[string]bool{"email": true, "ads": true},
	Locale:  "es",
}

// received is one request the test server got.
type received struct {
	method, path string
	header       http.Header
	body         string
}

// receiver is a webhook endpoint that records what it gets and answers
// with status.
type receiver struct {
	mu     sync.Mutex
	got    []received
	status int
	srv    *httptest.Server
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		r.mu.Lock()
		r.got = append(r.got, received{req.Method, req.URL.RequestURI(), req.Header.Clone(), string(b)})
		status := r.status
		r.mu.Unlock()
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func newDest(t *testing.T, cfg webhook.Config, p channels.Profiles) *webhook.Destination {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	d, err := webhook.New(cfg, p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func sendMsg(key string) *channels.Message {
	return &channels.Message{
		Key:         key,
		Destination: "webhook",
		ProfileID:   "p_1",
		Journey:     "cart_abandonment",
		Step:        "reminder",
		Payload:     json.RawMessage(`{"template":"cart_reminder","data":{"cart_total":42.5,"items":["shoe & sock"],"url":"https://shop.example/cart?a=1&b=<2>"}}`),
	}
}

func audienceMsg(key, op string) *channels.Message {
	return &channels.Message{
		Key:         key,
		Destination: "audience_webhook:vip",
		ProfileID:   "p_1",
		Payload:     json.RawMessage(`{"audience":"vip","op":"` + op + `","emails":[" Ann@Example.com ","bob@example.com","ann@example.com"],"phones":["+34600111222"]}`),
	}
}

// checkRequest checks what every webhook request carries.
func checkRequest(t *testing.T, r received, key string) {
	t.Helper()
	if r.method != http.MethodPost || r.path != "/hooks/cartera?src=test" {
		t.Errorf("request = %s %s, want POST /hooks/cartera?src=test", r.method, r.path)
	}
	for h, want := range map[string]string{
		"Content-Type":        "application/json",
		"User-Agent":          "cartera-webhook/1",
		"X-Cartera-Key":       key,
		"X-Cartera-Timestamp": "1763634900",
		"X-Cartera-Signature": webhook.Sign(secret, "1763634900", []byte(r.body)),
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if err := webhook.Verify(secret, r.header.Get(webhook.HeaderTimestamp), r.header.Get(webhook.HeaderSignature), []byte(r.body), fixedNow.Add(30*time.Second), time.Minute); err != nil {
		t.Errorf("Verify of a request as received: %v", err)
	}
}

func TestDeliverSend(t *testing.T) {
	rcv := newReceiver(t, http.StatusNoContent)
	d := newDest(t, webhook.Config{URL: rcv.srv.URL + "/hooks/cartera?src=test"}, people{byID: map[string]*channels.Profile{"p_1": ana}})
	if d.Name() != "webhook" {
		t.Errorf("Name = %q, want webhook", d.Name())
	}

	res := d.Deliver(context.Background(), []*channels.Message{sendMsg("cart_abandonment/3/i_9/reminder")})

	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("results = %+v, want one delivered", res)
	}
	wantOutcome := []channels.Outcome{{Event: "Webhook Sent", Properties: map[string]any{"journey": "cart_abandonment", "step": "reminder", "template": "cart_reminder"}}}
	if !reflect.DeepEqual(res[0].Events, wantOutcome) {
		t.Errorf("events = %+v, want %+v", res[0].Events, wantOutcome)
	}
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	checkRequest(t, reqs[0], "cart_abandonment/3/i_9/reminder")
	want := `{"id":"cart_abandonment/3/i_9/reminder","type":"send","profile_id":"p_1","journey":"cart_abandonment","step":"reminder","template":"cart_reminder","data":{"cart_total":42.5,"items":["shoe & sock"],"url":"https://shop.example/cart?a=1&b=<2>"},"locale":"es","sent_at":"2025-11-20T10:35:00Z"}`
	if reqs[0].body != want {
		t.Errorf("body:\n got %s\nwant %s", reqs[0].body, want)
	}
	var b webhook.Body
	if err := json.Unmarshal([]byte(reqs[0].body), &b); err != nil || b.Type != "send" || !b.SentAt.Equal(fixedNow) {
		t.Errorf("body decodes as %+v, %v", b, err)
	}
}

func TestDeliverSendWithoutProfiles(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	d := newDest(t, webhook.Config{URL: rcv.srv.URL + "/hooks/cartera?src=test"}, nil)
	m := sendMsg("k")
	m.Journey, m.Step = "", ""
	m.Payload = json.RawMessage(`{"template":"ping"}`)

	if res := d.Deliver(context.Background(), []*channels.Message{m}); res[0].Err != nil {
		t.Fatalf("Deliver: %v", res[0].Err)
	}
	want := `{"id":"k","type":"send","profile_id":"p_1","template":"ping","sent_at":"2025-11-20T10:35:00Z"}`
	if got := rcv.requests()[0].body; got != want {
		t.Errorf("body:\n got %s\nwant %s", got, want)
	}
}

func TestDeliverAudience(t *testing.T) {
	const (
		annHash   = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476" // sha256("ann@example.com")
		bobHash   = "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018" // sha256("bob@example.com")
		phoneHash = "cb24629d1dbeb6ee24e7c20610896274e8102e67aa6efc2f3a1be2893c38008b" // sha256("+34600111222")
	)
	for _, op := range []string{"add", "remove"} {
		t.Run(op, func(t *testing.T) {
			rcv := newReceiver(t, http.StatusAccepted)
			d := newDest(t, webhook.Config{Name: "audience_webhook:vip", URL: rcv.srv.URL + "/hooks/cartera?src=test"}, nil)
			res := d.Deliver(context.Background(), []*channels.Message{audienceMsg("vip/p_1/"+op+"/1", op)})
			if res[0].Err != nil {
				t.Fatalf("Deliver: %v", res[0].Err)
			}
			wantOutcome := []channels.Outcome{{Event: "Audience Synced", Properties: map[string]any{"audience": "vip", "op": op, "destination": "audience_webhook"}}}
			if !reflect.DeepEqual(res[0].Events, wantOutcome) {
				t.Errorf("events = %+v, want %+v", res[0].Events, wantOutcome)
			}
			reqs := rcv.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			checkRequest(t, reqs[0], "vip/p_1/"+op+"/1")
			want := `{"id":"vip/p_1/` + op + `/1","type":"audience","profile_id":"p_1","audience":"vip","op":"` + op + `","identifiers":{"email_sha256":["` + annHash + `","` + bobHash + `"],"phone_sha256":["` + phoneHash + `"]},"sent_at":"2025-11-20T10:35:00Z"}`
			if reqs[0].body != want {
				t.Errorf("body:\n got %s\nwant %s", reqs[0].body, want)
			}
			if strings.Contains(reqs[0].body, "example.com") || strings.Contains(reqs[0].body, "600111222") {
				t.Errorf("raw identifier in body: %s", reqs[0].body)
			}
		})
	}
}

func TestDeliverAudienceNoIdentifiers(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	d := newDest(t, webhook.Config{Name: "audience_webhook:vip", URL: rcv.srv.URL}, nil)
	m := &channels.Message{Key: "k", Destination: "audience_webhook:vip", ProfileID: "p_2", Payload: json.RawMessage(`{"op":"remove"}`)}
	if res := d.Deliver(context.Background(), []*channels.Message{m}); res[0].Err != nil {
		t.Fatalf("Deliver: %v", res[0].Err)
	}
	// The audience comes from the destination name; both lists are there, empty.
	want := `{"id":"k","type":"audience","profile_id":"p_2","audience":"vip","op":"remove","identifiers":{"email_sha256":[],"phone_sha256":[]},"sent_at":"2025-11-20T10:35:00Z"}`
	if got := rcv.requests()[0].body; got != want {
		t.Errorf("body:\n got %s\nwant %s", got, want)
	}
}

func TestAudienceConsent(t *testing.T) {
	noAds := &channels.Profile{ID: "p_1", Consent: map[string]bool{"ads": false, "email": true}}
	tests := []struct {
		name     string
		op       string
		person   *channels.Profile
		wantErr  error
		wantPost bool
	}{
		{"add with consent", "add", ana, nil, true},
		{"add without consent", "add", noAds, channels.ErrNoConsent, false},
		{"add with consent unknown", "add", &channels.Profile{ID: "p_1"}, channels.ErrNoConsent, false},
		{"remove without consent still goes", "remove", noAds, nil, true},
		{"remove of an erased person still goes", "remove", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, http.StatusOK)
			byID := map[string]*channels.Profile{}
			if tt.person != nil {
				byID["p_1"] = tt.person
			}
			d := newDest(t, webhook.Config{Name: "audience_webhook:vip", URL: rcv.srv.URL, AudienceConsent: "ads"}, people{byID: byID})
			res := d.Deliver(context.Background(), []*channels.Message{audienceMsg("k", tt.op)})
			err := res[0].Err
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && (!channels.IsPermanent(err) || res[0].Events != nil) {
				t.Errorf("err %v permanent=%v events=%v: want permanent, no events", err, channels.IsPermanent(err), res[0].Events)
			}
			if got := len(rcv.requests()) == 1; got != tt.wantPost {
				t.Errorf("posted = %v, want %v", got, tt.wantPost)
			}
		})
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		status    int
		delivered bool
		permanent bool
	}{
		{200, true, false},
		{201, true, false},
		{202, true, false},
		{204, true, false},
		{302, false, true},
		{400, false, true},
		{401, false, true},
		{403, false, true},
		{404, false, true},
		{410, false, true},
		{422, false, true},
		{408, false, false},
		{429, false, false},
		{500, false, false},
		{502, false, false},
		{503, false, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rcv := newReceiver(t, tt.status)
			d := newDest(t, webhook.Config{URL: rcv.srv.URL}, nil)
			res := d.Deliver(context.Background(), []*channels.Message{sendMsg("k")})
			err := res[0].Err
			if (err == nil) != tt.delivered || channels.IsPermanent(err) != tt.permanent {
				t.Fatalf("HTTP %d: err = %v (permanent %v), want delivered=%v permanent=%v", tt.status, err, channels.IsPermanent(err), tt.delivered, tt.permanent)
			}
			if !tt.delivered && res[0].Events != nil {
				t.Errorf("events on failure: %v", res[0].Events)
			}
			// A redirect is not followed.
			if n := len(rcv.requests()); n != 1 {
				t.Errorf("got %d requests, want 1", n)
			}
		})
	}
}

func TestNetworkErrorsAreRetried(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/hook?token=very-secret-token"
		srv.Close()
		d := newDest(t, webhook.Config{URL: url}, nil)
		err := d.Deliver(context.Background(), []*channels.Message{sendMsg("k")})[0].Err
		if err == nil || channels.IsPermanent(err) {
			t.Fatalf("err = %v, want retryable", err)
		}
		if strings.Contains(err.Error(), "very-secret-token") {
			t.Errorf("error shows the URL: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			// Answer only once the client has given up (or the test ends).
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) }) // runs before srv.Close
		d := newDest(t, webhook.Config{URL: srv.URL, Timeout: 50 * time.Millisecond}, nil)
		err := d.Deliver(context.Background(), []*channels.Message{sendMsg("k")})[0].Err
		if err == nil || channels.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want retryable deadline exceeded", err)
		}
	})
}

func TestRetryReusesKey(t *testing.T) {
	rcv := newReceiver(t, http.StatusServiceUnavailable)
	now := fixedNow
	d := newDest(t, webhook.Config{URL: rcv.srv.URL, Now: func() time.Time { return now }}, nil)
	m := sendMsg("cart_abandonment/3/i_9/reminder")
	if err := d.Deliver(context.Background(), []*channels.Message{m})[0].Err; err == nil || channels.IsPermanent(err) {
		t.Fatalf("first try: err = %v, want retryable", err)
	}
	rcv.mu.Lock()
	rcv.status = http.StatusOK
	rcv.mu.Unlock()
	now = fixedNow.Add(90 * time.Second)
	if err := d.Deliver(context.Background(), []*channels.Message{m})[0].Err; err != nil {
		t.Fatalf("retry: %v", err)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	a, b := reqs[0], reqs[1]
	if a.header.Get(webhook.HeaderKey) != b.header.Get(webhook.HeaderKey) || a.header.Get(webhook.HeaderKey) != m.Key {
		t.Errorf("keys %q, %q: want both %q", a.header.Get(webhook.HeaderKey), b.header.Get(webhook.HeaderKey), m.Key)
	}
	if b.header.Get(webhook.HeaderTimestamp) != "1763634990" || a.header.Get(webhook.HeaderSignature) == b.header.Get(webhook.HeaderSignature) {
		t.Errorf("retry timestamp %s signature %s: want a new stamp and signature", b.header.Get(webhook.HeaderTimestamp), b.header.Get(webhook.HeaderSignature))
	}
	var ba, bb webhook.Body
	_ = json.Unmarshal([]byte(a.body), &ba)
	_ = json.Unmarshal([]byte(b.body), &bb)
	if ba.ID != bb.ID || bb.SentAt.Sub(ba.SentAt) != 90*time.Second {
		t.Errorf("bodies: id %q/%q sent_at %s/%s", ba.ID, bb.ID, ba.SentAt, bb.SentAt)
	}
}

func TestBadMessagesArePermanent(t *testing.T) {
	tests := []struct {
		name    string
		msg     *channels.Message
		people  channels.Profiles
		wantErr string
		perm    bool
	}{
		{"send payload not JSON", &channels.Message{Key: "k", Destination: "webhook", ProfileID: "p_1", Payload: json.RawMessage(`nope`)}, nil, "decode send payload", true},
		{"send without template", &channels.Message{Key: "k", Destination: "webhook", ProfileID: "p_1", Payload: json.RawMessage(`{"data":{}}`)}, nil, "no template", true},
		{"audience payload not JSON", &channels.Message{Key: "k", Destination: "audience_webhook:vip", ProfileID: "p_1", Payload: json.RawMessage(`[`)}, nil, "decode audience payload", true},
		{"audience op unknown", &channels.Message{Key: "k", Destination: "audience_webhook:vip", ProfileID: "p_1", Payload: json.RawMessage(`{"op":"toggle"}`)}, nil, `op "toggle"`, true},
		{"profile erased", sendMsg("k"), people{byID: map[string]*channels.Profile{}}, "profile not found", true},
		{"profile look-up fails", sendMsg("k"), people{err: errors.New("store closed")}, "store closed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, http.StatusOK)
			d := newDest(t, webhook.Config{URL: rcv.srv.URL}, tt.people)
			err := d.Deliver(context.Background(), []*channels.Message{tt.msg})[0].Err
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || channels.IsPermanent(err) != tt.perm {
				t.Fatalf("err = %v, want %q permanent=%v", err, tt.wantErr, tt.perm)
			}
			if n := len(rcv.requests()); n != 0 {
				t.Errorf("posted %d requests, want none", n)
			}
		})
	}
}

func TestDeliverBatchInOrder(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get(webhook.HeaderKey))
		mu.Unlock()
		if r.Header.Get(webhook.HeaderKey) == "b" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	d := newDest(t, webhook.Config{URL: srv.URL}, nil)
	res := d.Deliver(context.Background(), []*channels.Message{sendMsg("a"), sendMsg("b"), sendMsg("c")})
	if len(res) != 3 || res[0].Err != nil || !channels.IsPermanent(res[1].Err) || res[2].Err != nil {
		t.Fatalf("results = %+v, want ok, permanent, ok", res)
	}
	if strings.Join(keys, ",") != "a,b,c" {
		t.Errorf("posted %v, want a,b,c", keys)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     webhook.Config
		people  channels.Profiles
		wantErr string
	}{
		{"defaults fill name and timeout", webhook.Config{URL: "https://hooks.example/x", Secret: secret}, nil, ""},
		{"audience name", webhook.Config{Name: "audience_webhook:vip", URL: "https://hooks.example/x", Secret: secret}, nil, ""},
		{"audience name without audience", webhook.Config{Name: "audience_webhook:", URL: "https://hooks.example/x", Secret: secret}, nil, "webhook.name"},
		{"other name", webhook.Config{Name: "meta:vip", URL: "https://hooks.example/x", Secret: secret}, nil, "webhook.name"},
		{"no url", webhook.Config{Secret: secret}, nil, "webhook.url"},
		{"relative url", webhook.Config{URL: "/hook", Secret: secret}, nil, "webhook.url"},
		{"ftp url", webhook.Config{URL: "ftp://hooks.example/x", Secret: secret}, nil, "webhook.url"},
		{"no secret", webhook.Config{URL: "https://hooks.example/x"}, nil, "webhook.secret"},
		{"negative timeout", webhook.Config{URL: "https://hooks.example/x", Secret: secret, Timeout: -time.Second}, nil, "webhook.timeout"},
		{"consent without profiles", webhook.Config{URL: "https://hooks.example/x", Secret: secret, AudienceConsent: "ads"}, nil, "webhook.audience_consent"},
		{"consent with profiles", webhook.Config{URL: "https://hooks.example/x", Secret: secret, AudienceConsent: "ads"}, people{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.cfg, tt.people)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Fatalf("New = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := webhook.DefaultConfig().Validate(); err == nil || !strings.HasPrefix(err.Error(), "webhook.url") {
		t.Errorf("DefaultConfig().Validate() = %v, want webhook.url required", err)
	}
	// A URL with a token is not repeated in the error.
	_, err := webhook.New(webhook.Config{URL: "ftp://hooks.example/x?token=abc", Secret: secret}, nil)
	if err == nil || strings.Contains(err.Error(), "abc") {
		t.Errorf("New = %v", err)
	}
}
