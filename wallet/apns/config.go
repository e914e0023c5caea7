package apns

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sideshow/apns2"
)

// Defaults used by DefaultConfig.
const (
	// DefaultConcurrency is the 1000 concurrent streams APNs allows on
	// one connection: a batch of 1000 goes out in one round trip, and
	// more would only wait for a stream.
	DefaultConcurrency = 1000
	DefaultTimeout     = 10 * time.Second
)

// Config says where pushes go and with which certificate.
type Config struct {
	// BaseURL is the APNs server, scheme and host only. Wallet passes are
	// pushed through production even for development builds, so the
	// default is apns2.HostProduction; tests and proxies set another
	// (the command reads CARTERA_APNS_URL).
	BaseURL string
	// Topic is the pass type identifier, e.g. "pass.cartera.dev"; it is
	// sent as apns-topic.
	Topic string
	// Certificate is the pass type certificate and its key: the same
	// ones that sign the .pkpass. It is presented as the TLS client
	// certificate. Put Apple's WWDR intermediate after the leaf so that
	// the server can build the chain.
	Certificate tls.Certificate
	// RootCAs verifies the server; nil means the system roots.
	RootCAs *x509.CertPool
	// Concurrency is how many pushes of this client are in flight at
	// once, over its one HTTP/2 connection. Pushes past the server's
	// MAX_CONCURRENT_STREAMS (1000 at APNs) wait for a stream rather than
	// open another connection.
	Concurrency int
	// Timeout bounds one push, including the wait for a free stream.
	Timeout time.Duration
}

// DefaultConfig returns production APNs with DefaultConcurrency and
// DefaultTimeout. Topic and Certificate have no defaults.
func DefaultConfig() Config {
	return Config{
		BaseURL:     apns2.HostProduction,
		Concurrency: DefaultConcurrency,
		Timeout:     DefaultTimeout,
	}
}

// topicRE is the shape of a pass type identifier, as in wallet/apple.
var topicRE = regexp.MustCompile(`^pass(\.[A-Za-z0-9-]+)+$`)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if _, err := c.baseURL(); err != nil {
		return err
	}
	if !topicRE.MatchString(c.Topic) {
		return fmt.Errorf("topic %q: want the pass type identifier, reverse DNS starting with \"pass.\"", c.Topic)
	}
	if len(c.Certificate.Certificate) == 0 {
		return fmt.Errorf("certificate: missing the pass type certificate")
	}
	if c.Certificate.PrivateKey == nil {
		return fmt.Errorf("certificate: missing the private key")
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("concurrency %d: want at least 1", c.Concurrency)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout %s: want more than 0", c.Timeout)
	}
	return nil
}

// baseURL returns BaseURL without a trailing slash, apns2 appending
// "/3/device/<token>" to it.
func (c Config) baseURL() (string, error) {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return "", fmt.Errorf("base_url %q: %w", c.BaseURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("base_url %q: want https://host[:port]", c.BaseURL)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("base_url %q: want scheme and host only", c.BaseURL)
	}
	return "https://" + u.Host, nil
}
