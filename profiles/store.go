package profiles

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Buckets of the profile store and the encoding of their keys:
//
//	profiles    profile id (24 hex chars) → Profile (codec.Format2 binary; Format1 and JSON from earlier versions);
//	            profile id 0x00 name → sidecar (sidecar.go), among them "~m" 0x00 messageId → 8-byte
//	            big-endian unix nanos of first receipt: the messageIds applied to the profile (dedupe)
//	identities  kind 0x00 normalized value → profile id
//	aliases     id of a merged-away profile → id of the profile it became
//	events      profile id | timestamp (8-byte big-endian unix nanos) | seq (8-byte big-endian) → JSON Event
//	messages    messageId → 8-byte big-endian unix nanos of first receipt: messageIds of erased profiles
//	            (and, in files of earlier versions, of every profile)
//	msgtime     unix nanos (8) | messageId → profile id holding it, or empty for messages (expiry order)
//	tombstones  HMAC-SHA256(kind 0x00 value) → JSON tombstone (erased identifiers)
//	meta        "tombstone_key" → 32 random bytes (also the root of the message-id key, internal.go);
//	            "profile_count" → 8-byte big-endian
var (
	bucketProfiles   = []byte("profiles")
	bucketIdentities = []byte("identities")
	bucketAliases    = []byte("aliases")
	bucketEvents     = []byte("events")
	bucketMessages   = []byte("messages")
	bucketMsgTime    = []byte("msgtime")
	bucketTombstones = []byte("tombstones")
	bucketMeta       = []byte("meta")
)

var (
	metaTombstoneKey = []byte("tombstone_key")
	metaProfileCount = []byte("profile_count")
)

const idLen = 24

// ErrNotFound is returned when no profile holds the identifier.
var ErrNotFound = errors.New("profile not found")

// ErrUnknownKind is returned for a lookup by an identifier kind that neither
// the built-ins nor the config declare.
var ErrUnknownKind = errors.New("unknown identifier kind")

// ErrClosed is returned by Ingest after Close.
var ErrClosed = errors.New("store closed")

// Options carry the dependencies of a Store.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Rand is the source of profile ids and keys; crypto/rand when nil.
	Rand io.Reader
	// Processors extend the write transaction, in order: rules, then journeys.
	Processors []Processor
	// Trust says which sources are client sources (guard.go); nil trusts
	// every source, as before source trust existed.
	Trust SourceTrust
}

// SourceCartera is the source of events Cartera derives itself (an
// audience entered, a journey step taken).
const SourceCartera = "cartera"

// A Processor extends ingestion's write transaction: what it derives from
// an event (a computed trait, an audience entered, a journey started)
// commits with the event or not at all. Packages downstream implement it;
// profiles never imports them.
type Processor interface {
	// Begin starts work in one write transaction.
	Begin(tx *bbolt.Tx) TxProcessor
}

// TxProcessor is a Processor's work within one transaction. Profiles are
// read-only to it; it keeps its own state in its own buckets of tx.
type TxProcessor interface {
	// Event is called after e is stored on p; it returns events to store
	// on p in turn (they go to later processors only).
	Event(p *Profile, e *Event) ([]*Event, error)
	// Merged is called when loserID is merged into survivor, after the
	// survivor holds the loser's events and before the event that caused
	// the merge is stored.
	Merged(survivor *Profile, loserID string) error
	// Erased is called when a profile is erased.
	Erased(p *Profile) error
	// Flush is called before the transaction commits: write what is
	// pending.
	Flush() error
	// Done is called once the transaction has ended; committed says
	// whether its effects are durable (publish only then).
	Done(committed bool)
}

// Store is the profile database: a bbolt file and the single writer that
// group-commits events into it.
type Store struct {
	db      *bbolt.DB
	cfg     Config
	res     *resolver
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	rand    io.Reader
	tombKey []byte
	msgKey  []byte
	trust   SourceTrust

	profileCount atomic.Int64
	tombCount    atomic.Int64

	// elog is the event log Append goes through (applier.go); nil: none.
	elog *logState
	// hot is the writer's cache of decoded profiles (hot.go); nil: none.
	hot *hotProfiles
	// partIngest is set while the store applies a partition whose log
	// takes IngestFor's events (partingest.go).
	partIngest atomic.Pointer[partIngest]
	// notes are the handlers of the notes it applies (notes.go).
	notes notes

	procs     atomic.Pointer[[]Processor]
	reqs      chan *commitReq
	closeOnce sync.Once

	// leaving are the profiles moving out of this file: between the
	// export of their state and the commit of their MergeOut (move.go).
	leavingMu sync.Mutex
	leaving   map[string]bool
	stop      chan struct{}
	done      chan struct{}
}

