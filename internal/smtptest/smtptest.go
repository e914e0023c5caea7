// Package smtptest runs a real SMTP relay in a test: go-smtp on a random
// port of 127.0.0.1, with STARTTLS (or TLS from the first byte, smtps) on
// a certificate of a CA made for the test, written to a file the client
// can trust, and AUTH PLAIN, which go-smtp allows only after TLS. It keeps
// every mail it accepts, and answers by the recipient's local part:
//
//	bounce@…   550 on RCPT (a hard bounce)
//	busy@…     451 on RCPT (try again later)
//	reject@…   554 after DATA (refused as spam)
//	anything else is accepted.
//
//	relay := smtptest.Start(t, "cartera", "secret")
//	// CARTERA_SMTP_URL=relay.URL, CARTERA_SMTP_CA_FILE=relay.CAFile
//	mails := relay.Mails()
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the relay accepted.
type Mail struct {
	From string
	To   []string
	Data []byte
	// TLS says whether the session had switched to TLS; User is who
	// authenticated.
	TLS  bool
	User string
}

// Relay is a running SMTP relay.
type Relay struct {
	// URL is smtp://user:pass@127.0.0.1:port (smtps:// with ImplicitTLS).
	URL string
	// Addr is the relay's host:port.
	Addr string
	// CAFile is a PEM file of the CA that signed the relay's certificate;
	// CA holds the same certificate.
	CAFile string
	CA     *x509.CertPool

	user, pass string
	mu         sync.Mutex
	mails      []Mail
	conns      map[*smtp.Conn]bool
	delay      time.Duration
	receiving  int
	closed     chan struct{}
}

// Options are the relay's credentials and TLS mode.
type Options struct {
	User, Pass string
	// ImplicitTLS makes it an smtps:// relay (TLS from the first byte)
	// instead of STARTTLS.
	ImplicitTLS bool
	// Delay is how long the relay takes over each mail's data before it
	// answers (a slow relay); SetDelay changes it.
	Delay time.Duration
}

// Start runs a STARTTLS relay until the test ends.
func Start(tb testing.TB, user, pass string) *Relay {
	tb.Helper()
	return StartWith(tb, Options{User: user, Pass: pass})
}

// StartWith runs a relay with opts until the test ends.
func StartWith(tb testing.TB, opts Options) *Relay {
	tb.Helper()
	cert, caPEM := Certificate(tb)
	rl := &Relay{CAFile: filepath.Join(tb.TempDir(), "relay-ca.pem"), CA: x509.NewCertPool(), user: opts.User, pass: opts.Pass, conns: map[*smtp.Conn]bool{}, delay: opts.Delay, closed: make(chan struct{})}
	rl.CA.AppendCertsFromPEM(caPEM)
	if err := os.WriteFile(rl.CAFile, caPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		rl.mu.Lock()
		rl.conns[c] = true // a session starts again after STARTTLS
		rl.mu.Unlock()
		return &session{relay: rl, conn: c}, nil
	}))
	srv.Domain = "localhost"
	// Clients that drop the connection on purpose (a bad certificate)
	// would fill the test output.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	scheme := "smtp"
	if opts.ImplicitTLS {
		ln, scheme = tls.NewListener(ln, tlsConf), "smtps"
	} else {
		srv.TLSConfig = tlsConf
	}
	rl.Addr = ln.Addr().String()
	rl.URL = (&url.URL{Scheme: scheme, User: url.UserPassword(opts.User, opts.Pass), Host: rl.Addr}).String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			tb.Errorf("smtp relay: %v", err)
		}
	}()
	tb.Cleanup(func() {
		close(rl.closed)
		_ = srv.Close()
		<-done
	})
	return rl
}

// SetDelay changes how long the relay takes over each mail from now on.
func (rl *Relay) SetDelay(d time.Duration) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.delay = d
}

// Receiving counts the mails whose data the relay is taking in now (held
// by the delay).
func (rl *Relay) Receiving() int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.receiving
}

// Connections counts the clients' connections so far.
func (rl *Relay) Connections() int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return len(rl.conns)
}

// Mails returns the mails accepted so far.
func (rl *Relay) Mails() []Mail {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return slices.Clone(rl.mails)
}

type session struct {
	relay *Relay
	conn  *smtp.Conn
	user  string
	from  string
	to    []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.relay.user || password != s.relay.pass {
			return errors.New("bad credentials")
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch local, _, _ := strings.Cut(to, "@"); local {
	case "bounce":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
	case "busy":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.relay.mu.Lock()
	delay := s.relay.delay
	s.relay.receiving++
	s.relay.mu.Unlock()
	defer func() {
		s.relay.mu.Lock()
		s.relay.receiving--
		s.relay.mu.Unlock()
	}()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.relay.closed:
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "shutting down"}
		}
	}
	for _, to := range s.to {
		if strings.HasPrefix(to, "reject@") {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused as spam"}
		}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.relay.mu.Lock()
	s.relay.mails = append(s.relay.mails, Mail{From: s.from, To: slices.Clone(s.to), Data: b, TLS: isTLS, User: s.user})
	s.relay.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// Certificate makes a CA (returned as PEM) and a server certificate for
// 127.0.0.1 that it signs, valid for an hour around now.
func Certificate(tb testing.TB) (tls.Certificate, []byte) {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cartera test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
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
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}
