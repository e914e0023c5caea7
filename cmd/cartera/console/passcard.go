package console

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"html/template"
	"regexp"
	"strings"
	"unicode/utf8"

	"cartera/wallet"
	"cartera/wallet/apple"
)

// The person page draws each pass as the phone shows it, as inline SVG:
// its colours are presentation attributes, which the console's
// Content-Security-Policy (no inline styles) allows.

const cardW = 320.0

var cssRGB = regexp.MustCompile(`^rgb\(\d{1,3}, ?\d{1,3}, ?\d{1,3}\)$`)

// colorOr is c when it is an rgb() colour, else def.
func colorOr(c, def string) string {
	if cssRGB.MatchString(c) {
		return c
	}
	return def
}

// clip shortens s to n characters, as a field too long for its place is
// cut on the phone.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// cardView is a pass for the person page: the drawn card, devices and
// pushes.
type cardView struct {
	wallet.Card
	SVG template.HTML
}

// maskCard masks what a card shows for a viewer: field values by their
// key and label, as traits are, and the barcode (often a loyalty card
// number).
func maskCard(c wallet.Card) wallet.Card {
	mask := func(fs []wallet.CardField) []wallet.CardField {
		out := make([]wallet.CardField, len(fs))
		for i, f := range fs {
			f.Value = compact(maskValue(f.Key+" "+f.Label, f.Value))
			out[i] = f
		}
		return out
	}
	c.Header, c.Primary, c.Secondary, c.Auxiliary, c.Back = mask(c.Header), mask(c.Primary), mask(c.Secondary), mask(c.Auxiliary), mask(c.Back)
	if c.Barcode != "" {
		c.Barcode = maskOther(c.Barcode)
	}
	return c
}

