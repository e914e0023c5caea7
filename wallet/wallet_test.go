package wallet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/rules"
	"cartera/wallet"
	"cartera/wallet/apns"
	"cartera/wallet/apple"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

const testRules = `
computed_traits:
  - name: orders_count
    aggregate: count
    event: Order Completed
  - name: lifetime_value
    aggregate: sum
    event: Order Completed
    property: revenue
`

const testTemplate = `
organization: Cartera Shoes
description: Loyalty card
tier: 'profile.computed.orders_count >= 3 ? "gold" : "silver"'
default_tier: silver
tiers:
  silver: {}
  gold:
    label: Gold
    colors: {background: "rgb(176, 128, 20)"}
fields:
  header:
    - {key: points, label: POINTS, value: int(profile.computed.lifetime_value), change_message: "You now have %@ points"}
  primary:
    - key: tier
      label: TIER
      value: 'profile.computed.orders_count >= 3 ? "Gold" : "Silver"'
      change_message: "You are now %@"
  secondary:
    - {key: order, label: ORDER, change_message: "%@"}
  back:
    - {key: message, label: LATEST, change_message: "%@"}
barcode:
  message: '"loyalty_card" in profile.identities ? profile.identities.loyalty_card[0] : profile.id'
google:
  points_field: points
  tier_field: tier
`

// queue records the push messages the wallet enqueues.
type queue struct {
	mu    sync.Mutex
	msgs  []*channels.Message
	keys  map[string]bool
	wakes int
}

func (q *queue) Enqueue(_ *bbolt.Tx, msgs ...*channels.Message) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, m := range msgs {
		if q.keys[m.Key] {
			continue
		}
		q.keys[m.Key] = true
		q.msgs = append(q.msgs, m)
		n++
	}
	return n, nil
}

func (q *queue) Wake() { q.mu.Lock(); q.wakes++; q.mu.Unlock() }

func (q *queue) take() []*channels.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.msgs
	q.msgs = nil
	return out
}

type harness struct {
	t     testing.TB
	clock *clocktest.Clock
	store *profiles.Store
	svc   *wallet.Service
	queue *queue
	chain *apple.Chain
	dir   string
	logs  *syncBuffer
}

