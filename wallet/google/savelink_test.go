package google_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cartera/wallet/google"
)

const (
	testIssuer = "3388000000012345678"
	testEmail  = "cartera-wallet@cartera-test.iam.gserviceaccount.com"
)

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func testObject() google.LoyaltyObject {
	return google.LoyaltyObject{
		ID:            testIssuer + ".cartera-p42",
		ClassID:       testIssuer + ".cartera-loyalty",
		State:         google.StateActive,
		AccountID:     "p42",
		AccountName:   "Ada Lovelace",
		LoyaltyPoints: &google.LoyaltyPoints{Label: "Points", Balance: google.IntBalance(120)},
		Barcode:       &google.Barcode{Type: google.BarcodeQRCode, Value: "cartera:p42"},
		TextModulesData: []google.TextModuleData{
			google.TierModule("Tier", "Silver"),
		},
	}
}

func TestSaveURL(t *testing.T) {
	key := testKey(t)
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	origins := []string{"https://shop.example"}

	link, err := google.SaveURL(key, testEmail, origins, []google.LoyaltyObject{testObject()}, now)
	if err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(link, "https://pay.google.com/gp/v/save/")
	if !ok {
		t.Fatalf("link %q lacks the save prefix", link)
	}

	// The signature verifies with the public key, and only as RS256.
	var claims google.SaveClaims
	parsed, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithAudience("google"), jwt.WithIssuer(testEmail), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if parsed.Header["alg"] != "RS256" || parsed.Header["typ"] != "JWT" {
		t.Errorf("header = %v", parsed.Header)
	}
	other := testKey(t)
	if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return &other.PublicKey, nil }); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("verify with another key: err = %v, want signature invalid", err)
	}

	// Every claim, as raw JSON, so a renamed field cannot slip through.
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"iss":     testEmail,
		"aud":     "google",
		"typ":     "savetowallet",
		"iat":     float64(now.Unix()),
		"origins": []any{"https://shop.example"},
		"payload": map[string]any{
			"loyaltyObjects": []any{map[string]any{
				"id":            testIssuer + ".cartera-p42",
				"classId":       testIssuer + ".cartera-loyalty",
				"state":         "ACTIVE",
				"accountId":     "p42",
				"accountName":   "Ada Lovelace",
				"loyaltyPoints": map[string]any{"label": "Points", "balance": map[string]any{"int": float64(120)}},
				"barcode":       map[string]any{"type": "QR_CODE", "value": "cartera:p42"},
				"textModulesData": []any{
					map[string]any{"id": "tier", "header": "Tier", "body": "Silver"},
				},
			}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("claims:\n%s\nwant:\n%s", gj, wj)
	}
}

func TestSaveURLEmptyOriginsIsArray(t *testing.T) {
	link, err := google.SaveURL(testKey(t), testEmail, nil, []google.LoyaltyObject{testObject()}, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(link, google.SaveURLPrefix), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(raw), `"origins":[]`) {
		t.Errorf("claims %s: want \"origins\":[]", raw)
	}
}

func TestSaveURLRejects(t *testing.T) {
	key := testKey(t)
	bad := testObject()
	bad.ID = "not-an-issuer.x"
	badClass := testObject()
	badClass.ClassID = testIssuer + ".has space"
	tests := []struct {
		name    string
		key     *rsa.PrivateKey
		email   string
		objects []google.LoyaltyObject
		wantID  bool
	}{
		{"no key", nil, testEmail, []google.LoyaltyObject{testObject()}, false},
		{"no email", key, "", []google.LoyaltyObject{testObject()}, false},
		{"no objects", key, testEmail, nil, false},
		{"bad object id", key, testEmail, []google.LoyaltyObject{bad}, true},
		{"bad class id", key, testEmail, []google.LoyaltyObject{badClass}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link, err := google.SaveURL(tt.key, tt.email, nil, tt.objects, time.Unix(1, 0))
			if err == nil {
				t.Fatalf("got link %q, want error", link)
			}
			if got := errors.Is(err, google.ErrInvalidID); got != tt.wantID {
				t.Errorf("errors.Is(%v, ErrInvalidID) = %v, want %v", err, got, tt.wantID)
			}
		})
	}
}

func serviceAccountJSON(t testing.TB, key *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "cartera-test",
		"private_key_id": "abc123",
		"private_key":    string(pemKey),
		"client_email":   testEmail,
		"token_uri":      "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseServiceAccount(t *testing.T) {
	key := testKey(t)
	sa, err := google.ParseServiceAccount(serviceAccountJSON(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if sa.Email != testEmail || sa.PrivateKeyID != "abc123" || sa.TokenURI != "https://oauth2.googleapis.com/token" {
		t.Errorf("account = %+v", sa)
	}
	if !sa.Key.Equal(key) {
		t.Error("parsed key differs from the original")
	}

	// The parsed account signs links that verify with the original key.
	link, err := google.SaveURL(sa.Key, sa.Email, nil, []google.LoyaltyObject{testObject()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(strings.TrimPrefix(link, google.SaveURLPrefix), func(*jwt.Token) (any, error) { return &key.PublicKey, nil }); err != nil {
		t.Errorf("verify: %v", err)
	}

	for name, in := range map[string]string{
		"not json":   `{`,
		"wrong type": `{"type":"authorized_user","client_email":"a@b","private_key":"x"}`,
		"no email":   `{"type":"service_account","private_key":"x"}`,
		"no key":     `{"type":"service_account","client_email":"a@b"}`,
		"bad pem":    `{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := google.ParseServiceAccount([]byte(in)); err == nil {
				t.Error("want error")
			}
		})
	}
}

func FuzzParseServiceAccount(f *testing.F) {
	f.Add(serviceAccountJSON(f, testKey(f)))
	f.Add([]byte(`{"client_email":"a@b","private_key":"x"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		sa, err := google.ParseServiceAccount(in)
		if err == nil && (sa.Key == nil || sa.Email == "") {
			t.Fatalf("no error but incomplete account %+v", sa)
		}
	})
}

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"3388000000012345678.cartera-p42": true,
		"3388.a_b.c-D9":                   true,
		"3388":                            false,
		".suffix":                         false,
		"3388.":                           false,
		"abc.suffix":                      false,
		"3388.a/b":                        false,
	} {
		if err := google.ValidateID(id); (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}
