package profiles

import (
	"errors"
	"testing"
)

func TestCheckTrust(t *testing.T) {
	srcs, err := NewSources([]SourceConfig{
		{Name: "web", Trust: TrustClient, WriteKeys: []string{"web-key-aaaaaaaa"}},
		{Name: "app", WriteKeys: []string{"app-key-bbbbbbbb"}}, // unset: client
		{Name: "pos", Trust: TrustServer, WriteKeys: []string{"pos-key-cccccccc"}},
		{Name: "kiosk", WriteKeys: []string{"kiosk-key-dddddddd"}, AllowEvents: []string{"Order Completed"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string]string{"web": TrustClient, "app": TrustClient, "pos": TrustServer, "kiosk": TrustClient, "unknown": TrustClient} {
		if got := srcs.Trust(source); got != want {
			t.Errorf("Trust(%q) = %q, want %q", source, got, want)
		}
	}
	order := track("m1", "Order Completed", user("u1"), props("revenue", 99999, "channel", "pos"))
	refund := track("m2", "Order Refunded", user("u1"))
	viewed := track("m3", "Product Viewed", user("u1"))
	lower := track("m4", " order completed", user("u1"))
	ident := identify("m5", user("u1"), traits("email", "a@example.com"))
	tests := []struct {
		name   string
		source string
		batch  bool
		events []*Event
		want   string
	}{
		{"client source sends an order", "web", false, []*Event{order},
			`event: "Order Completed" is accepted only from server sources; source "web" is a client source (sources[].allow_events to allow it)`},
		{"client source by default sends a refund", "app", false, []*Event{refund},
			`event: "Order Refunded" is accepted only from server sources; source "app" is a client source (sources[].allow_events to allow it)`},
		{"another spelling of the name", "web", false, []*Event{lower},
			`event: " order completed" is accepted only from server sources; source "web" is a client source (sources[].allow_events to allow it)`},
		{"in a batch, the index is named", "web", true, []*Event{viewed, ident, order},
			`batch[2].event: "Order Completed" is accepted only from server sources; source "web" is a client source (sources[].allow_events to allow it)`},
		{"client source, other events", "web", true, []*Event{viewed, ident}, ""},
		{"server source sends orders and refunds", "pos", true, []*Event{order, refund}, ""},
		{"client source that allows orders", "kiosk", false, []*Event{order}, ""},
		{"client source that allows orders, not refunds", "kiosk", false, []*Event{refund},
			`event: "Order Refunded" is accepted only from server sources; source "kiosk" is a client source (sources[].allow_events to allow it)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := srcs.CheckTrust(tt.source, tt.batch, tt.events)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || err.Error() != tt.want {
				t.Fatalf("error %v (%T), want the ValidationError %q", err, err, tt.want)
			}
		})
	}
}

func TestNewSourcesTrustErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  SourceConfig
		want string
	}{
		{"unknown trust", SourceConfig{Name: "web", Trust: "trusted"}, `sources[0].trust: want client or server, got "trusted"`},
		{"blank allowed event", SourceConfig{Name: "web", AllowEvents: []string{"Order Completed", " "}}, "sources[0].allow_events[1]: want an event name"},
	}
	for _, tt := range tests {
		if _, err := NewSources([]SourceConfig{tt.cfg}); err == nil || err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
