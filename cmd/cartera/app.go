package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cartera/channels"
	"cartera/channels/sms"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
	"cartera/wallet"
	"cartera/wallet/google"
)

// definitions is everything marketers write, compiled together: rule
// files, the policies and the journeys (which compile in the rules'
// environment and ask the rules to keep their event_count indexes).
type definitions struct {
	rules     *rules.Ruleset
	policy    *journeys.Policy
	journeys  *journeys.Set
	templates []string
	passes    map[string]*wallet.Template
}

// compileDefinitions reads the files a config names. Every mistake of
// every file comes back as rules.FileErrors. serve, simulate and validate
// all load through it.
func compileDefinitions(cfg *Config) (*definitions, error) {
	return compileWith(cfg, extraFiles{})
}

// extraFiles are files validate was given that the config does not name,
// checked together with the config's.
type extraFiles struct {
	// journeys are journey files, after those of the config's folders.
	journeys []string
	// templates are template ids of other folders, which journeys may use.
	templates []string
}

func compileWith(cfg *Config, extra extraFiles) (*definitions, error) {
	rs, err := rules.Load(rules.EnvOptions{}, cfg.Rules...)
	if err != nil {
		return nil, err
	}
	pol := journeys.DefaultPolicy()
	if cfg.Policies != "" {
		if pol, err = journeys.ReadPolicy(cfg.Policies, rs.Env); err != nil {
			return nil, err
		}
	}
	var templates []string
	if tpl, err := loadTemplates(cfg); err != nil {
		return nil, err
	} else if tpl != nil {
		templates = tpl.Names()
	}
	if cfg.Channels.SMS.Templates != "" {
		st, err := sms.LoadTextTemplates(cfg.Channels.SMS.Templates, "en")
		if err != nil {
			return nil, err
		}
		templates = append(templates, st.Names()...)
	}
	passes, err := loadPassTemplates(cfg, rs.Env)
	if err != nil {
		return nil, err
	}
	known := knownNames(rs, pol, templates)
	if extra.templates != nil {
		known.Templates = append(slices.Clone(known.Templates), extra.templates...)
	}
	known.PassTemplates = passTemplateNames(passes)
	paths, err := journeys.Files(cfg.Journeys)
	if err != nil {
		return nil, err
	}
	js, err := journeys.LoadFiles(dedupe(append(paths, extra.journeys...)), rs.Env, known)
	if err != nil {
		return nil, err
	}
	for _, j := range js {
		rs.Require(j.EventCounts()...)
	}
	for _, s := range pol.Suppress {
		rs.Require(s.When.EventCounts()...)
	}
	set, err := journeys.NewSet(js, pol)
	if err != nil {
		return nil, err
	}
	return &definitions{rules: rs, policy: pol, journeys: set, templates: templates, passes: passes}, nil
}

