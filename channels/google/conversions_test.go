package google_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cartera/channels"
	"cartera/channels/google"
)

func conversion(order string, at time.Time) *channels.Message {
	p, _ := json.Marshal(channels.ConversionPayload{OrderID: order, Event: "Order Completed", Time: at, Value: 250, Currency: "eur",
		Emails: []string{" Ana.Smith@gmail.com "}, Phones: []string{"+34 600 111 222"}, ExternalID: "p1"})
	return &channels.Message{Key: "conversion/" + order, Destination: google.ConversionsName, ProfileID: "p1", Payload: p}
}

// TestConversions checks events:ingest: the destination is the conversion
// action, transactionId the order id, the timestamp RFC 3339 in UTC,
// IN_STORE, hashed identifiers, consent granted, encoding HEX; a field
// violation on one event dead-letters it alone.
func TestConversions(t *testing.T) {
	f := &fakeDM{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := google.NewConversions(google.ConversionsConfig{BaseURL: srv.URL + "/v1", Operating: google.Account{ID: "123-456-7890"},
		ConversionActionID: "777", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 11, 30, 0, 0, time.FixedZone("CET", 3600))
	r := c.Deliver(context.Background(), []*channels.Message{conversion("pos-1-2", at)})
	if r[0].Err != nil || r[0].Events[0].Properties["order_id"] != "pos-1-2" || r[0].Events[0].Properties["request_id"] != "req-1" {
		t.Fatalf("result %+v", r[0])
	}
	cl := f.Calls()[0]
	if cl.Method != "POST" || cl.Path != "/v1/events:ingest" || cl.ContentType != "application/json" {
		t.Errorf("call %+v", cl)
	}
	jsonEq(t, "events body", cl.Body, `{"destinations":[{"operatingAccount":{"accountId":"1234567890","accountType":"GOOGLE_ADS"},"productDestinationId":"777"}],
		"events":[{"transactionId":"pos-1-2","eventTimestamp":"2026-12-07T10:30:00Z",
		"userData":{"userIdentifiers":[{"emailAddress":"`+hexSHA("anasmith@gmail.com")+`"},{"phoneNumber":"`+hexSHA("+34600111222")+`"}]},
		"consent":{"adUserData":"CONSENT_GRANTED","adPersonalization":"CONSENT_GRANTED"},
		"currency":"EUR","conversionValue":250,"eventSource":"IN_STORE"}],"encoding":"HEX"}`)

	f.respond = func(dmCall) (int, string, bool) {
		return 400, `{"error":{"code":400,"message":"Invalid","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"events[1].currency","description":"The currency code is not supported.","reason":"INVALID_CURRENCY_CODE"}]}]}}`, true
	}
	res := c.Deliver(context.Background(), []*channels.Message{conversion("o2", at), conversion("o3", at)})
	if res[0].Err == nil || channels.IsPermanent(res[0].Err) || !channels.IsPermanent(res[1].Err) || !strings.Contains(res[1].Err.Error(), "INVALID_CURRENCY_CODE") {
		t.Errorf("results %v / %v: want the first retried, the second dead", res[0].Err, res[1].Err)
	}
}
