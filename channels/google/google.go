package google

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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"cartera/channels"
)

// Prefix starts the destination name of a Google audience:
// "google:<audience>".
const Prefix = "google:"

const (
	// MaxIdentifiersPerOperation is the most identifiers one UserData
	// (one operation) holds.
	MaxIdentifiersPerOperation = 20
	// MaxIdentifiersPerRequest is the most identifiers one addOperations
	// call holds.
	MaxIdentifiersPerRequest = 100000
)

// DefaultBaseURL is the Google Ads API root of the legacy path
// (api: google_ads). v18 was sunset in August 2025 ("v18 | October 16,
// 2024 | June 2025 | August 2025", Deprecation and sunset,
// https://developers.google.com/google-ads/api/docs/sunset-dates); v23 is
// the newest version the references we read name (v23.1 announced for
// February 2026) and OfflineUserDataJobService is unchanged in it.
const DefaultBaseURL = "https://googleads.googleapis.com/v23"

// Config is one Customer Match user list.
type Config struct {
	// Name is the destination the outbox routes by, "google:<audience>"
	// (e.g. "google:retargeting"); the part after the colon is the
	// Cartera audience reported when a payload names none.
	Name string
	// BaseURL is the Google Ads API root with its version; the wiring sets
	// it from CARTERA_GOOGLE_ADS_URL. Empty means DefaultConfig's.
	BaseURL string
	// CustomerID is the Google Ads account that owns the list, with or
	// without dashes ("123-456-7890").
	CustomerID string
	// UserList is the list's resource name,
	// "customers/<customer id>/userLists/<list id>".
	UserList string
	// DeveloperToken is the API developer token (developer-token header).
	DeveloperToken string
	// AccessToken is an OAuth 2.0 access token sent as a Bearer token. It
	// may be empty only with an HTTPClient that authorizes requests itself
	// (and refreshes the token, which expires within the hour).
	AccessToken string
	// LoginCustomerID is the manager account the call goes through
	// (login-customer-id header); empty when calling the account directly.
	LoginCustomerID string
	// HTTPClient makes the calls; nil means a client with a 60s timeout.
	HTTPClient *http.Client
	// ConsentGranted marks add jobs with ad_user_data and
	// ad_personalization consent GRANTED. Set it when the config makes ads
	// consent opt-in, so that every add the outbox carries had a yes.
	ConsentGranted bool
}

// DefaultConfig has the Google Ads API as BaseURL; nothing else has a
// default.
func DefaultConfig() Config {
	return Config{BaseURL: DefaultBaseURL}
}

var (
	userListName = regexp.MustCompile(`^customers/[0-9]+/userLists/[0-9]+$`)
	jobName      = regexp.MustCompile(`^customers/[0-9]+/offlineUserDataJobs/[0-9]+$`)
)

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.Name, Prefix) || len(c.Name) == len(Prefix) {
		return fmt.Errorf("google.name: want %s<audience>, got %q", Prefix, c.Name)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("google.base_url: want an absolute http(s) URL without a query, got %q", c.BaseURL)
	}
	if !isID(customerID(c.CustomerID)) {
		return fmt.Errorf("google.customer_id: want a Google Ads customer id, got %q", c.CustomerID)
	}
	if !userListName.MatchString(c.UserList) {
		return fmt.Errorf("google.user_list: want customers/<customer id>/userLists/<list id>, got %q", c.UserList)
	}
	if c.DeveloperToken == "" {
		return errors.New("google.developer_token: required")
	}
	if c.AccessToken == "" && c.HTTPClient == nil {
		return errors.New("google.access_token: required unless an HTTP client authorizes the calls")
	}
	if c.LoginCustomerID != "" && !isID(customerID(c.LoginCustomerID)) {
		return fmt.Errorf("google.login_customer_id: want a Google Ads customer id, got %q", c.LoginCustomerID)
	}
	return nil
}

// customerID drops the dashes of "123-456-7890".
func customerID(s string) string { return strings.ReplaceAll(s, "-", "") }