// passCard draws a card: logo text and header fields on top, primary
// fields large, secondary and auxiliary fields in rows, and the barcode
// in its white box, in the pass's colours: a QR or Code 128 code drawn
// module by module with its message under it, PDF417 and Aztec as their
// message. A masked card (a viewer's) draws no code: its message is the
// masked one, and a code of it would scan as something the pass does not
// hold. Every text is escaped; colours are checked to be rgb().
func passCard(c wallet.Card, masked bool) template.HTML {
	bg := colorOr(c.Background, "rgb(255, 255, 255)")
	fg := colorOr(c.Foreground, "rgb(0, 0, 0)")
	lb := colorOr(c.Label, fg)
	esc := template.HTMLEscapeString
	var b strings.Builder
	h := 250.0
	logo := c.LogoText
	if logo == "" {
		logo = c.Organization
	}
	if c.NoTemplate {
		logo = "template " + c.Template + " not configured"
	}
	// The strip behind the primary fields, the logo before its text, as
	// a store card shows them.
	if img, _, _ := pngImage(c.Strip); img != "" {
		fmt.Fprintf(&b, `<image class="strip" x="1" y="44" width="%.0f" height="62" preserveAspectRatio="xMidYMid slice" href="%s"/>`, cardW-2, img)
	}
	logoX := 16.0
	if img, w, h := pngImage(c.Logo); img != "" {
		lw := min(w*24/h, 100) // 24 high, as the phone fits a logo in its bar
		fmt.Fprintf(&b, `<image class="logo-image" x="16" y="12" width="%.0f" height="24" preserveAspectRatio="xMinYMid meet" href="%s"/>`, lw, img)
		logoX += lw + 6
	}
	fmt.Fprintf(&b, `<text class="logo" x="%.0f" y="32" fill="%s" font-size="16" font-weight="bold">%s</text>`, logoX, esc(fg), esc(clip(logo, 22)))
	field := func(f wallet.CardField, group string, x, y, size float64, anchor string, width int) {
		fmt.Fprintf(&b, `<text class="label" x="%.0f" y="%.0f" fill="%s" font-size="9" text-anchor="%s">%s</text>`, x, y, esc(lb), anchor, esc(clip(strings.ToUpper(f.Label), width)))
		fmt.Fprintf(&b, `<text class="value %s" data-key="%s" x="%.0f" y="%.0f" fill="%s" font-size="%.0f" text-anchor="%s">%s</text>`,
			group, esc(f.Key), x, y+size+2, esc(fg), size, anchor, esc(clip(f.Value, width)))
	}
	for i, f := range c.Header {
		if i == 2 {
			break
		}
		field(f, "header", cardW-16-float64(i)*90, 18, 14, "end", 12)
	}
	for i, f := range c.Primary {
		if i == 2 {
			break
		}
		field(f, "primary", 16+float64(i)*150, 58, 26, "start", 11)
	}
	row := func(fs []wallet.CardField, group string, y float64) {
		for i, f := range fs {
			if i == 4 {
				break
			}
			field(f, group, 16+float64(i)*74, y, 13, "start", 10)
		}
	}
	row(c.Secondary, "secondary", 112)
	row(c.Auxiliary, "auxiliary", 148)
	const qrTop = 170.0
	var qrCode, barCode string
	if c.Barcode != "" && !masked && !c.Voided {
		switch c.BarcodeFormat {
		case apple.BarcodeQR:
			qrCode = qrSVG(c.Barcode, c.BarcodeEncoding, (cardW-qrSide)/2, qrTop)
		case apple.BarcodeCode128:
			barCode = code128SVG(c.Barcode, 24, 178, cardW-48, 40)
		}
	}
	switch {
	case c.Voided:
		fmt.Fprintf(&b, `<text class="voided" x="%.0f" y="215" fill="rgb(190, 30, 30)" font-size="18" font-weight="bold" text-anchor="middle">VOIDED</text>`, cardW/2)
	case qrCode != "":
		// A white box with the code and its message under it, as the
		// phone shows a QR code.
		top := qrTop
		h = top + qrSide + 40
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" rx="4" fill="rgb(255, 255, 255)" stroke="rgb(200, 200, 200)"/>`,
			(cardW-qrSide)/2-8, top-4, qrSide+16, qrSide+26)
		b.WriteString(qrCode)
		fmt.Fprintf(&b, `<text class="barcode" x="%.0f" y="%.0f" fill="rgb(0, 0, 0)" font-size="10" font-family="monospace" text-anchor="middle">%s</text>`,
			cardW/2, top+qrSide+14, esc(clip(c.Barcode, 24)))
	case barCode != "":
		// A white box with the bars and the message under them.
		fmt.Fprintf(&b, `<rect x="16" y="172" width="%.0f" height="70" rx="4" fill="rgb(255, 255, 255)" stroke="rgb(200, 200, 200)"/>`, cardW-32)
		b.WriteString(barCode)
		fmt.Fprintf(&b, `<text class="barcode" x="%.0f" y="234" fill="rgb(0, 0, 0)" font-size="10" font-family="monospace" text-anchor="middle">%s</text>`,
			cardW/2, esc(clip(c.Barcode, 40)))
	case c.Barcode != "":
		format := strings.TrimPrefix(c.BarcodeFormat, "PKBarcodeFormat")
		if masked {
			format += " (hidden)"
		}
		fmt.Fprintf(&b, `<rect x="60" y="186" width="200" height="50" rx="4" fill="rgb(255, 255, 255)" stroke="rgb(200, 200, 200)"/>`)
		fmt.Fprintf(&b, `<text x="%.0f" y="202" fill="rgb(120, 120, 120)" font-size="9" text-anchor="middle">%s</text>`, cardW/2, esc(format))
		fmt.Fprintf(&b, `<text class="barcode" x="%.0f" y="224" fill="rgb(0, 0, 0)" font-size="14" font-family="monospace" text-anchor="middle">%s</text>`, cardW/2, esc(clip(c.Barcode, 24)))
	}
	b.WriteString(`</svg>`)
	head := fmt.Sprintf(`<svg class="pass-card" data-serial="%s" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s pass %s">`,
		esc(c.Serial), cardW, h, cardW, h, esc(c.Template), esc(c.Serial))
	head += fmt.Sprintf(`<rect class="card-bg" x="0.5" y="0.5" width="%.0f" height="%.0f" rx="12" fill="%s" stroke="rgb(200, 200, 200)"/>`, cardW-1, h-1, esc(bg))
	return template.HTML(head + b.String())
}

// pngImage is a PNG as a data: URI (the console's Content-Security-Policy
// allows data: images) with its width and height from its header; "" for
// anything that is not a PNG with a sane size.
func pngImage(b []byte) (uri string, w, h float64) {
	const sig = "\x89PNG\r\n\x1a\n"
	if len(b) < 24 || string(b[:8]) != sig || string(b[12:16]) != "IHDR" {
		return "", 0, 0
	}
	w, h = float64(binary.BigEndian.Uint32(b[16:20])), float64(binary.BigEndian.Uint32(b[20:24]))
	if w < 1 || h < 1 || w > 4096 || h > 4096 {
		return "", 0, 0
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b), w, h
}
