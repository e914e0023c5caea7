package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// embeddedNATS is a real NATS server with JetStream on file storage,
// restartable on the same port and store.
type embeddedNATS struct {
	t    *testing.T
	dir  string
	port int
	s    *natsserver.Server
}

func startNATS(t *testing.T) *embeddedNATS {
	t.Helper()
	n := &embeddedNATS{t: t, dir: t.TempDir(), port: natsserver.RANDOM_PORT}
	n.start()
	n.port = n.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *embeddedNATS) start() {
	n.t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		n.t.Fatal("nats server did not start")
	}
	n.s = s
}

func (n *embeddedNATS) stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *embeddedNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// serve in cluster mode acknowledges on the JetStream stream, applies from
// it, and reads its own writes; with NATS down it answers 503 and accepts
// nothing, and it takes events again when NATS is back.
func TestServeClusterMode(t *testing.T) {
	ns := startNATS(t)
	data := filepath.Join(t.TempDir(), "cartera.db")
	s := startServerAt(t, data, map[string]string{"CARTERA_CLUSTER_URL": ns.url()})

	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1","traits":{"name":"Ana"}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u1","event":"Cluster Test","properties":{"n":1}}`))
	p := s.profile(t, "user_id:u1")
	if traits, _ := p["traits"].(map[string]any); traits["name"] != "Ana" {
		t.Fatalf("profile traits after identify: %v", p["traits"])
	}
	if got := eventsNamed(p, "Cluster Test"); len(got) != 1 {
		t.Fatalf("profile has %d Cluster Test events, want 1: %v", len(got), p["events"])
	}

	// The events are in the stream, not in a local log.
	stream := clusterStream(t, ns.url())
	if last := stream.State.LastSeq; last < 2 {
		t.Fatalf("stream last sequence %d after two events", last)
	}
	if _, err := os.Stat(eventLogDir(data)); !os.IsNotExist(err) {
		t.Fatalf("cluster mode made a local event log at %s (%v)", eventLogDir(data), err)
	}

	ns.stop()
	r := s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u1","event":"While Down"}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("ingest with NATS down: %d %s (Retry-After %q), want 503 with Retry-After", r.status, r.raw, r.header.Get("Retry-After"))
	}

	ns.start()
	for try := 0; ; try++ {
		r = s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u1","event":"After"}`)
		if r.status == 200 {
			break
		}
		if try == 100 {
			t.Fatalf("ingest does not recover after NATS restarted: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p = s.profile(t, "user_id:u1")
	if len(eventsNamed(p, "After")) != 1 || len(eventsNamed(p, "While Down")) != 0 {
		t.Fatalf("after recovery: %d After, %d While Down events, want 1 and 0", len(eventsNamed(p, "After")), len(eventsNamed(p, "While Down")))
	}
}

// clusterJS is a JetStream client of the NATS server at url, closed when
// the test ends.
func clusterJS(t *testing.T, url string) njs.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func clusterStream(t *testing.T, url string) *njs.StreamInfo {
	t.Helper()
	st, err := clusterJS(t, url).Stream(t.Context(), DefaultClusterConfig().Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestClusterConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantURL string
		wantErr string
	}{
		{"off by default", nil, nil, "", ""},
		{"flag", []string{"--cluster", "nats://10.0.0.1:4222"}, nil, "nats://10.0.0.1:4222", ""},
		{"env", nil, map[string]string{"CARTERA_CLUSTER_URL": "nats://10.0.0.2:4222"}, "nats://10.0.0.2:4222", ""},
		{"flag over env", []string{"--cluster", "nats://a:1"}, map[string]string{"CARTERA_CLUSTER_URL": "nats://b:1"}, "nats://a:1", ""},
		{"replicas", nil, map[string]string{"CARTERA_CLUSTER_URL": "nats://c:1", "CARTERA_CLUSTER_REPLICAS": "3"}, "nats://c:1", ""},
		{"replicas not a number", nil, map[string]string{"CARTERA_CLUSTER_REPLICAS": "three"}, "", "CARTERA_CLUSTER_REPLICAS"},
		{"identity index not a boolean", nil, map[string]string{"CARTERA_CLUSTER_URL": "nats://c:1", "CARTERA_CLUSTER_IDENTITY_INDEX": "yes please"}, "", "CARTERA_CLUSTER_IDENTITY_INDEX: want 1 or 0"},
		{"node", nil, map[string]string{"CARTERA_CLUSTER_URL": "nats://c:1", "CARTERA_CLUSTER_IDENTITY_INDEX": "1", "CARTERA_CLUSTER_NODE": "node-2"}, "nats://c:1", ""},
		{"node without the index", nil, map[string]string{"CARTERA_CLUSTER_URL": "nats://c:1", "CARTERA_CLUSTER_NODE": "node-2"}, "", "cluster.node: set cluster.identity_index too"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseServeFlags(append([]string{"--config", "../../examples/cartera.yaml"}, tc.args...), nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(f, envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("load: %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.env["CARTERA_CLUSTER_REPLICAS"]; want != "" && fmt.Sprint(cfg.Cluster.Replicas) != want {
				t.Fatalf("replicas %d, want %s", cfg.Cluster.Replicas, want)
			}
			if want := tc.env["CARTERA_CLUSTER_NODE"]; cfg.Cluster.Node != want {
				t.Fatalf("node %q, want %q", cfg.Cluster.Node, want)
			}
			if cfg.Cluster.URL != tc.wantURL {
				t.Fatalf("cluster url %q, want %q", cfg.Cluster.URL, tc.wantURL)
			}
		})
	}
	bad := []struct {
		name string
		edit func(*ClusterConfig)
		want string
	}{
		{"stream with a dot", func(c *ClusterConfig) { c.Stream = "a.b" }, "cluster.stream"},
		{"no partitions", func(c *ClusterConfig) { c.Partitions = 0 }, "cluster.partitions"},
		{"wildcard subject", func(c *ClusterConfig) { c.Subject = "events.>" }, "cluster.subject"},
		{"six replicas", func(c *ClusterConfig) { c.Replicas = 6 }, "cluster.replicas"},
		{"short identity secret", func(c *ClusterConfig) { c.IdentityIndex, c.IdentitySecret = true, "short" }, "cluster.identity_secret: want at least 16 bytes, got 5"},
		{"identity secret without the index", func(c *ClusterConfig) { c.IdentitySecret = "identity-index-secret-0123456789" }, "cluster.identity_secret: set cluster.identity_index too"},
		{"negative identity cache", func(c *ClusterConfig) { c.IdentityIndex, c.IdentityCache = true, -time.Second }, "cluster.identity_cache"},
		{"identity index without a cluster", func(c *ClusterConfig) { c.URL, c.IdentityIndex = "", true }, "cluster.identity_index: set cluster.url too"},
		{"node without a cluster", func(c *ClusterConfig) { c.URL, c.Node = "", "a" }, "cluster.node: set cluster.url too"},
		{"node without the identity index", func(c *ClusterConfig) { c.Node = "a" }, "cluster.node: set cluster.identity_index too"},
		{"node id with a dot", func(c *ClusterConfig) { c.IdentityIndex, c.Node = true, "node.1" }, `cluster.node: "node.1" is not a node id`},
		{"lease too short", func(c *ClusterConfig) { c.IdentityIndex, c.Node, c.LeaseTTL = true, "a", time.Millisecond }, "cluster.lease_ttl: 1ms is under 100ms"},
		{"negative snapshot events", func(c *ClusterConfig) { c.IdentityIndex, c.Node, c.SnapshotEvents = true, "a", -1 }, "cluster.snapshot_events"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultClusterConfig()
			c.URL = "nats://127.0.0.1:4222"
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// A node trims the stream below its partitions' snapshots by the event
// log's retention, hourly as serve trims its log.
func TestClusterNodeTrimsByTheLogsRetention(t *testing.T) {
	c := DefaultClusterConfig()
	c.Node = "a"
	logCfg := profiles.DefaultConfig().Log
	logCfg.Retention, logCfg.MaxBytes = 36*time.Hour, 2<<30
	got := c.node(logCfg, "/snapshots", nil)
	want := jetstream.TrimConfig{Every: time.Hour, Retention: jetstream.Retention{Age: 36 * time.Hour, MaxBytes: 2 << 30}}
	if got.Trim != want {
		t.Fatalf("trim %+v, want %+v", got.Trim, want)
	}
	if got.Snapshots.Dir != "/snapshots" || got.Snapshots.Events != c.SnapshotEvents || got.ID != "a" {
		t.Fatalf("node config %+v", got)
	}
}

// serve in cluster mode with the identity index: events are routed to
// their profile in the index, and a device and a user the index made
// separately, linked by an identify, end as one profile through the merge
// steps in the log (the store here follows every partition); the index's
// keys are keyed by the secret, with no identifier in them; an erasure
// leaves the index too, so that the person's next event makes a new
// profile.
func TestServeClusterIdentityIndex(t *testing.T) {
	ns := startNATS(t)
	const secret = "identity-index-secret-0123456789"
	env := map[string]string{"CARTERA_CLUSTER_URL": ns.url(), "CARTERA_CLUSTER_IDENTITY_INDEX": "1", "CARTERA_CLUSTER_IDENTITY_SECRET": secret}
	s := startServerAt(t, filepath.Join(t.TempDir(), "cartera.db"), env)

	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"anonymousId":"device-7","event":"Product Viewed"}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u7","traits":{"name":"Ana"}}`))
	device, user := s.profile(t, "anonymous_id:device-7"), s.profile(t, "user_id:u7")
	if device["id"] == user["id"] {
		t.Fatalf("a device and a user with nothing in common share profile %v", device["id"])
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u7","anonymousId":"device-7"}`))
	// The merge's second step is appended by the applier, after the
	// identify was acknowledged: poll.
	var p map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		p = s.profile(t, "anonymous_id:device-7")
		if p["id"] == s.profile(t, "user_id:u7")["id"] && len(eventsNamed(p, "Product Viewed")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never merged: device on %v, user on %v", p["id"], s.profile(t, "user_id:u7")["id"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	survivor := min(device["id"].(string), user["id"].(string))
	if p["id"] != survivor {
		t.Errorf("merged into %v, want the older profile %s", p["id"], survivor)
	}
	// Three events, each of someone the cache did not know for all its
	// identifiers; two identifiers linked; one merge.
	m := s.admin(t, "GET", "/metrics")
	for _, want := range []string{"\ncartera_identity_index_reads_total 3\n", "\ncartera_identity_index_cache_hits_total 0\n",
		"\ncartera_identity_index_links_total 2\n", "\ncartera_identity_index_merges_total 1\n"} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}

	kv := identityBucket(t, ns.url())
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var idKeys []string
	for k := range keys.Keys() {
		if strings.Contains(k, "u7") || strings.Contains(k, "device-7") {
			t.Errorf("the index has an identifier in a key: %s", k)
		}
		if strings.HasPrefix(k, "id.") {
			idKeys = append(idKeys, k)
		}
	}
	if len(idKeys) != 2 {
		t.Errorf("%d identifier keys in the index, want 2 (the user's and the device's)", len(idKeys))
	}
	keying, err := kv.Get(t.Context(), "keying")
	if err != nil || !strings.HasPrefix(string(keying.Value()), "hmac-sha256 ") {
		t.Errorf("the index's keying %v, %v: want keyed by the secret", keying, err)
	}

	if r := s.admin(t, "DELETE", "/v1/profiles/user_id:u7"); r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.raw)
	}
	for _, k := range idKeys {
		if _, err := kv.Get(t.Context(), k); err == nil {
			t.Errorf("the erased person's key %s is still in the index", k)
		}
	}
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/track", `{"userId":"u7","event":"Back Again"}`))
	again := s.profile(t, "user_id:u7")
	if again["id"] == survivor || len(eventsNamed(again, "Product Viewed")) != 0 {
		t.Errorf("after the erasure u7 is on %v with the old events, want a new profile", again["id"])
	}
}

// serve turned on with the identity index over a store that already holds
// people (its stream appended without the index) seeds the index from the
// store before it listens, after applying the events the stream held that
// the store had not: an event with an existing person's email goes to
// their existing profile, as does one with the email of a person whose
// only event was still waiting to be applied; no profile is made, none
// merged. The log says how many were seeded, and names no one.
func TestServeClusterIdentityIndexSeeded(t *testing.T) {
	ns := startNATS(t)
	data := filepath.Join(t.TempDir(), "cartera.db")
	used := startServerAt(t, data, map[string]string{"CARTERA_CLUSTER_URL": ns.url()})
	mustOK(t, used.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u8","anonymousId":"device-8","traits":{"email":"u8@example.com"}}`))
	u8 := used.profile(t, "user_id:u8")["id"]
	used.stopNow(t)
	// Acknowledged and never applied by this run: the next start applies it.
	pending := startServerMain(t, data, "../../examples/cartera.yaml", map[string]string{"CARTERA_CLUSTER_URL": ns.url()}, io.Discard,
		func(m *Main) { m.holdApply = make(chan struct{}) })
	mustOK(t, pending.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u9","traits":{"email":"u9@example.com"}}`))
	pending.stopNow(t)

	var logs lockedBuffer
	s := startServerLogged(t, data, map[string]string{"CARTERA_CLUSTER_URL": ns.url(), "CARTERA_CLUSTER_IDENTITY_INDEX": "1", "CARTERA_LOG_LEVEL": "info"}, &logs)
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"anonymousId":"device-new","traits":{"email":"u8@example.com"}}`))
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"anonymousId":"device-9","traits":{"email":"u9@example.com"}}`))
	if got := s.profile(t, "anonymous_id:device-new")["id"]; got != u8 {
		t.Errorf("an event with u8's email went to profile %v, want u8's %v", got, u8)
	}
	u9 := s.profile(t, "user_id:u9")["id"]
	if got := s.profile(t, "anonymous_id:device-9")["id"]; got != u9 {
		t.Errorf("an event with u9's email went to profile %v, want u9's %v (applied before the seed)", got, u9)
	}
	m := s.admin(t, "GET", "/metrics")
	for _, want := range []string{"\ncartera_profiles 2\n", "\ncartera_identity_index_links_total 2\n", "\ncartera_identity_index_merges_total 0\n"} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	log := logs.String()
	for _, want := range []string{`"msg":"identity index: applying the stream's events the store has not, before seeding","events":1`,
		`"msg":"identity index: seeded from the store","profiles":2,"identifiers_linked":5,"identifiers_known":0,"protected":0,"resumed":false`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}
	for _, who := range []string{"u8", "u9", "device-8", "example.com"} {
		if strings.Contains(log, who) {
			t.Errorf("the log names %s:\n%s", who, log)
		}
	}
}

// identityBucket opens the cluster's identity index bucket.
func identityBucket(t *testing.T, url string) njs.KeyValue {
	t.Helper()
	kv, err := clusterJS(t, url).KeyValue(t.Context(), DefaultClusterConfig().Stream+"_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
