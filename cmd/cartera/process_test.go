package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cartera/internal/sdktest"
)

// These tests run the real binary as a separate process (see
// internal/sdktest): they kill it, stop it and restart it on the same bbolt
// file, and talk to it only over HTTP.

var bin string

func TestMain(m *testing.M) { sdktest.Main(m, &bin) }

// derivedSource is the source of events the gateway derives itself (an
// audience entered); the checks below count only what clients sent.
const derivedSource = "cartera"

func newClient() *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// post sends body to the gateway; key "" sends no Authorization header.
func post(c *http.Client, base, path, key string, body []byte, header map[string]string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", basic(key))
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request is one ingestion request of a load run, kept to check and retry.
type request struct {
	path string
	body []byte
	ids  []string // messageIds, in order
	who  []string // the userId of each event
}

// loadResult is what a load run sent and what the gateway acknowledged.
type loadResult struct {
	mu       sync.Mutex
	requests []*request
	acked    []*request
	person   map[string]string // messageId → userId, of every event sent
	ackedIDs map[string]bool
	// answeredLate counts requests answered (200 or a refusal) after the
	// trigger ran: requests in flight when the signal came.
	answeredLate int64
}

// loadSpec describes concurrent clients that post /v1/track and /v1/batch
// with unique messageIds until the server goes away.
type loadSpec struct {
	prefix  string // of messageIds and userIds
	clients int
	people  int
	// After trigger acknowledged events, onTrigger runs once (in the
	// client goroutine that crossed the line, while the others go on).
	trigger   int
	onTrigger func()
	// maxEvents bounds the run should the server never go away.
	maxEvents int
	// okAfterTrigger lists statuses that end a client quietly once
	// triggered (503 while draining); errors end it too.
	okAfterTrigger []int
}

func (l loadSpec) userID(i int) string { return fmt.Sprintf("%s-user-%02d", l.prefix, i) }

// run drives the load and returns when every client has stopped.
func (l loadSpec) run(t *testing.T, srv *sdktest.Server) *loadResult {
	t.Helper()
	res := &loadResult{person: map[string]string{}, ackedIDs: map[string]bool{}}
	var (
		acked, sent atomic.Int64
		// Outcomes of requests answered after the trigger ran.
		lateOK, lateRefused, lateErr atomic.Int64
		triggered                    atomic.Bool
		once                         sync.Once
		wg                           sync.WaitGroup
		deadline                     = time.Now().Add(45 * time.Second)
		base                         = srv.URL()
	)
	c := newClient()
	defer c.CloseIdleConnections()
	seed := uint64(time.Now().UnixNano())
	t.Logf("load %s: seed %d", l.prefix, seed)
	for ci := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(ci)))
			for seq := 0; ; seq++ {
				if time.Now().After(deadline) || sent.Load() >= int64(l.maxEvents) {
					return
				}
				req := l.next(rng, ci, seq)
				sent.Add(int64(len(req.ids)))
				res.mu.Lock()
				res.requests = append(res.requests, req)
				for i, id := range req.ids {
					res.person[id] = req.who[i]
				}
				res.mu.Unlock()

				status, body, _, err := post(c, base, req.path, sdktest.WebKey, req.body, nil)
				late := triggered.Load()
				switch {
				case !late:
				case err != nil:
					if lateErr.Add(1) <= 3 {
						t.Logf("client %d after the trigger: %v", ci, err)
					}
				case status == http.StatusOK:
					lateOK.Add(1)
				default:
					lateRefused.Add(1)
				}
				if err != nil || status != http.StatusOK {
					if !late {
						t.Errorf("client %d, before the trigger: %s: status %d %s err %v", ci, req.path, status, body, err)
					} else if err == nil && !slices.Contains(l.okAfterTrigger, status) {
						t.Errorf("client %d, after the trigger: %s: status %d %s", ci, req.path, status, body)
					}
					return
				}
				if !json.Valid(body) || !bytes.Contains(body, []byte(`"success":true`)) {
					t.Errorf("client %d: 200 with body %s", ci, body)
					return
				}
				res.mu.Lock()
				res.acked = append(res.acked, req)
				for _, id := range req.ids {
					res.ackedIDs[id] = true
				}
				res.mu.Unlock()
				if acked.Add(int64(len(req.ids))) >= int64(l.trigger) {
					once.Do(func() {
						triggered.Store(true)
						l.onTrigger()
					})
				}
			}
		}()
	}
	wg.Wait()
	if !triggered.Load() {
		t.Fatalf("load %s: only %d events acknowledged of %d sent; the trigger at %d never ran", l.prefix, acked.Load(), sent.Load(), l.trigger)
	}
	res.answeredLate = lateOK.Load() + lateRefused.Load()
	t.Logf("load %s: %d requests, %d events sent, %d acknowledged; after the trigger: %d requests acknowledged, %d refused, %d failed",
		l.prefix, len(res.requests), sent.Load(), acked.Load(), lateOK.Load(), lateRefused.Load(), lateErr.Load())
	return res
}

