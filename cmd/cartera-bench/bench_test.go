package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"cartera/internal/sdktest"
)

var bin string

func TestMain(m *testing.M) { sdktest.Main(m, &bin) }

// TestSeedServeLoadLookup runs the tool as a user does: seed a store,
// serve it with the bench config, drive it with both load modes for a
// moment, and look people up. Every request must be accepted.
func TestSeedServeLoadLookup(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "bench.db")
	var out, errs bytes.Buffer
	if err := run(ctx, []string{"seed", "--data", data, "--config", "testdata/cartera.yaml", "--profiles", "500", "--batch", "200"}, &out, &errs); err != nil {
		t.Fatalf("seed: %v\n%s", err, errs.String())
	}
	config, err := filepath.Abs("testdata/cartera.yaml") // serve runs in another folder
	if err != nil {
		t.Fatal(err)
	}
	// The seed writes its people at the wall clock's time, and the load
	// measures wall-clock rates: this gateway runs on the wall clock, not
	// on CARTERA_TEST_CLOCK (nothing here depends on the hour).
	srv := sdktest.Start(t, bin, sdktest.Options{Data: data, Config: config, Env: map[string]string{"CARTERA_LOG_LEVEL": "info", "CARTERA_DEV_CLOCK": "0"}})
	if p := srv.MustProfile(t, "user_id:u-42", 0); p.ID == "" {
		t.Fatal("a seeded person is missing")
	}

	accepted := regexp.MustCompile(`accepted: (\d+) events/s`)
	for _, mode := range []string{"batch", "track"} {
		out.Reset()
		errs.Reset()
		args := []string{"load", "--url", srv.URL(), "--mode", mode, "--clients", "2", "--people", "500", "--batch", "20", "--warmup", "100ms", "--duration", "700ms", "--admin-token", sdktest.AdminToken}
		if err := run(ctx, args, &out, &errs); err != nil {
			t.Fatalf("load %s: %v\n%s", mode, err, errs.String())
		}
		m := accepted.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("load %s printed no rate:\n%s", mode, out.String())
		}
		if n, _ := strconv.Atoi(m[1]); n == 0 {
			t.Errorf("load %s: nothing accepted:\n%s", mode, out.String())
		}
		if !bytes.Contains(out.Bytes(), []byte("errors: 0 requests")) {
			t.Errorf("load %s had errors:\n%s", mode, out.String())
		}
		if !bytes.Contains(out.Bytes(), []byte("event log (warm-up included")) {
			t.Errorf("load %s printed nothing of the event log:\n%s", mode, out.String())
		}
		if !bytes.Contains(out.Bytes(), []byte("event → first journey action committed")) {
			t.Errorf("load %s printed no journey latency:\n%s", mode, out.String())
		}
	}

	// The loads' events may still be being applied, and a read waits for
	// them (2 s at most, then 503 for the client to retry): the lookups
	// measure reads, so they start once a read has found applying caught
	// up (make test runs this beside every other package).
	for deadline := time.Now().Add(time.Minute); ; {
		if _, status := srv.GetProfile(t, "user_id:u-42", 0); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("applying the loads' events did not catch up within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out.Reset()
	if err := run(ctx, []string{"lookup", "--url", srv.URL(), "--admin-token", sdktest.AdminToken, "--people", "500", "--requests", "50"}, &out, &errs); err != nil {
		t.Fatalf("lookup: %v\n%s", err, errs.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("not found 0, failed 0")) {
		t.Errorf("lookup missed seeded people: %s", out.String())
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := summarize(d)
	if s := p.String(); !regexp.MustCompile(`p50 50ms p90 90ms p99 99ms max 100ms`).MatchString(s) {
		t.Errorf("summary = %q", s)
	}
}
