package apns

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"
)

// payload is what Wallet expects in a pass update push: an empty
// dictionary. The device then asks the web service what changed.
const payload = "{}"

// Connection settings, as apns2.NewClient has them: a PING after
// pingAfter without a frame, the connection dropped if the PING gets no
// answer within pingTimeout.
const (
	dialTimeout  = 20 * time.Second
	tcpKeepAlive = 15 * time.Second
	pingAfter    = 15 * time.Second
	pingTimeout  = 15 * time.Second
)

// ErrRejected is wrapped by Result.Err when APNs answered with a status
// other than 200; Result.Status and Result.Reason say which.
var ErrRejected = errors.New("rejected by apns")

// ErrBadToken is wrapped by Result.Err for a push token that is not a
// hex string. It is never sent: a path built from it could point
// anywhere. Such a result is Unregistered.
var ErrBadToken = errors.New("push token is not hex")

// ErrNoConnection is wrapped by Result.Err when no connection to APNs
// could be opened: the dial, the TLS handshake, or the first request on a
// new connection failed. APNs refusing the certificate shows up here.
// Such a result is Retryable.
var ErrNoConnection = errors.New("no connection to apns")

// errNoHTTP2 fails the TLS handshake with a server that does not offer
// HTTP/2, which APNs requires.
var errNoHTTP2 = errors.New("server does not speak HTTP/2")

// Client sends pass update pushes over one HTTP/2 connection to APNs. It
// is safe for concurrent use; keep one per certificate for the life of
// the process, as APNs treats frequent reconnects as an attack.
type Client struct {
	apns    *apns2.Client
	conn    *conn
	topic   string
	timeout time.Duration
	// slots bounds the pushes in flight across all calls to Push.
	slots chan struct{}
}

// New returns a client for cfg. It does not connect: the first push
// dials, and later pushes reuse that connection.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("apns config: %w", err)
	}
	base, err := cfg.baseURL()
	if err != nil {
		return nil, fmt.Errorf("apns config: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("apns config: %w", err)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}

	cert := cfg.Certificate
	var h2 http.Protocols
	h2.SetHTTP2(true)
	tr := &http.Transport{
		DialContext: (&net.Dialer{KeepAlive: tcpKeepAlive}).DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    cfg.RootCAs,
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2"},
			// Always present the pass type certificate. With Certificates
			// instead, crypto/tls sends none at all when the server's list
			// of acceptable CAs names none of the chain's issuers, and the
			// failure shows up far from its cause.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &cert, nil
			},
			// Without h2, net/http would fall back to HTTP/1.1.
			VerifyConnection: func(cs tls.ConnectionState) error {
				if cs.NegotiatedProtocol != "h2" {
					return errNoHTTP2
				}
				return nil
			},
		},
		Protocols: &h2,
		HTTP2: &http.HTTP2Config{
			// Every push has its own :path (the token), so HPACK indexing
			// only churns the table: evicting from it took a tenth of the
			// benchmark's CPU, under the connection's write lock. A
			// one-byte table indexes nothing; a push's headers stay under
			// 200 bytes.
			MaxEncoderHeaderTableSize: 1,
			SendPingTimeout:           pingAfter,
			PingTimeout:               pingTimeout,
		},
		// APNs answers in JSON, uncompressed: skip Accept-Encoding and
		// the gzip reader.
		DisableCompression: true,
	}
	c := &conn{tr: tr, addr: addr, dialTimeout: dialTimeout}
	return &Client{
		// Built by hand rather than with apns2.NewClient, whose x/net
		// transport opens a new connection each time the pushes in flight
		// reach the server's stream limit (see conn).
		apns: &apns2.Client{
			Host:        base,
			Certificate: cert,
			// No Client.Timeout: each push has its own context deadline.
			HTTPClient: &http.Client{Transport: c},
		},
		conn:    c,
		topic:   cfg.Topic,
		timeout: cfg.Timeout,
		slots:   make(chan struct{}, cfg.Concurrency),
	}, nil
}

// Close closes the connection, interrupting any pushes in flight: call
// it after the last Push returns. A Push after Close dials again.
func (c *Client) Close() error {
	c.conn.close()
	return nil
}

// Push sends a pass update push to each token and returns one Result per
// token, in the order given. Pushes run concurrently, at most
// Config.Concurrency at once for the whole client. Push deduplicates
// nothing: a token given twice is pushed twice.
//
// Push returns when every push has an answer, has timed out, or has
// failed because ctx ended; the pushes not yet sent then get ctx's error.
// Once a push fails with ErrNoConnection (after a second try on a new
// connection), the pushes not yet sent fail with the same error instead
// of dialling again: a refused certificate costs a few connections per
// call, not two per token.
func (c *Client) Push(ctx context.Context, tokens []string) []Result {
	results := make([]Result, len(tokens))
	var b batch
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(cap(c.slots), len(tokens)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tokens) {
					return
				}
				results[i] = c.push(ctx, tokens[i], &b)
			}
		})
	}
	wg.Wait()
	return results
}

// batch is what the pushes of one call to Push share.
type batch struct {
	mu     sync.Mutex
	noConn error // the first push error wrapping ErrNoConnection
}

func (b *batch) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.noConn
}

func (b *batch) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noConn == nil {
		b.noConn = err
	}
}

// push sends one push. Errors never carry the token, which the caller
// may log.
func (c *Client) push(ctx context.Context, token string, b *batch) Result {
	r := Result{Token: token}
	if !isHex(token) {
		r.Err = fmt.Errorf("push: %w", ErrBadToken)
		return r
	}
	if err := ctx.Err(); err != nil {
		r.Err = fmt.Errorf("push: %w", context.Cause(ctx))
		return r
	}
	if err := b.failed(); err != nil {
		r.Err = err
		return r
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		r.Err = fmt.Errorf("push: %w", context.Cause(ctx))
		return r
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := c.apns.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: token,
		Topic:       c.topic,
		Payload:     payload,
	})
	if err != nil {
		// net/http's *url.Error quotes the URL, and so the token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		r.Err = fmt.Errorf("push: %w", err)
		if errors.Is(err, ErrNoConnection) {
			b.fail(r.Err)
		}
		return r
	}
	r.Status, r.Reason = res.StatusCode, res.Reason
	if res.StatusCode == http.StatusGone {
		r.Timestamp = res.Timestamp.Time
	}
	if !res.Sent() {
		r.Err = fmt.Errorf("push: %w: %d %s", ErrRejected, res.StatusCode, res.Reason)
	}
	return r
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}
