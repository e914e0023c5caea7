package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

const testAdminToken = "test-admin-token-0123456789"

// server is a gateway running in-process on a random port.
type server struct {
	base string
	data string
	// clock is the gateway's dev clock as the test sees it (nil when the
	// test turned the dev clock off).
	clock *clocktest.Running
	// stop ends serve and waits for it (once; the test's cleanup calls
	// it too).
	stop func()
}

// stopNow ends serve before the test does, failing the test if serve
// ended with an error.
func (s *server) stopNow(tb testing.TB) {
	tb.Helper()
	s.stop()
}

// testClock returns the clock a test's gateway starts on: the instant of
// CARTERA_TEST_CLOCK (make test-clock) or the wall clock. Tests never
// depend on the hour it is.
func testClock(tb testing.TB) *clocktest.Running {
	tb.Helper()
	start, err := clocktest.Start()
	if err != nil {
		tb.Fatal(err)
	}
	return clocktest.NewRunning(start)
}

// withTestClock sets CARTERA_DEV_CLOCK in vars to the test clock unless the
// test turned the dev clock off ("0"), and returns that clock.
func withTestClock(tb testing.TB, vars map[string]string) *clocktest.Running {
	tb.Helper()
	switch vars["CARTERA_DEV_CLOCK"] {
	case "0", "false":
		return nil
	case "", "1", "true":
		c := testClock(tb)
		vars["CARTERA_DEV_CLOCK"] = c.DevClockEnv()
		return c
	default:
		start, err := time.Parse(time.RFC3339, vars["CARTERA_DEV_CLOCK"])
		if err != nil {
			tb.Fatal(err)
		}
		return clocktest.NewRunning(start)
	}
}

// startServer runs `cartera serve` in-process with the example config and
// stops it when the test ends.
func startServer(tb testing.TB, env map[string]string) *server {
	tb.Helper()
	return startServerAt(tb, filepath.Join(tb.TempDir(), "cartera.db"), env)
}

// startServerAt is startServer with the bbolt file at data.
func startServerAt(tb testing.TB, data string, env map[string]string) *server {
	tb.Helper()
	return startServerLogged(tb, data, env, io.Discard)
}

// startServerLogged is startServerAt with the server's log written to stderr.
func startServerLogged(tb testing.TB, data string, env map[string]string, stderr io.Writer) *server {
	tb.Helper()
	return startServerConfig(tb, data, "../../examples/cartera.yaml", env, stderr)
}

// startServerConfig is startServerLogged with another config file.
func startServerConfig(tb testing.TB, data, config string, env map[string]string, stderr io.Writer) *server {
	tb.Helper()
	return startServerMain(tb, data, config, env, stderr, nil)
}

// startServerMain is startServerConfig with setup called on the Main
// before it runs (nil: none).
func startServerMain(tb testing.TB, data, config string, env map[string]string, stderr io.Writer, setup func(*Main)) *server {
	tb.Helper()
	vars := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken, "CARTERA_LOG_LEVEL": "warn"}
	for k, v := range env {
		vars[k] = v
	}
	clock := withTestClock(tb, vars)
	addr := make(chan string, 1)
	m := &Main{Stdout: io.Discard, Stderr: stderr, Getenv: envOf(vars), OnListen: func(a string) { addr <- a }}
	if setup != nil {
		setup(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--config", config})
	}()
	select {
	case a := <-addr:
		stop := sync.OnceFunc(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
		})
		tb.Cleanup(stop)
		return &server{base: "http://" + a, data: data, clock: clock, stop: stop}
	case err := <-done:
		cancel()
		tb.Fatalf("serve exited: %v", err)
	case <-time.After(startTimeout):
		cancel()
		tb.Fatal("server did not start")
	}
	return nil
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (s *server) do(tb testing.TB, method, path string, header map[string]string, body []byte) reply {
	tb.Helper()
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (s *server) send(tb testing.TB, key, path, body string) reply {
	tb.Helper()
	req := map[string]string{"Content-Type": "application/json"}
	if key != "" {
		req["Authorization"] = basic(key)
	}
	return s.do(tb, "POST", path, req, []byte(body))
}

func (s *server) admin(tb testing.TB, method, path string) reply {
	tb.Helper()
	return s.do(tb, method, path, map[string]string{"Authorization": "Bearer " + testAdminToken}, nil)
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

func mustOK(tb testing.TB, r reply) {
	tb.Helper()
	if r.status != 200 || r.body["success"] != true {
		tb.Fatalf("status %d, body %s", r.status, r.raw)
	}
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1","traits":{"name":"Ana"}}`))
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"none", "", 401},
		{"wrong token", "Bearer wrong-token-0123456789", 401},
		{"basic instead of bearer", basic(testAdminToken), 401},
		{"write key as bearer", "Bearer web_dev_write_key", 401},
		{"right token", "Bearer " + testAdminToken, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.header != "" {
				h["Authorization"] = tc.header
			}
			r := s.do(t, "GET", "/v1/profiles/user_id:u1", h, nil)
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d (%s)", r.status, tc.want, r.raw)
			}
			if tc.want == 401 && (r.body["success"] != false || r.body["error"] == "") {
				t.Fatalf("401 body = %s", r.raw)
			}
		})
	}
}

func TestProfileLookupErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	tests := []struct {
		path, want string
		status     int
	}{
		{"/v1/profiles/user_id:nobody", "no profile holds that identifier", 404},
		{"/v1/profiles/shoe_size:42", `unknown identifier kind "shoe_size"`, 400},
		{"/v1/profiles/justtext", "identifier: want kind:value", 400},
		{"/v1/profiles/user_id:x?events=-1", "events: want a count >= 0", 400},
	}
	for _, tc := range tests {
		r := s.admin(t, "GET", tc.path)
		if r.status != tc.status || !strings.Contains(fmt.Sprint(r.body["error"]), tc.want) {
			t.Errorf("GET %s = %d %s, want %d with %q", tc.path, r.status, r.raw, tc.status, tc.want)
		}
	}
}

func TestIngestVariants(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	// writeKey in the body, as some SDKs send it.
	mustOK(t, s.send(t, "", "/v1/track", `{"writeKey":"app_dev_write_key","anonymousId":"dev-9","event":"Cart Viewed"}`))
	// gzip body.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(`{"batch":[{"type":"identify","anonymousId":"dev-9","userId":"u9","traits":{"email":"Nine@Example.com"}},{"type":"page","userId":"u9","name":"Home"}]}`))
	_ = zw.Close()
	r := s.do(t, "POST", "/v1/batch", map[string]string{"Authorization": basic("web_dev_write_key"), "Content-Encoding": "gzip"}, zb.Bytes())
	mustOK(t, r)

	p := s.admin(t, "GET", "/v1/profiles/email:nine@example.com")
	if p.status != 200 {
		t.Fatalf("lookup: %d %s", p.status, p.raw)
	}
	events := p.body["events"].([]any)
	if len(events) != 3 {
		t.Fatalf("events = %d, want 3: %s", len(events), p.raw)
	}
	sources := map[string]bool{}
	for _, e := range events {
		sources[e.(map[string]any)["source"].(string)] = true
	}
	if !sources["app"] || !sources["web"] {
		t.Errorf("sources = %v, want app and web", sources)
	}
	if got := p.body["traits"].(map[string]any)["email"]; got != "nine@example.com" {
		t.Errorf("traits.email = %v, want the normalized address", got)
	}

	// A gzip body that inflates past the batch limit is refused, not read.
	zb.Reset()
	zw = gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(`{"batch":[{"type":"track","userId":"u9","event":"x","properties":{"pad":"` + strings.Repeat("a", 600<<10) + `"}}]}`))
	_ = zw.Close()
	r = s.do(t, "POST", "/v1/batch", map[string]string{"Authorization": basic("web_dev_write_key"), "Content-Encoding": "gzip"}, zb.Bytes())
	if r.status != 413 {
		t.Errorf("gzip bomb: status %d %s, want 413", r.status, r.raw)
	}
}