// Open opens (creating if needed) the bbolt file at path and starts the
// committer. The caller must Close the store.
func Open(ctx context.Context, path string, cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open profile store: %w", err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      5 * time.Second,
		FreelistType: bbolt.FreelistMapType,
		// The freelist is written with each commit (a few pages) so that
		// opening a large file reads it instead of walking every page:
		// without it, start-up read the whole file (79 s for 10 GB from
		// a cold cache). A file written without it gets one at its first
		// commit.
		NoSync: cfg.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("open profile store %s: %w", path, err)
	}
	s := &Store{
		db:      db,
		cfg:     cfg,
		res:     newResolver(cfg.Identity),
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		rand:    opts.Rand,
		trust:   opts.Trust,
		reqs:    make(chan *commitReq, 1024),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	s.hot = newHotProfiles(cfg.HotProfiles, s.metrics)
	s.Use(opts.Processors...)
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketProfiles, bucketIdentities, bucketAliases, bucketEvents, bucketMessages, bucketMsgTime, bucketTombstones, bucketMeta, bucketDeadEvents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if k := meta.Get(metaTombstoneKey); k != nil {
			s.tombKey = bytes.Clone(k)
		} else {
			s.tombKey = make([]byte, 32)
			if _, err := io.ReadFull(s.rand, s.tombKey); err != nil {
				return fmt.Errorf("make tombstone key: %w", err)
			}
			if err := meta.Put(metaTombstoneKey, s.tombKey); err != nil {
				return err
			}
		}
		s.msgKey = internalIDKey(s.tombKey)
		if v := meta.Get(metaProfileCount); len(v) == 8 {
			s.profileCount.Store(int64(binary.BigEndian.Uint64(v)))
		}
		s.tombCount.Store(int64(tx.Bucket(bucketTombstones).Stats().KeyN))
		return nil
	})
}

// Close stops the committer after the requests already queued, and closes
// the file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.db.Close()
}

// Use appends processors to the write transaction. Processors that need
// the store's file (DB) are added after Open, before the first Ingest.
func (s *Store) Use(procs ...Processor) {
	var cur []Processor
	if p := s.procs.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clone(cur), procs...)
	s.procs.Store(&next)
}

func (s *Store) processors() []Processor { return *s.procs.Load() }

// DB exposes the bbolt handle so that packages downstream can keep their own
// buckets in the same file (and the same backup).
func (s *Store) DB() *bbolt.DB { return s.db }

// ProfileCount is the number of live profiles.
func (s *Store) ProfileCount() int64 { return s.profileCount.Load() }

// PagesWritten is what the store's commits have written since it opened:
// pages, and their bytes. Divided by the events applied, it is the write
// amplification of the B-tree, which bounds how fast events are applied.
func (s *Store) PagesWritten() (pages, bytes int64) {
	st := s.db.Stats().TxStats
	return st.GetPageCount(), st.GetPageAlloc()
}

// Normalize returns the canonical value of an identifier, as stored in the
// graph ("" when invalid for its kind).
func (s *Store) Normalize(id Identifier) (Identifier, error) { return s.res.normalizeIdentifier(id) }

// normalizeIdentifier is Store.Normalize.
func (r *resolver) normalizeIdentifier(id Identifier) (Identifier, error) {
	switch {
	case id.Kind == KindProfileID, r.known[id.Kind]:
	default:
		return id, fmt.Errorf("%w %q", ErrUnknownKind, id.Kind)
	}
	switch id.Kind {
	case KindUserID, KindAnonymousID, KindProfileID:
		id.Value = strings.TrimSpace(id.Value)
		return id, nil
	}
	id.Value = r.Normalize(id.Kind, id.Value)
	return id, nil
}

