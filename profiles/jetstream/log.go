package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// ErrClosed is returned by Append and Read after Close.
var ErrClosed = errors.New("jetstream event log closed")

// ErrTrimmed is returned by Read for an offset below the first one the
// stream keeps.
var ErrTrimmed = errors.New("jetstream event log: offset trimmed")

// ErrTooLarge is returned by Append for a record over the server's
// maximum payload.
var ErrTooLarge = errors.New("jetstream event log: record too large")

// metaPartitions is the stream metadata key that records the partition
// count the stream was created with.
const metaPartitions = "cartera_partitions"

// Config says where the stream is and how it is laid out.
type Config struct {
	// URL is the NATS server (or comma-separated servers) to connect to.
	URL string
	// Stream is the JetStream stream's name.
	Stream string
	// Subject is the prefix of the stream's subjects: <Subject>.<partition>.
	Subject string
	// Partitions is the number of partitions, fixed when the stream is
	// created; opening an existing stream with another count fails.
	Partitions int
	// Replicas is the stream's replication factor when it is created:
	// 1 for tests and one server, 3 in production.
	Replicas int
	// AckWait bounds how long Append waits for JetStream's acknowledgements.
	AckWait time.Duration
	// FirstOffset is the first sequence of a stream this creates (1 when
	// 0): a store that applied up to n starts a new stream at n+1, so
	// offsets are not reused.
	FirstOffset uint64
	// PartitionKey returns the key an event record is partitioned by;
	// nil means the record's userId, or its anonymousId.
	PartitionKey func(rec []byte) string
	// Logger receives connection events; discarded when nil.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: stream CARTERA_EVENTS on subjects
// cartera.events.<n>, 64 partitions, one replica, 5 s to acknowledge.
func DefaultConfig() Config {
	return Config{Stream: "CARTERA_EVENTS", Subject: "cartera.events", Partitions: 64, Replicas: 1, AckWait: 5 * time.Second}
}

// Validate says which field is wrong.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("cluster.url: required")
	case c.Stream == "" || strings.ContainsAny(c.Stream, ". *>\t\r\n"):
		return fmt.Errorf("cluster.stream: %q is not a stream name (no dots, spaces or wildcards)", c.Stream)
	case !validSubject(c.Subject):
		return fmt.Errorf("cluster.subject: %q is not a subject prefix (dot-separated tokens, no wildcards)", c.Subject)
	case c.Partitions < 1 || c.Partitions > 4096:
		return fmt.Errorf("cluster.partitions: %d is not between 1 and 4096", c.Partitions)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("cluster.replicas: %d is not between 1 and 5", c.Replicas)
	case c.AckWait <= 0:
		return fmt.Errorf("cluster.ack_wait: %s is not positive", c.AckWait)
	}
	return nil
}

func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " *>\t\r\n") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}

// Log is an event log on a JetStream stream. Its methods are safe for
// concurrent use; Read is meant for one reader (the applier).
type Log struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream

	committed atomic.Uint64

	reqs     chan *appendReq
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	readMu sync.Mutex
	feed   *feed

	// meta is the cluster's KV bucket: the partition count, and each
	// partition's checkpoint (node.go).
	meta jetstream.KeyValue
}

type appendReq struct {
	recs        [][]byte
	first, last uint64
	done        chan error
}

