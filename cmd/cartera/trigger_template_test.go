package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// The example cart reminder names the product of the event that started
// the journey: the send carries the trigger's properties to the template.
func TestSendSeesTheTrigger(t *testing.T) {
	data := filepath.Join(t.TempDir(), "cartera.db")
	s := startServerAt(t, data, nil)
	// What this checks is the template, not the quiet hours: Vera lives
	// where it is noon on the gateway's clock, whatever hour the suite
	// runs at (make test-clock runs it at night in Madrid).
	tz := clocktest.NoonZone(s.clock.Now())
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"vera","traits":{"email":"vera@example.com","vip":true,"timezone":"`+tz+`","consent":{"email":true}}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"vera","event":"Product Added","properties":{"cart_id":"v1","name":"Trail Runner 2"}}`))
	outbox := filepath.Join(filepath.Dir(data), "outbox")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.ReplaceAll(string(b), "=\r\n", ""), "Trail Runner 2") {
				t.Fatalf("the reminder does not name the product:\n%s", b)
			}
			return
		}
		time.Sleep(10 * time.Millisecond) // the real clock runs the outbox
	}
	t.Fatal("no reminder written to the outbox folder")
}
