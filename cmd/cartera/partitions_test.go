package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cartera/channels"
	"cartera/internal/clocktest"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// partitionFiles are a deployment of two journeys: a send at once and one
// an hour later, and a daily cron send at noon to every member, all
// webhooks (no consent needed).
var partitionFiles = map[string]string{
	"cartera.yaml": `log_level: warn
public_url: http://127.0.0.1:8080
rules: [rules.yaml]
policies: policies.yaml
journeys: journeys
sources:
  - name: web
    write_keys: [partition_test_key]
channels:
  tracking_secret: partition-test-tracking-secret-0123456789
  webhook:
    url: http://webhook.invalid/hook
    secret: partition-test-webhook-secret
  delivery:
    webhook:
      backoff: 20ms
      max_backoff: 100ms
`,
	"rules.yaml": `computed_traits:
  - name: signups
    aggregate: count
    event: Signed Up
  - name: views
    aggregate: count
    event: Page Viewed
audiences:
  - name: members
    expression: profile.computed.signups > 0
`,
	"policies.yaml": `policies:
  timezone: UTC
  consent_required: [email, sms, ads]
  frequency_caps:
    - {channel: webhook, max: 5, per: 1h}
`,
	"journeys/signup.yaml": `id: signup
trigger:
  event: Signed Up
steps:
  - id: hello
    send: {channel: webhook, template: hello}
  - id: pause
    wait: 1h
  - id: later
    send: {channel: webhook, template: later}
`,
	"journeys/split.yaml": `id: split
trigger:
  event: Tried Split
steps:
  - id: arm
    split:
      experiment: colour
      variants:
        - {name: red, percent: 50, next: done}
        - {name: blue, percent: 50, next: done}
  - id: done
    exit: true
`,
	"journeys/daily.yaml": `id: daily
trigger:
  schedule:
    cron: "0 12 * * *"
    timezone: UTC
    audience: members
steps:
  - id: daily
    send: {channel: webhook, template: daily}
`,
}

// partitionNode is a cluster node of partition cores: its own connection
// to the stream, its lease-holding Node and the cores of what it holds.
type partitionNode struct {
	id    string
	log   *jetstream.Log
	node  *jetstream.Node
	cores *partitionCores
}

// kill cuts the node's connection first, as a crash would: it cannot
// renew, snapshot or give anything up, and its leases lapse.
func (n *partitionNode) kill() {
	_ = n.log.Close()
	_ = n.node.Close()
}

// startPartitionNode starts node id on the stream at url, its partition
// files under dir, its webhooks sent to hook/<id>.
func startPartitionNode(t *testing.T, id, url, dir, hook string, cfg *Config, defs *definitions, now func() time.Time) *partitionNode {
	return startPartitionNodeWith(t, id, url, dir, hook, cfg, defs, now, jetstream.SnapshotConfig{Events: 1000, Interval: time.Minute})
}