// Open connects to NATS, creates the stream if it is missing (checking
// the layout of one that exists) and starts the publisher.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PartitionKey == nil {
		cfg.PartitionKey = identityKey
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name("cartera"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// No buffering while disconnected: a publish fails at once
		// instead of being sent later, after Append reported an error.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			lg.Warn("jetstream: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { lg.Info("jetstream: reconnected", "server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", redact(cfg.URL), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.AckWait), jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	l := &Log{cfg: cfg, log: lg, nc: nc, js: js,
		reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.openMeta(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if err := l.openStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	go l.writer()
	return l, nil
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}

func (l *Log) openStream(ctx context.Context) error {
	cfg := l.cfg
	s, err := l.js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        cfg.Stream,
			Description: "Cartera events, partitioned by person",
			Subjects:    []string{cfg.Subject + ".*"},
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			// No limits: nothing is dropped before it is applied;
			// Trim removes what was.
			Discard:  jetstream.DiscardNew,
			FirstSeq: max(cfg.FirstOffset, 1),
			Metadata: map[string]string{metaPartitions: strconv.Itoa(cfg.Partitions)},
		})
	}
	if err != nil {
		return fmt.Errorf("open stream %s: %w", cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", cfg.Stream, err)
	}
	if got := info.Config.Metadata[metaPartitions]; got != strconv.Itoa(cfg.Partitions) {
		return fmt.Errorf("open stream %s: it was created with %q partitions, the config says %d (the partition count cannot change)", cfg.Stream, got, cfg.Partitions)
	}
	if want := []string{cfg.Subject + ".*"}; len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != want[0] {
		return fmt.Errorf("open stream %s: its subjects are %v, the config says %v", cfg.Stream, info.Config.Subjects, want)
	}
	if info.Config.Replicas != cfg.Replicas {
		return fmt.Errorf("open stream %s: it has %d replicas, the config says %d (change them with the nats CLI)", cfg.Stream, info.Config.Replicas, cfg.Replicas)
	}
	l.stream = s
	l.committed.Store(info.State.LastSeq)
	return nil
}

// Partition returns the partition of an event record.
func (l *Log) Partition(rec []byte) int {
	return partition(l.cfg.PartitionKey(rec), l.cfg.Partitions)
}

func partition(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// profileKey is the partition key of the records addressed to profile pid.
func profileKey(pid string) string { return "p:" + pid }

// identityKey is the profile a routed record is addressed to (Router),
// else the userId of an event record, or its anonymousId ("" for neither,
// or a record that is not JSON: partition 0's hash).
func identityKey(rec []byte) string {
	if pid, _ := profiles.RecordRoute(rec); pid != "" {
		return profileKey(pid)
	}
	var ids struct {
		UserID      json.RawMessage `json:"userId"`
		AnonymousID json.RawMessage `json:"anonymousId"`
	}
	if json.Unmarshal(rec, &ids) != nil {
		return ""
	}
	key := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		if string(raw) == "null" {
			return ""
		}
		return string(raw) // a number id, as is
	}
	if k := key(ids.UserID); k != "" {
		return "u:" + k
	}
	if k := key(ids.AnonymousID); k != "" {
		return "a:" + k
	}
	return ""
}

