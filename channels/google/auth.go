package google

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// DefaultTokenURL is Google's OAuth 2.0 token endpoint.
const DefaultTokenURL = "https://oauth2.googleapis.com/token"

// Credentials say how calls are authorized, one of: a service account key
// (the JWT bearer grant of RFC 7523), a user's refresh token with the OAuth
// client it was issued to, or a fixed access token (tests; it expires
// within the hour).
type Credentials struct {
	// ServiceAccountJSON is a service account key file's content
	// ({"type":"service_account","client_email",…,"private_key",…}).
	ServiceAccountJSON []byte
	// ClientID, ClientSecret and RefreshToken are an installed or web
	// OAuth client and a refresh token a user granted it.
	ClientID, ClientSecret, RefreshToken string
	// AccessToken is sent as is.
	AccessToken string
	// TokenURL overrides the token endpoint (tests); empty: the key
	// file's token_uri, else DefaultTokenURL.
	TokenURL string
}

// Set reports whether any credential is given.
func (c Credentials) Set() bool {
	return len(c.ServiceAccountJSON) > 0 || c.RefreshToken != "" || c.AccessToken != ""
}

// ReadServiceAccount reads a key file into c.ServiceAccountJSON.
func (c *Credentials) ReadServiceAccount(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read service account key: %w", err)
	}
	c.ServiceAccountJSON = b
	return nil
}

// Client returns an HTTP client that adds "Authorization: Bearer <token>"
// to each request, fetching a token with scopes and refreshing it before
// it expires (oauth2's ReuseTokenSource renews it 10s before expiry).
// base makes the calls (nil: a client with a 60s timeout), token
// requests included.
func (c Credentials) Client(base *http.Client, scopes ...string) (*http.Client, error) {
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	// The context only carries base to the token requests (oauth2 reads
	// its HTTPClient key); each call's own context still governs the call.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	var src oauth2.TokenSource
	switch {
	case len(c.ServiceAccountJSON) > 0:
		var key struct {
			Type         string `json:"type"`
			ClientEmail  string `json:"client_email"`
			PrivateKey   string `json:"private_key"`
			PrivateKeyID string `json:"private_key_id"`
			TokenURI     string `json:"token_uri"`
		}
		if err := json.Unmarshal(c.ServiceAccountJSON, &key); err != nil {
			return nil, fmt.Errorf("service account key: %w", err)
		}
		if key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
			return nil, errors.New("service account key: want a JSON key file of type service_account with client_email and private_key")
		}
		tokenURL := firstOf(c.TokenURL, key.TokenURI, DefaultTokenURL)
		conf := &jwt.Config{Email: key.ClientEmail, PrivateKey: []byte(key.PrivateKey), PrivateKeyID: key.PrivateKeyID, Scopes: scopes, TokenURL: tokenURL}
		src = conf.TokenSource(ctx)
	case c.RefreshToken != "":
		if c.ClientID == "" || c.ClientSecret == "" {
			return nil, errors.New("refresh_token: needs client_id and client_secret of the OAuth client it was issued to")
		}
		conf := &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: scopes,
			Endpoint: oauth2.Endpoint{TokenURL: firstOf(c.TokenURL, DefaultTokenURL), AuthStyle: oauth2.AuthStyleInParams}}
		src = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: c.RefreshToken})
	case c.AccessToken != "":
		src = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.AccessToken, TokenType: "Bearer"})
	default:
		return nil, errors.New("no credentials: want service_account_file, refresh_token (with client_id, client_secret) or access_token")
	}
	return &http.Client{Timeout: base.Timeout, Transport: &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, src), Base: base.Transport}}, nil
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
