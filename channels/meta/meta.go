package meta

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

// Prefix starts the destination name of a Meta audience: "meta:<audience>".
const Prefix = "meta:"

// MaxRows is the most rows one request carries, Meta's limit per call.
const MaxRows = 10000

// Config is one Meta custom audience.
type Config struct {
	// Name is the destination the outbox routes by, "meta:<audience>"
	// (e.g. "meta:retargeting"); the part after the colon is the Cartera
	// audience reported when a payload names none.
	Name string
	// BaseURL is the Graph API root with its version; the wiring sets it
	// from CARTERA_META_URL. Empty means DefaultConfig's.
	BaseURL string
	// AudienceID is the Meta custom audience's id (digits).
	AudienceID string
	// AccessToken is a system user's token with ads_management on the
	// audience's ad account.
	AccessToken string
	// HTTPClient makes the calls; nil means a client with a 30s timeout.
	HTTPClient *http.Client
}

// DefaultBaseURL is the Graph API version the requests were written for.
const DefaultBaseURL = "https://graph.facebook.com/v21.0"

// DefaultConfig has Meta's Graph API as BaseURL; Name, AudienceID and
// AccessToken have no default.
func DefaultConfig() Config {
	return Config{BaseURL: DefaultBaseURL}
}

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.Name, Prefix) || len(c.Name) == len(Prefix) {
		return fmt.Errorf("meta.name: want %s<audience>, got %q", Prefix, c.Name)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("meta.base_url: want an absolute http(s) URL without a query, got %q", c.BaseURL)
	}
	if c.AudienceID == "" || strings.Trim(c.AudienceID, "0123456789") != "" {
		return fmt.Errorf("meta.audience_id: want the audience's numeric id, got %q", c.AudienceID)
	}
	if c.AccessToken == "" {
		return errors.New("meta.access_token: required")
	}
	return nil
}

// Destination syncs one Meta custom audience. It is safe for concurrent
// use.
type Destination struct {
	cfg    Config
	users  string // <BaseURL>/<AudienceID>/users
	client *http.Client
}

// New checks cfg (an empty BaseURL takes DefaultConfig's) and returns the
// destination.
func New(cfg Config) (*Destination, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultConfig().BaseURL
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Destination{
		cfg:    cfg,
		users:  strings.TrimRight(cfg.BaseURL, "/") + "/" + cfg.AudienceID + "/users",
		client: cfg.HTTPClient,
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: 30 * time.Second}
	}
	return d, nil
}

// Name is the destination name messages are routed by.
func (d *Destination) Name() string { return d.cfg.Name }

// Deliver sends the batch's adds and removes (see the package doc for the
// requests and the order) and returns one Result per message, in order.
func (d *Destination) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	for _, r := range d.plan(msgs, out) {
		d.send(ctx, r, out)
	}
	return out
}

// person is one message ready to send: its decoded payload and its rows.
type person struct {
	msg  int // index in the batch
	p    channels.AudiencePayload
	rows [][2]string
}

// request is one call: its method, rows and the messages they come from.
type request struct {
	method string
	people []*person
	rows   int
}

// plan decodes and hashes the batch, settles in out the messages that need
// no request (bad ones, and those a later message for the same person
// overrides), and groups the rest into requests: adds, then removes.
func (d *Destination) plan(msgs []*channels.Message, out []channels.Result) []*request {
	people := channels.LatestPerPerson(msgs, out, func(i int, m *channels.Message) (string, *person, error) {
		p, err := channels.DecodeAudience("meta", strings.TrimPrefix(d.cfg.Name, Prefix), m)
		if err != nil {
			return "", nil, err
		}
		rows := hashRows(p.Emails, p.Phones)
		if len(rows) == 0 {
			return "", nil, channels.Permanent(errors.New("meta: no identifiers"))
		}
		if len(rows) > MaxRows {
			return "", nil, channels.Permanent(fmt.Errorf("meta: %d identifier rows for one person, over Meta's %d a request", len(rows), MaxRows))
		}
		return p.Audience, &person{msg: i, p: p, rows: rows}, nil
	})
	var reqs []*request
	for _, op := range []struct{ name, method string }{{"add", http.MethodPost}, {"remove", http.MethodDelete}} {
		var r *request
		for _, p := range people {
			if p.p.Op != op.name {
				continue
			}
			if r == nil || r.rows+len(p.rows) > MaxRows {
				r = &request{method: op.method}
				reqs = append(reqs, r)
			}
			r.people = append(r.people, p)
			r.rows += len(p.rows)
		}
	}
	return reqs
}

