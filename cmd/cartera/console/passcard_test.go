package console

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"strings"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/wallet"
)

// onePerson is the console's People with one person.
type onePerson struct {
	People
	p *Person
}

func (o onePerson) Person(profiles.Identifier, int) (*Person, error) { return o.p, nil }

// TestPersonPassCards: the person page draws each pass in its colours with
// its fields and barcode, lists its devices by hash and its pushes with
// their results; the barcode is a QR code that scans; a viewer gets no
// code, the barcode's message and personal fields masked; a
// colour that is not rgb() is not written into the page.
func TestPersonPassCards(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	t0 := clock.Now()
	card := wallet.Card{Serial: "S123", Template: "loyalty", Tier: "gold", Style: "storeCard", Organization: "Cartera Shoes", LogoText: "Cartera",
		Background: "rgb(176, 128, 20)", Foreground: "rgb(255, 255, 255)", Label: `red"/><script>`,
		Header:    []wallet.CardField{{Key: "points", Label: "Points", Value: "120"}},
		Primary:   []wallet.CardField{{Key: "tier", Label: "Tier", Value: "Gold"}},
		Secondary: []wallet.CardField{{Key: "name", Label: "Member", Value: "Ana Pérez"}},
		Auxiliary: []wallet.CardField{{Key: "member", Label: "CARD", Value: "4000 1234"}},
		Back:      []wallet.CardField{{Key: "message", Label: "Latest", Value: "Write to ana@example.com"}},
		Barcode:   "40001234", BarcodeFormat: "PKBarcodeFormatQR", Updated: t0,
		Devices: []wallet.Device{{Hash: "0588a13419dda265", Since: t0.Add(-time.Hour)}},
		Pushes:  []wallet.PushRecord{{At: t0, Results: []wallet.PushCount{{Platform: "apns", Outcome: wallet.PushSent, N: 2}, {Platform: "google", Outcome: wallet.PushFailed, N: 1}}}},
	}
	voided := wallet.Card{Serial: "S9", Template: "loyalty", Tier: "silver", Voided: true}
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) {
		o.People = onePerson{p: &Person{ID: "p1", Passes: []wallet.Card{card, voided}}}
	})
	_, page := r.get(t, RoleMarketer, "/console/people/profile_id:p1")
	for _, want := range []string{
		`<svg class="pass-card" data-serial="S123"`,
		`fill="rgb(176, 128, 20)"`,
		`<text class="value header" data-key="points" x="304" y="34" fill="rgb(255, 255, 255)" font-size="14" text-anchor="end">120</text>`,
		`<text class="value primary" data-key="tier"`, `>Gold</text>`, `>Ana Pérez</text>`, `>POINTS</text>`, `>4000 1234</text>`,
		`<text class="barcode"`, `>40001234</text>`,
		`<code class="device">0588a13419dda265</code>`, `2026-12-06 09:00:00Z`,
		`<td class="result">apns sent ×2, google failed ×1</td>`,
		`Write to ana@example.com`,
		`<svg class="pass-card" data-serial="S9"`, `>VOIDED</text>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the marketer's person page lacks %s", want)
		}
	}
	if got, _ := scanQR(t, page); got != "40001234" {
		t.Errorf("the marketer's card has a QR code that reads %q", got)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, `red"`) {
		t.Error("a colour that is not rgb() reached the page")
	}
	_, page = r.get(t, RoleViewer, "/console/people/profile_id:p1")
	for _, leak := range []string{">40001234<", ">4000 1234<", "Ana Pérez", "ana@example.com"} {
		if strings.Contains(page, leak) {
			t.Errorf("the viewer's person page shows %s", leak)
		}
	}
	if strings.Contains(page, "barcode-qr") {
		t.Error("the viewer's person page draws a QR code")
	}
	for _, kept := range []string{">120</text>", ">Gold</text>", "a***@example.com", "0588a13419dda265", ">QR (hidden)</text>", ">40***</text>"} {
		if !strings.Contains(page, kept) {
			t.Errorf("the viewer's person page lacks %s", kept)
		}
	}
}

// A pass's strip and logo are drawn as its PNGs (data: URIs, which the
// console's CSP allows), the logo 24 high before the logo text; bytes
// that are not a PNG are not drawn.
func TestPassCardImages(t *testing.T) {
	pngOf := func(w, h int) []byte {
		var buf bytes.Buffer
		if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, w, h))); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	logo, strip := pngOf(80, 25), pngOf(375, 123)
	svg := string(passCard(wallet.Card{Serial: "S1", Template: "loyalty", LogoText: "Cartera", Logo: logo, Strip: strip}, false))
	src := func(class string) []byte {
		t.Helper()
		i := strings.Index(svg, `<image class="`+class+`"`)
		if i < 0 {
			t.Fatalf("no %s image in %s", class, svg)
		}
		tag := svg[i : i+strings.Index(svg[i:], "/>")]
		const pre = `href="data:image/png;base64,`
		j := strings.Index(tag, pre)
		if j < 0 {
			t.Fatalf("%s: no PNG data URI in %s", class, tag)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(tag[j+len(pre):], `"`))
		if err != nil {
			t.Fatalf("%s: %v", class, err)
		}
		return b
	}
	if !bytes.Equal(src("logo-image"), logo) || !bytes.Equal(src("strip"), strip) {
		t.Error("the images drawn are not the pass's")
	}
	if !strings.Contains(svg, `<image class="logo-image" x="16" y="12" width="77" height="24"`) || !strings.Contains(svg, `<text class="logo" x="99" y="32"`) {
		t.Errorf("the logo is not 77×24 with its text after it: %s", svg)
	}
	if svg := string(passCard(wallet.Card{Serial: "S2", Template: "loyalty", Logo: []byte("\x89PNG not one"), Strip: []byte("<svg onload=x>")}, false)); strings.Contains(svg, "<image") {
		t.Errorf("bytes that are not a PNG were drawn: %s", svg)
	}
}
