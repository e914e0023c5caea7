package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"cartera/channels"
)

// Twilio error codes with a meaning of their own.
const (
	// CodeUnsubscribed: the recipient replied STOP; Twilio refuses every
	// message to them until they reply START.
	CodeUnsubscribed = 21610
	// CodeInvalidNumber: the To number is not a valid phone number.
	CodeInvalidNumber = 21211
)

// MaxBodyChars is the longest text Twilio accepts (error 21617 beyond).
const MaxBodyChars = 1600

// ErrNoPhone is a person with no phone number in E.164 form.
var ErrNoPhone = errors.New("sms: no E.164 phone number")

// ErrUnsubscribed matches an *APIError with CodeUnsubscribed.
var ErrUnsubscribed = errors.New("sms: recipient unsubscribed")

// ErrInvalidNumber matches an *APIError with CodeInvalidNumber.
var ErrInvalidNumber = errors.New("sms: invalid phone number")

// APIError is a refusal from the provider: its HTTP status and, when the
// answer said, Twilio's error code. It leaves out Twilio's message, which
// may quote the phone number.
type APIError struct {
	Status   int
	Code     int
	MoreInfo string
}

func (e *APIError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("sms: twilio HTTP %d", e.Status)
	}
	return fmt.Sprintf("sms: twilio HTTP %d, error %d", e.Status, e.Code)
}

// Is makes errors.Is(err, ErrUnsubscribed) and ErrInvalidNumber work.
func (e *APIError) Is(target error) bool {
	return target == ErrUnsubscribed && e.Code == CodeUnsubscribed ||
		target == ErrInvalidNumber && e.Code == CodeInvalidNumber
}

// Config is the SMS provider account.
type Config struct {
	// Name is the destination the outbox routes by.
	Name string
	// BaseURL is the API's base, without a trailing path.
	BaseURL string
	// AccountSID and AuthToken are the HTTP Basic credentials; the SID
	// also names the account in the path.
	AccountSID string
	AuthToken  string
	// From is the sender: an E.164 number, a short code or an
	// alphanumeric sender id.
	From string
	// HTTPClient makes the calls; nil means http.DefaultClient's settings
	// in a client of our own.
	HTTPClient *http.Client
	// Timeout bounds one API call.
	Timeout time.Duration
}

// DefaultConfig is Twilio's API as "sms" with a 10s timeout; the account
// has no default.
func DefaultConfig() Config {
	return Config{Name: "sms", BaseURL: "https://api.twilio.com", Timeout: 10 * time.Second}
}

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	switch {
	case c.Name == "":
		return errors.New("sms.name: required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("sms.base_url: want an absolute http(s) URL, got %q", c.BaseURL)
	case c.AccountSID == "":
		return errors.New("sms.account_sid: required")
	case c.AuthToken == "":
		return errors.New("sms.auth_token: required")
	case c.From == "":
		return errors.New("sms.from: required")
	case c.Timeout <= 0:
		return fmt.Errorf("sms.timeout: want a positive duration, got %s", c.Timeout)
	}
	return nil
}

// Destination sends journey steps as SMS through a Twilio-shaped API. It
// is safe for concurrent use.
type Destination struct {
	cfg      Config
	endpoint string
	client   *http.Client
	tpl      Renderer
	people   channels.Profiles
}

// New checks cfg (zero Name, BaseURL and Timeout take DefaultConfig's) and
// returns the destination.
func New(cfg Config, tpl Renderer, people channels.Profiles) (*Destination, error) {
	def := DefaultConfig()
	if cfg.Name == "" {
		cfg.Name = def.Name
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = def.BaseURL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = def.Timeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tpl == nil || people == nil {
		return nil, errors.New("sms: New needs a Renderer and Profiles")
	}
	d := &Destination{
		cfg:      cfg,
		endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID) + "/Messages.json",
		client:   cfg.HTTPClient,
		tpl:      tpl,
		people:   people,
	}
	if d.client == nil {
		d.client = &http.Client{}
	}
	return d, nil
}

// Name is the destination name messages are routed by.
func (d *Destination) Name() string { return d.cfg.Name }

