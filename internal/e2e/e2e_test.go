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
	metaAudience = "/v21.0/23850000000000000/users"
	googleJobs   = "/v18/customers/1234567890/offlineUserDataJobs"
	person       = "e2e001"
	email        = "ana." + person + "@example.com"
)

// hit is one request a stand-in received.
type hit struct {
	at           time.Time
	method, path string
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
		r.hits = append(r.hits, hit{at: time.Now(), method: req.Method, path: req.URL.Path, body: string(b)})
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

// googleOps are the Customer Match operations ("create", "remove") that
// carried a hashed email.
func googleOps(hits []hit, hashedEmail string) []string {
	var ops []string
	for _, h := range hits {
		if !strings.HasSuffix(h.path, ":addOperations") || !strings.Contains(h.body, hashedEmail) {
			continue
		}
		var body struct {
			Operations []map[string]json.RawMessage `json:"operations"`
		}
		_ = json.Unmarshal([]byte(h.body), &body)
		for _, op := range body.Operations {
			for k := range op {
				ops = append(ops, k)
			}
		}
	}
	return ops
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
	meta := newRecorder(t, func(string) string {
		return `{"audience_id":"23850000000000000","num_received":1,"num_invalid_entries":0}`
	})
	var jobs int
	var jobsMu sync.Mutex
	google := newRecorder(t, func(path string) string {
		switch {
		case strings.HasSuffix(path, ":create"):
			jobsMu.Lock()
			defer jobsMu.Unlock()
			jobs++
			return fmt.Sprintf(`{"resourceName":"customers/1234567890/offlineUserDataJobs/%d"}`, jobs)
		case strings.HasSuffix(path, ":run"):
			return `{"name":"customers/1234567890/operations/op"}`
		}
		return `{}`
	})
	srv := sdktest.Start(t, bin, sdktest.Options{Data: data, Env: map[string]string{
		"CARTERA_LOG_LEVEL":                  "info",
		"CARTERA_DEV_CLOCK":                  "1",
		"CARTERA_SMTP_URL":                   relay.URL,
		"CARTERA_SMTP_CA_FILE":               relay.CAFile,
		"CARTERA_META_URL":                   meta.URL + "/v21.0",
		"CARTERA_META_ACCESS_TOKEN":          "meta-e2e-token",
		"CARTERA_GOOGLE_ADS_URL":             google.URL + "/v18",
		"CARTERA_GOOGLE_ADS_ACCESS_TOKEN":    "google-e2e-token",
		"CARTERA_GOOGLE_ADS_DEVELOPER_TOKEN": "google-e2e-dev-token",
		"CARTERA_APNS_URL":                   push.URL,
		"CARTERA_APNS_CA_FILE":               push.CAFile,
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
		return strings.Join(m, ",") == "POST,DELETE" && strings.Join(g, ",") == "create,remove"
	})
	for _, h := range append(meta.all(), google.all()...) {
		if strings.Contains(h.body, email) {
			t.Errorf("an ad platform got the raw email: %s %s", h.method, h.path)
		}
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