// syncBuffer is a log sink safe for the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func writeTemplate(t testing.TB, root, id, yaml string) string {
	t.Helper()
	dir := filepath.Join(root, id)
	for name, b := range map[string]string{
		wallet.TemplateFile:     yaml,
		"icon.png":              "\x89PNG icon",
		"icon@2x.png":           "\x89PNG icon 2x",
		"logo.png":              "\x89PNG logo",
		"strip.png":             "\x89PNG silver strip",
		"gold/strip.png":        "\x89PNG gold strip",
		"es.lproj/pass.strings": `"POINTS" = "PUNTOS";`,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with edit applied to the wallet's config.
func newHarnessWith(t testing.TB, edit func(*wallet.Config)) *harness {
	t.Helper()
	return newHarnessNoting(t, edit, nil)
}

// newHarnessNoting is newHarnessWith, its notes kept by noter.
func newHarnessNoting(t testing.TB, edit func(*wallet.Config), noter wallet.Noter) *harness {
	t.Helper()
	h := &harness{t: t, clock: clocktest.New(t0), queue: &queue{keys: map[string]bool{}}, dir: t.TempDir(), logs: &syncBuffer{}}
	specs, err := rules.Parse("rules.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := profiles.DefaultConfig()
	cfg.NoSync = true
	cfg.Identity.Kinds = append(cfg.Identity.Kinds, profiles.KindConfig{Name: "loyalty_card", Paths: []string{"traits.loyalty_card"}, Normalize: "digits"})
	st, err := profiles.Open(context.Background(), filepath.Join(h.dir, "c.db"), cfg, profiles.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	re, err := rules.NewEngine(st.DB(), rs, rules.EngineOptions{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	writeTemplate(t, filepath.Join(h.dir, "passes"), "loyalty", testTemplate)
	ts, err := wallet.LoadTemplates(filepath.Join(h.dir, "passes"), rs.Env)
	if err != nil {
		t.Fatal(err)
	}
	if h.chain, err = apple.DevChain(filepath.Join(h.dir, "wallet-dev"), t0); err != nil {
		t.Fatal(err)
	}
	wcfg := wallet.Config{PublicURL: "https://cartera.example", DefaultTemplate: "loyalty", LinkSecret: []byte("0123456789abcdef0123")}
	if edit != nil {
		edit(&wcfg)
	}
	h.svc, err = wallet.New(st.DB(), h.chain, ts, wcfg,
		wallet.Deps{Viewer: re, Queue: h.queue, Recorder: st, Noter: noter}, wallet.Options{Now: h.clock.Now, Logger: slog.New(slog.NewJSONHandler(h.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st.Use(re, h.svc)
	h.store = st
	return h
}

func (h *harness) ingest(evs ...*profiles.Event) string {
	h.t.Helper()
	for i, e := range evs {
		if e.Type == "" {
			e.Type = profiles.TypeTrack
		}
		if e.Timestamp.IsZero() {
			e.Timestamp = h.clock.Now()
		}
		if e.MessageID == "" {
			e.MessageID = h.t.Name() + "-" + e.Event + "-" + time.Duration(h.clock.Now().Sub(t0)+time.Duration(i)).String()
		}
		e.Source = "test"
	}
	res, err := h.store.Ingest(context.Background(), evs)
	if err != nil {
		h.t.Fatal(err)
	}
	return res[len(res)-1].ProfileID
}

func (h *harness) order(user string, n int, revenue float64) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		h.clock.Advance(time.Minute)
		h.ingest(&profiles.Event{UserID: user, Event: "Order Completed", Properties: map[string]any{"revenue": revenue}})
	}
}

func (h *harness) issue(user string) (string, *wallet.Pass) {
	h.t.Helper()
	id := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: user, Traits: map[string]any{"loyalty_card": "4000-1234"}})
	p, created, err := h.svc.Issue(context.Background(), id, "")
	if err != nil || !created {
		h.t.Fatalf("issue: created %v, err %v", created, err)
	}
	return id, p
}

func TestIssueRendersProfile(t *testing.T) {
	h := newHarness(t)
	h.order("u1", 1, 120.5)
	id, p := h.issue("u1")
	if p.Tier != "silver" || p.Barcode != "40001234" || p.Token == "" || p.Tag == 0 {
		t.Fatalf("pass = %+v", p)
	}
	if got := p.Values["points"]; got != int64(120) {
		t.Errorf("points = %#v, want 120", got)
	}
	again, created, err := h.svc.Issue(context.Background(), id, "loyalty")
	if err != nil || created || again.Serial != p.Serial {
		t.Errorf("second issue: created %v serial %s err %v, want the same pass", created, again.Serial, err)
	}
	if _, _, err := h.svc.Issue(context.Background(), id, "nope"); !errors.Is(err, wallet.ErrUnknownTemplate) {
		t.Errorf("unknown template: err %v", err)
	}
	if _, _, err := h.svc.Issue(context.Background(), "p_missing", ""); !errors.Is(err, wallet.ErrNotFound) {
		t.Errorf("unknown profile: err %v", err)
	}
	passes, err := h.svc.Passes(id)
	if err != nil || len(passes) != 1 || passes[0].Serial != p.Serial {
		t.Errorf("Passes = %v, %v", passes, err)
	}
}

func TestProfileChangeAdvancesTagAndQueuesPush(t *testing.T) {
	h := newHarness(t)
	_, p := h.issue("u1")
	h.queue.take()

	// An event that changes nothing shown: no new tag, no push.
	h.clock.Advance(time.Minute)
	h.ingest(&profiles.Event{UserID: "u1", Event: "Product Viewed"})
	if msgs := h.queue.take(); len(msgs) != 0 {
		t.Fatalf("an unrelated event queued %d pushes", len(msgs))
	}
	same, _ := h.svc.Pass(p.Serial)
	if same.Tag != p.Tag {
		t.Fatalf("tag moved from %d to %d without a change", p.Tag, same.Tag)
	}

	h.order("u1", 3, 100)
	msgs := h.queue.take()
	if len(msgs) != 3 {
		t.Fatalf("3 orders queued %d pushes, want 3 (points change each time)", len(msgs))
	}
	for _, m := range msgs {
		if m.Destination != wallet.Destination || m.ProfileID != p.ProfileID {
			t.Errorf("message %+v", m)
		}
	}
	gold, _ := h.svc.Pass(p.Serial)
	if gold.Tier != "gold" || gold.Values["tier"] != "Gold" || gold.Tag <= p.Tag || !gold.Updated.After(p.Updated) {
		t.Fatalf("after 3 orders: tier %s values %v tag %d updated %s", gold.Tier, gold.Values, gold.Tag, gold.Updated)
	}

	// The signed pass shows it, and the gold tier's strip.
	b, err := h.svc.PKPass(gold)
	if err != nil {
		t.Fatal(err)
	}
	files := unzip(t, b)
	var pj apple.Pass
	if err := json.Unmarshal(files["pass.json"], &pj); err != nil {
		t.Fatal(err)
	}
	if pj.StoreCard == nil || pj.StoreCard.PrimaryFields[0].Value != "Gold" || pj.StoreCard.PrimaryFields[0].ChangeMessage != "You are now %@" {
		t.Errorf("pass.json primary fields = %+v", pj.StoreCard)
	}
	if pj.BackgroundColor == nil || *pj.BackgroundColor != (apple.Color{R: 176, G: 128, B: 20}) {
		t.Errorf("background = %v, want the gold tier's", pj.BackgroundColor)
	}
	if string(files["strip.png"]) != "\x89PNG gold strip" {
		t.Errorf("strip.png = %q, want the gold tier's", files["strip.png"])
	}
	if pj.WebServiceURL != "https://cartera.example/wallet" || pj.AuthenticationToken != gold.Token {
		t.Errorf("web service = %s token %s", pj.WebServiceURL, pj.AuthenticationToken)
	}
}

// TestOneUpdatePerCommit: three orders of one person in one batch change
// the pass once: one new tag, one push.
func TestOneUpdatePerCommit(t *testing.T) {
	h := newHarness(t)
	_, p := h.issue("u1")
	h.queue.take()
	h.clock.Advance(time.Minute)
	var batch []*profiles.Event
	for i := range 3 {
		batch = append(batch, &profiles.Event{UserID: "u1", Event: "Order Completed", MessageID: fmt.Sprintf("batch-%d", i), Properties: map[string]any{"revenue": 10.0}})
	}
	h.ingest(batch...)
	if msgs := h.queue.take(); len(msgs) != 1 {
		t.Fatalf("one batch of 3 orders queued %d pushes, want 1", len(msgs))
	}
	got, _ := h.svc.Pass(p.Serial)
	if got.Tag != p.Tag+1 || got.Values["points"] != float64(30) {
		t.Errorf("tag %d (was %d), points %v", got.Tag, p.Tag, got.Values["points"])
	}
}

func TestPKPassCachedUntilChange(t *testing.T) {
	h := newHarness(t)
	_, p := h.issue("u1")
	first, err := h.svc.PKPass(p)
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour) // a re-sign would carry another time
	second, _ := h.svc.PKPass(p)
	if &first[0] != &second[0] {
		t.Error("an unchanged pass was signed again")
	}
	h.order("u1", 1, 10)
	changed, _ := h.svc.Pass(p.Serial)
	third, _ := h.svc.PKPass(changed)
	if &third[0] == &first[0] {
		t.Error("a changed pass was served from the cache")
	}
}

func TestUpdateOverridesAndMessage(t *testing.T) {
	h := newHarness(t)
	id, p := h.issue("u1")
	h.queue.take()
	ctx := context.Background()
	if err := h.svc.Update(ctx, id, map[string]any{"order": "Shipped"}, "Your order is on its way", "j/1/2/ship"); err != nil {
		t.Fatal(err)
	}
	got, _ := h.svc.Pass(p.Serial)
	if got.Values["order"] != "Shipped" || got.Values["message"] != "Your order is on its way" || got.Message != "Your order is on its way" {
		t.Fatalf("values = %v message %q", got.Values, got.Message)
	}
	msgs := h.queue.take()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0].Key, "j/1/2/ship|") {
		t.Fatalf("queued %v", msgs)
	}
	// The same action again (a redelivery) queues nothing new.
	if err := h.svc.Update(ctx, id, map[string]any{"order": "Shipped"}, "Your order is on its way", "j/1/2/ship"); err != nil {
		t.Fatal(err)
	}
	if msgs := h.queue.take(); len(msgs) != 0 {
		t.Errorf("a repeated action queued %d pushes", len(msgs))
	}
	if again, _ := h.svc.Pass(p.Serial); again.Tag != got.Tag {
		t.Errorf("a repeated action made a new version: tag %d, was %d", again.Tag, got.Tag)
	}
	// A later profile change keeps the override.
	h.order("u1", 1, 10)
	got, _ = h.svc.Pass(p.Serial)
	if got.Values["order"] != "Shipped" || got.Values["points"] != float64(10) {
		t.Errorf("after an order: values %v", got.Values)
	}
}

func TestWebService(t *testing.T) {
	h := newHarness(t)
	id, p := h.issue("u1")
	ctx := context.Background()
	ptid := h.chain.PassTypeID

	created, err := h.svc.Register(ctx, "dev1", ptid, p.Serial, p.Token, "aaaa")
	if err != nil || !created {
		t.Fatalf("register: created %v err %v", created, err)
	}
	created, err = h.svc.Register(ctx, "dev1", ptid, p.Serial, p.Token, "aaaa")
	if err != nil || created {
		t.Fatalf("register again: created %v err %v", created, err)
	}
	for name, call := range map[string]func() error{
		"bad token": func() error {
			_, err := h.svc.Register(ctx, "dev1", ptid, p.Serial, "wrong-token-wrong-token", "aaaa")
			return err
		},
		"bad pass type": func() error {
			_, err := h.svc.Register(ctx, "dev1", "pass.other", p.Serial, p.Token, "aaaa")
			return err
		},
		"bad serial": func() error { _, err := h.svc.Register(ctx, "dev1", ptid, "nope", p.Token, "aaaa"); return err },
		// The token is checked after the pass: a stranger learns nothing.
		"bad token, bad push token": func() error {
			_, err := h.svc.Register(ctx, "dev1", ptid, p.Serial, "wrong-token-wrong-token", "not-hex")
			return err
		},
	} {
		if err := call(); !errors.Is(err, wallet.ErrUnauthorized) {
			t.Errorf("%s: err %v, want ErrUnauthorized", name, err)
		}
	}
	// APNs device tokens are hex: anything else is refused at
	// registration, not accepted and then dropped at the first push.
	for _, tc := range []struct{ token, want string }{
		{"not-hex", "pushToken: want an APNs device token in hex (64 digits), got 7 characters"},
		{"zz" + strings.Repeat("a", 62), "pushToken: want an APNs device token in hex digits only"},
		{strings.Repeat("a", 202), "got 202 characters"},
		{"", "got 0 characters"},
	} {
		_, err := h.svc.Register(ctx, "dev2", ptid, p.Serial, p.Token, tc.token)
		if !errors.Is(err, wallet.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("push token %q: %v, want ErrInvalid with %q", tc.token, err, tc.want)
		}
	}
	if serials, _, _ := h.svc.Updated("dev2", ptid, ""); len(serials) != 0 {
		t.Errorf("a refused push token was registered")
	}
	if _, err := h.svc.Register(ctx, "dev/1", ptid, p.Serial, p.Token, "aaaa"); !errors.Is(err, wallet.ErrInvalid) {
		t.Errorf("device id with a slash: err %v", err)
	}

	serials, last, err := h.svc.Updated("dev1", ptid, "")
	if err != nil || !slices.Equal(serials, []string{p.Serial}) || last == "" {
		t.Fatalf("updated since nothing: %v %q %v", serials, last, err)
	}
	serials, _, _ = h.svc.Updated("dev1", ptid, last)
	if len(serials) != 0 {
		t.Fatalf("updated since the last tag: %v, want none", serials)
	}
	h.order("u1", 1, 10)
	serials, next, _ := h.svc.Updated("dev1", ptid, last)
	if !slices.Equal(serials, []string{p.Serial}) || next == last {
		t.Fatalf("after a change: %v %q (was %q)", serials, next, last)
	}

	if err := h.svc.Unregister(ctx, "dev1", ptid, p.Serial, p.Token); err != nil {
		t.Fatal(err)
	}
	if serials, _, _ := h.svc.Updated("dev1", ptid, ""); len(serials) != 0 {
		t.Errorf("after unregister: %v", serials)
	}
	events, err := h.store.Events(id, 50)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range events {
		counts[e.Event]++
	}
	if counts[wallet.EventPassInstalled] != 1 || counts[wallet.EventPassRemoved] != 1 {
		t.Errorf("wallet events on the profile: %v, want one Pass Installed and one Pass Removed", counts)
	}
}

func TestDownloadLink(t *testing.T) {
	h := newHarness(t)
	_, p := h.issue("u1")
	links, err := h.svc.Links(p)
	if err != nil {
		t.Fatal(err)
	}
	if links.GoogleSaveURL != "" {
		t.Errorf("google link without google config: %s", links.GoogleSaveURL)
	}
	u := links.AppleURL
	q := u[strings.Index(u, "?")+1:]
	var exp, sig string
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "exp":
			exp = v
		case "sig":
			sig = v
		}
	}
	if _, b, err := h.svc.Download(p.Serial, exp, sig); err != nil || len(b) == 0 {
		t.Fatalf("download: %v", err)
	}
	if _, _, err := h.svc.Download(p.Serial, exp, strings.Repeat("0", len(sig))); !errors.Is(err, wallet.ErrBadLink) {
		t.Errorf("forged signature: %v", err)
	}
	h.clock.Advance(31 * 24 * time.Hour)
	if _, _, err := h.svc.Download(p.Serial, exp, sig); !errors.Is(err, wallet.ErrBadLink) {
		t.Errorf("expired link: %v", err)
	}
}