// Append publishes records in order and returns their offsets (stream
// sequences) once JetStream has acknowledged all of them. Concurrent
// calls are published together and wait for their acknowledgements
// together. If it fails or ctx ends first, some of the records may still
// be stored; none was reported durable.
func (l *Log) Append(ctx context.Context, recs [][]byte) (first, last uint64, err error) {
	if len(recs) == 0 {
		return 0, 0, errors.New("jetstream event log: append of no records")
	}
	limit := l.MaxRecord()
	for i, r := range recs {
		if len(r) > limit {
			return 0, 0, fmt.Errorf("%w: record %d is %d bytes, over the %d a message of the server's can carry", ErrTooLarge, i, len(r), limit)
		}
	}
	req := &appendReq{recs: recs, done: make(chan error, 1)}
	select {
	case <-l.stop:
		return 0, 0, ErrClosed
	default:
	}
	select {
	case l.reqs <- req:
	case <-l.stop:
		return 0, 0, ErrClosed
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select {
	case err := <-req.done:
		return req.first, req.last, err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// MaxRecord is the largest record Append takes: the server's largest
// message less the headers each record is published with (NATS counts
// headers and payload together against max_payload).
func (l *Log) MaxRecord() int {
	return int(l.nc.MaxPayload()) - publishHeaderLen(l.cfg.Stream)
}

// publishHeaderLen is the size of the headers publish sends with each
// record, as nats.go encodes them: the status line, the expected stream
// (jetstream.WithExpectStream), the blank line.
func publishHeaderLen(stream string) int {
	return len("NATS/1.0\r\n") + len(jetstream.ExpectedStreamHeader+": "+stream+"\r\n") + len("\r\n")
}

// writer publishes whatever appends are queued, in order, then waits for
// all of their acknowledgements: one round trip for the group. Publishing
// from one goroutine keeps each append's records consecutive in the
// stream (while this node is its only publisher).
func (l *Log) writer() {
	defer close(l.done)
	batch := make([]*appendReq, 0, 256)
	for {
		var first *appendReq
		select {
		case first = <-l.reqs:
		case <-l.stop:
			for {
				select {
				case r := <-l.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		n := len(first.recs)
	gather:
		for n < 4096 {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				n += len(r.recs)
			default:
				break gather
			}
		}
		err := l.publish(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// publish sends one group and waits for every acknowledgement. It fails
// the whole group on the first record not acknowledged.
func (l *Log) publish(batch []*appendReq) error {
	var futures []jetstream.PubAckFuture
	for _, r := range batch {
		for _, rec := range r.recs {
			subj := l.cfg.Subject + "." + strconv.Itoa(l.Partition(rec))
			f, err := l.js.PublishAsync(subj, rec, jetstream.WithExpectStream(l.cfg.Stream))
			if err != nil {
				return fmt.Errorf("jetstream event log: publish: %w", err)
			}
			futures = append(futures, f)
		}
	}
	seqs := make([]uint64, len(futures))
	// The publisher's own timeout (AckWait) fails each future; this one
	// is a backstop in case a future is never resolved.
	backstop := time.NewTimer(l.cfg.AckWait + time.Second)
	defer backstop.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
		case err := <-f.Err():
			return fmt.Errorf("jetstream event log: not acknowledged: %w", err)
		case <-backstop.C:
			return fmt.Errorf("jetstream event log: not acknowledged within %s", l.cfg.AckWait)
		case <-l.stop:
			return ErrClosed
		}
	}
	i := 0
	var top uint64
	for _, r := range batch {
		r.first, r.last = seqs[i], seqs[i+len(r.recs)-1]
		i += len(r.recs)
	}
	for _, s := range seqs {
		top = max(top, s)
	}
	for {
		c := l.committed.Load()
		if top <= c || l.committed.CompareAndSwap(c, top) {
			return nil
		}
	}
}

// Committed is the sequence of the last record acknowledged to this node
// (or the stream's last when it opened).
func (l *Log) Committed() uint64 { return l.committed.Load() }

// feed follows the stream from one sequence with an ordered consumer.
type feed struct {
	next uint64 // the sequence Read expects next
	it   jetstream.MessagesContext
	msgs chan jetstream.Msg
	errc chan error
	stop chan struct{}
	done chan struct{}
}

// progress is how far a feed's reader is behind what the stream holds
// for the feed's consumer: total is the consumer sequence of the last
// message the feed received plus the stream's count of those after it
// then, read the consumer sequence of the last message read. Both count
// from a feed's start.
type progress struct {
	total, read atomic.Uint64
	// next is the stream sequence the reader reads from next.
	next atomic.Uint64
}

// behind is how many messages the stream held, as of the last the feed
// received, after the last one read.
func (p *progress) behind() uint64 {
	t, r := p.total.Load(), p.read.Load()
	if t < r {
		return 0
	}
	return t - r
}

// startFeed follows the stream from sequence from on: every subject, or
// only those of filter; prog, when set, follows how far behind its reader
// is.
func (l *Log) startFeed(ctx context.Context, from uint64, prog *progress, filter ...string) (*feed, error) {
	cons, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		FilterSubjects: filter,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream event log: follow from %d: %w", from, err)
	}
	// Heartbeats every second: when the server the consumer lives on
	// goes down, two missed ones make the ordered consumer start again on
	// another (with nats.go's default, half the 30 s pull expiry, applying
	// stood still for ~10 s; TestServeOnReplicatedCluster).
	it, err := cons.Messages(jetstream.PullMaxMessages(1024), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return nil, fmt.Errorf("jetstream event log: follow from %d: %w", from, err)
	}
	f := &feed{next: from, it: it, msgs: make(chan jetstream.Msg, 1024), errc: make(chan error, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	if prog != nil {
		prog.total.Store(0)
		prog.read.Store(0)
		prog.next.Store(from)
	}
	go func() {
		defer close(f.done)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					f.errc <- err
				}
				return
			}
			if meta, err := m.Metadata(); err == nil && prog != nil {
				prog.total.Store(meta.Sequence.Consumer + meta.NumPending)
			}
			select {
			case f.msgs <- m:
			case <-f.stop:
				return
			}
		}
	}()
	return f, nil
}

func (f *feed) close() {
	close(f.stop)
	f.it.Stop()
	<-f.done
}

// Read returns up to max records from offset from on, waiting until at
// least one is there or ctx ends.
func (l *Log) Read(ctx context.Context, from uint64, max int) ([][]byte, error) {
	if max < 1 {
		max = 1
	}
	l.readMu.Lock()
	defer l.readMu.Unlock()
	select {
	case <-l.stop:
		return nil, ErrClosed
	default:
	}
	if l.feed != nil && l.feed.next != from {
		l.feed.close()
		l.feed = nil
	}
	if l.feed == nil {
		f, err := l.startFeed(ctx, from, nil)
		if err != nil {
			return nil, err
		}
		l.feed = f
	}
	f := l.feed
	var out [][]byte
	take := func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream event log: read at %d: %w", f.next, err)
		}
		if seq := meta.Sequence.Stream; seq != f.next {
			if seq > f.next {
				// The ordered consumer skips only what the stream
				// no longer has.
				return fmt.Errorf("%w: records %d to %d are not in the stream", ErrTrimmed, f.next, seq-1)
			}
			return fmt.Errorf("jetstream event log: expected sequence %d, got %d", f.next, seq)
		}
		out = append(out, m.Data())
		f.next++
		return nil
	}
	broken, err := f.gather(ctx, max, take, func(err error) error {
		return fmt.Errorf("jetstream event log: read from %d: %w", from, err)
	}, halt{l.stop, closedErr}, halt{})
	if broken {
		f.close()
		l.feed = nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// halt is a channel that ends a read's wait, and what the read returns
// then (read only once the channel is closed: whoever closes it sets it
// first).
type halt struct {
	c   <-chan struct{}
	err func() error
}

func closedErr() error { return ErrClosed }

// gather waits for the feed's next message (or a stream error, ctx's end,
// or one of the halts; a zero halt never comes), hands it to take, then
// hands take what else is already there, up to max messages in all.
// broken says the feed must be dropped (the next read starts it over): a
// stream error, or an error of take, which is returned for the first
// message only (what was taken before a later one is kept). streamErr
// says where a stream error happened.
func (f *feed) gather(ctx context.Context, max int, take func(jetstream.Msg) error, streamErr func(error) error, h1, h2 halt) (broken bool, err error) {
	select {
	case m := <-f.msgs:
		if err := take(m); err != nil {
			return true, err
		}
	case err := <-f.errc:
		return true, streamErr(err)
	case <-ctx.Done():
		return false, ctx.Err()
	case <-h1.c:
		return false, h1.err()
	case <-h2.c:
		return false, h2.err()
	}
	for n := 1; n < max; n++ {
		select {
		case m := <-f.msgs:
			if err := take(m); err != nil {
				return true, nil
			}
		default:
			return false, nil
		}
	}
	return false, nil
}

// Trim removes the records below offset below (a stream purge up to it).
func (l *Log) Trim(ctx context.Context, below uint64) error {
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSequence(below)); err != nil {
		return fmt.Errorf("jetstream event log: trim below %d: %w", below, err)
	}
	return nil
}

// Retention says which applied records a stream keeps: those stored
// within Age (0: none is kept for its age) and, of those, the newest
// within MaxBytes (0: no cap).
type Retention struct {
	Age      time.Duration
	MaxBytes int64
}

// Retain trims the records below applied+1 that retention lets go: those
// older than its Age at now (by the time JetStream stored them), and the
// oldest while the stream is over MaxBytes. It returns how many records
// it trimmed. What is not applied is never trimmed.
func (l *Log) Retain(ctx context.Context, applied uint64, r Retention, now time.Time) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream event log: retain: %w", err)
	}
	st := info.State
	below, err := l.retainBelow(ctx, st, applied+1, r, now)
	if err != nil {
		return 0, fmt.Errorf("jetstream event log: retain: %w", err)
	}
	if below <= st.FirstSeq {
		return 0, nil
	}
	if err := l.Trim(ctx, below); err != nil {
		return 0, err
	}
	return below - st.FirstSeq, nil
}

// FirstOffset is the sequence of the first record the stream keeps.
func (l *Log) FirstOffset(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream event log: stream info: %w", err)
	}
	return info.State.FirstSeq, nil
}

// Close stops the publisher (queued appends fail with ErrClosed), the
// reader, and closes the connection.
func (l *Log) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.readMu.Lock()
	if l.feed != nil {
		l.feed.close()
		l.feed = nil
	}
	l.readMu.Unlock()
	l.nc.Close()
	return nil
}
