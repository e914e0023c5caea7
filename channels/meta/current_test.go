package meta_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cartera/channels"
	"cartera/channels/meta"
)

type people map[string]*channels.Profile

func (p people) Profile(_ context.Context, id string) (*channels.Profile, error) { return p[id], nil }

// TestDeliverMultiKeyAndVersion: the default version's path, the FN, LN
// and COUNTRY columns from the person's traits, normalized and hashed
// ("Mary-Ann" → "maryann", " ES " → "es"), EXTERN_ID the profile id's
// hash.
func TestDeliverMultiKeyAndVersion(t *testing.T) {
	f := &fakeMeta{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	d, err := meta.New(meta.Config{Name: "meta:vip", BaseURL: srv.URL, AudienceID: "123", AccessToken: "s3cr3t", HTTPClient: srv.Client(),
		Profiles: people{"p1": {ID: "p1", Traits: map[string]any{"first_name": " Mary-Ann ", "last_name": "Gómez", "country": " ES "}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := d.Deliver(context.Background(), []*channels.Message{msg("p1", "add", []string{"test@example.com"}, []string{"+1 650 555 1234"})})
	checkSynced(t, 0, r[0], "add")
	c := f.Calls()[0]
	if c.Path != "/v26.0/123/users" || c.Method != http.MethodPost || c.Auth != "Bearer s3cr3t" {
		t.Errorf("call %s %s %q", c.Method, c.Path, c.Auth)
	}
	want := wantBody(`["` + hTestEmail + `","` + hUSPhone + `","` + hexSHA("maryann") + `","` + hexSHA("gómez") + `","` + hexSHA("es") + `","` + hexSHA("p1") + `"]`)
	if got := payload(t, c.Body); got != want {
		t.Errorf("payload\n got %s\nwant %s", got, want)
	}
}

// TestDeliverSession: the requests of one operation share a session_id,
// count batch_seq from 1, flag the last one and announce the total; the
// same messages make the same session on a retry.
func TestDeliverSession(t *testing.T) {
	d, f, _ := setup(t, nil)
	var msgs []*channels.Message
	for i := 0; i < meta.MaxRows+1; i++ {
		msgs = append(msgs, msg(fmt.Sprint("p", i), "add", []string{fmt.Sprintf("u%d@example.com", i)}, nil))
	}
	msgs = append(msgs, msg("gone", "remove", []string{"gone@example.com"}, nil))
	d.Deliver(context.Background(), msgs)
	d.Deliver(context.Background(), msgs)
	type sess struct {
		ID       int64 `json:"session_id"`
		Seq      int   `json:"batch_seq"`
		Last     bool  `json:"last_batch_flag"`
		Estimate int   `json:"estimated_num_total"`
	}
	var got []sess
	for _, c := range f.Calls() {
		var b struct{ Session *sess }
		if err := json.Unmarshal([]byte(c.Body), &b); err != nil || b.Session == nil {
			t.Fatalf("body without session: %v", err)
		}
		got = append(got, *b.Session)
	}
	if len(got) != 6 {
		t.Fatalf("%d requests, want 6", len(got))
	}
	a1, a2, rm := got[0], got[1], got[2]
	if a1.ID == 0 || a1.ID != a2.ID || a1.Seq != 1 || a1.Last || a2.Seq != 2 || !a2.Last || a1.Estimate != meta.MaxRows+1 || a2.Estimate != meta.MaxRows+1 {
		t.Errorf("add sessions %+v %+v", a1, a2)
	}
	if rm.ID == a1.ID || rm.Seq != 1 || !rm.Last || rm.Estimate != 1 {
		t.Errorf("remove session %+v", rm)
	}
	if fmt.Sprint(got[:3]) != fmt.Sprint(got[3:]) {
		t.Errorf("a retry of the same batch has other sessions: %v then %v", got[:3], got[3:])
	}
}

// TestDeliverMetaErrors maps Graph API error bodies to retry or dead
// letter, with a message an operator can act on.
func TestDeliverMetaErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		permanent bool
		text      string
	}{
		{"expired token", 400, `{"error":{"message":"Error validating access token: Session has expired on Friday, 04-Dec-26 09:00:00 PST.","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbC"}}`, true, "access token is invalid or expired"},
		{"app rate limit", 400, `{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","code":4,"is_transient":true,"fbtrace_id":"x"}}`, false, "code 4"},
		{"user rate limit", 400, `{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"fbtrace_id":"x"}}`, false, "code 17"},
		{"calls within an hour", 400, `{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613}}`, false, "code 613"},
		{"permission", 403, `{"error":{"message":"(#200) Permissions error","type":"OAuthException","code":200}}`, true, "ads_management"},
		{"audience blocked", 400, `{"error":{"message":"Invalid parameter","code":100,"error_subcode":1713230,"error_user_title":"Audience Upload Blocked","error_user_msg":"Before updating user memberships, you must resolve integrity restrictions"}}`, true, "Audience Upload Blocked"},
		{"meta down", 503, `{"error":{"message":"Service temporarily unavailable","code":2,"is_transient":true}}`, false, "code 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := setup(t, func(call) (int, string) { return tc.status, tc.body })
			err := d.Deliver(context.Background(), []*channels.Message{msg("p1", "add", []string{"a@example.com"}, nil)})[0].Err
			if err == nil || channels.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %v, want permanent=%v with %q", err, tc.permanent, tc.text)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestVersionFromBaseURL(t *testing.T) {
	for _, tc := range []struct{ base, version, path, err string }{
		{"", "", "/v26.0/1/users", ""},
		{"/v21.0", "", "/v21.0/1/users", ""},
		{"", "v25.0", "/v25.0/1/users", ""},
		{"/v21.0", "v26.0", "", "give the version once"},
		{"", "26", "", "meta.version"},
	} {
		f := &fakeMeta{}
		srv := httptest.NewServer(f)
		d, err := meta.New(meta.Config{Name: "meta:vip", BaseURL: srv.URL + tc.base, Version: tc.version, AudienceID: "1", AccessToken: "t", HTTPClient: srv.Client()})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v", tc, err)
			}
			srv.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		d.Deliver(context.Background(), []*channels.Message{msg("p1", "remove", []string{"a@example.com"}, nil)})
		if p := f.Calls()[0].Path; p != tc.path {
			t.Errorf("%+v: path %s", tc, p)
		}
		srv.Close()
	}
	if !meta.Older("v21.0") || meta.Older("v26.0") || meta.Older("v27.0") {
		t.Error("Older")
	}
}

func conversion(order string, at time.Time) *channels.Message {
	p, _ := json.Marshal(channels.ConversionPayload{OrderID: order, Event: "Order Completed", Time: at, Value: 250, Currency: "eur",
		Emails: []string{" Ana@Example.com "}, Phones: []string{"+34 600 111 222"}, FirstName: "Ana", Country: "ES", ExternalID: "p1"})
	return &channels.Message{Key: "conversion/" + order, Destination: meta.ConversionsName, ProfileID: "p1", Payload: p}
}

// TestConversions checks the Conversions API request: path, bearer token,
// one Purchase with action_source physical_store, event_id the order id,
// event_time in UNIX seconds, hashed user_data and custom_data.
func TestConversions(t *testing.T) {
	f := &fakeMeta{respond: func(call) (int, string) { return 200, `{"events_received":1,"messages":[],"fbtrace_id":"Af1"}` }}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := meta.NewConversions(meta.ConversionsConfig{BaseURL: srv.URL, PixelID: "555", AccessToken: "capi-tok", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	r := c.Deliver(context.Background(), []*channels.Message{conversion("pos-1-2", at)})
	if r[0].Err != nil || r[0].Events[0].Event != "Conversion Sent" || r[0].Events[0].Properties["order_id"] != "pos-1-2" {
		t.Fatalf("result %+v", r[0])
	}
	cl := f.Calls()[0]
	if cl.Method != "POST" || cl.Path != "/v26.0/555/events" || cl.Auth != "Bearer capi-tok" || cl.ContentType != "application/json" {
		t.Errorf("call %+v", cl)
	}
	want := `{"data":[{"event_name":"Purchase","event_time":` + fmt.Sprint(at.Unix()) + `,"action_source":"physical_store","event_id":"pos-1-2",` +
		`"user_data":{"em":["` + hAnaEmail + `"],"ph":["` + hESPhone + `"],"fn":["` + hexSHA("ana") + `"],"country":["` + hexSHA("es") + `"],"external_id":["` + hexSHA("p1") + `"]},` +
		`"custom_data":{"value":250,"currency":"EUR","order_id":"pos-1-2"}}]}`
	if cl.Body != want {
		t.Errorf("body\n got %s\nwant %s", cl.Body, want)
	}

	// Errors: the same mapping as the users edge.
	f.respond = func(call) (int, string) {
		return 400, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"fbtrace_id":"x"}}`
	}
	if err := c.Deliver(context.Background(), []*channels.Message{conversion("o2", at)})[0].Err; !channels.IsPermanent(err) {
		t.Errorf("code 190: %v, want permanent", err)
	}
	f.respond = func(call) (int, string) { return 200, `{"events_received":0}` }
	if err := c.Deliver(context.Background(), []*channels.Message{conversion("o3", at)})[0].Err; err == nil || channels.IsPermanent(err) {
		t.Errorf("nothing received: %v, want a retry", err)
	}
}

// Every version before the default has its published expiration date.
func TestSunsetsUpToDefault(t *testing.T) {
	for n := 16; ; n++ {
		v := fmt.Sprintf("v%d.0", n)
		if !meta.Older(v) {
			break
		}
		if _, ok := meta.Sunsets[v]; !ok {
			t.Errorf("Sunsets has no date for %s", v)
		}
	}
}
