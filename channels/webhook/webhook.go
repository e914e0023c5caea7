package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cartera/channels"
)

// AudiencePrefix starts the destination name of an audience webhook:
// "audience_webhook:<audience>".
const AudiencePrefix = "audience_webhook:"

// Config is one webhook destination.
type Config struct {
	// Name is the destination the outbox routes by: "webhook" for journey
	// sends, "audience_webhook:<audience>" for an audience.
	Name string
	// URL receives the POSTs (http or https).
	URL string
	// Secret signs every request; receivers verify with the same bytes.
	Secret []byte
	// HTTPClient makes the calls; nil means a client of our own that does
	// not follow redirects.
	HTTPClient *http.Client
	// Timeout bounds one request, response included.
	Timeout time.Duration
	// AudienceConsent, when set (e.g. "ads"), holds an audience add back
	// with channels.ErrNoConsent unless the person's consent for it is
	// true at delivery. Removals always go. Needs Profiles.
	AudienceConsent string
	// Now is the clock that stamps requests; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig is a journey-send webhook with a 10s timeout; URL and
// Secret have no default.
func DefaultConfig() Config {
	return Config{Name: "webhook", Timeout: 10 * time.Second}
}

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("webhook.name: required")
	}
	if c.Name != "webhook" && !strings.HasPrefix(c.Name, AudiencePrefix) {
		return fmt.Errorf("webhook.name: want webhook or %s<audience>, got %q", AudiencePrefix, c.Name)
	}
	if c.Name == AudiencePrefix {
		return fmt.Errorf("webhook.name: want an audience after %s", AudiencePrefix)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook.url: want an absolute http(s) URL, got %q", redactURL(c.URL))
	}
	if len(c.Secret) == 0 {
		return errors.New("webhook.secret: required")
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("webhook.timeout: want a positive duration, got %s", c.Timeout)
	}
	return nil
}

// redactURL keeps a URL's scheme and host, for messages: its path or query
// may hold a token.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "<invalid>"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// Destination posts messages to one webhook URL. It is safe for concurrent
// use.
type Destination struct {
	cfg    Config
	client *http.Client
	people channels.Profiles
	now    func() time.Time
}

