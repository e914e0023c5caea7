package wallet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/profiles"
	"cartera/rules"
	"cartera/wallet/apple"
	"cartera/wallet/google"
)

// Buckets of the wallet in the store's bbolt file.
var (
	bucketPasses    = []byte("wallet_passes")     // serial → Pass (JSON); its sequence is the tag counter
	bucketByProfile = []byte("wallet_by_profile") // profile id \x00 serial → nil
	bucketDevices   = []byte("wallet_devices")    // device \x00 pass type \x00 serial → registration
	bucketPassRegs  = []byte("wallet_pass_regs")  // serial \x00 device → registration
)

// Destination is the outbox destination of pass updates.
const Destination = "wallet"

// Wallet events put on profiles.
const (
	EventPassInstalled = "Pass Installed"
	EventPassRemoved   = "Pass Removed"
	EventPassUpdated   = "Pass Updated"
)

// Errors of the web service and issuing.
var (
	// ErrUnauthorized is a wrong token, serial or pass type: the web
	// service answers 401 without telling which.
	ErrUnauthorized = errors.New("wallet: unauthorized")
	// ErrNotFound is a profile or pass that does not exist.
	ErrNotFound = errors.New("wallet: not found")
	// ErrUnknownTemplate is an issue request for a template not loaded.
	ErrUnknownTemplate = errors.New("wallet: unknown pass template")
	// ErrBadLink is a download link whose signature or time is wrong.
	ErrBadLink = errors.New("wallet: invalid or expired link")
	// ErrInvalid is a malformed device id or push token.
	ErrInvalid = errors.New("wallet: invalid request")
)

// Viewer gives the profile as conditions see it within a transaction (the
// rules engine does).
type Viewer interface {
	ViewIn(tx *bbolt.Tx, p *profiles.Profile, now time.Time) (*rules.ProfileView, error)
}

// Queue takes push messages into the outbox within a transaction.
type Queue interface {
	Enqueue(tx *bbolt.Tx, msgs ...*channels.Message) (int, error)
	Wake()
}

// Recorder puts wallet events on a person's profile.
type Recorder interface {
	IngestFor(ctx context.Context, profileID string, e *profiles.Event) (profiles.Result, error)
}

// GoogleConfig enables "Save to Google Wallet" links and object updates.
type GoogleConfig struct {
	// IssuerID is the numeric Google Wallet issuer id.
	IssuerID string
	// Account is the service account that signs save links.
	Account *google.ServiceAccount
	// Origins are the web origins allowed to show the save button.
	Origins []string
}

// Config is the wallet's settings.
type Config struct {
	// PublicURL is the base the pass's webServiceURL (PublicURL+"/wallet")
	// and download links use.
	PublicURL string
	// DefaultTemplate is issued when a request names none.
	DefaultTemplate string
	// LinkSecret signs download links; PreviousLinkSecrets, those of
	// retired keys, still open the links they signed until they expire
	// (a rotation of the secret breaks no link sent before it).
	LinkSecret          []byte
	PreviousLinkSecrets [][]byte
	// LinkTTL is how long a download link works (default 30 days).
	LinkTTL time.Duration
	// CacheBytes bounds the signed passes kept in memory (default 256 MiB).
	CacheBytes int
	Google     GoogleConfig
	// SerialsNameProfile starts each new pass's serial with its profile
	// id and a '-' (SerialProfile reads it back), so that a cluster node
	// can send the wallet web service's requests about a pass to the node
	// holding its person. Passes issued before keep their serials.
	SerialsNameProfile bool
}

// SerialProfile returns the profile id a serial starts with
// (Config.SerialsNameProfile), or "" for a serial that names none.
func SerialProfile(serial string) string {
	pid, _, ok := strings.Cut(serial, "-")
	if !ok || !profiles.ValidProfileID(pid) {
		return ""
	}
	return pid
}

// Deps are what the wallet uses of the rest of Cartera.
type Deps struct {
	Viewer   Viewer
	Queue    Queue
	Recorder Recorder
	// Noter, when set, keeps the passes issued and the devices
	// registered where the next owner of a cluster node's partition
	// finds them (notes.go). Nil: the file is the only record.
	Noter Noter
}