func TestEraseVoidsAndMergeMoves(t *testing.T) {
	h := newHarness(t)
	// An anonymous visitor's pass follows them when they log in.
	anon := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, AnonymousID: "a1"})
	p, _, err := h.svc.Issue(context.Background(), anon, "")
	if err != nil {
		t.Fatal(err)
	}
	known := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "u9", Traits: map[string]any{"email": "x@example.com"}})
	h.clock.Advance(time.Minute)
	merged := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "u9", AnonymousID: "a1"})
	if merged != known && merged != anon {
		t.Fatalf("merge landed on %s", merged)
	}
	passes, _ := h.svc.Passes(merged)
	if len(passes) != 1 || passes[0].Serial != p.Serial || passes[0].ProfileID != merged {
		t.Fatalf("after merge, passes of %s = %+v", merged, passes)
	}
	h.queue.take()
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindProfileID, Value: merged}, false); err != nil {
		t.Fatal(err)
	}
	v, err := h.svc.Pass(p.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Voided || v.ProfileID != "" || len(v.Values) != 0 || v.Barcode != "" {
		t.Fatalf("erased pass = %+v, want voided and empty", v)
	}
	if msgs := h.queue.take(); len(msgs) != 1 {
		t.Errorf("erase queued %d pushes, want 1 (devices fetch the voided pass)", len(msgs))
	}
	b, _ := h.svc.PKPass(v)
	var pj apple.Pass
	_ = json.Unmarshal(unzip(t, b)["pass.json"], &pj)
	if !pj.Voided || len(pj.Barcodes) != 0 {
		t.Errorf("voided pass.json = %+v", pj)
	}
}

