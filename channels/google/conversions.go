package google

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cartera/channels"
)

// ConversionsName is the destination name of the offline conversions sent
// to Google.
const ConversionsName = channels.ConversionPrefix + "google"

// ConversionsConfig is a Google Ads conversion action fed through the
// Data Manager API's events:ingest.
type ConversionsConfig struct {
	// BaseURL is the API root with its version; empty: DefaultDataManagerURL.
	BaseURL string
	// Operating is the Google Ads account of the conversion action; Login
	// the account the credentials act as, when another (a manager).
	Operating, Login Account
	// ConversionActionID is the conversion action (its type must be an
	// offline one, UPLOAD_CLICKS: "For offline events, the conversion
	// action must be a Google Ads conversion action with type set to
	// UPLOAD_CLICKS", Send events quickstart).
	ConversionActionID string
	// HTTPClient makes the calls and authorizes them; required.
	HTTPClient *http.Client
	// StatusPolls, StatusWait, Sleep, Status: as in DataManagerConfig.
	StatusPolls int
	StatusWait  time.Duration
	Sleep       func(context.Context, time.Duration) error
	Status      *StatusPoller
	// Profiles looks up the identifiers of a sale whose payload has none
	// (the dead letter of a failed request, retried); nil: such a sale is
	// refused.
	Profiles channels.Profiles
}

// Validate reports the first invalid setting, naming it.
func (c ConversionsConfig) Validate() error {
	if err := checkBase("google.data_manager_url", c.BaseURL); err != nil {
		return err
	}
	if err := c.Operating.validate("channels.conversions.google.operating_account", true); err != nil {
		return err
	}
	if err := c.Login.validate("channels.conversions.google.login_account", false); err != nil {
		return err
	}
	if !isID(c.ConversionActionID) {
		return fmt.Errorf("channels.conversions.google.conversion_action_id: want the conversion action's numeric id, got %q", c.ConversionActionID)
	}
	if c.HTTPClient == nil {
		return errors.New("channels.conversions.google: credentials required (service_account_file, refresh_token or access_token)")
	}
	return nil
}

// Conversions sends purchases to a Google Ads conversion action. It is
// safe for concurrent use.
type Conversions struct {
	api    *dmClient
	dest   destination
	status *StatusPoller
	people channels.Profiles
}

// NewConversions checks cfg and returns the destination.
func NewConversions(cfg ConversionsConfig) (*Conversions, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultDataManagerURL
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Conversions{api: newDMClient(cfg.BaseURL, cfg.HTTPClient, cfg.StatusPolls, cfg.StatusWait, cfg.Sleep),
		dest:   destination{LoginAccount: cfg.Login.wire(), OperatingAccount: cfg.Operating.wire(), ProductDestinationID: cfg.ConversionActionID},
		status: cfg.Status, people: cfg.Profiles}
	if cfg.Status != nil {
		cfg.Status.register(ConversionsName, c.api)
	}
	return c, nil
}

// Name is ConversionsName.
func (c *Conversions) Name() string { return ConversionsName }

// event is the wire form of a Data Manager Event.
type event struct {
	// "Optional. The unique identifier for this event. Required for
	// conversions using multiple data sources." The order id: Google
	// refuses a second conversion with the same one
	// (PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID: "A conversion
	// with the same order id and conversion action combination was
	// already uploaded").
	TransactionID   string    `json:"transactionId"`
	EventTimestamp  string    `json:"eventTimestamp"` // RFC 3339, Z-normalized
	UserData        *userData `json:"userData,omitempty"`
	Consent         *consent  `json:"consent,omitempty"`
	Currency        string    `json:"currency,omitempty"`
	ConversionValue float64   `json:"conversionValue,omitempty"`
	EventSource     string    `json:"eventSource"` // IN_STORE: "generated from an in-store transaction"
}

type eventsRequest struct {
	Destinations []destination `json:"destinations"`
	Events       []event       `json:"events"`
	Encoding     string        `json:"encoding"`
}

