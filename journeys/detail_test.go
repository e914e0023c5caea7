package journeys

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestActionDetailJSON: each kind of action keeps its typed detail through
// the outbox's JSON, with the keys simulate prints; a record written
// before details were typed reads back typed.
func TestActionDetailJSON(t *testing.T) {
	until := time.Date(2026, 11, 21, 8, 5, 46, 0, time.UTC)
	for _, tc := range []struct {
		action string
		detail Detail
		json   string
	}{
		{ActEnter, EnterDetail{Trigger: "Scheduled", Version: "9b2c52cefdec"}, `{"key":"","trigger":"Scheduled","version":"9b2c52cefdec"}`},
		{ActSend, SendDetail{Template: "cart_reminder"}, `{"template":"cart_reminder"}`},
		{ActDelayed, DelayedDetail{Reason: "quiet_hours: 21:00-09:00", Template: "cart_reminder", Until: until},
			`{"reason":"quiet_hours: 21:00-09:00","template":"cart_reminder","until":"2026-11-21T08:05:46Z"}`},
		{ActSuppressed, SuppressedDetail{Reason: "consent: no email consent", Template: "welcome"}, `{"reason":"consent: no email consent","template":"welcome"}`},
		{ActSuppressed, SuppressedDetail{Audience: "retargeting", Reason: ReasonNoIdentifiers}, `{"audience":"retargeting","reason":"` + ReasonNoIdentifiers + `"}`},
		{ActAudienceAdd, AudienceDetail{Audience: "retargeting"}, `{"audience":"retargeting"}`},
		{ActAudienceRemove, AudienceDetail{Audience: "retargeting", Reason: "exit_when: Order Completed"}, `{"audience":"retargeting","reason":"exit_when: Order Completed"}`},
		{ActPassUpdate, PassDetail{Fields: map[string]any{"balance": 620.0, "tier": "gold"}, Push: "You are now Gold"}, `{"fields":{"balance":620,"tier":"gold"},"push":"You are now Gold"}`},
		{ActPassUpdate, PassDetail{PushSuppressed: "consent: no push consent"}, `{"push_suppressed":"consent: no push consent"}`},
		{ActPassUpdate, PassDetail{}, `{}`},
		{ActSetTrait, TraitDetail{Trait: "tier", Value: "gold"}, `{"trait":"tier","value":"gold"}`},
		{ActSetTrait, TraitDetail{Trait: "tier"}, `{"trait":"tier","value":null}`},
		{ActGoal, GoalDetail{Event: "Order Completed"}, `{"event":"Order Completed"}`},
		{ActExit, ExitDetail{Reason: "exit step", Variant: "control"}, `{"reason":"exit step","variant":"control"}`},
	} {
		t.Run(tc.action+" "+tc.json, func(t *testing.T) {
			a := Action{At: until, Profile: "p1", Journey: "j", Step: "s", Action: tc.action, Detail: tc.detail, Key: "j/v/1/s/1"}
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(b, &fields); err != nil {
				t.Fatal(err)
			}
			if got := string(fields["detail"]); got != tc.json {
				t.Errorf("detail = %s, want %s", got, tc.json)
			}
			var back Action
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, a) {
				t.Errorf("read back %#v, want %#v", back, a)
			}
		})
	}
	t.Run("a record of an earlier version", func(t *testing.T) {
		old := `{"at":"2026-11-20T10:35:00Z","profile":"p1","journey":"cart","step":"pass","action":"pass_update","channel":"wallet","detail":{"fields":{"tier":"gold"},"push":"hi"},"key":"k"}`
		var a Action
		if err := json.Unmarshal([]byte(old), &a); err != nil {
			t.Fatal(err)
		}
		d, ok := a.Detail.(PassDetail)
		if !ok || d.Push != "hi" || d.Fields["tier"] != "gold" || a.Key != "k" || a.Channel != "wallet" {
			t.Errorf("read %#v", a)
		}
	})
	t.Run("an unknown kind", func(t *testing.T) {
		var a Action
		if err := json.Unmarshal([]byte(`{"action":"teleport","detail":{}}`), &a); err == nil {
			t.Errorf("read %#v, want an error", a)
		}
	})
}
