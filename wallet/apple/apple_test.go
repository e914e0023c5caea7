package apple_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"cartera/wallet/apple"
)

var testNow = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// devChain returns a fresh dev chain and the folder it lives in.
func devChain(tb testing.TB) (*apple.Chain, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "wallet-dev")
	chain, err := apple.DevChain(dir, testNow)
	if err != nil {
		tb.Fatal(err)
	}
	return chain, dir
}

func testPass() apple.Pass {
	return apple.Pass{
		SerialNumber:        "p_01JDEV0001",
		OrganizationName:    "Cartera Coffee",
		Description:         "Cartera Coffee loyalty card",
		WebServiceURL:       "https://cartera.example/wallet",
		AuthenticationToken: "0123456789abcdef0123",
		StoreCard: &apple.Fields{
			HeaderFields:    []apple.Field{{Key: "tier", Label: "Tier", Value: "Silver", ChangeMessage: "You are now %@"}},
			PrimaryFields:   []apple.Field{{Key: "balance", Label: "Points", Value: 420, ChangeMessage: "Balance now %@"}},
			SecondaryFields: []apple.Field{{Key: "name", Label: "Member", Value: "Ana García"}},
			AuxiliaryFields: []apple.Field{{Key: "since", Label: "Since", Value: "2024"}},
			BackFields:      []apple.Field{{Key: "terms", Label: "Terms", Value: "Points expire after a year."}},
		},
		Barcodes:        []apple.Barcode{{Message: "cartera:p_01JDEV0001"}},
		BackgroundColor: apple.RGB(30, 30, 30),
		ForegroundColor: apple.RGB(255, 255, 255),
		LabelColor:      apple.RGB(200, 160, 90),
		Locations:       []apple.Location{{Latitude: 40.4168, Longitude: -3.7038, RelevantText: "Your card is ready"}},
		RelevantDate:    testNow.Add(48*time.Hour + 500*time.Millisecond),
	}
}

func testFiles() map[string][]byte {
	return map[string][]byte{
		"icon.png":              []byte("\x89PNG icon 29x29"),
		"icon@2x.png":           []byte("\x89PNG icon 58x58"),
		"logo.png":              []byte("\x89PNG logo"),
		"es.lproj/pass.strings": []byte("\"Points\" = \"Puntos\";\n"),
	}
}

