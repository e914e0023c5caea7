package main

// End-to-end tests of the wallet through the real `cartera serve` with the
// examples' config: a pass issued over the admin API and checked with
// openssl, a device playing Apple's PassKit web service protocol, an
// HTTP/2 + TLS APNs stand-in that requires the pass certificate as client
// certificate, and Google Wallet stand-ins (OAuth token and Wallet API).

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/smallstep/pkcs7"

	"cartera/internal/apnstest"
	"cartera/wallet/apple"
	"cartera/wallet/google"
)

// What examples/cartera.yaml names for the wallet.
const (
	exPassTypeID = "pass.example.cartera.loyalty"
	exTeamID     = "CARTERADEV"
	exIssuerID   = "3388000000012345678"
)

// walletRig runs serve on the examples with the wallet's outside services
// stood in for.
type walletRig struct {
	data, devDir string
	chain        *apple.Chain
	apns         *apnstest.StandIn
	google       *googleWalletStandIn
	key          *rsa.PrivateKey
	s            *server
}

func newWalletRig(t *testing.T) *walletRig {
	t.Helper()
	return newWalletRigLogged(t, nil, io.Discard)
}

// newWalletRigLogged is newWalletRig with more environment and the
// server's log written to stderr.
func newWalletRigLogged(t *testing.T, extra map[string]string, stderr io.Writer) *walletRig {
	t.Helper()
	dir := t.TempDir()
	r := &walletRig{data: filepath.Join(dir, "data", "cartera.db"), devDir: filepath.Join(dir, "data", "wallet-dev")}
	// The chain serve would make on first start, made first so the APNs
	// stand-in can trust its root.
	var err error
	if r.chain, err = (apple.Config{PassTypeID: exPassTypeID, TeamID: exTeamID}).DevChain(r.devDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	r.apns = apnstest.Start(t, exPassTypeID, filepath.Join(r.devDir, "ca.pem"))
	r.key, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	r.google = newGoogleWalletStandIn(t)
	sa := filepath.Join(dir, "service-account.json")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(r.key)})
	saJSON, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "cartera@shoes-example.iam.gserviceaccount.com",
		"private_key": string(keyPEM), "private_key_id": "k1", "token_uri": r.google.URL + "/token",
	})
	if err := os.WriteFile(sa, saJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CARTERA_APNS_URL":               r.apns.URL,
		"CARTERA_APNS_CA_FILE":           r.apns.CAFile,
		"CARTERA_GOOGLE_WALLET_URL":      r.google.URL + "/walletobjects/v1",
		"CARTERA_GOOGLE_ISSUER_ID":       exIssuerID,
		"CARTERA_GOOGLE_SERVICE_ACCOUNT": sa,
	}
	maps.Copy(env, extra)
	r.s = startServerLogged(t, r.data, env, stderr)
	return r
}

// googleWalletStandIn is Google's OAuth token endpoint and Wallet API.
type googleWalletStandIn struct {
	*httptest.Server
	mu      sync.Mutex
	patches []google.LoyaltyObject
	classes []google.LoyaltyClass
	msgs    []string
	bad     []string
}

