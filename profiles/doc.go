// Package profiles turns incoming customer events into golden profiles.
//
// It owns everything between the HTTP edge and the rules engine: decoding of
// Segment Tracking API messages (Decode, DecodeBatch), the per-source
// tracking plan (Plan), identity resolution (an identity graph mapping every
// normalized identifier to one canonical profile id, with merges recorded in
// a ledger on the profile), last-write-wins traits, consent with history, a
// bounded per-profile event log, GDPR erasure with hashed tombstones, and the
// group-committing writer that makes an acknowledged event durable.
//
// It does not know about HTTP, journeys, channels or wallets; those packages
// read profiles through the Store and subscribe to what it commits.
//
// A minimal use:
//
//	st, err := profiles.Open(ctx, "data/cartera.db", profiles.DefaultConfig(), profiles.Options{})
//	if err != nil { ... }
//	defer st.Close()
//	ev, err := profiles.Decode(body, profiles.DecodeOptions{Type: "track", Source: "web", ReceivedAt: time.Now()})
//	if err != nil { ... } // a *ValidationError names the field
//	results, err := st.Ingest(ctx, []*profiles.Event{ev})
//	p, err := st.Lookup(profiles.Identifier{Kind: "email", Value: "ana@example.com"})
//
// All state about a person is keyed by the profile id, so partitions of
// profiles can later move between nodes; only a merge touches two people in
// one transaction. In a cluster whose router resolves identities in a
// shared index (profiles/jetstream), log records arrive addressed to a
// profile (route.go), and a merge of two profiles held in different
// partitions goes through the log as two records (crossmerge.go), which
// carry what processors keep about the loser (move.go). What a
// partition's core changes of its own beside the profiles (an outbox's
// deliveries) it notes in the partition's log, for the next owner
// (notes.go).
package profiles
