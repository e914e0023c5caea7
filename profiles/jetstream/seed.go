package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// Seeding fills the identity index from a store that already holds
// people, so that a router can be put in front of it (the index turned on
// for a running deployment). Each profile gets what the router would have
// written had it linked the profile's identifiers itself: id.<hash> → the
// profile for each identifier, n.<id>.<k> the count of each kind, and
// prot.<id> when the store's guard protects it (it holds an identifier an
// event from a server source linked). Profiles merged away are aliases in
// the store that no id. key leads to, so they need no fwd. key. Two
// differences, because a store does not record what would tell: the
// router also marks a profile protected after a verified client event or
// a server event that linked nothing new, and seeding does not (it marks
// what the store's guard enforces); and a profile that holds more of a
// kind than its limit (limits lowered since) has all of them linked and
// counted, where the router would have stopped at the limit.
//
// Every write can be made twice: an identifier's key is created only if
// absent, and one found leading to the same profile (or to one merged
// into it) is fine; a count is raised to the profile's, never lowered; a
// protection mark is created if absent. So a Seed stopped half-way and
// run again finishes the job. The seed key records how far one got, a
// batch at a time, so the next starts there; until a Seed has read every
// profile, Empty reports the index as empty, and nothing trusts a half
// seeded index as a whole one.

// seedKey is the index key of a seed's progress (see the key layout in
// router.go).
const seedKey = "seed"

// Seed's batches: profile ids read at once (and progress recorded after
// each), and the profiles of a batch written at once (BenchmarkSeed, on
// two cores shared with the NATS server: 1 worker ~3,000 profiles/s, 4
// ~4,000, 16 ~6,000, 32 ~4,500).
const (
	seedBatch   = 500
	seedWorkers = 16
)

// seedPhase is where the index's seeding stands.
type seedPhase int

const (
	seedNone    seedPhase = iota // never seeded
	seedRunning                  // a Seed started and has not finished
	seedDone                     // a Seed read every profile
)

// People is what Seed reads: a store's profile ids in key order, and each
// profile by its id. *profiles.Store is one.
type People interface {
	// ScanIDs returns up to limit profile ids after the given one, in
	// key order ("" starts at the first).
	ScanIDs(after string, limit int) ([]string, error)
	// Lookup returns the profile an identifier (here a profile_id) names,
	// or profiles.ErrNotFound.
	Lookup(id profiles.Identifier) (*profiles.Profile, error)
}

// SeedStats say what a Seed did.
type SeedStats struct {
	// From is the profile id an earlier Seed had got to, after which this
	// one started ("": at the first profile).
	From string
	// Profiles is how many profiles it read.
	Profiles int64
	// Linked is how many identifiers it linked to their profile in the
	// index; Known how many it found there, linked already (an earlier
	// Seed, or a router).
	Linked, Known int64
	// Protected is how many profiles it marked protected.
	Protected int64
}

// SeedConflictError is returned by Seed when an identifier of a profile
// leads to another profile in the index: the index holds people of
// another store, or a router routed events before the seed finished. The
// identifier's value is not in it.
type SeedConflictError struct {
	// Kind is the identifier's kind.
	Kind string
	// Profile is the profile the store gives it; Indexed the one the index
	// does.
	Profile, Indexed string
}

func (e *SeedConflictError) Error() string {
	return fmt.Sprintf("seed the identity index: an identifier of kind %s of profile %s leads to profile %s in the index", e.Kind, e.Profile, e.Indexed)
}

