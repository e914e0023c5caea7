package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cartera/channels/email"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cartera test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// runServe starts serve with vars and args after the defaults, and returns
// the address it listens on.
func runServe(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	all := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken, "CARTERA_LOG_LEVEL": "warn"}
	for k, v := range vars {
		all[k] = v
	}
	withTestClock(t, all)
	addr := make(chan string, 1)
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(all), OnListen: func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"}, args...))
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return a
	case err := <-done:
		cancel()
		t.Fatalf("serve exited: %v", err)
	case <-time.After(startTimeout):
		cancel()
		t.Fatal("server did not start")
	}
	return ""
}

// TestTLSFromFiles: --tls-cert and --tls-key serve HTTPS to a real TLS
// client that trusts the certificate, with HSTS; plain HTTP gets nothing
// from that port.
func TestTLSFromFiles(t *testing.T) {
	t.Parallel()
	cert, key, pool := selfSigned(t)
	addr := runServe(t, nil, "--tls-cert", cert, "--tls-key", key)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Errorf("Strict-Transport-Security %q over TLS", h)
	}
	if h := resp.Header.Get("X-Content-Type-Options"); h != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", h)
	}
	req, _ := http.NewRequest("POST", "https://"+addr+"/v1/track", strings.NewReader(`{"anonymousId":"tls1","event":"Product Viewed"}`))
	req.Header.Set("Authorization", basic("web_dev_write_key"))
	req.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("track over TLS: %d %s", resp.StatusCode, b)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}
	// A client that does not trust the certificate refuses it.
	if _, err := http.Get("https://" + addr + "/healthz"); err == nil {
		t.Error("an untrusted self-signed certificate was accepted")
	}
}

// TestACMEWiring checks what can be checked offline: the manager asks the
// configured CA for a certificate of the ACME host on the first TLS
// handshake naming it, and never for another name. Getting a real
// certificate needs a public host and a CA, which a test has not.
func TestACMEWiring(t *testing.T) {
	t.Parallel()
	var asked atomic.Int64
	ca := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		// A refusal the ACME client does not retry (a 5xx it would, with
		// backoff, for as long as the handshake waits).
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(ca.Close)
	addr := runServe(t, map[string]string{"CARTERA_ACME_DIRECTORY_URL": ca.URL + "/directory", "CARTERA_ACME_EMAIL": "ops@shop.example.com"}, "--acme-host", "shop.example.com")
	hello := func(name string) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // only the handshake's outcome is checked
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := hello("other.example.com"); err == nil {
		t.Error("a handshake for a host not in acme_host succeeded")
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the CA was asked %d times for a host not in acme_host", n)
	}
	if err := hello("shop.example.com"); err == nil {
		t.Error("a handshake succeeded without a certificate from the CA")
	}
	if asked.Load() == 0 {
		t.Error("the handshake for acme_host did not reach the configured CA")
	}
}

func TestTLSConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg TLSConfig
		err string
	}{
		{TLSConfig{}, ""},
		{TLSConfig{Cert: "c.pem", Key: "k.pem"}, ""},
		{TLSConfig{ACMEHost: "shop.example.com", ACMEHTTPAddr: ":80"}, ""},
		{TLSConfig{Cert: "c.pem"}, "tls.cert, tls.key: set both"},
		{TLSConfig{Cert: "c.pem", Key: "k.pem", ACMEHost: "shop.example.com"}, "not both"},
		{TLSConfig{ACMEHost: "https://shop.example.com"}, "tls.acme_host: want a public host name"},
		{TLSConfig{ACMEHost: "127.0.0.1"}, "tls.acme_host"},
		{TLSConfig{ACMEHost: "localhost"}, "tls.acme_host"},
		{TLSConfig{ACMEHTTPAddr: ":80"}, "set tls.acme_host too"},
		{TLSConfig{ACMECAFile: "ca.pem"}, "set tls.acme_host too"},
		{TLSConfig{ACMEHost: "shop.example.com", ACMEHTTPAddr: "80"}, "tls.acme_http_addr"},
	} {
		err := c.cfg.Validate()
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.err)
		}
	}
	// A key that is not the certificate's stops start-up, naming both.
	cert, _, _ := selfSigned(t)
	_, key2, _ := selfSigned(t)
	var errb strings.Builder
	m := &Main{Stdout: io.Discard, Stderr: &errb, Getenv: envOf(map[string]string{"CARTERA_TLS_CERT": cert, "CARTERA_TLS_KEY": key2})}
	err := m.Run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"})
	if err == nil || !strings.Contains(err.Error(), "tls.cert, tls.key") {
		t.Errorf("mismatched key: %v", err)
	}
	// A CA file that holds no certificate stops start-up, naming it.
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	m = &Main{Stdout: io.Discard, Stderr: &errb, Getenv: envOf(map[string]string{"CARTERA_ACME_HOST": "shop.example.com", "CARTERA_ACME_CA_FILE": notPEM})}
	err = m.Run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"})
	if err == nil || !strings.Contains(err.Error(), "tls.acme_ca_file: "+notPEM+" holds no PEM certificate") {
		t.Errorf("a CA file with no certificate: %v", err)
	}
}

