package google_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"cartera/channels"
	"cartera/channels/google"
)

// Known SHA-256 vectors (echo -n VALUE | sha256sum).
const (
	hTestEmail  = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b" // test@example.com
	hJohnDoe    = "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef" // john.doe@gmail.com
	hAnaEmail   = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11" // ana@example.com
	hBobEmail   = "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018" // bob@example.com
	hUSPhone    = "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0" // +16505551234
	hUKPhone    = "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d" // +442071838750
	hESPhone    = "cb24629d1dbeb6ee24e7c20610896274e8102e67aa6efc2f3a1be2893c38008b" // +34600111222
	cid         = "1234567890"
	userList    = "customers/1234567890/userLists/42"
	jobsPath    = "/v18/customers/1234567890/offlineUserDataJobs"
	createPath  = jobsPath + ":create"
	createBody  = `{"job":{"type":"CUSTOMER_MATCH_USER_LIST","customerMatchUserListMetadata":{"userList":"customers/1234567890/userLists/42"}}}`
	consentBody = `{"job":{"type":"CUSTOMER_MATCH_USER_LIST","customerMatchUserListMetadata":{"userList":"customers/1234567890/userLists/42","consent":{"adUserData":"GRANTED","adPersonalization":"GRANTED"}}}}`
)

// call is one request the fake Google received.
type call struct {
	Method, Path, Query                string
	Auth, DevToken, Login, ContentType string
	HasLogin                           bool
	Body                               string
}

// fakeAds stands in for googleads.googleapis.com: jobs get ids 1, 2, …;
// respond, when set and returning a status, overrides the answer.
type fakeAds struct {
	mu      sync.Mutex
	calls   []call
	jobs    int
	respond func(c call) (int, string, bool)
}

func (f *fakeAds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c := call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), DevToken: r.Header.Get("developer-token"),
		Login: r.Header.Get("login-customer-id"), ContentType: r.Header.Get("Content-Type"), Body: string(b)}
	_, c.HasLogin = r.Header["Login-Customer-Id"]
	f.mu.Lock()
	f.calls = append(f.calls, c)
	respond := f.respond
	status, body := 200, `{}`
	switch {
	case strings.HasSuffix(c.Path, ":create"):
		f.jobs++
		body = fmt.Sprintf(`{"resourceName":"customers/%s/offlineUserDataJobs/%d"}`, cid, f.jobs)
	case strings.HasSuffix(c.Path, ":run"):
		body = `{"name":"customers/1234567890/operations/op1"}`
	}
	f.mu.Unlock()
	if respond != nil {
		if s, b, ok := respond(c); ok {
			status, body = s, b
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeAds) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func setup(t *testing.T, change func(*google.Config), respond func(call) (int, string, bool)) (*google.Destination, *fakeAds, *httptest.Server) {
	t.Helper()
	f := &fakeAds{respond: respond}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := google.Config{
		Name:           "google:vip",
		BaseURL:        srv.URL + "/v18",
		CustomerID:     "123-456-7890",
		UserList:       userList,
		DeveloperToken: "devtok",
		AccessToken:    "s3cr3t",
		HTTPClient:     srv.Client(),
	}
	if change != nil {
		change(&cfg)
	}
	d, err := google.New(cfg)
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
	return &channels.Message{Key: profile + "/" + op, Destination: "google:vip", ProfileID: profile, Payload: p}
}

// ops renders addOperations' body: each op is "create" or "remove"
// followed by identifiers "e:<hash>" or "p:<hash>".
func ops(kind string, people ...[]string) string {
	var os []string
	for _, ids := range people {
		var us []string
		for _, id := range ids {
			field := map[byte]string{'e': "hashedEmail", 'p': "hashedPhoneNumber"}[id[0]]
			us = append(us, `{"`+field+`":"`+id[2:]+`"}`)
		}
		os = append(os, `{"`+kind+`":{"userIdentifiers":[`+strings.Join(us, ",")+`]}}`)
	}
	return `{"operations":[` + strings.Join(os, ",") + `],"enablePartialFailure":true}`
}

func checkSynced(t *testing.T, i int, r channels.Result, op, job string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("result %d: err %v, want delivered", i, r.Err)
	}
	want := channels.Outcome{Event: "Audience Synced", Properties: map[string]any{
		"audience": "vip", "destination": "google", "op": op, "job": "customers/1234567890/offlineUserDataJobs/" + job}}
	if len(r.Events) != 1 || fmt.Sprint(r.Events[0]) != fmt.Sprint(want) {
		t.Fatalf("result %d: events %+v, want [%+v]", i, r.Events, want)
	}
}

