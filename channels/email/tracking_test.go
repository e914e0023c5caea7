package email_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"image/gif"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"cartera/channels/email"
)

func newTracker() *email.Tracker {
	return &email.Tracker{
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
		BaseURL:   "https://cartera.example/",
		LinkHosts: []string{"shop.example"},
		Now:       func() time.Time { return time.Date(2026, 11, 20, 10, 35, 0, 0, time.UTC) },
	}
}

// legacyToken is a token of the signed form earlier versions put in mail:
// base64url(JSON) "." base64url(HMAC-SHA256).
func legacyToken(secret []byte, payload string) string {
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("cartera/email/track/v1\x00"))
	h.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

var info = email.MessageInfo{ProfileID: "p1", Journey: "cart_abandonment", Step: "reminder", Template: "cart_reminder", Key: "cart_abandonment/v1/7/reminder/1"}

// tokenOf returns the token of a tracking URL, checking its path.
func tokenOf(t testing.TB, raw, path string) string {
	t.Helper()
	tok, ok := strings.CutPrefix(raw, "https://cartera.example"+path)
	if !ok || tok == "" || strings.ContainsAny(tok, "/?#=+ ") {
		t.Fatalf("URL %q: want https://cartera.example%s<token>", raw, path)
	}
	return tok
}

func TestTokens(t *testing.T) {
	tr := newTracker()
	target := "https://shop.example/cart?id=c1&utm_source=email"

	ti, err := tr.Open(tokenOf(t, tr.OpenURL(info), email.OpenPath))
	if err != nil {
		t.Fatal(err)
	}
	if ti.Kind != email.KindOpen || ti.MessageInfo != info || !ti.IssuedAt.Equal(tr.Now()) {
		t.Errorf("open token gave %+v", ti)
	}
	if o := ti.Outcome(); o.Event != "Email Opened" || o.Properties["journey"] != "cart_abandonment" || o.Consent != nil {
		t.Errorf("open outcome %+v", o)
	}

	ti, err = tr.Click(tokenOf(t, tr.ClickURL(info, target), email.ClickPath))
	if err != nil {
		t.Fatal(err)
	}
	if ti.URL != target || ti.MessageInfo != info {
		t.Errorf("click token gave %+v", ti)
	}
	if o := ti.Outcome(); o.Event != "Email Link Clicked" || o.Properties["url"] != target {
		t.Errorf("click outcome %+v", o)
	}

	ti, err = tr.Unsubscribe(tokenOf(t, tr.UnsubscribeURL(info), email.UnsubscribePath))
	if err != nil {
		t.Fatal(err)
	}
	if o := ti.Outcome(); o.Event != "Unsubscribed" || o.Consent["email"] || len(o.Consent) != 1 {
		t.Errorf("unsubscribe outcome %+v", o)
	}
}

