package profiles

import (
	"cartera/internal/codec"
	"cartera/internal/codec/codectest"
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
			{Kind: KindUserID, Value: "u-1", FirstSeen: t, Source: "web", Unverified: true},
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
			codectest.Migration(t, p, func(p *Profile) ([]byte, error) { return encodeProfile(p, nil) }, decodeProfile)
			if name == "full" {
				bin, err := encodeProfile(p, nil)
				if err != nil {
					t.Fatal(err)
				}
				var fromBin Profile
				if err := decodeProfile(bin, &fromBin); err != nil || !reflect.DeepEqual(&fromBin, p) {
					t.Errorf("round trip changed the profile (%v):\n got %+v\nwant %+v", err, fromBin, *p)
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

// A profile in the Format1 layout of earlier versions (no unverified
// identities at the end) still decodes.
func TestProfileCodecFormat1(t *testing.T) {
	p := codecProfile()
	for i := range p.Identities {
		p.Identities[i].Unverified = false
	}
	v2, err := encodeProfile(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Format2 adds one byte here: the empty list of unverified positions.
	v1 := append([]byte{codec.Format1}, v2[1:len(v2)-1]...)
	var got Profile
	if err := decodeProfile(v1, &got); err != nil {
		t.Fatalf("decode Format1: %v", err)
	}
	var want Profile
	if err := decodeProfile(v2, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Format1 decodes to\n%+v\nFormat2 to\n%+v", got, want)
	}
}