// Seed writes every profile of people in the index, as described above,
// and returns what it did; progress, when not nil, is called with the
// counts so far after each batch of profiles. A Seed that ends early (ctx
// ended, an error) leaves the index Empty; the next one goes on after the
// last batch recorded. Run it before any router appends: a router that
// links an identifier before the seed does makes a second profile for its
// person (reported as a SeedConflictError when the seed gets there).
//
// Re-running a Seed that finished reads every profile again and writes
// only what is missing (nothing, if the store has not changed).
func (r *Router) Seed(ctx context.Context, people People, progress func(SeedStats)) (SeedStats, error) {
	phase, from, err := r.startSeed(ctx)
	if err != nil {
		return SeedStats{}, err
	}
	var c seedCounts
	after := from
	for {
		if err := ctx.Err(); err != nil {
			return c.stats(from), err
		}
		ids, err := people.ScanIDs(after, seedBatch)
		if err != nil {
			return c.stats(from), fmt.Errorf("seed the identity index: read the store: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		if err := r.seedBatch(ctx, people, ids, &c); err != nil {
			return c.stats(from), err
		}
		after = ids[len(ids)-1]
		if phase != seedDone {
			if _, err := r.kv.Put(ctx, seedKey, []byte("running "+after)); err != nil {
				return c.stats(from), fmt.Errorf("seed the identity index: record progress: %w", err)
			}
		}
		if progress != nil {
			progress(c.stats(from))
		}
	}
	if phase != seedDone {
		if _, err := r.kv.Put(ctx, seedKey, []byte("done")); err != nil {
			return c.stats(from), fmt.Errorf("seed the identity index: record it done: %w", err)
		}
	}
	return c.stats(from), nil
}

// seedCounts are a Seed's counts, added to by its workers.
type seedCounts struct {
	profiles, linked, known, protected atomic.Int64
}

func (c *seedCounts) stats(from string) SeedStats {
	return SeedStats{From: from, Profiles: c.profiles.Load(), Linked: c.linked.Load(), Known: c.known.Load(), Protected: c.protected.Load()}
}

// startSeed records that a seed runs, unless one finished, and returns
// the phase it found and the profile id a running one had got to.
func (r *Router) startSeed(ctx context.Context) (seedPhase, string, error) {
	for range 20 {
		_, err := r.kv.Create(ctx, seedKey, []byte("running"))
		if err == nil {
			return seedNone, "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return seedNone, "", fmt.Errorf("seed the identity index: record it running: %w", err)
		}
		phase, from, err := r.seedState(ctx)
		if err != nil || phase != seedNone {
			return phase, from, err
		}
		// Removed between the two: try again.
	}
	return seedNone, "", errors.New("seed the identity index: its seed key kept changing (20 tries)")
}

// seedState reads the index's seed key.
func (r *Router) seedState(ctx context.Context) (phase seedPhase, from string, err error) {
	ent, err := r.kv.Get(ctx, seedKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return seedNone, "", nil
	}
	if err != nil {
		return seedNone, "", fmt.Errorf("identity index: read its seed key: %w", err)
	}
	v := string(ent.Value())
	switch from, ok := strings.CutPrefix(v, "running"); {
	case v == "done":
		return seedDone, "", nil
	case ok && from == "":
		return seedRunning, "", nil
	case ok && from[0] == ' ' && profiles.ValidProfileID(from[1:]):
		return seedRunning, from[1:], nil
	}
	return seedNone, "", fmt.Errorf("identity index: its seed key is %q, not a seed's progress", v)
}

// seedBatch writes the profiles of ids on up to seedWorkers goroutines
// and returns the first error (the profiles not started then are not
// written).
func (r *Router) seedBatch(ctx context.Context, people People, ids []string, c *seedCounts) error {
	var (
		next  = make(chan string)
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if first == nil {
			first = err
		}
	}
	failed := func() bool {
		errMu.Lock()
		defer errMu.Unlock()
		return first != nil
	}
	for range min(seedWorkers, len(ids)) {
		wg.Go(func() {
			for id := range next {
				if failed() {
					continue
				}
				p, err := people.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: id})
				if errors.Is(err, profiles.ErrNotFound) {
					continue // erased (or merged, and seen as the survivor) meanwhile
				}
				if err != nil {
					fail(fmt.Errorf("seed the identity index: read profile %s: %w", id, err))
					continue
				}
				if err := r.seedProfile(ctx, p, c); err != nil {
					fail(err)
				}
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		next <- id
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err // a stop, whatever the writes it cut short said
	}
	return first
}

// seedProfile writes one profile in the index: its identifiers' keys,
// then its counts, then its protection (what is written first is what a
// lookup finds; the counts only matter once a router links more).
func (r *Router) seedProfile(ctx context.Context, p *profiles.Profile, c *seedCounts) error {
	counts := map[string]int{}
	for _, rec := range p.Identities {
		id := profiles.Identifier{Kind: rec.Kind, Value: rec.Value}
		key := r.identifierKey(id)
		_, err := r.kv.Create(ctx, key, []byte(p.ID))
		switch {
		case err == nil:
			c.linked.Add(1)
		case errors.Is(err, jetstream.ErrKeyExists):
			ent, err := r.kv.Get(ctx, key)
			if err != nil {
				return fmt.Errorf("seed the identity index: read an identifier of profile %s: %w", p.ID, err)
			}
			if got := string(ent.Value()); got != p.ID && !slices.Contains(p.MergedFrom, got) {
				return &SeedConflictError{Kind: rec.Kind, Profile: p.ID, Indexed: got}
			}
			c.known.Add(1)
		default:
			return fmt.Errorf("seed the identity index: link an identifier of profile %s: %w", p.ID, err)
		}
		counts[rec.Kind]++
	}
	for kind, n := range counts {
		if err := r.raiseCount(ctx, p.ID, kind, n); err != nil {
			return fmt.Errorf("seed the identity index: %w", err)
		}
	}
	if r.trust != nil && slices.ContainsFunc(p.Identities, func(rec profiles.IdentityRecord) bool { return !r.trust.IsClient(rec.Source) }) {
		// The store's guard protects it (Store.protected): so does the
		// router's.
		if _, err := r.kv.Create(ctx, "prot."+p.ID, []byte("1")); err == nil {
			c.protected.Add(1)
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("seed the identity index: mark profile %s protected: %w", p.ID, err)
		}
	}
	c.profiles.Add(1)
	return nil
}

// raiseCount makes the count of kind pid holds n, if it is lower, with
// compare-and-set. It tries to create it first: in an index being seeded
// it is most often absent (one write, not a read and a write).
func (r *Router) raiseCount(ctx context.Context, pid, kind string, n int) error {
	v := []byte(strconv.Itoa(n))
	_, err := r.kv.Create(ctx, countKey(pid, kind), v)
	for range 20 {
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			return fmt.Errorf("count identifiers of profile %s: %w", pid, err)
		}
		had, rev, err2 := r.count(ctx, pid, kind)
		if err2 != nil || had >= n {
			return err2
		}
		if rev == 0 {
			_, err = r.kv.Create(ctx, countKey(pid, kind), v)
		} else {
			_, err = r.kv.Update(ctx, countKey(pid, kind), v, rev)
		}
	}
	return fmt.Errorf("count identifiers of profile %s: the count kept changing", pid)
}
