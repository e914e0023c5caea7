package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

// received is the server time of receipt in decode tests.
var received = time.Date(2026, 3, 2, 12, 0, 10, 0, time.UTC)

func decodeOpts(endpoint string) DecodeOptions {
	return DecodeOptions{Type: endpoint, Source: "web", ReceivedAt: received, NewID: func() string { return "generated" }}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string // "" as for a batch member
		body     string
		check    func(t *testing.T, e *Event)
	}{
		{
			name: "track", endpoint: TypeTrack,
			body: `{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"revenue":12.50,"products":[{"sku":"a"}],"coupon":null}}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeTrack || e.MessageID != "m1" || e.UserID != "u1" || e.Event != "Order Completed" {
					t.Errorf("event %+v", e)
				}
				if n, ok := e.Properties["revenue"].(json.Number); !ok || n.String() != "12.50" {
					t.Errorf("revenue = %#v, want json.Number 12.50 as sent", e.Properties["revenue"])
				}
				if e.Source != "web" || !e.ReceivedAt.Equal(received) || !e.Timestamp.Equal(received) || !e.OriginalTimestamp.IsZero() {
					t.Errorf("source %q, receivedAt %s, timestamp %s, original %s", e.Source, e.ReceivedAt, e.Timestamp, e.OriginalTimestamp)
				}
			},
		},
		{
			name: "type implied by the endpoint", endpoint: TypeTrack,
			body: `{"event":"Signed In","anonymousId":"a1"}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeTrack || e.AnonymousID != "a1" {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "identify with traits", endpoint: TypeIdentify,
			body: `{"anonymousId":"a1","traits":{"email":"ana@example.com","age":41,"consent":{"email":true,"source":"signup form"}}}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeIdentify || e.Traits["email"] != "ana@example.com" || e.Traits["age"] != json.Number("41") {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "page", endpoint: TypePage,
			body: `{"type":"page","anonymousId":"a1","name":"Pricing","properties":{"path":"/pricing"}}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypePage || e.Name != "Pricing" || e.Properties["path"] != "/pricing" {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "screen", endpoint: TypeScreen,
			body: `{"userId":"u1","name":"Home"}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeScreen || e.Name != "Home" {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "group", endpoint: TypeGroup,
			body: `{"userId":"u1","groupId":"acme","traits":{"plan":"team"}}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeGroup || e.GroupID != "acme" || e.Traits["plan"] != "team" {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "alias", endpoint: TypeAlias,
			body: `{"userId":"u1","previousId":"a1"}`,
			check: func(t *testing.T, e *Event) {
				if e.Type != TypeAlias || e.UserID != "u1" || e.PreviousID != "a1" {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "ids sent as JSON numbers keep their digits", endpoint: TypeIdentify,
			body: `{"userId":12345678901234567890,"anonymousId":-7,"messageId":1.50,"groupId":null}`,
			check: func(t *testing.T, e *Event) {
				if e.UserID != "12345678901234567890" || e.AnonymousID != "-7" || e.MessageID != "1.50" || e.GroupID != "" {
					t.Errorf("userId %q, anonymousId %q, messageId %q, groupId %q", e.UserID, e.AnonymousID, e.MessageID, e.GroupID)
				}
			},
		},
		{
			name: "a message without messageId gets one", endpoint: TypeTrack,
			body: `{"userId":"u1","event":"Signed In"}`,
			check: func(t *testing.T, e *Event) {
				if e.MessageID != "generated" {
					t.Errorf("messageId %q, want the generated one", e.MessageID)
				}
			},
		},
		{
			name: "timestamp with an offset is kept in UTC", endpoint: TypeTrack,
			body: `{"userId":"u1","event":"Signed In","timestamp":"2026-03-02T13:00:00.250+01:00"}`,
			check: func(t *testing.T, e *Event) {
				want := time.Date(2026, 3, 2, 12, 0, 0, 250e6, time.UTC)
				if !e.Timestamp.Equal(want) || e.Timestamp.Location() != time.UTC || !e.OriginalTimestamp.Equal(want) {
					t.Errorf("timestamp %s, original %s; want %s", e.Timestamp, e.OriginalTimestamp, want)
				}
			},
		},
		{
			name: "date-only and zone-less timestamps", endpoint: TypeTrack,
			body: `{"userId":"u1","event":"Signed In","timestamp":"2026-03-01","sentAt":"2026-03-01T00:00:05"}`,
			check: func(t *testing.T, e *Event) {
				if want := received.Add(-5 * time.Second); !e.Timestamp.Equal(want) {
					t.Errorf("timestamp %s, want %s", e.Timestamp, want)
				}
			},
		},
		{
			name: "null fields are absent", endpoint: TypeTrack,
			body: `{"userId":"u1","event":"Signed In","properties":null,"traits":null,"context":null,"timestamp":null,"anonymousId":null}`,
			check: func(t *testing.T, e *Event) {
				if e.Properties != nil || e.Traits != nil || e.Context != nil || !e.Timestamp.Equal(received) {
					t.Errorf("event %+v", e)
				}
			},
		},
		{
			name: "Consent Updated with metadata", endpoint: TypeTrack,
			body: `{"userId":"u1","event":"Consent Updated","properties":{"email":false,"sms":true,"source":"preference center"}}`,
			check: func(t *testing.T, e *Event) {
				if e.Properties["email"] != false || e.Properties["source"] != "preference center" {
					t.Errorf("properties %v", e.Properties)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.body), decodeOpts(tt.endpoint))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tt.check(t, e)
			if _, err := json.Marshal(e); err != nil {
				t.Errorf("encode decoded event: %v", err)
			}
		})
	}
}

// TestDecodeErrors checks the exact message of each way a message can be
// wrong: it is what a developer reads in the 400 answer.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		body     string
		want     string
	}{
		{"track without event", TypeTrack, `{"userId":"u1"}`,
			`event: required for track: the name of the action, such as "Order Completed"`},
		{"track with a blank event", TypeTrack, `{"userId":"u1","event":"  "}`,
			`event: required for track: the name of the action, such as "Order Completed"`},
		{"identify without ids", TypeIdentify, `{"traits":{"plan":"pro"}}`,
			`userId: userId or anonymousId is required`},
		{"page with blank ids", TypePage, `{"userId":"  ","anonymousId":""}`,
			`userId: userId or anonymousId is required`},
		{"group without groupId", TypeGroup, `{"userId":"u1"}`,
			`groupId: required for group`},
		{"alias without previousId", TypeAlias, `{"userId":"u1"}`,
			`previousId: required for alias`},
		{"alias with a blank previousId", TypeAlias, `{"userId":"u1","previousId":" "}`,
			`previousId: required for alias`},
		{"alias without userId", TypeAlias, `{"anonymousId":"a1","previousId":"a0"}`,
			`userId: required for alias`},
		{"no type outside an endpoint", "", `{"userId":"u1","event":"x"}`,
			`type: required in a batch: one of track, identify, page, screen, group, alias`},
		{"unknown type", "", `{"type":"purchase","userId":"u1"}`,
			`type: unknown type "purchase": want one of track, identify, page, screen, group, alias`},
		{"type other than the endpoint's", TypeTrack, `{"type":"identify","userId":"u1"}`,
			`type: is "identify" but the endpoint takes "track"`},
		{"type as a number", "", `{"type":1,"userId":"u1"}`,
			`type: want string, got number`},
		{"userId as an object", TypeIdentify, `{"userId":{"id":1}}`,
			`userId: want string, got object`},
		{"anonymousId as a boolean", TypeIdentify, `{"anonymousId":true}`,
			`anonymousId: want string, got boolean`},
		{"previousId as an array", TypeAlias, `{"userId":"u1","previousId":["a"]}`,
			`previousId: want string, got array`},
		{"event name as a number", TypeTrack, `{"userId":"u1","event":42}`,
			`event: want string, got number`},
		{"revenue as a string", TypeTrack, `{"userId":"u1","event":"Order Completed","properties":{"revenue":"12.50"}}`,
			`properties.revenue: want number, got string`},
		{"price as a boolean", TypeTrack, `{"userId":"u1","event":"Product Added","properties":{"price":true}}`,
			`properties.price: want number, got boolean`},
		{"products as an object", TypeTrack, `{"userId":"u1","event":"Order Completed","properties":{"products":{"sku":"a"}}}`,
			`properties.products: want array, got object`},
		{"properties as an array", TypeTrack, `{"userId":"u1","event":"x","properties":[1]}`,
			`properties: want object, got array`},
		{"traits as a string", TypeIdentify, `{"userId":"u1","traits":"vip"}`,
			`traits: want object, got string`},
		{"context as a number", TypeIdentify, `{"userId":"u1","context":3}`,
			`context: want object, got number`},
		{"email trait as a number", TypeIdentify, `{"userId":"u1","traits":{"email":5}}`,
			`traits.email: want string, got number`},
		{"phone trait as an object", TypeIdentify, `{"userId":"u1","traits":{"phone":{"n":"1"}}}`,
			`traits.phone: want string, got object`},
		{"consent trait as a string", TypeIdentify, `{"userId":"u1","traits":{"consent":"yes"}}`,
			`traits.consent: want object of booleans such as {"email": true}, got string`},
		{"consent purpose as a string", TypeIdentify, `{"userId":"u1","traits":{"consent":{"email":"yes"}}}`,
			`traits.consent.email: want boolean, got string`},
		{"Consent Updated purpose as a string", TypeTrack, `{"userId":"u1","event":"Consent Updated","properties":{"sms":"no"}}`,
			`properties.sms: want boolean, got string`},
		{"timestamp as a number", TypeTrack, `{"userId":"u1","event":"x","timestamp":1700000000}`,
			`timestamp: want ISO-8601 time string, got number`},
		{"timestamp in words", TypeTrack, `{"userId":"u1","event":"x","timestamp":"yesterday"}`,
			`timestamp: want ISO-8601 time such as 2026-11-24T10:00:00Z, got "yesterday"`},
		{"timestamp past year 9999 in UTC", TypeTrack, `{"userId":"u1","event":"x","timestamp":"9999-12-31T23:30:00-01:00"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "9999-12-31T23:30:00-01:00"`},
		{"timestamp in year 9999", TypeTrack, `{"userId":"u1","event":"x","timestamp":"9999-01-01T00:00:00Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "9999-01-01T00:00:00Z"`},
		{"timestamp at 2100 exactly", TypeTrack, `{"userId":"u1","event":"x","timestamp":"2100-01-01T00:00:00Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "2100-01-01T00:00:00Z"`},
		{"timestamp in 1999", TypeTrack, `{"userId":"u1","event":"x","timestamp":"1999-12-31T23:59:59Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "1999-12-31T23:59:59Z"`},
		{"timestamp at the Unix epoch", TypeTrack, `{"userId":"u1","event":"x","timestamp":"1970-01-01T00:00:00Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "1970-01-01T00:00:00Z"`},
		{"timestamp in 2000 by local time, 1999 in UTC", TypeTrack, `{"userId":"u1","event":"x","timestamp":"2000-01-01T00:30:00+01:00"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "2000-01-01T00:30:00+01:00"`},
		{"sentAt before year 0000 in UTC", TypeTrack, `{"userId":"u1","event":"x","sentAt":"0000-01-01T00:00:00+01:00"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "0000-01-01T00:00:00+01:00"`},
		{"sentAt far in the past", TypeTrack, `{"userId":"u1","event":"x","timestamp":"2026-03-02T10:00:00Z","sentAt":"1900-01-01T00:00:00Z"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "1900-01-01T00:00:00Z"`},
		{"sentAt far in the future", TypeTrack, `{"userId":"u1","event":"x","sentAt":"2200-01-01T00:00:00Z"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "2200-01-01T00:00:00Z"`},
		{"messageId in the internal namespace", TypeTrack, `{"userId":"u1","event":"x","messageId":"cartera:abc"}`,
			`messageId: the prefix "cartera:" is reserved for events Cartera records itself`},
		{"sentAt as a boolean", TypeTrack, `{"userId":"u1","event":"x","sentAt":false}`,
			`sentAt: want ISO-8601 time string, got boolean`},
		{"body as an array", TypeTrack, `[{"userId":"u1"}]`,
			`body: want object, got array`},
		{"body as a string", TypeTrack, `"track"`,
			`body: want object, got string`},
		{"broken JSON", TypeTrack, "{\"userId\":\"u1\",\n\"event\": }",
			`invalid JSON at line 2, column 10: invalid character '}' looking for beginning of value`},
		{"broken JSON on the third line", TypeTrack, "{\n  \"userId\": \"u1\",\n  \"event\": \"x\",,\n}",
			`invalid JSON at line 3, column 16: invalid character ',' looking for beginning of object key string`},
		{"truncated JSON", TypeTrack, `{"userId":"u1"`,
			`invalid JSON at line 1, column 14: unexpected end of JSON input`},
		{"empty body", TypeTrack, ``,
			`invalid JSON at line 1, column 1: unexpected end of JSON input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.body), decodeOpts(tt.endpoint))
			if err == nil {
				t.Fatalf("Decode accepted %s: %+v", tt.body, e)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			if e != nil {
				t.Errorf("Decode returned an event with its error: %+v", e)
			}
		})
	}
}

func TestDecodeErrorField(t *testing.T) {
	_, err := Decode([]byte(`{"userId":"u1","event":"x","properties":{"tax":"21%"}}`), decodeOpts(TypeTrack))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "properties.tax" || ve.Msg != "want number, got string" {
		t.Errorf("error %#v, want field properties.tax", err)
	}
	_, err = Decode([]byte(`{"userId":`), decodeOpts(TypeTrack))
	if !errors.As(err, &ve) || ve.Field != "" || !strings.HasPrefix(ve.Msg, "invalid JSON at line 1, column 10") {
		t.Errorf("syntax error %#v, want no field and the position", err)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	// padded returns a valid track message of exactly n bytes.
	padded := func(n int) string {
		const head, tail = `{"userId":"u1","event":"x","properties":{"pad":"`, `"}}`
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	if _, err := Decode([]byte(padded(MaxEventBytes)), decodeOpts(TypeTrack)); err != nil {
		t.Errorf("event of exactly %d bytes: %v", MaxEventBytes, err)
	}
	_, err := Decode([]byte(padded(MaxEventBytes+1)), decodeOpts(TypeTrack))
	var ve *ValidationError
	if !errors.Is(err, ErrTooLarge) || errors.As(err, &ve) {
		t.Errorf("event over the limit: %v, want ErrTooLarge", err)
	}

	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := 0; b.Len() < MaxBatchBytes; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(padded(1000))
	}
	b.WriteString(`]}`)
	if _, err := DecodeBatch([]byte(b.String()), decodeOpts("")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("batch over the limit: %v, want ErrTooLarge", err)
	}

	body := `{"batch":[{"type":"track","userId":"u1","event":"x"},` + strings.Replace(padded(MaxEventBytes+1), `{`, `{"type":"track",`, 1) + `]}`
	_, err = DecodeBatch([]byte(body), decodeOpts(""))
	if !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "batch[1]: event is ") {
		t.Errorf("batch with a member over the limit: %v, want batch[1] and ErrTooLarge", err)
	}
}

func TestDecodeBatch(t *testing.T) {
	body := `{
		"sentAt": "2026-03-02T10:00:05Z",
		"context": {"library": {"name": "analytics-node", "version": "6.0.0"}, "ip": "192.0.2.1"},
		"batch": [
			{"type": "track", "messageId": "m1", "anonymousId": "a1", "event": "Product Viewed", "timestamp": "2026-03-02T10:00:00Z"},
			{"type": "identify", "messageId": "m2", "userId": "u1", "traits": {"plan": "pro"}, "timestamp": "2026-03-02T10:00:00Z",
			 "sentAt": "2026-03-02T10:00:02Z", "context": {"ip": "198.51.100.7"}},
			{"type": "alias", "messageId": "m3", "userId": "u1", "previousId": "a1"}
		]
	}`
	evs, err := DecodeBatch([]byte(body), decodeOpts(""))
	if err != nil {
		t.Fatalf("DecodeBatch: %v", err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for i, want := range []string{TypeTrack, TypeIdentify, TypeAlias} {
		if evs[i].Type != want || evs[i].MessageID != fmt.Sprintf("m%d", i+1) || evs[i].Source != "web" {
			t.Errorf("event %d: %+v", i, evs[i])
		}
	}
	// Batch sentAt corrects the skew of members that have none of their own.
	if want := received.Add(-5 * time.Second); !evs[0].Timestamp.Equal(want) {
		t.Errorf("member 0 timestamp %s, want %s (batch sentAt applied)", evs[0].Timestamp, want)
	}
	if want := received.Add(-2 * time.Second); !evs[1].Timestamp.Equal(want) {
		t.Errorf("member 1 timestamp %s, want %s (its own sentAt)", evs[1].Timestamp, want)
	}
	if !evs[2].Timestamp.Equal(received) {
		t.Errorf("member 2 timestamp %s, want receivedAt", evs[2].Timestamp)
	}
	// Batch context fills in what a member's context does not say.
	lib := map[string]any{"name": "analytics-node", "version": "6.0.0"}
	if got, _ := evs[0].Context["library"].(map[string]any); !maps.Equal(got, lib) || evs[0].Context["ip"] != "192.0.2.1" {
		t.Errorf("member 0 context %v, want the batch's", evs[0].Context)
	}
	if got, _ := evs[1].Context["library"].(map[string]any); !maps.Equal(got, lib) || evs[1].Context["ip"] != "198.51.100.7" {
		t.Errorf("member 1 context %v, want its ip and the batch's library", evs[1].Context)
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"no batch", `{"sentAt":"2026-03-02T10:00:00Z"}`, `batch: required`},
		{"batch as an object", `{"batch":{"type":"track"}}`, `batch: want array, got object`},
		{"empty batch", `{"batch":[]}`, `batch: must hold at least one message`},
		{"member as a number", `{"batch":[{"type":"page","userId":"u1"},7]}`, `batch[1]: want object, got number`},
		{"member without type", `{"batch":[{"userId":"u1","event":"x"}]}`,
			`batch[0].type: required in a batch: one of track, identify, page, screen, group, alias`},
		{"bad member at index 2", `{"batch":[
			{"type":"page","userId":"u1"},
			{"type":"track","userId":"u1","event":"Product Viewed"},
			{"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"12"}},
			{"type":"track","userId":"u1"}]}`,
			`batch[2].properties.revenue: want number, got string`},
		{"member with a syntax error of its own", `{"batch":[{"type":"page","userId":"u1","timestamp":"soon"}]}`,
			`batch[0].timestamp: want ISO-8601 time such as 2026-11-24T10:00:00Z, got "soon"`},
		{"member timestamp in year 9999", `{"batch":[{"type":"page","userId":"u1"},{"type":"page","userId":"u1"},{"type":"page","userId":"u1"},{"type":"page","userId":"u1","timestamp":"9999-01-01T00:00:00Z"}]}`,
			`batch[3].timestamp: want a time from 2000-01-01 to before 2100-01-01, got "9999-01-01T00:00:00Z"`},
		{"member sentAt in 1990", `{"batch":[{"type":"page","userId":"u1","sentAt":"1990-01-01T00:00:00Z"}]}`,
			`batch[0].sentAt: want a time from 2000-01-01 to before 2100-01-01, got "1990-01-01T00:00:00Z"`},
		{"batch sentAt in 2150", `{"batch":[{"type":"page","userId":"u1"}],"sentAt":"2150-01-01T00:00:00Z"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "2150-01-01T00:00:00Z"`},
		{"batch sentAt as a number", `{"batch":[{"type":"page","userId":"u1"}],"sentAt":5}`, `sentAt: want ISO-8601 time string, got number`},
		{"batch context as an array", `{"batch":[{"type":"page","userId":"u1"}],"context":[]}`, `context: want object, got array`},
		{"broken JSON", "{\"batch\":[\n{\"type\":\"page\" \"userId\":\"u1\"}]}", `invalid JSON at line 2, column 16: invalid character '"' after object key:value pair`},
		{"body as an array", `[{"type":"page","userId":"u1"}]`, `body: want object, got array`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := DecodeBatch([]byte(tt.body), decodeOpts(""))
			if err == nil {
				t.Fatalf("DecodeBatch accepted %s: %d events", tt.body, len(evs))
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}

	_, err := DecodeBatch([]byte(tests[5].body), decodeOpts(""))
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "batch[2]") {
		t.Errorf("field %q, want it to start with batch[2]", ve.Field)
	}
}

// TestDecodeClockSkew: the event time is receivedAt - (sentAt - timestamp),
// so a device whose clock is wrong still orders its events right.
func TestDecodeClockSkew(t *testing.T) {
	tests := []struct {
		name              string
		timestamp, sentAt string
		want              time.Time
	}{
		{"device clock two hours behind", "2026-03-02T10:00:00Z", "2026-03-02T10:00:05Z", received.Add(-5 * time.Second)},
		{"device clock a year ahead", "2027-03-02T12:00:00Z", "2027-03-02T12:01:00Z", received.Add(-time.Minute)},
		{"sent before it happened", "2026-03-02T10:00:05Z", "2026-03-02T10:00:00Z", received.Add(5 * time.Second)},
		{"no sentAt: timestamp as sent", "2026-03-01T08:00:00+01:00", "", time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)},
		{"no timestamp: receivedAt", "", "2026-03-02T10:00:05Z", received},
		// What is still ahead of the receipt by more than the skew is
		// clamped to the receipt; originalTimestamp keeps it as sent.
		{"no sentAt, a year ahead: clamped", "2027-03-02T12:00:00Z", "", received},
		{"no sentAt, 2099: clamped", "2099-12-31T23:59:59Z", "", received},
		{"no sentAt, just inside the skew", "2026-03-03T12:00:00Z", "", time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)},
		{"no sentAt, just past the skew", "2026-03-03T12:00:11Z", "", received},
		{"sentAt far in the past shifts into the future: clamped", "2026-03-02T10:00:00Z", "2000-01-01T00:00:00Z", received},
		{"sent two hours before it happened: kept", "2026-03-02T12:00:00Z", "2026-03-02T10:00:00Z", received.Add(2 * time.Hour)},
		{"sent two days before it happened: clamped", "2026-03-04T10:00:00Z", "2026-03-02T10:00:00Z", received},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]any{"userId": "u1", "event": "Signed In"}
			if tt.timestamp != "" {
				m["timestamp"] = tt.timestamp
			}
			if tt.sentAt != "" {
				m["sentAt"] = tt.sentAt
			}
			body, _ := json.Marshal(m)
			e, err := Decode(body, decodeOpts(TypeTrack))
			if err != nil {
				t.Fatal(err)
			}
			if !e.Timestamp.Equal(tt.want) {
				t.Errorf("timestamp %s, want %s", e.Timestamp, tt.want)
			}
			if tt.timestamp != "" {
				want, _ := time.Parse(time.RFC3339, tt.timestamp)
				if !e.OriginalTimestamp.Equal(want) {
					t.Errorf("originalTimestamp %s, want %s as sent", e.OriginalTimestamp, want)
				}
			}
		})
	}

	// The skew is configurable.
	opts := decodeOpts(TypeTrack)
	opts.MaxSkew = time.Hour
	e, err := Decode([]byte(`{"userId":"u1","event":"x","timestamp":"2026-03-02T13:30:00Z"}`), opts)
	if err != nil || !e.Timestamp.Equal(received) {
		t.Errorf("skew 1h, 90 minutes ahead: timestamp %v, err %v; want the receipt time", e, err)
	}
	opts.MaxSkew = 2 * time.Hour
	e, err = Decode([]byte(`{"userId":"u1","event":"x","timestamp":"2026-03-02T13:30:00Z"}`), opts)
	if err != nil || !e.Timestamp.Equal(time.Date(2026, 3, 2, 13, 30, 0, 0, time.UTC)) {
		t.Errorf("skew 2h, 90 minutes ahead: timestamp %v, err %v; want it as sent", e, err)
	}

	// A batch's sentAt shifts its members, and the clamp applies to each.
	evs, err := DecodeBatch([]byte(`{"sentAt":"2026-03-02T12:00:00Z","batch":[
		{"type":"track","userId":"u1","event":"a","timestamp":"2026-03-02T11:59:00Z"},
		{"type":"track","userId":"u1","event":"b","timestamp":"2099-01-01T00:00:00Z"}]}`), decodeOpts(""))
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].Timestamp.Equal(received.Add(-time.Minute)) || !evs[1].Timestamp.Equal(received) {
		t.Errorf("batch timestamps %s, %s; want %s, %s", evs[0].Timestamp, evs[1].Timestamp, received.Add(-time.Minute), received)
	}

	// Without a receipt time there is nothing to correct against.
	e, err = Decode([]byte(`{"userId":"u1","event":"x","timestamp":"2026-03-02T10:00:00Z","sentAt":"2026-03-02T10:00:05Z"}`), DecodeOptions{Type: TypeTrack})
	if err != nil || !e.Timestamp.Equal(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("no receivedAt: timestamp %v, err %v; want the timestamp as sent", e, err)
	}
}

// TestEventJSON checks that an event is stored with Segment's field names.
func TestEventJSON(t *testing.T) {
	e, err := Decode([]byte(`{"userId":"u1","anonymousId":"a1","event":"Order Completed","properties":{"revenue":12.5},"timestamp":"2026-03-02T10:00:00Z","sentAt":"2026-03-02T10:00:05Z","messageId":"m1"}`), decodeOpts(TypeTrack))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "track", "messageId": "m1", "userId": "u1", "anonymousId": "a1", "event": "Order Completed",
		"properties":        map[string]any{"revenue": 12.5},
		"timestamp":         "2026-03-02T12:00:05Z",
		"originalTimestamp": "2026-03-02T10:00:00Z",
		"sentAt":            "2026-03-02T10:00:05Z",
		"receivedAt":        "2026-03-02T12:00:10Z",
		"source":            "web",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("JSON\n got %v\nwant %v", got, want)
	}
}

func TestKindOf(t *testing.T) {
	for v, want := range map[any]string{nil: "null", "s": "string", json.Number("1"): "number", 1.5: "number", true: "boolean", int8(1): "int8"} {
		if got := KindOf(v); got != want {
			t.Errorf("KindOf(%#v) = %q, want %q", v, got, want)
		}
	}
	if KindOf(map[string]any{}) != "object" || KindOf([]any{}) != "array" {
		t.Errorf("KindOf of object or array")
	}
}

// An identify with its traits only in context.traits (RudderStack's
// browser SDK) gets them as its own; one with traits keeps its own.
func TestDecodeContextTraits(t *testing.T) {
	for _, tc := range []struct {
		body string
		want any
	}{
		{`{"type":"identify","userId":"u","context":{"traits":{"email":"a@example.com"}}}`, "a@example.com"},
		{`{"type":"identify","userId":"u","traits":{"email":"own@example.com"},"context":{"traits":{"email":"a@example.com"}}}`, "own@example.com"},
		{`{"type":"track","userId":"u","event":"E","context":{"traits":{"email":"a@example.com"}}}`, nil},
	} {
		e, err := Decode([]byte(tc.body), DecodeOptions{Source: "web", ReceivedAt: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Traits["email"]; got != tc.want {
			t.Errorf("%s: traits.email %v, want %v", tc.body, got, tc.want)
		}
	}
}
