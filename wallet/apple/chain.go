package apple

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Names of the files DevChain keeps in its folder.
const (
	devCAFile   = "ca.pem"
	devWWDRFile = "wwdr.pem"
	devCertFile = "pass.pem"
	devKeyFile  = "pass.key"
)

// oidUserID is the X.500 userId attribute (UID) in which Apple's pass type
// certificates carry the pass type identifier.
var oidUserID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// ErrIncompleteDevChain reports a dev chain folder that holds some of the
// chain's files but not all of them; remove the folder to start over.
var ErrIncompleteDevChain = errors.New("incomplete dev chain")

// Chain is what signs passes: the pass type certificate and its key, and
// the WWDR intermediate that issued the certificate.
type Chain struct {
	// Cert is the pass type ID certificate.
	Cert *x509.Certificate
	// Key is the private key of Cert.
	Key crypto.Signer
	// WWDR is the intermediate that issued Cert (Apple's WWDR in production).
	WWDR *x509.Certificate
	// PassTypeID is the pass type identifier named in Cert (its UID).
	PassTypeID string
	// TeamID is the team identifier named in Cert (its OU).
	TeamID string
}

// Config says which pass type the dev chain is made for.
type Config struct {
	// PassTypeID is the pass type identifier, e.g. "pass.cartera.dev".
	PassTypeID string
	// TeamID is the 10-character Apple team identifier.
	TeamID string
}

// DefaultConfig returns the config used by DevChain.
func DefaultConfig() Config {
	return Config{PassTypeID: "pass.cartera.dev", TeamID: "CARTERADEV"}
}

var (
	passTypeIDRE = regexp.MustCompile(`^pass(\.[A-Za-z0-9-]+)+$`)
	teamIDRE     = regexp.MustCompile(`^[A-Z0-9]{10}$`)
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if !passTypeIDRE.MatchString(c.PassTypeID) {
		return fmt.Errorf("pass_type_id %q: want reverse DNS starting with \"pass.\"", c.PassTypeID)
	}
	if !teamIDRE.MatchString(c.TeamID) {
		return fmt.Errorf("team_id %q: want 10 upper-case letters or digits", c.TeamID)
	}
	return nil
}

// DevChain is DefaultConfig().DevChain.
func DevChain(dir string, now time.Time) (*Chain, error) {
	return DefaultConfig().DevChain(dir, now)
}

// DevChain returns a development signing chain kept in dir. On the first
// call it generates a self-signed root CA, a WWDR-like intermediate and a
// pass type certificate for c.PassTypeID (RSA 2048, valid ten years from
// now), and writes ca.pem, wwdr.pem, pass.pem and pass.key (mode 0600); the
// CA and intermediate keys are discarded. Later calls load those files.
//
// Passes signed with a dev chain verify against ca.pem but will not install
// on a device, which trusts only Apple's WWDR intermediate.
func (c Config) DevChain(dir string, now time.Time) (*Chain, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("dev chain: %w", err)
	}
	chain, err := loadDevChain(dir)
	if errors.Is(err, fs.ErrNotExist) {
		chain, err = c.createDevChain(dir, now)
	}
	if err != nil {
		return nil, fmt.Errorf("dev chain: %w", err)
	}
	if chain.PassTypeID != c.PassTypeID || chain.TeamID != c.TeamID {
		return nil, fmt.Errorf("dev chain: %s is for %s (team %s), config wants %s (team %s); remove the folder to regenerate",
			dir, chain.PassTypeID, chain.TeamID, c.PassTypeID, c.TeamID)
	}
	return chain, nil
}

// loadDevChain reads the chain in dir. It returns an error wrapping
// fs.ErrNotExist only when none of the files exist.
func loadDevChain(dir string) (*Chain, error) {
	names := []string{devCertFile, devKeyFile, devWWDRFile, devCAFile}
	data := make(map[string][]byte, len(names))
	var missing []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, n)
		case err != nil:
			return nil, err
		default:
			data[n] = b
		}
	}
	switch len(missing) {
	case 0:
	case len(names):
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	default:
		return nil, fmt.Errorf("%w: %s lacks %v; remove the folder to regenerate", ErrIncompleteDevChain, dir, missing)
	}
	chain, err := LoadChain(data[devCertFile], data[devKeyFile], data[devWWDRFile])
	if err != nil {
		return nil, err
	}
	ca, err := parseCert(data[devCAFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", devCAFile, err)
	}
	if err := chain.WWDR.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%s not issued by %s: %w", devWWDRFile, devCAFile, err)
	}
	return chain, nil
}

