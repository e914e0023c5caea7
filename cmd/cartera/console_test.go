package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cartera/cmd/cartera/console"
)

// Console test accounts, besides the dev admin of the examples.
const (
	marketerPassword = "marketer-password-1"
	viewerPassword   = "viewer-password-123"
)

// consoleRig is serve running the examples from a copy (journey files can
// be edited), with a marketer and a viewer added to console.users.
type consoleRig struct {
	*server
	dir string
}

func startConsole(t *testing.T, env map[string]string) *consoleRig {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, "../../examples", dir)
	var lines []string
	for _, u := range []struct{ name, role, pw string }{{"mara", "marketer", marketerPassword}, {"vic", "viewer", viewerPassword}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u.pw), console.MinPasswordCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "    - {name: "+u.name+", role: "+u.role+", password_bcrypt: \""+string(h)+"\"}")
	}
	cfgPath := filepath.Join(dir, "cartera.yaml")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(string(b)+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"CARTERA_ADMIN_TOKEN": testAdminToken, "CARTERA_LOG_LEVEL": "warn"}
	for k, v := range env {
		vars[k] = v
	}
	clock := withTestClock(t, vars)
	addr := make(chan string, 1)
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: envOf(vars), OnListen: func(a string) { addr <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "c.db"), "--config", cfgPath})
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return &consoleRig{server: &server{base: "http://" + a, clock: clock}, dir: dir}
	case err := <-done:
		cancel()
		t.Fatalf("serve exited: %v", err)
	case <-time.After(startTimeout):
		cancel()
		t.Fatal("server did not start")
	}
	return nil
}

// consoleUser is a browser-like HTTP client: a cookie jar, no redirects
// followed.
type consoleUser struct {
	base string
	c    *http.Client
}

func (r *consoleRig) user() *consoleUser { return r.userFrom("") }

// userFrom is a client whose connections come from a loopback address of
// its own (127.0.0.2, ...), as another machine's would.
func (r *consoleRig) userFrom(ip string) *consoleUser { return newConsoleUser(r.base, ip) }

