package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/channels/email"
	"cartera/channels/google"
	"cartera/channels/meta"
	"cartera/channels/sms"
	"cartera/channels/webhook"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
	"cartera/wallet"
	walletgoogle "cartera/wallet/google"
)

// ChannelsConfig sets up delivery. Secrets can come from the environment
// (CARTERA_TRACKING_SECRET); outside services' bases from CARTERA_*_URL.
type ChannelsConfig struct {
	// TrackingSecret signs open, click and unsubscribe links. Empty: a
	// random one is made once and kept beside the bbolt file.
	TrackingSecret string `yaml:"tracking_secret"`
	// TrackingKeyID names TrackingSecret in the tokens it makes (empty:
	// none, as before key ids); TrackingPrevious are retired keys that
	// still open the links of mail sent under them (the one without an
	// id: tokens made before key ids). CARTERA_TRACKING_KEY_ID and
	// CARTERA_TRACKING_PREVIOUS (id:secret,... ) set them.
	TrackingKeyID    string              `yaml:"tracking_key_id"`
	TrackingPrevious []TrackingKeyConfig `yaml:"tracking_previous"`
	Email            struct {
		From              string `yaml:"from"`
		ReplyTo           string `yaml:"reply_to"`
		UnsubscribeMailto string `yaml:"unsubscribe_mailto"`
		// Templates are the folders of email templates, relative to the
		// config file: one or a list. A template id is in one folder only.
		Templates     Folders           `yaml:"templates"`
		DefaultLocale string            `yaml:"default_locale"`
		Links         map[string]string `yaml:"links"`
		// LinkHosts are the hosts mail may link to and clicks redirect to
		// ("shoes.example", "*.shoes.example"), beside the public URL's, the
		// hosts of Links and, with Google Wallet, pay.google.com. A link to
		// any other host (a URL an event carried, say) leaves the mail.
		LinkHosts []string `yaml:"link_hosts"`
		// LinkTTL is how long open and click links work (default 180 days);
		// unsubscribe links never expire.
		LinkTTL time.Duration `yaml:"link_ttl"`
		// SMTPCAFile is a PEM file of the CA that signs the relay's
		// certificate, for a relay on a private CA (CARTERA_SMTP_CA_FILE);
		// empty: the system roots. Relative to the config file.
		SMTPCAFile string `yaml:"smtp_ca_file"`
	} `yaml:"email"`
	SMS struct {
		AccountSID string `yaml:"account_sid"`
		AuthToken  string `yaml:"auth_token"`
		From       string `yaml:"from"`
		Templates  string `yaml:"templates"`
	} `yaml:"sms"`
	Webhook struct {
		URL    string `yaml:"url"`
		Secret string `yaml:"secret"`
	} `yaml:"webhook"`
	// Audiences maps an audience (a rules audience or an ad audience of
	// the policies) to the ad platforms that mirror it.
	Audiences map[string]AudienceDestinations `yaml:"audiences"`
	// Conversions sends store purchases to the ad platforms.
	Conversions ConversionsConfig `yaml:"conversions"`
	// GoogleStatus is when requests accepted by Google's Data Manager API
	// are asked about (requestStatus:retrieve), in the background, until
	// they are done; on whenever a Data Manager destination is.
	GoogleStatus google.StatusConfig `yaml:"google_status"`
	// Delivery overrides delivery settings by destination name.
	Delivery map[string]channels.DestinationConfig `yaml:"delivery"`
	// Retention says how long the outbox keeps idempotency keys and dead
	// letters (settings left out keep their defaults).
	Retention channels.RetentionConfig `yaml:"retention"`
}

// AudienceDestinations are where one audience is mirrored.
type AudienceDestinations struct {
	Meta *struct {
		AudienceID  string `yaml:"audience_id"`
		AccessToken string `yaml:"access_token"`
	} `yaml:"meta"`
	Google  *GoogleAudience `yaml:"google"`
	Webhook *struct {
		URL    string `yaml:"url"`
		Secret string `yaml:"secret"`
	} `yaml:"webhook"`
}

// loadTemplates reads the email templates the config names (nil without).
func loadTemplates(cfg *Config) (*email.Templates, error) {
	if len(cfg.Channels.Email.Templates) == 0 {
		return nil, nil
	}
	loc := cfg.Channels.Email.DefaultLocale
	if loc == "" {
		loc = "en"
	}
	return email.LoadTemplateDirs(cfg.Channels.Email.Templates, loc)
}