// dedupe keeps the first of paths naming the same file.
func dedupe(paths []string) []string {
	seen := map[string]bool{}
	out := paths[:0:0]
	for _, p := range paths {
		if k := abs(p); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// knownNames are the names journey files may use; templates nil skips the
// template check (no template folder configured).
func knownNames(rs *rules.Ruleset, pol *journeys.Policy, templates []string) journeys.Known {
	k := journeys.Known{AdAudiences: pol.AdAudienceNames(), Templates: templates}
	for _, a := range rs.Audiences {
		k.Audiences = append(k.Audiences, a.Name())
	}
	return k
}

// appOptions are what differs between serve and simulate.
type appOptions struct {
	// Now is the clock of every engine (virtual in simulate).
	Now  func() time.Time
	Rand io.Reader
	// Draws is the journeys' source for adaptive splits (nil: random).
	Draws    mrand.Source
	NoSync   bool
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Deliver sets up the outbox and destinations (serve; not simulate).
	Deliver bool
	Getenv  func(string) string
	// Trust keeps unverified client events off profiles that hold
	// identifiers from a server source (serve; simulate takes every
	// event's source as written).
	Trust profiles.SourceTrust
	// Fence, when set, is asked before the core acts on its own (timers,
	// drains, deliveries): a cluster node's lease of the partition whose
	// file the core is on (partitions.go).
	Fence func() error
	// SerialsNameProfile starts new passes' serials with their profile id
	// (wallet.Config.SerialsNameProfile): a cluster node's partition cores.
	SerialsNameProfile bool
	// Pace, when set, gives the pacer of a destination with a rate (a
	// cluster node's share, for all its partitions' outboxes: paces.go).
	Pace func(dest string, cfg channels.DestinationConfig) channels.Pacer
}

// app is the running core: the store with the rules and journey engines in
// its write transaction, in that order (data flows one way).
type app struct {
	cfg      *Config
	store    *profiles.Store
	rules    *rules.Engine
	journeys *journeys.Engine
	pm       *profiles.Metrics
	jm       *journeys.Metrics
	log      *slog.Logger
	// fence is appOptions.Fence (nil: none).
	fence func() error
	// serialsNameProfile is appOptions.SerialsNameProfile.
	serialsNameProfile bool
	// pace is appOptions.Pace (nil: each destination paces itself).
	pace func(dest string, cfg channels.DestinationConfig) channels.Pacer

	// reloading serialises reloads, from compiling to the swap.
	reloading sync.Mutex
	mu        sync.Mutex // guards defs
	defs      *definitions

	// index is the cluster's identity index (nil: none), which an
	// erasure must leave too.
	index identityIndex

	delivery *delivery
	wallet   *wallet.Service
	// googleWallet updates Google Wallet objects (nil: not configured).
	googleWallet *google.Client
	getenv       func(string) string
	// history reads the events a backtest replays (nil: the store's
	// event log; a partition core's: its partition of the stream).
	history func(ctx context.Context, since time.Time, fn func(*profiles.Event) error) (skipped int, err error)
	// backtests holds a token while a backtest runs (one at a time),
	// for at most backtestTime.
	backtests    chan struct{}
	backtestTime time.Duration
}

func openApp(ctx context.Context, cfg *Config, defs *definitions, opts appOptions) (*app, error) {
	log := opts.Logger
	pcfg := cfg.Profiles
	pcfg.NoSync = opts.NoSync
	pm := profiles.NewMetrics(opts.Registry)
	store, err := profiles.Open(ctx, cfg.Data, pcfg, profiles.Options{Logger: log.With("component", "profiles"), Metrics: pm, Now: opts.Now, Rand: opts.Rand, Trust: opts.Trust})
	if err != nil {
		return nil, err
	}
	re, err := rules.NewEngine(store.DB(), defs.rules, rules.EngineOptions{Now: opts.Now, Logger: log.With("component", "rules"), Metrics: rules.NewMetrics(opts.Registry)})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	a := &app{cfg: cfg, store: store, rules: re, pm: pm, log: log, fence: opts.Fence, pace: opts.Pace, serialsNameProfile: opts.SerialsNameProfile, defs: defs, jm: journeys.NewMetrics(opts.Registry), backtests: make(chan struct{}, 1), backtestTime: maxBacktestTime}
	var clock journeys.Clock = journeys.ClockFunc(time.Now)
	if opts.Now != nil {
		clock = journeys.ClockFunc(opts.Now)
	}
	je, err := journeys.New(store.DB(), defs.journeys, journeys.Options{
		Clock: clock, Logger: log.With("component", "journeys"), Metrics: a.jm, Rules: re,
		Env:   func() *rules.Env { return re.Ruleset().Env },
		Known: func() journeys.Known { return a.known() },
		Rand:  opts.Draws,
		Fence: opts.Fence,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	a.journeys = je
	store.Use(re, je)
	a.getenv = opts.Getenv
	if a.getenv == nil {
		a.getenv = func(string) string { return "" }
	}
	if opts.Deliver {
		now := opts.Now
		if now == nil {
			now = time.Now
		}
		if err := a.openDelivery(cfg, opts.Registry, now); err != nil {
			_ = store.Close()
			return nil, err
		}
		if err := a.openWallet(cfg, defs.passes, now); err != nil {
			_ = store.Close()
			return nil, err
		}
	}
	return a, nil
}

func (a *app) known() journeys.Known {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := knownNames(a.defs.rules, a.defs.policy, a.defs.templates)
	k.PassTemplates = passTemplateNames(a.defs.passes)
	return k
}

// reload compiles the files again; on any mistake the running versions
// stay and the errors come back. Reloads run one at a time, and the new
// rules, pass templates and journeys come into force together, between
// two commits of the store: no event sees new rules with old journeys.
func (a *app) reload(ctx context.Context) (*definitions, error) {
	_, defs, err := a.reloadFrom(ctx)
	return defs, err
}

// reloadFrom is reload that also returns the definitions it replaced.
func (a *app) reloadFrom(ctx context.Context) (before, after *definitions, err error) {
	a.reloading.Lock()
	defer a.reloading.Unlock()
	defs, err := a.checkReload()
	if err != nil {
		a.jm.Reloads.WithLabelValues("error").Inc()
		return nil, nil, err
	}
	before, err = a.install(ctx, defs)
	return before, defs, err
}

// use puts defs, compiled elsewhere, in force (a cluster node compiles
// its files once for every partition's core), and returns what it
// replaced.
func (a *app) use(ctx context.Context, defs *definitions) (before *definitions, err error) {
	a.reloading.Lock()
	defer a.reloading.Unlock()
	if a.wallet != nil && defs.passes != nil {
		if err := a.wallet.CheckTemplates(defs.passes); err != nil {
			a.jm.Reloads.WithLabelValues("error").Inc()
			return nil, err
		}
	}
	return a.install(ctx, defs)
}

// install records defs' journey versions, then swaps defs in between two
// commits; a.reloading is held.
func (a *app) install(ctx context.Context, defs *definitions) (before *definitions, err error) {
	if err := a.journeys.Install(defs.journeys); err != nil {
		a.jm.Reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	// Without cancel: once queued, the swap happens, and the answer says so.
	err = a.store.Between(context.WithoutCancel(ctx), func() {
		a.rules.Replace(defs.rules)
		if a.wallet != nil && defs.passes != nil {
			a.wallet.UseTemplates(defs.passes)
		}
		a.journeys.Use(defs.journeys)
		a.mu.Lock()
		before = a.defs
		a.defs = defs
		a.mu.Unlock()
	})
	if err != nil {
		a.jm.Reloads.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("reload: %w", err)
	}
	a.jm.Reloads.WithLabelValues("ok").Inc()
	a.log.Info("definitions reloaded", "journeys", len(defs.journeys.Journeys), "audiences", len(defs.rules.Audiences), "traits", len(defs.rules.Traits))
	return before, nil
}

func (a *app) close() error { return a.store.Close() }

// identityIndex is the part of a cluster's identity index an erasure
// needs (jetstream.Router).
type identityIndex interface {
	Erase(ctx context.Context, p *profiles.Profile) error
}

// erase erases a person (profiles.Store.Erase), from the cluster's
// identity index first: if the store's erasure then fails, the person is
// still there to erase again, and nothing routes new events to them.
func (a *app) erase(ctx context.Context, id profiles.Identifier, dropLater bool) (*profiles.Erasure, error) {
	if a.index != nil {
		p, err := a.store.Lookup(id)
		if err != nil {
			return nil, err
		}
		if err := a.index.Erase(ctx, p); err != nil {
			return nil, err
		}
	}
	return a.store.Erase(id, dropLater)
}

// deliver is the delivery of the journey actions enqueue does not take:
// set_trait is applied to the profile, passes are issued and updated;
// every other action is logged (without personal data) and considered
// delivered.
func (a *app) deliver(ctx context.Context, act journeys.Action) error {
	handled, err := journeys.ApplyTraits(ctx, a.store, act, time.Now())
	if handled || err != nil {
		return err
	}
	if taken, err := a.deliverWallet(ctx, act); taken || err != nil {
		return err
	}
	logAction(a.log, act)
	return nil
}

// drainJourneys moves up to limit journey actions on: enqueued in the
// channels' outbox, or delivered.
func (a *app) drainJourneys(ctx context.Context, limit int) (int, error) {
	n, err := a.journeys.DrainOutboxTo(ctx, a.enqueue, a.deliver, limit)
	if n > 0 && a.delivery != nil {
		a.delivery.outbox.Wake()
	}
	return n, err
}

// run does the core's own work until ctx ends, and returns once all of it
// has stopped: the store's pruner, the rules' backfill and sweeper, the
// journeys' timers and pruner, the outboxes and theirs. serve runs it on
// its one store; a cluster node on each partition it holds
// (partitions.go).
func (a *app) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.store.RunPruner(ctx, time.Hour) })
	wg.Go(func() {
		if err := a.rules.Backfill(ctx, a.store); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("backfill rules", "err", err)
		}
		a.rules.RunSweeper(ctx, a.store, time.Hour)
	})
	wg.Go(func() { a.journeys.Run(ctx, a.store) })
	wg.Go(func() { a.journeys.RunPruner(ctx, time.Hour, a.cfg.Retention.Journeys) })
	wg.Go(func() { a.runOutbox(ctx) })
	if a.delivery != nil {
		wg.Go(func() { a.delivery.outbox.RunPruner(ctx, a.cfg.Channels.Retention, time.Hour) })
	}
}

// runOutbox drains the outbox whenever actions commit, until ctx ends.
func (a *app) runOutbox(ctx context.Context) {
	poke := make(chan struct{}, 1)
	a.journeys.Observe(func([]journeys.Action) {
		select {
		case poke <- struct{}{}:
		default:
		}
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	if a.delivery != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.delivery.outbox.Run(ctx)
		}()
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		for {
			n, err := a.drainJourneys(ctx, 500)
			if err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("journey outbox", "err", err)
				break
			}
			if n < 500 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-poke:
		case <-t.C:
		}
	}
}

// loadErrors prints FileErrors one per line.
func loadErrors(what string, err error) error {
	var fe rules.FileErrors
	if errors.As(err, &fe) {
		return fmt.Errorf("%s:\n%w", what, fe)
	}
	return fmt.Errorf("%s: %w", what, err)
}
