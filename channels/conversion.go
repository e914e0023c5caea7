package channels

import (
	"encoding/json"
	"fmt"
	"time"
)

// ConversionPrefix starts the destination name of an offline conversion
// sink: "conversions:meta", "conversions:google".
const ConversionPrefix = "conversions:"

// ConversionPayload is the payload of a purchase sent back to an ad
// platform as an offline conversion (a sale at the till).
type ConversionPayload struct {
	// OrderID deduplicates the conversion on the platform (Meta's
	// event_id, Google's transactionId) and in the outbox's key.
	OrderID  string    `json:"order_id"`
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Value    float64   `json:"value,omitempty"`
	Currency string    `json:"currency,omitempty"`
	// The person's identifiers at the time of the sale, raw (destinations
	// hash them as their platform specifies); kept in our own file only.
	Emails    []string `json:"emails,omitempty"`
	Phones    []string `json:"phones,omitempty"`
	FirstName string   `json:"first_name,omitempty"`
	LastName  string   `json:"last_name,omitempty"`
	Country   string   `json:"country,omitempty"`
	// PostalCode is the person's postal code (Google's address
	// identifier needs it with the names and country).
	PostalCode string `json:"postal_code,omitempty"`
	// ExternalID is the person's profile id.
	ExternalID string `json:"external_id,omitempty"`
}

// DecodeConversion reads a conversion payload; what cannot be read never
// will be, so its errors are permanent.
func DecodeConversion(who string, m *Message) (ConversionPayload, error) {
	var p ConversionPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return p, Permanent(fmt.Errorf("%s: decode conversion payload: %w", who, err))
	}
	if p.OrderID == "" || p.Time.IsZero() {
		return p, Permanent(fmt.Errorf("%s: conversion payload without order_id or time", who))
	}
	return p, nil
}
