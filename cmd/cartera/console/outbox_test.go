package console

import (
	"strings"
	"testing"
	"time"

	"cartera/channels"
	"cartera/internal/clocktest"
)

// flying is the console's Outbox with messages in flight.
type flying struct {
	queues
	inflight []channels.InFlight
}

func (f flying) InFlight(limit int) []channels.InFlight {
	out := append([]channels.InFlight(nil), f.inflight...)
	return out[:min(limit, len(out))]
}

// TestOutboxInFlight: the Outbox page lists the messages workers hold,
// with the error of their last try masked for a viewer, and says when
// there is none.
func TestOutboxInFlight(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	ob := flying{queues: queues{sizes: channels.Sizes{Queued: map[string]int{"email": 1}}}, inflight: []channels.InFlight{
		{Message: channels.Message{Seq: 7, Destination: "email", ProfileID: "p-ana", Journey: "cart", Step: "remind", Attempts: 1,
			LastError: "451 try later for ana@example.com"}, Since: clock.Now().Add(-3 * time.Second)},
		{Message: channels.Message{Seq: 9, Destination: "meta:retargeting", ProfileID: "p-bo"}, Since: clock.Now()},
	}}
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.Outbox = ob })
	_, page := r.get(t, RoleMarketer, "/console/outbox")
	if !strings.Contains(page, "In flight (2)") {
		t.Errorf("the page does not count 2 in flight:\n%s", page)
	}
	i := strings.Index(page, `<tr data-seq="7">`)
	if i < 0 {
		t.Fatalf("message 7 is not listed in flight:\n%s", page)
	}
	row := page[i : i+strings.Index(page[i:], "</tr>")]
	for _, want := range []string{"<td>email</td>", "cart remind", "p-ana", `<td class="since">2026-12-06 09:59:57Z</td>`, "451 try later for ana@example.com"} {
		if !strings.Contains(row, want) {
			t.Errorf("in-flight row %s lacks %s", row, want)
		}
	}
	if !strings.Contains(page, `<tr data-seq="9">`) {
		t.Error("message 9 is not listed in flight")
	}
	if _, page = r.get(t, RoleViewer, "/console/outbox"); strings.Contains(page, "ana@example.com") || !strings.Contains(page, "a***@example.com") {
		t.Error("a viewer sees the address in an in-flight message's error")
	}
	r2 := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.Outbox = queues{} })
	if _, page = r2.get(t, RoleViewer, "/console/outbox"); !strings.Contains(page, "In flight (0)") || !strings.Contains(page, "Nothing is being delivered right now.") {
		t.Error("an idle outbox does not say nothing is in flight")
	}
}