// Options are the clock, randomness and logger.
type Options struct {
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// Service issues passes, keeps them in step with profiles and serves the
// PassKit web service. It is a profiles.Processor: put it after the rules
// and journey engines, so a pass shows what this commit made of the
// person.
type Service struct {
	db        *bbolt.DB
	chain     *apple.Chain
	templates atomic.Pointer[map[string]*Template]
	cfg       Config
	deps      Deps
	now       func() time.Time
	rand      io.Reader
	log       *slog.Logger
	cache     *cache
}

// New opens the wallet in db.
func New(db *bbolt.DB, chain *apple.Chain, templates map[string]*Template, cfg Config, deps Deps, opts Options) (*Service, error) {
	if chain == nil {
		return nil, errors.New("open wallet: no signing chain")
	}
	if len(cfg.LinkSecret) < 16 {
		return nil, errors.New("open wallet: link secret shorter than 16 bytes")
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 30 * 24 * time.Hour
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 256 << 20
	}
	s := &Service{db: db, chain: chain, cfg: cfg, deps: deps, now: opts.Now, rand: opts.Rand, log: opts.Logger, cache: newCache(cfg.CacheBytes)}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.Replace(templates); err != nil {
		return nil, err
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketPasses, bucketByProfile, bucketDevices, bucketPassRegs, bucketPushes} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return openStats(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("open wallet: %w", err)
	}
	return s, nil
}

// Replace swaps the templates (a reload). Passes of a template that is
// gone keep their last signed form until it comes back.
func (s *Service) Replace(templates map[string]*Template) error {
	if err := s.CheckTemplates(templates); err != nil {
		return err
	}
	s.UseTemplates(templates)
	return nil
}

// CheckTemplates says whether templates could replace the running ones.
func (s *Service) CheckTemplates(templates map[string]*Template) error {
	if s.cfg.DefaultTemplate != "" {
		if _, ok := templates[s.cfg.DefaultTemplate]; !ok {
			return fmt.Errorf("wallet: default template %q is not among the templates", s.cfg.DefaultTemplate)
		}
	}
	return nil
}

// UseTemplates puts templates that passed CheckTemplates in force.
func (s *Service) UseTemplates(templates map[string]*Template) {
	s.templates.Store(&templates)
	s.cache.clear()
}

// Templates returns the loaded templates by id.
func (s *Service) Templates() map[string]*Template { return *s.templates.Load() }

// PassTypeID is the pass type identifier of the signing certificate.
func (s *Service) PassTypeID() string { return s.chain.PassTypeID }

// WebServiceURL is the webServiceURL written into passes.
func (s *Service) WebServiceURL() string { return strings.TrimRight(s.cfg.PublicURL, "/") + "/wallet" }

func (s *Service) template(id string) (*Template, error) {
	t, ok := s.Templates()[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTemplate, id)
	}
	return t, nil
}

// Issue gives the person a pass of the template ("" for the default),
// or returns the one they already hold (created false).
func (s *Service) Issue(ctx context.Context, profileID, template string) (*Pass, bool, error) {
	if template == "" {
		template = s.cfg.DefaultTemplate
	}
	t, err := s.template(template)
	if err != nil {
		return nil, false, err
	}
	var out *Pass
	var created bool
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		out, created = nil, false
		prof, err := profiles.ReadProfile(tx, profileID)
		if err != nil {
			if errors.Is(err, profiles.ErrNotFound) {
				return fmt.Errorf("%w: profile %s", ErrNotFound, profileID)
			}
			return err
		}
		for _, serial := range serialsOf(tx, prof.ID) {
			if p, err := getPass(tx, serial); err == nil && p.Template == template && !p.Voided {
				out = p
				return nil
			}
		}
		p := &Pass{Template: template, ProfileID: prof.ID, Created: s.now().UTC()}
		if p.Serial, err = s.randomString(16); err != nil {
			return err
		}
		if s.cfg.SerialsNameProfile {
			p.Serial = prof.ID + "-" + p.Serial
		}
		if p.Token, err = s.randomString(20); err != nil {
			return err
		}
		in, err := s.input(tx, prof)
		if err != nil {
			return err
		}
		p.apply(t.render(in, p))
		if err := s.save(tx, p, true); err != nil {
			return err
		}
		out, created = p, true
		return tx.Bucket(bucketByProfile).Put(profileKey(prof.ID, p.Serial), nil)
	})
	if err != nil {
		return nil, false, fmt.Errorf("issue pass: %w", err)
	}
	// Noted on every call, so that a retry notes what a failed note did
	// not (notes.go).
	if err := s.note(ctx, out.ProfileID, NotePass, out); err != nil {
		return nil, false, fmt.Errorf("issue pass: %w", err)
	}
	return out, created, nil
}

// randomString is n random bytes, base32 without padding, lower case.
func (s *Service) randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

