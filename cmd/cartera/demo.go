package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"cartera/profiles"
)

// demo replays seed 000 (and 001) against a running gateway with the
// examples loaded and prints the timeline a person can follow: the shopper
// who abandons a cart in the app, the email, the retargeting audience, the
// purchase at the till that ends it all, and the tier upgrade that turns
// the wallet pass gold. It needs the dev clock (make run turns it on) to
// let a day pass in a second.
func (m *Main) demo(ctx context.Context, args []string) error {
	var flagErr bytes.Buffer
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(&flagErr)
	base := fs.String("url", "http://127.0.0.1:8080", "the running gateway")
	token := fs.String("admin-token", "", "admin token (env CARTERA_ADMIN_TOKEN, default the examples' dev token)")
	appKey := fs.String("app-key", "app_dev_write_key", "write key of the app source")
	webKey := fs.String("web-key", "web_dev_write_key", "write key of the web source")
	posKey := fs.String("pos-key", "pos_dev_write_key", "write key of the tills (pos source)")
	webSecret := fs.String("web-identity-secret", "web_dev_identity_secret_change_me", "identity_secret of the web source (signs the logged-in user id, as the shop's backend does)")
	appSecret := fs.String("app-identity-secret", "app_dev_identity_secret_change_me", "identity_secret of the app source")
	wait := fs.Duration("wait", 15*time.Second, "how long to wait for each step")
	person := fs.String("person", "", "a suffix for the demo person's ids (default random, so the demo can run again)")
	if err := fs.Parse(args); err != nil {
		_, _ = io.Copy(m.Stderr, &flagErr)
		return &usageError{err.Error()}
	}
	if *token == "" {
		*token = m.Getenv("CARTERA_ADMIN_TOKEN")
	}
	if *token == "" {
		*token = "dev-admin-token-change-me"
	}
	d := &demoRun{ctx: ctx, out: m.Stdout, base: strings.TrimRight(*base, "/"), token: *token, wait: *wait,
		keys:    map[string]string{"app": *appKey, "web": *webKey, "pos": *posKey},
		secrets: map[string]string{"app": *appSecret, "web": *webSecret}, start: time.Now(), client: &http.Client{Timeout: 10 * time.Second}, person: *person}
	if err := d.run(); err != nil {
		fmt.Fprintf(m.Stderr, "demo: %v\n", err)
		return errReported
	}
	return nil
}

type demoRun struct {
	ctx   context.Context
	out   io.Writer
	base  string
	token string
	keys  map[string]string
	// secrets are the client sources' identity secrets, for verified logins.
	secrets map[string]string
	wait    time.Duration
	start   time.Time
	client  *http.Client
	now     time.Time // the server's clock
	madrid  *time.Location
	person  string
}

// say prints one line of the timeline: wall seconds since the start, the
// server's (Madrid) time, and what happened.
func (d *demoRun) say(format string, args ...any) {
	fmt.Fprintf(d.out, "%5.1fs  %s  %s\n", time.Since(d.start).Seconds(), d.now.In(d.madrid).Format("Mon 15:04"), fmt.Sprintf(format, args...))
}

func (d *demoRun) call(method, path, auth string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w (is `make run` running?)", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (d *demoRun) admin(method, path string, body, out any) error {
	_, err := d.call(method, path, "Bearer "+d.token, body, out)
	return err
}

// verified is the context of a logged-in user's message: the identity
// verification the shop's backend computes with the source's secret.
func (d *demoRun) verified(source, userID string) map[string]any {
	return map[string]any{"user_hash": profiles.IdentityHash([]byte(d.secrets[source]), userID)}
}

// send posts Segment events as a source's SDK would.
func (d *demoRun) send(source, path string, body map[string]any) error {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(d.keys[source]+":"))
	_, err := d.call(http.MethodPost, path, auth, body, nil)
	return err
}

// advance moves the server's dev clock forward.
func (d *demoRun) advance(by string) error {
	var c clockInfo
	if err := d.admin(http.MethodPost, "/v1/admin/clock", map[string]string{"advance": by}, &c); err != nil {
		return err
	}
	d.now = c.Now
	return nil
}

