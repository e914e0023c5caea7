package apple

import (
	"encoding/json"
	"fmt"
	"time"
)

// Pass is the pass.json of a pass: exactly one of the style fields
// (StoreCard, EventTicket, Coupon, Generic) holds its fields. Build fills FormatVersion,
// PassTypeIdentifier and TeamIdentifier (from the chain) and the barcode
// defaults, so callers set only what varies per pass.
type Pass struct {
	FormatVersion       int    `json:"formatVersion"`
	PassTypeIdentifier  string `json:"passTypeIdentifier"`
	SerialNumber        string `json:"serialNumber"`
	TeamIdentifier      string `json:"teamIdentifier"`
	OrganizationName    string `json:"organizationName"`
	Description         string `json:"description"`
	LogoText            string `json:"logoText,omitempty"`
	WebServiceURL       string `json:"webServiceURL,omitempty"`
	AuthenticationToken string `json:"authenticationToken,omitempty"`

	StoreCard   *Fields   `json:"storeCard,omitempty"`
	EventTicket *Fields   `json:"eventTicket,omitempty"`
	Coupon      *Fields   `json:"coupon,omitempty"`
	Generic     *Fields   `json:"generic,omitempty"`
	Barcodes    []Barcode `json:"barcodes,omitempty"`
	// Voided marks a pass that is no longer valid (the person was erased).
	Voided bool `json:"voided,omitempty"`

	BackgroundColor *Color `json:"backgroundColor,omitempty"`
	ForegroundColor *Color `json:"foregroundColor,omitempty"`
	LabelColor      *Color `json:"labelColor,omitempty"`

	Locations []Location `json:"locations,omitempty"`
	// RelevantDate is written in whole seconds, as Wallet expects.
	RelevantDate time.Time `json:"relevantDate,omitzero"`
}

// Pass styles, the pass.json keys of [Pass.SetFields].
const (
	StyleStoreCard   = "storeCard"
	StyleEventTicket = "eventTicket"
	StyleCoupon      = "coupon"
	StyleGeneric     = "generic"
)

// Styles lists the pass styles Cartera issues.
func Styles() []string {
	return []string{StyleStoreCard, StyleEventTicket, StyleCoupon, StyleGeneric}
}

// SetFields puts f under the style's key and clears the others; it
// reports false for an unknown style.
func (p *Pass) SetFields(style string, f *Fields) bool {
	p.StoreCard, p.EventTicket, p.Coupon, p.Generic = nil, nil, nil, nil
	switch style {
	case StyleStoreCard:
		p.StoreCard = f
	case StyleEventTicket:
		p.EventTicket = f
	case StyleCoupon:
		p.Coupon = f
	case StyleGeneric:
		p.Generic = f
	default:
		return false
	}
	return true
}

// Fields are the field groups of a pass style.
type Fields struct {
	HeaderFields    []Field `json:"headerFields,omitempty"`
	PrimaryFields   []Field `json:"primaryFields,omitempty"`
	SecondaryFields []Field `json:"secondaryFields,omitempty"`
	AuxiliaryFields []Field `json:"auxiliaryFields,omitempty"`
	BackFields      []Field `json:"backFields,omitempty"`
}

// Field is one labelled value on a pass. ChangeMessage, with a "%@" for
// the new value, is what the lock screen shows when a push update changes
// the value; a field without one updates silently.
type Field struct {
	Key           string `json:"key"`
	Label         string `json:"label,omitempty"`
	Value         any    `json:"value"` // a string or a number
	ChangeMessage string `json:"changeMessage,omitempty"`
}

// Barcode formats and the message encoding Build uses when none is set.
const (
	BarcodeQR            = "PKBarcodeFormatQR"
	BarcodeCode128       = "PKBarcodeFormatCode128"
	DefaultBarcodeFormat = BarcodeQR
	DefaultBarcodeCoding = "iso-8859-1"
)

// Barcode is one entry of barcodes. Empty Format and MessageEncoding
// default to QR and iso-8859-1.
type Barcode struct {
	Format          string `json:"format"`
	Message         string `json:"message"`
	MessageEncoding string `json:"messageEncoding"`
	AltText         string `json:"altText,omitempty"`
}

// Location makes the pass relevant near a place.
type Location struct {
	Latitude     float64  `json:"latitude"`
	Longitude    float64  `json:"longitude"`
	Altitude     *float64 `json:"altitude,omitempty"`
	RelevantText string   `json:"relevantText,omitempty"`
}

// Color is a pass colour, written as "rgb(r, g, b)".
type Color struct{ R, G, B uint8 }

// RGB returns a *Color for the colour fields of Pass.
func RGB(r, g, b uint8) *Color { return &Color{r, g, b} }

// String returns the colour as pass.json writes it.
func (c Color) String() string { return fmt.Sprintf("rgb(%d, %d, %d)", c.R, c.G, c.B) }

// MarshalJSON writes the colour as "rgb(r, g, b)".
func (c Color) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads "rgb(r, g, b)".
func (c *Color) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var r, g, bl uint8
	if _, err := fmt.Sscanf(s, "rgb(%d, %d, %d)", &r, &g, &bl); err != nil {
		return fmt.Errorf("color %q: want rgb(r, g, b)", s)
	}
	*c = Color{r, g, bl}
	return nil
}