// next makes a client's next request: a single track (one in three), or a
// batch of 2 to 25 mixed events, about random people.
func (l loadSpec) next(rng *rand.Rand, client, seq int) *request {
	req := &request{}
	event := func(i int, typ string) map[string]any {
		id := fmt.Sprintf("%s-%02d-%05d-%02d", l.prefix, client, seq, i)
		user := l.userID(rng.IntN(l.people))
		req.ids, req.who = append(req.ids, id), append(req.who, user)
		e := map[string]any{"type": typ, "messageId": id, "userId": user}
		switch typ {
		case "identify":
			e["traits"] = map[string]any{"plan": "gold", "visits": rng.IntN(100)}
		case "page":
			e["name"] = "Home"
		case "track":
			e["event"] = "Product Viewed"
			e["properties"] = map[string]any{"product_id": fmt.Sprintf("sku-%d", rng.IntN(50)), "price": 9.99}
		}
		return e
	}
	var body any
	if rng.IntN(3) == 0 {
		req.path, body = "/v1/track", event(0, "track")
	} else {
		batch := make([]any, 2+rng.IntN(24))
		for i := range batch {
			batch[i] = event(i, [...]string{"track", "track", "identify", "page"}[rng.IntN(4)])
		}
		req.path, body = "/v1/batch", map[string]any{"batch": batch}
	}
	req.body, _ = json.Marshal(body)
	return req
}

// stored reads every person's events through the admin API and returns
// messageId → userIds holding it (more than one is a double apply), and
// the event_count of each person.
func stored(t *testing.T, srv *sdktest.Server, l loadSpec) (map[string][]string, map[string]int) {
	t.Helper()
	found := map[string][]string{}
	counts := map[string]int{}
	for i := range l.people {
		user := l.userID(i)
		p, status := srv.GetProfile(t, "user_id:"+user, 1000)
		if status == http.StatusNotFound {
			continue
		}
		if p == nil {
			t.Fatalf("GET profile user_id:%s: status %d", user, status)
		}
		if p.EventCount != len(p.Events) {
			t.Fatalf("user_id:%s: event_count %d but %d events listed; raise ?events=", user, p.EventCount, len(p.Events))
		}
		counts[user] = p.EventCount
		for _, e := range p.Events {
			if e.Source == derivedSource {
				continue
			}
			found[e.MessageID] = append(found[e.MessageID], user)
		}
	}
	return found, counts
}

// checkStored asserts that every acknowledged event is stored once, on its
// person, and nothing else is there but events that were sent. With all,
// every event sent must be there.
func checkStored(t *testing.T, srv *sdktest.Server, l loadSpec, res *loadResult, all bool) (map[string][]string, map[string]int) {
	t.Helper()
	found, counts := stored(t, srv, l)
	lost, unacked := 0, 0
	for id, who := range res.person {
		holders := found[id]
		switch {
		case len(holders) > 1:
			t.Errorf("messageId %s stored %d times (%v)", id, len(holders), holders)
		case len(holders) == 1 && holders[0] != who:
			t.Errorf("messageId %s stored on %s, sent for %s", id, holders[0], who)
		case len(holders) == 0 && (res.ackedIDs[id] || all):
			lost++
			if lost <= 10 {
				t.Errorf("messageId %s (for %s, acknowledged %v) is missing", id, who, res.ackedIDs[id])
			}
		case len(holders) == 1 && !res.ackedIDs[id]:
			unacked++
		}
	}
	if lost > 10 {
		t.Errorf("... %d events missing in all", lost)
	}
	for id := range found {
		if _, ok := res.person[id]; !ok {
			t.Errorf("stored messageId %s was never sent", id)
		}
	}
	t.Logf("%d events stored, %d acknowledged, %d stored without an acknowledgement", len(found), len(res.ackedIDs), unacked)
	return found, counts
}