func TestTokensRejected(t *testing.T) {
	tr := newTracker()
	open := tokenOf(t, tr.OpenURL(info), email.OpenPath)
	click := tokenOf(t, tr.ClickURL(info, "https://shop.example/"), email.ClickPath)
	other := &email.Tracker{Secret: []byte("another secret, just as long...."), BaseURL: tr.BaseURL, LinkHosts: []string{"evil.example"}}
	forged := tokenOf(t, other.ClickURL(info, "https://evil.example/"), email.ClickPath)
	// Tokens of the signed form earlier versions sent are still read,
	// and checked as strictly.
	legacy := legacyToken(tr.Secret, `{"p":"p1","k":"k1","t":"c","u":"https://shop.example/","at":1795000000}`)
	payload, sig, _ := strings.Cut(legacy, ".")
	evilPayload, _, _ := strings.Cut(legacyToken(other.Secret, `{"p":"p1","k":"k1","t":"c","u":"https://evil.example/","at":1795000000}`), ".")

	for _, tc := range []struct {
		name, token, want string
		parse             func(string) (*email.TokenInfo, error)
	}{
		{"empty", "", "malformed token", tr.Parse},
		{"other secret", forged, "does not open", tr.Parse},
		{"truncated", click[:len(click)-10], "", tr.Parse},
		{"one character", "A", "malformed token", tr.Parse},
		{"not base64", strings.Repeat("*", 60), "malformed token", tr.Parse},
		{"flipped first char", flip(click, 3), "", tr.Parse},
		{"flipped last char", flip(click, len(click)-1), "", tr.Parse},
		{"too long", strings.Repeat("a", 9000), "too long", tr.Parse},
		{"legacy: no signature", payload + ".", "want payload.signature", tr.Parse},
		{"legacy: two dots", legacy + ".x", "want payload.signature", tr.Parse},
		{"legacy: swapped payload", evilPayload + "." + sig, "signature does not match", tr.Parse},
		{"legacy: short signature", payload + "." + sig[:20], "malformed signature", tr.Parse},
		{"legacy: signature not base64", payload + "." + strings.Repeat("*", 43), "malformed signature", tr.Parse},
		{"open used as click", open, "not a click token", tr.Click},
		{"click used as unsubscribe", click, "not an unsubscribe token", tr.Unsubscribe},
		{"click used as open", click, "not an open token", tr.Open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti, err := tc.parse(tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", ti)
			}
			if !errors.Is(err, email.ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalidToken with %q", err, tc.want)
			}
		})
	}
	if ti, err := tr.Parse(legacy); err != nil || ti.URL != "https://shop.example/" || ti.ProfileID != "p1" {
		t.Errorf("a legacy token from mail already sent: %+v %v", ti, err)
	}
	if _, err := (&email.Tracker{}).Parse(click); err == nil {
		t.Error("a tracker without a secret accepted a token")
	}
}