func newGoogleWalletStandIn(t *testing.T) *googleWalletStandIn {
	g := &googleWalletStandIn{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		defer g.mu.Unlock()
		if r.URL.Path == "/token" {
			form, _ := url.ParseQuery(string(body))
			if form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || form.Get("assertion") == "" {
				g.bad = append(g.bad, "token request "+string(body))
				w.WriteHeader(400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"ya29.test-token","token_type":"Bearer","expires_in":3600}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer ya29.test-token" {
			g.bad = append(g.bad, "authorization "+r.Header.Get("Authorization"))
			w.WriteHeader(401)
			return
		}
		prefix := "/walletobjects/v1/loyaltyObject/"
		switch {
		case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, prefix):
			var obj google.LoyaltyObject
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&obj); err != nil || prefix+obj.ID != r.URL.Path {
				g.bad = append(g.bad, fmt.Sprintf("patch %s body %s: %v", r.URL.Path, body, err))
				w.WriteHeader(400)
				return
			}
			g.patches = append(g.patches, obj)
			_, _ = w.Write(body)
		case r.Method == http.MethodPost && r.URL.Path == "/walletobjects/v1/loyaltyClass":
			var c google.LoyaltyClass
			if err := json.Unmarshal(body, &c); err != nil {
				g.bad = append(g.bad, "class "+string(body))
			}
			g.classes = append(g.classes, c)
			_, _ = w.Write(body)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/addMessage"):
			g.msgs = append(g.msgs, string(body))
			_, _ = io.WriteString(w, `{"resource":{}}`)
		default:
			g.bad = append(g.bad, r.Method+" "+r.URL.Path)
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(g.Close)
	return g
}

// issue gives u1 a pass through the admin API and returns its view.
func (r *walletRig) issue(t *testing.T, user string) map[string]any {
	t.Helper()
	mustOK(t, r.s.send(t, "web_dev_write_key", "/v1/identify",
		fmt.Sprintf(`{"userId":%q,"traits":{"email":"%s@example.com","first_name":"Ana","loyalty_card":"4000 1234 %s"}}`, user, user, hex.EncodeToString([]byte(user))[:4])))
	rep := r.s.admin(t, "POST", "/v1/profiles/user_id:"+user+"/passes")
	if rep.status != 201 {
		t.Fatalf("issue pass: %d %s", rep.status, rep.raw)
	}
	return rep.body
}

// localURL points a link of the public base at the test server.
func (r *walletRig) localURL(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return r.s.base + u.RequestURI()
}

func get(t *testing.T, rawURL string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// checkPKPass unzips a .pkpass, recomputes every manifest hash, verifies
// the signature with openssl against the dev root, and returns pass.json.
func checkPKPass(t *testing.T, b []byte, caFile string) apple.Pass {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = data
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var manifest map[string]string
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if name == "manifest.json" || name == "signature" {
			continue
		}
		sum := sha1.Sum(data)
		if manifest[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("manifest[%s] = %q, want %x", name, manifest[name], sum)
		}
		delete(manifest, name)
	}
	if len(manifest) != 0 {
		t.Errorf("manifest names files not in the archive: %v", manifest)
	}
	for _, want := range []string{"pass.json", "icon.png", "icon@2x.png", "icon@3x.png", "logo.png", "strip.png", "es.lproj/pass.strings"} {
		if _, ok := files[want]; !ok {
			t.Errorf("archive lacks %s", want)
		}
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed (.ci/run installs it)")
	}
	out, err := exec.Command("openssl", "smime", "-verify", "-binary", "-inform", "DER",
		"-in", filepath.Join(dir, "signature"), "-content", filepath.Join(dir, "manifest.json"),
		"-CAfile", caFile, "-purpose", "any", "-out", os.DevNull).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl smime -verify: %v\n%s", err, out)
	}
	p7, err := pkcs7.Parse(files["signature"])
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Certificates) != 2 {
		t.Errorf("signature holds %d certificates, want the pass certificate and the WWDR intermediate", len(p7.Certificates))
	}
	var signedAt time.Time
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signedAt); err != nil || signedAt.IsZero() {
		t.Errorf("signing time attribute: %v", err)
	}
	var pass apple.Pass
	if err := json.Unmarshal(files["pass.json"], &pass); err != nil {
		t.Fatal(err)
	}
	return pass
}

