package google

import (
	"bytes"
	"context"
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

// DefaultDataManagerURL is the Data Manager API root with its version
// (https://developers.google.com/data-manager/api/reference/rest/v1).
const DefaultDataManagerURL = "https://datamanager.googleapis.com/v1"

// DataManagerScope is the OAuth scope every Data Manager credential needs
// ("Requires the following OAuth scope:
// https://www.googleapis.com/auth/datamanager", events.ingest reference).
const DataManagerScope = "https://www.googleapis.com/auth/datamanager"

// Request limits of the Data Manager API ("Limits and quotas",
// https://developers.google.com/data-manager/api/limits).
const (
	// MaxMembersPerRequest: "10,000 AudienceMember resources in the
	// audience_members list" of an IngestAudienceMembersRequest.
	MaxMembersPerRequest = 10000
	// MaxIdentifiersPerMember: "At most 10 userIdentifiers can be provided
	// in a single AudienceMember or Event" (UserData reference).
	MaxIdentifiersPerMember = 10
	// MaxEventsPerRequest: "At most 2000 Event resources can be sent in a
	// single request" (IngestEventsRequest reference).
	MaxEventsPerRequest = 2000
)

// Account is a Data Manager ProductAccount: {"accountId", "accountType"}.
type Account struct {
	// ID is the account's id, digits; dashes ("123-456-7890") are dropped.
	ID string
	// Type is the ProductAccount.AccountType: GOOGLE_ADS (default),
	// DISPLAY_VIDEO_PARTNER, DISPLAY_VIDEO_ADVERTISER or DATA_PARTNER.
	Type string
}

var accountTypes = map[string]bool{"GOOGLE_ADS": true, "DISPLAY_VIDEO_PARTNER": true, "DISPLAY_VIDEO_ADVERTISER": true, "DATA_PARTNER": true}

func (a Account) validate(field string, required bool) error {
	if a.ID == "" && !required {
		return nil
	}
	if !isID(customerID(a.ID)) {
		return fmt.Errorf("%s_id: want the account's numeric id, got %q", field, a.ID)
	}
	if a.Type != "" && !accountTypes[a.Type] {
		return fmt.Errorf("%s_type: want GOOGLE_ADS, DISPLAY_VIDEO_PARTNER, DISPLAY_VIDEO_ADVERTISER or DATA_PARTNER, got %q", field, a.Type)
	}
	return nil
}

// productAccount is the wire form of a ProductAccount.
type productAccount struct {
	AccountID   string `json:"accountId"`
	AccountType string `json:"accountType"`
}

func (a Account) wire() *productAccount {
	if a.ID == "" {
		return nil
	}
	t := a.Type
	if t == "" {
		t = "GOOGLE_ADS"
	}
	return &productAccount{AccountID: customerID(a.ID), AccountType: t}
}

// destination is the wire form of a Data Manager Destination.
type destination struct {
	LoginAccount         *productAccount `json:"loginAccount,omitempty"`
	OperatingAccount     *productAccount `json:"operatingAccount"`
	ProductDestinationID string          `json:"productDestinationId"`
}

// DataManagerConfig is one Customer Match list reached through the Data
// Manager API.
type DataManagerConfig struct {
	// Name is the destination the outbox routes by, "google:<audience>".
	Name string
	// BaseURL is the API root with its version (CARTERA_GOOGLE_DATA_MANAGER_URL);
	// empty means DefaultDataManagerURL.
	BaseURL string
	// Operating is the account that owns the list (Destination.operatingAccount).
	Operating Account
	// Login is the account the credentials act as, when it is not the
	// operating account (a manager account: Destination.loginAccount).
	Login Account
	// UserListID is the Customer Match list's id (Destination.productDestinationId).
	UserListID string
	// HTTPClient makes the calls and must authorize them (an OAuth client
	// from Credentials.Client, which refreshes its token); required.
	HTTPClient *http.Client
	// Profiles looks people up at delivery for their ads consent; nil
	// sends adds without a consent block (the account's defaults apply).
	Profiles channels.Profiles
	// StatusPolls is how many times Deliver asks requestStatus:retrieve
	// about each accepted request before settling it (0: not at all; the
	// request id is kept in the outcome either way). StatusWait is the
	// pause before each poll (default 2s); Sleep waits it (tests).
	StatusPolls int
	StatusWait  time.Duration
	Sleep       func(context.Context, time.Duration) error
	// Status polls each accepted request in the background until it is
	// terminal (nil: not polled).
	Status *StatusPoller
}

// Validate reports the first invalid setting, naming it.
func (c DataManagerConfig) Validate() error {
	if !strings.HasPrefix(c.Name, Prefix) || len(c.Name) == len(Prefix) {
		return fmt.Errorf("google.name: want %s<audience>, got %q", Prefix, c.Name)
	}
	if err := checkBase("google.data_manager_url", c.BaseURL); err != nil {
		return err
	}
	if err := c.Operating.validate("google.operating_account", true); err != nil {
		return err
	}
	if err := c.Login.validate("google.login_account", false); err != nil {
		return err
	}
	if !isID(c.UserListID) {
		return fmt.Errorf("google.user_list_id: want the Customer Match list's numeric id, got %q", c.UserListID)
	}
	if c.HTTPClient == nil {
		return errors.New("google: credentials required (service_account_file, refresh_token or access_token)")
	}
	if c.StatusPolls < 0 {
		return fmt.Errorf("google.status_polls: want 0 or more, got %d", c.StatusPolls)
	}
	return nil
}

func checkBase(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("%s: want an absolute http(s) URL without a query, got %q", field, s)
	}
	return nil
}

