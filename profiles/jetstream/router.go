package jetstream

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// The identity index, KV bucket <Stream>_IDENTITY (no TTL, one revision a
// key), says which profile each identifier belongs to across the cluster:
//
//	keying       how the id. keys are made: "sha256", or "hmac-sha256"
//	             and a check of RouterConfig.Secret; created by the first
//	             router, checked by the others.
//	id.<hash>    the id of the profile an identifier belongs to; <hash> is
//	             the hex of the first 16 bytes of SHA-256(kind 0x00
//	             value), or of its HMAC-SHA256 under RouterConfig.Secret,
//	             so no email or phone is written in NATS as is.
//	             Created with Create (only if absent): of two routers that
//	             see a new identifier at once, one wins and the other
//	             takes its profile.
//	n.<id>.<k>   how many identifiers of kind <k> (the hex of the first 4
//	             bytes of SHA-256(kind)) profile <id> holds, decimal,
//	             counted with compare-and-set as they are linked. One past
//	             the kind's limit (IdentityConfig.Limits: one user id, five
//	             emails by default) is not linked, and two profiles that
//	             would hold more together are not merged, as on a single
//	             node.
//	prot.<id>    present when profile <id> is protected: an event from a
//	             server source (not a client source, see
//	             profiles.SourceTrust) was routed to it. An unverified
//	             event from a client source never merges such a profile
//	             nor links identifiers to it (as the store's guard does).
//	fwd.<id>     "<survivor> pending" or "<survivor> sent": profile <id>
//	             was merged into <survivor>. Created with Create, so a
//	             profile merges away once only; "sent" once its MergeOut
//	             record is in the log. Survivors are always the smaller
//	             (older) id, so forwards never make a cycle.
//	seed         how far Seed got (seed.go): "running <id>" while it
//	             fills the index from a store (every profile up to <id>,
//	             in key order, is in it; "running" before the first
//	             batch), "done" once it read every profile. An index
//	             whose seed is running counts as Empty.
//
// Profile ids are made by the router (profiles.NewProfileID): the
// creation time first, so the smaller of two ids is the older profile,
// which survives a merge, as on a single node.

// RouterConfig says how a Router reads identifiers and makes ids.
type RouterConfig struct {
	// Identity is the store's identity config: the router reads the same
	// identifiers from an event as the store would.
	Identity profiles.IdentityConfig
	// Now is the clock of new profile ids; time.Now when nil.
	Now func() time.Time
	// Rand is the source of new profile ids; crypto/rand when nil.
	Rand io.Reader
	// Secret, when set, keys the hash of identifiers in the index
	// (HMAC-SHA256), so that who can read the bucket cannot test an
	// email against it. Every router of a cluster needs the same one:
	// the first records a check of it in the index, and a router with
	// another (or none) refuses to start. At least 16 bytes.
	Secret []byte
	// CacheTTL is how long Append trusts what it read of the index for
	// an identifier without reading it again (0: it always reads). A
	// profile merged away meanwhile still gets the events routed to it
	// from the cache; its partition forwards them to the survivor.
	// Measured by Now.
	CacheTTL time.Duration
	// Trust says which sources are client sources, as the store's
	// Options.Trust does; nil trusts every source.
	Trust profiles.SourceTrust
	// CacheSize bounds the identifiers cached (DefaultCacheSize when 0);
	// the cache is emptied when it is full.
	CacheSize int
	// Admit, when set, is asked with the partitions a batch of routed
	// events is about to go to, before they are appended: an error (the
	// holder of one lags past its bound) appends none of them, and
	// Append returns it.
	Admit func(partitions []int) error
}

// DefaultCacheSize is the default RouterConfig.CacheSize.
const DefaultCacheSize = 100_000

