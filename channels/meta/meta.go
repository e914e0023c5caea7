package meta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

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
	// BaseURL is the Graph API root, without a version
	// (CARTERA_META_URL); empty means DefaultBaseURL. A root that ends in
	// a version ("…/v21.0", the form of earlier releases) gives Version.
	BaseURL string
	// Version is the Marketing API version, "v26.0" by default.
	Version string
	// AudienceID is the Meta custom audience's id (digits).
	AudienceID string
	// AccessToken is a system user's token with ads_management on the
	// audience's ad account.
	AccessToken string
	// HTTPClient makes the calls; nil means a client with a 30s timeout.
	HTTPClient *http.Client
	// Profiles looks people up at delivery for the FN, LN and COUNTRY
	// columns (traits first_name, last_name, country); nil leaves them
	// empty.
	Profiles channels.Profiles
}

// DefaultBaseURL is the Graph API root.
const DefaultBaseURL = "https://graph.facebook.com"

// DefaultVersion is the Marketing API version the requests were written
// for: v26.0, current since July 2026.
const DefaultVersion = "v26.0"

// DefaultConfig has Meta's Graph API and DefaultVersion; Name, AudienceID
// and AccessToken have no default.
func DefaultConfig() Config {
	return Config{BaseURL: DefaultBaseURL, Version: DefaultVersion}
}

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// Root splits a configured root into the Graph API root and the version
// it ends with, if any ("https://graph.facebook.com/v21.0" →
// "https://graph.facebook.com", "v21.0").
func Root(base string) (root, version string) {
	base = strings.TrimRight(base, "/")
	if i := strings.LastIndex(base, "/"); i >= 0 && versionRE.MatchString(base[i+1:]) {
		return base[:i], base[i+1:]
	}
	return base, ""
}

