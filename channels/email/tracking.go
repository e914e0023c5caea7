package email

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"

	"cartera/channels"
)

// ErrInvalidToken is wrapped by every failure to parse a tracking token:
// malformed, signed with another secret, tampered with, or of the wrong
// kind for the route. The HTTP layer answers 404 to it.
var ErrInvalidToken = errors.New("invalid tracking token")

// ErrExpiredToken is wrapped when a valid open or click token is older
// than the tracker's LinkTTL: it records nothing and redirects nowhere.
var ErrExpiredToken = errors.New("expired tracking link")

// ErrHostNotAllowed is wrapped when a click token's URL is on a host the
// tracker no longer allows (LinkHosts changed since the mail was sent).
var ErrHostNotAllowed = errors.New("link host not allowed")

// DefaultLinkTTL is how long open and click links work after the mail
// is rendered; unsubscribe links never expire.
const DefaultLinkTTL = 180 * 24 * time.Hour

// RemovedLink replaces, in mail, a link to a host the tracker does not
// allow (a URL an event carried, say).
const RemovedLink = "[link removed]"

// Token kinds, and the path of each under the tracker's base URL.
const (
	KindOpen        = "o" // /t/o/<token>: the 1x1 pixel
	KindClick       = "c" // /t/c/<token>: a redirect to the signed URL
	KindUnsubscribe = "u" // /t/u/<token>: GET a page, POST one-click (RFC 8058)
)

// Paths of the tracking routes, relative to Tracker.BaseURL; the token
// follows.
const (
	OpenPath        = "/t/o/"
	ClickPath       = "/t/c/"
	UnsubscribePath = "/t/u/"
)

// maxTokenLen bounds what Parse reads: a token carries a URL, and URLs in
// mail stay far below this.
const maxTokenLen = 8 << 10

// macContext separates these MACs from any other use of the same secret.
const macContext = "cartera/email/track/v1\x00"

// sealContext derives the key that encrypts tokens (v2) from the secret.
const sealContext = "cartera/email/track/v2/seal\x00"

// MessageInfo says which mail a tracking link belongs to.
type MessageInfo struct {
	ProfileID string `json:"p"`
	Journey   string `json:"j,omitempty"`
	Step      string `json:"s,omitempty"`
	Template  string `json:"tp,omitempty"`
	// Key is the outbox message's idempotency key.
	Key string `json:"k"`
}

// TokenInfo is what a valid token says.
type TokenInfo struct {
	MessageInfo
	// Kind is KindOpen, KindClick or KindUnsubscribe.
	Kind string
	// URL is where a click goes: the one URL signed into the token.
	URL string
	// IssuedAt is when the mail was rendered (second precision).
	IssuedAt time.Time
}

// payload is the signed JSON of a token.
type payload struct {
	MessageInfo
	Kind string `json:"t"`
	URL  string `json:"u,omitempty"`
	At   int64  `json:"at"`
}

// Tracker signs and checks the links of tracked mail: the open pixel,
// link clicks and unsubscribe. A token is the payload sealed with
// AES-256-GCM under a key derived from Secret, base64url-encoded: opaque
// (it shows no profile id or message key) and tamper-proof, so the HTTP
// layer needs no storage to serve it. A click redirects only to the URL
// sealed into its token, and only to an allowed host (no open redirect,
// no phishing through a URL an event carried). Tokens of the earlier
// signed form (payload.signature) are still read.
type Tracker struct {
	// Secret keys the tokens; at least 16 bytes. To rotate it without
	// breaking the links of mail already sent, give the new secret a
	// KeyID and list the old one in Previous.
	Secret []byte
	// KeyID names Secret in the tokens it makes ("" : tokens carry no key
	// id, as before key ids). A token with a key id is opened with the
	// key of that id only.
	KeyID string
	// Previous are retired keys that still open the tokens they made; the
	// one without an ID opens tokens made before key ids (without one,
	// Secret does).
	Previous []TrackingKey
	// BaseURL is the public base of the tracking routes
	// ("https://cartera.example.com"); an https base makes the unsubscribe
	// header one-click (RFC 8058).
	BaseURL string
	// LinkHosts are the hosts mail may link to and clicks may redirect
	// to: "shop.example" (that host) or "*.shop.example" (its subdomains
	// too). BaseURL's host is always allowed. A link to any other host is
	// replaced by RemovedLink in both parts of the mail.
	LinkHosts []string
	// LinkTTL is how long open and click links work; 0 means
	// DefaultLinkTTL. Unsubscribe links never expire.
	LinkTTL time.Duration
	// Now stamps tokens; nil means time.Now.
	Now func() time.Time

	// sealers are the AEADs of the keys by id, made once: every link of
	// every mail is sealed and every click opened with one.
	sealOnce sync.Once
	sealers  map[string]cipher.AEAD
}

