package sms_test

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
	"cartera/channels/sms"
)

const (
	accountSID = "AC0123456789abcdef0123456789abcdef"
	authToken  = "tok_secret"
	from       = "+15005550006"
	phone      = "+34600111222"
)

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

func ana() *channels.Profile {
	return &channels.Profile{
		ID:      "p_1",
		Emails:  []string{"ann@example.com"},
		Phones:  []string{"600111222", phone},
		Traits:  map[string]any{"first_name": "Ana"},
		Consent: map[string]bool{"sms": true},
		Locale:  "es",
	}
}

type request struct {
	method, path string
	header       http.Header
	body         string
}

// twilio is a fake Messages API answering status and body.
type twilio struct {
	mu     sync.Mutex
	got    []request
	status int
	answer string
	srv    *httptest.Server
}

func newTwilio(t *testing.T, status int, answer string) *twilio {
	t.Helper()
	tw := &twilio{status: status, answer: answer}
	tw.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		tw.mu.Lock()
		tw.got = append(tw.got, request{r.Method, r.URL.RequestURI(), r.Header.Clone(), string(b)})
		tw.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(tw.status)
		_, _ = io.WriteString(w, tw.answer)
	}))
	t.Cleanup(tw.srv.Close)
	return tw
}

func (tw *twilio) requests() []request {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]request(nil), tw.got...)
}