func checkCalls(t *testing.T, got []call, want [][2]string) {
	t.Helper()
	if len(got) != len(want) {
		var paths []string
		for _, c := range got {
			paths = append(paths, c.Path)
		}
		t.Fatalf("got %d requests %v, want %d", len(got), paths, len(want))
	}
	for i, w := range want {
		if got[i].Method != http.MethodPost || got[i].Path != w[0] || got[i].Query != "" {
			t.Errorf("request %d: %s %s?%s, want POST %s", i, got[i].Method, got[i].Path, got[i].Query, w[0])
		}
		if w[1] != "" && got[i].Body != w[1] {
			t.Errorf("request %d body\n got %s\nwant %s", i, got[i].Body, w[1])
		}
	}
}

func TestDeliverAddJob(t *testing.T) {
	d, f, _ := setup(t, func(c *google.Config) {
		c.LoginCustomerID = "111-222-3333"
		c.ConsentGranted = true
	}, nil)
	msgs := []*channels.Message{
		msg("p1", "add", []string{" Test@Example.COM "}, []string{"+1 (650) 555-1234"}),
		// Gmail dots stay; the repeated address is dropped.
		msg("p2", "add", []string{"John.Doe@GMail.com", "john.doe@gmail.com "}, nil),
		msg("p3", "add", nil, []string{"0044 20 7183 8750"}),
	}
	res := d.Deliver(context.Background(), msgs)
	calls := f.Calls()
	checkCalls(t, calls, [][2]string{
		{createPath, consentBody},
		{jobsPath + "/1:addOperations", ops("create", []string{"e:" + hTestEmail, "p:" + hUSPhone}, []string{"e:" + hJohnDoe}, []string{"p:" + hUKPhone})},
		{jobsPath + "/1:run", `{}`},
	})
	for i, c := range calls {
		if c.Auth != "Bearer s3cr3t" || c.DevToken != "devtok" || c.Login != "1112223333" || c.ContentType != "application/json" {
			t.Errorf("request %d headers: auth %q, developer-token %q, login-customer-id %q, content type %q",
				i, c.Auth, c.DevToken, c.Login, c.ContentType)
		}
	}
	if len(res) != len(msgs) {
		t.Fatalf("got %d results for %d messages", len(res), len(msgs))
	}
	for i, r := range res {
		checkSynced(t, i, r, "add", "1")
	}
}