// TrackingKey is a retired tracking key.
type TrackingKey struct {
	ID     string
	Secret []byte
}

// keyIDSep separates a token's key id from its sealed part: neither the
// base64url alphabet nor the signed form of earlier versions uses it.
const keyIDSep = "~"

// validKeyID reports whether id can name a key in a token.
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > 16 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate reports a tracker that cannot sign links.
func (t *Tracker) Validate() error {
	if len(t.Secret) < 16 {
		return errors.New("tracker: secret: want at least 16 bytes")
	}
	if t.KeyID != "" && !validKeyID(t.KeyID) {
		return fmt.Errorf("tracker: key id: want 1 to 16 letters, digits, _ or -, got %q", t.KeyID)
	}
	seen := map[string]bool{t.KeyID: true}
	for i, k := range t.Previous {
		switch {
		case k.ID != "" && !validKeyID(k.ID):
			return fmt.Errorf("tracker: previous[%d]: key id: want 1 to 16 letters, digits, _ or -, got %q", i, k.ID)
		case seen[k.ID]:
			return fmt.Errorf("tracker: previous[%d]: key id %q given twice", i, k.ID)
		case len(k.Secret) < 16:
			return fmt.Errorf("tracker: previous[%d] (%q): secret: want at least 16 bytes", i, k.ID)
		}
		seen[k.ID] = true
	}
	u, err := url.Parse(t.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("tracker: base URL: want an absolute http(s) URL, got %q", t.BaseURL)
	}
	for i, h := range t.LinkHosts {
		if bare := strings.TrimPrefix(h, "*."); bare == "" || strings.ContainsAny(bare, "/:*@ ") || bare != strings.ToLower(bare) {
			return fmt.Errorf("tracker: link_hosts[%d]: want a lower-case host name such as shop.example or *.shop.example, got %q", i, h)
		}
	}
	if t.LinkTTL < 0 {
		return fmt.Errorf("tracker: link_ttl: want a positive duration, got %s", t.LinkTTL)
	}
	return nil
}

// Allowed reports whether mail may link to u: an http(s) URL on BaseURL's
// host or one of LinkHosts.
func (t *Tracker) Allowed(u string) bool {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil {
		return false
	}
	host := strings.ToLower(p.Hostname())
	if b, err := url.Parse(t.BaseURL); err == nil && strings.EqualFold(b.Hostname(), host) {
		return true
	}
	return slices.ContainsFunc(t.LinkHosts, func(h string) bool {
		if sub, ok := strings.CutPrefix(h, "*."); ok {
			return host == sub || strings.HasSuffix(host, "."+sub)
		}
		return host == h
	})
}

func (t *Tracker) ttl() time.Duration {
	if t.LinkTTL > 0 {
		return t.LinkTTL
	}
	return DefaultLinkTTL
}

// OpenURL is the URL of the open pixel for a message.
func (t *Tracker) OpenURL(m MessageInfo) string { return t.url(OpenPath, t.sign(m, KindOpen, "")) }

// ClickURL is a tracked link that redirects to target.
func (t *Tracker) ClickURL(m MessageInfo, target string) string {
	return t.url(ClickPath, t.sign(m, KindClick, target))
}

