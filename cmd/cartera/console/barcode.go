package console

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"
	"rsc.io/qr"

	"cartera/wallet/apple"
)

// A pass's QR or Code 128 barcode is drawn as SVG rects, one per run of
// dark modules in a row, so the page needs no image (the
// Content-Security-Policy allows no inline style, and a data: image would
// be one more thing to allow). PDF417 and Aztec are not drawn: the card
// shows their message as text.

// qrQuiet is the quiet zone around a QR code, in modules, as the
// standard asks.
const qrQuiet = 4

// qrSide is the side of the drawn QR code with its quiet zone, in the
// card's units.
const qrSide = 120.0

// qrMessage is the message as the phone encodes it: PassKit writes the
// message in the barcode's messageEncoding, ISO-8859-1 by default, so a
// message whose characters all fit in Latin-1 is written in it, byte for
// byte; any other is written as UTF-8. An empty encoding is the default.
func qrMessage(msg, encoding string) string {
	if !strings.EqualFold(cmp.Or(encoding, apple.DefaultBarcodeCoding), apple.DefaultBarcodeCoding) {
		return msg
	}
	b := make([]byte, 0, len(msg))
	for _, r := range msg {
		if r > 0xff {
			return msg
		}
		b = append(b, byte(r))
	}
	return string(b)
}

// qrSVG draws msg's QR code as a nested <svg> whose view box is the code
// in modules (quiet zone included), at x, y in the card and qrSide wide.
// It returns "" when msg does not fit in a QR code.
func qrSVG(msg, encoding string, x, y float64) string {
	code, err := qr.Encode(qrMessage(msg, encoding), qr.M)
	if err != nil {
		return ""
	}
	var b strings.Builder
	n := code.Size + 2*qrQuiet
	fmt.Fprintf(&b, `<svg class="barcode-qr" x="%.0f" y="%.0f" width="%.0f" height="%.0f" viewBox="0 0 %d %d" shape-rendering="crispEdges">`,
		x, y, qrSide, qrSide, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="rgb(255, 255, 255)"/>`, n, n)
	for row := range code.Size {
		for col := 0; col < code.Size; {
			if !code.Black(col, row) {
				col++
				continue
			}
			end := col
			for end < code.Size && code.Black(end, row) {
				end++
			}
			fmt.Fprintf(&b, `<rect class="m" x="%d" y="%d" width="%d" height="1" fill="rgb(0, 0, 0)"/>`, col+qrQuiet, row+qrQuiet, end-col)
			col = end
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// code128Quiet is the quiet zone on each side of a Code 128 barcode, in
// modules, as the standard asks.
const code128Quiet = 10

// code128SVG draws msg's Code 128 barcode as a nested <svg> of w by h at
// x, y in the card, whose view box is the code in modules (quiet zones
// included) by one module high, stretched to h. It returns "" when msg
// cannot be written in Code 128 (more than 80 characters, or any outside
// ASCII).
func code128SVG(msg string, x, y, w, h float64) string {
	for _, r := range msg {
		if r > 0x7f {
			return ""
		}
	}
	m, err := oned.NewCode128Writer().Encode(msg, gozxing.BarcodeFormat_CODE_128, 0, 1,
		map[gozxing.EncodeHintType]any{gozxing.EncodeHintType_MARGIN: 0})
	if err != nil {
		return ""
	}
	size := m.GetWidth()
	n := size + 2*code128Quiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="barcode-code128" x="%.0f" y="%.0f" width="%.0f" height="%.0f" viewBox="0 0 %d 1" preserveAspectRatio="none" shape-rendering="crispEdges">`,
		x, y, w, h, n)
	fmt.Fprintf(&b, `<rect width="%d" height="1" fill="rgb(255, 255, 255)"/>`, n)
	for col := 0; col < size; {
		if !m.Get(col, 0) {
			col++
			continue
		}
		end := col
		for end < size && m.Get(end, 0) {
			end++
		}
		fmt.Fprintf(&b, `<rect class="m" x="%d" y="0" width="%d" height="1" fill="rgb(0, 0, 0)"/>`, col+code128Quiet, end-col)
		col = end
	}
	b.WriteString(`</svg>`)
	return b.String()
}