// resend posts requests again, exactly as first sent, from 16 clients; each
// must be accepted.
func resend(t *testing.T, srv *sdktest.Server, reqs []*request) {
	t.Helper()
	c := newClient()
	defer c.CloseIdleConnections()
	work := make(chan *request)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				status, body, _, err := post(c, srv.URL(), r.path, sdktest.WebKey, r.body, nil)
				if err != nil || status != http.StatusOK {
					t.Errorf("retry %s %s: status %d %s err %v", r.path, r.ids[0], status, body, err)
				}
			}
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
}

// TestProcessKillNine kills the server with SIGKILL under concurrent load:
// every event acknowledged before must be there after a restart, a retry of
// them must be accepted and not applied again, and a retry of the rest
// must leave every event stored exactly once.
func TestProcessKillNine(t *testing.T) {
	srv := sdktest.Start(t, bin, sdktest.Options{})
	l := loadSpec{
		prefix: "k9", clients: 16, people: 40,
		trigger: 1000, maxEvents: 20000,
		onTrigger: func() { srv.Kill() },
	}
	res := l.run(t, srv)
	if t.Failed() {
		t.FailNow()
	}
	srv.Restart()

	_, before := checkStored(t, srv, l, res, false)
	if t.Failed() {
		t.FailNow()
	}

	resend(t, srv, res.acked)
	found, after := checkStored(t, srv, l, res, false)
	if !maps.Equal(before, after) {
		t.Errorf("a retry of acknowledged events changed event counts:\nbefore %v\nafter  %v", before, after)
	}

	var rest []*request
	for _, r := range res.requests {
		for _, id := range r.ids {
			if len(found[id]) == 0 {
				rest = append(rest, r)
				break
			}
		}
	}
	t.Logf("retrying %d requests that were not (wholly) stored", len(rest))
	resend(t, srv, rest)
	checkStored(t, srv, l, res, true)
}

// TestProcessGracefulShutdown sends SIGTERM while requests are in flight:
// the process drains and exits 0, and every acknowledged event is there
// after a restart.
func TestProcessGracefulShutdown(t *testing.T) {
	srv := sdktest.Start(t, bin, sdktest.Options{})
	var stopErr error
	stopped := make(chan struct{})
	l := loadSpec{
		prefix: "term", clients: 8, people: 20,
		trigger: 300, maxEvents: 20000,
		onTrigger: func() {
			stopErr = srv.Stop()
			close(stopped)
		},
		okAfterTrigger: []int{http.StatusServiceUnavailable},
	}
	res := l.run(t, srv)
	<-stopped
	if stopErr != nil {
		t.Fatalf("after SIGTERM: %v, want exit status 0\n%s", stopErr, srv.Logs())
	}
	// Seven other clients were busy when the signal came: their requests
	// must have been answered, not dropped.
	if res.answeredLate == 0 {
		t.Errorf("no request was answered after SIGTERM: in-flight requests were dropped (or none was in flight)")
	}
	if msgs := srv.LogLines(); !slices.Contains(msgs, "stopped") {
		t.Errorf("log lines %q lack \"stopped\"", msgs)
	}
	if t.Failed() {
		t.FailNow()
	}
	srv.Restart()
	checkStored(t, srv, l, res, false)
}

// apiReply is the JSON body of an ingestion answer.
type apiReply struct {
	Success *bool   `json:"success"`
	Error   *string `json:"error"`
}

// checkFailure asserts a Segment-style failure body: exactly
// {"success": false, "error": "..."} as JSON.
func checkFailure(t *testing.T, body []byte, header http.Header) string {
	t.Helper()
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	var r apiReply
	_ = json.Unmarshal(body, &r)
	if len(keys) != 2 || r.Success == nil || *r.Success || r.Error == nil || *r.Error == "" {
		t.Fatalf("body %s, want {\"success\": false, \"error\": \"...\"}", body)
	}
	return *r.Error
}