func TestWalletIssueAndDevice(t *testing.T) {
	r := newWalletRig(t)
	view := r.issue(t, "u1")
	serial, _ := view["serial"].(string)
	if view["pass_type_identifier"] != exPassTypeID || serial == "" || view["tier"] != "silver" {
		t.Fatalf("issue answer: %v", view)
	}
	again := r.s.admin(t, "POST", "/v1/profiles/user_id:u1/passes")
	if again.status != 200 || again.body["serial"] != serial {
		t.Errorf("second issue: %d %s, want 200 with the same serial", again.status, again.raw)
	}
	if rep := r.s.do(t, "POST", "/v1/profiles/user_id:u1/passes", map[string]string{"Authorization": "Bearer " + testAdminToken}, []byte(`{"template":"nope"}`)); rep.status != 400 || !strings.Contains(rep.raw, "nope") {
		t.Errorf("unknown template: %d %s", rep.status, rep.raw)
	}
	if rep := r.s.do(t, "POST", "/v1/profiles/user_id:u1/passes", nil, nil); rep.status != 401 {
		t.Errorf("issue without the admin token: %d", rep.status)
	}

	// The download link serves a signed pass that openssl verifies.
	resp, b := get(t, r.localURL(t, view["apple_url"].(string)), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.apple.pkpass" {
		t.Fatalf("download: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	pass := checkPKPass(t, b, filepath.Join(r.devDir, "ca.pem"))
	if pass.SerialNumber != serial || pass.PassTypeIdentifier != exPassTypeID || pass.TeamIdentifier != exTeamID ||
		!strings.HasSuffix(pass.WebServiceURL, "/wallet") || len(pass.AuthenticationToken) < 16 || pass.StoreCard == nil {
		t.Fatalf("pass.json = %+v", pass)
	}
	if pass.Barcodes[0].Message != "40001234"+hex.EncodeToString([]byte("u1"))[:4] {
		t.Errorf("barcode = %q, want the member number", pass.Barcodes[0].Message)
	}
	token := pass.AuthenticationToken
	forged := strings.Replace(view["apple_url"].(string), "sig=", "sig=0", 1)
	if resp, _ := get(t, r.localURL(t, forged), nil); resp.StatusCode != 403 {
		t.Errorf("forged download link: %d", resp.StatusCode)
	}

	// The profile lists the pass.
	prof := r.s.profile(t, "user_id:u1")
	passes, _ := prof["passes"].([]any)
	if len(passes) != 1 || passes[0].(map[string]any)["serial"] != serial {
		t.Errorf("profile passes = %v", prof["passes"])
	}

	// A device plays Apple's web service protocol.
	dev := "/wallet/v1/devices/d1/registrations/" + exPassTypeID
	auth := map[string]string{"Authorization": "ApplePass " + token, "Content-Type": "application/json"}
	reg := []byte(`{"pushToken":"aa11"}`)
	for i, want := range []int{201, 200} {
		if rep := r.s.do(t, "POST", dev+"/"+serial, auth, reg); rep.status != want {
			t.Errorf("register #%d: %d %s, want %d", i+1, rep.status, rep.raw, want)
		}
	}
	bad := map[string]string{"Authorization": "ApplePass not-the-token-0000000000", "Content-Type": "application/json"}
	if rep := r.s.do(t, "POST", dev+"/"+serial, bad, reg); rep.status != 401 {
		t.Errorf("register with a bad token: %d", rep.status)
	}
	// A push token that is not hex is refused with the field named, and
	// nothing is registered.
	if rep := r.s.do(t, "POST", "/wallet/v1/devices/d9/registrations/"+exPassTypeID+"/"+serial, auth, []byte(`{"pushToken":"not-hex"}`)); rep.status != 400 || !strings.Contains(rep.raw, "pushToken: want an APNs device token in hex") {
		t.Errorf("register with a push token that is not hex: %d %q, want 400 naming pushToken", rep.status, rep.raw)
	}
	if rep := r.s.do(t, "GET", "/wallet/v1/devices/d9/registrations/"+exPassTypeID, nil, nil); rep.status != 204 {
		t.Errorf("the refused registration is listed: %d %s", rep.status, rep.raw)
	}
	rep := r.s.do(t, "GET", dev, nil, nil)
	var list struct {
		SerialNumbers []string `json:"serialNumbers"`
		LastUpdated   string   `json:"lastUpdated"`
	}
	if err := json.Unmarshal([]byte(rep.raw), &list); rep.status != 200 || err != nil || len(list.SerialNumbers) != 1 || list.SerialNumbers[0] != serial || list.LastUpdated == "" {
		t.Fatalf("list: %d %s", rep.status, rep.raw)
	}
	if !strings.Contains(rep.raw, `"lastUpdated":"`) {
		t.Errorf("lastUpdated is not a string: %s", rep.raw)
	}
	if rep := r.s.do(t, "GET", dev+"?passesUpdatedSince="+list.LastUpdated, nil, nil); rep.status != 204 {
		t.Errorf("list since the last tag: %d %s, want 204", rep.status, rep.raw)
	}

	latest := r.s.base + "/wallet/v1/passes/" + exPassTypeID + "/" + serial
	resp, b = get(t, latest, map[string]string{"Authorization": "ApplePass " + token})
	lm := resp.Header.Get("Last-Modified")
	if resp.StatusCode != 200 || lm == "" || len(b) == 0 {
		t.Fatalf("fetch: %d Last-Modified %q", resp.StatusCode, lm)
	}
	if resp, _ := get(t, latest, map[string]string{"Authorization": "ApplePass " + token, "If-Modified-Since": lm}); resp.StatusCode != 304 {
		t.Errorf("fetch with If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(t, latest, map[string]string{"Authorization": "ApplePass wrong-token-000000000000"}); resp.StatusCode != 401 {
		t.Errorf("fetch with a bad token: %d, want 401", resp.StatusCode)
	}
	if rep := r.s.do(t, "POST", "/wallet/v1/log", map[string]string{"Content-Type": "application/json"}, []byte(`{"logs":["[2026-11-29] Web service error for pass.example: bad"]}`)); rep.status != 200 {
		t.Errorf("log: %d", rep.status)
	}

	if rep := r.s.do(t, "DELETE", dev+"/"+serial, auth, nil); rep.status != 200 {
		t.Errorf("unregister: %d %s", rep.status, rep.raw)
	}
	if rep := r.s.do(t, "GET", dev, nil, nil); rep.status != 204 {
		t.Errorf("list after unregister: %d, want 204", rep.status)
	}
	prof = r.s.profile(t, "user_id:u1")
	if len(eventsNamed(prof, "Pass Installed")) != 1 || len(eventsNamed(prof, "Pass Removed")) != 1 {
		t.Errorf("profile events: %d Pass Installed, %d Pass Removed; want 1 and 1",
			len(eventsNamed(prof, "Pass Installed")), len(eventsNamed(prof, "Pass Removed")))
	}

	// The Google link carries a JWT signed with the service account.
	checkSaveLink(t, view["google_save_url"].(string), &r.key.PublicKey, exIssuerID+"."+serial)
}

func checkSaveLink(t *testing.T, link string, pub *rsa.PublicKey, objectID string) {
	t.Helper()
	raw, ok := strings.CutPrefix(link, google.SaveURLPrefix)
	if !ok {
		t.Fatalf("google_save_url = %q", link)
	}
	var claims struct {
		jwt.RegisteredClaims
		Typ     string   `json:"typ"`
		Origins []string `json:"origins"`
		Payload struct {
			LoyaltyObjects []google.LoyaltyObject `json:"loyaltyObjects"`
		} `json:"payload"`
	}
	tok, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil || !tok.Valid {
		t.Fatalf("save link JWT: %v", err)
	}
	if claims.Issuer != "cartera@shoes-example.iam.gserviceaccount.com" || len(claims.Audience) != 1 || claims.Audience[0] != "google" || claims.Typ != "savetowallet" || claims.Origins == nil {
		t.Errorf("claims = %+v", claims)
	}
	objs := claims.Payload.LoyaltyObjects
	if len(objs) != 1 || objs[0].ID != objectID || objs[0].ClassID != exIssuerID+".loyalty" || objs[0].LoyaltyPoints == nil {
		t.Errorf("loyaltyObjects = %+v", objs)
	}
}

// TestWalletTierChangePushes: the fifth order lifts u1 to gold; every
// registered device gets one push, a device APNs says is gone is
// forgotten, the next fetch is the gold pass, and Google's object is
// patched with the gold tier and the new balance.
func TestWalletTierChangePushes(t *testing.T) {
	r := newWalletRig(t)
	view := r.issue(t, "u1")
	serial := view["serial"].(string)
	resp, b := get(t, r.localURL(t, view["apple_url"].(string)), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	token := checkPKPass(t, b, filepath.Join(r.devDir, "ca.pem")).AuthenticationToken
	auth := map[string]string{"Authorization": "ApplePass " + token, "Content-Type": "application/json"}
	devices := map[string]string{"d1": "aa01", "d2": "bb02", "d3": "dead03"}
	for dev, tok := range devices {
		if rep := r.s.do(t, "POST", "/wallet/v1/devices/"+dev+"/registrations/"+exPassTypeID+"/"+serial, auth, []byte(`{"pushToken":"`+tok+`"}`)); rep.status != 201 {
			t.Fatalf("register %s: %d", dev, rep.status)
		}
	}
	order := func(n int) {
		mustOK(t, r.s.send(t, "pos_dev_write_key", "/v1/track",
			fmt.Sprintf(`{"userId":"u1","event":"Order Completed","properties":{"order_id":"o%d","revenue":60,"channel":"pos"}}`, n)))
	}
	for i := 1; i <= 4; i++ {
		order(i)
	}
	// The four orders changed the points: each device is pushed (once or
	// more, as the orders fall into the coalescing window).
	eventually(t, 10*time.Second, "pushes for the points", func() bool {
		c, _ := r.apns.Pushes()
		return c["aa01"] > 0 && c["bb02"] > 0 && c["dead03"] > 0
	})
	eventually(t, 10*time.Second, "the Unregistered device to be forgotten", func() bool {
		return r.s.do(t, "GET", "/wallet/v1/devices/d3/registrations/"+exPassTypeID, nil, nil).status == 204
	})
	latest := r.s.base + "/wallet/v1/passes/" + exPassTypeID + "/" + serial
	resp, _ = get(t, latest, map[string]string{"Authorization": "ApplePass " + token})
	lm := resp.Header.Get("Last-Modified")
	before, _ := r.apns.Pushes()
	listed := r.s.do(t, "GET", "/wallet/v1/devices/d1/registrations/"+exPassTypeID, nil, nil)
	var list struct {
		LastUpdated string `json:"lastUpdated"`
	}
	_ = json.Unmarshal([]byte(listed.raw), &list)

	order(5) // silver to gold
	eventually(t, 10*time.Second, "the gold push", func() bool {
		c, _ := r.apns.Pushes()
		return c["aa01"] > before["aa01"] && c["bb02"] > before["bb02"]
	})
	// Let a second, wrong push have its chance to arrive.
	time.Sleep(3 * time.Second)
	after, bad := r.apns.Pushes()
	if len(bad) > 0 {
		t.Fatalf("APNs stand-in refused: %v", bad)
	}
	for _, tok := range []string{"aa01", "bb02"} {
		if after[tok]-before[tok] != 1 {
			t.Errorf("device %s got %d pushes for the tier change, want exactly 1", tok, after[tok]-before[tok])
		}
	}
	if after["dead03"] != before["dead03"] {
		t.Errorf("the unregistered device was pushed again")
	}
	if rep := r.s.do(t, "GET", "/wallet/v1/devices/d1/registrations/"+exPassTypeID+"?passesUpdatedSince="+list.LastUpdated, nil, nil); rep.status != 200 || !strings.Contains(rep.raw, serial) {
		t.Errorf("list after the change: %d %s", rep.status, rep.raw)
	}
	resp, b = get(t, latest, map[string]string{"Authorization": "ApplePass " + token, "If-Modified-Since": lm})
	if resp.StatusCode != 200 {
		t.Fatalf("fetch after the change with the old If-Modified-Since: %d, want 200", resp.StatusCode)
	}
	gold := checkPKPass(t, b, filepath.Join(r.devDir, "ca.pem"))
	var tier, points any
	for _, f := range append(gold.StoreCard.HeaderFields, gold.StoreCard.PrimaryFields...) {
		switch f.Key {
		case "tier":
			tier = f.Value
		case "points":
			points = f.Value
		}
	}
	if tier != "Gold" || points != float64(300) || gold.BackgroundColor == nil || *gold.BackgroundColor != (apple.Color{R: 176, G: 128, B: 20}) {
		t.Errorf("after the fifth order: tier %v points %v background %v", tier, points, gold.BackgroundColor)
	}

	// Google: the object was patched with the gold tier and the balance,
	// and the journey's message was added.
	eventually(t, 10*time.Second, "the Google patch with the gold tier", func() bool {
		r.google.mu.Lock()
		defer r.google.mu.Unlock()
		for _, o := range r.google.patches {
			if len(o.TextModulesData) > 0 && o.TextModulesData[0].Body == "Gold" && o.LoyaltyPoints != nil && o.LoyaltyPoints.Balance.Int != nil && *o.LoyaltyPoints.Balance.Int == 300 {
				return o.ID == exIssuerID+"."+serial
			}
		}
		return false
	})
	r.google.mu.Lock()
	msgs, gbad, classes := r.google.msgs, r.google.bad, r.google.classes
	r.google.mu.Unlock()
	if len(classes) != 1 || classes[0].ID != exIssuerID+".loyalty" || classes[0].ProgramName != "Cartera Rewards" || classes[0].HexBackgroundColor == "" {
		t.Errorf("Google classes created at start-up: %+v", classes)
	}
	if len(gbad) > 0 {
		t.Errorf("Google stand-in refused: %v", gbad)
	}
	if len(msgs) == 0 || !strings.Contains(msgs[len(msgs)-1], "You are now Gold") || !strings.Contains(msgs[len(msgs)-1], "TEXT_AND_NOTIFY") {
		t.Errorf("Google messages = %v", msgs)
	}
}

// TestWalletConfiguredCertificate: with a pass certificate configured
// (here through the environment), passes are signed with it and no
// development chain is made.
func TestWalletConfiguredCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if _, err := (apple.Config{PassTypeID: exPassTypeID, TeamID: exTeamID}).DevChain(certs, time.Now()); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data", "cartera.db")
	s := startServerAt(t, data, map[string]string{
		"CARTERA_APPLE_PASS_CERT": filepath.Join(certs, "pass.pem"),
		"CARTERA_APPLE_PASS_KEY":  filepath.Join(certs, "pass.key"),
		"CARTERA_APPLE_WWDR":      filepath.Join(certs, "wwdr.pem"),
	})
	mustOK(t, s.send(t, "web_dev_write_key", "/v1/identify", `{"userId":"u1","traits":{"first_name":"Ana"}}`))
	rep := s.admin(t, "POST", "/v1/profiles/user_id:u1/passes")
	if rep.status != 201 {
		t.Fatalf("issue: %d %s", rep.status, rep.raw)
	}
	resp, b := get(t, s.base+func() string { u, _ := url.Parse(rep.body["apple_url"].(string)); return u.RequestURI() }(), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	checkPKPass(t, b, filepath.Join(certs, "ca.pem"))
	if _, err := os.Stat(filepath.Join(dir, "data", "wallet-dev")); !os.IsNotExist(err) {
		t.Errorf("a development chain was made although a certificate is configured (stat: %v)", err)
	}
}
