package meta_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"cartera/channels"
	"cartera/channels/meta"
)

// Known SHA-256 vectors (echo -n VALUE | sha256sum).
const (
	hTestEmail = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b" // test@example.com
	hAnaEmail  = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11" // ana@example.com
	hBobEmail  = "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018" // bob@example.com
	hBobWork   = "5a5f39157c36c765d0d29d8d0e794de2ce9c3b3bec9209a3d5ea2daed6f306fd" // bob@work.example
	hUSPhone   = "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599" // 16505551234
	hUKPhone   = "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417" // 442071838750
	hESPhone   = "67f01a2b0e2c34277df586b5cc6e35a5f232494e64dc33b5f75f80bf568914f1" // 34600111222
)

// call is one request the fake Meta received.
type call struct {
	Method, Path, Query, Auth, ContentType string
	Body                                   string
}

// fakeMeta stands in for graph.facebook.com: it records each request and
// answers with respond (200 {"num_received":…} when nil).
type fakeMeta struct {
	mu      sync.Mutex
	calls   []call
	respond func(c call) (int, string)
}

func (f *fakeMeta) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c := call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
		ContentType: r.Header.Get("Content-Type"), Body: string(b)}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	respond := f.respond
	f.mu.Unlock()
	status, body := 200, `{"audience_id":"123","num_received":1,"num_invalid_entries":0,"invalid_entry_samples":{}}`
	if respond != nil {
		status, body = respond(c)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeMeta) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func setup(t *testing.T, respond func(call) (int, string)) (*meta.Destination, *fakeMeta, *httptest.Server) {
	t.Helper()
	f := &fakeMeta{respond: respond}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	d, err := meta.New(meta.Config{
		Name:        "meta:vip",
		BaseURL:     srv.URL + "/v21.0",
		AudienceID:  "123",
		AccessToken: "s3cr3t",
		HTTPClient:  srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, f, srv
}

func msg(profile, op string, emails, phones []string) *channels.Message {
	p, err := json.Marshal(channels.AudiencePayload{Audience: "vip", Op: op, Emails: emails, Phones: phones})
	if err != nil {
		panic(err)
	}
	return &channels.Message{Key: profile + "/" + op, Destination: "meta:vip", ProfileID: profile, Payload: p}
}

// wantBody is the payload of a users request of rows.
func wantBody(rows ...string) string {
	return `{"schema":["EMAIL","PHONE","FN","LN","COUNTRY","EXTERN_ID"],"data":[` + strings.Join(rows, ",") + `]}`
}

// row is a row of a person without names or country: their email and
// phone hashes and the hash of their profile id (EXTERN_ID).
func row(email, phone, profile string) string {
	ext := ""
	if profile != "" {
		ext = hexSHA(profile)
	}
	return `["` + email + `","` + phone + `","","","","` + ext + `"]`
}

func hexSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// payload is the payload of a users request body.
func payload(t *testing.T, body string) string {
	t.Helper()
	var b struct{ Payload json.RawMessage }
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return string(b.Payload)
}

func checkSynced(t *testing.T, i int, r channels.Result, op string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("result %d: err %v, want delivered", i, r.Err)
	}
	want := channels.Outcome{Event: "Audience Synced", Properties: map[string]any{"audience": "vip", "destination": "meta", "op": op}}
	if len(r.Events) != 1 || fmt.Sprint(r.Events[0]) != fmt.Sprint(want) {
		t.Fatalf("result %d: events %+v, want [%+v]", i, r.Events, want)
	}
}

func TestDeliverAddsOneRequest(t *testing.T) {
	d, f, _ := setup(t, nil)
	msgs := []*channels.Message{
		msg("p1", "add", []string{" Test@Example.COM "}, []string{"+1 (650) 555-1234"}),
		// Two addresses, one number: two rows; the repeated address is
		// dropped after normalizing.
		msg("p2", "add", []string{"ana@example.com", "bob@example.com", "ANA@example.com"}, []string{"0044 20 7183 8750"}),
		msg("p3", "add", nil, []string{"+34 600 111 222"}),
	}
	res := d.Deliver(context.Background(), msgs)
	calls := f.Calls()
	if len(calls) != 1 {
		t.Fatalf("got %d requests, want 1: %+v", len(calls), calls)
	}
	c := calls[0]
	if c.Method != http.MethodPost || c.Path != "/v21.0/123/users" {
		t.Errorf("request %s %s, want POST /v21.0/123/users", c.Method, c.Path)
	}
	if c.Auth != "Bearer s3cr3t" || c.ContentType != "application/json" || c.Query != "" {
		t.Errorf("auth %q, content type %q, query %q; want Bearer s3cr3t, application/json, no query", c.Auth, c.ContentType, c.Query)
	}
	want := wantBody(row(hTestEmail, hUSPhone, "p1"), row(hAnaEmail, hUKPhone, "p2"), row(hBobEmail, "", "p2"), row("", hESPhone, "p3"))
	if got := payload(t, c.Body); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	if len(res) != len(msgs) {
		t.Fatalf("got %d results for %d messages", len(res), len(msgs))
	}
	for i, r := range res {
		checkSynced(t, i, r, "add")
	}
}

func TestDeliverAddThenRemove(t *testing.T) {
	d, f, _ := setup(t, nil)
	msgs := []*channels.Message{
		msg("p1", "add", []string{"test@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil),
		msg("p1", "remove", []string{"test@example.com"}, nil), // overrides message 0
		msg("p3", "remove", []string{"bob@example.com"}, []string{"+34600111222"}),
		msg("", "add", []string{"bob@work.example"}, nil), // no profile: never merged
		msg("p2", "remove", []string{"ana@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil), // p2 ends in the audience
	}
	res := d.Deliver(context.Background(), msgs)
	calls := f.Calls()
	if len(calls) != 2 {
		t.Fatalf("got %d requests, want 2: %+v", len(calls), calls)
	}
	if calls[0].Method != http.MethodPost || calls[1].Method != http.MethodDelete {
		t.Fatalf("methods %s, %s; want POST then DELETE", calls[0].Method, calls[1].Method)
	}
	for _, c := range calls {
		if c.Path != "/v21.0/123/users" || c.Auth != "Bearer s3cr3t" {
			t.Errorf("%s %s auth %q", c.Method, c.Path, c.Auth)
		}
	}
	if want := wantBody(row(hBobWork, "", ""), row(hAnaEmail, "", "p2")); payload(t, calls[0].Body) != want {
		t.Errorf("POST body\n got %s\nwant %s", calls[0].Body, want)
	}
	if want := wantBody(row(hTestEmail, "", "p1"), row(hBobEmail, hESPhone, "p3")); payload(t, calls[1].Body) != want {
		t.Errorf("DELETE body\n got %s\nwant %s", calls[1].Body, want)
	}
	// Overridden messages are delivered without an outcome.
	for _, i := range []int{0, 1, 5} {
		if res[i].Err != nil || len(res[i].Events) != 0 {
			t.Errorf("result %d: %+v, want delivered with no events", i, res[i])
		}
	}
	checkSynced(t, 2, res[2], "remove")
	checkSynced(t, 3, res[3], "remove")
	checkSynced(t, 4, res[4], "add")
	checkSynced(t, 6, res[6], "add")
}

func TestDeliverSplitsAtMaxRows(t *testing.T) {
	tests := []struct {
		name string
		// rows per person, all adds
		people func() []int
		want   []int // rows per request
	}{
		{"exactly the limit", func() []int { return ones(meta.MaxRows) }, []int{meta.MaxRows}},
		{"one over", func() []int { return ones(meta.MaxRows + 1) }, []int{meta.MaxRows, 1}},
		{"a person is never split", func() []int {
			p := ones(meta.MaxRows - 1)
			return append(p, 2, 1) // 9,999 + 2 would be 10,001
		}, []int{meta.MaxRows - 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, f, _ := setup(t, nil)
			var msgs []*channels.Message
			for i, n := range tt.people() {
				var emails []string
				for j := range n {
					emails = append(emails, fmt.Sprintf("user%d.%d@example.com", i, j))
				}
				msgs = append(msgs, msg(fmt.Sprintf("p%d", i), "add", emails, nil))
			}
			res := d.Deliver(context.Background(), msgs)
			var got []int
			for _, c := range f.Calls() {
				var b struct {
					Payload struct {
						Schema []string   `json:"schema"`
						Data   [][]string `json:"data"`
					} `json:"payload"`
				}
				if err := json.Unmarshal([]byte(c.Body), &b); err != nil {
					t.Fatal(err)
				}
				if c.Method != http.MethodPost || len(b.Payload.Schema) != 6 {
					t.Fatalf("%s with schema %v", c.Method, b.Payload.Schema)
				}
				got = append(got, len(b.Payload.Data))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("rows per request %v, want %v", got, tt.want)
			}
			for i, r := range res {
				if r.Err != nil || len(r.Events) != 1 {
					t.Fatalf("result %d: %+v", i, r)
				}
			}
		})
	}
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func TestDeliverErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		permanent bool
		inErr     string
	}{
		{"server error", 500, `{"error":{"message":"An unknown error occurred","code":1,"is_transient":true}}`, false, "HTTP 500"},
		{"bad gateway page", 502, `<html>bad gateway</html>`, false, "HTTP 502"},
		{"too many requests", 429, ``, false, "HTTP 429"},
		{"throttled as 400", 400, `{"error":{"message":"User request limit reached","type":"OAuthException","code":17}}`, false, "code 17"},
		{"custom audience rate limit", 400, `{"error":{"message":"too many calls","code":80003}}`, false, "code 80003"},
		{"transient flag", 400, `{"error":{"message":"try again","code":99,"is_transient":true}}`, false, "code 99"},
		{"invalid parameter", 400, `{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_subcode":1713230,"fbtrace_id":"AbC"}}`, true, "Invalid parameter (code 100, subcode 1713230, fbtrace_id AbC)"},
		{"expired token", 401, `{"error":{"message":"Error validating access token","type":"OAuthException","code":190}}`, true, "code 190"},
		{"no permission", 403, `{"error":{"message":"Permissions error","code":200}}`, true, "HTTP 403"},
		{"not found", 404, ``, true, "HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, f, _ := setup(t, func(call) (int, string) { return tt.status, tt.body })
			msgs := []*channels.Message{
				msg("p1", "add", []string{"test@example.com"}, nil),
				msg("p2", "add", []string{"ana@example.com"}, nil),
				msg("p3", "remove", []string{"bob@example.com"}, nil),
			}
			res := d.Deliver(context.Background(), msgs)
			if n := len(f.Calls()); n != 2 {
				t.Fatalf("got %d requests, want 2", n)
			}
			for i, r := range res {
				if r.Err == nil {
					t.Fatalf("result %d delivered, want an error", i)
				}
				if channels.IsPermanent(r.Err) != tt.permanent {
					t.Errorf("result %d: %v permanent=%v, want %v", i, r.Err, !tt.permanent, tt.permanent)
				}
				if !strings.Contains(r.Err.Error(), tt.inErr) {
					t.Errorf("result %d: %q does not contain %q", i, r.Err, tt.inErr)
				}
				if strings.Contains(r.Err.Error(), "example.com") || strings.Contains(r.Err.Error(), "s3cr3t") {
					t.Errorf("result %d: error %q leaks an identifier or the token", i, r.Err)
				}
				if len(r.Events) != 0 {
					t.Errorf("result %d: events %+v on failure", i, r.Events)
				}
			}
		})
	}
}

func TestDeliverOneRequestFails(t *testing.T) {
	d, _, _ := setup(t, func(c call) (int, string) {
		if c.Method == http.MethodDelete {
			return 503, ``
		}
		return 200, `{}`
	})
	res := d.Deliver(context.Background(), []*channels.Message{
		msg("p1", "remove", []string{"test@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil),
	})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Errorf("remove: %v, want a retryable error", res[0].Err)
	}
	checkSynced(t, 1, res[1], "add")
}

func TestDeliverNetworkErrorIsRetryable(t *testing.T) {
	d, _, srv := setup(t, nil)
	srv.Close()
	res := d.Deliver(context.Background(), []*channels.Message{msg("p1", "add", []string{"test@example.com"}, nil)})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Fatalf("got %v, want a retryable error", res[0].Err)
	}
}

func TestDeliverCancelledIsRetryable(t *testing.T) {
	d, _, _ := setup(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := d.Deliver(ctx, []*channels.Message{msg("p1", "add", []string{"test@example.com"}, nil)})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Fatalf("got %v, want a retryable error", res[0].Err)
	}
}

func TestDeliverBadMessages(t *testing.T) {
	d, f, _ := setup(t, nil)
	bad := &channels.Message{ProfileID: "p9", Payload: json.RawMessage(`{"op":`)}
	res := d.Deliver(context.Background(), []*channels.Message{
		msg("p1", "add", []string{"not-an-address", "   "}, []string{"+", ""}), // no identifiers
		msg("p2", "upsert", []string{"ana@example.com"}, nil),
		bad,
		msg("p3", "add", nil, nil),
		msg("p4", "add", []string{"test@example.com"}, nil),
	})
	for i, want := range []string{"no identifiers", `op "upsert"`, "decode audience payload", "no identifiers"} {
		if !channels.IsPermanent(res[i].Err) || !strings.Contains(res[i].Err.Error(), want) {
			t.Errorf("result %d: %v, want a permanent error with %q", i, res[i].Err, want)
		}
	}
	checkSynced(t, 4, res[4], "add")
	calls := f.Calls()
	if len(calls) != 1 || payload(t, calls[0].Body) != wantBody(row(hTestEmail, "", "p4")) {
		t.Fatalf("requests %+v, want one POST with test@example.com only", calls)
	}
}

func TestDeliverNothingToSend(t *testing.T) {
	d, f, _ := setup(t, nil)
	res := d.Deliver(context.Background(), []*channels.Message{msg("p1", "remove", nil, []string{"n/a"})})
	if !channels.IsPermanent(res[0].Err) {
		t.Fatalf("got %v, want permanent", res[0].Err)
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("made %d requests, want none", n)
	}
}

func TestDeliverAudienceFromName(t *testing.T) {
	d, _, _ := setup(t, nil)
	m := &channels.Message{ProfileID: "p1", Payload: json.RawMessage(`{"op":"add","emails":["test@example.com"]}`)}
	res := d.Deliver(context.Background(), []*channels.Message{m})
	checkSynced(t, 0, res[0], "add") // "vip" from meta:vip
}

func TestNew(t *testing.T) {
	good := meta.Config{Name: "meta:vip", AudienceID: "123", AccessToken: "tok"}
	tests := []struct {
		name   string
		change func(*meta.Config)
		err    string
	}{
		{"defaults", func(*meta.Config) {}, ""},
		{"no name", func(c *meta.Config) { c.Name = "" }, "meta.name"},
		{"name without audience", func(c *meta.Config) { c.Name = "meta:" }, "meta.name"},
		{"other destination", func(c *meta.Config) { c.Name = "google:vip" }, "meta.name"},
		{"relative base", func(c *meta.Config) { c.BaseURL = "graph.facebook.com/v21.0" }, "meta.base_url"},
		{"base with query", func(c *meta.Config) { c.BaseURL = "https://graph.facebook.com/v21.0?access_token=x" }, "meta.base_url"},
		{"no audience", func(c *meta.Config) { c.AudienceID = "" }, "meta.audience_id"},
		{"audience path", func(c *meta.Config) { c.AudienceID = "123/../me" }, "meta.audience_id"},
		{"no token", func(c *meta.Config) { c.AccessToken = "" }, "meta.access_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			d, err := meta.New(c)
			if tt.err == "" {
				if err != nil || d.Name() != "meta:vip" {
					t.Fatalf("New: %v, %v", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("New: %v, want an error naming %s", err, tt.err)
			}
		})
	}
	if c := meta.DefaultConfig(); c.BaseURL != "https://graph.facebook.com" || c.Version != "v26.0" {
		t.Fatalf("default base %q", c.BaseURL)
	}
}

// Destination must satisfy the outbox's interface.
var _ channels.Destination = (*meta.Destination)(nil)
