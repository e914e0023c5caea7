package console

import (
	"image"
	"image/color"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"
	"github.com/makiuchi-d/gozxing/qrcode"
	"rsc.io/qr"

	"cartera/wallet"
)

var (
	qrBox   = regexp.MustCompile(`<svg class="barcode-qr" [^>]*viewBox="0 0 (\d+) (\d+)"[^>]*>(.*?)</svg>`)
	qrRun   = regexp.MustCompile(`<rect class="m" x="(\d+)" y="(\d+)" width="(\d+)" height="1" fill="rgb\(0, 0, 0\)"/>`)
	anyRect = regexp.MustCompile(`<rect`)
)

// scanQR rebuilds the QR code drawn in page from its rects, renders it to
// an image at 4 pixels a module and reads it with a QR decoder (ZXing's
// Go port, which shares no code with the encoder the console draws
// with). It fails the test when the page has no code or the code does
// not scan, and returns the message and the dark modules (by "x,y",
// quiet zone excluded).
func scanQR(t *testing.T, page string) (string, map[[2]int]bool) {
	t.Helper()
	m := qrBox.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no QR code drawn")
	}
	n, _ := strconv.Atoi(m[1])
	if m[2] != m[1] || n < 21+2*qrQuiet {
		t.Fatalf("QR view box %sx%s is not a square code with its quiet zone", m[1], m[2])
	}
	runs := qrRun.FindAllStringSubmatch(m[3], -1)
	// Every rect but the white background is a run of dark modules.
	if got := len(anyRect.FindAllString(m[3], -1)) - 1; got != len(runs) {
		t.Fatalf("%d rects in the code, %d of them runs of modules", got, len(runs))
	}
	const px = 4
	dark := map[[2]int]bool{}
	img := image.NewGray(image.Rect(0, 0, n*px, n*px))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for _, r := range runs {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		w, _ := strconv.Atoi(r[3])
		if x < qrQuiet || y < qrQuiet || x+w > n-qrQuiet || y >= n-qrQuiet {
			t.Fatalf("run at %d,%d width %d is in the quiet zone", x, y, w)
		}
		for i := range w {
			dark[[2]int{x + i - qrQuiet, y - qrQuiet}] = true
		}
		for X := x * px; X < (x+w)*px; X++ {
			for Y := y * px; Y < (y+1)*px; Y++ {
				img.SetGray(X, Y, color.Gray{})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{
		gozxing.DecodeHintType_PURE_BARCODE:  true,
		gozxing.DecodeHintType_CHARACTER_SET: "ISO-8859-1",
	})
	if err != nil {
		t.Fatalf("the drawn QR code does not scan: %v", err)
	}
	return res.GetText(), dark
}

// TestPassCardQR: a QR pass's card draws its code module by module, and a
// decoder reads the message back from the drawn rects: digits, upper
// case, a URL, Latin-1 letters (as the phone writes them, in ISO-8859-1)
// and a long message; a viewer's card draws no code at all, and a format
// the console cannot draw keeps its message as text.
func TestPassCardQR(t *testing.T) {
	long := "https://cartera.example/pass/" + strings.Repeat("a1b2c3d4", 40)
	for _, msg := range []string{"40001234", "CARTERA 4000-1234", "https://shop.example/p?id=u-1&tier=gold", "Ana Núñez · 4000", long} {
		t.Run(msg[:min(len(msg), 20)], func(t *testing.T) {
			card := wallet.Card{Serial: "S1", Template: "loyalty", Barcode: msg, BarcodeFormat: "PKBarcodeFormatQR", BarcodeEncoding: "iso-8859-1"}
			svg := string(passCard(card, false))
			got, dark := scanQR(t, svg)
			if got != msg {
				t.Errorf("the drawn QR code reads %q, want %q", got, msg)
			}
			// Module for module, the drawing is the encoder's code.
			code, err := qr.Encode(qrMessage(msg, "iso-8859-1"), qr.M)
			if err != nil {
				t.Fatal(err)
			}
			for y := range code.Size {
				for x := range code.Size {
					if code.Black(x, y) != dark[[2]int{x, y}] {
						t.Fatalf("module %d,%d is drawn dark=%v, the encoder's is %v", x, y, dark[[2]int{x, y}], code.Black(x, y))
					}
				}
			}
			if n := len(dark); n == 0 || n >= code.Size*code.Size {
				t.Errorf("%d dark modules of %d", n, code.Size*code.Size)
			}
			if !strings.Contains(svg, `<text class="barcode"`) {
				t.Error("the message is not written under the code")
			}
		})
	}
	t.Run("viewer", func(t *testing.T) {
		card := maskCard(wallet.Card{Serial: "S1", Barcode: "40001234", BarcodeFormat: "PKBarcodeFormatQR", BarcodeEncoding: "iso-8859-1"})
		svg := string(passCard(card, true))
		if strings.Contains(svg, "barcode-qr") || strings.Contains(svg, `class="m"`) {
			t.Errorf("a viewer's card draws a code: %s", svg)
		}
		if !strings.Contains(svg, ">QR (hidden)</text>") || !strings.Contains(svg, ">40***</text>") {
			t.Errorf("a viewer's card does not say its code is hidden: %s", svg)
		}
	})
	t.Run("PDF417", func(t *testing.T) {
		card := wallet.Card{Serial: "S1", Barcode: "40001234", BarcodeFormat: "PKBarcodeFormatPDF417", BarcodeEncoding: "iso-8859-1"}
		svg := string(passCard(card, false))
		if strings.Contains(svg, "barcode-qr") || !strings.Contains(svg, ">PDF417</text>") || !strings.Contains(svg, ">40001234</text>") {
			t.Errorf("a PDF417 card is not its message as text: %s", svg)
		}
	})
}

var code128Box = regexp.MustCompile(`<svg class="barcode-code128" [^>]*viewBox="0 0 (\d+) 1"[^>]*>(.*?)</svg>`)

// scanCode128 rebuilds the Code 128 barcode drawn in page from its rects,
// renders it at 3 pixels a module and reads it with ZXing's Code 128
// reader.
func scanCode128(t *testing.T, page string) string {
	t.Helper()
	m := code128Box.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no Code 128 barcode drawn")
	}
	n, _ := strconv.Atoi(m[1])
	const px, height = 3, 40
	img := image.NewGray(image.Rect(0, 0, n*px, height))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	runs := regexp.MustCompile(`<rect class="m" x="(\d+)" y="0" width="(\d+)" height="1" fill="rgb\(0, 0, 0\)"/>`).FindAllStringSubmatch(m[2], -1)
	if got := len(anyRect.FindAllString(m[2], -1)) - 1; got != len(runs) || got == 0 {
		t.Fatalf("%d rects in the code, %d of them bars", got, len(runs))
	}
	for _, r := range runs {
		x, _ := strconv.Atoi(r[1])
		w, _ := strconv.Atoi(r[2])
		if x < code128Quiet || x+w > n-code128Quiet {
			t.Fatalf("bar at %d width %d is in the quiet zone", x, w)
		}
		for X := x * px; X < (x+w)*px; X++ {
			for Y := range height {
				img.SetGray(X, Y, color.Gray{})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := oned.NewCode128Reader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("the drawn Code 128 barcode does not scan: %v", err)
	}
	return res.GetText()
}

// TestPassCardCode128: a Code 128 pass's card draws its bars, and a reader
// reads the message back from the drawn rects; a message Code 128 cannot
// hold (non-ASCII, over 80 characters) and a viewer's masked card keep the
// message as text, with no bars.
func TestPassCardCode128(t *testing.T) {
	for _, msg := range []string{"40001234", "CARTERA-4000 abc", "u-1/Gold?x=1", strings.Repeat("7", 80)} {
		t.Run(msg[:min(len(msg), 20)], func(t *testing.T) {
			svg := string(passCard(wallet.Card{Serial: "S1", Barcode: msg, BarcodeFormat: "PKBarcodeFormatCode128"}, false))
			if got := scanCode128(t, svg); got != msg {
				t.Errorf("the drawn Code 128 barcode reads %q, want %q", got, msg)
			}
			if !strings.Contains(svg, `<text class="barcode"`) {
				t.Error("the message is not written under the bars")
			}
		})
	}
	for name, c := range map[string]struct {
		msg    string
		masked bool
	}{"non-ASCII": {"Núñez 4000", false}, "too long": {strings.Repeat("7", 81), false}, "viewer": {"40***", true}} {
		t.Run(name, func(t *testing.T) {
			svg := string(passCard(wallet.Card{Serial: "S1", Barcode: c.msg, BarcodeFormat: "PKBarcodeFormatCode128"}, c.masked))
			if strings.Contains(svg, "barcode-code128") || !strings.Contains(svg, ">Code128") || !strings.Contains(svg, ">"+clip(c.msg, 24)+"</text>") {
				t.Errorf("the card is not the message as text: %s", svg)
			}
		})
	}
}