func identityKey(id Identifier) []byte {
	k := make([]byte, 0, len(id.Kind)+1+len(id.Value))
	k = append(k, id.Kind...)
	k = append(k, 0)
	return append(k, id.Value...)
}

func (s *Store) tombstoneKey(id Identifier) []byte {
	m := hmac.New(sha256.New, s.tombKey)
	m.Write(identityKey(id))
	return m.Sum(nil)
}

// eventKey orders a profile's events by time. Times before 1970 sort first.
func eventKey(profileID string, ts time.Time, seq uint64) []byte {
	k := make([]byte, idLen+16)
	copy(k, profileID)
	n := ts.UnixNano()
	if n < 0 {
		n = 0
	}
	binary.BigEndian.PutUint64(k[idLen:], uint64(n))
	binary.BigEndian.PutUint64(k[idLen+8:], seq)
	return k
}

func (s *Store) newProfileID() (string, error) { return NewProfileID(s.now(), s.rand) }

// resolveTx finds the live profile id an identifier names, or "".
func (s *Store) resolveTx(tx *bbolt.Tx, id Identifier) string {
	if id.Kind == KindProfileID {
		if len(id.Value) != idLen {
			return ""
		}
		if tx.Bucket(bucketProfiles).Get([]byte(id.Value)) != nil {
			return id.Value
		}
		return string(tx.Bucket(bucketAliases).Get([]byte(id.Value)))
	}
	return string(tx.Bucket(bucketIdentities).Get(identityKey(id)))
}

func getProfile(tx *bbolt.Tx, id string) (*Profile, error) {
	v := tx.Bucket(bucketProfiles).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	var p Profile
	if err := decodeProfile(v, &p); err != nil {
		return nil, fmt.Errorf("decode profile %s: %w", id, err)
	}
	return &p, nil
}

// Lookup returns the profile an identifier names. Values are normalized as
// on ingestion, so "email: Ana@Example.com " finds ana@example.com.
func (s *Store) Lookup(id Identifier) (*Profile, error) {
	id, err := s.Normalize(id)
	if err != nil {
		return nil, err
	}
	var p *Profile
	err = s.db.View(func(tx *bbolt.Tx) error {
		pid := s.resolveTx(tx, id)
		if pid == "" {
			return ErrNotFound
		}
		p, err = getProfile(tx, pid)
		return err
	})
	return p, err
}

