package main

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/internal/fairshare"
)

// FairShareConfig makes the write keys that send more than their share
// pay when the gateway is under load: while applying lags past LagEvents
// or Lag (well below profiles.log's 503 bounds), or goroutines wait past
// CPUWait for a CPU, a key whose share of the events sent lately
// (refused requests counted as the key's usual batch) is over Margin
// times an even split among the keys sending, and which sends MinRate
// events a second or more, is paced (one request per slot at its share of
// the events accepted lately; a later one gets 429 with Retry-After),
// heaviest first; keys under either, a trickle, go on.
type FairShareConfig struct {
	// LagEvents and Lag are the soft bounds of the apply lag (0: that
	// signal is off).
	LagEvents int           `yaml:"lag_events"`
	Lag       time.Duration `yaml:"lag"`
	// CPUWait is the 99th percentile of the time goroutines wait for a
	// CPU, over the last quarter of a second, from which the gateway is
	// CPU-saturated (0: that signal is off).
	CPUWait time.Duration `yaml:"cpu_wait"`
	// Window is the half-life of the counts of accepted events the
	// shares are taken from, and how long a signal counts once it was on.
	Window time.Duration `yaml:"window"`
	// Margin is how far over an even split a key may go (at least 1).
	Margin float64 `yaml:"margin"`
	// MinRate is the events a second under which a key is never refused
	// for its share.
	MinRate float64 `yaml:"min_rate"`
}

// DefaultFairShareConfig returns soft bounds far under the 503 bounds (a
// hundredth in events; a tenth of a second, which an applier keeping up
// stays under), and no CPU signal: it fires on any program's load on the
// machine, and on a shared machine it refused the heavier of two keys
// while the applier kept up (docs/benchmarks.md, round 6).
func DefaultFairShareConfig() FairShareConfig {
	return FairShareConfig{LagEvents: 10_000, Lag: 100 * time.Millisecond, CPUWait: 0, Window: 2 * time.Second, Margin: 1.5, MinRate: 500}
}

func (c FairShareConfig) on() bool { return c.LagEvents > 0 || c.Lag > 0 || c.CPUWait > 0 }

func (c FairShareConfig) validate() error {
	switch {
	case c.LagEvents < 0:
		return fmt.Errorf("limits.fair_share.lag_events: want 0 (off) or more, got %d", c.LagEvents)
	case c.Lag < 0:
		return fmt.Errorf("limits.fair_share.lag: want 0 (off) or a positive duration, got %s", c.Lag)
	case c.CPUWait < 0 || c.CPUWait > time.Second:
		return fmt.Errorf("limits.fair_share.cpu_wait: want 0 (off) up to 1s, got %s", c.CPUWait)
	case c.on() && (c.Window < 100*time.Millisecond || c.Window > time.Minute):
		return fmt.Errorf("limits.fair_share.window: want 100ms to 1m, got %s", c.Window)
	case c.on() && (c.Margin < 1 || math.IsNaN(c.Margin) || math.IsInf(c.Margin, 0)):
		return fmt.Errorf("limits.fair_share.margin: want 1 (an even split) or more, got %v", c.Margin)
	case c.MinRate < 0 || math.IsNaN(c.MinRate) || math.IsInf(c.MinRate, 0):
		return fmt.Errorf("limits.fair_share.min_rate: want 0 or more events a second, got %v", c.MinRate)
	}
	return nil
}

// applyFairShareEnv sets one fair_share.NAME=VALUE of CARTERA_LIMITS
// ("fair_share=off" turns it off).
func applyFairShareEnv(c *FairShareConfig, name, val string) error {
	bad := func(want string) error {
		return fmt.Errorf("CARTERA_LIMITS: %s: want %s, got %q", name, want, val)
	}
	dur := func(d *time.Duration) error {
		v, err := time.ParseDuration(val)
		if err != nil {
			return bad("a duration such as 1s")
		}
		*d = v
		return nil
	}
	switch name {
	case "fair_share":
		if val != "off" {
			return bad("off")
		}
		c.LagEvents, c.Lag, c.CPUWait = 0, 0, 0
	case "fair_share.lag_events":
		n, err := strconv.Atoi(val)
		if err != nil {
			return bad("a whole number")
		}
		c.LagEvents = n
	case "fair_share.lag":
		return dur(&c.Lag)
	case "fair_share.cpu_wait":
		return dur(&c.CPUWait)
	case "fair_share.window":
		return dur(&c.Window)
	case "fair_share.margin":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return bad("a number such as 1.5")
		}
		c.Margin = f
	case "fair_share.min_rate":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return bad("events a second, such as 500")
		}
		c.MinRate = f
	default:
		return fmt.Errorf("CARTERA_LIMITS: unknown limit %q", name)
	}
	return nil
}

// fairShare refuses the keys over their share while the gateway is under
// load.
type fairShare struct {
	cfg    FairShareConfig
	shares *fairshare.Shares
	cpu    *fairshare.CPUWait
	// lag is the apply lag (nil: no event log, no lag signal).
	lag func() (uint64, time.Duration)
	// cpuWait is the CPU signal (the runtime's, or a test's).
	cpuWait func(time.Time) time.Duration
	// refused counts refusals by source and the signal that was on;
	// paced the requests over their share let in at their pace.
	refused, paced *prometheus.CounterVec

	mu sync.Mutex
	// lastSignal, lastDetail and lastAt are the signal last seen on.
	lastSignal, lastDetail string
	lastAt                 time.Time
}