// DataManager keeps a Customer Match list in step with a Cartera audience
// through audienceMembers:ingest and audienceMembers:remove. It is safe
// for concurrent use.
type DataManager struct {
	cfg  DataManagerConfig
	api  *dmClient
	dest destination
}

// NewDataManager checks cfg (an empty BaseURL takes DefaultDataManagerURL)
// and returns the destination.
func NewDataManager(cfg DataManagerConfig) (*DataManager, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultDataManagerURL
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &DataManager{cfg: cfg, api: newDMClient(cfg.BaseURL, cfg.HTTPClient, cfg.StatusPolls, cfg.StatusWait, cfg.Sleep),
		dest: destination{LoginAccount: cfg.Login.wire(), OperatingAccount: cfg.Operating.wire(), ProductDestinationID: cfg.UserListID}}
	if cfg.Status != nil {
		cfg.Status.register(cfg.Name, d.api)
	}
	return d, nil
}

// Name is the destination name messages are routed by.
func (d *DataManager) Name() string { return d.cfg.Name }

// member is one person ready to send: their AudienceMembers (one per ten
// identifiers) and the message they come from.
type member struct {
	msg     int
	p       channels.AudiencePayload
	members []audienceMember
}

// audienceMember is the wire form of an AudienceMember with userData.
type audienceMember struct {
	UserData userData `json:"userData"`
	Consent  *consent `json:"consent,omitempty"`
}

// userData and userIdentifier are UserData and UserIdentifier: "Exactly
// one must be specified" of emailAddress, phoneNumber, address.
type userData struct {
	UserIdentifiers []userIdentifier `json:"userIdentifiers"`
}

type userIdentifier struct {
	EmailAddress string       `json:"emailAddress,omitempty"`
	PhoneNumber  string       `json:"phoneNumber,omitempty"`
	Address      *addressInfo `json:"address,omitempty"`
}

// Consent status values of the Data Manager's Consent message.
const (
	ConsentGranted = "CONSENT_GRANTED"
	ConsentDenied  = "CONSENT_DENIED"
)

// consent is the Data Manager Consent {adUserData, adPersonalization}.
type consent struct {
	AdUserData        string `json:"adUserData"`
	AdPersonalization string `json:"adPersonalization"`
}

// adsConsent is the consent block of a person's "ads" consent: granted
// for a yes, denied for a no, nil when they never said.
func adsConsent(p *channels.Profile) *consent {
	if p == nil {
		return nil
	}
	v, ok := p.Consent["ads"]
	switch {
	case !ok:
		return nil
	case v:
		return &consent{AdUserData: ConsentGranted, AdPersonalization: ConsentGranted}
	}
	return &consent{AdUserData: ConsentDenied, AdPersonalization: ConsentDenied}
}