// Router appends events to the log addressed to the profile the identity
// index gives them, so that each lands in the partition of its profile
// (partitions keyed by profile). An event whose identifiers lead to two
// profiles merges them: the index forwards the newer to the older, and a
// MergeOut record asks the newer one's partition to send its state over
// (profiles/crossmerge.go). It is a profiles.EventLog: Store.Append can
// go through it.
type Router struct {
	l    *Log
	kv   jetstream.KeyValue
	ids  *profiles.IdentifierReader
	now  func() time.Time
	rand io.Reader

	merges atomic.Int64
	// cached and read count the events resolved from the cache and by
	// reading the index; links the identifiers this router put in it.
	cached, read, links atomic.Int64

	trust  profiles.SourceTrust
	secret []byte
	// protected holds profiles known to be protected (that never
	// changes back), so that each is marked in the index once.
	protMu    sync.Mutex
	protected map[string]bool

	admit   func(partitions []int) error
	ttl     time.Duration
	size    int
	cacheMu sync.Mutex
	cache   map[string]cachedRoute // index key → profile
}

type cachedRoute struct {
	pid string
	at  time.Time
}

// identityBucket is the name of the identity index.
func (c Config) identityBucket() string { return c.Stream + "_IDENTITY" }

// NewRouter opens (creating it if need be) the identity index of l's
// cluster.
func NewRouter(ctx context.Context, l *Log, cfg RouterConfig) (*Router, error) {
	if err := cfg.Identity.Validate(); err != nil {
		return nil, err
	}
	kv, err := openBucket(ctx, l.js, jetstream.KeyValueConfig{
		Bucket: l.cfg.identityBucket(), Description: "Cartera cluster: identifier → profile id, and merged profiles",
		History: 1, Storage: jetstream.FileStorage, Replicas: l.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Secret != nil && len(cfg.Secret) < 16 {
		return nil, fmt.Errorf("cluster router: the secret is %d bytes, want at least 16", len(cfg.Secret))
	}
	if cfg.CacheTTL < 0 || cfg.CacheSize < 0 {
		return nil, fmt.Errorf("cluster router: cache TTL %s and size %d must not be negative", cfg.CacheTTL, cfg.CacheSize)
	}
	r := &Router{l: l, kv: kv, ids: profiles.NewIdentifierReader(cfg.Identity), now: cfg.Now, rand: cfg.Rand,
		admit: cfg.Admit, ttl: cfg.CacheTTL, size: cmp.Or(cfg.CacheSize, DefaultCacheSize), cache: map[string]cachedRoute{},
		trust: cfg.Trust, secret: bytes.Clone(cfg.Secret), protected: map[string]bool{}}
	if err := r.checkKeying(ctx); err != nil {
		return nil, err
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.rand == nil {
		r.rand = rand.Reader
	}
	return r, nil
}

// Merges is how many merges this router started.
func (r *Router) Merges() int64 { return r.merges.Load() }

// RouterStats are a router's counts since it opened.
type RouterStats struct {
	// Cached and Read are the events resolved from the router's cache
	// and by reading the index.
	Cached, Read int64
	// Linked is the identifiers this router linked to a profile in the
	// index; Merges the merges it started.
	Linked, Merges int64
}

// Stats returns the router's counts.
func (r *Router) Stats() RouterStats {
	return RouterStats{Cached: r.cached.Load(), Read: r.read.Load(), Linked: r.links.Load(), Merges: r.merges.Load()}
}

// Append resolves each event record's identifiers in the index, then
// appends them, each addressed to its profile, and returns their offsets
// once JetStream has acknowledged them. A record that is not an event
// (nothing to resolve) is refused.
//
// Events that share no identifier are resolved concurrently (each is a
// few round trips to the index); those that share one, in their order, so
// that within a batch a person's identify still comes before their next
// event, as on a single node.
func (r *Router) Append(ctx context.Context, recs [][]byte) (first, last uint64, err error) {
	events := make([]*profiles.Event, len(recs))
	for i, rec := range recs {
		if id, _ := profiles.RecordRoute(rec); id != "" {
			return 0, 0, fmt.Errorf("route record %d: it is routed already", i)
		}
		e, err := profiles.DecodeRecord(rec)
		if err != nil {
			return 0, 0, fmt.Errorf("route record %d: %w", i, err)
		}
		events[i] = e
	}
	return r.route(ctx, events, recs)
}

// AppendEvents is Append for events not yet encoded (a node's ingestion):
// each is encoded once, and not decoded again to be resolved.
func (r *Router) AppendEvents(ctx context.Context, events []*profiles.Event) (first, last uint64, err error) {
	recs := make([][]byte, len(events))
	for i, e := range events {
		if recs[i], err = profiles.EncodeRecord(e); err != nil {
			return 0, 0, fmt.Errorf("route event %d: encode: %w", i, err)
		}
	}
	return r.route(ctx, events, recs)
}

// route resolves events (recs are their records) and appends each
// addressed to its profile.
func (r *Router) route(ctx context.Context, events []*profiles.Event, recs [][]byte) (first, last uint64, err error) {
	ids := make([][]profiles.Identifier, len(events))
	for i, e := range events {
		ids[i] = r.ids.Identifiers(e)
	}
	out := make([][]byte, len(recs))
	route := func(i int) error {
		pid, foreign, err := r.resolveEvent(ctx, events[i], ids[i], true)
		if err != nil {
			return fmt.Errorf("route record %d: %w", i, err)
		}
		body, err := profiles.RoutedEvent(recs[i], foreign)
		if err != nil {
			return fmt.Errorf("route record %d: %w", i, err)
		}
		out[i] = profiles.RoutedRecord(pid, body)
		return nil
	}
	if err := r.inGroups(ctx, events, ids, route); err != nil {
		return 0, 0, err
	}
	if r.admit != nil {
		var parts []int
		for _, rec := range out {
			if p := r.l.Partition(rec); !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
		if err := r.admit(parts); err != nil {
			return 0, 0, err
		}
	}
	return r.l.Append(ctx, out)
}

// resolveWorkers bounds the events of one Append resolved at once.
const resolveWorkers = 16

// inGroups calls route for every event: those linked by a shared
// identifier (their groups) one after another in order, the groups
// concurrently, on up to resolveWorkers goroutines. It returns the error
// of the first event that failed, in order; the groups not started once
// one failed are not routed.
func (r *Router) inGroups(ctx context.Context, events []*profiles.Event, ids [][]profiles.Identifier, route func(int) error) error {
	groups := linked(events, ids)
	if len(groups) == 1 {
		for _, i := range groups[0] {
			if err := route(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(events))
	next := make(chan []int)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(resolveWorkers, len(groups)) {
		wg.Go(func() {
			for g := range next {
				for _, i := range g {
					if failed.Load() || ctx.Err() != nil {
						break
					}
					if errs[i] = route(i); errs[i] != nil {
						failed.Store(true)
						break
					}
				}
			}
		})
	}
	for _, g := range groups {
		next <- g
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// linked partitions events (by index, in order) into groups that share
// no identifier with one another: an event joins every group holding one
// of its identifiers, ids[i] (an alias's previousId as either kind it may
// be).
func linked(events []*profiles.Event, ids [][]profiles.Identifier) [][]int {
	parent := make([]int, len(events))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	holder := map[profiles.Identifier]int{}
	for i, e := range events {
		mine := ids[i]
		if prev := strings.TrimSpace(e.PreviousID); e.Type == profiles.TypeAlias && prev != "" {
			mine = append(slices.Clip(mine), profiles.Identifier{Kind: profiles.KindUserID, Value: prev}, profiles.Identifier{Kind: profiles.KindAnonymousID, Value: prev})
		}
		for _, id := range mine {
			if j, ok := holder[id]; ok {
				parent[find(i)] = find(j)
			} else {
				holder[id] = i
			}
		}
	}
	index := map[int]int{}
	var groups [][]int
	for i := range events {
		root := find(i)
		g, ok := index[root]
		if !ok {
			g = len(groups)
			index[root] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// Read reads the whole log (profiles.EventLog).
func (r *Router) Read(ctx context.Context, from uint64, max int) ([][]byte, error) {
	return r.l.Read(ctx, from, max)
}

// Committed is the log's (profiles.EventLog).
func (r *Router) Committed() uint64 { return r.l.Committed() }

// Empty reports whether the index knows nobody yet: it has never held
// an identifier (one erased since still counts), or what it holds is a
// Seed that has not finished (it crashed or was stopped half-way). A
// store that holds people cannot be put behind an empty index, which
// would give each of them a second profile: Seed it first.
func (r *Router) Empty(ctx context.Context) (bool, error) {
	if phase, _, err := r.seedState(ctx); err != nil {
		return false, err
	} else if phase == seedRunning {
		return true, nil
	}
	bucket := r.l.cfg.identityBucket()
	s, err := r.l.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return false, fmt.Errorf("identity index: %w", err)
	}
	_, err = s.GetLastMsgForSubject(ctx, "$KV."+bucket+"."+identifierKeyPrefix+">")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("identity index: %w", err)
	}
	return false, nil
}

// Forward appends records routed already (profiles.Forwarder): a store
// that follows the whole log through the router sends merge steps and
// forwarded events back into it, as a partition's owner does.
func (r *Router) Forward(ctx context.Context, recs [][]byte) error {
	_, _, err := r.l.Append(ctx, recs)
	return err
}

// MaxRecord is the log's largest record (profiles.Forwarder).
func (r *Router) MaxRecord() int { return r.l.MaxRecord() }

// ErrNoIdentifier is returned by Resolve for an event with no identifier.
var ErrNoIdentifier = errors.New("the event has no identifier")

// Resolve returns the profile id of an event, always reading the index:
// the profile of its most trusted identifier, which merges each other
// profile its identifiers lead to that it may (limits, source trust; the
// older of two surviving), or a new one. Its identifiers that belong to
// no profile yet are linked to it, within the limits.
func (r *Router) Resolve(ctx context.Context, e *profiles.Event) (string, error) {
	pid, _, err := r.resolveEvent(ctx, e, r.ids.Identifiers(e), false)
	return pid, err
}

// resolveEvent is Resolve, which also returns the event's identifiers
// that stay on other profiles (merges refused); with cached, an event
// whose every identifier is cached, for one profile, goes to it.
func (r *Router) resolveEvent(ctx context.Context, e *profiles.Event, ids []profiles.Identifier, cached bool) (string, []profiles.Identifier, error) {
	if e.Type == profiles.TypeAlias {
		if prev := strings.TrimSpace(e.PreviousID); prev != "" {
			// As on a single node: a previousId is a userId if the index
			// knows it as one, else an anonymousId.
			id := profiles.Identifier{Kind: profiles.KindUserID, Value: prev}
			if _, err := r.kv.Get(ctx, r.identifierKey(id)); errors.Is(err, jetstream.ErrKeyNotFound) {
				id.Kind = profiles.KindAnonymousID
			} else if err != nil {
				return "", nil, fmt.Errorf("resolve previousId: %w", err)
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return "", nil, ErrNoIdentifier
	}
	untrusted := r.trust != nil && !e.Verified && r.trust.IsClient(e.Source)
	if cached {
		if pid := r.fromCache(ids); pid != "" {
			r.cached.Add(1)
			return pid, nil, r.protect(ctx, pid, untrusted)
		}
	}
	r.read.Add(1)
	for range 20 {
		pid, foreign, mine, again, err := r.resolve(ctx, ids, untrusted)
		if err == nil && !again {
			err = r.protect(ctx, pid, untrusted)
		}
		if err != nil || !again {
			r.keep(mine, pid)
			return pid, foreign, err
		}
	}
	return "", nil, errors.New("resolve identity: the index kept changing (20 tries)")
}

// resolve makes one attempt; again says a compare-and-set lost to another
// router and the attempt must start over.
func (r *Router) resolve(ctx context.Context, ids []profiles.Identifier, untrusted bool) (pid string, foreign, mine []profiles.Identifier, again bool, err error) {
	type entry struct {
		key  string
		pid  string // as written in the index
		rev  uint64
		live string // the profile it leads to, following forwards
	}
	entries := make([]entry, len(ids))
	var people []string
	for i, id := range ids {
		entries[i].key = r.identifierKey(id)
		ent, err := r.kv.Get(ctx, entries[i].key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return "", nil, nil, false, fmt.Errorf("resolve identity: %w", err)
		}
		entries[i].pid, entries[i].rev = string(ent.Value()), ent.Revision()
		live, err := r.follow(ctx, entries[i].pid)
		if err != nil {
			return "", nil, nil, false, err
		}
		entries[i].live = live
		if !slices.Contains(people, live) {
			people = append(people, live)
		}
	}
	joined := map[string]bool{} // the people the event's profile is now
	if untrusted && len(people) > 0 {
		// The store's guard: an unverified event from a client source
		// resolves among the profiles that are not protected (a new one
		// if need be) and leaves the protected ones alone, unless it
		// names nothing else.
		var open []string
		for _, p := range people {
			prot, err := r.isProtected(ctx, p)
			if err != nil {
				return "", nil, nil, false, err
			}
			if !prot {
				open = append(open, p)
			}
		}
		rest := false
		for _, en := range entries {
			rest = rest || en.live == "" || slices.Contains(open, en.live)
		}
		if len(open) < len(people) && rest {
			people = open
		} else if len(open) < len(people) {
			people = people[:1]
		}
	}
	if len(people) == 0 {
		if pid, err = profiles.NewProfileID(r.now(), r.rand); err != nil {
			return "", nil, nil, false, err
		}
	} else {
		// As on a single node: the event belongs to the profile of its
		// most trusted identifier, which merges each other one it may
		// (the older of the two surviving).
		pid = people[0]
		joined[pid] = true
		for _, other := range people[1:] {
			ok, err := r.mayMerge(ctx, pid, other, untrusted)
			if err != nil {
				return "", nil, nil, false, err
			}
			if !ok {
				continue
			}
			survivor, loser := min(pid, other), max(pid, other)
			won, err := r.merge(ctx, loser, survivor)
			if err != nil {
				return "", nil, nil, false, err
			}
			if !won {
				return "", nil, nil, true, nil
			}
			pid = survivor
			joined[other] = true
		}
	}
	for i, en := range entries {
		switch {
		case en.pid == "":
			if untrusted && len(people) > 0 {
				if prot, err := r.isProtected(ctx, pid); err != nil {
					return "", nil, nil, false, err
				} else if prot {
					continue // not linked to a protected profile
				}
			}
			kind, limit := ids[i].Kind, r.ids.Limit(ids[i].Kind)
			if ok, err := r.addCount(ctx, pid, kind, 1, limit); err != nil {
				return "", nil, nil, false, err
			} else if !ok {
				continue // the profile holds as many of its kind as it may
			}
			if _, err := r.kv.Create(ctx, en.key, []byte(pid)); err != nil {
				// Not linked: uncount it (if that fails, the profile
				// may hold one fewer of the kind than its limit).
				_, _ = r.addCount(ctx, pid, kind, -1, 0)
				if errors.Is(err, jetstream.ErrKeyExists) {
					return "", nil, nil, true, nil // another router linked it first
				}
				return "", nil, nil, false, fmt.Errorf("link identifier: %w", err)
			}
			r.links.Add(1)
			mine = append(mine, ids[i])
		case !joined[en.live]:
			// Its profile stays apart (a merge refused, or protected
			// from this event).
			foreign = append(foreign, ids[i])
		case en.pid != pid:
			// Shorten the forward chain for the next lookups; a lost
			// compare-and-set is someone else doing the same.
			_, _ = r.kv.Update(ctx, en.key, []byte(pid), en.rev)
			mine = append(mine, ids[i])
		default:
			mine = append(mine, ids[i])
		}
	}
	return pid, foreign, mine, false, nil
}

// fromCache returns the profile every one of ids is cached for, if they
// are all cached, recently enough, for the same one ("" otherwise).
func (r *Router) fromCache(ids []profiles.Identifier) string {
	if r.ttl <= 0 {
		return ""
	}
	now := r.now()
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	pid := ""
	for _, id := range ids {
		c, ok := r.cache[r.identifierKey(id)]
		if !ok || now.Sub(c.at) > r.ttl || (pid != "" && c.pid != pid) {
			return ""
		}
		pid = c.pid
	}
	return pid
}

// keep caches ids as belonging to pid.
func (r *Router) keep(ids []profiles.Identifier, pid string) {
	if r.ttl <= 0 || len(ids) == 0 {
		return
	}
	now := r.now()
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if len(r.cache)+len(ids) > r.size {
		clear(r.cache)
	}
	for _, id := range ids {
		r.cache[r.identifierKey(id)] = cachedRoute{pid: pid, at: now}
	}
}

// protect marks pid protected after a trusted event was routed to it
// (untrusted: nothing to mark).
func (r *Router) protect(ctx context.Context, pid string, untrusted bool) error {
	if r.trust == nil || untrusted {
		return nil
	}
	r.protMu.Lock()
	known := r.protected[pid]
	r.protMu.Unlock()
	if known {
		return nil
	}
	if _, err := r.kv.Create(ctx, "prot."+pid, []byte("1")); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("mark profile %s protected: %w", pid, err)
	}
	r.knowProtected(pid)
	return nil
}

// isProtected says whether pid is protected.
func (r *Router) isProtected(ctx context.Context, pid string) (bool, error) {
	if r.trust == nil {
		return false, nil
	}
	r.protMu.Lock()
	known := r.protected[pid]
	r.protMu.Unlock()
	if known {
		return true, nil
	}
	_, err := r.kv.Get(ctx, "prot."+pid)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the identity index: %w", err)
	}
	r.knowProtected(pid)
	return true, nil
}

func (r *Router) knowProtected(pid string) {
	r.protMu.Lock()
	defer r.protMu.Unlock()
	if len(r.protected) >= r.size {
		clear(r.protected)
	}
	r.protected[pid] = true
}

// countKey is the index key of how many identifiers of kind pid holds.
func countKey(pid, kind string) string {
	h := sha256.Sum256([]byte(kind))
	return "n." + pid + "." + hex.EncodeToString(h[:4])
}

// count reads how many identifiers of kind pid holds, and the revision.
func (r *Router) count(ctx context.Context, pid, kind string) (n int, rev uint64, err error) {
	ent, err := r.kv.Get(ctx, countKey(pid, kind))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read the identity index: %w", err)
	}
	n, err = strconv.Atoi(string(ent.Value()))
	if err != nil {
		return 0, 0, fmt.Errorf("read the identity index: %s is %q, not a count", countKey(pid, kind), ent.Value())
	}
	return n, ent.Revision(), nil
}

// addCount adds delta to the count of kind pid holds, with compare-and-set;
// with limit > 0, not past limit (ok false then).
func (r *Router) addCount(ctx context.Context, pid, kind string, delta, limit int) (ok bool, err error) {
	for range 20 {
		n, rev, err := r.count(ctx, pid, kind)
		if err != nil {
			return false, err
		}
		if limit > 0 && n+delta > limit {
			return false, nil
		}
		v := []byte(strconv.Itoa(max(n+delta, 0)))
		if rev == 0 {
			_, err = r.kv.Create(ctx, countKey(pid, kind), v)
		} else {
			_, err = r.kv.Update(ctx, countKey(pid, kind), v, rev)
		}
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another router counted meanwhile
		default:
			return false, fmt.Errorf("count identifiers: %w", err)
		}
	}
	return false, fmt.Errorf("count identifiers of profile %s: the count kept changing", pid)
}

// mayMerge says whether profiles a and b may merge: not if together they
// would hold more identifiers of a kind than its limit (two user ids),
// nor, for an untrusted event, if either is protected.
func (r *Router) mayMerge(ctx context.Context, a, b string, untrusted bool) (bool, error) {
	if untrusted {
		for _, p := range []string{a, b} {
			if prot, err := r.isProtected(ctx, p); err != nil || prot {
				return false, err
			}
		}
	}
	for _, kind := range r.ids.Kinds() {
		na, _, err := r.count(ctx, a, kind)
		if err != nil {
			return false, err
		}
		nb, _, err := r.count(ctx, b, kind)
		if err != nil {
			return false, err
		}
		if na+nb > r.ids.Limit(kind) {
			return false, nil
		}
	}
	return true, nil
}

// follow returns the profile pid became, following forwards, and sends
// the MergeOut of a forward left pending (its router died before).
func (r *Router) follow(ctx context.Context, pid string) (string, error) {
	for range 1000 {
		ent, err := r.kv.Get(ctx, forwardKey(pid))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return pid, nil
		}
		if err != nil {
			return "", fmt.Errorf("resolve identity: %w", err)
		}
		to, state, _ := strings.Cut(string(ent.Value()), " ")
		if !profiles.ValidProfileID(to) {
			return "", fmt.Errorf("resolve identity: the forward of %s is %q, not a profile id", pid, ent.Value())
		}
		if state != "sent" {
			if err := r.sendMergeOut(ctx, pid, to, ent.Revision()); err != nil {
				return "", err
			}
		}
		pid = to
	}
	return "", fmt.Errorf("resolve identity: the forwards from %s do not end", pid)
}

// merge forwards loser to survivor in the index and appends the MergeOut
// record; won is false when another router merged loser first.
func (r *Router) merge(ctx context.Context, loser, survivor string) (won bool, err error) {
	rev, err := r.kv.Create(ctx, forwardKey(loser), []byte(survivor+" pending"))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("merge %s into %s: %w", loser, survivor, err)
	}
	r.merges.Add(1)
	if prot, err := r.isProtected(ctx, loser); err != nil {
		return true, err
	} else if prot {
		if err := r.protect(ctx, survivor, false); err != nil {
			return true, err
		}
	}
	// The survivor counts the loser's identifiers as its own.
	for _, kind := range r.ids.Kinds() {
		n, _, err := r.count(ctx, loser, kind)
		if err != nil {
			return true, err
		}
		if n > 0 {
			if _, err := r.addCount(ctx, survivor, kind, n, 0); err != nil {
				return true, fmt.Errorf("merge %s into %s: %w", loser, survivor, err)
			}
		}
	}
	return true, r.sendMergeOut(ctx, loser, survivor, rev)
}

// sendMergeOut appends the MergeOut of loser (applying it twice is the
// same as once), then marks the forward sent.
func (r *Router) sendMergeOut(ctx context.Context, loser, survivor string, rev uint64) error {
	body, err := profiles.MergeBody(profiles.MergeRecord{Op: profiles.MergeOut, Loser: loser, Survivor: survivor})
	if err != nil {
		return err
	}
	if _, _, err := r.l.Append(ctx, [][]byte{profiles.RoutedRecord(loser, body)}); err != nil {
		return fmt.Errorf("merge %s into %s: %w", loser, survivor, err)
	}
	if _, err := r.kv.Update(ctx, forwardKey(loser), []byte(survivor+" sent"), rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("merge %s into %s: mark it sent: %w", loser, survivor, err)
	}
	return nil
}

// identifierKey is the index key of an identifier: its keyed hash with
// a Secret, its SHA-256 without.
func (r *Router) identifierKey(id profiles.Identifier) string {
	var sum []byte
	if r.secret != nil {
		m := hmac.New(sha256.New, r.secret)
		m.Write([]byte(id.Kind + "\x00" + id.Value))
		sum = m.Sum(nil)
	} else {
		h := sha256.Sum256([]byte(id.Kind + "\x00" + id.Value))
		sum = h[:]
	}
	return identifierKeyPrefix + hex.EncodeToString(sum[:16])
}

// identifierKeyPrefix starts the index's keys of identifiers.
const identifierKeyPrefix = "id."

// keyCheck is the value of the index's "keying" key: how its
// identifiers' keys are made, so that routers that would make them
// differently refuse to start instead of splitting people.
func (r *Router) keyCheck() string {
	if r.secret == nil {
		return "sha256"
	}
	m := hmac.New(sha256.New, r.secret)
	m.Write([]byte("cartera/identity-index/keying/v1"))
	return "hmac-sha256 " + hex.EncodeToString(m.Sum(nil)[:8])
}

// checkKeying records (first) or checks how the index's keys are made.
func (r *Router) checkKeying(ctx context.Context) error {
	want := r.keyCheck()
	_, err := r.kv.Create(ctx, "keying", []byte(want))
	if errors.Is(err, jetstream.ErrKeyExists) {
		ent, gerr := r.kv.Get(ctx, "keying")
		if gerr != nil {
			return fmt.Errorf("read the identity index's keying: %w", gerr)
		}
		if got := string(ent.Value()); got != want {
			how := fmt.Sprintf("with %s, this router's with %s", describeKeying(got), describeKeying(want))
			if r.secret != nil && strings.HasPrefix(got, "hmac-sha256 ") {
				how = "with another secret than this router's"
			}
			return fmt.Errorf("cluster router: the identity index's keys are made %s: every router of a cluster needs the same RouterConfig.Secret", how)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("record the identity index's keying: %w", err)
	}
	return nil
}

// describeKeying names a keying without its check value.
func describeKeying(v string) string {
	if strings.HasPrefix(v, "hmac-sha256 ") {
		return "a secret"
	}
	return "no secret"
}

func forwardKey(pid string) string { return "fwd." + pid }

// Erase removes a person from the index (GDPR erasure): the keys of
// their identifiers that still lead to them, their counts and their
// protection. A later event with the same identifiers makes a new
// profile. Erasing their state is the partition's (profiles.Store.Erase
// on the node that holds it), not done here. Forwards of profiles merged
// into them stay: they hold profile ids only.
func (r *Router) Erase(ctx context.Context, p *profiles.Profile) error {
	mine := append([]string{p.ID}, p.MergedFrom...)
	for _, rec := range p.Identities {
		key := r.identifierKey(profiles.Identifier{Kind: rec.Kind, Value: rec.Value})
		ent, err := r.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("erase from the identity index: %w", err)
		}
		live, err := r.follow(ctx, string(ent.Value()))
		if err != nil {
			return err
		}
		if live != p.ID && !slices.Contains(mine, string(ent.Value())) {
			continue // someone else's now
		}
		if err := r.kv.Purge(ctx, key, jetstream.LastRevision(ent.Revision())); err != nil {
			return fmt.Errorf("erase from the identity index: %w", err)
		}
	}
	keys := []string{"prot." + p.ID}
	for _, kind := range r.ids.Kinds() {
		keys = append(keys, countKey(p.ID, kind))
	}
	for _, k := range keys {
		if err := r.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("erase from the identity index: %w", err)
		}
	}
	r.protMu.Lock()
	delete(r.protected, p.ID)
	r.protMu.Unlock()
	r.cacheMu.Lock()
	for k, c := range r.cache {
		if slices.Contains(mine, c.pid) {
			delete(r.cache, k)
		}
	}
	r.cacheMu.Unlock()
	return nil
}
