package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/channels/email"
	"cartera/internal/smtptest"
	"cartera/rules"
)

// nodeConfig writes the partition tests' deployment for one serve node,
// its webhooks sent to hook/<node>, with eight partitions.
func nodeConfig(t *testing.T, dir, node, hook string) string {
	t.Helper()
	cfg, _ := partitionDeployment(t, filepath.Join(dir, node))
	path := cfg.path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "http://webhook.invalid/hook", hook+"/"+node, 1) + "cluster:\n  partitions: 8\n  lease_ttl: 3s\n")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// nodeEnv is the environment of cluster node id on the NATS server at url.
func nodeEnv(url, id string) map[string]string {
	return map[string]string{"CARTERA_CLUSTER_URL": url, "CARTERA_CLUSTER_IDENTITY_INDEX": "1", "CARTERA_CLUSTER_NODE": id}
}

// startTwoNodes starts an embedded NATS server and `serve` nodes a and b
// on it, each with partitionFiles under dir/<node>, their webhooks sent
// to hook.
func startTwoNodes(t *testing.T) (a, b *server, dir string, hook *webhookRecorder) {
	t.Helper()
	ns := startNATS(t)
	dir = t.TempDir()
	hook = newWebhookRecorder(t)
	a = startServerConfig(t, filepath.Join(dir, "a", "cartera.db"), nodeConfig(t, dir, "a", hook.url), nodeEnv(ns.url(), "a"), io.Discard)
	b = startServerConfig(t, filepath.Join(dir, "b", "cartera.db"), nodeConfig(t, dir, "b", hook.url), nodeEnv(ns.url(), "b"), io.Discard)
	return a, b, dir, hook
}

// startExampleNodes starts an embedded NATS server and `serve` nodes a and
// b on it with the examples, env added to their environment; logA is a's
// log.
func startExampleNodes(t *testing.T, env map[string]string) (a, b *server, logA *lockedBuffer) {
	t.Helper()
	ns := startNATS(t)
	dir := t.TempDir()
	start := func(id string, log io.Writer) *server {
		vars := nodeEnv(ns.url(), id)
		maps.Copy(vars, env)
		return startServerConfig(t, filepath.Join(dir, id, "cartera.db"), "../../examples/cartera.yaml", vars, log)
	}
	logA = &lockedBuffer{}
	return start("a", logA), start("b", io.Discard), logA
}

// partitionsHeld is how many partitions node s holds, by its /metrics.
func partitionsHeld(t *testing.T, s *server) int {
	t.Helper()
	r := s.admin(t, "GET", "/metrics")
	for line := range strings.Lines(r.raw) {
		var n int
		if _, err := fmt.Sscanf(line, "cartera_cluster_partitions_held %d", &n); err == nil {
			return n
		}
	}
	return -1
}

// waitShared waits until nodes a and b share the eight partitions.
func waitShared(t *testing.T, a, b *server) {
	t.Helper()
	waitUntil(t, "a and b share the eight partitions", func() bool {
		ha, hb := partitionsHeld(t, a), partitionsHeld(t, b)
		return ha > 0 && hb > 0 && ha+hb == 8
	})
}