// Tokens say nothing to whoever reads them: no profile id, message key or
// URL in any encoding, and two tokens for the same link differ.
func TestTokensAreOpaque(t *testing.T) {
	tr := newTracker()
	target := "https://shop.example/cart?id=c1"
	a := tokenOf(t, tr.ClickURL(info, target), email.ClickPath)
	b := tokenOf(t, tr.ClickURL(info, target), email.ClickPath)
	if a == b {
		t.Error("two tokens of one link are equal: they are not sealed with a fresh nonce")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{info.ProfileID, info.Key, "shop.example", info.Journey, `"p":`} {
		for _, form := range []string{secret, base64.RawURLEncoding.EncodeToString([]byte(secret)), base64.StdEncoding.EncodeToString([]byte(secret))} {
			if len(form) > 3 && (strings.Contains(a, form) || bytes.Contains(raw, []byte(form))) {
				t.Errorf("the token shows %q (as %q)", secret, form)
			}
		}
	}
}

// Open and click links expire; unsubscribe links never do.
func TestLinksExpire(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 35, 0, 0, time.UTC)
	tr := newTracker()
	tr.LinkTTL = 30 * 24 * time.Hour
	tr.Now = func() time.Time { return now }
	open := tokenOf(t, tr.OpenURL(info), email.OpenPath)
	click := tokenOf(t, tr.ClickURL(info, "https://shop.example/"), email.ClickPath)
	unsub := tokenOf(t, tr.UnsubscribeURL(info), email.UnsubscribePath)

	now = now.Add(30 * 24 * time.Hour)
	if _, err := tr.Open(open); err != nil {
		t.Errorf("open on its last day: %v", err)
	}
	if _, err := tr.Click(click); err != nil {
		t.Errorf("click on its last day: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := tr.Open(open); !errors.Is(err, email.ErrExpiredToken) {
		t.Errorf("open after its lifetime: %v, want ErrExpiredToken", err)
	}
	if _, err := tr.Click(click); !errors.Is(err, email.ErrExpiredToken) {
		t.Errorf("click after its lifetime: %v, want ErrExpiredToken", err)
	}
	now = now.Add(10 * 365 * 24 * time.Hour)
	if _, err := tr.Unsubscribe(unsub); err != nil {
		t.Errorf("unsubscribe ten years on: %v", err)
	}
	// The default lifetime applies when none is set.
	tr.LinkTTL = 0
	tr.Now = func() time.Time {
		return time.Date(2026, 11, 20, 10, 35, 0, 0, time.UTC).Add(email.DefaultLinkTTL + time.Hour)
	}
	if _, err := tr.Click(click); !errors.Is(err, email.ErrExpiredToken) {
		t.Errorf("click past the default lifetime: %v", err)
	}
}

// Mail links to, and clicks redirect to, the shop's hosts only.
func TestLinkHosts(t *testing.T) {
	tr := newTracker()
	tr.LinkHosts = []string{"shop.example", "*.shoes.example"}
	for u, want := range map[string]bool{
		"https://shop.example/p/1":          true,
		"http://SHOP.example/p/1":           true,
		"https://www.shop.example/":         false,
		"https://shoes.example/":            true,
		"https://m.shoes.example/x":         true,
		"https://evil.example/login":        false,
		"https://shop.example.evil.example": false,
		"https://evilshoes.example/":        false,
		"https://user@shop.example/":        false,
		"https://cartera.example/wallet/x":  true, // the tracker's own host
		"javascript:alert(1)":               false,
		"ftp://shop.example/":               false,
	} {
		if got := tr.Allowed(u); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", u, got, want)
		}
	}
	// A token sealed when a host was allowed redirects nowhere once it is
	// not (the allow-list is checked at the click too).
	click := tokenOf(t, tr.ClickURL(info, "https://m.shoes.example/x"), email.ClickPath)
	tr.LinkHosts = []string{"shop.example"}
	if _, err := tr.Click(click); !errors.Is(err, email.ErrHostNotAllowed) {
		t.Errorf("click to a host no longer allowed: %v", err)
	}
	for _, tc := range []struct {
		tr   *email.Tracker
		want string
	}{
		{&email.Tracker{Secret: bytes.Repeat([]byte("s"), 16), BaseURL: "https://x.example", LinkHosts: []string{"https://shop.example"}}, "link_hosts[0]"},
		{&email.Tracker{Secret: bytes.Repeat([]byte("s"), 16), BaseURL: "https://x.example", LinkHosts: []string{"shop.example", "*."}}, "link_hosts[1]"},
		{&email.Tracker{Secret: bytes.Repeat([]byte("s"), 16), BaseURL: "https://x.example", LinkHosts: []string{"Shop.Example"}}, "lower-case"},
	} {
		if err := tc.tr.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want %q", tc.tr.LinkHosts, err, tc.want)
		}
	}
}

