package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"cartera/channels/email"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// nodeDeps is what serve hands a cluster node: what it loaded and
// compiled before choosing the mode.
type nodeDeps struct {
	cfg     *Config
	defs    *definitions
	sources *profiles.Sources
	log     *slog.Logger
	reg     *prometheus.Registry
	now     func() time.Time
	// clock is the dev clock (nil: off).
	clock *devClock
}

// serveNode runs serve as one node of a cluster (cluster.node): it holds
// the partitions the cluster's leases give it, each with the whole core of
// serve on a file of its own (partitionCores: journeys, timers, outbox
// and deliveries run where each person's state is), and acknowledges
// events from any client on the cluster's stream through the identity
// index. Its HTTP API is ingestion, /healthz and /metrics; requests about
// a person (profiles, passes, tracking links, the wallet web service),
// which the node holding them answers; and the admin API's lists and
// pages, put together from every partition's (forward.go), and the
// console the same way (console_node.go); reloads of every node
// (node_reload.go). It refuses batches bound for a partition whose holder
// lags (lags.go). A backup is a tar of the cluster's streams, taken while
// every node holds ingestion (node_backup.go); a backtest runs on every
// partition's holder (backtest_node.go).
func (m *Main) serveNode(ctx context.Context, d nodeDeps) error {
	cfg, log := d.cfg, d.log
	l, err := jetstream.Open(ctx, cfg.Cluster.jetstream())
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			log.Error("close the cluster's stream", "err", err)
		}
	}()
	// Backpressure: a batch bound for a partition whose holder lags past
	// the bound is refused (lags.go).
	lags := newClusterLags(cfg.Profiles.Log, time.Now)
	stopLags, err := l.Listen(lagTopic, lags.heard)
	if err != nil {
		return err
	}
	defer func() { _ = stopLags() }()
	// A backup of the cluster holds ingestion on every node meanwhile
	// (node_backup.go).
	hold := newClusterHold(time.Now)
	stopHold, err := l.Listen(holdTopic, hold.heard)
	if err != nil {
		return err
	}
	defer func() { _ = stopHold() }()
	if err := removeStale(cfg.Data, clusterBackupPattern); err != nil {
		log.Warn("remove what cut-off cluster backups left", "err", err)
	}
	admit := func(partitions []int) error {
		if err := hold.admit(); err != nil {
			return err
		}
		return lags.admit(partitions)
	}
	router, err := openIdentityIndexAdmitting(ctx, cfg, l, d.sources, admit)
	if err != nil {
		return err
	}
	cores := newPartitionCores(cfg, d.defs, appOptions{Now: d.now, Logger: log, Deliver: true, Getenv: m.Getenv, Trust: d.sources})
	cores.sources, cores.index = d.sources, router
	cores.answer, cores.maxAnswer, cores.head, cores.history = l.Answer, l.MaxRequest(), l.PartitionHead, l.PartitionHistory
	cores.paces = newNodePaces(l.Partitions())
	dir := partitionsDir(cfg.Data)
	if d.defs.passes != nil {
		// The partitions' cores open concurrently and share the folder of
		// a development signing chain: it is made once, here, first.
		pcfg := *cfg
		pcfg.Data = profiles.PartitionPath(dir, 0)
		if _, _, err := (&app{log: log}).signingChain(&pcfg, d.now()); err != nil {
			return err
		}
	}
	node, err := jetstream.StartNode(ctx, l, cores.files(dir),
		cfg.Cluster.node(cfg.Profiles.Log, filepath.Join(dir, "snapshots"), log.With("component", "cluster")))
	if err != nil {
		return fmt.Errorf("cluster.node: %w", err)
	}
	// Closed after the requests drained: it snapshots and hands over
	// what it holds, and each partition's core stops before its file
	// closes.
	defer func() {
		if err := node.Close(); err != nil {
			log.Error("leave the cluster", "err", err)
		}
	}()
	tracker, err := newTracker(cfg, d.now)
	if err != nil {
		return err
	}
	d.reg.MustRegister(node.Collector())
	registerIndexMetrics(d.reg, router)
	pm := profiles.NewMetrics(d.reg)
	a := &api{
		events:  routerAppender{router},
		sources: d.sources,
		metrics: pm,
		log:     log.With("component", "http"),
		admin:   newTokenCheck(cfg.AdminToken),
		now:     d.now,
		newID:   newMessageID,
		gather:  prometheus.Gatherers{d.reg, cores},
		maxSkew: cfg.Profiles.MaxClockSkew,

		metricsElsewhere: cfg.MetricsAddr != "",
		limits:           newEdgeLimits(cfg.Limits, d.reg),
		people:           &personForwarder{router: router, log: l, tracker: tracker},
		clusterBackup: &clusterBackup{log: l, node: cfg.Cluster.Node, dir: filepath.Dir(cfg.Data),
			settle: cfg.Cluster.AckWait + holdEvery, now: d.now, logger: log.With("component", "backup")},
	}
	if d.clock != nil {
		// Every node's dev clock moves together: an advance on one is
		// broadcast, and each node moves to the furthest it heard of.
		stop, err := l.Listen("devclock", func(data []byte) {
			if off, err := time.ParseDuration(string(data)); err == nil && d.clock.AtLeast(off) {
				cores.wake()
			}
		})
		if err != nil {
			return err
		}
		defer func() { _ = stop() }()
		a.clock = d.clock
		a.clockMoved = func() error {
			cores.wake()
			return l.Broadcast("devclock", []byte(time.Duration(d.clock.offset.Load()).String()))
		}
	}
	a.reloader = &nodeReloader{cfg: cfg, node: cfg.Cluster.Node, cores: cores, l: l, log: log, auth: "Bearer " + cfg.AdminToken}
	stopReloads, err := a.reloader.listen()
	if err != nil {
		return err
	}
	defer func() {
		if err := stopReloads(); err != nil {
			log.Error("stop listening for reloads", "err", err)
		}
	}()
	nc := nodeConsole{log: l, router: router, auth: "Bearer " + cfg.AdminToken, timeout: consoleRequestTimeout, reloader: a.reloader,
		node: node, lags: lags}
	con, conDB, err := openNodeConsole(cfg, nc, d.defs.passes != nil, a.gather, d.now, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := conDB.Close(); err != nil {
			log.Error("close the console's file", "err", err)
		}
	}()
	a.console = con
	app := a.nodeRoutes()

	ln, stopACME, err := listen(cfg, log)
	if err != nil {
		return err
	}
	defer stopACME()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	defer func() {
		stopWork()
		work.Wait()
	}()
	if err := m.serveSide(workCtx, cfg, a.gather, log); err != nil {
		_ = ln.Close()
		return err
	}
	con.Sample()
	work.Go(func() { con.Run(workCtx) })
	work.Go(func() { tellLags(workCtx, l, node, log) })
	listening := func() {
		log.Info("listening as a cluster node", "addr", ln.Addr().String(), "node", cfg.Cluster.Node, "partitions", dir, "stream", cfg.Cluster.Stream)
		if m.OnListen != nil {
			m.OnListen(ln.Addr().String())
		}
	}
	return serveUntil(ctx, app, ln, cfg, log, listening, stopWork)
}