func (s *Service) input(tx *bbolt.Tx, p *profiles.Profile) (*rules.Input, error) {
	now := s.now()
	pv, err := s.deps.Viewer.ViewIn(tx, p, now)
	if err != nil {
		return nil, fmt.Errorf("view profile: %w", err)
	}
	return &rules.Input{Profile: pv, Now: now}, nil
}

// save stores p; with touch, it takes the next tag first.
func (s *Service) save(tx *bbolt.Tx, p *Pass, touch bool) error {
	b := tx.Bucket(bucketPasses)
	if touch {
		tag, err := b.NextSequence()
		if err != nil {
			return err
		}
		p.touch(tag, s.now())
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := countPass(tx, b.Get([]byte(p.Serial)), p); err != nil {
		return err
	}
	return b.Put([]byte(p.Serial), v)
}

func getPass(tx *bbolt.Tx, serial string) (*Pass, error) {
	v := tx.Bucket(bucketPasses).Get([]byte(serial))
	if v == nil {
		return nil, ErrNotFound
	}
	var p Pass
	if err := json.Unmarshal(v, &p); err != nil {
		return nil, fmt.Errorf("decode pass %s: %w", serial, err)
	}
	return &p, nil
}

func profileKey(profileID, serial string) []byte { return []byte(profileID + "\x00" + serial) }

// serialsOf lists the serials of a person's passes.
func serialsOf(tx *bbolt.Tx, profileID string) []string {
	var out []string
	prefix := []byte(profileID + "\x00")
	c := tx.Bucket(bucketByProfile).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// Passes lists a person's passes.
func (s *Service) Passes(profileID string) ([]*Pass, error) {
	var out []*Pass
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, serial := range serialsOf(tx, profileID) {
			p, err := getPass(tx, serial)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Pass returns one pass by serial.
func (s *Service) Pass(serial string) (*Pass, error) {
	var p *Pass
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = getPass(tx, serial)
		return err
	})
	return p, err
}

// Links are where a person gets a pass.
type Links struct {
	// AppleURL downloads the signed .pkpass; signed and time-limited.
	AppleURL string `json:"apple_url"`
	// GoogleSaveURL is the "Save to Google Wallet" link ("" when Google
	// Wallet is not configured).
	GoogleSaveURL string `json:"google_save_url"`
}

// Links returns the download and save links of p.
func (s *Service) Links(p *Pass) (Links, error) {
	exp := s.now().Add(s.cfg.LinkTTL).Unix()
	l := Links{AppleURL: fmt.Sprintf("%s/download/%s.pkpass?exp=%d&sig=%s", s.WebServiceURL(), url.PathEscape(p.Serial), exp, s.linkSig(p.Serial, exp))}
	g := s.cfg.Google
	if g.Account != nil && g.IssuerID != "" {
		t, err := s.template(p.Template)
		if err != nil {
			return l, err
		}
		link, err := google.SaveURL(g.Account.Key, g.Account.Email, g.Origins, []google.LoyaltyObject{t.GoogleObject(g.IssuerID, p)}, s.now())
		if err != nil {
			return l, err
		}
		l.GoogleSaveURL = link
	}
	return l, nil
}

func (s *Service) linkSig(serial string, exp int64) string {
	return linkSig(s.cfg.LinkSecret, serial, exp)
}

func linkSig(secret []byte, serial string, exp int64) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pkpass\x00" + serial + "\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(exp))
	m.Write(b[:])
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Download returns the signed pass of a download link.
func (s *Service) Download(serial, exp, sig string) (*Pass, []byte, error) {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.now().Unix() > e {
		return nil, nil, ErrBadLink
	}
	ok := false
	for _, secret := range append([][]byte{s.cfg.LinkSecret}, s.cfg.PreviousLinkSecrets...) {
		ok = hmac.Equal([]byte(sig), []byte(linkSig(secret, serial, e))) || ok
	}
	if !ok {
		return nil, nil, ErrBadLink
	}
	p, err := s.Pass(serial)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.PKPass(p)
	return p, b, err
}

// Authorize returns the pass a device asks for with its token.
func (s *Service) Authorize(passTypeID, serial, token string) (*Pass, error) {
	if passTypeID != s.chain.PassTypeID {
		return nil, ErrUnauthorized
	}
	p, err := s.Pass(serial)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnauthorized
	} else if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(p.Token)) != 1 {
		return nil, ErrUnauthorized
	}
	return p, nil
}

