package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

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
	if cfg.DevClock {
		clock = &devClock{}
		now = clock.Now
		log.Warn("dev clock on: POST /v1/admin/clock moves time forward for every engine; never run a deployment like this")
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
	store, engine := core.store, core.rules
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cartera_profiles", Help: "Live profiles.",
	}, func() float64 { return float64(store.ProfileCount()) }))

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
	}
	app := a.routes()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	pruneCtx, stopPrune := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPrune()
	servePprof(pruneCtx, m.Getenv("CARTERA_PPROF_ADDR"), log)
	go store.RunPruner(pruneCtx, time.Hour)
	backfilled := make(chan struct{})
	go func() {
		defer close(backfilled)
		if err := engine.Backfill(pruneCtx, store); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("backfill rules", "err", err)
		}
		engine.RunSweeper(pruneCtx, store, time.Hour)
	}()
	journeysDone := make(chan struct{})
	go func() {
		defer close(journeysDone)
		core.journeys.Run(pruneCtx, store)
	}()
	go core.ensureGoogleClasses(pruneCtx)
	outboxDone := make(chan struct{})
	go func() {
		defer close(outboxDone)
		core.runOutbox(pruneCtx)
	}()
	defer func() { stopPrune(); <-backfilled; <-journeysDone; <-outboxDone }()

	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	if cfg.AdminToken == "" {
		log.Warn("no admin token configured: the administration API refuses every request; set CARTERA_ADMIN_TOKEN")
	}
	log.Info("listening", "addr", ln.Addr().String(), "data", cfg.Data, "config", cfg.path, "sources", sources.Names(), "profiles", store.ProfileCount())
	if m.OnListen != nil {
		m.OnListen(ln.Addr().String())
	}
	readyHint{addr: ln.Addr().String(), cfg: cfg, tokenFromEnv: m.Getenv("CARTERA_ADMIN_TOKEN") != "", keysFromEnv: m.Getenv("CARTERA_WRITE_KEYS") != ""}.write(m.Stdout)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests", "timeout", cfg.ShutdownTimeout.String())
	if err := app.ShutdownWithTimeout(cfg.ShutdownTimeout); err != nil {
		log.Error("shutdown", "err", err)
	}
	<-served
	log.Info("stopped")
	return nil
}

// newMessageID makes a messageId for a message that came without one.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "cartera-" + hex.EncodeToString(b[:])
}