// Several `serve` nodes on one stream (cluster.node): each holds some of
// the partitions, with the core of serve on each, and any node takes
// events for anyone. Sign-ups sent to either node reach every person's
// journey once, on the node that holds their partition; a node that
// leaves hands its partitions to the other, which goes on. A person's
// profile, export and erasure are answered through any node by the node
// holding them. A path that is no route is 404, as on serve; a node's
// /metrics has the cluster's and each partition's.
func TestServeClusterNodes(t *testing.T) {
	a, b, dir, hook := startTwoNodes(t)
	waitShared(t, a, b)

	signUps := func(s *server, from, to int) {
		t.Helper()
		var events []string
		for i := from; i < to; i++ {
			events = append(events, fmt.Sprintf(`{"type":"track","event":"Signed Up","userId":"node-user-%02d","messageId":"m-node-%02d"}`, i, i))
		}
		r := s.send(t, "partition_test_key", "/v1/batch", `{"batch":[`+strings.Join(events, ",")+`]}`)
		if r.status != 200 {
			t.Fatalf("batch to a node: %d %s", r.status, r.raw)
		}
	}
	signUps(a, 0, 12)
	signUps(b, 12, 24)
	waitUntil(t, "24 first sends", func() bool { return hook.sends("hello") >= 24 })
	from := map[string]int{}
	people := map[string]int{}
	for _, c := range hook.seen() {
		from[c.node]++
		people[c.profile]++
	}
	if len(people) != 24 || from["a"] == 0 || from["b"] == 0 {
		t.Fatalf("first sends to %d people, %v by node; want 24 people, some from each node", len(people), from)
	}
	for pid, n := range people {
		if n != 1 {
			t.Errorf("%s got %d first sends, want 1", pid, n)
		}
	}

	// The dev clock moves on every node at once: an hour later each
	// node's timers send the second step to the people it holds.
	if r := a.do(t, "POST", "/v1/admin/clock", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(`{"advance":"2h"}`)); r.status != 200 {
		t.Fatalf("advance the clock through a: %d %s", r.status, r.raw)
	}
	waitUntil(t, "b's clock moved too", func() bool {
		r := b.admin(t, "GET", "/v1/admin/clock")
		return r.status == 200 && r.body["offset"] == "2h0m0s"
	})
	waitUntil(t, "24 second sends", func() bool { return hook.sends("later") >= 24 })
	later := map[string]int{}
	for _, c := range hook.seen() {
		if c.step == "later" {
			later[c.node]++
		}
	}
	if later["a"] == 0 || later["b"] == 0 || later["a"]+later["b"] != 24 {
		t.Errorf("second sends by node %v, want 24 from both", later)
	}
	if r := b.admin(t, "GET", "/v1/outbox"); r.status != 200 || r.body["state"] != "queued" || r.body["messages"] == nil {
		t.Errorf("the outbox through b: %d %.300s", r.status, r.raw)
	}
	if r := a.admin(t, "DELETE", "/v1/outbox/1"); r.status != 400 || !strings.Contains(r.raw, "partition") {
		t.Errorf("a drop that names no partition through a: %d %s, want 400 asking for it", r.status, r.raw)
	}
	if r := a.admin(t, "DELETE", "/v1/outbox/999999?partition=3"); r.status != 404 {
		t.Errorf("a drop of no message of partition 3 through a: %d %s, want its holder's 404", r.status, r.raw)
	}

	metrics := a.admin(t, "GET", "/metrics")
	if metrics.status != 200 || !strings.Contains(metrics.raw, `cartera_events_accepted_total{partition="`) || !strings.Contains(metrics.raw, `cartera_cluster_partition_lag_events{partition="`) {
		t.Errorf("a's /metrics: %d, without the partitions' accepted events or lags:\n%.2000s", metrics.status, metrics.raw)
	}
	if r := a.admin(t, "GET", "/v1/no-such-route"); r.status != 404 {
		t.Errorf("a path that is no route through a node: %d %s, want 404", r.status, r.raw)
	}
	// An audience's export: every partition's rows under one header.
	csv := a.admin(t, "GET", "/v1/audiences/members/export.csv")
	lines := strings.Split(strings.TrimSuffix(csv.raw, "\n"), "\n")
	if csv.status != 200 || len(lines) != 25 || lines[0] != "profile_id,entered_at,email_sha256,phone_sha256" || !slices.IsSorted(lines[1:]) {
		t.Errorf("the members' export through a: %d, %d lines:\n%s", csv.status, len(lines), csv.raw)
	}
	// A journey's page adds up every partition's steps.
	var page struct {
		Journey journeySummary `json:"journey"`
		Steps   []stepView     `json:"steps"`
	}
	if r := b.admin(t, "GET", "/v1/journeys/signup"); r.status != 200 || json.Unmarshal([]byte(r.raw), &page) != nil {
		t.Fatalf("a journey's page through b: %d %s", r.status, r.raw)
	}
	if page.Journey.Entered != 24 || len(page.Steps) != 3 || page.Steps[0].ID != "hello" || page.Steps[0].Counts["sent"] != 24 {
		t.Errorf("the signup journey through b: %+v, want 24 entered and 24 hellos sent", page)
	}
	// The lists add up every partition's counts, through either node.
	for _, s := range []*server{a, b} {
		var js struct {
			Journeys []journeySummary `json:"journeys"`
		}
		r := s.admin(t, "GET", "/v1/journeys")
		if err := json.Unmarshal([]byte(r.raw), &js); err != nil || r.status != 200 {
			t.Fatalf("journeys through a node: %d %s (%v)", r.status, r.raw, err)
		}
		entered := map[string]int64{}
		for _, j := range js.Journeys {
			entered[j.ID] = j.Entered
		}
		if len(js.Journeys) != 3 || entered["signup"] != 24 || entered["daily"] != 0 || entered["split"] != 0 {
			t.Errorf("journeys through a node: %+v, want signup entered 24 times and daily none", js.Journeys)
		}
		var as struct {
			Audiences []rules.AudienceInfo `json:"audiences"`
		}
		r = s.admin(t, "GET", "/v1/audiences")
		if err := json.Unmarshal([]byte(r.raw), &as); err != nil || r.status != 200 {
			t.Fatalf("audiences through a node: %d %s (%v)", r.status, r.raw, err)
		}
		if len(as.Audiences) != 1 || as.Audiences[0].Name != "members" || as.Audiences[0].Size != 24 {
			t.Errorf("audiences through a node: %+v, want members of size 24", as.Audiences)
		}
		// The members, a page of 10 at a time, in profile id order: each
		// person once.
		var all []string
		for after, pages := "", 0; ; pages++ {
			var page struct {
				Members []rules.Member `json:"members"`
				Next    string         `json:"next"`
			}
			r := s.admin(t, "GET", "/v1/audiences/members/members?limit=10&after="+after)
			if err := json.Unmarshal([]byte(r.raw), &page); err != nil || r.status != 200 || pages > 5 {
				t.Fatalf("members page %d through a node: %d %s (%v)", pages, r.status, r.raw, err)
			}
			for _, m := range page.Members {
				all = append(all, m.ProfileID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if len(all) != 24 || !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != 24 {
			t.Errorf("the members through a node, by pages of 10: %d %v, want 24 in order, each once", len(all), all)
		}
	}

	// A person's profile, from either node, whichever holds them; then
	// erased through one node: gone from both, and out of the index.
	var pids []string
	for _, s := range []*server{a, b} {
		r := s.admin(t, "GET", "/v1/profiles/user_id:node-user-01")
		if r.status != 200 || r.body["id"] == nil {
			t.Fatalf("node-user-01's profile through a node: %d %s", r.status, r.raw)
		}
		pids = append(pids, fmt.Sprint(r.body["id"]))
		if r := s.admin(t, "GET", "/v1/profiles/profile_id:"+pids[0]+"/export"); r.status != 200 || !strings.Contains(r.raw, "node-user-01") {
			t.Fatalf("node-user-01's export through a node: %d %.300s", r.status, r.raw)
		}
	}
	if pids[0] != pids[1] {
		t.Fatalf("node-user-01 is %s through a and %s through b", pids[0], pids[1])
	}
	if r := b.admin(t, "GET", "/v1/profiles/user_id:nobody"); r.status != 404 {
		t.Errorf("an unknown person through a node: %d %s, want 404", r.status, r.raw)
	}
	if r := b.do(t, "GET", "/v1/profiles/user_id:node-user-01", nil, nil); r.status != 401 {
		t.Errorf("a profile without the admin token: %d, want 401", r.status)
	}
	// Tracking links through either node reach the person's node: an
	// open is recorded on the profile, an unsubscribe withdraws consent
	// (read back by the holder before it says so).
	cfg, err := loadConfig(&serveFlags{config: nodeConfig(t, dir, "t", hook.url), set: map[string]bool{"config": true}}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTracker(cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	msg := email.MessageInfo{ProfileID: pids[0], Journey: "signup", Step: "hello", Template: "hello", Key: "node-test-key"}
	path := func(u string) string {
		t.Helper()
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		return parsed.Path
	}
	if r := a.do(t, "GET", path(tr.OpenURL(msg)), nil, nil); r.status != 200 || r.header.Get("Content-Type") != "image/gif" {
		t.Fatalf("an open pixel through a: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if r := b.do(t, "POST", path(tr.UnsubscribeURL(msg)), nil, nil); r.status != 200 || !strings.Contains(r.raw, "Unsubscribed") {
		t.Fatalf("an unsubscribe through b: %d %.300s", r.status, r.raw)
	}
	if r := b.do(t, "GET", email.ClickPath+"not-a-token", nil, nil); r.status != 404 {
		t.Errorf("a click on a token that does not parse: %d %.200s, want 404", r.status, r.raw)
	}
	prof := a.admin(t, "GET", "/v1/profiles/profile_id:"+pids[0])
	if !strings.Contains(prof.raw, `"Email Opened"`) {
		t.Errorf("the open is not on the profile: %.1500s", prof.raw)
	}
	consent, _ := prof.body["consent"].(map[string]any)
	if emailConsent, _ := consent["email"].(map[string]any); emailConsent == nil || emailConsent["granted"] != false {
		t.Errorf("email consent after the unsubscribe: %v, want withdrawn", prof.body["consent"])
	}
	if r := b.admin(t, "DELETE", "/v1/profiles/user_id:node-user-01"); r.status != 200 {
		t.Fatalf("erase node-user-01 through b: %d %s", r.status, r.raw)
	}
	for _, s := range []*server{a, b} {
		if r := s.admin(t, "GET", "/v1/profiles/profile_id:"+pids[0]); r.status != 404 {
			t.Errorf("the erased profile through a node: %d %.300s, want 404", r.status, r.raw)
		}
	}

	// b leaves: a holds everything and goes on.
	sentBefore := len(hook.seen())
	b.stopNow(t)
	waitUntil(t, "a holds the eight partitions", func() bool { return partitionsHeld(t, a) == 8 })
	signUps(a, 24, 30)
	waitUntil(t, "30 first sends", func() bool { return hook.sends("hello") >= 30 })
	for _, c := range hook.seen()[sentBefore:] {
		if c.node != "a" {
			t.Errorf("a send after b left came from %s", c.node)
		}
	}
}

// The wallet web service through cluster nodes, on the examples: a pass
// issued through one node names its person in its serial, and its
// download, a device's registration, the device's list of updated passes
// (asked of every partition, its tag holding each one's) and the latest
// pass are answered through either node by the node holding the person.
func TestServeClusterNodesWallet(t *testing.T) {
	a, b, logA := startExampleNodes(t, nil)
	if r := a.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"wallet-ana","traits":{"email":"ana@example.com","loyalty_card":"4000-1234"}}`); r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.raw)
	}
	var issued passView
	waitUntil(t, "a pass issued through b", func() bool {
		r := b.admin(t, "POST", "/v1/profiles/user_id:wallet-ana/passes")
		if r.status != 200 && r.status != 201 {
			return false // the identify is not applied yet, or a partition is moving
		}
		if err := json.Unmarshal([]byte(r.raw), &issued); err != nil {
			t.Fatal(err)
		}
		return true
	})
	prof := a.admin(t, "GET", "/v1/profiles/user_id:wallet-ana")
	if pid := fmt.Sprint(prof.body["id"]); !strings.HasPrefix(issued.Serial, pid+"-") {
		t.Fatalf("serial %q does not name %s", issued.Serial, pid)
	}
	u, err := url.Parse(issued.AppleURL)
	if err != nil {
		t.Fatal(err)
	}
	dl := a.do(t, "GET", u.RequestURI(), nil, nil)
	if dl.status != 200 || dl.header.Get("Content-Type") != "application/vnd.apple.pkpass" {
		t.Fatalf("download through a: %d %s", dl.status, dl.header.Get("Content-Type"))
	}
	token, err := passAuthToken([]byte(dl.raw))
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "ApplePass " + token, "Content-Type": "application/json"}
	reg := "/wallet/v1/devices/phone-1/registrations/" + issued.PassTypeIdentifier
	if r := b.do(t, "POST", reg+"/"+issued.Serial, auth, []byte(`{"pushToken":"0a0b0c"}`)); r.status != 201 {
		t.Fatalf("register the device through b: %d %s", r.status, r.raw)
	}
	// A partition moving between the two nodes, just started, makes it
	// 503; asked again at a device's pace (faster is the device limit's
	// 429).
	var r reply
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		r = a.do(t, "GET", reg, nil, nil)
		if r.status != 503 && r.status != 429 || time.Now().After(deadline) {
			break
		}
	}
	if r.status != 200 || fmt.Sprint(r.body["serialNumbers"]) != "["+issued.Serial+"]" || !strings.HasPrefix(fmt.Sprint(r.body["lastUpdated"]), "c1:") {
		t.Fatalf("the device's passes through a: %d %s", r.status, r.raw)
	}
	if again := b.do(t, "GET", reg+"?passesUpdatedSince="+url.QueryEscape(fmt.Sprint(r.body["lastUpdated"])), nil, nil); again.status != 204 {
		t.Fatalf("the device's passes since its tag, through b: %d %s, want 204", again.status, again.raw)
	}
	if r := b.do(t, "GET", "/wallet/v1/passes/"+issued.PassTypeIdentifier+"/"+issued.Serial, auth, nil); r.status != 200 || r.header.Get("Last-Modified") == "" {
		t.Fatalf("the latest pass through b: %d %v", r.status, r.header)
	}
	if r := a.do(t, "GET", "/wallet/v1/passes/"+issued.PassTypeIdentifier+"/"+issued.Serial, map[string]string{"Authorization": "ApplePass wrong"}, nil); r.status != 401 {
		t.Fatalf("the latest pass with a wrong token: %d, want 401", r.status)
	}
	// The development chain is said once by the node, not by each of the
	// partitions' cores it opened.
	if n := strings.Count(logA.String(), "DEVELOPMENT chain"); n != 1 || partitionsHeld(t, a) < 2 {
		t.Errorf("a, holding %d partitions, warned of the development chain %d times, want once", partitionsHeld(t, a), n)
	}
}

// Read-your-writes across nodes: a read through one node, right after
// events about the person were acknowledged by another, waits for the
// holder of their partition to apply them (as serve's admin reads wait
// for its own log), and sees every one.
func TestServeClusterNodesReadYourWrites(t *testing.T) {
	a, b, _, _ := startTwoNodes(t)
	mustOK(t, a.send(t, "partition_test_key", "/v1/track", `{"type":"track","event":"Signed Up","userId":"ryw-user","messageId":"ryw-0"}`))
	waitUntil(t, "ryw-user through b", func() bool { return b.admin(t, "GET", "/v1/profiles/user_id:ryw-user").status == 200 })
	for round := 1; round <= 3; round++ {
		var events []string
		for i := range 300 {
			events = append(events, fmt.Sprintf(`{"type":"track","event":"Page Viewed","userId":"ryw-user","messageId":"ryw-%d-%d"}`, round, i))
		}
		mustOK(t, a.send(t, "partition_test_key", "/v1/batch", `{"batch":[`+strings.Join(events, ",")+`]}`))
		r := b.admin(t, "GET", "/v1/profiles/user_id:ryw-user")
		computed, _ := r.body["computed"].(map[string]any)
		if want := float64(300 * round); r.status != 200 || computed["views"] != want {
			t.Fatalf("round %d: ryw-user through b right after the batch through a: %d, %v views, want %v", round, r.status, computed["views"], want)
		}
	}
}

// A reload through one node puts the journey files every node was given
// in force on every partition's core: the answer comes once all run the
// new version. A node whose files compile to another version refuses
// the reload told to it, keeps what it runs, and the answer says which
// partitions run what.
func TestServeClusterNodesReload(t *testing.T) {
	a, b, dir, _ := startTwoNodes(t)
	waitShared(t, a, b)
	edit := func(node, wait string) {
		t.Helper()
		path := filepath.Join(dir, node, "conf", "journeys", "signup.yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, regexp.MustCompile(`wait: \d+h`).ReplaceAll(b, []byte("wait: "+wait)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	versions := func(s *server) map[string]any {
		var js struct {
			Journeys []journeySummary `json:"journeys"`
		}
		var r reply
		waitUntil(t, "the journeys through a node", func() bool {
			r = s.admin(t, "GET", "/v1/journeys")
			return r.status == 200 // not while a partition moves
		})
		if err := json.Unmarshal([]byte(r.raw), &js); err != nil {
			t.Fatal(err)
		}
		out := map[string]any{}
		for _, j := range js.Journeys {
			out[j.ID] = j.Version
		}
		return out
	}
	before := versions(a)

	edit("a", "2h")
	edit("b", "2h")
	dry := b.admin(t, "POST", "/v1/journeys/reload?dry_run=true")
	if dry.status != 200 || !strings.Contains(dry.raw, "wait: 2h") || versions(b)["signup"] != before["signup"] {
		t.Fatalf("a dry run through b: %d %.500s; want the change shown and nothing reloaded", dry.status, dry.raw)
	}
	r := a.admin(t, "POST", "/v1/journeys/reload")
	if r.status != 200 {
		t.Fatalf("a reload through a: %d %s", r.status, r.raw)
	}
	after := versions(b)
	if after["signup"] == before["signup"] || after["daily"] != before["daily"] {
		t.Fatalf("journey versions through b after the reload: %v, before %v; want signup's new", after, before)
	}

	// b's files now differ from a's: b refuses, and the answer says so.
	edit("a", "3h")
	r = a.admin(t, "POST", "/v1/journeys/reload")
	if r.status != 504 || !strings.Contains(r.raw, "still run other journey versions") {
		t.Fatalf("a reload with b's files differing: %d %s, want 504 naming the partitions", r.status, r.raw)
	}
}

// A template's test send through a node is sent by the node holding the
// person it takes its data from, through the real email destination; one
// with no person by partition 0's holder.
func TestServeClusterNodesTemplateTest(t *testing.T) {
	relay := smtptest.Start(t, "cartera", "relay-pass")
	a, b, _ := startExampleNodes(t, map[string]string{"CARTERA_SMTP_URL": relay.URL, "CARTERA_SMTP_CA_FILE": relay.CAFile})
	if r := a.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"tmpl-ana","traits":{"first_name":"Ana","email":"ana@example.com"}}`); r.status != 200 {
		t.Fatalf("identify: %d %s", r.status, r.raw)
	}
	waitUntil(t, "ana applied", func() bool { return b.admin(t, "GET", "/v1/profiles/user_id:tmpl-ana").status == 200 })
	r := b.testSend(t, "cart_reminder", map[string]any{"to": "qa@shoes.example", "profile": "user_id:tmpl-ana",
		"data": map[string]any{"trigger": map[string]any{"cart_id": "c9", "url": "https://shoes.example/cart/c9"}}}, testAdminToken)
	if r.status != 200 || r.body["success"] != true {
		t.Fatalf("test send through b: %d %s", r.status, r.raw)
	}
	if subj, _ := r.body["subject"].(string); !strings.HasPrefix(subj, "[TEST] Ana") {
		t.Errorf("subject %q, want [TEST] and the person's name", subj)
	}
	if r := a.testSend(t, "cart_reminder", map[string]any{"to": "qa@shoes.example"}, testAdminToken); r.status != 200 {
		t.Fatalf("test send with no person through a: %d %s", r.status, r.raw)
	}
	if r := a.testSend(t, "cart_reminder", map[string]any{"to": "qa@shoes.example", "profile": "user_id:nobody"}, testAdminToken); r.status != 404 {
		t.Errorf("test send for nobody: %d %s, want 404", r.status, r.raw)
	}
	if mails := relay.Mails(); len(mails) != 2 || mails[0].To[0] != "qa@shoes.example" {
		t.Fatalf("relay got %d mails, want the two tests", len(mails))
	}
}

// A backtest through a node runs on every partition's holder over the
// events its partition of the stream holds, and adds the results up: the
// 24 people who signed up through either node each enter the signup
// journey once. Files that do not load are refused as on one node.
func TestServeClusterNodesBacktest(t *testing.T) {
	a, b, _, hook := startTwoNodes(t)
	waitShared(t, a, b)
	var events []string
	for i := range 24 {
		events = append(events, fmt.Sprintf(`{"type":"track","event":"Signed Up","userId":"bt-user-%02d","messageId":"m-bt-%02d"}`, i, i))
	}
	if r := a.send(t, "partition_test_key", "/v1/batch", `{"batch":[`+strings.Join(events[:12], ",")+`]}`); r.status != 200 {
		t.Fatalf("batch through a: %d %s", r.status, r.raw)
	}
	if r := b.send(t, "partition_test_key", "/v1/batch", `{"batch":[`+strings.Join(events[12:], ",")+`]}`); r.status != 200 {
		t.Fatalf("batch through b: %d %s", r.status, r.raw)
	}
	waitUntil(t, "24 first sends", func() bool { return hook.sends("hello") >= 24 })

	backtest := func(s *server, body string) reply {
		return s.do(t, "POST", "/v1/journeys/backtest", map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json"}, []byte(body))
	}
	r := backtest(b, `{"since":"1d","until":"2h"}`)
	if r.status != 200 {
		t.Fatalf("backtest through b: %d %.500s", r.status, r.raw)
	}
	var res backtestResult
	if err := json.Unmarshal([]byte(r.raw), &res); err != nil {
		t.Fatal(err)
	}
	entered := map[string]int{}
	for _, l := range res.Actions {
		if l.Journey == "signup" && l.Action == "enter" {
			entered[l.Profile]++
		}
	}
	// (The events include the outcomes of the deliveries, which the
	// partitions' cores append to the stream.)
	if len(entered) != 24 || res.People != 24 || res.Events < 24 || res.Sends["webhook"] < 48 {
		t.Errorf("backtest: %d entered signup, %d people, %d events, sends %v; want 24, 24, 24 or more and two sends each",
			len(entered), res.People, res.Events, res.Sends)
	}
	for pid, n := range entered {
		if n != 1 {
			t.Errorf("%s entered signup %d times in the backtest", pid, n)
		}
	}
	if !slices.IsSortedFunc(res.Actions, func(x, y simLine) int { return compareTimes(x.At, y.At) }) {
		t.Error("the actions are not in time order")
	}
	if r := backtest(a, `{"files":{"bad.yaml":"id: [nope"}}`); r.status != 400 {
		t.Errorf("a backtest of files that do not load: %d %.300s, want 400", r.status, r.raw)
	}
}
