package journeys

import (
	"encoding/json"
	"testing"
	"time"
)

// TestInstanceCodec: the binary form of an instance decodes to what the
// JSON form of earlier versions decodes to, and JSON records still decode.
func TestInstanceCodec(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 5, time.UTC)
	for name, in := range map[string]*Instance{
		"live": {ID: 42, Journey: "cart_abandonment", Version: "abc", ProfileID: "019cadc69a80e6b7a03af69e", Key: "c-1", Step: "opened",
			Trigger:   &TriggerRecord{Name: "Product Added", Type: "track", Source: "web", MessageID: "m1", Properties: map[string]any{"cart_id": "c-1", "price": json.Number("19.90"), "items": []any{map[string]any{"sku": "a"}}}, Timestamp: at},
			EnteredAt: at, Timer: timerKey(at.Add(time.Hour), 42), Audiences: []string{"retargeting"}, Variant: "a", Converted: true,
			Steps: map[string]int{"priority": 1, "reminder": 2}},
		"done":  {ID: 7, Journey: "j", Version: "v", ProfileID: "p", Step: "done", Done: true, EnteredAt: at},
		"empty": {},
	} {
		t.Run(name, func(t *testing.T) {
			old, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var fromJSON, fromBin Instance
			if err := decodeInstance(old, &fromJSON); err != nil {
				t.Fatalf("decode JSON record: %v", err)
			}
			bin, err := encodeInstance(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeInstance(bin, &fromBin); err != nil {
				t.Fatalf("decode binary record: %v", err)
			}
			a, _ := json.Marshal(&fromJSON)
			b, _ := json.Marshal(&fromBin)
			if string(a) != string(b) {
				t.Errorf("binary round trip differs from JSON's:\n got %s\nwant %s", b, a)
			}
			for i := 1; i < len(bin); i++ {
				var q Instance
				if err := decodeInstance(bin[:i], &q); err == nil {
					t.Fatalf("decoding %d of %d bytes did not fail", i, len(bin))
				}
			}
			t.Logf("JSON %d bytes, binary %d bytes", len(old), len(bin))
		})
	}
}

func TestEntryCodec(t *testing.T) {
	rec := entryRecord{LastEntered: time.Date(2026, 11, 29, 10, 0, 0, 5, time.UTC), Entries: 3}
	old, _ := json.Marshal(rec)
	for _, v := range [][]byte{old, encodeEntry(rec)} {
		var got entryRecord
		if err := decodeEntry(v, &got); err != nil || got != rec {
			t.Errorf("decode %q = %+v, %v; want %+v", v, got, err, rec)
		}
	}
}
