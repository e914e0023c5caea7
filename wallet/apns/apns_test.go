package apns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sideshow/apns2"

	"cartera/wallet/apns"
)

const testTopic = "pass.cartera.test"

// oidUserID is the X.500 UID in which Apple's pass type certificates name
// the pass type identifier.
var oidUserID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// pki is a test CA and a pass type certificate it issued.
type pki struct {
	pool *x509.CertPool
	cert tls.Certificate
}

// newPKI makes a CA and a client certificate shaped like Apple's pass
// type certificates. ECDSA keeps it fast.
func newPKI(tb testing.TB) pki {
	tb.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Cartera Test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject: pkix.Name{
			CommonName:         "Pass Type ID: " + testTopic,
			OrganizationalUnit: []string{"CARTERATST"},
			ExtraNames:         []pkix.AttributeTypeAndValue{{Type: oidUserID, Value: testTopic}},
		},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{pool: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// standIn is an APNs stand-in: HTTP/2 over TLS that requires a client
// certificate from the test CA.
type standIn struct {
	srv   *httptest.Server
	conns atomic.Int32 // TCP connections accepted

	mu          sync.Mutex
	pushed      map[string]int // pushes per token
	served      int            // requests
	inflight    int
	maxInflight int
}

type standInOptions struct {
	// maxStreams is the server's MAX_CONCURRENT_STREAMS; 0 keeps Go's 250.
	maxStreams int
	// gate holds requests, all but the first, until this many are in
	// flight at once, so a test can tell the client reached its limit;
	// 0 holds none.
	gate int
	// answer writes the answer; nil answers 200.
	answer func(w http.ResponseWriter, r *http.Request, token string)
	// http1 turns HTTP/2 off.
	http1 bool
}

func newStandIn(tb testing.TB, p pki, opt standInOptions) *standIn {
	tb.Helper()
	s := &standIn{pushed: map[string]int{}}
	gate := make(chan struct{})
	closeGate := sync.OnceFunc(func() { close(gate) })
	if opt.gate == 0 {
		closeGate()
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
		switch {
		case r.ProtoMajor != 2:
			tb.Errorf("protocol %s, want HTTP/2", r.Proto)
		case r.Method != http.MethodPost:
			tb.Errorf("method %s, want POST", r.Method)
		case !ok || token == "" || strings.Contains(token, "/"):
			tb.Errorf("path %q, want /3/device/<token>", r.URL.Path)
		case r.Header.Get("apns-topic") != testTopic:
			tb.Errorf("apns-topic %q, want %q", r.Header.Get("apns-topic"), testTopic)
		case r.TLS == nil || len(r.TLS.PeerCertificates) == 0:
			tb.Errorf("no client certificate")
		case r.TLS.PeerCertificates[0].Subject.CommonName != "Pass Type ID: "+testTopic:
			tb.Errorf("client certificate %q, want the pass type certificate", r.TLS.PeerCertificates[0].Subject)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// The client gave up on the stream (a push whose context
			// ended): nothing was delivered, nothing to check.
			return
		}
		if string(body) != "{}" {
			tb.Errorf("body %q, want {}", body)
		}

		s.mu.Lock()
		s.pushed[token]++
		s.served++
		// The client sends the first request on a connection alone.
		first := s.served == 1
		s.inflight++
		s.maxInflight = max(s.maxInflight, s.inflight)
		if s.inflight == opt.gate {
			closeGate()
		}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		}()
		if !first {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if opt.answer != nil {
			opt.answer(w, r, token)
		}
	}))
	s.srv.EnableHTTP2 = !opt.http1
	// Failed handshakes are what some tests are about: keep them quiet.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opt.maxStreams > 0 {
		s.srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: opt.maxStreams}
	}
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	s.srv.StartTLS()
	tb.Cleanup(s.srv.Close)
	return s
}

// config returns a valid config for the stand-in.
func (s *standIn) config(p pki) apns.Config {
	roots := x509.NewCertPool()
	roots.AddCert(s.srv.Certificate())
	cfg := apns.DefaultConfig()
	cfg.BaseURL = s.srv.URL
	cfg.Topic = testTopic
	cfg.Certificate = p.cert
	cfg.RootCAs = roots
	return cfg
}

