package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/eventlog"
)

// logAPI is an api over a real store and event log whose applier the test
// starts when it wants: until then everything acknowledged lags.
type logAPI struct {
	a     *api
	app   *fiber.App
	store *profiles.Store
	elog  *eventlog.Log
	clock *clocktest.Clock
}

// newLogAPI's sources are srcs, or one "web" source with the key do sends.
func newLogAPI(t *testing.T, lcfg profiles.LogConfig, srcs ...profiles.SourceConfig) *logAPI {
	t.Helper()
	dir := t.TempDir()
	clock := clocktest.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	pcfg := profiles.DefaultConfig()
	pcfg.Log = lcfg
	store, err := profiles.Open(context.Background(), filepath.Join(dir, "cartera.db"), pcfg, profiles.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Data: filepath.Join(dir, "cartera.db"), Profiles: pcfg}
	l, err := openEventLog(cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = store.Close()
		_ = l.Close()
	})
	if len(srcs) == 0 {
		srcs = []profiles.SourceConfig{{Name: "web", WriteKeys: []string{"web_key_0123456789"}}}
	}
	sources, err := profiles.NewSources(srcs)
	if err != nil {
		t.Fatal(err)
	}
	a := &api{store: store, sources: sources, metrics: profiles.NewMetrics(nil), log: slog.New(slog.DiscardHandler),
		now: clock.Now, newID: newMessageID, gather: prometheus.NewRegistry(), maxSkew: pcfg.MaxClockSkew, admin: newTokenCheck("admin-token")}
	app := fiber.New(fiber.Config{ErrorHandler: a.errorHandler})
	app.Post("/v1/batch", a.ingest(""))
	app.Get("/read", a.requireAdmin, func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"applied": store.AppliedOffset()})
	})
	a.metricsRoute(app)
	return &logAPI{a: a, app: app, store: store, elog: l, clock: clock}
}

func (la *logAPI) do(t *testing.T, method, path, body string) (int, string, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("web_key_0123456789", "")
	if path == "/read" || path == "/metrics" {
		req.Header.Set("Authorization", "Bearer admin-token")
	}
	resp, err := la.app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, resp.Header.Get("Retry-After"), m
}

const twoEvents = `{"batch":[{"type":"track","userId":"u1","event":"A"},{"type":"track","userId":"u1","event":"B"}]}`

// Past the lag bound, ingestion answers 503 with Retry-After and appends
// nothing; a read waits for what was acknowledged, and answers 503 when it
// is not applied in time; once applied, both work.
func TestIngestionBackpressureAndReadYourWrites(t *testing.T) {
	lcfg := profiles.DefaultLogConfig()
	lcfg.MaxLagEvents = 1
	lcfg.RetryAfter = 3 * time.Second
	la := newLogAPI(t, lcfg)

	status, _, body := la.do(t, "POST", "/v1/batch", twoEvents)
	if status != 200 || body["success"] != true || body["offset"] != 2.0 {
		t.Fatalf("first batch: %d %v", status, body)
	}
	status, retry, body := la.do(t, "POST", "/v1/batch", twoEvents)
	if status != 503 || retry != "3" || body["success"] != false || !strings.Contains(body["error"].(string), "behind ingestion") {
		t.Fatalf("batch while 2 events lag (bound 1): %d Retry-After %q %v", status, retry, body)
	}
	if got := la.elog.Committed(); got != 2 {
		t.Fatalf("the log holds %d events after a refused batch, want 2", got)
	}
	// Nobody applies: the read gives up after readWait.
	status, retry, body = la.do(t, "GET", "/read", "")
	if status != 503 || retry != "1" {
		t.Fatalf("read while unapplied: %d %q %v", status, retry, body)
	}
	// The metrics, which show the lag, answer at once all the same.
	if status, _, _ = la.do(t, "GET", "/metrics", ""); status != 200 {
		t.Fatalf("metrics while applying lags: %d, want 200", status)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { la.store.RunApplier(ctx) })
	defer func() { cancel(); wg.Wait() }()
	status, _, body = la.do(t, "GET", "/read", "")
	if status != 200 || body["applied"] != 2.0 {
		t.Fatalf("read once applying runs: %d %v", status, body)
	}
	status, _, body = la.do(t, "POST", "/v1/batch", twoEvents)
	if status != 200 || body["offset"] != 4.0 {
		t.Fatalf("batch once caught up: %d %v", status, body)
	}
	// A read right after the 200 sees it.
	if status, _, body = la.do(t, "GET", "/read", ""); status != 200 || body["applied"] != 4.0 {
		t.Fatalf("read after the second batch: %d %v", status, body)
	}
}

