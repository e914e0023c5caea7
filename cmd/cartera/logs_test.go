package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cartera/internal/smtptest"
)

// TestLogsHoldNoSecretsOrPersonalData runs the demo's story (identity,
// merge, cart email over a real SMTP relay, audiences, a wallet pass with
// APNs and Google Wallet, a purchase at the till) and more (a person with a
// phone and names, bad input, wrong credentials, an erasure, Meta's conversions
// failing) on serve at debug level, then scans every log line for the
// scenario's personal data and secrets. Logs carry profile ids or hashes.
func TestLogsHoldNoSecretsOrPersonalData(t *testing.T) {
	const (
		webKey, appKey, posKey = "wk-web-Qx81Lm0pZr", "wk-app-Hv27Tn4sKe", "wk-pos-Bd93Yw6cJu"
		webSecret, appSecret   = "idsec-web-5Fh2Kq9mXz", "idsec-app-7Lp4Rn1vWc"
		smtpUser, smtpPass     = "mailer-Zk38", "smtp-pw-Gq72Xv19Nb"
		trackingSecret         = "trk-secret-Md45Ps82Jf-0123456789"
		metaToken              = "EAAGmetaSecretTok3n9Xy"
		person                 = "zq7k"
		phone, phoneE164       = "+34 611 22 33 44", "+34611223344"
		first, last            = "Zebulon", "Quartzfield"
		email2                 = "zebulon.quartzfield@example.org"
		stolenKey              = "wk-stolen-Ux55Ab77Cd"
	)
	var metaHits atomic.Int64
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/events") { // conversions fail, to log errors
			metaHits.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":{"message":"An unexpected error has occurred","type":"OAuthException","code":2}}`)
			return
		}
		_, _ = io.WriteString(w, `{"audience_id":"23850000000000000","num_received":1,"num_invalid_entries":0}`)
	}))
	t.Cleanup(meta.Close)
	relay := smtptest.Start(t, smtpUser, smtpPass)
	logs := &lockedBuffer{}
	r := newWalletRigLogged(t, map[string]string{
		"CARTERA_LOG_LEVEL":         "debug",
		"CARTERA_WRITE_KEYS":        fmt.Sprintf("%s=web,%s=app,%s=pos", webKey, appKey, posKey),
		"CARTERA_IDENTITY_SECRETS":  fmt.Sprintf("web=%s,app=%s", webSecret, appSecret),
		"CARTERA_SMTP_URL":          relay.URL,
		"CARTERA_SMTP_CA_FILE":      relay.CAFile,
		"CARTERA_TRACKING_SECRET":   trackingSecret,
		"CARTERA_META_URL":          meta.URL,
		"CARTERA_META_ACCESS_TOKEN": metaToken,
	}, logs)
	s := r.s

	// The demo's story, as `make demo` runs it.
	var out lockedBuffer
	demo := &Main{Stdout: &out, Stderr: &out, Getenv: envOf(nil)}
	if err := demo.Run(context.Background(), []string{"demo", "--url", s.base, "--admin-token", testAdminToken,
		"--web-key", webKey, "--app-key", appKey, "--pos-key", posKey,
		"--web-identity-secret", webSecret, "--app-identity-secret", appSecret, "--person", person}); err != nil {
		t.Fatalf("demo: %v\n%s\nserver log:\n%s", err, out.String(), logs.String())
	}

	// A person with a phone and names, bad input carrying them, wrong
	// credentials, a pass and its web service, and an erasure.
	mustOK(t, s.send(t, webKey, "/v1/identify", fmt.Sprintf(`{"userId":"zq-second","traits":{"email":%q,"phone":%q,"first_name":%q,"last_name":%q,"consent":{"email":true,"sms":true,"ads":true}}}`, email2, phone, first, last)))
	mustOK(t, s.send(t, appKey, "/v1/track", fmt.Sprintf(`{"anonymousId":"anon-%s","event":"Product Viewed","properties":{"email":%q}}`, person, email2)))
	if rep := s.send(t, webKey, "/v1/track", fmt.Sprintf(`{"userId":"zq-second","event":"Order Completed","properties":{"revenue":"lots","email":%q,"phone":%q}}`, email2, phone)); rep.status != 400 {
		t.Errorf("bad order: %d", rep.status)
	}
	if rep := s.send(t, webKey, "/v1/identify", fmt.Sprintf(`{"userId":"zq-second","traits":{"email":%q}`, email2)); rep.status != 400 {
		t.Errorf("truncated JSON: %d", rep.status)
	}
	if rep := s.send(t, stolenKey, "/v1/track", `{"anonymousId":"x","event":"x"}`); rep.status != 401 {
		t.Errorf("unknown key: %d", rep.status)
	}
	if rep := s.do(t, "GET", "/v1/profiles/email:"+email2, map[string]string{"Authorization": "Bearer " + testAdminToken + "x"}, nil); rep.status != 401 {
		t.Errorf("wrong admin token: %d", rep.status)
	}
	mustOK(t, s.send(t, webKey, "/v1/identify", `{"userId":"zq-third","traits":{"email":"zq-third@example.net","first_name":"Ana","loyalty_card":"4000 7788 9911"}}`))
	issued := s.admin(t, "POST", "/v1/profiles/user_id:zq-third/passes")
	if issued.status != 201 {
		t.Fatalf("issue pass: %d %s", issued.status, issued.raw)
	}
	view := issued.body
	serial := view["serial"].(string)
	resp, b := get(t, r.localURL(t, view["apple_url"].(string)), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	passToken := checkPKPass(t, b, filepath.Join(r.devDir, "ca.pem")).AuthenticationToken
	auth := map[string]string{"Authorization": "ApplePass " + passToken, "Content-Type": "application/json"}
	if rep := s.do(t, "POST", "/wallet/v1/devices/dev-zq/registrations/"+exPassTypeID+"/"+serial, auth, []byte(`{"pushToken":"abcdef0123"}`)); rep.status != 201 {
		t.Errorf("register: %d", rep.status)
	}
	if rep := s.do(t, "POST", "/wallet/v1/devices/dev-zq-gone/registrations/"+exPassTypeID+"/"+serial, auth, []byte(`{"pushToken":"dead0001"}`)); rep.status != 201 {
		t.Errorf("register: %d", rep.status)
	}
	// An order changes the points: the pass is pushed, and APNs says the
	// second device is gone.
	mustOK(t, s.send(t, posKey, "/v1/track", `{"userId":"zq-third","event":"Order Completed","properties":{"order_id":"zq-o1","revenue":60,"channel":"pos"}}`))
	eventually(t, 20*time.Second, "the gone device to be forgotten", func() bool {
		return strings.Contains(logs.String(), "wallet registration removed")
	})
	if rep := s.do(t, "GET", "/wallet/v1/passes/"+exPassTypeID+"/"+serial, map[string]string{"Authorization": "ApplePass " + passToken + "0"}, nil); rep.status != 401 {
		t.Errorf("wrong pass token: %d", rep.status)
	}
	if rep := s.do(t, "POST", "/wallet/v1/log", map[string]string{"Content-Type": "application/json"}, []byte(`{"logs":["Web service error for `+serial+`: server returned 401"]}`)); rep.status != 200 {
		t.Errorf("wallet log: %d", rep.status)
	}
	if rep := s.admin(t, "DELETE", "/v1/profiles/email:"+email2); rep.status != 200 {
		t.Errorf("erase: %d %s", rep.status, rep.raw)
	}
	eventually(t, 20*time.Second, "the till's purchase to reach Meta's conversions", func() bool { return metaHits.Load() > 0 })

	// What must never be logged.
	user := "ana-" + person
	card := demoCard(person)
	gsa, err := os.ReadFile(filepath.Join(filepath.Dir(r.data), "..", "service-account.json"))
	if err != nil {
		t.Fatal(err)
	}
	keyLine := strings.SplitN(strings.SplitN(string(gsa), "-----\\n", 2)[1], "\\n", 2)[0] // a line of the Google key
	secrets := map[string]string{
		"web write key": webKey, "app write key": appKey, "pos write key": posKey, "stolen write key": stolenKey,
		"web write key, Basic": base64.StdEncoding.EncodeToString([]byte(webKey + ":")),
		"identity secret":      webSecret, "app identity secret": appSecret,
		"admin token": testAdminToken, "SMTP password": smtpPass, "tracking secret": trackingSecret,
		"Meta token": metaToken, "Google key": keyLine, "pass token": passToken,
		"demo email": "ana." + person + "@example.com", "demo user id": user, "demo device": "phone-" + person,
		"demo iPhone": "iphone-" + person, "device": "dev-zq", "push token": "abcdef0123", "gone push token": "dead0001", "loyalty card": card, "loyalty card digits": strings.ReplaceAll(card, " ", ""),
		"email": email2, "phone": phone, "phone E.164": phoneE164, "first name": first, "last name": last,
		"anonymous id": "anon-" + person, "user id": "zq-second", "third user": "zq-third",
		"third email": "zq-third@example.net", "third card": "4000 7788 9911",
	}
	// The scan proves something only if the paths that log did run.
	for _, msg := range []string{`"profiles merged"`, `"profile erased"`, `"wallet device log"`, `"wallet registration removed"`, `"listening"`} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("no %s line in the log:\n%s", msg, logs.String())
		}
	}
	lines := strings.Split(logs.String(), "\n")
	for _, line := range lines {
		for what, v := range secrets {
			if v != "" && strings.Contains(line, v) {
				t.Errorf("log line holds the %s %q:\n%s", what, v, line)
			}
		}
	}
}

// demoCard is the loyalty card number the demo makes for a person suffix.
func demoCard(person string) string {
	var sfx [3]byte
	copy(sfx[:], person)
	return fmt.Sprintf("4000 %04d %04d", int(sfx[0])<<4|int(sfx[1]>>4), int(sfx[1]&15)<<8|int(sfx[2]))
}