// partitionsDir is where a cluster node keeps its partitions' files.
func partitionsDir(data string) string { return data + ".partitions" }

// nodeRoutes are the routes of a cluster node: ingestion, /healthz and
// /metrics; a person's profile, export and erasure, passes, tracking links
// and the wallet web service, answered by the node holding them; the
// lists of journeys, audiences and the outbox over every partition
// (forward.go); backups, backtests and a template's test send; reloads;
// and the console: every route of serve.
func (a *api) nodeRoutes() *fiber.App {
	app := a.newApp()
	a.ingestRoutes(app)
	// adminOnly: the node has no store to read its writes in; the
	// holder's core answers with what its partition applied.
	people := app.Group("/v1/profiles", a.adminOnly)
	people.Get("/:ident/export", a.forward)
	people.Get("/:ident", a.forward)
	people.Delete("/:ident", a.forward)
	people.Post("/:ident/passes", a.forward)
	w := app.Group("/wallet")
	w.Get("/download/:file", a.forwardBySerial)
	w.Post("/v1/devices/:device/registrations/:passType/:serial", a.forwardBySerial)
	w.Delete("/v1/devices/:device/registrations/:passType/:serial", a.forwardBySerial)
	w.Get("/v1/devices/:device/registrations/:passType", a.updatedPassesAcross)
	w.Get("/v1/passes/:passType/:serial", a.forwardBySerial)
	w.Post("/v1/log", a.forwardToAny)
	app.Get(email.OpenPath+":token", a.forwardByToken)
	app.Get(email.ClickPath+":token", a.forwardByToken)
	app.Get(email.UnsubscribePath+":token", securePage, a.forwardByToken)
	app.Post(email.UnsubscribePath+":token", securePage, a.forwardByToken)
	app.Get("/v1/admin/backup", a.adminOnly, a.clusterBackup.serve)
	app.Get("/v1/admin/clock", a.adminOnly, a.getClock)
	app.Post("/v1/admin/clock", a.adminOnly, a.advanceClock)
	app.Get("/v1/outbox", a.adminOnly, a.listOutboxAcross)
	app.Post("/v1/outbox/:seq/retry", a.adminOnly, a.outboxOpAcross)
	app.Delete("/v1/outbox/:seq", a.adminOnly, a.outboxOpAcross)
	app.Post("/v1/journeys/reload", a.adminOnly, a.reloadAcross)
	app.Post("/v1/journeys/backtest", a.adminOnly, a.backtestAcross)
	app.Post("/v1/templates/:name/test", a.adminOnly, a.testTemplateAcross)
	app.Get("/v1/journeys", a.adminOnly, a.listJourneysAcross)
	app.Get("/v1/journeys/:id", a.adminOnly, a.getJourneyAcross)
	app.Get("/v1/audiences", a.adminOnly, a.listAudiencesAcross)
	app.Get("/v1/audiences/:id/members", a.adminOnly, a.audienceMembersAcross)
	app.Get("/v1/audiences/:id/export.csv", a.adminOnly, a.exportAudienceAcross)
	if a.console != nil {
		a.console.Mount(app)
	}
	return app
}