// Deliver sends the batch's adds (audienceMembers:ingest) and removes
// (audienceMembers:remove), at most MaxMembersPerRequest members a
// request, and returns one Result per message, in order.
func (d *DataManager) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	people := channels.LatestPerPerson(msgs, out, func(i int, m *channels.Message) (string, *member, error) {
		p, err := channels.DecodeAudience("google", strings.TrimPrefix(d.cfg.Name, Prefix), m)
		if err != nil {
			return "", nil, err
		}
		if len(p.Emails) == 0 && len(p.Phones) == 0 && (m.ProfileID == "" || d.cfg.Profiles == nil) {
			return "", nil, channels.Permanent(errors.New("google: no identifiers"))
		}
		return p.Audience, &member{msg: i, p: p}, nil
	})
	var adds, removes []*member
	for _, mb := range people {
		var c *consent
		// A payload without identifiers (a dead letter of a failed
		// request, retried) takes the person's at delivery.
		lookup := len(mb.p.Emails) == 0 && len(mb.p.Phones) == 0
		// The person's address (names, country, postal code) is looked up
		// at delivery, as the payload carries emails and phones only.
		var addr Address
		if d.cfg.Profiles != nil && (mb.p.Op == "add" || lookup || msgs[mb.msg].ProfileID != "") {
			prof, err := d.cfg.Profiles.Profile(ctx, msgs[mb.msg].ProfileID)
			if err != nil {
				out[mb.msg].Err = fmt.Errorf("google: look up profile: %w", err)
				continue
			}
			if prof == nil && lookup {
				out[mb.msg].Err = channels.Permanent(errors.New("google: the person was erased: nothing to send"))
				continue
			}
			if mb.p.Op == "add" {
				if c = adsConsent(prof); prof == nil || (c != nil && c.AdUserData == ConsentDenied) {
					// Erased, or said no since the add was queued: never sent.
					out[mb.msg].Err = channels.ErrNoConsent
					continue
				}
			}
			if lookup {
				mb.p.Emails, mb.p.Phones = prof.Emails, prof.Phones
			}
			addr = ProfileAddress(prof)
		}
		ids := dmIdentifiers(mb.p.Emails, mb.p.Phones, addr)
		if len(ids) == 0 {
			out[mb.msg].Err = channels.Permanent(errors.New("google: no identifiers"))
			continue
		}
		for len(ids) > 0 {
			n := min(len(ids), MaxIdentifiersPerMember)
			mb.members = append(mb.members, audienceMember{UserData: userData{UserIdentifiers: ids[:n]}, Consent: c})
			ids = ids[n:]
		}
		if mb.p.Op == "add" {
			adds = append(adds, mb)
		} else {
			removes = append(removes, mb)
		}
	}
	d.send(ctx, "audienceMembers:ingest", adds, msgs, out)
	d.send(ctx, "audienceMembers:remove", removes, msgs, out)
	return out
}

// membersRequest is an IngestAudienceMembersRequest or a
// RemoveAudienceMembersRequest (which has no consent field: consent is
// per member on ingest only).
type membersRequest struct {
	Destinations    []destination    `json:"destinations"`
	AudienceMembers []audienceMember `json:"audienceMembers"`
	Encoding        string           `json:"encoding"`
}

// send makes the requests of one method for people, in chunks within the
// limit (a person is never split over two requests), and settles them.
func (d *DataManager) send(ctx context.Context, method string, people []*member, msgs []*channels.Message, out []channels.Result) {
	for len(people) > 0 {
		n, total := 0, 0
		for n < len(people) && total+len(people[n].members) <= MaxMembersPerRequest {
			total += len(people[n].members)
			n++
		}
		n = max(n, 1) // one person's ≤ 10,000 members always fit (see plan)
		chunk := people[:n]
		people = people[n:]
		req := membersRequest{Destinations: []destination{d.dest}, Encoding: "HEX"}
		owner := make([]int, 0, total) // member index → index in chunk
		for i, mb := range chunk {
			for _, am := range mb.members {
				if method == "audienceMembers:remove" {
					am.Consent = nil
				}
				req.AudienceMembers = append(req.AudienceMembers, am)
				owner = append(owner, i)
			}
		}
		id, err := d.api.call(ctx, method, &req)
		if err == nil {
			err = d.api.poll(ctx, id)
		}
		if err != nil {
			blame := blameMembers(err, owner)
			for i, mb := range chunk {
				switch {
				case blame == nil:
					out[mb.msg].Err = err
				case blame[i] != nil:
					out[mb.msg].Err = blame[i]
				default:
					// Refused because of another member: the retry goes
					// without it.
					out[mb.msg].Err = fmt.Errorf("google: %s refused for another member of the request: %w", method, retryable(err))
				}
			}
			continue
		}
		op := "add"
		if method == "audienceMembers:remove" {
			op = "remove"
		}
		if d.cfg.Status != nil {
			items := make([]pendingItem, 0, len(chunk))
			for _, mb := range chunk {
				// The change without the identifiers: a retry of its dead
				// letter looks them up.
				pl, _ := json.Marshal(channels.AudiencePayload{Audience: mb.p.Audience, Op: op})
				items = append(items, pendingItem{ProfileID: msgs[mb.msg].ProfileID, Key: msgs[mb.msg].Key, Payload: pl})
			}
			d.cfg.Status.track(d.cfg.Name, method, id, items)
		}
		for _, mb := range chunk {
			out[mb.msg].Events = []channels.Outcome{{Event: "Audience Synced", Properties: map[string]any{
				"audience": mb.p.Audience, "destination": "google", "op": op, "request_id": id,
			}}}
		}
	}
}

