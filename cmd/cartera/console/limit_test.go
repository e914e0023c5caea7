package console

import (
	"testing"
	"time"
)

func TestLoginLimit(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	l := newLoginLimit(3, 20*time.Second)
	for i := range 3 {
		if !l.allow("10.0.0.1", "mara", at) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	tests := []struct {
		name, addr, user string
		after            time.Duration
		want             bool
	}{
		{"same address, other name", "10.0.0.1", "vic", 0, false},
		{"same name, other address", "10.0.0.2", "mara", 0, false},
		{"other name, other address", "10.0.0.3", "ana", 0, true},
		{"one refill later", "10.0.0.4", "mara", 20 * time.Second, true},
		{"and no more", "10.0.0.5", "mara", 20 * time.Second, false},
	}
	for _, tc := range tests {
		if got := l.allow(tc.addr, tc.user, at.Add(tc.after)); got != tc.want {
			t.Errorf("%s: allow = %v, want %v", tc.name, got, tc.want)
		}
	}
}