// newConsoleUser is a client of the console at base, from ip ("": any).
func newConsoleUser(base, ip string) *consoleUser {
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ip != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		tr.DialContext = d.DialContext
	}
	return &consoleUser{base: base, c: &http.Client{Jar: jar, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

func (u *consoleUser) get(t *testing.T, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := u.c.Get(u.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (u *consoleUser) post(t *testing.T, path string, form url.Values) (int, string, http.Header) {
	t.Helper()
	resp, err := u.c.PostForm(u.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// csrf reads the token of the forms of a page.
func (u *consoleUser) csrf(t *testing.T, path string) string {
	t.Helper()
	st, body, _ := u.get(t, path)
	m := csrfField.FindStringSubmatch(body)
	if st != 200 || m == nil {
		t.Fatalf("GET %s: %d, no csrf field in:\n%s", path, st, body)
	}
	return m[1]
}

func (u *consoleUser) login(t *testing.T, name, password string) (int, http.Header) {
	t.Helper()
	token := u.csrf(t, "/console/login")
	st, _, h := u.post(t, "/console/login", url.Values{"csrf": {token}, "user": {name}, "password": {password}})
	return st, h
}

func (u *consoleUser) mustLogin(t *testing.T, name, password string) {
	t.Helper()
	if st, _ := u.login(t, name, password); st != http.StatusSeeOther {
		t.Fatalf("login %s: status %d, want 303", name, st)
	}
}

// unmaskedEmail matches an email address whose local part is not masked.
var unmaskedEmail = regexp.MustCompile(`[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9.-]+\.[a-z]{2,}`)

func TestConsoleRolesCSRFAndAudit(t *testing.T) {
	r := startConsole(t, nil)
	mustOK(t, r.send(t, "shop_dev_write_key", "/v1/identify", `{"userId":"u-ana","traits":{"email":"ana@example.com","phone":"+34600111221","first_name":"Ana","vip":true,"consent":{"email":true}}}`))
	mustOK(t, r.send(t, "app_dev_write_key", "/v1/track", `{"userId":"u-ana","event":"Product Added","properties":{"cart_id":"c1","email":"ana@example.com"}}`))

	anon := r.user()
	if st, _, h := anon.get(t, "/console/"); st != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Fatalf("anonymous GET /console/: %d to %q, want 303 to the login page", st, h.Get("Location"))
	}
	if st, _ := anon.login(t, "dev", "wrong-password"); st != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", st)
	}

	admin := r.user()
	_, h := admin.login(t, console.DevUser, console.DevPassword)
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{"cartera_console=", "httponly", "samesite=strict", "path=/console"} {
		if !strings.Contains(strings.ToLower(cookie), want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(strings.ToLower(cookie), "secure") {
		t.Errorf("session cookie %q is Secure on a http public URL", cookie)
	}
	st, _, loc := admin.get(t, "/console/people?q=email:ANA@example.com")
	if st != http.StatusSeeOther || !strings.HasPrefix(loc.Get("Location"), "/console/people/profile_id:") {
		t.Fatalf("search by email: %d to %q, want 303 to the person", st, loc.Get("Location"))
	}
	person := loc.Get("Location")
	// One gateway, not a cluster node: no Cluster page, no link to one.
	if st, page, _ := admin.get(t, "/console/cluster"); st != http.StatusNotFound || !strings.Contains(page, "not a cluster node") {
		t.Errorf("the Cluster page on serve: %d, want 404 saying why", st)
	}
	_, page, _ := admin.get(t, person)
	if strings.Contains(page, `href="/console/cluster"`) {
		t.Error("serve's console links to a Cluster page")
	}
	for _, want := range []string{"ana@example.com", "+34600111221", "cart_abandonment", "Product Added", `id="erase"`} {
		if !strings.Contains(page, want) && !strings.Contains(page, strings.ReplaceAll(want, "+", "&#43;")) {
			t.Errorf("admin's person page lacks %q", want)
		}
	}

	viewer := r.user()
	viewer.mustLogin(t, "vic", viewerPassword)
	_, page, _ = viewer.get(t, person)
	if m := unmaskedEmail.FindAllString(page, -1); len(m) > 0 {
		t.Errorf("viewer sees email addresses %q", m)
	}
	for _, leak := range []string{"600111221", "Ana<", "u-ana"} {
		if strings.Contains(page, leak) {
			t.Errorf("viewer's person page holds %q", leak)
		}
	}
	if !strings.Contains(page, "a***@example.com") || !strings.Contains(page, "&#43;34 6** *** **1") {
		t.Errorf("viewer's page lacks the masked identifiers")
	}
	if strings.Contains(page, `id="erase"`) || strings.Contains(page, `id="export"`) {
		t.Error("viewer is offered export or erase")
	}
	if _, body, _ := viewer.get(t, "/console/people?q=email:an"); strings.Contains(body, "profile_id:") {
		t.Error("viewer's prefix search lists people")
	}
	vt := viewer.csrf(t, "/console/journeys")
	if st, _, _ := viewer.post(t, "/console/journeys/reload", url.Values{"csrf": {vt}}); st != http.StatusForbidden {
		t.Errorf("viewer's reload: %d, want 403", st)
	}
	if st, _, _ := viewer.get(t, "/console/journeys/reload"); st != http.StatusForbidden {
		t.Errorf("viewer's reload page: %d, want 403", st)
	}
	if st, _, _ := viewer.get(t, "/console/audit"); st != http.StatusForbidden {
		t.Errorf("viewer's audit page: %d, want 403", st)
	}

	marketer := r.user()
	marketer.mustLogin(t, "mara", marketerPassword)
	if _, body, _ := marketer.get(t, "/console/people?q=email:an"); !strings.Contains(body, person[len("/console/people/"):]) {
		t.Error("marketer's prefix search email:an does not list Ana")
	}
	if st, _, _ := marketer.post(t, "/console/journeys/reload", nil); st != http.StatusForbidden {
		t.Errorf("reload without CSRF token: %d, want 403", st)
	}
	if st, _, _ := marketer.post(t, "/console/journeys/reload", url.Values{"csrf": {vt}}); st != http.StatusForbidden {
		t.Errorf("reload with another session's token: %d, want 403", st)
	}
	mt := marketer.csrf(t, "/console/journeys")
	if st, _, _ := marketer.post(t, "/console/journeys/reload", url.Values{"csrf": {mt}}); st != http.StatusSeeOther {
		t.Errorf("marketer's reload: %d, want 303", st)
	}
	if _, body, _ := marketer.get(t, "/console/journeys"); !strings.Contains(body, "Reloaded: ") {
		t.Error("the journeys page after a reload does not say what happened")
	}
	if st, _, _ := marketer.post(t, person+"/export", url.Values{"csrf": {mt}}); st != http.StatusForbidden {
		t.Errorf("marketer's export: %d, want 403", st)
	}

	at := admin.csrf(t, person)
	st, body, hdr := admin.post(t, person+"/export", url.Values{"csrf": {at}})
	if st != 200 || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") || !strings.Contains(body, `"ana@example.com"`) {
		t.Fatalf("export: %d %q %.200s", st, hdr.Get("Content-Disposition"), body)
	}
	if st, _, _ := admin.post(t, person+"/erase", url.Values{"csrf": {at}}); st != http.StatusBadRequest {
		t.Errorf("erase without the confirmation box: %d, want 400", st)
	}
	if st, _, _ := admin.post(t, person+"/erase", url.Values{"csrf": {at}, "confirm": {"yes"}}); st != http.StatusSeeOther {
		t.Errorf("erase: %d, want 303", st)
	}
	if st, _, _ := admin.get(t, person); st != http.StatusNotFound {
		t.Errorf("person page after erase: %d, want 404", st)
	}
	if r := r.admin(t, "GET", "/v1/profiles/email:ana@example.com"); r.status != 404 {
		t.Errorf("admin API after the console's erase: %d, want 404", r.status)
	}

	_, audit, _ := admin.get(t, "/console/audit")
	for _, want := range []string{"login_failed", ">login<", "reload", "export", "erase", "mara", "vic"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit page lacks %q", want)
		}
	}
	if unmaskedEmail.MatchString(audit) {
		t.Error("the audit log names someone by email")
	}
	if st, _, _ := admin.post(t, "/console/logout", url.Values{"csrf": {at}}); st != http.StatusSeeOther {
		t.Errorf("logout: %d", st)
	}
	if st, _, _ := admin.get(t, "/console/audit"); st != http.StatusSeeOther {
		t.Errorf("after logout: %d, want 303 to login", st)
	}
}

func TestConsoleLoginRateLimitAndSecureCookie(t *testing.T) {
	r := startConsole(t, map[string]string{"CARTERA_PUBLIC_URL": "https://cartera.example"})
	_, h := r.userFrom("127.0.0.5").login(t, "vic", viewerPassword)
	if c := h.Get("Set-Cookie"); !strings.Contains(c, "cartera_console=") || !strings.Contains(strings.ToLower(c), "; secure") {
		t.Errorf("session cookie %q behind a https public URL: want Secure", c)
	}

	u := r.userFrom("127.0.0.2")
	for i := range 5 {
		if st, _ := u.login(t, "mara", "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, st)
		}
	}
	// The address's bucket is empty: another name from it is refused...
	if st, _ := u.login(t, "vic", viewerPassword); st != http.StatusTooManyRequests {
		t.Errorf("6th attempt from the address: %d, want 429", st)
	}
	// ...and so is the name, even with its password, from elsewhere.
	if st, _ := r.userFrom("127.0.0.3").login(t, "mara", marketerPassword); st != http.StatusTooManyRequests {
		t.Errorf("6th attempt on the name: %d, want 429", st)
	}
	// Another name from another address still gets in.
	if st, _ := r.userFrom("127.0.0.4").login(t, "vic", viewerPassword); st != http.StatusSeeOther {
		t.Errorf("an unrelated login: %d, want 303", st)
	}
}

// TestConsoleOutboxRetryAndDrop: a webhook answering 503 leaves a dead
// letter; the admin sees it on the Outbox page, retries it once the
// receiver recovers (delivered), drops the next one, and both are in the
// audit log. A marketer is offered neither.
func TestConsoleOutboxRetryAndDrop(t *testing.T) {
	t.Parallel()
	hook := newHookStandIn(t)
	rig := newDeliveryRig(t, hook.URL+"/hook")
	b, err := os.ReadFile(rig.config)
	if err != nil {
		t.Fatal(err)
	}
	users := "\nconsole:\n  users:\n" +
		"    - {name: dev, role: admin, password_bcrypt: \"" + bcryptOf(t, console.DevPassword) + "\"}\n" +
		"    - {name: mara, role: marketer, password_bcrypt: \"" + bcryptOf(t, marketerPassword) + "\"}\n"
	if err := os.WriteFile(rig.config, append(b, users...), 0o644); err != nil {
		t.Fatal(err)
	}
	hook.set(func(hs *hookStandIn) { hs.failing = true })
	s, _ := rig.serve(t, nil)
	r := &consoleRig{server: s}
	deadSeqs := func() []string {
		var out []string
		for _, m := range s.admin(t, "GET", "/v1/outbox?state=dead").body["messages"].([]any) {
			out = append(out, fmt.Sprint(m.(map[string]any)["seq"]))
		}
		return out
	}
	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-eve","event":"Back In Stock","properties":{"sku":"RUN-42"}}`))
	eventually(t, 10*time.Second, "a dead letter", func() bool { return len(deadSeqs()) == 1 })
	seq := deadSeqs()[0]

	mara := r.user()
	mara.mustLogin(t, "mara", marketerPassword)
	if _, page, _ := mara.get(t, "/console/outbox"); !strings.Contains(page, "503") || strings.Contains(page, "/retry") {
		t.Errorf("marketer's outbox page: want the dead letter's error and no retry button")
	}
	admin := r.user()
	admin.mustLogin(t, console.DevUser, console.DevPassword)
	_, page, _ := admin.get(t, "/console/outbox")
	if !strings.Contains(page, `action="/console/outbox/`+seq+`/retry"`) || !strings.Contains(page, "Dead letters (1)") {
		t.Fatalf("admin's outbox page lacks dead letter %s:\n%s", seq, page)
	}
	if st, _, _ := admin.post(t, "/console/outbox/"+seq+"/retry", nil); st != http.StatusForbidden {
		t.Errorf("retry without CSRF token: %d, want 403", st)
	}
	hook.set(func(hs *hookStandIn) { hs.failing = false })
	token := csrfField.FindStringSubmatch(page)[1]
	if st, _, _ := admin.post(t, "/console/outbox/"+seq+"/retry", url.Values{"csrf": {token}}); st != http.StatusSeeOther {
		t.Fatalf("retry: %d, want 303", st)
	}
	eventually(t, 5*time.Second, "the retried webhook delivered", func() bool {
		return len(eventsNamed(s.profile(t, "user_id:u-eve"), "Webhook Sent")) == 1
	})
	if st, _, _ := admin.post(t, "/console/outbox/"+seq+"/retry", url.Values{"csrf": {token}}); st != http.StatusNotFound {
		t.Errorf("second retry: %d, want 404", st)
	}

	hook.set(func(hs *hookStandIn) { hs.failing = true })
	mustOK(t, s.send(t, dlWebKey, "/v1/track", `{"userId":"u-fay","event":"Back In Stock","properties":{"sku":"RUN-43"}}`))
	eventually(t, 10*time.Second, "a second dead letter", func() bool { return len(deadSeqs()) == 1 })
	seq2 := deadSeqs()[0]
	if st, _, _ := admin.post(t, "/console/outbox/"+seq2+"/drop", url.Values{"csrf": {token}}); st != http.StatusSeeOther {
		t.Fatalf("drop: %d, want 303", st)
	}
	if d := deadSeqs(); len(d) != 0 {
		t.Errorf("dead letters after the drop: %v", d)
	}
	_, audit, _ := admin.get(t, "/console/audit")
	for _, want := range []string{"outbox message " + seq + "<", "outbox message " + seq2 + "<", ">retry<", ">drop<"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// TestConsoleBacktest: a marketer starts from the tier journey's file,
// lowers its threshold and runs it over the day's events: Ana would have
// turned gold as well as Cleo. A viewer cannot run one; a broken file says
// where it breaks; the run is audited.
func TestConsoleBacktest(t *testing.T) {
	r := startConsole(t, nil)
	const pos = "pos_dev_write_key"
	for _, u := range []string{"ana", "cleo"} {
		mustOK(t, r.send(t, pos, "/v1/identify", `{"userId":"`+u+`","traits":{"email":"`+u+`@example.com","consent":{"email":true}}}`))
	}
	for _, o := range []struct {
		user, id string
		revenue  string
	}{{"ana", "a1", "120"}, {"ana", "a2", "120"}, {"cleo", "c1", "600"}} {
		mustOK(t, r.send(t, pos, "/v1/track", `{"userId":"`+o.user+`","event":"Order Completed","properties":{"order_id":"`+o.id+`","revenue":`+o.revenue+`,"currency":"EUR","channel":"pos"}}`))
	}

	mara := r.user()
	mara.mustLogin(t, "mara", marketerPassword)
	st, page, _ := mara.get(t, "/console/backtest?journey=tier_upgrade")
	if st != http.StatusOK || !strings.Contains(page, "id: tier_upgrade") || !strings.Contains(page, `value="tier_upgrade.yaml"`) {
		t.Fatalf("backtest form from tier_upgrade: %d\n%s", st, page)
	}
	file := html.UnescapeString(regexp.MustCompile(`(?s)<textarea[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)[1])
	lower := strings.Replace(file, "lifetime_value >= 500.0", "lifetime_value >= 200.0", 1)
	if lower == file {
		t.Fatal("the form's file has no lifetime_value >= 500.0 to lower")
	}
	token := csrfField.FindStringSubmatch(page)[1]
	st, page, _ = mara.post(t, "/console/backtest", url.Values{"csrf": {token}, "name": {"tier_upgrade.yaml"}, "since": {"1d"}, "file": {lower}})
	if st != http.StatusOK {
		t.Fatalf("run backtest: %d\n%s", st, page)
	}
	for _, want := range []string{`<td id="bt-entered">2</td>`, `<td id="bt-people">2</td>`, `data-send="email">2<`, `?q=ana"`, `?q=cleo"`} {
		if !strings.Contains(page, want) {
			t.Errorf("backtest result lacks %s", want)
		}
	}
	// The live store did not change.
	if tr, _ := r.profile(t, "user_id:ana")["traits"].(map[string]any); tr["tier"] == "gold" {
		t.Error("the backtest made Ana gold in the live store")
	}

	// A broken file: nothing runs, the error names the place.
	st, page, _ = mara.post(t, "/console/backtest", url.Values{"csrf": {token}, "name": {"tier_upgrade.yaml"}, "since": {"1d"}, "file": {"id: tier_upgrade\nsteps: [{id: x, send: {channel: pigeon}}]\n"}})
	if st != http.StatusBadRequest || !strings.Contains(page, "tier_upgrade.yaml:") || strings.Contains(page, "bt-entered") {
		t.Errorf("broken file: %d\n%s", st, page)
	}
	// Without the form's token: refused.
	if st, _, _ := mara.post(t, "/console/backtest", url.Values{"since": {"1d"}}); st != http.StatusForbidden {
		t.Errorf("backtest without CSRF token: %d, want 403", st)
	}

	vic := r.user()
	vic.mustLogin(t, "vic", viewerPassword)
	if st, _, _ := vic.get(t, "/console/backtest"); st != http.StatusForbidden {
		t.Errorf("viewer's GET /console/backtest: %d, want 403", st)
	}

	admin := r.user()
	admin.mustLogin(t, console.DevUser, console.DevPassword)
	if _, page, _ := admin.get(t, "/console/audit"); !strings.Contains(page, "backtest") || !strings.Contains(page, "1d: ") {
		t.Errorf("the audit log does not show the backtest:\n%s", page)
	}
}

// TestConsoleAudience: the audience page of a real serve: its members as a
// CSV download for a marketer (profile ids and entry times only, in the
// audit log), refused to a viewer.
func TestConsoleAudience(t *testing.T) {
	r := startConsole(t, nil)
	const pos = "pos_dev_write_key"
	for i, u := range []string{"ana", "cleo"} {
		mustOK(t, r.send(t, pos, "/v1/identify", `{"userId":"`+u+`","traits":{"email":"`+u+`@example.com"}}`))
		mustOK(t, r.send(t, pos, "/v1/track", fmt.Sprintf(`{"userId":"%s","event":"Order Completed","properties":{"order_id":"o%d","revenue":20,"currency":"EUR","channel":"pos"}}`, u, i)))
	}
	ids := map[string]bool{}
	for _, u := range []string{"ana", "cleo"} {
		ids[r.profile(t, "user_id:"+u)["id"].(string)] = true
	}

	viewer := r.user()
	viewer.mustLogin(t, "vic", viewerPassword)
	if st, _, _ := viewer.get(t, "/console/audiences/customers/export.csv"); st != http.StatusForbidden {
		t.Errorf("viewer's CSV export: %d, want 403", st)
	}
	mara := r.user()
	mara.mustLogin(t, "mara", marketerPassword)
	if _, page, _ := mara.get(t, "/console/audiences/customers"); !strings.Contains(page, `href="/console/audiences/customers/export.csv"`) {
		t.Error("the audience page lacks the CSV link")
	}
	st, body, h := mara.get(t, "/console/audiences/customers/export.csv")
	if st != 200 || h.Get("Content-Disposition") != `attachment; filename="audience-customers.csv"` {
		t.Fatalf("CSV export: %d %q", st, h.Get("Content-Disposition"))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 3 || lines[0] != "profile_id,entered_at" {
		t.Fatalf("CSV export:\n%s\nwant a header and Ana's and Cleo's rows", body)
	}
	for _, l := range lines[1:] {
		id, at, _ := strings.Cut(l, ",")
		if _, err := time.Parse(time.RFC3339, at); !ids[id] || err != nil {
			t.Errorf("CSV row %q: want a customer's profile id and an RFC 3339 time", l)
		}
	}
	if strings.Contains(body, "@") {
		t.Error("the CSV export holds an email address")
	}
	admin := r.user()
	admin.mustLogin(t, console.DevUser, console.DevPassword)
	if _, audit, _ := admin.get(t, "/console/audit"); !strings.Contains(audit, "export_audience") || !strings.Contains(audit, "audience customers") {
		t.Error("the audit log lacks the CSV export")
	}
}

// TestConsoleAudienceSync: serve with the rules audience customers
// mirrored on Meta (a stand-in): after Bea's order adds her, the
// audience's page shows meta:customers with one delivery and a last sync;
// email_reachable, mirrored nowhere, says so.
func TestConsoleAudienceSync(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	withMarketer(t, rig.config)
	s, _ := rig.serve(t, nil)
	mustOK(t, s.send(t, dlWebKey, "/v1/identify", `{"userId":"u-bea","traits":{"email":"bea@example.com","consent":{"ads":true}}}`))
	mustOK(t, s.send(t, dlPOSKey, "/v1/track", `{"userId":"u-bea","event":"Order Completed","properties":{"order_id":"pos-9","revenue":20,"channel":"pos","store_id":"madrid-1"}}`))
	eventually(t, 10*time.Second, "Bea's add to customers on Meta", func() bool {
		return len(metaRows(t, rig.meta.Hits(), "POST", dlCustomersPath)) == 1
	})
	mara := (&consoleRig{server: s}).user()
	mara.mustLogin(t, "mara", marketerPassword)
	var row string
	eventually(t, 5*time.Second, "the delivery counted on the audience page", func() bool {
		_, page, _ := mara.get(t, "/console/audiences/customers")
		i := strings.Index(page, `<tr data-destination="meta:customers">`)
		if i < 0 {
			return false
		}
		row = page[i : i+strings.Index(page[i:], "</tr>")]
		return strings.Contains(row, `</td><td>1</td><td>0</td><td>0</td><td>0</td>`)
	})
	if strings.Contains(row, "not since") || !strings.Contains(row, `<td class="last-sync">20`) {
		t.Errorf("meta:customers has no last sync: %s", row)
	}
	if _, page, _ := mara.get(t, "/console/audiences/email_reachable"); !strings.Contains(page, `id="sync-none"`) {
		t.Error("email_reachable, mirrored nowhere, does not say so")
	}
}

// withMarketer adds the console user mara (marketer, marketerPassword) to
// the config file at path.
func withMarketer(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users := "\nconsole:\n  users:\n    - {name: mara, role: marketer, password_bcrypt: \"" + bcryptOf(t, marketerPassword) + "\"}\n"
	if err := os.WriteFile(path, append(b, users...), 0o644); err != nil {
		t.Fatal(err)
	}
}
