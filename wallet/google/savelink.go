package google

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SaveURLPrefix is where a signed save JWT is appended to form the link.
const SaveURLPrefix = "https://pay.google.com/gp/v/save/"

// Fixed claims of a "Save to Google Wallet" JWT.
const (
	saveAudience = "google"
	saveType     = "savetowallet"
)

// ServiceAccount is the part of a Google Cloud service-account JSON key that
// signing needs.
type ServiceAccount struct {
	Email        string
	PrivateKeyID string
	TokenURI     string
	Key          *rsa.PrivateKey
}

// ParseServiceAccount reads a service-account JSON key file (the one the
// Cloud console downloads): client_email and the PEM private_key.
func ParseServiceAccount(jsonKey []byte) (ServiceAccount, error) {
	var f struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(jsonKey, &f); err != nil {
		return ServiceAccount{}, fmt.Errorf("parse service account: %w", err)
	}
	if f.Type != "" && f.Type != "service_account" {
		return ServiceAccount{}, fmt.Errorf("parse service account: type %q, want service_account", f.Type)
	}
	if f.ClientEmail == "" {
		return ServiceAccount{}, errors.New("parse service account: client_email is empty")
	}
	if f.PrivateKey == "" {
		return ServiceAccount{}, errors.New("parse service account: private_key is empty")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(f.PrivateKey))
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("parse service account: private_key: %w", err)
	}
	return ServiceAccount{Email: f.ClientEmail, PrivateKeyID: f.PrivateKeyID, TokenURI: f.TokenURI, Key: key}, nil
}

// SaveClaims are the claims of a "Save to Google Wallet" JWT
// (https://developers.google.com/wallet/reference/rest/v1/Jwt).
type SaveClaims struct {
	Issuer   string      `json:"iss"`
	Audience string      `json:"aud"`
	Type     string      `json:"typ"`
	IssuedAt int64       `json:"iat"`
	Origins  []string    `json:"origins"`
	Payload  SavePayload `json:"payload"`
}

// SavePayload holds the passes a save JWT carries. Cartera issues loyalty
// objects only; their class must already exist (or be listed in
// LoyaltyClasses).
type SavePayload struct {
	LoyaltyClasses []LoyaltyClass  `json:"loyaltyClasses,omitempty"`
	LoyaltyObjects []LoyaltyObject `json:"loyaltyObjects,omitempty"`
}

// The jwt.Claims methods let the library parse SaveClaims back; Google's
// save JWT has no exp, nbf or sub.

// GetExpirationTime implements jwt.Claims.
func (c SaveClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }

// GetIssuedAt implements jwt.Claims.
func (c SaveClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}

// GetNotBefore implements jwt.Claims.
func (c SaveClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }

// GetIssuer implements jwt.Claims.
func (c SaveClaims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c SaveClaims) GetSubject() (string, error) { return "", nil }

// GetAudience implements jwt.Claims.
func (c SaveClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// SaveURL signs the objects into an RS256 "Save to Google Wallet" JWT and
// returns the link https://pay.google.com/gp/v/save/<jwt>. origins are the
// web origins allowed to show the save button; they may be empty for a link.
func SaveURL(key *rsa.PrivateKey, serviceAccountEmail string, origins []string, objects []LoyaltyObject, now time.Time) (string, error) {
	if key == nil {
		return "", errors.New("save url: no signing key")
	}
	if serviceAccountEmail == "" {
		return "", errors.New("save url: no service account email")
	}
	if len(objects) == 0 {
		return "", errors.New("save url: no objects")
	}
	for _, o := range objects {
		if err := ValidateID(o.ID); err != nil {
			return "", fmt.Errorf("save url: object id: %w", err)
		}
		if err := ValidateID(o.ClassID); err != nil {
			return "", fmt.Errorf("save url: class id: %w", err)
		}
	}
	if origins == nil {
		origins = []string{}
	}
	claims := SaveClaims{
		Issuer:   serviceAccountEmail,
		Audience: saveAudience,
		Type:     saveType,
		IssuedAt: now.Unix(),
		Origins:  origins,
		Payload:  SavePayload{LoyaltyObjects: objects},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("save url: sign: %w", err)
	}
	return SaveURLPrefix + signed, nil
}