// New checks cfg (zero Name and Timeout take DefaultConfig's) and returns
// the destination. people may be nil: sends are then not checked against
// the profile (a person erased since is still posted) and carry no locale.
func New(cfg Config, people channels.Profiles) (*Destination, error) {
	def := DefaultConfig()
	if cfg.Name == "" {
		cfg.Name = def.Name
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = def.Timeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AudienceConsent != "" && people == nil {
		return nil, errors.New("webhook.audience_consent: needs profiles to look consent up")
	}
	d := &Destination{cfg: cfg, client: cfg.HTTPClient, people: people, now: cfg.Now}
	if d.client == nil {
		d.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d, nil
}

// Name is the destination name messages are routed by.
func (d *Destination) Name() string { return d.cfg.Name }

// Body is the JSON a webhook receives (see the package doc for examples).
type Body struct {
	// ID is the message's idempotency key, also in X-Cartera-Key: the
	// same on every retry of one message.
	ID string `json:"id"`
	// Type is "send" or "audience".
	Type      string `json:"type"`
	ProfileID string `json:"profile_id"`
	// Journey and Step name the journey step of a send.
	Journey string `json:"journey,omitempty"`
	Step    string `json:"step,omitempty"`
	// Template and Data are the step's send: what to say and with what.
	Template string         `json:"template,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
	// Locale is the person's locale at delivery ("es", "en-GB") when
	// known, for a receiver that renders the template.
	Locale string `json:"locale,omitempty"`
	// Audience and Op ("add" or "remove") are an audience change.
	Audience    string       `json:"audience,omitempty"`
	Op          string       `json:"op,omitempty"`
	Identifiers *Identifiers `json:"identifiers,omitempty"`
	// SentAt is when this attempt was signed, in whole seconds UTC.
	SentAt time.Time `json:"sent_at"`
}

// Identifiers are a person's hashed identifiers: lower-case hex SHA-256 of
// each trimmed, lower-cased email address, and of each E.164 phone number
// with its "+".
type Identifiers struct {
	EmailSHA256 []string `json:"email_sha256"`
	PhoneSHA256 []string `json:"phone_sha256"`
}

// Deliver posts each message in turn and returns one Result per message.
func (d *Destination) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	for i, m := range msgs {
		out[i] = d.deliver(ctx, m)
	}
	return out
}

func (d *Destination) deliver(ctx context.Context, m *channels.Message) channels.Result {
	body, outcome, err := d.body(ctx, m)
	if err != nil {
		return channels.Result{Err: err}
	}
	if err := d.post(ctx, m.Key, body); err != nil {
		return channels.Result{Err: err}
	}
	return channels.Result{Events: []channels.Outcome{outcome}}
}

// body builds the request body of m, with the outcome to record once it is
// delivered.
func (d *Destination) body(ctx context.Context, m *channels.Message) (*Body, channels.Outcome, error) {
	b := &Body{ID: m.Key, ProfileID: m.ProfileID, SentAt: d.now().UTC().Truncate(time.Second)}
	if audience, ok := strings.CutPrefix(m.Destination, AudiencePrefix); ok {
		var p channels.AudiencePayload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, channels.Outcome{}, channels.Permanent(fmt.Errorf("webhook: decode audience payload: %w", err))
		}
		if p.Audience == "" {
			p.Audience = audience
		}
		if p.Op != "add" && p.Op != "remove" {
			return nil, channels.Outcome{}, channels.Permanent(fmt.Errorf("webhook: audience op %q: want add or remove", p.Op))
		}
		if p.Op == "add" && d.cfg.AudienceConsent != "" {
			person, err := d.person(ctx, m.ProfileID)
			if err != nil {
				return nil, channels.Outcome{}, err
			}
			if !person.Consent[d.cfg.AudienceConsent] {
				return nil, channels.Outcome{}, channels.Permanent(channels.ErrNoConsent)
			}
		}
		b.Type, b.Audience, b.Op = "audience", p.Audience, p.Op
		b.Identifiers = hashIdentifiers(p.Emails, p.Phones)
		return b, channels.Outcome{Event: "Audience Synced", Properties: map[string]any{
			"audience": p.Audience, "op": p.Op, "destination": "audience_webhook",
		}}, nil
	}
	var p channels.SendPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return nil, channels.Outcome{}, channels.Permanent(fmt.Errorf("webhook: decode send payload: %w", err))
	}
	if p.Template == "" {
		return nil, channels.Outcome{}, channels.Permanent(errors.New("webhook: send payload has no template"))
	}
	if d.people != nil {
		person, err := d.person(ctx, m.ProfileID)
		if err != nil {
			return nil, channels.Outcome{}, err
		}
		b.Locale = person.Locale
	}
	b.Type, b.Journey, b.Step, b.Template, b.Data = "send", m.Journey, m.Step, p.Template, p.Data
	return b, channels.Outcome{Event: "Webhook Sent", Properties: map[string]any{
		"journey": m.Journey, "step": m.Step, "template": p.Template,
	}}, nil
}

// person looks the profile up: a failed look-up is retried, a person who
// is gone (erased) is not.
func (d *Destination) person(ctx context.Context, id string) (*channels.Profile, error) {
	p, err := d.people.Profile(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("webhook: look up profile: %w", err)
	}
	if p == nil {
		return nil, channels.Permanent(errors.New("webhook: profile not found"))
	}
	return p, nil
}

func hashIdentifiers(emails, phones []string) *Identifiers {
	ids := &Identifiers{EmailSHA256: []string{}, PhoneSHA256: []string{}}
	seen := map[string]bool{}
	for _, e := range emails {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" && !seen[e] {
			seen[e] = true
			ids.EmailSHA256 = append(ids.EmailSHA256, sha256Hex(e))
		}
	}
	for _, p := range phones {
		if p = strings.TrimSpace(p); p != "" && !seen[p] {
			seen[p] = true
			ids.PhoneSHA256 = append(ids.PhoneSHA256, sha256Hex(p))
		}
	}
	return ids
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// post signs and sends one body, mapping the answer to retryable or
// permanent errors.
func (d *Destination) post(ctx context.Context, key string, b *Body) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return channels.Permanent(fmt.Errorf("webhook: encode body: %w", err))
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	ts := strconv.FormatInt(b.SentAt.Unix(), 10)

	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return channels.Permanent(fmt.Errorf("webhook: build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cartera-webhook/1")
	req.Header.Set(HeaderKey, key)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(d.cfg.Secret, ts, body))
	resp, err := d.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: post: %w", err)
	}
	// Read a little of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return statusError(resp.StatusCode)
}

// statusError maps a response status: 2xx delivered; 408, 429 and 5xx
// retried; anything else permanent.
func statusError(code int) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("webhook: HTTP %d", code)
	default:
		return channels.Permanent(fmt.Errorf("webhook: HTTP %d", code))
	}
}