// resolve fills BaseURL and Version: defaults for empty ones, and a
// version at the end of BaseURL taken out of it.
func resolve(base, version string) (string, string, error) {
	if base == "" {
		base = DefaultBaseURL
	}
	root, v := Root(base)
	switch {
	case v != "" && version != "" && v != version:
		return "", "", fmt.Errorf("meta.version: %q, but meta_url ends in %q: give the version once", version, v)
	case v != "":
		version = v
	case version == "":
		version = DefaultVersion
	}
	if !versionRE.MatchString(version) {
		return "", "", fmt.Errorf("meta.version: want vNN.N such as %s, got %q", DefaultVersion, version)
	}
	return root, version, nil
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

// New checks cfg (empty BaseURL and Version take DefaultConfig's) and
// returns the destination.
func New(cfg Config) (*Destination, error) {
	var err error
	if cfg.BaseURL, cfg.Version, err = resolve(cfg.BaseURL, cfg.Version); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Destination{
		cfg:    cfg,
		users:  cfg.BaseURL + "/" + cfg.Version + "/" + cfg.AudienceID + "/users",
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
	for _, r := range d.plan(ctx, msgs, out) {
		d.send(ctx, r, out)
	}
	return out
}

// person is one message ready to send: its decoded payload and its rows.
type person struct {
	msg  int // index in the batch
	p    channels.AudiencePayload
	rows [][]string
}

// request is one call: its method, rows and the messages they come from.
type request struct {
	method  string
	people  []*person
	rows    int
	session session
}

// session is the users edge's "session" object: "Use the session
// parameter to track if a specific batch of users has been uploaded. If
// you have an upload with more than 10,000 users, you need to split it
// into separate batches" (Customer File Custom Audiences guide), with its
// fields session_id, batch_seq, last_batch_flag, estimated_num_total.
type session struct {
	ID       int64 `json:"session_id"`
	Seq      int   `json:"batch_seq"`
	Last     bool  `json:"last_batch_flag"`
	Estimate int   `json:"estimated_num_total"`
}

// plan decodes and hashes the batch, settles in out the messages that need
// no request (bad ones, and those a later message for the same person
// overrides), and groups the rest into requests: adds, then removes; the
// requests of one operation are one session.
func (d *Destination) plan(ctx context.Context, msgs []*channels.Message, out []channels.Result) []*request {
	people := channels.LatestPerPerson(msgs, out, func(i int, m *channels.Message) (string, *person, error) {
		p, err := channels.DecodeAudience("meta", strings.TrimPrefix(d.cfg.Name, Prefix), m)
		if err != nil {
			return "", nil, err
		}
		return p.Audience, &person{msg: i, p: p}, nil
	})
	kept := people[:0]
	for _, p := range people {
		var prof *channels.Profile
		if d.cfg.Profiles != nil {
			var err error
			if prof, err = d.cfg.Profiles.Profile(ctx, msgs[p.msg].ProfileID); err != nil {
				out[p.msg].Err = fmt.Errorf("meta: look up profile: %w", err)
				continue
			}
		}
		p.rows = Rows(p.p.Emails, p.p.Phones, prof, msgs[p.msg].ProfileID)
		switch {
		case len(p.rows) == 0:
			out[p.msg].Err = channels.Permanent(errors.New("meta: no identifiers"))
			continue
		case len(p.rows) > MaxRows:
			out[p.msg].Err = channels.Permanent(fmt.Errorf("meta: %d identifier rows for one person, over Meta's %d a request", len(p.rows), MaxRows))
			continue
		}
		kept = append(kept, p)
	}
	var reqs []*request
	for _, op := range []struct{ name, method string }{{"add", http.MethodPost}, {"remove", http.MethodDelete}} {
		var mine []*request
		var r *request
		total := 0
		h := fnv.New64a()
		_, _ = io.WriteString(h, d.cfg.Name+"\x00"+op.name)
		for _, p := range kept {
			if p.p.Op != op.name {
				continue
			}
			if r == nil || r.rows+len(p.rows) > MaxRows {
				r = &request{method: op.method}
				mine = append(mine, r)
			}
			r.people = append(r.people, p)
			r.rows += len(p.rows)
			total += len(p.rows)
			_, _ = io.WriteString(h, "\x00"+msgs[p.msg].Key)
		}
		// The same messages make the same session on a retry.
		id := int64(h.Sum64() >> 1)
		for i, r := range mine {
			r.session = session{ID: id, Seq: i + 1, Last: i == len(mine)-1, Estimate: total}
		}
		reqs = append(reqs, mine...)
	}
	return reqs
}

// body is the JSON of a users request.
type body struct {
	Session session `json:"session"`
	Payload struct {
		Schema []string   `json:"schema"`
		Data   [][]string `json:"data"`
	} `json:"payload"`
}

// Schema names the columns of a row: the multi-key schema of the users
// reference ("One can also pass an array of multiple keys for multi-key
// match. Supported key types includes: EXTERN_ID EMAIL PHONE … LN FN …
// COUNTRY"; "In case a key is unknown, it should be left blank").
var Schema = []string{"EMAIL", "PHONE", "FN", "LN", "COUNTRY", "EXTERN_ID"}

func (r *request) body() ([]byte, error) {
	var b body
	b.Session = r.session
	b.Payload.Schema = Schema
	b.Payload.Data = make([][]string, 0, r.rows)
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
	return post(ctx, d.client, r.method, d.users, d.cfg.AccessToken, r.method+" users", b, nil)
}

// post sends one Graph API request with the token as a bearer token and
// decodes a 2xx answer into out (when not nil).
func post(ctx context.Context, client *http.Client, method, u, token, what string, b []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return channels.Permanent(fmt.Errorf("meta: %s: %w", what, err))
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// Timeouts, resets and a cancelled ctx (shutdown) are all worth
		// another try; the error names the URL, which holds no token.
		return fmt.Errorf("meta: %s: %w", what, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if resp.StatusCode/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("meta: %s: decode answer: %w", what, err)
			}
		}
		return nil
	}
	return classify(what, resp.StatusCode, raw)
}

// graphError is the body of a Graph API error.
type graphError struct {
	Error struct {
		Message     string `json:"message"`
		Type        string `json:"type"`
		Code        int    `json:"code"`
		Subcode     int    `json:"error_subcode"`
		IsTransient bool   `json:"is_transient"`
		UserTitle   string `json:"error_user_title"`
		UserMsg     string `json:"error_user_msg"`
		TraceID     string `json:"fbtrace_id"`
	} `json:"error"`
}

// transientCodes are the Graph API error codes worth retrying (see the
// package doc).
var transientCodes = map[int]bool{1: true, 2: true, 4: true, 17: true, 32: true, 341: true, 368: true, 613: true, 80003: true}