func isID(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// Destination syncs one Customer Match user list. It is safe for
// concurrent use.
type Destination struct {
	cfg    Config
	base   string
	cid    string
	login  string
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
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		cid:    customerID(cfg.CustomerID),
		login:  customerID(cfg.LoginCustomerID),
		client: cfg.HTTPClient,
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: 60 * time.Second}
	}
	return d, nil
}

// Name is the destination name messages are routed by.
func (d *Destination) Name() string { return d.cfg.Name }

// Deliver runs a job for the batch's adds, then one for its removes (see
// the package doc), and returns one Result per message, in order.
func (d *Destination) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	adds, removes := d.plan(msgs, out)
	if len(adds) > 0 {
		d.job(ctx, "add", adds, out)
	}
	if len(removes) > 0 {
		d.job(ctx, "remove", removes, out)
	}
	return out
}

// person is one message ready to send.
type person struct {
	msg int // index in the batch
	p   channels.AudiencePayload
	ids []identifier
}

// identifier is one UserIdentifier: exactly one field is set.
type identifier struct {
	HashedEmail       string `json:"hashedEmail,omitempty"`
	HashedPhoneNumber string `json:"hashedPhoneNumber,omitempty"`
}

// plan decodes and hashes the batch, settles in out the messages that need
// no request (bad ones, and those a later message for the same person
// overrides), and returns the rest, adds and removes, in batch order.
func (d *Destination) plan(msgs []*channels.Message, out []channels.Result) (adds, removes []*person) {
	people := channels.LatestPerPerson(msgs, out, func(i int, m *channels.Message) (string, *person, error) {
		p, err := channels.DecodeAudience("google", strings.TrimPrefix(d.cfg.Name, Prefix), m)
		if err != nil {
			return "", nil, err
		}
		ids := hashIdentifiers(p.Emails, p.Phones)
		if len(ids) == 0 {
			return "", nil, channels.Permanent(errors.New("google: no identifiers"))
		}
		if len(ids) > MaxIdentifiersPerRequest {
			return "", nil, channels.Permanent(fmt.Errorf("google: %d identifiers for one person, over Google's %d a request", len(ids), MaxIdentifiersPerRequest))
		}
		return p.Audience, &person{msg: i, p: p, ids: ids}, nil
	})
	for _, p := range people {
		switch {
		case p.p.Op == "add":
			adds = append(adds, p)
		default:
			removes = append(removes, p)
		}
	}
	return adds, removes
}

// job creates, fills and runs one job for people, all with op, and
// settles their messages in out.
func (d *Destination) job(ctx context.Context, op string, people []*person, out []channels.Result) {
	fail := func(ps []*person, err error) {
		for _, p := range ps {
			out[p.msg].Err = err
		}
	}
	name, err := d.create(ctx, op == "add" && d.cfg.ConsentGranted)
	if err != nil {
		fail(people, err)
		return
	}
	var accepted []*person
	for _, chunk := range chunks(people) {
		rejected, err := d.addOperations(ctx, name, op, chunk)
		if err != nil {
			fail(chunk, err)
			continue
		}
		for i, p := range chunk {
			if err := rejected[i]; err != nil {
				out[p.msg].Err = err
				continue
			}
			accepted = append(accepted, p)
		}
	}
	if len(accepted) == 0 {
		return // an empty job is left pending; Google never runs it
	}
	if err := d.call(ctx, "run job", "/"+name+":run", struct{}{}, nil); err != nil {
		fail(accepted, err)
		return
	}
	for _, p := range accepted {
		out[p.msg].Events = []channels.Outcome{{Event: "Audience Synced", Properties: map[string]any{
			"audience": p.p.Audience, "destination": "google", "op": op, "job": name,
		}}}
	}
}

// chunks splits people into addOperations calls of at most
// MaxIdentifiersPerRequest identifiers, keeping each person whole.
func chunks(people []*person) [][]*person {
	var out [][]*person
	n := 0
	for _, p := range people {
		if len(out) == 0 || n+len(p.ids) > MaxIdentifiersPerRequest {
			out = append(out, nil)
			n = 0
		}
		out[len(out)-1] = append(out[len(out)-1], p)
		n += len(p.ids)
	}
	return out
}