// A link to a host that is not the shop's leaves the mail, in the HTML
// and in the text part; the text part's allowed links are tracked too.
func TestLinksOutsideTheShopAreRemoved(t *testing.T) {
	tr := newTracker()
	doc := `<p><a href="https://evil.example/login" style="x">Your account is locked - verify now</a> <a href="https://shop.example/p/1">Shop</a></p>`
	out := tr.Track(doc, info)
	if strings.Contains(out, "evil.example") {
		t.Errorf("the HTML still links to evil.example:\n%s", out)
	}
	if !strings.Contains(out, `<a style="x">Your account is locked - verify now</a>`) {
		t.Errorf("the text of the removed link is gone too:\n%s", out)
	}
	if strings.Count(out, "https://cartera.example/t/c/") != 1 {
		t.Errorf("want one tracked shop link:\n%s", out)
	}

	unsub := tr.UnsubscribeURL(info)
	text := "Back to your cart: https://shop.example/cart?id=c1.\nVerify: https://evil.example/login, now!\n(see https://shop.example/help)\nUnsubscribe: " + unsub + "\nAlready: https://cartera.example/t/c/x\n"
	got := tr.TrackText(text, info)
	if strings.Contains(got, "evil.example") || !strings.Contains(got, "Verify: [link removed], now!") {
		t.Errorf("the text part keeps a link outside the shop:\n%s", got)
	}
	if !strings.Contains(got, "Unsubscribe: "+unsub+"\n") || !strings.Contains(got, "Already: https://cartera.example/t/c/x\n") {
		t.Errorf("the unsubscribe or tracker link changed:\n%s", got)
	}
	var urls []string
	for _, m := range regexp.MustCompile(`https://cartera\.example/t/c/([A-Za-z0-9_-]{20,})`).FindAllStringSubmatch(got, -1) {
		ti, err := tr.Click(m[1])
		if err != nil {
			t.Fatalf("text link %s: %v", m[0], err)
		}
		urls = append(urls, ti.URL)
	}
	if strings.Join(urls, " ") != "https://shop.example/cart?id=c1 https://shop.example/help" {
		t.Errorf("text links go to %v, want the cart and help pages (punctuation outside)", urls)
	}
	if !strings.Contains(got, "(see https://cartera.example/t/c/") || !strings.Contains(got, ")\nUnsubscribe") {
		t.Errorf("punctuation around a link moved:\n%s", got)
	}
}

// flip changes one character of s to another base64url character.
func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestTrackerValidate(t *testing.T) {
	for _, tc := range []struct {
		tr   *email.Tracker
		want string
	}{
		{&email.Tracker{Secret: []byte("short"), BaseURL: "https://x.example"}, "secret"},
		{&email.Tracker{Secret: bytes.Repeat([]byte("s"), 16), BaseURL: "/relative"}, "base URL"},
		{&email.Tracker{Secret: bytes.Repeat([]byte("s"), 16), BaseURL: "ftp://x.example"}, "base URL"},
	} {
		if err := tc.tr.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tc.tr, err, tc.want)
		}
	}
	if err := newTracker().Validate(); err != nil {
		t.Error(err)
	}
}

func TestTrack(t *testing.T) {
	tr := newTracker()
	unsub := tr.UnsubscribeURL(info)
	doc := `<!DOCTYPE html>
<html><head><title>T</title><style>a{color:red}</style></head>
<BODY class="x">
<p>Hi &amp; welcome <a href="https://shop.example/p?a=1&amp;b=2" style="color:#000">Shop</a></p>
<p><a class="btn" href=" http://shop.example/plain ">Plain</a>
<a href="mailto:help@shop.example">Mail us</a>
<a href="#top">Top</a>
<a name="anchor">no href</a>
<map><area href="https://shop.example/area" alt="x"></map>
<a href="` + html.EscapeString(unsub) + `">Unsubscribe</a>
<a href="https://cartera.example/t/c/already">Already</a></p>
<!-- <a href="https://shop.example/commented">kept</a> -->
</BODY>
</html>`
	out := tr.Track(doc, info)

	// The rest of the document is untouched.
	for _, keep := range []string{`<BODY class="x">`, "Hi &amp; welcome ", `<a href="mailto:help@shop.example">`, `<a href="#top">`, `<a name="anchor">`, `<!-- <a href="https://shop.example/commented">kept</a> -->`, `<style>a{color:red}</style>`, `https://cartera.example/t/c/already"`} {
		if !strings.Contains(out, keep) {
			t.Errorf("lost %q in\n%s", keep, out)
		}
	}
	// Each http(s) link is a click URL that gives back the original.
	clicks := map[string]bool{}
	z := html.NewTokenizer(strings.NewReader(out))
	var pixels []string
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		for _, a := range tok.Attr {
			switch {
			case a.Key == "href" && strings.HasPrefix(a.Val, "https://cartera.example/t/c/") && !strings.HasSuffix(a.Val, "already"):
				ti, err := tr.Click(tokenOf(t, a.Val, email.ClickPath))
				if err != nil {
					t.Fatalf("rewritten link %q: %v", a.Val, err)
				}
				clicks[ti.URL] = true
			case tok.Data == "img" && a.Key == "src":
				pixels = append(pixels, a.Val)
			case a.Key == "href" && a.Val == unsub:
				clicks["unsubscribe kept"] = true
			}
		}
	}
	for _, want := range []string{"https://shop.example/p?a=1&b=2", "http://shop.example/plain", "https://shop.example/area", "unsubscribe kept"} {
		if !clicks[want] {
			t.Errorf("no click link for %s; got %v\n%s", want, clicks, out)
		}
	}
	if len(clicks) != 4 {
		t.Errorf("got links %v", clicks)
	}
	if len(pixels) != 1 {
		t.Fatalf("want one pixel, got %v", pixels)
	}
	if ti, err := tr.Open(tokenOf(t, pixels[0], email.OpenPath)); err != nil || ti.MessageInfo != info {
		t.Errorf("pixel %q: %+v %v", pixels[0], ti, err)
	}
	if !regexp.MustCompile(`<img [^>]*>\s*</BODY>`).MatchString(out) {
		t.Errorf("pixel not right before </body>:\n%s", out)
	}

	// A fragment without a body gets the pixel at its end.
	frag := tr.Track(`<p>Hi</p>`, info)
	if !strings.HasPrefix(frag, "<p>Hi</p><img ") {
		t.Errorf("fragment: %s", frag)
	}
}