// pusher is a stand-in for the APNs client: it records tokens and answers
// per token.
type pusher struct {
	mu     sync.Mutex
	pushed []string
	answer map[string]apns.Result
}

func (p *pusher) Push(_ context.Context, tokens []string) []apns.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]apns.Result, len(tokens))
	for i, tok := range tokens {
		p.pushed = append(p.pushed, tok)
		out[i] = apns.Result{Token: tok, Status: 200}
		if a, ok := p.answer[tok]; ok {
			a.Token = tok
			out[i] = a
		}
	}
	return out
}

func TestUpdatesCoalesceAndForget(t *testing.T) {
	h := newHarness(t)
	_, p := h.issue("u1")
	ctx := context.Background()
	ptid := h.chain.PassTypeID
	for dev, tok := range map[string]string{"d1": "a1", "d2": "a2", "d3": "a3"} {
		if _, err := h.svc.Register(ctx, dev, ptid, p.Serial, p.Token, tok); err != nil {
			t.Fatal(err)
		}
	}
	h.queue.take()
	h.order("u1", 2, 50) // two changes: two messages in one batch
	msgs := h.queue.take()
	if len(msgs) != 2 {
		t.Fatalf("queued %d", len(msgs))
	}
	fake := &pusher{answer: map[string]apns.Result{
		"a2": {Status: 410, Reason: "Unregistered", Err: errors.New("410 Unregistered")},
	}}
	res := h.svc.NewUpdates(fake, nil).Deliver(ctx, msgs)
	for i, r := range res {
		if r.Err != nil || len(r.Events) != 1 || r.Events[0].Event != wallet.EventPassUpdated {
			t.Errorf("result %d = %+v", i, r)
		}
	}
	slices.Sort(fake.pushed)
	if !slices.Equal(fake.pushed, []string{"a1", "a2", "a3"}) {
		t.Errorf("pushed %v, want each device once", fake.pushed)
	}
	if serials, _, _ := h.svc.Updated("d2", ptid, ""); len(serials) != 0 {
		t.Errorf("an Unregistered device still follows the pass")
	}
	d2Sum := sha256.Sum256([]byte("d2"))
	d2Hash := hex.EncodeToString(d2Sum[:8])
	if logs := h.logs.String(); !strings.Contains(logs, `"msg":"wallet registration removed","serial":"`+p.Serial+`","device":"`+d2Hash+`","status":410,"reason":"Unregistered"`) || strings.Contains(logs, `"a2"`) || strings.Contains(logs, `"d2"`) {
		t.Errorf("the removal is not logged with its reason and the device's hash, or the log holds the push token or device id:\n%s", logs)
	}

	// A retryable failure fails the message, so the outbox retries it.
	fake = &pusher{answer: map[string]apns.Result{"a1": {Status: 503, Reason: "ServiceUnavailable", Err: errors.New("503")}}}
	h.order("u1", 1, 5)
	res = h.svc.NewUpdates(fake, nil).Deliver(ctx, h.queue.take())
	if len(res) != 1 || res[0].Err == nil || channels.IsPermanent(res[0].Err) {
		t.Errorf("503: result %+v, want a retryable error", res)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	specs, _ := rules.Parse("rules.yaml", []byte(testRules))
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"missing organization", "description: x\n", "loyalty/pass.yaml:1:1: organization is required"},
		{"bad style", "organization: o\ndescription: d\nstyle: boardingPass\n", `loyalty/pass.yaml:3:8: style: want one of storeCard, eventTicket, coupon, generic, got "boardingPass"`},
		{"bad colour", "organization: o\ndescription: d\ncolors: {background: blue}\n", `loyalty/pass.yaml:3:22: colors.background: color "blue": want rgb(r, g, b)`},
		{"bad CEL", "organization: o\ndescription: d\nfields:\n  header:\n    - {key: p, value: profile.computed.nope}\n", "loyalty/pass.yaml:5:"},
		{"change message without %@", "organization: o\ndescription: d\nfields:\n  header:\n    - {key: p, change_message: hello}\n", "loyalty/pass.yaml:5:32: fields.header.change_message: want %@ where the new value goes"},
		{"unknown group", "organization: o\ndescription: d\nfields:\n  middle: []\n", `loyalty/pass.yaml:4:3: fields: unknown group "middle"`},
		{"google field missing", "organization: o\ndescription: d\ngoogle: {points_field: points}\n", `loyalty/pass.yaml:1:1: google.points_field: no field "points"`},
		{"unknown key", "organization: o\ndescription: d\nsize: 3\n", `loyalty/pass.yaml:3:1: unknown field "size"`},
		{"unknown google key", "organization: o\ndescription: d\ngoogle: {colour: red}\n", `loyalty/pass.yaml:3:10: google: unknown field "colour"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wallet.ParseTemplate(filepath.Join("loyalty", wallet.TemplateFile), []byte(tc.yaml), rs.Env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("no icon", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, wallet.TemplateFile), []byte("organization: o\ndescription: d\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wallet.LoadTemplate(dir, rs.Env); err == nil || !strings.Contains(err.Error(), "icon.png is required") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestExampleTemplateLoads(t *testing.T) {
	specs, err := rules.ReadFiles("../examples/rules/traits.yaml", "../examples/rules/audiences.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(specs, rules.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := wallet.LoadTemplates("../examples/passes", rs.Env)
	if err != nil {
		t.Fatal(err)
	}
	lt := ts["loyalty"]
	if lt == nil || len(lt.Tiers) != 3 || lt.Tiers["event"].Style != apple.StyleEventTicket {
		t.Fatalf("loyalty template = %+v", lt)
	}
	for _, name := range []string{"icon.png", "icon@2x.png", "icon@3x.png", "logo.png", "strip.png", "es.lproj/pass.strings"} {
		if !lt.Assets("gold").Has(name) {
			t.Errorf("gold tier lacks %s", name)
		}
	}
}

// With SerialsNameProfile, a new pass's serial starts with its profile id
// (what a cluster node routes the wallet web service's requests by), and
// SerialProfile reads it back; a serial of the usual form names nobody.
func TestSerialsNameProfile(t *testing.T) {
	h := newHarnessWith(t, func(c *wallet.Config) { c.SerialsNameProfile = true })
	id, p := h.issue("ana")
	if !strings.HasPrefix(p.Serial, id+"-") || wallet.SerialProfile(p.Serial) != id {
		t.Fatalf("serial %q of %s's pass, SerialProfile %q", p.Serial, id, wallet.SerialProfile(p.Serial))
	}
	_, plain := newHarness(t).issue("bo")
	for _, s := range []string{plain.Serial, "", "-", "zz-abc", "not a serial"} {
		if got := wallet.SerialProfile(s); got != "" {
			t.Errorf("SerialProfile(%q) = %q, want none", s, got)
		}
	}
}