// trackingSecret is the configured secret, or one kept beside the data.
// newTracker makes the tracking links' and tokens' keeper from the config.
func newTracker(cfg *Config, now func() time.Time) (*email.Tracker, error) {
	secret, err := trackingSecret(cfg)
	if err != nil {
		return nil, err
	}
	t := &email.Tracker{Secret: secret, KeyID: cfg.Channels.TrackingKeyID, Previous: trackingKeys(cfg),
		BaseURL: cfg.PublicURL, LinkHosts: linkHosts(cfg), LinkTTL: cfg.Channels.Email.LinkTTL, Now: now}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("channels.email: %w", err)
	}
	return t, nil
}

func trackingSecret(cfg *Config) ([]byte, error) {
	if cfg.Channels.TrackingSecret != "" {
		return []byte(cfg.Channels.TrackingSecret), nil
	}
	path := filepath.Join(filepath.Dir(cfg.Data), "tracking.key")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("keep tracking secret: %w", err)
	}
	return b, nil
}

// TrackingKeyConfig is a retired tracking key.
type TrackingKeyConfig struct {
	ID     string `yaml:"id"`
	Secret string `yaml:"secret"`
}

// trackingKeys are the retired tracking keys of the config.
func trackingKeys(cfg *Config) []email.TrackingKey {
	var out []email.TrackingKey
	for _, k := range cfg.Channels.TrackingPrevious {
		out = append(out, email.TrackingKey{ID: k.ID, Secret: []byte(k.Secret)})
	}
	return out
}

// delivery sets up the outbox and the destinations the config names.
type delivery struct {
	outbox  *channels.Outbox
	tracker *email.Tracker
	// email sends test mails directly (nil: no email templates).
	email *email.Sender
	// audiences maps an audience to its destination names.
	audiences map[string][]string
	// googleStatus polls the Data Manager requests (nil: no Data Manager
	// destination, or google_status.off).
	googleStatus *google.StatusPoller
}

