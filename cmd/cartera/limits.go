package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"cartera/channels/email"
	"cartera/internal/ratelimit"
	"cartera/profiles"
)

// RateLimit is a token bucket: PerSecond requests (or events) on average,
// Burst at once. PerSecond 0 turns the limit off.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

func (r RateLimit) on() bool { return r.PerSecond > 0 }

func (r RateLimit) validate(name string) error {
	if r.PerSecond < 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) {
		return fmt.Errorf("%s.per_second: want 0 (off) or a positive rate, got %v", name, r.PerSecond)
	}
	if r.on() && r.Burst < 1 {
		return fmt.Errorf("%s.burst: want at least 1, got %d", name, r.Burst)
	}
	return nil
}

// LimitsConfig bounds what one client may ask of the gateway, so that one
// write key, address, device or link flooding it slows only itself.
type LimitsConfig struct {
	// WriteKeyRequests and WriteKeyEvents are per write key (ingestion).
	WriteKeyRequests RateLimit `yaml:"write_key_requests"`
	WriteKeyEvents   RateLimit `yaml:"write_key_events"`
	// AddressRequests is per client address (an IPv6 /64 counts as one),
	// every route but /healthz.
	AddressRequests RateLimit `yaml:"address_requests"`
	// WalletDeviceRequests is per device of the pass web service (and per
	// serial for pass downloads); TrackingTokenRequests per email link.
	WalletDeviceRequests  RateLimit `yaml:"wallet_device_requests"`
	TrackingTokenRequests RateLimit `yaml:"tracking_token_requests"`
	// WriteKeyConcurrency caps the ingestion requests of one write key
	// decoded and appended at once; more wait their turn, parked (up to
	// 5 s, then 429), so that one key's burst of batches does not hold
	// the other keys' requests in the queue for a CPU (0, the default: no
	// cap; docs/benchmarks.md, round 9, found no measurable gain on two
	// shared cores, where the disk bounds the others' tail).
	WriteKeyConcurrency int `yaml:"write_key_concurrency"`
	// MaxConnections caps open connections; MaxConnectionsPerAddress
	// those of one client address (0: no cap).
	MaxConnections           int `yaml:"max_connections"`
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// HeaderTimeout cuts a client that has not sent its request headers
	// in time; BodyTimeout one whose body has not arrived in time after
	// the headers.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	BodyTimeout   time.Duration `yaml:"body_timeout"`
	// ProxyHeader names the header a proxy in front puts the client's
	// address in (X-Real-IP); it is believed only from TrustedProxies
	// (addresses or CIDR ranges).
	ProxyHeader    string   `yaml:"proxy_header"`
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RefusalDelay holds a refused request this long (at most until the
	// limit would let it through) before its 429: a client that ignores
	// Retry-After and asks again at once is slowed to a few requests a
	// second per connection, instead of taking the CPU the other clients
	// need. 0 answers at once.
	RefusalDelay time.Duration `yaml:"refusal_delay"`
	// FairShare refuses the write keys over their share while the
	// gateway is under load (fairshare.go).
	FairShare FairShareConfig `yaml:"fair_share"`
}

// DefaultLimitsConfig returns limits above what a shop's traffic needs and
// below what lets one client take the gateway for itself.
func DefaultLimitsConfig() LimitsConfig {
	return LimitsConfig{
		WriteKeyRequests:         RateLimit{PerSecond: 1000, Burst: 2000},
		WriteKeyEvents:           RateLimit{PerSecond: 10000, Burst: 20000},
		AddressRequests:          RateLimit{PerSecond: 2000, Burst: 4000},
		WalletDeviceRequests:     RateLimit{PerSecond: 2, Burst: 100},
		TrackingTokenRequests:    RateLimit{PerSecond: 2, Burst: 30},
		MaxConnections:           10000,
		MaxConnectionsPerAddress: 1000,
		HeaderTimeout:            10 * time.Second,
		BodyTimeout:              30 * time.Second,
		RefusalDelay:             time.Second,
		FairShare:                DefaultFairShareConfig(),
	}
}

// Validate reports the first invalid limit, naming it.
func (c *LimitsConfig) Validate() error {
	for name, r := range c.rates() {
		if err := r.validate("limits." + name); err != nil {
			return err
		}
	}
	if c.WriteKeyConcurrency < 0 {
		return fmt.Errorf("limits.write_key_concurrency: want 0 (no cap) or more, got %d", c.WriteKeyConcurrency)
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerAddress < 0 {
		return errors.New("limits.max_connections, max_connections_per_address: want 0 (no cap) or more")
	}
	if c.HeaderTimeout <= 0 || c.BodyTimeout <= 0 {
		return fmt.Errorf("limits.header_timeout, body_timeout: want positive durations, got %s and %s", c.HeaderTimeout, c.BodyTimeout)
	}
	if c.RefusalDelay < 0 || c.RefusalDelay > 10*time.Second {
		return fmt.Errorf("limits.refusal_delay: want 0 (answer at once) to 10s, got %s", c.RefusalDelay)
	}
	if err := c.FairShare.validate(); err != nil {
		return err
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return fmt.Errorf("limits.trusted_proxies: %q is neither an address nor a CIDR range", p)
			}
		}
	}
	if c.ProxyHeader != "" && len(c.TrustedProxies) == 0 {
		return errors.New("limits.proxy_header: set limits.trusted_proxies too, or any client could name its own address")
	}
	return nil
}