// Deliver sends each message in turn and returns one Result per message.
func (d *Destination) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	for i, m := range msgs {
		out[i] = d.deliver(ctx, m)
	}
	return out
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (d *Destination) deliver(ctx context.Context, m *channels.Message) channels.Result {
	fail := func(err error) channels.Result { return channels.Result{Err: err} }
	var p channels.SendPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return fail(channels.Permanent(fmt.Errorf("sms: decode payload: %w", err)))
	}
	if p.Template == "" {
		return fail(channels.Permanent(errors.New("sms: payload has no template")))
	}
	person, err := d.people.Profile(ctx, m.ProfileID)
	if err != nil {
		return fail(fmt.Errorf("sms: look up profile: %w", err))
	}
	if person == nil {
		return fail(channels.Permanent(errors.New("sms: profile not found")))
	}
	if !person.Consent["sms"] {
		return fail(channels.Permanent(channels.ErrNoConsent))
	}
	to := ""
	for _, ph := range person.Phones {
		if e164.MatchString(ph) {
			to = ph
			break
		}
	}
	if to == "" {
		return fail(channels.Permanent(ErrNoPhone))
	}
	body, err := d.tpl.Render(p.Template, person.Locale, templateData(p.Data, person))
	if err != nil {
		return fail(channels.Permanent(fmt.Errorf("sms: render %s: %w", p.Template, err)))
	}
	if body == "" {
		return fail(channels.Permanent(fmt.Errorf("sms: template %s renders no text", p.Template)))
	}
	if n := utf8.RuneCountInString(body); n > MaxBodyChars {
		return fail(channels.Permanent(fmt.Errorf("sms: template %s renders %d characters, more than %d", p.Template, n, MaxBodyChars)))
	}
	return d.send(ctx, m, to, body)
}

// templateData is the payload's data with the person's traits under
// "traits" and id under "profile_id", unless the data has those keys.
func templateData(data map[string]any, p *channels.Profile) map[string]any {
	out := make(map[string]any, len(data)+2)
	for k, v := range data {
		out[k] = v
	}
	if _, ok := out["traits"]; !ok {
		traits := p.Traits
		if traits == nil {
			traits = map[string]any{}
		}
		out["traits"] = traits
	}
	if _, ok := out["profile_id"]; !ok {
		out["profile_id"] = p.ID
	}
	return out
}

// send makes the API call and maps its answer.
func (d *Destination) send(ctx context.Context, m *channels.Message, to, body string) channels.Result {
	form := url.Values{"To": {to}, "From": {d.cfg.From}, "Body": {body}}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return channels.Result{Err: channels.Permanent(fmt.Errorf("sms: build request: %w", err))}
	}
	req.SetBasicAuth(d.cfg.AccountSID, d.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cartera-sms/1")
	// A hint only: Twilio ignores it (its message create is not
	// idempotent); a proxy or a Twilio-shaped provider may dedupe on it.
	req.Header.Set("Idempotency-Key", m.Key)
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return channels.Result{Err: fmt.Errorf("sms: post: %w", err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Accepted: even if the answer cannot be read, a retry would send
		// the text twice, so it counts as sent.
		var ok struct {
			SID string `json:"sid"`
		}
		_ = json.Unmarshal(raw, &ok)
		return channels.Result{Events: []channels.Outcome{{Event: "SMS Sent", Properties: map[string]any{
			"sid": ok.SID, "journey": m.Journey, "step": m.Step,
		}}}}
	}
	var twErr struct {
		Code     int    `json:"code"`
		MoreInfo string `json:"more_info"`
	}
	_ = json.Unmarshal(raw, &twErr)
	apiErr := &APIError{Status: resp.StatusCode, Code: twErr.Code, MoreInfo: twErr.MoreInfo}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return channels.Result{Err: apiErr}
	case apiErr.Code == CodeUnsubscribed:
		return channels.Result{Err: channels.Permanent(apiErr), Events: []channels.Outcome{{
			Event:      "SMS Unsubscribed",
			Properties: map[string]any{"code": CodeUnsubscribed, "journey": m.Journey, "step": m.Step},
			Consent:    map[string]bool{"sms": false},
		}}}
	case apiErr.Code == CodeInvalidNumber:
		return channels.Result{Err: channels.Permanent(apiErr), Events: []channels.Outcome{{
			Event:      "SMS Failed",
			Properties: map[string]any{"code": CodeInvalidNumber, "reason": "invalid_number", "journey": m.Journey, "step": m.Step},
		}}}
	}
	return channels.Result{Err: channels.Permanent(apiErr)}
}
