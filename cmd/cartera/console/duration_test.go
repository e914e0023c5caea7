package console

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{24 * time.Hour, "24h"},
		{30 * time.Minute, "30m"},
		{90 * time.Minute, "1h30m"},
		{45 * time.Second, "45s"},
		{time.Hour + 5*time.Second, "1h5s"},
		{7 * 24 * time.Hour, "7d"},
		{36 * time.Hour, "36h"},
		{72 * time.Hour, "3d"},
		{1500 * time.Millisecond, "1.5s"},
		{250 * time.Millisecond, "250ms"},
		{0, "0s"},
		{-30 * time.Minute, "-30m"},
	} {
		if got := Duration(tc.d); got != tc.want {
			t.Errorf("Duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestReasonDurations(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"frequency_cap: 2 email per 24h0m0s", "Frequency cap: 2 email per 24h"},
		{"frequency_cap: 6 any per 168h0m0s", "Frequency cap: 6 any per 7d"},
		{"priority: welcome sent email within 1h30m0s", "Priority: welcome sent email within 1h30m"},
		{"max_delay: held longer than 30m0s", "Longest delay: held longer than 30m"},
		{"quiet_hours: 21:00-09:00 Europe/Madrid", "Quiet hours: 21:00-09:00 Europe/Madrid"},
		{"consent: no email consent", "Consent: no email consent"},
	} {
		if got := Reason(tc.in); got != tc.want {
			t.Errorf("Reason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