// TestPageSecurityHeaders: the unsubscribe page carries a CSP, refuses
// framing and sends no Referer; no HSTS over plain HTTP.
func TestPageSecurityHeaders(t *testing.T) {
	t.Parallel()
	const secret = "page-test-tracking-secret-0123456789"
	s := startServer(t, map[string]string{"CARTERA_TRACKING_SECRET": secret})
	tr := &email.Tracker{Secret: []byte(secret), BaseURL: s.base}
	link := tr.UnsubscribeURL(email.MessageInfo{ProfileID: "0123456789abcdef01234567", Key: "page-test"})
	for _, method := range []string{"GET", "POST"} {
		r := s.do(t, method, strings.TrimPrefix(link, s.base), nil, nil)
		if !strings.Contains(r.raw, "<h1>") {
			t.Fatalf("%s unsubscribe page: %d %s", method, r.status, r.raw)
		}
		for h, want := range map[string]string{
			"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
			"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
		} {
			if !strings.Contains(r.header.Get(h), want) {
				t.Errorf("%s unsubscribe page: %s %q, want %q", method, h, r.header.Get(h), want)
			}
		}
		if !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("CSP %q does not default to none", r.header.Get("Content-Security-Policy"))
		}
		if h := r.header.Get("Strict-Transport-Security"); h != "" {
			t.Errorf("HSTS over plain HTTP: %q", h)
		}
	}
}

// TestTrackingKeyRotation: after a rotation set in the environment, an
// unsubscribe link of mail sent under the old key still works, as does
// one of the new key; a link naming a key serve does not hold does not.
func TestTrackingKeyRotation(t *testing.T) {
	t.Parallel()
	const oldSecret, newSecret = "the-old-tracking-secret-0123456789", "the-new-tracking-secret-0123456789"
	s := startServer(t, map[string]string{
		"CARTERA_TRACKING_SECRET": newSecret, "CARTERA_TRACKING_KEY_ID": "k2", "CARTERA_TRACKING_PREVIOUS": ":" + oldSecret,
	})
	info := email.MessageInfo{ProfileID: "0123456789abcdef01234567", Key: "rotation-test"}
	links := map[string]string{
		"old key":     (&email.Tracker{Secret: []byte(oldSecret), BaseURL: s.base}).UnsubscribeURL(info),
		"new key":     (&email.Tracker{Secret: []byte(newSecret), KeyID: "k2", BaseURL: s.base}).UnsubscribeURL(info),
		"unknown key": (&email.Tracker{Secret: []byte(newSecret), KeyID: "k9", BaseURL: s.base}).UnsubscribeURL(info),
	}
	for name, link := range links {
		r := s.do(t, "GET", strings.TrimPrefix(link, s.base), nil, nil)
		if ok := r.status == 200; ok != (name != "unknown key") {
			t.Errorf("%s unsubscribe link: %d %s", name, r.status, r.raw)
		}
	}
}

// TestPassDownloadLinkAfterRotation: a pass download link sent before the
// tracking secret was rotated still downloads the pass while the old
// secret is kept in tracking_previous, and no longer once it is dropped.
func TestPassDownloadLinkAfterRotation(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data", "cartera.db")
	const oldSecret, newSecret = "the-old-tracking-secret-0123456789", "the-new-tracking-secret-0123456789"
	var link string
	t.Run("before", func(t *testing.T) {
		s := startServerAt(t, data, map[string]string{"CARTERA_TRACKING_SECRET": oldSecret})
		mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1","traits":{"first_name":"Ana"}}`))
		rep := s.admin(t, "POST", "/v1/profiles/user_id:u1/passes")
		if rep.status != 201 {
			t.Fatalf("issue: %d %s", rep.status, rep.raw)
		}
		u, err := url.Parse(rep.body["apple_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		link = u.RequestURI()
	})
	for _, c := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"rotated, old key kept", map[string]string{"CARTERA_TRACKING_SECRET": newSecret, "CARTERA_TRACKING_KEY_ID": "k2", "CARTERA_TRACKING_PREVIOUS": ":" + oldSecret}, 200},
		{"old key dropped", map[string]string{"CARTERA_TRACKING_SECRET": newSecret, "CARTERA_TRACKING_KEY_ID": "k2"}, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startServerAt(t, data, c.env)
			if resp, _ := get(t, s.base+link, nil); resp.StatusCode != c.want {
				t.Errorf("download link of before the rotation: %s, want %d", resp.Status, c.want)
			}
		})
	}
}
