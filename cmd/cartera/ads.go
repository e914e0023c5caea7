package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/channels/google"
	"cartera/channels/meta"
	"cartera/profiles"
)

// GoogleCredentials authorize calls to Google (one is enough): a service
// account key file, a refresh token with its OAuth client, or an access
// token (it expires within the hour and is never renewed).
type GoogleCredentials struct {
	ServiceAccountFile string `yaml:"service_account_file"`
	ClientID           string `yaml:"client_id"`
	ClientSecret       string `yaml:"client_secret"`
	RefreshToken       string `yaml:"refresh_token"`
	AccessToken        string `yaml:"access_token"`
}

func (g GoogleCredentials) set() bool {
	return g.ServiceAccountFile != "" || g.RefreshToken != "" || g.AccessToken != ""
}

// client is an HTTP client that authorizes with g for scope.
func (g GoogleCredentials) client(cfg *Config, scope string) (*http.Client, error) {
	c := google.Credentials{ClientID: g.ClientID, ClientSecret: g.ClientSecret, RefreshToken: g.RefreshToken, AccessToken: g.AccessToken, TokenURL: cfg.GoogleTokenURL}
	if g.ServiceAccountFile != "" {
		if err := c.ReadServiceAccount(cfg.rel(g.ServiceAccountFile)); err != nil {
			return nil, err
		}
	}
	return c.Client(nil, scope)
}

// rel is a path of the config file, relative to it.
func (c *Config) rel(path string) string {
	if path == "" || c.path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(c.path), path)
}

// GoogleAudience is where one audience is mirrored on Google.
type GoogleAudience struct {
	// API is data_manager (default) or google_ads (the Google Ads API's
	// offline user data jobs, for developer tokens still allowlisted for
	// Customer Match).
	API string `yaml:"api"`
	// Data Manager: the Destination. OperatingAccountID defaults to
	// customer_id, UserListID to the last part of user_list,
	// LoginAccountID to login_customer_id.
	OperatingAccountID   string `yaml:"operating_account_id"`
	OperatingAccountType string `yaml:"operating_account_type"`
	LoginAccountID       string `yaml:"login_account_id"`
	LoginAccountType     string `yaml:"login_account_type"`
	UserListID           string `yaml:"user_list_id"`
	// StatusPolls is how many times to ask requestStatus:retrieve about
	// each request before settling it (0: not).
	StatusPolls int `yaml:"status_polls"`
	// Google Ads API (legacy).
	CustomerID      string `yaml:"customer_id"`
	UserList        string `yaml:"user_list"`
	DeveloperToken  string `yaml:"developer_token"`
	LoginCustomerID string `yaml:"login_customer_id"`

	GoogleCredentials `yaml:",inline"`
}

// ConversionsConfig turns on store purchases sent back to the ad
// platforms as offline conversions.
type ConversionsConfig struct {
	// Events are the events sent (default [Order Completed]); each needs
	// properties.order_id.
	Events []string `yaml:"events"`
	// Sources are the sources trusted to report sales (default [pos]):
	// an event from a browser's write key is never sent.
	Sources []string           `yaml:"sources"`
	Meta    *MetaConversions   `yaml:"meta"`
	Google  *GoogleConversions `yaml:"google"`
}

// MetaConversions sends store sales to Meta's Conversions API.
type MetaConversions struct {
	PixelID       string `yaml:"pixel_id"`
	AccessToken   string `yaml:"access_token"`
	TestEventCode string `yaml:"test_event_code"`
}

// GoogleConversions sends store sales to Google's Data Manager API as
// offline conversions.
type GoogleConversions struct {
	OperatingAccountID   string `yaml:"operating_account_id"`
	OperatingAccountType string `yaml:"operating_account_type"`
	LoginAccountID       string `yaml:"login_account_id"`
	LoginAccountType     string `yaml:"login_account_type"`
	ConversionActionID   string `yaml:"conversion_action_id"`
	StatusPolls          int    `yaml:"status_polls"`
	GoogleCredentials    `yaml:",inline"`
}

// metaVersion is the Marketing API root and version: a meta_url that ends
// in a version (as earlier releases had it) wins over meta_api_version.
func metaVersion(cfg *Config) (root, version string) {
	root, version = meta.Root(cfg.MetaURL)
	if version == "" {
		version = cfg.MetaAPIVersion
	}
	return root, version
}

// metaAudience is the Meta destination of an audience.
func (a *app) metaAudience(cfg *Config, name, audienceID, token string, people channels.Profiles) (channels.Destination, error) {
	mc := meta.DefaultConfig()
	mc.Name, mc.AudienceID, mc.AccessToken, mc.Profiles = meta.Prefix+name, audienceID, token, people
	mc.BaseURL, mc.Version = metaVersion(cfg)
	return meta.New(mc)
}

