package channels

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"
)

// Buckets of the outbox, in the profile store's file:
//
//	channels_queue   one nested bucket per destination: next attempt (8-byte big-endian unix nanos) | seq (8) → JSON Message
//	channels_keys    idempotency key → seq (8) | enqueued at (8-byte big-endian unix nanos; absent in files
//	                 of earlier versions): a key is enqueued once while kept (RetentionConfig.Keys)
//	channels_where   seq → destination 0x00 queue key (to find a queued message by seq)
//	channels_dead    seq → JSON Message that failed for good (kept RetentionConfig.DeadLetters)
var (
	bucketQueue = []byte("channels_queue")
	bucketKeys  = []byte("channels_keys")
	bucketWhere = []byte("channels_where")
	bucketDead  = []byte("channels_dead")
)

// OutcomeSink records delivery outcomes on profiles (cmd/cartera wires the
// profile store in). It is called after the outcome is committed; an error
// is logged.
type OutcomeSink interface {
	Record(ctx context.Context, msg *Message, outcomes []Outcome) error
}

// Metrics are the outbox's Prometheus collectors, by destination.
type Metrics struct {
	Enqueued   *prometheus.CounterVec
	Delivered  *prometheus.CounterVec
	Retried    *prometheus.CounterVec
	Dead       *prometheus.CounterVec
	Suppressed *prometheus.CounterVec
	Seconds    *prometheus.HistogramVec
	Open       *prometheus.GaugeVec
}

// NewMetrics makes and registers (when reg is not nil) the collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"destination"})
	}
	m := &Metrics{
		Enqueued:   vec("cartera_outbox_enqueued_total", "Messages put in the outbox."),
		Delivered:  vec("cartera_outbox_delivered_total", "Messages delivered."),
		Retried:    vec("cartera_outbox_retries_total", "Failed attempts that will be retried."),
		Dead:       vec("cartera_outbox_dead_letters_total", "Messages moved to the dead letters."),
		Suppressed: vec("cartera_outbox_suppressed_total", "Messages dropped at delivery for want of consent."),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cartera_outbox_delivery_duration_seconds", Help: "Duration of one delivery call (a batch).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"destination"}),
		Open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cartera_outbox_circuit_open", Help: "1 while a destination's circuit breaker is open.",
		}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.Enqueued, m.Delivered, m.Retried, m.Dead, m.Suppressed, m.Seconds, m.Open)
	}
	return m
}

// OutboxOptions carry the outbox's dependencies.
type OutboxOptions struct {
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
	Sink    OutcomeSink
	// Jitter returns a number in [0, 1) for backoff jitter.
	Jitter func() float64
	// Scrub overwrites the file's free pages (profiles.Store.Scrub); it
	// runs after a message marked Scrub left the outbox. Nil: never.
	Scrub func() error
	// Fence, when set, is asked before each delivery: an error (a
	// cluster node's lease of the partition whose file holds this outbox,
	// lost) leaves the messages queued and untouched for the partition's
	// next owner. Nil: always deliver.
	Fence func() error
	// Note, when set, keeps a note of the messages each settle took out
	// of the queue for good for the next owner of the outbox's partition
	// (delivered.go). Nil: the file is the only record.
	Note Noter
	// Pace, when set, gives the pacer of a destination whose config sets
	// a Rate (a cluster node's, shared by its partitions' outboxes). Nil:
	// each destination gets a pacer of its own at its Rate.
	Pace func(dest string, cfg DestinationConfig) Pacer
}

// Pacer holds a delivery back until it may go (a token bucket:
// *rate.Limiter is one).
type Pacer interface {
	Wait(ctx context.Context) error
}

// Outbox is the durable queue of deliveries.
type Outbox struct {
	db      *bbolt.DB
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics
	sink    OutcomeSink
	jitter  func() float64
	scrub   func() error
	fence   func() error
	noter   Noter
	pace    func(dest string, cfg DestinationConfig) Pacer

	mu    sync.Mutex
	lanes map[string]*lane
}

// lane is one destination's delivery state.
type lane struct {
	d    Destination
	cfg  DestinationConfig
	wake chan struct{}
	// pace holds each delivery back to cfg.Rate (nil: no bound).
	pace Pacer
	mu   sync.Mutex
	// claimed are the messages workers hold (claimed and not yet
	// settled), by seq: a copy without the payload, for InFlight.
	claimed map[uint64]InFlight
	fails   int
	openTil time.Time
}

