package google_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"

	"cartera/channels"
	"cartera/channels/google"
)

func hexSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// dmCall is one request the Data Manager stand-in received.
type dmCall struct {
	Method, Path, Query, Auth, ContentType, Accept string
	Body                                           string
}

// fakeDM stands in for datamanager.googleapis.com and for Google's token
// endpoint (/token), recording every request. Requests get ids req-1, …;
// respond, when set and returning ok, overrides the answer.
type fakeDM struct {
	mu       sync.Mutex
	calls    []dmCall
	tokens   []url.Values
	expires  int // expires_in of the tokens issued (default 3600)
	n        int
	respond  func(c dmCall) (int, string, bool)
	statuses []string // answers to requestStatus:retrieve, in order
}

func (f *fakeDM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	if r.URL.Path == "/token" {
		form, _ := url.ParseQuery(string(b))
		f.tokens = append(f.tokens, form)
		n, exp := len(f.tokens), f.expires
		f.mu.Unlock()
		if exp == 0 {
			exp = 3600
		}
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, exp)
		return
	}
	c := dmCall{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"), Body: string(b)}
	f.calls = append(f.calls, c)
	respond := f.respond
	status, body := 200, ""
	if strings.HasSuffix(c.Path, "requestStatus:retrieve") {
		body = `{"requestStatusPerDestination":[{"requestStatus":"SUCCESS"}]}`
		if len(f.statuses) > 0 {
			body, f.statuses = f.statuses[0], f.statuses[1:]
		}
	} else {
		f.n++
		body = fmt.Sprintf(`{"requestId":"req-%d"}`, f.n)
	}
	f.mu.Unlock()
	if respond != nil {
		if s, b, ok := respond(c); ok {
			status, body = s, b
		}
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeDM) Calls() []dmCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dmCall(nil), f.calls...)
}

func (f *fakeDM) Tokens() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.tokens...)
}

// people is a channels.Profiles of fixed consents; an id not in it is
// erased.
type people map[string]map[string]bool

func (p people) Profile(_ context.Context, id string) (*channels.Profile, error) {
	c, ok := p[id]
	if !ok {
		return nil, nil
	}
	return &channels.Profile{ID: id, Consent: c}, nil
}

func newDM(t *testing.T, change func(*google.DataManagerConfig), respond func(dmCall) (int, string, bool)) (*google.DataManager, *fakeDM) {
	t.Helper()
	f := &fakeDM{respond: respond}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	creds := google.Credentials{ClientID: "cid.apps.googleusercontent.com", ClientSecret: "csecret", RefreshToken: "1//refresh", TokenURL: srv.URL + "/token"}
	hc, err := creds.Client(srv.Client(), google.DataManagerScope)
	if err != nil {
		t.Fatal(err)
	}
	cfg := google.DataManagerConfig{
		Name: "google:vip", BaseURL: srv.URL + "/v1",
		Operating: google.Account{ID: "123-456-7890"}, Login: google.Account{ID: "111-222-3333"},
		UserListID: "987654321", HTTPClient: hc,
		Profiles: people{"ana": {"ads": true}, "bob": {"ads": true}, "cy": {}, "dee": {"ads": false}},
		Sleep:    func(context.Context, time.Duration) error { return nil },
	}
	if change != nil {
		change(&cfg)
	}
	d, err := google.NewDataManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, f
}

func dmMsg(profile, op string, emails, phones []string) *channels.Message {
	m := msg(profile, op, emails, phones)
	m.Destination = "google:vip"
	return m
}

// jsonEq compares two JSON documents, ignoring formatting.
func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want: %v", what, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

const dmDest = `{"loginAccount":{"accountId":"1112223333","accountType":"GOOGLE_ADS"},"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"}`