func (c *LimitsConfig) rates() map[string]*RateLimit {
	return map[string]*RateLimit{
		"write_key_requests":      &c.WriteKeyRequests,
		"write_key_events":        &c.WriteKeyEvents,
		"address_requests":        &c.AddressRequests,
		"wallet_device_requests":  &c.WalletDeviceRequests,
		"tracking_token_requests": &c.TrackingTokenRequests,
	}
}

// applyLimitsEnv reads CARTERA_LIMITS: "off" turns every rate limit and
// the fair share off (a proxy in front limits already); otherwise
// comma-separated settings, "write_key_requests=50/100" (per second/burst,
// or "off"), "max_connections_per_address=64", "header_timeout=5s",
// "fair_share.lag_events=5000" (or "fair_share=off").
func applyLimitsEnv(c *LimitsConfig, v string) error {
	if strings.TrimSpace(v) == "off" {
		for _, r := range c.rates() {
			*r = RateLimit{}
		}
		_ = applyFairShareEnv(&c.FairShare, "fair_share", "off")
		return nil
	}
	for i, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("CARTERA_LIMITS: entry %d: want name=value", i+1)
		}
		bad := func(want string) error {
			return fmt.Errorf("CARTERA_LIMITS: %s: want %s, got %q", name, want, val)
		}
		if r, ok := c.rates()[name]; ok {
			if val == "off" {
				*r = RateLimit{}
				continue
			}
			ps, b, ok := strings.Cut(val, "/")
			f, err1 := strconv.ParseFloat(ps, 64)
			n, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil {
				return bad("PER_SECOND/BURST or off")
			}
			*r = RateLimit{PerSecond: f, Burst: n}
			continue
		}
		if strings.HasPrefix(name, "fair_share") {
			if err := applyFairShareEnv(&c.FairShare, name, val); err != nil {
				return err
			}
			continue
		}
		switch name {
		case "max_connections", "max_connections_per_address", "write_key_concurrency":
			n, err := strconv.Atoi(val)
			if err != nil {
				return bad("a whole number")
			}
			switch name {
			case "max_connections":
				c.MaxConnections = n
			case "max_connections_per_address":
				c.MaxConnectionsPerAddress = n
			default:
				c.WriteKeyConcurrency = n
			}
		case "refusal_delay":
			d, err := time.ParseDuration(val)
			if err != nil {
				return bad("a duration such as 1s")
			}
			c.RefusalDelay = d
		case "header_timeout", "body_timeout":
			d, err := time.ParseDuration(val)
			if err != nil {
				return bad("a duration such as 10s")
			}
			if name == "header_timeout" {
				c.HeaderTimeout = d
			} else {
				c.BodyTimeout = d
			}
		default:
			return fmt.Errorf("CARTERA_LIMITS: entry %d: unknown limit %q", i+1, name)
		}
	}
	return nil
}

// edgeLimits applies LimitsConfig at the HTTP edge.
type edgeLimits struct {
	cfg                                  LimitsConfig
	keyRequests, keyEvents, addr, device *ratelimit.Set
	token                                *ratelimit.Set
	// fair refuses the keys over their share under load (nil: off).
	fair *fairShare
	// slots caps the requests of one key handled at once (nil: no cap);
	// a request waits slotWait at most for one.
	slots    *keySlots
	slotWait time.Duration
	limited  *prometheus.CounterVec
	now      func() time.Time
	// pause holds a refused request (time.Sleep; tests record it).
	pause func(time.Duration)
}