// UnsubscribeURL is the person's unsubscribe link for a message.
func (t *Tracker) UnsubscribeURL(m MessageInfo) string {
	return t.url(UnsubscribePath, t.sign(m, KindUnsubscribe, ""))
}

func (t *Tracker) url(path, token string) string {
	return strings.TrimRight(t.BaseURL, "/") + path + token
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tracker) sign(m MessageInfo, kind, target string) string {
	b, err := json.Marshal(payload{MessageInfo: m, Kind: kind, URL: target, At: t.now().Unix()})
	if err != nil {
		panic(err) // only strings and an int: cannot fail
	}
	aead := t.aead(t.KeyID)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(b)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	token := base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, b, []byte(macContext)))
	if t.KeyID != "" {
		token = t.KeyID + keyIDSep + token
	}
	return token
}

// aead is AES-256-GCM under a key derived from the secret of key id
// (Secret for KeyID, else Previous); nil for an id no key has. The keys
// must not change once the tracker is in use.
func (t *Tracker) aead(id string) cipher.AEAD {
	t.sealOnce.Do(func() {
		t.sealers = map[string]cipher.AEAD{}
		for _, k := range t.Previous {
			t.sealers[k.ID] = newAEAD(k.Secret)
		}
		t.sealers[t.KeyID] = newAEAD(t.Secret)
	})
	return t.sealers[id]
}

// legacySecret is the secret of tokens without a key id: the Previous
// key without an id, else Secret.
func (t *Tracker) legacySecret() []byte {
	for _, k := range t.Previous {
		if k.ID == "" {
			return k.Secret
		}
	}
	return t.Secret
}

func newAEAD(secret []byte) cipher.AEAD {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(sealContext))
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key: cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func (t *Tracker) mac(encodedPayload string) []byte {
	h := hmac.New(sha256.New, t.legacySecret())
	h.Write([]byte(macContext))
	h.Write([]byte(encodedPayload))
	return h.Sum(nil)
}

// Parse checks a token (in constant time) and returns what it says. Any
// failure wraps ErrInvalidToken. Parse does not look at the token's age or
// its URL's host: Open, Click and Unsubscribe do.
func (t *Tracker) Parse(token string) (*TokenInfo, error) {
	bad := func(why string) error { return fmt.Errorf("parse token: %w: %s", ErrInvalidToken, why) }
	if len(t.Secret) == 0 {
		return nil, errors.New("parse token: tracker has no secret")
	}
	if len(token) > maxTokenLen {
		return nil, bad("too long")
	}
	var b []byte
	if p, sig, ok := strings.Cut(token, "."); ok {
		// The signed form of earlier versions, still in mail sent then.
		if p == "" || sig == "" || strings.Contains(sig, ".") {
			return nil, bad("want payload.signature")
		}
		// Strict: a signature has one encoding only, so no other string
		// than the one issued passes.
		mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
		if err != nil || len(mac) != sha256.Size {
			return nil, bad("malformed signature")
		}
		if !hmac.Equal(mac, t.mac(p)) {
			return nil, bad("signature does not match")
		}
		if b, err = base64.RawURLEncoding.Strict().DecodeString(p); err != nil {
			return nil, bad("malformed payload")
		}
	} else {
		id, rest, withID := strings.Cut(token, keyIDSep)
		var aead cipher.AEAD
		switch {
		case !withID:
			// Made before key ids: the key without an id, else Secret.
			rest = token
			if aead = t.aead(""); aead == nil {
				aead = t.aead(t.KeyID)
			}
		case !validKeyID(id):
			return nil, bad("malformed key id")
		default:
			if aead = t.aead(id); aead == nil {
				return nil, bad("unknown key id")
			}
		}
		sealed, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
			return nil, bad("malformed token")
		}
		n := aead.NonceSize()
		if b, err = aead.Open(nil, sealed[:n], sealed[n:], []byte(macContext)); err != nil {
			return nil, bad("does not open")
		}
	}
	var pl payload
	if err := json.Unmarshal(b, &pl); err != nil {
		return nil, bad("malformed payload")
	}
	switch pl.Kind {
	case KindOpen, KindUnsubscribe:
	case KindClick:
		if !isHTTPURL(pl.URL) {
			return nil, bad("click without an http(s) URL")
		}
	default:
		return nil, bad("unknown kind")
	}
	if pl.ProfileID == "" || pl.Key == "" {
		return nil, bad("no profile or message")
	}
	return &TokenInfo{MessageInfo: pl.MessageInfo, Kind: pl.Kind, URL: pl.URL, IssuedAt: time.Unix(pl.At, 0).UTC()}, nil
}

