package google_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/channels/google"
	"cartera/internal/clocktest"
)

// statusRig is a Data Manager destination with a request status poller on
// a real bbolt file, with a real outbox for the dead letters.
type statusRig struct {
	t      *testing.T
	path   string
	clock  *clocktest.Clock
	f      *fakeDM
	srvURL string
	db     *bbolt.DB
	outbox *channels.Outbox
	poller *google.StatusPoller
	reg    *prometheus.Registry
	logs   *bytes.Buffer
	dm     *google.DataManager
	conv   *google.Conversions
	people channels.Profiles
}

// idPeople are people with their current identifiers; an id not in it is
// erased.
type idPeople map[string]*channels.Profile

func (p idPeople) Profile(_ context.Context, id string) (*channels.Profile, error) { return p[id], nil }

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func newStatusRig(t *testing.T) *statusRig {
	t.Helper()
	f := &fakeDM{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	r := &statusRig{t: t, path: filepath.Join(t.TempDir(), "cartera.db"), clock: clocktest.New(t0), f: f, srvURL: srv.URL,
		people: idPeople{
			"ana": {ID: "ana", Emails: []string{"ana.new@example.com"}, Consent: map[string]bool{"ads": true}},
			"bob": {ID: "bob", Phones: []string{"+34600111222"}, Consent: map[string]bool{"ads": true}},
		}}
	r.open()
	t.Cleanup(r.close)
	return r
}

// open opens the file, the outbox, the poller and the destinations, as a
// start of serve does.
func (r *statusRig) open() {
	t := r.t
	t.Helper()
	db, err := bbolt.Open(r.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.db, r.reg, r.logs = db, prometheus.NewRegistry(), &bytes.Buffer{}
	if r.outbox, err = channels.NewOutbox(db, channels.OutboxOptions{Now: r.clock.Now}); err != nil {
		t.Fatal(err)
	}
	r.poller, err = google.NewStatusPoller(db, google.DefaultStatusConfig(), google.StatusOptions{Now: r.clock.Now, Registerer: r.reg,
		Logger: slog.New(slog.NewJSONHandler(r.logs, nil)), Dead: r.outbox})
	if err != nil {
		t.Fatal(err)
	}
	r.dm, err = google.NewDataManager(google.DataManagerConfig{Name: "google:vip", BaseURL: r.srvURL + "/v1",
		Operating: google.Account{ID: "123-456-7890"}, UserListID: "987654321", HTTPClient: bearer("tok-1"),
		Profiles: r.people, Status: r.poller})
	if err != nil {
		t.Fatal(err)
	}
	r.conv, err = google.NewConversions(google.ConversionsConfig{BaseURL: r.srvURL + "/v1", Operating: google.Account{ID: "123-456-7890"},
		ConversionActionID: "777", HTTPClient: bearer("tok-1"), Status: r.poller, Profiles: r.people})
	if err != nil {
		t.Fatal(err)
	}
}

func (r *statusRig) close() {
	if r.db == nil {
		return
	}
	_ = r.poller.Close()
	_ = r.db.Close()
	r.db = nil
}

func (r *statusRig) restart() {
	r.close()
	r.open()
}

func (r *statusRig) pollDue() time.Time {
	r.t.Helper()
	next, err := r.poller.PollDue(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return next
}

func (r *statusRig) pending() []google.PendingRequest {
	r.t.Helper()
	p, err := r.poller.Pending()
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *statusRig) settled(status string) float64 { return r.count("google:vip", status) }

// count is cartera_google_request_status_total{destination, status}.
func (r *statusRig) count(dest, status string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cartera_google_request_status_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["destination"] == dest && labels["status"] == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (r *statusRig) statusCalls() []dmCall {
	var out []dmCall
	for _, c := range r.f.Calls() {
		if strings.HasSuffix(c.Path, "requestStatus:retrieve") {
			out = append(out, c)
		}
	}
	return out
}

// bearerTransport adds a fixed bearer token, as the OAuth client does.
type bearerTransport struct{ tok string }

func (b bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(req)
}

func bearer(tok string) *http.Client { return &http.Client{Transport: bearerTransport{tok}} }

const (
	stProcessing = `{"requestStatusPerDestination":[{"destination":{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"},"requestStatus":"PROCESSING"}]}`
	stSuccess    = `{"requestStatusPerDestination":[{"destination":{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"},"requestStatus":"SUCCESS","audienceMembersIngestionStatus":{"userDataIngestionStatus":{"recordCount":"2","userIdentifierCount":"2","uploadMatchRateRange":"MATCH_RATE_RANGE_20_TO_30"}}}]}`
	stPartial    = `{"requestStatusPerDestination":[{"requestStatus":"PARTIAL_SUCCESS","errorInfo":{"errorCounts":[{"recordCount":"1","reason":"PROCESSING_ERROR_REASON_INVALID_FORMAT"}]}}]}`
	stFailed     = `{"requestStatusPerDestination":[{"destination":{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"},"requestStatus":"FAILED","errorInfo":{"errorCounts":[{"recordCount":"2","reason":"PROCESSING_ERROR_REASON_NO_CONSENT"}]},"audienceMembersIngestionStatus":{"userDataIngestionStatus":{"recordCount":"2"}}}]}`
)

// TestStatusPollerFailedRequest follows an accepted audienceMembers:ingest
// to its FAILED status: the first poll 30 minutes after acceptance, the
// exact request (GET, path, requestId, bearer, Accept, no body), the
// request id kept over a restart, the metric, a log line without personal
// data, and each person a dead letter without identifiers, which a retry
// sends with the person's identifiers at that time.
func TestStatusPollerFailedRequest(t *testing.T) {
	r := newStatusRig(t)
	r.f.statuses = []string{stProcessing, stFailed}
	res := r.dm.Deliver(context.Background(), []*channels.Message{
		{Seq: 1, Key: "k-ana", Destination: "google:vip", ProfileID: "ana", Payload: json.RawMessage(`{"audience":"vip","op":"add","emails":["ana@example.com"]}`)},
		{Seq: 2, Key: "k-bob", Destination: "google:vip", ProfileID: "bob", Payload: json.RawMessage(`{"audience":"vip","op":"add","phones":["+34600111222"]}`)},
	})
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("deliver: %v / %v", res[0].Err, res[1].Err)
	}
	p := r.pending()
	if len(p) != 1 || p[0].RequestID != "req-1" || p[0].Destination != "google:vip" || p[0].Method != "audienceMembers:ingest" || p[0].People != 2 ||
		!p[0].NextAt.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("pending = %+v", p)
	}
	if next := r.pollDue(); !next.Equal(t0.Add(30*time.Minute)) || len(r.statusCalls()) != 0 {
		t.Fatalf("before it is due: next %s, %d status calls", next, len(r.statusCalls()))
	}

	r.clock.Advance(30 * time.Minute)
	if next := r.pollDue(); !next.Equal(t0.Add(time.Hour)) {
		t.Errorf("after PROCESSING the next poll is at %s, want 30 minutes on", next)
	}
	calls := r.statusCalls()
	if len(calls) != 1 {
		t.Fatalf("%d status calls, want 1", len(calls))
	}
	if c := calls[0]; c.Method != "GET" || c.Path != "/v1/requestStatus:retrieve" || c.Query != "requestId=req-1" ||
		c.Auth != "Bearer tok-1" || c.Accept != "application/json" || c.ContentType != "" || c.Body != "" {
		t.Errorf("status request = %+v", c)
	}

	// A restart keeps the request and its polls.
	r.restart()
	if p := r.pending(); len(p) != 1 || p[0].RequestID != "req-1" || !p[0].NextAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a restart, pending = %+v", p)
	}
	r.clock.Advance(30 * time.Minute)
	if next := r.pollDue(); !next.IsZero() {
		t.Errorf("next = %s, want none left", next)
	}
	if p := r.pending(); len(p) != 0 {
		t.Errorf("a FAILED request is still pending: %+v", p)
	}
	if n := r.settled("FAILED"); n != 1 {
		t.Errorf("cartera_google_request_status_total{FAILED} = %v, want 1", n)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"request_id":"req-1"`) || !strings.Contains(logs, "PROCESSING_ERROR_REASON_NO_CONSENT×2") || !strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("log does not name the failed request:\n%s", logs)
	}
	for _, secret := range []string{"ana@example.com", "600111222", hexSHA("ana@example.com"), "tok-1"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
	dead, err := r.outbox.List(channels.StateDead, 10)
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters = %d (%v), want 2", len(dead), err)
	}
	for i, who := range []string{"ana", "bob"} {
		m := dead[i]
		if m.ProfileID != who || m.Destination != "google:vip" || m.DeadAt.IsZero() ||
			!strings.Contains(m.LastError, "req-1") || !strings.Contains(m.LastError, "PROCESSING_ERROR_REASON_NO_CONSENT×2") {
			t.Errorf("dead letter %d = %+v", i, m)
		}
		jsonEq(t, "dead letter payload", string(m.Payload), `{"audience":"vip","op":"add"}`)
	}
	// Ana's retry goes with her address of now.
	before := len(r.f.Calls())
	res = r.dm.Deliver(context.Background(), []*channels.Message{dead[0]})
	if res[0].Err != nil {
		t.Fatalf("retry: %v", res[0].Err)
	}
	retry := r.f.Calls()[before]
	if retry.Path != "/v1/audienceMembers:ingest" || !strings.Contains(retry.Body, hexSHA("ana.new@example.com")) {
		t.Errorf("retry = %+v", retry)
	}
	// A person erased since is a dead letter again, with a reason.
	gone := *dead[1]
	gone.ProfileID = "cy"
	if res := r.dm.Deliver(context.Background(), []*channels.Message{&gone}); !channels.IsPermanent(res[0].Err) || !strings.Contains(res[0].Err.Error(), "erased") {
		t.Errorf("retry for an erased person: %v", res[0].Err)
	}
}

// TestStatusPollerSettles covers every way a request settles: SUCCESS and
// PARTIAL_SUCCESS (no dead letters), an answer that failed (asked again),
// and a request still PROCESSING after give_up_after (UNKNOWN).
func TestStatusPollerSettles(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []string
		fail     int // status calls answered 503 first
		steps    int // polls until settled
		want     string
		log      string
	}{
		{"success", []string{stSuccess}, 0, 1, "SUCCESS", ""},
		{"processing then success", []string{stProcessing, stProcessing, stSuccess}, 0, 3, "SUCCESS", ""},
		{"partial", []string{stPartial}, 0, 1, "PARTIAL_SUCCESS", "PROCESSING_ERROR_REASON_INVALID_FORMAT×1"},
		{"unavailable then success", []string{stSuccess}, 2, 3, "SUCCESS", "asked again later"},
		{"never done", nil, 0, -1, "REQUEST_STATUS_UNKNOWN", "given up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newStatusRig(t)
			processing := tc.statuses == nil
			failures := tc.fail
			r.f.respond = func(c dmCall) (int, string, bool) {
				if !strings.HasSuffix(c.Path, "requestStatus:retrieve") {
					return 0, "", false
				}
				if failures > 0 {
					failures--
					return 503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`, true
				}
				if processing {
					return 200, stProcessing, true
				}
				return 0, "", false
			}
			r.f.statuses = tc.statuses
			res := r.dm.Deliver(context.Background(), []*channels.Message{{Key: "k", Destination: "google:vip", ProfileID: "ana",
				Payload: json.RawMessage(`{"audience":"vip","op":"remove","emails":["ana@example.com"]}`)}})
			if res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			polls := 0
			var waits []time.Duration
			for len(r.pending()) > 0 {
				next := r.pending()[0].NextAt
				waits = append(waits, next.Sub(r.clock.Now()))
				r.clock.Set(next)
				r.pollDue()
				if polls++; polls > 40 {
					t.Fatal("never settled")
				}
			}
			if tc.steps > 0 && polls != tc.steps {
				t.Errorf("settled after %d polls, want %d", polls, tc.steps)
			}
			if tc.steps < 0 {
				// 30m, 30m, 1h, 2h, 4h, 4h, ...: given up at 72h.
				if want := []time.Duration{30 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour}; len(waits) < len(want) || !equalDurations(waits[:len(want)], want) {
					t.Errorf("waits %v, want them to start %v", waits, want)
				}
				if got := r.clock.Now().Sub(t0); got < 72*time.Hour || got > 76*time.Hour {
					t.Errorf("given up %s after acceptance, want 72h", got)
				}
			}
			if n := r.settled(tc.want); n != 1 {
				t.Errorf("cartera_google_request_status_total{%s} = %v, want 1", tc.want, n)
			}
			if dead, _ := r.outbox.List(channels.StateDead, 10); len(dead) != 0 {
				t.Errorf("dead letters %+v, want none", dead)
			}
			if !strings.Contains(r.logs.String(), tc.log) {
				t.Errorf("log does not say %q:\n%s", tc.log, r.logs)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStatusPollerConversions: a FAILED events:ingest makes the sale a
// dead letter of conversions:google that keeps the order, its time and
// value but none of the person's identifiers; its retry takes them from
// the profile.
func TestStatusPollerConversions(t *testing.T) {
	r := newStatusRig(t)
	r.f.statuses = []string{strings.Replace(stFailed, "PROCESSING_ERROR_REASON_NO_CONSENT", "PROCESSING_ERROR_REASON_CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCED_CONVERSIONS", 1)}
	m := conversion("pos-9", t0)
	m.ProfileID = "bob"
	if res := r.conv.Deliver(context.Background(), []*channels.Message{m}); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if p := r.pending(); len(p) != 1 || p[0].Destination != google.ConversionsName || p[0].Method != "events:ingest" {
		t.Fatalf("pending %+v", p)
	}
	r.clock.Advance(30 * time.Minute)
	r.pollDue()
	if n := r.count(google.ConversionsName, "FAILED"); n != 1 {
		t.Errorf("FAILED count %v", n)
	}
	dead, _ := r.outbox.List(channels.StateDead, 10)
	if len(dead) != 1 || dead[0].Destination != google.ConversionsName || dead[0].ProfileID != "bob" {
		t.Fatalf("dead letters %+v", dead)
	}
	jsonEq(t, "dead conversion", string(dead[0].Payload), `{"order_id":"pos-9","event":"Order Completed","time":"2026-12-07T10:00:00Z","value":250,"currency":"eur","external_id":"p1"}`)
	before := len(r.f.Calls())
	if res := r.conv.Deliver(context.Background(), []*channels.Message{dead[0]}); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if c := r.f.Calls()[before]; c.Path != "/v1/events:ingest" || !strings.Contains(c.Body, hexSHA("+34600111222")) || !strings.Contains(c.Body, `"transactionId":"pos-9"`) {
		t.Errorf("retry %+v", c)
	}
}

// TestStatusPollerRuns: Open polls in a goroutine of its own (woken when a
// request is kept), and Close stops and joins it.
func TestStatusPollerRuns(t *testing.T) {
	r := newStatusRig(t)
	asked := make(chan string, 10)
	r.f.respond = func(c dmCall) (int, string, bool) {
		if strings.HasSuffix(c.Path, "requestStatus:retrieve") {
			asked <- c.Query
		}
		return 0, "", false
	}
	r.poller.Open(context.Background())
	add := func(key string) {
		res := r.dm.Deliver(context.Background(), []*channels.Message{{Key: key, Destination: "google:vip", ProfileID: "ana",
			Payload: json.RawMessage(`{"audience":"vip","op":"remove","emails":["ana@example.com"]}`)}})
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
	}
	add("k1")
	r.clock.Advance(30 * time.Minute)
	add("k2") // wakes the poller: req-1 is due now
	select {
	case q := <-asked:
		if q != "requestId=req-1" {
			t.Errorf("asked %s, want req-1", q)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the poller never asked about req-1")
	}
	// The stand-in saw the question before the poller read the answer:
	// wait for it to settle req-1 (a Close before that leaves it pending,
	// as it should).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if p := r.pending(); len(p) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if err := r.poller.Close(); err != nil {
		t.Fatal(err)
	}
	// Joined: nothing more is asked, and req-2 waits for the next start.
	if p := r.pending(); len(p) != 1 || p[0].RequestID != "req-2" {
		t.Errorf("pending after Close = %+v", p)
	}
}

// An erasure drops the person from the pending requests: a request that
// fails later makes dead letters of the others only.
func TestStatusPollerErasePerson(t *testing.T) {
	r := newStatusRig(t)
	r.f.statuses = []string{stFailed}
	res := r.dm.Deliver(context.Background(), []*channels.Message{
		{Key: "k-ana", Destination: "google:vip", ProfileID: "ana", Payload: json.RawMessage(`{"audience":"vip","op":"add","emails":["ana@example.com"]}`)},
		{Key: "k-bob", Destination: "google:vip", ProfileID: "bob", Payload: json.RawMessage(`{"audience":"vip","op":"add","phones":["+34600111222"]}`)},
	})
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatal(res[0].Err, res[1].Err)
	}
	var n int
	if err := r.db.Update(func(tx *bbolt.Tx) error {
		var err error
		n, err = r.poller.ErasePerson(tx, "ana")
		return err
	}); err != nil || n != 1 {
		t.Fatalf("ErasePerson = %d, %v", n, err)
	}
	if p := r.pending(); len(p) != 1 || p[0].People != 1 {
		t.Fatalf("pending %+v", p)
	}
	raw := ""
	_ = r.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if string(name) == "google_request_status" {
				return b.ForEach(func(_, v []byte) error { raw += string(v); return nil })
			}
			return nil
		})
	})
	if strings.Contains(raw, `"ana"`) || !strings.Contains(raw, `"bob"`) {
		t.Errorf("pending record after the erasure: %s", raw)
	}
	r.clock.Advance(30 * time.Minute)
	r.pollDue()
	dead, _ := r.outbox.List(channels.StateDead, 10)
	if len(dead) != 1 || dead[0].ProfileID != "bob" {
		t.Errorf("dead letters %+v, want Bob's only", dead)
	}
}
