package main

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A store written by the head before the event log existed (testdata/
// upgrade/head-a5e227d.db.gz: six events through `cartera serve` of commit
// a5e227d, among them an alias that merged two profiles) starts with the
// event log without loss: every profile and event is there, its messageIds
// still deduplicate, and new events are acknowledged on the log from
// offset 1 and applied.
func TestUpgradeFromStoreWithoutEventLog(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "cartera.db")
	gunzipTo(t, "testdata/upgrade/head-a5e227d.db.gz", data)
	s := startServerAt(t, data, nil)

	r := s.admin(t, "GET", "/v1/profiles/email:up1@example.com?events=100")
	if r.status != 200 {
		t.Fatalf("profile written by the old head: %d %s", r.status, r.raw)
	}
	if got := eventIDs(r.body); len(got) != 4 || got["up-1"] == 0 || got["up-3"] == 0 || got["up-4"] == 0 {
		t.Fatalf("old profile's events %v, want up-1..up-4", got)
	}
	if traits, _ := r.body["traits"].(map[string]any); traits["plan"] != "gold" {
		t.Fatalf("old profile's traits %v", r.body["traits"])
	}
	if r := s.admin(t, "GET", "/v1/profiles/user_id:up-user-2?events=100"); r.status != 200 || len(eventIDs(r.body)) != 2 {
		t.Fatalf("second old profile: %d %s", r.status, r.raw)
	}

	// A retry of an old messageId is accepted and not applied again; a
	// new event goes through the log from offset 1.
	dup := s.send(t, "web_dev_write_key", "/v1/track", `{"messageId":"up-2","userId":"up-user-1","event":"Product Viewed","properties":{"sku":"A1"}}`)
	mustOK(t, dup)
	if dup.body["offset"] != 1.0 {
		t.Fatalf("first offset after the upgrade: %s", dup.raw)
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"messageId":"up-7","userId":"up-user-1","event":"Product Viewed","properties":{"sku":"B2"}}`))
	r = s.admin(t, "GET", "/v1/profiles/user_id:up-user-1?events=100")
	got := eventIDs(r.body)
	if got["up-2"] != 1 || got["up-7"] != 1 {
		t.Fatalf("after the upgrade: events %v, want up-2 once and up-7", got)
	}
}

// eventIDs counts the messageIds of a profile view's events.
func eventIDs(body map[string]any) map[string]int {
	out := map[string]int{}
	evs, _ := body["events"].([]any)
	for _, e := range evs {
		if m, ok := e.(map[string]any); ok {
			id, _ := m["messageId"].(string)
			out[id]++
		}
	}
	return out
}

func gunzipTo(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