func (s *standIn) counts() (pushed map[string]int, maxInflight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pushed = make(map[string]int, len(s.pushed))
	for k, v := range s.pushed {
		pushed[k] = v
	}
	return pushed, s.maxInflight
}

func newClient(tb testing.TB, cfg apns.Config) *apns.Client {
	tb.Helper()
	c, err := apns.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func tokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%064x", i+1)
	}
	return out
}

// checkResult checks what holds for every result.
func checkResult(t *testing.T, i int, r apns.Result, token string) {
	t.Helper()
	if r.Token != token {
		t.Errorf("result %d is for %q, want %q", i, r.Token, token)
	}
	if r.Err != nil && strings.Contains(r.Err.Error(), token) && token != "" {
		t.Errorf("result %d: error %q quotes the token", i, r.Err)
	}
}

func TestPushDelivered(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name        string
		tokens      int
		concurrency int
		maxStreams  int // 0: Go's 250
		wantMax     int // pushes in flight at most, reached at least once
	}{
		{name: "burst past the server's streams", tokens: 1000, concurrency: apns.DefaultConcurrency, wantMax: 250},
		{name: "concurrency past few streams", tokens: 100, concurrency: 50, maxStreams: 4, wantMax: 4},
		{name: "concurrency under the streams", tokens: 100, concurrency: 8, wantMax: 8},
		{name: "one at a time", tokens: 20, concurrency: 1, wantMax: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStandIn(t, p, standInOptions{maxStreams: tt.maxStreams, gate: tt.wantMax})
			cfg := s.config(p)
			cfg.Concurrency = tt.concurrency
			c := newClient(t, cfg)
			toks := tokens(tt.tokens)

			for round := 1; round <= 2; round++ {
				results := c.Push(t.Context(), toks)
				if len(results) != len(toks) {
					t.Fatalf("round %d: %d results for %d tokens", round, len(results), len(toks))
				}
				for i, r := range results {
					checkResult(t, i, r, toks[i])
					if r.Err != nil || r.Status != http.StatusOK || r.Unregistered() || r.Retryable() {
						t.Errorf("round %d, result %d: %+v, want delivered", round, i, r)
					}
				}
				pushed, maxInflight := s.counts()
				if len(pushed) != len(toks) {
					t.Errorf("round %d: server saw %d tokens, want %d", round, len(pushed), len(toks))
				}
				for _, tok := range toks {
					if pushed[tok] != round {
						t.Errorf("round %d: token %s pushed %d times, want %d", round, tok[56:], pushed[tok], round)
					}
				}
				if maxInflight != tt.wantMax {
					t.Errorf("round %d: up to %d pushes in flight, want %d", round, maxInflight, tt.wantMax)
				}
			}
			if n := s.conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

func TestPushAnswers(t *testing.T) {
	const when = 1700000000000 // ms, as APNs writes timestamps
	tok := func(s string) string { return strings.Repeat("0", 64-len(s)) + s }
	tests := []struct {
		name       string
		token      string
		status     int
		body       string
		wantStatus int
		wantReason string
		wantUnreg  bool
		wantRetry  bool
		wantErr    error
		notSent    bool
	}{
		{name: "delivered", token: tok("a1"), status: 200, wantStatus: 200},
		{name: "unregistered", token: tok("a2"), status: 410, body: fmt.Sprintf(`{"reason":"Unregistered","timestamp":%d}`, int64(when)),
			wantStatus: 410, wantReason: apns2.ReasonUnregistered, wantUnreg: true, wantErr: apns.ErrRejected},
		{name: "expired token", token: tok("a3"), status: 410, body: `{"reason":"ExpiredToken"}`,
			wantStatus: 410, wantReason: apns2.ReasonExpiredToken, wantUnreg: true, wantErr: apns.ErrRejected},
		{name: "bad device token", token: tok("a4"), status: 400, body: `{"reason":"BadDeviceToken"}`,
			wantStatus: 400, wantReason: apns2.ReasonBadDeviceToken, wantUnreg: true, wantErr: apns.ErrRejected},
		{name: "token not for topic", token: tok("a5"), status: 400, body: `{"reason":"DeviceTokenNotForTopic"}`,
			wantStatus: 400, wantReason: apns2.ReasonDeviceTokenNotForTopic, wantUnreg: true, wantErr: apns.ErrRejected},
		{name: "too many requests", token: tok("a6"), status: 429, body: `{"reason":"TooManyRequests"}`,
			wantStatus: 429, wantReason: apns2.ReasonTooManyRequests, wantRetry: true, wantErr: apns.ErrRejected},
		{name: "internal server error", token: tok("a7"), status: 500, body: `{"reason":"InternalServerError"}`,
			wantStatus: 500, wantReason: apns2.ReasonInternalServerError, wantRetry: true, wantErr: apns.ErrRejected},
		{name: "shutdown", token: tok("a8"), status: 503, body: `{"reason":"Shutdown"}`,
			wantStatus: 503, wantReason: apns2.ReasonShutdown, wantRetry: true, wantErr: apns.ErrRejected},
		{name: "bad topic", token: tok("a9"), status: 400, body: `{"reason":"BadTopic"}`,
			wantStatus: 400, wantReason: apns2.ReasonBadTopic, wantErr: apns.ErrRejected},
		{name: "bad certificate", token: tok("aa"), status: 403, body: `{"reason":"BadCertificate"}`,
			wantStatus: 403, wantReason: apns2.ReasonBadCertificate, wantErr: apns.ErrRejected},
		// apns2 drops the status when the body is not JSON (a proxy's
		// error page): no answer, so retryable.
		{name: "answer not JSON", token: tok("ab"), status: 502, body: "<html>bad gateway</html>", wantRetry: true},
		{name: "not hex", token: "../../x", wantUnreg: true, wantErr: apns.ErrBadToken, notSent: true},
		{name: "empty", token: "", wantUnreg: true, wantErr: apns.ErrBadToken, notSent: true},
	}

	p := newPKI(t)
	byToken := map[string]int{}
	var toks []string
	for i, tt := range tests {
		byToken[tt.token] = i
		toks = append(toks, tt.token)
	}
	s := newStandIn(t, p, standInOptions{answer: func(w http.ResponseWriter, _ *http.Request, token string) {
		tt := tests[byToken[token]]
		w.Header().Set("apns-id", "ABCD")
		w.WriteHeader(tt.status)
		io.WriteString(w, tt.body)
	}})
	c := newClient(t, s.config(p))
	results := c.Push(t.Context(), toks)
	pushed, _ := s.counts()

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := results[i]
			checkResult(t, i, r, tt.token)
			if r.Status != tt.wantStatus || r.Reason != tt.wantReason {
				t.Errorf("answer %d %q, want %d %q", r.Status, r.Reason, tt.wantStatus, tt.wantReason)
			}
			if got := r.Unregistered(); got != tt.wantUnreg {
				t.Errorf("Unregistered() = %v, want %v", got, tt.wantUnreg)
			}
			if got := r.Retryable(); got != tt.wantRetry {
				t.Errorf("Retryable() = %v, want %v", got, tt.wantRetry)
			}
			switch {
			case tt.wantStatus == 200 && r.Err != nil:
				t.Errorf("error %v, want none", r.Err)
			case tt.wantStatus != 200 && r.Err == nil:
				t.Error("no error, want one")
			case tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr):
				t.Errorf("error %v, want %v", r.Err, tt.wantErr)
			}
			if sent := pushed[tt.token] > 0; sent == tt.notSent {
				t.Errorf("sent = %v, want %v", sent, !tt.notSent)
			}
			wantTime := time.Time{}
			if tt.name == "unregistered" {
				wantTime = time.UnixMilli(when)
			}
			if !r.Timestamp.Equal(wantTime) {
				t.Errorf("timestamp %v, want %v", r.Timestamp, wantTime)
			}
		})
	}
}