func (a *app) openDelivery(cfg *Config, reg prometheus.Registerer, now func() time.Time) error {
	tracker, err := newTracker(cfg, now)
	if err != nil {
		return err
	}
	people := storeProfiles{a.store}
	oopts := channels.OutboxOptions{Now: now, Logger: a.log.With("component", "outbox"),
		Metrics: channels.NewMetrics(reg), Sink: outcomeSink{a.store},
		Scrub: func() error { _, err := a.store.Scrub(scrubWait); return err }, Fence: a.fence, Pace: a.pace}
	if a.fence != nil {
		// A cluster node's partition core (partitions.go): what it
		// delivered is noted in the partition's stream.
		oopts.Note = func(ctx context.Context, profileID string, body []byte) (bool, error) {
			return a.store.Note(ctx, profileID, channels.NoteDelivered, body)
		}
	}
	ob, err := channels.NewOutbox(a.store.DB(), oopts)
	if err != nil {
		return err
	}
	// On a cluster node's partition, what another node's outbox noted it
	// delivered before this one took the partition over (channels'
	// delivered.go); elsewhere there are no notes.
	a.store.HandleNotes(channels.NoteDelivered, ob.ApplyDelivered)
	d := &delivery{outbox: ob, tracker: tracker, audiences: map[string][]string{}}
	if usesDataManager(cfg) && !cfg.Channels.GoogleStatus.Off {
		d.googleStatus, err = google.NewStatusPoller(a.store.DB(), cfg.Channels.GoogleStatus, google.StatusOptions{Now: now,
			Logger: a.log.With("component", "google_status"), Registerer: reg, Dead: ob})
		if err != nil {
			return fmt.Errorf("channels.google_status: %w", err)
		}
	}
	register := func(dest channels.Destination, def channels.DestinationConfig) error {
		if o, ok := cfg.Channels.Delivery[dest.Name()]; ok {
			def = overlayDelivery(def, o)
		}
		return ob.Register(dest, def)
	}
	tpl, err := loadTemplates(cfg)
	if err != nil {
		return err
	}
	if tpl != nil {
		ec := email.DefaultConfig()
		ec.SMTPURL, ec.OutboxDir, ec.Logger = cfg.SMTPURL, filepath.Join(filepath.Dir(cfg.Data), "outbox"), a.log.With("component", "email")
		if v := cfg.Channels.Email.From; v != "" {
			ec.From = v
		}
		ec.ReplyTo, ec.UnsubscribeMailto, ec.Links = cfg.Channels.Email.ReplyTo, cfg.Channels.Email.UnsubscribeMailto, cfg.Channels.Email.Links
		if ec.RootCAs, err = smtpRoots(cfg, a.getenv("CARTERA_SMTP_CA_FILE")); err != nil {
			return err
		}
		sender, err := email.New(ec, tpl, d.tracker, people)
		if err != nil {
			return err
		}
		if err := register(sender, channels.DefaultDestinationConfig()); err != nil {
			return err
		}
		d.email = sender
	}
	if c := cfg.Channels.SMS; c.AccountSID != "" {
		st, err := sms.LoadTextTemplates(c.Templates, "en")
		if err != nil {
			return err
		}
		sc := sms.DefaultConfig()
		sc.AccountSID, sc.AuthToken, sc.From = c.AccountSID, c.AuthToken, c.From
		if u := a.getenv("CARTERA_SMS_URL"); u != "" {
			sc.BaseURL = u
		}
		dest, err := sms.New(sc, st, people)
		if err != nil {
			return err
		}
		if err := register(dest, channels.DefaultDestinationConfig()); err != nil {
			return err
		}
	}
	if c := cfg.Channels.Webhook; c.URL != "" {
		wc := webhook.DefaultConfig()
		wc.URL, wc.Secret = c.URL, []byte(c.Secret)
		dest, err := webhook.New(wc, people)
		if err != nil {
			return err
		}
		if err := register(dest, channels.DefaultDestinationConfig()); err != nil {
			return err
		}
	}
	// Ad audiences batch for a second, so a burst of removals after a
	// sale is one API call that lands within seconds.
	adDefaults := channels.DefaultDestinationConfig()
	adDefaults.BatchSize, adDefaults.BatchWindow, adDefaults.Concurrency = 1000, time.Second, 1
	googleAds, metaOn := false, false
	for _, name := range slices.Sorted(maps.Keys(cfg.Channels.Audiences)) {
		ad := cfg.Channels.Audiences[name]
		var dests []channels.Destination
		if m := ad.Meta; m != nil && m.AccessToken != "" {
			dest, err := a.metaAudience(cfg, name, m.AudienceID, m.AccessToken, people)
			if err != nil {
				return fmt.Errorf("channels.audiences.%s.meta: %w", name, err)
			}
			dests = append(dests, dest)
		} else if m != nil {
			a.log.Warn("meta audience disabled: no access token", "audience", name)
		}
		if g := ad.Google; g != nil && g.set() {
			dest, err := a.googleAudience(cfg, name, g, people, d.googleStatus)
			if err != nil {
				return fmt.Errorf("channels.audiences.%s.google: %w", name, err)
			}
			dests = append(dests, dest)
			googleAds = googleAds || g.API == "google_ads"
		} else if g != nil {
			a.log.Warn("google audience disabled: no credentials", "audience", name)
		}
		metaOn = metaOn || (ad.Meta != nil && ad.Meta.AccessToken != "")
		if w := ad.Webhook; w != nil && w.URL != "" {
			wc := webhook.DefaultConfig()
			wc.Name, wc.URL, wc.Secret, wc.AudienceConsent = webhook.AudiencePrefix+name, w.URL, []byte(w.Secret), "ads"
			dest, err := webhook.New(wc, people)
			if err != nil {
				return fmt.Errorf("channels.audiences.%s.webhook: %w", name, err)
			}
			dests = append(dests, dest)
		}
		for _, dest := range dests {
			if err := register(dest, adDefaults); err != nil {
				return err
			}
			d.audiences[name] = append(d.audiences[name], dest.Name())
		}
	}
	conv, err := a.openConversions(cfg, people, d.googleStatus, func(dest channels.Destination) error { return register(dest, adDefaults) })
	if err != nil {
		return fmt.Errorf("channels.conversions: %w", err)
	}
	metaOn = metaOn || slices.Contains(conv, meta.ConversionsName)
	warnSunsets(a.log, cfg, now(), googleAds, metaOn)
	a.delivery = d
	// Rules audiences mirrored on ad platforms follow their members in
	// the commit that changes them (a processor after the rules engine).
	// An erasure then removes what the outbox holds about the person,
	// after the mirror enqueued the removals it keeps.
	procs := []profiles.Processor{mirror{a: a}}
	if len(conv) > 0 {
		procs = append(procs, newConversions(a, cfg, conv))
	}
	a.store.Use(append(procs, outboxEraser{a: a})...)
	return nil
}