func TestEraseAndExport(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"anonymousId":"a-erase","userId":"u-erase","traits":{"email":"erase@example.com","name":"Eve"}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u-erase","event":"Product Viewed"}`))

	ex := s.admin(t, "GET", "/v1/profiles/email:erase@example.com/export")
	if ex.status != 200 {
		t.Fatalf("export: %d %s", ex.status, ex.raw)
	}
	prof := ex.body["profile"].(map[string]any)
	if n := len(prof["events"].([]any)); n != 2 {
		t.Fatalf("export events = %d, want 2", n)
	}
	oldID := prof["id"].(string)

	r := s.admin(t, "DELETE", "/v1/profiles/user_id:u-erase?drop_later=false")
	if r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.raw)
	}
	for _, id := range []string{"email:erase@example.com", "user_id:u-erase", "anonymous_id:a-erase", "profile_id:" + oldID} {
		if g := s.admin(t, "GET", "/v1/profiles/"+id); g.status != 404 {
			t.Errorf("after erase, GET %s = %d, want 404", id, g.status)
		}
	}
	// A later event starts a new, empty profile: the old traits do not come back.
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u-erase","event":"Product Viewed"}`))
	g := s.admin(t, "GET", "/v1/profiles/user_id:u-erase")
	if g.status != 200 {
		t.Fatalf("new profile: %d", g.status)
	}
	if g.body["id"] == oldID || len(g.body["traits"].(map[string]any)) != 0 || len(g.body["events"].([]any)) != 1 {
		t.Errorf("old data revived: %s", g.raw)
	}

	// With drop_later, later events of the person are not stored at all.
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:u-erase?drop_later=true"); r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.raw)
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u-erase","event":"Product Viewed"}`))
	if g := s.admin(t, "GET", "/v1/profiles/user_id:u-erase"); g.status != 404 {
		t.Errorf("after erase with drop_later, event stored: %d %s", g.status, g.raw)
	}
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:u-erase?drop_later=maybe"); r.status != 400 || !strings.Contains(r.raw, "drop_later") {
		t.Errorf("bad drop_later: %d %s", r.status, r.raw)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"m1","event":"Product Viewed"}`))
	s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"m1","event":"Order Completed","properties":{"revenue":"x"}}`)
	s.send(t, "nope_nope_nope", "/v1/track", `{"anonymousId":"m1","event":"x"}`)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"anonymousId":"m1","userId":"mu1"}`))

	if r := s.do(t, "GET", "/healthz", nil, nil); r.status != 200 || r.body["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.status, r.raw)
	}
	if r := s.do(t, "GET", "/metrics", nil, nil); r.status != 401 || strings.Contains(r.raw, "cartera_") {
		t.Fatalf("metrics without the admin token: %d %.200s, want 401", r.status, r.raw)
	}
	// An admin read waits until what was acknowledged is applied; the
	// metrics themselves never wait (they must answer while lagging).
	if g := s.admin(t, "GET", "/v1/profiles/user_id:mu1"); g.status != 200 {
		t.Fatalf("profile: %d %s", g.status, g.raw)
	}
	r := s.admin(t, "GET", "/metrics")
	for _, want := range []string{
		`cartera_events_accepted_total{source="web",type="track"} 1`,
		`cartera_eventlog_appended_offset 2`,
		`cartera_eventlog_applied_offset 2`,
		`cartera_eventlog_lag_events 0`,
		`cartera_eventlog_lag_seconds 0`,
		`cartera_events_accepted_total{source="web",type="identify"} 1`,
		`cartera_events_rejected_total{reason="invalid",source="web"} 1`,
		`cartera_events_rejected_total{reason="unauthorized",source="unknown"} 1`,
		`cartera_profiles 1`,
		`cartera_store_pages_written_total`,
		`cartera_commit_duration_seconds_count`,
		`cartera_profile_merges_total 0`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDuplicateMessageOverHTTP(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	body := `{"messageId":"m-dup-1","userId":"dup","event":"Product Viewed"}`
	for i := 0; i < 3; i++ {
		mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", body))
	}
	g := s.admin(t, "GET", "/v1/profiles/user_id:dup")
	if n := len(g.body["events"].([]any)); n != 1 {
		t.Fatalf("events = %d after 3 sends of one messageId, want 1", n)
	}
}

// BenchmarkIngestHTTP measures the whole path: HTTP, auth, decode, group
// commit with fsync, identity resolution. Each op is one /v1/batch of 100
// events from parallel clients.
func BenchmarkIngestHTTP(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			// One client flooding one key: the rate limits would measure themselves.
			s := startServer(b, map[string]string{"CARTERA_LIMITS": "off"})
			var mu sync.Mutex
			seq := 0
			next := func() int { mu.Lock(); defer mu.Unlock(); seq++; return seq }
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			b.ReportAllocs()
			b.SetParallelism(8)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var buf bytes.Buffer
				for pb.Next() {
					buf.Reset()
					buf.WriteString(`{"batch":[`)
					for i := 0; i < size; i++ {
						n := next()
						if i > 0 {
							buf.WriteByte(',')
						}
						fmt.Fprintf(&buf, `{"type":"track","messageId":"m%d","anonymousId":"anon-%d","event":"Product Viewed","properties":{"product_id":"p%d","price":10}}`, n, n%10000, n%50)
					}
					buf.WriteString(`]}`)
					req, _ := http.NewRequest("POST", s.base+"/v1/batch", bytes.NewReader(buf.Bytes()))
					req.Header.Set("Authorization", basic("web_dev_write_key"))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// An identifier may hold any character: the admin API takes it
// percent-encoded, so a person with a '/' in their id can still be erased.
func TestIdentifierWithSlash(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"crm/42","traits":{"name":"Slash"}}`))
	if r := s.admin(t, "GET", "/v1/profiles/user_id:crm%2F42"); r.status != 200 || r.body["traits"].(map[string]any)["name"] != "Slash" {
		t.Fatalf("GET: %d %s", r.status, r.raw)
	}
	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:crm%2F42"); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	if r := s.admin(t, "GET", "/v1/profiles/user_id:crm%2F42"); r.status != 404 {
		t.Fatalf("after erase: %d %s", r.status, r.raw)
	}
}

// A body over the batch limit gets a clean 413 from the handler.
func TestOversizeBodyGets413(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	body := `{"batch":[{"type":"track","userId":"u","event":"x","properties":{"pad":"` + strings.Repeat("a", 600<<10) + `"}}]}`
	r := s.send(t, "web_dev_write_key", "/v1/batch", body)
	if r.status != 413 || r.body["success"] != false || !strings.Contains(fmt.Sprint(r.body["error"]), "limit 512000") {
		t.Fatalf("status %d %s", r.status, r.raw)
	}
}

// startTimeout bounds how long a test waits for serve to listen: a
// failure bound, generous for a loaded machine running -race, not a
// measure of start-up time.
const startTimeout = time.Minute
