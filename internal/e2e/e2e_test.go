package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cartera/internal/apnstest"
	"cartera/internal/sdktest"
	"cartera/internal/smtptest"
	"cartera/wallet/apple"
)

var bin string

func TestMain(m *testing.M) { sdktest.Main(m, &bin) }

// What examples/cartera.yaml names.
const (
	passTypeID   = "pass.example.cartera.loyalty"
	metaAudience = "/v26.0/23850000000000000/users"
	metaEvents   = "/v26.0/1234567890123456/events"
	googleIngest = "/v1/audienceMembers:ingest"
	googleRemove = "/v1/audienceMembers:remove"
	googleEvents = "/v1/events:ingest"
	person       = "e2e001"
	email        = "ana." + person + "@example.com"
	order        = "pos-" + person + "-2" // the demo's purchase at the till
)

// hit is one request a stand-in received.
type hit struct {
	at           time.Time
	method, path string
	auth         string
	body         string
}

// recorder is an outside HTTP API that answers 200 and keeps requests.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
}

func newRecorder(t *testing.T, answer func(path string) string) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.hits = append(r.hits, hit{at: time.Now(), method: req.Method, path: req.URL.Path, auth: req.Header.Get("Authorization"), body: string(b)})
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer(req.URL.Path))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) all() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// metaOps are the operations Meta received for a hashed email: "POST" adds,
// "DELETE" removes.
func metaOps(hits []hit, hashedEmail string) []string {
	var ops []string
	for _, h := range hits {
		if h.path == metaAudience && strings.Contains(h.body, hashedEmail) {
			ops = append(ops, h.method)
		}
	}
	return ops
}

// googleOps are the Data Manager calls ("ingest", "remove") that carried
// a hashed email.
func googleOps(hits []hit, hashedEmail string) []string {
	var ops []string
	for _, h := range hits {
		if (h.path == googleIngest || h.path == googleRemove) && strings.Contains(h.body, hashedEmail) {
			ops = append(ops, strings.TrimPrefix(h.path, "/v1/audienceMembers:"))
		}
	}
	return ops
}

