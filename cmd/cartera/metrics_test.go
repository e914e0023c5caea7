package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMetricsAddr serves /metrics on a listener of its own: there without a
// token, and the main listener answers 404 even with the admin token.
func TestMetricsAddr(t *testing.T) {
	vars := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken, "CARTERA_LOG_LEVEL": "warn", "CARTERA_METRICS_ADDR": "127.0.0.1:0"}
	withTestClock(t, vars)
	addr, maddr := make(chan string, 1), make(chan string, 1)
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(vars),
		OnListen: func(a string) { addr <- a }, OnMetricsListen: func(a string) { maddr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "c.db"), "--config", "../../examples/cartera.yaml"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var s *server
	var metrics string
	for s == nil || metrics == "" {
		select {
		case a := <-addr:
			s = &server{base: "http://" + a}
		case a := <-maddr:
			metrics = "http://" + a + "/metrics"
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		case <-time.After(startTimeout):
			t.Fatal("server did not start")
		}
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"m1","event":"Product Viewed"}`))
	if r := s.admin(t, "GET", "/metrics"); r.status != 404 || strings.Contains(r.raw, "cartera_") {
		t.Errorf("main listener /metrics with metrics_addr set: %d %.200s, want 404", r.status, r.raw)
	}
	// The counter moves when the event is applied, a moment after its 200.
	const want = `cartera_events_accepted_total{source="web",type="track"} 1`
	eventually(t, startTimeout, "200 with "+want+" from the metrics listener", func() bool {
		resp, err := http.Get(metrics)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(b), want)
	})
}