func unzip(t *testing.T, b []byte) (map[string][]byte, []string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	var order []string
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || strings.HasSuffix(f.Name, "/") {
			t.Errorf("directory entry %q in archive", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[f.Name]; dup {
			t.Errorf("duplicate entry %q", f.Name)
		}
		out[f.Name] = data
		order = append(order, f.Name)
	}
	return out, order
}

func TestBuild(t *testing.T) {
	chain, dir := devChain(t)
	pkpass, err := apple.Build(testPass(), testFiles(), chain, testNow)
	if err != nil {
		t.Fatal(err)
	}
	got, order := unzip(t, pkpass)

	want := []string{"pass.json", "manifest.json", "signature", "es.lproj/pass.strings", "icon.png", "icon@2x.png", "logo.png"}
	if !slices.Equal(order, want) {
		t.Fatalf("archive entries = %q, want %q", order, want)
	}
	for name, b := range testFiles() {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s changed in the archive", name)
		}
	}

	t.Run("manifest", func(t *testing.T) {
		var manifest map[string]string
		if err := json.Unmarshal(got["manifest.json"], &manifest); err != nil {
			t.Fatal(err)
		}
		wantKeys := []string{"es.lproj/pass.strings", "icon.png", "icon@2x.png", "logo.png", "pass.json"}
		keys := slices.Sorted(maps.Keys(manifest))
		if !slices.Equal(keys, wantKeys) {
			t.Fatalf("manifest keys = %q, want %q", keys, wantKeys)
		}
		for name, h := range manifest {
			sum := sha1.Sum(got[name])
			if h != hex.EncodeToString(sum[:]) {
				t.Errorf("manifest[%s] = %s, want sha1 %x", name, h, sum)
			}
		}
	})

	t.Run("pass.json", func(t *testing.T) {
		var pj map[string]any
		if err := json.Unmarshal(got["pass.json"], &pj); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]any{
			"formatVersion":       1.0,
			"passTypeIdentifier":  "pass.cartera.dev",
			"teamIdentifier":      "CARTERADEV",
			"serialNumber":        "p_01JDEV0001",
			"organizationName":    "Cartera Coffee",
			"description":         "Cartera Coffee loyalty card",
			"webServiceURL":       "https://cartera.example/wallet",
			"authenticationToken": "0123456789abcdef0123",
			"backgroundColor":     "rgb(30, 30, 30)",
			"foregroundColor":     "rgb(255, 255, 255)",
			"labelColor":          "rgb(200, 160, 90)",
			"relevantDate":        "2026-11-26T09:00:00Z",
		} {
			if pj[k] != v {
				t.Errorf("pass.json %s = %#v, want %#v", k, pj[k], v)
			}
		}
		barcodes, _ := pj["barcodes"].([]any)
		if len(barcodes) != 1 {
			t.Fatalf("barcodes = %#v", pj["barcodes"])
		}
		bc := barcodes[0].(map[string]any)
		if bc["format"] != "PKBarcodeFormatQR" || bc["message"] != "cartera:p_01JDEV0001" || bc["messageEncoding"] != "iso-8859-1" {
			t.Errorf("barcode = %#v", bc)
		}
		var back apple.Pass
		if err := json.Unmarshal(got["pass.json"], &back); err != nil {
			t.Fatal(err)
		}
		sc := back.StoreCard
		if sc == nil || len(sc.HeaderFields) != 1 || len(sc.PrimaryFields) != 1 || len(sc.SecondaryFields) != 1 ||
			len(sc.AuxiliaryFields) != 1 || len(sc.BackFields) != 1 {
			t.Fatalf("storeCard = %+v", sc)
		}
		if f := sc.PrimaryFields[0]; f.Key != "balance" || f.Label != "Points" || f.Value != 420.0 || f.ChangeMessage != "Balance now %@" {
			t.Errorf("primary field = %+v", f)
		}
		if *back.LabelColor != (apple.Color{R: 200, G: 160, B: 90}) {
			t.Errorf("labelColor round trip = %v", back.LabelColor)
		}
		if len(back.Locations) != 1 || back.Locations[0].Latitude != 40.4168 || back.Locations[0].RelevantText != "Your card is ready" {
			t.Errorf("locations = %+v", back.Locations)
		}
	})

	t.Run("signature pkcs7", func(t *testing.T) {
		p7, err := pkcs7.Parse(got["signature"])
		if err != nil {
			t.Fatal(err)
		}
		if len(p7.Content) != 0 {
			t.Errorf("signature is not detached: %d content bytes", len(p7.Content))
		}
		if len(p7.Certificates) != 2 {
			t.Fatalf("signature holds %d certificates, want 2", len(p7.Certificates))
		}
		var subjects []string
		for _, c := range p7.Certificates {
			subjects = append(subjects, c.Subject.CommonName)
		}
		slices.Sort(subjects)
		wantSubjects := []string{chain.WWDR.Subject.CommonName, chain.Cert.Subject.CommonName}
		slices.Sort(wantSubjects)
		if !slices.Equal(subjects, wantSubjects) {
			t.Errorf("certificates = %q, want %q", subjects, wantSubjects)
		}
		var signingTime time.Time
		if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signingTime); err != nil {
			t.Fatalf("signing time attribute: %v", err)
		}
		if signingTime.IsZero() || time.Since(signingTime) > time.Hour || time.Until(signingTime) > time.Minute {
			t.Errorf("signing time = %v, want about now", signingTime)
		}
		p7.Content = got["manifest.json"]
		if err := p7.Verify(); err != nil {
			t.Errorf("verify over manifest.json: %v", err)
		}
		p7.Content = append(slices.Clone(got["manifest.json"]), ' ')
		if err := p7.Verify(); err == nil {
			t.Error("signature verified over a changed manifest")
		}
	})

	t.Run("openssl", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("openssl not on PATH; skipping the independent signature check")
		}
		work := t.TempDir()
		for _, name := range []string{"signature", "manifest.json"} {
			if err := os.WriteFile(filepath.Join(work, name), got[name], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command("openssl", "smime", "-verify", "-binary", "-inform", "DER",
			"-in", filepath.Join(work, "signature"), "-content", filepath.Join(work, "manifest.json"),
			"-CAfile", filepath.Join(dir, "ca.pem"), "-purpose", "any", "-out", os.DevNull).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification successful") {
			t.Fatalf("openssl smime -verify: %v\n%s", err, out)
		}

		// A changed manifest must fail openssl's check too.
		bad := filepath.Join(work, "bad.json")
		if err := os.WriteFile(bad, append(slices.Clone(got["manifest.json"]), ' '), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = exec.Command("openssl", "smime", "-verify", "-binary", "-inform", "DER",
			"-in", filepath.Join(work, "signature"), "-content", bad,
			"-CAfile", filepath.Join(dir, "ca.pem"), "-purpose", "any", "-out", os.DevNull).CombinedOutput()
		if err == nil {
			t.Fatalf("openssl verified a changed manifest:\n%s", out)
		}

		out, err = exec.Command("openssl", "pkcs7", "-inform", "DER", "-in", filepath.Join(work, "signature"),
			"-print_certs", "-noout").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl pkcs7 -print_certs: %v\n%s", err, out)
		}
		if n := len(regexp.MustCompile(`(?m)^subject=`).FindAll(out, -1)); n != 2 {
			t.Errorf("openssl pkcs7 -print_certs shows %d certificates, want 2:\n%s", n, out)
		}
		if !strings.Contains(string(out), "Pass Type ID: pass.cartera.dev") {
			t.Errorf("pass certificate missing from signature:\n%s", out)
		}

		out, err = exec.Command("openssl", "cms", "-cmsout", "-print", "-inform", "DER",
			"-in", filepath.Join(work, "signature")).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl cms -cmsout -print: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "signingTime") {
			t.Errorf("no signingTime attribute in openssl's dump:\n%s", out)
		}
	})
}