func newDest(t *testing.T, baseURL string, p channels.Profiles) *sms.Destination {
	t.Helper()
	cfg := sms.Config{BaseURL: baseURL, AccountSID: accountSID, AuthToken: authToken, From: from}
	d, err := sms.New(cfg, loadTemplates(t), p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func msg(key, template string) *channels.Message {
	return &channels.Message{
		Key:         key,
		Destination: "sms",
		ProfileID:   "p_1",
		Journey:     "cart_abandonment",
		Step:        "reminder",
		Payload:     json.RawMessage(`{"template":"` + template + `","data":{"cart_total":42.5,"url":"https://shop.example/c/1?a=1&b=2"}}`),
	}
}

const created = `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","to":"+34600111222","body":"..."}`

func TestDeliverSent(t *testing.T) {
	tw := newTwilio(t, http.StatusCreated, created)
	d := newDest(t, tw.srv.URL, people{byID: map[string]*channels.Profile{"p_1": ana()}})
	if d.Name() != "sms" {
		t.Errorf("Name = %q, want sms", d.Name())
	}

	res := d.Deliver(context.Background(), []*channels.Message{msg("cart_abandonment/3/i_9/reminder", "cart_reminder")})

	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("results = %+v, want one delivered", res)
	}
	want := []channels.Outcome{{Event: "SMS Sent", Properties: map[string]any{"sid": "SM0123456789abcdef0123456789abcdef", "journey": "cart_abandonment", "step": "reminder"}}}
	if !reflect.DeepEqual(res[0].Events, want) {
		t.Errorf("events = %+v, want %+v", res[0].Events, want)
	}
	reqs := tw.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/2010-04-01/Accounts/"+accountSID+"/Messages.json" {
		t.Errorf("request = %s %s", r.method, r.path)
	}
	req := &http.Request{Header: r.header}
	if u, p, ok := req.BasicAuth(); !ok || u != accountSID || p != authToken {
		t.Errorf("basic auth = %q, %q, %v", u, p, ok)
	}
	for h, v := range map[string]string{
		"Content-Type":    "application/x-www-form-urlencoded",
		"Accept":          "application/json",
		"Idempotency-Key": "cart_abandonment/3/i_9/reminder",
	} {
		if got := r.header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	// Spanish template, first E.164 number (the national one is skipped).
	wantBody := "Body=Hola+Ana%2C+tu+carrito+de+42.5+EUR+te+espera%3A+https%3A%2F%2Fshop.example%2Fc%2F1%3Fa%3D1%26b%3D2&From=%2B15005550006&To=%2B34600111222"
	if r.body != wantBody {
		t.Errorf("body:\n got %s\nwant %s", r.body, wantBody)
	}
}

func TestDeliverAnswers(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		answer    string
		permanent bool
		is        error
		wantErr   string
		events    []channels.Outcome
	}{
		{"unsubscribed", 400, `{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"https://www.twilio.com/docs/errors/21610","status":400}`,
			true, sms.ErrUnsubscribed, "permanent: sms: twilio HTTP 400, error 21610",
			[]channels.Outcome{{Event: "SMS Unsubscribed", Properties: map[string]any{"code": 21610, "journey": "cart_abandonment", "step": "reminder"}, Consent: map[string]bool{"sms": false}}}},
		{"invalid number", 400, `{"code":21211,"message":"The 'To' number +34600111222 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}`,
			true, sms.ErrInvalidNumber, "permanent: sms: twilio HTTP 400, error 21211",
			[]channels.Outcome{{Event: "SMS Failed", Properties: map[string]any{"code": 21211, "reason": "invalid_number", "journey": "cart_abandonment", "step": "reminder"}}}},
		{"other refusal", 400, `{"code":21606,"message":"The From phone number is not a valid, SMS-capable number","status":400}`,
			true, nil, "permanent: sms: twilio HTTP 400, error 21606", nil},
		{"bad credentials", 401, `{"code":20003,"message":"Authenticate","status":401}`,
			true, nil, "permanent: sms: twilio HTTP 401, error 20003", nil},
		{"not found, no JSON", 404, `<html>nope</html>`, true, nil, "permanent: sms: twilio HTTP 404", nil},
		{"rate limited", 429, `{"code":20429,"message":"Too Many Requests","status":429}`, false, nil, "sms: twilio HTTP 429, error 20429", nil},
		{"request timeout", 408, ``, false, nil, "sms: twilio HTTP 408", nil},
		{"server error", 500, `{"code":20500,"message":"Internal Server Error","status":500}`, false, nil, "sms: twilio HTTP 500, error 20500", nil},
		{"unavailable", 503, ``, false, nil, "sms: twilio HTTP 503", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := newTwilio(t, tt.status, tt.answer)
			d := newDest(t, tw.srv.URL, people{byID: map[string]*channels.Profile{"p_1": ana()}})
			res := d.Deliver(context.Background(), []*channels.Message{msg("k", "cart_reminder")})[0]
			if res.Err == nil || res.Err.Error() != tt.wantErr || channels.IsPermanent(res.Err) != tt.permanent {
				t.Fatalf("err = %v (permanent %v), want %q permanent=%v", res.Err, channels.IsPermanent(res.Err), tt.wantErr, tt.permanent)
			}
			if tt.is != nil && !errors.Is(res.Err, tt.is) {
				t.Errorf("err %v is not %v", res.Err, tt.is)
			}
			var apiErr *sms.APIError
			if !errors.As(res.Err, &apiErr) || apiErr.Status != tt.status {
				t.Errorf("err %v: want *APIError with status %d", res.Err, tt.status)
			}
			if !reflect.DeepEqual(res.Events, tt.events) {
				t.Errorf("events = %+v, want %+v", res.Events, tt.events)
			}
			if strings.Contains(res.Err.Error(), "600111222") {
				t.Errorf("error shows the phone: %v", res.Err)
			}
		})
	}
}

func TestAcceptedButUnreadableIsSent(t *testing.T) {
	tw := newTwilio(t, http.StatusCreated, `not json`)
	d := newDest(t, tw.srv.URL, people{byID: map[string]*channels.Profile{"p_1": ana()}})
	res := d.Deliver(context.Background(), []*channels.Message{msg("k", "cart_reminder")})[0]
	if res.Err != nil || len(res.Events) != 1 || res.Events[0].Event != "SMS Sent" || res.Events[0].Properties["sid"] != "" {
		t.Fatalf("result = %+v, want sent with no sid", res)
	}
}