// body is the JSON of a users request.
type body struct {
	Payload struct {
		Schema []string    `json:"schema"`
		Data   [][2]string `json:"data"`
	} `json:"payload"`
}

// schema names the columns of a row (see the package doc).
var schema = []string{"EMAIL", "PHONE"}

func (r *request) body() ([]byte, error) {
	var b body
	b.Payload.Schema = schema
	b.Payload.Data = make([][2]string, 0, r.rows)
	for _, p := range r.people {
		b.Payload.Data = append(b.Payload.Data, p.rows...)
	}
	return json.Marshal(&b)
}

// send makes one request and settles its messages in out.
func (d *Destination) send(ctx context.Context, r *request, out []channels.Result) {
	err := d.call(ctx, r)
	for _, p := range r.people {
		if err != nil {
			out[p.msg].Err = err
			continue
		}
		out[p.msg].Events = []channels.Outcome{{Event: "Audience Synced", Properties: map[string]any{
			"audience": p.p.Audience, "destination": "meta", "op": p.p.Op,
		}}}
	}
}

func (d *Destination) call(ctx context.Context, r *request) error {
	b, err := r.body()
	if err != nil {
		return channels.Permanent(fmt.Errorf("meta: encode %s users: %w", r.method, err))
	}
	req, err := http.NewRequestWithContext(ctx, r.method, d.users, bytes.NewReader(b))
	if err != nil {
		return channels.Permanent(fmt.Errorf("meta: %s users: %w", r.method, err))
	}
	req.Header.Set("Authorization", "Bearer "+d.cfg.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		// Timeouts, resets and a cancelled ctx (shutdown) are all worth
		// another try; the error names the URL, which holds no token.
		return fmt.Errorf("meta: %s users: %w", r.method, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return classify(r.method, resp.StatusCode, raw)
}

// graphError is the body of a Graph API error.
type graphError struct {
	Error struct {
		Message     string `json:"message"`
		Type        string `json:"type"`
		Code        int    `json:"code"`
		Subcode     int    `json:"error_subcode"`
		IsTransient bool   `json:"is_transient"`
		TraceID     string `json:"fbtrace_id"`
	} `json:"error"`
}

// transientCodes are the Graph API error codes worth retrying (see the
// package doc).
var transientCodes = map[int]bool{1: true, 2: true, 4: true, 17: true, 32: true, 341: true, 368: true, 613: true, 80003: true}

// classify turns a non-2xx answer into a retryable or permanent error.
func classify(method string, status int, raw []byte) error {
	var g graphError
	_ = json.Unmarshal(raw, &g) // a proxy's HTML page has no code: status alone decides
	msg := "HTTP " + strconv.Itoa(status)
	if g.Error.Code != 0 {
		msg += fmt.Sprintf(": %s (code %d", g.Error.Message, g.Error.Code)
		if g.Error.Subcode != 0 {
			msg += fmt.Sprintf(", subcode %d", g.Error.Subcode)
		}
		if g.Error.TraceID != "" {
			msg += ", fbtrace_id " + g.Error.TraceID
		}
		msg += ")"
	}
	err := fmt.Errorf("meta: %s users: %s", method, msg)
	switch {
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return err
	case g.Error.IsTransient || transientCodes[g.Error.Code]:
		return err
	}
	return channels.Permanent(err)
}

// hashRows turns a person's identifiers into rows [email, phone] of
// SHA-256 hex, pairing the i-th email with the i-th phone; duplicates and
// unusable values are dropped.
func hashRows(emails, phones []string) [][2]string {
	es := hashAll(emails, normEmail)
	ps := hashAll(phones, normPhone)
	n := max(len(es), len(ps))
	if n == 0 {
		return nil
	}
	rows := make([][2]string, n)
	for i := range rows {
		if i < len(es) {
			rows[i][0] = es[i]
		}
		if i < len(ps) {
			rows[i][1] = ps[i]
		}
	}
	return rows
}

func hashAll(vals []string, norm func(string) string) []string {
	var out []string
	for _, v := range vals {
		v = norm(v)
		if v == "" {
			continue
		}
		h := sha256Hex(v)
		dup := false
		for _, o := range out {
			dup = dup || o == h
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

// normEmail trims and lower-cases an address; "" if it is not one.
func normEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.Contains(s, "@") {
		return ""
	}
	return s
}

// normPhone keeps the digits of an E.164 number without its leading zeros
// ("+44 20 7183 8750" and "0044 20 7183 8750" → "442071838750").
func normPhone(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' && (c != '0' || len(b) > 0) {
			b = append(b, c)
		}
	}
	return string(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
