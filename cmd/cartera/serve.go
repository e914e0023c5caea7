package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"cartera/profiles"
)

// serve runs the gateway until ctx ends, then drains in-flight requests and
// closes the store.
func (m *Main) serve(ctx context.Context, args []string) error {
	var flagErr bytes.Buffer
	f, err := parseServeFlags(args, &flagErr)
	if err != nil {
		_, _ = io.Copy(m.Stderr, &flagErr)
		return err
	}
	cfg, err := loadConfig(f, m.Getenv)
	if err != nil {
		return err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(m.Stderr, &slog.HandlerOptions{Level: lvl}))

	if m.Getenv("GOGC") == "" {
		// The live heap is small (profiles live in the mapped file) and
		// the single committer shares two cores with the collector: trade
		// some memory for less collection.
		debug.SetGCPercent(400)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sources, err := profiles.NewSources(cfg.Sources)
	if err != nil {
		return err
	}
	defs, err := compileDefinitions(cfg)
	if err != nil {
		return loadErrors("load definitions", err)
	}
	now := time.Now
	var clock *devClock
	if cfg.DevClock || !cfg.DevClockStart.IsZero() {
		clock = newDevClock(cfg.DevClockStart, time.Now)
		now = clock.Now
		log.Warn("dev clock on: POST /v1/admin/clock moves time forward for every engine; never run a deployment like this", "now", clock.Now().Format(time.RFC3339))
	}
	if cfg.Cluster.Node != "" {
		return m.serveNode(ctx, nodeDeps{cfg: cfg, defs: defs, sources: sources, log: log, reg: reg, now: now, clock: clock})
	}
	core, err := openApp(ctx, cfg, defs, appOptions{Now: now, Logger: log, Registry: reg, Deliver: true, Getenv: m.Getenv, Trust: sources})
	if err != nil {
		return err
	}
	defer func() {
		if err := core.close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	if err := removeStale(cfg.Data, backupPattern); err != nil {
		log.Warn("remove backup snapshots left by a crash", "err", err)
	}
	store, engine := core.store, core.rules
	elog, err := openLog(ctx, cfg, store, sources, reg, log)
	if err != nil {
		return err
	}
	if elog.index != nil {
		core.index = elog.index
	}
	defer func() {
		if err := elog.close(); err != nil {
			log.Error("close event log", "err", err)
		}
	}()
	// The applier stops after the requests have drained (reads waiting
	// for it see their events), before the log and the store close.
	applyCtx, stopApply := context.WithCancel(context.WithoutCancel(ctx))
	var applying sync.WaitGroup
	applying.Go(func() {
		if m.holdApply != nil {
			select {
			case <-m.holdApply:
			case <-applyCtx.Done():
				return
			}
		}
		store.RunApplier(applyCtx)
	})
	defer func() {
		stopApply()
		applying.Wait()
	}()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cartera_profiles", Help: "Live profiles.",
	}, func() float64 { return float64(store.ProfileCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cartera_store_pages_written_total", Help: "Pages of the bbolt file written by commits since the start (per event applied: the B-tree's write amplification).",
		}, func() float64 { n, _ := store.PagesWritten(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cartera_store_page_bytes_written_total", Help: "Bytes of the pages of the bbolt file written by commits since the start.",
		}, func() float64 { _, b := store.PagesWritten(); return float64(b) }))

	a := &api{
		store:   store,
		rules:   engine,
		core:    core,
		sources: sources,
		metrics: core.pm,
		log:     log.With("component", "http"),
		admin:   newTokenCheck(cfg.AdminToken),
		now:     now,
		clock:   clock,
		newID:   newMessageID,
		gather:  reg,
		maxSkew: cfg.Profiles.MaxClockSkew,
		opens:   newOpenCounter(reg),

		metricsElsewhere: cfg.MetricsAddr != "",
		limits:           newEdgeLimits(cfg.Limits, reg),
	}
	a.limits.watchLag(store.Lag)
	con, err := openConsole(a, cfg, reg, log)
	if err != nil {
		return err
	}
	a.console = con
	app := a.routes()

	ln, stopACME, err := listen(cfg, log)
	if err != nil {
		return err
	}
	defer stopACME()
	// Background work runs on its own context: the shutdown stops it at
	// once, while requests drain, and joins every goroutine before the
	// store closes.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	defer func() {
		stopWork()
		joinWithin(&work, cfg.ShutdownTimeout, log)
	}()
	if err := m.serveSide(workCtx, cfg, reg, log); err != nil {
		_ = ln.Close()
		return err
	}
	work.Go(func() { core.run(workCtx) })
	work.Go(func() { runRetention(workCtx, elog.retain(store, cfg.Profiles.Log), now, retentionEvery, log) })
	work.Go(func() { core.ensureGoogleClasses(workCtx) })
	con.Sample() // the charts' first sample, before any event comes in
	work.Go(func() { con.Run(workCtx) })
	if core.delivery != nil {
		if p := core.delivery.googleStatus; p != nil {
			// Its goroutine is joined with the others: Close waits for it.
			p.Open(workCtx)
			work.Go(func() {
				<-workCtx.Done()
				_ = p.Close()
			})
		}
	}

	listening := func() {
		if cfg.AdminToken == "" {
			log.Warn("no admin token configured: the administration API refuses every request; set CARTERA_ADMIN_TOKEN")
		}
		log.Info("listening", "addr", ln.Addr().String(), "data", cfg.Data, "config", cfg.path, "sources", sources.Names(), "profiles", store.ProfileCount(), "procs", runtime.GOMAXPROCS(0))
		if _, _, _, dev := cfg.Console.DevLogin(); dev {
			log.Warn("console: user dev has the well-known dev password of examples/cartera.yaml; never run a deployment like this")
		}
		if m.OnListen != nil {
			m.OnListen(ln.Addr().String())
		}
		readyHint{addr: ln.Addr().String(), cfg: cfg, tokenFromEnv: m.Getenv("CARTERA_ADMIN_TOKEN") != "", keysFromEnv: m.Getenv("CARTERA_WRITE_KEYS") != ""}.write(m.Stdout)
	}
	// Deliveries in flight are cut short and stay queued untouched for
	// the restart; timers and journey actions not yet taken stay too.
	return serveUntil(ctx, app, ln, cfg, log, listening, stopWork)
}

// serveUntil serves app on ln until ctx ends or serving fails; listening
// runs once it serves. At the end, stop runs first, then the requests in
// flight drain for at most cfg.ShutdownTimeout.
func serveUntil(ctx context.Context, app *fiber.App, ln net.Listener, cfg *Config, log *slog.Logger, listening, stop func()) error {
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	listening()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop()
	log.Info("shutting down: draining requests", "timeout", cfg.ShutdownTimeout.String())
	if err := app.ShutdownWithTimeout(cfg.ShutdownTimeout); err != nil {
		log.Error("shutdown", "err", err)
	}
	<-served
	log.Info("stopped")
	return nil
}

// listen listens on cfg.Addr, with TLS when the config asks for it; stop
// ends the ACME client, if any.
func listen(cfg *Config, log *slog.Logger) (ln net.Listener, stop func(), err error) {
	plain, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	ln, stop, err = listenTLS(cfg, plain, log)
	if err != nil {
		_ = plain.Close()
		return nil, nil, err
	}
	return ln, stop, nil
}

// serveSide starts what listens beside the API until ctx ends: pprof when
// CARTERA_PPROF_ADDR asks for it, /metrics on metrics_addr when set.
func (m *Main) serveSide(ctx context.Context, cfg *Config, gather prometheus.Gatherer, log *slog.Logger) error {
	servePprof(ctx, m.Getenv("CARTERA_PPROF_ADDR"), log)
	if cfg.MetricsAddr == "" {
		return nil
	}
	maddr, err := serveMetrics(ctx, cfg.MetricsAddr, gather, log)
	if err != nil {
		return err
	}
	if m.OnMetricsListen != nil {
		m.OnMetricsListen(maddr)
	}
	return nil
}

// joinWithin waits for the background work to stop, at most d; past it,
// it says so and goes on (the store's Close then waits for transactions
// still open).
func joinWithin(wg *sync.WaitGroup, d time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Error("shutdown: background work did not stop in time", "timeout", d.String())
	}
}

// newMessageID makes a messageId for a message that came without one.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "cartera-" + hex.EncodeToString(b[:])
}