// routerAppender acknowledges events on the cluster's stream through the
// identity index, each addressed to its profile: a cluster node's
// ingestion, with no store of its own. The stream's limits are its
// backpressure (the lag of applying is each partition's owner's).
type routerAppender struct{ r *jetstream.Router }

func (ra routerAppender) Append(ctx context.Context, events []*profiles.Event) (uint64, error) {
	_, last, err := ra.r.AppendEvents(ctx, events)
	return last, err
}

// Gather gathers the metrics of the cores running now, each labelled with
// its partition (prometheus.Gatherer), for a node's /metrics.
func (pc *partitionCores) Gather() ([]*dto.MetricFamily, error) {
	byName := map[string]*dto.MetricFamily{}
	var names []string
	var errs []error
	for _, c := range pc.held() {
		mfs, err := c.reg.Gather()
		if err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", c.p, err))
		}
		label := &dto.LabelPair{Name: proto.String("partition"), Value: proto.String(strconv.Itoa(c.p))}
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				m.Label = append(m.Label, label)
				slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return cmp.Compare(a.GetName(), b.GetName()) })
			}
			if have, ok := byName[mf.GetName()]; ok {
				have.Metric = append(have.Metric, mf.Metric...)
				continue
			}
			byName[mf.GetName()] = mf
			names = append(names, mf.GetName())
		}
	}
	slices.Sort(names)
	out := make([]*dto.MetricFamily, len(names))
	for i, n := range names {
		out[i] = byName[n]
	}
	return out, errors.Join(errs...)
}
