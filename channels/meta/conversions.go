package meta

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
// to Meta.
const ConversionsName = channels.ConversionPrefix + "meta"

// MaxEvents is the most events one Conversions API request carries ("data
// … A maximum of 1000 events").
const MaxEvents = 1000

// ConversionsConfig is a Meta dataset (pixel) fed through the Conversions
// API.
type ConversionsConfig struct {
	// BaseURL and Version: as in Config.
	BaseURL, Version string
	// PixelID is the dataset's id (digits): POST /{pixel_id}/events.
	PixelID string
	// AccessToken is a system user's token for the dataset (or one made
	// in Events Manager's Conversions API settings).
	AccessToken string
	// TestEventCode, when set, routes events to Events Manager's Test
	// Events tab instead of the live dataset.
	TestEventCode string
	HTTPClient    *http.Client
}

// Conversions sends purchases to a Meta dataset as physical_store
// events. It is safe for concurrent use.
type Conversions struct {
	cfg    ConversionsConfig
	events string
	client *http.Client
}

// NewConversions checks cfg and returns the destination.
func NewConversions(cfg ConversionsConfig) (*Conversions, error) {
	var err error
	if cfg.BaseURL, cfg.Version, err = resolve(cfg.BaseURL, cfg.Version); err != nil {
		return nil, err
	}
	if err := checkBase(cfg.BaseURL); err != nil {
		return nil, err
	}
	if cfg.PixelID == "" || strings.Trim(cfg.PixelID, "0123456789") != "" {
		return nil, fmt.Errorf("channels.conversions.meta.pixel_id: want the dataset's numeric id, got %q", cfg.PixelID)
	}
	if cfg.AccessToken == "" {
		return nil, errors.New("channels.conversions.meta.access_token: required")
	}
	c := &Conversions{cfg: cfg, events: cfg.BaseURL + "/" + cfg.Version + "/" + cfg.PixelID + "/events", client: cfg.HTTPClient}
	if c.client == nil {
		c.client = &http.Client{Timeout: 30 * time.Second}
	}
	return c, nil
}

// Name is ConversionsName.
func (c *Conversions) Name() string { return ConversionsName }

// serverEvent is a Conversions API server event.
type serverEvent struct {
	EventName string `json:"event_name"`
	EventTime int64  `json:"event_time"` // UNIX seconds
	// "Advertisers need to send action_source as physical_store for all
	// offline and store events" (Sending Offline Events Using the
	// Conversions API).
	ActionSource string `json:"action_source"`
	// EventID deduplicates: the order id, so a retry, or the same sale
	// sent by another integration with the same id, counts once.
	EventID    string     `json:"event_id"`
	UserData   userData   `json:"user_data"`
	CustomData customData `json:"custom_data"`
}

// userData holds the customer information parameters, each an array of
// SHA-256 hex hashes of the normalized value.
type userData struct {
	Em         []string `json:"em,omitempty"`
	Ph         []string `json:"ph,omitempty"`
	Fn         []string `json:"fn,omitempty"`
	Ln         []string `json:"ln,omitempty"`
	Country    []string `json:"country,omitempty"`
	ExternalID []string `json:"external_id,omitempty"`
}

type customData struct {
	Value    float64 `json:"value"`
	Currency string  `json:"currency"`
	OrderID  string  `json:"order_id"`
}

type eventsBody struct {
	Data          []serverEvent `json:"data"`
	TestEventCode string        `json:"test_event_code,omitempty"`
}

// Deliver sends the batch as requests of at most MaxEvents events and
// returns one Result per message.
func (c *Conversions) Deliver(ctx context.Context, msgs []*channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	var evs []serverEvent
	var owner []int
	for i, m := range msgs {
		p, err := channels.DecodeConversion("meta", m)
		if err != nil {
			out[i].Err = err
			continue
		}
		ud := userData{Em: hashAll(p.Emails, NormEmail), Ph: hashAll(p.Phones, NormPhone)}
		if len(ud.Em) == 0 && len(ud.Ph) == 0 {
			out[i].Err = channels.Permanent(errors.New("meta: conversion without email or phone"))
			continue
		}
		if h := hashOf(NormName(p.FirstName)); h != "" {
			ud.Fn = []string{h}
		}
		if h := hashOf(NormName(p.LastName)); h != "" {
			ud.Ln = []string{h}
		}
		if h := hashOf(NormCountry(p.Country)); h != "" {
			ud.Country = []string{h}
		}
		if h := ExternalID(p.ExternalID); h != "" {
			ud.ExternalID = []string{h}
		}
		evs = append(evs, serverEvent{EventName: "Purchase", EventTime: p.Time.Unix(), ActionSource: "physical_store", EventID: p.OrderID,
			UserData: ud, CustomData: customData{Value: p.Value, Currency: strings.ToUpper(p.Currency), OrderID: p.OrderID}})
		owner = append(owner, i)
	}
	for len(evs) > 0 {
		n := min(len(evs), MaxEvents)
		chunk, who := evs[:n], owner[:n]
		evs, owner = evs[n:], owner[n:]
		b, err := json.Marshal(&eventsBody{Data: chunk, TestEventCode: c.cfg.TestEventCode})
		if err != nil {
			err = channels.Permanent(fmt.Errorf("meta: encode events: %w", err))
		}
		var resp struct {
			EventsReceived int    `json:"events_received"`
			TraceID        string `json:"fbtrace_id"`
		}
		if err == nil {
			err = post(ctx, c.client, http.MethodPost, c.events, c.cfg.AccessToken, "POST events", b, &resp)
		}
		if err == nil && resp.EventsReceived != len(chunk) {
			err = fmt.Errorf("meta: POST events: %d of %d events received (fbtrace_id %s)", resp.EventsReceived, len(chunk), resp.TraceID)
		}
		for j, i := range who {
			if err != nil {
				out[i].Err = err
				continue
			}
			out[i].Events = []channels.Outcome{{Event: "Conversion Sent", Properties: map[string]any{
				"destination": "meta", "order_id": chunk[j].EventID}}}
		}
	}
	return out
}

func checkBase(s string) error {
	c := Config{Name: Prefix + "x", BaseURL: s, AudienceID: "1", AccessToken: "x"}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("channels.conversions.meta: %w", err)
	}
	return nil
}