// demoProfile is what the demo reads of a profile.
type demoProfile struct {
	ID         string         `json:"id"`
	Traits     map[string]any `json:"traits"`
	Computed   map[string]any `json:"computed"`
	Identities []struct {
		Kind  string `json:"kind"`
		Value string `json:"value"`
	} `json:"identities"`
	Journeys []struct {
		Journey   string   `json:"journey"`
		Step      string   `json:"step"`
		Audiences []string `json:"audiences"`
	} `json:"journeys"`
	Passes []passView `json:"passes"`
	Merges []struct {
		Action string `json:"action"`
	} `json:"merges"`
	Events []struct {
		Event      string         `json:"event"`
		Properties map[string]any `json:"properties"`
	} `json:"events"`
}

func (d *demoRun) profile(ident string) (*demoProfile, error) {
	var p demoProfile
	err := d.admin(http.MethodGet, "/v1/profiles/"+url.PathEscape(ident)+"?events=50", nil, &p)
	return &p, err
}

// until polls the profile until cond holds.
func (d *demoRun) until(ident, what string, cond func(*demoProfile) bool) (*demoProfile, time.Duration, error) {
	began := time.Now()
	deadline := began.Add(d.wait)
	for {
		p, err := d.profile(ident)
		if err == nil && cond(p) {
			return p, time.Since(began), nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("timed out")
			}
			return nil, 0, fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-d.ctx.Done():
			return nil, 0, d.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// merged counts the merges in the profile's ledger.
func (p *demoProfile) merged() int {
	n := 0
	for _, m := range p.Merges {
		if m.Action == "merge" {
			n++
		}
	}
	return n
}

func (p *demoProfile) event(name, journey string) map[string]any {
	for _, e := range p.Events {
		if e.Event == name && (journey == "" || e.Properties["journey"] == journey) {
			return e.Properties
		}
	}
	return nil
}

func (p *demoProfile) instance(journey string) (step string, audiences []string, ok bool) {
	for _, j := range p.Journeys {
		if j.Journey == journey {
			return j.Step, j.Audiences, true
		}
	}
	return "", nil, false
}

func (d *demoRun) run() error {
	var err error
	if d.madrid, err = time.LoadLocation("Europe/Madrid"); err != nil {
		return err
	}
	var c clockInfo
	if code, err := d.call(http.MethodGet, "/v1/admin/clock", "Bearer "+d.token, nil, &c); err != nil {
		if code == http.StatusNotFound {
			return errors.New("the server's dev clock is off: start it with `make run` (or CARTERA_DEV_CLOCK=1) so the demo can let a day pass")
		}
		return err
	}
	d.now = c.Now
	// Marketing email waits out the examples' quiet hours (21:00-09:00 in
	// Madrid): at night, the demo moves the clock to the next morning.
	if local := d.now.In(d.madrid); local.Hour() < 9 || local.Hour() >= 20 {
		next := time.Date(local.Year(), local.Month(), local.Day(), 10, 0, 0, 0, d.madrid)
		if !next.After(local) {
			next = next.AddDate(0, 0, 1)
		}
		if err := d.advance(next.Sub(local).Round(time.Minute).String()); err != nil {
			return err
		}
		d.say("it is night in Madrid: the clock moves to the morning (quiet hours hold marketing email)")
	}

	var sfx [3]byte
	_, _ = rand.Read(sfx[:])
	id := hex.EncodeToString(sfx[:])
	if d.person != "" {
		id = d.person
		copy(sfx[:], id)
	}
	user, device, card := "ana-"+id, "phone-"+id, fmt.Sprintf("4000 %04d %04d", int(sfx[0])<<4|int(sfx[1]>>4), int(sfx[1]&15)<<8|int(sfx[2]))
	email := "ana." + id + "@example.com"
	fmt.Fprintf(d.out, "Cartera demo: seed 000 (cart recovery) and 001 (smart wallet) against %s\n", d.base)
	fmt.Fprintf(d.out, "Ana is %s; her loyalty card is %s; her phone is device %s.\n\n", user, card, device)

	// Ana's history. Last month she bought at the till with her loyalty
	// card (the till knows nothing else of her); last week she browsed the
	// app on her phone without logging in; then she signed up online with
	// her card, and logged in on the phone: the phone's anonymous profile
	// merges into hers.
	tillID := "pos-card-" + strings.ReplaceAll(card, " ", "")
	for _, step := range []struct {
		source, path string
		body         map[string]any
	}{
		{"pos", "/v1/track", map[string]any{"anonymousId": tillID, "event": "Order Completed", "timestamp": d.now.AddDate(0, -1, 0).Format(time.RFC3339),
			"properties": map[string]any{"order_id": "pos-" + id + "-1", "revenue": 300, "currency": "EUR", "channel": "pos", "store_id": "madrid-gran-via", "loyalty_card": card}}},
		{"app", "/v1/track", map[string]any{"anonymousId": device, "event": "Product Viewed", "timestamp": d.now.AddDate(0, 0, -7).Format(time.RFC3339),
			"properties": map[string]any{"product_id": "trail-42", "name": "Trail runner", "category": "running", "price": 89.9}}},
		// Signed up and logged in: the shop's backend signs her user id
		// (identity verification), so the card may find the till's profile.
		{"web", "/v1/identify", map[string]any{"userId": user, "timestamp": d.now.AddDate(0, 0, -6).Format(time.RFC3339), "traits": map[string]any{
			"email": email, "first_name": "Ana", "loyalty_card": card, "vip": true, "locale": "es",
			"consent": map[string]bool{"email": true, "ads": true, "push": true}}, "context": d.verified("web", user)}},
		{"app", "/v1/identify", map[string]any{"userId": user, "anonymousId": device, "timestamp": d.now.AddDate(0, 0, -6).Add(time.Hour).Format(time.RFC3339),
			"context": d.verified("app", user)}},
	} {
		if err := d.send(step.source, step.path, step.body); err != nil {
			return err
		}
	}
	p, _, err := d.until("user_id:"+user, "Ana's history on one profile", func(p *demoProfile) bool {
		return p.Computed["orders_count"] == float64(1) && p.merged() > 0
	})
	if err != nil {
		return err
	}
	d.say("history: last month Ana bought for 300 EUR at the Gran Vía till with her card; last week she browsed the app, not logged in")
	d.say("         she signed up online (VIP, opted in): the card finds the till's profile")
	d.say("profile merged: logging in on the phone merged its anonymous profile into hers (%d merge in her ledger): %s holds her user id, email, card and phone", p.merged(), p.ID)

	var issued passView
	if err := d.admin(http.MethodPost, "/v1/profiles/user_id:"+user+"/passes", nil, &issued); err != nil {
		return err
	}
	d.say("wallet pass %s issued: tier %s, %v points; download: %s", issued.Serial, issued.Tier, issued.Values["points"], issued.AppleURL)
	if err := d.installPass(issued, "iphone-"+id); err != nil {
		return err
	}
	d.say("Ana adds it to Apple Wallet: her iPhone registers with the PassKit web service for updates")
	fmt.Fprintln(d.out)

	// Seed 000: the phone browses and leaves shoes in the cart.
	cart := "cart-" + id
	for _, ev := range []map[string]any{
		{"anonymousId": device, "event": "Product Viewed", "properties": map[string]any{"product_id": "trail-42", "name": "Trail runner", "category": "running", "price": 89.9}},
		{"anonymousId": device, "event": "Product Added", "properties": map[string]any{"product_id": "trail-42", "name": "Trail runner", "price": 89.9, "quantity": 1, "cart_id": cart}},
	} {
		if err := d.send("app", "/v1/track", ev); err != nil {
			return err
		}
	}
	d.say("event in: the app (device %s, not logged in) sends Product Viewed and Product Added", device)
	p, took, err := d.until("user_id:"+user, "the cart email", func(p *demoProfile) bool { return p.event("Email Delivered", "cart_abandonment") != nil })
	if err != nil {
		return err
	}
	d.say("profile resolved: the anonymous phone is Ana; she is VIP, so the cart journey skips the half-hour wait")
	ev := p.event("Email Delivered", "cart_abandonment")
	d.say("email %q %s, %s after the event", ev["template"], where(ev), took.Round(time.Millisecond))
	if step, _, ok := p.instance("cart_abandonment"); ok {
		d.say("journey cart_abandonment waits at step %q: was the email opened?", step)
	}

	if err := d.advance("24h"); err != nil {
		return err
	}
	d.say("a day passes (dev clock +24h) and the email is not opened")
	if _, _, err = d.until("user_id:"+user, "the retargeting audience", func(p *demoProfile) bool {
		_, auds, ok := p.instance("cart_abandonment")
		return ok && len(auds) > 0
	}); err != nil {
		return err
	}
	synced, err := d.synced("user_id:"+user, p.ID, "add")
	if err != nil {
		return err
	}
	if len(synced) == 0 {
		d.say("audience add: Ana joins the retargeting audience (Meta and Google are off until they have tokens: examples/cartera.yaml or CARTERA_META_ACCESS_TOKEN...)")
	} else {
		d.say("audience add: Ana joins the retargeting audience, synced to %s with her hashed email", strings.Join(synced, " and "))
	}
	fmt.Fprintln(d.out)

	// The next day she buys at the till.
	if err := d.advance("2h"); err != nil {
		return err
	}
	sent := time.Now()
	if err := d.send("pos", "/v1/track", map[string]any{"anonymousId": tillID, "event": "Order Completed",
		"properties": map[string]any{"order_id": "pos-" + id + "-2", "revenue": 250, "currency": "EUR", "channel": "pos", "store_id": "madrid-gran-via", "loyalty_card": card}}); err != nil {
		return err
	}
	d.say("POS purchase: the till sends Order Completed, 250 EUR, with Ana's card")
	if _, _, err = d.until("user_id:"+user, "the journey exit", func(p *demoProfile) bool {
		_, _, ok := p.instance("cart_abandonment")
		return !ok
	}); err != nil {
		return err
	}
	d.say("journey exit and audience removal: the cart journey ends (converted) and Ana leaves the retargeting audience, %s after the sale", time.Since(sent).Round(time.Millisecond))
	if synced, err := d.synced("user_id:"+user, p.ID, "remove"); err != nil {
		return err
	} else if len(synced) > 0 {
		d.say("audience removal synced to %s, %s after the sale (ad platform changes batch for a second)", strings.Join(synced, " and "), time.Since(sent).Round(time.Millisecond))
	}
	p, _, err = d.until("user_id:"+user, "the tier upgrade", func(p *demoProfile) bool {
		return p.Traits["tier"] == "gold" && len(p.Passes) > 0 && p.Passes[0].Tier == "gold"
	})
	if err != nil {
		return err
	}
	d.say("tier upgrade: 550 EUR in total makes Ana gold (journey tier_upgrade)")
	pass := p.Passes[0]
	d.say("pass updated: %s is now tier %s with %v points and the message %q", pass.Serial, pass.Tier, pass.Values["points"], pass.Values["message"])
	p, _, err = d.until("user_id:"+user, "the pass push", func(p *demoProfile) bool { return p.event("Pass Updated", "") != nil })
	if err != nil {
		return err
	}
	if n, _ := p.event("Pass Updated", "")["devices"].(float64); n > 0 {
		d.say("push: APNs told %v device(s); Wallet fetches the gold pass and shows \"You are now Gold\"", n)
	} else {
		d.say("push: none sent (APNs is off with the development certificate; set CARTERA_APNS_URL for a stand-in)")
	}
	if p, _, err := d.until("user_id:"+user, "the gold email", func(p *demoProfile) bool { return p.event("Email Delivered", "tier_upgrade") != nil }); err == nil {
		d.say("email %q in Spanish, her locale: %s", "welcome_gold", where(p.event("Email Delivered", "tier_upgrade")))
	}
	fmt.Fprintf(d.out, "\nLook closer:\n  curl -H 'Authorization: Bearer %s' %s/v1/profiles/user_id:%s\n", d.token, d.base, user)
	return nil
}

// where says where a delivered email went.
func where(delivered map[string]any) string {
	if f, ok := delivered["file"].(string); ok {
		return "written to the outbox folder: data/outbox/" + f
	}
	return "sent over SMTP"
}

// passAuthToken reads the authenticationToken of a .pkpass's pass.json, as
// Wallet does.
func passAuthToken(pkpass []byte) (string, error) {
	zr, err := zip.NewReader(bytes.NewReader(pkpass), int64(len(pkpass)))
	if err != nil {
		return "", fmt.Errorf("read the .pkpass: %w", err)
	}
	for _, f := range zr.File {
		if f.Name != "pass.json" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return "", fmt.Errorf("read pass.json: %w", err)
		}
		var pass struct {
			AuthenticationToken string `json:"authenticationToken"`
		}
		err = json.NewDecoder(rc).Decode(&pass)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("decode pass.json: %w", err)
		}
		if pass.AuthenticationToken == "" {
			return "", errors.New("pass.json has no authenticationToken")
		}
		return pass.AuthenticationToken, nil
	}
	return "", errors.New("the .pkpass has no pass.json")
}

