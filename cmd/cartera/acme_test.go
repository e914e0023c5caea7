package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// TestACMECertificateFromPebble gets a real certificate over ACME: serve
// with --acme-host against Pebble, Let's Encrypt's own test CA, run in the
// test with its real validation (a TLS-ALPN-01 challenge it checks by
// connecting to serve's listener, the host name resolved by a DNS server
// of the test to loopback). The first handshake naming the host waits for
// the order and gets a certificate that chains to Pebble's root; the
// gateway then answers HTTPS with it, with HSTS, and a second handshake
// does not ask the CA again. The directory's HTTPS is trusted through
// tls.acme_ca_file, as a private CA's would be.
func TestACMECertificateFromPebble(t *testing.T) {
	t.Setenv("PEBBLE_VA_NOSLEEP", "1") // the VA validates at once, not after up to 15 s
	dnsAddr := loopbackDNS(t)

	// The directory answers once Pebble is built, which needs serve's port.
	var handler atomic.Pointer[http.Handler]
	var asked atomic.Int64
	dir := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		h := handler.Load()
		if h == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	dir.StartTLS()
	t.Cleanup(dir.Close)
	caFile := filepath.Join(t.TempDir(), "directory-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dir.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	const host = "shop.example.com"
	addr := runServe(t, map[string]string{
		"CARTERA_ACME_DIRECTORY_URL": dir.URL + wfe.DirectoryPath,
		"CARTERA_ACME_CA_FILE":       caFile,
		"CARTERA_ACME_EMAIL":         "ops@shop.example.com",
	}, "--acme-host", host)
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}

	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "rsa", 0, 1, map[string]ca.Profile{"default": {Description: "the default profile"}})
	validator := va.New(logger, 0, port, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	handler.Store(&h)

	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	hello := func() *x509.Certificate {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS handshake for %s: %v", host, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	leaf := hello()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Errorf("certificate for %v, want [%s]", leaf.DNSNames, host)
	}
	if leaf.Issuer.CommonName == leaf.Subject.CommonName {
		t.Errorf("certificate issued by itself (%s)", leaf.Issuer.CommonName)
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") != hstsMaxAge {
		t.Errorf("GET /healthz over the ACME certificate: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}

	before := asked.Load()
	if again := hello(); !again.Equal(leaf) {
		t.Error("a second handshake got another certificate")
	}
	if n := asked.Load() - before; n != 0 {
		t.Errorf("the CA was asked %d more times for a certificate the gateway holds", n)
	}
}

// loopbackDNS serves DNS over TCP on loopback (as Pebble's VA asks it)
// and answers every A question with 127.0.0.1, and every other with no
// record (no CAA: any CA may issue).
func loopbackDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}