func TestPushHandshakeFails(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name   string
		opt    standInOptions
		config func(s *standIn) apns.Config
	}{
		{"client certificate from another CA", standInOptions{}, func(s *standIn) apns.Config {
			cfg := s.config(p)
			cfg.Certificate = newPKI(t).cert
			return cfg
		}},
		{"server not trusted", standInOptions{}, func(s *standIn) apns.Config {
			cfg := s.config(p)
			cfg.RootCAs = x509.NewCertPool()
			return cfg
		}},
		{"server without HTTP/2", standInOptions{http1: true}, func(s *standIn) apns.Config {
			return s.config(p)
		}},
	}
	for _, tt := range tests {
		for _, concurrency := range []int{1, apns.DefaultConcurrency} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", tt.name, concurrency), func(t *testing.T) {
				s := newStandIn(t, p, tt.opt)
				cfg := tt.config(s)
				cfg.Concurrency = concurrency
				c := newClient(t, cfg)
				toks := tokens(20)
				for i, r := range c.Push(t.Context(), toks) {
					checkResult(t, i, r, toks[i])
					if r.Status != 0 || !errors.Is(r.Err, apns.ErrNoConnection) || !r.Retryable() || r.Unregistered() {
						t.Errorf("result %d: %+v, want no connection, retryable", i, r)
					}
				}
				if pushed, _ := s.counts(); len(pushed) != 0 {
					t.Errorf("server answered %d pushes, want none", len(pushed))
				}
				// The first push tries two connections; the ones waiting
				// for those share their failure, and the rest of the call
				// gives up without dialling.
				n := int(s.conns.Load())
				if concurrency == 1 && n != 2 || n >= len(toks) {
					t.Errorf("%d connections for %d pushes, want 2 one at a time, a few at once", n, len(toks))
				}
				t.Logf("%d connections", n)
			})
		}
	}
}

