package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// TLSConfig makes the gateway serve HTTPS itself, so a small shop needs no
// proxy: a certificate and key from files, or certificates from an ACME
// CA (Let's Encrypt) for a public host name.
type TLSConfig struct {
	// Cert and Key are PEM files (a chain, leaf first, and its key).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ACMEHost is the public host name to get certificates for. The CA
	// checks it by TLS-ALPN-01 on the main listener (which must then be
	// reachable on port 443) or, with ACMEHTTPAddr, HTTP-01.
	ACMEHost string `yaml:"acme_host"`
	// ACMEEmail is the account's contact, for the CA's expiry notices.
	ACMEEmail string `yaml:"acme_email"`
	// ACMEHTTPAddr, when set (":80"), serves HTTP-01 challenges there and
	// redirects every other request to HTTPS.
	ACMEHTTPAddr string `yaml:"acme_http_addr"`
	// ACMEDirectoryURL is the CA (default Let's Encrypt's production
	// directory; its staging directory for trials).
	ACMEDirectoryURL string `yaml:"acme_directory_url"`
	// ACMECAFile is a PEM file of the roots trusted for the directory's
	// HTTPS, for a private ACME CA (step-ca, Pebble); the system's roots
	// when empty.
	ACMECAFile string `yaml:"acme_ca_file"`
}

func (c TLSConfig) on() bool { return c.Cert != "" || c.ACMEHost != "" }

// Validate reports the first invalid TLS setting, naming it.
func (c *TLSConfig) Validate() error {
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("tls.cert, tls.key: set both or neither")
	}
	if c.Cert != "" && c.ACMEHost != "" {
		return errors.New("tls.acme_host: set either it or tls.cert and tls.key, not both")
	}
	if c.ACMEHost != "" {
		h := c.ACMEHost
		if strings.ContainsAny(h, ":/ ") || !strings.Contains(h, ".") || net.ParseIP(h) != nil {
			return fmt.Errorf("tls.acme_host: want a public host name such as shop.example.com, got %q", h)
		}
	} else if c.ACMEHTTPAddr != "" || c.ACMEEmail != "" || c.ACMEDirectoryURL != "" || c.ACMECAFile != "" {
		return errors.New("tls.acme_http_addr, acme_email, acme_directory_url, acme_ca_file: set tls.acme_host too")
	}
	if c.ACMEHTTPAddr != "" {
		if _, _, err := splitHostPort(c.ACMEHTTPAddr); err != nil {
			return fmt.Errorf("tls.acme_http_addr: %w", err)
		}
	}
	return nil
}

// listenTLS wraps ln in TLS as cfg says (ln itself when TLS is off), and
// starts the ACME HTTP-01 listener when one is set; stop closes it.
func listenTLS(cfg *Config, ln net.Listener, log *slog.Logger) (_ net.Listener, stop func(), err error) {
	stop = func() {}
	t := cfg.TLS
	if !t.on() {
		return ln, stop, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, stop, fmt.Errorf("tls.cert, tls.key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	} else {
		m, err := acmeManager(cfg)
		if err != nil {
			return nil, stop, err
		}
		tc = m.TLSConfig() // answers TLS-ALPN-01 challenges
		tc.MinVersion = tls.VersionTLS12
		if t.ACMEHTTPAddr != "" {
			hl, err := net.Listen("tcp", t.ACMEHTTPAddr)
			if err != nil {
				return nil, stop, fmt.Errorf("tls.acme_http_addr: listen on %s: %w", t.ACMEHTTPAddr, err)
			}
			srv := &http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
			go func() { _ = srv.Serve(hl) }()
			stop = func() { _ = srv.Close() }
			log.Info("acme http-01 listening", "addr", hl.Addr().String())
		}
		log.Info("acme: certificates for the host come from the CA on the first TLS connection", "host", t.ACMEHost, "cache", acmeCacheDir(cfg))
	}
	if strings.HasPrefix(cfg.PublicURL, "http://") {
		log.Warn("TLS is on but public_url is http://: passes and email links will point at plain HTTP", "public_url", cfg.PublicURL)
	}
	return tls.NewListener(ln, tc), stop, nil
}

// acmeManager gets and renews certificates for the ACME host, cached in
// the data folder beside the bbolt file.
func acmeManager(cfg *Config) (*autocert.Manager, error) {
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(cfg.TLS.ACMEHost),
		Cache:      autocert.DirCache(acmeCacheDir(cfg)),
		Email:      cfg.TLS.ACMEEmail,
	}
	if cfg.TLS.ACMEDirectoryURL == "" && cfg.TLS.ACMECAFile == "" {
		return m, nil
	}
	m.Client = &acme.Client{DirectoryURL: cfg.TLS.ACMEDirectoryURL}
	if f := cfg.TLS.ACMECAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme_ca_file: %s holds no PEM certificate", f)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		m.Client.HTTPClient = &http.Client{Transport: t, Timeout: time.Minute}
	}
	return m, nil
}

func acmeCacheDir(cfg *Config) string { return filepath.Join(filepath.Dir(cfg.Data), "acme") }

// hstsMaxAge is two years, as browsers' preload lists ask.
const hstsMaxAge = "max-age=63072000"

// transportHeaders sets what every answer carries: no MIME sniffing, and
// over TLS served here, HSTS (behind a proxy that terminates TLS, the
// proxy sets it).
func transportHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	if c.Context().IsTLS() {
		c.Set(fiber.HeaderStrictTransportSecurity, hstsMaxAge)
	}
	return c.Next()
}

// pageCSP is the Content-Security-Policy of Cartera's own small HTML
// pages: no scripts, inline styles only, forms posting back to Cartera.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securePage sets the headers of Cartera's own small HTML pages.
func securePage(c *fiber.Ctx) error {
	setPageHeaders(c, pageCSP)
	return c.Next()
}

// setPageHeaders sets the headers every HTML page Cartera serves carries:
// its CSP, no framing (clickjacking), and no Referer leaving the page (its
// URL may hold a token).
func setPageHeaders(c *fiber.Ctx, csp string) {
	c.Set(fiber.HeaderContentSecurityPolicy, csp)
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
}