// sent counts the requests to path that carried s.
func sent(hits []hit, path, s string) int {
	n := 0
	for _, h := range hits {
		if h.path == path && strings.Contains(h.body, s) {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSeedScenario runs the seed-000/001 story end to end: the cart email
// arrives over SMTP; not opened, the person is added to the Meta and
// Google audiences; the purchase at the till removes them and ends the
// journey; the purchase makes them gold, the pass changes and the push
// reaches their iPhone.
func TestSeedScenario(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data", "cartera.db")
	// The dev chain serve makes on first start, made first so the APNs
	// stand-in can require its certificates.
	if _, err := (apple.Config{PassTypeID: passTypeID, TeamID: "CARTERADEV"}).DevChain(filepath.Join(dir, "data", "wallet-dev"), time.Now()); err != nil {
		t.Fatal(err)
	}
	relay := smtptest.Start(t, "cartera", "relay-pass")
	push := apnstest.Start(t, passTypeID, filepath.Join(dir, "data", "wallet-dev", "ca.pem"))
	meta := newRecorder(t, func(path string) string {
		if path == metaEvents {
			return `{"events_received":1,"messages":[],"fbtrace_id":"AbCdE"}`
		}
		return `{"audience_id":"23850000000000000","num_received":1,"num_invalid_entries":0}`
	})
	var reqs int
	var reqsMu sync.Mutex
	google := newRecorder(t, func(path string) string {
		reqsMu.Lock()
		defer reqsMu.Unlock()
		reqs++
		if path == "/token" {
			return fmt.Sprintf(`{"access_token":"google-e2e-token-%d","token_type":"Bearer","expires_in":3600}`, reqs)
		}
		return fmt.Sprintf(`{"requestId":"req-%d"}`, reqs)
	})
	srv := sdktest.Start(t, bin, sdktest.Options{Data: data, Env: map[string]string{
		"CARTERA_LOG_LEVEL":                "info",
		"CARTERA_DEV_CLOCK":                "1",
		"CARTERA_SMTP_URL":                 relay.URL,
		"CARTERA_SMTP_CA_FILE":             relay.CAFile,
		"CARTERA_META_URL":                 meta.URL,
		"CARTERA_META_ACCESS_TOKEN":        "meta-e2e-token",
		"CARTERA_GOOGLE_DATA_MANAGER_URL":  google.URL + "/v1",
		"CARTERA_GOOGLE_TOKEN_URL":         google.URL + "/token",
		"CARTERA_GOOGLE_ADS_CLIENT_ID":     "e2e.apps.googleusercontent.com",
		"CARTERA_GOOGLE_ADS_CLIENT_SECRET": "e2e-client-secret",
		"CARTERA_GOOGLE_ADS_REFRESH_TOKEN": "1//e2e-refresh",
		"CARTERA_APNS_URL":                 push.URL,
		"CARTERA_APNS_CA_FILE":             push.CAFile,
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--url", srv.URL(), "--admin-token", sdktest.AdminToken, "--person", person)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cartera demo: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	timeline := stdout.String()
	t.Logf("demo timeline:\n%s", timeline)
	for _, want := range []string{"profile merged:", "event in:", "profile resolved", "email \"cart_reminder\" sent over SMTP", "audience add:", "POS purchase:", "journey exit and audience removal", "tier upgrade:", "pass updated:", "push: APNs told 1 device(s)"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}

	// The purchase ends the journey in the commit that stores it: the
	// demo measured it from the till's 200 to the profile without the
	// journey. The bound is a second; it takes milliseconds.
	m := regexp.MustCompile(`journey exit and audience removal: .*, (\S+) after the sale`).FindStringSubmatch(timeline)
	if m == nil {
		t.Fatal("timeline lacks the journey exit latency")
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d > time.Second {
		t.Errorf("journey exit %s after the purchase, want within a second (%v)", m[1], err)
	}

	// The email arrived at the relay, over STARTTLS, for Ana.
	var cartMail bool
	for _, m := range relay.Mails() {
		if len(m.To) == 1 && m.To[0] == email && m.TLS && strings.Contains(string(m.Data), "cart_abandonment") {
			cartMail = true
		}
	}
	if !cartMail {
		t.Errorf("no cart email to %s among %d mails", email, len(relay.Mails()))
	}

	// Not opened: added on both platforms (hashed email); then removed
	// after the purchase (the removal batches for up to a second).
	hashed := sha(email)
	eventually(t, 10*time.Second, "the removals on Meta and Google", func() bool {
		m, g := metaOps(meta.all(), hashed), googleOps(google.all(), hashed)
		return strings.Join(m, ",") == "POST,DELETE" && strings.Join(g, ",") == "ingest,remove"
	})
	// The purchase at the till reaches both as an offline conversion:
	// Meta's Conversions API with the order id as event_id, Google's
	// events:ingest with it as transactionId.
	eventually(t, 10*time.Second, "the conversions on Meta and Google", func() bool {
		return sent(meta.all(), metaEvents, `"event_id":"`+order+`"`) > 0 && sent(google.all(), googleEvents, `"transactionId":"`+order+`"`) > 0
	})
	for _, h := range append(meta.all(), google.all()...) {
		if strings.Contains(h.body, email) {
			t.Errorf("an ad platform got the raw email: %s %s", h.method, h.path)
		}
		switch {
		case h.path == "/token":
			if !strings.Contains(h.body, "grant_type=refresh_token") || !strings.Contains(h.body, "refresh_token=1%2F%2Fe2e-refresh") {
				t.Errorf("token request %s", h.body)
			}
		case strings.HasPrefix(h.path, "/v1/") && !strings.HasPrefix(h.auth, "Bearer google-e2e-token-"):
			t.Errorf("google %s without the OAuth token: %q", h.path, h.auth)
		case strings.HasPrefix(h.path, "/v26.0/") && h.auth != "Bearer meta-e2e-token":
			t.Errorf("meta %s auth %q", h.path, h.auth)
		}
	}
	for _, h := range meta.all() {
		if h.path == metaEvents && (!strings.Contains(h.body, `"action_source":"physical_store"`) || !strings.Contains(h.body, `"em":["`+hashed+`"]`) ||
			!strings.Contains(h.body, `"custom_data":{"value":250,"currency":"EUR","order_id":"`+order+`"}`)) {
			t.Errorf("meta conversion body %s", h.body)
		}
	}
	for _, h := range google.all() {
		if h.path == googleEvents && (!strings.Contains(h.body, `"eventSource":"IN_STORE"`) || !strings.Contains(h.body, `{"emailAddress":"`+hashed+`"}`) ||
			!strings.Contains(h.body, `"conversionValue":250`) || !strings.Contains(h.body, `"adUserData":"CONSENT_GRANTED"`)) {
			t.Errorf("google conversion body %s", h.body)
		}
	}

	// Exactly once: the till sends the same sale again (a retry with a new
	// messageId); once it is stored, no second conversion is queued or sent.
	// The earlier sale, made before Ana said yes to ads, was never sent.
	resend := map[string]any{"messageId": "till-retry-" + person, "anonymousId": "pos-card-" + person, "event": "Order Completed",
		"properties": map[string]any{"order_id": order, "revenue": 250, "currency": "EUR", "channel": "pos", "loyalty_card": cardOf(t, srv)}}
	track(t, srv.URL(), sdktest.PosKey, resend)
	eventually(t, 10*time.Second, "the resent sale on the profile", func() bool {
		return srv.MustProfile(t, "user_id:ana-"+person, 100).EventByMessageID("till-retry-"+person) != nil
	})
	if q := queued(t, srv.URL()); strings.Contains(q, "conversion/") {
		t.Errorf("a conversion is queued after the resent sale: %s", q)
	}
	if m, g := sent(meta.all(), metaEvents, order), sent(google.all(), googleEvents, order); m != 1 || g != 1 {
		t.Errorf("conversions sent for %s: meta %d, google %d; want 1 each", order, m, g)
	}
	if m, g := sent(meta.all(), metaEvents, "pos-"+person+"-1"), sent(google.all(), googleEvents, "pos-"+person+"-1"); m+g != 0 {
		t.Errorf("the sale made before ads consent was sent: meta %d, google %d", m, g)
	}

	// The push reached the iPhone the demo registered, and nothing else
	// was malformed.
	pushes, bad := push.Pushes()
	if len(bad) > 0 {
		t.Errorf("APNs stand-in refused: %v", bad)
	}
	if pushes[hex.EncodeToString([]byte("iphone-"+person))] == 0 {
		t.Errorf("pushes = %v, want the iPhone's token", pushes)
	}
	p := srv.MustProfile(t, "user_id:ana-"+person, 100)
	if p.Traits["tier"] != "gold" {
		t.Errorf("tier = %v, want gold", p.Traits["tier"])
	}
}

// cardOf is the loyalty card on Ana's profile.
func cardOf(t *testing.T, srv *sdktest.Server) string {
	t.Helper()
	p := srv.MustProfile(t, "user_id:ana-"+person, 1)
	for _, id := range p.Identities {
		if id.Kind == "loyalty_card" {
			return id.Value
		}
	}
	t.Fatal("no loyalty card on the profile")
	return ""
}

// track posts one event with a source's write key.
func track(t *testing.T, base, key string, ev map[string]any) {
	t.Helper()
	b, _ := json.Marshal(ev)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/track", bytes.NewReader(b))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("track: %d %s", resp.StatusCode, body)
	}
}

// queued is the admin API's list of queued outbox messages.
func queued(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/outbox?state=queued", nil)
	req.Header.Set("Authorization", "Bearer "+sdktest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("outbox: %d %s", resp.StatusCode, b)
	}
	return string(b)
}
