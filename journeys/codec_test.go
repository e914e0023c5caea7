package journeys

import (
	"cartera/internal/codec/codectest"
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
			codectest.Migration(t, in, encodeInstance, decodeInstance)
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
