package main

import (
	"testing"
	"time"
)

// TestEventTimesOverHTTP: a time outside 2000..2100 is refused with the
// field named, and one still far in the future after the sentAt correction
// is stored at the receipt time, with the time as sent kept.
func TestEventTimesOverHTTP(t *testing.T) {
	s := startServer(t, nil)
	refused := []struct{ path, body, want string }{
		{"/v1/track", `{"userId":"t1","event":"x","timestamp":"9999-01-01T00:00:00Z"}`,
			`timestamp: want a time from 2000-01-01 to before 2100-01-01, got "9999-01-01T00:00:00Z"`},
		{"/v1/track", `{"userId":"t1","event":"x","sentAt":"1999-12-31T00:00:00Z"}`,
			`sentAt: want a time from 2000-01-01 to before 2100-01-01, got "1999-12-31T00:00:00Z"`},
		{"/v1/batch", `{"batch":[{"type":"page","userId":"t1"},{"type":"page","userId":"t1"},{"type":"page","userId":"t1"},{"type":"track","userId":"t1","event":"x","timestamp":"2100-06-01T00:00:00Z"}]}`,
			`batch[3].timestamp: want a time from 2000-01-01 to before 2100-01-01, got "2100-06-01T00:00:00Z"`},
	}
	for _, tt := range refused {
		r := s.send(t, "web_dev_write_key", tt.path, tt.body)
		if r.status != 400 || r.body["error"] != tt.want {
			t.Errorf("%s %s: %d %s, want 400 %q", tt.path, tt.body, r.status, r.raw, tt.want)
		}
	}
	// A refused batch stores nothing of itself.
	if r := s.admin(t, "GET", "/v1/profiles/user_id:t1"); r.status != 404 {
		t.Errorf("after refusals: profile %d %s, want 404", r.status, r.raw)
	}

	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"t1","event":"Far Future","timestamp":"2099-01-01T00:00:00Z"}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"t1","event":"Old Sent","timestamp":"2026-03-02T10:00:00Z","sentAt":"2001-01-01T00:00:00Z"}`))
	p := s.profile(t, "user_id:t1")
	for _, tt := range []struct{ event, original string }{
		{"Far Future", "2099-01-01T00:00:00Z"},
		{"Old Sent", "2026-03-02T10:00:00Z"},
	} {
		evs := eventsNamed(p, tt.event)
		if len(evs) != 1 {
			t.Fatalf("%s: %d events, want 1", tt.event, len(evs))
		}
		ev := evs[0]
		if ev["timestamp"] != ev["receivedAt"] {
			t.Errorf("%s: timestamp %v, want the receipt time %v", tt.event, ev["timestamp"], ev["receivedAt"])
		}
		if ev["originalTimestamp"] != tt.original {
			t.Errorf("%s: originalTimestamp %v, want %s", tt.event, ev["originalTimestamp"], tt.original)
		}
		at, err := time.Parse(time.RFC3339Nano, ev["timestamp"].(string))
		if err != nil || at.Year() >= 2099 {
			t.Errorf("%s: timestamp %v (%v) still in the far future", tt.event, ev["timestamp"], err)
		}
	}
}