// outboxEraser is a profiles.Processor: an erasure removes the person's
// dead letters and queued messages from the outbox in the same commit,
// except the removals from ad audiences and the pass updates (voids)
// the erasure itself needs delivered.
type outboxEraser struct{ a *app }

type outboxEraserTx struct {
	a  *app
	tx *bbolt.Tx
}

func (e outboxEraser) Begin(tx *bbolt.Tx) profiles.TxProcessor {
	return &outboxEraserTx{a: e.a, tx: tx}
}

func (w *outboxEraserTx) Erased(p *profiles.Profile) error {
	n, err := w.a.delivery.outbox.ErasePerson(w.tx, p.ID, w.a.delivery.stillDue)
	if n > 0 {
		w.a.log.Info("outbox messages of an erased profile removed", "profile", p.ID, "messages", n)
	}
	if err != nil {
		return err
	}
	if gs := w.a.delivery.googleStatus; gs != nil {
		_, err = gs.ErasePerson(w.tx, p.ID)
	}
	return err
}

func (w *outboxEraserTx) Event(*profiles.Profile, *profiles.Event) ([]*profiles.Event, error) {
	return nil, nil
}
func (w *outboxEraserTx) Merged(*profiles.Profile, string) error { return nil }
func (w *outboxEraserTx) Flush() error                           { return nil }
func (w *outboxEraserTx) Done(bool)                              {}

// stillDue says which messages of an erased person must still go: pass
// updates (the void) and removals from ad audiences.
func (d *delivery) stillDue(m *channels.Message) bool {
	if m.Destination == wallet.Destination {
		return true
	}
	for _, dests := range d.audiences {
		if slices.Contains(dests, m.Destination) {
			p, err := channels.DecodeAudience(m.Destination, "", m)
			return err == nil && p.Op == "remove"
		}
	}
	return false
}

// overlayDelivery applies the settings an override names (non-zero) over a
// destination's defaults, so `max_attempts: 3` alone keeps the rest.
func overlayDelivery(def, o channels.DestinationConfig) channels.DestinationConfig {
	set := func(d *int, v int) {
		if v != 0 {
			*d = v
		}
	}
	setD := func(d *time.Duration, v time.Duration) {
		if v != 0 {
			*d = v
		}
	}
	set(&def.Concurrency, o.Concurrency)
	set(&def.BatchSize, o.BatchSize)
	set(&def.MaxAttempts, o.MaxAttempts)
	set(&def.BreakAfter, o.BreakAfter)
	setD(&def.BatchWindow, o.BatchWindow)
	setD(&def.Backoff, o.Backoff)
	setD(&def.MaxBackoff, o.MaxBackoff)
	setD(&def.BreakFor, o.BreakFor)
	return def
}

// smtpRoots reads the relay's CA (env first, then the config's
// smtp_ca_file); nil without one: the system roots.
func smtpRoots(cfg *Config, env string) (*x509.CertPool, error) {
	path := env
	if path == "" {
		path = cfg.Channels.Email.SMTPCAFile
		if path != "" && cfg.path != "" && !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(cfg.path), path)
		}
	}
	if path == "" {
		return nil, nil
	}
	pool, err := certPool(path)
	if err != nil {
		return nil, fmt.Errorf("channels.email.smtp_ca_file: %w", err)
	}
	return pool, nil
}

// identifiers reads a person's emails and phones, and whether they
// may be added to an ad audience: with "ads" in the policies'
// consent_required (as journeys' adds are), only after an explicit yes.
func (a *app) identifiers(p *profiles.Profile) (*journeys.Identifiers, bool) {
	a.mu.Lock()
	needsYes := slices.Contains(a.defs.policy.ConsentRequired, "ads")
	a.mu.Unlock()
	adsOK := !needsYes || p.ConsentValues()["ads"]
	ids := &journeys.Identifiers{}
	for _, r := range p.Identities {
		switch r.Kind {
		case profiles.KindEmail:
			ids.Emails = append(ids.Emails, r.Value)
		case profiles.KindPhone:
			ids.Phones = append(ids.Phones, r.Value)
		}
	}
	return ids, adsOK
}