// googleAudience is the Google destination of an audience, through the
// API the config chooses.
func (a *app) googleAudience(cfg *Config, name string, g *GoogleAudience, people channels.Profiles, status *google.StatusPoller) (channels.Destination, error) {
	switch g.API {
	case "google_ads":
		gc := google.DefaultConfig()
		gc.Name, gc.BaseURL, gc.CustomerID, gc.UserList = google.Prefix+name, cfg.GoogleAdsURL, g.CustomerID, g.UserList
		gc.DeveloperToken, gc.LoginCustomerID = g.DeveloperToken, g.LoginCustomerID
		if g.ServiceAccountFile != "" || g.RefreshToken != "" {
			hc, err := g.client(cfg, "https://www.googleapis.com/auth/adwords")
			if err != nil {
				return nil, err
			}
			gc.HTTPClient = hc
		} else {
			gc.AccessToken = g.AccessToken
		}
		return google.New(gc)
	case "", "data_manager":
	default:
		return nil, fmt.Errorf("api: want data_manager or google_ads, got %q", g.API)
	}
	hc, err := g.client(cfg, google.DataManagerScope)
	if err != nil {
		return nil, err
	}
	dc := google.DataManagerConfig{Name: google.Prefix + name, BaseURL: cfg.GoogleDataManagerURL, HTTPClient: hc, Profiles: people, StatusPolls: g.StatusPolls, Status: status,
		Operating:  google.Account{ID: firstNonEmpty(g.OperatingAccountID, g.CustomerID), Type: g.OperatingAccountType},
		Login:      google.Account{ID: firstNonEmpty(g.LoginAccountID, g.LoginCustomerID), Type: g.LoginAccountType},
		UserListID: g.UserListID}
	if dc.UserListID == "" && g.UserList != "" {
		dc.UserListID = g.UserList[strings.LastIndex(g.UserList, "/")+1:]
	}
	return google.NewDataManager(dc)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// openConversions registers the conversion destinations the config names
// and returns their names (none without channels.conversions).
func (a *app) openConversions(cfg *Config, people channels.Profiles, status *google.StatusPoller, register func(channels.Destination) error) ([]string, error) {
	cc := cfg.Channels.Conversions
	var names []string
	if m := cc.Meta; m != nil && m.AccessToken != "" {
		root, version := metaVersion(cfg)
		dest, err := meta.NewConversions(meta.ConversionsConfig{BaseURL: root, Version: version, PixelID: m.PixelID, AccessToken: m.AccessToken, TestEventCode: m.TestEventCode})
		if err != nil {
			return nil, err
		}
		if err := register(dest); err != nil {
			return nil, err
		}
		names = append(names, dest.Name())
	} else if m != nil {
		a.log.Warn("meta conversions disabled: no access token")
	}
	if g := cc.Google; g != nil && g.set() {
		hc, err := g.client(cfg, google.DataManagerScope)
		if err != nil {
			return nil, fmt.Errorf("channels.conversions.google: %w", err)
		}
		dest, err := google.NewConversions(google.ConversionsConfig{BaseURL: cfg.GoogleDataManagerURL, HTTPClient: hc, StatusPolls: g.StatusPolls, Status: status, Profiles: people,
			Operating: google.Account{ID: g.OperatingAccountID, Type: g.OperatingAccountType}, Login: google.Account{ID: g.LoginAccountID, Type: g.LoginAccountType},
			ConversionActionID: g.ConversionActionID})
		if err != nil {
			return nil, err
		}
		if err := register(dest); err != nil {
			return nil, err
		}
		names = append(names, dest.Name())
	} else if g != nil {
		a.log.Warn("google conversions disabled: no credentials")
	}
	return names, nil
}

// warnSunsets logs, at start-up, each configured platform API version
// within 90 days of its published sunset (or past it), and a Meta version
// older than the one this release was written for.
func warnSunsets(log *slog.Logger, cfg *Config, now time.Time, googleAds, metaOn bool) {
	check := func(platform, version string, sunset time.Time, ok bool) {
		if ok && now.After(sunset.AddDate(0, 0, -90)) {
			log.Warn("ad platform API version near or past its sunset: set a current one", "platform", platform, "version", version, "sunset", sunset.Format("2006-01-02"))
		}
	}
	if googleAds {
		v := cfg.GoogleAdsURL[strings.LastIndex(cfg.GoogleAdsURL, "/")+1:]
		s, ok := google.AdsAPISunsets[v]
		check("google_ads", v, s, ok)
	}
	if metaOn {
		_, v := metaVersion(cfg)
		s, ok := meta.Sunsets[v]
		check("meta", v, s, ok)
		if !ok && meta.Older(v) {
			log.Warn("meta API version older than the one this release was written for: Marketing API versions expire 90 days or more after a newer one", "version", v, "written_for", meta.DefaultVersion)
		}
	}
}

// conversions is a profiles.Processor: a sale reported by a trusted
// source, by a person who said yes to ads, enqueues its conversions in the
// commit that stores it. The key is the order id, so a sale reported
// twice, or replayed, is sent once.
type conversions struct {
	a       *app
	events  []string
	sources []string
	dests   []string
}

// newConversions is the processor of cfg's channels.conversions sending to
// dests, with the defaults for events and sources.
func newConversions(a *app, cfg *Config, dests []string) conversions {
	cc := conversions{a: a, events: cfg.Channels.Conversions.Events, sources: cfg.Channels.Conversions.Sources, dests: dests}
	if len(cc.events) == 0 {
		cc.events = []string{"Order Completed"}
	}
	if len(cc.sources) == 0 {
		cc.sources = []string{"pos"}
	}
	return cc
}

// Why a sale is not sent as a conversion (simulate prints them).
const (
	heldNoConsent = "consent: no ads consent"
	heldNoIDs     = "no_identifiers: no email or phone to match on"
)

// conversion is what the event is to the ad platforms: nil and "" when it
// is not a sale to send (another event, an untrusted source, no order
// id); nil and why when the sale is held back; else the payload.
func (c conversions) conversion(p *profiles.Profile, ev *profiles.Event) (*channels.ConversionPayload, string) {
	if ev.Type != "track" || !slices.Contains(c.events, ev.Event) || !slices.Contains(c.sources, ev.Source) {
		return nil, ""
	}
	order, _ := ev.Properties["order_id"].(string)
	if order == "" {
		return nil, ""
	}
	if !p.ConsentValues()["ads"] {
		return nil, heldNoConsent
	}
	ids, _ := c.a.identifiers(p)
	if len(ids.Emails) == 0 && len(ids.Phones) == 0 {
		return nil, heldNoIDs
	}
	traits := p.TraitValues()
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	addr := google.ProfileAddress(&channels.Profile{Traits: traits})
	pl := &channels.ConversionPayload{OrderID: order, Event: ev.Event, Time: ev.Timestamp, Currency: str(ev.Properties, "currency"),
		Emails: ids.Emails, Phones: ids.Phones, FirstName: addr.FirstName, LastName: addr.LastName,
		Country: addr.Country, PostalCode: addr.PostalCode, ExternalID: p.ID}
	switch v := ev.Properties["revenue"].(type) {
	case float64:
		pl.Value = v
	case json.Number:
		pl.Value, _ = v.Float64()
	}
	return pl, ""
}

type conversionsTx struct {
	c    conversions
	tx   *bbolt.Tx
	more bool
}

func (c conversions) Begin(tx *bbolt.Tx) profiles.TxProcessor { return &conversionsTx{c: c, tx: tx} }

func (w *conversionsTx) Event(p *profiles.Profile, ev *profiles.Event) ([]*profiles.Event, error) {
	c := w.c
	pl, _ := c.conversion(p, ev)
	if pl == nil {
		return nil, nil
	}
	payload, err := json.Marshal(pl)
	if err != nil {
		return nil, fmt.Errorf("encode conversion: %w", err)
	}
	var msgs []*channels.Message
	for _, d := range c.dests {
		msgs = append(msgs, &channels.Message{Key: conversionKey(pl.OrderID, d), Destination: d, ProfileID: p.ID, Payload: payload})
	}
	n, err := c.a.delivery.outbox.Enqueue(w.tx, msgs...)
	w.more = w.more || n > 0
	return nil, err
}

// conversionKey is the outbox key of a sale's conversion to dest: one per
// order and platform.
func conversionKey(order, dest string) string { return "conversion/" + order + "|" + dest }

func (w *conversionsTx) Erased(*profiles.Profile) error         { return nil }
func (w *conversionsTx) Merged(*profiles.Profile, string) error { return nil }
func (w *conversionsTx) Flush() error                           { return nil }
func (w *conversionsTx) Done(committed bool) {
	if committed && w.more {
		w.c.a.delivery.outbox.Wake()
	}
}

// usesDataManager reports whether cfg sends anything through Google's
// Data Manager API (an audience or the conversions, with credentials).
func usesDataManager(cfg *Config) bool {
	for _, ad := range cfg.Channels.Audiences {
		if g := ad.Google; g != nil && g.set() && (g.API == "" || g.API == "data_manager") {
			return true
		}
	}
	g := cfg.Channels.Conversions.Google
	return g != nil && g.set()
}

// validateAds checks the ad platform settings that need no network.
func validateAds(c *Config) error {
	if gs := c.Channels.GoogleStatus; !gs.Off {
		if err := gs.Validate("channels.google_status"); err != nil {
			return err
		}
	}
	for name, ad := range c.Channels.Audiences {
		if g := ad.Google; g != nil && g.API != "" && g.API != "data_manager" && g.API != "google_ads" {
			return fmt.Errorf("channels.audiences.%s.google.api: want data_manager or google_ads, got %q", name, g.API)
		}
	}
	if !strings.HasPrefix(c.MetaAPIVersion, "v") {
		return errors.New("meta_api_version: want vNN.N, such as v26.0")
	}
	return nil
}