// A log that cannot write answers 503 and accepts nothing; a removed log
// directory starts again after the store's applied offset.
func TestEventLogStartsAfterAppliedOffset(t *testing.T) {
	la := newLogAPI(t, profiles.DefaultLogConfig())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { la.store.RunApplier(ctx) })
	if status, _, body := la.do(t, "POST", "/v1/batch", twoEvents); status != 200 {
		t.Fatalf("batch: %d %v", status, body)
	}
	if status, _, _ := la.do(t, "GET", "/read", ""); status != 200 {
		t.Fatal("read")
	}
	cancel()
	wg.Wait()
	_ = la.elog.Close()
	dir := eventLogDir(filepath.Join(filepath.Dir(la.store.DB().Path()), "cartera.db"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Data: la.store.DB().Path(), Profiles: profiles.DefaultConfig()}
	l, err := openEventLog(cfg, la.store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, _, err := l.Append(context.Background(), [][]byte{[]byte(`{}`)})
	if err != nil || first != 3 {
		t.Fatalf("first offset of a recreated log %d (%v), want 3", first, err)
	}
}

func TestRetentionTrimsOnlyAppliedAndOld(t *testing.T) {
	dir := t.TempDir()
	l, err := eventlog.Open(dir, eventlog.Options{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := []byte(strings.Repeat("x", 1000))
	for range 40 {
		if _, _, err := l.Append(context.Background(), [][]byte{rec}); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Segments()
	if len(segs) < 6 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	now := segs[0].ModTime.Add(time.Hour)
	cfg := profiles.DefaultLogConfig()
	cfg.Retention = 30 * time.Minute
	cfg.MaxBytes = 1 << 30

	// Old, but nothing applied: nothing goes.
	if n, err := retain(l, 0, cfg, now); err != nil || n != 0 {
		t.Fatalf("trim with nothing applied: %d %v", n, err)
	}
	// Applied through the second segment, but young: nothing goes.
	if n, _ := retain(l, segs[1].Last, cfg, segs[0].ModTime); n != 0 {
		t.Fatalf("trimmed %d young segments", n)
	}
	// Old and applied through the second: those two go, not the third.
	if n, _ := retain(l, segs[1].Last, cfg, now); n != 2 || l.Segments()[0].First != segs[2].First {
		t.Fatalf("trimmed %d, first kept %d; want 2 and %d", n, l.Segments()[0].First, segs[2].First)
	}
	// Young but over the size cap: applied ones go, oldest first, until
	// under it; the unapplied never.
	cfg.Retention = 24 * time.Hour
	cfg.MaxBytes = 1
	if n, _ := retain(l, segs[3].Last, cfg, segs[0].ModTime); n != 2 || l.Segments()[0].First != segs[4].First {
		t.Fatalf("size cap: trimmed %d, first kept %d; want 2 and %d", n, l.Segments()[0].First, segs[4].First)
	}
}

// A store behind the log's first kept offset (a backup restored after its
// events were trimmed) refuses to start instead of waiting forever.
func TestEventLogTrimmedPastTheStoreRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "cartera.db")
	l, err := eventlog.Open(eventLogDir(data), eventlog.Options{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, _, err := l.Append(context.Background(), [][]byte{[]byte(strings.Repeat("x", 1000))}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.Trim(l.Segments()[1].First); err != nil || n != 1 {
		t.Fatalf("trim: %d %v", n, err)
	}
	_ = l.Close()
	store, err := profiles.Open(context.Background(), data, profiles.DefaultConfig(), profiles.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = openEventLog(&Config{Data: data, Profiles: profiles.DefaultConfig()}, store, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "were trimmed") {
		t.Fatalf("open a log trimmed past the store: %v", err)
	}
}

// failingFile fails every write while full is set, as a full disk does.
type failingFile struct {
	eventlog.File
	full *atomic.Bool
}

func (f failingFile) WriteAt(b []byte, off int64) (int, error) {
	if f.full.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(b, off)
}

// A full disk: ingestion answers 503 with Retry-After and accepts nothing;
// what was acknowledged before is kept and applied, and ingestion recovers
// by itself when space returns.
func TestFullDiskAnswers503AndRecovers(t *testing.T) {
	dir := t.TempDir()
	store, err := profiles.Open(context.Background(), filepath.Join(dir, "cartera.db"), profiles.DefaultConfig(), profiles.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	l, err := eventlog.Open(filepath.Join(dir, "cartera.db.log"), eventlog.Options{OpenFile: func(name string, flag int, perm os.FileMode) (eventlog.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return failingFile{f, &full}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AttachLog(l); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { store.RunApplier(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = store.Close()
		_ = l.Close()
	})
	sources, _ := profiles.NewSources([]profiles.SourceConfig{{Name: "web", WriteKeys: []string{"web_key_0123456789"}}})
	a := &api{store: store, sources: sources, metrics: profiles.NewMetrics(nil), log: slog.New(slog.DiscardHandler),
		now: time.Now, newID: newMessageID, maxSkew: profiles.DefaultMaxSkew, admin: newTokenCheck("admin-token")}
	app := fiber.New(fiber.Config{ErrorHandler: a.errorHandler})
	app.Post("/v1/batch", a.ingest(""))
	app.Get("/read", a.requireAdmin, func(c *fiber.Ctx) error {
		p, err := store.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "u1"})
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"events": p.EventCount})
	})
	la := &logAPI{a: a, app: app, store: store, elog: l}

	if status, _, body := la.do(t, "POST", "/v1/batch", twoEvents); status != 200 {
		t.Fatalf("batch before the disk filled: %d %v", status, body)
	}
	full.Store(true)
	for range 3 {
		status, retry, body := la.do(t, "POST", "/v1/batch", twoEvents)
		if status != 503 || retry != "5" || body["success"] != false {
			t.Fatalf("batch on a full disk: %d Retry-After %q %v", status, retry, body)
		}
	}
	if status, _, body := la.do(t, "GET", "/read", ""); status != 200 || body["events"] != 2.0 {
		t.Fatalf("read while the disk is full: %d %v, want the 2 acknowledged events", status, body)
	}
	full.Store(false)
	if status, _, body := la.do(t, "POST", "/v1/batch", twoEvents); status != 200 || body["offset"] != 4.0 {
		t.Fatalf("batch once space returned: %d %v", status, body)
	}
	if status, _, body := la.do(t, "GET", "/read", ""); status != 200 || body["events"] != 4.0 {
		t.Fatalf("read after recovery: %d %v, want 4 events", status, body)
	}
}

// In cluster mode (one node following the whole stream) retention trims
// the stream below what the store applied, as it does the local log:
// nothing while nothing is applied, nothing young, then every applied
// record once old; the store then goes on from where it was.
func TestClusterRetentionTrimsTheStream(t *testing.T) {
	ns := startNATS(t)
	data := filepath.Join(t.TempDir(), "cartera.db")
	store, err := profiles.Open(t.Context(), data, profiles.DefaultConfig(), profiles.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := &Config{Data: data, Profiles: profiles.DefaultConfig(), Cluster: DefaultClusterConfig()}
	cfg.Cluster.URL = ns.url()
	elog, err := openLog(t.Context(), cfg, store, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer elog.close()
	var events []*profiles.Event
	for i := range 5 {
		events = append(events, &profiles.Event{Type: profiles.TypeTrack, Event: "Viewed", UserID: "ann", MessageID: "m" + string(rune('0'+i)), Timestamp: time.Now()})
	}
	last, err := store.Append(t.Context(), events)
	if err != nil {
		t.Fatal(err)
	}
	lcfg := profiles.DefaultLogConfig()
	lcfg.Retention = time.Hour
	trim := elog.retain(store, lcfg)
	first := func() uint64 {
		f, err := elog.cluster.FirstOffset(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if removed, err := trim(t.Context(), time.Now().Add(2*time.Hour)); err != nil || removed != "" || first() != 1 {
		t.Fatalf("nothing applied: removed %q (%v), first %d", removed, err, first())
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { store.RunApplier(ctx) })
	defer func() { cancel(); wg.Wait() }()
	if err := store.WaitApplied(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if removed, err := trim(t.Context(), time.Now()); err != nil || removed != "" || first() != 1 {
		t.Fatalf("applied but young: removed %q (%v), first %d", removed, err, first())
	}
	if removed, err := trim(t.Context(), time.Now().Add(2*time.Hour)); err != nil || removed != "5 records of the stream" || first() != last+1 {
		t.Fatalf("applied and old: removed %q (%v), first %d; want 5 records, first %d", removed, err, first(), last+1)
	}
	more, err := store.Append(t.Context(), events[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WaitApplied(t.Context(), more); err != nil {
		t.Fatal(err)
	}
}

// profiles.log.dir puts the event log in a folder of its own (another
// device, in production): serve writes its segments there and none beside
// the data file. Set for a store whose log is still beside it, serve
// refuses to start, naming both places (a new log there would lose what
// was not applied); once the files are moved, it starts and has all.
func TestEventLogDir(t *testing.T) {
	dir := t.TempDir()
	data, elsewhere := filepath.Join(dir, "cartera.db"), filepath.Join(t.TempDir(), "wal")
	s := startServerAt(t, data, map[string]string{"CARTERA_LOG_DIR": elsewhere})
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u1","event":"Logged Elsewhere"}`))
	if p := s.profile(t, "user_id:u1"); len(eventsNamed(p, "Logged Elsewhere")) != 1 {
		t.Fatalf("profile: %v", p["events"])
	}
	s.stopNow(t)
	if segs, _ := filepath.Glob(filepath.Join(elsewhere, "*")); len(segs) == 0 {
		t.Errorf("no segment in %s", elsewhere)
	}
	if _, err := os.Stat(eventLogDir(data)); !os.IsNotExist(err) {
		t.Errorf("a log beside the data file too (%v)", err)
	}

	// A store whose log is beside it, then the setting.
	data2 := filepath.Join(t.TempDir(), "cartera.db")
	s = startServerAt(t, data2, nil)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u2","event":"Logged Beside"}`))
	s.stopNow(t)
	moved := filepath.Join(t.TempDir(), "wal")
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken, "CARTERA_LOG_DIR": moved})}
	err := m.Run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--data", data2, "--config", "../../examples/cartera.yaml"})
	if err == nil || !strings.Contains(err.Error(), "profiles.log.dir: the event log is at "+eventLogDir(data2)+" and the setting says "+moved) {
		t.Fatalf("the setting with the log still beside the store: %v", err)
	}
	if err := os.Rename(eventLogDir(data2), moved); err != nil {
		t.Fatal(err)
	}
	s = startServerAt(t, data2, map[string]string{"CARTERA_LOG_DIR": moved})
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u2","event":"After The Move"}`))
	p := s.profile(t, "user_id:u2")
	if len(eventsNamed(p, "Logged Beside")) != 1 || len(eventsNamed(p, "After The Move")) != 1 {
		t.Fatalf("after the move: %v", p["events"])
	}
}