// postHeadFirst sends a request as a careful client sends a big body: the
// head, then the body only if the server has not answered within a second.
// The gateway refuses a body over its limit from the Content-Length alone
// and closes the connection without reading it; a client that has already
// written the body then gets a connection reset, which often destroys the
// 413 before it is read (over 500 KB, plain net/http sees a reset about
// half of the time). Waiting for an early answer sees the 413 every time,
// and a server that reads the body first gets it.
func postHeadFirst(_ *http.Client, base, path, key string, body []byte, header map[string]string) (int, []byte, http.Header, error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, nil, nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return 0, nil, nil, err
	}
	defer conn.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", path, u.Host, len(body))
	if key != "" {
		fmt.Fprintf(&head, "Authorization: %s\r\n", basic(key))
	}
	for k, v := range header {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		return 0, nil, nil, err
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := br.Peek(1); err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return 0, nil, nil, err
		}
		if _, err := conn.Write(body); err != nil { // no early answer: send the body
			return 0, nil, nil, err
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestProcessBadInput sends bad requests over a real listener: each gets
// its status and a JSON error saying what and where, and none alters what
// was accepted before.
func TestProcessBadInput(t *testing.T) {
	srv := sdktest.Start(t, bin, sdktest.Options{})
	c := newClient()
	defer c.CloseIdleConnections()
	base := srv.URL()

	// What is accepted first, from the web and from a till.
	good := []struct {
		path, key string
		body      map[string]any
	}{
		{"/v1/identify", sdktest.WebKey, map[string]any{"messageId": "good-1", "userId": "bad-1", "traits": map[string]any{"email": "Bea@Example.com", "plan": "gold"}}},
		{"/v1/track", sdktest.WebKey, map[string]any{"messageId": "good-2", "userId": "bad-1", "event": "Product Added", "properties": map[string]any{"price": 12.5, "quantity": 2}}},
		{"/v1/track", sdktest.PosKey, map[string]any{"messageId": "good-3", "userId": "bad-1", "event": "Order Completed", "properties": map[string]any{"order_id": "o-1", "revenue": 25}}},
	}
	for _, g := range good {
		status, body, _, err := post(c, base, g.path, g.key, mustJSON(t, g.body), nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("POST %s: status %d %s err %v", g.path, status, body, err)
		}
	}
	before := srv.MustProfile(t, "user_id:bad-1", 100)

	blob := strings.Repeat("x", 33<<10)
	big := make([]any, 20) // 20 events of 26 KB: each fits, the batch does not
	for i := range big {
		big[i] = map[string]any{"type": "track", "messageId": fmt.Sprintf("big-%d", i), "userId": "ghost-1", "event": "Product Viewed", "properties": map[string]any{"pad": strings.Repeat("y", 26<<10)}}
	}
	brokenJSON := "{\n  \"userId\": \"ghost-1\",\n  \"event\": \"Product Viewed\",,\n  \"properties\": {}\n}"
	badAt1 := map[string]any{"batch": []any{
		map[string]any{"type": "track", "messageId": "ghost-batch-0", "userId": "ghost-1", "event": "Product Viewed"},
		map[string]any{"type": "track", "messageId": "ghost-batch-1", "userId": "bad-1", "event": "Order Completed", "properties": map[string]any{"revenue": "12.50"}},
	}}
	posBatch := map[string]any{"batch": []any{
		map[string]any{"type": "track", "messageId": "ghost-pos-0", "userId": "ghost-1", "event": "Order Completed", "properties": map[string]any{"order_id": "o-2", "revenue": 10}},
		map[string]any{"type": "track", "messageId": "ghost-pos-1", "userId": "bad-1", "event": "Order Completed", "properties": map[string]any{"revenue": 10}},
	}}

	tests := []struct {
		name     string
		path     string
		key      string
		header   map[string]string
		body     []byte
		status   int
		exact    string         // the error, when set
		prefix   string         // the error's start, when set
		contains []string       // in the error
		match    *regexp.Regexp // the error, when set
		// headFirst sends the body only if the server has not answered
		// the request head (see postHeadFirst).
		headFirst bool
	}{
		{
			name: "revenue as string", path: "/v1/track", key: sdktest.WebKey,
			body:   mustJSON(t, map[string]any{"messageId": "ghost-2", "userId": "bad-1", "event": "Order Completed", "properties": map[string]any{"revenue": "12.50"}}),
			status: 400, exact: "properties.revenue: want number, got string",
		},
		{
			name: "broken JSON", path: "/v1/track", key: sdktest.WebKey, body: []byte(brokenJSON),
			status: 400, match: regexp.MustCompile(`\bline 3, column 29\b`),
		},
		{
			name: "body is not an object", path: "/v1/track", key: sdktest.WebKey, body: []byte(`["userId", "bad-1"]`),
			status: 400, contains: []string{"object", "array"},
		},
		{
			name: "type of another endpoint", path: "/v1/track", key: sdktest.WebKey,
			body:   mustJSON(t, map[string]any{"type": "identify", "userId": "bad-1", "traits": map[string]any{"plan": "lead"}}),
			status: 400, prefix: "type:",
		},
		{
			name: "missing write key", path: "/v1/track",
			body:   mustJSON(t, map[string]any{"userId": "bad-1", "event": "Product Viewed"}),
			status: 401, contains: []string{"write key"},
		},
		{
			name: "unknown write key", path: "/v1/track", key: "not_a_configured_key",
			body:   mustJSON(t, map[string]any{"userId": "bad-1", "event": "Product Viewed"}),
			status: 401, exact: "unknown write key",
		},
		{
			name: "unknown writeKey in the body", path: "/v1/batch",
			body:   mustJSON(t, map[string]any{"writeKey": "not_a_configured_key", "batch": []any{map[string]any{"type": "track", "userId": "bad-1", "event": "Product Viewed"}}}),
			status: 401, exact: "unknown write key",
		},
		{
			name: "event over 32 KB", path: "/v1/track", key: sdktest.WebKey,
			body:   mustJSON(t, map[string]any{"userId": "bad-1", "event": "Product Viewed", "properties": map[string]any{"pad": blob}}),
			status: 413,
		},
		{
			name: "event over 32 KB in a batch", path: "/v1/batch", key: sdktest.WebKey,
			body: mustJSON(t, map[string]any{"batch": []any{
				map[string]any{"type": "track", "userId": "ghost-1", "event": "Product Viewed"},
				map[string]any{"type": "track", "userId": "bad-1", "event": "Product Viewed", "properties": map[string]any{"pad": blob}},
			}}),
			status: 413, prefix: "batch[1]",
		},
		{
			name: "batch over 500 KB", path: "/v1/batch", key: sdktest.WebKey,
			body:   mustJSON(t, map[string]any{"batch": big}),
			status: 413, contains: []string{"512000"}, headFirst: true,
		},
		{
			name: "gzip batch inflating over 500 KB", path: "/v1/batch", key: sdktest.WebKey,
			header: map[string]string{"Content-Encoding": "gzip"}, body: gzipped(t, mustJSON(t, map[string]any{"batch": big})),
			status: 413, contains: []string{"512000"},
		},
		{
			name: "bad event at index 1", path: "/v1/batch", key: sdktest.WebKey, body: mustJSON(t, badAt1),
			status: 400, exact: "batch[1].properties.revenue: want number, got string",
		},
		{
			name: "POS event without order_id", path: "/v1/track", key: sdktest.PosKey,
			body:   mustJSON(t, map[string]any{"messageId": "ghost-3", "userId": "bad-1", "event": "Order Completed", "properties": map[string]any{"revenue": 10}}),
			status: 400, prefix: "properties.order_id",
		},
		{
			name: "POS batch without order_id at index 1", path: "/v1/batch", key: sdktest.PosKey, body: mustJSON(t, posBatch),
			status: 400, prefix: "batch[1].properties.order_id",
		},
		{
			name: "POS event not in the tracking plan", path: "/v1/track", key: sdktest.PosKey,
			body:   mustJSON(t, map[string]any{"userId": "bad-1", "event": "Product Viewed"}),
			status: 400, prefix: "event:",
		},
		{
			name: "gzip that is not", path: "/v1/track", key: sdktest.WebKey, header: map[string]string{"Content-Encoding": "gzip"},
			body:   mustJSON(t, map[string]any{"userId": "bad-1", "event": "Product Viewed"}),
			status: 400, contains: []string{"gzip"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send := post
			if tt.headFirst {
				send = postHeadFirst
			}
			status, body, header, err := send(c, base, tt.path, tt.key, tt.body, tt.header)
			if err != nil {
				t.Fatalf("POST %s (%d bytes): %v", tt.path, len(tt.body), err)
			}
			if status != tt.status {
				t.Errorf("status %d, want %d; body %s", status, tt.status, body)
			}
			msg := checkFailure(t, body, header)
			switch {
			case tt.exact != "" && msg != tt.exact:
				t.Errorf("error %q, want %q", msg, tt.exact)
			case tt.prefix != "" && !strings.HasPrefix(msg, tt.prefix):
				t.Errorf("error %q, want it to start with %q", msg, tt.prefix)
			case tt.match != nil && !tt.match.MatchString(msg):
				t.Errorf("error %q, want it to match %s", msg, tt.match)
			}
			for _, s := range tt.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q, want it to mention %q", msg, s)
				}
			}
		})
	}

	t.Run("nothing accepted before changed", func(t *testing.T) {
		after := srv.MustProfile(t, "user_id:bad-1", 100)
		a, _ := json.MarshalIndent(before.Fields, "", "  ")
		b, _ := json.MarshalIndent(after.Fields, "", "  ")
		if !bytes.Equal(a, b) {
			t.Errorf("profile changed by refused requests:\nbefore %s\nafter  %s", a, b)
		}
		if _, status := srv.GetProfile(t, "user_id:ghost-1", 1); status != http.StatusNotFound {
			t.Errorf("user_id:ghost-1 (only in refused requests): status %d, want 404", status)
		}
	})

	t.Run("still serving", func(t *testing.T) {
		status, body, _, err := post(c, base, "/v1/track", sdktest.WebKey, mustJSON(t, map[string]any{"messageId": "good-4", "userId": "bad-1", "event": "Product Viewed"}), nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("valid track after the bad ones: status %d %s err %v", status, body, err)
		}
		if p := srv.MustProfile(t, "user_id:bad-1", 100); p.EventByMessageID("good-4") == nil || p.EventCount != before.EventCount+1 {
			t.Errorf("after one more event: event_count %d (was %d), good-4 stored %v", p.EventCount, before.EventCount, p.EventByMessageID("good-4") != nil)
		}
	})
}