// TestDataManagerIngestAndRemove checks the wire format of both calls:
// URL, headers, destination, members with hex SHA-256 of the normalized
// email (gmail dots and all whitespace removed, lower case) and E.164
// phone, the consent from the person's ads consent, encoding HEX, and the
// OAuth refresh-token grant behind the bearer token.
func TestDataManagerIngestAndRemove(t *testing.T) {
	d, f := newDM(t, nil, nil)
	res := d.Deliver(context.Background(), []*channels.Message{
		dmMsg("ana", "add", []string{" Ana.Smith@GMail.com ", "ana @example.com"}, []string{"+34 600 111 222"}),
		dmMsg("bob", "remove", []string{"Bob@Example.com"}, nil),
		dmMsg("cy", "add", []string{"cy@example.com"}, nil), // never said: no consent block
	})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
	}
	calls := f.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2: %+v", len(calls), calls)
	}
	granted := `{"adUserData":"CONSENT_GRANTED","adPersonalization":"CONSENT_GRANTED"}`
	ingest, remove := calls[0], calls[1]
	if ingest.Method != "POST" || ingest.Path != "/v1/audienceMembers:ingest" || ingest.Auth != "Bearer tok-1" || ingest.ContentType != "application/json" {
		t.Errorf("ingest call = %+v", ingest)
	}
	jsonEq(t, "ingest body", ingest.Body, `{"destinations":[`+dmDest+`],"audienceMembers":[
		{"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("anasmith@gmail.com")+`"},{"emailAddress":"`+hexSHA("ana@example.com")+`"},{"phoneNumber":"`+hexSHA("+34600111222")+`"}]},"consent":`+granted+`},
		{"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("cy@example.com")+`"}]}}],
		"encoding":"HEX"}`)
	if remove.Method != "POST" || remove.Path != "/v1/audienceMembers:remove" || remove.Auth != "Bearer tok-1" {
		t.Errorf("remove call = %+v", remove)
	}
	jsonEq(t, "remove body", remove.Body, `{"destinations":[`+dmDest+`],"audienceMembers":[
		{"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("bob@example.com")+`"}]}}],"encoding":"HEX"}`)
	toks := f.Tokens()
	if len(toks) != 1 {
		t.Fatalf("%d token requests, want 1 (the token is reused until it nears expiry)", len(toks))
	}
	want := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"1//refresh"}, "client_id": {"cid.apps.googleusercontent.com"}, "client_secret": {"csecret"}}
	for k, v := range want {
		if toks[0].Get(k) != v[0] {
			t.Errorf("token request %s = %q, want %q", k, toks[0].Get(k), v[0])
		}
	}
	if got := res[0].Events[0].Properties["request_id"]; got != "req-1" {
		t.Errorf("request_id = %v, want req-1", got)
	}
	if got := res[1].Events[0].Properties; got["op"] != "remove" || got["request_id"] != "req-2" {
		t.Errorf("remove outcome = %v", got)
	}
}

// TestDataManagerTokenRefreshedBeforeExpiry: a token that expires within
// oauth2's 10 s margin is renewed before the next call.
func TestDataManagerTokenRefreshedBeforeExpiry(t *testing.T) {
	d, f := newDM(t, nil, nil)
	f.expires = 5
	for i := 0; i < 2; i++ {
		if r := d.Deliver(context.Background(), []*channels.Message{dmMsg("bob", "remove", []string{"bob@example.com"}, nil)}); r[0].Err != nil {
			t.Fatal(r[0].Err)
		}
	}
	calls := f.Calls()
	if len(f.Tokens()) != 2 || calls[0].Auth != "Bearer tok-1" || calls[1].Auth != "Bearer tok-2" {
		t.Errorf("tokens %d, auth %q then %q; want a new token for the second call", len(f.Tokens()), calls[0].Auth, calls[1].Auth)
	}
}

// TestDataManagerServiceAccount: the JWT bearer grant, signed with the
// key file's key, for the datamanager scope, at the configured token URL.
func TestDataManagerServiceAccount(t *testing.T) {
	f := &fakeDM{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": "cartera@proj.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "private_key_id": "kid1", "token_uri": srv.URL + "/token"})
	hc, err := google.Credentials{ServiceAccountJSON: keyFile}.Client(srv.Client(), google.DataManagerScope)
	if err != nil {
		t.Fatal(err)
	}
	d, err := google.NewDataManager(google.DataManagerConfig{Name: "google:vip", BaseURL: srv.URL + "/v1", Operating: google.Account{ID: "1234567890"}, UserListID: "1", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Deliver(context.Background(), []*channels.Message{dmMsg("bob", "remove", []string{"bob@example.com"}, nil)}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	toks := f.Tokens()
	if len(toks) != 1 || toks[0].Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Fatalf("token requests = %v", toks)
	}
	claims := gjwt.MapClaims{}
	tok, err := gjwt.ParseWithClaims(toks[0].Get("assertion"), claims, func(*gjwt.Token) (any, error) { return &key.PublicKey, nil }, gjwt.WithValidMethods([]string{"RS256"}))
	if err != nil || !tok.Valid {
		t.Fatalf("assertion: %v", err)
	}
	if claims["iss"] != "cartera@proj.iam.gserviceaccount.com" || claims["scope"] != google.DataManagerScope || claims["aud"] != srv.URL+"/token" || tok.Header["kid"] != "kid1" {
		t.Errorf("assertion claims = %v, header %v", claims, tok.Header)
	}
	if f.Calls()[0].Auth != "Bearer tok-1" {
		t.Errorf("auth = %q", f.Calls()[0].Auth)
	}
}

// TestDataManagerErrors maps Google's error bodies to retry or dead letter.
func TestDataManagerErrors(t *testing.T) {
	violation := `{"error":{"code":400,"message":"There was a problem with the request.","status":"INVALID_ARGUMENT","details":[
		{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_ARGUMENT","domain":"datamanager.googleapis.com"},
		{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"audience_members[1].user_data.user_identifiers[0]","description":"The SHA256 encoded value is malformed.","reason":"INVALID_SHA256_FORMAT"}]},
		{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"t-9"}]}}`
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		permanent []bool // per message (ana, bob)
		text      string
	}{
		{"bad member", 400, violation, []bool{false, true}, "INVALID_SHA256_FORMAT"},
		{"bad destination", 400, `{"error":{"code":400,"message":"This Destination is not valid.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_DESTINATION"}]}}`, []bool{true, true}, "reason INVALID_DESTINATION"},
		{"bad token", 401, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`, []bool{true, true}, "UNAUTHENTICATED"},
		{"no access", 403, `{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}`, []bool{true, true}, "PERMISSION_DENIED"},
		{"quota", 429, `{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}`, []bool{false, false}, "RESOURCE_EXHAUSTED"},
		{"unavailable", 503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`, []bool{false, false}, "UNAVAILABLE"},
		{"proxy page", 502, `<html>bad gateway</html>`, []bool{false, false}, "HTTP 502"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDM(t, nil, func(dmCall) (int, string, bool) { return tc.status, tc.body, true })
			res := d.Deliver(context.Background(), []*channels.Message{
				dmMsg("ana", "add", []string{"ana@example.com"}, nil), dmMsg("bob", "add", []string{"bob@example.com"}, nil)})
			for i, r := range res {
				if r.Err == nil {
					t.Fatalf("result %d delivered", i)
				}
				if channels.IsPermanent(r.Err) != tc.permanent[i] {
					t.Errorf("result %d permanent = %v, want %v: %v", i, channels.IsPermanent(r.Err), tc.permanent[i], r.Err)
				}
				if (tc.permanent[i] || tc.name != "bad member") && !strings.Contains(r.Err.Error(), tc.text) {
					t.Errorf("result %d: %q lacks %q", i, r.Err, tc.text)
				}
			}
		})
	}
}

// TestDataManagerBatching: 10,001 people go in two ingest calls of
// 10,000 and 1 members; a person with 12 identifiers is two members.
func TestDataManagerBatching(t *testing.T) {
	d, f := newDM(t, func(c *google.DataManagerConfig) { c.Profiles = nil }, nil)
	var msgs []*channels.Message
	for i := 0; i < 10001; i++ {
		msgs = append(msgs, dmMsg(fmt.Sprint("p", i), "add", []string{fmt.Sprintf("p%d@example.com", i)}, nil))
	}
	res := d.Deliver(context.Background(), msgs)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
	}
	var sizes []int
	for _, c := range f.Calls() {
		var body struct{ AudienceMembers []json.RawMessage }
		_ = json.Unmarshal([]byte(c.Body), &body)
		sizes = append(sizes, len(body.AudienceMembers))
	}
	if fmt.Sprint(sizes) != "[10000 1]" {
		t.Errorf("members per request = %v, want [10000 1]", sizes)
	}

	d, f = newDM(t, nil, nil)
	var emails []string
	for i := 0; i < 12; i++ {
		emails = append(emails, fmt.Sprintf("ana%d@example.com", i))
	}
	if r := d.Deliver(context.Background(), []*channels.Message{dmMsg("ana", "add", emails, nil)}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	var body struct {
		AudienceMembers []struct {
			UserData struct{ UserIdentifiers []json.RawMessage }
			Consent  map[string]string
		}
	}
	_ = json.Unmarshal([]byte(f.Calls()[0].Body), &body)
	if len(body.AudienceMembers) != 2 || len(body.AudienceMembers[0].UserData.UserIdentifiers) != 10 || len(body.AudienceMembers[1].UserData.UserIdentifiers) != 2 || body.AudienceMembers[1].Consent["adUserData"] != "CONSENT_GRANTED" {
		t.Errorf("members = %+v, want 10 + 2 identifiers, both with consent", body.AudienceMembers)
	}
}

// TestDataManagerConsent: an add for a person who said no to ads since,
// or who was erased, is held back without a request.
func TestDataManagerConsent(t *testing.T) {
	d, f := newDM(t, nil, nil)
	res := d.Deliver(context.Background(), []*channels.Message{
		dmMsg("dee", "add", []string{"dee@example.com"}, nil),
		dmMsg("gone", "add", []string{"gone@example.com"}, nil),
	})
	for i, r := range res {
		if !errors.Is(r.Err, channels.ErrNoConsent) {
			t.Errorf("result %d: %v, want no consent", i, r.Err)
		}
	}
	if len(f.Calls()) != 0 {
		t.Errorf("calls = %v, want none", f.Calls())
	}
}

// TestDataManagerRequestStatus polls requestStatus:retrieve with the
// request id until the request is no longer PROCESSING; FAILED is a dead
// letter naming the error reasons.
func TestDataManagerRequestStatus(t *testing.T) {
	processing := `{"requestStatusPerDestination":[{"requestStatus":"PROCESSING"}]}`
	for _, tc := range []struct {
		name     string
		statuses []string
		calls    int
		err      string
	}{
		{"success", []string{processing, `{"requestStatusPerDestination":[{"requestStatus":"SUCCESS","audienceMembersIngestionStatus":{"userDataIngestionStatus":{"recordCount":"1","userIdentifierCount":"1"}}}]}`}, 3, ""},
		{"failed", []string{`{"requestStatusPerDestination":[{"requestStatus":"FAILED","errorInfo":{"errorCounts":[{"recordCount":"1","reason":"PROCESSING_ERROR_REASON_NO_CONSENT"}]}}]}`}, 2, "PROCESSING_ERROR_REASON_NO_CONSENT×1"},
		{"still processing", []string{processing, processing, processing}, 4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, f := newDM(t, func(c *google.DataManagerConfig) { c.StatusPolls = 3 }, nil)
			f.statuses = tc.statuses
			r := d.Deliver(context.Background(), []*channels.Message{dmMsg("ana", "add", []string{"ana@example.com"}, nil)})[0]
			calls := f.Calls()
			if len(calls) != tc.calls {
				t.Fatalf("%d calls, want %d", len(calls), tc.calls)
			}
			if c := calls[1]; c.Method != "GET" || c.Path != "/v1/requestStatus:retrieve" || c.Query != "requestId=req-1" || c.Auth != "Bearer tok-1" {
				t.Errorf("status call = %+v", c)
			}
			switch {
			case tc.err == "" && r.Err != nil:
				t.Errorf("err = %v", r.Err)
			case tc.err != "" && (!channels.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), tc.err)):
				t.Errorf("err = %v, want permanent with %q", r.Err, tc.err)
			}
		})
	}
}

func TestDataManagerEmail(t *testing.T) {
	for in, want := range map[string]string{
		" John.Doe@GMail.com ":     "johndoe@gmail.com",
		"j.o.e@googlemail.com":     "joe@googlemail.com",
		"Ana.Smith@example.com":    "ana.smith@example.com",
		"ana smith @ example.com ": "anasmith@example.com",
		"not an address":           "",
		"@example.com":             "",
	} {
		if got := google.DataManagerEmail(in); got != want {
			t.Errorf("DataManagerEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewDataManager(t *testing.T) {
	hc := &http.Client{}
	ok := google.DataManagerConfig{Name: "google:vip", Operating: google.Account{ID: "123-456-7890"}, UserListID: "42", HTTPClient: hc}
	for _, tc := range []struct {
		change func(*google.DataManagerConfig)
		err    string
	}{
		{func(*google.DataManagerConfig) {}, ""},
		{func(c *google.DataManagerConfig) { c.Name = "vip" }, "google.name"},
		{func(c *google.DataManagerConfig) { c.Operating.ID = "" }, "google.operating_account_id"},
		{func(c *google.DataManagerConfig) { c.Operating.Type = "YOUTUBE" }, "google.operating_account_type"},
		{func(c *google.DataManagerConfig) { c.Login.ID = "abc" }, "google.login_account_id"},
		{func(c *google.DataManagerConfig) { c.UserListID = "customers/1/userLists/2" }, "google.user_list_id"},
		{func(c *google.DataManagerConfig) { c.HTTPClient = nil }, "credentials required"},
		{func(c *google.DataManagerConfig) { c.BaseURL = "ftp://x" }, "google.data_manager_url"},
	} {
		cfg := ok
		tc.change(&cfg)
		_, err := google.NewDataManager(cfg)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("err = %v, want %q", err, tc.err)
		}
	}
}