// newEdgeLimits builds the limiters and registers
// cartera_requests_limited_total on reg (nil: not registered). Limiters
// run on the wall clock, never the dev clock.
func newEdgeLimits(cfg LimitsConfig, reg prometheus.Registerer) *edgeLimits {
	l := &edgeLimits{
		cfg:         cfg,
		keyRequests: newLimiterSet(cfg.WriteKeyRequests),
		keyEvents:   newLimiterSet(cfg.WriteKeyEvents),
		addr:        newLimiterSet(cfg.AddressRequests),
		device:      newLimiterSet(cfg.WalletDeviceRequests),
		token:       newLimiterSet(cfg.TrackingTokenRequests),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_requests_limited_total",
			Help: "Requests answered 429 by a rate limit, by limit.",
		}, []string{"limit"}),
		now:      time.Now,
		pause:    time.Sleep,
		fair:     newFairShare(cfg.FairShare, reg),
		slots:    newKeySlots(cfg.WriteKeyConcurrency, reg),
		slotWait: keySlotWait,
	}
	for name := range cfg.rates() {
		l.limited.WithLabelValues(name)
	}
	l.limited.WithLabelValues("fair_share")
	l.limited.WithLabelValues("write_key_concurrency")
	if reg != nil {
		reg.MustRegister(l.limited)
	}
	return l
}

// fiberConfig sets the connection caps and the proxy header on cfg.
func (l *edgeLimits) fiberConfig(cfg *fiber.Config) {
	cfg.Concurrency = l.cfg.MaxConnections
	if cfg.Concurrency == 0 {
		cfg.Concurrency = fiber.DefaultConcurrency
	}
	cfg.ReadTimeout = l.cfg.HeaderTimeout
	if l.cfg.ProxyHeader != "" {
		cfg.ProxyHeader = l.cfg.ProxyHeader
		cfg.EnableTrustedProxyCheck = true
		cfg.TrustedProxies = l.cfg.TrustedProxies
		cfg.EnableIPValidation = true
	}
}

// serverConfig sets what fiber.Config does not reach: the cap per address
// and the body timeout, which restarts the read deadline once the headers
// are in (the header timeout is the server's ReadTimeout).
func (l *edgeLimits) serverConfig(s *fasthttp.Server) {
	s.MaxConnsPerIP = l.cfg.MaxConnectionsPerAddress
	body := l.cfg.BodyTimeout
	s.HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		return fasthttp.RequestConfig{ReadTimeout: body}
	}
}

// edge limits every request by client address, and the wallet web
// service by device (pass downloads by serial) and tracking links by token.
func (l *edgeLimits) edge(c *fiber.Ctx) error {
	path := c.Path()
	if path == "/healthz" {
		return c.Next()
	}
	now := l.now()
	if err := l.check(c, l.addr, "address_requests", addressKey(c.IP()), now, "this client address"); err != nil {
		return err
	}
	if key, ok := walletLimitKey(path); ok {
		if err := l.check(c, l.device, "wallet_device_requests", key, now, "this device"); err != nil {
			return err
		}
	}
	for _, p := range []string{email.OpenPath, email.ClickPath, email.UnsubscribePath} {
		if tok, ok := strings.CutPrefix(path, p); ok {
			if err := l.check(c, l.token, "tracking_token_requests", p+tok, now, "this link"); err != nil {
				return err
			}
		}
	}
	return c.Next()
}

// ingestLimit limits ingestion per write key: requests before the handler
// runs, and events once it has accepted them. A key in debt (its last
// batches took more than its bucket held) is refused until the debt is
// paid off, so a batch is never refused for its size alone.
func (l *edgeLimits) ingestLimit(sources *profiles.Sources) fiber.Handler {
	return func(c *fiber.Ctx) error {
		key := writeKeyOf(c)
		if key == "" {
			return c.Next()
		}
		source, known := sources.Authenticate(key)
		if !known {
			return c.Next() // the handler answers 401; the address limit applies
		}
		id := keyID(key)
		now := l.now()
		ev, err := l.keyLimits(c, id, now)
		if err != nil {
			l.fairRefused(id, now)
			return err
		}
		release, ok := l.slots.acquire(id, l.slotWait)
		if !ok {
			l.fairRefused(id, l.now()) // after the wait for a slot
			return l.refuseWith(c, "write_key_concurrency", time.Second,
				fmt.Sprintf("too many requests at once for this write key (%d handled at a time)", l.cfg.WriteKeyConcurrency))
		}
		defer release()
		// The fair share last, once nothing else can refuse the request:
		// a request it lets in takes the key's next slot, which one
		// refused afterwards (no slot of the key's concurrency free)
		// would have wasted.
		now = l.now() // after the wait for a slot
		if err := l.fairCheck(c, id, source, now); err != nil {
			l.fairRefused(id, now)
			return err
		}
		err = c.Next()
		if n, ok := c.Locals(localAccepted).(int); ok && err == nil {
			// Charged as of now, not of the request's start: an older
			// time moves the bucket's clock back, and the time between
			// is credited twice (a flood of slow batches got 16,000
			// events a second through a limit of 10,000).
			accepted := l.now()
			if ev != nil {
				ev.ReserveN(accepted, min(n, ev.Burst()))
			}
			l.fairAccepted(id, n, accepted)
		}
		return err
	}
}

