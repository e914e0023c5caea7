package journeys

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

const keyedByOrder = `
id: review_request
trigger: {event: Order Delivered}
entry:
  key: string(trigger.properties.order_id)
steps:
  - id: ask
    send: {channel: email, template: review}
`

// A condition or value that fails to evaluate is an error action naming
// the journey, the field, the expression, CEL's message and the event; it
// is counted per journey and logged, at most once a minute per field.
func TestEvalErrorsAreReported(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"review.yaml": keyedByOrder})
	var logs bytes.Buffer
	h.engine.log = slog.New(slog.NewJSONHandler(&logs, nil))
	pid := h.track("ana", "Order Delivered", map[string]any{"carrier": "UPS"})
	errs := h.actions(ActError, pid)
	if len(errs) != 1 {
		t.Fatalf("error actions: %s", describe(errs))
	}
	d := errs[0].Detail.(ErrorDetail)
	if errs[0].Journey != "review_request" || d.Field != "entry.key" || d.Expression != "string(trigger.properties.order_id)" ||
		!strings.Contains(d.Error, "order_id") || d.Event != "Order Delivered" {
		t.Errorf("error action = %+v %+v", errs[0], d)
	}
	if n := len(h.actions(ActEnter, pid)); n != 0 {
		t.Errorf("entered %d times on a key that failed", n)
	}
	if got := h.count("review_request", "", "eval_errors"); got != 1 {
		t.Errorf("eval_errors = %d, want 1", got)
	}
	h.track("bea", "Order Delivered", nil)
	if got := h.count("review_request", "", "eval_errors"); got != 2 {
		t.Errorf("eval_errors after a second = %d, want 2", got)
	}
	lines := strings.Count(logs.String(), `"msg":"journey condition failed to evaluate"`)
	if lines != 1 || !strings.Contains(logs.String(), `"journey":"review_request"`) || !strings.Contains(logs.String(), `"field":"entry.key"`) {
		t.Errorf("want one WARN line naming the journey and field (the second within a minute is held):\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "UPS") {
		t.Errorf("the log line holds the event's data:\n%s", logs.String())
	}
}