// createDevChain generates the chain into a temporary sibling folder and
// renames it into place, so a crash or a concurrent start never leaves a
// half-written chain. If another process won the race, its chain is loaded.
func (c Config) createDevChain(dir string, now time.Time) (*Chain, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+"-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // no-op once renamed

	files, err := c.generateDevChain(now)
	if err != nil {
		return nil, err
	}
	for name, b := range files {
		mode := fs.FileMode(0o644)
		if name == devKeyFile {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, mode); err != nil {
			return nil, err
		}
	}
	// os.Rename replaces an empty dir but fails on a non-empty one, which
	// is how a lost race shows up.
	if err := os.Rename(tmp, dir); err != nil {
		if chain, lerr := loadDevChain(dir); lerr == nil {
			return chain, nil
		}
		return nil, err
	}
	return loadDevChain(dir)
}

// generateDevChain returns the PEM files of a fresh dev chain by name.
func (c Config) generateDevChain(now time.Time) (map[string][]byte, error) {
	notBefore := now.Add(-time.Hour) // tolerate clock skew between hosts
	notAfter := now.AddDate(10, 0, 0)

	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Cartera Dev Root CA (not Apple)", Organization: []string{"Cartera Dev"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, err := issue(caTmpl, caTmpl, caKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}

	wwdrKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	wwdrTmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         "Cartera Dev Worldwide Developer Relations (not Apple)",
			OrganizationalUnit: []string{"G4"},
			Organization:       []string{"Cartera Dev"},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	wwdrCert, err := issue(wwdrTmpl, caCert, wwdrKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("WWDR: %w", err)
	}

	passKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	passTmpl := &x509.Certificate{
		// The same subject layout as Apple's pass type ID certificates.
		Subject: pkix.Name{
			CommonName:         "Pass Type ID: " + c.PassTypeID,
			OrganizationalUnit: []string{c.TeamID},
			Organization:       []string{"Cartera Dev"},
			ExtraNames:         []pkix.AttributeTypeAndValue{{Type: oidUserID, Value: c.PassTypeID}},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	passCert, err := issue(passTmpl, wwdrCert, passKey, wwdrKey)
	if err != nil {
		return nil, fmt.Errorf("pass certificate: %w", err)
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(passKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		devCAFile:   pemBlock("CERTIFICATE", caCert.Raw),
		devWWDRFile: pemBlock("CERTIFICATE", wwdrCert.Raw),
		devCertFile: pemBlock("CERTIFICATE", passCert.Raw),
		devKeyFile:  pemBlock("PRIVATE KEY", keyDER),
	}, nil
}

func issue(tmpl, parent *x509.Certificate, key, signer *rsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// LoadChain parses a pass type ID certificate, its unencrypted private key
// (PKCS#1 or PKCS#8 PEM) and the WWDR intermediate that issued it, all PEM.
// It checks that the key matches the certificate, that the WWDR
// intermediate signed it, and that the certificate names a pass type ID.
func LoadChain(certPEM, keyPEM, wwdrPEM []byte) (*Chain, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load chain: pass certificate: %w", err)
	}
	wwdr, err := parseCert(wwdrPEM)
	if err != nil {
		return nil, fmt.Errorf("load chain: WWDR certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load chain: pass key: %w", err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("load chain: pass key does not match the pass certificate")
	}
	if err := cert.CheckSignatureFrom(wwdr); err != nil {
		return nil, fmt.Errorf("load chain: pass certificate not issued by the WWDR certificate: %w", err)
	}
	chain := &Chain{Cert: cert, Key: key, WWDR: wwdr}
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(oidUserID) {
			chain.PassTypeID, _ = n.Value.(string)
		}
	}
	if len(cert.Subject.OrganizationalUnit) > 0 {
		chain.TeamID = cert.Subject.OrganizationalUnit[0]
	}
	if chain.PassTypeID == "" {
		return nil, errors.New("load chain: pass certificate names no pass type ID (subject UID)")
	}
	return chain, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (encrypted keys must be decrypted first)", block.Type)
	}
}

// LoadP12 reads the pass type certificate and key from a .p12 (PKCS#12)
// file, as Keychain Access exports them, with its password. The WWDR
// intermediate is taken from the file when it holds one, else from
// wwdrPEM.
func LoadP12(p12 []byte, password string, wwdrPEM []byte) (*Chain, error) {
	key, cert, cas, err := pkcs12.DecodeChain(p12, password)
	if err != nil {
		return nil, fmt.Errorf("load chain: .p12: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load chain: .p12 key of type %T cannot sign", key)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("load chain: .p12 key: %w", err)
	}
	if len(wwdrPEM) == 0 {
		for _, c := range cas {
			if cert.CheckSignatureFrom(c) == nil {
				wwdrPEM = pemBlock("CERTIFICATE", c.Raw)
			}
		}
	}
	if len(wwdrPEM) == 0 {
		return nil, errors.New("load chain: .p12 holds no WWDR intermediate and none was given")
	}
	return LoadChain(pemBlock("CERTIFICATE", cert.Raw), pemBlock("PRIVATE KEY", keyDER), wwdrPEM)
}