// NewOutbox creates the outbox's buckets in db.
func NewOutbox(db *bbolt.DB, opts OutboxOptions) (*Outbox, error) {
	o := &Outbox{db: db, now: opts.Now, log: opts.Logger, metrics: opts.Metrics, sink: opts.Sink, jitter: opts.Jitter, scrub: opts.Scrub, fence: opts.Fence, noter: opts.Note, pace: opts.Pace, lanes: map[string]*lane{}}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics(nil)
	}
	if o.jitter == nil {
		o.jitter = rand.Float64
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketQueue, bucketKeys, bucketWhere, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Register adds a destination; messages to it are delivered by Run.
func (o *Outbox) Register(d Destination, cfg DestinationConfig) error {
	if err := cfg.Validate("destinations." + d.Name()); err != nil {
		return err
	}
	l := &lane{d: d, cfg: cfg, wake: make(chan struct{}, 1), claimed: map[uint64]InFlight{}}
	switch {
	case cfg.Rate == 0:
	case o.pace != nil:
		l.pace = o.pace(d.Name(), cfg)
	default:
		l.pace = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lanes[d.Name()] = l
	return nil
}

// Has reports whether a destination is registered.
func (o *Outbox) Has(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lanes[name] != nil
}

func queueKey(at time.Time, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(at.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// Enqueue puts messages in the outbox within tx; a message whose key was
// enqueued before is skipped. It returns how many were new.
func (o *Outbox) Enqueue(tx *bbolt.Tx, msgs ...*Message) (int, error) {
	keys, where := tx.Bucket(bucketKeys), tx.Bucket(bucketWhere)
	queue := tx.Bucket(bucketQueue)
	n := 0
	for _, m := range msgs {
		if m.Key == "" || m.Destination == "" {
			return n, errors.New("enqueue: a message needs a key and a destination")
		}
		if keys.Get([]byte(m.Key)) != nil {
			continue
		}
		lq, err := queue.CreateBucketIfNotExists([]byte(m.Destination))
		if err != nil {
			return n, err
		}
		seq, err := queue.NextSequence()
		if err != nil {
			return n, err
		}
		m.Seq = seq
		if m.CreatedAt.IsZero() {
			m.CreatedAt = o.now().UTC()
		}
		if m.NextAt.IsZero() {
			m.NextAt = m.CreatedAt
		}
		v, err := json.Marshal(m)
		if err != nil {
			return n, fmt.Errorf("encode message: %w", err)
		}
		qk := queueKey(m.NextAt, seq)
		if err := lq.Put(qk, v); err != nil {
			return n, err
		}
		if err := keys.Put([]byte(m.Key), keyValue(seq, m.CreatedAt)); err != nil {
			return n, err
		}
		if err := where.Put(u64(seq), append([]byte(m.Destination+"\x00"), qk...)); err != nil {
			return n, err
		}
		o.metrics.Enqueued.WithLabelValues(m.Destination).Inc()
		n++
	}
	return n, nil
}

// Add enqueues messages in a transaction of its own and wakes the workers.
func (o *Outbox) Add(msgs ...*Message) (int, error) {
	var n int
	err := o.db.Update(func(tx *bbolt.Tx) error {
		var err error
		n, err = o.Enqueue(tx, msgs...)
		return err
	})
	if err == nil {
		o.Wake()
	}
	return n, err
}

// Wake tells every worker to look for due messages now.
func (o *Outbox) Wake() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lanes {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// Run delivers until ctx ends: one dispatcher per destination.
func (o *Outbox) Run(ctx context.Context) {
	o.mu.Lock()
	lanes := make([]*lane, 0, len(o.lanes))
	for _, l := range o.lanes {
		lanes = append(lanes, l)
	}
	o.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.dispatch(ctx, l)
		}()
	}
	wg.Wait()
}

// dispatch claims due batches of one destination and delivers them, at
// most cfg.Concurrency at a time.
func (o *Outbox) dispatch(ctx context.Context, l *lane) {
	sem := make(chan struct{}, l.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		if wait := o.breakerWait(l); wait > 0 {
			if !sleep(ctx, wait, nil) {
				return
			}
			continue
		}
		if err := o.fenced(); err != nil {
			o.log.Warn("outbox: not delivering", "destination", l.d.Name(), "err", err)
			if !sleep(ctx, time.Second, nil) {
				return
			}
			continue
		}
		batch, next, err := o.claim(l)
		if err != nil {
			o.log.Error("outbox claim", "destination", l.d.Name(), "err", err)
			if !sleep(ctx, time.Second, l.wake) {
				return
			}
			continue
		}
		if len(batch) == 0 {
			wait := time.Minute
			if !next.IsZero() {
				wait = max(next.Sub(o.now()), time.Millisecond)
			}
			if !sleep(ctx, wait, l.wake) {
				return
			}
			continue
		}
		if l.cfg.BatchWindow > 0 && len(batch) < l.cfg.BatchSize {
			// Gather what arrives within the window into this batch.
			o.unclaim(l, batch)
			if !sleep(ctx, l.cfg.BatchWindow, nil) {
				return
			}
			if batch, _, err = o.claim(l); err != nil || len(batch) == 0 {
				continue
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			o.unclaim(l, batch)
			return
		}
		if l.pace != nil {
			if err := l.pace.Wait(ctx); err != nil {
				<-sem
				o.unclaim(l, batch)
				return // ctx ended
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o.deliver(ctx, l, batch)
		}()
	}
}

// fenced asks OutboxOptions.Fence, if set, whether this outbox may still
// deliver.
func (o *Outbox) fenced() error {
	if o.fence == nil {
		return nil
	}
	return o.fence()
}

// sleep waits d, or until wake, or ctx ends (false).
func sleep(ctx context.Context, d time.Duration, wake chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

func (o *Outbox) breakerWait(l *lane) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.openTil.IsZero() {
		return 0
	}
	if w := l.openTil.Sub(o.now()); w > 0 {
		return w
	}
	// Half open: let the next batch through as a probe.
	l.openTil = time.Time{}
	o.metrics.Open.WithLabelValues(l.d.Name()).Set(0)
	return 0
}

// claim takes up to BatchSize due messages nobody is delivering; next is
// when the earliest message not yet due falls due. A record that cannot be
// read moves to the dead letters, so it never holds back the queue.
func (o *Outbox) claim(l *lane) (batch []*Message, next time.Time, err error) {
	now := o.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []unreadable
	err = o.db.View(func(tx *bbolt.Tx) error {
		lq := tx.Bucket(bucketQueue).Bucket([]byte(l.d.Name()))
		if lq == nil {
			return nil
		}
		c := lq.Cursor()
		for k, v := c.First(); k != nil && len(batch) < l.cfg.BatchSize; k, v = c.Next() {
			at := int64(binary.BigEndian.Uint64(k[:8]))
			if at > now {
				next = time.Unix(0, at)
				break
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if _, ok := l.claimed[seq]; ok {
				continue
			}
			m := &Message{}
			if err := json.Unmarshal(v, m); err != nil {
				bad = append(bad, unreadable{key: bytes.Clone(k), raw: bytes.Clone(v), err: err})
				continue
			}
			batch = append(batch, m)
		}
		return nil
	})
	if err == nil && len(bad) > 0 {
		err = o.bury(l.d.Name(), bad)
	}
	since := time.Unix(0, now).UTC()
	for _, m := range batch {
		c := *m
		c.Payload = nil
		l.claimed[m.Seq] = InFlight{Message: c, Since: since}
	}
	return batch, next, err
}

// unreadable is a queued record that does not decode as a Message.
type unreadable struct {
	key, raw []byte
	err      error
}

// bury moves unreadable records of a destination's queue to the dead
// letters, as messages that keep the record (base64) for an admin to
// inspect: it can be dropped, and a retry fails again at once.
func (o *Outbox) bury(dest string, bad []unreadable) error {
	now := o.now().UTC()
	err := o.db.Update(func(tx *bbolt.Tx) error {
		lq := tx.Bucket(bucketQueue).Bucket([]byte(dest))
		where, dead := tx.Bucket(bucketWhere), tx.Bucket(bucketDead)
		for _, u := range bad {
			if lq == nil || lq.Get(u.key) == nil {
				continue
			}
			seq := binary.BigEndian.Uint64(u.key[8:])
			raw, err := json.Marshal(map[string][]byte{"unreadable": u.raw})
			if err != nil {
				return err
			}
			m := &Message{Seq: seq, Destination: dest, Payload: raw, NextAt: now, DeadAt: now, LastError: fmt.Sprintf("decode message %d: %v", seq, u.err)}
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := lq.Delete(u.key); err != nil {
				return err
			}
			if err := where.Delete(u64(seq)); err != nil {
				return err
			}
			if err := dead.Put(u64(seq), v); err != nil {
				return err
			}
			o.metrics.Dead.WithLabelValues(dest).Inc()
			o.log.Error("outbox: unreadable message moved to the dead letters", "destination", dest, "seq", seq, "err", u.err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move unreadable messages to the dead letters: %w", err)
	}
	return nil
}

func (o *Outbox) unclaim(l *lane, batch []*Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range batch {
		delete(l.claimed, m.Seq)
	}
}

// deliver calls the destination and settles each message: delivered ones
// leave the queue, failed ones are retried later or move to the dead
// letters. A crash before settling delivers the batch again (same keys).
func (o *Outbox) deliver(ctx context.Context, l *lane, batch []*Message) {
	defer o.unclaim(l, batch)
	name := l.d.Name()
	if o.fenced() != nil {
		return // dispatch says why, and waits
	}
	start := time.Now()
	results := l.d.Deliver(ctx, batch)
	o.metrics.Seconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if len(results) != len(batch) {
		err := fmt.Errorf("destination %s returned %d results for %d messages", name, len(results), len(batch))
		results = make([]Result, len(batch))
		for i := range results {
			results[i].Err = err
		}
	}
	now := o.now()
	// A shutdown cut the delivery short: what failed for it stays queued
	// as it was (no attempt counted, no backoff, no breaker). A permanent
	// failure is a real answer (a bounce) and is settled.
	shutdown := ctx.Err() != nil
	interrupted := func(res Result) bool { return shutdown && res.Err != nil && !IsPermanent(res.Err) }
	failed, ok := 0, 0
	scrub := false
	var gone []*Message // out of the queue for good, not failed
	err := o.db.Update(func(tx *bbolt.Tx) error {
		failed, ok, scrub, gone = 0, 0, false, gone[:0]
		lq := tx.Bucket(bucketQueue).Bucket([]byte(name))
		where, dead := tx.Bucket(bucketWhere), tx.Bucket(bucketDead)
		for i, m := range batch {
			old := queueKey(m.NextAt, m.Seq)
			if lq.Get(old) == nil || interrupted(results[i]) {
				continue // dropped or retried by an admin meanwhile; or left for the restart
			}
			if err := lq.Delete(old); err != nil {
				return err
			}
			scrub = scrub || m.Scrub
			res := results[i]
			switch {
			case res.Err == nil:
				ok++
				gone = append(gone, m)
				if err := where.Delete(u64(m.Seq)); err != nil {
					return err
				}
				continue
			case errors.Is(res.Err, ErrNoConsent):
				o.metrics.Suppressed.WithLabelValues(name).Inc()
				gone = append(gone, m)
				if err := where.Delete(u64(m.Seq)); err != nil {
					return err
				}
				continue
			}
			failed++
			m.Attempts++
			m.LastError = res.Err.Error()
			if IsPermanent(res.Err) || m.Attempts >= l.cfg.MaxAttempts {
				o.metrics.Dead.WithLabelValues(name).Inc()
				m.DeadAt = now.UTC()
				if err := where.Delete(u64(m.Seq)); err != nil {
					return err
				}
				v, err := json.Marshal(m)
				if err != nil {
					return err
				}
				if err := dead.Put(u64(m.Seq), v); err != nil {
					return err
				}
				continue
			}
			o.metrics.Retried.WithLabelValues(name).Inc()
			m.NextAt = now.Add(o.backoff(l.cfg, m.Attempts)).UTC()
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			nk := queueKey(m.NextAt, m.Seq)
			if err := lq.Put(nk, v); err != nil {
				return err
			}
			if err := where.Put(u64(m.Seq), append([]byte(name+"\x00"), nk...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		o.log.Error("outbox settle", "destination", name, "err", err)
		return
	}
	o.note(ctx, gone)
	if scrub {
		o.scrubFree()
	}
	o.metrics.Delivered.WithLabelValues(name).Add(float64(ok))
	o.trip(l, ok, failed, now)
	// The dispatcher may be asleep with nothing due; retries are due soon.
	o.unclaim(l, batch)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if o.sink != nil {
		// Outcomes of settled deliveries are recorded even during a
		// shutdown (the store closes after the outbox stops), within a
		// bound.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
		defer cancel()
		for i, m := range batch {
			if len(results[i].Events) == 0 || interrupted(results[i]) {
				continue
			}
			if err := o.sink.Record(rctx, m, results[i].Events); err != nil {
				o.log.Error("record delivery outcome", "destination", name, "key", m.Key, "err", err)
			}
		}
	}
}

// outcomeTimeout bounds recording one batch's outcomes on profiles.
const outcomeTimeout = 10 * time.Second

// trip counts consecutive failed batches and opens the circuit.
func (o *Outbox) trip(l *lane, ok, failed int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ok > 0:
		l.fails = 0
	case failed > 0:
		l.fails++
		if l.fails >= l.cfg.BreakAfter {
			l.openTil = now.Add(l.cfg.BreakFor)
			l.fails = 0
			o.metrics.Open.WithLabelValues(l.d.Name()).Set(1)
			o.log.Warn("circuit open", "destination", l.d.Name(), "for", l.cfg.BreakFor.String())
		}
	}
}

// backoff is exponential with full jitter: a random delay in
// [base/2, min(max, base·2^(attempts-1))].
func (o *Outbox) backoff(cfg DestinationConfig, attempts int) time.Duration {
	d := cfg.Backoff
	for i := 1; i < attempts && d < cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, cfg.MaxBackoff)
	half := d / 2
	return half + time.Duration(o.jitter()*float64(d-half))
}

// State of a message in the admin API.
const (
	StateQueued = "queued"
	StateDead   = "dead"
)

// List returns up to limit messages in a state, oldest first.
func (o *Outbox) List(state string, limit int) ([]*Message, error) {
	var out []*Message
	err := o.db.View(func(tx *bbolt.Tx) error {
		switch state {
		case StateDead:
			c := tx.Bucket(bucketDead).Cursor()
			for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
				m := &Message{}
				if err := json.Unmarshal(v, m); err != nil {
					return err
				}
				out = append(out, m)
			}
		case StateQueued:
			return tx.Bucket(bucketQueue).ForEachBucket(func(name []byte) error {
				c := tx.Bucket(bucketQueue).Bucket(name).Cursor()
				for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
					m := &Message{}
					if err := json.Unmarshal(v, m); err != nil {
						return err
					}
					out = append(out, m)
				}
				return nil
			})
		default:
			return fmt.Errorf("state: want queued or dead, got %q", state)
		}
		return nil
	})
	return out, err
}

// ErrNotFound is returned for a message the outbox does not hold.
var ErrNotFound = errors.New("message not found")

// Retry moves a dead message back to the queue, due now, with its tries
// reset.
func (o *Outbox) Retry(seq uint64) error {
	err := o.db.Update(func(tx *bbolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		v := dead.Get(u64(seq))
		if v == nil {
			return ErrNotFound
		}
		m := &Message{}
		if err := json.Unmarshal(v, m); err != nil {
			return err
		}
		if err := dead.Delete(u64(seq)); err != nil {
			return err
		}
		m.Attempts, m.NextAt, m.DeadAt = 0, o.now().UTC(), time.Time{}
		lq, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists([]byte(m.Destination))
		if err != nil {
			return err
		}
		nv, err := json.Marshal(m)
		if err != nil {
			return err
		}
		qk := queueKey(m.NextAt, m.Seq)
		if err := lq.Put(qk, nv); err != nil {
			return err
		}
		return tx.Bucket(bucketWhere).Put(u64(seq), append([]byte(m.Destination+"\x00"), qk...))
	})
	if err == nil {
		o.Wake()
	}
	return err
}

// Drop deletes a message, queued or dead. Its key stays spent: the same
// step is never enqueued again.
func (o *Outbox) Drop(seq uint64) error {
	var m Message
	err := o.db.Update(func(tx *bbolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		if v := dead.Get(u64(seq)); v != nil {
			_ = json.Unmarshal(v, &m) // only to see Scrub; an unreadable one goes all the same
			return dead.Delete(u64(seq))
		}
		where := tx.Bucket(bucketWhere)
		w := where.Get(u64(seq))
		if w == nil {
			return ErrNotFound
		}
		dest, qk, _ := bytes.Cut(w, []byte{0})
		if lq := tx.Bucket(bucketQueue).Bucket(dest); lq != nil {
			if v := lq.Get(qk); v != nil {
				_ = json.Unmarshal(v, &m)
			}
			if err := lq.Delete(qk); err != nil {
				return err
			}
		}
		return where.Delete(u64(seq))
	})
	if err == nil && m.Scrub {
		o.scrubFree()
	}
	return err
}

// scrubFree runs the configured scrub after a message marked Scrub left
// the outbox; a failure is logged (the next one, or `cartera compact`,
// removes what is left).
func (o *Outbox) scrubFree() {
	if o.scrub == nil {
		return
	}
	if err := o.scrub(); err != nil {
		o.log.Warn("outbox: erased person's sent messages not scrubbed from free pages", "err", err)
	}
}