func (t *Tracker) parseKind(token, kind string) (*TokenInfo, error) {
	ti, err := t.Parse(token)
	if err != nil {
		return nil, err
	}
	if ti.Kind != kind {
		return nil, fmt.Errorf("parse token: %w: not a%s token", ErrInvalidToken, map[string]string{KindOpen: "n open", KindClick: " click", KindUnsubscribe: "n unsubscribe"}[kind])
	}
	return ti, nil
}

// Open checks the token of GET /t/o/<token>; the answer is PixelGIF
// (image/gif, no caching) whatever the outcome, and on success the
// HTTP layer records ti.Outcome() ("Email Opened"). A token older than
// LinkTTL wraps ErrExpiredToken.
func (t *Tracker) Open(token string) (*TokenInfo, error) {
	ti, err := t.parseKind(token, KindOpen)
	if err != nil {
		return nil, err
	}
	return ti, t.fresh(ti)
}

// Click checks the token of GET /t/c/<token>; on success the HTTP layer
// records ti.Outcome() ("Email Link Clicked") and redirects (302) to
// ti.URL, the URL sealed into the token. A token older than LinkTTL wraps
// ErrExpiredToken, and one whose URL's host is no longer allowed wraps
// ErrHostNotAllowed: neither records or redirects.
func (t *Tracker) Click(token string) (*TokenInfo, error) {
	ti, err := t.parseKind(token, KindClick)
	if err != nil {
		return nil, err
	}
	if err := t.fresh(ti); err != nil {
		return nil, err
	}
	if !t.Allowed(ti.URL) {
		return nil, fmt.Errorf("click: %w", ErrHostNotAllowed)
	}
	return ti, nil
}

// fresh refuses a token older than the link lifetime.
func (t *Tracker) fresh(ti *TokenInfo) error {
	if t.now().Sub(ti.IssuedAt) > t.ttl() {
		return fmt.Errorf("token issued %s: %w", ti.IssuedAt.Format(time.DateOnly), ErrExpiredToken)
	}
	return nil
}

// Unsubscribe checks the token of /t/u/<token>: GET shows a page with a
// button that POSTs back; POST (the button, or a mail client's one-click
// "List-Unsubscribe=One-Click" body) records ti.Outcome() ("Unsubscribed",
// email consent withdrawn).
func (t *Tracker) Unsubscribe(token string) (*TokenInfo, error) {
	return t.parseKind(token, KindUnsubscribe)
}

// Outcome is the event to record on the person for a valid token:
// "Email Opened", "Email Link Clicked" (with url) or "Unsubscribed" (with
// email consent withdrawn). Properties carry journey, step, template and
// the message key, so journeys can wait for the open of their own mail.
func (ti *TokenInfo) Outcome() channels.Outcome {
	props := map[string]any{"journey": ti.Journey, "step": ti.Step, "template": ti.Template, "message_key": ti.Key, "channel": "email"}
	switch ti.Kind {
	case KindClick:
		props["url"] = ti.URL
		return channels.Outcome{Event: "Email Link Clicked", Properties: props}
	case KindUnsubscribe:
		return channels.Outcome{Event: "Unsubscribed", Properties: props, Consent: map[string]bool{"email": false}}
	}
	return channels.Outcome{Event: "Email Opened", Properties: props}
}