// retryable strips the permanence of err.
func retryable(err error) error {
	var pe *channels.PermanentError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// dmIdentifiers turns addresses and numbers, and the postal address when
// all its parts are known, into UserIdentifiers, hashed as the Data
// Manager's "Format user data" guide says; duplicates and unusable values
// are dropped.
func dmIdentifiers(emails, phones []string, addr Address) []userIdentifier {
	var ids []userIdentifier
	seen := map[string]bool{}
	for _, e := range emails {
		if e = DataManagerEmail(e); e != "" && !seen[e] {
			seen[e] = true
			ids = append(ids, userIdentifier{EmailAddress: sha256Hex(e)})
		}
	}
	for _, p := range phones {
		if p = normPhone(p); p != "" && !seen[p] {
			seen[p] = true
			ids = append(ids, userIdentifier{PhoneNumber: sha256Hex(p)})
		}
	}
	if a := addr.identifier(); a != nil {
		ids = append(ids, *a)
	}
	return ids
}

// DataManagerEmail normalizes an address as the Data Manager's "Format user
// data" guide says for email_address: "Convert to lowercase. If the email
// address has the gmail.com or googlemail.com domain, remove all dots (.)
// before the @ symbol", and "Trim leading, trailing and intermediate
// whitespace". "" if it is not an address.
func DataManagerEmail(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(s), ""))
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" {
		return ""
	}
	if domain == "gmail.com" || domain == "googlemail.com" {
		local = strings.ReplaceAll(local, ".", "")
	}
	return local + "@" + domain
}

// dmClient makes Data Manager calls and reads their answers.
type dmClient struct {
	base   string
	http   *http.Client
	polls  int
	wait   time.Duration
	sleep  func(context.Context, time.Duration) error
	status string // requestStatus:retrieve URL
}

func newDMClient(base string, c *http.Client, polls int, wait time.Duration, sleep func(context.Context, time.Duration) error) *dmClient {
	if wait <= 0 {
		wait = 2 * time.Second
	}
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
	base = strings.TrimRight(base, "/")
	return &dmClient{base: base, http: c, polls: polls, wait: wait, sleep: sleep, status: base + "/requestStatus:retrieve"}
}

// call POSTs in to <base>/<method> and returns the answer's requestId
// ("The auto-generated ID of the request").
func (c *dmClient) call(ctx context.Context, method string, in any) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", channels.Permanent(fmt.Errorf("google: %s: encode: %w", method, err))
	}
	var resp struct {
		RequestID string `json:"requestId"`
	}
	if err := c.do(ctx, http.MethodPost, c.base+"/"+method, method, b, &resp); err != nil {
		return "", err
	}
	return resp.RequestID, nil
}

// RequestStatus is one destination's entry of a RetrieveRequestStatusResponse.
type RequestStatus struct {
	// Status is the RequestStatus: SUCCESS, PROCESSING, FAILED,
	// PARTIAL_SUCCESS or REQUEST_STATUS_UNKNOWN.
	Status string `json:"requestStatus"`
	// Errors are the ErrorInfo's error counts, "<reason>×<count>".
	ErrorInfo struct {
		ErrorCounts []struct {
			RecordCount json.Number `json:"recordCount"`
			Reason      string      `json:"reason"`
		} `json:"errorCounts"`
	} `json:"errorInfo"`
}

func (s RequestStatus) errors() string {
	var parts []string
	for _, e := range s.ErrorInfo.ErrorCounts {
		parts = append(parts, fmt.Sprintf("%s×%s", e.Reason, e.RecordCount))
	}
	return strings.Join(parts, ", ")
}

// poll asks requestStatus:retrieve about id up to polls times, until it
// is no longer PROCESSING. A FAILED request is a permanent error (the
// same data would fail again); PARTIAL_SUCCESS and still PROCESSING are
// settled as sent (the errors were counted, not attributed to members).
func (c *dmClient) poll(ctx context.Context, id string) error {
	if c.polls == 0 || id == "" {
		return nil
	}
	for i := 0; i < c.polls; i++ {
		if err := c.sleep(ctx, c.wait); err != nil {
			return fmt.Errorf("google: wait for request status: %w", err)
		}
		statuses, err := c.retrieve(ctx, id)
		if err != nil {
			return err
		}
		processing := false
		for _, s := range statuses {
			switch s.Status {
			case "FAILED":
				return channels.Permanent(fmt.Errorf("google: request %s failed: %s", id, s.errors()))
			case "PROCESSING", "REQUEST_STATUS_UNKNOWN", "":
				processing = true
			}
		}
		if !processing {
			return nil
		}
	}
	return nil
}