// newFairShare returns nil when cfg turns it off, and registers its
// metrics on reg (nil: not registered).
func newFairShare(cfg FairShareConfig, reg prometheus.Registerer) *fairShare {
	if !cfg.on() {
		return nil
	}
	f := &fairShare{
		cfg:    cfg,
		shares: fairshare.New(cfg.Window, cfg.Margin, cfg.MinRate),
		cpu:    fairshare.NewCPUWait(250 * time.Millisecond),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_fair_share_refused_total",
			Help: "Ingestion requests answered 429 because their write key sent more than its share while the gateway was under load, by source and the signal of load (lag_events, lag, cpu).",
		}, []string{"source", "signal"}),
		paced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cartera_fair_share_paced_total",
			Help: "Ingestion requests of a write key over its share, while the gateway was under load, let in at the key's pace (held until their slot) instead of refused, by source.",
		}, []string{"source"}),
	}
	f.cpuWait = f.cpu.P99
	if reg != nil {
		reg.MustRegister(f.refused, f.paced, gauge("cartera_cpu_wait_seconds",
			"99th percentile of the time goroutines waited for a CPU over the last quarter of a second (the fair share's CPU signal).",
			func() float64 { return f.cpu.P99(time.Now()).Seconds() }))
	}
	return f
}

// load names the signal of load that is on ("" when none is), and says
// what it reads. A signal counts for one window after it was last seen on,
// so that the keys refused keep paying while the flood they were sending
// would bring the load straight back.
func (f *fairShare) load(now time.Time) (signal, detail string) {
	signal, detail = f.signal(now)
	f.mu.Lock()
	defer f.mu.Unlock()
	if signal != "" {
		f.lastSignal, f.lastDetail, f.lastAt = signal, detail, now
		return signal, detail
	}
	if f.lastSignal != "" && now.Sub(f.lastAt) < f.cfg.Window && !now.Before(f.lastAt) {
		return f.lastSignal, fmt.Sprintf("%s %s ago", f.lastDetail, now.Sub(f.lastAt).Round(time.Millisecond))
	}
	return "", ""
}

// signal is the signal of load on now, without the window.
func (f *fairShare) signal(now time.Time) (signal, detail string) {
	if f.lag != nil && (f.cfg.LagEvents > 0 || f.cfg.Lag > 0) {
		n, age := f.lag()
		if f.cfg.LagEvents > 0 && n >= uint64(f.cfg.LagEvents) {
			return "lag_events", fmt.Sprintf("applying lagged %d events", n)
		}
		if f.cfg.Lag > 0 && age >= f.cfg.Lag {
			return "lag", fmt.Sprintf("applying lagged %s", age.Round(time.Millisecond))
		}
	}
	if f.cfg.CPUWait > 0 {
		if w := f.cpuWait(now); w >= f.cfg.CPUWait {
			return "cpu", fmt.Sprintf("requests waited %s for a CPU", w.Round(100*time.Microsecond))
		}
	}
	return "", ""
}

// fairCheck refuses key (of source) when the gateway is under load and the key
// is over its share. The refusal comes before the body is decoded.
func (l *edgeLimits) fairCheck(c *fiber.Ctx, key, source string, now time.Time) error {
	f := l.fair
	if f == nil {
		return nil
	}
	signal, detail := f.load(now)
	if signal == "" {
		return nil
	}
	v := f.shares.Over(key, now)
	if !v.Over {
		return nil
	}
	// Paced, not refused for the whole window: refused outright, a
	// key's clients all came back at once when the load lifted, and
	// the others' latency paid for the burst (docs/benchmarks.md,
	// round 11).
	wait, ok := f.shares.Pace(key, v, now, l.cfg.RefusalDelay)
	if ok {
		if wait > 0 {
			l.pause(wait)
		}
		f.paced.WithLabelValues(source).Inc()
		return nil
	}
	f.refused.WithLabelValues(source, signal).Inc()
	return l.refuseWith(c, "fair_share", wait,
		fmt.Sprintf("this write key sent %.0f%% of the recent events (%.0f a second), over its share (%.0f%% of %d keys), while the gateway is under load (%s)",
			100*v.Share, v.Rate, 100*v.Fair, v.Keys, detail))
}

// fairAccepted counts the events accepted for key.
func (l *edgeLimits) fairAccepted(key string, n int, now time.Time) {
	if l.fair != nil {
		l.fair.shares.Add(key, n, now)
	}
}

// fairRefused counts a request refused for key, by any of its limits:
// what a key asks for counts toward its share, not only what it got.
func (l *edgeLimits) fairRefused(key string, now time.Time) {
	if l.fair != nil {
		l.fair.shares.Refused(key, now)
	}
}

// watchLag gives the fair share the apply lag of the event log.
func (l *edgeLimits) watchLag(lag func() (uint64, time.Duration)) {
	if l.fair != nil {
		l.fair.lag = lag
	}
}