// Deliver sends the batch as events:ingest requests of at most
// MaxEventsPerRequest events and returns one Result per message. Messages
// are enqueued only with the person's yes to ads, so each event carries
// consent granted.
func (c *Conversions) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	var evs []event
	var owner []int
	for i, m := range msgs {
		p, err := channels.DecodeConversion("google", m)
		if err != nil {
			out[i].Err = err
			continue
		}
		if len(p.Emails) == 0 && len(p.Phones) == 0 && c.people != nil && m.ProfileID != "" {
			// A retried dead letter of a failed request: the person's
			// identifiers now.
			prof, err := c.people.Profile(ctx, m.ProfileID)
			if err != nil {
				out[i].Err = fmt.Errorf("google: look up profile: %w", err)
				continue
			}
			if prof == nil {
				out[i].Err = channels.Permanent(errors.New("google: the person was erased: nothing to send"))
				continue
			}
			a := ProfileAddress(prof)
			p.Emails, p.Phones, p.FirstName, p.LastName, p.Country, p.PostalCode = prof.Emails, prof.Phones, a.FirstName, a.LastName, a.Country, a.PostalCode
		}
		ids := dmIdentifiers(p.Emails, p.Phones, Address{FirstName: p.FirstName, LastName: p.LastName, Country: p.Country, PostalCode: p.PostalCode})
		if len(ids) == 0 {
			out[i].Err = channels.Permanent(errors.New("google: conversion without identifiers"))
			continue
		}
		ids = ids[:min(len(ids), MaxIdentifiersPerMember)]
		evs = append(evs, event{TransactionID: p.OrderID, EventTimestamp: p.Time.UTC().Format(time.RFC3339Nano),
			UserData: &userData{UserIdentifiers: ids}, Consent: &consent{AdUserData: ConsentGranted, AdPersonalization: ConsentGranted},
			Currency: strings.ToUpper(p.Currency), ConversionValue: p.Value, EventSource: "IN_STORE"})
		owner = append(owner, i)
	}
	for len(evs) > 0 {
		n := min(len(evs), MaxEventsPerRequest)
		chunk, who := evs[:n], owner[:n]
		evs, owner = evs[n:], owner[n:]
		id, err := c.api.call(ctx, "events:ingest", &eventsRequest{Destinations: []destination{c.dest}, Events: chunk, Encoding: "HEX"})
		if err == nil {
			err = c.api.poll(ctx, id)
		}
		if err == nil && c.status != nil {
			items := make([]pendingItem, 0, len(who))
			for _, i := range who {
				items = append(items, pendingItem{ProfileID: msgs[i].ProfileID, Key: msgs[i].Key, Payload: saleOnly(msgs[i].Payload)})
			}
			c.status.track(ConversionsName, "events:ingest", id, items)
		}
		blame := map[int]error(nil)
		if err != nil {
			idx := make([]int, len(who))
			for i := range idx {
				idx[i] = i
			}
			blame = blameMembers(err, idx)
		}
		for j, i := range who {
			switch {
			case err == nil:
				out[i].Events = []channels.Outcome{{Event: "Conversion Sent", Properties: map[string]any{
					"destination": "google", "order_id": chunk[j].TransactionID, "request_id": id}}}
			case blame == nil:
				out[i].Err = err
			case blame[j] != nil:
				out[i].Err = blame[j]
			default:
				out[i].Err = fmt.Errorf("google: events:ingest refused for another event of the request: %w", retryable(err))
			}
		}
	}
	return out
}

// saleOnly is a conversion payload without the person's identifiers: what
// a dead letter of a failed request keeps (the retry looks them up).
func saleOnly(payload []byte) json.RawMessage {
	var p channels.ConversionPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil
	}
	p.Emails, p.Phones, p.FirstName, p.LastName, p.Country, p.PostalCode = nil, nil, "", "", "", ""
	b, _ := json.Marshal(p)
	return b
}