func TestHeldBackBeforeTheCall(t *testing.T) {
	noConsent := ana()
	noConsent.Consent = map[string]bool{"sms": false, "email": true}
	unknownConsent := ana()
	unknownConsent.Consent = nil
	noPhone := ana()
	noPhone.Phones = nil
	nationalOnly := ana()
	nationalOnly.Phones = []string{"600111222", "+0600111222"}
	english := ana()
	english.Locale = "en-GB"
	tests := []struct {
		name     string
		person   *channels.Profile
		lookErr  error
		template string
		payload  string
		is       error
		wantErr  string
		perm     bool
	}{
		{"consent withdrawn", noConsent, nil, "cart_reminder", "", channels.ErrNoConsent, "permanent: no consent", true},
		{"consent never given", unknownConsent, nil, "cart_reminder", "", channels.ErrNoConsent, "permanent: no consent", true},
		{"no phone", noPhone, nil, "cart_reminder", "", sms.ErrNoPhone, "permanent: sms: no E.164 phone number", true},
		{"no E.164 phone", nationalOnly, nil, "cart_reminder", "", sms.ErrNoPhone, "permanent: sms: no E.164 phone number", true},
		{"unknown template", ana(), nil, "nope", "", sms.ErrUnknownTemplate, `permanent: sms: render nope: unknown sms template "nope" (locale "es")`, true},
		{"missing data", ana(), nil, "shipped", "", nil, "permanent: sms: render shipped: testdata/templates/shipped.sms.txt:1:14: at <.order_id>: map has no entry for key \"order_id\"", true},
		{"payload not JSON", ana(), nil, "", `{`, nil, "permanent: sms: decode payload: unexpected end of JSON input", true},
		{"payload without template", ana(), nil, "", `{"data":{}}`, nil, "permanent: sms: payload has no template", true},
		{"profile erased", nil, nil, "cart_reminder", "", nil, "permanent: sms: profile not found", true},
		{"profile look-up fails", nil, errors.New("store closed"), "cart_reminder", "", nil, "sms: look up profile: store closed", false},
		{"too long", english, nil, "cart_reminder", `{"template":"cart_reminder","data":{"cart_total":1,"url":"` + strings.Repeat("é", 1600) + `"}}`, nil,
			"permanent: sms: template cart_reminder renders 1643 characters, more than 1600", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := newTwilio(t, http.StatusCreated, created)
			byID := map[string]*channels.Profile{}
			if tt.person != nil {
				byID["p_1"] = tt.person
			}
			d := newDest(t, tw.srv.URL, people{byID: byID, err: tt.lookErr})
			m := msg("k", tt.template)
			if tt.payload != "" {
				m.Payload = json.RawMessage(tt.payload)
			}
			res := d.Deliver(context.Background(), []*channels.Message{m})[0]
			if res.Err == nil || res.Err.Error() != tt.wantErr || channels.IsPermanent(res.Err) != tt.perm {
				t.Fatalf("err = %v (permanent %v), want %q permanent=%v", res.Err, channels.IsPermanent(res.Err), tt.wantErr, tt.perm)
			}
			if tt.is != nil && !errors.Is(res.Err, tt.is) {
				t.Errorf("err %v is not %v", res.Err, tt.is)
			}
			if res.Events != nil {
				t.Errorf("events = %v, want none", res.Events)
			}
			if n := len(tw.requests()); n != 0 {
				t.Errorf("made %d API calls, want none", n)
			}
		})
	}
}

func TestNetworkErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		d := newDest(t, base, people{byID: map[string]*channels.Profile{"p_1": ana()}})
		err := d.Deliver(context.Background(), []*channels.Message{msg("k", "cart_reminder")})[0].Err
		if err == nil || channels.IsPermanent(err) || strings.Contains(err.Error(), accountSID) {
			t.Fatalf("err = %v, want retryable without the URL", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		cfg := sms.Config{BaseURL: srv.URL, AccountSID: accountSID, AuthToken: authToken, From: from, Timeout: 50 * time.Millisecond}
		d, err := sms.New(cfg, loadTemplates(t), people{byID: map[string]*channels.Profile{"p_1": ana()}})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Deliver(context.Background(), []*channels.Message{msg("k", "cart_reminder")})[0].Err
		if err == nil || channels.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want retryable deadline exceeded", err)
		}
	})
}

func TestDeliverBatchInOrder(t *testing.T) {
	tw := newTwilio(t, http.StatusCreated, created)
	bob := ana()
	bob.ID, bob.Phones, bob.Locale = "p_2", []string{"+447700900123"}, "en-GB"
	d := newDest(t, tw.srv.URL, people{byID: map[string]*channels.Profile{"p_1": ana(), "p_2": bob}})
	m2 := msg("b", "cart_reminder")
	m2.ProfileID = "p_2"
	m3 := msg("c", "nope")
	res := d.Deliver(context.Background(), []*channels.Message{msg("a", "cart_reminder"), m2, m3})
	if len(res) != 3 || res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, sms.ErrUnknownTemplate) {
		t.Fatalf("results = %+v, want sent, sent, unknown template", res)
	}
	reqs := tw.requests()
	if len(reqs) != 2 || reqs[0].header.Get("Idempotency-Key") != "a" || reqs[1].header.Get("Idempotency-Key") != "b" ||
		!strings.HasSuffix(reqs[1].body, "To=%2B447700900123") || !strings.HasPrefix(reqs[1].body, "Body=Hiya+Ana") {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestConfig(t *testing.T) {
	ok := sms.Config{AccountSID: accountSID, AuthToken: authToken, From: from}
	with := func(f func(*sms.Config)) sms.Config { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		cfg     sms.Config
		wantErr string
	}{
		{"defaults fill name, base URL and timeout", ok, ""},
		{"base URL with trailing slash", with(func(c *sms.Config) { c.BaseURL = "https://sms.example/" }), ""},
		{"relative base URL", with(func(c *sms.Config) { c.BaseURL = "api.twilio.com" }), "sms.base_url"},
		{"no account", with(func(c *sms.Config) { c.AccountSID = "" }), "sms.account_sid"},
		{"no token", with(func(c *sms.Config) { c.AuthToken = "" }), "sms.auth_token"},
		{"no sender", with(func(c *sms.Config) { c.From = "" }), "sms.from"},
		{"negative timeout", with(func(c *sms.Config) { c.Timeout = -time.Second }), "sms.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sms.New(tt.cfg, &sms.TextTemplates{}, people{})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Fatalf("New = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := sms.New(ok, nil, people{}); err == nil {
		t.Error("New without a Renderer: want an error")
	}
	if _, err := sms.New(ok, &sms.TextTemplates{}, nil); err == nil {
		t.Error("New without Profiles: want an error")
	}
	def := sms.DefaultConfig()
	if def.Name != "sms" || def.BaseURL != "https://api.twilio.com" || def.Validate() == nil {
		t.Errorf("DefaultConfig = %+v: want sms on Twilio, invalid until the account is set", def)
	}
}

func TestTrailingSlashBaseURL(t *testing.T) {
	tw := newTwilio(t, http.StatusCreated, created)
	cfg := sms.Config{BaseURL: tw.srv.URL + "/", AccountSID: accountSID, AuthToken: authToken, From: from}
	d, err := sms.New(cfg, loadTemplates(t), people{byID: map[string]*channels.Profile{"p_1": ana()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), []*channels.Message{msg("k", "cart_reminder")})[0].Err; err != nil {
		t.Fatal(err)
	}
	if p := tw.requests()[0].path; p != "/2010-04-01/Accounts/"+accountSID+"/Messages.json" {
		t.Errorf("path = %s", p)
	}
}