func TestPixelGIF(t *testing.T) {
	a := email.PixelGIF()
	img, err := gif.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Errorf("size %v", b)
	}
	if _, _, _, alpha := img.At(0, 0).RGBA(); alpha != 0 {
		t.Errorf("pixel not transparent: alpha %d", alpha)
	}
	a[0] = 'X'
	if email.PixelGIF()[0] != 'G' {
		t.Error("PixelGIF shares its bytes between calls")
	}
}

func FuzzParse(f *testing.F) {
	tr := newTracker()
	f.Add(tokenOf(f, tr.OpenURL(info), email.OpenPath), uint(0), byte(0))
	f.Add(tokenOf(f, tr.ClickURL(info, "https://shop.example/?q=1"), email.ClickPath), uint(10), byte(1))
	f.Add(tokenOf(f, tr.UnsubscribeURL(info), email.UnsubscribePath), uint(70), byte(0x20))
	f.Add("e30.", uint(0), byte(0))
	f.Add("..", uint(1), byte(0))
	f.Add("eyJ0IjoiYyJ9.AAAA", uint(5), byte(0xff))
	f.Add(legacyToken(tr.Secret, `{"p":"p1","k":"k1","t":"c","u":"https://shop.example/","at":1}`), uint(3), byte(0))
	valid := tokenOf(f, tr.ClickURL(info, "https://shop.example/x"), email.ClickPath)
	f.Fuzz(func(t *testing.T, token string, at uint, xor byte) {
		// Anything at all: no panic, and what passes is well formed.
		if ti, err := tr.Parse(token); err == nil {
			if ti.Kind == email.KindClick {
				if u, perr := url.Parse(ti.URL); perr != nil || (u.Scheme != "http" && u.Scheme != "https") {
					t.Fatalf("accepted click to %q", ti.URL)
				}
			}
			if ti.ProfileID == "" || ti.Key == "" {
				t.Fatalf("accepted %+v", ti)
			}
		} else if !errors.Is(err, email.ErrInvalidToken) {
			t.Fatalf("error %v does not wrap ErrInvalidToken", err)
		}
		// A valid token with any one byte changed is rejected.
		if xor != 0 {
			b := []byte(valid)
			b[int(at%uint(len(b)))] ^= xor
			if ti, err := tr.Parse(string(b)); err == nil {
				t.Fatalf("tampered token %q accepted: %+v", b, ti)
			}
		}
	})
}

