package google_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"cartera/channels"
	"cartera/channels/google"
)

// SHA-256 (hex) of the normalized names, computed apart from the code
// under test.
const (
	shaAnaMaria    = "e3dad06b2f70ec99e30034d55e314d39434f4ff04a70420462f9932f57c01bca" // "ana maría"
	shaOBrienSmith = "16765783f9c8c8a3accf27f1abb877688cb5904c21a4a7afb5f125bcfcb246ba" // "obriensmith"
	shaLucia       = "1a6c9a4f411b12708e1ba1dafe873c1ab93ff547503c6f307e6ac0515038b6a9" // "lucía"
	shaVanDerBerg  = "a6fe68a719fbd8e4466cb6992d9a64dd1f6837e26dfc5a024f1393f51d3737c0" // "van der berg"
)

func TestDataManagerName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		last bool
		want string
	}{
		{"  Mrs. Ana María ", false, "ana maría"},
		{"O'Brien-Smith Jr.", true, "obriensmith"},
		{"Lucía", false, "lucía"},
		{"Van  der Berg", true, "van der berg"},
		{"Dr", false, "dr"},   // a prefix alone is the name
		{"Jr.", true, "jr"},   // so is a suffix
		{"Mr Jr", true, "mr"}, // a suffix goes from a family name only
		{" .,- ", false, ""},
	} {
		norm, name := google.DataManagerGivenName, "DataManagerGivenName"
		if tc.last {
			norm, name = google.DataManagerFamilyName, "DataManagerFamilyName"
		}
		if got := norm(tc.in); got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", name, tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{" es ": "ES", "US": "US", "ESP": "", "e1": "", "": ""} {
		if got := google.DataManagerRegion(in); got != want {
			t.Errorf("DataManagerRegion(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{" 28001 ": "28001", "94043-1351": "94043-1351", "SW1A 1AA": "SW1A 1AA", "   ": "", "12345678901234567": ""} {
		if got := google.DataManagerPostalCode(in); got != want {
			t.Errorf("DataManagerPostalCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDataManagerAddress: a person whose profile has first and last name,
// country and postal code is sent with an address identifier beside the
// email (names hashed, region and postal code not), in adds and removes;
// without one of the four there is no address; Segment's address trait
// counts.
func TestDataManagerAddress(t *testing.T) {
	f := &fakeDM{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	people := idPeople{
		"ana": {ID: "ana", Consent: map[string]bool{"ads": true}, Traits: map[string]any{
			"first_name": "  Mrs. Ana María ", "last_name": "O'Brien-Smith Jr.", "country": "es", "postal_code": " 28001 "}},
		"lu": {ID: "lu", Consent: map[string]bool{"ads": true}, Traits: map[string]any{
			"first_name": "Lucía", "last_name": "Van  der Berg", "address": map[string]any{"country": "US", "postalCode": "94043-1351", "city": "Mountain View"}}},
		"nopostal": {ID: "nopostal", Consent: map[string]bool{"ads": true}, Traits: map[string]any{
			"first_name": "Ana", "last_name": "Ruiz", "country": "ES"}},
	}
	d, err := google.NewDataManager(google.DataManagerConfig{Name: "google:vip", BaseURL: srv.URL + "/v1", Operating: google.Account{ID: "1234567890"},
		UserListID: "987654321", HTTPClient: srv.Client(), Profiles: people})
	if err != nil {
		t.Fatal(err)
	}
	res := d.Deliver(context.Background(), []*channels.Message{
		dmMsg("ana", "add", []string{"ana@example.com"}, nil),
		dmMsg("lu", "add", []string{"lu@example.com"}, nil),
		dmMsg("nopostal", "add", []string{"np@example.com"}, nil),
	})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
	granted := `{"adUserData":"CONSENT_GRANTED","adPersonalization":"CONSENT_GRANTED"}`
	jsonEq(t, "ingest", f.Calls()[0].Body, `{"destinations":[{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"}],
		"audienceMembers":[
		 {"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("ana@example.com")+`"},
		   {"address":{"givenName":"`+shaAnaMaria+`","familyName":"`+shaOBrienSmith+`","regionCode":"ES","postalCode":"28001"}}]},"consent":`+granted+`},
		 {"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("lu@example.com")+`"},
		   {"address":{"givenName":"`+shaLucia+`","familyName":"`+shaVanDerBerg+`","regionCode":"US","postalCode":"94043-1351"}}]},"consent":`+granted+`},
		 {"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("np@example.com")+`"}]},"consent":`+granted+`}],
		"encoding":"HEX"}`)

	// A removal carries the address too (and no consent).
	if r := d.Deliver(context.Background(), []*channels.Message{dmMsg("ana", "remove", []string{"ana@example.com"}, nil)}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	jsonEq(t, "remove", f.Calls()[1].Body, `{"destinations":[{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"987654321"}],
		"audienceMembers":[{"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("ana@example.com")+`"},
		   {"address":{"givenName":"`+shaAnaMaria+`","familyName":"`+shaOBrienSmith+`","regionCode":"ES","postalCode":"28001"}}]}}],
		"encoding":"HEX"}`)
}

// A sale's event carries the address of its payload.
func TestConversionsAddress(t *testing.T) {
	f := &fakeDM{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := google.NewConversions(google.ConversionsConfig{BaseURL: srv.URL + "/v1", Operating: google.Account{ID: "1234567890"},
		ConversionActionID: "777", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	p, _ := json.Marshal(channels.ConversionPayload{OrderID: "pos-5", Event: "Order Completed", Time: at, Value: 12.5, Currency: "EUR",
		Emails: []string{"ana@example.com"}, FirstName: "Ana María", LastName: "O'Brien-Smith", Country: "ES", PostalCode: "28001"})
	if r := c.Deliver(context.Background(), []*channels.Message{{Key: "conversion/pos-5", Destination: google.ConversionsName, ProfileID: "ana", Payload: p}}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	jsonEq(t, "events", f.Calls()[0].Body, `{"destinations":[{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"777"}],
		"events":[{"transactionId":"pos-5","eventTimestamp":"2026-12-07T10:30:00Z",
		"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("ana@example.com")+`"},
		  {"address":{"givenName":"`+shaAnaMaria+`","familyName":"`+shaOBrienSmith+`","regionCode":"ES","postalCode":"28001"}}]},
		"consent":{"adUserData":"CONSENT_GRANTED","adPersonalization":"CONSENT_GRANTED"},
		"currency":"EUR","conversionValue":12.5,"eventSource":"IN_STORE"}],"encoding":"HEX"}`)
}
