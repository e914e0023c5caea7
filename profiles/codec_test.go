package profiles

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func codecProfile() *Profile {
	t := time.Date(2026, 11, 29, 10, 0, 0, 123, time.UTC)
	return &Profile{
		ID: "019cadc69a80e6b7a03af69e", CreatedAt: t, UpdatedAt: t.Add(time.Second), LastSeenAt: t.Add(time.Minute),
		Identities: []IdentityRecord{
			{Kind: KindUserID, Value: "u-1", FirstSeen: t, Source: "web"},
			{Kind: KindEmail, Value: "ana@example.com", FirstSeen: t},
		},
		Traits: map[string]Trait{
			"plan":    {Value: "pro", At: t, Source: "web"},
			"age":     {Value: json.Number("42"), At: t},
			"vip":     {Value: true, At: t},
			"none":    {Value: nil, At: t},
			"address": {Value: map[string]any{"city": "Madrid", "zip": json.Number("28001"), "lines": []any{"a", json.Number("1.50")}}, At: t},
		},
		Consent:        map[string]Consent{"email": {Granted: true, At: t, Source: "web"}, "sms": {At: t}},
		ConsentHistory: []ConsentChange{{Purpose: "email", Granted: true, At: t, Source: "web", MessageID: "m1"}},
		Ledger: []LedgerEntry{{At: t, Action: LedgerMerge, Profile: "019cadc69a80e6b7a03af69f",
			Identifiers: []Identifier{{Kind: KindAnonymousID, Value: "a-1"}}, MessageID: "m2", EventType: TypeIdentify, Source: "web", Reason: "merged"}},
		MergedFrom: []string{"019cadc69a80e6b7a03af69f"},
		EventCount: 12,
	}
}

// TestProfileCodec: the binary form decodes to what the JSON form of
// earlier versions decodes to, and JSON records still decode.
func TestProfileCodec(t *testing.T) {
	for name, p := range map[string]*Profile{
		"full":  codecProfile(),
		"empty": {ID: "019cadc69a80e6b7a03af600"},
		"offset": {ID: "019cadc69a80e6b7a03af601", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600)),
			Traits: map[string]Trait{"score": {Value: 0.25}, "n": {Value: int64(7)}}},
	} {
		t.Run(name, func(t *testing.T) {
			old, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var fromJSON Profile
			if err := decodeProfile(old, &fromJSON); err != nil {
				t.Fatalf("decode JSON record: %v", err)
			}
			bin, err := encodeProfile(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			var fromBin Profile
			if err := decodeProfile(bin, &fromBin); err != nil {
				t.Fatalf("decode binary record: %v", err)
			}
			// Compare through JSON: time zones decode to equal but not
			// identical locations.
			a, _ := json.Marshal(fromJSON)
			b, _ := json.Marshal(fromBin)
			if string(a) != string(b) {
				t.Errorf("binary round trip differs from JSON's:\n got %s\nwant %s", b, a)
			}
			if name == "full" && !reflect.DeepEqual(&fromBin, p) {
				t.Errorf("round trip changed the profile:\n got %+v\nwant %+v", fromBin, *p)
			}
			for i := 1; i < len(bin); i++ {
				var q Profile
				if err := decodeProfile(bin[:i], &q); err == nil {
					t.Fatalf("decoding %d of %d bytes did not fail", i, len(bin))
				}
			}
		})
	}
}

func BenchmarkProfileCodec(b *testing.B) {
	p := codecProfile()
	old, _ := json.Marshal(p)
	bin, _ := encodeProfile(p, nil)
	b.Run("encode/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(p)
		}
	})
	b.Run("encode/binary", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = encodeProfile(p, buf)
		}
	})
	b.Run("decode/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var q Profile
			_ = decodeProfile(old, &q)
		}
	})
	b.Run("decode/binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var q Profile
			_ = decodeProfile(bin, &q)
		}
	})
	b.ReportMetric(float64(len(bin)), "binary_bytes")
}
