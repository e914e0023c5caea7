package profiles

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestEncodeEventIsMarshal: encodeEvent writes exactly what json.Marshal
// writes for an Event, whatever its strings, numbers and values hold.
func TestEncodeEventIsMarshal(t *testing.T) {
	madrid := time.FixedZone("", 3600)
	at := time.Date(2026, 3, 2, 10, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		e    Event
	}{
		{"empty", Event{}},
		{"track", Event{Type: TypeTrack, MessageID: "m1", UserID: "u1", AnonymousID: "a1", Event: "Order Completed",
			Properties: map[string]any{"revenue": json.Number("59.70"), "products": []any{map[string]any{"sku": "s", "q": json.Number("-1e+3")}}, "none": nil, "ok": true, "no": false},
			Context:    map[string]any{"ip": "192.0.2.1", "page": map[string]any{"path": "/a?b=1&c=<d>"}},
			Timestamp:  at, OriginalTimestamp: at.In(madrid), SentAt: at.Add(time.Second), ReceivedAt: at.Add(2 * time.Second), Source: "web", Verified: true}},
		{"strings", Event{Type: "identify", MessageID: "\"quoted\" \\ back\nslash\t\b\f\r\x01\x1f\x7f", UserID: "caf\u00e9 \u2028\u2029 \U0001F600",
			AnonymousID: "bad \xff\xfe utf-8 \xe2\x82", Traits: map[string]any{"<k>": "a&b", "": "", "é": "\u0000"}, Source: "s"}},
		{"empty maps and nil slices", Event{Type: "page", Properties: map[string]any{}, Traits: map[string]any{"list": []any(nil), "empty": []any{}, "m": map[string]any(nil)}}},
		{"values not from decoding", Event{Type: "track", Properties: map[string]any{"f": 1.5e-7, "i": 42, "big": 1e21, "s": []string{"x"}, "t": at, "n": json.Number("")}}},
		{"far times", Event{Type: "track", Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), ReceivedAt: time.Date(1, 1, 1, 0, 0, 0, 1, madrid)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkEncodeEvent(t, &tc.e)
		})
	}
	t.Run("refused as by encoding/json", func(t *testing.T) {
		for _, e := range []*Event{
			{Properties: map[string]any{"n": json.Number("1-2")}},
			{Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
			{Properties: map[string]any{"c": make(chan int)}},
		} {
			if _, err := json.Marshal(e); err == nil {
				t.Fatalf("json.Marshal took %+v", e)
			}
			if b, err := encodeEvent(e); err == nil {
				t.Errorf("encodeEvent took %+v: %s", e, b)
			}
		}
	})
}

// checkEncodeEvent fails unless encodeEvent(e) is json.Marshal(e).
func checkEncodeEvent(t *testing.T, e *Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := encodeEvent(e)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("encodeEvent error %v, json.Marshal's %v", err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodeEvent:\n got %s\nwant %s", got, want)
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	e, err := Decode([]byte(fuzzSeeds[0]), DecodeOptions{Source: "web", ReceivedAt: fuzzReceived, NewID: func() string { return "generated" }})
	if err != nil {
		b.Fatal(err)
	}
	e.Context = map[string]any{"library": map[string]any{"name": "analytics.js", "version": "5.2.0"}, "ip": "192.0.2.1", "userAgent": "Mozilla/5.0", "page": map[string]any{"path": "/checkout"}}
	b.Run("encodeEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