// PKPass returns the signed .pkpass of p as it is now: from the cache when
// the pass has not changed since it was signed.
func (s *Service) PKPass(p *Pass) ([]byte, error) {
	if b, ok := s.cache.get(p.Serial, p.Tag); ok {
		return b, nil
	}
	t, err := s.template(p.Template)
	if err != nil {
		return nil, err
	}
	b, err := t.Assets(p.Tier).Build(t.ApplePass(p, s.WebServiceURL()), s.chain, s.now())
	if err != nil {
		return nil, err
	}
	s.cache.put(p.Serial, p.Tag, b)
	return b, nil
}

// registration is one device following one pass.
type registration struct {
	PushToken string    `json:"push_token"`
	At        time.Time `json:"at"`
	// Seq tells one registration from a later one of the same device, so
	// their events are not taken for repeats.
	Seq uint64 `json:"seq"`
}

func deviceKey(device, passTypeID, serial string) []byte {
	return []byte(device + "\x00" + passTypeID + "\x00" + serial)
}

func passRegKey(serial, device string) []byte { return []byte(serial + "\x00" + device) }

// validID accepts the identifiers devices send: printable ASCII without
// separators, at most 256 bytes.
func validID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}

// maxPushToken bounds an APNs device token: 32 bytes today, and Apple says
// their size may grow, so up to 100 bytes are taken.
const maxPushToken = 200

// checkPushToken accepts an APNs device token as devices send it: hex
// digits, a whole number of bytes. Anything else would be refused by
// APNs as BadDeviceToken at the first update.
func checkPushToken(t string) error {
	if t == "" || len(t) > maxPushToken || len(t)%2 != 0 {
		return fmt.Errorf("%w: pushToken: want an APNs device token in hex (64 digits), got %d characters", ErrInvalid, len(t))
	}
	if _, err := hex.DecodeString(t); err != nil {
		return fmt.Errorf("%w: pushToken: want an APNs device token in hex digits only", ErrInvalid)
	}
	return nil
}

// Register records that a device follows a pass; created is false when it
// already did (Apple's 200) and true for a new registration (201). The
// person gets a Pass Installed event.
func (s *Service) Register(ctx context.Context, device, passTypeID, serial, token, pushToken string) (bool, error) {
	if !validID(device) {
		return false, ErrInvalid
	}
	p, err := s.Authorize(passTypeID, serial, token)
	if err != nil {
		return false, err
	}
	// Checked once the pass is authorised: a stranger learns nothing.
	if err := checkPushToken(pushToken); err != nil {
		return false, err
	}
	var created bool
	var reg registration
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		created = false
		if v := tx.Bucket(bucketDevices).Get(deviceKey(device, passTypeID, serial)); v != nil {
			if err := json.Unmarshal(v, &reg); err != nil {
				return err
			}
			if reg.PushToken == pushToken {
				return nil
			}
			reg.PushToken = pushToken
		} else {
			var err error
			if reg, err = s.newRegistration(tx, pushToken); err != nil {
				return err
			}
		}
		var err error
		created, err = putRegistration(tx, device, passTypeID, serial, reg)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("register device: %w", err)
	}
	// Noted on every call, so that a retry notes what a failed note did
	// not (notes.go).
	if err := s.note(ctx, p.ProfileID, NoteDevice, deviceNote{Device: device, PassTypeID: passTypeID, Serial: serial, Reg: reg}); err != nil {
		return false, fmt.Errorf("register device: %w", err)
	}
	// Recorded on every call: the message id makes a repeat a no-op, and
	// a crash between the two writes is healed by the device's retry.
	s.record(ctx, p, EventPassInstalled, fmt.Sprintf("pass-installed:%s:%s:%d", serial, device, reg.Seq), device)
	return created, nil
}

// Unregister stops pushes of a pass to a device. The person gets a Pass
// Removed event.
func (s *Service) Unregister(ctx context.Context, device, passTypeID, serial, token string) error {
	p, err := s.Authorize(passTypeID, serial, token)
	if err != nil {
		return err
	}
	var reg *registration
	err = s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		reg, err = deleteRegistration(tx, device, passTypeID, serial)
		return err
	})
	if err != nil {
		return fmt.Errorf("unregister device: %w", err)
	}
	if err := s.note(ctx, p.ProfileID, NoteDevice, deviceNote{Device: device, PassTypeID: passTypeID, Serial: serial, Removed: true}); err != nil {
		return fmt.Errorf("unregister device: %w", err)
	}
	if reg != nil {
		s.record(ctx, p, EventPassRemoved, fmt.Sprintf("pass-removed:%s:%s:%d", serial, device, reg.Seq), device)
	}
	return nil
}

