package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
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
	node  *jetstream.Node
	cores *partitionCores
}

// startPartitionNode starts node id on the stream at url, its partition
// files under dir, its webhooks sent to hook/<id>.
func startPartitionNode(t *testing.T, id, url, dir, hook string, cfg *Config, defs *definitions, now func() time.Time) *partitionNode {
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
		Snapshots: jetstream.SnapshotConfig{Events: 1000, Interval: time.Minute, Dir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return &partitionNode{id: id, node: n, cores: cores}
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
	var calls []webhookCall
	var callsMu = make(chan struct{}, 1)
	hook := newStandIn(t, func(h hit, _ int) (int, string) {
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
		callsMu <- struct{}{}
		calls = append(calls, webhookCall{node: strings.TrimPrefix(h.Path, "/hook/"), key: body.ID, profile: body.ProfileID, step: body.Step})
		<-callsMu
		return 200, `{}`
	})
	seen := func() []webhookCall {
		callsMu <- struct{}{}
		defer func() { <-callsMu }()
		return slices.Clone(calls)
	}
	sends := func(step string) int {
		n := 0
		for _, c := range seen() {
			if c.step == step {
				n++
			}
		}
		return n
	}
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
	a := startPartitionNode(t, "a", ns.url(), dir, hook.URL+"/hook", cfg, defs, clock.Now)
	waitUntil(t, "node a holds every partition, a core on each", func() bool {
		return len(a.node.Held()) == partitions && slices.Equal(a.coresHeld(), a.node.Held())
	})
	signUp(0, 24)
	waitUntil(t, "24 first sends", func() bool { return sends("hello") >= 24 })

	b := startPartitionNode(t, "b", ns.url(), dir, hook.URL+"/hook", cfg, defs, clock.Now)
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
