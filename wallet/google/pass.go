package google

import (
	"errors"
	"fmt"
	"strings"
)

// Object and class states (LoyaltyObject.state, enum State).
const (
	StateActive    = "ACTIVE"
	StateCompleted = "COMPLETED"
	StateExpired   = "EXPIRED"
	StateInactive  = "INACTIVE"
)

// Class review statuses (LoyaltyClass.reviewStatus). A class is created as
// UNDER_REVIEW (or DRAFT); Google moves it to APPROVED.
const (
	ReviewUnderReview = "UNDER_REVIEW"
	ReviewDraft       = "DRAFT"
)

// BarcodeQRCode is the barcode type Cartera issues (Barcode.type).
const BarcodeQRCode = "QR_CODE"

// Message types (Message.messageType). Only TEXT_AND_NOTIFY pushes a
// notification to the holder's phone, and only that type is counted against
// the per-object daily limit.
const (
	MessageText          = "TEXT"
	MessageTextAndNotify = "TEXT_AND_NOTIFY"
)

// TierModuleID is the textModulesData id under which an object carries the
// holder's tier, since rewardsTier exists only on the class.
const TierModuleID = "tier"

// ErrInvalidID is returned for a class or object id that is not
// "<issuerId>.<suffix>" with a numeric issuer id and a suffix of
// alphanumerics, '.', '_' or '-', as the reference requires.
var ErrInvalidID = errors.New("invalid google wallet id")

// LoyaltyClass is the template shared by many loyalty objects.
type LoyaltyClass struct {
	ID                 string           `json:"id"`
	IssuerName         string           `json:"issuerName"`
	ProgramName        string           `json:"programName"`
	ProgramLogo        *Image           `json:"programLogo,omitempty"`
	ReviewStatus       string           `json:"reviewStatus,omitempty"`
	AccountNameLabel   string           `json:"accountNameLabel,omitempty"`
	AccountIDLabel     string           `json:"accountIdLabel,omitempty"`
	RewardsTierLabel   string           `json:"rewardsTierLabel,omitempty"`
	RewardsTier        string           `json:"rewardsTier,omitempty"`
	HexBackgroundColor string           `json:"hexBackgroundColor,omitempty"`
	CountryCode        string           `json:"countryCode,omitempty"`
	HomepageURI        *URI             `json:"homepageUri,omitempty"`
	HeroImage          *Image           `json:"heroImage,omitempty"`
	TextModulesData    []TextModuleData `json:"textModulesData,omitempty"`
	Messages           []Message        `json:"messages,omitempty"`
}

// LoyaltyObject is one person's loyalty card.
type LoyaltyObject struct {
	ID                     string           `json:"id"`
	ClassID                string           `json:"classId"`
	State                  string           `json:"state,omitempty"`
	AccountID              string           `json:"accountId,omitempty"`
	AccountName            string           `json:"accountName,omitempty"`
	LoyaltyPoints          *LoyaltyPoints   `json:"loyaltyPoints,omitempty"`
	SecondaryLoyaltyPoints *LoyaltyPoints   `json:"secondaryLoyaltyPoints,omitempty"`
	Barcode                *Barcode         `json:"barcode,omitempty"`
	TextModulesData        []TextModuleData `json:"textModulesData,omitempty"`
	Messages               []Message        `json:"messages,omitempty"`
	HeroImage              *Image           `json:"heroImage,omitempty"`
}

// LoyaltyPoints is a labelled balance.
type LoyaltyPoints struct {
	Label   string  `json:"label,omitempty"`
	Balance Balance `json:"balance"`
}

// Balance is LoyaltyPointsBalance: exactly one of its fields is set.
type Balance struct {
	String string   `json:"string,omitempty"`
	Int    *int64   `json:"int,omitempty"`
	Double *float64 `json:"double,omitempty"`
	Money  *Money   `json:"money,omitempty"`
}

// Money is an amount in micros of a currency (1 unit = 1,000,000 micros).
type Money struct {
	Micros       string `json:"micros"`
	CurrencyCode string `json:"currencyCode"`
}

// IntBalance is a points balance shown as a whole number.
func IntBalance(n int64) Balance { return Balance{Int: &n} }

// StringBalance is a balance shown as free text, such as "500 pts".
func StringBalance(s string) Balance { return Balance{String: s} }

// Barcode is the code shown on the front of the pass.
type Barcode struct {
	Type          string `json:"type"`
	Value         string `json:"value"`
	AlternateText string `json:"alternateText,omitempty"`
}

// TextModuleData is a header/body block on the pass details.
type TextModuleData struct {
	ID     string `json:"id,omitempty"`
	Header string `json:"header,omitempty"`
	Body   string `json:"body,omitempty"`
}

// TierModule is the text module that shows a holder's tier on an object.
func TierModule(label, tier string) TextModuleData {
	return TextModuleData{ID: TierModuleID, Header: label, Body: tier}
}

// Message is a message on the back of the pass.
type Message struct {
	ID          string `json:"id,omitempty"`
	Header      string `json:"header,omitempty"`
	Body        string `json:"body,omitempty"`
	MessageType string `json:"messageType,omitempty"`
}

// Notifies reports whether adding m pushes a notification to the holder.
func (m Message) Notifies() bool { return m.MessageType == MessageTextAndNotify }

// Image is an image referenced by URI.
type Image struct {
	SourceURI URI `json:"sourceUri"`
}

// URI is a link with an optional description.
type URI struct {
	URI         string `json:"uri"`
	Description string `json:"description,omitempty"`
}

// ValidateID checks that id has the form "<issuerId>.<suffix>".
func ValidateID(id string) error {
	issuer, suffix, ok := strings.Cut(id, ".")
	if !ok || issuer == "" || suffix == "" {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for _, r := range issuer {
		if r < '0' || r > '9' {
			return fmt.Errorf("%w: issuer id %q is not numeric", ErrInvalidID, issuer)
		}
	}
	for _, r := range suffix {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%w: suffix %q has %q", ErrInvalidID, suffix, r)
		}
	}
	return nil
}