// TestProcessWriteKeysFromEnv checks that CARTERA_WRITE_KEYS replaces the
// config file's keys.
func TestProcessWriteKeysFromEnv(t *testing.T) {
	srv := sdktest.Start(t, bin, sdktest.Options{Env: map[string]string{"CARTERA_WRITE_KEYS": "custom_key_123=web"}})
	c := newClient()
	defer c.CloseIdleConnections()
	event := func(id string) []byte {
		return mustJSON(t, map[string]any{"messageId": id, "userId": "env-1", "event": "Product Viewed"})
	}

	status, body, _, err := post(c, srv.URL(), "/v1/track", "custom_key_123", event("env-ok"), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("custom_key_123: status %d %s err %v, want 200", status, body, err)
	}
	for _, key := range []string{sdktest.WebKey, sdktest.PosKey} {
		status, body, header, err := post(c, srv.URL(), "/v1/track", key, event("env-"+key), nil)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusUnauthorized {
			t.Errorf("%s (replaced by CARTERA_WRITE_KEYS): status %d %s, want 401", key, status, body)
			continue
		}
		if msg := checkFailure(t, body, header); msg != "unknown write key" {
			t.Errorf("%s: error %q, want \"unknown write key\"", key, msg)
		}
	}
	p := srv.MustProfile(t, "user_id:env-1", 100)
	e := p.EventByMessageID("env-ok")
	if e == nil || e.Source != "web" {
		t.Fatalf("event env-ok: %+v, want it stored with source web", e)
	}
	for _, key := range []string{sdktest.WebKey, sdktest.PosKey} {
		if p.EventByMessageID("env-"+key) != nil {
			t.Errorf("event sent with the refused key %s was stored", key)
		}
	}
}