// classify turns a non-2xx answer into a retryable or permanent error.
func classify(what string, status int, raw []byte) error {
	var g graphError
	_ = json.Unmarshal(raw, &g) // a proxy's HTML page has no code: status alone decides
	e := g.Error
	msg := "HTTP " + strconv.Itoa(status)
	if e.Code != 0 {
		msg += fmt.Sprintf(": %s (code %d", e.Message, e.Code)
		if e.Subcode != 0 {
			msg += fmt.Sprintf(", subcode %d", e.Subcode)
		}
		if e.TraceID != "" {
			msg += ", fbtrace_id " + e.TraceID
		}
		msg += ")"
		if e.UserTitle != "" || e.UserMsg != "" {
			msg += ": " + strings.TrimSpace(e.UserTitle+" "+e.UserMsg)
		}
	}
	switch {
	case e.Code == 190:
		// OAuthException: "Invalid OAuth 2.0 Access Token" (expired,
		// revoked, or the user changed their password). No retry mends it.
		msg += " — the access token is invalid or expired: generate a new system user token"
	case e.Code == 10 || (e.Code >= 200 && e.Code <= 299):
		msg += " — the token lacks a permission (ads_management on the ad account)"
	}
	err := fmt.Errorf("meta: %s: %s", what, msg)
	switch {
	case e.Code == 190:
		return channels.Permanent(err)
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return err
	case e.IsTransient || transientCodes[e.Code]:
		return err
	}
	return channels.Permanent(err)
}

// Rows turns a person into rows of the multi-key Schema, one row per
// address or number (the i-th email paired with the i-th phone), each
// with the person's names, country and external id; every value is the
// lower-case hex SHA-256 of the normalized identifier, "" when unknown.
// Duplicates and unusable values are dropped; no email and no phone is no
// row.
func Rows(emails, phones []string, prof *channels.Profile, profileID string) [][]string {
	es := hashAll(emails, NormEmail)
	ps := hashAll(phones, NormPhone)
	n := max(len(es), len(ps))
	if n == 0 {
		return nil
	}
	var fn, ln, country string
	if prof != nil {
		fn = hashOf(NormName(trait(prof, "first_name")))
		ln = hashOf(NormName(trait(prof, "last_name")))
		country = hashOf(NormCountry(trait(prof, "country")))
	}
	ext := ExternalID(profileID)
	rows := make([][]string, n)
	for i := range rows {
		row := make([]string, len(Schema))
		if i < len(es) {
			row[0] = es[i]
		}
		if i < len(ps) {
			row[1] = ps[i]
		}
		row[2], row[3], row[4], row[5] = fn, ln, country, ext
		rows[i] = row
	}
	return rows
}

// ExternalID is the EXTERN_ID and Conversions API external_id of a
// profile: the SHA-256 of its id. The users reference takes EXTERN_ID
// unhashed or hashed ("Hashing not required"); the Conversions API
// recommends hashing external_id. Hashing it in both keeps the two equal,
// so an audience row and a conversion of the same person match.
func ExternalID(profileID string) string {
	if profileID == "" {
		return ""
	}
	return sha256Hex(profileID)
}

func trait(p *channels.Profile, name string) string {
	s, _ := p.Traits[name].(string)
	return s
}

func hashOf(s string) string {
	if s == "" {
		return ""
	}
	return sha256Hex(s)
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

// NormEmail trims and lower-cases an address ("trim leading and trailing
// white space and convert all characters to lowercase"); "" if it is not
// one.
func NormEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.Contains(s, "@") {
		return ""
	}
	return s
}

// NormPhone keeps the digits of an E.164 number without its leading zeros
// ("remove symbols, letters, and any leading zeroes", country code first:
// "+44 20 7183 8750" and "0044 20 7183 8750" → "442071838750").
func NormPhone(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' && (c != '0' || len(b) > 0) {
			b = append(b, c)
		}
	}
	return string(b)
}

// NormName lower-cases a first or last name and drops what is not a
// letter ("Lowercase only, no punctuation. Special characters in UTF-8
// format": "Mary-Ann" → "maryann", "Émilie" → "émilie").
func NormName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		if unicode.IsLetter(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// NormCountry is a country as a lower-case ISO 3166-1 alpha-2 code ("Use
// lowercase, 2-letter country codes"); "" for anything else.
func NormCountry(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 2 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z' {
		return ""
	}
	return s
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