// audienceMessages are the outbox messages of one ad audience change.
func (a *app) audienceMessages(key, profileID, audience, op string, ids *journeys.Identifiers) []*channels.Message {
	d := a.delivery
	if d == nil || len(d.audiences[audience]) == 0 {
		return nil
	}
	if ids == nil || (len(ids.Emails) == 0 && len(ids.Phones) == 0) {
		// Journeys record these as suppressed (no_identifiers); a rules
		// audience's member without an email or phone lands here.
		a.log.Info("ad audience change not sent: no email or phone to match on", "audience", audience, "op", op, "profile", profileID)
		return nil
	}
	payload, _ := json.Marshal(channels.AudiencePayload{Audience: audience, Op: op, Emails: ids.Emails, Phones: ids.Phones})
	var msgs []*channels.Message
	for _, dest := range d.audiences[audience] {
		msgs = append(msgs, &channels.Message{Key: key + "|" + dest, Destination: dest, ProfileID: profileID, Payload: payload})
	}
	return msgs
}

// scrubWait bounds how long a scrub after an erasure's last message waits
// for read transactions to end.
const scrubWait = 5 * time.Second

// erasing marks the messages an erasure sends (removals carrying the
// erased person's identifiers) for a scrub of the file once they are gone.
func erasing(msgs []*channels.Message) []*channels.Message {
	for _, m := range msgs {
		m.Scrub = true
	}
	return msgs
}

// mirror is a profiles.Processor after the rules engine: an Audience
// Entered or Exited event of a mirrored rules audience enqueues the change
// for the ad platforms in the same commit, and an erase enqueues removals
// from every mirrored audience — nothing is lost in a crash between the
// two.
type mirror struct{ a *app }

type mirrorTx struct {
	a    *app
	tx   *bbolt.Tx
	more bool
}

func (m mirror) Begin(tx *bbolt.Tx) profiles.TxProcessor { return &mirrorTx{a: m.a, tx: tx} }

func (w *mirrorTx) enqueue(msgs []*channels.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	n, err := w.a.delivery.outbox.Enqueue(w.tx, msgs...)
	w.more = w.more || n > 0
	return err
}

func (w *mirrorTx) Event(p *profiles.Profile, ev *profiles.Event) ([]*profiles.Event, error) {
	if ev.Source != profiles.SourceCartera || (ev.Event != rules.EventAudienceEntered && ev.Event != rules.EventAudienceExited) {
		return nil, nil
	}
	aud, _ := ev.Properties["audience"].(string)
	if len(w.a.delivery.audiences[aud]) == 0 {
		return nil, nil
	}
	ids, adsOK := w.a.identifiers(p)
	op := "remove"
	if ev.Event == rules.EventAudienceEntered {
		if !adsOK {
			return nil, nil // no ads consent: never added (removals always go)
		}
		op = "add"
	}
	return nil, w.enqueue(w.a.audienceMessages(ev.MessageID, p.ID, aud, op, ids))
}

func (w *mirrorTx) Erased(p *profiles.Profile) error {
	ids, _ := w.a.identifiers(p)
	for _, aud := range slices.Sorted(maps.Keys(w.a.delivery.audiences)) {
		if err := w.enqueue(erasing(w.a.audienceMessages("erase/"+p.ID+"/"+aud, p.ID, aud, "remove", ids))); err != nil {
			return err
		}
	}
	return nil
}

func (w *mirrorTx) Merged(*profiles.Profile, string) error { return nil }
func (w *mirrorTx) Flush() error                           { return nil }
func (w *mirrorTx) Done(committed bool) {
	if committed && w.more {
		w.a.delivery.outbox.Wake()
	}
}