// Rotating the key: new tokens carry the new key's id; tokens made before
// key ids, and under the retired key, still open; a token naming a key the
// tracker does not hold, or one sealed under another key than its id
// names, does not.
func TestTokenKeyRotation(t *testing.T) {
	old := newTracker() // no key id: the tokens of mail sent so far
	oldUnsub := tokenOf(t, old.UnsubscribeURL(info), email.UnsubscribePath)
	oldClick := tokenOf(t, old.ClickURL(info, "https://shop.example/a"), email.ClickPath)

	r1 := newTracker()
	r1.Secret, r1.KeyID = []byte("a-new-secret-0123456789abcdef!!"), "k2"
	r1.Previous = []email.TrackingKey{{Secret: old.Secret}}
	if err := r1.Validate(); err != nil {
		t.Fatal(err)
	}
	newUnsub := tokenOf(t, r1.UnsubscribeURL(info), email.UnsubscribePath)
	if !strings.HasPrefix(newUnsub, "k2~") {
		t.Errorf("a token of the rotated tracker %q does not name its key", newUnsub)
	}
	for name, tok := range map[string]string{"old unsubscribe": oldUnsub, "new unsubscribe": newUnsub} {
		if ti, err := r1.Unsubscribe(tok); err != nil || ti.MessageInfo != info {
			t.Errorf("%s after the rotation: %+v %v", name, ti, err)
		}
	}
	if _, err := r1.Click(oldClick); err != nil {
		t.Errorf("old click after the rotation: %v", err)
	}

	// A second rotation: k2 retired, k3 current; the first key kept too.
	r2 := newTracker()
	r2.Secret, r2.KeyID = []byte("a-third-secret-0123456789abcdef!"), "k3"
	r2.Previous = []email.TrackingKey{{ID: "k2", Secret: r1.Secret}, {Secret: old.Secret}}
	for name, tok := range map[string]string{"first": oldUnsub, "k2": newUnsub} {
		if _, err := r2.Unsubscribe(tok); err != nil {
			t.Errorf("%s key's token after the second rotation: %v", name, err)
		}
	}

	// Dropping a retired key ends its tokens.
	r3 := newTracker()
	r3.Secret, r3.KeyID = r2.Secret, "k3"
	for tok, want := range map[string]string{
		newUnsub: "unknown key id",
		"k3~" + strings.TrimPrefix(newUnsub, "k2~"): "does not open",
		"bad id!~" + newUnsub:                       "malformed key id",
		oldUnsub:                                    "does not open",
	} {
		if _, err := r3.Unsubscribe(tok); !errors.Is(err, email.ErrInvalidToken) || !strings.Contains(err.Error(), want) {
			t.Errorf("token %.20s… after the key was dropped: %v, want %q", tok, err, want)
		}
	}
}

func TestTrackerKeyValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		id   string
		prev []email.TrackingKey
		want string
	}{
		"bad id":        {id: "k 1", want: "key id: want 1 to 16"},
		"long id":       {id: strings.Repeat("k", 17), want: "key id: want 1 to 16"},
		"id twice":      {id: "k1", prev: []email.TrackingKey{{ID: "k1", Secret: []byte("0123456789abcdef")}}, want: `previous[0]: key id "k1" given twice`},
		"short old key": {id: "k2", prev: []email.TrackingKey{{ID: "k1", Secret: []byte("short")}}, want: `previous[0] ("k1"): secret: want at least 16 bytes`},
		"two unnamed":   {id: "k2", prev: []email.TrackingKey{{Secret: []byte("0123456789abcdef")}, {Secret: []byte("0123456789abcdeg")}}, want: `previous[1]: key id "" given twice`},
	} {
		tr := newTracker()
		tr.KeyID, tr.Previous = tc.id, tc.prev
		if err := tr.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