// do sends one request; a non-2xx answer is classified.
func (c *dmClient) do(ctx context.Context, httpMethod, u, what string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, httpMethod, u, rd)
	if err != nil {
		return channels.Permanent(fmt.Errorf("google: %s: %w", what, err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// Timeouts, resets, a token endpoint that is down and a cancelled
		// ctx (shutdown) are all worth another try. oauth2's errors name
		// the token URL, never the token.
		return fmt.Errorf("google: %s: %w", what, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return classifyDM(what, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("google: %s: decode answer: %w", what, err)
	}
	return nil
}

// dmStatus is a google.rpc.Status as REST renders it ("the error code is
// in the error response at error.status, and the corresponding HTTP status
// is at error.code"), with the standard details the "Understand API
// errors" guide names: ErrorInfo, BadRequest, RequestInfo.
type dmStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		Domain          string `json:"domain"`
		RequestID       string `json:"requestId"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
			Reason      string `json:"reason"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

// DMError is a Data Manager error answer.
type DMError struct {
	What       string
	HTTPStatus int
	Status     dmStatus
}

func (e *DMError) Error() string {
	msg := fmt.Sprintf("google: %s: HTTP %d", e.What, e.HTTPStatus)
	s := e.Status
	if s.Status != "" || s.Message != "" {
		msg += " " + s.Status + ": " + s.Message
	}
	var parts []string
	reqID := ""
	for _, d := range s.Details {
		if d.Reason != "" {
			parts = append(parts, "reason "+d.Reason)
		}
		for _, v := range d.FieldViolations {
			parts = append(parts, strings.TrimSpace(v.Field+" "+v.Reason+" "+v.Description))
		}
		if d.RequestID != "" {
			reqID = d.RequestID
		}
	}
	if len(parts) > 0 {
		msg += " [" + strings.Join(parts, "; ") + "]"
	}
	if reqID != "" {
		msg += " (request id " + reqID + ")"
	}
	return msg
}

// classifyDM maps an error answer to retry or dead letter: 429
// (RESOURCE_EXHAUSTED, the project's quota: "Requests that exceed the
// limits are rejected with the error RESOURCE_EXHAUSTED and HTTP status
// 429"), 408, 409 (ABORTED) and 5xx (INTERNAL, UNAVAILABLE,
// DEADLINE_EXCEEDED) are retried; 400 (INVALID_ARGUMENT), 401
// (UNAUTHENTICATED), 403 (PERMISSION_DENIED), 404 and any other 4xx
// cannot succeed as sent and are permanent.
func classifyDM(what string, code int, raw []byte) error {
	var body struct {
		Error dmStatus `json:"error"`
	}
	_ = json.Unmarshal(raw, &body) // a proxy's HTML page has none: the status alone decides
	err := &DMError{What: what, HTTPStatus: code, Status: body.Error}
	switch {
	case code == http.StatusTooManyRequests, code == http.StatusRequestTimeout, code == http.StatusConflict, code >= 500:
		return err
	}
	return channels.Permanent(err)
}

var violationIndex = regexp.MustCompile(`^(?:audience_members|audienceMembers|events)\[(\d+)\]`)

// blameMembers reads a permanent INVALID_ARGUMENT's field violations
// ("audience_members[3].user_data…", "events[0]…"): when every violation
// names an element, it returns per owner index the permanent error of
// those named (nil for the others, which may go again); nil otherwise.
func blameMembers(err error, owner []int) map[int]error {
	var de *DMError
	if !channels.IsPermanent(err) || !errors.As(err, &de) {
		return nil
	}
	why := map[int][]string{}
	for _, d := range de.Status.Details {
		for _, v := range d.FieldViolations {
			m := violationIndex.FindStringSubmatch(v.Field)
			if m == nil {
				return nil
			}
			i, _ := strconv.Atoi(m[1])
			if i >= len(owner) {
				return nil
			}
			why[owner[i]] = append(why[owner[i]], strings.TrimSpace(v.Field+" "+v.Reason+" "+v.Description))
		}
	}
	if len(why) == 0 {
		return nil
	}
	out := map[int]error{}
	for i, texts := range why {
		sort.Strings(texts)
		out[i] = channels.Permanent(fmt.Errorf("google: %s refused: %s", de.What, strings.Join(texts, "; ")))
	}
	return out
}