type adsConsentBlock struct {
	AdUserData        string `json:"adUserData"`
	AdPersonalization string `json:"adPersonalization"`
}

type createRequest struct {
	Job struct {
		Type     string `json:"type"`
		Metadata struct {
			UserList string           `json:"userList"`
			Consent  *adsConsentBlock `json:"consent,omitempty"`
		} `json:"customerMatchUserListMetadata"`
	} `json:"job"`
}

// create makes a job and returns its resource name.
func (d *Destination) create(ctx context.Context, granted bool) (string, error) {
	var req createRequest
	req.Job.Type = "CUSTOMER_MATCH_USER_LIST"
	req.Job.Metadata.UserList = d.cfg.UserList
	if granted {
		req.Job.Metadata.Consent = &adsConsentBlock{AdUserData: "GRANTED", AdPersonalization: "GRANTED"}
	}
	var resp struct {
		ResourceName string `json:"resourceName"`
	}
	if err := d.call(ctx, "create job", "/customers/"+d.cid+"/offlineUserDataJobs:create", &req, &resp); err != nil {
		return "", err
	}
	if !jobName.MatchString(resp.ResourceName) {
		// Not a name we can put in a URL: likely a proxy's answer, so
		// worth another try rather than a guess.
		return "", fmt.Errorf("google: create job: unexpected resource name %q", resp.ResourceName)
	}
	return resp.ResourceName, nil
}

type adsUserData struct {
	UserIdentifiers []identifier `json:"userIdentifiers"`
}

type operation struct {
	Create *adsUserData `json:"create,omitempty"`
	Remove *adsUserData `json:"remove,omitempty"`
}

type addRequest struct {
	Operations           []operation `json:"operations"`
	EnablePartialFailure bool        `json:"enablePartialFailure"`
}

func addBody(op string, people []*person) (*addRequest, []int) {
	req := &addRequest{EnablePartialFailure: true}
	owner := []int{} // operation index → index in people
	for i, p := range people {
		for ids := p.ids; len(ids) > 0; {
			n := min(len(ids), MaxIdentifiersPerOperation)
			u := &adsUserData{UserIdentifiers: ids[:n]}
			ids = ids[n:]
			if op == "add" {
				req.Operations = append(req.Operations, operation{Create: u})
			} else {
				req.Operations = append(req.Operations, operation{Remove: u})
			}
			owner = append(owner, i)
		}
	}
	return req, owner
}

// addOperations adds people's operations to the job. A failed call is
// err; otherwise rejected[i] is the permanent error of people[i] when
// partial failure rejected one of its operations.
func (d *Destination) addOperations(ctx context.Context, name, op string, people []*person) (rejected []error, err error) {
	req, owner := addBody(op, people)
	var resp struct {
		PartialFailureError *status `json:"partialFailureError"`
	}
	if err := d.call(ctx, "add operations", "/"+name+":addOperations", req, &resp); err != nil {
		return nil, err
	}
	rejected = make([]error, len(people))
	pf := resp.PartialFailureError
	if pf == nil || pf.Code == 0 {
		return rejected, nil
	}
	why := map[int][]string{} // index in people → error texts
	for _, det := range pf.Details {
		for _, e := range det.Errors {
			i, ok := e.operation()
			if !ok || i >= len(owner) {
				continue
			}
			why[owner[i]] = append(why[owner[i]], e.String())
		}
	}
	for i, texts := range why {
		sort.Strings(texts)
		rejected[i] = channels.Permanent(fmt.Errorf("google: operation rejected: %s", strings.Join(texts, "; ")))
	}
	return rejected, nil
}

// status is google.rpc.Status as the REST interface renders it, with the
// GoogleAdsFailure details it carries.
type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []struct {
		Type      string     `json:"@type"`
		Errors    []adsError `json:"errors"`
		RequestID string     `json:"requestId"`
	} `json:"details"`
}

// adsError is one GoogleAdsError.
type adsError struct {
	ErrorCode map[string]any `json:"errorCode"`
	Message   string         `json:"message"`
	Location  struct {
		FieldPathElements []struct {
			FieldName string `json:"fieldName"`
			Index     *int   `json:"index"`
		} `json:"fieldPathElements"`
	} `json:"location"`
}