func TestDeliverAddThenRemove(t *testing.T) {
	d, f, _ := setup(t, nil, nil)
	msgs := []*channels.Message{
		msg("p1", "add", []string{"test@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil),
		msg("p1", "remove", []string{"test@example.com"}, nil), // overrides message 0
		msg("p3", "remove", []string{"bob@example.com"}, []string{"+34600111222"}),
		msg("p2", "remove", []string{"ana@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil), // p2 ends in the list
	}
	res := d.Deliver(context.Background(), msgs)
	calls := f.Calls()
	// Adds and removes never share a job; without ConsentGranted no job
	// carries consent.
	checkCalls(t, calls, [][2]string{
		{createPath, createBody},
		{jobsPath + "/1:addOperations", ops("create", []string{"e:" + hAnaEmail})},
		{jobsPath + "/1:run", `{}`},
		{createPath, createBody},
		{jobsPath + "/2:addOperations", ops("remove", []string{"e:" + hTestEmail}, []string{"e:" + hBobEmail, "p:" + hESPhone})},
		{jobsPath + "/2:run", `{}`},
	})
	for i, c := range calls {
		if c.HasLogin {
			t.Errorf("request %d sent login-customer-id %q without a login customer", i, c.Login)
		}
	}
	for _, i := range []int{0, 1, 4} {
		if res[i].Err != nil || len(res[i].Events) != 0 {
			t.Errorf("result %d: %+v, want delivered with no events", i, res[i])
		}
	}
	checkSynced(t, 2, res[2], "remove", "2")
	checkSynced(t, 3, res[3], "remove", "2")
	checkSynced(t, 5, res[5], "add", "1")
}

func TestDeliverRemoveConsentNotSent(t *testing.T) {
	d, f, _ := setup(t, func(c *google.Config) { c.ConsentGranted = true }, nil)
	res := d.Deliver(context.Background(), []*channels.Message{msg("p1", "remove", []string{"test@example.com"}, nil)})
	checkCalls(t, f.Calls(), [][2]string{
		{createPath, createBody}, // "For remove requests, consent is not needed."
		{jobsPath + "/1:addOperations", ops("remove", []string{"e:" + hTestEmail})},
		{jobsPath + "/1:run", `{}`},
	})
	checkSynced(t, 0, res[0], "remove", "1")
}

func TestDeliverPartialFailure(t *testing.T) {
	// p2's 21 addresses are two operations (20 + 1): indexes 1 and 2.
	var many []string
	for i := range 21 {
		many = append(many, fmt.Sprintf("ana%d@example.com", i))
	}
	partial := `{"partialFailureError":{"code":3,"message":"Multiple errors in details.","details":[
		{"@type":"type.googleapis.com/google.ads.googleads.v18.errors.GoogleAdsFailure","errors":[
			{"errorCode":{"offlineUserDataJobError":"INVALID_SHA256_FORMAT"},"message":"The SHA256 encoded value is malformed.",
			 "trigger":{"stringValue":"xyz"},
			 "location":{"fieldPathElements":[{"fieldName":"operations","index":2},{"fieldName":"create"},{"fieldName":"user_identifiers","index":0}]}},
			{"errorCode":{"requestError":"UNKNOWN"},"message":"not about an operation"}],
		 "requestId":"r1"}]}}`
	d, f, _ := setup(t, nil, func(c call) (int, string, bool) {
		if strings.HasSuffix(c.Path, ":addOperations") {
			return 200, partial, true
		}
		return 0, "", false
	})
	res := d.Deliver(context.Background(), []*channels.Message{
		msg("p1", "add", []string{"test@example.com"}, nil),
		msg("p2", "add", many, nil),
		msg("p3", "add", nil, []string{"+34600111222"}),
	})
	calls := f.Calls()
	checkCalls(t, calls, [][2]string{{createPath, ""}, {jobsPath + "/1:addOperations", ""}, {jobsPath + "/1:run", `{}`}})
	var body struct {
		Operations []struct {
			Create struct {
				UserIdentifiers []map[string]string `json:"userIdentifiers"`
			} `json:"create"`
		} `json:"operations"`
	}
	if err := json.Unmarshal([]byte(calls[1].Body), &body); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, o := range body.Operations {
		sizes = append(sizes, len(o.Create.UserIdentifiers))
	}
	if fmt.Sprint(sizes) != "[1 20 1 1]" {
		t.Fatalf("identifiers per operation %v, want [1 20 1 1]", sizes)
	}
	checkSynced(t, 0, res[0], "add", "1")
	checkSynced(t, 2, res[2], "add", "1")
	err := res[1].Err
	if !channels.IsPermanent(err) || !strings.Contains(err.Error(), "offlineUserDataJobError=INVALID_SHA256_FORMAT: The SHA256 encoded value is malformed.") {
		t.Fatalf("result 1: %v, want a permanent INVALID_SHA256_FORMAT error", err)
	}
	if strings.Contains(err.Error(), "xyz") {
		t.Fatalf("error %q carries the trigger value", err)
	}
}

func TestDeliverErrors(t *testing.T) {
	adsError := func(code int, status, kind, value string) string {
		return fmt.Sprintf(`{"error":{"code":%d,"message":"Request failed.","status":%q,"details":[
			{"@type":"type.googleapis.com/google.ads.googleads.v18.errors.GoogleAdsFailure",
			 "errors":[{"errorCode":{%q:%q},"message":"Something about it."}],"requestId":"req-9"}]}}`, code, status, kind, value)
	}
	tests := []struct {
		name      string
		step      string // path suffix that fails
		status    int
		body      string
		calls     int // requests made
		permanent bool
		inErr     string
	}{
		{"create unavailable", ":create", 503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`, 1, false, "create job: HTTP 503 UNAVAILABLE"},
		{"create proxy page", ":create", 502, `<html>bad gateway</html>`, 1, false, "create job: HTTP 502"},
		{"create unauthenticated", ":create", 401, adsError(401, "UNAUTHENTICATED", "authenticationError", "OAUTH_TOKEN_EXPIRED"), 1, true, "authenticationError=OAUTH_TOKEN_EXPIRED"},
		{"create bad list", ":create", 400, adsError(400, "INVALID_ARGUMENT", "offlineUserDataJobError", "INVALID_USER_LIST_ID"), 1, true, "(request id req-9)"},
		{"create odd answer", ":create", 200, `{"resourceName":"../../elsewhere"}`, 1, false, "unexpected resource name"},
		{"add quota", ":addOperations", 429, adsError(429, "RESOURCE_EXHAUSTED", "quotaError", "RESOURCE_EXHAUSTED"), 2, false, "add operations: HTTP 429 RESOURCE_EXHAUSTED"},
		{"add invalid", ":addOperations", 400, adsError(400, "INVALID_ARGUMENT", "offlineUserDataJobError", "CONFLICTING_OPERATION"), 2, true, "offlineUserDataJobError=CONFLICTING_OPERATION"},
		{"run internal", ":run", 500, adsError(500, "INTERNAL", "internalError", "INTERNAL_ERROR"), 3, false, "run job: HTTP 500 INTERNAL"},
		{"run aborted", ":run", 409, adsError(409, "ABORTED", "databaseError", "CONCURRENT_MODIFICATION"), 3, false, "databaseError=CONCURRENT_MODIFICATION"},
		{"run forbidden", ":run", 403, adsError(403, "PERMISSION_DENIED", "authorizationError", "USER_PERMISSION_DENIED"), 3, true, "HTTP 403 PERMISSION_DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, f, _ := setup(t, nil, func(c call) (int, string, bool) {
				if strings.HasSuffix(c.Path, tt.step) {
					return tt.status, tt.body, true
				}
				return 0, "", false
			})
			res := d.Deliver(context.Background(), []*channels.Message{
				msg("p1", "add", []string{"test@example.com"}, nil),
				msg("p2", "add", []string{"ana@example.com"}, []string{"+16505551234"}),
			})
			if n := len(f.Calls()); n != tt.calls {
				t.Fatalf("made %d requests, want %d", n, tt.calls)
			}
			for i, r := range res {
				if r.Err == nil {
					t.Fatalf("result %d delivered, want an error", i)
				}
				if channels.IsPermanent(r.Err) != tt.permanent {
					t.Errorf("result %d: %v: permanent %v, want %v", i, r.Err, !tt.permanent, tt.permanent)
				}
				if !strings.Contains(r.Err.Error(), tt.inErr) {
					t.Errorf("result %d: %q does not contain %q", i, r.Err, tt.inErr)
				}
				if s := r.Err.Error(); strings.Contains(s, "example.com") || strings.Contains(s, "s3cr3t") || strings.Contains(s, "devtok") {
					t.Errorf("result %d: error %q leaks an identifier or a token", i, s)
				}
				if len(r.Events) != 0 {
					t.Errorf("result %d: events %+v on failure", i, r.Events)
				}
			}
		})
	}
}

func TestDeliverOneJobFails(t *testing.T) {
	d, _, _ := setup(t, nil, func(c call) (int, string, bool) {
		if strings.HasSuffix(c.Path, "/2:run") { // the remove job
			return 503, ``, true
		}
		return 0, "", false
	})
	res := d.Deliver(context.Background(), []*channels.Message{
		msg("p1", "remove", []string{"test@example.com"}, nil),
		msg("p2", "add", []string{"ana@example.com"}, nil),
	})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Errorf("remove: %v, want a retryable error", res[0].Err)
	}
	checkSynced(t, 1, res[1], "add", "1")
}

func TestDeliverSplitsAtMaxIdentifiers(t *testing.T) {
	d, f, _ := setup(t, nil, nil)
	// 20 identifiers a person (one full operation each): 5,000 people
	// fill the first call, the next one goes in a second.
	per := google.MaxIdentifiersPerOperation
	n := google.MaxIdentifiersPerRequest/per + 1
	msgs := make([]*channels.Message, n)
	for i := range msgs {
		emails := make([]string, per)
		for j := range emails {
			emails[j] = fmt.Sprintf("user%d.%d@example.com", i, j)
		}
		msgs[i] = msg(fmt.Sprintf("p%d", i), "add", emails, nil)
	}
	res := d.Deliver(context.Background(), msgs)
	calls := f.Calls()
	checkCalls(t, calls, [][2]string{
		{createPath, createBody},
		{jobsPath + "/1:addOperations", ""},
		{jobsPath + "/1:addOperations", ""},
		{jobsPath + "/1:run", `{}`},
	})
	var gotOps, gotIDs []int
	for _, c := range calls[1:3] {
		gotOps = append(gotOps, strings.Count(c.Body, `{"create":`))
		gotIDs = append(gotIDs, strings.Count(c.Body, `"hashedEmail":`))
	}
	if want := []int{n - 1, 1}; fmt.Sprint(gotOps) != fmt.Sprint(want) {
		t.Errorf("operations per call %v, want %v", gotOps, want)
	}
	if want := []int{google.MaxIdentifiersPerRequest, per}; fmt.Sprint(gotIDs) != fmt.Sprint(want) {
		t.Errorf("identifiers per call %v, want %v", gotIDs, want)
	}
	for i, r := range res {
		if r.Err != nil || len(r.Events) != 1 {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
}

func TestDeliverBadMessages(t *testing.T) {
	d, f, _ := setup(t, nil, nil)
	res := d.Deliver(context.Background(), []*channels.Message{
		msg("p1", "add", []string{"not-an-address", " "}, []string{"+", "n/a"}),
		msg("p2", "replace", []string{"ana@example.com"}, nil),
		{ProfileID: "p3", Payload: json.RawMessage(`[]`)},
		msg("p4", "remove", nil, nil),
	})
	for i, want := range []string{"no identifiers", `op "replace"`, "decode audience payload", "no identifiers"} {
		if !channels.IsPermanent(res[i].Err) || !strings.Contains(res[i].Err.Error(), want) {
			t.Errorf("result %d: %v, want a permanent error with %q", i, res[i].Err, want)
		}
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("made %d requests, want none", n)
	}
}

func TestDeliverNetworkErrorIsRetryable(t *testing.T) {
	d, _, srv := setup(t, nil, nil)
	srv.Close()
	res := d.Deliver(context.Background(), []*channels.Message{msg("p1", "add", []string{"test@example.com"}, nil)})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Fatalf("got %v, want a retryable error", res[0].Err)
	}
}

func TestDeliverCancelledIsRetryable(t *testing.T) {
	d, _, _ := setup(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := d.Deliver(ctx, []*channels.Message{msg("p1", "add", []string{"test@example.com"}, nil)})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Fatalf("got %v, want a retryable error", res[0].Err)
	}
}

func TestDeliverClientAuthorizes(t *testing.T) {
	d, f, _ := setup(t, func(c *google.Config) { c.AccessToken = "" }, nil)
	m := &channels.Message{ProfileID: "p1", Payload: json.RawMessage(`{"op":"add","emails":["test@example.com"]}`)}
	res := d.Deliver(context.Background(), []*channels.Message{m})
	checkSynced(t, 0, res[0], "add", "1") // audience "vip" from google:vip
	for i, c := range f.Calls() {
		if c.Auth != "" || c.DevToken != "devtok" {
			t.Errorf("request %d: Authorization %q, developer-token %q; want none and devtok", i, c.Auth, c.DevToken)
		}
	}
}

func TestNew(t *testing.T) {
	good := google.Config{Name: "google:vip", CustomerID: "1234567890", UserList: userList, DeveloperToken: "dev", AccessToken: "tok"}
	tests := []struct {
		name   string
		change func(*google.Config)
		err    string
	}{
		{"defaults", func(*google.Config) {}, ""},
		{"dashed ids", func(c *google.Config) { c.CustomerID, c.LoginCustomerID = "123-456-7890", "111-222-3333" }, ""},
		{"client instead of token", func(c *google.Config) { c.AccessToken, c.HTTPClient = "", http.DefaultClient }, ""},
		{"no name", func(c *google.Config) { c.Name = "" }, "google.name"},
		{"name without audience", func(c *google.Config) { c.Name = "google:" }, "google.name"},
		{"bad base", func(c *google.Config) { c.BaseURL = "ftp://googleads.googleapis.com" }, "google.base_url"},
		{"no customer", func(c *google.Config) { c.CustomerID = "" }, "google.customer_id"},
		{"customer with letters", func(c *google.Config) { c.CustomerID = "12ab" }, "google.customer_id"},
		{"list id only", func(c *google.Config) { c.UserList = "42" }, "google.user_list"},
		{"list path escape", func(c *google.Config) { c.UserList = "customers/1/userLists/2/../3" }, "google.user_list"},
		{"no developer token", func(c *google.Config) { c.DeveloperToken = "" }, "google.developer_token"},
		{"no token, no client", func(c *google.Config) { c.AccessToken = "" }, "google.access_token"},
		{"bad login", func(c *google.Config) { c.LoginCustomerID = "mcc" }, "google.login_customer_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			d, err := google.New(c)
			if tt.err == "" {
				if err != nil || d.Name() != "google:vip" {
					t.Fatalf("New: %v, %v", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("New: %v, want an error naming %s", err, tt.err)
			}
		})
	}
	if c := google.DefaultConfig(); c.BaseURL != "https://googleads.googleapis.com/v23" {
		t.Fatalf("default base %q", c.BaseURL)
	}
}

// Destination must satisfy the outbox's interface.
var _ channels.Destination = (*google.Destination)(nil)

var (
	_ channels.Destination = (*google.DataManager)(nil)
	_ channels.Destination = (*google.Conversions)(nil)
)

// The legacy path's default version has a sunset date (published or
// projected) for the start-up warning.
func TestDefaultVersionHasSunset(t *testing.T) {
	v := google.DefaultBaseURL[strings.LastIndex(google.DefaultBaseURL, "/")+1:]
	if _, ok := google.AdsAPISunsets[v]; !ok {
		t.Errorf("AdsAPISunsets has no date for the default %s: add Google's (see sunset.go)", v)
	}
}