// enqueue is the journeys' Enqueuer: a send on a channel the outbox
// delivers, and an ad audience change of an audience mirrored on ad
// platforms, become outbox messages, enqueued in the transaction that
// removes the action from the journeys' outbox (nothing is lost between
// the two). Anything else (nil write) goes to deliver.
func (a *app) enqueue(_ context.Context, act journeys.Action) (func(*bbolt.Tx) error, error) {
	d := a.delivery
	if d == nil {
		return nil, nil
	}
	var msgs []*channels.Message
	switch detail := act.Detail.(type) {
	case journeys.SendDetail:
		if !d.outbox.Has(act.Channel) || act.Channel == "wallet" && a.wallet != nil {
			return nil, nil
		}
		data := map[string]any{"journey": act.Journey, "step": act.Step}
		if act.Trigger != nil {
			data["trigger"] = act.Trigger
		}
		if links := a.passLinks(act.Profile); len(links) > 0 {
			data["links"] = links
		}
		payload, err := json.Marshal(channels.SendPayload{Template: detail.Template, Data: data})
		if err != nil {
			return nil, fmt.Errorf("encode send: %w", err)
		}
		msgs = append(msgs, &channels.Message{Key: act.Key, Destination: act.Channel, ProfileID: act.Profile, Journey: act.Journey, Step: act.Step, Payload: payload})
	case journeys.AudienceDetail:
		if len(d.audiences[detail.Audience]) == 0 {
			return nil, nil
		}
		op := "add"
		if act.Action == journeys.ActAudienceRemove {
			op = "remove"
		}
		msgs = a.audienceMessages(act.Key, act.Profile, detail.Audience, op, act.Identifiers)
		if detail.Reason == journeys.ReasonErased {
			msgs = erasing(msgs)
		}
	default:
		return nil, nil
	}
	return func(tx *bbolt.Tx) error {
		_, err := d.outbox.Enqueue(tx, msgs...)
		return err
	}, nil
}

// storeProfiles lets destinations look people up at delivery time.
type storeProfiles struct{ st *profiles.Store }

func (s storeProfiles) Profile(ctx context.Context, id string) (*channels.Profile, error) {
	p, err := s.st.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: id})
	if errors.Is(err, profiles.ErrNotFound) {
		return nil, nil // erased: the destinations drop the message
	} else if err != nil {
		return nil, err
	}
	return channelProfile(p), nil
}

// channelProfile is a profile as destinations see it.
func channelProfile(p *profiles.Profile) *channels.Profile {
	out := &channels.Profile{ID: p.ID, Traits: p.TraitValues(), Consent: p.ConsentValues()}
	// Confirmed addresses first: the one a destination picks is never
	// one only an unverified client event gave while another is known.
	out.Emails, _ = p.Addresses(profiles.KindEmail)
	out.Phones, _ = p.Addresses(profiles.KindPhone)
	if l, ok := out.Traits["locale"].(string); ok {
		out.Locale = l
	}
	return out
}

// outcomeSink records delivery outcomes as events on the profile, keyed by
// the message so a repeated outcome is applied once.
type outcomeSink struct{ st *profiles.Store }

func (s outcomeSink) Record(ctx context.Context, m *channels.Message, outcomes []channels.Outcome) error {
	for _, o := range outcomes {
		props := map[string]any{}
		for k, v := range o.Properties {
			props[k] = v
		}
		if m.Journey != "" {
			props["journey"] = m.Journey
		}
		if m.Step != "" {
			props["step"] = m.Step
		}
		ev := &profiles.Event{Type: profiles.TypeTrack, MessageID: "outcome:" + m.Key + ":" + o.Event, Event: o.Event, Properties: props, Source: profiles.SourceCartera}
		if _, err := s.st.IngestFor(ctx, m.ProfileID, ev); err != nil && !errors.Is(err, profiles.ErrNotFound) {
			return err
		}
		if len(o.Consent) > 0 {
			c := map[string]any{}
			for k, v := range o.Consent {
				c[k] = v
			}
			ev := &profiles.Event{Type: profiles.TypeTrack, MessageID: "consent:" + m.Key + ":" + o.Event, Event: profiles.EventConsentUpdated, Properties: c, Source: profiles.SourceCartera}
			if _, err := s.st.IngestFor(ctx, m.ProfileID, ev); err != nil && !errors.Is(err, profiles.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// logAction is the delivery of actions no destination takes yet.
func logAction(log *slog.Logger, act journeys.Action) {
	log.Info("journey action", "journey", act.Journey, "step", act.Step, "action", act.Action, "channel", act.Channel, "profile", act.Profile, "key", act.Key)
}

// linkHosts are the hosts mail may link to: those the config names, the
// hosts of its named links, and Google Wallet's save links when passes
// go to Google Wallet.
func linkHosts(cfg *Config) []string {
	hosts := slices.Clone(cfg.Channels.Email.LinkHosts)
	for _, l := range cfg.Channels.Email.Links {
		if u, err := url.Parse(l); err == nil && u.Hostname() != "" {
			hosts = append(hosts, strings.ToLower(u.Hostname()))
		}
	}
	if cfg.Wallet.Google.IssuerID != "" {
		if u, err := url.Parse(walletgoogle.SaveURLPrefix); err == nil {
			hosts = append(hosts, u.Hostname())
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}