// operation is the index of the operation the error is about.
func (e adsError) operation() (int, bool) {
	for _, f := range e.Location.FieldPathElements {
		if f.FieldName == "operations" && f.Index != nil {
			return *f.Index, true
		}
	}
	return 0, false
}

// String is "<kind>=<code>: <message>", e.g.
// "offlineUserDataJobError=INVALID_SHA256_FORMAT: …"; the error's
// trigger (the offending value) is left out.
func (e adsError) String() string {
	var codes []string
	for k, v := range e.ErrorCode {
		codes = append(codes, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(codes)
	return strings.Join(codes, ",") + ": " + e.Message
}

// call POSTs in as JSON to BaseURL+path and decodes a 2xx answer into out
// (when not nil); any other answer is an error, permanent or not.
func (d *Destination) call(ctx context.Context, what, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return channels.Permanent(fmt.Errorf("google: %s: encode: %w", what, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(b))
	if err != nil {
		return channels.Permanent(fmt.Errorf("google: %s: %w", what, err))
	}
	if d.cfg.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.AccessToken)
	}
	req.Header.Set("developer-token", d.cfg.DeveloperToken)
	if d.login != "" {
		req.Header.Set("login-customer-id", d.login)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		// Timeouts, resets and a cancelled ctx (shutdown) are all worth
		// another try; the error names the URL, which holds no secret.
		return fmt.Errorf("google: %s: %w", what, err)
	}
	defer resp.Body.Close()
	// A partial failure can list an error for each of 100,000 operations.
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if resp.StatusCode/100 != 2 {
		return classify(what, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("google: %s: decode answer: %w", what, err)
	}
	return nil
}

// classify turns a non-2xx answer into a retryable or permanent error.
func classify(what string, code int, raw []byte) error {
	var body struct {
		Error status `json:"error"`
	}
	_ = json.Unmarshal(raw, &body) // a proxy's HTML page has none: the status alone decides
	msg := "HTTP " + strconv.Itoa(code)
	if s := body.Error; s.Status != "" || s.Message != "" {
		msg += " " + s.Status + ": " + s.Message
		var texts []string
		reqID := ""
		for _, det := range s.Details {
			for _, e := range det.Errors {
				texts = append(texts, e.String())
			}
			if det.RequestID != "" {
				reqID = det.RequestID
			}
		}
		if len(texts) > 0 {
			msg += " [" + strings.Join(texts, "; ") + "]"
		}
		if reqID != "" {
			msg += " (request id " + reqID + ")"
		}
	}
	err := fmt.Errorf("google: %s: %s", what, msg)
	switch code {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return err
	}
	if code >= 500 {
		return err
	}
	return channels.Permanent(err)
}

// hashIdentifiers turns a person's addresses and numbers into
// UserIdentifiers, addresses first; duplicates and unusable values are
// dropped.
func hashIdentifiers(emails, phones []string) []identifier {
	var ids []identifier
	seen := map[string]bool{}
	for _, e := range emails {
		if e = normEmail(e); e != "" && !seen[e] {
			seen[e] = true
			ids = append(ids, identifier{HashedEmail: sha256Hex(e)})
		}
	}
	for _, p := range phones {
		if p = normPhone(p); p != "" && !seen[p] {
			seen[p] = true
			ids = append(ids, identifier{HashedPhoneNumber: sha256Hex(p)})
		}
	}
	return ids
}

// normEmail trims and lower-cases an address; "" if it is not one. Dots
// stay (see the package doc).
func normEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.Contains(s, "@") {
		return ""
	}
	return s
}

// normPhone writes a number in E.164: "+", then its digits without leading
// zeros ("+44 20 7183 8750" and "0044 20 7183 8750" → "+442071838750").
func normPhone(s string) string {
	b := make([]byte, 1, len(s)+1)
	b[0] = '+'
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' && (c != '0' || len(b) > 1) {
			b = append(b, c)
		}
	}
	if len(b) == 1 {
		return ""
	}
	return string(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