// installPass plays Wallet on a phone: it downloads the pass, reads its
// authenticationToken and registers the device for pushes.
func (d *demoRun) installPass(p passView, device string) error {
	u, err := url.Parse(p.AppleURL)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, d.base+u.RequestURI(), nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download pass: %d %v", resp.StatusCode, err)
	}
	token, err := passAuthToken(b)
	if err != nil {
		return fmt.Errorf("download pass: %w", err)
	}
	pushToken := hex.EncodeToString([]byte(device))
	path := "/wallet/v1/devices/" + url.PathEscape(device) + "/registrations/" + url.PathEscape(p.PassTypeIdentifier) + "/" + url.PathEscape(p.Serial)
	_, err = d.call(http.MethodPost, path, "ApplePass "+token, map[string]string{"pushToken": pushToken}, nil)
	return err
}

// synced waits until the person's queued ad audience changes are
// delivered and returns the platforms that confirmed an op ("add",
// "remove"); none when no platform is configured.
func (d *demoRun) synced(ident, profileID, op string) ([]string, error) {
	var queued struct {
		Messages []struct {
			Destination string `json:"destination"`
			ProfileID   string `json:"profile_id"`
		} `json:"messages"`
	}
	want := map[string]bool{}
	began := time.Now()
	for {
		if err := d.admin(http.MethodGet, "/v1/outbox", nil, &queued); err != nil {
			return nil, err
		}
		for _, m := range queued.Messages {
			// Ad audiences ("meta:retargeting"), not offline conversions
			// ("conversions:meta"), which report no Audience Synced.
			if m.ProfileID == profileID && strings.Contains(m.Destination, ":") && !strings.HasPrefix(m.Destination, "conversions:") {
				platform, _, _ := strings.Cut(m.Destination, ":")
				want[platform] = true
			}
		}
		if len(want) == 0 && time.Since(began) > 200*time.Millisecond {
			return nil, nil // nothing queued for an ad platform
		}
		p, err := d.profile(ident)
		if err != nil {
			return nil, err
		}
		var got []string
		for _, e := range p.Events {
			if e.Event == "Audience Synced" && e.Properties["op"] == op {
				if dest, _ := e.Properties["destination"].(string); want[dest] && !slices.Contains(got, dest) {
					got = append(got, dest)
				}
			}
		}
		if len(want) > 0 && len(got) == len(want) {
			slices.Sort(got)
			return got, nil
		}
		if time.Since(began) > d.wait {
			return nil, fmt.Errorf("waiting for the ad platforms to confirm %s: %v of %v", op, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