// PixelGIF returns a transparent 1x1 GIF, the body of the open pixel.
func PixelGIF() []byte {
	return []byte{
		'G', 'I', 'F', '8', '9', 'a', 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00,
		0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
		0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
		0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
	}
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Track rewrites a rendered HTML body for tracking: every http(s) link
// (<a href>, <area href>) becomes a signed click URL, except the
// unsubscribe link and links already pointing at the tracker; mailto: and
// other schemes stay as they are. The open pixel goes before </body> (at
// the end when there is none). The rest of the document is copied byte
// for byte.
func (t *Tracker) Track(doc string, m MessageInfo) string { return t.rewriteHTML(doc, &m) }

// Filter takes links to hosts that are not allowed out of a rendered HTML
// body as Track does, and leaves the rest as they are: no click URLs, no
// open pixel (test sends, which must add nothing to anyone's statistics).
func (t *Tracker) Filter(doc string) string { return t.rewriteHTML(doc, nil) }

// rewriteHTML tracks links for m, or with m nil only filters them.
func (t *Tracker) rewriteHTML(doc string, m *MessageInfo) string {
	unsub := ""
	if m != nil {
		unsub = t.UnsubscribeURL(*m)
	}
	own := strings.TrimRight(t.BaseURL, "/") + "/t/"
	var out strings.Builder
	out.Grow(len(doc) + 512)
	pixel := ""
	if m != nil {
		pixel = `<img src="` + html.EscapeString(t.OpenURL(*m)) + `" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">`
	}
	placed := false
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if hasAttr && (string(name) == "a" || string(name) == "area") {
				tok := html.Token{Type: tt, Data: string(name)}
				for more := true; more; {
					var k, v []byte
					k, v, more = z.TagAttr()
					tok.Attr = append(tok.Attr, html.Attribute{Key: string(k), Val: string(v)})
				}
				changed := false
				for i, a := range tok.Attr {
					if a.Namespace != "" || a.Key != "href" {
						continue
					}
					href := strings.TrimSpace(a.Val)
					if !isHTTPURL(href) || strings.HasPrefix(href, own) || href == unsub {
						continue
					}
					if !t.Allowed(href) {
						// Not a link of the shop's: it goes, the text stays.
						tok.Attr = slices.Delete(tok.Attr, i, i+1)
						changed = true
						break
					}
					if m == nil {
						continue
					}
					tok.Attr[i].Val = t.ClickURL(*m, href)
					changed = true
				}
				if changed {
					out.WriteString(tok.String())
					continue
				}
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "body" && !placed {
				out.WriteString(pixel)
				placed = true
			}
		}
		out.Write(z.Raw())
	}
	if !placed {
		out.WriteString(pixel)
	}
	return out.String()
}

// textURL finds the http(s) URLs of a plain-text part.
var textURL = regexp.MustCompile(`https?://[^\s<>"']+`)

// TrackText rewrites a rendered plain-text body as Track does the HTML:
// each http(s) URL on an allowed host becomes a click URL (so a click from
// a text-only mail client is seen too), the unsubscribe URL and the
// tracker's own links stay, and a URL on any other host is replaced by
// RemovedLink. Punctuation that ends a sentence stays outside the URL.
func (t *Tracker) TrackText(text string, m MessageInfo) string { return t.rewriteText(text, &m) }

// FilterText is Filter for the plain-text part.
func (t *Tracker) FilterText(text string) string { return t.rewriteText(text, nil) }

func (t *Tracker) rewriteText(text string, m *MessageInfo) string {
	unsub := ""
	if m != nil {
		unsub = t.UnsubscribeURL(*m)
	}
	own := strings.TrimRight(t.BaseURL, "/") + "/t/"
	return textURL.ReplaceAllStringFunc(text, func(u string) string {
		trimmed := strings.TrimRight(u, ".,;:!?)]}")
		tail := u[len(trimmed):]
		switch {
		case trimmed == unsub || strings.HasPrefix(trimmed, own):
			return u
		case !isHTTPURL(trimmed) || !t.Allowed(trimmed):
			return RemovedLink + tail
		case m == nil:
			return u
		}
		return t.ClickURL(*m, trimmed) + tail
	})
}