func TestBuildRejects(t *testing.T) {
	chain, _ := devChain(t)
	tests := []struct {
		name   string
		pass   func(*apple.Pass)
		files  map[string][]byte
		now    time.Time
		errHas string
	}{
		{name: "no serial", pass: func(p *apple.Pass) { p.SerialNumber = "" }, errHas: "serialNumber"},
		{name: "no description", pass: func(p *apple.Pass) { p.Description = "" }, errHas: "description"},
		{name: "other pass type", pass: func(p *apple.Pass) { p.PassTypeIdentifier = "pass.other.app" }, errHas: "passTypeIdentifier"},
		{name: "other team", pass: func(p *apple.Pass) { p.TeamIdentifier = "ABCDE12345" }, errHas: "teamIdentifier"},
		{name: "token without url", pass: func(p *apple.Pass) { p.WebServiceURL = "" }, errHas: "go together"},
		{name: "short token", pass: func(p *apple.Pass) { p.AuthenticationToken = "short" }, errHas: "16 characters"},
		{name: "file named pass.json", files: map[string][]byte{"pass.json": nil}, errHas: "written by Build"},
		{name: "file named signature", files: map[string][]byte{"signature": nil}, errHas: "written by Build"},
		{name: "absolute path", files: map[string][]byte{"/etc/icon.png": nil}, errHas: "relative"},
		{name: "parent path", files: map[string][]byte{"../icon.png": nil}, errHas: "relative"},
		{name: "directory", files: map[string][]byte{"es.lproj/": nil}, errHas: "relative"},
		{name: "backslash", files: map[string][]byte{`es.lproj\pass.strings`: nil}, errHas: "relative"},
		{name: "expired chain", now: testNow.AddDate(11, 0, 0), errHas: "valid from"},
		{name: "before chain", now: testNow.Add(-2 * time.Hour), errHas: "valid from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPass()
			if tt.pass != nil {
				tt.pass(&p)
			}
			now := testNow
			if !tt.now.IsZero() {
				now = tt.now
			}
			b, err := apple.Build(p, tt.files, chain, now)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Build error = %v, want one containing %q", err, tt.errHas)
			}
			if b != nil {
				t.Errorf("Build returned %d bytes with an error", len(b))
			}
		})
	}
	if _, err := apple.Build(apple.Pass{SerialNumber: "x"}, nil, chain, testNow); !errors.Is(err, apple.ErrInvalidPass) {
		t.Errorf("missing fields: error %v is not ErrInvalidPass", err)
	}
	if _, err := apple.Build(testPass(), nil, nil, testNow); err == nil {
		t.Error("Build with a nil chain succeeded")
	}
}

