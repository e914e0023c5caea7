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
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBaseURL is the Google Wallet REST API root.
const DefaultBaseURL = "https://walletobjects.googleapis.com/walletobjects/v1"

// EnvBaseURL names the environment variable cmd/cartera reads into
// Config.BaseURL (tests and staging point it at a fake).
const EnvBaseURL = "CARTERA_GOOGLE_WALLET_URL"

// NotifyLimit is how many TEXT_AND_NOTIFY messages one object may receive in
// NotifyWindow. Google documents "a maximum of 3 messages that trigger a push
// notification in a 24 hour period" and may throttle issuers that exceed it.
const (
	NotifyLimit  = 3
	NotifyWindow = 24 * time.Hour
)

// RequestsPerSecond caps the calls one Client makes, so a journey that
// touches many passes at once stays under the API's per-issuer quota.
const RequestsPerSecond = 20

// ErrNotifyLimit is returned by AddMessage, without calling Google, when a
// notifying message would exceed NotifyLimit for the object. The caller may
// resend it as a plain TEXT message, which does not notify.
var ErrNotifyLimit = errors.New("google wallet: notification limit reached for object")

// APIError is a non-2xx answer from the Wallet API.
type APIError struct {
	StatusCode int
	Body       string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("google wallet: status %d: %s", e.StatusCode, e.Body)
}

// Config is what cmd/cartera sets from file, environment and flags.
type Config struct {
	// BaseURL is the API root; EnvBaseURL overrides it.
	BaseURL string
}

// DefaultConfig returns the production API root.
func DefaultConfig() Config { return Config{BaseURL: DefaultBaseURL} }

// Validate reports a BaseURL that is not an absolute http(s) URL.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("google wallet config: base_url %q is not an absolute http(s) URL", c.BaseURL)
	}
	return nil
}

// Client updates loyalty objects through the Wallet REST API. Its zero value
// needs only Token; the limits are per Client, so share one per process.
type Client struct {
	// BaseURL defaults to DefaultBaseURL.
	BaseURL string
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
	// Token returns an OAuth access token with the
	// https://www.googleapis.com/auth/wallet_object.issuer scope.
	Token func(ctx context.Context) (string, error)
	// Now is the clock for the notification limit; defaults to time.Now.
	Now func() time.Time

	once    sync.Once
	limiter *rate.Limiter

	mu       sync.Mutex
	notified map[string][]time.Time // object id → times of notifying messages in the window
}

func (c *Client) init() {
	c.once.Do(func() {
		c.limiter = rate.NewLimiter(RequestsPerSecond, RequestsPerSecond)
		c.notified = make(map[string][]time.Time)
	})
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// PatchObject sends obj as PATCH /loyaltyObject/{obj.ID}; Google replaces the
// fields present in the body and returns the updated object.
func (c *Client) PatchObject(ctx context.Context, obj LoyaltyObject) (LoyaltyObject, error) {
	if err := ValidateID(obj.ID); err != nil {
		return LoyaltyObject{}, fmt.Errorf("patch loyalty object: %w", err)
	}
	var out LoyaltyObject
	if err := c.do(ctx, http.MethodPatch, "/loyaltyObject/"+url.PathEscape(obj.ID), obj, &out); err != nil {
		return LoyaltyObject{}, fmt.Errorf("patch loyalty object: %w", err)
	}
	return out, nil
}

// EnsureClass creates the loyalty class (POST /loyaltyClass) unless it
// exists already (409), in which case it is left as the console or an
// earlier start made it: created reports which.
func (c *Client) EnsureClass(ctx context.Context, class LoyaltyClass) (created bool, err error) {
	if err := ValidateID(class.ID); err != nil {
		return false, fmt.Errorf("insert loyalty class: %w", err)
	}
	var out LoyaltyClass
	err = c.do(ctx, http.MethodPost, "/loyaltyClass", class, &out)
	var api *APIError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &api) && api.StatusCode == http.StatusConflict:
		return false, nil
	}
	return false, fmt.Errorf("insert loyalty class: %w", err)
}

// AddMessage sends POST /loyaltyObject/{objectID}/addMessage with
// {"message": msg}. A TEXT_AND_NOTIFY message beyond NotifyLimit in
// NotifyWindow for the same object is refused with ErrNotifyLimit.
func (c *Client) AddMessage(ctx context.Context, objectID string, msg Message) (LoyaltyObject, error) {
	if err := ValidateID(objectID); err != nil {
		return LoyaltyObject{}, fmt.Errorf("add message: %w", err)
	}
	c.init()
	var at time.Time
	if msg.Notifies() {
		var ok bool
		if at, ok = c.reserveNotify(objectID); !ok {
			return LoyaltyObject{}, fmt.Errorf("add message to %s: %w", objectID, ErrNotifyLimit)
		}
	}
	body := struct {
		Message Message `json:"message"`
	}{msg}
	var out struct {
		Resource LoyaltyObject `json:"resource"`
	}
	if err := c.do(ctx, http.MethodPost, "/loyaltyObject/"+url.PathEscape(objectID)+"/addMessage", body, &out); err != nil {
		if msg.Notifies() {
			c.releaseNotify(objectID, at)
		}
		return LoyaltyObject{}, fmt.Errorf("add message: %w", err)
	}
	return out.Resource, nil
}

// reserveNotify records a notifying message for id now, unless the window
// is full. Reserving before the call keeps concurrent senders under the cap.
func (c *Client) reserveNotify(id string) (time.Time, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.notified[id][:0]
	for _, t := range c.notified[id] {
		if now.Sub(t) < NotifyWindow {
			kept = append(kept, t)
		}
	}
	if len(kept) >= NotifyLimit {
		c.notified[id] = kept
		return time.Time{}, false
	}
	c.notified[id] = append(kept, now)
	return now, true
}

// releaseNotify gives back a reservation whose call failed.
func (c *Client) releaseNotify(id string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.notified[id]
	for i, t := range ts {
		if t.Equal(at) {
			c.notified[id] = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(c.notified[id]) == 0 {
		delete(c.notified, id)
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	c.init()
	if c.Token == nil {
		return errors.New("no token source")
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := c.limiter.Wait(ctx); err != nil {
		return err
	}
	token, err := c.Token(ctx)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &APIError{StatusCode: resp.StatusCode, Body: string(raw)}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