func (s *Service) record(ctx context.Context, p *Pass, event, messageID, device string) {
	if s.deps.Recorder == nil || p.ProfileID == "" {
		return
	}
	ev := &profiles.Event{
		Type: profiles.TypeTrack, Event: event, MessageID: messageID, Source: profiles.SourceCartera,
		Properties: map[string]any{"serial": p.Serial, "template": p.Template, "platform": "apple", "device": deviceHash(device)},
	}
	if _, err := s.deps.Recorder.IngestFor(ctx, p.ProfileID, ev); err != nil && !errors.Is(err, profiles.ErrNotFound) {
		s.log.Error("record wallet event", "event", event, "serial", p.Serial, "err", err)
	}
}

// Updated lists the serials of the device's passes of the type changed
// after the tag since ("" for all), and the tag to ask with next time.
// No serials means nothing changed (Apple's 204).
func (s *Service) Updated(device, passTypeID, since string) (serials []string, lastUpdated string, err error) {
	var after uint64
	if since != "" {
		after, _ = strconv.ParseUint(since, 10, 64)
	}
	var last uint64
	err = s.db.View(func(tx *bbolt.Tx) error {
		prefix := []byte(device + "\x00" + passTypeID + "\x00")
		c := tx.Bucket(bucketDevices).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			serial := string(k[len(prefix):])
			p, err := getPass(tx, serial)
			if errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			last = max(last, p.Tag)
			if p.Tag > after {
				serials = append(serials, serial)
			}
		}
		return nil
	})
	slices.Sort(serials)
	return serials, strconv.FormatUint(last, 10), err
}

// Update applies a journey's update_pass to every pass of the person:
// fields become overrides, message the latest message. The change commits
// with its push messages; key makes a repeated action a no-op.
func (s *Service) Update(ctx context.Context, profileID string, fields map[string]any, message, key string) error {
	var pushed bool
	err := s.db.Update(func(tx *bbolt.Tx) error {
		pushed = false
		prof, err := profiles.ReadProfile(tx, profileID)
		if errors.Is(err, profiles.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		for _, serial := range serialsOf(tx, prof.ID) {
			p, err := getPass(tx, serial)
			if err != nil {
				return err
			}
			if p.Voided {
				continue
			}
			t, err := s.template(p.Template)
			if err != nil {
				s.log.Warn("pass update skipped: template gone", "serial", serial, "template", p.Template)
				continue
			}
			before := p.Clone()
			if p.Overrides == nil {
				p.Overrides = map[string]any{}
			}
			for k, v := range fields {
				p.Overrides[k] = v
			}
			if message != "" {
				p.Message = message
				if t.hasField(MessageField) {
					p.Overrides[MessageField] = message
				}
			}
			in, err := s.input(tx, prof)
			if err != nil {
				return err
			}
			shown := p.apply(t.render(in, p))
			if !shown && p.Message == before.Message {
				// Nothing to show or say (a redelivered action): keep
				// the overrides, without a new version or a push.
				if !reflect.DeepEqual(normal(p.Overrides), normal(before.Overrides)) {
					if err := s.save(tx, p, false); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.save(tx, p, true); err != nil {
				return err
			}
			if err := s.enqueuePush(tx, p, message, key); err != nil {
				return err
			}
			pushed = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update passes: %w", err)
	}
	if pushed && s.deps.Queue != nil {
		s.deps.Queue.Wake()
	}
	return nil
}

func (t *Template) hasField(key string) bool {
	return slices.ContainsFunc(t.Fields, func(f *FieldSpec) bool { return f.Key == key })
}

// pushPayload is the outbox payload of a pass update.
type pushPayload struct {
	Serial  string `json:"serial"`
	Tag     uint64 `json:"tag"`
	Message string `json:"message,omitempty"`
}

// enqueuePush puts the update of p in the outbox, in tx.
func (s *Service) enqueuePush(tx *bbolt.Tx, p *Pass, message, key string) error {
	if s.deps.Queue == nil {
		return nil
	}
	payload, err := json.Marshal(pushPayload{Serial: p.Serial, Tag: p.Tag, Message: message})
	if err != nil {
		return err
	}
	if key == "" {
		key = "pass:" + p.Serial + ":" + strconv.FormatUint(p.Tag, 10)
	} else {
		key += "|" + p.Serial
	}
	_, err = s.deps.Queue.Enqueue(tx, &channels.Message{Key: key, Destination: Destination, ProfileID: p.ProfileID, Payload: payload})
	return err
}

// deviceHash is what events and logs carry of a device library id: a
// persistent id of a person's phone, so never the id itself.
func deviceHash(device string) string {
	dev := sha256.Sum256([]byte(device))
	return hex.EncodeToString(dev[:8])
}