// keyID is what the limits know a write key by: a hash, so that no
// limiter holds the key itself.
func keyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return string(sum[:16])
}

// keyLimits refuses a request of the write key id over its request rate,
// or in debt of events. It returns the key's bucket of events (nil: that
// limit is off).
func (l *edgeLimits) keyLimits(c *fiber.Ctx, id string, now time.Time) (*rate.Limiter, error) {
	if err := l.check(c, l.keyRequests, "write_key_requests", id, now, "this write key"); err != nil {
		return nil, err
	}
	ev := l.keyEvents.Get(id, now)
	if ev != nil {
		if wait := debt(ev, now); wait > 0 {
			return nil, l.refuse(c, "write_key_events", wait, "events for this write key")
		}
	}
	return ev, nil
}

// localAccepted is the fiber.Ctx local the ingest handler sets to the
// number of events it accepted.
const localAccepted = "cartera.accepted"

// setAccepted tells the ingest limit how many events a request brought.
func setAccepted(c *fiber.Ctx, n int) { c.Locals(localAccepted, n) }

// debt is how long until lim holds a whole token again (0: it does).
func debt(lim *rate.Limiter, now time.Time) time.Duration {
	t := lim.TokensAt(now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1 - t) / float64(lim.Limit()) * float64(time.Second))
}

func (l *edgeLimits) check(c *fiber.Ctx, set *ratelimit.Set, name, key string, now time.Time, whose string) error {
	lim := set.Get(key, now)
	if lim == nil {
		return nil
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return l.refuse(c, name, d, "requests from "+whose)
	}
	return nil
}

// refuse answers 429 with Retry-After in whole seconds, as Segment's SDKs
// read it.
func (l *edgeLimits) refuse(c *fiber.Ctx, name string, wait time.Duration, what string) error {
	return l.refuseWith(c, name, wait, "too many "+what)
}

// refuseWith is refuse with the reason said in full.
func (l *edgeLimits) refuseWith(c *fiber.Ctx, name string, wait time.Duration, why string) error {
	l.limited.WithLabelValues(name).Inc()
	if d := min(wait, l.cfg.RefusalDelay); d > 0 {
		l.pause(d)
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	c.Set(fiber.HeaderAccessControlExposeHeaders, fiber.HeaderRetryAfter)
	return &httpError{fiber.StatusTooManyRequests, fmt.Sprintf("rate limit (limits.%s): %s; retry after %d s", name, why, secs)}
}

// writeKeyOf finds the write key as authenticate does, without judging it.
func writeKeyOf(c *fiber.Ctx) string {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Basic") {
			if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
				key, _, _ := strings.Cut(string(dec), ":")
				return key
			}
		}
		return ""
	}
	if k := c.Query("writeKey"); k != "" {
		return k
	}
	body, err := requestBody(c)
	if err != nil {
		return ""
	}
	var w struct {
		WriteKey string `json:"writeKey"`
	}
	_ = json.Unmarshal(body, &w)
	return w.WriteKey
}

// walletLimitKey is the device of a pass web service request, or the
// serial of a pass fetch or download.
func walletLimitKey(path string) (string, bool) {
	if rest, ok := strings.CutPrefix(path, "/wallet/v1/devices/"); ok {
		dev, _, _ := strings.Cut(rest, "/")
		return "d:" + dev, dev != ""
	}
	if rest, ok := strings.CutPrefix(path, "/wallet/v1/passes/"); ok {
		return "p:" + rest, true
	}
	if rest, ok := strings.CutPrefix(path, "/wallet/download/"); ok {
		return "p:" + rest, true
	}
	return "", false
}

// addressKey is the client address, an IPv6 address cut to its /64 (one
// host usually holds the whole /64).
func addressKey(ip string) string {
	a := net.ParseIP(ip)
	if a == nil || a.To4() != nil {
		return ip
	}
	return a.Mask(net.CIDRMask(64, 128)).String()
}

// newLimiterSet is the buckets of one limit (nil when it is off).
func newLimiterSet(r RateLimit) *ratelimit.Set {
	if !r.on() {
		return nil
	}
	return ratelimit.New(r.PerSecond, r.Burst)
}