func TestPushReconnects(t *testing.T) {
	p := newPKI(t)
	toks := tokens(50)
	delivered := func(t *testing.T, results []apns.Result) {
		t.Helper()
		for i, r := range results {
			checkResult(t, i, r, toks[i])
			if r.Err != nil {
				t.Errorf("result %d: %v, want delivered", i, r.Err)
			}
		}
	}

	t.Run("after the server closed the connection", func(t *testing.T) {
		s := newStandIn(t, p, standInOptions{})
		c := newClient(t, s.config(p))
		delivered(t, c.Push(t.Context(), toks))
		s.srv.CloseClientConnections()
		delivered(t, c.Push(t.Context(), toks))
		if n := s.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})

	t.Run("connection lost with pushes in flight", func(t *testing.T) {
		var s *standIn
		var answers atomic.Int32
		// Past the first push, the others are in flight together; the
		// first answer among them closes the connection under them.
		s = newStandIn(t, p, standInOptions{gate: len(toks) - 1, answer: func(http.ResponseWriter, *http.Request, string) {
			if answers.Add(1) == 2 {
				s.srv.CloseClientConnections()
			}
		}})
		c := newClient(t, s.config(p))
		delivered(t, c.Push(t.Context(), toks))
		if n := s.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})

	t.Run("after Close", func(t *testing.T) {
		s := newStandIn(t, p, standInOptions{})
		c := newClient(t, s.config(p))
		delivered(t, c.Push(t.Context(), toks))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		delivered(t, c.Push(t.Context(), toks))
		if n := s.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
}

func TestPushContext(t *testing.T) {
	p := newPKI(t)
	toks := tokens(10)

	t.Run("cancelled before", func(t *testing.T) {
		s := newStandIn(t, p, standInOptions{})
		c := newClient(t, s.config(p))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for i, r := range c.Push(ctx, toks) {
			checkResult(t, i, r, toks[i])
			if !errors.Is(r.Err, context.Canceled) || r.Status != 0 || !r.Retryable() {
				t.Errorf("result %d: %+v, want cancelled, retryable", i, r)
			}
		}
		if n := s.conns.Load(); n != 0 {
			t.Errorf("%d connections, want none", n)
		}
	})

	t.Run("cancelled in flight", func(t *testing.T) {
		arrived := make(chan struct{})
		var once sync.Once
		s := newStandIn(t, p, standInOptions{answer: func(_ http.ResponseWriter, r *http.Request, _ string) {
			once.Do(func() { close(arrived) })
			<-r.Context().Done()
		}})
		c := newClient(t, s.config(p))
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-arrived
			cancel()
		}()
		for i, r := range c.Push(ctx, toks) {
			checkResult(t, i, r, toks[i])
			if !errors.Is(r.Err, context.Canceled) || r.Status != 0 || !r.Retryable() {
				t.Errorf("result %d: %+v, want cancelled, retryable", i, r)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		s := newStandIn(t, p, standInOptions{answer: func(_ http.ResponseWriter, r *http.Request, _ string) {
			<-r.Context().Done()
		}})
		cfg := s.config(p)
		cfg.Timeout = 50 * time.Millisecond
		c := newClient(t, cfg)
		for i, r := range c.Push(t.Context(), toks) {
			checkResult(t, i, r, toks[i])
			if !errors.Is(r.Err, context.DeadlineExceeded) || r.Status != 0 || !r.Retryable() {
				t.Errorf("result %d: %+v, want deadline exceeded, retryable", i, r)
			}
		}
	})
}

func TestPushNoTokens(t *testing.T) {
	p := newPKI(t)
	s := newStandIn(t, p, standInOptions{})
	c := newClient(t, s.config(p))
	if got := c.Push(t.Context(), nil); len(got) != 0 {
		t.Errorf("Push(nil) = %v, want no results", got)
	}
	if n := s.conns.Load(); n != 0 {
		t.Errorf("%d connections, want none", n)
	}
}

func TestConfigValidate(t *testing.T) {
	p := newPKI(t)
	valid := apns.DefaultConfig()
	valid.Topic = testTopic
	valid.Certificate = p.cert

	tests := []struct {
		name    string
		change  func(*apns.Config)
		wantErr string // a prefix naming the field; "" for valid
	}{
		{"valid", func(*apns.Config) {}, ""},
		{"host and port", func(c *apns.Config) { c.BaseURL = "https://127.0.0.1:8443/" }, ""},
		{"no base url", func(c *apns.Config) { c.BaseURL = "" }, "base_url"},
		{"plain http", func(c *apns.Config) { c.BaseURL = "http://api.push.apple.com" }, "base_url"},
		{"base url with path", func(c *apns.Config) { c.BaseURL = "https://api.push.apple.com/3/device" }, "base_url"},
		{"base url unparsable", func(c *apns.Config) { c.BaseURL = "https://%zz" }, "base_url"},
		{"no topic", func(c *apns.Config) { c.Topic = "" }, "topic"},
		{"app bundle id as topic", func(c *apns.Config) { c.Topic = "com.cartera.app" }, "topic"},
		{"no certificate", func(c *apns.Config) { c.Certificate = tls.Certificate{} }, "certificate"},
		{"no private key", func(c *apns.Config) { c.Certificate.PrivateKey = nil }, "certificate"},
		{"no concurrency", func(c *apns.Config) { c.Concurrency = 0 }, "concurrency"},
		{"no timeout", func(c *apns.Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.change(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.wantErr)
			}
			c, err := apns.New(cfg)
			if (err == nil) != (tt.wantErr == "") {
				t.Fatalf("New() error = %v, want error %v", err, tt.wantErr != "")
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := apns.DefaultConfig()
	if cfg.BaseURL != apns2.HostProduction {
		t.Errorf("BaseURL = %q, want %q: passes are pushed through production", cfg.BaseURL, apns2.HostProduction)
	}
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "topic") {
		t.Errorf("Validate() = %v, want the missing topic named", err)
	}
}

// BenchmarkPush pushes through a stand-in that takes 20 ms to answer, as
// APNs might, and allows 1000 streams, as APNs does, in calls to Push of
// 1000 tokens: one caller after another, and several callers at once
// sharing the client (as an outbox with several workers would).
func BenchmarkPush(b *testing.B) {
	const batch = 1000
	p := newPKI(b)
	s := newStandIn(b, p, standInOptions{maxStreams: 1000, answer: func(http.ResponseWriter, *http.Request, string) {
		time.Sleep(20 * time.Millisecond)
	}})
	toks := tokens(batch)
	for _, callers := range []int{1, 4} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			c := newClient(b, s.config(p))
			c.Push(b.Context(), toks[:1]) // connect outside the timing
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for {
						n := min(batch, b.N-int(next.Add(batch)-batch))
						if n <= 0 {
							return
						}
						for _, r := range c.Push(b.Context(), toks[:n]) {
							if r.Err != nil {
								b.Error(r.Err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
		})
	}
}