func TestDevChain(t *testing.T) {
	chain, dir := devChain(t)
	if chain.PassTypeID != "pass.cartera.dev" || chain.TeamID != "CARTERADEV" {
		t.Errorf("chain is for %q team %q", chain.PassTypeID, chain.TeamID)
	}
	if err := chain.Cert.CheckSignatureFrom(chain.WWDR); err != nil {
		t.Errorf("pass cert not issued by WWDR: %v", err)
	}
	for _, name := range []string{"ca.pem", "wwdr.pem", "pass.pem", "pass.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "pass.key" && fi.Mode().Perm() != 0o600 {
			t.Errorf("pass.key mode = %v, want 0600", fi.Mode().Perm())
		}
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("stray entries beside the dev folder: %v", entries)
	}

	t.Run("second call loads", func(t *testing.T) {
		again, err := apple.DevChain(dir, testNow.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !again.Cert.Equal(chain.Cert) || !again.WWDR.Equal(chain.WWDR) {
			t.Error("second DevChain call made new certificates")
		}
		if _, err := apple.Build(testPass(), nil, again, testNow); err != nil {
			t.Errorf("Build with the loaded chain: %v", err)
		}
	})

	t.Run("other pass type", func(t *testing.T) {
		cfg := apple.Config{PassTypeID: "pass.example.other", TeamID: "CARTERADEV"}
		if _, err := cfg.DevChain(dir, testNow); err == nil || !strings.Contains(err.Error(), "remove the folder") {
			t.Errorf("DevChain for another pass type = %v, want a mismatch error", err)
		}
		fresh := filepath.Join(t.TempDir(), "wallet-dev")
		other, err := cfg.DevChain(fresh, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if other.PassTypeID != "pass.example.other" {
			t.Errorf("PassTypeID = %q", other.PassTypeID)
		}
	})

	t.Run("incomplete", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "wallet-dev")
		if err := os.MkdirAll(broken, 0o700); err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(filepath.Join(dir, "pass.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(broken, "pass.pem"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := apple.DevChain(broken, testNow); !errors.Is(err, apple.ErrIncompleteDevChain) {
			t.Errorf("DevChain on a partial folder = %v, want ErrIncompleteDevChain", err)
		}
	})

	t.Run("bad config", func(t *testing.T) {
		for _, cfg := range []apple.Config{
			{PassTypeID: "com.example", TeamID: "CARTERADEV"},
			{PassTypeID: "pass.example", TeamID: "short"},
		} {
			if err := cfg.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil", cfg)
			}
		}
		if err := apple.DefaultConfig().Validate(); err != nil {
			t.Errorf("DefaultConfig invalid: %v", err)
		}
	})
}

func TestLoadChain(t *testing.T) {
	_, dir := devChain(t)
	_, otherDir := devChain(t)
	read := func(d, name string) []byte {
		b, err := os.ReadFile(filepath.Join(d, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cert, key, wwdr := read(dir, "pass.pem"), read(dir, "pass.key"), read(dir, "wwdr.pem")

	chain, err := apple.LoadChain(cert, key, wwdr)
	if err != nil {
		t.Fatal(err)
	}
	if chain.PassTypeID != "pass.cartera.dev" || chain.TeamID != "CARTERADEV" {
		t.Errorf("loaded chain is for %q team %q", chain.PassTypeID, chain.TeamID)
	}

	tests := []struct {
		name            string
		cert, key, wwdr []byte
		errHas          string
	}{
		{"key of another cert", cert, read(otherDir, "pass.key"), wwdr, "does not match"},
		{"other WWDR", cert, key, read(otherDir, "wwdr.pem"), "not issued by"},
		{"key as cert", key, key, wwdr, "pass certificate"},
		{"empty key", cert, nil, wwdr, "pass key"},
		{"empty wwdr", cert, key, nil, "WWDR"},
		{"CA as pass cert", read(dir, "ca.pem"), key, wwdr, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := apple.LoadChain(tt.cert, tt.key, tt.wwdr)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("LoadChain error = %v, want one containing %q", err, tt.errHas)
			}
		})
	}
}

// TestLoadP12 reads the chain from a .p12 as Keychain Access exports it,
// with the WWDR inside the file or given beside it.
func TestLoadP12(t *testing.T) {
	chain, dir := devChain(t)
	wwdrPEM, err := os.ReadFile(filepath.Join(dir, "wwdr.pem"))
	if err != nil {
		t.Fatal(err)
	}
	with, err := pkcs12.Modern.Encode(chain.Key, chain.Cert, []*x509.Certificate{chain.WWDR}, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	without, err := pkcs12.Modern.Encode(chain.Key, chain.Cert, nil, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		p12    []byte
		pass   string
		wwdr   []byte
		errHas string
	}{
		{"WWDR inside", with, "s3cret", nil, ""},
		{"WWDR beside", without, "s3cret", wwdrPEM, ""},
		{"no WWDR", without, "s3cret", nil, "no WWDR"},
		{"wrong password", with, "nope", nil, ".p12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apple.LoadP12(tc.p12, tc.pass, tc.wwdr)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.PassTypeID != chain.PassTypeID || !got.WWDR.Equal(chain.WWDR) {
				t.Errorf("chain for %q, WWDR %s", got.PassTypeID, got.WWDR.Subject)
			}
			if _, err := apple.Build(testPass(), testFiles(), got, testNow); err != nil {
				t.Errorf("build with the .p12 chain: %v", err)
			}
		})
	}
}

// BenchmarkBuild measures signed passes per second with a four-file pass.
func BenchmarkBuild(b *testing.B) {
	chain, _ := devChain(b)
	p, files := testPass(), testFiles()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apple.Build(p, files, chain, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passes/s")
}

// TestBuildConcurrent shares one chain between goroutines, as the HTTP
// server will; run under -race.
func TestBuildConcurrent(t *testing.T) {
	chain, _ := devChain(t)
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			p := testPass()
			p.SerialNumber = fmt.Sprintf("p_%d", i)
			_, err := apple.Build(p, testFiles(), chain, testNow)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
