package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/profiles"
)

// partitionCores are the cores of a cluster node (step 1 of docs/cluster.md's
// path to several nodes): on each partition file the node holds, the whole
// core of serve (store, rules and journey engines, outbox, destinations,
// wallet), opened when the node claims the partition and closed when it
// gives it up, with its own work (timers, drains, deliveries, sweepers)
// running while it holds it and fenced by its lease. Each partition's core
// has a metrics registry of its own, gathered with a partition label by
// Gather (node.go).
type partitionCores struct {
	cfg  *Config
	opts appOptions
	// sources and index are the node's (nil index: none).
	sources *profiles.Sources
	index   identityIndex
	// answer, when set, answers the requests about a held partition's
	// people with its core's routes (jetstream.Log.Answer: forward.go),
	// up to maxAnswer bytes.
	answer    func(p int, handle func([]byte) []byte) (stop func() error, err error)
	maxAnswer int
	// paces, when set, pace the destinations with a rate at the node's
	// share, for all its partitions' outboxes (paces.go).
	paces *nodePaces
	// head, when set, says where a partition ends in the stream now
	// (jetstream.Log.PartitionHead): the admin reads answered for a
	// partition wait until its core has applied that far.
	head func(ctx context.Context, p int) (uint64, error)
	// history, when set, reads a partition's records in the stream
	// (jetstream.Log.PartitionHistory): what its backtests replay.
	history func(ctx context.Context, p int, batch func([][]byte) error) error

	mu sync.Mutex
	// defs are the definitions in force (node_reload.go).
	defs  *definitions
	cores map[*profiles.Store]*partitionCore
}

// partitionCore is one partition's core and the fence it acts under.
type partitionCore struct {
	*app
	// p is the core's partition; running says its work has started. Both
	// are set once, under partitionCores.mu.
	p       int
	running bool
	reg     *prometheus.Registry
	fence   atomic.Pointer[func() error]
}

// newPartitionCores opens cores with cfg (its Data is replaced by each
// partition's file), defs and opts (its Registry and Fence are each
// core's own).
func newPartitionCores(cfg *Config, defs *definitions, opts appOptions) *partitionCores {
	return &partitionCores{cfg: cfg, defs: defs, opts: opts, cores: map[*profiles.Store]*partitionCore{}}
}

// files is the PartitionFiles of a jetstream.Node, with a core on each
// partition's file.
func (pc *partitionCores) files(dir string) *profiles.PartitionFiles {
	f := profiles.NewPartitionFiles(dir, pc.open)
	f.Beside(pc.run)
	return f
}

// open opens the core of the partition file at path.
func (pc *partitionCores) open(path string) (*profiles.Store, error) {
	cfg := *pc.cfg
	cfg.Data = path
	c := &partitionCore{reg: prometheus.NewRegistry()}
	opts := pc.opts
	opts.Registry = c.reg
	opts.SerialsNameProfile = true // the wallet web service's requests are routed by them
	if pc.paces != nil {
		opts.Pace = pc.paces.pacer
	}
	// Until the node's lease is known (run), the core does nothing of its
	// own: only the applier, which is fenced by the store, commits.
	opts.Fence = func() error {
		f := c.fence.Load()
		if f == nil {
			return fmt.Errorf("%w: not running yet", profiles.ErrFenced)
		}
		return (*f)()
	}
	defs := pc.inForce()
	a, err := openApp(context.Background(), &cfg, defs, opts)
	if err != nil {
		return nil, err
	}
	a.index = pc.index
	c.app = a
	pc.mu.Lock()
	pc.cores[a.store] = c
	now := pc.defs
	pc.mu.Unlock()
	if now != defs {
		// A reload came while it opened.
		if _, err := a.use(context.Background(), now); err != nil {
			a.log.Error("put the reloaded definitions in force on a partition's core", "err", err)
		}
	}
	return a.store, nil
}

// run is the core's own work while the node holds partition p.
func (pc *partitionCores) run(ctx context.Context, p int, st *profiles.Store, fence func() error) {
	pc.mu.Lock()
	c := pc.cores[st]
	if c != nil {
		c.p, c.running = p, true
	}
	pc.mu.Unlock()
	pc.paced()
	defer func() {
		pc.mu.Lock()
		delete(pc.cores, st)
		pc.mu.Unlock()
		pc.paced()
	}()
	if c == nil {
		return // not opened by open: no core of ours on it
	}
	c.fence.Store(&fence)
	if pc.history != nil {
		c.history = func(ctx context.Context, since time.Time, fn func(*profiles.Event) error) (int, error) {
			return st.HistoryOf(ctx, since, func(batch func([][]byte) error) error {
				return pc.history(ctx, p, batch)
			}, fn)
		}
	}
	if pc.answer != nil {
		// Stopped before the file closes: when run returns.
		stop, err := pc.answer(p, answerer{handle: pc.routes(c).Handler(), max: pc.maxAnswer}.answer)
		if err != nil {
			c.log.Error("answer requests about the partition's people", "partition", p, "err", err)
		} else {
			defer func() {
				if err := stop(); err != nil {
					c.log.Warn("stop answering requests", "partition", p, "err", err)
				}
			}()
		}
	}
	c.run(ctx)
}

// routes are the HTTP routes of one partition's core, for the requests
// forwarded to it: serve's, on the core's store, with no limits of their
// own (the node that took the request applied them).
func (pc *partitionCores) routes(c *partitionCore) *fiber.App {
	now := pc.opts.Now
	if now == nil {
		now = time.Now
	}
	a := &api{store: c.store, rules: c.rules, core: c.app, sources: pc.sources, metrics: c.pm,
		log: c.log.With("component", "http", "partition", c.p), admin: newTokenCheck(pc.cfg.AdminToken),
		now: now, newID: newMessageID, gather: c.reg, maxSkew: pc.cfg.Profiles.MaxClockSkew,
		limits: newEdgeLimits(LimitsConfig{}, nil)}
	if pc.head != nil {
		p, st := c.p, c.store
		a.readAfter = func(ctx context.Context) error {
			head, err := pc.head(ctx, p)
			if err != nil {
				return err
			}
			return st.WaitPartition(ctx, p, head)
		}
	}
	app := a.routes()
	app.Post(consoleOpPath+":op", a.requireAdmin, a.consoleOp)
	return app
}

// paced moves the node's pacers to the share of the partitions it runs
// now.
func (pc *partitionCores) paced() {
	if pc.paces != nil {
		pc.paces.hold(len(pc.held()))
	}
}

// held returns the cores running now, by partition.
func (pc *partitionCores) held() []*partitionCore {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	out := make([]*partitionCore, 0, len(pc.cores))
	for _, c := range pc.cores {
		if c.running {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *partitionCore) int { return a.p - b.p })
	return out
}

// wake wakes every open core's timers and outbox, as the dev clock does
// serve's after moving time.
func (pc *partitionCores) wake() {
	for _, c := range pc.held() {
		c.journeys.Wake()
		if c.delivery != nil {
			c.delivery.outbox.Wake()
		}
	}
}
