package apple

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// Names of the files Build writes itself.
const (
	PassFile      = "pass.json"
	ManifestFile  = "manifest.json"
	SignatureFile = "signature"
)

// ErrInvalidPass reports a pass or file set that Wallet would reject.
var ErrInvalidPass = errors.New("invalid pass")

// Build returns a signed .pkpass archive (application/vnd.apple.pkpass):
// pass.json from p, the given files (images such as icon.png, and
// localisations such as es.lproj/pass.strings, keyed by slash-separated
// relative path), manifest.json with the SHA-1 of each, and signature, a
// detached PKCS#7 over manifest.json signed with chain's key and carrying
// the pass and WWDR certificates.
//
// Both certificates must be valid at now. The signing-time attribute is
// the wall clock: the PKCS#7 library sets it itself.
func Build(p Pass, files map[string][]byte, chain *Chain, now time.Time) ([]byte, error) {
	a, err := NewAssets(files)
	if err != nil {
		return nil, fmt.Errorf("build pass: %w", err)
	}
	return a.Build(p, chain, now)
}

func checkValidity(chain *Chain, now time.Time) error {
	for _, c := range []struct {
		what string
		nb   time.Time
		na   time.Time
	}{
		{"pass certificate", chain.Cert.NotBefore, chain.Cert.NotAfter},
		{"WWDR certificate", chain.WWDR.NotBefore, chain.WWDR.NotAfter},
	} {
		if now.Before(c.nb) || now.After(c.na) {
			return fmt.Errorf("%s valid from %s to %s, not at %s",
				c.what, c.nb.Format(time.RFC3339), c.na.Format(time.RFC3339), now.Format(time.RFC3339))
		}
	}
	return nil
}

// passJSON fills what Build owns and checks what Wallet requires.
func passJSON(p Pass, chain *Chain) ([]byte, error) {
	p.FormatVersion = 1
	if p.PassTypeIdentifier == "" {
		p.PassTypeIdentifier = chain.PassTypeID
	}
	if p.TeamIdentifier == "" {
		p.TeamIdentifier = chain.TeamID
	}
	// Wallet rejects a pass whose identifiers differ from its certificate's.
	if p.PassTypeIdentifier != chain.PassTypeID {
		return nil, fmt.Errorf("%w: passTypeIdentifier %q, certificate is for %q", ErrInvalidPass, p.PassTypeIdentifier, chain.PassTypeID)
	}
	if chain.TeamID != "" && p.TeamIdentifier != chain.TeamID {
		return nil, fmt.Errorf("%w: teamIdentifier %q, certificate is for %q", ErrInvalidPass, p.TeamIdentifier, chain.TeamID)
	}
	for _, f := range []struct{ name, v string }{
		{"serialNumber", p.SerialNumber},
		{"teamIdentifier", p.TeamIdentifier},
		{"organizationName", p.OrganizationName},
		{"description", p.Description},
	} {
		if f.v == "" {
			return nil, fmt.Errorf("%w: %s is required", ErrInvalidPass, f.name)
		}
	}
	styles := 0
	for _, f := range []*Fields{p.StoreCard, p.EventTicket, p.Coupon, p.Generic} {
		if f != nil {
			styles++
		}
	}
	if styles != 1 {
		return nil, fmt.Errorf("%w: want exactly one of storeCard, eventTicket, coupon, generic; have %d", ErrInvalidPass, styles)
	}
	if (p.WebServiceURL == "") != (p.AuthenticationToken == "") {
		return nil, fmt.Errorf("%w: webServiceURL and authenticationToken go together", ErrInvalidPass)
	}
	if p.AuthenticationToken != "" && len(p.AuthenticationToken) < 16 {
		return nil, fmt.Errorf("%w: authenticationToken must be at least 16 characters", ErrInvalidPass)
	}
	p.Barcodes = slices.Clone(p.Barcodes)
	for i := range p.Barcodes {
		if p.Barcodes[i].Format == "" {
			p.Barcodes[i].Format = DefaultBarcodeFormat
		}
		if p.Barcodes[i].MessageEncoding == "" {
			p.Barcodes[i].MessageEncoding = DefaultBarcodeCoding
		}
	}
	if !p.RelevantDate.IsZero() {
		p.RelevantDate = p.RelevantDate.Truncate(time.Second)
	}
	return json.MarshalIndent(p, "", "  ")
}

// checkFileName accepts a clean, relative, slash-separated file path that
// is not one of the names Build writes.
func checkFileName(name string) error {
	switch {
	case !fs.ValidPath(name) || name == "." || strings.Contains(name, `\`):
		return fmt.Errorf("%w: file name %q: want a relative slash-separated path", ErrInvalidPass, name)
	case path.Clean(name) != name:
		return fmt.Errorf("%w: file name %q is not clean", ErrInvalidPass, name)
	case name == PassFile || name == ManifestFile || name == SignatureFile:
		return fmt.Errorf("%w: file name %q is written by Build", ErrInvalidPass, name)
	}
	return nil
}

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b) // Wallet's manifest format fixes SHA-1
	return hex.EncodeToString(sum[:])
}

// sign returns a DER detached PKCS#7 SignedData over manifest.
func sign(manifest []byte, chain *Chain) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(manifest)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	// Adds content type, message digest and signing time attributes, and
	// the pass and WWDR certificates.
	if err := sd.AddSignerChain(chain.Cert, chain.Key, []*x509.Certificate{chain.WWDR}, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	sd.Detach()
	return sd.Finish()
}
