// Package apnstest is Apple's push service as a test sees it: an HTTP/2 +
// TLS server (httptest) that requires a client certificate issued under a
// given CA, checks each request the way APNs would for a Wallet pass
// update (POST /3/device/<token>, apns-topic, the empty {} payload) and
// counts the pushes per device token. Tokens starting with "dead" are
// answered 410 Unregistered, as for a device that removed the pass.
package apnstest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// StandIn is a running APNs stand-in.
type StandIn struct {
	*httptest.Server
	// CAFile is a PEM file of the server's certificate, for
	// CARTERA_APNS_CA_FILE.
	CAFile string

	topic  string
	mu     sync.Mutex
	pushes map[string]int
	bad    []string
}

// Start runs a stand-in for pushes of topic (the pass type identifier)
// whose clients must present a certificate issued under the CA in
// clientCAFile (PEM), until the test ends.
func Start(tb testing.TB, topic, clientCAFile string) *StandIn {
	tb.Helper()
	b, err := os.ReadFile(clientCAFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		tb.Fatalf("%s: no PEM certificate", clientCAFile)
	}
	s := &StandIn{topic: topic, pushes: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	s.StartTLS()
	tb.Cleanup(s.Close)
	s.CAFile = filepath.Join(tb.TempDir(), "apns-ca.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		tb.Fatal(err)
	}
	return s
}

func (s *StandIn) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	var problems []string
	if r.ProtoMajor != 2 {
		problems = append(problems, "not HTTP/2: "+r.Proto)
	}
	if r.Method != http.MethodPost || !ok || token == "" {
		problems = append(problems, "request "+r.Method+" "+r.URL.Path)
	}
	if got := r.Header.Get("apns-topic"); got != s.topic {
		problems = append(problems, "apns-topic "+got)
	}
	if string(body) != "{}" {
		problems = append(problems, "payload "+string(body))
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || !strings.Contains(r.TLS.PeerCertificates[0].Subject.CommonName, s.topic) {
		problems = append(problems, "client certificate is not the pass certificate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(problems) > 0 {
		s.bad = append(s.bad, strings.Join(problems, "; "))
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"reason":"BadRequest"}`)
		return
	}
	s.pushes[token]++
	if strings.HasPrefix(token, "dead") {
		w.WriteHeader(http.StatusGone)
		_, _ = fmt.Fprintf(w, `{"reason":"Unregistered","timestamp":%d}`, time.Now().UnixMilli())
		return
	}
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
}

// Pushes returns the pushes per device token so far, and the requests
// refused as malformed.
func (s *StandIn) Pushes() (map[string]int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.pushes), append([]string(nil), s.bad...)
}