// startPartitionNodeWith is startPartitionNode snapshotting as snap says.
func startPartitionNodeWith(t *testing.T, id, url, dir, hook string, cfg *Config, defs *definitions, now func() time.Time, snap jetstream.SnapshotConfig) *partitionNode {
	t.Helper()
	l, err := jetstream.Open(t.Context(), partitionLogConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ncfg := *cfg
	ncfg.Channels.Webhook.URL = hook + "/" + id
	cores := newPartitionCores(&ncfg, defs, appOptions{Now: now, Deliver: true, Logger: slog.New(slog.DiscardHandler), Getenv: envOf(nil)})
	n, err := jetstream.StartNode(t.Context(), l, cores.files(filepath.Join(dir, id)), jetstream.NodeConfig{
		ID: id, LeaseTTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler),
		Snapshots: jetstream.SnapshotConfig{Events: snap.Events, Interval: snap.Interval, Dir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return &partitionNode{id: id, log: l, node: n, cores: cores}
}

func partitionLogConfig(url string) jetstream.Config {
	c := jetstream.DefaultConfig()
	c.URL, c.Partitions, c.AckWait = url, 8, 5*time.Second
	return c
}

// coresHeld returns the partitions whose cores are open on n.
func (n *partitionNode) coresHeld() []int {
	var out []int
	for _, c := range n.cores.held() {
		out = append(out, c.p)
	}
	return out
}

// webhookCall is one send a node made to the webhook stand-in.
type webhookCall struct {
	node, key, profile, step string
}

// Step 1 of docs/cluster.md's path: a cluster node runs the whole core of
// serve on each partition it holds. Two nodes share eight partitions;
// people sign up while one node holds everything and after a second
// joined; an hour later (the clock moved) every person's second send is
// made by the node that holds their partition then, from state and timers
// that moved with a partition handed over; at noon a cron journey's tick
// fires in every partition, each enrolling its own members, so the
// cluster fires it once for each person. Each person gets each send
// exactly once, and no two people's sends share an idempotency key (an
// instance number alone counts per file). A node has cores open for the
// partitions it holds and no others.
func TestPartitionCoresRunJourneysWherePeopleAre(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	cfg, defs := partitionDeployment(t, dir)
	hook := newWebhookRecorder(t)
	seen, sends := hook.seen, hook.sends
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := clocktest.New(t0)

	ingest, err := jetstream.Open(t.Context(), partitionLogConfig(ns.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer ingest.Close()
	signUp := func(from, to int) {
		t.Helper()
		var recs [][]byte
		for i := from; i < to; i++ {
			u := fmt.Sprintf("pc-user-%02d", i)
			v, err := json.Marshal(&profiles.Event{Type: profiles.TypeTrack, Event: "Signed Up", MessageID: "m-" + u, UserID: u, Source: "web", Timestamp: clock.Now(), ReceivedAt: clock.Now()})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, v)
		}
		if _, _, err := ingest.Append(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
	}
	const partitions = 8
	a := startPartitionNode(t, "a", ns.url(), dir, hook.url, cfg, defs, clock.Now)
	waitUntil(t, "node a holds every partition, a core on each", func() bool {
		return len(a.node.Held()) == partitions && slices.Equal(a.coresHeld(), a.node.Held())
	})
	signUp(0, 24)
	waitUntil(t, "24 first sends", func() bool { return sends("hello") >= 24 })

	b := startPartitionNode(t, "b", ns.url(), dir, hook.url, cfg, defs, clock.Now)
	nodes := []*partitionNode{a, b}
	waitUntil(t, "a and b share the partitions, each with cores on what it holds and nothing else", func() bool {
		ha, hb := a.node.Held(), b.node.Held()
		return len(ha) > 0 && len(hb) > 0 && len(ha)+len(hb) == partitions &&
			slices.Equal(a.coresHeld(), ha) && slices.Equal(b.coresHeld(), hb)
	})
	signUp(24, 32)
	waitUntil(t, "32 first sends", func() bool { return sends("hello") >= 32 })

	clock.Advance(time.Hour + time.Minute)
	for _, n := range nodes {
		n.cores.wake()
	}
	waitUntil(t, "32 second sends", func() bool { return sends("later") >= 32 })
	if n := sends("daily"); n != 0 {
		t.Fatalf("%d daily sends before noon", n)
	}
	// Noon: the cron tick of each partition enrols its own members.
	clock.Advance(time.Hour)
	for _, n := range nodes {
		n.cores.wake()
	}
	waitUntil(t, "32 daily sends", func() bool { return sends("daily") >= 32 })

	// Who holds which partition now (no hand-over since b joined).
	owner := map[int]string{}
	for _, n := range nodes {
		for _, p := range n.node.Held() {
			owner[p] = n.id
		}
	}
	byKey := map[string]webhookCall{}
	perPerson := map[string]map[string]int{}
	for _, c := range seen() {
		if prev, ok := byKey[c.key]; ok && prev.profile != c.profile {
			t.Errorf("key %s sent for two people (%s, %s)", c.key, prev.profile, c.profile)
		}
		byKey[c.key] = c
		if perPerson[c.profile] == nil {
			perPerson[c.profile] = map[string]int{}
		}
		perPerson[c.profile][c.step]++
	}
	if len(perPerson) != 32 {
		t.Fatalf("sends to %d people, want 32", len(perPerson))
	}
	for pid, steps := range perPerson {
		if steps["hello"] != 1 || steps["later"] != 1 || steps["daily"] != 1 || len(steps) != 3 {
			t.Errorf("%s got %v, want hello, later and daily once each", pid, steps)
		}
	}
	// Each second send came from the node that holds the person's
	// partition: find the person's partition through a core holding them.
	fromB := 0
	for i := range 32 {
		u := fmt.Sprintf("pc-user-%02d", i)
		p := ingest.Partition(fmt.Appendf(nil, `{"type":"track","userId":%q}`, u))
		want := owner[p]
		var pid string
		for _, n := range nodes {
			for _, c := range n.cores.held() {
				if c.p != p {
					continue
				}
				prof, err := c.store.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: u})
				if err != nil {
					t.Fatalf("%s in the core of partition %d on %s: %v", u, p, n.id, err)
				}
				pid = prof.ID
			}
		}
		for _, step := range []string{"later", "daily"} {
			var got []webhookCall
			for _, c := range seen() {
				if c.profile == pid && c.step == step {
					got = append(got, c)
				}
			}
			if len(got) != 1 || got[0].node != want {
				t.Errorf("%s (partition %d, held by %s): %s sends %+v, want one from %s", u, p, want, step, got, want)
			}
		}
		if want == "b" {
			fromB++
		}
	}
	if fromB == 0 {
		t.Error("no second send came from b: nothing moved with a partition")
	}
}

// A node killed mid-load, with the identity index routing sign-ups to
// their profiles: the survivor re-owns its partitions once their leases
// lapse, restores their snapshots and applies what followed them. Every
// acknowledged sign-up is in exactly one profile, applied once, and each
// person's send has one idempotency key: the events after the snapshot
// run through the journeys again on the survivor and make the same keys,
// since the profile ids come from the index and the instance numbers from
// the restored file. A send the dead node made is not made again once its
// outbox noted it in the stream (the survivor applies the notes before it
// delivers); one the kill cut off before its note goes again, with the
// same key, which receivers dedupe on (channels/webhook's doc).
func TestPartitionCoresNodeKilledMidLoad(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	cfg, defs := partitionDeployment(t, dir)
	hook := newWebhookRecorder(t)
	clock := clocktest.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	ingest, err := jetstream.Open(t.Context(), partitionLogConfig(ns.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer ingest.Close()
	router, err := jetstream.NewRouter(t.Context(), ingest, jetstream.RouterConfig{Identity: cfg.Profiles.Identity, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Snapshots every 10 events of a partition: the kill leaves some
	// applied after the last one.
	snap := jetstream.SnapshotConfig{Events: 10, Interval: time.Minute}
	// Three nodes, as the issue asks: the killed one's partitions go to
	// the two that stay, each restoring its share.
	a := startPartitionNodeWith(t, "a", ns.url(), dir, hook.url, cfg, defs, clock.Now, snap)
	b := startPartitionNodeWith(t, "b", ns.url(), dir, hook.url, cfg, defs, clock.Now, snap)
	nodeC := startPartitionNodeWith(t, "c", ns.url(), dir, hook.url, cfg, defs, clock.Now, snap)
	const partitions = 8
	nodes := []*partitionNode{a, b, nodeC}
	waitUntil(t, "a, b and c share the partitions", func() bool {
		total := 0
		for _, n := range nodes {
			held := n.node.Held()
			if len(held) == 0 || !slices.Equal(n.coresHeld(), held) {
				return false
			}
			total += len(held)
		}
		return total == partitions
	})
	bHeld := b.node.Held()

	const people, batch = 160, 8
	user := func(i int) string { return fmt.Sprintf("kill-user-%03d", i) }
	appended := make(chan int, people/batch)
	go func() {
		defer close(appended)
		for i := 0; i < people; i += batch {
			var recs [][]byte
			for j := i; j < i+batch; j++ {
				v, err := json.Marshal(&profiles.Event{Type: profiles.TypeTrack, Event: "Signed Up", MessageID: "m-" + user(j), UserID: user(j), Source: "web", Timestamp: clock.Now(), ReceivedAt: clock.Now()})
				if err != nil {
					t.Error(err)
					return
				}
				recs = append(recs, v)
			}
			if _, _, err := router.Append(t.Context(), recs); err != nil {
				t.Errorf("append sign-ups %d to %d: %v", i, i+batch, err)
				return
			}
			appended <- i + batch
			time.Sleep(10 * time.Millisecond) // a shop's pace: the kill, not the volume, is tested
		}
	}()
	for n := range appended {
		if n == people/2 {
			waitUntil(t, "b sent some", func() bool {
				for _, c := range hook.seen() {
					if c.node == "b" {
						return true
					}
				}
				return false
			})
			b.kill()
			break
		}
	}
	for range appended {
	}
	survivors := []*partitionNode{a, nodeC}
	waitUntil(t, "a and c hold every partition, a core on each", func() bool {
		total := 0
		for _, n := range survivors {
			if !slices.Equal(n.coresHeld(), n.node.Held()) {
				return false
			}
			total += len(n.node.Held())
		}
		return total == partitions
	})
	if held := b.cores.held(); len(held) != 0 {
		t.Fatalf("the killed node still runs %d cores", len(held))
	}
	t.Logf("b held %v; now a holds %v, c holds %v", bHeld, a.node.Held(), nodeC.node.Held())
	held := func() []*partitionCore {
		return append(a.cores.held(), nodeC.cores.held()...)
	}

	// Every acknowledged sign-up is in exactly one profile, once.
	pids := map[string]string{}
	for i := range people {
		u := user(i)
		waitUntil(t, u+" applied", func() bool {
			for _, c := range held() {
				if _, err := c.store.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: u}); err == nil {
					return true
				}
			}
			return false
		})
		found := 0
		for _, c := range held() {
			prof, err := c.store.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: u})
			if errors.Is(err, profiles.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			found++
			pids[u] = prof.ID
			evs, err := c.store.Events(prof.ID, 100)
			if err != nil {
				t.Fatal(err)
			}
			signUps := 0
			for _, e := range evs {
				if e.Event == "Signed Up" {
					signUps++
				}
			}
			if signUps != 1 {
				t.Errorf("%s has %d sign-ups, want 1", u, signUps)
			}
		}
		if found != 1 {
			t.Errorf("%s is in %d partitions' files, want 1", u, found)
		}
	}
	// Each person's send: one key, delivered at least once.
	waitUntil(t, "a first send to everyone", func() bool {
		got := map[string]bool{}
		for _, c := range hook.seen() {
			if c.step == "hello" {
				got[c.profile] = true
			}
		}
		return len(got) == people
	})
	keys := map[string]map[string]int{}
	for _, c := range hook.seen() {
		if c.step != "hello" {
			continue
		}
		if keys[c.profile] == nil {
			keys[c.profile] = map[string]int{}
		}
		keys[c.profile][c.key]++
	}
	// A send made again is one the kill cut off before the outbox noted
	// it in the stream (channels' delivered.go): a noted one never is, so
	// no key is noted twice (by the dead node and by the survivor).
	noted := notedDelivered(t, ingest)
	if len(noted) == 0 {
		t.Fatal("no delivered message was noted in the stream")
	}
	again := 0
	for u, pid := range pids {
		if len(keys[pid]) != 1 {
			t.Errorf("%s (%s): sends under keys %v, want one key", u, pid, keys[pid])
		}
		for key, n := range keys[pid] {
			again += n - 1
			if noted[key] > 1 {
				var from []string
				for _, c := range hook.seen() {
					if c.key == key {
						from = append(from, c.node)
					}
				}
				t.Errorf("%s: send %s made %d times (by %v) and noted delivered %d times: made again after its note", u, key, n, from, noted[key])
			}
		}
	}
	t.Logf("%d of %d first sends were made again, under their key, after the kill; %d keys noted delivered", again, people, len(noted))
}

// notedDelivered reads the stream of l for the outbox's notes and returns
// how many say each key was delivered.
func notedDelivered(t *testing.T, l *jetstream.Log) map[string]int {
	t.Helper()
	prefix := profiles.NoteBody(channels.NoteDelivered, nil)
	out := map[string]int{}
	for from := uint64(1); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		recs, err := l.Read(ctx, from, 1000)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || len(recs) == 0 {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		from += uint64(len(recs))
		for _, rec := range recs {
			_, body := profiles.RecordRoute(rec)
			note, ok := bytes.CutPrefix(body, prefix)
			if !ok {
				continue
			}
			var n struct{ Keys []string }
			if err := json.Unmarshal(note, &n); err != nil {
				t.Fatalf("a note of delivered messages that does not decode: %v", err)
			}
			for _, k := range n.Keys {
				out[k]++
			}
		}
	}
}

// partitionDeployment writes partitionFiles under dir and loads them.
func partitionDeployment(t *testing.T, dir string) (*Config, *definitions) {
	t.Helper()
	for name, body := range partitionFiles {
		path := filepath.Join(dir, "conf", name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := loadConfig(&serveFlags{config: filepath.Join(dir, "conf", "cartera.yaml"), set: map[string]bool{"config": true}}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	defs, err := compileDefinitions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, defs
}

// webhookRecorder is the webhook receiver of the partition tests: it
// records each call, and which node made it (its path, hook/<node>).
type webhookRecorder struct {
	url   string
	mu    sync.Mutex
	calls []webhookCall
}

func newWebhookRecorder(t *testing.T) *webhookRecorder {
	r := &webhookRecorder{}
	s := newStandIn(t, func(h hit, _ int) (int, string) {
		var body struct {
			ID        string `json:"id"`
			ProfileID string `json:"profile_id"`
			Step      string `json:"step"`
		}
		if err := json.Unmarshal([]byte(h.Body), &body); err != nil {
			t.Errorf("webhook body %q: %v", h.Body, err)
			return 400, `{}`
		}
		if body.ID != h.Header.Get("X-Cartera-Key") {
			t.Errorf("body id %q, header key %q", body.ID, h.Header.Get("X-Cartera-Key"))
		}
		r.mu.Lock()
		r.calls = append(r.calls, webhookCall{node: strings.TrimPrefix(h.Path, "/hook/"), key: body.ID, profile: body.ProfileID, step: body.Step})
		r.mu.Unlock()
		return 200, `{}`
	})
	r.url = s.URL + "/hook"
	return r
}

func (r *webhookRecorder) seen() []webhookCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// sends counts the calls of a step.
func (r *webhookRecorder) sends(step string) int {
	n := 0
	for _, c := range r.seen() {
		if c.step == step {
			n++
		}
	}
	return n
}

// waitUntil polls cond until it holds, for at most a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A merge across partitions moves the loser's journeys with them: an
// anonymous shopper in one partition signs up (the first send goes, the
// second waits an hour), then identifies as a customer whose older profile
// is in another partition. The waiting instance moves to the customer's
// partition with its timer, and an hour later the second send goes to the
// customer, from there, once; nothing is left waiting where the shopper
// was.
func TestPartitionCoresMoveMergedJourneys(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	cfg, defs := partitionDeployment(t, dir)
	hook := newWebhookRecorder(t)
	clock := clocktest.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	l, err := jetstream.Open(t.Context(), partitionLogConfig(ns.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	router, err := jetstream.NewRouter(t.Context(), l, jetstream.RouterConfig{Identity: cfg.Profiles.Identity, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	a := startPartitionNode(t, "a", ns.url(), dir, hook.url, cfg, defs, clock.Now)
	waitUntil(t, "a holds every partition, a core on each", func() bool {
		return len(a.node.Held()) == 8 && slices.Equal(a.coresHeld(), a.node.Held())
	})
	send := func(e *profiles.Event) {
		t.Helper()
		e.Source, e.Timestamp, e.ReceivedAt = "web", clock.Now(), clock.Now()
		v, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := router.Append(t.Context(), [][]byte{v}); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func(id profiles.Identifier) string {
		t.Helper()
		pid, err := router.Lookup(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	send(&profiles.Event{Type: profiles.TypeIdentify, MessageID: "m-loyal", UserID: "loyal-1"})
	customer := lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "loyal-1"})
	clock.Advance(time.Second) // the shopper's profile is the newer: the loser
	var anon, shopper string
	for i := 0; shopper == "" || l.ProfilePartition(shopper) == l.ProfilePartition(customer); i++ {
		if i == 20 {
			t.Fatal("20 shoppers all in the customer's partition")
		}
		anon = fmt.Sprintf("anon-%02d", i)
		send(&profiles.Event{Type: profiles.TypeTrack, Event: "Signed Up", MessageID: "m-" + anon, AnonymousID: anon})
		shopper = lookup(profiles.Identifier{Kind: profiles.KindAnonymousID, Value: anon})
	}
	waitUntil(t, "the shopper's first send", func() bool {
		for _, c := range hook.seen() {
			if c.step == "hello" && c.profile == shopper {
				return true
			}
		}
		return false
	})
	// The shopper is given an arm of an experiment, and opens an email
	// at 10:00 (what best send times learn from).
	send(&profiles.Event{Type: profiles.TypeTrack, Event: "Tried Split", MessageID: "m-split-" + anon, AnonymousID: anon})
	send(&profiles.Event{Type: profiles.TypeTrack, Event: "Email Opened", MessageID: "m-open-" + anon, AnonymousID: anon})
	var arm journeys.Assignment
	var hours [24]int
	waitUntil(t, "the shopper's arm and send hours", func() bool {
		cores := a.cores.held()
		i := slices.IndexFunc(cores, func(c *partitionCore) bool { return c.p == l.ProfilePartition(shopper) })
		if i < 0 {
			return false
		}
		c := cores[i]
		as, err := c.journeys.Assignments(shopper)
		if err != nil || len(as) != 1 {
			return false
		}
		arm = as[0]
		hours, err = c.journeys.SendHours(shopper)
		return err == nil && hours[10] > 0
	})

	send(&profiles.Event{Type: profiles.TypeIdentify, MessageID: "m-link", UserID: "loyal-1", AnonymousID: anon})
	core := func(pid string) *partitionCore {
		for _, c := range a.cores.held() {
			if c.p == l.ProfilePartition(pid) {
				return c
			}
		}
		t.Fatalf("no core holds %s's partition", pid)
		return nil
	}
	waitUntil(t, "the shopper merged into the customer, in the customer's partition", func() bool {
		p, err := core(customer).store.Lookup(profiles.Identifier{Kind: profiles.KindAnonymousID, Value: anon})
		return err == nil && p.ID == customer
	})
	if insts, err := core(customer).journeys.Instances(customer); err != nil || len(insts) != 1 || insts[0].Step != "pause" {
		t.Fatalf("the customer's live instances: %+v, %v; want the shopper's, waiting at pause", insts, err)
	}
	if insts, err := core(shopper).journeys.Instances(shopper); err != nil || len(insts) != 0 {
		t.Fatalf("live instances left where the shopper was: %+v, %v", insts, err)
	}
	// The arm and the send hours came with them (profile sidecars).
	as, err := core(customer).journeys.Assignments(customer)
	if err != nil || len(as) != 1 || as[0].Experiment != "colour" || as[0].Variant != arm.Variant || as[0].MergedFrom != "" {
		t.Errorf("the customer's arms: %+v (%v), want the shopper's %s of colour, in force", as, err, arm.Variant)
	}
	if got, err := core(customer).journeys.SendHours(customer); err != nil || got != hours {
		t.Errorf("the customer's send hours %v (%v), want the shopper's %v", got, err, hours)
	}

	// (Shoppers tried before, in the customer's partition, have journeys
	// of their own.)
	later := func() map[string]int {
		out := map[string]int{}
		for _, c := range hook.seen() {
			if c.step == "later" && (c.profile == customer || c.profile == shopper) {
				out[c.profile]++
			}
		}
		return out
	}
	clock.Advance(time.Hour + time.Minute)
	a.cores.wake()
	waitUntil(t, "the second send", func() bool { return len(later()) > 0 })
	if got := later(); got[customer] != 1 || got[shopper] != 0 {
		t.Errorf("second sends %v, want one to the customer %s and none to the shopper %s", got, customer, shopper)
	}
}