// Events returns up to limit events of a profile, most recent first
// (limit < 1: all that are kept).
func (s *Store) Events(profileID string, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		prefix := []byte(profileID)
		end := append(bytes.Clone(prefix), 0xff)
		var k, v []byte
		if k, _ = c.Seek(end); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			var e Event
			if err := decodeEvent(v, &e); err != nil {
				return fmt.Errorf("decode event of %s: %w", profileID, err)
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// PruneMessages forgets messageIds older than the dedupe window, at most max
// of them in one transaction; it returns how many it removed.
func (s *Store) PruneMessages(max int) (int, error) {
	cutoff := s.now().Add(-s.cfg.DedupeWindow).UnixNano()
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		msgs, byTime, people := tx.Bucket(bucketMessages), tx.Bucket(bucketMsgTime), tx.Bucket(bucketProfiles)
		type expired struct{ k, owner []byte }
		var keys []expired
		c := byTime.Cursor()
		for k, v := c.First(); k != nil && len(keys) < max; k, v = c.Next() {
			if int64(binary.BigEndian.Uint64(k[:8])) >= cutoff {
				break
			}
			keys = append(keys, expired{bytes.Clone(k), bytes.Clone(v)})
		}
		for _, x := range keys {
			id := string(x.k[8:])
			var err error
			if len(x.owner) == idLen {
				err = people.Delete(messageKey(string(x.owner), id))
			} else {
				err = msgs.Delete([]byte(id))
			}
			if err != nil {
				return err
			}
			if err := byTime.Delete(x.k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// RunPruner prunes expired messageIds every interval until ctx ends.
func (s *Store) RunPruner(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for {
				n, err := s.PruneMessages(10000)
				if err != nil {
					s.log.Error("prune message ids", "err", err)
					break
				}
				if n < 10000 {
					break
				}
			}
		}
	}
}

// ReadProfile reads a profile within a transaction of the store's file (for
// processors and backfills).
func ReadProfile(tx *bbolt.Tx, id string) (*Profile, error) { return getProfile(tx, id) }

// ForEachEvent calls fn with each stored event of a profile, oldest first,
// within a transaction of the store's file.
func ForEachEvent(tx *bbolt.Tx, profileID string, fn func(*Event) error) error {
	c := tx.Bucket(bucketEvents).Cursor()
	prefix := []byte(profileID)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var e Event
		if err := decodeEvent(v, &e); err != nil {
			return fmt.Errorf("decode event of %s: %w", profileID, err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

// decodeEvent decodes a stored event keeping numbers exact (json.Number),
// as they were when ingested.
func decodeEvent(v []byte, e *Event) error {
	if scanStored(v, e) {
		return nil
	}
	*e = Event{}
	return decodeStoredSlow(v, e)
}

// decodeStoredSlow decodes a stored event with encoding/json.
func decodeStoredSlow(v []byte, e *Event) error {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	return dec.Decode(e)
}

// ScanIDs returns up to limit profile ids after the given one, in key
// order ("" starts at the first); for backfills over all profiles.
func (s *Store) ScanIDs(after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketProfiles).Cursor()
		var k []byte
		if after == "" {
			k, _ = c.First()
		} else if k, _ = c.Seek([]byte(after)); k != nil && string(k) == after {
			k, _ = c.Next()
		}
		for ; k != nil && len(ids) < limit; k, _ = c.Next() {
			if isProfileKey(k) {
				ids = append(ids, string(k))
			}
		}
		return nil
	})
	return ids, err
}

// AppendDerived stores events a processor derived outside ingestion (a
// sweep that moved a profile into an audience) on a profile, within tx, and
// hands them to the processors after from, as ingestion would. The caller
// must call done once tx has ended.
func (s *Store) AppendDerived(tx *bbolt.Tx, p *Profile, events []*Event, from Processor) (done func(committed bool), err error) {
	st := newTxState(tx)
	procs := s.processors()
	if i := slices.Index(procs, from); i >= 0 {
		for _, proc := range procs[i+1:] {
			st.procs = append(st.procs, proc.Begin(tx))
		}
	}
	done = func(committed bool) {
		for _, tp := range st.procs {
			tp.Done(committed)
		}
	}
	for _, e := range events {
		if e.Source == "" {
			e.Source = SourceCartera
		}
		if err := s.store(st, p, e); err != nil {
			return done, err
		}
		if err := s.process(st, p, e, 0); err != nil {
			return done, err
		}
	}
	return done, st.flush()
}

// IngestFor ingests an event Cartera observed about a known profile (an
// email opened, a delivery outcome): the profile's user id (or an anonymous
// id) is put on the event so identity resolution lands it there. Its
// messageId is the natural key of what happened ("unsubscribe:<key>"); it
// is stored keyed with the store's secret in the internal namespace
// (internal.go), so a repeat is still a duplicate and no client can
// forestall it. While the store applies a cluster's partition, the event
// goes through the partition's stream and is applied from there
// (partingest.go).
func (s *Store) IngestFor(ctx context.Context, profileID string, e *Event) (Result, error) {
	if e.MessageID != "" {
		keyed := *e
		keyed.MessageID = s.internalID(e.MessageID)
		e = &keyed
	}
	p, err := s.Lookup(Identifier{Kind: KindProfileID, Value: profileID})
	if err != nil {
		return Result{}, err
	}
	for _, r := range p.Identities {
		switch {
		case r.Kind == KindUserID:
			e.UserID = r.Value
		case r.Kind == KindAnonymousID && e.AnonymousID == "":
			e.AnonymousID = r.Value
		}
	}
	if e.UserID == "" && e.AnonymousID == "" {
		return Result{}, fmt.Errorf("profile %s has no user or anonymous id to attach an event to", profileID)
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = s.now().UTC()
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = e.ReceivedAt
	}
	if pi := s.partIngest.Load(); pi != nil {
		return s.ingestThroughLog(ctx, pi, profileID, e)
	}
	res, err := s.Ingest(ctx, []*Event{e})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}
